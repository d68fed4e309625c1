"""The alert lifecycle: tiers with hysteresis, deduplication and cooldown.

:class:`Alerter` turns comparison results into alert state changes. There is
one alert per (model, environment, series + phase, tier), identified by a
stable fingerprint. An alert fires after ``consecutive`` checks in a row at or
above its tier; when the series escalates, the higher tier's alert fires and
the lower one resolves (and the other way round when it de-escalates); an
alert resolves once its condition has been clear for ``resolve_after``
seconds; a fingerprint that resolved because its condition cleared cannot
fire again for ``cooldown`` seconds.

With a ``correlate`` function (:class:`sidecar.correlation.Correlator`), an
alert that fires or escalates carries root-cause hints (``Alert.correlation``:
change point, suspects, fingerprint difference, slice attribution); the
function runs outside the lock and a failure never stops the alert.

Alerts carry the model's owners (``owners`` lookup, read once per check when
an alert fires) as the label ``owners`` (comma-separated) and in the summary.

Every change goes to each :class:`AlertSink` (``send`` never blocks: sinks
queue) and to every :class:`Subscription` (the ``WatchAlerts`` streams).
State lives in memory; resolved alerts are kept up to ``history``.

>>> alerter = Alerter(consecutive=2)
>>> # changes = alerter.observe(comparison_result, playbook_url="https://wiki/fraud")
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from sidecar.compare import ComparisonResult, SeriesFinding
from sidecar.correlation import Correlation
from sidecar.guardrails import Tier
from sidecar.records import ALL_TRAFFIC, SeriesId
from sidecar.stats.effects import Effect

if TYPE_CHECKING:
    from sidecar.lease import ScopeState

__all__ = [
    "ALERT_NAME",
    "FIRING",
    "RESOLVED",
    "Alert",
    "AlertSink",
    "Alerter",
    "Subscription",
    "alert_fingerprint",
    "describe_effect",
]

log = logging.getLogger(__name__)

ALERT_NAME = "BaselinedRegression"
FIRING, RESOLVED = "firing", "resolved"


@dataclass(frozen=True)
class Alert:
    """One alert of one series and tier, as it stands after a change.

    ``findings`` holds the series' latest finding (effects with bounds);
    ``summary`` is one line for humans, ``labels`` what Alertmanager groups on.
    """

    fingerprint: str
    model: str
    environment: str
    tier: Tier
    state: str  # "firing" | "resolved"
    started_at: float
    updated_at: float
    resolved_at: float | None
    baseline_id: str
    window_start: float
    window_end: float
    findings: tuple[SeriesFinding, ...]
    summary: str
    playbook_url: str
    labels: Mapping[str, str] = field(default_factory=dict)
    # Root-cause hints (change point, suspects, fingerprint difference, slice
    # attribution), set when the alert fires or escalates; None without a correlator.
    correlation: Correlation | None = None

    @property
    def firing(self) -> bool:
        return self.state == FIRING


class AlertSink(Protocol):
    """Where alert changes go (Alertmanager, a webhook, OpenTelemetry logs)."""

    def send(self, alert: Alert) -> None:
        """Queue one alert change; must not block (retry in the sink's own thread)."""

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout`` seconds) and stop."""


def alert_fingerprint(
    model: str, environment: str, series: SeriesId, phase: str, tier: Tier
) -> str:
    """The stable id of one alert: 16 hex digits of a sha256.

    >>> from sidecar.records import Kind
    >>> sid = SeriesId("*", "*", Kind.LATENCY, "latency_seconds")
    >>> alert_fingerprint("fraud", "prod", sid, "", Tier.MODERATE) == alert_fingerprint(
    ...     "fraud", "prod", sid, "", Tier.MODERATE)
    True
    """
    text = "\x1f".join((model, environment, series.encode(), phase, tier.name.lower()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- formatting ------------------------------------------------------------------

_EFFECT_LABELS = {
    "p50_rel": "p50",
    "p90_rel": "p90",
    "p99_rel": "p99",
    "p999_rel": "p99.9",
    "mean_rel": "mean",
    "p50_abs": "p50 (abs)",
    "p90_abs": "p90 (abs)",
    "p99_abs": "p99 (abs)",
    "p999_abs": "p99.9 (abs)",
    "mean_abs": "mean (abs)",
    "ks": "KS distance",
    "w1_iqr": "W1/IQR",
    "missing_rate": "missing rate",
    "out_of_range_rate": "out-of-range rate",
    "precision_bits": "precision",
    "distinct_share": "distinct share",
    "tvd": "TVD",
    "new_category_share": "new categories",
    "vanished_share": "vanished categories",
}


def _fmt_value(value: float, unit: str, *, signed: bool) -> str:
    sign = "+" if signed else ""
    if unit in ("relative", "share"):
        return f"{value * 100:{sign}.1f}%"
    if unit == "points":
        return f"{value:{sign}.2f} pts"
    if unit == "bits":
        return f"{value:{sign}.1f} bits"
    return f"{value:{sign}.3g}"


def describe_effect(name: str, effect: Effect, confidence: float) -> str:
    """One effect for humans: ``p99 +18.2% (>= +9.1% at 99% confidence)``.

    The bound shown is the one on the side of the change (the lower bound of an
    increase, the upper bound of a decrease).
    """
    label = _EFFECT_LABELS.get(name, name)
    signed = effect.unit not in ("distance", "statistic")
    text = f"{label} {_fmt_value(effect.estimate, effect.unit, signed=signed)}"
    increase = effect.estimate >= 0
    bound = effect.lower if increase else effect.upper
    if not math.isnan(bound):
        op = ">=" if increase else "<="
        level = f"{confidence * 100:.10g}%"
        text += f" ({op} {_fmt_value(bound, effect.unit, signed=signed)} at {level} confidence)"
    return text


def _series_label(series: SeriesId, phase: str) -> str:
    text = series.signal
    if series.slice != ALL_TRAFFIC:
        text += f"[{series.slice}]"
    if series.version != ALL_TRAFFIC:
        text += f" v{series.version}"
    if phase:
        text += f" @{phase}"
    return text


def _headline(finding: SeriesFinding, tier: Tier) -> tuple[str, Effect] | None:
    """The effect that cleared the highest guardrail (ties: the first reported)."""
    best: tuple[str, Tier, float] | None = None
    for name, cleared, guardrail in finding.fired:
        if cleared >= tier and (best is None or cleared > best[1]):
            best = (name, cleared, guardrail)
    if best is None:  # the alert's tier is no longer cleared (resolving): show the largest tier
        for name, cleared, guardrail in finding.fired:
            if best is None or cleared > best[1]:
                best = (name, cleared, guardrail)
    if best is None or best[0] not in finding.effects:
        return None
    return best[0], finding.effects[best[0]]


def _summary(
    model: str, environment: str, finding: SeriesFinding, tier: Tier, confidence: float
) -> str:
    head = f"{model}/{environment} {_series_label(finding.series, finding.phase)}"
    picked = _headline(finding, tier)
    what = describe_effect(*picked, confidence) if picked else "no effect clears a guardrail now"
    return f"{head} {what}, tier {tier.name.lower()}"


def _labels(
    model: str, environment: str, series: SeriesId, phase: str, tier: Tier
) -> dict[str, str]:
    labels = {
        "alertname": ALERT_NAME,
        "severity": tier.name.lower(),
        "model": model,
        "environment": environment,
        "signal": series.signal,
        "slice": series.slice,
    }
    # Without these two, Alertmanager would merge alerts of different versions or phases.
    if series.version != ALL_TRAFFIC:
        labels["version"] = series.version
    if phase:
        labels["phase"] = phase
    return labels


# -- subscriptions (WatchAlerts) -------------------------------------------------


class Subscription:
    """A bounded feed of alert changes for one watcher, read with ``async for``.

    Changes are pushed from any thread; the watcher reads them on the event
    loop it subscribed from. When the watcher falls ``maxsize`` changes behind,
    the oldest are dropped (counted in ``dropped`` and logged) so the alerter
    never waits for it.
    """

    def __init__(
        self,
        alerter: Alerter,
        loop: asyncio.AbstractEventLoop,
        model: str | None,
        environment: str | None,
        maxsize: int,
    ) -> None:
        self._alerter = alerter
        self._loop = loop
        self._model = model or None
        self._environment = environment or None
        self._queue: collections.deque[Alert] = collections.deque()
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0
        self._dropping = False
        # Changes already queued by :meth:`seed` (fingerprint, state, updated_at):
        # a later push of the same change is skipped, so a snapshot never doubles.
        self._seeded: set[tuple[str, str, float]] = set()

    def seed(self, alerts: Iterable[Alert]) -> None:
        """Queue ``alerts`` ahead of every change (before the feed is registered)."""
        with self._lock:
            for alert in alerts:
                self._queue.append(alert)
                self._seeded.add((alert.fingerprint, alert.state, alert.updated_at))
        self._ready.set()

    def wants(self, alert: Alert) -> bool:
        return (self._model is None or alert.model == self._model) and (
            self._environment is None or alert.environment == self._environment
        )

    def push(self, alert: Alert) -> None:
        """Queue one change (any thread); drops the oldest when full."""
        with self._lock:
            if self._closed:
                return
            if self._seeded and (alert.fingerprint, alert.state, alert.updated_at) in self._seeded:
                return  # already sent as part of the snapshot
            if len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self.dropped += 1
                if not self._dropping:
                    self._dropping = True
                    log.warning(
                        "an alert watcher is too slow: its oldest changes are dropped"
                        " (%d so far; it keeps the newest %d)",
                        self.dropped,
                        self._maxsize,
                    )
            self._queue.append(alert)
        self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the watcher's loop is closed: nobody is listening
            self.close()

    def close(self) -> None:
        """Stop the feed: the iteration ends once the queued changes are read."""
        with self._lock:
            self._closed = True
        self._alerter._unsubscribe(self)
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self._loop.call_soon_threadsafe(self._ready.set)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Alert:
        while True:
            with self._lock:
                if self._queue:
                    if len(self._queue) <= 1:
                        self._dropping = False
                    return self._queue.popleft()
                if self._closed:
                    raise StopAsyncIteration
                self._ready.clear()
            await self._ready.wait()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the alerter -----------------------------------------------------------------


@dataclass
class _Track:
    """Lifecycle state of one (model, environment, series + phase)."""

    streak: dict[Tier, int] = field(default_factory=lambda: dict.fromkeys(Tier, 0))
    firing: Alert | None = None
    clear_since: float | None = None  # first check below the firing tier


_SeriesKey = tuple[str, str, SeriesId, str]


class Alerter:
    """Alert state from comparison results; fans changes out to sinks and watchers.

    ``alpha`` is only used to word the confidence in summaries (1 - alpha).
    ``owners(model, environment)`` names the owners shown on alerts that fire
    (read at most once per check; a failing lookup is logged and the alert
    fires without owners).
    Thread-safe: ``observe`` may run in a worker thread while watchers read
    on the event loop.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        consecutive: int = 2,
        resolve_after: float = 300.0,
        cooldown: float = 600.0,
        sinks: Sequence[AlertSink] = (),
        alpha: float = 0.01,
        history: int = 1000,
        owners: Callable[[str, str], Sequence[str]] | None = None,
        correlate: Callable[[SeriesFinding, ComparisonResult], Correlation] | None = None,
    ) -> None:
        if consecutive < 1:
            raise ValueError(f"consecutive must be at least 1, got {consecutive}")
        if resolve_after < 0 or cooldown < 0:
            raise ValueError("resolve_after and cooldown must be 0 or greater")
        self._clock = clock
        self.consecutive = consecutive
        self.resolve_after = resolve_after
        self.cooldown = cooldown
        self.sinks: tuple[AlertSink, ...] = tuple(sinks)
        self.confidence = 1.0 - alpha
        self._lock = threading.Lock()
        self._tracks: dict[_SeriesKey, _Track] = {}
        self._cooldown_until: dict[str, float] = {}
        self._resolved: collections.deque[Alert] = collections.deque(maxlen=history)
        self._subscribers: list[Subscription] = []
        self._owners = owners
        self._owners_cache: dict[tuple[str, str], tuple[str, ...]] = {}
        # Alerts decided outside the comparison loop (impact reports): fingerprint -> alert.
        self._published: dict[str, Alert] = {}
        self._correlate = correlate
        # Fleet mode (sidecar.lease.Fleet sets both): ``commit(model, environment)``
        # stores a scope's state, fenced by the lease, after a check and before
        # its changes go out (raising: not the leader, nothing goes out);
        # ``fleet_alerts()`` adds the stored alerts of scopes other sidecars lead.
        self.commit: Callable[[str, str], None] | None = None
        self.fleet_alerts: Callable[[], Sequence[Alert]] | None = None

    # -- queries

    def alerts(
        self,
        model: str | None = None,
        environment: str | None = None,
        include_resolved: bool = False,
    ) -> list[Alert]:
        """Firing alerts (and, with ``include_resolved``, the recent resolved
        ones), newest first; None or "" matches every model / environment."""
        with self._lock:
            found = [t.firing for t in self._tracks.values() if t.firing is not None]
            found += list(self._published.values())
            if include_resolved:
                found += list(self._resolved)
        if self.fleet_alerts is not None:
            found += [a for a in self.fleet_alerts() if include_resolved or a.firing]
        return sorted(
            (
                a
                for a in found
                if (not model or a.model == model)
                and (not environment or a.environment == environment)
            ),
            key=lambda a: (a.resolved_at or a.updated_at, a.started_at),
            reverse=True,
        )

    def subscribe(
        self,
        model: str | None = None,
        environment: str | None = None,
        *,
        maxsize: int = 1000,
        include_firing: bool = False,
    ) -> Subscription:
        """A feed of every later change (optionally of one model / environment).

        With ``include_firing`` the feed starts with every alert firing now that
        matches (oldest first; on a fleet sidecar also those of scopes others
        lead): the snapshot is taken and the feed registered under one lock, so
        no change falls between the two and none is sent twice.
        Call from the event loop that will read it; close it when done.
        """
        sub = Subscription(self, asyncio.get_running_loop(), model, environment, maxsize)
        with self._lock:
            if include_firing:
                firing = [t.firing for t in self._tracks.values() if t.firing is not None]
                firing += self._published.values()
                if self.fleet_alerts is not None:  # takes only the fleet's own lock
                    firing += [a for a in self.fleet_alerts() if a.firing]
                sub.seed(
                    sorted(
                        (a for a in firing if sub.wants(a)),
                        key=lambda a: (a.started_at, a.updated_at, a.fingerprint),
                    )
                )
            self._subscribers.append(sub)
        return sub

    @property
    def watchers(self) -> int:
        """Open subscriptions (``WatchAlerts`` streams)."""
        with self._lock:
            return len(self._subscribers)

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    # -- the lifecycle

    def observe(self, result: ComparisonResult, playbook_url: str = "") -> list[Alert]:
        """Advance every series of ``result``'s (model, environment) by one check;
        return the alerts that changed (fired or resolved), delivered to sinks and
        watchers already. A series missing from ``result`` counts as clear."""
        now = self._clock()
        with self._lock:
            self._owners_cache.clear()  # owners are read afresh on each check
            changes = self._advance(result, playbook_url, now)
            subscribers = list(self._subscribers)
        if self._correlate is not None:
            changes = self._enrich(changes, result, now)
        if self.commit is not None:
            try:
                self.commit(result.model, result.environment)
            except Exception:
                self.forget_scope(result.model, result.environment)
                raise
        self._deliver(changes, subscribers)
        return changes

    def _enrich(self, changes: list[Alert], result: ComparisonResult, now: float) -> list[Alert]:
        """Add the correlation to alerts that fired in this check (outside the lock:
        it reads the store). A failing correlator is logged; the alert goes out as is."""
        assert self._correlate is not None
        out: list[Alert] = []
        enriched: dict[str, Alert] = {}
        for alert in changes:
            if alert.state == FIRING and alert.started_at == now and alert.findings:
                try:
                    correlation = self._correlate(alert.findings[0], result)
                except Exception:
                    log.exception("cannot correlate alert %s; sent without", alert.fingerprint)
                else:
                    alert = replace(alert, correlation=correlation)
                    enriched[alert.fingerprint] = alert
            out.append(alert)
        if enriched:
            with self._lock:
                for track in self._tracks.values():
                    current = track.firing
                    if current is None or current.fingerprint not in enriched:
                        continue
                    if current.started_at == now and current.correlation is None:
                        track.firing = replace(
                            current, correlation=enriched[current.fingerprint].correlation
                        )
        return out

    def _advance(self, result: ComparisonResult, playbook_url: str, now: float) -> list[Alert]:
        model, env = result.model, result.environment
        by_key: dict[_SeriesKey, SeriesFinding] = {
            (model, env, f.series, f.phase): f for f in result.findings
        }
        keys = set(by_key) | {k for k in self._tracks if k[0] == model and k[1] == env}
        changes: list[Alert] = []
        for key in sorted(keys, key=lambda k: (k[2].encode(), k[3])):
            finding = by_key.get(key)
            track = self._tracks.setdefault(key, _Track())
            changes += self._step(key, track, finding, result, playbook_url, now)
            if track.firing is None and not any(track.streak.values()):
                del self._tracks[key]
        for fp in [fp for fp, until in self._cooldown_until.items() if until <= now]:
            del self._cooldown_until[fp]
        return changes

    def _step(
        self,
        key: _SeriesKey,
        track: _Track,
        finding: SeriesFinding | None,
        result: ComparisonResult,
        playbook_url: str,
        now: float,
    ) -> list[Alert]:
        level = finding.tier if finding is not None else None
        for tier in Tier:
            reached = level is not None and level >= tier
            track.streak[tier] = track.streak[tier] + 1 if reached else 0
        model, env, series, phase = key
        eligible = [
            tier
            for tier in Tier
            if track.streak[tier] >= self.consecutive
            and self._cooldown_until.get(alert_fingerprint(model, env, series, phase, tier), 0.0)
            <= now
        ]
        target = max(eligible) if eligible else None
        changes: list[Alert] = []
        current = track.firing
        if current is not None:
            if level is not None and level >= current.tier:
                track.clear_since = None
            elif track.clear_since is None:
                track.clear_since = now
            if target is not None and target > current.tier:  # escalation
                new = self._fire(key, target, finding, result, playbook_url, now)
                changes += [new, self._resolve(current, finding, now, cooled=False)]
                track.firing, track.clear_since = new, None
            elif track.clear_since is not None and now - track.clear_since >= self.resolve_after:
                changes.append(self._resolve(current, finding, now, cooled=True))
                track.firing, track.clear_since = None, None
                # De-escalation: a lower tier still held for long enough takes over.
                if target is not None and level is not None and level >= target:
                    new = self._fire(key, target, finding, result, playbook_url, now)
                    changes.insert(0, new)
                    track.firing = new
            elif finding is not None:  # same state: refresh the effects, not a change
                track.firing = replace(
                    current,
                    updated_at=now,
                    baseline_id=result.baseline_id,
                    window_start=result.window_start,
                    window_end=result.window_end,
                    findings=(finding,),
                )
        elif target is not None:
            track.firing = self._fire(key, target, finding, result, playbook_url, now)
            track.clear_since = None
            changes.append(track.firing)
        return changes

    def _fire(
        self,
        key: _SeriesKey,
        tier: Tier,
        finding: SeriesFinding | None,
        result: ComparisonResult,
        playbook_url: str,
        now: float,
    ) -> Alert:
        assert finding is not None  # a tier is only reached through a finding
        model, env, series, phase = key
        owners = self._owners_of(model, env)
        labels = _labels(model, env, series, phase, tier)
        summary = _summary(model, env, finding, tier, self.confidence)
        if owners:
            labels["owners"] = ",".join(owners)
            summary += f" (owners: {', '.join(owners)})"
        return Alert(
            fingerprint=alert_fingerprint(model, env, series, phase, tier),
            model=model,
            environment=env,
            tier=tier,
            state=FIRING,
            started_at=now,
            updated_at=now,
            resolved_at=None,
            baseline_id=result.baseline_id,
            window_start=result.window_start,
            window_end=result.window_end,
            findings=(finding,),
            summary=summary,
            playbook_url=playbook_url,
            labels=labels,
        )

    def _owners_of(self, model: str, environment: str) -> tuple[str, ...]:
        """The owners of (model, environment), cached for the current check."""
        if self._owners is None:
            return ()
        key = (model, environment)
        cached = self._owners_cache.get(key)
        if cached is None:
            try:
                cached = tuple(self._owners(model, environment))
            except Exception as err:
                log.warning("cannot read the owners of %s/%s: %s", model, environment, err)
                cached = ()
            self._owners_cache[key] = cached
        return cached

    def _resolve(
        self, alert: Alert, finding: SeriesFinding | None, now: float, *, cooled: bool
    ) -> Alert:
        resolved = replace(
            alert,
            state=RESOLVED,
            updated_at=now,
            resolved_at=now,
            findings=(finding,) if finding is not None else alert.findings,
        )
        if cooled and self.cooldown > 0:
            self._cooldown_until[alert.fingerprint] = now + self.cooldown
        self._resolved.append(resolved)
        return resolved

    def _deliver(self, changes: Iterable[Alert], subscribers: Sequence[Subscription]) -> None:
        for alert in changes:
            log.info("alert %s %s: %s", alert.fingerprint, alert.state, alert.summary)
            for sink in self.sinks:
                try:
                    sink.send(alert)
                except Exception:
                    log.exception("alert sink %s refused an alert", type(sink).__name__)
            for sub in subscribers:
                if sub.wants(alert):
                    sub.push(alert)

    # -- fleet mode: a scope's state moves between sidecars (sidecar.lease)

    def export_scope(self, model: str, environment: str) -> ScopeState:
        """The lifecycle state of one (model, environment), for the store."""
        from sidecar.lease import ScopeState

        state = ScopeState(model, environment)
        with self._lock:
            for (m, e, series, phase), track in self._tracks.items():
                if m == model and e == environment:
                    state.tracks[(series, phase)] = (
                        dict(track.streak),
                        track.firing,
                        track.clear_since,
                    )
            state.resolved = [
                a for a in self._resolved if a.model == model and a.environment == environment
            ]
            fingerprints = {a.fingerprint for a in state.resolved}
            state.cooldowns = {
                fp: until for fp, until in self._cooldown_until.items() if fp in fingerprints
            }
        return state

    def load_scope(self, state: ScopeState) -> None:
        """Replace the state of ``state``'s (model, environment) with ``state``
        (a sidecar taking over the lease): firing alerts stay firing, nothing
        is sent."""
        model, environment = state.model, state.environment
        with self._lock:
            self._drop_scope(model, environment)
            for (series, phase), (streak, firing, clear_since) in state.tracks.items():
                track = _Track(streak=dict(streak), firing=firing, clear_since=clear_since)
                self._tracks[(model, environment, series, phase)] = track
            for fp, until in state.cooldowns.items():
                self._cooldown_until[fp] = max(until, self._cooldown_until.get(fp, 0.0))
            known = {(a.fingerprint, a.resolved_at) for a in self._resolved}
            self._resolved.extend(
                a for a in state.resolved if (a.fingerprint, a.resolved_at) not in known
            )

    def forget_scope(self, model: str, environment: str) -> None:
        """Drop the tracks of one (model, environment) (its lease went to another sidecar)."""
        with self._lock:
            self._drop_scope(model, environment)

    def _drop_scope(self, model: str, environment: str) -> None:
        for key in [k for k in self._tracks if k[0] == model and k[1] == environment]:
            del self._tracks[key]

    def show_watchers(self, alerts: Iterable[Alert]) -> None:
        """Feed changes another sidecar raised to this one's watchers (not its sinks)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for alert in alerts:
            for sub in subscribers:
                if sub.wants(alert):
                    sub.push(alert)

    def publish(self, alert: Alert) -> None:
        """Fire an alert decided outside the comparison loop (an impact report's
        regression, ``sidecar.impact``): delivered to sinks and watchers now and
        listed as firing until :meth:`retract`. Publishing a firing fingerprint
        again changes nothing."""
        with self._lock:
            if alert.fingerprint in self._published:
                return
            self._published[alert.fingerprint] = alert
            subscribers = list(self._subscribers)
        self._deliver([alert], subscribers)

    def retract(self, fingerprint: str) -> Alert | None:
        """Resolve a published alert (delivered like any resolve); None when it is
        not firing."""
        now = self._clock()
        with self._lock:
            alert = self._published.pop(fingerprint, None)
            if alert is None:
                return None
            resolved = replace(alert, state=RESOLVED, updated_at=now, resolved_at=now)
            self._resolved.append(resolved)
            subscribers = list(self._subscribers)
        self._deliver([resolved], subscribers)
        return resolved

    def end_watchers(self) -> None:
        """End every subscription (their iterations stop after the queued changes)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.close()

    def close(self, timeout: float = 5.0) -> None:
        """End the watchers and close every sink (each gets up to ``timeout`` seconds)."""
        self.end_watchers()
        for sink in self.sinks:
            try:
                sink.close(timeout)
            except Exception:
                log.exception("closing alert sink %s failed", type(sink).__name__)
