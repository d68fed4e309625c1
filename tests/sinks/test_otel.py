"""OTelLogSink and comparison_span against the SDK's in-memory exporters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.compare import ComparisonResult
from sidecar.sinks.otel import OTelLogSink, comparison_span
from tests.sinks.conftest import make_alert, resolved


@pytest.fixture
def logs() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_one_record_per_alert_change_with_severity_from_tier(
    logs: tuple[LoggerProvider, InMemoryLogRecordExporter],
) -> None:
    provider, exporter = logs
    sink = OTelLogSink(provider)
    severe = make_alert(tier=3)
    for alert in (make_alert(tier=1), make_alert(tier=2), severe, resolved(severe)):
        sink.send(alert)
    sink.close(1.0)
    records = [r.log_record for r in exporter.get_finished_logs()]
    assert [r.event_name for r in records] == ["baselined.alert"] * 4
    assert [r.severity_number for r in records] == [
        SeverityNumber.WARN,
        SeverityNumber.ERROR,
        SeverityNumber.FATAL,
        SeverityNumber.INFO,
    ]
    fatal = records[2]
    assert fatal.body == severe.summary
    assert fatal.timestamp == int(severe.updated_at * 1e9)
    attributes = dict(fatal.attributes or {})
    assert {k: attributes[k] for k in (
        "baselined.model", "baselined.environment", "baselined.signal", "baselined.slice",
        "baselined.tier", "baselined.severity", "baselined.state", "baselined.fingerprint",
        "baselined.baseline_id", "baselined.effect.name",
    )} == {
        "baselined.model": "fraud", "baselined.environment": "prod",
        "baselined.signal": "latency_ms", "baselined.slice": "*", "baselined.tier": 3,
        "baselined.severity": "severe", "baselined.state": "firing",
        "baselined.fingerprint": severe.fingerprint, "baselined.baseline_id": "ref-1",
        "baselined.effect.name": "p99_rel",
    }  # fmt: skip
    assert attributes["baselined.effect.estimate"] == pytest.approx(0.123)
    assert attributes["baselined.effect.lower"] == pytest.approx(0.081)
    assert attributes["baselined.effect.upper"] == pytest.approx(0.16)
    assert attributes["baselined.effect.guardrail"] == pytest.approx(0.10)
    assert dict(records[3].attributes or {})["baselined.state"] == "resolved"
    assert sink.emitted == 4 and sink.failed == 0


def test_comparison_span_holds_the_run_and_links_alert_records(
    logs: tuple[LoggerProvider, InMemoryLogRecordExporter],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    log_provider, log_exporter = logs
    tracer_provider, span_exporter = spans
    alert = make_alert(tier=2)
    quiet = replace(alert.findings[0], tier=None, fired=())
    result = ComparisonResult(
        model="fraud",
        environment="prod",
        baseline_id="ref-1",
        time=alert.updated_at,
        window_start=alert.window_start,
        window_end=alert.window_end,
        alpha_per_test=0.01 / 34,
        duration_seconds=0.25,
        findings=(alert.findings[0], quiet, quiet),
    )
    sink = OTelLogSink(log_provider)
    with comparison_span(tracer_provider.get_tracer("test"), result) as span:
        sink.send(alert)
        context = span.get_span_context()
    (finished,) = span_exporter.get_finished_spans()
    assert finished.name == "baselined.compare"
    attributes = dict(finished.attributes or {})
    assert attributes["baselined.model"] == "fraud"
    assert attributes["baselined.environment"] == "prod"
    assert attributes["baselined.baseline_id"] == "ref-1"
    assert attributes["baselined.series_compared"] == 3
    assert attributes["baselined.findings_with_tier"] == 1
    assert attributes["baselined.findings.moderate"] == 1
    assert attributes["baselined.max_tier"] == 2
    assert attributes["baselined.duration_seconds"] == 0.25
    assert finished.end_time is not None and finished.start_time is not None
    assert finished.end_time - finished.start_time >= 250_000_000  # backdated by the run
    (record,) = log_exporter.get_finished_logs()
    assert record.log_record.trace_id == context.trace_id
    assert record.log_record.span_id == context.span_id
