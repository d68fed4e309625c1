"""Durability: what a baseline RPC acknowledged survives a crash of the sidecar
and of Redis (AOF, ``appendfsync everysec``), byte for byte, with its audit chain.

The sidecar and Redis are both killed with SIGKILL right after the last RPC
answered, so nothing written after the answer can be what the test finds."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

from sidecar.audit import verify_chain
from sidecar.records import Status
from sidecar.stores.redis import RedisStore
from tests.faults.conftest import ENVIRONMENT, MODEL, RedisServer, batch
from tests.integration.conftest import SidecarProcess, free_port

ROWS = 3000


def _snapshot(url: str) -> dict[str, tuple[str, int, int, dict[str, bytes]]]:
    """Every baseline of MODEL: status, series and record counts, series bytes."""
    store = RedisStore(url)
    try:
        found = {}
        for record in store.list_baselines(MODEL, ENVIRONMENT):
            series = store.get_baseline_series(record.id)
            found[record.id] = (
                record.status.value,
                record.series_count,
                record.record_count,
                series,
            )
        result = verify_chain(store, MODEL)
        assert result.ok, result
        assert result.checked >= 3  # two freezes and a promote
        return found
    finally:
        store.close()


@pytest.mark.slow
def test_acknowledged_baselines_survive_sidecar_and_redis_crashes(
    throwaway_redis: RedisServer, sidecar_factory: type[SidecarProcess], tmp_path: Path
) -> None:
    sidecar = sidecar_factory(
        store=throwaway_redis.url, port=free_port(), log=tmp_path / "sidecar.log"
    )
    sidecar.start()
    now = time.time()
    with grpc.insecure_channel(sidecar.target) as channel:
        ingest = pb_grpc.IngestStub(channel)
        for i in range(3):
            ingest.IngestBatch(batch(ROWS // 3, start=now - 30 + i, value=float(i)), timeout=10)
        baselines = pb_grpc.BaselinesStub(channel)
        first = baselines.FreezeBaseline(
            pb.FreezeBaselineRequest(
                model=MODEL, environment=ENVIRONMENT, name="golden", reason="durability"
            ),
            timeout=10,
        )
        second = baselines.FreezeBaseline(
            pb.FreezeBaselineRequest(
                model=MODEL, environment=ENVIRONMENT, name="second", reason="durability"
            ),
            timeout=10,
        )
        baselines.PromoteBaseline(
            pb.PromoteBaselineRequest(id=first.id, reason="durability"), timeout=10
        )
    # The answers arrived: crash both processes before anything else can happen.
    assert sidecar.process is not None
    sidecar.process.send_signal(signal.SIGKILL)
    throwaway_redis.kill(signal.SIGKILL)
    sidecar.reap()

    throwaway_redis.restart()
    after_crash = _snapshot(throwaway_redis.url)
    assert set(after_crash) == {first.id, second.id}
    assert after_crash[first.id][0] == Status.ACTIVE.value
    assert after_crash[second.id][0] == Status.CANDIDATE.value
    for status, series_count, record_count, series in after_crash.values():
        assert len(series) == series_count > 0, status  # never a half-written baseline
        assert record_count == ROWS
    store = RedisStore(throwaway_redis.url)
    try:
        assert store.get_pointer(MODEL, ENVIRONMENT).active == first.id
    finally:
        store.close()

    throwaway_redis.shutdown()  # orderly stop, then a second crash: same bytes each time
    throwaway_redis.restart()
    assert _snapshot(throwaway_redis.url) == after_crash
    throwaway_redis.kill(signal.SIGKILL)
    throwaway_redis.restart()
    assert _snapshot(throwaway_redis.url) == after_crash
    print(
        f"\ndurability: {len(after_crash)} baselines, "
        f"{sum(len(s[3]) for s in after_crash.values())} series,"
        f" {throwaway_redis.restarts} Redis restarts (2 SIGKILL, 1 SHUTDOWN): all bytes equal"
    )
