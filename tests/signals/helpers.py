"""Shared helpers for detection tests: generate a scenario once per (name, seed) and replay it."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from codeblue.signals.replay import ReplayResult, replay_lines
from codeblue.sim import SimRun, generate


@functools.lru_cache(maxsize=16)
def scenario(name: str, seed: int = 0) -> SimRun:
    return generate(name, seed)


@functools.lru_cache(maxsize=16)
def replayed(name: str, seed: int = 0) -> tuple[SimRun, dict[str, Any]]:
    run = scenario(name, seed)
    res = replay_lines((orjson.dumps(e) for e in run.events), changes=list(run.changes))
    return run, res.report()


def replay_events(events: list[dict[str, Any]], changes: list[dict[str, Any]] | None = None, **kw: Any) -> ReplayResult:
    return replay_lines((orjson.dumps(e) for e in events), changes=changes or [], **kw)
