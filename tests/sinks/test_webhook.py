"""WebhookSink against a real HTTP server: Alertmanager's v4 webhook payload."""

from __future__ import annotations

from tests.sinks.conftest import Collector, make_alert, resolved


def test_firing_then_resolved_payloads(collector: Collector) -> None:
    from sidecar.sinks.webhook import WebhookSink

    alert = make_alert(tier=3)
    sink = WebhookSink(
        collector.url + "/hook",
        headers={"Authorization": "Bearer s3cret"},
        external_url="http://baselined:7000",
        generator_url="http://baselined:7000/alerts",
    )
    try:
        sink.send(alert)
        sink.send(resolved(alert, at=alert.started_at + 120.0))
        assert sink.flush(10.0)
        firing, resolve = collector.wait_for(2)
    finally:
        sink.close(1.0)
    path, headers, _ = collector.requests[0]
    assert path == "/hook"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Content-Type"] == "application/json"

    assert set(firing) == {
        "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
        "commonLabels", "commonAnnotations", "externalURL", "alerts",
    }  # fmt: skip
    assert firing["version"] == "4" and firing["truncatedAlerts"] == 0
    assert firing["receiver"] == "baselined" and firing["status"] == "firing"
    assert firing["externalURL"] == "http://baselined:7000"
    assert firing["groupLabels"] == {
        "alertname": "BaselinedRegression",
        "model": "fraud",
        "environment": "prod",
        "fingerprint": alert.fingerprint,
    }
    assert firing["groupKey"] == (
        '{}:{alertname="BaselinedRegression", model="fraud", environment="prod",'
        f' fingerprint="{alert.fingerprint}"}}'
    )
    labels = firing["commonLabels"]
    assert labels["severity"] == "severe" and labels["signal"] == "latency_ms"
    assert labels["slice"] == "*" and labels["fingerprint"] == alert.fingerprint
    annotations = firing["commonAnnotations"]
    assert annotations["summary"] == alert.summary
    assert annotations["runbook_url"] == "https://wiki.example/fraud"
    assert "p99_rel +12.30% [+8.10%, +16.00%]" in annotations["description"]
    assert "baseline 200000, live 100000" in annotations["description"]

    (one,) = firing["alerts"]
    assert one["status"] == "firing" and one["fingerprint"] == alert.fingerprint
    assert one["labels"] == labels and one["annotations"] == annotations
    assert one["endsAt"] == "0001-01-01T00:00:00Z"
    assert one["generatorURL"] == "http://baselined:7000/alerts"

    assert resolve["status"] == "resolved"
    (gone,) = resolve["alerts"]
    assert gone["status"] == "resolved"
    assert gone["startsAt"] == one["startsAt"]
    # endsAt is the resolve time, 120 s after the start
    from datetime import datetime

    starts = datetime.fromisoformat(gone["startsAt"])
    ends = datetime.fromisoformat(gone["endsAt"])
    assert abs((ends - starts).total_seconds() - 120.0) < 0.002
    assert sink.stats().sent == 2
