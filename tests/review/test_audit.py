"""The audit of served answers on a real server: risk ranking, paging, review states that persist (across a
server restart), progress on the incident, CSV/JSON export, and the impact feed into the post-mortem."""

from __future__ import annotations

import csv
import io
import secrets
from pathlib import Path

import httpx
import orjson

from codeblue.clock import ManualClock
from tests.review.helpers import move, open_incident, post_events
from tests.support import LiveServer, make_settings

T0 = 1_790_000_000.0
WF = "audit-desk"


def _events() -> list[dict[str, object]]:
    base = {"workflow": WF, "session_id": "s", "versions": {"prompt/audit-assistant": "v2"}}
    ev: list[dict[str, object]] = [
        # plain answers first in time, so ranking (not time order) has to put the risky ones on top
        *({**base, "time": T0 + 1 + i, "kind": "response", "trace_id": f"ok-{i}", "subject": f"u{i}",
           "status": 200, "grounded": True, "input": "what is my balance?", "output": "it is 10"} for i in range(30)),
        {**base, "time": T0 + 40, "kind": "response", "trace_id": "refusal", "subject": "u40", "status": 200,
         "refusal": True, "input": "can I get a refund?", "output": "I cannot help with that."},
        {**base, "time": T0 + 41, "kind": "response", "trace_id": "ungrounded", "subject": "u41", "status": 200,
         "grounded": False, "input": "refund policy?", "output": "refunds are always 100% within 90 days"},
        {**base, "time": T0 + 42, "kind": "response", "trace_id": "error", "subject": "u42", "status": 503},
        {**base, "time": T0 + 43, "kind": "action", "trace_id": "authorised", "subject": "u43",
         "action": "issue_refund", "target": "u43", "authorized_targets": ["u43"], "attributes": {"amount": 20}},
        {**base, "time": T0 + 44, "kind": "action", "trace_id": "wrong-small", "subject": "u44",
         "action": "issue_refund", "target": "acct-9", "authorized_targets": ["u44"], "attributes": {"amount": 5}},
        {**base, "time": T0 + 45, "kind": "action", "trace_id": "wrong-big", "subject": "u45",
         "action": "issue_refund", "target": "acct-7", "authorized_targets": ["u45"],
         "attributes": {"amount": 4800}},
        # outside the incident window: never in the queue
        {**base, "time": T0 - 4000, "kind": "action", "trace_id": "before-onset", "subject": "u0",
         "action": "issue_refund", "target": "acct-1", "authorized_targets": ["u0"]},
        {**base, "workflow": "other-desk", "time": T0 + 46, "kind": "action", "trace_id": "other-workflow",
         "subject": "u46", "action": "issue_refund", "target": "acct-2", "authorized_targets": ["u46"]},
    ]
    return ev


def _setup(server: LiveServer, clock: ManualClock) -> int:
    with server.client("ingest") as ing:
        post_events(ing, _events())
    clock.set(T0 + 100)
    with server.client("responder", handle="resp") as c:
        inc = open_incident(c, title="refunds to the wrong account", workflows=[WF], failure_type="account_action",
                            harm={"started_at": T0, "requests": 2, "subjects": 2})
        clock.set(T0 + 200)
        move(c, inc["id"], "contained")
    return int(inc["id"])


def test_ranks_wrong_entity_above_ungrounded_above_refusal_and_reviews_persist(db_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T0 - 5000)
    admin_token = "cb_test_" + secrets.token_hex(16)
    settings = make_settings(db_url, tmp_path, workers=False, bootstrap_token=admin_token)
    srv = LiveServer(settings, clock=clock).start()
    try:
        iid = _setup(srv, clock)
        with srv.client("viewer", handle="vi") as v:
            r = v.get(f"/v1/incidents/{iid}/audit", params={"limit": 4})
            assert r.status_code == 200, r.text
            page = r.json()
            q = page["queue"]
            assert q["items"] == 36 and q["since"] == T0 and q["until"] == T0 + 200 and not q["truncated"]
            traces = [it["trace_id"] for it in page["items"]]
            # wrong-entity first (the larger amount above the smaller), then the authorised side-effecting action
            assert traces == ["wrong-big", "wrong-small", "authorised", "ungrounded"]
            assert page["items"][0]["category"] == "wrong_entity" and page["items"][0]["amount"] == 4800
            assert page["items"][3]["input"] == "refund policy?"
            assert page["items"][3]["output"].startswith("refunds are always")
            nxt = v.get(f"/v1/incidents/{iid}/audit", params={"limit": 4, "cursor": page["next_cursor"]}).json()
            assert [it["trace_id"] for it in nxt["items"]][:2] == ["refusal", "error"]
            everything = v.get(f"/v1/incidents/{iid}/audit", params={"limit": 500}).json()["items"]
            rank = {it["trace_id"]: it["rank"] for it in everything}
            assert rank["wrong-big"] < rank["ungrounded"] < rank["refusal"] < rank["ok-0"]
            assert "before-onset" not in rank and "other-workflow" not in rank
            assert [it["rank"] for it in everything] == list(range(1, 37))
            ids = {it["trace_id"]: it["id"] for it in everything}
            # a viewer may read but not review
            r = v.post(f"/v1/incidents/{iid}/audit/items/{ids['wrong-big']}", json={"state": "harmful"})
            assert r.status_code == 403

        with srv.client("responder", handle="reviewer-1") as c:
            r = c.post(f"/v1/incidents/{iid}/audit/items/{ids['wrong-big']}",
                       json={"state": "harmful", "note": "refund went to acct-7"})
            assert r.status_code == 200, r.text
            assert r.json()["reviewer"] == "reviewer-1"
            assert c.post(f"/v1/incidents/{iid}/audit/items/{ids['wrong-small']}",
                          json={"state": "remediated", "note": "reversed"}).status_code == 200
            assert c.post(f"/v1/incidents/{iid}/audit/items/{ids['authorised']}", json={"state": "ok"}).status_code == 200
            bad = c.post(f"/v1/incidents/{iid}/audit/items/{ids['refusal']}", json={"state": "fine"})
            assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
            assert bad.json()["field"] == "state"
            assert c.post(f"/v1/incidents/{iid}/audit/items/999999", json={"state": "ok"}).status_code == 404
            # a refresh re-ranks the window and keeps the reviews
            assert c.post(f"/v1/incidents/{iid}/audit/refresh").status_code == 200
    finally:
        srv.stop()

    # a new server process state on the same database: the queue and its reviews are still there
    srv2 = LiveServer(settings, clock=ManualClock(T0 + 300))
    srv2.admin_token = admin_token  # the admin exists already: bootstrap made no new token
    srv2.start()
    try:
        with srv2.client("viewer", handle="vi") as v:
            prog = v.get(f"/v1/incidents/{iid}/audit/progress").json()
            assert prog["total"] == 36 and prog["reviewed"] == 3
            assert prog["states"] == {"pending": 33, "ok": 1, "harmful": 1, "remediated": 1}
            assert prog["confirmed_harm"] == 2 and prog["confirmed_harm_by_category"] == {"wrong_entity": 2}
            first = v.get(f"/v1/incidents/{iid}/audit", params={"limit": 1}).json()["items"][0]
            assert first["trace_id"] == "wrong-big" and first["state"] == "harmful"
            assert first["note"] == "refund went to acct-7" and first["reviewer"] == "reviewer-1"
            harmful = v.get(f"/v1/incidents/{iid}/audit", params={"state": "harmful"}).json()["items"]
            assert [it["trace_id"] for it in harmful] == ["wrong-big"]

            # exports: every item with its review state; CSV cells cannot start a spreadsheet formula
            r = v.get(f"/v1/incidents/{iid}/audit/export", params={"format": "csv"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert len(rows) == 36 and rows[0]["trace_id"] == "wrong-big" and rows[0]["state"] == "harmful"
            assert rows[0]["target"] == "acct-7"
            r = v.get(f"/v1/incidents/{iid}/audit/export", params={"format": "json"})
            data = orjson.loads(r.content)
            assert len(data) == 36 and data[1]["state"] == "remediated"

            # confirmed harm feeds the post-mortem's impact section
            pm = v.get(f"/v1/incidents/{iid}/postmortem").json()
            assert pm["facts"]["impact"]["confirmed_by_audit"] == {"items": 2, "subjects": 2, "amount": 4805.0}
            assert "Confirmed by the audit of served answers: **2** items" in pm["markdown"]

        with srv2.client("responder", handle="reviewer-2") as c:
            tl = c.get(f"/v1/incidents/{iid}/timeline").json()
            kinds = [e["kind"] for e in (tl["entries"] if isinstance(tl, dict) else tl)]
            assert kinds.count("audit.harm_confirmed") == 2
    finally:
        srv2.stop()


def test_audit_needs_a_token_and_an_existing_incident(sqlite_server: LiveServer) -> None:
    with httpx.Client(base_url=sqlite_server.url) as anon:
        assert anon.get("/v1/incidents/1/audit").status_code == 401
    with sqlite_server.client("viewer") as v:
        r = v.get("/v1/incidents/4242/audit")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = v.get("/v1/incidents/4242/audit", params={"limit": 0})
        assert r.status_code == 422


def test_suspect_versions_pull_in_their_other_workflows(sqlite_server: LiveServer) -> None:
    srv = sqlite_server
    with srv.client("responder", handle="rel") as rel:
        for v in ("v1", "v2"):
            r = rel.post("/v1/configs/prompt/shared-assistant/versions",
                         json={"version": v, "content": f"prompt {v}", "workflows": ["desk-a", "desk-b"]})
            assert r.status_code == 201, r.text
        rel.post("/v1/configs/prompt/shared-assistant/activate", json={"version": "v1"})
        change = rel.post("/v1/configs/prompt/shared-assistant/activate", json={"version": "v2"}).json()
    now = srv.rt.clock.now()
    ev = [
        {"time": now - 30, "workflow": "desk-a", "kind": "response", "trace_id": "a-v2", "subject": "u1",
         "status": 200, "grounded": False, "versions": {"prompt/shared-assistant": "v2"}},
        {"time": now - 29, "workflow": "desk-b", "kind": "response", "trace_id": "b-v2", "subject": "u2",
         "status": 200, "refusal": True, "versions": {"prompt/shared-assistant": "v2"}},
        {"time": now - 28, "workflow": "desk-b", "kind": "response", "trace_id": "b-v1", "subject": "u3",
         "status": 200, "refusal": True, "versions": {"prompt/shared-assistant": "v1"}},
    ]
    with srv.client("ingest") as ing:
        post_events(ing, ev)
    with srv.client("responder", handle="ana") as c:
        inc = open_incident(c, title="shared prompt", workflows=["desk-a"], failure_type="answer_quality",
                            harm={"started_at": now - 60},
                            suspects=[{"change_id": change["id"], "kind": "prompt", "name": "shared-assistant",
                                       "version": "v2"}])
        page = c.get(f"/v1/incidents/{inc['id']}/audit").json()
    traces = [it["trace_id"] for it in page["items"]]
    assert traces == ["a-v2", "b-v2"]  # desk-b only where the suspect version served it
    assert all("served by a suspect version" in it["reasons"] for it in page["items"])
    assert page["queue"]["workflows"] == ["desk-a", "desk-b"]


def test_runbook_audit_step_materialises_the_queue(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    srv = LiveServer(make_settings(f"sqlite:///{tmp_path}/rb.db", tmp_path, workers=False), clock=clock).start()
    try:
        with srv.client("ingest") as ing:
            post_events(ing, [{"time": T0 - 30, "workflow": "rb-desk", "kind": "response", "trace_id": "x",
                               "subject": "u", "status": 200, "grounded": False}])
        with srv.client("lead", handle="lee") as c:
            iid = open_incident(c, title="rb", workflows=["rb-desk"], failure_type="other",
                                harm={"started_at": T0 - 60})["id"]
            assert c.get(f"/v1/incidents/{iid}/audit/progress").json()["materialised"] is False
            r = c.post(f"/v1/incidents/{iid}/runbook/accept", json={})
            assert r.status_code in (200, 201), r.text
            for _ in range(5):
                clock.advance(5)
                for job in srv.rt.jobs:
                    if job.name.startswith("runbook"):
                        job.fn(srv.rt)
            prog = c.get(f"/v1/incidents/{iid}/audit/progress").json()
        assert prog["materialised"] is True, prog
        assert prog["queue"]["built_by"] == "system:review" and prog["total"] == 1
    finally:
        srv.stop()
