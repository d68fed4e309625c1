"""Drop counts on the wire: every batch carries the process's cumulative drops by
reason in ``SampleBatch.dropped``, decoded here by the real protobuf parser."""

from __future__ import annotations

import itertools
from typing import Any

from baselined.v1 import baselined_pb2 as pb

from middleware import Backoff, Shadow
from middleware.buffer import Recorder
from middleware.shipper import MAX_DROPPED_REASONS, encode_batch, encode_dropped
from tests.middleware.conftest import IngestServer, RecordingIngest, wait_until

FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "atexit": False,
    "backoff": Backoff(initial=0.01, maximum=0.05),
}
OWN_REASONS = {"queue_full", "sidecar_unavailable", "signal_overflow", "extractor_error"}


def _one_row_buffer() -> Any:
    rec = Recorder(batch_size=4, queue_batches=2, max_signals=8)
    rec.record(100.0, "r1", 0.01, None, False, None, [({"x": 1.5}, None)])
    buf = rec.swap_partial()
    assert buf is not None
    return buf


def test_encoded_counts_parse_as_the_map_field_next_to_the_rows() -> None:
    template = pb.SampleBatch(model="m", environment="prod", instance="pod-1:7")
    counts = {"queue_full": 3, "sidecar_unavailable": 0, "extractor_error": 2**40 + 5}
    parsed = pb.SampleBatch.FromString(
        encode_batch(template.SerializeToString(), [_one_row_buffer()], dropped=counts)
    )
    assert dict(parsed.dropped) == counts
    assert (parsed.model, parsed.instance, list(parsed.timestamps)) == ("m", "pod-1:7", [100.0])
    assert list(parsed.request_ids) == ["r1"]
    assert [c.name for c in parsed.numeric] == ["latency_seconds", "error", "x"]
    # Byte for byte what protobuf itself writes for the same map (sorted by key).
    ordered = dict(sorted(counts.items()))
    assert encode_dropped(ordered) == pb.SampleBatch(dropped=ordered).SerializeToString(
        deterministic=True
    )


def test_at_most_32_reasons_are_sent_and_negative_counts_as_zero() -> None:
    counts = {f"reason_{i:02d}": i for i in range(40)}
    counts["reason_00"] = -4
    parsed = pb.SampleBatch.FromString(encode_dropped(counts))
    assert len(parsed.dropped) == MAX_DROPPED_REASONS
    assert parsed.dropped["reason_00"] == 0
    assert parsed.dropped["reason_31"] == 31 and "reason_32" not in parsed.dropped


def test_every_batch_carries_the_latest_cumulative_counts(ingest: IngestServer) -> None:
    def features(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, float]:
        row = args[0]
        if row < 0:
            raise ValueError("negative")
        return {f"f{j}": float(row + j) for j in range(5)}

    sh = Shadow(model="m", target=ingest.target, features=features, max_signals=4, **FAST)
    fn = sh.wrap(lambda row: row)
    for i in range(-3, 10):
        fn(i)
    sh.flush()
    assert wait_until(lambda: ingest.servicer.records == 10)
    stats = sh.stats()
    # 4 signals fit (latency, error and two features): every row lost some.
    assert stats.records_dropped["signal_overflow"] == 10
    assert stats.records_dropped["extractor_error"] == 3
    last = ingest.servicer.batches[-1]
    assert set(last.dropped) == OWN_REASONS
    assert dict(last.dropped) == stats.records_dropped
    for i in range(-2, 0):  # two more extractor errors, then one good row
        fn(i)
    fn(5)
    sh.close(timeout=5.0)
    counts = [dict(b.dropped) for b in ingest.servicer.batches]
    assert counts[-1]["extractor_error"] == 5 and counts[-1]["signal_overflow"] == 11
    for earlier, later in itertools.pairwise(counts):  # cumulative
        assert all(later[k] >= earlier[k] for k in earlier)


def test_drops_while_the_sidecar_was_down_arrive_once_it_is_back() -> None:
    servicer = RecordingIngest()
    server = IngestServer(servicer).start()
    port = server.port
    server.stop()
    sh = Shadow(model="m", target=f"127.0.0.1:{port}", batch_size=8, **FAST)
    fn = sh.wrap(lambda row: 1)
    try:
        for i in range(50):
            fn({"i": i})
        assert wait_until(lambda: sh.stats().records_dropped["sidecar_unavailable"] > 0)
        server = IngestServer(servicer, port=port).start()

        def received_counts() -> bool:
            fn({"i": 0})
            sh.flush()
            batches = list(servicer.batches)
            lost = sh.stats().records_dropped["sidecar_unavailable"]
            return bool(batches) and batches[-1].dropped["sidecar_unavailable"] == lost

        assert wait_until(received_counts, timeout=15.0)
    finally:
        sh.close(timeout=2.0)
        server.stop()


def test_reported_sources_add_their_nonzero_reasons(ingest: IngestServer) -> None:
    skipped = {"request_not_json": 0, "too_large": 2, "extractor_error": 4}

    def broken() -> dict[str, int]:
        raise RuntimeError("a source that fails loses only its own counts")

    def failing(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, float]:
        raise ZeroDivisionError  # every wrapped call: an extractor error

    sh = Shadow(model="m", target=ingest.target, features=failing, **FAST)
    sh.report_drops(lambda: skipped)
    sh.report_drops(broken)
    fn = sh.wrap(lambda row: row)
    fn(1)
    sh.record_call(latency=0.01, features={"x": 1.0})
    sh.close(timeout=5.0)
    dropped = dict(ingest.servicer.batches[-1].dropped)
    assert "request_not_json" not in dropped  # zeros of a source are left out
    assert dropped["too_large"] == 2
    assert dropped["extractor_error"] == 1 + 4  # same reason: summed
    assert dropped["queue_full"] == 0
