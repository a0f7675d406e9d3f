"""Wires comms into a running server: loads the comms config (channels from YAML are stored sealed), keeps
the incident projection current from the incident hooks, and returns the sender and cadence jobs."""

from __future__ import annotations

import logging
from typing import Any

from codeblue.comms import channels, sender, service
from codeblue.comms.config import load_config
from codeblue.hooks import hooks
from codeblue.runtime import Job, Runtime

log = logging.getLogger(__name__)


def _sync(s: Any, rt: Runtime, incident: Any, **_kw: Any) -> None:
    service.sync_incident(s, rt, incident.as_dict())


def setup(rt: Runtime) -> list[Job]:
    cfg = load_config(rt.settings.comms_config)
    rt.extras[service.CONFIG] = cfg
    with rt.db.write() as s:
        names = {channels.upsert_channel(s, server_key=rt.server_key, raw=raw, now=rt.clock.now(), source="file",
                                         where=f"channels[{i}]").name for i, raw in enumerate(cfg.channels)}
        for name in channels.release_file_channels(s, keep=names, now=rt.clock.now()):
            log.warning("comms: channel %r is no longer in the comms config file; it is kept and can now be "
                        "changed over the API", name)
    # Not timeline.appended: that fires on every note, and comms only needs the facts these carry.
    for topic in ("incident.opened", "incident.status", "incident.milestone", "incident.updated", "incident.role"):
        hooks.on(topic, _sync)
    return [
        Job("comms.sender", 0.02, sender.sender_job),
        Job("comms.cadence", rt.settings.comms_cadence_tick, service.cadence_job),
    ]
