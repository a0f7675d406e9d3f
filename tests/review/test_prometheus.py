"""`/metrics` scraped by a real Prometheus (Debian's binary, started here on loopback with a bearer token in its
scrape config); the open-incident count read back through Prometheus's HTTP API."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.review.helpers import move, open_incident
from tests.support import LiveServer, free_port

PROMETHEUS = shutil.which("prometheus")


def test_metrics_needs_a_viewer_token_and_speaks_the_exposition_format(sqlite_server: LiveServer) -> None:
    with httpx.Client(base_url=sqlite_server.url) as anon:
        r = anon.get("/metrics")
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    with sqlite_server.client("ingest") as ing:
        assert ing.get("/metrics").status_code == 403
    with sqlite_server.client("responder") as c:
        open_incident(c, title="one", workflows=["m-desk"])
    with sqlite_server.client("viewer") as v:
        r = v.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        body = r.text
    assert "# TYPE codeblue_incidents_open gauge" in body
    assert "codeblue_incidents_open 1.0" in body
    assert 'codeblue_incidents{severity="SEV2",status="triggered"} 1.0' in body
    assert "codeblue_outbox_backlog" in body and "codeblue_sdk_stream_clients" in body


@pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not installed (apt-get install prometheus)")
def test_real_prometheus_scrapes_open_incidents(server: LiveServer, tmp_path: Path) -> None:
    with server.client("responder", handle="ana") as c:
        ids = [open_incident(c, title=f"incident {i}", workflows=["prom-desk"])["id"] for i in range(3)]
        move(c, ids[0], "resolved")  # resolved: no longer open
    token = server.token("viewer", handle="prometheus")
    (tmp_path / "token").write_text(token)
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: codeblue\n"
        "    metrics_path: /metrics\n"
        "    authorization:\n"
        f"      credentials_file: {tmp_path / 'token'}\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.port}']\n"
    )
    proc = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v1/query"
        value = None
        health = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"prometheus exited: {out[-2000:]}")
            try:
                r = httpx.get(api, params={"query": "codeblue_incidents_open"}, timeout=5)
                result = r.json()["data"]["result"] if r.status_code == 200 else []
                if result:
                    value = result[0]["value"][1]
                    labels = result[0]["metric"]
                    break
                t = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
                health = [(x["health"], x.get("lastError")) for x in t["data"]["activeTargets"]]
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert value is not None, f"Prometheus never stored codeblue_incidents_open; targets: {health}"
        assert value == "2"
        assert labels["job"] == "codeblue"
        r = httpx.get(api, params={"query": 'codeblue_incidents{status="resolved"}'}, timeout=5)
        resolved = sum(float(x["value"][1]) for x in r.json()["data"]["result"])
        assert resolved == 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
