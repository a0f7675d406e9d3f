"""The SDK's bounded event queue: what is held for a resend keeps its idempotency key and counts towards the
capacity, and the oldest events go first when it overflows."""

from __future__ import annotations

import threading

from codeblue.sdk.reporting import EventQueue


def _ev(i: int) -> dict[str, object]:
    return {"kind": "response", "workflow": "chat", "time": 1.0, "subject": f"s{i}"}


def _subjects(batch: list[dict[str, object]]) -> list[object]:
    return [e["subject"] for e in batch]


def test_a_held_batch_is_sent_again_first_under_the_same_key() -> None:
    q = EventQueue(capacity=10, batch_size=3, wake=threading.Event())
    for i in range(5):
        q.put(_ev(i))
    batch, key = q.take_batch(3)
    assert _subjects(batch) == ["s0", "s1", "s2"] and len(q) == 2
    q.hold(batch, key)
    assert len(q) == 5
    again, key2 = q.take_batch(3)
    assert key2 == key and _subjects(again) == ["s0", "s1", "s2"]
    rest, key3 = q.take_batch(3)
    assert key3 != key and _subjects(rest) == ["s3", "s4"]
    assert len(q) == 0 and q.take_batch(3)[0] == []


def test_a_held_batch_counts_towards_capacity_and_loses_its_oldest_first() -> None:
    q = EventQueue(capacity=4, batch_size=3, wake=threading.Event())
    for i in range(3):
        q.put(_ev(i))
    batch, key = q.take_batch(3)
    for i in range(3, 6):  # the batch is in flight: the queue takes its full capacity meanwhile
        q.put(_ev(i))
    q.hold(batch, key)  # 3 held + 3 queued > 4: the two oldest held events go
    assert len(q) == 4 and q.dropped == 2
    q.put(_ev(6))  # full: the last held event goes, the held batch is gone
    assert len(q) == 4 and q.dropped == 3
    nxt, k = q.take_batch(3)
    assert k != key and _subjects(nxt) == ["s3", "s4", "s5"]
    assert q.enqueued == 7 and q.dropped + len(q) + len(nxt) == 7


def test_a_held_batch_that_shrank_keeps_its_key() -> None:
    q = EventQueue(capacity=3, batch_size=2, wake=threading.Event())
    q.put(_ev(0))
    q.put(_ev(1))
    batch, key = q.take_batch(2)
    q.hold(batch, key)
    q.put(_ev(2))
    q.put(_ev(3))  # capacity 3: s0 (held) goes
    again, k = q.take_batch(2)
    assert k == key and _subjects(again) == ["s1"]
    q.clear()
    assert len(q) == 0
