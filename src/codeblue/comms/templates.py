"""Jinja2 templates per audience, and the facts each audience's update must state.

A user-facing update (status page, support brief) must say what feature is affected, what safe alternatives
remain, what the team is doing and where to check status; an executive brief must give scope, ETA and
actions. A missing fact is refused, naming it — never rendered as a blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from codeblue.comms.model import AUDIENCES
from codeblue.errors import Invalid

HERE = Path(__file__).parent / "templates"

#: audience → (fact, what it means) in the order a reader needs them.
REQUIRED_FACTS: dict[str, tuple[tuple[str, str], ...]] = {
    "internal": (("summary", "what is known so far"),),
    "status_page": (
        ("feature", "the affected feature"),
        ("alternatives", "the safe alternatives that remain"),
        ("actions", "what the team is doing"),
        ("status_url", "where to check status"),
    ),
    "support": (
        ("feature", "the affected feature"),
        ("alternatives", "the safe alternatives that remain"),
        ("actions", "what the team is doing"),
        ("status_url", "where to check status"),
    ),
    "executive": (
        ("impact", "the scope of impact"),
        ("eta", "the expected time to mitigation"),
        ("actions", "what the team is doing"),
    ),
}
LABELS = {
    "internal": "internal update",
    "status_page": "status page update",
    "support": "support brief",
    "executive": "executive brief",
}
PUBLIC_STATUSES = ("investigating", "identified", "monitoring", "resolved")
COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance")
MAX_FACT = 4000

_text_env = Environment(loader=FileSystemLoader(HERE), undefined=StrictUndefined, autoescape=False,
                        trim_blocks=False, keep_trailing_newline=False)
_markup_env = Environment(loader=FileSystemLoader(HERE), undefined=StrictUndefined,
                          autoescape=select_autoescape(["html", "xml", "j2"]))


def _fact_text(value: Any, field: str) -> str:
    if isinstance(value, list):
        items = [_fact_text(v, f"{field}[{i}]") for i, v in enumerate(value)]
        return "; ".join(items)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid("a fact must be text (or a list of texts)", field=field)
    text = str(value).strip()
    if len(text) > MAX_FACT:
        raise Invalid(f"a fact may be at most {MAX_FACT} characters", field=field)
    return text


def check_facts(audience: str, facts: dict[str, Any], *, text: str = "", defaults: dict[str, str] | None = None
                ) -> dict[str, str]:
    """Normalise the facts of an update and refuse it when a required one is missing or empty."""
    if audience not in AUDIENCES:
        raise Invalid(f"audience must be one of {', '.join(AUDIENCES)}", field="audience")
    if not isinstance(facts, dict):
        raise Invalid("facts must be a mapping of fact name to text", field="facts")
    out = {str(k): _fact_text(v, f"facts.{k}") for k, v in facts.items()}
    for k, v in (defaults or {}).items():
        if not out.get(k) and v:
            out[k] = v
    if audience == "internal" and not out.get("summary") and text.strip():
        out["summary"] = text.strip()
    missing = [(name, what) for name, what in REQUIRED_FACTS[audience] if not out.get(name)]
    if missing:
        name, what = missing[0]
        others = f" (also missing: {', '.join('facts.' + m for m, _ in missing[1:])})" if len(missing) > 1 else ""
        raise Invalid(
            f"a {LABELS[audience]} must state {what}: facts.{name} is missing{others}",
            field=f"facts.{name}", missing=[m for m, _ in missing],
        )
    if "status" in out and audience in ("status_page",) and out["status"] not in PUBLIC_STATUSES:
        raise Invalid(f"status must be one of {', '.join(PUBLIC_STATUSES)}", field="facts.status")
    if "component_status" in out and out["component_status"] not in COMPONENT_STATUSES:
        raise Invalid(f"component_status must be one of {', '.join(COMPONENT_STATUSES)}",
                      field="facts.component_status")
    return out


def render_update(audience: str, *, incident: dict[str, Any], facts: dict[str, str], text: str) -> str:
    tpl = _text_env.get_template(f"update_{audience}.txt.j2")
    fact_view = {name: "" for name, _ in REQUIRED_FACTS[audience]}
    for opt in ("status", "details", "next_update", "impact", "actions", "customer_message", "risk",
                "decision_needed"):
        fact_view.setdefault(opt, "")
    fact_view.update(facts)
    return tpl.render(incident=incident, facts=fact_view, text=text.strip()).strip() + "\n"


def render_text(name: str, **ctx: Any) -> str:
    return _text_env.get_template(name).render(**ctx).strip() + "\n"


def render_markup(name: str, **ctx: Any) -> str:
    return _markup_env.get_template(name).render(**ctx)


def stylesheet() -> str:
    return (HERE / "status.css").read_text(encoding="utf-8")
