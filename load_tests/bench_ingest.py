"""Sidecar ingest throughput: decode, ``Windows.ingest`` and ``flush``, in process
and (with ``--grpc``) end to end over a real gRPC stream.

Batches look like what the middleware ships: 512 rows of 20 features (normal,
lognormal, bimodal, with a little NaN), latency (lognormal), thread CPU
(gamma), an error flag (1 %), a per-row ``region`` slice column (4 values) and
a fingerprint. Every figure is a median over repetitions and sits next to a
bare baseline measured in the same run: the same values fed straight into
fastdigest, one ``batch_update`` per column.

Run: ``python load_tests/bench_ingest.py [--batches 200] [--repeat 5] [--grpc]``.
Budget (DESIGN.md): >= 250,000 records/s of 20 signals per core, end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import fastdigest  # noqa: E402
import numpy as np  # noqa: E402
from baselined.v1 import baselined_pb2 as pb  # noqa: E402

from sidecar.ingest import decode_batch  # noqa: E402
from sidecar.settings import Settings  # noqa: E402
from sidecar.stores import SQLiteStore  # noqa: E402
from sidecar.windows import Windows  # noqa: E402

ROWS = 512
FEATURES = 20
T0 = 1_700_000_000.0
REGIONS = ("eu-west", "us-east", "ap-south", "sa-east")


def make_batches(count: int, *, seed: int = 7, slices: bool = True) -> list[pb.SampleBatch]:
    """``count`` batches as a middleware would send them (parsed from bytes, like a server sees)."""
    rng = np.random.default_rng(seed)
    fingerprint = pb.Fingerprint(hash="abc123", fields={"python": "3.11.7", "lib.numpy": "2.4.0"})
    out = []
    for b in range(count):
        batch = pb.SampleBatch(
            model="fraud",
            version="v7",
            environment="prod",
            instance="pod-1:123",
            fingerprint=fingerprint,
        )
        # About 2,000 records/s of traffic: a batch covers 0.25 s.
        batch.timestamps.extend((T0 + b * 0.25 + np.sort(rng.uniform(0, 0.25, ROWS))).tolist())
        for f in range(FEATURES):
            if f % 3 == 0:
                values = rng.normal(f, 1.0 + f, ROWS)
            elif f % 3 == 1:
                values = rng.lognormal(0.0, 0.5, ROWS)
            else:
                values = np.where(
                    rng.random(ROWS) < 0.3, rng.normal(-2, 0.5, ROWS), rng.normal(3, 1, ROWS)
                )
            values[rng.random(ROWS) < 0.01] = np.nan
            batch.numeric.add(name=f"f{f:02d}", kind=pb.SIGNAL_KIND_FEATURE, values=values.tolist())
        batch.numeric.add(
            name="latency_seconds",
            kind=pb.SIGNAL_KIND_LATENCY,
            values=rng.lognormal(-4, 0.6, ROWS).tolist(),
        )
        batch.numeric.add(
            name="thread_cpu_seconds",
            kind=pb.SIGNAL_KIND_RESOURCE,
            values=rng.gamma(2.0, 0.002, ROWS).tolist(),
        )
        batch.numeric.add(
            name="error",
            kind=pb.SIGNAL_KIND_ERROR,
            values=(rng.random(ROWS) < 0.01).astype(float).tolist(),
        )
        if slices:
            batch.slices.add(
                name="region", values=[REGIONS[i] for i in rng.integers(0, len(REGIONS), ROWS)]
            )
        out.append(pb.SampleBatch.FromString(batch.SerializeToString()))
    return out


def settings() -> Settings:
    return Settings(instance="bench", retention_seconds=7 * 24 * 3600, max_clock_skew=3600.0)


def clock() -> float:
    return T0 + 60.0


def timed(run: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def rate(records: int, times: list[float]) -> str:
    return f"{records / statistics.median(times):>12,.0f} records/s"


def bare(batches: list[pb.SampleBatch]) -> None:
    """The floor: decode each column with numpy and feed fastdigest, nothing else."""
    digests = [fastdigest.TDigest(1000) for _ in batches[0].numeric]
    for batch in batches:
        for digest, col in zip(digests, batch.numeric, strict=True):
            values = np.asarray(col.values, dtype=np.float64)
            digest.batch_update(np.ascontiguousarray(values[np.isfinite(values)]).data)


def in_process(batches: list[pb.SampleBatch], repeat: int) -> None:
    records = len(batches) * ROWS
    print(
        f"in process, {len(batches)} batches x {ROWS} rows"
        f" x {len(batches[0].numeric)} numeric signals"
    )
    print(
        f"  bare fastdigest (1 digest/col)  {rate(records, timed(lambda: bare(batches), repeat))}"
    )
    s = settings()
    print(
        f"  decode_batch only               "
        f"{rate(records, timed(lambda: [decode_batch(b, s, now=clock()) for b in batches], repeat))}"
    )
    plain = make_batches(len(batches), slices=False)
    for label, data, exact_limit in (
        ("Windows.ingest, no slices      ", plain, s.exact_limit),
        ("Windows.ingest, region slice   ", batches, s.exact_limit),
        ("  no slices, t-digest only     ", plain, 0),
        ("  region slice, t-digest only  ", batches, 0),
    ):
        times: list[float] = []
        flushes: list[float] = []
        written = 0
        for _ in range(repeat):
            store = SQLiteStore(":memory:")
            windows = Windows(s.replace(exact_limit=exact_limit), store, clock=clock)
            started = time.perf_counter()
            for batch in data:
                windows.ingest(batch)
            times.append(time.perf_counter() - started)
            started = time.perf_counter()
            written = windows.flush()
            flushes.append(time.perf_counter() - started)
            store.close()
        print(
            f"  {label} {rate(records, times)}   flush of {written} series to SQLite :memory: "
            f"{statistics.median(flushes) * 1e3:.1f} ms"
        )


def over_grpc(batches: list[pb.SampleBatch], repeat: int, *, slices: bool) -> None:
    """A real sidecar in this process on core 0; a client process on core 1 streams.

    Reports wall-clock records/s and records per second of sidecar CPU (the
    "per core" figure: what one core of sidecar time ingests end to end).
    """
    from sidecar.server import Sidecar

    records = len(batches) * ROWS
    what = "region slice" if slices else "no slices"
    print(
        f"end to end over gRPC, {what} (Ingest stream of {len(batches)} batches"
        " from another process, sidecar on SQLite :memory:)"
    )

    async def main() -> tuple[list[float], list[float]]:
        sidecar = Sidecar(settings().replace(listen="127.0.0.1:0", store=":memory:"), clock=clock)
        await sidecar.start()
        walls, cpus = [], []
        try:
            for _ in range(repeat):
                cpu = time.process_time()
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--client",
                    sidecar.address,
                    "--batches",
                    str(len(batches)),
                    *([] if slices else ["--no-slices"]),
                    stdout=asyncio.subprocess.PIPE,
                )
                out, _ = await child.communicate()
                cpus.append(time.process_time() - cpu)
                walls.append(float(out.decode().strip()))
            accepted = sidecar.windows.stats()["records_accepted"]
            assert accepted == records * repeat, accepted
        finally:
            await sidecar.stop(1.0)
        return walls, cpus

    walls, cpus = asyncio.run(main())
    print(f"  Ingest stream, wall clock       {rate(records, walls)}")
    print(f"  Ingest stream, per sidecar core {rate(records, cpus)}  (per sidecar CPU second)")


def client(address: str, count: int, *, slices: bool) -> None:
    """Child process: stream ``count`` batches once, print the seconds it took."""
    import grpc

    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    payload = [b.SerializeToString() for b in make_batches(count, slices=slices)]
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        call = channel.stream_unary(
            "/baselined.v1.Ingest/Ingest",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.IngestResponse.FromString,
        )
        started = time.perf_counter()
        response = call(iter(payload))
        elapsed = time.perf_counter() - started
    assert response.records_accepted == count * ROWS, response
    print(elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--grpc", action="store_true", help="also measure end to end over gRPC")
    parser.add_argument(
        "--no-slices", action="store_true", help="gRPC: only batches without slices"
    )
    parser.add_argument("--client", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args.client, args.batches, slices=not args.no_slices)
        return
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})  # "per core": one core for everything in process
    batches = make_batches(args.batches)
    in_process(batches, args.repeat)
    if args.grpc:
        over_grpc(make_batches(args.batches, slices=False), args.repeat, slices=False)
        if not args.no_slices:
            over_grpc(batches, args.repeat, slices=True)


if __name__ == "__main__":
    main()
