"""A small keep-alive HTTP client for the sender's hot path (stdlib ``http.client``).

Each sender thread keeps one persistent connection per (scheme, host, port). A request that fails on a
*reused* connection before any response arrives (the receiver closed an idle keep-alive connection) is
sent once more on a fresh connection, as urllib3 does; everything else is reported to the caller, which
decides about retries. Redirects are not followed. This costs about a fifth of the CPU of an httpx request,
which is what lets one sender process deliver hundreds of messages a second.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    text: str


class ConnectFailed(OSError):
    """The receiver could not be reached (refused, unreachable, DNS, TLS handshake)."""


class TimedOut(OSError):
    """No complete response within the timeout: the receiver may or may not have applied the message."""


class HttpPool:
    def __init__(self) -> None:
        self._local = threading.local()
        self._ssl = ssl.create_default_context()

    def _conns(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        conns: dict[tuple[str, str, int], http.client.HTTPConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = {}
            self._local.conns = conns
        return conns

    def _new(self, scheme: str, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        parts = urlsplit(url)
        scheme = parts.scheme
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (scheme, host, port)
        conns = self._conns()
        for attempt in (0, 1):
            conn = conns.get(key)
            reused = conn is not None
            if conn is None:
                conn = self._new(scheme, host, port, timeout)
                conns[key] = conn
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            sent = False
            try:
                conn.request("POST", path, body=body, headers={**headers, "Content-Length": str(len(body))})
                sent = True
                resp = conn.getresponse()
                text = resp.read().decode("utf-8", errors="replace")
                out = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, text)
                if resp.will_close:
                    conn.close()
                    conns.pop(key, None)
                return out
            except TimeoutError as exc:
                self._drop(key, conn)
                if not sent and not reused:
                    raise ConnectFailed(f"connect timeout after {timeout:g} s") from exc
                raise TimedOut(f"no response within {timeout:g} s") from exc
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop(key, conn)
                if reused and attempt == 0:
                    continue  # an idle keep-alive connection the receiver had closed: try a fresh one
                raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
            except (ssl.SSLError, http.client.HTTPException, OSError) as exc:
                self._drop(key, conn)
                raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        raise ConnectFailed("connection failed twice")

    def _drop(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._conns().pop(key, None)
