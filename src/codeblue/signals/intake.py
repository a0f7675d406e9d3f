"""Intake of Event v1 batches: read the body (gzip, size limits), split it (JSON array or NDJSON),
validate each event, redact, store the good ones in one statement, then hand them to the detectors.

The HTTP routes (`signals.api`) and the OTLP mapping (`signals.otlp`) both end in `accept_events`.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError

from codeblue.errors import CodeblueError, Invalid, TooLarge
from codeblue.runtime import Job, Runtime
from codeblue.signals import idempotency, store
from codeblue.signals.decode import normal_event_dict
from codeblue.signals.events import EventError, parse_event_dict
from codeblue.signals.redact import redactor_for

log = logging.getLogger(__name__)

PIPELINE = "signals.pipeline"
NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
    "application/jsonlines", "application/json-lines", "application/jsonlines+json",
})


class UnsupportedMediaType(CodeblueError):
    status = 415
    title = "Unsupported media type"
    type_slug = "unsupported-media-type"


@dataclass(slots=True)
class Batch:
    """A split request body: decoded items, their NDJSON line numbers (None for an array), early rejects."""

    items: list[Any]
    lines: list[int] | None
    rejected: list[dict[str, Any]] = field(default_factory=list)
    ndjson: bool = False
    #: False when the raw body has no escaped NUL, so no string in it can hold one (checks are skipped).
    may_have_nul: bool = True


@dataclass(slots=True)
class IntakeResult:
    accepted: int
    rejected: list[dict[str, Any]]
    replayed: bool = False  # the batch was stored earlier under the same Idempotency-Key: this is that answer

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected}


# ----- the body ----------------------------------------------------------------------------------------------


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The request body after Content-Encoding, refused with 413 past `limit` bytes (also after gunzip)."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(raw) > limit:
            raise TooLarge(f"the request body is {len(raw)} bytes; the limit is {limit} bytes", limit=limit)
        return raw
    if enc in ("gzip", "x-gzip", "deflate"):
        return _inflate(raw, limit, gzip=enc != "deflate")
    raise UnsupportedMediaType(
        f"Content-Encoding {content_encoding!r} is not supported; send gzip or no encoding",
        field="Content-Encoding",
    )


def _inflate(raw: bytes, limit: int, *, gzip: bool) -> bytes:
    out: list[bytes] = []
    size = 0
    data = raw
    try:
        while data:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
            chunk = d.decompress(data, limit + 1 - size)
            size += len(chunk)
            if size > limit or d.unconsumed_tail:
                raise TooLarge(
                    f"the request body inflates to more than the limit of {limit} bytes", limit=limit
                )
            out.append(chunk)
            if not d.eof:
                raise Invalid("the compressed body is truncated", field="body")
            data = d.unused_data if gzip else b""  # gzip allows several members back to back
    except zlib.error as exc:
        raise Invalid(f"the body is not valid {'gzip' if gzip else 'deflate'} data: {exc}", field="body") from None
    return b"".join(out)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def split_batch(data: bytes, content_type: str | None) -> Batch:
    """Decode a body as a JSON array or NDJSON (by content type, else by sniffing the first character)."""
    batch = _split(data, content_type)
    # JSON can only carry NUL as the escape \u0000 (a raw NUL byte is a syntax error).
    batch.may_have_nul = b"\\u0000" in data
    return batch


def _split(data: bytes, content_type: str | None) -> Batch:
    mt = _media_type(content_type)
    stripped = data.lstrip()
    if not stripped:
        raise Invalid("the body is empty; send a JSON array or NDJSON of Event v1 objects", field="body")
    first = stripped[:1]
    if mt in NDJSON_TYPES:
        return _split_ndjson(data)
    if mt not in ("", "application/json", "text/plain", "application/octet-stream", "text/json") and \
            not mt.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type {mt!r} is not accepted here; send application/json (an array) or "
            "application/x-ndjson", field="Content-Type",
        )
    if first == b"[":
        try:
            items = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise Invalid(
                f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", field="body",
                line=exc.lineno, column=exc.colno,
            ) from None
        return Batch(items=items, lines=None)
    if first == b"{":
        try:
            return Batch(items=[orjson.loads(data)], lines=None)
        except orjson.JSONDecodeError as exc:
            if b"\n" not in stripped.rstrip():
                raise Invalid(
                    f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", field="body",
                    line=exc.lineno, column=exc.colno,
                ) from None
        return _split_ndjson(data)
    return _split_ndjson(data)


def _split_ndjson(data: bytes) -> Batch:
    items: list[Any] = []
    lines: list[int] = []
    rejected: list[dict[str, Any]] = []
    loads = orjson.loads
    index = 0
    for n, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(loads(line))
            lines.append(n)
        except orjson.JSONDecodeError as exc:
            rejected.append({"index": index, "line": n, "field": "", "reason": f"malformed JSON: {exc.msg} "
                             f"at column {exc.colno}"})
        index += 1
    return Batch(items=items, lines=lines, rejected=rejected, ndjson=True)


# ----- validation, storage, detection ---------------------------------------------------------------------


def validate_batch(rt: Runtime, batch: Batch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Parse and redact every item; returns (good normalised events, rejected entries in input order)."""
    redactor = redactor_for(rt.settings.redact)
    redact = redactor.event if redactor.active else None
    good: list[dict[str, Any]] = []
    append = good.append
    rejected = list(batch.rejected)
    lines = batch.lines
    # Indexes count every item of the body, malformed NDJSON lines included.
    positions = _positions(batch)
    nul = batch.may_have_nul
    # Without a \u0000 in the body, the common event is checked in one msgspec call and kept as it is; anything
    # else (an int time, a null, an unknown field, a bad value) goes through the parser, which names the field.
    normal = None if nul else normal_event_dict
    for i, obj in enumerate(batch.items):
        pos = positions[i]
        try:
            d = normal(obj) if normal is not None else None
            if d is None:
                d = parse_event_dict(obj, pos, check_nul=nul)
            if redact is not None and ("input" in d or "output" in d or "text" in d or "attributes" in d):
                redact(d)
            append(d)
        except EventError as exc:
            entry: dict[str, Any] = {"index": pos}
            if lines is not None:
                entry["line"] = lines[i]
            entry["field"] = exc.field
            entry["reason"] = exc.reason
            rejected.append(entry)
    if batch.rejected:
        rejected.sort(key=lambda e: int(e["index"]))
    return good, rejected


def _positions(batch: Batch) -> list[int]:
    if not batch.rejected:
        return list(range(len(batch.items)))
    bad = {int(e["index"]) for e in batch.rejected}
    out: list[int] = []
    pos = 0
    for _ in batch.items:
        while pos in bad:
            pos += 1
        out.append(pos)
        pos += 1
    return out


def accept_events(rt: Runtime, events: list[dict[str, Any]], *, key: tuple[str, str] | None = None,
                  rejected: list[dict[str, Any]] | None = None) -> int:
    """Store validated, redacted events in one transaction, then feed the detection pipeline.

    With `key` (principal, Idempotency-Key) the key is recorded in the same transaction; if a concurrent
    resend recorded it first, the transaction fails with IntegrityError and nothing is stored.
    """
    if not events:
        return 0
    now = rt.clock.now()
    with rt.db.write() as s:
        n = store.store_events(s, rt, events, received_at=now)
        if key is not None:
            idempotency.record(s, principal=key[0], key=key[1], accepted=n, rejected=rejected or [], now=now)
    store.commit_version_cache(s, rt)
    feed(rt, events)
    return n


def feed(rt: Runtime, events: list[dict[str, Any]]) -> None:
    """Hand stored events to the in-process detection pipeline, when one is wired."""
    pipeline = rt.extras.get(PIPELINE)
    if pipeline is None:
        return
    try:
        # Normalised Event v1 dicts (validate_batch's or the OTLP mapping's, through parse_event_dict): counted
        # without re-checking their types and without building Event objects.
        pipeline.feed_valid(events)
    except Exception:
        # The events are stored; a detector failure must not turn into a failed (and retried) upload.
        log.exception("the detection pipeline failed on a batch of %d events", len(events))


def ingest(rt: Runtime, data: bytes, content_type: str | None, *, principal: str = "",
           idempotency_key: str | None = None) -> IntakeResult:
    """The whole of `POST /v1/events` after the body is read: split, validate, store, detect.

    With an `idempotency_key`, a batch already stored under it (by this principal) is not stored again: the
    answer is the first one's, marked `replayed`.
    """
    key = (principal, idempotency_key) if idempotency_key is not None else None
    if key is not None:
        earlier = _earlier(rt, key)
        if earlier is not None:
            return earlier
    batch = split_batch(data, content_type)
    if not batch.ndjson and not isinstance(batch.items, list):
        raise Invalid("expected a JSON array of Event v1 objects (or NDJSON)", field="body")
    good, rejected = validate_batch(rt, batch)
    if not good and rejected:
        first = rejected[0]
        where = f"line {first['line']}" if "line" in first else f"event {first['index']}"
        fld = f"[{first['index']}].{first['field']}" if first["field"] else f"[{first['index']}]"
        raise Invalid(
            f"no event was accepted; {len(rejected)} rejected. First: {where}: "
            f"{first['field'] or 'event'}: {first['reason']}",
            field=fld, accepted=0, rejected=rejected,
        )
    try:
        accepted = accept_events(rt, good, key=key, rejected=rejected)
    except IntegrityError:
        earlier = _earlier(rt, key) if key is not None else None
        if earlier is None:
            raise
        return earlier  # a concurrent resend of the same batch stored it first
    return IntakeResult(accepted=accepted, rejected=rejected)


def _earlier(rt: Runtime, key: tuple[str, str]) -> IntakeResult | None:
    got = idempotency.lookup(rt.db.engine, principal=key[0], key=key[1])
    return None if got is None else IntakeResult(accepted=got[0], rejected=got[1], replayed=True)


def retention_job(rt: Runtime) -> None:
    store.apply_retention(rt)
    with rt.db.write() as s:
        idempotency.purge(s, now=rt.clock.now())


def jobs() -> list[Job]:
    """Background jobs of the intake: the retention sweep (hourly in server-clock seconds)."""
    return [Job("signals.retention", 3600.0, retention_job)]
