"""The columnar buffer and the batch encoding, read back with the real protobuf parser."""

from __future__ import annotations

import math
from typing import Any

from baselined.v1 import baselined_pb2 as pb

from middleware.buffer import ColumnBuffer, Recorder
from middleware.shipper import batch_template, encode_batch


def decode(bufs: list[ColumnBuffer]) -> pb.SampleBatch:
    template = batch_template(
        model="m",
        version="v",
        environment="e",
        instance="i",
        fingerprint=pb.Fingerprint(hash="h", fields={"python": "3.11"}),
        batch_slices={"node": "gpu-7"},
    )
    return pb.SampleBatch.FromString(encode_batch(template.SerializeToString(), bufs))


def record(rec: Recorder, features: dict[str, Any], rid: str | None = None) -> None:
    rec.record(1.5, rid, 0.25, None, False, None, [(features, None)])


def columns(batch: pb.SampleBatch) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {c.name: list(c.values) for c in batch.numeric}
    out.update({c.name: list(c.values) for c in batch.categorical})
    return out


def same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        (isinstance(x, float) and math.isnan(x) and isinstance(y, float) and math.isnan(y))
        or x == y
        for x, y in zip(a, b, strict=True)
    )


def test_buffers_with_different_signals_merge_into_one_message() -> None:
    rec = Recorder(batch_size=2, queue_batches=8, max_signals=64)
    wide = {f"f{i}": float(i) for i in range(6)}  # wide enough for the block path
    record(rec, wide, "a")
    record(rec, {**wide, "f0": None, "f1": "text"})  # missing and wrong-type values
    record(rec, {"g": 7, "colour": "red"}, "c")
    record(rec, {"g": True})
    bufs = [rec.pop(), rec.pop()]
    assert all(b is not None for b in bufs)
    batch = decode([b for b in bufs if b is not None])
    nan = float("nan")
    cols = columns(batch)
    assert (batch.model, dict(batch.batch_slices)) == ("m", {"node": "gpu-7"})
    assert batch.fingerprint.fields["python"] == "3.11"
    assert list(batch.timestamps) == [1.5] * 4
    assert list(batch.request_ids) == ["a", "", "c", ""]
    assert same(cols["f0"], [0.0, nan, nan, nan])
    assert same(cols["f1"], [1.0, nan, nan, nan])  # a string in a numeric column is missing
    assert same(cols["f5"], [5.0, 5.0, nan, nan])
    assert same(cols["g"], [nan, nan, 7.0, 1.0])
    assert cols["colour"] == ["", "", "red", ""]
    assert cols["latency_seconds"] == [0.25] * 4 and cols["error"] == [0.0] * 4
    kinds = {c.name: c.kind for c in batch.numeric}
    assert kinds["f0"] == pb.SIGNAL_KIND_FEATURE and kinds["error"] == pb.SIGNAL_KIND_ERROR


def test_full_queue_drops_new_rows_and_reused_buffers_start_empty() -> None:
    rec = Recorder(batch_size=2, queue_batches=1, max_signals=64)
    for i in range(8):
        record(rec, {"x": float(i)})
    assert rec.queued() == 1
    assert rec.allocated_buffers <= 3
    assert rec.sampled + rec.dropped_queue_full == 8 and rec.dropped_queue_full > 0
    first = rec.pop()
    assert first is not None
    assert columns(decode([first]))["x"] == [0.0, 1.0]
    rec.release(first)
    record(rec, {"y": "only"})
    partial = rec.swap_partial()
    assert partial is not None
    cols = columns(decode([partial]))
    assert "x" not in cols and cols["y"] == ["only"]


class _Number:
    """A non-float number (like a numpy scalar): read through ``__float__``."""

    def __float__(self) -> float:
        return 2.5


def test_values_are_copied_when_recorded_and_interleaved_key_sets_line_up() -> None:
    rec = Recorder(batch_size=8, queue_batches=2, max_signals=64)
    a = {"x": 1.0, "y": 2.0, "z": 3.0, "w": 4.0}
    record(rec, a)
    a["x"] = 100.0  # the handler reuses its dict: the row keeps the value of its call
    record(rec, {"x": "text", "v": None, "big": 10**400})  # other keys
    record(rec, a)
    rec.record(1.5, None, 0.25, 0.5, True, "ValueError", [({"x": _Number()}, {"x": 9.0})])
    rec.record(1.5, None, 0.25, None, False, None, [(None, {"label": "cat", "n": 7})])
    buf = rec.swap_partial()
    assert buf is not None
    cols = columns(decode([buf]))
    nan = float("nan")
    assert same(cols["x"], [1.0, nan, 100.0, 9.0, nan])  # the output wins in its row
    assert same(cols["y"], [2.0, nan, 2.0, nan, nan])
    assert same(cols["big"], [nan, float("inf"), nan, nan, nan])
    assert "v" not in cols  # only missing values: no column
    assert same(cols["cpu_seconds"], [nan, nan, nan, 0.5, nan])
    assert cols["error"] == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert cols["error_type"] == ["", "", "", "ValueError", ""]
    assert cols["label"] == ["", "", "", "", "cat"] and same(cols["n"], [nan] * 4 + [7.0])
    kinds = {c.name: c.kind for c in decode([buf]).numeric}
    assert kinds["x"] == pb.SIGNAL_KIND_FEATURE and kinds["n"] == pb.SIGNAL_KIND_OUTPUT
    assert rec.sampled == 5 and rec.signal_overflow == 0


def test_a_column_takes_the_type_of_its_first_value() -> None:
    rec = Recorder(batch_size=16, queue_batches=2, max_signals=64)
    for value in ("red", 3.0, None, "blue"):
        record(rec, {"colour": value, "a": 1.0, "b": 2.0, "c": 3.0})
    for value in (None, 4.0, "green", True):
        rec.record(1.5, None, 0.25, None, False, None, [(None, {"score": value})])
    buf = rec.swap_partial()
    assert buf is not None
    cols = columns(decode([buf]))
    nan = float("nan")
    assert cols["colour"] == ["red", "", "", "blue", "", "", "", ""]
    assert same(cols["score"], [nan] * 5 + [4.0, nan, 1.0])


def test_signals_past_max_signals_are_counted_once_per_row_when_the_batch_is_built() -> None:
    rec = Recorder(batch_size=4, queue_batches=2, max_signals=4)  # latency, error + 2
    wide = {f"f{i}": float(i) for i in range(5)}
    record(rec, wide)
    record(rec, {"f0": 1.0})  # fits: f0 has a column
    many = {f"s{i}": "v" for i in range(10)}  # 10 slice names: the first 8 are kept
    rec.record(1.5, None, 0.25, None, False, None, [({"f9": None}, None)], many)
    buf = rec.swap_partial()
    assert buf is not None
    assert rec.signal_overflow == 2  # the first row lost f2..f4, the third two slices
    batch = decode([buf])
    assert [c.name for c in batch.numeric] == ["latency_seconds", "error", "f0", "f1"]
    assert len(batch.slices) == 8 and list(batch.slices[0].values) == ["", "", "v"]
