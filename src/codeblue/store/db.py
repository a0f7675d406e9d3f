"""The database: one engine, a read session and a write session.

SQLite runs in WAL mode; write transactions start with ``BEGIN IMMEDIATE`` so two writers never both read
the same chain head and then collide. PostgreSQL uses row locks (``SELECT … FOR UPDATE``) where a domain
needs a serial order (timeline chains, config activations).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import JSON, Engine, MetaData, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, list[str]: JSON}


T = TypeVar("T")
BUSY_TIMEOUT_MS = 30000
_BUSY_TIMEOUT = f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}"
_BEGIN = {mode: f"BEGIN {mode}" for mode in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")}


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(_BUSY_TIMEOUT)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        options = conn.get_execution_options()
        begin = _BEGIN[options.get("sqlite_begin", "DEFERRED")]
        # Straight on the driver: SQLAlchemy's statement machinery costs more than these statements.
        raw = conn.connection.driver_connection
        if not options.get("sqlite_nowait"):
            raw.execute(begin)
            return
        # Fail at once (SQLITE_BUSY) instead of waiting when another process holds the write lock.
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute(begin)
        finally:
            raw.execute(_BUSY_TIMEOUT)


class Database:
    """Holds the engine and hands out sessions; one per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
            else:
                # Hand out the most recently used connection: each SQLite connection has its own page cache, and
                # reusing the warm one cut the page reads of an intake batch by about a third (strace; the intake
                # bench shows no throughput change beyond its noise).
                kwargs["pool_use_lifo"] = True
        else:
            # No pre-ping: it costs a round trip per request; recycle idle connections instead.
            kwargs.update(pool_size=20, max_overflow=20, pool_recycle=1800)
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _sqlite_setup(self.engine)
            write_bind: Engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            nowait_bind: Engine = self.engine.execution_options(sqlite_begin="IMMEDIATE", sqlite_nowait=True)
        else:
            write_bind = nowait_bind = self.engine
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write = sessionmaker(bind=write_bind, expire_on_commit=False)
        self._write_nowait = sessionmaker(bind=nowait_bind, expire_on_commit=False)
        # SQLite has one writer at a time; queueing writers of this process on a lock hands the database over
        # the moment it is free, where SQLite's busy handler would sleep and poll (and explode tail latency).
        # Re-entrant, so a write opened inside another write in the same thread behaves as before.
        self._gate: threading.RLock | None = threading.RLock() if self.is_sqlite else None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing it does is committed."""
        with self._read() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work commits once, at the end, or rolls back on any exception."""
        if self._gate is None:
            with self._write() as session:
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
            return
        with self._gate, self._write() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def write_if_free(self, fn: Callable[[Session], T]) -> tuple[bool, T | None]:
        """Run `fn(session)` in one write transaction now if that needs no waiting, else return (False, None).

        SQLite only (PostgreSQL always answers False): when no writer of this process holds the gate and no
        other process holds the database's write lock, the transaction runs at once in the calling thread —
        an event loop can then do a short write without a thread hop. Nothing has run when this returns False;
        an exception from `fn` rolls the transaction back and propagates, as with `write()`.
        """
        if self._gate is None or not self._gate.acquire(blocking=False):
            return False, None
        try:
            with self._write_nowait() as session:
                try:
                    session.connection()  # BEGIN IMMEDIATE, failing at once if another process writes
                except (OperationalError, sqlite3.OperationalError):  # the begin event raises the driver's own
                    return False, None
                try:
                    result = fn(session)
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
                return True, result
        finally:
            self._gate.release()

    def dispose(self) -> None:
        self.engine.dispose()
