"""Fuzzing the batch path: ``decode_batch``, ``Windows.ingest`` on a real SQLite
store, and the Ingest service over real gRPC.

Properties: the only errors are the documented ones (``InvalidInput`` /
``TooLarge``; over gRPC ``INVALID_ARGUMENT`` / ``RESOURCE_EXHAUSTED``); a refused
input changes nothing (store contents and window counters compared before and
after); an accepted batch decodes to consistent columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import InvalidInput, TooLarge
from sidecar.ingest import decode_batch
from sidecar.settings import Settings
from sidecar.stores import SQLiteStore
from sidecar.windows import Windows
from tests.fuzz.conftest import budget, tried
from tests.sidecar.test_server import Running, settings_for

NOW = 1_700_000_000.0
SETTINGS = Settings(
    instance="fuzz", max_batch_rows=64, max_signals=8, max_slice_attributes=4, max_series=200
)
KINDS = [pb.SIGNAL_KIND_FEATURE, pb.SIGNAL_KIND_OUTPUT, pb.SIGNAL_KIND_LATENCY]

names = st.one_of(
    st.sampled_from(["x", "y", "score", "region", "*", "a=b", "", "n" * 257, "bad\x00", "t\x1fu"]),
    st.text(max_size=12),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf]),
)
stamps = st.one_of(
    st.floats(min_value=NOW - 3600, max_value=NOW + 10),
    st.sampled_from([NOW, NOW - 1, math.nan, math.inf, -math.inf, 0.0, NOW + 1e6, NOW - 1e9]),
)


def _mix(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``good`` (5 in 6), sometimes ``bad``."""
    return st.integers(0, 5).flatmap(lambda i: bad if i == 0 else good)


def _pick(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """Mostly ``good`` (5 in 6), so that most batches get past the first checks."""
    return draw(bad) if draw(st.integers(0, 5)) == 0 else draw(good)


good_names = st.sampled_from(["x", "y", "score", "region", "n1", "v2"])
good_stamps = st.floats(min_value=NOW - 3600, max_value=NOW + 10)


@st.composite
def batches(draw: st.DrawFn) -> pb.SampleBatch:
    """Batches near the valid ones: mostly consistent, with every field free to be wrong
    (names, kinds, lengths, timestamps, values, sizes over the bounds)."""
    rows = _pick(draw, st.integers(1, 6), st.sampled_from([0, 64, 65]))
    b = pb.SampleBatch(
        model=_pick(draw, st.just("m"), names),
        version=_pick(draw, st.sampled_from(["v1", "v2", ""]), names),
        environment=_pick(draw, st.just("prod"), names),
        instance=_pick(draw, st.just("pod:1"), names),
    )
    b.timestamps.extend(
        _pick(
            draw,
            st.lists(good_stamps, min_size=rows, max_size=rows),
            st.lists(stamps, min_size=rows, max_size=rows),
        )
    )
    wrong = draw(st.integers(0, 5)) == 0  # column lengths that may not match
    kinds = st.sampled_from(KINDS)
    for _ in range(_pick(draw, st.integers(0, 3), st.integers(4, 10))):
        n = draw(st.integers(0, 7)) if wrong else rows
        b.numeric.add(
            name=_pick(draw, good_names, names),
            kind=_pick(draw, kinds, st.integers(-3, 9)),
            values=draw(st.lists(numbers, min_size=n, max_size=n)),
        )
    for _ in range(draw(st.integers(0, 2))):
        n = draw(st.integers(0, 7)) if wrong else rows
        b.categorical.add(
            name=_pick(draw, st.sampled_from(["c", "label"]), names),
            kind=_pick(draw, kinds, st.integers(-3, 9)),
            values=draw(st.lists(_mix(good_names, names), min_size=n, max_size=n)),
        )
    for _ in range(draw(st.integers(0, 2))):
        n = draw(st.integers(0, 7)) if wrong else rows
        b.slices.add(
            name=_pick(draw, st.sampled_from(["region", "tier"]), names),
            values=draw(st.lists(_mix(good_names, names), min_size=n, max_size=n)),
        )
    for key, value in draw(st.dictionaries(_mix(good_names, names), names, max_size=2)).items():
        b.batch_slices[key] = value
    reasons = _mix(st.sampled_from(["queue_full", "too_large"]), names)
    for key, value in draw(st.dictionaries(reasons, st.integers(0, 2**64 - 1), max_size=3)).items():
        b.dropped[key] = value
    if draw(st.booleans()):
        n = draw(st.integers(0, 7)) if wrong else rows
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        b.traceparents.extend(draw(st.lists(_mix(st.just(tp), names), min_size=n, max_size=n)))
    if draw(st.booleans()):
        b.fingerprint.hash = draw(names)
        for key, value in draw(st.dictionaries(names, names, max_size=2)).items():
            b.fingerprint.fields[key] = value
    return b


def _valid() -> bytes:
    b = pb.SampleBatch(model="m", version="v1", environment="prod", instance="pod:1")
    b.timestamps.extend([NOW - 5, NOW - 4, NOW - 3])
    b.numeric.add(name="x", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0, 2.0, 3.0])
    b.categorical.add(name="c", kind=pb.SIGNAL_KIND_OUTPUT, values=["a", "b", "a"])
    b.slices.add(name="region", values=["eu", "us", "eu"])
    b.batch_slices["node"] = "n1"
    b.dropped["queue_full"] = 3
    return b.SerializeToString()


VALID = _valid()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid encoded batch with bytes flipped, cut, inserted or spliced."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += VALID[: draw(st.integers(0, len(VALID)))]
    return bytes(data)


def _parse(raw: bytes) -> pb.SampleBatch | None:
    try:
        return pb.SampleBatch.FromString(raw)
    except DecodeError:
        return None


def _decode_ok_or_documented(batch: pb.SampleBatch) -> bool:
    try:
        data = decode_batch(batch, SETTINGS, now=NOW)
    except (InvalidInput, TooLarge) as err:
        tried(f"  decode_batch: {type(err).__name__}")
        assert str(err)  # the message names the problem
        return False
    tried("  decode_batch: accepted")
    assert data.rows == len(batch.timestamps) > 0
    assert data.numeric.shape == (len(batch.numeric), data.rows)
    assert all(len(values) == data.rows for _, _, values in data.categorical)
    return True


@budget(300)
@given(batches())
def test_decoder_on_structured_batches(batch: pb.SampleBatch) -> None:
    tried("decode_batch: structured batches")
    _decode_ok_or_documented(batch)


@budget(400)
@given(st.one_of(mutated(), st.binary(max_size=200)))
def test_decoder_on_mutated_and_random_bytes(raw: bytes) -> None:
    tried("decode_batch: mutated / random bytes")
    batch = _parse(raw)
    if batch is not None:
        _decode_ok_or_documented(batch)


def test_huge_counts_are_too_large_before_any_work() -> None:
    tried("decode_batch: huge counts")
    b = pb.SampleBatch(model="m", version="v1", environment="prod")
    b.timestamps.extend([NOW] * 65)  # max_batch_rows=64
    with pytest.raises(TooLarge, match="max_batch_rows"):
        decode_batch(b, SETTINGS, now=NOW)
    b = pb.SampleBatch(model="m", version="v1", environment="prod", timestamps=[NOW])
    for i in range(9):  # max_signals=8
        b.numeric.add(name=f"s{i}", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0])
    with pytest.raises(TooLarge, match="max_signals"):
        decode_batch(b, SETTINGS, now=NOW)


# -- Windows on a real SQLite store ------------------------------------------------


def _store_contents(store: SQLiteStore) -> dict[tuple[str, str], list[Any]]:
    return {
        (m, e): [(p.bucket, p.writer, dict(p.series)) for p in store.read_partials(m, e, 0, 2**62)]
        for m, e in store.list_windows()
    }


def _counters(windows: Windows) -> dict[str, int]:
    stats = windows.stats()
    for key in ("batches_rejected", "records_rejected", "flushes"):
        stats.pop(key)
    return stats


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Windows, SQLiteStore]]:
    path = tmp_path_factory.mktemp("fuzz") / "windows.db"
    store = SQLiteStore(str(path), clock=lambda: NOW)
    w = Windows(SETTINGS, store, clock=lambda: NOW)
    w.ingest(pb.SampleBatch.FromString(VALID))
    w.flush()
    yield w, store
    store.close()


@budget(250)
@given(st.one_of(batches(), mutated().map(_parse).filter(lambda b: b is not None)))
def test_a_refused_batch_changes_nothing(
    windows: tuple[Windows, SQLiteStore], batch: pb.SampleBatch
) -> None:
    tried("Windows.ingest + SQLite: refused input changes nothing")
    w, store = windows
    w.flush()
    before, counters = _store_contents(store), _counters(w)
    try:
        w.ingest(batch)
    except (InvalidInput, TooLarge):
        w.flush()
        assert _store_contents(store) == before
        assert _counters(w) == counters
        return
    w.flush()
    # Accepted: the store holds at least what it held (nothing lost), within bounds.
    after = _store_contents(store)
    assert set(before) <= set(after)
    assert sum(len(s) for m in after.values() for _, _, s in m) >= 1
    assert all(n <= SETTINGS.max_series for n in w.series_counts().values())


# -- the Ingest service over real gRPC -----------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, SQLiteStore]]:
    path = tmp_path_factory.mktemp("fuzz") / "served.db"
    store = SQLiteStore(str(path), clock=lambda: NOW)
    running = Running(
        settings_for(max_batch_rows=64, max_signals=8, max_series=200, max_batch_bytes=4096),
        store=store,
        clock=lambda: NOW,
    )
    yield running, store
    running.stop()


OK_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


@budget(150)
@given(
    st.one_of(mutated(), st.binary(max_size=120), batches().map(lambda b: b.SerializeToString()))
)
def test_ingest_batch_over_grpc_answers_a_clear_status(
    served: tuple[Running, SQLiteStore], raw: bytes
) -> None:
    tried("gRPC IngestBatch: raw bytes")
    running, store = served
    call = running.channel.unary_unary(
        "/baselined.v1.Ingest/IngestBatch",
        request_serializer=None,
        response_deserializer=pb.IngestResponse.FromString,
    )
    running.sidecar.windows.flush()
    before = _store_contents(store)
    try:
        reply = call(raw, timeout=30)
    except grpc.RpcError as err:
        code = err.code()  # type: ignore[attr-defined]
        tried(f"  gRPC IngestBatch: {code.name}")
        assert code in OK_CODES, (code, err.details())  # type: ignore[attr-defined]
        assert err.details()  # type: ignore[attr-defined]
        running.sidecar.windows.flush()
        assert _store_contents(store) == before
        return
    tried("  gRPC IngestBatch: OK")
    assert reply.records_accepted == len(pb.SampleBatch.FromString(raw).timestamps)


def test_fuzz_files_exist(tmp_path: Path) -> None:
    """The fuzz folder is collected (a guard against a renamed conftest)."""
    from tests.fuzz import conftest

    assert conftest.budget(1).max_examples == 1
