"""Configuration files that a running server re-reads when they change (the on-call map, the comms config,
the detector's objectives).

A file is read again when its size or modification time changes, and applied only when its content did.
A version that fails validation is refused as a whole: the last good one stays in force, the error (with
the file's line and field) is logged, and ``GET /metrics`` says so (``codeblue_config_last_reload_successful``,
as Prometheus and Alertmanager report their own reloads). Nothing already accepted is lost.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codeblue.runtime import Job, Runtime

log = logging.getLogger(__name__)

EXTRA = "config.watched"


@dataclass
class WatchedFile:
    """One config file and how to apply it. `apply(rt)` reads the file itself and raises on a bad version
    without having changed anything (it writes in one transaction)."""

    name: str
    path: Path
    apply: Callable[[Runtime], None]
    ok: bool = True
    last_success: float = 0.0
    _stat: tuple[int, int] | None = None
    _digest: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _read(self) -> tuple[tuple[int, int], str] | None:
        try:
            st = self.path.stat()
            data = self.path.read_bytes()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size), hashlib.sha256(data).hexdigest()

    def applied(self, rt: Runtime) -> None:
        """Record the version applied at start-up as the one in force."""
        got = self._read()
        if got is not None:
            self._stat, self._digest = got
        self.ok, self.last_success = True, rt.clock.now()

    def poll(self, rt: Runtime) -> bool | None:
        """Apply the file if its content changed: True when applied, False when refused, None when unchanged
        (or unreadable for now, e.g. removed while an editor replaces it)."""
        with self._lock:
            try:
                st = self.path.stat()
            except OSError:
                return None
            if (st.st_mtime_ns, st.st_size) == self._stat:
                return None
            got = self._read()
            if got is None:
                return None
            stat, digest = got
            self._stat = stat
            if digest == self._digest:
                return None
            self._digest = digest
            try:
                self.apply(rt)
            except Exception as exc:
                self.ok = False
                log.error("%s config %s not reloaded, the previous version stays in force: %s",
                          self.name, self.path, " ".join(str(exc).split()))
                return False
            self.ok, self.last_success = True, rt.clock.now()
            log.info("%s config %s reloaded (sha256 %s)", self.name, self.path, digest[:12])
            return True


def watch(rt: Runtime, name: str, path: Path, apply: Callable[[Runtime], None]) -> Job:
    """Register a file applied at start-up and return the job that re-applies it when it changes."""
    wf = WatchedFile(name=name, path=path, apply=apply)
    wf.applied(rt)
    rt.extras.setdefault(EXTRA, {})[name] = wf

    def poll(rt: Runtime) -> None:
        wf.poll(rt)

    return Job(f"{name}.config", rt.settings.config_reload_interval, poll)


def watched(rt: Runtime) -> list[WatchedFile]:
    files: dict[str, WatchedFile] = rt.extras.get(EXTRA) or {}
    return list(files.values())
