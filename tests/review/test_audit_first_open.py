"""The first open of an audit answers page 1 before the rest of the queue is written (`audit.open_first_page`):
the page is ranked from the few events that can reach the top, so it must be exactly the top of the whole
ranking — ties at a tier boundary included — and the queue committed afterwards must continue it (no item
skipped or repeated, the ids served stay valid for reviews), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from codeblue.clock import ManualClock
from codeblue.review import audit
from tests.review.helpers import move, open_incident, post_events
from tests.support import LiveServer, make_settings

T0 = 1_790_000_000.0
WF = "first-open-desk"
SUSPECTS = [{"kind": "prompt", "name": "first-open", "version": "v2"}]


def _events() -> list[dict[str, Any]]:
    old = {"workflow": WF, "session_id": "s", "versions": {"prompt/first-open": "v1"}}
    new = {**old, "versions": {"prompt/first-open": "v2"}}  # the suspect version: +20
    ev: list[dict[str, Any]] = [
        *({**(new if i % 3 == 0 else old), "time": T0 + 1 + i, "kind": "response", "trace_id": f"ok-{i}",
           "subject": f"u{i}", "status": 200, "grounded": True, "refusal": False} for i in range(40)),
        # a nested key that looks like a risky one must not count (the substring guards only pre-select)
        {**old, "time": T0 + 50, "kind": "response", "trace_id": "nested", "subject": "u50", "status": 200,
         "grounded": True, "attributes": {"grounded": False, "refusal": True}},
        {**old, "time": T0 + 51, "kind": "response", "trace_id": "ungrounded", "subject": "u51", "status": 200,
         "grounded": False},
        {**new, "time": T0 + 52, "kind": "response", "trace_id": "refusal", "subject": "u52", "status": 200,
         "refusal": True},
        {**old, "time": T0 + 53, "kind": "response", "trace_id": "error", "subject": "u53", "status": 503},
        # the highest a tool error can score (400 + 60 amount + 20 suspect + 15 complained = 495) ties with the
        # lowest an action can (500 - 5 served by a fallback = 495): the earlier one ranks first
        {**new, "time": T0 + 54, "kind": "tool_call", "trace_id": "tool-max", "subject": "u54",
         "tool": "lookup", "args_valid": False, "amount": 5_000_000},
        {**old, "time": T0 + 55, "kind": "action", "trace_id": "action-fallback", "subject": "u55",
         "action": "note", "target": "u55", "authorized_targets": ["u55"], "fallback": "small-model"},
        {**old, "time": T0 + 56, "kind": "tool_call", "trace_id": "tool-error", "subject": "u56",
         "tool": "lookup", "args_valid": False},
        {**old, "time": T0 + 57, "kind": "tool_call", "trace_id": "tool-ok", "subject": "u57",
         "tool": "lookup", "args_valid": True},
        {**new, "time": T0 + 58, "kind": "action", "trace_id": "wrong", "subject": "u58",
         "action": "issue_refund", "target": "acct-9", "authorized_targets": ["u58"], "attributes": {"amount": 90}},
        {**old, "time": T0 + 59, "kind": "action", "trace_id": "refund", "subject": "u59",
         "action": "issue_refund", "target": "u59", "authorized_targets": ["u59"], "attributes": {"amount": 40}},
        {**old, "time": T0 + 60, "kind": "complaint", "trace_id": "tool-max", "subject": "u54",
         "text": "it looked up the wrong order"},
        {**old, "time": T0 + 61, "kind": "complaint", "trace_id": "ok-7", "subject": "u7", "text": "wrong answer"},
    ]
    return ev


def _incident(c: httpx.Client, clock: ManualClock) -> int:
    inc = open_incident(c, title="first open", workflows=[WF], failure_type="account_action",
                        harm={"started_at": T0}, suspects=SUSPECTS)
    move(c, inc["id"], "contained")
    return int(inc["id"])


def _all(c: httpx.Client, incident_id: int) -> list[dict[str, Any]]:
    r = c.get(f"/v1/incidents/{incident_id}/audit", params={"limit": 500})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _key(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(it["rank"], it["trace_id"], it["score"], it["category"], it["reasons"]) for it in items]


def test_first_page_is_the_top_of_the_whole_ranking_and_the_queue_continues_it(db_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T0 + 100)
    srv = LiveServer(make_settings(db_url, tmp_path, workers=False), clock=clock).start()
    try:
        with srv.client("ingest") as ing:
            post_events(ing, _events())
        with srv.client("responder", handle="resp") as c:
            # the reference: the whole window ranked at once (what a refresh or a runbook step does)
            ref_id = _incident(c, clock)
            with srv.rt.db.write() as s:
                audit.build(s, srv.rt, incident_id=ref_id, actor="test")
            ref = _all(c, ref_id)
            traces = [it["trace_id"] for it in ref]
            assert traces[:5] == ["wrong", "refund", "tool-max", "action-fallback", "tool-error"]
            assert ref[2]["score"] == ref[3]["score"] == 495.0
            assert "nested" in traces and traces.index("nested") > traces.index("error")
            assert len(ref) == 50 and [it["rank"] for it in ref] == list(range(1, 51))

            for limit in (1, 2, 3, 4, 5, 7, 49, 50, 60):
                iid = _incident(c, clock)
                r = c.get(f"/v1/incidents/{iid}/audit", params={"limit": limit})
                assert r.status_code == 200, r.text
                first = r.json()
                assert first["queue"]["items"] == 50 and first["queue"]["built_by"] == "resp"
                assert _key(first["items"]) == _key(ref)[:limit], limit
                assert (first["next_cursor"] is None) == (limit >= 50)
                # page 2 continues page 1 exactly, and the committed queue is the whole ranking
                if first["next_cursor"] is not None:
                    nxt = c.get(f"/v1/incidents/{iid}/audit",
                                params={"limit": limit, "cursor": first["next_cursor"]}).json()
                    assert _key(nxt["items"]) == _key(ref)[limit:2 * limit], limit
                whole = _all(c, iid)
                assert _key(whole) == _key(ref), limit
                assert [it["id"] for it in whole[:limit]] == [it["id"] for it in first["items"]]
                assert c.get(f"/v1/incidents/{iid}/audit/progress").json()["total"] == 50
    finally:
        srv.stop()


def test_requests_during_the_rest_of_the_write_wait_for_it(db_url: str, tmp_path: Path) -> None:
    """Page 2, a review and a second open sent while the worker is still writing the queue: none rebuilds it,
    the ids served on page 1 stay valid, page 2 continues page 1."""
    clock = ManualClock(T0 + 100)
    srv = LiveServer(make_settings(db_url, tmp_path, workers=False), clock=clock).start()
    try:
        bulk = [{"workflow": WF, "time": T0 + 1 + i * 0.01, "kind": "response", "trace_id": f"b-{i}",
                 "subject": f"s{i}", "status": 200, "grounded": i % 5 != 0, "versions": {"prompt/first-open": "v2"}}
                for i in range(6000)]
        with srv.client("ingest") as ing:
            post_events(ing, _events() + bulk)
        with srv.client("responder", handle="resp") as c:
            iid = _incident(c, clock)
            done = threading.Event()
            first = audit.open_first_page(srv.rt, incident_id=iid, actor="resp", limit=10, done=done)
            assert first is not None and first["next_cursor"] == "10"
            results: dict[str, Any] = {}

            def page2() -> None:
                with srv.client("viewer", handle="vi") as v:
                    results["page2"] = v.get(f"/v1/incidents/{iid}/audit",
                                             params={"limit": 10, "cursor": first["next_cursor"]})

            def review() -> None:
                with srv.client("responder", handle="rev") as r:
                    results["review"] = r.post(f"/v1/incidents/{iid}/audit/items/{first['items'][0]['id']}",
                                               json={"state": "harmful", "note": "checked"})

            def reopen() -> None:
                with srv.client("viewer", handle="vi2") as v:
                    results["reopen"] = v.get(f"/v1/incidents/{iid}/audit", params={"limit": 10})

            threads = [threading.Thread(target=f) for f in (page2, review, reopen)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert done.wait(timeout=120)
            assert results["page2"].status_code == 200, results["page2"].text
            assert results["review"].status_code == 200, results["review"].text
            assert results["reopen"].status_code == 200, results["reopen"].text
            reopened = results["reopen"].json()["items"]
            assert [it["id"] for it in reopened] == [it["id"] for it in first["items"]]
            page2 = results["page2"].json()["items"]
            assert [it["rank"] for it in page2] == list(range(11, 21))
            assert not {it["id"] for it in page2} & {it["id"] for it in first["items"]}
            prog = c.get(f"/v1/incidents/{iid}/audit/progress").json()
            assert prog["total"] == 6050 and prog["states"]["harmful"] == 1
            assert prog["queue"]["built_by"] == "resp"
            top = c.get(f"/v1/incidents/{iid}/audit", params={"limit": 1}).json()["items"][0]
            assert top["trace_id"] == "wrong" and top["state"] == "harmful" and top["reviewer"] == "rev"
    finally:
        srv.stop()


def test_filters_and_an_existing_queue_take_the_usual_path(tmp_path: Path) -> None:
    clock = ManualClock(T0 + 100)
    srv = LiveServer(make_settings(f"sqlite:///{tmp_path}/f.db", tmp_path, workers=False), clock=clock).start()
    try:
        with srv.client("ingest") as ing:
            post_events(ing, _events())
        with srv.client("responder", handle="resp") as c:
            iid = _incident(c, clock)
            r = c.get(f"/v1/incidents/{iid}/audit", params={"category": "tool_error"})
            assert r.status_code == 200, r.text
            assert [it["trace_id"] for it in r.json()["items"]] == ["tool-max", "tool-error"]
            # the queue exists now: open_first_page leaves it alone
            assert audit.open_first_page(srv.rt, incident_id=iid, actor="resp") is None
            assert c.get(f"/v1/incidents/{iid}/audit/progress").json()["total"] == 50
            assert c.get("/v1/incidents/4242/audit").status_code == 404
    finally:
        srv.stop()
