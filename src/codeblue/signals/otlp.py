"""OTLP/HTTP traces → Event v1, through the OpenTelemetry GenAI semantic conventions plus `codeblue.*`.

Both encodings of `ExportTraceServiceRequest` are read: binary protobuf and OTLP JSON (lowerCamelCase keys,
hex trace/span ids, integer enums, 64-bit integers as strings). Each span becomes one event or is left out:
spans with no `gen_ai.*` and no `codeblue.*` attribute (HTTP, database, framework spans) are not AI traffic
and are skipped silently; a GenAI span that cannot become a valid event (no workflow, a bad value) is
*rejected* and counted in the response's `partial_success`. The mapping table is in docs/intake.md.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from codeblue.errors import Invalid
from codeblue.signals.events import KINDS, EventError

STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode.STATUS_CODE_ERROR

#: gen_ai.operation.name values that are a model answering (→ kind "response").
RESPONSE_OPERATIONS = frozenset({
    "chat", "text_completion", "generate_content", "invoke_agent", "create_agent", "embeddings", "completion",
})
#: Evaluation names (gen_ai.evaluation.name) that say whether the answer is supported by its sources.
GROUNDING_EVALUATIONS = frozenset({
    "groundedness", "grounded", "grounding", "faithfulness", "relevance", "relevancy", "citation_grounding",
    "context_adherence", "hallucination",
})
_TRUE_LABELS = frozenset({"pass", "passed", "true", "yes", "grounded", "relevant", "faithful", "supported", "ok"})
_FALSE_LABELS = frozenset({"fail", "failed", "false", "no", "ungrounded", "not_grounded", "irrelevant",
                           "unfaithful", "unsupported", "hallucinated", "hallucination"})
#: Attributes consumed by the mapping (everything else that is GenAI-ish is kept under `attributes`).
_CONSUMED = frozenset({
    "gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model", "gen_ai.response.finish_reasons",
    "gen_ai.tool.name", "gen_ai.tool.call.arguments", "gen_ai.conversation.id", "enduser.id", "user.id",
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "http.response.status_code",
})


@dataclass(slots=True)
class Span:
    """The parts of an OTLP span the mapping reads, decoded from either encoding."""

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    scope: str = ""
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


# ----- decoding: protobuf ---------------------------------------------------------------------------------


def _pb_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, which)


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def spans_from_protobuf(data: bytes) -> list[Span]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(data)
    except DecodeError as exc:
        raise Invalid(f"the body is not an OTLP ExportTraceServiceRequest (protobuf): {exc}", field="body") from None
    out: list[Span] = []
    for rs in req.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                out.append(Span(
                    trace_id=sp.trace_id.hex(), span_id=sp.span_id.hex(), name=sp.name,
                    start_ns=sp.start_time_unix_nano, end_ns=sp.end_time_unix_nano,
                    attributes=_pb_attrs(sp.attributes),
                    events=[(e.name, e.time_unix_nano, _pb_attrs(e.attributes)) for e in sp.events],
                    status_code=sp.status.code, status_message=sp.status.message,
                    resource=resource, scope=ss.scope.name, index=len(out),
                ))
    return out


def protobuf_response(rejected: int, message: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    resp = ExportTraceServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    return bytes(resp.SerializeToString())


# ----- decoding: OTLP JSON --------------------------------------------------------------------------------


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    v = obj.get(camel)
    return obj.get(snake) if v is None else v


def _list(obj: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    v = _get(obj, camel, snake)
    if v is None:
        return []
    if not isinstance(v, list):
        raise Invalid(f"{where}.{camel}: expected an array", field=f"{where}.{camel}")
    return v


def _int64(v: Any, where: str) -> int:
    if v is None:
        return 0
    if isinstance(v, bool):
        raise Invalid(f"{where}: expected an integer (a JSON number or a decimal string)", field=where)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            pass
    raise Invalid(f"{where}: expected an integer (a JSON number or a decimal string), got {v!r}", field=where)


def _hex_id(v: Any, nbytes: int, where: str) -> str:
    if v in (None, ""):
        return ""
    if isinstance(v, str) and len(v) == 2 * nbytes:
        try:
            bytes.fromhex(v)
            return v.lower()
        except ValueError:
            pass
    raise Invalid(f"{where}: expected {2 * nbytes} hex digits (OTLP JSON encodes ids as hex), got {v!r}",
                  field=where)


def _json_value(v: Any, where: str) -> Any:
    if not isinstance(v, dict):
        raise Invalid(f"{where}: expected an AnyValue object", field=where)
    for key, val in v.items():
        if key in ("stringValue", "string_value"):
            return val
        if key in ("boolValue", "bool_value"):
            return bool(val)
        if key in ("intValue", "int_value"):
            return _int64(val, where)
        if key in ("doubleValue", "double_value"):
            if isinstance(val, str):  # "NaN", "Infinity", "-Infinity" per the protobuf JSON mapping
                try:
                    f = float(val)
                except ValueError:
                    raise Invalid(f"{where}: {val!r} is not a number", field=where) from None
                return None if math.isnan(f) or math.isinf(f) else f
            return float(val)
        if key in ("arrayValue", "array_value"):
            return [_json_value(x, where) for x in (val or {}).get("values", [])]
        if key in ("kvlistValue", "kvlist_value"):
            return _json_attrs((val or {}).get("values", []), where)
        if key in ("bytesValue", "bytes_value"):
            return val
    return None


def _json_attrs(kvs: Any, where: str) -> dict[str, Any]:
    if kvs is None:
        return {}
    if not isinstance(kvs, list):
        raise Invalid(f"{where}: expected an array of {{key, value}}", field=where)
    out: dict[str, Any] = {}
    for kv in kvs:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise Invalid(f"{where}: each attribute is {{\"key\": string, \"value\": AnyValue}}", field=where)
        out[kv["key"]] = _json_value(kv.get("value") or {}, f"{where}.{kv['key']}")
    return out


def spans_from_json(data: bytes) -> list[Span]:
    try:
        req = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", field="body") from None
    if not isinstance(req, dict):
        raise Invalid("expected an ExportTraceServiceRequest object", field="body")
    out: list[Span] = []
    for ri, rs in enumerate(_list(req, "resourceSpans", "resource_spans", "body")):
        rw = f"resourceSpans[{ri}]"
        if not isinstance(rs, dict):
            raise Invalid(f"{rw}: expected an object", field=rw)
        res = rs.get("resource") or {}
        resource = _json_attrs(res.get("attributes"), f"{rw}.resource.attributes")
        for si, ss in enumerate(_list(rs, "scopeSpans", "scope_spans", rw)):
            sw = f"{rw}.scopeSpans[{si}]"
            if not isinstance(ss, dict):
                raise Invalid(f"{sw}: expected an object", field=sw)
            scope = (ss.get("scope") or {}).get("name", "")
            for pi, sp in enumerate(_list(ss, "spans", "spans", sw)):
                pw = f"{sw}.spans[{pi}]"
                if not isinstance(sp, dict):
                    raise Invalid(f"{pw}: expected an object", field=pw)
                status = sp.get("status") or {}
                code = status.get("code", 0)
                if isinstance(code, str):  # tolerate the enum name some encoders emit
                    code = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, 0)
                events = []
                for ei, e in enumerate(_list(sp, "events", "events", pw)):
                    ew = f"{pw}.events[{ei}]"
                    if not isinstance(e, dict):
                        raise Invalid(f"{ew}: expected an object", field=ew)
                    events.append((str(e.get("name", "")),
                                   _int64(_get(e, "timeUnixNano", "time_unix_nano"), f"{ew}.timeUnixNano"),
                                   _json_attrs(e.get("attributes"), f"{ew}.attributes")))
                out.append(Span(
                    trace_id=_hex_id(_get(sp, "traceId", "trace_id"), 16, f"{pw}.traceId"),
                    span_id=_hex_id(_get(sp, "spanId", "span_id"), 8, f"{pw}.spanId"),
                    name=str(sp.get("name", "")),
                    start_ns=_int64(_get(sp, "startTimeUnixNano", "start_time_unix_nano"), f"{pw}.startTimeUnixNano"),
                    end_ns=_int64(_get(sp, "endTimeUnixNano", "end_time_unix_nano"), f"{pw}.endTimeUnixNano"),
                    attributes=_json_attrs(sp.get("attributes"), f"{pw}.attributes"),
                    events=events, status_code=int(code), status_message=str(status.get("message", "")),
                    resource=resource, scope=str(scope), index=len(out),
                ))
    return out


def json_response(rejected: int, message: str) -> dict[str, Any]:
    if not rejected and not message:
        return {"partialSuccess": {}}
    return {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}}


# ----- mapping --------------------------------------------------------------------------------------------


def is_ai_span(span: Span) -> bool:
    """A span carries AI traffic when it has any gen_ai.* or codeblue.* attribute."""
    return any(k.startswith(("gen_ai.", "codeblue.")) for k in span.attributes)


def _messages_text(value: Any) -> str | None:
    """gen_ai.input/output.messages (structured or a JSON string) → readable text for the audit."""
    if value is None:
        return None
    msgs = value
    if isinstance(value, str):
        try:
            msgs = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if isinstance(msgs, dict):
        msgs = [msgs]
    if not isinstance(msgs, list):
        return str(msgs)
    lines: list[str] = []
    for m in msgs:
        if not isinstance(m, dict):
            lines.append(str(m))
            continue
        role = m.get("role")
        texts: list[str] = []
        parts = m.get("parts")
        if isinstance(parts, list):
            for p in parts:
                if isinstance(p, dict):
                    if p.get("type", "text") == "text" and isinstance(p.get("content"), str):
                        texts.append(p["content"])
                    elif p.get("type") == "tool_call":
                        texts.append(f"[tool_call {p.get('name', '')} {orjson.dumps(p.get('arguments')).decode()}]")
                    elif p.get("type") == "tool_call_response":
                        texts.append(f"[tool_result {orjson.dumps(p.get('response')).decode()}]")
                elif isinstance(p, str):
                    texts.append(p)
        elif isinstance(m.get("content"), str):  # older {"role", "content"} shape
            texts.append(m["content"])
        body = "\n".join(texts)
        lines.append(f"{role}: {body}" if role else body)
    return "\n".join(lines)


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if isinstance(v, int):
        return v != 0
    return None


def _evaluations(span: Span, threshold: float) -> tuple[bool | None, dict[str, Any]]:
    grounded: bool | None = None
    found: dict[str, Any] = {}
    for name, _t, attrs in span.events:
        if name != "gen_ai.evaluation.result":
            continue
        ev_name = str(attrs.get("gen_ai.evaluation.name", "")).lower()
        score = attrs.get("gen_ai.evaluation.score.value")
        label = attrs.get("gen_ai.evaluation.score.label")
        rec: dict[str, Any] = {}
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            rec["score"] = float(score)
        if isinstance(label, str):
            rec["label"] = label
        if "gen_ai.evaluation.explanation" in attrs:
            rec["explanation"] = attrs["gen_ai.evaluation.explanation"]
        found[ev_name or "evaluation"] = rec
        if ev_name not in GROUNDING_EVALUATIONS:
            continue
        verdict: bool | None = None
        if isinstance(label, str) and label.lower() in _TRUE_LABELS | _FALSE_LABELS:
            verdict = label.lower() in _TRUE_LABELS
        elif "score" in rec:
            verdict = rec["score"] >= threshold
        if ev_name == "hallucination" and verdict is not None and "score" in rec and not isinstance(label, str):
            verdict = not verdict  # a hallucination score is high when the answer is *not* grounded
        if verdict is not None:
            grounded = verdict if grounded is None else (grounded and verdict)
    return grounded, found


def span_to_event(span: Span, *, grounded_threshold: float = 0.5) -> dict[str, Any]:
    """One GenAI span → an Event v1 dict (not yet validated; `parse_event_dict` does that)."""
    a = span.attributes
    # Details may also ride on a gen_ai.client.inference.operation.details event (newer conventions).
    for name, _t, details in span.events:
        if name == "gen_ai.client.inference.operation.details":
            a = {**details, **a}
    cb = {k[9:]: v for k, v in a.items() if k.startswith("codeblue.")}
    workflow = cb.pop("workflow", None) or span.resource.get("codeblue.workflow")
    if not workflow:
        raise EventError(span.index, "workflow",
                         "the span has no codeblue.workflow attribute (on the span or its resource)")
    op = a.get("gen_ai.operation.name")
    kind = cb.pop("kind", None)
    if kind is None:
        if op == "execute_tool" or ("gen_ai.tool.name" in a and op not in RESPONSE_OPERATIONS):
            kind = "tool_call"
        elif "action" in cb:
            kind = "action"
        else:
            kind = "response"
    if kind not in KINDS:
        raise EventError(span.index, "codeblue.kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    start_ns, end_ns = span.start_ns, span.end_ns
    t_ns = end_ns or start_ns
    if not t_ns:
        raise EventError(span.index, "time", "the span has no start or end time")
    secs, frac = divmod(t_ns, 1_000_000_000)
    ev: dict[str, Any] = {"time": secs + frac / 1e9, "workflow": workflow, "kind": kind}
    if span.trace_id:
        ev["trace_id"] = span.trace_id
    if start_ns and end_ns >= start_ns:
        ev["latency_ms"] = (end_ns - start_ns) / 1e6
    service = span.resource.get("service.name")
    if isinstance(service, str):
        ev["service"] = service
    model = a.get("gen_ai.response.model") or a.get("gen_ai.request.model")
    if model is not None:
        ev["model"] = model
    conv = a.get("gen_ai.conversation.id")
    if conv is not None:
        ev["session_id"] = str(conv)
    subject = cb.pop("subject", None) or a.get("enduser.id") or a.get("user.id")
    if subject is not None:
        ev["subject"] = str(subject)
    # status: span status ERROR → 500, else an HTTP status if the span has one, else 200
    http_status = a.get("http.response.status_code")
    if span.status_code == STATUS_ERROR:
        ev["status"] = http_status if isinstance(http_status, int) and http_status >= 500 else 500
    elif isinstance(http_status, int):
        ev["status"] = http_status
    else:
        ev["status"] = 200
    reasons = a.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, str):
        reasons = [reasons]
    if isinstance(reasons, list) and reasons:
        ev["refusal"] = "content_filter" in reasons
    tool = a.get("gen_ai.tool.name")
    if tool is not None:
        ev["tool"] = tool
    args = a.get("gen_ai.tool.call.arguments")
    if args is not None:
        if isinstance(args, str):
            try:
                parsed = orjson.loads(args)
            except orjson.JSONDecodeError:
                parsed = None
                ev["args_valid"] = False  # malformed tool arguments: the model emitted broken JSON
                ev.setdefault("attributes", {})["arguments_raw"] = args
            if isinstance(parsed, dict):
                ev["arguments"] = parsed
            elif parsed is not None:
                ev["args_valid"] = False
                ev.setdefault("attributes", {})["arguments_raw"] = args
        elif isinstance(args, dict):
            ev["arguments"] = args
    inp = _messages_text(a.get("gen_ai.input.messages"))
    if inp is not None:
        ev["input"] = inp
    out = _messages_text(a.get("gen_ai.output.messages"))
    if out is not None:
        ev["output"] = out
    grounded, evaluations = _evaluations(span, grounded_threshold)
    if grounded is not None:
        ev["grounded"] = grounded
    # codeblue.* attributes fill what the conventions lack, and win over what was derived above.
    versions: dict[str, Any] = {}
    for k in list(cb):
        if k.startswith("versions."):
            versions[k[9:]] = cb.pop(k)
    if versions:
        ev["versions"] = versions
    for name in ("refusal", "grounded", "args_valid"):
        if name in cb:
            b = _as_bool(cb.pop(name))
            if b is None:
                raise EventError(span.index, f"codeblue.{name}", "expected a boolean")
            ev[name] = b
    for name in ("action", "target", "segment", "fallback", "channel", "text"):
        if name in cb:
            ev[name] = cb.pop(name)
    if "authorized_targets" in cb:
        at = cb.pop("authorized_targets")
        ev["authorized_targets"] = [at] if isinstance(at, str) else at
    if "retrieval_age_s" in cb:
        ev["retrieval_age_s"] = cb.pop("retrieval_age_s")
    if "status" in cb:
        ev["status"] = cb.pop("status")
    attrs: dict[str, Any] = ev.get("attributes", {})
    attrs["span_id"] = span.span_id
    attrs["span_name"] = span.name
    if op is not None:
        attrs["gen_ai.operation.name"] = op
    if span.status_code == STATUS_ERROR and span.status_message:
        attrs["status_message"] = span.status_message
    if evaluations:
        attrs["evaluations"] = evaluations
    for k, v in a.items():
        if k not in _CONSUMED and not k.startswith("codeblue.") and k not in attrs:
            attrs[k] = v
    for k, v in cb.items():  # unknown codeblue.* attributes are kept, not lost
        attrs[f"codeblue.{k}"] = v
    ev["attributes"] = attrs
    return ev
