"""Console over plain HTTP (no browser): sessions, CSRF, role checks, windows, live updates, the panels' data."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from codeblue.auth.service import digest
from codeblue.errors import Unauthorized
from tests.support import LiveServer
from tests.web import seed


def _csrf(c: httpx.Client, path: str) -> str:
    r = c.get(path)
    assert r.status_code == 200, r.text
    return seed.page_csrf(r.text)


def test_session_cookie_is_httponly_strict_and_carries_no_token(server: LiveServer) -> None:
    token = server.token("responder", handle="rita")
    c = httpx.Client(base_url=server.url, timeout=30)
    r = c.get("/console/login")
    login_csrf = r.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = c.post("/console/login", data={"token": token, "csrf": login_csrf, "next": "/console/changes"})
    assert r.status_code == 303 and r.headers["location"] == "/console/changes"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("cb_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/console" in cookie
    value = c.cookies["cb_session"]
    assert token not in value and digest(token) not in value
    import base64

    payload = value.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert token not in decoded and digest(token) not in decoded
    page = c.get("/console/incidents")
    assert page.status_code == 200 and "rita" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert "no-store" in page.headers["cache-control"]


def test_login_refusals_and_safe_redirects(server: LiveServer) -> None:
    c = httpx.Client(base_url=server.url, timeout=30)
    r = c.get("/console/incidents")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next=")
    r = c.post("/console/login", data={"token": server.token("viewer", handle="vic")})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "csrf"
    login_csrf = c.get("/console/login").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = c.post("/console/login", data={"token": "cb_not_a_token", "csrf": login_csrf})
    assert r.status_code == 303 and "not+valid" in r.headers["location"]
    assert "cb_session" not in c.cookies
    ingest_only = server.token("ingest", handle="exporter")
    r = c.post("/console/login", data={"token": ingest_only, "csrf": login_csrf})
    assert r.status_code == 303 and "viewer" in r.headers["location"] and "cb_session" not in c.cookies
    r = c.post("/console/login", data={"token": server.token("viewer", handle="vic"), "csrf": login_csrf,
                                        "next": "//evil.example/console"})
    assert r.status_code == 303 and r.headers["location"] == "/console/incidents"


def test_forged_expired_and_revoked_sessions_are_refused(server: LiveServer) -> None:
    admin = server.admin()
    r = admin.post("/v1/tokens", json={"handle": "sam", "roles": ["responder"]})
    token, token_id = r.json()["token"], r.json()["id"]
    c = seed.login(server.url, token)
    value = c.cookies["cb_session"]
    payload, mac = value.split(".")
    forged = httpx.Client(base_url=server.url, timeout=30, cookies={"cb_session": payload + "." + mac[::-1]})
    assert forged.get("/console/incidents").status_code == 303
    # a session for another token id, signed with a wrong key, is just as dead
    other = httpx.Client(base_url=server.url, timeout=30, cookies={"cb_session": "eyJ0IjoxfQ." + mac})
    assert other.get("/console/incidents").status_code == 303
    assert c.get("/console/incidents").status_code == 200
    assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
    r = c.get("/console/incidents")
    assert r.status_code == 303, "revoking the token ends its console sessions"
    r = c.get("/console/fragments/incidents", headers={"X-Console-Fragment": "1"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def test_logout_needs_csrf_and_clears_the_cookie(server: LiveServer) -> None:
    c = seed.login(server.url, server.token("viewer", handle="vic"))
    assert c.post("/console/logout").status_code == 403
    token = server.token("viewer", handle="vic")
    other = seed.login(server.url, token)  # a second session of the same person stays signed in
    copied = httpx.Client(base_url=server.url, timeout=30, cookies={"cb_session": c.cookies["cb_session"]})
    assert copied.get("/console/incidents").status_code == 200
    r = c.post("/console/logout", data={"csrf": _csrf(c, "/console/incidents")})
    assert r.status_code == 303
    assert "cb_session" not in c.cookies
    # signing out ends the session server-side: a copy of the cookie is refused from now on
    assert copied.get("/console/incidents").status_code == 303
    r = copied.get("/console/fragments/incidents", headers={"X-Console-Fragment": "1"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert other.get("/console/incidents").status_code == 200


def test_actions_need_csrf_role_and_follow_the_service_rules(server: LiveServer) -> None:
    api = server.client("responder", handle="rita")
    inc = seed.open_incident(api, time.time())
    base = f"/console/incidents/{inc['id']}"
    c = seed.login(server.url, server.token("responder", handle="rita"))
    csrf = _csrf(c, base)
    json_h = {"Accept": "application/json"}

    assert c.post(f"{base}/notes", data={"text": "no token"}).status_code == 403
    assert c.post(f"{base}/notes", data={"text": "bad token", "csrf": csrf[::-1]}).status_code == 403
    r = c.post(f"{base}/notes", data={"text": "  ", "csrf": csrf}, headers=json_h)
    assert r.status_code == 422 and r.json()["field"] == "text"
    r = c.post(f"{base}/notes", data={"text": "from the console", "csrf": csrf}, headers=json_h)
    assert r.status_code == 200 and r.json()["ok"]
    r = c.post(f"{base}/notes", data={"text": "without script", "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"].startswith(base + "?msg=")
    r = c.post(f"{base}/notes", data={"text": "header token"}, headers={"X-CSRF-Token": csrf, **json_h})
    assert r.status_code == 200

    r = c.post(f"{base}/status", data={"to": "closed", "csrf": csrf}, headers=json_h)
    assert r.status_code == 403 and "lead" in r.json()["detail"], "closing needs a lead, as in the API"
    r = c.post(f"{base}/status", data={"to": "triggered", "csrf": csrf}, headers=json_h)
    assert r.status_code == 409, "an illegal move is the service's Conflict"
    r = c.post(f"{base}/status", data={"to": "triggered", "csrf": csrf})
    assert r.status_code == 303 and "err=" in r.headers["location"], "a plain form post is sent back with the error"
    r = c.post(f"{base}/milestones", data={"name": "mitigation_chosen", "csrf": csrf}, headers=json_h)
    assert r.status_code == 422 and r.json()["field"] == "path"
    r = c.post(f"{base}/controls", data={"type": "fallback", "workflow": "elsewhere", "reason": "x",
                                         "fallback": "human_queue", "expires_h": "1", "csrf": csrf}, headers=json_h)
    assert r.status_code == 422 and "not one of this incident's workflows" in r.json()["detail"]

    entries = api.get(f"/v1/incidents/{inc['id']}/timeline").json()["entries"]
    notes = [e for e in entries if e["kind"] == "note"]
    assert [(e["text"], e["actor"]) for e in notes] == [
        ("from the console", "rita"), ("without script", "rita"), ("header token", "rita")]


def test_bearer_tokens_work_without_csrf_and_roles_still_apply(server: LiveServer) -> None:
    inc = seed.open_incident(server.client("responder", handle="rita"), time.time())
    viewer = server.client("viewer", handle="vic")
    r = viewer.post(f"/console/incidents/{inc['id']}/notes", data={"text": "x"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    r = server.client("responder", handle="rita").post(f"/console/incidents/{inc['id']}/notes", data={"text": "x"},
                                                       headers={"Accept": "application/json"})
    assert r.status_code == 200


def test_checklist_is_derived_from_the_timeline(server: LiveServer) -> None:
    api = server.client("responder", handle="rita")
    inc = seed.open_incident(api, time.time())
    c = seed.login(server.url, server.token("responder", handle="rita"))
    panel = f"/console/incidents/{inc['id']}/panels/checklist"

    def ticked() -> dict[str, str]:
        html = c.get(panel).text
        return {m.group(2): m.group(1) for m in re.finditer(r'class="(done|todo)" data-check="(\w+)"', html)}

    assert set(ticked().values()) == {"todo"}
    api.post(f"/v1/incidents/{inc['id']}/milestones", json={"name": "impact_confirmed"})
    r = api.post("/v1/controls", json={"type": "kill_switch", "scope": {"workflow": seed.WF, "action": "issue_refund"},
                                       "params": {}, "reason": "stop refunds", "incident_id": inc["id"], "ttl_s": 600})
    assert r.status_code in (200, 201), r.text
    state = ticked()
    assert state == {"confirm_harm": "done", "contain": "done", "safe_mode": "todo", "evidence": "todo"}
    html = c.get(panel).text
    assert "kill switch #" in html and "rita at" in html

    csrf = _csrf(c, f"/console/incidents/{inc['id']}")
    r = c.post(f"/console/incidents/{inc['id']}/controls",
               data={"type": "fallback", "workflow": seed.WF, "fallback": "static_answer", "reason": "safe answers",
                     "target": "We are checking refund eligibility by hand today.",
                     "expires_h": "2", "csrf": csrf}, headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    r = c.post(f"/console/incidents/{inc['id']}/evidence", data={"csrf": csrf}, headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    assert ticked() == {"confirm_harm": "done", "contain": "done", "safe_mode": "done", "evidence": "done"}
    assert "fallback static_answer" in c.get(panel).text


def test_timeline_is_windowed_newest_first(server: LiveServer) -> None:
    from codeblue.incidents import service as incidents

    inc = seed.open_incident(server.client("responder", handle="rita"), time.time())
    with server.rt.db.write() as s:
        for i in range(450):
            incidents.append_entry(s, server.rt, incident_id=inc["id"], kind="note", text=f"entry number {i}",
                                   actor="rita")
    c = seed.login(server.url, server.token("viewer", handle="vic"))
    total = inc["chain"]["count"] + 450
    html = c.get(f"/console/incidents/{inc['id']}").text
    seqs = [int(x) for x in re.findall(r'data-seq="(\d+)"', html)]
    assert seqs == list(range(total, total - 200, -1))
    assert f'?before={total - 199}#timeline' in html
    older = c.get(f"/console/incidents/{inc['id']}?before={total - 199}").text
    seqs = [int(x) for x in re.findall(r'data-seq="(\d+)"', older)]
    assert seqs == list(range(total - 200, total - 400, -1))
    oldest = c.get(f"/console/incidents/{inc['id']}?before=5").text
    assert [int(x) for x in re.findall(r'data-seq="(\d+)"', oldest)] == [4, 3, 2, 1]
    assert "older entries" not in oldest


def _read_sse(c: httpx.Client, url: str, out: list[str], ready: threading.Event, stop: threading.Event) -> None:
    with c.stream("GET", url, timeout=httpx.Timeout(30, read=20)) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            out.append(line)
            if line.startswith("event: hello"):
                ready.set()
            if stop.is_set() or (any("event: changed" in x for x in out) and line == ""):
                return


@pytest.mark.parametrize("what", ["note", "control"])
def test_sse_tells_the_page_what_changed(server: LiveServer, what: str) -> None:
    api = server.client("responder", handle="rita")
    inc = seed.open_incident(api, time.time())
    c = seed.login(server.url, server.token("viewer", handle="vic"))
    lines: list[str] = []
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=_read_sse, args=(c, f"/console/events?incident={inc['id']}", lines, ready, stop),
                         daemon=True)
    t.start()
    assert ready.wait(15)
    if what == "note":
        api.post(f"/v1/incidents/{inc['id']}/notes", json={"text": "live"})
        want = f"incident:{inc['id']}"
    else:
        r = api.post("/v1/controls", json={"type": "kill_switch", "scope": {"workflow": "other-wf"}, "params": {},
                                           "reason": "unrelated", "ttl_s": 600})
        assert r.status_code in (200, 201), r.text
        want = "controls"
    t.join(20)
    stop.set()
    changed = [lines[i + 1] for i, x in enumerate(lines[:-1]) if x == "event: changed"]
    assert changed and any(want in x for x in changed), lines


def test_sse_needs_a_session(server: LiveServer) -> None:
    r = httpx.get(f"{server.url}/console/events?page=incidents", timeout=10)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def test_chart_convicts_the_suspect_version(server: LiveServer) -> None:
    now = time.time()
    api = server.client("responder", handle="rita")
    seed.rollout(api, now)
    assert server.client("ingest", handle="app").post("/v1/events", json=seed.events(now)).status_code == 200
    inc = seed.open_incident(api, now)
    c = seed.login(server.url, server.token("viewer", handle="vic"))
    html = c.get(f"/console/incidents/{inc['id']}/panels/chart").text
    assert html.count("<svg") >= 1 and "<polyline" in html
    rows = re.findall(r"<tr( class=\"convict\")?><td>(v4\d)[^<]*(?:<span[^>]*>suspect</span>)?</td><td class=\"num\">"
                      r"([\d.]+)%</td>", html)
    values = {v: (float(p), bool(cls)) for cls, v, p in rows}
    assert values["v42"][1] and not values["v41"][1]
    assert values["v42"][0] > 5 * values["v41"][0], values
    assert 'class="mark mark-onset"' in html and 'class="mark mark-change"' in html
    assert "prompt/refund-assistant v41→v42" in html


def test_controls_page_flags_a_failing_open_sdk(server: LiveServer) -> None:
    r = server.client("responder", handle="rita").post(
        "/v1/controls", json={"type": "breaker", "scope": {"workflow": "support-chat", "dependency": "vector-db"},
                              "params": {"state": "open"}, "reason": "vector db timeouts", "ttl_s": 900})
    assert r.status_code in (200, 201), r.text
    head = server.client("viewer", handle="vic").get("/v1/controls/snapshot").json()["revision"]
    ingest = server.client("ingest", handle="app")
    ok = {"client_id": "client-ok-0001", "environment": "production", "service": "support-bot", "host": "h1",
          "pid": 11, "revision": head, "source": "snapshot", "stale_for": 0.5, "connected": True,
          "defaults": {"support-chat.issue_refund": "fail_closed"}}
    bad = {**ok, "client_id": "client-bad-0002", "host": "h2", "pid": 12, "source": "default", "connected": False,
           "revision": 0, "stale_for": None, "on_defaults": True,
           "defaults": {"support-chat.issue_refund": "fail_open"}, "last_error": "connection refused"}
    for hb in (ok, bad):
        r = ingest.post("/v1/sdk/heartbeat", json=hb)
        assert r.status_code == 202, r.text
    c = seed.login(server.url, server.token("viewer", handle="vic"))
    html = c.get("/console/controls").text
    bad_row = html.split('data-client="client-bad-0002"', 1)[1].split("</tr>", 1)[0]
    assert "failing open" in bad_row and "⚠" in bad_row
    assert 'class="flagged" data-client="client-bad-0002"' in html
    assert 'class="" data-client="client-ok-0001"' in html
    assert "vector db timeouts" in html and "b-open" in html
    assert "<form" not in html.split("<main", 1)[1].split("</main>", 1)[0], "a viewer gets no lift buttons"


def test_changes_page_filters_and_rolls_back(server: LiveServer) -> None:
    api = server.client("responder", handle="rita")
    seed.rollout(api, time.time())
    r = api.post("/v1/changes", json={"kind": "deploy", "name": "support-bot", "from": "1.4.1", "to": "1.4.2",
                                      "workflows": [seed.WF]})
    assert r.status_code == 201, r.text
    c = seed.login(server.url, server.token("responder", handle="rita"))
    html = c.get("/console/changes").text
    assert "support-bot" in html and "prompt/refund-assistant" in html
    only = c.get("/console/changes", params={"kind": "deploy"}).text
    assert "support-bot" in only and "prompt/refund-assistant" not in only
    assert c.get("/console/changes", params={"type": "bogus"}).status_code == 422
    assert "Stop the rollout of prompt/refund-assistant v42" in html
    r = c.post("/console/configs/prompt/refund-assistant/rollback", data={"csrf": seed.page_csrf(html)})
    assert r.status_code == 303 and r.headers["location"].startswith("/console/changes?msg=")
    assert api.get("/v1/configs/prompt/refund-assistant").json()["candidate"] is None


def test_pages_ship_everything_themselves(server: LiveServer) -> None:
    c = seed.login(server.url, server.token("viewer", handle="vic"))
    inc = seed.open_incident(server.client("responder", handle="rita"), time.time())
    for path in ("/console/incidents", f"/console/incidents/{inc['id']}", "/console/controls", "/console/changes",
                 "/console/oncall"):
        html = c.get(path).text
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert ref.startswith(("/", "#")), f"{path} loads {ref} from elsewhere"
    for asset, ctype in (("console.css", "text/css"), ("console.js", "text/javascript")):
        r = c.get(f"/console/static/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype)
    missing = c.get("/console/incidents/424242")
    assert missing.status_code == 404 and "no incident 424242" in missing.text.lower().replace("#", "")
    assert c.get("/console/static/..%2Fapi.py").status_code == 404
    assert c.get("/console/static/api.py").status_code == 404


def test_sign_outs_are_forgotten_once_their_sessions_would_have_expired(server: LiveServer) -> None:
    from sqlalchemy import select

    from codeblue.web import session as sessions
    from codeblue.web.model import ConsoleSessionEnd

    rt = server.rt
    now = rt.clock.now()
    old = sessions.ConsoleSession(token_id=1, fingerprint="f", issued_at=now - 7200, expires_at=now - 1, nonce="a")
    live = sessions.ConsoleSession(token_id=1, fingerprint="f", issued_at=now, expires_at=now + 3600, nonce="b")
    with rt.db.write() as s:
        sessions.end(s, rt, old)
        sessions.end(s, rt, live)
        sessions.end(s, rt, live)  # signing out twice is one record
    sessions.purge_ended(rt)
    with rt.db.read() as s:
        left = list(s.scalars(select(ConsoleSessionEnd.expires_at)))
    assert left == [live.expires_at]
    with rt.db.read() as s, pytest.raises(Unauthorized, match="signed out"):
        sessions.principal_for(s, rt, live)
