"""Prometheus Alertmanager webhook (payload version 4) → stored alerts on their workflow.

A firing alert becomes an `alerts` row (one per firing episode: fingerprint + startsAt) on the workflow named
by its `workflow` label (`Settings.alert_workflow_label`); a resolved one closes that row. Then, after the
commit, the detection pipeline is told (`Pipeline.external_alert(alert_dict)`) when it offers that method;
without it, this module opens an incident for the workflow through `codeblue.incidents.service` (grouping
with an open incident of the same workflow and failure type) and resolves it when its last alert resolves.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from datetime import datetime
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from codeblue.errors import Conflict, Invalid
from codeblue.hooks import hooks
from codeblue.runtime import Runtime
from codeblue.signals.model import ExternalAlert

log = logging.getLogger(__name__)

SOURCE = "alertmanager"
ACTOR = "system:alertmanager"
SEVERITY_LABELS = {
    "sev1": "SEV1", "sev2": "SEV2", "sev3": "SEV3", "sev4": "SEV4",
    "page": "SEV2", "critical": "SEV2", "high": "SEV2", "error": "SEV3", "major": "SEV3",
    "warning": "SEV3", "warn": "SEV3", "minor": "SEV4", "info": "SEV4", "low": "SEV4", "none": "SEV4",
}


class AMAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str = Field(pattern="^(firing|resolved)$")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = Field(default="", max_length=128)


class AMWebhook(BaseModel):
    """The Alertmanager webhook body (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    model_config = ConfigDict(extra="allow")

    version: str
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: str = ""
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AMAlert]


def parse_time(value: str, where: str) -> float | None:
    """An Alertmanager RFC 3339 time (nanosecond fractions allowed); the zero time means unset."""
    if not value or value.startswith("0001-01-01"):
        return None
    v = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in v:  # Python reads at most 6 fractional digits
        head, rest = v.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        v = f"{head}.{rest[:i][:6].ljust(6, '0')}{rest[i:]}"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise Invalid(f"{where}: {value!r} is not an RFC 3339 time", field=where) from None
    if dt.tzinfo is None:
        raise Invalid(f"{where}: {value!r} has no UTC offset", field=where)
    return dt.timestamp()


def _incidents() -> ModuleType | None:
    if importlib.util.find_spec("codeblue.incidents.service") is None:
        return None
    return importlib.import_module("codeblue.incidents.service")


def _fingerprint(a: AMAlert) -> str:
    if a.fingerprint:
        return a.fingerprint
    import hashlib

    return hashlib.sha256(repr(sorted(a.labels.items())).encode()).hexdigest()[:16]


def receive(s: Session, rt: Runtime, payload: AMWebhook) -> dict[str, Any]:
    """Store the alerts of one webhook call; open/resolve incidents unless the pipeline takes them."""
    if payload.version != "4":
        raise Invalid(f"webhook payload version {payload.version!r} is not supported; Alertmanager sends \"4\"",
                      field="version")
    label = rt.settings.alert_workflow_label
    now = rt.clock.now()
    pipeline = rt.extras.get("signals.pipeline")
    pipeline_takes = pipeline is not None and callable(getattr(pipeline, "external_alert", None))
    incidents = None if pipeline_takes else _incidents()
    changed: list[ExternalAlert] = []
    unrouted: list[str] = []
    rows: list[ExternalAlert] = []
    for i, a in enumerate(payload.alerts):
        starts = parse_time(a.startsAt, f"alerts[{i}].startsAt")
        if starts is None:
            raise Invalid(f"alerts[{i}].startsAt: required", field=f"alerts[{i}].startsAt")
        ends = parse_time(a.endsAt, f"alerts[{i}].endsAt")
        fp = _fingerprint(a)
        workflow = a.labels.get(label) or payload.commonLabels.get(label) or None
        if workflow is None:
            unrouted.append(fp)
        row = s.scalars(select(ExternalAlert).where(
            ExternalAlert.source == SOURCE, ExternalAlert.fingerprint == fp, ExternalAlert.starts_at == starts,
        )).first()
        is_new = row is None
        if row is None:
            row = ExternalAlert(
                source=SOURCE, fingerprint=fp, starts_at=starts, received_at=now, status=a.status,
                name=(a.labels.get("alertname") or "alert")[:200], workflow=workflow and workflow[:200],
                labels=dict(a.labels), annotations=dict(a.annotations), ends_at=ends,
                generator_url=a.generatorURL, group_key=payload.groupKey, updated_at=now,
            )
            try:
                with s.begin_nested():  # two replicas may receive the same alert at once (PostgreSQL)
                    s.add(row)
            except IntegrityError:
                row = s.scalars(select(ExternalAlert).where(
                    ExternalAlert.source == SOURCE, ExternalAlert.fingerprint == fp,
                    ExternalAlert.starts_at == starts,
                )).one()
                is_new = False
        old_status = None if is_new else row.status
        row.labels, row.annotations, row.ends_at, row.updated_at = dict(a.labels), dict(a.annotations), ends, now
        if row.status == "resolved" and a.status == "firing" and not is_new:
            # Alertmanager never re-fires a resolved episode with the same startsAt; keep the resolution.
            rows.append(row)
            continue
        row.status = a.status
        rows.append(row)
        if old_status == row.status:
            continue  # a repeat notification: nothing new happened
        changed.append(row)
        if incidents is not None and row.workflow:
            if row.status == "firing":
                _open_or_group(s, rt, incidents, row)
            else:
                _resolve(s, rt, incidents, row)
        s.flush()
        hooks.emit("alert.fired" if row.status == "firing" else "alert.resolved", s=s, rt=rt, alert=row.as_dict())
    s.flush()
    return {
        "received": len(payload.alerts),
        "firing": sum(1 for r in rows if r.status == "firing"),
        "resolved": sum(1 for r in rows if r.status == "resolved"),
        "alerts": [r.id for r in rows],
        "unrouted": unrouted,
        "changed": [r.as_dict() for r in changed],
        "pipeline": pipeline_takes,
    }


def notify_pipeline(rt: Runtime, changed: list[dict[str, Any]]) -> None:
    """After commit: give new and resolved alerts to the detection pipeline when it takes them."""
    pipeline = rt.extras.get("signals.pipeline")
    fn = getattr(pipeline, "external_alert", None)
    if fn is None:
        return
    for alert in changed:
        if alert["workflow"]:
            try:
                fn(alert)
            except Exception:
                log.exception("the detection pipeline failed on external alert %s", alert["fingerprint"])


def _severity(row: ExternalAlert) -> str:
    return SEVERITY_LABELS.get(str(row.labels.get("severity", "")).lower(), "SEV3")


def _failure_type(incidents: ModuleType, row: ExternalAlert) -> str:
    ft = row.labels.get("failure_type", "")
    types: tuple[str, ...] = getattr(incidents, "FAILURE_TYPES", ())
    return ft if ft in types else "availability"


def _describe(row: ExternalAlert) -> str:
    ann = row.annotations
    text = ann.get("summary") or ann.get("description") or ann.get("message") or ""
    return f"{row.name}: {text}" if text else row.name


def _open_or_group(s: Session, rt: Runtime, incidents: ModuleType, row: ExternalAlert) -> None:
    assert row.workflow is not None
    ft = _failure_type(incidents, row)
    inc = incidents.find_open_incident(s, workflow=row.workflow, failure_type=ft)
    evidence = {"alert_id": row.id, "fingerprint": row.fingerprint, "labels": row.labels,
                "annotations": row.annotations, "starts_at": row.starts_at, "generator_url": row.generator_url}
    if inc is None:
        inc = incidents.open_incident(
            s, rt, title=f"{row.name} firing on {row.workflow}", workflows=[row.workflow],
            severity=_severity(row), failure_type=ft, summary=_describe(row), source=SOURCE, actor=ACTOR,
            detected_at=row.starts_at, data={"alert": evidence},
        )
    else:
        incidents.append_entry(s, rt, incident_id=inc.id, kind="alert",
                               text=f"Alertmanager alert firing: {_describe(row)}", actor=ACTOR, data=evidence)
    row.incident_id = int(inc.id)


def _resolve(s: Session, rt: Runtime, incidents: ModuleType, row: ExternalAlert) -> None:
    if row.incident_id is None:
        return
    incidents.append_entry(s, rt, incident_id=row.incident_id, kind="alert",
                           text=f"Alertmanager alert resolved: {_describe(row)}", actor=ACTOR,
                           data={"alert_id": row.id, "fingerprint": row.fingerprint, "ends_at": row.ends_at})
    still = s.scalars(select(ExternalAlert.id).where(
        ExternalAlert.incident_id == row.incident_id, ExternalAlert.status == "firing",
    )).first()
    if still is not None:
        return
    inc = incidents.get_incident(s, row.incident_id)
    if getattr(inc, "source", None) != SOURCE or getattr(inc, "status", None) in ("resolved", "closed"):
        return  # a person opened it, or it is already over: they decide
    try:
        incidents.set_status(s, rt, incident_id=row.incident_id, to="resolved", actor=ACTOR,
                             note="every Alertmanager alert behind it resolved")
    except Conflict as exc:
        incidents.append_entry(s, rt, incident_id=row.incident_id, kind="note", actor=ACTOR,
                               text=f"every Alertmanager alert resolved; the incident stays open: {exc.detail}")
