"""Config and change-log routes: push versions, activate, roll back, record external changes, ask what changed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from codeblue.changes import service
from codeblue.errors import Invalid
from codeblue.http import RT, Responder, Viewer

configs = APIRouter(prefix="/v1/configs", tags=["configs"])
changes = APIRouter(prefix="/v1/changes", tags=["changes"])
routers = [configs, changes]


class KindIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=4000)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", description="JSON Schema for the content")


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, description="label; default the next vN")
    content: Any = Field(description="text or any JSON value")
    note: str = Field(default="", max_length=4000)
    workflows: list[str] | None = Field(default=None, description="the workflows this config touches")


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64)
    fraction: float = Field(default=1.0, description="share of traffic the version serves; 1 makes it stable")
    environment: str = "production"
    incident_id: int | None = None
    note: str = Field(default="", max_length=4000)
    workflows: list[str] | None = None


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str = "production"
    to_version: str | None = Field(default=None, max_length=64)
    incident_id: int | None = None
    note: str = Field(default="", max_length=4000)


@configs.post("/kinds", status_code=201)
def register_kind(body: KindIn, rt: RT, who: Responder) -> dict[str, Any]:
    with rt.db.write() as s:
        return service.register_kind(
            s, rt, kind=body.kind, description=body.description, schema=body.schema_, author=who.handle
        ).as_dict()


@configs.get("/kinds")
def list_kinds(rt: RT, _who: Viewer) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return service.list_kinds(s)


@configs.get("")
def list_configs(rt: RT, _who: Viewer, kind: str | None = None, environment: str = "production") -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return service.list_configs(s, kind=kind, environment=environment)


@configs.post("/{kind}/{name}/versions", status_code=201)
def push_version(kind: str, name: str, body: VersionIn, rt: RT, who: Responder) -> dict[str, Any]:
    """Store a new immutable version. It serves nothing until activated."""
    if "content" not in body.model_fields_set:
        raise Invalid("content is required: text or a JSON value", field="content")
    with rt.db.write() as s:
        row = service.push_version(
            s, rt, kind=kind, name=name, version=body.version, content=body.content, author=who.handle,
            note=body.note, workflows=body.workflows,
        )
        return {"kind": kind, "name": name, **row.as_dict(content=True)}


@configs.post("/{kind}/{name}/activate")
def activate(kind: str, name: str, body: ActivateIn, rt: RT, who: Responder) -> dict[str, Any]:
    """Make a version stable (fraction 1) or roll it out as the candidate at a fraction; a change record."""
    with rt.db.write() as s:
        ch = service.activate(
            s, rt, kind=kind, name=name, version=body.version, environment=body.environment, fraction=body.fraction,
            actor=who.handle, incident_id=body.incident_id, note=body.note, workflows=body.workflows,
        )
        return ch.as_dict()


@configs.post("/{kind}/{name}/rollback")
def rollback(kind: str, name: str, rt: RT, who: Responder, body: RollbackIn | None = None) -> dict[str, Any]:
    """Stop a rolling-out candidate, or re-activate the previous stable (or `to_version`); a change record."""
    body = body or RollbackIn()
    with rt.db.write() as s:
        ch = service.rollback(
            s, rt, kind=kind, name=name, environment=body.environment, to_version=body.to_version,
            actor=who.handle, incident_id=body.incident_id, note=body.note,
        )
        return ch.as_dict()


@configs.get("/{kind}/{name}")
def get_config(
    kind: str, name: str, rt: RT, _who: Viewer, environment: str = "production", content: bool = False
) -> dict[str, Any]:
    with rt.db.read() as s:
        out = service.config_state(s, kind=kind, name=name, environment=environment, content=content)
        out["changes"] = [c.as_dict() for c in service.list_changes(s, kind=kind, name=name, limit=100)]
        return out


@configs.get("/{kind}/{name}/versions/{version}")
def get_version(kind: str, name: str, version: str, rt: RT, _who: Viewer) -> dict[str, Any]:
    with rt.db.read() as s:
        return {"kind": kind, "name": name, **service.get_version(s, kind=kind, name=name, version=version).as_dict(content=True)}


@changes.post("", status_code=201)
def record_change(body: dict[str, Any], rt: RT, who: Responder) -> dict[str, Any]:
    """Record an external change (a deploy, a flag flipped elsewhere). `actor` defaults to the caller."""
    with rt.db.write() as s:
        return service.record_external(s, rt, change={"actor": who.handle, **body}).as_dict()


@changes.get("")
def list_changes(
    rt: RT,
    _who: Viewer,
    since: str | None = Query(None, description="unix seconds, RFC 3339, or a duration before now (30m, 2h)"),
    until: str | None = Query(None, description="unix seconds, RFC 3339, or a duration before now"),
    workflow: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    environment: str | None = None,
    type: str | None = Query(None, pattern="^(activate|rollback|external)$"),
    limit: int = Query(500, ge=1, le=5000),
) -> list[dict[str, Any]]:
    """What changed recently, newest first."""
    now = rt.clock.now()
    t0 = service.parse_time(since, now=now, field="since") if since is not None else None
    t1 = service.parse_time(until, now=now, field="until") if until is not None else None
    if t0 is not None and t1 is not None and t1 < t0:
        raise Invalid("until is before since", field="until")
    with rt.db.read() as s:
        return [
            c.as_dict()
            for c in service.list_changes(
                s, since=t0, until=t1, workflow=workflow, environment=environment, kind=kind, name=name, type=type,
                limit=limit,
            )
        ]
