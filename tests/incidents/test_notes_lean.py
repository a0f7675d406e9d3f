"""POST /v1/incidents/{id}/notes is served by a lean ASGI endpoint (`codeblue.http.LeanRoutes`) ahead of FastAPI.

Differential test: the same requests, byte for byte, against two servers that differ only in that one of them has
the lean route removed (so FastAPI's `add_note` serves everything). Same backend, same server key, same manual
clock, same tokens and the same history, so every answer — status, headers, body — and every stored entry must
be identical, down to the MACs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeblue.clock import ManualClock
from codeblue.http import LeanRoutes
from codeblue.incidents import service
from tests.incidents.helpers import open_incident, timeline, verify
from tests.support import LiveServer, database_url, make_settings

KEY = "differential-test-key-0123456789abcdef"
J = {"content-type": "application/json"}
LIMIT = 256 * 1024  # body limit of both servers


def _lean(app: Any) -> LeanRoutes | None:
    layer = app.middleware_stack
    while layer is not None:
        if isinstance(layer, LeanRoutes):
            return layer
        layer = getattr(layer, "app", None)
    return None


@pytest.fixture
def pair(backend: str, tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer, list[ManualClock]]]:
    """(lean, reference): the reference is the same app with the lean routes taken out of its middleware."""
    clocks = [ManualClock(), ManualClock()]
    servers: list[LiveServer] = []
    with database_url(backend, tmp_path / "a") as url_a, database_url(backend, tmp_path / "b") as url_b:
        for url, sub, clock in ((url_a, "a", clocks[0]), (url_b, "b", clocks[1])):
            (tmp_path / sub).mkdir(exist_ok=True)
            settings = make_settings(url, tmp_path / sub, workers=False, server_key=KEY, max_body_bytes=LIMIT)
            servers.append(LiveServer(settings, clock))
        lean, ref = servers
        ref.app.user_middleware = [m for m in ref.app.user_middleware if m.cls is not LeanRoutes]
        try:
            for s in servers:
                s.start()
            yield lean, ref, clocks
        finally:
            for s in servers:
                s.stop()


def _requests(iid: int, tokens: dict[str, str], max_text: int) -> list[tuple[str, str, Any, Any]]:
    """(method, path, headers, content) — content is bytes, an iterator of bytes (chunked), or None.

    The lean route sees every POST to a path with a plain decimal id, except the one whose declared
    Content-Length is over the limit (`BodyLimit` refuses it first): 31 of them."""
    p = f"/v1/incidents/{iid}/notes"
    al = {"authorization": f"Bearer {tokens['responder']}", **J}
    return [
        ("POST", p, al, b'{"text": "first note"}'),
        ("POST", p, al, '{"text": "ünïcødé ✓ \\u2603 and a \\"quote\\""}'.encode()),
        ("POST", p, al, b'{"text": "' + b"x" * max_text + b'"}'),
        ("POST", p, {"authorization": f"Bearer {tokens['lead']}", **J}, b'{"text": "from the lead"}'),
        ("POST", p, {"authorization": f"bearer   {tokens['responder']}", **J}, b'{"text": "lower-case scheme"}'),
        ("POST", p, {"authorization": f"Bearer {tokens['responder']}"}, b'{"text": "no content type"}'),
        ("POST", p, al, iter([b'{"text": ', b'"chunked body"}'])),
        # refusals, in the order FastAPI's route meets them: token, role, body, incident
        ("POST", p, J, b'{"text": "no token"}'),
        ("POST", p, {"authorization": "Basic abc", **J}, b'{"text": "not bearer"}'),
        ("POST", p, {"authorization": "Bearer", **J}, b'{"text": "scheme alone"}'),
        ("POST", p, {"authorization": "Bearer cb_not_a_token", **J}, b'{"text": "unknown token"}'),
        ("POST", p, {"authorization": f"Bearer {tokens['viewer']}", **J}, b'{"text": "viewer"}'),
        ("POST", p, {"authorization": f"Bearer {tokens['ingest']}", **J}, b"not even json"),
        ("POST", p, al, b'{"text": ""}'),
        ("POST", p, al, b'{"text": 5}'),
        ("POST", p, al, b'{"text": null}'),
        ("POST", p, al, b'{"txt": "hello"}'),
        ("POST", p, al, b'{"text": "ok", "extra": 1}'),
        ("POST", p, al, b'{"text": "' + b"x" * (max_text + 1) + b'"}'),
        ("POST", p, al, b'{"text": "x", '),
        ("POST", p, al, b"[]"),
        ("POST", p, al, b""),
        ("POST", p, al, b"\xff\xfe"),
        ("POST", p + "?text=ignored&x=1", al, b'{"text": "with a query string"}'),
        ("POST", p.replace("/notes", "/%6eotes"), al, b'{"text": "percent-encoded path"}'),
        # two Authorization headers: the first one counts
        ("POST", p, [("authorization", "Bearer cb_not_a_token"), ("authorization", al["authorization"]), *J.items()],
         b'{"text": "first header is bad"}'),
        ("POST", p, [("authorization", al["authorization"]), ("authorization", "Bearer cb_not_a_token"), *J.items()],
         b'{"text": "first header is good"}'),
        ("POST", "/v1/incidents/999999/notes", al, b'{"text": "unknown incident"}'),
        ("POST", "/v1/incidents/999999/notes", al, b'{"text": ""}'),
        # paths the lean route leaves to FastAPI
        ("POST", "/v1/incidents/0/notes", al, b'{"text": "id zero"}'),
        ("POST", f"/v1/incidents/0{iid}/notes", al, b'{"text": "leading zero"}'),  # FastAPI: same int, 201
        ("POST", "/v1/incidents/abc/notes", al, b'{"text": "not a number"}'),
        ("POST", "/v1/incidents/-1/notes", al, b'{"text": "negative"}'),
        ("POST", "/v1/incidents/abc/notes", J, b'{"text": "not a number, no token"}'),
        ("POST", f"{p}/", al, b'{"text": "trailing slash"}'),
        ("GET", p, al, None),
        ("PUT", p, al, b'{"text": "wrong method"}'),
        ("POST", p, al, b'{"text": "' + b"y" * LIMIT + b'"}'),
        ("POST", p, al, iter([b'{"text": "', b"z" * LIMIT, b'"}'])),  # chunked: refused while it is read
        ("POST", p, al, b'{"text": "last note"}'),
    ]


def _answer(r: httpx.Response, url: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers (but the date; the server's own address in a redirect made neutral) and body bytes."""
    headers = [(k, v.replace(url, "<server>")) for k, v in r.headers.multi_items() if k != "date"]
    return r.status_code, headers, r.content


def test_lean_notes_route_answers_byte_for_byte_like_fastapi(
        pair: tuple[LiveServer, LiveServer, list[ManualClock]]) -> None:
    lean, ref = pair[0], pair[1]
    answers: list[list[Any]] = [[], []]
    states: list[Any] = []
    for n, srv in enumerate((lean, ref)):
        tokens = {role: srv.token(role, handle=f"{role}-person") for role in ("responder", "lead", "viewer", "ingest")}
        c = srv.client("responder", handle="responder-person")
        inc = open_incident(c)
        max_text = service.MAX_TEXT
        for method, path, headers, content in _requests(inc["id"], tokens, max_text):
            pair[2][n].advance(1.25)
            with httpx.Client(base_url=srv.url, timeout=60) as raw:
                r = raw.request(method, path, headers=headers, content=content)
            answers[n].append((method, path, _answer(r, srv.url)))
        states.append((timeline(c, inc["id"]), verify(c, inc["id"]), c.get(f"/v1/incidents/{inc['id']}").json()))

    assert answers[0] == answers[1]
    assert states[0] == states[1]
    entries, verdict, _inc = states[0]
    assert verdict["ok"] and verdict["problems"] == []
    texts = [e["text"] for e in entries if e["kind"] == "note"]
    assert texts[0] == "first note" and texts[-1] == "last note" and len(texts) == 12
    statuses = [a[2][0] for a in answers[0]]
    assert statuses.count(201) == 12 and {401, 403, 404, 405, 413, 422} <= set(statuses)
    assert statuses.count(413) == 2
    # the lean route served the first server's requests to its path; the reference had none
    lean_mw = _lean(lean.app)
    assert lean_mw is not None and _lean(ref.app) is None
    assert lean_mw.served == 31


def test_notes_route_documented_and_revocation_applies_at_once(sqlite_server: LiveServer) -> None:
    """OpenAPI still documents the route (FastAPI's), and the lean route shares the principal cache's
    invalidation: a revoked token is refused on the next note."""
    srv = sqlite_server
    doc = httpx.get(f"{srv.url}/openapi.json").json()
    op = doc["paths"]["/v1/incidents/{incident_id}/notes"]["post"]
    assert [p["name"] for p in op["parameters"]] == ["incident_id"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["text"] and schema["properties"]["text"]["maxLength"] == service.MAX_TEXT
    assert "201" in op["responses"]

    admin = srv.admin()
    r = admin.post("/v1/tokens", json={"handle": "revokee", "roles": ["responder"]})
    tok, tok_id = r.json()["token"], r.json()["id"]
    inc = open_incident(admin)
    h = {"Authorization": f"Bearer {tok}"}
    for i in range(3):  # later ones come from the principal cache
        assert admin.post(f"/v1/incidents/{inc['id']}/notes", json={"text": f"n{i}"}, headers=h).status_code == 201
    assert admin.delete(f"/v1/tokens/{tok_id}").status_code == 204
    r = admin.post(f"/v1/incidents/{inc['id']}/notes", json={"text": "after revoke"}, headers=h)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    lean_mw = _lean(srv.app)
    assert lean_mw is not None and lean_mw.served == 4
    assert [e["text"] for e in timeline(admin, inc["id"]) if e["kind"] == "note"] == ["n0", "n1", "n2"]
