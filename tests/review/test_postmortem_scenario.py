"""A replayed scenario with a known onset and change, through a real server: the sim's events are posted at
their own time (the server clock follows them), the prompt change goes through the config API, responders open,
acknowledge, roll back and contain the incident. The post-mortem must name the change, compute the detection
delay and the harm before containment that the replay implies, and list the indicator that moved before the
incident opened as a missed signal."""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import pytest

from codeblue.clock import ManualClock
from codeblue.sim import SimRun, generate
from codeblue.sim.scenarios import ONSET, START
from tests.review.helpers import move, open_incident, post_events
from tests.support import LiveServer, make_settings

WF = "refund-desk"
KEY = "prompt/refund-assistant"
DETECT = ONSET + 15 * 60
ACK = DETECT + 3 * 60
CONTAIN = ONSET + 32 * 60
END = ONSET + 60 * 60


@functools.lru_cache(maxsize=1)
def scenario() -> SimRun:
    return generate("refund-prompt", 0)


def replay_events() -> list[dict[str, Any]]:
    """The scenario's refund-desk events; after the rollback the old prompt serves (and the fault stops)."""
    rng = random.Random(7)
    out = []
    for e in scenario().events:
        if e["workflow"] != WF or e["time"] >= END:
            continue
        e = dict(e)
        if e["time"] >= CONTAIN and (e.get("versions") or {}).get(KEY) == "v42":
            e["versions"] = {**e["versions"], KEY: "v41"}
            if e.get("grounded") is False and rng.random() > 0.04 / 0.30:
                e["grounded"] = True
            if e["kind"] == "complaint" and rng.random() > 0.2:
                continue
        out.append(e)
    return out


def harmful_in(events: list[dict[str, Any]], since: float, until: float) -> tuple[int, int]:
    """Ungrounded answers and complaints (the answer-quality numerators) in [since, until)."""
    n = 0
    subjects = set()
    for e in events:
        if since <= e["time"] < until and ((e["kind"] == "response" and e.get("grounded") is False)
                                           or e["kind"] == "complaint"):
            n += 1
            subjects.add(e["subject"])
    return n, len(subjects)


@pytest.fixture
def replayed(db_url: str, tmp_path: Path) -> Any:
    events = replay_events()
    truth = scenario().truth["faults"][0]
    assert truth["onset"] == ONSET and truth["change"]["version"] == "v42"
    clock = ManualClock(START - 120)
    srv = LiveServer(make_settings(db_url, tmp_path, workers=False), clock=clock).start()
    try:
        with srv.client("responder", handle="release-bot") as rel, srv.client("ingest") as ing, \
                srv.client("responder", handle="ana") as ana, srv.client("lead", handle="lee") as lee:
            for v in ("v41", "v42"):
                r = rel.post("/v1/configs/prompt/refund-assistant/versions",
                             json={"version": v, "content": f"refund prompt {v}", "workflows": [WF]})
                assert r.status_code == 201, r.text
            assert rel.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v41"}).status_code == 200
            # a deploy in the same morning touches the workflow too (no served-version evidence against it)
            deploy = next(c for c in scenario().changes if c["kind"] == "deploy")
            r = rel.post("/v1/changes", json={k: deploy[k] for k in ("time", "kind", "name", "from", "to",
                                                                      "workflows", "note")})
            assert r.status_code == 201, r.text

            def feed(until: float) -> None:
                batch = [e for e in events if feed.at <= e["time"] < until]  # type: ignore[attr-defined]
                post_events(ing, batch)
                feed.at = until  # type: ignore[attr-defined]
                clock.set(until)

            feed.at = 0.0  # type: ignore[attr-defined]
            feed(ONSET)
            r = rel.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v42", "note": "new tone"})
            assert r.status_code == 200, r.text
            feed(DETECT)
            inc = open_incident(ana, title="refund answers cite the wrong policy", workflows=[WF],
                                failure_type="answer_quality", severity="SEV2")
            iid = inc["id"]
            feed(ACK)
            assert ana.post(f"/v1/incidents/{iid}/ack").status_code == 200
            feed(CONTAIN)
            r = ana.post("/v1/configs/prompt/refund-assistant/rollback", json={"incident_id": iid,
                                                                               "note": "roll back v42"})
            assert r.status_code == 200, r.text
            move(ana, iid, "contained")
            feed(END)
            yield srv, iid, events, lee
    finally:
        srv.stop()


def test_postmortem_names_trigger_delay_harm_and_missed_signal(replayed: Any) -> None:
    srv, iid, events, _lead = replayed
    with srv.client("viewer") as v:
        r = v.get(f"/v1/incidents/{iid}/postmortem")
        assert r.status_code == 200, r.text
        pm = r.json()
    f = pm["facts"]
    md = pm["markdown"]
    assert pm["generated"] is True and pm["state"] == "draft"

    # the trigger: the prompt change, by served-version evidence
    trig = f["trigger"]
    assert trig is not None and trig["key"] == KEY and trig["version"] == "v42"
    assert trig["change"]["time"] == ONSET and trig["rate_with"] > 3 * trig["rate_before"]
    assert trig["served"] > 1000 and trig["served_other"] == 0
    others = {c["key"]: c for c in f["trigger_candidates"][1:]}
    assert others["deploy/support-bot"]["evidence"] is False
    assert "**prompt/refund-assistant v41 → v42**" in md

    # onset estimated from the stored signals: within one 5-minute bucket of the truth
    c = f["containment"]
    assert abs(c["onset"] - ONSET) <= 300
    assert c["detected"] == DETECT
    assert c["time_to_detect_s"] == DETECT - c["onset"]
    assert abs(c["time_to_detect_s"] - (DETECT - ONSET)) <= 300
    assert c["time_to_acknowledge_s"] == ACK - DETECT
    assert c["time_to_contain_s"] == CONTAIN - DETECT

    # harm before containment matches a count over the replayed events from the same onset
    harmful, subjects = harmful_in(events, c["onset"], CONTAIN)
    assert c["harm_before_containment"] == harmful and c["subjects_before_containment"] == subjects
    true_harm, _ = harmful_in(events, ONSET, CONTAIN)
    assert abs(harmful - true_harm) <= 0.2 * true_harm
    assert f"Harmful requests before containment: **{harmful}**" in md

    # the missed signal: grounding failures moved before the incident opened; the backtest says how early
    miss = next(x for x in f["findings"] if x["indicator"] == "grounding_failure_rate" and x["workflow"] == WF)
    assert miss["missed"] is True
    assert ONSET < miss["first_deviation"] <= ONSET + 600 and miss["lead_s"] >= 300
    strict = miss["backtests"][0]
    assert strict["fires_at"] is not None and strict["earlier_by_s"] >= 300
    assert strict["false_alarms"] >= 0 and strict["span_days"] > 0.1
    assert "left its baseline" in md and "grounding_failure_rate" in md
    assert "History analysed for refund-desk" in md

    # what worked: the rollback (grounding failures fell after it)
    steps = {s["kind"]: s for s in f["steps"]}
    assert steps["change.rollback"]["verdict"] == "fell"
    assert "## What worked" in md and "Steps after which `grounding_failure_rate` fell" in md
    for section in ("## Summary", "## Timeline", "## Impact", "## Trigger", "## Missed signals",
                    "## Containment quality", "## Corrective actions"):
        assert section in md
    assert "Verified:" in md

    # Markdown straight from the API, as the CLI writes it
    with srv.client("viewer") as v:
        r = v.get(f"/v1/incidents/{iid}/postmortem", params={"format": "md"})
        assert r.headers["content-type"].startswith("text/markdown") and r.text.startswith("# Post-mortem")

