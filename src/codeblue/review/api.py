"""Review routes: the audit of served answers, post-mortems, corrective actions, response metrics, /metrics."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from codeblue.auth.service import require
from codeblue.changes.service import parse_time
from codeblue.errors import Invalid, NotFound
from codeblue.http import RT, Lead, ORJSONResponse, Responder, Viewer, current_principal
from codeblue.incidents import service as incidents
from codeblue.review import actions, audit, metrics, postmortem
from codeblue.review.model import ACTION_KINDS, ACTION_STATUSES, CATEGORIES, REVIEW_STATES
from codeblue.runtime import Runtime

router = APIRouter(tags=["review"])
metrics_router = APIRouter(tags=["metrics"])
routers = [router, metrics_router]

ReviewState = Literal["pending", "ok", "harmful", "remediated"]
Category = Literal["wrong_entity", "action", "tool_error", "ungrounded", "refusal", "error", "answer"]
ActionKind = Literal["technical", "operational"]
ActionStatus = Literal["open", "in_progress", "done", "wont_do"]
assert get_args(ReviewState) == REVIEW_STATES and get_args(Category) == CATEGORIES
assert get_args(ActionKind) == ACTION_KINDS and get_args(ActionStatus) == ACTION_STATUSES
_DAYS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReviewIn(_Strict):
    state: ReviewState
    note: str = Field(default="", max_length=audit.MAX_NOTE)


class PostmortemIn(_Strict):
    markdown: str = Field(min_length=1, max_length=postmortem.MAX_MARKDOWN)
    note: str = Field(default="", max_length=2000)
    base_version: int | None = Field(default=None, ge=0, description="the version your edit started from")


class ActionIn(_Strict):
    title: str = Field(min_length=1, max_length=300)
    kind: ActionKind
    owner: str = Field(min_length=1, max_length=65, description="the person's handle")
    due: float | str = Field(description="unix seconds, RFC 3339 time or a date (YYYY-MM-DD, end of day UTC)")
    status: ActionStatus = "open"
    link: str = Field(default="", max_length=2000)
    note: str = Field(default="", max_length=20_000)


class ActionPatch(_Strict):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    kind: ActionKind | None = None
    owner: str | None = Field(default=None, min_length=1, max_length=65)
    due: float | str | None = None
    status: ActionStatus | None = None
    link: str | None = Field(default=None, max_length=2000)
    note: str | None = Field(default=None, max_length=20_000)


def parse_due(value: float | str, *, now: float) -> float:
    """A due date: unix seconds, RFC 3339, a date (end of that day, UTC) or a duration from now (`+7d`/`7d`)."""
    if isinstance(value, str):
        v = value.strip()
        if _DAYS_RE.match(v):
            try:
                d = datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                raise Invalid(f"due: {value!r} is not a date", field="due") from None
            return d.timestamp() + 86399.0
        m = re.match(r"^\+?(\d+(?:\.\d+)?)([smhdw])$", v)
        if m:
            unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
            return now + float(m.group(1)) * unit
    return parse_time(value, now=now, field="due")


# ----- audit ----------------------------------------------------------------------------------------------


def _materialise(rt: Runtime, incident_id: int, actor: str, *, rebuild: bool) -> None:
    with rt.db.read() as s:
        incidents.get_incident(s, incident_id)
        if not rebuild and audit.get_queue(s, incident_id) is not None:
            return
    try:
        with rt.db.write() as s:
            if rebuild:
                audit.build(s, rt, incident_id=incident_id, actor=actor)
            else:  # waits for a build another request is finishing instead of repeating it
                audit.ensure(s, rt, incident_id=incident_id, actor=actor)
    except IntegrityError:  # another request materialised it at the same moment (PostgreSQL)
        if rebuild:
            raise


def _ensure_queue(rt: Runtime, incident_id: int, actor: str) -> None:
    _materialise(rt, incident_id, actor, rebuild=False)


@router.get("/v1/incidents/{incident_id}/audit")
def audit_page(
    incident_id: int, rt: RT, p: Viewer,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 50,
    cursor: str | None = None,
    state: ReviewState | None = None,
    category: Category | None = None,
) -> Response:
    """The audit queue of served answers, riskiest first (materialised on first open)."""
    if cursor is None and category is None and state in (None, "pending"):
        with rt.db.read() as s:
            incidents.get_incident(s, incident_id)
            fresh = audit.get_queue(s, incident_id) is None
        if fresh:  # first open: page 1 as soon as it is ranked and written, the rest of the queue follows
            first = audit.open_first_page(rt, incident_id=incident_id, actor=p.handle, limit=limit)
            if first is not None:
                return ORJSONResponse(first)
    _ensure_queue(rt, incident_id, p.handle)
    with rt.db.read() as s:
        out = audit.page(s, incident_id=incident_id, limit=limit, cursor=cursor,
                         state=state, category=category)
        q = audit.get_queue(s, incident_id)
        out["queue"] = q.as_dict() if q else None
    return ORJSONResponse(out)


@router.post("/v1/incidents/{incident_id}/audit/refresh")
def audit_refresh(incident_id: int, rt: RT, p: Responder) -> Response:
    """Rebuild the queue over the current window (e.g. after containment); review states are kept."""
    _materialise(rt, incident_id, p.handle, rebuild=True)
    with rt.db.read() as s:
        q = audit.get_queue(s, incident_id)
        out = q.as_dict() if q else {}
    return ORJSONResponse(out)


@router.get("/v1/incidents/{incident_id}/audit/progress")
def audit_progress(incident_id: int, rt: RT, _p: Viewer) -> Response:
    with rt.db.read() as s:
        return ORJSONResponse(audit.progress(s, incident_id=incident_id))


@router.post("/v1/incidents/{incident_id}/audit/items/{item_id}")
def audit_review(incident_id: int, item_id: int, body: ReviewIn, rt: RT, p: Responder) -> Response:
    """Record a review: `pending`, `ok`, `harmful` or `remediated`, with a note."""
    with rt.db.write() as s:
        out = audit.review(s, rt, incident_id=incident_id, item_id=item_id, state=body.state,
                           note=body.note, reviewer=p.handle)
    return ORJSONResponse(out)


@router.get("/v1/incidents/{incident_id}/audit/export")
def audit_export(
    incident_id: int, rt: RT, p: Viewer,
    format: Annotated[str, Query(pattern="^(csv|json)$")] = "csv",
) -> Response:
    _ensure_queue(rt, incident_id, p.handle)
    if format == "json":
        return StreamingResponse(audit.export_json(rt, incident_id), media_type="application/json",
                                 headers={"Content-Disposition": f'attachment; filename="audit-{incident_id}.json"'})
    return StreamingResponse(audit.export_csv(rt, incident_id), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="audit-{incident_id}.csv"'})


# ----- post-mortem ----------------------------------------------------------------------------------------


@router.get("/v1/incidents/{incident_id}/postmortem")
def get_postmortem(
    incident_id: int, rt: RT, _p: Viewer,
    generate: bool = Query(False, description="compute a fresh draft even when versions are saved"),
    format: Annotated[str, Query(pattern="^(json|md)$")] = "json",
) -> Response:
    """The latest saved version, or a draft computed from the timeline and the stored signals."""
    with rt.db.read() as s:
        incidents.get_incident(s, incident_id)
        st = postmortem.state(s, incident_id=incident_id)
        saved = None if generate else postmortem.get_version(s, incident_id=incident_id)
        if saved is not None:
            md, facts = saved.markdown, None
            body: dict[str, Any] = {"version": saved.as_dict(markdown=False)}
        else:
            md, facts = postmortem.draft(s, rt, incident_id=incident_id)
            body = {"version": None}
    if format == "md":
        return Response(md, media_type="text/markdown; charset=utf-8")
    out: dict[str, Any] = {"incident_id": incident_id, **st, **body, "generated": saved is None, "markdown": md}
    if facts is not None:
        out["facts"] = {k: v for k, v in facts.items() if k not in ("incident", "entries")}
    return ORJSONResponse(out)


@router.put("/v1/incidents/{incident_id}/postmortem")
def save_postmortem(incident_id: int, body: PostmortemIn, rt: RT, p: Responder) -> Response:
    """Save an edited draft as a new version (pass `base_version` to be told about a concurrent save)."""
    with rt.db.write() as s:
        row = postmortem.save(s, rt, incident_id=incident_id, markdown=body.markdown, author=p.handle,
                              note=body.note, base_version=body.base_version)
        out = row.as_dict(markdown=False)
    return ORJSONResponse(out, status_code=201)


@router.get("/v1/incidents/{incident_id}/postmortem/versions")
def list_postmortem_versions(incident_id: int, rt: RT, _p: Viewer) -> Response:
    with rt.db.read() as s:
        rows = [v.as_dict(markdown=False) for v in postmortem.versions(s, incident_id=incident_id)]
        st = postmortem.state(s, incident_id=incident_id)
    return ORJSONResponse({"incident_id": incident_id, **st, "versions": rows})


@router.get("/v1/incidents/{incident_id}/postmortem/versions/{version}")
def get_postmortem_version(incident_id: int, version: int, rt: RT, _p: Viewer) -> Response:
    with rt.db.read() as s:
        incidents.get_incident(s, incident_id)
        row = postmortem.get_version(s, incident_id=incident_id, version=version)
        if row is None:
            raise NotFound(f"incident {incident_id} has no post-mortem version {version}", field="version")
        return ORJSONResponse(row.as_dict())


@router.post("/v1/incidents/{incident_id}/postmortem/complete")
def complete_postmortem(incident_id: int, rt: RT, p: Lead) -> Response:
    """Mark the post-mortem complete (409 naming what is missing without a technical and an operational action)."""
    with rt.db.write() as s:
        out = postmortem.complete(s, rt, incident_id=incident_id, actor=p.handle)
    return ORJSONResponse(out)


# ----- corrective actions ---------------------------------------------------------------------------------


@router.post("/v1/incidents/{incident_id}/actions")
def create_action(incident_id: int, body: ActionIn, rt: RT, p: Responder) -> Response:
    with rt.db.write() as s:
        now = rt.clock.now()
        a = actions.create(s, rt, incident_id=incident_id, title=body.title, kind=body.kind,
                           owner=body.owner, due_at=parse_due(body.due, now=now), link=body.link, note=body.note,
                           status=body.status,
                           actor=p.handle)
        out = a.as_dict(now=now)
    return ORJSONResponse(out, status_code=201)


@router.get("/v1/incidents/{incident_id}/actions")
def incident_actions(incident_id: int, rt: RT, _p: Viewer) -> Response:
    with rt.db.read() as s:
        incidents.get_incident(s, incident_id)
        now = rt.clock.now()
        return ORJSONResponse({"actions": [a.as_dict(now=now) for a in actions.list_actions(s, incident_id=incident_id)],
                               "missing_kinds": postmortem.missing_kinds(s, incident_id=incident_id)})


@router.get("/v1/actions")
def all_actions(
    rt: RT, _p: Viewer, overdue: bool = False, owner: str | None = None,
    status: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Response:
    with rt.db.read() as s:
        now = rt.clock.now()
        rows = actions.list_actions(s, status=status, owner=owner, overdue_at=now if overdue else None, limit=limit)
        return ORJSONResponse({"actions": [a.as_dict(now=now) for a in rows]})


@router.patch("/v1/actions/{action_id}")
def update_action(action_id: int, body: ActionPatch, rt: RT, p: Responder) -> Response:
    changes: dict[str, Any] = {}
    with rt.db.write() as s:
        now = rt.clock.now()
        for k, v in body.model_dump(exclude_unset=True).items():
            if v is None:
                raise Invalid(f"{k} cannot be null", field=k)
            if k == "due":
                changes["due_at"] = parse_due(v, now=now)
            else:
                changes[k] = v
        a = actions.update(s, rt, action_id=action_id, actor=p.handle, changes=changes)
        out = a.as_dict(now=now)
    return ORJSONResponse(out)


# ----- metrics --------------------------------------------------------------------------------------------


@router.get("/v1/metrics/response")
def response_metrics(rt: RT, _p: Viewer, since: str = "30d", until: str | None = None) -> Response:
    """MTTD, MTTA, MTTC and MTTR over incidents opened in the period, overall and per severity, failure type
    and workflow."""
    now = rt.clock.now()
    a = parse_time(since, now=now, field="since")
    b = parse_time(until, now=now, field="until") if until else now
    if b <= a:
        raise Invalid("until must be after since", field="until")
    with rt.db.read() as s:
        return ORJSONResponse(metrics.response_metrics(s, since=a, until=b))


@metrics_router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, rt: RT) -> Response:
    """Prometheus exposition. Needs a viewer token unless `metrics_require_token` is off (Prometheus sends it
    with `authorization: {credentials: <token>}` in its scrape config)."""
    if rt.settings.metrics_require_token:
        principal = await current_principal(request, rt)
        require(principal, "viewer")
    from anyio import to_thread

    def render() -> bytes:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(metrics.StateCollector(rt))
        return bytes(generate_latest(reg))

    body = await to_thread.run_sync(render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
