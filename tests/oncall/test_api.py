"""Schedules, overrides, who is on call and policies through the HTTP API and the CLI, on a live server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from typer.testing import CliRunner

from codeblue.cli.main import app as cli
from tests.support import LiveServer


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


SCHEDULE: dict[str, Any] = {
    "name": "infra-primary",
    "domain": "infra",
    "timezone": "America/New_York",
    "layers": [
        {"name": "weekly", "rotation": "weekly", "handoff": "09:00", "start": "2026-03-02", "members": ["al", "bea"]},
        {"name": "daytime", "rotation": "daily", "handoff": "09:00", "start": "2026-03-02", "members": ["cy"],
         "restrict": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}]},
    ],
}


def people(server: LiveServer, *handles: str) -> None:
    for h in handles:
        server.token("viewer", handle=h)


def test_schedule_crud_validation_and_roles(server: LiveServer) -> None:
    people(server, "al", "bea", "cy", "dee")
    lead = server.client("lead")
    assert server.client().post("/v1/oncall/schedules", json=SCHEDULE).status_code == 401
    r = server.client("responder").post("/v1/oncall/schedules", json=SCHEDULE)
    assert r.status_code == 403 and "lead" in r.json()["detail"]

    bad = {**SCHEDULE, "layers": [{**SCHEDULE["layers"][0], "members": ["al", "ghost"]}]}
    r = lead.post("/v1/oncall/schedules", json=bad)
    assert r.status_code == 422 and r.json()["field"] == "layers[0].members[1]" and "ghost" in r.json()["detail"]
    r = lead.post("/v1/oncall/schedules", json={**SCHEDULE, "timezone": "Eastern"})
    assert r.status_code == 422 and r.json()["field"] == "timezone"
    r = lead.post("/v1/oncall/schedules", json={**SCHEDULE, "layers": [{**SCHEDULE["layers"][0], "handoff": "9am"}]})
    assert r.status_code == 422 and r.json()["field"] == "layers[0].handoff"
    custom = {**SCHEDULE["layers"][0], "rotation": "custom"}
    r = lead.post("/v1/oncall/schedules", json={**SCHEDULE, "layers": [custom]})
    assert r.status_code == 422 and "length" in r.json()["detail"]

    r = lead.post("/v1/oncall/schedules", json=SCHEDULE)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert lead.post("/v1/oncall/schedules", json=SCHEDULE).status_code == 409
    listed = server.client("viewer").get("/v1/oncall/schedules", params={"domain": "infra"}).json()
    assert [s["name"] for s in listed] == ["infra-primary"]
    assert server.client("viewer").get("/v1/oncall/schedules", params={"domain": "finance"}).status_code == 422

    replaced = {**SCHEDULE, "layers": [{**SCHEDULE["layers"][0], "members": ["dee"]}]}
    r = lead.put(f"/v1/oncall/schedules/{sid}", json=replaced)
    assert r.status_code == 200 and r.json()["layers"][0]["members"] == ["dee"]
    assert server.client("viewer").get("/v1/oncall/schedules/infra-primary").json()["id"] == sid
    assert lead.delete("/v1/oncall/schedules/infra-primary").status_code == 204
    assert server.client("viewer").get(f"/v1/oncall/schedules/{sid}").status_code == 404


def test_who_across_dst_with_layers_and_override(server: LiveServer) -> None:
    people(server, "al", "bea", "cy", "zed")
    assert server.client("lead").post("/v1/oncall/schedules", json=SCHEDULE).status_code == 201
    viewer = server.client("viewer")

    def who(at: str | float, **params: str) -> dict[str, Any]:
        r = viewer.get("/v1/oncall/who", params={"at": at, **params})
        assert r.status_code == 200, r.text
        rows = [x for x in r.json()["on_call"] if x["schedule"] == "infra-primary"]
        assert len(rows) == 1
        out: dict[str, Any] = rows[0]
        return out

    # Monday 2026-03-09, the first after the spring-forward: 08:30 EDT is still al's week; 09:00 EDT is bea's
    # (and the daytime layer's cy, which sits above it).
    assert who("2026-03-09T08:30:00-04:00")["handle"] == "al"
    assert who(utc(2026, 3, 9, 13, 0))["handle"] == "cy"
    assert who("2026-03-09T18:00:00-04:00") == {**who("2026-03-09T18:00:00-04:00"), "handle": "bea", "level": "weekly"}
    assert who("2026-03-10T10:00:00-04:00", domain="infra")["level"] == "daytime"
    r = viewer.get("/v1/oncall/who", params={"at": "yesterday"})
    assert r.status_code == 422 and r.json()["field"] == "at"

    # An override (a swap) beats every layer for its period. Responders may set one; viewers may not.
    body = {"handle": "zed", "start": "2030-03-10T00:00:00Z", "end": "2030-03-11T00:00:00Z", "reason": "swap"}
    assert viewer.post("/v1/oncall/schedules/infra-primary/overrides", json=body).status_code == 403
    responder = server.client("responder")
    r = responder.post("/v1/oncall/schedules/infra-primary/overrides", json={**body, "handle": "nobody-known"})
    assert r.status_code == 422 and r.json()["field"] == "handle"
    r = responder.post("/v1/oncall/schedules/infra-primary/overrides", json={**body, "end": body["start"]})
    assert r.status_code == 422 and "after start" in r.json()["detail"]
    r = responder.post("/v1/oncall/schedules/infra-primary/overrides", json=body)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    hit = who("2030-03-10T15:00:00Z")
    assert hit["handle"] == "zed" and hit["level"] == "override" and hit["override_id"] == oid
    assert who("2030-03-11T15:00:00Z")["handle"] != "zed"

    shifts = viewer.get("/v1/oncall/schedules/infra-primary/shifts",
                        params={"since": "2030-03-09T00:00:00Z", "until": "2030-03-12T00:00:00Z"}).json()
    assert {"start": utc(2030, 3, 10), "end": utc(2030, 3, 11), "handle": "zed", "source": "override"} in shifts
    overrides = viewer.get("/v1/oncall/schedules/infra-primary/overrides").json()
    assert [o["id"] for o in overrides] == [oid]
    assert responder.delete(f"/v1/oncall/schedules/infra-primary/overrides/{oid}").status_code == 204
    assert who("2030-03-10T15:00:00Z")["handle"] != "zed"


def test_workflow_schedule_answers_for_its_workflow(server: LiveServer) -> None:
    people(server, "al", "bea", "cy", "owner")
    lead = server.client("lead")
    assert lead.post("/v1/oncall/schedules", json={**SCHEDULE, "name": "feature", "domain": "feature"}).status_code == 201
    wf = {"name": "refund-owner", "workflow": "refund-desk", "timezone": "UTC",
          "layers": [{"rotation": "weekly", "start": "2026-01-05", "members": ["owner"]}]}
    r = lead.post("/v1/oncall/schedules", json=wf)
    assert r.status_code == 201 and r.json()["domain"] == "feature"
    rows = server.client("viewer").get("/v1/oncall/who", params={"workflow": "refund-desk"}).json()["on_call"]
    assert [(x["schedule"], x["handle"]) for x in rows] == [("refund-owner", "owner")]
    rows = server.client("viewer").get("/v1/oncall/who", params={"workflow": "search"}).json()["on_call"]
    assert [x["schedule"] for x in rows] == ["feature"]


def test_policies_api(server: LiveServer) -> None:
    people(server, "al", "bea")
    pol = {"name": "payments", "match": {"failure_types": ["account_action"]}, "repeat": 2,
           "levels": [{"target": "risk", "timeout_minutes": 5}, {"target": "person:al", "timeout_minutes": 10}]}
    assert server.client("responder").post("/v1/oncall/policies", json=pol).status_code == 403
    r = server.client("lead").post("/v1/oncall/policies", json={**pol, "levels": [{"target": "cto", "timeout_minutes": 5}]})
    assert r.status_code == 422 and r.json()["field"] == "levels[0].target"
    ghost = {**pol, "levels": [{"target": "person:ghost", "timeout_minutes": 5}]}
    r = server.client("lead").post("/v1/oncall/policies", json=ghost)
    assert r.status_code == 422 and r.json()["field"] == "levels[0].target" and "ghost" in r.json()["detail"]
    r = server.client("lead").post("/v1/oncall/policies", json=pol)
    assert r.status_code == 201
    got = server.client("viewer").get("/v1/oncall/policies").json()
    assert [(p["name"], p["repeat"], len(p["levels"])) for p in got] == [("payments", 2, 2)]
    rules = server.client("viewer").get("/v1/oncall/rules").json()
    assert {"role": "risk_owner", "from": ["risk"],
            "when": {"workflows": [], "failure_types": ["account_action", "policy_refusal"], "severities": []}} in rules
    assert server.client("lead").delete("/v1/oncall/policies/payments").status_code == 204


def test_cli_who_schedules_and_override(server: LiveServer, tmp_path: Any) -> None:
    people(server, "al", "bea", "cy", "zed")
    runner = CliRunner()
    lead = ["--url", server.url, "--token", server.token("lead")]
    f = tmp_path / "schedules.yaml"
    f.write_text(
        "schedules:\n"
        "  - name: infra-primary\n    domain: infra\n    timezone: America/New_York\n    layers:\n"
        "      - {rotation: weekly, handoff: '09:00', start: 2026-03-02, members: [al, bea]}\n"
        "policies:\n  - name: default\n    levels: [{target: infra, timeout_minutes: 5}]\n"
    )
    res = runner.invoke(cli, ["oncall", "apply", str(f), *lead])
    assert res.exit_code == 0, res.output
    assert "created schedule infra-primary" in res.output
    res = runner.invoke(cli, ["oncall", "apply", str(f), *lead])
    assert res.exit_code == 0 and "replaced schedule" in res.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("schedules:\n  - name: x\n    domain: infra\n    timezone: Nowhere/Land\n    layers: []\n")
    res = runner.invoke(cli, ["oncall", "apply", str(bad), *lead])
    assert res.exit_code == 2 and "bad.yaml:4" in res.output

    res = runner.invoke(cli, ["oncall", "who", "--domain", "infra", "--at", "2026-03-09T13:30:00Z", "--json", *lead])
    assert res.exit_code == 0, res.output
    assert orjson.loads(res.output)["on_call"][0]["handle"] == "bea"
    res = runner.invoke(cli, ["oncall", "who", "--domain", "infra", "--at", "2026-03-09T13:30:00Z", *lead])
    assert res.exit_code == 0 and "bea" in res.output

    res = runner.invoke(cli, ["oncall", "override", "infra-primary", "--handle", "zed", "--for", "2h", "--json",
                              *["--url", server.url, "--token", server.token("responder")]])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["oncall", "who", "--domain", "infra", "--at", "+1h", "--json", *lead])
    assert orjson.loads(res.output)["on_call"][0]["handle"] == "zed"
    res = runner.invoke(cli, ["oncall", "who", "--domain", "infra", "--at", "+3h", "--json", *lead])
    assert orjson.loads(res.output)["on_call"][0]["handle"] != "zed"
    res = runner.invoke(cli, ["oncall", "shifts", "infra-primary", "--days", "1", *lead])
    assert res.exit_code == 0 and "zed" in res.output
    res = runner.invoke(cli, ["oncall", "policies", *lead])
    assert res.exit_code == 0 and "infra (5 min)" in res.output
    res = runner.invoke(cli, ["oncall", "who", "--at", "someday", *lead])
    assert res.exit_code == 2
