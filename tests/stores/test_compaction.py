"""Window compaction on both stores: minute buckets merged into hourly and daily
partials keep every count, quantiles within digest error, and give way to a
concurrent write (``sidecar.compaction``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb

from sidecar.compaction import COMPACTED, Compactable, Compactor, merge_partials
from sidecar.records import ALL_TRAFFIC, Kind, Partial, SeriesId
from sidecar.series import CategoricalState, NumericState, merge_encoded
from sidecar.settings import Settings
from sidecar.stores import RedisStore, SQLiteStore
from sidecar.windows import Windows

HOUR, DAY = 3600, 86400
NOW = float((int(time.time()) // DAY) * DAY + 13 * HOUR + 1234)  # 13:20 UTC today
TTL = 8 * DAY
X = SeriesId("v1", ALL_TRAFFIC, Kind.FEATURE, "x").encode()
C = SeriesId("v1", ALL_TRAFFIC, Kind.FEATURE, "c").encode()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteStore | RedisStore]:
    if request.param == "sqlite":
        made: SQLiteStore | RedisStore = SQLiteStore(str(tmp_path / "s.db"), clock=lambda: NOW)
    else:
        made = RedisStore(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
    yield made
    made.close()


def _minute_partials(
    rng: np.random.Generator, start: float, minutes: int, writers: tuple[str, ...]
) -> tuple[list[Partial], list[float], list[str]]:
    """Partials of ``minutes`` one-minute buckets from ``start``, each writer with
    20-200 lognormal values and a few categorical ones; and all values written."""
    out: list[Partial] = []
    values: list[float] = []
    cats: list[str] = []
    for i in range(minutes):
        bucket = int(start) + 60 * i
        for writer in writers:
            xs = rng.lognormal(size=int(rng.integers(20, 200)))
            num = NumericState()
            num.add(xs)
            labels = [f"v{int(k)}" for k in rng.integers(0, 5, size=10)]
            cat = CategoricalState()
            cat.add(labels)
            values.extend(xs.tolist())
            cats.extend(labels)
            out.append(Partial(bucket, writer, {X: num.encode(), C: cat.encode()}))
    return out, values, cats


def _compactor(store: Compactable, now: float = NOW) -> Compactor:
    return Compactor(store, bucket_seconds=60, compression=1000, clock=lambda: now)


def test_hourly_compaction_keeps_counts_and_quantiles(store: SQLiteStore | RedisStore) -> None:
    rng = np.random.default_rng(7)
    start = NOW - NOW % HOUR - 3 * HOUR  # three full hours before the current one
    partials, values, cats = _minute_partials(rng, start, 3 * 60 + 20, ("a:1", "b:2"))
    store.write_partials("m", "prod", partials, ttl_seconds=TTL)
    before = store.read_partials("m", "prod", int(start), int(NOW) + 60)
    assert len(before) == 2 * 200

    # NOW is 13:20:34: 10-minute ranges that ended by 13:10:34 (19 of them, 10:00 to
    # 13:10), then the hours that ended by 12:50:34 (10:00 and 11:00).
    assert _compactor(store).run() == 19 + 2
    after = store.read_partials("m", "prod", int(start), int(NOW) + 60)
    compacted = [p.bucket - int(start) for p in after if p.writer == COMPACTED]
    assert compacted == [0, HOUR] + [2 * HOUR + 600 * i for i in range(7)]
    assert len(after) == 9 + 2 * 10  # and per writer the minute buckets from 13:10 on

    merged = merge_encoded(p.series[X] for p in after)
    assert isinstance(merged, NumericState)
    assert merged.count == len(values)
    exact = np.quantile(values, [0.1, 0.5, 0.9, 0.99])
    got = merged.quantiles([0.1, 0.5, 0.9, 0.99])
    assert np.allclose(got, exact, rtol=0.02)
    table = merge_encoded(p.series[C] for p in after)
    assert isinstance(table, CategoricalState)
    assert table.count == len(cats)
    # Each compacted partial is no larger than a digest, however many values it holds.
    assert all(len(p.series[X]) <= 20_000 for p in after if p.writer == COMPACTED)

    assert _compactor(store).run() == 0  # idempotent: nothing left to merge


def test_daily_compaction_merges_hourly_partials(store: SQLiteStore | RedisStore) -> None:
    rng = np.random.default_rng(8)
    day = NOW - NOW % DAY - 2 * DAY  # the day before yesterday: due for the daily tier
    partials: list[Partial] = []
    total = 0
    for h in range(0, 24, 3):  # a few minutes in every third hour
        chunk, values, _ = _minute_partials(rng, day + h * HOUR, 3, ("a:1",))
        partials += chunk
        total += len(values)
    store.write_partials("m", "prod", partials, ttl_seconds=TTL)
    # Eight 10-minute ranges (each already its hour's only partial, at its start), the day.
    assert _compactor(store).run() == 8 + 1
    after = store.read_partials("m", "prod", int(day), int(day + DAY))
    assert [(p.bucket, p.writer) for p in after] == [(int(day), COMPACTED)]
    merged = merge_encoded([after[0].series[X]])
    assert merged.count == total


def test_compaction_gives_way_to_a_concurrent_write(
    store: SQLiteStore | RedisStore, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rng = np.random.default_rng(9)
    start = int(NOW - NOW % HOUR - 2 * HOUR)
    partials, values, _ = _minute_partials(rng, start, 10, ("a:1",))
    store.write_partials("m", "prod", partials, ttl_seconds=TTL)
    late = NumericState()
    late.add(np.array([1.0, 2.0, 3.0]))

    other = (
        RedisStore(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
        if isinstance(store, RedisStore)
        else SQLiteStore(str(tmp_path / "s.db"), clock=lambda: NOW)
    )

    def write_late() -> None:
        other.write_partials(
            "m", "prod", [Partial(start + 60, "c:3#late1", {X: late.encode()})], ttl_seconds=TTL
        )

    writer = threading.Thread(target=write_late)

    def merge_while_written(parts: list[Partial]) -> dict[str, bytes]:
        # Another sidecar flushes a late row into the range while this one merges.
        writer.start()
        if isinstance(store, RedisStore):
            writer.join()  # lands before the swap
        return merge_partials(parts, exact_cap=1000)

    swapped = store.compact_partials(
        "m", "prod", start, start + HOUR, writer=COMPACTED, merge=merge_while_written
    )
    writer.join()  # SQLite: the write waited for the swap's transaction
    other.close()
    after = store.read_partials("m", "prod", start, start + HOUR)
    total = merge_encoded(p.series[X] for p in after).count
    assert total == len(values) + 3  # whatever happened, nothing lost, nothing twice
    if isinstance(store, RedisStore):
        assert not swapped  # WATCH saw the write: the swap was abandoned
        assert len(after) == 11
    else:
        assert swapped  # SQLite's transaction held the write back until the swap
        assert len(after) == 2
    # The next pass merges everything, the late row included.
    assert _compactor(store).run() == 1
    again = store.read_partials("m", "prod", start, start + HOUR)
    assert [(p.bucket, p.writer) for p in again] == [(start, COMPACTED)]
    assert merge_encoded([again[0].series[X]]).count == len(values) + 3


def test_windows_late_rows_after_compaction_are_counted_once(
    store: SQLiteStore | RedisStore,
) -> None:
    """A row for a bucket compacted away goes to a late partial (the bucket left memory):
    the compacted partial is never overwritten or counted twice."""
    clock = [NOW - 3 * HOUR]
    windows = Windows(Settings(instance="a", store=":memory:"), store, clock=lambda: clock[0])
    stamp = clock[0] - 30

    def batch(n: int) -> pb.SampleBatch:
        b = pb.SampleBatch(model="m", version="v1", environment="prod", timestamps=[stamp] * n)
        b.numeric.add(name="x", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0] * n)
        return b

    windows.ingest(batch(5))
    windows.flush()
    clock[0] = NOW  # three hours later: the bucket is old enough to leave memory
    windows.flush()
    assert _compactor(store).run() >= 1
    windows.ingest(batch(2))  # late rows for the compacted bucket
    windows.flush()
    data = windows.read("m", "prod", stamp - HOUR, NOW)
    assert data.series[SeriesId("*", "*", Kind.FEATURE, "x")].count == 7
