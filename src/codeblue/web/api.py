"""The responders' console: server-rendered pages under /console, live over SSE, driving the domain services.

Pages need a console session (log in with an API token). Every state-changing request needs the session's
CSRF token and the role the equivalent API route needs; the checks are the services' own (the two-person
rule, closing needs a lead, a user-facing update needs its facts), so the console can never do what the API
would refuse. A request without JavaScript gets a redirect back to the page with the outcome; a request from
the page's script (``Accept: application/json``) gets JSON, or a problem document naming what was wrong.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio.to_thread
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from codeblue.auth.service import Principal
from codeblue.errors import CodeblueError, Conflict, Forbidden, Invalid, NotFound, Unauthorized
from codeblue.http import RT, ORJSONResponse
from codeblue.incidents import service as incidents
from codeblue.incidents.model import FAILURE_TYPES, ROLES, SEVERITIES, STATUSES
from codeblue.runtime import Runtime
from codeblue.web import session as sessions
from codeblue.web import views, watch
from codeblue.web.session import ActResponder, ActViewer, User

HERE = Path(__file__).parent
STATIC = HERE / "static"
router = APIRouter(prefix="/console", include_in_schema=False)
routers = [router]

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html", "j2"]),
                   trim_blocks=True, lstrip_blocks=True)
_env.filters.update(iso=views.iso, hm=views.hm, ago=views.ago, pct=views.pct)
_env.globals.update(ROLES=ROLES, STATUSES=STATUSES, SEVERITIES=SEVERITIES, FAILURE_TYPES=FAILURE_TYPES)

_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
WRITE_GATE = "store.sqlite_write_gate"
APPROVE_ROLES = ("risk_owner", "lead")
PANELS = ("header", "checklist", "roles", "timeline", "chart", "suspects", "runbook", "comms", "audit",
          "postmortem", "controls")


# ----- plumbing -------------------------------------------------------------------------------------------


def render(name: str, **ctx: Any) -> str:
    return _env.get_template(name).render(**ctx)


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)


@contextmanager
def _write(rt: Runtime) -> Iterator[Session]:
    """One write transaction; on SQLite, queued on the process's writer gate like the incident routes."""
    if not rt.db.is_sqlite:
        with rt.db.write() as s:
            yield s
        return
    lock: threading.Lock = rt.extras.setdefault(WRITE_GATE, threading.Lock())
    with lock, rt.db.write() as s:
        yield s


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _login_redirect(request: Request) -> Response:
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?{urlencode({'next': nxt})}", status_code=303)


async def _user(request: Request, rt: Runtime) -> User | None:
    return await sessions.page_viewer(request, rt)


async def _page(request: Request, rt: Runtime, build: Callable[[User], str]) -> Response:
    user = await _user(request, rt)
    if user is None:
        if request.headers.get("x-console-fragment"):
            raise Unauthorized("your console session has ended; log in again")
        return _login_redirect(request)
    try:
        body = await anyio.to_thread.run_sync(build, user)
    except NotFound as exc:
        if request.headers.get("x-console-fragment"):
            raise
        return html(render("error.html.j2", user=user, nav=None, title="Not found", detail=exc.detail), 404)
    return html(body)


def _flash(request: Request) -> dict[str, str | None]:
    return {"msg": request.query_params.get("msg"), "err": request.query_params.get("err")}


async def _form(request: Request) -> FormData:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return await request.form()
    return FormData()


def _text(form: FormData, name: str, *, required: bool = False, max_len: int = 20_000, label: str | None = None
          ) -> str:
    raw = form.get(name)
    value = raw.strip() if isinstance(raw, str) else ""
    if required and not value:
        raise Invalid(f"{label or name.replace('_', ' ')} is required", field=name)
    if len(value) > max_len:
        raise Invalid(f"{label or name} may be at most {max_len} characters", field=name)
    return value


def _choice(form: FormData, name: str, allowed: tuple[str, ...]) -> str:
    value = _text(form, name, required=True)
    if value not in allowed:
        raise Invalid(f"{name} must be one of {', '.join(allowed)}", field=name)
    return value


async def _act(request: Request, work: Callable[[], str], *, back: str) -> Response:
    """Run a console action in a worker thread. Script requests get JSON (or the problem document); a plain
    form post is sent back to the page with the outcome."""
    try:
        message = await anyio.to_thread.run_sync(work)
    except CodeblueError as exc:
        if _wants_json(request) or exc.status in (401, 403):
            raise
        return RedirectResponse(f"{back}?{urlencode({'err': exc.detail})}", status_code=303)
    if _wants_json(request):
        return ORJSONResponse({"ok": True, "message": message})
    return RedirectResponse(f"{back}?{urlencode({'msg': message})}", status_code=303)


def _incident_back(incident_id: int) -> str:
    return f"/console/incidents/{incident_id}"


# ----- static files and login ---------------------------------------------------------------------------


@router.get("/static/{name}")
def static(name: str) -> Response:
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES or not path.is_file():
        raise NotFound(f"no console asset {name!r}")
    return Response(path.read_bytes(), media_type=_STATIC_TYPES[path.suffix],
                    headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})


@router.get("")
@router.get("/")
async def home(request: Request, rt: RT) -> Response:
    user = await _user(request, rt)
    return RedirectResponse("/console/incidents" if user else "/console/login", status_code=303)


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/incidents"


@router.get("/login")
def login_form(request: Request, rt: RT, next: str | None = None) -> Response:
    nonce = secrets.token_urlsafe(18)
    body = render("login.html.j2", csrf=nonce, next=_safe_next(next), err=request.query_params.get("err"),
                  msg=request.query_params.get("msg"), user=None)
    resp = html(body)
    resp.set_cookie(sessions.LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/console",
                    secure=sessions.secure_cookies(rt), max_age=3600)
    return resp


@router.post("/login")
async def login(request: Request, rt: RT) -> Response:
    """Exchange an API token for a console session (the token itself is never stored in the cookie)."""
    form = await _form(request)
    sent = _text(form, "csrf")
    expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
    if not sent or not expected or not secrets.compare_digest(sent, expected):
        raise Forbidden("the login form expired or was not sent from this console; reload it and try again",
                        field="csrf")
    token = _text(form, "token", max_len=512)
    nxt = _safe_next(_text(form, "next", max_len=2000))
    if not token:
        return RedirectResponse(f"/console/login?{urlencode({'err': 'paste your API token', 'next': nxt})}", 303)

    def check() -> tuple[str, Principal]:
        with rt.db.read() as s:
            value, principal, _sess = sessions.login(s, rt, token)
            return value, principal

    try:
        value, principal = await anyio.to_thread.run_sync(check)
    except Unauthorized:
        return RedirectResponse(
            f"/console/login?{urlencode({'err': 'that token is not valid (revoked or mistyped)', 'next': nxt})}", 303)
    if not principal.has("viewer"):
        return RedirectResponse(
            f"/console/login?{urlencode({'err': 'this token cannot read incidents (it needs the viewer role)'})}",
            303)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(sessions.COOKIE, value, httponly=True, samesite="strict", path="/console",
                    secure=sessions.secure_cookies(rt), max_age=int(rt.settings.console_session_ttl_s))
    resp.delete_cookie(sessions.LOGIN_COOKIE, path="/console")
    return resp


@router.post("/logout")
async def logout(request: Request, rt: RT, _who: ActViewer) -> Response:
    """Sign out: the session ends server-side (a copy of the cookie is refused too) and the cookie is cleared.
    With a bearer token instead of a cookie there is no session to end."""
    sess = sessions.read(rt, request.cookies.get(sessions.COOKIE))
    if sess is not None and not request.headers.get("authorization"):
        ended = sess

        def work() -> None:
            with _write(rt) as s:
                sessions.end(s, rt, ended)

        await anyio.to_thread.run_sync(work)
    resp: Response
    if _wants_json(request):
        resp = ORJSONResponse({"ok": True, "message": "signed out"})
    else:
        resp = RedirectResponse("/console/login?msg=signed+out", status_code=303)
    resp.delete_cookie(sessions.COOKIE, path="/console", httponly=True, samesite="strict")
    return resp


# ----- incidents list ---------------------------------------------------------------------------------------


def _incidents_ctx(rt: Runtime) -> dict[str, Any]:
    with rt.db.read() as s:
        return views.incident_rows(s, rt)


@router.get("/incidents")
async def incidents_page(request: Request, rt: RT) -> Response:
    flash = _flash(request)
    return await _page(request, rt, lambda u: render("incidents.html.j2", user=u, nav="incidents", **flash,
                                                     **_incidents_ctx(rt)))


@router.get("/fragments/incidents")
async def incidents_fragment(request: Request, rt: RT) -> Response:
    return await _page(request, rt, lambda u: render("_incident_rows.html.j2", user=u, **_incidents_ctx(rt)))


@router.post("/incidents")
async def open_incident(request: Request, rt: RT, who: ActResponder) -> Response:
    form = await _form(request)
    title = _text(form, "title", required=True, max_len=200)
    workflows = [w.strip() for w in _text(form, "workflows", max_len=2000).replace(",", " ").split() if w.strip()]
    severity = _choice(form, "severity", SEVERITIES) if form.get("severity") else "SEV3"
    failure_type = _choice(form, "failure_type", FAILURE_TYPES) if form.get("failure_type") else "other"
    opened: list[int] = []

    def work() -> str:
        with _write(rt) as s:
            inc = incidents.open_incident(s, rt, title=title, workflows=workflows, severity=severity,
                                          failure_type=failure_type, actor=who.handle)
            opened.append(inc.id)
            return f"incident #{inc.id} opened"

    resp = await _act(request, work, back="/console/incidents")
    if opened and not _wants_json(request):
        return RedirectResponse(f"/console/incidents/{opened[0]}?msg=opened", status_code=303)
    return resp


# ----- the incident page ------------------------------------------------------------------------------------


def _panel_ctx(s: Session, rt: Runtime, user: User, incident_id: int, panels: tuple[str, ...],
               before: int | None) -> dict[str, Any]:
    inc = incidents.get_incident(s, incident_id)
    now = rt.clock.now()
    ctx: dict[str, Any] = {"user": user, "inc": views.incident_header(inc, now), "now": now}
    if "checklist" in panels:
        ctx["checklist"] = views.checklist(s, inc)
    if "roles" in panels:
        ctx["roles"] = views.roles_view(s, rt, inc)
    if "timeline" in panels:
        ctx["timeline"] = views.timeline_window(s, inc, before=before, page=max(1, rt.settings.console_timeline_page))
    if "suspects" in panels:
        ctx["suspects"] = views.suspects_view(s, inc)
    if "runbook" in panels:
        ctx["runbook"] = views.runbook_view(s, inc, user.principal)
    if "comms" in panels:
        ctx["comms"] = views.comms_view(s, rt, inc)
    if "audit" in panels:
        ctx["audit"] = views.audit_view(s, inc)
    if "postmortem" in panels:
        ctx["postmortem"] = views.postmortem_view(s, rt, inc)
    if "chart" in panels:
        from codeblue.web import chart

        ctx["charts"] = chart.build(s, rt, inc)
    if "controls" in panels:
        from codeblue.controls import service as controls

        ctx["incident_controls"] = [c.as_dict() for c in controls.active_controls(s) if c.incident_id == inc.id]
    return ctx


#: Panels rendered with the page; the chart and the post-mortem draft (which read stored events) load after it.
INLINE = ("header", "checklist", "roles", "timeline", "suspects", "runbook", "comms", "audit", "controls")


@router.get("/incidents/{incident_id}")
async def incident_page(request: Request, rt: RT, incident_id: int,
                        before: int | None = Query(None, ge=1, description="timeline: entries before this seq")
                        ) -> Response:
    flash = _flash(request)

    def build(user: User) -> str:
        with rt.db.read() as s:
            ctx = _panel_ctx(s, rt, user, incident_id, INLINE, before)
        return render("incident.html.j2", nav="incidents", **flash, **ctx)

    return await _page(request, rt, build)


@router.get("/incidents/{incident_id}/panels/{panel}")
async def incident_panel(request: Request, rt: RT, incident_id: int, panel: str,
                         before: int | None = Query(None, ge=1)) -> Response:
    if panel not in PANELS:
        raise NotFound(f"no panel {panel!r}; panels: {', '.join(PANELS)}", field="panel")

    def build(user: User) -> str:
        with rt.db.read() as s:
            ctx = _panel_ctx(s, rt, user, incident_id, (panel,), before)
        return render(f"_panel_{panel}.html.j2", **ctx)

    return await _page(request, rt, build)


# ----- incident actions (same services and role checks as /v1) ----------------------------------------------


@router.post("/incidents/{incident_id}/notes")
async def add_note(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    form = await _form(request)
    text = _text(form, "text", required=True, label="the note")

    def work() -> str:
        with _write(rt) as s:
            e = incidents.append_entry(s, rt, incident_id=incident_id, kind="note", text=text, actor=who.handle)
            return f"note added to the timeline (#{e.seq})"

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/incidents/{incident_id}/ack")
async def acknowledge(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    def work() -> str:
        with _write(rt) as s:
            incidents.acknowledge(s, rt, incident_id=incident_id, actor=who.handle)
        return f"acknowledged by {who.handle}"

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/incidents/{incident_id}/status")
async def set_status(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    form = await _form(request)
    to = _choice(form, "to", STATUSES)
    note = _text(form, "note")
    if to == "closed" and not who.has("lead"):
        raise Forbidden("closing an incident needs the role lead", field="to")

    def work() -> str:
        with _write(rt) as s:
            incidents.set_status(s, rt, incident_id=incident_id, to=to, actor=who.handle, note=note)
        return f"status is now {to}"

    return await _act(request, work, back=_incident_back(incident_id))


MILESTONE_CHOICES = ("impact_confirmed", "mitigation_chosen", "mitigated")


@router.post("/incidents/{incident_id}/milestones")
async def set_milestone(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    form = await _form(request)
    name = _choice(form, "name", MILESTONE_CHOICES)
    data: dict[str, Any] = {}
    if name == "mitigation_chosen":
        data["path"] = _text(form, "path", required=True, max_len=2000, label="the mitigation path")
    detail = _text(form, "detail", max_len=2000)
    if detail:
        data["detail"] = detail

    def work() -> str:
        with _write(rt) as s:
            done = incidents.set_milestone(s, rt, incident_id=incident_id, name=name, actor=who.handle, data=data)
        label = name.replace("_", " ")
        return f"{label} recorded" if done else f"{label} was already recorded"

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/incidents/{incident_id}/roles")
async def assign_role(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    form = await _form(request)
    role = _choice(form, "role", ROLES)
    handle = _text(form, "handle", required=True, max_len=64, label="the person's handle")

    def work() -> str:
        with _write(rt) as s:
            incidents.assign_role(s, rt, incident_id=incident_id, role=role, handle=handle, actor=who.handle)
        return f"{handle} now holds {role.replace('_', ' ')}"

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/incidents/{incident_id}/page")
async def page_person(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    form = await _form(request)
    handle = _text(form, "handle", required=True, max_len=64, label="the person's handle")
    role = _text(form, "role", max_len=64) or "escalation"
    reason = _text(form, "reason", required=True, max_len=1000, label="the reason")

    def work() -> str:
        from codeblue.oncall import service as oncall

        with _write(rt) as s:
            oncall.page(s, rt, incident_id=incident_id, handle=handle, role=role, reason=reason, actor=who.handle)
        return f"paged {handle}"

    return await _act(request, work, back=_incident_back(incident_id))


CONTROL_CHOICES = ("kill_switch", "fallback", "traffic", "tool_disable")
FALLBACKS = ("backup_model", "human_queue", "static_answer")


@router.post("/incidents/{incident_id}/controls")
async def set_control(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    """Contain from the incident page: a control on one of the incident's workflows, linked to it."""
    form = await _form(request)
    type_ = _choice(form, "type", CONTROL_CHOICES)
    workflow = _text(form, "workflow", required=True, max_len=128)
    reason = _text(form, "reason", required=True, max_len=2000, label="the reason")
    scope = {"workflow": workflow}
    for key in ("action", "tool", "segment"):
        value = _text(form, key, max_len=200)
        if value:
            scope[key] = value
    params: dict[str, Any] = {}
    fallback = _text(form, "fallback", max_len=64)
    if fallback:
        if fallback not in FALLBACKS:
            raise Invalid(f"fallback must be one of {', '.join(FALLBACKS)}", field="fallback")
        params["fallback"] = fallback
        target = _text(form, "target", max_len=2000)
        if target:
            params["target"] = target
    if type_ == "traffic":
        raw = _text(form, "admit", required=True, label="the admitted percentage")
        try:
            admit = float(raw) / 100.0
        except ValueError:
            raise Invalid("admit must be a percentage between 0 and 100", field="admit") from None
        params["admit"] = admit
    expires = _text(form, "expires_h")

    def work() -> str:
        from codeblue.controls import service as controls

        with _write(rt) as s:
            inc = incidents.get_incident(s, incident_id)
            if workflow not in (inc.workflows or []):
                raise Invalid(f"{workflow!r} is not one of this incident's workflows "
                              f"({', '.join(inc.workflows or []) or 'none'})", field="workflow")
            exp = None
            if expires:
                try:
                    exp = rt.clock.now() + float(expires) * 3600.0
                except ValueError:
                    raise Invalid("expires must be a number of hours", field="expires_h") from None
            ctl = controls.set_control(s, rt, type=type_, scope=scope, params=params, reason=reason,
                                       actor=who.handle, incident_id=incident_id, expires_at=exp)
            return f"{type_.replace('_', ' ')} #{ctl.id} in force on {workflow}"

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/incidents/{incident_id}/evidence")
async def collect_evidence(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    """Freeze the served answers since the onset into the audit queue, and tick the checklist item."""

    def work() -> str:
        with _write(rt) as s:
            incidents.get_incident(s, incident_id, for_update=True)
            detail = "evidence collected"
            if views.has_review():
                from codeblue.review import audit

                q = audit.build(s, rt, incident_id=incident_id, actor=who.handle).as_dict()
                detail = (f"evidence collected: {q['items']} served answers since the onset queued for the audit"
                          + (" (truncated)" if q.get("truncated") else ""))
            incidents.append_entry(s, rt, incident_id=incident_id, kind="checklist", actor=who.handle, text=detail,
                                   data={"item": "evidence"})
        return detail

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/configs/{kind}/{name}/rollback")
async def rollback(request: Request, rt: RT, kind: str, name: str, who: ActResponder) -> Response:
    """One-click rollback of a config (a suspect, or from the changes page); a change record like /v1's."""
    form = await _form(request)
    raw_incident = _text(form, "incident_id")
    incident_id: int | None = None
    if raw_incident:
        if not raw_incident.isdigit():
            raise Invalid("incident_id must be an incident number", field="incident_id")
        incident_id = int(raw_incident)
    note = _text(form, "note", max_len=2000)
    environment = _text(form, "environment", max_len=64) or "production"

    def work() -> str:
        from codeblue.changes import service as changes

        with _write(rt) as s:
            ch = changes.rollback(s, rt, kind=kind, name=name, environment=environment, actor=who.handle,
                                  incident_id=incident_id, note=note or "rolled back from the console").as_dict()
        return f"rolled back {kind}/{name}: {ch.get('from')} → {ch.get('to')} (change #{ch.get('id')})"

    back = _incident_back(incident_id) if incident_id else "/console/changes"
    return await _act(request, work, back=back)


@router.post("/incidents/{incident_id}/runbook/accept")
async def accept_proposal(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    def work() -> str:
        from codeblue.runbooks import executor

        with _write(rt) as s:
            steps = executor.accept_proposal(s, rt, incident_id=incident_id, actor=who.handle)
        return f"{len(steps)} proposed steps accepted"

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/incidents/{incident_id}/runbook/steps/{step_id}/request")
async def request_step(request: Request, rt: RT, incident_id: int, step_id: int, who: ActResponder) -> Response:
    def work() -> str:
        from codeblue.runbooks import executor

        with _write(rt) as s:
            st = executor.request_step(s, rt, incident_id=incident_id, step_id=step_id, actor=who.handle)
            return f"step {st.step_id} requested" + (" — it now needs approval" if st.state == "awaiting_approval"
                                                     else "")

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/incidents/{incident_id}/runbook/steps/{step_id}/approve")
async def approve_step(request: Request, rt: RT, incident_id: int, step_id: int, who: ActViewer) -> Response:
    """Exactly the API's rule: risk owners (or leads for `approval: lead` steps), never the requester; a refusal
    is written on the timeline before it is returned."""

    def work() -> str:
        from codeblue.runbooks import executor

        why: str | None = None
        with _write(rt) as s:
            step = executor.find_step(s, incident_id=incident_id, step_id=step_id)
            if step is not None:
                why = executor.approval_refusal(step, handle=who.handle, roles=who.roles)
                if why is not None and step.state == "awaiting_approval":
                    executor.record_refusal(s, rt, incident_id=incident_id, step=step, actor=who.handle, why=why)
            refused_waiting = why is not None and step is not None and step.state == "awaiting_approval"
        if not any(who.has(r) for r in APPROVE_ROLES):
            raise Forbidden(why or f"approving a step needs the role risk_owner (or lead); {who.handle} has neither")
        if refused_waiting:
            raise Forbidden(why or "refused")
        with _write(rt) as s:
            st = executor.approve_step(s, rt, incident_id=incident_id, step_id=step_id, actor=who.handle,
                                       roles=who.roles)
            return f"{who.handle} approved step {st.step_id}"

    return await _act(request, work, back=_incident_back(incident_id))


@router.post("/incidents/{incident_id}/runbook/steps/{step_id}/deny")
async def deny_step(request: Request, rt: RT, incident_id: int, step_id: int, who: ActResponder) -> Response:
    form = await _form(request)
    reason = _text(form, "reason", max_len=2000)

    def work() -> str:
        from codeblue.runbooks import executor

        with _write(rt) as s:
            st = executor.deny_step(s, rt, incident_id=incident_id, step_id=step_id, actor=who.handle, reason=reason)
            return f"step {st.step_id} denied"

    return await _act(request, work, back=_incident_back(incident_id))


AUDIENCES = ("internal", "status_page", "support", "executive")
FACT_FIELDS = ("summary", "feature", "alternatives", "actions", "status_url", "impact", "eta", "status",
               "details", "next_update", "customer_message", "risk", "decision_needed", "title")


@router.post("/incidents/{incident_id}/updates")
async def publish_update(request: Request, rt: RT, incident_id: int, who: ActResponder) -> Response:
    """The composer: publish through comms, which refuses an update missing a required fact and names it."""
    form = await _form(request)
    audience = _choice(form, "audience", AUDIENCES)
    facts = {k: _text(form, f"fact_{k}", max_len=4000) for k in FACT_FIELDS}
    facts = {k: v for k, v in facts.items() if v}
    text = _text(form, "text", max_len=20_000)

    def work() -> str:
        from codeblue.comms import service as comms
        from codeblue.comms import templates

        with _write(rt) as s:
            comms.publish_update(s, rt, incident_id=incident_id, audience=audience, facts=facts, text=text,
                                 actor=who.handle)
        return f"{templates.LABELS[audience]} published"

    return await _act(request, work, back=_incident_back(incident_id) + "#comms")


@router.post("/incidents/{incident_id}/audit/items/{item_id}")
async def review_item(request: Request, rt: RT, incident_id: int, item_id: int, who: ActResponder) -> Response:
    form = await _form(request)
    state = _choice(form, "state", ("pending", "ok", "harmful", "remediated"))
    note = _text(form, "note", max_len=2000)

    def work() -> str:
        if not views.has_review():
            raise Conflict("the audit of served answers is not installed on this server")
        from codeblue.review import audit

        with _write(rt) as s:
            audit.review(s, rt, incident_id=incident_id, item_id=item_id, state=state, note=note,
                         reviewer=who.handle)
        return f"answer marked {state}"

    return await _act(request, work, back=_incident_back(incident_id) + "#audit")


# ----- controls, changes, on call ---------------------------------------------------------------------------


def _controls_ctx(rt: Runtime) -> dict[str, Any]:
    from codeblue.controls import service as controls
    from codeblue.controls.clients import service as clients

    with rt.db.read() as s:
        env = rt.settings.environment
        active = [c.as_dict() for c in controls.active_controls(s, environment=env)]
        snap_rev = controls.snapshot(s, environment=env)["revision"]
        sdk = clients.list_clients(s, rt)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for c in active:
        by_type.setdefault(c["type"], []).append(c)
    return {"by_type": by_type, "active": active, "revision": snap_rev, "clients": sdk,
            "environment": rt.settings.environment, "now": rt.clock.now()}


@router.get("/controls")
async def controls_page(request: Request, rt: RT) -> Response:
    flash = _flash(request)
    return await _page(request, rt, lambda u: render("controls.html.j2", user=u, nav="controls", **flash,
                                                     **_controls_ctx(rt)))


@router.get("/fragments/controls")
async def controls_fragment(request: Request, rt: RT) -> Response:
    return await _page(request, rt, lambda u: render("_controls_body.html.j2", user=u, **_controls_ctx(rt)))


@router.post("/controls/{control_id}/lift")
async def lift_control(request: Request, rt: RT, control_id: int, who: ActResponder) -> Response:
    form = await _form(request)
    reason = _text(form, "reason", max_len=2000)
    back = _text(form, "back", max_len=200)

    def work() -> str:
        from codeblue.controls import service as controls

        with _write(rt) as s:
            ctl = controls.lift_control(s, rt, control_id=control_id, actor=who.handle, reason=reason)
            return f"{ctl.type.replace('_', ' ')} #{ctl.id} lifted"

    return await _act(request, work, back=_safe_next(back) if back else "/console/controls")


def _changes_ctx(rt: Runtime, params: dict[str, str]) -> dict[str, Any]:
    from codeblue.changes import service as changes

    now = rt.clock.now()
    since_raw = params.get("since") or "24h"
    with rt.db.read() as s:
        since = changes.parse_time(since_raw, now=now, field="since")
        rows = changes.list_changes(
            s, since=since, workflow=params.get("workflow") or None, kind=params.get("kind") or None,
            name=params.get("name") or None, type=params.get("type") or None,
            environment=params.get("environment") or None, limit=300,
        )
        configs = {c["key"]: c for c in changes.list_configs(s, environment=rt.settings.environment)}
        kinds = [k["kind"] for k in changes.list_kinds(s)]
        out = []
        for ch in rows:
            d = ch.as_dict()
            cfg = configs.get(f"{ch.kind}/{ch.name}")
            d["plan"] = None
            if cfg is not None and ch.type != "external" and ch.environment == rt.settings.environment:
                st = changes.config_state(s, kind=ch.kind, name=ch.name, environment=ch.environment)
                d["plan"] = views.rollback_plan(st)
            out.append(d)
    return {"changes": out, "filters": {"since": since_raw, **{k: params.get(k, "") for k in
                                                                  ("workflow", "kind", "name", "type", "environment")}},
            "kinds": kinds, "now": now}


_CHANGE_FILTERS = ("since", "workflow", "kind", "name", "type", "environment")


@router.get("/changes")
async def changes_page(request: Request, rt: RT) -> Response:
    flash = _flash(request)
    params = {k: request.query_params.get(k, "") for k in _CHANGE_FILTERS}
    if params["type"] and params["type"] not in ("activate", "rollback", "external"):
        raise Invalid("type must be activate, rollback or external", field="type")
    query = urlencode({k: v for k, v in params.items() if v})
    return await _page(request, rt, lambda u: render("changes.html.j2", user=u, nav="changes", **flash,
                                                     request_query=query, **_changes_ctx(rt, params)))


@router.get("/fragments/changes")
async def changes_fragment(request: Request, rt: RT) -> Response:
    params = {k: request.query_params.get(k, "") for k in _CHANGE_FILTERS}
    return await _page(request, rt, lambda u: render("_changes_body.html.j2", user=u, **_changes_ctx(rt, params)))


def _oncall_ctx(rt: Runtime) -> dict[str, Any]:
    from codeblue.oncall import service as oncall

    with rt.db.read() as s:
        rows = oncall.who_is_on_call(s, rt)
    domains: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        domains.setdefault(str(r["domain"]), []).append(r)
    return {"domains": domains, "now": rt.clock.now()}


@router.get("/oncall")
async def oncall_page(request: Request, rt: RT) -> Response:
    return await _page(request, rt, lambda u: render("oncall.html.j2", user=u, nav="oncall", **_flash(request),
                                                     **_oncall_ctx(rt)))


@router.get("/fragments/oncall")
async def oncall_fragment(request: Request, rt: RT) -> Response:
    return await _page(request, rt, lambda u: render("_oncall_body.html.j2", user=u, **_oncall_ctx(rt)))


# ----- live updates ---------------------------------------------------------------------------------------------

PAGE_TOPICS = {"incidents": ("incidents",), "controls": ("controls", "sdk"), "changes": ("changes", "controls"),
               "oncall": ()}
HEARTBEAT_S = 15.0


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {orjson.dumps(data).decode()}\n\n".encode()


@router.get("/events")
async def events(request: Request, rt: RT, incident: int | None = Query(None, ge=1),
                 page: str | None = Query(None, pattern="^(incidents|controls|changes|oncall)$")) -> Response:
    """Server-Sent Events for one open page: ``hello`` once subscribed (the page then re-fetches its live panels,
    which covers anything committed while it connected), then ``changed`` with the topics that changed."""
    user = await _user(request, rt)
    if user is None:
        raise Unauthorized("sign in to the console first")
    topics: set[str] = set()
    if incident is not None:
        def exists() -> None:
            with rt.db.read() as s:
                incidents.get_incident(s, incident)

        await anyio.to_thread.run_sync(exists)
        topics |= {f"incident:{incident}", "controls"}
    if page:
        topics |= set(PAGE_TOPICS[page])
    w = watch.watcher(rt)
    await anyio.to_thread.run_sync(w.prime, topics)
    sub = w.subscribe(topics, asyncio.get_running_loop())

    async def gen() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n" + _sse("hello", {"topics": sorted(sub.topics)})
            while True:
                try:
                    async with asyncio.timeout(HEARTBEAT_S):
                        changed = await sub.queue.get()
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": hb\n\n"
                    continue
                while not sub.queue.empty():
                    changed |= sub.queue.get_nowait()
                yield _sse("changed", {"topics": sorted(changed)})
        finally:
            w.unsubscribe(sub)

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def quote_path(value: str) -> str:
    return quote(value, safe="")


_env.filters["q"] = quote_path
