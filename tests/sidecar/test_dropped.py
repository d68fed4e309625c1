"""Middleware-reported drops: the sidecar validates ``SampleBatch.dropped``, keeps
each sender's latest cumulative counts, and exports their sum as
``baselined.samples.dropped``; end to end with a real Shadow and a real sidecar."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from baselined.v1 import baselined_pb2 as pb
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import sidecar.windows as windows_module
from middleware import Backoff, Shadow
from sidecar.errors import InvalidInput
from sidecar.server import Sidecar
from sidecar.settings import Settings
from sidecar.stores import SQLiteStore
from sidecar.telemetry import Telemetry
from sidecar.windows import Windows
from tests.middleware.conftest import wait_until

NOW = 1_700_000_000.0
METRIC = "baselined.samples.dropped"


def batch(
    dropped: dict[str, int], *, instance: str = "pod-a:1", model: str = "m", env: str = "prod"
) -> pb.SampleBatch:
    b = pb.SampleBatch(
        model=model, environment=env, instance=instance, timestamps=[NOW], dropped=dropped
    )
    b.numeric.add(name="latency_seconds", kind=pb.SIGNAL_KIND_LATENCY, values=[0.01])
    return b


def live_windows() -> Windows:
    return Windows(Settings(instance="t"), SQLiteStore(), clock=lambda: NOW)


def dropped_points(reader: InMemoryMetricReader) -> dict[tuple[str, str, str], int]:
    """(model, environment, reason) -> value of the dropped counter."""
    data = reader.get_metrics_data()
    found: dict[tuple[str, str, str], int] = {}
    if data is None:
        return found
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name != METRIC:
                    continue
                assert m.data.is_monotonic  # type: ignore[union-attr]
                for p in m.data.data_points:
                    a = dict(p.attributes or {})
                    found[(str(a["model"]), str(a["environment"]), str(a["reason"]))] = int(
                        p.value  # type: ignore[union-attr]
                    )
    return found


def test_counts_are_summed_over_instances_and_never_go_back() -> None:
    w = live_windows()
    w.ingest(batch({"queue_full": 5, "extractor_error": 0}, instance="pod-a:1"))
    w.ingest(batch({"queue_full": 2}, instance="pod-b:1"))
    w.ingest(batch({"queue_full": 3}, instance="pod-a:1"))  # an older batch arriving late
    w.ingest(batch({"queue_full": 7}, instance="pod-b:1"))
    w.ingest(batch({"queue_full": 1}, instance="pod-a:1", env="staging"))
    w.ingest(batch({}, instance="pod-c:1"))  # no counts: nothing to report
    assert w.dropped_counts() == {
        ("m", "prod", "queue_full"): 5 + 7,
        ("m", "prod", "extractor_error"): 0,
        ("m", "staging", "queue_full"): 1,
    }


def test_a_restarted_sender_adds_to_the_total_under_its_new_instance() -> None:
    w = live_windows()
    w.ingest(batch({"sidecar_unavailable": 40}, instance="pod-a:100"))
    w.ingest(batch({"sidecar_unavailable": 3}, instance="pod-a:101"))  # new pid, counts restart
    assert w.dropped_counts() == {("m", "prod", "sidecar_unavailable"): 43}


def test_forgotten_senders_stay_in_the_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windows_module, "_DROP_INSTANCES", 3)
    w = live_windows()
    for i in range(10):
        w.ingest(batch({"queue_full": i + 1}, instance=f"worker:{i}"))
    w.ingest(batch({"queue_full": 100}, instance="worker:9"))  # a kept sender moves on
    assert len(w._dropped) == 3
    assert w.dropped_counts() == {("m", "prod", "queue_full"): sum(range(1, 10)) + 100}


@pytest.mark.parametrize(
    ("dropped", "message"),
    [
        ({f"r{i}": 1 for i in range(33)}, "dropped has 33 reasons, over the limit of 32"),
        ({"queue\nfull": 1}, "control character U\\+000A"),
        ({"": 1}, "dropped reason is empty"),
    ],
)
def test_bad_counts_refuse_the_batch_and_change_nothing(
    dropped: dict[str, int], message: str
) -> None:
    w = live_windows()
    with pytest.raises(InvalidInput, match=message):
        w.ingest(batch(dropped))
    assert w.dropped_counts() == {}
    assert w.stats()["records_rejected"] == 1
    w.ingest(batch({f"r{i}": 1 for i in range(32)}))  # 32 is fine
    assert len(w.dropped_counts()) == 32


def test_the_counter_reports_the_sum_with_model_environment_and_reason() -> None:
    reader = InMemoryMetricReader()
    tel = Telemetry.from_settings(Settings(instance="t"), metric_reader=reader, environ={})
    w = live_windows()
    tel.attach(w)
    try:
        assert dropped_points(reader) == {}
        w.ingest(batch({"queue_full": 4, "signal_overflow": 1}, instance="a:1"))
        w.ingest(batch({"queue_full": 6}, instance="b:1", model="other"))
        assert dropped_points(reader) == {
            ("m", "prod", "queue_full"): 4,
            ("m", "prod", "signal_overflow"): 1,
            ("other", "prod", "queue_full"): 6,
        }
        w.ingest(batch({"queue_full": 9, "signal_overflow": 1}, instance="a:1"))
        assert dropped_points(reader)[("m", "prod", "queue_full")] == 9
    finally:
        tel.shutdown(1.0)


# -- end to end: a real Shadow shipping to a real sidecar ------------------------------


class Served:
    """A Sidecar (SQLite :memory:) on 127.0.0.1 with an in-memory metric reader,
    served from an event loop in a background thread."""

    def __init__(self, port: int = 0) -> None:
        self.reader = InMemoryMetricReader()
        settings = Settings.resolve(
            {"listen": f"127.0.0.1:{port}", "store": ":memory:", "instance": "e2e",
             "flush_interval": 3600.0, "shutdown_grace": 0.5},
            env={},
        )  # fmt: skip
        self.telemetry = Telemetry.from_settings(settings, metric_reader=self.reader, environ={})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sidecar = Sidecar(settings, telemetry=self.telemetry)
        self.run(self.sidecar.start())
        self.port = self.sidecar.port
        self.stopped = False

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.stopped = True
        self.run(self.sidecar.stop(0.2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
        self.telemetry.shutdown(1.0)

    def dropped(self, model: str = "fraud", env: str = "production") -> dict[str, int]:
        return {
            r: n for (m, e, r), n in dropped_points(self.reader).items() if (m, e) == (model, env)
        }


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served()
    yield s
    s.stop()


def _features(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    row = args[0]
    if row == "bad":
        raise KeyError("amount")
    if row == "probe":  # narrow: loses nothing
        return {"amount": 0.0}
    if row == "burst":  # a batched call: one record per row
        return [{"amount": float(i)} for i in range(300)]
    return {"amount": float(row), "a": 1.0, "b": 2.0, "c": 3.0}


def _shadow(target: str, **kw: Any) -> Shadow:
    return Shadow(
        model="fraud",
        target=target,
        features=_features,
        outputs=lambda result: None,
        max_signals=4,  # latency, error, amount and one more: wide rows overflow
        flush_interval=0.05,
        atexit=False,
        backoff=Backoff(initial=0.01, maximum=0.05),
        environ={},
        **kw,
    )


def _reported(served: Served, sh: Shadow, fn: Any) -> bool:
    """Send one more record; True once the sidecar's counter equals the Shadow's own counts."""
    fn("probe")
    sh.flush()
    return served.dropped() == sh.stats().records_dropped


def test_middleware_drops_appear_in_the_sidecar_metric_by_reason(served: Served) -> None:
    sh = _shadow(f"127.0.0.1:{served.port}", batch_size=1, queue_batches=1)
    fn = sh.wrap(lambda row: "ok")
    try:
        for row in ("bad", 2, "bad", 3, "burst"):
            assert fn(row) == "ok"
        assert wait_until(lambda: _reported(served, sh, fn))
        got = served.dropped()
        assert got["extractor_error"] == 2
        assert got["signal_overflow"] >= 2  # every wide row lost a signal
        assert got["queue_full"] > 0  # the burst of 300 records overran a one-batch queue
        assert got["sidecar_unavailable"] == 0
        assert sh.stats().sampled + got["queue_full"] == 2 + 300 + sh.stats().calls - 5
    finally:
        sh.close(timeout=2.0)


def test_drops_while_the_sidecar_was_down_are_reported_after_its_restart() -> None:
    first = Served()
    sh = _shadow(f"127.0.0.1:{first.port}", batch_size=8)
    fn = sh.wrap(lambda row: "ok")
    second: Served | None = None
    try:
        assert wait_until(lambda: _reported(first, sh, fn))
        assert first.dropped()["sidecar_unavailable"] == 0
        port = first.port
        first.stop()

        def dropping() -> bool:
            for _ in range(16):
                fn("probe")
            return sh.stats().records_dropped["sidecar_unavailable"] > 0

        assert wait_until(dropping)
        second = Served(port)
        assert wait_until(lambda: _reported(second, sh, fn), timeout=15.0)
        assert second.dropped()["sidecar_unavailable"] > 0
        assert second.dropped()["extractor_error"] == 0
    finally:
        sh.close(timeout=2.0)
        for s in (first, second):
            if s is not None and not s.stopped:
                s.stop()


def test_prometheus_exposes_the_counter_under_its_listed_name() -> None:
    settings = Settings.resolve(
        {"prometheus_metrics": True, "otel_exporter": "none", "store": ":memory:"}, env={}
    )
    tel = Telemetry.from_settings(settings, environ={})
    w = live_windows()
    tel.attach(w)
    try:
        w.ingest(batch({"queue_full": 4}))
        body = tel.metrics_text()[0].decode()
    finally:
        tel.shutdown(1.0)
    assert (
        'baselined_samples_dropped_total{environment="prod",model="m",reason="queue_full"} 4.0'
        in body
    )
