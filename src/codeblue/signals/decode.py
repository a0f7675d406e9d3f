"""Schema-aware decoding of Event v1 JSON: bytes straight to a typed struct, every check in C.

`decode_event(raw)` decodes one JSON text (an NDJSON line) into a `WireEvent` with msgspec. Every type and
range rule of `events.parse_event_dict` is a msgspec constraint, so a line the struct decoder accepts is one
the parser accepts, and the struct holds the same values the parser would produce for the fields detection
reads. The objects whose contents no rule types (`versions`, `arguments`, `attributes`) stay raw JSON and are
checked by `versions_key` with orjson (the versions once per distinct text: they repeat on almost every
event). Whatever the struct refuses — a wrong type, a time given as a string, a NUL character, a field Event v1
does not name (the parser files it under `attributes`), malformed JSON — returns None: the caller then takes
the full parser's path, which names the field exactly.

msgspec's JSON grammar is not orjson's at the edges: it skips over values it does not type without checking
that a number fits a double (orjson rejects `1e400` or a 400-digit integer), and it decodes integers beyond
64 bits exactly where orjson makes them floats. So nothing is skipped (unknown fields are refused), every
untyped value goes through orjson, and the integer branches of the numbers are bounded to 64 bits.

Integer and float values keep their JSON type here (`time` 5 stays an int): the parser's normalisation
(`float(time)`) is the caller's to apply when it builds a stored Event v1 dict.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import orjson

from codeblue.signals.events import MAX_WORKFLOW, EventError, _versions_fast

_Str = str | None
#: Unix seconds: what `parse_time` accepts as a number, unchanged (0 ≤ t ≤ 1e11).
_Time = Annotated[int, msgspec.Meta(ge=0, le=100_000_000_000)] | Annotated[float, msgspec.Meta(ge=0, le=1e11)]
_NonNeg = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | Annotated[float, msgspec.Meta(ge=0)] | None
_NO_RAW = msgspec.Raw(b"")


class WireEvent(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """The fields of Event v1 as decoded from JSON, with the parser's type and range rules."""

    time: _Time
    workflow: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_WORKFLOW)]
    kind: Literal["response", "tool_call", "action", "complaint"]
    versions: msgspec.Raw = _NO_RAW
    trace_id: _Str = None
    session_id: _Str = None
    service: _Str = None
    subject: _Str = None
    segment: _Str = None
    fallback: _Str = None
    status: Annotated[int, msgspec.Meta(ge=0, lt=1000)] | None = None
    latency_ms: _NonNeg = None
    refusal: bool | None = None
    grounded: bool | None = None
    retrieval_age_s: _NonNeg = None
    model: _Str = None
    input: _Str = None
    output: _Str = None
    tool: _Str = None
    args_valid: bool | None = None
    arguments: msgspec.Raw = _NO_RAW
    action: _Str = None
    target: _Str = None
    authorized_targets: list[str] | None = None
    text: _Str = None
    channel: _Str = None
    attributes: msgspec.Raw = _NO_RAW


_decode = msgspec.json.Decoder(WireEvent).decode
#: Raw versions text → its normalised (key, version) pairs, or None when the parser would reject it.
_VERSIONS: dict[bytes, tuple[tuple[str, str], ...] | None] = {}
_EMPTY: tuple[tuple[str, str], ...] = ()


def decode_event(raw: bytes) -> WireEvent | None:
    """The line as a `WireEvent`, or None when only the full parser can judge it (see the module doc)."""
    if b"\\" in raw and b"\\u0000" in raw:  # JSON carries NUL only as this escape (the first test is a memchr)
        return None
    try:
        return _decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):  # ValidationError is a DecodeError; bad UTF-8
        return None


#: Versions texts already checked, by length: (the text, its `versions_key`), at most 4 of each length.
_BY_LEN: dict[int, list[tuple[msgspec.Raw, tuple[tuple[str, str], ...] | None]]] = {}


def decode_line(raw: bytes) -> tuple[WireEvent, tuple[tuple[str, str], ...]] | None:
    """`decode_event` then `versions_key` in one call (replay's per-line path): the struct and its versions key,
    or None when only the full parser can judge the line."""
    if b"\\" in raw and b"\\u0000" in raw:
        return None
    try:
        e = _decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    a = e.arguments
    if a and not _object_or_null(a):
        return None
    a = e.attributes
    if a and not _object_or_null(a):
        return None
    v = e.versions
    if not v:
        return e, _EMPTY
    # The few versions texts of a stream, by length, compared as they are (no bytes copy, no hash).
    seen = _BY_LEN.get(len(v))
    if seen is not None:
        for text, vk in seen:
            if text == v:
                return None if vk is None else (e, vk)
    vk = versions_key(e)
    if seen is None:
        seen = _BY_LEN[len(v)] = []
    if len(seen) < 4 and len(_BY_LEN) < 4096:
        seen.append((v.copy(), vk))  # (a copy: the slice alone, not the whole line it came from)
    return None if vk is None else (e, vk)


def versions_key(e: WireEvent) -> tuple[tuple[str, str], ...] | None:
    """The event's served versions as normalised (key, version) pairs in the sent order; None when the
    parser would reject them, or `arguments` or `attributes` (the caller takes the parser's path)."""
    if (e.arguments or e.attributes) and not (_object_or_null(e.arguments) and _object_or_null(e.attributes)):
        return None
    raw = e.versions
    if not raw:
        return _EMPTY
    b = bytes(raw)
    if b in _VERSIONS:  # (a bytes object keeps its hash: the second lookup does not recompute it)
        return _VERSIONS[b]
    vk = _check_versions(b)
    if len(_VERSIONS) >= 50_000:
        _VERSIONS.clear()
    _VERSIONS[b] = vk
    return vk


def _object_or_null(raw: msgspec.Raw) -> bool:
    if not raw:
        return True
    try:
        return type(orjson.loads(bytes(raw))) in (dict, type(None))
    except orjson.JSONDecodeError:
        return False


def _check_versions(b: bytes) -> tuple[tuple[str, str], ...] | None:
    """The same rules as `events._versions` (null means no versions), on one raw JSON value."""
    try:
        v = orjson.loads(b)
    except orjson.JSONDecodeError:
        return None
    if v is None:
        return _EMPTY
    if type(v) is not dict:
        return None
    out: list[tuple[str, str]] = []
    for k, ver in v.items():
        if "/" not in k or k.startswith("/") or k.endswith("/") or len(k) > 300 or "\x00" in k:
            return None
        tv = type(ver)
        if tv is str:
            if not ver or len(ver) > 200 or "\x00" in ver:
                return None
            out.append((k, ver))
        elif tv is int:
            out.append((k, str(ver)))
        else:
            return None
    return tuple(out)


# ----- decoded dicts (intake): the parser's answer for the common case, checked in C ---------------------------

_U = msgspec.UnsetType
_UStr = str | _U
_UBool = bool | _U
_UNum = Annotated[float, msgspec.Meta(ge=0)] | _U


class _NormalEvent(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """Event v1 as `parse_event_dict` returns it unchanged: every field typed, no nulls (the parser drops them),
    no unknown fields (it moves them into `attributes`). msgspec's `float` also takes an int: checked after."""

    time: Annotated[float, msgspec.Meta(ge=0, le=1e11)]
    workflow: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_WORKFLOW)]
    kind: Literal["response", "tool_call", "action", "complaint"]
    versions: dict[str, str] | _U = msgspec.UNSET
    trace_id: _UStr = msgspec.UNSET
    session_id: _UStr = msgspec.UNSET
    service: _UStr = msgspec.UNSET
    subject: _UStr = msgspec.UNSET
    segment: _UStr = msgspec.UNSET
    fallback: _UStr = msgspec.UNSET
    status: Annotated[int, msgspec.Meta(ge=0, lt=1000)] | _U = msgspec.UNSET
    latency_ms: _UNum = msgspec.UNSET
    refusal: _UBool = msgspec.UNSET
    grounded: _UBool = msgspec.UNSET
    retrieval_age_s: _UNum = msgspec.UNSET
    model: _UStr = msgspec.UNSET
    input: _UStr = msgspec.UNSET
    output: _UStr = msgspec.UNSET
    tool: _UStr = msgspec.UNSET
    args_valid: _UBool = msgspec.UNSET
    arguments: dict[str, Any] | _U = msgspec.UNSET
    action: _UStr = msgspec.UNSET
    target: _UStr = msgspec.UNSET
    authorized_targets: list[str] | _U = msgspec.UNSET
    text: _UStr = msgspec.UNSET
    channel: _UStr = msgspec.UNSET
    attributes: dict[str, Any] | _U = msgspec.UNSET


_convert = msgspec.convert
_FLOAT0 = 0.0


def normal_event_dict(obj: Any) -> dict[str, Any] | None:
    """`obj` itself when `parse_event_dict(obj, check_nul=False)` would accept it and return it unchanged (the
    common case); None when only the parser can tell. Only for objects decoded from a body without a
    ``\\u0000`` escape (so no string holds a NUL), as `check_nul=False` says."""
    if type(obj) is not dict:
        return None
    try:
        _convert(obj, _NormalEvent)
    except msgspec.ValidationError:
        return None
    get = obj.get
    if type(obj["time"]) is not float or type(get("latency_ms", _FLOAT0)) is not float or \
            type(get("retrieval_age_s", _FLOAT0)) is not float:
        return None  # an int the parser turns into a float
    v = get("versions")
    if v:
        try:
            if _versions_fast(v, 0) is not v:
                return None
        except EventError:
            return None
    return obj
