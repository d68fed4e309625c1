"""Hostile input over real gRPC: cardinality attacks stay within the configured
bounds and are counted, not stored; oversized messages are refused on both
sides (sidecar: RESOURCE_EXHAUSTED; middleware: a counted drop, stream kept)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb

from middleware import Shadow
from middleware.shipper import Backoff
from sidecar.stores import SQLiteStore
from sidecar.windows import OTHER
from tests.sidecar.test_server import Running, settings_for

MAX_SERIES = 500


@pytest.fixture
def served(tmp_path: object) -> Iterator[tuple[Running, SQLiteStore]]:
    store = SQLiteStore()
    running = Running(settings_for(max_series=MAX_SERIES, max_slice_values=64), store=store)
    yield running, store
    running.stop()


def _stored_series(store: SQLiteStore, now: float) -> set[str]:
    return {
        sid
        for p in store.read_partials("m", "prod", int(now) - 3600, int(now) + 3600)
        for sid in p.series
    }


def test_100k_distinct_signal_names_stay_within_max_series(
    served: tuple[Running, SQLiteStore],
) -> None:
    running, store = served
    now = time.time()
    names = 100_000
    per_batch = 250

    def batches() -> Iterator[pb.SampleBatch]:
        for first in range(0, names, per_batch):
            b = pb.SampleBatch(model="m", version="v1", environment="prod", timestamps=[now])
            for i in range(first, first + per_batch):
                b.numeric.add(name=f"attack_{i}", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0])
            yield b

    reply = running.ingest.Ingest(batches(), timeout=120)
    assert reply.batches_accepted == names // per_batch  # accepted: nothing malformed
    stats = running.sidecar.windows.stats()
    counts = running.sidecar.windows.series_counts()
    assert counts[("m", "prod")] == MAX_SERIES
    assert stats["values_refused"] == names - MAX_SERIES  # one value per refused series
    running.sidecar.windows.flush()
    stored = _stored_series(store, now)
    assert len(stored) == MAX_SERIES


def test_a_million_distinct_slice_values_fold_into_other(
    served: tuple[Running, SQLiteStore],
) -> None:
    running, store = served
    now = time.time()
    rows, batches_n = 62_500, 16  # 1,000,000 distinct values of one slice attribute

    def batches() -> Iterator[pb.SampleBatch]:
        for k in range(batches_n):
            b = pb.SampleBatch(model="m", version="v1", environment="prod")
            b.timestamps.extend([now] * rows)
            b.numeric.add(name="x", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0] * rows)
            b.slices.add(name="user", values=[f"u{k * rows + i}" for i in range(rows)])
            yield b

    reply = running.ingest.Ingest(batches(), timeout=120)
    assert reply.records_accepted == rows * batches_n
    stats = running.sidecar.windows.stats()
    assert stats["slice_values_folded"] == rows * batches_n - 64
    running.sidecar.windows.flush()
    stored = _stored_series(store, now)
    users = {s for s in stored if "\x1fuser=" in s}
    assert len(users) == 64 + 1  # the first 64 values and __other__
    assert any(f"user={OTHER}" in s for s in users)


def test_an_oversized_stream_message_is_resource_exhausted(
    served: tuple[Running, SQLiteStore],
) -> None:
    running, store = served
    now = time.time()
    huge = pb.SampleBatch(model="m", version="v1", environment="prod")
    huge.timestamps.extend([now] * 700_000)  # 5.6 MB: over 4 MiB + 1 MiB of slack
    huge.numeric.add(name="x", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0] * 700_000)
    with pytest.raises(grpc.RpcError) as info:
        running.ingest.Ingest(iter([huge]), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    ok = pb.SampleBatch(model="m", version="v1", environment="prod", timestamps=[now])
    ok.numeric.add(name="x", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0])
    assert running.ingest.Ingest(iter([ok]), timeout=30).records_accepted == 1
    running.sidecar.windows.flush()
    assert len(store.read_partials("m", "prod", int(now) - 3600, int(now) + 3600)) == 1


def test_middleware_drops_an_oversized_message_and_keeps_the_stream(
    served: tuple[Running, SQLiteStore],
) -> None:
    running, _ = served
    sh = Shadow(
        model="m",
        environment="prod",
        target=f"127.0.0.1:{running.sidecar.port}",
        flush_interval=0.05,
        atexit=False,
        backoff=Backoff(initial=0.01, maximum=0.05),
    )
    try:
        blob = "z" * 200_000  # 30 rows of it: 6 MB, over the 4 MiB message limit
        for _ in range(30):
            sh.record_call(latency=0.01, features={"doc": blob})
        sh.flush()
        deadline = time.monotonic() + 10
        while sh.stats().records_dropped_too_large < 30 and time.monotonic() < deadline:
            time.sleep(0.02)
        for i in range(100):
            sh.record_call(latency=0.01, features={"x": float(i)})
    finally:
        sh.close(timeout=10)
    stats = sh.stats()
    assert stats.records_dropped_too_large == 30
    assert stats.records_dropped["message_too_large"] == 30
    assert stats.records_accepted == 100
    assert stats.records_dropped["sidecar_unavailable"] == 0
    assert running.sidecar.windows.stats()["records_accepted"] == 100
