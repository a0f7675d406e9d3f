"""Detection on generated scenarios: the fault fires fast with the right type and top suspect; clean traffic
with bursts, drift and benign changes opens nothing; a fault with no change convicts no suspect."""

from __future__ import annotations

import pytest

from tests.signals.helpers import replayed

CHANGE_CAUSED = ["refund-prompt", "finance-router", "stale-citations", "repayment-advice", "tool-contract",
                 "wrong-account", "false-refusal", "deploy-5xx"]

#: The indicator's failure type per the triage desk (grounding failures become answer_quality when a prompt,
#: model or router change is convicted; stale retrieval stays retrieval).
EXPECTED_TYPE = {
    "refund-prompt": "answer_quality", "finance-router": "answer_quality", "stale-citations": "retrieval",
    "repayment-advice": "answer_quality", "tool-contract": "tool", "wrong-account": "account_action",
    "false-refusal": "policy_refusal", "deploy-5xx": "availability",
}


@pytest.mark.parametrize("name", CHANGE_CAUSED)
def test_change_caused_fault_fires_with_type_and_top_suspect(name: str) -> None:
    run, report = replayed(name)
    fault = run.truth["faults"][0]
    mine = [i for i in report["incidents"] if i["workflow"] == fault["workflow"]]
    assert mine, f"no incident on {fault['workflow']}: {report['incidents']}"
    inc = mine[0]
    delay = inc["opened_at"] - fault["onset"]
    assert 0 <= delay <= 300, f"opened {delay:.0f}s after onset"
    assert inc["failure_type"] == EXPECTED_TYPE[name]
    assert inc["severity"] in ("SEV1", "SEV2", "SEV3", "SEV4")
    assert inc["harm"]["requests"] > 0 and inc["harm"]["subjects"] > 0
    top = inc["suspects"][0]
    ch = fault["change"]
    assert (top["kind"], top["name"], top["version"]) == (ch["kind"], ch["name"], ch["version"]), inc["suspects"]
    # Every other workflow stayed quiet: no false incident next to the real one.
    others = [i for i in report["incidents"] if i["workflow"] != fault["workflow"]]
    assert others == [], others


def test_wrong_entity_ranks_highest() -> None:
    _run, report = replayed("wrong-account")
    inc = report["incidents"][0]
    assert inc["indicator"] == "wrong_entity_rate"
    assert inc["severity"] == "SEV1"


def test_fault_with_no_change_names_no_confident_suspect() -> None:
    run, report = replayed("no-change-fault")
    fault = run.truth["faults"][0]
    mine = [i for i in report["incidents"] if i["workflow"] == fault["workflow"]]
    assert mine
    assert mine[0]["failure_type"] == "availability"
    for inc in report["incidents"]:
        for s in inc["suspects"]:
            assert s["score"] < 0.5, s


def test_clean_traffic_with_bursts_and_benign_changes_opens_nothing() -> None:
    from codeblue.sim import generate
    from tests.signals.helpers import replay_events

    run = generate("clean", 3, days=0.75)
    assert run.changes, "the clean scenario has benign changes and rollouts"
    res = replay_events(run.events, run.changes)
    assert res.events > 100_000
    assert [(g.workflow, g.alerts[0].evidence) for g in res.groups] == []
