"""The ``baselined.v1.Outcomes`` servicer (``grpc.aio``): record outcomes, read quality.

``RecordOutcomes`` is a client stream of :class:`OutcomeBatch` messages; every
outcome is joined or counted (unknown, expired, duplicate, invalid, with
reasons) and the counts come back when the stream ends. A bad outcome never
fails the stream; a stream over ``MAX_STREAM_OUTCOMES`` is refused with
RESOURCE_EXHAUSTED after what came before it was recorded.

>>> # pb_grpc.add_OutcomesServicer_to_server(OutcomesService(outcomes, monitor), server)
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable

import grpc
from baselined.v1 import baselined_pb2 as pb

from sidecar.errors import InvalidInput
from sidecar.outcomes import Outcome, OutcomeCounts, Outcomes
from sidecar.quality_view import QualityMonitor, QualityReport
from sidecar.service import Context, _call, abort_with
from sidecar.stats.effects import Effect
from sidecar.stats.quality import CBPEEstimate, ReliabilityBin

__all__ = [
    "MAX_BATCH_OUTCOMES",
    "OutcomesService",
    "counts_to_pb",
    "outcome_from_pb",
    "quality_to_pb",
]

MAX_BATCH_OUTCOMES = 65536
"""Most outcomes in one ``OutcomeBatch``; a bigger batch is refused whole."""


def outcome_from_pb(record: pb.OutcomeRecord) -> Outcome:
    """An :class:`Outcome` of the wire form (label ``""`` when none was set: invalid)."""
    which = record.WhichOneof("label")
    label: int | float | str
    if which == "class_index":
        label = int(record.class_index)
    elif which == "value":
        label = float(record.value)
    elif which == "class_name":
        label = record.class_name
    else:
        label = ""
    return Outcome(
        model=record.model,
        request_id=record.request_id,
        label=label,
        time=record.time or None,
        weight=record.weight or None,
    )


def counts_to_pb(counts: OutcomeCounts) -> pb.RecordOutcomesResponse:
    return pb.RecordOutcomesResponse(
        joined=counts.joined,
        unknown=counts.unknown,
        expired=counts.expired,
        duplicate=counts.duplicate,
        invalid=counts.invalid,
        reasons=[pb.OutcomeReason(reason=r, count=n) for r, n in counts.reasons.most_common()],
    )


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _effect(effect: Effect) -> pb.Effect:
    return pb.Effect(
        name=effect.name,
        estimate=effect.estimate,
        lower=effect.lower,
        upper=effect.upper,
        unit=effect.unit,
    )


def _estimate(e: CBPEEstimate) -> pb.QualityEstimate:
    return pb.QualityEstimate(
        expected_error=e.expected_error,
        lower=e.lower,
        upper=e.upper,
        count=e.count,
        has_realized=e.realized_error is not None,
        realized_error=_num(e.realized_error),
        diverged=bool(e.diverged),
    )


def _bins(bins: Iterable[ReliabilityBin]) -> list[pb.QualityReliabilityBin]:
    return [
        pb.QualityReliabilityBin(
            lo=b.lo, hi=b.hi, count=b.count, mean_confidence=b.mean_confidence, accuracy=b.accuracy
        )
        for b in bins
    ]


def quality_to_pb(report: QualityReport) -> pb.QualityView:
    """The wire form of a quality report."""
    return pb.QualityView(
        model=report.model,
        environment=report.environment,
        baseline_id=report.baseline_id,
        window_start=report.window_start,
        window_end=report.window_end,
        slices=[
            pb.QualitySlice(
                slice=s.slice,
                count=s.count,
                error_rate=_num(s.error_rate),
                ece=s.ece,
                ece_adaptive=s.ece_adaptive,
                brier=_num(s.brier),
                log_loss=_num(s.log_loss),
                auc=_num(s.auc),
                baseline_count=s.baseline_count,
                baseline_error_rate=_num(s.baseline_error_rate),
                baseline_ece=s.baseline_ece,
                effects=[_effect(e) for e in s.effects.values()],
                cbpe=_estimate(s.cbpe),
                cbpe_check=_estimate(s.cbpe_check),
                reliability=_bins(s.reliability),
                reliability_adaptive=_bins(s.reliability_adaptive),
            )
            for s in report.slices
        ],
        fairness=[
            pb.FairnessGapView(
                attribute=f.attribute,
                metric=f.metric,
                best=f.live.best or "",
                worst=f.live.worst or "",
                estimate=f.live.estimate,
                lower=f.live.lower,
                upper=f.live.upper,
                baseline_estimate=f.baseline.estimate,
                baseline_lower=f.baseline.lower,
                baseline_upper=f.baseline.upper,
                shift=_effect(f.shift),
            )
            for f in report.fairness
        ],
    )


class OutcomesService:
    """``baselined.v1.Outcomes`` over :class:`~sidecar.outcomes.Outcomes` and
    :class:`~sidecar.quality_view.QualityMonitor`."""

    def __init__(self, outcomes: Outcomes, monitor: QualityMonitor) -> None:
        self._outcomes = outcomes
        self._monitor = monitor

    async def RecordOutcomes(
        self, request_iterator: AsyncIterator[pb.OutcomeBatch], context: Context
    ) -> pb.RecordOutcomesResponse:
        total = OutcomeCounts()
        async for batch in request_iterator:
            if len(batch.outcomes) > MAX_BATCH_OUTCOMES:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"an OutcomeBatch holds {len(batch.outcomes)} outcomes, over"
                    f" {MAX_BATCH_OUTCOMES}; the batches before it were recorded",
                )
            outcomes = [outcome_from_pb(r) for r in batch.outcomes]
            counts = await _call(context, "record outcomes", self._outcomes.record, outcomes)
            total.add(counts)
        return counts_to_pb(total)

    async def GetQuality(self, request: pb.GetQualityRequest, context: Context) -> pb.QualityView:
        if not request.model or not request.environment:
            await abort_with(
                context, InvalidInput("GetQuality needs a model and an environment"), "get quality"
            )
        await _call(context, "flush outcomes", self._outcomes.flush)
        report = await _call(
            context, "get quality", self._monitor.report, request.model, request.environment
        )
        return quality_to_pb(report)
