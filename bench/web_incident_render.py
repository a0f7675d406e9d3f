"""Figure: the console's incident page with 5,000 timeline entries renders server-side in ≤ 200 ms.

    .venv/bin/python bench/web_incident_render.py [--entries 5000] [--events 20000] [--runs 30]
        [--backend sqlite|postgres|both] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

A real server (uvicorn on loopback, in this process) holds one incident with `--entries` timeline entries (notes,
control and change entries, milestones — written through `incidents.append_entry`), a prompt rolled out to 10 %,
and `--events` stored events on the incident's workflow over the last two hours (for the signals chart). A
signed-in console session then GETs the incident page `--runs` times; the figure is the median and p95 of the
full HTTP request on loopback (session check, every inline panel: header, checklist derived from the whole
timeline, roles and on-call, the newest 200 timeline entries, suspects with their rollback plans, runbook,
communication cadence, audit progress, controls).

Also timed, same run:
- peer: the same page rendering the whole timeline (no window) — what a naive page would cost;
- the signals chart panel, which the page loads right after itself (indicators from the stored events);
- an older timeline window (`?before=`), to show paging costs the same as the newest window.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from codeblue.app import bootstrap_admin, build_runtime, create_app
from codeblue.incidents import service as incidents
from codeblue.settings import Settings

WF = "support-chat"
KEY = "prompt/refund-assistant"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_database(base: str) -> tuple[str, Any]:
    import psycopg

    name = "cb_bench_" + secrets.token_hex(4)
    parts = urlsplit(base.replace("postgresql+psycopg://", "postgresql://"))
    admin_url = urlunsplit(parts)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = urlunsplit(parts._replace(path="/" + name)).replace("postgresql://", "postgresql+psycopg://", 1)
    return url, drop


class Server:
    def __init__(self, settings: Settings) -> None:
        import uvicorn

        self.port = free_port()
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": self.port})
        self.rt = build_runtime(self.settings)
        self.admin = bootstrap_admin(self.rt) or ""
        app = create_app(self.settings, rt=self.rt)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.rt.db.dispose()

    def token(self, handle: str, roles: list[str]) -> str:
        r = httpx.post(f"{self.url}/v1/tokens", json={"handle": handle, "roles": roles},
                       headers={"Authorization": f"Bearer {self.admin}"})
        r.raise_for_status()
        return str(r.json()["token"])


def seed(srv: Server, entries: int, n_events: int) -> int:
    api = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token('rita', ['responder'])}"},
                       timeout=60)
    ingest = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token('app', ['ingest'])}"},
                          timeout=60)
    now = time.time()
    for v in ("v41", "v42"):
        api.post("/v1/configs/prompt/refund-assistant/versions",
                 json={"version": v, "content": f"assistant {v}", "workflows": [WF]}).raise_for_status()
    api.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v41"}).raise_for_status()
    api.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v42", "fraction": 0.1}).raise_for_status()
    batch = []
    for i in range(n_events):
        t = now - 7200 + i * (7190 / n_events)
        bad = i % 10 == 0 and t > now - 1800
        batch.append({"time": t, "workflow": WF, "kind": "response", "status": 200,
                      "grounded": (i % 3 != 0) if bad else (i % 25 != 0), "subject": f"acct-{i % 500}",
                      "trace_id": f"t{i}", "versions": {KEY: "v42" if bad else "v41"}})
        if len(batch) == 5000:
            ingest.post("/v1/events", json=batch).raise_for_status()
            batch = []
    if batch:
        ingest.post("/v1/events", json=batch).raise_for_status()
    r = api.post("/v1/incidents", json={
        "title": "Refund answers cite the wrong policy", "workflows": [WF], "severity": "SEV2",
        "failure_type": "answer_quality", "harm": {"requests": 412, "subjects": 377, "started_at": now - 1800,
                                                    "growing": True},
        "suspects": [{"kind": "prompt", "name": "refund-assistant", "version": "v42", "score": 0.9,
                      "evidence": "v42 serves 33% ungrounded answers vs 4% on v41", "rollback": True}],
        "data": {"indicator": "grounding_failure_rate"}})
    r.raise_for_status()
    iid = int(r.json()["id"])
    left = entries - int(r.json()["chain"]["count"])
    kinds = ("note", "note", "note", "user_report", "triage")
    while left > 0:
        n = min(500, left)
        with srv.rt.db.write() as s:
            for i in range(n):
                incidents.append_entry(s, srv.rt, incident_id=iid, kind=kinds[i % len(kinds)], actor="rita",
                                       text=f"observation {left - i}: refund answer for order {i} cited the 2023 "
                                            f"policy; customer asked again by e-mail")
        left -= n
    return iid


def login(srv: Server) -> httpx.Client:
    c = httpx.Client(base_url=srv.url, timeout=60)
    html = c.get("/console/login").text
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = c.post("/console/login", data={"token": srv.token("vic", ["viewer"]), "csrf": csrf})
    assert r.status_code == 303, r.text
    return c


def timed(c: httpx.Client, path: str, runs: int) -> list[float]:
    c.get(path).raise_for_status()  # warm up (template compile, connection)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = c.get(path)
        out.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms"


def run(backend: str, url: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=url, data_dir=Path(tmp) / "data", workers=False)
        with Server(settings) as srv:
            t0 = time.perf_counter()
            iid = seed(srv, args.entries, args.events)
            print(f"[{backend}] seeded incident #{iid} with {args.entries} timeline entries and {args.events} events "
                  f"in {time.perf_counter() - t0:.1f}s")
            c = login(srv)
            page = f"/console/incidents/{iid}"
            html = c.get(page).text
            shown = html.count("data-seq=")
            print(f"[{backend}] page size {len(html) / 1024:.0f} KiB, {shown} timeline entries shown "
                  f"(window {srv.rt.settings.console_timeline_page})")
            res = timed(c, page, args.runs)
            print(f"[{backend}] FIGURE incident page, {args.entries} entries (windowed):  {summary(res)}   "
                  f"goal ≤ 200 ms: {'met' if statistics.median(res) <= 200 else 'NOT met'}")
            res = timed(c, f"{page}?before={args.entries // 2}", args.runs)
            print(f"[{backend}]        older window (?before={args.entries // 2}):          {summary(res)}")
            res = timed(c, f"{page}/panels/chart", max(5, args.runs // 3))
            print(f"[{backend}]        signals chart panel ({args.events} events):       {summary(res)}")
            srv.rt.settings.console_timeline_page = args.entries + 10
            html = c.get(page).text
            res = timed(c, page, max(5, args.runs // 3))
            print(f"[{backend}] PEER   same page, whole timeline ({html.count('data-seq=')} entries): {summary(res)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=5000)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("CODEBLUE_TEST_POSTGRES_URL",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    print(f"console incident page bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as d:
            run("sqlite", f"sqlite:///{d}/bench.db", args)
    if args.backend in ("postgres", "both"):
        url, drop = pg_database(args.pg_url)
        try:
            run("postgres", url, args)
        finally:
            drop()


if __name__ == "__main__":
    main()
