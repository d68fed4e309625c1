"""``SQLiteStore``: the embedded default store (stdlib ``sqlite3``).

One connection, guarded by a lock, serves every thread (the sidecar calls the
store from ``asyncio.to_thread`` workers). Files run in WAL mode with
``synchronous=NORMAL``; the transactions that must survive a power cut
(baselines, the active pointer, the audit log) switch to ``synchronous=FULL``
for their commit. See ``docs/storage.md`` for the schema and guarantees.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sidecar.errors import AlreadyExists, Conflict, InvalidInput, NotFound, StoreUnavailable
from sidecar.records import (
    AuditDraft,
    AuditEntry,
    BaselineRecord,
    EventRecord,
    ImpactRecord,
    Partial,
    PendingApproval,
    PointerState,
    Policy,
    Status,
)
from sidecar.stores.base import DEFAULT_EVENT_RETENTION, check_prediction_args, check_ttl

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 4
"""Version of the table layout below; stored in the ``schema_version`` table.
Older files are upgraded in place when opened: version 1 has no events table,
version 2 no audit hash chain, policies or pending approvals, version 3 no
impact reports."""

CHAIN = "store"
"""Name of the SQLite store's one audit hash chain."""

_PURGE_INTERVAL = 60.0  # seconds between opportunistic deletes of expired partials

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT;
CREATE TABLE partials (
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    writer TEXT NOT NULL,
    series TEXT NOT NULL,
    state BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (model, environment, bucket, writer, series)
) STRICT, WITHOUT ROWID;
CREATE INDEX partials_expiry ON partials (expires_at);
CREATE TABLE baselines (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (model, environment, name)
) STRICT;
CREATE TABLE baseline_series (
    baseline_id TEXT NOT NULL REFERENCES baselines (id),
    series TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (baseline_id, series)
) STRICT, WITHOUT ROWID;
CREATE TABLE pointers (
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    active TEXT,
    history TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (model, environment)
) STRICT;
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL
) STRICT;
CREATE INDEX audit_scope ON audit (model, environment, seq);
"""

# Added in schema version 2 (applied to version 1 files on open).
_SCHEMA_V2 = """
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    type TEXT NOT NULL,
    time REAL NOT NULL,
    record TEXT NOT NULL
) STRICT;
CREATE INDEX events_scope ON events (model, time);
CREATE INDEX events_time ON events (time);
"""

# Added in schema version 3: the audit hash chain (entries written before it
# keep empty hashes), its head, policies and pending four-eyes approvals.
_SCHEMA_V3 = """
ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS policies (
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (model, environment)
) STRICT;
CREATE TABLE IF NOT EXISTS pending (
    baseline_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    requested_at REAL NOT NULL,
    record TEXT NOT NULL
) STRICT;
"""

# Fleet mode (leases and leader-written alert state): created when a file is
# opened, whatever its schema version, so no version bump is needed for them.
_FLEET_TABLES = """
CREATE TABLE IF NOT EXISTS leases (
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (model, environment)
) STRICT;
CREATE TABLE IF NOT EXISTS alert_states (
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (model, environment)
) STRICT;
"""

# Outcomes (issue 8): predictions kept for joining labels, and claimed outcome ids.
# Created when a file is opened, like the fleet tables; no version bump needed.
_OUTCOME_TABLES = """
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    request_id TEXT NOT NULL,
    record BLOB NOT NULL,
    expires_at REAL NOT NULL,
    UNIQUE (model, request_id)
) STRICT;
CREATE INDEX IF NOT EXISTS predictions_expiry ON predictions (expires_at);
CREATE TABLE IF NOT EXISTS outcome_claims (
    model TEXT NOT NULL,
    request_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (model, request_id)
) STRICT, WITHOUT ROWID;
"""

# Added in schema version 4: impact reports (issue 4).
_SCHEMA_V4 = """
CREATE TABLE IF NOT EXISTS impact_reports (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    environment TEXT NOT NULL,
    event_time REAL NOT NULL,
    verdict TEXT NOT NULL,
    record TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS impact_scope ON impact_reports (model, event_time);
CREATE INDEX IF NOT EXISTS impact_time ON impact_reports (event_time);
"""

# version -> statements that lift it by one
_UPGRADES = {1: _SCHEMA_V2, 2: _SCHEMA_V3, 3: _SCHEMA_V4}


def _upgrade_step(conn: sqlite3.Connection, statement: str) -> None:
    """One upgrade statement; a column that is there already is not an error."""
    try:
        conn.execute(statement)
    except sqlite3.OperationalError as err:
        if "duplicate column name" not in str(err):
            raise


def _check_scope(model: str, environment: str) -> None:
    # Same rule as RedisStore: an empty model would make an empty hash tag there.
    if not model:
        raise InvalidInput("model name must not be empty")
    if not environment:
        raise InvalidInput("environment name must not be empty")


def _check_lease(holder: str, ttl_seconds: float) -> None:
    if not holder:
        raise InvalidInput("lease holder must not be empty")
    if not ttl_seconds > 0 or not math.isfinite(ttl_seconds):
        raise InvalidInput(f"lease ttl_seconds must be positive, got {ttl_seconds}")


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))


class SQLiteStore:
    """The :class:`~sidecar.stores.base.Store` on one SQLite database.

    ``path`` is a file name or ``":memory:"``; ``clock`` (unix seconds) decides
    window expiry and is injectable for tests.

    >>> store = SQLiteStore()
    >>> store.get_pointer("fraud", "prod").revision
    0
    >>> store.close()
    """

    def __init__(self, path: str = ":memory:", *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._last_purge = float("-inf")
        try:
            conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=10.0
            )
        except sqlite3.Error as err:
            raise StoreUnavailable(f"cannot open SQLite database {path!r}: {err}") from err
        self._conn: sqlite3.Connection | None = conn
        try:
            if path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreUnavailable(
                        f"SQLite database {path!r} cannot use WAL mode (journal_mode is {mode})"
                    )
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn)
        except sqlite3.Error as err:
            conn.close()
            self._conn = None
            raise StoreUnavailable(f"cannot open SQLite database {path!r}: {err}") from err
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    # -- plumbing ----------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if exists is None:
                # executescript() would COMMIT first: run the statements one by one.
                for statement in (_SCHEMA + _SCHEMA_V2 + _SCHEMA_V3 + _SCHEMA_V4).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                found = SCHEMA_VERSION
            else:
                row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
                found = int(row[0]) if row and row[0] is not None else 0
                while found in _UPGRADES:
                    for statement in _UPGRADES[found].split(";"):
                        if statement.strip():
                            _upgrade_step(conn, statement)
                    found += 1
                    conn.execute("UPDATE schema_version SET version = ?", (found,))
            if found == SCHEMA_VERSION:
                for statement in (_FLEET_TABLES + _OUTCOME_TABLES).split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if found != SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"SQLite database {self._path!r} has schema version {found}; this baselined "
                    f"reads version {SCHEMA_VERSION} (upgrade baselined or use another file)"
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with backend errors mapped."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreUnavailable(f"SQLite store {self._path!r} is closed")
            try:
                yield conn
            except sqlite3.OperationalError as err:
                raise StoreUnavailable(f"SQLite database {self._path!r}: {err}") from err

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``durable`` commits with ``synchronous=FULL``."""
        with self._locked() as conn:
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous=NORMAL")

    # -- windows -----------------------------------------------------------------

    def write_partials(
        self,
        model: str,
        environment: str,
        partials: Sequence[Partial],
        *,
        ttl_seconds: int,
    ) -> None:
        """Upsert partials of one (model, environment) in one transaction."""
        _check_scope(model, environment)
        check_ttl(ttl_seconds)
        now = self._clock()
        expires = now + ttl_seconds
        heads = [(model, environment, p.bucket, p.writer) for p in partials]
        rows = [
            (model, environment, p.bucket, p.writer, sid, state, expires)
            for p in partials
            for sid, state in p.series.items()
        ]
        with self._transaction() as conn:
            # Expired rows of a bucket must not come back to life with the new expiry.
            conn.executemany(
                "DELETE FROM partials WHERE model = ? AND environment = ? AND bucket = ?"
                " AND writer = ? AND expires_at <= ?",
                [(*head, now) for head in heads],
            )
            conn.executemany(
                "UPDATE partials SET expires_at = ? WHERE model = ? AND environment = ?"
                " AND bucket = ? AND writer = ?",
                [(expires, *head) for head in heads],
            )
            conn.executemany(
                "INSERT INTO partials (model, environment, bucket, writer, series, state,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (model, environment, bucket, writer, series)"
                " DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at",
                rows,
            )
            if now - self._last_purge >= _PURGE_INTERVAL:
                conn.execute("DELETE FROM partials WHERE expires_at <= ?", (now,))
                self._last_purge = now

    def read_partials(self, model: str, environment: str, start: int, end: int) -> list[Partial]:
        """Every writer's partial of every bucket in ``[start, end)``, by bucket then writer."""
        now = self._clock()
        with self._locked() as conn:
            rows = conn.execute(
                "SELECT bucket, writer, series, state FROM partials"
                " WHERE model = ? AND environment = ? AND bucket >= ? AND bucket < ?"
                " AND expires_at > ? ORDER BY bucket, writer, series",
                (model, environment, start, end, now),
            ).fetchall()
        out: list[Partial] = []
        current: tuple[int, str] | None = None
        series: dict[str, bytes] = {}
        for bucket, writer, sid, state in rows:
            if (bucket, writer) != current:
                if current is not None:
                    out.append(Partial(current[0], current[1], series))
                current, series = (bucket, writer), {}
            series[sid] = bytes(state)
        if current is not None:
            out.append(Partial(current[0], current[1], series))
        return out

    # -- window compaction (sidecar.compaction) ------------------------------------

    def compact_partials(
        self,
        model: str,
        environment: str,
        start: int,
        end: int,
        *,
        writer: str,
        merge: Callable[[list[Partial]], dict[str, bytes]],
    ) -> bool:
        """Replace every partial of the buckets in ``[start, end)`` by one partial
        ``(start, writer, merge(partials))`` with the latest expiry of those it
        replaces, in one transaction. False when there is nothing to compact."""
        _check_scope(model, environment)
        now = self._clock()
        scope = (model, environment, start, end)
        with self._transaction() as conn:
            heads = conn.execute(
                "SELECT DISTINCT bucket, writer FROM partials WHERE model = ? AND environment = ?"
                " AND bucket >= ? AND bucket < ?",
                scope,
            ).fetchall()
            if not heads or [tuple(h) for h in heads] == [(start, writer)]:
                return False
            rows = conn.execute(
                "SELECT bucket, writer, series, state, expires_at FROM partials"
                " WHERE model = ? AND environment = ? AND bucket >= ? AND bucket < ?"
                " AND expires_at > ? ORDER BY bucket, writer, series",
                (*scope, now),
            ).fetchall()
            grouped: dict[tuple[int, str], dict[str, bytes]] = {}
            expires = 0.0
            for bucket, who, sid, state, until in rows:
                grouped.setdefault((bucket, who), {})[sid] = bytes(state)
                expires = max(expires, until)
            partials = [Partial(b, w, s) for (b, w), s in grouped.items()]
            merged = merge(partials) if partials else {}
            conn.execute(
                "DELETE FROM partials WHERE model = ? AND environment = ?"
                " AND bucket >= ? AND bucket < ?",
                scope,
            )
            conn.executemany(
                "INSERT INTO partials (model, environment, bucket, writer, series, state,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(model, environment, start, writer, sid, s, expires) for sid, s in merged.items()],
            )
        return True

    def list_windows(self) -> list[tuple[str, str]]:
        """The (model, environment) pairs with unexpired window data, sorted. Hidden
        lanes (an environment holding ``\\x1f``, e.g. the quality partials of
        sidecar.outcomes) are not environments and are left out."""
        now = self._clock()
        with self._locked() as conn:
            rows = conn.execute(
                "SELECT DISTINCT model, environment FROM partials WHERE expires_at > ?"
                " AND instr(environment, char(31)) = 0 ORDER BY model, environment",
                (now,),
            ).fetchall()
        return [(str(m), str(e)) for m, e in rows]

    # -- baselines ---------------------------------------------------------------

    def create_baseline(
        self,
        record: BaselineRecord,
        series: Mapping[str, bytes],
        audit: AuditDraft,
    ) -> AuditEntry:
        """Write the record, its series and its audit entry in one durable transaction."""
        _check_scope(record.model, record.environment)
        with self._transaction(durable=True) as conn:
            if conn.execute("SELECT 1 FROM baselines WHERE id = ?", (record.id,)).fetchone():
                raise AlreadyExists(f"baseline id {record.id!r} already exists")
            row = conn.execute(
                "SELECT id FROM baselines WHERE model = ? AND environment = ? AND name = ?",
                (record.model, record.environment, record.name),
            ).fetchone()
            if row is not None:
                raise AlreadyExists(
                    f"a baseline named {record.name!r} already exists for model "
                    f"{record.model!r} in environment {record.environment!r} (id {row[0]})"
                )
            try:
                conn.execute(
                    "INSERT INTO baselines (id, model, environment, name, created_at, status,"
                    " record) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.model,
                        record.environment,
                        record.name,
                        record.created_at,
                        record.status.value,
                        record.to_json(),
                    ),
                )
                conn.executemany(
                    "INSERT INTO baseline_series (baseline_id, series, state) VALUES (?, ?, ?)",
                    [(record.id, sid, state) for sid, state in series.items()],
                )
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError) as err:
                # STRICT tables refuse a series state that is not bytes.
                raise InvalidInput(f"baseline {record.id!r} cannot be stored: {err}") from err
            entry = self._append_audit(conn, audit)
        return entry

    def get_baseline(self, baseline_id: str) -> BaselineRecord:
        """The record with its current status. Raises ``NotFound``."""
        with self._locked() as conn:
            row = conn.execute(
                "SELECT record, status FROM baselines WHERE id = ?", (baseline_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no baseline with id {baseline_id!r}")
        return _record(row[0], row[1])

    def get_baseline_series(self, baseline_id: str) -> dict[str, bytes]:
        """All series of a baseline. Raises ``NotFound``."""
        with self._locked() as conn:
            found = conn.execute("SELECT 1 FROM baselines WHERE id = ?", (baseline_id,))
            if found.fetchone() is None:
                raise NotFound(f"no baseline with id {baseline_id!r}")
            rows = conn.execute(
                "SELECT series, state FROM baseline_series WHERE baseline_id = ?", (baseline_id,)
            ).fetchall()
        return {str(sid): bytes(state) for sid, state in rows}

    def find_baseline(self, model: str, environment: str, name: str) -> BaselineRecord:
        """The baseline of (model, environment) with that name. Raises ``NotFound``."""
        with self._locked() as conn:
            row = conn.execute(
                "SELECT record, status FROM baselines"
                " WHERE model = ? AND environment = ? AND name = ?",
                (model, environment, name),
            ).fetchone()
        if row is None:
            raise NotFound(
                f"no baseline named {name!r} for model {model!r} in environment {environment!r}"
            )
        return _record(row[0], row[1])

    def list_baselines(
        self,
        model: str | None = None,
        environment: str | None = None,
        status: Status | None = None,
    ) -> list[BaselineRecord]:
        """Matching records, oldest first (by ``created_at``, then id)."""
        where: list[str] = []
        params: list[str] = []
        for column, value in (("model", model), ("environment", environment), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        sql = "SELECT record, status FROM baselines"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, id"
        with self._locked() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_record(r, s) for r, s in rows]

    # -- active pointer ----------------------------------------------------------

    def get_pointer(self, model: str, environment: str) -> PointerState:
        """The pointer; ``PointerState()`` (revision 0) when never set."""
        with self._locked() as conn:
            row = conn.execute(
                "SELECT active, history, revision FROM pointers"
                " WHERE model = ? AND environment = ?",
                (model, environment),
            ).fetchone()
        if row is None:
            return PointerState()
        return PointerState(row[0], tuple(json.loads(row[1])), int(row[2]))

    def cas_pointer(
        self,
        model: str,
        environment: str,
        *,
        expected_revision: int,
        active: str | None,
        history: tuple[str, ...],
        status_changes: Mapping[str, Status],
        audit: AuditDraft,
    ) -> tuple[PointerState, AuditEntry]:
        """Compare the revision, then set pointer, statuses and audit in one transaction."""
        _check_scope(model, environment)
        with self._transaction(durable=True) as conn:
            row = conn.execute(
                "SELECT revision FROM pointers WHERE model = ? AND environment = ?",
                (model, environment),
            ).fetchone()
            current = int(row[0]) if row else 0
            if current != expected_revision:
                raise Conflict(
                    f"active pointer of model {model!r} in environment {environment!r} is at "
                    f"revision {current}, not {expected_revision}: reload and retry"
                )
            wanted = list(status_changes)
            if active is not None:
                wanted.append(active)
            for baseline_id in wanted:
                found = conn.execute(
                    "SELECT 1 FROM baselines WHERE id = ? AND model = ?", (baseline_id, model)
                ).fetchone()
                if found is None:
                    raise NotFound(f"no baseline with id {baseline_id!r} for model {model!r}")
            state = PointerState(active, tuple(history), current + 1)
            conn.execute(
                "INSERT INTO pointers (model, environment, active, history, revision)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, environment) DO UPDATE SET"
                " active = excluded.active, history = excluded.history,"
                " revision = excluded.revision",
                (model, environment, active, json.dumps(list(history)), state.revision),
            )
            conn.executemany(
                "UPDATE baselines SET status = ? WHERE id = ?",
                [(Status(s).value, bid) for bid, s in status_changes.items()],
            )
            entry = self._append_audit(conn, audit)
        return state, entry

    # -- audit -------------------------------------------------------------------

    @staticmethod
    def _append_audit(conn: sqlite3.Connection, audit: AuditDraft) -> AuditEntry:
        """Append ``audit`` to the chain, inside the caller's transaction."""
        head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        if head is None:  # no chained entry yet: continue after any pre-chain entries
            last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()
            head = (int(last[0]), "")
        entry = AuditEntry.from_draft(int(head[0]) + 1, audit, prev_hash=str(head[1]))
        conn.execute(
            "INSERT INTO audit (seq, time, actor, action, model, environment, target, reason,"
            " before, after, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.seq,
                entry.time,
                entry.actor,
                entry.action,
                entry.model,
                entry.environment,
                entry.target,
                entry.reason,
                _dumps(entry.before),
                _dumps(entry.after),
                entry.prev_hash,
                entry.hash,
            ),
        )
        conn.execute(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (entry.seq, entry.hash),
        )
        return entry

    def append_audit(self, audit: AuditDraft) -> AuditEntry:
        """Append one audit entry on its own (durable)."""
        with self._transaction(durable=True) as conn:
            return self._append_audit(conn, audit)

    def audit_chains(self, model: str | None = None) -> list[str]:
        """The store's one chain (entries of every model share it)."""
        return [CHAIN]

    def read_audit_chain(self, chain: str) -> Iterator[AuditEntry]:
        """Every entry in ascending seq (the table's order), paged."""
        if chain != CHAIN:
            return
        last = -1
        while True:
            with self._locked() as conn:
                rows = conn.execute(
                    f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT 1000",
                    (last,),
                ).fetchall()
            for row in rows:
                yield _audit_row(row)
            if len(rows) < 1000:
                return
            last = int(rows[-1][0])

    def audit_head(self, chain: str) -> tuple[int, str]:
        """(seq, hash) of the newest chained entry as recorded when it was appended."""
        with self._locked() as conn:
            row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return (0, "") if row is None or chain != CHAIN else (int(row[0]), str(row[1]))

    def list_audit(
        self,
        model: str | None = None,
        environment: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """The newest ``limit`` matching entries, oldest first (ascending seq)."""
        if limit <= 0:
            return []
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("model", model), ("environment", environment)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        with self._locked() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_audit_row(r) for r in reversed(rows)]

    # -- governance --------------------------------------------------------------

    def get_policy(self, model: str, environment: str) -> Policy:
        """The stored policy, or the default one (no four-eyes, no owners)."""
        with self._locked() as conn:
            row = conn.execute(
                "SELECT record FROM policies WHERE model = ? AND environment = ?",
                (model, environment),
            ).fetchone()
        return Policy(model, environment) if row is None else Policy.from_json(row[0])

    def set_policy(self, policy: Policy, audit: AuditDraft) -> AuditEntry:
        """Upsert the policy and append its audit entry in one durable transaction."""
        _check_scope(policy.model, policy.environment)
        with self._transaction(durable=True) as conn:
            conn.execute(
                "INSERT INTO policies (model, environment, record) VALUES (?, ?, ?)"
                " ON CONFLICT (model, environment) DO UPDATE SET record = excluded.record",
                (policy.model, policy.environment, policy.to_json()),
            )
            return self._append_audit(conn, audit)

    def put_pending(self, pending: PendingApproval, audit: AuditDraft) -> AuditEntry:
        """Upsert the pending approval and append its audit entry in one transaction."""
        _check_scope(pending.model, pending.environment)
        with self._transaction(durable=True) as conn:
            conn.execute(
                "INSERT INTO pending (baseline_id, model, environment, requested_at, record)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (baseline_id) DO UPDATE SET"
                " requested_at = excluded.requested_at, record = excluded.record",
                (
                    pending.baseline_id,
                    pending.model,
                    pending.environment,
                    float(pending.requested_at),
                    pending.to_json(),
                ),
            )
            return self._append_audit(conn, audit)

    def list_pending(
        self, model: str | None = None, environment: str | None = None
    ) -> list[PendingApproval]:
        """Pending approvals, oldest request first."""
        where: list[str] = []
        params: list[str] = []
        for column, value in (("model", model), ("environment", environment)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT record FROM pending"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY requested_at, baseline_id"
        with self._locked() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [PendingApproval.from_json(r[0]) for r in rows]

    def delete_pending(self, model: str, baseline_id: str) -> None:
        """Forget a pending approval."""
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM pending WHERE baseline_id = ? AND model = ?", (baseline_id, model)
            )

    # -- change events -----------------------------------------------------------

    def append_event(
        self, record: EventRecord, *, retention_seconds: float = DEFAULT_EVENT_RETENTION
    ) -> EventRecord:
        """Insert the event (assigning an id) and delete events past retention."""
        if not record.model:
            raise InvalidInput("model name must not be empty")
        if not record.id:
            record = dataclasses.replace(record, id=f"ev-{uuid.uuid4().hex[:20]}")
        cutoff = (record.recorded_at or self._clock()) - retention_seconds
        with self._transaction() as conn:
            try:
                conn.execute(
                    "INSERT INTO events (id, model, environment, type, time, record)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.model,
                        record.environment,
                        record.type,
                        float(record.time),
                        record.to_json(),
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise AlreadyExists(f"an event with id {record.id!r} already exists") from err
            conn.execute("DELETE FROM events WHERE time < ?", (cutoff,))
        return record

    def list_events(
        self,
        model: str | None,
        environment: str | None,
        start: float,
        end: float,
        limit: int,
        *,
        types: Sequence[str] = (),
    ) -> list[EventRecord]:
        """The newest ``limit`` matching events, oldest first by time, then id."""
        # an event recorded without an environment applies to every environment
        records = self._newest_records(
            "events",
            "time",
            start,
            end,
            limit,
            model=model,
            environment=environment,
            environment_sql="environment IN (?, '')",
            kind_column="type",
            kinds=types,
        )
        return [EventRecord.from_json(r) for r in records]

    def update_event_attributes(
        self, model: str, event_id: str, attributes: Mapping[str, str]
    ) -> EventRecord:
        """Merge ``attributes`` into the stored event (one transaction)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT record FROM events WHERE id = ? AND model = ?", (event_id, model)
            ).fetchone()
            if row is None:
                raise NotFound(f"model {model!r} has no event {event_id!r}")
            old = EventRecord.from_json(row[0])
            record = dataclasses.replace(old, attributes={**old.attributes, **attributes})
            conn.execute(
                "UPDATE events SET record = ? WHERE id = ? AND model = ?",
                (record.to_json(), event_id, model),
            )
        return record

    # -- fleet mode --------------------------------------------------------------

    def acquire_lease(
        self, model: str, environment: str, holder: str, ttl_seconds: float
    ) -> int | None:
        """One ``BEGIN IMMEDIATE`` transaction on the ``leases`` row; the row stays
        after release or expiry so the next token is larger."""
        _check_scope(model, environment)
        _check_lease(holder, ttl_seconds)
        now = self._clock()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT holder, token, expires_at FROM leases WHERE model = ? AND environment = ?",
                (model, environment),
            ).fetchone()
            if row is not None and row[2] > now:
                if row[0] != holder:
                    return None
                token = int(row[1])
            else:
                token = (int(row[1]) if row is not None else 0) + 1
            conn.execute(
                "INSERT INTO leases (model, environment, holder, token, expires_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, environment) DO UPDATE SET"
                " holder = excluded.holder, token = excluded.token,"
                " expires_at = excluded.expires_at",
                (model, environment, holder, token, now + ttl_seconds),
            )
        return token

    def _lease_update(
        self, model: str, environment: str, holder: str, token: int, expires_at: float
    ) -> bool:
        now = self._clock()
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE model = ? AND environment = ?"
                " AND holder = ? AND token = ? AND expires_at > ?",
                (expires_at, model, environment, holder, int(token), now),
            )
            return cur.rowcount == 1

    def renew_lease(
        self, model: str, environment: str, holder: str, token: int, ttl_seconds: float
    ) -> bool:
        """Compare-and-renew in one transaction."""
        _check_lease(holder, ttl_seconds)
        return self._lease_update(model, environment, holder, token, self._clock() + ttl_seconds)

    def release_lease(self, model: str, environment: str, holder: str, token: int) -> bool:
        """Expire the lease now if (holder, token) holds it."""
        return self._lease_update(model, environment, holder, token, 0.0)

    def lease_holder(self, model: str, environment: str) -> tuple[str, int] | None:
        """(holder, token) of the unexpired lease, or None."""
        with self._locked() as conn:
            row = conn.execute(
                "SELECT holder, token FROM leases WHERE model = ? AND environment = ?"
                " AND expires_at > ?",
                (model, environment, self._clock()),
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def write_alert_state(
        self, model: str, environment: str, holder: str, token: int, state: bytes
    ) -> None:
        """Write in the transaction that checks the lease (fencing)."""
        _check_scope(model, environment)
        with self._transaction() as conn:
            held = conn.execute(
                "SELECT 1 FROM leases WHERE model = ? AND environment = ? AND holder = ?"
                " AND token = ? AND expires_at > ?",
                (model, environment, holder, int(token), self._clock()),
            ).fetchone()
            if held is None:
                raise Conflict(
                    f"lease of {model}/{environment} is no longer held by {holder!r} with"
                    f" token {token}: alert state not written"
                )
            conn.execute(
                "INSERT INTO alert_states (model, environment, state) VALUES (?, ?, ?)"
                " ON CONFLICT (model, environment) DO UPDATE SET state = excluded.state",
                (model, environment, bytes(state)),
            )

    def read_alert_states(self, model: str | None = None) -> dict[tuple[str, str], bytes]:
        """Stored alert states by (model, environment)."""
        with self._locked() as conn:
            rows = conn.execute(
                "SELECT model, environment, state FROM alert_states"
                + ("" if model is None else " WHERE model = ?"),
                () if model is None else (model,),
            ).fetchall()
        return {(str(r[0]), str(r[1])): bytes(r[2]) for r in rows}

    # -- outcomes (issue 8) ------------------------------------------------------

    def put_predictions(
        self,
        model: str,
        records: Sequence[tuple[str, bytes]],
        *,
        ttl_seconds: int,
        max_records: int,
    ) -> int:
        """Keep prediction records by request id; see ``Store.put_predictions``."""
        check_prediction_args(model, ttl_seconds, max_records)
        if not records:
            return 0
        now = self._clock()
        with self._transaction() as conn:
            conn.execute("DELETE FROM predictions WHERE expires_at <= ?", (now,))
            conn.executemany(
                "INSERT OR IGNORE INTO predictions (model, request_id, record, expires_at)"
                " VALUES (?, ?, ?, ?)",
                [(model, rid, data, now + ttl_seconds) for rid, data in records],
            )
            kept = int(
                conn.execute(
                    "SELECT COUNT(*) FROM predictions WHERE model = ?", (model,)
                ).fetchone()[0]
            )
            evicted = max(0, kept - max_records)
            if evicted:
                conn.execute(
                    "DELETE FROM predictions WHERE seq IN (SELECT seq FROM predictions"
                    " WHERE model = ? ORDER BY seq LIMIT ?)",
                    (model, evicted),
                )
        return evicted

    def get_predictions(self, model: str, request_ids: Sequence[str]) -> dict[str, bytes]:
        """Kept, unexpired prediction records of these request ids."""
        found: dict[str, bytes] = {}
        now = self._clock()
        ids = list(dict.fromkeys(request_ids))
        with self._locked() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                rows = conn.execute(
                    "SELECT request_id, record FROM predictions WHERE model = ? AND expires_at > ?"
                    f" AND request_id IN ({','.join('?' * len(chunk))})",
                    (model, now, *chunk),
                ).fetchall()
                found.update((str(r[0]), bytes(r[1])) for r in rows)
        return found

    def claim_outcomes(
        self, model: str, request_ids: Sequence[str], *, ttl_seconds: int
    ) -> list[bool]:
        """Claim the outcome of each request id; True where this call claimed it first."""
        if not model:
            raise InvalidInput("model name must not be empty")
        check_ttl(ttl_seconds)
        now = self._clock()
        claimed: list[bool] = []
        with self._transaction() as conn:
            conn.execute("DELETE FROM outcome_claims WHERE expires_at <= ?", (now,))
            for rid in request_ids:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO outcome_claims (model, request_id, expires_at)"
                    " VALUES (?, ?, ?)",
                    (model, rid, now + ttl_seconds),
                )
                claimed.append(cursor.rowcount == 1)
        return claimed

    # -- impact reports ----------------------------------------------------------

    def put_impact_report(
        self, record: ImpactRecord, *, retention_seconds: float = DEFAULT_EVENT_RETENTION
    ) -> None:
        """Upsert the report and delete reports whose event is past retention."""
        if not record.model or not record.id:
            raise InvalidInput("an impact report needs an id and a model")
        cutoff = self._clock() - retention_seconds
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO impact_reports"
                " (id, model, environment, event_time, verdict, record)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.model,
                    record.environment,
                    float(record.event.time),
                    record.verdict,
                    record.to_json(),
                ),
            )
            conn.execute("DELETE FROM impact_reports WHERE event_time < ?", (cutoff,))

    def get_impact_report(self, report_id: str) -> ImpactRecord:
        """The stored report; NotFound otherwise."""
        with self._locked() as conn:
            row = conn.execute(
                "SELECT record FROM impact_reports WHERE id = ?", (report_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no impact report with id {report_id!r}")
        return ImpactRecord.from_json(row[0])

    def list_impact_reports(
        self,
        model: str | None,
        environment: str | None,
        start: float,
        end: float,
        limit: int,
        *,
        verdicts: Sequence[str] = (),
    ) -> list[ImpactRecord]:
        """The newest ``limit`` matching reports, oldest first by event time, then id."""
        records = self._newest_records(
            "impact_reports",
            "event_time",
            start,
            end,
            limit,
            model=model,
            environment=environment,
            environment_sql="environment = ?",
            kind_column="verdict",
            kinds=verdicts,
        )
        return [ImpactRecord.from_json(r) for r in records]

    def _newest_records(
        self,
        table: str,
        time_column: str,
        start: float,
        end: float,
        limit: int,
        *,
        model: str | None,
        environment: str | None,
        environment_sql: str,
        kind_column: str,
        kinds: Sequence[str],
    ) -> list[str]:
        """The JSON ``record`` column of the newest ``limit`` rows of ``table`` with
        ``time_column`` in ``[start, end)`` and the given filters, oldest first (by
        time, then id). Table and column names are ours, never the caller's input."""
        if limit <= 0:
            return []
        where = [f"{time_column} >= ?", f"{time_column} < ?"]
        params: list[Any] = [start, end]
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if environment is not None:
            where.append(environment_sql)
            params.append(environment)
        if kinds:
            where.append(f"{kind_column} IN ({', '.join('?' for _ in kinds)})")
            params.extend(kinds)
        params.append(limit)
        sql = (
            f"SELECT record FROM {table} WHERE "
            + " AND ".join(where)
            + f" ORDER BY {time_column} DESC, id DESC LIMIT ?"
        )
        with self._locked() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [str(r[0]) for r in reversed(rows)]

    # -- lifecycle ---------------------------------------------------------------

    def ping(self) -> None:
        """Return when the database answers; raise ``StoreUnavailable`` otherwise."""
        with self._locked() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


_AUDIT_COLUMNS = (
    "seq, time, actor, action, model, environment, target, reason, before, after, prev_hash, hash"
)


def _audit_row(r: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        seq=int(r[0]),
        time=float(r[1]),
        actor=r[2],
        action=r[3],
        model=r[4],
        environment=r[5],
        target=r[6],
        reason=r[7],
        before=json.loads(r[8]),
        after=json.loads(r[9]),
        prev_hash=r[10],
        hash=r[11],
    )


def _record(text: str, status: str) -> BaselineRecord:
    return dataclasses.replace(BaselineRecord.from_json(text), status=Status(status))
