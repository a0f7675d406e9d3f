"""Runbook routes: the published schema, lint, runs and steps per incident, approvals, recovery."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from codeblue.errors import Forbidden
from codeblue.http import RT, Responder, Viewer
from codeblue.runbooks import executor, recovery, service
from codeblue.runbooks.schema import INDICATORS, json_schema

router = APIRouter(prefix="/v1", tags=["runbooks"])


@router.get("/runbooks/schema")
def schema() -> dict[str, Any]:
    """The JSON Schema of runbook files (public)."""
    return json_schema()


@router.get("/runbooks")
def list_runbooks(rt: RT, _who: Viewer) -> dict[str, Any]:
    return service.list_runbooks(rt)


class LintIn(BaseModel):
    text: str = Field(max_length=1_000_000)
    file: str = Field(default="<runbook>", max_length=500)


@router.post("/runbooks/lint")
def lint(body: LintIn, rt: RT, _who: Viewer) -> dict[str, Any]:
    """Lint a runbook against this server's registry (configs and kinds that exist). Changes nothing."""
    with rt.db.read() as s:
        return service.lint(s, text=body.text, file=body.file)


@router.get("/incidents/{incident_id}/runbook")
def runs(incident_id: int, rt: RT, _who: Viewer) -> dict[str, Any]:
    with rt.db.read() as s:
        from codeblue.incidents import service as incidents

        incidents.get_incident(s, incident_id)
        return {"incident_id": incident_id, "runs": executor.runs_for(s, incident_id=incident_id),
                "recovery": [p.as_dict() for p in recovery.plans_for(s, incident_id=incident_id)]}


class RunIn(BaseModel):
    runbook: str | None = Field(default=None, description="a loaded runbook's name; none = stabilisation default")
    dry_run: bool = False


@router.post("/incidents/{incident_id}/runbook/run")
def run(incident_id: int, body: RunIn, rt: RT, who: Responder) -> dict[str, Any]:
    if body.dry_run:
        with rt.db.read() as s:
            return service.run(s, rt, incident_id=incident_id, runbook=body.runbook, actor=who.handle, dry_run=True)
    with rt.db.write() as s:
        return service.run(s, rt, incident_id=incident_id, runbook=body.runbook, actor=who.handle)


@router.post("/incidents/{incident_id}/runbook/accept")
def accept(incident_id: int, rt: RT, who: Responder) -> dict[str, Any]:
    """Accept every proposed step (the stabilisation default) in one call."""
    with rt.db.write() as s:
        steps = executor.accept_proposal(s, rt, incident_id=incident_id, actor=who.handle)
        return {"accepted": [st.as_dict() for st in steps]}


@router.post("/incidents/{incident_id}/runbook/steps/{step_id}/request")
def request_step(incident_id: int, step_id: int, rt: RT, who: Responder) -> dict[str, Any]:
    with rt.db.write() as s:
        return executor.request_step(s, rt, incident_id=incident_id, step_id=step_id, actor=who.handle).as_dict()


@router.post("/incidents/{incident_id}/runbook/steps/{step_id}/approve")
def approve_step(incident_id: int, step_id: int, rt: RT, who: Viewer) -> dict[str, Any]:
    """Approve a step awaiting approval (risk owners, or leads for `approval: lead` steps). A refusal — wrong
    role, or the requester approving their own step — is written on the timeline before it is returned."""
    why: str | None = None
    with rt.db.write() as s:
        step = executor.find_step(s, incident_id=incident_id, step_id=step_id)
        if step is not None:
            why = executor.approval_refusal(step, handle=who.handle, roles=who.roles)
            if why is not None and step.state == "awaiting_approval":
                executor.record_refusal(s, rt, incident_id=incident_id, step=step, actor=who.handle, why=why)
    if not (who.has("risk_owner") or who.has("lead")):
        raise Forbidden(why or f"approving a step needs the role risk_owner (or lead); {who.handle} has neither")
    if why is not None and step is not None and step.state == "awaiting_approval":
        raise Forbidden(why)
    with rt.db.write() as s:
        return executor.approve_step(s, rt, incident_id=incident_id, step_id=step_id, actor=who.handle,
                                     roles=who.roles).as_dict()


class DenyIn(BaseModel):
    reason: str = Field(default="", max_length=2000)


@router.post("/incidents/{incident_id}/runbook/steps/{step_id}/deny")
def deny_step(incident_id: int, step_id: int, body: DenyIn, rt: RT, who: Responder) -> dict[str, Any]:
    with rt.db.write() as s:
        return executor.deny_step(s, rt, incident_id=incident_id, step_id=step_id, actor=who.handle,
                                  reason=body.reason).as_dict()


class ConditionIn(BaseModel):
    indicator: str = Field(json_schema_extra={"enum": list(INDICATORS)})
    below: float | None = Field(default=None, ge=0)
    baseline_factor: float | None = Field(default=None, gt=0)


class RecoverIn(BaseModel):
    ramp: list[float] = Field(default_factory=lambda: [1.0, 10.0, 50.0, 100.0], min_length=1, max_length=20)
    hold_s: float = Field(default=300.0, ge=0, le=86400)
    min_events: int = Field(default=100, ge=1, le=10_000_000)
    conditions: list[ConditionIn] | None = None


@router.post("/incidents/{incident_id}/recover", status_code=201)
def recover(incident_id: int, body: RecoverIn, rt: RT, who: Responder) -> dict[str, Any]:
    conds = None
    if body.conditions:
        conds = []
        for i, c in enumerate(body.conditions):
            if c.indicator not in INDICATORS:
                from codeblue.errors import Invalid

                raise Invalid(f"unknown indicator {c.indicator!r}; allowed: {', '.join(INDICATORS)}",
                              field=f"conditions[{i}].indicator")
            if (c.below is None) == (c.baseline_factor is None):
                from codeblue.errors import Invalid

                raise Invalid("give exactly one of below or baseline_factor", field=f"conditions[{i}]")
            conds.append(c.model_dump(exclude_none=True))
    with rt.db.write() as s:
        plan = recovery.start_recovery(s, rt, incident_id=incident_id, ramp=body.ramp, hold_s=body.hold_s,
                                       min_events=body.min_events, actor=who.handle, conditions=conds)
        return plan.as_dict()


@router.post("/incidents/{incident_id}/recover/approve")
def approve_recovery(incident_id: int, rt: RT, who: Viewer) -> dict[str, Any]:
    """A risk owner other than the requester approves re-enabling side effects; refusals go on the timeline."""
    from codeblue.incidents import service as incidents

    refusal = None
    with rt.db.write() as s:
        plan = recovery.active_plan(s, incident_id=incident_id)
        if "risk_owner" not in who.roles:
            refusal = f"re-enabling an action path with side effects needs a risk owner; {who.handle} is not one"
        elif plan is not None and plan.requested_by == who.handle:
            refusal = f"{who.handle} asked for this recovery and cannot also approve it (two-person rule)"
        if refusal and plan is not None and plan.state == "awaiting_approval":
            incidents.append_entry(s, rt, incident_id=incident_id, kind="recovery.approval.refused",
                                   actor=who.handle, text=f"recovery approval by {who.handle} refused: {refusal}")
    if refusal:
        raise Forbidden(refusal)
    with rt.db.write() as s:
        return recovery.approve_recovery(s, rt, incident_id=incident_id, actor=who.handle, roles=who.roles).as_dict()
