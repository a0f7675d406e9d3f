"""Idempotent event intake: a batch sent with an ``Idempotency-Key`` header is stored once.

A sender that loses the answer to ``POST /v1/events`` (a timeout, a dropped connection, a 5xx) cannot know
whether the batch was stored; resending it blind would count its events twice — in the indicators, the
harm scope and the audit. The SDK sends every batch with a key and resends a batch whose fate is unknown
under the same key. The key is recorded in the transaction that stores the batch's events, so "stored"
and "key recorded" are one fact: a resend finds the key and gets the first answer back without storing
anything again. Keys are scoped to the sending principal and kept for `KEEP_S` (the SDK gives up far
sooner).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Float, Integer, String, Table, delete, insert, select
from sqlalchemy.orm import Session

from codeblue.errors import Invalid
from codeblue.store.db import Base

KEEP_S = 24 * 3600.0
MAX_KEY = 200

batches = Table(
    "intake_batches",
    Base.metadata,
    Column("principal", String(100), primary_key=True),
    Column("key", String(MAX_KEY), primary_key=True),
    Column("received_at", Float, nullable=False, index=True),
    Column("accepted", Integer, nullable=False),
    Column("rejected", JSON, nullable=False),
)


def check_key(key: str | None) -> str | None:
    """The header's value, or None when absent; Invalid (422) naming the header when it cannot be a key."""
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise Invalid(f"Idempotency-Key must be 1–{MAX_KEY} printable characters", field="Idempotency-Key")
    return key


def seen(s: Session, *, principal: str, key: str) -> tuple[int, list[dict[str, Any]]] | None:
    """(accepted, rejected) of the batch first sent under this key, if there was one."""
    row = s.execute(select(batches.c.accepted, batches.c.rejected)
                    .where(batches.c.principal == principal, batches.c.key == key)).first()
    return None if row is None else (int(row[0]), list(row[1] or []))


def record(s: Session, *, principal: str, key: str, accepted: int, rejected: list[dict[str, Any]],
           now: float) -> None:
    """Record the key in the caller's transaction (the one storing the events); a key recorded meanwhile by
    a concurrent resend makes the insert fail, and so the whole transaction: nothing is stored twice."""
    s.execute(insert(batches).values(principal=principal, key=key, received_at=now, accepted=accepted,
                                     rejected=rejected))


def purge(s: Session, *, now: float) -> int:
    """Forget keys older than `KEEP_S`."""
    return int(s.execute(delete(batches).where(batches.c.received_at < now - KEEP_S)).rowcount or 0)  # type: ignore[attr-defined]
