"""The ``baselined.v1.Governance`` servicer (``grpc.aio``): policies, four-eyes
approvals, audit verification, and baseline export / import / diff.

The actor of every change is the authenticated principal when auth is on,
else the request's ``actor`` (:func:`sidecar.audit.actor_of`). Export, import
and diff are ``sidecar.transfer``'s; until that module is present they answer
UNIMPLEMENTED.

>>> # pb_grpc.add_GovernanceServicer_to_server(GovernanceService(store, manager), server)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from baselined.v1 import baselined_pb2 as pb

from sidecar.audit import VerifyResult, actor_of
from sidecar.baselines import BaselineManager
from sidecar.convert import pending_to_pb, policy_to_pb, record_to_pb, verify_to_pb
from sidecar.governance import Governance
from sidecar.service import Context, _call
from sidecar.stores.base import Store

if TYPE_CHECKING:
    from sidecar.guardrails import Guardrails

__all__ = ["GovernanceService"]


def _transfer() -> Any:
    """``sidecar.transfer``, or None when this build has none."""
    try:
        from sidecar import transfer
    except ImportError:
        return None
    return transfer


class GovernanceService:
    """``baselined.v1.Governance`` over a store and the baseline manager.

    ``guardrails`` decide the effects ``DiffBaselines`` reports (None: the
    built-in defaults).
    """

    def __init__(
        self,
        store: Store,
        manager: BaselineManager,
        *,
        guardrails: Guardrails | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._manager = manager
        self._governance = Governance(store, clock=clock)
        self._guardrails = guardrails
        self._clock = clock

    async def GetPolicy(self, request: pb.GetPolicyRequest, context: Context) -> pb.Policy:
        policy = await _call(
            context, "get policy", self._governance.policy, request.model, request.environment
        )
        return policy_to_pb(policy)

    async def SetPolicy(self, request: pb.SetPolicyRequest, context: Context) -> pb.Policy:
        actor = actor_of(request.actor)
        wanted = request.policy

        def run() -> Any:
            return self._governance.set_policy(
                wanted.model,
                wanted.environment,
                four_eyes=wanted.four_eyes,
                owners=list(wanted.owners),
                reason=request.reason,
                actor=actor,
            )

        return policy_to_pb(await _call(context, "set policy", run))

    async def ListPending(
        self, request: pb.ListPendingRequest, context: Context
    ) -> pb.ListPendingResponse:
        pending = await _call(
            context,
            "list pending approvals",
            self._governance.pending,
            request.model or None,
            request.environment or None,
        )
        return pb.ListPendingResponse(pending=[pending_to_pb(p) for p in pending])

    async def ApproveBaseline(
        self, request: pb.ApproveBaselineRequest, context: Context
    ) -> pb.Baseline:
        actor = actor_of(request.actor)
        record = await _call(
            context, "approve", self._manager.approve, request.id, request.reason, actor
        )
        return record_to_pb(record)

    async def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: Context
    ) -> pb.VerifyAuditResponse:
        result: VerifyResult = await _call(
            context,
            "verify audit",
            self._governance.verify,
            request.model or None,
            request.environment or None,
        )
        return verify_to_pb(result)

    async def ExportBaseline(
        self, request: pb.ExportBaselineRequest, context: Context
    ) -> pb.BaselineFile:
        transfer = _transfer()
        if transfer is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "export is not available yet")
        actor = actor_of("")
        answer: pb.BaselineFile = await _call(
            context, "export", transfer.handle_export, self._store, request, actor, self._clock
        )
        return answer

    async def ImportBaseline(
        self, request: pb.ImportBaselineRequest, context: Context
    ) -> pb.Baseline:
        transfer = _transfer()
        if transfer is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "import is not available yet")
        actor = actor_of(request.actor)
        answer: pb.Baseline = await _call(
            context, "import", transfer.handle_import, self._store, request, actor, self._clock
        )
        return answer

    async def DiffBaselines(
        self, request: pb.DiffBaselinesRequest, context: Context
    ) -> pb.DiffBaselinesResponse:
        transfer = _transfer()
        if transfer is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "diff is not available yet")
        guardrails = self._guardrails
        if guardrails is None:
            from sidecar.guardrails import Guardrails

            guardrails = self._guardrails = Guardrails.load(None)
        answer: pb.DiffBaselinesResponse = await _call(
            context, "diff", transfer.handle_diff, self._store, request, guardrails
        )
        return answer
