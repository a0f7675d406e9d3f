"""Start-up for SDK clients: a job that forgets Guards silent for longer than the retention period."""

from __future__ import annotations

import logging

from codeblue.controls.clients import service
from codeblue.runtime import Job, Runtime

log = logging.getLogger(__name__)


def setup(rt: Runtime) -> list[Job]:
    def prune(rt: Runtime) -> None:
        with rt.db.write() as s:
            n = service.prune(s, rt)
        if n:
            log.info("forgot %d SDK clients silent for over %.0f s", n, rt.settings.sdk_client_retention_s)

    return [Job("sdk.clients.prune", every=3600.0, fn=prune)]
