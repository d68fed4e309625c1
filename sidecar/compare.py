"""The comparator: every series of the live monitoring epoch against the active baseline.

One comparison of a (model, environment) reads the cumulative live data of the
current *epoch* (from the active baseline's activation, or the last
:meth:`Comparator.reset_epoch`, until now; an epoch older than
``max_epoch_age`` restarts), computes each series' guarded effects with
confidence intervals and judges them against the guardrails. The effects come
from one :class:`~sidecar.stats.evaluator.EffectEvaluator` per baseline (and
phase), built once and cached with the decoded baseline: its baseline side is
computed once, the live side of all series at each check (``evaluator=``).
Findings hold the guarded effects only; ``full=True`` (on-demand comparisons)
computes every effect of :data:`~sidecar.stats.effects.NUMERIC_EFFECTS` /
:data:`~sidecar.stats.effects.CATEGORICAL_EFFECTS`, each at the same alpha per test.

The false-alarm budget ``alpha`` holds per (model, environment) per epoch. It is
split (weighted Bonferroni) over the family of tests fixed by the baseline and
the guardrails: every guarded effect of every baseline series (of every phase,
for seasonal models) is one test, whether live data for it arrived yet or not,
with its guardrail's ``weight`` (1 unless configured; the latency p99 defaults to
:data:`~sidecar.guardrails.LATENCY_P99_WEIGHT`). ``alpha_per_test = alpha / (sum
of the weights)`` is the alpha of a test of weight 1 (a test of weight w gets w
times that), so the tests' alphas add up to ``alpha`` and cannot change within
an epoch.

Live numeric series with a quantile guardrail are merged with a raised exact
limit (``Guardrails.live_exact_limit``): exact bucket states stay exact up to that
many values, so their quantile bounds carry no digest slack.

Seasonal models (``[models.<m>] seasonality``) are compared phase by phase: a
seasonal baseline stores each series also per phase (slice ``"<slice>@NN"``),
and the live buckets of the epoch are grouped by the phase of their start time.

>>> from sidecar.guardrails import Guardrails
>>> findings, alpha_test = compare_states({}, {}, Guardrails.load(None), "m", 0.01)
>>> findings, alpha_test
([], 0.01)
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sidecar.guardrails import Guardrails, Seasonality, Tier
from sidecar.records import ALL_TRAFFIC, Kind, PointerState, SeriesId, Status
from sidecar.series import CategoricalState, NumericState, merge_encoded
from sidecar.stats.effects import CATEGORICAL_EFFECTS, NUMERIC_EFFECTS, Effect
from sidecar.stats.evaluator import EffectEvaluator
from sidecar.stores.base import Store
from sidecar.windows import Windows

__all__ = [
    "Comparator",
    "ComparisonResult",
    "SeriesFinding",
    "SeriesKey",
    "State",
    "build_evaluator",
    "compare_states",
    "copy_state",
    "count_tests",
    "merge_into",
    "phase_slice",
    "read_grouped",
    "read_phases",
]

State = NumericState | CategoricalState
SeriesKey = tuple[str, Kind, str]
"""(slice, kind, signal): how live series meet their baseline series (versions merged)."""

_PHASE = re.compile(r"^(.*)@(\d{2})$")
_ACTIVATIONS = ("promote", "rollback")
_AUDIT_SCAN = 1000  # audit entries searched for the activation of the active baseline


def _zero(_bucket: int) -> int:
    return 0


def phase_slice(slice_: str, phase: int) -> str:
    """The slice under which a seasonal baseline stores ``slice_`` for one phase."""
    return f"{slice_}@{phase:02d}"


@dataclass(frozen=True)
class SeriesFinding:
    """One series (of one phase) compared: its effects, the tiers they cleared
    and the sample counts on both sides.

    ``fired`` lists, per effect that cleared a guardrail, (effect, highest tier,
    that tier's guardrail); ``tier`` is the highest of them, None when clear.
    Counts are values seen including missing and out-of-range ones.
    """

    series: SeriesId
    phase: str
    effects: Mapping[str, Effect]
    tier: Tier | None
    fired: tuple[tuple[str, Tier, float], ...]
    baseline_count: int
    live_count: int


@dataclass(frozen=True)
class ComparisonResult:
    """Every finding of one comparison of a (model, environment).

    ``window_start`` is the start of the monitoring epoch, ``window_end`` the
    time of the comparison. ``duration_seconds`` is the wall time it took.
    """

    model: str
    environment: str
    baseline_id: str
    time: float
    window_start: float
    window_end: float
    alpha_per_test: float
    duration_seconds: float
    findings: tuple[SeriesFinding, ...]

    @property
    def tier(self) -> Tier | None:
        """The highest tier of any finding, None when all are clear."""
        tiers = [f.tier for f in self.findings if f.tier is not None]
        return max(tiers) if tiers else None


def _total(state: State) -> int:
    if isinstance(state, NumericState):
        return state.count + state.missing + state.out_of_range
    return state.count + state.missing


def _order(sid: SeriesId) -> tuple[str, str, str, str]:
    """SeriesId's own order, as one tuple per series (faster to sort by)."""
    return (sid.version, sid.slice, sid.kind.value, sid.signal)


def count_tests(
    base: Iterable[tuple[SeriesId, State]], guardrails: Guardrails, model: str
) -> float:
    """The family's size in alpha shares: the weights of the guarded effects summed
    over the baseline series given (the number of tests when every weight is 1)."""
    rails = guardrails.for_state
    return float(
        sum(
            rail.weight
            for sid, state in base
            for rail in rails(model, sid.kind, sid.signal, isinstance(state, CategoricalState))
        )
    )


def build_evaluator(
    base: Mapping[SeriesId, State],
    guardrails: Guardrails,
    model: str,
    alpha_test: float,
    *,
    full: bool = False,
) -> EffectEvaluator[SeriesKey]:
    """The evaluator of ``base``'s series (keyed by :data:`SeriesKey`): their guarded
    effects (every effect when ``full``), each test at ``alpha_test`` times its
    guardrail's weight (unguarded effects: weight 1).

    Its baseline side costs about as much as a few comparisons; build it once per
    baseline (and phase) and pass it to :func:`compare_states`.
    """
    names: dict[SeriesKey, tuple[str, ...]] = {}
    states: dict[SeriesKey, State] = {}
    directions: dict[tuple[SeriesKey, str], str] = {}
    weights: dict[tuple[SeriesKey, str], float] = {}
    for sid, state in base.items():
        key = (sid.slice, sid.kind, sid.signal)
        categorical = isinstance(state, CategoricalState)
        rails = guardrails.for_state(model, sid.kind, sid.signal, categorical)
        if full:
            names[key] = CATEGORICAL_EFFECTS if categorical else NUMERIC_EFFECTS
        else:
            names[key] = tuple(dict.fromkeys(rail.effect for rail in rails))
        for rail in rails:  # a one-sided test spends its alpha on one end of the interval
            directions[(key, rail.effect)] = rail.direction
            weights[(key, rail.effect)] = weights.get((key, rail.effect), 0.0) + rail.weight
        states[key] = state

    def alpha_for(key: SeriesKey, name: str) -> float:
        return min(alpha_test * weights.get((key, name), 1.0), 0.5)

    def direction_for(key: SeriesKey, name: str) -> str:
        return directions.get((key, name), "both")

    return EffectEvaluator(states, names.__getitem__, alpha_for, direction_for)


def compare_states(
    base: Mapping[SeriesId, State],
    live: Mapping[SeriesId, State],
    guardrails: Guardrails,
    model: str,
    alpha: float,
    *,
    phase: str = "",
    tests: float | None = None,
    evaluator: EffectEvaluator[SeriesKey] | None = None,
) -> tuple[list[SeriesFinding], float]:
    """Compare each live series with the baseline series of the same slice, kind
    and signal (versions are ignored: live data is all versions merged).

    ``alpha`` is the family's budget; it is split over ``tests`` weight units
    (default: the weights of the guarded effects of all of ``base``, see
    :func:`count_tests`). Returns the findings, sorted by series, and the alpha of
    a test of weight 1. Series without a baseline
    counterpart, of another type, or with no live values yield no finding; a
    series without guardrails yields one without effects. ``evaluator`` (from
    :func:`build_evaluator` on ``base`` with this alpha per test) saves building
    one per call; it decides which effects the findings hold.
    """
    if tests is None:
        tests = count_tests(base.items(), guardrails, model)
    alpha_test = alpha / tests if tests > 0 else alpha
    if evaluator is None:
        evaluator = build_evaluator(base, guardrails, model, alpha_test)

    by_key: dict[SeriesKey, State] = {
        (sid.slice, sid.kind, sid.signal): state for sid, state in base.items()
    }
    rails = guardrails.for_state
    pairs: list[tuple[SeriesId, SeriesKey, State, int, int]] = []
    current: dict[SeriesKey, State] = {}
    for sid in sorted(live, key=_order):
        state = live[sid]
        key = (sid.slice, sid.kind, sid.signal)
        reference = by_key.get(key)
        if reference is None or type(reference) is not type(state):
            continue
        live_count = _total(state)
        if live_count == 0:
            continue
        pairs.append((sid, key, state, live_count, _total(reference)))
        current[key] = state
    results = evaluator.evaluate(current)
    no_effects: dict[str, Effect] = {}
    findings: list[SeriesFinding] = []
    for sid, key, state, live_count, base_count in pairs:
        effects = results.get(key, no_effects)
        fired: list[tuple[str, Tier, float]] = []
        for rail in rails(model, sid.kind, sid.signal, isinstance(state, CategoricalState)):
            effect = effects.get(rail.effect)
            if effect is None:
                continue
            # Nothing clears a higher tier without clearing the lowest (nan clears none).
            if not (effect.lower >= rail.minor or effect.upper <= -rail.minor):
                continue
            tier = rail.tier(effect.lower, effect.upper)
            if tier is not None:
                fired.append((rail.effect, tier, rail.threshold(tier)))
        findings.append(
            SeriesFinding(
                series=sid,
                phase=phase,
                effects=effects,
                tier=max(t for _, t, _ in fired) if fired else None,
                fired=tuple(fired),
                baseline_count=base_count,
                live_count=live_count,
            )
        )
    return findings, alpha_test


def read_phases(
    store: Store,
    model: str,
    environment: str,
    start: float,
    end: float,
    seasonality: Seasonality,
    versions: Sequence[str] = (),
) -> dict[int, dict[SeriesId, State]]:
    """The window ``[start, end)`` merged per phase of each bucket's start time.

    Versions as in :meth:`Windows.read`: all merged under ``"*"`` unless given.
    """
    grouped = read_grouped(
        store, model, environment, math.floor(start), math.ceil(end), seasonality.phase, versions
    )
    return {
        p: {sid: merge_encoded(parts) for sid, parts in sorted(series.items())}
        for p, series in sorted(grouped.items())
    }


def read_grouped(
    store: Store,
    model: str,
    environment: str,
    first: int,
    last: int,
    group: Callable[[int], int],
    versions: Sequence[str] = (),
) -> dict[int, dict[SeriesId, list[bytes]]]:
    """Encoded states of the buckets that start in ``[first, last)``, by
    ``group(bucket start)`` and series (groups without series are left out).

    Versions are merged under ``"*"`` unless ``versions`` names some: then only
    those count, merged under the one version's name when there is one. Decode
    a group's parts with :func:`~sidecar.series.merge_encoded`.
    """
    wanted = frozenset(versions)
    merged_as = next(iter(wanted)) if len(wanted) == 1 else ALL_TRAFFIC
    blobs: dict[int, dict[SeriesId, list[bytes]]] = {}
    if first < last:
        for partial in store.read_partials(model, environment, first, last):
            series = blobs.setdefault(group(partial.bucket), {})
            for text, blob in partial.series.items():
                sid = SeriesId.parse(text)
                if wanted and sid.version not in wanted:
                    continue
                key = SeriesId(merged_as, sid.slice, sid.kind, sid.signal)
                series.setdefault(key, []).append(blob)
    return {g: series for g, series in blobs.items() if series}


def merge_into(target: dict[SeriesId, State], sid: SeriesId, state: State) -> None:
    """Merge ``state`` into ``target[sid]``, or place it there when absent.

    ``target[sid]`` is mutated in place (pass fresh copies, see :func:`copy_state`);
    a type clash (numeric vs categorical) keeps the state already there.
    """
    old = target.get(sid)
    if old is None:
        target[sid] = state
    elif isinstance(old, NumericState):
        if isinstance(state, NumericState):
            old.merge(state)
    elif isinstance(state, CategoricalState):
        old.merge(state)


def copy_state(state: State) -> State:
    """A copy of ``state`` that later merges (into it or into the original) cannot
    reach back from: same compression / capacity, same contents."""
    if isinstance(state, NumericState):
        numeric = NumericState(state.compression, state.exact_limit)
        numeric.merge(state)
        return numeric
    table = CategoricalState(state.capacity)
    table.merge(state)
    return table


@dataclass
class _Live:
    """The sealed part of an epoch's live data: buckets that started before
    ``sealed_through`` merged per group (phase, or 0) and series."""

    baseline_id: str
    epoch_start: float
    sealed_through: int
    groups: dict[int, dict[SeriesId, State]]


@dataclass
class _Baseline:
    """Decoded series of one baseline, by phase ("" when compared as a whole)."""

    id: str
    phases: dict[str, dict[SeriesId, State]]
    tests: float
    seasonal: bool
    # (phase, alpha per test, full) -> evaluator of that phase's series, built on first use
    evaluators: dict[tuple[str, float, bool], EffectEvaluator[SeriesKey]] = field(
        default_factory=dict
    )


class Comparator:
    """Compares the live epoch of each (model, environment) with its active baseline.

    Callers flush the live windows first (the server does before each round).
    Thread-safe; ``compare`` blocks on the store (use ``asyncio.to_thread``).
    """

    def __init__(
        self,
        store: Store,
        windows: Windows,
        guardrails: Guardrails,
        *,
        clock: Callable[[], float] = time.time,
        seal_after: float = 600.0,
    ) -> None:
        self.guardrails = guardrails
        self.seal_after = float(seal_after)
        self._live: dict[tuple[str, str], _Live] = {}
        self._store = store
        self._windows = windows
        self._clock = clock
        self._lock = threading.Lock()
        self._baselines: dict[str, _Baseline] = {}
        self._resets: dict[tuple[str, str], float] = {}
        # (model, environment) -> (active id, pointer revision, activation time)
        self._activations: dict[tuple[str, str], tuple[str, int, float]] = {}
        # Findings of other series families appended to each result (the quality
        # monitor of sidecar.quality_view): (model, environment, baseline id,
        # epoch start, now) -> findings. Their errors propagate like the store's.
        self.extra_findings: (
            Callable[[str, str, str, float, float], Sequence[SeriesFinding]] | None
        ) = None

    def targets(self) -> list[tuple[str, str]]:
        """The (model, environment) pairs that have an active baseline, sorted."""
        return sorted(
            {(r.model, r.environment) for r in self._store.list_baselines(status=Status.ACTIVE)}
        )

    def reset_epoch(self, model: str, environment: str, at: float) -> None:
        """Start a new epoch at ``at`` (a change event): earlier live data no longer counts."""
        with self._lock:
            key = (model, environment)
            self._resets[key] = max(self._resets.get(key, -math.inf), at)

    def epoch_start(self, model: str, environment: str, now: float | None = None) -> float | None:
        """Start of the current epoch of (model, environment), None without an active baseline."""
        pointer = self._store.get_pointer(model, environment)
        if pointer.active is None:
            return None
        return self._epoch_start(model, environment, pointer, self._clock() if now is None else now)

    def _epoch_start(
        self, model: str, environment: str, pointer: PointerState, now: float
    ) -> float:
        assert pointer.active is not None
        key = (model, environment)
        with self._lock:
            known = self._activations.get(key)
            reset = self._resets.get(key, -math.inf)
        if known is None or known[:2] != (pointer.active, pointer.revision):
            activated = self._activation_time(model, environment, pointer.active)
            known = (pointer.active, pointer.revision, activated)
            with self._lock:
                self._activations[key] = known
        start = max(known[2], reset)
        age = self.guardrails.max_epoch_age
        if now - start >= age:
            start += math.floor((now - start) / age) * age
        return start

    def _activation_time(self, model: str, environment: str, baseline_id: str) -> float:
        """When ``baseline_id`` last became active: its newest promote/rollback audit
        entry; the baseline's creation time if the audit no longer holds one."""
        for entry in reversed(self._store.list_audit(model, environment, _AUDIT_SCAN)):
            if entry.action in _ACTIVATIONS and entry.after.get("active") == baseline_id:
                return entry.time
        return self._store.get_baseline(baseline_id).created_at

    def _baseline(self, model: str, baseline_id: str) -> _Baseline:
        with self._lock:
            cached = self._baselines.get(baseline_id)
        if cached is not None:
            return cached
        season = self.guardrails.seasonality(model)
        states = {
            SeriesId.parse(text): merge_encoded([blob])
            for text, blob in self._store.get_baseline_series(baseline_id).items()
        }
        whole: dict[SeriesId, State] = {}
        phased: dict[str, dict[SeriesId, State]] = {}
        for sid, state in states.items():
            # "<slice>@NN" is a phase copy when "<slice>" itself is stored too.
            match = _PHASE.match(sid.slice)
            if (
                match is not None
                and SeriesId(sid.version, match.group(1), sid.kind, sid.signal) in states
            ):
                key = SeriesId(ALL_TRAFFIC, match.group(1), sid.kind, sid.signal)
                phased.setdefault(match.group(2), {})[key] = state
            else:
                whole[SeriesId(ALL_TRAFFIC, sid.slice, sid.kind, sid.signal)] = state
        # Phase by phase only when the baseline was frozen with the configured phases; a
        # model made seasonal later (or re-cut) is compared as a whole until re-frozen.
        seasonal = season is not None and set(phased) == {f"{p:02d}" for p in range(season.phases)}
        phases = phased if seasonal else {"": whole}
        tests = sum(count_tests(p.items(), self.guardrails, model) for p in phases.values())
        baseline = _Baseline(baseline_id, phases, tests, seasonal)
        with self._lock:
            self._baselines = {k: v for k, v in self._baselines.items() if k in self._active_ids()}
            self._baselines[baseline_id] = baseline
        return baseline

    def _evaluator(
        self, baseline: _Baseline, phase: str, model: str, alpha_test: float, full: bool
    ) -> EffectEvaluator[SeriesKey]:
        key = (phase, alpha_test, full)
        with self._lock:
            found = baseline.evaluators.get(key)
        if found is None:  # built outside the lock; a concurrent twin is simply dropped
            built = build_evaluator(
                baseline.phases[phase], self.guardrails, model, alpha_test, full=full
            )
            with self._lock:
                found = baseline.evaluators.setdefault(key, built)
        return found

    def _active_ids(self) -> set[str]:
        return {known[0] for known in self._activations.values()}

    def _read_live(
        self,
        model: str,
        environment: str,
        baseline_id: str,
        start: float,
        now: float,
        season: Seasonality | None,
    ) -> dict[int, dict[SeriesId, State]]:
        """Live states of the epoch by group (phase, or 0): every bucket that started
        in [start, now]. Buckets that started more than ``seal_after`` seconds ago are
        merged once and kept; only the recent ones are read again at each check."""
        group: Callable[[int], int] = season.phase if season is not None else _zero
        key = (model, environment)
        first = math.ceil(start)
        through = math.floor(now) + 1  # every bucket that has started by now
        with self._lock:
            live = self._live.get(key)
        if live is None or (live.baseline_id, live.epoch_start) != (baseline_id, start):
            live = _Live(baseline_id, start, first, {})
        seal = max(live.sealed_through, min(through, math.floor(now - self.seal_after)))
        limit = self.guardrails.exact_limit_for
        if seal > live.sealed_through:
            newly = read_grouped(self._store, model, environment, live.sealed_through, seal, group)
            for g, series in newly.items():
                target = live.groups.setdefault(g, {})
                for sid, parts in series.items():
                    exact = limit(model, sid.kind, sid.signal)
                    merge_into(target, sid, merge_encoded(parts, exact_limit=exact))
            live.sealed_through = seal
        with self._lock:
            self._live[key] = live
        recent = read_grouped(self._store, model, environment, seal, through, group)
        out: dict[int, dict[SeriesId, State]] = {}
        for g in sorted(set(live.groups) | set(recent)):
            merged = {
                sid: merge_encoded(parts, exact_limit=limit(model, sid.kind, sid.signal))
                for sid, parts in recent.get(g, {}).items()
            }
            for sid, state in live.groups.get(g, {}).items():
                if sid in merged:
                    merge_into(merged, sid, state)  # merged holds fresh copies: safe to mutate
                else:
                    merged[sid] = copy_state(state)
            out[g] = merged
        return out

    def compare(
        self, model: str, environment: str, *, full: bool = False
    ) -> ComparisonResult | None:
        """Compare the live epoch with the active baseline; None without an active one.

        Findings hold the guarded effects; ``full`` asks for every effect (on-demand
        comparisons: the first one per baseline builds a second evaluator).
        """
        began = time.perf_counter()
        pointer = self._store.get_pointer(model, environment)
        if pointer.active is None:
            return None
        now = self._clock()
        start = self._epoch_start(model, environment, pointer, now)
        baseline = self._baseline(model, pointer.active)
        alpha = self.guardrails.alpha
        findings: list[SeriesFinding] = []
        alpha_test = alpha / baseline.tests if baseline.tests else alpha
        season = self.guardrails.seasonality(model) if baseline.seasonal else None
        groups = self._read_live(model, environment, baseline.id, start, now, season)
        if season is not None:
            for number, states in sorted(groups.items()):
                phase = f"{number:02d}"
                base = baseline.phases.get(phase)
                if base is None:
                    continue
                found, alpha_test = compare_states(
                    base,
                    states,
                    self.guardrails,
                    model,
                    alpha,
                    phase=phase,
                    tests=baseline.tests,
                    evaluator=self._evaluator(baseline, phase, model, alpha_test, full),
                )
                findings.extend(found)
        else:
            findings, alpha_test = compare_states(
                baseline.phases[""],
                groups.get(0, {}),
                self.guardrails,
                model,
                alpha,
                tests=baseline.tests,
                evaluator=self._evaluator(baseline, "", model, alpha_test, full),
            )
        if self.extra_findings is not None:
            findings = [
                *findings,
                *self.extra_findings(model, environment, baseline.id, start, now),
            ]
        return ComparisonResult(
            model=model,
            environment=environment,
            baseline_id=baseline.id,
            time=now,
            window_start=start,
            window_end=now,
            alpha_per_test=alpha_test,
            duration_seconds=time.perf_counter() - began,
            findings=tuple(findings),
        )
