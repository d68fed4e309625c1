"""The tamper-evident audit log: an edited, deleted or reordered record, changed
directly in SQLite (raw sqlite3) or Redis (raw redis-py), fails verification
naming the record; untouched chains verify; `baselined audit verify` says so."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from sidecar.audit import DenialRecorder, actor_of, verify_chain
from sidecar.cli import main as cli
from sidecar.records import AuditDraft, Status
from sidecar.stores import RedisStore, SQLiteStore
from sidecar.stores.base import Store
from tests.sidecar.test_server import Running, settings_for
from tests.stores import FakeClock, draft, rec


def populate(store: Store) -> None:
    """Five audit entries of model fraud: seq 1..5 on a fresh store."""
    for n, (bid, name) in enumerate((("b1", "monday"), ("b2", "tuesday"))):
        store.create_baseline(rec(bid, name), {"s": b"x"}, draft("freeze", bid, at=100.0 + n))
    for revision, (bid, old) in enumerate((("b1", None), ("b2", "b1"))):
        changes = {bid: Status.ACTIVE, **({old: Status.CANDIDATE} if old else {})}
        store.cas_pointer(
            "fraud",
            "prod",
            expected_revision=revision,
            active=bid,
            history=(old,) if old else (),
            status_changes=changes,
            audit=draft("promote", bid, at=200.0 + revision),
        )
    store.append_audit(
        AuditDraft(300.0, "bob", "note", "fraud", "prod", "b2", "checked by hand", {}, {"ok": 1})
    )


# -- SQLite: tamper with the file through sqlite3 ------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "audit.db")
    store = SQLiteStore(path)
    populate(store)
    store.close()
    yield path


def raw_sql(path: str, *statements: str) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def verify_sqlite(path: str) -> Any:
    store = SQLiteStore(path)
    try:
        return verify_chain(store)
    finally:
        store.close()


def test_an_untouched_sqlite_chain_verifies(sqlite_path: str) -> None:
    result = verify_sqlite(sqlite_path)
    assert result.ok and result.checked == 5 and result.problem == ""


@pytest.mark.parametrize(
    ("statements", "bad_seq", "words"),
    [
        (["UPDATE audit SET reason = 'nothing happened' WHERE seq = 3"], 3, ["edited"]),
        (["UPDATE audit SET actor = 'mallory' WHERE seq = 1"], 1, ["edited"]),
        (["DELETE FROM audit WHERE seq = 3"], 4, ["seq 3 is missing"]),
        (
            [
                "UPDATE audit SET seq = 100 WHERE seq = 2",
                "UPDATE audit SET seq = 2 WHERE seq = 3",
                "UPDATE audit SET seq = 3 WHERE seq = 100",
            ],
            2,
            ["sealed as seq 3", "reordered"],
        ),
        (["DELETE FROM audit WHERE seq = 5"], 5, ["newest records", "deleted"]),
        (["UPDATE audit SET hash = '', prev_hash = '' WHERE seq = 4"], 4, ["no hash"]),
    ],
    ids=["edit", "edit-actor", "delete", "reorder", "delete-newest", "strip-hash"],
)
def test_tampering_with_sqlite_is_named(
    sqlite_path: str, statements: list[str], bad_seq: int, words: list[str]
) -> None:
    raw_sql(sqlite_path, *statements)
    result = verify_sqlite(sqlite_path)
    assert not result.ok
    assert result.bad_seq == bad_seq and result.bad_model == "fraud"
    assert f"seq {bad_seq}" in result.problem
    for word in words:
        assert word in result.problem


def test_pre_chain_entries_are_legacy_and_the_chain_continues_after_them(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    SQLiteStore(path).close()
    raw_sql(  # what a version 2 file holds: entries without hashes
        path,
        "INSERT INTO audit (seq, time, actor, action, model, environment, target, reason,"
        " before, after) VALUES (1, 1.0, 'alice', 'freeze', 'fraud', 'prod', 'b0', '', '{}', '{}')",
    )
    store = SQLiteStore(path)
    try:
        populate(store)
        result = verify_chain(store)
        assert result.ok and result.legacy == 1 and result.checked == 6
        assert [e.seq for e in store.list_audit()] == [1, 2, 3, 4, 5, 6]
    finally:
        store.close()


# -- Redis: tamper with the model's stream through redis-py ----------------------------


Rows = list[tuple[bytes, dict[bytes, bytes]]]


@pytest.fixture
def redis_store(redis_url: str, redis_prefix: str) -> Iterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    populate(store)
    yield store
    store.close()


def rewrite_stream(url: str, key: str, change: Callable[[Rows], Rows]) -> None:
    """Rebuild the stream with ``change`` applied, keeping the stream ids (as an
    attacker with write access could)."""
    client = redis.Redis.from_url(url)
    try:
        rows = cast(Rows, client.xrange(key))
        client.delete(key)
        for stream_id, fields in change(rows):
            client.xadd(key, fields, id=stream_id)  # type: ignore[arg-type]
    finally:
        client.close()


def _edit(rows: Rows) -> Rows:
    entry = json.loads(rows[2][1][b"entry"])
    entry["reason"] = "nothing happened"
    rows[2][1][b"entry"] = json.dumps(entry).encode()
    return rows


def _swap(rows: Rows) -> Rows:
    (id1, f1), (id2, f2) = rows[1], rows[2]
    rows[1], rows[2] = (id1, f2), (id2, f1)
    return rows


@pytest.mark.redis
def test_an_untouched_redis_chain_verifies(redis_store: RedisStore) -> None:
    result = verify_chain(redis_store)
    assert result.ok and result.checked == 5
    assert verify_chain(redis_store, model="fraud").ok


@pytest.mark.redis
@pytest.mark.parametrize(
    ("change", "bad_seq", "words"),
    [
        (_edit, 3, ["edited"]),
        (lambda rows: rows[:2] + rows[3:], 4, ["seq 3 is missing"]),
        (_swap, 3, ["seq 2 is missing", "reordered"]),
        (lambda rows: rows[:4], 5, ["newest records", "deleted"]),
    ],
    ids=["edit", "delete", "reorder", "delete-newest"],
)
def test_tampering_with_redis_is_named(
    redis_store: RedisStore,
    redis_url: str,
    redis_prefix: str,
    change: Callable[[Rows], Rows],
    bad_seq: int,
    words: list[str],
) -> None:
    rewrite_stream(redis_url, f"{redis_prefix}:{{fraud}}:audit", change)
    result = verify_chain(redis_store)
    assert not result.ok
    assert result.bad_seq == bad_seq and result.bad_model == "fraud"
    assert f"seq {bad_seq}" in result.problem
    for word in words:
        assert word in result.problem


@pytest.mark.redis
def test_writers_with_stale_heads_keep_one_unbroken_chain(
    redis_url: str, redis_prefix: str
) -> None:
    a = RedisStore(redis_url, prefix=redis_prefix)
    b = RedisStore(redis_url, prefix=redis_prefix)  # its cached head goes stale at once
    try:
        for i in range(6):
            writer = a if i % 2 else b
            writer.append_audit(draft("note", f"t{i}", at=float(i)))
        entries = a.list_audit(model="fraud")
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
        assert all(e.prev_hash == p.hash for p, e in itertools.pairwise(entries))
        assert verify_chain(a).ok
    finally:
        a.close()
        b.close()


# -- denials, actors -----------------------------------------------------------------


def test_denials_are_audited_and_capped_per_minute() -> None:
    store = SQLiteStore()
    clock = FakeClock()
    recorder = DenialRecorder(store, per_minute=2, clock=clock)
    try:
        written = [recorder.record("", "/baselined.v1.Baselines/FreezeBaseline", "no token")]
        written.append(recorder.record("ingest-bot", "/x/Y", "role_admin_required: ..."))
        assert recorder.record("", "/x/Y", "no token") is None  # over the cap
        clock.now += 60
        written.append(recorder.record("", "/x/Y", "no token"))
        entries = store.list_audit()
        assert [e.action for e in entries] == ["auth_denied"] * 3
        assert [e.actor for e in entries] == ["anonymous", "ingest-bot", "anonymous"]
        assert entries[0].target == "/baselined.v1.Baselines/FreezeBaseline"
        assert entries[2].after == {"suppressed": 1}
        assert verify_chain(store).ok
    finally:
        store.close()


def test_the_principal_overrides_the_claimed_actor() -> None:
    from sidecar.auth import Principal, using_principal

    assert actor_of("cli:alice") == "cli:alice"
    assert actor_of("") == "anonymous"
    with using_principal(Principal("bob", frozenset({"admin"}), "token")):
        assert actor_of("cli:alice") == "bob"


# -- the CLI over real gRPC ------------------------------------------------------------


def _verify_cli(
    capsys: pytest.CaptureFixture[str], store: Store, tamper: Callable[[], None]
) -> tuple[int, str, int, str]:
    running = Running(settings_for(), store=store)
    try:
        target = ("--target", f"127.0.0.1:{running.sidecar.port}")
        ok_code = cli(["audit", "verify", *target])
        ok_out = capsys.readouterr().out
        tamper()
        bad_code = cli(["audit", "verify", *target])
        bad_err = capsys.readouterr().err
    finally:
        running.stop()
    return ok_code, ok_out, bad_code, bad_err


def test_cli_audit_verify_names_the_edited_record_on_sqlite(
    sqlite_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok_code, ok_out, bad_code, bad_err = _verify_cli(
        capsys,
        SQLiteStore(sqlite_path),
        lambda: raw_sql(sqlite_path, "UPDATE audit SET after = '{}' WHERE seq = 4"),
    )
    assert ok_code == 0 and "5 entries" in ok_out
    assert bad_code == 1
    assert "record seq 4 (promote b2 by alice on fraud/prod)" in bad_err and "edited" in bad_err


@pytest.mark.redis
def test_cli_audit_verify_names_the_deleted_record_on_redis(
    redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    populate(store)
    key = f"{redis_prefix}:{{fraud}}:audit"
    ok_code, _, bad_code, bad_err = _verify_cli(
        capsys, store, lambda: rewrite_stream(redis_url, key, lambda r: r[:1] + r[2:])
    )
    assert ok_code == 0
    assert bad_code == 1 and "record seq 3" in bad_err and "seq 2 is missing" in bad_err
