"""What the stored signals say about an incident after the fact: the indicators bucket by bucket, when each
first left its baseline, a backtest of stricter rules over the stored history, which change the served-version
evidence points at, the harm before containment, and how the indicator moved around each step taken.

Everything here reads stored events (``events``) through the ``(workflow, time)`` index, newest first and with
a bound on how many, so the span actually analysed is known and stated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from codeblue.changes import service as changes_service
from codeblue.incidents.model import Incident
from codeblue.runbooks.evidence import is_harmful
from codeblue.runbooks.measure import indicator_for

BUCKET = 300.0
HISTORY_MAX_S = 30 * 86400.0
#: Events read per workflow for the history (newest first); older history than this is not analysed.
HISTORY_CAP = 400_000
WINDOW_CAP = 300_000
Z_DEVIATION = 3.0
MIN_BAD = 3

RATE_INDICATORS = ("error_rate", "refusal_rate", "grounding_failure_rate", "tool_arg_error_rate",
                   "wrong_entity_rate", "complaint_rate")
P95_INDICATORS = {"latency_p95_ms": "latency_ms", "retrieval_age_p95_s": "retrieval_age_s"}


def _wrong_entity(e: dict[str, Any]) -> bool:
    t = e.get("target")
    return bool(t) and t != e.get("subject") and t not in (e.get("authorized_targets") or [])


def contributions(e: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(numerator, denominator) contributions of one event to each rate indicator (DESIGN.md)."""
    out: dict[str, tuple[int, int]] = {}
    if e.get("fallback"):
        return out
    kind = e.get("kind")
    if kind == "response":
        status = e.get("status")
        err = isinstance(status, int) and status >= 500
        out["error_rate"] = (int(err), 1)
        if not err:
            out["refusal_rate"] = (int(e.get("refusal") is True), 1)
        g = e.get("grounded")
        if isinstance(g, bool):
            out["grounding_failure_rate"] = (int(g is False), 1)
        out["complaint_rate"] = (0, 1)
    elif kind == "tool_call":
        out["tool_arg_error_rate"] = (int(e.get("args_valid") is False), 1)
    elif kind == "action":
        out["wrong_entity_rate"] = (int(_wrong_entity(e)), 1)
    elif kind == "complaint":
        out["complaint_rate"] = (1, 0)
    return out


@dataclass
class Series:
    """Per-bucket numerators/denominators of every indicator of one workflow, from `start` in BUCKET steps."""

    workflow: str
    start: float
    n: int
    num: dict[str, np.ndarray] = field(default_factory=dict)
    den: dict[str, np.ndarray] = field(default_factory=dict)
    p95: dict[str, np.ndarray] = field(default_factory=dict)
    events: int = 0

    def t(self, i: int) -> float:
        return self.start + i * BUCKET

    def idx(self, t: float) -> int:
        return math.floor((t - self.start) / BUCKET)


def load(s: Session, *, workflow: str, since: float, until: float, cap: int) -> tuple[list[dict[str, Any]], float]:
    """Events of `workflow` in [since, until), newest first up to `cap`; returns them oldest first and the
    start of the span actually covered (later than `since` when the cap was hit)."""
    rows = s.execute(
        text("SELECT time, body FROM events WHERE workflow = :w AND time >= :a AND time < :b "
             "ORDER BY time DESC LIMIT :n"),
        {"w": workflow, "a": since, "b": until, "n": cap + 1},
    ).all()
    covered = since
    if len(rows) > cap:
        rows = rows[:cap]
        covered = float(rows[-1][0])
    loads = orjson.loads
    return [loads(b) for _t, b in reversed(rows)], covered


def build_series(workflow: str, events: list[dict[str, Any]], start: float, end: float) -> Series:
    n = max(1, math.ceil((end - start) / BUCKET))
    ser = Series(workflow=workflow, start=start, n=n, events=len(events))
    num = {k: np.zeros(n) for k in RATE_INDICATORS}
    den = {k: np.zeros(n) for k in RATE_INDICATORS}
    vals: dict[str, list[list[float]]] = {k: [[] for _ in range(n)] for k in P95_INDICATORS}
    for e in events:
        i = int((float(e["time"]) - start) // BUCKET)
        if i < 0 or i >= n:
            continue
        for k, (a, b) in contributions(e).items():
            num[k][i] += a
            den[k][i] += b
        if e.get("kind") == "response" and not e.get("fallback"):
            for ind, f in P95_INDICATORS.items():
                v = e.get(f)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    vals[ind][i].append(float(v))
    ser.num, ser.den = num, den
    for ind in P95_INDICATORS:
        arr = np.full(n, np.nan)
        for i, vs in enumerate(vals[ind]):
            if len(vs) >= 5:
                arr[i] = float(np.percentile(vs, 95))
        ser.p95[ind] = arr
    return ser


def _z(num: np.ndarray, den: np.ndarray, p0: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (num - den * p0) / np.sqrt(den * p0 * (1 - p0))
    z[den <= 0] = 0.0
    return np.nan_to_num(z)


@dataclass
class IndicatorFinding:
    workflow: str
    indicator: str
    baseline: float | None
    peak: float | None
    first_deviation: float | None
    lead_s: float | None  # how long before the incident opened it deviated (positive = earlier)
    data_points: int
    backtests: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "indicator": self.indicator, "baseline": self.baseline, "peak": self.peak,
                "first_deviation": self.first_deviation, "lead_s": self.lead_s, "data_points": self.data_points,
                "missed": self.lead_s is not None and self.lead_s >= BUCKET, "backtests": self.backtests}


def _episodes(flags: np.ndarray) -> list[int]:
    """Start indices of runs of True."""
    starts: list[int] = []
    prev = False
    for i, f in enumerate(flags.tolist()):
        if f and not prev:
            starts.append(i)
        prev = bool(f)
    return starts


def rate_deviations(ser: Series, ind: str, base_end: int) -> tuple[float | None, np.ndarray, np.ndarray]:
    """(baseline rate, z per bucket, deviating flags) of a rate indicator, the baseline pooled over [0, base_end)."""
    num, den = ser.num[ind], ser.den[ind]
    if ind == "complaint_rate":  # complaints per response: the numerator and denominator come from different kinds
        pass
    bn, bd = float(num[:base_end].sum()), float(den[:base_end].sum())
    if bd <= 0:
        return None, np.zeros(ser.n), np.zeros(ser.n, dtype=bool)
    p0 = bn / bd
    p0c = min(max(p0, 0.5 / (bd + 1)), 0.99)
    z = _z(num, den, p0c)
    flags = (z >= Z_DEVIATION) & (num >= MIN_BAD)
    return p0, z, flags


def p95_deviations(ser: Series, ind: str, base_end: int) -> tuple[float | None, np.ndarray]:
    arr = ser.p95[ind]
    hist = arr[:base_end]
    hist = hist[~np.isnan(hist)]
    if len(hist) < 6:
        return None, np.zeros(ser.n, dtype=bool)
    med = float(np.median(hist))
    mad = float(np.median(np.abs(hist - med))) * 1.4826 or max(med * 0.05, 1e-9)
    thr = max(med + 4 * mad, med * 1.2)
    flags = np.nan_to_num(arr, nan=-np.inf) > thr
    return med, flags


def backtest(flags_strict: np.ndarray, ser: Series, *, onset_i: int, opened_i: int, label: str) -> dict[str, Any]:
    """When would a rule with these per-bucket firings have fired for this incident, and how often before it?"""
    guard = max(onset_i - 1, 0)
    false_alarms = len(_episodes(flags_strict[:guard]))
    fired = None
    for i in range(guard, min(opened_i + 1, ser.n)):
        if flags_strict[i]:
            fired = i
            break
    span_days = guard * BUCKET / 86400.0
    out: dict[str, Any] = {"rule": label, "false_alarms": false_alarms, "span_days": round(span_days, 3)}
    if fired is not None:
        fire_t = ser.t(fired + 1)  # a bucket's test can only run once the bucket has closed
        out["fires_at"] = fire_t
        out["earlier_by_s"] = ser.t(opened_i) - fire_t
    else:
        out["fires_at"] = None
        out["earlier_by_s"] = None
    return out


def indicator_findings(ser: Series, *, onset: float, opened: float) -> list[IndicatorFinding]:
    onset_i = max(0, min(ser.idx(onset), ser.n - 1))
    opened_i = max(0, min(ser.idx(opened), ser.n - 1))
    base_end = max(0, onset_i - 1)
    out: list[IndicatorFinding] = []
    for ind in RATE_INDICATORS:
        if ser.den[ind].sum() <= 0:
            continue
        p0, z, flags = rate_deviations(ser, ind, base_end)
        if p0 is None:
            continue
        num, den = ser.num[ind], ser.den[ind]
        lo = max(0, onset_i - 1)
        first = next((i for i in range(lo, min(opened_i + 1, ser.n)) if flags[i]), None)
        hi = min(ser.n, opened_i + 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            rates = np.where(den[lo:hi] > 0, num[lo:hi] / np.maximum(den[lo:hi], 1), np.nan)
        peak = float(np.nanmax(rates)) if len(rates) and not np.all(np.isnan(rates)) else None
        one = backtest(flags, ser, onset_i=onset_i, opened_i=opened_i,
                       label=f"one 5-minute bucket with z ≥ {Z_DEVIATION:g} and ≥ {MIN_BAD} bad events")
        z2 = (z >= 2.0) & (num >= 2)
        two = z2 & np.concatenate(([False], z2[:-1]))
        two_b = backtest(two, ser, onset_i=onset_i, opened_i=opened_i,
                         label="two consecutive 5-minute buckets with z ≥ 2")
        first_t = ser.t(first + 1) if first is not None else None
        out.append(IndicatorFinding(
            workflow=ser.workflow, indicator=ind, baseline=p0, peak=peak, first_deviation=first_t,
            lead_s=(opened - first_t) if first_t is not None else None, data_points=int(den.sum()),
            backtests=[one, two_b]))
    for ind in P95_INDICATORS:
        med, flags = p95_deviations(ser, ind, base_end)
        if med is None:
            continue
        lo = max(0, onset_i - 1)
        first = next((i for i in range(lo, min(opened_i + 1, ser.n)) if flags[i]), None)
        seg = ser.p95[ind][lo:min(ser.n, opened_i + 3)]
        peak = float(np.nanmax(seg)) if len(seg) and not np.all(np.isnan(seg)) else None
        one = backtest(flags, ser, onset_i=onset_i, opened_i=opened_i,
                       label="one 5-minute bucket's p95 above median + 4·MAD of the history")
        first_t = ser.t(first + 1) if first is not None else None
        out.append(IndicatorFinding(
            workflow=ser.workflow, indicator=ind, baseline=med, peak=peak, first_deviation=first_t,
            lead_s=(opened - first_t) if first_t is not None else None,
            data_points=int(np.sum(~np.isnan(ser.p95[ind]))), backtests=[one]))
    return out


# ----- harm, trigger, steps ---------------------------------------------------------------------------------


def harm_between(events: list[dict[str, Any]], failure_type: str, since: float, until: float) -> dict[str, Any]:
    """Harmful requests (DESIGN.md: numerator events of the incident's indicator) in [since, until)."""
    n = total = 0
    subjects: set[str] = set()
    traces: set[str] = set()
    for e in events:
        t = float(e["time"])
        if t < since or t >= until:
            continue
        if e.get("kind") in ("response", "action", "tool_call"):
            total += 1
        if is_harmful(e, failure_type):
            n += 1
            if e.get("subject"):
                subjects.add(str(e["subject"]))
            if e.get("trace_id"):
                traces.add(str(e["trace_id"]))
    return {"harmful": n, "subjects": len(subjects), "served": total, "since": since, "until": until}


def trigger_candidates(s: Session, inc: Incident, events_by_wf: dict[str, list[dict[str, Any]]], *,
                       onset: float, until: float) -> list[dict[str, Any]]:
    """Changes to the affected workflows in the day before the onset, judged by served-version evidence: the
    harmful rate among events served by the changed-to version against the rest, from the onset on."""
    seen: set[Any] = set()
    out: list[dict[str, Any]] = []
    suspects = {str(x.get("change_id")) for x in (inc.suspects or []) if isinstance(x, dict) and x.get("change_id")}
    for wf in inc.workflows or []:
        for ch in changes_service.list_changes(s, since=onset - 86400.0, until=until, workflow=wf, limit=200):
            d = ch.as_dict()
            if d["id"] in seen or d.get("type") == "rollback" or d["time"] > until:
                continue
            seen.add(d["id"])
            key = f"{d['kind']}/{d['name']}"
            to = d.get("to")
            with_n = with_bad = without_n = without_bad = before_n = before_bad = 0
            t_change = float(d["time"])
            for w in inc.workflows or []:
                for e in events_by_wf.get(w, []):
                    t = float(e["time"])
                    if e.get("kind") not in ("response", "action", "tool_call"):
                        continue
                    if t_change - 3600.0 <= t < t_change:
                        before_n += 1
                        before_bad += is_harmful(e, inc.failure_type)
                    if t < onset or t >= until:
                        continue
                    bad = is_harmful(e, inc.failure_type)
                    if (e.get("versions") or {}).get(key) == to:
                        with_n += 1
                        with_bad += bad
                    else:
                        without_n += 1
                        without_bad += bad
            r_with = with_bad / with_n if with_n else None
            r_without = without_bad / without_n if without_n else None
            r_before = before_bad / before_n if before_n else None
            # compare with what else was served since the onset; when the new version served everything, with
            # the hour before the change
            ref = r_without if without_n >= 20 else r_before
            lift = None
            if r_with is not None and ref is not None:
                lift = r_with / ref if ref > 0 else (math.inf if r_with > 0 else None)
            strong = (r_with is not None and with_n >= 20 and with_bad >= 5 and lift is not None and lift >= 2.0)
            out.append({"change": d, "key": key, "version": to, "served": with_n, "harmful": with_bad,
                        "rate_with": r_with, "served_other": without_n, "harmful_other": without_bad,
                        "rate_without": r_without, "served_before": before_n, "harmful_before": before_bad,
                        "rate_before": r_before, "lift": None if lift is None or math.isinf(lift) else lift,
                        "evidence": strong, "incident_suspect": str(d["id"]) in suspects,
                        "before_onset_s": onset - t_change})
    out.sort(key=lambda c: (not c["evidence"], -(c["rate_with"] or 0.0) + (c["rate_without"] or 0.0),
                            abs(c["before_onset_s"])))
    return out


STEP_KINDS = ("control.set", "control.lifted", "change.activate", "change.rollback", "change.external",
              "runbook.step.done", "runbook.step.succeeded", "status")


def judge_steps(entries: list[dict[str, Any]], events: list[dict[str, Any]], indicator: str, *,
                window_s: float = 900.0) -> list[dict[str, Any]]:
    """Each step taken, judged by the incident's indicator in the `window_s` before and after it."""
    from codeblue.runbooks.measure import measure

    times = np.array([float(e["time"]) for e in events]) if events else np.zeros(0)
    out: list[dict[str, Any]] = []
    for en in entries:
        if en["kind"] not in STEP_KINDS:
            continue
        if en["kind"] == "status" and (en.get("data") or {}).get("to") not in ("contained", "monitoring"):
            continue
        t = float(en["time"])
        a0, a1, b1 = np.searchsorted(times, [t - window_s, t, t + window_s])
        before = measure(events[int(a0):int(a1)], indicator)
        after = measure(events[int(a1):int(b1)], indicator)
        verdict = "not enough traffic to judge"
        if before.value is not None and after.value is not None and before.denominator >= 20 \
                and after.denominator >= 20:
            p = (before.numerator + after.numerator) / max(before.denominator + after.denominator, 1)
            se = math.sqrt(max(p * (1 - p), 1e-12) * (1 / before.denominator + 1 / after.denominator))
            zdiff = (before.value - after.value) / se if indicator not in P95_INDICATORS else 0.0
            if indicator in P95_INDICATORS:
                ratio = after.value / before.value if before.value else 1.0
                verdict = "fell" if ratio < 0.8 else ("rose" if ratio > 1.25 else "changed nothing")
            elif zdiff >= 2.0 and after.value < before.value * 0.75:
                verdict = "fell"
            elif zdiff <= -2.0 and after.value > before.value * 1.25:
                verdict = "rose"
            else:
                verdict = "changed nothing"
        out.append({"seq": en["seq"], "time": t, "kind": en["kind"], "text": en["text"], "actor": en["actor"],
                    "before": before.as_dict(), "after": after.as_dict(), "verdict": verdict})
    return out


def main_indicator(inc: Incident) -> str:
    return indicator_for(inc.failure_type, inc.data)
