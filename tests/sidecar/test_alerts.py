"""The alert lifecycle on a fake clock with hand-made comparison results:
consecutive checks, escalation and de-escalation, resolve_after, cooldown,
deduplication, sinks and the bounded fan-out to watchers."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from sidecar.alerts import FIRING, RESOLVED, Alert, Alerter, alert_fingerprint
from sidecar.compare import ComparisonResult, SeriesFinding
from sidecar.guardrails import Tier
from sidecar.records import Kind, SeriesId
from sidecar.stats.effects import Effect
from tests.sidecar.test_baselines import ENV, MODEL, T0, FakeClock

LATENCY = SeriesId("*", "*", Kind.LATENCY, "latency_seconds")
AMOUNT = SeriesId("*", "*", Kind.FEATURE, "amount")
GUARDRAIL = {Tier.MINOR: 0.05, Tier.MODERATE: 0.10, Tier.SEVERE: 0.25}
PLAYBOOK = "https://wiki.example/fraud-regressions"


def finding(
    tier: Tier | None,
    *,
    series: SeriesId = LATENCY,
    phase: str = "",
    estimate: float = 0.182,
    lower: float = 0.091,
    upper: float = 0.27,
    live_count: int = 4000,
) -> SeriesFinding:
    """A p99 finding whose effect cleared ``tier`` (None: clear)."""
    effect = Effect("p99_rel", estimate, lower, upper, "relative")
    fired = () if tier is None else (("p99_rel", tier, GUARDRAIL[tier]),)
    return SeriesFinding(
        series=series,
        phase=phase,
        effects={"p99_rel": effect},
        tier=tier,
        fired=fired,
        baseline_count=50_000,
        live_count=live_count,
    )


def result(*findings: SeriesFinding, at: float, environment: str = ENV) -> ComparisonResult:
    return ComparisonResult(
        model=MODEL,
        environment=environment,
        baseline_id="b-0123456789ab",
        time=at,
        window_start=T0 - 3600,
        window_end=at,
        alpha_per_test=0.01 / 8,
        duration_seconds=0.001,
        findings=findings,
    )


class Recorder:
    """A sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.closed = False

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


class Broken:
    def send(self, alert: Alert) -> None:
        raise ConnectionError("sink down")

    def close(self, timeout: float = 5.0) -> None:
        raise ConnectionError("sink down")


class Checks:
    """An alerter on a fake clock; ``check`` advances the clock and observes."""

    def __init__(self, *, interval: float = 10.0, **options: float) -> None:
        self.clock = FakeClock()
        self.sink = Recorder()
        self.interval = interval
        self.alerter = Alerter(clock=self.clock, sinks=[self.sink], **options)  # type: ignore[arg-type]

    def check(self, *findings: SeriesFinding) -> list[Alert]:
        self.clock.advance(self.interval)
        return self.alerter.observe(result(*findings, at=self.clock()), PLAYBOOK)

    def run(self, times: int, *findings: SeriesFinding) -> list[Alert]:
        changes: list[Alert] = []
        for _ in range(times):
            changes += self.check(*findings)
        return changes


def states(changes: list[Alert]) -> list[tuple[str, Tier]]:
    return [(a.state, a.tier) for a in changes]


# -- firing --------------------------------------------------------------------------


def test_fires_after_consecutive_checks_with_everything_a_responder_needs() -> None:
    checks = Checks(consecutive=3)
    assert checks.check(finding(Tier.MODERATE)) == []
    assert checks.check(finding(Tier.MODERATE)) == []
    (alert,) = checks.check(finding(Tier.MODERATE))

    assert (alert.state, alert.tier) == (FIRING, Tier.MODERATE)
    assert alert.summary == (
        "fraud/prod latency_seconds p99 +18.2% (>= +9.1% at 99% confidence), tier moderate"
    )
    assert alert.started_at == alert.updated_at == checks.clock() and alert.resolved_at is None
    assert alert.fingerprint == alert_fingerprint(MODEL, ENV, LATENCY, "", Tier.MODERATE)
    assert len(alert.fingerprint) == 16
    assert alert.baseline_id == "b-0123456789ab"
    assert (alert.window_start, alert.window_end) == (T0 - 3600, checks.clock())
    assert alert.playbook_url == PLAYBOOK
    assert dict(alert.labels) == {
        "alertname": "BaselinedRegression",
        "severity": "moderate",
        "model": MODEL,
        "environment": ENV,
        "signal": "latency_seconds",
        "slice": "*",
    }
    (held,) = alert.findings
    assert held.effects["p99_rel"].lower == 0.091 and held.live_count == 4000
    assert checks.sink.sent == [alert]


def test_an_interrupted_streak_never_fires() -> None:
    checks = Checks(consecutive=2)
    for _ in range(20):
        assert checks.check(finding(Tier.SEVERE)) == []
        assert checks.check(finding(None)) == []
    assert checks.alerter.alerts(include_resolved=True) == []


def test_the_same_condition_over_100_checks_is_one_change() -> None:
    checks = Checks(consecutive=2)
    changes = []
    for i in range(100):
        changes += checks.check(finding(Tier.MINOR, live_count=1000 + i))
    assert states(changes) == [(FIRING, Tier.MINOR)]
    assert len(checks.sink.sent) == 1
    # The listed alert still shows the latest effects and check time.
    (listed,) = checks.alerter.alerts()
    assert listed.findings[0].live_count == 1099
    assert listed.updated_at == checks.clock() and listed.started_at < listed.updated_at


def test_a_lower_bound_decrease_is_worded_with_its_upper_bound() -> None:
    checks = Checks(consecutive=1)
    (alert,) = checks.check(finding(Tier.SEVERE, estimate=-0.4, lower=-0.5, upper=-0.3))
    assert "p99 -40.0% (<= -30.0% at 99% confidence), tier severe" in alert.summary


# -- escalation, de-escalation, resolve, cooldown --------------------------------------


def test_escalation_fires_the_higher_tier_and_resolves_the_lower() -> None:
    checks = Checks(consecutive=2)
    (moderate,) = checks.run(2, finding(Tier.MODERATE))
    assert checks.check(finding(Tier.SEVERE)) == []  # one check at severe is not enough
    severe, ended = checks.check(finding(Tier.SEVERE))

    assert (severe.state, severe.tier) == (FIRING, Tier.SEVERE)
    assert (ended.state, ended.tier) == (RESOLVED, Tier.MODERATE)
    assert ended.fingerprint == moderate.fingerprint != severe.fingerprint
    assert ended.resolved_at == checks.clock()
    assert [a.tier for a in checks.alerter.alerts()] == [Tier.SEVERE]


def test_de_escalation_waits_resolve_after_then_the_lower_tier_takes_over() -> None:
    checks = Checks(consecutive=2, resolve_after=60.0, cooldown=600.0, interval=10.0)
    checks.run(2, finding(Tier.MODERATE))
    checks.run(2, finding(Tier.SEVERE))
    # Back to moderate: severe stays firing until it has been clear for 60 s.
    assert checks.run(6, finding(Tier.MODERATE)) == []
    moderate, ended = checks.check(finding(Tier.MODERATE))

    assert (ended.state, ended.tier) == (RESOLVED, Tier.SEVERE)
    assert (moderate.state, moderate.tier) == (FIRING, Tier.MODERATE)
    assert moderate.fingerprint == alert_fingerprint(MODEL, ENV, LATENCY, "", Tier.MODERATE)
    assert [a.tier for a in checks.alerter.alerts()] == [Tier.MODERATE]


def test_resolves_only_after_the_condition_was_clear_for_resolve_after() -> None:
    checks = Checks(consecutive=2, resolve_after=30.0, interval=10.0)
    (fired,) = checks.run(2, finding(Tier.MINOR))
    assert checks.run(2, finding(None)) == []  # clear for 10 s
    assert checks.check(finding(Tier.MINOR)) == []  # back: the clear time starts over
    assert checks.run(3, finding(None)) == []  # clear for 20 s
    (resolved,) = checks.check(finding(None))  # clear for 30 s

    assert resolved.state == RESOLVED and resolved.fingerprint == fired.fingerprint
    assert resolved.resolved_at == checks.clock()
    assert resolved.started_at == fired.started_at
    assert checks.alerter.alerts() == []
    assert checks.alerter.alerts(include_resolved=True) == [resolved]


def test_a_series_missing_from_the_result_counts_as_clear() -> None:
    checks = Checks(consecutive=1, resolve_after=0.0)
    checks.check(finding(Tier.MINOR))
    (resolved,) = checks.check(finding(Tier.MINOR, series=AMOUNT))[1:]
    assert resolved.state == RESOLVED and resolved.findings[0].series == LATENCY


def test_cooldown_stops_the_same_alert_from_firing_again_too_soon() -> None:
    checks = Checks(consecutive=2, resolve_after=0.0, cooldown=100.0, interval=10.0)
    (first,) = checks.run(2, finding(Tier.MINOR))
    (resolved,) = checks.check(finding(None))
    assert resolved.state == RESOLVED
    # The condition is back at once; within the cooldown nothing fires.
    assert checks.run(9, finding(Tier.MINOR)) == []
    (again,) = checks.check(finding(Tier.MINOR))  # 100 s after the resolve
    assert again.fingerprint == first.fingerprint and again.state == FIRING
    assert again.started_at == resolved.resolved_at + 100.0  # type: ignore[operator]


# -- identity, sinks, queries ---------------------------------------------------------------


def test_fingerprints_are_stable_and_distinct_per_series_phase_tier_and_environment() -> None:
    base = alert_fingerprint(MODEL, ENV, LATENCY, "", Tier.MINOR)
    assert base == alert_fingerprint(MODEL, ENV, LATENCY, "", Tier.MINOR)
    others = {
        alert_fingerprint(MODEL, ENV, LATENCY, "", Tier.MODERATE),
        alert_fingerprint(MODEL, ENV, LATENCY, "07", Tier.MINOR),
        alert_fingerprint(MODEL, "staging", LATENCY, "", Tier.MINOR),
        alert_fingerprint(MODEL, ENV, AMOUNT, "", Tier.MINOR),
        alert_fingerprint("ranker", ENV, LATENCY, "", Tier.MINOR),
    }
    assert base not in others and len(others) == 5


def test_each_series_and_phase_has_its_own_alert_with_labels_that_tell_them_apart() -> None:
    checks = Checks(consecutive=1)
    sliced = SeriesId("v3", "region=eu", Kind.FEATURE, "amount")
    changes = checks.check(
        finding(Tier.MINOR),
        finding(Tier.MINOR, series=sliced, phase="07"),
        finding(None, series=AMOUNT),
    )
    assert len(changes) == 2 and len({a.fingerprint for a in changes}) == 2
    labels = next(a.labels for a in changes if a.findings[0].series == sliced)
    assert labels["slice"] == "region=eu" and labels["version"] == "v3" and labels["phase"] == "07"
    summary = next(a.summary for a in changes if a.findings[0].series == sliced)
    assert summary.startswith("fraud/prod amount[region=eu] vv3 @07 p99 +18.2%")


def test_every_change_reaches_every_sink_even_when_one_sink_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    good = Recorder()
    alerter = Alerter(clock=clock, consecutive=1, resolve_after=0.0, sinks=[Broken(), good])
    with caplog.at_level(logging.ERROR, logger="sidecar.alerts"):
        alerter.observe(result(finding(Tier.MINOR), at=clock()))
        clock.advance(10)
        alerter.observe(result(finding(Tier.SEVERE), at=clock()))
        clock.advance(10)
        alerter.observe(result(finding(None), at=clock()))
        alerter.close(timeout=0.1)
    assert states(good.sent) == [
        (FIRING, Tier.MINOR),
        (FIRING, Tier.SEVERE),
        (RESOLVED, Tier.MINOR),
        (RESOLVED, Tier.SEVERE),
    ]
    assert good.closed
    assert "Broken refused an alert" in caplog.text


def test_alerts_filter_by_model_environment_and_resolution() -> None:
    clock = FakeClock()
    alerter = Alerter(clock=clock, consecutive=1, resolve_after=0.0)
    alerter.observe(result(finding(Tier.MINOR), at=clock()))
    alerter.observe(result(finding(Tier.MODERATE), at=clock(), environment="staging"))
    clock.advance(10)
    alerter.observe(result(finding(None), at=clock(), environment="staging"))

    assert [a.environment for a in alerter.alerts()] == [ENV]
    assert [a.environment for a in alerter.alerts(environment="staging")] == []
    assert [a.state for a in alerter.alerts(environment="staging", include_resolved=True)] == [
        RESOLVED
    ]
    assert len(alerter.alerts(MODEL, include_resolved=True)) == 2
    assert alerter.alerts("ranker", include_resolved=True) == []


def test_resolved_history_is_bounded() -> None:
    checks = Checks(consecutive=1, resolve_after=0.0, cooldown=0.0, history=5)
    for _ in range(20):
        checks.check(finding(Tier.MINOR))
        checks.check(finding(None))
    assert len(checks.sink.sent) == 40
    assert len(checks.alerter.alerts(include_resolved=True)) == 5


# -- watchers ------------------------------------------------------------------------------


def test_a_watcher_gets_changes_observed_in_another_thread() -> None:
    async def scenario() -> list[Alert]:
        clock = FakeClock()
        alerter = Alerter(clock=clock, consecutive=1, resolve_after=0.0)
        got: list[Alert] = []
        with alerter.subscribe(environment=ENV) as feed:

            def observe() -> None:
                alerter.observe(result(finding(Tier.MINOR), at=clock(), environment="staging"))
                alerter.observe(result(finding(Tier.SEVERE), at=clock()))

            worker = threading.Thread(target=observe)
            worker.start()
            async for alert in feed:
                got.append(alert)
                break
            worker.join()
        return got

    (alert,) = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert (alert.environment, alert.tier) == (ENV, Tier.SEVERE)  # staging was filtered out


def test_a_slow_watcher_loses_its_oldest_changes_and_never_stalls_the_alerter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[list[float], int]:
        clock = FakeClock()
        alerter = Alerter(clock=clock, consecutive=1, resolve_after=0.0, cooldown=0.0)
        feed = alerter.subscribe(maxsize=4)
        for _ in range(10):  # 20 changes while the watcher reads nothing
            clock.advance(10)
            alerter.observe(result(finding(Tier.MINOR), at=clock()))
            clock.advance(10)
            alerter.observe(result(finding(None), at=clock()))
        alerter.end_watchers()
        times = [alert.updated_at async for alert in feed]
        return times, feed.dropped

    with caplog.at_level(logging.WARNING, logger="sidecar.alerts"):
        times, dropped = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert times == [T0 + 170, T0 + 180, T0 + 190, T0 + 200]  # the newest four
    assert dropped == 16
    assert "alert watcher is too slow" in caplog.text
