"""Verified recovery — "reopen carefully after verification".

`start_recovery` replaces an incident's containment (kill switches, fallbacks, tool disables, traffic
limits) with `traffic` controls that admit 1 % → 10 % → 50 % → 100 % of requests. At each stage the
verify conditions must hold on the admitted traffic for the hold time over a minimum number of events
(with too little traffic the stage waits rather than passes); a regression puts the original containment
back by itself and the timeline says why. Re-enabling an action path with side effects needs a risk
owner's approval, from someone other than the person who asked.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeblue.errors import Conflict, Forbidden, Invalid, NotFound
from codeblue.incidents import service as incidents
from codeblue.runbooks import measure
from codeblue.runbooks.executor import ACTOR, check_conditions
from codeblue.runbooks.model import RecoveryPlan
from codeblue.runtime import Runtime

RAMPABLE = ("kill_switch", "fallback", "tool_disable", "traffic")


def _containment(s: Session, *, incident_id: int) -> list[Any]:
    from codeblue.controls.model import Control

    return list(s.scalars(select(Control).where(Control.incident_id == incident_id, Control.active.is_(True),
                                                Control.type.in_(RAMPABLE)).order_by(Control.id)))


def _check_ramp(ramp: list[float]) -> list[float]:
    if not ramp:
        raise Invalid("the ramp needs at least one step, e.g. 1,10,50,100", field="ramp")
    prev = 0.0
    for i, p in enumerate(ramp):
        if not 0 < p <= 100:
            raise Invalid(f"ramp step {p} is not a percentage in (0, 100]", field=f"ramp[{i}]")
        if p <= prev:
            raise Invalid("ramp steps must increase", field=f"ramp[{i}]")
        prev = p
    if ramp[-1] != 100:
        ramp = [*ramp, 100.0]
    return [float(p) for p in ramp]


def active_plan(s: Session, *, incident_id: int) -> RecoveryPlan | None:
    return s.scalar(select(RecoveryPlan).where(RecoveryPlan.incident_id == incident_id,
                                               RecoveryPlan.state.in_(("awaiting_approval", "ramping"))))


def plans_for(s: Session, *, incident_id: int) -> list[RecoveryPlan]:
    return list(s.scalars(select(RecoveryPlan).where(RecoveryPlan.incident_id == incident_id).order_by(RecoveryPlan.id)))


def start_recovery(
    s: Session, rt: Runtime, *, incident_id: int, ramp: list[float], hold_s: float, min_events: int, actor: str,
    conditions: list[dict[str, Any]] | None = None,
) -> RecoveryPlan:
    inc = incidents.get_incident(s, incident_id, for_update=True)
    if active_plan(s, incident_id=incident_id) is not None:
        raise Conflict(f"incident {incident_id} already has a recovery in progress", field="incident")
    ramp = _check_ramp(ramp)
    if hold_s < 0:
        raise Invalid("hold must not be negative", field="hold")
    if min_events < 1:
        raise Invalid("min_events must be at least 1", field="min_events")
    originals = _containment(s, incident_id=incident_id)
    if not originals:
        raise Conflict(f"incident {incident_id} has no containment in force to lift", field="incident")
    conds = conditions or [{"indicator": measure.indicator_for(inc.failure_type, inc.data), "baseline_factor": 1.5}]
    side_effects = any(c.type == "kill_switch" for c in originals)
    plan = RecoveryPlan(
        incident_id=incident_id, state="awaiting_approval" if side_effects else "ramping", ramp=ramp, hold_s=hold_s,
        min_events=min_events, stage=0, conditions=conds, original=[_snap(c) for c in originals], traffic_ids=[],
        side_effects=side_effects, requested_by=actor, created_at=rt.clock.now(), reason="",
    )
    s.add(plan)
    s.flush()
    incidents.append_entry(
        s, rt, incident_id=incident_id, kind="recovery.requested", actor=actor,
        text=f"{actor} asked to recover: ramp {', '.join(f'{p:g}%' for p in ramp)}, hold {hold_s:.0f}s, "
             f"≥{min_events} events per stage"
             + ("; re-enabling an action path with side effects needs a risk owner's approval" if side_effects else ""),
        data=plan.as_dict(),
    )
    if not side_effects:
        _begin_stage(s, rt, plan, 0)
    return plan


def _snap(c: Any) -> dict[str, Any]:
    return {"id": c.id, "type": c.type, "scope": dict(c.scope), "params": dict(c.params), "reason": c.reason,
            "expires_at": c.expires_at, "environment": c.environment}


def approve_recovery(s: Session, rt: Runtime, *, incident_id: int, actor: str, roles: frozenset[str]) -> RecoveryPlan:
    plan = active_plan(s, incident_id=incident_id)
    if plan is None or plan.state != "awaiting_approval":
        raise Conflict(f"incident {incident_id} has no recovery awaiting approval")
    why = None
    if "risk_owner" not in roles:
        why = f"re-enabling an action path with side effects needs a risk owner; {actor} is not one"
    elif plan.requested_by == actor:
        why = f"{actor} asked for this recovery and cannot also approve it (two-person rule)"
    if why:
        raise Forbidden(why)
    plan.approved_by = actor
    plan.state = "ramping"
    incidents.append_entry(s, rt, incident_id=incident_id, kind="recovery.approved", actor=actor,
                           text=f"{actor} approved the recovery asked for by {plan.requested_by}",
                           data={"plan": plan.id})
    _begin_stage(s, rt, plan, 0)
    return plan


def _traffic_params(orig: dict[str, Any]) -> dict[str, Any]:
    p = orig.get("params") or {}
    fb = p.get("fallback") or ("human_queue" if orig["type"] in ("kill_switch", "tool_disable") else None)
    out: dict[str, Any] = {}
    if fb:
        out["fallback"] = fb
    if p.get("target"):
        out["target"] = p["target"]
    return out


def _begin_stage(s: Session, rt: Runtime, plan: RecoveryPlan, stage: int) -> None:
    from codeblue.controls import service as controls

    now = rt.clock.now()
    pct = plan.ramp[stage]
    for cid in list(plan.traffic_ids):
        _lift_quiet(s, rt, cid, reason=f"recovery moves to {pct:g}%")
    new_ids: list[int] = []
    if pct < 100:
        for orig in plan.original:
            ctl = controls.set_control(
                s, rt, type="traffic", scope=orig["scope"], params={"admit": pct / 100.0, **_traffic_params(orig)},
                reason=f"recovery stage {stage + 1}/{len(plan.ramp)}: admit {pct:g}% (was {orig['type']})",
                actor=ACTOR, incident_id=plan.incident_id, expires_at=now + max(plan.hold_s * 4, 3600.0),
                environment=orig.get("environment", "production"),
            )
            new_ids.append(ctl.id)
    if stage == 0:
        for orig in plan.original:
            _lift_quiet(s, rt, orig["id"], reason="replaced by the recovery ramp")
    plan.traffic_ids = new_ids
    plan.stage = stage
    plan.stage_started_at = now
    plan.held_since = None
    incidents.append_entry(s, rt, incident_id=plan.incident_id, kind="recovery.stage", actor=ACTOR,
                           text=f"recovery stage {stage + 1}/{len(plan.ramp)}: {pct:g}% of traffic admitted; "
                                f"verifying for {plan.hold_s:.0f}s over ≥{plan.min_events} events",
                           data=plan.as_dict())


def _lift_quiet(s: Session, rt: Runtime, control_id: int, *, reason: str) -> None:
    from codeblue.controls import service as controls
    from codeblue.controls.model import Control

    ctl = s.get(Control, control_id)
    if ctl is not None and ctl.active:
        controls.lift_control(s, rt, control_id=control_id, actor=ACTOR, reason=reason)


def _revert(s: Session, rt: Runtime, plan: RecoveryPlan, why: str) -> None:
    from codeblue.controls import service as controls

    now = rt.clock.now()
    for cid in list(plan.traffic_ids):
        _lift_quiet(s, rt, cid, reason="recovery reverted")
    for orig in plan.original:
        controls.set_control(
            s, rt, type=orig["type"], scope=orig["scope"], params=orig["params"], actor=ACTOR,
            incident_id=plan.incident_id, reason=f"containment returned by the recovery ramp: {why}",
            expires_at=max(float(orig.get("expires_at") or 0), now + 7200.0),
            environment=orig.get("environment", "production"),
        )
    plan.traffic_ids = []
    plan.state = "reverted"
    plan.reason = why
    inc = incidents.get_incident(s, plan.incident_id)
    if inc.status == "monitoring":
        incidents.set_status(s, rt, incident_id=inc.id, to="investigating", actor=ACTOR, note=why)
    if inc.status in ("triggered", "investigating"):
        incidents.set_status(s, rt, incident_id=inc.id, to="contained", actor=ACTOR, note="containment returned")
    incidents.append_entry(s, rt, incident_id=plan.incident_id, kind="recovery.reverted", actor=ACTOR,
                           text=f"recovery at {plan.ramp[plan.stage]:g}% failed verification; containment is back "
                                f"in force: {why}", data=plan.as_dict())


def advance(s: Session, rt: Runtime, plan: RecoveryPlan) -> str:
    """One verification round for a ramping plan: 'wait', 'next', 'done' or 'reverted'."""
    if plan.state != "ramping" or plan.stage_started_at is None:
        return plan.state
    inc = incidents.get_incident(s, plan.incident_id, for_update=True)
    now = rt.clock.now()
    verdict, details = check_conditions(s, inc, plan.conditions, plan.stage_started_at, now + 1, plan.min_events)
    if verdict == "fail":
        bad = "; ".join(f"{d['workflow']} {d['indicator']} = {d['value']:.4g} over {d['denominator']} events, "
                        f"limit {d['limit']:.4g} (p={d['p_value']:.2g})" for d in details
                        if d.get("verdict") == "fail" and d["value"] is not None)
        _revert(s, rt, plan, bad or "verification failed")
        return "reverted"
    if verdict == "wait" or now < plan.stage_started_at + plan.hold_s:
        if verdict == "pass" and plan.held_since is None:
            plan.held_since = now
        return "wait"
    if plan.stage + 1 < len(plan.ramp):
        _begin_stage(s, rt, plan, plan.stage + 1)
        return "next"
    for cid in list(plan.traffic_ids):
        _lift_quiet(s, rt, cid, reason="recovery complete")
    plan.traffic_ids = []
    plan.state = "done"
    incidents.append_entry(s, rt, incident_id=plan.incident_id, kind="recovery.done", actor=ACTOR,
                           text="recovery complete: 100% of traffic verified healthy; containment lifted",
                           data={"plan": plan.id, "checks": details})
    incidents.set_milestone(s, rt, incident_id=plan.incident_id, name="mitigated", actor=ACTOR)
    if inc.status in ("triggered", "investigating", "contained"):
        incidents.set_status(s, rt, incident_id=plan.incident_id, to="monitoring", actor=ACTOR,
                             note="recovery verified at 100%")
    return "done"


def tick(rt: Runtime) -> int:
    with rt.db.read() as s:
        ids = list(s.scalars(select(RecoveryPlan.id).where(RecoveryPlan.state == "ramping")))
    moved = 0
    for pid in ids:
        with rt.db.write() as s:
            plan = s.get(RecoveryPlan, pid)
            if plan is None:
                raise NotFound(f"recovery plan {pid} vanished")
            if advance(s, rt, plan) in ("next", "done", "reverted"):
                moved += 1
    return moved
