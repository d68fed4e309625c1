"""Conversions between the sidecar's records and the ``baselined.v1`` messages.

Only the servicers use these; everything below them speaks in
``sidecar.records`` values.

>>> from sidecar.records import Status
>>> status_to_pb(Status.ACTIVE) == pb.BASELINE_STATUS_ACTIVE
True
>>> status_from_pb(pb.BASELINE_STATUS_UNSPECIFIED) is None
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from baselined.v1 import baselined_pb2 as pb

from sidecar.baselines import BaselineView, WindowView
from sidecar.errors import InvalidInput
from sidecar.records import (
    AuditEntry,
    BaselineRecord,
    PendingApproval,
    Policy,
    SeriesId,
    Status,
    Summary,
)

if TYPE_CHECKING:  # the comparison modules are heavy; only the servicers need them at run time
    from sidecar.alerts import Alert
    from sidecar.audit import VerifyResult
    from sidecar.compare import ComparisonResult, SeriesFinding
    from sidecar.correlation import Correlation
    from sidecar.guardrails import Tier
    from sidecar.stats.effects import Effect

__all__ = [
    "alert_to_pb",
    "audit_to_pb",
    "baseline_view_to_pb",
    "comparison_to_pb",
    "effect_to_pb",
    "finding_to_pb",
    "pending_to_pb",
    "policy_to_pb",
    "record_to_pb",
    "series_to_pb",
    "severity_to_pb",
    "status_from_pb",
    "status_to_pb",
    "verify_to_pb",
    "window_view_to_pb",
]

_STATUS_TO_PB = {
    Status.CANDIDATE: pb.BASELINE_STATUS_CANDIDATE,
    Status.ACTIVE: pb.BASELINE_STATUS_ACTIVE,
    Status.RETIRED: pb.BASELINE_STATUS_RETIRED,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}


def status_to_pb(status: Status) -> pb.BaselineStatus:
    """The ``BaselineStatus`` number of a status."""
    return _STATUS_TO_PB[status]


def status_from_pb(value: int) -> Status | None:
    """The status of a ``BaselineStatus`` number; None for UNSPECIFIED (any status).

    Raises InvalidInput for numbers this version does not know.
    """
    if value == pb.BASELINE_STATUS_UNSPECIFIED:
        return None
    try:
        return _STATUS_FROM_PB[cast(pb.BaselineStatus, value)]
    except KeyError:
        raise InvalidInput(f"unknown baseline status {value}") from None


def record_to_pb(record: BaselineRecord) -> pb.Baseline:
    """A ``Baseline`` message of a record (identity and provenance, no series)."""
    return pb.Baseline(
        id=record.id,
        model=record.model,
        environment=record.environment,
        name=record.name,
        reason=record.reason,
        created_by=record.created_by,
        created_at=record.created_at,
        window_start=record.window_start,
        window_end=record.window_end,
        status=status_to_pb(record.status),
        versions=list(record.versions),
        parent_id=record.parent_id,
        fingerprint=pb.Fingerprint(hash=record.fingerprint_hash, fields=dict(record.fingerprint)),
        series_count=record.series_count,
        record_count=record.record_count,
        labels=dict(record.labels),
    )


def series_to_pb(sid: SeriesId, summary: Summary) -> pb.SeriesSummary:
    """A ``SeriesSummary`` of one series (NaN min/max/mean when it holds no values)."""
    return pb.SeriesSummary(
        version=sid.version,
        slice=sid.slice,
        signal=sid.signal,
        kind=cast(pb.SignalKind, sid.kind.to_proto()),
        categorical=summary.categorical,
        count=summary.count,
        missing=summary.missing,
        out_of_range=summary.out_of_range,
        missing_rate=summary.missing_rate,
        min=summary.min,
        max=summary.max,
        mean=summary.mean,
        quantiles=[pb.QuantileValue(q=q, value=v) for q, v in summary.quantiles],
        top_values=[pb.CategoryCount(value=v, count=c) for v, c in summary.top_values],
        other_count=summary.other_count,
        distinct=summary.distinct,
    )


def _series(items: Iterable[tuple[SeriesId, Summary]]) -> list[pb.SeriesSummary]:
    return [series_to_pb(sid, summary) for sid, summary in items]


def baseline_view_to_pb(view: BaselineView) -> pb.BaselineView:
    """A ``BaselineView`` message: the record and its series summaries."""
    return pb.BaselineView(baseline=record_to_pb(view.record), series=_series(view.series))


def window_view_to_pb(view: WindowView) -> pb.WindowView:
    """A ``WindowView`` message of a live window."""
    return pb.WindowView(
        model=view.model,
        environment=view.environment,
        start=view.start,
        end=view.end,
        versions=list(view.versions),
        instances=list(view.writers),
        series=_series(view.series),
    )


def audit_to_pb(entry: AuditEntry) -> pb.AuditEntry:
    """An ``AuditEntry`` message; ``before`` and ``after`` become compact JSON."""
    return pb.AuditEntry(
        seq=entry.seq,
        time=entry.time,
        actor=entry.actor,
        action=entry.action,
        model=entry.model,
        environment=entry.environment,
        target=entry.target,
        reason=entry.reason,
        before=json.dumps(dict(entry.before), sort_keys=True, separators=(",", ":")),
        after=json.dumps(dict(entry.after), sort_keys=True, separators=(",", ":")),
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def policy_to_pb(policy: Policy) -> pb.Policy:
    """A ``Policy`` message."""
    return pb.Policy(
        model=policy.model,
        environment=policy.environment,
        four_eyes=policy.four_eyes,
        owners=list(policy.owners),
    )


def pending_to_pb(pending: PendingApproval) -> pb.PendingApproval:
    """A ``PendingApproval`` message."""
    return pb.PendingApproval(
        baseline_id=pending.baseline_id,
        model=pending.model,
        environment=pending.environment,
        requested_by=pending.requested_by,
        requested_at=pending.requested_at,
        reason=pending.reason,
    )


def verify_to_pb(result: VerifyResult) -> pb.VerifyAuditResponse:
    """A ``VerifyAuditResponse`` of an audit verification."""
    return pb.VerifyAuditResponse(
        ok=result.ok,
        checked=result.checked,
        problem=result.problem,
        bad_seq=result.bad_seq,
        bad_model=result.bad_model,
    )


def severity_to_pb(tier: Tier | None) -> pb.Severity:
    """The ``Severity`` number of a tier (UNSPECIFIED for none)."""
    return cast(pb.Severity, int(tier) if tier is not None else pb.SEVERITY_UNSPECIFIED)


def effect_to_pb(effect: Effect, tier: Tier | None = None, guardrail: float = 0.0) -> pb.Effect:
    """An ``Effect`` message; ``tier`` and ``guardrail`` say what it cleared, if anything."""
    return pb.Effect(
        name=effect.name,
        estimate=effect.estimate,
        lower=effect.lower,
        upper=effect.upper,
        guardrail=guardrail,
        unit=effect.unit,
        severity=severity_to_pb(tier),
    )


def finding_to_pb(finding: SeriesFinding) -> pb.SeriesFinding:
    """A ``SeriesFinding`` message: every effect, each with the highest tier it cleared."""
    cleared: dict[str, tuple[Tier, float]] = {}
    for name, tier, guardrail in finding.fired:
        if name not in cleared or tier > cleared[name][0]:
            cleared[name] = (tier, guardrail)
    effects = []
    for name, effect in finding.effects.items():
        if name in cleared:
            effects.append(effect_to_pb(effect, *cleared[name]))
        else:
            effects.append(effect_to_pb(effect))
    sid = finding.series
    return pb.SeriesFinding(
        version=sid.version,
        slice=sid.slice,
        signal=sid.signal,
        kind=cast(pb.SignalKind, sid.kind.to_proto()),
        effects=effects,
        severity=severity_to_pb(finding.tier),
        baseline_count=finding.baseline_count,
        live_count=finding.live_count,
        phase=finding.phase,
    )


def alert_to_pb(alert: Alert) -> pb.Alert:
    """An ``Alert`` message (``resolved_at`` 0 while firing)."""
    return pb.Alert(
        fingerprint=alert.fingerprint,
        model=alert.model,
        environment=alert.environment,
        severity=severity_to_pb(alert.tier),
        state=pb.ALERT_STATE_FIRING if alert.state == "firing" else pb.ALERT_STATE_RESOLVED,
        started_at=alert.started_at,
        updated_at=alert.updated_at,
        resolved_at=alert.resolved_at or 0.0,
        baseline_id=alert.baseline_id,
        window_start=alert.window_start,
        window_end=alert.window_end,
        series=[finding_to_pb(f) for f in alert.findings],
        summary=alert.summary,
        playbook_url=alert.playbook_url,
        labels=dict(alert.labels),
        **(_correlation_to_pb(alert.correlation) if alert.correlation is not None else {}),
    )


def _correlation_to_pb(correlation: Correlation) -> dict[str, Any]:
    """The correlation fields of an ``Alert`` message (issue 4)."""
    cp = correlation.change_point
    return {
        "change_point": None
        if cp is None
        else pb.AlertChangePoint(
            time=cp.time,
            start=cp.start,
            end=cp.end,
            estimated=cp.estimated,
            statistic=cp.statistic,
            score=cp.score,
            before_count=cp.before_count,
            after_count=cp.after_count,
            signal=cp.signal,
            slice=cp.slice,
        ),
        "suspects": [
            pb.Suspect(
                event_id=s.event_id,
                type=s.type,
                time=s.time,
                model=s.model,
                environment=s.environment,
                version=s.version,
                node=s.node,
                image=s.image,
                attributes=dict(s.attributes),
                source=s.source,
                score=s.score,
                components=dict(s.components),
                reasons=list(s.reasons),
            )
            for s in correlation.suspects
        ],
        "fingerprint_diff": [
            pb.FingerprintDifference(
                field=d.field,
                from_value=d.before,
                to_value=d.after,
                time=d.time,
                share=-1.0 if d.share is None else d.share,
                node=d.node,
                event_id=d.event_id,
                nodes=list(d.nodes),
                nodes_total=d.nodes_total,
            )
            for d in correlation.fingerprint_diff
        ],
        "attribution": [
            pb.SliceAttribution(
                attribute=v.attribute,
                value=v.value,
                verdict=v.verdict,
                effect=v.effect,
                estimate=v.estimate,
                lower=v.lower,
                upper=v.upper,
                unit=v.unit,
                guardrail=v.guardrail,
                tier=v.tier,
                live_count=v.live_count,
            )
            for v in correlation.attribution
        ],
        "attribution_summary": correlation.attribution_summary,
        "correlation_error": correlation.error,
        "attribution_since": correlation.attribution_since,
    }


def comparison_to_pb(result: ComparisonResult) -> pb.CompareResponse:
    """A ``CompareResponse`` of one comparison run."""
    return pb.CompareResponse(
        model=result.model,
        environment=result.environment,
        baseline_id=result.baseline_id,
        window_start=result.window_start,
        window_end=result.window_end,
        alpha_per_test=result.alpha_per_test,
        duration_seconds=result.duration_seconds,
        findings=[finding_to_pb(f) for f in result.findings],
    )
