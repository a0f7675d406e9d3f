"""decide() semantics over crafted snapshots (format: docs/architecture.md), without a server."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from codeblue.sdk import Guard, bucket
from codeblue.sdk.evaluator import SnapshotError, apply_patch, compile_snapshot, evaluate

STAR = {"workflow": "*", "action": "*", "tool": "*", "dependency": "*", "segment": "*", "tenant": "*"}


def ctl(cid: int, type: str, params: dict[str, Any] | None = None, reason: str | None = None,
        incident_id: int | None = None, expires_at: float | None = None, **scope: str) -> dict[str, Any]:
    return {"id": cid, "type": type, "scope": {**STAR, **scope}, "params": params or {},
            "reason": reason or f"{type} {cid}", "incident_id": incident_id, "author": "al", "created_at": 0.0,
            "expires_at": expires_at, "lift_condition": None}


def snap(*controls: dict[str, Any], revision: int = 7, configs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"revision": revision, "environment": "production", "generated_at": 1.0, "controls": list(controls),
            "configs": configs or {}}


def guard_with(snapshot: dict[str, Any], **kw: Any) -> Guard:
    g = Guard(None, lkg_path=None, **kw)
    assert g._apply_snapshot(snapshot, source="poll")
    return g


def test_bucket_is_the_documented_formula() -> None:
    for salt, key in (("traffic:3", "acct-1"), ("prompt/refund-assistant", "u42"), ("", "")):
        want = int.from_bytes(hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest(), "big") / 2**64
        assert bucket(salt, key) == want
        assert 0.0 <= want < 1.0


def test_kill_switch_scoped_to_an_action_path() -> None:
    g = guard_with(snap(ctl(3, "kill_switch", {"fallback": "human_queue"}, reason="bad refunds", incident_id=12,
                            workflow="refund-desk", action="issue_refund")))
    d = g.decide("refund-desk", action="issue_refund")
    assert (d.allowed, d.fallback, d.control_id, d.incident_id, d.reason, d.revision, d.control_type) == (
        False, "human_queue", 3, 12, "bad refunds", 7, "kill_switch")
    assert g.decide("refund-desk", action="lookup").allowed
    assert g.decide("refund-desk").allowed  # no action named: the action-scoped switch does not apply
    assert g.decide("billing", action="issue_refund").allowed
    # memoised answers are the same object and still right
    assert g.decide("refund-desk", action="issue_refund") is d


def test_most_specific_blocking_control_is_reported_and_fallback_falls_through() -> None:
    g = guard_with(snap(
        ctl(1, "kill_switch", {"fallback": "human_queue"}, workflow="refund-desk", action="issue_refund"),
        ctl(2, "fallback", {"fallback": "backup_model", "target": "small-model"}, workflow="refund-desk"),
        ctl(5, "kill_switch", {}, workflow="refund-desk", action="issue_refund", segment="refund_over_100"),
    ))
    d = g.decide("refund-desk", action="issue_refund", segment="refund_over_100")
    assert d.control_id == 5 and not d.allowed
    assert d.fallback == "human_queue"  # #5 names none; the next most specific blocking control does
    d = g.decide("refund-desk", action="issue_refund", segment="refund_under_100")
    assert d.control_id == 1
    d = g.decide("refund-desk", action="answer")
    assert (d.control_id, d.fallback, d.target) == (2, "backup_model", "small-model")


def test_ties_go_to_the_lowest_id() -> None:
    g = guard_with(snap(ctl(9, "kill_switch", workflow="w", action="a"), ctl(4, "kill_switch", workflow="w", action="a")))
    assert g.decide("w", action="a").control_id == 4


def test_segments_and_tenants_are_honoured() -> None:
    g = guard_with(snap(ctl(1, "kill_switch", workflow="w", action="a", tenant="acme"),
                        ctl(2, "fallback", {"fallback": "human_queue"}, workflow="w", segment="vip")))
    assert not g.decide("w", action="a", tenant="acme").allowed
    assert g.decide("w", action="a", tenant="globex").allowed
    assert g.decide("w", action="a").allowed  # a request without a tenant matches only '*'
    assert g.decide("w", action="b", segment="vip").fallback == "human_queue"
    assert g.decide("w", action="b", segment="basic").allowed


def test_tool_disable_and_server_breaker_block_only_what_they_name() -> None:
    g = guard_with(snap(ctl(1, "tool_disable", workflow="*", tool="create_ticket"),
                        ctl(2, "breaker", {"state": "open"}, dependency="verifier"),
                        ctl(3, "breaker", {"state": "closed"}, dependency="search")))
    assert not g.decide("support", tool="create_ticket").allowed
    assert g.decide("support", tool="lookup").allowed
    assert g.decide("support").allowed
    d = g.decide("any-workflow", action="x", dependency="verifier")
    assert not d.allowed and d.control_type == "breaker"
    assert g.decide("any-workflow", dependency="search").allowed
    assert g.breakers["verifier"]["state"] == "open" and g.breakers["verifier"]["server"]["control_id"] == 2


def test_traffic_fraction_is_deterministic_per_key() -> None:
    g = guard_with(snap(ctl(11, "traffic", {"admit": 0.3, "fallback": "static_answer", "target": "try later"},
                            workflow="chat")))
    keys = [f"user-{i}" for i in range(2000)]
    admitted = {k for k in keys if g.decide("chat", key=k).allowed}
    assert admitted == {k for k in keys if bucket("traffic:11", k) < 0.3}
    assert 0.25 < len(admitted) / len(keys) < 0.35
    again = {k for k in keys if g.decide("chat", key=k).allowed}
    assert again == admitted  # stable answers for the same user
    d = g.decide("chat", key=next(k for k in keys if k not in admitted))
    assert (d.allowed, d.fallback, d.target, d.control_id) == (False, "static_answer", "try later", 11)
    assert not g.decide("chat").allowed  # no key: admitted only when admit >= 1


def test_a_fixed_block_outranks_traffic_whatever_the_key() -> None:
    g = guard_with(snap(ctl(1, "traffic", {"admit": 0.5}, workflow="chat"),
                        ctl(2, "kill_switch", {"fallback": "human_queue"}, workflow="chat", action="send")))
    assert all(g.decide("chat", action="send", key=f"k{i}").control_id == 2 for i in range(50))


def test_half_open_server_breaker_admits_a_share_by_key() -> None:
    g = guard_with(snap(ctl(4, "breaker", {"state": "half_open"}, dependency="model-a")))
    keys = [f"k{i}" for i in range(1000)]
    n = sum(g.decide("w", dependency="model-a", key=k).allowed for k in keys)
    assert n == sum(bucket("traffic:4", k) < 0.1 for k in keys)


def test_expired_controls_do_not_apply() -> None:
    index = compile_snapshot(snap(ctl(1, "kill_switch", workflow="w", action="a", expires_at=100.0)),
                             source="poll", now=101.0)
    assert evaluate(index, ("w", "a", None, None, None, None)).allowed  # type: ignore[union-attr]
    index = compile_snapshot(snap(ctl(1, "kill_switch", workflow="w", action="a", expires_at=100.0)),
                             source="poll", now=99.0)
    assert index.next_expiry == 100.0


def test_expiry_is_applied_by_the_guard_without_a_server() -> None:
    now = [1000.0]
    g = Guard(None, lkg_path=None, clock=lambda: now[0], stale_after=0.05)
    try:
        g._apply_snapshot(snap(ctl(1, "kill_switch", workflow="w", action="a", expires_at=1001.0)), source="poll")
        assert not g.decide("w", action="a").allowed
        now[0] = 1002.0
        g._wake.set()
        from tests.sdk.helpers import wait_for

        wait_for(lambda: g.decide("w", action="a").allowed, timeout=5, what="the expiry")
    finally:
        g.close()


def test_configs_versions_and_candidates_by_key() -> None:
    configs = {
        "prompt/refund-assistant": {"kind": "prompt", "name": "refund-assistant", "stable": "v41", "candidate": "v42",
                                    "fraction": 0.25, "frozen": False, "workflows": ["refund-desk"],
                                    "content": {"v41": "old prompt", "v42": "new prompt"}},
        "model_alias/answerer": {"kind": "model_alias", "name": "answerer", "stable": "gpt-x", "candidate": None,
                                 "fraction": 0.0, "frozen": False, "workflows": ["refund-desk", "chat"],
                                 "content": {"gpt-x": {"model": "gpt-x-2026"}}},
    }
    g = guard_with(snap(configs=configs))
    for i in range(300):
        key = f"acct-{i}"
        cand = bucket("prompt/refund-assistant", key) < 0.25
        cv = g.config("prompt", "refund-assistant", key=key)
        assert cv is not None
        assert (cv.version, cv.candidate, cv.content) == (("v42", True, "new prompt") if cand else ("v41", False, "old prompt"))
        assert g.versions("refund-desk", key=key) == {
            "prompt/refund-assistant": "v42" if cand else "v41", "model_alias/answerer": "gpt-x"}
    assert g.versions("chat") == {"model_alias/answerer": "gpt-x"}
    assert g.versions("unknown") == {}
    assert g.config("prompt", "nope") is None
    assert g.config("prompt", "refund-assistant").version == "v41"  # no key: the candidate needs fraction 1
    v = g.versions("chat")
    v["x"] = "y"  # a caller's copy: the Guard's memo is untouched
    assert g.versions("chat") == {"model_alias/answerer": "gpt-x"}


def test_decide_never_raises_on_bad_arguments() -> None:
    g = guard_with(snap(ctl(1, "kill_switch", workflow="w", action="a")), defaults={"w.a": "fail_closed"})
    d = g.decide(["not", "hashable"])  # type: ignore[arg-type]
    assert d.source == "error" and d.allowed
    d = g.decide("w", action=3)  # type: ignore[arg-type]
    assert d.source == "error"
    d = g.decide("w", action="a", tool=["x"])  # type: ignore[arg-type]
    assert d.source == "error" and not d.allowed  # w.a is declared fail_closed


def test_defaults_in_code_when_nothing_is_loaded(tmp_path: Path) -> None:
    g = Guard(None, lkg_path=tmp_path / "none.json", default="fail_open",
              defaults={"refund-desk.issue_refund": "fail_closed", "payments": "fail_closed"})
    try:
        assert g.source == "default" and g.revision == 0
        d = g.decide("refund-desk", action="issue_refund")
        assert not d.allowed and d.source == "default" and "fails closed" in (d.reason or "")
        assert g.decide("refund-desk", action="lookup").allowed
        assert not g.decide("payments", action="anything").allowed
        g.set_default("refund-desk", "lookup", "fail_closed")
        assert not g.decide("refund-desk", action="lookup").allowed
        with pytest.raises(ValueError):
            g.set_default("x", None, "fail_sideways")
    finally:
        g.close()


def test_patches_build_the_same_state_as_a_snapshot() -> None:
    base = snap(ctl(1, "kill_switch", workflow="w", action="a"), revision=3)
    patched = apply_patch(base, {"revision": 4, "prev": 3, "controls_upsert": [ctl(2, "tool_disable", tool="t")],
                                 "controls_remove": [1], "configs": {}})
    assert [c["id"] for c in patched["controls"]] == [2]
    assert patched["revision"] == 4


def test_malformed_snapshots_are_refused_with_the_place() -> None:
    with pytest.raises(SnapshotError, match=r"controls\[0\].*scope.workflow"):
        compile_snapshot(snap({"id": 1, "type": "kill_switch", "scope": {"workflow": 5}, "params": {}}),
                         source="poll", now=0)
    with pytest.raises(SnapshotError, match="admit"):
        compile_snapshot(snap(ctl(1, "traffic", {"admit": 2}, workflow="w")), source="poll", now=0)
    with pytest.raises(SnapshotError, match="revision"):
        compile_snapshot({"controls": []}, source="poll", now=0)


def test_the_simulator_buckets_exactly_like_the_sdk() -> None:
    from codeblue.sim import traffic

    for i in range(500):
        for salt in ("traffic:7", "prompt/refund-assistant", "model_alias/answerer"):
            assert traffic.bucket(salt, f"acct-{i}") == bucket(salt, f"acct-{i}")
