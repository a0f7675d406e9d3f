"""Indicators over stored events, for `verify` steps and the recovery ramp (DESIGN.md's definitions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from codeblue.signals import store
from codeblue.signals.detect import binom_sf

PERCENTILE_INDICATORS = {"latency_p95_ms": "latency_ms", "retrieval_age_p95_s": "retrieval_age_s"}
# A verification fails only on strong evidence: it is looked at every few seconds over a growing window, so
# each look must be strict for the whole hold to stay well below a 1 % chance of failing healthy traffic.
FAIL_ALPHA = 1e-3


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


def exceedances(events: list[dict[str, Any]], indicator: str, limit: float) -> tuple[int, int]:
    """For a percentile indicator: (values above `limit`, values) over the main path's responses."""
    field = PERCENTILE_INDICATORS[indicator]
    vals = [float(e[field]) for e in events
            if not e.get("fallback") and e.get("kind") == "response" and isinstance(e.get(field), (int, float))]
    return sum(1 for v in vals if v > limit), len(vals)


@dataclass
class Judgement:
    verdict: str  # "pass", "fail" or "wait"
    p_value: float | None  # of the one-sided test "more bad events than the limit allows"


def judge(m: Measure, limit: float, min_events: int, *, events: list[dict[str, Any]] | None = None,
          alpha: float = FAIL_ALPHA) -> Judgement:
    """Whether an indicator is within its limit, with honest statistics on few events.

    A rate is the share of bad events among `denominator` trials; it *fails* when the bad count is
    significantly above what the limit allows (exact one-sided binomial test at `alpha`: valid at any
    number of events, so a clearly broken path fails early, while a healthy one is not failed by the
    noise of a few events). It *passes* once there are `min_events` and the estimate is within the limit;
    otherwise (too few events, or above the limit without enough evidence yet) it *waits* for more.
    A percentile (p95 ≤ limit) is the same test on the share of values above the limit, against 5 %.
    """
    if m.indicator in PERCENTILE_INDICATORS:
        if events is None:
            raise ValueError("a percentile indicator needs the events to count exceedances")
        k, n = exceedances(events, m.indicator, limit)
        p_allowed = 0.05
    else:
        k, n = int(m.numerator), m.denominator
        p_allowed = limit
    p_value = binom_sf(k, n, min(p_allowed, 1.0)) if n > 0 else None
    if p_value is not None and p_value < alpha:
        return Judgement("fail", p_value)
    if m.denominator >= min_events and m.value is not None and m.value <= limit:
        return Judgement("pass", p_value)
    return Judgement("wait", p_value)


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
