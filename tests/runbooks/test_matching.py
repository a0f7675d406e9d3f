"""Which runbooks an incident starts: the trigger facts as each source records them (the detector's alert,
Alertmanager's labels, the API), and catch-all runbooks that run only where nothing more specific does."""

from __future__ import annotations

from typing import Any

import pytest

from tests.runbooks.conftest import RB, T0, response
from tests.runbooks.test_executor import active

CLAIMS = {"prompt/claims-assistant": "v8"}
CLAIMS_SUSPECT = {"kind": "prompt", "name": "claims-assistant", "version": "v8", "score": 0.9, "rollback": True,
                  "evidence": "v8 serves 40% ungrounded answers vs 3% on v7"}


def started(rb: RB, incident_id: int) -> list[str]:
    return sorted(r["runbook"] for r in rb.runs(incident_id))


def test_answer_quality_on_a_workflow_without_its_own_runbook_is_contained_by_the_catch_all(rb: RB) -> None:
    rb.push_config("prompt", "claims-assistant", "v7", "v8", workflows=["claims-desk"])
    base = [response(T0 - 3800 + i * 12, wf="claims-desk", subject=f"c-{i % 50}", grounded=i % 30 != 0,
                     versions={"prompt/claims-assistant": "v7"}) for i in range(290)]
    bad = [response(T0 - 300 + i * 2, wf="claims-desk", subject=f"c-{i}", grounded=i % 2 == 0, versions=CLAIMS)
           for i in range(140)]
    rb.events(base + bad)
    inc = rb.open(title="Wrong claims answers", workflows=["claims-desk"], failure_type="answer_quality",
                  severity="SEV2", harm={"requests": 70, "subjects": 70, "started_at": T0 - 300},
                  suspects=[CLAIMS_SUSPECT])
    (run,) = rb.runs(inc["id"])
    assert run["runbook"] == "answer-quality" and run["kind"] == "runbook" and run["state"] == "running"
    rb.tick(8)

    snap = rb.snapshot()
    (fb,) = active(snap, "fallback")
    assert fb["scope"]["workflow"] == "claims-desk" and fb["params"]["fallback"] == "human_queue"
    assert fb["incident_id"] == inc["id"]
    assert snap["configs"]["prompt/claims-assistant"]["stable"] == "v7"
    steps = {s["step_id"]: s["state"] for s in rb.runs(inc["id"])[0]["steps"]}
    assert steps["affected-to-humans"] == "done" and steps["rollback-suspect"] == "done"
    assert rb.resp.get(f"/v1/incidents/{inc['id']}").json()["status"] == "contained"


def test_a_workflow_with_its_own_runbook_does_not_also_get_the_catch_all(rb: RB) -> None:
    inc = rb.open(title="Wrong refund answers", workflows=["refund-desk"], failure_type="answer_quality")
    assert started(rb, inc["id"]) == ["refund-guidance-prompt-rollout"]
    # grounding failures not yet pinned on a change are triaged `retrieval`: still the refund runbook
    inc = rb.open(title="Ungrounded refund answers", workflows=["refund-desk"], failure_type="retrieval",
                  data={"indicator": "grounding_failure_rate"})
    assert started(rb, inc["id"]) == ["refund-guidance-prompt-rollout"]
    # ... and on a workflow without one, the catch-all, not the stale-citations runbook
    inc = rb.open(title="Ungrounded claims answers", workflows=["claims-desk"], failure_type="retrieval",
                  data={"indicator": "grounding_failure_rate"})
    assert started(rb, inc["id"]) == ["answer-quality"]


def waiting_runbook(name: str, trigger: str) -> str:
    """A runbook whose one step waits: enough to see which runbooks an incident starts."""
    return f"""\
name: {name}
trigger: {trigger}
rollback_option: {{config: suspect}}
communication: {{template: user_update}}
postmortem_owner: incident_lead
steps:
  - {{id: wait-a-bit, type: wait, duration: 1m}}
"""


CATCH_ALL_ONLY = waiting_runbook("only-generic", '{workflows: ["*"], failure_types: [other], catch_all: true}')
SPECIFIC = waiting_runbook("code-assist-specific", '{workflows: ["code-*"], failure_types: [other]}')


@pytest.mark.runbooks({"generic.yaml": CATCH_ALL_ONLY, "specific.yaml": SPECIFIC})
def test_catch_all_runs_only_where_no_other_runbook_matches(rb: RB) -> None:
    inc = rb.open(title="odd answers", workflows=["code-assist"], failure_type="other")
    assert started(rb, inc["id"]) == ["code-assist-specific"]
    inc = rb.open(title="odd answers", workflows=["faq"], failure_type="other")
    assert started(rb, inc["id"]) == ["only-generic"]
    schema = rb.resp.get("/v1/runbooks/schema").json()
    assert "catch_all" in str(schema)


BY_INDICATOR = waiting_runbook("stale-only", '{workflows: ["*"], indicators: [retrieval_age_p95_s]}')


def _am(alertname: str, workflow: str, fp: str) -> dict[str, Any]:
    alert = {"status": "firing", "labels": {"alertname": alertname, "workflow": workflow, "severity": "warning"},
             "annotations": {"summary": "duplicate refund e-mails"}, "startsAt": "2026-11-28T16:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fp}
    return {"version": "4", "groupKey": "{}:{alertname=\"" + alertname + "\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "codeblue", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am.example", "alerts": [alert]}


def test_an_alertmanager_alert_starts_the_runbook_that_names_it(rb: RB) -> None:
    r = rb.ingest.post("/v1/alerts/alertmanager", json=_am("DuplicateSideEffects", "refund-desk", "f1"))
    assert r.status_code == 200, r.text
    (inc,) = rb.resp.get("/v1/incidents").json()
    # the alert's own runbook; the generic availability runbook (catch-all) stays out of it
    assert started(rb, inc["id"]) == ["duplicate-side-effects"]
    rb.tick(4)
    (kill,) = active(rb.snapshot(), "kill_switch")
    assert kill["scope"]["workflow"] == "refund-desk" and kill["scope"]["action"] == "send_email"
    assert not active(rb.snapshot(), "fallback")

    # another alert on another workflow: nothing names it, so the catch-all availability runbook runs
    r = rb.ingest.post("/v1/alerts/alertmanager", json=_am("RefundErrorBudgetBurn", "faq", "f2"))
    assert r.status_code == 200, r.text
    other = [i for i in rb.resp.get("/v1/incidents").json() if i["id"] != inc["id"]]
    assert [started(rb, i["id"]) for i in other] == [["availability"]]


@pytest.mark.runbooks({"stale.yaml": BY_INDICATOR})
def test_indicator_triggers_match_the_detectors_alert(rb: RB) -> None:
    # the shape the detector records (signals.wiring): the indicator inside data.alert
    inc = rb.open(title="kb answers: retrieval_age_p95_s above its baseline", workflows=["kb-answers"],
                  failure_type="retrieval", data={"alert": {"indicator": "retrieval_age_p95_s", "breakdown": "*"}})
    assert started(rb, inc["id"]) == ["stale-only"]
    inc = rb.open(title="kb answers: grounding", workflows=["kb-answers"], failure_type="retrieval",
                  data={"alert": {"indicator": "grounding_failure_rate", "breakdown": "*"}})
    assert [r["kind"] for r in rb.runs(inc["id"])] == ["default"]
