"""Indicators over stored events, for `verify` steps and the recovery ramp (DESIGN.md's definitions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from codeblue.signals import store

PERCENTILE_INDICATORS = {"latency_p95_ms": "latency_ms", "retrieval_age_p95_s": "retrieval_age_s"}


@dataclass
class Measure:
    indicator: str
    value: float | None  # None when the denominator is 0
    numerator: float
    denominator: int

    def as_dict(self) -> dict[str, Any]:
        return {"indicator": self.indicator, "value": self.value, "numerator": self.numerator,
                "denominator": self.denominator}


def _wrong_entity(e: dict[str, Any]) -> bool:
    t = e.get("target")
    return bool(t) and t != e.get("subject") and t not in (e.get("authorized_targets") or [])


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    values.sort()
    return values[min(len(values) - 1, int(0.95 * len(values)))]


def measure(events: list[dict[str, Any]], indicator: str) -> Measure:
    """The indicator over `events` (events served by a fallback are not the main path and are left out)."""
    served = [e for e in events if not e.get("fallback")]
    responses = [e for e in served if e.get("kind") == "response"]
    if indicator in PERCENTILE_INDICATORS:
        field = PERCENTILE_INDICATORS[indicator]
        vals = [float(e[field]) for e in responses if isinstance(e.get(field), (int, float))]
        p = _p95(vals)
        return Measure(indicator, p, p or 0.0, len(vals))
    num = den = 0
    if indicator == "error_rate":
        den = len(responses)
        num = sum(1 for e in responses if int(e.get("status") or 0) >= 500)
    elif indicator == "refusal_rate":
        ok = [e for e in responses if int(e.get("status") or 0) < 500]
        den, num = len(ok), sum(1 for e in ok if e.get("refusal") is True)
    elif indicator == "grounding_failure_rate":
        g = [e for e in responses if isinstance(e.get("grounded"), bool)]
        den, num = len(g), sum(1 for e in g if e["grounded"] is False)
    elif indicator == "tool_arg_error_rate":
        t = [e for e in served if e.get("kind") == "tool_call"]
        den, num = len(t), sum(1 for e in t if e.get("args_valid") is False)
    elif indicator == "wrong_entity_rate":
        a = [e for e in served if e.get("kind") == "action"]
        den, num = len(a), sum(1 for e in a if _wrong_entity(e))
    elif indicator in ("complaint_rate", "complaint_cluster"):
        den = len(responses)
        num = sum(1 for e in served if e.get("kind") == "complaint")
    else:
        raise ValueError(f"unknown indicator {indicator!r}")
    return Measure(indicator, (num / den) if den else None, float(num), den)


def load_events(s: Session, *, workflow: str, since: float, until: float, cap: int = 100_000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(out) < cap:
        page = store.query_events(s, workflow=workflow, since=since, until=until, limit=5000, cursor=cursor)
        out.extend(page.events)
        cursor = page.next_cursor
        if cursor is None:
            break
    return out


def indicator_for(failure_type: str, data: dict[str, Any] | None) -> str:
    """The indicator an incident is about: the detector's, else the natural one for its failure type."""
    ind = (data or {}).get("indicator")
    if isinstance(ind, str) and ind:
        return ind
    return {
        "account_action": "wrong_entity_rate", "tool": "tool_arg_error_rate", "retrieval": "grounding_failure_rate",
        "policy_refusal": "refusal_rate", "availability": "error_rate", "answer_quality": "grounding_failure_rate",
    }.get(failure_type, "complaint_rate")
