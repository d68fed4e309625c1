"""Governance of baselines: per (model, environment) policies (four-eyes
promotion, owners), pending approvals and audit verification.

The four-eyes rule itself lives with the rest of the lifecycle in
:class:`~sidecar.baselines.BaselineManager` (``promote`` records a pending
approval when the policy asks for one, ``approve`` activates); this module
keeps the policies and answers the questions around them.

>>> from sidecar.stores import SQLiteStore
>>> gov = Governance(SQLiteStore(), clock=lambda: 0.0)
>>> gov.set_policy("fraud", "prod", four_eyes=True, owners=["team-risk"],
...                reason="regulated", actor="alice").four_eyes
True
>>> gov.policy("fraud", "prod").owners
('team-risk',)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sidecar.audit import VerifyResult, verify_chain
from sidecar.errors import InvalidInput, NotFound
from sidecar.records import AuditDraft, PendingApproval, Policy, Status
from sidecar.stores.base import Store

__all__ = ["MAX_OWNERS", "Governance"]

MAX_OWNERS = 50
"""Owners a policy may name."""

_MAX_NAME = 200


def _check_owners(owners: Sequence[str]) -> tuple[str, ...]:
    cleaned: list[str] = []
    for owner in owners:
        name = owner.strip()
        if not name:
            raise InvalidInput("owner names must not be empty")
        if len(name) > _MAX_NAME or any(ord(c) < 32 for c in name):
            raise InvalidInput(
                f"owner {name[:40]!r} must be at most {_MAX_NAME} printable characters"
            )
        if name not in cleaned:
            cleaned.append(name)
    if len(cleaned) > MAX_OWNERS:
        raise InvalidInput(f"a policy names at most {MAX_OWNERS} owners, got {len(cleaned)}")
    return tuple(cleaned)


class Governance:
    """Policies, pending approvals and audit verification over one store.

    ``clock`` gives unix seconds for audit entries.
    """

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def policy(self, model: str, environment: str) -> Policy:
        """The policy of (model, environment) (the default one when never set)."""
        if not model or not environment:
            raise InvalidInput("a policy needs a model and an environment")
        return self._store.get_policy(model, environment)

    def set_policy(
        self,
        model: str,
        environment: str,
        *,
        four_eyes: bool,
        owners: Sequence[str],
        reason: str,
        actor: str,
    ) -> Policy:
        """Replace the policy of (model, environment); audited (``set_policy``,
        before and after). Raises InvalidInput for bad owners."""
        old = self.policy(model, environment)
        new = Policy(model, environment, bool(four_eyes), _check_owners(owners))
        audit = AuditDraft(
            time=self._clock(),
            actor=actor or "anonymous",
            action="set_policy",
            model=model,
            environment=environment,
            target=f"{model}/{environment}",
            reason=reason,
            before={"four_eyes": old.four_eyes, "owners": list(old.owners)},
            after={"four_eyes": new.four_eyes, "owners": list(new.owners)},
        )
        self._store.set_policy(new, audit)
        return new

    def pending(
        self, model: str | None = None, environment: str | None = None
    ) -> list[PendingApproval]:
        """Promotions waiting for approval, oldest first. Requests whose baseline
        is no longer a candidate (approved, retired, promoted otherwise) are
        dropped here and forgotten."""
        out: list[PendingApproval] = []
        for request in self._store.list_pending(model or None, environment or None):
            try:
                status = self._store.get_baseline(request.baseline_id).status
            except NotFound:
                status = None
            if status == Status.CANDIDATE:
                out.append(request)
            else:
                self._store.delete_pending(request.model, request.baseline_id)
        return out

    def verify(self, model: str | None = None, environment: str | None = None) -> VerifyResult:
        """:func:`~sidecar.audit.verify_chain` of this store."""
        return verify_chain(self._store, model or None, environment or None)
