"""Review wiring: the overdue corrective-action reminder job, and the audit queue materialised when a
runbook's `audit` step has run (inside that step's transaction, in a savepoint)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from codeblue.hooks import hooks
from codeblue.review import actions, audit
from codeblue.runtime import Job, Runtime

log = logging.getLogger(__name__)


def _on_entry(s: Session, rt: Runtime, incident: Any, entry: Any) -> None:
    kind = str(getattr(entry, "kind", "") or "")
    if kind not in ("runbook.step.done", "runbook.step.succeeded"):
        return
    data = getattr(entry, "data", None)
    if not isinstance(data, dict) or data.get("type") != "audit":
        return
    incident_id = int(getattr(entry, "incident_id", 0) or getattr(incident, "id", 0))
    if not incident_id or audit.get_queue(s, incident_id) is not None:
        return
    try:
        with s.begin_nested():
            audit.ensure(s, rt, incident_id=incident_id, actor="system:review")
    except Exception:  # the runbook step must not fail because the queue could not be built now
        log.exception("review: could not materialise the audit queue of incident %s", incident_id)


def setup(rt: Runtime) -> list[Job]:
    hooks.on("timeline.appended", _on_entry)
    return [Job("review.reminders", rt.settings.review_reminder_tick, actions.reminder_job)]
