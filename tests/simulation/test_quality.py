"""Acceptance of outcomes and quality (issue 8), driven through replay (real engine,
real SQLite store, simulated clock), with fixed seeds.

1. Labels arriving seconds to days late are joined; the realized error rate and
   ECE match an exact numpy computation on the same joined data.
2. Calibration drift (scores scaled toward 0.5, accuracy unchanged) alerts on ECE
   within LABELS_TO_ECE_ALERT labelled samples while the error rate stays quiet;
   the no-change twin raises nothing.
3. One region's error rate doubles: a fairness-gap alert names the region.
4. CBPE tracks the realized error rate within its bound on calibrated scores; the
   report flags the divergence on miscalibrated ones.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from sidecar.guardrails import Guardrails
from sidecar.quality_view import SliceReport
from sidecar.replay import ReplaySummary, replay

DAY = 86400.0
LABELS_TO_ECE_ALERT = 4000
"""Stated detection budget: labelled live samples before the ECE alert fires."""
FAIRNESS_BASELINE = 45_000
FAIRNESS_LIVE = 30_000
LABELS_TO_FAIRNESS_ALERT = 30_000
"""Stated detection budget of the fairness scenario (one of three regions' error rate
doubles from 10% to 20%, default guardrails, a baseline of 45,000 labelled samples):
labelled live samples (all regions) before the fairness-gap alert fires. Measured with
seed 3: 16,670."""


def _run(
    lines: list[tuple[float, dict[str, Any]]], guardrails: Guardrails
) -> tuple[ReplaySummary, list[dict[str, Any]]]:
    lines.sort(key=lambda item: item[0])
    out = io.StringIO()
    summary = replay(
        [json.dumps(obj) for _, obj in lines],
        guardrails=guardrails,
        out=out,
        check_interval=600.0,
        strict=True,
    )
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    return summary, alerts


def _sample(t: float, rid: str, score: float, region: str = "eu") -> tuple[float, dict[str, Any]]:
    return (
        t,
        {
            "kind": "sample",
            "time": t,
            "model": "m",
            "request_id": rid,
            "signals": {"score": score},
            "signal_kinds": {"score": "output"},
            "attributes": {"region": region},
        },
    )


def _outcome(t: float, rid: str, label: int) -> tuple[float, dict[str, Any]]:
    return (t, {"kind": "outcome", "time": t, "model": "m", "request_id": rid, "label": label})


def _slice(summary: ReplaySummary, name: str = "*") -> SliceReport:
    (report,) = summary.quality
    return next(s for s in report.slices if s.slice == name)


def _numpy_ece(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    cells = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = cells == b
        if mask.any():
            total += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(total)


def test_delayed_labels_joined_and_match_numpy() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    times = np.sort(rng.uniform(0.0, DAY, n))
    scores = rng.beta(2.0, 2.0, n)
    labels = (rng.uniform(size=n) < scores).astype(int)
    # delays log-uniform from one second to three days; every 10th label is 8 days late
    delays = np.exp(rng.uniform(np.log(1.0), np.log(3 * DAY), n))
    delays[::10] = 8 * DAY
    lines = []
    for i in range(n):
        lines.append(_sample(float(times[i]), f"r{i}", float(scores[i])))
        lines.append(_outcome(float(times[i] + delays[i]), f"r{i}", int(labels[i])))
    summary, _ = _run(lines, Guardrails.load(None))

    late = np.zeros(n, dtype=bool)
    late[::10] = True
    assert summary.outcomes.joined == int((~late).sum())
    assert summary.outcomes.expired == int(late.sum())  # past the 7-day horizon: counted
    assert summary.outcomes.invalid == summary.outcomes.unknown == 0

    joined = ~late
    pred = (scores >= 0.5).astype(int)
    conf = np.where(pred == 1, scores, 1.0 - scores)[joined]
    correct = (pred == labels)[joined].astype(float)
    everything = _slice(summary)
    assert everything.count == joined.sum()
    assert everything.error_rate == pytest.approx(1.0 - correct.mean(), abs=1e-12)
    # ECE from micro-bins of width 1/1000: exact up to that resolution
    assert everything.ece == pytest.approx(_numpy_ece(conf, correct), abs=2e-3)
    assert everything.brier == pytest.approx(
        float(np.mean((scores[joined] - labels[joined]) ** 2)), abs=1e-9
    )


def _calibration_scenario(
    seed: int, drift: bool
) -> tuple[ReplaySummary, list[dict[str, Any]], list[float]]:
    """Baseline day of calibrated scores, then a live stream (scores scaled toward 0.5
    when ``drift``: the same predicted class, lower confidence); labels a minute later."""
    rng = np.random.default_rng(seed)
    lines = []
    live_label_times: list[float] = []
    n_base, n_live = 6000, 8000
    t = 0.0
    for i in range(n_base + n_live):
        t += 10.0
        p = float(rng.beta(0.6, 0.6))
        y = int(rng.uniform() < p)
        shown = 0.5 + 0.5 * (p - 0.5) if (drift and i >= n_base) else p
        lines.append(_sample(t, f"r{i}", shown))
        lines.append(_outcome(t + 60.0, f"r{i}", y))
        if i >= n_base:
            live_label_times.append(t + 60.0)
        if i == n_base - 1:
            lines.append(
                (t + 120.0, {"kind": "freeze", "time": t + 120.0, "model": "m", "name": "base"})
            )
            t += 200.0
    summary, alerts = _run(lines, Guardrails.load(None))
    return summary, alerts, live_label_times


@pytest.mark.slow
def test_calibration_drift_alerts_on_ece_not_error_rate() -> None:
    summary, alerts, label_times = _calibration_scenario(5, drift=True)
    ece_alerts = [
        a
        for a in alerts
        if a["state"] == "firing"
        and any(s.get("effect") and s["effect"]["name"] == "ece_shift" for s in a["series"])
    ]
    assert ece_alerts, "the calibration drift raised no ECE alert"
    first = ece_alerts[0]["time"]
    labelled = sum(1 for t in label_times if t <= first)
    assert labelled <= LABELS_TO_ECE_ALERT, f"ECE alert after {labelled} labelled samples"
    fired_effects = {
        s["effect"]["name"] for a in alerts for s in a["series"] if s.get("effect") is not None
    }
    assert "error_rate_shift" not in fired_effects
    everything = _slice(summary)
    assert everything.effects["error_rate_shift"].lower < 0.01  # accuracy nearly unchanged
    assert everything.effects["ece_shift"].lower > 0.02
    # CBPE read the lower confidences as more errors (an estimated-error alert), and the
    # labels that landed contradict it: the report says so.
    assert "estimated_error_rate_shift" in fired_effects
    assert everything.effects["estimated_error_rate_shift"].lower > 0.01
    assert everything.estimate_diverged is True

    twin, twin_alerts, _ = _calibration_scenario(5, drift=False)
    assert twin_alerts == []
    assert twin.outcomes.joined == 14000


def _fairness_scenario(
    seed: int, base_eu: float, live_eu: float
) -> tuple[ReplaySummary, list[dict[str, Any]], list[float]]:
    """Three regions, one labelled prediction a second (so the live epoch never ages
    out), labels 30 s later: FAIRNESS_BASELINE labelled samples, a freeze, then
    FAIRNESS_LIVE. Every region errs 10% of the time except eu: ``base_eu`` before
    the freeze, ``live_eu`` after. DEFAULT guardrails (only the attribute configured)."""
    rng = np.random.default_rng(seed)
    guardrails = Guardrails.from_mapping({"models": {"m": {"outcomes": {"fairness": ["region"]}}}})
    lines = []
    live_label_times: list[float] = []
    t = 0.0
    regions = ("eu", "us", "apac")
    for i in range(FAIRNESS_BASELINE + FAIRNESS_LIVE):
        t += 1.0
        region = regions[i % 3]
        live = i >= FAIRNESS_BASELINE
        error = (live_eu if live else base_eu) if region == "eu" else 0.1
        positive = rng.uniform() < 0.5
        correct = rng.uniform() >= error
        label = int(positive) if correct else int(not positive)
        lines.append(_sample(t, f"r{i}", 0.9 if positive else 0.1, region))
        lines.append(_outcome(t + 30.0, f"r{i}", label))
        if live:
            live_label_times.append(t + 30.0)
        if i == FAIRNESS_BASELINE - 1:
            lines.append(
                (t + 60.0, {"kind": "freeze", "time": t + 60.0, "model": "m", "name": "base"})
            )
            t += 100.0
    summary, alerts = _run(lines, guardrails)
    return summary, alerts, live_label_times


def _fairness_alerts(alerts: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    return [
        (a["time"], s)
        for a in alerts
        if a["state"] == "firing"
        for s in a["series"]
        if s["signal"].startswith("fairness_gap") and s.get("effect") is not None
    ]


@pytest.mark.slow
def test_fairness_gap_shift_names_the_region_with_default_guardrails() -> None:
    summary, alerts, label_times = _fairness_scenario(3, base_eu=0.1, live_eu=0.2)
    fairness = _fairness_alerts(alerts)
    assert fairness, "no fairness-gap alert"
    assert {s["slice"] for _, s in fairness} == {"region=eu"}
    assert {s["effect"]["name"] for _, s in fairness} == {"fairness_gap_error_rate_shift"}
    labelled = sum(1 for t in label_times if t <= fairness[0][0])
    assert labelled <= LABELS_TO_FAIRNESS_ALERT, f"fairness alert after {labelled} labels"
    (report,) = summary.quality
    gap = next(f for f in report.fairness if f.metric == "error_rate")
    assert gap.live.worst == "eu" and gap.shift.lower > 0.03  # the default minor guardrail
    assert gap.baseline.lower == 0.0  # the baseline had no provable gap


@pytest.mark.slow
def test_fairness_gap_the_baseline_already_had_raises_nothing() -> None:
    """The no-change twin: eu errs 20% before and after the freeze. The absolute gap is
    as large as in the scenario above (and provably > 0), but it is not new."""
    summary, alerts, _ = _fairness_scenario(3, base_eu=0.2, live_eu=0.2)
    assert _fairness_alerts(alerts) == []
    (report,) = summary.quality
    gap = next(f for f in report.fairness if f.metric == "error_rate")
    assert gap.live.worst == "eu" and gap.live.lower > 0.03  # the gap is there ...
    assert gap.shift.lower < 0.0 < gap.shift.upper  # ... and unchanged


def _cbpe_scenario(seed: int, overconfident: bool) -> ReplaySummary:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(6000):
        t = 10.0 * (i + 1)
        p = float(rng.beta(2.0, 2.0))
        y = int(rng.uniform() < p)
        shown = float(np.clip(0.5 + 1.8 * (p - 0.5), 0.0, 1.0)) if overconfident else p
        lines.append(_sample(t, f"r{i}", shown))
        if i % 2 == 0:  # half the predictions get labels: CBPE covers all of them
            lines.append(_outcome(t + 5.0, f"r{i}", y))
    summary, _ = _run(lines, Guardrails.load(None))
    return summary


def test_cbpe_tracks_realized_error_when_calibrated() -> None:
    everything = _slice(_cbpe_scenario(21, overconfident=False))
    estimate, check = everything.cbpe, everything.cbpe_check
    assert estimate.count == 6000 and check.count == 3000
    assert everything.error_rate is not None
    assert estimate.lower <= everything.error_rate <= estimate.upper
    assert check.diverged is False
    assert check.realized_error == pytest.approx(everything.error_rate)


def test_cbpe_divergence_reported_when_miscalibrated() -> None:
    everything = _slice(_cbpe_scenario(21, overconfident=True))
    assert everything.cbpe_check.diverged is True
    assert everything.error_rate is not None
    assert everything.error_rate > everything.cbpe_check.upper  # more errors than confidences say


LABELS_SLOW = 30 * DAY
SAMPLES_TO_CBPE_ALERT = 1000
"""Stated detection budget of the slow-label scenario: sampled live predictions
(none labelled yet) before the estimated error-rate alert fires."""


def _slow_label_scenario(seed: int, drift: bool) -> tuple[list[dict[str, Any]], list[float]]:
    """A labelled, calibrated baseline (scores ~ Beta(0.6, 0.6)); after the freeze the
    labels take a month (none land during the run) and, when ``drift``, the model grows
    less sure (scores ~ Beta(3, 3), still calibrated: it really errs more)."""
    rng = np.random.default_rng(seed)
    lines = []
    live_times: list[float] = []
    t = 0.0
    n_base, n_live = 6000, 4000
    for i in range(n_base + n_live):
        t += 10.0
        live = i >= n_base
        p = float(rng.beta(3.0, 3.0) if (drift and live) else rng.beta(0.6, 0.6))
        y = int(rng.uniform() < p)
        lines.append(_sample(t, f"r{i}", p))
        lines.append(_outcome(t + (LABELS_SLOW if live else 60.0), f"r{i}", y))
        if live:
            live_times.append(t)
        if i == n_base - 1:
            lines.append(
                (t + 120.0, {"kind": "freeze", "time": t + 120.0, "model": "m", "name": "base"})
            )
            t += 200.0
    end = t + 600.0
    _, alerts = _run([(tt, obj) for tt, obj in lines if tt <= end], Guardrails.load(None))
    return alerts, live_times


@pytest.mark.slow
def test_cbpe_alerts_before_labels_land_and_its_twin_stays_quiet() -> None:
    alerts, sample_times = _slow_label_scenario(8, drift=True)
    estimated = [
        (a["time"], s)
        for a in alerts
        if a["state"] == "firing"
        for s in a["series"]
        if s.get("effect") is not None and s["effect"]["name"] == "estimated_error_rate_shift"
    ]
    assert estimated, "the less confident model raised no estimated error-rate alert"
    assert estimated[0][1]["signal"] == "cbpe"  # marked as an estimate
    sampled = sum(1 for t in sample_times if t <= estimated[0][0])
    assert sampled <= SAMPLES_TO_CBPE_ALERT, f"CBPE alert after {sampled} sampled predictions"
    realized = {
        s["effect"]["name"]
        for a in alerts
        for s in a["series"]
        if s.get("effect") is not None and s["signal"] == "calibration"
    }
    assert realized == set()  # no live labels: nothing realized to alert on

    twin, _ = _slow_label_scenario(8, drift=False)
    assert twin == []
