"""The comparator: tiers from effects and guardrails, the alpha split, seasonality,
epochs, and the whole path through a real SQLite store, live windows and baselines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb

from sidecar.baselines import BaselineManager
from sidecar.compare import (
    Comparator,
    SeriesFinding,
    build_evaluator,
    compare_states,
    count_tests,
)
from sidecar.errors import FailedPrecondition
from sidecar.guardrails import LATENCY_P99_WEIGHT, Guardrails, Tier
from sidecar.records import Kind, SeriesId
from sidecar.series import CategoricalState, NumericState
from sidecar.settings import Settings
from sidecar.stats.effects import (
    CATEGORICAL_EFFECTS,
    NUMERIC_EFFECTS,
    categorical_effects,
    numeric_effects,
)
from sidecar.stores.sqlite import SQLiteStore
from sidecar.windows import Windows

DEFAULTS = Guardrails.load(None)
LAT = SeriesId("*", "*", Kind.LATENCY, "latency_seconds")
AMOUNT = SeriesId("*", "*", Kind.FEATURE, "amount")
COUNTRY = SeriesId("*", "*", Kind.FEATURE, "country")
DAY = 86400.0
T0 = 19675 * DAY  # midnight UTC, so phase 0 is the first hour
MODEL, ENV = "fraud", "prod"

State = NumericState | CategoricalState


def numeric(values: np.ndarray) -> NumericState:
    state = NumericState()
    state.add(values)
    return state


def categorical(values: Sequence[str]) -> CategoricalState:
    state = CategoricalState()
    state.add(list(values))
    return state


def countries(rng: np.random.Generator, n: int, new_share: float = 0.0) -> list[str]:
    values = rng.choice(["DE", "FR", "IT", "ES"], size=n, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    new = rng.random(n) < new_share
    return ["XX" if is_new else v for v, is_new in zip(values, new, strict=True)]


def states(
    seed: int,
    n: int,
    *,
    latency_scale: float = 1.0,
    amount_shift: float = 0.0,
    new_share: float = 0.0,
) -> dict[SeriesId, State]:
    rng = np.random.default_rng(seed)
    return {
        LAT: numeric(latency_scale * rng.lognormal(-3.0, 0.5, n)),
        AMOUNT: numeric(rng.normal(50.0 + 10.0 * amount_shift, 10.0, n)),
        COUNTRY: categorical(countries(rng, n, new_share)),
    }


def by_signal(findings: Sequence[SeriesFinding]) -> dict[str, SeriesFinding]:
    return {f.series.signal: f for f in findings}


def fired(finding: SeriesFinding) -> dict[str, Tier]:
    return {name: tier for name, tier, _ in finding.fired}


BASE = states(1, 50_000)


def test_no_change_raises_no_tier() -> None:
    for seed in (2, 3, 4):
        findings, _ = compare_states(BASE, states(seed, 10_000), DEFAULTS, MODEL, 0.01)
        assert len(findings) == 3
        assert [f.tier for f in findings] == [None, None, None], [f.fired for f in findings]
        assert all(f.baseline_count == 50_000 and f.live_count == 10_000 for f in findings)


def test_injected_shifts_fire_the_right_tier_and_effect() -> None:
    live = states(5, 20_000, latency_scale=1.17, amount_shift=0.5, new_share=0.15)
    findings, _ = compare_states(BASE, live, DEFAULTS, MODEL, 0.01)
    found = by_signal(findings)
    # Latency +17 % at every quantile: clears +10 % (moderate), not +25 % (severe).
    assert found["latency_seconds"].tier == Tier.MODERATE
    assert fired(found["latency_seconds"])["p50_rel"] == Tier.MODERATE
    p50 = found["latency_seconds"].effects["p50_rel"]
    assert 0.10 <= p50.lower <= 0.17 <= p50.upper
    # Half a standard deviation: KS ~0.20, severe (0.10).
    assert found["amount"].tier == Tier.SEVERE
    assert fired(found["amount"])["ks"] == Tier.SEVERE
    assert ("ks", Tier.SEVERE, 0.10) in found["amount"].fired
    # 15 % of live values are a country the baseline never saw.
    assert fired(found["country"])["new_category_share"] == Tier.SEVERE


def test_alpha_is_split_over_the_baselines_guarded_effects() -> None:
    # latency: p50/p90/p99_rel, missing_rate (4); numeric feature: ks, missing_rate,
    # out_of_range_rate (3); categorical feature: tvd, new_category_share, missing_rate (3).
    # Weighted: the latency p99 test counts LATENCY_P99_WEIGHT shares, the others one.
    assert count_tests(BASE.items(), DEFAULTS, MODEL) == 9 + LATENCY_P99_WEIGHT
    live = states(6, 1_000)
    _, alpha_test = compare_states(BASE, live, DEFAULTS, MODEL, 0.01)
    assert alpha_test == pytest.approx(0.01 / (9 + LATENCY_P99_WEIGHT))
    # Fixed by the baseline: live series that are missing, or unknown to it, change nothing.
    partial = {LAT: live[LAT], SeriesId("*", "*", Kind.FEATURE, "brand_new"): live[AMOUNT]}
    findings, alpha_test = compare_states(BASE, partial, DEFAULTS, MODEL, 0.01)
    assert alpha_test == pytest.approx(0.01 / (9 + LATENCY_P99_WEIGHT))
    assert [f.series for f in findings] == [LAT]
    # The phases of a seasonal comparison are all tests of one family.
    _, alpha_test = compare_states(BASE, live, DEFAULTS, MODEL, 0.01, phase="03", tests=240)
    assert alpha_test == pytest.approx(0.01 / 240)


def test_empty_live_series_give_no_finding() -> None:
    findings, _ = compare_states(BASE, {AMOUNT: NumericState()}, DEFAULTS, MODEL, 0.01)
    assert findings == []


def daily(rng: np.random.Generator, hour: int, n: int) -> np.ndarray:
    """A feature whose mean follows the hour of day (a benign daily cycle)."""
    return rng.normal(50.0 + 10.0 * np.sin(2 * np.pi * hour / 24), 5.0, n)


def test_a_daily_cycle_alarms_unless_compared_phase_by_phase() -> None:
    rng = np.random.default_rng(11)
    base_phases = {h: {AMOUNT: numeric(daily(rng, h, 3_000))} for h in range(24)}
    whole = numeric(np.concatenate([s[AMOUNT]._sorted_values() for s in base_phases.values()]))
    tests = sum(count_tests(p.items(), DEFAULTS, MODEL) for p in base_phases.values())
    # The next morning, hour by hour: the cumulative live data of hours 0..5.
    live_phases = {h: {AMOUNT: numeric(daily(rng, h, 3_000))} for h in range(6)}
    for h, live in live_phases.items():
        findings, _ = compare_states(
            base_phases[h], live, DEFAULTS, MODEL, 0.01, phase=f"{h:02d}", tests=tests
        )
        assert [(f.phase, f.tier) for f in findings] == [(f"{h:02d}", None)]
    # The same traffic against the whole day at once looks like a large shift.
    morning = numeric(np.concatenate([s[AMOUNT]._sorted_values() for s in live_phases.values()]))
    findings, _ = compare_states({AMOUNT: whole}, {AMOUNT: morning}, DEFAULTS, MODEL, 0.01)
    assert findings[0].tier == Tier.SEVERE


# -- the Comparator, end to end ------------------------------------------------------


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, guardrails: Guardrails, bucket_seconds: int = 60) -> None:
        self.clock = FakeClock(T0)
        settings = Settings.resolve(
            {"store": ":memory:", "instance": "test", "bucket_seconds": bucket_seconds}, env={}
        )
        self.store = SQLiteStore(":memory:", clock=self.clock)
        self.windows = Windows(settings, self.store, clock=self.clock)
        self.manager = BaselineManager(
            self.store, self.windows, clock=self.clock, seasonality_for=guardrails.seasonality
        )
        self.comparator = Comparator(self.store, self.windows, guardrails, clock=self.clock)

    def ingest(self, amount: np.ndarray, latency: np.ndarray | None = None) -> None:
        """Rows stamped now, in batches of 1,000."""
        if latency is None:
            latency = np.full(len(amount), 0.05)
        for i in range(0, len(amount), 1000):
            batch = pb.SampleBatch(
                model=MODEL,
                version="v1",
                environment=ENV,
                timestamps=[self.clock.now] * len(amount[i : i + 1000]),
            )
            batch.numeric.append(
                pb.NumericColumn(
                    name="amount", kind=pb.SIGNAL_KIND_FEATURE, values=amount[i : i + 1000].tolist()
                )
            )
            batch.numeric.append(
                pb.NumericColumn(
                    name="latency_seconds",
                    kind=pb.SIGNAL_KIND_LATENCY,
                    values=latency[i : i + 1000].tolist(),
                )
            )
            self.windows.ingest(batch)

    def compare(self) -> Tier | None:
        self.windows.flush()
        result = self.comparator.compare(MODEL, ENV)
        assert result is not None
        return result.tier


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(DEFAULTS)
    yield r
    r.store.close()


def test_comparator_end_to_end_with_epochs(rig: Rig) -> None:
    rng = np.random.default_rng(21)
    assert rig.comparator.compare(MODEL, ENV) is None  # no active baseline yet
    assert rig.comparator.targets() == []
    rig.ingest(rng.normal(50.0, 10.0, 20_000), rng.lognormal(-3.0, 0.5, 20_000))
    rig.clock.now += 120
    record = rig.manager.freeze(MODEL, ENV, "ref", "first", "alice", start=0, end=0)
    rig.clock.now += 60
    rig.manager.promote(record.id, "go", "alice")
    activated = rig.clock.now
    assert rig.comparator.targets() == [(MODEL, ENV)]

    # Unchanged traffic over a few checks: nothing fires.
    for _ in range(3):
        rig.clock.now += 60
        rig.ingest(rng.normal(50.0, 10.0, 3_000), rng.lognormal(-3.0, 0.5, 3_000))
        assert rig.compare() is None
    result = rig.comparator.compare(MODEL, ENV)
    assert result is not None
    assert (result.baseline_id, result.window_start, result.window_end) == (
        record.id,
        activated,
        rig.clock.now,
    )
    assert {f.series for f in result.findings} == {AMOUNT, LAT}
    assert [f.live_count for f in result.findings] == [9_000, 9_000]
    assert result.alpha_per_test == pytest.approx(0.01 / (6 + LATENCY_P99_WEIGHT))

    # A shift of the feature: the cumulative epoch catches it.
    rig.clock.now += 60
    rig.ingest(rng.normal(60.0, 10.0, 20_000), rng.lognormal(-3.0, 0.5, 20_000))
    assert rig.compare() == Tier.SEVERE

    # A change event starts a new epoch: the shifted rows no longer count.
    rig.clock.now += 60
    rig.comparator.reset_epoch(MODEL, ENV, rig.clock.now)
    rig.clock.now += 60
    rig.ingest(rng.normal(50.0, 10.0, 5_000), rng.lognormal(-3.0, 0.5, 5_000))
    assert rig.compare() is None


def test_sealed_buckets_are_merged_once_and_give_the_same_answer() -> None:
    rig = Rig(DEFAULTS)
    eager = Comparator(rig.store, rig.windows, DEFAULTS, clock=rig.clock, seal_after=0.0)
    rng = np.random.default_rng(23)
    rig.ingest(rng.normal(50.0, 10.0, 20_000))
    rig.clock.now += 60
    record = rig.manager.freeze(MODEL, ENV, "ref", "first", "alice", start=0, end=0)
    rig.manager.promote(record.id, "go", "alice")
    for step in range(1, 6):
        rig.clock.now += 60
        rig.ingest(rng.normal(50.0 + step, 10.0, 2_000))
        rig.windows.flush()
        fresh, cached = rig.comparator.compare(MODEL, ENV), eager.compare(MODEL, ENV)
        assert fresh is not None and cached is not None
        for a, b in zip(fresh.findings, cached.findings, strict=True):
            assert (a.series, a.live_count, a.tier) == (b.series, step * 2_000, b.tier)
            assert a.effects.keys() == b.effects.keys()
            for name, effect in a.effects.items():
                assert effect.estimate == pytest.approx(b.effects[name].estimate), name
    rig.store.close()


def test_findings_hold_the_guarded_effects_as_the_reference_functions_give_them() -> None:
    live = states(7, 10_000, latency_scale=1.05)
    tests = count_tests(BASE.items(), DEFAULTS, MODEL)
    findings, alpha_test = compare_states(BASE, live, DEFAULTS, MODEL, 0.01)
    found = by_signal(findings)
    assert set(found["latency_seconds"].effects) == {
        "p50_rel",
        "p90_rel",
        "p99_rel",
        "missing_rate",
    }
    assert set(found["amount"].effects) == {"ks", "missing_rate", "out_of_range_rate"}
    assert set(found["country"].effects) == {"tvd", "new_category_share", "missing_rate"}
    for sid, finding in found.items():
        b, lv = BASE[finding.series], live[finding.series]
        if isinstance(b, NumericState) and isinstance(lv, NumericState):
            # One-sided guardrails get one-sided quantile ends (effects.end_alpha).
            rails = DEFAULTS.for_state(MODEL, finding.series.kind, finding.series.signal, False)
            directions = {rail.effect: rail.direction for rail in rails}
            weights = {rail.effect: rail.weight for rail in rails}  # weighted alpha shares
            ref = numeric_effects(
                b,
                lv,
                lambda n, w=weights: alpha_test * w.get(n, 1.0),
                only=tuple(finding.effects),
                direction_for=lambda n, d=directions: d.get(n, "both"),
            )
        else:
            assert isinstance(b, CategoricalState) and isinstance(lv, CategoricalState)
            ref = categorical_effects(b, lv, lambda _n: alpha_test)
        for name, effect in finding.effects.items():
            for field in ("estimate", "lower", "upper"):
                assert getattr(effect, field) == pytest.approx(
                    getattr(ref[name], field), rel=1e-9, abs=1e-12, nan_ok=True
                ), (sid, name, field)
    # A prebuilt evaluator (as the Comparator caches per baseline) gives the same findings;
    # a full one every effect of the type, at the same alpha per test.
    evaluator = build_evaluator(BASE, DEFAULTS, MODEL, 0.01 / tests)
    again, _ = compare_states(BASE, live, DEFAULTS, MODEL, 0.01, evaluator=evaluator)
    assert [(f.series, f.tier, f.effects) for f in again] == [
        (f.series, f.tier, f.effects) for f in findings
    ]
    full = build_evaluator(BASE, DEFAULTS, MODEL, 0.01 / tests, full=True)
    every, _ = compare_states(BASE, live, DEFAULTS, MODEL, 0.01, evaluator=full)
    assert set(by_signal(every)["amount"].effects) == set(NUMERIC_EFFECTS)
    assert set(by_signal(every)["country"].effects) == set(CATEGORICAL_EFFECTS)
    assert [f.tier for f in every] == [f.tier for f in findings]


def test_a_series_without_guardrails_is_listed_without_effects(tmp_path: Path) -> None:
    config = tmp_path / "guardrails.toml"
    config.write_text(
        "".join(
            f"[models.{MODEL}.signals.amount.{name}]\nenabled = false\n"
            for name in ("ks", "missing_rate", "out_of_range_rate")
        )
    )
    rails = Guardrails.load(config)
    findings, _ = compare_states(BASE, states(8, 5_000, amount_shift=1.0), rails, MODEL, 0.01)
    amount = by_signal(findings)["amount"]
    assert (amount.effects, amount.tier, amount.live_count) == ({}, None, 5_000)
    assert by_signal(findings)["latency_seconds"].effects


def test_epochs_restart_when_older_than_max_epoch_age() -> None:
    rig = Rig(DEFAULTS.replace(max_epoch_age=600.0))
    rng = np.random.default_rng(22)
    rig.ingest(rng.normal(50.0, 10.0, 20_000))
    rig.clock.now += 60
    record = rig.manager.freeze(MODEL, ENV, "ref", "first", "alice", start=0, end=0)
    rig.manager.promote(record.id, "go", "alice")
    rig.clock.now += 30
    rig.ingest(rng.normal(60.0, 10.0, 20_000))  # a shift, then recovery
    assert rig.compare() == Tier.SEVERE
    rig.clock.now += 700
    rig.ingest(rng.normal(50.0, 10.0, 5_000))
    assert rig.comparator.epoch_start(MODEL, ENV) == T0 + 60 + 600
    assert rig.compare() is None
    rig.store.close()


def seasonal_day(
    rig: Rig, rng: np.random.Generator, day: float, hours: range, n: int = 2_000
) -> None:
    """Ingest ``n`` rows of the daily-cycle feature in the middle of each hour of ``day``."""
    for h in hours:
        rig.clock.now = day + h * 3600 + 1800
        rig.ingest(daily(rng, h, n))


def test_seasonal_baseline_compares_phase_by_phase() -> None:
    seasonal = Guardrails.from_mapping(
        {"models": {MODEL: {"seasonality": {"period": DAY, "phases": 24}}}}
    )
    rig = Rig(seasonal, bucket_seconds=3600)
    rng = np.random.default_rng(31)
    seasonal_day(rig, rng, T0, range(12))
    # Half a day is not a whole period: refused, naming the period.
    with pytest.raises(FailedPrecondition, match="period 86400 s"):
        rig.manager.freeze(MODEL, ENV, "half", "", "alice", start=T0, end=T0 + DAY / 2)
    seasonal_day(rig, rng, T0, range(12, 24))
    rig.clock.now = T0 + DAY
    record = rig.manager.freeze(MODEL, ENV, "day", "", "alice", start=T0, end=T0 + DAY)
    stored = rig.store.get_baseline_series(record.id)
    assert SeriesId("*", "*@07", Kind.FEATURE, "amount").encode() in stored
    rig.manager.promote(record.id, "go", "alice")
    # The next morning, phase by phase: the cycle is expected, nothing fires.
    seasonal_day(rig, rng, T0 + DAY, range(6))
    rig.windows.flush()
    result = rig.comparator.compare(MODEL, ENV)
    assert result is not None and result.tier is None
    assert sorted({f.phase for f in result.findings}) == [f"{h:02d}" for h in range(6)]
    assert result.alpha_per_test == pytest.approx(0.01 / (24 * (6 + LATENCY_P99_WEIGHT)))
    # Without seasonality the same baseline and traffic compare as a whole, and alarm.
    plain = Comparator(rig.store, rig.windows, DEFAULTS, clock=rig.clock)
    result = plain.compare(MODEL, ENV)
    assert result is not None and result.tier == Tier.SEVERE
    assert {f.phase for f in result.findings} == {""}
    rig.store.close()
