"""EffectEvaluator: the same effects as the reference functions, for many series at once."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt
import pytest

from sidecar.series import CategoricalState, NumericState
from sidecar.stats.effects import (
    CATEGORICAL_EFFECTS,
    NUMERIC_EFFECTS,
    Effect,
    categorical_effects,
    numeric_effects,
)
from sidecar.stats.evaluator import EffectEvaluator

Floats = npt.NDArray[np.float64]
State = NumericState | CategoricalState

# Different alphas per effect: rel and abs of one level differ, so both plans run.
ALPHAS = {name: 1e-5 * (1 + i % 3) for i, name in enumerate(NUMERIC_EFFECTS)}
ALPHAS.update({name: 2e-5 * (1 + i % 2) for i, name in enumerate(CATEGORICAL_EFFECTS)})


def _alpha(_key: object, name: str) -> float:
    return ALPHAS[name]


def _state(x: Floats, exact: bool) -> NumericState:
    s = NumericState(1000, exact_limit=65536 if exact else 0)
    for chunk in np.array_split(x, max(1, x.size // 512)):
        s.add(chunk)
    return s


def _cat(values: list[str], capacity: int = 256) -> CategoricalState:
    s = CategoricalState(capacity)
    s.add(values)
    return s


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _assert_equal(
    got: Mapping[str, Effect], ref: Mapping[str, Effect], names: tuple[str, ...]
) -> None:
    assert set(got) == set(names)
    for name in names:
        g, r = got[name], ref[name]
        assert g.name == name and g.unit == r.unit, (g, r)
        for field in ("estimate", "lower", "upper"):
            assert _same(getattr(g, field), getattr(r, field)), (name, field, g, r)


def _reference(base: State, live: State, names: tuple[str, ...]) -> dict[str, Effect]:
    def alpha(name: str) -> float:
        return ALPHAS[name]

    if isinstance(base, NumericState):
        assert isinstance(live, NumericState)
        return numeric_effects(base, live, alpha, only=names)
    assert isinstance(live, CategoricalState)
    return categorical_effects(base, live, alpha)


def _check(
    base: Mapping[str, State],
    live: Mapping[str, State],
    effects: Callable[[str], tuple[str, ...]],
    evaluator: EffectEvaluator[str] | None = None,
) -> dict[str, dict[str, Effect]]:
    ev = evaluator or EffectEvaluator(base, effects, _alpha)
    got = ev.evaluate(live)
    for key, effects_got in got.items():
        _assert_equal(effects_got, _reference(base[key], live[key], effects(key)), effects(key))
    return got


def _numeric_pairs(
    rng: np.random.Generator, exact: bool
) -> tuple[dict[str, State], dict[str, State]]:
    xb = rng.lognormal(0.0, 0.5, 50_000)
    xb[rng.random(xb.size) < 0.01] = np.nan
    xb[:20] = np.inf
    xl = rng.lognormal(0.03, 0.55, 10_000)
    xl[rng.random(xl.size) < 0.03] = np.nan
    xl[:40] = 5.0 * xl[:40] + 50.0  # beyond the baseline's range
    yb = rng.normal(-3.0, 1.0, 20_000)  # negative values: relative effects flip sign
    yl = rng.normal(-2.9, 1.0, 4_000).astype(np.float32).astype(np.float64)
    return (
        {"lat": _state(xb, exact), "neg": _state(yb, exact)},
        {"lat": _state(xl, exact), "neg": _state(yl, exact)},
    )


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "digest"])
def test_every_numeric_effect_equals_the_reference(exact: bool) -> None:
    base, live = _numeric_pairs(np.random.default_rng(11), exact)
    got = _check(base, live, lambda key: NUMERIC_EFFECTS)
    assert set(got) == {"lat", "neg"}
    assert got["lat"]["out_of_range_rate"].estimate > 0.3  # the 40 values beyond the max


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "digest"])
def test_default_guarded_sets_equal_the_reference_and_nothing_else(exact: bool) -> None:
    rng = np.random.default_rng(12)
    sets = {
        "latency": ("p50_rel", "p90_rel", "p99_rel", "missing_rate", "out_of_range_rate"),
        "feature": ("ks", "missing_rate", "out_of_range_rate"),
        "output": ("ks", "mean_abs", "missing_rate", "precision_bits"),
        "spread": ("w1_iqr", "psi", "mean_rel", "p999_abs", "distinct_share"),
    }
    base: dict[str, State] = {}
    live: dict[str, State] = {}
    for i, name in enumerate(sets):
        base[name] = _state(rng.gamma(2.0 + i, 1.0, 30_000), exact)
        live[name] = _state(rng.gamma(2.1 + i, 1.0, 6_000), exact)
    base["cat"] = _cat(list(rng.choice(["a", "b", "c", "d"], 5_000)))
    live["cat"] = _cat(list(rng.choice(["a", "b", "c", "e"], 1_000)) + [""] * 30)
    sets["cat"] = ("tvd", "new_category_share", "missing_rate")
    _check(base, live, lambda key: sets[key])


def test_every_categorical_effect_equals_the_reference() -> None:
    rng = np.random.default_rng(13)
    cats = [f"c{i}" for i in range(30)]
    base = {
        "plain": _cat(list(rng.choice(cats[:20], 20_000)) + [""] * 100),
        # a small table that overflowed: "other" on both sides
        "folded": _cat(list(rng.choice(cats, 20_000)), capacity=8),
        "same": _cat(list(rng.choice(cats[:5], 3_000))),
    }
    live = {
        "plain": _cat(list(rng.choice(cats[3:25], 4_000)) + [""] * 5),
        "folded": _cat(list(rng.choice(cats[2:], 4_000)), capacity=8),
        "same": _cat(list(rng.choice(cats[:5], 800))),
    }
    got = _check(base, live, lambda key: CATEGORICAL_EFFECTS)
    assert got["plain"]["new_category_share"].lower > 0.0  # c20..c24 are new
    assert got["plain"]["vanished_share"].estimate > 0.0  # c0..c2 vanished


def test_series_on_one_side_only_or_of_another_type_are_left_out() -> None:
    rng = np.random.default_rng(14)
    x = _state(rng.normal(size=2_000), True)
    base: dict[str, State] = {"both": x, "base_only": x, "typed": x}
    live: dict[str, State] = {
        "both": _state(rng.normal(size=500), True),
        "live_only": _state(rng.normal(size=500), True),
        "typed": _cat(["a", "b"]),
    }
    got = _check(base, live, lambda key: ("ks", "missing_rate"))
    assert set(got) == {"both"}


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "digest"])
def test_zero_count_live_series_give_nan_effects_like_the_reference(exact: bool) -> None:
    rng = np.random.default_rng(15)
    xb = rng.normal(size=5_000)
    xb[:10] = np.inf
    base: dict[str, State] = {
        "nan_only": _state(xb, exact),
        "inf_only": _state(xb, exact),
        "empty": _state(xb, exact),
        "cat_missing": _cat(["a", "b", "a"]),
        "cat_empty": _cat(["a"]),
    }
    live: dict[str, State] = {
        "nan_only": _state(np.full(50, np.nan), exact),
        "inf_only": _state(np.array([np.inf, -np.inf, np.inf]), exact),
        "empty": NumericState(1000, exact_limit=65536 if exact else 0),
        "cat_missing": _cat(["", ""]),
        "cat_empty": CategoricalState(),
    }

    def effects(key: str) -> tuple[str, ...]:
        return CATEGORICAL_EFFECTS if key.startswith("cat") else NUMERIC_EFFECTS

    got = _check(base, live, effects)
    assert got["nan_only"]["missing_rate"].estimate == pytest.approx(100.0)
    assert math.isnan(got["nan_only"]["ks"].estimate)
    assert got["inf_only"]["out_of_range_rate"].estimate > 99.0
    assert math.isnan(got["cat_empty"]["tvd"].lower)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "digest"])
def test_repeated_evaluations_track_growing_live_states(exact: bool) -> None:
    rng = np.random.default_rng(16)
    base: dict[str, State] = {
        "x": _state(rng.normal(size=20_000), exact),
        "c": _cat(list(rng.choice(["a", "b", "c"], 5_000))),
    }
    live_x = _state(rng.normal(0.3, 1.0, 500), exact)
    live_c = _cat(list(rng.choice(["a", "b", "c"], 200)))
    live: dict[str, State] = {"x": live_x, "c": live_c}

    def effects(key: str) -> tuple[str, ...]:
        return CATEGORICAL_EFFECTS if key == "c" else NUMERIC_EFFECTS

    ev = EffectEvaluator(base, effects, _alpha)
    lowers = []
    for _ in range(4):
        got = _check(base, live, effects, ev)
        lowers.append(got["x"]["ks"].lower)
        live_x.add(rng.normal(0.3, 1.0, 3_000))
        live_c.add(list(rng.choice(["a", "b", "c", "d"], 800)))
    # more live data, tighter bounds: the 0.3 sd shift's KS lower bound rises clear of 0
    assert lowers[0] < lowers[-1] and lowers[-1] > 0.02


def test_unknown_effect_names_are_refused_with_the_series_named() -> None:
    base = {"score": _state(np.arange(10.0), True)}
    with pytest.raises(ValueError, match=r"score.*tvd"):
        EffectEvaluator(base, lambda key: ("tvd",), _alpha)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "digest"])
def test_one_sided_quantile_effects_equal_the_reference_and_are_tighter(exact: bool) -> None:
    """Directions reach the quantile plans: an ``up`` p99_rel and a ``down`` p50_abs get
    one-sided ends at their full alpha (the same as the reference's), tighter than the
    two-sided ends of the same effects; a ``both`` effect is unchanged."""
    base, live = _numeric_pairs(np.random.default_rng(13), exact)
    names = ("p50_abs", "p50_rel", "p99_rel", "p99_abs", "ks")
    directions = {"p99_rel": "up", "p50_abs": "down", "p99_abs": "both"}

    def direction(_key: object, name: str) -> str:
        return directions.get(name, "both")

    ev = EffectEvaluator(base, lambda key: names, _alpha, direction)
    two = EffectEvaluator(base, lambda key: names, _alpha)
    got, got_two = ev.evaluate(live), two.evaluate(live)
    for key in base:
        ref = numeric_effects(
            base[key],
            live[key],
            ALPHAS.__getitem__,
            only=names,
            direction_for=lambda name: directions.get(name, "both"),
        )
        _assert_equal(got[key], ref, names)
        for name in ("p99_rel", "p50_abs"):
            one_sided, two_sided = got[key][name], got_two[key][name]
            assert one_sided.estimate == two_sided.estimate
            assert two_sided.lower < one_sided.lower <= one_sided.upper < two_sided.upper
        for name in ("p50_rel", "p99_abs", "ks"):
            assert got[key][name] == got_two[key][name]
