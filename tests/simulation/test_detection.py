"""Acceptance 2: injected changes are detected within the issue's sample budgets,
and each scenario's no-change twin (same seed, no injection) raises nothing.

Baseline: 50,000 samples (200,000 for the latency scenario) of a model with four
signals (normal feature, output in [0, 1], lognormal latency, categorical
feature); the default guardrails and alpha split over all of them. Live data is
checked every few hundred samples and every comparison goes through the alert
lifecycle (``consecutive`` = 2 checks in a row), so the delay is the live
sample count at which the alert fires.
"""

from __future__ import annotations

import pytest

from sidecar.guardrails import Guardrails
from tests.simulation.scenarios import SCENARIOS, Scenario, run_stream

SEED = 7


def _run(scenario: Scenario, *, changed: bool) -> str:
    guardrails = Guardrails.load(None)
    assert guardrails.consecutive == 2 and guardrails.alpha == 0.01
    outcome = run_stream(
        SEED,
        guardrails,
        baseline=scenario.baseline,
        live=scenario.limit,
        step=scenario.step,
        inject=scenario.inject if changed else None,
    )
    if changed:
        assert outcome.detected_at is not None, (
            f"{scenario.name}: not detected within {scenario.limit} live samples: "
            f"{outcome.describe()}"
        )
        assert outcome.series == scenario.series, (
            f"{scenario.name}: the alert is on the wrong series: {outcome.describe()}"
        )
        assert outcome.detected_at <= scenario.limit
    else:
        assert outcome.detected_at is None and not outcome.raised, (
            f"{scenario.name} no-change twin raised: {outcome.describe()}"
        )
    return outcome.describe()


FAST = ["mean +0.2 SD", "new category 3%", "missing 0% -> 2%"]


@pytest.mark.parametrize("name", FAST)
def test_change_is_detected_within_its_budget(name: str) -> None:
    print(name, _run(SCENARIOS[name], changed=True))


@pytest.mark.parametrize("name", FAST)
def test_no_change_twin_raises_nothing(name: str) -> None:
    print(name, _run(SCENARIOS[name], changed=False))


@pytest.mark.slow
def test_latency_p99_up_10_percent_with_p50_unchanged_is_detected() -> None:
    """Seed 7 alerts at 98,000 live samples: inside the budget by one check. Over seeds
    100-119 the median is 74,000 and 12 of 20 are within 100,000 (docs/statistics.md,
    "Detection delays"): the budget is met typically, not for every seed."""
    print(_run(SCENARIOS["latency p99 +10%"], changed=True))


@pytest.mark.slow
def test_latency_no_change_twin_raises_nothing() -> None:
    print(_run(SCENARIOS["latency p99 +10%"], changed=False))


def test_latency_injection_moves_only_the_tail() -> None:
    """The latency scenario changes what it says: p99 +10 %, p50 and p90 unchanged."""
    import numpy as np

    from tests.simulation.scenarios import LATENCY, draw

    rng = np.random.default_rng(1)
    columns = draw(rng, 400_000)
    before = np.asarray(columns[LATENCY]).copy()
    SCENARIOS["latency p99 +10%"].inject(columns, np.random.default_rng(2))
    after = np.asarray(columns[LATENCY])
    q_before = np.quantile(before, [0.5, 0.9, 0.99])
    q_after = np.quantile(after, [0.5, 0.9, 0.99])
    assert q_after[0] == q_before[0] and q_after[1] == pytest.approx(q_before[1], rel=1e-3)
    assert q_after[2] / q_before[2] - 1 == pytest.approx(0.10, abs=0.01)
