"""What a running server holds: settings, database, clock, server key, background jobs.

Built once by ``app.create_app`` and reachable from routes as ``request.app.state.rt``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeblue.clock import Clock
from codeblue.settings import Settings
from codeblue.store.db import Database

log = logging.getLogger(__name__)


def load_server_key(settings: Settings) -> bytes:
    """The HMAC key for timeline chains and signed links. Never stored in the database."""
    if settings.server_key:
        return settings.server_key.encode("utf-8")
    path = settings.key_file
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


@dataclass
class Job:
    """A periodic background job: `fn(rt)` every `every` seconds of the server clock."""

    name: str
    every: float
    fn: Callable[[Runtime], None]
    #: Set this event to run the job now instead of at its next interval (e.g. right after a commit).
    wake: threading.Event | None = None


@dataclass
class Runtime:
    settings: Settings
    db: Database
    clock: Clock
    server_key: bytes
    jobs: list[Job] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start_jobs(self) -> None:
        speed = max(self.settings.clock_speed, 1e-9)
        for job in self.jobs:
            t = threading.Thread(target=self._loop, args=(job, speed), name=f"job-{job.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self, job: Job, speed: float) -> None:
        while not self._stop.is_set():
            if job.wake is not None:
                job.wake.clear()  # a wake that arrives while the job runs is kept for the next round
            try:
                job.fn(self)
            except Exception:
                log.exception("background job %s failed", job.name)
            timeout = max(job.every / speed, 0.01)
            if job.wake is not None:
                job.wake.wait(timeout)
            else:
                self._stop.wait(timeout)

    def stop_jobs(self) -> None:
        self._stop.set()
        for job in self.jobs:
            if job.wake is not None:
                job.wake.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def run_jobs_once(self) -> None:
        """Run every job once, in order (tests and replays drive jobs this way with a manual clock)."""
        for job in self.jobs:
            job.fn(self)


def data_path(settings: Settings, name: str) -> Path:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.data_dir / name
