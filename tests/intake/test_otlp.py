"""OTLP/HTTP traces: the official OpenTelemetry SDK + OTLP HTTP exporter against a real server, and OTLP JSON
written by hand per the spec (hex ids, integer enums, int64 as strings)."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from sqlalchemy import select

from codeblue.signals.model import StoredEvent
from tests.support import LiveServer


def stored(srv: LiveServer) -> list[dict[str, Any]]:
    with srv.rt.db.read() as s:
        return [orjson.loads(b) for b in s.scalars(select(StoredEvent.body).order_by(StoredEvent.id))]


def _provider(srv: LiveServer, token: str, **kw: Any) -> tuple[TracerProvider, OTLPSpanExporter]:
    exporter = OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces", headers={"Authorization": f"Bearer {token}"},
                                timeout=10, **kw)
    provider = TracerProvider(resource=Resource.create({"service.name": "refund-app",
                                                        "codeblue.workflow": "refund-desk"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_real_exporter_genai_spans_become_events(server: LiveServer) -> None:
    provider, _exp = _provider(server, server.token("ingest"), compression=Compression.Gzip)
    tracer = provider.get_tracer("refund-assistant")
    messages_in = orjson.dumps([{"role": "user", "parts": [{"type": "text", "content": "refund order 7 to a@b.co"}]}])
    messages_out = orjson.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "I can't help."}],
                                  "finish_reason": "content_filter"}])
    with tracer.start_as_current_span("chat gpt-x") as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-x", "gen_ai.response.model": "gpt-x-0613",
            "gen_ai.response.finish_reasons": ["content_filter"], "gen_ai.conversation.id": "conv-1",
            "enduser.id": "cust-42", "gen_ai.input.messages": messages_in.decode(),
            "gen_ai.output.messages": messages_out.decode(), "gen_ai.usage.input_tokens": 31,
            "codeblue.versions.prompt/refund-assistant": "v42", "codeblue.segment": "refund_over_100",
        })
        span.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "groundedness",
                                                    "gen_ai.evaluation.score.value": 0.2})
        with tracer.start_as_current_span("execute_tool issue_refund") as tool:
            tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "issue_refund",
                                 "gen_ai.tool.call.arguments": '{"order": 7, "amount": ', "user.id": "cust-42"})
        with tracer.start_as_current_span("issue refund") as act:
            act.set_attributes({"codeblue.action": "issue_refund", "codeblue.target": "cust-99",
                                "enduser.id": "cust-42", "codeblue.authorized_targets": ["cust-42"]})
            act.set_status(Status(StatusCode.ERROR, "backend timed out"))
        with tracer.start_as_current_span("GET /orders"):  # plain HTTP span: not AI traffic, skipped
            pass
    provider.force_flush()
    provider.shutdown()

    events = stored(server)
    assert len(events) == 3
    by_kind = {e["kind"]: e for e in events}
    resp, tool_ev, action = by_kind["response"], by_kind["tool_call"], by_kind["action"]
    assert resp["workflow"] == "refund-desk" and resp["service"] == "refund-app"
    assert resp["model"] == "gpt-x-0613" and resp["session_id"] == "conv-1" and resp["subject"] == "cust-42"
    assert resp["refusal"] is True and resp["grounded"] is False and resp["status"] == 200
    assert resp["versions"] == {"prompt/refund-assistant": "v42"} and resp["segment"] == "refund_over_100"
    assert resp["input"] == "user: refund order 7 to [redacted:email]"
    assert resp["output"] == "assistant: I can't help."
    assert resp["latency_ms"] >= 0 and len(resp["trace_id"]) == 32
    assert resp["attributes"]["gen_ai.usage.input_tokens"] == 31
    assert resp["attributes"]["evaluations"]["groundedness"]["score"] == 0.2
    assert tool_ev["tool"] == "issue_refund" and tool_ev["args_valid"] is False
    assert tool_ev["trace_id"] == resp["trace_id"]
    assert action["action"] == "issue_refund" and action["target"] == "cust-99" and action["status"] == 500
    assert action["authorized_targets"] == ["cust-42"]


def test_real_exporter_partial_success_and_auth(server: LiveServer) -> None:
    # A GenAI span with no workflow anywhere is rejected; the export still succeeds (OTLP partial success).
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces",
                                headers={"Authorization": f"Bearer {server.token('ingest')}"}, timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": "x"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("chat") as s1:
        s1.set_attribute("gen_ai.operation.name", "chat")
    with tracer.start_as_current_span("chat") as s2:
        s2.set_attributes({"gen_ai.operation.name": "chat", "codeblue.workflow": "faq"})
    provider.shutdown()
    assert [e["workflow"] for e in stored(server)] == ["faq"]

    # the protobuf response carries partial_success for the rejected span
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
        Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat", start_time_unix_nano=1_764_000_000_000_000_000,
             end_time_unix_nano=1_764_000_000_500_000_000,
             attributes=[{"key": "gen_ai.operation.name", "value": {"string_value": "chat"}}]),
    ])])])
    r = httpx.post(f"{server.url}/v1/traces", content=req.SerializeToString(),
                   headers={"content-type": "application/x-protobuf",
                            "authorization": f"Bearer {server.token('ingest')}"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 1
    assert "codeblue.workflow" in resp.partial_success.error_message

    # a viewer token cannot export
    r = httpx.post(f"{server.url}/v1/traces", content=req.SerializeToString(),
                   headers={"content-type": "application/x-protobuf",
                            "authorization": f"Bearer {server.token('viewer')}"}, timeout=30)
    assert r.status_code == 403
    r = httpx.post(f"{server.url}/v1/traces", content=b"\xff\xff\xff",
                   headers={"content-type": "application/x-protobuf",
                            "authorization": f"Bearer {server.token('ingest')}"}, timeout=30)
    assert r.status_code == 422


def _kv(key: str, **value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def test_otlp_json_by_the_spec(sqlite_server: LiveServer) -> None:
    srv = sqlite_server
    body = {"resourceSpans": [{
        "resource": {"attributes": [_kv("service.name", stringValue="advice-api")]},
        "scopeSpans": [{"scope": {"name": "my.genai"}, "spans": [
            {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174", "name": "chat",
             "kind": 3, "startTimeUnixNano": "1764000000000000000", "endTimeUnixNano": "1764000001250000000",
             "attributes": [
                 _kv("gen_ai.operation.name", stringValue="chat"),
                 _kv("codeblue.workflow", stringValue="repayment-advice"),
                 _kv("gen_ai.request.model", stringValue="small-model"),
                 _kv("gen_ai.response.finish_reasons", arrayValue={"values": [{"stringValue": "stop"}]}),
                 _kv("codeblue.versions.routing_policy/finance", stringValue="r7"),
                 _kv("codeblue.grounded", boolValue=True),
                 _kv("codeblue.retrieval_age_s", doubleValue=86400.5),
                 _kv("gen_ai.usage.output_tokens", intValue="120"),
                 _kv("user.id", stringValue="cust-7"),
             ],
             "events": [{"timeUnixNano": "1764000001000000000", "name": "gen_ai.evaluation.result",
                         "attributes": [_kv("gen_ai.evaluation.name", stringValue="relevance"),
                                        _kv("gen_ai.evaluation.score.label", stringValue="fail")]}],
             "status": {"code": 2, "message": "upstream 503"}},
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "0000000000000001", "name": "complaint",
             "startTimeUnixNano": 1764000002000000000, "endTimeUnixNano": 1764000002000000000,
             "attributes": [_kv("codeblue.workflow", stringValue="repayment-advice"),
                            _kv("codeblue.kind", stringValue="complaint"),
                            _kv("codeblue.text", stringValue="it told me two different repayment dates"),
                            _kv("codeblue.channel", stringValue="support")]},
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "0000000000000002", "name": "bad",
             "startTimeUnixNano": "1764000002000000000", "endTimeUnixNano": "1764000002000000000",
             "attributes": [_kv("codeblue.workflow", stringValue="repayment-advice"),
                            _kv("codeblue.kind", stringValue="telemetry")]},
        ]}],
    }]}
    c = srv.client("ingest")
    r = c.post("/v1/traces", content=gzip.compress(orjson.dumps(body)),
               headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    ps = r.json()["partialSuccess"]
    assert ps["rejectedSpans"] == "1" and "codeblue.kind" in ps["errorMessage"]
    events = stored(srv)
    assert len(events) == 2
    e, comp = events
    assert e["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert e["time"] == 1764000001.25 and e["latency_ms"] == 1250.0
    assert e["status"] == 500 and e["refusal"] is False and e["model"] == "small-model"
    assert e["grounded"] is True  # codeblue.grounded wins over the evaluation's "fail"
    assert e["retrieval_age_s"] == 86400.5 and e["subject"] == "cust-7"
    assert e["versions"] == {"routing_policy/finance": "r7"}
    assert e["attributes"]["gen_ai.usage.output_tokens"] == 120
    assert e["attributes"]["span_id"] == "eee19b7ec3c1b174"
    assert e["attributes"]["status_message"] == "upstream 503"
    assert comp["kind"] == "complaint" and comp["channel"] == "support"
    assert comp["text"] == "it told me two different repayment dates"

    # all accepted → an empty partialSuccess; malformed ids → 422 naming the field
    one = {"resourceSpans": [{"scopeSpans": [{"spans": [body["resourceSpans"][0]["scopeSpans"][0]["spans"][1]]}]}]}
    r = c.post("/v1/traces", json=one)
    assert r.json() == {"partialSuccess": {}}
    one["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "not-hex"
    r = c.post("/v1/traces", json=one)
    assert r.status_code == 422
    assert r.json()["field"] == "resourceSpans[0].scopeSpans[0].spans[0].traceId"
    r = c.post("/v1/traces", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415


def test_real_exporter_spans_open_an_incident(tmp_path: Any) -> None:
    """GenAI spans from the real exporter reach detection: wrong-account actions under an absolute limit
    ("any wrong-entity action is SEV1") open an incident."""
    import importlib.util
    import time

    import pytest

    from codeblue.clock import ManualClock
    from tests.support import make_settings

    if importlib.util.find_spec("codeblue.signals.wiring") is None:
        pytest.skip("the detection pipeline (signals.wiring) is not in this tree")
    cfg = tmp_path / "detect.yaml"
    cfg.write_text("workflows:\n  refund-desk:\n    limits:\n      - indicator: wrong_entity_rate\n"
                   "        max_count: 0\n        window: 5m\n        severity: SEV1\n")
    clock = ManualClock(start=float(int(time.time())))
    srv = LiveServer(make_settings(f"sqlite:///{tmp_path}/cb.db", tmp_path, detect_config=cfg), clock=clock).start()
    try:
        provider, _exp = _provider(srv, srv.token("ingest"))
        tracer = provider.get_tracer("refund-agent")
        t0 = int(clock.now() * 1e9)
        for i in range(30):
            start = t0 + i * 1_000_000_000
            span = tracer.start_span("issue_refund", start_time=start)
            wrong = i % 6 == 5
            span.set_attributes({"codeblue.action": "issue_refund", "enduser.id": f"cust-{i}",
                                 "codeblue.target": f"cust-{i + 1000}" if wrong else f"cust-{i}"})
            span.end(end_time=start + 200_000_000)
        provider.shutdown()
        assert len(stored(srv)) == 30
        viewer = srv.client("viewer")
        deadline = time.monotonic() + 60
        incidents: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not incidents:
            clock.advance(10)
            time.sleep(0.2)
            incidents = [i for i in viewer.get("/v1/incidents").json() if "refund-desk" in i["workflows"]]
        assert incidents, "no incident opened from the exported spans"
        assert incidents[0]["severity"] == "SEV1" and incidents[0]["source"] == "detector"
    finally:
        srv.stop()
