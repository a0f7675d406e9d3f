"""Event v1 (DESIGN.md): the one shape every intake path (HTTP batches, OTLP traces, replay files) produces.

``parse_event(obj, index)`` validates one decoded JSON object and returns an ``Event`` or raises
``EventError`` naming the field and the reason. Validation is per event: a batch keeps its good events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

KINDS = ("response", "tool_call", "action", "complaint")
FALLBACKS = ("backup_model", "human_queue", "static_answer")


class EventError(ValueError):
    def __init__(self, index: int, field_name: str, reason: str) -> None:
        super().__init__(f"event {index}: {field_name}: {reason}")
        self.index = index
        self.field = field_name
        self.reason = reason

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass(slots=True)
class Event:
    time: float
    workflow: str
    kind: str
    trace_id: str | None = None
    session_id: str | None = None
    service: str | None = None
    subject: str | None = None
    segment: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    fallback: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    refusal: bool | None = None
    grounded: bool | None = None
    retrieval_age_s: float | None = None
    model: str | None = None
    input: str | None = None
    output: str | None = None
    tool: str | None = None
    args_valid: bool | None = None
    arguments: dict[str, Any] | None = None
    action: str | None = None
    target: str | None = None
    authorized_targets: list[str] | None = None
    text: str | None = None
    channel: str | None = None
    attributes: dict[str, Any] | None = None

    @property
    def is_error(self) -> bool:
        return self.status is not None and self.status >= 500

    @property
    def wrong_entity(self) -> bool:
        """An action whose target is set, differs from the subject, and is not authorised."""
        if self.kind != "action" or not self.target:
            return False
        if self.target == self.subject:
            return False
        return not (self.authorized_targets and self.target in self.authorized_targets)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.time, "workflow": self.workflow, "kind": self.kind}
        for name in _OPTIONAL:
            val = getattr(self, name)
            if val is not None and val != {}:
                out[name] = val
        return out


_OPTIONAL = tuple(f for f in Event.__dataclass_fields__ if f not in ("time", "workflow", "kind"))
_STR_FIELDS = ("trace_id", "session_id", "service", "subject", "segment", "model", "input", "output", "tool",
               "action", "target", "text", "channel")
_BOOL_FIELDS = ("refusal", "grounded", "args_valid")
_NUM_FIELDS = ("latency_ms", "retrieval_age_s")


def parse_time(value: Any, index: int = 0) -> float:
    if isinstance(value, bool):
        raise EventError(index, "time", "expected unix seconds or an RFC 3339 string, got a boolean")
    if isinstance(value, (int, float)):
        t = float(value)
        if t > 1e11:  # milliseconds by mistake are a common slip; say so rather than guess
            raise EventError(index, "time", f"{value} looks like milliseconds; send unix seconds")
        return t
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise EventError(index, "time", f"{value!r} is not an RFC 3339 time") from None
    raise EventError(index, "time", "required: unix seconds or an RFC 3339 string")


def parse_event(obj: Any, index: int = 0) -> Event:
    """Validate one decoded JSON object as Event v1."""
    if not isinstance(obj, dict):
        raise EventError(index, "", f"expected a JSON object, got {type(obj).__name__}")
    if "time" not in obj:
        raise EventError(index, "time", "required")
    t = parse_time(obj["time"], index)
    wf = obj.get("workflow")
    if not isinstance(wf, str) or not wf:
        raise EventError(index, "workflow", "required: a non-empty string")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise EventError(index, "kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    ev = Event(time=t, workflow=wf, kind=kind)
    for name in _STR_FIELDS:
        v = obj.get(name)
        if v is not None:
            if not isinstance(v, str):
                raise EventError(index, name, f"expected a string, got {type(v).__name__}")
            setattr(ev, name, v)
    for name in _BOOL_FIELDS:
        v = obj.get(name)
        if v is not None:
            if not isinstance(v, bool):
                raise EventError(index, name, f"expected true or false, got {v!r}")
            setattr(ev, name, v)
    for name in _NUM_FIELDS:
        v = obj.get(name)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise EventError(index, name, f"expected a non-negative number, got {v!r}")
            setattr(ev, name, float(v))
    st = obj.get("status")
    if st is not None:
        if isinstance(st, bool) or not isinstance(st, int) or not 0 <= st < 1000:
            raise EventError(index, "status", f"expected an integer status code, got {st!r}")
        ev.status = st
    vers = obj.get("versions")
    if vers is not None:
        if not isinstance(vers, dict):
            raise EventError(index, "versions", "expected an object of \"<kind>/<name>\" → version")
        for k, v in vers.items():
            if "/" not in k:
                raise EventError(index, f"versions.{k}", "keys are \"<kind>/<name>\", e.g. prompt/refund-assistant")
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise EventError(index, f"versions.{k}", f"expected a version string, got {v!r}")
        ev.versions = {k: str(v) for k, v in vers.items()}
    fb = obj.get("fallback")
    if fb is not None:
        if not isinstance(fb, str):
            raise EventError(index, "fallback", "expected a string")
        ev.fallback = fb
    args = obj.get("arguments")
    if args is not None:
        if not isinstance(args, dict):
            raise EventError(index, "arguments", "expected an object")
        ev.arguments = args
    at = obj.get("authorized_targets")
    if at is not None:
        if not isinstance(at, list) or not all(isinstance(x, str) for x in at):
            raise EventError(index, "authorized_targets", "expected a list of strings")
        ev.authorized_targets = at
    attrs = obj.get("attributes")
    if attrs is not None:
        if not isinstance(attrs, dict):
            raise EventError(index, "attributes", "expected an object")
        ev.attributes = attrs
    return ev
