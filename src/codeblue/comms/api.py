"""Comms routes: channels (admin), the outbox, per-incident messages/updates/cadence, and the public status page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from codeblue.comms import channels, outbox, service, statuspage, templates
from codeblue.comms.model import AUDIENCES
from codeblue.http import RT, Admin, Lead, Responder, Viewer

router = APIRouter(prefix="/v1/comms", tags=["comms"])
incident_router = APIRouter(prefix="/v1/incidents", tags=["comms"])
public_router = APIRouter(prefix="/status", tags=["status page"])
routers = [router, incident_router, public_router]


# ----- channels -----------------------------------------------------------------------------------------


@router.post("/channels", status_code=201)
def put_channel(body: dict[str, Any], rt: RT, _who: Admin) -> dict[str, Any]:
    """Create or replace a channel. Secret fields (password, secret, routing_key, a Slack URL) are sealed
    at rest and never returned; omit them on a later update to keep the stored value. A channel defined in the
    comms config file belongs to the file: changing it here is refused (409)."""
    with rt.db.write() as s:
        return channels.upsert_channel(s, server_key=rt.server_key, raw=body, now=rt.clock.now()).as_dict()


@router.get("/channels")
def get_channels(rt: RT, _who: Lead) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        return [c.as_dict() for c in channels.list_channels(s)]


@router.delete("/channels/{name}", status_code=204)
def delete_channel(name: str, rt: RT, _who: Admin) -> None:
    """Delete a channel added over the API (one from the comms config file: 409)."""
    with rt.db.write() as s:
        channels.delete_channel(s, name=name)


@router.post("/channels/{name}/test", status_code=202)
def test_channel(name: str, rt: RT, who: Admin) -> dict[str, Any]:
    """Queue a test message on a channel; its delivery state shows in the outbox."""
    with rt.db.write() as s:
        row = next((c for c in channels.list_channels(s) if c.name == name), None)
        if row is None:
            from codeblue.errors import NotFound

            raise NotFound(f"no channel named {name!r}", field="name")
        now = rt.clock.now()
        m = outbox.enqueue(s, rt, channel=name, kind="test", dedup_key=f"test:{name}:{now:.6f}",
                           subject="codeblue test message", body=f"A test message from codeblue, sent by {who.handle}.",
                           data={"actor": who.handle})
        return m.as_dict()


# ----- outbox -------------------------------------------------------------------------------------------


@router.get("/outbox")
def get_outbox(
    rt: RT, _who: Viewer,
    state: str | None = Query(None, description="pending, sending, delivered or dead"),
    channel: str | None = None, incident_id: int | None = None, kind: str | None = None,
    limit: int = Query(200, ge=1, le=1000), before: int | None = Query(None, description="page: ids below this"),
) -> dict[str, Any]:
    with rt.db.read() as s:
        msgs = outbox.list_messages(s, state=state, channel=channel, incident_id=incident_id, kind=kind,
                                    limit=limit, before_id=before)
        return {"counts": outbox.counts(s), "redeliveries": outbox.redeliveries(s),
                "messages": [m.as_dict() for m in msgs]}


@router.get("/outbox/{message_id}")
def get_message(message_id: int, rt: RT, _who: Viewer) -> dict[str, Any]:
    with rt.db.read() as s:
        out = outbox.get_message(s, message_id).as_dict()
        out["attempt_log"] = [a.as_dict() for a in outbox.attempts_of(s, message_id)]
        return out


@router.post("/outbox/{message_id}/retry")
def retry_message(message_id: int, rt: RT, _who: Lead) -> dict[str, Any]:
    """Requeue a dead-lettered message (after fixing its channel); same dedup key, so receivers still dedupe."""
    with rt.db.write() as s:
        return outbox.retry_message(s, message_id=message_id, now=rt.clock.now()).as_dict()


@router.get("/policy")
def get_policy(rt: RT, _who: Viewer) -> dict[str, Any]:
    cfg = service.config(rt)
    return {
        sev: {a: {"after": p.after, "within": p.within, "every": p.every} for a, p in items.items()}
        for sev, items in cfg.policy.items()
    } | {"_reminders": {"channel": cfg.reminder_channel, "escalate_after": cfg.escalate_after},
         "_audiences": cfg.audiences,
         "_required_facts": {a: [f for f, _ in templates.REQUIRED_FACTS[a]] for a in AUDIENCES}}


# ----- per incident ---------------------------------------------------------------------------------------


class UpdateIn(BaseModel):
    audience: str = Field(description="internal, status_page, support or executive")
    facts: dict[str, Any] = Field(default_factory=dict)
    text: str = Field(default="", max_length=20_000)


@incident_router.post("/{incident_id}/updates", status_code=201)
def post_update(incident_id: int, body: UpdateIn, rt: RT, who: Responder) -> dict[str, Any]:
    """Publish an update for one audience; 422 naming the missing fact when a required one is absent."""
    with rt.db.write() as s:
        upd = service.publish_update(s, rt, incident_id=incident_id, audience=body.audience, facts=body.facts,
                                     text=body.text, actor=who.handle)
        out = upd.as_dict()
        out["messages"] = [m.as_dict() for m in outbox.list_messages(s, incident_id=incident_id, kind="update")
                           if m.data.get("update_id") == upd.id]
        return out


@incident_router.get("/{incident_id}/updates")
def get_updates(incident_id: int, rt: RT, _who: Viewer, audience: str | None = None) -> list[dict[str, Any]]:
    with rt.db.read() as s:
        service.get_view(s, rt, incident_id)
        return [u.as_dict() for u in service.list_updates(s, incident_id=incident_id, audience=audience)]


@incident_router.get("/{incident_id}/messages")
def get_incident_messages(incident_id: int, rt: RT, _who: Viewer, state: str | None = None) -> dict[str, Any]:
    """Every outbound message about this incident with its delivery state and attempt log."""
    with rt.db.read() as s:
        service.get_view(s, rt, incident_id)
        msgs = outbox.list_messages(s, incident_id=incident_id, state=state, limit=1000)
        out = []
        for m in msgs:
            d = m.as_dict()
            d["attempt_log"] = [a.as_dict() for a in outbox.attempts_of(s, m.id)]
            out.append(d)
        return {"incident_id": incident_id, "messages": out}


@incident_router.get("/{incident_id}/comms")
def get_incident_comms(incident_id: int, rt: RT, _who: Viewer) -> dict[str, Any]:
    """What is due when: one row per audience with its state (waiting, due, overdue, done, stopped) and due_at."""
    with rt.db.read() as s:
        view = service.get_view(s, rt, incident_id)
        items = service.cadence(s, rt, view)
        reminders = [m.as_dict() for m in outbox.list_messages(s, incident_id=incident_id, kind="reminder")]
        return {"incident_id": incident_id, "severity": view.severity, "status": view.status,
                "now": rt.clock.now(), "items": items, "reminders": reminders}


# ----- public status page (no token) --------------------------------------------------------------------

_PUBLIC_CACHE = {"Cache-Control": "public, max-age=10"}


@public_router.get("", response_class=HTMLResponse, include_in_schema=False)
@public_router.get("/", response_class=HTMLResponse)
def status_page(rt: RT) -> HTMLResponse:
    with rt.db.read() as s:
        return HTMLResponse(statuspage.render_html(s, rt), headers=_PUBLIC_CACHE)


@public_router.get("/summary.json")
def status_summary(rt: RT) -> Response:
    from codeblue.http import ORJSONResponse

    with rt.db.read() as s:
        return ORJSONResponse(statuspage.public_summary(s, rt), headers=_PUBLIC_CACHE)


@public_router.get("/feed.atom")
def status_feed(rt: RT) -> Response:
    with rt.db.read() as s:
        return Response(statuspage.render_atom(s, rt), media_type="application/atom+xml", headers=_PUBLIC_CACHE)


@public_router.get("/status.css", include_in_schema=False)
def status_css() -> Response:
    return Response(templates.stylesheet(), media_type="text/css", headers={"Cache-Control": "public, max-age=300"})
