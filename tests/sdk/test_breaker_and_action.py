"""The local automatic breaker fed by report(), and the decorator / context form of guard.action()."""

from __future__ import annotations

import asyncio

import pytest

from codeblue.sdk import Blocked, Guard
from tests.sdk.test_evaluator import ctl, snap


class Clock:
    def __init__(self) -> None:
        self.t = 10_000.0

    def __call__(self) -> float:
        return self.t


def test_local_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    g = Guard(None, lkg_path=None, clock=clock, breaker_failures=3, breaker_window=10.0, breaker_cooldown=5.0,
              breaker_trial_calls=2)
    try:
        g._apply_snapshot(snap(), source="poll")
        assert g.decide("rag", dependency="verifier").allowed
        g.report("verifier", ok=False)
        clock.t += 11  # outside the window: the first failure no longer counts
        g.report("verifier", ok=False)
        g.report("verifier", ok=True)  # successes don't reset the window count
        assert g.breakers["verifier"]["state"] == "closed"
        g.report("verifier", ok=False)
        assert g.breakers["verifier"]["state"] == "closed"
        g.report("verifier", ok=False)
        info = g.breakers["verifier"]
        assert info["state"] == "open" and info["local"]["retry_at"] == clock.t + 5.0
        d = g.decide("rag", dependency="verifier")
        assert (d.allowed, d.source, d.control_type) == (False, "local_breaker", "breaker")
        assert g.decide("rag", dependency="other").allowed
        assert g.decide("rag").allowed

        clock.t += 5.0  # cool-down over: half-open, two trial calls
        assert g.breakers["verifier"]["state"] == "half_open"
        assert g.decide("rag", dependency="verifier").allowed
        assert g.decide("rag", dependency="verifier").allowed
        assert not g.decide("rag", dependency="verifier").allowed  # trials used up
        g.report("verifier", ok=False)  # a failed trial opens it again
        assert g.breakers["verifier"]["state"] == "open"

        clock.t += 5.0
        assert g.decide("rag", dependency="verifier").allowed
        g.report("verifier", ok=True)  # a successful trial closes it
        assert g.breakers["verifier"]["state"] == "closed"
        assert all(g.decide("rag", dependency="verifier").allowed for _ in range(10))
        beat = g.heartbeat_payload()
        assert beat["breakers"]["verifier"]["state"] == "closed"
    finally:
        g.close()


def test_unreported_trials_rearm_after_another_cooldown() -> None:
    clock = Clock()
    g = Guard(None, lkg_path=None, clock=clock, breaker_failures=1, breaker_cooldown=5.0, breaker_trial_calls=1)
    try:
        g.report("search", ok=False)
        clock.t += 5
        assert g.decide("w", dependency="search").allowed  # the trial call...
        assert not g.decide("w", dependency="search").allowed  # ...whose outcome is never reported
        clock.t += 5
        assert g.decide("w", dependency="search").allowed
    finally:
        g.close()


def test_server_breaker_blocks_even_when_the_local_breaker_is_closed() -> None:
    g = Guard(None, lkg_path=None)
    try:
        g._apply_snapshot(snap(ctl(8, "breaker", {"state": "open"}, dependency="model-a")), source="poll")
        g.report("model-a", ok=True)
        d = g.decide("chat", dependency="model-a")
        assert not d.allowed and d.control_id == 8
    finally:
        g.close()


def test_action_decorator_runs_the_fallback_or_raises_blocked() -> None:
    g = Guard(None, lkg_path=None)
    try:
        g._apply_snapshot(snap(ctl(1, "kill_switch", {"fallback": "human_queue"}, workflow="refund-desk",
                                   action="issue_refund", tenant="acme")), source="poll")
        calls: list[str] = []

        def to_human(acct: str, tenant: str) -> str:
            calls.append(f"human:{acct}")
            return "queued for a person"

        @g.action("refund-desk", "issue_refund", fallback=to_human, tenant=lambda acct, tenant: tenant,
                  key=lambda acct, tenant: acct)
        def issue_refund(acct: str, tenant: str) -> str:
            calls.append(f"refund:{acct}")
            return "refunded"

        assert issue_refund("a1", "globex") == "refunded"
        assert issue_refund("a2", "acme") == "queued for a person"
        assert calls == ["refund:a1", "human:a2"]

        @g.action("refund-desk", "issue_refund", tenant="acme")
        def no_fallback() -> str:
            return "ran"

        with pytest.raises(Blocked) as err:
            no_fallback()
        assert err.value.decision.control_id == 1

        with g.action("refund-desk", "issue_refund", tenant="acme") as d:
            assert not d.allowed and d.fallback == "human_queue"

        @g.action("refund-desk", "issue_refund", fallback=lambda: "fallback", tenant="acme")
        async def issue_async() -> str:
            return "ran"

        assert asyncio.run(issue_async()) == "fallback"
    finally:
        g.close()


def test_action_declares_a_fail_closed_default() -> None:
    g = Guard(None, lkg_path=None)
    try:
        @g.action("payments", "transfer", fallback=lambda: "held", default="fail_closed")
        def transfer() -> str:
            return "sent"

        assert transfer() == "held"  # no snapshot ever loaded: the declared default applies
        assert g.heartbeat_payload()["defaults"]["payments.transfer"] == "fail_closed"
    finally:
        g.close()
