"""Detection delays of the comparison engine, for the note (docs/statistics.md).

For each scenario of ``tests/simulation/scenarios.py`` (a model with four
signals, the default guardrails, alpha 0.01 split over the family, alerts
after ``consecutive`` = 2 checks in a row) this prints the live samples after
the change until the alert fires: the median over several seeds, each seed's
delay, and "not detected within N" where applicable. Besides the issue's
acceptance scenarios it runs smaller shifts (0.1 and 0.05 standard deviations,
p99 +5 %) to show where the method's limit lies. Each scenario's no-change twin
(same seeds, no injection) is run too; its column must read 0.

Run: ``python load_tests/detection_table.py [--seeds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

from sidecar.guardrails import Guardrails  # noqa: E402
from tests.simulation.scenarios import (  # noqa: E402
    COUNTRY,
    LATENCY,
    SCENARIOS,
    Scenario,
    X,
    mean_shift,
    new_category,
    run_stream,
    tail_stretch,
)

# (scenario, live samples searched): the acceptance ones up to a few times their budget.
TABLE: list[tuple[Scenario, int]] = [
    (SCENARIOS["mean +0.2 SD"], 40_000),
    (Scenario("mean +0.1 SD", X, mean_shift(0.1), 50_000, 0, 5_000), 400_000),
    (Scenario("mean +0.05 SD", X, mean_shift(0.05), 50_000, 0, 10_000), 400_000),
    (SCENARIOS["new category 3%"], 16_000),
    (Scenario("new category 1%", COUNTRY, new_category(0.01), 50_000, 0, 1_000), 40_000),
    (SCENARIOS["missing 0% -> 2%"], 40_000),
    (SCENARIOS["latency p99 +10%"], 400_000),
    (Scenario("latency p99 +5%", LATENCY, tail_stretch(0.05), 200_000, 0, 10_000), 400_000),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    guardrails = Guardrails.load(None)
    seeds = list(range(100, 100 + args.seeds))
    print(
        f"{'scenario':<20}{'baseline':>9}{'budget':>9}{'every':>7}  {'median delay':<26}"
        f"{'per seed':<44}{'twins raised':>12}"
    )
    began = time.perf_counter()
    for scenario, horizon in TABLE:
        delays: list[int | None] = []
        wrong = 0
        for seed in seeds:
            outcome = run_stream(
                seed,
                guardrails,
                baseline=scenario.baseline,
                live=horizon,
                step=scenario.step,
                inject=scenario.inject,
            )
            if outcome.detected_at is not None and outcome.series != scenario.series:
                wrong += 1
            delays.append(outcome.detected_at)
        twins = 0
        for seed in seeds:
            twin = run_stream(
                seed,
                guardrails,
                baseline=scenario.baseline,
                live=min(horizon, max(scenario.limit, 4 * scenario.step)),
                step=scenario.step,
            )
            twins += twin.detected_at is not None
        found = sorted(d for d in delays if d is not None)
        if len(found) * 2 > len(delays):
            # The median of all seeds; undetected seeds count as beyond the horizon.
            ranked = found + [horizon + 1] * (len(delays) - len(found))
            median = statistics.median_low(ranked)
            shown = f"{median:,}" if median <= horizon else f"> {horizon:,}"
        else:
            shown = f"not detected within {horizon:,}"
        per_seed = ", ".join("-" if d is None else f"{d:,}" for d in delays)
        budget = f"{scenario.limit:,}" if scenario.limit else "-"
        note = f" ({wrong} on another series)" if wrong else ""
        print(
            f"{scenario.name:<20}{scenario.baseline:>9,}{budget:>9}{scenario.step:>7,}  "
            f"{shown + note:<26}{per_seed:<44}{twins:>12}"
        )
        sys.stdout.flush()
    print(f"({len(seeds)} seeds each, {time.perf_counter() - began:.0f} s; '-' = not detected)")


if __name__ == "__main__":
    main()
