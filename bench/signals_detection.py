"""Detection quality over the scenario library, side by side with a static threshold rule on the same streams.

codeblue: the detection pipeline exactly as `codeblue replay` runs it (zero configuration).
static:   per workflow, `bad/total over 5 min > threshold`, evaluated every 30 s, held `for: 5m`
          (error 5 %, refusal 10 %, grounding failure 15 %, tool-argument error 10 %, wrong-entity 2 %).

    .venv/bin/python bench/signals_detection.py [--seeds 2] [--clean-days 2] [--clean-seeds 1] [--first-seed 0]

Prints one line per fault, then the figures: median / worst detection delay (stream seconds), misses,
false incidents over clean workflow-days, top-suspect accuracy on change-caused faults, and the
no-change fault's best suspect score.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import orjson

from codeblue.signals.replay import replay_lines
from codeblue.sim import SCENARIOS, generate

DAY = 86400.0
STATIC = {  # indicator → (threshold, numerator test, denominator test)
    "error_rate": 0.05,
    "refusal_rate": 0.10,
    "grounding_failure_rate": 0.15,
    "tool_arg_error_rate": 0.10,
    "wrong_entity_rate": 0.02,
}
EVAL_S = 30.0
WINDOW_BINS = 10  # 5 min of 30 s bins
FOR_EVALS = 11  # true at 11 consecutive 30 s evaluations = held for 5 min


def static_rule(events: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """(workflow, indicator, first firing time) for every rule that fires, alert-style (fires once until clear)."""
    bins: dict[str, dict[int, list[int]]] = {}
    for e in events:
        wf = e["workflow"]
        b = int(e["time"] // EVAL_S)
        row = bins.setdefault(wf, {}).get(b)
        if row is None:
            row = bins[wf][b] = [0] * 10
        k = e["kind"]
        if k == "response":
            row[0] += 1
            err = (e.get("status") or 0) >= 500
            if err:
                row[1] += 1
            else:
                row[2] += 1
                if e.get("refusal"):
                    row[3] += 1
            g = e.get("grounded")
            if g is not None:
                row[4] += 1
                if not g:
                    row[5] += 1
        elif k == "tool_call":
            row[6] += 1
            if e.get("args_valid") is False:
                row[7] += 1
        elif k == "action":
            row[8] += 1
            t = e.get("target")
            if t and t != e.get("subject") and t not in (e.get("authorized_targets") or []):
                row[9] += 1
    spec = {"error_rate": (1, 0), "refusal_rate": (3, 2), "grounding_failure_rate": (5, 4),
            "tool_arg_error_rate": (7, 6), "wrong_entity_rate": (9, 8)}
    out = []
    for wf, rows in bins.items():
        lo, hi = min(rows), max(rows)
        for ind, (num, den) in spec.items():
            thr = STATIC[ind]
            run = 0
            firing = False
            win_n: list[int] = []
            win_d: list[int] = []
            for b in range(lo, hi + 1):
                r = rows.get(b)
                win_n.append(r[num] if r else 0)
                win_d.append(r[den] if r else 0)
                if len(win_n) > WINDOW_BINS:
                    win_n.pop(0)
                    win_d.pop(0)
                d = sum(win_d)
                cond = d > 0 and sum(win_n) / d > thr
                run = run + 1 if cond else 0
                if run >= FOR_EVALS and not firing:
                    firing = True
                    out.append((wf, ind, (b + 1) * EVAL_S))
                if not cond:
                    firing = False
    return out


def evaluate(name: str, seed: int) -> dict[str, Any]:
    run = generate(name, seed)
    t0 = time.perf_counter()
    report = replay_lines((orjson.dumps(e) for e in run.events), changes=list(run.changes)).report()
    secs = time.perf_counter() - t0
    static = static_rule(run.events)
    fault = run.truth["faults"][0] if run.truth["faults"] else None
    res: dict[str, Any] = {"scenario": name, "seed": seed, "events": report["events"], "replay_s": secs,
                           "workflows": run.truth["workflows"], "span": run.truth["end"] - run.truth["start"]}
    if fault is None:
        res["false"] = [(i["workflow"], i["indicator"], i["opened_at"]) for i in report["incidents"]]
        res["static_false"] = static
        res["clean_wf_days"] = run.truth["clean_days"]
        return res
    wf, onset = fault["workflow"], fault["onset"]
    mine = [i for i in report["incidents"] if i["workflow"] == wf and i["opened_at"] >= onset - 60]
    res["false"] = [(i["workflow"], i["indicator"], i["opened_at"]) for i in report["incidents"]
                    if i["workflow"] != wf or i["opened_at"] < onset - 60]
    res["static_false"] = [s for s in static if s[0] != wf or s[2] < onset - 60]
    st = [s for s in static if s[0] == wf and s[2] >= onset - 60]
    res["static_delay"] = (min(s[2] for s in st) - onset) if st else None
    # clean workflow-time inside a fault scenario: the other workflows over the whole stream
    res["clean_wf_days"] = (len(run.truth["workflows"]) - 1) * res["span"] / DAY
    if not mine:
        res["delay"] = None
        return res
    inc = mine[0]
    res["delay"] = inc["opened_at"] - onset
    res["indicator"] = inc["indicator"]
    res["breakdown"] = inc["alerts"][0]["breakdown"]
    res["type"] = inc["failure_type"]
    res["truth_type"] = fault["failure_type"]
    res["severity"] = inc["severity"]
    res["harm"] = inc["harm"]
    res["suspects"] = [(s["kind"], s["name"], s["version"], s["score"]) for s in inc["suspects"]]
    ch = fault["change"]
    if ch is None:
        res["no_change_best"] = max((s["score"] for i in report["incidents"] for s in i["suspects"]), default=0.0)
    else:
        top = inc["suspects"][0] if inc["suspects"] else None
        res["suspect_ok"] = top is not None and (top["kind"], top["name"], top["version"]) == (
            ch["kind"], ch["name"], ch["version"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--clean-days", type=float, default=2.0)
    ap.add_argument("--clean-seeds", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="scenario seeds are first-seed … first-seed+seeds-1; clean seeds 100+first-seed …")
    args = ap.parse_args()
    rows = []
    for name in SCENARIOS:
        if name == "clean":
            continue
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = evaluate(name, seed)
            rows.append(r)
            d = "MISS" if r["delay"] is None else f"{r['delay']:.0f}s"
            sd = "miss" if r.get("static_delay") is None else f"{r['static_delay']:.0f}s"
            sus = r.get("suspects") or []
            top = f"{sus[0][0]}/{sus[0][1]} {sus[0][2]} ({sus[0][3]:.2f})" if sus else "-"
            verdict = ("ok" if r.get("suspect_ok") else "WRONG") if "suspect_ok" in r else \
                f"best {r.get('no_change_best', 0):.2f}"
            print(f"{name:17s} seed {seed}: codeblue {d:>5s} [{r.get('indicator', '-')} on {r.get('breakdown', '-')}, "
                  f"{r.get('type', '-')}/{r.get('severity', '-')}] static {sd:>5s} | top suspect {top} {verdict} | "
                  f"false {len(r['false'])} (static {len(r['static_false'])})", flush=True)
    cleans = []
    for seed in range(args.first_seed, args.first_seed + args.clean_seeds):
        run_days = args.clean_days
        from codeblue.signals.replay import replay_lines as _rl

        run = generate("clean", 100 + seed, days=run_days)
        report = _rl((orjson.dumps(e) for e in run.events), changes=list(run.changes)).report()
        static = static_rule(run.events)
        cleans.append({"wf_days": run.truth["clean_days"], "false": report["incidents"], "static_false": static,
                       "changes": len(run.changes), "events": report["events"]})
        print(f"clean seed {100 + seed}: {run.truth['clean_days']:.1f} workflow-days, {report['events']:,} events, "
              f"{len(run.changes)} benign changes: codeblue {len(report['incidents'])} incidents, static {len(static)}",
              flush=True)
        for i in report["incidents"]:
            print(f"   false: {i['workflow']} {i['indicator']} {i['alerts'][0]['evidence']}")

    delays = [r["delay"] for r in rows if r["delay"] is not None]
    sdelays = [r["static_delay"] for r in rows if r.get("static_delay") is not None]
    misses = [f"{r['scenario']}#{r['seed']}" for r in rows if r["delay"] is None]
    smisses = [f"{r['scenario']}#{r['seed']}" for r in rows if r.get("static_delay") is None]
    susp = [r["suspect_ok"] for r in rows if "suspect_ok" in r]
    nochange = [r["no_change_best"] for r in rows if "no_change_best" in r]
    false_n = sum(len(r["false"]) for r in rows) + sum(len(c["false"]) for c in cleans)
    sfalse_n = sum(len(r["static_false"]) for r in rows) + sum(len(c["static_false"]) for c in cleans)
    clean_days = sum(c["wf_days"] for c in cleans)
    bg_days = sum(r["clean_wf_days"] for r in rows)
    print()
    print(f"faults: {len(rows)} ({len(SCENARIOS) - 1} scenarios × {args.seeds} seeds)")
    if delays:
        print(f"codeblue: median delay {statistics.median(delays):.0f}s, worst {max(delays):.0f}s, "
              f"misses {len(misses)} {misses}")
    if sdelays:
        print(f"static  : median delay {statistics.median(sdelays):.0f}s, worst {max(sdelays):.0f}s, "
              f"misses {len(smisses)} {smisses}")
    print(f"false incidents: codeblue {false_n}, static {sfalse_n} over {clean_days:.1f} clean-scenario "
          f"workflow-days + {bg_days:.1f} workflow-days of healthy workflows beside the faults")
    if susp:
        print(f"top suspect correct: {sum(susp)}/{len(susp)} = {100 * sum(susp) / len(susp):.0f} % of change-caused faults")
    if nochange:
        print(f"no-change fault: best suspect score {max(nochange):.2f} (must stay < 0.5)")


if __name__ == "__main__":
    main()
