"""Compile a controls snapshot into an index and evaluate requests against it, without I/O.

The snapshot format is public (docs/architecture.md). A compiled `Index` is immutable: the Guard builds a new
one for every revision and swaps it in atomically, so a reader never sees half an update. Evaluation is pure:
the same index and the same arguments give the same `Decision`, which is what lets the Guard memoise it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from codeblue.sdk.bucket import admitted, serves_candidate
from codeblue.sdk.decision import ConfigValue, Decision

SCOPE_FIELDS = ("workflow", "action", "tool", "dependency", "segment", "tenant")
FALLBACKS = ("backup_model", "human_queue", "static_answer")
#: Control types that can restrict a request. `rollout_freeze` only stops config changes on the server.
RESTRICTIVE = ("kill_switch", "breaker", "fallback", "tool_disable", "traffic")
#: A `breaker` control in `half_open` admits this share of requests (by key) unless its params say otherwise.
HALF_OPEN_ADMIT = 0.1

Request = tuple[str, str | None, str | None, str | None, str | None, str | None]


class SnapshotError(ValueError):
    """The snapshot (or a patch) does not have the documented shape; says where."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One restrictive control, compiled."""

    id: int
    type: str
    scope: tuple[str | None, ...]  # per SCOPE_FIELDS; None means "*"
    specificity: int
    fallback: str | None
    target: str | None
    reason: str
    incident_id: int | None
    admit: float | None  # None: blocks whatever the key; else admits this share of keys
    expires_at: float | None
    needs: int  # index of a scope field the request must set (tool for tool_disable, dependency for breaker), or -1

    def applies(self, req: Request) -> bool:
        if self.needs >= 0 and req[self.needs] is None:
            return False
        return all(want is None or want == have for want, have in zip(self.scope, req, strict=True))

    def sort_key(self) -> tuple[int, int]:
        return (-self.specificity, self.id)


@dataclass(frozen=True, slots=True)
class Config:
    """One named config: its stable version, an optional candidate rolling out at `fraction`, and content."""

    kind: str
    name: str
    stable: str | None
    candidate: str | None
    fraction: float
    workflows: tuple[str, ...]
    content: Mapping[str, Any]

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def rolling(self) -> bool:
        return self.candidate is not None and self.fraction > 0.0

    def version_for(self, key: str | None) -> tuple[str | None, bool]:
        if self.candidate is not None and self.fraction > 0.0 and serves_candidate(
            self.kind, self.name, self.fraction, key
        ):
            return self.candidate, True
        return self.stable, False


@dataclass(frozen=True)
class Index:
    """A compiled snapshot: rules bucketed by (workflow, action) for O(1) candidate lookup, and configs."""

    revision: int
    environment: str
    generated_at: float
    source: str
    rules: tuple[Rule, ...]
    by_scope: Mapping[tuple[str | None, str | None], tuple[Rule, ...]]
    configs: Mapping[str, Config]
    configs_by_workflow: Mapping[str, tuple[Config, ...]]
    static_versions: Mapping[str, Mapping[str, str]]  # workflow → versions, for workflows with nothing rolling
    next_expiry: float
    raw: Mapping[str, Any] = field(repr=False)

    def candidates(self, workflow: str, action: str | None) -> list[Rule]:
        """Every rule whose workflow and action scope can match, most specific first."""
        get = self.by_scope.get
        keys: tuple[tuple[str | None, str | None], ...]
        if action is None:
            keys = ((workflow, None), (None, None))
        else:
            keys = ((workflow, action), (workflow, None), (None, action), (None, None))
        found: list[Rule] = []
        for k in keys:
            rules = get(k)
            if rules:
                found.extend(rules)
        found.sort(key=Rule.sort_key)
        return found


# ----- compiling ----------------------------------------------------------------------------------------


def _scope_value(scope: Mapping[str, Any], name: str, where: str) -> str | None:
    val = scope.get(name, "*")
    if val is None or val == "*":
        return None
    if not isinstance(val, str):
        raise SnapshotError(f"{where}.scope.{name}: expected a string or '*', got {type(val).__name__}")
    return val


def _opt_str(params: Mapping[str, Any], name: str, where: str) -> str | None:
    val = params.get(name)
    if val is None:
        return None
    if not isinstance(val, str):
        raise SnapshotError(f"{where}.params.{name}: expected a string, got {type(val).__name__}")
    return val


def _fraction(val: Any, where: str) -> float:
    if isinstance(val, bool) or not isinstance(val, int | float) or not 0.0 <= float(val) <= 1.0:
        raise SnapshotError(f"{where}: expected a number between 0 and 1, got {val!r}")
    return float(val)


def compile_rule(ctl: Mapping[str, Any], where: str = "control") -> Rule | None:
    """A restrictive Rule for one control dict, or None when the control cannot restrict a request."""
    if not isinstance(ctl, Mapping):
        raise SnapshotError(f"{where}: expected an object")
    cid = ctl.get("id")
    if isinstance(cid, bool) or not isinstance(cid, int):
        raise SnapshotError(f"{where}.id: expected an integer")
    where = f"{where} {cid}"
    ctype = ctl.get("type")
    if not isinstance(ctype, str):
        raise SnapshotError(f"{where}.type: expected a string")
    if ctype not in RESTRICTIVE:
        return None
    scope = ctl.get("scope") or {}
    params = ctl.get("params") or {}
    if not isinstance(scope, Mapping) or not isinstance(params, Mapping):
        raise SnapshotError(f"{where}: scope and params must be objects")
    values = tuple(_scope_value(scope, f, where) for f in SCOPE_FIELDS)
    admit: float | None = None
    needs = -1
    if ctype == "breaker":
        state = params.get("state", "open")
        if state == "closed":
            return None
        if state == "half_open":
            admit = _fraction(params.get("admit", HALF_OPEN_ADMIT), f"{where}.params.admit")
        elif state != "open":
            raise SnapshotError(f"{where}.params.state: expected open, half_open or closed, got {state!r}")
        needs = SCOPE_FIELDS.index("dependency")
    elif ctype == "tool_disable":
        needs = SCOPE_FIELDS.index("tool")
    elif ctype == "traffic":
        admit = _fraction(params.get("admit", 0.0), f"{where}.params.admit")
        if admit >= 1.0:
            return None  # admits everyone: restricts nothing
    fallback = _opt_str(params, "fallback", where)
    expires = ctl.get("expires_at")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
        raise SnapshotError(f"{where}.expires_at: expected a number or null")
    incident = ctl.get("incident_id")
    reason = ctl.get("reason")
    return Rule(
        id=cid,
        type=ctype,
        scope=values,
        specificity=sum(v is not None for v in values),
        fallback=fallback,
        target=_opt_str(params, "target", where),
        reason=reason if isinstance(reason, str) and reason else f"{ctype} #{cid}",
        incident_id=incident if isinstance(incident, int) and not isinstance(incident, bool) else None,
        admit=admit,
        expires_at=float(expires) if expires is not None else None,
        needs=needs,
    )


def compile_config(ident: str, cfg: Mapping[str, Any]) -> Config:
    where = f"configs[{ident!r}]"
    if not isinstance(cfg, Mapping):
        raise SnapshotError(f"{where}: expected an object")
    kind, _, name = ident.partition("/")
    kind = cfg.get("kind", kind)
    name = cfg.get("name", name)
    if not isinstance(kind, str) or not isinstance(name, str) or not kind or not name:
        raise SnapshotError(f"{where}: kind and name must be non-empty strings")
    stable = cfg.get("stable")
    candidate = cfg.get("candidate")
    for label, v in (("stable", stable), ("candidate", candidate)):
        if v is not None and not isinstance(v, str):
            raise SnapshotError(f"{where}.{label}: expected a version string or null")
    fraction = _fraction(cfg.get("fraction", 0.0) if cfg.get("fraction") is not None else 0.0, f"{where}.fraction")
    workflows = cfg.get("workflows") or []
    if not isinstance(workflows, list) or not all(isinstance(w, str) for w in workflows):
        raise SnapshotError(f"{where}.workflows: expected a list of strings")
    content = cfg.get("content") or {}
    if not isinstance(content, Mapping):
        raise SnapshotError(f"{where}.content: expected an object of version → content")
    return Config(kind, name, stable, candidate, fraction, tuple(workflows), dict(content))


def compile_snapshot(snap: Mapping[str, Any], *, source: str, now: float) -> Index:
    """Build the Index for a snapshot dict; controls already expired at `now` are left out."""
    if not isinstance(snap, Mapping):
        raise SnapshotError("snapshot: expected an object")
    rev = snap.get("revision")
    if isinstance(rev, bool) or not isinstance(rev, int) or rev < 0:
        raise SnapshotError("snapshot.revision: expected a non-negative integer")
    controls = snap.get("controls") or []
    if not isinstance(controls, list):
        raise SnapshotError("snapshot.controls: expected a list")
    configs_raw = snap.get("configs") or {}
    if not isinstance(configs_raw, Mapping):
        raise SnapshotError("snapshot.configs: expected an object")

    rules: list[Rule] = []
    next_expiry = math.inf
    for i, ctl in enumerate(controls):
        rule = compile_rule(ctl, f"snapshot.controls[{i}]")
        if rule is None:
            continue
        if rule.expires_at is not None:
            if rule.expires_at <= now:
                continue
            next_expiry = min(next_expiry, rule.expires_at)
        rules.append(rule)
    rules.sort(key=Rule.sort_key)
    buckets: dict[tuple[str | None, str | None], list[Rule]] = {}
    for r in rules:
        buckets.setdefault((r.scope[0], r.scope[1]), []).append(r)

    configs = {ident: compile_config(ident, c) for ident, c in configs_raw.items() if c is not None}
    by_wf: dict[str, list[Config]] = {}
    for c in configs.values():
        for w in c.workflows:
            by_wf.setdefault(w, []).append(c)
    static_versions: dict[str, dict[str, str]] = {}
    for w, cs in by_wf.items():
        if not any(c.rolling for c in cs):
            static_versions[w] = {c.ident: c.stable for c in cs if c.stable is not None}
    env = snap.get("environment")
    gen = snap.get("generated_at")
    return Index(
        revision=rev,
        environment=env if isinstance(env, str) else "",
        generated_at=float(gen) if isinstance(gen, int | float) and not isinstance(gen, bool) else now,
        source=source,
        rules=tuple(rules),
        by_scope={k: tuple(v) for k, v in buckets.items()},
        configs=configs,
        configs_by_workflow={w: tuple(cs) for w, cs in by_wf.items()},
        static_versions=static_versions,
        next_expiry=next_expiry,
        raw=snap,
    )


def apply_patch(snap: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot dict that results from applying one `patch` message (revision checks are the caller's)."""
    if not isinstance(patch, Mapping):
        raise SnapshotError("patch: expected an object")
    rev = patch.get("revision")
    if isinstance(rev, bool) or not isinstance(rev, int):
        raise SnapshotError("patch.revision: expected an integer")
    controls = {c["id"]: c for c in snap.get("controls") or [] if isinstance(c, Mapping) and "id" in c}
    upserts = patch.get("controls_upsert") or []
    removes = patch.get("controls_remove") or []
    if not isinstance(upserts, list) or not isinstance(removes, list):
        raise SnapshotError("patch: controls_upsert and controls_remove must be lists")
    for i, c in enumerate(upserts):
        if not isinstance(c, Mapping) or isinstance(c.get("id"), bool) or not isinstance(c.get("id"), int):
            raise SnapshotError(f"patch.controls_upsert[{i}].id: expected an integer")
        controls[c["id"]] = dict(c)
    for cid in removes:
        controls.pop(cid, None)
    configs = dict(snap.get("configs") or {})
    patch_configs = patch.get("configs") or {}
    if not isinstance(patch_configs, Mapping):
        raise SnapshotError("patch.configs: expected an object")
    for ident, cfg in patch_configs.items():
        if cfg is None:
            configs.pop(ident, None)
        else:
            configs[ident] = cfg
    out = dict(snap)
    out["revision"] = rev
    out["controls"] = sorted(controls.values(), key=lambda c: int(c["id"]))
    out["configs"] = configs
    if "generated_at" in patch:
        out["generated_at"] = patch["generated_at"]
    return out


# ----- evaluating ---------------------------------------------------------------------------------------


def _blocked(rules: Iterable[Rule], revision: int, source: str) -> Decision | None:
    """The decision for a set of blocking rules already sorted most specific first (None if empty)."""
    it = iter(rules)
    top = next(it, None)
    if top is None:
        return None
    fallback, target = top.fallback, top.target
    if fallback is None:
        for r in it:
            if r.fallback is not None:
                fallback, target = r.fallback, r.target
                break
    return Decision(
        allowed=False, fallback=fallback, target=target, reason=top.reason, control_id=top.id,
        incident_id=top.incident_id, revision=revision, control_type=top.type, source=source,
    )


class Keyed:
    """A decision that depends on the request key (a `traffic` control or a half-open breaker applies)."""

    __slots__ = ("_cache", "fixed", "keyed", "revision", "source")

    MAX_KEYS = 4096

    def __init__(self, fixed: list[Rule], keyed: list[Rule], revision: int, source: str) -> None:
        self.fixed = fixed
        self.keyed = keyed
        self.revision = revision
        self.source = source
        self._cache: dict[str | None, Decision] = {}

    def for_key(self, key: str | None) -> Decision:
        d = self._cache.get(key)
        if d is not None:
            return d
        blocking = list(self.fixed)
        for r in self.keyed:
            assert r.admit is not None
            if not admitted(r.id, r.admit, key):
                blocking.append(r)
        blocking.sort(key=Rule.sort_key)
        d = _blocked(blocking, self.revision, self.source)
        if d is None:
            d = allowed_decision(self.revision, self.source)
        if len(self._cache) >= self.MAX_KEYS:
            self._cache = {}
        self._cache[key] = d
        return d


_ALLOWED: dict[tuple[int, str], Decision] = {}


def allowed_decision(revision: int, source: str) -> Decision:
    d = _ALLOWED.get((revision, source))
    if d is None:
        if len(_ALLOWED) > 256:
            _ALLOWED.clear()
        d = _ALLOWED[(revision, source)] = Decision(True, revision=revision, source=source)
    return d


def evaluate(index: Index, req: Request) -> Decision | Keyed:
    """The decision for `req` over `index`: a Decision when it does not depend on the key, else a Keyed."""
    source = "lkg" if index.source == "lkg" else "snapshot"
    fixed: list[Rule] = []
    keyed: list[Rule] = []
    for r in index.candidates(req[0], req[1]):
        if r.applies(req):
            (fixed if r.admit is None else keyed).append(r)
    if keyed and fixed:
        # If the most specific fixed block outranks every keyed rule, the key cannot change the answer.
        top = fixed[0]
        if (top.fallback is not None or all(k.fallback is None for k in keyed)) and all(
            top.sort_key() < k.sort_key() for k in keyed
        ):
            keyed = []
    if keyed:
        return Keyed(fixed, keyed, index.revision, source)
    blocked = _blocked(fixed, index.revision, source)
    return blocked if blocked is not None else allowed_decision(index.revision, source)


def versions_for(index: Index, workflow: str, key: str | None) -> dict[str, str]:
    """`{"<kind>/<name>": version}` for every config used by `workflow`, as served to `key`."""
    static = index.static_versions.get(workflow)
    if static is not None:
        return dict(static)
    out: dict[str, str] = {}
    for c in index.configs_by_workflow.get(workflow, ()):
        v, _ = c.version_for(key)
        if v is not None:
            out[c.ident] = v
    return out


def config_for(index: Index, kind: str, name: str, key: str | None) -> ConfigValue | None:
    c = index.configs.get(f"{kind}/{name}")
    if c is None:
        return None
    version, cand = c.version_for(key)
    if version is None:
        return None
    return ConfigValue(kind, name, version, c.content.get(version), cand, index.revision)


def dumps(obj: Any) -> str:
    """Compact JSON, the way the SDK writes files and request bodies."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
