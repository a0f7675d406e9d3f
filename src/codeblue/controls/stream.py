"""The push stream: an in-process broadcaster and the Server-Sent Events generator.

The broadcaster is told about each revision right after its commit (``controls.revision``) and by a poll of
the revision log (the cross-replica safety net). It never blocks a writer: every subscriber has a bounded
queue on its event loop; a subscriber that falls behind is marked and resyncs from the revision log (or a
fresh snapshot) instead of slowing the others down.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread
from sqlalchemy import select

from codeblue.controls.model import RevisionLogEntry
from codeblue.controls.revision import StreamEntry, entry_from_row, environment_head, log_since, sse_frame
from codeblue.runtime import Runtime

HEARTBEAT = b": hb\n\n"
#: How many missed revisions a reconnecting or lagging client is sent from the log before it gets a snapshot.
MAX_CATCH_UP = 1000
_RESYNC = None


class Subscriber:
    """One connected stream: a bounded queue living on the stream's event loop."""

    def __init__(self, environment: str, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.environment = environment
        self.loop = loop
        self.queue: asyncio.Queue[StreamEntry | None] = asyncio.Queue(maxsize)
        self.overflowed = False

    def put(self, entry: StreamEntry) -> None:
        """Runs on the subscriber's loop. A full queue is dropped and replaced by a resync marker."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_RESYNC)


class Broadcaster:
    """Fan revisions out to every subscriber of their environment; safe to call from any thread."""

    def __init__(self, *, queue_size: int = 256, remember: int = 4096) -> None:
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscriber]] = {}
        self._published: OrderedDict[int, None] = OrderedDict()
        self._remember = remember
        #: The highest revision the log poller has looked at.
        self.polled = 0

    def subscribe(self, environment: str) -> Subscriber:
        sub = Subscriber(environment, asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            self._subs.setdefault(environment, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            subs = self._subs.get(sub.environment)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.environment]

    def subscriber_count(self, environment: str | None = None) -> int:
        with self._lock:
            if environment is not None:
                return len(self._subs.get(environment, ()))
            return sum(len(v) for v in self._subs.values())

    def already_published(self, revision: int) -> bool:
        with self._lock:
            return revision in self._published

    def publish(self, entries: list[StreamEntry]) -> None:
        """Hand entries to their environments' subscribers (one loop callback per event loop)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscriber, StreamEntry]]] = {}
        with self._lock:
            for e in entries:
                if e.revision in self._published:
                    continue
                self._published[e.revision] = None
                for sub in self._subs.get(e.environment, ()):
                    by_loop.setdefault(sub.loop, []).append((sub, e))
            while len(self._published) > self._remember:
                self._published.popitem(last=False)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: its streams are gone
                loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[Subscriber, StreamEntry]]) -> None:
    for sub, entry in items:
        sub.put(entry)


def poll_log(rt: Runtime, broadcaster: Broadcaster) -> int:
    """Publish revisions committed by other processes (or missed in-process); returns how many were new."""
    with rt.db.read() as s:
        revisions = list(
            s.scalars(
                select(RevisionLogEntry.revision)
                .where(RevisionLogEntry.revision > broadcaster.polled)
                .order_by(RevisionLogEntry.revision)
                .limit(MAX_CATCH_UP)
            )
        )
        if not revisions:
            return 0
        missing = [r for r in revisions if not broadcaster.already_published(r)]
        entries = (
            [
                entry_from_row(r)
                for r in s.scalars(
                    select(RevisionLogEntry)
                    .where(RevisionLogEntry.revision.in_(missing))
                    .order_by(RevisionLogEntry.revision)
                )
            ]
            if missing
            else []
        )
    if entries:
        broadcaster.publish(entries)
    broadcaster.polled = revisions[-1]
    return len(entries)


# ----- the SSE generator ---------------------------------------------------------------------------------


def _snapshot_frame(rt: Runtime, environment: str) -> tuple[int, bytes]:
    from codeblue.controls.service import snapshot

    with rt.db.read() as s:
        snap = snapshot(s, environment=environment, content=True, now=rt.clock.now())
    return int(snap["revision"]), sse_frame("snapshot", int(snap["revision"]), snap)


def _catch_up(rt: Runtime, environment: str, since: int) -> tuple[int, list[bytes]]:
    """The frames a client at revision `since` missed, from the log; a snapshot if the log cannot say."""
    with rt.db.read() as s:
        rows = log_since(s, environment=environment, after=since, limit=MAX_CATCH_UP)
        if not rows:
            head = environment_head(s, environment)
            if head == since:
                return since, []
        elif rows[0].prev == since and len(rows) < MAX_CATCH_UP and all(
            b.prev == a.revision for a, b in itertools.pairwise(rows)
        ):
            return rows[-1].revision, [entry_from_row(r).frame for r in rows]
    rev, frame = _snapshot_frame(rt, environment)
    return rev, [frame]


def _start(rt: Runtime, environment: str, last_event_id: str | None) -> tuple[int, list[bytes]]:
    if last_event_id is not None:
        try:
            since = int(last_event_id.strip())
        except ValueError:
            since = -1
        if since >= 0:
            return _catch_up(rt, environment, since)
    rev, frame = _snapshot_frame(rt, environment)
    return rev, [frame]


async def stream(
    rt: Runtime, broadcaster: Broadcaster, *, environment: str, last_event_id: str | None, heartbeat: float
) -> AsyncIterator[bytes]:
    """Snapshot (or the missed patches) on connect, then one patch per revision, heartbeats in between."""
    sub = broadcaster.subscribe(environment)  # before reading state, so nothing committed meanwhile is lost
    try:
        rev, frames = await to_thread.run_sync(_start, rt, environment, last_event_id)
        yield b"".join(frames) if frames else HEARTBEAT
        while True:
            try:
                async with asyncio.timeout(heartbeat):  # no extra task per message, unlike wait_for
                    entry = await sub.queue.get()
            except TimeoutError:
                yield HEARTBEAT
                continue
            out: list[bytes] = []
            while True:
                if entry is _RESYNC or (entry is not None and entry.revision > rev and entry.prev != rev):
                    sub.overflowed = False
                    rev, more = await to_thread.run_sync(_catch_up, rt, environment, rev)
                    out.extend(more)
                elif entry is not None and entry.revision > rev:
                    out.append(entry.frame)
                    rev = entry.revision
                if sub.queue.empty():
                    break
                entry = sub.queue.get_nowait()
            if out:
                yield b"".join(out)
    finally:
        broadcaster.unsubscribe(sub)


def broadcaster_of(rt: Runtime) -> Broadcaster:
    b: Any = rt.extras.get("controls.broadcaster")
    if not isinstance(b, Broadcaster):
        raise RuntimeError("controls wiring did not run: no broadcaster")
    return b
