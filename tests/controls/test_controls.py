"""Controls through the real API: validation, revisions, the snapshot, the SSE stream, resume, expiry."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from codeblue.clock import ManualClock
from codeblue.controls import service
from codeblue.controls.model import Control, RevisionLogEntry
from codeblue.controls.stream import broadcaster_of
from tests.controls.sse import SSEReader
from tests.support import LiveServer

KILL = {
    "type": "kill_switch",
    "scope": {"workflow": "refund-desk", "action": "issue_refund"},
    "params": {"fallback": "human_queue", "target": "refunds-tier2"},
    "reason": "wrong refund guidance after the prompt rollout",
    "ttl_s": 3600,
}


def revision(c: httpx.Client, environment: str = "production") -> int:
    return int(c.get("/v1/controls/snapshot", params={"environment": environment}).json()["revision"])


def test_set_list_lift_and_snapshot_shape(cserver: LiveServer) -> None:
    c = cserver.client("responder", handle="al")
    r = c.post("/v1/controls", json=KILL)
    assert r.status_code == 201, r.text
    ctl = r.json()
    assert ctl["author"] == "al" and ctl["active"] is True and ctl["expires_at"] is not None
    assert ctl["scope"] == {"workflow": "refund-desk", "action": "issue_refund", "tool": "*", "dependency": "*",
                            "segment": "*", "tenant": "*"}
    snap = c.get("/v1/controls/snapshot").json()
    assert set(snap) == {"revision", "environment", "generated_at", "controls", "configs"}
    assert snap["revision"] == ctl["revision"] and snap["environment"] == "production"
    assert snap["controls"][0] == {k: ctl[k] for k in ("id", "type", "scope", "params", "reason", "incident_id",
                                                         "author", "created_at", "expires_at", "lift_condition")}
    # An ingest token (the SDK's) may read the snapshot but not set controls.
    sdk = cserver.client("ingest")
    assert sdk.get("/v1/controls/snapshot").status_code == 200
    assert sdk.post("/v1/controls", json=KILL).status_code == 403

    listed = c.get("/v1/controls").json()
    assert [x["id"] for x in listed] == [ctl["id"]]
    r = c.delete(f"/v1/controls/{ctl['id']}", params={"reason": "prompt rolled back"})
    assert r.status_code == 200 and r.json()["lifted_by"] == "al" and r.json()["lift_reason"] == "prompt rolled back"
    assert c.get("/v1/controls").json() == []
    assert [x["id"] for x in c.get("/v1/controls", params={"state": "lifted"}).json()] == [ctl["id"]]
    assert c.get("/v1/controls/snapshot").json()["controls"] == []
    r = c.delete(f"/v1/controls/{ctl['id']}")
    assert r.status_code == 409 and "already lifted" in r.json()["detail"]
    assert c.delete("/v1/controls/9999").status_code == 404


def test_breaker_state_changes_update_one_control(cserver: LiveServer) -> None:
    c = cserver.client("responder")
    base = {"type": "breaker", "scope": {"dependency": "openai:gpt-4o"}, "reason": "timeouts", "lift_condition": "p95 ok"}
    first = c.post("/v1/controls", json={**base, "params": {"state": "open"}}).json()
    second = c.post("/v1/controls", json={**base, "params": {"state": "half_open"}}).json()
    assert first["id"] == second["id"] and second["params"] == {"state": "half_open"}
    assert second["revision"] > first["revision"]
    assert len(c.get("/v1/controls").json()) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "nope"}, "type"),
        ({"type": "breaker", "params": {"state": "open"}}, "scope.dependency"),
        ({"type": "breaker", "scope": {"dependency": "db"}, "params": {"state": "ajar"}}, "params.state"),
        ({"type": "tool_disable"}, "scope.tool"),
        ({"type": "traffic", "scope": {"workflow": "w"}, "params": {"admit": 1.5}}, "params.admit"),
        ({"type": "traffic", "scope": {"workflow": "w"}, "params": {"admit": True}}, "params.admit"),
        ({"type": "traffic", "scope": {"workflow": "w"}}, "params.admit"),
        ({"type": "fallback", "scope": {"workflow": "w"}, "params": {"fallback": "pigeon"}}, "params.fallback"),
        ({"type": "fallback", "scope": {"workflow": "w"}, "params": {"fallback": "static_answer"}}, "params.target"),
        ({"type": "fallback", "params": {"fallback": "human_queue"}}, "scope.workflow"),
        ({"type": "kill_switch"}, "scope.action"),
        ({"type": "kill_switch", "scope": {"action": "refund"}, "params": {"colour": "red"}}, "params.colour"),
        ({"type": "kill_switch", "scope": {"action": "refund", "planet": "mars"}}, "scope.planet"),
        ({"type": "rollout_freeze", "params": {"config": "prompt"}}, "params.config"),
        ({"type": "rollout_freeze", "params": {"config": "weird/x"}}, "params.config"),
        ({"type": "kill_switch", "scope": {"action": "refund"}, "reason": ""}, "reason"),
        ({"type": "kill_switch", "scope": {"action": "refund"}, "ttl_s": None}, "expires_at"),
        ({"type": "kill_switch", "scope": {"action": "refund"}, "ttl_s": -5}, "ttl_s"),
        ({"type": "kill_switch", "scope": {"action": "refund"}, "expires_at": 1000.0, "ttl_s": None}, "expires_at"),
        ({"type": "kill_switch", "scope": {"action": "refund"}, "expires_at": "soon", "ttl_s": None}, "expires_at"),
        ({"type": "kill_switch", "scope": {"action": "refund"}, "environment": "no spaces"}, "environment"),
    ],
)
def test_bad_controls_are_refused_with_the_field_and_change_nothing(
    sqlite_server: LiveServer, body: dict[str, Any], field: str
) -> None:
    c = sqlite_server.client("responder")
    assert c.post("/v1/controls", json=KILL).status_code == 201
    before = c.get("/v1/controls/snapshot").json()
    payload = {"reason": "because", "ttl_s": 60, **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    r = c.post("/v1/controls", json=payload)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field, r.json()
    after = c.get("/v1/controls/snapshot").json()
    assert {**after, "generated_at": 0} == {**before, "generated_at": 0}


def test_revision_strictly_increases_under_concurrent_writers(cserver: LiveServer) -> None:
    c = cserver.client("responder")
    r0 = revision(c)
    results: list[int] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        with cserver.client("responder") as cc:
            for j in range(5):
                body = {**KILL, "scope": {"workflow": f"wf{i}", "action": f"a{j}"}}
                r = cc.post("/v1/controls", json=body)
                assert r.status_code == 201, r.text
                r2 = cc.delete(f"/v1/controls/{r.json()['id']}")
                assert r2.status_code == 200, r2.text
                with lock:
                    results.extend([r.json()["revision"], r2.json()["revision"]])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 60
    with cserver.rt.db.read() as s:
        log = [(e.revision, e.prev) for e in s.scalars(select(RevisionLogEntry).order_by(RevisionLogEntry.revision))]
    revs = [rev for rev, _ in log]
    assert revs == list(range(r0 + 1, r0 + 61))  # one revision per change, no gaps, no repeats
    assert all(b[1] == a[0] for a, b in itertools.pairwise(log))
    # Each writer saw its own revisions strictly increase.
    assert sorted(results) == revs
    assert revision(c) == r0 + 60


def test_stream_sees_a_kill_switch_set_through_the_api(cserver: LiveServer) -> None:
    c = cserver.client("responder")
    with SSEReader(cserver.url, cserver.token("ingest")) as sse:
        assert sse.status == 200 and sse.content_type.startswith("text/event-stream")
        name, ident, snap = sse.next()
        assert name == "snapshot" and int(ident or -1) == snap["revision"]
        r = c.post("/v1/controls", json=KILL)
        assert r.status_code == 201
        name, ident, patch = sse.next()
        assert name == "patch"
        assert patch["revision"] == r.json()["revision"] == int(ident or -1)
        assert patch["prev"] == snap["revision"]
        assert [x["id"] for x in patch["controls_upsert"]] == [r.json()["id"]]
        assert patch["controls_upsert"][0]["type"] == "kill_switch"
        assert patch["controls_remove"] == [] and patch["configs"] == {}
        # Heartbeats keep flowing.
        assert sse.next("comment")[2] == "hb"
        # A lift is a patch that removes it; a config activation carries the config with its content.
        c.delete(f"/v1/controls/{r.json()['id']}")
        patch2 = sse.next("patch")[2]
        assert patch2["prev"] == patch["revision"] and patch2["controls_remove"] == [r.json()["id"]]
        c.post("/v1/configs/prompt/refund-assistant/versions", json={"content": "Be careful with refunds."})
        c.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v1"})
        patch3 = sse.next("patch")[2]
        assert patch3["prev"] == patch2["revision"]
        assert patch3["configs"]["prompt/refund-assistant"]["content"] == {"v1": "Be careful with refunds."}
        assert broadcaster_of(cserver.rt).subscriber_count("production") == 1
    # A client that goes away is unsubscribed (the server notices the disconnect).
    deadline = time.monotonic() + 20
    while broadcaster_of(cserver.rt).subscriber_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broadcaster_of(cserver.rt).subscriber_count() == 0


def test_stream_environments_are_separate_chains(cserver: LiveServer) -> None:
    c = cserver.client("responder")
    with SSEReader(cserver.url, cserver.token("viewer"), environment="staging") as sse:
        snap = sse.next("snapshot")[2]
        c.post("/v1/controls", json=KILL)  # production: not on this stream
        r = c.post("/v1/controls", json={**KILL, "environment": "staging"})
        patch = sse.next("patch")[2]
        assert patch["revision"] == r.json()["revision"] and patch["prev"] == snap["revision"]
        assert patch["controls_upsert"][0]["id"] == r.json()["id"]


def test_reconnect_with_last_event_id_resumes_with_missed_patches(cserver: LiveServer) -> None:
    c = cserver.client("responder")
    token = cserver.token("ingest")
    with SSEReader(cserver.url, token) as sse:
        _, ident, snap = sse.next("snapshot")
    last = int(ident or -1)
    ids = [c.post("/v1/controls", json={**KILL, "scope": {"action": f"a{i}"}}).json()["id"] for i in range(3)]
    c.delete(f"/v1/controls/{ids[0]}")
    with SSEReader(cserver.url, token, last_event_id=str(last)) as sse:
        got = [sse.next()[2] for _ in range(4)]
        assert [p["prev"] for p in got] == [last] + [p["revision"] for p in got[:-1]]
        assert [p["controls_upsert"][0]["id"] for p in got[:3]] == ids
        assert got[3]["controls_remove"] == [ids[0]]
        # Up to date: nothing is re-sent, new changes keep coming.
        r = c.post("/v1/controls", json=KILL)
        assert sse.next()[2]["revision"] == r.json()["revision"]
    # An id from the future (or garbage) gets a fresh snapshot.
    for bad in ("999999", "not-a-number"):
        with SSEReader(cserver.url, token, last_event_id=bad) as sse:
            name, _, snap = sse.next()
            assert name == "snapshot" and len(snap["controls"]) == 3
    assert snap["revision"] > last


def test_stream_resyncs_when_the_revision_log_was_trimmed(manual_server: tuple[LiveServer, ManualClock]) -> None:
    srv, _clock = manual_server
    c = srv.client("responder")
    ids = [c.post("/v1/controls", json={**KILL, "scope": {"action": f"a{i}"}}).json()["id"] for i in range(4)]
    with srv.rt.db.write() as s:
        from codeblue.controls.revision import trim_log

        assert trim_log(s, keep=1) == 3
    with SSEReader(srv.url, srv.token("viewer"), last_event_id="1") as sse:
        name, _, snap = sse.next()
        assert name == "snapshot" and [x["id"] for x in snap["controls"]] == ids


def test_other_replicas_changes_reach_the_stream_through_the_log_poll(cserver: LiveServer) -> None:
    """A change committed by another process (no in-process notification) still reaches the stream."""
    other_replica = dataclasses.replace(cserver.rt, extras={})
    with SSEReader(cserver.url, cserver.token("viewer")) as sse:
        snap = sse.next("snapshot")[2]
        with cserver.rt.db.write() as s:
            ctl = service.set_control(
                s, other_replica, type="tool_disable", scope={"tool": "refund_api"}, params={},
                reason="malformed arguments", actor="bea", lift_condition="tool contract fixed",
            )
            cid = ctl.id
        patch = sse.next("patch")[2]
        assert patch["prev"] == snap["revision"] and patch["controls_upsert"][0]["id"] == cid


def test_expiry_lifts_a_control_and_bumps_the_revision(manual_server: tuple[LiveServer, ManualClock]) -> None:
    srv, clock = manual_server
    c = srv.client("responder")
    short = c.post("/v1/controls", json={**KILL, "ttl_s": 60}).json()
    long = c.post("/v1/controls", json={**KILL, "ttl_s": 600, "scope": {"action": "other"}}).json()
    lifted_by_hand = c.post("/v1/controls", json={**KILL, "ttl_s": 30, "scope": {"action": "x"}}).json()
    c.delete(f"/v1/controls/{lifted_by_hand['id']}")
    with SSEReader(srv.url, srv.token("viewer")) as sse:
        snap = sse.next("snapshot")[2]
        srv.rt.run_jobs_once()
        clock.advance(59)
        srv.rt.run_jobs_once()
        assert {x["id"] for x in c.get("/v1/controls").json()} == {short["id"], long["id"]}
        clock.advance(2)
        srv.rt.run_jobs_once()
        patch = sse.next("patch")[2]
        assert patch["controls_remove"] == [short["id"]] and patch["prev"] == snap["revision"]
    assert [x["id"] for x in c.get("/v1/controls").json()] == [long["id"]]
    with srv.rt.db.read() as s:
        row = s.get(Control, short["id"])
        assert row is not None and row.lifted_by == "system:expiry" and row.lift_reason == "expired"
        assert row.lifted_at == clock.now()


def test_controls_changed_hook_fires_inside_the_transaction(sqlite_server: LiveServer) -> None:
    from codeblue.hooks import hooks

    seen: list[int] = []

    def on_changed(s: Any, rt: Any, revision: int) -> None:
        # Inside the caller's transaction: the revision-log row is already visible to it.
        assert s.get(RevisionLogEntry, revision) is not None
        seen.append(revision)

    hooks.on("controls.changed", on_changed)
    c = sqlite_server.client("responder")
    a = c.post("/v1/controls", json=KILL).json()["revision"]
    c.post("/v1/configs/feature_flag/refund-v2/versions", json={"content": True})
    b = c.post("/v1/configs/feature_flag/refund-v2/activate", json={"version": "v1"}).json()
    assert seen == [a, a + 1] and b["to"] == "v1"
