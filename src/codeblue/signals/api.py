"""Intake routes: Event v1 batches, OTLP/HTTP traces, the Alertmanager webhook, and stored-event queries."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from codeblue.errors import Invalid
from codeblue.http import RT, Ingest, Viewer
from codeblue.runtime import Runtime
from codeblue.signals import alertmanager, idempotency, intake, otlp, store
from codeblue.signals.events import EventError, parse_event_dict, parse_time
from codeblue.signals.redact import redactor_for

router = APIRouter(prefix="/v1", tags=["signals"])

PROTOBUF = "application/x-protobuf"


async def _body(request: Request, rt: Runtime) -> bytes:
    raw = await request.body()
    return intake.decode_body(raw, request.headers.get("content-encoding"), rt.settings.intake_max_bytes)


_JSON = "application/json"
_REPLAYED = {"Idempotent-Replayed": "true"}


@router.post("/events", response_model=None, responses={200: {"content": {_JSON: {}}}})
async def post_events(request: Request, rt: RT, who: Ingest) -> Response:
    """Accept a batch of Event v1 (JSON array or NDJSON, gzip allowed); good events are kept, bad ones listed.

    Answers `{"accepted": <n>, "rejected": [{"index", "line" (NDJSON), "field", "reason"}, ...]}`.
    Send an `Idempotency-Key` header (any unique string per batch, e.g. a UUID) to make a resend safe: a batch
    already stored under the same key is not stored again, and the answer is the first one's, with the
    response header `Idempotent-Replayed: true`.
    """
    headers = request.headers
    key = idempotency.check_key(headers.get("idempotency-key"))
    data = await _body(request, rt)
    result = await anyio.to_thread.run_sync(
        partial(intake.ingest, rt, data, headers.get("content-type"), principal=who.handle, idempotency_key=key))
    # Encoded here, once: FastAPI would first walk the answer (every rejected entry) with its jsonable_encoder.
    return Response(orjson.dumps(result.as_dict()), media_type=_JSON,
                    headers=_REPLAYED if result.replayed else None)


def _parse_versions(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, ver = v.partition("=")
        if not sep or "/" not in key or not ver:
            raise Invalid(f"version filter {v!r}: write <kind>/<name>=<version>, e.g. prompt/refund-assistant=v42",
                          field="version")
        out[key] = ver
    return out


def _time_param(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return parse_time(float(value) if value.replace(".", "", 1).isdigit() else value)
    except EventError as exc:
        raise Invalid(f"{name}: {exc.reason}", field=name) from None


@router.get("/events")
def get_events(
    rt: RT,
    _who: Viewer,
    workflow: str | None = None,
    since: str | None = Query(None, description="unix seconds or RFC 3339; inclusive"),
    until: str | None = Query(None, description="unix seconds or RFC 3339; exclusive"),
    version: Annotated[list[str] | None, Query(description="<kind>/<name>=<version>; repeat to AND")] = None,
    kind: Annotated[list[str] | None, Query()] = None,
    subject: str | None = None,
    limit: int = Query(100, ge=1, le=store.MAX_LIMIT),
    cursor: str | None = None,
) -> dict[str, Any]:
    """Stored events (redacted) oldest first, for the audit of served answers; page with `cursor`."""
    versions = _parse_versions(version or [])
    with rt.db.read() as s:
        page = store.query_events(
            s, workflow=workflow, since=_time_param(since, "since"), until=_time_param(until, "until"),
            versions=versions or None, kinds=kind, subject=subject, limit=limit, cursor=cursor,
        )
    return page.as_dict()


# ----- OTLP/HTTP traces -----------------------------------------------------------------------------------


def _ingest_spans(rt: Runtime, data: bytes, is_protobuf: bool) -> tuple[int, int, str]:
    spans = otlp.spans_from_protobuf(data) if is_protobuf else otlp.spans_from_json(data)
    redact = redactor_for(rt.settings.redact).event
    threshold = rt.settings.otlp_grounded_threshold
    good: list[dict[str, Any]] = []
    errors: list[str] = []
    for span in spans:
        if not otlp.is_ai_span(span):
            continue
        try:
            good.append(redact(parse_event_dict(otlp.span_to_event(span, grounded_threshold=threshold),
                                                 span.index)))
        except EventError as exc:
            errors.append(f"span {span.span_id or span.index} ({span.name}): {exc.field}: {exc.reason}")
    intake.accept_events(rt, good)
    message = ""
    if errors:
        message = "; ".join(errors[:20]) + (f"; and {len(errors) - 20} more" if len(errors) > 20 else "")
    return len(good), len(errors), message


@router.post("/traces", response_model=None)
async def post_traces(request: Request, rt: RT, _who: Ingest) -> Response:
    """OTLP/HTTP trace export (protobuf or JSON); GenAI spans become Event v1, others are skipped."""
    ctype = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype not in (PROTOBUF, "application/json", "application/protobuf"):
        raise intake.UnsupportedMediaType(
            f"Content-Type {ctype!r}: OTLP/HTTP sends application/x-protobuf or application/json",
            field="Content-Type",
        )
    data = await _body(request, rt)
    is_pb = ctype != "application/json"
    _accepted, rejected, message = await run_in_threadpool(_ingest_spans, rt, data, is_pb)
    if is_pb:
        return Response(otlp.protobuf_response(rejected, message), media_type=PROTOBUF)
    return Response(orjson.dumps(otlp.json_response(rejected, message)), media_type="application/json")


# ----- Alertmanager ---------------------------------------------------------------------------------------


@router.post("/alerts/alertmanager")
def post_alertmanager(body: alertmanager.AMWebhook, rt: RT, _who: Ingest) -> dict[str, Any]:
    """The Prometheus Alertmanager webhook (payload version 4)."""
    with rt.db.write() as s:
        out = alertmanager.receive(s, rt, body)
    changed = out.pop("changed")
    alertmanager.notify_pipeline(rt, changed)
    return out


@router.get("/alerts")
def list_alerts(
    rt: RT,
    _who: Viewer,
    workflow: str | None = None,
    status: str | None = Query(None, pattern="^(firing|resolved)$"),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """External alerts, newest first."""
    from sqlalchemy import select

    from codeblue.signals.model import ExternalAlert

    q = select(ExternalAlert)
    if workflow is not None:
        q = q.where(ExternalAlert.workflow == workflow)
    if status is not None:
        q = q.where(ExternalAlert.status == status)
    with rt.db.read() as s:
        return [a.as_dict() for a in s.scalars(q.order_by(ExternalAlert.id.desc()).limit(limit))]
