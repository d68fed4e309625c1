"""The gRPC servicers (``grpc.aio``) of ``baselined.v1``: ``Ingest``, ``Baselines`` and ``Alerts``.

This is the only place where sidecar errors become gRPC statuses: each
:class:`~sidecar.errors.BaselinedError` names its status in ``grpc_code``;
anything else is logged with its traceback and answered with INTERNAL.
Blocking store and window work runs in worker threads (``asyncio.to_thread``)
so the event loop keeps serving ingest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import grpc
import grpc.aio
from baselined.v1 import baselined_pb2 as pb
from google.protobuf.message import DecodeError

from sidecar.baselines import BaselineManager
from sidecar.convert import (
    alert_to_pb,
    audit_to_pb,
    baseline_view_to_pb,
    comparison_to_pb,
    record_to_pb,
    status_from_pb,
    window_view_to_pb,
)
from sidecar.errors import BaselinedError, FailedPrecondition, InvalidInput, TooLarge
from sidecar.windows import Windows

if TYPE_CHECKING:
    from sidecar.alerts import Alerter
    from sidecar.compare import Comparator, ComparisonResult

__all__ = [
    "MAX_REJECTIONS",
    "AlertsService",
    "BaselinesService",
    "IngestService",
    "abort_with",
    "add_ingest_service",
]

log = logging.getLogger(__name__)

MAX_REJECTIONS = 100
"""Rejections reported per ingest stream; later ones are only counted."""

_T = TypeVar("_T")
Context = grpc.aio.ServicerContext[Any, Any]


async def abort_with(context: Context, err: BaseException, what: str) -> NoReturn:
    """End the call with the status of ``err``: its ``grpc_code`` for sidecar
    errors, INTERNAL (traceback logged) for anything else."""
    if isinstance(err, BaselinedError):
        await context.abort(grpc.StatusCode[err.grpc_code], str(err))
    log.error("%s failed unexpectedly", what, exc_info=err)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"{what} failed: internal error ({type(err).__name__}); see the sidecar log",
    )


async def _call(context: Context, what: str, fn: Callable[..., _T], *args: Any) -> _T:
    try:
        return await asyncio.to_thread(fn, *args)
    except Exception as err:
        await abort_with(context, err, what)


def _batch_rows(batch: pb.SampleBatch) -> int:
    """Rows a batch claims (for counting a refused batch): its longest per-row array."""
    lengths = [len(batch.timestamps), len(batch.request_ids)]
    lengths += [len(c.values) for c in batch.numeric]
    lengths += [len(c.values) for c in batch.categorical]
    return max(lengths)


class Undecodable:
    """A request message that is not a valid ``SampleBatch`` on the wire (what
    :func:`decode_sample_batch` returns instead of raising, so that the servicer
    can refuse it with INVALID_ARGUMENT instead of gRPC's UNKNOWN)."""

    __slots__ = ("error", "size")

    def __init__(self, error: str, size: int) -> None:
        self.error = error
        self.size = size

    def invalid(self) -> InvalidInput:
        return InvalidInput(
            f"batch is not a valid SampleBatch message ({self.size} bytes): {self.error}"
        )


def decode_sample_batch(raw: bytes) -> pb.SampleBatch | Undecodable:
    """The request deserializer of ``Ingest``: a batch, or :class:`Undecodable`."""
    try:
        return pb.SampleBatch.FromString(raw)
    except DecodeError as err:
        return Undecodable(str(err) or "corrupt wire format", len(raw))


def add_ingest_service(servicer: IngestService, server: grpc.aio.Server) -> None:
    """Register ``baselined.v1.Ingest`` like the generated ``add_IngestServicer_to_server``,
    with :func:`decode_sample_batch` as the request deserializer."""
    handlers = {
        "Ingest": grpc.stream_unary_rpc_method_handler(
            servicer.Ingest,
            request_deserializer=decode_sample_batch,
            response_serializer=pb.IngestResponse.SerializeToString,
        ),
        "IngestBatch": grpc.unary_unary_rpc_method_handler(
            servicer.IngestBatch,
            request_deserializer=decode_sample_batch,
            response_serializer=pb.IngestResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("baselined.v1.Ingest", handlers),)
    )


class IngestService:
    """``baselined.v1.Ingest``: columnar sample batches into the live windows.
    A message that does not parse is refused like any invalid batch."""

    def __init__(self, windows: Windows, *, max_rejections: int = MAX_REJECTIONS) -> None:
        self._windows = windows
        self._max_rejections = max_rejections

    async def Ingest(
        self, request_iterator: AsyncIterator[pb.SampleBatch | Undecodable], context: Context
    ) -> pb.IngestResponse:
        """A stream of batches; a bad batch is refused on its own and reported."""
        response = pb.IngestResponse()
        index = 0
        async for batch in request_iterator:
            try:
                if isinstance(batch, Undecodable):
                    raise batch.invalid()
                rows = self._windows.ingest(batch)
            except (InvalidInput, TooLarge) as err:
                refused = 0 if isinstance(batch, Undecodable) else _batch_rows(batch)
                response.batches_rejected += 1
                response.records_rejected += refused
                if len(response.rejections) < self._max_rejections:
                    response.rejections.append(
                        pb.BatchRejection(
                            batch_index=index,
                            code=grpc.StatusCode[err.grpc_code].value[0],
                            message=str(err),
                            records=refused,
                        )
                    )
                log.debug("ingest stream batch %d refused: %s", index, err)
            except Exception as err:
                await abort_with(context, err, f"ingest of batch {index}")
            else:
                response.batches_accepted += 1
                response.records_accepted += rows
            index += 1
        return response

    async def IngestBatch(
        self, request: pb.SampleBatch | Undecodable, context: Context
    ) -> pb.IngestResponse:
        """One batch; a bad batch fails the call with the status naming the problem."""
        try:
            if isinstance(request, Undecodable):
                raise request.invalid()
            rows = self._windows.ingest(request)
        except Exception as err:
            await abort_with(context, err, "ingest")
        return pb.IngestResponse(batches_accepted=1, records_accepted=rows)


class BaselinesService:
    """``baselined.v1.Baselines``: query and govern windows and baselines."""

    def __init__(self, manager: BaselineManager) -> None:
        self._manager = manager

    async def FreezeBaseline(
        self, request: pb.FreezeBaselineRequest, context: Context
    ) -> pb.Baseline:
        record = await _call(
            context,
            "freeze",
            self._manager.freeze,
            request.model,
            request.environment,
            request.name,
            request.reason,
            request.actor,
            request.start,
            request.end,
            tuple(request.versions),
            dict(request.labels),
        )
        return record_to_pb(record)

    async def GetBaseline(
        self, request: pb.GetBaselineRequest, context: Context
    ) -> pb.BaselineView:
        view = await _call(
            context,
            "get baseline",
            self._manager.view,
            request.id,
            tuple(request.quantiles),
            request.top_k,
        )
        return baseline_view_to_pb(view)

    async def ListBaselines(
        self, request: pb.ListBaselinesRequest, context: Context
    ) -> pb.ListBaselinesResponse:
        try:
            status = status_from_pb(request.status)
        except BaselinedError as err:
            await abort_with(context, err, "list baselines")
        records = await _call(
            context,
            "list baselines",
            self._manager.list,
            request.model or None,
            request.environment or None,
            status,
        )
        return pb.ListBaselinesResponse(baselines=[record_to_pb(r) for r in records])

    async def PromoteBaseline(
        self, request: pb.PromoteBaselineRequest, context: Context
    ) -> pb.Baseline:
        record = await _call(
            context, "promote", self._manager.promote, request.id, request.reason, request.actor
        )
        return record_to_pb(record)

    async def RollbackBaseline(
        self, request: pb.RollbackBaselineRequest, context: Context
    ) -> pb.Baseline:
        record = await _call(
            context,
            "roll back",
            self._manager.rollback,
            request.model,
            request.environment,
            request.reason,
            request.actor,
        )
        return record_to_pb(record)

    async def RetireBaseline(
        self, request: pb.RetireBaselineRequest, context: Context
    ) -> pb.Baseline:
        record = await _call(
            context, "retire", self._manager.retire, request.id, request.reason, request.actor
        )
        return record_to_pb(record)

    async def GetActiveBaseline(
        self, request: pb.GetActiveBaselineRequest, context: Context
    ) -> pb.Baseline:
        record = await _call(
            context, "get active baseline", self._manager.active, request.model, request.environment
        )
        return record_to_pb(record)

    async def GetWindow(self, request: pb.GetWindowRequest, context: Context) -> pb.WindowView:
        view = await _call(
            context,
            "get window",
            self._manager.window_view,
            request.model,
            request.environment,
            request.start,
            request.end,
            tuple(request.versions),
            tuple(request.quantiles),
            request.top_k,
        )
        return window_view_to_pb(view)

    async def ListAudit(
        self, request: pb.ListAuditRequest, context: Context
    ) -> pb.ListAuditResponse:
        entries = await _call(
            context,
            "list audit",
            self._manager.audit,
            request.model or None,
            request.environment or None,
            request.limit,
        )
        return pb.ListAuditResponse(entries=[audit_to_pb(e) for e in entries])


class AlertsService:
    """``baselined.v1.Alerts``: list and watch alerts, run a comparison on demand.

    ``flush`` (the windows' flush) runs before an on-demand comparison so it
    sees this sidecar's latest data. ``Compare`` only reports: it does not
    count as a check of the alert lifecycle.
    """

    def __init__(
        self,
        alerter: Alerter,
        comparator: Comparator,
        *,
        flush: Callable[[], object] | None = None,
        watch_queue: int = 1000,
    ) -> None:
        self._alerter = alerter
        self._comparator = comparator
        self._flush = flush
        self._watch_queue = watch_queue

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: Context
    ) -> pb.ListAlertsResponse:
        alerts = self._alerter.alerts(
            request.model or None, request.environment or None, request.include_resolved
        )
        return pb.ListAlertsResponse(alerts=[alert_to_pb(a) for a in alerts])

    async def WatchAlerts(
        self, request: pb.WatchAlertsRequest, context: Context
    ) -> AsyncIterator[pb.Alert]:
        """Every alert change from now on (after, with ``include_firing``, every
        alert firing now), until the client cancels or the sidecar stops."""
        with self._alerter.subscribe(
            request.model or None,
            request.environment or None,
            maxsize=self._watch_queue,
            include_firing=request.include_firing,
        ) as feed:
            async for alert in feed:
                yield alert_to_pb(alert)

    def _compare(self, model: str, environment: str) -> ComparisonResult:
        if not model or not environment:
            raise InvalidInput("compare needs a model and an environment")
        if self._flush is not None:
            self._flush()
        result = self._comparator.compare(model, environment, full=True)  # every effect, on demand
        if result is None:
            raise FailedPrecondition(
                f"{model}/{environment} has no active baseline to compare with;"
                " freeze one and promote it first"
            )
        return result

    async def Compare(self, request: pb.CompareRequest, context: Context) -> pb.CompareResponse:
        result = await _call(context, "compare", self._compare, request.model, request.environment)
        return comparison_to_pb(result)
