"""Generic webhook sink: one POST per alert change, in Alertmanager's webhook
(version 4) payload shape, so receivers written for Alertmanager work as is.

>>> sink = WebhookSink("http://127.0.0.1:8080/hook", headers={"Authorization": "Bearer t"})
>>> # alerter = Alerter(sinks=[sink]); ...; sink.close(5.0)
>>> sink.close(0.1)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sidecar.sinks.base import (
    AlertView,
    QueuedSink,
    SinkStats,
    alert_annotations,
    alert_labels,
    post_json,
    rfc3339,
)

__all__ = ["RECEIVER", "WebhookSink", "webhook_payload"]

RECEIVER = "baselined"
_GROUP_BY = ("alertname", "model", "environment", "fingerprint")
_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt of a firing alert


def webhook_payload(
    alert: AlertView, *, external_url: str = "", generator_url: str = ""
) -> dict[str, Any]:
    """The Alertmanager v4 webhook body for one alert change (a group of one)."""
    labels = alert_labels(alert)
    annotations = alert_annotations(alert)
    group_labels = {k: labels[k] for k in _GROUP_BY if k in labels}
    resolved = alert.state == "resolved"
    ends = alert.resolved_at if alert.resolved_at is not None else alert.updated_at
    group_key = "{}:{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in group_labels.items()) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "resolved" if resolved else "firing",
        "receiver": RECEIVER,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": "resolved" if resolved else "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(alert.started_at),
                "endsAt": rfc3339(ends) if resolved else _ZERO_TIME,
                "generatorURL": generator_url,
                "fingerprint": alert.fingerprint,
            }
        ],
    }


class WebhookSink:
    """POST every alert change to ``url`` as an Alertmanager v4 webhook payload.

    Delivery runs on a background thread with retries (see :class:`QueuedSink`;
    extra keyword arguments go to it); ``send`` never blocks.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        external_url: str = "",
        generator_url: str = "",
        **queue_options: Any,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._external_url = external_url
        self._generator_url = generator_url
        self._queue: QueuedSink[AlertView] = QueuedSink(
            self._post, name="webhook", max_batch=1, **queue_options
        )

    def send(self, alert: AlertView) -> None:
        """Queue one alert change; never blocks."""
        self._queue.send(alert)

    def stats(self) -> SinkStats:
        """Delivery counters."""
        return self._queue.stats()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued change is delivered (or given up); True if so."""
        return self._queue.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop."""
        self._queue.close(timeout)

    def _post(self, batch: Sequence[AlertView]) -> None:
        for alert in batch:
            payload = webhook_payload(
                alert, external_url=self._external_url, generator_url=self._generator_url
            )
            post_json(self.url, payload, timeout=self._timeout, headers=self._headers)
