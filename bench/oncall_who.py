"""Who is on call: answers per second for a realistic map, in process and over HTTP on loopback.

Builds 40 schedules (4 domains × 10 workflows, 3 layers each: a weekly base rotation of 6 people, a daily
business-hours layer with a weekday restriction, and a 12-hour follow-the-sun layer) in a few time zones,
plus 200 overrides, on SQLite (and PostgreSQL with --pg). Then asks `who_is_on_call` for random instants over
a year (which crosses two DST changes in every zone) and reports answers/s and p50/p95 latency, in process
(service call on one session) and through `GET /v1/oncall/who` with a live server.

    .venv/bin/python bench/oncall_who.py [--seconds 5] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Goal (ours; the issue sets none): p95 ≤ 10 ms for the whole map over HTTP. No peer runs here: the systems
that do this (PagerDuty, Opsgenie, Grafana OnCall) are hosted services.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import LiveServer, make_settings, postgres_database

from codeblue.clock import ManualClock
from codeblue.oncall import service
from codeblue.oncall.config import OverrideIn, ScheduleIn

ZONES = ["America/New_York", "Europe/Berlin", "Asia/Kolkata", "America/Los_Angeles", "Australia/Sydney"]
DOMAINS = ["infra", "feature", "risk", "ops"]
START = 1_767_225_600.0  # 2026-01-01 UTC


def build_map(srv: LiveServer) -> None:
    rt = srv.rt
    people = [f"p{i:03d}" for i in range(120)]
    admin = srv.admin()
    for h in people:
        admin.post("/v1/tokens", json={"handle": h, "roles": ["viewer"]}).raise_for_status()
    rng = random.Random(7)
    with rt.db.write() as s:
        n = 0
        for d in DOMAINS:
            for w in range(10):
                members = rng.sample(people, 6)
                spec = ScheduleIn.model_validate({
                    "name": f"{d}-wf{w}", "domain": d, "workflow": f"wf{w}" if w else None,
                    "timezone": ZONES[n % len(ZONES)],
                    "layers": [
                        {"name": "base", "rotation": "weekly", "handoff": "09:00", "start": "2025-12-29",
                         "members": members},
                        {"name": "business", "rotation": "daily", "handoff": "09:00", "start": "2026-01-05",
                         "members": members[:3],
                         "restrict": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}]},
                        {"name": "sun", "rotation": "custom", "length": "12h", "handoff": "07:00", "start": "2026-01-01",
                         "members": members[3:], "until": "2026-06-30T00:00:00Z"},
                    ],
                })
                service.create_schedule(s, rt, spec=spec, actor="bench")
                n += 1
        for _ in range(200):
            t = START + rng.uniform(0, 360 * 86400)
            sched = f"{rng.choice(DOMAINS)}-wf{rng.randrange(10)}"
            service.add_override(s, rt, ref=sched, actor="bench", spec=OverrideIn(
                handle=rng.choice(people), start=t, end=t + rng.uniform(3600, 3 * 86400)))


def measure(fn: object, seconds: float) -> tuple[int, list[float]]:
    lat: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        lat.append(time.perf_counter() - t0)
    return len(lat), lat


def report(label: str, n: int, lat: list[float], seconds: float) -> None:
    q = statistics.quantiles(lat, n=100)
    print(f"{label:<34} {n / seconds:8.0f} answers/s   p50 {q[49] * 1000:6.2f} ms   p95 {q[94] * 1000:6.2f} ms")


@contextlib.contextmanager
def backend(kind: str, pg: str | None, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/bench.db"
    else:
        import os

        os.environ["CODEBLUE_TEST_POSTGRES_URL"] = pg or ""
        with postgres_database() as url:
            yield url


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pg", default=None)
    args = ap.parse_args()
    kinds = ["sqlite"] + (["postgres"] if args.pg else [])
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp, backend(kind, args.pg, Path(tmp)) as url:
            run(kind, url, Path(tmp), args.seconds)


def run(kind: str, url: str, tmp: Path, seconds: float) -> None:
    clock = ManualClock(START)
    srv = LiveServer(make_settings(url, tmp, workers=False), clock).start()
    try:
        build_map(srv)
        rng = random.Random(1)
        print(f"-- {kind}: 40 schedules × 3 layers, 200 overrides, random instants over 2026")

        def in_process() -> None:
            with srv.rt.db.read() as s:
                rows = service.who_is_on_call(s, srv.rt, at=START + rng.uniform(0, 365 * 86400))
            assert len(rows) == 40

        n, lat = measure(in_process, seconds)
        report("who_is_on_call (whole map)", n, lat, seconds)

        def one_workflow() -> None:
            with srv.rt.db.read() as s:
                rows = service.who_is_on_call(s, srv.rt, workflow=f"wf{rng.randrange(1, 10)}",
                                              at=START + rng.uniform(0, 365 * 86400))
            assert len(rows) == 4

        n, lat = measure(one_workflow, seconds)
        report("who_is_on_call (one workflow)", n, lat, seconds)
        http = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.admin_token}"})

        def over_http() -> None:
            r = http.get("/v1/oncall/who", params={"at": START + rng.uniform(0, 365 * 86400)})
            assert r.status_code == 200 and len(r.json()["on_call"]) == 40

        n, lat = measure(over_http, seconds)
        report("GET /v1/oncall/who (whole map)", n, lat, seconds)
        http.close()
    finally:
        srv.stop()

if __name__ == "__main__":
    main()
