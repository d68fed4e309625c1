"""Prometheus Alertmanager sink: ``POST {url}/api/v2/alerts``.

Alertmanager forgets an alert that is not re-sent: it resolves it by itself at
its ``endsAt``. So while an alert fires, this sink sets ``endsAt`` to a few
re-send intervals ahead and re-sends every firing alert every
``resend_interval`` seconds (as Prometheus does); a resolve is sent with
``endsAt`` = the time it resolved, and the re-sends of that alert stop.

>>> sink = AlertmanagerSink("http://127.0.0.1:9093", resend_interval=60.0)
>>> # alerter = Alerter(sinks=[sink]); ...; sink.close(5.0)
>>> sink.close(0.1)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
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

__all__ = ["AlertmanagerSink", "postable_alert"]

_RESENDS_BEFORE_EXPIRY = 4  # Prometheus keeps alerts alive for 4 evaluation/resend intervals


def postable_alert(
    alert: AlertView, *, now: float, resend_interval: float, generator_url: str = ""
) -> dict[str, Any]:
    """One alert in Alertmanager's ``postableAlert`` shape (API v2)."""
    if alert.state == "resolved":
        ends = alert.resolved_at if alert.resolved_at is not None else alert.updated_at
    else:
        ends = now + _RESENDS_BEFORE_EXPIRY * resend_interval
    body: dict[str, Any] = {
        "labels": alert_labels(alert),
        "annotations": alert_annotations(alert),
        "startsAt": rfc3339(alert.started_at),
        "endsAt": rfc3339(ends),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


class AlertmanagerSink:
    """Send alert changes to Alertmanager, re-sending firing alerts until resolved.

    ``url`` is Alertmanager's base URL (``http://alertmanager:9093``);
    ``headers`` are added to every request (e.g. ``Authorization``). Delivery
    runs on a background thread with retries (see :class:`QueuedSink`; extra
    keyword arguments go to it); ``send`` never blocks.
    """

    def __init__(
        self,
        url: str,
        *,
        resend_interval: float = 60.0,
        timeout: float = 5.0,
        generator_url: str = "",
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        max_batch: int = 64,
        **queue_options: Any,
    ) -> None:
        if resend_interval <= 0 or timeout <= 0:
            raise ValueError("resend_interval and timeout must be positive")
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.resend_interval = resend_interval
        self._timeout = timeout
        self._generator_url = generator_url
        self._headers = dict(headers or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._firing: dict[str, AlertView] = {}
        self._queue: QueuedSink[AlertView] = QueuedSink(
            self._post,
            name="alertmanager",
            max_batch=max_batch,
            periodic=self._resend,
            period=resend_interval,
            **queue_options,
        )

    def send(self, alert: AlertView) -> None:
        """Queue one alert change; never blocks."""
        with self._lock:
            if alert.state == "resolved":
                self._firing.pop(alert.fingerprint, None)
            else:
                self._firing[alert.fingerprint] = alert
        self._queue.send(alert)

    def firing(self) -> list[AlertView]:
        """The alerts this sink keeps re-sending."""
        with self._lock:
            return list(self._firing.values())

    def stats(self) -> SinkStats:
        """Delivery counters (each queued change and each re-sent alert counts)."""
        return self._queue.stats()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued change is delivered (or given up); True if so."""
        return self._queue.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds; stop re-sending."""
        self._queue.close(timeout)

    def _resend(self) -> list[AlertView]:
        return self.firing()

    def _post(self, batch: Sequence[AlertView]) -> None:
        now = self._clock()
        with self._lock:
            # A change queued before a newer one must not undo it (e.g. a queued
            # firing state re-sent after the resolve went out).
            latest = {a.fingerprint: a for a in batch}
            stale = [
                fp
                for fp, alert in latest.items()
                if alert.state != "resolved" and fp not in self._firing
            ]
        payload = [
            postable_alert(
                alert,
                now=now,
                resend_interval=self.resend_interval,
                generator_url=self._generator_url,
            )
            for fp, alert in latest.items()
            if fp not in stale
        ]
        if payload:
            post_json(self.url, payload, timeout=self._timeout, headers=self._headers)
