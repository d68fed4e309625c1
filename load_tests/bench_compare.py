"""Comparison cost: all series of a model with 1,000 series against its baseline.

1,000 series: 900 numeric (300 latency, 400 features, 200 outputs) and 100
categorical features (40 categories, Zipf-like), with the default guardrails
(latency: p50/p90/p99 relative and missing rate; feature: KS, missing and
out-of-range rate; output: mean, KS, missing and out-of-range rate, precision
bits; categorical: TVD, new-category share, missing rate). Baseline 50,000 values
and live 10,000 per series, in two modes:

- ``exact``: numeric states keep their values (the default, up to 65,536 values);
- ``digest``: t-digests with 1,000 centroids.

Timed: ``compare_states`` with the baseline's evaluator built (the Comparator builds
it once per baseline and caches it with the decoded baseline; its build time is
printed too), as the median of ``--repeat`` runs, each on live states freshly
decoded from their encodings (as the Comparator reads them from the windows: no
cached sort, digest or precision statistics). Store I/O and decoding are not
timed. Budget (DESIGN.md): 1,000 series in <= 100 ms.

Run: ``python load_tests/bench_compare.py [--repeat 7] [--only exact|digest]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import numpy as np  # noqa: E402

from sidecar.compare import State, build_evaluator, compare_states, count_tests  # noqa: E402
from sidecar.guardrails import Guardrails  # noqa: E402
from sidecar.records import Kind, SeriesId  # noqa: E402
from sidecar.series import CategoricalState, NumericState, decode_state  # noqa: E402

BUDGET_MS = 100.0
BASE_N, LIVE_N = 50_000, 10_000
TEMPLATES = 8  # distinct value sets per kind and side; series get decoded copies of them
MIX = ((Kind.LATENCY, 300), (Kind.FEATURE, 400), (Kind.OUTPUT, 200))
CATEGORICAL = 100
CATEGORIES = np.array([f"cat{i:02d}" for i in range(40)])
CAT_P = 1.0 / np.arange(1, 41) ** 1.1
CAT_P /= CAT_P.sum()


def _values(rng: np.random.Generator, kind: Kind, n: int) -> np.ndarray:
    if kind == Kind.LATENCY:
        x = rng.lognormal(-3.0, 0.5, n)
    elif kind == Kind.OUTPUT:
        x = rng.beta(2.0, 5.0, n).astype(np.float32).astype(np.float64)
    else:
        x = rng.normal(50.0, 10.0, n)
    x[rng.random(n) < 0.001] = np.nan
    return x


def _template(rng: np.random.Generator, kind: Kind | None, n: int, exact: bool) -> bytes:
    """One series state built as the windows build it: 512-value batches."""
    if kind is None:
        table = CategoricalState()
        table.add(rng.choice(CATEGORIES, size=n, p=CAT_P).tolist())
        return table.encode()
    state = NumericState(1000, exact_limit=65_536 if exact else 0)
    x = _values(rng, kind, n)
    for i in range(0, n, 512):
        state.add(x[i : i + 512])
    return state.encode()


def build(seed: int, n: int, exact: bool) -> dict[SeriesId, bytes]:
    """1,000 encoded series, each a copy of one of a few templates per kind."""
    rng = np.random.default_rng(seed)
    out: dict[SeriesId, bytes] = {}
    for kind, count in (*MIX, (None, CATEGORICAL)):
        blobs = [_template(rng, kind, n, exact) for _ in range(TEMPLATES)]
        for i in range(count):
            if kind is None:
                sid = SeriesId("*", "*", Kind.FEATURE, f"category_{i:03d}")
            else:
                sid = SeriesId("*", "*", kind, f"{kind.value}_{i:03d}")
            out[sid] = blobs[i % TEMPLATES]
    return out


def decode(blobs: dict[SeriesId, bytes]) -> dict[SeriesId, State]:
    return {sid: decode_state(blob) for sid, blob in blobs.items()}


def scenario(name: str, repeat: int) -> float:
    exact = name == "exact"
    began = time.perf_counter()
    base = decode(build(1, BASE_N, exact))
    live_blobs = build(2, LIVE_N, exact)
    setup = time.perf_counter() - began
    guardrails = Guardrails.load(None)
    alpha = 0.01
    tests = count_tests(base.items(), guardrails, "bench")
    began = time.perf_counter()
    evaluator = build_evaluator(base, guardrails, "bench", alpha / tests)
    built_ms = 1000.0 * (time.perf_counter() - began)

    times: list[float] = []
    fired = findings = 0
    for i in range(repeat + 1):
        live = decode(live_blobs)
        began = time.perf_counter()
        found, _ = compare_states(
            base, live, guardrails, "bench", alpha, tests=tests, evaluator=evaluator
        )
        elapsed = time.perf_counter() - began
        if i:  # the first run warms up
            times.append(elapsed)
        findings = len(found)
        fired = sum(f.tier is not None for f in found)
    ms = 1000.0 * statistics.median(times)
    print(
        f"{name:>6}: {findings} series (baseline {BASE_N:,} / live {LIVE_N:,} values per series;"
        f" {tests} tests, alpha per test {alpha / tests:.1e}; setup {setup:.1f} s); "
        f"{fired} fired (expected 0)"
    )
    print(
        f"        compare_states {ms:7.1f} ms = {1000 * ms / findings:5.1f} us/series"
        f" (min {1000 * min(times):.1f}, max {1000 * max(times):.1f} ms over {repeat} runs;"
        f" {ms / BUDGET_MS:.2f} x the {BUDGET_MS:.0f} ms budget)"
    )
    print(f"        evaluator build (once per baseline) {built_ms:.0f} ms")
    return ms


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=("exact", "digest"))
    args = parser.parse_args()
    print(
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    modes = [args.only] if args.only else ["exact", "digest"]
    worst = max(scenario(mode, args.repeat) for mode in modes)
    verdict = "within" if worst <= BUDGET_MS else "OVER"
    print(f"worst {worst:.1f} ms: {verdict} the {BUDGET_MS:.0f} ms budget for 1,000 series")
    return 0 if worst <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
