"""Detector memory: 10,000 workflows, each served by 3 versions, all indicators, 1 h of windows at the
detector's resolution (10 s × 60 fine + 60 s × 60 coarse buckets per series). Prints whole-process RSS.

    .venv/bin/python bench/signals_memory.py [--workflows 10000] [--versions 3] [--minutes 60] [--tick-every 60]

Every workflow gets traffic in every minute of the hour, on every version, of every event kind, so every
series (workflow-wide and per version) is live, every indicator has counts, and the percentile histograms and
bad-event rings are populated.
"""

from __future__ import annotations

import argparse
import random
import resource
import time

from codeblue.signals.pipeline import Pipeline


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workflows", type=int, default=10_000)
    ap.add_argument("--versions", type=int, default=3)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--tick-every", type=int, default=60, choices=(10, 20, 30, 60),
                    help="stream seconds between detector ticks (memory does not depend on it; time does)")
    args = ap.parse_args()
    base = rss_mb()
    rng = random.Random(1)
    p = Pipeline()
    t0 = 1_795_500_000.0
    names = [f"wf-{i:05d}" for i in range(args.workflows)]
    vers = [f"v{j}" for j in range(args.versions)]
    n = 0
    start = time.perf_counter()
    for minute in range(args.minutes):
        batch: list[dict[str, object]] = []
        for w, name in enumerate(names):
            if len(batch) >= 1000:  # the server sees 1,000-event batches
                n += p.feed(batch)
                batch = []
            t = t0 + minute * 60 + (w % 60)
            for v in vers:
                versions = {f"prompt/{name}": v}
                subj = f"acct-{rng.randrange(5000)}"
                batch.append({"time": t, "workflow": name, "kind": "response", "subject": subj,
                              "versions": versions, "status": 500 if rng.random() < 0.01 else 200,
                              "latency_ms": rng.lognormvariate(6.5, 0.4), "refusal": rng.random() < 0.03,
                              "grounded": rng.random() > 0.05, "retrieval_age_s": rng.uniform(3600, 86400)})
                batch.append({"time": t, "workflow": name, "kind": "tool_call", "subject": subj, "versions": versions,
                              "tool": "t", "args_valid": rng.random() > 0.01})
                batch.append({"time": t, "workflow": name, "kind": "action", "subject": subj, "versions": versions,
                              "action": "a", "target": subj})
                if rng.random() < 0.05:
                    batch.append({"time": t, "workflow": name, "kind": "complaint", "subject": subj,
                                  "versions": versions, "text": "meh"})
        n += p.feed(batch)
        for k in range(60 // args.tick_every):
            p.tick(t0 + minute * 60 + (k + 1) * args.tick_every)
    elapsed = time.perf_counter() - start
    series = sum(1 + len(ws.breakdowns) for ws in p.workflows.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.workflows:,} workflows × {args.versions} versions = {series:,} series, {args.minutes} min of "
          f"stream, {n:,} events fed in {elapsed:.0f}s")
    print(f"RSS now {rss_mb():.0f} MB, peak {peak:.0f} MB (interpreter + numpy before the pipeline: {base:.0f} MB)"
          f" — goal ≤ 512 MB")


if __name__ == "__main__":
    main()
