"""The stream client against a scripted SSE peer (a real HTTP server on loopback sending crafted messages):
duplicates and older messages never regress the revision, a gap resyncs from the snapshot, a cut stream
reconnects with Last-Event-ID."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.sdk.helpers import test_guard, wait_for
from tests.sdk.test_evaluator import ctl, snap


def frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\nid: {data['revision']}\ndata: {json.dumps(data)}\n\n".encode()


def patch(rev: int, prev: int, upsert: list[dict[str, Any]] | None = None, remove: list[int] | None = None) -> bytes:
    return frame("patch", {"revision": rev, "prev": prev, "controls_upsert": upsert or [],
                           "controls_remove": remove or [], "configs": {}})


class Peer:
    """Serves one scripted list of frames per stream connection, and a snapshot the test sets."""

    def __init__(self) -> None:
        self.connections: list[list[bytes]] = []
        self.seen_last_event_ids: list[str | None] = []
        self.snapshot: dict[str, Any] = snap(revision=0)
        self.snapshot_fetches = 0
        self.stop = threading.Event()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: Any) -> None:
                pass

            def _json(self, code: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path.startswith("/v1/controls/snapshot"):
                    peer.snapshot_fetches += 1
                    self._json(200, peer.snapshot)
                    return
                if not self.path.startswith("/v1/controls/stream"):
                    self._json(404, {"detail": "no"})
                    return
                peer.seen_last_event_ids.append(self.headers.get("Last-Event-ID"))
                script = peer.connections.pop(0) if peer.connections else None
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for f in script or []:
                        self.wfile.write(f)
                        self.wfile.flush()
                        time.sleep(0.01)
                    if script is not None and script and script[-1] == b"CLOSE":
                        return
                    while not peer.stop.is_set():  # stay connected, heartbeating
                        self.wfile.write(b": hb\n\n")
                        self.wfile.flush()
                        peer.stop.wait(0.2)
                except OSError:
                    return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._json(202, {"accepted": 0, "rejected": []})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    p.thread.start()
    try:
        yield p
    finally:
        p.close()


def test_out_of_order_and_duplicates_never_regress_and_a_gap_resyncs(peer: Peer, tmp_path: Path) -> None:
    a = ctl(1, "kill_switch", workflow="w", action="a")
    b = ctl(2, "kill_switch", workflow="w", action="b")
    c = ctl(3, "kill_switch", workflow="w", action="c")
    d = ctl(4, "kill_switch", workflow="w", action="d")
    peer.connections = [
        [
            frame("snapshot", snap(a, revision=5)),
            patch(6, 5, upsert=[b]),
            patch(6, 5, upsert=[b]),                 # duplicate
            patch(4, 3, remove=[1]),                 # older: must not undo anything
            frame("snapshot", snap(revision=3)),     # an older snapshot: ignored
            patch(8, 7, upsert=[c]),                 # gap (7 missed): resync from the snapshot
            b"CLOSE",
        ],
        [patch(9, 8, upsert=[d])],
    ]
    peer.snapshot = snap(a, b, c, revision=8)
    seen: list[int] = []
    g = test_guard(peer.url, "t", tmp_path, heartbeat_interval=60)
    g.add_listener(lambda kind, rev: seen.append(rev))
    try:
        wait_for(lambda: g.revision == 9, what="revision 9")
        assert seen == sorted(seen), f"revision went backwards: {seen}"
        assert not g.decide("w", action="a").allowed  # the older patch did not remove #1
        assert not g.decide("w", action="b").allowed
        assert not g.decide("w", action="c").allowed  # recovered through the resync
        assert not g.decide("w", action="d").allowed
        assert g.stats["ignored"] >= 3 and g.stats["resyncs"] == 1
        assert peer.snapshot_fetches >= 1
        # the second connection asked to resume after the last revision it had
        assert peer.seen_last_event_ids[:2] == [None, "8"]
    finally:
        g.close()


def test_a_malformed_message_resyncs_instead_of_crashing(peer: Peer, tmp_path: Path) -> None:
    peer.connections = [[frame("snapshot", snap(revision=2)), b"event: patch\nid: 3\ndata: {not json\n\n"]]
    peer.snapshot = snap(ctl(1, "tool_disable", tool="t"), revision=3)
    g = test_guard(peer.url, "t", tmp_path, heartbeat_interval=60)
    try:
        wait_for(lambda: g.revision == 3, what="the resync")
        assert not g.decide("w", tool="t").allowed
        assert "bad patch message" in (g.stats["last_error"] or "")
    finally:
        g.close()


def test_heartbeat_comments_keep_the_snapshot_fresh(peer: Peer, tmp_path: Path) -> None:
    peer.connections = [[frame("snapshot", snap(revision=4))]]
    g = test_guard(peer.url, "t", tmp_path, heartbeat_interval=60)
    try:
        assert g.wait_ready(10)
        first = g._last_confirmed
        assert first is not None
        # the peer sends only `: hb` comments from now on; each one confirms revision 4 again
        wait_for(lambda: (g._last_confirmed or 0) > first, what="a heartbeat to confirm the revision")
        assert g.connected and g.revision == 4
    finally:
        g.close()
