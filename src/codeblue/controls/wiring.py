"""Start-up for controls: the broadcaster in ``rt.extras``, the log poller and the expiry job."""

from __future__ import annotations

import logging

from codeblue.controls import service
from codeblue.controls.revision import BROADCASTER_KEY, current_revision
from codeblue.controls.stream import Broadcaster, poll_log
from codeblue.runtime import Job, Runtime

log = logging.getLogger(__name__)


def setup(rt: Runtime) -> list[Job]:
    broadcaster = Broadcaster(queue_size=rt.settings.controls_queue_size)
    with rt.db.read() as s:
        broadcaster.polled = current_revision(s)
    rt.extras[BROADCASTER_KEY] = broadcaster

    def poll(rt: Runtime) -> None:
        poll_log(rt, broadcaster)

    def expire(rt: Runtime) -> None:
        with rt.db.read() as s:
            if not service.housekeeping_due(s, rt):
                return  # no write transaction (and no SQLite write lock) when there is nothing to do
        with rt.db.write() as s:
            lifted = service.expire_controls(s, rt)
            service.trim_revision_log(s, rt)
        for ctl in lifted:
            log.info("lifted expired control %s (%s)", ctl.id, ctl.type)

    # Jobs run every `every / clock_speed` wall seconds; the poll is a wall-clock safety net, so undo the speed.
    speed = max(rt.settings.clock_speed, 1e-9)
    return [
        Job("controls.poll", every=rt.settings.controls_poll_s * speed, fn=poll),
        Job("controls.expire", every=1.0, fn=expire),
    ]
