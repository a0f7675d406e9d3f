"""Controls and config changes linked to an incident write entries on its timeline (when incidents exists)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support import LiveServer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("codeblue.incidents.service") is None, reason="the incidents package is not installed"
)


def test_changes_on_an_incident_are_on_its_timeline(server: LiveServer) -> None:
    c = server.client("responder", handle="al")
    r = c.post("/v1/incidents", json={"title": "Wrong refund guidance", "workflows": ["refund-desk"]})
    assert r.status_code == 201, r.text
    inc = r.json()["id"]
    P = "/v1/configs/prompt/refund-assistant"
    c.post(f"{P}/versions", json={"content": "a", "workflows": ["refund-desk"]})
    c.post(f"{P}/versions", json={"content": "b"})
    assert c.post(f"{P}/activate", json={"version": "v1"}).status_code == 200
    assert c.post(f"{P}/activate", json={"version": "v2", "incident_id": inc}).status_code == 200
    kill = c.post("/v1/controls", json={
        "type": "kill_switch", "scope": {"workflow": "refund-desk", "action": "issue_refund"},
        "reason": "stop refunds", "incident_id": inc, "lift_condition": "prompt fixed"})
    assert kill.status_code == 201
    assert c.post(f"{P}/rollback", json={"incident_id": inc, "note": "revert prompt"}).status_code == 200
    assert c.request("DELETE", f"/v1/controls/{kill.json()['id']}", json={"reason": "verified"}).status_code == 200
    assert c.post("/v1/changes", json={"kind": "deploy", "name": "refund-api", "to": "1.5.1", "incident": inc}).status_code == 201

    entries = c.get(f"/v1/incidents/{inc}/timeline").json()["entries"]
    mine = [(e["kind"], e["actor"]) for e in entries if e["kind"].startswith(("change.", "control."))]
    assert mine == [("change.activate", "al"), ("control.set", "al"), ("change.rollback", "al"),
                    ("control.lifted", "al"), ("change.external", "al")]
    texts = [e["text"] for e in entries]
    assert any("rolled back prompt/refund-assistant in production: v2 → v1" in t for t in texts)
    assert c.get(f"/v1/incidents/{inc}/timeline/verify").json()["ok"] is True

    # A link to an incident that does not exist is refused and stores nothing.
    before = c.get("/v1/controls/snapshot").json()["revision"]
    r = c.post("/v1/controls", json={"type": "tool_disable", "scope": {"tool": "t"}, "reason": "x", "ttl_s": 60,
                                     "incident_id": 99999})
    assert r.status_code == 404 and r.json()["field"] == "incident_id"
    assert c.get("/v1/controls/snapshot").json()["revision"] == before
