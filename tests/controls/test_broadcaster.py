"""The in-process broadcaster: bounded per-subscriber queues, resync marker for a slow client, dedup."""

from __future__ import annotations

import asyncio

from codeblue.controls.revision import StreamEntry
from codeblue.controls.stream import Broadcaster


def test_a_slow_subscriber_is_marked_for_resync_without_blocking_others() -> None:
    async def run() -> None:
        b = Broadcaster(queue_size=2)
        slow = b.subscribe("production")
        fast = b.subscribe("production")
        other_env = b.subscribe("staging")
        entries = [StreamEntry(r, r - 1, "production", b"x") for r in range(1, 6)]
        for e in entries:
            b.publish([e])
            await asyncio.sleep(0)  # let the loop deliver
            if not fast.queue.empty():
                fast.queue.get_nowait()  # the fast client keeps up
        assert slow.overflowed and slow.queue.qsize() == 1 and slow.queue.get_nowait() is None
        assert fast.queue.empty() and not fast.overflowed
        assert other_env.queue.empty()
        b.publish([entries[0]])  # already published: not sent twice
        await asyncio.sleep(0)
        assert fast.queue.empty()
        b.unsubscribe(slow)
        assert b.subscriber_count("production") == 1

    asyncio.run(run())
