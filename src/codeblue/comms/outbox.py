"""The transactional outbox: every outbound side effect (pages, updates, reminders) is a row written in the
transaction of the change that caused it, with a unique dedup key, and delivered by the sender after commit.

`enqueue` is the seam other domains use (docs/architecture.md). The rest of this module is the storage side
of delivery: claiming due messages (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single SQLite writer
otherwise), recording each attempt, and the views the API shows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from codeblue.comms.model import STATES, DeliveryAttempt, OutboxMessage
from codeblue.errors import Invalid, NotFound
from codeblue.runtime import Runtime

WAKE = "comms.wake"


def wake_event(rt: Runtime) -> threading.Event:
    """The event the sender waits on between ticks; set right after a transaction that enqueued commits."""
    ev: threading.Event = rt.extras.setdefault(WAKE, threading.Event())
    return ev


def _wake_after_commit(s: Session, rt: Runtime) -> None:
    if s.info.get(WAKE):
        return
    s.info[WAKE] = True
    ev = wake_event(rt)

    def _after_commit(session: Session) -> None:
        session.info.pop(WAKE, None)
        ev.set()

    def _after_rollback(session: Session) -> None:
        session.info.pop(WAKE, None)

    event.listen(s, "after_commit", _after_commit, once=True)
    event.listen(s, "after_soft_rollback", _after_rollback, once=True)


def enqueue(
    s: Session,
    rt: Runtime,
    *,
    channel: str,
    kind: str,
    dedup_key: str,
    subject: str,
    body: str,
    to: list[str] | None = None,
    incident_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> OutboxMessage:
    """Queue one outbound message in the caller's transaction; the same `dedup_key` twice returns the first row.

    `channel` names a configured channel ("email", "slack", "webhook:<name>", "pagerduty"). A channel that is
    not configured (yet) does not refuse the message: the sender retries it and dead-letters it with the
    reason if the channel never appears, so the caller's state change is never lost.
    """
    if not channel or len(channel) > 100:
        raise Invalid("channel must be 1–100 characters", field="channel")
    if not kind or len(kind) > 32:
        raise Invalid("kind must be 1–32 characters", field="kind")
    if not dedup_key or len(dedup_key) > 255:
        raise Invalid("dedup_key must be 1–255 characters", field="dedup_key")
    existing = s.scalar(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key))
    if existing is not None:
        return existing
    now = rt.clock.now()
    values: dict[str, Any] = {
        "channel": channel,
        "kind": kind,
        "dedup_key": dedup_key,
        "subject": subject[:500],
        "body": body,
        "to": list(to or []),
        "incident_id": incident_id,
        "data": dict(data or {}),
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "last_error": "",
    }
    # Insert-or-ignore, so that two transactions racing on the same key both succeed and one row survives.
    dialect = s.get_bind().dialect.name
    ins = pg_insert(OutboxMessage) if dialect == "postgresql" else sqlite_insert(OutboxMessage)
    new_id = s.execute(
        ins.values(**values).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(OutboxMessage.id)
    ).scalar()
    row = s.get(OutboxMessage, new_id) if new_id is not None else None
    if row is None:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key))
        assert row is not None
    else:
        _wake_after_commit(s, rt)
    return row


# ----- the sender's side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A message claimed for one delivery attempt (a plain copy: the sender works outside any session)."""

    id: int
    channel: str
    kind: str
    dedup_key: str
    subject: str
    body: str
    to: tuple[str, ...]
    incident_id: int | None
    data: dict[str, Any]
    attempt: int
    created_at: float


def claim_due(s: Session, *, now: float, limit: int, lease: float) -> list[Claimed]:
    """Claim up to `limit` due messages (pending and due, or sending with an expired lease) for `lease` seconds."""
    q = (
        select(OutboxMessage)
        .where(
            or_(
                (OutboxMessage.state == "pending") & (OutboxMessage.next_attempt_at <= now),
                (OutboxMessage.state == "sending") & (OutboxMessage.claimed_until < now),
            )
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    out: list[Claimed] = []
    for m in s.scalars(q):
        m.state = "sending"
        m.attempts += 1
        m.claimed_until = now + lease
        m.updated_at = now
        out.append(
            Claimed(m.id, m.channel, m.kind, m.dedup_key, m.subject, m.body, tuple(m.to or ()), m.incident_id,
                    dict(m.data or {}), m.attempts, m.created_at)
        )
    return out


def next_due_at(s: Session) -> float | None:
    """When the earliest pending message becomes due (None when nothing is pending)."""
    return s.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.state == "pending"))


def record_attempt(
    s: Session,
    *,
    message_id: int,
    attempt: int,
    started_at: float,
    finished_at: float,
    outcome: str,
    status_code: int | None,
    error: str,
    retry_at: float | None,
) -> None:
    """Store the result of one attempt: delivered, retry at `retry_at`, or dead (dead-lettered)."""
    m = s.get(OutboxMessage, message_id)
    if m is None:
        return
    s.add(DeliveryAttempt(message_id=message_id, number=attempt, started_at=started_at, finished_at=finished_at,
                          outcome=outcome, status_code=status_code, error=error[:2000]))
    if m.state != "sending" or m.attempts != attempt:
        # Someone else re-claimed it after our lease ran out; their attempt decides the state.
        if outcome == "delivered" and m.state != "delivered":
            m.state, m.delivered_at, m.claimed_until = "delivered", finished_at, None
        return
    m.updated_at = finished_at
    m.last_status = status_code
    m.claimed_until = None
    if outcome == "delivered":
        m.state = "delivered"
        m.delivered_at = finished_at
        m.last_error = ""
    elif outcome == "dead":
        m.state = "dead"
        m.last_error = error
    else:
        m.state = "pending"
        m.next_attempt_at = retry_at if retry_at is not None else finished_at
        m.last_error = error


# ----- views -------------------------------------------------------------------------------------------


def get_message(s: Session, message_id: int) -> OutboxMessage:
    m = s.get(OutboxMessage, message_id)
    if m is None:
        raise NotFound(f"no outbox message {message_id}")
    return m


def attempts_of(s: Session, message_id: int) -> list[DeliveryAttempt]:
    return list(
        s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.message_id == message_id).order_by(DeliveryAttempt.id))
    )


def list_messages(
    s: Session,
    *,
    state: str | None = None,
    channel: str | None = None,
    incident_id: int | None = None,
    kind: str | None = None,
    limit: int = 200,
    before_id: int | None = None,
) -> list[OutboxMessage]:
    """Messages newest first, filtered."""
    if state is not None and state not in STATES:
        raise Invalid(f"unknown state {state!r}; allowed: {', '.join(STATES)}", field="state")
    q = select(OutboxMessage)
    if state:
        q = q.where(OutboxMessage.state == state)
    if channel:
        q = q.where(OutboxMessage.channel == channel)
    if incident_id is not None:
        q = q.where(OutboxMessage.incident_id == incident_id)
    if kind:
        q = q.where(OutboxMessage.kind == kind)
    if before_id is not None:
        q = q.where(OutboxMessage.id < before_id)
    return list(s.scalars(q.order_by(OutboxMessage.id.desc()).limit(max(1, min(limit, 1000)))))


def counts(s: Session) -> dict[str, int]:
    """How many messages are in each state."""
    out = dict.fromkeys(STATES, 0)
    for state, n in s.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)):
        out[state] = int(n)
    return out


def redeliveries(s: Session) -> int:
    """Attempts beyond the first, over all delivered messages: what the receivers had to deduplicate."""
    total = s.scalar(
        select(func.coalesce(func.sum(OutboxMessage.attempts - 1), 0)).where(OutboxMessage.state == "delivered")
    )
    return int(total or 0)


def retry_message(s: Session, *, message_id: int, now: float) -> OutboxMessage:
    """Put a dead-lettered message back in the queue (an operator's decision, after fixing the channel)."""
    m = get_message(s, message_id)
    if m.state != "dead":
        from codeblue.errors import Conflict

        raise Conflict(f"message {message_id} is {m.state}; only dead-lettered messages can be retried")
    m.state = "pending"
    m.attempts = 0
    m.next_attempt_at = now
    m.updated_at = now
    m.last_error = ""
    return m
