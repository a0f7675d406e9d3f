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
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.orm import Session

from codeblue.store.db import Database

T = TypeVar("T")
Write = Callable[[Session], Any]

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
        self.pending: list[tuple[Write, asyncio.Future[Any]]] = []
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
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            q = self._queues[loop] = _Queue()
        fut: asyncio.Future[Any] = loop.create_future()
        q.pending.append((fn, fut))
        if not q.running:
            q.running = True
            # started on the next turn of the loop, so requests read in this turn join the same round
            q.task = loop.create_task(self._drain(q))
        return await fut  # type: ignore[no-any-return]

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

    async def _round(self, batch: list[tuple[Write, asyncio.Future[Any]]]) -> None:
        fns = [fn for fn, _ in batch]

        def run_all(s: Session) -> list[Any]:
            return [fn(s) for fn in fns]

        try:
            results = await run_one(self.db, run_all)
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(RuntimeError("the server is stopping"))
            raise
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            # Something in the round failed and everything in it was rolled back: each write on its own now.
            self.split_rounds += 1
            for fn, fut in batch:
                try:
                    _settle(fut, result=await run_one(self.db, fn))
                except asyncio.CancelledError:
                    raise
                except Exception as one:
                    _settle(fut, exc=one)
            self.rounds += len(batch)
            self.writes += len(batch)
            return
        self.rounds += 1
        self.writes += len(batch)
        for (_, fut), result in zip(batch, results, strict=True):
            _settle(fut, result=result)


def _settle(fut: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():  # the caller went away (client disconnected); the write itself stands
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
