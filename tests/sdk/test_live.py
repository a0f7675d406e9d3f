"""The Guard against a real `codeblue` server on loopback: enforcement, resync, reporting, fleet view."""

from __future__ import annotations

from pathlib import Path

from tests.sdk.helpers import lift, set_control, test_guard, wait_for
from tests.support import LiveServer


def test_kill_switch_set_through_the_api_is_enforced_and_lifting_restores(
    sqlite_server: LiveServer, tmp_path: Path
) -> None:
    srv = sqlite_server
    g = test_guard(srv.url, srv.token("ingest", handle="bot"), tmp_path)
    try:
        assert g.wait_ready(10)
        assert g.decide("refund-desk", action="issue_refund").allowed
        ctl = set_control(srv.client("responder"), "kill_switch",
                          {"workflow": "refund-desk", "action": "issue_refund"},
                          {"fallback": "human_queue"}, reason="wrong refund guidance after prompt rollout")
        d = wait_for(lambda: (x := g.decide("refund-desk", action="issue_refund")) and not x.allowed and x,
                     what="the kill switch to reach the guard")
        assert d.control_id == ctl["id"]
        assert d.fallback == "human_queue"
        assert d.reason == "wrong refund guidance after prompt rollout"
        assert d.revision == ctl["revision"]
        # other actions of the workflow and other workflows are untouched
        assert g.decide("refund-desk", action="lookup_order").allowed
        assert g.decide("billing", action="issue_refund").allowed
        lift(srv.client("responder"), ctl["id"])
        wait_for(lambda: g.decide("refund-desk", action="issue_refund").allowed, what="the lift to reach the guard")
        assert g.stale_for < 5
        assert g.source == "snapshot"
    finally:
        g.close()


def test_server_breaker_and_tool_disable_reach_every_guard(sqlite_server: LiveServer, tmp_path: Path) -> None:
    srv = sqlite_server
    token = srv.token("ingest", handle="bot")
    g1 = test_guard(srv.url, token, tmp_path / "a")
    g2 = test_guard(srv.url, token, tmp_path / "b", service="other-bot")
    try:
        assert g1.wait_ready(10) and g2.wait_ready(10)
        responder = srv.client("responder")
        br = set_control(responder, "breaker", {"dependency": "verifier"}, {"state": "open"}, reason="verifier 5xx")
        td = set_control(responder, "tool_disable", {"workflow": "support", "tool": "create_ticket"})
        for g in (g1, g2):
            wait_for(lambda g=g: g.revision >= td["revision"], what="both controls")
            d = g.decide("anything", action="x", dependency="verifier")
            assert not d.allowed and d.control_id == br["id"]
            assert not g.decide("support", tool="create_ticket").allowed
            assert g.decide("support", tool="search").allowed
            assert g.breakers["verifier"]["server"]["control_id"] == br["id"]
    finally:
        g1.close()
        g2.close()


def test_heartbeats_show_the_fleet_with_staleness_and_defaults(server: LiveServer, tmp_path: Path) -> None:
    srv = server
    token = srv.token("ingest", handle="bot")
    live = test_guard(srv.url, token, tmp_path / "live", defaults={"refund-desk.issue_refund": "fail_closed"})
    # A guard that never gets a snapshot (no stream, no poll yet) decides from its defaults: flagged.
    blind = test_guard(srv.url, token, tmp_path / "blind", service="batch-job", stream=False, poll_interval=3600,
                       default="fail_open")
    try:
        assert live.wait_ready(10)
        blind.decide("chat", action="answer")
        viewer = srv.client("viewer")

        def fleet() -> dict[str, dict[str, object]]:
            r = viewer.get("/v1/sdk/clients")
            assert r.status_code == 200, r.text
            return {c["service"]: c for c in r.json()}

        # the blind guard's first poll happens at once; make it miss by asking before it lands is racy, so
        # look for the report that says what it decided from. The live guard's first heartbeat may go out before
        # its snapshot lands (a slow start): it sends a corrected one as soon as the snapshot is in, so wait for it.
        got = wait_for(lambda: (f := fleet()) and {"support-bot", "batch-job"} <= set(f)
                       and f["support-bot"]["source"] != "default" and f, what="both heartbeats, the live one loaded")
        mine = got["support-bot"]
        assert mine["client_id"] == live.client_id and mine["pid"] == live.pid
        assert mine["source"] == "snapshot" and mine["connected"] is True
        assert mine["status"] == "ok", mine
        assert mine["defaults"]["refund-desk.issue_refund"] == "fail_closed"
        assert isinstance(mine["stale_for"], float) and mine["stale_for"] < 60
        assert mine["reported_by"] == "bot"
        assert got["batch-job"]["source"] in ("snapshot", "default")

        # roles: only ingest may report, only viewers may list
        r = viewer.post("/v1/sdk/heartbeat", json=live.heartbeat_payload())
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        assert srv.client("ingest", handle="bot").get("/v1/sdk/clients").status_code == 403
        bad = srv.client("ingest", handle="bot").post("/v1/sdk/heartbeat", json={**live.heartbeat_payload(),
                                                                                   "revision": -1})
        assert bad.status_code == 422 and bad.json()["field"] == "revision"

        # a guard with nothing loaded and fail_open defaults is called out
        payload = {**blind.heartbeat_payload(), "source": "default", "on_defaults": True, "revision": 0}
        r = srv.client("ingest", handle="bot").post("/v1/sdk/heartbeat", json=payload)
        assert r.status_code == 202 and r.json()["status"] == "failing_open"
        assert fleet()["batch-job"]["status"] == "failing_open"

        live.close()
        assert "support-bot" not in fleet()  # a closed guard said goodbye
        r = viewer.get("/v1/sdk/clients", params={"include_gone": "true", "service": "support-bot"})
        assert [c["status"] for c in r.json()] == ["closed"]
    finally:
        live.close()
        blind.close()


def test_events_reach_the_server_with_the_versions_served(sqlite_server: LiveServer, tmp_path: Path) -> None:
    from codeblue.sdk import bucket

    srv = sqlite_server
    responder = srv.client("responder")
    for version, text in (("v41", "old prompt"), ("v42", "new prompt")):
        r = responder.post("/v1/configs/prompt/refund-assistant/versions",
                           json={"version": version, "content": text, "workflows": ["refund-desk"]})
        assert r.status_code == 201, r.text
    assert responder.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v41"}).status_code == 200
    r = responder.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v42", "fraction": 0.3})
    assert r.status_code == 200, r.text
    schema = {"type": "object", "required": ["order_id", "amount"],
              "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}}}
    r = responder.post("/v1/configs/tool_contract/create_refund/versions",
                       json={"version": "c1", "content": schema, "workflows": ["refund-desk"]})
    assert r.status_code == 201, r.text
    assert responder.post("/v1/configs/tool_contract/create_refund/activate", json={"version": "c1"}).status_code == 200

    g = test_guard(srv.url, srv.token("ingest", handle="bot"), tmp_path)
    try:
        assert g.wait_ready(10)
        wait_for(lambda: g.config("tool_contract", "create_refund") is not None, what="the configs")
        subjects = [f"acct-{i}" for i in range(40)]
        expected: dict[str, str] = {}
        for acct in subjects:
            with g.trace("refund-desk", subject=acct, session_id=f"s-{acct}") as t:
                t.response(status=200, refusal=False, grounded=True, model="m1", latency_ms=120.0,
                           input="refund please", output="done")
                expected[acct] = "v42" if bucket("prompt/refund-assistant", acct) < 0.3 else "v41"
        with g.trace("refund-desk", subject="acct-x") as t:
            assert t.tool_call("create_refund", {"order_id": "o1", "amount": 5}) is True
            assert t.tool_call("create_refund", {"order_id": "o2", "amount": -3}) is False
            t.action("issue_refund", target="acct-y", authorized_targets=["acct-x"])
        g.complaint("refund-desk", "the bot refunded the wrong account", subject="acct-x", channel="support")
        assert {"v41", "v42"} <= set(expected.values())

        viewer = srv.client("viewer")

        def stored() -> list[dict[str, object]]:
            r = viewer.get("/v1/events", params={"workflow": "refund-desk", "limit": 1000})
            assert r.status_code == 200, r.text
            events: list[dict[str, object]] = r.json()["events"]
            return events

        events = wait_for(lambda: (e := stored()) and len(e) >= 44 and e, what="the events at the server")
        responses = [e for e in events if e["kind"] == "response"]
        assert len(responses) == 40
        for e in responses:
            versions = e["versions"]
            assert isinstance(versions, dict)
            assert versions["prompt/refund-assistant"] == expected[str(e["subject"])]
            assert e["service"] == "support-bot" and e["trace_id"]
        calls = [e for e in events if e["kind"] == "tool_call"]
        assert [c["args_valid"] for c in calls] == [True, False]
        bad = calls[1]
        assert bad["attributes"]["args_error_path"] == "amount"  # type: ignore[index]
        assert bad["versions"]["tool_contract/create_refund"] == "c1"  # type: ignore[index]
        action = next(e for e in events if e["kind"] == "action")
        assert action["target"] == "acct-y" and action["authorized_targets"] == ["acct-x"]
        complaint = next(e for e in events if e["kind"] == "complaint")
        assert complaint["text"] == "the bot refunded the wrong account"
        assert g.stats["events_dropped"] == 0 and g.stats["events_sent"] == 44
    finally:
        g.close()


def test_text_sampling_rate_is_the_applications(sqlite_server: LiveServer, tmp_path: Path) -> None:
    srv = sqlite_server
    g = test_guard(srv.url, srv.token("ingest", handle="bot"), tmp_path, text_sample_rate=0.0)
    try:
        with g.trace("chat", subject="u1") as t:
            t.response(status=200, input="secret question", output="answer")
        g.close()
        events = srv.client("viewer").get("/v1/events", params={"workflow": "chat"}).json()["events"]
        assert len(events) == 1 and "input" not in events[0] and "output" not in events[0]
    finally:
        g.close()


def test_an_exception_inside_a_trace_records_a_500(sqlite_server: LiveServer, tmp_path: Path) -> None:
    srv = sqlite_server
    g = test_guard(srv.url, srv.token("ingest", handle="bot"), tmp_path)
    try:
        try:
            with g.trace("chat", subject="u1"):
                raise RuntimeError("model timed out")
        except RuntimeError:
            pass
        g.close()
        events = srv.client("viewer").get("/v1/events", params={"workflow": "chat"}).json()["events"]
        assert [(e["kind"], e["status"], e["attributes"]["error"]) for e in events] == [("response", 500, "RuntimeError")]
    finally:
        g.close()
