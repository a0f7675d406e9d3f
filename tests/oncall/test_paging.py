"""Roles on open, pages through the outbox, escalation on a manual clock, signed acknowledgement links.

Real parts: a live server on loopback (SQLite and PostgreSQL), the real incidents service and comms outbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from codeblue.clock import ManualClock
from codeblue.comms.model import OutboxMessage
from codeblue.oncall import service
from codeblue.oncall.model import Escalation
from tests.support import LiveServer, make_settings

CONFIG = """\
people:
  - {handle: fay, name: Fay Feature, email: fay@example.test}
  - {handle: fin, email: fin@example.test}
  - {handle: ian, name: Ian Infra, email: ian@example.test}
  - {handle: ivo, email: ivo@example.test}
  - {handle: oli, email: oli@example.test}
  - {handle: cat, email: cat@example.test}
  - {handle: ria, email: ria@example.test}
  - {handle: ref, email: ref@example.test}
schedules:
  - name: feature
    domain: feature
    timezone: America/New_York
    layers:
      - {rotation: weekly, handoff: "09:00", start: 2026-03-02, members: [fay, fin]}
  - name: refund-owner
    workflow: refund-desk
    timezone: Europe/Berlin
    layers:
      - {rotation: daily, handoff: "08:00", start: 2026-03-01, members: [ref]}
  - name: infra
    domain: infra
    timezone: UTC
    layers:
      - {rotation: daily, handoff: "00:00", start: 2026-03-02, members: [ian, ivo]}
  - name: ops
    domain: ops
    timezone: UTC
    layers:
      - {rotation: weekly, handoff: "10:00", start: 2026-03-02, members: [oli]}
  - name: ops-rota
    domain: ops
    workflow: comms-rota
    timezone: UTC
    layers:
      - {rotation: weekly, handoff: "10:00", start: 2026-03-02, members: [cat]}
  - name: risk
    domain: risk
    timezone: UTC
    layers:
      - {rotation: weekly, handoff: "10:00", start: 2026-03-02, members: [ria]}
policies:
  - name: default
    repeat: 1
    levels:
      - {target: feature, timeout_minutes: 5}
      - {target: infra, timeout_minutes: 10}
"""

# Tuesday 2026-03-10 15:00 UTC: fin's week on feature (the second week), ian's day on infra (8 days after the start).
T0 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[tuple[LiveServer, ManualClock]]:
    cfg = tmp_path / "oncall.yaml"
    cfg.write_text(CONFIG)
    clock = ManualClock(T0)
    # Jobs are driven by hand (workers off) so each step of escalation is explicit.
    settings = make_settings(db_url, tmp_path, oncall_config=cfg, workers=False, public_url="https://cb.example.test")
    srv = LiveServer(settings, clock).start()
    try:
        yield srv, clock
    finally:
        srv.stop()


def escalate(srv: LiveServer) -> None:
    job = next(j for j in srv.rt.jobs if j.name == "oncall.escalation")
    job.fn(srv.rt)


class Msg:
    """An outbox row read back (plain values, detached from the session)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.kind: str = d["kind"]
        self.channel: str = d["channel"]
        self.dedup_key: str = d["dedup_key"]
        self.to: list[str] = d["to"]
        self.body: str = d["body"]
        self.data: dict[str, Any] = d["data"]


def outbox(srv: LiveServer, incident_id: int) -> list[Msg]:
    with srv.rt.db.read() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)
                         .order_by(OutboxMessage.id))
        return [Msg(m.as_dict()) for m in rows]


def timeline(srv: LiveServer, incident_id: int) -> list[dict[str, Any]]:
    r = srv.client("viewer").get(f"/v1/incidents/{incident_id}/timeline")
    assert r.status_code == 200
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


def open_incident(srv: LiveServer, **kw: Any) -> dict[str, Any]:
    body = {"title": "wrong refund guidance after prompt rollout", "workflows": ["support-chat"],
            "severity": "SEV2", "failure_type": "answer_quality", **kw}
    r = srv.client("responder", handle="desk").post("/v1/incidents", json=body)
    assert r.status_code == 201, r.text
    inc: dict[str, Any] = r.json()
    return inc


def test_roles_filled_on_open_and_paged_through_the_outbox(live: tuple[LiveServer, ManualClock]) -> None:
    srv, _clock = live
    inc = open_incident(srv)
    got = srv.client("viewer").get(f"/v1/incidents/{inc['id']}").json()
    assert got["roles"] == {
        "incident_lead": "fin", "technical_lead": "ian", "communications_lead": "cat", "support_liaison": "oli",
    }
    msgs = [m for m in outbox(srv, inc["id"]) if m.kind == "page"]
    by_key = {m.dedup_key: m for m in msgs}
    for handle, role in (("fin", "incident_lead"), ("ian", "technical_lead"), ("cat", "communications_lead"),
                         ("oli", "support_liaison")):
        m = by_key[f"oncall:page:{inc['id']}:{handle}:{role}:email"]
        assert m.to == [f"{handle}@example.test"]
        assert m.channel == "email"
        assert m.data["ack_url"].startswith("https://cb.example.test/v1/oncall/ack/")
        assert m.data["ack_url"] in m.body
    assert "owns decisions" not in by_key[f"oncall:page:{inc['id']}:fin:incident_lead:email"].body  # wording check
    assert "You own decisions and the timeline" in by_key[f"oncall:page:{inc['id']}:fin:incident_lead:email"].body
    assert "diagnosis and mitigation" in by_key[f"oncall:page:{inc['id']}:ian:technical_lead:email"].body
    assert "update stakeholders and users" in by_key[f"oncall:page:{inc['id']}:cat:communications_lead:email"].body
    assert "real user impact" in by_key[f"oncall:page:{inc['id']}:oli:support_liaison:email"].body
    # No risk owner for an answer-quality failure; the first escalation level (feature: fin) was already paged.
    assert len(msgs) == 4

    entries = timeline(srv, inc["id"])
    assigned = {(e["data"]["role"], e["data"]["handle"]) for e in entries if e["kind"] == "role_assigned"}
    assert assigned == {("incident_lead", "fin"), ("technical_lead", "ian"), ("communications_lead", "cat"),
                        ("support_liaison", "oli")}
    page_entries = [e for e in entries if e["kind"] == "page"]
    assert len(page_entries) == 1  # one entry for the pages sent at open
    assert {p["handle"] for p in page_entries[0]["data"]["pages"]} == {"fin", "ian", "cat", "oli"}
    assert "fin as incident lead" in page_entries[0]["text"]
    assert all(e["actor"] == "system:oncall" for e in entries if e["kind"] in ("role_assigned", "page"))
    assert srv.client("viewer").get(f"/v1/incidents/{inc['id']}/timeline/verify").json()["ok"] is True

    pages = srv.client("viewer").get("/v1/oncall/pages", params={"incident_id": inc["id"]}).json()
    assert {p["handle"] for p in pages} == {"fin", "ian", "cat", "oli"}


def test_risk_owner_joins_for_account_actions_and_workflow_owner_leads(live: tuple[LiveServer, ManualClock]) -> None:
    srv, _clock = live
    inc = open_incident(srv, title="refunds issued to the wrong account", workflows=["refund-desk"],
                        failure_type="account_action", severity="SEV1")
    roles = srv.client("viewer").get(f"/v1/incidents/{inc['id']}").json()["roles"]
    # The refund-desk workflow owner's schedule answers for the feature domain on this incident.
    assert roles["incident_lead"] == "ref"
    assert roles["risk_owner"] == "ria"
    keys = {m.dedup_key for m in outbox(srv, inc["id"])}
    assert f"oncall:page:{inc['id']}:ria:risk_owner:email" in keys


def test_escalation_fires_after_timeout_and_stops_on_signed_link(live: tuple[LiveServer, ManualClock]) -> None:
    srv, clock = live
    inc = open_incident(srv)
    iid = inc["id"]
    esc = srv.client("viewer").get("/v1/oncall/escalations", params={"incident_id": iid}).json()
    assert len(esc) == 1 and esc[0]["state"] == "active" and esc[0]["level"] == 0
    assert esc[0]["next_at"] == T0 + 300

    before = len(outbox(srv, iid))
    clock.advance(299)
    escalate(srv)
    assert len(outbox(srv, iid)) == before  # not yet

    clock.advance(1)  # 5 minutes, nobody acknowledged → level 2 (infra: ian)
    escalate(srv)
    new = outbox(srv, iid)[before:]
    assert [m.dedup_key for m in new] == [f"oncall:page:{iid}:ian:escalation:{esc[0]['id']}:0:1:email"]
    assert "not acknowledged" in new[0].body
    entries = timeline(srv, iid)
    assert any(e["kind"] == "escalation" and "level 2" in e["text"] for e in entries)

    # The job running again at the same time pages nobody twice.
    escalate(srv)
    assert len(outbox(srv, iid)) == before + 1

    link = new[0].data["ack_url"]
    path = link.removeprefix("https://cb.example.test")
    anon = srv.client()
    # A tampered link is refused: another incident id under the same signature, or a flipped signature.
    payload, sig = path.rsplit("/", 1)[1].split(".")
    forged = service._b64(service._unb64(payload).replace(f"{iid}:".encode(), b"999:", 1))
    assert anon.get(f"/v1/oncall/ack/{forged}.{sig}").status_code == 403
    assert anon.post(f"/v1/oncall/ack/{forged}.{sig}").status_code == 403
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    r = anon.get(f"/v1/oncall/ack/{payload}.{flipped}")
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert anon.get("/v1/oncall/ack/not-a-token").status_code == 403
    assert srv.client("viewer").get(f"/v1/incidents/{iid}").json()["milestones"].get("acknowledged") is None

    # Fetching the link (a mail scanner, a chat unfurler, a browser opening it) acknowledges nothing: it says
    # what a POST would acknowledge, and a browser gets a page with the button.
    r = anon.get(path)
    assert r.status_code == 200, r.text
    assert r.json()["handle"] == "ian" and r.json()["incident_id"] == iid and r.json()["acknowledged"] is False
    page = anon.get(path, headers={"accept": "text/html"})
    assert page.status_code == 200 and "<form method=post>" in page.text and "Acknowledge as ian" in page.text
    assert srv.client("viewer").get(f"/v1/incidents/{iid}").json()["milestones"].get("acknowledged") is None
    assert srv.client("viewer").get("/v1/oncall/escalations", params={"incident_id": iid}).json()[0][
        "state"] != "acknowledged"

    # The genuine link acknowledges without an API token when POSTed (the page's button).
    r = anon.post(path)
    assert r.status_code == 200, r.text
    assert r.json()["handle"] == "ian" and r.json()["already_acknowledged"] is False
    got = srv.client("viewer").get(f"/v1/incidents/{iid}").json()
    assert got["acknowledged_by"] == "ian" and got["status"] == "investigating"
    esc = srv.client("viewer").get("/v1/oncall/escalations", params={"incident_id": iid}).json()
    assert esc[0]["state"] == "acknowledged" and esc[0]["ended_by"] == "ian"

    # Escalation has stopped: an hour later nobody else is paged.
    n = len(outbox(srv, iid))
    clock.advance(3600)
    escalate(srv)
    assert len(outbox(srv, iid)) == n
    # A second click is harmless; a browser gets a page, not JSON.
    r = anon.post(path, headers={"accept": "text/html"})
    assert r.status_code == 200 and "already acknowledged" in r.text
    r = anon.get(path, headers={"accept": "text/html"})
    assert r.status_code == 200 and "already acknowledged" in r.text and "<form" not in r.text


def test_expired_link_is_refused(live: tuple[LiveServer, ManualClock]) -> None:
    srv, clock = live
    inc = open_incident(srv)
    msg = next(m for m in outbox(srv, inc["id"]) if m.data.get("handle") == "oli")
    path = msg.data["ack_url"].removeprefix("https://cb.example.test")
    clock.advance(srv.settings.oncall_ack_ttl + 1)
    r = srv.client().get(path)
    assert r.status_code == 403 and "expired" in r.json()["detail"]
    r = srv.client().post(path)
    assert r.status_code == 403 and "expired" in r.json()["detail"]
    assert srv.client("viewer").get(f"/v1/incidents/{inc['id']}").json()["milestones"].get("acknowledged") is None


def test_escalation_repeats_then_is_exhausted_and_api_ack_stops_it(live: tuple[LiveServer, ManualClock]) -> None:
    srv, clock = live
    # A second incident: acknowledged through the incidents API (the milestone hook stops escalation).
    other = open_incident(srv, title="latency spike", workflows=["search"])
    inc = open_incident(srv, title="grounding failures", workflows=["search"])
    iid = inc["id"]
    r = srv.client("responder", handle="fay").post(f"/v1/incidents/{other['id']}/ack")
    assert r.status_code == 200
    assert srv.client("viewer").get("/v1/oncall/escalations", params={"incident_id": other["id"]}).json()[0][
        "state"] == "acknowledged"

    # Levels: feature (5 min) → infra (10 min), repeat 1: fin (already paged at open), ian, fin again, ian again.
    pages_before = len(outbox(srv, iid))
    clock.advance(300)
    srv.rt.run_jobs_once()
    clock.advance(600)
    escalate(srv)
    clock.advance(300)
    escalate(srv)
    with srv.rt.db.read() as s:
        row = s.scalar(select(Escalation).where(Escalation.incident_id == iid))
        assert row is not None
        esc = row.as_dict()
    assert esc["state"] == "active" and esc["cycle"] == 1 and esc["level"] == 1
    assert [(h["cycle"], h["level"], h["handle"]) for h in esc["history"]] == [
        (0, 0, "fin"), (0, 1, "ian"), (1, 0, "fin"), (1, 1, "ian"),
    ]
    # (the incident's runbook pages and notifies too; those are its own messages, not escalation)
    escalation_pages = [m.dedup_key for m in outbox(srv, iid)[pages_before:] if ":escalation:" in m.dedup_key]
    assert len(escalation_pages) == 3 and len(set(escalation_pages)) == 3
    clock.advance(600)
    escalate(srv)
    assert srv.client("viewer").get("/v1/oncall/escalations", params={"incident_id": iid}).json()[0][
        "state"] == "exhausted"
    assert any("exhausted" in e["text"] for e in timeline(srv, iid))
    # The other incident stayed quiet after its acknowledgement.
    assert all(":escalation:" not in m.dedup_key for m in outbox(srv, other["id"]))


def test_manual_page_and_escalation_start_need_a_responder(live: tuple[LiveServer, ManualClock]) -> None:
    srv, _clock = live
    inc = open_incident(srv)
    body = {"incident_id": inc["id"], "target": "risk", "reason": "policy call needed on refunds"}
    assert srv.client("viewer").post("/v1/oncall/pages", json=body).status_code == 403
    assert srv.client().post("/v1/oncall/pages", json=body).status_code == 401
    r = srv.client("responder").post("/v1/oncall/pages", json=body)
    assert r.status_code == 201 and r.json()["handle"] == "ria"
    # The same page again is one page.
    r2 = srv.client("responder").post("/v1/oncall/pages", json=body)
    assert r2.json()["id"] == r.json()["id"]
    assert sum(1 for m in outbox(srv, inc["id"]) if m.data.get("handle") == "ria") == 1
    r = srv.client("responder").post("/v1/oncall/escalations", json={"incident_id": inc["id"]})
    assert r.status_code == 409  # already escalating


def test_gaps_and_failures_never_block_opening(db_url: str, tmp_path: Path) -> None:
    from codeblue.app import build_runtime
    from codeblue.incidents import service as incidents

    cfg = tmp_path / "oncall.yaml"
    # Only a feature schedule: the other roles have nobody on call.
    cfg.write_text(CONFIG.split("  - name: refund-owner")[0] + "policies: []\n")
    clock = ManualClock(T0)
    # A page channel the outbox refuses (name too long): paging fails inside on-call's savepoint.
    settings = make_settings(db_url, tmp_path, oncall_config=cfg, workers=False,
                             oncall_page_channels=["x" * 101])
    rt = build_runtime(settings, clock)
    try:
        with rt.db.write() as s:
            inc = incidents.open_incident(s, rt, title="complaints cluster", workflows=["support-chat"],
                                          actor="someone")
            iid = inc.id
        with rt.db.read() as s:
            got = incidents.get_incident(s, iid).as_dict()
            kinds = [e.kind for e in incidents.timeline(s, incident_id=iid)]
            texts = [e.text for e in incidents.timeline(s, incident_id=iid)]
            assert incidents.verify_timeline(s, rt, incident_id=iid)["ok"]
        assert got["status"] == "triggered"  # the incident opened
        assert got["roles"] == {}  # the failed on-call work rolled back whole: no role without its page
        assert "oncall_error" in kinds
        assert any("channel must be 1–100 characters" in t for t in texts)

        # With a working channel, the gaps are on the timeline and the role that could be filled is.
        rt.settings.oncall_page_channels = ["email"]
        with rt.db.write() as s:
            iid2 = incidents.open_incident(s, rt, title="second", workflows=["support-chat"], actor="someone").id
        with rt.db.read() as s:
            got = incidents.get_incident(s, iid2).as_dict()
            gaps = [e.data["role"] for e in incidents.timeline(s, incident_id=iid2) if e.kind == "oncall_gap"]
        assert got["roles"] == {"incident_lead": "fin"}
        assert gaps == ["technical_lead", "communications_lead", "support_liaison"]
    finally:
        rt.db.dispose()


def test_cli_page_escalations_and_ack(live: tuple[LiveServer, ManualClock]) -> None:
    import orjson
    from typer.testing import CliRunner

    from codeblue.cli.main import app as cli

    srv, clock = live
    inc = open_incident(srv)
    iid = inc["id"]
    runner = CliRunner()
    auth = ["--url", srv.url, "--token", srv.token("responder", handle="ian")]
    res = runner.invoke(cli, ["oncall", "page", str(iid), "--target", "risk", "--reason", "refund policy call", *auth])
    assert res.exit_code == 0 and "paged ria" in res.output, res.output
    res = runner.invoke(cli, ["oncall", "escalations", "--incident", str(iid), *auth])
    assert res.exit_code == 0 and "active" in res.output
    res = runner.invoke(cli, ["oncall", "ack", str(iid), *auth])
    assert res.exit_code == 0 and "acknowledged" in res.output and "ian" in res.output
    res = runner.invoke(cli, ["oncall", "escalations", "--incident", str(iid), "--json", *auth])
    assert orjson.loads(res.output)[0]["state"] == "acknowledged"
    before = len(outbox(srv, iid))
    clock.advance(1800)
    escalate(srv)
    assert len(outbox(srv, iid)) == before
    res = runner.invoke(cli, ["oncall", "page", str(iid), "--target", "nobody", "--reason", "x", *auth])
    assert res.exit_code == 1 and "target" in res.output


def test_pages_arrive_by_real_smtp_and_the_link_in_the_mail_acknowledges(tmp_path: Path) -> None:
    """End to end: the comms sender delivers the pages to an SMTP server on loopback; the link in the e-mail works."""
    import re
    import time

    from tests.comms.peers import SmtpSink

    cfg = tmp_path / "oncall.yaml"
    cfg.write_text(CONFIG)
    settings = make_settings(f"sqlite:///{tmp_path}/cb.db", tmp_path, oncall_config=cfg,
                             public_url="https://cb.example.test")
    with SmtpSink() as smtp:
        srv = LiveServer(settings, ManualClock(T0)).start()
        try:
            r = srv.admin().post("/v1/comms/channels", json={"name": "email", "host": "127.0.0.1", "port": smtp.port,
                                                             "from": "codeblue@example.test"})
            assert r.status_code == 201, r.text
            inc = open_incident(srv)
            deadline = time.monotonic() + 30
            while len(smtp.messages) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sorted(rcpt for _f, rcpts in smtp.envelopes for rcpt in rcpts) == [
                "cat@example.test", "fin@example.test", "ian@example.test", "oli@example.test"]
            mail = next(m for m in smtp.messages if "ian@example.test" in str(m["To"]))
            assert "technical lead" in str(mail["Subject"])
            payload = mail.get_payload(decode=True)
            text = payload.decode() if isinstance(payload, bytes) else str(mail.get_payload())
            assert "You drive diagnosis and mitigation" in text
            m = re.search(r"https://cb\.example\.test(/v1/oncall/ack/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)", text)
            assert m is not None, text
            r = srv.client().post(m.group(1))
            assert r.status_code == 200 and r.json()["handle"] == "ian"
            esc = srv.client("viewer").get("/v1/oncall/escalations", params={"incident_id": inc["id"]}).json()
            assert esc[0]["state"] == "acknowledged"
        finally:
            srv.stop()
