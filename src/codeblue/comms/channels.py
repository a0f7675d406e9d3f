"""Channels: where messages go, how they are configured, and the transports that deliver one message.

Four types: a Slack-compatible incoming webhook, e-mail over SMTP, a generic webhook signed with
HMAC-SHA256 over ``timestamp + "." + body``, and the PagerDuty Events API v2. Each delivery carries the
message's dedup key (``Idempotency-Key`` header; a stable ``Message-ID`` for e-mail) so a receiver can apply
a redelivered message once. Secrets (`SECRET_FIELDS`) are sealed at rest and never leave this module.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codeblue.comms.crypto import seal, unseal
from codeblue.comms.model import CHANNEL_TYPES, Channel
from codeblue.comms.outbox import Claimed
from codeblue.comms.transport import ConnectFailed, HttpPool, Response, TimedOut
from codeblue.errors import Conflict, Invalid, NotFound

#: Fields that are credentials: sealed at rest, never logged or returned.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "slack": ("url",),
    "email": ("password",),
    "webhook": ("secret",),
    "pagerduty": ("routing_key",),
}
#: Non-secret fields each type accepts (plus COMMON).
FIELDS: dict[str, tuple[str, ...]] = {
    "slack": ("username", "icon_emoji", "channel"),
    "email": ("host", "port", "starttls", "ssl", "username", "from", "to"),
    "webhook": ("url", "headers"),
    "pagerduty": ("url", "source", "severity"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "slack": ("url",),
    "email": ("host", "from"),
    "webhook": ("url", "secret"),
    "pagerduty": ("routing_key",),
}
COMMON = ("timeout", "max_attempts", "enabled")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PD_SEVERITIES = ("critical", "error", "warning", "info")


def infer_type(name: str) -> str | None:
    """"webhook:ops" → webhook, "email" → email, …; None when the name does not say."""
    head = name.split(":", 1)[0]
    return head if head in CHANNEL_TYPES else None


def _resolve(value: Any) -> Any:
    """Config values written as ``env:NAME`` come from the environment (keeps secrets out of YAML files)."""
    if isinstance(value, str) and value.startswith("env:"):
        var = value[4:]
        if var not in os.environ:
            raise Invalid(f"environment variable {var} is not set", field=var)
        return os.environ[var]
    return value


def _check_url(url: Any, where: str) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise Invalid(f"{where} must be an http(s) URL", field=where)
    return url


def parse_channel(raw: dict[str, Any], *, where: str = "") -> tuple[str, str, dict[str, Any], dict[str, str], bool]:
    """Validate a flat channel definition → (name, type, config, secrets, enabled). Errors name the field."""
    p = f"{where}." if where else ""
    if not isinstance(raw, dict):
        raise Invalid("a channel must be a mapping", field=where or "channel")
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > 100:
        raise Invalid("name must be 1–100 characters, e.g. 'slack', 'email', 'webhook:ops'", field=f"{p}name")
    ctype = raw.get("type") or infer_type(name)
    if ctype not in CHANNEL_TYPES:
        raise Invalid(f"type must be one of {', '.join(CHANNEL_TYPES)}", field=f"{p}type")
    allowed = {"name", "type", *FIELDS[ctype], *SECRET_FIELDS[ctype], *COMMON}
    for key in raw:
        if key not in allowed:
            raise Invalid(f"unknown field {key!r} for a {ctype} channel; allowed: {', '.join(sorted(allowed))}",
                          field=f"{p}{key}")
    values = {k: _resolve(v) for k, v in raw.items() if k not in ("name", "type")}
    for req in REQUIRED[ctype]:
        # a required secret may be left out of an update to keep the sealed one (`upsert_channel` checks it)
        if req not in SECRET_FIELDS[ctype] and values.get(req) in (None, ""):
            raise Invalid(f"a {ctype} channel needs {req!r}", field=f"{p}{req}")
    secrets_: dict[str, str] = {}
    for key in SECRET_FIELDS[ctype]:
        if key in values and values[key] not in (None, ""):
            if not isinstance(values[key], str):
                raise Invalid(f"{key} must be a string", field=f"{p}{key}")
            secrets_[key] = values.pop(key)
        else:
            values.pop(key, None)
    if ctype == "slack" and "url" in secrets_:
        _check_url(secrets_["url"], f"{p}url")
    if ctype in ("webhook",):
        _check_url(values["url"], f"{p}url")
    if ctype == "pagerduty":
        values["url"] = _check_url(values.get("url") or PAGERDUTY_URL, f"{p}url")
        sev = values.setdefault("severity", "error")
        if sev not in PD_SEVERITIES:
            raise Invalid(f"severity must be one of {', '.join(PD_SEVERITIES)}", field=f"{p}severity")
    if ctype == "email":
        port = values.get("port", 25)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise Invalid("port must be an integer 1–65535", field=f"{p}port")
        values["port"] = port
        to = values.get("to", [])
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not all(isinstance(x, str) and "@" in x for x in to):
            raise Invalid("to must be a list of e-mail addresses", field=f"{p}to")
        values["to"] = to
        if not isinstance(values["from"], str) or "@" not in values["from"]:
            raise Invalid("from must be an e-mail address", field=f"{p}from")
    if "headers" in values and not (
        isinstance(values["headers"], dict) and all(isinstance(v, str) for v in values["headers"].values())
    ):
        raise Invalid("headers must map names to strings", field=f"{p}headers")
    for key in ("timeout",):
        if key in values and not (isinstance(values[key], int | float) and values[key] > 0):
            raise Invalid(f"{key} must be a positive number of seconds", field=f"{p}{key}")
    if "max_attempts" in values and not (isinstance(values["max_attempts"], int) and values["max_attempts"] >= 1):
        raise Invalid("max_attempts must be an integer ≥ 1", field=f"{p}max_attempts")
    enabled = values.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid("enabled must be true or false", field=f"{p}enabled")
    return name, ctype, values, secrets_, enabled


def upsert_channel(
    s: Session, *, server_key: bytes, raw: dict[str, Any], now: float, source: str = "api", where: str = ""
) -> Channel:
    """Create or replace a channel from a flat definition. Secrets not given keep their sealed value.

    A channel defined in the comms config file belongs to the file (``source="file"``): the file is applied at
    every start, so an API edit of it would be silently undone at the next one, and it is refused instead."""
    name, ctype, config, secrets_, enabled = parse_channel(raw, where=where)
    row = s.scalar(select(Channel).where(Channel.name == name))
    if row is not None and row.source == "file" and source != "file":
        raise _owned_by_file(name)
    if row is not None and row.type == ctype and row.secret:
        kept = orjson.loads(unseal(server_key, row.secret))
        secrets_ = {**kept, **secrets_}
    missing = [k for k in REQUIRED[ctype] if k in SECRET_FIELDS[ctype] and k not in secrets_]
    if missing:
        raise Invalid(f"a {ctype} channel needs {missing[0]!r}", field=f"{where + '.' if where else ''}{missing[0]}")
    sealed = seal(server_key, orjson.dumps(secrets_)) if secrets_ else ""
    if row is None:
        row = Channel(name=name, created_at=now)
        s.add(row)
    row.type, row.config, row.secret, row.secret_fields = ctype, config, sealed, sorted(secrets_)
    row.enabled, row.source, row.updated_at = enabled, source, now
    s.flush()
    return row


def delete_channel(s: Session, *, name: str) -> None:
    row = s.scalar(select(Channel).where(Channel.name == name))
    if row is None:
        raise NotFound(f"no channel named {name!r}", field="name")
    if row.source == "file":
        raise _owned_by_file(name)
    s.delete(row)


def _owned_by_file(name: str) -> Conflict:
    return Conflict(f"channel {name!r} is defined in the comms config file (CODEBLUE_COMMS_CONFIG), which is applied "
                    "at every start; change it there", field="name")


def release_file_channels(s: Session, *, keep: set[str], now: float) -> list[str]:
    """Channels the file defined at an earlier start but no longer does: they become API-managed channels
    (kept, since queued messages may name them) rather than staying locked to a file that has dropped them."""
    gone = list(s.scalars(select(Channel).where(Channel.source == "file", Channel.name.not_in(keep))))
    for row in gone:
        row.source, row.updated_at = "api", now
    s.flush()
    return [row.name for row in gone]


def list_channels(s: Session) -> list[Channel]:
    return list(s.scalars(select(Channel).order_by(Channel.name)))


def channels_version(s: Session) -> tuple[int, float]:
    """Changes whenever a channel is added, changed or removed (the sender reloads its cache on change)."""
    n, latest = s.execute(select(func.count(), func.max(Channel.updated_at))).one()
    return int(n), float(latest or 0.0)


@dataclass(frozen=True)
class ChannelSpec:
    """A channel ready to deliver with: config plus unsealed secrets, held only in the sender's memory."""

    name: str
    type: str
    config: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)
    enabled: bool = True


def load_specs(s: Session, server_key: bytes) -> dict[str, ChannelSpec]:
    out: dict[str, ChannelSpec] = {}
    for row in list_channels(s):
        secrets_ = orjson.loads(unseal(server_key, row.secret)) if row.secret else {}
        out[row.name] = ChannelSpec(row.name, row.type, dict(row.config or {}), secrets_, row.enabled)
    return out


# ----- transports ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What one attempt achieved: delivered (confirmed by the receiver), retry (maybe later), or dead."""

    outcome: str
    status: int | None = None
    error: str = ""
    retry_after: float | None = None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature: ``v1=`` + hex HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str, *, now: float,
                     tolerance: float = 300.0) -> bool:
    """What a receiver does: recompute the signature and refuse stale timestamps (replays)."""
    try:
        ts = float(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def message_id(dedup_key: str, domain: str) -> str:
    """A Message-ID that is the same on every redelivery of one message."""
    return f"<{hashlib.sha256(dedup_key.encode()).hexdigest()[:40]}@{domain}>"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _classify_http(resp: Response) -> Result:
    if 200 <= resp.status < 300:
        return Result("delivered", resp.status)
    snippet = resp.text[:300].strip()
    err = f"HTTP {resp.status}" + (f": {snippet}" if snippet else "")
    if resp.status in (408, 409, 425, 429) or resp.status >= 500:
        retry_after = None
        ra = resp.headers.get("retry-after")
        if ra and ra.strip().isdigit():
            retry_after = float(ra.strip())
        return Result("retry", resp.status, err, retry_after)
    return Result("dead", resp.status, f"receiver refused the message: {err}")


def _post(http: HttpPool, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Result:
    try:
        resp = http.post(url, body, headers, timeout)
    except TimedOut:
        return Result("retry", None, f"no confirmation within {timeout:g} s (timeout); will redeliver with the same key")
    except ConnectFailed as exc:
        return Result("retry", None, f"ConnectError: {exc}")
    return _classify_http(resp)


def webhook_payload(msg: Claimed) -> bytes:
    """The JSON body a generic webhook receives (stable across redeliveries of one message)."""
    return orjson.dumps({
        "id": msg.dedup_key,
        "message_id": msg.id,
        "channel": msg.channel,
        "kind": msg.kind,
        "subject": msg.subject,
        "body": msg.body,
        "to": list(msg.to),
        "incident_id": msg.incident_id,
        "data": msg.data,
        "created_at": msg.created_at,
    })


def deliver(
    spec: ChannelSpec,
    msg: Claimed,
    *,
    http: HttpPool,
    timeout: float,
    wall: Callable[[], float],
    mail_domain: str = "codeblue.local",
) -> Result:
    """Deliver one message over one channel; never raises for delivery failures."""
    common = {"Idempotency-Key": msg.dedup_key, "X-Codeblue-Delivery": str(msg.id),
              "X-Codeblue-Attempt": str(msg.attempt), "User-Agent": "codeblue-outbox/1"}
    if spec.type == "webhook":
        body = webhook_payload(msg)
        ts = str(int(wall()))
        headers = {**spec.config.get("headers", {}), **common, "Content-Type": "application/json",
                   "X-Codeblue-Timestamp": ts, "X-Codeblue-Signature": signature(spec.secrets["secret"], ts, body)}
        return _post(http, spec.config["url"], body, headers, timeout)
    if spec.type == "slack":
        payload: dict[str, Any] = {"text": f"*{msg.subject}*\n{msg.body}" if msg.subject else msg.body}
        for key in ("username", "icon_emoji", "channel"):
            if spec.config.get(key):
                payload[key] = spec.config[key]
        return _post(http, spec.secrets["url"], orjson.dumps(payload),
                     {**common, "Content-Type": "application/json"}, timeout)
    if spec.type == "pagerduty":
        return _post(http, spec.config["url"], pagerduty_payload(spec, msg),
                     {**common, "Content-Type": "application/json"}, timeout)
    if spec.type == "email":
        return send_email(spec, msg, timeout=timeout, mail_domain=mail_domain)
    return Result("dead", None, f"channel type {spec.type!r} is not supported")


def pagerduty_payload(spec: ChannelSpec, msg: Claimed) -> bytes:
    """A PagerDuty Events API v2 event; `data.event_action` may be trigger (default), acknowledge or resolve."""
    action = msg.data.get("event_action", "trigger")
    event: dict[str, Any] = {
        "routing_key": spec.secrets["routing_key"],
        "event_action": action,
        "dedup_key": msg.dedup_key,
    }
    if action == "trigger":
        severity = msg.data.get("severity") if msg.data.get("severity") in PD_SEVERITIES else spec.config["severity"]
        event["payload"] = {
            "summary": (msg.subject or msg.body)[:1024],
            "source": spec.config.get("source") or "codeblue",
            "severity": severity,
            "timestamp": _iso(msg.created_at),
            "class": msg.kind,
            "group": f"incident-{msg.incident_id}" if msg.incident_id is not None else "codeblue",
            "custom_details": {"body": msg.body, "to": list(msg.to), **msg.data},
        }
        if msg.data.get("link"):
            event["links"] = [{"href": str(msg.data["link"]), "text": "Open in codeblue"}]
    return orjson.dumps(event)


def build_email(spec: ChannelSpec, msg: Claimed, *, mail_domain: str) -> EmailMessage:
    em = EmailMessage()
    em["From"] = spec.config["from"]
    em["To"] = ", ".join(msg.to or spec.config.get("to", []))
    em["Subject"] = msg.subject
    em["Date"] = formatdate(msg.created_at, usegmt=True)
    em["Message-ID"] = message_id(msg.dedup_key, mail_domain)
    em["X-Codeblue-Dedup-Key"] = msg.dedup_key
    if msg.incident_id is not None:
        em["X-Codeblue-Incident"] = str(msg.incident_id)
    em.set_content(msg.body)
    return em


def send_email(spec: ChannelSpec, msg: Claimed, *, timeout: float, mail_domain: str) -> Result:
    rcpts = list(msg.to) or list(spec.config.get("to", []))
    if not rcpts:
        return Result("dead", None, "no recipients: the message has no 'to' and the channel no default 'to'")
    em = build_email(spec, msg, mail_domain=mail_domain)
    host, port = spec.config["host"], int(spec.config.get("port", 25))
    try:
        smtp: smtplib.SMTP
        if spec.config.get("ssl"):
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout, local_hostname=mail_domain)
        with smtp:
            if spec.config.get("starttls") and not spec.config.get("ssl"):
                smtp.starttls(context=ssl.create_default_context())
            if spec.config.get("username"):
                smtp.login(spec.config["username"], spec.secrets.get("password", ""))
            refused = smtp.send_message(em, to_addrs=rcpts)
    except smtplib.SMTPResponseException as exc:
        err = f"SMTP {exc.smtp_code}: {exc.smtp_error.decode(errors='replace') if isinstance(exc.smtp_error, bytes) else exc.smtp_error}"
        return Result("dead" if exc.smtp_code >= 500 else "retry", exc.smtp_code, err)
    except smtplib.SMTPRecipientsRefused as exc:
        return Result("dead", None, f"all recipients refused: {', '.join(exc.recipients)}")
    except (OSError, smtplib.SMTPException) as exc:
        return Result("retry", None, f"{type(exc).__name__}: {exc}")
    if refused:
        return Result("delivered", 250, f"some recipients refused: {', '.join(refused)}")
    return Result("delivered", 250)


def mail_domain_for(spec: ChannelSpec) -> str:
    sender = str(spec.config.get("from", ""))
    return sender.rsplit("@", 1)[1] if "@" in sender else "codeblue.local"


__all__ = ["ChannelSpec", "Result", "deliver", "message_id", "signature", "verify_signature"]
