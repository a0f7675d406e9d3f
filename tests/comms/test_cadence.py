"""Communication cadence in a test clock: what is due when, reminders at 10 minutes (comms lead, then the
incident lead), and updates that must state their facts."""

from __future__ import annotations

from typing import Any

from codeblue.comms.sender import get_sender
from codeblue.comms.service import cadence_job
from tests.comms.conftest import MakeServer, clock_of, open_incident
from tests.comms.peers import SmtpSink, WebhookReceiver
from tests.support import LiveServer

STATUS_FACTS = {
    "feature": "Refunds in the support assistant",
    "alternatives": "Refund requests through the help-centre form are processed normally",
    "actions": "Refunds from the assistant are paused while we verify recent ones",
    "status_url": "https://status.example.test",
}


def items(srv: LiveServer, incident_id: int) -> dict[str, dict[str, Any]]:
    r = srv.client("viewer").get(f"/v1/incidents/{incident_id}/comms")
    assert r.status_code == 200, r.text
    return {i["audience"]: i for i in r.json()["items"]}


def people(srv: LiveServer) -> None:
    for handle in ("cora", "ian"):
        srv.token("responder", handle=handle)


def test_overdue_internal_update_reminds_comms_lead_at_ten_minutes_then_incident_lead(make_server: MakeServer) -> None:
    with SmtpSink() as smtp:
        srv = make_server(config={
            "channels": [{"name": "email", "host": "127.0.0.1", "port": smtp.port, "from": "cb@codeblue.test"}],
            "reminders": {"channel": "email", "escalate_after": "5m"},
        })
        people(srv)
        clock = clock_of(srv)
        t0 = clock.now()
        inc = open_incident(srv, roles={"communications_lead": "cora", "incident_lead": "ian"})
        iid = inc["id"]
        due = items(srv, iid)
        assert due["internal"]["state"] == "due" and due["internal"]["due_at"] == t0 + 600
        assert due["status_page"]["state"] == "waiting" and due["status_page"]["waiting_for"] == "impact_confirmed"
        assert due["support"]["waiting_for"] == "mitigation_chosen"
        assert due["executive"]["waiting_for"] == "scope_and_eta"

        clock.advance(599)
        cadence_job(srv.rt)
        assert srv.client("viewer").get(f"/v1/incidents/{iid}/comms").json()["reminders"] == []

        clock.advance(1)  # exactly ten minutes after opening
        cadence_job(srv.rt)
        cadence_job(srv.rt)  # a second tick must not remind twice
        body = srv.client("viewer").get(f"/v1/incidents/{iid}/comms").json()
        assert body["items"][0]["state"] == "overdue"
        assert [(m["data"]["role"], m["to"]) for m in body["reminders"]] == [("communications_lead", ["cora@example.test"])]
        get_sender(srv.rt).deliver_due()
        assert [rcpts for _f, rcpts in smtp.envelopes] == [["cora@example.test"]]
        assert "Overdue: internal update for incident" in str(smtp.messages[0]["Subject"])

        clock.advance(299)
        cadence_job(srv.rt)
        assert len(srv.client("viewer").get(f"/v1/incidents/{iid}/comms").json()["reminders"]) == 1
        clock.advance(1)  # five more minutes with nothing published: the incident lead hears about it
        cadence_job(srv.rt)
        get_sender(srv.rt).deliver_due()
        assert [rcpts for _f, rcpts in smtp.envelopes] == [["cora@example.test"], ["ian@example.test"]]
        assert "(escalated)" in str(smtp.messages[1]["Subject"])
        timeline = srv.client("viewer").get(f"/v1/incidents/{iid}/timeline").json()
        entries = timeline if isinstance(timeline, list) else timeline.get("entries", [])
        assert sum(1 for e in entries if e["kind"] == "comms.reminder") == 2

        # Publishing the internal update clears it; the next one falls due ten minutes later.
        cora = srv.client("responder", handle="cora")
        r = cora.post(f"/v1/incidents/{iid}/updates", json={"audience": "internal", "text": "Refund tool paused."})
        assert r.status_code == 201, r.text
        due = items(srv, iid)
        assert due["internal"]["state"] == "due" and due["internal"]["due_at"] == clock.now() + 600
        cadence_job(srv.rt)
        assert len(srv.client("viewer").get(f"/v1/incidents/{iid}/comms").json()["reminders"]) == 2
        clock.advance(600)
        cadence_job(srv.rt)
        assert len(srv.client("viewer").get(f"/v1/incidents/{iid}/comms").json()["reminders"]) == 3


def test_milestones_drive_the_user_support_and_executive_items(make_server: MakeServer) -> None:
    srv = make_server()
    clock = clock_of(srv)
    inc = open_incident(srv, harm={"requests": 120, "subjects": 40, "workflows": ["refund-desk"]})
    iid = inc["id"]
    resp = srv.client("responder")
    assert resp.post(f"/v1/incidents/{iid}/milestones", json={"name": "impact_confirmed"}).status_code == 200
    t_impact = clock.now()
    due = items(srv, iid)
    assert due["status_page"]["state"] == "due" and due["status_page"]["due_at"] == t_impact + 600

    clock.advance(60)
    r = resp.post(f"/v1/incidents/{iid}/milestones", json={"name": "mitigation_chosen", "data": {"path": "rollback"}})
    assert r.status_code == 200, r.text
    assert items(srv, iid)["support"]["due_at"] == clock.now() + 900
    assert items(srv, iid)["executive"]["state"] == "waiting"

    clock.advance(60)
    assert resp.patch(f"/v1/incidents/{iid}", json={"eta": clock.now() + 3600}).status_code == 200
    due = items(srv, iid)
    assert due["executive"]["state"] == "due" and due["executive"]["due_at"] == clock.now() + 900

    r = resp.post(f"/v1/incidents/{iid}/updates", json={"audience": "status_page", "facts": STATUS_FACTS})
    assert r.status_code == 201, r.text
    due = items(srv, iid)
    assert due["status_page"]["state"] == "due" and due["status_page"]["due_at"] == clock.now() + 1800
    r = resp.post(f"/v1/incidents/{iid}/updates", json={"audience": "support", "facts": STATUS_FACTS})
    assert r.status_code == 201 and items(srv, iid)["support"]["state"] == "done"
    r = resp.post(f"/v1/incidents/{iid}/updates", json={
        "audience": "executive",
        "facts": {"impact": "120 refunds to 40 customers", "eta": "15:30 UTC", "actions": "rolled back"}})
    assert r.status_code == 201 and items(srv, iid)["executive"]["state"] == "done"

    # Resolving stops the schedule, except that the public page must be told it is over.
    assert resp.post(f"/v1/incidents/{iid}/status", json={"to": "resolved"}).status_code == 200
    due = items(srv, iid)
    assert due["internal"]["state"] == "stopped"
    assert due["status_page"]["state"] == "due"
    r = resp.post(f"/v1/incidents/{iid}/updates",
                  json={"audience": "status_page", "facts": {**STATUS_FACTS, "status": "resolved"}})
    assert r.status_code == 201
    assert items(srv, iid)["status_page"]["state"] == "stopped"


def test_missing_fact_is_refused_naming_it_and_nothing_is_published(make_server: MakeServer) -> None:
    with WebhookReceiver().running() as recv:
        srv = make_server(config={"channels": [{"name": "slack", "url": recv.url}],
                                  "audiences": {"status_page": ["slack"]}})
        inc = open_incident(srv)
        resp = srv.client("responder")
        facts = {k: v for k, v in STATUS_FACTS.items() if k != "alternatives"}
        r = resp.post(f"/v1/incidents/{inc['id']}/updates", json={"audience": "status_page", "facts": facts})
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["field"] == "facts.alternatives"
        assert "safe alternatives that remain" in problem["detail"] and problem["missing"] == ["alternatives"]
        r = resp.post(f"/v1/incidents/{inc['id']}/updates", json={"audience": "status_page", "facts": {}})
        assert r.status_code == 422 and r.json()["missing"] == ["feature", "alternatives", "actions", "status_url"]
        r = resp.post(f"/v1/incidents/{inc['id']}/updates",
                      json={"audience": "executive", "facts": {"impact": "x", "actions": "y"}})
        assert r.status_code == 422 and r.json()["field"] == "facts.eta"
        r = resp.post(f"/v1/incidents/{inc['id']}/updates", json={"audience": "press", "facts": {}})
        assert r.status_code == 422 and r.json()["field"] == "audience"
        r = resp.post(f"/v1/incidents/{inc['id']}/updates",
                      json={"audience": "status_page", "facts": {**STATUS_FACTS, "feature": "  "}})
        assert r.status_code == 422 and r.json()["field"] == "facts.feature"
        assert srv.client("viewer").get(f"/v1/incidents/{inc['id']}/updates").json() == []
        assert srv.client("viewer").post(f"/v1/incidents/{inc['id']}/updates",
                                         json={"audience": "internal", "text": "x"}).status_code == 403
        assert resp.post("/v1/incidents/999/updates", json={"audience": "internal", "text": "x"}).status_code == 404

        # A complete one is published: rendered, recorded, and queued to the audience's channel once.
        r = resp.post(f"/v1/incidents/{inc['id']}/updates", json={"audience": "status_page", "facts": STATUS_FACTS})
        assert r.status_code == 201
        upd = r.json()
        for fact in STATUS_FACTS.values():
            assert fact in upd["rendered"]
        assert [m["channel"] for m in upd["messages"]] == ["slack"]
        get_sender(srv.rt).deliver_due()
        assert list(recv.applied) == [f"update:{upd['id']}:slack"]
