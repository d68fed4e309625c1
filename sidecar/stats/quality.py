"""Model quality from labelled predictions: error rate, Brier score, log loss, calibration
(ECE, reliability diagrams), AUC, their shifts against a baseline with anytime-valid
bounds, the fairness gap between slices, and confidence-based performance estimation.

A :class:`CalibrationState` is the mergeable per-window state of labelled classifier
predictions. It keeps fine micro-bins of the confidence (the probability of the
predicted class) with, per micro-bin, the weight, the weighted number correct and
the weighted sum of confidences; micro-bins of the binary score P(class 1) with the
weight of positives and negatives; and exact running sums of the per-sample Brier
score and (clipped) log loss. Everything the module reports is computed from that
state, never from raw samples; ``docs/statistics.md`` ("Quality") explains the
methods, the bounds and the tolerances.

>>> import numpy as np
>>> s = CalibrationState()
>>> s.add(np.array([0.9, 0.8, 0.6]), np.array([1.0, 1.0, 0.0]))
>>> (s.count, round(s.error_rate() or 0.0, 4))
(3.0, 0.3333)
>>> CalibrationState.decode(s.encode()).count
3.0

Encoding (version 1, little-endian): header ``<BBHIII`` = tag ``Q`` (0x51), version,
flags (bit 0: unlabelled predictions; other bits 0), bins, k (non-empty confidence micro-bins), m (non-empty score micro-bins);
then 10 float64 scalars (weight, weight squared, rows, brier sum, log loss sum,
positive weight, positive weight squared, negative weight, negative weight
squared, weighted sum of (confidence - correct)^2); k entries ``<Iddd`` (micro-bin index ascending, weight,
weighted correct, weighted confidence); m entries ``<Idd`` (index ascending,
positive weight, negative weight); then extension records (``type u8, length u32,
bytes``) that readers skip.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from sidecar.errors import InvalidInput
from sidecar.stats.effects import Effect
from sidecar.stats.sequences import (
    fixed_cdf_radius,
    fixed_mean_bounds,
    fixed_proportion_bounds,
    live_cdf_radius,
    live_mean_bounds,
    live_mean_radius,
    live_proportion_bounds,
)

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_ECE_BINS",
    "ESTIMATED_ERROR_SHIFT",
    "LOG_LOSS_EPS",
    "QUALITY_EFFECTS",
    "QUALITY_UNITS",
    "TAG_CALIBRATION",
    "Binning",
    "CBPEEstimate",
    "CalibrationState",
    "FairnessGap",
    "ReliabilityBin",
    "SliceQuality",
    "cbpe",
    "ece_radius",
    "estimated_error_shift",
    "fairness_gap",
    "fairness_gap_shift",
    "quality_effects",
]

Floats = npt.NDArray[np.float64]
Binning = Literal["fixed", "adaptive"]

TAG_CALIBRATION: Final = 0x51  # "Q"
_VERSION: Final = 1
DEFAULT_BINS: Final = 1000
DEFAULT_ECE_BINS: Final = 15
_MAX_BINS: Final = 1 << 20
#: Log loss clips the probability of the true class at this floor, so every per-sample
#: loss lies in [0, log(1/LOG_LOSS_EPS)] = [0, 6.91] and bounded-mean sequences apply.
LOG_LOSS_EPS: Final = 1e-3
_LOG_LOSS_MAX: Final = -math.log(LOG_LOSS_EPS)

QUALITY_EFFECTS: Final = (
    "error_rate_shift",
    "brier_shift",
    "log_loss_shift",
    "ece_shift",
    "ece_adaptive_shift",
    "auc_drop",
)
#: Units of the quality effects: the error rate as a share (0.02 = two points), the rest
#: absolute in the metric's own unit. ``auc_drop`` is baseline minus live (> 0: worse).
QUALITY_UNITS: Final = {
    "error_rate_shift": "share",
    "brier_shift": "absolute",
    "log_loss_shift": "absolute",
    "ece_shift": "absolute",
    "ece_adaptive_shift": "absolute",
    "auc_drop": "absolute",
}
#: Effect of :func:`estimated_error_shift` (CBPE: from confidences, not labels).
ESTIMATED_ERROR_SHIFT: Final = "estimated_error_rate_shift"

_HEAD = struct.Struct("<BBHIII")
_SCALARS = struct.Struct("<10d")
_CONF_ENTRY = np.dtype([("index", "<u4"), ("weight", "<f8"), ("correct", "<f8"), ("conf", "<f8")])
_SCORE_ENTRY = np.dtype([("index", "<u4"), ("pos", "<f8"), ("neg", "<f8")])
_EXTENSION_HEAD = struct.Struct("<BI")
_FLAG_UNLABELLED: Final = 1
_MIN_ALPHA: Final = 1e-300
_NAN: Final = math.nan


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ReliabilityBin:
    """One cell of a reliability diagram: confidence range [lo, hi), weight, mean
    confidence and accuracy of the predictions in it (nan for an empty cell)."""

    lo: float
    hi: float
    count: float
    mean_confidence: float
    accuracy: float


@dataclass(frozen=True)
class SliceQuality:
    """One slice's metric with its simultaneous (over the slices) confidence bounds."""

    name: str
    count: float
    estimate: float
    lower: float
    upper: float


@dataclass(frozen=True)
class FairnessGap:
    """Gap between the worst and best slice of one metric (higher is worse).

    ``lower``/``upper`` bound the true gap max_s theta_s - min_s theta_s at every
    time with probability at least 1 - alpha; ``best``/``worst`` are None (and
    the numbers nan) with fewer than two slices holding data.
    """

    metric: str
    best: str | None
    worst: str | None
    estimate: float
    lower: float
    upper: float
    slices: tuple[SliceQuality, ...]

    def as_effect(self) -> Effect:
        """The gap as an :class:`Effect` named ``fairness_gap_<metric>`` (unit "share"
        for the error rate, "absolute" for ECE)."""
        unit = "share" if self.metric == "error_rate" else "absolute"
        return Effect(f"fairness_gap_{self.metric}", self.estimate, self.lower, self.upper, unit)


@dataclass(frozen=True)
class CBPEEstimate:
    """Confidence-based performance estimate: the expected error rate of predictions
    whose labels are not (all) known yet. An *estimate*, not a measurement.

    ``[lower, upper]`` covers the realized error rate of the same predictions with
    probability at least 1 - alpha when the (recalibrated) confidences are calibrated
    for them. ``realized_error`` is the error rate measured on those predictions when
    they are labelled (a :class:`CalibrationState` input), ``diverged`` whether it lies
    outside the bound (None without labels): the calibration assumption broke.
    """

    expected_error: float
    lower: float
    upper: float
    count: float
    recalibrated: bool
    realized_error: float | None
    diverged: bool | None


# --------------------------------------------------------------------------- validation


def _vector(name: str, value: object, size: int | None) -> Floats:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"{name} must be an array of numbers") from err
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InvalidInput(f"{name} must be one-dimensional, got shape {arr.shape}")
    if size is not None and arr.size != size:
        raise InvalidInput(f"{name} has {arr.size} values, expected {size} (one per prediction)")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidInput(f"{name}[{bad}] is {arr[bad]!r}: values must be finite")
    return arr


def _unit_interval(name: str, arr: Floats) -> None:
    bad = np.flatnonzero((arr < 0.0) | (arr > 1.0))
    if bad.size:
        raise InvalidInput(f"{name}[{int(bad[0])}] = {arr[bad[0]]!r} is outside [0, 1]")


def _binary(name: str, arr: Floats) -> None:
    bad = np.flatnonzero((arr != 0.0) & (arr != 1.0))
    if bad.size:
        raise InvalidInput(f"{name}[{int(bad[0])}] = {arr[bad[0]]!r} must be 0 or 1")


def _alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def _sums(index: npt.NDArray[np.intp], values: Floats, size: int) -> Floats:
    """Sums of ``values`` per ``index`` in [0, size)."""
    out: Floats = np.bincount(index, values, size).astype(np.float64, copy=False)
    return out


# --------------------------------------------------------------------------- the state


class CalibrationState:
    """Mergeable state of labelled classifier predictions (one window, one slice).

    ``bins`` micro-bins of width 1/bins over [0, 1] (a value v falls in micro-bin
    min(floor(v bins), bins - 1)) hold the confidence and binary-score histograms;
    losses are exact running sums. Statistics that depend on how confidences are
    grouped (ECE, reliability, AUC) are exact up to that resolution:
    :meth:`ece_tolerance` and :meth:`auc_tolerance` give the worst-case difference
    from the same statistic on the raw values.
    """

    __slots__ = (
        "_bins",
        "_conf",
        "_correct",
        "_neg",
        "_neg_sq",
        "_pos",
        "_pos_sq",
        "_top_sq",
        "_w",
        "brier_sum",
        "count",
        "log_loss_sum",
        "rows",
        "unlabelled",
        "weight_sq",
    )

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
            raise InvalidInput(f"bins must be an integer, got {bins!r}")
        if not 1 <= int(bins) <= _MAX_BINS:
            raise InvalidInput(f"bins must be in [1, {_MAX_BINS}], got {bins}")
        self._bins = int(bins)
        m = self._bins
        self._w = np.zeros(m)  # weight per confidence micro-bin
        self._correct = np.zeros(m)  # weighted number correct
        self._conf = np.zeros(m)  # weighted sum of confidences
        self._pos = np.zeros(m)  # weight of label-1 rows per score micro-bin
        self._neg = np.zeros(m)  # weight of label-0 rows per score micro-bin
        #: Total weight of the predictions (the number of them when unweighted).
        self.count = 0.0
        #: Sum of squared weights (for the effective sample size).
        self.weight_sq = 0.0
        #: Number of predictions added (unweighted).
        self.rows = 0.0
        #: Weighted sums of the per-sample Brier score and clipped log loss.
        self.brier_sum = 0.0
        self.log_loss_sum = 0.0
        self._pos_sq = 0.0
        self._neg_sq = 0.0
        self._top_sq = 0.0  # weighted sum of (confidence - correct)^2
        #: True when the state holds predictions without labels (:meth:`add_unlabelled`):
        #: only the confidence histogram is meaningful, for :func:`cbpe`.
        self.unlabelled = False

    # ----------------------------------------------------------------- building

    @property
    def bins(self) -> int:
        """Number of micro-bins over [0, 1]."""
        return self._bins

    def _index(self, values: Floats) -> npt.NDArray[np.intp]:
        idx: npt.NDArray[np.intp] = np.minimum(
            np.floor(values * self._bins).astype(np.intp), self._bins - 1
        )
        return idx

    def add(
        self,
        confidence: npt.ArrayLike,
        correct: npt.ArrayLike,
        weight: npt.ArrayLike | None = None,
        score: npt.ArrayLike | None = None,
        label: npt.ArrayLike | None = None,
    ) -> None:
        """Add labelled predictions.

        ``confidence`` in [0, 1] is the probability the model gave its predicted
        class, ``correct`` 1 where that prediction was right and 0 where not;
        ``weight`` (>= 0, default 1) weights each row. ``score`` (P(class 1) of a
        binary classifier, in [0, 1]) and ``label`` (0 or 1) are optional, given
        together: they feed AUC, and Brier score and log loss are then those of the
        score against the label; rows without them use the confidence against
        ``correct`` (top-label Brier and log loss, identical for a binary model).
        InvalidInput on NaN, out-of-range or mismatched inputs; nothing changes then.
        """
        conf = _vector("confidence", confidence, None)
        n = conf.size
        corr = _vector("correct", correct, n)
        _unit_interval("confidence", conf)
        _binary("correct", corr)
        if weight is None:
            w = np.ones(n)
        else:
            w = _vector("weight", weight, n)
            bad = np.flatnonzero(w < 0.0)
            if bad.size:
                raise InvalidInput(f"weight[{int(bad[0])}] = {w[bad[0]]!r} is negative")
        if (score is None) != (label is None):
            raise InvalidInput("score and label must be given together (or neither)")
        sc = lab = None
        if score is not None and label is not None:
            sc = _vector("score", score, n)
            lab = _vector("label", label, n)
            _unit_interval("score", sc)
            _binary("label", lab)
        if self.unlabelled and self.rows > 0.0:
            raise InvalidInput(
                "this state holds unlabelled predictions; add labelled ones to another"
            )
        if n == 0:
            return
        # Everything is validated: from here on nothing can fail half-way.
        idx = self._index(conf)
        self._w += _sums(idx, w, self._bins)
        self._correct += _sums(idx, w * corr, self._bins)
        self._conf += _sums(idx, w * conf, self._bins)
        if sc is not None and lab is not None:
            p_true = np.where(lab == 1.0, sc, 1.0 - sc)
            sq = (sc - lab) ** 2
            sidx = self._index(sc)
            pos = lab == 1.0
            self._pos += _sums(sidx[pos], w[pos], self._bins)
            self._neg += _sums(sidx[~pos], w[~pos], self._bins)
            self._pos_sq += float(np.dot(w[pos], w[pos]))
            self._neg_sq += float(np.dot(w[~pos], w[~pos]))
        else:
            p_true = np.where(corr == 1.0, conf, 1.0 - conf)
            sq = (conf - corr) ** 2
        self._top_sq += float(np.dot(w, (conf - corr) ** 2))
        self.brier_sum += float(np.dot(w, sq))
        self.log_loss_sum += float(np.dot(w, -np.log(np.maximum(p_true, LOG_LOSS_EPS))))
        self.count += float(w.sum())
        self.weight_sq += float(np.dot(w, w))
        self.rows += float(n)

    def add_unlabelled(
        self, confidence: npt.ArrayLike, weight: npt.ArrayLike | None = None
    ) -> None:
        """Add predictions whose labels are not known (yet): only their confidences count.

        Such a state feeds :func:`cbpe` (the expected error rate of what the model
        served); its error rate, losses, ECE and AUC are None/nan. Labelled and
        unlabelled predictions never mix in one state (InvalidInput).
        """
        conf = _vector("confidence", confidence, None)
        _unit_interval("confidence", conf)
        if weight is None:
            w = np.ones(conf.size)
        else:
            w = _vector("weight", weight, conf.size)
            bad = np.flatnonzero(w < 0.0)
            if bad.size:
                raise InvalidInput(f"weight[{int(bad[0])}] = {w[bad[0]]!r} is negative")
        if not self.unlabelled and self.rows > 0.0:
            raise InvalidInput(
                "this state holds labelled predictions; add unlabelled ones to another"
            )
        self.unlabelled = True
        if conf.size == 0:
            return
        idx = self._index(conf)
        self._w += _sums(idx, w, self._bins)
        self._conf += _sums(idx, w * conf, self._bins)
        self.count += float(w.sum())
        self.weight_sq += float(np.dot(w, w))
        self.rows += float(conf.size)

    def merge(self, other: CalibrationState) -> None:
        """Add ``other``'s predictions to this state (same ``bins``, both labelled or
        both unlabelled, required)."""
        if not isinstance(other, CalibrationState):
            raise InvalidInput(f"cannot merge a {type(other).__name__} into a CalibrationState")
        if other._bins != self._bins:
            raise InvalidInput(
                f"cannot merge calibration states with {other._bins} and {self._bins} micro-bins"
            )
        if self.rows > 0.0 and other.rows > 0.0 and self.unlabelled != other.unlabelled:
            raise InvalidInput("cannot merge labelled and unlabelled predictions")
        if other.rows > 0.0 or other.unlabelled:
            self.unlabelled = self.unlabelled if self.rows > 0.0 else other.unlabelled
        self._w += other._w
        self._correct += other._correct
        self._conf += other._conf
        self._pos += other._pos
        self._neg += other._neg
        self._pos_sq += other._pos_sq
        self._neg_sq += other._neg_sq
        self._top_sq += other._top_sq
        self.count += other.count
        self.weight_sq += other.weight_sq
        self.rows += other.rows
        self.brier_sum += other.brier_sum
        self.log_loss_sum += other.log_loss_sum

    def copy(self) -> CalibrationState:
        """An independent copy."""
        out = CalibrationState(self._bins)
        out.merge(self)
        return out

    # ----------------------------------------------------------------- encoding

    def encode(self) -> bytes:
        """Bytes of this state (tag ``Q``, version 1; layout in the module docstring)."""
        ci = np.flatnonzero(self._w > 0.0)
        si = np.flatnonzero((self._pos > 0.0) | (self._neg > 0.0))
        conf = np.empty(ci.size, dtype=_CONF_ENTRY)
        conf["index"], conf["weight"] = ci, self._w[ci]
        conf["correct"], conf["conf"] = self._correct[ci], self._conf[ci]
        score = np.empty(si.size, dtype=_SCORE_ENTRY)
        score["index"], score["pos"], score["neg"] = si, self._pos[si], self._neg[si]
        flags = _FLAG_UNLABELLED if self.unlabelled else 0
        head = _HEAD.pack(TAG_CALIBRATION, _VERSION, flags, self._bins, ci.size, si.size)
        scalars = _SCALARS.pack(
            self.count,
            self.weight_sq,
            self.rows,
            self.brier_sum,
            self.log_loss_sum,
            float(self._pos.sum()),
            self._pos_sq,
            float(self._neg.sum()),
            self._neg_sq,
            self._top_sq,
        )
        return b"".join((head, scalars, conf.tobytes(), score.tobytes()))

    @classmethod
    def decode(cls, data: bytes) -> CalibrationState:
        """Read :meth:`encode`'s bytes; InvalidInput on corrupt, truncated or unknown data."""
        what = "calibration state"
        try:
            view = memoryview(data)
        except TypeError as err:
            raise InvalidInput(f"{what} must be bytes, got {type(data).__name__}") from err
        if len(view) < _HEAD.size + _SCALARS.size:
            raise InvalidInput(f"{what} too short: {len(view)} bytes")
        tag, version, flags, bins, k, m = _HEAD.unpack_from(view)
        if tag != TAG_CALIBRATION:
            raise InvalidInput(f"not a {what}: tag {tag:#04x}")
        if version != _VERSION:
            raise InvalidInput(
                f"{what} version {version} is not supported (this reader knows {_VERSION}); "
                "upgrade baselined to read it"
            )
        if not 1 <= bins <= _MAX_BINS or k > bins or m > bins:
            raise InvalidInput(f"{what}: bad sizes (bins {bins}, entries {k} and {m})")
        offset = _HEAD.size
        scalars = _SCALARS.unpack_from(view, offset)
        offset += _SCALARS.size
        end = offset + k * _CONF_ENTRY.itemsize + m * _SCORE_ENTRY.itemsize
        if end > len(view):
            raise InvalidInput(f"{what} truncated: needs {end} bytes, got {len(view)}")
        conf = np.frombuffer(view, dtype=_CONF_ENTRY, count=k, offset=offset)
        offset += k * _CONF_ENTRY.itemsize
        score = np.frombuffer(view, dtype=_SCORE_ENTRY, count=m, offset=offset)
        offset += m * _SCORE_ENTRY.itemsize
        while offset < len(view):  # extension records: skipped
            if offset + _EXTENSION_HEAD.size > len(view):
                raise InvalidInput(f"{what}: truncated extension record")
            _type, length = _EXTENSION_HEAD.unpack_from(view, offset)
            offset += _EXTENSION_HEAD.size + length
            if offset > len(view):
                raise InvalidInput(f"{what}: truncated extension record")
        numbers = np.concatenate(
            (
                np.asarray(scalars),
                conf["weight"],
                conf["correct"],
                conf["conf"],
                score["pos"],
                score["neg"],
            )
        )
        if not np.isfinite(numbers).all() or (numbers < 0.0).any():
            raise InvalidInput(f"{what}: negative or non-finite numbers")
        for name, idx in (("confidence", conf["index"]), ("score", score["index"])):
            if idx.size and (int(idx.max()) >= bins or (np.diff(idx.astype(np.int64)) <= 0).any()):
                raise InvalidInput(f"{what}: {name} micro-bin indices out of order or range")
        if (conf["correct"] > conf["weight"] * (1 + 1e-9)).any() or (
            conf["conf"] > conf["weight"] * (1 + 1e-9)
        ).any():
            raise InvalidInput(f"{what}: a micro-bin holds more correct or confidence than weight")
        if flags & ~_FLAG_UNLABELLED:
            raise InvalidInput(f"{what}: unknown flags {flags:#06x}")
        state = cls(bins)
        state.unlabelled = bool(flags & _FLAG_UNLABELLED)
        ci, si = conf["index"].astype(np.intp), score["index"].astype(np.intp)
        state._w[ci], state._correct[ci], state._conf[ci] = (
            conf["weight"],
            conf["correct"],
            conf["conf"],
        )
        state._pos[si], state._neg[si] = score["pos"], score["neg"]
        (
            state.count,
            state.weight_sq,
            state.rows,
            state.brier_sum,
            state.log_loss_sum,
            _pos_total,
            state._pos_sq,
            _neg_total,
            state._neg_sq,
            state._top_sq,
        ) = scalars
        return state

    # ----------------------------------------------------------------- metrics

    @property
    def n_eff(self) -> float:
        """Effective sample size (sum w)^2 / sum w^2 (= rows when unweighted); bounds use it."""
        return self.count * self.count / self.weight_sq if self.weight_sq > 0.0 else 0.0

    @property
    def positives(self) -> float:
        """Weight of rows with label 1 (rows given with score and label)."""
        return float(self._pos.sum())

    @property
    def negatives(self) -> float:
        """Weight of rows with label 0 (rows given with score and label)."""
        return float(self._neg.sum())

    def accuracy(self) -> float | None:
        """Weighted share of correct predictions; None when empty."""
        if self.count <= 0.0 or self.unlabelled:
            return None
        return min(1.0, max(0.0, float(self._correct.sum()) / self.count))

    def error_rate(self) -> float | None:
        """Weighted share of wrong predictions; None when empty."""
        acc = self.accuracy()
        return None if acc is None else 1.0 - acc

    def mean_confidence(self) -> float | None:
        """Weighted mean confidence; None when empty."""
        return float(self._conf.sum()) / self.count if self.count > 0.0 else None

    def top_label_brier(self) -> float | None:
        """Mean (confidence - correct)^2 (the variance bound of the ECE sequences); None when
        empty or unlabelled."""
        return self._top_sq / self.count if self.count > 0.0 and not self.unlabelled else None

    def brier(self) -> float | None:
        """Mean Brier score (squared error of the probability); None when empty."""
        return self.brier_sum / self.count if self.count > 0.0 and not self.unlabelled else None

    def log_loss(self) -> float | None:
        """Mean log loss, the true class's probability clipped at LOG_LOSS_EPS; None when empty."""
        return self.log_loss_sum / self.count if self.count > 0.0 and not self.unlabelled else None

    def auc(self) -> float | None:
        """ROC AUC of the binary score (Mann-Whitney, ties half) at micro-bin resolution;
        None unless both labels are present. :meth:`auc_tolerance` bounds the difference
        from the AUC of the raw scores."""
        p, n = self.positives, self.negatives
        if p <= 0.0 or n <= 0.0:
            return None
        below = np.cumsum(self._neg) - self._neg  # negatives in lower micro-bins
        wins = float(np.dot(self._pos, below + 0.5 * self._neg))
        return min(1.0, max(0.0, wins / (p * n)))

    def auc_tolerance(self) -> float:
        """Largest possible |auc() - AUC of the raw scores|: half the share of
        (positive, negative) pairs that share a micro-bin (counted as ties)."""
        p, n = self.positives, self.negatives
        if p <= 0.0 or n <= 0.0:
            return _NAN
        return 0.5 * float(np.dot(self._pos, self._neg)) / (p * n)

    # ----------------------------------------------------------------- binning

    def _cells(self, binning: str, n_bins: int) -> tuple[Floats, Floats, Floats, Floats, Floats]:
        """Per cell: lo, hi, weight, weighted correct, weighted confidence."""
        if binning not in ("fixed", "adaptive"):
            raise InvalidInput(f"binning must be 'fixed' or 'adaptive', got {binning!r}")
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise InvalidInput(f"n_bins must be a positive integer, got {n_bins!r}")
        m = self._bins
        if binning == "fixed":
            # A micro-bin goes to the cell holding its mean confidence (its centre if empty):
            # exact when the cell edges fall on micro-bin edges (n_bins divides bins).
            centre = (np.arange(m) + 0.5) / m
            with np.errstate(invalid="ignore", divide="ignore"):
                where = np.where(self._w > 0.0, self._conf / self._w, centre)
            cell = np.minimum(np.floor(where * n_bins).astype(np.intp), n_bins - 1)
            edges = np.arange(n_bins + 1) / n_bins
            return (
                edges[:-1],
                edges[1:],
                _sums(cell, self._w, n_bins),
                _sums(cell, self._correct, n_bins),
                _sums(cell, self._conf, n_bins),
            )
        # Adaptive: n_bins cells of equal weight. Cumulative sums are interpolated
        # linearly inside a micro-bin, so a micro-bin holding a cut is shared between
        # its two cells in proportion to the weight on either side.
        total = self.count
        cum_w = np.concatenate(([0.0], np.cumsum(self._w)))
        cum_c = np.concatenate(([0.0], np.cumsum(self._correct)))
        cum_p = np.concatenate(([0.0], np.cumsum(self._conf)))
        cuts = np.arange(n_bins + 1) * (total / n_bins)
        # Positions on the micro-bin axis; only strictly increasing cum_w is interpolable.
        keep = np.concatenate(([True], np.diff(cum_w) > 0.0))
        xs = cum_w[keep]
        pos = np.interp(cuts, xs, np.arange(m + 1, dtype=np.float64)[keep])
        at_c = np.interp(cuts, xs, cum_c[keep])
        at_p = np.interp(cuts, xs, cum_p[keep])
        return (
            pos[:-1] / m,
            pos[1:] / m,
            np.diff(cuts),
            np.diff(at_c),
            np.diff(at_p),
        )

    def reliability(
        self, binning: Binning = "fixed", n_bins: int = DEFAULT_ECE_BINS
    ) -> list[ReliabilityBin]:
        """The reliability diagram's cells (all of them, empty ones with nan means).

        ``fixed``: n_bins equal-width cells [k/n_bins, (k+1)/n_bins). ``adaptive``:
        n_bins cells of equal weight (empty state: no cells).
        """
        if binning == "adaptive" and self.count <= 0.0:
            self._cells(binning, n_bins)  # validates the arguments
            return []
        lo, hi, w, c, p = self._cells(binning, n_bins)
        out = []
        for i in range(lo.size):
            if w[i] > 0.0:
                acc = _NAN if self.unlabelled else min(1.0, max(0.0, c[i] / w[i]))
                out.append(
                    ReliabilityBin(
                        float(lo[i]),
                        float(hi[i]),
                        float(w[i]),
                        float(p[i] / w[i]),
                        float(acc),
                    )
                )
            else:
                out.append(ReliabilityBin(float(lo[i]), float(hi[i]), 0.0, _NAN, _NAN))
        return out

    def ece(self, binning: Binning = "fixed", n_bins: int = DEFAULT_ECE_BINS) -> float:
        """Expected calibration error sum_b w_b |mean confidence_b - accuracy_b| over the
        cells of :meth:`reliability`; nan when empty."""
        if self.count <= 0.0 or self.unlabelled:
            self._cells(binning, n_bins)
            return _NAN
        _lo, _hi, _w, c, p = self._cells(binning, n_bins)
        return float(np.abs(p - c).sum()) / self.count

    def ece_tolerance(self, binning: Binning = "fixed", n_bins: int = DEFAULT_ECE_BINS) -> float:
        """Largest possible |ece() - ECE of the raw values with the same cells|.

        Only micro-bins that a cell edge (fixed) or an equal-weight cut (adaptive)
        passes through can be grouped differently; moving a prediction between two
        cells changes the ECE by at most 2 w |confidence - correct| / W <= 2 w / W.
        The tolerance is 2 / W times the weight of those micro-bins (0 for fixed cells
        when n_bins divides bins).
        """
        self._cells(binning, n_bins)
        if self.count <= 0.0:
            return _NAN
        m = self._bins
        if binning == "fixed":
            edges = np.arange(1, n_bins) * (m / n_bins)
            aligned = np.abs(edges - np.round(edges)) < 1e-9
            touched = np.floor(edges[~aligned]).astype(np.intp)
            return 2.0 * float(self._w[touched].sum()) / self.count
        cum_w = np.cumsum(self._w)
        cuts = np.arange(1, n_bins) * (self.count / n_bins)
        # Micro-bins whose cumulative range [start, end] holds a cut (both neighbours
        # when the cut falls on a boundary: equal-count splits round it either way).
        first = np.searchsorted(cum_w, cuts * (1 - 1e-12), side="left")
        last = np.searchsorted(cum_w, cuts * (1 + 1e-12), side="right")
        touched_set: set[int] = set()
        for a, b in zip(first.tolist(), last.tolist(), strict=True):
            touched_set.update(range(a, min(b, m - 1) + 1))
        touched = np.fromiter(touched_set, dtype=np.intp)
        return 2.0 * float(self._w[touched].sum()) / self.count

    def __repr__(self) -> str:
        return (
            f"CalibrationState(count={self.count:g}, error_rate={self.error_rate()}, "
            f"bins={self._bins})"
        )


# --------------------------------------------------------------------------- ECE radius


@lru_cache(maxsize=256)
def _log_partitions(bins: int, n_bins: int) -> float:
    """log of the number of +-1 functions on `bins` ordered micro-bins with at most
    n_bins - 1 sign changes: 2 sum_{k < n_bins} C(bins - 1, k)."""
    terms = [
        math.lgamma(bins) - math.lgamma(k + 1) - math.lgamma(bins - k)
        for k in range(min(n_bins, bins))
    ]
    top = max(terms)
    return math.log(2.0) + top + math.log(sum(math.exp(t - top) for t in terms))


#: Grids of the ECE sequences' union bounds (see `ece_radius`): Bennett exponents
#: lambda (for increments bounded by 2) and variance bounds (1 down to 1e-4).
_LAMBDAS: Final = np.geomspace(1e-3, 4.0, 32)
_VARIANCES: Final = np.geomspace(1.0, 1e-4, 41)
_SPREAD: Final = 2.0  # |X - E X| <= 2 for X = s(confidence) (confidence - correct) in [-1, 1]
_PHI: Final = (np.expm1(_LAMBDAS * _SPREAD) - _LAMBDAS * _SPREAD) / _SPREAD**2
_VAR_SHARE: Final = 0.1  # of alpha, for the upper bound on E[(confidence - correct)^2]


def ece_radius(
    n: float,
    alpha: float,
    binning: Binning,
    n_bins: int,
    bins: int,
    *,
    live: bool,
    second_moment: float | None = None,
) -> float:
    """Radius r with |ECE_hat - ECE| <= r (for every t at once when ``live``), prob >= 1 - alpha.

    With d_b = E[(confidence - correct) 1{cell b}], ECE = sum_b |d_b| and
    |ECE_hat - ECE| <= sum_b |d_hat_b - d_b| = sup over sign functions s of the
    deviation of the mean of X_s = s(confidence) (confidence - correct), a variable in
    [-1, 1]. The bound holds for every sign function at once by a union bound: 2^n_bins
    functions for fixed cells; for adaptive (data-chosen) cells every +-1 function on
    the micro-bins with at most n_bins - 1 sign changes (cuts inside a micro-bin are
    convex combinations of those), so it holds whichever cells the data picks.

    Without ``second_moment`` each X_s gets the range-only bound (time-uniform normal
    mixture live, Hoeffding on the baseline). With it (the state's mean of
    (confidence - correct)^2, which bounds Var X_s for every s), the bound is
    variance-adaptive: an upper confidence bound U on E[(confidence - correct)^2]
    (at alpha / 10) picks the smallest v >= U of a grid of 41 variances, and for each
    X_s and v Bennett's inequality makes exp(lambda S_t - t v phi(lambda)),
    phi(lambda) = (e^(2 lambda) - 1 - 2 lambda) / 4, a supermartingale; Ville's
    inequality over a grid of 32 lambdas, both signs, every grid v and every s gives
    |S_t / t| <= min over lambda of (log(1/a) + t v phi(lambda)) / (lambda t) for all t.
    """
    a = _alpha(alpha)
    if n <= 0.0:
        return 1.0
    log_count = n_bins * math.log(2.0) if binning == "fixed" else _log_partitions(bins, n_bins)
    if second_moment is None:
        a_each = max(_MIN_ALPHA, math.exp(math.log(a) - log_count))
        bounds = live_mean_bounds if live else fixed_mean_bounds
        lo, _hi = bounds(0.0, n, -1.0, 1.0, a_each)
        return min(1.0, -float(lo)) if float(lo) > -1.0 else 1.0
    moment = min(1.0, max(0.0, float(second_moment)))
    bounds = live_mean_bounds if live else fixed_mean_bounds
    _lo, upper = bounds(moment, n, 0.0, 1.0, _VAR_SHARE * a)
    fits = np.flatnonzero(float(upper) <= _VARIANCES)
    v = float(_VARIANCES[fits[-1]])
    grid = 2.0 * _VARIANCES.size * _LAMBDAS.size
    log_inv = log_count + math.log(grid) - math.log((1.0 - _VAR_SHARE) * a)
    r = float(np.min((log_inv + n * v * _PHI) / (_LAMBDAS * n)))
    return min(1.0, r)


# --------------------------------------------------------------------------- effects


def _none(name: str) -> Effect:
    return Effect(name, _NAN, _NAN, _NAN, QUALITY_UNITS[name])


def _shift(
    name: str,
    est_l: float,
    live: tuple[float, float],
    est_b: float,
    base: tuple[float, float],
) -> Effect:
    return Effect(name, est_l - est_b, live[0] - base[1], live[1] - base[0], QUALITY_UNITS[name])


def _error_rate_bounds(state: CalibrationState, alpha: float, live: bool) -> tuple[float, float]:
    n = state.n_eff
    k = min(n, max(0.0, (state.error_rate() or 0.0) * n))
    fn = live_proportion_bounds if live else fixed_proportion_bounds
    lo, hi = fn(k, n, alpha)
    return float(lo), float(hi)


def _mean_bounds(
    mean: float, state: CalibrationState, hi: float, alpha: float, live: bool
) -> tuple[float, float]:
    fn = live_mean_bounds if live else fixed_mean_bounds
    lo_b, hi_b = fn(mean, state.n_eff, 0.0, hi, alpha)
    return float(lo_b), float(hi_b)


def _ece_bounds(
    state: CalibrationState, alpha: float, binning: Binning, n_bins: int, live: bool
) -> tuple[float, float, float]:
    est = state.ece(binning, n_bins)
    moment = state.top_label_brier()
    r = ece_radius(state.n_eff, alpha, binning, n_bins, state.bins, live=live, second_moment=moment)
    return est, max(0.0, est - r), min(1.0, est + r)


def _auc_bounds(state: CalibrationState, alpha: float, live: bool) -> tuple[float, float]:
    """|AUC_hat - AUC| <= r_pos + r_neg, with r the (time-uniform when live) DKW radii of
    the positives' and negatives' score CDFs, each at alpha / 2: AUC = E_pos[G(S)] with G
    the negatives' mid-CDF, and an integral of a monotone [0, 1] function moves by at
    most the CDF radius."""
    auc = state.auc()
    assert auc is not None
    n_pos = state.positives**2 / state._pos_sq if state._pos_sq > 0 else 0.0
    n_neg = state.negatives**2 / state._neg_sq if state._neg_sq > 0 else 0.0
    fn = live_cdf_radius if live else fixed_cdf_radius
    r = float(fn(n_pos, alpha / 2.0)) + float(fn(n_neg, alpha / 2.0))
    return max(0.0, auc - r), min(1.0, auc + r)


def quality_effects(
    base: CalibrationState,
    live: CalibrationState,
    alpha: float | Callable[[str], float],
    *,
    n_bins: int = DEFAULT_ECE_BINS,
) -> dict[str, Effect]:
    """The :data:`QUALITY_EFFECTS` of ``live`` against ``base`` (in that order).

    Each effect is live minus baseline (``auc_drop``: baseline minus live, so > 0 is
    worse everywhere). Its interval combines the live side's confidence sequence
    (valid at every check) and the baseline's fixed-sample interval, each at half of
    the effect's alpha (``alpha`` a number, or a function of the effect's name).
    An effect whose inputs are missing (an empty side; AUC without both labels on
    both sides) has nan estimate and bounds.
    """

    def alpha_of(name: str) -> float:
        return _alpha(alpha(name) if callable(alpha) else alpha)

    out: dict[str, Effect] = {}
    if base.count <= 0.0 or live.count <= 0.0 or base.unlabelled or live.unlabelled:
        return {name: _none(name) for name in QUALITY_EFFECTS}
    a = alpha_of("error_rate_shift") / 2.0
    out["error_rate_shift"] = _shift(
        "error_rate_shift",
        live.error_rate() or 0.0,
        _error_rate_bounds(live, a, True),
        base.error_rate() or 0.0,
        _error_rate_bounds(base, a, False),
    )
    for name, value, top in (
        ("brier_shift", CalibrationState.brier, 1.0),
        ("log_loss_shift", CalibrationState.log_loss, _LOG_LOSS_MAX),
    ):
        a = alpha_of(name) / 2.0
        m_l, m_b = value(live) or 0.0, value(base) or 0.0
        out[name] = _shift(
            name,
            m_l,
            _mean_bounds(m_l, live, top, a, True),
            m_b,
            _mean_bounds(m_b, base, top, a, False),
        )
    for name, binning in (("ece_shift", "fixed"), ("ece_adaptive_shift", "adaptive")):
        a = alpha_of(name) / 2.0
        b_kind: Binning = "fixed" if binning == "fixed" else "adaptive"
        e_l, l_lo, l_hi = _ece_bounds(live, a, b_kind, n_bins, True)
        e_b, b_lo, b_hi = _ece_bounds(base, a, b_kind, n_bins, False)
        out[name] = _shift(name, e_l, (l_lo, l_hi), e_b, (b_lo, b_hi))
    auc_l, auc_b = live.auc(), base.auc()
    if auc_l is None or auc_b is None:
        out["auc_drop"] = _none("auc_drop")
    else:
        a = alpha_of("auc_drop") / 2.0
        l_lo, l_hi = _auc_bounds(live, a, True)
        b_lo, b_hi = _auc_bounds(base, a, False)
        out["auc_drop"] = Effect("auc_drop", auc_b - auc_l, b_lo - l_hi, b_hi - l_lo, "absolute")
    return {name: out[name] for name in QUALITY_EFFECTS}


# --------------------------------------------------------------------------- fairness


def fairness_gap(
    per_slice: Mapping[str, CalibrationState],
    metric: Literal["error_rate", "ece"],
    alpha: float,
    *,
    n_bins: int = DEFAULT_ECE_BINS,
    live: bool = True,
) -> FairnessGap:
    """Gap between the worst and the best slice of ``metric`` (fixed-bin ECE for "ece").

    Each slice with data gets a confidence interval at alpha / (number of such
    slices): time-uniform when ``live`` (a confidence sequence, valid at every check),
    fixed-sample otherwise (a frozen baseline), so all hold together with probability
    >= 1 - alpha (Bonferroni). Then max_s theta_s >= max_s lower_s and min_s theta_s <= min_s
    upper_s, so the gap is at least max(0, max lower - min upper) and at most
    max upper - min lower. ``worst``/``best`` are the slices with the highest/lowest
    estimate.
    """
    if metric not in ("error_rate", "ece"):
        raise InvalidInput(f"metric must be 'error_rate' or 'ece', got {metric!r}")
    a = _alpha(alpha)
    present = [(n, s) for n, s in per_slice.items() if s.count > 0.0 and not s.unlabelled]
    rows: list[SliceQuality] = []
    a_each = a / max(1, len(present))
    for name, s in sorted(present):
        if metric == "error_rate":
            est = s.error_rate() or 0.0
            lo, hi = _error_rate_bounds(s, a_each, live)
        else:
            est, lo, hi = _ece_bounds(s, a_each, "fixed", n_bins, live)
        rows.append(SliceQuality(name, s.count, est, lo, hi))
    if len(rows) < 2:
        return FairnessGap(metric, None, None, _NAN, _NAN, _NAN, tuple(rows))
    worst = max(rows, key=lambda r: (r.estimate, r.name))
    best = min(rows, key=lambda r: (r.estimate, r.name))
    lower = max(0.0, max(r.lower for r in rows) - min(r.upper for r in rows))
    upper = max(r.upper for r in rows) - min(r.lower for r in rows)
    return FairnessGap(
        metric, best.name, worst.name, worst.estimate - best.estimate, lower, upper, tuple(rows)
    )


def fairness_gap_shift(
    base: Mapping[str, CalibrationState],
    live: Mapping[str, CalibrationState],
    metric: Literal["error_rate", "ece"],
    alpha: float,
    *,
    n_bins: int = DEFAULT_ECE_BINS,
) -> tuple[FairnessGap, FairnessGap, Effect]:
    """The fairness gap of ``live`` against that of ``base``: (baseline gap, live gap, shift).

    Both gaps are taken over the slices holding labelled data on both sides (so they
    measure the same thing; a slice new in live or gone from it is left out). The
    shift effect ``fairness_gap_<metric>_shift`` is live gap minus baseline gap, with
    the interval [live lower - baseline upper, live upper - baseline lower]: each gap's
    simultaneous bounds (:func:`fairness_gap`) at alpha / 2, time-uniform on the live
    side and fixed-sample on the baseline, so the interval holds with probability
    >= 1 - alpha at every check. A gap the baseline already had gives a shift near 0:
    only a gap that *widened* clears a guardrail. nan (never fires) with fewer than
    two shared slices.
    """
    a = _alpha(alpha)
    shared = {
        name
        for name, s in live.items()
        if s.count > 0.0 and not s.unlabelled and name in base
        if base[name].count > 0.0 and not base[name].unlabelled
    }
    gap_b = fairness_gap({n: base[n] for n in shared}, metric, a / 2.0, n_bins=n_bins, live=False)
    gap_l = fairness_gap({n: live[n] for n in shared}, metric, a / 2.0, n_bins=n_bins)
    name = f"fairness_gap_{metric}_shift"
    unit = "share" if metric == "error_rate" else "absolute"
    if gap_b.worst is None or gap_l.worst is None:
        return gap_b, gap_l, Effect(name, _NAN, _NAN, _NAN, unit)
    shift = Effect(
        name,
        gap_l.estimate - gap_b.estimate,
        gap_l.lower - gap_b.upper,
        gap_l.upper - gap_b.lower,
        unit,
    )
    return gap_b, gap_l, shift


# --------------------------------------------------------------------------- CBPE


def estimated_error_shift(
    base: CalibrationState, live: CalibrationState, alpha: float, *, top: float = 1.0
) -> Effect:
    """CBPE's estimated error-rate shift: mean(1 - confidence) of ``live`` minus that of
    ``base`` (confidences of every sampled prediction, labelled or not), named
    :data:`ESTIMATED_ERROR_SHIFT` (unit "share").

    An *estimate*: it equals the error-rate shift when the confidences are
    calibrated on both sides (the CBPE assumption); the realized
    ``error_rate_shift`` tells once labels land. The interval bounds the shift of the
    expected value of 1 - confidence, a mean in [0, ``top``] (``top`` = 0.5 for a
    binary classifier with threshold 0.5, whose confidence is at least 0.5): the live
    side a time-uniform sequence, the baseline Hoeffding, each at alpha / 2. nan when
    a side is empty.
    """
    a = _alpha(alpha) / 2.0
    if not 0.0 < top <= 1.0:
        raise InvalidInput(f"top must be in (0, 1], got {top!r}")
    m_b, m_l = base.mean_confidence(), live.mean_confidence()
    if m_b is None or m_l is None or base.n_eff <= 0.0 or live.n_eff <= 0.0:
        return Effect(ESTIMATED_ERROR_SHIFT, _NAN, _NAN, _NAN, "share")
    e_b, e_l = min(top, max(0.0, 1.0 - m_b)), min(top, max(0.0, 1.0 - m_l))
    l_lo, l_hi = live_mean_bounds(e_l, live.n_eff, 0.0, top, a)
    b_lo, b_hi = fixed_mean_bounds(e_b, base.n_eff, 0.0, top, a)
    return Effect(
        ESTIMATED_ERROR_SHIFT,
        e_l - e_b,
        float(l_lo) - float(b_hi),
        float(l_hi) - float(b_lo),
        "share",
    )


def _recalibration(
    reference: CalibrationState, alpha: float, n_bins: int
) -> tuple[Floats, Floats, Floats, Floats]:
    """Reference reliability curve on equal-weight cells made of whole micro-bins:
    (cell mean confidence, accuracy, accuracy lower, accuracy upper), Clopper-Pearson
    per cell at alpha / cells (all hold together)."""
    w = reference._w
    total = reference.count
    before = np.cumsum(w) - w
    cell = np.minimum(np.floor((before + 0.5 * w) / total * n_bins).astype(np.intp), n_bins - 1)
    cw = _sums(cell, w, n_bins)
    cc = _sums(cell, reference._correct, n_bins)
    cp = _sums(cell, reference._conf, n_bins)
    used = cw > 0.0
    cw, cc, cp = cw[used], cc[used], cp[used]
    acc = np.clip(cc / cw, 0.0, 1.0)
    # Effective sizes per cell, scaled like the whole state's.
    scale = reference.n_eff / total if total > 0 else 0.0
    n_cell = cw * scale
    lo, hi = fixed_proportion_bounds(acc * n_cell, n_cell, alpha / max(1, cw.size))
    return cp / cw, acc, np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def cbpe(
    confidences: CalibrationState | npt.ArrayLike,
    calibration: CalibrationState | None,
    alpha: float,
    *,
    n_bins: int = DEFAULT_ECE_BINS,
) -> CBPEEstimate:
    """Confidence-based performance estimation (the idea of NannyML's CBPE).

    The expected error rate of predictions is mean(1 - g(confidence)), with g the
    identity (the model's confidences taken as calibrated) or, given a labelled
    ``calibration`` reference, its reliability curve: equal-weight cells of the
    reference, linearly interpolated between the cells' mean confidences. Given the
    confidences, each prediction is wrong independently with probability
    1 - g(confidence), so the realized error rate stays within a time-uniform
    bounded-mean radius of the expectation; with a reference, the curve's own
    uncertainty (Clopper-Pearson per cell, simultaneous) widens the interval. Alpha
    is split evenly between the two.

    ``confidences`` is an array of confidences of unlabelled predictions, or a
    CalibrationState: of unlabelled predictions (:meth:`CalibrationState.add_unlabelled`),
    or of labelled ones: then its realized error rate is reported and ``diverged``
    says whether it falls outside the bound.
    """
    a = _alpha(alpha)
    if calibration is not None and calibration.unlabelled:
        raise InvalidInput("the calibration reference must hold labelled predictions")
    if isinstance(confidences, CalibrationState):
        state: CalibrationState = confidences
        centres = np.where(
            state._w > 0.0, state._conf / np.where(state._w > 0.0, state._w, 1.0), 0.0
        )
        weights = state._w
        count, n = state.count, state.n_eff
        realized = state.error_rate()
    else:
        conf = _vector("confidences", confidences, None)
        _unit_interval("confidences", conf)
        centres, weights = conf, np.ones(conf.size)
        count = n = float(conf.size)
        realized = None
    if count <= 0.0:
        return CBPEEstimate(_NAN, _NAN, _NAN, 0.0, calibration is not None, None, None)
    share = weights / count
    if calibration is not None and calibration.count > 0.0:
        a_curve, a_draw = a / 2.0, a / 2.0
        xs, acc, acc_lo, acc_hi = _recalibration(calibration, a_curve, n_bins)
        g = np.interp(centres, xs, acc)
        g_lo = np.interp(centres, xs, acc_lo)
        g_hi = np.interp(centres, xs, acc_hi)
        recalibrated = True
    else:
        a_draw = a
        g = g_lo = g_hi = centres
        recalibrated = False
    expected = float(np.dot(share, 1.0 - g))
    low = float(np.dot(share, 1.0 - g_hi))
    high = float(np.dot(share, 1.0 - g_lo))
    r = float(live_mean_radius(n, a_draw))
    lower, upper = max(0.0, low - r), min(1.0, high + r)
    diverged = None if realized is None else not lower <= realized <= upper
    return CBPEEstimate(expected, lower, upper, count, recalibrated, realized, diverged)
