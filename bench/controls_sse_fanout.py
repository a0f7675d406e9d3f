"""A control change reaching 100 connected SSE stream clients: time from the POST returning to the last client.

Starts a real `codeblue serve` subprocess (SQLite by default, or PostgreSQL), connects N stream clients
(plain asyncio sockets speaking HTTP/1.1 + Server-Sent Events, one connection each, like SDKs would), then
repeatedly sets a kill switch through the API from a separate thread and records, with the system-wide
monotonic clock, when the POST returned and when each client received the patch of that revision. Between
measurements the kill switch is lifted (also a revision, not measured). Prints p50/p95/p99/max of
"last client received − POST returned" (negative values mean every client had it before the POST's response
arrived; they are reported as measured), the first-client latency, and the whole path from the moment the
POST was sent (write transaction included) to the last client.

    .venv/bin/python bench/controls_sse_fanout.py [--clients 100] [--rounds 60] [--backend sqlite|postgres]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Goal (issue 2): p99 ≤ 50 ms for 100 clients on loopback. No peer: nothing else speaks this stream format.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from common import free_port, postgres_db


@contextlib.contextmanager
def serve(db_url: str, data_dir: Path) -> Iterator[tuple[int, str]]:
    port = free_port()
    token = "cb_bench_" + secrets.token_hex(16)
    env = {**os.environ, "CODEBLUE_DATABASE_URL": db_url, "CODEBLUE_DATA_DIR": str(data_dir),
           "CODEBLUE_BOOTSTRAP_TOKEN": token, "CODEBLUE_LOG_JSON": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "codeblue.cli.main", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("codeblue serve exited during start-up")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("codeblue serve did not start")
            time.sleep(0.1)
        yield port, token
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Receipts:
    """revision → monotonic times at which clients received its patch."""

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {}
        self.lock = threading.Lock()

    def add(self, revision: int, t: float) -> None:
        with self.lock:
            self.times.setdefault(revision, []).append(t)

    def count(self, revision: int) -> int:
        with self.lock:
            return len(self.times.get(revision, ()))


async def sse_client(port: int, token: str, receipts: Receipts, ready: asyncio.Event, counter: list[int],
                     n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/controls/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"stream refused: {head[:200]!r}")
    chunked = b"transfer-encoding: chunked" in head.lower()
    buf = b""
    snapshot_seen = False
    while True:
        if chunked:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip().split(b";")[0], 16)
            if size == 0:
                return
            data = await reader.readexactly(size + 2)
            buf += data[:-2]
        else:
            data = await reader.read(65536)
            if not data:
                return
            buf += data
        now = time.monotonic()
        while b"\n\n" in buf:
            frame, buf = buf.split(b"\n\n", 1)
            if frame.startswith(b"event: snapshot"):
                if not snapshot_seen:
                    snapshot_seen = True
                    counter[0] += 1
                    if counter[0] == n:
                        ready.set()
            elif frame.startswith(b"event: patch"):
                ident = frame.split(b"\nid: ", 1)[1].split(b"\n", 1)[0]
                receipts.add(int(ident), now)


def poster(port: int, token: str, rounds: int, receipts: Receipts, clients: int,
           results: list[tuple[float, float, float]]) -> None:
    body = {"type": "kill_switch", "scope": {"workflow": "refund-desk", "action": "issue_refund"},
            "params": {"fallback": "human_queue"}, "reason": "bench", "ttl_s": 3600}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as c:
        for _ in range(rounds + 3):
            t_start = time.monotonic()
            r = c.post("/v1/controls", json=body)
            t0 = time.monotonic()
            r.raise_for_status()
            rev = r.json()["revision"]
            deadline = time.monotonic() + 10
            while receipts.count(rev) < clients:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {receipts.count(rev)} of {clients} clients got revision {rev}")
                time.sleep(0.0005)
            with receipts.lock:
                ts = receipts.times[rev]
                results.append((max(ts) - t0, min(ts) - t0, max(ts) - t_start))
            c.delete(f"/v1/controls/{r.json()['id']}").raise_for_status()
            time.sleep(0.02)
    del results[:3]  # warm-up


async def run(port: int, token: str, clients: int, rounds: int) -> list[tuple[float, float, float]]:
    receipts = Receipts()
    ready = asyncio.Event()
    counter = [0]
    tasks = [asyncio.create_task(sse_client(port, token, receipts, ready, counter, clients)) for _ in range(clients)]
    await asyncio.wait_for(ready.wait(), 60)
    results: list[tuple[float, float, float]] = []
    await asyncio.to_thread(poster, port, token, rounds, receipts, clients, results)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return results


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pg", default=os.environ.get("CODEBLUE_TEST_POSTGRES_URL",
                                                   "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        db = f"sqlite:///{tmp}/bench.db" if args.backend == "sqlite" else stack.enter_context(postgres_db(args.pg))
        port, token = stack.enter_context(serve(db, Path(tmp) / "data"))
        results = asyncio.run(run(port, token, args.clients, args.rounds))
    last = [r[0] * 1000 for r in results]
    first = [r[1] * 1000 for r in results]
    whole = [r[2] * 1000 for r in results]
    print(f"controls SSE fan-out ({args.backend}): {args.clients} clients, {len(results)} kill switches")
    print(f"  last client after POST returned:  p50 {pct(last, 50):7.2f} ms   p95 {pct(last, 95):7.2f} ms   "
          f"p99 {pct(last, 99):7.2f} ms   max {max(last):7.2f} ms   mean {statistics.fmean(last):7.2f} ms")
    print(f"  first client after POST returned: p50 {pct(first, 50):7.2f} ms   p99 {pct(first, 99):7.2f} ms")
    print(f"  last client after POST was sent:  p50 {pct(whole, 50):7.2f} ms   p99 {pct(whole, 99):7.2f} ms   "
          f"max {max(whole):7.2f} ms  (includes the write transaction)")
    print(f"  goal: p99 ≤ 50 ms -> {'met' if pct(last, 99) <= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
