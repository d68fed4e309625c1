"""Added cost of ``middleware.shadow`` per call, against a bare function in the same run.

Run: ``python load_tests/bench_middleware.py [--target host:port] [--calls N] [--repeats R]``

Measures, each as the median of ``--repeats`` runs of ``--calls`` calls:

- bare: the handler alone (takes a dict of 20 features, returns a score);
- unsampled: wrapped at rate 0 and at rate 0.01;
- sampled: wrapped at rate 1.0 (20 features + output + latency, CPU, error);
- down: p99.9 of the handler's own latency at rate 1.0 when the target refuses
  connections, against the bare handler's p99.9.

Without ``--target`` a real in-process gRPC Ingest server on 127.0.0.1 (port 0)
receives the batches and counts them.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (_ROOT, os.path.join(_ROOT, "proto")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc  # noqa: E402

import middleware  # noqa: E402
from baselined.v1 import baselined_pb2 as pb  # noqa: E402
from baselined.v1 import baselined_pb2_grpc as pb_grpc  # noqa: E402

FEATURES = {f"f{i:02d}": float(i) * 0.5 for i in range(20)}


class CountingIngest(pb_grpc.IngestServicer):  # type: ignore[misc]
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


def median_interleaved(
    variants: dict[str, Callable[[dict[str, float]], float]], calls: int, repeats: int
) -> dict[str, float]:
    """Median ns/call of each variant, the variants interleaved in every repetition."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for name, fn in variants.items():  # warm up
        run_calls(fn, min(calls, 2000))
    for _ in range(repeats):
        for name, fn in variants.items():
            samples[name].append(run_calls(fn, calls))
    return {name: statistics.median(v) for name, v in samples.items()}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="a running sidecar (default: in-process gRPC sink)")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    server = None
    sink = None
    target = args.target
    if target is None:
        sink = CountingIngest()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_IngestServicer_to_server(sink, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        target = f"127.0.0.1:{port}"

    common = {"model": "bench", "target": target, "atexit": False, "flush_interval": 0.2}
    s0 = middleware.Shadow(sample_rate=0.0, **common)
    s1 = middleware.Shadow(sample_rate=0.01, **common)
    s100 = middleware.Shadow(sample_rate=1.0, **common)
    variants = {
        "bare": handler,
        "rate 0": s0.wrap(handler),
        "rate 0.01": s1.wrap(handler),
        "rate 1.0 (sampled, 20 features)": s100.wrap(handler),
    }
    medians = median_interleaved(variants, args.calls, args.repeats)
    s0.close(timeout=5.0)
    s1.close(timeout=5.0)
    s100.close(timeout=10.0)
    stats = s100.stats()

    # Sidecar down: nothing listens on the port.
    down = middleware.Shadow(
        sample_rate=1.0,
        backoff=middleware.Backoff(initial=0.05, maximum=1.0),
        **{**common, "target": f"127.0.0.1:{free_port()}"},
    )
    down_fn = down.wrap(handler)
    run_calls(down_fn, 5000)
    p_bare = [p999_latency(handler, args.calls) for _ in range(3)]
    p_down = [p999_latency(down_fn, args.calls) for _ in range(3)]
    down.close(timeout=1.0)
    down_stats = down.stats()

    bare = medians["bare"]
    print(f"calls per run {args.calls}, repeats {args.repeats}, target {target}")
    print(f"{'variant':34} {'ns/call':>9} {'added ns':>9} {'ratio':>7}")
    for name, ns in medians.items():
        print(f"{name:34} {ns:9.0f} {ns - bare:9.0f} {ns / bare:7.2f}")
    print()
    print(f"sampled run: shipped {stats.records_shipped}, accepted {stats.records_accepted}, "
          f"dropped {stats.records_dropped}")
    if sink is not None:
        print(f"sink received {sink.records} records")
    print()
    print("sidecar down (rate 1.0): handler p99.9 (median of 3 runs)")
    print(f"  bare      {statistics.median(p_bare) / 1000:8.1f} us")
    print(f"  wrapped   {statistics.median(p_down) / 1000:8.1f} us")
    print(f"  dropped   {down_stats.records_dropped}")
    if server is not None:
        server.stop(grace=None)


if __name__ == "__main__":
    main()
