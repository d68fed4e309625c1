"""The shadow wrapper against a real recording Ingest server."""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import random
import socket
import subprocess
import sys
import traceback
from typing import Any

import pytest
from baselined.v1 import baselined_pb2 as pb

import middleware
from middleware import Backoff, Shadow, sample_by_id
from tests.middleware.conftest import IngestServer, RecordingIngest, wait_until

FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "atexit": False,
    "backoff": Backoff(initial=0.01, maximum=0.05),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ModelError(Exception):
    pass


def test_records_carry_columns_kinds_and_values(ingest: IngestServer) -> None:
    fp = middleware.compute_fingerprint({"POD_NAME": "api-0"}, library_version=lambda n: None)
    sh = Shadow(
        model="ranker",
        version="v7",
        environment="staging",
        target=ingest.target,
        slices={"region": "eu"},
        fingerprint=fp,
        request_id=lambda args, kwargs: kwargs.get("rid"),
        environ={"POD_NAME": "api-0"},
        **FAST,
    )

    @sh.wrap
    def predict(row: dict[str, Any], *, rid: str) -> dict[str, Any]:
        return {"score": row["age"] / 100, "label": "yes" if row["age"] > 40 else "no"}

    assert predict({"age": 41, "country": "fr", "income": None}, rid="r1") == {
        "score": 0.41,
        "label": "yes",
    }
    assert predict({"age": 20, "country": "de", "income": 3.5}, rid="r2")["label"] == "no"
    sh.close(timeout=5.0)

    batches = ingest.servicer.batches
    assert len(batches) == 1
    b = batches[0]
    assert (b.model, b.version, b.environment) == ("ranker", "v7", "staging")
    assert b.instance.startswith("api-0:")
    assert dict(b.batch_slices) == {"region": "eu"}
    assert b.fingerprint.hash == fp.hash and b.fingerprint.fields["k8s.pod"] == "api-0"
    assert list(b.request_ids) == ["r1", "r2"]
    numeric = {c.name: (c.kind, list(c.values)) for c in b.numeric}
    categorical = {c.name: (c.kind, list(c.values)) for c in b.categorical}
    assert numeric["age"] == (pb.SIGNAL_KIND_FEATURE, [41.0, 20.0])
    assert numeric["score"] == (pb.SIGNAL_KIND_OUTPUT, [0.41, 0.2])
    assert numeric["error"] == (pb.SIGNAL_KIND_ERROR, [0.0, 0.0])
    assert numeric["latency_seconds"][0] == pb.SIGNAL_KIND_LATENCY
    assert numeric["cpu_seconds"][0] == pb.SIGNAL_KIND_RESOURCE
    assert all(v > 0 for v in numeric["latency_seconds"][1])
    assert math.isnan(numeric["income"][1][0]) and numeric["income"][1][1] == 3.5
    assert categorical["country"] == (pb.SIGNAL_KIND_FEATURE, ["fr", "de"])
    assert categorical["label"] == (pb.SIGNAL_KIND_OUTPUT, ["yes", "no"])
    assert all(t > 1e9 for t in b.timestamps)
    stats = sh.stats()
    assert (stats.calls, stats.sampled, stats.records_accepted) == (2, 2, 2)


def test_5000_calls_at_rate_1_all_arrive(ingest: IngestServer) -> None:
    sh = Shadow(model="m", target=ingest.target, batch_size=256, **FAST)

    def double(row: dict[str, float]) -> float:
        return row["x"] * 2.0

    score = sh.wrap(double)
    for i in range(5000):
        assert score({"x": float(i), "y": i % 7}) == 2.0 * i
    sh.close(timeout=10.0)
    assert ingest.servicer.records == 5000
    xs = sorted(r["x"] for r in ingest.servicer.rows())
    assert xs == [float(i) for i in range(5000)]
    stats = sh.stats()
    assert stats.records_shipped == stats.records_accepted == 5000
    assert sum(stats.records_dropped.values()) == 0


def test_random_sampling_rate_is_respected(ingest: IngestServer) -> None:
    sh = Shadow(model="m", target=ingest.target, sample_rate=0.3, rng=random.Random(11), **FAST)
    fn = sh.wrap(lambda row: 1)
    n = 10_000
    for i in range(n):
        fn({"i": i})
    sh.close(timeout=10.0)
    got = ingest.servicer.records
    sd = math.sqrt(n * 0.3 * 0.7)
    assert abs(got - 0.3 * n) < 5 * sd
    assert sh.stats().sampled == got and sh.stats().calls == n


def test_id_sampling_agrees_across_instances_and_with_sample_by_id() -> None:
    peers = [IngestServer(RecordingIngest()).start() for _ in range(2)]
    try:
        ids = [f"req-{i}" for i in range(3000)]
        seen = []
        for peer in peers:
            sh = Shadow(
                model="m",
                target=peer.target,
                sample_rate=0.25,
                request_id=lambda args, kwargs: args[0]["id"],
                **FAST,
            )
            fn = sh.wrap(lambda row: 0)
            for rid in ids:
                fn({"id": rid, "v": 1.0})
            sh.close(timeout=10.0)
            seen.append({r["_id"] for r in peer.servicer.rows()})
        expected = {rid for rid in ids if sample_by_id(rid, 0.25)}
        assert seen[0] == seen[1] == expected
        assert 0.2 < len(expected) / len(ids) < 0.3
    finally:
        for peer in peers:
            peer.stop()


def test_async_handler_result_error_and_latency(ingest: IngestServer) -> None:
    sh = Shadow(model="m", target=ingest.target, **FAST)

    @sh.wrap
    async def predict(row: dict[str, float]) -> float:
        await asyncio.sleep(0)
        if row["x"] < 0:
            raise ModelError("negative")
        return row["x"] + 1

    assert inspect.iscoroutinefunction(predict)

    async def main() -> None:
        assert await predict({"x": 1.0}) == 2.0
        with pytest.raises(ModelError):
            await predict({"x": -1.0})

    asyncio.run(main())
    sh.close(timeout=5.0)
    rows = ingest.servicer.rows()
    assert [r["error"] for r in rows] == [0.0, 1.0]
    assert rows[0]["output"] == 2.0 and "output" not in rows[1]
    assert rows[1]["error_type"].endswith("ModelError")
    assert all(r["latency_seconds"] > 0 and "cpu_seconds" not in r for r in rows)


def test_exception_is_reraised_unchanged_and_recorded(ingest: IngestServer) -> None:
    sh = Shadow(model="m", target=ingest.target, **FAST)
    raised: list[BaseException] = []

    def explode(row: dict[str, float]) -> float:
        err = ModelError("bad row")
        raised.append(err)
        raise err

    wrapped = sh.wrap(explode)
    with pytest.raises(ModelError) as info:
        wrapped({"x": 3.0})
    assert info.value is raised[0]
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "explode"
    sh.close(timeout=5.0)
    (row,) = ingest.servicer.rows()
    assert row["error"] == 1.0
    assert row["error_type"] == "tests.middleware.test_shadow.ModelError"
    assert row["x"] == 3.0


def test_wrapper_keeps_name_doc_and_signature() -> None:
    sh = Shadow(model="m", target="127.0.0.1:1", sample_rate=0.0, atexit=False)

    def predict(row: dict[str, float], *, threshold: float = 0.5) -> bool:
        """Says yes."""
        return True

    wrapped = sh.wrap(predict)
    assert wrapped.__name__ == "predict" and wrapped.__doc__ == "Says yes."
    assert inspect.signature(wrapped) == inspect.signature(predict)
    assert wrapped({"x": 1.0}, threshold=0.1) is True
    decorated = middleware.shadow(model="m", target="127.0.0.1:1", atexit=False)(predict)
    assert decorated.__wrapped__ is predict  # type: ignore[attr-defined]
    sh.close(timeout=1.0)


def test_raising_extractor_is_counted_and_result_unaffected(ingest: IngestServer) -> None:
    def bad_features(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, float]:
        raise KeyError("missing")

    sh = Shadow(model="m", target=ingest.target, features=bad_features, **FAST)

    def twice(row: int) -> int:
        return row * 2

    def bad_id(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        raise ZeroDivisionError

    fn = sh.wrap(twice)
    assert [fn(i) for i in range(10)] == [i * 2 for i in range(10)]
    assert sh.wrap(twice, request_id=bad_id)(5) == 10
    sh.close(timeout=5.0)
    stats = sh.stats()
    assert stats.records_dropped["extractor_error"] == 11
    assert ingest.servicer.records == 0


def test_sidecar_absent_drops_and_close_returns() -> None:
    sh = Shadow(model="m", target=f"127.0.0.1:{free_port()}", batch_size=64, **FAST)

    def plus_one(row: dict[str, float]) -> float:
        return row["x"] + 1

    fn = sh.wrap(plus_one)
    for i in range(3000):
        assert fn({"x": float(i)}) == i + 1.0
    assert wait_until(lambda: sh.stats().records_dropped["sidecar_unavailable"] > 0)
    sh.close(timeout=1.0)  # must come back even though nothing answers
    stats = sh.stats()
    assert stats.records_accepted == 0
    assert (
        stats.records_dropped["sidecar_unavailable"] + stats.records_dropped["queue_full"] == 3000
    )


def test_unix_socket_target(tmp_path: Any) -> None:
    from concurrent import futures

    import grpc
    from baselined.v1 import baselined_pb2_grpc as pb_grpc

    servicer = RecordingIngest()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_IngestServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    path = tmp_path / "sidecar.sock"
    server.add_insecure_port(f"unix:{path}")
    server.start()
    try:
        sh = Shadow(model="m", target=f"unix:{path}", **FAST)
        fn = sh.wrap(lambda row: 0.5)
        for i in range(100):
            fn({"i": i})
        sh.close(timeout=5.0)
        assert servicer.records == 100
    finally:
        server.stop(grace=None)


def test_reconnects_when_the_sidecar_starts_late_and_restarts() -> None:
    port = free_port()
    sh = Shadow(model="m", target=f"127.0.0.1:{port}", batch_size=32, rotate_interval=0.2, **FAST)
    fn = sh.wrap(lambda row: 1)
    for i in range(200):
        fn({"i": i})
    assert wait_until(lambda: sh.stats().records_dropped["sidecar_unavailable"] > 0)

    server = IngestServer(RecordingIngest(), port=port).start()
    try:

        def call_until_received() -> bool:
            for i in range(64):
                fn({"i": i})
            return server.servicer.records > 0

        assert wait_until(call_until_received, timeout=15.0)
        server.stop()
        dropped_before = sh.stats().records_dropped["sidecar_unavailable"]

        def call_until_dropped() -> bool:
            for i in range(64):
                fn({"i": i})
            return sh.stats().records_dropped["sidecar_unavailable"] > dropped_before

        assert wait_until(call_until_dropped, timeout=15.0)
        received_before = server.servicer.records
        server.start()
        assert wait_until(
            lambda: call_until_received() and server.servicer.records > received_before,
            timeout=15.0,
        )
        assert sh.stats().reconnects >= 2
    finally:
        sh.close(timeout=2.0)
        server.stop()


def test_slow_sidecar_keeps_the_queue_bounded() -> None:
    server = IngestServer(RecordingIngest(delay=0.05)).start()
    try:
        sh = Shadow(model="m", target=server.target, batch_size=16, queue_batches=4, **FAST)

        def ident(row: dict[str, float]) -> float:
            return row["x"]

        fn = sh.wrap(ident)
        n = 20_000
        for i in range(n):
            assert fn({"x": float(i)}) == float(i)
        assert sh._recorder.allocated_buffers <= 4 + 2
        sh.close(timeout=1.0)
        stats = sh.stats()
        assert stats.records_dropped["queue_full"] > 0
        assert stats.sampled + stats.records_dropped["queue_full"] == n
        assert stats.records_accepted <= stats.records_shipped <= stats.sampled
    finally:
        server.stop()


def test_batched_requests_are_sampled_per_row(ingest: IngestServer) -> None:
    np = pytest.importorskip("numpy")
    sh = Shadow(
        model="m",
        target=ingest.target,
        sample_rate=0.5,
        rng=random.Random(3),
        features=middleware.numpy_rows(["a", "b"]),
        outputs=middleware.numpy_rows(["score"]),
        **FAST,
    )

    def total(x: Any) -> Any:
        return x.sum(axis=1)

    fn = sh.wrap(total)
    x = np.arange(2000, dtype=float).reshape(1000, 2)
    out = fn(x)
    assert out.tolist() == x.sum(axis=1).tolist()
    sh.close(timeout=5.0)
    rows = ingest.servicer.rows()
    assert 400 < len(rows) < 600
    assert all(r["score"] == r["a"] + r["b"] for r in rows)
    assert sh.stats().sampled == len(rows)


def test_signals_past_max_signals_are_counted_and_ignored(ingest: IngestServer) -> None:
    sh = Shadow(model="m", target=ingest.target, max_signals=6, **FAST)
    fn = sh.wrap(lambda row: None)
    for _ in range(3):
        fn({f"f{i}": float(i) for i in range(10)})
    sh.close(timeout=5.0)
    (batch,) = ingest.servicer.batches
    assert len(batch.numeric) + len(batch.categorical) == 6
    assert sh.stats().records_dropped["signal_overflow"] == 3
    assert ingest.servicer.records == 3


def test_settings_resolve_argument_then_environment_then_default() -> None:
    env = {
        "BASELINED_MODEL": "from-env",
        "BASELINED_TARGET": "unix:/tmp/x.sock",
        "BASELINED_SAMPLE_RATE": "0.25",
        "BASELINED_MODEL_VERSION": "v2",
        "BASELINED_ENVIRONMENT": "canary",
        "BASELINED_SHADOW_BATCH_SIZE": "128",
    }
    sh = Shadow(environ=env, sample_rate=0.5, atexit=False)
    assert (sh.model, sh.target, sh.version, sh.environment) == (
        "from-env",
        "unix:/tmp/x.sock",
        "v2",
        "canary",
    )
    assert (sh.sample_rate, sh.batch_size, sh.flush_interval) == (0.5, 128, 1.0)
    with pytest.raises(ValueError, match=r"sample_rate.*BASELINED_SAMPLE_RATE"):
        Shadow(model="m", environ={"BASELINED_SAMPLE_RATE": "often"}, atexit=False)
    with pytest.raises(ValueError, match="sample_rate"):
        Shadow(model="m", sample_rate=1.5, environ={}, atexit=False)
    with pytest.raises(ValueError, match="batch_size"):
        Shadow(model="m", batch_size=0, environ={}, atexit=False)
    with pytest.raises(ValueError, match="model"):
        Shadow(environ={}, atexit=False)


def test_calls_after_close_still_run_the_handler(ingest: IngestServer) -> None:
    sh = Shadow(model="m", target=ingest.target, **FAST)
    fn = sh.wrap(lambda row: "ok")
    fn({"x": 1.0})
    sh.close(timeout=5.0)
    assert fn({"x": 2.0}) == "ok"
    assert ingest.servicer.records == 1


FORK_SCRIPT = """
import os, sys
import middleware
sh = middleware.Shadow(model="m", target=sys.argv[1], flush_interval=0.05, atexit=False)
fn = sh.wrap(lambda row: row["x"])
pid = os.fork()  # like gunicorn: workers fork after import, before traffic
if pid == 0:
    for i in range(100):
        fn({"x": float(i), "who": "child"})
    sh.close(timeout=5.0)
    os._exit(0 if sh.stats().records_accepted == 100 else 3)
_, status = os.waitpid(pid, 0)
for i in range(50):
    fn({"x": float(i), "who": "parent"})
sh.close(timeout=5.0)
sys.exit(os.waitstatus_to_exitcode(status) or (0 if sh.stats().records_accepted == 50 else 4))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_worker_ships_its_own_records(ingest: IngestServer) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([".", "proto"])}
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, ingest.target], env=env, timeout=60, check=False
    )
    assert done.returncode == 0
    who = [r["who"] for r in ingest.servicer.rows()]
    assert who.count("child") == 100 and who.count("parent") == 50
    instances = {b.instance for b in ingest.servicer.batches}
    assert len(instances) == 2  # each process names itself with its own pid


def test_hot_path_outputs_and_reused_feature_dicts(ingest: IngestServer) -> None:
    """The per-call path: numbers, bools, strings, mappings and None as results, a
    non-dict mapping as features, and a features dict the caller reuses."""
    from types import MappingProxyType

    sh = Shadow(model="m", target=ingest.target, **FAST)
    fn = sh.wrap(lambda row: row["r"])
    afn = sh.wrap(_async_identity)
    feats: dict[str, Any] = {"a": 1.0, "b": 2.0, "c": 3.0, "r": 0.5}
    results: list[Any] = [0.5, 7, True, "yes", {"score": 0.25}, None, 0.75]
    for i, r in enumerate(results):
        feats["a"] = float(i)  # one dict, refilled for each call
        feats["r"] = r
        assert fn(feats) == r
    assert fn(MappingProxyType({"a": 10.0, "r": 1.5})) == 1.5
    assert asyncio.run(afn({"a": 11.0, "r": 2.5})) == {"a": 11.0, "r": 2.5}
    sh.close(timeout=5.0)
    rows = ingest.servicer.rows()
    assert [r["a"] for r in rows] == [float(i) for i in range(len(results))] + [10.0, 11.0]
    # "output" is numeric in this batch (its first value): the string counts as missing.
    assert [r.get("output") for r in rows[:7]] == [0.5, 7.0, 1.0, None, None, None, 0.75]
    assert rows[4]["score"] == 0.25 and rows[7]["output"] == 1.5
    assert "cpu_seconds" in rows[0] and "cpu_seconds" not in rows[8]
    assert sh.stats().sampled == 9 and sum(sh.stats().records_dropped.values()) == 0


async def _async_identity(row: dict[str, Any]) -> dict[str, Any]:
    return row
