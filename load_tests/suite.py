"""The load-test suite: every DESIGN.md performance budget measured in one run,
each next to a bare baseline measured in the same run, as one table.

Run from the repository root: ``python -m load_tests.suite`` (or ``make load-test``).

Items (``--only NAME``, repeatable):

- ``middleware``: added cost per call of ``Shadow.wrap`` at rates 0, 0.01 and 1.0
  (20 features), sync and async, against the bare handler; the shipper streams
  to a real gRPC sink in a child process.
- ``ingest``: end-to-end records/s per sidecar core (records per second of
  sidecar CPU) with 23 numeric signals per record (20 features + latency, CPU,
  error), several client processes streaming at once; bare: numpy decode +
  one fastdigest ``batch_update`` per column.
- ``compare``: comparison time of 1,000 series (``load_tests/bench_compare.py``);
  bare: decoding the live states.
- ``flush``: flush of 10,000 series to Redis; bare: the same bytes in one
  pipelined ``HSET`` per partial with redis-py.
- ``memory``: Redis memory per series for a simulated 7 days of history, one
  writer, with compaction running (``MEMORY USAGE`` of every key under a unique
  prefix); bare: the same 7 days without compaction, extrapolated from one hour.
- ``fleet``: 8 sidecar processes and 8 load clients on one Redis: total
  records/s and Redis CPU (``INFO cpu`` deltas); bare: 1 sidecar, 1 client.
- ``soak``: a sidecar process and a middleware process (rate 1.0) under steady
  load for ``--soak-seconds`` (default 600); RSS of both sampled every 5 s from
  the moment the middleware is loaded and calling ("at start"). The first 5
  minutes (half the run if shorter) are warm-up: the live windows fill until
  flushed buckets start leaving memory. Growth compares the median RSS of the
  first third of the remaining samples with the median of the last third (the
  sawtooth of buckets filling and emptying makes single samples misleading);
  the least-squares slope and the range are printed too. Diagnostics, by
  environment variable: ``BASELINED_SOAK_SAMPLES=FILE`` writes every sample as
  JSON; ``BASELINED_TRACEMALLOC=PATH`` makes the sidecar child dump tracemalloc
  snapshots (see ``_MemoryDebug``; compare two with ``--compare-snapshots``);
  ``BASELINED_SOAK_TRIM=1`` makes it call glibc's ``malloc_trim(0)`` every flush
  interval (an experiment); ``BASELINED_SOAK_UNPINNED=1`` leaves glibc's mmap
  threshold dynamic (``baselined serve`` pins it: ``sidecar/memory.py``).

Redis is the shared server at ``--redis`` (default ``redis://127.0.0.1:6379/0``);
every key written is under a unique prefix and deleted afterwards (never FLUSHDB).
Progress goes to stderr, the table to stdout; ``--json FILE`` also writes the rows.
``--quick`` shortens everything (a smoke test; figures are not meaningful).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
for _p in (str(_ROOT), str(_ROOT / "proto")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402

ITEMS = ("middleware", "ingest", "compare", "flush", "memory", "fleet", "soak")
DEFAULT_REDIS = os.environ.get("BASELINED_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_000.0  # bench_ingest's batch timestamps


@dataclass
class Row:
    """One figure of the table."""

    item: str
    figure: str
    measured: str
    budget: str
    baseline: str
    status: str  # PASS, MISS or INFO (no budget)
    value: float = math.nan


def progress(message: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- helpers -------------------------------------------------------------------------


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _delete_prefix(url: str, prefix: str) -> None:
    client = _redis_client(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def _redis_memory(url: str, prefix: str) -> tuple[int, int, int]:
    """(bytes by MEMORY USAGE, keys, payload bytes of hash values) under ``prefix``."""
    client = _redis_client(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        used = sum(int(x or 0) for x in pipe.execute())
        payload = 0
        pipe = client.pipeline(transaction=False)
        hashes = [k for k in keys if b":w:" in k]
        for key in hashes:
            pipe.hvals(key)
        for values in pipe.execute():
            payload += sum(len(v) for v in values)
        return used, len(keys), payload
    finally:
        client.close()


def _redis_cpu(url: str) -> float:
    client = _redis_client(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    finally:
        client.close()


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


def _wait_file(path: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            text = Path(path).read_text().strip()
            if text:
                return text
        if proc.poll() is not None:
            raise RuntimeError(f"child {proc.args!r} exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"child {proc.args!r} did not report within {timeout} s")


def _spawn_sidecar(
    tmp: str, name: str, *, redis_url: str, prefix: str, real_clock: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """A sidecar child process on Redis (``prefix``); returns it and its address."""
    port_file = os.path.join(tmp, f"{name}.port")
    cmd = [sys.executable, "-m", "load_tests.suite", "--serve-sidecar", port_file]
    cmd += ["--redis", redis_url, "--prefix", prefix, "--name", name]
    if real_clock:
        cmd.append("--real-clock")
    proc = subprocess.Popen(cmd, cwd=_ROOT)
    return proc, f"127.0.0.1:{_wait_file(port_file, proc)}"


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- children ------------------------------------------------------------------------


def serve_sidecar(port_file: str, redis_url: str, prefix: str, name: str, real_clock: bool) -> None:
    """Child: a sidecar on Redis until SIGTERM (then it flushes and exits), with the
    process settings of ``baselined serve`` (the pinned mmap threshold)."""
    from sidecar.memory import pin_mmap_threshold
    from sidecar.server import Sidecar
    from sidecar.settings import Settings
    from sidecar.stores import RedisStore

    settings = Settings(
        instance=name,
        listen="127.0.0.1:0",
        store=":memory:",
        max_clock_skew=3600.0,
        flush_interval=2.0,
        reflection=False,
        otel_exporter="none",
    )
    clock: Callable[[], float] = time.time if real_clock else (lambda: T0 + 60.0)
    if not os.environ.get("BASELINED_SOAK_UNPINNED"):
        pin_mmap_threshold()

    async def main() -> None:
        sidecar = Sidecar(settings, store=RedisStore(redis_url, prefix=prefix), clock=clock)
        await sidecar.start()
        with open(port_file + ".tmp", "w") as fh:  # noqa: ASYNC230 - once, at start
            fh.write(str(sidecar.port))
        os.replace(port_file + ".tmp", port_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        debug = _MemoryDebug.from_env(sidecar)
        helpers: list[asyncio.Task[None]] = []
        if os.environ.get("BASELINED_SOAK_TRIM"):  # experiment: malloc_trim after flushes
            import ctypes

            trim = ctypes.CDLL("libc.so.6").malloc_trim

            async def trimmer() -> None:
                took: list[float] = []
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), settings.flush_interval)
                    t = time.perf_counter()
                    await asyncio.to_thread(trim, 0)
                    took.append(time.perf_counter() - t)
                    if len(took) % 30 == 0:
                        progress(
                            f"malloc_trim: {len(took)} calls, median"
                            f" {statistics.median(took) * 1e3:.2f} ms, max {max(took) * 1e3:.2f} ms"
                        )

            helpers.append(asyncio.create_task(trimmer()))
        if debug is not None:
            loop.add_signal_handler(signal.SIGUSR1, debug.dump)
            helpers.append(asyncio.create_task(debug.run(stop)))
        await stop.wait()
        for helper in helpers:
            await helper
        await sidecar.stop(5.0)

    asyncio.run(main())


class _MemoryDebug:
    """Memory diagnostics of the suite's sidecar child, for the soak (off by default).

    ``BASELINED_TRACEMALLOC=PATH`` starts ``tracemalloc``
    (``BASELINED_TRACEMALLOC_FRAMES`` frames, default 6) and every
    ``BASELINED_TRACEMALLOC_INTERVAL`` seconds (default 60) and on ``SIGUSR1`` dumps
    a snapshot to ``PATH.<seconds>.snap`` and appends one JSON line to ``PATH``:
    seconds, RSS, traced bytes, the sizes of the sidecar's in-memory structures.
    Compare two snapshots with ``python -m load_tests.suite --compare-snapshots A B``.
    """

    def __init__(self, sidecar: Any, path: str, frames: int, interval: float) -> None:
        import tracemalloc

        self.sidecar, self.path, self.interval = sidecar, path, interval
        self.began = time.monotonic()
        tracemalloc.start(frames)

    @classmethod
    def from_env(cls, sidecar: Any) -> _MemoryDebug | None:
        path = os.environ.get("BASELINED_TRACEMALLOC")
        if not path:
            return None
        frames = int(os.environ.get("BASELINED_TRACEMALLOC_FRAMES", "6"))
        interval = float(os.environ.get("BASELINED_TRACEMALLOC_INTERVAL", "60"))
        return cls(sidecar, path, frames, interval)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            self.dump()

    def dump(self) -> None:
        import tracemalloc

        t = time.monotonic() - self.began
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        snap.dump(f"{self.path}.{t:05.0f}.snap")
        current, peak = tracemalloc.get_traced_memory()
        line = {
            "t": round(t, 1),
            "rss_mb": round(_rss_mb(os.getpid()), 1),
            "traced_mb": round(current / 2**20, 1),
            "peak_mb": round(peak / 2**20, 1),
            "windows": self.sidecar.windows.stats(),
        }
        with open(self.path, "a") as fh:
            fh.write(json.dumps(line) + "\n")


def compare_snapshots(first: str, second: str, top: int = 25) -> None:
    """Print the allocation sites (by traceback) that grew most between two snapshots."""
    import tracemalloc

    a, b = tracemalloc.Snapshot.load(first), tracemalloc.Snapshot.load(second)
    total = sum(s.size for s in b.statistics("filename")) - sum(
        s.size for s in a.statistics("filename")
    )
    print(f"traced growth {total / 2**20:+.2f} MB from {first} to {second}")
    for stat in b.compare_to(a, "traceback")[:top]:
        print(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+7d} blocks")
        for frame in stat.traceback.format()[-8:]:
            print("    " + frame)


def soak_client(target: str, seconds: float, rate: float, report: str) -> None:
    """Child: a middleware at sampling rate 1.0 calling a handler ``rate`` times a
    second for ``seconds``; writes its final stats as JSON to ``report``."""
    import middleware
    from load_tests.bench_middleware import FEATURES, handler

    shadow = middleware.Shadow(model="soak", target=target, sample_rate=1.0, atexit=False)
    fn = shadow.wrap(handler)
    step = 100
    began = time.monotonic()
    calls = 0
    while (now := time.monotonic()) - began < seconds:
        for _ in range(step):
            fn(FEATURES)
        calls += step
        if calls == step:  # loaded and calling: the parent's RSS samples start now
            Path(report + ".ready").write_text(str(os.getpid()))
        ahead = began + calls / rate - now
        if ahead > 0:
            time.sleep(ahead)
    shadow.close(timeout=10)
    stats = shadow.stats()
    Path(report).write_text(
        json.dumps(
            {
                "calls": calls,
                "accepted": stats.records_accepted,
                "dropped": stats.records_dropped,
            }
        )
    )


def load_client(address: str, batches_n: int, start_at: float) -> None:
    """Child: stream ``batches_n`` bench_ingest batches (no slices) once, starting at
    ``start_at`` (unix time, so that clients start together); print start and end."""
    import grpc
    from baselined.v1 import baselined_pb2 as pb

    from load_tests import bench_ingest as bi

    payload = [b.SerializeToString() for b in bi.make_batches(batches_n, slices=False)]
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        call = channel.stream_unary(
            "/baselined.v1.Ingest/Ingest",
            request_serializer=None,
            response_deserializer=pb.IngestResponse.FromString,
        )
        time.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        response = call(iter(payload), timeout=600)
        ended = time.time()
    if response.records_accepted != batches_n * bi.ROWS:
        raise SystemExit(f"load client: {response.records_accepted} records accepted")
    print(f"{began} {ended}")


def _run_clients(addresses: Sequence[str], batches_n: int) -> float:
    """One load client process per address, all starting together; the seconds from
    the first start to the last end (process start-up excluded)."""
    start_at = time.time() + 3.0 + 0.25 * len(addresses)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "load_tests.suite",
                "--load-client",
                address,
                "--batches",
                str(batches_n),
                "--start-at",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            cwd=_ROOT,
        )
        for address in addresses
    ]
    spans = []
    for p in procs:
        out, _ = p.communicate(timeout=900)
        if p.returncode:
            raise RuntimeError(f"load client exited with {p.returncode}")
        began, ended = (float(x) for x in out.decode().split())
        spans.append((began, ended))
    return max(e for _, e in spans) - min(b for b, _ in spans)


# -- items ---------------------------------------------------------------------------


def item_middleware(quick: bool) -> list[Row]:
    import middleware
    from load_tests import bench_middleware as bm

    calls = 5_000 if quick else 100_000
    repeats = 2 if quick else 7
    proc, target = bm.start_sink()
    rows: list[Row] = []
    try:
        common: dict[str, Any] = {"model": "bench", "target": target, "atexit": False}
        shadows = {rate: middleware.Shadow(sample_rate=rate, **common) for rate in (0, 0.01, 1.0)}

        async def ahandler(features: dict[str, float]) -> float:
            return features["f01"] * 0.25

        def run_async(fn: Callable[[dict[str, float]], Any], n: int) -> float:
            async def loop() -> float:
                feats = bm.FEATURES
                gc.disable()
                try:
                    t0 = time.perf_counter_ns()
                    for _ in range(n):
                        await fn(feats)
                    return (time.perf_counter_ns() - t0) / n
                finally:
                    gc.enable()

            return asyncio.run(loop())

        for mode in ("sync", "async"):
            progress(f"middleware: {mode}, {repeats} x {calls:,} calls per variant")
            if mode == "sync":
                variants: dict[str, Callable[..., Any]] = {"bare": bm.handler}
                variants.update({str(r): sh.wrap(bm.handler) for r, sh in shadows.items()})
                run: Callable[[Callable[..., Any], int], float] = bm.run_calls
            else:
                variants = {"bare": ahandler}
                variants.update({str(r): sh.wrap(ahandler) for r, sh in shadows.items()})
                run = run_async
            samples: dict[str, list[float]] = {k: [] for k in variants}
            for fn in variants.values():
                run(fn, 2000)
            for sh in shadows.values():
                bm.drain(sh)
            for _ in range(repeats):
                for name, fn in variants.items():
                    samples[name].append(run(fn, calls))
                    for sh in shadows.values():
                        bm.drain(sh)
            med = {k: statistics.median(v) for k, v in samples.items()}
            bare = med["bare"]
            for rate, label, budget_ns in (
                ("0", "unsampled (rate 0)", 500.0),
                ("0.01", "1% sampled", 500.0),
                ("1.0", "100% sampled, 20 features", 5000.0),
            ):
                added = med[rate] - bare
                rows.append(
                    Row(
                        "middleware",
                        f"{mode}: added per call, {label}",
                        f"{added / 1000:.2f} us",
                        f"<= {budget_ns / 1000:g} us",
                        f"bare {bare:.0f} ns/call; wrapped {med[rate]:.0f} ns ({med[rate] / bare:.1f}x)",
                        _verdict(added <= budget_ns),
                        added / 1000,
                    )
                )
        for sh in shadows.values():
            sh.close(timeout=10)
        stats = shadows[1.0].stats()
        progress(
            f"middleware: rate 1.0 sampled {stats.sampled:,}, accepted {stats.records_accepted:,},"
            f" dropped {stats.records_dropped}"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return rows


def item_ingest(quick: bool) -> list[Row]:
    from load_tests import bench_ingest as bi
    from sidecar.server import Sidecar

    clients = 3
    batches_n = 20 if quick else 200
    batches = bi.make_batches(batches_n, slices=False)
    records_per_client = batches_n * bi.ROWS
    signals = len(batches[0].numeric)

    progress("ingest: bare baseline (numpy decode + fastdigest)")
    bare_times = bi.timed(lambda: bi.bare(batches), 2 if quick else 5)
    bare_rate = records_per_client / statistics.median(bare_times)

    repeat = 1 if quick else 3

    async def main() -> tuple[list[float], list[float]]:
        sidecar = Sidecar(
            bi.settings().replace(listen="127.0.0.1:0", store=":memory:"), clock=bi.clock
        )
        await sidecar.start()
        walls, cpus = [], []
        try:
            for r in range(repeat):
                progress(f"ingest: run {r + 1}/{repeat}, {clients} client processes")
                cpu = time.process_time()
                wall = await asyncio.to_thread(_run_clients, [sidecar.address] * clients, batches_n)
                walls.append(wall)
                cpus.append(time.process_time() - cpu)
            accepted = sidecar.windows.stats()["records_accepted"]
            if accepted != records_per_client * clients * repeat:
                raise RuntimeError(f"ingest: {accepted} records accepted")
        finally:
            await sidecar.stop(1.0)
        return walls, cpus

    walls, cpus = asyncio.run(main())
    total = records_per_client * clients
    per_core = total / statistics.median(cpus)
    wall = total / statistics.median(walls)
    return [
        Row(
            "ingest",
            f"end to end over gRPC, records/s per sidecar core ({signals} signals, {clients} clients)",
            f"{per_core:,.0f}",
            ">= 250,000",
            f"bare numpy + fastdigest {bare_rate:,.0f}/s per core; wall clock {wall:,.0f}/s"
            " (sidecar and clients share the 2 cores)",
            _verdict(per_core >= 250_000),
            per_core,
        )
    ]


def item_compare(quick: bool) -> list[Row]:
    from load_tests import bench_compare as bc

    progress("compare: 1,000 series, exact and digest states")
    rows = []
    for name in ("exact", "digest"):
        began = time.perf_counter()
        blobs = bc.build(2, bc.LIVE_N, name == "exact")
        del began
        t = time.perf_counter()
        bc.decode(blobs)
        bare_ms = 1000 * (time.perf_counter() - t)
        ms = bc.scenario(name, 2 if quick else 7)
        rows.append(
            Row(
                "compare",
                f"comparison of 1,000 series ({name} states)",
                f"{ms:.1f} ms",
                "<= 100 ms",
                f"decoding the live states {bare_ms:.1f} ms",
                _verdict(ms <= 100.0),
                ms,
            )
        )
    return rows


def _series_batches(signals: int, values: int, per_series: int, now: float) -> list[Any]:
    """Batches making ``signals`` x (1 + ``values``) series: one slice attribute."""
    from baselined.v1 import baselined_pb2 as pb

    rng = np.random.default_rng(3)
    rows = values * per_series
    out = []
    for first in range(0, signals, 200):
        b = pb.SampleBatch(model="flush", version="v1", environment="bench")
        b.timestamps.extend([now] * rows)
        for s in range(first, min(signals, first + 200)):
            b.numeric.add(
                name=f"s{s:04d}",
                kind=pb.SIGNAL_KIND_FEATURE,
                values=rng.lognormal(size=rows).tolist(),
            )
        b.slices.add(name="shard", values=[f"v{i % values}" for i in range(rows)])
        out.append(b)
    return out


def item_flush(quick: bool, redis_url: str) -> list[Row]:
    from sidecar.settings import Settings
    from sidecar.stores import RedisStore
    from sidecar.windows import Windows

    signals, values = (50, 19) if quick else (500, 19)  # x (1 + 19) = 1,000 / 10,000 series
    series = signals * (1 + values)
    now = time.time()
    repeat = 1 if quick else 5
    times, bare_times = [], []
    for r in range(repeat):
        prefix = f"blsuite-{uuid.uuid4().hex[:10]}"
        store = RedisStore(redis_url, prefix=prefix)
        try:
            settings = Settings(instance="bench", max_slice_values=values, max_series=series + 1)
            windows = Windows(settings, store, clock=lambda: now)
            for batch in _series_batches(signals, values, 20, now):
                windows.ingest(batch)
            progress(f"flush: run {r + 1}/{repeat}, {series:,} series to Redis")
            t = time.perf_counter()
            written = windows.flush()
            times.append(time.perf_counter() - t)
            if written != series:
                raise RuntimeError(f"flush wrote {written} series, expected {series}")
            # Bare: the same bytes, one pipelined HSET of one hash, redis-py alone.
            payload = {
                k: v
                for p in store.read_partials("flush", "bench", 0, int(now) + 60)
                for k, v in p.series.items()
            }
            client = _redis_client(redis_url)
            t = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            pipe.hset(f"{prefix}:bare", mapping=payload)
            pipe.execute()
            bare_times.append(time.perf_counter() - t)
            client.close()
        finally:
            store.close()
            _delete_prefix(redis_url, prefix)
    s = statistics.median(times)
    return [
        Row(
            "flush",
            f"flush of {series:,} series to Redis",
            f"{s * 1000:.0f} ms",
            "<= 1 s" if series >= 10_000 else "<= 1 s (at 10,000)",
            f"bare pipelined HSET of the same bytes {statistics.median(bare_times) * 1000:.0f} ms",
            _verdict(s <= 1.0),
            s,
        )
    ]


def item_memory(quick: bool, redis_url: str) -> list[Row]:
    """Simulate 7 days of one writer's minute buckets, compaction running as the
    sidecar runs it (every simulated hour here), and measure Redis memory."""
    from sidecar.compaction import Compactor
    from sidecar.records import Partial
    from sidecar.series import NumericState
    from sidecar.stores import RedisStore

    series_n = 2 if quick else 8
    days = 1 if quick else 7
    per_minute = 1000  # values per series per minute bucket (~17 sampled records/s)
    rng = np.random.default_rng(5)
    pool: list[bytes] = []
    for _ in range(32):
        state = NumericState()
        state.add(rng.lognormal(size=per_minute))
        pool.append(state.encode())
    now = float(int(time.time()) // 60 * 60)
    first = now - days * 86400
    prefix = f"blsuite-{uuid.uuid4().hex[:10]}"
    store = RedisStore(redis_url, prefix=prefix)
    clock = [first]
    compactor = Compactor(store, bucket_seconds=60, compression=1000, clock=lambda: clock[0])
    names = [f"v1\x1f*\x1ffeature\x1fs{i}" for i in range(series_n)]
    try:
        progress(f"memory: {days} day(s) of minute buckets, {series_n} series, compaction hourly")
        k = 0
        hour_memory = 0
        for chunk in range(days * 144):  # 10 simulated minutes at a time
            start = first + chunk * 600
            partials = []
            for minute in range(10):
                k += 1
                blobs = {n: pool[(k + i) % len(pool)] for i, n in enumerate(names)}
                partials.append(Partial(int(start + minute * 60), "bench:1", blobs))
            store.write_partials("mem", "prod", partials, ttl_seconds=7 * 86400)
            if chunk == 5:
                hour_memory, _, _ = _redis_memory(redis_url, prefix)
            clock[0] = start + 600
            compactor.run()  # the sidecar runs it every minute; every 10 here
            if chunk % 144 == 143:
                progress(f"memory: day {chunk // 144 + 1} written and compacted")
        used, keys, payload = _redis_memory(redis_url, prefix)
    finally:
        store.close()
        _delete_prefix(redis_url, prefix)
    per_series = used / series_n
    minutes = days * 1440
    uncompacted = hour_memory / series_n * minutes / 60
    label = f"Redis per series, {days} days of history with compaction ({per_minute:,} values/min)"
    return [
        Row(
            "memory",
            label,
            f"{per_series / 1e6:.2f} MB",
            "<= 1 MB" if days == 7 else "<= 1 MB (at 7 days)",
            f"without compaction {uncompacted / 1e6:.0f} MB (from the first hour); payload {payload / series_n / 1e6:.2f} MB; {keys} keys",
            _verdict(per_series <= 1e6),
            per_series / 1e6,
        )
    ]


def item_fleet(quick: bool, redis_url: str) -> list[Row]:
    from load_tests import bench_ingest as bi

    n = 2 if quick else 8
    batches_n = 20 if quick else 200
    prefix = f"blsuite-{uuid.uuid4().hex[:10]}"
    rows: list[Row] = []
    results: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for count in (1, n):
                progress(f"fleet: {count} sidecar(s) and {count} client(s) on one Redis")
                procs = []
                try:
                    for i in range(count):
                        procs.append(
                            _spawn_sidecar(tmp, f"s{count}-{i}", redis_url=redis_url, prefix=prefix)
                        )
                    cpu0 = _redis_cpu(redis_url)
                    t = time.monotonic()
                    wall = _run_clients([a for _, a in procs], batches_n)
                    time.sleep(2.5)  # one flush interval: the last partials reach Redis
                    cpu = _redis_cpu(redis_url) - cpu0
                    span = time.monotonic() - t  # Redis CPU over the whole phase
                finally:
                    for proc, _ in procs:
                        _stop(proc)
                results[count] = (count * batches_n * bi.ROWS / wall, cpu / span)
        finally:
            _delete_prefix(redis_url, prefix)
    one, many = results[1], results[n]
    rows.append(
        Row(
            "fleet",
            f"{n} sidecars + {n} load clients on one Redis: total records/s",
            f"{many[0]:,.0f}",
            "none (2 cores shared by all)",
            f"1 sidecar + 1 client {one[0]:,.0f}/s",
            "INFO",
            many[0],
        )
    )
    rows.append(
        Row(
            "fleet",
            f"{n} sidecars: Redis CPU (share of one core)",
            f"{many[1] * 100:.1f} %",
            "none",
            f"1 sidecar {one[1] * 100:.1f} %",
            "INFO",
            many[1],
        )
    )
    return rows


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (MB per minute) of (seconds, MB) points."""
    if len(points) < 2:
        return 0.0
    xs = np.array([p[0] for p in points]) / 60.0
    ys = np.array([p[1] for p in points])
    return float(np.polyfit(xs, ys, 1)[0])


SOAK_INTERVAL = 5.0  # seconds between RSS samples
SOAK_WARMUP = 300.0  # s: the live windows fill (flushed buckets leave memory by then)


def soak_judgement(
    points: list[tuple[float, float]], warmup: float, period: float = 60.0
) -> dict[str, float]:
    """The soak's verdict figures from (seconds, MB) samples taken at a steady pace.

    The samples from ``warmup`` on are the steady state. RSS there is a sawtooth
    of ``period`` (a bucket filling, then leaving memory), so single samples
    mislead: growth compares the median of the steady state's first third with
    the median of its last third, each rounded down to whole periods (at least
    one) so that both see every phase of the tooth alike. The least-squares
    slope (MB a minute) is over the whole periods. Runs shorter than a period
    (``--quick``) use plain thirds of the samples.

    >>> pts = [(float(t), 100.0 + (t % 60) / 6) for t in range(0, 600, 5)]
    >>> j = soak_judgement(pts, 300.0)
    >>> round(j["growth"], 6), j["samples"], j["window"]
    (0.0, 60.0, 60.0)
    """
    steady = [p for p in points if p[0] >= warmup]
    if len(steady) < 3:
        steady = points[len(points) // 3 :]
    gap = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(steady))
    t0, t1 = steady[0][0], steady[-1][0] + gap  # the span the samples stand for
    whole = math.floor((t1 - t0) / period + 1e-9)
    if whole >= 1:
        window = max(1, whole // 3) * period
        first = [p for p in steady if p[0] < t0 + window - 1e-9]
        last = [p for p in steady if p[0] >= t1 - window - 1e-9]
        fitted = [p for p in steady if p[0] < t0 + whole * period - 1e-9]
    else:
        third = max(1, len(steady) // 3)
        first, last, fitted = steady[:third], steady[-third:], steady
        window = third * gap
    early = statistics.median(p[1] for p in first)
    late = statistics.median(p[1] for p in last)
    return {
        "from": steady[0][0],
        "to": steady[-1][0],
        "samples": float(len(steady)),
        "window": window,
        "early": early,
        "late": late,
        "growth": (late - early) / early,
        "slope": _slope(fitted),
        "low": min(p[1] for p in steady),
        "high": max(p[1] for p in steady),
    }


def item_soak(quick: bool, redis_url: str, seconds: float) -> list[Row]:
    prefix = f"blsuite-{uuid.uuid4().hex[:10]}"
    rate = 2000.0
    interval = min(SOAK_INTERVAL, max(0.5, seconds / 40))
    warmup = min(SOAK_WARMUP, seconds / 2)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        sidecar, address = _spawn_sidecar(
            tmp, "soak", redis_url=redis_url, prefix=prefix, real_clock=True
        )
        report = os.path.join(tmp, "client.json")
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "load_tests.suite",
                "--soak-client",
                address,
                "--soak-seconds",
                str(seconds),
                "--soak-report",
                report,
            ],
            cwd=_ROOT,
        )
        samples: dict[str, list[tuple[float, float]]] = {"sidecar": [], "middleware": []}
        try:
            _wait_file(report + ".ready", client)  # imported, connected and calling
            began = time.monotonic()
            start = {"sidecar": _rss_mb(sidecar.pid), "middleware": _rss_mb(client.pid)}
            progress(
                f"soak: {seconds:.0f} s at {rate:.0f} calls/s, RSS every {interval:.0f} s,"
                f" steady state from {warmup:.0f} s; at start sidecar {start['sidecar']:.1f} MB,"
                f" middleware {start['middleware']:.1f} MB"
            )
            last_note = began
            while client.poll() is None:
                t = time.monotonic() - began
                for name, pid in (("sidecar", sidecar.pid), ("middleware", client.pid)):
                    mb = _rss_mb(pid)
                    if not math.isnan(mb):
                        samples[name].append((t, mb))
                if time.monotonic() - last_note >= 60:
                    last_note = time.monotonic()
                    progress(
                        f"soak: {t:.0f}/{seconds:.0f} s, RSS sidecar {samples['sidecar'][-1][1]:.1f} MB,"
                        f" middleware {samples['middleware'][-1][1]:.1f} MB"
                    )
                time.sleep(interval)
            stats = json.loads(Path(report).read_text()) if os.path.exists(report) else {}
        finally:
            if client.poll() is None:
                client.kill()
            _stop(sidecar)
            _delete_prefix(redis_url, prefix)
    progress(f"soak: middleware stats {stats}")
    dump = os.environ.get("BASELINED_SOAK_SAMPLES")
    if dump:  # every (seconds, MB) sample, for plots and for the README's notes
        Path(dump).write_text(json.dumps({"start": start, "samples": samples}))
    span = f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"
    for name, points in samples.items():
        if len(points) < 4:
            continue
        j = soak_judgement(points, warmup)
        rows.append(
            Row(
                "soak",
                f"{name} RSS over {span} at {rate:.0f} calls/s: median of the first vs"
                f" last {j['window']:.0f} s of {j['from']:.0f}-{j['to']:.0f} s (steady state)",
                f"{j['early']:.1f} -> {j['late']:.1f} MB ({j['growth'] * 100:+.1f} %),"
                f" slope {j['slope']:+.2f} MB/min, range {j['low']:.1f}-{j['high']:.1f} MB",
                "flat: <= +5 % after warm-up",
                f"at start {start[name]:.1f} MB",
                _verdict(j["growth"] <= 0.05),
                j["growth"],
            )
        )
    return rows


# -- table ---------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def table(rows: list[Row]) -> str:
    head = ("item", "figure", "measured", "budget (DESIGN.md)", "bare baseline, same run", "")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        lines.append(
            f"| {r.item} | {r.figure} | {r.measured} | {r.budget} | {r.baseline} | {r.status} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load_tests.suite",
        description="Run the load-test suite: each DESIGN.md budget measured next to a bare"
        " baseline from the same run, printed as a table (progress on stderr).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs: a smoke test, not figures"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=ITEMS,
        metavar="NAME",
        help=f"run only these items ({', '.join(ITEMS)}); repeatable",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    parser.add_argument(
        "--redis", default=DEFAULT_REDIS, help="Redis URL (shared: only a unique prefix is used)"
    )
    parser.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="soak duration (default 600; 20 with --quick)",
    )
    parser.add_argument("--serve-sidecar", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--real-clock", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--soak-client", metavar="TARGET", help=argparse.SUPPRESS)
    parser.add_argument("--soak-report", help=argparse.SUPPRESS)
    parser.add_argument(
        "--compare-snapshots",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="print the allocation sites that grew between two tracemalloc snapshots"
        " (written by the sidecar child under BASELINED_TRACEMALLOC=PATH) and exit",
    )
    parser.add_argument("--load-client", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.compare_snapshots:
        compare_snapshots(*args.compare_snapshots)
        return 0
    if args.serve_sidecar:
        serve_sidecar(args.serve_sidecar, args.redis, args.prefix, args.name, args.real_clock)
        return 0
    soak_seconds = (
        args.soak_seconds if args.soak_seconds is not None else (20.0 if args.quick else 600.0)
    )
    if args.load_client:
        load_client(args.load_client, args.batches, args.start_at)
        return 0
    if args.soak_client:
        soak_client(args.soak_client, soak_seconds, 2000.0, args.soak_report)
        return 0

    wanted = args.only or list(ITEMS)
    runners: dict[str, Callable[[], list[Row]]] = {
        "middleware": lambda: item_middleware(args.quick),
        "ingest": lambda: item_ingest(args.quick),
        "compare": lambda: item_compare(args.quick),
        "flush": lambda: item_flush(args.quick, args.redis),
        "memory": lambda: item_memory(args.quick, args.redis),
        "fleet": lambda: item_fleet(args.quick, args.redis),
        "soak": lambda: item_soak(args.quick, args.redis, soak_seconds),
    }
    rows: list[Row] = []
    failed: list[str] = []
    began = time.monotonic()
    for name in ITEMS:
        if name not in wanted:
            continue
        progress(f"{name}: start")
        t = time.monotonic()
        try:
            rows += runners[name]()
        except Exception as err:  # one broken item must not hide the others
            failed.append(name)
            progress(f"{name}: FAILED: {type(err).__name__}: {err}")
            rows.append(Row(name, "(item failed)", str(err)[:80], "", "", "MISS"))
        progress(f"{name}: done in {time.monotonic() - t:.0f} s")
    stamp = time.strftime("%Y-%m-%d")
    print(f"load-test suite, {stamp}, {machine()}{' (--quick: not figures)' if args.quick else ''}")
    print(table(rows))
    misses = [r for r in rows if r.status == "MISS"]
    print(f"\n{len(rows)} figures, {len(misses)} MISS, {time.monotonic() - began:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "date": stamp,
                    "machine": machine(),
                    "quick": args.quick,
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
                default=str,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
