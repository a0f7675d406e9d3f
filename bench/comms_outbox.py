"""Outbox delivery throughput to a loopback webhook receiver, with retries enabled.

A receiver runs in its own process (uvicorn, a raw ASGI app) and behaves like a careful customer: it verifies
the HMAC signature, applies each Idempotency-Key once, and answers 503 to a share of first deliveries so the
sender has to retry them (`--fail`, default 10 %). The sender is the production `Sender` driven by the real
job loop (wake-after-commit plus the periodic tick) on a real clock; backoff base is shortened to 50 ms so a
retry is due within the run. The figure is messages confirmed per second from the first enqueue to the last
confirmation, and the receiver's count of messages applied (must equal N) and applied twice (must be 0).

Peers, same run: the same receiver hit directly by (a) an httpx thread pool of the same size and (b) the
sender's own keep-alive stdlib transport — no outbox, no retries, no signature: the ceilings on this machine.

    .venv/bin/python bench/comms_outbox.py [--messages 5000] [--concurrency 16] [--fail 0.1]
        [--backend sqlite|postgres] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Goal (issue 6): ≥ 500 messages/s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from common import free_port, postgres_db

SECRET = "bench-signing-secret"


# ----- the receiver (runs in a child process) -----------------------------------------------------------


def receiver_app(fail_share: float) -> Any:
    applied: dict[str, int] = {}
    seen_first: set[str] = set()
    stats = {"requests": 0, "duplicates": 0, "rejected": 0, "failed": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["path"] == "/stats":
            import json

            out = json.dumps({**stats, "applied": len(applied),
                              "applied_twice": sum(1 for n in applied.values() if n > 1)}).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": out})
            return
        stats["requests"] += 1
        headers = dict(scope["headers"])
        key = headers.get(b"idempotency-key", b"").decode()
        status = 200
        sig = headers.get(b"x-codeblue-signature", b"").decode()
        ts = headers.get(b"x-codeblue-timestamp", b"").decode()
        if sig:  # the peer run sends unsigned requests
            want = "v1=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, sig) or abs(time.time() - float(ts or 0)) > 300:
                stats["rejected"] += 1
                status = 401
        if status == 200 and key not in seen_first:
            seen_first.add(key)
            # deterministic share of first deliveries fail, as a flaky receiver would
            if int(hashlib.blake2b(key.encode(), digest_size=4).hexdigest(), 16) / 2**32 < fail_share:
                stats["failed"] += 1
                status = 503
        if status == 200:
            if key in applied:
                stats["duplicates"] += 1
            applied[key] = applied.get(key, 0) + 1
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def run_receiver(port: int, fail_share: float) -> None:
    import uvicorn

    uvicorn.run(receiver_app(fail_share), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                backlog=2048)


@contextlib.contextmanager
def receiver(fail_share: float) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port), "--fail", str(fail_share)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/stats", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ----- the two runs ---------------------------------------------------------------------------------------


def outbox_run(db_url: str, data_dir: Path, url: str, n: int, concurrency: int) -> dict[str, Any]:
    from codeblue.app import build_runtime
    from codeblue.comms import channels, outbox
    from codeblue.comms.sender import get_sender
    from codeblue.settings import Settings

    settings = Settings(database_url=db_url, data_dir=data_dir, comms_sender_concurrency=concurrency,
                        comms_retry_base=0.05, comms_retry_cap=1.0, comms_max_attempts=8)
    rt = build_runtime(settings)
    with rt.db.write() as s:
        channels.upsert_channel(s, server_key=rt.server_key, now=rt.clock.now(),
                                raw={"name": "webhook:bench", "url": url + "/hook", "secret": SECRET, "timeout": 5})
    rt.jobs[:] = [j for j in rt.jobs if j.name == "comms.sender"]
    get_sender(rt)
    t0 = time.perf_counter()
    chunk = 500
    for start in range(0, n, chunk):
        with rt.db.write() as s:
            for i in range(start, min(n, start + chunk)):
                outbox.enqueue(s, rt, channel="webhook:bench", kind="announcement", dedup_key=f"bench:{i}",
                               subject=f"refund {i}", body="Your refund was issued.", incident_id=1)
    enqueued = time.perf_counter() - t0
    # Delivery is timed on its own: the backlog is all due, the sender job starts, the clock runs until the
    # last message is confirmed (or dead-lettered).
    t0 = time.perf_counter()
    rt.start_jobs()
    deadline = time.perf_counter() + 300
    while True:
        with rt.db.read() as s:
            c = outbox.counts(s)
        if c["delivered"] + c["dead"] >= n or time.perf_counter() > deadline:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    rt.stop_jobs()
    with rt.db.read() as s:
        c = outbox.counts(s)
        redeliveries = outbox.redeliveries(s)
    get_sender(rt).close()
    rt.db.dispose()
    return {"elapsed": elapsed, "enqueue_s": enqueued, "enqueue_rate": n / enqueued, "counts": c, "redeliveries": redeliveries}


def peer_raw_run(url: str, n: int, concurrency: int) -> float:
    """The same keep-alive stdlib transport the sender uses, hit directly: no outbox, signing or retries."""
    from codeblue.comms.transport import HttpPool

    pool = HttpPool()
    body = b'{"subject": "refund", "body": "Your refund was issued."}'
    with ThreadPoolExecutor(concurrency) as ex:
        t0 = time.perf_counter()
        list(ex.map(lambda i: pool.post(url + "/hook", body, {"Idempotency-Key": f"raw:{i}"}, 5.0).status, range(n)))
        return time.perf_counter() - t0


def peer_run(url: str, n: int, concurrency: int) -> float:
    with httpx.Client(limits=httpx.Limits(max_connections=concurrency * 2)) as http, \
            ThreadPoolExecutor(concurrency) as pool:
        body = b'{"subject": "refund", "body": "Your refund was issued."}'
        t0 = time.perf_counter()
        list(pool.map(lambda i: http.post(url + "/hook", content=body,
                                          headers={"Idempotency-Key": f"peer:{i}"}).status_code, range(n)))
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--fail", type=float, default=0.1, help="share of first deliveries the receiver fails (503)")
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pg", default=os.environ.get("CODEBLUE_TEST_POSTGRES_URL",
                                                    "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        run_receiver(args.receiver, args.fail)
        return
    with tempfile.TemporaryDirectory() as tmp, receiver(args.fail) as url:
        with contextlib.ExitStack() as stack:
            if args.backend == "postgres":
                db_url = stack.enter_context(postgres_db(args.pg))
            else:
                db_url = f"sqlite:///{tmp}/bench.db"
            res = outbox_run(db_url, Path(tmp) / "data", url, args.messages, args.concurrency)
        stats = httpx.get(url + "/stats").json()
        peer_elapsed = peer_run(url, args.messages, args.concurrency)
        raw_elapsed = peer_raw_run(url, args.messages, args.concurrency)
    rate = args.messages / res["elapsed"]
    print(f"backend: {args.backend}; messages: {args.messages}; sender concurrency: {args.concurrency}; "
          f"receiver fails {args.fail:.0%} of first deliveries")
    print(f"outbox → signed webhook: {rate:,.0f} messages/s delivered and confirmed "
          f"({res['elapsed']:.2f} s for the backlog); states {res['counts']}")
    print(f"  enqueue (transactional, dedup-checked, 500 per transaction): {res['enqueue_rate']:,.0f} messages/s")
    print(f"  retries: {res['redeliveries']} redeliveries; receiver: {stats['requests']} requests, "
          f"{stats['failed']} failed on purpose, {stats['rejected']} bad signatures, "
          f"applied {stats['applied']}, applied twice {stats['applied_twice']}")
    print(f"peer (direct httpx thread pool, no outbox/retries/signing): {args.messages / peer_elapsed:,.0f} requests/s")
    print(f"peer (the sender's stdlib keep-alive transport hit directly, no outbox/retries/signing): "
          f"{args.messages / raw_elapsed:,.0f} requests/s")
    ok = (rate >= 500 and res["counts"]["delivered"] == args.messages and stats["applied"] == args.messages
          and stats["applied_twice"] == 0)
    print(f"goal ≥ 500 messages/s, none lost, none applied twice: {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
