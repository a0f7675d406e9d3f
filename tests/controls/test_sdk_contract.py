"""The public snapshot/stream contract, end to end: the application SDK's Guard against a live server."""

from __future__ import annotations

import time
from collections.abc import Callable

from codeblue.sdk.guard import Guard
from tests.support import LiveServer


def until(cond: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Wait for `cond` (a liveness bound, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def test_guard_follows_controls_and_config_rollbacks_over_the_stream(cserver: LiveServer) -> None:
    c = cserver.client("responder")
    P = "/v1/configs/prompt/refund-assistant"
    c.post(f"{P}/versions", json={"content": "old prompt", "workflows": ["refund-desk"]})
    c.post(f"{P}/versions", json={"content": "new prompt"})
    c.post(f"{P}/activate", json={"version": "v1"})
    c.post(f"{P}/activate", json={"version": "v2"})
    guard = Guard(cserver.url, cserver.token("ingest", handle="sdk"), service="refund-api", lkg_path=None,
                  heartbeat_interval=60, poll_interval=60)
    try:
        assert guard.wait_ready(20)
        assert guard.decide("refund-desk", "issue_refund").allowed
        cv = guard.config("prompt", "refund-assistant")
        assert cv is not None and (cv.version, cv.content) == ("v2", "new prompt")

        r = c.post("/v1/controls", json={
            "type": "kill_switch", "scope": {"workflow": "refund-desk", "action": "issue_refund"},
            "params": {"fallback": "human_queue", "target": "refunds-tier2"}, "reason": "wrong refunds",
            "ttl_s": 600})
        ctl = r.json()
        until(lambda: guard.revision >= ctl["revision"], "the guard saw the kill switch")
        d = guard.decide("refund-desk", "issue_refund")
        assert not d.allowed and d.control_id == ctl["id"] and d.fallback == "human_queue"
        assert guard.decide("refund-desk", "lookup_order").allowed

        rb = c.post(f"{P}/rollback", json={"note": "revert"}).json()
        assert rb["to"] == "v1"
        until(lambda: (guard.config("prompt", "refund-assistant") or cv).version == "v1", "the guard saw the rollback")
        assert (guard.config("prompt", "refund-assistant") or cv).content == "old prompt"

        lifted = c.delete(f"/v1/controls/{ctl['id']}").json()
        until(lambda: guard.revision >= lifted["revision"], "the guard saw the lift")
        assert guard.decide("refund-desk", "issue_refund").allowed
        assert guard.stats["resyncs"] == 0  # every patch chained onto the one before
    finally:
        guard.close()
