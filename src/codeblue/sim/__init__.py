"""Realistic traffic and fault scenarios for the demo, tests and benchmarks.

``generate(scenario, seed)`` returns the events, the changes and the truth (onset, workflow, indicator,
failure type and the culprit change, if any) of one scenario from the library.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from codeblue.sdk.bucket import bucket
from codeblue.sim.scenarios import SCENARIOS, clean
from codeblue.sim.traffic import DAY, Fault, Plan, Rates, WorkflowSpec, diurnal, simulate

__all__ = ["DAY", "SCENARIOS", "Fault", "Plan", "Rates", "SimRun", "WorkflowSpec", "bucket", "build_plan",
           "diurnal", "generate", "simulate"]


@dataclass
class SimRun:
    events: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    truth: dict[str, Any]

    def write(self, out: Path) -> None:
        """Write events.ndjson, changes.ndjson and truth.json into `out`."""
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "events.ndjson", "wb") as fh:
            for e in self.events:
                fh.write(orjson.dumps(e) + b"\n")
        with open(out / "changes.ndjson", "wb") as fh:
            for c in self.changes:
                fh.write(orjson.dumps(c) + b"\n")
        (out / "truth.json").write_bytes(orjson.dumps(self.truth, option=orjson.OPT_INDENT_2))


def build_plan(scenario: str, seed: int = 0, **opts: Any) -> Plan:
    if scenario not in SCENARIOS:
        raise KeyError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    rng = random.Random(f"plan:{scenario}:{seed}")
    if scenario == "clean":
        return clean(rng, **opts)
    plan = SCENARIOS[scenario](rng)
    for k, v in opts.items():
        setattr(plan, k, v)
    return plan


def generate(scenario: str, seed: int = 0, **opts: Any) -> SimRun:
    """Events, changes and truth for one scenario and seed."""
    plan = build_plan(scenario, seed, **opts)
    events = simulate(plan, seed)
    faults = [
        {"onset": f.onset, "workflow": f.workflow, "indicator": f.indicator, "failure_type": f.failure_type,
         "change": f.change, "theme": f.theme, "end": f.end}
        for f in plan.faults
    ]
    clean_days = 0.0 if plan.faults else len(plan.workflows) * (plan.end - plan.start) / DAY
    truth = {"scenario": scenario, "seed": seed, "start": plan.start, "end": plan.end, "faults": faults,
             "workflows": [w.name for w in plan.workflows], "clean_days": clean_days,
             "clean_workflow_days": clean_days}
    return SimRun(events=events, changes=sorted(plan.changes, key=lambda c: c["time"]), truth=truth)
