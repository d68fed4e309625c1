"""Live windows: accumulation into series, buckets and slices; slice folding;
flushing cumulative state; reading merged partials of several writers."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest
import redis
from baselined.v1 import baselined_pb2 as pb

from sidecar.errors import InvalidInput, StoreUnavailable
from sidecar.records import Kind, SeriesId
from sidecar.series import CategoricalState, NumericState, decode_state
from sidecar.settings import Settings
from sidecar.stores import RedisStore, SQLiteStore
from sidecar.stores.base import Store
from sidecar.windows import OTHER, Windows

B = 1_700_000_040  # a bucket start (multiple of 60)
SETTINGS = Settings(
    instance="test", bucket_seconds=60, retention_seconds=3600, max_clock_skew=120.0
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_batch(
    timestamps: Sequence[float],
    numeric: Mapping[str, Sequence[float]] = {},
    *,
    categorical: Mapping[str, Sequence[str]] = {},
    slices: Mapping[str, Sequence[str]] = {},
    batch_slices: Mapping[str, str] = {},
    model: str = "fraud",
    environment: str = "prod",
    version: str = "v1",
    fingerprint: pb.Fingerprint | None = None,
) -> pb.SampleBatch:
    batch = pb.SampleBatch(
        model=model, version=version, environment=environment, timestamps=timestamps
    )
    for name, values in numeric.items():
        batch.numeric.add(name=name, kind=pb.SIGNAL_KIND_FEATURE, values=values)
    for name, cvalues in categorical.items():
        batch.categorical.add(name=name, kind=pb.SIGNAL_KIND_OUTPUT, values=cvalues)
    for name, svalues in slices.items():
        batch.slices.add(name=name, values=svalues)
    batch.batch_slices.update(batch_slices)
    if fingerprint is not None:
        batch.fingerprint.CopyFrom(fingerprint)
    return batch


def feature(name: str, slice_: str = "*", version: str = "v1") -> SeriesId:
    return SeriesId(version, slice_, Kind.FEATURE, name)


def stored(store: Store, start: int, end: int) -> dict[tuple[int, SeriesId], tuple[object, ...]]:
    """What the store holds, as (bucket, series) -> comparable counts."""
    out: dict[tuple[int, SeriesId], tuple[object, ...]] = {}
    for partial in store.read_partials("fraud", "prod", start, end):
        for text, blob in partial.series.items():
            state = decode_state(blob)
            key = (partial.bucket, SeriesId.parse(text))
            assert key not in out, "one writer, so one partial per bucket"
            if isinstance(state, NumericState):
                out[key] = (state.count, state.missing, state.out_of_range, state.summary().mean)
            else:
                out[key] = (state.missing, tuple(sorted(state.counts.items())))
    return out


def in_slice(sid: SeriesId, slice_: str) -> SeriesId:
    return SeriesId(sid.version, slice_, sid.kind, sid.signal)


def numeric(state: NumericState | CategoricalState) -> NumericState:
    assert isinstance(state, NumericState)
    return state


@pytest.fixture
def store() -> Iterator[SQLiteStore]:
    s = SQLiteStore()
    yield s
    s.close()


def test_rows_feed_all_traffic_and_each_slice_in_their_buckets(store: SQLiteStore) -> None:
    windows = Windows(SETTINGS, store, clock=Clock(B + 100))
    batch = make_batch(
        [B - 30, B + 10, B + 20, B + 70],
        {"x": [1.0, math.nan, math.inf, 4.0]},
        categorical={"label": ["a", "b", "a", ""]},
        slices={"region": ["eu", "us", "", "eu"]},
        batch_slices={"node": "gpu-7"},
    )
    assert windows.ingest(batch) == 4
    assert windows.flush() == 18  # (3 buckets x * and node) + 3 region series, 2 signals each

    label = SeriesId("v1", "*", Kind.OUTPUT, "label")
    expected: dict[tuple[int, SeriesId], tuple[object, ...]] = {}
    for slice_ in ("*", "node=gpu-7"):
        expected[(B - 60, feature("x", slice_))] = (1, 0, 0, 1.0)
        expected[(B, feature("x", slice_))] = (0, 1, 1, math.nan)
        expected[(B + 60, feature("x", slice_))] = (1, 0, 0, 4.0)
        expected[(B - 60, in_slice(label, slice_))] = (0, (("a", 1),))
        expected[(B, in_slice(label, slice_))] = (0, (("a", 1), ("b", 1)))
        expected[(B + 60, in_slice(label, slice_))] = (1, ())
    expected[(B - 60, feature("x", "region=eu"))] = (1, 0, 0, 1.0)
    expected[(B - 60, in_slice(label, "region=eu"))] = (0, (("a", 1),))
    expected[(B, feature("x", "region=us"))] = (0, 1, 0, math.nan)
    expected[(B, in_slice(label, "region=us"))] = (0, (("b", 1),))
    expected[(B + 60, feature("x", "region=eu"))] = (1, 0, 0, 4.0)
    expected[(B + 60, in_slice(label, "region=eu"))] = (1, ())
    actual = stored(store, B - 120, B + 120)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key][:3] == value[:3], key
        if len(value) == 4 and not math.isnan(value[3]):  # type: ignore[arg-type]
            assert actual[key][3] == value[3], key

    # read() takes the buckets that start in [floor(start), end)
    one = windows.read("fraud", "prod", B - 0.5, B + 60)
    assert {b for b, _ in actual if b >= B - 0.5 and b < B + 60} == {B}
    assert numeric(one.series[feature("x", "*", "*")]).missing == 1
    two = windows.read("fraud", "prod", B, B + 60.5)
    assert numeric(two.series[feature("x", "*", "*")]).count == 1
    assert windows.writer in store.read_partials("fraud", "prod", B, B + 1)[0].writer


def test_slice_values_past_the_bound_fold_into_other(store: SQLiteStore) -> None:
    windows = Windows(SETTINGS.replace(max_slice_values=2), store, clock=Clock(B + 30))
    ts = [B + 1.0] * 5
    windows.ingest(
        make_batch(ts, {"x": [1, 2, 3, 4, 5]}, slices={"region": ["a", "b", "c", "d", "c"]})
    )
    assert windows.stats()["slice_values_folded"] == 3
    windows.ingest(make_batch(ts[:3], {"x": [6, 7, 8]}, slices={"region": ["e", "a", ""]}))
    assert windows.stats()["slice_values_folded"] == 4
    # The bound is per (model, environment): another environment has its own.
    windows.ingest(
        make_batch(ts[:2], {"x": [1, 2]}, slices={"region": ["c", "d"]}, environment="staging")
    )
    assert windows.stats()["slice_values_folded"] == 4
    windows.flush()

    data = windows.read("fraud", "prod", B, B + 60)
    counts = {sid.slice: numeric(state).count for sid, state in data.series.items()}
    assert counts == {"*": 8, "region=a": 2, "region=b": 1, f"region={OTHER}": 4}
    other = numeric(data.series[feature("x", f"region={OTHER}", "*")])
    assert other.summary().mean == pytest.approx((3 + 4 + 5 + 6) / 4)
    staging = windows.read("fraud", "staging", B, B + 60)
    assert {sid.slice for sid in staging.series} == {"*", "region=c", "region=d"}


def test_flush_writes_changed_series_as_cumulative_state(store: SQLiteStore) -> None:
    windows = Windows(SETTINGS, store, clock=Clock(B + 30))
    windows.ingest(make_batch([B + 1, B + 2], {"x": [1.0, 2.0], "y": [5.0, 5.0]}))
    assert windows.flush() == 2
    snapshot = stored(store, B, B + 60)
    assert windows.flush() == 0  # nothing changed
    assert stored(store, B, B + 60) == snapshot

    windows.ingest(make_batch([B + 3], {"y": [7.0]}))
    assert windows.flush() == 1  # only y changed
    windows.ingest(make_batch([B + 4, B + 5], {"x": [3.0, 4.0]}))
    assert windows.flush() == 1
    after = stored(store, B, B + 60)
    # The store holds the whole bucket so far, not the last batch.
    assert after[(B, feature("x"))] == (4, 0, 0, 2.5)
    assert after[(B, feature("y"))][:1] == (3,)
    assert windows.stats()["series_dirty"] == 0


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(SETTINGS, id="exact-values"),
        # Digests from the start. At the default compression (1000) fastdigest's p99
        # of 50,000 lognormal values lands 0.02-0.2 % from numpy depending on how
        # values were chunked and merged; 2000 centroids keep it inside 0.1 %.
        pytest.param(SETTINGS.replace(exact_limit=0, compression=2000), id="t-digest"),
    ],
)
def test_two_writers_merge_counts_and_quantiles(store: SQLiteStore, settings: Settings) -> None:
    rng = np.random.default_rng(20240611)
    n = 50_000
    values = rng.lognormal(0.0, 0.75, n)
    timestamps = B + np.sort(rng.uniform(0, 300, n))  # five buckets
    regions = np.array(["eu", "us"])[rng.integers(0, 2, n)]
    clock = Clock(B + 301)
    writers = [Windows(settings, store, clock=clock), Windows(settings, store, clock=clock)]
    assert writers[0].writer != writers[1].writer
    for i, start in enumerate(range(0, n, 500)):
        rows = slice(start, start + 500)
        batch = make_batch(
            timestamps[rows].tolist(),
            {"x": values[rows].tolist()},
            slices={"region": regions[rows].tolist()},
        )
        writers[i % 2].ingest(batch)
    for w in writers:
        w.flush()

    data = writers[0].read("fraud", "prod", B, B + 300)
    assert data.writers == tuple(sorted(w.writer for w in writers))
    assert data.versions == ("v1",)
    total = numeric(data.series[feature("x", "*", "*")])
    assert total.count == n
    for q, got in total.summary([0.5, 0.9, 0.99, 0.999]).quantiles:
        want = float(np.quantile(values, q))
        assert abs(got - want) / want < (1e-3 if q < 0.999 else 1e-2), (q, got, want)
    for region in ("eu", "us"):
        part = numeric(data.series[feature("x", f"region={region}", "*")])
        assert part.count == int(np.count_nonzero(regions == region))
    # A narrower read sees only its buckets.
    first = writers[1].read("fraud", "prod", B, B + 60)
    assert numeric(first.series[feature("x", "*", "*")]).count == int(
        np.count_nonzero(timestamps < B + 60)
    )


def test_versions_merge_under_star_unless_one_is_asked_for(store: SQLiteStore) -> None:
    windows = Windows(SETTINGS, store, clock=Clock(B + 30))
    windows.ingest(make_batch([B + 1, B + 2], {"x": [1.0, 2.0]}, version="v1"))
    windows.ingest(make_batch([B + 3], {"x": [3.0]}, version="v2"))
    windows.ingest(make_batch([B + 4], {"x": [4.0]}, version="v3"))
    windows.flush()

    everything = windows.read("fraud", "prod", B, B + 60)
    assert everything.versions == ("v1", "v2", "v3")
    assert {sid: numeric(s).count for sid, s in everything.series.items()} == {
        feature("x", "*", "*"): 4
    }
    one = windows.read("fraud", "prod", B, B + 60, ["v2"])
    assert one.versions == ("v2",)
    assert {sid: numeric(s).count for sid, s in one.series.items()} == {feature("x", "*", "v2"): 1}
    two = windows.read("fraud", "prod", B, B + 60, ["v1", "v3"])
    assert two.versions == ("v1", "v3")
    assert {sid: numeric(s).count for sid, s in two.series.items()} == {feature("x", "*", "*"): 3}
    assert windows.read("fraud", "prod", B, B + 60, ["v9"]).series == {}


def test_failed_flush_to_a_closed_store_keeps_everything() -> None:
    store = SQLiteStore()
    windows = Windows(SETTINGS, store, clock=Clock(B + 30))
    windows.ingest(make_batch([B + 1], {"x": [1.0], "y": [2.0]}))
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        windows.flush()
    stats = windows.stats()
    assert (stats["series_dirty"], stats["flush_failures"]) == (2, 1)
    with pytest.raises(StoreUnavailable):
        windows.flush()
    assert windows.stats()["series_dirty"] == 2


@pytest.mark.redis
def test_flush_retries_after_redis_refused_writes(redis_url: str, redis_prefix: str) -> None:
    """Redis stops accepting this test's keys (ACL), then accepts them again."""
    admin = redis.Redis.from_url(redis_url)
    user, password = f"{redis_prefix}-writer", "secret-for-test"
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"{redis_prefix}:*"],
        commands=["+@all"],
        reset=True,
    )
    client = redis.Redis.from_url(redis_url, username=user, password=password)
    store = RedisStore("", prefix=redis_prefix, client=client)
    try:
        windows = Windows(SETTINGS, store, clock=Clock(B + 30))
        windows.ingest(make_batch([B + 1, B + 2], {"x": [1.0, 2.0]}))
        admin.acl_setuser(
            user, enabled=True, reset_keys=True
        )  # every key of the store is now off limits
        with pytest.raises(StoreUnavailable, match="no permissions"):
            windows.flush()
        windows.ingest(make_batch([B + 3], {"x": [3.0]}))  # ingest goes on meanwhile
        admin.acl_setuser(user, enabled=True, keys=[f"{redis_prefix}:*"])
        assert windows.flush() == 1
        x = numeric(windows.read("fraud", "prod", B, B + 60).series[feature("x", "*", "*")])
        assert (x.count, x.summary().mean) == (3, 2.0)
    finally:
        store.close()
        client.close()
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.redis
def test_two_writers_on_redis(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    try:
        clock = Clock(B + 130)
        a, b = Windows(SETTINGS, store, clock=clock), Windows(SETTINGS, store, clock=clock)
        a.ingest(make_batch([B + 1, B + 61], {"x": [1.0, 2.0]}, slices={"region": ["eu", "us"]}))
        b.ingest(
            make_batch(
                [B + 2, B + 62, B + 63], {"x": [3.0, 4.0, 5.0]}, slices={"region": ["eu", "", "us"]}
            )
        )
        assert (a.flush(), b.flush()) == (4, 4)
        data = b.read("fraud", "prod", B, B + 120)
        assert data.writers == tuple(sorted((a.writer, b.writer)))
        counts = {sid.slice: numeric(s).count for sid, s in data.series.items()}
        assert counts == {"*": 5, "region=eu": 2, "region=us": 2}
    finally:
        store.close()


def test_clock_drives_buckets_retention_and_memory(store: SQLiteStore) -> None:
    clock = Clock(B + 30)
    windows = Windows(SETTINGS, store, clock=clock)
    for minute in range(6):
        clock.now = B + 60 * minute + 30
        windows.ingest(make_batch([clock.now - 1, clock.now], {"x": [1.0, 2.0]}))
        windows.flush()
    # Memory keeps the newest bucket and two behind it; the store keeps all six.
    assert windows.stats()["buckets_in_memory"] == 3
    assert (
        numeric(windows.read("fraud", "prod", B, B + 360).series[feature("x", "*", "*")]).count
        == 12
    )

    # A late row for a bucket that left memory adds to what was stored, never replaces it.
    windows.ingest(make_batch([B + 5], {"x": [10.0]}))
    windows.flush()
    first = windows.read("fraud", "prod", B, B + 60)
    x = numeric(first.series[feature("x", "*", "*")])
    assert (x.count, x.summary().max) == (3, 10.0)
    assert first.writers == (windows.writer,)
    assert windows.stats()["buckets_in_memory"] == 3

    # Past retention, rows are refused.
    clock.now = B + SETTINGS.retention_seconds + 10
    with pytest.raises(InvalidInput, match="older than retention_seconds=3600"):
        windows.ingest(make_batch([B + 5], {"x": [1.0]}))


def test_latest_fingerprint_per_model_and_environment(store: SQLiteStore) -> None:
    windows = Windows(SETTINGS, store, clock=Clock(B + 30))
    assert windows.fingerprint("fraud", "prod") is None
    one = pb.Fingerprint(hash="h1", fields={"lib.numpy": "1.26.4"})
    two = pb.Fingerprint(hash="h2", fields={"lib.numpy": "2.1.0"})
    windows.ingest(make_batch([B], {"x": [1.0]}, fingerprint=one))
    windows.ingest(make_batch([B], {"x": [1.0]}, fingerprint=two, environment="staging"))
    assert windows.fingerprint("fraud", "prod") == one
    windows.ingest(make_batch([B], {"x": [1.0]}, fingerprint=two))
    windows.ingest(make_batch([B], {"x": [1.0]}))  # a batch without one changes nothing
    latest = windows.fingerprint("fraud", "prod")
    assert latest == two
    assert latest is not None
    latest.fields["lib.numpy"] = "changed by the caller"
    assert windows.fingerprint("fraud", "prod") == two


def test_changing_signal_lists_and_refused_series_keep_every_count(store: SQLiteStore) -> None:
    # Rows wait in per-(slice, signal list) blocks before they reach their states: a
    # series in several lists, a refused one (max_series) and one admitted once room
    # frees must all count exactly what an add per batch would.
    clock = Clock(B + 90)
    windows = Windows(SETTINGS.replace(max_series=2), store, clock=clock)
    rng = np.random.default_rng(5)
    a1, b1, a2, c2, b3, a3 = (rng.normal(size=n) for n in (3, 3, 4, 4, 5, 5))
    windows.ingest(make_batch([B + 1.0] * 3, {"a": a1, "b": b1}))
    windows.ingest(make_batch([B + 61.0] * 4, {"a": a2, "c": c2}))  # c: over max_series
    windows.ingest(make_batch([B + 2.0] * 5, {"b": b3, "a": a3}))  # the same two, reordered
    assert windows.stats()["values_refused"] == 4
    windows.flush()
    got = stored(store, B, B + 120)
    assert set(got) == {(B, feature("a")), (B, feature("b")), (B + 60, feature("a"))}
    assert got[(B, feature("a"))][0] == 8
    assert got[(B, feature("a"))][3] == pytest.approx(np.concatenate([a1, a3]).mean())
    assert got[(B, feature("b"))][3] == pytest.approx(np.concatenate([b1, b3]).mean())

    # Bucket B leaves memory: only "a" stays in memory, so "c" now fits.
    clock.now = B + 210
    windows.ingest(make_batch([B + 181.0], {"a": [1.0]}))
    windows.flush()
    assert windows.stats()["buckets_in_memory"] == 2
    c4 = rng.normal(size=6)
    windows.ingest(make_batch([B + 62.0] * 6, {"a": np.zeros(6), "c": c4}))
    windows.flush()
    assert windows.stats()["values_refused"] == 4
    got = stored(store, B + 60, B + 120)
    assert got[(B + 60, feature("c"))][0] == 6
    assert got[(B + 60, feature("c"))][3] == pytest.approx(c4.mean())
    assert got[(B + 60, feature("a"))][0] == 10
