"""Real protocol peers for the comms tests: an HTTP webhook receiver that verifies signatures and honours
Idempotency-Key, and an SMTP server (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from codeblue.comms.channels import verify_signature
from tests.support import free_port


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    request_queue_size = 512  # a full accept queue would drop connections before the handler ever sees them
    daemon_threads = True


class WebhookReceiver:
    """A receiver like a careful customer would write: verify the HMAC and timestamp, apply each
    Idempotency-Key once, acknowledge duplicates without applying them again.

    Down is ``down()`` (nothing listens on the port); when up, it applies and then answers after `delay`
    seconds (slow when that exceeds the sender's timeout); mode ``status`` answers `status` without applying.
    """

    def __init__(self, secret: str = "", *, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.delay = 0.0
        self.status = 200
        self.retry_after = 0
        self.mode = "ok"
        self.applied: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        self.headers: list[dict[str, str]] = []
        self.duplicates = 0
        self.requests = 0
        self.rejected = 0
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def _answer(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                with contextlib.suppress(OSError):
                    self.send_response(code)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with recv.lock:
                    recv.requests += 1
                    recv.headers.append(headers)
                    recv.raw.append((headers, body))
                if recv.secret and not verify_signature(
                    recv.secret, headers.get("x-codeblue-timestamp", ""), body,
                    headers.get("x-codeblue-signature", ""), now=time.time(),
                ):
                    with recv.lock:
                        recv.rejected += 1
                    self._answer(401, b"bad signature")
                    return
                if recv.mode == "status":
                    extra = {"Retry-After": str(recv.retry_after)} if recv.retry_after else None
                    self._answer(recv.status, b"nope", extra)
                    return
                key = headers.get("idempotency-key", "")
                with recv.lock:
                    if key and key in recv.applied:
                        recv.duplicates += 1
                    else:
                        recv.applied[key] += 1
                        recv.bodies[key] = orjson.loads(body)
                if recv.delay:
                    time.sleep(recv.delay)  # slow: the answer may come after the sender gave up waiting
                self._answer(200, b"ok")

        return Handler

    def up(self) -> WebhookReceiver:
        if self._httpd is None:
            self._httpd = _Server(("127.0.0.1", self.port), self._handler())
            self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
            self._thread.start()
        return self

    def down(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @contextlib.contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        self.up()
        try:
            yield self
        finally:
            self.down()


class SmtpSink:
    """A real SMTP server on loopback (aiosmtpd). `fail_first` answers 451 to the first DATA of each
    Message-ID *after* keeping it — an accepted-but-not-acknowledged e-mail that the sender must resend."""

    def __init__(self, *, fail_first: bool = False) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_first = fail_first
        self._failed: set[str] = set()
        sink = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                msg = message_from_bytes(envelope.content)
                sink.messages.append(msg)
                sink.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                mid = str(msg["Message-ID"])
                if sink.fail_first and mid not in sink._failed:
                    sink._failed.add(mid)
                    return "451 4.3.0 temporary failure, try again"
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *_a: Any) -> None:
        self.controller.stop()
