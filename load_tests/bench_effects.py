"""Effects of 1,000 series against one baseline: `EffectEvaluator` against the reference functions.

1,000 series: 900 numeric (300 latency, 400 features, 200 outputs) and 100
categorical (40 categories, Zipf-like). Baseline 50,000 values and live 10,000 per
series, each series its own state (decoded copies of a few templates, so every
series has its own memory), in two modes:

- ``exact``: numeric states keep their values (the default up to 65,536 values);
- ``digest``: t-digests with 1,000 centroids.

Each series gets the default guarded effects of its kind (latency: p50/p90/p99
relative, missing and out-of-range rate; feature: KS, missing and out-of-range
rate; output: KS, mean, missing rate, precision bits; categorical: TVD,
new-category share, missing rate). The baseline side is built once
(`EffectEvaluator(...)`, timed separately); ``evaluate`` is timed as the median of
``--repeat`` runs, each on freshly decoded live states (as the comparator gets them
from the windows: no cached sort, digest or precision statistics). The reference
(`numeric_effects` / `categorical_effects` with ``only=``) runs on a 50-series
subset of the same mix, scaled to 1,000. Budget (DESIGN.md): 1,000 series in <= 100 ms.

Run: ``python load_tests/bench_effects.py [--repeat 5] [--only exact|digest]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import numpy as np  # noqa: E402

from sidecar.series import CategoricalState, NumericState, decode_state  # noqa: E402
from sidecar.stats.effects import categorical_effects, numeric_effects  # noqa: E402
from sidecar.stats.evaluator import EffectEvaluator  # noqa: E402

BUDGET_MS = 100.0
BASE_N, LIVE_N = 50_000, 10_000
TEMPLATES = 8
ALPHA = 0.01 / (1000 * 4)  # the family's alpha over ~4 guarded effects per series
MIX = (("latency", 300), ("feature", 400), ("output", 200), ("categorical", 100))
EFFECTS: dict[str, tuple[str, ...]] = {
    "latency": ("p50_rel", "p90_rel", "p99_rel", "missing_rate", "out_of_range_rate"),
    "feature": ("ks", "missing_rate", "out_of_range_rate"),
    "output": ("ks", "mean_abs", "missing_rate", "precision_bits"),
    "categorical": ("tvd", "new_category_share", "missing_rate"),
}
CATEGORIES = np.array([f"cat{i:02d}" for i in range(40)])
CAT_P = 1.0 / np.arange(1, 41) ** 1.1
CAT_P /= CAT_P.sum()

Key = tuple[str, int]
State = NumericState | CategoricalState


def _values(rng: np.random.Generator, kind: str, n: int, shift: float) -> np.ndarray:
    if kind == "latency":
        x = rng.lognormal(-3.0 + shift, 0.5, n)
    elif kind == "output":
        x = rng.beta(2.0, 5.0, n).astype(np.float32).astype(np.float64)
    else:
        x = rng.normal(50.0 + shift, 10.0, n)
    x[rng.random(n) < 0.002] = np.nan
    return x


def _template(rng: np.random.Generator, kind: str, n: int, exact: bool, shift: float) -> bytes:
    if kind == "categorical":
        c = CategoricalState()
        values = rng.choice(CATEGORIES, size=n, p=CAT_P).tolist()
        for i in range(0, n, 97):
            values[i] = ""
        c.add(values)
        return c.encode()
    s = NumericState(1000, exact_limit=65_536 if exact else 0)
    x = _values(rng, kind, n, shift)
    for i in range(0, n, 512):
        s.add(x[i : i + 512])
    return s.encode()


def _build(exact: bool) -> tuple[dict[Key, State], dict[Key, bytes]]:
    rng = np.random.default_rng(7)
    base: dict[Key, State] = {}
    live: dict[Key, bytes] = {}
    for kind, count in MIX:
        b = [_template(rng, kind, BASE_N, exact, 0.0) for _ in range(TEMPLATES)]
        lv = [_template(rng, kind, LIVE_N, exact, 0.01) for _ in range(TEMPLATES)]
        for i in range(count):
            base[(kind, i)] = decode_state(b[i % TEMPLATES])
            live[(kind, i)] = lv[(i * 3 + 1) % TEMPLATES]
    return base, live


def _effects_for(key: Key) -> tuple[str, ...]:
    return EFFECTS[key[0]]


def _alpha_for(_key: Key, _name: str) -> float:
    return ALPHA


def _reference(
    base: dict[Key, State], live: dict[Key, State], keys: Collection[Key]
) -> dict[Key, object]:
    def alpha(_name: str) -> float:
        return ALPHA

    out: dict[Key, object] = {}
    for key in keys:
        b, lv = base[key], live[key]
        if isinstance(b, NumericState) and isinstance(lv, NumericState):
            out[key] = numeric_effects(b, lv, alpha, only=_effects_for(key))
        elif isinstance(b, CategoricalState) and isinstance(lv, CategoricalState):
            out[key] = categorical_effects(b, lv, alpha)
    return out


def _timed(
    repeat: int, blobs: dict[Key, bytes], run: Callable[[dict[Key, State]], object]
) -> float:
    times = []
    for _ in range(repeat):
        live = {key: decode_state(blob) for key, blob in blobs.items()}
        start = time.perf_counter()
        run(live)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _mode(name: str, repeat: int) -> bool:
    exact = name == "exact"
    t0 = time.perf_counter()
    base, blobs = _build(exact)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluator = EffectEvaluator(base, _effects_for, _alpha_for)
    setup = time.perf_counter() - t0
    total = _timed(repeat, blobs, evaluator.evaluate)
    per_kind = {}
    for kind, count in MIX:
        sub = {key: blob for key, blob in blobs.items() if key[0] == kind}
        per_kind[kind] = _timed(repeat, sub, evaluator.evaluate) / count
    # Reference on a 50-series subset of the same mix, scaled to 1,000 series.
    subset = [(kind, i) for kind, count in MIX for i in range(count * 50 // 1000)]
    sub_blobs = {key: blobs[key] for key in subset}
    ref = _timed(repeat, sub_blobs, lambda live: _reference(base, live, subset)) * 1000 / 50
    ours_sub = _timed(repeat, sub_blobs, evaluator.evaluate)
    ok = total * 1e3 <= BUDGET_MS
    print(
        f"{name:6s}: evaluate 1,000 series {total * 1e3:7.1f} ms "
        f"({total * 1e6 / 1000:5.1f} us/series; budget {BUDGET_MS:.0f} ms: {'ok' if ok else 'OVER'})"
    )
    print(
        "        per kind (us/series): "
        + ", ".join(f"{kind} {t * 1e6:.1f}" for kind, t in per_kind.items())
    )
    print(
        f"        reference functions: {ref * 1e3:7.1f} ms per 1,000 (50-series subset scaled); "
        f"ratio {ref / total:.1f}x; evaluator on the same subset {ours_sub * 1e3:.2f} ms"
    )
    print(
        f"        baseline side (EffectEvaluator init): {setup * 1e3:.0f} ms; states built in {built:.1f} s"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("exact", "digest"))
    args = parser.parse_args()
    modes = [args.only] if args.only else ["exact", "digest"]
    ok = all([_mode(mode, args.repeat) for mode in modes])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
