from __future__ import annotations

from tests.support import LiveServer


def test_token_lifecycle_and_problem_documents(server: LiveServer) -> None:
    anon = server.client()
    r = anon.post("/v1/tokens", json={"handle": "al", "roles": ["viewer"]})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 401

    viewer = server.client("viewer")
    r = viewer.post("/v1/tokens", json={"handle": "al", "roles": ["viewer"]})
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]

    admin = server.admin()
    r = admin.post("/v1/tokens", json={"handle": "al", "roles": ["nope"]})
    assert r.status_code == 422
    assert r.json()["field"] == "roles[0]"

    r = admin.post("/v1/tokens", content=b"{bad", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["field"] == "body"
    assert "malformed JSON" in r.json()["detail"]

    r = admin.post("/v1/tokens", json={"handle": "al", "roles": ["responder"], "email": "al@example.test"})
    assert r.status_code == 201
    tok = r.json()["token"]
    me = server.client().get("/v1/me", headers={"Authorization": f"Bearer {tok}"}).json()
    assert me["handle"] == "al"
    assert set(me["roles"]) == {"responder", "viewer"}

    r = admin.delete(f"/v1/tokens/{r.json()['id']}")
    assert r.status_code == 204
    assert server.client().get("/v1/me", headers={"Authorization": f"Bearer {tok}"}).status_code == 401


def test_token_digest_only_at_rest(server: LiveServer) -> None:
    from sqlalchemy import select

    from codeblue.auth.model import Token

    tok = server.token("viewer", handle="bea")
    with server.rt.db.read() as s:
        digests = [t.digest for t in s.scalars(select(Token))]
    assert tok not in digests
    assert all(len(d) == 64 for d in digests)


def test_oversized_body_is_413(server: LiveServer) -> None:
    admin = server.admin()
    big = b"[" + b"1," * (server.settings.max_body_bytes // 2) + b"1]"
    r = admin.post("/v1/tokens", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
