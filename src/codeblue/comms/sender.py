"""The sender: a small pipeline of stages over the outbox — claim due → deliver (in parallel) → record.

Retries back off exponentially with jitter (``base·2^(n-1)``, capped, "equal jitter": half fixed, half random)
and honour a receiver's ``Retry-After``; after the channel's max attempts the message is dead-lettered with
the last reason. A message whose delivery was confirmed (2xx, or SMTP accepted it) is never sent again.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session

from codeblue.comms import channels, outbox
from codeblue.comms.channels import ChannelSpec, Result
from codeblue.comms.outbox import Claimed
from codeblue.comms.transport import HttpPool
from codeblue.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 256


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Delay before attempt `attempt + 1`: exponential, capped, with equal jitter."""
    delay = min(cap, base * float(2 ** max(attempt - 1, 0)))
    return delay / 2 + rng.uniform(0, delay / 2)


@dataclass
class Outcome:
    claimed: Claimed
    result: Result
    started_at: float
    finished_at: float


class Sender:
    """Delivers due outbox messages. One per process; safe to run beside senders in other replicas."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        st = rt.settings
        self.concurrency = max(1, st.comms_sender_concurrency)
        self.http = HttpPool()
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="comms-send")
        # Results are recorded by one thread while the next batch is on the wire (record ∥ send).
        self.recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="comms-record")
        self.rng = random.Random()
        self._specs: dict[str, ChannelSpec] = {}
        self._version: tuple[int, float] | None = None
        self._lock = threading.Lock()

    # Signature timestamps are compared by receivers against *their* wall clock, so they use wall time even
    # when the server clock is accelerated or manual (this is transport, not domain time).
    wall = staticmethod(time.time)

    def close(self) -> None:
        self.recorder.shutdown(wait=True)
        self.pool.shutdown(wait=True)

    def _refresh_specs(self) -> dict[str, ChannelSpec]:
        with self.rt.db.read() as s:
            version = channels.channels_version(s)
            if version != self._version:
                self._specs = channels.load_specs(s, self.rt.server_key)
                self._version = version
        return self._specs

    def _timeout(self, spec: ChannelSpec | None) -> float:
        return float(spec.config.get("timeout", self.rt.settings.comms_send_timeout)) if spec else 1.0

    def _max_attempts(self, spec: ChannelSpec | None) -> int:
        if spec is not None and "max_attempts" in spec.config:
            return int(spec.config["max_attempts"])
        return self.rt.settings.comms_max_attempts

    def _send_one(self, specs: dict[str, ChannelSpec], msg: Claimed) -> Outcome:
        clock = self.rt.clock
        started = clock.now()
        spec = specs.get(msg.channel)
        if spec is None:
            result = Result("retry", None, f"channel {msg.channel!r} is not configured")
        elif not spec.enabled:
            result = Result("retry", None, f"channel {msg.channel!r} is disabled")
        else:
            try:
                result = channels.deliver(spec, msg, http=self.http, timeout=self._timeout(spec), wall=self.wall,
                                          mail_domain=channels.mail_domain_for(spec))
            except Exception as exc:  # a transport bug must not kill the sender; the message stays visible
                log.exception("delivering outbox message %s over %s failed", msg.id, msg.channel)
                result = Result("retry", None, f"internal error: {type(exc).__name__}: {exc}")
        return Outcome(msg, result, started, clock.now())

    def deliver_due(self, *, limit: int | None = None) -> int:
        """Deliver everything due now (in batches); returns how many attempts were made."""
        with self._lock:
            return self._deliver_due(limit)

    def _deliver_due(self, limit: int | None) -> int:
        rt = self.rt
        made = 0
        recording: Future[None] | None = None
        with rt.db.read() as s:
            if not outbox.has_due(s, now=rt.clock.now()):
                return 0
        try:
            while limit is None or made < limit:
                specs = self._refresh_specs()
                n = BATCH if limit is None else min(BATCH, limit - made)
                # The lease must outlast the whole batch even if every send times out, or a replica would
                # re-claim messages still in flight.
                slowest = max((self._timeout(s) for s in specs.values()), default=rt.settings.comms_send_timeout)
                rounds = -(-n // self.concurrency)
                lease = (slowest * rounds + 30) * max(rt.settings.clock_speed, 1.0)
                with rt.db.write() as s:
                    batch = outbox.claim_due(s, now=rt.clock.now(), limit=n, lease=lease)
                if not batch:
                    break
                if len(batch) == 1:
                    outcomes = [self._send_one(specs, batch[0])]
                else:
                    outcomes = list(self.pool.map(functools.partial(self._send_one, specs), batch))
                if recording is not None:
                    recording.result()  # at most one batch waits to be recorded
                recording = self.recorder.submit(self._record, specs, outcomes)
                made += len(batch)
        finally:
            if recording is not None:
                recording.result()
        return made

    def _record(self, specs: dict[str, ChannelSpec], outcomes: list[Outcome]) -> None:
        st = self.rt.settings
        results: list[outbox.AttemptResult] = []
        for o in outcomes:
            r = o.result
            outcome, error, retry_at = r.outcome, r.error, None
            if outcome == "retry":
                max_attempts = self._max_attempts(specs.get(o.claimed.channel))
                if o.claimed.attempt >= max_attempts:
                    outcome = "dead"
                    error = f"gave up after {o.claimed.attempt} attempts; last error: {r.error}"
                else:
                    delay = backoff(o.claimed.attempt, base=st.comms_retry_base, cap=st.comms_retry_cap, rng=self.rng)
                    retry_at = o.finished_at + max(delay, r.retry_after or 0.0)
            if outcome == "dead":
                log.warning("outbox message %s dead-lettered: %s", o.claimed.id, error,
                            extra={"incident": o.claimed.incident_id})
            results.append(outbox.AttemptResult(o.claimed.id, o.claimed.attempt, o.started_at, o.finished_at,
                                                outcome, r.status, error, retry_at))
        with self.rt.db.write() as s:
            dead = set(outbox.record_many(s, results))
            for o in outcomes:
                if o.claimed.id in dead and o.claimed.incident_id is not None:
                    self._note_dead(s, o.claimed, next(r.error for r in results if r.message_id == o.claimed.id))

    def _note_dead(self, s: Session, msg: Claimed, reason: str) -> None:
        """A message about an incident that could not be delivered is a fact the responders must see."""
        from codeblue.errors import NotFound
        from codeblue.incidents import service as incidents

        try:
            incidents.append_entry(
                s, self.rt, incident_id=msg.incident_id or 0, kind="comms.dead_letter", actor="system:comms",
                text=f"{msg.kind} via {msg.channel} could not be delivered: {reason}",
                data={"message_id": msg.id, "channel": msg.channel, "dedup_key": msg.dedup_key},
            )
        except NotFound:
            log.warning("dead-lettered message %s refers to missing incident %s", msg.id, msg.incident_id)

    def seconds_until_due(self) -> float | None:
        """Clock seconds until the next pending message is due (None when nothing is pending)."""
        with self.rt.db.read() as s:
            at = outbox.next_due_at(s)
        return None if at is None else max(0.0, at - self.rt.clock.now())


def get_sender(rt: Runtime) -> Sender:
    sender: Sender | None = rt.extras.get("comms.sender")
    if sender is None:
        sender = rt.extras.setdefault("comms.sender", Sender(rt))
    return sender


#: Longest the sender sleeps (wall seconds) without a wake-up, so retries that fall due are picked up.
IDLE_WAIT = 0.5


def sender_job(rt: Runtime) -> None:
    """The periodic job: deliver what is due; in the job thread, then sleep until woken or the next due time."""
    sender = get_sender(rt)
    wake = outbox.wake_event(rt)
    wake.clear()
    sender.deliver_due()
    if not threading.current_thread().name.startswith("job-"):
        return  # driven by run_jobs_once (tests, replays): never block
    due_in = sender.seconds_until_due()
    wait = IDLE_WAIT if due_in is None else min(IDLE_WAIT, due_in / max(rt.settings.clock_speed, 1e-9))
    if wait > 0:
        wake.wait(wait)
