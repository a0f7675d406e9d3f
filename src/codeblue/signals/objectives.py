"""Optional per-workflow objectives from YAML: absolute limits and SLO burn-rate rules, plus the severity
matrix and detector settings. Errors name the file, line and field.

```yaml
severity:                       # failure type → scope (small|medium|large) → SEV1..SEV4
  tool: {small: SEV2, medium: SEV2, large: SEV1}
detector:
  quiet_period: 15m
workflows:
  refund-desk:                  # or "*" for every workflow
    limits:
      - indicator: wrong_entity_rate
        max_count: 0            # any wrong-entity action in the window fires
        window: 5m
        severity: SEV1
    slos:
      - indicator: error_rate
        objective: 99.5%        # good fraction
        burn_rate: 14.4
        long: 1h
        short: 5m
        severity: SEV2
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from codeblue.errors import Invalid
from codeblue.signals.indicators import BY_NAME
from codeblue.signals.triage import DEFAULT_MATRIX, SCOPES, SEVERITIES

MAX_WINDOW_S = 3600.0


@dataclass
class Limit:
    indicator: str
    window_s: float
    severity: str | None
    max_count: int | None = None
    max_rate: float | None = None
    min_requests: int = 20


@dataclass
class SloRule:
    indicator: str
    objective: float
    burn_rate: float
    long_s: float
    short_s: float
    severity: str | None


@dataclass
class Objectives:
    limits: dict[str, list[Limit]] = field(default_factory=dict)
    slos: dict[str, list[SloRule]] = field(default_factory=dict)
    severity: dict[str, dict[str, str]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_MATRIX.items()})
    detector: dict[str, float] = field(default_factory=dict)

    def limits_for(self, workflow: str) -> list[Limit]:
        return self.limits.get(workflow, []) + self.limits.get("*", [])

    def slos_for(self, workflow: str) -> list[SloRule]:
        return self.slos.get(workflow, []) + self.slos.get("*", [])


_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node, where: str, msg: str) -> Invalid:
        return Invalid(f"{self.source}:{node.start_mark.line + 1}: {where}: {msg}", field=where,
                       line=node.start_mark.line + 1)


def _mapping(ctx: _Ctx, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ctx.fail(node, where, "expected a mapping")
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    seen: set[str] = set()
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise ctx.fail(k, where, "keys must be strings")
        if k.value in seen:
            raise ctx.fail(k, f"{where}.{k.value}", "duplicate key")
        seen.add(k.value)
        out.append((str(k.value), k, v))
    return out


def _scalar(ctx: _Ctx, node: yaml.Node, where: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.fail(node, where, "expected a single value")
    return str(node.value)


def _duration(ctx: _Ctx, node: yaml.Node, where: str) -> float:
    m = _DUR.match(_scalar(ctx, node, where))
    if not m:
        raise ctx.fail(node, where, f"{node.value!r} is not a duration (e.g. 30s, 5m, 1h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _number(ctx: _Ctx, node: yaml.Node, where: str, *, lo: float, hi: float, percent_ok: bool = False) -> float:
    raw = _scalar(ctx, node, where).strip()
    try:
        val = float(raw[:-1]) / 100.0 if percent_ok and raw.endswith("%") else float(raw)
    except ValueError:
        raise ctx.fail(node, where, f"{raw!r} is not a number") from None
    if not lo <= val <= hi:
        raise ctx.fail(node, where, f"{raw} is out of range [{lo}, {hi}]")
    return val


def _severity(ctx: _Ctx, node: yaml.Node, where: str) -> str:
    v = _scalar(ctx, node, where).upper()
    if v not in SEVERITIES:
        raise ctx.fail(node, where, f"{node.value!r} is not one of {', '.join(SEVERITIES)}")
    return v


def _indicator(ctx: _Ctx, node: yaml.Node, where: str) -> str:
    v = _scalar(ctx, node, where)
    if v not in BY_NAME:
        raise ctx.fail(node, where, f"unknown indicator {v!r}; one of {', '.join(BY_NAME)}")
    return v


def _rule_fields(ctx: _Ctx, node: yaml.Node, where: str, allowed: set[str], required: set[str]) -> dict[str, yaml.Node]:
    items = _mapping(ctx, node, where)
    got = {}
    for k, kn, v in items:
        if k not in allowed:
            raise ctx.fail(kn, f"{where}.{k}", f"unknown field; allowed: {', '.join(sorted(allowed))}")
        got[k] = v
    missing = required - set(got)
    if missing:
        raise ctx.fail(node, where, f"missing {', '.join(sorted(missing))}")
    return got


def _limit(ctx: _Ctx, node: yaml.Node, where: str) -> Limit:
    f = _rule_fields(ctx, node, where, {"indicator", "window", "severity", "max_count", "max_rate", "min_requests"},
                     {"indicator"})
    ind = _indicator(ctx, f["indicator"], f"{where}.indicator")
    if BY_NAME[ind].percentile and "max_count" in f:
        raise ctx.fail(f["max_count"], f"{where}.max_count", "percentile indicators take max_rate (exceedance share)")
    if ("max_count" in f) == ("max_rate" in f):
        raise ctx.fail(node, where, "give exactly one of max_count or max_rate")
    window = _duration(ctx, f["window"], f"{where}.window") if "window" in f else 300.0
    if not 10.0 <= window <= MAX_WINDOW_S:
        raise ctx.fail(f["window"], f"{where}.window", "must be between 10s and 1h")
    lim = Limit(indicator=ind, window_s=window,
                severity=_severity(ctx, f["severity"], f"{where}.severity") if "severity" in f else None)
    if "max_count" in f:
        lim.max_count = int(_number(ctx, f["max_count"], f"{where}.max_count", lo=0, hi=1e12))
    else:
        lim.max_rate = _number(ctx, f["max_rate"], f"{where}.max_rate", lo=0, hi=1, percent_ok=True)
    if "min_requests" in f:
        lim.min_requests = int(_number(ctx, f["min_requests"], f"{where}.min_requests", lo=1, hi=1e9))
    return lim


def _slo(ctx: _Ctx, node: yaml.Node, where: str) -> SloRule:
    f = _rule_fields(ctx, node, where, {"indicator", "objective", "burn_rate", "long", "short", "severity"},
                     {"indicator", "objective"})
    ind = _indicator(ctx, f["indicator"], f"{where}.indicator")
    obj = _number(ctx, f["objective"], f"{where}.objective", lo=0.5, hi=0.999999, percent_ok=True)
    burn = _number(ctx, f["burn_rate"], f"{where}.burn_rate", lo=1.0, hi=1e6) if "burn_rate" in f else 14.4
    long_s = _duration(ctx, f["long"], f"{where}.long") if "long" in f else 3600.0
    short_s = _duration(ctx, f["short"], f"{where}.short") if "short" in f else long_s / 12
    if not 10.0 <= short_s <= long_s <= MAX_WINDOW_S:
        raise ctx.fail(f.get("long", node), f"{where}.long", "need 10s ≤ short ≤ long ≤ 1h")
    return SloRule(ind, obj, burn, long_s, short_s,
                   _severity(ctx, f["severity"], f"{where}.severity") if "severity" in f else None)


def parse_objectives(text: str, source: str = "detect.yaml") -> Objectives:
    """Parse and validate a detect.yaml document. Raises `Invalid` naming the line and field."""
    ctx = _Ctx(source)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise Invalid(f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}", field="", line=line) from None
    out = Objectives()
    if root is None:
        return out
    for key, kn, val in _mapping(ctx, root, "(top)"):
        if key == "workflows":
            for wf, _wn, body in _mapping(ctx, val, "workflows"):
                for section, sn, rules in _mapping(ctx, body, f"workflows.{wf}"):
                    where = f"workflows.{wf}.{section}"
                    if section not in ("limits", "slos"):
                        raise ctx.fail(sn, where, "unknown section; allowed: limits, slos")
                    if not isinstance(rules, yaml.SequenceNode):
                        raise ctx.fail(rules, where, "expected a list of rules")
                    for n, r in enumerate(rules.value):
                        if section == "limits":
                            out.limits.setdefault(wf, []).append(_limit(ctx, r, f"{where}[{n}]"))
                        else:
                            out.slos.setdefault(wf, []).append(_slo(ctx, r, f"{where}[{n}]"))
        elif key == "severity":
            for ft, fn, row in _mapping(ctx, val, "severity"):
                if ft not in DEFAULT_MATRIX:
                    raise ctx.fail(fn, f"severity.{ft}", f"unknown failure type; one of {', '.join(DEFAULT_MATRIX)}")
                for scope, scn, sev in _mapping(ctx, row, f"severity.{ft}"):
                    if scope not in SCOPES:
                        raise ctx.fail(scn, f"severity.{ft}.{scope}", f"scope is one of {', '.join(SCOPES)}")
                    out.severity[ft][scope] = _severity(ctx, sev, f"severity.{ft}.{scope}")
        elif key == "detector":
            for opt, on, v in _mapping(ctx, val, "detector"):
                where = f"detector.{opt}"
                if opt in ("quiet_period", "group_window", "warmup"):
                    out.detector[opt] = _duration(ctx, v, where)
                elif opt == "alpha":
                    out.detector[opt] = _number(ctx, v, where, lo=1e-15, hi=0.01)
                else:
                    raise ctx.fail(on, where, "unknown option; allowed: quiet_period, group_window, warmup, alpha")
        else:
            raise ctx.fail(kn, key, "unknown section; allowed: workflows, severity, detector")
    return out


def load_objectives(path: str | Path | None = None) -> Objectives:
    """From `path`, else CODEBLUE_DETECT_CONFIG, else defaults."""
    p = path or os.environ.get("CODEBLUE_DETECT_CONFIG")
    if not p:
        return Objectives()
    try:
        text = Path(p).read_text(encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"cannot read detector config {p}: {exc.strerror}", field="detect_config") from None
    return parse_objectives(text, str(p))

