"""Served-version evidence, grouping and resolution, objectives, and the two intake paths of the pipeline."""

from __future__ import annotations

from typing import Any

import pytest

from codeblue.errors import Invalid
from codeblue.signals.events import Event, EventError, parse_event
from codeblue.signals.objectives import parse_objectives
from codeblue.signals.pipeline import Pipeline
from codeblue.sim import Fault, Plan, Rates, WorkflowSpec, simulate
from codeblue.sim.scenarios import START
from codeblue.sim.traffic import change_record
from tests.signals.helpers import replay_events

V42 = "v:prompt/refund-assistant=v42"


def _is_v42(r: Any) -> bool:
    return bool(r.versions.get("prompt/refund-assistant") == "v42")


def _refund_plan(*, fraction: float, onset: float, end: float | None, stop: float, refusal: float = 0.21) -> Plan:
    wf = WorkflowSpec("refund-desk", {"prompt/refund-assistant": "v41"}, peak_rps=2.5,
                      rates=Rates(refusal=0.03, ungrounded=0.04))
    ch = change_record(1, onset, "prompt", "refund-assistant", "v41", "v42", fraction, ["refund-desk"])
    benign = change_record(2, onset - 5400, "deploy", "support-bot", "1.0", "1.1", 1.0, ["refund-desk"],
                           type_="external")
    f = Fault(onset, "refund-desk", "refusal_rate", "policy_refusal", {"refusal": refusal}, "refusing",
              match=_is_v42, end=end, change={"kind": "prompt", "name": "refund-assistant", "version": "v42"})
    return Plan("test", START, stop, [wf], [benign, ch], [f])


def test_served_version_fires_while_the_workflow_rate_is_diluted_by_a_10pct_rollout() -> None:
    onset = START + 3 * 3600
    plan = _refund_plan(fraction=0.1, onset=onset, end=None, stop=onset + 1800)
    events = simulate(plan, 7)
    res = replay_events(events, plan.changes)
    assert len(res.groups) == 1, [a.evidence for g in res.groups for a in g.alerts]
    g = res.groups[0]
    first = g.alerts[0]
    # The version breakdown fires first, on its own evidence ...
    assert first.breakdown == V42, first.evidence
    assert first.indicator == "refusal_rate"
    # ... while the workflow-wide refusal rate over the same span stays under a static 10 % threshold.
    after = [e for e in events if onset <= e["time"] <= first.fired_at and e["kind"] == "response"
             and (e.get("status") or 0) < 500]
    diluted = sum(1 for e in after if e.get("refusal")) / len(after)
    assert diluted < 0.10
    assert g.triage is not None
    top = g.triage.suspects[0]
    assert (top.kind, top.name, top.version) == ("prompt", "refund-assistant", "v42")
    assert top.score >= 0.5 and top.rollback
    assert "v42" in top.evidence and "other versions" in top.evidence
    assert all(s.score < 0.5 for s in g.triage.suspects[1:])


def test_alerts_group_into_one_incident_then_resolve_after_a_quiet_period() -> None:
    onset = START + 3 * 3600
    end = onset + 900
    plan = _refund_plan(fraction=1.0, onset=onset, end=end, stop=end + 3600, refusal=0.4)
    res = replay_events(simulate(plan, 3), plan.changes)
    assert len(res.groups) == 1
    g = res.groups[0]
    assert len(g.alerts) >= 2  # the workflow, the version, later the complaints: evidence on one incident
    kinds = [u.kind for u in res.updates if u.group == g.id]
    assert kinds.count("opened") == 1
    assert kinds.count("evidence") == len(g.alerts) - 1
    assert kinds.count("resolved") == 1
    assert g.resolved_at is not None and end < g.resolved_at <= end + 1800
    assert all(u.text for u in res.updates)


def test_a_new_fault_long_after_resolution_is_a_new_incident_and_a_refire_joins() -> None:
    onset = START + 3 * 3600
    plan = _refund_plan(fraction=1.0, onset=onset, end=onset + 600, stop=onset + 4 * 3600, refusal=0.4)
    plan.faults.append(Fault(onset + 3 * 3600, "refund-desk", "refusal_rate", "policy_refusal", {"refusal": 0.4},
                             "refusing"))
    res = replay_events(simulate(plan, 5), plan.changes)
    opened = [u for u in res.updates if u.kind == "opened"]
    assert len(opened) == 2
    assert len({u.group for u in opened}) == 2


def test_objective_limit_any_wrong_entity_action_is_sev1_even_without_baseline() -> None:
    obj = parse_objectives(
        "workflows:\n  account-agent:\n    limits:\n      - indicator: wrong_entity_rate\n"
        "        max_count: 0\n        window: 5m\n        severity: SEV1\n"
    )
    p = Pipeline(objectives=obj)
    t0 = 1_800_000_000.0
    p.feed([{"time": t0 + i, "workflow": "account-agent", "kind": "action", "subject": "a", "target": "a"}
            for i in range(20)])
    assert p.tick(t0 + 30) == []
    p.feed([{"time": t0 + 31, "workflow": "account-agent", "kind": "action", "subject": "a", "target": "b",
             "authorized_targets": ["a"]}])
    ups = p.tick(t0 + 40)
    assert [u.kind for u in ups] == ["opened"]
    assert ups[0].triage.severity == "SEV1"
    assert ups[0].triage.failure_type == "account_action"
    assert ups[0].triage.harm.requests == 1 and ups[0].triage.harm.subjects == 1


def test_slo_burn_rate_rule_fires() -> None:
    obj = parse_objectives(
        "workflows:\n  '*':\n    slos:\n      - indicator: error_rate\n        objective: 99%\n"
        "        burn_rate: 10\n        long: 10m\n        short: 1m\n        severity: SEV2\n"
    )
    p = Pipeline(objectives=obj)
    t0 = 1_800_000_000.0
    p.feed([{"time": t0 + i, "workflow": "w", "kind": "response", "status": 500 if i % 4 == 0 else 200}
            for i in range(600)])
    ups = p.tick(t0 + 600)
    assert [u.kind for u in ups] == ["opened"]
    assert "burn rate" in ups[0].alert.evidence and ups[0].triage.severity == "SEV2"


@pytest.mark.parametrize(
    ("text", "line", "field", "what"),
    [
        ("workflows:\n  refund:\n    limits:\n      - indicator: wrong_entity\n        max_count: 0\n", 4,
         "workflows.refund.limits[0].indicator", "unknown indicator"),
        ("workflows:\n  refund:\n    limits:\n      - indicator: error_rate\n        max_rate: 2\n", 5,
         "workflows.refund.limits[0].max_rate", "out of range"),
        ("workflows:\n  refund:\n    slos:\n      - indicator: error_rate\n        objective: 99.9%\n"
         "        long: 5m\n        short: 10m\n", 6, "workflows.refund.slos[0].long", "short ≤ long"),
        ("severity:\n  tool:\n    small: SEV9\n", 3, "severity.tool.small", "not one of"),
        ("detector:\n  quiet_period: soon\n", 2, "detector.quiet_period", "not a duration"),
        ("workflows:\n  refund:\n    limits:\n      - indicator: error_rate\n        window: 5m\n", 4,
         "workflows.refund.limits[0]", "exactly one of max_count or max_rate"),
        ("workflows:\n  refund:\n    limit:\n      - {}\n", 3, "workflows.refund.limit", "unknown section"),
        ("workflows: [\n", 2, "", "not valid YAML"),
    ],
)
def test_objectives_yaml_errors_name_line_and_field(text: str, line: int, field: str, what: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_objectives(text, "detect.yaml")
    err = info.value
    assert err.detail.startswith(f"detect.yaml:{line}:"), err.detail
    assert what in err.detail
    assert (err.field or "") == field


def test_dict_fast_path_and_event_path_count_the_same() -> None:
    t0 = 1_800_000_000.0
    raw: list[dict[str, Any]] = []
    for i in range(400):
        raw.append({"time": t0 + i * 0.5, "workflow": "w", "kind": "response", "subject": f"s{i % 37}",
                    "versions": {"prompt/p": "v1" if i % 3 else "v2"}, "segment": "big" if i % 5 == 0 else None,
                    "status": 503 if i % 17 == 0 else 200, "refusal": i % 11 == 0, "grounded": i % 7 != 0,
                    "latency_ms": 100.0 + i, "retrieval_age_s": 10.0 * i})
        raw.append({"time": t0 + i * 0.5, "workflow": "w", "kind": "tool_call", "tool": "t", "args_valid": i % 9 != 0,
                    "versions": {"prompt/p": "v1"}})
        raw.append({"time": t0 + i * 0.5, "workflow": "w", "kind": "action", "subject": "a",
                    "target": "b" if i % 13 == 0 else "a", "authorized_targets": ["a"]})
    for o in raw:
        if o.get("segment") is None:
            o.pop("segment", None)
    a, b = Pipeline(), Pipeline()
    a.feed(raw)
    b.feed([parse_event(o, i) for i, o in enumerate(raw)])
    a.tick(t0 + 300)
    b.tick(t0 + 300)
    sa, sb = a.indicator_snapshot("w", window_s=600), b.indicator_snapshot("w", window_s=600)
    assert sa == sb
    assert sa["series"]["*"]["error_rate"]["bad"] == sum(1 for o in raw if (o.get("status") or 0) >= 500)
    assert sa["series"]["*"]["wrong_entity_rate"]["bad"] == sum(1 for o in raw if o.get("target") == "b")
    assert sa["series"]["v:prompt/p=v2"]["refusal_rate"]["total"] > 0


def test_bad_event_is_rejected_with_its_field_and_good_ones_kept() -> None:
    p = Pipeline()
    errs = p.feed_dicts([{"time": 1.7e9, "workflow": "w", "kind": "response"},
                         {"time": 1.7e9, "workflow": "w", "kind": "response", "status": "500"},
                         {"time": 1.7e9, "workflow": "w", "kind": "response", "versions": {"noslash": "v1"}},
                         {"time": 1.7e9, "workflow": "", "kind": "response"}])
    assert [(e.index, e.field) for e in errs] == [(1, "status"), (2, "versions.noslash"), (3, "workflow")]
    assert p.events == 1
    with pytest.raises(EventError):
        p.feed([{"time": 1.7e9, "kind": "response"}])
    p.feed([Event(time=1.7e9, workflow="w", kind="complaint", text="it lied")])
    assert p.events == 2


def test_a_kind_that_is_a_list_or_object_is_rejected_naming_the_field_and_line() -> None:
    from codeblue.signals.replay import replay_lines

    p = Pipeline()
    errs = p.feed_dicts([{"time": 1.7e9, "workflow": "w", "kind": ["response"]},
                         {"time": 1.7e9, "workflow": "w", "kind": {"a": 1}},
                         {"time": 1.7e9, "workflow": "w", "kind": "response"}])
    assert [(e.index, e.field) for e in errs] == [(0, "kind"), (1, "kind")]
    assert p.events == 1
    res = replay_lines([b'{"time": 1.7e9, "workflow": "w", "kind": "response"}',
                        b'{"time": 1.7e9, "workflow": "w", "kind": ["response"]}'])
    assert res.events == 1
    assert [(e.line, e.field) for e in res.errors] == [(2, "kind")]


def test_change_records_are_validated() -> None:
    p = Pipeline()
    with pytest.raises(Invalid) as info:
        p.add_change({"time": 1.7e9, "kind": "prompt", "name": "x", "to": "v2", "fraction": 2})
    assert info.value.field == "fraction"
    with pytest.raises(Invalid) as info:
        p.add_change({"time": "yesterday", "kind": "prompt", "name": "x", "to": "v2"})
    assert info.value.field == "time"
    c = p.add_change({"id": "c1", "time": "2026-11-24T11:20:00Z", "kind": "prompt", "name": "x", "to": "v2"})
    assert c["time"] == pytest.approx(1795519200.0)
