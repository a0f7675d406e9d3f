"""What console pages show, assembled from the domain services (read-only; no business rules of its own)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeblue.auth.service import Principal
from codeblue.errors import CodeblueError
from codeblue.incidents import service as incidents
from codeblue.incidents.model import ROLES, Incident, TimelineEntry
from codeblue.runtime import Runtime

CONTAIN_CONTROLS = ("kill_switch", "breaker", "tool_disable", "traffic", "fallback")


def has_review() -> bool:
    return importlib.util.find_spec("codeblue.review.audit") is not None


# ----- formatting ------------------------------------------------------------------------------------------


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def hm(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def ago(seconds: float | None) -> str:
    """A short human duration: 45s, 12m, 3h 05m, 2d 4h."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s" if m < 10 else f"{m}m"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def pct(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f}%" if v < 10 else f"{v:.0f}"


def indicator_value(indicator: str, v: float | None) -> str:
    if v is None:
        return "–"
    if indicator.endswith("_ms"):
        return f"{v:.0f} ms"
    if indicator.endswith("_s"):
        return f"{v:.0f} s"
    return f"{100 * v:.1f}%"


# ----- incidents list -------------------------------------------------------------------------------------


def incident_rows(s: Session, rt: Runtime, *, recent: int = 50) -> dict[str, list[dict[str, Any]]]:
    now = rt.clock.now()
    open_rows = incidents.list_incidents(s, open_only=True, limit=500)
    recent_rows = [i for i in incidents.list_incidents(s, limit=recent) if not i.is_open]

    def row(i: Incident) -> dict[str, Any]:
        d = i.as_dict()
        harm = d["harm"] or {}
        return {**d, "age": ago(now - i.opened_at), "lead": d["roles"].get("incident_lead"),
                "harm_requests": harm.get("requests", 0), "harm_subjects": harm.get("subjects", 0),
                "growing": bool(harm.get("growing"))}

    return {"open": [row(i) for i in open_rows], "recent": [row(i) for i in recent_rows]}


# ----- the incident page ----------------------------------------------------------------------------------


@dataclass
class Check:
    key: str
    label: str
    hint: str
    done: bool = False
    at: float | None = None
    by: str | None = None
    how: str = ""


CHECK_KINDS = ("milestone", "audit.harm_confirmed", "control.set", "change.rollback", "runbook.step.done",
               "checklist", "status")


def checklist(s: Session, inc: Incident) -> list[Check]:
    """The seed's first fifteen minutes, each ticked by the first timeline entry that did it."""
    checks = {
        "confirm_harm": Check("confirm_harm", "Confirm user harm",
                              "Who was hurt, how many, still growing? Record it when confirmed."),
        "contain": Check("contain", "Contain the blast radius",
                         "Kill the risky action path, isolate the workflow, or roll back the suspect."),
        "safe_mode": Check("safe_mode", "Switch to safe mode",
                           "Route the affected path to a fallback: backup model, human queue or safe answer."),
        "evidence": Check("evidence", "Collect evidence",
                          "Freeze the served answers and traces from the onset on for the audit."),
    }

    def tick(key: str, e: TimelineEntry, how: str) -> None:
        c = checks[key]
        if not c.done:
            c.done, c.at, c.by, c.how = True, e.time, _on_behalf(e), how

    q = (select(TimelineEntry).where(TimelineEntry.incident_id == inc.id, TimelineEntry.kind.in_(CHECK_KINDS))
         .order_by(TimelineEntry.seq))
    for e in s.scalars(q):
        data = e.data or {}
        if e.kind == "milestone" and data.get("name") == "impact_confirmed":
            tick("confirm_harm", e, "impact confirmed")
        elif e.kind == "audit.harm_confirmed":
            tick("confirm_harm", e, "harm confirmed in the audit")
        elif e.kind == "control.set":
            ctype = data.get("type")
            params = data.get("params") or {}
            if ctype in CONTAIN_CONTROLS:
                tick("contain", e, f"{ctype.replace('_', ' ')} #{data.get('id')}")
            if ctype == "fallback" or (ctype in ("kill_switch", "traffic") and params.get("fallback")):
                tick("safe_mode", e, f"fallback {params.get('fallback')}")
        elif e.kind == "change.rollback":
            tick("contain", e, f"rolled back {data.get('kind')}/{data.get('name')}")
        elif e.kind == "runbook.step.done" and data.get("type") == "audit":
            tick("evidence", e, "runbook captured the affected traces")
        elif e.kind == "checklist" and data.get("item") in checks:
            tick(str(data["item"]), e, e.text)
        elif e.kind == "status" and data.get("to") == "contained":
            tick("contain", e, "status contained")
    return list(checks.values())


def _on_behalf(e: TimelineEntry) -> str:
    data = e.data or {}
    who = data.get("on_behalf_of") if e.actor.startswith("system:") else None
    return f"{e.actor} (for {who})" if isinstance(who, str) and who != e.actor else e.actor


def timeline_window(s: Session, inc: Incident, *, before: int | None, page: int) -> dict[str, Any]:
    """A window of the timeline, newest first: the latest `page` entries, or those before seq `before`."""
    total = inc.chain_count
    end = total if before is None else max(0, min(before - 1, total))
    start = max(0, end - page)
    rows = incidents.timeline(s, incident_id=inc.id, after_seq=start, limit=max(1, end - start)) if end else []
    entries = [e.as_dict() for e in rows if e.seq <= end]
    entries.reverse()
    return {"entries": entries, "total": total, "first": start + 1 if entries else 0, "last": end,
            "older": start if start > 0 else None, "newer": end + page + 1 if end < total else None,
            "latest": before is None or end >= total}


def roles_view(s: Session, rt: Runtime, inc: Incident) -> dict[str, Any]:
    from codeblue.oncall import service as oncall

    held = inc.current_roles()
    on_call: list[dict[str, Any]] = []
    seen: set[tuple[str | None, str | None]] = set()
    wfs: list[str | None] = list(inc.workflows or []) or [None]
    for wf in wfs:
        for row in oncall.who_is_on_call(s, rt, workflow=wf):
            key = (row.get("schedule"), row.get("handle"))
            if key not in seen:
                seen.add(key)
                on_call.append(row)
    pages = [p.as_dict() for p in oncall.list_pages(s, incident_id=inc.id)]
    return {"roles": [{"role": r, "label": r.replace("_", " "), "handle": held.get(r)} for r in ROLES],
            "on_call": on_call, "pages": pages[-10:]}


def suspects_view(s: Session, inc: Incident) -> list[dict[str, Any]]:
    """The suspects best first, each with what a rollback would change right now (from the config's state)."""
    from codeblue.changes import service as changes

    out = []
    for sus in inc.suspects or []:
        item = dict(sus)
        kind, name = sus.get("kind"), sus.get("name")
        item["rollback_plan"] = None
        if kind and name and kind != "deploy" and sus.get("rollback", True) is not False:
            try:
                st = changes.config_state(s, kind=str(kind), name=str(name))
            except CodeblueError as exc:
                item["rollback_block"] = exc.detail
            else:
                item["rollback_plan"] = rollback_plan(st)
                if item["rollback_plan"] is None:
                    item["rollback_block"] = f"{kind}/{name} has nothing to roll back to"
        elif kind == "deploy":
            item["rollback_block"] = "a deploy is rolled back by its own pipeline"
        out.append(item)
    return out


def rollback_plan(st: dict[str, Any]) -> str | None:
    """What `changes.rollback` would do to this config now, in words (None: nothing to roll back to)."""
    key = f"{st['kind']}/{st['name']}"
    env = st.get("environment", "production")
    if st.get("candidate"):
        return (f"Stop the rollout of {key} {st['candidate']} (now serving {100 * float(st['fraction']):.0f}% of "
                f"{env} traffic): every request goes back to {st['stable']}.")
    prev = st.get("previous") or []
    if prev:
        return f"Re-activate {key} {prev[-1]} in {env} in place of {st['stable']} (100% of traffic)."
    return None


def runbook_view(s: Session, inc: Incident, who: Principal) -> dict[str, Any]:
    from codeblue.runbooks import executor, recovery
    from codeblue.runbooks.model import RunbookStep

    runs = executor.runs_for(s, incident_id=inc.id)
    for run in runs:
        for st in run["steps"]:
            st["can_request"] = st["state"] == "proposed" and who.has("responder")
            st["can_deny"] = st["state"] in ("awaiting_approval", "proposed") and who.has("responder")
            st["can_approve"] = st["state"] == "awaiting_approval" and (who.has("risk_owner") or who.has("lead"))
            st["approve_note"] = None
            if st["state"] == "awaiting_approval":
                row = s.get(RunbookStep, st["id"])
                why = executor.approval_refusal(row, handle=who.handle, roles=who.roles) if row else None
                st["approve_note"] = why
    proposed = any(st["state"] == "proposed" for run in runs for st in run["steps"])
    plans = [p.as_dict() for p in recovery.plans_for(s, incident_id=inc.id)]
    return {"runs": runs, "proposed": proposed, "recovery": plans}


def comms_view(s: Session, rt: Runtime, inc: Incident) -> dict[str, Any]:
    from codeblue.comms import service as comms
    from codeblue.comms import templates

    view = comms.get_view(s, rt, inc.id)
    items = comms.cadence(s, rt, view)
    updates = [u.as_dict() for u in comms.list_updates(s, incident_id=inc.id)][-5:]
    facts = {a: [{"name": f, "what": w} for f, w in templates.REQUIRED_FACTS[a]] for a in templates.REQUIRED_FACTS}
    return {"items": items, "updates": updates, "facts": facts, "labels": templates.LABELS,
            "status_url": comms.status_url(rt), "now": rt.clock.now()}


def audit_view(s: Session, inc: Incident) -> dict[str, Any] | None:
    if not has_review():
        return None
    from codeblue.review import audit

    prog = audit.progress(s, incident_id=inc.id)
    items: list[dict[str, Any]] = []
    if prog["materialised"]:
        items = audit.page(s, incident_id=inc.id, limit=15)["items"]
    return {"progress": prog, "items": items}


def postmortem_view(s: Session, rt: Runtime, inc: Incident) -> dict[str, Any] | None:
    if not has_review():
        return None
    from codeblue.review import postmortem

    st = postmortem.state(s, incident_id=inc.id)
    saved = postmortem.get_version(s, incident_id=inc.id)
    if saved is not None:
        return {"state": st, "version": saved.as_dict(markdown=False), "markdown": saved.markdown, "generated": False}
    md, _facts = postmortem.draft(s, rt, incident_id=inc.id)
    return {"state": st, "version": None, "markdown": md, "generated": True}


def incident_header(inc: Incident, now: float) -> dict[str, Any]:
    d = inc.as_dict()
    harm = d["harm"] or {}
    onset = harm.get("started_at") if isinstance(harm.get("started_at"), int | float) else None
    ms = d["milestones"]
    end = inc.closed_at or ms.get("resolved") or now

    def since(t: float | None) -> str:
        return ago(end - t) if t is not None else "—"

    return {**d, "onset": onset, "since_onset": since(onset), "since_detected": since(ms.get("detected")),
            "since_contained": since(ms.get("contained")), "harm_requests": harm.get("requests", 0),
            "harm_subjects": harm.get("subjects", 0), "growing": bool(harm.get("growing")),
            "harm_known": bool(harm)}
