"""In-process A/B of the replay loop: another checkout's `signals/replay.py` (e.g. main's) loaded beside this
one in the same process, over the same pipeline code below the per-event path, run alternately on one NDJSON
file; prints process CPU and wall per event, the minimum of each, and whether the two reports are identical.

    .venv/bin/python bench/signals_replay_ab.py EVENTS.ndjson [--other /work/main/src] [--repeat 4]

A changes file beside the events (`changes.ndjson`) is used when present. Separate runs on a shared box vary
by more than a per-event change; alternating in one process is the comparison to trust.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import orjson
from signals_replay_throughput import bare_loop

import codeblue.signals.replay as this


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("events", type=Path)
    ap.add_argument("--other", default="/work/main/src", help="the src/ directory of the other checkout")
    ap.add_argument("--repeat", type=int, default=4)
    args = ap.parse_args()
    other = types.ModuleType("codeblue.signals.replay_other")
    sys.modules[other.__name__] = other
    src = Path(args.other, "codeblue/signals/replay.py").read_text()
    exec(compile(src, f"{args.other}/codeblue/signals/replay.py", "exec"), other.__dict__)
    changes = args.events.parent / "changes.ndjson"
    ch = changes if changes.exists() else None
    mods: dict[str, Any] = {"other": other, "this": this}
    best = {"bare": float("inf"), "other": float("inf"), "this": float("inf")}
    reports: dict[str, bytes] = {}
    for r in range(args.repeat):
        n, _wall, b = bare_loop(args.events)
        best["bare"] = min(best["bare"], b / n)
        order = ("other", "this") if r % 2 == 0 else ("this", "other")
        for name in order:
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            res = mods[name].replay_file(args.events, changes_path=ch)
            c, w = time.process_time() - c0, time.perf_counter() - t0
            best[name] = min(best[name], c / res.events)
            reports.setdefault(name, orjson.dumps(res.report()))
            print(f"rep {r} {name}: {1e6 * c / res.events:.2f} µs CPU/event, {1e6 * w / res.events:.2f} µs wall/event, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"identical reports: {reports['other'] == reports['this']}")
    print(f"min CPU: bare {1e6 * best['bare']:.2f} µs/line; replay other {1e6 * best['other']:.2f}, this "
          f"{1e6 * best['this']:.2f} µs/event; ratio other {100 * best['bare'] / best['other']:.1f} % -> this "
          f"{100 * best['bare'] / best['this']:.1f} %")


if __name__ == "__main__":
    main()
