from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeblue.clock import ManualClock
from tests.support import LiveServer, database_url, make_settings

# Near real time: SDK guards judge control expiry by their own clock.
T0 = float(int(time.time()))


class RB:
    """A live server on a manual clock with background jobs off: tests drive the executor themselves."""

    def __init__(self, srv: LiveServer, clock: ManualClock) -> None:
        self.srv = srv
        self.clock = clock
        self.resp = srv.client("responder", handle="rita")
        self.ingest = srv.client("ingest", handle="app")

    def tick(self, rounds: int = 3) -> None:
        from codeblue.runbooks import executor

        for _ in range(rounds):
            executor.tick(self.srv.rt)

    def push_config(self, kind: str, name: str, *versions: str, workflows: list[str]) -> None:
        for v in versions:
            r = self.resp.post(f"/v1/configs/{kind}/{name}/versions",
                               json={"version": v, "content": f"{name} {v}", "workflows": workflows})
            assert r.status_code in (200, 201), r.text
            r = self.resp.post(f"/v1/configs/{kind}/{name}/activate", json={"version": v})
            assert r.status_code in (200, 201), r.text

    def events(self, evs: list[dict[str, Any]]) -> None:
        r = self.ingest.post("/v1/events", json=evs)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(evs), r.text

    def open(self, **body: Any) -> dict[str, Any]:
        r = self.resp.post("/v1/incidents", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def runs(self, incident_id: int) -> list[dict[str, Any]]:
        r = self.resp.get(f"/v1/incidents/{incident_id}/runbook")
        assert r.status_code == 200, r.text
        return list(r.json()["runs"])

    def timeline(self, incident_id: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.resp.get(f"/v1/incidents/{incident_id}/timeline", params={"after_seq": after}).json()
            out.extend(page["entries"])
            if not page.get("next_after_seq"):
                return out
            after = page["next_after_seq"]

    def snapshot(self) -> dict[str, Any]:
        return dict(self.resp.get("/v1/controls/snapshot").json())


def response(t: float, *, grounded: bool = True, wf: str = "refund-desk", subject: str = "acct-1",
             versions: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    return {"time": t, "workflow": wf, "kind": "response", "status": 200, "grounded": grounded, "refusal": False,
            "subject": subject, "trace_id": f"t{t}-{subject}", "versions": versions or {}, **kw}


@pytest.fixture
def rb(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[RB]:
    """Shipped runbooks, or those of a `@pytest.mark.runbooks({"file.yaml": text})` marker."""
    marker = request.node.get_closest_marker("runbooks")
    extra: dict[str, Any] = {}
    if marker is not None:
        d = tmp_path / "runbooks"
        d.mkdir()
        for name, text in marker.args[0].items():
            (d / name).write_text(text)
        extra["runbooks_dir"] = d
    with database_url(backend, tmp_path) as url:
        clock = ManualClock(T0)
        srv = LiveServer(make_settings(url, tmp_path, workers=False, **extra), clock).start()
        try:
            yield RB(srv, clock)
        finally:
            srv.stop()


@pytest.fixture
def client_for() -> Iterator[Any]:
    made: list[httpx.Client] = []

    def make(srv: LiveServer, *roles: str, handle: str) -> httpx.Client:
        c = srv.client(*roles, handle=handle)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
