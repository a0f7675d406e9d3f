"""Local receivers, so the demo's pages and updates are real deliveries: an SMTP server (aiosmtpd) for
e-mail and an HTTP receiver for signed webhooks. Each keeps what it received, with when it arrived."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from codeblue.comms.channels import verify_signature


@dataclass
class Delivery:
    """One message a receiver accepted."""

    via: str  # "email" or the webhook path ("chat", "statuspage")
    kind: str  # page, update, reminder, … (from the dedup key / payload)
    subject: str
    body: str
    to: list[str]
    incident_id: int | None
    dedup_key: str
    received_wall: float
    raw: dict[str, Any] = field(default_factory=dict)


def _unfold(value: object) -> str:
    return " ".join(str(value).split())


def _kind_from_key(key: str) -> str:
    head = key.split(":", 1)[0]
    return {"oncall": "page", "update": "update", "runbook": "update", "reminder": "reminder"}.get(head, head)


class Inbox:
    """What every receiver got, in arrival order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Delivery] = []
        self.listeners: list[Callable[[Delivery], None]] = []

    def add(self, d: Delivery) -> None:
        with self._lock:
            if any(x.dedup_key == d.dedup_key and x.via == d.via and x.to == d.to for x in self.items):
                return  # a redelivery of a message already applied (same dedup key)
            self.items.append(d)
            listeners = list(self.listeners)
        for fn in listeners:
            fn(d)

    def select(self, *, kind: str | None = None, via: str | None = None,
               incident_id: int | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self.items if (kind is None or d.kind == kind) and (via is None or d.via == via)
                    and (incident_id is None or d.incident_id == incident_id)]


class MailSink:
    """A real SMTP server on loopback that keeps every message it is given."""

    def __init__(self, inbox: Inbox, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.inbox = inbox
        self.port = port
        sink = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                sink._keep(message_from_bytes(envelope.content, policy=policy.default), list(envelope.rcpt_tos))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=port)

    def _keep(self, msg: Message, rcpt: list[str]) -> None:
        key = _unfold(msg.get("X-Codeblue-Dedup-Key") or msg.get("Message-ID") or "")
        inc = _unfold(msg.get("X-Codeblue-Incident") or "")
        part = msg.get_body(preferencelist=("plain",)) if isinstance(msg, EmailMessage) else None
        body = str(part.get_content()) if part is not None else ""
        self.inbox.add(Delivery(via="email", kind=_kind_from_key(key), subject=_unfold(msg.get("Subject") or ""),
                                body=body, to=rcpt, incident_id=int(inc) if inc and str(inc).isdigit() else None,
                                dedup_key=key, received_wall=time.time()))

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


class WebhookSink:
    """An HTTP receiver for codeblue's signed webhooks: verifies the HMAC signature and timestamp, applies
    each Idempotency-Key once. `POST /<name>` — the path names the channel (chat, statuspage, …)."""

    def __init__(self, inbox: Inbox, port: int, secret: str, unsigned: tuple[str, ...] = ("slack",)) -> None:
        self.inbox = inbox
        self.unsigned = unsigned
        self.port = port
        self.secret = secret
        self.rejected = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                name = self.path.strip("/") or "webhook"
                # Slack incoming webhooks are not signed (the URL is the secret); generic webhooks are.
                ok = name in sink.unsigned or verify_signature(sink.secret, self.headers.get("X-Codeblue-Timestamp", ""), raw,
                                      self.headers.get("X-Codeblue-Signature", ""), now=time.time())
                if not ok:
                    sink.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    self.send_response(400)
                    self.end_headers()
                    return
                key = str(self.headers.get("Idempotency-Key") or data.get("id") or "")
                inc = data.get("incident_id")
                text = str(data.get("text") or "")  # Slack: "*subject*\nbody"
                subject = str(data.get("subject") or text.split("\n", 1)[0].strip("*"))
                body = str(data.get("body") or text.split("\n", 1)[-1])
                if inc is None and (m := re.search(r"#(\d+)", subject)):
                    inc = int(m.group(1))
                sink.inbox.add(Delivery(
                    via=name, kind=str(data.get("kind") or _kind_from_key(key)), subject=subject, body=body,
                    to=list(data.get("to") or []), incident_id=int(inc) if isinstance(inc, int) else None,
                    dedup_key=key, received_wall=time.time(), raw=data))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._httpd = _Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="demo-webhook", daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
