"""When did a shift begin: a change-point estimate, with an interval, from a series' buckets.

:func:`bucket_history` reads one series' per-bucket states (all writers
merged) from a store; :func:`estimate_change_point` reduces each bucket to one
scalar against the baseline and scans every boundary between buckets for the
single split that best separates "before" from "after".

Per-bucket statistics (computed from the states only):

- ``"pit"`` (numeric, the ``"auto"`` choice): the bucket's mean of the baseline
  CDF transform ``F0(x)``, approximated by ``F0`` at the bucket's quantiles on a
  grid of :data:`PIT_LEVELS` levels. 1/2 with per-value variance 1/12 when the
  bucket looks like the baseline.
- ``"above_median"`` (numeric): the share of the bucket's values above the
  baseline median, ``1 - cdf(median)``; binomial, per-value variance p(1-p).
- ``"tvd"`` (categorical, the ``"auto"`` choice): total variation distance of
  the bucket's value shares to the baseline's (values outside the baseline's
  table and its ``other`` pooled into one category), minus its expected value
  under no change at the bucket's count (``sqrt(2/pi)/2 * sum sqrt(p(1-p)/n)``),
  so buckets of uneven size are comparable.

The scan is a weighted Gaussian likelihood-ratio (CUSUM) scan: bucket ``b``'s
statistic ``x_b`` has weight ``n_b`` (its count) and variance ``s2 / n_b``. For a
split before bucket ``t`` the score is the drop of the weighted residual sum of
squares, ``W1 W2 / W * (m1 - m2)^2``, divided by ``s2``. ``s2`` is the larger of
the statistic's null per-value variance (1/12, or p(1-p) for ``above_median``;
none for ``tvd``) and the residual variance of the best split over ``B - 2``
degrees of freedom (quasi-likelihood: extra variance between buckets, seasonal
for instance, lowers scores instead of inventing change points).

A split is significant when its score is at least the chi-square(1) quantile
at ``1 - alpha / (B - 1)`` (Bonferroni over the ``B - 1`` boundaries; ``alpha``
defaults to 0.01); otherwise, and with fewer than 3 non-empty buckets, there is
no change point. The interval is the profile-likelihood set: every boundary
whose score is within ``chi2(1).ppf(confidence)`` of the maximum, reported as
the start times of the first and last such bucket.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from sidecar.records import ALL_TRAFFIC, SeriesId
from sidecar.series import CategoricalState, NumericState, decode_state
from sidecar.stores.base import Store

__all__ = [
    "PIT_LEVELS",
    "STATISTICS",
    "ChangePoint",
    "bucket_history",
    "bucket_statistics",
    "estimate_change_point",
]

State = NumericState | CategoricalState

PIT_LEVELS = 99
"""Quantile levels (midpoints of equal steps) at which ``"pit"`` evaluates a bucket."""

STATISTICS = ("auto", "pit", "above_median", "tvd")
"""Accepted values of ``statistic``."""

_NULL_VARIANCE_PIT = 1.0 / 12.0


@dataclass(frozen=True)
class ChangePoint:
    """An estimated change point: the start time of the first bucket after the shift,
    the interval of plausible start times, the value counts on both sides, the
    per-bucket statistic used and the scan score of the chosen split."""

    time: float
    lower: float
    upper: float
    before_count: int
    after_count: int
    statistic: str
    score: float


def bucket_history(
    store: Store,
    model: str,
    environment: str,
    series_id: SeriesId,
    start: float,
    end: float,
) -> list[tuple[int, State]]:
    """Per-bucket states of one series in ``[start, end)``, every writer merged, by bucket start.

    Series match on slice, kind and signal; version ``"*"`` merges all
    versions, any other version reads that version only. A state whose type
    differs from the bucket's first state for the series is skipped.
    """
    first, last = math.floor(start), math.ceil(end)
    if first >= last:
        return []
    merged: dict[int, State] = {}
    for partial in store.read_partials(model, environment, first, last):
        for text, blob in partial.series.items():
            sid = SeriesId.parse(text)
            if (sid.slice, sid.kind, sid.signal) != (
                series_id.slice,
                series_id.kind,
                series_id.signal,
            ):
                continue
            if series_id.version != ALL_TRAFFIC and sid.version != series_id.version:
                continue
            state = decode_state(blob)
            old = merged.get(partial.bucket)
            if old is None:
                merged[partial.bucket] = state
            elif isinstance(old, NumericState):
                if isinstance(state, NumericState):
                    old.merge(state)
            elif isinstance(state, CategoricalState):
                old.merge(state)
    return sorted(merged.items(), key=lambda item: item[0])


def _resolve(statistic: str, baseline: State) -> str:
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {STATISTICS}")
    numeric = isinstance(baseline, NumericState)
    if statistic == "auto":
        return "pit" if numeric else "tvd"
    if numeric != (statistic != "tvd"):
        kind = "numeric" if numeric else "categorical"
        raise ValueError(f"statistic {statistic!r} does not apply to a {kind} series")
    return statistic


def _shares(state: CategoricalState, keys: Sequence[str]) -> npt.NDArray[np.float64]:
    """Shares of ``keys`` then of everything else, among the non-missing values."""
    n = state.count
    known = np.array([state.counts.get(k, 0) for k in keys], dtype=np.float64)
    return np.append(known, n - known.sum()) / n


def bucket_statistics(
    states: Sequence[State], baseline: State, statistic: str = "auto"
) -> tuple[str, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(statistic used, per-bucket value, per-bucket count) of non-missing values.

    Buckets with no values get count 0 (and value nan).
    """
    name = _resolve(statistic, baseline)
    counts = np.array([float(s.count) for s in states], dtype=np.float64)
    values = np.full(len(states), math.nan)
    if baseline.count == 0:
        raise ValueError("the baseline has no values")
    if isinstance(baseline, NumericState):
        median = float(baseline.quantiles([0.5])[0])
        grid = (np.arange(PIT_LEVELS) + 0.5) / PIT_LEVELS
        for i, state in enumerate(states):
            if not isinstance(state, NumericState):
                raise ValueError("a bucket state is categorical but the baseline is numeric")
            if state.count == 0:
                continue
            if name == "pit":
                values[i] = float(np.mean(baseline.cdf(state.quantiles(grid))))
            else:
                values[i] = 1.0 - float(state.cdf([median])[0])
        return name, values, counts
    keys = sorted(baseline.counts)
    expected = _shares(baseline, keys)
    spread = math.sqrt(2.0 / math.pi) / 2.0 * float(np.sum(np.sqrt(expected * (1 - expected))))
    for i, state in enumerate(states):
        if not isinstance(state, CategoricalState):
            raise ValueError("a bucket state is numeric but the baseline is categorical")
        if state.count == 0:
            continue
        tvd = 0.5 * float(np.abs(_shares(state, keys) - expected).sum())
        values[i] = tvd - spread / math.sqrt(state.count)
    return name, values, counts


def estimate_change_point(
    history: Sequence[tuple[int, State]],
    baseline: State,
    *,
    statistic: str = "auto",
    confidence: float = 0.95,
    alpha: float = 0.01,
) -> ChangePoint | None:
    """The single most likely change point of ``history`` (from :func:`bucket_history`),
    or None with fewer than 3 non-empty buckets or no significant split.

    See the module docstring for the statistic, the scan, the significance
    threshold (``alpha``) and the interval (``confidence``).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be within (0, 1), got {alpha!r}")
    ordered = sorted(history, key=lambda item: item[0])
    name, values, counts = bucket_statistics([s for _, s in ordered], baseline, statistic)
    keep = counts > 0
    times = np.array([t for t, _ in ordered], dtype=np.float64)[keep]
    x, w = values[keep], counts[keep]
    buckets = x.size
    if buckets < 3:
        return None
    # Prefix sums: segment [0, t) against [t, B) for t = 1 .. B-1.
    cw, cwx = np.cumsum(w), np.cumsum(w * x)
    total_w, total_wx = float(cw[-1]), float(cwx[-1])
    w1, s1 = cw[:-1], cwx[:-1]
    w2, s2 = total_w - w1, total_wx - s1
    m1, m2 = s1 / w1, s2 / w2
    gain = w1 * w2 / total_w * (m1 - m2) ** 2
    best = int(np.argmax(gain))
    split = best + 1
    fit = np.where(np.arange(buckets) < split, m1[best], m2[best])
    residual = float(np.sum(w * (x - fit) ** 2)) / max(buckets - 2, 1)
    if name == "pit":
        null = _NULL_VARIANCE_PIT
    elif name == "above_median":
        p = total_wx / total_w
        null = p * (1.0 - p)
    else:
        null = 0.0
    variance = max(null, residual)
    if variance <= 0.0:
        return None  # every bucket identical: nothing to split
    scores = gain / variance
    score = float(scores[best])
    if score < float(stats.chi2.isf(alpha / (buckets - 1), 1)):
        return None
    plausible = np.flatnonzero(scores >= score - float(stats.chi2.ppf(confidence, 1))) + 1
    return ChangePoint(
        time=float(times[split]),
        lower=float(times[plausible[0]]),
        upper=float(times[plausible[-1]]),
        before_count=int(w1[best]),
        after_count=int(w2[best]),
        statistic=name,
        score=score,
    )
