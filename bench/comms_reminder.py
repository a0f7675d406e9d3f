"""How late does an overdue-update reminder fire? Real clock, short interval; then an accelerated clock with
the default 10-minute interval.

Starts the real runtime with its background jobs (cadence tick + sender woken after commit), opens several
incidents with a communications lead, and lets their internal updates fall overdue. A loopback webhook
receiver stamps each reminder on arrival with the server clock. Lateness = arrival − due time, both in the
server clock's seconds: "queued" is when the reminder row was written, "delivered" when the receiver got it.

    .venv/bin/python bench/comms_reminder.py [--incidents 8] [--interval 5] [--speed 60]

Goal (issue 6): a 10-minute reminder fires within 1 s of being due. No peer runs in the same process;
for reference Netflix Dispatch's reminder job ticks hourly (see /work/shared/STYLE.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import yaml

from codeblue.app import build_runtime
from codeblue.auth import service as auth_service
from codeblue.clock import AcceleratedClock, Clock, RealClock
from codeblue.comms import outbox
from codeblue.comms.model import OutboxMessage
from codeblue.incidents import service as incidents
from codeblue.settings import Settings


def start_receiver(clock: Clock, arrivals: list[tuple[float, dict[str, Any]]]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrivals.append((clock.now(), orjson.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/remind"


def run(label: str, clock: Clock, interval: float, n: int, speed: float) -> dict[str, float]:
    arrivals: list[tuple[float, dict[str, Any]]] = []
    httpd, url = start_receiver(clock, arrivals)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "comms.yaml"
        cfg.write_text(yaml.safe_dump({
            "channels": [{"name": "webhook:remind", "url": url, "secret": "bench"}],
            "reminders": {"channel": "webhook:remind"},
            "cadence": {"default": {"internal": {"every": interval}}},
        }))
        settings = Settings(database_url=f"sqlite:///{tmp}/bench.db", data_dir=Path(tmp) / "data", comms_config=cfg,
                            clock_speed=speed)
        rt = build_runtime(settings, clock)
        with rt.db.write() as s:
            auth_service.get_or_create_person(s, handle="cora", email="cora@example.test", now=clock.now())
        rt.start_jobs()
        due: list[float] = []
        for i in range(n):
            with rt.db.write() as s:
                inc = incidents.open_incident(s, rt, title=f"bench incident {i}", workflows=["refund-desk"],
                                              actor="bench")
                incidents.assign_role(s, rt, incident_id=inc.id, role="communications_lead", handle="cora",
                                      actor="bench")
                due.append(inc.opened_at + interval)
            clock.sleep(interval / n)  # stagger the due times across the interval
        wall_deadline = time.time() + (interval * 2 + 10) / speed + 10
        while len(arrivals) < n and time.time() < wall_deadline:
            time.sleep(0.02)
        rt.stop_jobs()
        with rt.db.read() as s:
            rows = outbox.list_messages(s, kind="reminder", limit=1000)
            queued = {m.incident_id: m.created_at - float(m.data["due_at"]) for m in rows}
            first = {m.incident_id: m for m in rows if isinstance(m, OutboxMessage)}
        rt.db.dispose()
    httpd.shutdown()
    delivered = sorted(at - float(body["data"]["due_at"]) for at, body in arrivals[:n])
    q = sorted(queued.values())
    out = {"reminders": float(len(first)), "queued_max": max(q), "queued_p50": statistics.median(q),
           "delivered_max": max(delivered), "delivered_p50": statistics.median(delivered)}
    print(f"{label}: {len(first)}/{n} reminders; lateness after due (server-clock s): queued p50 "
          f"{out['queued_p50']:.3f} max {out['queued_max']:.3f}; delivered p50 {out['delivered_p50']:.3f} "
          f"max {out['delivered_max']:.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incidents", type=int, default=8)
    ap.add_argument("--interval", type=float, default=5.0, help="internal-update interval for the real-clock run (s)")
    ap.add_argument("--speed", type=float, default=60.0, help="accelerated clock speed for the 10-minute run")
    args = ap.parse_args()
    real = run(f"real clock, {args.interval:g} s interval", RealClock(), args.interval, args.incidents, 1.0)
    fast = run(f"accelerated clock ×{args.speed:g}, 10 min interval", AcceleratedClock(args.speed), 600.0,
               args.incidents, args.speed)
    ok = real["delivered_max"] <= 1.0 and real["reminders"] == args.incidents
    print(f"goal: reminder within 1 s of due (real clock, delivered): {'MET' if ok else 'NOT MET'} "
          f"(max {real['delivered_max']:.3f} s); at ×{args.speed:g} the worst case is "
          f"{fast['delivered_max']:.2f} clock-s = {fast['delivered_max'] / args.speed:.3f} wall-s")


if __name__ == "__main__":
    main()
