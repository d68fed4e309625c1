"""Change events derived from fingerprints: batches sent over real gRPC to a real
Sidecar (SQLite :memory:, port 0), events read back with ListEvents; the
tracker alone on a real SQLiteStore and RedisStore."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

from middleware.fingerprint import Fingerprint
from sidecar.events import EventLog
from sidecar.fingerprints import FingerprintTracker, event_type_of
from sidecar.stores import RedisStore, SQLiteStore
from sidecar.stores.base import Store
from tests.sidecar.test_baselines import T0, FakeClock
from tests.sidecar.test_server import Running, settings_for

BASE = {
    "python": "3.11.7",
    "lib.numpy": "1.26.4",
    "lib.scipy": "1.13.0",
    "k8s.node": "node-a",
    "container.image": "registry/fraud@sha256:aa",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(clock: FakeClock) -> Iterator[Running]:
    running = Running(settings_for(), clock=clock)
    yield running
    running.stop()


def send(running: Running, instance: str, fields: dict[str, str], at: float) -> None:
    fp = Fingerprint.of({**fields, "k8s.pod": instance})  # every pod's name differs
    batch = pb.SampleBatch(
        model="fraud",
        version="v1",
        environment="prod",
        instance=instance,
        fingerprint=fp.to_proto(),
        timestamps=[at, at + 0.5],
    )
    batch.numeric.add(name="latency_ms", kind=pb.SIGNAL_KIND_LATENCY, values=[10.0, 12.0])
    response = running.ingest.IngestBatch(batch)
    assert response.records_accepted == 2


def derived(running: Running) -> list[pb.Event]:
    stub: Any = pb_grpc.EventsStub(running.channel)  # type: ignore[no-untyped-call]
    events = stub.ListEvents(pb.ListEventsRequest(model="fraud")).events
    return [e for e in events if e.source == "derived"]


def attrs(event: pb.Event) -> dict[str, str]:
    return dict(event.attributes)


def test_a_numpy_upgrade_mid_stream_gives_one_library_update(
    served: Running, clock: FakeClock
) -> None:
    for i in range(5):
        send(served, "pod-1", BASE, T0 + i)
    assert derived(served) == []
    for i in range(5, 10):
        send(served, "pod-1", {**BASE, "lib.numpy": "2.1.0"}, T0 + i)
    (event,) = derived(served)
    assert event.type == pb.EVENT_TYPE_LIBRARY_UPDATE
    assert event.recorded_by == "baselined" and event.environment == "prod"
    assert event.time == T0 + 5  # the first batch that reported the new version
    got = attrs(event)
    assert (got["package"], got["from"], got["to"]) == ("numpy", "1.26.4", "2.1.0")
    assert (got["share"], got["instances_changed"], got["instances_seen"]) == ("1.0000", "1", "1")


def test_unchanged_fingerprints_derive_nothing(served: Running) -> None:
    for i in range(20):
        send(served, f"pod-{i % 4}", BASE, T0 + i)
    assert derived(served) == []
    assert served.sidecar.fingerprints.instances("fraud", "prod") == 4


def test_a_fleet_moving_one_instance_at_a_time_gives_one_event_reaching_full_share(
    served: Running,
) -> None:
    pods = [f"pod-{i}" for i in range(10)]
    for pod in pods:
        send(served, pod, BASE, T0)
    shares = []
    for step, pod in enumerate(pods, start=1):
        send(served, pod, {**BASE, "lib.numpy": "2.1.0"}, T0 + step)
        (event,) = derived(served)
        shares.append(attrs(event)["share"])
        assert attrs(event)["instances_changed"] == str(step)
    assert shares == [f"{k / 10:.4f}" for k in range(1, 11)]
    (event,) = derived(served)
    got = attrs(event)
    assert event.time == T0 + 1  # when the first instance moved
    assert (got["from"], got["to"], got["instances_seen"]) == ("1.26.4", "2.1.0", "10")


def test_a_new_instance_already_on_the_new_version_counts_toward_the_share_only(
    served: Running,
) -> None:
    for pod in ("pod-0", "pod-1", "pod-2", "pod-3"):
        send(served, pod, BASE, T0)
    send(served, "pod-0", {**BASE, "lib.numpy": "2.1.0"}, T0 + 1)
    assert attrs(derived(served)[0])["share"] == "0.2500"
    send(served, "pod-new", {**BASE, "lib.numpy": "2.1.0"}, T0 + 2)
    (event,) = derived(served)
    got = attrs(event)
    assert (got["share"], got["instances_changed"], got["instances_seen"]) == ("0.4000", "1", "5")


def test_each_changed_field_gives_its_own_event_type(served: Running) -> None:
    send(served, "pod-1", BASE, T0)
    moved = {
        **BASE,
        "python": "3.12.1",
        "k8s.node": "node-b",
        "container.image": "registry/fraud@sha256:bb",
        "cuda.driver": "550.54",
        "libc": "glibc 2.39",
    }
    send(served, "pod-2", BASE, T0)
    send(served, "pod-1", moved, T0 + 1)
    by_type = {e.type: e for e in derived(served)}
    assert set(by_type) == {
        pb.EVENT_TYPE_PYTHON_CHANGE,
        pb.EVENT_TYPE_NODE_CHANGE,
        pb.EVENT_TYPE_IMAGE_CHANGE,
        pb.EVENT_TYPE_ACCELERATOR_CHANGE,
        pb.EVENT_TYPE_CONFIG_CHANGE,
    }
    node = by_type[pb.EVENT_TYPE_NODE_CHANGE]
    assert node.node == "node-b" and attrs(node)["from"] == "node-a"
    assert by_type[pb.EVENT_TYPE_IMAGE_CHANGE].image == "registry/fraud@sha256:bb"
    assert attrs(by_type[pb.EVENT_TYPE_ACCELERATOR_CHANGE])["from"] == ""  # a field that appeared
    assert attrs(by_type[pb.EVENT_TYPE_PYTHON_CHANGE])["share"] == "0.5000"


def test_field_classification() -> None:
    assert event_type_of("lib.torch") == "library_update"
    assert event_type_of("cudnn.version") == "accelerator_change"
    assert event_type_of("python.implementation") == "python_change"
    assert event_type_of("k8s.pod") is None and event_type_of("k8s.pod_ip") is None
    assert event_type_of("model.artifact") == "config_change"


def test_a_flood_of_differences_folds_into_one_summarised_event(clock: FakeClock) -> None:
    store = SQLiteStore(clock=clock)
    log = EventLog(store, clock=clock)
    tracker = FingerprintTracker(log, clock=clock, flood_limit=3)
    for i in range(30):
        tracker.observe("fraud", "prod", f"pod-{i}", BASE, T0, fingerprint_hash="h0")
    for i in range(30):  # a misconfigured fleet: every pod reports its own value
        changed = {**BASE, "model.config": f"cfg-{i}"}
        tracker.observe("fraud", "prod", f"pod-{i}", changed, T0 + 1, fingerprint_hash=f"h{i + 1}")
    events = log.list(model="fraud")
    assert len(events) == 4  # three one by one, then one summary
    (summary,) = [e for e in events if "summary" in e.attributes]
    assert summary.type == "config_change" and summary.source == "derived"
    assert summary.attributes["summary"] == "rate-limited: 27 differences"
    assert summary.attributes["differences_folded"] == "27"
    assert summary.attributes["fields"] == "model.config=27"
    # a minute later the window starts over: the next difference is recorded alone
    clock.now += 61
    moved = {**BASE, "model.config": "cfg-0", "lib.numpy": "2.1.0"}
    tracker.observe("fraud", "prod", "pod-0", moved, clock.now)
    assert [e.type for e in log.list(model="fraud")][-1] == "library_update"
    assert len(log.list(model="fraud")) == 5


def test_idle_instances_leave_the_share(clock: FakeClock) -> None:
    store = SQLiteStore(clock=clock)
    log = EventLog(store, clock=clock)
    tracker = FingerprintTracker(log, clock=clock, idle_seconds=600)
    for pod in ("pod-0", "pod-1", "pod-2", "pod-3"):
        tracker.observe("fraud", "prod", pod, BASE, T0)
    clock.now += 700  # pod-2 and pod-3 went away; pod-0 moves, pod-1 reports unchanged
    tracker.observe("fraud", "prod", "pod-1", BASE, clock.now)
    (event,) = tracker.observe("fraud", "prod", "pod-0", {**BASE, "lib.numpy": "2.1.0"}, clock.now)
    assert (event.attributes["share"], event.attributes["instances_seen"]) == ("0.5000", "2")


def test_a_rolling_update_that_replaces_pods_gives_one_event(clock: FakeClock) -> None:
    """Kubernetes rolling updates give new pods new names: each new pod on the new
    version counts, old pods leave the share as they go idle, one event in all."""
    log = EventLog(SQLiteStore(clock=clock), clock=clock)
    tracker = FingerprintTracker(log, clock=clock, idle_seconds=600)
    new = {**BASE, "lib.numpy": "2.1.0"}
    for i in range(4):
        tracker.observe("fraud", "prod", f"old-{i}", BASE, T0)
    events = []
    for i in range(4):
        clock.now += 300
        for j in range(i + 1, 4):  # the old pods still serving keep reporting
            tracker.observe("fraud", "prod", f"old-{j}", BASE, clock.now)
        events += tracker.observe("fraud", "prod", f"new-{i}", new, clock.now)
    clock.now += 700  # the last old pod is gone
    tracker.observe("fraud", "prod", "new-0", new, clock.now)
    stored = log.list("fraud", "prod")
    assert [str(e.type) for e in stored] == ["library_update"]
    assert (stored[0].attributes["from"], stored[0].attributes["to"]) == ("1.26.4", "2.1.0")
    assert stored[0].attributes["share"] == "1.0000"
    tracker.observe("fraud", "prod", "new-extra", new, clock.now)
    assert len(log.list("fraud", "prod")) == 1  # a scale-up on the current version is no change


def test_a_rollback_then_a_new_rollout_records_a_new_event(clock: FakeClock) -> None:
    log = EventLog(SQLiteStore(clock=clock), clock=clock)
    tracker = FingerprintTracker(log, clock=clock)
    new = {**BASE, "lib.numpy": "2.1.0"}
    tracker.observe("fraud", "prod", "pod-0", BASE, T0)
    tracker.observe("fraud", "prod", "pod-0", new, T0 + 1)
    tracker.observe("fraud", "prod", "pod-0", BASE, T0 + 2)  # rolled back
    tracker.observe("fraud", "prod", "pod-0", new, T0 + 3)  # and forward again
    got = [(e.attributes["from"], e.attributes["to"], e.time) for e in log.list(model="fraud")]
    assert got == [
        ("1.26.4", "2.1.0", T0 + 1),
        ("2.1.0", "1.26.4", T0 + 2),
        ("1.26.4", "2.1.0", T0 + 3),
    ]


def _rollout_on(store: Store, clock: FakeClock) -> None:
    log = EventLog(store, clock=clock)
    tracker = FingerprintTracker(log, clock=clock)
    for i in range(4):
        tracker.observe("fraud", "prod", f"pod-{i}", BASE, T0, fingerprint_hash="old")
    for i in range(4):
        new = {**BASE, "lib.numpy": "2.1.0"}
        tracker.observe("fraud", "prod", f"pod-{i}", new, T0 + 1 + i, fingerprint_hash="new")
    (event,) = store.list_events("fraud", None, 0.0, math.inf, 10)
    assert event.type == "library_update" and event.time == T0 + 1
    assert (event.attributes["share"], event.attributes["instances_changed"]) == ("1.0000", "4")


def test_the_share_is_kept_current_on_sqlite(clock: FakeClock) -> None:
    _rollout_on(SQLiteStore(clock=clock), clock)


@pytest.mark.redis
def test_the_share_is_kept_current_on_redis(
    redis_url: str, redis_prefix: str, clock: FakeClock
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, clock=clock)
    try:
        _rollout_on(store, clock)
    finally:
        store.close()
