"""A small Server-Sent Events reader over httpx streaming, for tests."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx


class SSEReader:
    def __init__(self, url: str, token: str, *, environment: str = "production", last_event_id: str | None = None) -> None:
        self.url = f"{url}/v1/controls/stream"
        self.headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = last_event_id
        self.params = {"environment": environment}
        self.events: queue.Queue[tuple[str, str | None, Any]] = queue.Queue()
        self.status: int | None = None
        self.content_type = ""
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SSEReader:
        self.thread.start()
        assert self._ready.wait(10), "the stream did not answer"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(10)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10.0, read=10.0)) as c, c.stream(
                "GET", self.url, headers=self.headers, params=self.params
            ) as r:
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                self._ready.set()
                if r.status_code != 200:
                    self.events.put(("error", None, r.read().decode()))
                    return
                name, ident, data = "message", None, []
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.events.put(("comment", None, line[1:].strip()))
                    elif line == "":
                        if data:
                            self.events.put((name, ident, json.loads("\n".join(data))))
                        name, ident, data = "message", None, []
                    else:
                        key, _, val = line.partition(":")
                        val = val[1:] if val.startswith(" ") else val
                        if key == "event":
                            name = val
                        elif key == "id":
                            ident = val
                        elif key == "data":
                            data.append(val)
        finally:
            self._ready.set()

    def next(self, *names: str, timeout: float = 10.0) -> tuple[str, str | None, Any]:
        """The next event (skipping comments unless asked for), or AssertionError after `timeout`."""
        while True:
            try:
                ev = self.events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {names or 'event'} within {timeout}s") from None
            if ev[0] == "comment" and "comment" not in names:
                continue
            if names and ev[0] not in names:
                raise AssertionError(f"expected {names}, got {ev}")
            return ev
