"""Quality comparisons and reports: the labelled calibration series of the live epoch
against the active baseline, per slice, plus fairness gaps and CBPE.

:class:`QualityMonitor` turns the calibration states that
:class:`~sidecar.outcomes.Outcomes` writes into

- **findings** (:meth:`QualityMonitor.findings`), one
  :class:`~sidecar.compare.SeriesFinding` per slice of kind ``quality`` and signal
  ``calibration`` with the effects of :func:`~sidecar.stats.quality.quality_effects`
  (error rate, Brier, log loss, ECE fixed and adaptive, AUC drop), judged against
  the ``quality`` guardrails; one per configured fairness attribute and metric
  (signal ``fairness_gap_error_rate`` / ``fairness_gap_ece``, slice
  ``attribute=<worst value>``: the slice that carries the gap) judged on the
  gap's shift against the baseline's gap (``fairness_gap_<metric>_shift``; the
  absolute live gap rides along for context); and one per slice of signal
  ``cbpe`` with ``estimated_error_rate_shift``, CBPE's error-rate shift
  estimated from the confidences of every sampled prediction (so a model whose
  labels are slow still alerts; an *estimate*). The comparator appends them to
  its result, so alerts, sinks and replay see them like any other finding. The
  quality family has its own false-alarm budget ``alpha``, split evenly
  (Bonferroni) over its tests: the guarded quality effects of every baseline
  slice, the fairness tests and the CBPE tests.
- **reports** (:meth:`QualityMonitor.report`): per slice the realized error
  rate, ECE, Brier score, log loss and AUC with bounds against the baseline, the
  CBPE estimate from every sampled prediction (an *estimate*, marked as such) and
  its check on the labelled ones, and the reliability diagram's data.

A baseline's quality side is what was labelled (and sampled) during its window
(outcome time): read from the quality partials when the baseline is frozen
(:meth:`QualityMonitor.freeze`, the baseline manager's ``on_freeze`` hook) or, at
the latest, the first time it is needed, then stored with the baseline (lane
``"<environment>\\x1fquality-baseline"``, writer = baseline id) so it outlives
window retention.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sidecar.compare import SeriesFinding
from sidecar.guardrails import Guardrail, Guardrails, Tier
from sidecar.outcome_config import OutcomeConfig
from sidecar.outcomes import LABELLED, SAMPLED, Outcomes, QualityData
from sidecar.records import ALL_TRAFFIC, BaselineRecord, Kind, Partial, SeriesId
from sidecar.stats.effects import Effect
from sidecar.stats.quality import (
    ESTIMATED_ERROR_SHIFT,
    QUALITY_EFFECTS,
    CalibrationState,
    CBPEEstimate,
    FairnessGap,
    ReliabilityBin,
    cbpe,
    estimated_error_shift,
    fairness_gap,
    fairness_gap_shift,
    quality_effects,
)
from sidecar.stores.base import Store

__all__ = [
    "CALIBRATION",
    "ESTIMATE",
    "FAIRNESS",
    "FairnessReport",
    "QualityMonitor",
    "QualityReport",
    "SliceReport",
    "estimate_diverged",
]

CALIBRATION = "calibration"
"""Signal name of the per-slice labelled quality findings (kind ``quality``)."""
FAIRNESS = "fairness"
"""Signal name whose guardrails (``[models.<m>.signals.fairness...]``) judge fairness gaps."""
ESTIMATE = "cbpe"
"""Signal name of the CBPE findings (``estimated_error_rate_shift``; kind ``quality``)."""

_BASELINE_LANE = "\x1fquality-baseline"
_BASELINE_TTL = 10 * 366 * 24 * 3600  # baselines are kept, not expired
_SEP = "\x1f"
_FAIRNESS_METRICS: tuple[Literal["error_rate", "ece"], ...] = ("error_rate", "ece")


def _fairness_names(metric: str) -> tuple[str, ...]:
    """Effects of a fairness finding: the gap's shift (guarded by default) and the
    absolute live gap (for context; guarded only when a model configures it)."""
    return (f"fairness_gap_{metric}_shift", f"fairness_gap_{metric}")


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

    @property
    def estimate_diverged(self) -> bool | None:
        """Whether the realized error-rate shift contradicts CBPE's estimated one
        (:func:`estimate_diverged`); None until both are known."""
        return estimate_diverged(self.effects)


def estimate_diverged(effects: Mapping[str, Effect]) -> bool | None:
    """True when the intervals of ``error_rate_shift`` (realized, from labels) and
    ``estimated_error_rate_shift`` (CBPE, from confidences) are disjoint: the labels
    that landed contradict the estimate (the confidences' calibration changed: trust
    the realized figures). None when either is missing or nan."""
    realized, estimated = effects.get("error_rate_shift"), effects.get(ESTIMATED_ERROR_SHIFT)
    if realized is None or estimated is None:
        return None
    numbers = (realized.lower, realized.upper, estimated.lower, estimated.upper)
    if any(math.isnan(x) for x in numbers):
        return None
    return realized.lower > estimated.upper or realized.upper < estimated.lower


@dataclass(frozen=True)
class FairnessReport:
    """One fairness attribute and metric: the live gap, the baseline's gap (over the
    same slices; nan without a baseline) and the shift between them (the effect the
    guardrails judge)."""

    attribute: str
    metric: str
    live: FairnessGap
    baseline: FairnessGap
    shift: Effect


@dataclass(frozen=True)
class QualityReport:
    """``baselined quality show``: every slice of the live epoch against the baseline."""

    model: str
    environment: str
    baseline_id: str
    window_start: float
    window_end: float
    slices: tuple[SliceReport, ...]
    fairness: tuple[FairnessReport, ...]
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
        """The quality side of a baseline (stored with it at freeze, else on first use)."""
        with self._lock:
            found = self._baselines.get(baseline_id)
        if found is not None:
            return found
        return self._load(self._store.get_baseline(baseline_id))

    def freeze(self, record: BaselineRecord) -> None:
        """Freeze the quality side of a baseline just frozen (the baseline manager's
        ``on_freeze`` hook): pending predictions and labelled buckets are flushed, then
        the states of the baseline's window are stored with it. Part of the freeze (no
        audit entry of its own); when it fails, the first comparison stores it."""
        self.outcomes.flush()
        self._load(record)

    def _load(self, record: BaselineRecord) -> QualityData:
        baseline_id = record.id
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

    def _tests(self, model: str, base: QualityData) -> int:
        labelled, sampled = base.slices(LABELLED), base.slices(SAMPLED)
        rails = len(self._rails(model, CALIBRATION, QUALITY_EFFECTS))
        fair = sum(len(self._rails(model, FAIRNESS, _fairness_names(m))) for m in _FAIRNESS_METRICS)
        estimate = len(self._rails(model, ESTIMATE, (ESTIMATED_ERROR_SHIFT,)))
        config = self.guardrails.outcomes(model)
        return (
            rails * len(labelled)
            + (fair * len(config.fairness) if labelled else 0)
            + (estimate * len(sampled) if config.task == "classification" else 0)
        )

    def findings(
        self, model: str, environment: str, baseline_id: str, start: float, now: float
    ) -> list[SeriesFinding]:
        """Findings of the quality series, fairness gaps and CBPE (empty without data)."""
        base = self.baseline(baseline_id)
        if not base.states:
            return []
        live = self.live(model, environment, baseline_id, start, now)
        findings, _, _ = self._judge(model, base, live)
        return findings

    def _judge(
        self, model: str, base_data: QualityData, live_data: QualityData
    ) -> tuple[list[SeriesFinding], dict[str, dict[str, Effect]], list[FairnessReport]]:
        """Findings, effects by slice and fairness reports of live against the baseline."""
        tests = self._tests(model, base_data)
        alpha = self.guardrails.alpha / tests if tests > 0 else self.guardrails.alpha
        config = self.guardrails.outcomes(model)
        base, live = base_data.slices(LABELLED), live_data.slices(LABELLED)
        rails = self._rails(model, CALIBRATION, QUALITY_EFFECTS)
        out: list[SeriesFinding] = []
        effects_by_slice: dict[str, dict[str, Effect]] = {}
        for slice_label in sorted(live):
            state = live[slice_label]
            reference = base.get(slice_label)
            if reference is None or state.count <= 0.0:
                continue
            effects = quality_effects(reference, state, alpha)
            effects_by_slice[slice_label] = dict(effects)
            out.append(
                _finding(
                    SeriesId(ALL_TRAFFIC, slice_label, Kind.QUALITY, CALIBRATION),
                    effects,
                    rails,
                    reference.count,
                    state.count,
                )
            )
        fairness = self._fairness(model, config, base, live, alpha)
        for report in fairness:
            if base and report.live.worst is not None:
                prefix = f"{report.attribute}="
                worst = f"{prefix}{report.live.worst}"
                name = f"fairness_gap_{report.metric}"
                reference = base.get(worst)
                out.append(
                    _finding(
                        SeriesId(ALL_TRAFFIC, worst, Kind.QUALITY, name),
                        {report.shift.name: report.shift, name: report.live.as_effect()},
                        self._rails(model, FAIRNESS, _fairness_names(report.metric)),
                        0.0 if reference is None else reference.count,
                        sum(r.count for r in report.live.slices),
                    )
                )
        if config.task == "classification":
            base_sampled, live_sampled = base_data.slices(SAMPLED), live_data.slices(SAMPLED)
            top = 1.0 if config.predicted else max(config.threshold, 1.0 - config.threshold)
            estimate_rails = self._rails(model, ESTIMATE, (ESTIMATED_ERROR_SHIFT,))
            for slice_label in sorted(live_sampled):
                state = live_sampled[slice_label]
                reference = base_sampled.get(slice_label)
                if reference is None or state.count <= 0.0:
                    continue
                effect = estimated_error_shift(reference, state, alpha, top=top)
                effects_by_slice.setdefault(slice_label, {})[ESTIMATED_ERROR_SHIFT] = effect
                out.append(
                    _finding(
                        SeriesId(ALL_TRAFFIC, slice_label, Kind.QUALITY, ESTIMATE),
                        {ESTIMATED_ERROR_SHIFT: effect},
                        estimate_rails,
                        reference.count,
                        state.count,
                    )
                )
        return out, effects_by_slice, fairness

    def _fairness(
        self,
        model: str,
        config: OutcomeConfig,
        base: Mapping[str, CalibrationState],
        live: Mapping[str, CalibrationState],
        alpha: float,
    ) -> list[FairnessReport]:
        out: list[FairnessReport] = []
        for attribute in config.fairness:
            prefix = f"{attribute}="
            live_slices = {s[len(prefix) :]: st for s, st in live.items() if s.startswith(prefix)}
            base_slices = {s[len(prefix) :]: st for s, st in base.items() if s.startswith(prefix)}
            for metric in _FAIRNESS_METRICS:
                if base_slices:
                    gap_b, gap_l, shift = fairness_gap_shift(
                        base_slices, live_slices, metric, alpha
                    )
                else:  # no baseline: the live gap over every slice, nothing to compare
                    gap_l = fairness_gap(live_slices, metric, alpha)
                    gap_b = FairnessGap(metric, None, None, math.nan, math.nan, math.nan, ())
                    unit = "share" if metric == "error_rate" else "absolute"
                    name = f"fairness_gap_{metric}_shift"
                    shift = Effect(name, math.nan, math.nan, math.nan, unit)
                out.append(FairnessReport(attribute, metric, gap_l, gap_b, shift))
        return out

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
        findings, effects, fairness = self._judge(model, base, live)
        tests = self._tests(model, base)
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
