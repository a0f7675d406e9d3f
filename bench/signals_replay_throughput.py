"""Replay throughput: `codeblue replay` (parse, indicators, detection, triage) vs a bare `orjson.loads` loop
over the same NDJSON file, in the same run, on one core.

    .venv/bin/python bench/signals_replay_throughput.py [--scenario refund-prompt] [--seed 0] [--repeat 3]
        [--scale 1] [--kernels compiled|numpy]

`--scale N` multiplies every workflow's traffic by N (and starts the stream 90 minutes before the fault) to
show how the fixed per-tick cost (every 10 s of stream time) amortises over denser streams. `--kernels numpy`
runs the tick and the line path on their numpy / Python implementations even when the compiled kernels
(`codeblue.signals._kernels`) are built: the comparison without a C compiler.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import orjson

from codeblue.signals import kernels
from codeblue.signals.replay import replay_file
from codeblue.sim import SimRun, build_plan, generate, simulate


def bare_loop(path: Path) -> tuple[int, float, float]:
    """(lines, wall seconds, CPU seconds of this process) of a bare `orjson.loads` loop over the file."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    loads = orjson.loads
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="refund-prompt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--kernels", choices=["compiled", "numpy"], default="compiled")
    args = ap.parse_args()
    with kernels.using(args.kernels == "compiled"):
        run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
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
        best_bare = best_replay = best_bare_cpu = best_replay_cpu = float("inf")
        n = 0
        incidents = 0
        load0 = os.getloadavg()[0]
        for _ in range(args.repeat):
            n, dt, dc = bare_loop(ev)
            best_bare = min(best_bare, dt)
            best_bare_cpu = min(best_bare_cpu, dc)
            t0, c0 = time.perf_counter(), time.process_time()
            res = replay_file(ev, changes_path=out / "changes.ndjson")
            best_replay = min(best_replay, time.perf_counter() - t0)
            best_replay_cpu = min(best_replay_cpu, time.process_time() - c0)
            incidents = len(res.groups)
        bare_rate = n / best_bare
        replay_rate = res.events / best_replay
        print(f"file: {n} Event v1 lines, {size / 1e6:.1f} MB ({args.scenario}, seed {args.seed}, "
              f"traffic ×{args.scale:g})")
        print(f"bare orjson.loads loop : {bare_rate:,.0f} lines/s wall, {n / best_bare_cpu:,.0f} lines per CPU-second "
              f"({1e6 * best_bare_cpu / n:.2f} µs CPU/line)")
        print(f"codeblue replay        : {replay_rate:,.0f} events/s wall, {res.events / best_replay_cpu:,.0f} events per "
              f"CPU-second ({1e6 * best_replay_cpu / res.events:.2f} µs CPU/event; {incidents} incidents)")
        print(f"ratio                  : {100 * replay_rate / bare_rate:.1f} % wall, "
              f"{100 * best_bare_cpu / n / (best_replay_cpu / res.events):.1f} % CPU (goal >= 40 %)")
        print(f"load average           : {load0:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores)")
        print(f"tick and line path     : {kernels.status()}")


if __name__ == "__main__":
    main()
