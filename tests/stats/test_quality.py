"""Quality statistics of labelled predictions: metrics against exact numpy on the same data,
merge and encoding, bound coverage on no-change streams, detection of a calibration drift,
the fairness gap, and confidence-based performance estimation. Fixed seeds throughout."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from sidecar.errors import InvalidInput
from sidecar.stats.quality import (
    QUALITY_EFFECTS,
    Binning,
    CalibrationState,
    cbpe,
    ece_radius,
    estimated_error_shift,
    fairness_gap,
    fairness_gap_shift,
    quality_effects,
)

Floats = npt.NDArray[np.float64]
Batch = dict[str, Floats]


def _binary(
    rng: np.random.Generator,
    n: int,
    *,
    shrink: float = 1.0,
    truth: float = 1.0,
    a: float = 5.0,
    b: float = 2.0,
) -> Batch:
    """Binary classifier predictions. p ~ Beta(a, b) is the reported P(class 1) of a
    calibrated model; the label is drawn with probability 0.5 + truth (p - 0.5) (truth
    != 1: miscalibrated), and the model reports 0.5 + shrink (p - 0.5) (shrink < 1:
    scores pulled towards 0.5, same predicted classes, so accuracy is unchanged)."""
    p = rng.beta(a, b, n)
    y = (rng.random(n) < 0.5 + truth * (p - 0.5)).astype(np.float64)
    s = 0.5 + shrink * (p - 0.5)
    pred = (s >= 0.5).astype(np.float64)
    return {
        "confidence": np.maximum(s, 1.0 - s),
        "correct": (pred == y).astype(np.float64),
        "score": s,
        "label": y,
    }


def _state(batch: Batch, weight: Floats | None = None, bins: int = 1000) -> CalibrationState:
    s = CalibrationState(bins)
    s.add(batch["confidence"], batch["correct"], weight, batch["score"], batch["label"])
    return s


def _take(batch: Batch, lo: int, hi: int) -> Batch:
    return {k: v[lo:hi] for k, v in batch.items()}


# --- exact numpy references ----------------------------------------------------------------------


def _ece_fixed(conf: Floats, corr: Floats, n_bins: int, w: Floats) -> float:
    cell = np.minimum(np.floor(conf * n_bins).astype(np.intp), n_bins - 1)
    gap = np.bincount(cell, w * (conf - corr), n_bins)
    return float(np.abs(gap).sum() / w.sum())


def _ece_adaptive(conf: Floats, corr: Floats, n_bins: int) -> float:
    order = np.argsort(conf, kind="stable")
    return float(
        sum(abs((conf[g] - corr[g]).sum()) for g in np.array_split(order, n_bins)) / conf.size
    )


def _auc(score: Floats, label: Floats) -> float:
    ranks = stats.rankdata(score)  # ties get the mean rank: counted half
    pos = label == 1.0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# --- accuracy against numpy ----------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_match_exact_numpy(weighted: bool) -> None:
    rng = np.random.default_rng(11)
    batch = _binary(rng, 20_000, shrink=0.8)
    w = rng.integers(1, 5, batch["score"].size).astype(np.float64) if weighted else None
    ww = np.ones(batch["score"].size) if w is None else w
    s = _state(batch, w)
    conf, corr, score, label = batch["confidence"], batch["correct"], batch["score"], batch["label"]
    assert s.count == pytest.approx(ww.sum(), rel=1e-15)
    assert s.error_rate() == pytest.approx(1.0 - np.average(corr, weights=ww), rel=1e-12)
    assert s.brier() == pytest.approx(np.average((score - label) ** 2, weights=ww), rel=1e-12)
    p_true = np.where(label == 1.0, score, 1.0 - score)
    ll = np.average(-np.log(np.maximum(p_true, 1e-3)), weights=ww)
    assert s.log_loss() == pytest.approx(ll, rel=1e-12)
    # Fixed cells whose edges fall on micro-bin edges: exact.
    for n_bins in (10, 20, 25):
        assert s.ece("fixed", n_bins) == pytest.approx(
            _ece_fixed(conf, corr, n_bins, ww), abs=1e-12
        )
        assert s.ece_tolerance("fixed", n_bins) == 0.0
    # 15 cells: edges inside micro-bins, within the stated tolerance.
    exact = _ece_fixed(conf, corr, 15, ww)
    tol = s.ece_tolerance("fixed", 15)
    assert abs(s.ece("fixed", 15) - exact) <= tol
    assert tol < 0.05
    if not weighted:
        exact = _ece_adaptive(conf, corr, 15)
        tol = s.ece_tolerance("adaptive", 15)
        assert abs(s.ece("adaptive", 15) - exact) <= tol
        assert abs(s.ece("adaptive", 15) - exact) < 2e-3  # what it is in practice
    auc = s.auc()
    assert auc is not None
    if not weighted:
        assert abs(auc - _auc(score, label)) <= s.auc_tolerance() + 1e-12
        assert abs(auc - _auc(score, label)) < 1e-3
    assert 0.0 < s.auc_tolerance() < 5e-3


def test_auc_is_exact_for_scores_on_micro_bin_centres_and_reliability_matches() -> None:
    rng = np.random.default_rng(12)
    score = (rng.integers(0, 1000, 5000).astype(np.float64) + 0.5) / 1000.0
    label = (rng.random(5000) < score).astype(np.float64)
    conf = np.maximum(score, 1.0 - score)
    corr = ((score >= 0.5) == (label == 1.0)).astype(np.float64)
    s = CalibrationState()
    s.add(conf, corr, score=score, label=label)
    assert s.auc() == pytest.approx(_auc(score, label), abs=1e-12)
    cells = s.reliability("fixed", 10)
    assert len(cells) == 10
    cell = np.minimum(np.floor(conf * 10).astype(np.intp), 9)
    for k, rb in enumerate(cells):
        inside = cell == k
        assert (rb.lo, rb.hi) == pytest.approx((k / 10, (k + 1) / 10))
        assert rb.count == inside.sum()
        if inside.any():
            assert rb.mean_confidence == pytest.approx(conf[inside].mean(), rel=1e-12)
            assert rb.accuracy == pytest.approx(corr[inside].mean(), rel=1e-12)
        else:
            assert math.isnan(rb.accuracy)
    adaptive = s.reliability("adaptive", 8)
    assert len(adaptive) == 8
    assert [c.count for c in adaptive] == pytest.approx([5000 / 8] * 8)
    assert all(a.hi <= b.lo + 1e-12 for a, b in itertools.pairwise(adaptive))


def test_rows_without_score_use_top_label_losses_and_no_auc() -> None:
    conf = np.array([0.9, 0.6, 0.75, 1.0])
    corr = np.array([1.0, 0.0, 1.0, 0.0])
    s = CalibrationState()
    s.add(conf, corr)
    assert s.brier() == pytest.approx(np.mean((conf - corr) ** 2))
    p_true = np.where(corr == 1.0, conf, 1.0 - conf)
    assert s.log_loss() == pytest.approx(np.mean(-np.log(np.maximum(p_true, 1e-3))))
    assert s.auc() is None
    empty = CalibrationState()
    assert empty.error_rate() is None and empty.brier() is None and empty.auc() is None
    assert math.isnan(empty.ece())


# --- merge and encoding --------------------------------------------------------------------------


def test_merge_equals_adding_everything() -> None:
    rng = np.random.default_rng(13)
    batch = _binary(rng, 9000, shrink=0.7)
    w = rng.random(9000) * 3.0
    whole = _state(batch, w)
    parts = [_state(_take(batch, lo, lo + 3000), w[lo : lo + 3000]) for lo in range(0, 9000, 3000)]
    merged = parts[0].copy()
    merged.merge(parts[2])
    merged.merge(parts[1])
    for name in ("count", "weight_sq", "rows", "brier_sum", "log_loss_sum"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name), rel=1e-12)
    for binning in ("fixed", "adaptive"):
        assert merged.ece(binning) == pytest.approx(whole.ece(binning), rel=1e-10)
    assert merged.auc() == pytest.approx(whole.auc(), rel=1e-12)
    assert merged.error_rate() == pytest.approx(whole.error_rate(), rel=1e-12)
    with pytest.raises(InvalidInput, match="micro-bins"):
        merged.merge(CalibrationState(100))


def test_encode_decode_round_trip_and_garbage_rejected() -> None:
    rng = np.random.default_rng(14)
    s = _state(_binary(rng, 4000), rng.random(4000) + 0.5)
    data = s.encode()
    t = CalibrationState.decode(data)
    assert t.encode() == data
    assert t.bins == s.bins
    assert (t.count, t.rows, t.ece(), t.auc(), t.brier()) == (
        s.count,
        s.rows,
        s.ece(),
        s.auc(),
        s.brier(),
    )
    assert len(data) < 30 * 1000 + 20 * 1000 + 100  # sparse entries, at most one per micro-bin
    small = CalibrationState()
    small.add(np.array([0.7]), np.array([1.0]))
    assert len(small.encode()) < 150
    assert CalibrationState.decode(CalibrationState().encode()).count == 0.0
    # Extension records of later versions are skipped.
    assert CalibrationState.decode(data + b"\x07\x03\x00\x00\x00abc").encode() == data
    bad = [
        b"",
        b"Q",
        data[:40],
        data[:-5],
        b"N" + data[1:],
        data[:1] + b"\x09" + data[2:],
        data + b"\x07\xff\x00\x00\x00",  # extension longer than the data
        bytes(rng.integers(0, 256, 300, dtype=np.uint8)),
    ]
    nan = bytearray(data)
    nan[16:24] = np.array([np.nan]).tobytes()  # the weight scalar
    bad.append(bytes(nan))
    for blob in bad:
        with pytest.raises(InvalidInput):
            CalibrationState.decode(blob)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": [0.5, 1.2], "correct": [1, 0]}, r"confidence\[1\]"),
        ({"confidence": [0.5, np.nan], "correct": [1, 0]}, "finite"),
        ({"confidence": [0.5, 0.6], "correct": [1, 0.5]}, "0 or 1"),
        ({"confidence": [0.5, 0.6], "correct": [1]}, "expected 2"),
        ({"confidence": [0.5, 0.6], "correct": [1, 0], "weight": [1, -1]}, "negative"),
        ({"confidence": [0.5, 0.6], "correct": [1, 0], "score": [0.5, 0.6]}, "together"),
        (
            {"confidence": [0.5, 0.6], "correct": [1, 0], "score": [0.5, 2.0], "label": [0, 1]},
            r"score\[1\]",
        ),
        (
            {"confidence": [0.5, 0.6], "correct": [1, 0], "score": [0.5, 0.6], "label": [0, 2]},
            r"label\[1\]",
        ),
        ({"confidence": [[0.5]], "correct": [[1]]}, "one-dimensional"),
        ({"confidence": ["a"], "correct": [1]}, "numbers"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(kwargs: dict[str, object], message: str) -> None:
    s = CalibrationState()
    s.add(
        np.array([0.8, 0.9]),
        np.array([1.0, 0.0]),
        score=np.array([0.8, 0.1]),
        label=np.array([1.0, 1.0]),
    )
    before = s.encode()
    with pytest.raises(InvalidInput, match=message):
        s.add(**kwargs)  # type: ignore[arg-type]
    assert s.encode() == before


def test_bad_arguments_are_refused() -> None:
    s = CalibrationState()
    with pytest.raises(InvalidInput, match="binning"):
        s.ece("quantile")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="n_bins"):
        s.reliability("fixed", 0)
    with pytest.raises(InvalidInput, match="bins"):
        CalibrationState(0)
    with pytest.raises(InvalidInput, match="metric"):
        fairness_gap({"a": s}, "auc", 0.05)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="confidences"):
        cbpe(np.array([0.5, 1.5]), None, 0.05)


# --- bounds: coverage on no-change streams -------------------------------------------------------

COVERAGE_ALPHA = 0.05


def test_no_change_streams_rarely_clear_zero() -> None:
    """A stationary, slightly miscalibrated model: every effect's interval must contain 0
    at every check of a run, except in at most alpha of the runs."""
    runs, n_base, step, checks = 100, 3000, 250, 24
    misses = dict.fromkeys(QUALITY_EFFECTS, 0)
    for seed in range(runs):
        rng = np.random.default_rng(1000 + seed)
        base = _state(_binary(rng, n_base, truth=0.85))
        stream = _binary(rng, step * checks, truth=0.85)
        live = CalibrationState()
        hit: set[str] = set()
        for i in range(checks):
            live.merge(_state(_take(stream, i * step, (i + 1) * step)))
            for name, e in quality_effects(base, live, COVERAGE_ALPHA).items():
                if e.lower > 0.0 or e.upper < 0.0:
                    hit.add(name)
        for name in hit:
            misses[name] += 1
    rates = {name: n / runs for name, n in misses.items()}
    print("no-change share of runs with an interval excluding 0:", rates)
    assert all(rate <= COVERAGE_ALPHA for rate in rates.values()), rates


@pytest.mark.slow
def test_live_ece_radius_covers_the_true_ece_over_time() -> None:
    """Direct check of the ECE sequences where the truth is known exactly: a calibrated
    model (P(correct | confidence) = confidence) has ECE 0 for any cells, while the
    estimate is biased upwards (a sum of absolute noise). Checked every 200 samples up
    to 8,000 at alpha 0.2, for 15 and 40 cells; the largest estimate/radius ratio seen
    is reported (a fixed-sample Hoeffding radius without the union over cells reaches
    about 1.0 on these runs and fails)."""
    alpha, runs = 0.2, 50
    fails: dict[tuple[str, int], int] = {}
    worst = 0.0
    for seed in range(runs):
        stream = _binary(np.random.default_rng(2000 + seed), 8000, a=2.0, b=2.0)
        live = CalibrationState()
        bad: set[tuple[str, int]] = set()
        for lo in range(0, 8000, 200):
            live.merge(_state(_take(stream, lo, lo + 200)))
            for binning in ("fixed", "adaptive"):
                b: Binning = "fixed" if binning == "fixed" else "adaptive"
                for n_bins in (15, 40):
                    for moment in (None, live.top_label_brier()):
                        radius = ece_radius(
                            live.n_eff, alpha, b, n_bins, live.bins, live=True, second_moment=moment
                        )
                        worst = max(worst, live.ece(b, n_bins) / radius)
                        if live.ece(b, n_bins) > radius:
                            bad.add((binning, n_bins))
        for key in bad:
            fails[key] = fails.get(key, 0) + 1
    print("largest ECE estimate / live radius on calibrated streams:", round(worst, 3))
    assert all(f / runs <= alpha for f in fails.values()), fails
    assert worst > 0.1  # the check looked at estimates of the radius's order


# --- detection of a calibration drift ------------------------------------------------------------

DRIFT_ALPHA = 1e-3  # per test: an alpha of 0.01 spread over the quality family and more
ECE_GUARD = 0.02
ERROR_GUARD = 0.02


def _first_alarm(
    seed: int, shrink: float, horizon: int = 20_000, step: int = 250
) -> tuple[int | None, float]:
    """Labelled live samples until ece_shift's lower bound clears ECE_GUARD (None: never),
    and the largest lower bound of error_rate_shift seen on the way."""
    rng = np.random.default_rng(seed)
    base = _state(_binary(rng, 50_000))
    stream = _binary(rng, horizon, shrink=shrink)
    live = CalibrationState()
    worst_error = -math.inf
    for lo in range(0, horizon, step):
        live.merge(_state(_take(stream, lo, lo + step)))
        e = quality_effects(base, live, DRIFT_ALPHA)
        worst_error = max(worst_error, e["error_rate_shift"].lower)
        if e["ece_shift"].lower >= ECE_GUARD:
            return lo + step, worst_error
    return None, worst_error


def test_calibration_drift_raises_ece_while_error_rate_stays_quiet() -> None:
    """Scores pulled halfway towards 0.5 (same predicted classes: accuracy unchanged; ECE
    from ~0 to ~0.12): ece_shift's lower bound clears 0.02 within 4,000 labelled samples
    in every seed, while error_rate_shift's lower bound never reaches its 0.02 guardrail.
    The no-change twin never clears it."""
    found = []
    for seed in range(5):
        n, worst_error = _first_alarm(300 + seed, shrink=0.5)
        assert n is not None and n <= 4_000, n
        assert worst_error < ERROR_GUARD
        found.append(n)
        twin, twin_error = _first_alarm(400 + seed, shrink=1.0, horizon=20_000, step=2000)
        assert twin is None
        assert twin_error < ERROR_GUARD
    print("labelled samples to an ece_shift alarm (shrink 0.5):", found)


# --- fairness ------------------------------------------------------------------------------------


def _region(rng: np.random.Generator, n: int, error: float) -> CalibrationState:
    conf = rng.uniform(0.6, 1.0, n)
    corr = (rng.random(n) >= error).astype(np.float64)
    s = CalibrationState()
    s.add(conf, corr)
    return s


def test_fairness_gap_names_the_region_whose_error_rate_doubled() -> None:
    for seed in range(10):
        rng = np.random.default_rng(500 + seed)
        regions = {r: _region(rng, 4000, 0.10) for r in ("us", "ca", "mx", "br")}
        regions["eu"] = _region(rng, 4000, 0.20)
        gap = fairness_gap(regions, "error_rate", 0.01)
        assert gap.worst == "eu"
        assert gap.lower > 0.0
        assert gap.lower <= gap.estimate <= gap.upper
        assert gap.as_effect().name == "fairness_gap_error_rate"
        assert len(gap.slices) == 5
        same = {r: _region(rng, 4000, 0.10) for r in ("us", "ca", "mx", "br", "eu")}
        assert fairness_gap(same, "error_rate", 0.01).lower == 0.0


def test_fairness_gap_on_calibration_and_with_too_few_slices() -> None:
    rng = np.random.default_rng(16)
    calibrated = {r: _state(_binary(rng, 20_000)) for r in ("a", "b")}
    calibrated["c"] = _state(_binary(rng, 20_000, shrink=0.4))
    gap = fairness_gap(calibrated, "ece", 0.01)
    assert gap.worst == "c" and gap.lower > 0.0
    one = fairness_gap({"a": calibrated["a"], "empty": CalibrationState()}, "ece", 0.01)
    assert one.worst is None and math.isnan(one.lower)


def _grow(rng: np.random.Generator, states: dict[str, CalibrationState], errors: dict[str, float],
          n: int) -> None:  # fmt: skip
    for name, error in errors.items():
        states[name].add(np.full(n, 0.9), (rng.random(n) >= error).astype(np.float64))


def test_fairness_gap_shift_ignores_an_old_gap_and_catches_a_new_one() -> None:
    """A gap the baseline had (eu at 20% on both sides, 15,000 labels per region) never
    clears 0, checked every 500 labels per region up to 12,000, in 20 seeds; the same gap
    appearing after the freeze (eu 10% -> 20%) clears the default minor guardrail (0.03)
    in every seed."""
    alpha = 0.01 / 30  # the quality family's alpha split over a model's tests
    old_gap_crossings, detected = 0, []
    for seed in range(20):
        rng = np.random.default_rng(900 + seed)
        for base_eu, live_eu in ((0.2, 0.2), (0.1, 0.2)):
            base = {r: CalibrationState() for r in ("eu", "us", "apac")}
            _grow(rng, base, {"eu": base_eu, "us": 0.1, "apac": 0.1}, 15_000)
            live = {r: CalibrationState() for r in base}
            found = None
            for step in range(24):
                _grow(rng, live, {"eu": live_eu, "us": 0.1, "apac": 0.1}, 500)
                _, gap_l, shift = fairness_gap_shift(base, live, "error_rate", alpha)
                assert shift.lower <= shift.estimate <= shift.upper
                assert shift.name == "fairness_gap_error_rate_shift"
                if base_eu == live_eu and (shift.lower > 0.0 or shift.upper < 0.0):
                    old_gap_crossings += 1
                    break
                if base_eu != live_eu and found is None and shift.lower >= 0.03:
                    found = 500 * (step + 1)
            if base_eu == live_eu:
                assert gap_l.lower > 0.0  # the absolute gap is real, and old
            else:
                detected.append(found)
    assert old_gap_crossings == 0
    assert all(n is not None for n in detected), detected
    print("fairness shift: labels per region to clear 0.03:", detected)
    assert max(n for n in detected if n is not None) <= 12_000  # labels per region


def test_fairness_gap_shift_compares_shared_slices_only() -> None:
    rng = np.random.default_rng(17)
    base = {r: _region(rng, 3000, 0.1) for r in ("eu", "us")}
    live = {r: _region(rng, 3000, 0.1) for r in ("eu", "us")}
    live["new"] = _region(rng, 3000, 0.5)  # not in the baseline: left out of both gaps
    _, gap_l, shift = fairness_gap_shift(base, live, "error_rate", 0.01)
    assert {q.name for q in gap_l.slices} == {"eu", "us"} and shift.upper > 0.0 > shift.lower
    _, _, none = fairness_gap_shift({"eu": base["eu"]}, live, "ece", 0.01)
    assert none.name == "fairness_gap_ece_shift" and math.isnan(none.lower)


def _confidences(rng: np.random.Generator, n: int, a: float) -> CalibrationState:
    p = rng.beta(a, a, n)
    s = CalibrationState()
    s.add_unlabelled(np.maximum(p, 1.0 - p))
    return s


def test_estimated_error_shift_quiet_without_change_and_detects_less_confidence() -> None:
    alpha, crossings, detected = 0.01, 0, 0
    for seed in range(40):
        rng = np.random.default_rng(1300 + seed)
        base = _confidences(rng, 5000, 0.6)
        same = CalibrationState()
        unsure = CalibrationState()
        for _ in range(20):  # checked every 250 predictions up to 5,000
            same.merge(_confidences(rng, 250, 0.6))
            unsure.merge(_confidences(rng, 250, 3.0))
            e = estimated_error_shift(base, same, alpha, top=0.5)
            crossings += e.lower > 0.0 or e.upper < 0.0
        e = estimated_error_shift(base, unsure, alpha, top=0.5)
        assert e.name == "estimated_error_rate_shift" and e.unit == "share"
        # exact: E[min(p, 1 - p)] under Beta(3, 3) minus under Beta(0.6, 0.6)
        truth = _min_mean(3.0) - _min_mean(0.6)
        assert e.lower <= truth <= e.upper
        detected += e.lower > 0.01
    assert crossings == 0 and detected == 40
    empty = estimated_error_shift(CalibrationState(), base, alpha)
    assert math.isnan(empty.estimate)
    with pytest.raises(InvalidInput, match="top"):
        estimated_error_shift(base, base, alpha, top=0.0)


def _min_mean(a: float) -> float:
    """E[min(p, 1 - p)] for p ~ Beta(a, a): 2 E[p 1{p < 1/2}] = I_{1/2}(a + 1, a)."""
    return float(stats.beta.cdf(0.5, a + 1.0, a))


# --- confidence-based performance estimation -----------------------------------------------------


def test_cbpe_tracks_realized_error_on_calibrated_scores() -> None:
    alpha, seeds, diverged, widths = 0.05, 40, 0, []
    for seed in range(seeds):
        rng = np.random.default_rng(600 + seed)
        live = _state(_binary(rng, 5000, a=2.0, b=2.0))
        est = cbpe(live, None, alpha)
        assert est.realized_error is not None and est.diverged is not None
        assert est.lower <= est.expected_error <= est.upper
        diverged += est.diverged
        widths.append(est.upper - est.lower)
        # From the raw confidences (labels unknown) the same estimate, no verdict.
        raw = cbpe(_binary(rng, 5000, a=2.0, b=2.0)["confidence"], None, alpha)
        assert raw.realized_error is None and raw.diverged is None
    assert diverged <= alpha * seeds
    assert max(widths) < 0.08


def test_cbpe_recalibrates_with_a_reference_and_flags_divergence() -> None:
    rng = np.random.default_rng(17)
    # A model that is overconfident in a stable way: a labelled reference learns that.
    reference = _state(_binary(rng, 50_000, truth=0.6))
    live = _state(_binary(rng, 8000, truth=0.6))
    assert live.error_rate() is not None
    naive = cbpe(live, None, 0.01)
    fixed = cbpe(live, reference, 0.01)
    assert naive.diverged is True  # its confidences claim fewer errors than it makes
    assert fixed.recalibrated and fixed.diverged is False
    assert abs(fixed.expected_error - (live.error_rate() or 0.0)) < 0.02
    # A model whose calibration broke after the reference was taken: flagged.
    broken = _state(_binary(rng, 8000, truth=0.3))
    assert cbpe(broken, reference, 0.01).diverged is True


def test_unlabelled_predictions_feed_cbpe_and_never_mix_with_labelled() -> None:
    rng = np.random.default_rng(18)
    batch = _binary(rng, 6000, a=2.0, b=2.0)
    sampled = CalibrationState()
    sampled.add_unlabelled(batch["confidence"][:3000])
    part = CalibrationState()
    part.add_unlabelled(batch["confidence"][3000:])
    sampled.merge(part)
    back = CalibrationState.decode(sampled.encode())
    assert back.unlabelled and back.count == 6000.0
    assert back.error_rate() is None and back.brier() is None and math.isnan(back.ece())
    assert all(math.isnan(c.accuracy) for c in back.reliability("fixed"))
    from_state = cbpe(back, None, 0.05)
    from_array = cbpe(batch["confidence"], None, 0.05)
    assert from_state.realized_error is None and from_state.diverged is None
    assert from_state.expected_error == pytest.approx(from_array.expected_error, rel=1e-12)
    assert from_state.expected_error == pytest.approx(np.mean(1.0 - batch["confidence"]))
    labelled = _state(batch)
    assert all(math.isnan(e.estimate) for e in quality_effects(labelled, back, 0.05).values())
    assert fairness_gap({"a": labelled, "b": back}, "error_rate", 0.05).worst is None
    before = back.encode()
    with pytest.raises(InvalidInput, match="unlabelled"):
        back.add(batch["confidence"], batch["correct"])
    with pytest.raises(InvalidInput, match="labelled"):
        labelled.add_unlabelled(batch["confidence"])
    with pytest.raises(InvalidInput, match="labelled and unlabelled"):
        back.merge(labelled)
    with pytest.raises(InvalidInput, match="reference"):
        cbpe(labelled, back, 0.05)
    assert back.encode() == before
