"""Replay throughput: `codeblue replay` (parse, indicators, detection, triage) vs a bare `orjson.loads` loop
over the same NDJSON file, in the same run, on one core.

    .venv/bin/python bench/signals_replay_throughput.py [--scenario refund-prompt] [--seed 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from codeblue.signals.replay import replay_file
from codeblue.sim import generate


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
    args = ap.parse_args()
    run = generate(args.scenario, args.seed)
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
        print(f"file: {n} Event v1 lines, {size / 1e6:.1f} MB ({args.scenario}, seed {args.seed})")
        print(f"bare orjson.loads loop : {bare_rate:,.0f} lines/s")
        print(f"codeblue replay        : {replay_rate:,.0f} events/s ({incidents} incidents)")
        print(f"ratio                  : {100 * replay_rate / bare_rate:.1f} % (goal >= 40 %)")


if __name__ == "__main__":
    main()
