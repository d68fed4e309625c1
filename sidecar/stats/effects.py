"""Effects of a live state against a baseline state, with confidence intervals.

Every effect is computed from the two series states only (digests, exact value
buffers, frequency tables, precision statistics), never from raw samples. Its
interval combines a time-uniform confidence sequence on the live side (valid at
every check of a monitoring epoch) with a fixed-sample bound on the baseline
side, each given half of the test's alpha, widened by the t-digest's
approximation error when a side is a digest (zero in exact mode).
``docs/statistics.md`` explains the method.

>>> import numpy as np
>>> from sidecar.series import NumericState
>>> rng = np.random.default_rng(0)
>>> base, live = NumericState(), NumericState()
>>> base.add(rng.normal(size=50_000))
>>> live.add(rng.normal(0.2, 1.0, size=10_000))
>>> ks = numeric_effects(base, live, lambda name: 1e-4)["ks"]
>>> ks.lower > 0.02
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from sidecar.series import MANTISSA_BITS, CategoricalState, NumericState
from sidecar.stats.sequences import (
    fixed_cdf_radius,
    fixed_mean_bounds,
    fixed_proportion_bounds,
    fixed_rank_bounds,
    live_cdf_radius,
    live_mean_bounds,
    live_proportion_bounds,
    live_rank_bounds,
)

__all__ = [
    "CATEGORICAL_EFFECTS",
    "NUMERIC_EFFECTS",
    "Effect",
    "categorical_effects",
    "end_alpha",
    "numeric_effects",
]

NUMERIC_EFFECTS: Final = (
    "p50_rel",
    "p90_rel",
    "p99_rel",
    "p999_rel",
    "p50_abs",
    "p90_abs",
    "p99_abs",
    "p999_abs",
    "mean_rel",
    "mean_abs",
    "ks",
    "w1_iqr",
    "psi",
    "missing_rate",
    "out_of_range_rate",
    "precision_bits",
    "distinct_share",
)
CATEGORICAL_EFFECTS: Final = ("tvd", "chi2", "new_category_share", "vanished_share", "missing_rate")

_NAN: Final = math.nan
_INF: Final = math.inf
_LEVELS: Final = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
# The baseline's quantiles at these levels are the points where both CDFs are compared
# (KS and W1's lower bound), the PSI bin edges and the IQR. Fixed by the baseline, the
# baseline's CDF on them is computed once; the live side needs one CDF call.
_SLICES: Final = 64
_BASE_GRID: Final = np.linspace(0.0, 1.0, _SLICES + 1)
# Midpoints of the slices: W1 = integral over u of |Q_l(u) - Q_b(u)| is estimated there.
_W1_LEVELS: Final = (np.arange(_SLICES) + 0.5) / _SLICES
_DECILES: Final = np.arange(1, 8) * (_SLICES // 8)  # indices of 0.125 ... 0.875 on _BASE_GRID
_IQR: Final = (_SLICES // 4, 3 * _SLICES // 4)  # indices of 0.25 and 0.75 on _BASE_GRID
_PSI_FLOOR: Final = 1e-4
# Digest approximation error (in rank units), docs/statistics.md "Digest error": the
# worst quantile rank errors measured for fastdigest (compression 1,000, 512-value
# batches, alone or as 10 encoded and merged parts, 50,000 values, 100 seeds) were
# 2.9, 1.5, 1.6 and 1.9 times sqrt(p(1-p)) / compression at p50, p90, p99 and p99.9;
# the rank slack is 3 times that unit plus 1 / n. CDF error <= ~1.5 / compression.
_RANK_SLACK: Final = 3.0
_CDF_SLACK: Final = 2.0
_MIN_ALPHA: Final = 1e-300
_QUANTILE_GROUP: Final = frozenset(
    f"{prefix}_{kind}" for prefix, _ in _LEVELS for kind in ("rel", "abs")
)
_MEAN_GROUP: Final = frozenset(("mean_rel", "mean_abs"))
_DISTRIBUTION_GROUP: Final = frozenset(("ks", "w1_iqr", "psi"))


@dataclass(frozen=True)
class Effect:
    """One effect of live against baseline: signed estimate and its confidence interval.

    ``lower``/``upper`` are nan when the effect has no bound (psi, chi2,
    distinct_share) or cannot be computed (an empty side). Units: "relative"
    (0.05 = +5%), "absolute" (the signal's unit), "distance" (KS, W1/IQR, PSI,
    TVD), "points" (percentage points), "share" (in [-1, 1]), "bits", "statistic".

    >>> Effect("ks", 0.03, 0.01, 0.05, "distance").lower
    0.01
    """

    name: str
    estimate: float
    lower: float
    upper: float
    unit: str


def _none(name: str, unit: str) -> Effect:
    return Effect(name, _NAN, _NAN, _NAN, unit)


def end_alpha(alpha: float, direction: str) -> float:
    """The level of each end of a quantile effect's interval whose test has ``alpha``.

    A test that fires on one side only (``up``: the lower end clears the guardrail;
    ``down``: the upper end) spends its whole alpha on that end: each end is then a
    one-sided bound at ``alpha``. A ``both`` test can fire on either end: alpha / 2
    each. Within an end, the live and the baseline side get half each.

    >>> end_alpha(1e-3, "up"), end_alpha(1e-3, "both")
    (0.001, 0.0005)
    """
    return alpha if direction in ("up", "down") else alpha / 2.0


def _rank_slack(state: NumericState, p: float) -> float:
    if state.is_exact:
        return 0.0
    return _RANK_SLACK * math.sqrt(p * (1.0 - p)) / state.compression + 1.0 / state.count


def _cdf_slack(state: NumericState) -> float:
    return 0.0 if state.is_exact else _CDF_SLACK / state.compression


def _relative(
    estimate: float, live: tuple[float, float], base: tuple[float, float]
) -> tuple[float, float, float]:
    """(live - base) / |base| and its interval from the two intervals' ends.

    With c = |base| in [c_lo, c_hi] (base interval on one side of 0) the effect is
    live / c - 1 (base > 0) or live / c + 1 (base < 0), monotone in each argument.
    If the baseline interval contains 0 only the estimate is given.
    """
    b_lo, b_hi = base
    l_lo, l_hi = live
    if b_lo > 0.0:
        c_lo, c_hi, k = b_lo, b_hi, -1.0
    elif b_hi < 0.0:
        c_lo, c_hi, k = -b_hi, -b_lo, 1.0
    else:
        return estimate, _NAN, _NAN
    with np.errstate(invalid="ignore", over="ignore"):
        lower = min(l_lo / c_lo, l_lo / c_hi) + k
        upper = max(l_hi / c_lo, l_hi / c_hi) + k
    return estimate, lower, upper


def _rel_estimate(live: float, base: float) -> float:
    return (live - base) / abs(base) if base != 0.0 else _NAN


def _f(x: npt.NDArray[np.float64]) -> float:
    return float(x)


def numeric_effects(
    base: NumericState,
    live: NumericState,
    alpha_for: Callable[[str], float],
    *,
    only: Collection[str] | None = None,
    direction_for: Callable[[str], str] | None = None,
) -> dict[str, Effect]:
    """All :data:`NUMERIC_EFFECTS` of ``live`` against ``base`` (in that order).

    ``alpha_for(name)`` is the alpha of that effect's test; each side gets half.
    ``direction_for(name)`` (default ``"both"``) is the direction its guardrail
    watches: quantile effects of a one-sided test get one-sided ends at the full
    alpha (:func:`end_alpha`). Effects that cannot be computed (an empty side,
    precision statistics missing from an old encoding) have nan estimate and
    bounds. ``only`` restricts the work to the groups those names belong to (the
    result then holds those groups).
    """
    want = set(NUMERIC_EFFECTS if only is None else only)
    if not want <= set(NUMERIC_EFFECTS):
        raise ValueError(f"unknown numeric effects: {sorted(want - set(NUMERIC_EFFECTS))}")
    out: dict[str, Effect] = {}
    n, t = base.count, live.count
    if want & {"missing_rate", "out_of_range_rate"}:
        _rates(base, live, alpha_for, out)
    if want & {"precision_bits", "distinct_share"}:
        _precision(base, live, alpha_for, out)
    if n == 0 or t == 0:
        for name in NUMERIC_EFFECTS:
            if name not in out and name in want:
                out[name] = _none(name, _UNITS[name])
        return {name: out[name] for name in NUMERIC_EFFECTS if name in out}
    if not want & _QUANTILE_GROUP.union(_MEAN_GROUP, _DISTRIBUTION_GROUP):
        return {name: out[name] for name in NUMERIC_EFFECTS if name in out}

    # Quantile-shift intervals: one quantile call per side for every level needed.
    alphas = {name: alpha_for(name) for name in NUMERIC_EFFECTS}
    ends = {
        name: end_alpha(alphas[name], "both" if direction_for is None else direction_for(name))
        for name in _QUANTILE_GROUP
    }
    live_levels: list[float] = []
    base_levels: list[float] = []
    plans: list[tuple[str, float, float]] = []  # (prefix, p, alpha of each end)
    for prefix, p in _LEVELS if want & _QUANTILE_GROUP else ():
        if not want & {f"{prefix}_rel", f"{prefix}_abs"}:
            continue
        for a in {ends[f"{prefix}_rel"], ends[f"{prefix}_abs"]}:
            lo_l, hi_l = live_rank_bounds(p, t, a / 2.0)
            lo_b, hi_b = fixed_rank_bounds(p, n, a / 2.0)
            s_l, s_b = _rank_slack(live, p), _rank_slack(base, p)
            live_levels += (p - _f(lo_l) - s_l, p, p + _f(hi_l) + s_l)
            base_levels += (p - _f(lo_b) - s_b, p, p + _f(hi_b) + s_b)
            plans.append((prefix, p, a))
    lv = np.array(live_levels)
    bv = np.array(base_levels)
    dist = bool(want & _DISTRIBUTION_GROUP)
    extra = np.concatenate((_BASE_GRID, _W1_LEVELS)) if dist else np.empty(0)
    lq = live.quantiles(np.concatenate((np.clip(lv, 0.0, 1.0), _W1_LEVELS if dist else [])))
    bq = base.quantiles(np.concatenate((np.clip(bv, 0.0, 1.0), extra)))
    k = lv.size
    lq_ends, live_mid = lq[:k], lq[k:]
    bq_ends = bq[:k]
    base_grid, base_mid = bq[k : k + _BASE_GRID.size], bq[k + _BASE_GRID.size :]
    # A level beyond [0, 1] means the true quantile may lie beyond the observed extreme.
    lq_ends = np.where(lv < 0.0, -_INF, np.where(lv > 1.0, _INF, lq_ends))
    bq_ends = np.where(bv < 0.0, -_INF, np.where(bv > 1.0, _INF, bq_ends))
    for i, (prefix, _p, a) in enumerate(plans):
        l_lo, l_mid, l_hi = (float(v) for v in lq_ends[3 * i : 3 * i + 3])
        b_lo, b_mid, b_hi = (float(v) for v in bq_ends[3 * i : 3 * i + 3])
        if ends[f"{prefix}_abs"] == a:
            name = f"{prefix}_abs"
            out[name] = Effect(name, l_mid - b_mid, l_lo - b_hi, l_hi - b_lo, "absolute")
        if ends[f"{prefix}_rel"] == a:
            name = f"{prefix}_rel"
            est, lo, hi = _relative(_rel_estimate(l_mid, b_mid), (l_lo, l_hi), (b_lo, b_hi))
            out[name] = Effect(name, est, lo, hi, "relative")

    if want & _MEAN_GROUP:
        _means(base, live, alphas, out)
    if dist:
        _distributions(base, live, alphas, base_grid, base_mid, live_mid, out)
    return {name: out[name] for name in NUMERIC_EFFECTS if name in out}


def _rates(
    base: NumericState,
    live: NumericState,
    alpha_for: Callable[[str], float],
    out: dict[str, Effect],
) -> None:
    """missing_rate and out_of_range_rate, in percentage points."""
    total_b = base.count + base.missing + base.out_of_range
    total_l = live.count + live.missing + live.out_of_range
    out["missing_rate"] = _rate_effect(
        "missing_rate", live.missing, total_l, base.missing, total_b, alpha_for("missing_rate")
    )
    name = "out_of_range_rate"
    low, high = base.value_range()
    if base.count == 0 or live.count + live.out_of_range == 0:
        out[name] = _none(name, "points")
        return
    if live.count:
        below, at_most_high = live.cdf([float(np.nextafter(low, -_INF)), high])
        outside = live.count * (float(below) + 1.0 - float(at_most_high))
    else:
        outside = 0.0
    k_live = min(round(outside) + live.out_of_range, live.count + live.out_of_range)
    out[name] = _rate_effect(
        name,
        k_live,
        live.count + live.out_of_range,
        base.out_of_range,
        base.count + base.out_of_range,
        alpha_for(name),
    )


def _rate_effect(name: str, k_l: int, t: int, k_b: int, n: int, alpha: float) -> Effect:
    if t == 0 or n == 0:
        return _none(name, "points")
    l_lo, l_hi = live_proportion_bounds(k_l, t, alpha / 2.0)
    b_lo, b_hi = fixed_proportion_bounds(k_b, n, alpha / 2.0)
    return Effect(
        name,
        100.0 * (k_l / t - k_b / n),
        100.0 * (float(l_lo) - float(b_hi)),
        100.0 * (float(l_hi) - float(b_lo)),
        "points",
    )


def _precision(
    base: NumericState,
    live: NumericState,
    alpha_for: Callable[[str], float],
    out: dict[str, Effect],
) -> None:
    """precision_bits (mean effective mantissa bits, bounded in [0, 52]) and distinct_share."""
    pb, pl = base.precision, live.precision
    if pb is None or pl is None or pb.count == 0 or pl.count == 0:
        out["precision_bits"] = _none("precision_bits", "bits")
        out["distinct_share"] = _none("distinct_share", "share")
        return
    a = alpha_for("precision_bits")
    mb, ml = pb.mean_bits, pl.mean_bits
    l_lo, l_hi = live_mean_bounds(ml, pl.count, 0.0, float(MANTISSA_BITS), a / 2.0)
    b_lo, b_hi = fixed_mean_bounds(mb, pb.count, 0.0, float(MANTISSA_BITS), a / 2.0)
    out["precision_bits"] = Effect(
        "precision_bits", ml - mb, float(l_lo) - float(b_hi), float(l_hi) - float(b_lo), "bits"
    )
    share = pl.distinct_share - pb.distinct_share
    out["distinct_share"] = Effect("distinct_share", share, _NAN, _NAN, "share")


def _means(
    base: NumericState, live: NumericState, alphas: dict[str, float], out: dict[str, Effect]
) -> None:
    """mean_abs and mean_rel, bounded on the union of both observed ranges."""
    m_b, m_l = base.mean(), live.mean()
    lo_b, hi_b = base.value_range()
    lo_l, hi_l = live.value_range()
    lo, hi = min(lo_b, lo_l), max(hi_b, hi_l)
    rel_est = _rel_estimate(m_l, m_b)
    for name in ("mean_abs", "mean_rel"):
        if not (math.isfinite(m_b) and math.isfinite(m_l) and math.isfinite(hi - lo)):
            unit = "absolute" if name == "mean_abs" else "relative"
            est = m_l - m_b if name == "mean_abs" else rel_est
            out[name] = Effect(name, est, _NAN, _NAN, unit)
            continue
        a = alphas[name]
        if hi > lo:
            ll, lh = (float(v) for v in live_mean_bounds(m_l, live.count, lo, hi, a / 2.0))
            bl, bh = (float(v) for v in fixed_mean_bounds(m_b, base.count, lo, hi, a / 2.0))
        else:  # a constant series: both means are that constant
            ll = lh = m_l
            bl = bh = m_b
        if name == "mean_abs":
            out[name] = Effect(name, m_l - m_b, ll - bh, lh - bl, "absolute")
        else:
            est, low, high = _relative(rel_est, (ll, lh), (bl, bh))
            out[name] = Effect(name, est, low, high, "relative")


def _distributions(
    base: NumericState,
    live: NumericState,
    alphas: dict[str, float],
    base_grid: npt.NDArray[np.float64],
    base_mid: npt.NDArray[np.float64],
    live_mid: npt.NDArray[np.float64],
    out: dict[str, Effect],
) -> None:
    """ks, w1_iqr and psi from both CDFs on the baseline's quantile grid.

    KS is the largest CDF difference at the grid's points (a sup over a subset of
    the line: its lower bound stays valid; the estimate is within about one grid
    slice, 1/64, of the sup over every x). W1's lower bound integrates, cell by
    cell, the smallest CDF gap the cell allows minus the radius (a valid lower
    bound on any partition); its estimate averages |Q_l - Q_b| at the slices' midpoints.
    """
    n, t = base.count, live.count
    xs = base_grid
    fb = base.cdf(xs)
    fl = live.cdf(xs)
    diff = fl - fb
    # Between consecutive grid points both CDFs are monotone, so the largest possible
    # gap there is F_l(next) - F_b(prev) (or the reverse), the smallest F_l(prev) - F_b(next).
    # Below the baseline's minimum F_b = 0, above its maximum F_b = 1.
    up_gap = np.maximum(fl[1:] - fb[:-1], fb[1:] - fl[:-1])
    low_gap = np.maximum(fl[:-1] - fb[1:], fb[:-1] - fl[1:])
    d = float(np.abs(diff).max())
    d_up = max(d, float(up_gap.max()), float(fl[0]), 1.0 - float(fl[-1]))
    slack = _cdf_slack(live) + _cdf_slack(base)

    def radius(name: str) -> float:
        a = alphas[name]
        return float(live_cdf_radius(t, a / 2.0)) + float(fixed_cdf_radius(n, a / 2.0)) + slack

    r = radius("ks")
    out["ks"] = Effect("ks", d, max(0.0, d - r), min(1.0, d_up + r), "distance")

    iqr = float(base_grid[_IQR[1]] - base_grid[_IQR[0]])
    width = np.diff(xs)
    if iqr > 0.0 and np.isfinite(iqr) and width.size:
        w1 = float(np.abs(live_mid - base_mid).mean()) / iqr
        r = radius("w1_iqr")
        w1_lo = float(np.dot(np.maximum(0.0, low_gap - r), width)) / iqr
        out["w1_iqr"] = Effect("w1_iqr", w1, min(w1_lo, w1), _INF, "distance")
    else:
        out["w1_iqr"] = _none("w1_iqr", "distance")

    # PSI on the baseline's quantile bins (8 bins of 12.5%).
    pb = np.diff(fb[_DECILES], prepend=0.0, append=1.0)
    pl = np.diff(fl[_DECILES], prepend=0.0, append=1.0)
    pb = np.maximum(pb, _PSI_FLOOR)
    pl = np.maximum(pl, _PSI_FLOOR)
    psi = float(np.dot(pl - pb, np.log(pl / pb)))
    out["psi"] = Effect("psi", psi, _NAN, _NAN, "distance")


_UNITS: Final = {
    **{f"{prefix}_rel": "relative" for prefix, _ in _LEVELS},
    **{f"{prefix}_abs": "absolute" for prefix, _ in _LEVELS},
    "mean_rel": "relative",
    "mean_abs": "absolute",
    "ks": "distance",
    "w1_iqr": "distance",
    "psi": "distance",
    "missing_rate": "points",
    "out_of_range_rate": "points",
    "precision_bits": "bits",
    "distinct_share": "share",
}


# --------------------------------------------------------------------------- categorical


def _subset_radius(cells: int, total: int, alpha: float, live: bool) -> float:
    """sup over every subset S of the cells of |P_hat(S) - P(S)| (a TV radius), by a union
    bound over the 2^cells subsets of a bound for one proportion (time-uniform when live)."""
    if total == 0:
        return 1.0
    a = max(_MIN_ALPHA, alpha * 2.0 ** (-min(cells, 990)))
    if live:
        lo, _hi = live_mean_bounds(0.5, total, 0.0, 1.0, a)
    else:
        lo, _hi = fixed_mean_bounds(0.5, total, 0.0, 1.0, a)
    return 0.5 - float(lo)


def categorical_effects(
    base: CategoricalState, live: CategoricalState, alpha_for: Callable[[str], float]
) -> dict[str, Effect]:
    """All :data:`CATEGORICAL_EFFECTS` of ``live`` against ``base``.

    Cells are the values of both tables plus "other" (values folded past a table's
    capacity). ``new_category_share`` is the live share of values absent from the
    baseline table minus the baseline's own share outside its table (its "other",
    0 unless the table overflowed); ``vanished_share`` the baseline share of table
    values that live has not shown (bounded uniformly over subsets, since that set
    is chosen by the live data). ``chi2`` is the two-sample statistic (no bound).
    """
    out: dict[str, Effect] = {}
    nb, nl = base.count, live.count
    out["missing_rate"] = _rate_effect(
        "missing_rate",
        live.missing,
        nl + live.missing,
        base.missing,
        nb + base.missing,
        alpha_for("missing_rate"),
    )
    if nb == 0 or nl == 0:
        for name in CATEGORICAL_EFFECTS:
            out.setdefault(name, _none(name, "statistic" if name == "chi2" else "share"))
        out["tvd"] = _none("tvd", "distance")
        return {name: out[name] for name in CATEGORICAL_EFFECTS}

    bc, lc = base.counts, live.counts
    keys = list(bc.keys() | lc.keys())
    b = np.array([bc.get(key, 0) for key in keys] + [base.other_count], dtype=np.float64)
    lv = np.array([lc.get(key, 0) for key in keys] + [live.other_count], dtype=np.float64)
    cells = len(keys) + 1

    # Total variation distance.
    tvd = 0.5 * float(np.abs(lv / nl - b / nb).sum())
    a = alpha_for("tvd")
    r = _subset_radius(cells, nl, a / 2.0, True) + _subset_radius(cells, nb, a / 2.0, False)
    out["tvd"] = Effect("tvd", tvd, max(0.0, tvd - r), min(1.0, tvd + r), "distance")

    # Two-sample chi-square statistic on the cells either side has seen.
    both = b + lv
    seen = both > 0
    expected_b = both[seen] * (nb / (nb + nl))
    expected_l = both[seen] * (nl / (nb + nl))
    chi2 = float(
        (((b[seen] - expected_b) ** 2) / expected_b).sum()
        + (((lv[seen] - expected_l) ** 2) / expected_l).sum()
    )
    out["chi2"] = Effect("chi2", chi2, _NAN, _NAN, "statistic")

    # New categories: the set (outside the baseline table) is fixed by the baseline.
    new_k = sum(n for key, n in lc.items() if key not in bc)
    a = alpha_for("new_category_share")
    l_lo, _ = live_proportion_bounds(new_k, nl, a / 2.0)
    _, l_hi = live_proportion_bounds(min(nl, new_k + live.other_count), nl, a / 2.0)
    b_lo, b_hi = fixed_proportion_bounds(base.other_count, nb, a / 2.0)
    out["new_category_share"] = Effect(
        "new_category_share",
        new_k / nl - base.other_count / nb,
        float(l_lo) - float(b_hi),
        float(l_hi) - float(b_lo),
        "share",
    )

    # Vanished categories: chosen by the live data, so bounded uniformly over subsets.
    gone = [n for key, n in bc.items() if key not in lc]
    share_b = sum(gone) / nb
    live_share = min(share_b, live.other_count / nl)  # they may hide in live's "other"
    a = alpha_for("vanished_share")
    r_l = _subset_radius(cells, nl, a / 2.0, True)
    r_b = _subset_radius(cells, nb, a / 2.0, False)
    upper_live = min(1.0, live.other_count / nl + r_l)
    out["vanished_share"] = Effect(
        "vanished_share",
        share_b - live_share,
        max(-1.0, share_b - r_b - upper_live),
        min(1.0, share_b + r_b),
        "share",
    )
    return {name: out[name] for name in CATEGORICAL_EFFECTS}
