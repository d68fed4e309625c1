"""Impact reports (issue 4): every change event starts a before/after comparison.

Real parts throughout: SQLite in tmp_path and the real Redis server (unique key
prefix), the sidecar over real gRPC on port 0, the CLI against it, in-memory
OpenTelemetry exporters, and ``baselined replay`` on a simulated clock.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.alerts import Alerter
from sidecar.cli import main as cli
from sidecar.errors import ConfigError, NotFound
from sidecar.events import EventLog
from sidecar.guardrails import Guardrails
from sidecar.impact import (
    IMPACT_EVENT_NAME,
    IMPACT_SPAN_NAME,
    ImpactChecker,
    ImpactPolicy,
    ImpactTelemetry,
    event_span_context,
    report_id,
    samples_for_width,
)
from sidecar.records import EventRecord, ImpactEffect, ImpactRecord
from sidecar.replay import replay
from sidecar.settings import Settings
from sidecar.stores.base import Store
from sidecar.stores.redis import RedisStore
from sidecar.stores.sqlite import SCHEMA_VERSION, SQLiteStore
from sidecar.windows import Windows
from tests.sidecar.test_server import Running, settings_for

T0 = 1_767_225_600.0  # on every bucket grid
MODEL, ENV = "fraud", "prod"
RATE = 100  # samples per simulated second
BATCH = 1000


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def batch(t0: float, rng: np.random.Generator, *, shift: float = 0.0) -> pb.SampleBatch:
    """BATCH rows from ``t0`` at RATE per second: two numeric features (``x`` shifted
    by ``shift`` standard deviations), a categorical one and latency."""
    times = t0 + np.arange(BATCH) / RATE
    b = pb.SampleBatch(model=MODEL, version="7", environment=ENV, timestamps=times.tolist())
    b.numeric.add(
        name="x", kind=pb.SIGNAL_KIND_FEATURE, values=(rng.normal(size=BATCH) + shift).tolist()
    )
    b.numeric.add(name="y", kind=pb.SIGNAL_KIND_FEATURE, values=rng.lognormal(size=BATCH).tolist())
    b.categorical.add(
        name="country",
        kind=pb.SIGNAL_KIND_FEATURE,
        values=rng.choice(["DE", "FR", "US"], size=BATCH).tolist(),
    )
    b.numeric.add(
        name="lat",
        kind=pb.SIGNAL_KIND_LATENCY,
        values=rng.lognormal(-3.0, 0.3, size=BATCH).tolist(),
    )
    b.slices.add(name="node", values=["gpu-7" if i % 4 == 0 else "gpu-8" for i in range(BATCH)])
    return b


def feed(
    send: Callable[[pb.SampleBatch], object],
    clock: Clock,
    n: int,
    rng: np.random.Generator,
    *,
    shift: float = 0.0,
) -> None:
    """``n`` samples starting at the clock, which moves with them."""
    for _ in range(n // BATCH):
        b = batch(clock.now, rng, shift=shift)
        clock.now += BATCH / RATE
        send(b)


class Engine:
    """Windows, an event log and an impact checker over one store, on a fake clock."""

    def __init__(self, store: Store, clock: Clock, **policy: Any) -> None:
        self.clock = clock
        self.store = store
        settings = Settings(
            instance="t", store=":memory:", bucket_seconds=10, retention_seconds=10**9
        )
        self.windows = Windows(settings, store, clock=clock, writer="t")
        self.log = EventLog(store, clock=clock)
        self.alerter = Alerter(clock=clock)
        self.spans = InMemorySpanExporter()
        self.logs = InMemoryLogRecordExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        self.checker = ImpactChecker(
            store,
            Guardrails.load(None),
            lambda start, end: self.log.list(None, None, start=start, end=end, limit=1000),
            bucket_seconds=10,
            policy=ImpactPolicy(**policy),
            clock=clock,
            alerter=self.alerter,
            telemetry=ImpactTelemetry(tracer_provider.get_tracer("t"), logger_provider),
        )

    def ingest(self, b: pb.SampleBatch) -> None:
        self.windows.ingest(b)

    def settle(self, seconds: float = 70.0) -> list[ImpactRecord]:
        """Let ``seconds`` pass (past the minimum wait), flush and run one round."""
        self.clock.now += seconds
        self.windows.flush()
        return self.checker.run_once()


def scenario(
    store: Store, clock: Clock, *, shift: float, seed: int = 0, **policy: Any
) -> tuple[Engine, EventRecord]:
    """20,000 samples, an event, 20,000 samples shifted by ``shift`` sd in ``x``."""
    engine = Engine(store, clock, **policy)
    rng = np.random.default_rng(seed)
    feed(engine.ingest, engine.clock, 20_000, rng)
    event = engine.log.record(
        "library_update",
        time=engine.clock.now,
        model=MODEL,
        attributes={"package": "numpy", "from": "1.26.4", "to": "2.1.0"},
        source="cli",
    )
    engine.windows.flush()
    assert engine.checker.run_once() == []  # started, nothing after the event yet
    feed(engine.ingest, engine.clock, 20_000, rng, shift=shift)
    return engine, event


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    """A real store whose clock (retention) is the test's simulated one."""
    if request.param == "sqlite":
        s: Store = SQLiteStore(str(tmp_path / "impact.db"), clock=clock)
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisStore(url, prefix=request.getfixturevalue("redis_prefix"), clock=clock)
    yield s
    s.close()


# -- verdicts ------------------------------------------------------------------------


def test_benign_event_with_20000_samples_each_side_is_no_measurable_change(
    store: Store, clock: Clock
) -> None:
    engine, event = scenario(store, clock, shift=0.0)
    [report] = engine.settle()
    assert report.verdict == "no_change", report.summary
    assert report.samples_before == 20_000 and report.samples_after == 20_000
    assert report.event.id == event.id and report.environment == ENV
    assert "no measurable change" in report.summary
    # The bounds that justify it: every tested interval inside margin x minor guardrail.
    assert report.effects and all(e.within and not e.tier for e in report.effects)
    ks = next(e for e in report.effects if e.signal == "x" and e.effect == "ks")
    assert ks.upper < ks.margin == pytest.approx(3.5 * 0.02) and ks.guardrail == 0.02
    stored = store.get_impact_report(report.id)
    assert stored == report
    assert engine.alerter.alerts() == []  # no change raises nothing


def test_shift_of_0_2_sd_after_an_event_is_a_regression_naming_the_feature(
    store: Store, clock: Clock
) -> None:
    engine, event = scenario(store, clock, shift=0.2)
    [report] = engine.settle()
    assert report.verdict == "regression", report.summary
    fired = [e for e in report.effects if e.tier]
    assert {e.signal for e in fired} == {"x"}  # only the shifted feature
    assert fired[0].effect == "ks" and fired[0].lower >= fired[0].guardrail
    assert "x KS distance" in report.summary and "numpy 1.26.4 -> 2.1.0" in report.summary
    # ... and it feeds alerts like any other finding, naming the event.
    [alert] = engine.alerter.alerts()
    assert alert.labels["event_id"] == event.id and alert.labels["signal"] == "x"
    assert alert.fingerprint == report.alert_fingerprint
    assert store.get_impact_report(report.id).verdict == "regression"


def test_pending_until_enough_samples_then_inconclusive_with_samples_needed() -> None:
    clock = Clock()
    store = SQLiteStore(clock=clock)
    engine = Engine(store, clock, max_wait=600.0)
    rng = np.random.default_rng(5)
    feed(engine.ingest, engine.clock, 20_000, rng)
    event = engine.log.record(
        "deploy", time=engine.clock.now, model=MODEL, version="7", source="cli"
    )
    feed(engine.ingest, engine.clock, 5_000, rng)
    assert engine.settle() == []
    [pending] = store.list_impact_reports(MODEL, ENV, 0, math.inf, 10)
    assert pending.verdict == "pending" and pending.samples_needed >= 15_000
    assert pending.scope == {"slice": "*", "version": "7"}
    [report] = engine.settle(600.0)  # the maximum wait runs out
    assert report.verdict == "inconclusive" and report.event.id == event.id
    assert report.samples_after == 5_000 and report.samples_needed >= 15_000
    assert "more samples needed" in report.summary and "only 5,000 samples after" in report.summary
    assert engine.checker.pending == 0


def test_node_scope_compares_that_slice_and_notes_an_unknown_image() -> None:
    clock = Clock()
    store = SQLiteStore(clock=clock)
    engine = Engine(store, clock, min_samples=4_000)
    rng = np.random.default_rng(2)
    feed(engine.ingest, engine.clock, 20_000, rng)
    engine.log.record(
        "node_change",
        time=engine.clock.now,
        model=MODEL,
        environment=ENV,
        node="gpu-7",
        image="sha256:ab",
        source="cli",
    )
    feed(engine.ingest, engine.clock, 20_000, rng)
    engine.settle()  # 5,000 samples a side: too few to bound KS inside its margin yet
    [report] = store.list_impact_reports(MODEL, ENV, 0, math.inf, 10)
    assert report.verdict == "pending" and report.scope["slice"] == "node=gpu-7"
    assert report.samples_after == 5_000  # a quarter of the rows run on gpu-7
    assert "image 'sha256:ab'" in report.scope_note


def test_samples_for_width_follows_sqrt_log_n_over_n() -> None:
    m = samples_for_width(10_000, 0.04, 0.02)
    assert math.sqrt(math.log(m) / m) == pytest.approx(
        0.5 * math.sqrt(math.log(1e4) / 1e4), rel=1e-6
    )
    assert samples_for_width(10_000, 0.02, 0.04) == 10_000
    assert samples_for_width(10_000, 0.04, 0.0) == math.inf


def test_impact_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="impact_min_wait"):
        Settings.resolve({"impact_min_wait": 100, "impact_max_wait": 10}, env={})
    with pytest.raises(ConfigError, match="impact_min_samples"):
        Settings.resolve({"impact_min_samples": 0}, env={})
    assert ImpactPolicy.from_settings(Settings.resolve({}, env={})) == ImpactPolicy()


# -- the simulation: impact checks do not cry wolf ---------------------------------------


@pytest.mark.slow
def test_no_change_streams_never_give_a_regression_over_seeds() -> None:
    verdicts = []
    for seed in range(8):
        clock = Clock()
        engine, _ = scenario(SQLiteStore(clock=clock), clock, shift=0.0, seed=100 + seed)
        [report] = engine.settle()
        verdicts.append(report.verdict)
    assert "regression" not in verdicts
    assert verdicts.count("no_change") >= 7, verdicts


# -- telemetry -------------------------------------------------------------------------


def test_a_decided_report_is_a_log_record_inside_a_span_linked_to_the_event() -> None:
    clock = Clock()
    engine, event = scenario(SQLiteStore(clock=clock), clock, shift=0.2)
    [report] = engine.settle()
    [span] = engine.spans.get_finished_spans()
    assert span.name == IMPACT_SPAN_NAME
    assert (
        span.attributes is not None and span.attributes["baselined.impact.verdict"] == "regression"
    )
    [link] = span.links
    assert link.context.trace_id == event_span_context(event).trace_id
    assert link.attributes is not None and link.attributes["baselined.event.id"] == event.id
    [record] = engine.logs.get_finished_logs()
    assert record.log_record.event_name == IMPACT_EVENT_NAME
    assert record.log_record.body == report.summary
    assert record.log_record.trace_id == span.context.trace_id  # emitted inside the span


def test_event_traceparent_is_the_link_when_given() -> None:
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    event = EventRecord(
        type="deploy", time=T0, model=MODEL, id="ev-1", attributes={"traceparent": parent}
    )
    assert event_span_context(event).trace_id == int("ab" * 16, 16)


# -- storage -----------------------------------------------------------------------------


def _report(
    rid: str, *, model: str = MODEL, env: str = ENV, time: float = T0, verdict: str = "no_change"
) -> ImpactRecord:
    event = EventRecord(type="deploy", time=time, model=model, id=f"ev-{rid}")
    effect = ImpactEffect(
        "x", "feature", "*", "ks", 0.01, 0.0, math.inf, "distance", "up", 0.02, 0.07
    )
    return ImpactRecord(
        id=rid, model=model, environment=env, event=event, verdict=verdict, effects=(effect,)
    )


def test_store_puts_gets_and_lists_reports(store: Store) -> None:
    store.put_impact_report(_report("im-a", time=T0))
    store.put_impact_report(_report("im-b", time=T0 + 10, verdict="regression"))
    store.put_impact_report(_report("im-c", model="other", time=T0 + 5))
    store.put_impact_report(_report("im-a", time=T0, verdict="regression"))  # replaces
    assert store.get_impact_report("im-a").verdict == "regression"
    assert math.isinf(store.get_impact_report("im-a").effects[0].upper)  # survives JSON
    with pytest.raises(NotFound, match="im-zzz"):
        store.get_impact_report("im-zzz")
    everything = store.list_impact_reports(None, None, 0, math.inf, 10)
    assert [r.id for r in everything] == ["im-a", "im-c", "im-b"]  # by event time
    assert [r.id for r in store.list_impact_reports(MODEL, None, 0, math.inf, 10)] == [
        "im-a",
        "im-b",
    ]
    assert [r.id for r in store.list_impact_reports(None, None, 0, math.inf, 1)] == ["im-b"]
    assert [r.id for r in store.list_impact_reports(MODEL, ENV, T0 + 1, T0 + 11, 10)] == ["im-b"]
    assert store.list_impact_reports(MODEL, "staging", 0, math.inf, 10) == []
    picked = store.list_impact_reports(None, None, 0, math.inf, 10, verdicts=["regression"])
    assert [r.id for r in picked] == ["im-a", "im-b"]


def test_store_drops_reports_past_retention(store: Store) -> None:
    store.put_impact_report(_report("im-old", time=1000.0))
    store.put_impact_report(_report("im-new", time=T0), retention_seconds=3600.0 * 24 * 365)
    assert [r.id for r in store.list_impact_reports(None, None, 0, math.inf, 10)] == ["im-new"]
    with pytest.raises(NotFound):
        store.get_impact_report("im-old")


def test_sqlite_version_3_file_gains_the_impact_table(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    clock = Clock()
    SQLiteStore(str(path), clock=clock).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE impact_reports")
    conn.execute("UPDATE schema_version SET version = 3")
    conn.commit()
    conn.close()
    store = SQLiteStore(str(path), clock=clock)
    store.put_impact_report(_report("im-a"))
    assert store.get_impact_report("im-a").id == "im-a"
    store.close()
    conn = sqlite3.connect(path)
    assert (
        conn.execute("SELECT version FROM schema_version").fetchall()
        == [(SCHEMA_VERSION,)]
        == [(4,)]
    )
    conn.close()


# -- gRPC and the CLI against a running sidecar ---------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Running, Clock]]:
    clock = Clock()
    store = SQLiteStore(str(tmp_path / "served.db"), clock=clock)
    running = Running(settings_for(bucket_seconds=10), store=store, clock=clock)
    yield running, clock
    running.stop()


def _decide(running: Running, clock: Clock, *, shift: float, model: str = MODEL) -> pb.Event:
    """Real gRPC ingest and RecordEvent, then one check round of the sidecar."""
    rng = np.random.default_rng(11)
    events = pb_grpc.EventsStub(running.channel)

    def send(b: pb.SampleBatch) -> None:
        b.model = model
        running.ingest.IngestBatch(b)

    feed(send, clock, 20_000, rng)
    recorded = events.RecordEvent(
        pb.RecordEventRequest(
            event=pb.Event(
                type=pb.EVENT_TYPE_CONFIG_CHANGE, time=clock.now, model=model, environment=ENV
            )
        )
    )
    running.run(running.sidecar.check())
    feed(send, clock, 20_000, rng, shift=shift)
    clock.now += 70.0
    running.run(running.sidecar.check())
    return recorded


def test_verdicts_over_grpc_and_the_cli(
    served: tuple[Running, Clock], capsys: pytest.CaptureFixture[str]
) -> None:
    running, clock = served
    benign = _decide(running, clock, shift=0.0, model="benign")
    shifted = _decide(running, clock, shift=0.2, model="shifted")
    impact = pb_grpc.ImpactStub(running.channel)
    listed = impact.ListImpactReports(pb.ListImpactReportsRequest()).reports
    verdicts = {r.event.id: r.verdict for r in listed}
    assert verdicts == {
        benign.id: pb.IMPACT_VERDICT_NO_CHANGE,
        shifted.id: pb.IMPACT_VERDICT_REGRESSION,
    }
    regression = impact.GetImpactReport(pb.GetImpactReportRequest(id=report_id(shifted.id, ENV)))
    assert [e.signal for e in regression.effects if e.severity] == ["x"]
    only = impact.ListImpactReports(
        pb.ListImpactReportsRequest(verdicts=[pb.IMPACT_VERDICT_NO_CHANGE])
    )
    assert [r.model for r in only.reports] == ["benign"]
    # The regression raised an alert naming the event.
    alerts = pb_grpc.AlertsStub(running.channel).ListAlerts(pb.ListAlertsRequest()).alerts
    assert [a.labels["event_id"] for a in alerts if "event_id" in a.labels] == [shifted.id]

    target = ("--target", running.sidecar.address)
    assert cli(["impact", "list", *target]) == 0
    out = capsys.readouterr().out
    assert "no_change" in out and "regression" in out and "20,000/20,000" in out
    assert cli(["impact", "list", "--model", "shifted", "--json", *target]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in data["reports"]] == ["IMPACT_VERDICT_REGRESSION"]
    assert cli(["impact", "show", report_id(benign.id, ENV), *target]) == 0
    out = capsys.readouterr().out
    assert "no_change" in out and "no measurable change" in out and "inside" in out
    assert cli(["impact", "show", report_id(shifted.id, ENV), "--json", *target]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["verdict"] == "IMPACT_VERDICT_REGRESSION" and shown["event"]["id"] == shifted.id


def test_bad_requests_get_a_clear_status_and_message(
    served: tuple[Running, Clock], capsys: pytest.CaptureFixture[str]
) -> None:
    running, _ = served
    impact = pb_grpc.ImpactStub(running.channel)
    with pytest.raises(grpc.RpcError) as info:
        impact.GetImpactReport(pb.GetImpactReportRequest(id=""))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as info:
        impact.GetImpactReport(pb.GetImpactReportRequest(id="im-nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as info:
        impact.ListImpactReports(pb.ListImpactReportsRequest(verdicts=[9]))  # type: ignore[list-item]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "verdict" in info.value.details()  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as info:
        impact.ListImpactReports(pb.ListImpactReportsRequest(start=10, end=5))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]

    target = ("--target", running.sidecar.address)
    assert cli(["impact", "show", "im-nope", *target]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert cli(["impact", "list", "--limit", "0", *target]) == 2
    assert "--limit" in capsys.readouterr().err
    assert cli(["impact", "list", "--since", "soon", *target]) == 2
    assert "--since" in capsys.readouterr().err
    assert cli(["impact", "list", *target]) == 0
    assert "no impact reports" in capsys.readouterr().out


# -- replay --------------------------------------------------------------------------------


def _replay_lines(shift: float, *, n: int = 20_000, seed: int = 4, tail: int = 0) -> list[str]:
    """``n`` samples before an event and ``n + tail`` after it, ``x`` moved by ``shift``."""
    rng = np.random.default_rng(seed)
    lines: list[str] = []
    for i in range(2 * n + tail):
        t = T0 + i / RATE  # exact times: the event sits on a bucket boundary
        if i == n:
            lines.append(
                json.dumps(
                    {
                        "kind": "event",
                        "time": t,
                        "model": MODEL,
                        "environment": ENV,
                        "type": "library_update",
                        "attributes": {"package": "numpy"},
                    }
                )
            )
        x = float(rng.normal()) + (shift if i >= n else 0.0)
        lines.append(
            json.dumps(
                {
                    "kind": "sample",
                    "time": t,
                    "model": MODEL,
                    "environment": ENV,
                    "signals": {"x": x, "y": float(rng.lognormal())},
                }
            )
        )
    return lines


@pytest.mark.parametrize(("shift", "verdict"), [(0.0, "no_change"), (0.2, "regression")])
def test_replay_writes_impact_lines_beside_alert_lines(shift: float, verdict: str) -> None:
    """The input runs on 90 s past 20,000 samples after the event: a regression is
    decided by then and fires an alert naming the event, resolved 30 s later
    (``alert_seconds``) as the sidecar resolves it; no change fires nothing."""
    out = io.StringIO()
    summary = replay(
        _replay_lines(shift, tail=90 * RATE),
        guardrails=Guardrails.load(None),
        out=out,
        impact=ImpactPolicy(alert_seconds=30.0),
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    impacts = [line for line in lines if line["kind"] == "impact"]
    assert {line["kind"] for line in lines} <= {"impact", "alert"}
    [line] = impacts
    assert line["verdict"] == verdict and line["model"] == MODEL and line["environment"] == ENV
    assert line["event"]["type"] == "library_update" and line["event"]["id"] == "line-20001"
    assert line["samples_before"] == 20_000 and line["samples_after"] >= 20_000
    assert line["time"] >= line["event"]["time"] + 60.0  # the minimum wait, on the simulated clock
    alerts = [a for a in lines if a["kind"] == "alert"]  # no baseline: impact alerts only
    if verdict == "regression":
        assert {e["signal"] for e in line["effects"] if e["tier"]} == {"x"}
        firing, resolved = alerts
        assert (firing["state"], resolved["state"]) == ("firing", "resolved")
        for alert in alerts:
            assert alert["fingerprint"] == firing["fingerprint"]
            assert alert["labels"]["alertname"] == "BaselinedImpactRegression"
            assert alert["labels"]["event_id"] == "line-20001"
            assert alert["labels"]["event_type"] == "library_update"
            assert alert["labels"]["impact_report"] == line["report_id"]
            assert alert["labels"]["signal"] == "x"
            assert "after library_update (line-20001)" in alert["summary"]
            assert alert["series"][0]["signal"] == "x" and alert["series"][0]["tier"]
        assert firing["time"] == line["time"]  # raised in the round that decided it
        assert resolved["time"] >= firing["time"] + 30.0 and resolved["resolved_at"]
        assert (summary.alerts_fired, summary.alerts_resolved) == (1, 1)
    else:
        assert all(e["within"] for e in line["effects"])
        assert alerts == [] and summary.alerts_fired == 0
    assert summary.impact_reports == {verdict: 1}
    assert f"1 impact reports (1 {verdict})" in summary.describe()


def test_replay_ends_undecided_checks_as_inconclusive() -> None:
    out = io.StringIO()
    replay(_replay_lines(0.0, n=2_000), guardrails=Guardrails.load(None), out=out)
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["kind"] == "impact" and line["verdict"] == "inconclusive"
    assert line["samples_needed"] >= 18_000 and "the input ended" in line["summary"]
