"""Baseline lifecycle: freeze a window into a baseline, promote, roll back, retire.

:class:`BaselineManager` is the only place that holds lifecycle policy. It
talks to a :class:`~sidecar.stores.base.Store` and the live
:class:`~sidecar.windows.Windows`; every method is synchronous and may block
on the store (the gRPC servicers call it through ``asyncio.to_thread``).

Policy:

- ``freeze`` flushes the live windows first, so everything ingested until now
  counts, and refuses a window that holds no data. The new baseline is a
  candidate; its parent is the baseline active when it was frozen.
- ``promote`` makes a baseline active; the previously active one goes onto the
  pointer's history and back to candidate. Promoting a retired baseline is
  refused. Promoting the baseline that is already active is an idempotent
  no-op: it changes nothing and writes no audit entry.
- With the four-eyes policy of (model, environment) on
  (``Store.get_policy``), ``promote`` does not activate: it records a pending
  approval (audit action ``promote_requested``) and returns the baseline, still
  a candidate. ``approve`` activates a candidate (audit action ``approve``,
  naming who froze, who asked and who approved); it is refused when the
  approving actor froze the baseline or asked for its promotion, and for a
  retired baseline. ``approve`` works without a prior request too, and with
  four-eyes off (the same rule applies).
- ``rollback`` makes the last history entry active again and pops it from the
  history; the baseline it replaces becomes a candidate (it is not pushed onto
  the history, so repeated roll backs walk further back instead of toggling).
- ``retire`` marks a candidate retired and removes it from the history, so a
  roll back can never revive it. The active baseline cannot be retired: promote
  another one or roll back first. Retiring a retired baseline is a no-op.

Every change appends an audit entry (actor, time, reason, and before/after as
``{"active": <active id or None>, "status": <status of the target>}``) in the
same atomic step as the change itself.

>>> # manager = BaselineManager(store, windows)
>>> # record = manager.freeze("fraud", "prod", "2024-w1", "weekly", "alice", start=0, end=0)
>>> # manager.promote(record.id, "looks right", "alice").status
>>> # <Status.ACTIVE: 'active'>
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sidecar.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidInput, NotFound
from sidecar.records import (
    ALL_TRAFFIC,
    AuditDraft,
    AuditEntry,
    BaselineRecord,
    Kind,
    PendingApproval,
    PointerState,
    SeriesId,
    Status,
    Summary,
)
from sidecar.series import CategoricalState, NumericState, decode_state
from sidecar.stores.base import Store

if TYPE_CHECKING:
    from sidecar.guardrails import Seasonality
    from sidecar.windows import Windows

__all__ = [
    "DEFAULT_QUANTILES",
    "DEFAULT_TOP_K",
    "BaselineManager",
    "BaselineView",
    "WindowView",
    "new_baseline_id",
]

DEFAULT_QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
"""Quantile levels reported when a query names none."""

DEFAULT_TOP_K = 10
"""Categorical values reported when a query names no ``top_k``."""

_MAX_QUANTILES = 100
_MAX_TOP_K = 10_000
_MAX_AUDIT = 10_000
_DEFAULT_AUDIT = 100
_MAX_HISTORY = 100  # previously active ids kept for roll back, oldest dropped first
_CAS_ATTEMPTS = 8
_DEFAULT_RETENTION = 7 * 24 * 3600.0

log = logging.getLogger(__name__)


def new_baseline_id() -> str:
    """A short unique baseline id: ``b-`` and 12 hex characters (48 random bits)."""
    return "b-" + secrets.token_hex(6)


@dataclass(frozen=True)
class BaselineView:
    """A baseline's record with a summary of each of its series (sorted by series id)."""

    record: BaselineRecord
    series: tuple[tuple[SeriesId, Summary], ...]


@dataclass(frozen=True)
class WindowView:
    """A summary of each series of a live window (sorted by series id)."""

    model: str
    environment: str
    start: float
    end: float
    versions: tuple[str, ...]
    writers: tuple[str, ...]
    series: tuple[tuple[SeriesId, Summary], ...]


def _summarize(
    state: NumericState | CategoricalState, quantiles: Sequence[float], top_k: int
) -> Summary:
    if isinstance(state, NumericState):
        return state.summary(quantiles)
    return state.summary(top_k)


def _require(value: str, what: str) -> str:
    if not value or not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    return value


class BaselineManager:
    """Freezes windows into baselines and moves the active pointer, with audit.

    ``clock`` gives unix seconds; ``new_id`` makes baseline ids;
    ``retention_seconds`` is how far back a window with ``start=0`` reaches.
    """

    def __init__(
        self,
        store: Store,
        windows: Windows,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_baseline_id,
        retention_seconds: float = _DEFAULT_RETENTION,
        seasonality_for: Callable[[str], Seasonality | None] | None = None,
    ) -> None:
        self._store = store
        self._seasonality_for = seasonality_for
        self._windows = windows
        self._clock = clock
        self._new_id = new_id
        self._retention = float(retention_seconds)
        #: Called with each baseline just frozen, to freeze what other families keep
        #: with it (the quality monitor's labelled states; issue 8). A failure is
        #: logged and does not undo the freeze.
        self.on_freeze: Callable[[BaselineRecord], None] | None = None

    # -- validation ------------------------------------------------------------------

    def _window_bounds(self, start: float, end: float) -> tuple[float, float]:
        for name, value in (("start", start), ("end", end)):
            if not math.isfinite(value) or value < 0:
                raise InvalidInput(f"window {name} must be a finite unix time >= 0, got {value!r}")
        now = self._clock()
        end = end or now
        start = start or max(0.0, now - self._retention)
        if start >= end:
            raise InvalidInput(f"window start ({start}) must be before its end ({end})")
        return start, end

    @staticmethod
    def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
        """The levels to report: ``quantiles``, or the defaults when empty.

        Raises InvalidInput when a level is outside [0, 1] or there are too many.
        """
        if not quantiles:
            return DEFAULT_QUANTILES
        if len(quantiles) > _MAX_QUANTILES:
            raise InvalidInput(
                f"at most {_MAX_QUANTILES} quantile levels per query, got {len(quantiles)}"
            )
        for q in quantiles:
            if not (0.0 <= q <= 1.0):  # also refuses NaN
                raise InvalidInput(f"quantile levels must be in [0, 1], got {q!r}")
        return tuple(float(q) for q in quantiles)

    @staticmethod
    def check_top_k(top_k: int) -> int:
        """``top_k``, or the default when 0. Raises InvalidInput when negative or huge."""
        if top_k == 0:
            return DEFAULT_TOP_K
        if not (0 < top_k <= _MAX_TOP_K):
            raise InvalidInput(f"top_k must be between 1 and {_MAX_TOP_K}, got {top_k}")
        return top_k

    # -- freeze ----------------------------------------------------------------------

    def freeze(
        self,
        model: str,
        environment: str,
        name: str,
        reason: str,
        actor: str,
        start: float,
        end: float,
        versions: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
    ) -> BaselineRecord:
        """Freeze the window ``[start, end)`` of (model, environment) into a new candidate.

        ``end=0`` means now, ``start=0`` everything retained; ``versions`` limits
        the window to those model versions (empty: all, merged). Raises
        InvalidInput, FailedPrecondition (empty window), AlreadyExists (name taken).
        """
        _require(model, "model")
        _require(environment, "environment")
        _require(name, "baseline name")
        start, end = self._window_bounds(start, end)
        versions = tuple(versions)
        if any(not v for v in versions):
            raise InvalidInput("model versions must not be empty strings")
        try:
            existing = self._store.find_baseline(model, environment, name)
        except NotFound:
            pass
        else:
            raise AlreadyExists(
                f"baseline {name!r} of {model}/{environment} exists already ({existing.id});"
                " choose another name"
            )

        self._windows.flush()  # everything ingested up to now counts
        data = self._windows.read(model, environment, start, end, versions)
        if not data.series:
            what = f" versions {', '.join(versions)}" if versions else ""
            raise FailedPrecondition(
                f"window [{start:.3f}, {end:.3f}) of {model}/{environment}{what} holds no data;"
                " send traffic first or choose another window"
            )

        totals: dict[SeriesId, int] = {}
        encoded: dict[str, bytes] = {}
        for sid, state in data.series.items():
            encoded[sid.encode()] = state.encode()
            totals[sid] = _total(state)
        season = self._seasonality_for(model) if self._seasonality_for is not None else None
        if season is not None:
            encoded.update(self._phase_series(model, environment, start, end, versions, season))
        latency = [
            t for sid, t in totals.items() if sid.slice == ALL_TRAFFIC and sid.kind == Kind.LATENCY
        ]
        record_count = max(latency) if latency else max(totals.values())

        fingerprint = self._windows.fingerprint(model, environment)
        pointer = self._store.get_pointer(model, environment)
        now = self._clock()
        record = BaselineRecord(
            id=self._new_id(),
            model=model,
            environment=environment,
            name=name,
            reason=reason,
            created_by=actor or "anonymous",
            created_at=now,
            window_start=start,
            window_end=end,
            versions=tuple(data.versions),
            parent_id=pointer.active or "",
            fingerprint=dict(fingerprint.fields) if fingerprint is not None else {},
            fingerprint_hash=fingerprint.hash if fingerprint is not None else "",
            series_count=len(encoded),
            record_count=record_count,
            labels=dict(labels or {}),
            status=Status.CANDIDATE,
        )
        audit = AuditDraft(
            time=now,
            actor=record.created_by,
            action="freeze",
            model=model,
            environment=environment,
            target=record.id,
            reason=reason,
            before={"active": pointer.active, "status": None},
            after={"active": pointer.active, "status": Status.CANDIDATE.value},
        )
        self._store.create_baseline(record, encoded, audit)
        if self.on_freeze is not None:
            try:
                self.on_freeze(record)
            except Exception:
                log.warning("on_freeze of baseline %s failed", record.id, exc_info=True)
        return record

    def _phase_series(
        self,
        model: str,
        environment: str,
        start: float,
        end: float,
        versions: tuple[str, ...],
        season: Seasonality,
    ) -> dict[str, bytes]:
        """The window's series per phase (slice ``"<slice>@NN"``) of a seasonal model;
        refuses a window that does not cover a whole period with data in every phase."""
        from sidecar.compare import phase_slice, read_phases

        phases = read_phases(self._store, model, environment, start, end, season, versions)
        missing = [p for p in range(season.phases) if p not in phases]
        if end - start < season.period or missing:
            shown = ", ".join(f"{p:02d}" for p in missing[:10]) + (
                ", ..." if len(missing) > 10 else ""
            )
            lacking = f"; phases without data: {shown}" if missing else ""
            raise FailedPrecondition(
                f"{model} is seasonal (period {season.period:g} s in {season.phases} phases) and"
                f" the window [{start:.3f}, {end:.3f}) of {model}/{environment} does not cover"
                f" one whole period with data{lacking}; freeze a window of at least one period"
            )
        return {
            SeriesId(
                sid.version, phase_slice(sid.slice, p), sid.kind, sid.signal
            ).encode(): state.encode()
            for p, states in phases.items()
            for sid, state in states.items()
        }

    # -- pointer moves -----------------------------------------------------------------

    def promote(self, baseline_id: str, reason: str, actor: str) -> BaselineRecord:
        """Make a baseline the active one of its (model, environment).

        The previously active baseline goes onto the history (for roll back)
        and back to candidate. Promoting the active baseline is a no-op. With
        the four-eyes policy on, it records a pending approval instead and
        returns the baseline still a candidate. Raises NotFound,
        FailedPrecondition (retired).
        """
        _require(baseline_id, "baseline id")
        record = self._store.get_baseline(baseline_id)
        if (
            record.status == Status.CANDIDATE
            and self._store.get_policy(record.model, record.environment).four_eyes
        ):
            return self._request_approval(record, reason, actor)
        return self._activate(baseline_id, reason, actor, "promote", {})

    def _request_approval(self, record: BaselineRecord, reason: str, actor: str) -> BaselineRecord:
        """Four-eyes: record a pending approval (audited) instead of activating."""
        now = self._clock()
        actor = actor or "anonymous"
        pending = PendingApproval(
            baseline_id=record.id,
            model=record.model,
            environment=record.environment,
            requested_by=actor,
            requested_at=now,
            reason=reason,
        )
        audit = AuditDraft(
            time=now,
            actor=actor,
            action="promote_requested",
            model=record.model,
            environment=record.environment,
            target=record.id,
            reason=reason,
            before={"status": record.status.value},
            after={"status": record.status.value, "pending": True, "frozen_by": record.created_by},
        )
        self._store.put_pending(pending, audit)
        return record

    def approve(self, baseline_id: str, reason: str, actor: str) -> BaselineRecord:
        """Activate a candidate on behalf of a second admin (four-eyes).

        Refused (FailedPrecondition naming the rule) when ``actor`` froze the
        baseline or asked for its promotion, or when it is retired. Approving
        the active baseline is a no-op. Raises NotFound.
        """
        _require(baseline_id, "baseline id")
        actor = actor or "anonymous"
        record = self._store.get_baseline(baseline_id)
        if record.status == Status.RETIRED:
            raise FailedPrecondition(
                f"baseline {baseline_id} ({record.name}) is retired and cannot be approved;"
                " freeze a new baseline instead"
            )
        if actor == record.created_by:
            raise FailedPrecondition(
                f"four-eyes rule: {actor} froze baseline {baseline_id} and cannot approve it;"
                " another admin must approve"
            )
        requests = [
            p
            for p in self._store.list_pending(record.model, record.environment)
            if p.baseline_id == baseline_id
        ]
        requested_by = requests[0].requested_by if requests else ""
        if actor == requested_by:
            raise FailedPrecondition(
                f"four-eyes rule: {actor} asked to promote baseline {baseline_id} and cannot"
                " approve it; another admin must approve"
            )
        extra = {"approved_by": actor, "frozen_by": record.created_by, "requested_by": requested_by}
        done = self._activate(baseline_id, reason, actor, "approve", extra)
        if requests:
            self._store.delete_pending(record.model, baseline_id)
        return done

    def _activate(
        self, baseline_id: str, reason: str, actor: str, action: str, extra: Mapping[str, Any]
    ) -> BaselineRecord:
        """Move the pointer to ``baseline_id`` (compare-and-set, retried), audited as ``action``."""
        for _ in range(_CAS_ATTEMPTS):
            record = self._store.get_baseline(baseline_id)
            if record.status == Status.RETIRED:
                raise FailedPrecondition(
                    f"baseline {baseline_id} ({record.name}) is retired and cannot be promoted;"
                    " freeze a new baseline instead"
                )
            pointer = self._store.get_pointer(record.model, record.environment)
            if pointer.active == baseline_id:
                return dataclasses.replace(record, status=Status.ACTIVE)
            history = tuple(h for h in pointer.history if h != baseline_id)
            changes = {baseline_id: Status.ACTIVE}
            if pointer.active is not None:
                history = (*history, pointer.active)
                changes[pointer.active] = Status.CANDIDATE
            if self._move(
                record,
                pointer,
                active=baseline_id,
                history=history[-_MAX_HISTORY:],
                changes=changes,
                action=action,
                reason=reason,
                actor=actor,
                before_status=record.status,
                after_status=Status.ACTIVE,
                extra=extra,
            ):
                return dataclasses.replace(record, status=Status.ACTIVE)
        raise _gave_up(record.model, record.environment)

    def rollback(self, model: str, environment: str, reason: str, actor: str) -> BaselineRecord:
        """Make the previously active baseline of (model, environment) active again.

        The baseline it replaces becomes a candidate. Returns the newly active
        record. Raises FailedPrecondition when there is no previous active baseline.
        """
        _require(model, "model")
        _require(environment, "environment")
        for _ in range(_CAS_ATTEMPTS):
            pointer = self._store.get_pointer(model, environment)
            if not pointer.history:
                raise FailedPrecondition(
                    f"no previous active baseline for {model}/{environment} to roll back to"
                )
            previous = pointer.history[-1]
            record = self._store.get_baseline(previous)
            changes = {previous: Status.ACTIVE}
            if pointer.active is not None and pointer.active != previous:
                changes[pointer.active] = Status.CANDIDATE
            if self._move(
                record,
                pointer,
                active=previous,
                history=pointer.history[:-1],
                changes=changes,
                action="rollback",
                reason=reason,
                actor=actor,
                before_status=record.status,
                after_status=Status.ACTIVE,
            ):
                return dataclasses.replace(record, status=Status.ACTIVE)
        raise _gave_up(model, environment)

    def retire(self, baseline_id: str, reason: str, actor: str) -> BaselineRecord:
        """Retire a candidate baseline; it can no longer be promoted or rolled back to.

        Raises NotFound, FailedPrecondition (it is the active baseline).
        Retiring a retired baseline is a no-op.
        """
        _require(baseline_id, "baseline id")
        for _ in range(_CAS_ATTEMPTS):
            record = self._store.get_baseline(baseline_id)
            pointer = self._store.get_pointer(record.model, record.environment)
            if pointer.active == baseline_id:
                raise FailedPrecondition(
                    f"baseline {baseline_id} ({record.name}) is the active baseline of"
                    f" {record.model}/{record.environment}; promote another baseline or roll back"
                    " first, then retire it"
                )
            if record.status == Status.RETIRED:
                return record
            if self._move(
                record,
                pointer,
                active=pointer.active,
                history=tuple(h for h in pointer.history if h != baseline_id),
                changes={baseline_id: Status.RETIRED},
                action="retire",
                reason=reason,
                actor=actor,
                before_status=record.status,
                after_status=Status.RETIRED,
            ):
                self._store.delete_pending(record.model, baseline_id)  # nothing left to approve
                return dataclasses.replace(record, status=Status.RETIRED)
        raise _gave_up(record.model, record.environment)

    def _move(
        self,
        record: BaselineRecord,
        pointer: PointerState,
        *,
        active: str | None,
        history: tuple[str, ...],
        changes: Mapping[str, Status],
        action: str,
        reason: str,
        actor: str,
        before_status: Status,
        after_status: Status,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """One compare-and-set of the pointer with its audit entry; False when it lost a race."""
        audit = AuditDraft(
            time=self._clock(),
            actor=actor or "anonymous",
            action=action,
            model=record.model,
            environment=record.environment,
            target=record.id,
            reason=reason,
            before={"active": pointer.active, "status": before_status.value},
            after={"active": active, "status": after_status.value, **(extra or {})},
        )
        try:
            self._store.cas_pointer(
                record.model,
                record.environment,
                expected_revision=pointer.revision,
                active=active,
                history=history,
                status_changes=changes,
                audit=audit,
            )
        except Conflict:
            return False
        return True

    # -- reads -------------------------------------------------------------------------

    def get(self, baseline_id: str) -> BaselineRecord:
        """The record of a baseline with its current status. Raises NotFound."""
        _require(baseline_id, "baseline id")
        return self._store.get_baseline(baseline_id)

    def view(
        self, baseline_id: str, quantiles: Sequence[float] = (), top_k: int = 0
    ) -> BaselineView:
        """A baseline with a summary of each series. Raises NotFound, InvalidInput."""
        levels = self.check_quantiles(quantiles)
        k = self.check_top_k(top_k)
        _require(baseline_id, "baseline id")
        record = self._store.get_baseline(baseline_id)
        blobs = self._store.get_baseline_series(baseline_id)
        series = sorted(
            (SeriesId.parse(key), _summarize(decode_state(blob), levels, k))
            for key, blob in blobs.items()
        )
        return BaselineView(record=record, series=tuple(series))

    def window_view(
        self,
        model: str,
        environment: str,
        start: float = 0.0,
        end: float = 0.0,
        versions: Sequence[str] = (),
        quantiles: Sequence[float] = (),
        top_k: int = 0,
    ) -> WindowView:
        """A summary of each series of the live window ``[start, end)`` (0 = all / now).

        An empty window is not an error: it has no series.
        """
        _require(model, "model")
        _require(environment, "environment")
        levels = self.check_quantiles(quantiles)
        k = self.check_top_k(top_k)
        start, end = self._window_bounds(start, end)
        self._windows.flush()
        data = self._windows.read(model, environment, start, end, tuple(versions))
        series = sorted((sid, _summarize(state, levels, k)) for sid, state in data.series.items())
        return WindowView(
            model=model,
            environment=environment,
            start=start,
            end=end,
            versions=tuple(data.versions),
            writers=tuple(data.writers),
            series=tuple(series),
        )

    def active(self, model: str, environment: str) -> BaselineRecord:
        """The active baseline of (model, environment). Raises NotFound when none is."""
        _require(model, "model")
        _require(environment, "environment")
        pointer = self._store.get_pointer(model, environment)
        if pointer.active is None:
            raise NotFound(
                f"no active baseline for {model}/{environment}; freeze one and promote it"
            )
        return self._store.get_baseline(pointer.active)

    def list(
        self,
        model: str | None = None,
        environment: str | None = None,
        status: Status | None = None,
    ) -> builtins.list[BaselineRecord]:
        """Baselines matching every given filter, oldest first."""
        return self._store.list_baselines(model or None, environment or None, status)

    def audit(
        self, model: str | None = None, environment: str | None = None, limit: int = 0
    ) -> builtins.list[AuditEntry]:
        """The newest ``limit`` audit entries (0: 100), oldest first."""
        if limit < 0 or limit > _MAX_AUDIT:
            raise InvalidInput(f"audit limit must be between 0 and {_MAX_AUDIT}, got {limit}")
        return self._store.list_audit(model or None, environment or None, limit or _DEFAULT_AUDIT)


def _total(state: NumericState | CategoricalState) -> int:
    """Values seen by a series, missing ones included (= rows that carried the signal)."""
    if isinstance(state, NumericState):
        return state.count + state.missing + state.out_of_range
    return state.count + state.missing


def _gave_up(model: str, environment: str) -> Conflict:
    return Conflict(
        f"the active pointer of {model}/{environment} kept changing under concurrent updates;"
        " try again"
    )
