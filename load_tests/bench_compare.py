"""Comparison cost: all series of a model with 1,000 series against its baseline.

900 numeric series (600 features, 200 outputs, 50 latency, 50 resource) and 100
categorical features (20 categories). Two sizes:

- ``digest``: baseline 50,000 values and live 10,000 per series, t-digests
  (compression 1000), as in production;
- ``exact``: baseline 2,000 and live 500 values, exact mode (small models).

``compare_states`` (effects with bounds for every series, judged against the
default guardrails) is timed as the median of ``--repeat`` runs and printed next
to the effects alone (``sidecar.stats.effects`` on every pair: what is left is
the comparator's own cost) and a bare baseline measured in the same run: one
``summary`` (three quantiles) of every live state. Budget (DESIGN.md): 1,000 series in <= 100 ms.

Run: ``python load_tests/bench_compare.py [--repeat 5] [--only digest|exact]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import numpy as np  # noqa: E402

from sidecar.compare import SeriesFinding, State, compare_states, count_tests  # noqa: E402
from sidecar.guardrails import Guardrails  # noqa: E402
from sidecar.records import Kind, SeriesId  # noqa: E402
from sidecar.series import CategoricalState, NumericState, decode_state  # noqa: E402
from sidecar.stats.effects import categorical_effects, numeric_effects  # noqa: E402

BUDGET_MS = 100.0
TEMPLATES = 12  # distinct value sets per side; series get decoded copies of them
KINDS = ((Kind.FEATURE, 600), (Kind.OUTPUT, 200), (Kind.LATENCY, 50), (Kind.RESOURCE, 50))
CATEGORICAL = 100
CATEGORIES = [f"c{i:02d}" for i in range(20)]


def _numeric_values(rng: np.random.Generator, kind: Kind, n: int) -> np.ndarray:
    if kind in (Kind.LATENCY, Kind.RESOURCE):
        return rng.lognormal(-3.0, 0.5, n)
    if kind == Kind.OUTPUT:
        return rng.beta(2.0, 5.0, n)
    return rng.normal(50.0, 10.0, n)


def _templates(
    rng: np.random.Generator, n: int, exact_limit: int
) -> dict[Kind | None, list[bytes]]:
    out: dict[Kind | None, list[bytes]] = {}
    for kind, _ in KINDS:
        blobs = []
        for _ in range(TEMPLATES):
            state = NumericState(1000, exact_limit)
            values = _numeric_values(rng, kind, n)
            values[rng.random(n) < 0.001] = np.nan
            state.add(values)
            blobs.append(state.encode())
        out[kind] = blobs
    weights = np.linspace(2.0, 1.0, len(CATEGORIES))
    cats = []
    for _ in range(TEMPLATES):
        table = CategoricalState()
        table.add(rng.choice(CATEGORIES, size=n, p=weights / weights.sum()).tolist())
        cats.append(table.encode())
    out[None] = cats
    return out


def build(seed: int, n: int, exact_limit: int) -> dict[SeriesId, State]:
    """1,000 series, each a decoded copy of one of a few templates (decoding is cheap)."""
    rng = np.random.default_rng(seed)
    templates = _templates(rng, n, exact_limit)
    series: dict[SeriesId, State] = {}
    for kind, count in KINDS:
        for i in range(count):
            blob = templates[kind][i % TEMPLATES]
            series[SeriesId("*", "*", kind, f"{kind.value}_{i:03d}")] = decode_state(blob)
    for i in range(CATEGORICAL):
        blob = templates[None][i % TEMPLATES]
        series[SeriesId("*", "*", Kind.FEATURE, f"category_{i:03d}")] = decode_state(blob)
    return series


def median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return 1000.0 * statistics.median(times)


def bare(live: dict[SeriesId, State]) -> None:
    for state in live.values():
        if isinstance(state, NumericState):
            state.summary((0.5, 0.9, 0.99))
        else:
            state.summary(10)


def effects_only(base: dict[SeriesId, State], live: dict[SeriesId, State], alpha: float) -> None:
    """``sidecar.stats.effects`` on every pair, nothing else."""

    def alpha_for(_name: str) -> float:
        return alpha

    for sid, state in live.items():
        reference = base[sid]
        if isinstance(state, NumericState) and isinstance(reference, NumericState):
            numeric_effects(reference, state, alpha_for)
        elif isinstance(state, CategoricalState) and isinstance(reference, CategoricalState):
            categorical_effects(reference, state, alpha_for)


def scenario(name: str, base_n: int, live_n: int, exact_limit: int, repeat: int) -> float:
    began = time.perf_counter()
    base = build(1, base_n, exact_limit)
    live = build(2, live_n, exact_limit)
    setup = time.perf_counter() - began
    guardrails = Guardrails.load(None)

    # The Comparator counts a baseline's tests once and caches the count with it.
    tests = count_tests(base.items(), guardrails, "bench")

    def run() -> tuple[list[SeriesFinding], float]:
        return compare_states(base, live, guardrails, "bench", 0.01, tests=tests)

    findings, alpha_test = run()  # warm up
    fired = sum(f.tier is not None for f in findings)
    ms = median_ms(run, repeat)
    effects_ms = median_ms(lambda: effects_only(base, live, alpha_test), repeat)
    bare_ms = median_ms(lambda: bare(live), repeat)
    mode = "exact" if exact_limit else "t-digest"
    print(
        f"{name:>6}: {len(findings)} series ({mode}, baseline {base_n:,} / live {live_n:,} values;"
        f" setup {setup:.1f} s), alpha per test {alpha_test:.2e}, {fired} fired (expected 0)"
    )
    print(
        f"        compare_states  {ms:8.1f} ms  = {1000 * ms / len(findings):6.1f} us/series"
        f"  ({ms / BUDGET_MS:.2f} x the {BUDGET_MS:.0f} ms budget)"
    )
    print(
        f"        effects alone   {effects_ms:8.1f} ms  = {1000 * effects_ms / len(findings):6.1f} us/series"
        f"  (the comparator's own share: {ms - effects_ms:.1f} ms)"
    )
    print(
        f"        bare summaries  {bare_ms:8.1f} ms  = {1000 * bare_ms / len(findings):6.1f} us/series"
        f"  (compare = {ms / bare_ms:.1f} x bare)"
    )
    return ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("digest", "exact"))
    args = parser.parse_args()
    worst = 0.0
    if args.only in (None, "digest"):
        worst = max(worst, scenario("digest", 50_000, 10_000, 0, args.repeat))
    if args.only in (None, "exact"):
        worst = max(worst, scenario("exact", 2_000, 500, 65536, args.repeat))
    verdict = "within" if worst <= BUDGET_MS else "OVER"
    print(f"worst {worst:.1f} ms: {verdict} the {BUDGET_MS:.0f} ms budget for 1,000 series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
