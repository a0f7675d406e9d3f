"""Lifecycle: every legal and illegal transition, milestones set once, roles and hand-overs on the timeline."""

from __future__ import annotations

import itertools

import pytest

from codeblue.incidents import service
from codeblue.incidents.lifecycle import TRANSITIONS
from codeblue.incidents.model import STATUSES
from tests.incidents.helpers import open_incident, timeline, verify
from tests.support import LiveServer

# The table from the issue, written out by hand so the code's table is checked against it, not against itself.
LEGAL = {
    ("triggered", "investigating"), ("triggered", "contained"), ("triggered", "monitoring"),
    ("triggered", "resolved"), ("triggered", "closed"),
    ("investigating", "contained"), ("investigating", "monitoring"), ("investigating", "resolved"),
    ("investigating", "closed"),
    ("contained", "monitoring"), ("contained", "resolved"), ("contained", "closed"),
    ("monitoring", "resolved"), ("monitoring", "closed"), ("monitoring", "investigating"),
    ("resolved", "closed"), ("resolved", "investigating"),
}
# How to reach each starting status from a new (triggered) incident through legal moves.
PATH = {
    "triggered": [], "investigating": ["investigating"], "contained": ["contained"],
    "monitoring": ["contained", "monitoring"], "resolved": ["resolved"], "closed": ["closed"],
}
PAIRS = list(itertools.product(STATUSES, STATUSES))


def test_transition_table_matches_the_issue() -> None:
    assert {(a, b) for a, tos in TRANSITIONS.items() for b in tos} == LEGAL


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_transition(sqlite_server: LiveServer, old: str, new: str) -> None:
    lead = sqlite_server.client("lead", handle="lena")
    inc = open_incident(lead)
    iid = inc["id"]
    for step in PATH[old]:
        r = lead.post(f"/v1/incidents/{iid}/status", json={"to": step})
        assert r.status_code == 200, r.text
    before = timeline(lead, iid)
    r = lead.post(f"/v1/incidents/{iid}/status", json={"to": new, "note": "checked"})
    if (old, new) in LEGAL:
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["status"] == new
        if new in ("contained", "monitoring", "resolved", "closed"):
            assert got["milestones"]["contained"] is not None
        if new in ("resolved", "closed"):
            assert got["milestones"]["resolved"] is not None
        after = timeline(lead, iid)
        status_entries = [e for e in after[len(before):] if e["kind"] == "status"]
        assert len(status_entries) == 1
        assert status_entries[0]["data"]["from"] == old and status_entries[0]["data"]["to"] == new
        assert status_entries[0]["actor"] == "lena"
        if (old, new) in (("monitoring", "investigating"), ("resolved", "investigating")):
            assert status_entries[0]["data"]["action"] == "reopened"
    else:
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        p = r.json()
        assert p["from"] == old and p["to"] == new
        assert set(p["allowed"]) == {b for a, b in LEGAL if a == old}
        assert old in p["detail"] and new in p["detail"]
        assert timeline(lead, iid) == before
        assert lead.get(f"/v1/incidents/{iid}").json()["status"] == old
    assert verify(lead, iid)["ok"]


def test_closing_needs_lead(sqlite_server: LiveServer) -> None:
    responder = sqlite_server.client("responder", handle="rui")
    inc = open_incident(responder)
    r = responder.post(f"/v1/incidents/{inc['id']}/status", json={"to": "closed"})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert "lead" in r.json()["detail"]
    r = responder.post(f"/v1/incidents/{inc['id']}/status", json={"to": "resolved"})
    assert r.status_code == 200
    lead = sqlite_server.client("lead", handle="lena")
    r = lead.post(f"/v1/incidents/{inc['id']}/status", json={"to": "closed"})
    assert r.status_code == 200
    assert r.json()["closed_at"] is not None


def test_milestones_set_once(server: LiveServer) -> None:
    c = server.client("responder", handle="rui")
    inc = open_incident(c)
    iid = inc["id"]
    assert inc["milestones"]["detected"] is not None
    assert all(v is None for k, v in inc["milestones"].items() if k != "detected")

    r = c.post(f"/v1/incidents/{iid}/milestones", json={"name": "impact_confirmed"})
    assert r.status_code == 200 and r.json()["set"] is True
    first = r.json()["incident"]["milestones"]["impact_confirmed"]
    r = c.post(f"/v1/incidents/{iid}/milestones", json={"name": "impact_confirmed"})
    assert r.status_code == 200 and r.json()["set"] is False
    assert r.json()["incident"]["milestones"]["impact_confirmed"] == first

    r = c.post(f"/v1/incidents/{iid}/milestones", json={"name": "mitigation_chosen"})
    assert r.status_code == 422 and r.json()["field"] == "data.path"
    r = c.post(f"/v1/incidents/{iid}/milestones",
               json={"name": "mitigation_chosen", "data": {"path": "route refunds to the human queue"}})
    assert r.json()["set"] is True
    assert r.json()["incident"]["mitigation_path"] == "route refunds to the human queue"
    r = c.post(f"/v1/incidents/{iid}/milestones", json={"name": "mitigation_chosen", "data": {"path": "other"}})
    assert r.json()["set"] is False
    assert r.json()["incident"]["mitigation_path"] == "route refunds to the human queue"

    r = c.post(f"/v1/incidents/{iid}/milestones", json={"name": "eta", "data": {"eta": 1_900_000_000}})
    assert r.status_code == 200 and r.json()["incident"]["eta"] == 1_900_000_000
    r = c.post(f"/v1/incidents/{iid}/milestones", json={"name": "contained"})
    assert r.status_code == 422 and r.json()["field"] == "name"

    r = c.post(f"/v1/incidents/{iid}/ack")
    assert r.status_code == 200
    acked = r.json()
    assert acked["status"] == "investigating" and acked["acknowledged_by"] == "rui"
    t_ack = acked["milestones"]["acknowledged"]
    other = server.client("responder", handle="ora")
    r = other.post(f"/v1/incidents/{iid}/ack")
    assert r.json()["milestones"]["acknowledged"] == t_ack and r.json()["acknowledged_by"] == "rui"

    c.post(f"/v1/incidents/{iid}/status", json={"to": "resolved"})
    resolved_at = c.get(f"/v1/incidents/{iid}").json()["milestones"]["resolved"]
    c.post(f"/v1/incidents/{iid}/status", json={"to": "investigating", "note": "verification failed"})
    c.post(f"/v1/incidents/{iid}/status", json={"to": "resolved"})
    assert c.get(f"/v1/incidents/{iid}").json()["milestones"]["resolved"] == resolved_at

    kinds = [(e["kind"], e["data"].get("name")) for e in timeline(c, iid) if e["kind"] == "milestone"]
    assert kinds.count(("milestone", "impact_confirmed")) == 1
    assert kinds.count(("milestone", "mitigation_chosen")) == 1
    assert kinds.count(("milestone", "acknowledged")) == 1
    assert kinds.count(("milestone", "resolved")) == 1
    assert verify(c, iid)["ok"]


def test_service_set_milestone_returns_false_second_time(server: LiveServer) -> None:
    rt = server.rt
    with rt.db.write() as s:
        inc = service.open_incident(s, rt, title="t", workflows=["w"], actor="system:detector")
        iid = inc.id
    with rt.db.write() as s:
        assert service.set_milestone(s, rt, incident_id=iid, name="mitigated", actor="al") is True
    with rt.db.write() as s:
        assert service.set_milestone(s, rt, incident_id=iid, name="mitigated", actor="al") is False
    with rt.db.read() as s:
        assert service.verify_timeline(s, rt, incident_id=iid)["ok"]


def test_roles_assignment_and_handover(server: LiveServer) -> None:
    server.token("responder", handle="ana")
    server.token("responder", handle="ben")
    server.token("responder", handle="cy")
    c = server.client("responder", handle="rui")
    inc = open_incident(c, roles={"incident_lead": "ana", "support_liaison": "cy"})
    iid = inc["id"]
    assert inc["roles"] == {"incident_lead": "ana", "support_liaison": "cy"}

    r = c.post(f"/v1/incidents/{iid}/roles", json={"role": "incident_lead", "handle": "ben"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["roles"]["incident_lead"] == "ben"
    hist = [h for h in got["role_history"] if h["role"] == "incident_lead"]
    assert [h["handle"] for h in hist] == ["ana", "ben"]
    assert hist[0]["ended_at"] is not None and hist[1]["ended_at"] is None

    # assigning the current holder again changes nothing
    n = len(timeline(c, iid))
    r = c.post(f"/v1/incidents/{iid}/roles", json={"role": "incident_lead", "handle": "ben"})
    assert r.status_code == 200 and len(timeline(c, iid)) == n

    r = c.post(f"/v1/incidents/{iid}/roles", json={"role": "incident_lead", "handle": "nobody-here"})
    assert r.status_code == 404 and r.json()["field"] == "handle"
    r = c.post(f"/v1/incidents/{iid}/roles", json={"role": "janitor", "handle": "ben"})
    assert r.status_code == 422 and r.json()["field"] == "role"

    entries = timeline(c, iid)
    roles = [(e["kind"], e["data"]["role"], e["data"]["handle"], e["data"]["previous"])
             for e in entries if e["kind"].startswith("role_")]
    assert roles == [
        ("role_assigned", "incident_lead", "ana", None),
        ("role_assigned", "support_liaison", "cy", None),
        ("role_handover", "incident_lead", "ben", "ana"),
    ]
    assert verify(c, iid)["ok"]


def test_patch_triage_each_change_on_timeline(server: LiveServer) -> None:
    c = server.client("responder", handle="rui")
    inc = open_incident(c, severity="SEV3")
    iid = inc["id"]
    r = c.patch(f"/v1/incidents/{iid}", json={
        "severity": "SEV1", "failure_type": "account_action", "summary": "wrong-account refunds",
        "eta": 1_900_000_000.5, "harm": {"requests": 120, "subjects": 40, "workflows": ["incident-tests"],
                                         "started_at": 1_899_990_000, "growing": True},
    })
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["severity"] == "SEV1" and got["failure_type"] == "account_action" and got["eta"] == 1_900_000_000.5
    assert got["harm"]["subjects"] == 40 and got["harm"]["growing"] is True
    fields = [e["data"]["field"] for e in timeline(c, iid) if "field" in e["data"]]
    assert sorted(fields) == ["eta", "failure_type", "harm", "severity", "summary"]
    # an unchanged value adds nothing
    n = len(timeline(c, iid))
    assert c.patch(f"/v1/incidents/{iid}", json={"severity": "SEV1"}).status_code == 200
    assert len(timeline(c, iid)) == n


def test_list_filters(server: LiveServer) -> None:
    c = server.client("lead", handle="lena")
    a = open_incident(c, workflows=["desk"])
    b = open_incident(c, workflows=["advice", "desk_x"])
    d = open_incident(c, workflows=["desk"], failure_type="retrieval")
    c.post(f"/v1/incidents/{d['id']}/status", json={"to": "resolved"})
    ids = [i["id"] for i in c.get("/v1/incidents").json()]
    assert ids == [d["id"], b["id"], a["id"]]
    assert [i["id"] for i in c.get("/v1/incidents", params={"open": "true"}).json()] == [b["id"], a["id"]]
    assert [i["id"] for i in c.get("/v1/incidents", params={"workflow": "desk"}).json()] == [d["id"], a["id"]]
    assert [i["id"] for i in c.get("/v1/incidents", params={"status": "resolved"}).json()] == [d["id"]]
    assert [i["id"] for i in c.get("/v1/incidents", params={"limit": 1}).json()] == [d["id"]]
    r = c.get("/v1/incidents", params={"status": "sleeping"})
    assert r.status_code == 422 and r.json()["field"].startswith("status")
    with server.rt.db.read() as s:
        found = service.find_open_incident(s, workflow="desk", failure_type="other")
        assert found is not None and found.id == a["id"]
        assert service.find_open_incident(s, workflow="desk", failure_type="retrieval") is None


def test_user_report_on_timeline_and_hook(server: LiveServer) -> None:
    from codeblue.hooks import hooks

    seen: list[dict[str, object]] = []
    hooks.on("incident.user_report", lambda **kw: seen.append(kw))
    c = server.client("responder", handle="sam")
    inc = open_incident(c)
    r = c.post(f"/v1/incidents/{inc['id']}/reports",
               json={"text": "refund sent to the wrong account", "subject": "u-17", "channel": "zendesk"})
    assert r.status_code == 201, r.text
    e = r.json()
    assert e["kind"] == "user_report" and e["data"] == {"subject": "u-17", "channel": "zendesk"}
    assert len(seen) == 1
    assert seen[0]["text"] == "refund sent to the wrong account" and seen[0]["subject"] == "u-17"
    assert seen[0]["channel"] == "zendesk"
    assert r.json()["actor"] == "sam"
    assert server.client("viewer").post(f"/v1/incidents/{inc['id']}/reports", json={"text": "x"}).status_code == 403



def test_fast_append_keeps_the_session_object_consistent(sqlite_server: LiveServer) -> None:
    """Another domain may hold the incident object (unlocked, with unflushed changes) and append: the change is
    kept, and the object reflects the head the fast path moved."""
    rt = sqlite_server.rt
    with rt.db.write() as s:
        iid = service.open_incident(s, rt, title="t", workflows=["w"], actor="system:test").id
    with rt.db.write() as s:
        inc = service.get_incident(s, iid)
        before = inc.chain_count
        inc.summary = "changed by another domain"
        entry = service.append_entry(s, rt, incident_id=iid, kind="note", text="hello", actor="t")
        assert entry.seq == before + 1
        assert inc.chain_count == before + 1 and inc.chain_head == entry.mac
    with rt.db.read() as s:
        assert service.get_incident(s, iid).summary == "changed by another domain"
        assert service.verify_timeline(s, rt, incident_id=iid)["ok"]
