"""The ``Store`` protocol: what the sidecar needs from its storage.

Two implementations pass one contract suite (``tests/stores/test_contract.py``):
``SQLiteStore`` (embedded default, ``sqlite:///path`` or ``:memory:``) and
``RedisStore`` (``redis://``, ``rediss://``; Redis Cluster later).

Series state is opaque bytes here (``sidecar.series`` encodes it); stores never
interpret it. Window partials are written per (model, environment, bucket,
writer) so writers never contend; readers merge partials. Baselines are
immutable and created atomically with their audit entry. The active pointer
changes only through :meth:`Store.cas_pointer`, which compares the pointer's
revision and, in one atomic step, applies the new pointer, status changes and
the audit entry.

Every method is synchronous and may block on I/O; async callers run them with
``asyncio.to_thread``. Failures to reach the backend raise
``sidecar.errors.StoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from sidecar.errors import InvalidInput
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

__all__ = ["DEFAULT_EVENT_RETENTION", "Store", "check_prediction_args", "check_ttl"]

DEFAULT_EVENT_RETENTION = 90 * 24 * 3600


def check_ttl(ttl_seconds: int) -> None:
    """Refuse a TTL that is not positive (both stores)."""
    if ttl_seconds <= 0:
        raise InvalidInput(f"ttl_seconds must be positive, got {ttl_seconds}")


def check_prediction_args(model: str, ttl_seconds: int, max_records: int) -> None:
    """Validate ``put_predictions``' arguments the same way in both stores."""
    if not model:
        raise InvalidInput("model name must not be empty")
    check_ttl(ttl_seconds)
    if max_records < 1:
        raise InvalidInput(f"max_records must be at least 1, got {max_records}")


"""Seconds change events are kept by default (by event time)."""


@runtime_checkable
class Store(Protocol):
    """Storage for window partials, baselines, active pointers and the audit log."""

    # -- windows ---------------------------------------------------------------

    def write_partials(
        self,
        model: str,
        environment: str,
        partials: Sequence[Partial],
        *,
        ttl_seconds: int,
    ) -> None:
        """Upsert partials of one (model, environment).

        For each partial, every series in ``partial.series`` replaces the value
        the same writer stored for the same bucket and series before (writers
        send cumulative state, so a repeated flush is idempotent). Series not
        named keep their stored value. Data expires ``ttl_seconds`` after the
        last write to its bucket (Redis TTL; SQLite deletes on write/read).
        All partials of one call are written in one round trip / transaction.
        """
        ...

    def read_partials(self, model: str, environment: str, start: int, end: int) -> list[Partial]:
        """Every writer's partial of every bucket with ``start <= bucket < end``,
        ordered by bucket then writer. Expired buckets are not returned."""
        ...

    def list_windows(self) -> list[tuple[str, str]]:
        """The (model, environment) pairs that have window data, sorted."""
        ...

    # -- baselines -------------------------------------------------------------

    def create_baseline(
        self,
        record: BaselineRecord,
        series: Mapping[str, bytes],
        audit: AuditDraft,
    ) -> AuditEntry:
        """Write a new baseline and its audit entry atomically.

        Raises ``AlreadyExists`` (and writes nothing) when ``record.id`` exists,
        or when (model, environment, name) names an existing baseline. A crash
        mid-write leaves either the whole baseline or nothing.
        """
        ...

    def get_baseline(self, baseline_id: str) -> BaselineRecord:
        """The record with its current status. Raises ``NotFound``."""
        ...

    def get_baseline_series(self, baseline_id: str) -> dict[str, bytes]:
        """All series of a baseline. Raises ``NotFound``."""
        ...

    def find_baseline(self, model: str, environment: str, name: str) -> BaselineRecord:
        """The baseline of (model, environment) with that name. Raises ``NotFound``."""
        ...

    def list_baselines(
        self,
        model: str | None = None,
        environment: str | None = None,
        status: Status | None = None,
    ) -> list[BaselineRecord]:
        """Matching records, oldest first (by ``created_at``, then id)."""
        ...

    # -- active pointer --------------------------------------------------------

    def get_pointer(self, model: str, environment: str) -> PointerState:
        """The pointer; ``PointerState()`` (revision 0) when never set."""
        ...

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
        """Atomically: if the pointer's revision is ``expected_revision``, set
        ``active`` and ``history``, bump the revision, apply ``status_changes``
        (baseline id -> new status, ids of this model) and append ``audit``.

        Raises ``Conflict`` (changing nothing) when the revision moved, and
        ``NotFound`` when a baseline named in ``active`` or ``status_changes``
        does not exist. Returns the new pointer and the stored audit entry.
        """
        ...

    # -- audit -----------------------------------------------------------------

    def list_audit(
        self,
        model: str | None = None,
        environment: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """The newest ``limit`` matching entries, oldest first (ascending seq).

        ``seq`` is unique and increasing per store for SQLite, and per model
        for Redis (entries of one model are totally ordered).
        """
        ...

    def append_audit(self, audit: AuditDraft) -> AuditEntry:
        """Append one audit entry that goes with no other change (an
        authentication failure, a hand-recorded note). ``audit.model`` may be
        empty: Redis keeps such entries in a chain of their own."""
        ...

    # -- audit hash chains -----------------------------------------------------
    #
    # Every appended entry carries ``prev_hash`` (the hash of the chain's
    # previous entry) and ``hash`` (``AuditEntry.content_hash``), computed in the
    # same atomic step that appends it. SQLite keeps one chain per store; Redis
    # one per model (keys of two models are never touched atomically), plus one
    # for entries without a model. Each chain also keeps its head (seq and hash
    # of its newest entry) apart from the entries, so deleting the newest
    # entries is detected too. ``sidecar.audit.verify_chain`` checks them.

    def audit_chains(self, model: str | None = None) -> list[str]:
        """Names of the chains holding entries of ``model`` (None: every chain)."""
        ...

    def read_audit_chain(self, chain: str) -> Iterator[AuditEntry]:
        """Every entry of one chain in stored order, as stored (nothing re-sorted)."""
        ...

    def audit_head(self, chain: str) -> tuple[int, str]:
        """(seq, hash) of the chain's newest entry as recorded at append time;
        (0, "") for an empty chain."""
        ...

    # -- governance ------------------------------------------------------------

    def get_policy(self, model: str, environment: str) -> Policy:
        """The policy of (model, environment); ``Policy(model, environment)`` when never set."""
        ...

    def set_policy(self, policy: Policy, audit: AuditDraft) -> AuditEntry:
        """Store the policy and append ``audit`` atomically."""
        ...

    def put_pending(self, pending: PendingApproval, audit: AuditDraft) -> AuditEntry:
        """Record (or replace) the pending approval of ``pending.baseline_id`` and
        append ``audit`` atomically."""
        ...

    def list_pending(
        self, model: str | None = None, environment: str | None = None
    ) -> list[PendingApproval]:
        """Pending approvals, oldest request first."""
        ...

    def delete_pending(self, model: str, baseline_id: str) -> None:
        """Forget the pending approval of a baseline (no-op when there is none)."""
        ...

    # -- change events ---------------------------------------------------------

    def append_event(
        self, record: EventRecord, *, retention_seconds: float = DEFAULT_EVENT_RETENTION
    ) -> EventRecord:
        """Store one change event of ``record.model`` and return it with its id
        (a new unique id when ``record.id`` is empty). Events older than
        ``retention_seconds`` before ``record.recorded_at`` (0: the store's
        clock) are dropped: SQLite by event time, Redis by arrival in the
        model's stream (``XTRIM MINID``). Raises ``AlreadyExists`` (and stores
        nothing) when an event with ``record.id`` exists: atomically, so of two
        concurrent appends of one id exactly one is stored (SQLite: the primary
        key; Redis: a ``SET NX`` claim on the id, kept for the retention)."""
        ...

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
        """The newest ``limit`` events with ``start <= time < end`` (of that
        model, environment and types; None / empty: all), oldest first by event
        time, then id. ``environment`` also matches events recorded without
        one (they apply to every environment)."""
        ...

    def update_event_attributes(
        self, model: str, event_id: str, attributes: Mapping[str, str]
    ) -> EventRecord:
        """Merge ``attributes`` into the stored event's attributes (a key given
        replaces the stored value; others are kept) and return the updated
        event. Events are otherwise append-only: this is for figures that keep
        moving after the event is recorded (a derived event's instance share).
        Raises ``NotFound`` when ``model`` has no event ``event_id``."""
        ...

    # -- fleet mode: leases and leader-written alert state (docs/storage.md) ----
    #
    # One lease per (model, environment) says which sidecar runs its fleet-wide
    # comparisons. Each grant carries a fencing token, larger than every token
    # granted before for that (model, environment); leader-only writes name
    # their token and are refused once the lease moved on. Lease times are the
    # store's clock (Redis: the server's; SQLite: the store's ``clock``).

    def acquire_lease(
        self, model: str, environment: str, holder: str, ttl_seconds: float
    ) -> int | None:
        """Grant the lease of (model, environment) to ``holder`` for
        ``ttl_seconds`` when nobody holds it or its holder's lease expired,
        and return the new fencing token. When ``holder`` holds it already,
        extend it and return its current token. None when another holder
        has it."""
        ...

    def renew_lease(
        self, model: str, environment: str, holder: str, token: int, ttl_seconds: float
    ) -> bool:
        """Extend the lease by ``ttl_seconds`` from now if (holder, token) still
        holds it (compare-and-renew); False (nothing changed) otherwise."""
        ...

    def release_lease(self, model: str, environment: str, holder: str, token: int) -> bool:
        """Give the lease up if (holder, token) holds it; False otherwise."""
        ...

    def lease_holder(self, model: str, environment: str) -> tuple[str, int] | None:
        """(holder, token) of the unexpired lease, or None."""
        ...

    def write_alert_state(
        self, model: str, environment: str, holder: str, token: int, state: bytes
    ) -> None:
        """Store the leader's alert state of (model, environment) (opaque bytes,
        ``sidecar.lease`` encodes it) if (holder, token) holds the lease;
        raises ``Conflict`` and writes nothing otherwise (a stale leader)."""
        ...

    def read_alert_states(self, model: str | None = None) -> dict[tuple[str, str], bytes]:
        """Stored alert states by (model, environment) (of one model, or all)."""
        ...

    # -- outcomes (issue 8) ----------------------------------------------------

    def put_predictions(
        self,
        model: str,
        records: Sequence[tuple[str, bytes]],
        *,
        ttl_seconds: int,
        max_records: int,
    ) -> int:
        """Keep (request id, opaque prediction record) pairs of ``model`` for
        ``ttl_seconds`` from now (store clock), for joining outcomes later. An id
        already kept keeps its first record. At most ``max_records`` stay kept per
        model: the oldest go first (Redis: whole time buckets; a record that does
        not fit is refused). Returns the records evicted or refused."""
        ...

    def get_predictions(self, model: str, request_ids: Sequence[str]) -> dict[str, bytes]:
        """The kept, unexpired records of those request ids (absent ids are left out)."""
        ...

    def claim_outcomes(
        self, model: str, request_ids: Sequence[str], *, ttl_seconds: int
    ) -> list[bool]:
        """Mark the outcome of each request id as recorded (for ``ttl_seconds``);
        per id, True when this call claimed it first, False when it was claimed
        already (by an earlier call or earlier in this one)."""
        ...

    # -- impact reports (issue 4) ------------------------------------------------

    def put_impact_report(
        self, record: ImpactRecord, *, retention_seconds: float = DEFAULT_EVENT_RETENTION
    ) -> None:
        """Insert or replace the impact report ``record.id`` (of ``record.model``).
        Reports whose event is older than ``retention_seconds`` before the store's
        clock are dropped on the way."""
        ...

    def get_impact_report(self, report_id: str) -> ImpactRecord:
        """The stored report. Raises ``NotFound``."""
        ...

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
        """The newest ``limit`` reports whose event time is in ``[start, end)`` (of
        that model, environment and verdicts; None / empty: all), oldest first by
        event time, then id."""
        ...

    # -- lifecycle -------------------------------------------------------------

    def ping(self) -> None:
        """Return when the backend answers; raise ``StoreUnavailable`` otherwise."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...
