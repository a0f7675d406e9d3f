"""Incident routes: translate HTTP to service calls, one write transaction per request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope

from codeblue.auth.service import Principal, require
from codeblue.errors import Forbidden, Invalid
from codeblue.http import (
    RT,
    LeanRoute,
    ORJSONResponse,
    Responder,
    Viewer,
    header,
    principal_for,
    read_body,
    run_write_batched,
)
from codeblue.incidents import service
from codeblue.incidents.model import FAILURE_TYPES, MILESTONES, ROLES, SEVERITIES, STATUSES
from codeblue.runtime import Runtime

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])

class Severity(StrEnum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"


class FailureType(StrEnum):
    answer_quality = "answer_quality"
    account_action = "account_action"
    tool = "tool"
    retrieval = "retrieval"
    policy_refusal = "policy_refusal"
    availability = "availability"
    other = "other"


class Status(StrEnum):
    triggered = "triggered"
    investigating = "investigating"
    contained = "contained"
    monitoring = "monitoring"
    resolved = "resolved"
    closed = "closed"


class Role(StrEnum):
    incident_lead = "incident_lead"
    technical_lead = "technical_lead"
    communications_lead = "communications_lead"
    support_liaison = "support_liaison"
    infra_owner = "infra_owner"
    feature_owner = "feature_owner"
    risk_owner = "risk_owner"
    ops_owner = "ops_owner"


class MilestoneName(StrEnum):
    """What POST /milestones may set: detected is set at open, acknowledged by /ack, contained and resolved by
    status moves; `eta` updates the current ETA."""

    impact_confirmed = "impact_confirmed"
    mitigation_chosen = "mitigation_chosen"
    mitigated = "mitigated"
    eta = "eta"


assert tuple(Severity) == SEVERITIES and tuple(FailureType) == FAILURE_TYPES
assert tuple(Status) == STATUSES and tuple(Role) == ROLES
assert {m.value for m in MilestoneName} - {"eta"} <= set(MILESTONES)

Text = Annotated[str, Field(max_length=service.MAX_TEXT)]
Handle = Annotated[str, Field(min_length=1, max_length=64)]
Workflow = Annotated[str, Field(min_length=1, max_length=128, pattern=service.WORKFLOW_RE.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HarmIn(_Strict):
    requests: int = Field(default=0, ge=0)
    subjects: int = Field(default=0, ge=0)
    workflows: list[Workflow] = Field(default_factory=list)
    started_at: float | None = None
    growing: bool = False


class SuspectIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    change_id: int | str | None = None
    kind: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    version: str | None = Field(default=None, max_length=200)
    score: float | None = None
    evidence: Any = None
    rollback: bool = False


class IncidentIn(_Strict):
    title: str = Field(min_length=1, max_length=200)
    workflows: list[Workflow] = Field(default_factory=list, max_length=100)
    severity: Severity = Severity.SEV3
    failure_type: FailureType = FailureType.other
    summary: Text = ""
    harm: HarmIn | None = None
    suspects: list[SuspectIn] | None = Field(default=None, max_length=100)
    source: str = Field(default="manual", min_length=1, max_length=64)
    detected_at: float | None = None
    roles: dict[Role, Handle] = Field(default_factory=dict, description="role → person handle, assigned at open")
    data: dict[str, Any] | None = None


class StatusIn(_Strict):
    to: Status
    note: Text = ""


class RoleIn(_Strict):
    role: Role
    handle: Handle


class NoteIn(_Strict):
    text: Text = Field(min_length=1)


class ReportIn(_Strict):
    text: Text = Field(min_length=1)
    subject: str | None = Field(default=None, max_length=200)
    channel: str | None = Field(default=None, max_length=200)


class MilestoneIn(_Strict):
    name: MilestoneName
    at: float | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class IncidentPatch(_Strict):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    severity: Severity | None = None
    failure_type: FailureType | None = None
    summary: Text | None = None
    eta: float | None = None
    harm: HarmIn | None = None
    suspects: list[SuspectIn] | None = Field(default=None, max_length=100)
    workflows: list[Workflow] | None = Field(default=None, max_length=100)


@contextmanager
def _write(rt: Runtime) -> Iterator[Session]:
    """One write transaction per request (on SQLite the database queues this process's writers on a lock)."""
    with rt.db.write() as s:
        yield s


def _json(data: Any, status: int = 200) -> Response:
    """Serialise with orjson directly: no response-model validation, no extra thread hop."""
    return ORJSONResponse(data, status_code=status)


def _suspects(items: list[SuspectIn] | None) -> list[dict[str, Any]] | None:
    return None if items is None else [x.model_dump(mode="json") for x in items]


@router.post("", status_code=201, response_model=None)
def open_incident(body: IncidentIn, rt: RT, who: Responder) -> Response:
    """Open an incident (status triggered), optionally assigning roles at once."""
    with _write(rt) as s:
        inc = service.open_incident(
            s, rt, title=body.title, workflows=list(body.workflows), severity=body.severity.value,
            failure_type=body.failure_type.value, summary=body.summary,
            harm=body.harm.model_dump() if body.harm else None, suspects=_suspects(body.suspects),
            source=body.source, actor=who.handle, detected_at=body.detected_at, data=body.data,
        )
        for role, handle in body.roles.items():
            service.assign_role(s, rt, incident_id=inc.id, role=role.value, handle=handle, actor=who.handle)
        return _json(inc.as_dict(), 201)


@router.get("", response_model=None)
def list_incidents(
    rt: RT,
    _who: Viewer,
    status: Annotated[list[Status] | None, Query(description="repeat for several")] = None,
    open: Annotated[bool, Query(description="only incidents not yet resolved or closed")] = False,
    workflow: Annotated[str | None, Query(max_length=128)] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    before_id: Annotated[int | None, Query(ge=1, description="page: incidents with a smaller id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    with rt.db.read() as s:
        rows = service.list_incidents(
            s, statuses=[x.value for x in status] if status else None, open_only=open, workflow=workflow,
            severity=[x.value for x in severity] if severity else None, limit=limit, before_id=before_id,
        )
        return _json([inc.as_dict() for inc in rows])


@router.get("/{incident_id}", response_model=None)
def get_incident(incident_id: int, rt: RT, _who: Viewer) -> Response:
    with rt.db.read() as s:
        return _json(service.get_incident(s, incident_id).as_dict(history=True))


@router.patch("/{incident_id}", response_model=None)
def patch_incident(incident_id: int, body: IncidentPatch, rt: RT, who: Responder) -> Response:
    """Change triage facts (severity, failure type, summary, ETA, harm, suspects, workflows, title)."""
    with _write(rt) as s:
        inc = service.update_triage(
            s, rt, incident_id=incident_id, actor=who.handle,
            severity=body.severity.value if body.severity else None,
            failure_type=body.failure_type.value if body.failure_type else None,
            harm=body.harm.model_dump() if body.harm else None, suspects=_suspects(body.suspects),
            workflows=list(body.workflows) if body.workflows is not None else None,
            summary=body.summary, title=body.title, eta=body.eta,
        )
        return _json(inc.as_dict(history=True))


@router.post("/{incident_id}/status", response_model=None)
def set_status(incident_id: int, body: StatusIn, rt: RT, who: Responder) -> Response:
    """Move along the lifecycle; closing needs the lead role. 409 names the allowed moves."""
    if body.to.value == "closed" and not who.has("lead"):
        raise Forbidden("closing an incident needs the role lead", field="to")
    with _write(rt) as s:
        inc = service.set_status(s, rt, incident_id=incident_id, to=body.to.value, actor=who.handle, note=body.note)
        return _json(inc.as_dict())


@router.post("/{incident_id}/ack", response_model=None)
def acknowledge(incident_id: int, rt: RT, who: Responder) -> Response:
    with _write(rt) as s:
        return _json(service.acknowledge(s, rt, incident_id=incident_id, actor=who.handle).as_dict())


@router.post("/{incident_id}/roles", response_model=None)
def assign_role(incident_id: int, body: RoleIn, rt: RT, who: Responder) -> Response:
    with _write(rt) as s:
        service.assign_role(s, rt, incident_id=incident_id, role=body.role.value, handle=body.handle,
                            actor=who.handle)
        return _json(service.get_incident(s, incident_id).as_dict(history=True))


def _note_text(raw: bytes) -> str:
    """The `text` of a NoteIn body, validated like the model would (same fields and messages), without pydantic."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"malformed JSON at character {exc.pos}: {exc.msg}", field="body") from exc
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object with a `text`", field="body")
    text = body.get("text")
    if text is None:
        raise Invalid("text: Field required", field="text")
    if not isinstance(text, str):
        raise Invalid("text: Input should be a valid string", field="text")
    if not text:
        raise Invalid("text: String should have at least 1 character", field="text")
    if len(text) > service.MAX_TEXT:
        raise Invalid(f"text: String should have at most {service.MAX_TEXT} characters", field="text")
    if len(body) > 1:
        extra = next(k for k in body if k != "text")
        raise Invalid(f"{extra}: Extra inputs are not permitted", field=extra)
    return text


_NOTE_BODY = {"required": True, "content": {"application/json": {"schema": NoteIn.model_json_schema()}}}


@router.post("/{incident_id}/notes", status_code=201, response_model=None,
             openapi_extra={"requestBody": _NOTE_BODY})
async def add_note(incident_id: int, request: Request, rt: RT, who: Responder) -> Response:
    """Append a note to the timeline (the hot path: body read with orjson, the write without a thread hop on
    SQLite when the database is free).

    Requests whose `incident_id` is a plain decimal number are served by `_add_note_lean` (see `lean_routes`)
    before they reach this route; it serves the others (and documents the route)."""
    text = _note_text(await request.body())
    return _json(await _add_note(rt, incident_id, who, text), 201)


async def _add_note(rt: Runtime, incident_id: int, who: Principal, text: str) -> Any:
    note = service.NoteIn(incident_id=incident_id, kind="note", text=text, actor=who.handle)
    return await run_write_batched(rt, _append_notes, (rt, note))


async def _add_note_lean(rt: Runtime, scope: Scope, receive: Receive, m: re.Match[str]) -> tuple[int, Any]:
    """`add_note` as a plain ASGI endpoint: the same steps in the same order (authenticate, check the role,
    read and check the body, append), without FastAPI's routing, dependency injection and middleware."""
    who = await principal_for(rt, header(scope, b"authorization"))
    require(who, "responder")
    text = _note_text(await read_body(receive))
    return 201, await _add_note(rt, int(m.group(1)), who, text)


# Served ahead of FastAPI (`codeblue.http.LeanRoutes`). Only ids FastAPI would read as the same int: no sign,
# no leading zero, no spaces, at most 18 digits; any other path goes to `add_note`, which validates it.
lean_routes = [LeanRoute("POST", re.compile(r"/v1/incidents/([1-9][0-9]{0,17})/notes"), _add_note_lean)]


def _append_notes(s: Session, items: list[tuple[Runtime, service.NoteIn]]) -> list[Any]:
    """The notes of one group-commit round, appended together (`service.append_batch`)."""
    rt = items[0][0]
    out = service.append_batch(s, rt, [note for _, note in items])
    return [e if isinstance(e, BaseException) else e.as_dict() for e in out]


@router.post("/{incident_id}/reports", status_code=201, response_model=None)
def user_report(incident_id: int, body: ReportIn, rt: RT, who: Responder) -> Response:
    """A user report fed back by the support liaison: on the timeline and counted as a complaint."""
    with _write(rt) as s:
        entry = service.record_user_report(s, rt, incident_id=incident_id, text=body.text, actor=who.handle,
                                           subject=body.subject, channel=body.channel)
        return _json(entry.as_dict(), 201)


@router.post("/{incident_id}/milestones", response_model=None)
def set_milestone(incident_id: int, body: MilestoneIn, rt: RT, who: Responder) -> Response:
    """Record impact_confirmed, mitigation_chosen (data.path), mitigated, or update the ETA (data.eta).

    A milestone already set is left alone: the answer says ``"set": false``.
    """
    with _write(rt) as s:
        name = body.name.value
        if name == "eta":
            eta = body.data.get("eta", body.at)
            if isinstance(eta, bool) or not isinstance(eta, (int, float)):
                raise Invalid("an ETA update needs data.eta (unix seconds)", field="data.eta")
            inc = service.update_triage(s, rt, incident_id=incident_id, actor=who.handle, eta=float(eta))
            return _json({"set": True, "incident": inc.as_dict()})
        done = service.set_milestone(s, rt, incident_id=incident_id, name=name, actor=who.handle, at=body.at,
                                     data=body.data)
        return _json({"set": done, "incident": service.get_incident(s, incident_id).as_dict()})


@router.get("/{incident_id}/timeline", response_model=None)
def get_timeline(
    incident_id: int,
    rt: RT,
    _who: Viewer,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    with rt.db.read() as s:
        rows = service.timeline(s, incident_id=incident_id, after_seq=after_seq, limit=limit)
        entries = [e.as_dict() for e in rows]
        nxt = entries[-1]["seq"] if len(entries) == limit else None
        return _json({"incident_id": incident_id, "entries": entries, "next_after_seq": nxt})


@router.get("/{incident_id}/timeline/verify", response_model=None)
def verify(incident_id: int, rt: RT, _who: Viewer) -> Response:
    with rt.db.read() as s:
        return _json(service.verify_timeline(s, rt, incident_id=incident_id))

