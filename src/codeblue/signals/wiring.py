"""Live wiring of the vitals monitor: the detection pipeline in `rt.extras["signals.pipeline"]`, a job that
ticks it on the server clock and turns its updates into incidents (open, append evidence, update triage),
the change log fed in as suspects, and user reports counted as complaints."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from codeblue import configwatch
from codeblue.hooks import hooks
from codeblue.runtime import Job, Runtime
from codeblue.signals.objectives import load_objectives
from codeblue.signals.pipeline import AlertUpdate, Pipeline
from codeblue.signals.triage import SEVERITIES

log = logging.getLogger(__name__)

PIPELINE = "signals.pipeline"
ACTOR = "system:detector"
#: How often the detector job runs, in server-clock seconds.
TICK_EVERY = 5.0


@dataclass
class LiveDetector:
    """Glue between the pipeline and the incident service: which incident each alert group became."""

    pipeline: Pipeline
    incident_of: dict[int, int] = field(default_factory=dict)
    changes_seen: set[str] = field(default_factory=set)
    changes_since: float | None = None

    def poll_changes(self, s: Session, now: float) -> None:
        if importlib.util.find_spec("codeblue.changes.service") is None:
            return
        changes = importlib.import_module("codeblue.changes.service")
        since = (self.changes_since if self.changes_since is not None else now - 6 * 3600.0) - 60.0
        for c in reversed(changes.list_changes(s, since=since, limit=500)):
            d = c.as_dict()
            cid = str(d.get("id"))
            if cid in self.changes_seen:
                continue
            try:
                self.pipeline.add_change(d)
            except Exception:
                log.exception("change %s could not be used as a suspect", cid)
            self.changes_seen.add(cid)
        self.changes_since = now
        if len(self.changes_seen) > 20000:
            self.changes_seen.clear()

    def apply(self, s: Session, rt: Runtime, u: AlertUpdate) -> None:
        from codeblue.incidents import service as incidents

        t = u.triage
        harm = t.harm.as_dict()
        suspects = [{k: v for k, v in sp.as_dict().items() if k != "time"} for sp in t.suspects]
        alert = {**u.alert.as_dict(), "group": u.group}
        inc_id = self.incident_of.get(u.group)
        if u.kind == "opened" or inc_id is None:
            existing = incidents.find_open_incident(s, workflow=u.workflow, failure_type=t.failure_type)
            if existing is None:
                inc = incidents.open_incident(
                    s, rt, title=f"{u.workflow}: {u.alert.indicator} above its baseline",
                    workflows=t.workflows or [u.workflow], severity=t.severity, failure_type=t.failure_type,
                    summary=u.alert.evidence, harm=harm, suspects=suspects, source="detector", actor=ACTOR,
                    detected_at=u.at, data=_incident_data({"alert": alert}, t.complaint_clusters),
                )
                self.incident_of[u.group] = inc.id
                incidents.append_entry(s, rt, incident_id=inc.id, kind="triage", actor=ACTOR, text=u.text,
                                       data={"triage": t.as_dict(), "alert": alert})
                hooks.emit("alert.fired", s=s, rt=rt, alert={**alert, "incident_id": inc.id})
                return
            inc_id = self.incident_of[u.group] = existing.id
        if u.kind == "resolved":
            incidents.append_entry(s, rt, incident_id=inc_id, kind="detector", actor=ACTOR, text=u.text,
                                   data={"alert": alert, "harm": harm})
            hooks.emit("alert.resolved", s=s, rt=rt, alert={**alert, "incident_id": inc_id})
            return
        inc = incidents.get_incident(s, inc_id)
        if t.complaint_clusters:
            data = _incident_data(dict(inc.data or {}), t.complaint_clusters)
            if data != inc.data:
                inc.data = data
        kind = "evidence" if u.kind in ("evidence", "opened") else "triage"
        incidents.append_entry(s, rt, incident_id=inc_id, kind=kind, actor=ACTOR, text=u.text,
                               data={"triage": t.as_dict(), "alert": alert})
        worse = SEVERITIES.index(t.severity) < SEVERITIES.index(inc.severity) if inc.severity in SEVERITIES else True
        incidents.update_triage(s, rt, incident_id=inc_id, actor=ACTOR, harm=harm, suspects=suspects,
                                severity=t.severity if worse else None)
        if u.kind in ("evidence", "opened"):
            hooks.emit("alert.fired", s=s, rt=rt, alert={**alert, "incident_id": inc_id})

    def tick(self, rt: Runtime) -> None:
        self.run(rt)

    def run(self, rt: Runtime) -> list[AlertUpdate]:
        """Poll changes, tick the pipeline at the server clock's now, record every update."""
        now = rt.clock.now()
        with rt.db.read() as s:
            self.poll_changes(s, now)
        updates = self.pipeline.tick(now)
        for u in updates:
            # One transaction per update: a failure on one incident never loses the others.
            try:
                with rt.db.write() as s:
                    self.apply(s, rt, u)
            except Exception:
                log.exception("detector could not record %s for %s/%s", u.kind, u.workflow, u.failure_type)
        return updates


def _incident_data(data: dict[str, Any], clusters: list[dict[str, Any]]) -> dict[str, Any]:
    """`incident.data` with the complaint themes of its alert group: terms, counts and representative texts."""
    if clusters:
        known = {c.get("cluster_id"): c for c in data.get("complaint_clusters") or []}
        for c in clusters:
            known[c["cluster_id"]] = c
        data["complaint_clusters"] = list(known.values())
    return data


def setup(rt: Runtime) -> list[Job]:
    objectives = load_objectives(rt.settings.detect_config)
    live = LiveDetector(Pipeline(objectives=objectives))
    rt.extras[PIPELINE] = live.pipeline
    rt.extras["signals.detector"] = live

    def on_user_report(*, s: Session, rt: Runtime, incident: Any, text: str = "", subject: str | None = None,
                       **_kw: Any) -> None:
        for wf in incident.workflows or []:
            live.pipeline.complaint(workflow=wf, time=rt.clock.now(), subject=subject, text=text)

    hooks.on("incident.user_report", on_user_report)
    jobs = [Job("signals.detect", TICK_EVERY, live.tick)]
    path = rt.settings.detect_config
    if path is not None:
        def reload(rt: Runtime) -> None:
            live.pipeline.set_objectives(load_objectives(path))

        jobs.append(configwatch.watch(rt, "detect", path, reload))
    if importlib.util.find_spec("codeblue.signals.intake") is not None:
        intake = importlib.import_module("codeblue.signals.intake")
        if hasattr(intake, "jobs"):
            jobs.extend(intake.jobs())
    return jobs
