"""The public status page: no token, components and public updates only, summary.json in the Atlassian
Statuspage shape, an Atom feed, and a real headless Chromium render at phone and desktop width."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from tests.comms.conftest import MakeServer, clock_of, open_incident
from tests.support import LiveServer

SECRET_TITLE = "prompt v42 regression INTERNAL-TITLE"
INTERNAL_NOTE = "INTERNAL-NOTE suspect the router flag flipped by dana"
FACTS = {
    "title": "Refunds delayed in the support assistant",
    "feature": "Refunds in the support assistant",
    "alternatives": "The help-centre refund form works normally",
    "actions": "We paused assistant refunds and are verifying recent ones",
    "status_url": "https://status.example.test",
}


def seed(srv: LiveServer) -> int:
    inc = open_incident(srv, title=SECRET_TITLE, summary="INTERNAL-SUMMARY wrong entity", severity="SEV2")
    iid = int(inc["id"])
    resp = srv.client("responder")
    r = resp.post(f"/v1/incidents/{iid}/updates", json={"audience": "internal", "text": INTERNAL_NOTE})
    assert r.status_code == 201
    r = resp.post(f"/v1/incidents/{iid}/updates", json={"audience": "status_page", "facts": FACTS})
    assert r.status_code == 201
    clock_of(srv).advance(900)
    r = resp.post(f"/v1/incidents/{iid}/updates", json={
        "audience": "status_page", "text": "Refunds from the assistant are flowing again for most customers.",
        "facts": {**FACTS, "status": "monitoring", "component_status": "degraded_performance"}})
    assert r.status_code == 201
    # an incident that never went public stays off the page
    open_incident(srv, title="INTERNAL-ONLY-INCIDENT", workflows=["repayment-advice"])
    return iid


def test_status_page_shows_public_updates_only(make_server: MakeServer) -> None:
    srv = make_server(config={"status_page": {"title": "Acme AI status", "components": [
        {"workflow": "refund-desk", "name": "Refund assistant"}, {"workflow": "code-assist", "name": "Code assistant"}]}})
    iid = seed(srv)
    anon = httpx.Client(base_url=srv.url)
    html = anon.get("/status")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    text = html.text
    for leak in ("INTERNAL", "dana", "wrong entity", "prompt v42"):
        assert leak not in text
    assert "Refunds delayed in the support assistant" in text
    assert text.index("Monitoring") < text.index("Investigating")  # newest update first
    assert "The help-centre refund form works normally" in text and "https://status.example.test" in text
    assert "Refund assistant" in text and "Code assistant" in text and "<script" not in text
    assert anon.get("/status/status.css").headers["content-type"].startswith("text/css")

    summary = anon.get("/status/summary.json").json()
    assert set(summary) == {"page", "components", "incidents", "scheduled_maintenances", "status"}
    assert summary["page"]["name"] == "Acme AI status"
    comps = {c["name"]: c for c in summary["components"]}
    assert comps["Refund assistant"]["status"] == "degraded_performance"
    assert comps["Code assistant"]["status"] == "operational"
    assert "repayment-advice" not in {c["id"] for c in summary["components"]}
    [inc] = summary["incidents"]
    assert inc["id"] == str(iid) and inc["status"] == "monitoring" and inc["impact"] == "major"
    assert [u["status"] for u in inc["incident_updates"]] == ["monitoring", "investigating"]
    assert all({"id", "status", "body", "created_at", "display_at", "incident_id"} <= set(u)
               for u in inc["incident_updates"])
    assert summary["status"] == {"indicator": "major", "description": "Partial System Outage"}
    assert "INTERNAL" not in anon.get("/status/summary.json").text

    feed = anon.get("/status/feed.atom")
    assert feed.headers["content-type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    root = ET.fromstring(feed.content)
    entries = root.findall("a:entry", ns)
    assert len(entries) == 2 and "INTERNAL" not in feed.text
    assert entries[0].findtext("a:title", namespaces=ns) == "Refunds delayed in the support assistant — Monitoring"

    # Resolved: the page returns to operational and the incident moves to recent history.
    r = srv.client("responder").post(f"/v1/incidents/{iid}/updates",
                                     json={"audience": "status_page", "facts": {**FACTS, "status": "resolved"}})
    assert r.status_code == 201
    summary = anon.get("/status/summary.json").json()
    assert summary["incidents"] == [] and summary["status"]["indicator"] == "none"
    assert all(c["status"] == "operational" for c in summary["components"])
    page = anon.get("/status").text
    assert "All Systems Operational" in page and "Recent history" in page and "Refunds delayed" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-dev-shm-usage", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian chromium (/usr/bin/chromium)")
def test_status_page_in_headless_chromium(make_server: MakeServer, artifacts: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("rendering does not depend on the database; SQLite is enough")
    srv = make_server(config={"status_page": {"title": "Acme AI status", "components": [
        {"workflow": "refund-desk", "name": "Refund assistant", "description": "Refunds and returns"},
        {"workflow": "code-assist", "name": "Code assistant"}]}})
    seed(srv)
    url = f"{srv.url}/status"
    dom = chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Refunds delayed in the support assistant" in dom.stdout
    assert "The help-centre refund form works normally" in dom.stdout
    assert "INTERNAL" not in dom.stdout and "dana" not in dom.stdout
    for name, width, height in (("phone", 390, 1100), ("desktop", 1280, 900)):
        out = artifacts / f"comms-status-{name}.png"
        out.unlink(missing_ok=True)
        shot = chromium(f"--window-size={width},{height}", f"--screenshot={out}", url)
        assert shot.returncode == 0 and out.exists(), shot.stderr[-2000:]
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") == width  # the PNG is as wide as the viewport asked for


def test_codeblue_serve_serves_the_status_page_without_a_token(tmp_path: Path) -> None:
    from tests.support import ServerProcess

    proc = ServerProcess(f"sqlite:///{tmp_path}/cb.db", tmp_path / "data").start()
    try:
        r = httpx.get(f"{proc.url}/status", timeout=10)
        assert r.status_code == 200 and "All Systems Operational" in r.text
        summary = httpx.get(f"{proc.url}/status/summary.json", timeout=10).json()
        assert summary["status"]["indicator"] == "none" and summary["incidents"] == []
        assert httpx.get(f"{proc.url}/status/feed.atom", timeout=10).status_code == 200
        assert httpx.get(f"{proc.url}/v1/comms/outbox", timeout=10).status_code == 401
    finally:
        proc.stop()
