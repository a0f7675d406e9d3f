"""Replay throughput: `codeblue replay` (parse, indicators, detection, triage) vs a bare `orjson.loads` loop
over the same NDJSON file, in the same run, on one core.

    .venv/bin/python bench/signals_replay_throughput.py [--scenario refund-prompt] [--seed 0] [--repeat 3]
        [--scale 1]

`--scale N` multiplies every workflow's traffic by N (and starts the stream 90 minutes before the fault) to
show how the fixed per-tick cost (every 10 s of stream time) amortises over denser streams.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from codeblue.signals.replay import replay_file
from codeblue.sim import SimRun, build_plan, generate, simulate


def bare_loop(path: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    loads = orjson.loads
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="refund-prompt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    if args.scale == 1.0:
        run = generate(args.scenario, args.seed)
    else:
        plan = build_plan(args.scenario, args.seed)
        for wf in plan.workflows:
            wf.peak_rps *= args.scale
        onset = min((f.onset for f in plan.faults), default=plan.end - 3600)
        plan.start = onset - 5400
        plan.changes = [c for c in plan.changes if c["time"] >= plan.start]
        run = SimRun(events=simulate(plan, args.seed), changes=plan.changes, truth={"faults": []})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run.write(out)
        ev = out / "events.ndjson"
        size = ev.stat().st_size
        best_bare = best_replay = float("inf")
        n = 0
        incidents = 0
        for _ in range(args.repeat):
            n, dt = bare_loop(ev)
            best_bare = min(best_bare, dt)
            t0 = time.perf_counter()
            res = replay_file(ev, changes_path=out / "changes.ndjson")
            best_replay = min(best_replay, time.perf_counter() - t0)
            incidents = len(res.groups)
        bare_rate = n / best_bare
        replay_rate = res.events / best_replay
        print(f"file: {n} Event v1 lines, {size / 1e6:.1f} MB ({args.scenario}, seed {args.seed}, "
              f"traffic ×{args.scale:g})")
        print(f"bare orjson.loads loop : {bare_rate:,.0f} lines/s")
        print(f"codeblue replay        : {replay_rate:,.0f} events/s ({incidents} incidents)")
        print(f"ratio                  : {100 * replay_rate / bare_rate:.1f} % (goal >= 40 %)")


if __name__ == "__main__":
    main()
