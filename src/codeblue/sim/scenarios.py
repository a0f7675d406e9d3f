"""The scenario library: the seed's stories, a fault with no change behind it, and clean traffic.

Each scenario builds a `Plan`: a handful of workflows with realistic baselines, benign changes (including a
progressive rollout that changes nothing), bursts, and — except for `clean` — one fault, with its truth.
Onsets fall a few hours into the stream so detectors have baselines, near the seed's 11:20.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from codeblue.sim.traffic import DAY, Fault, Plan, Rates, Request, WorkflowSpec, change_record

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC).timestamp()  # a Tuesday, 08:00 UTC
ONSET = START + 3 * 3600 + 20 * 60  # 11:20


def base_workflows() -> list[WorkflowSpec]:
    """The simulated support assistant's workflows and the configs that serve them."""
    wfs = [
        WorkflowSpec(
            "refund-desk",
            {"prompt/refund-assistant": "v41", "model_alias/support-default": "gpt-large-2026-09",
             "policy_template/refund-policy": "p7"},
            action="issue_refund", action_prob=0.35, segments={"refund_over_100": 0.3},
            rates=Rates(ungrounded=0.04, refusal=0.02),
        ),
        WorkflowSpec(
            "finance-qa",
            {"routing_policy/finance-router": "r7", "prompt/finance-assistant": "v18"},
            segments={"finance": 0.6}, rates=Rates(ungrounded=0.05, refusal=0.03),
        ),
        WorkflowSpec(
            "search-answers",
            {"retrieval_index/kb-snapshot": "2026-11-20", "prompt/search-assistant": "v9"},
            retrieval=True, rates=Rates(ungrounded=0.06, retrieval_age_s=2 * 86400),
        ),
        WorkflowSpec(
            "repayment-advice",
            {"prompt/repayment-advisor": "v12", "policy_template/lending-policy": "p3"},
            action="schedule_repayment", action_prob=0.2, rates=Rates(ungrounded=0.04),
        ),
        WorkflowSpec(
            "support-desk",
            {"tool_contract/create_ticket": "v3", "prompt/support-assistant": "v27",
             "policy_template/safety-policy": "s5"},
            tool="create_ticket", tool_prob=0.4, rates=Rates(refusal=0.03, tool_arg_error=0.01),
        ),
        WorkflowSpec(
            "account-agent",
            {"model_alias/account-agent": "gpt-large-2026-09", "prompt/account-assistant": "v5"},
            action="update_account", action_prob=0.6, grounded=False, rates=Rates(wrong_entity=0.0),
        ),
    ]
    for wf in wfs:
        wf.configs[f"feature_flag/{wf.name}-experiments"] = "f0"
    return wfs


def _benign_changes(rng: random.Random, seq0: int, start: float, end: float) -> list[dict[str, Any]]:
    """Changes that happen in any healthy week: prompt tweaks, a progressive rollout, a deploy."""
    out: list[dict[str, Any]] = []
    seq = seq0
    t0 = start + rng.uniform(1.0, 1.6) * 3600
    for frac in (0.1, 0.5, 1.0):  # a benign progressive rollout
        out.append(change_record(seq, t0, "prompt", "search-assistant", "v9", "v10", frac, ["search-answers"]))
        seq += 1
        t0 += 1200
    out.append(change_record(seq, start + rng.uniform(0.5, 2.5) * 3600, "prompt", "support-assistant", "v27",
                             "v28", 1.0, ["support-desk"]))
    seq += 1
    out.append(change_record(seq, start + rng.uniform(0.5, 2.8) * 3600, "deploy", "support-bot", "1.42.0",
                             "1.42.1", 1.0, ["refund-desk", "finance-qa", "search-answers", "repayment-advice",
                                             "support-desk", "account-agent"], type_="external", actor="ci"))
    seq += 1
    t = start + 4 * 3600
    flags: dict[str, str] = {}
    while t < end:  # a longer stream keeps having benign changes every few hours: experiment flags flip
        wf = rng.choice(("refund-desk", "finance-qa", "search-answers", "repayment-advice", "support-desk"))
        frm = flags.get(wf, "f0")
        frac = rng.choice((0.25, 1.0))
        out.append(change_record(seq, t, "feature_flag", f"{wf}-experiments", frm, f"f{seq}", frac, [wf],
                                 note="benign"))
        if frac >= 1:
            flags[wf] = f"f{seq}"
        seq += 1
        t += rng.uniform(3, 8) * 3600
    return out


def _versions_is(key: str, version: str) -> Callable[[Request], bool]:
    return lambda r: r.versions.get(key) == version


Builder = Callable[[random.Random], Plan]


def _plan(name: str, rng: random.Random, faults: list[Fault], fault_changes: list[dict[str, Any]],
          hours_after: float = 1.0) -> Plan:
    end = ONSET + hours_after * 3600
    changes = _benign_changes(rng, 1, START, end) + fault_changes
    return Plan(name=name, start=START, end=end, workflows=base_workflows(), changes=changes, faults=faults)


def refund_prompt(rng: random.Random) -> Plan:
    """The seed's worked example: wrong refund guidance after a prompt rollout."""
    ch = change_record(900, ONSET, "prompt", "refund-assistant", "v41", "v42", 1.0, ["refund-desk"])
    f = Fault(ONSET, "refund-desk", "grounding_failure_rate", "answer_quality",
              {"ungrounded": 0.30}, "refund_wrong", match=_versions_is("prompt/refund-assistant", "v42"),
              change={"kind": "prompt", "name": "refund-assistant", "version": "v42"})
    return _plan("refund-prompt", rng, [f], [ch])


def finance_router(rng: random.Random) -> Plan:
    """At 11:20 a new router sends finance queries to a cheaper general model."""
    ch = change_record(900, ONSET, "routing_policy", "finance-router", "r7", "r8", 1.0, ["finance-qa"])
    f = Fault(ONSET, "finance-qa", "grounding_failure_rate", "answer_quality",
              {"ungrounded": 0.35}, "finance_wrong",
              match=lambda r: r.versions.get("routing_policy/finance-router") == "r8" and r.segment == "finance",
              model="gpt-mini", change={"kind": "routing_policy", "name": "finance-router", "version": "r8"})
    return _plan("finance-router", rng, [f], [ch])


def stale_citations(rng: random.Random) -> Plan:
    """A retrieval index snapshot from last month goes live: citations are stale and often unsupported."""
    ch = change_record(900, ONSET, "retrieval_index", "kb-snapshot", "2026-11-20", "2026-10-01", 1.0,
                       ["search-answers"])
    f = Fault(ONSET, "search-answers", "retrieval_age_p95_s", "retrieval",
              {"retrieval_age_s": 55 * 86400, "ungrounded": 0.22}, "stale_citation",
              match=_versions_is("retrieval_index/kb-snapshot", "2026-10-01"),
              change={"kind": "retrieval_index", "name": "kb-snapshot", "version": "2026-10-01"})
    return _plan("stale-citations", rng, [f], [ch])


def repayment_advice(rng: random.Random) -> Plan:
    """Inconsistent repayment advice from a new advisor prompt in a 20 % progressive rollout."""
    ch = change_record(900, ONSET, "prompt", "repayment-advisor", "v12", "v13", 0.2, ["repayment-advice"])
    f = Fault(ONSET, "repayment-advice", "grounding_failure_rate", "answer_quality",
              {"ungrounded": 0.35}, "repayment_wrong", match=_versions_is("prompt/repayment-advisor", "v13"),
              change={"kind": "prompt", "name": "repayment-advisor", "version": "v13"})
    return _plan("repayment-advice", rng, [f], [ch])


def tool_contract(rng: random.Random) -> Plan:
    """Malformed tool arguments after a tool-contract change."""
    ch = change_record(900, ONSET, "tool_contract", "create_ticket", "v3", "v4", 1.0, ["support-desk"])
    f = Fault(ONSET, "support-desk", "tool_arg_error_rate", "tool", {"tool_arg_error": 0.4}, "tool_broken",
              match=_versions_is("tool_contract/create_ticket", "v4"),
              change={"kind": "tool_contract", "name": "create_ticket", "version": "v4"})
    return _plan("tool-contract", rng, [f], [ch])


def wrong_account(rng: random.Random) -> Plan:
    """Wrong-account actions after a model alias moves: answer success normal, wrong-entity actions rising."""
    ch = change_record(900, ONSET, "model_alias", "account-agent", "gpt-large-2026-09", "gpt-large-2026-11", 1.0,
                       ["account-agent"])
    f = Fault(ONSET, "account-agent", "wrong_entity_rate", "account_action", {"wrong_entity": 0.04},
              "wrong_account", match=_versions_is("model_alias/account-agent", "gpt-large-2026-11"),
              change={"kind": "model_alias", "name": "account-agent", "version": "gpt-large-2026-11"})
    return _plan("wrong-account", rng, [f], [ch])


def false_refusal(rng: random.Random) -> Plan:
    """A stricter safety policy template makes the support assistant refuse ordinary questions."""
    ch = change_record(900, ONSET, "policy_template", "safety-policy", "s5", "s6", 1.0, ["support-desk"])
    f = Fault(ONSET, "support-desk", "refusal_rate", "policy_refusal", {"refusal": 0.22}, "refusing",
              match=_versions_is("policy_template/safety-policy", "s6"),
              change={"kind": "policy_template", "name": "safety-policy", "version": "s6"})
    return _plan("false-refusal", rng, [f], [ch])


def deploy_5xx(rng: random.Random) -> Plan:
    """A plain bad deploy: 5xx on the refund desk."""
    ch = change_record(900, ONSET, "deploy", "support-bot", "1.42.1", "1.43.0", 1.0, ["refund-desk"],
                       type_="external", actor="ci")
    f = Fault(ONSET, "refund-desk", "error_rate", "availability", {"error": 0.12}, "outage",
              change={"kind": "deploy", "name": "support-bot", "version": "1.43.0"})
    return _plan("deploy-5xx", rng, [f], [ch])


def no_change_fault(rng: random.Random) -> Plan:
    """An upstream model endpoint degrades with nothing changed on our side: no suspect should convict."""
    f = Fault(ONSET, "finance-qa", "error_rate", "availability", {"error": 0.10, "latency_ms": 2500.0}, "outage")
    return _plan("no-change-fault", rng, [f], [])


def clean(rng: random.Random, days: float = 2.0) -> Plan:
    """Healthy traffic with benign changes, progressive rollouts, drift and bursts — nothing should page."""
    end = START + days * DAY
    return Plan(name="clean", start=START, end=end, workflows=base_workflows()[:5],
                changes=_benign_changes(rng, 1, START, end), faults=[])


SCENARIOS: dict[str, Builder] = {
    "refund-prompt": refund_prompt,
    "finance-router": finance_router,
    "stale-citations": stale_citations,
    "repayment-advice": repayment_advice,
    "tool-contract": tool_contract,
    "wrong-account": wrong_account,
    "false-refusal": false_refusal,
    "deploy-5xx": deploy_5xx,
    "no-change-fault": no_change_fault,
    "clean": clean,
}
