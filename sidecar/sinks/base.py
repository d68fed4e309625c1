"""What every alert sink shares: a queue that never blocks the caller, a
delivery thread that retries with backoff, and the labels and text of an alert.

A sink is a plain class with ``send(alert)`` and ``close(timeout)`` (the
``AlertSink`` protocol of :mod:`sidecar.alerts`). HTTP sinks hand a
``deliver`` function to a :class:`QueuedSink`, which owns the thread:

>>> sink = QueuedSink(lambda batch: None, name="example")
>>> # sink.send(alert)   # returns at once; delivered (with retries) in the background
>>> sink.close(1.0)

Sinks read alerts through the small read-only protocols below, so they depend
on the fields they use, not on the alerter's module.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "ALERT_NAME",
    "AlertView",
    "EffectView",
    "FindingView",
    "PermanentDeliveryError",
    "QueuedSink",
    "SeriesView",
    "SinkStats",
    "alert_annotations",
    "alert_labels",
    "correlation_lines",
    "describe_alert",
    "format_effect",
    "headline",
    "post_json",
    "rfc3339",
    "tier_name",
]

log = logging.getLogger(__name__)

ALERT_NAME = "BaselinedRegression"
_TIER_NAMES = {1: "minor", 2: "moderate", 3: "severe"}
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


# -- what the sinks read of an alert ------------------------------------------------


class EffectView(Protocol):
    """An effect with its confidence interval (``sidecar.stats.effects.Effect``)."""

    @property
    def name(self) -> str: ...
    @property
    def estimate(self) -> float: ...
    @property
    def lower(self) -> float: ...
    @property
    def upper(self) -> float: ...
    @property
    def unit(self) -> str: ...


class SeriesView(Protocol):
    """A series id (``sidecar.records.SeriesId``)."""

    @property
    def version(self) -> str: ...
    @property
    def slice(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def signal(self) -> str: ...


class FindingView(Protocol):
    """One series' comparison (``sidecar.compare.SeriesFinding``)."""

    @property
    def series(self) -> SeriesView: ...
    @property
    def phase(self) -> str: ...
    @property
    def effects(self) -> Mapping[str, EffectView]: ...
    @property
    def tier(self) -> int | None: ...
    @property
    def fired(self) -> Sequence[tuple[str, int, float]]: ...
    @property
    def baseline_count(self) -> int: ...
    @property
    def live_count(self) -> int: ...


class AlertView(Protocol):
    """One alert change (``sidecar.alerts.Alert``)."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def tier(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def updated_at(self) -> float: ...
    @property
    def resolved_at(self) -> float | None: ...
    @property
    def baseline_id(self) -> str: ...
    @property
    def window_start(self) -> float: ...
    @property
    def window_end(self) -> float: ...
    @property
    def findings(self) -> Sequence[FindingView]: ...
    @property
    def summary(self) -> str: ...
    @property
    def playbook_url(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...


# -- rendering -------------------------------------------------------------------------


def tier_name(tier: int) -> str:
    """``1`` -> ``"minor"``, ``2`` -> ``"moderate"``, ``3`` -> ``"severe"``."""
    return _TIER_NAMES.get(int(tier), f"tier{int(tier)}")


def rfc3339(seconds: float) -> str:
    """Unix seconds as the UTC RFC 3339 text Alertmanager expects (milliseconds)."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in ("relative", "share"):
        return f"{value * 100:+.2f}%"
    if unit == "points":
        return f"{value:+.2f} pts"
    if unit == "bits":
        return f"{value:+.2f} bits"
    if unit in ("distance", "statistic"):
        return f"{value:.4g}"
    return f"{value:+.4g}"


def format_effect(effect: EffectView) -> str:
    """``p99_rel +12.30% [+8.10%, +16.00%]``: estimate and confidence interval."""
    text = f"{effect.name} {_value(effect.estimate, effect.unit)}"
    if not (math.isnan(effect.lower) and math.isnan(effect.upper)):
        text += f" [{_value(effect.lower, effect.unit)}, {_value(effect.upper, effect.unit)}]"
    return text


def headline(finding: FindingView) -> tuple[EffectView, float] | None:
    """The effect that cleared the highest guardrail, with that guardrail (or None)."""
    best: tuple[str, int, float] | None = None
    for name, tier, guardrail in finding.fired:
        if name in finding.effects and (best is None or tier > best[1]):
            best = (name, tier, guardrail)
    if best is None:
        return None
    return finding.effects[best[0]], best[2]


def _main_finding(alert: AlertView) -> FindingView | None:
    if not alert.findings:
        return None
    return max(alert.findings, key=lambda f: -1 if f.tier is None else int(f.tier))


def alert_labels(alert: AlertView) -> dict[str, str]:
    """Alertmanager labels: the alert's own labels plus the fields every route needs.

    Label names are made valid (``[A-Za-z0-9_]``); empty values are left out.
    """
    labels = {_LABEL_NAME.sub("_", k): v for k, v in alert.labels.items() if v}
    finding = _main_finding(alert)
    labels.update(
        alertname=labels.get("alertname", ALERT_NAME),
        severity=tier_name(alert.tier),
        model=alert.model,
        environment=alert.environment,
        fingerprint=alert.fingerprint,
    )
    if finding is not None:
        signals = sorted({f.series.signal for f in alert.findings})
        labels.setdefault("signal", ",".join(signals))
        labels.setdefault("slice", finding.series.slice)
    return {k: v for k, v in labels.items() if v}


def describe_alert(alert: AlertView) -> str:
    """Several lines for humans: every fired effect with its bounds, counts, baseline."""
    lines = []
    for finding in alert.findings:
        series = finding.series
        where = f"{series.signal} ({series.kind}, slice {series.slice}"
        if series.version != "*":
            where += f", version {series.version}"
        where += f", phase {finding.phase})" if finding.phase else ")"
        highest: dict[str, tuple[int, float]] = {}  # effect -> the highest tier it cleared
        for name, tier, guardrail in finding.fired:
            if name in finding.effects and int(tier) > highest.get(name, (0, 0.0))[0]:
                highest[name] = (int(tier), guardrail)
        fired = []
        for name, (tier, guardrail) in highest.items():
            effect = finding.effects[name]
            bar = _value(math.copysign(guardrail, effect.estimate), effect.unit)
            fired.append(f"{format_effect(effect)} cleared the {tier_name(tier)} guardrail {bar}")
        lines.append(f"{where}: " + ("; ".join(fired) if fired else "no guardrail cleared now"))
        lines.append(f"samples: baseline {finding.baseline_count}, live {finding.live_count}")
    lines.append(
        f"baseline {alert.baseline_id}; live window {rfc3339(alert.window_start)}"
        f" .. {rfc3339(alert.window_end)}"
    )
    return "\n".join(lines)


def correlation_lines(alert: AlertView) -> tuple[str, list[str]]:
    """An alert's root-cause hints for humans (issue 4): the top suspect in one short
    line ('' without one) and the lines of the description (change point, suspects,
    fingerprint difference, slice attribution). Alerts without a ``correlation``
    attribute (or None) give nothing."""
    correlation: Any = getattr(alert, "correlation", None)
    if correlation is None:
        return "", []
    lines: list[str] = []
    cp = correlation.change_point
    if cp is not None and cp.estimated:
        lines.append(
            f"change point: {rfc3339(cp.time)} (between {rfc3339(cp.start)} and {rfc3339(cp.end)})"
        )
    suspect = ""
    if correlation.suspects:
        top = correlation.suspects[0]
        suspect = f"{top.describe()} ({top.model}, {rfc3339(top.time)}; score {top.score:.2f})"
        ranked = ", ".join(f"{s.describe()} {s.score:.2f}" for s in correlation.suspects[:3])
        lines.append(f"suspects: {ranked}")
    if correlation.fingerprint_diff:
        lines.append(
            "fingerprint: " + "; ".join(d.describe() for d in correlation.fingerprint_diff[:5])
        )
    if correlation.attribution_summary:
        lines.append(f"attribution: {correlation.attribution_summary}")
    return suspect, lines


def alert_annotations(alert: AlertView) -> dict[str, str]:
    """Alertmanager annotations: summary, description, runbook_url, baseline_id, and
    ``suspect`` (the top-ranked change event) when the alert carries correlation."""
    suspect, lines = correlation_lines(alert)
    description = describe_alert(alert)
    if lines:
        description += "\n" + "\n".join(lines)
    annotations = {
        "summary": alert.summary,
        "description": description,
        "baseline_id": alert.baseline_id,
    }
    if alert.playbook_url:
        annotations["runbook_url"] = alert.playbook_url
    if suspect:
        annotations["suspect"] = suspect
    return annotations


# -- delivery ----------------------------------------------------------------------------


class PermanentDeliveryError(Exception):
    """A delivery the receiver refused for good (HTTP 4xx): not retried."""


def post_json(
    url: str, payload: Any, *, timeout: float, headers: Mapping[str, str] | None = None
) -> int:
    """POST ``payload`` as JSON; return the HTTP status.

    Raises :class:`PermanentDeliveryError` for 4xx answers other than 408 and
    429, and ``OSError`` (``urllib.error.URLError``/``HTTPError``) for what is
    worth retrying: refused connections, timeouts, 5xx.
    """
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "baselined")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status: int = response.status
            return status
    except urllib.error.HTTPError as err:
        detail = err.read(512).decode("utf-8", "replace").strip()
        err.close()
        if 400 <= err.code < 500 and err.code not in (408, 429):
            raise PermanentDeliveryError(f"HTTP {err.code} from {url}: {detail}") from err
        raise


@dataclass(frozen=True)
class SinkStats:
    """Delivery counters of one sink.

    ``sent``: items delivered; ``failed_attempts``: attempts that failed (each
    retry counts); ``dropped``: items lost because the queue was full (the
    oldest go first); ``given_up``: items abandoned after the last retry or
    refused for good; ``pending``: items still queued.
    """

    sent: int
    failed_attempts: int
    dropped: int
    given_up: int
    pending: int


T = TypeVar("T")


class QueuedSink(Generic[T]):
    """A bounded queue drained by one daemon thread that calls ``deliver(batch)``.

    ``send`` never blocks: when ``max_queue`` items wait, the oldest is dropped
    and counted. A batch (up to ``max_batch`` items) whose ``deliver`` raises is
    retried up to ``max_attempts`` times, waiting ``backoff * 2**k`` seconds
    (capped at ``max_backoff``) scaled by a random factor in ``[1 - jitter, 1]``.
    Failures are logged at most once per ``log_interval`` seconds, never raised.

    ``periodic`` (with ``period`` seconds) runs on the delivery thread whenever
    it is due and nothing is queued; what it returns is delivered like a batch
    (the Alertmanager sink re-sends its firing alerts this way).

    ``sleep``, ``clock`` and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        deliver: Callable[[Sequence[T]], None],
        *,
        name: str,
        max_queue: int = 1000,
        max_batch: int = 1,
        max_attempts: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        jitter: float = 0.5,
        periodic: Callable[[], Sequence[T]] | None = None,
        period: float = 60.0,
        log_interval: float = 60.0,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if max_queue < 1 or max_batch < 1 or max_attempts < 1:
            raise ValueError("max_queue, max_batch and max_attempts must be at least 1")
        if backoff < 0 or max_backoff < backoff or not 0 <= jitter <= 1 or period <= 0:
            raise ValueError("need 0 <= backoff <= max_backoff, 0 <= jitter <= 1, period > 0")
        self.name = name
        self._deliver = deliver
        self._queue: collections.deque[T] = collections.deque()
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._jitter = jitter
        self._periodic = periodic
        self._period = period
        self._log_interval = log_interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._cond = threading.Condition()
        self._stopping = threading.Event()  # set by close: backoffs end early
        self._sleep = sleep or self._wait
        self._deadline = math.inf  # set by close: no retries after it
        self._busy = False
        self._sent = self._failed = self._dropped = self._given_up = 0
        self._last_log = -math.inf
        self._unlogged = 0
        self._next_tick = clock() + period
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self._thread.start()

    # -- caller side

    def send(self, item: T) -> None:
        """Queue one item; never blocks and never raises (after ``close``: dropped)."""
        with self._cond:
            if self._stopping.is_set():
                self._dropped += 1
                return
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(item)
            self._cond.notify()

    def stats(self) -> SinkStats:
        """The counters now."""
        with self._cond:
            return SinkStats(
                self._sent, self._failed, self._dropped, self._given_up, len(self._queue)
            )

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until nothing is queued or in flight."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop the thread.

        What is still queued then is counted as dropped.
        """
        with self._cond:
            self._deadline = self._clock() + timeout
            self._stopping.set()
            self._cond.notify_all()
        self._thread.join(timeout + 0.5)
        with self._cond:
            self._dropped += len(self._queue)
            self._queue.clear()

    # -- delivery thread

    def _wait(self, seconds: float) -> None:
        if not self._stopping.is_set():
            self._stopping.wait(seconds)  # close() cuts a backoff short
        else:
            time.sleep(seconds)  # closing: the caller checked the deadline leaves room

    def _take(self) -> list[T] | None:
        """The next batch; [] when a periodic run is due; None to stop."""
        with self._cond:
            while True:
                stopping = self._stopping.is_set()
                if stopping and (not self._queue or self._clock() >= self._deadline):
                    return None
                if not stopping and self._periodic is not None:
                    wait: float | None = self._next_tick - self._clock()
                    if wait is not None and wait <= 0:
                        return []
                else:
                    wait = None
                if self._queue:
                    take = min(self._max_batch, len(self._queue))
                    self._busy = True
                    return [self._queue.popleft() for _ in range(take)]
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                assert self._periodic is not None
                self._next_tick = self._clock() + self._period
                try:
                    batch = list(self._periodic())
                except Exception:
                    log.exception("sink %s: periodic task failed", self.name)
                    batch = []
                if not batch:
                    continue
                with self._cond:
                    self._busy = True
            try:
                self._attempt(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _attempt(self, batch: Sequence[T]) -> None:
        for attempt in range(self._max_attempts):
            try:
                self._deliver(batch)
            except PermanentDeliveryError as err:
                self._count_failure(len(batch), err, final=True)
                return
            except Exception as err:
                last = attempt + 1 == self._max_attempts
                delay = min(self._max_backoff, self._backoff * 2**attempt)
                delay *= 1.0 - self._jitter * self._rng.random()
                if self._stopping.is_set():
                    left = self._deadline - self._clock()
                    last = last or left <= delay
                self._count_failure(len(batch), err, final=last)
                if last:
                    return
                self._sleep(delay)
            else:
                with self._cond:
                    self._sent += len(batch)
                return

    def _count_failure(self, items: int, err: Exception, *, final: bool) -> None:
        with self._cond:
            self._failed += 1
            if final:
                self._given_up += items
            now = self._clock()
            if now - self._last_log < self._log_interval:
                self._unlogged += 1
                return
            self._last_log, unlogged, self._unlogged = now, self._unlogged, 0
            stats = (self._sent, self._failed, self._dropped, self._given_up)
        more = f" ({unlogged} more failures not logged)" if unlogged else ""
        what = "gave up on" if final else "will retry"
        log.warning(
            "alert sink %s: delivery failed, %s %d item(s): %s%s"
            " [sent=%d failed_attempts=%d dropped=%d given_up=%d]",
            self.name,
            what,
            items,
            err,
            more,
            *stats,
        )
