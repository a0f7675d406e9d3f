"""A traffic generator for realistic AI-product event streams.

Load follows a daily curve with Poisson arrivals and occasional bursts; each workflow's quality rates drift
slowly; configs change (benign activations, progressive rollouts); faults degrade only the requests they
match (a candidate version, a segment, a model, or everything). Every request is served the versions the
SDK would serve it (deterministic bucketing by request key), so served-version evidence is real.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codeblue.sdk.bucket import bucket
from codeblue.sim import texts

DAY = 86400.0


@dataclass
class Rates:
    """Per-request probabilities (and latency/freshness parameters) of one workflow."""

    error: float = 0.004
    refusal: float = 0.03
    ungrounded: float = 0.05
    tool_arg_error: float = 0.01
    wrong_entity: float = 0.0
    complaint: float = 0.004
    latency_ms: float = 900.0
    latency_sigma: float = 0.35
    retrieval_age_s: float = 86400.0

    def scaled(self, f: dict[str, float]) -> Rates:
        r = Rates(**self.__dict__)
        for k, v in f.items():
            setattr(r, k, getattr(r, k) * v)
        return r


@dataclass
class WorkflowSpec:
    name: str
    configs: dict[str, str]  # "<kind>/<name>" -> initial stable version
    model: str = "gpt-large"
    peak_rps: float = 2.5
    grounded: bool = True
    retrieval: bool = False
    tool: str | None = None
    tool_prob: float = 0.0
    action: str | None = None
    action_prob: float = 0.0
    segments: dict[str, float] = field(default_factory=dict)
    rates: Rates = field(default_factory=Rates)


@dataclass
class Request:
    """What a fault's matcher sees about one request."""

    workflow: str
    time: float
    key: str
    segment: str | None
    versions: dict[str, str]
    model: str


@dataclass
class Fault:
    """A degradation: from `onset` (until `end`), requests matching `match` get `effects` applied.

    `effects` maps a Rates field to an absolute value (e.g. {"ungrounded": 0.3}); `model` replaces the
    serving model for matching requests (a router sending traffic elsewhere).
    """

    onset: float
    workflow: str
    indicator: str
    failure_type: str
    effects: dict[str, float]
    theme: str
    match: Callable[[Request], bool] = lambda _r: True
    end: float | None = None
    model: str | None = None
    change: dict[str, str] | None = None
    note: str = ""

    def active(self, r: Request) -> bool:
        return r.workflow == self.workflow and r.time >= self.onset and (self.end is None or r.time < self.end) \
            and self.match(r)


@dataclass
class ConfigState:
    stable: str
    candidate: str | None = None
    fraction: float = 0.0

    def serve(self, salt: str, key: str) -> str:
        if self.candidate is not None and self.fraction > 0 and (
            self.fraction >= 1 or bucket(salt, key) < self.fraction
        ):
            return self.candidate
        return self.stable


@dataclass
class Plan:
    """Everything a scenario decides; `simulate` turns it into events."""

    name: str
    start: float
    end: float
    workflows: list[WorkflowSpec]
    changes: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    burst_every_s: float = 6 * 3600.0
    drift: bool = True
    text_sample: float = 0.25
    subjects: int = 20000


def diurnal(t: float) -> float:
    """Load factor in (0, 1]: trough at 03:00 UTC, peak at 15:00 UTC."""
    h = (t % DAY) / 3600.0
    return 0.2 + 0.8 * (0.5 - 0.5 * math.cos(2 * math.pi * (h - 3.0) / 24.0))


def change_record(
    seq: int, t: float, kind: str, name: str, frm: str | None, to: str, fraction: float, workflows: list[str],
    *, type_: str = "activate", actor: str = "release-bot", note: str = "",
) -> dict[str, Any]:
    return {
        "id": f"chg-{seq:04d}", "time": t, "type": type_, "kind": kind, "name": name, "from": frm, "to": to,
        "fraction": fraction, "environment": "production", "workflows": workflows, "actor": actor,
        "incident": None, "note": note,
    }


class _Drift:
    """A slow, bounded multiplicative random walk per workflow and rate, stepped every 10 minutes."""

    FIELDS = ("error", "refusal", "ungrounded", "tool_arg_error", "complaint", "latency_ms")

    def __init__(self, rng: random.Random, enabled: bool) -> None:
        self.rng = rng
        self.enabled = enabled
        self.level: dict[str, float] = dict.fromkeys(self.FIELDS, 0.0)
        self.next_step = -math.inf

    def factors(self, t: float) -> dict[str, float]:
        if not self.enabled:
            return {}
        while t >= self.next_step:
            for k in self.FIELDS:
                # mean-reverting walk in log space, bounded to roughly ×0.75 … ×1.33
                self.level[k] = max(-0.29, min(0.29, 0.97 * self.level[k] + self.rng.gauss(0, 0.03)))
            self.next_step = t + 600 if self.next_step == -math.inf else self.next_step + 600
        return {k: math.exp(v) for k, v in self.level.items()}


def simulate(plan: Plan, seed: int) -> list[dict[str, Any]]:
    """Generate the events of a plan, sorted by time."""
    rng = random.Random(seed)
    changes = sorted(plan.changes, key=lambda c: c["time"])
    events: list[dict[str, Any]] = []
    for wi, wf in enumerate(plan.workflows):
        wrng = random.Random(rng.random() + wi)
        events.extend(_simulate_workflow(plan, wf, changes, wrng))
    events.sort(key=lambda e: e["time"])
    return events


def _bursts(plan: Plan, rng: random.Random) -> list[tuple[float, float, float]]:
    out: list[tuple[float, float, float]] = []
    t = plan.start
    while True:
        t += rng.expovariate(1.0 / plan.burst_every_s)
        if t >= plan.end:
            return out
        out.append((t, t + rng.uniform(180, 600), rng.uniform(2.5, 5.0)))


def _simulate_workflow(
    plan: Plan, wf: WorkflowSpec, changes: list[dict[str, Any]], rng: random.Random
) -> list[dict[str, Any]]:
    states = {k: ConfigState(stable=v) for k, v in wf.configs.items()}
    pending = [c for c in changes if f"{c['kind']}/{c['name']}" in states]
    faults = [f for f in plan.faults if f.workflow == wf.name]
    bursts = _bursts(plan, rng)
    drift = _Drift(rng, plan.drift)
    max_rate = wf.peak_rps * 5.0
    seg_names = list(wf.segments)
    seg_cum: list[float] = []
    acc = 0.0
    for s in seg_names:
        acc += wf.segments[s]
        seg_cum.append(acc)
    out: list[dict[str, Any]] = []
    t = plan.start
    n = 0
    ci = 0
    while True:
        t += rng.expovariate(max_rate)
        if t >= plan.end:
            break
        burst = 1.0
        for b0, b1, factor in bursts:
            if b0 <= t < b1:
                burst = factor
                break
        if rng.random() * max_rate > wf.peak_rps * diurnal(t) * burst:
            continue
        while ci < len(pending) and pending[ci]["time"] <= t:
            c = pending[ci]
            st = states[f"{c['kind']}/{c['name']}"]
            if c["type"] == "rollback" and c["fraction"] == 0:
                st.candidate, st.fraction = None, 0.0
            elif c["fraction"] >= 1:
                st.stable, st.candidate, st.fraction = c["to"], None, 0.0
            else:
                st.candidate, st.fraction = c["to"], c["fraction"]
            ci += 1
        n += 1
        subject = f"acct-{rng.randrange(plan.subjects):05d}"
        session = f"s-{wf.name}-{n}"
        key = subject
        segment = None
        if seg_names:
            u = rng.random()
            for s, cum in zip(seg_names, seg_cum, strict=True):
                if u < cum:
                    segment = s
                    break
        versions = {k: st.serve(k, key) for k, st in states.items()}
        req = Request(wf.name, t, key, segment, versions, wf.model)
        rates = wf.rates.scaled(drift.factors(t))
        hit: Fault | None = None
        for f in faults:
            if f.active(req):
                hit = f
                for k, v in f.effects.items():
                    setattr(rates, k, v)
                if f.model:
                    req.model = f.model
        out.extend(_request_events(plan, wf, req, rates, hit, subject, session, rng))
    return out


def _request_events(
    plan: Plan, wf: WorkflowSpec, req: Request, rates: Rates, hit: Fault | None, subject: str, session: str,
    rng: random.Random,
) -> list[dict[str, Any]]:
    t = req.time
    trace = f"{rng.getrandbits(128):032x}"
    item = rng.choice(texts.ITEMS)
    error = rng.random() < rates.error
    refusal = (not error) and rng.random() < rates.refusal
    ev: dict[str, Any] = {
        "time": round(t, 3), "workflow": wf.name, "kind": "response", "trace_id": trace, "session_id": session,
        "service": "support-bot", "subject": subject, "versions": req.versions, "model": req.model,
        "status": 500 if error else 200,
        "latency_ms": round(rng.lognormvariate(math.log(rates.latency_ms), rates.latency_sigma), 1),
        "refusal": refusal,
    }
    if req.segment:
        ev["segment"] = req.segment
    ungrounded = False
    if wf.grounded and not error and not refusal:
        ungrounded = rng.random() < rates.ungrounded
        ev["grounded"] = not ungrounded
    if wf.retrieval and not error:
        ev["retrieval_age_s"] = round(rates.retrieval_age_s * rng.uniform(0.5, 1.5), 1)
    if rng.random() < plan.text_sample:
        q = rng.choice(texts.QUESTIONS.get(wf.name, ("Question about my {item}?",)))
        ev["input"] = q.format(item=item)
        ev["output"] = (rng.choice(texts.REFUSALS) if refusal else rng.choice(texts.ANSWERS)).format(item=item)
    out = [ev]
    bad = error or refusal or ungrounded
    if wf.tool and not error and rng.random() < wf.tool_prob:
        valid = rng.random() >= rates.tool_arg_error
        args: dict[str, Any] = {"subject": subject, "summary": f"{item} issue"}
        if not valid:
            args = {"summary": f"{item} issue", "priority": "urgent!!"}
        out.append({"time": round(t + 0.2, 3), "workflow": wf.name, "kind": "tool_call", "trace_id": trace,
                    "session_id": session, "subject": subject, "versions": req.versions, "tool": wf.tool,
                    "args_valid": valid, "arguments": args, **({"segment": req.segment} if req.segment else {})})
        bad = bad or not valid
    if wf.action and not error and not refusal and rng.random() < wf.action_prob:
        wrong = rng.random() < rates.wrong_entity
        target = f"acct-{rng.randrange(plan.subjects):05d}" if wrong else subject
        if wrong and target == subject:
            target = subject + "x"
        out.append({"time": round(t + 0.4, 3), "workflow": wf.name, "kind": "action", "trace_id": trace,
                    "session_id": session, "subject": subject, "versions": req.versions, "action": wf.action,
                    "target": target, "authorized_targets": [subject],
                    "attributes": {"amount": round(rng.lognormvariate(math.log(60), 0.8), 2)},
                    **({"segment": req.segment} if req.segment else {})})
        bad = bad or wrong
    # Complaints: a small background of generic grumbles, and a much higher chance after a harmful answer,
    # about the fault's own theme. Users complain minutes later, not at once.
    p = rates.complaint
    theme = None
    if hit is not None and (bad or hit.indicator == "complaint_rate"):
        p = max(p, hit.effects.get("complaint", 0.15))
        theme = hit.theme
    if rng.random() < p:
        if theme and rng.random() < 0.85:
            text = rng.choice(texts.THEMES[theme]).format(item=item)
        else:
            text = rng.choice(texts.GENERIC_COMPLAINTS)
        delay = min(rng.lognormvariate(math.log(60), 0.6), 900)
        out.append({"time": round(t + delay, 3), "workflow": wf.name, "kind": "complaint", "trace_id": trace,
                    "session_id": session, "subject": subject, "versions": req.versions, "text": text,
                    "channel": rng.choice(("chat", "email", "app_review", "support_ticket")),
                    **({"segment": req.segment} if req.segment else {})})
    return out
