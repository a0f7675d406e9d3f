"""The comms configuration (``Settings.comms_config``, YAML): channels, where each audience's updates go,
the cadence policy per severity, reminders, and the status page's components.

Every value has a default, so a server with no file still computes cadence and serves a status page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codeblue.comms.model import AUDIENCES
from codeblue.errors import Invalid

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
#: What can start a cadence item: the incident opening, one of its milestones, or scope+ETA both known.
TRIGGERS = ("opened", "acknowledged", "impact_confirmed", "mitigation_chosen", "contained", "mitigated",
            "scope_and_eta")


@dataclass(frozen=True)
class ItemPolicy:
    """One audience's schedule: first due `within` seconds after `after`; then every `every` seconds (if set)."""

    audience: str
    after: str
    within: float
    every: float | None = None


@dataclass(frozen=True)
class Component:
    workflow: str
    name: str
    description: str = ""


@dataclass
class CommsConfig:
    channels: list[dict[str, Any]] = field(default_factory=list)
    audiences: dict[str, list[str]] = field(default_factory=dict)
    recipients: dict[str, list[str]] = field(default_factory=dict)
    policy: dict[str, dict[str, ItemPolicy]] = field(default_factory=dict)
    reminder_channel: str = "email"
    reminder_to: list[str] = field(default_factory=list)
    escalate_after: float = 300.0
    page_title: str = "Service status"
    status_url: str = ""
    components: list[Component] = field(default_factory=list)
    history_days: float = 14.0

    def items_for(self, severity: str) -> list[ItemPolicy]:
        pol = self.policy.get(severity) or self.policy["default"]
        return [pol[a] for a in AUDIENCES if a in pol]


DEFAULT_POLICY: dict[str, ItemPolicy] = {
    "internal": ItemPolicy("internal", "opened", 600.0, 600.0),
    "status_page": ItemPolicy("status_page", "impact_confirmed", 600.0, 1800.0),
    "support": ItemPolicy("support", "mitigation_chosen", 900.0, None),
    "executive": ItemPolicy("executive", "scope_and_eta", 900.0, None),
}


def duration(value: Any, where: str) -> float:
    """'90s', '10m', '2h', or a number of seconds."""
    if isinstance(value, bool):
        raise Invalid("expected a duration like 90s, 10m, 2h", field=where)
    if isinstance(value, int | float):
        if value <= 0:
            raise Invalid("a duration must be > 0", field=where)
        return float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        try:
            secs = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
        except (ValueError, KeyError):
            secs = -1.0
        if secs > 0:
            return secs
    raise Invalid(f"{value!r} is not a duration (e.g. 90s, 10m, 2h)", field=where)


def _item(audience: str, raw: Any, base: ItemPolicy | None, where: str) -> ItemPolicy:
    if not isinstance(raw, dict):
        raise Invalid("a cadence item must be a mapping with after/within/every", field=where)
    for key in raw:
        if key not in ("after", "within", "every"):
            raise Invalid(f"unknown key {key!r}; allowed: after, within, every", field=f"{where}.{key}")
    after = raw.get("after", base.after if base else "opened")
    if after not in TRIGGERS:
        raise Invalid(f"after must be one of {', '.join(TRIGGERS)}", field=f"{where}.after")
    every = base.every if base else None
    if "every" in raw:
        every = None if raw["every"] in (None, "never") else duration(raw["every"], f"{where}.every")
    if "within" in raw:
        within = duration(raw["within"], f"{where}.within")
    elif "every" in raw and every is not None and (base is None or base.within == base.every):
        within = every  # a recurring item whose first one was due one interval in keeps that shape
    else:
        within = base.within if base else (every or 600.0)
    return ItemPolicy(audience, after, within, every)


def _policy_block(raw: Any, base: dict[str, ItemPolicy], where: str) -> dict[str, ItemPolicy]:
    if not isinstance(raw, dict):
        raise Invalid("expected a mapping of audience → schedule", field=where)
    out = dict(base)
    for audience, item in raw.items():
        if audience not in AUDIENCES:
            raise Invalid(f"unknown audience {audience!r}; allowed: {', '.join(AUDIENCES)}", field=f"{where}.{audience}")
        if item in (None, False, "off"):
            out.pop(audience, None)
            continue
        out[audience] = _item(audience, item, base.get(audience), f"{where}.{audience}")
    return out


def parse_config(raw: Any, *, where: str = "comms") -> CommsConfig:
    """Validate a comms configuration mapping; errors name the offending key path."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Invalid("the comms configuration must be a mapping", field=where)
    known = ("channels", "audiences", "recipients", "cadence", "reminders", "status_page")
    for key in raw:
        if key not in known:
            raise Invalid(f"unknown key {key!r}; allowed: {', '.join(known)}", field=f"{where}.{key}")
    cfg = CommsConfig()
    channels = raw.get("channels") or []
    if not isinstance(channels, list):
        raise Invalid("channels must be a list", field=f"{where}.channels")
    cfg.channels = channels
    for name in ("audiences", "recipients"):
        block = raw.get(name) or {}
        if not isinstance(block, dict):
            raise Invalid(f"{name} must map audiences to lists", field=f"{where}.{name}")
        parsed: dict[str, list[str]] = {}
        for audience, values in block.items():
            if audience not in AUDIENCES:
                raise Invalid(f"unknown audience {audience!r}; allowed: {', '.join(AUDIENCES)}",
                              field=f"{where}.{name}.{audience}")
            values = [values] if isinstance(values, str) else values
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise Invalid("expected a list of names", field=f"{where}.{name}.{audience}")
            parsed[audience] = values
        setattr(cfg, name, parsed)
    cadence = raw.get("cadence") or {}
    if not isinstance(cadence, dict):
        raise Invalid("cadence must map 'default' and severities to schedules", field=f"{where}.cadence")
    default = _policy_block(cadence.get("default", {}), DEFAULT_POLICY, f"{where}.cadence.default")
    cfg.policy = {"default": default}
    for sev, block in cadence.items():
        if sev == "default":
            continue
        if sev not in SEVERITIES:
            raise Invalid(f"unknown severity {sev!r}; allowed: default, {', '.join(SEVERITIES)}",
                          field=f"{where}.cadence.{sev}")
        cfg.policy[sev] = _policy_block(block, default, f"{where}.cadence.{sev}")
    rem = raw.get("reminders") or {}
    if not isinstance(rem, dict):
        raise Invalid("reminders must be a mapping", field=f"{where}.reminders")
    cfg.reminder_channel = str(rem.get("channel", cfg.reminder_channel))
    to = rem.get("to", [])
    cfg.reminder_to = [to] if isinstance(to, str) else list(to)
    if "escalate_after" in rem:
        cfg.escalate_after = duration(rem["escalate_after"], f"{where}.reminders.escalate_after")
    page = raw.get("status_page") or {}
    if not isinstance(page, dict):
        raise Invalid("status_page must be a mapping", field=f"{where}.status_page")
    cfg.page_title = str(page.get("title", cfg.page_title))
    cfg.status_url = str(page.get("url", ""))
    if "history_days" in page:
        cfg.history_days = duration(page["history_days"], f"{where}.status_page.history_days")
    comps = page.get("components") or []
    if not isinstance(comps, list):
        raise Invalid("components must be a list", field=f"{where}.status_page.components")
    for i, c in enumerate(comps):
        if isinstance(c, str):
            c = {"workflow": c}
        if not isinstance(c, dict) or not isinstance(c.get("workflow"), str):
            raise Invalid("a component needs a workflow", field=f"{where}.status_page.components[{i}].workflow")
        cfg.components.append(Component(c["workflow"], str(c.get("name") or c["workflow"]),
                                        str(c.get("description") or "")))
    return cfg


def load_config(path: Path | None) -> CommsConfig:
    if path is None:
        return parse_config({})
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise Invalid(f"{path}:{line} is not valid YAML: {exc}", field=str(path)) from exc
    return parse_config(raw, where=str(path))
