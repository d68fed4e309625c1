"""The effects of :mod:`sidecar.stats.effects`, for many series at once, with the baseline cached.

A comparison checks every series of a model against one frozen baseline every
few seconds. :func:`~sidecar.stats.effects.numeric_effects` does all of its work
per call; :class:`EffectEvaluator` does the baseline side once (fixed-sample
radii, baseline quantiles at every level a bound needs, the baseline's CDF on its
quantile grid, ranges, category tables) and, at each :meth:`EffectEvaluator.evaluate`,
computes the live-side radii of all series in one vectorised call per function,
makes at most two calls into each live state (quantiles, CDF) and assembles the effects with
numpy across series. The results equal the reference functions' for the same
alphas (up to floating-point rounding; ``tests/stats/test_evaluator.py``).

Alphas are read once, at construction: a family's alpha per test is fixed for an
epoch. Baseline states must not change after construction.

>>> import numpy as np
>>> from sidecar.series import NumericState
>>> rng = np.random.default_rng(0)
>>> base, live = NumericState(), NumericState()
>>> base.add(rng.normal(size=50_000))
>>> live.add(rng.normal(0.2, 1.0, size=10_000))
>>> ev = EffectEvaluator({"x": base}, lambda key: ("ks",), lambda key, name: 1e-4)
>>> ev.evaluate({"x": live})["x"]["ks"].lower > 0.02
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Mapping
from itertools import repeat
from typing import Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from sidecar.series import MANTISSA_BITS, CategoricalState, NumericState
from sidecar.stats.effects import (
    _BASE_GRID,
    _CDF_SLACK,
    _DECILES,
    _IQR,
    _LEVELS,
    _MIN_ALPHA,
    _PSI_FLOOR,
    _RANK_SLACK,
    _UNITS,
    _W1_LEVELS,
    CATEGORICAL_EFFECTS,
    NUMERIC_EFFECTS,
    Effect,
    end_alpha,
)
from sidecar.stats.sequences import (
    fixed_cdf_radius,
    fixed_mean_bounds,
    fixed_mean_radius,
    fixed_proportion_bounds,
    fixed_rank_bounds,
    live_cdf_radius,
    live_mean_bounds,
    live_mean_radius,
    live_proportion_bounds,
    live_rank_bounds,
)

__all__ = ["EffectEvaluator"]

K = TypeVar("K", bound=Hashable)
Floats = npt.NDArray[np.float64]

_NAN: Final = math.nan
_INF: Final = math.inf
_G: Final = _BASE_GRID.size  # points of the baseline's quantile grid
_QUANTILE_NAMES: Final = frozenset(
    f"{prefix}_{kind}" for prefix, _ in _LEVELS for kind in ("rel", "abs")
)
_MEAN_NAMES: Final = ("mean_abs", "mean_rel")
_DIST_NAMES: Final = frozenset(("ks", "w1_iqr", "psi"))
_CAT_UNITS: Final = {
    "tvd": "distance",
    "chi2": "statistic",
    "new_category_share": "share",
    "vanished_share": "share",
    "missing_rate": "points",
}
_NUMERIC_SET: Final = frozenset(NUMERIC_EFFECTS)
_BIT_VALUES: Final = np.arange(MANTISSA_BITS + 1)  # the bins of a bits histogram
_CATEGORICAL_SET: Final = frozenset(CATEGORICAL_EFFECTS)


def _none(name: str, unit: str) -> Effect:
    return Effect(name, _NAN, _NAN, _NAN, unit)


def _relative(
    name: str, est: float, l_lo: float, l_hi: float, rel: tuple[float, float, float] | None
) -> Effect:
    """`effects._relative` with the baseline side prepared by `_rel_side`."""
    if rel is None:
        return Effect(name, est, _NAN, _NAN, "relative")
    c_lo, c_hi, k = rel
    lower = min(l_lo / c_lo, l_lo / c_hi) + k
    upper = max(l_hi / c_lo, l_hi / c_hi) + k
    return Effect(name, est, lower, upper, "relative")


def _rel_side(b_lo: float, b_hi: float) -> tuple[float, float, float] | None:
    if b_lo > 0.0:
        return (b_lo, b_hi, -1.0)
    if b_hi < 0.0:
        return (-b_hi, -b_lo, 1.0)
    return None


def _rel_estimate(live: float, base: float) -> float:
    return (live - base) / abs(base) if base != 0.0 else _NAN


def _pair(bounds: tuple[Floats, Floats]) -> tuple[float, float]:
    return float(bounds[0]), float(bounds[1])


class _Plan:
    """One quantile level at one alpha: the baseline's end points and what to emit."""

    __slots__ = ("abs_name", "alpha", "b_hi", "b_lo", "b_mid", "p", "rel", "rel_name", "spread")

    def __init__(self, p: float, alpha: float, abs_name: str | None, rel_name: str | None) -> None:
        self.p = p
        self.alpha = alpha
        self.abs_name = abs_name
        self.rel_name = rel_name
        self.spread = _RANK_SLACK * math.sqrt(p * (1.0 - p))  # digest rank slack x compression
        self.b_lo = self.b_mid = self.b_hi = _NAN
        self.rel: tuple[float, float, float] | None = None


class _NumericBase:
    """Everything about one numeric baseline series that does not depend on live data."""

    __slots__ = (
        "alpha",
        "cdf_fixed",
        "cdf_slack",
        "dist",
        "fb_grid",
        "grid",
        "hi",
        "iqr",
        "levels",
        "lo",
        "mean",
        "mean_fixed",
        "mid",
        "missing",
        "missing_fixed",
        "n",
        "n_oor",
        "oor_fixed",
        "plans",
        "points",
        "precision",
        "psi_pb",
        "state",
        "total",
        "want",
    )

    def __init__(
        self,
        state: NumericState,
        want: tuple[str, ...],
        alpha: dict[str, float],
        direction: Mapping[str, str] | None = None,
    ) -> None:
        self.state = state
        self.want = want
        self.alpha = alpha
        wanted = set(want)
        n = state.count
        self.n = n
        self.n_oor = state.out_of_range
        self.missing = state.missing
        self.total = n + state.missing + state.out_of_range
        self.lo, self.hi = state.value_range()
        self.missing_fixed: tuple[float, float] | None = None
        if "missing_rate" in wanted and self.total:
            self.missing_fixed = _pair(
                fixed_proportion_bounds(state.missing, self.total, alpha["missing_rate"] / 2.0)
            )
        self.oor_fixed: tuple[float, float] | None = None
        if "out_of_range_rate" in wanted and n:
            self.oor_fixed = _pair(
                fixed_proportion_bounds(
                    self.n_oor, n + self.n_oor, alpha["out_of_range_rate"] / 2.0
                )
            )
        self.precision: tuple[float, int, float, float, float] | None = None
        if wanted & {"precision_bits", "distinct_share"}:
            pb = state.precision
            if pb is not None and pb.count:
                mb = pb.mean_bits
                b_lo, b_hi = (0.0, 0.0)
                if "precision_bits" in wanted:
                    b_lo, b_hi = _pair(
                        fixed_mean_bounds(
                            mb, pb.count, 0.0, float(MANTISSA_BITS), alpha["precision_bits"] / 2.0
                        )
                    )
                self.precision = (mb, pb.count, b_lo, b_hi, pb.distinct_share)
        self.cdf_slack = 0.0 if state.is_exact else _CDF_SLACK / state.compression
        self.plans: list[_Plan] = []
        self.mean = _NAN
        self.mean_fixed: dict[str, float] = {}
        self.dist = bool(wanted & _DIST_NAMES)
        self.grid: Floats | None = None
        self.fb_grid: Floats | None = None
        self.mid: Floats | None = None  # baseline quantiles at the W1 midpoints
        self.iqr = _NAN
        self.psi_pb: Floats | None = None
        self.cdf_fixed: dict[str, float] = {}
        # Reused buffers of the live state's quantile levels (3 per plan, then the W1
        # midpoints when w1_iqr is asked for) and CDF points (the grid, then the range's ends).
        self.levels: Floats | None = None
        self.points: Floats | None = None
        if n == 0:
            return
        self._plan_quantiles(wanted, direction or {})
        for name in _MEAN_NAMES:
            if name in wanted:
                self.mean_fixed[name] = float(fixed_mean_radius(n, alpha[name] / 2.0))
        self.mean = state.mean()
        if self.dist:
            grid = state.quantiles(_BASE_GRID)
            self.grid = grid
            self.fb_grid = state.cdf(grid)
            self.iqr = float(grid[_IQR[1]] - grid[_IQR[0]])
            cdfs = self.fb_grid[_DECILES]
            self.psi_pb = np.maximum(np.diff(cdfs, prepend=0.0, append=1.0), _PSI_FLOOR)
            for name in ("ks", "w1_iqr"):
                if name in wanted:
                    self.cdf_fixed[name] = float(fixed_cdf_radius(n, alpha[name] / 2.0))
            if "w1_iqr" in wanted:
                self.mid = state.quantiles(_W1_LEVELS)
        k = 3 * len(self.plans)
        if k or self.mid is not None:
            self.levels = np.concatenate((np.zeros(k), _W1_LEVELS if self.mid is not None else []))
        oor = "out_of_range_rate" in wanted
        if self.dist or oor:
            parts = [self.grid] if self.grid is not None else []
            if oor:
                parts.append(np.array([np.nextafter(self.lo, -_INF), self.hi]))
            self.points = np.concatenate(parts)

    def _plan_quantiles(self, wanted: set[str], direction: Mapping[str, str]) -> None:
        state, n = self.state, self.n
        slack = 0.0 if state.is_exact else 1.0 / state.compression
        levels: list[float] = []
        for prefix, p in _LEVELS:
            names = [f"{prefix}_abs", f"{prefix}_rel"]
            # The level of each end of the interval (one-sided tests spend all on one end).
            ends = {
                name: end_alpha(self.alpha[name], direction.get(name, "both"))
                for name in names
                if name in wanted
            }
            for a in sorted(set(ends.values())):
                plan = _Plan(
                    p,
                    a,
                    names[0] if ends.get(names[0]) == a else None,
                    names[1] if ends.get(names[1]) == a else None,
                )
                lo_b, hi_b = fixed_rank_bounds(p, n, a / 2.0)
                s_b = plan.spread * slack + (0.0 if state.is_exact else 1.0 / n)
                levels += (p - float(lo_b) - s_b, p, p + float(hi_b) + s_b)
                self.plans.append(plan)
        if not levels:
            return
        bv = np.array(levels)
        bq = state.quantiles(np.clip(bv, 0.0, 1.0))
        bq = np.where(bv < 0.0, -_INF, np.where(bv > 1.0, _INF, bq))
        ends = bq.tolist()
        for i, plan in enumerate(self.plans):
            plan.b_lo, plan.b_mid, plan.b_hi = ends[3 * i : 3 * i + 3]
            plan.rel = _rel_side(plan.b_lo, plan.b_hi)


class _CategoricalBase:
    """One categorical baseline series: its table as arrays, and its fixed-sample bounds."""

    __slots__ = (
        "alpha",
        "b",
        "index",
        "m",
        "missing",
        "missing_fixed",
        "n",
        "new_fixed",
        "other",
        "share",
        "total",
        "want",
    )

    def __init__(
        self, state: CategoricalState, want: tuple[str, ...], alpha: dict[str, float]
    ) -> None:
        self.want = want
        self.alpha = alpha
        self.index = {key: i for i, key in enumerate(state.counts)}
        self.m = len(self.index)
        self.other = state.other_count
        self.b = np.array([*state.counts.values(), self.other], dtype=np.float64)
        self.n = state.count
        self.share = self.b / self.n if self.n else self.b
        self.missing = state.missing
        self.total = self.n + state.missing
        self.missing_fixed: tuple[float, float] | None = None
        if "missing_rate" in want and self.total:
            self.missing_fixed = _pair(
                fixed_proportion_bounds(self.missing, self.total, alpha["missing_rate"] / 2.0)
            )
        self.new_fixed = (0.0, 0.0)
        if "new_category_share" in want and self.n:
            self.new_fixed = _pair(
                fixed_proportion_bounds(self.other, self.n, alpha["new_category_share"] / 2.0)
            )


class _Batch:
    """Requests for one vectorised bound function, deduplicated and grouped by alpha."""

    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests: dict[tuple[float, float, float], int] = {}

    def add(self, x: float, t: float, alpha: float) -> int:
        return self.requests.setdefault((x, t, alpha), len(self.requests))

    def solve(
        self, fn: Callable[[Floats, Floats, float], tuple[Floats, Floats]]
    ) -> tuple[list[float], list[float]]:
        size = len(self.requests)
        lo = np.empty(size)
        hi = np.empty(size)
        if size:
            table = np.array(list(self.requests), dtype=np.float64)
            alphas = table[:, 2]
            for a in np.unique(alphas):
                idx = np.flatnonzero(alphas == a)
                lo[idx], hi[idx] = fn(table[idx, 0], table[idx, 1], float(a))
        return lo.tolist(), hi.tolist()


def _rank(p: Floats, t: Floats, alpha: float) -> tuple[Floats, Floats]:
    return live_rank_bounds(p, t, alpha)


def _cdf(_x: Floats, t: Floats, alpha: float) -> tuple[Floats, Floats]:
    r = live_cdf_radius(t, alpha)
    return r, r


def _precision_bounds(mean: Floats, t: Floats, alpha: float) -> tuple[Floats, Floats]:
    return live_mean_bounds(mean, t, 0.0, float(MANTISSA_BITS), alpha)


class EffectEvaluator(Generic[K]):
    """Evaluates effects of many series against one baseline; baseline-side work is done once.

    ``effects_for(key)`` names the effects to compute for a series (names of
    :data:`~sidecar.stats.effects.NUMERIC_EFFECTS` or
    :data:`~sidecar.stats.effects.CATEGORICAL_EFFECTS` by the baseline state's type);
    ``alpha_for(key, name)`` is that test's alpha; ``direction_for(key, name)``
    (default ``"both"``) the direction its guardrail watches (quantile effects of a
    one-sided test get one-sided ends, :func:`~sidecar.stats.effects.end_alpha`).
    All are called here, once.
    """

    def __init__(
        self,
        baseline: Mapping[K, NumericState | CategoricalState],
        effects_for: Callable[[K], Collection[str]],
        alpha_for: Callable[[K, str], float],
        direction_for: Callable[[K, str], str] | None = None,
    ) -> None:
        self._numeric: dict[K, _NumericBase] = {}
        self._categorical: dict[K, _CategoricalBase] = {}
        for key, state in baseline.items():
            names = set(effects_for(key))
            if not names:
                continue
            known, order = (
                (_NUMERIC_SET, NUMERIC_EFFECTS)
                if isinstance(state, NumericState)
                else (_CATEGORICAL_SET, CATEGORICAL_EFFECTS)
            )
            if not names <= known:
                raise ValueError(
                    f"series {key!r}: unknown {type(state).__name__} effects {sorted(names - known)}"
                )
            want = tuple(name for name in order if name in names)
            alpha = {name: float(alpha_for(key, name)) for name in want}
            if isinstance(state, NumericState):
                direction = (
                    {name: direction_for(key, name) for name in want if name in _QUANTILE_NAMES}
                    if direction_for is not None
                    else None
                )
                self._numeric[key] = _NumericBase(state, want, alpha, direction)
            else:
                self._categorical[key] = _CategoricalBase(state, want, alpha)

    def evaluate(
        self, live: Mapping[K, NumericState | CategoricalState]
    ) -> dict[K, dict[str, Effect]]:
        """Effects of every live series that has a baseline series of the same type.

        Series only in the baseline, only in ``live``, of another type, or with no
        effects asked for are left out. Effects that cannot be computed (an empty
        side) have nan estimate and bounds, as with the reference functions.
        """
        numeric: list[tuple[K, _NumericBase, NumericState]] = []
        categorical: list[tuple[K, _CategoricalBase, CategoricalState]] = []
        for key, state in live.items():
            if isinstance(state, NumericState):
                nb = self._numeric.get(key)
                if nb is not None:
                    numeric.append((key, nb, state))
            else:
                cb = self._categorical.get(key)
                if cb is not None:
                    categorical.append((key, cb, state))
        out: dict[K, dict[str, Effect]] = {}
        proportions = _Batch()  # (k, t, alpha/2) of live proportion bounds
        finish: list[Callable[[list[float], list[float]], None]] = []
        if numeric:
            self._numeric_effects(numeric, out, proportions, finish)
        if categorical:
            self._categorical_effects(categorical, out, proportions, finish)
        lo, hi = proportions.solve(live_proportion_bounds)
        for step in finish:
            step(lo, hi)
        return out

    # ----------------------------------------------------------------------- numeric

    def _numeric_effects(
        self,
        items: list[tuple[K, _NumericBase, NumericState]],
        out: dict[K, dict[str, Effect]],
        proportions: _Batch,
        finish: list[Callable[[list[float], list[float]], None]],
    ) -> None:
        # 1. Live counts, then every live radius that depends on t only, vectorised.
        ranks, cdfs = _Batch(), _Batch()
        means_t: list[float] = []
        means_a: list[float] = []
        counts: list[int] = []
        for _key, base, state in items:
            t = state.count
            counts.append(t)
            if base.n == 0 or t == 0:
                continue
            for plan in base.plans:
                ranks.add(plan.p, t, plan.alpha / 2.0)
            for name in base.mean_fixed:
                means_t.append(t)
                means_a.append(base.alpha[name] / 2.0)
            for name in base.cdf_fixed:
                cdfs.add(0.0, t, base.alpha[name] / 2.0)
        rank_lo, rank_hi = ranks.solve(_rank)
        cdf_r, _ = cdfs.solve(_cdf)
        mean_r: list[float] = live_mean_radius(means_t, means_a).tolist() if means_t else []
        rank_at, cdf_at = ranks.requests, cdfs.requests

        # 2. Per series: one quantile call, one CDF call per side, mean and range.
        rates: list[tuple[dict[str, Effect], str, int, int, float, tuple[float, float], int]] = []
        precision = _Batch()
        prec_jobs: list[tuple[dict[str, Effect], _NumericBase, float, int, float]] = []
        dist: list[tuple[dict[str, Effect], _NumericBase, float, float, Floats | None]] = []
        dist_fl: list[Floats] = []
        mean_i = 0
        for (key, base, state), t in zip(items, counts, strict=True):
            res: dict[str, Effect] = {}
            out[key] = res
            want = base.want
            alpha = base.alpha
            n_oor = state.out_of_range
            if "missing_rate" in want:
                total = t + state.missing + n_oor
                if total and base.missing_fixed is not None:
                    a = alpha["missing_rate"] / 2.0
                    at = proportions.add(state.missing, total, a)
                    share_b = base.missing / base.total
                    rates.append(
                        (res, "missing_rate", state.missing, total, share_b, base.missing_fixed, at)
                    )
                else:
                    res["missing_rate"] = _none("missing_rate", "points")
            if base.precision is not None:
                if "distinct_share" in want:
                    pl = state.precision
                    bits = pl.bits if pl is not None else None
                else:  # the histogram alone: no distinct count needed
                    bits = state.bits_histogram()
                count = int(bits.sum()) if bits is not None else 0
                if bits is not None and count:
                    ml = float(np.dot(bits, _BIT_VALUES)) / count
                    at = -1
                    if "precision_bits" in alpha:
                        at = precision.add(ml, count, alpha["precision_bits"] / 2.0)
                    distinct = pl.distinct_share if "distinct_share" in want and pl else _NAN
                    prec_jobs.append((res, base, ml, at, distinct))
                else:
                    _none_precision(res, want)
            elif "precision_bits" in want or "distinct_share" in want:
                _none_precision(res, want)
            if base.n == 0 or t == 0:
                if "out_of_range_rate" in want:
                    if base.n and n_oor:  # no finite live values: only the infinities are outside
                        a = alpha["out_of_range_rate"] / 2.0
                        at = proportions.add(n_oor, n_oor, a)
                        k_b = base.n_oor / (base.n + base.n_oor)
                        assert base.oor_fixed is not None
                        rates.append(
                            (res, "out_of_range_rate", n_oor, n_oor, k_b, base.oor_fixed, at)
                        )
                    else:
                        res["out_of_range_rate"] = _none("out_of_range_rate", "points")
                for name in want:
                    if name not in res:
                        res[name] = _none(name, _UNITS[name])
                continue

            lg: Floats | None = None
            if base.levels is not None:
                levels = base.levels
                k = 3 * len(base.plans)
                if k:
                    raw: list[float] = []
                    for plan in base.plans:
                        at = rank_at[(plan.p, t, plan.alpha / 2.0)]
                        u_lo, u_hi = rank_lo[at], rank_hi[at]
                        if not state.is_exact:
                            u_lo += plan.spread / state.compression + 1.0 / t
                            u_hi += plan.spread / state.compression + 1.0 / t
                        raw += (plan.p - u_lo, plan.p, plan.p + u_hi)
                    levels[:k] = raw
                    np.clip(levels[:k], 0.0, 1.0, out=levels[:k])
                q = state.quantiles(levels)
                if k:
                    ends = q[:k].tolist()
                    for i, plan in enumerate(base.plans):
                        l_lo, l_mid, l_hi = ends[3 * i : 3 * i + 3]
                        if raw[3 * i] < 0.0:
                            l_lo = -_INF
                        if raw[3 * i + 2] > 1.0:
                            l_hi = _INF
                        if plan.abs_name is not None:
                            res[plan.abs_name] = Effect(
                                plan.abs_name,
                                l_mid - plan.b_mid,
                                l_lo - plan.b_hi,
                                l_hi - plan.b_lo,
                                "absolute",
                            )
                        if plan.rel_name is not None:
                            est = _rel_estimate(l_mid, plan.b_mid)
                            res[plan.rel_name] = _relative(plan.rel_name, est, l_lo, l_hi, plan.rel)
                if base.mid is not None:
                    lg = q[k:]

            if base.mean_fixed:
                m_b, m_l = base.mean, state.mean()
                lo_l, hi_l = state.value_range()
                lo, hi = min(base.lo, lo_l), max(base.hi, hi_l)
                finite = math.isfinite(m_b) and math.isfinite(m_l) and math.isfinite(hi - lo)
                for name, fixed in base.mean_fixed.items():
                    r_l = mean_r[mean_i]
                    mean_i += 1
                    rel_est = _rel_estimate(m_l, m_b)
                    if not finite:
                        if name == "mean_abs":
                            res[name] = Effect(name, m_l - m_b, _NAN, _NAN, "absolute")
                        else:
                            res[name] = Effect(name, rel_est, _NAN, _NAN, "relative")
                        continue
                    if hi > lo:
                        half_l, half_b = (hi - lo) * r_l, (hi - lo) * fixed
                        ll, lh = min(max(m_l - half_l, lo), hi), min(max(m_l + half_l, lo), hi)
                        bl, bh = min(max(m_b - half_b, lo), hi), min(max(m_b + half_b, lo), hi)
                    else:  # a constant series: both means are that constant
                        ll = lh = m_l
                        bl = bh = m_b
                    if name == "mean_abs":
                        res[name] = Effect(name, m_l - m_b, ll - bh, lh - bl, "absolute")
                    else:
                        res[name] = _relative(name, rel_est, ll, lh, _rel_side(bl, bh))

            if base.points is not None:
                fl = state.cdf(base.points)
                if "out_of_range_rate" in want:
                    below, at_most_high = fl[-2:].tolist()
                    outside = t * (below + 1.0 - at_most_high)
                    k_l = min(round(outside) + n_oor, t + n_oor)
                    a = alpha["out_of_range_rate"] / 2.0
                    at = proportions.add(k_l, t + n_oor, a)
                    k_b = base.n_oor / (base.n + base.n_oor)
                    assert base.oor_fixed is not None
                    rates.append(
                        (res, "out_of_range_rate", k_l, t + n_oor, k_b, base.oor_fixed, at)
                    )
                if base.dist:
                    slack = base.cdf_slack + (
                        0.0 if state.is_exact else _CDF_SLACK / state.compression
                    )
                    r_ks = r_w1 = 0.0
                    if "ks" in base.cdf_fixed:
                        r_ks = cdf_r[cdf_at[(0.0, t, alpha["ks"] / 2.0)]] + base.cdf_fixed["ks"]
                        r_ks += slack
                    if "w1_iqr" in base.cdf_fixed:
                        r_w1 = (
                            cdf_r[cdf_at[(0.0, t, alpha["w1_iqr"] / 2.0)]]
                            + base.cdf_fixed["w1_iqr"]
                        )
                        r_w1 += slack
                    dist.append((res, base, r_ks, r_w1, lg))
                    dist_fl.append(fl[:_G])

        # 3. Distributions of all series at once: one row per series.
        if dist:
            _distributions(dist, dist_fl)

        # 4. Precision bounds, vectorised; rates once the proportion bounds are solved.
        if prec_jobs:
            p_lo, p_hi = precision.solve(_precision_bounds)
            for res, base, ml, at, distinct in prec_jobs:
                assert base.precision is not None
                mb, _count, b_lo, b_hi, distinct_b = base.precision
                if at >= 0:
                    res["precision_bits"] = Effect(
                        "precision_bits", ml - mb, p_lo[at] - b_hi, p_hi[at] - b_lo, "bits"
                    )
                if "distinct_share" in base.want:
                    res["distinct_share"] = Effect(
                        "distinct_share", distinct - distinct_b, _NAN, _NAN, "share"
                    )

        def rate_effects(lo: list[float], hi: list[float]) -> None:
            for res, name, k_l, t_l, share_b, (b_lo, b_hi), at in rates:
                res[name] = Effect(
                    name,
                    100.0 * (k_l / t_l - share_b),
                    100.0 * (lo[at] - b_hi),
                    100.0 * (hi[at] - b_lo),
                    "points",
                )

        finish.append(rate_effects)

    # ----------------------------------------------------------------------- categorical

    def _categorical_effects(
        self,
        items: list[tuple[K, _CategoricalBase, CategoricalState]],
        out: dict[K, dict[str, Effect]],
        proportions: _Batch,
        finish: list[Callable[[list[float], list[float]], None]],
    ) -> None:
        jobs: list[
            tuple[dict[str, Effect], _CategoricalBase, int, int, int, float, float, int, int]
        ] = []
        subset_t: list[float] = []
        subset_a: list[float] = []
        subset_n: list[float] = []
        missing_jobs: list[tuple[dict[str, Effect], _CategoricalBase, int, int, int]] = []
        for key, base, state in items:
            res: dict[str, Effect] = {}
            out[key] = res
            want = base.want
            lc = state.counts
            other = state.other_count
            nl = sum(lc.values()) + other
            if "missing_rate" in want:
                total = nl + state.missing
                if total and base.total:
                    at = proportions.add(state.missing, total, base.alpha["missing_rate"] / 2.0)
                    missing_jobs.append((res, base, state.missing, total, at))
                else:
                    res["missing_rate"] = _none("missing_rate", "points")
            if base.n == 0 or nl == 0:
                for name in want:
                    res.setdefault(name, _none(name, _CAT_UNITS[name]))
                continue
            idx = np.fromiter(map(base.index.get, lc, repeat(-1)), dtype=np.intp, count=len(lc))
            vals = np.fromiter(lc.values(), dtype=np.float64, count=len(lc))
            matched = idx >= 0
            m = base.m
            lv = np.zeros(m + 1)
            if matched.all():
                lv[idx] = vals
                new_vals = vals[:0]
                new_k = 0
            else:
                lv[idx[matched]] = vals[matched]
                new_vals = vals[~matched]
                new_k = int(new_vals.sum())
            lv[m] = other
            cells = m + new_vals.size + 1
            tvd = 0.5 * (float(np.abs(lv / nl - base.share).sum()) + new_k / nl)
            for name in ("tvd", "vanished_share"):
                if name in want:
                    a = max(_MIN_ALPHA, base.alpha[name] / 2.0 * 2.0 ** (-min(cells, 990)))
                    subset_t.append(nl)
                    subset_n.append(base.n)
                    subset_a.append(a)
            if "chi2" in want:
                b = np.concatenate((base.b, np.zeros(new_vals.size)))
                live_ext = np.concatenate((lv, new_vals))
                both = b + live_ext
                seen = both > 0
                nb = base.n
                expected_b = both[seen] * (nb / (nb + nl))
                expected_l = both[seen] * (nl / (nb + nl))
                chi2 = float(
                    (((b[seen] - expected_b) ** 2) / expected_b).sum()
                    + (((live_ext[seen] - expected_l) ** 2) / expected_l).sum()
                )
                res["chi2"] = Effect("chi2", chi2, _NAN, _NAN, "statistic")
            gone = 0.0
            if "vanished_share" in want:
                present = np.zeros(m + 1, dtype=bool)
                present[idx[matched]] = True
                present[m] = True
                gone = float(base.b[~present].sum())
            lo_at = hi_at = -1
            if "new_category_share" in want:
                a = base.alpha["new_category_share"] / 2.0
                lo_at = proportions.add(new_k, nl, a)
                hi_at = proportions.add(min(nl, new_k + other), nl, a)
            jobs.append((res, base, nl, other, new_k, tvd, gone, lo_at, hi_at))

        r_live: list[float] = []
        r_base: list[float] = []
        if subset_t:
            r_live = (0.5 - np.clip(0.5 - live_mean_radius(subset_t, subset_a), 0.0, 1.0)).tolist()
            r_base = (0.5 - np.clip(0.5 - fixed_mean_radius(subset_n, subset_a), 0.0, 1.0)).tolist()

        def categorical(lo: list[float], hi: list[float]) -> None:
            for res, base, k_l, total, at in missing_jobs:
                b_lo, b_hi = base.missing_fixed  # type: ignore[misc]
                res["missing_rate"] = Effect(
                    "missing_rate",
                    100.0 * (k_l / total - base.missing / base.total),
                    100.0 * (lo[at] - b_hi),
                    100.0 * (hi[at] - b_lo),
                    "points",
                )
            i = 0
            for res, base, nl, other, new_k, tvd, gone, lo_at, hi_at in jobs:
                nb = base.n
                if "tvd" in base.want:
                    r = r_live[i] + r_base[i]
                    i += 1
                    res["tvd"] = Effect(
                        "tvd", tvd, max(0.0, tvd - r), min(1.0, tvd + r), "distance"
                    )
                if lo_at >= 0:
                    b_lo, b_hi = base.new_fixed
                    res["new_category_share"] = Effect(
                        "new_category_share",
                        new_k / nl - base.other / nb,
                        lo[lo_at] - b_hi,
                        hi[hi_at] - b_lo,
                        "share",
                    )
                if "vanished_share" in base.want:
                    r_l, r_b = r_live[i], r_base[i]
                    i += 1
                    share_b = gone / nb
                    live_share = min(share_b, other / nl)
                    upper_live = min(1.0, other / nl + r_l)
                    res["vanished_share"] = Effect(
                        "vanished_share",
                        share_b - live_share,
                        max(-1.0, share_b - r_b - upper_live),
                        min(1.0, share_b + r_b),
                        "share",
                    )

        finish.append(categorical)


def _none_precision(res: dict[str, Effect], want: tuple[str, ...]) -> None:
    if "precision_bits" in want:
        res["precision_bits"] = _none("precision_bits", "bits")
    if "distinct_share" in want:
        res["distinct_share"] = _none("distinct_share", "share")


def _distributions(
    rows: list[tuple[dict[str, Effect], _NumericBase, float, float, Floats | None]],
    live_cdf: list[Floats],
) -> None:
    """ks, w1_iqr and psi of many series: each row is one series' live CDF on its
    baseline's quantile grid (the baseline's CDF there is cached)."""
    xs = np.stack([base.grid for _, base, _, _, _ in rows])  # type: ignore[misc]
    fb = np.stack([base.fb_grid for _, base, _, _, _ in rows])  # type: ignore[misc]
    fl = np.stack(live_cdf)
    d = np.abs(fl - fb).max(axis=1)
    up = np.maximum(fl[:, 1:] - fb[:, :-1], fb[:, 1:] - fl[:, :-1]).max(axis=1)
    d_up = np.maximum(np.maximum(d, up), np.maximum(fl[:, 0], 1.0 - fl[:, -1]))
    d_l, d_up_l = d.tolist(), d_up.tolist()
    r_w1 = np.array([row[3] for row in rows])
    low_gap = np.maximum(fl[:, :-1] - fb[:, 1:], fb[:, :-1] - fl[:, 1:])
    w1_lo = (np.maximum(0.0, low_gap - r_w1[:, None]) * np.diff(xs, axis=1)).sum(axis=1)
    w1_lo_l = w1_lo.tolist()
    pl = np.diff(fl[:, _DECILES], axis=1, prepend=0.0, append=1.0)
    np.maximum(pl, _PSI_FLOOR, out=pl)
    pb = np.stack([base.psi_pb for _, base, _, _, _ in rows])  # type: ignore[misc]
    psi = ((pl - pb) * np.log(pl / pb)).sum(axis=1).tolist()
    for i, (res, base, r_ks, _r_w1, live_mid) in enumerate(rows):
        want = base.want
        if "ks" in want:
            res["ks"] = Effect(
                "ks", d_l[i], max(0.0, d_l[i] - r_ks), min(1.0, d_up_l[i] + r_ks), "distance"
            )
        if "w1_iqr" in want:
            iqr = base.iqr
            if iqr > 0.0 and math.isfinite(iqr) and live_mid is not None:
                w = float(np.abs(live_mid - base.mid).mean()) / iqr  # type: ignore[operator]
                res["w1_iqr"] = Effect("w1_iqr", w, min(w1_lo_l[i] / iqr, w), _INF, "distance")
            else:
                res["w1_iqr"] = _none("w1_iqr", "distance")
        if "psi" in want:
            res["psi"] = Effect("psi", psi[i], _NAN, _NAN, "distance")
