"""Alert sinks: Alertmanager, a generic webhook and OpenTelemetry logs.

Each sink has ``send(alert)`` (never blocks) and ``close(timeout)``; pass them
to ``Alerter(sinks=[...])``.

>>> from sidecar.sinks import AlertmanagerSink, WebhookSink
"""

from typing import TYPE_CHECKING

from sidecar.sinks.alertmanager import AlertmanagerSink
from sidecar.sinks.base import PermanentDeliveryError, QueuedSink, SinkStats
from sidecar.sinks.otel import OTelLogSink, comparison_span
from sidecar.sinks.webhook import WebhookSink

__all__ = [
    "AlertmanagerSink",
    "OTelLogSink",
    "PermanentDeliveryError",
    "QueuedSink",
    "SinkStats",
    "WebhookSink",
    "comparison_span",
]

if TYPE_CHECKING:  # mypy proves the sinks fit the alerter's protocol and types
    from sidecar.alerts import AlertSink

    def _fits(a: AlertmanagerSink, w: WebhookSink, o: OTelLogSink) -> list[AlertSink]:
        return [a, w, o]
