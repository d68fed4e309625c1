"""Telemetry with in-memory exporters: the Resource, the trace reservoir of the
windows, ingest spans, Prometheus text, alert log records pointing at a sampled
request's trace, and the middleware's trace context on sampled records."""

from __future__ import annotations

import time
from typing import Any

import pytest
from baselined.v1 import baselined_pb2 as pb
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from middleware.buffer import Recorder
from middleware.shadow import active_traceparent
from middleware.shipper import encode_batch
from sidecar.errors import InvalidInput
from sidecar.guardrails import Guardrails, Tier
from sidecar.records import Kind, SeriesId
from sidecar.settings import Settings
from sidecar.sinks.otel import OTelLogSink
from sidecar.stores import SQLiteStore
from sidecar.telemetry import Telemetry, sidecar_resource
from sidecar.windows import TRACES_KEPT, Windows
from tests.sidecar.test_alerts import finding, result
from tests.sidecar.test_baselines import ENV, MODEL

NOW = 1_700_000_000.0


def tp(i: int) -> str:
    return f"00-{i + 1:032x}-{i + 1:016x}-01"


def batch(rows: int, traces: list[str] | None, region: list[str] | None = None) -> pb.SampleBatch:
    b = pb.SampleBatch(model=MODEL, version="v1", environment=ENV, timestamps=[NOW] * rows)
    b.numeric.add(name="latency_seconds", kind=pb.SIGNAL_KIND_LATENCY, values=[0.01] * rows)
    if traces is not None:
        b.traceparents.extend(traces)
    if region is not None:
        b.slices.add(name="region", values=region)
    return b


def windows(**kw: object) -> Windows:
    return Windows(Settings(instance="t"), SQLiteStore(), clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def telemetry(**settings: object) -> tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tel = Telemetry.from_settings(
        Settings(instance="t", **settings),  # type: ignore[arg-type]
        span_exporter=spans,
        metric_reader=reader,
    )
    return tel, spans, reader


def test_resource_names_the_sidecar_and_its_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=ml,team=risk")
    env = {"POD_NAME": "p-1", "POD_NAMESPACE": "ml", "NODE_NAME": "n-7"}
    settings = Settings(instance="p-1", deployment_environment="prod")
    attrs = sidecar_resource(settings, env).attributes
    assert attrs["service.name"] == "baselined-sidecar"
    assert attrs["service.instance.id"] == "p-1"
    assert attrs["deployment.environment.name"] == "prod"
    assert (attrs["k8s.pod.name"], attrs["k8s.namespace.name"], attrs["k8s.node.name"]) == (
        "p-1",
        "ml",
        "n-7",
    )
    assert attrs["team"] == "risk" and attrs["service.namespace"] == "ml"
    assert "k8s.pod.name" not in sidecar_resource(settings, {}).attributes
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fraud-sidecar")  # the operator's choice wins
    assert sidecar_resource(settings, env).attributes["service.name"] == "fraud-sidecar"


def test_windows_keep_the_latest_traces_per_slice_newest_first() -> None:
    w = windows()
    w.ingest(batch(20, [tp(i) for i in range(20)], ["eu"] * 10 + ["us"] * 10))
    everything = w.traces(MODEL, ENV)
    assert everything == tuple(tp(i) for i in range(19, 19 - TRACES_KEPT, -1))
    eu = w.traces(MODEL, ENV, SeriesId("*", "region=eu", Kind.LATENCY, "latency_seconds"))
    assert eu == tuple(tp(i) for i in range(9, 9 - TRACES_KEPT, -1))
    assert w.traces(MODEL, ENV, SeriesId("v2", "*", Kind.LATENCY, "x")) == ()
    assert w.traces("other", ENV) == ()


def test_malformed_traceparents_are_ignored_and_a_wrong_count_refuses_the_batch() -> None:
    w = windows()
    zero = "00-" + "0" * 32 + "-" + "1" * 16 + "-01"  # the right shape, an invalid id
    bad = ["", "junk", tp(3).replace("-", "_"), zero, tp(3)]
    assert w.ingest(batch(5, bad)) == 5
    assert w.traces(MODEL, ENV) == (tp(3), zero)
    assert w.stats()["traceparents_invalid"] == 2
    tel, _, _ = telemetry()
    tel.attach(w)
    assert tel.traces(MODEL, ENV) == [tp(3)]  # ids are checked where they are used
    with pytest.raises(InvalidInput, match="traceparents has 2 values, expected 0 or 3"):
        w.ingest(batch(3, [tp(1), tp(2)]))


def test_ingest_spans_follow_the_ratio_and_link_to_sampled_requests() -> None:
    tel, spans, _ = telemetry(otel_ingest_span_ratio=1.0)
    w = windows()
    tel.attach(w)
    w.ingest(batch(3, [tp(0), "", tp(2)]))
    w.ingest(batch(2, None))
    tel.force_flush()
    got = spans.get_finished_spans()
    assert [s.name for s in got] == ["baselined.ingest", "baselined.ingest"]
    assert {f"{link.context.trace_id:032x}" for link in got[0].links} == {
        tp(0)[3:35],
        tp(2)[3:35],
    }
    assert got[0].attributes is not None and got[0].attributes["baselined.rows"] == 3
    assert not got[1].links

    off, off_spans, _ = telemetry(otel_ingest_span_ratio=0.0)
    w2 = windows()
    off.attach(w2)
    w2.ingest(batch(3, [tp(0)] * 3))
    off.force_flush()
    assert off_spans.get_finished_spans() == ()


def test_metrics_count_samples_and_series() -> None:
    tel, _, reader = telemetry()
    w = windows()
    tel.attach(w, Guardrails())
    w.ingest(batch(5, None))
    with pytest.raises(InvalidInput):
        w.ingest(batch(3, [tp(1)]))
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {
        m.name: list(m.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert points["baselined.samples.accepted"][0].value == 5
    assert points["baselined.samples.rejected"][0].value == 3
    assert points["baselined.samples.received"][0].value == 8
    (series,) = points["baselined.series"]
    assert series.value == 1 and dict(series.attributes or {}) == {
        "model": MODEL,
        "environment": ENV,
    }


def test_prometheus_text_has_the_metrics_and_is_off_unless_asked() -> None:
    tel, _, _ = telemetry(prometheus_metrics=True)
    w = windows()
    tel.attach(w)
    w.ingest(batch(4, None))
    body, content_type = tel.metrics_text()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert "baselined_samples_accepted_total 4.0" in text
    assert f'baselined_series{{environment="{ENV}",model="{MODEL}"}} 1.0' in text
    plain, _, _ = telemetry()
    with pytest.raises(RuntimeError, match="prometheus_metrics is off"):
        plain.metrics_text()


def test_effect_gauges_and_comparison_span_with_links() -> None:
    tel, spans, reader = telemetry(otel_top_series=1)
    w = windows()
    tel.attach(w, Guardrails())
    w.ingest(batch(3, [tp(0), tp(1), tp(2)]))
    stage = SeriesId("*", "*", Kind.LATENCY, "stage_seconds")
    res = result(
        finding(Tier.SEVERE, estimate=0.35, lower=0.30, upper=0.40),
        finding(None, series=stage, estimate=0.03, lower=0.01, upper=0.05),
        at=time.time(),
    )
    with tel.comparison(res):
        pass
    tel.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.name == "baselined.compare"
    assert {f"{link.context.trace_id:032x}" for link in span.links} == {
        t[3:35] for t in (tp(0), tp(1), tp(2))
    }
    data = reader.get_metrics_data()
    assert data is not None
    metrics: dict[str, Any] = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    lower = list(metrics["baselined.effect.lower"].data.data_points)
    assert {dict(p.attributes or {})["signal"] for p in lower} == {"latency_seconds"}  # top 1
    assert metrics["baselined.comparison.duration"].data.data_points[0].count == 1


def test_alert_log_record_carries_the_trace_of_a_sampled_request() -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    tel, _, _ = telemetry()
    w = windows()
    tel.attach(w, Guardrails())
    w.ingest(batch(2, [tp(4), tp(5)]))
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    sink = OTelLogSink(provider, trace_for=tel.alert_trace)
    from sidecar.alerts import Alerter

    alerter = Alerter(clock=time.time, consecutive=1, sinks=[sink])
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("compare") as current:
        alerter.observe(result(finding(Tier.SEVERE, lower=0.30, upper=0.40), at=time.time()))
    (record,) = logs.get_finished_logs()
    assert f"{record.log_record.trace_id:032x}" == tp(5)[3:35]  # the newest sampled request
    attrs = dict(record.log_record.attributes or {})
    assert attrs["baselined.comparison.trace_id"] == f"{current.get_span_context().trace_id:032x}"


def test_middleware_records_the_active_span_or_the_header_on_sampled_rows() -> None:
    tracer = TracerProvider().get_tracer("model-server")
    assert active_traceparent() is None
    with tracer.start_as_current_span("predict") as span:
        ctx = span.get_span_context()
        expected = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
        assert active_traceparent() == expected
    rec = Recorder(batch_size=8, queue_batches=2, max_signals=8)
    rec.record(NOW, None, 0.01, None, False, None, [({"x": 1.0}, None)], None, expected)
    rec.record(NOW, None, 0.02, None, False, None, [({"x": 2.0}, None)])
    buf = rec.swap_partial()
    assert buf is not None
    decoded = pb.SampleBatch.FromString(encode_batch(b"", [buf]))
    assert list(decoded.traceparents) == [expected, ""]
    rec.release(buf)
    rec.record(NOW, None, 0.03, None, False, None, [({"x": 3.0}, None)])
    buf = rec.swap_partial()
    assert buf is not None
    assert list(pb.SampleBatch.FromString(encode_batch(b"", [buf])).traceparents) == []
