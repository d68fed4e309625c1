"""AlertmanagerSink against a real Alertmanager, and its re-sends against a real HTTP server."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime
from typing import Any

from sidecar.alerts import Alerter
from sidecar.compare import ComparisonResult, SeriesFinding
from sidecar.guardrails import Tier
from sidecar.records import Kind, SeriesId
from sidecar.sinks.alertmanager import AlertmanagerSink
from sidecar.sinks.base import rfc3339
from sidecar.stats.effects import Effect
from tests.sinks.conftest import Collector, make_alert, resolved


def _alerts(url: str, query: str = "") -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts{query}", timeout=5.0) as response:
        found: list[dict[str, Any]] = json.loads(response.read())
    return found


def _wait_until(predicate: Any, timeout: float = 10.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def test_alert_fires_and_resolves_in_alertmanager(alertmanager: str) -> None:
    alert = make_alert(tier=2)
    sink = AlertmanagerSink(alertmanager, resend_interval=60.0, generator_url="http://bl/alerts")
    try:
        sink.send(alert)
        assert sink.flush(10.0) and sink.stats().sent == 1
        found = _wait_until(lambda: _alerts(alertmanager))
        assert len(found) == 1
        (shown,) = found
        assert shown["status"]["state"] == "active"
        assert shown["labels"] == {
            "alertname": "BaselinedRegression",
            "severity": "moderate",
            "model": "fraud",
            "environment": "prod",
            "signal": "latency_ms",
            "slice": "*",
            "fingerprint": alert.fingerprint,
        }
        annotations = shown["annotations"]
        assert annotations["summary"] == alert.summary
        assert annotations["runbook_url"] == "https://wiki.example/fraud"
        assert annotations["baseline_id"] == "ref-1"
        assert "p99_rel +12.30% [+8.10%, +16.00%]" in annotations["description"]
        assert "cleared the moderate guardrail +10.00%" in annotations["description"]
        assert shown["generatorURL"] == "http://bl/alerts"
        # Alertmanager must not resolve it on its own before several re-sends are missed
        ends = datetime.fromisoformat(shown["endsAt"]).timestamp()
        assert ends > time.time() + 3 * 60.0

        sink.send(resolved(alert))
        assert sink.flush(10.0) and sink.stats().sent == 2
        # Alertmanager 0.25 leaves resolved alerts out of /api/v2/alerts, whatever the filter
        assert _wait_until(lambda: not _alerts(alertmanager))
        everything = "?active=true&silenced=true&inhibited=true&unprocessed=true"
        assert _alerts(alertmanager, everything) == []
        assert _alerts(alertmanager, "?active=false") == []
        assert sink.firing() == []
    finally:
        sink.close(2.0)


def _result(tier: Tier | None) -> ComparisonResult:
    guardrail = {None: 0.0, Tier.MINOR: 0.05, Tier.MODERATE: 0.10, Tier.SEVERE: 0.25}[tier]
    p99 = Effect("p99_rel", 0.30, 0.27, 0.33, "relative")
    finding = SeriesFinding(
        series=SeriesId("7", "region=eu", Kind.LATENCY, "latency_ms"),
        phase="",
        effects={"p99_rel": p99},
        tier=tier,
        fired=(("p99_rel", tier, guardrail),) if tier is not None else (),
        baseline_count=200_000,
        live_count=50_000,
    )
    now = time.time()
    return ComparisonResult(
        model="fraud",
        environment="prod",
        baseline_id="ref-1",
        time=now,
        window_start=now - 3600.0,
        window_end=now,
        alpha_per_test=0.001,
        duration_seconds=0.01,
        findings=(finding,),
    )


def test_alerter_lifecycle_through_alertmanager(alertmanager: str) -> None:
    sink = AlertmanagerSink(alertmanager)
    alerter = Alerter(consecutive=2, resolve_after=0.0, cooldown=0.0, sinks=[sink])
    try:

        def shown() -> list[tuple[str, str]]:
            return sorted(
                (a["labels"]["severity"], a["labels"]["fingerprint"]) for a in _alerts(alertmanager)
            )

        for _ in range(2):
            alerter.observe(_result(Tier.MODERATE), playbook_url="https://wiki/fraud")
        (moderate,) = alerter.alerts()
        assert sink.flush(10.0)
        assert _wait_until(lambda: shown() == [("moderate", moderate.fingerprint)])
        (posted,) = _alerts(alertmanager)
        assert posted["labels"]["version"] == "7" and posted["labels"]["slice"] == "region=eu"
        assert posted["annotations"]["runbook_url"] == "https://wiki/fraud"

        for _ in range(2):  # escalation: the severe alert fires, the moderate one resolves
            alerter.observe(_result(Tier.SEVERE), playbook_url="https://wiki/fraud")
        (severe,) = alerter.alerts()
        assert sink.flush(10.0)
        assert _wait_until(lambda: shown() == [("severe", severe.fingerprint)])

        alerter.observe(_result(None))  # clear, and resolve_after=0: resolved now
        assert alerter.alerts() == []
        assert sink.flush(10.0)
        assert _wait_until(lambda: shown() == [])
        assert sink.stats().given_up == 0 and sink.stats().dropped == 0
    finally:
        alerter.close(2.0)


def test_firing_alerts_are_resent_until_resolved(collector: Collector) -> None:
    alert = make_alert()
    sink = AlertmanagerSink(collector.url, resend_interval=0.05)
    try:
        sink.send(alert)
        bodies = collector.wait_for(4)  # the change, then re-sends
        for body in bodies:
            (posted,) = body
            assert posted["labels"]["fingerprint"] == alert.fingerprint
        assert all(path == "/api/v2/alerts" for path, _, _ in collector.requests)
        resolve = resolved(alert, at=time.time() - 1.0)
        sink.send(resolve)
        ends = rfc3339(resolve.updated_at)
        assert _wait_until(lambda: any(b[0]["endsAt"] == ends for b in collector.bodies()))
        seen = len(collector.bodies())
        time.sleep(0.3)  # several re-send intervals
        later = collector.bodies()[seen:]
        assert later == []  # a resolved alert is not re-sent
    finally:
        sink.close(1.0)
