"""Backend-specific storage of change events: the SQLite upgrade and the Redis stream layout."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
import redis

from sidecar.records import EventRecord
from sidecar.stores import RedisStore, SQLiteStore
from sidecar.stores.sqlite import SCHEMA_VERSION

EVENT = EventRecord(type="deploy", time=1_700_000_000.0, model="fraud", recorded_at=1_700_000_000.0)


def test_a_version_1_file_gains_the_events_table(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE events")
    conn.execute("UPDATE schema_version SET version = 1")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    try:
        stored = store.append_event(EVENT)
        assert store.list_events("fraud", None, 0.0, math.inf, 10) == [stored]
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


@pytest.mark.redis
def test_redis_keeps_one_stream_per_model_under_its_hash_tag(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, max_events_per_model=1000)
    client = redis.Redis.from_url(redis_url)
    try:
        for _ in range(3):
            store.append_event(EVENT, retention_seconds=math.inf)
        store.append_event(EventRecord(type="deploy", time=1.7e9, model="a:b{c}"))
        key = f"{redis_prefix}:{{fraud}}:events"
        assert client.type(key) == b"stream" and client.xlen(key) == 3
        assert client.xlen(f"{redis_prefix}:{{a%3Ab%7Bc%7D}}:events") == 1
    finally:
        client.close()
        store.close()
