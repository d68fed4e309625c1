"""Seeded streams for the statistical acceptance simulations.

A simulated model has four signals, like a small real one: a normal feature
``x``, an output ``score`` in [0, 1], a lognormal ``latency_ms`` and a
categorical feature ``country``. Streams are compared with the engine's own
:func:`~sidecar.compare.compare_states` on states built exactly as the windows
build them (``NumericState`` / ``CategoricalState``), checked as live data
accumulates over the epoch, with the family alpha split the comparator uses.

Changes are injected by a transformation drawing from its own generator, so a
scenario's no-change twin (same seed, no injection) sees the very same stream.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from scipy import stats

from sidecar.alerts import Alerter
from sidecar.compare import (
    ComparisonResult,
    SeriesFinding,
    State,
    compare_states,
    count_tests,
)
from sidecar.guardrails import Guardrails, Tier
from sidecar.records import Kind, SeriesId
from sidecar.series import CategoricalState, NumericState
from sidecar.settings import Settings

__all__ = [
    "COUNTRY",
    "LATENCY",
    "MODEL",
    "SCENARIOS",
    "SCORE",
    "Columns",
    "Outcome",
    "Scenario",
    "X",
    "clopper_pearson",
    "draw",
    "parallel_map",
    "run_stream",
    "seasonal_stream",
]

MODEL = "sim"
X = SeriesId("*", "*", Kind.FEATURE, "x")
SCORE = SeriesId("*", "*", Kind.OUTPUT, "score")
LATENCY = SeriesId("*", "*", Kind.LATENCY, "latency_ms")
COUNTRY = SeriesId("*", "*", Kind.FEATURE, "country")

_COUNTRIES = ("US", "DE", "FR", "GB", "IN", "BR", "JP", "ES", "IT", "NL")
_COUNTRY_P = np.array([1.0 / (i + 1) for i in range(len(_COUNTRIES))])
_COUNTRY_P /= _COUNTRY_P.sum()
_LAT_MU = math.log(20.0)
_LAT_SIGMA = 0.5
_DAY_HOURS = 24.0

_SETTINGS = Settings(instance="sim")

_T = TypeVar("_T")
Columns = dict[SeriesId, npt.NDArray[np.float64] | list[str]]
Injection = Callable[[Columns, np.random.Generator], None]


def draw(rng: np.random.Generator, n: int, hours: npt.NDArray[np.float64] | None = None) -> Columns:
    """``n`` samples of the four signals; with ``hours`` (hour of day per sample)
    every signal follows a benign daily cycle."""
    phase = np.zeros(n) if hours is None else np.sin(2 * np.pi * hours / _DAY_HOURS)
    x = rng.standard_normal(n) + 0.5 * phase
    score = rng.beta(2.0 + phase, 5.0)
    latency = np.exp(_LAT_MU + 0.2 * phase + _LAT_SIGMA * rng.standard_normal(n))
    if hours is None:
        idx = rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_P)
    else:
        # Night-time traffic leans to the first country.
        u = rng.random(n)
        idx = rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_P)
        idx = np.where(u < 0.2 * (1 + phase) / 2, 0, idx)
    names = np.array(_COUNTRIES)[idx].tolist()
    return {X: x, SCORE: score, LATENCY: latency, COUNTRY: names}


def new_states(
    guardrails: Guardrails | None = None, exact_limit: int | None = None
) -> dict[SeriesId, State]:
    """Empty states of the four series, configured as the windows configure them.

    With ``guardrails`` they are live states as the comparator merges an epoch's
    buckets (each bucket exact: a check's worth of values): a series with a
    quantile guardrail keeps ``guardrails.live_exact_limit`` values exactly. With
    ``exact_limit`` every numeric series keeps that many (a what-if for baselines).
    """
    s = _SETTINGS

    def numeric(sid: SeriesId) -> NumericState:
        limit = s.exact_limit if exact_limit is None else exact_limit
        if guardrails is not None:
            limit = max(limit, guardrails.exact_limit_for(MODEL, sid.kind, sid.signal) or 0)
        return NumericState(s.compression, limit)

    return {
        X: numeric(X),
        SCORE: numeric(SCORE),
        LATENCY: numeric(LATENCY),
        COUNTRY: CategoricalState(s.categorical_capacity),
    }


def add(states: Mapping[SeriesId, State], columns: Columns) -> None:
    """Add one chunk of columns to the states (in bulk, as ingest does)."""
    for sid, values in columns.items():
        state = states[sid]
        if isinstance(state, NumericState):
            assert isinstance(values, np.ndarray)
            state.add(values)
        else:
            assert isinstance(values, list)
            state.add(values)


# -- injected changes ---------------------------------------------------------------


def mean_shift(sd: float) -> Injection:
    """Shift the normal feature ``x`` by ``sd`` standard deviations."""

    def inject(columns: Columns, _rng: np.random.Generator) -> None:
        x = columns[X]
        assert isinstance(x, np.ndarray)
        columns[X] = x + sd

    return inject


def new_category(share: float) -> Injection:
    """A country never seen in the baseline takes ``share`` of the traffic."""

    def inject(columns: Columns, rng: np.random.Generator) -> None:
        names = columns[COUNTRY]
        assert isinstance(names, list)
        hit = rng.random(len(names)) < share
        columns[COUNTRY] = ["ZZ" if h else v for h, v in zip(hit.tolist(), names, strict=True)]

    return inject


def missing(rate: float) -> Injection:
    """``rate`` of the feature ``x`` goes missing (NaN)."""

    def inject(columns: Columns, rng: np.random.Generator) -> None:
        x = columns[X]
        assert isinstance(x, np.ndarray)
        columns[X] = np.where(rng.random(x.size) < rate, np.nan, x)

    return inject


def tail_stretch(p99_rel: float) -> Injection:
    """Stretch the latency above its true p90 so that p99 grows by ``p99_rel``
    while p50 and p90 stay where they were (a monotone map of the upper 10 %)."""
    q90 = math.exp(_LAT_MU + _LAT_SIGMA * stats.norm.ppf(0.90))
    q99 = math.exp(_LAT_MU + _LAT_SIGMA * stats.norm.ppf(0.99))
    power = 1.0 + math.log1p(p99_rel) / math.log(q99 / q90)

    def inject(columns: Columns, _rng: np.random.Generator) -> None:
        lat = columns[LATENCY]
        assert isinstance(lat, np.ndarray)
        columns[LATENCY] = np.where(lat > q90, q90 * (lat / q90) ** power, lat)

    return inject


@dataclass(frozen=True)
class Scenario:
    """One injected change: where, how big, the baseline size and the acceptance limit."""

    name: str
    series: SeriesId
    inject: Injection
    baseline: int
    limit: int  # live samples after the change within which it must be detected
    step: int  # live samples between checks


SCENARIOS: dict[str, Scenario] = {
    "mean +0.2 SD": Scenario("mean +0.2 SD", X, mean_shift(0.2), 50_000, 10_000, 500),
    "new category 3%": Scenario("new category 3%", COUNTRY, new_category(0.03), 50_000, 4_000, 250),
    "missing 0% -> 2%": Scenario("missing 0% -> 2%", X, missing(0.02), 50_000, 10_000, 500),
    "latency p99 +10%": Scenario(
        "latency p99 +10%", LATENCY, tail_stretch(0.10), 200_000, 100_000, 2_000
    ),
}
"""The issue's acceptance scenarios (item 2)."""


@dataclass(frozen=True)
class Outcome:
    """What a stream raised: the first alert (live samples seen, series, tier, effects) or
    none, and ``raised``: the first check where any series cleared any tier, alert or not
    (the strict criterion of the false-alarm test), described."""

    detected_at: int | None
    series: SeriesId | None
    tier: Tier | None
    effects: tuple[str, ...]
    checks: int
    raised: str = ""

    def describe(self) -> str:
        if self.detected_at is None:
            return f"nothing in {self.checks} checks" + (
                f" (but {self.raised})" if self.raised else ""
            )
        assert self.series is not None and self.tier is not None
        return (
            f"{self.tier.name.lower()} alert on {self.series.signal} ({', '.join(self.effects)}) "
            f"after {self.detected_at} live samples"
        )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_stream(
    seed: int,
    guardrails: Guardrails,
    *,
    baseline: int,
    live: int,
    step: int,
    inject: Injection | None = None,
    baseline_exact_limit: int | None = None,
) -> Outcome:
    """A stationary stream: freeze ``baseline`` samples, then check every ``step``
    live samples (with ``inject`` applied to live data) up to ``live``, observing
    each comparison with the alert lifecycle (``consecutive`` checks in a row).
    Returns the first alert that fires. ``baseline_exact_limit`` keeps that many
    baseline values exactly (a what-if: frozen baselines keep the setting's limit)."""
    rng = np.random.default_rng(seed)
    injection_rng = np.random.default_rng([seed, 1])
    base = new_states(exact_limit=baseline_exact_limit)
    for start in range(0, baseline, 50_000):
        add(base, draw(rng, min(50_000, baseline - start)))
    tests = count_tests(base.items(), guardrails, MODEL)
    live_states = new_states(guardrails)
    clock = _Clock()
    alerter = Alerter(
        clock=clock,
        consecutive=guardrails.consecutive,
        resolve_after=guardrails.resolve_after,
        cooldown=guardrails.cooldown,
        alpha=guardrails.alpha,
    )
    seen = checks = 0
    raised = ""
    while seen < live:
        n = min(step, live - seen)
        columns = draw(rng, n)
        if inject is not None:
            inject(columns, injection_rng)
        add(live_states, columns)
        seen += n
        checks += 1
        clock.now += 10.0
        findings, alpha_test = compare_states(
            base, live_states, guardrails, MODEL, guardrails.alpha, tests=tests
        )
        result = ComparisonResult(
            model=MODEL,
            environment="sim",
            baseline_id="b-sim",
            time=clock.now,
            window_start=0.0,
            window_end=clock.now,
            alpha_per_test=alpha_test,
            duration_seconds=0.0,
            findings=tuple(findings),
        )
        if not raised:
            raised = _describe_hits(findings, f"check {checks} ({seen} live)")
        fired = [a for a in alerter.observe(result) if a.firing]
        if fired:
            first = fired[0]
            finding = first.findings[0]
            return Outcome(
                seen,
                finding.series,
                first.tier,
                tuple(e for e, _, _ in finding.fired),
                checks,
                raised,
            )
    return Outcome(None, None, None, (), checks, raised)


def _describe_hits(findings: list[SeriesFinding], where: str) -> str:
    """The first finding that cleared a tier, with its intervals; "" when none did."""
    for f in findings:
        if f.tier is not None:
            effects = ", ".join(
                f"{e} {f.effects[e].estimate:.4g} [{f.effects[e].lower:.4g}, "
                f"{f.effects[e].upper:.4g}] vs {g:g}"
                for e, _, g in f.fired
            )
            phase = f" phase {f.phase}" if f.phase else ""
            return f"{where}{phase}: {f.tier.name.lower()} on {f.series.signal}: {effects}"
    return ""


def seasonal_stream(
    seed: int,
    guardrails: Guardrails,
    *,
    baseline_days: int,
    per_phase: int,
    checks: int,
    live_per_check: int,
    seasonal: bool = True,
) -> tuple[int, str]:
    """A stream with a benign daily cycle in baseline and live traffic.

    The baseline covers ``baseline_days`` whole days with ``per_phase`` samples
    per hour of day; live traffic then arrives over one day in ``checks`` equal
    steps. With ``seasonal`` each check compares the phase (hour of day) of the
    live data with the same phase of the baseline, all 24 phases being tests of
    the family, as the comparator does; without, the cumulative live data is
    compared with the whole-day baseline. Returns (checks that raised any tier,
    the first finding's description or "").
    """
    rng = np.random.default_rng(seed)
    phases = 24
    base_phase = [new_states() for _ in range(phases)]
    whole = new_states()
    for _ in range(baseline_days):
        for p in range(phases):
            hours = p + rng.random(per_phase)
            columns = draw(rng, per_phase, hours)
            add(base_phase[p], columns)
            add(whole, columns)
    if seasonal:
        tests = sum(count_tests(s.items(), guardrails, MODEL) for s in base_phase)
    else:
        tests = count_tests(whole.items(), guardrails, MODEL)
    live_phase = [new_states(guardrails) for _ in range(phases)]
    live_whole = new_states(guardrails)
    step_hours = _DAY_HOURS / checks
    raised = 0
    first = ""
    for c in range(checks):
        hours = c * step_hours + step_hours * rng.random(live_per_check)
        p = int((c * step_hours) // 1.0)
        columns = draw(rng, live_per_check, hours)
        if seasonal:
            add(live_phase[p], columns)
            # Only this phase changed since the last check; the other phases'
            # findings are the same as before, so comparing this one suffices.
            findings, _ = compare_states(
                base_phase[p],
                live_phase[p],
                guardrails,
                MODEL,
                guardrails.alpha,
                phase=f"{p:02d}",
                tests=tests,
            )
        else:
            add(live_whole, columns)
            findings, _ = compare_states(
                whole, live_whole, guardrails, MODEL, guardrails.alpha, tests=tests
            )
        hit = _describe_hits(findings, f"check {c}")
        if hit:
            raised += 1
            first = first or hit
    return raised, first


def parallel_map(func: Callable[[int], _T], seeds: Sequence[int]) -> list[_T]:
    """``[func(seed) for seed in seeds]`` over the machine's cores (at most 4 processes;
    the streams are independent and CPU-bound). ``func`` must be picklable."""
    workers = min(4, os.cpu_count() or 1, len(seeds))
    if workers <= 1:
        return [func(seed) for seed in seeds]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(func, seeds, chunksize=max(1, len(seeds) // (8 * workers))))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval of k successes in n trials."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)
