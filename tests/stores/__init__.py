"""Store tests: the shared contract (every backend) and backend-specific tests.

Helpers shared by the store test modules live here.
"""

from __future__ import annotations

from sidecar.records import AuditDraft, BaselineRecord

__all__ = ["FakeClock", "draft", "rec"]


class FakeClock:
    """Unix seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def rec(
    baseline_id: str,
    name: str,
    *,
    model: str = "fraud",
    environment: str = "prod",
    created_at: float = 100.0,
) -> BaselineRecord:
    return BaselineRecord(
        id=baseline_id,
        model=model,
        environment=environment,
        name=name,
        reason="weekly freeze",
        created_by="alice",
        created_at=created_at,
        window_start=0.0,
        window_end=3600.0,
        versions=("v1", "v2"),
        fingerprint={"numpy": "2.1.0"},
        fingerprint_hash="abc123",
        series_count=2,
        record_count=50_000,
        labels={"team": "risk"},
    )


def draft(
    action: str,
    target: str,
    *,
    model: str = "fraud",
    environment: str = "prod",
    at: float = 100.0,
) -> AuditDraft:
    return AuditDraft(
        time=at,
        actor="alice",
        action=action,
        model=model,
        environment=environment,
        target=target,
        reason=f"{action} {target}",
        before={"active": None},
        after={"active": target, "n": 1},
    )
