"""Versioned AI configuration and the change log: push, activate, roll back, record, and ask what changed.

Every activation and rollback takes the config's row lock and then the global revision lock (in that order,
everywhere), so two concurrent activations of one config are serialised and can never leave two active
versions; each bumps the controls revision in the same transaction (the snapshot carries configs).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import fastjsonschema
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from codeblue.changes.model import CONFIG_KINDS, Change, Config, ConfigKind, ConfigState, ConfigVersion
from codeblue.controls import freeze as freezes
from codeblue.controls.incident_link import check_incident, note_on_incident
from codeblue.controls.revision import bump_revision, lock_revision
from codeblue.errors import Conflict, Invalid, NotFound
from codeblue.runtime import Runtime

__all__ = [
    "CONFIG_KINDS",
    "activate",
    "config_dict",
    "config_state",
    "configs_for_snapshot",
    "list_changes",
    "list_configs",
    "list_kinds",
    "parse_time",
    "push_version",
    "record_external",
    "register_kind",
    "rollback",
]

KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
ENV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
WORKFLOW_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
AUTO_VERSION_RE = re.compile(r"^v(\d+)$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
MAX_PREVIOUS = 100
_validators: dict[tuple[str, str], Any] = {}


# ----- validation helpers -------------------------------------------------------------------------------


def check_environment(environment: str, field: str = "environment") -> str:
    if not isinstance(environment, str) or not ENV_RE.match(environment):
        raise Invalid(
            f"environment {environment!r} is not valid: 1–64 letters, digits, '.', '_' or '-'", field=field
        )
    return environment


def check_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise Invalid(f"config name {name!r} is not valid: 1–128 letters, digits, '.', '_' or '-'", field=field)
    return name


def check_workflows(workflows: Any, field: str = "workflows") -> list[str]:
    if workflows is None:
        return []
    if not isinstance(workflows, list):
        raise Invalid("workflows must be a list of workflow names", field=field)
    out: list[str] = []
    for i, w in enumerate(workflows):
        if not isinstance(w, str) or not WORKFLOW_RE.match(w):
            raise Invalid(f"workflow {w!r} is not a valid workflow name", field=f"{field}[{i}]")
        if w not in out:
            out.append(w)
    return out


def parse_time(value: Any, *, now: float, field: str) -> float:
    """Unix seconds, an RFC 3339 string, or a duration before `now` (``30m``, ``2h``, ``7d``)."""
    if isinstance(value, bool):
        raise Invalid(f"{field} must be unix seconds, an RFC 3339 time or a duration like 30m", field=field)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        m = _DURATION_RE.match(text)
        if m:
            return now - float(m.group(1)) * _UNITS[m.group(2)]
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            pass
        else:
            if dt.tzinfo is None:
                raise Invalid(f"{field}: {value!r} has no time zone offset (use Z or +hh:mm)", field=field)
            return dt.timestamp()
    raise Invalid(
        f"{field}: {value!r} is not unix seconds, an RFC 3339 time (2026-05-01T12:00:00Z) or a duration (30m, 2h, 7d)",
        field=field,
    )


# ----- kinds ----------------------------------------------------------------------------------------------


def _kind_row(s: Session, kind: str, field: str = "kind") -> ConfigKind | None:
    """None for a built-in kind, the row for a custom one; Invalid for an unknown kind."""
    if kind in CONFIG_KINDS:
        return None
    row = s.get(ConfigKind, kind) if isinstance(kind, str) and KIND_RE.match(kind) else None
    if row is None:
        custom = sorted(s.scalars(select(ConfigKind.kind)))
        raise Invalid(
            f"unknown config kind {kind!r}; known kinds: {', '.join([*CONFIG_KINDS, *custom])} "
            "(register more with POST /v1/configs/kinds)",
            field=field,
        )
    return row


def register_kind(
    s: Session, rt: Runtime, *, kind: str, description: str = "", schema: dict[str, Any] | None = None, author: str
) -> ConfigKind:
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise Invalid(f"kind {kind!r} is not valid: a lower-case letter, then letters, digits or '_'", field="kind")
    if kind in CONFIG_KINDS or kind == "deploy":
        raise Conflict(f"{kind!r} is a built-in kind", field="kind")
    if schema is not None:
        if not isinstance(schema, dict):
            raise Invalid("schema must be a JSON Schema object", field="schema")
        try:
            fastjsonschema.compile(schema)
        except Exception as exc:
            raise Invalid(f"schema is not a valid JSON Schema: {exc}", field="schema") from exc
    if s.get(ConfigKind, kind) is not None:
        raise Conflict(f"the config kind {kind!r} is already registered", field="kind")
    row = ConfigKind(kind=kind, description=description, schema=schema, author=author, created_at=rt.clock.now())
    s.add(row)
    s.flush()
    return row


def list_kinds(s: Session) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"kind": k, "description": "", "schema": None, "builtin": True, "author": None, "created_at": None}
        for k in CONFIG_KINDS
    ]
    out += [k.as_dict() for k in s.scalars(select(ConfigKind).order_by(ConfigKind.kind))]
    return out


def _validate_content(kind_row: ConfigKind | None, content: Any) -> None:
    if content is None:
        raise Invalid("content is required: text or a JSON value", field="content")
    if kind_row is None or kind_row.schema is None:
        return
    key = (kind_row.kind, repr(kind_row.schema))
    validator = _validators.get(key)
    if validator is None:
        validator = _validators[key] = fastjsonschema.compile(kind_row.schema)
    try:
        validator(content)
    except fastjsonschema.JsonSchemaValueException as exc:
        where = exc.name.replace("data", "content", 1) if exc.name else "content"
        raise Invalid(f"content does not match the {kind_row.kind} schema: {exc.message}", field=where) from exc


# ----- configs and versions -------------------------------------------------------------------------------


def _get_config(s: Session, kind: str, name: str, *, lock: bool = False) -> Config:
    stmt = select(Config).where(Config.kind == kind, Config.name == name)
    if lock:
        stmt = stmt.with_for_update()
    cfg = s.scalar(stmt)
    if cfg is None:
        raise NotFound(f"no config {kind}/{name}; push a version first")
    return cfg


def _get_version(s: Session, cfg: Config, version: str, field: str = "version") -> ConfigVersion:
    row = s.scalar(select(ConfigVersion).where(ConfigVersion.config_id == cfg.id, ConfigVersion.version == version))
    if row is None:
        known = list(s.scalars(select(ConfigVersion.version).where(ConfigVersion.config_id == cfg.id).order_by(ConfigVersion.seq)))
        raise NotFound(f"{cfg.key} has no version {version!r}; versions: {', '.join(known) or 'none'}", field=field)
    return row


def _state(s: Session, cfg: Config, environment: str) -> ConfigState | None:
    return s.scalar(select(ConfigState).where(ConfigState.config_id == cfg.id, ConfigState.environment == environment))


def push_version(
    s: Session,
    rt: Runtime,
    *,
    kind: str,
    name: str,
    version: str | None = None,
    content: Any,
    author: str,
    note: str = "",
    workflows: list[str] | None = None,
) -> ConfigVersion:
    """Store a new immutable version (label given, or the next ``vN``). The config is created on first push."""
    kind_row = _kind_row(s, kind)
    check_name(name)
    if version is not None and (not isinstance(version, str) or not VERSION_RE.match(version)):
        raise Invalid(f"version {version!r} is not valid: 1–64 letters, digits, '.', '_', '+' or '-'", field="version")
    wfs = check_workflows(workflows)
    _validate_content(kind_row, content)
    now = rt.clock.now()
    lookup = select(Config).where(Config.kind == kind, Config.name == name).with_for_update()
    cfg = s.scalar(lookup)
    if cfg is None:
        try:
            with s.begin_nested():  # two first pushes at once: the loser finds the winner's row below
                cfg = Config(kind=kind, name=name, workflows=wfs, created_at=now)
                s.add(cfg)
                s.flush()
        except IntegrityError:
            cfg = s.scalar(lookup)
            if cfg is None:
                raise
    existing = list(s.scalars(select(ConfigVersion).where(ConfigVersion.config_id == cfg.id)))
    labels = {v.version for v in existing}
    seq = max((v.seq for v in existing), default=0) + 1
    if version is None:
        n = max([int(m.group(1)) for v in labels if (m := AUTO_VERSION_RE.match(v))] + [len(existing)]) + 1
        version = f"v{n}"
    elif version in labels:
        raise Conflict(f"{cfg.key} already has a version {version!r}; versions are immutable", field="version")
    workflows_changed = bool(workflows is not None and wfs != list(cfg.workflows))
    if workflows_changed:
        cfg.workflows = wfs
    row = ConfigVersion(
        config_id=cfg.id, seq=seq, version=version, content=content, author=author, note=note or "",
        workflows=wfs or list(cfg.workflows), created_at=now,
    )
    s.add(row)
    s.flush()
    if workflows_changed:
        # The snapshot carries each config's workflows: tell every environment it serves in.
        for st in s.scalars(select(ConfigState).where(ConfigState.config_id == cfg.id)):
            if st.stable is not None or st.candidate is not None:
                lock_revision(s)
                bump_revision(s, rt, environment=st.environment, configs={cfg.key: config_dict(s, cfg, st, content=True)})
    return row


def config_dict(s: Session, cfg: Config, st: ConfigState, *, content: bool, frozen: bool | None = None) -> dict[str, Any]:
    """A config as the snapshot carries it."""
    if frozen is None:
        frozen = (
            freezes.find_freeze(
                freezes.active_freezes(s, environment=st.environment), kind=cfg.kind, name=cfg.name,
                workflows=list(cfg.workflows),
            )
            is not None
        )
    out: dict[str, Any] = {
        "kind": cfg.kind,
        "name": cfg.name,
        "stable": st.stable,
        "candidate": st.candidate,
        "fraction": st.fraction if st.candidate else 0.0,
        "frozen": frozen,
        "workflows": list(cfg.workflows),
    }
    if content:
        wanted = [v for v in (st.stable, st.candidate) if v]
        rows = s.scalars(
            select(ConfigVersion).where(ConfigVersion.config_id == cfg.id, ConfigVersion.version.in_(wanted))
        )
        out["content"] = {r.version: r.content for r in rows}
    return out


def configs_for_snapshot(s: Session, *, environment: str, content: bool) -> dict[str, dict[str, Any]]:
    frz = freezes.active_freezes(s, environment=environment)
    rows = s.execute(
        select(Config, ConfigState)
        .join(ConfigState, ConfigState.config_id == Config.id)
        .where(ConfigState.environment == environment)
        .order_by(Config.kind, Config.name)
    ).all()
    out: dict[str, dict[str, Any]] = {}
    for cfg, st in rows:
        if st.stable is None and st.candidate is None:
            continue
        frozen = freezes.find_freeze(frz, kind=cfg.kind, name=cfg.name, workflows=list(cfg.workflows)) is not None
        out[cfg.key] = config_dict(s, cfg, st, content=content, frozen=frozen)
    return out


def configs_touched_by_freeze(s: Session, control: Any) -> dict[str, dict[str, Any] | None]:
    """Config dicts (with content) of every config in the control's environment a freeze covers."""
    out: dict[str, dict[str, Any] | None] = {}
    rows = s.execute(
        select(Config, ConfigState)
        .join(ConfigState, ConfigState.config_id == Config.id)
        .where(ConfigState.environment == control.environment)
    ).all()
    for cfg, st in rows:
        if (st.stable or st.candidate) and freezes.freeze_applies(
            control, kind=cfg.kind, name=cfg.name, workflows=list(cfg.workflows)
        ):
            out[cfg.key] = config_dict(s, cfg, st, content=True)
    return out


# ----- activation and rollback ----------------------------------------------------------------------------


def _locked(s: Session, kind: str, name: str, environment: str) -> tuple[Config, ConfigState]:
    """Lock the config row, then the revision row; return the config and its (possibly new) state."""
    _kind_row(s, kind)
    check_name(name)
    check_environment(environment)
    cfg = _get_config(s, kind, name, lock=True)
    lock_revision(s)
    st = _state(s, cfg, environment)
    if st is None:
        st = ConfigState(config_id=cfg.id, environment=environment, stable=None, candidate=None, fraction=0.0,
                         previous=[], updated_at=0.0)
        s.add(st)
    return cfg, st


def _record(
    s: Session, rt: Runtime, *, type: str, cfg: Config, st: ConfigState, frm: str | None, to: str | None,
    fraction: float, actor: str, incident_id: int | None, note: str,
) -> Change:
    now = rt.clock.now()
    st.updated_at = now
    ch = Change(
        time=now, type=type, kind=cfg.kind, name=cfg.name, from_version=frm, to_version=to, fraction=fraction,
        environment=st.environment, workflows=list(cfg.workflows), actor=actor, incident_id=incident_id,
        note=note or "",
    )
    s.add(ch)
    s.flush()
    bump_revision(s, rt, environment=st.environment, configs={cfg.key: config_dict(s, cfg, st, content=True)})
    if type == "rollback":
        text = f"rolled back {cfg.key} in {st.environment}: {frm} → {to}"
    elif st.candidate == to and fraction < 1:
        text = f"rolling out {cfg.key} {to} to {fraction:.0%} of {st.environment} (stable {st.stable})"
    else:
        text = f"activated {cfg.key} {to} in {st.environment} (was {frm or 'nothing'})"
    note_on_incident(s, rt, incident_id=incident_id, kind=f"change.{type}", text=text, actor=actor, data=ch.as_dict())
    return ch


def activate(
    s: Session,
    rt: Runtime,
    *,
    kind: str,
    name: str,
    version: str,
    environment: str = "production",
    fraction: float = 1.0,
    actor: str,
    incident_id: int | None = None,
    note: str = "",
    workflows: list[str] | None = None,
) -> Change:
    """Make `version` stable (fraction 1) or roll it out as the candidate at `fraction` (raised in steps)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise Invalid(f"fraction must be a number in (0, 1]; got {fraction!r}", field="fraction")
    fraction = float(fraction)
    wfs = check_workflows(workflows) if workflows is not None else None
    check_incident(s, incident_id)
    cfg, st = _locked(s, kind, name, environment)
    _get_version(s, cfg, version)
    if wfs is not None:
        cfg.workflows = wfs
    frz = freezes.find_freeze(
        freezes.active_freezes(s, environment=environment), kind=kind, name=name, workflows=list(cfg.workflows)
    )
    if frz is not None:
        raise Conflict(
            f"rollouts of {cfg.key} in {environment} are frozen by control {frz.id} ({frz.reason}); "
            "only rollbacks are allowed until it is lifted",
            field="version", control_id=frz.id,
        )
    old_stable = st.stable
    if fraction >= 1.0:
        if version == st.stable and st.candidate is None:
            raise Conflict(f"{version} is already the stable version of {cfg.key} in {environment}", field="version")
        if st.stable is not None and st.stable != version:
            st.previous = [*list(st.previous), st.stable][-MAX_PREVIOUS:]
        st.stable, st.candidate, st.fraction = version, None, 0.0
        return _record(s, rt, type="activate", cfg=cfg, st=st, frm=old_stable, to=version, fraction=1.0,
                       actor=actor, incident_id=incident_id, note=note)
    if st.stable is None:
        raise Conflict(
            f"{cfg.key} has no stable version in {environment}; activate the first version with fraction 1",
            field="fraction",
        )
    if version == st.stable:
        raise Conflict(f"{version} is already the stable version of {cfg.key} in {environment}", field="version")
    if st.candidate is not None and st.candidate != version:
        raise Conflict(
            f"{st.candidate} is rolling out at {st.fraction:.0%} for {cfg.key} in {environment}; promote it "
            "(fraction 1) or roll it back before rolling out another version",
            field="version",
        )
    if st.candidate == version and st.fraction == fraction:
        raise Conflict(f"{version} already serves {fraction:.0%} of {cfg.key} in {environment}", field="fraction")
    st.candidate, st.fraction = version, fraction
    return _record(s, rt, type="activate", cfg=cfg, st=st, frm=st.stable, to=version, fraction=fraction,
                   actor=actor, incident_id=incident_id, note=note)


def rollback(
    s: Session,
    rt: Runtime,
    *,
    kind: str,
    name: str,
    environment: str = "production",
    to_version: str | None = None,
    actor: str,
    incident_id: int | None = None,
    note: str = "",
) -> Change:
    """Stop a rolling-out candidate (fraction 0), else re-activate the previous stable (or `to_version`).

    Rollbacks are allowed while a rollout freeze stands. Conflict when there is nothing to roll back to.
    """
    check_incident(s, incident_id)
    cfg, st = _locked(s, kind, name, environment)
    if to_version is not None:
        _get_version(s, cfg, to_version, field="to_version")
    if st.candidate is not None and (to_version is None or to_version == st.stable):
        candidate = st.candidate
        st.candidate, st.fraction = None, 0.0
        return _record(s, rt, type="rollback", cfg=cfg, st=st, frm=candidate, to=st.stable, fraction=1.0,
                       actor=actor, incident_id=incident_id, note=note)
    previous = list(st.previous)
    if to_version is None:
        if not previous:
            raise Conflict(
                f"nothing to roll back to: {cfg.key} in {environment} has "
                + (f"only ever had stable {st.stable}" if st.stable else "no active version"),
                field="to_version",
            )
        target = previous[-1]
    else:
        target = to_version
        if target == st.stable:
            raise Conflict(f"{target} is already the stable version of {cfg.key} in {environment}", field="to_version")
    if target in previous:
        previous = previous[: len(previous) - 1 - previous[::-1].index(target)]
    old = st.stable
    st.previous = previous
    st.stable, st.candidate, st.fraction = target, None, 0.0
    return _record(s, rt, type="rollback", cfg=cfg, st=st, frm=old, to=target, fraction=1.0,
                   actor=actor, incident_id=incident_id, note=note)


# ----- external changes and queries -------------------------------------------------------------------------


def record_external(s: Session, rt: Runtime, *, change: dict[str, Any]) -> Change:
    """Record a change made elsewhere (a deploy, a flag flip): type ``external``. Fields as Change v1."""
    if not isinstance(change, dict):
        raise Invalid("a change must be a JSON object", field="body")
    allowed = {"time", "type", "kind", "name", "from", "to", "fraction", "environment", "workflows", "actor",
               "incident", "incident_id", "note", "data"}
    for key in change:
        if key not in allowed:
            raise Invalid(f"unknown field {key!r}; Change v1 fields: {', '.join(sorted(allowed))}", field=key)
    if change.get("type", "external") != "external":
        raise Invalid("only external changes can be recorded; activations and rollbacks go through /v1/configs",
                      field="type")
    kind = change.get("kind")
    if kind != "deploy":
        if not isinstance(kind, str):
            raise Invalid("kind is required: a config kind or 'deploy'", field="kind")
        _kind_row(s, kind)
    name = change.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise Invalid("name is required (1–128 characters): what changed, e.g. the service deployed", field="name")
    versions: dict[str, str | None] = {}
    for key in ("from", "to"):
        v = change.get(key)
        if v is not None and (not isinstance(v, str) or len(v) > 64):
            raise Invalid(f"{key} must be a version string of at most 64 characters", field=key)
        versions[key] = v
    fraction = change.get("fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise Invalid(f"fraction must be a number in [0, 1]; got {fraction!r}", field="fraction")
    now = rt.clock.now()
    when = parse_time(change["time"], now=now, field="time") if change.get("time") is not None else now
    environment = check_environment(change.get("environment") or "production")
    workflows = check_workflows(change.get("workflows"))
    actor = change.get("actor")
    if not isinstance(actor, str) or not actor or len(actor) > 64:
        raise Invalid("actor is required (1–64 characters)", field="actor")
    incident = change.get("incident", change.get("incident_id"))
    if incident is not None and (isinstance(incident, bool) or not isinstance(incident, int)):
        raise Invalid("incident must be an incident id (integer)", field="incident")
    note = change.get("note") or ""
    if not isinstance(note, str):
        raise Invalid("note must be text", field="note")
    data = change.get("data")
    if data is not None and not isinstance(data, dict):
        raise Invalid("data must be a JSON object", field="data")
    check_incident(s, incident)
    ch = Change(
        time=when, type="external", kind=kind, name=name, from_version=versions["from"], to_version=versions["to"],
        fraction=float(fraction), environment=environment, workflows=workflows, actor=actor, incident_id=incident,
        note=note, data=data,
    )
    s.add(ch)
    s.flush()
    note_on_incident(
        s, rt, incident_id=incident, kind="change.external",
        text=f"external change {kind}/{name}: {versions['from'] or '?'} → {versions['to'] or '?'}",
        actor=actor, data=ch.as_dict(),
    )
    return ch


def list_changes(
    s: Session,
    *,
    since: float | None = None,
    until: float | None = None,
    workflow: str | None = None,
    environment: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    type: str | None = None,
    limit: int = 500,
) -> list[Change]:
    """Changes newest first; a change with no workflows recorded matches any workflow filter (it may touch all)."""
    stmt = select(Change).order_by(Change.time.desc(), Change.id.desc())
    if since is not None:
        stmt = stmt.where(Change.time >= since)
    if until is not None:
        stmt = stmt.where(Change.time <= until)
    if environment is not None:
        stmt = stmt.where(Change.environment == environment)
    if kind is not None:
        stmt = stmt.where(Change.kind == kind)
    if name is not None:
        stmt = stmt.where(Change.name == name)
    if type is not None:
        stmt = stmt.where(Change.type == type)
    if workflow is None:
        return list(s.scalars(stmt.limit(limit)))
    out: list[Change] = []
    for ch in s.scalars(stmt.execution_options(yield_per=500)):
        if not ch.workflows or workflow in ch.workflows:
            out.append(ch)
            if len(out) >= limit:
                break
    return out


def config_state(
    s: Session, *, kind: str, name: str, environment: str = "production", content: bool = False
) -> dict[str, Any]:
    """Stable, candidate, fraction, freeze and every version of a config, plus its state in each environment."""
    _kind_row(s, kind)
    cfg = _get_config(s, kind, name)
    check_environment(environment)
    states = list(s.scalars(select(ConfigState).where(ConfigState.config_id == cfg.id).order_by(ConfigState.environment)))
    here = next((st for st in states if st.environment == environment), None)
    frz = freezes.find_freeze(
        freezes.active_freezes(s, environment=environment), kind=kind, name=name, workflows=list(cfg.workflows)
    )
    versions = s.scalars(select(ConfigVersion).where(ConfigVersion.config_id == cfg.id).order_by(ConfigVersion.seq))
    return {
        "kind": cfg.kind,
        "name": cfg.name,
        "key": cfg.key,
        "workflows": list(cfg.workflows),
        "created_at": cfg.created_at,
        "environment": environment,
        "stable": here.stable if here else None,
        "candidate": here.candidate if here else None,
        "fraction": (here.fraction if here and here.candidate else 0.0),
        "previous": list(here.previous) if here else [],
        "frozen": frz is not None,
        "frozen_by": frz.id if frz is not None else None,
        "versions": [v.as_dict(content=content) for v in versions],
        "environments": {
            st.environment: {"stable": st.stable, "candidate": st.candidate,
                             "fraction": st.fraction if st.candidate else 0.0, "updated_at": st.updated_at}
            for st in states
        },
    }


def get_version(s: Session, *, kind: str, name: str, version: str) -> ConfigVersion:
    _kind_row(s, kind)
    return _get_version(s, _get_config(s, kind, name), version)


def list_configs(s: Session, *, kind: str | None = None, environment: str = "production") -> list[dict[str, Any]]:
    stmt = select(Config).order_by(Config.kind, Config.name)
    if kind is not None:
        _kind_row(s, kind)
        stmt = stmt.where(Config.kind == kind)
    check_environment(environment)
    configs = list(s.scalars(stmt))
    states = {
        st.config_id: st
        for st in s.scalars(select(ConfigState).where(ConfigState.environment == environment))
    }
    frz = freezes.active_freezes(s, environment=environment)
    out: list[dict[str, Any]] = []
    for cfg in configs:
        versions = list(s.scalars(select(ConfigVersion.version).where(ConfigVersion.config_id == cfg.id).order_by(ConfigVersion.seq)))
        st = states.get(cfg.id)
        out.append({
            "kind": cfg.kind,
            "name": cfg.name,
            "key": cfg.key,
            "workflows": list(cfg.workflows),
            "environment": environment,
            "stable": st.stable if st else None,
            "candidate": st.candidate if st else None,
            "fraction": st.fraction if st and st.candidate else 0.0,
            "frozen": freezes.find_freeze(frz, kind=cfg.kind, name=cfg.name, workflows=list(cfg.workflows)) is not None,
            "versions": len(versions),
            "latest": versions[-1] if versions else None,
        })
    return out
