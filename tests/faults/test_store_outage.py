"""Degraded mode: Redis goes away under a running sidecar and comes back.

While the store is unreachable the sidecar keeps ingesting into memory,
answers ``baselined.store`` NOT_SERVING (overall health stays SERVING) and
``/healthz`` ``degraded: ...``, refuses baseline RPCs with UNAVAILABLE, and
retries with backoff; when Redis returns it flushes what it held. Within
``max_buffered_buckets`` nothing is lost; past it the dropped rows are counted
exactly (stored + dropped == acknowledged).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2

from sidecar.errors import StoreUnavailable
from sidecar.server import STORE_HEALTH_SERVICE
from sidecar.stores.redis import RedisStore
from tests.faults.conftest import (
    ENVIRONMENT,
    MODEL,
    RedisServer,
    batch,
    health_status,
    stored_rows,
    wait_for,
)
from tests.integration.conftest import SidecarProcess, free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OUTAGE = float(os.environ.get("BASELINED_FAULT_OUTAGE_SECONDS", "30"))


class Sender(threading.Thread):
    """Sends a small batch every ``every`` seconds; counts the rows acknowledged."""

    def __init__(self, target: str, rows: int = 20, every: float = 0.05) -> None:
        super().__init__(name="fault-sender", daemon=True)
        self.target, self.rows, self.every = target, rows, every
        self.acked = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.IngestStub(channel)
            i = 0
            while not self.stop.is_set():
                try:
                    reply = stub.IngestBatch(
                        batch(self.rows, start=time.time(), value=float(i % 100)), timeout=5
                    )
                    self.acked += reply.records_accepted
                except grpc.RpcError as err:
                    self.errors.append(f"{err.code()}: {err.details()}")
                i += 1
                self.stop.wait(self.every)


def _healthz(port: int) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
        return int(reply.status), reply.read().decode()


def _freeze(target: str, name: str) -> pb.Baseline:
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.BaselinesStub(channel).FreezeBaseline(
            pb.FreezeBaselineRequest(
                model=MODEL, environment=ENVIRONMENT, name=name, reason="fault test"
            ),
            timeout=15,
        )


def _start_sidecar(
    factory: type[SidecarProcess], redis: RedisServer, tmp_path: Path, *extra: str
) -> tuple[SidecarProcess, int]:
    http = free_port()
    sidecar = factory(
        store=redis.url,
        port=free_port(),
        log=tmp_path / "sidecar.log",
        extra=("--http-listen", f"127.0.0.1:{http}", "--prometheus-metrics", *extra),
    )
    sidecar.start()
    return sidecar, http


def _complete_baselines(url: str) -> dict[str, int]:
    """name -> record count of every baseline; each must hold all its series."""
    store = RedisStore(url)
    try:
        found = {}
        for record in store.list_baselines(MODEL, ENVIRONMENT):
            assert len(store.get_baseline_series(record.id)) == record.series_count > 0
            found[record.name] = record.record_count
        return found
    finally:
        store.close()


@pytest.mark.slow
def test_redis_down_thirty_seconds_loses_nothing_within_the_bound(
    throwaway_redis: RedisServer, sidecar_factory: type[SidecarProcess], tmp_path: Path
) -> None:
    sidecar, http = _start_sidecar(
        sidecar_factory, throwaway_redis, tmp_path, "--store-retry-max", "2"
    )
    sender = Sender(sidecar.target)
    sender.start()
    try:
        wait_for(lambda: sender.acked >= 200, 10, "first rows acknowledged")
        before = _freeze(sidecar.target, "before")

        throwaway_redis.kill()
        down_at = time.monotonic()
        detected = wait_for(
            lambda: health_status(sidecar.target, STORE_HEALTH_SERVICE) == NOT_SERVING,
            15,
            "baselined.store NOT_SERVING",
        )
        assert health_status(sidecar.target) == SERVING  # ingest goes on: overall SERVING
        status, body = _healthz(http)
        assert status == 200 and body.startswith("degraded: store redis://127.0.0.1:"), body
        with pytest.raises(grpc.RpcError) as refused:
            _freeze(sidecar.target, "during")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "cannot reach Redis" in str(refused.value.details()), refused.value.details()

        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        assert sidecar.process is not None and sidecar.process.poll() is None, "sidecar crashed"
        acked_while_down = sender.acked
        throwaway_redis.restart()
        back_at = time.monotonic()
        recovery = wait_for(
            lambda: health_status(sidecar.target, STORE_HEALTH_SERVICE) == SERVING,
            15,
            "baselined.store SERVING again",
        )
        assert _healthz(http) == (200, "ok")
        time.sleep(1.0)
    finally:
        sender.stop.set()
        sender.join(10)
    assert sender.errors == []  # the model side never saw the outage
    after = _freeze(sidecar.target, "after")  # flushes first: everything held is in it
    assert sidecar.stop() == 0

    baselines = _complete_baselines(throwaway_redis.url)
    assert set(baselines) == {"before", "after"}  # "during" left nothing behind
    assert baselines["before"] == before.record_count
    store = RedisStore(throwaway_redis.url)
    try:
        stored = stored_rows(store)
    finally:
        store.close()
    assert stored == sender.acked == after.record_count  # loss within the bound: none
    print(
        f"\nredis outage {back_at - down_at:.1f} s: detected after {detected:.2f} s,"
        f" recovered {recovery:.2f} s after restart; rows acked {sender.acked}"
        f" ({acked_while_down} by the end of the outage), stored {stored}, lost 0"
    )


@pytest.mark.slow
def test_past_the_bound_the_oldest_buckets_are_dropped_and_counted(
    throwaway_redis: RedisServer, sidecar_factory: type[SidecarProcess], tmp_path: Path
) -> None:
    sidecar, http = _start_sidecar(
        sidecar_factory, throwaway_redis, tmp_path,
        "--bucket-seconds", "1", "--max-buffered-buckets", "2", "--store-retry-max", "1",
    )  # fmt: skip
    sender = Sender(sidecar.target)
    sender.start()
    try:
        wait_for(lambda: sender.acked >= 100, 10, "first rows acknowledged")
        throwaway_redis.kill()
        wait_for(
            lambda: health_status(sidecar.target, STORE_HEALTH_SERVICE) == NOT_SERVING,
            15,
            "baselined.store NOT_SERVING",
        )
        time.sleep(5.0)
        status, body = _healthz(http)
        assert status == 200 and "records dropped unflushed" in body, body
        dropped_while_down = int(body.rpartition("; ")[2].split()[0])
        assert dropped_while_down > 0, body
        throwaway_redis.restart()
        wait_for(
            lambda: health_status(sidecar.target, STORE_HEALTH_SERVICE) == SERVING,
            15,
            "baselined.store SERVING again",
        )
        time.sleep(0.5)
    finally:
        sender.stop.set()
        sender.join(10)
    assert sender.errors == []
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    line = next((row for row in metrics.splitlines() if 'reason="store_unavailable"' in row), None)
    assert line is not None, metrics
    dropped = int(float(line.rsplit(" ", 1)[1]))
    assert sidecar.stop() == 0
    store = RedisStore(throwaway_redis.url)
    try:
        stored = stored_rows(store)
    finally:
        store.close()
    assert stored + dropped == sender.acked, (stored, dropped, sender.acked)
    assert dropped >= dropped_while_down
    print(
        f"\npast the bound (2 buckets of 1 s, 5 s outage): acked {sender.acked},"
        f" stored {stored}, dropped and counted {dropped}"
    )


def test_windows_bound_drops_the_oldest_buckets_exactly_and_flushes_the_rest(
    throwaway_redis: RedisServer,
) -> None:
    """The bound itself, in process: 5 buckets held while Redis is down, limit 3:
    the two oldest go, counted row for row; the rest reach Redis when it is back."""
    from sidecar.settings import Settings
    from sidecar.windows import STORE_UNAVAILABLE, Windows

    store = RedisStore(throwaway_redis.url, connect_timeout=1.0, socket_timeout=2.0)
    now = 10_000.0
    windows = Windows(
        Settings(instance="a", bucket_seconds=10, max_buffered_buckets=3),
        store,
        clock=lambda: now,
    )
    try:
        windows.ingest(batch(7, start=now - 100))
        assert windows.flush() == 1  # bucket 9900 reaches the store, then Redis dies
        throwaway_redis.kill()
        windows.ingest(batch(5, start=now - 100))  # more rows of the flushed bucket
        for k, rows in enumerate((11, 13, 17, 19)):
            windows.ingest(batch(rows, start=now - 90 + 10 * k))
        with pytest.raises(StoreUnavailable, match="cannot reach Redis"):
            windows.flush()  # fails, and keeps what it took
        stats = windows.stats()
        # 5 buckets, limit 3: 9900 (its 5 unflushed rows) and 9910 (11 rows) dropped.
        assert stats["buckets_in_memory"] == 3
        assert stats["buckets_dropped_unflushed"] == 2
        assert stats["records_dropped_unflushed"] == 5 + 11
        assert windows.store_drops() == {(MODEL, "test"): 16}
        assert windows.dropped_counts()[(MODEL, "test", STORE_UNAVAILABLE)] == 16
        throwaway_redis.restart()
        assert windows.flush() == 3
        assert stored_rows(store) == 7 + 13 + 17 + 19
        # A late row for a dropped bucket goes to a late writer, never over the old partial.
        windows.ingest(batch(2, start=now - 100))
        windows.flush()
        assert stored_rows(store) == 7 + 13 + 17 + 19 + 2
    finally:
        store.close()


def test_sidecar_health_follows_the_store_in_process(throwaway_redis: RedisServer) -> None:
    """Sidecar in process: baselined.store and /healthz turn degraded when Redis
    dies and back when it returns; the overall service stays SERVING throughout."""
    import asyncio

    import aiohttp
    from grpc_health.v1 import health_pb2_grpc

    from sidecar.server import Sidecar
    from sidecar.settings import Settings

    settings = Settings.resolve(
        {
            "listen": "127.0.0.1:0",
            "http_listen": "127.0.0.1:0",
            "store": throwaway_redis.url,
            "flush_interval": 0.1,
            "store_retry_max": 0.3,
            "instance": "in-process",
        },
        env={},
    )

    async def scenario() -> list[tuple[int, int, str]]:
        sidecar = Sidecar(settings)
        await sidecar.start()
        seen: list[tuple[int, int, str]] = []
        try:
            assert sidecar.http is not None
            url = f"http://{sidecar.http.address}/healthz"
            async with (
                grpc.aio.insecure_channel(sidecar.address) as channel,
                aiohttp.ClientSession() as http,
            ):
                health = health_pb2_grpc.HealthStub(channel)

                async def observe() -> tuple[int, int, str]:
                    store = await health.Check(
                        health_pb2.HealthCheckRequest(service=STORE_HEALTH_SERVICE)
                    )
                    overall = await health.Check(health_pb2.HealthCheckRequest())
                    async with http.get(url) as reply:
                        assert reply.status == 200
                        body = await reply.text()
                    return int(store.status), int(overall.status), body

                async def until(status: int) -> tuple[int, int, str]:
                    for _ in range(200):
                        state = await observe()
                        if state[0] == status:
                            return state
                        await asyncio.sleep(0.05)
                    raise AssertionError(f"baselined.store never became {status}: {state}")

                seen.append(await observe())
                await asyncio.to_thread(throwaway_redis.kill)
                seen.append(await until(NOT_SERVING))
                await asyncio.to_thread(throwaway_redis.restart)
                seen.append(await until(SERVING))
        finally:
            await sidecar.stop(1.0)
        return seen

    healthy, degraded, recovered = asyncio.run(scenario())
    assert healthy == (SERVING, SERVING, "ok")
    assert degraded[:2] == (NOT_SERVING, SERVING)
    assert degraded[2].startswith(f"degraded: store {throwaway_redis.url} unreachable for")
    assert "cannot reach Redis" in degraded[2] and "0 records dropped unflushed" in degraded[2]
    assert recovered == (SERVING, SERVING, "ok")
