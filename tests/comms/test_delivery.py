"""Delivery through the outbox with real receivers: signed webhooks, the seed's duplicate-refund-e-mail bug,
dead-lettering, Slack and PagerDuty formats, and secrets that never leave the server."""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
from sqlalchemy import select

from codeblue.comms import outbox
from codeblue.comms.channels import message_id, signature
from codeblue.comms.model import Channel
from codeblue.comms.sender import get_sender
from tests.comms.conftest import MakeServer, clock_of, open_incident
from tests.comms.peers import SmtpSink, WebhookReceiver
from tests.support import LiveServer

SECRET = "whsec_" + "k" * 32


def add_channel(srv: LiveServer, **body: object) -> dict[str, object]:
    r = srv.admin().post("/v1/comms/channels", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def enqueue_refund_emails(srv: LiveServer, channel: str, n: int, incident_id: int | None = None) -> list[str]:
    keys = [f"refund-mail:order-{i}" for i in range(n)]
    with srv.rt.db.write() as s:
        for k in keys:
            outbox.enqueue(srv.rt.db and s, srv.rt, channel=channel, kind="announcement", dedup_key=k,
                           subject=f"Your refund for {k}", body="We issued your refund.", incident_id=incident_id)
            # the same change retried by its caller: must not queue a second message
            outbox.enqueue(s, srv.rt, channel=channel, kind="announcement", dedup_key=k,
                           subject="dup", body="dup", incident_id=incident_id)
    return keys


def drive(srv: LiveServer, rounds: int = 1) -> int:
    """Run the sender, then move the clock past any backoff so retries fall due."""
    made = 0
    for _ in range(rounds):
        made += get_sender(srv.rt).deliver_due()
        clock_of(srv).advance(srv.settings.comms_retry_cap + 1)
    return made


def test_down_then_slow_then_late_ack_applies_each_message_exactly_once(make_server: MakeServer) -> None:
    """The seed's post-mortem bug: a delayed acknowledgement plus missing dedup sent duplicate refund e-mails.
    With the dedup key carried to the receiver, nothing is lost and nothing is applied twice."""
    srv = make_server(comms_retry_base=2.0, comms_retry_cap=30.0)
    recv = WebhookReceiver(SECRET)
    # Margins wide enough for a loaded 2-core machine: the receiver applies within the sender's 2 s timeout
    # and, when slow, answers only after 5 s.
    add_channel(srv, name="webhook:refunds", url=recv.url, secret=SECRET, timeout=2.0, max_attempts=10)
    inc = open_incident(srv)
    keys = enqueue_refund_emails(srv, "webhook:refunds", 12, inc["id"])

    # 1. the receiver is down: every attempt fails to connect and is scheduled again with backoff
    assert drive(srv) == 12
    with srv.rt.db.read() as s:
        assert outbox.counts(s)["pending"] == 12
    assert recv.requests == 0

    # 2. it comes back slow: it applies each message but answers after the sender's timeout
    recv.up()
    recv.delay = 5.0
    assert drive(srv) == 12
    assert sorted(recv.applied) == sorted(keys)
    with srv.rt.db.read() as s:
        assert outbox.counts(s)["pending"] == 12  # unconfirmed, so the sender must try again

    # 3. then it acknowledges late (within the timeout): the redeliveries are recognised as duplicates
    recv.delay = 0.1
    assert drive(srv) == 12
    with srv.rt.db.read() as s:
        assert outbox.counts(s) == {"pending": 0, "sending": 0, "delivered": 12, "dead": 0}

    # 4. confirmed messages are never sent again
    before = recv.requests
    assert drive(srv, rounds=3) == 0
    assert recv.requests == before
    recv.down()

    assert all(n == 1 for n in recv.applied.values()), recv.applied  # zero doubly-applied
    assert set(recv.applied) == set(keys)  # zero lost
    assert recv.duplicates >= 12 and recv.rejected == 0

    viewer = srv.client("viewer")
    report = viewer.get("/v1/comms/outbox", params={"state": "delivered"}).json()
    assert report["counts"]["delivered"] == 12
    assert report["redeliveries"] == 24  # two extra attempts per message: the down one and the slow one
    msgs = viewer.get(f"/v1/incidents/{inc['id']}/messages").json()["messages"]
    assert len(msgs) == 12
    for m in msgs:
        assert m["state"] == "delivered" and m["attempts"] == 3 and m["redeliveries"] == 2
        outcomes = [a["outcome"] for a in m["attempt_log"]]
        assert outcomes == ["retry", "retry", "delivered"]
        assert "ConnectError" in m["attempt_log"][0]["error"]
        assert "timeout" in m["attempt_log"][1]["error"]
    print(f"redeliveries reported: {report['redeliveries']}; duplicates the receiver ignored: {recv.duplicates}")


def test_webhook_is_signed_and_replays_are_rejected(make_server: MakeServer) -> None:
    srv = make_server()
    with WebhookReceiver(SECRET).running() as recv:
        add_channel(srv, name="webhook:ops", url=recv.url, secret=SECRET)
        enqueue_refund_emails(srv, "webhook:ops", 2)
        assert drive(srv) == 2
        assert recv.rejected == 0 and len(recv.applied) == 2
        headers, body = recv.raw[0]
        ts = headers["x-codeblue-timestamp"]
        want = "v1=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["x-codeblue-signature"] == want == signature(SECRET, ts, body)
        assert headers["idempotency-key"].startswith("refund-mail:order-")
        # A captured request replayed later (old timestamp) or with a changed body is refused by the receiver.
        old = str(int(time.time()) - 3600)
        stale = {"X-Codeblue-Timestamp": old, "X-Codeblue-Signature": signature(SECRET, old, body),
                 "Idempotency-Key": "replayed"}
        assert httpx.post(recv.url, content=body, headers=stale, timeout=30).status_code == 401
        tampered = {"X-Codeblue-Timestamp": ts, "X-Codeblue-Signature": headers["x-codeblue-signature"],
                    "Idempotency-Key": "tampered"}
        assert httpx.post(recv.url, content=body + b" ", headers=tampered, timeout=30).status_code == 401
        # A receiver with the wrong secret refuses everything; the sender keeps those messages visible.
        recv.secret = "another-secret"
        enqueue_refund_emails(srv, "webhook:ops", 3)
        drive(srv)
        with srv.rt.db.read() as s:
            assert outbox.counts(s)["dead"] == 1  # 401 is a refusal, not a transient failure
            dead = outbox.list_messages(s, state="dead")[0]
            assert "HTTP 401" in dead.last_error


def test_dead_letter_after_max_attempts_with_visible_reason(make_server: MakeServer) -> None:
    srv = make_server(comms_max_attempts=4)
    with WebhookReceiver(SECRET).running() as recv:
        recv.mode, recv.status = "status", 503
        add_channel(srv, name="webhook:flaky", url=recv.url, secret=SECRET)
        inc = open_incident(srv)
        enqueue_refund_emails(srv, "webhook:flaky", 1, inc["id"])
        with srv.rt.db.write() as s:
            outbox.enqueue(s, srv.rt, channel="webhook:nowhere", kind="page", dedup_key="page:1:x", subject="s",
                           body="b", incident_id=inc["id"])
        drive(srv, rounds=6)
        assert recv.requests == 4
        msgs = {m["channel"]: m for m in
                srv.client("viewer").get(f"/v1/incidents/{inc['id']}/messages").json()["messages"]}
        flaky = msgs["webhook:flaky"]
        assert flaky["state"] == "dead" and flaky["attempts"] == 4
        assert flaky["last_error"].startswith("gave up after 4 attempts; last error: HTTP 503")
        assert [a["status_code"] for a in flaky["attempt_log"]] == [503, 503, 503, 503]
        nowhere = msgs["webhook:nowhere"]
        assert nowhere["state"] == "dead" and "channel 'webhook:nowhere' is not configured" in nowhere["last_error"]
        timeline = srv.client("viewer").get(f"/v1/incidents/{inc['id']}/timeline").json()
        entries = timeline if isinstance(timeline, list) else timeline.get("entries", [])
        notes = [e["text"] for e in entries if e["kind"] == "comms.dead_letter"]
        assert len(notes) == 2 and any("gave up after 4 attempts" in n for n in notes)
        dead = srv.client("viewer").get("/v1/comms/outbox", params={"state": "dead"}).json()
        assert {m["channel"] for m in dead["messages"]} == {"webhook:flaky", "webhook:nowhere"}

        # An operator fixes the receiver and requeues the dead message: same key, delivered once.
        recv.mode = "ok"
        r = srv.client("lead").post(f"/v1/comms/outbox/{flaky['id']}/retry")
        assert r.status_code == 200 and r.json()["state"] == "pending"
        assert srv.client("lead").post(f"/v1/comms/outbox/{flaky['id']}/retry").status_code == 409
        drive(srv)
        assert srv.client("viewer").get(f"/v1/comms/outbox/{flaky['id']}").json()["state"] == "delivered"
        assert list(recv.applied) == ["refund-mail:order-0"]


def test_email_over_smtp_with_stable_message_id(make_server: MakeServer) -> None:
    srv = make_server()
    with SmtpSink(fail_first=True) as smtp:
        add_channel(srv, name="email", host="127.0.0.1", port=smtp.port, **{"from": "incidents@codeblue.test"},
                    to=["support@example.test"])
        inc = open_incident(srv)
        with srv.rt.db.write() as s:
            outbox.enqueue(s, srv.rt, channel="email", kind="announcement", dedup_key="refund-mail:42",
                           subject="Your refund", body="We issued your refund.", to=["customer@example.test"],
                           incident_id=inc["id"])
            outbox.enqueue(s, srv.rt, channel="email", kind="update", dedup_key="brief:1", subject="Brief",
                           body="Support brief", incident_id=inc["id"])
        drive(srv)  # the server keeps both, but answers 451: not confirmed
        drive(srv)  # resent with the same Message-ID and confirmed
        assert drive(srv) == 0
    ids = [str(m["Message-ID"]) for m in smtp.messages]
    assert len(ids) == 4 and len(set(ids)) == 2  # each e-mail arrived twice, with one stable Message-ID
    assert message_id("refund-mail:42", "codeblue.test") in ids
    by_id = {str(m["Message-ID"]): m for m in smtp.messages}
    refund = by_id[message_id("refund-mail:42", "codeblue.test")]
    assert refund["To"] == "customer@example.test" and refund["X-Codeblue-Dedup-Key"] == "refund-mail:42"
    assert refund.get_payload().strip() == "We issued your refund."
    assert ("incidents@codeblue.test", ["support@example.test"]) in smtp.envelopes  # channel default recipients
    with srv.rt.db.read() as s:
        assert outbox.counts(s)["delivered"] == 2 and outbox.redeliveries(s) == 2


def test_slack_and_pagerduty_formats(make_server: MakeServer) -> None:
    srv = make_server()
    with WebhookReceiver().running() as slack, WebhookReceiver().running() as pd:
        add_channel(srv, name="slack", url=slack.url, username="codeblue")
        add_channel(srv, name="pagerduty", routing_key="R0UT1NGKEY", url=pd.url, source="codeblue-test")
        inc = open_incident(srv)
        with srv.rt.db.write() as s:
            outbox.enqueue(s, srv.rt, channel="slack", kind="update", dedup_key="u:1", subject="Update",
                           body="Refunds paused.", incident_id=inc["id"])
            outbox.enqueue(s, srv.rt, channel="pagerduty", kind="page", dedup_key="page:7:al:1",
                           subject="Page al: incident lead", body="Please join", incident_id=inc["id"],
                           data={"severity": "critical", "link": "http://x.test/ack"})
        assert drive(srv) == 2
    assert slack.bodies["u:1"] == {"text": "*Update*\nRefunds paused.", "username": "codeblue"}
    event = pd.bodies["page:7:al:1"]
    assert event["routing_key"] == "R0UT1NGKEY" and event["event_action"] == "trigger"
    assert event["dedup_key"] == "page:7:al:1"
    assert event["payload"]["severity"] == "critical" and event["payload"]["source"] == "codeblue-test"
    assert event["payload"]["summary"] == "Page al: incident lead"
    assert event["payload"]["group"] == f"incident-{inc['id']}"
    assert event["links"] == [{"href": "http://x.test/ack", "text": "Open in codeblue"}]


def test_channel_secrets_are_sealed_and_never_returned(make_server: MakeServer, caplog: object) -> None:
    srv = make_server()
    body = {"name": "email", "host": "127.0.0.1", "port": 2525, "from": "cb@example.test", "username": "cb",
            "password": "hunter2-very-secret"}
    out = add_channel(srv, **body)
    assert "password" not in out["config"] and out["secrets_set"] == ["password"]  # type: ignore[index]
    listing = srv.client("lead").get("/v1/comms/channels")
    assert "hunter2" not in listing.text
    with srv.rt.db.read() as s:
        row = s.scalar(select(Channel).where(Channel.name == "email"))
        assert row is not None and "hunter2" not in row.secret and row.secret.startswith("cbs1:")
    # Updating without the password keeps the sealed one; a wrong type names the field.
    add_channel(srv, name="email", host="127.0.0.2", port=2525, **{"from": "cb@example.test"})
    with srv.rt.db.read() as s:
        from codeblue.comms.channels import load_specs

        assert load_specs(s, srv.rt.server_key)["email"].secrets["password"] == "hunter2-very-secret"
    r = srv.admin().post("/v1/comms/channels", json={"name": "webhook:x", "url": "ftp://nope", "secret": "s"})
    assert r.status_code == 422 and r.json()["field"] == "url"
    r = srv.admin().post("/v1/comms/channels", json={"name": "webhook:x", "url": "http://127.0.0.1:9/h"})
    assert r.status_code == 422 and r.json()["field"] == "secret"
    assert srv.client("responder").post("/v1/comms/channels", json=body).status_code == 403
    assert srv.client().post("/v1/comms/channels", json=body).status_code == 401


def test_channels_from_the_config_file_belong_to_the_file(make_server: MakeServer) -> None:
    """The file is applied at every start: an API edit of a file channel would be undone silently at the next
    one, so it is refused and says where to change it. A channel the file drops becomes an API channel."""
    hook = {"name": "webhook:ops", "url": "http://127.0.0.1:9/ops", "secret": SECRET}
    srv = make_server(config={"channels": [hook]})
    add_channel(srv, name="webhook:api", url="http://127.0.0.1:9/api", secret=SECRET)
    listing = {c["name"]: c for c in srv.client("lead").get("/v1/comms/channels").json()}
    assert listing["webhook:ops"]["source"] == "file" and listing["webhook:api"]["source"] == "api"
    for r in (srv.admin().post("/v1/comms/channels", json={**hook, "url": "http://127.0.0.1:9/elsewhere"}),
              srv.admin().delete("/v1/comms/channels/webhook:ops")):
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == "name" and "comms config file" in r.json()["detail"]
    # the API channel stays editable; the refused edit changed nothing
    add_channel(srv, name="webhook:api", url="http://127.0.0.1:9/api2")
    with srv.rt.db.read() as s:
        ops = s.scalar(select(Channel).where(Channel.name == "webhook:ops"))
        assert ops is not None and ops.config["url"] == "http://127.0.0.1:9/ops"
    srv.stop()

    # the next start's file no longer has it: kept (queued messages may name it), and editable over the API
    admin_token, lead_token = srv.admin_token, srv.token("lead")
    srv = make_server(config={"channels": []})
    srv.admin_token, srv._tokens[("lead", ("lead",))] = admin_token, lead_token
    listing = {c["name"]: c for c in srv.client("lead").get("/v1/comms/channels").json()}
    assert listing["webhook:ops"]["source"] == "api"
    assert listing["webhook:api"]["config"]["url"] == "http://127.0.0.1:9/api2"
    add_channel(srv, name="webhook:ops", url="http://127.0.0.1:9/moved")
    assert srv.admin().delete("/v1/comms/channels/webhook:ops").status_code == 204


def test_enqueue_dedup_holds_across_concurrent_transactions(make_server: MakeServer) -> None:
    """Two transactions racing to queue the same key (two replicas handling one retried request) both
    succeed and leave one row."""
    import threading

    srv = make_server()
    barrier = threading.Barrier(2)
    ids: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            with srv.rt.db.write() as s:
                m = outbox.enqueue(s, srv.rt, channel="email", kind="page", dedup_key="page:1:al:incident_lead",
                                   subject=f"from {n}", body="b")
                s.flush()
                ids.append(m.id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(ids) == 2 and ids[0] == ids[1]
    with srv.rt.db.read() as s:
        assert outbox.counts(s)["pending"] == 1


def test_enqueue_returns_a_row_with_its_id_at_once(make_server: MakeServer) -> None:
    srv = make_server()
    with srv.rt.db.write() as s:
        a = outbox.enqueue(s, srv.rt, channel="slack", kind="notify", dedup_key="runbook:1:1:notify", subject="s",
                           body="b")
        b = outbox.enqueue(s, srv.rt, channel="slack", kind="notify", dedup_key="runbook:1:1:notify", subject="s",
                           body="b")
        assert a.id is not None and a.id == b.id and a.state == "pending"
