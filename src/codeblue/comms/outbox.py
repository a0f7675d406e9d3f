"""The transactional outbox: every outbound side effect (pages, updates, reminders) is a row written in the
transaction of the change that caused it, with a unique dedup key, and delivered by the sender after commit.

`enqueue` is the seam other domains use (docs/architecture.md). The rest of this module is the storage side
of delivery: claiming due messages (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single SQLite writer
otherwise), recording each attempt, and the views the API shows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, event, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, make_transient_to_detached

from codeblue.comms.model import STATES, DeliveryAttempt, OutboxMessage
from codeblue.errors import Invalid, NotFound
from codeblue.runtime import Runtime

WAKE = "comms.wake"
_TABLE = cast(Table, OutboxMessage.__table__)
_PG_INSERT = pg_insert(_TABLE).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(_TABLE.c.id)


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

    def _after_rollback(session: Session, previous: Any) -> None:
        if previous.parent is None:  # the whole transaction, not a savepoint
            session.info.pop(WAKE, None)

    event.listen(s, "after_commit", _after_commit, once=True)
    event.listen(s, "after_soft_rollback", _after_rollback)


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
    postgres = s.get_bind().dialect.name == "postgresql"
    if not postgres:
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
    if postgres:
        # Several replicas may race on one key: insert-or-ignore keeps one row and both callers succeed.
        new_id = s.execute(_PG_INSERT, values).scalar()
        if new_id is None:
            existing = s.scalar(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key))
            assert existing is not None
            return existing
        row = OutboxMessage(id=new_id, **values)
        make_transient_to_detached(row)  # it is in the database already: attach it as loaded, without a query
        s.add(row)
    else:
        # SQLite write transactions are serialised (BEGIN IMMEDIATE), so the check above is authoritative.
        row = OutboxMessage(**values)
        s.add(row)
        s.flush()  # callers may use row.id at once (e.g. to show the message on a timeline entry)
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
    """Claim up to `limit` due messages (pending and due, or sending with an expired lease) for `lease` seconds.

    Core statements, not ORM units of work: this is the sender's hot path.
    """
    c = _TABLE.c
    q = (
        select(c.id, c.channel, c.kind, c.dedup_key, c.subject, c.body, c.to, c.incident_id, c.data, c.attempts,
               c.created_at)
        .where(
            or_(
                (c.state == "pending") & (c.next_attempt_at <= now),
                (c.state == "sending") & (c.claimed_until < now),
            )
        )
        .order_by(c.next_attempt_at, c.id)
        .limit(limit)
    )
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = s.execute(q).all()
    if not rows:
        return []
    s.execute(
        update(_TABLE).where(c.id.in_([r.id for r in rows]))
        .values(state="sending", attempts=c.attempts + 1, claimed_until=now + lease, updated_at=now)
    )
    return [
        Claimed(r.id, r.channel, r.kind, r.dedup_key, r.subject, r.body, tuple(r.to or ()), r.incident_id,
                dict(r.data or {}), r.attempts + 1, r.created_at)
        for r in rows
    ]


def has_due(s: Session, *, now: float) -> bool:
    """Whether anything is ready to claim (a read, so an idle sender never takes the write lock)."""
    c = _TABLE.c
    q = select(c.id).where(
        or_((c.state == "pending") & (c.next_attempt_at <= now), (c.state == "sending") & (c.claimed_until < now))
    ).limit(1)
    return s.execute(q).first() is not None


def next_due_at(s: Session) -> float | None:
    """When the earliest pending message becomes due (None when nothing is pending)."""
    return s.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.state == "pending"))


@dataclass(frozen=True)
class AttemptResult:
    message_id: int
    attempt: int
    started_at: float
    finished_at: float
    outcome: str  # delivered | retry | dead
    status_code: int | None
    error: str
    retry_at: float | None


_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_RECORD = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("_id"))
    .values(state=bindparam("_state"), updated_at=bindparam("_updated_at"), last_status=bindparam("_last_status"),
            claimed_until=None, delivered_at=bindparam("_delivered_at"), last_error=bindparam("_last_error"),
            next_attempt_at=bindparam("_next_attempt_at"))
)


def record_many(s: Session, results: list[AttemptResult]) -> list[int]:
    """Store the results of a batch of attempts in three statements (the sender's hot path).

    A result only decides the message's state when the message is still claimed by that attempt; if its
    lease ran out and another attempt re-claimed it, only a confirmation is taken (delivered stays delivered).
    Returns the ids of the messages this batch dead-lettered.
    """
    if not results:
        return []
    c = _TABLE.c
    current = {r.id: r for r in s.execute(
        select(c.id, c.state, c.attempts, c.next_attempt_at, c.delivered_at, c.last_error, c.last_status)
        .where(c.id.in_([x.message_id for x in results]))
    )}
    attempts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    dead: list[int] = []
    for x in results:
        row = current.get(x.message_id)
        if row is None:
            continue
        attempts.append({"message_id": x.message_id, "number": x.attempt, "started_at": x.started_at,
                         "finished_at": x.finished_at, "outcome": x.outcome, "status_code": x.status_code,
                         "error": x.error[:2000]})
        ours = row.state == "sending" and row.attempts == x.attempt
        if not ours and not (x.outcome == "delivered" and row.state != "delivered"):
            continue
        if x.outcome == "dead":
            dead.append(x.message_id)
        updates.append({
            "_id": x.message_id,
            "_state": "pending" if x.outcome == "retry" else x.outcome,
            "_updated_at": x.finished_at,
            "_last_status": x.status_code,
            "_delivered_at": x.finished_at if x.outcome == "delivered" else row.delivered_at,
            "_last_error": "" if x.outcome == "delivered" else x.error,
            "_next_attempt_at": (x.retry_at if x.retry_at is not None else x.finished_at)
            if x.outcome == "retry" else row.next_attempt_at,
        })
    if attempts:
        s.execute(insert(_ATTEMPTS), attempts)
    if updates:
        s.connection().execute(_RECORD, updates)
    return dead


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
