"""Anytime-valid (time-uniform) and fixed-sample confidence bounds.

The live side of a comparison grows forever and is looked at every few seconds,
so its bounds are *confidence sequences*: they hold simultaneously for every
sample size t with probability at least 1 - alpha, however often they are
checked. The baseline is one fixed sample of size n and gets ordinary
fixed-sample bounds. ``docs/statistics.md`` explains the methods and their
assumptions.

Every function is vectorised over numpy arrays (inputs broadcast together),
accepts scalars, and returns float64 arrays (0-d for scalar inputs). Scalar
calls are cached, because the comparator asks for the same baseline-side bounds
at every check.

>>> r = live_rank_radius(0.99, 100_000, 5e-4)
>>> 0.001 < float(r) < 0.002
True
>>> lo, hi = live_proportion_bounds(120, 4000, 1e-4)
>>> 0.015 < float(lo) < 0.03 < float(hi) < 0.05
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import optimize, special, stats

__all__ = [
    "CDF_LIL_CONSTANT",
    "RANK_V_OPT",
    "T_OPT",
    "fixed_cdf_radius",
    "fixed_mean_bounds",
    "fixed_mean_radius",
    "fixed_proportion_bounds",
    "fixed_rank_bounds",
    "fixed_rank_radius",
    "live_cdf_radius",
    "live_mean_bounds",
    "live_mean_radius",
    "live_proportion_bounds",
    "live_rank_bounds",
    "live_rank_radius",
    "mixture_concentration",
]

FloatArray = npt.NDArray[np.float64]

#: Sample size (in observations) at which the mixture boundaries are tightest.
#: Acceptance needs detection within 4,000 to 100,000 live samples; 20,000 sits
#: in the middle (on a log scale) and the boundaries are within a few percent of
#: their optimum over that whole range.
T_OPT: Final = 20_000.0

#: Intrinsic time V = p (1 - p) t at which the one-sided rank sequences
#: (`live_rank_bounds`, the quantile effects) are tightest: t = 2,000 values for a
#: median, 5,600 for p90, 50,000 for p99, 500,000 for p99.9. The information about a
#: p-quantile grows with the number of values on its rarer side, not with t: a p99
#: needs ~100 times the values of a median to be known as well. Any value is valid.
RANK_V_OPT: Final = 500.0

#: Leading constant A of the time-uniform DKW boundary (Howard & Ramdas 2022, Thm 2).
CDF_LIL_CONSTANT: Final = 0.85

_NEWTON_MAX: Final = 60


# --------------------------------------------------------------------------- validation


def _alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError) as err:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}") from err
    if not 0.0 < value < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return value


def _array(name: str, value: npt.ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {value!r}") from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _probability(name: str, value: npt.ArrayLike) -> FloatArray:
    arr = _array(name, value)
    if np.any(arr <= 0.0) or np.any(arr >= 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return arr


def _count(name: str, value: npt.ArrayLike) -> FloatArray:
    arr = _array(name, value)
    if np.any(arr < 0.0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return arr


def _successes(k: npt.ArrayLike, total: FloatArray, total_name: str) -> FloatArray:
    arr = _count("k", k)
    if np.any(arr > total):
        raise ValueError(f"k must be <= {total_name}, got k={k!r}, {total_name}={total!r}")
    return arr


def _range(lo: float, hi: float) -> tuple[float, float]:
    low, high = float(lo), float(hi)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"lo and hi must be finite, got lo={lo!r}, hi={hi!r}")
    if not low < high:
        raise ValueError(f"lo must be < hi, got lo={lo!r}, hi={hi!r}")
    return low, high


def _scalar(*arrays: FloatArray) -> bool:
    return all(a.ndim == 0 for a in arrays)


_REAL: Final = (int, float, np.integer, np.floating)


def _plain(*values: object) -> bool:
    """True when every value is a plain real scalar: the fast, cached path applies."""
    return all(isinstance(v, _REAL) and not isinstance(v, bool) for v in values)


def _p_scalar(value: float) -> float:
    x = float(value)
    if not 0.0 < x < 1.0:  # also refuses nan
        raise ValueError(f"p must be in (0, 1), got {value!r}")
    return x


def _count_scalar(name: str, value: float) -> float:
    x = float(value)
    if not 0.0 <= x < math.inf:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return x


def _digamma(x: float) -> float:
    """Digamma for x > 0 (recurrence up to 6, then the asymptotic series; ~1e-13)."""
    acc = 0.0
    while x < 6.0:
        acc -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    tail = f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))
    return acc + math.log(x) - 0.5 / x - tail


def mixture_concentration(alpha: float) -> float:
    """Prior concentration (in observations) that makes a mixture boundary tightest at `T_OPT`.

    For a normal mixture with prior precision rho the boundary at intrinsic time V is
    tightest when rho = V / (2 log(1/alpha) + log(1 + 2 log(1/alpha))) (Howard et al.
    2021, eq. (15)); expressed per unit variance that is a sample count.

    >>> round(mixture_concentration(0.05))
    2520
    """
    two_l = 2.0 * math.log(1.0 / _alpha(alpha))
    return T_OPT / (two_l + math.log1p(two_l))


# --------------------------------------------------------------------------- ranks


def _rank_bounds(p: FloatArray, t: FloatArray, alpha: float) -> tuple[FloatArray, FloatArray]:
    """Roots S_lo <= t p <= S_hi of log M_t(S) = log(1/alpha) (1-d arrays, t > 0).

    M_t(S) = B(a + S, b + t - S) / B(a, b) / (p^S (1-p)^(t-S)) is the beta-binomial
    mixture of likelihood ratios with prior Beta(r p, r (1-p)). log M_t is convex in S
    with its minimum (< 0) near t p, so each side has at most one root. Newton's method
    started outside the root converges monotonically from outside, so every iterate is
    a conservative (wider) answer.
    """
    big_l = math.log(1.0 / alpha)
    r = mixture_concentration(alpha)
    f, df = _log_mixture(p, t, r, big_l)

    var = p * (1.0 - p)
    v, rho = var * t, var * (r + 1.0)
    # Normal-mixture approximation plus a Bernstein-style skew term: close to the root
    # and usually outside it; pushed outwards below until it is.
    width = np.sqrt((v + rho) * (np.log1p(v / rho) + 2.0 * big_l))
    every = np.arange(p.size)
    roots = []
    for side in (1.0, -1.0):
        reach = (1.0 - p) if side > 0 else p
        end = t if side > 0 else np.zeros_like(t)
        dist = np.minimum(width + reach * big_l / 3.0 + 1.0, t)
        s = np.clip(t * p + side * dist, 0.0, t)
        fs = f(s, every)
        for _ in range(12):
            inside = fs < 0.0
            if not inside.any():
                break
            dist = np.where(inside, np.minimum(dist * 1.6, t), dist)
            s = np.where(inside, np.clip(t * p + side * dist, 0.0, t), s)
            fs = np.where(inside, f(s, every), fs)
        # Where even the end point is inside there is no root on this side.
        f_end = f(end, every)
        s = np.where(f_end < 0.0, end, np.where(fs < 0.0, end, s))
        active = np.flatnonzero(f_end >= 0.0)
        for _ in range(_NEWTON_MAX):
            if active.size == 0:
                break
            cur = s[active]
            step = f(cur, active) / df(cur, active)
            new = np.clip(cur - step, 0.0, t[active])
            s[active] = new
            done = np.abs(new - cur) <= 1e-10 * (1.0 + t[active])
            active = active[~done]
        roots.append(s)
    hi, lo = roots
    return lo, hi


def _live_rank_radius(p: FloatArray, t: FloatArray, alpha: float) -> FloatArray:
    p, t = np.broadcast_arrays(p, t)
    flat_p, flat_t = p.ravel(), t.ravel()
    out = np.ones(flat_p.shape, dtype=np.float64)
    pos = np.flatnonzero(flat_t > 0.0)
    if pos.size:
        pp, tt = flat_p[pos], flat_t[pos]
        lo, hi = _rank_bounds(pp, tt, alpha)
        out[pos] = np.maximum(hi / tt - pp, pp - lo / tt)
    return out.reshape(p.shape)


@lru_cache(maxsize=65_536)
def _live_rank_radius_scalar(p: float, t: float, alpha: float) -> float:
    """`_rank_bounds` for one (p, t) in plain Python: ~20x faster than 1-element arrays."""
    if t <= 0.0:
        return 1.0
    big_l = math.log(1.0 / alpha)
    r = mixture_concentration(alpha)
    a, b = r * p, r * (1.0 - p)
    log_q = math.log1p(-p)
    drift = log_q - math.log(p)
    const = -math.lgamma(a + b + t) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    const -= t * log_q + big_l

    def f(s: float) -> float:
        return math.lgamma(a + s) + math.lgamma(b + t - s) + s * drift + const

    var = p * (1.0 - p)
    v, rho = var * t, var * (r + 1.0)
    width = math.sqrt((v + rho) * (math.log1p(v / rho) + 2.0 * big_l))
    radius = 0.0
    for side in (1.0, -1.0):
        end = t if side > 0 else 0.0
        if f(end) < 0.0:
            radius = max(radius, side * (end / t - p))
            continue
        reach = (1.0 - p) if side > 0 else p
        dist = min(width + reach * big_l / 3.0 + 1.0, t)
        s = min(max(t * p + side * dist, 0.0), t)
        for _ in range(12):
            if f(s) >= 0.0:
                break
            dist = min(dist * 1.6, t)
            s = min(max(t * p + side * dist, 0.0), t)
        else:
            s = end
        if f(s) < 0.0:
            s = end
        for _ in range(_NEWTON_MAX):
            slope = _digamma(a + s) - _digamma(b + t - s) + drift
            new = min(max(s - f(s) / slope, 0.0), t)
            done = abs(new - s) <= 1e-10 * (1.0 + t)
            s = new
            if done:
                break
        radius = max(radius, side * (s / t - p))
    return radius


def live_rank_radius(p: npt.ArrayLike, t: npt.ArrayLike, alpha: float) -> FloatArray:
    """Time-uniform radius u_t with P(exists t: |S_t/t - p| > u_t) <= alpha, S_t ~ Bin(t, p).

    S_t counts the live values below the true p-quantile, so the true live p-quantile
    lies in [Q_t(p - u_t), Q_t(p + u_t)] for all t at once (Q_t: empirical quantile
    function). Two-sided beta-binomial mixture boundary (Howard et al. 2021, Prop. 7;
    Howard & Ramdas 2022, Sec. 3). t = 0 gives 1 (vacuous).

    >>> float(live_rank_radius(0.5, 10_000, 5e-4)) < 0.025
    True
    """
    a = _alpha(alpha)
    if _plain(p, t):
        value = _live_rank_radius_scalar(_p_scalar(p), _count_scalar("t", t), a)  # type: ignore[arg-type]
        return np.asarray(value, dtype=np.float64)
    pa, ta = _probability("p", p), _count("t", t)
    if _scalar(pa, ta):
        return np.asarray(_live_rank_radius_scalar(float(pa), float(ta), a), dtype=np.float64)
    return _live_rank_radius(pa, ta, a)


def _mixture_root(
    p: FloatArray, t: FloatArray, r: FloatArray, thr: FloatArray, side: float
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Root on one side of t p of log M_t(S) = thr (1-d arrays, t > 0), M_t the
    beta-binomial mixture with prior Beta(r p, r (1-p)) (see `_rank_bounds`).

    Returns (root, found): where log M_t stays below thr up to the end (0 or t) of
    that side there is no root; ``found`` is False there. Newton's method started
    outside the root converges monotonically from outside: every iterate is
    conservative (further from t p).
    """
    f, df = _log_mixture(p, t, r, thr)

    every = np.arange(p.size)
    var = p * (1.0 - p)
    v, rho = var * t, var * (r + 1.0)
    big_l = np.maximum(thr, 0.0)
    width = np.sqrt((v + rho) * (np.log1p(v / rho) + 2.0 * big_l))
    reach = (1.0 - p) if side > 0 else p
    end = t if side > 0 else np.zeros_like(t)
    dist = np.minimum(width + reach * big_l / 3.0 + 1.0, t)
    s = np.clip(t * p + side * dist, 0.0, t)
    fs = f(s, every)
    for _ in range(12):
        inside = fs < 0.0
        if not inside.any():
            break
        dist = np.where(inside, np.minimum(dist * 1.6, t), dist)
        s = np.where(inside, np.clip(t * p + side * dist, 0.0, t), s)
        fs = np.where(inside, f(s, every), fs)
    f_end = f(end, every)
    found = f_end >= 0.0
    s = np.where(found & (fs >= 0.0), s, end)
    active = np.flatnonzero(found)
    for _ in range(_NEWTON_MAX):
        if active.size == 0:
            break
        cur = s[active]
        step = f(cur, active) / df(cur, active)
        new = np.clip(cur - step, 0.0, t[active])
        s[active] = new
        done = np.abs(new - cur) <= 1e-10 * (1.0 + t[active])
        active = active[~done]
    return s, found


def _live_rank_bounds(p: FloatArray, t: FloatArray, alpha: float) -> tuple[FloatArray, FloatArray]:
    p, t = np.broadcast_arrays(p, t)
    flat_p, flat_t = p.ravel().astype(np.float64), t.ravel().astype(np.float64)
    lower = np.ones(flat_p.shape, dtype=np.float64)
    upper = np.ones(flat_p.shape, dtype=np.float64)
    pos = np.flatnonzero(flat_t > 0.0)
    if pos.size:
        pp, tt = flat_p[pos], flat_t[pos]
        big_l = math.log(1.0 / alpha)
        # Prior concentration (in observations) tightest at intrinsic time RANK_V_OPT.
        r = RANK_V_OPT / (pp * (1.0 - pp)) / (2.0 * big_l + math.log1p(2.0 * big_l))
        a, b = r * pp, r * (1.0 - pp)
        # Prior mass on each side of p, and the posterior mass given S (I_p is the
        # regularized incomplete beta function; the upper side uses I_{1-p}(b, a)).
        prior = (special.betainc(a, b, pp), special.betainc(b, a, 1.0 - pp))
        for i, side in enumerate((-1.0, 1.0)):
            thr0 = big_l + np.log(prior[i])
            s0, _ = _mixture_root(pp, tt, r, thr0, side)
            if side < 0:
                post = special.betainc(a + s0, b + tt - s0, pp)
            else:
                post = special.betainc(b + tt - s0, a + s0, 1.0 - pp)
            # Beyond s0 (further from t p) the posterior mass on this side is at least
            # post, so M^side >= M_t post / prior there: the root of M_t = prior /
            # (alpha post) is a conservative root of M^side = 1 / alpha.
            thr1 = thr0 - np.log(np.maximum(post, 1e-300))
            s1, found = _mixture_root(pp, tt, r, thr1, side)
            radius = side * (s1 / tt - pp)
            (lower if side < 0 else upper)[pos] = np.where(found, radius, 1.0)
    return lower.reshape(p.shape), upper.reshape(p.shape)


@lru_cache(maxsize=65_536)
def _live_rank_bounds_scalar(p: float, t: float, alpha: float) -> tuple[float, float]:
    lo, hi = _live_rank_bounds(np.array([p]), np.array([t]), alpha)
    return float(lo[0]), float(hi[0])


def live_rank_bounds(
    p: npt.ArrayLike, t: npt.ArrayLike, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """One-sided time-uniform radii (u_minus, u_plus) of S_t ~ Bin(t, p), each at ``alpha``:

        P(exists t: S_t / t < p - u_minus) <= alpha,   P(exists t: S_t / t > p + u_plus) <= alpha.

    S_t counts the live values below the true p-quantile, so Q_t(p - u_minus) is a
    lower bound of the true p-quantile valid at every t at once with probability
    >= 1 - alpha, and Q_t(p + u_plus) likewise an upper bound. Each side is the
    beta-binomial mixture of `live_rank_radius` with its prior truncated to that side
    of p (Howard et al. 2021, Sec. 3.2, one-sided mixtures): M^- = M_t P(q < p | S) /
    P(q < p), a martingale under p. Tightest at intrinsic time p (1-p) t = `RANK_V_OPT`. A side
    without a bound (too few values) gives 1 (vacuous).

    >>> lo, hi = live_rank_bounds(0.99, 100_000, 5e-4)
    >>> bool(0.001 < float(lo) < float(live_rank_radius(0.99, 100_000, 5e-4)))
    True
    """
    a = _alpha(alpha)
    if _plain(p, t):
        lo, hi = _live_rank_bounds_scalar(_p_scalar(p), _count_scalar("t", t), a)  # type: ignore[arg-type]
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    pa, ta = _probability("p", p), _count("t", t)
    if _scalar(pa, ta):
        lo, hi = _live_rank_bounds_scalar(float(pa), float(ta), a)
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return _live_rank_bounds(pa, ta, a)


def _fixed_rank_bounds(p: FloatArray, n: FloatArray, alpha: float) -> tuple[FloatArray, FloatArray]:
    p, n = np.broadcast_arrays(p, n)
    n_int = np.floor(n)
    # P(S > k_hi) <= alpha and P(S < k_lo) <= alpha for S ~ Binomial(n, p).
    k_hi = stats.binom.ppf(1.0 - alpha, n_int, p)
    k_lo = stats.binom.ppf(alpha, n_int, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(n_int > 0, p - k_lo / n_int, 1.0).astype(np.float64)
        upper = np.where(n_int > 0, k_hi / n_int - p, 1.0).astype(np.float64)
    return lower, upper


@lru_cache(maxsize=65_536)
def _fixed_rank_bounds_scalar(p: float, n: float, alpha: float) -> tuple[float, float]:
    lo, hi = _fixed_rank_bounds(np.array(p), np.array(n), alpha)
    return float(lo), float(hi)


def fixed_rank_bounds(
    p: npt.ArrayLike, n: npt.ArrayLike, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """One-sided fixed-sample radii (u_minus, u_plus) of S ~ Bin(n, p), each at ``alpha``
    (exact binomial tails): P(S/n < p - u_minus) <= alpha, P(S/n > p + u_plus) <= alpha.

    >>> lo, hi = fixed_rank_bounds(0.5, 100, 0.025)
    >>> round(float(lo), 2), round(float(hi), 2)
    (0.1, 0.1)
    """
    a = _alpha(alpha)
    if _plain(p, n):
        lo, hi = _fixed_rank_bounds_scalar(_p_scalar(p), _count_scalar("n", n), a)  # type: ignore[arg-type]
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    pa, na = _probability("p", p), _count("n", n)
    if _scalar(pa, na):
        lo, hi = _fixed_rank_bounds_scalar(float(pa), float(na), a)
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return _fixed_rank_bounds(pa, na, a)


def _fixed_rank_radius(p: FloatArray, n: FloatArray, alpha: float) -> FloatArray:
    p, n = np.broadcast_arrays(p, n)
    n_int = np.floor(n)
    # P(S > k_hi) <= alpha/2 and P(S < k_lo) <= alpha/2 for S ~ Binomial(n, p).
    k_hi = stats.binom.ppf(1.0 - alpha / 2.0, n_int, p)
    k_lo = stats.binom.ppf(alpha / 2.0, n_int, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.maximum(k_hi / n_int - p, p - k_lo / n_int)
    out: FloatArray = np.where(n_int > 0, u, 1.0).astype(np.float64)
    return out


@lru_cache(maxsize=65_536)
def _fixed_rank_radius_scalar(p: float, n: float, alpha: float) -> float:
    return float(_fixed_rank_radius(np.array(p), np.array(n), alpha))


def fixed_rank_radius(p: npt.ArrayLike, n: npt.ArrayLike, alpha: float) -> FloatArray:
    """Fixed-sample radius u with P(|S/n - p| > u) <= alpha, S ~ Bin(n, p) (exact tails, alpha/2 each).

    >>> round(float(fixed_rank_radius(0.5, 100, 0.05)), 2)
    0.1
    """
    a = _alpha(alpha)
    if _plain(p, n):
        value = _fixed_rank_radius_scalar(_p_scalar(p), _count_scalar("n", n), a)  # type: ignore[arg-type]
        return np.asarray(value, dtype=np.float64)
    pa, na = _probability("p", p), _count("n", n)
    if _scalar(pa, na):
        return np.asarray(_fixed_rank_radius_scalar(float(pa), float(na), a), dtype=np.float64)
    return _fixed_rank_radius(pa, na, a)


# --------------------------------------------------------------------------- proportions

# Prior of the proportion mixture: uniform. Any fixed prior gives a valid sequence;
# the uniform one keeps the set an interval (the log-mixture is convex in q) and costs
# about 0.5 log(t / (2 pi q (1-q))) nats over a fixed-sample bound.
_PRIOR_A: Final = 1.0
_PRIOR_B: Final = 1.0


def _live_proportion_bounds(
    k: FloatArray, t: FloatArray, alpha: float
) -> tuple[FloatArray, FloatArray]:
    k, t = np.broadcast_arrays(k, t)
    shape = k.shape
    kk, tt = k.ravel().astype(np.float64), t.ravel().astype(np.float64)
    lower = np.zeros(kk.shape, dtype=np.float64)
    upper = np.ones(kk.shape, dtype=np.float64)
    pos = tt > 0.0
    if pos.any():
        kp, tp = kk[pos], tt[pos]
        fail = tp - kp
        # h(q) = log M_t(q) - log(1/alpha); the sequence is {q : h(q) < 0}.
        const = (
            special.betaln(_PRIOR_A + kp, _PRIOR_B + fail)
            - special.betaln(_PRIOR_A, _PRIOR_B)
            + math.log(alpha)
        )
        mle = kp / tp

        def h(q: FloatArray, idx: npt.NDArray[np.intp]) -> FloatArray:
            out: FloatArray = (
                const[idx] - special.xlogy(kp[idx], q) - special.xlog1py(fail[idx], -q)
            )
            return out

        def slope(q: FloatArray, idx: npt.NDArray[np.intp]) -> FloatArray:
            out: FloatArray = -kp[idx] / q + fail[idx] / (1.0 - q)
            return out

        # h is convex with h(mle) < 0: Newton started where h >= 0 approaches each root
        # monotonically from outside, so every iterate is conservative.
        for side in (-1.0, 1.0):
            idx = np.flatnonzero(kp > 0.0) if side < 0 else np.flatnonzero(fail > 0.0)
            gap = 0.5 * (mle[idx] if side < 0 else 1.0 - mle[idx])
            edge = 0.0 if side < 0 else 1.0
            todo = np.arange(idx.size)
            while todo.size:
                q = edge - side * gap[todo]
                inside = h(q, idx[todo]) < 0.0
                gap[todo[inside]] *= 0.5
                todo = todo[inside]
            q = edge - side * gap
            active = np.arange(idx.size)
            for _ in range(_NEWTON_MAX):
                if active.size == 0:
                    break
                cur, ids = q[active], idx[active]
                new = cur - h(cur, ids) / slope(cur, ids)
                new = np.minimum(new, mle[ids]) if side < 0 else np.maximum(new, mle[ids])
                q[active] = new
                scale = cur if side < 0 else 1.0 - new
                active = active[np.abs(new - cur) > 1e-13 * scale]
            target = lower if side < 0 else upper
            sub = target[pos]
            sub[idx] = q
            target[pos] = sub
    return lower.reshape(shape), upper.reshape(shape)


@lru_cache(maxsize=65_536)
def _live_proportion_scalar(k: float, t: float, alpha: float) -> tuple[float, float]:
    """`_live_proportion_bounds` for one (k, t) in plain Python (Newton instead of bisection).

    h is convex, so Newton's method started where h >= 0 approaches the root
    monotonically from outside: every iterate is conservative.
    """
    if t <= 0.0:
        return 0.0, 1.0
    fail = t - k
    const = (
        math.lgamma(_PRIOR_A + k)
        + math.lgamma(_PRIOR_B + fail)
        - math.lgamma(_PRIOR_A + _PRIOR_B + t)
        - (math.lgamma(_PRIOR_A) + math.lgamma(_PRIOR_B) - math.lgamma(_PRIOR_A + _PRIOR_B))
        + math.log(alpha)
    )

    def h(q: float) -> float:
        return const - (k * math.log(q) if k else 0.0) - (fail * math.log1p(-q) if fail else 0.0)

    def slope(q: float) -> float:
        return -k / q + fail / (1.0 - q)

    mle = k / t
    lower, upper = 0.0, 1.0
    if k > 0.0:
        q = 0.5 * mle
        while h(q) < 0.0:
            q *= 0.5
        for _ in range(_NEWTON_MAX):
            new = min(q - h(q) / slope(q), mle)
            if new - q <= 1e-13 * q:
                break
            q = new
        lower = q
    if fail > 0.0:
        gap = 0.5 * (1.0 - mle)
        while h(1.0 - gap) < 0.0:
            gap *= 0.5
        q = 1.0 - gap
        for _ in range(_NEWTON_MAX):
            new = max(q - h(q) / slope(q), mle)
            if q - new <= 1e-13 * (1.0 - new):
                break
            q = new
        upper = q
    return lower, upper


def live_proportion_bounds(
    k: npt.ArrayLike, t: npt.ArrayLike, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Time-uniform two-sided confidence sequence for a Bernoulli mean from k successes of t.

    Beta-binomial mixture with a uniform prior: the set of q whose mixture likelihood
    ratio stays below 1/alpha. Variance-adaptive (tight near 0 and 1). t = 0 gives (0, 1).

    >>> lo, hi = live_proportion_bounds(0, 1000, 0.01)
    >>> float(lo), float(hi) < 0.012
    (0.0, True)
    """
    a = _alpha(alpha)
    if _plain(k, t):
        tf, kf = _count_scalar("t", t), _count_scalar("k", k)  # type: ignore[arg-type]
        if kf > tf:
            raise ValueError(f"k must be <= t, got k={k!r}, t={t!r}")
        lo, hi = _live_proportion_scalar(kf, tf, a)
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    ta = _count("t", t)
    ka = _successes(k, ta, "t")
    if _scalar(ka, ta):
        lo, hi = _live_proportion_scalar(float(ka), float(ta), a)
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return _live_proportion_bounds(ka, ta, a)


def _fixed_proportion_bounds(
    k: FloatArray, n: FloatArray, alpha: float
) -> tuple[FloatArray, FloatArray]:
    k, n = np.broadcast_arrays(k, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Beta quantiles; the k = 0 and k = n ends are replaced below.
        lo = special.betaincinv(np.maximum(k, 1e-300), n - k + 1.0, alpha / 2.0)
        hi = special.betaincinv(k + 1.0, np.maximum(n - k, 1e-300), 1.0 - alpha / 2.0)
    lower: FloatArray = np.where(k > 0.0, lo, 0.0).astype(np.float64)
    upper: FloatArray = np.where(k < n, hi, 1.0).astype(np.float64)
    return lower, upper


@lru_cache(maxsize=65_536)
def _fixed_proportion_scalar(k: float, n: float, alpha: float) -> tuple[float, float]:
    lo, hi = _fixed_proportion_bounds(np.array(k), np.array(n), alpha)
    return float(lo), float(hi)


def fixed_proportion_bounds(
    k: npt.ArrayLike, n: npt.ArrayLike, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Clopper-Pearson (exact) two-sided interval for a proportion: k successes of n.

    >>> lo, hi = fixed_proportion_bounds(5, 10, 0.05)
    >>> round(float(lo), 3), round(float(hi), 3)
    (0.187, 0.813)
    """
    a = _alpha(alpha)
    if _plain(k, n):
        nf, kf = _count_scalar("n", n), _count_scalar("k", k)  # type: ignore[arg-type]
        if kf > nf:
            raise ValueError(f"k must be <= n, got k={k!r}, n={n!r}")
        lo, hi = _fixed_proportion_scalar(kf, nf, a)
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    na = _count("n", n)
    ka = _successes(k, na, "n")
    if _scalar(ka, na):
        lo, hi = _fixed_proportion_scalar(float(ka), float(na), a)
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return _fixed_proportion_bounds(ka, na, a)


# --------------------------------------------------------------------------- CDFs


def _lil_error(c: float, a: float) -> float:
    """Crossing probability bound of Howard & Ramdas (2022), Theorem 2, minimised over eta."""

    def bound(eta: float) -> float:
        gamma_sq = 2.0 / eta * (a - math.sqrt(2.0 * (eta - 1.0) / c)) ** 2
        if gamma_sq <= 1.0:
            return math.inf
        return 4.0 * math.exp(-gamma_sq * c) * (1.0 + 1.0 / ((gamma_sq - 1.0) * math.log(eta)))

    # eta must satisfy sqrt(eta / 2) + sqrt(2 (eta - 1) / C) < A (so that gamma > 1 is possible).
    eta_max = optimize.brentq(
        lambda e: math.sqrt(e / 2.0) + math.sqrt(2.0 * (e - 1.0) / c) - a, 1.0, 2.0 * a * a
    )
    res = optimize.minimize_scalar(
        bound, bounds=(1.0 + 1e-9, eta_max), method="bounded", options={"xatol": 1e-10}
    )
    return float(min(res.fun, bound(0.5 * (1.0 + eta_max))))


@lru_cache(maxsize=256)
def _lil_constant(alpha: float) -> float:
    """Smallest C whose Theorem 2 crossing bound is <= alpha (rounded up for safety)."""
    a = CDF_LIL_CONSTANT
    hi = 5.0
    while _lil_error(hi, a) > alpha:
        hi *= 2.0
    c = optimize.brentq(lambda x: _lil_error(x, a) - alpha, 1.0, hi, xtol=1e-10)
    return float(c) * (1.0 + 1e-9)


def live_cdf_radius(t: npt.ArrayLike, alpha: float) -> FloatArray:
    """Time-uniform DKW radius: P(exists t: sup_x |F_t(x) - F(x)| > r_t) <= alpha.

    r_t = 0.85 sqrt((log log(e t) + C_alpha) / t) for t >= 1 (Howard & Ramdas 2022,
    Theorem 2 with m = 1, A = 0.85; C_alpha solved numerically from the theorem's
    error bound, e.g. C = 8.12 at alpha = 0.05). Capped at 1; t < 1 gives 1.

    >>> round(float(live_cdf_radius(1000, 0.05)), 4)
    0.0858
    """
    c = _lil_constant(_alpha(alpha))
    ta = _count("t", t)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = CDF_LIL_CONSTANT * np.sqrt((np.log1p(np.log(ta)) + c) / ta)
    out: FloatArray = np.where(ta >= 1.0, np.minimum(r, 1.0), 1.0).astype(np.float64)
    return out


def fixed_cdf_radius(n: npt.ArrayLike, alpha: float) -> FloatArray:
    """DKW radius with Massart's constant: sqrt(log(2/alpha) / (2n)), capped at 1.

    >>> round(float(fixed_cdf_radius(1000, 0.05)), 4)
    0.0429
    """
    a = _alpha(alpha)
    na = _count("n", n)
    with np.errstate(divide="ignore"):
        r = np.sqrt(math.log(2.0 / a) / (2.0 * na))
    out: FloatArray = np.minimum(r, 1.0).astype(np.float64)
    return out


# --------------------------------------------------------------------------- means


def live_mean_bounds(
    mean: npt.ArrayLike, t: npt.ArrayLike, lo: float, hi: float, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Time-uniform confidence sequence for the mean of values in [lo, hi], clipped to [lo, hi].

    Two-sided normal-mixture boundary for a sub-Gaussian sum with variance proxy
    sigma^2 t, sigma = (hi - lo) / 2 (Hoeffding's lemma): |S_t - t mu| <=
    sqrt((V + rho) log((V + rho) / (rho alpha^2))), V = sigma^2 t, rho = sigma^2
    `mixture_concentration(alpha)`. t = 0 gives (lo, hi).

    >>> lo, hi = live_mean_bounds(0.5, 10_000, 0.0, 1.0, 0.05)
    >>> 0.47 < float(lo) < 0.5 < float(hi) < 0.53
    True
    """
    a = _alpha(alpha)
    low, high = _range(lo, hi)
    m, ta = _array("mean", mean), _count("t", t)
    sigma_sq = ((high - low) / 2.0) ** 2
    rho = sigma_sq * mixture_concentration(a)
    v = sigma_sq * ta
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt((v + rho) * (np.log1p(v / rho) + 2.0 * math.log(1.0 / a))) / ta
    half = np.where(ta > 0.0, half, np.inf)
    lower: FloatArray = np.clip(m - half, low, high).astype(np.float64)
    upper: FloatArray = np.clip(m + half, low, high).astype(np.float64)
    return lower, upper


def fixed_mean_bounds(
    mean: npt.ArrayLike, n: npt.ArrayLike, lo: float, hi: float, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Hoeffding interval for the mean of n values in [lo, hi], clipped to [lo, hi].

    >>> lo, hi = fixed_mean_bounds(0.5, 10_000, 0.0, 1.0, 0.05)
    >>> round(float(hi) - 0.5, 4)
    0.0136
    """
    a = _alpha(alpha)
    low, high = _range(lo, hi)
    m, na = _array("mean", mean), _count("n", n)
    with np.errstate(divide="ignore"):
        half = (high - low) * np.sqrt(math.log(2.0 / a) / (2.0 * na))
    lower: FloatArray = np.clip(m - half, low, high).astype(np.float64)
    upper: FloatArray = np.clip(m + half, low, high).astype(np.float64)
    return lower, upper


# --------------------------------------------------------------------------- batched radii
# The mean bounds above take one range and one alpha; a comparison of many series
# needs one half-width per series (each with its own range, or its own alpha). These
# give the half-width for values in a range of width 1 (scale by the width), with
# alpha broadcast like the counts; no clipping.


def _alphas(alpha: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(alpha, dtype=np.float64)
    if not bool(((arr > 0.0) & (arr < 1.0)).all()):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return arr


def live_mean_radius(t: npt.ArrayLike, alpha: npt.ArrayLike) -> FloatArray:
    """Half-width of `live_mean_bounds` for values in a range of width 1 (unclipped; inf at t = 0).

    >>> lo, _ = live_mean_bounds(0.5, 10_000, 0.0, 1.0, 0.05)
    >>> bool(abs(0.5 - float(lo) - float(live_mean_radius(10_000, 0.05))) < 1e-15)
    True
    """
    a, ta = _alphas(alpha), _count("t", t)
    two_l = 2.0 * np.log(1.0 / a)
    rho = 0.25 * (T_OPT / (two_l + np.log1p(two_l)))  # sigma^2 mixture_concentration(alpha)
    v = 0.25 * ta
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt((v + rho) * (np.log1p(v / rho) + two_l)) / ta
    out: FloatArray = np.where(ta > 0.0, half, np.inf).astype(np.float64)
    return out


def fixed_mean_radius(n: npt.ArrayLike, alpha: npt.ArrayLike) -> FloatArray:
    """Half-width of `fixed_mean_bounds` for values in a range of width 1 (unclipped).

    >>> round(float(fixed_mean_radius(10_000, 0.05)), 4)
    0.0136
    """
    a, na = _alphas(alpha), _count("n", n)
    with np.errstate(divide="ignore"):
        out: FloatArray = np.sqrt(np.log(2.0 / a) / (2.0 * na)).astype(np.float64)
    return out


_Fn = Callable[[FloatArray, npt.NDArray[np.intp]], FloatArray]


def _log_mixture(
    p: FloatArray, t: FloatArray, r: FloatArray | float, thr: FloatArray | float
) -> tuple[_Fn, _Fn]:
    """log M_t(s) - thr of the beta-binomial mixture (prior Beta(r p, r (1 - p))) as a
    function of the count s below the quantile, and its derivative in s; both take
    the indices of the entries they evaluate (Newton iterates on a shrinking subset)."""
    a, b = r * p, r * (1.0 - p)
    log_p, log_q = np.log(p), np.log1p(-p)
    const = -special.gammaln(a + b + t) - special.betaln(a, b) - t * log_q - thr
    drift = log_q - log_p

    def f(s: FloatArray, idx: npt.NDArray[np.intp]) -> FloatArray:
        out: FloatArray = (
            special.gammaln(a[idx] + s)
            + special.gammaln(b[idx] + t[idx] - s)
            + s * drift[idx]
            + const[idx]
        )
        return out

    def df(s: FloatArray, idx: npt.NDArray[np.intp]) -> FloatArray:
        out: FloatArray = (
            special.digamma(a[idx] + s) - special.digamma(b[idx] + t[idx] - s) + drift[idx]
        )
        return out

    return f, df
