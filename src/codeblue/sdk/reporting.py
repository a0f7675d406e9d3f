"""Reporting what the AI did: Event v1 dicts built on the request path, queued, and sent in batches.

The request path only builds a dict and appends it to a bounded in-memory queue (a lock held for a few
hundred nanoseconds); the Guard's background thread sends batches to ``POST /v1/events``. A full queue
drops its oldest event and counts it, so a stopped server costs at most the queue and says how much.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import fastjsonschema

if TYPE_CHECKING:
    from codeblue.sdk.guard import Guard

FALLBACKS = ("backup_model", "human_queue", "static_answer")


class EventQueue:
    """A bounded FIFO of events: the newest always fits, the oldest is dropped (and counted) when full."""

    def __init__(self, capacity: int, batch_size: int, wake: threading.Event) -> None:
        if capacity < 1 or batch_size < 1:
            raise ValueError("queue capacity and batch size must be >= 1")
        self.capacity = capacity
        self.batch_size = batch_size
        self._q: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self.wake = wake
        self.enqueued = 0
        self.dropped = 0
        self.sent = 0
        self.rejected = 0
        self._held: tuple[list[dict[str, Any]], str] | None = None

    def put(self, ev: dict[str, Any]) -> None:
        q = self._q
        with self._lock:
            held = self._held
            if len(q) + (len(held[0]) if held is not None else 0) >= self.capacity:
                self._drop_oldest()
            q.append(ev)
            self.enqueued += 1
            full = len(q) >= self.batch_size
        if full and not self.wake.is_set():
            self.wake.set()

    def take_batch(self, n: int) -> tuple[list[dict[str, Any]], str]:
        """The next batch to send and its idempotency key: the held batch first (with its key), else up to `n`
        queued events under a new key."""
        with self._lock:
            if self._held is not None:
                held, self._held = self._held, None
                return held
            q = self._q
            return [q.popleft() for _ in range(min(n, len(q)))], uuid.uuid4().hex

    def hold(self, batch: list[dict[str, Any]], key: str) -> None:
        """Keep a batch whose fate is unknown (a timeout, a dropped connection, a 5xx: the server may have
        stored it) to be sent again first, under the same key, so the server stores it once.

        It counts towards the capacity, and being older than anything queued, its events are the first to go
        when the queue overflows. A held batch only ever shrinks, so the key stays right: if the server
        stored the whole batch, it stored every event of what is left of it too."""
        with self._lock:
            self._held = (batch, key)
            while len(self._q) + len(batch) > self.capacity:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        held = self._held
        if held is not None:
            held[0].pop(0)
            if not held[0]:
                self._held = None
        else:
            self._q.popleft()
        self.dropped += 1

    def give_back(self, batch: list[dict[str, Any]]) -> None:
        """Return an unsent batch to the front; if that overfills the queue, the oldest go (counted)."""
        with self._lock:
            self._q.extendleft(reversed(batch))
            while len(self._q) > self.capacity:
                self._q.popleft()
                self.dropped += 1

    def __len__(self) -> int:
        held = self._held
        return len(self._q) + (len(held[0]) if held is not None else 0)

    def clear(self) -> None:
        with self._lock:
            self._q.clear()
            self._held = None

    def reset_after_fork(self, wake: threading.Event) -> None:
        """A forked child starts empty: the parent sends what it had queued."""
        self._lock = threading.Lock()
        self.wake = wake
        self._q = deque()
        self._held = None
        self.enqueued = self.dropped = self.sent = self.rejected = 0


class ToolContracts:
    """JSON Schema validators for `tool_contract/<tool>` configs, compiled once per version."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], Callable[[Any], Any] | str] = {}
        self._lock = threading.Lock()

    def validator(self, tool: str, version: str, content: Any) -> Callable[[Any], Any] | str:
        """A validate function, or a string saying why the contract could not be compiled."""
        key = (tool, version)
        found = self._cache.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                return found
            compiled: Callable[[Any], Any] | str
            try:
                schema = json.loads(content) if isinstance(content, str | bytes) else content
                if not isinstance(schema, dict | bool):
                    raise TypeError(f"a JSON Schema is an object, not {type(schema).__name__}")
                compiled = fastjsonschema.compile(schema)
            except Exception as e:  # a broken contract must not break the application
                compiled = f"tool_contract/{tool} {version} is not a usable JSON Schema: {e}"
            self._cache[key] = compiled
            return compiled

    def check(self, tool: str, version: str, content: Any, arguments: Any) -> tuple[bool | None, dict[str, Any]]:
        """(args_valid, attributes): True/False, or None when the contract itself is unusable."""
        v = self.validator(tool, version, content)
        if isinstance(v, str):
            return None, {"args_contract_error": v}
        try:
            v(arguments)
        except fastjsonschema.JsonSchemaValueException as e:
            path = [str(p) for p in (e.path or [])]
            if path and path[0] == "data":
                path = path[1:]
            return False, {"args_error_path": "/".join(path) or "$", "args_error": str(e.message)}
        except Exception as e:
            return False, {"args_error_path": "$", "args_error": f"{type(e).__name__}: {e}"}
        return True, {}

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


def _sampled(rate: float) -> bool:
    return rate >= 1.0 or (rate > 0.0 and random.random() < rate)


class Trace:
    """One request of one workflow: `response`, `tool_call` and `action` events share its correlation ids.

    Use it as a context manager (``with guard.trace(...) as t``); an exception escaping the block records a
    ``status: 500`` response if the block had not recorded one, then propagates.
    """

    __slots__ = ("_base", "_guard", "_responded", "key", "trace_id", "versions", "workflow")

    def __init__(
        self,
        guard: Guard,
        workflow: str,
        *,
        subject: str | None,
        session_id: str | None,
        trace_id: str | None,
        segment: str | None,
        key: str | None,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        self._guard = guard
        self.workflow = workflow
        self.key = key if key is not None else subject
        # a 128-bit id (32 hex digits): a random per-process prefix and a counter, unique without a syscall
        self.trace_id = trace_id or f"{guard._trace_prefix}{next(guard._trace_seq) & 0xFFFFFFFFFFFFFFFF:016x}"
        self.versions = guard.versions(workflow, key=self.key)
        base: dict[str, Any] = {"workflow": workflow, "trace_id": self.trace_id}
        if guard.service:
            base["service"] = guard.service
        if subject is not None:
            base["subject"] = subject
        if session_id is not None:
            base["session_id"] = session_id
        if segment is not None:
            base["segment"] = segment
        if self.versions:
            base["versions"] = self.versions
        if attributes:
            base["attributes"] = dict(attributes)
        self._base = base
        self._responded = False

    def _event(self, kind: str) -> dict[str, Any]:
        ev = self._base.copy()
        ev["time"] = self._guard._clock()
        ev["kind"] = kind
        return ev

    def _attrs(self, ev: dict[str, Any], extra: Mapping[str, Any] | None) -> None:
        if extra:
            merged = dict(ev.get("attributes") or {})
            merged.update(extra)
            ev["attributes"] = merged

    def response(
        self,
        *,
        status: int | None = None,
        refusal: bool | None = None,
        grounded: bool | None = None,
        model: str | None = None,
        latency_ms: float | None = None,
        fallback: str | None = None,
        input: str | None = None,
        output: str | None = None,
        retrieval_age_s: float | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the answer served (never raises; a bad value is left out and named in attributes)."""
        ev = self._event("response")
        if status is not None:
            ev["status"] = status
        if refusal is not None:
            ev["refusal"] = refusal
        if grounded is not None:
            ev["grounded"] = grounded
        if model is not None:
            ev["model"] = model
        if latency_ms is not None:
            ev["latency_ms"] = latency_ms
        if retrieval_age_s is not None:
            ev["retrieval_age_s"] = retrieval_age_s
        if fallback is not None:
            if fallback in FALLBACKS:
                ev["fallback"] = fallback
            else:
                self._attrs(ev, {"invalid_fallback": str(fallback)})
        if (input is not None or output is not None) and _sampled(self._guard.text_sample_rate):
            if input is not None:
                ev["input"] = input
            if output is not None:
                ev["output"] = output
        if attributes:
            self._attrs(ev, attributes)
        self._responded = True
        self._guard._queue.put(ev)

    def tool_call(
        self, tool: str, arguments: Mapping[str, Any] | None = None, *, attributes: Mapping[str, Any] | None = None
    ) -> bool | None:
        """Record a tool call; its arguments are checked against the active `tool_contract/<tool>`.

        Returns ``args_valid``: True or False, or None when there is no usable contract for the tool.
        """
        ev = self._event("tool_call")
        ev["tool"] = tool
        args = dict(arguments) if arguments is not None else {}
        ev["arguments"] = args
        valid, extra, contract = self._guard._check_tool_args(tool, args, self.key)
        if valid is not None:
            ev["args_valid"] = valid
        if contract is not None and contract[0] not in self.versions:
            ev["versions"] = {**self.versions, contract[0]: contract[1]}
        self._attrs(ev, {**extra, **(attributes or {})})
        self._guard._queue.put(ev)
        return valid

    def action(
        self,
        action: str,
        *,
        target: str | None = None,
        authorized_targets: list[str] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an action with side effects and whom it touched (for the wrong-entity indicator)."""
        ev = self._event("action")
        ev["action"] = action
        if target is not None:
            ev["target"] = target
        if authorized_targets is not None:
            ev["authorized_targets"] = list(authorized_targets)
        if attributes:
            self._attrs(ev, attributes)
        self._guard._queue.put(ev)

    def __enter__(self) -> Trace:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and not self._responded and issubclass(exc_type, Exception):
            self.response(status=500, attributes={"error": exc_type.__name__})
