"""Quality comparisons and reports: the labelled calibration series of the live epoch
against the active baseline, per slice, plus fairness gaps and CBPE.

:class:`QualityMonitor` turns the calibration states that
:class:`~sidecar.outcomes.Outcomes` writes into

- **findings** (:meth:`QualityMonitor.findings`), one
  :class:`~sidecar.compare.SeriesFinding` per slice of kind ``quality`` and signal
  ``calibration`` with the effects of :func:`~sidecar.stats.quality.quality_effects`
  (error rate, Brier, log loss, ECE fixed and adaptive, AUC drop), judged against
  the ``quality`` guardrails; and one per configured fairness attribute and metric
  (signal ``fairness_gap_error_rate`` / ``fairness_gap_ece``, slice
  ``attribute=<worst value>``: the slice that carries the gap) judged on the live
  gap's bounds. The comparator appends them to its result, so alerts, sinks and
  replay see them like any other finding. The quality family has its own
  false-alarm budget ``alpha``, split evenly (Bonferroni) over its tests: the
  guarded quality effects of every baseline slice plus the fairness tests.
- **reports** (:meth:`QualityMonitor.report`): per slice the realized error
  rate, ECE, Brier score, log loss and AUC with bounds against the baseline, the
  CBPE estimate from every sampled prediction (an *estimate*, marked as such) and
  its check on the labelled ones, and the reliability diagram's data.

A baseline's quality side is what was labelled during its window (outcome time):
read from the quality partials the first time it is needed, then stored with the
baseline (lane ``"<environment>\\x1fquality-baseline"``, writer = baseline id) so
it outlives window retention.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sidecar.compare import SeriesFinding
from sidecar.guardrails import Guardrail, Guardrails, Tier
from sidecar.outcomes import LABELLED, SAMPLED, Outcomes, QualityData
from sidecar.records import ALL_TRAFFIC, Kind, Partial, SeriesId
from sidecar.stats.effects import Effect
from sidecar.stats.quality import (
    QUALITY_EFFECTS,
    CalibrationState,
    CBPEEstimate,
    FairnessGap,
    ReliabilityBin,
    cbpe,
    fairness_gap,
    quality_effects,
)
from sidecar.stores.base import Store

__all__ = [
    "CALIBRATION",
    "FAIRNESS",
    "QualityMonitor",
    "QualityReport",
    "SliceReport",
]

CALIBRATION = "calibration"
"""Signal name of the per-slice labelled quality findings (kind ``quality``)."""
FAIRNESS = "fairness"
"""Signal name whose guardrails (``[models.<m>.signals.fairness...]``) judge fairness gaps."""

_BASELINE_LANE = "\x1fquality-baseline"
_BASELINE_TTL = 10 * 366 * 24 * 3600  # baselines are kept, not expired
_SEP = "\x1f"
_FAIRNESS_METRICS = ("error_rate", "ece")


@dataclass(frozen=True)
class SliceReport:
    """Quality of one slice in the live epoch (and its baseline, when there is one)."""

    slice: str
    count: float
    error_rate: float | None
    ece: float
    ece_adaptive: float
    brier: float | None
    log_loss: float | None
    auc: float | None
    baseline_count: float
    baseline_error_rate: float | None
    baseline_ece: float
    effects: Mapping[str, Effect]
    cbpe: CBPEEstimate  # estimate from every sampled prediction's confidence
    cbpe_check: CBPEEstimate  # the same estimate on the labelled ones, with realized error
    reliability: tuple[ReliabilityBin, ...]
    reliability_adaptive: tuple[ReliabilityBin, ...]


@dataclass(frozen=True)
class QualityReport:
    """``baselined quality show``: every slice of the live epoch against the baseline."""

    model: str
    environment: str
    baseline_id: str
    window_start: float
    window_end: float
    slices: tuple[SliceReport, ...]
    fairness: tuple[tuple[str, FairnessGap], ...]  # (attribute, gap)
    findings: tuple[SeriesFinding, ...] = field(default=())


@dataclass
class _Live:
    baseline_id: str
    start: float
    sealed_through: int
    states: dict[tuple[str, str], CalibrationState]


class QualityMonitor:
    """Quality findings and reports of (model, environment) pairs (module docstring).

    ``epoch_start(model, environment, now)`` is the comparator's; ``seal_after``
    as there: buckets older than that are merged once and kept.
    """

    def __init__(
        self,
        outcomes: Outcomes,
        store: Store,
        guardrails: Guardrails,
        *,
        epoch_start: Callable[[str, str, float], float | None],
        clock: Callable[[], float] = time.time,
        seal_after: float = 600.0,
    ) -> None:
        self.outcomes = outcomes
        self.guardrails = guardrails
        self.seal_after = seal_after
        self._store = store
        self._epoch_start = epoch_start
        self._clock = clock
        self._lock = threading.Lock()
        self._baselines: dict[str, QualityData] = {}
        self._live: dict[tuple[str, str], _Live] = {}

    # -- data ----------------------------------------------------------------------

    def baseline(self, baseline_id: str) -> QualityData:
        """The quality side of a baseline (stored with it on first use)."""
        with self._lock:
            found = self._baselines.get(baseline_id)
        if found is not None:
            return found
        record = self._store.get_baseline(baseline_id)
        lane = record.environment + _BASELINE_LANE
        stored = [
            p
            for p in self._store.read_partials(record.model, lane, 0, 1)
            if p.writer == baseline_id
        ]
        states: dict[tuple[str, str], CalibrationState] = {}
        if stored:
            for key, blob in stored[0].series.items():
                slice_label, _, name = key.rpartition(_SEP)
                states[(slice_label, name)] = CalibrationState.decode(blob)
            data = QualityData(states)
        else:
            data = self.outcomes.read(
                record.model, record.environment, record.window_start, record.window_end
            )
            if data.states:
                series = {f"{s}{_SEP}{n}": st.encode() for (s, n), st in data.states.items()}
                self._store.write_partials(
                    record.model,
                    lane,
                    [Partial(0, baseline_id, series)],
                    ttl_seconds=_BASELINE_TTL,
                )
        with self._lock:
            self._baselines[baseline_id] = data
        return data

    def live(
        self, model: str, environment: str, baseline_id: str, start: float, now: float
    ) -> QualityData:
        """Merged quality states of buckets that started in [start, now]."""
        first = math.ceil(start)
        through = math.floor(now) + 1
        key = (model, environment)
        with self._lock:
            cached = self._live.get(key)
        if cached is None or (cached.baseline_id, cached.start) != (baseline_id, start):
            cached = _Live(baseline_id, start, first, {})
        seal = max(cached.sealed_through, min(through, math.floor(now - self.seal_after)))
        if seal > cached.sealed_through:
            newly = self.outcomes.read(model, environment, cached.sealed_through, seal)
            for k, state in newly.states.items():
                old = cached.states.get(k)
                if old is None:
                    cached.states[k] = state
                else:
                    old.merge(state)
            cached.sealed_through = seal
        with self._lock:
            self._live[key] = cached
        recent = self.outcomes.read(model, environment, seal, through)
        merged = {k: s.copy() for k, s in cached.states.items()}
        for k, state in recent.states.items():
            old = merged.get(k)
            if old is None:
                merged[k] = state
            else:
                old.merge(state)
        return QualityData(merged)

    # -- findings --------------------------------------------------------------------

    def _rails(self, model: str, signal: str, names: tuple[str, ...]) -> tuple[Guardrail, ...]:
        return tuple(
            g for g in self.guardrails.for_series(model, Kind.QUALITY, signal) if g.effect in names
        )

    def _tests(self, model: str, base: Mapping[str, CalibrationState]) -> int:
        rails = len(self._rails(model, CALIBRATION, QUALITY_EFFECTS))
        fair = len(
            self._rails(model, FAIRNESS, tuple(f"fairness_gap_{m}" for m in _FAIRNESS_METRICS))
        )
        return rails * len(base) + fair * len(self.guardrails.outcomes(model).fairness)

    def findings(
        self, model: str, environment: str, baseline_id: str, start: float, now: float
    ) -> list[SeriesFinding]:
        """Findings of the quality series and fairness gaps (empty without labels)."""
        base = self.baseline(baseline_id).slices(LABELLED)
        if not base:
            return []
        live = self.live(model, environment, baseline_id, start, now)
        findings, _ = self._judge(model, base, live.slices(LABELLED))
        return findings

    def _judge(
        self,
        model: str,
        base: Mapping[str, CalibrationState],
        live: Mapping[str, CalibrationState],
    ) -> tuple[list[SeriesFinding], dict[str, Mapping[str, Effect]]]:
        tests = self._tests(model, base)
        alpha = self.guardrails.alpha / tests if tests > 0 else self.guardrails.alpha
        rails = self._rails(model, CALIBRATION, QUALITY_EFFECTS)
        out: list[SeriesFinding] = []
        effects_by_slice: dict[str, Mapping[str, Effect]] = {}
        for slice_label in sorted(live):
            state = live[slice_label]
            reference = base.get(slice_label)
            if reference is None or state.count <= 0.0:
                continue
            effects = quality_effects(reference, state, alpha)
            effects_by_slice[slice_label] = effects
            out.append(
                _finding(
                    SeriesId(ALL_TRAFFIC, slice_label, Kind.QUALITY, CALIBRATION),
                    effects,
                    rails,
                    reference.count,
                    state.count,
                )
            )
        for attribute in self.guardrails.outcomes(model).fairness:
            prefix = f"{attribute}="
            per_slice = {s[len(prefix) :]: st for s, st in live.items() if s.startswith(prefix)}
            for metric in _FAIRNESS_METRICS:
                name = f"fairness_gap_{metric}"
                gap = fairness_gap(
                    per_slice, "error_rate" if metric == "error_rate" else "ece", alpha
                )
                if gap.worst is None:
                    continue
                worst = f"{prefix}{gap.worst}"
                reference = base.get(worst)
                out.append(
                    _finding(
                        SeriesId(ALL_TRAFFIC, worst, Kind.QUALITY, name),
                        {name: gap.as_effect()},
                        self._rails(model, FAIRNESS, (name,)),
                        0.0 if reference is None else reference.count,
                        sum(st.count for st in per_slice.values()),
                    )
                )
        return out, effects_by_slice

    # -- reports -----------------------------------------------------------------------

    def report(self, model: str, environment: str) -> QualityReport:
        """The live epoch against the active baseline; without one, the retained data alone."""
        now = self._clock()
        pointer = self._store.get_pointer(model, environment)
        baseline_id = pointer.active or ""
        start = self._epoch_start(model, environment, now) if baseline_id else None
        if start is None:
            start = now - self.outcomes.settings.retention_seconds
        live = self.live(model, environment, baseline_id, start, now)
        base = self.baseline(baseline_id) if baseline_id else QualityData({})
        base_labelled = base.slices(LABELLED)
        labelled = live.slices(LABELLED)
        sampled = live.slices(SAMPLED)
        findings, effects = self._judge(model, base_labelled, labelled)
        tests = self._tests(model, base_labelled)
        alpha = self.guardrails.alpha / tests if tests > 0 else self.guardrails.alpha
        empty = CalibrationState()
        slices: list[SliceReport] = []
        for slice_label in sorted(set(labelled) | set(sampled)):
            state = labelled.get(slice_label, empty)
            reference = base_labelled.get(slice_label, empty)
            estimate = cbpe(sampled.get(slice_label, empty), None, alpha)
            # The sampled state holds confidences only: its "realized" figures mean nothing.
            estimate = CBPEEstimate(
                estimate.expected_error,
                estimate.lower,
                estimate.upper,
                estimate.count,
                estimate.recalibrated,
                None,
                None,
            )
            slices.append(
                SliceReport(
                    slice=slice_label,
                    count=state.count,
                    error_rate=state.error_rate(),
                    ece=state.ece("fixed"),
                    ece_adaptive=state.ece("adaptive"),
                    brier=state.brier(),
                    log_loss=state.log_loss(),
                    auc=state.auc(),
                    baseline_count=reference.count,
                    baseline_error_rate=reference.error_rate(),
                    baseline_ece=reference.ece("fixed"),
                    effects=effects.get(slice_label, {}),
                    cbpe=estimate,
                    cbpe_check=cbpe(state, None, alpha),
                    reliability=tuple(state.reliability("fixed")),
                    reliability_adaptive=tuple(state.reliability("adaptive")),
                )
            )
        fairness: list[tuple[str, FairnessGap]] = []
        for attribute in self.guardrails.outcomes(model).fairness:
            prefix = f"{attribute}="
            per_slice = {s[len(prefix) :]: st for s, st in labelled.items() if s.startswith(prefix)}
            for metric in _FAIRNESS_METRICS:
                fairness.append(
                    (
                        attribute,
                        fairness_gap(
                            per_slice, "error_rate" if metric == "error_rate" else "ece", alpha
                        ),
                    )
                )
        return QualityReport(
            model=model,
            environment=environment,
            baseline_id=baseline_id,
            window_start=start,
            window_end=now,
            slices=tuple(slices),
            fairness=tuple(fairness),
            findings=tuple(findings),
        )


def _finding(
    sid: SeriesId,
    effects: Mapping[str, Effect],
    rails: tuple[Guardrail, ...],
    baseline_count: float,
    live_count: float,
) -> SeriesFinding:
    """Judge effects against guardrails as the comparator does."""
    fired: list[tuple[str, Tier, float]] = []
    for rail in rails:
        effect = effects.get(rail.effect)
        if effect is None:
            continue
        if not (effect.lower >= rail.minor or effect.upper <= -rail.minor):
            continue
        tier = rail.tier(effect.lower, effect.upper)
        if tier is not None:
            fired.append((rail.effect, tier, rail.threshold(tier)))
    return SeriesFinding(
        series=sid,
        phase="",
        effects=effects,
        tier=max(t for _, t, _ in fired) if fired else None,
        fired=tuple(fired),
        baseline_count=round(baseline_count),
        live_count=round(live_count),
    )
