"""Wires comms into a running server: loads the comms config (channels from YAML are stored sealed), keeps
the incident projection current from the incident hooks, and returns the sender and cadence jobs."""

from __future__ import annotations

import logging
from typing import Any

from codeblue import configwatch
from codeblue.comms import channels, sender, service
from codeblue.comms.config import load_config
from codeblue.hooks import hooks
from codeblue.runtime import Job, Runtime

log = logging.getLogger(__name__)


def _sync(s: Any, rt: Runtime, incident: Any, **_kw: Any) -> None:
    service.sync_incident(s, rt, incident.as_dict())


def apply_config(rt: Runtime) -> None:
    """Apply the comms config file: its channels (sealed) in one transaction, then its cadence, audiences and
    status page. A bad file raises before anything changed (at start-up it stops the server; at a reload
    the version in force stays)."""
    cfg = load_config(rt.settings.comms_config)
    with rt.db.write() as s:
        names = {channels.upsert_channel(s, server_key=rt.server_key, raw=raw, now=rt.clock.now(), source="file",
                                         where=f"channels[{i}]").name for i, raw in enumerate(cfg.channels)}
        for name in channels.release_file_channels(s, keep=names, now=rt.clock.now()):
            log.warning("comms: channel %r is no longer in the comms config file; it is kept and can now be "
                        "changed over the API", name)
    rt.extras[service.CONFIG] = cfg


def setup(rt: Runtime) -> list[Job]:
    apply_config(rt)
    # Not timeline.appended: that fires on every note, and comms only needs the facts these carry.
    for topic in ("incident.opened", "incident.status", "incident.milestone", "incident.updated", "incident.role"):
        hooks.on(topic, _sync)
    jobs = [
        Job("comms.sender", 0.02, sender.sender_job),
        Job("comms.cadence", rt.settings.comms_cadence_tick, service.cadence_job),
    ]
    if rt.settings.comms_config is not None:
        jobs.append(configwatch.watch(rt, "comms", rt.settings.comms_config, apply_config))
    return jobs
