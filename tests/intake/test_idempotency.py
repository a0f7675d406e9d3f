"""`POST /v1/events` with an Idempotency-Key stores a batch once, however often it is sent (on each backend);
and the SDK, when the answer to a batch is lost on the way back, resends it under the same key."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from tests.sdk.helpers import test_guard, wait_for
from tests.support import LiveServer


def _events(n: int, tag: str, t0: float | None = None) -> list[dict[str, Any]]:
    t0 = t0 or time.time()
    return [{"time": t0 + i * 0.001, "workflow": "idem", "kind": "response", "status": 200, "subject": f"{tag}-{i}"}
            for i in range(n)]


def _stored(server: LiveServer, subject_prefix: str = "") -> list[str]:
    r = server.client("viewer").get("/v1/events", params={"workflow": "idem", "limit": 1000})
    assert r.status_code == 200, r.text
    return [e["subject"] for e in r.json()["events"] if e["subject"].startswith(subject_prefix)]


def test_a_resent_batch_is_stored_once(server: LiveServer) -> None:
    c = server.client("ingest", handle="bot")
    batch = [*_events(5, "a"), {"workflow": "idem", "kind": "response"}]  # the last one lacks `time`
    first = c.post("/v1/events", json=batch, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 5 and len(first.json()["rejected"]) == 1
    assert "idempotent-replayed" not in first.headers
    again = c.post("/v1/events", json=batch, headers={"Idempotency-Key": "batch-1"})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert sorted(_stored(server, "a-")) == [f"a-{i}" for i in range(5)]

    # another key is another batch; no key at all is the old behaviour (stored each time)
    assert c.post("/v1/events", json=_events(2, "b"), headers={"Idempotency-Key": "batch-2"}).json()["accepted"] == 2
    assert c.post("/v1/events", json=_events(2, "c")).json()["accepted"] == 2
    assert c.post("/v1/events", json=_events(2, "c")).json()["accepted"] == 2
    assert len(_stored(server, "b-")) == 2 and len(_stored(server, "c-")) == 4


def test_keys_belong_to_the_sender(server: LiveServer) -> None:
    one, two = server.client("ingest", handle="bot-one"), server.client("ingest", handle="bot-two")
    assert one.post("/v1/events", json=_events(1, "one"), headers={"Idempotency-Key": "k"}).json()["accepted"] == 1
    r = two.post("/v1/events", json=_events(1, "two"), headers={"Idempotency-Key": "k"})
    assert r.json()["accepted"] == 1 and "idempotent-replayed" not in r.headers
    assert _stored(server, "one-") == ["one-0"] and _stored(server, "two-") == ["two-0"]


def test_a_bad_key_is_refused_naming_the_header(server: LiveServer) -> None:
    c = server.client("ingest", handle="bot")
    r = c.post("/v1/events", json=_events(1, "bad"), headers={"Idempotency-Key": "x" * 201})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in r.json()["detail"]
    assert _stored(server, "bad-") == []


def test_a_rejected_batch_records_no_key(server: LiveServer) -> None:
    c = server.client("ingest", handle="bot")
    bad = [{"workflow": "idem", "kind": "response"}]
    assert c.post("/v1/events", json=bad, headers={"Idempotency-Key": "fix-me"}).status_code == 422
    # the sender fixes the batch and sends it under the same key: it is stored
    r = c.post("/v1/events", json=_events(1, "fixed"), headers={"Idempotency-Key": "fix-me"})
    assert r.status_code == 200 and r.json()["accepted"] == 1 and "idempotent-replayed" not in r.headers


class LosesOneAnswer:
    """A loopback HTTP/1.1 proxy that forwards every request and relays every answer, except that it drops
    the connection instead of relaying the first answer to `POST /v1/events` — the server has stored the
    batch, the sender cannot know."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.dropped = 0
        self.events_posts = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_message(f: Any) -> bytes | None:
        head = b""
        while True:
            line = f.readline()
            if not line:
                return None
            head += line
            if line in (b"\r\n", b"\n"):
                break
        length = 0
        for h in head.split(b"\r\n")[1:]:
            name, _, value = h.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + (f.read(length) if length else b"")

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rf:
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            with up, up.makefile("rb") as uf:
                while True:
                    req = self._read_message(rf)
                    if req is None:
                        return
                    up.sendall(req)
                    resp = self._read_message(uf)
                    if resp is None:
                        return
                    if req.startswith(b"POST /v1/events "):
                        self.events_posts += 1
                        if self.dropped == 0:
                            self.dropped += 1
                            return  # the answer is lost: close the sender's connection
                    conn.sendall(resp)


def test_the_sdk_resends_a_batch_whose_answer_was_lost_and_it_is_stored_once(sqlite_server: LiveServer,
                                                                              tmp_path: Path) -> None:
    proxy = LosesOneAnswer(int(sqlite_server.url.rsplit(":", 1)[1]))
    g = test_guard(f"http://127.0.0.1:{proxy.port}", sqlite_server.token("ingest", handle="sdk"), tmp_path,
                   stream=False, poll_interval=1.0, heartbeat_interval=60.0, batch_size=50)
    try:
        for i in range(7):
            with g.trace("idem", subject=f"sdk-{i}") as t:
                t.response(status=200)
        wait_for(lambda: g.stats["events_sent"] == 7, what="the batch to be delivered after the lost answer")
        assert proxy.dropped == 1 and proxy.events_posts >= 2 and g.stats["send_failures"] >= 1
        assert sorted(_stored(sqlite_server, "sdk-")) == [f"sdk-{i}" for i in range(7)]  # once, not twice
    finally:
        g.close()
        proxy.close()


def test_orjson_roundtrip_of_replayed_answer_keeps_rejections(server: LiveServer) -> None:
    c = server.client("ingest", handle="bot")
    batch = orjson.dumps(_events(1, "nd")[0]) + b"\n" + b'{"workflow": "idem"}\n'
    h = {"Idempotency-Key": "nd-1", "Content-Type": "application/x-ndjson"}
    first = c.post("/v1/events", content=batch, headers=h)
    again = c.post("/v1/events", content=batch, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.json()["rejected"] == first.json()["rejected"] and first.json()["rejected"][0]["line"] == 2
