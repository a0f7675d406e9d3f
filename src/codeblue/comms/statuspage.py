"""Public status page data: components with their state, public incidents with their public updates, recent
history, an Atlassian-Statuspage-shaped ``summary.json`` and an Atom feed.

Only updates published for the ``status_page`` audience are read here; internal updates, incident titles,
summaries and timelines never are, so internal text cannot reach the public page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeblue.comms import templates
from codeblue.comms.config import CommsConfig
from codeblue.comms.model import IncidentView, Update
from codeblue.comms.service import config
from codeblue.runtime import Runtime

PAGE_ID = "codeblue"
IMPACT_BY_SEVERITY = {"SEV1": "critical", "SEV2": "major", "SEV3": "minor", "SEV4": "minor"}
COMPONENT_BY_IMPACT = {"critical": "major_outage", "major": "partial_outage", "minor": "degraded_performance",
                       "none": "operational"}
IMPACT_ORDER = ("none", "minor", "major", "critical")
COMPONENT_ORDER = ("operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage")
INDICATOR_TEXT = {"none": "All Systems Operational", "minor": "Minor Service Outage",
                  "major": "Partial System Outage", "critical": "Major Service Outage"}
COMPONENT_LABEL = {"operational": "Operational", "degraded_performance": "Degraded performance",
                   "partial_outage": "Partial outage", "major_outage": "Major outage",
                   "under_maintenance": "Under maintenance"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def human(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%b %d, %H:%M UTC")


@dataclass
class PublicIncident:
    id: int
    name: str
    status: str
    impact: str
    workflows: list[str]
    component_status: str
    updates: list[Update]
    created_at: float
    updated_at: float
    resolved_at: float | None
    monitoring_at: float | None


def public_incidents(s: Session, *, since: float | None = None) -> list[PublicIncident]:
    """Every incident with at least one public update, newest first (optionally only those active since)."""
    rows = list(s.scalars(select(Update).where(Update.public.is_(True)).order_by(Update.created_at, Update.id)))
    by_incident: dict[int, list[Update]] = {}
    for u in rows:
        by_incident.setdefault(u.incident_id, []).append(u)
    out: list[PublicIncident] = []
    for incident_id, ups in by_incident.items():
        view = s.get(IncidentView, incident_id)
        latest = ups[-1]
        name = next((str(u.facts["title"]) for u in reversed(ups) if u.facts.get("title")), None)
        name = name or f"Issue affecting {latest.facts.get('feature', 'our service')}"
        severity = view.severity if view is not None else "SEV3"
        impact = next((str(u.facts["impact_level"]) for u in reversed(ups)
                       if u.facts.get("impact_level") in IMPACT_ORDER), IMPACT_BY_SEVERITY.get(severity, "minor"))
        status = latest.public_status or "investigating"
        comp = next((str(u.facts["component_status"]) for u in reversed(ups) if u.facts.get("component_status")),
                    COMPONENT_BY_IMPACT[impact])
        resolved_at = latest.created_at if status == "resolved" else None
        monitoring_at = next((u.created_at for u in ups if u.public_status == "monitoring"), None)
        if since is not None and resolved_at is not None and resolved_at < since:
            continue
        out.append(PublicIncident(
            id=incident_id, name=name, status=status, impact=impact,
            workflows=list(view.workflows) if view is not None else [], component_status=comp, updates=ups,
            created_at=ups[0].created_at, updated_at=latest.created_at, resolved_at=resolved_at,
            monitoring_at=monitoring_at,
        ))
    out.sort(key=lambda i: i.updated_at, reverse=True)
    return out


def _component_names(cfg: CommsConfig) -> dict[str, str]:
    return {c.workflow: c.name for c in cfg.components}


def components(cfg: CommsConfig, incidents: list[PublicIncident], *, now: float) -> list[dict[str, Any]]:
    """Configured components plus any workflow a public incident touched; state = worst active incident's."""
    order: list[tuple[str, str, str]] = [(c.workflow, c.name, c.description) for c in cfg.components]
    seen = {w for w, _, _ in order}
    for inc in sorted(incidents, key=lambda i: i.created_at):
        for w in inc.workflows:
            if w not in seen:
                seen.add(w)
                order.append((w, w, ""))
    out: list[dict[str, Any]] = []
    for pos, (workflow, name, description) in enumerate(order, start=1):
        status, updated = "operational", None
        for inc in incidents:
            if workflow in inc.workflows:
                updated = max(updated or 0.0, inc.updated_at)
                if inc.status != "resolved" and COMPONENT_ORDER.index(inc.component_status) > COMPONENT_ORDER.index(status):
                    status = inc.component_status
        out.append({
            "id": workflow, "name": name, "status": status, "status_label": COMPONENT_LABEL[status],
            "created_at": iso(now), "updated_at": iso(updated or now), "position": pos,
            "description": description or None, "showcase": True, "start_date": None, "group_id": None,
            "page_id": PAGE_ID, "group": False, "only_show_if_degraded": False,
        })
    return out


def _update_dict(u: Update, names: dict[str, str], workflows: list[str]) -> dict[str, Any]:
    return {
        "id": str(u.id), "status": u.public_status or "investigating", "body": u.rendered.strip(),
        "incident_id": str(u.incident_id), "created_at": iso(u.created_at), "updated_at": iso(u.created_at),
        "display_at": iso(u.created_at), "when": human(u.created_at),
        "affected_components": [{"code": w, "name": names.get(w, w)} for w in workflows],
        "deliver_notifications": True, "custom_tweet": None, "tweet_id": None,
    }


def page_info(rt: Runtime, *, updated: float) -> dict[str, Any]:
    cfg = config(rt)
    url = cfg.status_url or f"{(rt.settings.public_url or rt.settings.base_url).rstrip('/')}/status"
    return {"id": PAGE_ID, "name": cfg.page_title, "url": url, "time_zone": "Etc/UTC", "updated_at": iso(updated)}


def summary(s: Session, rt: Runtime) -> dict[str, Any]:
    """The page in the shape of Atlassian Statuspage's ``/api/v2/summary.json``."""
    cfg = config(rt)
    now = rt.clock.now()
    every = public_incidents(s, since=now - cfg.history_days * 86400)
    names = _component_names(cfg)
    active = [i for i in every if i.status != "resolved"]
    comps = components(cfg, every, now=now)
    worst = max((i.impact for i in active), key=IMPACT_ORDER.index, default="none")
    updated = max([i.updated_at for i in every], default=now)

    def incident_dict(i: PublicIncident) -> dict[str, Any]:
        return {
            "id": str(i.id), "name": i.name, "status": i.status, "impact": i.impact,
            "created_at": iso(i.created_at), "updated_at": iso(i.updated_at), "started_at": iso(i.created_at),
            "monitoring_at": iso(i.monitoring_at) if i.monitoring_at else None,
            "resolved_at": iso(i.resolved_at) if i.resolved_at else None,
            "shortlink": f"{page_info(rt, updated=updated)['url']}#incident-{i.id}", "page_id": PAGE_ID,
            "incident_updates": [_update_dict(u, names, i.workflows) for u in reversed(i.updates)],
            "components": [c for c in comps if c["id"] in i.workflows],
        }

    return {
        "page": page_info(rt, updated=updated),
        "components": comps,
        "incidents": [incident_dict(i) for i in active],
        "scheduled_maintenances": [],
        "status": {"indicator": worst, "description": INDICATOR_TEXT[worst]},
        "_history": [incident_dict(i) for i in every if i.status == "resolved"],
    }


def render_html(s: Session, rt: Runtime, *, base: str = "/status") -> str:
    data = summary(s, rt)
    history = data.pop("_history")
    names = {c["id"]: c["name"] for c in data["components"]}

    def enrich(inc: dict[str, Any]) -> dict[str, Any]:
        inc = dict(inc)
        inc["component_names"] = [names.get(c["id"], c["id"]) for c in inc["components"]] or ["our service"]
        inc["impact_label"] = {"none": "No impact", "minor": "Minor impact", "major": "Major impact",
                               "critical": "Critical impact"}[inc["impact"]]
        if inc.get("resolved_at"):
            inc["resolved_when"] = human(datetime.fromisoformat(inc["resolved_at"].replace("Z", "+00:00")).timestamp())
        return inc

    return templates.render_markup(
        "status.html.j2", page=data["page"], status=data["status"], components=data["components"],
        active=[enrich(i) for i in data["incidents"]], history=[enrich(i) for i in history], base=base,
        history_days=f"{config(rt).history_days:g}",
        updated_when=human(datetime.fromisoformat(data["page"]["updated_at"].replace("Z", "+00:00")).timestamp()),
    )


def public_summary(s: Session, rt: Runtime) -> dict[str, Any]:
    data = summary(s, rt)
    data.pop("_history")
    for inc in data["incidents"]:
        for u in inc["incident_updates"]:
            u.pop("when", None)
    for c in data["components"]:
        c.pop("status_label", None)
    return data


def render_atom(s: Session, rt: Runtime) -> str:
    cfg = config(rt)
    now = rt.clock.now()
    incidents = public_incidents(s, since=now - cfg.history_days * 86400)
    page = page_info(rt, updated=max([i.updated_at for i in incidents], default=now))
    host = urlsplit(page["url"]).hostname or "codeblue"
    entries: list[dict[str, Any]] = []
    for inc in incidents:
        for u in inc.updates:
            entries.append({
                "id": f"tag:{host},2024:status-update-{u.id}",
                "title": f"{inc.name} — {(u.public_status or 'investigating').title()}",
                "updated": iso(u.created_at), "at": u.created_at,
                "link": f"{page['url']}#incident-{inc.id}", "body": u.rendered.strip(),
            })
    entries.sort(key=lambda e: e["at"], reverse=True)
    return templates.render_markup("feed.atom.j2", feed_id=f"tag:{host},2024:status", page=page,
                                   updated=page["updated_at"], entries=entries[:100])
