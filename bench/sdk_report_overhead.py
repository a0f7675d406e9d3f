"""Request-path cost of reporting: `t.response(...)` plus batching, median ≤ 5 µs.

    .venv/bin/python bench/sdk_report_overhead.py [--batches 200]

A Guard connected to a real `codeblue serve` (SQLite) with a snapshot carrying configs for the workflow (so
versions are stamped) records responses with the fields an application sets (status, refusal, grounded,
model, latency, input and output texts) while its background thread sends batches to POST /v1/events. The
figure is the median over batches of 1,000 calls of the mean time per `t.response(...)`; `trace()` itself
(ids and versions for one request) is reported separately. No peer: OpenTelemetry's span export is the
nearest, and it is printed beside ours when the opentelemetry-sdk is installed (it is a dev dependency).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk_common import serve

from codeblue.sdk import Guard


def otel_peer(batches: int) -> float | None:
    """Median ns per span start+set attributes+end with a BatchSpanProcessor (export to nowhere)."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    except ImportError:
        return None

    class Null(SpanExporter):  # type: ignore[misc]
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Null(), max_queue_size=10_000))
    tracer = provider.get_tracer("bench")
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for i in range(1000):
            span = tracer.start_span("response")
            span.set_attributes({"status": 200, "refusal": False, "grounded": True, "model": "m1",
                                 "latency_ms": 120.0 + i, "input": "refund please", "output": "done"})
            span.end()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    provider.shutdown()
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    args = ap.parse_args()
    with serve() as srv:
        with srv.client() as admin:
            for kind, name, versions in (("prompt", "refund-assistant", ("v41", "v42")),
                                         ("model_alias", "answerer", ("m1",))):
                for v in versions:
                    admin.post(f"/v1/configs/{kind}/{name}/versions",
                               json={"version": v, "content": f"{name} {v}", "workflows": ["refund-desk"]}
                               ).raise_for_status()
                admin.post(f"/v1/configs/{kind}/{name}/activate", json={"version": versions[0]}).raise_for_status()
            admin.post("/v1/configs/prompt/refund-assistant/activate",
                       json={"version": "v42", "fraction": 0.2}).raise_for_status()
        g = Guard(srv.url, srv.token("bench-sdk", "ingest"), service="bench", lkg_path=Path(tempfile.mkdtemp()) / "l",
                  heartbeat_interval=3600, queue_size=100_000, batch_size=500, flush_interval=0.2)
        try:
            assert g.wait_ready(30)
            deadline = time.time() + 30
            while "prompt/refund-assistant" not in g.versions("refund-desk") and time.time() < deadline:
                time.sleep(0.05)
            traces = [g.trace("refund-desk", subject=f"acct-{i % 500}", session_id=f"s{i}") for i in range(1000)]
            assert "prompt/refund-assistant" in traces[0].versions
            samples, trace_cost = [], []
            for b in range(args.batches):
                t0 = time.perf_counter_ns()
                for i, t in enumerate(traces):
                    t.response(status=200, refusal=False, grounded=True, model="m1", latency_ms=120.0 + i,
                               input="refund please", output="done")
                samples.append((time.perf_counter_ns() - t0) / len(traces))
                if b % 10 == 0:
                    t0 = time.perf_counter_ns()
                    traces = [g.trace("refund-desk", subject=f"acct-{i % 500}", session_id=f"s{i}") for i in range(1000)]
                    trace_cost.append((time.perf_counter_ns() - t0) / 1000)
                time.sleep(0.002)  # give the sender thread the GIL now and then, as a real request path would
            total = args.batches * 1000
            deadline = time.time() + 120
            while g.stats["events_sent"] + g.stats["events_dropped"] < total and time.time() < deadline:
                time.sleep(0.1)
            st = g.stats
        finally:
            g.close()
    ours = statistics.median(samples)
    print(f"t.response(...) + batching: median {ours / 1000:.2f} µs/call (p90 "
          f"{statistics.quantiles(samples, n=10)[-1] / 1000:.2f} µs); guard.trace(...): median "
          f"{statistics.median(trace_cost) / 1000:.2f} µs/call")
    print(f"  {total} events: {st['events_sent']} sent to the server, {st['events_dropped']} dropped, "
          f"{st['events_rejected']} rejected")
    peer = otel_peer(max(20, args.batches // 4))
    if peer is not None:
        print(f"  peer: OpenTelemetry span start+attributes+end with BatchSpanProcessor: median {peer / 1000:.2f} µs/call")
    print(f"goal ≤ 5 µs: {'ok' if ours <= 5000 else 'MISSED'}")
    print(json.dumps({"response_ns": ours, "trace_ns": statistics.median(trace_cost), "otel_span_ns": peer,
                      "sent": st["events_sent"], "dropped": st["events_dropped"]}))


if __name__ == "__main__":
    main()
