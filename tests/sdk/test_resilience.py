"""The Guard when the server dies, restarts, misses revisions, when the process forks, and with its
last-known-good file: against `codeblue serve` as a separate OS process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codeblue.sdk import Guard, lkg
from tests.sdk.helpers import lift, set_control, test_guard, wait_for
from tests.support import ServerProcess, free_port


class Server:
    """A `codeblue serve` process that can be killed and started again on the same port and database."""

    def __init__(self, tmp: Path) -> None:
        self.db_url = f"sqlite:///{tmp}/codeblue.db"
        self.data = tmp / "data"
        self.port = free_port()
        self.proc: ServerProcess | None = None
        self.admin_token = ""
        self.ingest_token = ""
        self.responder_token = ""

    def start(self, port: int | None = None) -> ServerProcess:
        proc = ServerProcess(self.db_url, self.data, port=port or self.port,
                             env={"CODEBLUE_BOOTSTRAP_TOKEN": self.admin_token} if self.admin_token else None)
        if self.admin_token:
            proc.admin_token = self.admin_token
        proc.start()
        if not self.admin_token:
            self.admin_token = proc.admin_token
            with proc.admin() as admin:
                for attr, roles in (("ingest_token", ["ingest"]), ("responder_token", ["responder"])):
                    r = admin.post("/v1/tokens", json={"handle": attr.split("_")[0], "roles": roles})
                    r.raise_for_status()
                    setattr(self, attr, r.json()["token"])
        if port is None:
            self.proc = proc
        return proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def responder(self, proc: ServerProcess | None = None) -> httpx.Client:
        p = proc or self.proc
        assert p is not None
        return httpx.Client(base_url=p.url, headers={"Authorization": f"Bearer {self.responder_token}"}, timeout=30)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc = None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.kill()


def test_server_killed_then_restarted_with_missed_revisions(served: Server, tmp_path: Path) -> None:
    g = test_guard(served.url, served.ingest_token, tmp_path)
    try:
        assert g.wait_ready(15)
        with served.responder() as r:
            ks = set_control(r, "kill_switch", {"workflow": "refund-desk", "action": "issue_refund"})
        wait_for(lambda: not g.decide("refund-desk", action="issue_refund").allowed, what="the kill switch")

        served.kill()  # SIGKILL: no goodbye on the stream
        wait_for(lambda: not g.connected, what="the guard to notice")
        before = g.stale_for
        wait_for(lambda: g.stale_for > g.stale_after, what="staleness to pass the warning threshold")
        assert g.stale_for > before
        d = g.decide("refund-desk", action="issue_refund")
        assert not d.allowed and d.control_id == ks["id"]  # still answering from the last snapshot
        assert g.decide("refund-desk", action="lookup").allowed

        # While the guard's server is down, another replica (same database, other port) changes things.
        other = served.start(port=free_port())
        try:
            with served.responder(other) as r:
                lift(r, ks["id"])
                tool = set_control(r, "tool_disable", {"workflow": "refund-desk", "tool": "create_ticket"})
        finally:
            other.kill()
        assert not g.decide("refund-desk", action="issue_refund").allowed  # nothing reached it yet

        served.start()  # the guard's own server comes back on the same port
        wait_for(lambda: g.revision >= tool["revision"], timeout=30, what="the guard to resync by itself")
        assert g.decide("refund-desk", action="issue_refund").allowed  # the missed lift
        assert not g.decide("refund-desk", tool="create_ticket").allowed  # the missed control
        wait_for(lambda: g.stale_for < g.stale_after, what="freshness")
        assert g.stats["reconnects"] >= 1
    finally:
        g.close()


def test_forked_child_receives_updates_made_after_the_fork(served: Server, tmp_path: Path) -> None:
    g = test_guard(served.url, served.ingest_token, tmp_path)
    try:
        assert g.wait_ready(15)
        parent_id = g.client_id
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: like a gunicorn --preload worker
            code = 1
            try:
                os.close(rfd)
                ok = False
                for _ in range(1500):
                    d = g.decide("refund-desk", action="issue_refund")
                    if not d.allowed:
                        ok = True
                        break
                    import time

                    time.sleep(0.02)
                report = {"blocked": ok, "pid": os.getpid(), "client_id": g.client_id, "revision": g.revision}
                os.write(wfd, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        try:
            with served.responder() as r:
                ks = set_control(r, "kill_switch", {"workflow": "refund-desk", "action": "issue_refund"})
            ready, _, _ = select.select([rfd], [], [], 40)
            assert ready, "the child did not answer"
            report = json.loads(os.read(rfd, 4096).decode())
        finally:
            os.close(rfd)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert report["blocked"] is True, report
        assert report["revision"] >= ks["revision"]
        assert report["pid"] != os.getpid() and report["client_id"] != parent_id
        wait_for(lambda: not g.decide("refund-desk", action="issue_refund").allowed, what="the parent too")
    finally:
        g.close()


def test_a_stopped_server_costs_at_most_the_queue_and_says_how_many(served: Server, tmp_path: Path) -> None:
    g = test_guard(served.url, served.ingest_token, tmp_path, queue_size=50, batch_size=20)
    viewer_token = ""
    try:
        assert g.wait_ready(15)
        for i in range(10):
            with g.trace("chat", subject=f"before-{i}") as t:
                t.response(status=200)
        wait_for(lambda: g.stats["events_sent"] == 10, what="the first events")
        served.kill()
        for i in range(200):
            with g.trace("chat", subject=f"during-{i}") as t:
                t.response(status=200)
        # The queue holds 50: the oldest 150 go, and are counted (a batch the sender had in flight when the
        # server died comes back to the queue and is counted then).
        wait_for(lambda: g.stats["events_dropped"] == 150 and g.stats["events_queued"] == 50,
                 what="the drop count to settle")
        st = g.stats
        assert st["events_queued"] + st["events_dropped"] + st["events_sent"] == st["events_enqueued"] == 210
        served.start()
        wait_for(lambda: g.stats["events_sent"] == 60, timeout=40, what="the queued events to be delivered")
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.admin_token}"}) as admin:
            viewer_token = admin.post("/v1/tokens", json={"handle": "viewer", "roles": ["viewer"]}).json()["token"]
            events = admin.get("/v1/events", params={"workflow": "chat", "limit": 1000},
                               headers={"Authorization": f"Bearer {viewer_token}"}).json()["events"]
        subjects = [e["subject"] for e in events]
        assert subjects == [f"before-{i}" for i in range(10)] + [f"during-{i}" for i in range(150, 200)]
        assert g.stats["events_dropped"] == 150
        beat = g.heartbeat_payload()
        assert beat["events"]["dropped"] == 150
    finally:
        g.close()


def test_server_unreachable_at_start_loads_the_last_known_good_file(served: Server, tmp_path: Path) -> None:
    path = tmp_path / "shared-lkg.json"
    first = test_guard(served.url, served.ingest_token, tmp_path, lkg_path=path)
    try:
        assert first.wait_ready(15)
        with served.responder() as r:
            ks = set_control(r, "kill_switch", {"workflow": "refund-desk", "action": "issue_refund"},
                             {"fallback": "human_queue"})
        wait_for(lambda: path.exists() and lkg.load(path, environment="production").revision >= ks["revision"],
                 what="the file to hold the kill switch")
    finally:
        first.close()
    served.kill()

    g = test_guard(served.url, served.ingest_token, tmp_path, lkg_path=path)
    try:
        assert g.source == "lkg"
        d = g.decide("refund-desk", action="issue_refund")
        assert (d.allowed, d.fallback, d.control_id, d.source) == (False, "human_queue", ks["id"], "lkg")
        assert g.wait_ready(0.5) is False  # nothing fresh from the server
        assert 0 <= g.stale_for < 3600  # as old as the file's last confirmation, not "never"
        assert g.heartbeat_payload()["source"] == "lkg"
    finally:
        g.close()


def test_with_neither_server_nor_file_the_defaults_in_code_apply(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    g = test_guard(dead, "t", tmp_path, default="fail_open", defaults={"refund-desk.issue_refund": "fail_closed"})
    try:
        assert g.wait_ready(0.3) is False
        assert g.source == "default"
        assert not g.decide("refund-desk", action="issue_refund").allowed
        assert g.decide("refund-desk", action="lookup").allowed
        assert g.stale_for == float("inf")
    finally:
        g.close()


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json\n", b'{"format":"codeblue-lkg/1","revision":3,"environment":"production","sha256":"00"}\n{}\n',
     b"\x00\x01\x02garbage"],
    ids=["empty", "not-json", "bad-checksum", "binary"],
)
def test_a_corrupt_file_is_ignored_with_a_warning(tmp_path: Path, content: bytes,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "lkg.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="codeblue.sdk"):
        g = Guard(None, lkg_path=path, default="fail_closed")
    try:
        assert g.source == "default"
        assert not g.decide("w", action="a").allowed
        assert any("ignoring the last-known-good file" in r.getMessage() for r in caplog.records)
    finally:
        g.close()


def test_a_file_for_another_environment_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "lkg.json"
    assert lkg.save(path, {"revision": 4, "controls": [], "configs": {}}, environment="staging", saved_at=1.0)
    with caplog.at_level(logging.WARNING, logger="codeblue.sdk"):
        g = Guard(None, lkg_path=path, environment="production")
    try:
        assert g.source == "default"
        assert "staging" in caplog.text
    finally:
        g.close()


_WRITER = r"""
import sys
from pathlib import Path
from codeblue.sdk import lkg
path, start = Path(sys.argv[1]), int(sys.argv[2])
for rev in range(start, start + 200, 4):
    snap = {"revision": rev, "environment": "production", "controls": [], "configs": {"x/y": {"pad": "z" * 5000}}}
    lkg.save(path, snap, environment="production", saved_at=float(rev))
"""


def test_several_processes_writing_the_file_never_corrupt_it_or_regress_it(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "lkg.json"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(i)]) for i in range(4)]
    seen: list[int] = []
    while any(p.poll() is None for p in procs):
        with contextlib.suppress(FileNotFoundError):
            saved = lkg.load(path, environment="production")  # never a torn file
            if saved is not None:
                seen.append(saved.revision)
    assert all(p.returncode == 0 for p in procs)
    assert seen == sorted(seen)
    final = lkg.load(path, environment="production")
    assert final is not None and final.revision == max(range(3, 203, 4))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_heartbeat_lost_while_the_server_was_down_is_resent_when_it_is_back(served: Server, tmp_path: Path) -> None:
    served.kill()
    # A whole interval is long here; the lost report must be resent by the retry, not by the interval.
    g = test_guard(served.url, served.ingest_token, tmp_path, heartbeat_interval=600.0)
    try:
        wait_for(lambda: g.stats["heartbeat_failures"] >= 1, timeout=30, what="the first heartbeat to fail")
        assert g.source == "default"
        served.start()
        assert g.wait_ready(60)
        with served.responder() as r:
            def mine() -> dict[str, object] | None:
                got = r.get("/v1/sdk/clients", params={"service": "support-bot"})
                assert got.status_code == 200, got.text
                return next((c for c in got.json() if c["client_id"] == g.client_id), None)

            report = wait_for(lambda: (c := mine()) and c["source"] == "snapshot" and c, timeout=30,
                              what="the Guard's report once the server is back")
        assert report["connected"] is True and report["status"] == "ok", report
        assert g.stats["heartbeats"] >= 1
    finally:
        g.close()
