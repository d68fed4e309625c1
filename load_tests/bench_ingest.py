"""Sidecar ingest throughput: decode, ``Windows.ingest`` and ``flush``, in process
and (with ``--grpc``) end to end over a real gRPC stream.

Batches look like what the middleware ships: 512 rows of 20 features (normal,
lognormal, bimodal, with a little NaN), latency (lognormal), thread CPU
(gamma), an error flag (1 %), a per-row ``region`` slice column (4 values) and
a fingerprint. Every figure is a median over repetitions and sits next to a
bare baseline measured in the same run: in process, the same values fed
straight into fastdigest, one ``batch_update`` per column; over gRPC, a server
that only parses the same stream (``decode_sample_batch``) and counts its rows.

Over gRPC, ``--clients`` processes stream at once into a sidecar running in this
process; records/s per sidecar core is records over this process' CPU seconds.
The untimed ``--warmup`` streams take the series past their exact phase (or
``--exact-limit 0`` makes every series a t-digest from its first value, as in a
busy sidecar).

Run: ``python load_tests/bench_ingest.py [--batches 200] [--repeat 5] [--grpc]
[--clients 2] [--warmup 1] [--exact-limit N] [--no-slices] [--skip-in-process]``.
Budget (DESIGN.md): >= 250,000 records/s of 20 signals per core, end to end.
On AMD Zen 4, numpy's AVX-512 sort (the largest single cost of a digest update)
is ~3x slower than its AVX2 sort: compare with
``NPY_DISABLE_CPU_FEATURES=X86_V4,AVX512_ICL`` set (``docs/digest-format.md``).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import fastdigest  # noqa: E402
import grpc  # noqa: E402
import grpc.aio  # noqa: E402
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


async def _stream_from_clients(
    address: str, count: int, clients: int, *, slices: bool
) -> tuple[float, float]:
    """``clients`` processes stream ``count`` batches each at once: (wall s, this process' CPU s)."""
    cpu = time.process_time()
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            address,
            "--batches",
            str(count),
            *([] if slices else ["--no-slices"]),
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(clients)
    ]
    # Clients parse their batches before they connect and time only the stream: the
    # wall clock runs from the first client's first message to the last one's reply.
    outs = await asyncio.gather(*(c.communicate() for c in children))
    for child in children:
        if child.returncode:
            raise RuntimeError(f"load client exited with {child.returncode}")
    wall = max(float(out.decode().strip()) for out, _ in outs)
    return wall, time.process_time() - cpu


async def _echo_server() -> tuple[grpc.aio.Server, str, list[int]]:
    """The bare baseline: a ``grpc.aio`` server on the sidecar's options whose Ingest
    parses each message like the sidecar does (``decode_sample_batch``) and only
    counts its rows: the cost of gRPC and protobuf for the same bytes."""
    from sidecar.service import decode_sample_batch

    counted = [0]

    async def ingest(requests: Any, context: Any) -> pb.IngestResponse:
        batches = records = 0
        async for batch in requests:
            batches += 1
            records += len(batch.timestamps)
        counted[0] += records
        return pb.IngestResponse(batches_accepted=batches, records_accepted=records)

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    handler = grpc.stream_unary_rpc_method_handler(
        ingest,
        request_deserializer=decode_sample_batch,
        response_serializer=pb.IngestResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("baselined.v1.Ingest", {"Ingest": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}", counted


def over_grpc(
    count: int,
    repeat: int,
    *,
    slices: bool,
    clients: int = 1,
    warmup: int = 1,
    exact_limit: int | None = None,
) -> dict[str, float]:
    """A real sidecar in this process (pinned to core 0) and ``clients`` client
    processes (on core 1) streaming ``count`` batches each; the bare baseline is a
    gRPC server that only parses and counts the same stream, measured in the same run.

    The per-core figure is records per second of this process' CPU (the sidecar's
    event loop, gRPC threads, flushes): what one core of sidecar time ingests end
    to end. ``warmup`` untimed streams go first, so that the series are past their
    exact phase as in a busy sidecar (``exact_limit=0``: digests from the start).
    Returns the medians (records/s) by name.
    """
    from sidecar.server import Sidecar

    records = count * ROWS * clients
    what = "region slice" if slices else "no slices"
    base = settings()
    if exact_limit is not None:
        base = base.replace(exact_limit=exact_limit)
    print(
        f"end to end over gRPC, {what}: {clients} client process(es) x {count} batches"
        f" x {ROWS} rows, {repeat} timed runs after {warmup} warm-up"
        f" (exact_limit={base.exact_limit}; sidecar on SQLite :memory:)",
        flush=True,
    )

    async def main() -> dict[str, list[float]]:
        runs: dict[str, list[float]] = {"bare_cpu": [], "cpu": [], "wall": [], "bare_wall": []}
        echo, echo_address, counted = await _echo_server()
        sidecar = Sidecar(base.replace(listen="127.0.0.1:0", store=":memory:"), clock=clock)
        await sidecar.start()
        try:
            for run in range(warmup + repeat):
                timed_run = run >= warmup
                wall, cpu = await _stream_from_clients(echo_address, count, clients, slices=slices)
                if timed_run:
                    runs["bare_wall"].append(records / wall)
                    runs["bare_cpu"].append(records / cpu)
                wall, cpu = await _stream_from_clients(
                    sidecar.address, count, clients, slices=slices
                )
                if timed_run:
                    runs["wall"].append(records / wall)
                    runs["cpu"].append(records / cpu)
                label = "run" if timed_run else "warm-up"
                print(
                    f"  {label} {run + 1}: sidecar {records / cpu:,.0f} records/s per core,"
                    f" bare {runs['bare_cpu'][-1] if timed_run else 0:,.0f}",
                    flush=True,
                )
            accepted = sidecar.windows.stats()["records_accepted"]
            assert accepted == records * (warmup + repeat), accepted
            assert counted[0] == records * (warmup + repeat), counted
        finally:
            await sidecar.stop(1.0)
            await echo.stop(1.0)
        return runs

    runs = asyncio.run(main())
    med = {name: statistics.median(values) for name, values in runs.items()}
    print(f"  bare gRPC + protobuf parse, per core   {med['bare_cpu']:>12,.0f} records/s")
    print(
        f"  Ingest stream, per sidecar core        {med['cpu']:>12,.0f} records/s"
        f"  ({med['cpu'] / med['bare_cpu']:.2f} of bare; budget >= 250,000)"
    )
    print(
        f"  Ingest stream, wall clock              {med['wall']:>12,.0f} records/s"
        f"  (bare {med['bare_wall']:,.0f}; clients share the machine)"
    )
    return med


def client(address: str, count: int, *, slices: bool) -> None:
    """Child process: stream ``count`` batches once, print the seconds it took."""
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
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        epilog="Budget (DESIGN.md): >= 250,000 records/s of 20 signals per sidecar core,"
        " end to end over gRPC.",
    )
    parser.add_argument("--batches", type=int, default=200, help="batches per client stream")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--grpc", action="store_true", help="also measure end to end over gRPC")
    parser.add_argument(
        "--no-slices", action="store_true", help="gRPC: only batches without slices"
    )
    parser.add_argument(
        "--clients", type=int, default=2, help="gRPC: client processes streaming at once"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="gRPC: untimed streams before the timed ones"
    )
    parser.add_argument(
        "--exact-limit",
        type=int,
        default=None,
        help="gRPC: the sidecar's exact_limit (default: the Settings default;"
        " 0 = t-digests from the first value, a busy sidecar's steady state)",
    )
    parser.add_argument("--skip-in-process", action="store_true", help="only the gRPC figures")
    parser.add_argument("--client", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args.client, args.batches, slices=not args.no_slices)
        return
    for name in ("batches", "repeat", "clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or (args.exact_limit is not None and args.exact_limit < 0):
        parser.error("--warmup and --exact-limit must be >= 0")
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})  # "per core": one core for everything in process
    if not args.skip_in_process:
        in_process(make_batches(args.batches), args.repeat)
    if args.grpc:
        options = {
            "clients": args.clients,
            "warmup": args.warmup,
            "exact_limit": args.exact_limit,
        }
        over_grpc(args.batches, args.repeat, slices=False, **options)
        if not args.no_slices:
            over_grpc(args.batches, args.repeat, slices=True, **options)


if __name__ == "__main__":
    main()
