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

import json
from typing import Any

from sqlalchemy import JSON, Column, Engine, Float, Integer, String, Table, delete
from sqlalchemy.exc import IntegrityError
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


# Both statements go straight to the driver: they run once per keyed batch (every SDK batch), where a
# session, SQLAlchemy's statement machinery and its JSON type cost ~10x the indexed lookup or insert itself.
_SEEN_SQL = "SELECT accepted, rejected FROM intake_batches WHERE principal = {0} AND key = {0}"
_RECORD_SQL = "INSERT INTO intake_batches (principal, key, received_at, accepted, rejected) VALUES ({0}, {0}, {0}, {0}, {0})"


def _sql(template: str, paramstyle: str) -> str:
    return template.format("?" if paramstyle == "qmark" else "%s")


def lookup(engine: Engine, *, principal: str, key: str) -> tuple[int, list[dict[str, Any]]] | None:
    """(accepted, rejected) of the batch first sent under this key, if there was one: one indexed read on a
    pooled driver connection, outside any session and transaction."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        try:
            cur.execute(_sql(_SEEN_SQL, engine.dialect.paramstyle), (principal, key))
            row = cur.fetchone()
        finally:
            cur.close()
    finally:
        raw.close()  # back to the pool (which rolls back what the read opened)
    if row is None:
        return None
    rejected = row[1]
    if isinstance(rejected, str | bytes):  # SQLite hands back the JSON text; psycopg has decoded it already
        rejected = json.loads(rejected)
    return int(row[0]), list(rejected or [])


def record(s: Session, *, principal: str, key: str, accepted: int, rejected: list[dict[str, Any]],
           now: float) -> None:
    """Record the key in the caller's transaction (the one storing the events); a key recorded meanwhile by
    a concurrent resend makes the insert fail with IntegrityError, and so the whole transaction: nothing is
    stored twice. `rejected` is written as `json.dumps` text, as SQLAlchemy's JSON type wrote it."""
    conn = s.connection()
    dialect = conn.dialect
    value: Any = json.dumps(rejected)
    if dialect.name == "postgresql":
        from psycopg.types.json import Json

        value = Json(rejected, dumps=json.dumps)
    sql = _sql(_RECORD_SQL, dialect.paramstyle)
    params = (principal, key, now, accepted, value)
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql, params)
    except dialect.loaded_dbapi.IntegrityError as exc:
        raise IntegrityError(sql, params, exc) from exc
    finally:
        cur.close()


def purge(s: Session, *, now: float) -> int:
    """Forget keys older than `KEEP_S`."""
    return int(s.execute(delete(batches).where(batches.c.received_at < now - KEEP_S)).rowcount or 0)  # type: ignore[attr-defined]
