"""Added cost of ``middleware.shadow`` per call, against a bare function in the same run.

Run: ``python load_tests/bench_middleware.py [--target host:port] [--calls N] [--repeats R]
[--mode sync|async|both]``

Measures, each as the median of ``--repeats`` runs of ``--calls`` calls, the
variants interleaved within each repeat so that load from other processes hits
them alike, for a sync handler and an ``async def`` one (awaited in a loop):

- bare: the handler alone (takes a dict of 20 features, returns a score);
- unsampled: wrapped at rate 0 and at rate 0.01;
- sampled: wrapped at rate 1.0 (20 features + output + latency, CPU (sync only), error);
- down: p99.9 latency of a handler that computes for 50 us, wrapped at rate 1.0
  while the target refuses connections, against the same handler bare.

Each row prints ns per call, the added ns against the bare handler of the same
mode, the ratio to it, and the budget from DESIGN.md (unsampled <= 500 ns,
sampled <= 5000 ns added per call).

Without ``--target`` a real gRPC Ingest server on 127.0.0.1 (port 0), in a child
process so that it does not share this process's GIL, receives and counts the batches.
The shipper's own work (turning rows into columns, encoding batches) runs in
this process and is included in the sampled figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent import futures
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (_ROOT, os.path.join(_ROOT, "proto")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc  # noqa: E402
from baselined.v1 import baselined_pb2 as pb  # noqa: E402
from baselined.v1 import baselined_pb2_grpc as pb_grpc  # noqa: E402

import middleware  # noqa: E402

FEATURES = {f"f{i:02d}": float(i) * 0.5 for i in range(20)}


class CountingIngest(pb_grpc.IngestServicer):
    """Counts what it receives (a real sink, no storage)."""

    def __init__(self) -> None:
        self.records = 0

    def Ingest(self, request_iterator: Iterator[pb.SampleBatch], context: Any) -> pb.IngestResponse:
        records = batches = 0
        for batch in request_iterator:
            records += len(batch.timestamps)
            batches += 1
        self.records += records
        return pb.IngestResponse(batches_accepted=batches, records_accepted=records)


def handler(features: dict[str, float]) -> float:
    """The bare model: a trivial score, so the wrapper's cost dominates."""
    return features["f01"] * 0.25


async def async_handler(features: dict[str, float]) -> float:
    """The bare model as a coroutine."""
    return features["f01"] * 0.25


def busy_handler(features: dict[str, float]) -> float:
    """A model that computes for about 50 us, for the tail-latency comparison."""
    end = time.perf_counter_ns() + 50_000
    x = 0.0
    while time.perf_counter_ns() < end:
        x += features["f01"]
    return x


def run_calls(fn: Callable[[dict[str, float]], float], calls: int) -> float:
    """Nanoseconds per call over ``calls`` calls."""
    feats = FEATURES
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn(feats)
        return (time.perf_counter_ns() - t0) / calls
    finally:
        if gc_was:
            gc.enable()


def run_async_calls(fn: Callable[[dict[str, float]], Awaitable[float]], calls: int) -> float:
    """Nanoseconds per awaited call over ``calls`` calls (one event loop per run)."""

    async def loop() -> float:
        feats = FEATURES
        gc_was = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                await fn(feats)
            return (time.perf_counter_ns() - t0) / calls
        finally:
            if gc_was:
                gc.enable()

    return asyncio.run(loop())


def p999_latency(fn: Callable[[dict[str, float]], float], calls: int) -> float:
    """p99.9 of single-call latency in ns."""
    feats = FEATURES
    lat = []
    perf = time.perf_counter_ns
    for _ in range(calls):
        t0 = perf()
        fn(feats)
        lat.append(perf() - t0)
    lat.sort()
    return float(lat[min(len(lat) - 1, int(len(lat) * 0.999))])


def free_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port_file: str) -> None:
    """Run the counting sink until killed (a separate process: its own GIL)."""
    sink = CountingIngest()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_IngestServicer_to_server(sink, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(port_file, "w") as fh:
        fh.write(str(port))
    server.wait_for_termination()


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    """A real gRPC Ingest server in a child process; returns it and its target."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        proc = subprocess.Popen([sys.executable, __file__, "--serve", port_file])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(port_file):
                with open(port_file) as fh:
                    port = fh.read().strip()
                if port:
                    return proc, f"127.0.0.1:{port}"
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the sink did not start")


def drain(shadow: middleware.Shadow) -> None:
    """Let the shipper catch up so its work does not leak into the next measurement."""
    shadow.flush()
    end = time.monotonic() + 10
    while shadow._recorder.queued() and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Prints one row per variant: ns/call, added ns, ratio to bare, budget.",
    )
    parser.add_argument("--target", help="a running sidecar (default: a sink in a child process)")
    parser.add_argument("--calls", type=int, default=50_000, help="calls per run (50,000)")
    parser.add_argument("--repeats", type=int, default=7, help="runs per variant; median (7)")
    parser.add_argument(
        "--mode",
        choices=("sync", "async", "both"),
        default="both",
        help="sync handler, async handler, or both (default)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.calls < 1 or args.repeats < 1:
        parser.error("--calls and --repeats must be at least 1")

    proc = None
    target = args.target
    if target is None:
        proc, target = start_sink()
    try:
        run(target, args.calls, args.repeats, args.mode)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


#: Budgets from DESIGN.md, in ns added per call.
UNSAMPLED_BUDGET_NS = 500.0
SAMPLED_BUDGET_NS = 5000.0

Runner = Callable[[Any, int], float]


def run(target: str, calls: int, repeats: int, mode: str = "both") -> None:
    """Measure and print the table."""
    common: dict[str, Any] = {"model": "bench", "target": target, "atexit": False}
    s0 = middleware.Shadow(sample_rate=0.0, **common)
    s1 = middleware.Shadow(sample_rate=0.01, **common)
    s100 = middleware.Shadow(sample_rate=1.0, **common)
    shadows = (s0, s1, s100)
    # name -> (function, runner, shadow, budget in added ns, the bare variant it is compared with)
    variants: dict[str, tuple[Any, Runner, middleware.Shadow | None, float | None, str]] = {}
    if mode in ("sync", "both"):
        variants.update(
            {
                "bare": (handler, run_calls, None, None, "bare"),
                "rate 0": (s0.wrap(handler), run_calls, s0, UNSAMPLED_BUDGET_NS, "bare"),
                "rate 0.01": (s1.wrap(handler), run_calls, s1, UNSAMPLED_BUDGET_NS, "bare"),
                "rate 1.0 (20 features)": (
                    s100.wrap(handler), run_calls, s100, SAMPLED_BUDGET_NS, "bare",
                ),
            }
        )  # fmt: skip
    if mode in ("async", "both"):
        ab = "async bare"
        variants.update(
            {
                ab: (async_handler, run_async_calls, None, None, ab),
                "async rate 0": (
                    s0.wrap(async_handler), run_async_calls, s0, UNSAMPLED_BUDGET_NS, ab,
                ),
                "async rate 0.01": (
                    s1.wrap(async_handler), run_async_calls, s1, UNSAMPLED_BUDGET_NS, ab,
                ),
                "async rate 1.0 (20 features)": (
                    s100.wrap(async_handler), run_async_calls, s100, SAMPLED_BUDGET_NS, ab,
                ),
            }
        )  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for fn, runner, sh, _, _ in variants.values():  # warm up, start the shippers
        runner(fn, 2000)
        if sh is not None:
            drain(sh)
    for i in range(repeats):
        print(f"repeat {i + 1}/{repeats}", file=sys.stderr, flush=True)
        for name, (fn, runner, sh, _, _) in variants.items():
            samples[name].append(runner(fn, calls))
            if sh is not None:
                drain(sh)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    for sh in shadows:
        sh.close(timeout=10.0)
    stats = s100.stats()

    # Sidecar down: nothing listens on the port.
    down = middleware.Shadow(
        sample_rate=1.0,
        backoff=middleware.Backoff(initial=0.05, maximum=1.0),
        **{**common, "target": f"127.0.0.1:{free_port()}"},
    )
    down_fn = down.wrap(busy_handler)
    tail_calls = max(2000, calls // 5)
    run_calls(down_fn, 2000)
    p_bare, p_down = [], []
    for _ in range(3):
        p_bare.append(p999_latency(busy_handler, tail_calls))
        p_down.append(p999_latency(down_fn, tail_calls))
    down.close(timeout=1.0)
    down_stats = down.stats()

    print(f"target {target}; {calls} calls per run, median of {repeats} runs")
    print(f"{'variant':30} {'ns/call':>9} {'added ns':>9} {'ratio':>7} {'budget':>13}")
    for name, ns in medians.items():
        _, _, _, budget, base = variants[name]
        bare = medians[base]
        verdict = ""
        if budget is not None:
            verdict = f"<= {budget:.0f} {'ok' if ns - bare <= budget else 'MISS'}"
        print(f"{name:30} {ns:9.0f} {ns - bare:9.0f} {ns / bare:7.2f} {verdict:>13}")
    print()
    print(
        f"rate 1.0: sampled {stats.sampled}, shipped {stats.records_shipped}, "
        f"accepted {stats.records_accepted}, dropped {stats.records_dropped}"
    )
    print()
    print(f"sidecar down, rate 1.0, a 50 us handler: p99.9 of {tail_calls} calls (median of 3)")
    print(f"  bare     {statistics.median(p_bare) / 1000:8.2f} us")
    print(f"  wrapped  {statistics.median(p_down) / 1000:8.2f} us")
    print(f"  dropped  {down_stats.records_dropped}")


if __name__ == "__main__":
    main()
