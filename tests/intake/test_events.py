"""POST/GET /v1/events against a real server on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from codeblue.signals import store
from codeblue.signals.model import EventVersion, StoredEvent
from tests.support import LiveServer, make_settings

T0 = 1_764_000_000.0


def ev(i: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "time": T0 + i, "workflow": "refund-desk", "kind": "response", "subject": f"u{i % 7}",
        "versions": {"prompt/refund-assistant": "v42" if i % 2 else "v41", "model_alias/main": "gpt-x"},
        "status": 200, "latency_ms": 120.5, "refusal": False,
    }
    base.update(kw)
    return base


def stored(srv: LiveServer, workflow: str = "refund-desk") -> list[dict[str, Any]]:
    with srv.rt.db.read() as s:
        return [orjson.loads(b) for b in s.scalars(
            select(StoredEvent.body).where(StoredEvent.workflow == workflow).order_by(StoredEvent.id))]


def test_array_ndjson_and_gzip_are_stored(server: LiveServer) -> None:
    c = server.client("ingest")
    r = c.post("/v1/events", json=[ev(i) for i in range(10)])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 10, "rejected": []}

    nd = b"\n".join(orjson.dumps(ev(i)) for i in range(10, 15)) + b"\n"
    r = c.post("/v1/events", content=nd, headers={"content-type": "application/x-ndjson"})
    assert r.json() == {"accepted": 5, "rejected": []}

    # sniffed: no content type, NDJSON with a blank line and CRLF endings
    nd2 = orjson.dumps(ev(15)) + b"\r\n\r\n" + orjson.dumps(ev(16))
    r = c.post("/v1/events", content=nd2, headers={"content-type": ""})
    assert r.json() == {"accepted": 2, "rejected": []}

    body = gzip.compress(orjson.dumps([ev(i, time=f"2025-11-24T16:00:{i - 10:02d}Z") for i in range(17, 20)]))
    r = c.post("/v1/events", content=body,
               headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.json() == {"accepted": 3, "rejected": []}

    rows = stored(server)
    assert len(rows) == 20
    assert rows[0]["versions"] == {"prompt/refund-assistant": "v41", "model_alias/main": "gpt-x"}
    assert rows[-1]["time"] == 1764000009.0  # RFC 3339 normalised to unix seconds
    with server.rt.db.read() as s:
        keys = {(v.key, v.version) for v in s.scalars(select(EventVersion))}
    assert ("prompt/refund-assistant", "v42") in keys and ("model_alias/main", "gpt-x") in keys


def test_mixed_batch_keeps_good_and_names_each_bad(server: LiveServer) -> None:
    c = server.client("ingest")
    batch = [ev(0), ev(1, kind="reply"), ev(2), {"workflow": "refund-desk", "kind": "response"},
             ev(4, latency_ms=-3), "not an object", ev(6, versions={"noslash": "v1"}), ev(7)]
    r = c.post("/v1/events", json=batch)
    assert r.status_code == 200
    out = r.json()
    assert out["accepted"] == 3
    assert [(e["index"], e["field"]) for e in out["rejected"]] == [
        (1, "kind"), (3, "time"), (4, "latency_ms"), (5, ""), (6, "versions.noslash")]
    assert "reply" in out["rejected"][0]["reason"]
    assert all("line" not in e for e in out["rejected"])
    assert [e["time"] for e in stored(server)] == [T0, T0 + 2, T0 + 7]

    lines = [orjson.dumps(ev(10)), b"", orjson.dumps(ev(11, status="500")), b"{broken json",
             orjson.dumps(ev(13, workflow=""))]
    r = c.post("/v1/events", content=b"\n".join(lines), headers={"content-type": "application/x-ndjson"})
    out = r.json()
    assert out["accepted"] == 1
    assert [(e["index"], e["line"], e["field"]) for e in out["rejected"]] == [
        (1, 3, "status"), (2, 4, ""), (3, 5, "workflow")]
    assert "malformed JSON" in out["rejected"][1]["reason"]
    assert len(stored(server)) == 4


def test_nothing_accepted_is_422_problem(server: LiveServer) -> None:
    c = server.client("ingest")
    r = c.post("/v1/events", json=[ev(0, kind="nope"), ev(1, refusal="yes"), ev(2, subject="a\x00b")])
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    p = r.json()
    assert p["accepted"] == 0
    assert [(e["index"], e["field"]) for e in p["rejected"]] == [(0, "kind"), (1, "refusal"), (2, "subject")]
    assert p["field"] == "[0].kind"

    r = c.post("/v1/events", content=b"[{\"time\": 1,,]", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["field"] == "body" and "line 1" in r.json()["detail"]
    r = c.post("/v1/events", content=b"  ", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = c.post("/v1/events", content=b"<xml/>", headers={"content-type": "application/xml"})
    assert r.status_code == 415
    r = c.post("/v1/events", content=b"[]", headers={"content-type": "application/json", "content-encoding": "br"})
    assert r.status_code == 415
    r = c.post("/v1/events", content=b"not gzip", headers={"content-type": "application/json",
                                                            "content-encoding": "gzip"})
    assert r.status_code == 422 and "gzip" in r.json()["detail"]
    assert stored(server) == []


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[LiveServer]:
    srv = LiveServer(make_settings(f"sqlite:///{tmp_path}/cb.db", tmp_path, intake_max_bytes=64 * 1024)).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_oversized_and_gzip_bomb_are_413(small_server: LiveServer) -> None:
    c = small_server.client("ingest")
    big = orjson.dumps([ev(i, input="x" * 500) for i in range(200)])  # ~130 kB > 64 kB
    r = c.post("/v1/events", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"

    # 1 GB of zeros would inflate from ~1 MB; 20 MB from ~20 kB is enough to show the limit holds after gunzip
    bomb = gzip.compress(b"[" + b" " * (20 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 64 * 1024
    r = c.post("/v1/events", content=bomb, headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 413
    assert "inflates" in r.json()["detail"]

    # the same events in a small enough body are fine
    r = c.post("/v1/events", content=gzip.compress(orjson.dumps([ev(i) for i in range(50)])),
               headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.json()["accepted"] == 50
    assert len(stored(small_server)) == 50


def test_redaction_before_storage(server: LiveServer) -> None:
    c = server.client("ingest")
    e = ev(0, input="refund to jane.doe@example.com please, card 4111 1111 1111 1111",
           output="Done, jane.doe@example.com", attributes={"note": "call bob@corp.example", "n": 3,
                                                            "deep": {"cards": ["5500-0000-0000-0004"]}})
    c2 = ev(1, kind="complaint", text="it charged 4111111111111111 twice, mail me at x@y.io")
    r = c.post("/v1/events", json=[e, c2])
    assert r.json()["accepted"] == 2
    with server.rt.db.read() as s:
        bodies = list(s.scalars(select(StoredEvent.body).order_by(StoredEvent.id)))
    raw = "".join(bodies)
    for secret in ("jane.doe@example.com", "4111 1111 1111 1111", "bob@corp.example", "5500-0000-0000-0004",
                   "4111111111111111", "x@y.io"):
        assert secret not in raw
    first = orjson.loads(bodies[0])
    assert first["input"] == "refund to [redacted:email] please, card [redacted:card]"
    assert first["attributes"] == {"note": "call [redacted:email]", "n": 3, "deep": {"cards": ["[redacted:card]"]}}
    assert orjson.loads(bodies[1])["text"] == "it charged [redacted:card] twice, mail me at [redacted:email]"
    # and what the audit reads back is redacted too
    page = server.client("viewer").get("/v1/events", params={"workflow": "refund-desk"}).json()
    assert "jane.doe" not in orjson.dumps(page).decode()


def test_retention_deletes_old_events(server: LiveServer) -> None:
    now = server.rt.clock.now()
    c = server.client("ingest")
    old = [ev(i, time=now - 40 * 86400 + i) for i in range(5)]
    recent = [ev(i, time=now - 86400 + i) for i in range(3)]
    assert c.post("/v1/events", json=old + recent).json()["accepted"] == 8
    deleted = store.apply_retention(server.rt, batch=2)  # several small batches
    assert deleted == 5
    assert [e["time"] for e in stored(server)] == [r["time"] for r in recent]
    assert store.apply_retention(server.rt) == 0


def test_query_by_time_workflow_version_with_cursor(server: LiveServer) -> None:
    c = server.client("ingest")
    batch = [ev(i) for i in range(30)] + [ev(i, workflow="repayment-advice", kind="action", target="acct-9")
                                          for i in range(5)]
    assert c.post("/v1/events", json=batch).json()["accepted"] == 35
    v = server.client("viewer")
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"workflow": "refund-desk", "since": T0 + 4, "until": T0 + 24,
                                  "version": "prompt/refund-assistant=v42", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = v.get("/v1/events", params=params).json()
        got += page["events"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [e["time"] - T0 for e in got] == [5, 7, 9, 11, 13, 15, 17, 19, 21, 23]
    assert all(e["versions"]["prompt/refund-assistant"] == "v42" and "id" in e for e in got)
    # two version filters AND together; RFC 3339 bounds work too
    page = v.get("/v1/events", params={"workflow": "refund-desk", "since": "2025-11-24T16:00:00Z",
                                       "version": ["prompt/refund-assistant=v41", "model_alias/main=gpt-x"],
                                       "limit": 100}).json()
    assert len(page["events"]) == 15
    odd = "tab\there, back\\slash, new\nline, ünïcode 🚑"
    assert c.post("/v1/events", json=[ev(40, subject=odd, session_id=odd, trace_id="t\r1")]).json()["accepted"] == 1
    page = v.get("/v1/events", params={"workflow": "refund-desk", "subject": odd}).json()
    assert [e["session_id"] for e in page["events"]] == [odd] and page["events"][0]["trace_id"] == "t\r1"
    page = v.get("/v1/events", params={"workflow": "repayment-advice", "kind": "action"}).json()
    assert len(page["events"]) == 5 and page["events"][0]["target"] == "acct-9"
    r = v.get("/v1/events", params={"version": "prompt-v42"})
    assert r.status_code == 422 and r.json()["field"] == "version"
    r = v.get("/v1/events", params={"cursor": "garbage!"})
    assert r.status_code == 422 and r.json()["field"] == "cursor"
    with server.rt.db.read() as s:
        p = store.query_events(s, workflow="refund-desk", since=None, until=None, kinds=["response"], limit=1000)
    assert len(p.events) == 31 and p.next_cursor is None


def test_roles(sqlite_server: LiveServer) -> None:
    srv = sqlite_server
    body = [ev(0)]
    assert srv.client().post("/v1/events", json=body).status_code == 401
    r = srv.client("viewer").post("/v1/events", json=body)
    assert r.status_code == 403 and "ingest" in r.json()["detail"]
    assert srv.client("responder").post("/v1/events", json=body).status_code == 403
    ing = srv.client("ingest")
    assert ing.post("/v1/events", json=body).status_code == 200
    # ingest may only send: no reading events, alerts, tokens
    assert ing.get("/v1/events").status_code == 403
    assert ing.get("/v1/alerts").status_code == 403
    assert ing.post("/v1/tokens", json={"handle": "x", "roles": ["admin"]}).status_code == 403
    assert srv.client("viewer").get("/v1/events").status_code == 200
