"""Versioned AI config, activation, rollback, freeze, change log — through the real HTTP API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import LiveServer

P = "/v1/configs/prompt/refund-assistant"


def push(c: httpx.Client, content: Any, path: str = P, **kw: Any) -> dict[str, Any]:
    r = c.post(f"{path}/versions", json={"content": content, **kw})
    assert r.status_code == 201, r.text
    return dict(r.json())


def activate(c: httpx.Client, version: str, path: str = P, **kw: Any) -> httpx.Response:
    return c.post(f"{path}/activate", json={"version": version, **kw})


def state(c: httpx.Client, path: str = P, **params: Any) -> dict[str, Any]:
    r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_rollback_returns_to_previous_stable_and_records_a_change(server: LiveServer) -> None:
    c = server.client("responder", handle="al")
    for text in ("one", "two", "three"):
        push(c, f"You are a refund assistant ({text}).", workflows=["refund-desk"])
    for v in ("v1", "v2", "v3"):
        r = activate(c, v)
        assert r.status_code == 200, r.text
    assert state(c)["stable"] == "v3"

    r = c.post(f"{P}/rollback", json={"note": "wrong refund guidance"})
    assert r.status_code == 200, r.text
    ch = r.json()
    assert ch["type"] == "rollback" and ch["from"] == "v3" and ch["to"] == "v2"
    assert ch["actor"] == "al" and ch["workflows"] == ["refund-desk"] and ch["fraction"] == 1.0
    st = state(c)
    assert st["stable"] == "v2" and st["candidate"] is None

    changes = c.get("/v1/changes", params={"workflow": "refund-desk"}).json()
    assert [(x["type"], x["from"], x["to"]) for x in changes] == [
        ("rollback", "v3", "v2"), ("activate", "v2", "v3"), ("activate", "v1", "v2"), ("activate", None, "v1"),
    ]
    assert set(changes[0]) >= {"id", "time", "type", "kind", "name", "from", "to", "fraction", "environment",
                               "workflows", "actor", "incident", "note"}
    # The snapshot serves the rolled-back version.
    snap = c.get("/v1/controls/snapshot", params={"content": "true"}).json()
    cfg = snap["configs"]["prompt/refund-assistant"]
    assert cfg["stable"] == "v2" and cfg["candidate"] is None
    assert cfg["content"] == {"v2": "You are a refund assistant (two)."}

    # A second rollback steps back once more; then there is nothing left.
    assert c.post(f"{P}/rollback", json={}).json()["to"] == "v1"
    r = c.post(f"{P}/rollback", json={})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert "nothing to roll back to" in r.json()["detail"]
    assert state(c)["stable"] == "v1"


def test_candidate_rollout_in_steps_then_rollback_to_fraction_zero(server: LiveServer) -> None:
    c = server.client("responder")
    push(c, "v1 text")
    push(c, {"system": "v2", "temperature": 0.2})
    assert activate(c, "v1").status_code == 200
    r = activate(c, "v2", fraction=0.1)
    assert r.status_code == 200 and r.json()["fraction"] == 0.1 and r.json()["from"] == "v1"
    assert activate(c, "v2", fraction=0.5).status_code == 200
    st = state(c)
    assert (st["stable"], st["candidate"], st["fraction"]) == ("v1", "v2", 0.5)
    snap = c.get("/v1/controls/snapshot", params={"content": "true"}).json()["configs"]["prompt/refund-assistant"]
    assert snap["candidate"] == "v2" and snap["fraction"] == 0.5
    assert snap["content"]["v2"] == {"system": "v2", "temperature": 0.2}

    r = c.post(f"{P}/rollback", json={})
    assert r.status_code == 200
    assert (r.json()["type"], r.json()["from"], r.json()["to"]) == ("rollback", "v2", "v1")
    st = state(c)
    assert (st["stable"], st["candidate"], st["fraction"]) == ("v1", None, 0.0)

    # Promote a rollout to stable with fraction 1.
    assert activate(c, "v2", fraction=0.2).status_code == 200
    assert activate(c, "v2", fraction=1).status_code == 200
    st = state(c)
    assert (st["stable"], st["candidate"], st["previous"]) == ("v2", None, ["v1"])


def test_nothing_to_roll_back_is_409_and_other_refusals(server: LiveServer) -> None:
    c = server.client("responder")
    push(c, "only")
    r = c.post(f"{P}/rollback", json={})
    assert r.status_code == 409 and "nothing to roll back to" in r.json()["detail"]
    assert activate(c, "v1").status_code == 200
    r = c.post(f"{P}/rollback", json={})
    assert r.status_code == 409 and "only ever had stable v1" in r.json()["detail"]
    r = activate(c, "v1")
    assert r.status_code == 409 and "already the stable" in r.json()["detail"]
    r = activate(c, "v9")
    assert r.status_code == 404 and r.json()["field"] == "version"
    push(c, "two")
    push(c, "three")
    assert activate(c, "v2", fraction=0.1).status_code == 200
    r = activate(c, "v3", fraction=0.1)
    assert r.status_code == 409 and "v2 is rolling out" in r.json()["detail"]
    # Roll back to a named version.
    r = c.post(f"{P}/rollback", json={"to_version": "v3"})
    assert r.status_code == 200 and r.json()["to"] == "v3"
    assert state(c)["stable"] == "v3"


def test_freeze_refuses_activation_but_allows_rollback(server: LiveServer) -> None:
    c = server.client("responder")
    push(c, "a", workflows=["refund-desk"])
    push(c, "b")
    push(c, "c")
    assert activate(c, "v1").status_code == 200
    assert activate(c, "v2").status_code == 200
    r = c.post("/v1/controls", json={"type": "rollout_freeze", "scope": {"workflow": "refund-desk"},
                                     "reason": "incident 7: refunds wrong", "lift_condition": "root cause found"})
    assert r.status_code == 201, r.text
    freeze_id = r.json()["id"]
    assert state(c)["frozen"] is True
    assert c.get("/v1/controls/snapshot").json()["configs"]["prompt/refund-assistant"]["frozen"] is True

    r = activate(c, "v3", fraction=0.1)
    assert r.status_code == 409
    assert f"frozen by control {freeze_id}" in r.json()["detail"]
    assert r.json()["control_id"] == freeze_id
    r = c.post(f"{P}/rollback", json={})
    assert r.status_code == 200 and r.json()["to"] == "v1"

    # A freeze on another config does not apply; lifting it allows activations again.
    other = c.post("/v1/controls", json={"type": "rollout_freeze", "params": {"config": "prompt/other"},
                                         "reason": "x", "ttl_s": 600})
    assert other.status_code == 201
    r = c.request("DELETE", f"/v1/controls/{freeze_id}", json={"reason": "fixed"})
    assert r.status_code == 200 and r.json()["active"] is False
    assert activate(c, "v3").status_code == 200
    assert state(c)["frozen"] is False


def test_custom_kind_with_schema_and_external_changes(server: LiveServer) -> None:
    c = server.client("responder", handle="bo")
    schema = {"type": "object", "required": ["fields"], "properties": {"fields": {"type": "array"}}}
    r = c.post("/v1/configs/kinds", json={"kind": "output_schema", "description": "answer shape", "schema": schema})
    assert r.status_code == 201, r.text
    assert c.post("/v1/configs/kinds", json={"kind": "output_schema"}).status_code == 409
    assert c.post("/v1/configs/kinds", json={"kind": "prompt"}).status_code == 409
    r = c.post("/v1/configs/kinds", json={"kind": "bad", "schema": {"type": 12}})
    assert r.status_code == 422 and r.json()["field"] == "schema"
    kinds = {k["kind"]: k for k in c.get("/v1/configs/kinds").json()}
    assert kinds["output_schema"]["builtin"] is False and kinds["prompt"]["builtin"] is True

    path = "/v1/configs/output_schema/refund-answer"
    r = c.post(f"{path}/versions", json={"content": {"fields": "no"}})
    assert r.status_code == 422 and r.json()["field"].startswith("content")
    assert push(c, {"fields": ["amount"]}, path=path, version="2026-05-01")["version"] == "2026-05-01"
    assert push(c, {"fields": ["amount", "reason"]}, path=path)["version"] == "v2"
    r = c.post(f"{path}/versions", json={"content": {"fields": []}, "version": "v2"})
    assert r.status_code == 409
    assert activate(c, "2026-05-01", path=path).status_code == 200

    r = c.post("/v1/configs/nonsense/x/versions", json={"content": "x"})
    assert r.status_code == 422 and r.json()["field"] == "kind" and "output_schema" in r.json()["detail"]

    r = c.post("/v1/changes", json={"kind": "deploy", "name": "refund-api", "from": "1.4.2", "to": "1.5.0",
                                    "workflows": ["refund-desk"], "time": "2026-05-01T10:00:00Z"})
    assert r.status_code == 201, r.text
    ext = r.json()
    assert ext["type"] == "external" and ext["actor"] == "bo" and ext["time"] == 1777629600.0
    r = c.post("/v1/changes", json={"kind": "deploy", "name": "x", "type": "activate"})
    assert r.status_code == 422 and r.json()["field"] == "type"
    r = c.post("/v1/changes", json={"kind": "deploy", "name": "x", "fraction": 3})
    assert r.status_code == 422 and r.json()["field"] == "fraction"
    r = c.post("/v1/changes", json={"kind": "deploy", "name": "x", "colour": "red"})
    assert r.status_code == 422 and r.json()["field"] == "colour"

    got = c.get("/v1/changes", params={"since": "1777629000", "until": "2026-05-01T11:00:00Z"}).json()
    assert [x["id"] for x in got] == [ext["id"]]
    assert c.get("/v1/changes", params={"kind": "deploy"}).json()[0]["name"] == "refund-api"
    r = c.get("/v1/changes", params={"since": "yesterday"})
    assert r.status_code == 422 and r.json()["field"] == "since"
    recent = c.get("/v1/changes", params={"since": "30m"}).json()
    assert [x["kind"] for x in recent] == ["output_schema"]  # the deploy happened at its own (older) time


def test_bad_input_is_a_problem_document_and_changes_nothing(server: LiveServer) -> None:
    c = server.client("responder")
    push(c, "a", workflows=["refund-desk"])
    push(c, "b")
    assert activate(c, "v1").status_code == 200
    before = state(c)
    before_changes = c.get("/v1/changes").json()
    before_rev = c.get("/v1/controls/snapshot").json()["revision"]
    bad: list[tuple[str, Any, str]] = [
        (f"{P}/activate", {"version": "v2", "fraction": 1.5}, "fraction"),
        (f"{P}/activate", {"version": "v2", "fraction": 0}, "fraction"),
        (f"{P}/activate", {"version": "v2", "fraction": "lots"}, "fraction"),
        (f"{P}/activate", {"version": "v2", "environment": "bad env!"}, "environment"),
        (f"{P}/activate", {"fraction": 1}, "version"),
        (f"{P}/activate", {"version": "v2", "colour": 1}, "colour"),
        (f"{P}/versions", {"content": None}, "content"),
        (f"{P}/versions", {"note": "no content"}, "content"),
        (f"{P}/versions", {"content": "x", "version": "has space"}, "version"),
        (f"{P}/versions", {"content": "x", "workflows": "refund"}, "workflows"),
        ("/v1/configs/prompt/bad name!/versions", {"content": "x"}, "name"),
        (f"{P}/rollback", {"to_version": "v7"}, "to_version"),
    ]
    for path, body, field in bad:
        r = c.post(path, json=body)
        assert 400 <= r.status_code < 500, (path, body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == field, (path, body, r.json())
    r = c.post(f"{P}/activate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert state(c) == before
    assert c.get("/v1/changes").json() == before_changes
    assert c.get("/v1/controls/snapshot").json()["revision"] == before_rev

    # Reading needs a token; writing needs responder.
    assert server.client().get(P).status_code == 401
    r = server.client("viewer").post(f"{P}/activate", json={"version": "v2"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert state(c) == before


def test_environments_are_independent(server: LiveServer) -> None:
    c = server.client("responder")
    push(c, "a")
    push(c, "b")
    assert activate(c, "v1").status_code == 200
    assert activate(c, "v2", environment="staging").status_code == 200
    assert state(c)["stable"] == "v1"
    assert state(c, environment="staging")["stable"] == "v2"
    assert c.get("/v1/controls/snapshot", params={"environment": "staging"}).json()["configs"][
        "prompt/refund-assistant"]["stable"] == "v2"
    listed = c.get("/v1/configs").json()
    assert listed[0]["key"] == "prompt/refund-assistant" and listed[0]["versions"] == 2
    assert c.get("/v1/changes", params={"environment": "staging"}).json()[0]["to"] == "v2"
