"""OpenTelemetry output: a log record per alert change and a span per comparison run.

Providers are passed in (no global provider is read or set). The log record is
emitted in ``send`` on the caller's thread: the provider's processor decides
how export happens (use a ``BatchLogRecordProcessor`` in production so
``send`` never waits for the network). Emitted inside :func:`comparison_span`,
the record carries that span's trace and span id.

>>> from opentelemetry.sdk._logs import LoggerProvider
>>> sink = OTelLogSink(LoggerProvider(shutdown_on_exit=False))
>>> # with comparison_span(tracer, result): alerter.observe(result)
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from opentelemetry._logs import LoggerProvider, LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    TraceFlags,
    Tracer,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

from sidecar.sinks.base import AlertView, FindingView, headline, tier_name

__all__ = [
    "EVENT_NAME",
    "SPAN_NAME",
    "ComparisonView",
    "OTelLogSink",
    "comparison_span",
    "parse_traceparent",
]

log = logging.getLogger(__name__)

EVENT_NAME = "baselined.alert"
SPAN_NAME = "baselined.compare"
_SEVERITY = {1: SeverityNumber.WARN, 2: SeverityNumber.ERROR, 3: SeverityNumber.FATAL}


class ComparisonView(Protocol):
    """What the span reads of a comparison (``sidecar.compare.ComparisonResult``)."""

    @property
    def model(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def baseline_id(self) -> str: ...
    @property
    def window_start(self) -> float: ...
    @property
    def window_end(self) -> float: ...
    @property
    def alpha_per_test(self) -> float: ...
    @property
    def duration_seconds(self) -> float: ...
    @property
    def findings(self) -> Sequence[FindingView]: ...


def _alert_attributes(alert: AlertView) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "baselined.model": alert.model,
        "baselined.environment": alert.environment,
        "baselined.tier": int(alert.tier),
        "baselined.severity": tier_name(alert.tier),
        "baselined.state": alert.state,
        "baselined.fingerprint": alert.fingerprint,
        "baselined.baseline_id": alert.baseline_id,
        "baselined.window_start": alert.window_start,
        "baselined.window_end": alert.window_end,
        "baselined.started_at": alert.started_at,
    }
    if alert.resolved_at is not None:
        attributes["baselined.resolved_at"] = alert.resolved_at
    if alert.playbook_url:
        attributes["baselined.playbook_url"] = alert.playbook_url
    if alert.findings:
        finding = max(alert.findings, key=lambda f: -1 if f.tier is None else int(f.tier))
        series = finding.series
        attributes.update(
            {
                "baselined.signal": series.signal,
                "baselined.slice": series.slice,
                "baselined.kind": str(series.kind),
                "baselined.version": series.version,
                "baselined.baseline_count": finding.baseline_count,
                "baselined.live_count": finding.live_count,
            }
        )
        if finding.phase:
            attributes["baselined.phase"] = finding.phase
        main = headline(finding)
        if main is not None:
            effect, guardrail = main
            attributes["baselined.effect.name"] = effect.name
            attributes["baselined.effect.unit"] = effect.unit
            attributes["baselined.effect.guardrail"] = guardrail
            for key, value in (
                ("estimate", effect.estimate),
                ("lower", effect.lower),
                ("upper", effect.upper),
            ):
                if not math.isnan(value):
                    attributes[f"baselined.effect.{key}"] = value
    attributes.update(_correlation_attributes(alert))
    return attributes


def _correlation_attributes(alert: AlertView) -> dict[str, AttributeValue]:
    """Root-cause hints (issue 4): change point, top suspect, all suspects' event
    ids, fingerprint differences and the attribution line."""
    correlation: Any = getattr(alert, "correlation", None)
    if correlation is None:
        return {}
    out: dict[str, AttributeValue] = {}
    cp = correlation.change_point
    if cp is not None:
        out["baselined.change_point.time"] = cp.time
        out["baselined.change_point.start"] = cp.start
        out["baselined.change_point.end"] = cp.end
        out["baselined.change_point.estimated"] = cp.estimated
    if correlation.suspects:
        top = correlation.suspects[0]
        out["baselined.suspect.event_id"] = top.event_id
        out["baselined.suspect.type"] = top.type
        out["baselined.suspect.time"] = top.time
        out["baselined.suspect.score"] = top.score
        out["baselined.suspect.description"] = top.describe()
        out["baselined.suspects"] = [s.event_id for s in correlation.suspects]
    if correlation.fingerprint_diff:
        out["baselined.fingerprint_diff"] = [d.describe() for d in correlation.fingerprint_diff]
    if correlation.attribution_summary:
        out["baselined.attribution"] = correlation.attribution_summary
    if correlation.error:
        out["baselined.correlation_error"] = correlation.error
    return out


def parse_traceparent(value: str) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent`` (``00-<trace>-<span>-<flags>``),
    or None when it is malformed or names the invalid (all-zero) ids.

    >>> hex(parse_traceparent("00-" + "ab" * 16 + "-" + "cd" * 8 + "-01").trace_id)[:6]
    '0xabab'
    """
    parts = value.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if parts[0] == "ff" or not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0xFF))


def _record_context(traceparent: str | None) -> Context | None:
    """A context whose span is the sampled request's (None: the current context)."""
    if not traceparent:
        return None
    parent = parse_traceparent(traceparent)
    if parent is None:
        return None
    return set_span_in_context(NonRecordingSpan(parent))


class OTelLogSink:
    """Emit one OpenTelemetry log record (event ``baselined.alert``) per alert change.

    Severity: minor WARN, moderate ERROR, severe FATAL; a resolve is INFO.
    Body: the alert's summary. Attributes: ``baselined.*`` (model, environment,
    signal, slice, tier, state, fingerprint, baseline_id, the main effect with
    its bounds and guardrail). Errors are logged, never raised.

    ``trace_for`` (optional) returns the W3C traceparent of a sampled request
    of the alert's series: the record then carries that request's trace and
    span id, and the comparison span it was emitted in (if any) goes to the
    ``baselined.comparison.trace_id``/``span_id`` attributes.
    """

    def __init__(
        self,
        logger_provider: LoggerProvider,
        *,
        name: str = "baselined",
        trace_for: Callable[[AlertView], str | None] | None = None,
    ) -> None:
        self._provider = logger_provider
        self._trace_for = trace_for
        self._logger = logger_provider.get_logger(name)
        self.emitted = 0
        self.failed = 0

    def send(self, alert: AlertView) -> None:
        """Emit the record for one alert change."""
        try:
            severity = (
                SeverityNumber.INFO
                if alert.state == "resolved"
                else _SEVERITY.get(int(alert.tier), SeverityNumber.ERROR)
            )
            attributes = _alert_attributes(alert)
            context = None
            if self._trace_for is not None:
                context = _record_context(self._trace_for(alert))
                current = get_current_span().get_span_context()
                if context is not None and current.is_valid:
                    attributes["baselined.comparison.trace_id"] = f"{current.trace_id:032x}"
                    attributes["baselined.comparison.span_id"] = f"{current.span_id:016x}"
            record = LogRecord(
                timestamp=int(alert.updated_at * 1e9),
                context=context,
                severity_number=severity,
                severity_text=severity.name,
                body=alert.summary,
                attributes=attributes,
                event_name=EVENT_NAME,
            )
            self._logger.emit(record)
            self.emitted += 1
        except Exception:
            self.failed += 1
            log.exception("OpenTelemetry log sink: could not emit alert %s", alert.fingerprint)

    def close(self, timeout: float = 5.0) -> None:
        """Flush the provider (it is not shut down: the caller owns it)."""
        flush = getattr(self._provider, "force_flush", None)
        if flush is not None:
            try:
                flush(int(timeout * 1000))
            except Exception:
                log.exception("OpenTelemetry log sink: flush failed")


@contextlib.contextmanager
def comparison_span(
    tracer: Tracer, result: ComparisonView, *, links: Sequence[Link] = ()
) -> Iterator[Span]:
    """A span for one comparison run, current while the block runs.

    Call it right after the comparison: the span starts ``duration_seconds``
    ago and ends when the block exits, so alert handling done inside it (and
    the alert log records) belongs to the run. ``links`` point at related
    traces (sampled requests of the compared series).

    >>> # result = comparator.compare("fraud", "prod")
    >>> # with comparison_span(tracer, result) as span: alerter.observe(result)
    """
    tiers = [int(f.tier) for f in result.findings if f.tier is not None]
    attributes: dict[str, AttributeValue] = {
        "baselined.model": result.model,
        "baselined.environment": result.environment,
        "baselined.baseline_id": result.baseline_id,
        "baselined.series_compared": len(result.findings),
        "baselined.findings_with_tier": len(tiers),
        "baselined.max_tier": max(tiers, default=0),
        "baselined.duration_seconds": result.duration_seconds,
        "baselined.alpha_per_test": result.alpha_per_test,
        "baselined.window_start": result.window_start,
        "baselined.window_end": result.window_end,
    }
    for tier in (1, 2, 3):
        attributes[f"baselined.findings.{tier_name(tier)}"] = tiers.count(tier)
    start = time.time_ns() - int(max(result.duration_seconds, 0.0) * 1e9)
    with tracer.start_as_current_span(
        SPAN_NAME, attributes=attributes, start_time=start, links=links
    ) as span:
        yield span
