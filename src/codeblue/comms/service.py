"""Comms logic over a session: the incident projection, publishing updates, and the communication cadence
(what is due when per incident, and reminders for what is overdue).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeblue.comms import outbox, templates
from codeblue.comms.config import CommsConfig, ItemPolicy, load_config
from codeblue.comms.model import IncidentView, OutboxMessage, Update
from codeblue.runtime import Runtime

CLOSED = ("resolved", "closed")
CONFIG = "comms.config"


def config(rt: Runtime) -> CommsConfig:
    cfg: CommsConfig | None = rt.extras.get(CONFIG)
    if cfg is None:
        cfg = rt.extras.setdefault(CONFIG, load_config(rt.settings.comms_config))
    return cfg


def status_url(rt: Runtime) -> str:
    """Where users check status: the configured URL, else the public URL's /status (when one is configured)."""
    cfg = config(rt)
    if cfg.status_url:
        return cfg.status_url
    return f"{rt.settings.public_url.rstrip('/')}/status" if rt.settings.public_url else ""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# ----- the incident projection ---------------------------------------------------------------------------


def sync_incident(s: Session, rt: Runtime, incident: dict[str, Any], *, persist: bool = True) -> IncidentView:
    """Bring the projection of one incident up to date from its `as_dict()` (called from the incident hooks).

    With ``persist=False`` (read-only callers) a missing projection is built in memory and not stored.
    """
    now = rt.clock.now()
    view = s.get(IncidentView, incident["id"])
    if view is None:
        view = IncidentView(incident_id=incident["id"], opened_at=incident.get("opened_at") or now, milestones={})
        if persist:
            s.add(view)
    elif not persist:
        return view
    view.title = str(incident.get("title", ""))[:200]
    view.severity = incident.get("severity") or "SEV3"
    view.status = incident.get("status") or "triggered"
    view.workflows = list(incident.get("workflows") or [])
    view.roles = dict(incident.get("roles") or {})
    view.harm = incident.get("harm")
    view.eta = incident.get("eta")
    view.mitigation_path = incident.get("mitigation_path")
    milestones = {k: v for k, v in (incident.get("milestones") or {}).items() if v is not None}
    known = dict(view.milestones or {})
    scope_and_eta = known.get("scope_and_eta")
    if scope_and_eta is None and view.harm and view.eta is not None:
        scope_and_eta = now
    if scope_and_eta is not None:
        milestones["scope_and_eta"] = scope_and_eta
    view.milestones = milestones
    view.updated_at = now
    if view.status in CLOSED:
        view.closed_at = view.closed_at or incident.get("closed_at") or milestones.get("resolved") or now
    else:
        view.closed_at = None
    if persist:
        s.flush()
    return view


def _incident_dict(s: Session, rt: Runtime, incident_id: int) -> dict[str, Any]:
    from codeblue.incidents import service as incidents

    inc = incidents.get_incident(s, incident_id)
    data: dict[str, Any] = inc.as_dict()
    sync_incident(s, rt, data)
    return data


# ----- updates ---------------------------------------------------------------------------------------------


def publish_update(
    s: Session, rt: Runtime, *, incident_id: int, audience: str, facts: dict[str, Any], text: str = "", actor: str
) -> Update:
    """Publish an update for one audience: check its facts, render it, record it, queue it to that audience's
    channels and note it on the timeline. Refused (422, naming the fact) when a required fact is missing."""
    from codeblue.incidents import service as incidents

    incident = _incident_dict(s, rt, incident_id)
    defaults = {"status_url": status_url(rt)} if audience in ("status_page", "support") else {}
    clean = templates.check_facts(audience, facts, text=text, defaults=defaults)
    rendered = templates.render_update(audience, incident=incident, facts=clean, text=text)
    public = audience == "status_page"
    public_status = None
    if public:
        public_status = clean.get("status") or _public_status(incident["status"])
    now = rt.clock.now()
    upd = Update(incident_id=incident_id, audience=audience, facts=clean, text=text.strip(), rendered=rendered,
                 public=public, public_status=public_status, author=actor, created_at=now)
    s.add(upd)
    s.flush()
    cfg = config(rt)
    label = templates.LABELS[audience]
    subject = f"[{incident['severity']}] #{incident_id} {label}: {incident['title']}"
    if public:
        subject = f"{_public_name(clean)} — {public_status}"
    for channel in cfg.audiences.get(audience, []):
        outbox.enqueue(
            s, rt, channel=channel, kind="update", dedup_key=f"update:{upd.id}:{channel}", subject=subject,
            body=rendered, to=cfg.recipients.get(audience), incident_id=incident_id,
            data={"audience": audience, "update_id": upd.id, "public_status": public_status},
        )
    incidents.append_entry(
        s, rt, incident_id=incident_id, kind="comms.update", actor=actor,
        text=f"{label} published" + (f" ({public_status})" if public_status else "") + f":\n{rendered}",
        data={"update_id": upd.id, "audience": audience, "channels": cfg.audiences.get(audience, [])},
    )
    return upd


def list_updates(s: Session, *, incident_id: int, audience: str | None = None) -> list[Update]:
    q = select(Update).where(Update.incident_id == incident_id)
    if audience:
        q = q.where(Update.audience == audience)
    return list(s.scalars(q.order_by(Update.created_at, Update.id)))


def _public_status(incident_status: str) -> str:
    return {"contained": "identified", "monitoring": "monitoring", "resolved": "resolved",
            "closed": "resolved"}.get(incident_status, "investigating")


def _public_name(facts: dict[str, Any]) -> str:
    return str(facts.get("title") or f"Issue affecting {facts.get('feature', 'our service')}")


# ----- cadence -------------------------------------------------------------------------------------------


def _trigger_at(view: IncidentView, item: ItemPolicy) -> float | None:
    if item.after == "opened":
        return view.opened_at
    value = (view.milestones or {}).get(item.after)
    return float(value) if value is not None else None


def cadence(s: Session, rt: Runtime, view: IncidentView, *, now: float | None = None) -> list[dict[str, Any]]:
    """What is due when for one incident, per audience: waiting (for its trigger), due, overdue, done, stopped."""
    now = rt.clock.now() if now is None else now
    cfg = config(rt)
    last: dict[str, float] = {}
    public_statuses: list[str | None] = []
    for upd in list_updates(s, incident_id=view.incident_id):
        last[upd.audience] = upd.created_at
        if upd.public:
            public_statuses.append(upd.public_status)
    closed = view.status in CLOSED
    items: list[dict[str, Any]] = []
    for item in cfg.items_for(view.severity):
        row: dict[str, Any] = {
            "audience": item.audience, "label": templates.LABELS[item.audience], "after": item.after,
            "within": item.within, "every": item.every, "last_sent_at": last.get(item.audience),
            "due_at": None, "state": "waiting", "required_facts": [f for f, _ in templates.REQUIRED_FACTS[item.audience]],
        }
        trigger = _trigger_at(view, item)
        sent = last.get(item.audience)
        if closed:
            # One thing stays due after resolution: telling the public page it is over, if it was told at all.
            if item.audience == "status_page" and public_statuses and public_statuses[-1] != "resolved":
                closed_at = view.closed_at or now
                row.update(due_at=closed_at + item.within, state="overdue" if now >= closed_at + item.within
                           else "due", reason="post the resolution on the status page")
            else:
                row["state"] = "stopped"
        elif trigger is None:
            row["waiting_for"] = item.after
        elif item.every is None and sent is not None:
            row["state"] = "done"
        else:
            due = sent + item.every if (sent is not None and item.every is not None) else trigger + item.within
            row.update(due_at=due, state="overdue" if now >= due else "due")
        items.append(row)
    return items


def open_views(s: Session, *, now: float) -> list[IncidentView]:
    """Incidents comms may still owe something to: open ones, and those resolved in the last day (the final
    public update)."""
    q = select(IncidentView).where(
        IncidentView.status.not_in(CLOSED) | (IncidentView.closed_at >= now - 86400)
    )
    return list(s.scalars(q.order_by(IncidentView.incident_id)))


def get_view(s: Session, rt: Runtime, incident_id: int) -> IncidentView:
    """The comms view of an incident, for readers (never writes; NotFound when there is no such incident)."""
    view = s.get(IncidentView, incident_id)
    if view is None:
        from codeblue.incidents import service as incidents

        view = sync_incident(s, rt, incidents.get_incident(s, incident_id).as_dict(), persist=False)
    return view


def _email_of(s: Session, handle: str) -> str | None:
    from codeblue.auth.model import Person

    person = s.scalar(select(Person).where(Person.handle == handle))
    return person.email if person is not None and person.email else None


@dataclass(frozen=True)
class Reminder:
    view_id: int
    audience: str
    label: str
    due_at: float
    role: str
    handle: str | None
    escalated: bool
    comms_lead: str | None
    required: tuple[str, ...]
    key: str


def pending_reminders(s: Session, rt: Runtime, *, now: float) -> list[Reminder]:
    """Reminders that are due and not yet queued: the communications lead at the due time, then the incident
    lead `escalate_after` later (or at once when no communications lead is assigned)."""
    cfg = config(rt)
    out: list[Reminder] = []
    for view in open_views(s, now=now):
        for item in cadence(s, rt, view, now=now):
            if item["state"] != "overdue":
                continue
            due_at = float(item["due_at"])
            roles = view.roles or {}
            comms_lead = roles.get("communications_lead")
            targets: list[tuple[str, str | None, bool]] = []
            if comms_lead:
                targets.append(("communications_lead", comms_lead, False))
            if roles.get("incident_lead") and (not comms_lead or now >= due_at + cfg.escalate_after):
                targets.append(("incident_lead", roles["incident_lead"], bool(comms_lead)))
            if not targets:
                targets.append(("unassigned", None, False))
            for role, handle, escalated in targets:
                key = f"reminder:{view.incident_id}:{item['audience']}:{int(due_at)}:{role}"
                if s.scalar(select(OutboxMessage.id).where(OutboxMessage.dedup_key == key)) is None:
                    out.append(Reminder(view.incident_id, item["audience"], item["label"], due_at, role, handle,
                                        escalated, comms_lead, tuple(item["required_facts"]), key))
    return out


def remind_overdue(s: Session, rt: Runtime, *, now: float | None = None) -> int:
    """Queue every pending reminder (through the outbox, one dedup key per incident+item+due time+role) and
    note it on the incident's timeline. Returns how many were queued."""
    from codeblue.incidents import service as incidents

    now = rt.clock.now() if now is None else now
    cfg = config(rt)
    queued = 0
    for r in pending_reminders(s, rt, now=now):
        view = s.get(IncidentView, r.view_id)
        assert view is not None
        email = _email_of(s, r.handle) if r.handle else None
        to = [email] if email else list(cfg.reminder_to)
        incident = {"id": view.incident_id, "severity": view.severity, "title": view.title}
        body = templates.render_text(
            "reminder.txt.j2", incident=incident, audience=r.audience, audience_label=r.label,
            due_at_text=_iso(r.due_at), escalated=r.escalated, comms_lead=r.comms_lead,
            escalate_after_text=f"{cfg.escalate_after / 60:g} min", required=r.required,
            link=f"{rt.settings.base_url}/v1/incidents/{view.incident_id}/comms",
        )
        subject = f"Overdue: {r.label} for incident #{view.incident_id}" + (" (escalated)" if r.escalated else "")
        outbox.enqueue(
            s, rt, channel=cfg.reminder_channel, kind="reminder", dedup_key=r.key, subject=subject, body=body,
            to=to, incident_id=view.incident_id,
            data={"audience": r.audience, "due_at": r.due_at, "role": r.role, "handle": r.handle,
                  "escalated": r.escalated},
        )
        incidents.append_entry(
            s, rt, incident_id=view.incident_id, kind="comms.reminder", actor="system:comms",
            text=f"{r.label} overdue since {_iso(r.due_at)}; reminded "
                 + (f"{r.role.replace('_', ' ')} {r.handle}" if r.handle else "the reminder recipients"),
            data={"audience": r.audience, "due_at": r.due_at, "role": r.role, "handle": r.handle},
        )
        queued += 1
    return queued


def cadence_job(rt: Runtime) -> None:
    """The periodic job: look (read-only) for reminders to send; open a write transaction only when some are."""
    now = rt.clock.now()
    with rt.db.read() as s:
        if not pending_reminders(s, rt, now=now):
            return
    with rt.db.write() as s:
        remind_overdue(s, rt, now=now)


def next_due(s: Session, rt: Runtime) -> float | None:
    """The earliest future due time over all incidents (for schedulers that sleep until then)."""
    now = rt.clock.now()
    times = [i["due_at"] for v in open_views(s, now=now)
             for i in cadence(s, rt, v) if i["due_at"] is not None]
    return min(times) if times else None
