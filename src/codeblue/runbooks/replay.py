"""Replay with runbooks: the whole response — detection, triage, runbooks, containment, rollback — in
stream time over a recorded stream, and what containment changed about what the rest of the stream served.

A private runtime (a temporary SQLite database and a manual clock set to event time) runs the very same
code as the server: events go through intake (validated, redacted, stored, fed to the detection pipeline),
the live detector opens incidents, the `incident.opened` hook starts the runbooks, the executor runs their
steps, and the controls snapshot they produce is evaluated with the SDK's own evaluator against every later
request:
- a request that a control blocks is served by its fallback instead — if it was harmful, that harm was
  **prevented**; if it was good, it is **collateral** (a good request blocked);
- a request served by a version that a runbook rolled back is served by the stable version instead —
  its harm, if any, was prevented;
- a complaint about a prevented request never arrives.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from codeblue.app import build_runtime
from codeblue.clock import ManualClock
from codeblue.errors import CodeblueError
from codeblue.runbooks import executor
from codeblue.runbooks.evidence import is_harmful
from codeblue.runtime import Runtime
from codeblue.settings import Settings

STEP_S = 10.0
CONFIG_KINDS = ("prompt", "routing_policy", "model_alias", "retrieval_index", "policy_template", "tool_contract",
                "feature_flag")
HARM_FIELDS = {"grounded": True, "refusal": False, "args_valid": True}


@dataclass
class IncidentOutcome:
    incident_id: int
    workflows: list[str]
    failure_type: str
    onset: float
    contained_at: float | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    harm_requests: int = 0
    harm_subjects: set[str] = field(default_factory=set)
    prevented: int = 0
    collateral: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"contained_at": self.contained_at, "actions": self.actions,
                "harm_before_containment": {"requests": self.harm_requests, "subjects": len(self.harm_subjects)},
                "collateral": {"requests": self.collateral}, "prevented": {"requests": self.prevented}}


@dataclass
class World:
    """What containment has changed so far: the compiled snapshot and the rolled-back versions; and every
    request served as it was, per workflow, to count the harm served before containment afterwards."""

    served: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    change_errors: list[dict[str, Any]] = field(default_factory=list)
    store: list[dict[str, Any]] = field(default_factory=list)
    index: Any = None
    revision: int = -1
    rolled_back: dict[str, set[str]] = field(default_factory=dict)  # "<kind>/<name>" -> versions no longer served
    stable: dict[str, str] = field(default_factory=dict)
    prevented_traces: set[str] = field(default_factory=set)


def _settings(workdir: Path, runbooks_dir: Path | None, detect_config: Path | None) -> Settings:
    return Settings(database_url=f"sqlite:///{workdir}/replay.db", data_dir=workdir / "data", workers=False,
                    runbooks_dir=runbooks_dir, detect_config=detect_config, server_key="replay-" + workdir.name)


def _seed_registry(rt: Runtime, changes: list[dict[str, Any]], start: float) -> None:
    """Give every config the changes touch its `from` version as stable at the stream's start."""
    from codeblue.changes import service as changes_svc

    seen: set[str] = set()
    with rt.db.write() as s:
        for c in changes:
            if c.get("kind") not in CONFIG_KINDS or c.get("type") == "external":
                continue
            key = f"{c['kind']}/{c['name']}"
            if key in seen or not c.get("from"):
                continue
            seen.add(key)
            changes_svc.push_version(s, rt, kind=c["kind"], name=c["name"], version=str(c["from"]),
                                     content=f"{key} {c['from']}", author="replay", workflows=c.get("workflows"))
            changes_svc.activate(s, rt, kind=c["kind"], name=c["name"], version=str(c["from"]), actor="replay",
                                 workflows=c.get("workflows"), note="stable at the start of the replay")
    assert start > 0


def _apply_change(rt: Runtime, c: dict[str, Any]) -> None:
    from codeblue.changes import service as changes_svc
    from codeblue.changes.model import Config, ConfigVersion

    with rt.db.write() as s:
        if c.get("type") == "external" or c.get("kind") not in CONFIG_KINDS:
            body = {k: c[k] for k in ("kind", "name", "from", "to", "fraction", "environment", "workflows", "actor",
                                      "note") if c.get(k) is not None}
            changes_svc.record_external(s, rt, change={**body, "type": "external", "time": c["time"]})
            return
        if c.get("type") == "rollback":
            changes_svc.rollback(s, rt, kind=c["kind"], name=c["name"], actor=c.get("actor") or "replay")
            return
        cfg = s.scalar(select(Config).where(Config.kind == c["kind"], Config.name == c["name"]))
        exists = cfg is not None and s.scalar(select(ConfigVersion.id).where(
            ConfigVersion.config_id == cfg.id, ConfigVersion.version == str(c["to"]))) is not None
        if not exists:
            changes_svc.push_version(s, rt, kind=c["kind"], name=c["name"], version=str(c["to"]),
                                     content=f"{c['kind']}/{c['name']} {c['to']}", author=c.get("actor") or "replay",
                                     workflows=c.get("workflows"))
        changes_svc.activate(s, rt, kind=c["kind"], name=c["name"], version=str(c["to"]),
                             fraction=float(c.get("fraction", 1.0)), actor=c.get("actor") or "replay",
                             workflows=c.get("workflows"), note=c.get("note") or "")


def _refresh_world(rt: Runtime, world: World) -> None:
    from codeblue.controls import service as controls
    from codeblue.sdk.evaluator import compile_snapshot

    with rt.db.read() as s:
        rev = controls.current_revision(s)
        if rev == world.revision:
            return
        snap = controls.snapshot(s, content=False)
    world.index = compile_snapshot(snap, source="snapshot", now=rt.clock.now())
    world.revision = rev
    for key, cfg in (snap.get("configs") or {}).items():
        stable = cfg.get("stable")
        if stable:
            old = world.stable.get(key)
            world.stable[key] = stable
            if old and old != stable:
                world.rolled_back.setdefault(key, set()).discard(stable)
        cand = cfg.get("candidate")
        if cand:
            world.rolled_back.setdefault(key, set()).discard(cand)


def _note_rollbacks(rt: Runtime, world: World, since: float) -> None:
    from codeblue.changes import service as changes_svc

    with rt.db.read() as s:
        for ch in changes_svc.list_changes(s, since=since - 1):
            d = ch.as_dict()
            if d.get("type") == "rollback" and d.get("from"):
                world.rolled_back.setdefault(f"{d['kind']}/{d['name']}", set()).add(str(d["from"]))


def _decide(world: World, e: dict[str, Any]) -> Any:
    from codeblue.sdk.evaluator import Keyed, evaluate

    if world.index is None:
        return None
    kind = e.get("kind")
    # The model that answered is the dependency the application asks about before calling it (a breaker on a
    # model endpoint blocks its requests); Event v1 names no other dependency, and no tenant.
    model = e.get("model") if isinstance(e.get("model"), str) else None
    req = (e["workflow"], e.get("action") if kind == "action" else None, e.get("tool") if kind == "tool_call" else None,
           model, e.get("segment"), None)
    d = evaluate(world.index, req)
    if isinstance(d, Keyed):
        d = d.for_key(e.get("subject"))
    return None if d.allowed else d


class _Harm:
    """Which failure types' harm to judge each workflow's events by (from the incidents opened so far)."""

    def __init__(self) -> None:
        self.types: dict[str, set[str]] = {}

    def harmful(self, e: dict[str, Any]) -> bool:
        return any(is_harmful(e, ft) for ft in self.types.get(e["workflow"], ()))


def replay_with_runbooks(
    lines: Iterable[bytes],
    *,
    changes: list[dict[str, Any]],
    runbooks_dir: Path | None = None,
    detect_config: Path | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the stream through detection and runbooks; return the replay report with containment outcomes."""
    tmp = tempfile.TemporaryDirectory(prefix="codeblue-replay-") if workdir is None else None
    wd = Path(tmp.name) if tmp is not None else workdir
    assert wd is not None
    try:
        return _replay(lines, changes, wd, runbooks_dir, detect_config)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _replay(lines: Iterable[bytes], changes: list[dict[str, Any]], wd: Path, runbooks_dir: Path | None,
            detect_config: Path | None) -> dict[str, Any]:
    from codeblue.incidents.model import Incident

    events: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    n_lines = 0
    for n_lines, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            errors.append({"line": n_lines, "field": "", "reason": f"not JSON: {exc}"})
            continue
        if not isinstance(obj, dict) or isinstance(obj.get("time"), bool) or \
                not isinstance(obj.get("time"), (int, float)):
            errors.append({"line": n_lines, "field": "time", "reason": "expected an object with unix-seconds time"})
            continue
        events.append(obj)
    events.sort(key=lambda e: e["time"])
    summary = {"lines": n_lines, "rejected": len(errors), "errors": errors[:200], "changes": len(changes),
               "stream": {"start": events[0]["time"] if events else None,
                          "end": events[-1]["time"] if events else None}}
    if not events:
        return {"events": 0, "incidents": [], **summary}
    start = float(events[0]["time"])
    clock = ManualClock(start - 1)
    rt = build_runtime(_settings(wd, runbooks_dir, detect_config), clock)
    try:
        pending = sorted(changes, key=lambda c: c["time"])
        _seed_registry(rt, pending, start)
        detector = rt.extras["signals.detector"]
        world = World()
        harm = _Harm()
        outcomes: dict[int, IncidentOutcome] = {}
        buf: list[dict[str, Any]] = []
        next_step = start + STEP_S
        ci = 0
        fed = 0
        for e in events:
            t = float(e["time"])
            if t >= next_step:
                fed += _step(rt, detector, world, harm, outcomes, buf, next_step, pending, ci)
                while ci < len(pending) and pending[ci]["time"] <= next_step:
                    ci += 1
                buf = []
                next_step = (t // STEP_S + 1) * STEP_S
            out = _serve(world, harm, outcomes, e)
            if out is not None:
                buf.append(out)
        fed += _step(rt, detector, world, harm, outcomes, buf, next_step, pending, ci, final=True)
        for oc in outcomes.values():
            end = oc.contained_at if oc.contained_at is not None else float("inf")
            for wf in oc.workflows:
                for e in world.served.get(wf, ()):
                    if oc.onset <= e["time"] < end and is_harmful(e, oc.failure_type):
                        oc.harm_requests += 1
                        if e.get("subject"):
                            oc.harm_subjects.add(e["subject"])
        with rt.db.read() as s:
            incs = {i.id: i for i in s.scalars(select(Incident))}
        from codeblue.signals.replay import incident_dict

        report_incidents = []
        group_of: dict[int, int] = {}
        for gid, iid in sorted(detector.incident_of.items(), reverse=True):
            group_of[iid] = gid  # the first group that opened the incident
        groups = {g.id: g for g in detector.pipeline.incidents()}
        for iid, oc in sorted(outcomes.items()):
            g = groups.get(group_of.get(iid, -1))
            inc_row = incs[iid]
            base = incident_dict(g) if g is not None and g.triage is not None else {
                "id": iid, "opened_at": inc_row.opened_at, "workflow": oc.workflows[0],
                "indicator": str((inc_row.data or {}).get("indicator") or ""), "failure_type": oc.failure_type,
                "severity": inc_row.severity, "onset": oc.onset,
                "harm": {"requests": int((inc_row.harm or {}).get("requests", 0)),
                         "subjects": int((inc_row.harm or {}).get("subjects", 0))},
                "suspects": list(inc_row.suspects or []), "resolved_at": None, "alerts": []}
            report_incidents.append({**base, "incident_id": iid, **oc.as_dict()})
        return {"events": fed, "incidents": report_incidents, "change_errors": world.change_errors, **summary}
    finally:
        rt.db.dispose()


def _serve(world: World, harm: _Harm, outcomes: dict[int, IncidentOutcome], e: dict[str, Any]) -> dict[str, Any] | None:
    """What the request would have been with the containment in force now; None if it never happens."""
    trace = e.get("trace_id")
    if e.get("kind") == "complaint":
        return None if trace and trace in world.prevented_traces else e
    bad = harm.harmful(e)
    owner = _owner(outcomes, e["workflow"])
    rerouted = False
    versions = e.get("versions") or {}
    for key, v in versions.items():
        if v in world.rolled_back.get(key, ()):
            rerouted = True
    blocked = _decide(world, e)
    if blocked is None and not rerouted:
        world.served.setdefault(e["workflow"], []).append(e)
        return e
    if owner is not None:
        if bad:
            owner.prevented += 1
        elif blocked is not None:
            owner.collateral += 1
    if trace and bad:
        world.prevented_traces.add(trace)
    if blocked is not None and e.get("kind") in ("action", "tool_call"):
        return None  # the action or tool call does not happen
    served = dict(e)
    if rerouted:
        served["versions"] = {k: (world.stable.get(k, v) if v in world.rolled_back.get(k, ()) else v)
                              for k, v in versions.items()}
    if blocked is not None:
        served["fallback"] = blocked.fallback or "static_answer"
    for k, good in HARM_FIELDS.items():
        if k in served:
            served[k] = good
    if isinstance(served.get("status"), int) and served["status"] >= 500:
        served["status"] = 200
    return served


def _owner(outcomes: dict[int, IncidentOutcome], workflow: str) -> IncidentOutcome | None:
    for oc in reversed(list(outcomes.values())):
        if workflow in oc.workflows:
            return oc
    return None


def _step(rt: Runtime, detector: Any, world: World, harm: _Harm, outcomes: dict[int, IncidentOutcome],
          buf: list[dict[str, Any]], now: float, pending: list[dict[str, Any]], ci: int, *, final: bool = False) -> int:
    from codeblue.controls.model import Control
    from codeblue.incidents.model import Incident
    from codeblue.signals import intake, store

    assert isinstance(rt.clock, ManualClock)
    rt.clock.set(now)
    while ci < len(pending) and pending[ci]["time"] <= now:
        try:
            _apply_change(rt, pending[ci])
        except CodeblueError as exc:  # one change the registry refuses must not abort the replay
            world.change_errors.append({"change": pending[ci].get("id"), "reason": exc.detail})
        ci += 1
    # Every step feeds the detector; the store (evidence, verify, audit) is written in larger batches, and
    # always before the executor looks at it.
    n = 0
    if buf:
        good, _rejected = intake.validate_batch(rt, intake.Batch(items=buf, ndjson=False, lines=None, rejected=[]))
        intake.feed(rt, good)
        world.store.extend(good)
        n = len(good)
    updates = detector.run(rt)
    if not (outcomes or updates) and len(world.store) < 20_000 and not final:
        return n
    if world.store:
        with rt.db.write() as s:
            store.store_events(s, rt, world.store, received_at=now)
        store.commit_version_cache(s, rt)
        world.store = []
    for _ in range(6):
        if executor.tick(rt).executed == 0:
            break
    with rt.db.read() as s:
        for inc in s.scalars(select(Incident).where(Incident.id.not_in(list(outcomes) or [-1]))):
            onset = float((inc.harm or {}).get("started_at") or inc.opened_at)
            outcomes[inc.id] = IncidentOutcome(inc.id, list(inc.workflows or []), inc.failure_type, onset)
            for wf in inc.workflows or []:
                harm.types.setdefault(wf, set()).add(inc.failure_type)
        for iid, oc in outcomes.items():
            ctls = list(s.scalars(select(Control).where(Control.incident_id == iid).order_by(Control.id)))
            known = {a.get("control_id") for a in oc.actions}
            for c in ctls:
                if c.id not in known:
                    target = " ".join(f"{k}={v}" for k, v in (c.scope or {}).items() if v != "*")
                    oc.actions.append({"at": c.created_at, "type": c.type, "target": target, "control_id": c.id})
    _note_rollbacks(rt, world, now - STEP_S * 2)
    with rt.db.read() as s:
        from codeblue.changes.model import Change

        for iid, oc in outcomes.items():
            seen = {a.get("change_id") for a in oc.actions}
            for ch in s.scalars(select(Change).where(Change.incident_id == iid, Change.type == "rollback")):
                if ch.id not in seen:
                    d = ch.as_dict()
                    oc.actions.append({"at": d["time"], "type": "rollback",
                                           "target": f"{d['kind']}/{d['name']} {d.get('from')}→{d.get('to')}",
                                           "change_id": ch.id})
            # A rollout freeze stops new changes; it contains nothing already served.
            holding = [a["at"] for a in oc.actions if a["type"] != "rollout_freeze"]
            if holding and oc.contained_at is None:
                oc.contained_at = min(holding)
    _refresh_world(rt, world)
    return n
