"""The simulated support assistant: a real application of the SDK, in stream time.

It does only what a real AI application does: asks its `Guard` before every request and before every
refund (`decide`), reads the config versions the Guard serves it, answers (the "model" is simulated: its
quality depends on the version it is served), and reports what it did (`trace`: responses, tool calls,
actions; later, users' complaints). It also keeps its own books (`Ledger`), so the demo can judge the
story by its effects on the application, not by what the server says about itself.
"""

from __future__ import annotations

import heapq
import math
import random
import threading
import time
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any

from codeblue.demo.clock import StreamClock
from codeblue.demo.scenarios import DemoScenario
from codeblue.sdk import Decision, Guard
from codeblue.sim import texts
from codeblue.sim.traffic import Rates, WorkflowSpec, diurnal

#: What the simulated model says when the bad version serves a request it handles badly.
WRONG_ANSWERS: dict[str, tuple[str, ...]] = {
    "refund_wrong": (
        "Good news: your {item} qualifies for a full refund even without a receipt. I've started it for you.",
        "Refunds for {item} purchases are always available for 365 days, so you can cancel now at no cost.",
        "Your {item} is fully refundable; you don't need to return anything.",
    ),
    "finance_wrong": (
        "The APR on your {item} is 2.9%, fixed for the whole term, with no fees.",
        "There are no late fees on your {item}, so you can skip this month's payment.",
        "Your {item} interest is calculated monthly at 0.5% of the original amount.",
    ),
}

#: When the traffic falls this far (stream seconds) behind the server's clock, it skips ahead to this close.
MAX_LAG_S = 20.0
CATCH_UP_TO_S = 2.0

#: The seed's clock for the story: traffic follows the daily curve as if the stream began at 10:35 UTC.
SEED_START = 10 * 3600 + 35 * 60


@dataclass
class Served:
    t: float
    workflow: str
    bad: bool  # the answer was wrong (not grounded in policy) — what the assistant's evaluator flags
    fallback: str | None
    culprit: str | None  # the version of the story's config that served it
    subject: str


@dataclass
class RefundDecision:
    wall: float
    t: float
    allowed: bool
    fallback: str | None
    revision: int
    incident_id: int | None
    control_type: str | None


class Ledger:
    """The application's own measurements, per workflow in time order (bisect for windows)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.served: dict[str, list[Served]] = {}
        self._times: dict[str, list[float]] = {}
        self.complaints: dict[str, list[float]] = {}
        self.refunds: list[RefundDecision] = []
        self.refunds_issued = 0
        self.refunds_to_humans = 0
        self.wrong_refunds_issued = 0
        self.changes: list[tuple[float, float, int]] = []  # (wall, stream, revision) the Guard saw

    def add(self, s: Served) -> None:
        with self.lock:
            self.served.setdefault(s.workflow, []).append(s)
            self._times.setdefault(s.workflow, []).append(s.t)

    def complaint(self, workflow: str, t: float) -> None:
        with self.lock:
            insort(self.complaints.setdefault(workflow, []), t)

    def window(self, workflow: str, since: float, until: float) -> list[Served]:
        with self.lock:
            times = self._times.get(workflow, [])
            rows = self.served.get(workflow, [])
            return rows[bisect_left(times, since):bisect_left(times, until)]

    def bad_rate(self, workflow: str, since: float, until: float, *, model_only: bool = True
                 ) -> tuple[float | None, int]:
        rows = [s for s in self.window(workflow, since, until) if not model_only or s.fallback is None]
        if not rows:
            return None, 0
        return sum(1 for s in rows if s.bad) / len(rows), len(rows)

    def harm(self, workflow: str, since: float, until: float) -> tuple[int, int]:
        """Harmful requests by DESIGN.md's definition for answer quality (wrong answers served, and
        complaints) in [since, until), and the distinct customers given a wrong answer."""
        bad = [s for s in self.window(workflow, since, until) if s.bad]
        with self.lock:
            ts = self.complaints.get(workflow, [])
            comp = bisect_left(ts, until) - bisect_left(ts, since)
        return len(bad) + comp, len({s.subject for s in bad})


class SupportAssistant:
    """Generates the assistant's traffic in stream time, on a thread, until stopped."""

    def __init__(self, *, url: str, token: str, clock: StreamClock, scenario: DemoScenario, seed: int = 7) -> None:
        self.clock = clock
        self.scenario = scenario
        self.workflows: list[WorkflowSpec] = scenario.workflows()
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.guard = Guard(url=url, token=token, service="support-bot", clock=clock, lkg_path=None,
                           defaults={"refund-desk.issue_refund": "fail_closed"}, queue_size=200_000,
                           flush_interval=0.2, stale_after=max(900.0, 60.0 * clock.speed),
                           heartbeat_interval=5.0)
        self.guard.add_listener(self._on_guard)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-assistant", daemon=True)
        self._pending: list[tuple[float, int, str, str, str, str]] = []  # complaints to come
        self._seq = 0
        self.t0 = 0.0
        self.requests = 0
        self.skipped = 0  # simulated arrivals left out to keep up with the clock (an overloaded machine)
        self.lag = 0.0  # stream seconds the traffic is behind the server's clock
        self.armed = False  # set once the bad version is rolled out: containment is looked for from then on
        self.contained_at: tuple[float, float] | None = None  # (wall, stream) the Guard first showed it
        self.contained_revision = 0  # the snapshot revision it showed it in

    # ----- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        self.t0 = self.clock.server_now()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.guard.close(timeout=30.0)

    def _on_guard(self, kind: str, revision: int) -> None:
        if kind not in ("ready", "changed"):
            return
        wall, t = time.time(), self.clock.server_now()
        with self.ledger.lock:
            self.ledger.changes.append((wall, t, revision))
        if self.armed and self.contained_at is None and self.contained():
            self.contained_at = (wall, t)
            self.contained_revision = revision

    def contained(self) -> bool:
        """What containment means to this application: its own `decide` sends refunds to the human queue,
        and it is served the story's config at its stable version again."""
        sc = self.scenario
        probe = "acct-00001"
        if self.guard.versions(sc.workflow, key=probe).get(sc.config_key) != sc.stable:
            return False
        if sc.action is None:
            return True
        d = self.guard.decide(sc.workflow, action=sc.action, key=probe)
        return not d.allowed and d.fallback == "human_queue"

    # ----- traffic ----------------------------------------------------------------------------------------

    def _rate(self, wf: WorkflowSpec, t: float) -> float:
        seed_t = SEED_START + (t - self.t0)
        return wf.peak_rps * diurnal(seed_t)

    def _run(self) -> None:
        nxt = {wf.name: self.t0 + self.rng.expovariate(self._rate(wf, self.t0)) for wf in self.workflows}
        by_name = {wf.name: wf for wf in self.workflows}
        while not self._stop.is_set():
            now = self.clock.server_now()
            oldest = min(nxt.values())
            self.lag = max(0.0, now - oldest)
            if self.lag > MAX_LAG_S:
                # The machine cannot generate traffic as fast as the clock runs: skip ahead rather than
                # report events minutes late (the vitals monitor reads event time against its own clock).
                for name, wf in by_name.items():
                    while nxt[name] < now - CATCH_UP_TO_S:
                        nxt[name] += self.rng.expovariate(self._rate(wf, nxt[name]))
                        self.skipped += 1
            due = sorted((t, name) for name, t in nxt.items() if t <= now)
            while self._pending and self._pending[0][0] <= now:
                t, _, wf_name, subject, text, channel = heapq.heappop(self._pending)
                self.clock.pin(t)
                self.guard.complaint(wf_name, text, subject=subject, channel=channel)
                self.ledger.complaint(wf_name, t)
            for t, name in due:
                wf = by_name[name]
                while nxt[name] <= now and not self._stop.is_set():
                    t = nxt[name]
                    self.clock.pin(t)
                    try:
                        self._request(wf, t)
                    finally:
                        self.clock.pin(None)
                    nxt[name] = t + self.rng.expovariate(self._rate(wf, t))
            self.clock.pin(None)
            if not due:
                time.sleep(0.003)

    def _segment(self, wf: WorkflowSpec) -> str | None:
        u = self.rng.random()
        acc = 0.0
        for seg, p in wf.segments.items():
            acc += p
            if u < acc:
                return seg
        return None

    def _request(self, wf: WorkflowSpec, t: float) -> None:
        rng = self.rng
        sc = self.scenario
        self.requests += 1
        self._seq += 1
        subject = f"acct-{rng.randrange(20000):05d}"
        segment = self._segment(wf)
        session = f"s-{wf.name}-{self._seq}"
        item = rng.choice(texts.ITEMS)
        question = rng.choice(texts.QUESTIONS.get(wf.name, ("Question about my {item}?",))).format(item=item)
        # A request that would end in an action with side effects (a refund) asks about the action path first.
        wants_action = wf.action is not None and rng.random() < wf.action_prob
        da = self._decide_action(wf, t, subject, segment) if wants_action else None
        d = self.guard.decide(wf.name, segment=segment, key=subject)
        with self.guard.trace(wf.name, subject=subject, session_id=session, segment=segment, key=subject) as tr:
            culprit = tr.versions.get(sc.config_key)
            if not d.allowed:
                self._backup(tr, wf, d, t, subject, culprit, question)
                if da is not None:
                    with self.ledger.lock:
                        self.ledger.refunds_to_humans += 1
                return
            hurt = wf.name == sc.workflow and sc.hurts(tr.versions, segment)
            rates: Rates = wf.rates.scaled({})
            model = wf.model
            if hurt:
                for k, v in sc.bad_rates.items():
                    setattr(rates, k, v)
                model = sc.bad_model or model
            error = rng.random() < rates.error
            refusal = (not error) and rng.random() < rates.refusal
            ungrounded = wf.grounded and not error and not refusal and rng.random() < rates.ungrounded
            if refusal:
                answer = rng.choice(texts.REFUSALS)
            elif ungrounded and hurt:
                answer = rng.choice(WRONG_ANSWERS.get(sc.theme, texts.ANSWERS))
            else:
                answer = rng.choice(texts.ANSWERS)
            sampled = rng.random() < 0.25
            tr.response(status=500 if error else 200, refusal=refusal,
                        grounded=(not ungrounded) if wf.grounded and not error and not refusal else None,
                        model=model, latency_ms=round(rng.lognormvariate(math.log(rates.latency_ms), 0.35), 1),
                        input=question if sampled else None,
                        output=answer.format(item=item) if sampled and not error else None)
            self.ledger.add(Served(t, wf.name, ungrounded, None, culprit, subject))
            if wf.tool and not error and rng.random() < wf.tool_prob:
                tr.tool_call(wf.tool, {"subject": subject, "summary": f"{item} issue"})
            if da is not None and not error and not refusal:
                self._act(tr, wf, da, subject, wrong=ungrounded)
            bad = error or refusal or ungrounded
            p = 0.15 if (hurt and bad) else rates.complaint
            if rng.random() < p:
                theme = sc.theme if hurt and bad and rng.random() < 0.85 else None
                text = rng.choice(texts.THEMES[theme]).format(item=item) if theme else \
                    rng.choice(texts.GENERIC_COMPLAINTS)
                delay = min(rng.lognormvariate(math.log(60), 0.6), 900)
                self._seq += 1
                heapq.heappush(self._pending, (t + delay, self._seq, wf.name, subject, text,
                                               rng.choice(("chat", "email", "app_review", "support_ticket"))))

    def _decide_action(self, wf: WorkflowSpec, t: float, subject: str, segment: str | None) -> Decision:
        """The assistant asks its Guard before every refund."""
        assert wf.action is not None
        da = self.guard.decide(wf.name, action=wf.action, segment=segment, key=subject)
        rec = RefundDecision(time.time(), t, da.allowed, da.fallback, da.revision, da.incident_id, da.control_type)
        with self.ledger.lock:
            self.ledger.refunds.append(rec)
        return da

    def _act(self, tr: Any, wf: WorkflowSpec, da: Decision, subject: str, *, wrong: bool) -> None:
        """Issue the refund when the action path is open; otherwise the case goes to the human queue."""
        assert wf.action is not None
        with self.ledger.lock:
            if da.allowed:
                self.ledger.refunds_issued += 1
                self.ledger.wrong_refunds_issued += int(wrong)
            else:
                self.ledger.refunds_to_humans += 1
        if da.allowed:
            amount = round(self.rng.lognormvariate(math.log(60), 0.8), 2)
            tr.action(wf.action, target=subject, authorized_targets=[subject], attributes={"amount": amount})

    def _backup(self, tr: Any, wf: WorkflowSpec, d: Decision, t: float, subject: str, culprit: str | None,
                question: str) -> None:
        """The backup ambulance: a person in the human queue (or a static answer) takes the request."""
        fb = d.fallback or "human_queue"
        if fb == "static_answer":
            out = d.target or "We're checking this for you; a specialist will follow up shortly."
        elif fb == "backup_model":
            out = "Answered by the backup model."
        else:
            out = "Thanks — a member of our support team has your request and will reply within the hour."
        tr.response(status=200, refusal=False, grounded=True, fallback=fb,
                    model=d.target if fb == "backup_model" and d.target else None,
                    latency_ms=round(self.rng.uniform(200, 600), 1), input=question, output=out)
        self.ledger.add(Served(t, wf.name, False, fb, culprit, subject))
