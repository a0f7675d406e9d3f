"""The runbook executor: matches runbooks when an incident opens and runs their steps.

Each step runs in its own transaction together with the write that marks it done, so a retry never
applies a step twice and an executor that crashes between two steps resumes on restart without repeating
either. A failing step is retried with backoff, then surfaced on the incident; steps that don't depend on
it go on. `wait` and `verify` steps are sequence points: the steps after them wait for them.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session

from codeblue.errors import CodeblueError, Conflict, Forbidden, Invalid, NotFound
from codeblue.incidents import service as incidents
from codeblue.incidents.model import Incident
from codeblue.runbooks import evidence as ev_mod
from codeblue.runbooks import measure
from codeblue.runbooks.library import Library, Loaded
from codeblue.runbooks.lint import Registry
from codeblue.runbooks.model import FINAL_STATES, RunbookRun, RunbookStep
from codeblue.runbooks.schema import CONTAIN_TYPES, Runbook
from codeblue.runtime import Runtime

log = logging.getLogger(__name__)

ACTOR = "system:runbook"
SEQUENCE_POINTS = ("wait", "verify")
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 120.0
#: How long a `rollback: suspect` step waits for the top suspect to clear its score before it gives up.
SUSPECT_PATIENCE_S = 900.0


class Skip(Exception):
    """The step does not apply (e.g. no suspect clears the threshold); recorded, not retried."""


class NotYet(Exception):
    """A wait or verify step that has not finished; it keeps its progress in the result and is looked at
    again after `recheck` seconds."""

    def __init__(self, progress: dict[str, Any], recheck: float = 15.0) -> None:
        super().__init__("not yet")
        self.progress = progress
        self.recheck = recheck


def library(rt: Runtime) -> Library:
    lib = rt.extras.get("runbooks.library")
    if not isinstance(lib, Library):
        lib = Library(rt.settings.runbooks_dir)
        rt.extras["runbooks.library"] = lib
    return lib


def registry(s: Session) -> Registry:
    from codeblue.changes import service as changes

    configs = {f"{c['kind']}/{c['name']}" for c in changes.list_configs(s)}
    kinds = {k["kind"] for k in changes.list_kinds(s)}
    return Registry(configs=configs, kinds=kinds | Registry().kinds)


def wake_after_commit(s: Session, rt: Runtime) -> None:
    """Run the executor as soon as the current transaction commits."""
    waker = rt.extras.get("runbooks.wake")
    if waker is None:
        return

    def _set(_session: Session) -> None:
        waker.set()

    if not event.contains(s, "after_commit", _set):
        event.listen(s, "after_commit", _set, once=True)


# ----- starting runs ------------------------------------------------------------------------------------------


def _window(inc: Incident, now: float) -> tuple[float, float]:
    harm = inc.harm or {}
    since = harm.get("started_at") if isinstance(harm.get("started_at"), (int, float)) else None
    return (float(since) if since else inc.opened_at - 900.0), now + 1.0


def gather_evidence(s: Session, rt: Runtime, inc: Incident) -> dict[str, Any]:
    since, until = _window(inc, rt.clock.now())
    out: dict[str, Any] = {"since": since, "until": until, "workflows": {}}
    for wf in inc.workflows or []:
        out["workflows"][wf] = ev_mod.gather(s, workflow=wf, failure_type=inc.failure_type, since=since,
                                             until=until).as_dict()
    return out


def resolve_scope(spec: dict[str, Any], workflow: str, evid: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Fill $workflow/$segment/$action/$tool from the evidence and narrow where it allows. Returns the
    scope and why it is what it is."""
    scope = dict(spec.get("scope") or {})
    scope.setdefault("workflow", "$workflow")
    why: list[str] = []
    wev = (evid.get("workflows") or {}).get(workflow) or {}
    for field_name, var in (("segment", "$segment"), ("action", "$action"), ("tool", "$tool")):
        val = scope.get(field_name, "*")
        found = wev.get(field_name)
        only = wev.get(f"{field_name}_any") if field_name in ("action", "tool") else None
        if val == var:
            if found:
                scope[field_name] = found
                why.append(f"{field_name} {found!r} from the evidence")
            elif only:
                scope[field_name] = only
                why.append(f"{field_name} {only!r}: too little harm yet to tell, and it is the {field_name} "
                           f"this workflow uses")
            else:
                scope[field_name] = "*"
                why.append(f"no single {field_name} explains the harm, so all of them")
        elif val == "*" and spec.get("narrow", True) and field_name == "segment" and found:
            scope[field_name] = found
            why.append(f"narrowed to segment {found!r}: the harm concentrates there")
    if scope.get("workflow") == "$workflow":
        scope["workflow"] = workflow
    for k in ("action", "tool", "dependency", "segment", "tenant"):
        scope.setdefault(k, "*")
    if all(scope[k] == "*" for k in ("action", "tool", "dependency", "segment", "tenant")):
        why.append("whole workflow: nothing narrower explains the harm")
    return scope, why


def plan(s: Session, rt: Runtime, inc: Incident, rb: Runbook, evid: dict[str, Any]) -> list[dict[str, Any]]:
    """What each step would do, resolved against this incident (dry run, and the record of a real run)."""
    out = []
    for i, step in enumerate(rb.steps):
        spec = step.model_dump(mode="json")
        item: dict[str, Any] = {"position": i, "step_id": step.id, "type": step.type, "approval": step.approval,
                                "auto": step.auto}
        if step.type in CONTAIN_TYPES:
            item["controls"] = []
            for wf in inc.workflows or []:
                scope, why = resolve_scope(spec, wf, evid)
                item["controls"].append({"type": step.type, "scope": scope, "why": why,
                                         "params": _params(step.type, spec)})
        elif step.type == "rollback":
            item["rollback"] = _rollback_target(inc, spec)
        out.append(item)
    return out


def start_run(
    s: Session, rt: Runtime, *, incident_id: int, loaded: Loaded | None, actor: str, proposed: bool = False,
) -> RunbookRun:
    """Start a runbook on an incident (or, with `loaded=None`, propose the stabilisation default)."""
    inc = incidents.get_incident(s, incident_id)
    if loaded is None:
        rb, file, digest, kind = default_runbook(inc), "(built-in stabilisation default)", "", "default"
        proposed = True
    else:
        rb, file, digest, kind = loaded.runbook, loaded.file, loaded.content_hash, "runbook"
    existing = s.scalar(select(RunbookRun).where(RunbookRun.incident_id == incident_id, RunbookRun.runbook == rb.name))
    if existing is not None:
        raise Conflict(f"runbook {rb.name!r} already runs on incident {incident_id} (run {existing.id})",
                       field="runbook")
    evid = gather_evidence(s, rt, inc)
    now = rt.clock.now()
    run = RunbookRun(incident_id=incident_id, runbook=rb.name, file=file, content_hash=digest, kind=kind,
                     state="proposed" if proposed else "running", created_at=now, created_by=actor,
                     context={"evidence": evid, "plan": plan(s, rt, inc, rb, evid)},
                     spec=rb.model_dump(mode="json", exclude={"steps"}))
    s.add(run)
    s.flush()
    for i, step in enumerate(rb.steps):
        spec = step.model_dump(mode="json")
        if proposed or not step.auto:
            state, requested = "proposed", None
        elif step.approval:
            state, requested = "awaiting_approval", actor
        else:
            state, requested = "pending", actor
        s.add(RunbookStep(run_id=run.id, incident_id=incident_id, step_id=step.id, position=i, type=step.type,
                          spec=spec, state=state, attempts=0, requested_by=requested, result={}, error=""))
    s.flush()
    what = "proposes (accept with `codeblue runbook accept`)" if proposed else "runs"
    incidents.append_entry(
        s, rt, incident_id=incident_id, kind="runbook.started", actor=actor,
        text=f"runbook {rb.name} ({file}, sha256 {digest[:12] or 'built-in'}) {what} {len(rb.steps)} steps",
        data={"run_id": run.id, "runbook": rb.name, "file": file, "content_hash": digest, "kind": kind,
              "evidence": evid, "rollback_option": run.spec.get("rollback_option"),
              "communication": run.spec.get("communication"), "postmortem_owner": run.spec.get("postmortem_owner")},
    )
    wake_after_commit(s, rt)
    return run


def on_incident_opened(s: Session, rt: Runtime, incident: Incident) -> None:
    """Hook: start every matching runbook, or propose the stabilisation default when none matches."""
    info = incident.as_dict()
    matched = library(rt).match(info)
    if not matched:
        start_run(s, rt, incident_id=incident.id, loaded=None, actor=ACTOR)
        return
    for loaded in matched:
        start_run(s, rt, incident_id=incident.id, loaded=loaded, actor=ACTOR)


# ----- the stabilisation default ------------------------------------------------------------------------------


def default_runbook(inc: Incident) -> Runbook:
    """The safest containment for a failure type, plus the top suspect's rollback — proposed, not run."""
    ft = inc.failure_type
    steps: list[dict[str, Any]] = []
    if ft == "account_action":
        steps.append({"id": "kill-action", "type": "kill_switch", "why": "stop side effects on accounts first",
                      "scope": {"action": "$action"}, "fallback": "human_queue", "expires": "4h"})
    elif ft == "tool":
        steps.append({"id": "disable-tool", "type": "tool_disable", "why": "stop malformed tool calls",
                      "scope": {"tool": "$tool"}, "expires": "4h"})
    elif ft in ("policy_refusal", "availability"):
        steps.append({"id": "backup-model", "type": "fallback", "fallback": "backup_model",
                      "why": "serve from the backup model while the primary path is degraded", "expires": "2h"})
    else:
        steps.append({"id": "human-queue", "type": "fallback", "fallback": "human_queue",
                      "why": "send affected requests to people while answers are wrong", "expires": "2h"})
    steps.append({"id": "rollback-suspect", "type": "rollback", "config": "suspect", "min_score": 0.5,
                  "why": "what changed recently and can we reverse it now?"})
    steps.append({"id": "capture-traces", "type": "audit", "window": "incident"})
    return Runbook.model_validate({
        "name": f"stabilise-{ft.replace('_', '-')}",
        "description": "built-in stabilisation default: the safest containment for this failure type",
        "trigger": {"workflows": ["*"], "failure_types": [ft]},
        "rollback_option": {"config": "suspect"},
        "communication": {"template": "user_update", "audience": "status_page"},
        "postmortem_owner": "incident_lead",
        "steps": steps,
    })


# ----- running steps ------------------------------------------------------------------------------------------


@dataclass
class TickResult:
    executed: int = 0
    failed: int = 0
    waiting: int = 0


def tick(rt: Runtime) -> TickResult:
    """Advance every run with work to do: at most one step per transaction."""
    res = TickResult()
    now = rt.clock.now()
    with rt.db.read() as s:
        step_ids = list(s.scalars(
            select(RunbookStep.id).where(
                RunbookStep.state.in_(("pending", "waiting")),
                or_(RunbookStep.next_attempt_at.is_(None), RunbookStep.next_attempt_at <= now),
            ).order_by(
                RunbookStep.incident_id, RunbookStep.run_id, RunbookStep.position)))
    for sid in step_ids:
        try:
            with rt.db.write() as s:
                outcome = _advance_step(s, rt, sid)
        except Exception:
            log.exception("runbook step %s could not be advanced", sid)
            continue
        if outcome == "done":
            res.executed += 1
        elif outcome == "failed":
            res.failed += 1
        elif outcome in ("waiting", "blocked", "backoff"):
            res.waiting += 1
    return res


def _blocked(s: Session, step: RunbookStep) -> tuple[bool, str | None]:
    """Whether a step must wait for earlier ones; and a reason to skip it when a dependency will never finish."""
    siblings = list(s.scalars(select(RunbookStep).where(RunbookStep.run_id == step.run_id,
                                                        RunbookStep.position < step.position)))
    after = set(step.spec.get("after") or [])
    for sib in siblings:
        must = sib.step_id in after or sib.type in SEQUENCE_POINTS
        if not must:
            continue
        if sib.state in ("failed", "denied", "skipped"):
            if sib.step_id in after:
                return True, f"depends on {sib.step_id}, which {sib.state}"
            continue  # a failed wait/verify does not hold independent steps back
        if sib.state != "done":
            return True, None
    return False, None


def _advance_step(s: Session, rt: Runtime, step_id: int) -> str:
    step = s.get(RunbookStep, step_id)
    if step is None or step.state not in ("pending", "waiting"):
        return "gone"
    # serialise per incident (PostgreSQL row lock; SQLite write transactions are already exclusive)
    inc = incidents.get_incident(s, step.incident_id, for_update=True)
    s.refresh(step)
    if step.state not in ("pending", "waiting"):
        return "gone"
    now = rt.clock.now()
    if step.next_attempt_at is not None and now < step.next_attempt_at:
        return "backoff"
    blocked, skip_reason = _blocked(s, step)
    if skip_reason:
        _finish(s, rt, step, "skipped", now, {"reason": skip_reason}, text=f"step {step.step_id} skipped: {skip_reason}")
        return "skipped"
    if blocked:
        return "blocked"
    run = s.get(RunbookRun, step.run_id)
    assert run is not None
    if step.started_at is None:
        step.started_at = now
    sp = s.begin_nested()
    try:
        result = _execute(s, rt, run, step, inc, now)
    except NotYet as wait:
        sp.rollback()
        step.state = "waiting"
        step.result = {**(step.result or {}), **wait.progress}
        step.next_attempt_at = now + max(wait.recheck, 0.0)
        return "waiting"
    except Skip as skip:
        sp.rollback()
        _finish(s, rt, step, "skipped", now, {"reason": str(skip)}, text=f"step {step.step_id} skipped: {skip}")
        return "skipped"
    except Exception as exc:
        sp.rollback()
        return _failed_attempt(s, rt, step, now, exc)
    sp.commit()
    summary = result.pop("_text", None) or f"step {step.step_id} ({step.type}) done"
    _finish(s, rt, step, "done", now, result, text=summary)
    return "done"


def _failed_attempt(s: Session, rt: Runtime, step: RunbookStep, now: float, exc: Exception) -> str:
    step.attempts += 1
    msg = exc.detail if isinstance(exc, CodeblueError) else f"{type(exc).__name__}: {exc}"
    step.error = msg
    retries = int(step.spec.get("retries", 3))
    if step.attempts > retries:
        _finish(s, rt, step, "failed", now, {"error": msg, "attempts": step.attempts},
                text=f"step {step.step_id} ({step.type}) FAILED after {step.attempts} attempts: {msg}")
        return "failed"
    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (step.attempts - 1)) * random.uniform(0.5, 1.0)
    step.next_attempt_at = now + delay
    step.state = "pending"
    incidents.append_entry(s, rt, incident_id=step.incident_id, kind="runbook.step.retry", actor=ACTOR,
                           text=f"step {step.step_id} ({step.type}) attempt {step.attempts} failed: {msg}; "
                                f"retrying in {delay:.0f}s",
                           data={"step": step.id, "attempts": step.attempts, "error": msg})
    return "failed-attempt"


def _finish(s: Session, rt: Runtime, step: RunbookStep, state: str, now: float, result: dict[str, Any],
            *, text: str) -> None:
    step.state = state
    step.finished_at = now
    step.result = {**(step.result or {}), **result}
    step.next_attempt_at = None
    who = step.approved_by or step.requested_by or ACTOR
    incidents.append_entry(
        s, rt, incident_id=step.incident_id, kind=f"runbook.step.{state}", actor=ACTOR, text=text,
        data={"step": step.id, "step_id": step.step_id, "type": step.type, "state": state, "requested_by":
              step.requested_by, "approved_by": step.approved_by, "on_behalf_of": who, "result": step.result,
              "why": step.spec.get("why", "")},
    )
    run = s.get(RunbookRun, step.run_id)
    if run is not None:
        left = s.scalar(select(RunbookStep.id).where(RunbookStep.run_id == run.id,
                                                     RunbookStep.state.not_in(FINAL_STATES)).limit(1))
        if left is None and run.state != "done":
            run.state = "done"


# ----- step types ---------------------------------------------------------------------------------------------


def _params(type_: str, spec: dict[str, Any]) -> dict[str, Any]:
    if type_ == "kill_switch":
        return {k: spec[k] for k in ("fallback", "target") if spec.get(k)}
    if type_ == "breaker":
        return {"state": spec.get("state", "open")}
    if type_ == "fallback":
        return {"fallback": spec["fallback"], **({"target": spec["target"]} if spec.get("target") else {})}
    if type_ == "traffic":
        return {"admit": spec["admit"], **{k: spec[k] for k in ("fallback", "target") if spec.get(k)}}
    if type_ == "rollout_freeze":
        return {"config": spec["config"]} if spec.get("config") else {}
    return {}


def _rollback_target(inc: Incident, spec: dict[str, Any]) -> dict[str, Any]:
    cfg = spec.get("config", "suspect")
    if cfg != "suspect":
        kind, name = cfg.split("/", 1)
        return {"kind": kind, "name": name, "why": f"named by the runbook: {cfg}"}
    kinds = set(spec.get("kinds") or [])
    min_score = float(spec.get("min_score", 0.5))
    for sus in inc.suspects or []:
        if kinds and sus.get("kind") not in kinds:
            continue
        if sus.get("kind") == "deploy":
            continue  # a deploy is rolled back by its own pipeline, not by codeblue's config registry
        score = float(sus.get("score") or 0)
        if score < min_score:
            return {"skip": f"top suspect {sus.get('kind')}/{sus.get('name')} scores {score:.2f} < {min_score}",
                    "may_change": True}
        if sus.get("rollback") is False:
            return {"skip": f"suspect {sus.get('kind')}/{sus.get('name')} has no rollback target"}
        return {"kind": sus["kind"], "name": sus["name"], "version": sus.get("version"), "score": score,
                "why": f"top suspect (score {score:.2f}): {sus.get('evidence', '')}"}
    return {"skip": "no suspect" + (f" of kind {', '.join(sorted(kinds))}" if kinds else "") + " to roll back",
            "may_change": True}


def _execute(s: Session, rt: Runtime, run: RunbookRun, step: RunbookStep, inc: Incident, now: float) -> dict[str, Any]:
    spec = step.spec
    t = step.type
    evid = (run.context or {}).get("evidence") or {}
    why = spec.get("why") or f"runbook {run.runbook}"
    if t in CONTAIN_TYPES:
        from codeblue.controls import service as controls

        # The freshest evidence decides the scope: more harm may have arrived since the run started.
        evid = gather_evidence(s, rt, inc)
        run.context = {**(run.context or {}), "evidence": evid}

        made: list[dict[str, Any]] = []
        for wf in inc.workflows or []:
            scope, scope_why = resolve_scope(spec, wf, evid)
            ctl = controls.set_control(
                s, rt, type=t, scope=scope, params=_params(t, spec), actor=ACTOR, incident_id=inc.id,
                reason=f"runbook {run.runbook} step {step.step_id}: {why} (scope: {'; '.join(scope_why) or 'as written'})",
                expires_at=now + float(spec.get("expires", 7200.0)),
            )
            made.append({"control_id": ctl.id, "scope": scope, "why": scope_why})
        incidents.set_milestone(s, rt, incident_id=inc.id, name="mitigation_chosen", actor=ACTOR,
                                data={"path": f"runbook {run.runbook}"})
        if inc.status in ("triggered", "investigating"):
            incidents.set_status(s, rt, incident_id=inc.id, to="contained", actor=ACTOR,
                                 note=f"runbook {run.runbook} step {step.step_id}: {t} in force")
        scopes = ", ".join(f"{m['scope']['workflow']}" + "".join(
            f" {k}={v}" for k, v in m["scope"].items() if k != "workflow" and v != "*") for m in made)
        return {"controls": made, "_text": f"step {step.step_id}: {t} in force on {scopes} — {why}"}
    if t == "rollback":
        from codeblue.changes import service as changes

        target = _rollback_target(inc, spec)
        if "skip" in target:
            # Triage keeps refining the suspects as evidence accrues: give a weak or missing suspect time to
            # clear the bar before giving up on the rollback.
            waited = now - (step.started_at or now)
            if target.get("may_change") and waited < SUSPECT_PATIENCE_S:
                raise NotYet({"waiting_for": target["skip"]}, recheck=15.0)
            raise Skip(target["skip"])
        if target.get("version"):
            try:
                state = changes.config_state(s, kind=target["kind"], name=target["name"])
            except NotFound:
                raise Skip(f"{target['kind']}/{target['name']} is not in the config registry") from None
            if target["version"] not in (state.get("stable"), state.get("candidate")):
                raise Skip(f"{target['kind']}/{target['name']} {target['version']} is no longer served "
                           f"(stable {state.get('stable')}): already rolled back")
        ch = changes.rollback(s, rt, kind=target["kind"], name=target["name"], actor=ACTOR, incident_id=inc.id,
                              note=f"runbook {run.runbook} step {step.step_id}: {target['why']}")
        cd = ch.as_dict()
        return {"change": cd, "why": target["why"],
                "_text": f"step {step.step_id}: rolled back {target['kind']}/{target['name']} "
                         f"{cd.get('from')} → {cd.get('to')} ({target['why']})"}
    if t == "page":
        return _page(s, rt, run, step, inc, spec)
    if t in ("notify", "open_channel"):
        return _notify(s, rt, run, step, inc, spec)
    if t == "audit":
        return _audit(s, rt, run, step, inc, spec, now)
    if t == "wait":
        started = step.started_at or now
        if now < started + float(spec["duration"]):
            raise NotYet({"until": started + float(spec["duration"])}, recheck=started + float(spec["duration"]) - now)
        return {"_text": f"step {step.step_id}: waited {float(spec['duration']):.0f}s"}
    if t == "verify":
        return _verify(s, rt, run, step, inc, spec, now)
    raise Invalid(f"unknown step type {t!r}", field="type")


def _page(s: Session, rt: Runtime, run: RunbookRun, step: RunbookStep, inc: Incident,
          spec: dict[str, Any]) -> dict[str, Any]:
    from codeblue.oncall import service as oncall

    role = spec.get("role")
    domain = spec.get("domain")
    handles: list[str] = []
    if role:
        holder = inc.current_roles().get(role)
        if holder:
            handles.append(holder)
    if domain and not handles:
        wfs: list[str | None] = list(inc.workflows or []) or [None]
        for wf in wfs:
            for who in oncall.who_is_on_call(s, rt, domain=domain, workflow=wf):
                if who.get("handle") and who["handle"] not in handles:
                    handles.append(who["handle"])
    if not handles:
        raise Conflict(f"nobody holds {role or domain!r} for this incident and no schedule has someone on call")
    reason = spec.get("message") or f"runbook {run.runbook}: {spec.get('why') or 'you are needed'}"
    for h in handles:
        oncall.page(s, rt, incident_id=inc.id, handle=h, role=role or f"{domain}_owner", reason=reason, actor=ACTOR,
                    tag=f"runbook:{run.id}:{step.step_id}")
    return {"paged": handles, "_text": f"step {step.step_id}: paged {', '.join(handles)} ({role or domain})"}


def _facts(inc: Incident) -> str:
    harm = inc.harm or {}
    lines = [f"Incident #{inc.id} ({inc.severity}, {inc.failure_type}): {inc.title}",
             f"Status: {inc.status}. Workflows: {', '.join(inc.workflows or [])}."]
    if harm:
        lines.append(f"Harm so far: {harm.get('requests', 0)} requests, {harm.get('subjects', 0)} people"
                     + (" (still growing)" if harm.get("growing") else ""))
    if inc.suspects:
        top = inc.suspects[0]
        lines.append(f"Top suspect: {top.get('kind')}/{top.get('name')} {top.get('version') or ''} "
                     f"(score {float(top.get('score') or 0):.2f}) — {top.get('evidence', '')}")
    return "\n".join(lines)


def _notify(s: Session, rt: Runtime, run: RunbookRun, step: RunbookStep, inc: Incident,
            spec: dict[str, Any]) -> dict[str, Any]:
    from codeblue.comms import outbox

    link = f"{rt.settings.base_url}/console/incidents/{inc.id}"
    if step.type == "open_channel":
        subject = f"[{inc.severity}] Incident #{inc.id} opened: {inc.title}"
        body = f"{_facts(inc)}\nThe incident page is the room: {link}"
        kind = "announcement"
    else:
        subject = f"[{inc.severity}] Incident #{inc.id} update: {inc.title}"
        body = f"{_facts(inc)}\nFollow along: {link}"
        kind = "update"
    msg = outbox.enqueue(s, rt, channel=spec.get("channel", "slack"), kind=kind,
                         dedup_key=f"runbook:{inc.id}:{run.id}:{step.step_id}", subject=subject, body=body,
                         incident_id=inc.id, data={"runbook": run.runbook, "step": step.step_id,
                                                   "audience": spec.get("audience", "internal")})
    return {"message_id": msg.id, "channel": spec.get("channel"),
            "_text": f"step {step.step_id}: {kind} queued to {spec.get('channel')} (message {msg.id})"}


def _audit(s: Session, rt: Runtime, run: RunbookRun, step: RunbookStep, inc: Incident, spec: dict[str, Any],
           now: float) -> dict[str, Any]:
    since, until = _window(inc, now)
    limit = int(spec.get("limit", 500))
    traces: list[str] = []
    harmful = total = 0
    for wf in inc.workflows or []:
        for e in measure.load_events(s, workflow=wf, since=since, until=until):
            total += 1
            if ev_mod.is_harmful(e, inc.failure_type):
                harmful += 1
                tid = e.get("trace_id")
                if tid and len(traces) < limit and tid not in traces:
                    traces.append(tid)
    return {"window": {"since": since, "until": until}, "events": total, "harmful": harmful, "traces": traces,
            "_text": f"step {step.step_id}: captured {len(traces)} affected traces ({harmful} harmful of {total} "
                     f"served events since onset) for the audit of served answers"}


def baseline(s: Session, *, workflow: str, indicator: str, before: float, span: float = 3600.0) -> measure.Measure:
    return measure.measure(measure.load_events(s, workflow=workflow, since=before - span, until=before), indicator)


def check_conditions(s: Session, inc: Incident, conditions: list[dict[str, Any]], since: float, until: float,
                     min_events: int, baselines: dict[str, float | None] | None = None
                     ) -> tuple[str, list[dict[str, Any]]]:
    """'fail' if any condition on any workflow of the incident fails (significantly above its limit, see
    `measure.judge`), else 'wait' if any needs more events, else 'pass'. `baselines` caches the pre-onset
    baseline of each workflow/indicator between calls."""
    cache: dict[str, float | None] = {} if baselines is None else baselines
    onset, _ = _window(inc, until)
    verdict = "pass"
    details = []
    for wf in inc.workflows or []:
        events = measure.load_events(s, workflow=wf, since=since, until=until)
        for cond in conditions:
            m = measure.measure(events, cond["indicator"])
            if m.denominator == 0 and cond.get("below") is None:
                ck = f"{wf}/{cond['indicator']}"
                if ck not in cache:
                    cache[ck] = baseline(s, workflow=wf, indicator=cond["indicator"], before=onset).value
                if cache[ck] is None:
                    # the workflow never reports this indicator (e.g. no retrieval): not applicable here
                    details.append({"workflow": wf, **m.as_dict(), "limit": None, "ok": True, "applies": False})
                    continue
            if cond.get("below") is not None:
                limit = float(cond["below"])
            else:
                ck = f"{wf}/{cond['indicator']}"
                if ck not in cache:
                    cache[ck] = baseline(s, workflow=wf, indicator=cond["indicator"], before=onset).value
                base_value = cache[ck]
                limit = (base_value or 0.0) * float(cond["baseline_factor"])
                # an indicator whose baseline is 0 (e.g. wrong-entity) must stay at 0, with a small allowance
                limit = max(limit, 1.0 / max(min_events, 1) if base_value == 0 else limit)
            j = measure.judge(m, limit, min_events, events=events)
            ok = m.value is not None and m.value <= limit
            details.append({"workflow": wf, **m.as_dict(), "limit": limit, "ok": ok, "verdict": j.verdict,
                            "p_value": j.p_value})
            if j.verdict == "fail":
                verdict = "fail"
            elif j.verdict == "wait" and verdict != "fail":
                verdict = "wait"
    return verdict, details


def _verify(s: Session, rt: Runtime, run: RunbookRun, step: RunbookStep, inc: Incident, spec: dict[str, Any],
            now: float) -> dict[str, Any]:
    started = step.started_at or now
    hold = float(spec.get("hold", 600.0))
    min_events = int(spec.get("min_events", 200))
    baselines: dict[str, float | None] = dict((step.result or {}).get("baselines") or {})
    verdict, details = check_conditions(s, inc, spec["conditions"], started, now + 1, min_events, baselines)
    if verdict == "pass" and now >= started + hold:
        return {"checks": details, "_text": f"step {step.step_id}: verified — conditions held for {hold:.0f}s "
                                             f"over enough events"}
    if verdict == "fail" and now >= started + hold:
        raise Conflict("verification failed: " + "; ".join(
            f"{d['workflow']} {d['indicator']}={d['value']} > {d['limit']:.4g} over {d['denominator']} events "
            f"(p={d['p_value']:.2g})" for d in details if d.get("verdict") == "fail"))
    raise NotYet({"checks": details, "verdict": verdict, "until": started + hold, "baselines": baselines},
                 recheck=min(30.0, max(hold / 4, 1.0)))


# ----- people: request, approve, deny, accept -------------------------------------------------------------------


def find_step(s: Session, *, incident_id: int, step_id: int) -> RunbookStep | None:
    step = s.get(RunbookStep, step_id)
    return step if step is not None and step.incident_id == incident_id else None


def get_step(s: Session, *, incident_id: int, step_id: int) -> RunbookStep:
    step = s.get(RunbookStep, step_id)
    if step is None or step.incident_id != incident_id:
        raise NotFound(f"no runbook step {step_id} on incident {incident_id}", field="step")
    return step


def request_step(s: Session, rt: Runtime, *, incident_id: int, step_id: int, actor: str) -> RunbookStep:
    """Ask for a proposed step to run (it then needs approval if the runbook says so)."""
    step = get_step(s, incident_id=incident_id, step_id=step_id)
    if step.state != "proposed":
        raise Conflict(f"step {step.step_id} is {step.state}; only a proposed step can be requested", field="step")
    step.requested_by = actor
    step.state = "awaiting_approval" if step.spec.get("approval") else "pending"
    run = s.get(RunbookRun, step.run_id)
    if run is not None and run.state == "proposed":
        run.state = "running"
    incidents.append_entry(s, rt, incident_id=incident_id, kind="runbook.step.requested", actor=actor,
                           text=f"{actor} asked to run step {step.step_id} ({step.type})"
                                + (f"; it needs {step.spec['approval']} approval" if step.spec.get("approval") else ""),
                           data={"step": step.id, "step_id": step.step_id})
    wake_after_commit(s, rt)
    return step


def accept_proposal(s: Session, rt: Runtime, *, incident_id: int, actor: str) -> list[RunbookStep]:
    """Accept every proposed step of the incident's runs in one command."""
    steps = list(s.scalars(select(RunbookStep).where(RunbookStep.incident_id == incident_id,
                                                     RunbookStep.state == "proposed").order_by(RunbookStep.id)))
    if not steps:
        raise Conflict(f"incident {incident_id} has no proposed steps to accept")
    return [request_step(s, rt, incident_id=incident_id, step_id=st.id, actor=actor) for st in steps]


def approval_refusal(step: RunbookStep, *, handle: str, roles: frozenset[str]) -> str | None:
    """Why this person may not approve this step, or None if they may (the two-person rule)."""
    needed = step.spec.get("approval")
    if step.state != "awaiting_approval":
        return f"step {step.step_id} is {step.state}, not awaiting approval"
    if needed and needed not in roles:
        return f"step {step.step_id} needs approval by a {needed}; {handle} does not hold that role"
    if step.requested_by == handle:
        return f"{handle} asked for step {step.step_id} and cannot also approve it (two-person rule)"
    return None


def record_refusal(s: Session, rt: Runtime, *, incident_id: int, step: RunbookStep, actor: str, why: str) -> None:
    incidents.append_entry(s, rt, incident_id=incident_id, kind="runbook.approval.refused", actor=actor,
                           text=f"approval of step {step.step_id} by {actor} refused: {why}",
                           data={"step": step.id, "step_id": step.step_id, "reason": why})


def approve_step(s: Session, rt: Runtime, *, incident_id: int, step_id: int, actor: str,
                 roles: frozenset[str]) -> RunbookStep:
    step = get_step(s, incident_id=incident_id, step_id=step_id)
    why = approval_refusal(step, handle=actor, roles=roles)
    if why:
        raise Forbidden(why) if "role" in why or "two-person" in why else Conflict(why)
    step.approved_by = actor
    step.state = "pending"
    incidents.append_entry(s, rt, incident_id=incident_id, kind="runbook.step.approved", actor=actor,
                           text=f"{actor} approved step {step.step_id} ({step.type}), asked for by {step.requested_by}",
                           data={"step": step.id, "step_id": step.step_id, "requested_by": step.requested_by})
    wake_after_commit(s, rt)
    return step


def deny_step(s: Session, rt: Runtime, *, incident_id: int, step_id: int, actor: str, reason: str) -> RunbookStep:
    step = get_step(s, incident_id=incident_id, step_id=step_id)
    if step.state not in ("awaiting_approval", "proposed"):
        raise Conflict(f"step {step.step_id} is {step.state}; only a step awaiting approval can be denied")
    step.denied_by = actor
    _finish(s, rt, step, "denied", rt.clock.now(), {"reason": reason},
            text=f"{actor} denied step {step.step_id} ({step.type}): {reason or 'no reason given'}")
    return step


def runs_for(s: Session, *, incident_id: int) -> list[dict[str, Any]]:
    out = []
    for run in s.scalars(select(RunbookRun).where(RunbookRun.incident_id == incident_id).order_by(RunbookRun.id)):
        steps = s.scalars(select(RunbookStep).where(RunbookStep.run_id == run.id).order_by(RunbookStep.position))
        out.append({**run.as_dict(), "steps": [st.as_dict() for st in steps]})
    return out
