"""Bad input gets a 4xx problem document naming the field, never a 500, and nothing already stored changes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.incidents.helpers import open_incident, timeline
from tests.support import LiveServer


def _state(c: httpx.Client) -> list[Any]:
    out: list[Any] = []
    for inc in c.get("/v1/incidents", params={"limit": 1000}).json():
        out.append((c.get(f"/v1/incidents/{inc['id']}").json(), timeline(c, inc["id"])))
    return out


J = "application/json"
# (method, path suffix after /v1/incidents, body (bytes or object), expected status, expected field or None)
CASES: list[tuple[str, str, Any, int, str | None]] = [
    ("POST", "", b'{"title": "x", ', 422, "body"),
    ("POST", "", b"not json at all", 422, "body"),
    ("POST", "", [], 422, None),
    ("POST", "", {}, 422, "title"),
    ("POST", "", {"title": ""}, 422, "title"),
    ("POST", "", {"title": 12}, 422, "title"),
    ("POST", "", {"title": "x" * 201}, 422, "title"),
    ("POST", "", {"title": "t", "severity": "SEV9"}, 422, "severity"),
    ("POST", "", {"title": "t", "severity": 1}, 422, "severity"),
    ("POST", "", {"title": "t", "failure_type": "vibes"}, 422, "failure_type"),
    ("POST", "", {"title": "t", "workflows": "refund"}, 422, "workflows"),
    ("POST", "", {"title": "t", "workflows": ["bad name with spaces"]}, 422, "workflows[0]"),
    ("POST", "", {"title": "t", "harm": {"requests": -1}}, 422, "harm.requests"),
    ("POST", "", {"title": "t", "harm": {"requests": "many"}}, 422, "harm.requests"),
    ("POST", "", {"title": "t", "roles": {"janitor": "al"}}, 422, "roles.janitor"),
    ("POST", "", {"title": "t", "roles": {"incident_lead": "no-such-person"}}, 404, "handle"),
    ("POST", "", {"title": "t", "colour": "red"}, 422, "colour"),
    ("POST", "/{id}/status", {"to": "asleep"}, 422, "to"),
    ("POST", "/{id}/status", {"to": None}, 422, "to"),
    ("POST", "/{id}/status", {"to": "investigating", "note": ["a"]}, 422, "note"),
    ("POST", "/{id}/status", {"to": "triggered"}, 409, "to"),
    ("POST", "/{id}/status", b"{", 422, "body"),
    ("POST", "/{id}/roles", {"role": "incident_lead"}, 422, "handle"),
    ("POST", "/{id}/roles", {"role": "chef", "handle": "al"}, 422, "role"),
    ("POST", "/{id}/notes", {"text": ""}, 422, "text"),
    ("POST", "/{id}/notes", {"text": 5}, 422, "text"),
    ("POST", "/{id}/notes", {"text": "x" * 20_001}, 422, "text"),
    ("POST", "/{id}/notes", {"txt": "hello"}, 422, "text"),
    ("POST", "/{id}/reports", {"text": "x", "subject": 3}, 422, "subject"),
    ("POST", "/{id}/milestones", {"name": "detected"}, 422, "name"),
    ("POST", "/{id}/milestones", {"name": "eta", "data": {"eta": "soon"}}, 422, "data.eta"),
    ("POST", "/{id}/milestones", {"name": "impact_confirmed", "data": "x"}, 422, "data"),
    ("PATCH", "/{id}", {"severity": "SEV0"}, 422, "severity"),
    ("PATCH", "/{id}", {"eta": "tomorrow"}, 422, "eta"),
    ("PATCH", "/{id}", {"status": "closed"}, 422, "status"),
    ("PATCH", "/{id}", {"suspects": {"a": 1}}, 422, "suspects"),
    ("POST", "/999999/notes", {"text": "x"}, 404, "incident_id"),
    ("POST", "/abc/notes", {"text": "x"}, 422, "incident_id"),
    ("GET", "/{id}/timeline?after_seq=-1", None, 422, "after_seq"),
    ("GET", "/{id}/timeline?limit=100000", None, 422, "limit"),
    ("GET", "?status=sleeping", None, 422, "status[0]"),
    ("GET", "?limit=zero", None, 422, "limit"),
]


def test_bad_input_is_a_problem_and_changes_nothing(quiet_server: LiveServer) -> None:
    """Every case in CASES, on each backend; the stored state is compared after each bad request."""
    server = quiet_server
    server.token("responder", handle="al")
    c = server.client("lead", handle="lena")
    inc = open_incident(c, roles={"incident_lead": "al"})
    c.post(f"/v1/incidents/{inc['id']}/notes", json={"text": "first note"})
    before = _state(c)
    failures: list[str] = []
    for i, (method, suffix, body, status, field) in enumerate(CASES):
        path = "/v1/incidents" + suffix.replace("{id}", str(inc["id"]))
        if isinstance(body, bytes):
            r = c.request(method, path, content=body, headers={"content-type": J})
        elif body is None:
            r = c.request(method, path)
        else:
            r = c.request(method, path, json=body)
        where = f"case {i}: {method} {suffix} {body!r:.60}"
        if r.status_code != status:
            failures.append(f"{where} → {r.status_code} (want {status}): {r.text[:200]}")
            continue
        if r.headers["content-type"] != "application/problem+json":
            failures.append(f"{where}: not a problem document")
            continue
        p = r.json()
        if p["status"] != status or not p["detail"]:
            failures.append(f"{where}: bad problem {p}")
        if field is not None and not (p.get("field") == field or str(p.get("field")).startswith(field + ".")):
            failures.append(f"{where}: field {p.get('field')!r}, want {field!r}")
        if _state(c) != before:
            failures.append(f"{where}: stored state changed")
            before = _state(c)
    assert not failures, "\n".join(failures)


def test_oversized_body_is_413_and_changes_nothing(quiet_server: LiveServer) -> None:
    server = quiet_server
    c = server.client("responder", handle="rui")
    inc = open_incident(c)
    before = _state(c)
    big = b'{"text": "' + b"x" * (server.settings.max_body_bytes + 10) + b'"}'
    r = c.post(f"/v1/incidents/{inc['id']}/notes", content=big, headers={"content-type": J})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert _state(c) == before


def test_service_rejects_unserialisable_data(sqlite_server: LiveServer) -> None:
    from codeblue.errors import Invalid
    from codeblue.incidents import service

    rt = sqlite_server.rt
    with rt.db.write() as s:
        iid = service.open_incident(s, rt, title="t", workflows=["w"], actor="system:test").id
    with pytest.raises(Invalid) as exc, rt.db.write() as s:
        service.append_entry(s, rt, incident_id=iid, kind="note", text="x", actor="al", data={"x": object()})
    assert exc.value.field == "data"
    with rt.db.read() as s:
        assert service.verify_timeline(s, rt, incident_id=iid)["ok"]
