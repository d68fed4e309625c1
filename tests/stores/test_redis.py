"""RedisStore beyond the contract: cluster-safe key layout, errors, large flushes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from sidecar.errors import ConfigError, NotFound, StoreUnavailable
from sidecar.records import Partial, Status
from sidecar.stores import RedisStore
from tests.stores import draft, rec

pytestmark = pytest.mark.redis


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> Iterator[RedisStore]:
    made = RedisStore(redis_url, prefix=redis_prefix)
    yield made
    made.close()


MODELS = ("fraud", "a{b}:c", "}{", "plain model/with spaces")


def _exercise(store: RedisStore, model: str) -> None:
    """Touch every kind of key of one model."""
    store.write_partials(model, "prod", [Partial(60, "w:1", {"s": b"1"})], ttl_seconds=60)
    store.write_partials(model, "dev", [Partial(0, "w", {"s": b"1"})], ttl_seconds=60)
    store.create_baseline(
        rec(f"{model}-b1", "monday", model=model), {"s": b"x"}, draft("freeze", "b1", model=model)
    )
    store.cas_pointer(
        model,
        "prod",
        expected_revision=0,
        active=f"{model}-b1",
        history=(),
        status_changes={f"{model}-b1": Status.ACTIVE},
        audit=draft("promote", f"{model}-b1", model=model),
    )


def test_keys_of_one_model_share_one_slot(
    store: RedisStore, raw: redis.Redis, redis_prefix: str
) -> None:
    for model in MODELS:
        _exercise(store, model)
    keys = [k.decode() for k in raw.scan_iter(match=f"{redis_prefix}:*", count=1000)]
    slots: dict[str, set[int]] = {}
    global_keys = set()
    for key in keys:
        rest = key[len(redis_prefix) + 1 :]
        if "{" not in key:
            global_keys.add(rest)
            continue
        # exactly one hash tag per key, right after the prefix: no key names two models
        assert key.count("{") == 1 and key.count("}") == 1, key
        assert rest.startswith("{"), key
        tag = rest[1 : rest.index("}")]
        slots.setdefault(tag, set()).add(key_slot(key.encode()))
        assert key_slot(key.encode()) == key_slot(tag.encode())
    assert len(slots) == len(MODELS)  # one tag per model, escaped where needed
    assert all(len(s) == 1 for s in slots.values())
    assert global_keys == {"models", "ids", "windows"}
    # and every model still reads back its own data
    for model in MODELS:
        assert store.get_baseline(f"{model}-b1").model == model
        assert store.get_pointer(model, "prod").active == f"{model}-b1"
        assert store.read_partials(model, "prod", 0, 100)[0].writer == "w:1"


def test_window_keys_expire(store: RedisStore, raw: redis.Redis, redis_prefix: str) -> None:
    store.write_partials("fraud", "prod", [Partial(60, "w", {"s": b"1"})], ttl_seconds=60)
    keys = list(raw.scan_iter(match=f"{redis_prefix}:*:w*", count=1000))
    assert len(keys) == 3  # the partial hash and the two index sorted sets
    for key in keys:
        assert 0 < raw.ttl(key) <= 60


def test_a_dangling_id_index_entry_resolves_to_not_found(
    store: RedisStore, raw: redis.Redis, redis_prefix: str
) -> None:
    # what a crash between writing the id index and running the script leaves
    raw.hset(f"{redis_prefix}:ids", "b1", "fraud")
    raw.hset(f"{redis_prefix}:ids", "b2", "churn")
    with pytest.raises(NotFound):
        store.get_baseline("b1")
    with pytest.raises(NotFound):
        store.get_baseline_series("b1")
    # and the ids can still be used, by the same model or another one
    store.create_baseline(rec("b1", "monday"), {"s": b"x"}, draft("freeze", "b1"))
    store.create_baseline(rec("b2", "tuesday"), {}, draft("freeze", "b2"))
    assert [r.id for r in store.list_baselines(model="fraud")] == ["b1", "b2"]


def test_store_recovers_when_the_server_forgets_its_scripts(
    store: RedisStore, raw: redis.Redis
) -> None:
    store.write_partials("fraud", "prod", [Partial(0, "w", {"s": b"1"})], ttl_seconds=60)
    store.create_baseline(rec("b1", "monday"), {}, draft("freeze", "b1"))
    raw.script_flush()  # as after a server restart
    store.write_partials("fraud", "prod", [Partial(0, "w", {"s": b"2"})], ttl_seconds=60)
    store.create_baseline(rec("b2", "tuesday"), {}, draft("freeze", "b2"))
    assert store.read_partials("fraud", "prod", 0, 1)[0].series == {"s": b"2"}
    assert store.list_windows() == [("fraud", "prod")]
    assert len(store.list_audit()) == 2


def test_ten_thousand_series_flush_and_read_back(store: RedisStore) -> None:
    series = {f"feature_{i}": i.to_bytes(4, "big") * 400 for i in range(10_000)}
    store.write_partials("fraud", "prod", [Partial(0, "w", series)], ttl_seconds=60)
    (got,) = store.read_partials("fraud", "prod", 0, 1)
    assert got.series == series


def test_closed_port_is_unavailable_and_hides_the_password() -> None:
    store = RedisStore("redis://:s3cret@127.0.0.1:1/0", prefix="x", connect_timeout=1)
    calls: list[Callable[[], object]] = [
        store.ping,
        store.list_windows,
        lambda: store.write_partials("m", "e", [Partial(0, "w", {"s": b"1"})], ttl_seconds=5),
        lambda: store.create_baseline(rec("b1", "n"), {}, draft("freeze", "b1")),
        lambda: store.get_pointer("m", "e"),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1") as caught:
            call()
        assert "s3cret" not in str(caught.value)
    store.close()


def test_a_missing_unix_socket_is_unavailable(tmp_path: Path) -> None:
    store = RedisStore(f"unix://{tmp_path}/no.sock", prefix="x")
    with pytest.raises(StoreUnavailable, match=r"no\.sock"):
        store.ping()
    store.close()


def test_a_given_client_is_used_and_left_open(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisStore("", prefix=redis_prefix, client=client)
    store.create_baseline(rec("b1", "monday"), {}, draft("freeze", "b1"))
    assert "127.0.0.1" in repr(store)
    store.close()
    assert client.hget(f"{redis_prefix}:ids", "b1") == b"fraud"  # still usable
    client.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.ping()


def test_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ConfigError, match="prefix"):
        RedisStore("redis://127.0.0.1:6379/0", prefix="bl{x}")
