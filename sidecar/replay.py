"""``baselined replay``: the comparison engine on a simulated clock over a JSON Lines file.

Each input line is one JSON object with a ``kind``:

- ``sample``: ``time``, ``model``, ``version`` (default ``""``), ``environment``
  (default ``production``), ``signals`` (numbers are numeric signals, strings
  categorical, ``null`` missing, ``true``/``false`` numeric 1/0),
  ``signal_kinds`` (optional, per signal: feature, output, latency, resource,
  error; default feature), ``attributes`` (slice attributes), ``request_id``
  (optional: its OUTPUT signals are kept for outcomes), ``fingerprint``
  (optional, ``{"lib.numpy": "2.1.0", ...}``: the sender's fingerprint; its
  changes become derived events per ``instance``, default the ``node`` attribute).
- ``outcome``: ``request_id``, ``label`` (a class index, a class name or a
  number) and optional ``weight``: joined to the kept sample at the next check
  (``docs/outcomes.md``); the summary counts joined, unknown, expired, duplicate
  and invalid outcomes.
- ``freeze``: freeze everything seen so far of ``model``/``environment`` into a
  baseline named ``name`` and make it active.
- ``event``: a change event (``type``, ``attributes``, optional ``environment``,
  ``version``, ``node``, ``image``); fired alerts rank these as suspects.

The engine is the sidecar's own: samples are grouped into columnar
``SampleBatch`` messages and ingested into :class:`~sidecar.windows.Windows`
over an in-memory SQLite store; :class:`~sidecar.baselines.BaselineManager`
freezes and promotes; every ``check_interval`` simulated seconds the windows
are flushed, the :class:`~sidecar.compare.Comparator` compares each (model,
environment) with an active baseline and the :class:`~sidecar.alerts.Alerter`
observes the result. Every alert state change is written to ``out`` as one
JSON line (``"kind": "alert"``); fired alerts carry ``change_point``,
``suspects``, ``fingerprint_diff``, ``attribution`` and ``attribution_summary``
(:mod:`sidecar.correlation`). Every event starts an impact check
(:mod:`sidecar.impact`) on the simulated clock; its report is written as a
``"kind": "impact"`` line when decided, or when the input ends (then
``inconclusive`` unless a regression was found). A regression also fires an
alert, as in the sidecar (``BaselinedImpactRegression``, labels ``event_id``,
``event_type`` and ``impact_report``), written as an alert line and resolved
after the policy's ``alert_seconds``. The simulated clock is the time of the
latest line; checks happen on the grid ``k * check_interval``.

Bad lines (not JSON, no ``kind``/``time``/``model``, time going backwards,
wrong types) are skipped and counted (``strict=False``) or stop the replay with
a :class:`ReplayError` naming the line (``strict=True``).

>>> import io
>>> from sidecar.guardrails import Guardrails
>>> lines = ['{"kind": "sample", "time": 1.0, "model": "m", "signals": {"x": 1.5}}', "oops"]
>>> summary = replay(lines, guardrails=Guardrails.load(None), out=io.StringIO())
>>> (summary.samples, summary.bad_lines, summary.problems[0].line)
(1, 1, 2)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import numpy as np
from baselined.v1 import baselined_pb2 as pb

from sidecar.alerts import Alert, Alerter
from sidecar.baselines import BaselineManager
from sidecar.compare import Comparator
from sidecar.correlation import Correlator, correlation_fields
from sidecar.errors import BaselinedError, InvalidInput
from sidecar.events import EventLog
from sidecar.fingerprints import FingerprintTracker
from sidecar.guardrails import Guardrails, Tier
from sidecar.impact import ImpactChecker, ImpactPolicy, impact_line
from sidecar.ingest import check_name
from sidecar.outcomes import Outcome, OutcomeCounts, Outcomes
from sidecar.quality_view import QualityMonitor, QualityReport
from sidecar.records import ALL_TRAFFIC, EventRecord, ImpactRecord, Kind
from sidecar.settings import Settings
from sidecar.stores.sqlite import SQLiteStore
from sidecar.windows import Windows

__all__ = [
    "BATCH_ROWS",
    "Problem",
    "ReplayError",
    "ReplayEvent",
    "ReplaySummary",
    "alert_line",
    "replay",
]

BATCH_ROWS: Final = 1024
"""Rows per columnar batch handed to the windows."""

_MAX_PROBLEMS: Final = 1000  # bad lines kept in the summary (all are counted)
_PROGRESS_EVERY: Final = 10_000
_RETENTION: Final = 100 * 366 * 24 * 3600  # a simulated clock accepts any old timestamp
_DEFAULT_ENVIRONMENT: Final = "production"
_ACTOR: Final = "replay"
_KINDS: Final = {k.value: k for k in Kind}
_NUMERIC: Final = 1
_CATEGORICAL: Final = 2
_SEVERITY: Final = {Tier.MINOR: "minor", Tier.MODERATE: "moderate", Tier.SEVERE: "severe"}


class ReplayError(InvalidInput):
    """A bad input line under ``strict``: ``line`` (1-based) and ``reason``."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Problem:
    """One skipped input line and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class ReplayEvent:
    """A change event read from the input (kept for correlation)."""

    line: int
    time: float
    model: str
    environment: str
    type: str
    attributes: Mapping[str, str]
    # Scope (correlation): the line's "version", "node", "image" (or those attributes).
    version: str = ""
    node: str = ""
    image: str = ""


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay read and raised. ``problems`` holds the first 1,000 bad lines."""

    lines: int
    samples: int
    freezes: int
    events: tuple[ReplayEvent, ...]
    bad_lines: int
    problems: tuple[Problem, ...]
    checks: int
    alerts_fired: int
    alerts_resolved: int
    first_time: float | None
    last_time: float | None
    seconds: float
    outcomes: OutcomeCounts = field(default_factory=OutcomeCounts)  # outcome lines (issue 8)
    quality: tuple[QualityReport, ...] = ()  # per (model, environment) with outcomes, at the end
    impact_reports: dict[str, int] = field(default_factory=dict)  # verdict -> impact lines

    def impact_summary(self) -> str:
        """``2 impact reports (1 regression, 1 no_change)``, or "" without any."""
        if not self.impact_reports:
            return ""
        parts = ", ".join(f"{n} {v}" for v, n in sorted(self.impact_reports.items()))
        return f"{sum(self.impact_reports.values())} impact reports ({parts})"

    def describe(self) -> str:
        """One line for people: counts, alerts and wall time."""
        skipped = f", {self.bad_lines} bad lines skipped" if self.bad_lines else ", no bad lines"
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        return (
            (
                f"replay: {self.lines} lines read ({self.samples} samples, {self.freezes} freezes, "
                f"{len(self.events)} events){skipped}; {self.checks} checks, "
                f"{self.alerts_fired} alerts fired, {self.alerts_resolved} resolved; "
                f"{self.seconds:.1f} s ({rate:,.0f} lines/s)"
            )
            + (f"; {self.outcomes.describe()}" if self.outcomes.total else "")
            + (f"; {self.impact_summary()}" if self.impact_reports else "")
        )


class _Bad(Exception):
    """A line is bad; the message says why."""


class _ImpactAlerts:
    """Impact regressions as alerts: published on the replay's alerter (so they are
    listed like the sidecar's) and written as alert lines (``emit``)."""

    def __init__(self, alerter: Alerter, emit: Callable[[Alert], None]) -> None:
        self._alerter = alerter
        self._emit = emit
        self._firing: set[str] = set()

    def publish(self, alert: Alert) -> None:
        if alert.fingerprint in self._firing:
            return
        self._alerter.publish(alert)
        self._firing.add(alert.fingerprint)
        self._emit(alert)

    def retract(self, fingerprint: str) -> Alert | None:
        resolved = self._alerter.retract(fingerprint)
        self._firing.discard(fingerprint)
        if resolved is not None:
            self._emit(resolved)
        return resolved


class _Clock:
    """The simulated clock every component reads."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class _Group:
    """Rows of one (model, version, environment, signal set, attribute set) awaiting a batch."""

    model: str
    version: str
    environment: str
    names: tuple[str, ...]
    kinds: tuple[Kind, ...]
    types: list[int]  # per signal: 0 unknown yet, _NUMERIC, _CATEGORICAL
    attrs: tuple[str, ...]
    times: list[float] = field(default_factory=list)
    columns: list[list[Any]] = field(default_factory=list)
    slices: list[list[str]] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)


def _bucket_seconds(check_interval: float) -> int:
    """The bucket width: the check interval when whole, else 1 s (a divisor of any grid)."""
    if check_interval >= 1 and float(check_interval).is_integer():
        return int(check_interval)
    return 1


def _number(value: Any) -> bool:
    return type(value) in (float, int)


class _Replayer:
    def __init__(
        self,
        guardrails: Guardrails,
        check_interval: float,
        out: TextIO,
        strict: bool,
        warn: Callable[[int, str], None] | None,
        impact: ImpactPolicy | None = None,
    ) -> None:
        if not (math.isfinite(check_interval) and check_interval > 0):
            raise InvalidInput(f"check_interval must be a positive number, got {check_interval!r}")
        self.guardrails = guardrails
        self.interval = float(check_interval)
        self.out = out
        self.strict = strict
        self.warn = warn
        self.clock = _Clock()
        self.settings = Settings(
            instance="replay",
            store=":memory:",
            bucket_seconds=_bucket_seconds(check_interval),
            retention_seconds=_RETENTION,
            max_clock_skew=float(_RETENTION),
        )
        self.store = SQLiteStore(":memory:", clock=self.clock)
        self.windows = Windows(self.settings, self.store, clock=self.clock, writer="replay")
        self.baselines = BaselineManager(
            self.store,
            self.windows,
            clock=self.clock,
            retention_seconds=_RETENTION,
            seasonality_for=guardrails.seasonality,
        )
        # Rows arrive in time order, so a bucket that started before a check is final:
        # the comparator may seal (merge once and keep) every bucket right away.
        self.comparator = Comparator(
            self.store, self.windows, guardrails, clock=self.clock, seal_after=0.0
        )
        # Outcomes (issue 8): samples with a "request_id" are kept, "outcome" lines
        # joined at the next check; quality findings join the comparator's.
        self.outcomes = Outcomes(
            self.settings, self.store, guardrails, windows=self.windows, clock=self.clock
        )
        self.windows.on_keep = self.outcomes.keep
        self.quality = QualityMonitor(
            self.outcomes,
            self.store,
            guardrails,
            epoch_start=self.comparator.epoch_start,
            clock=self.clock,
            seal_after=0.0,
        )
        self.comparator.extra_findings = self.quality.findings
        self.pending_outcomes: list[Outcome] = []
        # Correlation (issue 4): suspects from the input's events and the differences
        # derived from samples' "fingerprint" objects (stored in the replay's store).
        self.event_log = EventLog(
            self.store,
            clock=self.clock,
            max_clock_skew=float(_RETENTION),
            retention_seconds=_RETENTION,
        )
        self.fingerprints = FingerprintTracker(self.event_log, clock=self.clock)
        self.fingerprint_hashes: dict[tuple[tuple[str, str], ...], str] = {}
        self.correlator = Correlator(
            self.store,
            guardrails,
            self.list_events,
            bucket_seconds=self.settings.bucket_seconds,
            clock=self.clock,
        )
        self.alerter = Alerter(
            clock=self.clock,
            consecutive=guardrails.consecutive,
            resolve_after=guardrails.resolve_after,
            cooldown=guardrails.cooldown,
            alpha=guardrails.alpha,
            correlate=self.correlator,
        )
        # Impact reports (issue 4): every event line (and derived event) starts a
        # before/after check on the simulated clock; reports go out as "impact" lines.
        self.impact: ImpactChecker | None = (
            ImpactChecker(
                self.store,
                guardrails,
                self.impact_events,
                bucket_seconds=self.settings.bucket_seconds,
                policy=impact,
                clock=self.clock,
                retention_seconds=_RETENTION,
                seal_after=0.0,  # rows arrive in time order: a started bucket is final
                # A regression fires an alert (and resolves it after alert_seconds)
                # like the sidecar's: through the alerter, written as alert lines.
                alerter=_ImpactAlerts(self.alerter, self.emit),
            )
            if impact is not None
            else None
        )
        self.impact_counts: dict[str, int] = {}
        # Checks with no new data that still matter: alerts need `consecutive`
        # checks to fire, `resolve_after` to resolve and `cooldown` to re-arm.
        self.idle_checks = (
            guardrails.consecutive
            + math.ceil((guardrails.resolve_after + guardrails.cooldown) / self.interval)
            + 2
        )
        self.groups: dict[tuple[Any, ...], _Group] = {}
        self.types: dict[tuple[str, str, Kind, str], int] = {}
        self.names_ok: set[str] = set()
        self.attrs_ok: set[str] = set()
        self.now: float | None = None
        self.first: float | None = None
        self.next_check: float | None = None
        self.fresh = False  # samples or a freeze since the last check
        self.idle = 0  # checks in a row without new data
        self.lines = 0
        self.samples = 0
        self.freezes = 0
        self.events: list[ReplayEvent] = []
        self.bad = 0
        self.problems: list[Problem] = []
        self.checks = 0
        self.fired = 0
        self.resolved = 0

    # -- driving ---------------------------------------------------------------------

    def run(self, lines: Iterable[str], progress: Callable[[int], None] | None) -> ReplaySummary:
        started = time.perf_counter()
        loads = json.loads
        for number, text in enumerate(lines, 1):
            self.lines = number
            if progress is not None and number % _PROGRESS_EVERY == 0:
                progress(number)
            try:
                try:
                    obj = loads(text)
                except ValueError as err:
                    if not text.strip():
                        raise _Bad("empty line") from None
                    raise _Bad(f"not JSON: {err}") from None
                self.line(number, obj)
            except _Bad as bad:
                self.reject(number, str(bad))
        self.finish()
        if progress is not None and self.lines % _PROGRESS_EVERY:
            progress(self.lines)
        return ReplaySummary(
            lines=self.lines,
            samples=self.samples,
            freezes=self.freezes,
            events=tuple(self.events),
            bad_lines=self.bad,
            problems=tuple(self.problems),
            checks=self.checks,
            alerts_fired=self.fired,
            alerts_resolved=self.resolved,
            first_time=self.first,
            last_time=self.now,
            seconds=time.perf_counter() - started,
            outcomes=self.outcomes.totals,
            quality=self.quality_reports(),
            impact_reports=dict(self.impact_counts),
        )

    def reject(self, number: int, reason: str) -> None:
        if self.strict:
            raise ReplayError(number, reason)
        self.bad += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(Problem(number, reason))
        if self.warn is not None:
            self.warn(number, reason)

    def line(self, number: int, obj: Any) -> None:
        if type(obj) is not dict:
            raise _Bad(f"expected a JSON object, got {type(obj).__name__}")
        kind = obj.get("kind")
        if kind is None:
            raise _Bad('missing "kind"')
        t = obj.get("time")
        if t is None:
            raise _Bad('missing "time"')
        tt = type(t)
        if (tt is not float and tt is not int) or not math.isfinite(t):
            raise _Bad(f'"time" must be a finite number of unix seconds, got {t!r}')
        model = obj.get("model")
        if model is None:
            raise _Bad('missing "model"')
        if type(model) is not str:
            raise _Bad(f'"model" must be a string, got {model!r}')
        if self.now is not None and t < self.now:
            raise _Bad(f"time {t!r} goes back in time (the previous line was at {self.now!r})")
        if model not in self.names_ok:
            self.check_name("model name", model)
        if kind == "sample":
            # Validate before the clock moves, so a bad line changes nothing.
            group, values = self.sample(obj, model)
            request_id = self.request_id(obj, required=False)
            fingerprint = self.sample_fingerprint(obj) if "fingerprint" in obj else None
            self.advance(float(t))
            group.request_ids.append(request_id)
            self.take(group, float(t), obj["signals"], values)
            if fingerprint is not None:
                self.fingerprints.observe(
                    model,
                    group.environment,
                    *fingerprint[:2],
                    float(t),
                    fingerprint_hash=fingerprint[2],
                )
        elif kind == "outcome":
            outcome = self.outcome(obj, model, float(t))
            self.advance(float(t))
            self.pending_outcomes.append(outcome)
            self.fresh = True
        elif kind == "freeze":
            self.advance(float(t))
            self.freeze(number, obj, model)
        elif kind == "event":
            self.advance(float(t))
            self.event(number, obj, float(t), model)
        else:
            raise _Bad(f'unknown "kind" {kind!r}; expected sample, outcome, freeze or event')

    def check_name(self, what: str, name: str, *, allow_empty: bool = False) -> None:
        if name in self.names_ok:
            return
        try:
            check_name(what, name, allow_empty=allow_empty)
        except InvalidInput as err:
            raise _Bad(str(err)) from None
        if name:  # "" is fine for some fields (version), never for others
            self.names_ok.add(name)

    def string(self, obj: dict[str, Any], key: str, default: str | None) -> str:
        value = obj.get(key, default)
        if value is None:
            raise _Bad(f'missing "{key}"')
        if type(value) is not str:
            raise _Bad(f'"{key}" must be a string, got {value!r}')
        return value

    # -- the clock -------------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Run every check due before ``t``, then move the clock to ``t``."""
        if self.next_check is not None and t < self.next_check:
            self.now = self.clock.now = t
            return
        if self.next_check is None:
            self.first = t
            self.next_check = (math.floor(t / self.interval) + 1) * self.interval
        while self.next_check <= t:
            self.check(self.next_check)
            self.next_check += self.interval
            if self.idle >= self.idle_checks and self.next_check <= t:
                # Nothing new and every alert timer has run out: jump to the last
                # grid point before t (a long quiet gap costs one check, not millions).
                self.next_check = max(
                    self.next_check, math.floor(t / self.interval) * self.interval
                )
        self.now = t
        self.clock.now = t

    def check(self, at: float) -> None:
        self.clock.now = at
        self.flush_groups()
        self.join_outcomes()
        self.windows.flush()
        self.outcomes.flush()
        self.idle = 0 if self.fresh else self.idle + 1
        self.fresh = False
        self.checks += 1
        for model, environment in self.comparator.targets():
            result = self.comparator.compare(model, environment)
            if result is None:
                continue
            changed = self.alerter.observe(result, self.guardrails.playbook_url(model))
            for alert in changed:
                self.emit(alert)
        if self.impact is not None:
            for report in self.impact.run_once():
                self.emit_impact(report)

    def emit(self, alert: Alert) -> None:
        if alert.state == "firing":
            self.fired += 1
        else:
            self.resolved += 1
        line = alert_line(alert, self.clock.now)
        line.setdefault("kind", "alert")
        self.out.write(json.dumps(line) + "\n")

    def emit_impact(self, report: ImpactRecord) -> None:
        self.impact_counts[report.verdict] = self.impact_counts.get(report.verdict, 0) + 1
        self.out.write(json.dumps(impact_line(report, self.clock.now)) + "\n")

    def impact_events(self, start: float, end: float) -> list[EventRecord]:
        """Events of every model and environment in ``[start, end)``: the input's
        event lines (id ``line-<n>``) and the differences derived from fingerprints."""
        return self.list_events(None, start, end)

    def finish(self) -> None:
        """The clock runs on to the next check so the last data is looked at."""
        if self.next_check is None:
            return
        pending = (
            self.fresh or any(g.times for g in self.groups.values()) or bool(self.pending_outcomes)
        )
        if pending:
            self.check(self.next_check)
            self.next_check += self.interval
        self.flush_groups()
        if self.impact is not None:  # the input ended: undecided checks end too
            for report in self.impact.finish():
                self.emit_impact(report)
        self.out.flush()

    # -- samples -----------------------------------------------------------------------

    def sample(self, obj: dict[str, Any], model: str) -> tuple[_Group, list[str]]:
        """Validate a sample line; return its group and its slice values."""
        signals = obj.get("signals")
        kinds = obj.get("signal_kinds")
        attributes = obj.get("attributes")
        key: tuple[Any, ...]
        try:
            key = (
                model,
                obj.get("version", ""),
                obj.get("environment", _DEFAULT_ENVIRONMENT),
                tuple(signals) if type(signals) is dict else signals,
                tuple(kinds.items()) if type(kinds) is dict else kinds,
                tuple(attributes) if type(attributes) is dict else attributes,
            )
            group = self.groups.get(key)
        except TypeError:  # something unhashable where a name belongs
            group = None
            key = ()
        if group is None:
            group = self.new_group(obj, model, key)
        types = group.types
        for i, value in enumerate(signals.values()):  # type: ignore[union-attr]
            vt = type(value)
            if vt is float or vt is int or vt is bool:
                want = _NUMERIC
            elif vt is str:
                want = _CATEGORICAL
            elif value is None:
                continue
            else:
                raise _Bad(
                    f"signal {group.names[i]!r} is {value!r}; expected a number, a string or null"
                )
            have = types[i]
            if have == want:
                continue
            if have == 0:
                rkey = (group.model, group.environment, group.kinds[i], group.names[i])
                have = self.types.get(rkey, want)
                if have == want:
                    self.types[rkey] = types[i] = want
                    continue
            was = "numeric" if have == _NUMERIC else "categorical"
            raise _Bad(
                f"signal {group.names[i]!r} was {was} in earlier lines and is {value!r} here; "
                "keep one type per signal"
            )
        values: list[str] = []
        if group.attrs:
            ok = self.attrs_ok
            for name, value in attributes.items():  # type: ignore[union-attr]
                if type(value) is not str:
                    if not _number(value):
                        raise _Bad(f"attribute {name!r} must be a string, got {value!r}")
                    value = str(value)
                if value not in ok:
                    try:
                        check_name(f"attribute {name!r} value", value, allow_empty=True)
                    except InvalidInput as err:
                        raise _Bad(str(err)) from None
                    ok.add(value)
                values.append(value)
        return group, values

    def take(self, group: _Group, t: float, signals: dict[str, Any], values: list[str]) -> None:
        """Append a validated sample to its group; a full group becomes a batch."""
        group.times.append(t)
        # Lengths match: the group key holds the signal and attribute names.
        for column, value in zip(group.columns, signals.values()):  # noqa: B905
            column.append(value)
        for column, value in zip(group.slices, values):  # noqa: B905
            column.append(value)
        self.samples += 1
        self.fresh = True
        if len(group.times) >= BATCH_ROWS:
            self.flush_group(group)

    def new_group(self, obj: dict[str, Any], model: str, key: tuple[Any, ...]) -> _Group:
        """Validate everything a group shares (names, kinds) and make the group."""
        version = self.string(obj, "version", "")
        environment = self.string(obj, "environment", _DEFAULT_ENVIRONMENT)
        if version == ALL_TRAFFIC:
            raise _Bad(f'"version" {ALL_TRAFFIC!r} is reserved for data merged across versions')
        self.check_name("version", version, allow_empty=True)
        self.check_name("environment", environment)
        signals = obj.get("signals")
        if type(signals) is not dict:
            raise _Bad(f'"signals" must be an object of signal values, got {signals!r}')
        if not signals:
            raise _Bad('"signals" is empty')
        if len(signals) > self.settings.max_signals:
            raise _Bad(f"{len(signals)} signals, over max_signals={self.settings.max_signals}")
        for name in signals:
            self.check_name("signal name", name)
        kinds = obj.get("signal_kinds")
        if kinds is None:
            kinds = {}
        if type(kinds) is not dict:
            raise _Bad(f'"signal_kinds" must be an object, got {kinds!r}')
        for name, value in kinds.items():
            if type(value) is not str or value not in _KINDS:
                raise _Bad(
                    f'"signal_kinds" of {name!r} is {value!r}; expected one of ' + ", ".join(_KINDS)
                )
        attributes = obj.get("attributes")
        if attributes is None:
            attributes = {}
        if type(attributes) is not dict:
            raise _Bad(f'"attributes" must be an object, got {attributes!r}')
        if len(attributes) > self.settings.max_slice_attributes:
            raise _Bad(
                f"{len(attributes)} attributes, over "
                f"max_slice_attributes={self.settings.max_slice_attributes}"
            )
        for name in attributes:
            self.check_name("attribute name", name)
            if "=" in name or name == ALL_TRAFFIC:
                raise _Bad(f"attribute name {name!r} must not be {ALL_TRAFFIC!r} or contain '='")
        names = tuple(signals)
        resolved = tuple(
            _KINDS[kinds[n]] if n in kinds else self.guardrails_kind(model, n) for n in names
        )
        group = _Group(
            model=model,
            version=version,
            environment=environment,
            names=names,
            kinds=resolved,
            types=[
                self.types.get((model, environment, k, n), 0)
                for k, n in zip(resolved, names, strict=True)
            ],
            attrs=tuple(attributes),
            columns=[[] for _ in names],
            slices=[[] for _ in attributes],
        )
        if key:
            self.groups[key] = group
        return group

    def guardrails_kind(self, model: str, signal: str) -> Kind:
        """The signal's kind from the config, else feature."""
        lookup = getattr(self.guardrails, "signal_kind", None)
        if lookup is not None:
            found = lookup(model, signal)
            if isinstance(found, Kind):
                return found
        return Kind.FEATURE

    def flush_group(self, group: _Group) -> None:
        if not group.times:
            return
        batch = pb.SampleBatch(
            model=group.model,
            version=group.version,
            environment=group.environment,
            instance="replay",
            timestamps=group.times,
        )
        for i, (name, kind, column) in enumerate(
            zip(group.names, group.kinds, group.columns, strict=True)
        ):
            wanted = group.types[i] or self.types.get(
                (group.model, group.environment, kind, name), _NUMERIC
            )
            if wanted == _NUMERIC:
                values = np.array(column, dtype=np.float64)  # None -> NaN (missing)
                batch.numeric.add(name=name, kind=kind.to_proto(), values=values.tolist())
            else:
                batch.categorical.add(
                    name=name,
                    kind=kind.to_proto(),
                    values=["" if v is None else v for v in column],
                )
            column.clear()
        for name, column in zip(group.attrs, group.slices, strict=True):
            batch.slices.add(name=name, values=column)
            column.clear()
        if any(group.request_ids):
            batch.request_ids.extend(group.request_ids)
        group.request_ids.clear()
        group.times = []
        try:
            self.windows.ingest(batch)
        except BaselinedError as err:  # validated per line already: a bug if it happens
            raise RuntimeError(f"replay built a batch the windows refused: {err}") from err

    def flush_groups(self) -> None:
        for group in self.groups.values():
            self.flush_group(group)

    # -- outcomes (issue 8) -------------------------------------------------------------

    def request_id(self, obj: dict[str, Any], *, required: bool) -> str:
        value = obj.get("request_id", None if required else "")
        if value is None:
            raise _Bad('missing "request_id"')
        if type(value) is not str or (required and not value):
            raise _Bad(f'"request_id" must be a non-empty string, got {value!r}')
        if len(value) > 256:
            raise _Bad('"request_id" is longer than 256 characters')
        return value

    def outcome(self, obj: dict[str, Any], model: str, t: float) -> Outcome:
        """Validate an outcome line: ``request_id``, ``label``, optional ``weight``."""
        request_id = self.request_id(obj, required=True)
        if "label" not in obj:
            raise _Bad('missing "label"')
        label = obj["label"]
        if type(label) not in (int, float, str, bool):
            raise _Bad(f'"label" must be a class, a number or a class name, got {label!r}')
        if type(label) is float and not math.isfinite(label):
            raise _Bad(f'"label" must be finite, got {label!r}')
        weight = obj.get("weight")
        if weight is not None and (not _number(weight) or not math.isfinite(weight) or weight <= 0):
            raise _Bad(f'"weight" must be a positive number, got {weight!r}')
        return Outcome(model, request_id, label, t, None if weight is None else float(weight))

    def quality_reports(self) -> tuple[QualityReport, ...]:
        """The quality report of every (model, environment) that had outcomes joined."""
        if not self.outcomes.totals.joined:
            return ()
        self.outcomes.flush()
        return tuple(self.quality.report(m, e) for m, e in self.outcomes.scopes())

    def join_outcomes(self) -> None:
        if self.pending_outcomes:
            outcomes, self.pending_outcomes = self.pending_outcomes, []
            self.outcomes.record(outcomes)

    # -- freeze and events -------------------------------------------------------------

    def freeze(self, number: int, obj: dict[str, Any], model: str) -> None:
        environment = self.string(obj, "environment", _DEFAULT_ENVIRONMENT)
        self.check_name("environment", environment)
        name = self.string(obj, "name", f"replay-line-{number}")
        reason = self.string(obj, "reason", f"replay line {number}")
        self.flush_groups()
        self.join_outcomes()
        self.outcomes.flush()
        try:
            record = self.baselines.freeze(
                model, environment, name, reason, _ACTOR, start=0.0, end=self.clock.now + 1e-6
            )
            self.baselines.promote(record.id, reason, _ACTOR)
            self.quality.baseline(record.id)  # its labelled quality, as of now
        except BaselinedError as err:
            raise _Bad(f"cannot freeze {model}/{environment}: {err}") from None
        self.freezes += 1
        self.fresh = True

    def event(self, number: int, obj: dict[str, Any], t: float, model: str) -> None:
        environment = self.string(obj, "environment", "")
        kind = self.string(obj, "type", None)
        if not kind:
            raise _Bad('"type" of an event must not be empty')
        attributes = obj.get("attributes", {})
        if type(attributes) is not dict:
            raise _Bad(f'"attributes" must be an object, got {attributes!r}')
        clean: dict[str, str] = {}
        for key, value in attributes.items():
            if value is not None and type(value) not in (str, int, float, bool):
                raise _Bad(f"event attribute {key!r} must be a string or a number, got {value!r}")
            clean[key] = "" if value is None else str(value)
        scope = {}
        for name in ("version", "node", "image"):
            value = obj.get(name, clean.get(name, ""))
            if type(value) is not str:
                raise _Bad(f'event "{name}" must be a string, got {value!r}')
            scope[name] = value
        self.events.append(ReplayEvent(number, t, model, environment, kind, clean, **scope))

    # -- correlation ---------------------------------------------------------------------

    def sample_fingerprint(self, obj: dict[str, Any]) -> tuple[str, dict[str, str], str]:
        """A sample's ``fingerprint`` object as (instance, fields, hash); the instance is
        the line's ``instance``, else its ``node`` attribute, else ``replay``."""
        raw = obj["fingerprint"]
        if type(raw) is not dict:
            raise _Bad(f'"fingerprint" must be an object of field values, got {raw!r}')
        fields: dict[str, str] = {}
        for name, value in raw.items():
            if type(value) is not str and not _number(value):
                raise _Bad(f"fingerprint field {name!r} must be a string, got {value!r}")
            fields[name] = str(value)
        attributes = obj.get("attributes")
        node = attributes.get("node") if type(attributes) is dict else None
        instance = obj.get("instance") or (node if type(node) is str and node else "replay")
        if type(instance) is not str:
            raise _Bad(f'"instance" must be a string, got {instance!r}')
        key = tuple(sorted(fields.items()))
        digest = self.fingerprint_hashes.get(key)
        if digest is None:
            digest = self.fingerprint_hashes[key] = f"r{len(self.fingerprint_hashes)}"
        return instance, fields, digest

    def list_events(self, environment: str | None, start: float, end: float) -> list[EventRecord]:
        """Events of every model in ``[start, end)`` applying to ``environment`` (every
        environment when None): the input's event lines (id ``line-<n>``) and the
        differences derived from fingerprints."""
        found = [
            EventRecord(
                type=e.type,
                time=e.time,
                model=e.model,
                environment=e.environment,
                version=e.version,
                node=e.node,
                image=e.image,
                attributes=e.attributes,
                recorded_by=_ACTOR,
                source="replay",
                id=f"line-{e.line}",
            )
            for e in self.events
            if start <= e.time < end and (environment is None or e.environment in ("", environment))
        ]
        found += self.event_log.list(None, environment, start=start, end=end, limit=2000)
        return found


def alert_line(alert: Alert, now: float) -> dict[str, Any]:
    """The JSON object written for one alert state change."""
    series: list[dict[str, Any]] = []
    for finding in alert.findings:
        sid = finding.series
        base = {
            "signal": sid.signal,
            "kind": sid.kind.value,
            "slice": sid.slice,
            "phase": finding.phase,
            "version": sid.version,
            "baseline_count": finding.baseline_count,
            "live_count": finding.live_count,
        }
        if not finding.fired:
            series.append({**base, "effect": None, "lower_bound": None, "guardrail": None})
            continue
        for name, tier, guardrail in finding.fired:
            effect = finding.effects.get(name)
            entry: dict[str, Any] = {**base, "tier": _SEVERITY.get(tier, str(tier))}
            if effect is None:
                entry.update(effect={"name": name}, lower_bound=None, guardrail=guardrail)
            else:
                down = effect.upper <= -abs(guardrail) and not effect.lower >= abs(guardrail)
                entry.update(
                    effect={
                        "name": effect.name,
                        "estimate": _finite(effect.estimate),
                        "lower": _finite(effect.lower),
                        "upper": _finite(effect.upper),
                        "unit": effect.unit,
                    },
                    lower_bound=_finite(effect.upper if down else effect.lower),
                    guardrail=-abs(guardrail) if down else abs(guardrail),
                )
            series.append(entry)
    return {
        "time": now,
        "model": alert.model,
        "environment": alert.environment,
        "state": alert.state,
        "severity": _SEVERITY.get(alert.tier, str(alert.tier)),
        "fingerprint": alert.fingerprint,
        "series": series,
        "baseline_id": alert.baseline_id,
        "window_start": alert.window_start,
        "window_end": alert.window_end,
        "started_at": alert.started_at,
        "resolved_at": alert.resolved_at,
        "summary": alert.summary,
        "playbook_url": alert.playbook_url,
        "labels": dict(alert.labels),
        **(correlation_fields(alert.correlation) if alert.correlation is not None else {}),
    }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


DEFAULT_IMPACT: Final = ImpactPolicy()
"""The impact policy of a replay unless told otherwise (the sidecar's defaults)."""


def replay(
    lines: Iterable[str],
    *,
    guardrails: Guardrails,
    check_interval: float = 10.0,
    out: TextIO,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[int, str], None] | None = None,
    impact: ImpactPolicy | None = DEFAULT_IMPACT,
) -> ReplaySummary:
    """Replay JSON Lines through the engine on a simulated clock; write alert changes to ``out``.

    ``progress(lines_read)`` is called every 10,000 lines and at the end;
    ``warn(line, reason)`` for every bad line skipped. With ``strict`` the
    first bad line raises :class:`ReplayError`. ``impact`` decides the impact
    checks every event starts (None: no impact checks); their reports are
    written as ``"kind": "impact"`` lines beside the alert lines (``"kind": "alert"``).
    """
    replayer = _Replayer(guardrails, check_interval, out, strict, warn, impact)
    try:
        return replayer.run(lines, progress)
    finally:
        replayer.store.close()
