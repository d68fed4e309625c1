"""The sidecar's own OpenTelemetry: a Resource, traces, metrics and logs, exported
over OTLP/gRPC (or to the console), and a Prometheus text exposition.

:meth:`Telemetry.from_settings` builds private tracer, meter and logger
providers (no global provider is read or set) with a Resource naming the
sidecar (``service.name=baselined-sidecar``, ``service.version``,
``service.instance.id``, ``deployment.environment.name`` and ``k8s.*`` from the
Downward API variables ``POD_NAME``, ``POD_NAMESPACE``, ``NODE_NAME``). The OTLP
exporters read the standard ``OTEL_EXPORTER_OTLP_*`` variables themselves.

Nothing here runs per request: spans are per sampled ingest batch
(``otel_ingest_span_ratio``) and per comparison run; the sample counters are
observed from :meth:`Windows.stats` at collection time; the effect gauges are a
snapshot of the latest comparison, bounded to ``otel_top_series`` per (model,
environment).

>>> # telemetry = Telemetry.from_settings(settings)
>>> # telemetry.attach(windows, guardrails)       # metrics and ingest spans
>>> # with telemetry.comparison(result): alerter.observe(result)
>>> # body, content_type = telemetry.metrics_text()
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, Tracer

from sidecar.records import ALL_TRAFFIC, Kind, SeriesId
from sidecar.settings import Settings
from sidecar.sinks.otel import comparison_span, parse_traceparent

if TYPE_CHECKING:
    from sidecar.compare import ComparisonResult
    from sidecar.guardrails import Guardrails
    from sidecar.ingest import DecodedBatch
    from sidecar.sinks.base import AlertView
    from sidecar.windows import Windows

__all__ = [
    "INGEST_SPAN_NAME",
    "METRIC_NAMES",
    "SERVICE_NAME",
    "Telemetry",
    "sidecar_resource",
]

log = logging.getLogger(__name__)

SERVICE_NAME = "baselined-sidecar"
INGEST_SPAN_NAME = "baselined.ingest"
METRIC_NAMES: tuple[str, ...] = (
    "baselined.samples.received",
    "baselined.samples.accepted",
    "baselined.samples.rejected",
    "baselined.samples.dropped",
    "baselined.series",
    "baselined.comparison.duration",
    "baselined.effect.estimate",
    "baselined.effect.lower",
    "baselined.effect.upper",
    "baselined.effect.guardrail",
)
"""The OpenTelemetry names of the sidecar's metrics (docs/observability.md has the
Prometheus names)."""

_MAX_LINKS = 8
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DOWNWARD_API = (("k8s.pod.name", "POD_NAME"), ("k8s.namespace.name", "POD_NAMESPACE"),
                 ("k8s.node.name", "NODE_NAME"))  # fmt: skip


def _version() -> str:
    try:
        return metadata.version("baselined")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def sidecar_resource(settings: Settings, environ: Mapping[str, str] | None = None) -> Resource:
    """The Resource of the sidecar's telemetry.

    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (read by the SDK from
    the process environment) win over the defaults here, except where a
    setting says otherwise (``deployment_environment``, ``instance``).
    """
    env = os.environ if environ is None else environ
    attributes: dict[str, str] = {
        "service.version": _version(),
        "service.instance.id": settings.instance,
    }
    if not env.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = SERVICE_NAME
    if settings.deployment_environment:
        attributes["deployment.environment.name"] = settings.deployment_environment
    for key, var in _DOWNWARD_API:
        value = env.get(var)
        if value:
            attributes[key] = value
    # Defaults plus OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (from os.environ).
    detected = dict(Resource.create().attributes)
    if str(detected.get("service.name", "")).startswith("unknown_service"):
        del detected["service.name"]  # the SDK's placeholder: ours is better
    merged: dict[str, Any] = {**attributes, **detected}
    # Settings-backed attributes win over the environment.
    merged["service.instance.id"] = settings.instance
    if settings.deployment_environment:
        merged["deployment.environment.name"] = settings.deployment_environment
    return Resource(merged)


def _exporters(
    settings: Settings,
) -> tuple[SpanExporter | None, MetricReader | None, LogRecordExporter | None]:
    kind = settings.otel_exporter
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # Interval from OTEL_METRIC_EXPORT_INTERVAL (milliseconds, default 60000).
        return (
            OTLPSpanExporter(),
            PeriodicExportingMetricReader(OTLPMetricExporter()),
            OTLPLogExporter(),
        )
    if kind == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return (
            ConsoleSpanExporter(),
            PeriodicExportingMetricReader(ConsoleMetricExporter()),
            ConsoleLogRecordExporter(),
        )
    return None, None, None


class Telemetry:
    """The sidecar's tracer, meter and logger providers and what they observe.

    Build it with :meth:`from_settings`; :meth:`attach` connects the live
    windows (sample counters, series count, ingest spans) and the guardrails
    (effect gauges); :meth:`comparison` wraps each comparison run.
    """

    def __init__(
        self,
        *,
        resource: Resource,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        logger_provider: LoggerProvider,
        ingest_span_ratio: float = 0.01,
        top_series: int = 20,
        prometheus_registry: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self.resource = resource
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.tracer: Tracer = tracer_provider.get_tracer("baselined", _version())
        self._meter = meter_provider.get_meter("baselined", _version())
        self._ratio = ingest_span_ratio
        self._top = top_series
        self._registry = prometheus_registry
        self._random = (rng or random.Random()).random
        self._windows: Windows | None = None
        self._guardrails: Guardrails | None = None
        self._lock = threading.Lock()
        # (model, environment) -> observations of the latest comparison's top series.
        self._effects: dict[tuple[str, str], list[tuple[str, float, dict[str, str]]]] = {}
        self._duration = self._meter.create_histogram(
            "baselined.comparison.duration",
            unit="s",
            description="Wall time of one comparison of a (model, environment)",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        span_exporter: SpanExporter | None = None,
        metric_reader: MetricReader | None = None,
        log_exporter: LogRecordExporter | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Telemetry:
        """Providers for ``settings``: the exporters ``otel_exporter`` names
        (``otlp``, ``console``, ``none``), plus the ones passed in (tests,
        embedding), plus a Prometheus reader when ``prometheus_metrics`` is on."""
        resource = sidecar_resource(settings, environ)
        spans, reader, logs = _exporters(settings)
        tracer_provider = TracerProvider(resource=resource)
        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for exporter in (spans, span_exporter):
            if exporter is not None:
                tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        for log_exp in (logs, log_exporter):
            if log_exp is not None:
                logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exp))
        readers = [r for r in (reader, metric_reader) if r is not None]
        registry = None
        if settings.prometheus_metrics:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry(auto_describe=True)
            # No otel_scope_* labels: dashboards and rules match on ours only.
            readers.append(PrometheusMetricReader(registry=registry, scope_info_enabled=False))
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, shutdown_on_exit=False
        )
        return cls(
            resource=resource,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
            ingest_span_ratio=settings.otel_ingest_span_ratio,
            top_series=settings.otel_top_series,
            prometheus_registry=registry,
        )

    # -- wiring ------------------------------------------------------------------

    def attach(self, windows: Windows, guardrails: Guardrails | None = None) -> None:
        """Observe ``windows`` (sample counters, series count, a span per sampled
        ingest batch, the trace reservoir) and use ``guardrails`` for the effect gauges."""
        self._windows = windows
        self._guardrails = guardrails
        windows.on_batch = self.on_batch
        meter = self._meter

        def counter(name: str, keys: tuple[str, ...], description: str) -> None:
            def observe(options: CallbackOptions) -> Iterable[Observation]:
                stats = windows.stats()
                return [Observation(sum(stats[k] for k in keys))]

            meter.create_observable_counter(
                name, callbacks=[observe], unit="{sample}", description=description
            )

        counter(
            "baselined.samples.received",
            ("records_accepted", "records_rejected"),
            "Sampled records received from middleware and KServe ingest",
        )
        counter("baselined.samples.accepted", ("records_accepted",), "Records accepted")
        counter(
            "baselined.samples.rejected",
            ("records_rejected",),
            "Records refused (their batch was invalid or too large)",
        )
        counter(
            "baselined.samples.refused_series",
            ("values_refused",),
            "Values not stored because their series was past max_series (cardinality bound)",
        )
        counter(
            "baselined.samples.folded",
            ("slice_values_folded",),
            "Rows whose slice value went to __other__ (past max_slice_values)",
        )

        def dropped(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(n, {"model": model, "environment": environment, "reason": reason})
                for (model, environment, reason), n in windows.dropped_counts().items()
            ]

        meter.create_observable_counter(
            "baselined.samples.dropped",
            callbacks=[dropped],
            unit="{sample}",
            description="Records the middleware dropped before sending, by reason "
            "(as reported by the senders; summed over their instances)",
        )

        def series(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(n, {"model": model, "environment": environment})
                for (model, environment), n in windows.series_counts().items()
            ]

        meter.create_observable_gauge(
            "baselined.series",
            callbacks=[series],
            unit="{series}",
            description="Live series in memory per model and environment",
        )
        for field, description in (
            ("estimate", "Effect of live against baseline, top series per model/environment"),
            ("lower", "Lower confidence bound of the effect"),
            ("upper", "Upper confidence bound of the effect"),
            ("guardrail", "The effect's minor-tier guardrail (a magnitude)"),
        ):
            meter.create_observable_gauge(
                f"baselined.effect.{field}",
                callbacks=[self._effect_callback(field)],
                unit="1",
                description=description,
            )

    def _effect_callback(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                snapshot = [row for rows in self._effects.values() for row in rows]
            return [Observation(value, attrs) for name, value, attrs in snapshot if name == field]

        return observe

    # -- ingest ------------------------------------------------------------------

    def on_batch(self, data: DecodedBatch, began_ns: int) -> None:
        """After an accepted batch: a ``baselined.ingest`` span for a share of batches,
        linked to the batch's sampled request traces."""
        if self._ratio <= 0.0 or self._random() >= self._ratio:
            return
        try:
            links = _links(_tail(data.traceparents), "sampled_request")
            span = self.tracer.start_span(
                INGEST_SPAN_NAME,
                start_time=began_ns,
                links=links,
                attributes={
                    "baselined.model": data.model,
                    "baselined.environment": data.environment,
                    "baselined.version": data.version,
                    "baselined.rows": data.rows,
                    "baselined.signals": len(data.numeric_signals) + len(data.categorical),
                    "baselined.sample_ratio": self._ratio,
                },
            )
            span.end()
        except Exception:
            log.debug("ingest span failed", exc_info=True)

    # -- comparisons and alerts ----------------------------------------------------

    def traces(self, model: str, environment: str, series: SeriesId | None = None) -> list[str]:
        """Sampled request traceparents of ``series`` (then of all traffic), newest first."""
        windows = self._windows
        if windows is None:
            return []
        found = list(windows.traces(model, environment, series)) if series is not None else []
        if len(found) < _MAX_LINKS:
            found += [t for t in windows.traces(model, environment) if t not in found]
        # The windows check the shape only: drop ids that do not parse.
        return [t for t in found if parse_traceparent(t) is not None][:_MAX_LINKS]

    def alert_trace(self, alert: AlertView) -> str | None:
        """The traceparent of a sampled request of the alert's main series (for
        :class:`~sidecar.sinks.otel.OTelLogSink`), or None."""
        findings = sorted(
            alert.findings, key=lambda f: -1 if f.tier is None else int(f.tier), reverse=True
        )
        for finding in findings:
            s = finding.series
            sid = (
                s
                if isinstance(s, SeriesId)
                else SeriesId(s.version, s.slice, Kind(s.kind), s.signal)
            )
            found = self.traces(alert.model, alert.environment, sid)
            if found:
                return found[0]
        found = self.traces(alert.model, alert.environment)
        return found[0] if found else None

    @contextlib.contextmanager
    def comparison(self, result: ComparisonResult) -> Iterator[Span]:
        """The comparison run's span (current while the block runs), linked to
        sampled request traces of the series with a tier (else of all traffic);
        records the duration histogram and refreshes the effect gauges."""
        labels = {"model": result.model, "environment": result.environment}
        try:
            self._duration.record(result.duration_seconds, labels)
            self._update_effects(result)
            traces: list[str] = []
            for finding in result.findings:
                if finding.tier is not None and len(traces) < _MAX_LINKS:
                    traces += [
                        t
                        for t in self.traces(result.model, result.environment, finding.series)
                        if t not in traces
                    ]
            if not traces:
                traces = self.traces(result.model, result.environment)
            links = _links(traces[:_MAX_LINKS], "sampled_request")
        except Exception:
            log.debug("comparison telemetry failed", exc_info=True)
            links = []
        with comparison_span(self.tracer, result, links=links) as span:
            yield span

    def _update_effects(self, result: ComparisonResult) -> None:
        guardrails = self._guardrails
        if guardrails is None or self._top <= 0:
            return
        scored: list[tuple[float, str, dict[str, str], Any, float]] = []
        for finding in result.findings:
            sid = finding.series
            if sid.slice != ALL_TRAFFIC:
                continue  # label sets stay bounded: all traffic only
            for rail in guardrails.for_series(result.model, sid.kind, sid.signal):
                effect = finding.effects.get(rail.effect)
                if effect is None or not rail.minor > 0:
                    continue
                up = effect.lower / rail.minor if rail.direction != "down" else -math.inf
                down = -effect.upper / rail.minor if rail.direction != "up" else -math.inf
                score = max(up, down)
                if math.isnan(score) or math.isinf(score):
                    continue
                attrs = {
                    "model": result.model,
                    "environment": result.environment,
                    "kind": str(sid.kind),
                    "signal": sid.signal,
                    "effect": rail.effect,
                }
                scored.append((score, rail.effect, attrs, effect, rail.minor))
        scored.sort(key=lambda row: row[0], reverse=True)
        rows: list[tuple[str, float, dict[str, str]]] = []
        for _, _, attrs, effect, guardrail in scored[: self._top]:
            for field, value in (
                ("estimate", effect.estimate),
                ("lower", effect.lower),
                ("upper", effect.upper),
                ("guardrail", guardrail),
            ):
                if not math.isnan(value):
                    rows.append((field, float(value), attrs))
        with self._lock:
            self._effects[(result.model, result.environment)] = rows

    # -- exposition and lifecycle --------------------------------------------------

    @property
    def prometheus_enabled(self) -> bool:
        """True when :meth:`metrics_text` has a registry to render."""
        return self._registry is not None

    def metrics_text(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format and its content type (for ``/metrics``).

        Raises RuntimeError when the settings did not enable ``prometheus_metrics``.
        """
        if self._registry is None:
            raise RuntimeError("prometheus_metrics is off: no registry to render")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self._registry), CONTENT_TYPE_LATEST

    def force_flush(self, timeout: float = 5.0) -> None:
        """Export what is pending (spans, logs, metrics) now."""
        millis = int(timeout * 1000)
        for provider in (self.tracer_provider, self.logger_provider, self.meter_provider):
            try:
                provider.force_flush(millis)
            except Exception:
                log.warning("telemetry flush failed", exc_info=True)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush and shut the providers down (idempotent). Export errors are logged."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        self.force_flush(timeout)
        for provider in (self.tracer_provider, self.logger_provider):
            try:
                provider.shutdown()
            except Exception:
                log.warning("telemetry shutdown failed", exc_info=True)
        try:
            self.meter_provider.shutdown(max(0.0, deadline - time.monotonic()) * 1000)
        except Exception:
            log.warning("telemetry shutdown failed", exc_info=True)


def _tail(traceparents: Sequence[str]) -> list[str]:
    """The last few non-empty traceparents of a batch."""
    found: list[str] = []
    for j in range(len(traceparents) - 1, max(-1, len(traceparents) - 65), -1):
        tp = traceparents[j]
        if tp and tp not in found:
            found.append(tp)
            if len(found) >= _MAX_LINKS:
                break
    return found


def _links(traceparents: Iterable[str], reason: str) -> list[Link]:
    links: list[Link] = []
    for tp in traceparents:
        parent = parse_traceparent(tp)
        if parent is not None:
            links.append(Link(parent, {"link.reason": reason}))
    return links
