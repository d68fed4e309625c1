"""Effects between a baseline and a live state: point estimates against exact numpy and
scipy, false alarms on no-change pairs, detection of injected changes."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from sidecar.series import CategoricalState, NumericState
from sidecar.stats.effects import (
    CATEGORICAL_EFFECTS,
    NUMERIC_EFFECTS,
    Effect,
    categorical_effects,
    numeric_effects,
)

Floats = npt.NDArray[np.float64]
ALPHA = 1e-4


def _alpha(_name: str) -> float:
    return ALPHA


def _state(x: Floats, exact: bool = True) -> NumericState:
    s = NumericState(1000, exact_limit=65536 if exact else 0)
    for chunk in np.array_split(x, max(1, x.size // 512)):
        s.add(chunk)
    return s


def _cat(values: list[str]) -> CategoricalState:
    s = CategoricalState()
    s.add(values)
    return s


# --- point estimates ---------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [True, False])
def test_numeric_point_estimates_match_numpy_and_scipy(exact: bool) -> None:
    rng = np.random.default_rng(3)
    xb = rng.lognormal(0.0, 0.5, 40_000)
    xl = rng.lognormal(0.05, 0.55, 8_000)
    e = numeric_effects(_state(xb, exact), _state(xl, exact), _alpha)
    assert tuple(e) == NUMERIC_EFFECTS
    tol_q = 1e-12 if exact else 3e-3
    for name, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        qb, ql = np.quantile(xb, p), np.quantile(xl, p)
        assert e[f"{name}_abs"].estimate == pytest.approx(ql - qb, rel=0.05 if not exact else 1e-9)
        assert e[f"{name}_rel"].estimate == pytest.approx((ql - qb) / qb, abs=tol_q + 1e-12)
    assert e["mean_abs"].estimate == pytest.approx(xl.mean() - xb.mean(), rel=1e-6)
    ks = stats.ks_2samp(xl, xb).statistic
    assert abs(e["ks"].estimate - ks) < 0.006
    iqr = np.subtract(*np.quantile(xb, [0.75, 0.25]))
    w1 = stats.wasserstein_distance(xl, xb) / iqr
    assert e["w1_iqr"].estimate == pytest.approx(w1, rel=0.05)
    edges = np.quantile(xb, np.arange(1, 8) / 8)
    pb = np.diff(np.searchsorted(np.sort(xb), edges, side="right"), prepend=0, append=xb.size)
    pl = np.diff(np.searchsorted(np.sort(xl), edges, side="right"), prepend=0, append=xl.size)
    pb, pl = pb / xb.size, pl / xl.size
    assert e["psi"].estimate == pytest.approx(float(np.sum((pl - pb) * np.log(pl / pb))), rel=0.05)
    for effect in e.values():
        if not math.isnan(effect.lower):
            assert effect.lower <= effect.estimate <= effect.upper, effect


def test_exact_and_digest_states_give_close_effects() -> None:
    rng = np.random.default_rng(4)
    xb, xl = rng.normal(size=30_000), rng.normal(0.1, 1.1, 20_000)
    exact = numeric_effects(_state(xb), _state(xl), _alpha)
    digest = numeric_effects(_state(xb, False), _state(xl, False), _alpha)
    for name in ("ks", "w1_iqr", "p50_abs", "p90_abs", "p99_abs", "mean_abs", "precision_bits"):
        assert digest[name].estimate == pytest.approx(exact[name].estimate, abs=0.01), name
        assert digest[name].lower == pytest.approx(exact[name].lower, abs=0.05), name


def test_missing_and_out_of_range_rates_are_in_points() -> None:
    xb = np.linspace(0.0, 1.0, 10_000)
    xl = np.concatenate((np.linspace(0.1, 0.9, 9_000), np.full(500, np.nan), [np.inf] * 100))
    xl = np.concatenate((xl, np.full(400, 2.0)))
    e = numeric_effects(_state(xb), _state(xl), _alpha)
    assert e["missing_rate"].estimate == pytest.approx(100 * 500 / 10_000)
    assert e["out_of_range_rate"].estimate == pytest.approx(100 * 500 / 9_500)
    assert e["missing_rate"].unit == e["out_of_range_rate"].unit == "points"


def test_relative_bounds_are_nan_when_the_baseline_straddles_zero() -> None:
    rng = np.random.default_rng(5)
    e = numeric_effects(_state(rng.normal(size=2_000)), _state(rng.normal(size=2_000)), _alpha)
    assert math.isnan(e["p50_rel"].lower) and math.isnan(e["p50_rel"].upper)
    assert e["p50_abs"].lower < 0 < e["p50_abs"].upper


def test_empty_sides_give_nan_effects() -> None:
    e = numeric_effects(NumericState(), _state(np.arange(10.0)), _alpha)
    assert all(math.isnan(v.estimate) for k, v in e.items() if k != "missing_rate")
    c = categorical_effects(CategoricalState(), _cat(["a"]), _alpha)
    assert tuple(c) == CATEGORICAL_EFFECTS and math.isnan(c["tvd"].estimate)


def test_categorical_point_estimates() -> None:
    base = ["a"] * 500 + ["b"] * 300 + ["c"] * 200
    live = ["a"] * 400 + ["b"] * 300 + ["d"] * 100 + [""] * 50
    e = categorical_effects(_cat(base), _cat(live), _alpha)
    assert tuple(e) == CATEGORICAL_EFFECTS
    pb = np.array([0.5, 0.3, 0.2, 0.0])
    pl = np.array([0.5, 0.375, 0.0, 0.125])
    assert e["tvd"].estimate == pytest.approx(0.5 * np.abs(pb - pl).sum())
    assert e["new_category_share"].estimate == pytest.approx(0.125)
    assert e["vanished_share"].estimate == pytest.approx(0.2)
    assert e["missing_rate"].estimate == pytest.approx(100 * 50 / 850)
    table = np.array([[500, 300, 200, 0], [400, 300, 0, 100]])
    assert e["chi2"].estimate == pytest.approx(stats.chi2_contingency(table, correction=False)[0])
    assert e["chi2"].unit == "statistic" and math.isnan(e["chi2"].lower)


# --- no-change simulation ----------------------------------------------------------------------


def test_no_change_intervals_contain_zero() -> None:
    rng = np.random.default_rng(6)
    alpha = 0.01
    misses: dict[str, int] = {}
    for _ in range(200):
        b = _state(rng.lognormal(0.0, 0.5, 5_000))
        lv = _state(rng.lognormal(0.0, 0.5, int(rng.integers(200, 5_000))))
        e = numeric_effects(b, lv, lambda _n: alpha)
        for name, effect in e.items():
            if math.isnan(effect.lower):
                continue
            zero_out = effect.lower > 0 or effect.upper < 0
            if name in ("ks", "w1_iqr"):
                zero_out = effect.lower > 0.0
            misses[name] = misses.get(name, 0) + int(zero_out)
    # alpha is 0.01 per test; 200 pairs -> at most a couple of misses each.
    assert max(misses.values()) <= 4, misses
    assert set(misses) >= {"p50_rel", "p99_abs", "ks", "mean_abs", "missing_rate"}


def test_no_change_categorical_lower_bounds_stay_below_guardrails() -> None:
    rng = np.random.default_rng(7)
    cats = np.array([f"c{i}" for i in range(12)])
    weights = np.geomspace(1.0, 0.01, 12)
    weights /= weights.sum()
    fired = 0
    for _ in range(200):
        b = _cat(list(rng.choice(cats, 20_000, p=weights)))
        lv = _cat(list(rng.choice(cats, int(rng.integers(500, 5_000)), p=weights)))
        e = categorical_effects(b, lv, lambda _n: 0.01)
        fired += int(
            e["new_category_share"].lower > 0.005
            or e["vanished_share"].lower > 0.005
            or e["tvd"].lower > 0.0
            or e["missing_rate"].lower > 0.0
        )
    assert fired <= 4


# --- injected changes --------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [True, False])
def test_a_small_mean_shift_is_detected_by_ks(exact: bool) -> None:
    rng = np.random.default_rng(8)
    b = _state(rng.normal(size=50_000), exact)
    lv = _state(rng.normal(0.2, 1.0, 10_000), exact)
    e = numeric_effects(b, lv, _alpha)
    assert e["ks"].lower > 0.02
    assert e["p50_abs"].lower > 0.0
    assert e["w1_iqr"].lower > 0.0


def test_a_three_percent_new_category_is_detected() -> None:
    rng = np.random.default_rng(9)
    cats = np.array(["DE", "FR", "US", "GB"])
    b = _cat(list(rng.choice(cats, 50_000)))
    live = list(rng.choice(cats, 4_000))
    live[:120] = ["BR"] * 120
    e = categorical_effects(b, _cat(live), _alpha)
    assert e["new_category_share"].lower > 0.005
    assert e["new_category_share"].estimate == pytest.approx(0.03)


def test_missing_rate_from_zero_to_two_percent_is_detected() -> None:
    rng = np.random.default_rng(10)
    xl = rng.normal(size=10_000)
    xl[rng.choice(10_000, 200, replace=False)] = np.nan
    e = numeric_effects(_state(rng.normal(size=50_000)), _state(xl), _alpha)
    assert e["missing_rate"].lower > 1.0
    assert e["missing_rate"].estimate == pytest.approx(2.0)


def test_a_vanished_category_is_detected() -> None:
    rng = np.random.default_rng(11)
    cats = np.array(["a", "b", "c", "d"])
    b = _cat(list(rng.choice(cats, 20_000)))
    lv = _cat(list(rng.choice(cats[:3], 20_000)))
    e = categorical_effects(b, lv, _alpha)
    assert e["vanished_share"].lower > 0.1
    assert e["tvd"].lower > 0.1


@pytest.mark.parametrize("exact", [True, False])
def test_float32_rounding_shows_in_precision_bits(exact: bool) -> None:
    rng = np.random.default_rng(12)
    xb = rng.normal(size=20_000)
    xl = rng.normal(size=10_000).astype(np.float32).astype(np.float64)
    e = numeric_effects(_state(xb, exact), _state(xl, exact), _alpha)
    bits = e["precision_bits"]
    assert bits.estimate == pytest.approx(-29.0, abs=1.0)
    assert bits.upper < -25.0
    assert e["ks"].lower == 0.0  # no distribution test sees it


def test_precision_effects_are_nan_for_states_without_precision_stats() -> None:
    import struct

    from sidecar.series import decode_state

    s = _state(np.arange(1.0, 101.0), exact=False)
    blob = s.encode()
    size = struct.unpack_from("<I", blob, 28)[0]
    old = decode_state(blob[: 32 + size])  # as written before the precision extension
    assert isinstance(old, NumericState)
    e = numeric_effects(old, s, _alpha)
    assert math.isnan(e["precision_bits"].estimate) and math.isnan(e["distinct_share"].estimate)
    assert not math.isnan(e["ks"].estimate)


def test_effect_is_a_frozen_value() -> None:
    e = Effect("ks", 0.1, 0.05, 0.15, "distance")
    with pytest.raises(AttributeError):
        e.estimate = 0.2  # type: ignore[misc]


def test_only_computes_the_requested_groups_with_the_same_values() -> None:
    rng = np.random.default_rng(13)
    b, lv = _state(rng.normal(size=5_000)), _state(rng.normal(0.1, 1.0, 3_000))
    full = numeric_effects(b, lv, _alpha)
    some = numeric_effects(b, lv, _alpha, only=("ks", "p99_rel", "missing_rate"))
    assert {"ks", "w1_iqr", "p99_rel", "p99_abs", "missing_rate"} <= set(some)
    assert "p50_abs" not in some
    assert "precision_bits" not in some and "mean_abs" not in some
    for name, effect in some.items():
        assert effect == full[name] or math.isnan(effect.estimate), name
    assert set(numeric_effects(b, lv, _alpha, only=("mean_abs",))) == {"mean_rel", "mean_abs"}
    with pytest.raises(ValueError, match="unknown"):
        numeric_effects(b, lv, _alpha, only=("p42",))
