"""The sender's guarantees: backoff with jitter, Retry-After, lease expiry after a crash, and several
senders (replicas) sharing one outbox without sending anything twice."""

from __future__ import annotations

import random
import threading

from codeblue.app import build_runtime
from codeblue.clock import ManualClock
from codeblue.comms import outbox
from codeblue.comms.sender import Sender, backoff, get_sender
from tests.comms.conftest import MakeServer, clock_of
from tests.comms.peers import WebhookReceiver
from tests.comms.test_delivery import SECRET, add_channel, enqueue_refund_emails


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        full = min(900.0, 5.0 * 2 ** (attempt - 1))
        delays = {backoff(attempt, base=5.0, cap=900.0, rng=rng) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered: replicas retrying together spread out


def test_retry_after_is_honoured(make_server: MakeServer) -> None:
    srv = make_server(comms_retry_base=1.0, comms_retry_cap=2.0)
    with WebhookReceiver(SECRET).running() as recv:
        recv.mode, recv.status = "status", 429
        add_channel(srv, name="webhook:busy", url=recv.url, secret=SECRET)
        enqueue_refund_emails(srv, "webhook:busy", 1)
        t = clock_of(srv).now()
        get_sender(srv.rt).deliver_due()  # no Retry-After: backoff decides, within (0.5, 1] s
        with srv.rt.db.read() as s:
            [m] = outbox.list_messages(s)
            assert m.state == "pending" and t + 0.5 <= m.next_attempt_at <= t + 1.0
            assert m.last_status == 429
        recv.retry_after = 120
        clock_of(srv).advance(2)
        t = clock_of(srv).now()
        get_sender(srv.rt).deliver_due()  # "Retry-After: 120" outweighs the 2 s backoff cap
        with srv.rt.db.read() as s:
            [m] = outbox.list_messages(s)
            assert t + 120 <= m.next_attempt_at <= t + 122


def test_a_crashed_senders_claim_expires_and_the_message_is_redelivered_with_the_same_key(
        make_server: MakeServer) -> None:
    srv = make_server()
    with WebhookReceiver(SECRET).running() as recv:
        add_channel(srv, name="webhook:ops", url=recv.url, secret=SECRET)
        [key] = enqueue_refund_emails(srv, "webhook:ops", 1)
        clock = clock_of(srv)
        with srv.rt.db.write() as s:  # a sender claims it, then its process dies before recording anything
            [claimed] = outbox.claim_due(s, now=clock.now(), limit=10, lease=60.0)
        assert get_sender(srv.rt).deliver_due() == 0  # leased: nobody else touches it
        clock.advance(61)
        assert get_sender(srv.rt).deliver_due() == 1
        assert recv.headers[-1]["idempotency-key"] == key == claimed.dedup_key
        with srv.rt.db.read() as s:
            [m] = outbox.list_messages(s)
            assert m.state == "delivered" and m.attempts == 2


def test_two_senders_share_one_outbox_without_sending_twice(make_server: MakeServer) -> None:
    """Two replicas (two runtimes on one database) drain the same backlog concurrently."""
    srv = make_server(comms_sender_concurrency=4)
    with WebhookReceiver(SECRET).running() as recv:
        add_channel(srv, name="webhook:ops", url=recv.url, secret=SECRET)
        keys = enqueue_refund_emails(srv, "webhook:ops", 300)
        clock = clock_of(srv)
        other_rt = build_runtime(srv.settings, ManualClock(start=clock.now()))
        other = Sender(other_rt)
        made: list[int] = []

        def run(sender: Sender) -> None:
            made.append(sender.deliver_due())

        threads = [threading.Thread(target=run, args=(get_sender(srv.rt),)), threading.Thread(target=run, args=(other,))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        other.close()
        other_rt.db.dispose()
        assert sum(made) == 300
        assert recv.requests == 300 and recv.duplicates == 0
        assert sorted(recv.applied) == sorted(keys)
        with srv.rt.db.read() as s:
            assert outbox.counts(s)["delivered"] == 300 and outbox.redeliveries(s) == 0
