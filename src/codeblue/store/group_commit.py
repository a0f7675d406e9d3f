"""Group commit: short write transactions from concurrent async requests, coalesced into one transaction.

Thirty-two clients appending notes each paid for a transaction of their own: a session, a ``BEGIN``, a
``COMMIT`` (an fsync on PostgreSQL) and, on PostgreSQL, a hop to a worker thread and back. Here the requests
that arrive while a transaction is running queue up, and the next transaction runs all of them: one
``BEGIN``/``COMMIT`` and one thread hop per round, however many writes it carries.

Semantics are those of one transaction per write, as far as a caller can tell:

- A caller's future resolves only after the transaction holding its write has committed, so an acknowledged
  write is durable (the crash tests kill the server while clients append).
- Writes run in arrival order; a timeline chain stays serial because each append reads the head the previous
  one (in the same transaction or an earlier one) left.
- When any write of a round raises, or the commit fails, the round is rolled back and every write in it is
  run again in a transaction of its own, so one bad request (an unknown incident, a closed one) fails alone
  and the others are unaffected. Writes given here must therefore keep their side effects inside the session
  (hooks that act after commit register session events, which a rollback discards).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.orm import Session

from codeblue.store.db import Database

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
Write = Callable[[Session], Any]
# A batch writer: all the items of one kind queued for a round, written together; one result per item, in order
# — a value, or an exception for an item that failed alone (it must then have written nothing).
BatchWrite = Callable[[Session, list[Any]], list[Any]]


class _Batched:
    """A queued item for a batch writer (see `GroupCommit.submit_batched`)."""

    __slots__ = ("fn", "item")

    def __init__(self, fn: BatchWrite, item: Any) -> None:
        self.fn = fn
        self.item = item

MAX_BATCH = 64  # writes per transaction; bounds how long one round holds locks (or the event loop, on SQLite)


def _run_in_thread(db: Database, fn: Callable[[Session], T]) -> T:
    with db.write() as s:
        return fn(s)


async def run_one(db: Database, fn: Callable[[Session], T]) -> T:
    """One write transaction from async code: on the event loop when SQLite is free, else in a worker thread."""
    done, result = db.write_if_free(fn)
    if done:
        return result  # type: ignore[return-value]
    return await anyio.to_thread.run_sync(_run_in_thread, db, fn)


class _Queue:
    """The writes waiting on one event loop, and whether a round is running."""

    def __init__(self) -> None:
        self.pending: list[tuple[Write | _Batched, asyncio.Future[Any]]] = []
        self.running = False
        self.task: asyncio.Task[None] | None = None


class GroupCommit:
    """Coalesces concurrent `submit()`s on the same event loop into shared write transactions."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.db = db
        self.max_batch = max_batch
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()
        # counters, for the benchmark and for anyone wondering how well grouping works under their load
        self.rounds = 0
        self.writes = 0
        self.split_rounds = 0

    async def submit(self, fn: Callable[[Session], T]) -> T:
        """Run `fn(session)` in a write transaction shared with other writes queued meanwhile; return its result
        once that transaction has committed, or raise what `fn` raised (then nothing of `fn` is committed)."""
        return await self._enqueue(fn)  # type: ignore[no-any-return]

    async def submit_batched(self, fn: Callable[[Session, list[I]], list[Any]], item: I) -> Any:
        """Like `submit`, for writes that are cheaper together: the items queued for the same `fn` in a round
        are passed to one call of `fn(session, items)`, which returns one result per item, in order — a value,
        or an exception instance for an item that failed alone (and wrote nothing). Raises that exception."""
        return await self._enqueue(_Batched(fn, item))

    async def _enqueue(self, entry: Write | _Batched) -> Any:
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            q = self._queues[loop] = _Queue()
        fut: asyncio.Future[Any] = loop.create_future()
        q.pending.append((entry, fut))
        if not q.running:
            q.running = True
            # started on the next turn of the loop, so requests read in this turn join the same round
            q.task = loop.create_task(self._drain(q))
        return await fut

    async def _drain(self, q: _Queue) -> None:
        try:
            while q.pending:
                batch = q.pending[: self.max_batch]
                del q.pending[: self.max_batch]
                await self._round(batch)
        except BaseException as exc:  # cancelled at shutdown: nobody may wait for ever
            for _, fut in q.pending:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError("the server is stopping"))
            q.pending.clear()
            raise
        finally:
            q.running = False

    async def _round(self, batch: list[tuple[Write | _Batched, asyncio.Future[Any]]]) -> None:
        entries = [entry for entry, _ in batch]

        def run_all(s: Session) -> list[_Outcome]:
            return _run_entries(s, entries)

        try:
            results = await run_one(self.db, run_all)
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(RuntimeError("the server is stopping"))
            raise
        except Exception as exc:
            if len(batch) == 1:
                self.rounds += 1  # a round that failed is still a round (and a write) run
                self.writes += 1
                _settle(batch[0][1], exc=exc)
                return
            # Something in the round failed and everything in it was rolled back: each write on its own now.
            self.split_rounds += 1
            for entry, fut in batch:
                try:
                    (outcome,) = await run_one(self.db, functools.partial(_run_alone, entry))
                except asyncio.CancelledError:
                    raise
                except Exception as one:
                    _settle(fut, exc=one)
                else:
                    outcome.settle(fut)
            self.rounds += len(batch)
            self.writes += len(batch)
            return
        self.rounds += 1
        self.writes += len(batch)
        for (_, fut), outcome in zip(batch, results, strict=True):
            outcome.settle(fut)


class _Outcome:
    """What one queued write came to inside a round: a result, or an exception it failed alone with."""

    __slots__ = ("exc", "result")

    def __init__(self, result: Any = None, exc: BaseException | None = None) -> None:
        self.result = result
        self.exc = exc

    def settle(self, fut: asyncio.Future[Any]) -> None:
        _settle(fut, result=self.result, exc=self.exc)


def _run_alone(entry: Write | _Batched, s: Session) -> list[_Outcome]:
    return _run_entries(s, [entry])


def _run_entries(s: Session, entries: list[Write | _Batched]) -> list[_Outcome]:
    """Run a round's writes in arrival order; the items of each batch writer in one call, at the place of the
    first of them (writers of different kinds are independent)."""
    out: list[_Outcome | None] = [None] * len(entries)
    groups: dict[int, tuple[BatchWrite, list[int]]] = {}
    for i, e in enumerate(entries):
        if isinstance(e, _Batched):
            groups.setdefault(id(e.fn), (e.fn, []))[1].append(i)
    done: set[int] = set()
    for i, e in enumerate(entries):
        if not isinstance(e, _Batched):
            out[i] = _Outcome(result=e(s))
            continue
        key = id(e.fn)
        if key in done:
            continue
        done.add(key)
        fn, slots = groups[key]
        results = fn(s, [entries[j].item for j in slots])  # type: ignore[union-attr]
        if len(results) != len(slots):
            raise RuntimeError(f"batch writer {fn!r} returned {len(results)} results for {len(slots)} items")
        for j, r in zip(slots, results, strict=True):
            out[j] = _Outcome(exc=r) if isinstance(r, BaseException) else _Outcome(result=r)
    return [o for o in out if o is not None]


def _settle(fut: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():  # the caller went away (client disconnected); the write itself stands
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
