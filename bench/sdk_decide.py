"""decide() median with 120 scoped controls over 24 workflows, beside the flag SDKs and pybreaker.

    .venv/bin/python bench/sdk_decide.py [--batches 200]

The controls are set through the API of a real `codeblue serve`; a Guard receives them over the stream and
answers a fixed mix of 1,000 requests (24 workflows; actions, tools, dependencies, segments, tenants; 500
user keys, some under `traffic` fractions). The figure is the median over batches of the mean time per call.
Peers run in their own virtualenv (bench/out/venv-peers) on the same machine in the same run, each with one
flag per guarded action path and pre-built per-user contexts. Goal: median ≤ 500 ns, ≥ 20× faster than each
flag SDK, ≥ 5× faster than pybreaker's call wrapper.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk_common import HERE, control, peers_python, serve

from codeblue.sdk import Guard

N_WORKFLOWS = 24
N_CONTROLS = 120


def build_controls(c: object) -> int:
    import httpx

    assert isinstance(c, httpx.Client)
    rev = 0
    for i in range(N_CONTROLS):
        wf = f"wf{i % N_WORKFLOWS}"
        kind = i % 6
        if kind == 0:
            out = control(c, "kill_switch", {"workflow": wf, "action": f"action{i // N_WORKFLOWS}"},
                          {"fallback": "human_queue"})
        elif kind == 1:
            out = control(c, "tool_disable", {"workflow": wf, "tool": f"tool{i % 5}"})
        elif kind == 2:
            out = control(c, "breaker", {"workflow": wf, "dependency": f"dep{i // N_WORKFLOWS}"}, {"state": "open"})
        elif kind == 3:
            out = control(c, "fallback", {"workflow": wf, "segment": f"seg{i // N_WORKFLOWS}"},
                          {"fallback": "backup_model", "target": "small-model"})
        elif kind == 4:
            out = control(c, "traffic", {"workflow": wf, "action": f"action{i % 5}"}, {"admit": 0.5})
        else:
            out = control(c, "kill_switch", {"workflow": wf, "action": f"action{i % 5}", "tenant": f"tenant{i % 7}"})
        rev = int(out["revision"])
    return rev


def workload() -> list[tuple[str, str | None, str | None, str | None, str | None, str | None, str | None]]:
    reqs = []
    for i in range(1000):
        wf = f"wf{(i * 7) % N_WORKFLOWS}"
        action = f"action{(i * 3) % 6}"
        tool = f"tool{i % 5}" if i % 4 == 0 else None
        dep = f"dep{i % 5}" if i % 5 == 0 else None
        seg = f"seg{i % 5}" if i % 6 == 0 else None
        tenant = f"tenant{i % 7}" if i % 3 == 0 else None
        key = f"user-{(i * 104729) % 500}"
        reqs.append((wf, action, tool, dep, seg, tenant, key))
    return reqs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()

    with serve() as srv:
        with srv.client() as admin:
            rev = build_controls(admin)
        guard = Guard(srv.url, srv.token("bench-sdk", "ingest"), service="bench", lkg_path=Path(tempfile.mkdtemp()) / "lkg",
                      heartbeat_interval=3600)
        try:
            assert guard.wait_ready(30), "no snapshot"
            deadline = time.time() + 30
            while guard.revision < rev and time.time() < deadline:
                time.sleep(0.05)
            assert guard.revision >= rev, f"guard at revision {guard.revision}, want {rev}"
            reqs = workload()
            decide = guard.decide
            blocked = sum(not decide(w, action=a, tool=t, dependency=d, segment=s, tenant=n, key=k).allowed
                          for w, a, t, d, s, n, k in reqs)
            samples = []
            for _ in range(args.batches):
                t0 = time.perf_counter_ns()
                for w, a, t, d, s, n, k in reqs:
                    decide(w, action=a, tool=t, dependency=d, segment=s, tenant=n, key=k)
                samples.append((time.perf_counter_ns() - t0) / len(reqs))
            # the cold path: the first decision for an argument tuple on a new revision (no memo yet)
            cold = []
            for _ in range(20):
                guard._state = type(guard._state)(guard._index, guard._state.tripped)
                t0 = time.perf_counter_ns()
                for w, a, t, d, s, n, k in reqs:
                    decide(w, action=a, tool=t, dependency=d, segment=s, tenant=n, key=k)
                cold.append((time.perf_counter_ns() - t0) / len(reqs))
            n_rules = len(guard._index.rules) if guard._index else 0
        finally:
            guard.close()

    ours = statistics.median(samples)
    print(f"codeblue Guard.decide: median {ours:.0f} ns/call (p10 {statistics.quantiles(samples, n=10)[0]:.0f}, "
          f"p90 {statistics.quantiles(samples, n=10)[-1]:.0f}); {n_rules} restrictive controls over "
          f"{N_WORKFLOWS} workflows at revision {rev}; {blocked}/1000 requests blocked")
    print(f"  first call per argument tuple after a revision change (memo empty): median "
          f"{statistics.median(cold):.0f} ns/call")
    result = {"decide_ns": ours, "decide_cold_ns": statistics.median(cold), "controls": n_rules}
    if not args.no_peers:
        py = peers_python()
        out = subprocess.run([str(py), str(HERE / "sdk_peers_decide.py"), str(N_CONTROLS), str(max(20, args.batches // 4))],
                             check=True, capture_output=True, text=True)
        peers = json.loads(out.stdout.strip().splitlines()[-1])
        goals = {"openfeature_inmemory": 20, "launchdarkly_testdata": 20, "unleash_bootstrapped": 20,
                 "pybreaker_call": 5}
        print(f"{'peer':28} {'ns/call':>10} {'codeblue ×faster':>17} {'goal':>6}")
        for name, ns in peers.items():
            if isinstance(ns, str):
                print(f"{name:28} {ns}")
                continue
            ratio = ns / ours
            mark = "ok" if ratio >= goals[name] else "MISSED"
            print(f"{name:28} {ns:10.0f} {ratio:16.1f}× {goals[name]:>5}× {mark}")
        result["peers"] = peers
    print(f"goal decide ≤ 500 ns: {'ok' if ours <= 500 else 'MISSED'}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
