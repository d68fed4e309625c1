"""Change-point estimates from bucket histories: located shifts, quiet stationary series."""

from __future__ import annotations

import numpy as np
import pytest

from sidecar.changepoint import ChangePoint, bucket_history, estimate_change_point
from sidecar.records import Kind, Partial, SeriesId
from sidecar.series import CategoricalState, NumericState
from sidecar.stores.sqlite import SQLiteStore

T0 = 1_700_000_000
STEP = 60


def _numeric(values: np.ndarray) -> NumericState:
    state = NumericState()
    state.add(values)
    return state


def _categorical(values: list[str]) -> CategoricalState:
    state = CategoricalState()
    state.add(values)
    return state


def _baseline(seed: int = 1) -> NumericState:
    return _numeric(np.random.default_rng(seed).normal(0.0, 1.0, 20_000))


def _shifted_history(
    rng: np.random.Generator,
    counts: list[int],
    change: int | None,
    shift: float,
) -> list[tuple[int, NumericState | CategoricalState]]:
    history: list[tuple[int, NumericState | CategoricalState]] = []
    for i, n in enumerate(counts):
        mean = shift if change is not None and i >= change else 0.0
        history.append((T0 + STEP * i, _numeric(rng.normal(mean, 1.0, n))))
    return history


def _assert_located(cp: ChangePoint | None, change: int, width: int) -> None:
    assert cp is not None
    start = T0 + STEP * change
    assert cp.lower <= start <= cp.upper
    assert cp.lower <= cp.time <= cp.upper
    assert cp.upper - cp.lower <= STEP * width


@pytest.mark.parametrize("statistic", ["auto", "above_median"])
def test_mean_shift_at_bucket_30_is_located_with_a_narrow_interval(statistic: str) -> None:
    rng = np.random.default_rng(7)
    history = _shifted_history(rng, [1000] * 60, change=30, shift=0.25)
    cp = estimate_change_point(history, _baseline(), statistic=statistic)
    _assert_located(cp, 30, width=4)
    assert cp is not None
    assert cp.statistic == ("pit" if statistic == "auto" else statistic)
    before = int(cp.time - T0) // STEP
    assert (cp.before_count, cp.after_count) == (1000 * before, 1000 * (60 - before))


def test_stationary_history_gives_at_most_one_false_split_in_20_seeds() -> None:
    baseline = _baseline()
    found = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        history = _shifted_history(rng, [1000] * 60, change=None, shift=0.0)
        found.append(estimate_change_point(history, baseline))
    assert sum(cp is not None for cp in found) <= 1


def test_higher_confidence_never_narrows_the_interval() -> None:
    rng = np.random.default_rng(3)
    history = _shifted_history(rng, [1000] * 60, change=30, shift=0.15)
    narrow = estimate_change_point(history, _baseline(), confidence=0.5)
    wide = estimate_change_point(history, _baseline(), confidence=0.99)
    assert narrow is not None and wide is not None
    assert narrow.time == wide.time
    assert wide.lower <= narrow.lower and narrow.upper <= wide.upper


def _category_bucket(rng: np.random.Generator, n: int, shares: list[float]) -> CategoricalState:
    return _categorical(list(rng.choice(["a", "b", "c", "d"], size=n, p=shares)))


def test_categorical_share_change_is_located() -> None:
    rng = np.random.default_rng(11)
    before, after = [0.5, 0.3, 0.15, 0.05], [0.44, 0.36, 0.15, 0.05]
    baseline = _category_bucket(rng, 20_000, before)
    history: list[tuple[int, NumericState | CategoricalState]] = [
        (T0 + STEP * i, _category_bucket(rng, 1000, before if i < 20 else after)) for i in range(40)
    ]
    cp = estimate_change_point(history, baseline)
    _assert_located(cp, 20, width=5)
    assert cp is not None and cp.statistic == "tvd"
    split = int(cp.time - T0) // STEP
    assert (cp.before_count, cp.after_count) == (1000 * split, 1000 * (40 - split))


def test_uneven_bucket_counts_locate_the_shift_and_stay_quiet_without_one() -> None:
    baseline = _baseline()
    rng = np.random.default_rng(5)
    counts = [int(n) for n in rng.integers(100, 3000, size=60)]
    cp = estimate_change_point(_shifted_history(rng, counts, change=30, shift=0.25), baseline)
    _assert_located(cp, 30, width=4)
    assert cp is not None
    before = int(cp.time - T0) // STEP
    assert (cp.before_count, cp.after_count) == (sum(counts[:before]), sum(counts[before:]))
    quiet = [
        estimate_change_point(_shifted_history(rng, counts, change=None, shift=0.0), baseline)
        for _ in range(10)
    ]
    assert sum(q is not None for q in quiet) <= 1


def test_uneven_categorical_counts_do_not_fake_a_change() -> None:
    # Small buckets have larger TVD by chance alone; the statistic corrects for it.
    rng = np.random.default_rng(13)
    shares = [0.5, 0.3, 0.15, 0.05]
    baseline = _category_bucket(rng, 20_000, shares)
    false_splits = 0
    for _ in range(10):
        counts = [100] * 20 + [3000] * 20  # small buckets first, large after
        history: list[tuple[int, NumericState | CategoricalState]] = [
            (T0 + STEP * i, _category_bucket(rng, n, shares)) for i, n in enumerate(counts)
        ]
        false_splits += estimate_change_point(history, baseline) is not None
    assert false_splits <= 1


def test_too_short_or_empty_histories_give_none() -> None:
    rng = np.random.default_rng(2)
    two = _shifted_history(rng, [1000, 1000], change=1, shift=5.0)
    assert estimate_change_point(two, _baseline()) is None
    # empty buckets do not count towards the three
    with_empty = [*two, (T0 + 2 * STEP, NumericState())]
    assert estimate_change_point(with_empty, _baseline()) is None


def test_statistic_must_fit_the_series() -> None:
    rng = np.random.default_rng(2)
    history = _shifted_history(rng, [100] * 5, change=None, shift=0.0)
    with pytest.raises(ValueError, match="does not apply"):
        estimate_change_point(history, _baseline(), statistic="tvd")
    with pytest.raises(ValueError, match="unknown statistic"):
        estimate_change_point(history, _baseline(), statistic="mean")


def test_bucket_history_from_sqlite_merges_writers_and_versions() -> None:
    rng = np.random.default_rng(21)
    store = SQLiteStore()
    latency = SeriesId("*", "*", Kind.LATENCY, "latency_seconds")
    other = SeriesId("v1", "*", Kind.FEATURE, "age").encode()
    per_bucket: dict[int, list[np.ndarray]] = {}
    partials = []
    for i in range(40):
        bucket = T0 + STEP * i
        for writer, version in (("pod-a", "v1"), ("pod-b", "v2")):
            values = rng.normal(0.3 if i >= 25 else 0.0, 1.0, 500)
            per_bucket.setdefault(bucket, []).append(values)
            sid = SeriesId(version, "*", Kind.LATENCY, "latency_seconds").encode()
            partials.append(
                Partial(
                    bucket,
                    writer,
                    {sid: _numeric(values).encode(), other: _numeric(values + 100).encode()},
                )
            )
    store.write_partials("m", "prod", partials, ttl_seconds=10**9)
    try:
        history = bucket_history(store, "m", "prod", latency, T0, T0 + STEP * 40)
        assert [t for t, _ in history] == sorted(per_bucket)
        for t, state in history:
            assert isinstance(state, NumericState)
            expected = np.concatenate(per_bucket[t])
            assert state.count == expected.size == 1000
            assert state.quantiles([0.5])[0] == pytest.approx(np.quantile(expected, 0.5))
        only_v1 = bucket_history(
            store, "m", "prod", SeriesId("v1", "*", Kind.LATENCY, "latency_seconds"), T0, T0 + 120
        )
        assert [(t, s.count) for t, s in only_v1] == [(T0, 500), (T0 + STEP, 500)]
        cp = estimate_change_point(history, _baseline())
        _assert_located(cp, 25, width=5)
    finally:
        store.close()
