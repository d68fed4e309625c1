"""Root-cause hints on alerts: change point, ranked suspects, fingerprint difference, slices.

When an alert fires (or escalates) :class:`Correlator` enriches it with a
:class:`Correlation`:

- the **change point** of the alert's series: :func:`~sidecar.changepoint.estimate_change_point`
  over the series' bucket history (the last ``history_seconds``, read from the
  store) against the baseline's state of the series. Its interval is widened
  by one bucket on each side: a shift that starts inside a bucket makes that
  bucket either the last "before" or the first "after" one;
- the **fingerprint difference**: the derived events (``source = derived``:
  a library, node, image, accelerator or Python version that changed in the
  senders' fingerprints) from ``lookback`` before the change point to its end;
- the **suspects**: change events of every model in the environment within
  ``lookback`` seconds before the change point and ``after`` seconds after it,
  ranked by :func:`score_event` (documented in ``docs/correlation.md``);
- the **slice attribution** (:mod:`sidecar.attribution`): each slice of the
  alert's signal compared afresh with the baseline over the buckets after the
  change point's start (:meth:`Correlator.attribution`), or the epoch's
  findings when no change point was estimated.

Enrichment never stops an alert: any failure is logged and the alert goes out
with ``Correlation.error`` set.

>>> round(time_component(100.0, (150.0, 170.0), 60.0), 3)  # 50 s before: 1 / (1 + 50/60)
0.545
"""

from __future__ import annotations

import logging
import math
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.attribution import SHIFTED, SliceVerdict, attribute_shift, attribution_line
from sidecar.changepoint import bucket_history, estimate_change_point
from sidecar.compare import ComparisonResult, SeriesFinding, compare_states, read_grouped
from sidecar.errors import NotFound
from sidecar.guardrails import Guardrails
from sidecar.records import ALL_TRAFFIC, EventRecord, SeriesId
from sidecar.series import CategoricalState, NumericState, merge_encoded
from sidecar.stores.base import Store

__all__ = [
    "DEFAULT_AFTER_SECONDS",
    "DEFAULT_HISTORY_SECONDS",
    "DEFAULT_LOOKBACK_SECONDS",
    "LATE_FACTOR",
    "OTHER_MODEL_FACTOR",
    "TYPE_PRIORS",
    "ChangePointInfo",
    "Correlation",
    "Correlator",
    "FingerprintDifference",
    "Suspect",
    "correlation_fields",
    "fingerprint_differences",
    "rank_suspects",
    "score_event",
    "suspect_annotation",
    "time_component",
]

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK_SECONDS = 24 * 3600.0
"""How long before the change point events are considered."""

DEFAULT_AFTER_SECONDS = 300.0
"""How long after the change point's interval events are still listed (ranked low)."""

DEFAULT_HISTORY_SECONDS = 6 * 3600.0
"""How much bucket history the change-point scan reads."""

MIN_TIME_SCALE = 60.0
"""Smallest time scale (seconds) of the time kernel."""

LATE_FACTOR = 0.2
"""Time component of an event right after the change point's interval (it cannot have caused it)."""

OTHER_MODEL_FACTOR = 0.3
"""Scope factor of an event of another model."""

SCOPE_MATCH, SCOPE_MISMATCH = 1.25, 0.5
"""Scope factors per field (version, node, image) that matches / contradicts where the shift is."""

FINGERPRINT_FACTOR = 1.5
"""Factor of an event that a fingerprint difference at the change point corroborates."""

TYPE_PRIORS: Mapping[str, float] = {
    "library_update": 1.0,
    "deploy": 1.0,
    "model_rollout": 1.0,
    "image_change": 0.9,
    "accelerator_change": 0.9,
    "node_change": 0.9,
    "python_change": 0.9,
    "data_source_change": 0.8,
    "config_change": 0.6,
    "custom": 0.6,
    "autoscale": 0.3,
}
"""How often a change of each type moves a model's signals (prior weight)."""

_DEFAULT_PRIOR = 0.5
_MAX_EVENTS = 2000
_MAX_DIFFERENCES = 20
_MAX_NODES = 10  # nodes listed per fingerprint difference

# Which fingerprint fields corroborate an event of each type.
_FIELDS_OF: Mapping[str, tuple[str, ...]] = {
    "library_update": ("lib.",),
    "node_change": ("k8s.node",),
    "image_change": ("container.image",),
    "deploy": ("container.image", "lib."),
    "model_rollout": ("container.image",),
    "accelerator_change": ("cuda.", "cudnn.", "nvidia.", "accelerator.", "gpu."),
    "python_change": ("python",),
}


@dataclass(frozen=True)
class ChangePointInfo:
    """When the alert's shift began: ``time`` (start of the first shifted bucket)
    within ``[start, end]``; ``estimated`` is False when no significant change
    point was found (then the interval is the live epoch)."""

    time: float
    start: float
    end: float
    estimated: bool
    statistic: str = ""
    score: float = 0.0
    before_count: int = 0
    after_count: int = 0
    signal: str = ""
    slice: str = ALL_TRAFFIC


@dataclass(frozen=True)
class FingerprintDifference:
    """One fingerprint field whose value changed around the change point.

    ``node`` is the event's node (a ``node_change``'s new node); ``nodes`` the
    nodes whose instances carry the new value, when the senders report
    ``k8s.node`` (at most 10 listed, ``nodes_total`` in all).
    """

    field: str
    before: str
    after: str
    time: float
    share: float | None
    event_id: str
    node: str = ""
    nodes: tuple[str, ...] = ()
    nodes_total: int = 0

    def describe(self) -> str:
        name = self.field[len("lib.") :] if self.field.startswith("lib.") else self.field
        text = f"{name} {self.before or '(none)'} -> {self.after or '(none)'}"
        if self.node:
            text += f" on node {self.node}"
        elif self.nodes:
            text += f" on node{'s' if len(self.nodes) > 1 else ''} {', '.join(self.nodes)}"
            more = self.nodes_total - len(self.nodes)
            if more > 0:
                text += f" and {more} more"
        if self.share is not None:
            text += f" ({self.share * 100:.0f}% of instances)"
        return text


@dataclass(frozen=True)
class Suspect:
    """A change event ranked as a possible cause, with the score's components and reasons."""

    event_id: str
    type: str
    time: float
    model: str
    environment: str
    version: str
    node: str
    image: str
    attributes: Mapping[str, str]
    source: str
    score: float
    components: Mapping[str, float]
    reasons: tuple[str, ...]

    def describe(self) -> str:
        """``library_update numpy 1.26.4 -> 2.1.0 (fraud, 60 s before the shift)``."""
        attrs = self.attributes
        what = self.type
        if "package" in attrs or "to" in attrs:
            what += f" {attrs.get('package') or attrs.get('field', '')}".rstrip()
            if attrs.get("to"):
                what += f" {attrs.get('from', '?')} -> {attrs['to']}"
        return what


@dataclass(frozen=True)
class Correlation:
    """What an alert learns about its cause (see the module doc)."""

    change_point: ChangePointInfo | None
    suspects: tuple[Suspect, ...] = ()
    fingerprint_diff: tuple[FingerprintDifference, ...] = ()
    attribution: tuple[SliceVerdict, ...] = ()
    attribution_summary: str = ""
    error: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    # Start of the live data the attribution judged: the change point's start
    # when one was estimated, else the epoch's start (0.0: not known).
    attribution_since: float = 0.0


# -- scoring ---------------------------------------------------------------------------


def time_component(t: float, interval: tuple[float, float], scale: float) -> float:
    """1 inside the change point's interval; ``1 / (1 + lead / scale)`` for an event
    ``lead`` seconds before it; ``LATE_FACTOR / (1 + lag / scale)`` after it."""
    start, end = interval
    if t < start:
        return 1.0 / (1.0 + (start - t) / scale)
    if t > end:
        return LATE_FACTOR / (1.0 + (t - end) / scale)
    return 1.0


def _matches(event_type: str, diff_field: str, attributes: Mapping[str, str]) -> bool:
    prefixes = _FIELDS_OF.get(event_type, ())
    if not any(diff_field == p or diff_field.startswith(p) for p in prefixes):
        return False
    package = attributes.get("package", "")
    if event_type == "library_update" and package:
        return diff_field == f"lib.{package}"
    return True


def score_event(
    event: EventRecord,
    *,
    model: str,
    interval: tuple[float, float],
    scale: float,
    where: Mapping[str, frozenset[str]],
    differences: Sequence[FingerprintDifference],
) -> tuple[float, dict[str, float], list[str]]:
    """The suspect score of ``event`` for an alert of ``model`` (see docs/correlation.md):

    ``score = time * scope * type * fingerprint`` where

    - ``time`` = :func:`time_component` against the change point's interval;
    - ``scope`` = 1 for the alert's model, :data:`OTHER_MODEL_FACTOR` for another,
      times :data:`SCOPE_MATCH` per scope field (version, node, image) the event
      sets to a value where the shift is and :data:`SCOPE_MISMATCH` per field set
      to a value where it is known not to be (``where``: field -> values carrying
      the shift);
    - ``type`` = :data:`TYPE_PRIORS` of the event type (0.5 for others);
    - ``fingerprint`` = :data:`FINGERPRINT_FACTOR` when the event is a fingerprint
      difference of the change point, or one corroborates it, else 1.

    Returns the score, its components and the reasons in words.
    """
    reasons: list[str] = []
    start, end = interval
    t = time_component(event.time, interval, scale)
    if event.time < start:
        reasons.append(f"{start - event.time:.0f} s before the shift")
    elif event.time > end:
        reasons.append(f"{event.time - end:.0f} s after the shift")
    else:
        reasons.append("within the change point's interval")
    scope = 1.0
    if event.model == model:
        reasons.append("same model")
    else:
        scope *= OTHER_MODEL_FACTOR
        reasons.append(f"another model ({event.model})")
    for name in ("version", "node", "image"):
        value = getattr(event, name)
        known = where.get(name)
        if not value or not known:
            continue
        if value in known:
            scope *= SCOPE_MATCH
            reasons.append(f"{name} {value} is where the shift is")
        else:
            scope *= SCOPE_MISMATCH
            reasons.append(f"{name} {value} is not where the shift is")
    prior = TYPE_PRIORS.get(event.type, _DEFAULT_PRIOR)
    corroborated = any(
        d.event_id == event.id or _matches(event.type, d.field, event.attributes)
        for d in differences
    )
    fp = FINGERPRINT_FACTOR if corroborated else 1.0
    if corroborated:
        reasons.append("a fingerprint difference coincides with the shift")
    components = {"time": t, "scope": scope, "type": prior, "fingerprint": fp}
    return t * scope * prior * fp, components, reasons


def rank_suspects(
    events: Sequence[EventRecord],
    *,
    model: str,
    interval: tuple[float, float],
    scale: float,
    where: Mapping[str, frozenset[str]],
    differences: Sequence[FingerprintDifference],
    limit: int = 5,
) -> list[Suspect]:
    """The ``limit`` best-scoring events, best first (ties: the later event first)."""
    scored: list[Suspect] = []
    for event in events:
        score, components, reasons = score_event(
            event,
            model=model,
            interval=interval,
            scale=scale,
            where=where,
            differences=differences,
        )
        scored.append(
            Suspect(
                event_id=event.id,
                type=event.type if event.type != "custom" else event.custom_type or "custom",
                time=event.time,
                model=event.model,
                environment=event.environment,
                version=event.version,
                node=event.node,
                image=event.image,
                attributes=dict(event.attributes),
                source=event.source,
                score=round(score, 6),
                components={k: round(v, 6) for k, v in components.items()},
                reasons=tuple(reasons),
            )
        )
    scored.sort(key=lambda s: (-s.score, -s.time, s.event_id))
    return scored[:limit]


def fingerprint_differences(
    events: Sequence[EventRecord], start: float, end: float
) -> list[FingerprintDifference]:
    """The derived fingerprint differences with ``start <= time <= end``, oldest first."""
    out: list[FingerprintDifference] = []
    for e in events:
        attrs = e.attributes
        if e.source != "derived" or "field" not in attrs or not start <= e.time <= end:
            continue
        try:
            share: float | None = float(attrs["share"]) if "share" in attrs else None
        except ValueError:
            share = None
        nodes = tuple(n for n in attrs.get("nodes", "").split(",") if n)[:_MAX_NODES]
        try:
            total = max(int(attrs.get("nodes_carrying", len(nodes))), len(nodes))
        except ValueError:
            total = len(nodes)
        out.append(
            FingerprintDifference(
                field=attrs["field"],
                before=attrs.get("from", ""),
                after=attrs.get("to", ""),
                time=e.time,
                share=share,
                event_id=e.id,
                node=e.node or attrs.get("node", ""),
                nodes=nodes,
                nodes_total=total,
            )
        )
    out.sort(key=lambda d: (d.time, d.field))
    return out[:_MAX_DIFFERENCES]


def suspect_annotation(correlation: Correlation) -> str:
    """A short line for the alert's ``suspect`` annotation ('' without suspects)."""
    if not correlation.suspects:
        return ""
    top = correlation.suspects[0]
    text = f"{top.describe()} ({top.model}"
    if top.node:
        text += f", node {top.node}"
    text += f"; score {top.score:.2f}; event {top.event_id})"
    return text


# -- the correlator ----------------------------------------------------------------------

ListEvents = Callable[[str, float, float], Sequence[EventRecord]]
"""``list_events(environment, start, end)``: events of every model in ``[start, end)``."""


class Correlator:
    """Builds the :class:`Correlation` of an alert's finding from the store and events.

    ``list_events(environment, start, end)`` lists change events of every model
    (an ``EventLog.list`` in the sidecar; the replay's events in replay);
    ``bucket_seconds`` is the width of the store's buckets.
    """

    def __init__(
        self,
        store: Store,
        guardrails: Guardrails,
        list_events: ListEvents,
        *,
        bucket_seconds: float,
        lookback: float = DEFAULT_LOOKBACK_SECONDS,
        after: float = DEFAULT_AFTER_SECONDS,
        history_seconds: float = DEFAULT_HISTORY_SECONDS,
        max_suspects: int = 5,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        if lookback <= 0 or after < 0 or history_seconds <= 0 or max_suspects < 1:
            raise ValueError("lookback and history must be positive, after >= 0, max_suspects >= 1")
        self._store = store
        self._guardrails = guardrails
        self._list_events = list_events
        self.bucket_seconds = float(bucket_seconds)
        self.lookback = float(lookback)
        self.after = float(after)
        self.history_seconds = float(history_seconds)
        self.max_suspects = max_suspects
        self._clock = clock
        self.errors = 0

    def __call__(self, finding: SeriesFinding, result: ComparisonResult) -> Correlation:
        """The correlation of one alert's ``finding``; never raises (see ``error``)."""
        try:
            return self.correlate(finding, result)
        except Exception as err:
            self.errors += 1
            log.warning(
                "cannot correlate the alert of %s/%s %s: %s",
                result.model,
                result.environment,
                finding.series.encode(),
                err,
                exc_info=True,
            )
            return Correlation(change_point=None, error=f"{type(err).__name__}: {err}")

    def correlate(self, finding: SeriesFinding, result: ComparisonResult) -> Correlation:
        """As calling the correlator, but failures raise."""
        model, environment = result.model, result.environment
        baseline = self._baseline_states(result.baseline_id, finding.series)
        cp = self.change_point(finding, result, baseline)
        effect = _headline_effect(finding)
        verdicts: list[SliceVerdict] = []
        since = result.window_start
        if effect:
            verdicts, since = self.attribution(finding, result, effect, cp, baseline)
        summary = attribution_line(finding.series.signal, verdicts)
        width = self.bucket_seconds
        interval = (cp.start, cp.end)
        scale = max(cp.end - cp.start, width, MIN_TIME_SCALE)
        # Simulated clocks (replay) may start near 0: never ask for negative times.
        events = list(
            self._list_events(
                environment,
                max(0.0, cp.start - self.lookback),
                max(0.0, cp.end + self.after) + 1e-6,
            )
        )
        differences = fingerprint_differences(
            [e for e in events if e.model == model], cp.start - scale, cp.end
        )
        where = _where(finding, verdicts, differences)
        suspects = rank_suspects(
            events,
            model=model,
            interval=interval,
            scale=scale,
            where=where,
            differences=differences,
            limit=self.max_suspects,
        )
        return Correlation(
            change_point=cp,
            suspects=tuple(suspects),
            fingerprint_diff=tuple(differences),
            attribution=tuple(verdicts),
            attribution_summary=summary,
            attribution_since=since,
        )

    def attribution(
        self,
        finding: SeriesFinding,
        result: ComparisonResult,
        effect: str,
        cp: ChangePointInfo,
        baseline: Mapping[str, NumericState | CategoricalState] | None = None,
    ) -> tuple[list[SliceVerdict], float]:
        """Slice verdicts on ``effect`` and the start of the data they judged.

        With an estimated change point, each slice of the alert's signal is
        compared afresh with the baseline's same slice over the buckets that
        start at or after the change point's ``start`` (the traffic the shift
        is in, undiluted by the epoch's earlier data), at the comparison's
        alpha per test. Without one (or when those buckets hold no slice of
        the signal: quality series, seasonal phases) the epoch's findings are
        used as they are.
        """
        model = result.model
        epoch = attribute_shift(finding, result.findings, self._guardrails, model, effect)
        if not cp.estimated or finding.phase:
            return epoch, result.window_start
        sid = finding.series
        if baseline is None:
            baseline = self._baseline_states(result.baseline_id, sid)
        base = {
            SeriesId(ALL_TRAFFIC, slice_, sid.kind, sid.signal): state
            for slice_, state in (baseline or {}).items()
            if slice_ != ALL_TRAFFIC and state.count > 0
        }
        if not base:
            return epoch, result.window_start
        since = max(cp.start, result.window_start)
        grouped = read_grouped(
            self._store,
            model,
            result.environment,
            math.ceil(since),
            math.floor(result.time) + 1,
            _one_group,
        ).get(0, {})
        live = {
            key: merge_encoded(parts)
            for key, parts in grouped.items()
            if key in base  # version "*": read_grouped merges every version
        }
        if not live:
            return epoch, result.window_start
        # The family: the alert's effect in every slice value compared (Bonferroni).
        tests = sum(1 for key in live if "=" in key.slice)
        findings, _ = compare_states(
            base, live, self._guardrails, model, self._guardrails.alpha, tests=max(tests, 1)
        )
        return attribute_shift(finding, findings, self._guardrails, model, effect), since

    def change_point(
        self,
        finding: SeriesFinding,
        result: ComparisonResult,
        baseline: Mapping[str, NumericState | CategoricalState] | None = None,
    ) -> ChangePointInfo:
        """The change point of ``finding``'s series, or the live epoch when none is found.

        ``baseline``: the baseline's states of the series' signal by slice (read
        when not given)."""
        sid = finding.series
        now = result.time
        fallback = ChangePointInfo(
            time=result.window_start,
            start=result.window_start,
            end=now,
            estimated=False,
            signal=sid.signal,
            slice=sid.slice,
        )
        if baseline is None:
            baseline = self._baseline_states(result.baseline_id, sid)
        reference = None if baseline is None else baseline.get(sid.slice)
        if reference is None or reference.count == 0:
            return fallback
        history = bucket_history(
            self._store,
            result.model,
            result.environment,
            SeriesId(ALL_TRAFFIC, sid.slice, sid.kind, sid.signal),
            now - self.history_seconds,
            now + 1.0,
        )
        if finding.phase:  # seasonal: the phase's baseline only fits that phase's buckets
            return fallback
        cp = estimate_change_point(history, reference)
        if cp is None:
            return fallback
        w = self.bucket_seconds
        return ChangePointInfo(
            time=cp.time,
            start=cp.lower - w,
            end=cp.upper + w,
            estimated=True,
            statistic=cp.statistic,
            score=cp.score,
            before_count=cp.before_count,
            after_count=cp.after_count,
            signal=sid.signal,
            slice=sid.slice,
        )

    def _baseline_states(
        self, baseline_id: str, sid: SeriesId
    ) -> dict[str, NumericState | CategoricalState] | None:
        """The baseline's states of ``sid``'s kind and signal by slice (every
        version merged); None when the baseline is gone."""
        blobs: dict[str, list[bytes]] = {}
        try:
            series = self._store.get_baseline_series(baseline_id)
        except NotFound:  # retired and removed meanwhile: no change point, suspects still
            return None
        for text, blob in series.items():
            other = SeriesId.parse(text)
            if (other.kind, other.signal) == (sid.kind, sid.signal):
                blobs.setdefault(other.slice, []).append(blob)
        return {slice_: merge_encoded(parts) for slice_, parts in blobs.items()}


def _one_group(_bucket: int) -> int:
    return 0


def _headline_effect(finding: SeriesFinding) -> str:
    best: tuple[str, int] | None = None
    for name, tier, _ in finding.fired:
        if best is None or int(tier) > best[1]:
            best = (name, int(tier))
    return best[0] if best is not None else ""


def _where(
    finding: SeriesFinding,
    verdicts: Sequence[SliceVerdict],
    differences: Sequence[FingerprintDifference],
) -> dict[str, frozenset[str]]:
    """Where the shift is, per scope field: the alert's own version and slice, the
    slice values that carry it, nodes and images of coinciding fingerprint differences."""
    where: dict[str, set[str]] = {}
    sid = finding.series
    if sid.version != ALL_TRAFFIC:
        where.setdefault("version", set()).add(sid.version)
    if "=" in sid.slice:
        name, _, value = sid.slice.partition("=")
        where.setdefault(name, set()).add(value)
    for v in verdicts:
        if v.verdict == SHIFTED:
            where.setdefault(v.attribute, set()).add(v.value)
    for d in differences:
        if d.field == "container.image":
            where.setdefault("image", set()).add(d.after)
        if d.node:
            where.setdefault("node", set()).add(d.node)
        if d.nodes and d.share is not None and d.share < 1.0:  # a part of the fleet only
            where.setdefault("node", set()).update(d.nodes)
    return {k: frozenset(v) for k, v in where.items()}


# -- JSON ---------------------------------------------------------------------------------


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def correlation_fields(correlation: Correlation) -> dict[str, Any]:
    """The JSON fields an alert line carries: ``change_point``, ``suspects``,
    ``fingerprint_diff``, ``attribution`` and ``attribution_summary`` (plus
    ``correlation_error`` when enrichment failed)."""
    cp = correlation.change_point
    out: dict[str, Any] = {
        "change_point": None
        if cp is None
        else {
            "time": cp.time,
            "start": cp.start,
            "end": cp.end,
            "estimated": cp.estimated,
            "statistic": cp.statistic,
            "score": _num(cp.score),
            "before_count": cp.before_count,
            "after_count": cp.after_count,
            "signal": cp.signal,
            "slice": cp.slice,
        },
        "suspects": [
            {
                "event_id": s.event_id,
                "type": s.type,
                "time": s.time,
                "model": s.model,
                "environment": s.environment,
                "version": s.version,
                "node": s.node,
                "image": s.image,
                "attributes": dict(s.attributes),
                "source": s.source,
                "score": s.score,
                "components": dict(s.components),
                "reasons": list(s.reasons),
            }
            for s in correlation.suspects
        ],
        "fingerprint_diff": [
            {
                "field": d.field,
                "from": d.before,
                "to": d.after,
                "time": d.time,
                "share": d.share,
                "node": d.node,
                "nodes": list(d.nodes),
                "nodes_total": d.nodes_total,
                "event_id": d.event_id,
            }
            for d in correlation.fingerprint_diff
        ],
        "attribution": [
            {
                "attribute": v.attribute,
                "value": v.value,
                "verdict": v.verdict,
                "effect": v.effect,
                "estimate": _num(v.estimate),
                "lower": _num(v.lower),
                "upper": _num(v.upper),
                "unit": v.unit,
                "guardrail": v.guardrail,
                "tier": v.tier,
                "live_count": v.live_count,
            }
            for v in correlation.attribution
        ],
        "attribution_summary": correlation.attribution_summary,
        "attribution_since": correlation.attribution_since,
    }
    if correlation.error:
        out["correlation_error"] = correlation.error
    return out


def _float(value: Any) -> float:
    """A JSON number back to a float (None, as written for nan/inf, is nan)."""
    return math.nan if value is None else float(value)


def correlation_from_fields(data: Mapping[str, Any]) -> Correlation:
    """The :class:`Correlation` that :func:`correlation_fields` wrote (the fleet's
    stored alert state keeps it so a new leader's alerts still carry it).

    Missing fields take their defaults; a malformed field raises ``KeyError``,
    ``TypeError`` or ``ValueError``.

    >>> correlation_from_fields(correlation_fields(Correlation(None))) == Correlation(None)
    True
    """
    raw_cp = data.get("change_point")
    cp = (
        None
        if raw_cp is None
        else ChangePointInfo(
            time=float(raw_cp["time"]),
            start=float(raw_cp["start"]),
            end=float(raw_cp["end"]),
            estimated=bool(raw_cp["estimated"]),
            statistic=str(raw_cp.get("statistic", "")),
            score=_float(raw_cp.get("score", 0.0)),
            before_count=int(raw_cp.get("before_count", 0)),
            after_count=int(raw_cp.get("after_count", 0)),
            signal=str(raw_cp.get("signal", "")),
            slice=str(raw_cp.get("slice", ALL_TRAFFIC)),
        )
    )
    suspects = tuple(
        Suspect(
            event_id=str(s["event_id"]),
            type=str(s["type"]),
            time=float(s["time"]),
            model=str(s["model"]),
            environment=str(s.get("environment", "")),
            version=str(s.get("version", "")),
            node=str(s.get("node", "")),
            image=str(s.get("image", "")),
            attributes={str(k): str(v) for k, v in s.get("attributes", {}).items()},
            source=str(s.get("source", "")),
            score=float(s["score"]),
            components={str(k): float(v) for k, v in s.get("components", {}).items()},
            reasons=tuple(str(r) for r in s.get("reasons", ())),
        )
        for s in data.get("suspects", ())
    )
    differences = tuple(
        FingerprintDifference(
            field=str(d["field"]),
            before=str(d.get("from", "")),
            after=str(d.get("to", "")),
            time=float(d["time"]),
            share=None if d.get("share") is None else float(d["share"]),
            event_id=str(d.get("event_id", "")),
            node=str(d.get("node", "")),
            nodes=tuple(str(n) for n in d.get("nodes", ())),
            nodes_total=int(d.get("nodes_total", 0)),
        )
        for d in data.get("fingerprint_diff", ())
    )
    verdicts = tuple(
        SliceVerdict(
            attribute=str(v["attribute"]),
            value=str(v["value"]),
            verdict=str(v["verdict"]),
            effect=str(v["effect"]),
            estimate=_float(v.get("estimate")),
            lower=_float(v.get("lower")),
            upper=_float(v.get("upper")),
            unit=str(v.get("unit", "")),
            guardrail=float(v.get("guardrail", 0.0)),
            tier=str(v.get("tier", "")),
            live_count=int(v.get("live_count", 0)),
        )
        for v in data.get("attribution", ())
    )
    return Correlation(
        change_point=cp,
        suspects=suspects,
        fingerprint_diff=differences,
        attribution=verdicts,
        attribution_summary=str(data.get("attribution_summary", "")),
        error=str(data.get("correlation_error", "")),
        attribution_since=float(data.get("attribution_since", 0.0)),
    )
