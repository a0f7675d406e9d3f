"""Helpers for the SDK tests: a Guard tuned for tests, waiting on a condition, setting controls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from codeblue.sdk import Guard
from tests.support import wait_for as wait_for  # the SDK tests import it from here


def test_guard(url: str | None, token: str | None, tmp: Path, **kw: Any) -> Guard:
    """A Guard with short intervals, its last-known-good file under `tmp`."""
    opts: dict[str, Any] = {
        "service": "support-bot",
        "lkg_path": tmp / "lkg.json",
        "heartbeat_interval": 0.5,
        "poll_interval": 30.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.5,
        "flush_interval": 0.1,
        "stale_after": 2.0,
        "timeout": 5.0,
    }
    opts.update(kw)
    return Guard(url, token, **opts)


test_guard.__test__ = False  # type: ignore[attr-defined]


def set_control(client: httpx.Client, type: str, scope: dict[str, str], params: dict[str, Any] | None = None,
                reason: str = "test containment", **extra: Any) -> dict[str, Any]:
    body = {"type": type, "scope": scope, "params": params or {}, "reason": reason, **extra}
    if "expires_at" not in extra and "ttl_s" not in extra:
        body.setdefault("lift_condition", "lifted by the test")
    r = client.post("/v1/controls", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def lift(client: httpx.Client, control_id: int) -> dict[str, Any]:
    r = client.delete(f"/v1/controls/{control_id}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out
