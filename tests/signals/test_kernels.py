"""The compiled tick kernels and line path (`_kernels.c`) against the numpy and Python implementations they
stand in for, on random block states, random flushes, fuzzed lines and the scenario streams.

Everything is compared exactly except what passes through log(): the CUSUM sums (and the p-value of a CUSUM
finding, exp(-sum)) may differ by an ulp, because numpy's SIMD log and the C library's are not the same
function; they are compared with a relative tolerance of 1e-12. Every verdict — findings, hold, firing,
baselines, rings, accumulators — must be identical."""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codeblue.signals import detect, kernels
from codeblue.signals.decode import decode_line
from codeblue.signals.detect import DetectConfig, Finding, close_block
from codeblue.signals.indicators import NC
from codeblue.signals.pipeline import Pipeline
from codeblue.signals.replay import ReplayResult, _run, replay_file
from codeblue.signals.windows import COARSE_N, COARSE_PER_FINE, Block, scatter_add
from codeblue.sim import generate
from tests.signals.test_decode import _acc_state, _line, _line_and_kind
from tests.signals.test_tick_equivalence import _random_block, random_scatters, random_ticks

pytestmark = pytest.mark.skipif(
    not kernels.built(), reason=f"the compiled kernels are not built here: {kernels.status()}")


@pytest.fixture
def compiled() -> Iterator[kernels.Kernels]:
    with kernels.using(True):
        k = kernels.line_path()
        assert k is not None
        yield k


def _close(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12 * max(abs(a), abs(b))


def _same_block(a: Block, b: Block) -> None:
    for name in ("bnum", "bden", "hold", "firing", "fine", "fine_ids", "coarse", "coarse_ids", "last_b"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert np.allclose(a.cusum, b.cusum, rtol=1e-12, atol=0.0, equal_nan=True)
    assert a.closed_to == b.closed_to


def _same_findings(got: list[tuple[int, Finding]], want: list[tuple[int, Finding]]) -> None:
    assert len(got) == len(want)
    for (wa, fa), (wb, fb) in zip(got, want, strict=True):
        assert (wa, fa.series, fa.indicator, fa.method, fa.window_s, fa.x, fa.n, fa.baseline, fa.severity) == \
            (wb, fb.series, fb.indicator, fb.method, fb.window_s, fb.x, fb.n, fb.baseline, fb.severity)
        assert fa.pvalue == fb.pvalue if fa.method.startswith("binomial test") else _close(fa.pvalue, fb.pvalue)


@pytest.mark.parametrize("seed", range(4))
def test_close_block_and_test_block_agree_with_numpy(compiled: kernels.Kernels, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    fired = screened = 0
    for cfg, blk, wf_m, close_to, eval_b in random_ticks(rng):
        ref = copy.deepcopy(blk)
        with np.errstate(invalid="ignore"):  # random baselines may put a rate above 1: NaN, on both sides
            close_block(blk, close_to, cfg)
            with kernels.using(False):
                close_block(ref, close_to, cfg)
            _same_block(blk, ref)
            got = detect.test_block(blk, eval_b, cfg, wf_m, cfg.ratios())
            with kernels.using(False):
                want = detect.test_block(ref, eval_b, cfg, wf_m, cfg.ratios())
        _same_findings(got, want)
        _same_block(blk, ref)
        fired += len(got)
        screened += int(ref.hold[: ref.n].sum())
    assert fired > 50 and screened > 50  # the states reach the interesting branches


def test_one_window_and_many_windows(compiled: kernels.Kernels) -> None:
    """Window lists the numpy path takes in any order and length: unsorted, repeated, one, and more than the
    compiled screen's limit (the numpy path then runs)."""
    rng = np.random.default_rng(7)
    for windows in [(60,), (12, 3, 60), (6, 6, 30), (1,), tuple(range(1, 21))]:
        cfg = DetectConfig(windows=windows)
        for _ in range(10):
            eval_b = int(rng.integers(10_000, 1_000_000))
            blk, wf_m = _random_block(rng, cfg, eval_b)
            ref = copy.deepcopy(blk)
            with np.errstate(invalid="ignore"):
                got = detect.test_block(blk, eval_b, cfg, wf_m, cfg.ratios())
                with kernels.using(False):
                    want = detect.test_block(ref, eval_b, cfg, wf_m, cfg.ratios())
            _same_findings(got, want)
            _same_block(blk, ref)


@pytest.mark.parametrize("seed", range(3))
def test_scatter_agrees_with_numpy(compiled: kernels.Kernels, seed: int) -> None:
    for rng, blk, ref, rows, bs in random_scatters(seed):
        k = len(rows)
        counts = rng.integers(0, 50, size=(k // 2 + 1, NC)).astype(np.int32)
        ks = rng.integers(0, counts.shape[0], size=k)
        compiled.scatter(blk.fine, blk.fine_ids, blk.coarse, blk.coarse_ids, blk.last_b, blk.cap, COARSE_N,
                         COARSE_PER_FINE, rows.tolist(), bs.tolist(), ks.tolist(), counts.tolist())
        scatter_add(ref, rows, bs, counts[ks])
        _same_block(blk, ref)


def test_kernels_refuse_arrays_of_the_wrong_size(compiled: kernels.Kernels) -> None:
    blk = Block(8, 0)
    with pytest.raises(ValueError, match="fine"):
        compiled.close_block(blk.fine[:2], blk.fine_ids, blk.bnum, blk.bden, blk.learn_b, blk.cusum, blk.hold, 8,
                             1, 2, 0.99, 30.0, 2.0, 100.0)
    with pytest.raises(IndexError):
        compiled.scatter(blk.fine, blk.fine_ids, blk.coarse, blk.coarse_ids, blk.last_b, blk.cap, COARSE_N,
                         COARSE_PER_FINE, [8], [5], [0], [[0] * NC])
    with pytest.raises(ValueError, match="count vector"):
        compiled.scatter(blk.fine, blk.fine_ids, blk.coarse, blk.coarse_ids, blk.last_b, blk.cap, COARSE_N,
                         COARSE_PER_FINE, [0], [5], [0], [[0] * (NC - 1)])
    assert not blk.fine.any() and (blk.last_b == -1).all()  # nothing written by a refused call


def test_binom_sf_below_agrees_with_python(compiled: kernels.Kernels) -> None:
    """The exact binomial tail, compiled, against detect._binom_sf_below: equal to the last bit, on short sums,
    long tails (past the Python version's scalar terms, into its numpy chunks), limits and the edge cases."""
    rng = random.Random(11)
    cases = [(0, 10, 0.5, math.inf), (-1, 10, 0.5, 0.5), (11, 10, 0.5, 1.0), (5, 10, 0.0, 1.0), (5, 10, 1.0, 0.5),
             (5, 10, 1.0, 2.0), (3000, 100000, 0.01, math.inf), (1, 200000, 1e-300, math.inf)]
    for _ in range(20_000):
        n = rng.choice([rng.randrange(0, 50), rng.randrange(0, 2000), rng.randrange(0, 200_000)])
        cases.append((rng.randrange(-2, n + 3), n, rng.choice([rng.random(), rng.random() * 1e-3, 0.5, 1 - 1e-16]),
                      rng.choice([math.inf, 1e-3, 1e-7, 2.0, 1.0])))
    long_tails = 0
    for x, n, p, limit in cases:
        want = detect._binom_sf_below(x, n, p, limit)
        assert compiled.binom_sf_below(x, n, p, limit) == want, (x, n, p, limit)
        long_tails += 0 < x < n and (n + 1) * p > x + 60 and want < 1.0
    assert long_tails > 100


def test_decode_line_agrees_with_python(compiled: kernels.Kernels) -> None:
    """Fuzzed lines (valid, invalid, malformed, at the edges of the decoders), each decoded twice (the second time
    the versions text comes from the cache)."""
    rng = random.Random(20261129)
    accepted = refused = 0
    for _ in range(20_000):
        raw, _plain = _line_and_kind(rng)
        for _ in range(2):
            got, want = compiled.decode_line(raw), decode_line(raw)
            assert (got is None) == (want is None), raw
            if got is not None and want is not None:
                assert got[0] == want[0] and got[1] == want[1], raw
        accepted += got is not None
        refused += got is None
    assert accepted > 5_000 and refused > 5_000


_COUNTED = ("time", "workflow", "kind", "segment", "fallback", "status", "refusal", "grounded", "latency_ms",
            "subject", "retrieval_age_s", "args_valid", "target", "authorized_targets", "text")
_NUMBERS = ["0", "00", "01", "1.", ".5", "1.5", "0.5", "0.0", "1e5", "1E+5", "1e-5", "2.5E-3", "1e22", "1e23",
            "1e-22", "1e-23", "123456789012345", "1234567890123456", "123456789012345678", "1234567890123456789",
            "0.000000000000000000001", "1.7976931348623157e308", "1e400", "-0", "-1", "-0.0", "0.1",
            "0.30000000000000004", "3.141592653589793", "1795507200.301", "100000000000", "100000000001",
            "100000000000.5", "99999999999.99999", "1e11", "1.00000000000000000001", "2139.4", "999", "1000",
            "500", "12.50", "0e0", "0E-0", "1e1000", "1e", "1e+", "1.e5", "5e", "NaN", "Infinity", "0x10", "+1"]


def _scan_cases(rng: random.Random) -> Iterator[bytes]:
    """Lines at the edges of the scanner's subset: number spellings, whitespace, escapes, repeated keys,
    non-ASCII and control bytes, versions texts, trailing bytes."""
    base = {"time": 1795507200.301, "workflow": "refund-desk", "kind": "response", "subject": "acct-1",
            "versions": {"prompt/refund-assistant": "v41"}, "status": 200, "latency_ms": 12.5, "refusal": False}
    for _ in range(8000):
        d = dict(base)
        d["kind"] = rng.choice(["response", "tool_call", "action", "complaint", "Response", "answer"])
        if d["kind"] == "action":
            d.update(target=rng.choice(["acct-1", "acct-9", ""]), authorized_targets=rng.choice([["acct-9"], [], None]))
        if d["kind"] == "complaint":
            d["text"] = rng.choice(["wrong refund", "", None])
        raw = json.dumps(d, separators=(",", ":"))
        r = rng.random()
        if r < 0.5:  # a number spelled another way
            field = rng.choice(["time", "latency_ms", "status", "retrieval_age_s"])
            lit = rng.choice([*_NUMBERS, f"{rng.random() * 10 ** rng.randrange(-3, 12):.{rng.randrange(0, 18)}g}",
                              f"{rng.randrange(10 ** rng.randrange(1, 19))}",
                              f"{rng.randrange(1, 10 ** 15)}e{rng.randrange(-25, 26)}"])
            raw = raw[:-1] + f',"{field}":{lit}}}' if f'"{field}"' not in raw else \
                raw.replace(f'"{field}":{json.dumps(d[field])}', f'"{field}":{lit}', 1)
        elif r < 0.6:
            raw = raw.replace(",", rng.choice([" ,", ", ", ",\t", "\r\n,"]), rng.randrange(1, 4))
            raw = raw.replace(":", rng.choice([" :", ": ", ":\n"]), rng.randrange(1, 3))
        elif r < 0.7:
            raw = raw.replace("acct-1", rng.choice(["acct\\u002d1", "acct-\u00e9", "acct\\n1", "acct\x7f1",
                                                    "acct\x011", "acct\\\"1"]))
        elif r < 0.75:
            raw = raw[:-1] + rng.choice([',"time":5}', ',"subject":"x"}', ',"trace_id":"a","trace_id":"b"}',
                                         ',"trace_id":5}', ',"model":null}', ',"arguments":{}}', ',"attributes":null}',
                                         ',"colour":"red"}', ',"versions":null}', ',}', '}'])
        elif r < 0.8:
            raw = raw.replace('{"prompt/refund-assistant":"v41"}', rng.choice(
                ['{}', '{"prompt/a":"v1","model_alias/b":"m"}', '{"prompt/a":42}', '{"prompt/a":"v1","prompt/a":"v2"}',
                 '{"noslash":"v1"}', '{"prompt/a":""}', '{ "prompt/a" : "v1" }', '["prompt/a"]', 'null']))
        elif r < 0.85:
            raw = raw + rng.choice(["", " ", "\n", "x", "}", " {}", "\r\n"])
        elif r < 0.88:  # arguments / attributes: an object or null, skipped (never read)
            value = rng.choice([
                '{"amount":24.01}', '{"a":-1,"b":[1,-2.5e3,true,false,null,"x"],"c":{"d":{}}}', '{"a":[]}',
                '{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":{"p":{"q":1}}}}}}}}}}}}}}}}}',
                '{"a":1e400}', '{"a":-}', '{"a":"\\u00e9"}', '{"a":tru}', '{"a":[1,]}', '{"a":1,}', '[]', '"x"', '5',
                'null', '{"a":01}', '{"a":-0}', '{"a":12345678901234567890}', '{ "a" : [ 1 , 2 ] }', '{"a":"b"',
                '{"a":1}}', '{"a":nulll}', '{"a":NaN}'])
            raw = raw[:-1] + f',"{rng.choice(["arguments", "attributes"])}":{value}}}'

        elif r < 0.9:
            raw = rng.choice([" ", "\n", "\t"]) + raw
        elif r < 0.95:
            raw = raw.replace('"workflow":"refund-desk"', rng.choice(
                ['"workflow":""', '"workflow":"' + "w" * 200 + '"', '"workflow":"' + "w" * 201 + '"', '"workflow":5',
                 '"workflow":null']))
        yield raw.encode("utf-8", "surrogatepass")


def test_scan_reads_what_the_struct_decoder_reads(compiled: kernels.Kernels) -> None:
    """The line scanner (replay's fast path) against the struct decoder: every line it reads, the decoder accepts
    with the same values (and types) and versions key; what it refuses takes the decoder's path unchanged."""
    rng = random.Random(20261129)
    lines = list(_scan_cases(rng)) + [_line(rng) for _ in range(20_000)]
    read = 0
    for i, raw in enumerate(lines):
        if i == 8000:
            assert read > 2000  # (the edge cases: most of the decoder's accepted ones are in the subset)
        want = compiled.decode_line(raw)  # (first: the scanner reads versions texts the decoder has cached)
        got = compiled.scan(raw)
        if got is None:
            continue
        read += 1
        assert want is not None, raw
        fields, vk = got
        assert vk == want[1], raw
        for name in _COUNTED:
            value = getattr(want[0], name)
            assert fields[name] == value and type(fields[name]) is type(value), (raw, name, fields[name], value)
    assert read > 3_500


def test_feed_counts_what_add_wire_counts(compiled: kernels.Kernels) -> None:
    rng = random.Random(5)
    lines = [_line(rng) for _ in range(6_000)] + list(_scan_cases(rng))  # (the second: mostly the scanner's)
    compiled_pipe, python_pipe = Pipeline(), Pipeline()
    for pipe in (compiled_pipe, python_pipe):
        pipe.tick = lambda now: []  # type: ignore[method-assign]  # counts only: compare the accumulators
    res = ReplayResult()
    _run(compiled_pipe, res, lines, [])
    with kernels.using(False):
        ref = ReplayResult()
        _run(python_pipe, ref, lines, [])
    assert res.events == ref.events > 1000 and compiled_pipe.events == python_pipe.events
    assert [e.as_dict() for e in res.errors] == [e.as_dict() for e in ref.errors]
    assert _acc_state(compiled_pipe) == _acc_state(python_pipe)
    assert compiled_pipe._complaints == python_pipe._complaints


def _random_events(rng: random.Random, t0: float, n: int) -> list[dict[str, Any]]:
    """Events over a few workflows, versions, segments and fallbacks, with latencies and retrieval ages as floats
    and ints, and bad outcomes of every kind."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        wf = rng.choice(["refund-desk", "finance-qa", "support-desk"])
        e: dict[str, Any] = {"time": t0 + i * 0.5 + rng.random() * 0.4, "workflow": wf,
                             "kind": rng.choices(["response", "tool_call", "action", "complaint"], [8, 1, 1, 0.3])[0],
                             "subject": rng.choice(["acct-1", "acct-2", "acct-3", None]),
                             "versions": rng.choice([{"prompt/p": "v1"}, {"prompt/p": "v2", "model_alias/m": "a"}, {}])}
        if rng.random() < 0.3:
            e["segment"] = rng.choice(["refund_over_100", "vip"])
        if rng.random() < 0.1:
            e["fallback"] = "human_queue"
        if e["kind"] == "response":
            e["status"] = rng.choice([200] * 9 + [503])
            e["refusal"] = rng.random() < 0.05
            if rng.random() < 0.9:
                # (and values at the thresholds the test sets: only greater is an exceedance)
                e["latency_ms"] = rng.choice([rng.random() * 3000, rng.randrange(3000), 500.0, 1500, 1200.0])
            if rng.random() < 0.4:
                e["retrieval_age_s"] = rng.choice([rng.random() * 86400, rng.randrange(86400), 3600.0, 40000])
        elif e["kind"] == "tool_call":
            e.update(tool="t", args_valid=rng.random() < 0.8)
        elif e["kind"] == "action":
            e.update(action="a", target=rng.choice(["acct-1", "acct-9"]), authorized_targets=[])
        else:
            e["text"] = "the refund was wrong"
        out.append(e)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_flush_agrees_with_python(compiled: kernels.Kernels, seed: int) -> None:
    """Pipeline._flush's loop compiled (`flush`) and in Python (`_flush_accs`): the same bad events, totals,
    samples and rings, with thresholds and held indicators changing between flushes."""
    states = []
    for use in (True, False):
        rng, knobs = random.Random(seed), random.Random(seed + 100)
        with kernels.using(use):
            pipe = Pipeline()
            for k in range(120):
                pipe.feed(_random_events(rng, 1.8e9 + 20 * k, rng.randrange(0, 60)))
                pipe._flush()
                for ws in pipe._by_no:
                    ws.lat_thr = knobs.choice([math.inf, 500.0, 1500.0, 2999.5, np.float64(1200.0)])
                    ws.rage_thr = knobs.choice([math.inf, 3600.0, 40000.0, np.float64(7200.0)])
                    ws.all.block.hold[ws.all.row, 1] = knobs.random() < 0.2
                    ws.all.block.hold[ws.all.row, 7] = knobs.random() < 0.2
            states.append((
                [(ws.name, list(ws.bad), ws.bad_total, ws.last_b, ws.lat_pending, ws.rage_pending, ws.pending_b)
                 for ws in pipe._by_no],
                [(blk.fine.tobytes(), blk.coarse.tobytes(), blk.fine_ids.tobytes(), blk.last_b.tobytes())
                 for blk in pipe.store.blocks]))
    got, want = states
    assert got == want
    assert sum(ws[2] for ws in got[0]) > 100 and any(ws[4] for ws in got[0]) and any(ws[5] for ws in got[0])


@pytest.mark.parametrize("scenario", ["refund-prompt", "wrong-account", "stale-citations", "clean"])
def test_replay_reports_agree(compiled: kernels.Kernels, scenario: str, tmp_path: Path) -> None:
    """A whole replay (ticks, detection, triage) on a scenario stream: the same incidents, suspects and times."""
    run = generate(scenario, 3)
    run.write(tmp_path)
    got = replay_file(tmp_path / "events.ndjson", changes_path=tmp_path / "changes.ndjson")
    with kernels.using(False):
        want = replay_file(tmp_path / "events.ndjson", changes_path=tmp_path / "changes.ndjson")
    assert (got.events, got.rejected, got.start, got.end) == (want.events, want.rejected, want.start, want.end)
    assert _report(got) == _report(want)
    if scenario != "clean":
        assert got.groups


def _report(res: ReplayResult) -> list[Any]:
    # (the alert's p-values may differ by an ulp where a CUSUM fired; what they decided is all here)
    return [(u.kind, u.workflow, u.failure_type, u.at, u.text, u.triage.as_dict()) for u in res.updates]
