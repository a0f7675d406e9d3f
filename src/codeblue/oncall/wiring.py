"""Wire the on-call map into the server: load the config file, fill roles when an incident opens, stop
escalation on acknowledgement, and drive escalation timeouts from a job on the server clock."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from codeblue import configwatch
from codeblue.hooks import hooks
from codeblue.oncall import service
from codeblue.oncall.config import load_config_file
from codeblue.runtime import Job, Runtime

log = logging.getLogger(__name__)


def load(rt: Runtime) -> None:
    """Apply ``Settings.oncall_config`` (if set) to the database and the role rule. A bad file raises before
    anything changed: it stops start-up, and a reload keeps the version in force."""
    path = rt.settings.oncall_config
    if path is None:
        return
    cfg = load_config_file(path)
    with rt.db.write() as s:
        counts = service.sync_config(s, rt, cfg)
    if cfg.roles is not None:
        rt.extras[service.RULES_KEY] = cfg.roles
    else:
        rt.extras.pop(service.RULES_KEY, None)
    log.info("on-call config %s loaded: %s", path, counts)


def _guarded(s: Session, rt: Runtime, incident: Any, what: str, fn: Any) -> None:
    """Run on-call work in a savepoint: if it fails, the incident still opens and its timeline says why."""
    try:
        with s.begin_nested():
            fn()
    except Exception as exc:
        log.exception("on-call %s failed for incident %s", what, incident.id, extra={"incident": incident.id})
        from codeblue.incidents import service as incidents

        incidents.append_entry(s, rt, incident_id=incident.id, kind="oncall_error", actor=service.ACTOR,
                               text=f"on-call {what} failed: {exc}; assign roles and page by hand",
                               data={"what": what})


def on_opened(*, s: Session, rt: Runtime, incident: Any, **_: Any) -> None:
    _guarded(s, rt, incident, "role assignment", lambda: service.fill_roles(s, rt, incident_id=incident.id))
    _guarded(s, rt, incident, "escalation", lambda: service.start_escalation(s, rt, incident_id=incident.id))


def on_milestone(*, s: Session, rt: Runtime, incident: Any, name: str, **_: Any) -> None:
    if name == "acknowledged":
        service.stop_escalation(s, rt, incident_id=incident.id, state="acknowledged",
                                by=getattr(incident, "acknowledged_by", None) or "")


def on_status(*, s: Session, rt: Runtime, incident: Any, new: str, **_: Any) -> None:
    if new in ("resolved", "closed"):
        service.stop_escalation(s, rt, incident_id=incident.id, state="cancelled", by=f"incident {new}")


def escalate(rt: Runtime) -> None:
    """Advance due escalations in batches (one transaction each) until none is left due."""
    while True:
        with rt.db.write() as s:
            n = service.run_escalations(s, rt)
        if n < service.SWEEP_BATCH:
            return


def setup(rt: Runtime) -> list[Job]:
    load(rt)
    hooks.on("incident.opened", on_opened)
    hooks.on("incident.milestone", on_milestone)
    hooks.on("incident.status", on_status)
    jobs = [Job("oncall.escalation", rt.settings.oncall_tick, escalate)]
    if rt.settings.oncall_config is not None:
        jobs.append(configwatch.watch(rt, "oncall", rt.settings.oncall_config, load))
    return jobs
