"""The first 15 minutes, end to end on a live server: a replayed scenario's events arrive through the
public intake, the vitals monitor opens the incident, the shipped runbook contains it, and a connected SDK
Guard enforces the containment."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from codeblue.clock import ManualClock
from codeblue.runbooks import executor
from codeblue.sim import generate
from tests.support import LiveServer, make_settings


def test_replayed_refund_scenario_is_detected_contained_and_enforced(tmp_path: Path) -> None:
    from codeblue.sdk import Guard

    run = generate("refund-prompt", seed=2)
    (fault,) = run.truth["faults"]
    onset = fault["onset"]
    # Shift the stream so its onset was ten minutes ago: the Guard judges expiry by its own clock.
    delta = float(int(time.time() - 600 - onset))
    events = [{**e, "time": e["time"] + delta} for e in run.events
              if e["workflow"] == "refund-desk" and onset - 5400 <= e["time"] < onset + 900]
    onset += delta
    clock = ManualClock(events[0]["time"] - 1)
    srv = LiveServer(make_settings(f"sqlite:///{tmp_path}/cb.db", tmp_path, workers=False), clock).start()
    guard = None
    try:
        resp = srv.client("responder", handle="rita")
        ingest = srv.client("ingest", handle="app")
        for v in ("v41", "v42"):
            r = resp.post("/v1/configs/prompt/refund-assistant/versions",
                          json={"version": v, "content": f"refund prompt {v}", "workflows": ["refund-desk"]})
            assert r.status_code == 201, r.text
        assert resp.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v41"}).status_code == 200
        guard = Guard(url=srv.url, token=srv.token("ingest", handle="app"), service="support-bot", lkg_path=None)
        assert guard.wait_ready(timeout=10)

        detector = srv.rt.extras["signals.detector"]
        rolled_out = False
        incident: dict[str, Any] | None = None
        i = 0
        t = events[0]["time"]
        while i < len(events) and incident is None:
            step = 30.0 if t < onset - 120 else 10.0
            t += step
            if not rolled_out and t >= onset:
                clock.set(onset)
                r = resp.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v42"})
                assert r.status_code == 200, r.text
                rolled_out = True
            batch = []
            while i < len(events) and events[i]["time"] < t:
                batch.append(events[i])
                i += 1
            if batch:
                r = ingest.post("/v1/events", json=batch)
                assert r.status_code == 200 and r.json()["accepted"] == len(batch), r.text
            clock.set(t)
            detector.run(srv.rt)
            for _ in range(4):
                executor.tick(srv.rt)
            found = resp.get("/v1/incidents", params={"workflow": "refund-desk"}).json()
            items = found["incidents"] if isinstance(found, dict) else found
            if items:
                incident = items[0]

        assert incident is not None, "the vitals monitor opened no incident"
        assert incident["opened_at"] - onset <= 300, "detected within five minutes of stream time"
        inc = resp.get(f"/v1/incidents/{incident['id']}").json()
        assert inc["failure_type"] in ("answer_quality", "account_action")
        top = inc["suspects"][0]
        assert (top["kind"], top["name"], top["version"]) == ("prompt", "refund-assistant", "v42")
        assert inc["status"] == "contained"

        snap = resp.get("/v1/controls/snapshot").json()
        kills = [c for c in snap["controls"] if c["type"] == "kill_switch"]
        assert kills and kills[0]["scope"]["action"] == "issue_refund"
        assert snap["configs"]["prompt/refund-assistant"]["stable"] == "v41", "the prompt was rolled back"

        deadline = time.time() + 5
        while guard.decide("refund-desk", action="issue_refund").allowed and time.time() < deadline:
            time.sleep(0.01)
        d = guard.decide("refund-desk", action="issue_refund")
        assert not d.allowed and d.incident_id == inc["id"]
        assert guard.versions("refund-desk", key="acct-00001").get("prompt/refund-assistant") == "v41"
    finally:
        if guard is not None:
            guard.close()
        srv.stop()
