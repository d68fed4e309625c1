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
from collections.abc import Iterator, Sequence
from typing import Protocol

from opentelemetry._logs import LoggerProvider, LogRecord, SeverityNumber
from opentelemetry.trace import Span, Tracer
from opentelemetry.util.types import AttributeValue

from sidecar.sinks.base import AlertView, FindingView, headline, tier_name

__all__ = ["EVENT_NAME", "SPAN_NAME", "ComparisonView", "OTelLogSink", "comparison_span"]

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
    return attributes


class OTelLogSink:
    """Emit one OpenTelemetry log record (event ``baselined.alert``) per alert change.

    Severity: minor WARN, moderate ERROR, severe FATAL; a resolve is INFO.
    Body: the alert's summary. Attributes: ``baselined.*`` (model, environment,
    signal, slice, tier, state, fingerprint, baseline_id, the main effect with
    its bounds and guardrail). Errors are logged, never raised.
    """

    def __init__(self, logger_provider: LoggerProvider, *, name: str = "baselined") -> None:
        self._provider = logger_provider
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
            record = LogRecord(
                timestamp=int(alert.updated_at * 1e9),
                severity_number=severity,
                severity_text=severity.name,
                body=alert.summary,
                attributes=_alert_attributes(alert),
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
def comparison_span(tracer: Tracer, result: ComparisonView) -> Iterator[Span]:
    """A span for one comparison run, current while the block runs.

    Call it right after the comparison: the span starts ``duration_seconds``
    ago and ends when the block exits, so alert handling done inside it (and
    the alert log records) belongs to the run.

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
    with tracer.start_as_current_span(SPAN_NAME, attributes=attributes, start_time=start) as span:
        yield span
