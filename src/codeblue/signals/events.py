"""Event v1 (DESIGN.md): the one shape every intake path (HTTP batches, OTLP traces, replay files) produces.

``parse_event(obj, index)`` validates one decoded JSON object and returns an ``Event`` or raises
``EventError`` naming the field and the reason. Validation is per event: a batch keeps its good events.
``parse_event_dict(obj, index)`` does the same validation and returns the normalised Event v1 dict (what
intake redacts and stores); ``Event.from_dict`` turns that dict into an ``Event`` without re-checking it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

KINDS = ("response", "tool_call", "action", "complaint")
FALLBACKS = ("backup_model", "human_queue", "static_answer")
#: Longest accepted workflow name (it is an indexed column).
MAX_WORKFLOW = 200


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """An Event from a dict that `parse_event_dict` produced (no validation)."""
        return cls(**d)


_OPTIONAL = tuple(f for f in Event.__dataclass_fields__ if f not in ("time", "workflow", "kind"))
_STR_FIELDS = ("trace_id", "session_id", "service", "subject", "segment", "model", "input", "output", "tool",
               "action", "target", "text", "channel", "fallback")
#: String fields that are stored in their own (indexed) columns: no NUL characters there.
_COLUMN_STR = frozenset(("trace_id", "session_id", "subject", "segment", "model", "fallback", "service"))
_BOOL_FIELDS = ("refusal", "grounded", "args_valid")
_NUM_FIELDS = ("latency_ms", "retrieval_age_s")
FIELDS = frozenset(Event.__dataclass_fields__)


def parse_time(value: Any, index: int = 0) -> float:
    if isinstance(value, bool):
        raise EventError(index, "time", "expected unix seconds or an RFC 3339 string, got a boolean")
    if isinstance(value, (int, float)):
        t = float(value)
        if t > 1e11:  # milliseconds by mistake are a common slip; say so rather than guess
            raise EventError(index, "time", f"{value} looks like milliseconds; send unix seconds")
        if t < 0:
            raise EventError(index, "time", f"{value} is before 1970; send unix seconds")
        return t
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise EventError(index, "time", f"{value!r} is not an RFC 3339 time") from None
        if dt.tzinfo is None:
            raise EventError(index, "time", f"{value!r} has no UTC offset; add Z or +hh:mm (RFC 3339)")
        return dt.timestamp()
    raise EventError(index, "time", "required: unix seconds or an RFC 3339 string")


# ----- one checker per field: (value, index, name) -> normalised value ------------------------------------


def _str(v: Any, i: int, name: str) -> str:
    if type(v) is not str:
        raise EventError(i, name, f"expected a string, got {_tname(v)}")
    if name in _COLUMN_STR and "\x00" in v:
        raise EventError(i, name, "must not contain NUL characters")
    return v


def _bool(v: Any, i: int, name: str) -> bool:
    if type(v) is not bool:
        raise EventError(i, name, f"expected true or false, got {v!r}")
    return v


def _num(v: Any, i: int, name: str) -> float:
    t = type(v)
    if (t is not float and t is not int) or v < 0:
        raise EventError(i, name, f"expected a non-negative number, got {v!r}")
    return float(v)


def _status(v: Any, i: int, name: str) -> int:
    if type(v) is not int or not 0 <= v < 1000:
        raise EventError(i, name, f"expected an integer status code, got {v!r}")
    return int(v)


def _versions(v: Any, i: int, name: str) -> dict[str, str]:
    if type(v) is not dict:
        raise EventError(i, name, "expected an object of \"<kind>/<name>\" → version")
    out: dict[str, str] = {}
    for k, ver in v.items():
        if "/" not in k or k.startswith("/") or k.endswith("/") or len(k) > 300 or "\x00" in k:
            raise EventError(i, f"versions.{k}", "keys are \"<kind>/<name>\" (at most 300 characters), "
                             "e.g. prompt/refund-assistant")
        tv = type(ver)
        if tv is str:
            if not ver or len(ver) > 200 or "\x00" in ver:
                raise EventError(i, f"versions.{k}", "the version must be 1 to 200 characters, no NUL")
            out[k] = ver
        elif tv is int:
            out[k] = str(ver)
        else:
            raise EventError(i, f"versions.{k}", f"expected a version string, got {ver!r}")
    return out


def _obj(v: Any, i: int, name: str) -> dict[str, Any]:
    if type(v) is not dict:
        raise EventError(i, name, f"expected an object, got {_tname(v)}")
    return v


def _str_list(v: Any, i: int, name: str) -> list[str]:
    if type(v) is not list or not all(type(x) is str for x in v):
        raise EventError(i, name, "expected a list of strings")
    return v


def _tname(v: Any) -> str:
    if v is None:
        return "null"
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(v), type(v).__name__)


_CHECK: dict[str, Callable[[Any, int, str], Any]] = {
    **{n: _str for n in _STR_FIELDS},
    **{n: _bool for n in _BOOL_FIELDS},
    **{n: _num for n in _NUM_FIELDS},
    "status": _status,
    "versions": _versions,
    "arguments": _obj,
    "attributes": _obj,
    "authorized_targets": _str_list,
}


#: Field → the one JSON type its value has in the common case (checked by identity on the fast path).
_FAST_TYPE: dict[str, Any] = {
    **{n: str for n in _STR_FIELDS},
    **{n: bool for n in _BOOL_FIELDS},
    **{n: float for n in _NUM_FIELDS},
    "status": int,
    "arguments": dict,
    "attributes": dict,
    "authorized_targets": list,
}
#: Version pairs already checked: versions repeat on almost every event, so they are checked once.
_GOOD_VERSIONS: set[tuple[str, str]] = set()


def _versions_fast(v: Any, i: int) -> dict[str, str]:
    if type(v) is dict:
        good = _GOOD_VERSIONS
        for pair in v.items():
            if type(pair[1]) is not str or pair not in good:  # (an object as a version is not hashable)
                break
        else:
            return v
        out = _versions(v, i, "versions")
        if len(good) > 50_000:
            good.clear()
        good.update(out.items())
        return out
    return _versions(v, i, "versions")


def parse_event_dict(obj: Any, index: int = 0, *, check_nul: bool = True) -> dict[str, Any]:
    """Validate one decoded JSON object as Event v1 and return its normalised dict.

    `time` becomes unix seconds, versions become strings, nulls are dropped. Fields Event v1 does not
    name are kept under `attributes` (an explicit attribute of the same name wins), so nothing sent is lost.
    The result may be `obj` itself, normalised in place, when nothing needed changing (the common case).
    `check_nul=False` skips the NUL-character checks: intake passes it when the raw body has no ``\\u0000``.
    """
    if type(obj) is not dict:
        raise EventError(index, "", f"expected a JSON object, got {_tname(obj)}")
    t = obj.get("time")
    if t is None:
        raise EventError(index, "time", "required")
    wf = obj.get("workflow")
    if type(wf) is not str or not wf:
        raise EventError(index, "workflow", "required: a non-empty string")
    if len(wf) > MAX_WORKFLOW or (check_nul and "\x00" in wf):
        raise EventError(index, "workflow", f"at most {MAX_WORKFLOW} characters, no NUL characters")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise EventError(index, "kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    if type(t) is not float or not 0 <= t <= 1e11:
        obj["time"] = parse_time(t, index)
    fast = _FAST_TYPE
    slow = False
    for k, v in obj.items():
        tp = fast.get(k)
        if tp is type(v):
            if tp is str:
                if check_nul and k in _COLUMN_STR and "\x00" in v:
                    raise EventError(index, k, "must not contain NUL characters")
            elif tp is float:
                if v < 0:
                    raise EventError(index, k, f"expected a non-negative number, got {v!r}")
            elif tp is int:
                if not 0 <= v < 1000:
                    raise EventError(index, k, f"expected an integer status code, got {v!r}")
            elif tp is list:
                for x in v:
                    if type(x) is not str:
                        raise EventError(index, k, "expected a list of strings")
        elif tp is None:
            if k == "versions" and v is not None:
                if _versions_fast(v, index) is not v:
                    slow = True
            elif k not in ("time", "workflow", "kind"):
                slow = True
        else:
            slow = True
    if not slow:
        return obj
    return _parse_slow(obj, index)


def _parse_slow(obj: dict[str, Any], index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"time": obj["time"], "workflow": obj["workflow"], "kind": obj["kind"]}
    extra: dict[str, Any] | None = None
    check = _CHECK
    for k, v in obj.items():
        if v is None:
            continue
        c = check.get(k)
        if c is not None:
            out[k] = c(v, index, k)
        elif k not in out:
            if extra is None:
                extra = {}
            extra[k] = v
    if extra:
        attrs = out.get("attributes")
        out["attributes"] = {**extra, **attrs} if attrs else extra
    return out


def parse_event(obj: Any, index: int = 0) -> Event:
    """Validate one decoded JSON object as Event v1."""
    return Event(**parse_event_dict(obj, index))
