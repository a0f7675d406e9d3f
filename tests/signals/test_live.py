"""Live: events posted to a real server (HTTP intake on loopback) open an incident through the detector job,
with triage (type, severity, harm, suspects from the change log) on the timeline; a user report counts as a
complaint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from codeblue.clock import ManualClock
from codeblue.sim import Fault, Plan, Rates, WorkflowSpec, simulate
from codeblue.sim.scenarios import START
from tests.support import LiveServer, make_settings

WF = "support-desk"


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[tuple[LiveServer, ManualClock]]:
    clock = ManualClock(START)
    cfg = tmp_path / "detect.yaml"
    cfg.write_text("detector:\n  warmup: 10m\n")
    srv = LiveServer(make_settings(db_url, tmp_path, workers=False, detect_config=cfg), clock=clock).start()
    try:
        yield srv, clock
    finally:
        srv.stop()


def test_posted_events_open_an_incident_with_triage_on_the_timeline(live: tuple[LiveServer, ManualClock]) -> None:
    from codeblue.changes import service as changes

    srv, clock = live
    rt = srv.rt
    detector = rt.extras["signals.detector"]
    onset = START + 40 * 60
    wf = WorkflowSpec(WF, {"policy_template/safety-policy": "s5"}, peak_rps=3.0, rates=Rates(refusal=0.03))
    fault = Fault(onset, WF, "refusal_rate", "policy_refusal", {"refusal": 0.3}, "refusing",
                  match=lambda r: r.versions.get("policy_template/safety-policy") == "s6")
    plan = Plan("live", START, onset + 600, [wf], [
        {"id": "x", "time": onset, "type": "activate", "kind": "policy_template", "name": "safety-policy",
         "from": "s5", "to": "s6", "fraction": 1.0, "environment": "production", "workflows": [WF],
         "actor": "t", "incident": None, "note": ""}], [fault], drift=False)
    events = simulate(plan, 4)
    with rt.db.write() as s:
        for v in ("s5", "s6"):
            changes.push_version(s, rt, kind="policy_template", name="safety-policy", version=v,
                                 content=f"policy {v}", author="risk", workflows=[WF])
        changes.activate(s, rt, kind="policy_template", name="safety-policy", version="s5", actor="risk")
    ingest = srv.client("ingest")
    viewer = srv.client("viewer")
    opened_at = None
    i = 0
    t = START
    while t < plan.end:
        t += 10.0
        batch = []
        while i < len(events) and events[i]["time"] < t:
            batch.append(events[i])
            i += 1
        if t >= onset and t - 10.0 < onset:
            clock.set(onset)
            with rt.db.write() as s:
                changes.activate(s, rt, kind="policy_template", name="safety-policy", version="s6", actor="risk")
        if batch:
            r = ingest.post("/v1/events", content=b"\n".join(orjson.dumps(e) for e in batch),
                            headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == len(batch)
        clock.set(t)
        ups = detector.run(rt)
        if any(u.kind == "opened" for u in ups) and opened_at is None:
            opened_at = t
    assert opened_at is not None and onset < opened_at <= onset + 300
    incs = viewer.get("/v1/incidents").json()
    items = incs["items"] if isinstance(incs, dict) else incs
    mine = [x for x in items if x["source"] == "detector"]
    assert len(mine) == 1, items
    inc = mine[0]
    assert inc["workflows"] == [WF]
    assert inc["failure_type"] == "policy_refusal"
    assert inc["harm"]["requests"] > 0 and inc["harm"]["subjects"] > 0
    top = inc["suspects"][0]
    assert (top["kind"], top["name"], top["version"]) == ("policy_template", "safety-policy", "s6")
    assert top["score"] >= 0.5 and top["rollback"] is True
    tl = viewer.get(f"/v1/incidents/{inc['id']}/timeline").json()
    entries = tl["entries"] if isinstance(tl, dict) else tl
    kinds = [e["kind"] for e in entries]
    assert "opened" in kinds and "triage" in kinds
    triage = next(e for e in entries if e["kind"] == "triage")
    assert "refusal_rate" in triage["text"] and "safety-policy" in triage["text"]
    assert all(e["actor"] == "system:detector" for e in entries if e["kind"] in ("triage", "evidence"))
    # A user report on the incident is counted by the pipeline as a complaint on its workflow.
    before = rt.extras["signals.pipeline"].events
    r = srv.client("responder").post(f"/v1/incidents/{inc['id']}/reports",
                                     json={"text": "the bot refuses to answer", "channel": "email"})
    assert r.status_code == 201, r.text
    assert rt.extras["signals.pipeline"].events == before + 1
