"""The on-call map as data: schedules, overrides, escalation policies and the role rule.

The same Pydantic models validate the HTTP bodies and the YAML file named by ``Settings.oncall_config``;
errors from the file name the line they come from.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from codeblue.errors import Invalid
from codeblue.oncall.rotation import DAY, WEEKDAYS, Layer, Restriction

DOMAINS = ("infra", "feature", "risk", "ops")
#: The incident roles (the incidents seam, docs/architecture.md).
INCIDENT_ROLES = (
    "incident_lead", "technical_lead", "communications_lead", "support_liaison",
    "infra_owner", "feature_owner", "risk_owner", "ops_owner",
)
FAILURE_TYPES = ("answer_quality", "account_action", "tool", "retrieval", "policy_refusal", "availability", "other")
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HHMM_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
LENGTH_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
SELECTOR_HELP = "a domain (infra, feature, risk, ops), 'schedule:<name>' or 'person:<handle>'"


def parse_hhmm(v: Any) -> str:
    """'09:00' → '09:00'. YAML 1.1 reads an unquoted 17:00 as the integer 1020 (minutes); accept that too."""
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 24 * 60:
        return f"{v // 60:02d}:{v % 60:02d}"
    if isinstance(v, str) and (m := HHMM_RE.match(v.strip())):
        return f"{int(m.group(1)):02d}:{m.group(2)}"
    shown = f"{v // 60}:{v % 60:02d}" if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else repr(v)
    raise ValueError(f"{shown} is not a time of day; use HH:MM between 00:00 and 23:59, e.g. '09:00'")


def to_time(hhmm: str) -> time:
    h, m = hhmm.split(":")
    return time(int(h), int(m))


def parse_length(v: str) -> float:
    """'12h', '3d', '2w', '90m' → seconds."""
    m = LENGTH_RE.match(v.strip())
    if not m:
        raise ValueError(f"{v!r} is not a length; use a number with m, h, d or w, e.g. '12h' or '3d'")
    seconds = float(m.group(1)) * {"m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}[m.group(2)]
    if seconds < 3600:
        raise ValueError(f"{v!r} is shorter than one hour")
    return seconds


def parse_instant(v: Any) -> float:
    """Unix seconds, or an RFC 3339 / ISO 8601 date-time (naive means UTC)."""
    if isinstance(v, bool):
        raise ValueError("expected a time")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, date):
        dt = datetime(v.year, v.month, v.day)
    elif isinstance(v, str):
        text = v.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a time; use unix seconds or ISO 8601, e.g. 2026-03-08T09:00:00-05:00") from exc
    else:
        raise ValueError(f"{v!r} is not a time")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def check_selector(v: str) -> str:
    v = v.strip()
    if v in DOMAINS:
        return v
    kind, _, rest = v.partition(":")
    if kind in ("schedule", "person") and rest.strip():
        return f"{kind}:{rest.strip()}"
    raise ValueError(f"{v!r} is not a target; use {SELECTOR_HELP}")


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def check_name(v: str, what: str) -> str:
    if not NAME_RE.match(v) or v.isdigit():
        raise ValueError(f"{v!r} is not a {what} name; use lowercase letters, digits, '.', '_' or '-' (max 64), "
                         "not digits alone (those are ids)")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RestrictionIn(_Strict):
    """A local time window on some weekdays inside which the layer is on call."""

    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))
    start: str
    end: str

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, v: Any) -> str:
        return parse_hhmm(v)


class LayerIn(_Strict):
    name: str = Field(default="", max_length=64)
    rotation: Literal["daily", "weekly", "custom"] = "weekly"
    length: str | None = Field(default=None, description="custom rotations: '12h', '3d', '2w'")
    handoff: str = Field(default="09:00", description="local time of the hand-off (HH:MM)")
    start: date = Field(description="local date of the first hand-off; weekly rotations hand off on its weekday")
    until: float | None = Field(default=None, description="the layer ends at this time (unix seconds or ISO 8601)")
    members: list[str] = Field(min_length=1, max_length=200)
    restrict: list[RestrictionIn] = Field(default_factory=list)

    @field_validator("handoff", mode="before")
    @classmethod
    def _hhmm(cls, v: Any) -> str:
        return parse_hhmm(v)

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, v: Any) -> float | None:
        return None if v is None else parse_instant(v)

    @field_validator("members")
    @classmethod
    def _members(cls, v: list[str]) -> list[str]:
        for i, h in enumerate(v):
            if not isinstance(h, str) or not h.strip() or len(h) > 64:
                raise ValueError(f"member {i} must be a person handle of 1–64 characters")
        return [h.strip() for h in v]

    @model_validator(mode="after")
    def _length(self) -> LayerIn:
        if self.rotation == "custom":
            if not self.length:
                raise ValueError("a custom rotation needs length, e.g. '3d' or '12h'")
            parse_length(self.length)
        elif self.length is not None:
            raise ValueError(f"length applies only to custom rotations; a {self.rotation} rotation has a fixed length")
        return self


class ScheduleIn(_Strict):
    name: str = Field(description="unique; lowercase letters, digits, '.', '_' or '-'")
    domain: Literal["infra", "feature", "risk", "ops"] | None = None
    workflow: str | None = Field(default=None, max_length=200, description="the workflow this schedule owns")
    timezone: str = "UTC"
    description: str = Field(default="", max_length=2000)
    layers: list[LayerIn] = Field(min_length=1, max_length=20)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "schedule")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)") from exc
        return v

    @model_validator(mode="after")
    def _owner(self) -> ScheduleIn:
        if self.domain is None:
            if self.workflow is None:
                raise ValueError("a schedule needs a domain (infra, feature, risk, ops), a workflow, or both")
            self.domain = "feature"  # a workflow owner answers "is behaviour correct?"
        for i, layer in enumerate(self.layers):
            if not layer.name:
                layer.name = f"layer {i + 1}"
        return self


class OverrideIn(_Strict):
    handle: str = Field(min_length=1, max_length=64)
    start: float
    end: float
    reason: str = Field(default="", max_length=500)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _instant(cls, v: Any) -> float:
        return parse_instant(v)

    @model_validator(mode="after")
    def _order(self) -> OverrideIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class LevelIn(_Strict):
    target: str = Field(description=SELECTOR_HELP)
    timeout_minutes: float = Field(gt=0, le=24 * 60)

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        return check_selector(v)


class MatchIn(_Strict):
    """Which incidents a policy covers; an empty list matches anything."""

    workflows: list[str] = Field(default_factory=list)
    failure_types: list[Literal[FAILURE_TYPES]] = Field(default_factory=list)  # type: ignore[valid-type]
    severities: list[Literal[SEVERITIES]] = Field(default_factory=list)  # type: ignore[valid-type]

    def matches(self, incident: dict[str, Any]) -> bool:
        if self.workflows and not set(self.workflows) & set(incident.get("workflows") or []):
            return False
        if self.failure_types and incident.get("failure_type") not in self.failure_types:
            return False
        return not (self.severities and incident.get("severity") not in self.severities)


class PolicyIn(_Strict):
    name: str
    match: MatchIn = Field(default_factory=MatchIn)
    repeat: int = Field(default=0, ge=0, le=20, description="how many more times to run through the levels")
    levels: list[LevelIn] = Field(min_length=1, max_length=20)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "policy")


class RoleRuleIn(_Strict):
    role: Literal[INCIDENT_ROLES]  # type: ignore[valid-type]
    #: Targets tried in order; the first with someone on call fills the role.
    from_: list[str] = Field(alias="from", min_length=1)
    when: MatchIn = Field(default_factory=MatchIn)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("from_")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        return [check_selector(x) for x in v]


DEFAULT_ROLE_RULES: list[dict[str, Any]] = [
    {"role": "incident_lead", "from": ["feature"]},
    {"role": "technical_lead", "from": ["infra"]},
    {"role": "communications_lead", "from": ["schedule:ops-rota", "ops"]},
    {"role": "support_liaison", "from": ["ops"]},
    {"role": "risk_owner", "from": ["risk"], "when": {"failure_types": ["account_action", "policy_refusal"]}},
]


def default_rules() -> list[RoleRuleIn]:
    return [RoleRuleIn.model_validate(r) for r in DEFAULT_ROLE_RULES]


class PersonIn(_Strict):
    handle: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)


class OncallConfig(_Strict):
    people: list[PersonIn] = Field(default_factory=list)
    schedules: list[ScheduleIn] = Field(default_factory=list)
    policies: list[PolicyIn] = Field(default_factory=list)
    roles: list[RoleRuleIn] | None = None
    _lines: dict[tuple[Any, ...], int] = PrivateAttr(default_factory=dict)
    _source: str = PrivateAttr(default="<oncall config>")

    def where(self, *path: Any) -> str:
        """'file:line' of a path in the file this config came from (for errors found after parsing)."""
        line = _line_for(path, self._lines)
        return f"{self._source}:{line}" if line else self._source

    @model_validator(mode="after")
    def _unique(self) -> OncallConfig:
        for what, names in (("schedules", [s.name for s in self.schedules]), ("policies", [p.name for p in self.policies])):
            seen: set[str] = set()
            for n in names:
                if n in seen:
                    raise ValueError(f"{what}: the name {n!r} is used twice")
                seen.add(n)
        return self


# ----- building rotation dataclasses --------------------------------------------------------------------


def build_layers(layers: list[dict[str, Any]]) -> list[Layer]:
    """Stored layer dicts → rotation layers (cached by content: schedules are read far more than written)."""
    return list(_compiled(orjson.dumps(layers, option=orjson.OPT_SORT_KEYS)))


@functools.lru_cache(maxsize=4096)
def _compiled(key: bytes) -> tuple[Layer, ...]:
    layers: list[dict[str, Any]] = orjson.loads(key)
    out: list[Layer] = []
    for raw in layers:
        li = LayerIn.model_validate(raw)
        if li.rotation == "daily":
            days: int | None = 1
            secs: float | None = None
        elif li.rotation == "weekly":
            days, secs = 7, None
        else:
            assert li.length is not None
            seconds = parse_length(li.length)
            days, secs = (int(seconds // DAY), None) if seconds % DAY == 0 else (None, seconds)
        out.append(
            Layer(
                name=li.name,
                members=tuple(li.members),
                start=li.start,
                handoff=to_time(li.handoff),
                length_days=days,
                length_s=secs,
                restrictions=tuple(
                    Restriction(frozenset(WEEKDAYS.index(d) for d in r.days), to_time(r.start), to_time(r.end))
                    for r in li.restrict
                ),
                until=li.until,
            )
        )
    return tuple(out)


# ----- the YAML file ------------------------------------------------------------------------------------


def _index_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*path, k)] = key.start_mark.line + 1
            _index_lines(value, (*path, k), out)
            out[(*path, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), out)


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    loc = tuple("from" if p == "from_" else p for p in loc)
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _field_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not str(p).startswith(("function-", "literal[")) and p not in ("from_",):
            out += f".{p}" if out else str(p)
        elif p == "from_":
            out += ".from" if out else "from"
    return out


def parse_config(text: str, source: str = "<oncall config>") -> OncallConfig:
    """Parse and validate the YAML on-call map; raise Invalid naming the line and field of the first error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise Invalid(f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}", field="yaml", line=line) from exc
    if data is None:
        return OncallConfig()
    if not isinstance(data, dict) or node is None:
        raise Invalid(f"{source}:1: the on-call config must be a mapping with people, schedules, policies, roles",
                      field="yaml", line=1)
    lines: dict[tuple[Any, ...], int] = {}
    _index_lines(node, (), lines)
    try:
        cfg = OncallConfig.model_validate(data)
        cfg._lines = lines
        cfg._source = source
        return cfg
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
            line = _line_for(loc, lines)
            msg = e["msg"].removeprefix("Value error, ")
            errors.append({"line": line, "field": _field_name(loc), "message": msg})
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Invalid(
            f"{source}:{first['line']}: {first['field'] or 'config'}: {first['message']}{more}",
            field=str(first["field"]) or None, line=first["line"], errors=errors,
        ) from exc


def load_config_file(path: Path) -> OncallConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"cannot read the on-call config {path}: {exc.strerror}", field="oncall_config") from exc
    return parse_config(text, str(path))
