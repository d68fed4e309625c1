"""Coverage, tightness and shape of the confidence sequences, by seeded simulation.

Live paths are simulated at checkpoint times (exact in distribution: the counts
between checkpoints are drawn as binomial / multinomial increments) on a grid
that takes every time up to 100, a geometric grid to 20,000 and every time in a
stretch around 10,000, so a path is checked at about 400 times.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from sidecar.stats.sequences import (
    fixed_cdf_radius,
    fixed_mean_bounds,
    fixed_proportion_bounds,
    fixed_rank_bounds,
    fixed_rank_radius,
    live_cdf_radius,
    live_mean_bounds,
    live_proportion_bounds,
    live_rank_bounds,
    live_rank_radius,
    mixture_concentration,
)

ALPHA = 0.05
PATHS = 2_000
HORIZON = 20_000

TIMES = np.unique(
    np.concatenate(
        [
            np.arange(1, 101),
            np.round(np.geomspace(100, HORIZON, 200)),
            np.arange(10_000, 10_100),
        ]
    )
).astype(np.int64)


def _binomial_paths(p: float, paths: int, seed: int) -> npt.NDArray[np.int64]:
    """Counts S_t (paths x len(TIMES)) of a Bernoulli(p) stream at the checkpoint times."""
    rng = np.random.default_rng(seed)
    steps = np.diff(TIMES, prepend=0)
    return np.cumsum(rng.binomial(steps, p, size=(paths, steps.size)), axis=1)


def _rate_message(what: str, failures: int, total: int, alpha: float) -> str:
    lo, hi = stats.binomtest(failures, total).proportion_ci(0.95, method="exact")
    return (
        f"{what}: {failures}/{total} paths left the sequence "
        f"(rate {failures / total:.4f}, 95% CI [{lo:.4f}, {hi:.4f}]) > alpha {alpha}"
    )


# --------------------------------------------------------------------------- time-uniform coverage


@pytest.mark.parametrize(("p", "seed"), [(0.5, 1), (0.9, 2), (0.99, 3)])
def test_live_rank_radius_covers_every_time(p: float, seed: int) -> None:
    counts = _binomial_paths(p, PATHS, seed)
    u = live_rank_radius(p, TIMES, ALPHA)
    outside = np.abs(counts / TIMES - p) > u
    failures = int(outside.any(axis=1).sum())
    assert failures <= ALPHA * PATHS, _rate_message(f"rank p={p}", failures, PATHS, ALPHA)
    # Checked only at one fixed time the same radius would rarely be crossed: the
    # sequence pays for all the other looks.
    assert outside[:, -1].mean() < ALPHA / 4


@pytest.mark.parametrize(("p", "seed"), [(0.5, 11), (0.9, 12), (0.99, 13)])
def test_live_rank_bounds_each_side_covers_every_time(p: float, seed: int) -> None:
    """Each one-sided sequence alone spends alpha: the share of paths ever below
    p - u_minus, and (separately) ever above p + u_plus, is at most alpha."""
    counts = _binomial_paths(p, PATHS, seed)
    lo, hi = live_rank_bounds(p, TIMES, ALPHA)
    below = (counts / TIMES < p - lo).any(axis=1)
    above = (counts / TIMES > p + hi).any(axis=1)
    for side, crossed in (("lower", below), ("upper", above)):
        failures = int(crossed.sum())
        assert failures <= ALPHA * PATHS, _rate_message(
            f"one-sided rank p={p} {side}", failures, PATHS, ALPHA
        )
    # Not wasteful either: checked only at the last time it is rarely crossed.
    assert (counts[:, -1] / TIMES[-1] < p - lo[-1]).mean() < ALPHA / 4


def test_live_rank_bounds_near_the_fixed_sample_bound_at_their_design_point() -> None:
    """At intrinsic time p (1-p) t ~ RANK_V_OPT the time-uniform price over an exact
    one-sided binomial bound at the same alpha stays moderate (a p99 at 50,000
    values, and the acceptance's operating alpha)."""
    for p, t in ((0.99, 50_000), (0.5, 2_000), (0.99, 100_000)):
        lo, hi = live_rank_bounds(p, t, 3.3e-4)
        f_lo, f_hi = fixed_rank_bounds(p, t, 3.3e-4)
        assert 1.0 < float(lo / f_lo) < 1.35 and 1.0 < float(hi / f_hi) < 1.35, (p, t, lo, f_lo)
        # Spending the alpha on one side (and the tuning) beats the two-sided sequence there.
        assert float(max(lo, hi)) < float(live_rank_radius(p, t, 3.3e-4))


def test_live_rank_bounds_shapes_and_vacuous_ends() -> None:
    lo, hi = live_rank_bounds([[0.5], [0.99]], [0, 10, 100_000], 0.01)
    assert lo.shape == hi.shape == (2, 3)
    assert float(lo[0, 0]) == float(hi[0, 0]) == 1.0  # t = 0: nothing known
    assert float(hi[1, 1]) == 1.0  # 10 values say nothing about what lies above a p99
    one = live_rank_bounds(0.99, 100_000, 0.01)
    assert float(one[0]) == pytest.approx(float(lo[1, 2]), rel=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        live_rank_bounds(0.5, 10, 0.0)
    with pytest.raises(ValueError, match="p"):
        live_rank_bounds(1.0, 10, 0.1)


@pytest.mark.parametrize(("p", "n"), [(0.5, 1_000), (0.99, 20_000), (0.999, 50_000)])
def test_fixed_rank_bounds_exact_one_sided_coverage(p: float, n: int) -> None:
    lo, hi = (float(v) for v in fixed_rank_bounds(p, n, ALPHA))
    k = np.arange(n + 1)
    pmf = stats.binom.pmf(k, n, p)
    assert pmf[k / n < p - lo].sum() <= ALPHA
    assert pmf[k / n > p + hi].sum() <= ALPHA
    # One side at alpha is the two-sided radius at 2 alpha (exact tails, alpha each).
    assert max(lo, hi) == pytest.approx(float(fixed_rank_radius(p, n, 2 * ALPHA)))


@pytest.mark.parametrize(("p", "seed"), [(0.001, 4), (0.03, 5), (0.5, 6)])
def test_live_proportion_bounds_cover_every_time(p: float, seed: int) -> None:
    paths = 1_000
    counts = _binomial_paths(p, paths, seed)
    t = np.broadcast_to(TIMES, counts.shape)
    # Many (k, t) pairs repeat for small p: bound each distinct pair once.
    pairs, inverse = np.unique(np.stack([counts.ravel(), t.ravel()]), axis=1, return_inverse=True)
    lo, hi = live_proportion_bounds(pairs[0], pairs[1], ALPHA)
    lower, upper = lo[inverse].reshape(counts.shape), hi[inverse].reshape(counts.shape)
    outside = (p < lower) | (p > upper)
    failures = int(outside.any(axis=1).sum())
    assert failures <= ALPHA * paths, _rate_message(f"proportion p={p}", failures, paths, ALPHA)


def test_live_cdf_radius_covers_every_time() -> None:
    # A uniform law on 200 atoms: the supremum over x of |F_t(x) - F(x)| is attained
    # at the atoms, so cumulative cell counts give it exactly.
    rng = np.random.default_rng(7)
    paths, cells = 1_000, 200
    times = TIMES[::3]
    truth = np.arange(1, cells + 1) / cells
    radius = live_cdf_radius(times, ALPHA)
    counts = np.zeros((paths, cells), dtype=np.int64)
    left = np.zeros(paths, dtype=bool)
    previous = 0
    for t, r in zip(times, radius, strict=True):
        counts += rng.multinomial(int(t) - previous, np.full(cells, 1.0 / cells), size=paths)
        previous = int(t)
        ecdf = np.cumsum(counts, axis=1) / t
        # Just below each atom the empirical CDF is the previous cell's value.
        below = np.hstack([np.zeros((paths, 1)), ecdf[:, :-1]])
        sup = np.maximum(np.abs(ecdf - truth), np.abs(below - (truth - 1.0 / cells))).max(axis=1)
        left |= sup > r
    failures = int(left.sum())
    assert failures <= ALPHA * paths, _rate_message("cdf", failures, paths, ALPHA)


def test_live_mean_bounds_cover_every_time() -> None:
    # Fair coin flips: the largest variance a [0, 1] variable can have.
    counts = _binomial_paths(0.5, PATHS, 8)
    lo, hi = live_mean_bounds(counts / TIMES, TIMES, 0.0, 1.0, ALPHA)
    failures = int(((lo > 0.5) | (hi < 0.5)).any(axis=1).sum())
    assert failures <= ALPHA * PATHS, _rate_message("mean", failures, PATHS, ALPHA)


# --------------------------------------------------------------------------- fixed-sample coverage


@pytest.mark.parametrize(("p", "n"), [(0.5, 1_000), (0.9, 5_000), (0.99, 20_000), (0.999, 50_000)])
def test_fixed_rank_radius_exact_coverage(p: float, n: int) -> None:
    u = float(fixed_rank_radius(p, n, ALPHA))
    k = np.arange(n + 1)
    miss = stats.binom.pmf(k, n, p)[np.abs(k / n - p) > u].sum()
    assert miss <= ALPHA
    # Exact tails: not much more than needed (one count less would cover too little).
    assert float(fixed_rank_radius(p, n, 2 * ALPHA)) < u


@pytest.mark.parametrize("n", [20, 200, 2_000])
def test_fixed_proportion_bounds_exact_coverage(n: int) -> None:
    k = np.arange(n + 1)
    lo, hi = fixed_proportion_bounds(k, n, ALPHA)
    for p in (0.001, 0.01, 0.1, 0.37, 0.5, 0.93):
        covered = (lo <= p) & (p <= hi)
        assert stats.binom.pmf(k, n, p)[~covered].sum() <= ALPHA


@pytest.mark.parametrize("n", [10, 300, 5_000])
def test_fixed_cdf_radius_exact_coverage(n: int) -> None:
    # scipy's kstwo is the exact law of sup_x |F_n(x) - F(x)| for continuous F.
    for alpha in (ALPHA, 1e-4):
        assert stats.kstwo.sf(float(fixed_cdf_radius(n, alpha)), n) <= alpha


def test_fixed_mean_bounds_coverage() -> None:
    rng = np.random.default_rng(10)
    trials, n = 20_000, 500
    means = rng.binomial(n, 0.5, size=trials) / n
    lo, hi = fixed_mean_bounds(means, n, 0.0, 1.0, ALPHA)
    failures = int(((lo > 0.5) | (hi < 0.5)).sum())
    assert failures <= ALPHA * trials, _rate_message("fixed mean", failures, trials, ALPHA)


# --------------------------------------------------------------------------- tightness


def test_rank_radius_tightness_targets() -> None:
    assert 0.0013 < float(live_rank_radius(0.99, 100_000, 5e-4)) < 0.002
    assert 0.018 < float(live_rank_radius(0.5, 10_000, 5e-4)) < 0.025


def test_proportion_tight_near_zero() -> None:
    lo, hi = live_proportion_bounds(120, 4_000, 1e-4)
    assert 0.015 <= float(lo) < 0.03 < float(hi) < 0.05
    # Missing rate 2% after 10,000 live samples clears a 1-point guardrail even at a
    # family-wide alpha split a thousand ways.
    lo, _ = live_proportion_bounds(200, 10_000, 1e-5)
    _, base_hi = fixed_proportion_bounds(0, 50_000, 1e-5)
    assert float(lo) - float(base_hi) > 0.01


@pytest.mark.parametrize(("alpha", "limit"), [(0.05, 2.1), (1e-5, 1.45)])
def test_time_uniform_price_is_modest(alpha: float, limit: float) -> None:
    t = 10_000
    for p in (0.5, 0.9, 0.99):
        ratio = float(live_rank_radius(p, t, alpha) / fixed_rank_radius(p, t, alpha))
        assert 1.0 < ratio < min(limit, 1.7), (p, ratio)
    for k in (300, 5_000):
        lo, hi = live_proportion_bounds(k, t, alpha)
        flo, fhi = fixed_proportion_bounds(k, t, alpha)
        ratio = float((hi - lo) / (fhi - flo))
        assert 1.0 < ratio < limit, (k, ratio)
    ratio = float(live_cdf_radius(t, alpha) / fixed_cdf_radius(t, alpha))
    assert 1.0 < ratio < limit
    lo, hi = live_mean_bounds(0.5, t, 0.0, 1.0, alpha)
    flo, fhi = fixed_mean_bounds(0.5, t, 0.0, 1.0, alpha)
    assert 1.0 < float((hi - lo) / (fhi - flo)) < limit


def test_cdf_constant_matches_theorem_2() -> None:
    # Howard & Ramdas (2022), Theorem 2 with m = 1, A = 0.85 at alpha = 0.05: C ~ 8.12;
    # their closed-form approximation 0.8 log(1612 / alpha) is within a few percent.
    r = float(live_cdf_radius(10, 0.05))
    c = (r / 0.85) ** 2 * 10 - math.log1p(math.log(10))
    assert c == pytest.approx(8.1227, abs=1e-3)
    assert c == pytest.approx(0.8 * math.log(1612 / 0.05), rel=0.05)


# --------------------------------------------------------------------------- shape


def test_radii_shrink_with_t_and_grow_as_alpha_shrinks() -> None:
    t = np.geomspace(10, 1e7, 60)
    for p in (0.5, 0.9, 0.99, 0.999):
        for alpha in (0.05, 1e-3, 1e-6):
            r = live_rank_radius(p, t, alpha)
            assert np.all(np.diff(r) <= 1e-12)
            assert np.all(live_rank_radius(p, t, alpha / 10) >= r)
            f = fixed_rank_radius(p, t, alpha)
            assert np.all(fixed_rank_radius(p, t, alpha / 10) >= f)
    for alpha in (0.05, 1e-6):
        c = live_cdf_radius(t, alpha)
        tighter = live_cdf_radius(t, alpha / 10)
        assert np.all(np.diff(c) <= 0) and np.all(tighter[c < 1] > c[c < 1])
        assert np.all(np.diff(fixed_cdf_radius(t, alpha)) < 0)
        n = np.unique(np.round(t[t >= 1_000], -2))  # 3% of n is a whole count
        lo, hi = live_proportion_bounds(0.03 * n, n, alpha)
        assert np.all(np.diff(hi - lo) < 0)
        lo2, hi2 = live_proportion_bounds(0.03 * n, n, alpha / 10)
        assert np.all(lo2 <= lo) and np.all(hi2 >= hi)
        mlo, mhi = live_mean_bounds(0.5, t, 0.0, 1.0, alpha)
        assert np.all(np.diff(mhi - mlo) <= 0)


def test_edge_cases() -> None:
    assert float(live_rank_radius(0.9, 0, 0.01)) == 1.0
    assert float(fixed_rank_radius(0.9, 0, 0.01)) == 1.0
    assert [float(x) for x in live_proportion_bounds(0, 0, 0.01)] == [0.0, 1.0]
    assert [float(x) for x in fixed_proportion_bounds(0, 0, 0.01)] == [0.0, 1.0]
    lo, hi = live_proportion_bounds([0, 50], [50, 50], 0.01)
    assert lo[0] == 0.0 and 0.0 < hi[0] < 1.0 and 0.0 < lo[1] < 1.0 and hi[1] == 1.0
    lo, hi = fixed_proportion_bounds([0, 50], [50, 50], 0.01)
    assert lo[0] == 0.0 and hi[1] == 1.0
    assert float(live_cdf_radius(0, 0.01)) == 1.0 and float(fixed_cdf_radius(0, 0.01)) == 1.0
    assert [float(x) for x in live_mean_bounds(3.0, 0, 1.0, 5.0, 0.01)] == [1.0, 5.0]
    lo, hi = live_mean_bounds(4.99, 100, 1.0, 5.0, 0.01)
    assert 1.0 < float(lo) < 4.99 and float(hi) == 5.0
    lo, hi = fixed_mean_bounds(1.0, 10, 1.0, 5.0, 0.01)
    assert float(lo) == 1.0 and float(hi) < 5.0


def test_vectorised_shapes_and_dtype() -> None:
    p = np.array([0.5, 0.9, 0.99])[:, None]
    t = np.array([0, 10, 1_000, 100_000])
    r = live_rank_radius(p, t, 0.01)
    assert r.shape == (3, 4) and r.dtype == np.float64
    assert fixed_rank_radius(p, t, 0.01).shape == (3, 4)
    lo, hi = live_proportion_bounds(np.array([[1], [2]]), np.array([10, 20]), 0.01)
    assert lo.shape == hi.shape == (2, 2) and lo.dtype == np.float64
    scalar = live_rank_radius(0.5, 100, 0.01)
    assert scalar.shape == () and scalar.dtype == np.float64


def test_scalar_and_vector_paths_agree() -> None:
    rng = np.random.default_rng(11)
    p = rng.choice([0.5, 0.9, 0.99, 0.999], 200)
    t = rng.integers(0, 2_000_000, 200).astype(float)
    k = np.floor(t * rng.random(200) * 0.1)
    vec = live_rank_radius(p, t, 1e-5)
    one = np.array([live_rank_radius(float(a), float(b), 1e-5) for a, b in zip(p, t, strict=True)])
    np.testing.assert_allclose(one, vec, rtol=1e-8)
    vec_lo, vec_hi = live_proportion_bounds(k, t, 1e-5)
    pairs = [live_proportion_bounds(float(a), float(b), 1e-5) for a, b in zip(k, t, strict=True)]
    np.testing.assert_allclose([float(x[0]) for x in pairs], vec_lo, rtol=1e-8)
    np.testing.assert_allclose([float(x[1]) for x in pairs], vec_hi, rtol=1e-8)
    # numpy scalars and 0-d arrays take the same route
    assert float(live_rank_radius(np.float64(0.9), np.int64(500), 0.01)) == float(
        live_rank_radius(np.array(0.9), np.array(500), 0.01)
    )


def test_mixture_concentration_targets_t_opt() -> None:
    # Larger for larger alpha (less log(1/alpha) to amortise); thousands of samples.
    assert 500 < mixture_concentration(1e-6) < mixture_concentration(0.05) < 3_000


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: live_rank_radius(0.5, 10, 0.0), "alpha"),
        (lambda: live_rank_radius(0.5, 10, 1.0), "alpha"),
        (lambda: live_rank_radius(1.0, 10, 0.1), "p"),
        (lambda: live_rank_radius([0.5, 0.0], 10, 0.1), "p"),
        (lambda: live_rank_radius(0.5, -1, 0.1), "t"),
        (lambda: live_rank_radius(0.5, [1, np.nan], 0.1), "t"),
        (lambda: fixed_rank_radius(0.5, -1, 0.1), "n"),
        (lambda: live_proportion_bounds(11, 10, 0.1), "k"),
        (lambda: live_proportion_bounds([1, 11], 10, 0.1), "k"),
        (lambda: live_proportion_bounds(-1, 10, 0.1), "k"),
        (lambda: fixed_proportion_bounds(1, -10, 0.1), "n"),
        (lambda: live_cdf_radius(-1, 0.1), "t"),
        (lambda: fixed_cdf_radius(10, 2.0), "alpha"),
        (lambda: live_mean_bounds(0.5, 10, 1.0, 0.0, 0.1), "lo"),
        (lambda: fixed_mean_bounds(np.inf, 10, 0.0, 1.0, 0.1), "mean"),
    ],
)
def test_bad_input_names_the_argument(call: object, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} "):
        call()  # type: ignore[operator]
