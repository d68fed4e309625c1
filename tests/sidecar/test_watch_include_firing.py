"""``WatchAlertsRequest.include_firing``: a watch starts with what is firing now,
then the changes, with no gap and no duplicate. Over real gRPC (127.0.0.1,
port 0) against a real Sidecar, through the middleware client and the CLI, and
on a real Alerter under concurrent checks."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from baselined.v1 import baselined_pb2 as pb

from sidecar.alerts import Alert, Alerter
from sidecar.cli import main
from sidecar.guardrails import Tier
from tests.sidecar.test_alerts import AMOUNT, finding, result
from tests.sidecar.test_alerts_service import Served, push, wait_for
from tests.sidecar.test_baselines import ENV, MODEL


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = Served(tmp_path)
    running.sidecar.alerter.consecutive = 1
    running.sidecar.alerter.resolve_after = 0.0
    running.sidecar.alerter.cooldown = 0.0
    yield running
    running.stop()


def test_a_watch_with_include_firing_first_gets_the_alert_that_fired_before_it(
    served: Served,
) -> None:
    (fired,) = push(served, finding(Tier.MODERATE))
    push(served, finding(Tier.SEVERE), environment="staging")  # filtered out by the request

    stream = served.alerts.WatchAlerts(
        pb.WatchAlertsRequest(environment=ENV, include_firing=True), timeout=20
    )
    first = next(stream)
    assert (first.fingerprint, first.state, first.severity) == (
        fired.fingerprint,
        pb.ALERT_STATE_FIRING,
        pb.SEVERITY_MODERATE,
    )
    assert (first.model, first.environment) == (MODEL, ENV)
    assert first.started_at == fired.started_at and first.summary == fired.summary

    wait_for(lambda: served.sidecar.alerter.watchers == 1)
    push(served, finding(None))  # the snapshot alert resolves: the next message, not a repeat
    second = next(stream)
    stream.cancel()
    assert (second.fingerprint, second.state) == (fired.fingerprint, pb.ALERT_STATE_RESOLVED)


def test_a_watch_without_include_firing_does_not_see_the_alert_firing_before_it(
    served: Served,
) -> None:
    (fired,) = push(served, finding(Tier.MODERATE))
    stream = served.alerts.WatchAlerts(pb.WatchAlertsRequest(environment=ENV), timeout=20)
    wait_for(lambda: served.sidecar.alerter.watchers == 1)
    push(served, finding(Tier.MODERATE, series=AMOUNT))  # a later change
    first = next(stream)
    stream.cancel()
    assert first.fingerprint != fired.fingerprint
    assert first.series[0].signal == "amount" and first.state == pb.ALERT_STATE_FIRING


def test_the_snapshot_lists_every_matching_firing_alert_oldest_first(served: Served) -> None:
    (older,) = push(served, finding(Tier.MINOR))
    (newer,) = push(served, finding(Tier.MINOR), finding(Tier.SEVERE, series=AMOUNT))
    push(served, finding(Tier.MINOR), environment="staging")
    stream = served.alerts.WatchAlerts(
        pb.WatchAlertsRequest(model=MODEL, environment=ENV, include_firing=True), timeout=20
    )
    got = [next(stream), next(stream)]
    wait_for(lambda: served.sidecar.alerter.watchers == 1)
    push(served, finding(None), environment="staging")  # filtered: must not show up
    push(served, finding(Tier.MINOR))  # AMOUNT clears and resolves
    third = next(stream)
    stream.cancel()
    assert [a.fingerprint for a in got] == [older.fingerprint, newer.fingerprint]
    assert (third.fingerprint, third.state) == (newer.fingerprint, pb.ALERT_STATE_RESOLVED)


def test_the_middleware_client_passes_include_firing_and_defaults_to_off(
    served: Served,
) -> None:
    (fired,) = push(served, finding(Tier.MODERATE))
    with_flag = served.client.watch_alerts(environment=ENV, include_firing=True)
    assert next(with_flag).fingerprint == fired.fingerprint
    with_flag.close()
    # The closed stream unsubscribes asynchronously: wait until it has, so the
    # wait for the next watcher below sees the new stream, not the old one.
    wait_for(lambda: served.sidecar.alerter.watchers == 0)

    got: list[pb.Alert] = []
    default = served.client.watch_alerts(environment=ENV)
    reader = threading.Thread(target=lambda: got.append(next(default)), daemon=True)
    reader.start()
    wait_for(lambda: served.sidecar.alerter.watchers >= 1)
    push(served, finding(Tier.MODERATE, series=AMOUNT))
    reader.join(timeout=10)
    assert not reader.is_alive(), "the watcher without include_firing received nothing"
    default.close()
    assert len(got) == 1 and got[0].fingerprint != fired.fingerprint


def test_cli_alerts_watch_include_firing_prints_the_firing_alert_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = Served(tmp_path)
    try:
        running.sidecar.alerter.consecutive = 1
        running.sidecar.alerter.resolve_after = 0.0
        (fired,) = push(running, finding(Tier.MINOR))
        codes: list[int] = []
        args = ["alerts", "watch", "--include-firing", "--json", "--target", running.target]
        watcher = threading.Thread(target=lambda: codes.append(main(args)), daemon=True)
        watcher.start()
        wait_for(lambda: running.sidecar.alerter.watchers == 1)
        push(running, finding(None))
        running.run(running.sidecar.stop(1.0))
        watcher.join(timeout=10)
    finally:
        running.stop()
    assert codes == [0]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(a["fingerprint"], a["state"]) for a in lines] == [
        (fired.fingerprint, "ALERT_STATE_FIRING"),
        (fired.fingerprint, "ALERT_STATE_RESOLVED"),
    ]


def test_cli_alerts_watch_help_names_include_firing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["alerts", "watch", "--help"])
    assert "--include-firing" in capsys.readouterr().out


# -- no gap, no duplicate, under concurrent checks (a real Alerter, no gRPC) ------


def _state(alerts: list[Alert]) -> dict[str, str]:
    """fingerprint -> last state, replaying a feed in order."""
    last: dict[str, str] = {}
    for a in alerts:
        last[a.fingerprint] = a.state
    return {fp: s for fp, s in last.items() if s == "firing"}


@pytest.mark.parametrize("seed", range(6))
def test_snapshot_and_stream_join_without_gap_or_duplicate_under_concurrent_checks(
    seed: int,
) -> None:
    tiers = [Tier.MINOR, None, Tier.MODERATE, Tier.SEVERE, None]
    now = [1000.0]
    lock = threading.Lock()

    def clock() -> float:
        with lock:
            now[0] += 1.0
            return now[0]

    alerter = Alerter(clock=clock, consecutive=1, resolve_after=0.0, cooldown=0.0)
    stop = threading.Event()

    def checks() -> None:
        i = seed
        while not stop.is_set():
            t = tiers[i % len(tiers)]
            u = tiers[(i * 3 + 1) % len(tiers)]
            alerter.observe(result(finding(t), finding(u, series=AMOUNT), at=clock()))
            i += 1

    async def watch() -> list[Alert]:
        feeds = []
        for _ in range(20):
            feed = alerter.subscribe(include_firing=True, maxsize=1_000_000)
            await asyncio.sleep(0.002 * (1 + seed % 3))
            feeds.append(feed)
        stop.set()
        worker.join(timeout=10)
        final = {a.fingerprint: a.state for a in alerter.alerts()}
        seen: list[Alert] = []
        for feed in feeds:
            feed.close()
            got = [a async for a in feed]
            keys = [(a.fingerprint, a.state, a.updated_at) for a in got]
            assert len(keys) == len(set(keys)), "a change was sent twice"
            # Replaying snapshot + changes must land on the alerter's final state.
            assert _state(got) == final
            seen += got
        return seen

    worker = threading.Thread(target=checks, daemon=True)
    worker.start()
    seen = asyncio.run(watch())
    assert seen and any(a.state == "resolved" for a in seen)  # the race was exercised


def test_a_change_already_in_the_snapshot_is_not_pushed_again() -> None:
    """Fleet mode: a refresh can store a change before it feeds the watchers; a
    watch that snapshotted in between must not get that change twice."""
    alerter = Alerter(consecutive=1)
    (fired,) = alerter.observe(result(finding(Tier.MINOR), at=2000.0))

    async def watch() -> list[Alert]:
        feed = alerter.subscribe(include_firing=True)
        alerter.show_watchers([fired])  # the same change, arriving late
        feed.close()
        return [a async for a in feed]

    got = asyncio.run(watch())
    assert [(a.fingerprint, a.state) for a in got] == [(fired.fingerprint, "firing")]
