"""Figure: a change made through the API shows on an open incident page in ≤ 1 s (measured in Chromium).

    .venv/bin/python bench/web_live_update.py [--trials 40] [--backend sqlite|postgres|both]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--chromium /usr/bin/chromium]

A real server (uvicorn on loopback in this process, background jobs on) and a real headless Chromium with the
incident page open and its SSE stream connected. Each trial makes one change through the public API — a
timeline note, a containment control linked to the incident, lifting it again, or a config activation linked
to the incident — and the page's own script records (`Date.now()`, same machine clock as this process) when
the change's marker text is in the DOM. Latency = that moment − the moment just before the API request was
sent, so it includes the API call itself, the commit, the watcher round, the SSE message, the fragment fetch
and the DOM update. The script prints the median, p95 and max, and the API call's own share.

Also measured: the same with the in-process wake-up disabled (a change committed by another replica, seen only
by the watcher's poll every `console_poll_s`, 0.5 s by default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_incident_render import Server, pg_database

from codeblue.settings import Settings

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
WF = "support-chat"

WATCH = """(m) => {
  window.__seen = window.__seen || {};
  if (window.__seen[m]) return true;
  if (document.body.textContent.includes(m)) { window.__seen[m] = Date.now(); return true; }
  return false;
}"""


def trial(page: Any, api: httpx.Client, iid: int, i: int, kind: str, state: dict[str, Any]) -> tuple[float, float]:
    marker = f"probe-{kind}-{i}-{time.time_ns() % 1_000_000}"
    t0 = time.time() * 1000
    if kind == "note":
        r = api.post(f"/v1/incidents/{iid}/notes", json={"text": marker})
    elif kind == "control":
        r = api.post("/v1/controls", json={"type": "fallback", "scope": {"workflow": WF, "action": f"a{i}"},
                                           "params": {"fallback": "human_queue"}, "reason": marker, "ttl_s": 3600,
                                           "incident_id": iid})
        state["control"] = r.json().get("id")
    elif kind == "lift":
        r = api.request("DELETE", f"/v1/controls/{state['control']}", json={"reason": marker})
    else:
        v = marker  # the timeline entry names the version activated
        api.post("/v1/configs/prompt/refund-assistant/versions",
                 json={"version": v, "content": f"assistant {v}", "workflows": [WF]}).raise_for_status()
        r = api.post("/v1/configs/prompt/refund-assistant/activate",
                     json={"version": v, "incident_id": iid, "note": marker})
    api_ms = time.time() * 1000 - t0
    assert r.status_code < 300, r.text
    if kind == "lift":  # the lift entry carries the control id, not the marker: look for the timeline entry
        page.wait_for_function(
            "(n) => document.querySelectorAll('#timeline li.k-control-lifted').length >= n",
            arg=state.setdefault("lifts", 0) + 1, polling="raf", timeout=10_000)
        state["lifts"] += 1
        seen = time.time() * 1000
    else:
        page.wait_for_function(WATCH, arg=marker, polling="raf", timeout=10_000)
        seen = float(page.evaluate("(m) => window.__seen[m]", marker))
    return seen - t0, api_ms


def run(backend: str, url: str, args: argparse.Namespace, *, wake: bool) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=url, data_dir=Path(tmp) / "data")
        with Server(settings) as srv:
            from codeblue.web import watch

            original = watch.wake_after_commit
            if not wake:
                def no_wake(_s: Any, _rt: Any) -> None:
                    return None

                watch.wake_after_commit = no_wake  # type: ignore[assignment]
            token = srv.token("rita", ["responder"])
            api = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            api.post("/v1/configs/prompt/refund-assistant/versions",
                     json={"version": "v41", "content": "assistant v41", "workflows": [WF]}).raise_for_status()
            api.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v41"}).raise_for_status()
            r = api.post("/v1/incidents", json={"title": "live update probe", "workflows": [WF],
                                                "failure_type": "answer_quality", "severity": "SEV2"})
            iid = int(r.json()["id"])
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.goto(f"{srv.url}/console/login")
                    page.fill("#token", token)
                    page.click("button[type=submit]")
                    page.wait_for_url(f"{srv.url}/console/incidents")
                    page.goto(f"{srv.url}/console/incidents/{iid}")
                    page.wait_for_selector("#live[data-state=on]", timeout=15_000)
                    kinds = ("note", "control", "lift", "activate")
                    state: dict[str, Any] = {}
                    lat: dict[str, list[float]] = {k: [] for k in kinds}
                    api_ms: list[float] = []
                    for i in range(args.trials):
                        kind = kinds[i % len(kinds)]
                        if os.environ.get("BENCH_DEBUG"):
                            print("trial", i, kind, flush=True)
                        ms, a = trial(page, api, iid, i, kind, state)
                        lat[kind].append(ms)
                        api_ms.append(a)
                        time.sleep(0.2)
                finally:
                    browser.close()
                    watch.wake_after_commit = original  # type: ignore[assignment]
    every = sorted(x for v in lat.values() for x in v)
    p95 = every[min(len(every) - 1, int(0.95 * len(every)))]
    label = "in-process wake-up" if wake else "poll only (another replica)"
    verdict = "met" if p95 <= 1000 else "NOT met"
    print(f"[{backend}] {'FIGURE' if wake else 'also  '} API change → visible in Chromium, {label}: median "
          f"{statistics.median(every):6.0f} ms   p95 {p95:6.0f} ms   max {every[-1]:6.0f} ms   "
          f"(n={len(every)}; API call median {statistics.median(api_ms):.0f} ms)"
          + (f"   goal ≤ 1 s at p95: {verdict}" if wake else ""))
    for k, v in lat.items():
        print(f"[{backend}]          {k:9s} median {statistics.median(v):6.0f} ms   max {max(v):6.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("CODEBLUE_TEST_POSTGRES_URL",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--no-poll-run", action="store_true", help="skip the poll-only measurement")
    args = ap.parse_args()
    if not os.path.exists(args.chromium):
        sys.exit(f"needs Chromium at {args.chromium}")
    print(f"console live-update bench: {os.cpu_count()} CPUs")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        for wake in (True, False) if not args.no_poll_run else (True,):
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as d:
                    run(backend, f"sqlite:///{d}/bench.db", args, wake=wake)
            else:
                url, drop = pg_database(args.pg_url)
                try:
                    run(backend, url, args, wake=wake)
                finally:
                    drop()


if __name__ == "__main__":
    main()
