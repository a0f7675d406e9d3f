"""The console in real headless Chromium against a real server: live updates, rollback, the two-person rule,
the composer's required facts, a viewer's powerlessness, and screenshots for the README."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, make_settings
from tests.web import browser as chromium
from tests.web import seed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium.available(), reason=f"needs Chromium at {chromium.CHROMIUM} (Debian package chromium)"),
]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium.chromium() as b:
        yield b


def _no_reload_marker(page: Any) -> None:
    page.evaluate("window.__stillTheSamePage = 42")


def _same_page(page: Any) -> bool:
    return bool(page.evaluate("window.__stillTheSamePage === 42"))


def test_incident_appears_live_and_its_timeline_grows(server: LiveServer, browser: Any) -> None:
    page = chromium.sign_in(browser, server.url, server.token("responder", handle="rita"))
    try:
        chromium.wait_live(page)
        _no_reload_marker(page)
        assert page.locator("tr[data-incident]").count() == 0
        api = server.client("responder", handle="rita")
        inc = seed.open_incident(api, time.time())
        row = page.locator(f"tr[data-incident='{inc['id']}']")
        row.wait_for(timeout=10_000)
        assert "Refund answers cite the wrong policy" in row.inner_text()
        assert "SEV2" in row.inner_text() and "37 req" in row.inner_text()
        assert _same_page(page), "the incident appeared by a reload, not live"

        row.locator("a").click()
        page.wait_for_url(f"{server.url}/console/incidents/{inc['id']}")
        chromium.wait_live(page)
        _no_reload_marker(page)
        before = page.locator("#timeline li[data-seq]").count()
        r = api.post(f"/v1/incidents/{inc['id']}/notes", json={"text": "support sees a spike of refund complaints"})
        assert r.status_code == 201, r.text
        page.locator("#timeline li", has_text="support sees a spike of refund complaints").wait_for(timeout=10_000)
        assert page.locator("#timeline li[data-seq]").count() == before + 1
        assert _same_page(page)
    finally:
        page.context.close()


def test_rollback_from_the_suspects_panel(server: LiveServer, browser: Any) -> None:
    now = time.time()
    api = server.client("responder", handle="tess")
    seed.rollout(api, now)
    assert server.client("ingest", handle="app").post("/v1/events", json=seed.events(now)).status_code == 200
    inc = seed.open_incident(api, now)
    before = api.get("/v1/controls/snapshot").json()
    assert before["configs"][seed.KEY]["candidate"] == "v42"

    page = chromium.sign_in(browser, server.url, server.token("responder", handle="tess"))
    try:
        page.goto(f"{server.url}/console/incidents/{inc['id']}")
        panel = page.locator("#suspects")
        assert "score 0.91" in panel.inner_text()
        panel.get_by_role("button", name="Roll back").click()
        dialog = page.locator("dialog#confirm")
        dialog.wait_for(state="visible")
        text = dialog.inner_text()
        assert "Stop the rollout of prompt/refund-assistant v42" in text and "back to v41" in text
        dialog.get_by_role("button", name="Confirm").click()
        page.locator("#flash .flash.ok", has_text="rolled back prompt/refund-assistant: v42 → v41").wait_for(
            timeout=10_000)
        page.locator("#timeline li.k-change-rollback").wait_for(timeout=10_000)
    finally:
        page.context.close()

    (change,) = api.get("/v1/changes", params={"type": "rollback"}).json()
    assert change["actor"] == "tess" and change["incident"] == inc["id"]
    assert (change["from"], change["to"]) == ("v42", "v41")
    after = api.get("/v1/controls/snapshot").json()
    assert after["revision"] > before["revision"]
    assert after["configs"][seed.KEY]["candidate"] is None and after["configs"][seed.KEY]["stable"] == "v41"


APPROVAL_RB = """\
name: risky-reenable
trigger: {workflows: ["*"], failure_types: [account_action]}
rollback_option: {config: suspect}
communication: {template: user_update}
postmortem_owner: risk_owner
steps:
  - id: pause-refunds
    type: kill_switch
    scope: {action: issue_refund}
    approval: risk_owner
    auto: false
"""


@pytest.fixture
def runbook_server(tmp_path: Path) -> Iterator[LiveServer]:
    d = tmp_path / "runbooks"
    d.mkdir()
    (d / "risky.yaml").write_text(APPROVAL_RB)
    srv = LiveServer(make_settings(f"sqlite:///{tmp_path}/codeblue.db", tmp_path, runbooks_dir=d)).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_two_person_rule_on_a_risk_owner_step(runbook_server: LiveServer, browser: Any) -> None:
    srv = runbook_server
    rita_token = srv.token("responder", "risk_owner", handle="rita")
    olga_token = srv.token("risk_owner", handle="olga")
    api = srv.client("responder", handle="rita")
    r = api.post("/v1/incidents", json={"title": "Refunds sent to the wrong account", "workflows": ["refund-desk"],
                                        "failure_type": "account_action", "severity": "SEV1"})
    assert r.status_code == 201, r.text
    inc = r.json()
    url = f"{srv.url}/console/incidents/{inc['id']}"

    rita = chromium.sign_in(browser, srv.url, rita_token)
    olga = chromium.sign_in(browser, srv.url, olga_token)
    try:
        rita.goto(url)
        step = rita.locator("li.step[data-step='pause-refunds']")
        assert "needs risk owner" in step.inner_text()
        step.get_by_role("button", name="Request").click()
        step = rita.locator("li.step[data-step='pause-refunds'].s-awaiting_approval")
        step.wait_for(timeout=10_000)
        step.get_by_role("button", name="Approve").click()
        why = "rita asked for step pause-refunds and cannot also approve it (two-person rule)"
        rita.locator("#flash .flash.err", has_text=why).wait_for(timeout=10_000)
        assert why in rita.locator("li.step[data-step='pause-refunds'] .form-msg.err").inner_text(), \
            "the refusal is shown next to the button"

        olga.goto(url)
        ostep = olga.locator("li.step[data-step='pause-refunds']")
        assert ostep.get_by_role("button", name="Request").count() == 0, "olga is no responder"
        ostep.get_by_role("button", name="Approve").click()
        olga.locator("#flash .flash.ok", has_text="olga approved step pause-refunds").wait_for(timeout=10_000)
    finally:
        rita.context.close()
        olga.context.close()

    (run,) = api.get(f"/v1/incidents/{inc['id']}/runbook").json()["runs"]
    (st,) = run["steps"]
    assert st["requested_by"] == "rita" and st["approved_by"] == "olga"
    timeline = api.get(f"/v1/incidents/{inc['id']}/timeline", params={"limit": 1000}).json()["entries"]
    refused = [e for e in timeline if e["kind"] == "runbook.approval.refused"]
    assert [e["actor"] for e in refused] == ["rita"]


def test_composer_refuses_an_update_without_a_required_fact(server: LiveServer, browser: Any) -> None:
    api = server.client("responder", handle="cora")
    inc = seed.open_incident(api, time.time())
    page = chromium.sign_in(browser, server.url, server.token("responder", handle="cora"))
    try:
        page.goto(f"{server.url}/console/incidents/{inc['id']}")
        assert page.locator("#comms table.due").inner_text().count("\n") >= 1
        page.locator("#composer summary").click()
        form = page.locator("form.composer-form")
        form.locator("select[name=audience]").select_option("status_page")
        assert form.locator("label[data-fact=alternatives]").is_visible()
        assert not form.locator("label[data-fact=eta]").is_visible()
        form.locator("textarea[name=fact_feature]").fill("Refund help in the support assistant")
        form.locator("textarea[name=fact_actions]").fill("We switched refund answers to a human queue")
        form.get_by_role("button", name="Publish").click()
        msg = form.locator(".form-msg.err")
        msg.wait_for(timeout=10_000)
        assert "facts.alternatives is missing" in msg.inner_text()
        assert "safe alternatives" in msg.inner_text()
        assert form.locator("textarea[name=fact_alternatives]").get_attribute("aria-invalid") == "true"
        assert api.get(f"/v1/incidents/{inc['id']}/updates").json() == [], "nothing was published"

        form.locator("textarea[name=fact_alternatives]").fill("Refund requests by e-mail are answered by people")
        form.locator("input[name=fact_status_url]").fill("https://status.example.test")
        form.get_by_role("button", name="Publish").click()
        page.locator("#flash .flash.ok", has_text="status page update published").wait_for(timeout=10_000)
        page.locator("#comms li", has_text="status page update by cora").wait_for(timeout=10_000)
    finally:
        page.context.close()
    (upd,) = api.get(f"/v1/incidents/{inc['id']}/updates").json()
    assert upd["audience"] == "status_page" and upd["author"] == "cora"
    assert upd["facts"]["alternatives"].startswith("Refund requests by e-mail")


def test_a_viewer_sees_no_actions_and_forged_posts_are_refused(server: LiveServer, browser: Any) -> None:
    now = time.time()
    api = server.client("responder", handle="rita")
    seed.rollout(api, now)
    inc = seed.open_incident(api, now)
    page = chromium.sign_in(browser, server.url, server.token("viewer", handle="vic"))
    responder = chromium.sign_in(browser, server.url, server.token("responder", handle="rita"))
    try:
        page.goto(f"{server.url}/console/incidents/{inc['id']}")
        page.wait_for_selector("#timeline li[data-seq]")
        assert page.locator("main form").count() == 0, "a viewer is offered no form at all"
        assert page.locator("main button").count() == 0
        assert "Stop the rollout of prompt/refund-assistant v42" in page.locator("#suspects").inner_text()
        csrf = page.locator("body").get_attribute("data-csrf")
        assert csrf

        forged = page.request.post(f"{server.url}/console/incidents/{inc['id']}/notes",
                                   form={"text": "forged by a viewer", "csrf": csrf})
        assert forged.status == 403
        assert forged.headers["content-type"] == "application/problem+json"
        assert "responder" in forged.json()["detail"]
        forged = page.request.post(f"{server.url}/console/configs/prompt/refund-assistant/rollback",
                                   form={"csrf": csrf, "incident_id": str(inc["id"])})
        assert forged.status == 403

        responder.goto(f"{server.url}/console/incidents/{inc['id']}")
        no_csrf = responder.request.post(f"{server.url}/console/incidents/{inc['id']}/notes",
                                         form={"text": "no csrf token"})
        assert no_csrf.status == 403
        assert "CSRF" in no_csrf.json()["detail"]
        wrong = responder.request.post(f"{server.url}/console/incidents/{inc['id']}/notes",
                                       form={"text": "someone else's token", "csrf": csrf})
        assert wrong.status == 403, "a CSRF token from another session is not accepted"
    finally:
        page.context.close()
        responder.context.close()
    texts = [e["text"] for e in api.get(f"/v1/incidents/{inc['id']}/timeline").json()["entries"]]
    assert not any("forged" in t or "csrf" in t or "someone else" in t for t in texts)
    assert api.get("/v1/controls/snapshot").json()["configs"][seed.KEY]["candidate"] == "v42"


def test_screenshots_of_the_incident_page(sqlite_server: LiveServer, browser: Any, artifacts: Path) -> None:
    srv = sqlite_server
    now = time.time()
    api = srv.client("responder", "risk_owner", handle="rita")
    seed.rollout(api, now)
    assert srv.client("ingest", handle="app").post("/v1/events", json=seed.events(now, 3000)).status_code == 200
    r = api.post("/v1/changes", json={"kind": "deploy", "name": "support-bot", "from": "1.4.1", "to": "1.4.2",
                                      "time": now - 960, "workflows": [seed.WF]})
    assert r.status_code == 201, r.text
    srv.token("responder", handle="tess")
    inc = seed.open_incident(api, now, roles={"incident_lead": "rita", "technical_lead": "tess"})
    iid = inc["id"]
    api.post(f"/v1/incidents/{iid}/ack")
    api.post(f"/v1/incidents/{iid}/milestones", json={"name": "impact_confirmed"})
    r = api.post("/v1/controls", json={"type": "fallback", "scope": {"workflow": seed.WF},
                                       "params": {"fallback": "human_queue"}, "reason": "refund answers ungrounded", "ttl_s": 7200,
                                       "incident_id": iid})
    assert r.status_code in (200, 201), r.text
    api.post(f"/v1/incidents/{iid}/notes", json={"text": "v42 grounding failures confirmed in the chart"})
    shots = {}
    for label, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
        page = chromium.sign_in(browser, srv.url, srv.token("responder", "risk_owner", handle="rita"),
                                width=width, height=height)
        try:
            page.goto(f"{srv.url}/console/incidents/{iid}")
            page.wait_for_selector("#chart svg.chart", timeout=15_000)
            page.wait_for_selector("#postmortem pre, #postmortem p", timeout=15_000)
            chromium.wait_live(page)
            out = artifacts / f"console-incident-{label}.png"
            if label == "phone":  # the README shows the first screen; the whole page is kept as an artefact too
                page.screenshot(path=str(artifacts / "console-incident-phone-full.png"), full_page=True)
                page.screenshot(path=str(out))
            else:
                page.screenshot(path=str(out), full_page=True)
            shots[label] = out
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width + 1, f"the page overflows the {width}px viewport ({scroll_width}px)"
        finally:
            page.context.close()
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    for label, path in shots.items():
        assert path.stat().st_size > 20_000
        shutil.copyfile(path, DOCS_IMG / f"console-incident-{label}.png")


def test_keyboard_only_sign_in_and_note(sqlite_server: LiveServer, browser: Any) -> None:
    srv = sqlite_server
    inc = seed.open_incident(srv.client("responder", handle="kim"), time.time())
    ctx = browser.new_context(viewport={"width": 1024, "height": 800})
    page = ctx.new_page()
    try:
        page.goto(f"{srv.url}/console/login?next=/console/incidents/{inc['id']}")
        # the token field has autofocus; on a loaded machine it may take a moment to land, so wait for it
        page.wait_for_function("document.activeElement && document.activeElement.id === 'token'")
        page.keyboard.type(srv.token("responder", handle="kim"))
        page.keyboard.press("Enter")
        page.wait_for_url(f"{srv.url}/console/incidents/{inc['id']}")
        page.focus("#note-text")
        page.keyboard.type("typed without a mouse")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.locator("#timeline li", has_text="typed without a mouse").wait_for(timeout=10_000)
    finally:
        ctx.close()
    with httpx.Client(base_url=srv.url) as c:
        assert c.get(f"/console/incidents/{inc['id']}").status_code == 303
