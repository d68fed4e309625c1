"""The ``baselined.v1.Impact`` servicer (``grpc.aio``): read impact reports.

>>> # pb_grpc.add_ImpactServicer_to_server(ImpactService(store), server)
"""

from __future__ import annotations

import math

from baselined.v1 import baselined_pb2 as pb

from sidecar.errors import InvalidInput
from sidecar.events_service import event_to_pb
from sidecar.records import ImpactEffect, ImpactRecord, Kind
from sidecar.service import Context, _call, abort_with
from sidecar.stores.base import Store

__all__ = ["DEFAULT_LIMIT", "VERDICTS", "ImpactService", "impact_to_pb", "verdict_name"]

DEFAULT_LIMIT = 100
"""Reports ``ListImpactReports`` returns when no limit is given."""

VERDICTS: dict[str, int] = {
    "pending": pb.IMPACT_VERDICT_PENDING,
    "no_change": pb.IMPACT_VERDICT_NO_CHANGE,
    "regression": pb.IMPACT_VERDICT_REGRESSION,
    "inconclusive": pb.IMPACT_VERDICT_INCONCLUSIVE,
}
"""Stored verdict name -> ``ImpactVerdict`` number."""

_SEVERITY = {
    "minor": pb.SEVERITY_MINOR,
    "moderate": pb.SEVERITY_MODERATE,
    "severe": pb.SEVERITY_SEVERE,
}


def verdict_name(number: int) -> str:
    """The stored name of an ``ImpactVerdict`` number; InvalidInput for unknown or 0."""
    for name, value in VERDICTS.items():
        if value == number:
            return name
    raise InvalidInput(f"unknown impact verdict number {number}; use 1 to {len(VERDICTS)}")


def _effect_to_pb(effect: ImpactEffect) -> pb.ImpactEffect:
    return pb.ImpactEffect(
        signal=effect.signal,
        kind=Kind(effect.kind).to_proto(),  # type: ignore[arg-type]
        slice=effect.slice,
        effect=effect.effect,
        estimate=effect.estimate,
        lower=effect.lower,
        upper=effect.upper,
        unit=effect.unit,
        direction=effect.direction,
        guardrail=effect.guardrail,
        margin=effect.margin,
        severity=_SEVERITY.get(effect.tier, pb.SEVERITY_UNSPECIFIED),
        within=effect.within,
        samples_before=effect.samples_before,
        samples_after=effect.samples_after,
    )


def impact_to_pb(record: ImpactRecord) -> pb.ImpactReport:
    """The wire form of a stored report."""
    return pb.ImpactReport(
        id=record.id,
        model=record.model,
        environment=record.environment,
        event=event_to_pb(record.event),
        verdict=VERDICTS[record.verdict],  # type: ignore[arg-type]
        effects=[_effect_to_pb(e) for e in record.effects],
        scope=dict(record.scope),
        scope_note=record.scope_note,
        samples_before=record.samples_before,
        samples_after=record.samples_after,
        samples_needed=record.samples_needed,
        before_start=record.before_start,
        before_end=record.before_end,
        after_start=record.after_start,
        after_end=record.after_end,
        alpha_per_test=record.alpha_per_test,
        margin=record.margin,
        summary=record.summary,
        created_at=record.created_at,
        updated_at=record.updated_at,
        decided_at=record.decided_at,
        alert_fingerprint=record.alert_fingerprint,
    )


class ImpactService:
    """``baselined.v1.Impact`` over a :class:`~sidecar.stores.base.Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def GetImpactReport(
        self, request: pb.GetImpactReportRequest, context: Context
    ) -> pb.ImpactReport:
        if not request.id:
            await abort_with(
                context, InvalidInput("give the id of an impact report (im-...)"), "get impact"
            )
        record = await _call(
            context, "get impact report", self._store.get_impact_report, request.id
        )
        return impact_to_pb(record)

    async def ListImpactReports(
        self, request: pb.ListImpactReportsRequest, context: Context
    ) -> pb.ListImpactReportsResponse:
        try:
            verdicts = [verdict_name(v) for v in request.verdicts]
            start, end = request.start, request.end
            if start < 0 or end < 0 or not (math.isfinite(start) and math.isfinite(end)):
                raise InvalidInput(f"start and end must be unix seconds, got {start} and {end}")
            if end and start >= end:
                raise InvalidInput(f"start {start} must be before end {end}")
        except Exception as err:
            await abort_with(context, err, "list impact reports")

        def run() -> list[ImpactRecord]:
            return self._store.list_impact_reports(
                request.model or None,
                request.environment or None,
                start,
                end or math.inf,
                request.limit or DEFAULT_LIMIT,
                verdicts=verdicts,
            )

        records = await _call(context, "list impact reports", run)
        return pb.ListImpactReportsResponse(reports=[impact_to_pb(r) for r in records])
