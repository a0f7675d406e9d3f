"""Offline replay: the live pipeline, driven in stream time over an NDJSON file of Event v1 lines.

Bad lines are reported with their line numbers and skipped; the replay never aborts on them.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from codeblue.errors import Invalid
from codeblue.signals import kernels
from codeblue.signals.decode import decode_line
from codeblue.signals.detect import DetectConfig
from codeblue.signals.events import EventError, parse_event
from codeblue.signals.objectives import Objectives
from codeblue.signals.pipeline import AlertUpdate, Group, Pipeline
from codeblue.signals.windows import FINE_S

MAX_REPORTED_ERRORS = 200


@dataclass
class LineError:
    line: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass
class ReplayResult:
    events: int = 0
    lines: int = 0
    rejected: int = 0
    errors: list[LineError] = field(default_factory=list)
    change_errors: list[LineError] = field(default_factory=list)
    changes: int = 0
    start: float | None = None
    end: float | None = None
    updates: list[AlertUpdate] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "lines": self.lines,
            "rejected": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
            "changes": self.changes,
            "change_errors": [e.as_dict() for e in self.change_errors],
            "stream": {"start": self.start, "end": self.end},
            "incidents": [incident_dict(g) for g in self.groups],
        }


def incident_dict(g: Group) -> dict[str, Any]:
    t = g.triage
    assert t is not None
    first = g.alerts[0]
    return {
        "id": g.id,
        "opened_at": g.opened_at,
        "workflow": g.workflow,
        "indicator": first.indicator,
        "breakdown": first.breakdown,
        "failure_type": g.failure_type,
        "severity": t.severity,
        "onset": g.onset,
        "harm": {"requests": t.harm.requests, "subjects": t.harm.subjects, "started_at": t.harm.started_at,
                 "growing": t.harm.growing},
        "suspects": [{"kind": s.kind, "name": s.name, "version": s.version, "score": s.score, "evidence": s.evidence,
                      "change_id": s.change_id, "from": s.from_, "rollback": s.rollback} for s in t.suspects],
        "resolved_at": g.resolved_at,
        "complaint_clusters": list(g.clusters.values()),
        "alerts": [{"indicator": a.indicator, "breakdown": a.breakdown, "fired_at": a.fired_at,
                    "evidence": a.evidence, "method": a.method} for a in g.alerts],
    }


def read_changes(path: Path) -> tuple[list[dict[str, Any]], list[LineError]]:
    """Change v1 records, one JSON object a line; bad lines reported with their numbers."""
    out: list[dict[str, Any]] = []
    errors: list[LineError] = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                errors.append(LineError(n, "", f"not JSON: {exc}"))
                continue
            if not isinstance(obj, dict):
                errors.append(LineError(n, "", "expected a JSON object"))
                continue
            try:
                probe = Pipeline()
                out.append(probe.add_change(obj))
            except Invalid as exc:
                errors.append(LineError(n, exc.field or "", exc.detail))
    out.sort(key=lambda c: c["time"])
    return out, errors


def replay_lines(
    lines: Iterable[bytes],
    *,
    changes: list[dict[str, Any]] | None = None,
    objectives: Objectives | None = None,
    config: DetectConfig | None = None,
    pipeline: Pipeline | None = None,
) -> ReplayResult:
    """Run the pipeline over NDJSON lines in stream time: ticks every 10 s of event time."""
    pipe = pipeline or Pipeline(config, objectives)
    res = ReplayResult()
    # A replay allocates millions of short-lived dicts and keeps no cycles: the cyclic collector would only
    # rescan the pipeline's long-lived state over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        _run(pipe, res, lines, sorted(changes or [], key=lambda c: c["time"]))
    finally:
        if was_enabled:
            gc.enable()
    return res


def _run(pipe: Pipeline, res: ReplayResult, lines: Iterable[bytes], pending: list[dict[str, Any]]) -> None:
    res.changes = len(pending)
    ci = 0
    next_tick = -math.inf
    started = False
    tick = pipe.tick

    def advance(t: float) -> float:
        """The first line at or past the next tick's time: tick (after the changes up to it); the next tick's
        time."""
        nonlocal ci, started
        if started:
            now = (t // FINE_S) * FINE_S - 0.001
            while ci < len(pending) and pending[ci]["time"] <= now:
                pipe.add_change(pending[ci])
                ci += 1
            res.updates.extend(tick(now))
        else:
            started = True
            res.start = t
        return (t // FINE_S + 1) * FINE_S

    loads = orjson.loads
    n = 0
    last_t = -math.inf

    def slow(raw: bytes, n: int) -> None:
        """A line the struct decoder refused: orjson and the full parser, which report the field and reason."""
        nonlocal next_tick, last_t
        try:
            o = loads(raw)
        except orjson.JSONDecodeError as exc:
            if not raw.strip():
                return
            _err(res, n, "", f"not JSON: {exc}")
            return
        t: Any = o.get("time") if type(o) is dict else None
        tt = type(t)
        if tt is float or tt is int:
            if t >= next_tick:
                next_tick = advance(t)
            if t > last_t:
                last_t = t
        if type(o) is not dict:
            _err(res, n, "", f"expected a JSON object, got {type(o).__name__}")  # replay's wording, as before
            return
        try:
            pipe._add_event(parse_event(o, n))
        except EventError as exc:
            _err(res, n, exc.field, exc.reason)

    k = kernels.line_path()
    if k is not None:
        # The compiled line path: decode_line and _add_wire in one call (kernels.py); a line at or past the next
        # tick comes back uncounted, to be counted after the tick. Ticks swap the accumulators: re-read them.
        feed, count_ = k.feed, k.count
        accs, compl = pipe._acc, pipe._complaints
        counted = 0
        try:
            for n, raw in enumerate(lines, 1):
                r = feed(raw, accs, compl, next_tick)
                if r is None:
                    slow(raw, n)
                    accs, compl = pipe._acc, pipe._complaints
                    continue
                t: Any
                if type(r) is tuple:
                    e, vk = r
                    t = e.time
                    next_tick = advance(t)
                    accs, compl = pipe._acc, pipe._complaints
                    count_(accs, compl, e, vk)
                else:
                    t = r
                counted += 1
                if t > last_t:
                    last_t = t
        finally:
            pipe.events += counted
    else:
        decode = decode_line
        add = pipe._add_wire
        for n, raw in enumerate(lines, 1):
            # The struct decoder takes the common line in one C call; anything it refuses goes through orjson and
            # the full parser, which reports the field and reason exactly.
            got = decode(raw)
            if got is not None:
                t = got[0].time  # an int or a float (the struct's type)
                if t >= next_tick:
                    next_tick = advance(t)
                if t > last_t:
                    last_t = t
                add(*got)
                continue
            slow(raw, n)
    res.lines = n
    if started:
        while ci < len(pending) and pending[ci]["time"] <= last_t:
            pipe.add_change(pending[ci])
            ci += 1
        res.updates.extend(tick(last_t))
        res.end = last_t
    res.events = pipe.events
    res.groups = pipe.incidents()


def _err(res: ReplayResult, line: int, field_name: str, reason: str) -> None:
    res.rejected += 1
    if len(res.errors) < MAX_REPORTED_ERRORS:
        res.errors.append(LineError(line, field_name, reason))


def replay_file(
    path: Path,
    *,
    changes_path: Path | None = None,
    objectives: Objectives | None = None,
    config: DetectConfig | None = None,
) -> ReplayResult:
    changes: list[dict[str, Any]] = []
    change_errors: list[LineError] = []
    if changes_path is not None:
        changes, change_errors = read_changes(changes_path)
    with open(path, "rb") as fh:
        res = replay_lines(fh, changes=changes, objectives=objectives, config=config)
    res.change_errors = change_errors
    return res
