"""SDK self-reports: `POST /v1/sdk/heartbeat` (ingest) and `GET /v1/sdk/clients` (viewer)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from codeblue.controls.clients import service
from codeblue.controls.revision import environment_head
from codeblue.http import RT, Ingest, Viewer

router = APIRouter(prefix="/v1/sdk", tags=["sdk"])

_NAME = r"^[^\s][^\n]{0,199}$"


class EventCounts(BaseModel):
    model_config = ConfigDict(extra="allow")

    queued: int = Field(default=0, ge=0)
    sent: int = Field(default=0, ge=0)
    dropped: int = Field(default=0, ge=0)
    rejected: int = Field(default=0, ge=0)


class BreakerIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    state: Literal["closed", "open", "half_open"]
    failures: int = Field(default=0, ge=0)
    opened_at: float | None = None
    retry_at: float | None = None


class HeartbeatIn(BaseModel):
    """A Guard's self-report. Unknown fields from newer SDKs are kept in the stored report."""

    model_config = ConfigDict(extra="allow")

    client_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    environment: str = Field(min_length=1, max_length=64)
    service: str = Field(default="", max_length=200)
    host: str = Field(default="", max_length=255)
    pid: int | None = Field(default=None, ge=0)
    sdk_version: str = Field(default="", max_length=64)
    started_at: float | None = None
    revision: int = Field(default=0, ge=0)
    source: Literal["snapshot", "lkg", "default"] = "default"
    stale_for: float | None = Field(default=None, ge=0)
    connected: bool = False
    default: Literal["fail_open", "fail_closed"] | None = None
    defaults: dict[str, Literal["fail_open", "fail_closed"]] = Field(default_factory=dict, max_length=10_000)
    on_defaults: bool = False
    breakers: dict[str, BreakerIn] = Field(default_factory=dict, max_length=10_000)
    events: EventCounts = Field(default_factory=EventCounts)
    stream: dict[str, int] = Field(default_factory=dict, max_length=64)
    last_error: str | None = Field(default=None, max_length=2000)
    closing: bool = False


@router.post("/heartbeat", status_code=202)
def heartbeat(body: HeartbeatIn, rt: RT, who: Ingest) -> dict[str, Any]:
    """Store the Guard's latest self-report; the answer carries the server's view of it."""
    with rt.db.write() as s:
        client = service.record_heartbeat(s, rt, report=body.model_dump(mode="json"), reported_by=who.handle)
        s.flush()
        view = service.client_view(
            client, now=rt.clock.now(), head=environment_head(s, client.environment),
            stale_after=rt.settings.sdk_stale_after_s, silent_after=rt.settings.sdk_silent_after_s,
        )
    return {"client_id": view["client_id"], "status": view["status"], "problems": view["problems"],
            "server_revision": view["server_revision"]}


@router.get("/clients")
def clients(
    rt: RT,
    _who: Viewer,
    environment: str | None = None,
    service_name: str | None = Query(None, alias="service"),
    include_gone: bool = False,
    limit: int = Query(1000, ge=1, le=10_000),
) -> list[dict[str, Any]]:
    """Connected SDK Guards with revision, computed staleness, defaults in force, breakers and dropped
    events; those with problems first."""
    with rt.db.read() as s:
        return service.list_clients(s, rt, environment=environment, service=service_name,
                                    include_gone=include_gone, limit=limit)
