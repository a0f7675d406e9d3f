"""Post-mortem drafts against tampering, versions, completion gated on corrective actions, reminders of overdue
actions through the comms outbox, and the CLI writing the Markdown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, text

from codeblue.clock import ManualClock
from codeblue.comms.model import OutboxMessage
from tests.review.helpers import move, open_incident
from tests.support import LiveServer, make_settings

T0 = 1_790_000_000.0


def test_timeline_section_refuses_a_tampered_timeline(server: LiveServer) -> None:
    with server.client("responder", handle="ana") as c:
        inc = open_incident(c, title="tamper probe", workflows=["tamper-desk"], failure_type="answer_quality")
        iid = inc["id"]
        assert c.post(f"/v1/incidents/{iid}/notes", json={"text": "rolled back the prompt"}).status_code in (200, 201)
        pm = c.get(f"/v1/incidents/{iid}/postmortem").json()
        assert "Verified:" in pm["markdown"] and "rolled back the prompt" in pm["markdown"]
    with server.rt.db.write() as s:
        res = s.execute(text("UPDATE timeline_entries SET text = 'nothing happened' "
                             "WHERE incident_id = :i AND text = 'rolled back the prompt'"), {"i": iid})
        assert res.rowcount == 1  # type: ignore[attr-defined]
    with server.client("viewer") as v:
        pm = v.get(f"/v1/incidents/{iid}/postmortem").json()
    md = pm["markdown"]
    section = md.split("## Timeline", 1)[1].split("## Impact", 1)[0]
    assert "failed hash verification" in section and "not rendered" in section
    assert "mac_mismatch" in section
    assert "nothing happened" not in md and "rolled back the prompt" not in md
    assert "| time (UTC) |" not in section
    assert pm["facts"]["verification"]["ok"] is False
    assert "Not judged: the steps come from the timeline, which failed hash verification" in md


def test_versions_completion_needs_both_kinds_of_action_and_final_is_stored(server: LiveServer) -> None:
    with server.client("responder", handle="ana") as ana, server.client("lead", handle="lee") as lee, \
            server.client("viewer") as v:
        iid = open_incident(ana, title="refund guidance wrong", workflows=["pm-desk"])["id"]
        draft = v.get(f"/v1/incidents/{iid}/postmortem").json()
        assert draft["generated"] and draft["version"] is None
        r = ana.put(f"/v1/incidents/{iid}/postmortem", json={"markdown": draft["markdown"] + "\nEdited by Ana.\n",
                                                             "base_version": 0})
        assert r.status_code == 201 and r.json()["version"] == 1 and r.json()["author"] == "ana"
        r = lee.put(f"/v1/incidents/{iid}/postmortem", json={"markdown": "# PM\nlead's rewrite\n", "base_version": 1})
        assert r.status_code == 201 and r.json()["version"] == 2
        stale = ana.put(f"/v1/incidents/{iid}/postmortem", json={"markdown": "# PM\nlate edit\n", "base_version": 1})
        assert stale.status_code == 409 and stale.json()["field"] == "base_version"
        assert v.put(f"/v1/incidents/{iid}/postmortem", json={"markdown": "x"}).status_code == 403
        empty = ana.put(f"/v1/incidents/{iid}/postmortem", json={"markdown": "   "})
        assert empty.status_code == 422 and empty.json()["field"] == "markdown"
        vs = v.get(f"/v1/incidents/{iid}/postmortem/versions").json()
        assert [(x["version"], x["author"]) for x in vs["versions"]] == [(1, "ana"), (2, "lee")]
        assert v.get(f"/v1/incidents/{iid}/postmortem/versions/1").json()["markdown"].endswith("Edited by Ana.\n")
        assert v.get(f"/v1/incidents/{iid}/postmortem").json()["markdown"] == "# PM\nlead's rewrite\n"

        # completion is gated on a technical and an operational corrective action
        assert ana.post(f"/v1/incidents/{iid}/postmortem/complete").status_code == 403  # lead only
        r = lee.post(f"/v1/incidents/{iid}/postmortem/complete")
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["missing"] == ["technical", "operational"]
        assert "technical and one operational" in r.json()["detail"]
        bad = ana.post(f"/v1/incidents/{iid}/actions", json={"title": "x", "kind": "social", "owner": "ana",
                                                             "due": "2030-01-01"})
        assert bad.status_code == 422 and bad.json()["field"] == "kind"
        nobody = ana.post(f"/v1/incidents/{iid}/actions", json={"title": "x", "kind": "technical",
                                                                "owner": "nobody-here", "due": "2030-01-01"})
        assert nobody.status_code == 422 and nobody.json()["field"] == "owner"
        r = ana.post(f"/v1/incidents/{iid}/actions", json={
            "title": "gate prompt rollouts on grounding failures", "kind": "technical", "owner": "ana",
            "due": "2030-01-01", "link": "https://tracker.example/T-1"})
        assert r.status_code == 201, r.text
        tech = r.json()
        r = lee.post(f"/v1/incidents/{iid}/postmortem/complete")
        assert r.status_code == 409 and r.json()["missing"] == ["operational"]
        r = ana.post(f"/v1/incidents/{iid}/actions", json={
            "title": "page the feature owner on grounding alerts", "kind": "operational", "owner": "lee",
            "due": "+14d"})
        assert r.status_code == 201
        # a won't-do action does not count
        assert ana.patch(f"/v1/actions/{tech['id']}", json={"status": "wont_do"}).status_code == 200
        assert lee.post(f"/v1/incidents/{iid}/postmortem/complete").json()["missing"] == ["technical"]
        assert ana.patch(f"/v1/actions/{tech['id']}", json={"status": "in_progress"}).status_code == 200
        acts = v.get(f"/v1/incidents/{iid}/actions").json()
        assert acts["missing_kinds"] == [] and len(acts["actions"]) == 2

        r = lee.post(f"/v1/incidents/{iid}/postmortem/complete")
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["state"] == "complete" and done["final_version"] == 2 and done["completed_by"] == "lee"
        # the final version is stored with the incident: its digest is on the hash-chained timeline
        tl = v.get(f"/v1/incidents/{iid}/timeline").json()
        entries = tl["entries"] if isinstance(tl, dict) else tl
        final = [e for e in entries if e["kind"] == "postmortem.completed"]
        assert final and final[0]["data"]["sha256"] == done["final"]["sha256"]
        assert ana.put(f"/v1/incidents/{iid}/postmortem", json={"markdown": "# more"}).status_code == 409
        assert v.get(f"/v1/incidents/{iid}/postmortem").json()["state"] == "complete"


def test_overdue_actions_are_reminded_once_per_due_date(db_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    srv = LiveServer(make_settings(db_url, tmp_path, workers=False), clock=clock).start()
    try:
        job = next(j for j in srv.rt.jobs if j.name == "review.reminders")
        with srv.client("responder", handle="ana") as ana:
            iid = open_incident(ana, title="reminders", workflows=["rem-desk"])["id"]
            a = ana.post(f"/v1/incidents/{iid}/actions", json={"title": "fix alert routing", "kind": "operational",
                                                               "owner": "ana", "due": T0 + 3600}).json()
            ana.post(f"/v1/incidents/{iid}/actions", json={"title": "done already", "kind": "technical",
                                                           "owner": "ana", "due": T0 + 60, "status": "done"})
            job.fn(srv.rt)
            with srv.rt.db.read() as s:
                assert not list(s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder")))
            clock.set(T0 + 7200)
            job.fn(srv.rt)
            job.fn(srv.rt)  # no second reminder for the same due date
            with srv.rt.db.read() as s:
                msgs = [(m.dedup_key, m.to, m.body, m.channel) for m in
                        s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder"))]
            assert len(msgs) == 1
            key, to, body, channel = msgs[0]
            assert key == f"review:action:{a['id']}:{int(T0 + 3600)}" and channel == "email"
            assert to == ["ana@example.test"] and "fix alert routing" in body
            overdue = ana.get("/v1/actions", params={"overdue": "true"}).json()["actions"]
            assert [x["id"] for x in overdue] == [a["id"]] and overdue[0]["overdue"] is True
            # re-planned: a new due date gets its own reminder when it passes
            ana.patch(f"/v1/actions/{a['id']}", json={"due": T0 + 8000})
            clock.set(T0 + 9000)
            job.fn(srv.rt)
            with srv.rt.db.read() as s:
                assert len(list(s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder")))) == 2
    finally:
        srv.stop()


def test_cli_postmortem_writes_markdown_and_metrics_json(sqlite_server: LiveServer, tmp_path: Path) -> None:
    with sqlite_server.client("responder", handle="ana") as ana:
        iid = open_incident(ana, title="cli probe", workflows=["cli-desk"], harm={"started_at": 1.0})["id"]
        assert ana.post(f"/v1/incidents/{iid}/ack").status_code == 200
        move(ana, iid, "resolved")
    env = {**os.environ, "CODEBLUE_URL": sqlite_server.url, "CODEBLUE_TOKEN": sqlite_server.token("viewer")}
    out = tmp_path / "pm.md"
    r = subprocess.run([sys.executable, "-m", "codeblue.cli.main", "postmortem", str(iid), "--md", str(out)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_text().startswith(f"# Post-mortem: incident #{iid} — cli probe")
    r = subprocess.run([sys.executable, "-m", "codeblue.cli.main", "metrics", "--since", "30d", "--json"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import orjson

    data = orjson.loads(r.stdout)
    assert data["overall"]["incidents"] == 1
    sev = data["by"]["severity"]["SEV2"]
    assert sev["mtta"]["n"] == 1 and sev["mttr"]["n"] == 1 and sev["mttd"]["n"] == 1
    assert data["by"]["workflow"]["cli-desk"]["incidents"] == 1
    r = subprocess.run([sys.executable, "-m", "codeblue.cli.main", "audit", "list", str(iid)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_cli_audit_review_and_export(sqlite_server: LiveServer, tmp_path: Path) -> None:
    import orjson

    from tests.review.helpers import post_events

    now = sqlite_server.rt.clock.now()
    with sqlite_server.client("ingest") as ing:
        post_events(ing, [
            {"time": now - 20, "workflow": "cli-audit", "kind": "response", "trace_id": "t-ref", "subject": "u1",
             "status": 200, "refusal": True, "input": "=HYPERLINK(\"x\")", "output": "no"},
            {"time": now - 10, "workflow": "cli-audit", "kind": "action", "trace_id": "t-wrong", "subject": "u2",
             "action": "issue_refund", "target": "u9", "authorized_targets": ["u2"]},
        ])
    with sqlite_server.client("responder", handle="ana") as ana:
        iid = open_incident(ana, title="cli audit", workflows=["cli-audit"], harm={"started_at": now - 60})["id"]
    env = {**os.environ, "CODEBLUE_URL": sqlite_server.url,
           "CODEBLUE_TOKEN": sqlite_server.token("responder", handle="ana")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "codeblue.cli.main", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    r = cli("audit", "list", str(iid), "--json")
    assert r.returncode == 0, r.stderr
    items = orjson.loads(r.stdout)["items"]
    assert [it["trace_id"] for it in items] == ["t-wrong", "t-ref"]
    r = cli("audit", "review", str(iid), str(items[0]["id"]), "--state", "harmful", "--note", "wrong account")
    assert r.returncode == 0 and "harmful" in r.stdout, r.stderr
    r = cli("audit", "review", str(iid), str(items[0]["id"]), "--state", "nope")
    assert r.returncode == 1 and "state" in r.stderr
    out = tmp_path / "audit.csv"
    r = cli("audit", "export", str(iid), "--format", "csv", "-o", str(out))
    assert r.returncode == 0, r.stderr
    text_ = out.read_text()
    assert "t-wrong" in text_ and "harmful" in text_ and "wrong account" in text_
    assert "'=HYPERLINK" in text_  # a formula cell is neutralised
    r = cli("audit", "progress", str(iid), "--json")
    assert orjson.loads(r.stdout)["states"]["harmful"] == 1
    r = subprocess.run([sys.executable, "-m", "codeblue.cli.main", "postmortem", "999999"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no incident 999999" in r.stderr
