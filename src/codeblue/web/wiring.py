"""Console wiring: wake the live-update watcher right after commits that change what pages show."""

from __future__ import annotations

from typing import Any

from codeblue.hooks import hooks
from codeblue.runtime import Job, Runtime
from codeblue.web import session, watch

TOPICS = ("incident.opened", "incident.status", "incident.updated", "timeline.appended", "controls.changed")


def setup(rt: Runtime) -> list[Job]:
    watch.watcher(rt)

    def on_change(s: Any, rt: Runtime, **_kw: Any) -> None:
        watch.wake_after_commit(s, rt)

    for topic in TOPICS:
        hooks.on(topic, on_change)
    return session.jobs()
