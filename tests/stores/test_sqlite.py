"""SQLiteStore beyond the contract: atomicity, expiry on a fake clock, files, URLs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from sidecar.errors import ConfigError, InvalidInput, NotFound, StoreUnavailable
from sidecar.records import Partial
from sidecar.stores import RedisStore, SQLiteStore, open_store
from sidecar.stores.sqlite import SCHEMA_VERSION
from tests.stores import FakeClock, draft, rec


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with a second, independent connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_failure_mid_transaction_leaves_no_half_baseline(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(str(path))
    # The record row is inserted before the series; the second series is not bytes.
    bad = {"s1": b"ok", "s2": "not bytes"}
    with pytest.raises(InvalidInput, match="b1"):
        store.create_baseline(rec("b1", "monday"), bad, draft("freeze", "b1"))  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        store.get_baseline("b1")
    assert store.list_baselines() == [] and store.list_audit() == []
    assert _rows(path, "SELECT COUNT(*) FROM baseline_series") == [(0,)]
    # the same id and name are free afterwards
    store.create_baseline(rec("b1", "monday"), {"s1": b"ok"}, draft("freeze", "b1"))
    assert store.get_baseline_series("b1") == {"s1": b"ok"}
    store.close()


def test_files_use_wal_and_record_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(str(path)).close()
    assert _rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert _rows(path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable, match=f"schema version {SCHEMA_VERSION + 1}"):
        SQLiteStore(str(path))


def test_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no-such-dir"):
        SQLiteStore(str(tmp_path / "no-such-dir" / "store.db"))


def test_a_write_refreshes_the_expiry_of_the_whole_bucket() -> None:
    clock = FakeClock()
    store = SQLiteStore(clock=clock)
    store.write_partials("fraud", "prod", [Partial(0, "w", {"a": b"1"})], ttl_seconds=10)
    clock.now += 8
    store.write_partials("fraud", "prod", [Partial(0, "w", {"b": b"2"})], ttl_seconds=10)
    clock.now += 8  # 16 s after the first write, 8 s after the last one
    assert store.read_partials("fraud", "prod", 0, 1)[0].series == {"a": b"1", "b": b"2"}
    clock.now += 2.5
    assert store.read_partials("fraud", "prod", 0, 1) == []
    assert store.list_windows() == []


def test_expired_rows_are_deleted_at_most_once_a_minute(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "store.db"
    store = SQLiteStore(str(path), clock=clock)
    store.write_partials("fraud", "prod", [Partial(0, "w", {"a": b"1"})], ttl_seconds=5)
    clock.now += 10
    store.write_partials("fraud", "prod", [Partial(60, "w", {"b": b"1"})], ttl_seconds=5)
    assert _rows(path, "SELECT bucket FROM partials ORDER BY bucket") == [(0,), (60,)]
    clock.now += 60
    store.write_partials("fraud", "prod", [Partial(120, "w", {"c": b"1"})], ttl_seconds=5)
    assert _rows(path, "SELECT bucket FROM partials") == [(120,)]
    store.close()


def test_many_threads_share_one_store(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "store.db"))
    errors: list[BaseException] = []

    def flush(writer: str) -> None:
        try:
            for bucket in range(20):
                series = {f"s{i}": f"{writer}{bucket}".encode() for i in range(50)}
                store.write_partials(
                    "fraud", "prod", [Partial(bucket, writer, series)], ttl_seconds=3600
                )
                store.read_partials("fraud", "prod", 0, 100)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=flush, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    partials = store.read_partials("fraud", "prod", 0, 100)
    assert len(partials) == 80
    assert partials[-1].series["s49"] == b"w319"
    store.close()


def test_a_closed_store_says_so() -> None:
    store = SQLiteStore()
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreUnavailable, match="closed"):
        store.ping()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.list_baselines()


# -- open_store --------------------------------------------------------------------


def test_open_store_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///relative.db")
    relative.create_baseline(rec("b1", "monday"), {}, draft("freeze", "b1"))
    relative.close()
    assert (tmp_path / "relative.db").exists()

    absolute = tmp_path / "sub" / "abs.db"
    absolute.parent.mkdir()
    store = open_store(f"sqlite:///{absolute}")  # "sqlite:///" + "/abs/..." = four slashes
    store.close()
    assert absolute.exists()

    for url in (":memory:", "sqlite://:memory:", " :memory: "):
        memory = open_store(url)
        assert isinstance(memory, SQLiteStore)
        assert memory.list_baselines() == []
        memory.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["relative.db"]


def test_open_store_redis_urls_make_redis_stores() -> None:
    # constructing does not connect: these need no server
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/none.sock"):
        store = open_store(url, prefix="x")
        assert isinstance(store, RedisStore)
        store.close()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("", "empty"),
        ("baselined.db", "no scheme"),
        ("sqlite://host/file.db", "host part"),
        ("sqlite:///", "names no database file"),
        ("postgres://admin:hunter2@db/x", "'postgres' is not supported"),
    ],
)
def test_open_store_refuses_bad_urls(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value)


def test_open_store_names_unknown_options() -> None:
    with pytest.raises(ConfigError, match="prefix"):
        open_store(":memory:", prefix="bl")
    with pytest.raises(ConfigError, match="colour"):
        open_store("redis://127.0.0.1:6379/0", colour="blue")
