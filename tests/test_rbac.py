"""RBAC: every mutating route (POST/PUT/PATCH/DELETE) against every role.

``ROUTE_ROLES`` maps (method, path template) → the token roles allowed (role implication already applied:
a route open to ``responder`` is open to ``lead`` and ``admin`` too). A mutating route missing from the table
fails the test, so every domain adds one line per route here. Routes authenticated by something other than a
bearer token (signed links, webhook secrets) go in ``PUBLIC_ROUTES`` with the reason.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.routing import APIRoute

from tests.support import LiveServer

TOKEN_ROLES = ("viewer", "ingest", "responder", "lead", "risk_owner", "admin")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}

ADMIN = {"admin"}
LEAD = {"lead", "admin"}
RESPONDER = {"responder", "lead", "admin"}
INGEST = {"ingest", "admin"}
RISK_OWNER = {"risk_owner"}

ROUTE_ROLES: dict[tuple[str, str], set[str]] = {
    # auth
    ("POST", "/v1/tokens"): ADMIN,
    ("DELETE", "/v1/tokens/{token_id}"): ADMIN,
    # incidents
    ("POST", "/v1/incidents"): RESPONDER,
    ("PATCH", "/v1/incidents/{incident_id}"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/status"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/ack"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/roles"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/notes"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/reports"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/milestones"): RESPONDER,
    # changes and configs
    ("POST", "/v1/configs/kinds"): RESPONDER,
    ("POST", "/v1/configs/{kind}/{name}/versions"): RESPONDER,
    ("POST", "/v1/configs/{kind}/{name}/activate"): RESPONDER,
    ("POST", "/v1/configs/{kind}/{name}/rollback"): RESPONDER,
    ("POST", "/v1/changes"): RESPONDER,
    # controls
    ("POST", "/v1/controls"): RESPONDER,
    ("DELETE", "/v1/controls/{control_id}"): RESPONDER,
    ("POST", "/v1/sdk/heartbeat"): INGEST,
    # signals
    ("POST", "/v1/events"): INGEST,
    ("POST", "/v1/traces"): INGEST,
    ("POST", "/v1/alerts/alertmanager"): INGEST,
    # oncall
    ("POST", "/v1/oncall/schedules"): LEAD,
    ("PUT", "/v1/oncall/schedules/{ref}"): LEAD,
    ("DELETE", "/v1/oncall/schedules/{ref}"): LEAD,
    ("POST", "/v1/oncall/schedules/{ref}/overrides"): RESPONDER,
    ("DELETE", "/v1/oncall/schedules/{ref}/overrides/{override_id}"): RESPONDER,
    ("POST", "/v1/oncall/policies"): LEAD,
    ("DELETE", "/v1/oncall/policies/{ref}"): LEAD,
    ("POST", "/v1/oncall/escalations"): RESPONDER,
    ("POST", "/v1/oncall/pages"): RESPONDER,
    # comms
    ("POST", "/v1/comms/channels"): ADMIN,
    ("DELETE", "/v1/comms/channels/{name}"): ADMIN,
    ("POST", "/v1/comms/channels/{name}/test"): ADMIN,
    ("POST", "/v1/comms/outbox/{message_id}/retry"): LEAD,
    ("POST", "/v1/incidents/{incident_id}/updates"): RESPONDER,
    # review
    ("POST", "/v1/incidents/{incident_id}/audit/refresh"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/audit/items/{item_id}"): RESPONDER,
    ("PUT", "/v1/incidents/{incident_id}/postmortem"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/postmortem/complete"): LEAD,
    ("POST", "/v1/incidents/{incident_id}/actions"): RESPONDER,
    ("PATCH", "/v1/actions/{action_id}"): RESPONDER,
    # runbooks (lint changes nothing: any reader may lint against the server's registry)
    ("POST", "/v1/runbooks/lint"): {"viewer", "responder", "lead", "risk_owner", "admin"},
    ("POST", "/v1/incidents/{incident_id}/runbook/run"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/runbook/accept"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/runbook/steps/{step_id}/request"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/runbook/steps/{step_id}/approve"): {"risk_owner", "lead", "admin"},
    ("POST", "/v1/incidents/{incident_id}/runbook/steps/{step_id}/deny"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/recover"): RESPONDER,
    ("POST", "/v1/incidents/{incident_id}/recover/approve"): RISK_OWNER,
    # console (session cookie + CSRF token, or a bearer token; same role rules as the API)
    ("POST", "/console/logout"): {"viewer", "responder", "lead", "risk_owner", "admin"},
    ("POST", "/console/incidents"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/notes"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/ack"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/status"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/milestones"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/roles"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/page"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/controls"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/evidence"): RESPONDER,
    ("POST", "/console/configs/{kind}/{name}/rollback"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/runbook/accept"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/runbook/steps/{step_id}/request"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/runbook/steps/{step_id}/approve"): {"risk_owner", "lead", "admin"},
    ("POST", "/console/incidents/{incident_id}/runbook/steps/{step_id}/deny"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/updates"): RESPONDER,
    ("POST", "/console/incidents/{incident_id}/audit/items/{item_id}"): RESPONDER,
    ("POST", "/console/controls/{control_id}/lift"): RESPONDER,
}

#: Mutating routes that do not take a bearer token, and what authenticates them instead.
PUBLIC_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/oncall/ack/{token}"): "a signed, expiring acknowledgement link sent in the page",
    ("POST", "/console/login"): "exchanges an API token (in the form) for a console session; login CSRF cookie",
}


def mutating_routes(app: Any) -> list[tuple[str, str, APIRoute]]:
    """(method, path template, route) for every mutating API route, including those of included routers."""
    try:  # FastAPI ≥ 0.13x keeps included routers as nodes; this walks them
        from fastapi.routing import iter_route_contexts

        contexts = [(rc.path, rc.methods, rc.original_route) for rc in iter_route_contexts(app.routes)]
    except ImportError:
        contexts = [(r.path, getattr(r, "methods", None), r) for r in app.routes]
    out = []
    for path, methods, route in contexts:
        if not isinstance(route, APIRoute):
            continue
        for m in sorted(methods or ()):
            if m in MUTATING:
                out.append((m, path, route))
    return out


def _url(path: str, route: APIRoute, values: dict[str, str]) -> str:
    for p in route.dependant.path_params:
        if p.name in values:
            v = values[p.name]
        elif p.field_info.annotation is int:
            v = "999999"
        else:
            v = "rbac-probe"
        path = path.replace("{" + p.name + "}", v).replace("{" + p.name + ":path}", v)
    return path


def _is_problem(r: httpx.Response, status: int) -> bool:
    if r.status_code != status or r.headers.get("content-type") != "application/problem+json":
        return False
    body = r.json()
    return bool(body.get("status") == status and body.get("detail"))


def test_every_mutating_route_is_in_the_table(sqlite_server: LiveServer) -> None:
    found = {(m, p) for m, p, _r in mutating_routes(sqlite_server.app)}
    missing = sorted(found - set(ROUTE_ROLES) - set(PUBLIC_ROUTES))
    assert not missing, f"add these routes to ROUTE_ROLES in tests/test_rbac.py: {missing}"
    stale = sorted((set(ROUTE_ROLES) | set(PUBLIC_ROUTES)) - found)
    assert not stale, f"these ROUTE_ROLES entries match no route any more: {stale}"
    assert not set(ROUTE_ROLES) & set(PUBLIC_ROUTES)
    for key, roles in ROUTE_ROLES.items():
        assert roles and roles <= set(TOKEN_ROLES), key


def test_every_mutating_route_against_every_role(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    tokens = {role: server.token(role, handle=f"rbac-{role}") for role in TOKEN_ROLES}
    with server.admin() as admin:
        r = admin.post("/v1/incidents", json={"title": "rbac probe", "workflows": ["rbac"]})
        assert r.status_code == 201
        values = {"incident_id": str(r.json()["id"]), "kind": "prompt", "name": "rbac-probe"}
    failures: list[str] = []
    routes = [(m, p, r) for m, p, r in mutating_routes(server.app) if (m, p) in ROUTE_ROLES]
    assert len(routes) >= 10
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for method, path, route in routes:
            url = _url(path, route, values)
            allowed = ROUTE_ROLES[(method, path)]
            r = c.request(method, url)
            if not _is_problem(r, 401):
                failures.append(f"{method} {path} without a token → {r.status_code} (want a 401 problem)")
            r = c.request(method, url, headers={"Authorization": "Bearer cb_not_a_real_token"})
            if not _is_problem(r, 401):
                failures.append(f"{method} {path} with a bad token → {r.status_code} (want a 401 problem)")
            for role in TOKEN_ROLES:
                r = c.request(method, url, headers={"Authorization": f"Bearer {tokens[role]}"}, json={})
                if role in allowed:
                    if r.status_code in (401, 403) or r.status_code >= 500:
                        failures.append(f"{method} {path} as {role} → {r.status_code}, but {role} is allowed")
                elif not _is_problem(r, 403):
                    failures.append(f"{method} {path} as {role} → {r.status_code} (want a 403 problem)")
    assert not failures, "\n".join(failures)


def test_public_mutating_routes_do_not_fail_without_a_token(sqlite_server: LiveServer) -> None:
    routes = [(m, p, r) for m, p, r in mutating_routes(sqlite_server.app) if (m, p) in PUBLIC_ROUTES]
    with httpx.Client(base_url=sqlite_server.url, timeout=30) as c:
        for method, path, route in routes:
            r = c.request(method, _url(path, route, {}))
            assert 400 <= r.status_code < 500, (method, path, r.status_code)
            assert r.headers.get("content-type") == "application/problem+json"
