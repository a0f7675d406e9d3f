"""SDK self-reports: store each Guard's latest heartbeat and show the fleet with computed staleness.

A Guard that is stale, deciding from its per-action defaults (silently failing open is the failure users of
other guardrail tools complain about), holding an open local breaker, dropping events, or no longer
reporting at all is flagged here, so containment that is not actually being enforced is visible.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from codeblue.controls.clients.model import SdkClient
from codeblue.controls.revision import environment_head
from codeblue.runtime import Runtime

#: Problems, worst first; a client's `status` is its worst problem, or "ok".
PROBLEMS = ("failing_open", "failing_closed", "silent", "stale", "behind", "breaker_open", "dropping_events")


def record_heartbeat(s: Session, rt: Runtime, *, report: dict[str, Any], reported_by: str) -> SdkClient:
    """Upsert the client's row from one validated heartbeat (see api.HeartbeatIn)."""
    now = rt.clock.now()
    client = s.scalar(select(SdkClient).where(SdkClient.client_id == report["client_id"]))
    if client is None:
        client = SdkClient(client_id=report["client_id"], first_seen=now, heartbeats=0)
        s.add(client)
    defaults: dict[str, str] = report.get("defaults") or {}
    breakers: dict[str, Any] = report.get("breakers") or {}
    events: dict[str, Any] = report.get("events") or {}
    client.service = report.get("service") or ""
    client.environment = report["environment"]
    client.host = report.get("host") or ""
    client.pid = report.get("pid")
    client.sdk_version = report.get("sdk_version") or ""
    client.revision = int(report.get("revision") or 0)
    client.source = report.get("source") or "default"
    client.stale_for = report.get("stale_for")
    client.connected = bool(report.get("connected"))
    client.on_defaults = bool(report.get("on_defaults"))
    client.fail_open = sum(1 for mode in defaults.values() if mode == "fail_open")
    client.breakers_open = sum(
        1 for b in breakers.values() if isinstance(b, dict) and b.get("state") in ("open", "half_open")
    )
    client.events_dropped = int(events.get("dropped") or 0)
    client.closed = bool(report.get("closing"))
    client.report = report
    client.reported_by = reported_by
    client.last_seen = now
    client.heartbeats = (client.heartbeats or 0) + 1
    s.flush()
    return client


def client_view(c: SdkClient, *, now: float, head: int, stale_after: float, silent_after: float) -> dict[str, Any]:
    """The API shape of one client, with staleness computed at `now` and its problems named."""
    silent_for = max(0.0, now - c.last_seen)
    stale_now = None if c.stale_for is None else c.stale_for + silent_for
    behind = max(0, head - c.revision) if c.source != "default" else head
    problems: list[str] = []
    if not c.closed:
        if c.on_defaults:
            problems.append("failing_open" if c.fail_open else "failing_closed")
        if silent_for > silent_after:
            problems.append("silent")
        if (stale_now is None or stale_now > stale_after) and not c.on_defaults:
            problems.append("stale")
        if behind > 0 and not c.on_defaults:
            problems.append("behind")
        if c.breakers_open:
            problems.append("breaker_open")
        if c.events_dropped:
            problems.append("dropping_events")
    problems.sort(key=PROBLEMS.index)
    report = c.report or {}
    return {
        "client_id": c.client_id,
        "service": c.service,
        "environment": c.environment,
        "host": c.host,
        "pid": c.pid,
        "sdk_version": c.sdk_version,
        "status": "closed" if c.closed else (problems[0] if problems else "ok"),
        "problems": problems,
        "revision": c.revision,
        "server_revision": head,
        "behind": behind,
        "source": c.source,
        "connected": c.connected,
        "stale_for": None if stale_now is None else round(stale_now, 3),
        "reported_stale_for": c.stale_for,
        "silent_for": round(silent_for, 3),
        "on_defaults": c.on_defaults,
        "default": report.get("default"),
        "defaults": report.get("defaults") or {},
        "breakers": report.get("breakers") or {},
        "events": report.get("events") or {},
        "stream": report.get("stream") or {},
        "last_error": report.get("last_error"),
        "reported_by": c.reported_by,
        "first_seen": c.first_seen,
        "last_seen": c.last_seen,
        "heartbeats": c.heartbeats,
    }


def list_clients(
    s: Session,
    rt: Runtime,
    *,
    environment: str | None = None,
    service: str | None = None,
    include_gone: bool = False,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Connected Guards, those with problems first. `include_gone` adds closed and long-silent ones."""
    now = rt.clock.now()
    settings = rt.settings
    q = select(SdkClient)
    if environment is not None:
        q = q.where(SdkClient.environment == environment)
    if service is not None:
        q = q.where(SdkClient.service == service)
    if not include_gone:
        q = q.where(SdkClient.closed.is_(False), SdkClient.last_seen >= now - settings.sdk_client_gone_s)
    rows = list(s.scalars(q.order_by(SdkClient.last_seen.desc()).limit(limit)))
    heads: dict[str, int] = {}
    out = []
    for c in rows:
        if c.environment not in heads:
            heads[c.environment] = environment_head(s, c.environment)
        out.append(
            client_view(c, now=now, head=heads[c.environment], stale_after=settings.sdk_stale_after_s,
                        silent_after=settings.sdk_silent_after_s)
        )
    rank = {p: i for i, p in enumerate(PROBLEMS)}
    out.sort(key=lambda v: (rank.get(v["status"], len(PROBLEMS) + (1 if v["status"] == "closed" else 0)),
                            v["service"], v["host"], v["pid"] or 0))
    return out


def prune(s: Session, rt: Runtime) -> int:
    """Forget clients that have not reported for the retention period."""
    cutoff = rt.clock.now() - rt.settings.sdk_client_retention_s
    res = s.execute(delete(SdkClient).where(SdkClient.last_seen < cutoff).execution_options(synchronize_session=False))
    return int(getattr(res, "rowcount", 0) or 0)
