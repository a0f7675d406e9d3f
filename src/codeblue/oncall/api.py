"""On-call routes: schedules, overrides, who is on call, escalation policies, pages and the signed ack link."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from codeblue.errors import CodeblueError, Invalid
from codeblue.http import RT, Lead, Responder, Viewer
from codeblue.oncall import service
from codeblue.oncall.config import OverrideIn, PolicyIn, ScheduleIn, check_selector, parse_instant

router = APIRouter(prefix="/v1/oncall", tags=["oncall"])


def _instant(value: str | None, field: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise Invalid(f"{field}: {exc}", field=field) from exc


# ----- schedules -----------------------------------------------------------------------------------------


@router.post("/schedules", status_code=201)
def create_schedule(body: ScheduleIn, rt: RT, who: Lead) -> dict[str, Any]:
    """Create a schedule: layers of rotations in an IANA time zone, for a domain and/or a workflow."""
    with rt.db.write() as s:
        return service.create_schedule(s, rt, spec=body, actor=who.handle).as_dict()


@router.get("/schedules")
def list_schedules(rt: RT, _who: Viewer, domain: str | None = None, workflow: str | None = None) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return [r.as_dict() for r in service.list_schedules(s, domain=domain, workflow=workflow)]


@router.get("/schedules/{ref}")
def get_schedule(ref: str, rt: RT, _who: Viewer) -> dict[str, Any]:
    """A schedule with who is on call now and the overrides that have not ended."""
    now = rt.clock.now()
    with rt.db.read() as s:
        row = service.get_schedule(s, ref)
        out = row.as_dict()
        hit = service.on_call_for(s, row, now)
        out["on_call"] = service.answer(row, hit)
        out["overrides"] = [o.as_dict() for o in service.list_overrides(s, ref=row.id, since=now)]
        return out


@router.put("/schedules/{ref}")
def replace_schedule(ref: str, body: ScheduleIn, rt: RT, who: Lead) -> dict[str, Any]:
    with rt.db.write() as s:
        return service.replace_schedule(s, rt, ref=ref, spec=body, actor=who.handle).as_dict()


@router.delete("/schedules/{ref}", status_code=204)
def delete_schedule(ref: str, rt: RT, _who: Lead) -> None:
    with rt.db.write() as s:
        service.delete_schedule(s, ref=ref)


@router.get("/schedules/{ref}/shifts")
def shifts(ref: str, rt: RT, _who: Viewer, since: str | None = None, until: str | None = None) -> list[dict[str, Any]]:
    """The final schedule (layers and overrides combined) as segments; default the next 14 days."""
    start = _instant(since, "since") or rt.clock.now()
    end = _instant(until, "until") or start + 14 * 86400
    with rt.db.read() as s:
        return service.schedule_shifts(s, ref=ref, since=start, until=end)


@router.post("/schedules/{ref}/overrides", status_code=201)
def add_override(ref: str, body: OverrideIn, rt: RT, who: Responder) -> dict[str, Any]:
    """Put someone on call in place of the schedule for a period (a swap, a holiday)."""
    with rt.db.write() as s:
        return service.add_override(s, rt, ref=ref, spec=body, actor=who.handle).as_dict()


@router.get("/schedules/{ref}/overrides")
def list_overrides(ref: str, rt: RT, _who: Viewer, past: bool = False) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        since = None if past else rt.clock.now()
        return [o.as_dict() for o in service.list_overrides(s, ref=ref, since=since)]


@router.delete("/schedules/{ref}/overrides/{override_id}", status_code=204)
def delete_override(ref: str, override_id: int, rt: RT, _who: Responder) -> None:
    with rt.db.write() as s:
        service.delete_override(s, ref=ref, override_id=override_id)


@router.get("/who")
def who(
    rt: RT, _who: Viewer, domain: str | None = None, workflow: str | None = None, at: str | None = None
) -> dict[str, Any]:
    """Who is on call, per schedule; `at` is unix seconds or ISO 8601 (default now)."""
    when = _instant(at, "at")
    when = rt.clock.now() if when is None else when
    with rt.db.read() as s:
        return {"at": when, "on_call": service.who_is_on_call(s, rt, domain=domain, workflow=workflow, at=when)}


@router.get("/rules")
def rules(rt: RT, _who: Viewer) -> list[dict[str, Any]]:
    """The rule that fills incident roles from the on-call map when an incident opens."""
    return [r.model_dump(mode="json", by_alias=True) for r in service.role_rules(rt)]


# ----- escalation ----------------------------------------------------------------------------------------


@router.get("/policies")
def list_policies(rt: RT, _who: Viewer) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return [p.as_dict() for p in service.list_policies(s)]


@router.post("/policies", status_code=201)
def put_policy(body: PolicyIn, rt: RT, _who: Lead) -> dict[str, Any]:
    """Create an escalation policy, or replace the one with this name."""
    with rt.db.write() as s:
        return service.put_policy(s, rt, spec=body).as_dict()


@router.delete("/policies/{ref}", status_code=204)
def delete_policy(ref: str, rt: RT, _who: Lead) -> None:
    with rt.db.write() as s:
        service.delete_policy(s, ref=ref)


class EscalateIn(BaseModel):
    incident_id: int
    policy: str | None = Field(default=None, description="default: the first policy that matches the incident")


@router.post("/escalations", status_code=201)
def start_escalation(body: EscalateIn, rt: RT, who: Responder) -> dict[str, Any]:
    with rt.db.write() as s:
        esc = service.start_escalation(s, rt, incident_id=body.incident_id, policy=body.policy, actor=who.handle)
        if esc is None:
            raise Invalid("no escalation policy covers this incident (or it is already acknowledged)", field="policy")
        return esc.as_dict()


@router.get("/escalations")
def list_escalations(rt: RT, _who: Viewer, incident_id: int | None = None, state: str | None = None) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return [e.as_dict() for e in service.list_escalations(s, incident_id=incident_id, state=state)]


class PageIn(BaseModel):
    incident_id: int
    handle: str | None = Field(default=None, max_length=64, description="the person to page")
    target: str | None = Field(default=None, description="or: a domain, 'schedule:<name>' or 'person:<handle>'")
    role: str = Field(default="escalation", min_length=1, max_length=64, pattern=r"^[a-z_]+$")
    reason: str = Field(min_length=1, max_length=1000)


@router.post("/pages", status_code=201)
def page(body: PageIn, rt: RT, who: Responder) -> dict[str, Any]:
    """Page a person, or whoever a target puts on call now, about an incident."""
    with rt.db.write() as s:
        handle = body.handle
        if handle is None:
            if body.target is None:
                raise Invalid("give handle or target", field="handle")
            try:
                target = check_selector(body.target)
            except ValueError as exc:
                raise Invalid(str(exc), field="target") from exc
            from codeblue.incidents import service as incidents

            wf = incidents.get_incident(s, body.incident_id).as_dict()["workflows"]
            hit = service.resolve_target(s, target=target, workflows=wf, at=rt.clock.now())
            if hit is None:
                raise Invalid(f"nobody is on call for {target}", field="target")
            handle = hit[0]
        row = service.page(s, rt, incident_id=body.incident_id, handle=handle, role=body.role, reason=body.reason,
                           actor=who.handle)
        return row.as_dict()


@router.get("/pages")
def list_pages(incident_id: int, rt: RT, _who: Viewer) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return [p.as_dict() for p in service.list_pages(s, incident_id=incident_id)]


# ----- the signed link in a page -------------------------------------------------------------------------


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def _html(title: str, message: str, status: int, *, extra: str = "") -> HTMLResponse:
    doc = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<body style='font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{extra}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers={"Cache-Control": "no-store"})


def _link(request: Request, rt: RT, token: str, *, acknowledge: bool) -> dict[str, Any] | Response:
    """The link's state (GET) or its acknowledgement (POST); a refused link is a page for a browser."""
    try:
        if acknowledge:
            with rt.db.write() as s:
                return service.acknowledge_by_token(s, rt, token=token)
        with rt.db.read() as s:
            return service.describe_ack_token(s, rt, token=token)
    except CodeblueError as exc:
        if _wants_html(request):
            return _html(exc.title, exc.detail, exc.status)
        raise


@router.get("/ack/{token}", response_model=None)
def ack_link(token: str, request: Request, rt: RT) -> dict[str, Any] | Response:
    """What the signed link in a page would acknowledge; acknowledging takes a POST to the same URL.

    A GET never acknowledges: mail security scanners and chat unfurlers fetch links in messages on their own,
    and an acknowledgement made by one would stop escalation with nobody looking. A browser gets a page with
    one button that POSTs; forged or expired links are refused (403) either way.
    """
    out = _link(request, rt, token, acknowledge=False)
    if isinstance(out, Response):
        return out
    if not _wants_html(request):
        return {**out, "acknowledge": "POST this URL to acknowledge"}
    if out["acknowledged"]:
        return _html("Already acknowledged",
                     f"Incident #{out['incident_id']} ({out['title']}) was already acknowledged by "
                     f"{out['acknowledged_by']}.", 200)
    button = (f"<form method=post><button type=submit style='font-size:1.2rem;padding:.6rem 1.2rem'>"
              f"Acknowledge as {html.escape(out['handle'])}</button></form>")
    return _html("Acknowledge this page?",
                 f"Incident #{out['incident_id']} ({out['severity']}): {out['title']}. Acknowledging stops "
                 f"escalation and tells the team you are on it.", 200, extra=button)


@router.post("/ack/{token}", response_model=None)
def ack_link_post(token: str, request: Request, rt: RT) -> dict[str, Any] | Response:
    """Acknowledge an incident from the signed link in a page (no API token; forged or expired links are
    refused). A second acknowledgement is harmless: the answer says who acknowledged first."""
    out = _link(request, rt, token, acknowledge=True)
    if isinstance(out, Response) or not _wants_html(request):
        return out
    if out["already_acknowledged"]:
        msg = f"Incident #{out['incident_id']} ({out['title']}) was already acknowledged by {out['acknowledged_by']}."
    else:
        msg = f"You ({out['handle']}) acknowledged incident #{out['incident_id']}: {out['title']}. Escalation stopped."
    return _html("Acknowledged", msg, 200)
