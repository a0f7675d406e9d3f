"""Complaint clusters as a detector input: a themed complaint burst raises a `complaint_cluster` alert whose
evidence carries the theme's representative texts (replay and live, on the incident); a burst of generic
complaints does not; two unrelated themes on one workflow are two clusters."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from codeblue.clock import ManualClock
from codeblue.sim import texts
from codeblue.sim.scenarios import START
from tests.signals.helpers import replay_events
from tests.support import LiveServer, make_settings

WF = "refund-desk"
BURST_AT = START + 2 * 3600.0


def _stream(rng: random.Random, *, until: float, burst: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """Two hours of healthy responses (2/s) with a background of generic complaints (~1/min), plus `burst`."""
    out: list[dict[str, Any]] = []
    t = START
    n = 0
    while t < until:
        t += rng.expovariate(2.0)
        n += 1
        subj = f"u{rng.randrange(5000)}"
        out.append({"time": round(t, 3), "workflow": WF, "kind": "response", "subject": subj, "status": 200,
                    "latency_ms": rng.lognormvariate(6.5, 0.3), "grounded": rng.random() > 0.03,
                    "versions": {"prompt/refund-assistant": "v41"}, "trace_id": f"t{n}"})
        if rng.random() < 1 / 120:
            out.append({"time": round(t + 30, 3), "workflow": WF, "kind": "complaint", "subject": subj,
                        "text": rng.choice(texts.GENERIC_COMPLAINTS), "versions": {"prompt/refund-assistant": "v41"}})
    for i, (bt, text) in enumerate(burst):
        out.append({"time": round(bt, 3), "workflow": WF, "kind": "complaint", "subject": f"b{i}", "text": text,
                    "versions": {"prompt/refund-assistant": "v41"}})
    out.sort(key=lambda e: e["time"])
    return [e for e in out if e["time"] < until]


def _themed(rng: random.Random, theme: str, n: int, *, start: float = BURST_AT, span: float = 600.0) -> list[tuple[float, str]]:
    return [(start + span * k / n, rng.choice(texts.THEMES[theme]).format(item=rng.choice(texts.ITEMS)))
            for k in range(n)]


def _cluster_alerts(res: Any) -> list[Any]:
    return [a for g in res.groups for a in g.alerts if a.indicator == "complaint_cluster"]


def test_a_themed_complaint_burst_raises_a_cluster_alert_with_representatives() -> None:
    rng = random.Random(11)
    burst = _themed(rng, "refund_wrong", 24)
    res = replay_events(_stream(rng, until=BURST_AT + 1800, burst=burst))
    alerts = _cluster_alerts(res)
    assert len(alerts) == 1, [a.evidence for g in res.groups for a in g.alerts]
    a = alerts[0]
    assert BURST_AT < a.fired_at <= BURST_AT + 600
    assert a.failure_type == "answer_quality"
    assert a.cluster is not None
    themed = {text for _, text in burst}
    reps = a.cluster["representatives"]
    assert reps and set(reps) <= themed
    assert "refund" in a.cluster["terms"]
    assert a.cluster["count_recent"] >= 8 and a.cluster["count_recent"] > 3 * a.cluster["baseline_rate"]
    assert "complaint cluster [refund" in a.evidence and reps[0] in a.evidence
    # One incident, opened by the theme; its triage carries the cluster for the incident page.
    (g,) = [g for g in res.groups if any(x.indicator == "complaint_cluster" for x in g.alerts)]
    assert g.failure_type == "answer_quality" and g.alerts[0] is a
    assert g.triage is not None
    assert [c["cluster_id"] for c in g.triage.complaint_clusters] == [a.cluster["cluster_id"]]
    report = res.report()
    inc = next(i for i in report["incidents"] if i["id"] == g.id)
    assert inc["indicator"] == "complaint_cluster"
    assert inc["complaint_clusters"][0]["representatives"] == g.clusters[a.cluster["cluster_id"]]["representatives"]
    opened = next(u for u in res.updates if u.group == g.id and u.kind == "opened")
    assert opened.alert.as_dict()["cluster"]["representatives"] == reps
    assert opened.triage.as_dict()["complaint_clusters"][0]["cluster_id"] == a.cluster["cluster_id"]
    # ... and resolves once the theme is back to its baseline.
    assert any(u.kind == "resolved" and u.group == g.id for u in res.updates)


def test_a_burst_of_generic_complaints_does_not_raise_a_cluster_alert() -> None:
    rng = random.Random(12)
    # 4× the background of generic grumbles for 15 minutes: every generic "theme" grows alike.
    burst = [(BURST_AT + 900 * k / 30, rng.choice(texts.GENERIC_COMPLAINTS)) for k in range(30)]
    res = replay_events(_stream(rng, until=BURST_AT + 1800, burst=burst))
    assert _cluster_alerts(res) == []
    # the same number of complaints on one theme does page: the test can fail
    rng = random.Random(12)
    res = replay_events(_stream(rng, until=BURST_AT + 1800, burst=_themed(rng, "tool_broken", 30, span=900)))
    assert len(_cluster_alerts(res)) >= 1


def test_two_unrelated_themes_on_one_workflow_are_two_clusters_on_one_incident() -> None:
    rng = random.Random(13)
    refund = _themed(rng, "refund_wrong", 40)
    stale = _themed(rng, "stale_citation", 40, start=BURST_AT + 60)
    res = replay_events(_stream(rng, until=BURST_AT + 1800, burst=refund + stale))
    alerts = _cluster_alerts(res)
    assert len(alerts) >= 2, [a.evidence for a in alerts]
    ids = {a.cluster["cluster_id"] for a in alerts if a.cluster}
    assert len(ids) == len(alerts)
    refund_texts = {t for _, t in refund}
    stale_texts = {t for _, t in stale}
    themes = set()
    for a in alerts:
        assert a.cluster is not None
        reps = set(a.cluster["representatives"])
        # a cluster never mixes the two themes
        assert not (reps & refund_texts and reps & stale_texts), reps
        themes |= {"refund" for _ in reps & refund_texts} | {"stale" for _ in reps & stale_texts}
    assert themes == {"refund", "stale"}
    # grouped: one incident with both themes (the later ones are new evidence, not new pages)
    groups = {g.id for g in res.groups for a in g.alerts if a.indicator == "complaint_cluster"}
    assert len(groups) == 1
    (g,) = [g for g in res.groups if g.id in groups]
    assert g.triage is not None and len(g.triage.complaint_clusters) == len(alerts)
    kinds = [u.kind for u in res.updates if u.alert.indicator == "complaint_cluster"]
    assert kinds[0] == "opened" and set(kinds[1:len(alerts)]) == {"evidence"}


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


def test_live_incident_shows_the_cluster_representatives(live: tuple[LiveServer, ManualClock]) -> None:
    srv, clock = live
    rt = srv.rt
    detector = rt.extras["signals.detector"]
    rng = random.Random(14)
    burst_at = START + 40 * 60
    burst = _themed(rng, "refund_wrong", 30, start=burst_at, span=300)
    events = [e for e in _stream(rng, until=burst_at + 900, burst=burst)]
    ingest = srv.client("ingest")
    viewer = srv.client("viewer")
    i = 0
    t = START
    while t < burst_at + 900:
        t += 30.0
        batch = []
        while i < len(events) and events[i]["time"] < t:
            batch.append(events[i])
            i += 1
        if batch:
            r = ingest.post("/v1/events", content=b"\n".join(orjson.dumps(e) for e in batch),
                            headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 200, r.text
        clock.set(t)
        detector.run(rt)
    incs = viewer.get("/v1/incidents").json()
    items = incs["items"] if isinstance(incs, dict) else incs
    mine = [x for x in items if x["source"] == "detector"]
    assert len(mine) == 1, items
    inc = viewer.get(f"/v1/incidents/{mine[0]['id']}").json()
    assert inc["failure_type"] == "answer_quality"
    themed = {text for _, text in burst}
    clusters = inc["data"]["complaint_clusters"]
    assert len(clusters) == 1 and clusters[0]["representatives"]
    assert set(clusters[0]["representatives"]) <= themed
    tl = viewer.get(f"/v1/incidents/{inc['id']}/timeline").json()
    entries = tl["entries"] if isinstance(tl, dict) else tl
    triage = next(e for e in entries if e["kind"] == "triage")
    assert triage["data"]["alert"]["indicator"] == "complaint_cluster"
    assert set(triage["data"]["alert"]["cluster"]["representatives"]) <= themed
    assert triage["data"]["triage"]["complaint_clusters"][0]["representatives"]
    assert "complaint cluster [" in triage["text"]
