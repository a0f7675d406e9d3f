"""The short-lived principal cache in codeblue.http: a revoked token stops working at once in this process."""

from __future__ import annotations

from codeblue.http import principal_cache
from tests.support import LiveServer


def test_revoked_token_is_refused_immediately_despite_the_cache(sqlite_server: LiveServer) -> None:
    admin = sqlite_server.admin()
    r = admin.post("/v1/tokens", json={"handle": "cachey", "roles": ["responder"]})
    assert r.status_code == 201
    tok, tok_id = r.json()["token"], r.json()["id"]
    c = sqlite_server.client()
    h = {"Authorization": f"Bearer {tok}"}
    for _ in range(3):  # the second and third requests are served from the cache
        assert c.get("/v1/me", headers=h).status_code == 200
    assert any(p.handle == "cachey" for p, _exp in principal_cache._items.values())
    assert tok not in str(principal_cache._items)  # keyed by digest, never the token itself
    assert admin.delete(f"/v1/tokens/{tok_id}").status_code == 204
    r = c.get("/v1/me", headers=h)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = c.post("/v1/incidents", json={"title": "x"}, headers=h)
    assert r.status_code == 401


def test_a_lookup_racing_a_revocation_is_not_cached() -> None:
    from codeblue.auth.service import Principal

    p = Principal(1, "al", "Al", frozenset({"viewer"}), 1)
    gen = principal_cache.generation
    principal_cache.clear()  # a revocation lands while the lookup was in flight
    principal_cache.put("digest-x", p, gen)
    assert principal_cache.get("digest-x") is None
    principal_cache.put("digest-x", p, principal_cache.generation)
    assert principal_cache.get("digest-x") == p
    principal_cache.clear()
