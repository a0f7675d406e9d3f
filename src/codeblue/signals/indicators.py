"""The indicators of DESIGN.md as counters: what one event adds, and which counters make each ratio.

Detection never keeps events, only counts per time bucket. Each indicator is a numerator counter over a
denominator counter; the two percentile indicators (latency p95, retrieval age p95) are tested as the
fraction of requests that exceed the workflow's learned baseline p95, which is again a ratio of counts.
"""

from __future__ import annotations

from dataclasses import dataclass

# Counter slots of one bucket vector.
C_RESP = 0  # responses
C_ERR = 1  # responses with status >= 500
C_OK = 2  # responses without error (refusal denominator)
C_REF = 3  # refusals among non-error responses
C_GSET = 4  # responses with `grounded` set
C_GFAIL = 5  # grounded false
C_TOOL = 6  # tool calls
C_TOOLBAD = 7  # tool calls with args_valid false
C_ACT = 8  # actions
C_WRONG = 9  # wrong-entity actions
C_COMPL = 10  # complaints
C_LATX = 11  # responses whose latency exceeds the workflow's baseline p95
C_RSET = 12  # responses with retrieval_age_s set, once the workflow has a learned p95 for it
C_RX = 13  # ... whose retrieval age exceeds the workflow's baseline p95
C_LATN = 14  # responses with latency_ms set, once the workflow has a learned p95 for it
NC = 15


@dataclass(frozen=True, slots=True)
class Indicator:
    name: str
    num: int
    den: int
    failure_type: str
    bit: int  # bit in a bad event's mask
    label: str  # what a bad event is, for evidence lines
    percentile: bool = False


INDICATORS: tuple[Indicator, ...] = (
    Indicator("error_rate", C_ERR, C_RESP, "availability", 1 << 0, "errors"),
    Indicator("latency_p95_ms", C_LATX, C_LATN, "availability", 1 << 1, "slow responses", percentile=True),
    Indicator("refusal_rate", C_REF, C_OK, "policy_refusal", 1 << 2, "refusals"),
    Indicator("grounding_failure_rate", C_GFAIL, C_GSET, "retrieval", 1 << 3, "ungrounded answers"),
    Indicator("tool_arg_error_rate", C_TOOLBAD, C_TOOL, "tool", 1 << 4, "malformed tool calls"),
    Indicator("wrong_entity_rate", C_WRONG, C_ACT, "account_action", 1 << 5, "wrong-entity actions"),
    Indicator("complaint_rate", C_COMPL, C_RESP, "answer_quality", 1 << 6, "complaints"),
    Indicator("retrieval_age_p95_s", C_RX, C_RSET, "retrieval", 1 << 7, "stale retrievals", percentile=True),
)
NI = len(INDICATORS)
BY_NAME = {ind.name: ind for ind in INDICATORS}
INDEX = {ind.name: i for i, ind in enumerate(INDICATORS)}
NUM_IDX = [ind.num for ind in INDICATORS]
DEN_IDX = [ind.den for ind in INDICATORS]

BIT_ERR = INDICATORS[0].bit
BIT_LAT = INDICATORS[1].bit
BIT_REF = INDICATORS[2].bit
BIT_GFAIL = INDICATORS[3].bit
BIT_TOOL = INDICATORS[4].bit
BIT_WRONG = INDICATORS[5].bit
BIT_COMPL = INDICATORS[6].bit
BIT_RAGE = INDICATORS[7].bit

#: Failure type per indicator (DESIGN.md triage): wrong entity → account action, tool args → tool, grounding
#: and freshness → retrieval, refusals → policy refusal, errors and latency → availability, complaints →
#: answer quality.
FAILURE_TYPE = {ind.name: ind.failure_type for ind in INDICATORS}


def percent(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 or x == 0 else f"{100 * x:.3f}%"
