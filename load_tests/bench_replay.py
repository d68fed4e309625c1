"""``baselined replay`` throughput on a 1,000,000-line JSON Lines file.

The file looks like the issue's example lines: a fraud model with four signals
(``amount`` numeric feature, ``country`` categorical, ``score`` output,
``latency_ms`` latency) and a ``node`` slice attribute, 100 samples per
simulated second (so 1,000,000 lines span ~2.8 hours and ~1,000 checks at the
default 10 s interval). A baseline is frozen halfway; the amount shifts by 0.5
standard deviations for the last 30 %. The bare baseline
measured in the same run is ``json.loads`` of every line, the floor of any
JSON Lines reader in Python.

Run: ``python load_tests/bench_replay.py [--lines 1000000] [--check-interval 10]``.
Budget (issue 3): 1,000,000 lines "well under a minute".
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import numpy as np  # noqa: E402

from sidecar.guardrails import Guardrails  # noqa: E402
from sidecar.replay import replay  # noqa: E402

T0 = 1_767_225_600.0
RATE = 100.0  # samples per simulated second
COUNTRIES = ("DE", "FR", "US", "GB", "IN", "BR")
NODES = ("gpu-1", "gpu-2", "gpu-3", "gpu-4")


def write_file(path: Path, lines: int, *, seed: int = 11) -> None:
    """Write ``lines`` lines: samples, one freeze at 50 %, a 0.5 SD shift of ``amount``
    from 70 % on, and an event at the end."""
    rng = np.random.default_rng(seed)
    freeze_at = lines // 2
    shift_at = lines * 7 // 10
    amount = rng.normal(100.0, 10.0, lines)
    amount[shift_at:] += 5.0
    score = rng.beta(2.0, 5.0, lines)
    latency = rng.lognormal(3.0, 0.5, lines)
    country = rng.integers(len(COUNTRIES), size=lines)
    node = rng.integers(len(NODES), size=lines)
    # One template instead of json.dumps per line: the file is written ~5x faster.
    template = (
        '{{"kind": "sample", "time": {t:.3f}, "model": "fraud", "version": "3", '
        '"environment": "prod", "request_id": "r{i}", "signals": {{"amount": {a:.4f}, '
        '"country": "{c}", "score": {s:.6f}, "latency_ms": {lat:.3f}}}, '
        '"signal_kinds": {{"score": "output", "latency_ms": "latency"}}, '
        '"attributes": {{"node": "{n}"}}}}\n'
    )
    with path.open("w") as f:
        for i in range(lines - 1):
            t = T0 + i / RATE
            if i == freeze_at:
                freeze = {
                    "kind": "freeze",
                    "time": t,
                    "model": "fraud",
                    "environment": "prod",
                    "name": "ref-1",
                }
                f.write(json.dumps(freeze) + "\n")
                continue
            f.write(
                template.format(
                    t=t,
                    i=i,
                    a=amount[i],
                    c=COUNTRIES[country[i]],
                    s=score[i],
                    lat=latency[i],
                    n=NODES[node[i]],
                )
            )
        event = {"kind": "event", "time": T0 + lines / RATE, "model": "fraud", "type": "deploy"}
        f.write(json.dumps(event) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--check-interval", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traffic.jsonl"
        began = time.perf_counter()
        write_file(path, args.lines)
        size = path.stat().st_size
        print(
            f"wrote {args.lines:,} lines ({size / 1e6:.0f} MB) in {time.perf_counter() - began:.1f} s"
        )

        began = time.perf_counter()
        with path.open() as f:
            for line in f:
                json.loads(line)
        bare = time.perf_counter() - began

        out = io.StringIO()
        with path.open() as f:
            summary = replay(
                f,
                guardrails=Guardrails.load(None),
                check_interval=args.check_interval,
                out=out,
            )
        took = summary.seconds
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    first = next((a for a in alerts if a["state"] == "firing"), None)
    print(summary.describe())
    print(f"{'path':<28}{'seconds':>10}{'lines/s':>14}")
    print(f"{'bare json.loads per line':<28}{bare:>10.2f}{args.lines / bare:>14,.0f}")
    print(f"{'baselined replay':<28}{took:>10.2f}{args.lines / took:>14,.0f}")
    print(f"replay / bare: {took / bare:.1f}x the time of parsing alone")
    if first is not None:
        s = first["series"][0]
        print(
            f"first alert: {first['severity']} at t0+{first['time'] - T0:.0f} s on {s['signal']} "
            f"slice {s['slice']}: {s['effect']['name']} lower bound {s['lower_bound']:.4g} "
            f">= {s['guardrail']}"
        )


if __name__ == "__main__":
    main()
