"""Live updates for console pages: one watcher per process tells open pages that something changed.

The watcher keeps a small fingerprint per topic — ``incidents`` (count and latest update of all incidents),
``incident:<id>`` (that incident's timeline length, update time and status), ``controls`` (the controls
revision), ``changes`` (the newest change id), ``sdk`` (connected SDK clients' last reports) — and compares
it on every round. A round runs right after a commit in this process that touched an incident, the controls
or the change log (hooks wake it), and at the latest every ``console_poll_s`` seconds, which catches writes
made by other replicas sharing the database. Subscribers (one per open SSE stream) get the set of topics that
changed; the page then re-fetches only the fragments that show them. Nothing runs while no page is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from codeblue.runtime import Runtime

log = logging.getLogger(__name__)

EXTRAS_KEY = "web.watch"
TICK_TOPIC = "tick"
TICK_EVERY_S = 30.0


@dataclass(eq=False)
class Subscriber:
    topics: frozenset[str]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[set[str]] = field(default_factory=lambda: asyncio.Queue(maxsize=64))

    def deliver(self, changed: set[str]) -> None:
        def put() -> None:
            if self.queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    pending = self.queue.get_nowait()
                    changed.update(pending)
            self.queue.put_nowait(changed)

        with contextlib.suppress(RuntimeError):  # the loop closed under us (server shutting down)
            self.loop.call_soon_threadsafe(put)


class Watcher:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._subs: set[Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] = {}
        self._last_tick = 0.0
        self.rounds = 0

    # ----- subscriptions ----------------------------------------------------------------------------------

    def subscribe(self, topics: Iterable[str], loop: asyncio.AbstractEventLoop) -> Subscriber:
        sub = Subscriber(frozenset(topics) | {TICK_TOPIC}, loop)
        with self._lock:
            self._subs.add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="console-watch", daemon=True)
                self._thread.start()
        self.wake.set()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)
        self.wake.set()

    def baseline(self, topics: Iterable[str]) -> dict[str, Any]:
        """The current fingerprints of `topics` (read now, not from the last round)."""
        with self.rt.db.read() as s:
            return self._fingerprints(s, set(topics))

    def prime(self, topics: Iterable[str]) -> None:
        """Record the current fingerprints of topics nobody watched yet, before a stream subscribes to them: a
        change committed after this is reported to it; one committed before is in what the page fetches when
        the stream says hello. Blocking (reads the database): call it from a worker thread."""
        with self._lock:
            missing = [t for t in topics if t not in self._last]
        if not missing:
            return
        fresh = self.baseline(missing)
        with self._lock:
            for k, v in fresh.items():
                self._last.setdefault(k, v)

    # ----- the loop ---------------------------------------------------------------------------------------

    def _wanted(self) -> set[str]:
        with self._lock:
            return set().union(*(sub.topics for sub in self._subs)) if self._subs else set()

    def _run(self) -> None:
        while True:
            wanted = self._wanted()
            if not wanted:
                with self._lock:
                    if not self._subs:
                        self._thread = None
                        return
            try:
                self._round(wanted)
            except Exception:
                log.exception("console watcher round failed")
            self.wake.wait(max(self.rt.settings.console_poll_s, 0.05))
            self.wake.clear()

    def _round(self, wanted: set[str]) -> None:
        with self.rt.db.read() as s:
            now = self._fingerprints(s, wanted)
        self.rounds += 1
        with self._lock:
            changed = {t for t, v in now.items() if t in self._last and self._last[t] != v}
            self._last.update(now)
        mono = time.monotonic()
        if mono - self._last_tick >= TICK_EVERY_S:
            if self._last_tick:
                changed.add(TICK_TOPIC)
            self._last_tick = mono
        if not changed:
            return
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            hit = changed & sub.topics
            if hit:
                sub.deliver(set(hit))

    def _fingerprints(self, s: Session, topics: set[str]) -> dict[str, Any]:
        from codeblue.incidents.model import Incident

        out: dict[str, Any] = {}
        if "incidents" in topics:
            out["incidents"] = tuple(s.execute(select(func.count(Incident.id), func.max(Incident.updated_at))).one())
        ids = [int(t.split(":", 1)[1]) for t in topics if t.startswith("incident:") and t.split(":", 1)[1].isdigit()]
        if ids:
            rows = s.execute(select(Incident.id, Incident.chain_count, Incident.updated_at, Incident.status)
                             .where(Incident.id.in_(ids))).all()
            seen = {r[0]: (r[1], r[2], r[3]) for r in rows}
            for i in ids:
                out[f"incident:{i}"] = seen.get(i)
        if "controls" in topics:
            from codeblue.controls.revision import current_revision

            out["controls"] = current_revision(s)
        if "changes" in topics:
            from codeblue.changes.model import Change

            out["changes"] = s.scalar(select(func.max(Change.id)))
        if "sdk" in topics:
            from codeblue.controls.clients.model import SdkClient

            out["sdk"] = tuple(s.execute(select(func.count(SdkClient.id), func.max(SdkClient.last_seen))).one())
        return out


def watcher(rt: Runtime) -> Watcher:
    w = rt.extras.get(EXTRAS_KEY)
    if not isinstance(w, Watcher):
        w = Watcher(rt)
        rt.extras[EXTRAS_KEY] = w
    return w


def wake_after_commit(s: Session, rt: Runtime) -> None:
    """Hook subscriber body: run a watcher round as soon as this transaction commits."""
    w = rt.extras.get(EXTRAS_KEY)
    if not isinstance(w, Watcher):
        return

    if s.info.get(EXTRAS_KEY):
        return
    s.info[EXTRAS_KEY] = True

    def _set(session: Session) -> None:
        session.info.pop(EXTRAS_KEY, None)
        w.wake.set()

    def _clear(session: Session) -> None:
        session.info.pop(EXTRAS_KEY, None)

    event.listen(s, "after_commit", _set, once=True)
    event.listen(s, "after_rollback", _clear, once=True)
