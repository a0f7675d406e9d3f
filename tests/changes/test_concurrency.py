"""Concurrent activations of one config, from real threads over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from typing import Any

from sqlalchemy import func, select

from codeblue.changes.model import ConfigState
from tests.support import LiveServer

P = "/v1/configs/prompt/refund-assistant"


def test_concurrent_activations_never_leave_two_active_versions(server: LiveServer) -> None:
    c = server.client("responder")
    for i in range(6):
        assert c.post(f"{P}/versions", json={"content": f"text {i}"}).status_code == 201
    assert c.post(f"{P}/activate", json={"version": "v1"}).status_code == 200
    first_change = c.get("/v1/changes").json()[0]["id"]

    barrier = threading.Barrier(10)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        with server.client("responder", handle=f"r{seed}") as cc:
            barrier.wait()
            for _ in range(8):
                roll = rnd.random()
                if roll < 0.2:
                    r = cc.post(f"{P}/rollback", json={})
                else:
                    body: dict[str, Any] = {"version": f"v{rnd.randint(1, 6)}"}
                    if roll < 0.5:
                        body["fraction"] = rnd.choice([0.1, 0.5])
                    r = cc.post(f"{P}/activate", json=body)
                assert r.status_code in (200, 409), r.text  # a refusal is fine; a 500 or a lost update is not
                with lock:
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) > 0

    # Replaying the change log from the first activation must reproduce every step: each change starts
    # from the state the previous one left, so no two activations interleaved.
    log = [ch for ch in reversed(c.get("/v1/changes", params={"limit": 5000}).json()) if ch["id"] >= first_change]
    assert len(log) == statuses.count(200) + 1
    stable: str | None = None
    candidate: str | None = None
    for ch in log:
        if ch["type"] == "activate" and ch["fraction"] == 1.0:
            assert ch["from"] == stable, ch
            stable, candidate = ch["to"], None
        elif ch["type"] == "activate":
            assert ch["from"] == stable and candidate in (None, ch["to"]), ch
            candidate = ch["to"]
        else:
            if candidate is not None and ch["from"] == candidate:
                assert ch["to"] == stable, ch
            else:
                assert ch["from"] == stable, ch
                stable = ch["to"]
            candidate = None
    st = c.get(P).json()
    assert (st["stable"], st["candidate"]) == (stable, candidate)
    snap = c.get("/v1/controls/snapshot").json()["configs"]["prompt/refund-assistant"]
    assert (snap["stable"], snap["candidate"]) == (stable, candidate)
    assert stable is not None and stable != candidate
    with server.rt.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ConfigState)) == 1


def test_concurrent_first_pushes_create_one_config_with_distinct_versions(server: LiveServer) -> None:
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def worker(i: int) -> None:
        with server.client("responder", handle=f"p{i}") as cc:
            barrier.wait()
            r = cc.post("/v1/configs/model_alias/answerer/versions", json={"content": {"model": f"m{i}"}})
            codes.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [201] * 8
    st = server.client("viewer").get("/v1/configs/model_alias/answerer").json()
    assert [v["version"] for v in st["versions"]] == [f"v{i}" for i in range(1, 9)]
