"""The tamper-evident audit log: verify hash chains, record denials and notes.

Stores append every audit entry with ``prev_hash`` (the hash of the previous
entry of its chain) and ``hash`` (sha256 of the entry's canonical content, see
``AuditEntry.content_hash``) in the same atomic step as the change it records.
SQLite keeps one chain per store; Redis one per model plus one for entries
without a model. :func:`verify_chain` walks the chains in stored order and
names the first record that was edited, deleted or moved.

>>> from sidecar.stores import SQLiteStore
>>> store = SQLiteStore()
>>> verify_chain(store).ok
True
>>> store.close()
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.records import AuditDraft, AuditEntry
from sidecar.stores.base import Store

__all__ = [
    "DenialRecorder",
    "VerifyResult",
    "actor_of",
    "record_denied",
    "record_note",
    "verify_chain",
]

log = logging.getLogger(__name__)

_MOVED_SEARCH = 1000  # seqs either side tried when naming where a moved record came from


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify_chain` found.

    ``ok`` when every chain verifies; otherwise ``problem`` names the first bad
    record, ``bad_seq`` is its seq and ``bad_model`` its chain's model (Redis) or
    the record's model (SQLite). ``checked`` counts entries read; ``legacy``
    those written before hash chaining existed (not verifiable).
    """

    ok: bool
    checked: int
    problem: str = ""
    bad_seq: int = 0
    bad_model: str = ""
    chains: int = 0
    legacy: int = 0


def _describe(entry: AuditEntry) -> str:
    scope = f"{entry.model}/{entry.environment}" if entry.model else "no model"
    return f"({entry.action} {entry.target or '-'} by {entry.actor} on {scope})"


def _moved_from(entry: AuditEntry) -> int | None:
    """The seq the entry was sealed with when only its seq changed (a reorder)."""
    for delta in range(1, _MOVED_SEARCH + 1):
        for seq in (entry.seq - delta, entry.seq + delta):
            if seq > 0 and dataclasses.replace(entry, seq=seq).content_hash() == entry.hash:
                return seq
    return None


def _check_chain(store: Store, chain: str) -> tuple[int, int, str, int, str]:
    """(checked, legacy, problem, bad seq, bad model) of one chain."""
    label = f"audit chain {chain!r}" if chain else "audit chain of entries without a model"
    checked = legacy = 0
    prev_seq: int | None = None
    prev_hash = ""
    prev: AuditEntry | None = None
    chained = False
    for entry in store.read_audit_chain(chain):
        checked += 1
        where = f"record seq {entry.seq} {_describe(entry)} of the {label}"
        if not entry.hash:
            if chained:
                return (
                    checked,
                    legacy,
                    f"{where} has no hash: it was altered",
                    entry.seq,
                    entry.model,
                )
            legacy += 1  # written before hash chaining existed
            prev_seq, prev = entry.seq, entry
            continue
        if entry.content_hash() != entry.hash:
            moved = _moved_from(entry)
            if moved is not None:
                problem = f"{where} was sealed as seq {moved}: records were reordered"
            else:
                problem = f"{where} was edited: its content does not match its hash"
            return checked, legacy, problem, entry.seq, entry.model
        if prev_seq is not None and entry.seq <= prev_seq:
            return (
                checked,
                legacy,
                f"{where} comes after seq {prev_seq}: records were reordered",
                entry.seq,
                entry.model,
            )
        if prev_seq is not None and entry.seq != prev_seq + 1:
            missing = (
                f"seq {prev_seq + 1} is"
                if entry.seq == prev_seq + 2
                else f"seqs {prev_seq + 1}..{entry.seq - 1} are"
            )
            return (
                checked,
                legacy,
                f"{where} follows seq {prev_seq}: {missing} missing here"
                " (records were deleted or reordered)",
                entry.seq,
                entry.model,
            )
        if entry.prev_hash != prev_hash:
            before = f"seq {prev.seq}" if prev is not None else "the start of the chain"
            return (
                checked,
                legacy,
                f"{where} does not link to the record before it ({before}):"
                " a record was deleted, replaced or reordered",
                entry.seq,
                entry.model,
            )
        chained = True
        prev_seq, prev_hash, prev = entry.seq, entry.hash, entry
    head_seq, head_hash = store.audit_head(chain)
    if head_seq and (head_seq != (prev_seq or 0) or head_hash != prev_hash):
        last = f"seq {prev_seq}" if prev_seq is not None else "no record"
        model = prev.model if prev is not None else chain
        return (
            checked,
            legacy,
            f"the newest records of the {label} are missing: its head is record seq {head_seq}"
            f" but the chain ends at {last} (deleted records)",
            head_seq,
            model,
        )
    return checked, legacy, "", 0, ""


def verify_chain(
    store: Store, model: str | None = None, environment: str | None = None
) -> VerifyResult:
    """Check every audit chain holding entries of ``model`` (None: all chains).

    A chain is checked whole (its links cross environments, and on SQLite
    models too), so ``environment`` does not narrow the check; it is accepted
    for symmetry with ``list_audit``. Stops at the first bad record.
    """
    del environment  # chains span environments; see the docstring
    checked = legacy = 0
    chains = store.audit_chains(model or None)
    for chain in chains:
        n, old, problem, bad_seq, bad_model = _check_chain(store, chain)
        checked += n
        legacy += old
        if problem:
            return VerifyResult(False, checked, problem, bad_seq, bad_model, len(chains), legacy)
    return VerifyResult(True, checked, chains=len(chains), legacy=legacy)


def actor_of(request_actor: str) -> str:
    """Who is acting: the authenticated principal when auth is on (it overrides
    what the request claims), else the request's ``actor``, else ``anonymous``."""
    try:
        from sidecar.auth import current_principal  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # auth not available in this build
        return request_actor or "anonymous"
    principal: Any = current_principal()
    if principal is not None:
        return str(principal.name)
    return request_actor or "anonymous"


def record_note(
    store: Store,
    *,
    actor: str,
    action: str,
    model: str = "",
    environment: str = "",
    target: str = "",
    reason: str = "",
    after: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> AuditEntry:
    """Append one audit entry that goes with no other stored change (an event
    recorded by hand, a configuration change). Raises store errors."""
    draft = AuditDraft(
        time=clock(),
        actor=actor or "anonymous",
        action=action,
        model=model,
        environment=environment,
        target=target,
        reason=reason,
        before={},
        after=dict(after or {}),
    )
    return store.append_audit(draft)


def record_denied(
    store: Store,
    *,
    principal: str,
    method: str,
    reason: str,
    clock: Callable[[], float] = time.time,
    extra: Mapping[str, Any] | None = None,
) -> AuditEntry | None:
    """Audit one refused call (action ``auth_denied``; actor the principal, or
    ``anonymous`` when none authenticated; target the gRPC method). Never
    raises: a store that cannot write is logged and None returned."""
    try:
        return record_note(
            store,
            actor=principal or "anonymous",
            action="auth_denied",
            target=method,
            reason=reason,
            after=extra,
            clock=clock,
        )
    except Exception as err:
        log.warning("cannot audit a refused call to %s: %s", method, err)
        return None


class DenialRecorder:
    """:func:`record_denied` with a cap: at most ``per_minute`` entries a minute,
    so a flood of bad tokens cannot flood the audit log. Denials over the cap are
    counted and reported as ``suppressed`` in the next entry written."""

    def __init__(
        self, store: Store, *, per_minute: int = 60, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._minute = -1
        self._written = 0
        self._suppressed = 0

    def record(self, principal: str, method: str, reason: str) -> AuditEntry | None:
        """Audit one denial unless over the cap (then None)."""
        now = self._clock()
        with self._lock:
            minute = int(now // 60)
            if minute != self._minute:
                self._minute, self._written = minute, 0
            if self._written >= self._per_minute:
                self._suppressed += 1
                return None
            self._written += 1
            suppressed, self._suppressed = self._suppressed, 0
        extra = {"suppressed": suppressed} if suppressed else None
        return record_denied(
            self._store,
            principal=principal,
            method=method,
            reason=reason,
            clock=self._clock,
            extra=extra,
        )
