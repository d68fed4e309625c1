"""OpenTelemetry end to end against a real OTLP/gRPC receiver started here.

A model server (an SDK tracer provider of its own, a span around each
handler call) sends traffic through the real middleware to a real sidecar
whose ``otel_exporter`` is ``otlp``, pointed at the receiver by the standard
``OTEL_EXPORTER_OTLP_*`` variables. A baseline is frozen and promoted, then a
shifted live stream makes an alert fire. The receiver must get the ingest and
comparison spans linked to sampled requests, the metrics, and the alert's log
record carrying the trace id of a sampled request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from middleware import Shadow
from tests.sidecar.test_alerts_service import Served, wait_for

MODEL, ENV = "fraud", "prod"


class Receiver(
    trace_service_pb2_grpc.TraceServiceServicer,
    metrics_service_pb2_grpc.MetricsServiceServicer,
    logs_service_pb2_grpc.LogsServiceServicer,
):
    """An OTLP/gRPC collector that keeps every request it gets."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.logs: list[logs_service_pb2.ExportLogsServiceRequest] = []

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.traces.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()
            if isinstance(request, metrics_service_pb2.ExportMetricsServiceRequest):
                self.metrics.append(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()
            self.logs.append(request)
            return logs_service_pb2.ExportLogsServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) of everything received."""
        with self.lock:
            return [
                (_attrs(rs.resource.attributes), span)
                for req in self.traces
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def metric_points(self) -> dict[str, list[Any]]:
        """Metric name -> every data point received."""
        found: dict[str, list[Any]] = {}
        with self.lock:
            for req in self.metrics:
                for rm in req.resource_metrics:
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            data = getattr(metric, str(metric.WhichOneof("data")))
                            found.setdefault(metric.name, []).extend(data.data_points)
        return found

    def log_records(self) -> list[Any]:
        with self.lock:
            return [
                rec
                for req in self.logs
                for rl in req.resource_logs
                for sl in rl.scope_logs
                for rec in sl.log_records
            ]


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    rec = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(rec, server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(rec, server)  # type: ignore[no-untyped-call]
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(rec, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield rec, port
    server.stop(None)


def _send(
    shadow: Shadow,
    tracer: Any,
    latencies: np.ndarray,
    at: float,
    trace_ids: set[str],
) -> None:
    """One model-server request per value, each handled inside its own span."""
    for value in latencies.tolist():
        with tracer.start_as_current_span("predict") as span:
            assert shadow.record_call(latency=value, timestamp=at)
            trace_ids.add(f"{span.get_span_context().trace_id:032x}")


def _until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    try:
        wait_for(condition, timeout)
    except AssertionError:
        raise AssertionError(f"the OTLP receiver did not get {what} in {timeout:g} s") from None


@pytest.mark.slow
def test_traces_metrics_and_alert_logs_reach_a_real_otlp_receiver(
    tmp_path: Path, receiver: tuple[Receiver, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    rec, port = receiver
    for name, value in {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "POD_NAME": "model-7f9c-abcde",
        "POD_NAMESPACE": "ml",
        "NODE_NAME": "gpu-7",
    }.items():
        monkeypatch.setenv(name, value)
    running = Served(
        tmp_path,
        sinks_from_settings=True,
        http_listen="127.0.0.1:0",
        otel_exporter="otlp",
        otel_ingest_span_ratio=1.0,
        deployment_environment="staging",
        check_interval=0.2,
        flush_interval=0.1,
        bucket_seconds=1,
    )
    model_server = TracerProvider()  # the model server's own SDK, not the sidecar's
    tracer = model_server.get_tracer("model-server")
    shadow = Shadow(
        model=MODEL,
        environment=ENV,
        target=running.target,
        sample_rate=1.0,
        flush_interval=0.05,
        atexit=False,
    )
    sampled: set[str] = set()
    try:
        rng = np.random.default_rng(7)
        _send(shadow, tracer, rng.lognormal(-3.0, 0.3, 3000), time.time() - 30, sampled)
        shadow.flush()
        wait_for(lambda: shadow.stats().records_accepted == 3000)
        baseline = running.client.freeze(MODEL, ENV, name="ref-1", reason="test")
        running.client.promote(baseline.id, reason="test")
        time.sleep(1.1)  # live data from the next second on, inside the new epoch
        _send(shadow, tracer, 2.0 * rng.lognormal(-3.0, 0.3, 3000), time.time(), sampled)
        shadow.flush()
        wait_for(lambda: shadow.stats().records_accepted == 6000)

        def alert_logged() -> bool:
            return any(r.event_name == "baselined.alert" for r in rec.log_records())

        _until(alert_logged, "an alert log record")
        _until(lambda: "baselined.comparison.duration" in rec.metric_points(), "metrics")
    finally:
        shadow.close(timeout=2.0)
        running.stop()

    # The alert's log record carries the trace id of a sampled model-server request,
    # and still names the comparison run it was raised in.
    alert = next(r for r in rec.log_records() if r.event_name == "baselined.alert")
    assert alert.trace_id.hex() in sampled
    assert len(alert.span_id) == 8
    attributes = _attrs(alert.attributes)
    assert attributes["baselined.signal"] == "latency_seconds"
    assert attributes["baselined.severity"] == "severe"
    assert len(attributes["baselined.comparison.trace_id"]) == 32

    spans = rec.spans()
    resource, _ = spans[0]
    assert resource["service.name"] == "baselined-sidecar"
    assert resource["service.instance.id"] == "test"
    assert resource["deployment.environment.name"] == "staging"
    assert resource["k8s.pod.name"] == "model-7f9c-abcde"
    assert resource["k8s.namespace.name"] == "ml"
    assert resource["k8s.node.name"] == "gpu-7"
    assert resource["service.version"]

    ingest = [s for _, s in spans if s.name == "baselined.ingest"]
    assert ingest, "no ingest span"
    assert all(0 < len(s.links) <= 8 for s in ingest)
    assert {link.trace_id.hex() for s in ingest for link in s.links} <= sampled
    compare = [s for _, s in spans if s.name == "baselined.compare"]
    assert compare, "no comparison span"
    linked = {link.trace_id.hex() for s in compare for link in s.links}
    assert linked and linked <= sampled
    # The alert was raised inside a comparison span: the attribute names that span.
    assert attributes["baselined.comparison.trace_id"] in {s.trace_id.hex() for s in compare}

    points = rec.metric_points()
    accepted = points["baselined.samples.accepted"]
    assert max(p.as_int for p in accepted) == 6000
    assert max(p.as_int for p in points["baselined.samples.received"]) == 6000
    assert max(p.as_int for p in points["baselined.samples.rejected"]) == 0
    assert any(p.count >= 1 for p in points["baselined.comparison.duration"])
    series = points["baselined.series"]
    assert any(_attrs(p.attributes) == {"model": MODEL, "environment": ENV} for p in series)
    lower = points["baselined.effect.lower"]
    p50 = [
        p.as_double
        for p in lower
        if _attrs(p.attributes).get("effect") == "p50_rel"
        and _attrs(p.attributes).get("signal") == "latency_seconds"
    ]
    assert p50 and max(p50) >= 0.25  # latency doubled: the bound clears +25 %
