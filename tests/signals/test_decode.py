"""The struct decoder (`signals.decode`) against the Event v1 parser, on randomised valid and invalid lines.

Differential: for every line, the reference is orjson + `parse_event_dict` (what intake and the replay's
fallback run). The struct decoder may refuse a line the parser accepts (the caller then takes the parser's
path) only for the documented reasons; it must never accept a line the parser rejects, and what it accepts
must carry the parser's values. A replay over the same lines must report exactly what a replay through the
parser alone reports: events, rejections (line, field, reason) and the pipeline's accumulated counts.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import orjson
import pytest

from codeblue.signals.decode import WireEvent, decode_event, decode_line, normal_event_dict, versions_key
from codeblue.signals.events import EventError, parse_event, parse_event_dict
from codeblue.signals.pipeline import Pipeline
from codeblue.signals.replay import ReplayResult, _err, _run

T0 = 1_795_507_200.25

#: Values of every JSON type and the edges of every rule: wrong types, NaN-like and huge numbers, times as
#: strings, NUL characters, nested junk, empty and over-long strings.
JUNK: list[Any] = [
    None, True, False, 0, 1, -1, 7, 999, 1000, -0.0, 0.0, 1.5, -2.5, 1e11, 1e11 + 1, 100_000_000_000,
    100_000_000_001, 1e300, 2**63, 2**70, -(2**70), "", "x", "a\x00b", "\x00", "2026-11-22T10:00:00Z",
    "2026-11-22T10:00:00", "2026-11-22T10:00:00+01:00", "not a time", "1795507200", "NaN", "é" * 5,
    "\U0001f600" * 3, [], ["a"], ["a", 1], [None], {}, {"a": 1}, {"a": {"b": [1, {"c": None}]}},
    {"prompt/a": "v1"}, {"prompt/a": 42}, {"prompt/a": ""}, {"prompt": "v1"}, {"/a": "v"}, {"a/": "v"},
    {"prompt/a": "v" * 201}, {"prompt/a": "x\x00"}, {"p/" + "k" * 299: "v"}, {"p/" + "k" * 298: "v"},
    {"prompt/a": None}, {"prompt/a": 1.5}, {"prompt/a": True}, {"prompt/a\x00": "v"},
]
FIELDS = ["time", "workflow", "kind", "trace_id", "session_id", "service", "subject", "segment", "versions",
          "fallback", "status", "latency_ms", "refusal", "grounded", "retrieval_age_s", "model", "input",
          "output", "tool", "args_valid", "arguments", "action", "target", "authorized_targets", "text",
          "channel", "attributes", "colour", "extra"]


def _valid(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["response", "tool_call", "action", "complaint"])
    wf = rng.choice(["refund-desk", "w", "w" * 200, "é" * 200, "\U0001f600" * 200, "support desk"])
    d: dict[str, Any] = {"time": rng.choice([T0 + rng.random() * 600, int(T0) + rng.randrange(600), 0, 0.0,
                                             1e11, 100_000_000_000]),
                         "workflow": wf, "kind": kind}
    if rng.random() < 0.8:
        d["versions"] = rng.choice([{"prompt/refund-assistant": "v41", "model_alias/x": "m1"},
                                    {"prompt/refund-assistant": "v42"}, {}, {"prompt/a": 42}, None,
                                    {"p/" + "k" * 298: "v" * 200}])
    for f, vals in (("subject", ["acct-1", "acct-2", ""]), ("segment", ["finance", None, ""]),
                    ("fallback", ["backup_model", None]), ("trace_id", ["abc"]), ("session_id", ["s1"]),
                    ("service", ["svc"]), ("model", ["gpt"]), ("input", ["hello", "a\x00b"]),
                    ("output", ["world"])):
        if rng.random() < 0.5:
            d[f] = rng.choice(vals)
    if kind == "response":
        for f, vals in (("status", [200, 500, 503, 0, 999, None]), ("latency_ms", [12.5, 0, 3000, 0.0, -0.0]),
                        ("refusal", [True, False, None]), ("grounded", [True, False, None]),
                        ("retrieval_age_s", [10.0, 86400, 0])):
            if rng.random() < 0.7:
                d[f] = rng.choice(vals)
    elif kind == "tool_call":
        d.update(tool="create_ticket", args_valid=rng.choice([True, False, None]),
                 arguments=rng.choice([{"a": 1}, {}, None]))
    elif kind == "action":
        d.update(action="refund", target=rng.choice(["acct-1", "acct-9", "", None]),
                 authorized_targets=rng.choice([["acct-9"], [], None]))
    else:
        d.update(text=rng.choice(["refund was wrong", "", None]), channel="chat")
    if rng.random() < 0.2:
        d["colour"] = rng.choice(JUNK)
    return d


def _mutate(rng: random.Random, d: dict[str, Any]) -> None:
    for _ in range(rng.choice([1, 1, 2])):
        f = rng.choice(FIELDS)
        if rng.random() < 0.15:
            d.pop(f, None)
        else:
            d[f] = rng.choice(JUNK)


def _dumps(d: Any) -> bytes:
    return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _line(rng: random.Random) -> bytes:
    return _line_and_kind(rng)[0]


def _line_and_kind(rng: random.Random) -> tuple[bytes, bool]:
    """A random line, and whether it is plain (no duplicated or escaped key, no edge-of-decoder value)."""
    d = _valid(rng)
    if rng.random() < 0.6:
        _mutate(rng, d)
    raw = _dumps(d)
    r = rng.random()
    if r >= 0.085:
        return raw if r >= 0.09 else raw.replace(b'"time":', b'"time": ', 1).replace(b",", b" ,\t", 2), True
    if r < 0.03:  # a duplicated key: the last one wins in both decoders
        f = rng.choice(["time", "workflow", "kind", "status", "versions"])
        raw = raw[:-1] + b"," + _dumps({f: rng.choice(JUNK)})[1:]
    elif r < 0.05:  # an escaped key
        raw = raw.replace(b'"workflow"', b'"w\\u006frkflow"', 1)
    elif r < 0.07:
        raw = rng.choice([b"{not json", b"[1, 2]", b"5", b'"x"', b"null", b'{"time": 1e400, "workflow": "w"}',
                          b'{"time": NaN, "workflow": "w", "kind": "response"}', b"\xff\xfe",
                          raw[: len(raw) // 2], raw + b" x", b"   ", b""])
    elif r < 0.085:  # numbers and nesting at the edges of the two JSON decoders
        f = rng.choice(["latency_ms", "status", "time", "colour", "arguments", "attributes", "versions"])
        val = rng.choice([b"1e400", b"-1e400", b"1" + b"0" * 400, b"1" + b"0" * 400 + b".5", b"18446744073709551616",
                          b"18446744073709551615", b"1e308", b"1e-400", b'{"a": 1e400}', b'{"a": 1' + b"0" * 400 + b"}",
                          b'{"a": ' + b"[" * 1030 + b"]" * 1030 + b"}", b'{"a": "\\ud800"}', b'"\\udc00"',
                          b'{"p/a": "\\ud83d\\ude00"}', b'{"a": 18446744073709551616}'])
        raw = raw[:-1] + b',"' + f.encode() + b'":' + val + b"}"
    return raw, False


def _reference(raw: bytes, index: int) -> dict[str, Any] | EventError | None:
    """orjson + the parser: the normalised dict, the parser's error, or None when the line is not JSON."""
    try:
        o = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    try:
        return parse_event_dict(o, index)
    except EventError as exc:
        return exc


def _fast(raw: bytes) -> tuple[WireEvent, tuple[tuple[str, str], ...]] | None:
    e = decode_event(raw)
    got = None
    if e is not None:
        vk = versions_key(e)
        got = None if vk is None else (e, vk)
    # replay's one-call path (its versions texts remembered by length): the same answer
    line = decode_line(raw)
    assert (line is None) == (got is None), raw
    assert line is None or got is None or (line[0] == got[0] and line[1] == got[1]), raw
    return got


def test_struct_decoder_agrees_with_the_parser() -> None:
    rng = random.Random(20261128)
    fast_accepted = rejected = 0
    for i in range(40_000):
        raw, plain = _line_and_kind(rng)
        ref = _reference(raw, i)
        got = _fast(raw)
        if got is None:
            # Refusing is always safe (the parser's path follows), but only these valid lines may be refused.
            if isinstance(ref, dict):
                o = orjson.loads(raw)
                assert not plain or type(o["time"]) is str or b"\\u0000" in raw or "colour" in o or "extra" in o \
                    or b"1180591620717411303424" in raw or b"9223372036854775808" in raw, raw  # beyond int64
            else:
                rejected += 1
            continue
        assert isinstance(ref, dict), (raw, ref)
        e, vk = got
        fast_accepted += 1
        assert float(e.time) == ref["time"] and type(e.time) in (int, float)
        assert (e.workflow, e.kind) == (ref["workflow"], ref["kind"])
        assert vk == tuple(ref.get("versions", {}).items())
        for f in FIELDS[3:27]:
            if f == "versions":
                continue
            want = ref.get(f)
            val = getattr(e, f)
            if f in ("arguments", "attributes"):  # kept raw: what orjson makes of the text
                val = orjson.loads(bytes(val)) if val else None
            assert val == want and (val is None or type(val) is type(want) or f in ("latency_ms", "retrieval_age_s")), \
                (raw, f, val, want)
    assert fast_accepted > 10_000 and rejected > 10_000  # both sides of the rules were exercised


@pytest.mark.parametrize("raw", [
    b'{"time": 5, "workflow": "w", "kind": "response", "versions": {"prompt/a": "v1", "prompt/a": 7}}',
    b'{"time": 5, "workflow": "w", "kind": "response", "versions": {"prompt/a": "v1"}, "versions": null}',
    b'{"time": 5, "workflow": "w", "kind": "response", "versions": "prompt/a"}',
])
def test_versions_text_checked_once_per_distinct_text(raw: bytes) -> None:
    ref = _reference(raw, 0)
    for _ in range(2):  # the second time from the cache
        got = _fast(raw)
        if got is None:
            assert isinstance(ref, EventError)
        else:
            assert isinstance(ref, dict) and got[1] == tuple(ref.get("versions", {}).items())


def _reference_replay(lines: list[bytes]) -> tuple[ReplayResult, Pipeline]:
    """Every line through orjson and the parser; no ticks (the lines' times are all in one window)."""
    pipe = Pipeline()
    res = ReplayResult()
    for n, raw in enumerate(lines, 1):
        try:
            o = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if raw.strip():
                _err(res, n, "", f"not JSON: {exc}")
            continue
        if type(o) is not dict:
            _err(res, n, "", f"expected a JSON object, got {type(o).__name__}")
            continue
        try:
            pipe._add_event(parse_event(o, n))
        except EventError as exc:
            _err(res, n, exc.field, exc.reason)
    res.events = pipe.events
    return res, pipe


def _acc_state(pipe: Pipeline) -> dict[Any, Any]:
    return {k: (a.c, a.lat, a.lat_subj, a.rage, a.rage_subj, a.bad) for k, a in pipe._acc.items()}


def test_replay_counts_and_rejects_exactly_as_the_parser() -> None:
    rng = random.Random(7)
    lines = [_line(rng) for _ in range(6_000)]
    ref, ref_pipe = _reference_replay(lines)
    pipe = Pipeline()
    pipe.tick = lambda now: []  # type: ignore[method-assign]  # counts only: compare the accumulators
    res = ReplayResult()
    _run(pipe, res, lines, [])
    assert res.events == ref.events > 1000
    assert res.rejected == ref.rejected > 1000
    assert [e.as_dict() for e in res.errors] == [e.as_dict() for e in ref.errors]
    assert _acc_state(pipe) == _acc_state(ref_pipe)
    assert pipe._complaints == ref_pipe._complaints


def test_feed_valid_counts_what_feed_counts() -> None:
    """Intake's trusted feed of parser-normalised dicts accumulates exactly what the checking feed does."""
    rng = random.Random(11)
    events: list[dict[str, Any]] = []
    i = 0
    while len(events) < 5_000:
        r = _reference(_line(rng), i)
        i += 1
        if isinstance(r, dict):
            events.append(r)
    checked, trusted = Pipeline(), Pipeline()
    for k in range(0, len(events), 1000):
        assert checked.feed([dict(e) for e in events[k:k + 1000]]) == trusted.feed_valid(events[k:k + 1000])
        assert _acc_state(checked) == _acc_state(trusted)
        assert checked._complaints == trusted._complaints
        checked._acc.clear()
        trusted._acc.clear()
    assert checked.events == trusted.events == len(events)


def test_normal_event_dict_only_takes_what_the_parser_returns_unchanged() -> None:
    """Intake's msgspec check of decoded dicts: when it keeps an object, the parser (check_nul=False) accepts
    that object and returns it unchanged; the common valid event is kept."""
    rng = random.Random(3)
    kept = 0
    for i in range(30_000):
        raw = _line(rng)
        if b"\\u0000" in raw:
            continue  # check_nul=False is only for bodies without one
        try:
            o = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        before = copy.deepcopy(o)
        got = normal_event_dict(o)
        assert o == before  # never changes what it is given
        ref = _reference(raw, i)
        if got is None:
            continue
        kept += 1
        # compared as JSON text, so an int the parser would turn into a float (5 == 5.0) is a difference
        assert got is o and isinstance(ref, dict) and orjson.dumps(ref) == orjson.dumps(before), (raw, ref)
        again = copy.deepcopy(before)
        assert parse_event_dict(again, i, check_nul=False) is again and orjson.dumps(again) == orjson.dumps(before)
    assert kept > 500
    plain = {"time": T0, "workflow": "w", "kind": "response", "versions": {"prompt/a": "v1"}, "status": 200,
             "latency_ms": 12.5, "subject": "acct-1", "refusal": False}
    assert normal_event_dict(plain) is plain
