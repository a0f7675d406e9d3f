"""The stability kit: set and lift controls, the snapshot, and the expiry job.

Every change of the control set bumps the global revision in the same transaction and appends a patch to
the revision log (``controls.revision``); connected streams hear about it right after the commit.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codeblue.changes import service as changes
from codeblue.controls import freeze as freezes
from codeblue.controls.incident_link import check_incident, note_on_incident
from codeblue.controls.model import BREAKER_STATES, CONTROL_TYPES, FALLBACKS, SCOPE_FIELDS, Control, RevisionLogEntry
from codeblue.controls.revision import bump_revision, current_revision, environment_head, lock_revision, trim_log
from codeblue.errors import Conflict, Invalid, NotFound
from codeblue.runtime import Runtime

__all__ = [
    "CONTROL_TYPES",
    "SCOPE_FIELDS",
    "active_controls",
    "current_revision",
    "expire_controls",
    "is_frozen",
    "lift_control",
    "list_controls",
    "set_control",
    "snapshot",
]

_SCOPE_VALUE_RE = re.compile(r"^[^\s*][^\n]{0,199}$")
#: Which params each control type accepts, and which scope field it must name.
PARAMS: dict[str, tuple[str, ...]] = {
    "kill_switch": ("fallback", "target"),
    "breaker": ("state",),
    "fallback": ("fallback", "target"),
    "tool_disable": (),
    "traffic": ("admit", "fallback", "target"),
    "rollout_freeze": ("config",),
}
NEEDS_SCOPE: dict[str, tuple[str, str]] = {
    "breaker": ("dependency", "a breaker guards a dependency: set scope.dependency (a model endpoint, tool backend or verifier)"),
    "tool_disable": ("tool", "tool_disable needs the tool: set scope.tool"),
    "fallback": ("workflow", "a fallback applies to a workflow: set scope.workflow"),
}


def normalise_scope(scope: Any) -> dict[str, str]:
    if scope is None:
        scope = {}
    if not isinstance(scope, dict):
        raise Invalid("scope must be an object with workflow, action, tool, dependency, segment, tenant", field="scope")
    out: dict[str, str] = {}
    for key, val in scope.items():
        if key not in SCOPE_FIELDS:
            raise Invalid(f"unknown scope field {key!r}; allowed: {', '.join(SCOPE_FIELDS)}", field=f"scope.{key}")
        if val is None:
            val = "*"
        if not isinstance(val, str) or (val != "*" and not _SCOPE_VALUE_RE.match(val)):
            raise Invalid(f"scope.{key} must be '*' or a name (1–200 characters)", field=f"scope.{key}")
        out[key] = val
    return {f: out.get(f, "*") for f in SCOPE_FIELDS}


def _check_target(params: dict[str, Any]) -> None:
    target = params.get("target")
    if target is not None and (not isinstance(target, str) or not target.strip() or len(target) > 4000):
        raise Invalid("params.target must be text (a model, a queue or the static answer)", field="params.target")


def _check_fallback(params: dict[str, Any], *, required: bool) -> None:
    fb = params.get("fallback")
    if fb is None:
        if required:
            raise Invalid(f"params.fallback is required: one of {', '.join(FALLBACKS)}", field="params.fallback")
        return
    if fb not in FALLBACKS:
        raise Invalid(f"params.fallback {fb!r} is not one of {', '.join(FALLBACKS)}", field="params.fallback")
    if fb in ("backup_model", "static_answer") and not params.get("target"):
        what = "the backup model" if fb == "backup_model" else "the static answer text"
        raise Invalid(f"a {fb} fallback needs params.target ({what})", field="params.target")


def normalise_params(s: Session, type: str, scope: dict[str, str], params: Any) -> dict[str, Any]:
    """Validate a control's params against its type; errors name the field."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise Invalid("params must be an object", field="params")
    allowed = PARAMS[type]
    for key in params:
        if key not in allowed:
            ok = ", ".join(allowed) or "none"
            raise Invalid(f"{type} does not take params.{key}; it takes: {ok}", field=f"params.{key}")
    params = {k: v for k, v in params.items() if v is not None}
    if type in NEEDS_SCOPE:
        field, msg = NEEDS_SCOPE[type]
        if scope[field] == "*":
            raise Invalid(msg, field=f"scope.{field}")
    if type == "kill_switch":
        if scope["workflow"] == "*" and scope["action"] == "*":
            raise Invalid("a kill switch names an action path: set scope.action (and usually scope.workflow)",
                          field="scope.action")
        _check_target(params)
        _check_fallback(params, required=False)
    elif type == "breaker":
        state = params.setdefault("state", "open")
        if state not in BREAKER_STATES:
            raise Invalid(f"params.state {state!r} is not one of {', '.join(BREAKER_STATES)}", field="params.state")
    elif type == "fallback":
        _check_target(params)
        _check_fallback(params, required=True)
    elif type == "traffic":
        admit = params.get("admit")
        if isinstance(admit, bool) or not isinstance(admit, (int, float)) or not math.isfinite(admit) or not 0 <= admit <= 1:
            raise Invalid(f"params.admit must be a number from 0 to 1 (the share admitted); got {admit!r}",
                          field="params.admit")
        params["admit"] = float(admit)
        _check_target(params)
        _check_fallback(params, required=False)
    elif type == "rollout_freeze":
        cfg = params.get("config")
        if cfg is not None:
            if not isinstance(cfg, str) or cfg.count("/") != 1:
                raise Invalid("params.config must be '<kind>/<name>', e.g. prompt/refund-assistant",
                              field="params.config")
            kind, name = cfg.split("/")
            changes._kind_row(s, kind, field="params.config")
            changes.check_name(name, field="params.config")
    return dict(params)


def set_control(
    s: Session,
    rt: Runtime,
    *,
    type: str,
    scope: dict[str, Any],
    params: dict[str, Any],
    reason: str,
    actor: str,
    incident_id: int | None = None,
    expires_at: float | None = None,
    lift_condition: str | None = None,
    environment: str = "production",
) -> Control:
    """Put a control in place (a breaker with the same scope is updated in place: open → half_open → closed)."""
    if type not in CONTROL_TYPES:
        raise Invalid(f"unknown control type {type!r}; allowed: {', '.join(CONTROL_TYPES)}", field="type")
    changes.check_environment(environment)
    sc = normalise_scope(scope)
    pr = normalise_params(s, type, sc, params)
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason is required: say why this control is needed", field="reason")
    now = rt.clock.now()
    if expires_at is not None:
        if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) or not math.isfinite(expires_at):
            raise Invalid("expires_at must be a time (unix seconds or RFC 3339)", field="expires_at")
        if expires_at <= now:
            raise Invalid("expires_at is in the past; give a future time or a ttl_s", field="expires_at")
    if lift_condition is not None and (not isinstance(lift_condition, str) or not lift_condition.strip()):
        raise Invalid("lift_condition must be text saying when to lift the control", field="lift_condition")
    if expires_at is None and lift_condition is None:
        raise Invalid("a control needs an expiry (expires_at or ttl_s) or a lift_condition", field="expires_at")
    check_incident(s, incident_id)
    lock_revision(s)
    ctl: Control | None = None
    if type == "breaker":
        candidates = list(s.scalars(select(Control).where(
            Control.environment == environment, Control.active.is_(True), Control.type == "breaker")))
        ctl = next((c for c in candidates if normalise_scope(c.scope) == sc), None)
    if ctl is not None:
        ctl.params, ctl.reason, ctl.author, ctl.updated_at = pr, reason, actor, now
        ctl.expires_at, ctl.lift_condition = expires_at, lift_condition
        if incident_id is not None:
            ctl.incident_id = incident_id
        verb = "updated"
    else:
        ctl = Control(
            environment=environment, type=type, scope=sc, params=pr, reason=reason, author=actor,
            incident_id=incident_id, created_at=now, updated_at=now, expires_at=expires_at,
            lift_condition=lift_condition, active=True,
        )
        s.add(ctl)
        verb = "set"
    s.flush()
    configs = changes.configs_touched_by_freeze(s, ctl) if type == "rollout_freeze" else {}
    bump_revision(s, rt, environment=environment, controls_upsert=[ctl.as_snapshot_dict()], configs=configs)
    note_on_incident(
        s, rt, incident_id=ctl.incident_id, kind="control.set",
        text=f"{verb} {describe(ctl)} in {environment}: {reason}", actor=actor, data=ctl.as_dict(),
    )
    return ctl


def describe(ctl: Control) -> str:
    scope = ", ".join(f"{k}={v}" for k, v in ctl.scope.items() if v != "*") or "everything"
    params = ", ".join(f"{k}={v}" for k, v in ctl.params.items())
    return f"{ctl.type} #{ctl.id} on {scope}" + (f" ({params})" if params else "")


def lift_control(s: Session, rt: Runtime, *, control_id: int, actor: str, reason: str = "") -> Control:
    ctl = s.get(Control, control_id)
    if ctl is None:
        raise NotFound(f"no control {control_id}", field="control_id")
    check_incident(s, ctl.incident_id)  # lock order: incident → revision
    lock_revision(s)
    s.refresh(ctl)
    if not ctl.active:
        raise Conflict(f"control {control_id} was already lifted by {ctl.lifted_by} ({ctl.lift_reason or 'no reason'})")
    _lift(s, rt, [ctl], actor=actor, reason=reason)
    return ctl


def _lift(s: Session, rt: Runtime, controls: list[Control], *, actor: str, reason: str) -> None:
    now = rt.clock.now()
    by_env: dict[str, list[Control]] = {}
    for ctl in controls:
        ctl.active, ctl.lifted_at, ctl.lifted_by, ctl.lift_reason, ctl.updated_at = False, now, actor, reason or "", now
        by_env.setdefault(ctl.environment, []).append(ctl)
    s.flush()
    for env, ctls in by_env.items():
        configs: dict[str, dict[str, Any] | None] = {}
        for ctl in ctls:
            if ctl.type == "rollout_freeze":
                configs.update(changes.configs_touched_by_freeze(s, ctl))
        bump_revision(s, rt, environment=env, controls_remove=[c.id for c in ctls], configs=configs)
    for ctl in controls:
        note_on_incident(
            s, rt, incident_id=ctl.incident_id, kind="control.lifted",
            text=f"lifted {describe(ctl)} in {ctl.environment}" + (f": {reason}" if reason else ""),
            actor=actor, data=ctl.as_dict(),
        )


def expire_controls(s: Session, rt: Runtime) -> list[Control]:
    """Lift every active control whose expiry has passed (the expiry job)."""
    now = rt.clock.now()
    due = select(Control.id).where(Control.active.is_(True), Control.expires_at.is_not(None), Control.expires_at <= now)
    if not s.scalars(due.limit(1)).first():
        return []
    for incident_id in sorted({i for i in s.scalars(select(Control.incident_id).where(Control.id.in_(due))) if i}):
        check_incident(s, incident_id)  # lock order: incident → revision
    lock_revision(s)
    ctls = list(s.scalars(select(Control).where(Control.id.in_(due)).order_by(Control.id)))
    if ctls:
        _lift(s, rt, ctls, actor="system:expiry", reason="expired")
    return ctls


def trim_revision_log(s: Session, rt: Runtime) -> int:
    return trim_log(s, keep=rt.settings.controls_revision_log_keep)


def housekeeping_due(s: Session, rt: Runtime) -> bool:
    """Whether the expiry job has work (a control past its expiry, or a revision log over its size)."""
    now = rt.clock.now()
    expired = s.scalars(
        select(Control.id).where(Control.active.is_(True), Control.expires_at.is_not(None), Control.expires_at <= now)
        .limit(1)
    ).first()
    if expired is not None:
        return True
    oldest = s.scalar(select(func.min(RevisionLogEntry.revision)))
    return oldest is not None and current_revision(s) - int(oldest) > rt.settings.controls_revision_log_keep


def active_controls(s: Session, *, environment: str = "production") -> list[Control]:
    return list(
        s.scalars(
            select(Control).where(Control.environment == environment, Control.active.is_(True)).order_by(Control.id)
        )
    )


def list_controls(
    s: Session,
    *,
    environment: str | None = "production",
    active: bool | None = True,
    type: str | None = None,
    workflow: str | None = None,
    incident_id: int | None = None,
    limit: int = 500,
) -> list[Control]:
    stmt = select(Control).order_by(Control.id.desc())
    if environment is not None:
        stmt = stmt.where(Control.environment == environment)
    if active is not None:
        stmt = stmt.where(Control.active.is_(active))
    if type is not None:
        if type not in CONTROL_TYPES:
            raise Invalid(f"unknown control type {type!r}; allowed: {', '.join(CONTROL_TYPES)}", field="type")
        stmt = stmt.where(Control.type == type)
    if incident_id is not None:
        stmt = stmt.where(Control.incident_id == incident_id)
    rows = list(s.scalars(stmt))
    if workflow is not None:
        rows = [c for c in rows if c.scope.get("workflow", "*") in ("*", workflow)]
    return rows[:limit]


def get_control(s: Session, control_id: int) -> Control:
    ctl = s.get(Control, control_id)
    if ctl is None:
        raise NotFound(f"no control {control_id}", field="control_id")
    return ctl


def is_frozen(s: Session, *, kind: str, name: str, environment: str) -> Control | None:
    """The rollout freeze that applies to a config in `environment`, if any."""
    from codeblue.changes.model import Config

    cfg = s.scalar(select(Config).where(Config.kind == kind, Config.name == name))
    workflows = list(cfg.workflows) if cfg is not None else []
    return freezes.find_freeze(freezes.active_freezes(s, environment=environment), kind=kind, name=name,
                               workflows=workflows)


def snapshot(s: Session, *, environment: str = "production", content: bool = False, now: float | None = None) -> dict[str, Any]:
    """The snapshot an SDK evaluates locally: active controls and configs at the environment's latest revision.

    The revision is read first: state read afterwards is at least as new, and patches are idempotent, so a
    client that applies the patches after this revision never misses a change.
    """
    revision = environment_head(s, environment)
    controls = [c.as_snapshot_dict() for c in active_controls(s, environment=environment)]
    configs = changes.configs_for_snapshot(s, environment=environment, content=content)
    return {
        "revision": revision,
        "environment": environment,
        "generated_at": now,
        "controls": controls,
        "configs": configs,
    }
