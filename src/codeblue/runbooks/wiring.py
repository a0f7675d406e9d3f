"""Wire runbooks into the server: load the library, start runbooks when incidents open, run the executor
and the recovery ramp, and reload runbook files when they change."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session

from codeblue.hooks import hooks
from codeblue.incidents.model import Incident
from codeblue.runbooks import executor, recovery
from codeblue.runtime import Job, Runtime

log = logging.getLogger(__name__)


def _reload(rt: Runtime) -> None:
    lib = executor.library(rt)
    with rt.db.read() as s:
        reg = executor.registry(s)
    results = lib.reload(reg)
    if results is not None:
        ok = [r for r in results if r.ok]
        log.info("runbooks loaded from %s: %d ok, %d rejected", lib.directory, len(ok), len(results) - len(ok))


def setup(rt: Runtime) -> list[Job]:
    executor.library(rt)
    _reload(rt)
    wake = threading.Event()
    rt.extras["runbooks.wake"] = wake

    def opened(*, s: Session, rt: Runtime, incident: Incident) -> None:
        executor.on_incident_opened(s, rt, incident)

    hooks.on("incident.opened", opened)

    def run_executor(rt: Runtime) -> None:
        executor.tick(rt)

    def run_recovery(rt: Runtime) -> None:
        recovery.tick(rt)

    return [
        Job("runbooks.executor", 1.0, run_executor, wake=wake),
        Job("runbooks.recovery", 5.0, run_recovery),
        Job("runbooks.reload", 5.0, _reload),
    ]
