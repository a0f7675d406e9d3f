"""The triage desk: failure type, harm scope, severity from a type × scope matrix, and ranked suspects.

Suspects answer "what changed recently and can we reverse it now?". Evidence is weighed in this order:
served-version evidence (the bad rate sits on the version the change introduced), then time proximity to the
estimated onset, then workflow overlap (and a small prior for config kinds that plausibly cause the failure
type). Without served-version evidence a change cannot reach 0.5, so a fault with no change behind it names
no confident suspect.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from codeblue.signals.detect import binom_sf
from codeblue.signals.indicators import INDICATORS, percent
from codeblue.signals.windows import Series, WorkflowState, fine_bucket

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
SCOPES = ("small", "medium", "large")

#: Default severity by failure type × harm scope. Wrong-entity actions and account-action failures rank
#: highest: they touch someone else's account, which no later correction undoes.
DEFAULT_MATRIX: dict[str, dict[str, str]] = {
    "account_action": {"small": "SEV1", "medium": "SEV1", "large": "SEV1"},
    "tool": {"small": "SEV3", "medium": "SEV2", "large": "SEV2"},
    "retrieval": {"small": "SEV3", "medium": "SEV3", "large": "SEV2"},
    "answer_quality": {"small": "SEV3", "medium": "SEV3", "large": "SEV2"},
    "policy_refusal": {"small": "SEV4", "medium": "SEV3", "large": "SEV2"},
    "availability": {"small": "SEV3", "medium": "SEV2", "large": "SEV2"},
    "other": {"small": "SEV4", "medium": "SEV3", "large": "SEV3"},
}

#: Harm scope thresholds: medium from this many harmful requests or subjects, large from these.
SCOPE_MEDIUM = (50, 20)
SCOPE_LARGE = (500, 200)

#: Config kinds that plausibly cause each failure type (a small prior, never decisive).
KIND_AFFINITY: dict[str, tuple[str, ...]] = {
    "account_action": ("prompt", "tool_contract", "routing_policy", "model_alias", "deploy"),
    "tool": ("tool_contract", "prompt", "model_alias", "output_schema"),
    "retrieval": ("retrieval_index", "prompt", "routing_policy"),
    "answer_quality": ("prompt", "model_alias", "routing_policy", "retrieval_index"),
    "policy_refusal": ("policy_template", "prompt", "model_alias", "routing_policy"),
    "availability": ("deploy", "model_alias", "routing_policy", "feature_flag"),
}

#: How far back a change may be and still be a suspect.
SUSPECT_LOOKBACK_S = 6 * 3600.0


@dataclass
class Harm:
    requests: int
    subjects: int
    workflows: list[str]
    started_at: float
    growing: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Suspect:
    change_id: str | None
    kind: str
    name: str
    version: str
    from_: str | None
    score: float
    evidence: str
    rollback: bool
    time: float

    def as_dict(self) -> dict[str, Any]:
        return {"change_id": self.change_id, "kind": self.kind, "name": self.name, "version": self.version,
                "from": self.from_, "score": self.score, "evidence": self.evidence, "rollback": self.rollback,
                "time": self.time}


@dataclass
class Triage:
    failure_type: str
    severity: str
    harm: Harm
    suspects: list[Suspect] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)
    indicator: str = ""
    breakdown: str = "*"
    onset: float = 0.0
    #: Complaint themes bursting on the incident's workflow (ClusterSignal dicts: terms, counts, representatives).
    complaint_clusters: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"failure_type": self.failure_type, "severity": self.severity, "harm": self.harm.as_dict(),
                "suspects": [s.as_dict() for s in self.suspects], "workflows": self.workflows,
                "indicator": self.indicator, "breakdown": self.breakdown, "onset": self.onset,
                "complaint_clusters": self.complaint_clusters}


#: Config kinds that make a grounding failure an answer-quality failure (the model/prompt said something the
#: sources do not support) rather than a retrieval failure (the sources were wrong or missing).
ANSWER_KINDS = ("prompt", "model_alias", "routing_policy", "output_schema")


def refine_failure_type(base: str, indicator: str, suspects: list[Suspect]) -> str:
    """The failure type from the indicator, refined by a convicted suspect for grounding failures."""
    if indicator == "grounding_failure_rate" and suspects and suspects[0].score >= 0.5 \
            and suspects[0].kind in ANSWER_KINDS:
        return "answer_quality"
    return base


def scope_of(harm: Harm) -> str:
    if harm.requests >= SCOPE_LARGE[0] or harm.subjects >= SCOPE_LARGE[1] or len(harm.workflows) > 1:
        return "large"
    if harm.requests >= SCOPE_MEDIUM[0] or harm.subjects >= SCOPE_MEDIUM[1]:
        return "medium"
    return "small"


def severity_for(failure_type: str, harm: Harm, matrix: dict[str, dict[str, str]] | None = None) -> str:
    m = matrix or DEFAULT_MATRIX
    row = m.get(failure_type) or DEFAULT_MATRIX.get(failure_type) or DEFAULT_MATRIX["other"]
    return row.get(scope_of(harm), "SEV3")


def worst(a: str, b: str | None) -> str:
    if b is None:
        return a
    return a if SEVERITIES.index(a) <= SEVERITIES.index(b) else b


def _window_counts(s: Series, i: int, since: float, now: float) -> tuple[int, int]:
    ind = INDICATORS[i]
    tot = s.rings.sum_since(since, fine_bucket(now))
    return int(tot[ind.num]), int(tot[ind.den])


def _version_evidence(
    ws: WorkflowState, change: dict[str, Any], i: int, onset: float, now: float
) -> tuple[float, str]:
    """How strongly the served-version breakdown pins the bad rate on this change's new version.

    Returns (strength 0–1, evidence text); strength < 0 means the breakdown speaks against the change (its
    version serves traffic at the normal rate)."""
    config = f"{change.get('kind')}/{change.get('name')}"
    versions = ws.version_series(config)
    to = str(change.get("to"))
    if to not in versions:
        return 0.0, ""
    ind = INDICATORS[i]
    since = max(onset, float(change.get("time", onset)))
    since = min(since, now - 120.0)
    xv, nv = _window_counts(versions[to], i, since, now)
    if nv < 5:
        return 0.0, ""
    xo = no = 0
    for v, s in versions.items():
        if v != to:
            x, n = _window_counts(s, i, since, now)
            xo, no = xo + x, no + n
    # Served-version evidence is strongest against other versions serving at the same time. Without them it is
    # a before/after comparison, which any fault in the workflow after the change would also pass; the longer
    # the version served before the onset, the less that says about it (a version shipped hours ago and
    # healthy since is not convicted by a fault that starts now), so it is weighed by the change's proximity.
    weight = 1.0
    if no >= 20:
        p_other, ref = (xo + 0.5) / (no + 1.0), f"{percent(xo / no)} on other versions (n={no})"
    else:
        weight = math.exp(-max(onset - float(change.get("time", onset)), 0.0) / 900.0)
        frm = change.get("from")
        base = versions.get(str(frm)) if frm is not None else None
        src = base if base is not None and base.bden[i] >= 20 else ws.all
        p_other = (float(src.bnum[i]) + 0.5) / (float(src.bden[i]) + 1.0)
        ref = f"{percent(p_other)} before" + (f" on {frm}" if src is base else "")
    rate = xv / nv
    pv = binom_sf(xv, nv, min(p_other, 0.999))
    text = f"{config} {to}: {ind.name} {percent(rate)} (n={nv}) vs {ref}"
    if rate >= 1.5 * p_other and pv < 1e-4:
        return weight * min(1.0, 0.6 + 0.4 * min(1.0, -math.log10(max(pv, 1e-300)) / 12.0)), text
    if nv >= 30 and rate < 1.2 * p_other + 2.0 / nv:
        return -1.0, text
    return 0.0, text


def rank_suspects(
    changes: list[dict[str, Any]], ws: WorkflowState, *, i: int, failure_type: str, onset: float, now: float,
    limit: int = 5,
) -> list[Suspect]:
    """Recent changes ranked by evidence, best first."""
    out: list[Suspect] = []
    for c in changes:
        ct = float(c.get("time", 0.0))
        if ct > now or ct < onset - SUSPECT_LOOKBACK_S:
            continue
        wfs = c.get("workflows") or []
        if wfs and ws.name not in wfs:
            continue
        overlap = 1.0 if ws.name in wfs else 0.4
        dt = onset - ct
        prox = math.exp(-max(dt, 0.0) / 900.0) if dt >= -120.0 else 0.0
        kind = str(c.get("kind", ""))
        affinity = 1.0 if kind in KIND_AFFINITY.get(failure_type, ()) else 0.0
        strength, vtext = _version_evidence(ws, c, i, onset, now)
        score = 0.25 * prox + 0.15 * overlap + 0.05 * affinity
        if strength > 0:
            score += 0.55 * strength
        elif strength < 0:
            score *= 0.3
        if c.get("type") == "rollback":
            score *= 0.5
        if dt < -120.0:  # a change after the onset cannot have caused it
            score *= 0.3
        when = _ago(dt)
        frac = float(c.get("fraction", 1.0) or 0.0)
        roll = f" ({percent(frac)} rollout)" if 0 < frac < 1 else ""
        parts = [vtext] if vtext else []
        parts.append(f"{c.get('type', 'activate')} {c.get('from') or '∅'}→{c.get('to')}{roll} {when}")
        if not wfs:
            parts.append("workflows not declared")
        rollback = c.get("type") != "rollback" and (c.get("from") is not None or 0 < frac < 1)
        out.append(Suspect(
            change_id=str(c["id"]) if c.get("id") is not None else None, kind=kind, name=str(c.get("name", "")),
            version=str(c.get("to", "")), from_=(str(c["from"]) if c.get("from") is not None else None),
            score=round(min(score, 1.0), 3), evidence="; ".join(parts), rollback=bool(rollback), time=ct,
        ))
    out.sort(key=lambda s: (-s.score, -s.time))
    return out[:limit]


def _ago(dt: float) -> str:
    a = abs(dt)
    span = f"{a:.0f}s" if a < 120 else (f"{a / 60:.0f} min" if a < 7200 else f"{a / 3600:.1f} h")
    return f"{span} before onset" if dt >= 0 else f"{span} after onset"


def subjects_since(ws: WorkflowState, bits: int, since: float) -> set[str]:
    return {subj for (t, subj, b) in ws.bad if t >= since and b & bits and subj is not None}


def rate_rows(rows: np.ndarray[Any, Any], i: int) -> float:
    ind = INDICATORS[i]
    n = float(rows[:, ind.den].sum())
    return float(rows[:, ind.num].sum()) / n if n > 0 else 0.0
