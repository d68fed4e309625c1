"""RedisStore on a real Redis Cluster under failover and resharding.

Each test starts its own throwaway cluster (``tests/cluster_support.py``): 3
primaries, and 1 replica each where the test kills a primary, with a
``cluster-node-timeout`` of 1000 ms so a replica takes over in a few seconds.
The figures (failover detection and recovery times, errors the store saw) are
printed; run with ``-s`` to see them. Wall-clock times are reported, never
asserted.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pytest
from redis.cluster import key_slot

from sidecar.audit import verify_chain
from sidecar.errors import ConfigError, Conflict, StoreUnavailable
from sidecar.lease import LeaseManager
from sidecar.records import AuditEntry, BaselineRecord, Partial, PointerState, Status
from sidecar.stores import RedisStore
from tests.cluster_support import ClusterUnavailable, LocalCluster
from tests.conftest import REQUIRE_REDIS
from tests.stores import draft, rec

pytestmark = pytest.mark.redis

_T = TypeVar("_T")
NODE_TIMEOUT_MS = 1000
# The global index keys (P:windows 6194, P:models 7545, P:ids 10918) of this
# prefix sit outside slots 0-5460, the first primary's: killing that primary
# then leaves every other model's writes working (see the first test).
PREFIX = "blfo2"
GLOBAL_SLOTS = [int(key_slot(f"{PREFIX}:{k}".encode())) for k in ("windows", "models", "ids")]


@pytest.fixture
def cluster_with_replicas() -> Iterator[LocalCluster]:
    """A throwaway 3-primary, 3-replica cluster (not the session one: tests kill nodes)."""
    cluster = LocalCluster(masters=3, replicas=1, node_timeout_ms=NODE_TIMEOUT_MS)
    try:
        cluster.start()
    except ClusterUnavailable as err:
        if REQUIRE_REDIS:
            pytest.fail(f"{err} (BASELINED_REQUIRE_REDIS is set, so this is a failure)")
        pytest.skip(str(err))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_no_replicas() -> Iterator[LocalCluster]:
    cluster = LocalCluster(masters=3, node_timeout_ms=NODE_TIMEOUT_MS)
    try:
        cluster.start()
    except ClusterUnavailable as err:
        if REQUIRE_REDIS:
            pytest.fail(f"{err} (BASELINED_REQUIRE_REDIS is set, so this is a failure)")
        pytest.skip(str(err))
    try:
        yield cluster
    finally:
        cluster.stop()


def _stem(model: str) -> str:
    return f"{PREFIX}:{{{model}}}"


def _slot(model: str) -> int:
    return int(key_slot(_stem(model).encode()))


def models_by_primary(cluster: LocalCluster) -> dict[int, str]:
    """One model name per primary, whose hash tag lands on that primary."""
    # The slot map itself says which primaries serve slots (a node listed as a master
    # in CLUSTER NODES just after start may serve none yet): read it once.
    client = cluster.node(cluster.alive()[0])
    try:
        ranges = cast(list[Any], client.execute_command("CLUSTER SLOTS"))
    finally:
        client.close()
    owners = [(int(first), int(last), int(primary[1])) for first, last, primary, *_ in ranges]
    primaries = {port for _, _, port in owners}
    found: dict[int, str] = {}
    for i in range(100_000):
        name = f"model-{i}"
        slot = _slot(name)
        port = next(p for first, last, p in owners if first <= slot <= last)
        found.setdefault(port, name)
        if set(found) == primaries:
            return found
    raise AssertionError(f"no model name found for every primary: {found} of {primaries}")


@dataclass
class Acked:
    """What the store acknowledged for one model."""

    model: str
    baselines: dict[str, tuple[BaselineRecord, dict[str, bytes]]] = field(default_factory=dict)
    pointer: PointerState | None = None
    audit: list[AuditEntry] = field(default_factory=list)
    partials: list[Partial] = field(default_factory=list)


def seed(store: RedisStore, model: str, bucket: int) -> Acked:
    """Freeze two baselines, promote one, append an audit note, write window partials."""
    acked = Acked(model)
    for n in (1, 2):
        bid = f"{model}-b{n}-{uuid.uuid4().hex[:6]}"
        record = rec(bid, f"freeze-{n}", model=model)
        series = {f"input:f{k}": bytes([n, k]) * 50 for k in range(5)}
        acked.audit.append(store.create_baseline(record, series, draft("freeze", bid, model=model)))
        acked.baselines[bid] = (record, series)
    first = next(iter(acked.baselines))
    acked.pointer, entry = store.cas_pointer(
        model,
        "prod",
        expected_revision=0,
        active=first,
        history=(),
        status_changes={first: Status.ACTIVE},
        audit=draft("promote", first, model=model),
    )
    acked.audit.append(entry)
    acked.audit.append(store.append_audit(draft("note", first, model=model)))
    acked.partials = write_partials(store, model, bucket, "sidecar-a")
    return acked


def write_partials(store: RedisStore, model: str, bucket: int, writer: str) -> list[Partial]:
    partials = [Partial(bucket, writer, {"input:f0": b"x" * 64, "output:score": b"y" * 64})]
    store.write_partials(model, "prod", partials, ttl_seconds=3600)
    return partials


def check_intact(store: RedisStore, acked: Acked) -> None:
    """Every acknowledged baseline, series, pointer, audit entry and partial reads back."""
    for bid, (record, series) in acked.baselines.items():
        assert store.get_baseline(bid).name == record.name
        assert store.get_baseline_series(bid) == series
    assert acked.pointer is not None
    assert store.get_pointer(acked.model, "prod") == acked.pointer
    chain = {e.seq: e for e in store.read_audit_chain(acked.model)}
    for entry in acked.audit:
        assert chain.get(entry.seq) == entry, f"audit entry {entry.seq} of {acked.model} lost"
    result = verify_chain(store, acked.model)
    assert result.ok, result.problem
    buckets = sorted({p.bucket for p in acked.partials})
    got = store.read_partials(acked.model, "prod", buckets[0], buckets[-1] + 60)
    have = {(p.bucket, p.writer): dict(p.series) for p in got}
    for p in acked.partials:
        assert have.get((p.bucket, p.writer)) == dict(p.series)


def retry_until_ok(
    op: Callable[[], _T], *, budget: float = 30.0, pause: float = 0.05
) -> tuple[_T, list[str], float]:
    """Call ``op`` until it works: (result, the StoreUnavailable messages seen, seconds)."""
    errors: list[str] = []
    began = time.monotonic()
    while True:
        try:
            return op(), errors, time.monotonic() - began
        except StoreUnavailable as err:
            errors.append(str(err))
            if time.monotonic() - began > budget:
                raise
            time.sleep(pause)


class PromotionWatch:
    """Polls the slot map from a background thread: when did ``slot`` change primary."""

    def __init__(self, cluster: LocalCluster, slot: int, old: int) -> None:
        self.cluster, self.slot, self.old = cluster, slot, old
        self.began = time.monotonic()
        self.promoted_after: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.promoted_after is None:
            try:
                live = [p for p in self.cluster.alive() if p != self.old]
                owner = self.cluster.primary_of_slot(self.slot, via=live[0])
                if owner != self.old:
                    self.promoted_after = time.monotonic() - self.began
            except Exception:  # a node between states; poll again
                pass
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.mark.slow
def test_primary_killed_replica_promoted_nothing_acknowledged_lost(
    cluster_with_replicas: LocalCluster,
) -> None:
    cluster = cluster_with_replicas
    store = RedisStore(cluster.url, prefix=PREFIX, socket_timeout=5.0, connect_timeout=1.0)
    try:
        models = models_by_primary(cluster)
        assert len(models) == 3
        bucket = int(time.time()) // 60 * 60
        acked = {m: seed(store, m, bucket) for m in models.values()}
        # The primary of slot 0 is the client's default node (the first primary
        # of its slot map), the node whose loss redis-py's cluster pipeline did
        # not recover from (RedisStore._refresh_cluster_map).
        victim_port = cluster.primary_of_slot(0)
        victim = models[victim_port]
        assert all(cluster.primary_of_slot(slot) != victim_port for slot in GLOBAL_SLOTS)
        replica = cluster.replicas_of(victim_port)[0]

        cluster.kill(victim_port)
        watch = PromotionWatch(cluster, _slot(victim), victim_port)
        # Models of the other primaries go on at once, without a single error,
        # while the dead primary's replica has not been promoted yet (the global
        # index keys live elsewhere: a primary holding them takes every model's
        # writes down while it fails over).
        for other in acked.values():
            if other.model != victim:
                other.partials += write_partials(store, other.model, bucket + 60, "sidecar-a")
                other.audit.append(store.append_audit(draft("note", "during", model=other.model)))
                assert store.get_pointer(other.model, "prod") == other.pointer

        # The sidecar's flush: a window write of the victim model, retried as the
        # flush loop would (here without its backoff, to count every failure).
        def flush() -> list[Partial]:
            return write_partials(store, victim, bucket + 60, "sidecar-a")

        partials, flush_errors, flush_s = retry_until_ok(flush)
        acked[victim].partials += partials
        entry, audit_errors, _ = retry_until_ok(
            lambda: store.append_audit(draft("note", "after-failover", model=victim))
        )
        acked[victim].audit.append(entry)
        promoted = cluster.wait_promoted(_slot(victim), victim_port)
        watch.stop()
        assert promoted == replica, "the dead primary's own replica took its slots over"

        # Every acknowledged write of every model reads back, the victim's from
        # its promoted replica.
        for state in acked.values():
            check_intact(store, state)
        node = cluster.node(promoted)
        try:
            first = next(iter(acked[victim].baselines))
            assert node.exists(f"{_stem(victim)}:b:{first}") == 1
        finally:
            node.close()
        # The store keeps working on the promoted replica: freeze and promote again.
        more = seed(store, victim + "-again", bucket)
        check_intact(store, more)
        print(
            f"\nfailover: promoted after {watch.promoted_after or -1:.2f} s,"
            f" first flush ok after {flush_s:.2f} s"
            f" ({len(flush_errors)} StoreUnavailable at one call per 50 ms);"
            f" audit append after it: {len(audit_errors)} errors;"
            f" first error: {(flush_errors or ['none'])[0][:160]}"
        )
    finally:
        store.close()


@pytest.mark.slow
def test_write_acknowledged_while_replica_lags_is_lost_on_failover(
    cluster_with_replicas: LocalCluster,
) -> None:
    """Replication is asynchronous: what the primary acknowledged but had not yet
    sent to its replica is gone after the replica takes over; the chain goes on
    from the promoted replica's head, so it still verifies. With
    ``replica_acks=1`` the same write fails with ``StoreUnavailable`` instead of
    being acknowledged."""
    cluster = cluster_with_replicas
    store = RedisStore(cluster.url, prefix=PREFIX, socket_timeout=5.0, connect_timeout=1.0)
    acked_store = RedisStore(
        f"{cluster.url}?replica_acks=1&replica_ack_timeout=0.3",
        prefix=PREFIX,
        socket_timeout=5.0,
        connect_timeout=1.0,
    )
    try:
        models = models_by_primary(cluster)
        victim_port, victim = next(iter(models.items()))
        replica = cluster.replicas_of(victim_port)[0]
        bucket = int(time.time()) // 60 * 60
        before = seed(acked_store, victim, bucket)  # every write confirmed by the replica

        # The cost of the confirmation, measured here, reported (not asserted).
        costs = {}
        for name, s in (("plain", store), ("replica_acks=1", acked_store)):
            began = time.perf_counter()
            for i in range(50):
                before.audit.append(s.append_audit(draft("note", f"{name}-{i}", model=victim)))
            costs[name] = (time.perf_counter() - began) / 50 * 1000

        # Lag on demand: the replica is paused and its replication link cut, so the
        # primary acknowledges the next write without having sent it anywhere.
        cluster.pause(replica)
        primary = cluster.node(victim_port)
        try:
            assert primary.execute_command("CLIENT", "KILL", "TYPE", "replica") == 1
        finally:
            primary.close()
        with pytest.raises(StoreUnavailable, match="only 0 of 1 replicas confirmed"):
            acked_store.append_audit(draft("note", "refused-unconfirmed", model=victim))
        lagging = store.append_audit(draft("note", "acked-but-not-replicated", model=victim))
        assert lagging.seq == before.audit[-1].seq + 2  # after the unconfirmed one
        cluster.kill(victim_port)
        cluster.resume(replica)
        promoted = cluster.wait_promoted(_slot(victim), victim_port)
        assert promoted == replica

        retry_until_ok(lambda: check_intact(store, before))  # what was replicated survived
        chain, _, _ = retry_until_ok(lambda: list(store.read_audit_chain(victim)))
        assert max(e.seq for e in chain) == before.audit[-1].seq, "both lagging writes lost"
        assert verify_chain(store, victim).ok
        # The chain goes on from the promoted replica's head.
        entry, _, _ = retry_until_ok(
            lambda: store.append_audit(draft("note", "after", model=victim))
        )
        assert entry.seq == before.audit[-1].seq + 1
        assert entry.prev_hash == before.audit[-1].hash
        print(
            f"\nlost on failover: the 2 audit entries written after the replica's link"
            f" was cut (1 acknowledged, 1 refused by replica_acks=1);"
            f" append_audit {costs['plain']:.2f} ms plain,"
            f" {costs['replica_acks=1']:.2f} ms with replica_acks=1"
        )
    finally:
        store.close()
        acked_store.close()


def _migrate_slot(
    cluster: LocalCluster, slot: int, source: int, target: int, between: Callable[[], None]
) -> int:
    """Move ``slot`` from ``source`` to ``target`` as ``redis-cli --cluster reshard``
    does (IMPORTING/MIGRATING, MIGRATE in batches of 10 keys, SETSLOT NODE),
    calling ``between`` after the first batch. Returns the keys moved."""
    src, dst = cluster.node(source), cluster.node(target)
    moved = 0
    try:
        src_id, dst_id = cluster.node_id(source), cluster.node_id(target)
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        first = True
        while True:
            keys: list[Any] = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 10)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            if first:
                between()
                first = False
        for port in cluster.primaries():
            node = cluster.node(port)
            try:
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
            finally:
                node.close()
    finally:
        src.close()
        dst.close()
    return moved


@pytest.mark.slow
def test_slot_resharded_while_in_use(cluster_no_replicas: LocalCluster) -> None:
    cluster = cluster_no_replicas
    store = RedisStore(cluster.url, prefix=PREFIX, socket_timeout=5.0, connect_timeout=1.0)
    stop = threading.Event()
    errors: list[str] = []
    ops = [0]

    def workload() -> None:  # a sidecar's traffic on the model being moved
        n = 0
        while not stop.is_set():
            n += 1
            try:
                write_partials(store, model, bucket + 60 * (n % 5), "sidecar-b")
                store.read_partials(model, "prod", bucket, bucket + 600)
                store.get_pointer(model, "prod")
                ops[0] += 1
            except Exception as err:
                errors.append(repr(err))

    try:
        models = models_by_primary(cluster)
        source, model = next(iter(models.items()))
        target = next(p for p in models if p != source)
        bucket = int(time.time()) // 60 * 60
        acked = seed(store, model, bucket)
        slot = _slot(model)
        worker = threading.Thread(target=workload, daemon=True)
        worker.start()
        time.sleep(0.2)
        during: list[Any] = []

        def mid_migration() -> None:
            # The first batch is on the target, the rest still on the source. Move
            # the keys these reads need too: the source now answers ASK for them.
            bid = next(iter(acked.baselines))
            wanted = [f"{_stem(model)}:{kind}" for kind in (f"b:{bid}", f"bs:{bid}", "ptr:prod")]
            src, dst = cluster.node(source), cluster.node(target)
            try:
                src.execute_command(
                    "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *wanted
                )  # NOKEY when the first batch took them all
                pipe = dst.pipeline(transaction=False)  # ASKING holds for one command
                pipe.execute_command("ASKING")
                pipe.exists(*wanted)
                assert pipe.execute()[1] == len(wanted), "the keys are on the target only"
            finally:
                src.close()
                dst.close()
            during.append(store.get_baseline_series(bid))
            during.append(store.get_pointer(model, "prod"))

        moved = _migrate_slot(cluster, slot, source, target, mid_migration)
        time.sleep(0.2)
        stop.set()
        worker.join(timeout=10)
        assert cluster.primary_of_slot(slot) == target
        assert moved > 10, "the slot held more than one batch of the model's keys"
        assert during == [next(iter(acked.baselines.values()))[1], acked.pointer]
        assert errors == [], errors[:3]
        assert ops[0] > 0
        # Now on the target (the client's map said source: MOVED, then a new map).
        check_intact(store, acked)
        entry = store.append_audit(draft("note", "after-reshard", model=model))
        assert entry.seq == acked.audit[-1].seq + 1
        src = cluster.node(source)
        try:
            assert src.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
        finally:
            src.close()
        print(f"\nreshard: {moved} keys moved under {ops[0]} workload rounds, 0 errors")
    finally:
        stop.set()
        store.close()


@pytest.mark.slow
def test_lease_across_failover(cluster_with_replicas: LocalCluster) -> None:
    """Two scopes on the primary that dies. ``renewing``: its holder keeps renewing
    through the failover and keeps the lease (same token), and nobody else gets
    it. ``abandoned``: its holder dies with the primary; the other sidecar takes
    over with a higher token and the old holder's fenced writes are refused. At
    no sampled moment do two managers both hold one scope."""
    cluster = cluster_with_replicas
    ttl = 6.0  # longer than the failover (a few seconds at node timeout 1 s)
    url = cluster.url
    stores = [RedisStore(url, prefix=PREFIX, socket_timeout=2.0, connect_timeout=1.0) for _ in "ab"]
    try:
        a, b = (LeaseManager(s, name, ttl) for s, name in zip(stores, "ab", strict=True))
        models = models_by_primary(cluster)
        victim_port, model = next(iter(models.items()))
        token_a = a.ensure(model, "renewing")
        token_dead = a.ensure(model, "abandoned")
        assert token_a is not None and token_dead is not None
        assert b.ensure(model, "renewing") is None and b.ensure(model, "abandoned") is None
        a.drop(model, "abandoned")  # holder "a" of this scope is gone: never renews again

        cluster.kill(victim_port)
        began = time.monotonic()
        both_held = 0
        renew_errors = 0
        b_token: int | None = None
        while time.monotonic() - began < ttl + 12:
            lost = a.renew()
            assert (model, "renewing") not in lost
            for env in ("renewing", "abandoned"):
                try:
                    got = b.ensure(model, env)
                except StoreUnavailable:
                    renew_errors += 1
                    continue
                if env == "abandoned" and got is not None:
                    b_token = got
                if env == "renewing":
                    assert got is None, "the renewing holder's lease was taken"
            if a.token(model, "renewing") is not None and b.token(model, "renewing") is not None:
                both_held += 1
            if b_token is not None and a.token(model, "renewing") is not None:
                break
            time.sleep(0.2)
        takeover_s = time.monotonic() - began
        assert both_held == 0
        assert a.token(model, "renewing") == token_a, "renewed through the failover"
        assert stores[0].lease_holder(model, "renewing") == ("a", token_a)
        assert b_token is not None and b_token > token_dead
        assert stores[1].lease_holder(model, "abandoned") == ("b", b_token)
        with pytest.raises(Conflict):
            stores[0].write_alert_state(model, "abandoned", "a", token_dead, b"stale")
        stores[1].write_alert_state(model, "abandoned", "b", b_token, b"fresh")
        assert stores[0].read_alert_states(model)[(model, "abandoned")] == b"fresh"
        print(
            f"\nlease: kept through failover by its renewing holder (token {token_a});"
            f" abandoned one taken over after {takeover_s:.1f} s with token {b_token}"
            f" > {token_dead}; {renew_errors} store errors seen while acquiring"
        )
    finally:
        for s in stores:
            s.close()


@pytest.mark.slow
def test_lease_granted_in_the_lag_window_is_lost_but_stays_fenced(
    cluster_with_replicas: LocalCluster,
) -> None:
    """A lease acquired but not yet replicated is lost with its token counter: the
    next holder gets the same token number. Fencing compares token and holder,
    so the first holder's writes are refused and its next renewal drops it."""
    cluster = cluster_with_replicas
    stores = [RedisStore(cluster.url, prefix=PREFIX, socket_timeout=2.0) for _ in "ab"]
    try:
        a, b = (LeaseManager(s, name, 30.0) for s, name in zip(stores, "ab", strict=True))
        victim_port, model = next(iter(models_by_primary(cluster).items()))
        replica = cluster.replicas_of(victim_port)[0]
        cluster.pause(replica)
        primary = cluster.node(victim_port)
        try:
            primary.execute_command("CLIENT", "KILL", "TYPE", "replica")
        finally:
            primary.close()
        token_a = a.ensure(model, "prod")
        cluster.kill(victim_port)
        cluster.resume(replica)
        cluster.wait_promoted(_slot(model), victim_port)

        token_b, _, _ = retry_until_ok(lambda: b.ensure(model, "prod"))
        assert token_a == token_b == 1, "the same token number, granted twice"
        assert a.token(model, "prod") == b.token(model, "prod")  # both believe, until...
        with pytest.raises(Conflict):
            stores[0].write_alert_state(model, "prod", "a", token_a, b"stale")
        stores[1].write_alert_state(model, "prod", "b", token_b, b"fresh")
        assert a.renew() == [(model, "prod")]  # ...a's next renewal drops it
        assert a.token(model, "prod") is None and b.token(model, "prod") == token_b
    finally:
        for s in stores:
            s.close()


def test_replica_acks_on_a_server_without_replicas(redis_url: str, redis_prefix: str) -> None:
    """Standalone Redis: the confirmation runs too; with no replica to confirm,
    the write is applied but the call fails, naming the shortfall."""
    store = RedisStore(f"{redis_url}?replica_acks=1&replica_ack_timeout=0.05", prefix=redis_prefix)
    plain = RedisStore(f"{redis_url}?replica_acks=0", prefix=redis_prefix)
    try:
        with pytest.raises(
            StoreUnavailable, match=r"only 0 of 1 replicas confirmed it within 0\.05 s"
        ):
            store.create_baseline(rec("b1", "w1"), {"s": b"x"}, draft("freeze", "b1"))
        assert plain.get_baseline("b1").name == "w1"  # applied, just not confirmed
        plain.append_audit(draft("note", "b1"))
    finally:
        store.close()
        plain.close()


@pytest.mark.parametrize(
    "query, problem",
    [
        ("replica_acks=two", "must be an integer"),
        ("replica_acks=-1", "must be >= 0"),
        ("replica_acks=1&replica_ack_timeout=0", "must be > 0"),
        ("replica_ack_timeout=nan", "must be > 0"),
    ],
)
def test_replica_acks_options_are_checked(query: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        RedisStore(f"redis://127.0.0.1:1/0?{query}")
