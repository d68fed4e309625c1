"""Fleet mode in one process: two alerters sharing a real SQLite store through
``sidecar.lease.Fleet``. Leader-only alerting, takeover without a second alert,
a stale leader fenced out, the fleet view, and the stored state's encoding."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sidecar.alerts import Alert, Alerter
from sidecar.compare import ComparisonResult, SeriesFinding
from sidecar.errors import ConfigError, Conflict
from sidecar.guardrails import Tier
from sidecar.lease import Fleet, LeaseManager, decode_state, encode_state, fleet_enabled
from sidecar.records import Kind, SeriesId
from sidecar.stats.effects import Effect
from sidecar.stores import SQLiteStore
from tests.stores import FakeClock

SID = SeriesId("*", "*", Kind.LATENCY, "latency_seconds")


class ListSink:
    """Keeps what it is sent (a real sink would POST it)."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)

    def close(self, timeout: float = 5.0) -> None:
        pass


def _result(tier: Tier | None, at: float) -> ComparisonResult:
    finding = SeriesFinding(
        series=SID,
        phase="",
        effects={
            "p99_rel": Effect("p99_rel", 0.5, 0.3, 0.7, "relative"),
            "psi": Effect("psi", 0.2, math.nan, math.nan, "distance"),
        },
        tier=tier,
        fired=(("p99_rel", tier, 0.2),) if tier is not None else (),
        baseline_count=1000,
        live_count=900,
    )
    return ComparisonResult("fraud", "prod", "b1", at, 0.0, at, 0.001, 0.01, (finding,))


def _member(store: SQLiteStore, name: str, clock: FakeClock) -> tuple[Fleet, ListSink]:
    sink = ListSink()
    alerter = Alerter(clock=clock, consecutive=2, sinks=[sink])
    fleet = Fleet(store, alerter, holder=name, ttl=30.0, targets=lambda: [("fraud", "prod")])
    return fleet, sink


def test_one_leader_alerts_once_and_a_takeover_does_not_alert_again(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "fleet.db"), clock=clock)
    a, sink_a = _member(store, "a", clock)
    b, sink_b = _member(store, "b", clock)
    assert a.leads("fraud", "prod") and not b.leads("fraud", "prod")
    for _ in range(3):
        clock.now += 5
        assert a.leases.renew() == []
        a.alerter.observe(_result(Tier.SEVERE, clock.now))
    assert [x.state for x in sink_a.sent] == ["firing"]
    fingerprint = sink_a.sent[0].fingerprint

    # the non-leader lists the leader's alert (fleet view) and feeds it to watchers
    b.refresh()
    assert [x.fingerprint for x in b.alerter.alerts("fraud", "prod")] == [fingerprint]

    # a stops renewing (dies): after the TTL, b takes over with the stored state
    clock.now += 31
    assert b.leads("fraud", "prod")
    assert b.takeovers == 1
    b.alerter.observe(_result(Tier.SEVERE, clock.now))
    assert sink_b.sent == []  # still firing: not raised again
    assert [x.fingerprint for x in b.alerter.alerts("fraud", "prod")] == [fingerprint]

    # a comes back believing it leads (its local lease has not run out): fenced out
    with pytest.raises(Conflict):
        a.alerter.observe(_result(Tier.SEVERE, clock.now))
    assert len(sink_a.sent) == 1
    assert a.leases.token("fraud", "prod") is None
    assert a.alerter.alerts("fraud", "prod", include_resolved=True) == []

    # the new leader resolves it once the condition clears for resolve_after
    clock.now += 1
    b.alerter.observe(_result(None, clock.now))
    clock.now += b.alerter.resolve_after + 1
    assert b.leads("fraud", "prod")  # its lease ran out meanwhile; nobody took it
    b.alerter.observe(_result(None, clock.now))
    assert [x.state for x in sink_b.sent] == ["resolved"]
    assert len(sink_a.sent) == 1
    store.close()


def test_streaks_move_with_the_lease(tmp_path: Path) -> None:
    """One check above the tier by the old leader plus one by the new one fire
    (consecutive = 2): the streak is part of the stored state."""
    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "fleet.db"), clock=clock)
    a, sink_a = _member(store, "a", clock)
    b, sink_b = _member(store, "b", clock)
    assert a.leads("fraud", "prod")
    a.alerter.observe(_result(Tier.MODERATE, clock.now))
    assert sink_a.sent == []
    a.close()  # clean shutdown releases at once
    assert b.leads("fraud", "prod")
    b.alerter.observe(_result(Tier.MODERATE, clock.now + 10))
    assert [(x.state, x.tier) for x in sink_b.sent] == [("firing", Tier.MODERATE)]
    store.close()


def test_state_encoding_round_trips(tmp_path: Path) -> None:
    clock = FakeClock()
    alerter = Alerter(clock=clock, consecutive=1)
    alerter.observe(_result(Tier.SEVERE, clock.now))
    state = alerter.export_scope("fraud", "prod")
    back = decode_state("fraud", "prod", encode_state(state))
    (streak, firing, clear), (streak2, firing2, clear2) = (
        state.tracks[(SID, "")],
        back.tracks[(SID, "")],
    )
    assert streak2 == streak and clear2 == clear
    assert firing is not None and firing2 is not None
    assert firing2.fingerprint == firing.fingerprint and firing2.tier == Tier.SEVERE
    effect = firing2.findings[0].effects["psi"]
    assert math.isnan(effect.lower) and effect.estimate == 0.2
    assert firing2.summary == firing.summary and firing2.labels == firing.labels
    with pytest.raises(ValueError, match=r"unreadable|version"):
        decode_state("fraud", "prod", b'{"v": 99}')
    with pytest.raises(ValueError):
        decode_state("fraud", "prod", b"not json")


def test_lease_manager_counts_only_live_leases() -> None:
    now = [0.0]
    store = SQLiteStore()
    leases = LeaseManager(store, "a", 5.0, monotonic=lambda: now[0])
    token = leases.ensure("fraud", "prod")
    assert token is not None and leases.held() == {("fraud", "prod"): token}
    now[0] = 4.9
    assert leases.renew() == [] and leases.token("fraud", "prod") == token
    now[0] = 9.8  # renewed at 4.9: valid until 9.9
    assert leases.token("fraud", "prod") == token
    now[0] = 10.0
    assert leases.token("fraud", "prod") is None  # no renewal in time: not the leader
    with pytest.raises(ConfigError):
        LeaseManager(store, "a", 0.0)
    store.close()


def test_fleet_mode_setting() -> None:
    assert fleet_enabled("auto", "redis+cluster://h:7000")
    assert fleet_enabled("auto", "unix:///run/redis.sock")
    assert not fleet_enabled("auto", ":memory:")
    assert fleet_enabled("on", "sqlite:///x.db") and not fleet_enabled("off", "redis://h")
    with pytest.raises(ConfigError, match="fleet_mode"):
        fleet_enabled("sometimes", "redis://h")
