"""Added cost of ``middleware.shadow`` per call, against a bare function in the same run.

Run: ``python load_tests/bench_middleware.py [--target host:port] [--calls N] [--repeats R]``

Measures, each as the median of ``--repeats`` runs of ``--calls`` calls:

- bare: the handler alone (takes a dict of 20 features, returns a score);
- unsampled: wrapped at rate 0 and at rate 0.01;
- sampled: wrapped at rate 1.0 (20 features + output + latency, CPU, error);
- down: p99.9 latency of a handler that computes for 50 us, wrapped at rate 1.0
  while the target refuses connections, against the same handler bare.

Without ``--target`` a real gRPC Ingest server on 127.0.0.1 (port 0), in a child
process so that it does not share this process's GIL, receives and counts the batches.
The shipper's own work (encoding batches) runs in this process and is included in
the sampled figure.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target", help="a running sidecar (default: a sink in a child process)")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    proc = None
    target = args.target
    if target is None:
        proc, target = start_sink()
    try:
        run(target, args.calls, args.repeats)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


def run(target: str, calls: int, repeats: int) -> None:
    """Measure and print the table."""
    common: dict[str, Any] = {"model": "bench", "target": target, "atexit": False}
    s0 = middleware.Shadow(sample_rate=0.0, **common)
    s1 = middleware.Shadow(sample_rate=0.01, **common)
    s100 = middleware.Shadow(sample_rate=1.0, **common)
    variants: dict[str, tuple[Callable[[dict[str, float]], float], middleware.Shadow | None]] = {
        "bare": (handler, None),
        "rate 0": (s0.wrap(handler), s0),
        "rate 0.01": (s1.wrap(handler), s1),
        "rate 1.0 (20 features)": (s100.wrap(handler), s100),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for fn, sh in variants.values():  # warm up, start the shippers
        run_calls(fn, 2000)
        if sh is not None:
            drain(sh)
    for _ in range(repeats):
        for name, (fn, sh) in variants.items():
            samples[name].append(run_calls(fn, calls))
            if sh is not None:
                drain(sh)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    for sh in (s0, s1, s100):
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

    bare = medians["bare"]
    print(f"target {target}; {calls} calls per run, median of {repeats} runs")
    print(f"{'variant':24} {'ns/call':>9} {'added ns':>9} {'ratio':>7}")
    for name, ns in medians.items():
        print(f"{name:24} {ns:9.0f} {ns - bare:9.0f} {ns / bare:7.2f}")
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
