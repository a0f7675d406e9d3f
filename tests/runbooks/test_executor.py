from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from codeblue.app import build_runtime
from codeblue.clock import ManualClock
from codeblue.runbooks import executor
from codeblue.runbooks.model import RunbookStep
from tests.runbooks.conftest import RB, T0, response
from tests.support import make_settings

V = {"prompt/refund-assistant": "v42"}
SUSPECT = {"kind": "prompt", "name": "refund-assistant", "version": "v42", "score": 0.92, "rollback": True,
           "evidence": "v42 serves 33% ungrounded answers vs 4% on v41"}


def seed_refund(rb: RB) -> dict[str, Any]:
    """Baseline traffic on v41, then v42 goes wrong from T0-300; an incident opens on it."""
    rb.push_config("prompt", "refund-assistant", "v41", "v42", workflows=["refund-desk"])
    base = [response(T0 - 3800 + i * 12, grounded=i % 25 != 0, subject=f"acct-{i % 60}",
                     versions={"prompt/refund-assistant": "v41"}) for i in range(290)]
    bad = [response(T0 - 300 + i * 2, grounded=i % 3 != 0, subject=f"acct-{i}", versions=V) for i in range(140)]
    actions = [{"time": T0 - 290 + i * 4, "workflow": "refund-desk", "kind": "action", "action": "issue_refund",
                "subject": f"acct-{i}", "target": f"acct-{i}", "trace_id": f"a{i}", "versions": V} for i in range(60)]
    rb.events(base + bad + actions)
    return rb.open(title="Wrong refund guidance", workflows=["refund-desk"], failure_type="answer_quality",
                   severity="SEV2", harm={"requests": 47, "subjects": 47, "started_at": T0 - 300},
                   suspects=[SUSPECT], data={"indicator": "grounding_failure_rate"})


def active(snapshot: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [c for c in snapshot["controls"] if c["type"] == type_]


def test_refund_runbook_contains_rolls_back_and_a_guard_enforces_it(rb: RB) -> None:
    from codeblue.sdk import Guard

    guard = Guard(url=rb.srv.url, token=rb.srv.token("ingest", handle="app"), service="support-bot", lkg_path=None)
    try:
        assert guard.wait_ready(timeout=10)
        assert guard.decide("refund-desk", action="issue_refund").allowed

        inc = seed_refund(rb)
        (run,) = rb.runs(inc["id"])
        assert run["runbook"] == "refund-guidance-prompt-rollout"
        assert run["file"].endswith("refund-guidance-prompt-rollout.yaml") and len(run["content_hash"]) == 64
        rb.tick(8)

        snap = rb.snapshot()
        (kill,) = active(snap, "kill_switch")
        assert kill["scope"]["workflow"] == "refund-desk" and kill["scope"]["action"] == "issue_refund"
        assert kill["incident_id"] == inc["id"]
        (fb,) = active(snap, "fallback")
        assert fb["params"]["fallback"] == "human_queue"
        cfg = snap["configs"]["prompt/refund-assistant"]
        assert cfg["stable"] == "v41" and not cfg.get("candidate")

        steps = {s["step_id"]: s for s in rb.runs(inc["id"])[0]["steps"]}
        assert steps["revert-prompt"]["state"] == "done"
        assert steps["revert-prompt"]["result"]["change"]["type"] == "rollback"
        assert steps["capture-traces"]["state"] == "done"
        assert len(steps["capture-traces"]["result"]["traces"]) >= 40

        got = rb.resp.get(f"/v1/incidents/{inc['id']}").json()
        assert got["status"] == "contained"
        assert got["milestones"].get("contained")
        kinds = [e["kind"] for e in rb.timeline(inc["id"])]
        assert "runbook.started" in kinds and kinds.count("runbook.step.done") >= 4

        deadline = time.time() + 5
        while guard.decide("refund-desk", action="issue_refund").allowed and time.time() < deadline:
            time.sleep(0.01)
        d = guard.decide("refund-desk", action="issue_refund")
        assert not d.allowed and d.incident_id == inc["id"]
        assert guard.decide("finance-qa", action="issue_refund").allowed  # the sealed ward holds one workflow
    finally:
        guard.close()


APPROVAL_RB = """\
name: risky-reenable
trigger: {workflows: ["*"], failure_types: [account_action]}
rollback_option: {config: suspect}
communication: {template: user_update}
postmortem_owner: risk_owner
steps:
  - id: pause-refunds
    type: kill_switch
    scope: {action: issue_refund}
    approval: risk_owner
    auto: false
"""


@pytest.mark.runbooks({"risky.yaml": APPROVAL_RB})
def test_two_person_rule_for_risky_steps(rb: RB, client_for: Any) -> None:
    inc = rb.open(title="wrong-account refunds", workflows=["refund-desk"], failure_type="account_action",
                  severity="SEV1")
    (run,) = rb.runs(inc["id"])
    (step,) = run["steps"]
    assert step["state"] == "proposed"
    rita = client_for(rb.srv, "responder", "risk_owner", handle="rita2")
    bob = client_for(rb.srv, "responder", handle="bob")
    olga = client_for(rb.srv, "risk_owner", handle="olga")
    url = f"/v1/incidents/{inc['id']}/runbook/steps/{step['id']}"

    assert rita.post(url + "/request").json()["state"] == "awaiting_approval"
    r = rita.post(url + "/approve")
    assert r.status_code == 403 and "two-person" in r.json()["detail"]
    r = bob.post(url + "/approve")
    assert r.status_code == 403 and "risk_owner" in r.json()["detail"]
    rb.tick()
    assert not active(rb.snapshot(), "kill_switch"), "nothing runs before a valid approval"

    r = olga.post(url + "/approve")
    assert r.status_code == 200, r.text
    rb.tick()
    (kill,) = active(rb.snapshot(), "kill_switch")
    assert kill["scope"]["action"] == "issue_refund"
    refusals = [e for e in rb.timeline(inc["id"]) if e["kind"] == "runbook.approval.refused"]
    assert {e["actor"] for e in refusals} == {"rita2", "bob"}
    (done,) = rb.runs(inc["id"])[0]["steps"]
    assert done["requested_by"] == "rita2" and done["approved_by"] == "olga" and done["state"] == "done"


def test_stabilisation_default_is_proposed_then_accepted_in_one_call(rb: RB) -> None:
    inc = rb.open(title="odd answers on code assist", workflows=["code-assist"], failure_type="other")
    (run,) = rb.runs(inc["id"])
    assert run["kind"] == "default" and all(s["state"] == "proposed" for s in run["steps"])
    rb.tick()
    assert not rb.snapshot()["controls"], "a proposal executes nothing by itself"
    r = rb.resp.post(f"/v1/incidents/{inc['id']}/runbook/accept")
    assert r.status_code == 200 and len(r.json()["accepted"]) == len(run["steps"])
    rb.tick(4)
    (fb,) = active(rb.snapshot(), "fallback")
    assert fb["scope"]["workflow"] == "code-assist"
    steps = {s["step_id"]: s["state"] for s in rb.runs(inc["id"])[0]["steps"]}
    assert steps["human-queue"] == "done"
    assert steps["rollback-suspect"] == "waiting", "triage may still convict a change: the rollback waits"
    rb.clock.advance(executor.SUSPECT_PATIENCE_S + 1)
    rb.tick()
    steps = {s["step_id"]: s["state"] for s in rb.runs(inc["id"])[0]["steps"]}
    assert steps["rollback-suspect"] == "skipped"  # no suspect: nothing to roll back, and it says so


def test_dry_run_changes_nothing(rb: RB) -> None:
    inc = rb.open(title="odd", workflows=["code-assist"], failure_type="other")
    rev = rb.snapshot()["revision"]
    r = rb.resp.post(f"/v1/incidents/{inc['id']}/runbook/run",
                     json={"runbook": "wrong-account-actions", "dry_run": True})
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert plan[0]["type"] == "kill_switch" and plan[0]["controls"][0]["scope"]["workflow"] == "code-assist"
    assert rb.snapshot()["revision"] == rev
    assert len(rb.runs(inc["id"])) == 1  # only the default proposal from opening


def test_executor_crash_between_steps_resumes_without_repeating(tmp_path: Path) -> None:
    from codeblue.controls.model import Control
    from codeblue.incidents import service as incidents

    settings = make_settings(f"sqlite:///{tmp_path}/cb.db", tmp_path, workers=False)
    clock = ManualClock(T0)
    rt = build_runtime(settings, clock)
    with rt.db.write() as s:
        inc = incidents.open_incident(s, rt, title="wrong-account actions", workflows=["account-agent"],
                                      failure_type="account_action", severity="SEV1", actor="tester")
        inc_id = inc.id
    with rt.db.read() as s:
        first = s.scalar(select(RunbookStep).where(RunbookStep.incident_id == inc_id).order_by(RunbookStep.position))
        assert first is not None and first.step_id == "kill-action-path"
        first_id = first.id
    with rt.db.write() as s:
        assert executor._advance_step(s, rt, first_id) == "done"
    rt.db.dispose()  # the executor "crashes" here, between two steps

    rt2 = build_runtime(settings, clock)
    for _ in range(3):
        executor.tick(rt2)
    clock.advance(executor.SUSPECT_PATIENCE_S + 1)
    executor.tick(rt2)
    with rt2.db.read() as s:
        kills = s.scalar(select(func.count()).select_from(Control).where(
            Control.incident_id == inc_id, Control.type == "kill_switch"))
        states = dict(s.execute(select(RunbookStep.step_id, RunbookStep.state).where(
            RunbookStep.incident_id == inc_id)).all())
    assert kills == 1, "the step that ran before the crash did not run again"
    assert states["kill-action-path"] == "done"
    assert states["capture-actions"] == "done", "the executor resumed after the restart"
    assert states["rollback-suspect"] == "skipped"
    rt2.db.dispose()
