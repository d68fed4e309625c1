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
