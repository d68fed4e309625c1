"""Detection delays of the comparison engine, for the note (docs/statistics.md).

For each scenario of ``tests/simulation/scenarios.py`` (a model with four
signals, the default guardrails, alpha 0.01 split over the family, alerts
after ``consecutive`` = 2 checks in a row) this prints the live samples after
the change until the alert fires: the median over several seeds, each seed's
delay, and "not detected within N" where applicable. Besides the issue's
acceptance scenarios it runs smaller shifts (0.1 and 0.05 standard deviations,
p99 +5 %) to show where the method's limit lies. Each scenario's no-change twin
(same seeds, no injection) is run too; its column must read 0.

Run: ``python load_tests/detection_table.py [--seeds 5] [--only latency]
[--config guardrails.toml] [--baseline-exact-limit N] [--rank-v-opt V]``.
``--config`` measures other guardrail weights or ``live_exact_limit``;
``--baseline-exact-limit`` and ``--rank-v-opt`` are what-ifs (frozen baselines keep
the ``exact_limit`` setting; the rank sequences' tuning is a constant).
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
from sidecar.stats import sequences  # noqa: E402
from tests.simulation.scenarios import (  # noqa: E402
    COUNTRY,
    LATENCY,
    SCENARIOS,
    Outcome,
    Scenario,
    X,
    mean_shift,
    new_category,
    parallel_map,
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


# What the worker processes run (forked after these are set; injections are closures,
# which do not pickle): (guardrails, scenario, live samples, changed, baseline exact limit).
_JOB: list[tuple[Guardrails, Scenario, int, bool, int | None]] = []


def _run(seed: int) -> Outcome:
    guardrails, s, live, changed, baseline_exact = _JOB[0]
    return run_stream(
        seed,
        guardrails,
        baseline=s.baseline,
        live=live,
        step=s.step,
        inject=s.inject if changed else None,
        baseline_exact_limit=baseline_exact,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 100, 101, ... (default 5)")
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    parser.add_argument("--config", default="", help="guardrails TOML (default: the defaults)")
    parser.add_argument(
        "--baseline-exact-limit",
        type=int,
        default=None,
        help="what-if: baseline values kept exactly (default: the exact_limit setting)",
    )
    parser.add_argument(
        "--rank-v-opt",
        type=float,
        default=None,
        help=f"what-if: intrinsic time of the rank sequences (default {sequences.RANK_V_OPT:g})",
    )
    args = parser.parse_args()
    if args.rank_v_opt is not None:
        sequences.RANK_V_OPT = args.rank_v_opt  # type: ignore[misc]
    guardrails = Guardrails.load(args.config or None)
    seeds = list(range(100, 100 + args.seeds))
    print(
        f"{'scenario':<20}{'baseline':>9}{'budget':>9}{'every':>7}  {'median delay':<26}"
        f"{'per seed':<44}{'twins raised':>12}"
    )
    began = time.perf_counter()
    for scenario, horizon in TABLE:
        if args.only not in scenario.name:
            continue
        delays: list[int | None] = []
        wrong = 0
        exact = args.baseline_exact_limit
        _JOB[:] = [(guardrails, scenario, horizon, True, exact)]
        for outcome in parallel_map(_run, seeds):
            if outcome.detected_at is not None and outcome.series != scenario.series:
                wrong += 1
            delays.append(outcome.detected_at)
        twin_live = min(horizon, max(scenario.limit, 4 * scenario.step))
        _JOB[:] = [(guardrails, scenario, twin_live, False, exact)]
        twins = sum(twin.detected_at is not None for twin in parallel_map(_run, seeds))
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
