"""The Store contract: every store (SQLite in memory, SQLite file, real Redis) passes it."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sidecar.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from sidecar.records import EventRecord, Partial, PointerState, Status
from sidecar.stores import RedisStore, SQLiteStore, Store
from tests.stores import FakeClock, draft, rec


@dataclass
class Backend:
    """A fresh store, plus what the contract needs to reopen it and let time pass."""

    kind: str
    store: Store
    reopen: Callable[[], Store] | None
    advance: Callable[[float], None]
    now: Callable[[], float] = field(default=time.time)


def _sqlite(path: str, clock: FakeClock) -> Backend:
    def reopen() -> Store:
        return SQLiteStore(path, clock=clock)

    def advance(seconds: float) -> None:
        clock.now += seconds

    return Backend(
        "sqlite",
        SQLiteStore(path, clock=clock),
        None if path == ":memory:" else reopen,
        advance,
        clock,
    )


@pytest.fixture(
    params=[
        "sqlite-memory",
        "sqlite-file",
        pytest.param("redis", marks=pytest.mark.redis),
        # A real 3-primary Redis Cluster (tests/cluster_support.py), one per session.
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened: list[Store] = []
    if request.param == "sqlite-memory":
        made = _sqlite(":memory:", FakeClock())
    elif request.param == "sqlite-file":
        made = _sqlite(str(tmp_path / "store.db"), FakeClock())
    elif request.param == "redis-cluster":
        cluster: str = request.getfixturevalue("redis_cluster_url")
        cluster_prefix = f"bltest-{uuid.uuid4().hex[:10]}"  # the cluster dies with the session

        def reopen_cluster() -> Store:
            return RedisStore(cluster, prefix=cluster_prefix)

        made = Backend("redis", reopen_cluster(), reopen_cluster, time.sleep)
    else:
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")

        def reopen() -> Store:
            return RedisStore(url, prefix=prefix)  # a new client on the same keys

        made = Backend("redis", RedisStore(url, prefix=prefix), reopen, time.sleep)
    if made.reopen is not None:
        first_reopen = made.reopen

        def tracked() -> Store:
            store = first_reopen()
            opened.append(store)
            return store

        made.reopen = tracked
    opened.append(made.store)
    yield made
    for store in opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


def freeze(store: Store, baseline_id: str, name: str, **kw: object) -> None:
    record = rec(baseline_id, name, **kw)  # type: ignore[arg-type]
    store.create_baseline(
        record,
        {"s1": b"\x00\x01state", "s2": b"\xff" * 10},
        draft("freeze", baseline_id, model=record.model, environment=record.environment),
    )


# -- windows -----------------------------------------------------------------------


def test_partials_read_back_by_bucket_then_writer(store: Store) -> None:
    store.write_partials(
        "fraud",
        "prod",
        [
            Partial(120, "writer-b", {"lat": b"b120"}),
            Partial(60, "writer-b", {"lat": b"b60", "score": b"\x00\xff"}),
            Partial(60, "writer-a", {"lat": b"a60"}),
        ],
        ttl_seconds=3600,
    )
    got = store.read_partials("fraud", "prod", 0, 1000)
    assert [(p.bucket, p.writer) for p in got] == [
        (60, "writer-a"),
        (60, "writer-b"),
        (120, "writer-b"),
    ]
    assert dict(got[1].series) == {"lat": b"b60", "score": b"\x00\xff"}


def test_rewrite_replaces_named_series_and_keeps_the_rest(store: Store) -> None:
    store.write_partials(
        "fraud", "prod", [Partial(60, "w", {"a": b"1", "b": b"1"})], ttl_seconds=3600
    )
    store.write_partials("fraud", "prod", [Partial(60, "w", {"a": b"2"})], ttl_seconds=3600)
    first = store.read_partials("fraud", "prod", 0, 1000)
    # writers send cumulative state: the same flush again changes nothing
    store.write_partials("fraud", "prod", [Partial(60, "w", {"a": b"2"})], ttl_seconds=3600)
    assert store.read_partials("fraud", "prod", 0, 1000) == first
    assert len(first) == 1 and dict(first[0].series) == {"a": b"2", "b": b"1"}


def test_read_range_is_half_open_and_scoped(store: Store) -> None:
    for bucket in (0, 60, 120):
        store.write_partials(
            "fraud", "prod", [Partial(bucket, "w", {"x": str(bucket).encode()})], ttl_seconds=3600
        )
    store.write_partials("fraud", "staging", [Partial(60, "w", {"x": b"s"})], ttl_seconds=3600)
    store.write_partials("churn", "prod", [Partial(60, "w", {"x": b"c"})], ttl_seconds=3600)
    assert [p.bucket for p in store.read_partials("fraud", "prod", 60, 120)] == [60]
    assert [p.bucket for p in store.read_partials("fraud", "prod", 0, 121)] == [0, 60, 120]
    assert store.read_partials("fraud", "prod", 121, 200) == []
    assert store.read_partials("fraud", "prod", 60, 61)[0].series == {"x": b"60"}
    assert store.read_partials("fraud", "staging", 0, 1000)[0].series == {"x": b"s"}
    assert store.read_partials("nobody", "prod", 0, 1000) == []


def test_list_windows_is_sorted_and_names_with_braces_stay_apart(store: Store) -> None:
    assert store.list_windows() == []
    for model, env in [("zeta", "prod"), ("a{b}:c", "prod"), ("a", "prod"), ("a", "dev")]:
        store.write_partials(model, env, [Partial(0, "w", {"x": model.encode()})], ttl_seconds=60)
    assert store.list_windows() == [
        ("a", "dev"),
        ("a", "prod"),
        ("a{b}:c", "prod"),
        ("zeta", "prod"),
    ]
    assert store.read_partials("a{b}:c", "prod", 0, 1)[0].series == {"x": b"a{b}:c"}
    assert store.read_partials("a", "prod", 0, 1)[0].series == {"x": b"a"}


def test_expired_buckets_are_not_returned(backend: Backend) -> None:
    store = backend.store
    store.write_partials("fraud", "prod", [Partial(0, "w", {"old": b"1"})], ttl_seconds=1)
    store.write_partials("fraud", "prod", [Partial(60, "w", {"kept": b"1"})], ttl_seconds=60)
    store.write_partials("churn", "prod", [Partial(0, "w", {"x": b"1"})], ttl_seconds=1)
    backend.advance(1.3)  # real time for Redis, a fake clock for SQLite
    assert [p.bucket for p in store.read_partials("fraud", "prod", 0, 1000)] == [60]
    assert store.list_windows() == [("fraud", "prod")]
    # a new write to an expired bucket starts it afresh: the old series stay gone
    store.write_partials("fraud", "prod", [Partial(0, "w", {"new": b"2"})], ttl_seconds=60)
    assert store.read_partials("fraud", "prod", 0, 1)[0].series == {"new": b"2"}


def test_bad_scope_and_ttl_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="model"):
        store.write_partials("", "prod", [Partial(0, "w", {"x": b"1"})], ttl_seconds=60)
    with pytest.raises(InvalidInput, match="ttl"):
        store.write_partials("fraud", "prod", [Partial(0, "w", {"x": b"1"})], ttl_seconds=0)
    with pytest.raises(InvalidInput, match="model"):
        store.create_baseline(rec("b1", "n", model=""), {}, draft("freeze", "b1", model=""))
    assert store.list_windows() == []
    assert store.list_baselines() == []


# -- baselines ---------------------------------------------------------------------


def test_create_get_find_baseline(store: Store) -> None:
    record = rec("b1", "monday")
    entry = store.create_baseline(record, {"s1": b"\x00abc", "s2": b""}, draft("freeze", "b1"))
    assert entry.seq >= 1 and entry.action == "freeze" and entry.target == "b1"
    assert store.get_baseline("b1") == record
    assert store.find_baseline("fraud", "prod", "monday") == record
    assert store.get_baseline_series("b1") == {"s1": b"\x00abc", "s2": b""}
    assert store.list_audit() == [entry]


def test_baseline_without_series(store: Store) -> None:
    store.create_baseline(rec("empty", "nothing"), {}, draft("freeze", "empty"))
    assert store.get_baseline_series("empty") == {}
    assert store.get_baseline("empty").name == "nothing"


def test_list_baselines_order_and_filters(store: Store) -> None:
    freeze(store, "b3", "third", created_at=300.0)
    freeze(store, "b2", "second", created_at=200.0)
    freeze(store, "b1", "first", created_at=200.0)  # tie on time: ordered by id
    freeze(store, "s1", "staging", environment="staging", created_at=50.0)
    freeze(store, "c1", "churn", model="churn", created_at=250.0)
    assert [r.id for r in store.list_baselines()] == ["s1", "b1", "b2", "c1", "b3"]
    assert [r.id for r in store.list_baselines(model="fraud")] == ["s1", "b1", "b2", "b3"]
    assert [r.id for r in store.list_baselines(model="fraud", environment="prod")] == [
        "b1",
        "b2",
        "b3",
    ]
    assert [r.id for r in store.list_baselines(environment="staging")] == ["s1"]
    assert store.list_baselines(model="nobody") == []
    assert [r.id for r in store.list_baselines(status=Status.CANDIDATE)] == [
        "s1",
        "b1",
        "b2",
        "c1",
        "b3",
    ]
    assert store.list_baselines(status=Status.ACTIVE) == []


def test_duplicate_id_is_refused_and_writes_nothing(store: Store) -> None:
    freeze(store, "b1", "monday")
    before = (store.list_baselines(), store.list_audit())
    with pytest.raises(AlreadyExists, match="b1"):
        store.create_baseline(rec("b1", "tuesday"), {"other": b"x"}, draft("freeze", "b1"))
    assert (store.list_baselines(), store.list_audit()) == before
    assert store.get_baseline_series("b1") == {"s1": b"\x00\x01state", "s2": b"\xff" * 10}
    with pytest.raises(NotFound):
        store.find_baseline("fraud", "prod", "tuesday")


def test_duplicate_name_is_refused_and_writes_nothing(store: Store) -> None:
    freeze(store, "b1", "monday")
    before = (store.list_baselines(), store.list_audit())
    with pytest.raises(AlreadyExists, match="monday"):
        store.create_baseline(rec("b2", "monday"), {"x": b"x"}, draft("freeze", "b2"))
    assert (store.list_baselines(), store.list_audit()) == before
    with pytest.raises(NotFound):
        store.get_baseline("b2")
    with pytest.raises(NotFound):
        store.get_baseline_series("b2")
    assert store.find_baseline("fraud", "prod", "monday").id == "b1"
    # the same name is free in another environment and another model, and so is b2
    freeze(store, "b2", "monday", environment="staging")
    freeze(store, "b3", "monday", model="churn")
    assert len(store.list_baselines()) == 3


def test_unknown_baselines_are_not_found(store: Store) -> None:
    freeze(store, "b1", "monday")
    with pytest.raises(NotFound, match="nope"):
        store.get_baseline("nope")
    with pytest.raises(NotFound, match="nope"):
        store.get_baseline_series("nope")
    with pytest.raises(NotFound, match="sunday"):
        store.find_baseline("fraud", "prod", "sunday")
    with pytest.raises(NotFound):
        store.find_baseline("fraud", "staging", "monday")


# -- active pointer ----------------------------------------------------------------


def test_pointer_starts_empty(store: Store) -> None:
    assert store.get_pointer("fraud", "prod") == PointerState()


def test_cas_pointer_moves_pointer_statuses_and_appends_audit(store: Store) -> None:
    freeze(store, "b1", "monday")
    freeze(store, "b2", "tuesday", created_at=200.0)
    state, entry = store.cas_pointer(
        "fraud",
        "prod",
        expected_revision=0,
        active="b1",
        history=(),
        status_changes={"b1": Status.ACTIVE},
        audit=draft("promote", "b1", at=300.0),
    )
    assert state == PointerState("b1", (), 1)
    assert store.get_pointer("fraud", "prod") == state
    assert store.get_baseline("b1").status is Status.ACTIVE
    state, entry2 = store.cas_pointer(
        "fraud",
        "prod",
        expected_revision=1,
        active="b2",
        history=("b1",),
        status_changes={"b1": Status.CANDIDATE, "b2": Status.ACTIVE},
        audit=draft("promote", "b2", at=400.0),
    )
    assert state == PointerState("b2", ("b1",), 2)
    assert store.get_pointer("fraud", "prod") == state
    assert [r.status for r in store.list_baselines()] == [Status.CANDIDATE, Status.ACTIVE]
    assert [r.id for r in store.list_baselines(status=Status.ACTIVE)] == ["b2"]
    assert entry.seq < entry2.seq
    assert store.list_audit(limit=2) == [entry, entry2]
    # clearing the pointer works too; other environments are untouched
    state, _ = store.cas_pointer(
        "fraud",
        "prod",
        expected_revision=2,
        active=None,
        history=("b1", "b2"),
        status_changes={"b2": Status.RETIRED},
        audit=draft("retire", "b2", at=500.0),
    )
    assert store.get_pointer("fraud", "prod") == PointerState(None, ("b1", "b2"), 3)
    assert store.get_baseline("b2").status is Status.RETIRED
    assert store.get_pointer("fraud", "staging") == PointerState()


def test_stale_revision_conflicts_and_changes_nothing(store: Store) -> None:
    freeze(store, "b1", "monday")
    freeze(store, "b2", "tuesday")
    store.cas_pointer(
        "fraud",
        "prod",
        expected_revision=0,
        active="b1",
        history=(),
        status_changes={"b1": Status.ACTIVE},
        audit=draft("promote", "b1"),
    )
    before = (store.get_pointer("fraud", "prod"), store.list_baselines(), store.list_audit())
    for stale in (0, 2):
        with pytest.raises(Conflict, match="revision 1"):
            store.cas_pointer(
                "fraud",
                "prod",
                expected_revision=stale,
                active="b2",
                history=("b1",),
                status_changes={"b2": Status.ACTIVE, "b1": Status.CANDIDATE},
                audit=draft("promote", "b2"),
            )
    assert (
        store.get_pointer("fraud", "prod"),
        store.list_baselines(),
        store.list_audit(),
    ) == before


def test_cas_pointer_with_unknown_baseline_is_not_found(store: Store) -> None:
    freeze(store, "b1", "monday")
    freeze(store, "c1", "other model", model="churn")
    cases: list[tuple[str | None, dict[str, Status]]] = [
        ("ghost", {}),
        ("b1", {"ghost": Status.RETIRED}),
        ("c1", {}),  # exists, but belongs to another model
    ]
    for active, changes in cases:
        with pytest.raises(NotFound):
            store.cas_pointer(
                "fraud",
                "prod",
                expected_revision=0,
                active=active,
                history=(),
                status_changes=changes,
                audit=draft("promote", str(active)),
            )
    assert store.get_pointer("fraud", "prod") == PointerState()
    assert [e.action for e in store.list_audit()] == ["freeze", "freeze"]
    assert store.get_baseline("b1").status is Status.CANDIDATE


def _race(store: Store, revision: int) -> list[str]:
    """Two threads promote different baselines from the same revision at once."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def promote(target: str) -> None:
        barrier.wait()
        try:
            store.cas_pointer(
                "fraud",
                "prod",
                expected_revision=revision,
                active=target,
                history=(),
                status_changes={target: Status.ACTIVE},
                audit=draft("promote", target),
            )
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=promote, args=(t,)) for t in ("b1", "b2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sorted(outcomes)


def test_racing_cas_pointer_has_exactly_one_winner(store: Store) -> None:
    freeze(store, "b1", "monday")
    freeze(store, "b2", "tuesday")
    for revision in range(4):
        assert _race(store, revision) == ["conflict", "won"]
        assert store.get_pointer("fraud", "prod").revision == revision + 1
    assert [e.action for e in store.list_audit()].count("promote") == 4


# -- audit -------------------------------------------------------------------------


def test_audit_order_limit_and_filters(store: Store) -> None:
    at = 1000.0
    appended = []
    for model, env in [("fraud", "prod"), ("churn", "prod"), ("fraud", "dev"), ("fraud", "prod")]:
        at += 10
        bid = f"{model}-{env}-{at:.0f}"
        appended.append(
            store.create_baseline(
                rec(bid, bid, model=model, environment=env, created_at=at),
                {"s": b"x"},
                draft("freeze", bid, model=model, environment=env, at=at),
            )
        )
    assert store.list_audit() == appended
    assert store.list_audit(limit=2) == appended[2:]
    assert store.list_audit(model="fraud") == [appended[0], appended[2], appended[3]]
    assert store.list_audit(model="fraud", environment="prod") == [appended[0], appended[3]]
    assert store.list_audit(model="fraud", environment="prod", limit=1) == [appended[3]]
    assert store.list_audit(environment="prod") == [appended[0], appended[1], appended[3]]
    assert store.list_audit(model="nobody") == []
    assert store.list_audit(limit=0) == []
    fraud = store.list_audit(model="fraud")
    assert [e.seq for e in fraud] == sorted({e.seq for e in fraud})
    assert appended[0].before == {"active": None} and appended[0].after["n"] == 1


def test_audit_limit_pages_past_other_environments(store: Store) -> None:
    # many newer entries of another environment must not hide the older ones asked for
    freeze(store, "p1", "prod-1")
    for i in range(150):
        freeze(store, f"d{i}", f"dev-{i}", environment="dev")
    assert [e.target for e in store.list_audit(model="fraud", environment="prod")] == ["p1"]
    assert len(store.list_audit(model="fraud", limit=1000)) == 151


# -- persistence -------------------------------------------------------------------


def test_everything_survives_reopening(backend: Backend) -> None:
    if backend.reopen is None:
        pytest.skip("an in-memory SQLite database does not outlive its store")
    store = backend.store
    freeze(store, "b1", "monday")
    store.cas_pointer(
        "fraud",
        "prod",
        expected_revision=0,
        active="b1",
        history=(),
        status_changes={"b1": Status.ACTIVE},
        audit=draft("promote", "b1"),
    )
    store.write_partials("fraud", "prod", [Partial(60, "w", {"x": b"1"})], ttl_seconds=3600)
    expected = (
        store.list_baselines(),
        store.get_baseline_series("b1"),
        store.get_pointer("fraud", "prod"),
        store.list_audit(),
        store.read_partials("fraud", "prod", 0, 1000),
        store.list_windows(),
    )
    store.close()
    again = backend.reopen()
    assert (
        again.list_baselines(),
        again.get_baseline_series("b1"),
        again.get_pointer("fraud", "prod"),
        again.list_audit(),
        again.read_partials("fraud", "prod", 0, 1000),
        again.list_windows(),
    ) == expected
    assert expected[2].active == "b1" and len(expected[3]) == 2
    # numbering goes on after the reopen
    entry = again.create_baseline(rec("b2", "tuesday"), {}, draft("freeze", "b2"))
    assert entry.seq > expected[3][-1].seq


# -- change events -----------------------------------------------------------------


def event(model: str = "fraud", at: float = 1_700_000_000.0, **kw: object) -> EventRecord:
    values: dict[str, object] = {
        "type": "deploy",
        "time": at,
        "model": model,
        "environment": "prod",
        "version": "v7",
        "attributes": {"commit": "abc123", "pipeline": "ci #42"},
        "recorded_by": "ci",
        "source": "grpc",
        "recorded_at": at,
    }
    values.update(kw)
    return EventRecord(**values)  # type: ignore[arg-type]


def test_append_event_assigns_ids_and_lists_by_event_time(store: Store) -> None:
    late = store.append_event(event(at=1_700_000_300.0, version="v8"))
    early = store.append_event(event(at=1_700_000_100.0, type="library_update"))
    assert late.id and early.id and late.id != early.id
    got = store.list_events("fraud", None, 0.0, math.inf, 100)
    assert got == [early, late]  # by event time, not by arrival
    assert dict(got[1].attributes) == {"commit": "abc123", "pipeline": "ci #42"}
    assert got[1].version == "v8" and got[0].type == "library_update"


def test_list_events_range_limit_and_filters(store: Store) -> None:
    t = 1_700_000_000.0
    store.append_event(event(at=t, type="deploy"))
    store.append_event(event(at=t + 10, type="config_change", environment="staging"))
    store.append_event(event(at=t + 20, type="node_change", environment=""))  # every environment
    store.append_event(event(model="ranker", at=t + 30))
    store.append_event(event(model="{fraud}", at=t + 40))  # braces stay apart in Redis keys

    def times(**kw: object) -> list[float]:
        args: dict[str, object] = {
            "model": "fraud",
            "environment": None,
            "start": 0.0,
            "end": math.inf,
            "limit": 100,
        }
        args.update(kw)
        types = args.pop("types", ())
        found = store.list_events(**args, types=types)  # type: ignore[arg-type]
        return [e.time - t for e in found]

    assert times() == [0, 10, 20]
    assert times(model=None) == [0, 10, 20, 30, 40]
    assert times(model="{fraud}") == [40]
    assert times(environment="prod") == [0, 20]  # unscoped events apply to prod too
    assert times(environment="staging") == [10, 20]
    assert times(start=t + 10, end=t + 20) == [10]  # half-open [start, end)
    assert times(types=["deploy", "node_change"]) == [0, 20]
    assert times(limit=2) == [10, 20]  # the newest two, oldest first
    assert times(limit=0) == []
    assert times(model="nobody") == []


def test_events_past_retention_are_dropped_on_append(backend: Backend) -> None:
    store = backend.store
    first = backend.now()
    store.append_event(event(at=first), retention_seconds=1.0)
    backend.advance(1.5)
    second = backend.now()
    kept = store.append_event(event(at=second, version="v8"), retention_seconds=1.0)
    assert store.list_events("fraud", None, 0.0, math.inf, 100) == [kept]


def test_events_survive_reopening(backend: Backend) -> None:
    if backend.reopen is None:
        pytest.skip("an in-memory SQLite database does not outlive its connection")
    stored = backend.store.append_event(event(type="custom", custom_type="db_migration"))
    backend.store.close()
    again = backend.reopen()
    assert again.list_events("fraud", "prod", 0.0, math.inf, 10) == [stored]


def test_append_event_without_model_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="model"):
        store.append_event(event(model=""))
    assert store.list_events(None, None, 0.0, math.inf, 10) == []


def test_update_event_attributes_merges_and_survives_listing(store: Store) -> None:
    stored = store.append_event(event(type="library_update", attributes={"share": "0.1"}))
    other = store.append_event(event(at=1_700_000_010.0))
    updated = store.update_event_attributes("fraud", stored.id, {"share": "0.5", "seen": "10"})
    assert dict(updated.attributes) == {"share": "0.5", "seen": "10"}
    store.update_event_attributes("fraud", stored.id, {"share": "1.0"})
    got = store.list_events("fraud", None, 0.0, math.inf, 10)
    assert [e.id for e in got] == [stored.id, other.id]
    assert dict(got[0].attributes) == {"share": "1.0", "seen": "10"}  # merged, not replaced
    assert dict(got[1].attributes) == {"commit": "abc123", "pipeline": "ci #42"}  # untouched
    assert got[0].type == "library_update" and got[0].time == stored.time


def test_update_event_attributes_of_an_unknown_event_is_not_found(store: Store) -> None:
    stored = store.append_event(event())
    with pytest.raises(NotFound):
        store.update_event_attributes("fraud", "ev-nope", {"share": "1"})
    with pytest.raises(NotFound):
        store.update_event_attributes("ranker", stored.id, {"share": "1"})  # another model's
    assert store.list_events(None, None, 0.0, math.inf, 10) == [stored]


# -- governance and the audit hash chain -------------------------------------------


def test_policies_default_and_round_trip_with_their_audit_entry(store: Store) -> None:
    from sidecar.records import Policy

    assert store.get_policy("fraud", "prod") == Policy("fraud", "prod")
    policy = Policy("fraud", "prod", four_eyes=True, owners=("team-risk", "alice"))
    entry = store.set_policy(policy, draft("set_policy", "fraud/prod"))
    assert store.get_policy("fraud", "prod") == policy
    assert store.get_policy("fraud", "staging") == Policy("fraud", "staging")
    assert store.list_audit() == [entry]


def test_pending_approvals_are_listed_oldest_first_and_forgotten(store: Store) -> None:
    from sidecar.records import PendingApproval

    first = PendingApproval("b2", "fraud", "prod", "alice", 200.0, "go")
    second = PendingApproval("b1", "fraud", "staging", "bob", 300.0)
    store.put_pending(second, draft("promote_requested", "b1", environment="staging"))
    store.put_pending(first, draft("promote_requested", "b2"))
    assert store.list_pending() == [first, second]
    assert store.list_pending("fraud", "staging") == [second]
    assert store.list_pending("churn") == []
    store.delete_pending("fraud", "b2")
    store.delete_pending("fraud", "b-unknown")
    assert store.list_pending() == [second]
    assert [e.action for e in store.list_audit()] == ["promote_requested"] * 2


def test_every_append_extends_one_verifiable_chain(store: Store) -> None:
    from sidecar.audit import verify_chain

    freeze(store, "b1", "monday")
    store.append_audit(draft("note", "b1", at=150.0))
    store.append_audit(draft("auth_denied", "/x/Y", model="", environment=""))
    entries = store.list_audit(model="fraud")
    assert [e.seq for e in entries] == [1, 2]
    assert entries[0].hash == entries[0].content_hash() and entries[1].prev_hash == entries[0].hash
    chains = {c: list(store.read_audit_chain(c)) for c in store.audit_chains()}
    assert sum(len(read) for read in chains.values()) == 3
    for chain, read in chains.items():  # each chain's head is its newest entry
        assert store.audit_head(chain) == ((read[-1].seq, read[-1].hash) if read else (0, ""))
    result = verify_chain(store)
    assert result.ok and result.checked == 3


# -- outcomes (issue 8): predictions kept for labels, outcome claims ------------------


def test_predictions_kept_and_first_record_wins(store: Store) -> None:
    evicted = store.put_predictions(
        "fraud", [("r1", b"one"), ("r2", b"two")], ttl_seconds=3600, max_records=100
    )
    assert evicted == 0
    store.put_predictions(
        "fraud", [("r1", b"again"), ("r3", b"three")], ttl_seconds=3600, max_records=100
    )
    found = store.get_predictions("fraud", ["r1", "r2", "r3", "missing"])
    assert found == {"r1": b"one", "r2": b"two", "r3": b"three"}
    assert store.get_predictions("other", ["r1"]) == {}  # models are apart


def test_predictions_bounded_per_model(store: Store) -> None:
    evicted = store.put_predictions(
        "fraud", [(f"r{i}", b"x") for i in range(10)], ttl_seconds=3600, max_records=4
    )
    found = store.get_predictions("fraud", [f"r{i}" for i in range(10)])
    assert len(found) <= 4
    assert evicted == 10 - len(found)  # every record not kept is counted


def test_predictions_refuse_bad_arguments(store: Store) -> None:
    with pytest.raises(InvalidInput):
        store.put_predictions("", [("r", b"x")], ttl_seconds=10, max_records=1)
    with pytest.raises(InvalidInput):
        store.put_predictions("m", [("r", b"x")], ttl_seconds=0, max_records=1)
    with pytest.raises(InvalidInput):
        store.put_predictions("m", [("r", b"x")], ttl_seconds=10, max_records=0)
    assert store.get_predictions("m", ["r"]) == {}


def test_predictions_expire(backend: Backend) -> None:
    if backend.kind == "redis":
        pytest.skip("Redis expires predictions by time bucket (a minute or more): too slow here")
    store = backend.store
    store.put_predictions("fraud", [("r1", b"one")], ttl_seconds=60, max_records=10)
    backend.advance(30)
    assert store.get_predictions("fraud", ["r1"]) == {"r1": b"one"}
    backend.advance(31)
    assert store.get_predictions("fraud", ["r1"]) == {}


def test_outcome_claims_first_wins(store: Store) -> None:
    assert store.claim_outcomes("fraud", ["a", "b", "a"], ttl_seconds=3600) == [True, True, False]
    assert store.claim_outcomes("fraud", ["b", "c"], ttl_seconds=3600) == [False, True]
    assert store.claim_outcomes("other", ["a"], ttl_seconds=3600) == [True]
