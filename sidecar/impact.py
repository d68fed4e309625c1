"""Impact reports: every change event starts a before/after comparison of its scope.

For each event (recorded or derived) and each environment it applies to, the
:class:`ImpactChecker` compares the traffic *after* the event (buckets that
start at or after it, up to ``max_wait``) with the traffic *before* it (the
``lookback`` seconds of buckets that end by then), with the comparator's own
machinery: the before side plays the baseline (fixed-sample bounds), the after
side the live epoch (time-uniform confidence sequences), so looking at the
after side at every check never inflates false alarms. The family of tests is
the guarded effects of the before side's series in scope, and the false-alarm
budget ``alpha`` (the guardrails') is split over it.

Scope: the event's model and environment (an event without environment is
checked in every environment with window data); ``version``: the after side
is that version's traffic only; ``node`` / ``image``: when ``node=<value>``
(``image=<value>``) is a slice of the model, both sides are that slice,
otherwise all traffic (``scope_note`` says so).

Verdicts, once both sides hold ``min_samples`` and ``min_wait`` has passed:

- ``regression``: some effect's interval clears its minor guardrail (in the
  monitored direction): the effects and tiers are in the report;
- ``no_change``: every tested effect's interval lies inside ``margin`` times its
  minor guardrail (the bounds that justify "no measurable change");
- otherwise it stays ``pending`` until ``max_wait`` has passed and then ends
  ``inconclusive``, with an estimate of how many more samples a verdict needs
  (interval widths shrink like ``sqrt(log n / n)``).

Reports are stored (``Store.put_impact_report``), exported as an OpenTelemetry
log record (event name ``baselined.impact``) and a span linked to the event,
and a regression raises an alert through :meth:`Alerter.publish`.

>>> ImpactPolicy().min_samples
20000
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from sidecar.compare import (
    SeriesFinding,
    build_evaluator,
    compare_states,
    copy_state,
    count_tests,
    merge_into,
    read_grouped,
)
from sidecar.errors import NotFound
from sidecar.guardrails import Guardrail, Guardrails, Tier
from sidecar.records import (
    ALL_TRAFFIC,
    EventRecord,
    ImpactEffect,
    ImpactRecord,
    Kind,
    SeriesId,
)
from sidecar.series import CategoricalState, NumericState
from sidecar.stats.effects import Effect
from sidecar.stats.evaluator import EffectEvaluator
from sidecar.stores.base import DEFAULT_EVENT_RETENTION, Store

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider
    from opentelemetry.trace import Tracer

    from sidecar.alerts import Alert
    from sidecar.settings import Settings

__all__ = [
    "IMPACT_ALERT_NAME",
    "IMPACT_EVENT_NAME",
    "IMPACT_SPAN_NAME",
    "AlertPublisher",
    "ImpactChecker",
    "ImpactPolicy",
    "ImpactTelemetry",
    "event_label",
    "event_span_context",
    "impact_line",
    "report_id",
    "samples_for_width",
]

log = logging.getLogger(__name__)

IMPACT_EVENT_NAME = "baselined.impact"
"""``event_name`` of the OpenTelemetry log record of a decided impact report."""
IMPACT_SPAN_NAME = "baselined.impact"
"""Name of the span of a decided impact report (linked to the event)."""
IMPACT_ALERT_NAME = "BaselinedImpactRegression"

_State = NumericState | CategoricalState
_Key = tuple[str, Kind, str]
_TIER_NAMES = {Tier.MINOR: "minor", Tier.MODERATE: "moderate", Tier.SEVERE: "severe"}
_SLICE_SCOPES = (("node", "node"), ("image", "image"))  # event field -> slice attribute
_MAX_EVENTS = 1000  # events read per round
_MAX_SAMPLES_NEEDED = 10**12


class AlertPublisher(Protocol):
    """Where impact regressions go as alerts: :class:`~sidecar.alerts.Alerter`
    (the sidecar), or the replay's wrapper that also writes alert lines."""

    def publish(self, alert: Alert) -> None:
        """Fire ``alert`` (publishing a firing fingerprint again changes nothing)."""

    def retract(self, fingerprint: str) -> Alert | None:
        """Resolve the published alert ``fingerprint``; None when it is not firing."""


@dataclass(frozen=True)
class ImpactPolicy:
    """How impact checks decide; the ``impact_*`` settings (docs/configuration.md)."""

    min_samples: int = 20_000
    min_wait: float = 60.0
    max_wait: float = 86_400.0
    lookback: float = 86_400.0
    margin: float = 3.5
    alert_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")
        if not (0 <= self.min_wait <= self.max_wait) or not self.lookback > 0:
            raise ValueError("need 0 <= min_wait <= max_wait and lookback > 0")
        if not self.margin > 0:
            raise ValueError(f"margin must be greater than 0, got {self.margin}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ImpactPolicy:
        return cls(
            min_samples=settings.impact_min_samples,
            min_wait=settings.impact_min_wait,
            max_wait=settings.impact_max_wait,
            lookback=settings.impact_lookback,
            margin=settings.impact_margin,
            alert_seconds=settings.impact_alert_seconds,
        )


def report_id(event_id: str, environment: str) -> str:
    """The id of the report of one event in one environment (stable: a restarted
    sidecar continues the same report)."""
    digest = hashlib.sha256(f"{event_id}\x1f{environment}".encode()).hexdigest()
    return f"im-{digest[:20]}"


def event_label(event: EventRecord) -> str:
    """An event for people: ``library_update numpy 1.26.4 -> 2.1.0 (ev-...)``."""
    name = f"custom:{event.custom_type}" if event.custom_type else event.type
    attrs = event.attributes
    parts = [name]
    if attrs.get("package") and ("from" in attrs or "to" in attrs):
        parts.append(f"{attrs['package']} {attrs.get('from', '?')} -> {attrs.get('to', '?')}")
    elif attrs.get("field") and attrs.get("to"):
        parts.append(f"{attrs['field']} {attrs.get('from', '?')} -> {attrs['to']}")
    for key in ("version", "node", "image"):
        value = getattr(event, key)
        if value:
            parts.append(f"{key}={value}")
    return " ".join(parts) + (f" ({event.id})" if event.id else "")


def samples_for_width(n: float, width: float, target: float) -> float:
    """The sample count at which an interval of half-width ``width`` at ``n``
    samples shrinks to ``target``, taking widths to scale like sqrt(log n / n).

    >>> round(samples_for_width(10_000, 0.04, 0.02) / 10_000, 1)
    4.7
    """
    if not (n > 1 and width > 0 and target > 0):
        return math.inf
    if target >= width:
        return n
    goal = (target / width) ** 2 * math.log(n) / n  # log(m) / m must fall to this
    lo, hi = n, n * 2.0
    while math.log(hi) / hi > goal:
        lo, hi = hi, hi * 2.0
        if hi > _MAX_SAMPLES_NEEDED:
            return math.inf
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if math.log(mid) / mid > goal:
            lo = mid
        else:
            hi = mid
    return hi


def _total(state: _State) -> int:
    if isinstance(state, NumericState):
        return state.count + state.missing + state.out_of_range
    return state.count + state.missing


def _samples(states: Mapping[SeriesId, _State]) -> int:
    """Records on one side: the largest count of any series (each record feeds every signal)."""
    return max((_total(s) for s in states.values()), default=0)


def _within(effect: Effect, rail: Guardrail, margin: float) -> bool:
    """The interval lies inside ``margin`` in the monitored direction (nan: not shown)."""
    lower, upper = effect.lower, effect.upper
    if math.isnan(lower) or math.isnan(upper):
        return False
    if rail.direction == "up":
        return upper < margin
    if rail.direction == "down":
        return lower > -margin
    return -margin < lower and upper < margin


def _half_width(effect: Effect, rail: Guardrail) -> float:
    """Half the interval's width on the monitored side (the part that must shrink)."""
    lower, upper, est = effect.lower, effect.upper, effect.estimate
    if not (math.isfinite(lower) and math.isfinite(upper) and math.isfinite(est)):
        return math.inf
    if rail.direction == "up":
        return max(upper - est, 0.0)
    if rail.direction == "down":
        return max(est - lower, 0.0)
    return max(upper - est, est - lower, 0.0)


@dataclass
class _After:
    """The after side of one check, merged incrementally: buckets older than the
    seal are merged once and kept; newer ones are read again each round."""

    sealed_through: int
    groups: dict[SeriesId, _State] = field(default_factory=dict)


@dataclass
class _Check:
    """What one pending check keeps between rounds."""

    id: str
    event: EventRecord
    environment: str
    created_at: float
    before: dict[SeriesId, _State] | None = None
    before_frozen: bool = False
    evaluator: EffectEvaluator[_Key] | None = None
    tests: float = 0.0  # the family's alpha shares (compare.count_tests: weighted)
    after: _After | None = None


class ImpactChecker:
    """Runs the impact checks of every recent change event; see the module docstring.

    ``events(start, end)`` lists the events whose time is in ``[start, end)``
    (the sidecar's :class:`~sidecar.events.EventLog`, or replay's input lines);
    ``environments(model)`` the environments with window data of a model
    (default: the store's :meth:`list_windows`). ``alerter`` (optional) gets an
    alert per regression (:meth:`Alerter.publish`), retracted after
    ``policy.alert_seconds``; ``telemetry`` (optional) exports every decided report;
    ``owns(model, environment)`` (optional, fleet mode) says whether this sidecar
    runs the checks of that scope.
    Call :meth:`run_once` after each comparison round; it is not thread-safe
    against itself (a lock serialises calls).
    """

    def __init__(
        self,
        store: Store,
        guardrails: Guardrails,
        events: Callable[[float, float], Sequence[EventRecord]],
        *,
        bucket_seconds: int,
        policy: ImpactPolicy | None = None,
        clock: Callable[[], float] = time.time,
        environments: Callable[[str], Sequence[str]] | None = None,
        alerter: AlertPublisher | None = None,
        telemetry: ImpactTelemetry | None = None,
        retention_seconds: float = DEFAULT_EVENT_RETENTION,
        seal_after: float = 600.0,
        owns: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.policy = policy or ImpactPolicy()
        self.guardrails = guardrails
        self.bucket_seconds = max(1, int(bucket_seconds))
        self.seal_after = seal_after
        self._store = store
        self._events = events
        self._clock = clock
        self._environments = environments
        self._alerter = alerter
        self._telemetry = telemetry
        self._retention = retention_seconds
        self._owns = owns
        self._checks: dict[str, _Check] = {}
        self._done: dict[str, float] = {}  # report id -> event time (forgotten past max_wait)
        self._alerts: dict[str, float] = {}  # fingerprint -> when it resolves
        self._lock = threading.Lock()

    # -- driving ---------------------------------------------------------------

    def run_once(self) -> list[ImpactRecord]:
        """One round: start checks for new events, advance the pending ones, store
        their reports; return the reports that reached a final verdict now."""
        with self._lock:
            now = self._clock()
            self._retract_alerts(now)
            self._discover(now)
            decided: list[ImpactRecord] = []
            for check in sorted(self._checks.values(), key=lambda c: (c.event.time, c.id)):
                try:
                    record = self._advance(check, now, ended=False)
                except Exception:
                    log.warning(
                        "impact check %s failed; retried next round", check.id, exc_info=True
                    )
                    continue
                if record.final:
                    decided.append(record)
            return decided

    def finish(self) -> list[ImpactRecord]:
        """End every pending check now (a replay's input ended): a regression found
        so far stands, anything else is inconclusive. Returns those reports."""
        with self._lock:
            now = self._clock()
            out: list[ImpactRecord] = []
            for check in sorted(self._checks.values(), key=lambda c: (c.event.time, c.id)):
                out.append(self._advance(check, now, ended=True))
            return out

    @property
    def pending(self) -> int:
        """Checks still waiting for a verdict."""
        with self._lock:
            return len(self._checks)

    def _discover(self, now: float) -> None:
        horizon = now - self.policy.max_wait - self.policy.min_wait - self.bucket_seconds
        for rid in [r for r, t in self._done.items() if t < horizon]:
            del self._done[rid]
        events = self._events(max(0.0, horizon), now + 1e-9)
        if not events:
            return
        windows: dict[str, list[str]] | None = None
        for event in list(events)[-_MAX_EVENTS:]:
            if event.time > now or not event.id:
                continue
            if event.environment:
                environments: Sequence[str] = [event.environment]
            elif self._environments is not None:
                environments = self._environments(event.model)
            else:
                if windows is None:
                    windows = {}
                    for model, env in self._store.list_windows():
                        windows.setdefault(model, []).append(env)
                environments = windows.get(event.model, [])
            for environment in environments:
                rid = report_id(event.id, environment)
                if rid in self._done or rid in self._checks:
                    continue
                if self._owns is not None and not self._owns(event.model, environment):
                    continue
                created = now
                try:
                    stored = self._store.get_impact_report(rid)
                except NotFound:
                    stored = None
                if stored is not None:
                    if stored.final:
                        self._done[rid] = event.time
                        continue
                    created = stored.created_at
                self._checks[rid] = _Check(rid, event, environment, created)

    # -- one check -----------------------------------------------------------------

    def _scope(
        self, check: _Check, before: Mapping[SeriesId, _State], after: Mapping[SeriesId, _State]
    ) -> tuple[str, dict[str, str], str]:
        """(slice compared, scope, note)."""
        event = check.event
        scope: dict[str, str] = {}
        notes: list[str] = []
        chosen = ALL_TRAFFIC
        slices = {sid.slice for sid in before} | {sid.slice for sid in after}
        for name, attribute in _SLICE_SCOPES:
            value = getattr(event, name)
            if not value:
                continue
            label = f"{attribute}={value}"
            if chosen == ALL_TRAFFIC and label in slices:
                chosen = label
            elif chosen == ALL_TRAFFIC:
                notes.append(f"{name} {value!r} is not a slice of the model: all traffic compared")
            else:
                notes.append(f"{name} {value!r} not used: the comparison is on slice {chosen}")
        scope["slice"] = chosen
        if event.version:
            scope["version"] = event.version
        return chosen, scope, "; ".join(notes)

    def _read_before(self, check: _Check, now: float) -> dict[SeriesId, _State]:
        if check.before is not None and check.before_frozen:
            return check.before
        bs = self.bucket_seconds
        end = math.floor(check.event.time / bs) * bs
        start = math.floor(check.event.time - self.policy.lookback)
        grouped = read_grouped(self._store, check.event.model, check.environment, start, end, _zero)
        states: dict[SeriesId, _State] = {}
        for sid, parts in grouped.get(0, {}).items():
            for blob in parts:
                _merge_blob(states, sid, blob)
        check.before = states
        # Late rows of other writers reach the store within a flush or two.
        check.before_frozen = now >= end + 2 * bs + self.seal_after / 10
        return states

    def _after_start(self, event: EventRecord) -> int:
        bs = self.bucket_seconds
        return math.ceil(event.time / bs) * bs

    def _read_after(self, check: _Check, now: float, end: float) -> dict[SeriesId, _State]:
        versions = (check.event.version,) if check.event.version else ()
        first = self._after_start(check.event)
        through = math.floor(end) + 1 if end >= now else math.ceil(end)
        after = check.after or _After(first)
        seal = max(after.sealed_through, min(through, math.floor(now - self.seal_after)))
        model, env = check.event.model, check.environment
        if seal > after.sealed_through:
            newly = read_grouped(
                self._store, model, env, after.sealed_through, seal, _zero, versions
            )
            for sid, parts in newly.get(0, {}).items():
                for blob in parts:
                    _merge_blob(after.groups, sid, blob)
            after.sealed_through = seal
        check.after = after
        merged: dict[SeriesId, _State] = {}
        recent = read_grouped(self._store, model, env, seal, through, _zero, versions)
        for sid, parts in recent.get(0, {}).items():
            for blob in parts:
                _merge_blob(merged, sid, blob)
        for sid, state in after.groups.items():
            if sid in merged:
                merge_into(merged, sid, state)
            else:
                merged[sid] = copy_state(state)
        return merged

    def _advance(self, check: _Check, now: float, *, ended: bool) -> ImpactRecord:
        policy = self.policy
        event = check.event
        t = event.time
        after_end = min(now, t + policy.max_wait)
        before_all = self._read_before(check, now)
        after_all = self._read_after(check, now, after_end)
        chosen, scope, note = self._scope(check, before_all, after_all)
        before = {
            SeriesId(ALL_TRAFFIC, s.slice, s.kind, s.signal): st
            for s, st in before_all.items()
            if s.slice == chosen
        }
        after = {s: st for s, st in after_all.items() if s.slice == chosen}
        n_before, n_after = _samples(before), _samples(after)
        model = event.model
        alpha = self.guardrails.alpha
        tests = count_tests(before.items(), self.guardrails, model)
        alpha_test = alpha / tests if tests else alpha
        expired = ended or now >= t + policy.max_wait
        # Too few samples for any verdict yet: count them, skip the effects.
        counting = not expired and (n_before < policy.min_samples or n_after < policy.min_samples)
        findings: list[SeriesFinding] = []
        if before and after and not counting:
            if check.evaluator is None or check.tests != tests or not check.before_frozen:
                check.evaluator = build_evaluator(before, self.guardrails, model, alpha_test)
                check.tests = tests
            findings, alpha_test = compare_states(
                before, after, self.guardrails, model, alpha, tests=tests, evaluator=check.evaluator
            )
        kinds = {
            (s.slice, s.kind, s.signal): isinstance(st, CategoricalState)
            for s, st in before.items()
        }
        effects = self._effects(model, findings, kinds)
        enough = (
            n_before >= policy.min_samples
            and n_after >= policy.min_samples
            and now >= t + policy.min_wait
        )
        regression = any(f.tier is not None for f in findings)
        if (enough or expired) and regression:
            verdict = "regression"
        elif enough and effects and all(e.within for e in effects):
            verdict = "no_change"
        elif expired:
            verdict = "inconclusive"
        else:
            verdict = "pending"
        needed = 0
        if verdict in ("pending", "inconclusive"):
            needed = self._needed(model, findings, n_after, kinds)
        bs = self.bucket_seconds
        record = ImpactRecord(
            id=check.id,
            model=model,
            environment=check.environment,
            event=event,
            verdict=verdict,
            effects=tuple(effects),
            scope=scope,
            scope_note=note,
            samples_before=n_before,
            samples_after=n_after,
            samples_needed=needed,
            before_start=t - policy.lookback,
            before_end=math.floor(t / bs) * bs,
            after_start=self._after_start(event),
            after_end=after_end,
            alpha_per_test=alpha_test,
            margin=policy.margin,
            created_at=check.created_at,
            updated_at=now,
            decided_at=now if verdict != "pending" else 0.0,
        )
        record = replace(record, summary=self._summary(record, ended=ended))
        if record.verdict == "regression":
            record = self._raise_alert(record, findings, now)
        self._store.put_impact_report(record, retention_seconds=self._retention)
        if record.final:
            del self._checks[check.id]
            self._done[check.id] = t
            if self._telemetry is not None:
                self._telemetry.export(record)
            log.info("impact report %s: %s", record.id, record.summary)
        return record

    def _effects(
        self, model: str, findings: Iterable[SeriesFinding], kinds: Mapping[_Key, bool]
    ) -> list[ImpactEffect]:
        margin = self.policy.margin
        out: list[ImpactEffect] = []
        for finding in findings:
            sid = finding.series
            categorical = kinds.get((sid.slice, sid.kind, sid.signal), False)
            tiers = {name: tier for name, tier, _ in finding.fired}
            rails = self.guardrails.for_state(model, sid.kind, sid.signal, categorical)
            for rail in rails:
                effect = finding.effects.get(rail.effect)
                if effect is None:
                    continue
                tier = tiers.get(rail.effect)
                out.append(
                    ImpactEffect(
                        signal=sid.signal,
                        kind=sid.kind.value,
                        slice=sid.slice,
                        effect=rail.effect,
                        estimate=effect.estimate,
                        lower=effect.lower,
                        upper=effect.upper,
                        unit=effect.unit,
                        direction=rail.direction,
                        guardrail=rail.minor,
                        margin=margin * rail.minor,
                        tier=_TIER_NAMES.get(tier, "") if tier is not None else "",
                        within=_within(effect, rail, margin * rail.minor),
                        samples_before=finding.baseline_count,
                        samples_after=finding.live_count,
                    )
                )
        order = {"severe": 0, "moderate": 1, "minor": 2, "": 3}
        out.sort(key=lambda e: (order[e.tier], e.within, e.signal, e.effect))
        return out

    def _needed(
        self,
        model: str,
        findings: Iterable[SeriesFinding],
        n_after: int,
        kinds: Mapping[_Key, bool],
    ) -> int:
        """More after-samples until every tested effect is decided (an estimate)."""
        need = max(0, self.policy.min_samples - n_after)
        margin = self.policy.margin
        for finding in findings:
            n = finding.live_count
            sid = finding.series
            categorical = kinds.get((sid.slice, sid.kind, sid.signal), False)
            for rail in self.guardrails.for_state(model, sid.kind, sid.signal, categorical):
                effect = finding.effects.get(rail.effect)
                if effect is None or _within(effect, rail, margin * rail.minor):
                    continue
                if rail.tier(effect.lower, effect.upper) is not None:
                    continue
                width = _half_width(effect, rail)
                est = abs(effect.estimate) if math.isfinite(effect.estimate) else math.inf
                # Decided either way: inside the margin, or clear of the guardrail.
                target = max(margin * rail.minor - est, est - rail.minor)
                m = samples_for_width(n, width, target) if target > 0 else math.inf
                if not math.isfinite(m):
                    return _MAX_SAMPLES_NEEDED
                need = max(need, math.ceil(m) - n)
        return int(need)

    def _summary(self, record: ImpactRecord, *, ended: bool) -> str:
        where = f"{record.model}/{record.environment}"
        if record.scope.get("slice", ALL_TRAFFIC) != ALL_TRAFFIC:
            where += f"[{record.scope['slice']}]"
        if record.scope.get("version"):
            where += f" v{record.scope['version']}"
        head = f"after {event_label(record.event)}: {where}"
        counts = f"{record.samples_before:,} samples before, {record.samples_after:,} after"
        if record.verdict == "no_change":
            series = len({(e.signal, e.kind, e.slice) for e in record.effects})
            return (
                f"{head}: no measurable change ({len(record.effects)} effects on {series} series,"
                f" every interval inside {record.margin:g}x its minor guardrail; {counts})"
            )
        if record.verdict == "regression":
            fired = [e for e in record.effects if e.tier]
            shown = "; ".join(_describe(e) for e in fired[:3])
            more = f" and {len(fired) - 3} more" if len(fired) > 3 else ""
            return f"{head}: regression: {shown}{more} ({counts})"
        short = (
            f"{record.samples_needed:,} more samples"
            if record.samples_needed < _MAX_SAMPLES_NEEDED
            else "more samples than the traffic is likely to give"
        )
        if record.verdict == "pending":
            return f"{head}: pending, about {short} needed ({counts})"
        why = "the input ended" if ended else "the maximum wait ran out"
        if record.samples_before < self.policy.min_samples:
            why += f" with only {record.samples_before:,} samples before the event"
        elif record.samples_after < self.policy.min_samples:
            why += f" with only {record.samples_after:,} samples after the event"
        else:
            why += ", the bounds still straddle the margin"
        return f"{head}: inconclusive ({why}); about {short} needed for a verdict ({counts})"

    # -- alerts --------------------------------------------------------------------

    def _raise_alert(
        self, record: ImpactRecord, findings: Sequence[SeriesFinding], now: float
    ) -> ImpactRecord:
        fingerprint = hashlib.sha256(f"impact\x1f{record.id}".encode()).hexdigest()[:16]
        record = replace(record, alert_fingerprint=fingerprint)
        alerter = self._alerter
        if alerter is None or fingerprint in self._alerts:
            return record
        from sidecar.alerts import FIRING, Alert

        fired = sorted(
            (f for f in findings if f.tier is not None),
            key=lambda f: (-int(f.tier or 0), f.series.signal),
        )
        tier = fired[0].tier
        assert tier is not None
        top = fired[0].series
        labels = {
            "alertname": IMPACT_ALERT_NAME,
            "severity": _TIER_NAMES[tier],
            "model": record.model,
            "environment": record.environment,
            "signal": top.signal,
            "slice": top.slice,
            "event_id": record.event.id,
            "event_type": record.event.type,
            "impact_report": record.id,
        }
        alert = Alert(
            fingerprint=fingerprint,
            model=record.model,
            environment=record.environment,
            tier=tier,
            state=FIRING,
            started_at=now,
            updated_at=now,
            resolved_at=None,
            baseline_id="",
            window_start=record.after_start,
            window_end=record.after_end,
            findings=tuple(fired),
            summary=f"impact {record.summary}",
            playbook_url=self.guardrails.playbook_url(record.model),
            labels=labels,
        )
        try:
            alerter.publish(alert)
        except Exception:
            log.exception("cannot raise the alert of impact report %s", record.id)
            return record
        self._alerts[fingerprint] = now + self.policy.alert_seconds
        return record

    def _retract_alerts(self, now: float) -> None:
        if self._alerter is None:
            return
        for fingerprint in [fp for fp, until in self._alerts.items() if until <= now]:
            del self._alerts[fingerprint]
            try:
                self._alerter.retract(fingerprint)
            except Exception:
                log.exception("cannot resolve impact alert %s", fingerprint)


def _zero(_bucket: int) -> int:
    return 0


def _merge_blob(target: dict[SeriesId, _State], sid: SeriesId, blob: bytes) -> None:
    from sidecar.series import merge_encoded

    merge_into(target, sid, merge_encoded([blob]))


def _describe(effect: ImpactEffect) -> str:
    from sidecar.alerts import describe_effect

    where = effect.signal + (f"[{effect.slice}]" if effect.slice != ALL_TRAFFIC else "")
    text = describe_effect(
        effect.effect,
        Effect(effect.effect, effect.estimate, effect.lower, effect.upper, effect.unit),
        0.99,
    )
    # The confidence wording is the family's, not 99%: keep the interval, drop the level.
    text = text.replace(" at 99% confidence", "")
    return f"{where} {text}, tier {effect.tier}"


# -- output ------------------------------------------------------------------------


def impact_line(record: ImpactRecord, now: float) -> dict[str, Any]:
    """The JSON object ``baselined replay`` writes for one impact report."""
    data = record.to_dict()
    return {
        "kind": "impact",
        "time": now,
        "model": record.model,
        "environment": record.environment,
        "event": data["event"],
        "verdict": record.verdict,
        "effects": data["effects"],
        "samples_before": record.samples_before,
        "samples_after": record.samples_after,
        "samples_needed": record.samples_needed,
        "scope": dict(record.scope),
        "scope_note": record.scope_note,
        "before": [record.before_start, record.before_end],
        "after": [record.after_start, record.after_end],
        "alpha_per_test": data["alpha_per_test"],
        "margin": record.margin,
        "summary": record.summary,
        "report_id": record.id,
    }


# -- OpenTelemetry -------------------------------------------------------------------


def event_span_context(event: EventRecord) -> Any:
    """The span context an impact span links to for ``event``: the event's
    ``traceparent`` attribute (CloudEvents distributed tracing) when it has a
    valid one, else ids derived from the event id (trace id: the first 32 hex
    digits of sha256("baselined.event" + id), span id: the next 16), so every
    report of one event links to the same place."""
    from opentelemetry.trace import SpanContext, TraceFlags

    from sidecar.sinks.otel import parse_traceparent

    for key in ("traceparent", "cloudevents.traceparent"):
        value = event.attributes.get(key)
        if value:
            parsed = parse_traceparent(value)
            if parsed is not None:
                return parsed
    digest = hashlib.sha256(f"baselined.event\x1f{event.id}".encode()).hexdigest()
    return SpanContext(
        int(digest[:32], 16) or 1,
        int(digest[32:48], 16) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


class ImpactTelemetry:
    """Exports decided impact reports: a span ``baselined.impact`` linked to the
    event (:func:`event_span_context`) and, inside it, a log record with
    ``event_name`` ``baselined.impact`` (body: the summary; severity WARN for a
    regression, INFO otherwise; ``baselined.*`` attributes). Errors are logged."""

    def __init__(
        self, tracer: Tracer | None = None, logger_provider: LoggerProvider | None = None
    ) -> None:
        self._tracer = tracer
        self._logger = logger_provider.get_logger("baselined") if logger_provider else None
        self.exported = 0

    def export(self, record: ImpactRecord) -> None:
        try:
            self._export(record)
            self.exported += 1
        except Exception:
            log.exception("cannot export impact report %s", record.id)

    def _export(self, record: ImpactRecord) -> None:
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.trace import Link

        attributes: dict[str, Any] = {
            "baselined.model": record.model,
            "baselined.environment": record.environment,
            "baselined.impact.id": record.id,
            "baselined.impact.verdict": record.verdict,
            "baselined.impact.samples_before": record.samples_before,
            "baselined.impact.samples_after": record.samples_after,
            "baselined.impact.samples_needed": record.samples_needed,
            "baselined.impact.slice": record.scope.get("slice", ALL_TRAFFIC),
            "baselined.event.id": record.event.id,
            "baselined.event.type": record.event.type,
            "baselined.event.time": record.event.time,
        }
        fired = [e for e in record.effects if e.tier]
        if fired:
            top = fired[0]
            attributes.update(
                {
                    "baselined.signal": top.signal,
                    "baselined.tier": top.tier,
                    "baselined.effect.name": top.effect,
                    "baselined.effect.estimate": top.estimate,
                    "baselined.effect.lower": top.lower,
                    "baselined.effect.upper": top.upper,
                    "baselined.effect.guardrail": top.guardrail,
                }
            )
        if record.alert_fingerprint:
            attributes["baselined.alert.fingerprint"] = record.alert_fingerprint
        severity = SeverityNumber.WARN if record.verdict == "regression" else SeverityNumber.INFO

        def emit() -> None:
            if self._logger is None:
                return
            self._logger.emit(
                LogRecord(
                    timestamp=int(record.updated_at * 1e9),
                    severity_number=severity,
                    severity_text=severity.name,
                    body=record.summary,
                    attributes=attributes,
                    event_name=IMPACT_EVENT_NAME,
                )
            )

        if self._tracer is None:
            emit()
            return
        link = Link(
            event_span_context(record.event),
            {"link.reason": "change_event", "baselined.event.id": record.event.id},
        )
        with self._tracer.start_as_current_span(
            IMPACT_SPAN_NAME, attributes=attributes, links=[link]
        ):
            emit()
