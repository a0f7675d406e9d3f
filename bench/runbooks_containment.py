"""Containment over the scenario library with the shipped runbooks, side by side with the static baseline.

codeblue: `replay_with_runbooks` — the live pipeline, the incident service, the shipped runbooks and the
          executor, in stream time; containment in force changes what the rest of the stream serves.
baseline: the vitals monitor's static rule (`bad/total over 5 min > threshold`, held `for: 5m`, evaluated
          every 30 s) plus a manual rollback 2 minutes after it fires (the seed's 11:27 → 11:29).

Harm is counted the same way for both, on the raw stream: requests in the numerator of the fault's
indicator family (`runbooks.evidence.is_harmful` for the fault's failure type) on the faulty workflow, from the
true onset until containment is in force (codeblue) or the manual rollback lands (baseline; until the end of
the stream if the rule never fires or nothing can be rolled back).

    .venv/bin/python bench/runbooks_containment.py [--seeds 1] [--first-seed 1] [--jobs 2] [--rename]

`--rename` gives the library's workflows names that no shipped runbook's trigger names (refund*, finance*,
repayment*): what the shipped runbooks do for an application whose workflows they were not written for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from signals_detection import static_rule

from codeblue.runbooks.evidence import is_harmful
from codeblue.runbooks.replay import replay_with_runbooks
from codeblue.sim import SCENARIOS, generate

MANUAL_ROLLBACK_S = 120.0


def harm_between(events: list[dict[str, Any]], wf: str, ft: str, t0: float, t1: float) -> int:
    return sum(1 for e in events if e["workflow"] == wf and t0 <= e["time"] < t1 and is_harmful(e, ft))


# --rename: the library's workflows under names no shipped runbook's trigger names (refund*, finance*, repayment*),
# to measure what the shipped runbooks do for workflows they were not written for.
RENAMED = {"refund-desk": "claims-desk", "finance-qa": "budget-qa", "repayment-advice": "loan-helper",
           "search-answers": "kb-answers", "support-desk": "help-desk", "account-agent": "profile-agent"}


def renamed(run: Any) -> Any:
    for e in run.events:
        e["workflow"] = RENAMED.get(e["workflow"], e["workflow"])
    for c in run.changes:
        c["workflows"] = [RENAMED.get(w, w) for w in c.get("workflows") or []]
    for f in run.truth["faults"]:
        f["workflow"] = RENAMED.get(f["workflow"], f["workflow"])
    run.truth["workflows"] = [RENAMED.get(w, w) for w in run.truth["workflows"]]
    return run


def one(args: tuple[str, int, bool]) -> dict[str, Any]:
    scenario, seed, rename = args
    run = generate(scenario, seed=seed)
    if rename:
        run = renamed(run)
    (fault,) = run.truth["faults"]
    wf, ft, onset = fault["workflow"], fault["failure_type"], fault["onset"]
    end = run.truth["end"]
    t = time.perf_counter()
    rep = replay_with_runbooks((orjson.dumps(e) for e in run.events), changes=run.changes)
    took = time.perf_counter() - t
    ours = [i for i in rep["incidents"] if wf in (i.get("workflows") or [i.get("workflow")]) and
            (i.get("opened_at") or 0) >= onset - 60]
    inc = ours[0] if ours else None
    contained = inc.get("contained_at") if inc else None
    false_incidents = [i for i in rep["incidents"] if i not in ours]
    fires = [f for (w, _ind, f) in static_rule(run.events) if w == wf and f >= onset]
    fire = min(fires) if fires else None
    can_roll_back = fault["change"] is not None
    base_end = fire + MANUAL_ROLLBACK_S if (fire is not None and can_roll_back) else end
    ours_end = contained if contained is not None else end
    return {
        "scenario": scenario, "seed": seed, "workflow": wf, "replay_s": took,
        "detected_s": (inc["opened_at"] - onset) if inc else None,
        "contained_s": (contained - onset) if contained is not None else None,
        "harm": harm_between(run.events, wf, ft, onset, ours_end),
        "collateral": (inc or {}).get("collateral", {}).get("requests", 0),
        "prevented": (inc or {}).get("prevented", {}).get("requests", 0),
        "actions": [f"{a['type']} {a['target']}" for a in (inc or {}).get("actions", [])],
        "baseline_fired_s": (fire - onset) if fire is not None else None,
        "baseline_harm": harm_between(run.events, wf, ft, onset, base_end),
        "false_incidents": len(false_incidents),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=1, help="seeds first-seed … first-seed+seeds-1")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--scenarios", default=",".join(s for s in SCENARIOS if s != "clean"))
    ap.add_argument("--rename", action="store_true",
                    help="rename the workflows so that no name-matched runbook applies (see RENAMED)")
    a = ap.parse_args()
    work = [(s, seed, a.rename) for s in a.scenarios.split(",")
            for seed in range(a.first_seed, a.first_seed + a.seeds)]
    with Pool(a.jobs) as pool:
        rows = pool.map(one, work)
    print(f"{'scenario':18} {'seed':>4} {'detect':>7} {'contain':>8} {'harm':>6} {'base fire':>9} "
          f"{'base harm':>9} {'ratio':>6} {'collat':>7}  actions")
    for r in rows:
        ratio = r["harm"] / r["baseline_harm"] if r["baseline_harm"] else float("nan")
        fmt = lambda v: "miss" if v is None else f"{v:.0f}s"  # noqa: E731
        print(f"{r['scenario']:18} {r['seed']:>4} {fmt(r['detected_s']):>7} {fmt(r['contained_s']):>8} "
              f"{r['harm']:>6} {fmt(r['baseline_fired_s']):>9} {r['baseline_harm']:>9} {ratio:>6.2f} "
              f"{r['collateral']:>7}  {'; '.join(r['actions'])}")
    contained = [r["contained_s"] for r in rows if r["contained_s"] is not None]
    harm = sum(r["harm"] for r in rows)
    base = sum(r["baseline_harm"] for r in rows)
    print()
    print(f"containment in force after onset: median {statistics.median(contained):.0f}s, worst "
          f"{max(contained):.0f}s over {len(contained)}/{len(rows)} faults (goal: median ≤ 90 s)")
    print(f"harmful requests served before containment: codeblue {harm}, baseline {base} → "
          f"{harm / base:.1%} of the baseline (goal ≤ 20 %)")
    print(f"collateral (good requests blocked by containment, to the end of the stream): "
          f"{sum(r['collateral'] for r in rows)}; false incidents on other workflows: "
          f"{sum(r['false_incidents'] for r in rows)}")
    print(f"replay time per scenario: median {statistics.median(r['replay_s'] for r in rows):.0f}s")


if __name__ == "__main__":
    main()
