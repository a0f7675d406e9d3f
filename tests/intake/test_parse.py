"""Event v1 parsing: the fast path and the full checks agree; nothing sent is silently lost."""

from __future__ import annotations

from typing import Any

import pytest

from codeblue.signals.events import Event, EventError, parse_event, parse_event_dict


def base(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"time": 1764000000.5, "workflow": "refund-desk", "kind": "response"}
    d.update(kw)
    return d


def test_nulls_are_absent_and_unknown_fields_kept_in_attributes() -> None:
    d = parse_event_dict(base(versions=None, subject=None, latency_ms=120, colour="blue",
                              attributes={"colour": "red", "n": 1}))
    assert "versions" not in d and "subject" not in d
    assert d["latency_ms"] == 120.0 and isinstance(d["latency_ms"], float)
    assert d["attributes"] == {"colour": "red", "n": 1}  # the explicit attribute wins
    d = parse_event_dict(base(team="payments"))
    assert d["attributes"] == {"team": "payments"}
    ev = Event.from_dict(d)
    assert ev.attributes == {"team": "payments"}


def test_fast_path_and_full_checks() -> None:
    d = parse_event_dict(base(time="2025-11-24T16:00:00+01:00", versions={"prompt/a": 42}, status=503,
                              authorized_targets=["x"], arguments={"k": 1}))
    assert d["time"] == 1763996400.0 and d["versions"] == {"prompt/a": "42"}
    assert parse_event(d).is_error
    cases = [
        (base(time=1764000000000), "time", "milliseconds"),
        (base(time="2025-11-24T16:00:00"), "time", "UTC offset"),
        (base(time=True), "time", "boolean"),
        (base(workflow="w" * 201), "workflow", "200"),
        (base(kind=None), "kind", "not one of"),
        (base(status=True), "status", "integer"),
        (base(status=1000), "status", "integer"),
        (base(latency_ms=-1.0), "latency_ms", "non-negative"),
        (base(refusal=1), "refusal", "true or false"),
        (base(subject="a\x00b"), "subject", "NUL"),
        (base(versions={"prompt/a": ""}), "versions.prompt/a", "1 to 200"),
        (base(versions={"prompt": "v1"}), "versions.prompt", "<kind>/<name>"),
        (base(versions=["prompt/a"]), "versions", "object"),
        (base(authorized_targets=["a", 1]), "authorized_targets", "list of strings"),
        (base(arguments="{}"), "arguments", "object"),
        ({"workflow": "w", "kind": "response"}, "time", "required"),
    ]
    for obj, field, words in cases:
        with pytest.raises(EventError) as info:
            parse_event_dict(dict(obj), 4)
        assert info.value.field == field, obj
        assert words in info.value.reason, (obj, info.value.reason)
        assert info.value.index == 4
    # a version pair checked once is remembered, but a bad one is still refused afterwards
    parse_event_dict(base(versions={"prompt/a": "v1"}))
    with pytest.raises(EventError):
        parse_event_dict(base(versions={"prompt/a": "v1", "bad": "v"}))
