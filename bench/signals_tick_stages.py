"""Where a replay's ticks spend their CPU: process CPU time per tick stage, from timers wrapped around each
stage from outside the code (nothing in the pipeline changes).

    .venv/bin/python bench/signals_tick_stages.py DIR          # DIR from `codeblue sim generate SCENARIO --out DIR`

Prints the replay's CPU time per event and, per stage (`tick` in all, `test_block`, `close_block`, `_flush`,
complaint clustering, triage of open incidents, ...), seconds, share of the replay and µs per tick. For an A/B,
run it alternately with another checkout's `src/` first on `PYTHONPATH`.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from codeblue.signals import pipeline
from codeblue.signals.replay import replay_lines

STAGES = ("tick", "_flush", "_cluster_signals", "_maintain", "_fold_histograms", "_on_finding", "_on_cluster",
          "_informative", "_prune")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path, help="a directory with events.ndjson and changes.ndjson")
    args = ap.parse_args()
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timed(owner: Any, name: str) -> None:
        f: Callable[..., Any] = getattr(owner, name)

        def run(*a: Any, **k: Any) -> Any:
            t0 = time.process_time()
            try:
                return f(*a, **k)
            finally:
                spent[name] += time.process_time() - t0
                calls[name] += 1

        setattr(owner, name, run)

    timed(pipeline, "test_block")
    timed(pipeline, "close_block")
    for name in STAGES:
        timed(pipeline.Pipeline, name)
    changes = [orjson.loads(line) for line in (args.dir / "changes.ndjson").read_bytes().splitlines() if line]
    c0 = time.process_time()
    with open(args.dir / "events.ndjson", "rb") as fh:
        res = replay_lines(fh, changes=changes)
    total = time.process_time() - c0
    ticks = max(calls["tick"], 1)
    print(f"{args.dir.name}: {total:.2f} s CPU, {res.events} events, {ticks} ticks, "
          f"{1e6 * total / max(res.events, 1):.2f} µs CPU/event")
    for name in sorted(spent, key=lambda k: -spent[k]):
        print(f"  {name:18s} {spent[name]:6.2f} s  {100 * spent[name] / total:5.1f} %  "
              f"{1e6 * spent[name] / ticks:8.1f} µs/tick  ({calls[name]} calls)")


if __name__ == "__main__":
    main()
