"""Control routes: set, list, lift; the snapshot and the Server-Sent Events stream."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from codeblue.auth.service import Principal
from codeblue.changes.service import check_environment, parse_time
from codeblue.controls import service
from codeblue.controls.revision import written_revision
from codeblue.controls.stream import broadcaster_of, stream
from codeblue.errors import Invalid
from codeblue.http import RT, Responder, Viewer, requires

router = APIRouter(prefix="/v1/controls", tags=["controls"])

#: The SDK reads the snapshot and the stream with its ingest token; people read them as viewers.
Reader = Annotated[Principal, Depends(requires("viewer", "ingest"))]
ControlType = Literal["kill_switch", "breaker", "fallback", "tool_disable", "traffic", "rollout_freeze"]


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str = "*"
    action: str = "*"
    tool: str = "*"
    dependency: str = "*"
    segment: str = "*"
    tenant: str = "*"


class ControlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ControlType
    scope: ScopeIn = Field(default_factory=ScopeIn)
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(min_length=1, max_length=4000)
    incident_id: int | None = None
    expires_at: float | str | None = Field(default=None, description="unix seconds or RFC 3339")
    ttl_s: float | None = Field(default=None, gt=0, description="seconds from now until the control lifts itself")
    lift_condition: str | None = Field(default=None, max_length=4000)
    environment: str = "production"


class LiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=4000)


@router.post("", status_code=201)
def set_control(body: ControlIn, rt: RT, who: Responder) -> dict[str, Any]:
    """Put a control in place; connected streams receive it right after the commit."""
    now = rt.clock.now()
    if body.expires_at is not None and body.ttl_s is not None:
        raise Invalid("give expires_at or ttl_s, not both", field="ttl_s")
    expires = (
        parse_time(body.expires_at, now=now, field="expires_at") if body.expires_at is not None
        else (now + body.ttl_s if body.ttl_s is not None else None)
    )
    with rt.db.write() as s:
        ctl = service.set_control(
            s, rt, type=body.type, scope=body.scope.model_dump(), params=body.params, reason=body.reason,
            actor=who.handle, incident_id=body.incident_id, expires_at=expires, lift_condition=body.lift_condition,
            environment=body.environment,
        )
        out = ctl.as_dict()
        out["revision"] = written_revision(s)
        return out


@router.get("")
def list_controls(
    rt: RT,
    _who: Viewer,
    environment: str = "production",
    state: Literal["active", "lifted", "all"] = "active",
    type: ControlType | None = None,
    workflow: str | None = None,
    incident_id: int | None = None,
    limit: int = Query(500, ge=1, le=5000),
) -> list[dict[str, Any]]:
    active = {"active": True, "lifted": False, "all": None}[state]
    with rt.db.read() as s:
        return [
            c.as_dict()
            for c in service.list_controls(
                s, environment=check_environment(environment), active=active, type=type, workflow=workflow,
                incident_id=incident_id, limit=limit,
            )
        ]


@router.get("/snapshot")
def get_snapshot(
    rt: RT, _who: Reader, environment: str = "production", content: bool = False
) -> dict[str, Any]:
    with rt.db.read() as s:
        return service.snapshot(s, environment=check_environment(environment), content=content, now=rt.clock.now())


@router.get("/stream", response_class=StreamingResponse)
async def get_stream(
    rt: RT,
    _who: Reader,
    environment: str = "production",
    last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """Server-Sent Events: a snapshot on connect (or the missed patches after Last-Event-ID), one patch per
    revision, and a ``: hb`` comment every few seconds."""
    check_environment(environment)
    return StreamingResponse(
        stream(rt, broadcaster_of(rt), environment=environment, last_event_id=last_event_id,
               heartbeat=rt.settings.controls_heartbeat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{control_id}")
def get_control(control_id: int, rt: RT, _who: Viewer) -> dict[str, Any]:
    with rt.db.read() as s:
        return service.get_control(s, control_id).as_dict()


@router.delete("/{control_id}")
def lift_control(control_id: int, rt: RT, who: Responder, body: LiftIn | None = None, reason: str = "") -> dict[str, Any]:
    """Lift a control (the record stays, marked lifted, with who and why)."""
    why = (body.reason if body and body.reason else reason) or ""
    with rt.db.write() as s:
        ctl = service.lift_control(s, rt, control_id=control_id, actor=who.handle, reason=why)
        out = ctl.as_dict()
        out["revision"] = written_revision(s)
        return out
