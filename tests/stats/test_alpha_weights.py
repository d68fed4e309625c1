"""Weighted alpha shares and exact live merges (issue 3, acceptance 2's levers).

- Guardrail weights split the family's alpha by weighted Bonferroni: a test of
  weight w gets alpha x w / (sum of the weights), so the tests' alphas still add
  up to alpha; the weights come from the guardrails config and are validated.
- The comparator merges a live series with a quantile guardrail with a raised
  exact limit, so exact buckets stay exact past the per-bucket limit (no digest
  slack), and a digest part still gives a digest.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import baselined.v1.baselined_pb2 as pb
import numpy as np
import pytest

from sidecar.baselines import BaselineManager
from sidecar.compare import Comparator, build_evaluator, compare_states, count_tests
from sidecar.errors import ConfigError
from sidecar.guardrails import LATENCY_P99_WEIGHT, LIVE_EXACT_LIMIT, Guardrails
from sidecar.records import Kind, SeriesId
from sidecar.series import NumericState, merge_encoded
from sidecar.settings import Settings
from sidecar.stores.sqlite import SQLiteStore
from sidecar.windows import Windows

LAT = SeriesId("*", "*", Kind.LATENCY, "latency_ms")
AMOUNT = SeriesId("*", "*", Kind.FEATURE, "amount")
MODEL, ENV = "m", "prod"


def _numeric(values: np.ndarray, exact_limit: int = 65_536) -> NumericState:
    state = NumericState(1000, exact_limit)
    state.add(values)
    return state


# ------------------------------------------------------------------------- weights


def test_default_latency_p99_weight_and_weighted_family() -> None:
    g = Guardrails.load(None)
    rails = {r.effect: r.weight for r in g.for_series(MODEL, Kind.LATENCY, "lat")}
    assert rails == {
        "p50_rel": 1.0,
        "p90_rel": 1.0,
        "p99_rel": LATENCY_P99_WEIGHT,
        "missing_rate": 1.0,
    }
    rng = np.random.default_rng(0)
    base = {LAT: _numeric(rng.lognormal(3.0, 0.5, 5_000)), AMOUNT: _numeric(rng.normal(size=5_000))}
    tests = count_tests(base.items(), g, MODEL)
    # latency: 3 tests of weight 1 and p99 of weight 4; feature: ks, missing, out of range.
    assert tests == 3 + LATENCY_P99_WEIGHT + 3
    live = {LAT: _numeric(rng.lognormal(3.0, 0.5, 2_000))}
    _, alpha_unit = compare_states(base, live, g, MODEL, 0.01)
    assert alpha_unit == pytest.approx(0.01 / tests)
    # The evaluator gives each test alpha_unit x its weight: the alphas add up to alpha.
    evaluator = build_evaluator(base, g, MODEL, alpha_unit)
    key = ("*", Kind.LATENCY, "latency_ms")
    p99 = evaluator._numeric[key].alpha["p99_rel"]
    p50 = evaluator._numeric[key].alpha["p50_rel"]
    assert p99 == pytest.approx(LATENCY_P99_WEIGHT * p50)
    total = sum(
        a for nb in evaluator._numeric.values() for name, a in nb.alpha.items() if name in nb.want
    )
    assert total == pytest.approx(0.01)


def test_a_heavier_weight_gives_a_tighter_interval() -> None:
    rng = np.random.default_rng(1)
    base = {LAT: _numeric(rng.lognormal(3.0, 0.5, 50_000))}
    live = {LAT: _numeric(rng.lognormal(3.0, 0.5, 30_000))}
    widths = []
    for weight in (1, 8):
        g = Guardrails.from_mapping({"guardrails": {"latency": {"p99_rel": {"weight": weight}}}})
        findings, _ = compare_states(base, live, g, MODEL, 0.01)
        effect = findings[0].effects["p99_rel"]
        widths.append(effect.estimate - effect.lower)
    assert widths[1] < 0.95 * widths[0], widths


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"guardrails": {"latency": {"p99_rel": {"weight": 0}}}},
            "guardrails.latency.p99_rel.weight",
        ),
        ({"guardrails": {"feature": {"ks": {"weight": -2.0}}}}, "guardrails.feature.ks.weight"),
        ({"guardrails": {"feature": {"ks": {"weight": "x"}}}}, "guardrails.feature.ks.weight"),
        (
            {"models": {"m": {"signals": {"lat": {"p99_rel": {"weight": math.inf}}}}}},
            "p99_rel.weight",
        ),
        ({"live_exact_limit": -1}, "live_exact_limit"),
        ({"live_exact_limit": 1.5}, "live_exact_limit"),
        ({"live_exact_limit": True}, "live_exact_limit"),
    ],
)
def test_bad_weights_and_limits_are_refused_naming_the_field(
    data: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        Guardrails.from_mapping(data)


def test_per_signal_weight_override() -> None:
    g = Guardrails.from_mapping(
        {"models": {"m": {"signals": {"lat": {"p50_rel": {"weight": 2.5}}}}}}
    )
    rails = {r.effect: r.weight for r in g.for_series("m", Kind.LATENCY, "lat")}
    assert rails["p50_rel"] == 2.5 and rails["p99_rel"] == LATENCY_P99_WEIGHT
    other = {r.effect: r.weight for r in g.for_series("other", Kind.LATENCY, "lat")}
    assert other["p50_rel"] == 1.0


# ------------------------------------------------------------------------- exact live merges


def test_exact_limit_for_quantile_guarded_series_only() -> None:
    g = Guardrails.load(None)
    assert g.exact_limit_for(MODEL, Kind.LATENCY, "lat") == LIVE_EXACT_LIMIT
    assert g.exact_limit_for(MODEL, Kind.RESOURCE, "gpu") == LIVE_EXACT_LIMIT
    assert g.exact_limit_for(MODEL, Kind.FEATURE, "x") is None  # ks: a CDF, not a quantile
    assert (
        Guardrails.from_mapping({"live_exact_limit": 0}).exact_limit_for(MODEL, Kind.LATENCY, "lat")
        is None
    )


def test_merge_encoded_with_a_raised_limit_stays_exact() -> None:
    rng = np.random.default_rng(2)
    chunks = [rng.lognormal(3.0, 0.5, 40_000) for _ in range(4)]  # 160,000 values
    blobs = [_numeric(c).encode() for c in chunks]
    plain = merge_encoded(blobs)
    assert isinstance(plain, NumericState) and not plain.is_exact  # past 65,536: a digest
    exact = merge_encoded(blobs, exact_limit=200_000)
    assert isinstance(exact, NumericState) and exact.is_exact and exact.count == 160_000
    levels = np.array([0.5, 0.9, 0.99, 0.999])
    truth = np.quantile(np.concatenate(chunks), levels)
    np.testing.assert_allclose(exact.quantiles(levels), truth, rtol=1e-12)
    # Beyond the raised limit, or with a digest part, the result is a digest.
    assert not merge_encoded(blobs, exact_limit=100_000).is_exact  # type: ignore[union-attr]
    digest_part = _numeric(chunks[0], exact_limit=0).encode()
    mixed = merge_encoded([*blobs[:2], digest_part], exact_limit=1_000_000)
    assert isinstance(mixed, NumericState) and not mixed.is_exact


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path: object) -> Iterator[tuple[_Clock, SQLiteStore, Windows, BaselineManager]]:
    clock = _Clock(19675 * 86400.0)
    settings = Settings.resolve(
        {"store": ":memory:", "instance": "test", "bucket_seconds": 60}, env={}
    )
    store = SQLiteStore(":memory:", clock=clock)
    windows = Windows(settings, store, clock=clock)
    manager = BaselineManager(store, windows, clock=clock)
    yield clock, store, windows, manager
    store.close()


def _ingest(windows: Windows, now: float, latency: np.ndarray, amount: np.ndarray) -> None:
    for i in range(0, len(latency), 5_000):
        batch = pb.SampleBatch(
            model=MODEL,
            version="v1",
            environment=ENV,
            timestamps=[now] * len(latency[i : i + 5_000]),
        )
        batch.numeric.append(
            pb.NumericColumn(
                name="latency_ms",
                kind=pb.SIGNAL_KIND_LATENCY,
                values=latency[i : i + 5_000].tolist(),
            )
        )
        batch.numeric.append(
            pb.NumericColumn(
                name="amount", kind=pb.SIGNAL_KIND_FEATURE, values=amount[i : i + 5_000].tolist()
            )
        )
        windows.ingest(batch)


@pytest.mark.parametrize("seal_after", [600.0, 0.0])
def test_comparator_keeps_quantile_guarded_live_series_exact(
    rig: tuple[_Clock, SQLiteStore, Windows, BaselineManager], seal_after: float
) -> None:
    """Real SQLite store and windows: three buckets of 30,000 latency values each
    (every bucket exact) compare as one exact live state of 90,000 values, so the
    p99 interval carries no digest slack; with ``live_exact_limit = 0`` the same
    epoch is a digest and the interval is wider."""
    clock, store, windows, manager = rig
    rng = np.random.default_rng(3)
    _ingest(windows, clock.now, rng.lognormal(3.0, 0.5, 20_000), rng.normal(size=20_000))
    clock.now += 120
    record = manager.freeze(MODEL, ENV, "ref", "", "alice", start=0, end=0)
    clock.now += 60
    manager.promote(record.id, "go", "alice")
    live_values = []
    for _ in range(3):
        clock.now += 60
        values = rng.lognormal(3.0, 0.5, 30_000)
        live_values.append(values)
        _ingest(windows, clock.now, values, rng.normal(size=30_000))
    windows.flush()
    clock.now += 700  # the first buckets are sealed when seal_after = 0 or 600
    lowers = {}
    for limit in (LIVE_EXACT_LIMIT, 0):
        g = Guardrails.from_mapping({"live_exact_limit": limit})
        comparator = Comparator(store, windows, g, clock=clock, seal_after=seal_after)
        result = comparator.compare(MODEL, ENV)
        assert result is not None
        (lat,) = [f for f in result.findings if f.series.signal == "latency_ms"]
        assert lat.live_count == 90_000
        lowers[limit] = lat.effects["p99_rel"]
        # The live state the comparator read, through the same merge it uses.
        groups = comparator._read_live(MODEL, ENV, record.id, result.window_start, clock.now, None)
        state = groups[0][SeriesId("*", "*", Kind.LATENCY, "latency_ms")]
        assert isinstance(state, NumericState)
        assert state.is_exact == (limit > 0)
        if limit:
            np.testing.assert_allclose(
                state.quantiles([0.99]), np.quantile(np.concatenate(live_values), [0.99])
            )
        amount = groups[0][SeriesId("*", "*", Kind.FEATURE, "amount")]
        assert isinstance(amount, NumericState) and not amount.is_exact  # ks only: not raised
    exact, digest = lowers[LIVE_EXACT_LIMIT], lowers[0]
    assert exact.estimate - exact.lower < digest.estimate - digest.lower


def test_exact_merges_of_sorted_runs_and_raw_adds_stay_exact() -> None:
    """Merges append sorted runs (ordered by one linear stable sort), adds append raw
    values: any mix of them gives numpy's quantiles."""
    rng = np.random.default_rng(4)
    state = NumericState(1000, 300_000)
    seen = []
    for i in range(12):
        values = rng.lognormal(3.0, 0.5, 7_000)
        seen.append(values)
        if i % 3 == 2:
            state.add(values)
        else:
            state.merge(_numeric(values))
        if i % 4 == 3:  # read in between: part sorted, then more runs or raw values
            levels = np.array([0.01, 0.5, 0.99])
            np.testing.assert_array_equal(
                state.quantiles(levels), np.quantile(np.concatenate(seen), levels)
            )
    assert state.is_exact and state.count == 84_000
    levels = np.linspace(0.001, 0.999, 37)
    np.testing.assert_array_equal(
        state.quantiles(levels), np.quantile(np.concatenate(seen), levels)
    )
