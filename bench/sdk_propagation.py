"""Kill-switch propagation: 1,000 Guards, each with its own stream connection, spread over 4 processes.

    .venv/bin/python bench/sdk_propagation.py [--guards 1000] [--procs 4] [--rounds 5]

A real `codeblue serve` (SQLite) on loopback. Every Guard subscribes to /v1/controls/stream with its own
connection. Each round sets (or lifts) a kill switch through the API; the latency of a Guard is the time from
the API call returning to the moment that Guard's `decide()` answers with the new state (measured inside the
Guard's process by a listener on the applied revision, wall clock on the same machine; a Guard that had it
before the call returned counts 0). Goal: p99 ≤ 100 ms. Peers' documented propagation is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk_common import serve

WF, ACTION = "refund-desk", "issue_refund"
PEERS = [
    ("LaunchDarkly (streaming, documented)", "200 ms", "its docs: flag changes reach streaming SDKs in ~200 ms"),
    ("Unleash (default poll)", "15 s", "server SDKs poll every 15 s by default"),
    ("Flagsmith (default poll)", "60 s", "local-evaluation SDKs refresh the environment every 60 s by default"),
]


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def worker(idx: int, url: str, token: str, n: int, rounds: int, ready: Any, go: Any, results: Any) -> None:
    _raise_nofile()
    import logging

    logging.disable(logging.WARNING)
    from codeblue.sdk import Guard

    guards = []
    seen: list[list[float | None]] = [[None] * n for _ in range(rounds)]
    want = {"round": -1, "blocked": False}
    lock = threading.Lock()

    def listener_for(i: int, g: Guard) -> Any:
        def on_change(kind: str, revision: int) -> None:
            r = want["round"]
            if r < 0 or seen[r][i] is not None:
                return
            if (not g.decide(WF, action=ACTION).allowed) == want["blocked"]:
                with lock:
                    if seen[r][i] is None:
                        seen[r][i] = time.time()

        return on_change

    for i in range(n):
        g = Guard(url, token, service=f"bench-{idx}", lkg_path=None, heartbeat_interval=3600, poll_interval=3600,
                  stale_after=3600, reconnect_max=2.0, timeout=60.0)
        g.add_listener(listener_for(i, g))
        guards.append(g)
    for g in guards:
        g.wait_ready(120)
    ready.put((idx, sum(g.source == "snapshot" for g in guards), sum(g.connected for g in guards)))
    for r in range(rounds):
        blocked = go.get()
        with lock:
            want["round"], want["blocked"] = r, blocked
        deadline = time.time() + 60
        while time.time() < deadline and any(s is None for s in seen[r]):
            time.sleep(0.01)
        results.put((idx, r, seen[r]))
    for g in guards:
        g.close(timeout=0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guards", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    _raise_nofile()
    per = args.guards // args.procs
    ctx = mp.get_context("spawn")
    with serve() as srv:
        token = srv.token("bench-sdk", "ingest")
        ready, results = ctx.Queue(), ctx.Queue()
        gos = [ctx.Queue() for _ in range(args.procs)]
        procs = [ctx.Process(target=worker, args=(i, srv.url, token, per, args.rounds, ready, gos[i], results))
                 for i in range(args.procs)]
        t0 = time.time()
        for p in procs:
            p.start()
        connected = 0
        for _ in procs:
            _idx, _loaded, conn = ready.get(timeout=600)
            connected += conn
        print(f"{args.procs} processes × {per} Guards started and connected ({connected} live streams) in "
              f"{time.time() - t0:.1f} s")
        latencies: list[float] = []
        from_start: list[float] = []
        calls: list[float] = []
        missing = 0
        control_id = None
        with srv.client() as admin:
            for r in range(args.rounds):
                blocked = r % 2 == 0
                for q in gos:
                    q.put(blocked)
                time.sleep(0.5)  # let every worker arm its round before the flip
                sent = time.time()
                if blocked:
                    resp = admin.post("/v1/controls", json={
                        "type": "kill_switch", "scope": {"workflow": WF, "action": ACTION}, "params": {},
                        "reason": "propagation bench", "lift_condition": "bench round over"})
                    resp.raise_for_status()
                    control_id = resp.json()["id"]
                else:
                    resp = admin.delete(f"/v1/controls/{control_id}")
                    resp.raise_for_status()
                returned = time.time()
                round_lat = []
                calls.append((returned - sent) * 1000)
                for _ in procs:
                    _idx, _r, seen = results.get(timeout=120)
                    for t in seen:
                        if t is None:
                            missing += 1
                        else:
                            round_lat.append(max(0.0, t - returned) * 1000)
                            from_start.append((t - sent) * 1000)
                latencies.extend(round_lat)
                round_lat.sort()
                print(f"round {r + 1} ({'set' if blocked else 'lift'}): {len(round_lat)} guards, "
                      f"p50 {statistics.median(round_lat):.1f} ms, p99 {round_lat[int(len(round_lat) * 0.99) - 1]:.1f} ms, "
                      f"max {round_lat[-1]:.1f} ms")
        for p in procs:
            p.join(30)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nkill switch propagation over {len(latencies)} guard-updates ({args.guards} Guards × {args.rounds} rounds,"
          f" {missing} never arrived): p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
          f"max {latencies[-1]:.1f} ms — goal p99 ≤ 100 ms: {'ok' if p99 <= 100 and not missing else 'MISSED'}")
    from_start.sort()
    print(f"  measured from the API call being sent instead: p50 {statistics.median(from_start):.1f} ms, "
          f"p99 {from_start[int(len(from_start) * 0.99) - 1]:.1f} ms (the API call itself took median "
          f"{statistics.median(calls):.1f} ms)")
    print("peers (documented, not measured here):")
    for name, value, note in PEERS:
        print(f"  {name:40} {value:>7}  ({note})")
    print(json.dumps({"p50_ms": statistics.median(latencies), "p99_ms": p99, "max_ms": latencies[-1],
                      "p99_from_send_ms": from_start[int(len(from_start) * 0.99) - 1],
                      "updates": len(latencies), "missing": missing, "guards": args.guards, "procs": args.procs}))


if __name__ == "__main__":
    main()
