"""The sidecar over real gRPC (127.0.0.1, port 0): ingest, the Baselines API,
status codes, restart persistence on SQLite and Redis, health, reflection,
and ``run`` in a subprocess stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sidecar.server import SERVICE_NAMES, Sidecar, StartError
from sidecar.settings import Settings
from sidecar.stores.base import Store
from sidecar.stores.redis import RedisStore
from sidecar.stores.sqlite import SQLiteStore
from tests.sidecar.test_baselines import ENV, MODEL, T0, FakeClock, make_batch

_T = TypeVar("_T")
ROOT = Path(__file__).resolve().parents[2]


def settings_for(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "store": ":memory:",
        "instance": "test",
        "flush_interval": 3600.0,  # tests flush explicitly (freeze, window queries, stop)
        "shutdown_grace": 1.0,
    }
    values.update(overrides)
    return Settings.resolve(values, env={})


class Running:
    """A Sidecar served from an event loop in a background thread, with sync stubs."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sidecar = Sidecar(settings, store=store, clock=clock)
        self.stopped = False
        self.run(self.sidecar.start())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.sidecar.port}")
        self.ingest = pb_grpc.IngestStub(self.channel)
        self.baselines = pb_grpc.BaselinesStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self, grace: float = 1.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.channel.close()
        self.run(self.sidecar.stop(grace))
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(clock: FakeClock) -> Iterator[Running]:
    running = Running(settings_for(max_batch_bytes=64 * 1024), clock=clock)
    yield running
    running.stop()


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    return err.code(), err.details()


# -- ingest ------------------------------------------------------------------------


def test_stream_refuses_a_bad_batch_alone_and_keeps_the_others(served: Running) -> None:
    good = make_batch(latency=[0.1] * 100, at=T0 - 10)
    uneven = make_batch(latency=[0.2] * 50, at=T0 - 10)
    del uneven.numeric[0].values[-1]
    huge = make_batch(latency=[0.3] * 10_000, at=T0 - 10)  # ~80 KB > 64 KB
    response = served.ingest.Ingest(iter([good, uneven, good, huge, good]))

    assert response.batches_accepted == 3 and response.records_accepted == 300
    assert response.batches_rejected == 2 and response.records_rejected == 10_050
    first, second = response.rejections
    assert (first.batch_index, first.code, first.records) == (1, 3, 50)
    assert "49 values, expected 50" in first.message and "latency_seconds" in first.message
    assert (second.batch_index, second.code, second.records) == (3, 8, 10_000)
    assert "max_batch_bytes" in second.message

    view = served.baselines.GetWindow(pb.GetWindowRequest(model=MODEL, environment=ENV))
    (series,) = view.series
    assert series.count == 300 and series.max == pytest.approx(0.1)


def _bad(mutate: Callable[[pb.SampleBatch], None]) -> pb.SampleBatch:
    batch = make_batch(latency=[0.1, 0.2, 0.3], at=T0 - 10)
    mutate(batch)
    return batch


def _too_many_signals(b: pb.SampleBatch) -> None:
    for i in range(300):
        b.numeric.add(name=f"f{i}", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0, 2.0, 3.0])


def _too_many_attributes(b: pb.SampleBatch) -> None:
    for i in range(17):
        b.slices.add(name=f"attr{i}", values=["a", "b", "c"])


BAD_INPUT = [
    (
        "unequal columns",
        lambda b: b.numeric[0].values.append(9.0),
        "INVALID_ARGUMENT",
        "4 values, expected 3",
    ),
    (
        "unknown kind",
        lambda b: setattr(b.numeric[0], "kind", 42),
        "INVALID_ARGUMENT",
        "unknown signal kind 42",
    ),
    ("no kind", lambda b: setattr(b.numeric[0], "kind", 0), "INVALID_ARGUMENT", "no signal kind"),
    ("empty model", lambda b: setattr(b, "model", ""), "INVALID_ARGUMENT", "model name is empty"),
    (
        "nan timestamp",
        lambda b: b.timestamps.__setitem__(1, math.nan),
        "INVALID_ARGUMENT",
        "timestamp at row 1",
    ),
    (
        "inf timestamp",
        lambda b: b.timestamps.__setitem__(0, math.inf),
        "INVALID_ARGUMENT",
        "must be finite",
    ),
    ("too many signals", _too_many_signals, "RESOURCE_EXHAUSTED", "max_signals=256"),
    (
        "too many slice attributes",
        _too_many_attributes,
        "RESOURCE_EXHAUSTED",
        "max_slice_attributes=16",
    ),
    (
        "oversize message",
        lambda b: b.numeric[0].values.extend([1.0] * 10_000),
        "RESOURCE_EXHAUSTED",
        "over max_batch_bytes=65536",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "code", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
def test_ingest_batch_refuses_bad_input_with_a_status_naming_the_problem(
    served: Running, case: str, mutate: Callable[[pb.SampleBatch], None], code: str, message: str
) -> None:
    got, details = code_of(lambda: served.ingest.IngestBatch(_bad(mutate)))
    assert got == grpc.StatusCode[code]
    assert message in details
    # Nothing of the refused batch was kept.
    view = served.baselines.GetWindow(pb.GetWindowRequest(model=MODEL, environment=ENV))
    assert list(view.series) == []


def test_a_message_over_the_transport_cap_fails_the_call_but_not_the_server(
    served: Running,
) -> None:
    # 64 KB limit + 1 MB slack: 2 MB never reaches our own check.
    huge = make_batch(latency=[0.5] * 260_000, at=T0 - 10)
    got, _ = code_of(lambda: served.ingest.IngestBatch(huge))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED
    ok = served.ingest.IngestBatch(make_batch(latency=[0.1], at=T0 - 10))
    assert ok.records_accepted == 1


# -- baselines API -----------------------------------------------------------------


def test_unknown_ids_give_not_found(served: Running) -> None:
    stub = served.baselines
    for call in (
        lambda: stub.GetBaseline(pb.GetBaselineRequest(id="b-000000000000")),
        lambda: stub.PromoteBaseline(pb.PromoteBaselineRequest(id="b-000000000000")),
        lambda: stub.RetireBaseline(pb.RetireBaselineRequest(id="b-000000000000")),
        lambda: stub.GetActiveBaseline(pb.GetActiveBaselineRequest(model=MODEL, environment=ENV)),
    ):
        assert code_of(call)[0] == grpc.StatusCode.NOT_FOUND


def test_freeze_errors_map_to_their_status_codes(served: Running) -> None:
    stub = served.baselines
    freeze = pb.FreezeBaselineRequest(model=MODEL, environment=ENV, name="w1", actor="alice")
    got, details = code_of(lambda: stub.FreezeBaseline(freeze))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "holds no data" in details

    served.ingest.IngestBatch(make_batch(latency=[0.1] * 10, at=T0 - 10))
    stub.FreezeBaseline(freeze)
    got, details = code_of(lambda: stub.FreezeBaseline(freeze))
    assert got == grpc.StatusCode.ALREADY_EXISTS and "'w1'" in details

    bad = pb.FreezeBaselineRequest(model="", environment=ENV, name="x")
    assert code_of(lambda: stub.FreezeBaseline(bad)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "model must not be empty",
    )
    (record,) = stub.ListBaselines(pb.ListBaselinesRequest()).baselines
    got, details = code_of(
        lambda: stub.GetBaseline(pb.GetBaselineRequest(id=record.id, quantiles=[2.0]))
    )
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "[0, 1]" in details
    got, _ = code_of(
        lambda: stub.RollbackBaseline(pb.RollbackBaselineRequest(model=MODEL, environment=ENV))
    )
    assert got == grpc.StatusCode.FAILED_PRECONDITION
    got, _ = code_of(lambda: stub.ListBaselines(pb.ListBaselinesRequest(status=17)))  # type: ignore[arg-type]
    assert got == grpc.StatusCode.INVALID_ARGUMENT


def _send(served: Running, values: np.ndarray, at: float) -> None:
    batches = (
        make_batch(latency=values[i : i + 512].tolist(), at=at) for i in range(0, len(values), 512)
    )
    response = served.ingest.Ingest(batches)
    assert response.records_accepted == len(values) and response.batches_rejected == 0


def test_full_lifecycle_over_grpc(served: Running, clock: FakeClock) -> None:
    stub = served.baselines
    rng = np.random.default_rng(11)
    # 200,000 values: at 50,000 a rank error of 2-3 near p99 is already ~0.1% (see test_baselines)
    week1 = rng.lognormal(-2.5, 0.5, 200_000)
    _send(served, week1, at=T0 - 60)
    b1 = stub.FreezeBaseline(
        pb.FreezeBaselineRequest(
            model=MODEL,
            environment=ENV,
            name="week-1",
            reason="first",
            actor="alice",
            labels={"team": "risk"},
        )
    )
    assert b1.record_count == 200_000 and b1.series_count == 1
    assert b1.status == pb.BASELINE_STATUS_CANDIDATE and b1.parent_id == ""
    assert b1.labels["team"] == "risk" and b1.fingerprint.fields["lib.numpy"] == "2.4.0"

    view = stub.GetBaseline(pb.GetBaselineRequest(id=b1.id, quantiles=[0.5, 0.9, 0.99]))
    (series,) = view.series
    assert series.count == 200_000 and series.signal == "latency_seconds" and series.slice == "*"
    assert series.kind == pb.SIGNAL_KIND_LATENCY and not series.categorical
    for qv in series.quantiles:
        want = float(np.quantile(week1, qv.q))
        assert abs(qv.value - want) / want < 1e-3, (qv.q, qv.value, want)
    assert series.mean == pytest.approx(week1.mean(), rel=1e-9)

    assert stub.PromoteBaseline(pb.PromoteBaselineRequest(id=b1.id, actor="alice")).status == (
        pb.BASELINE_STATUS_ACTIVE
    )
    clock.advance(3600)
    _send(served, rng.lognormal(-2.4, 0.5, 5_000), at=clock.now - 60)
    b2 = stub.FreezeBaseline(
        pb.FreezeBaselineRequest(
            model=MODEL, environment=ENV, name="week-2", actor="bob", start=clock.now - 600
        )
    )
    assert b2.record_count == 5_000 and b2.parent_id == b1.id
    stub.PromoteBaseline(pb.PromoteBaselineRequest(id=b2.id, reason="newer", actor="bob"))
    assert (
        stub.GetActiveBaseline(pb.GetActiveBaselineRequest(model=MODEL, environment=ENV)).id
        == b2.id
    )
    rolled = stub.RollbackBaseline(
        pb.RollbackBaselineRequest(model=MODEL, environment=ENV, reason="regressed", actor="carol")
    )
    assert rolled.id == b1.id and rolled.status == pb.BASELINE_STATUS_ACTIVE
    retired = stub.RetireBaseline(pb.RetireBaselineRequest(id=b2.id, reason="bad", actor="carol"))
    assert retired.status == pb.BASELINE_STATUS_RETIRED
    got, details = code_of(lambda: stub.RetireBaseline(pb.RetireBaselineRequest(id=b1.id)))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "roll back first" in details

    listed = stub.ListBaselines(pb.ListBaselinesRequest(model=MODEL, environment=ENV)).baselines
    assert [(b.name, b.status) for b in listed] == [
        ("week-1", pb.BASELINE_STATUS_ACTIVE),
        ("week-2", pb.BASELINE_STATUS_RETIRED),
    ]
    entries = stub.ListAudit(pb.ListAuditRequest(model=MODEL, environment=ENV)).entries
    assert [(e.action, e.target, e.actor) for e in entries] == [
        ("freeze", b1.id, "alice"),
        ("promote", b1.id, "alice"),
        ("freeze", b2.id, "bob"),
        ("promote", b2.id, "bob"),
        ("rollback", b1.id, "carol"),
        ("retire", b2.id, "carol"),
    ]
    befores = [json.loads(e.before) for e in entries]
    afters = [json.loads(e.after) for e in entries]
    assert (befores[3], afters[3]) == (
        {"active": b1.id, "status": "candidate"},
        {"active": b2.id, "status": "active"},
    )
    assert (befores[4], afters[4]) == (
        {"active": b2.id, "status": "candidate"},
        {"active": b1.id, "status": "active"},
    )
    assert afters[5] == {"active": b1.id, "status": "retired"}
    assert stub.ListAudit(pb.ListAuditRequest(limit=2)).entries[0].action == "rollback"


# -- persistence -------------------------------------------------------------------


def _freeze_and_promote(served: Running) -> pb.Baseline:
    served.ingest.IngestBatch(make_batch(latency=[0.1, 0.2, 0.3, 0.4], at=T0 - 10))
    record = served.baselines.FreezeBaseline(
        pb.FreezeBaselineRequest(model=MODEL, environment=ENV, name="kept", reason="r", actor="a")
    )
    served.baselines.PromoteBaseline(
        pb.PromoteBaselineRequest(id=record.id, reason="go", actor="a")
    )
    # Live data that only the final flush on stop writes.
    served.ingest.IngestBatch(make_batch(latency=[7.0] * 6, at=T0 - 5))
    return record


def _check_kept(served: Running, record: pb.Baseline) -> None:
    stub = served.baselines
    view = stub.GetBaseline(pb.GetBaselineRequest(id=record.id, quantiles=[0.0, 1.0]))
    assert view.baseline.status == pb.BASELINE_STATUS_ACTIVE
    assert [(s.count, s.min, s.max) for s in view.series] == [(4, 0.1, 0.4)]
    assert (
        stub.GetActiveBaseline(pb.GetActiveBaselineRequest(model=MODEL, environment=ENV)).id
        == record.id
    )
    entries = stub.ListAudit(pb.ListAuditRequest(model=MODEL, environment=ENV)).entries
    assert [(e.action, e.reason) for e in entries] == [("freeze", "r"), ("promote", "go")]
    window = stub.GetWindow(pb.GetWindowRequest(model=MODEL, environment=ENV))
    assert [s.count for s in window.series] == [10]


def test_a_restarted_sidecar_on_the_same_sqlite_file_keeps_everything(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = settings_for(store=f"sqlite:///{tmp_path / 'bl.db'}")
    first = Running(settings, clock=clock)
    try:
        record = _freeze_and_promote(first)
    finally:
        first.stop()
    second = Running(settings, clock=clock)
    try:
        _check_kept(second, record)
    finally:
        second.stop()


@pytest.mark.redis
def test_a_restarted_sidecar_on_the_same_redis_prefix_keeps_everything(
    redis_url: str, redis_prefix: str, clock: FakeClock
) -> None:
    settings = settings_for(store=redis_url)
    first = Running(settings, store=RedisStore(redis_url, prefix=redis_prefix), clock=clock)
    try:
        record = _freeze_and_promote(first)
    finally:
        first.stop()
    second = Running(settings, store=RedisStore(redis_url, prefix=redis_prefix), clock=clock)
    try:
        _check_kept(second, record)
    finally:
        second.stop()


# -- health and reflection -----------------------------------------------------------


def test_health_is_serving_then_not_serving_while_stopping(clock: FakeClock) -> None:
    running = Running(settings_for(), clock=clock)
    try:
        for service in ("", *SERVICE_NAMES):
            reply = running.health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = running.health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.run_coroutine_threadsafe(running.sidecar.stop(5.0), running.loop)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        stopping.result(timeout=30)
    finally:
        running.stopped = False
        running.stop()


def _reflected_services(running: Running) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (reply,) = list(stub.ServerReflectionInfo(iter([request])))
    return sorted(s.name for s in reply.list_services_response.service)


def test_reflection_lists_the_services_and_can_be_switched_off(clock: FakeClock) -> None:
    on = Running(settings_for(), clock=clock)
    try:
        names = _reflected_services(on)
        assert set(SERVICE_NAMES) <= set(names) and "grpc.health.v1.Health" in names
    finally:
        on.stop()
    off = Running(settings_for(reflection=False), clock=clock)
    try:
        got, _ = code_of(lambda: _reflected_services(off))
        assert got == grpc.StatusCode.UNIMPLEMENTED
        assert off.ingest.IngestBatch(make_batch(latency=[0.1], at=T0 - 1)).records_accepted == 1
    finally:
        off.stop()


def test_a_second_sidecar_on_a_busy_port_fails_to_start(served: Running) -> None:
    from sidecar.server import StartError

    other = Sidecar(settings_for(listen=f"127.0.0.1:{served.sidecar.port}"))
    with pytest.raises(StartError, match="cannot listen"):
        served.run(other.start())
    served.run(other.stop(0))


def test_serves_on_a_unix_socket(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "baselined.sock"
    sidecar = Sidecar(settings_for(listen=f"unix:{path}"), clock=clock)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(sidecar.start())
        assert sidecar.port == 0 and sidecar.address == f"unix:{path}" and path.exists()

        async def send() -> pb.IngestResponse:
            async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
                stub = pb_grpc.IngestStub(channel)
                reply: pb.IngestResponse = await stub.IngestBatch(
                    make_batch(latency=[0.1, 0.2], at=T0 - 1)
                )
                return reply

        assert loop.run_until_complete(send()).records_accepted == 2
    finally:
        loop.run_until_complete(sidecar.stop(0))
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def test_a_unix_socket_in_a_missing_directory_fails_to_start(tmp_path: Path) -> None:
    from sidecar.server import StartError

    sidecar = Sidecar(settings_for(listen=f"unix:{tmp_path / 'no' / 'such' / 'dir.sock'}"))
    with pytest.raises(StartError, match="cannot listen on unix:"):
        asyncio.run(sidecar.start())
    asyncio.run(sidecar.stop(0))


def test_the_flush_loop_survives_an_unreachable_store(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore("redis://127.0.0.1:1/0", connect_timeout=0.2)  # nothing listens on port 1
    running = Running(settings_for(flush_interval=0.05), store=store, clock=clock)
    try:
        assert (
            running.ingest.IngestBatch(make_batch(latency=[0.1] * 5, at=T0 - 1)).records_accepted
            == 5
        )
        deadline = time.monotonic() + 20
        while running.sidecar.windows.stats()["flush_failures"] < 3:
            assert time.monotonic() < deadline, "the flush loop stopped retrying"
            time.sleep(0.05)
        # Still serving, data still held for the next attempt, and the failure logged once.
        reply = running.health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert running.sidecar.windows.stats()["series_dirty"] == 1
        warnings = [r for r in caplog.records if "flush to the store failed" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
        got, details = code_of(
            lambda: running.baselines.FreezeBaseline(
                pb.FreezeBaselineRequest(model=MODEL, environment=ENV, name="w")
            )
        )
        assert got == grpc.StatusCode.UNAVAILABLE and "127.0.0.1:1" in details
    finally:
        running.stop()
    assert any("final flush to the store failed" in r.getMessage() for r in caplog.records)


# -- run() in a subprocess -------------------------------------------------------------

_RUN = """
import sys
from sidecar.server import run
from sidecar.settings import Settings
settings = {"listen": "127.0.0.1:0", "store": sys.argv[1], "flush_interval": 3600,
            "instance": "sub", "log_level": "warning"}
sys.exit(run(Settings.resolve(settings)))
"""


def _start_subprocess(store: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "proto")])}
    env = {k: v for k, v in env.items() if not k.startswith("BASELINED_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, store],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            return proc, line.strip()
    proc.wait(timeout=10)
    pytest.fail(f"the sidecar exited with {proc.returncode} before it was ready")


def test_run_serves_until_sigterm_then_flushes_and_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "sub.db"
    proc, ready = _start_subprocess(f"sqlite:///{db}")
    try:
        match = re.fullmatch(
            r"baselined sidecar listening on 127\.0\.0\.1:(\d+) \(store sqlite:///.+\)", ready
        )
        assert match, ready
        with grpc.insecure_channel(f"127.0.0.1:{match.group(1)}") as channel:
            stub = pb_grpc.IngestStub(channel)
            reply = stub.IngestBatch(make_batch(latency=[0.25] * 42, at=time.time() - 1))
            assert reply.records_accepted == 42
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    store = SQLiteStore(str(db))
    try:
        partials = store.read_partials(MODEL, ENV, 0, 2**40)
        assert partials and all(p.writer.startswith("sub") for p in partials)
        assert sum(len(p.series) for p in partials) >= 1
    finally:
        store.close()


def test_run_exits_non_zero_with_a_message_when_the_port_is_taken(
    served: Running, tmp_path: Path
) -> None:
    script = _RUN.replace('"127.0.0.1:0"', f'"127.0.0.1:{served.sidecar.port}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASELINED_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto")])
    result = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{tmp_path / 'x.db'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{served.sidecar.port}" in result.stderr


def test_run_exits_non_zero_with_a_message_when_the_store_cannot_be_opened(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASELINED_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto")])
    result = subprocess.run(
        [sys.executable, "-c", _RUN, "redis://:hunter2@127.0.0.1:1/0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "cannot open store redis://:***@127.0.0.1:1/0" in result.stderr
    assert "hunter2" not in result.stderr


def test_health_listener_on_tcp_beside_a_unix_socket(tmp_path: Path, clock: FakeClock) -> None:
    """kubelet grpc probes dial TCP: health_listen serves grpc.health.v1 there, and
    only that, with the same state as the main listener."""
    path = tmp_path / "baselined.sock"
    sidecar = Sidecar(settings_for(listen=f"unix:{path}", health_listen="127.0.0.1:0"), clock=clock)
    loop = asyncio.new_event_loop()

    async def probe() -> tuple[int, grpc.StatusCode | None]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.health_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            try:
                await pb_grpc.IngestStub(channel).IngestBatch(
                    make_batch(latency=[0.1], at=T0 - 1), timeout=5
                )
                code = None
            except grpc.aio.AioRpcError as err:
                code = err.code()
            return reply.status, code

    try:
        loop.run_until_complete(sidecar.start())
        assert sidecar.health_port > 0
        status, ingest_code = loop.run_until_complete(probe())
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert ingest_code == grpc.StatusCode.UNIMPLEMENTED  # ingest stays on the socket
    finally:
        loop.run_until_complete(sidecar.stop(0))
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def test_health_listener_on_a_busy_port_fails_to_start(clock: FakeClock) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        sidecar = Sidecar(settings_for(health_listen=f"127.0.0.1:{port}"), clock=clock)
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(StartError, match="for health checks"):
                loop.run_until_complete(sidecar.start())
        finally:
            loop.run_until_complete(sidecar.stop(0))
            loop.close()
