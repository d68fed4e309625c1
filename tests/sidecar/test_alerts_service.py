"""The ``Alerts`` service over real gRPC (127.0.0.1, port 0): WatchAlerts,
ListAlerts, Compare; the sidecar's background comparisons end to end on real
SQLite; and the ``alerts`` and ``compare`` CLI commands against it."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

from middleware import Client, ClientError
from sidecar.alerts import Alert, Alerter
from sidecar.cli import main
from sidecar.governance import Governance
from sidecar.guardrails import Tier
from sidecar.server import SERVICE_NAMES, Sidecar, build_sinks
from sidecar.settings import Settings
from sidecar.sinks.alertmanager import AlertmanagerSink
from sidecar.sinks.base import alert_annotations, alert_labels
from tests.sidecar.test_alerts import PLAYBOOK, finding, result
from tests.sidecar.test_baselines import ENV, MODEL, make_batch

_T = TypeVar("_T")


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.closed = False

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


class Served:
    """A Sidecar on an event loop in a background thread, with an Alerts stub."""

    def __init__(
        self, tmp_path: Path, *, sinks_from_settings: bool = False, **overrides: Any
    ) -> None:
        values: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "store": f"sqlite:///{tmp_path / 'baselined.db'}",
            "instance": "test",
            "flush_interval": 3600.0,
            "check_interval": 3600.0,
            "shutdown_grace": 1.0,
        }
        values.update(overrides)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sink = Recorder()
        sinks = None if sinks_from_settings else [self.sink]
        self.sidecar = Sidecar(Settings.resolve(values, env={}), sinks=sinks)
        self.run(self.sidecar.start())
        self.target = f"127.0.0.1:{self.sidecar.port}"
        self.channel = grpc.insecure_channel(self.target)
        self.alerts = pb_grpc.AlertsStub(self.channel)  # type: ignore[no-untyped-call]
        self.client = Client(self.target)
        self.stopped = False

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.client.close()
        self.channel.close()
        self.run(self.sidecar.stop(1.0))
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = Served(tmp_path)
    yield running
    running.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def push(served: Served, *args: Any, **kwargs: Any) -> list[Alert]:
    """Feed the sidecar's alerter a hand-made result at the current time."""
    return served.sidecar.alerter.observe(result(*args, at=time.time(), **kwargs), PLAYBOOK)


def test_the_alerts_service_is_registered_for_health_and_reflection() -> None:
    assert "baselined.v1.Alerts" in SERVICE_NAMES


def test_watch_alerts_streams_each_change_pushed_by_the_alerter(served: Served) -> None:
    served.sidecar.alerter.consecutive = 1
    stream = served.alerts.WatchAlerts(pb.WatchAlertsRequest(environment=ENV), timeout=20)
    wait_for(lambda: served.sidecar.alerter.watchers == 1)

    push(served, finding(Tier.SEVERE), environment="staging")  # filtered out
    push(served, finding(Tier.MODERATE))
    alert = next(stream)
    stream.cancel()

    assert alert.environment == ENV and alert.model == MODEL
    assert alert.severity == pb.SEVERITY_MODERATE and alert.state == pb.ALERT_STATE_FIRING
    assert alert.summary.endswith("p99 +18.2% (>= +9.1% at 99% confidence), tier moderate")
    assert alert.playbook_url == PLAYBOOK and alert.labels["severity"] == "moderate"
    (series,) = alert.series
    assert (series.signal, series.kind, series.live_count) == (
        "latency_seconds",
        pb.SIGNAL_KIND_LATENCY,
        4000,
    )
    (effect,) = series.effects
    assert (effect.name, effect.lower, effect.upper, effect.unit) == (
        "p99_rel",
        0.091,
        0.27,
        "relative",
    )
    assert (effect.severity, effect.guardrail) == (pb.SEVERITY_MODERATE, 0.10)
    wait_for(lambda: served.sidecar.alerter.watchers == 0)  # a cancelled watch unsubscribes
    assert [a.environment for a in served.sink.sent] == ["staging", ENV]  # sinks see everything


def test_stopping_the_sidecar_ends_open_watches(tmp_path: Path) -> None:
    running = Served(tmp_path)
    try:
        stream = running.alerts.WatchAlerts(pb.WatchAlertsRequest(), timeout=20)
        wait_for(lambda: running.sidecar.alerter.watchers == 1)
        started = time.monotonic()
        running.run(running.sidecar.stop(10.0))
        assert list(stream) == []  # the stream ends cleanly instead of holding the 10 s grace
        assert time.monotonic() - started < 8
        assert running.sink.closed
    finally:
        running.stop()


def test_list_alerts_filters_by_environment_and_resolution(served: Served) -> None:
    alerter = served.sidecar.alerter
    alerter.consecutive, alerter.resolve_after = 1, 0.0
    push(served, finding(Tier.MINOR))
    push(served, finding(Tier.SEVERE), environment="staging")
    push(served, finding(None), environment="staging")

    firing = served.client.alerts()
    assert [(a.environment, a.state) for a in firing.alerts] == [(ENV, pb.ALERT_STATE_FIRING)]
    assert served.client.alerts(environment="staging").alerts == []
    (resolved,) = served.client.alerts(environment="staging", include_resolved=True).alerts
    assert resolved.state == pb.ALERT_STATE_RESOLVED and resolved.resolved_at > 0
    assert resolved.severity == pb.SEVERITY_SEVERE
    assert len(served.client.alerts(MODEL, include_resolved=True).alerts) == 2
    assert served.client.alerts("ranker", include_resolved=True).alerts == []


def test_compare_without_an_active_baseline_or_a_model_is_refused(served: Served) -> None:
    with pytest.raises(ClientError) as info:
        served.client.compare(MODEL, ENV)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "no active baseline" in info.value.details
    with pytest.raises(ClientError) as info:
        served.client.compare("", ENV)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


# -- end to end --------------------------------------------------------------------------


def ingest(client_target: str, latencies: np.ndarray, at: float) -> None:
    with grpc.insecure_channel(client_target) as channel:
        stub = pb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]
        batches = [
            make_batch(latency=latencies[i : i + 1000].tolist(), at=at, environment=ENV)
            for i in range(0, len(latencies), 1000)
        ]
        response = stub.Ingest(iter(batches), timeout=30)
        assert response.records_accepted == len(latencies)


@pytest.mark.slow
def test_a_regression_after_promotion_arrives_on_watch_and_in_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = Served(tmp_path, check_interval=0.2, flush_interval=0.1, bucket_seconds=1)
    try:
        rng = np.random.default_rng(7)
        ingest(running.target, rng.lognormal(-3.0, 0.3, 4000), at=time.time() - 30)
        baseline = running.client.freeze(MODEL, ENV, name="ref-1", reason="test")
        running.client.promote(baseline.id, reason="test")

        got: list[pb.Alert] = []

        def watch() -> None:
            for alert in Client(running.target).watch_alerts(MODEL, ENV):
                got.append(alert)
                return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        wait_for(lambda: running.sidecar.alerter.watchers == 1)
        time.sleep(1.1)  # live data from the next second on, inside the new epoch
        ingest(running.target, 2.0 * rng.lognormal(-3.0, 0.3, 4000), at=time.time())
        watcher.join(timeout=30)

        (alert,) = got
        assert alert.state == pb.ALERT_STATE_FIRING and alert.baseline_id == baseline.id
        assert alert.severity == pb.SEVERITY_SEVERE  # latency doubled: beyond +25 %
        (series,) = alert.series
        assert series.signal == "latency_seconds" and series.live_count == 4000
        fired = {e.name: e for e in series.effects if e.severity == pb.SEVERITY_SEVERE}
        assert "p50_rel" in fired and fired["p50_rel"].lower >= 0.25
        assert 0.8 < fired["p50_rel"].estimate < 1.2  # the true shift is +100 %
        assert "tier severe" in alert.summary

        assert main(["alerts", "list", "--json", "--target", running.target]) == 0
        listed = json.loads(capsys.readouterr().out)["alerts"]
        assert [(a["fingerprint"], a["severity"]) for a in listed] == [
            (alert.fingerprint, "SEVERITY_SEVERE")
        ]

        args = ["compare", "--json", "--model", MODEL, "-e", ENV, "--target", running.target]
        assert main(args) == 0
        compared = json.loads(capsys.readouterr().out)
        assert compared["baseline_id"] == baseline.id
        (finding_json,) = compared["findings"]
        assert finding_json["severity"] == "SEVERITY_SEVERE"
        assert int(finding_json["live_count"]) == 4000
        effects = {e["name"]: e for e in finding_json["effects"]}
        assert effects["p50_rel"]["lower"] >= 0.25

        assert main(["compare", "--model", MODEL, "-e", ENV, "--target", running.target]) == 0
        text = capsys.readouterr().out
        assert f"with baseline {baseline.id}" in text and "tier: severe" in text
        assert "p50_rel" in text
    finally:
        running.stop()


def test_cli_alerts_list_says_when_nothing_fires(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "list", "--target", served.target]) == 0
    assert capsys.readouterr().out.strip() == "no firing alerts"
    served.sidecar.alerter.consecutive = 1
    push(served, finding(Tier.MINOR))
    assert main(["alerts", "list", "--all", "--target", served.target]) == 0
    out = capsys.readouterr().out
    assert "firing" in out and "minor" in out and "fraud/prod latency_seconds p99 +18.2%" in out


def test_cli_alerts_watch_prints_each_change_as_a_json_line_until_the_stream_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = Served(tmp_path)
    try:
        running.sidecar.alerter.consecutive = 1
        running.sidecar.alerter.resolve_after = 0.0
        codes: list[int] = []
        args = ["alerts", "watch", "--json", "--target", running.target]
        watcher = threading.Thread(target=lambda: codes.append(main(args)), daemon=True)
        watcher.start()
        wait_for(lambda: running.sidecar.alerter.watchers == 1)
        push(running, finding(Tier.MINOR))
        push(running, finding(None))
        running.run(running.sidecar.stop(1.0))  # ends the stream: the command returns
        watcher.join(timeout=10)
    finally:
        running.stop()
    assert codes == [0]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(a["state"], a["severity"]) for a in lines] == [
        ("ALERT_STATE_FIRING", "SEVERITY_MINOR"),
        ("ALERT_STATE_RESOLVED", "SEVERITY_MINOR"),
    ]
    assert lines[0]["fingerprint"] == lines[1]["fingerprint"]


class Receiver:
    """A real HTTP server on loopback that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[dict[str, Any]] = queue.Queue()
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                bodies.put(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sinks_from_settings_deliver_alert_changes_to_a_webhook(tmp_path: Path) -> None:
    receiver = Receiver()
    running = Served(tmp_path, sinks_from_settings=True, webhook_url=receiver.url)
    try:
        running.sidecar.alerter.consecutive = 1
        push(running, finding(Tier.SEVERE))
        body = receiver.bodies.get(timeout=10)
    finally:
        running.stop()
        receiver.close()
    assert body["status"] == "firing"
    (alert,) = body["alerts"]
    assert alert["labels"]["severity"] == "severe" and alert["labels"]["model"] == MODEL
    assert alert["annotations"]["runbook_url"] == PLAYBOOK
    assert "p99 +18.2%" in alert["annotations"]["summary"]


def test_build_sinks_makes_what_the_settings_ask_for() -> None:
    assert build_sinks(Settings.resolve({"instance": "t"}, env={})) == []
    settings = Settings.resolve(
        {
            "instance": "t",
            "alertmanager_url": "http://127.0.0.1:9/",
            "webhook_url": "http://127.0.0.1:9/hook",
            "otel_logs": True,
            "alert_resend_interval": 5.0,
        },
        env={},
    )
    sinks = build_sinks(settings)
    try:
        names = [type(s).__name__ for s in sinks]
        assert names == ["AlertmanagerSink", "WebhookSink", "OTelLogSink"]
        alertmanager = sinks[0]
        assert isinstance(alertmanager, AlertmanagerSink) and alertmanager.resend_interval == 5.0
    finally:
        for sink in sinks:
            sink.close(0.1)


def test_alerts_carry_the_owners_of_the_models_policy(served: Served) -> None:

    Governance(served.sidecar.store).set_policy(
        MODEL, ENV, four_eyes=False, owners=["team-risk", "alice"], reason="t", actor="admin"
    )
    served.sidecar.alerter.consecutive = 1
    (fired,) = push(served, finding(Tier.MODERATE))
    push(served, finding(Tier.SEVERE), environment="staging")  # no policy there

    assert fired.labels["owners"] == "team-risk,alice"
    assert fired.summary.endswith("tier moderate (owners: team-risk, alice)")
    assert served.sink.sent[0] is fired
    assert alert_labels(fired)["owners"] == "team-risk,alice"  # what Alertmanager gets
    assert "owners: team-risk, alice" in alert_annotations(fired)["summary"]
    listed = {a.environment: a for a in served.client.alerts().alerts}
    assert listed[ENV].labels["owners"] == "team-risk,alice"
    assert "owners" not in listed["staging"].labels


def test_an_alert_fires_without_owners_when_the_policy_cannot_be_read() -> None:

    reads: list[tuple[str, str]] = []

    def broken(model: str, environment: str) -> list[str]:
        reads.append((model, environment))
        raise ConnectionError("the store is down")

    alerter = Alerter(consecutive=1, owners=broken)
    (fired,) = alerter.observe(result(finding(Tier.SEVERE), at=time.time()), PLAYBOOK)
    assert fired.firing and "owners" not in fired.labels
    assert reads == [(MODEL, ENV)]
    alerter.observe(result(finding(Tier.SEVERE), at=time.time()), PLAYBOOK)  # still firing
    assert reads == [(MODEL, ENV)], "owners are read when an alert fires, not on every check"
