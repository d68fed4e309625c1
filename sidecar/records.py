"""Values that cross module boundaries in the sidecar: series ids, baseline
records, pointer state, audit entries and series summaries.

All are frozen dataclasses; stores persist them as JSON (``to_json`` /
``from_json``) next to the opaque series state bytes of ``sidecar.series``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "ALL_TRAFFIC",
    "AuditDraft",
    "AuditEntry",
    "BaselineRecord",
    "EventRecord",
    "ImpactEffect",
    "ImpactRecord",
    "Kind",
    "Partial",
    "PendingApproval",
    "PointerState",
    "Policy",
    "SeriesId",
    "Status",
    "Summary",
]

ALL_TRAFFIC = "*"
"""The slice of all traffic; other slices are ``attribute=value``."""

_SEP = "\x1f"  # ASCII unit separator; ingest refuses names holding control characters


class Kind(StrEnum):
    """What a signal measures (mirrors ``baselined.v1.SignalKind``)."""

    FEATURE = "feature"
    OUTPUT = "output"
    LATENCY = "latency"
    RESOURCE = "resource"
    ERROR = "error"
    QUALITY = "quality"  # label-based: derived by the sidecar from joined outcomes

    @classmethod
    def from_proto(cls, value: int) -> Kind:
        """Map a ``SignalKind`` enum number; raise ValueError for unknown numbers."""
        try:
            return _KIND_BY_NUMBER[value]
        except KeyError:
            raise ValueError(f"unknown signal kind {value}") from None

    def to_proto(self) -> int:
        return _NUMBER_BY_KIND[self]


_KIND_BY_NUMBER = {
    1: Kind.FEATURE,
    2: Kind.OUTPUT,
    3: Kind.LATENCY,
    4: Kind.RESOURCE,
    5: Kind.ERROR,
    6: Kind.QUALITY,
}
_NUMBER_BY_KIND = {v: k for k, v in _KIND_BY_NUMBER.items()}


@dataclass(frozen=True, order=True)
class SeriesId:
    """One series of a (model, environment): version, slice, signal kind and name.

    >>> sid = SeriesId("v2", "*", Kind.LATENCY, "latency_seconds")
    >>> SeriesId.parse(sid.encode()) == sid
    True
    """

    version: str
    slice: str
    kind: Kind
    signal: str

    def encode(self) -> str:
        return _SEP.join((self.version, self.slice, self.kind.value, self.signal))

    @classmethod
    def parse(cls, text: str) -> SeriesId:
        parts = text.split(_SEP)
        if len(parts) != 4:
            raise ValueError(f"not a series id: {text!r}")
        return cls(parts[0], parts[1], Kind(parts[2]), parts[3])


class Status(StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class BaselineRecord:
    """A baseline's identity and provenance. Immutable once written, except
    ``status``, which stores keep separately and fill in on read."""

    id: str
    model: str
    environment: str
    name: str
    reason: str
    created_by: str
    created_at: float
    window_start: float
    window_end: float
    versions: tuple[str, ...] = ()
    parent_id: str = ""
    fingerprint: Mapping[str, str] = field(default_factory=dict)
    fingerprint_hash: str = ""
    series_count: int = 0
    record_count: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    status: Status = Status.CANDIDATE

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["versions"] = list(self.versions)
        data["fingerprint"] = dict(self.fingerprint)
        data["labels"] = dict(self.labels)
        data["status"] = self.status.value
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> BaselineRecord:
        data: dict[str, Any] = json.loads(text)
        data["versions"] = tuple(data.get("versions", ()))
        data["status"] = Status(data.get("status", Status.CANDIDATE.value))
        return cls(**data)


@dataclass(frozen=True)
class PointerState:
    """The active pointer of one (model, environment).

    ``history`` holds previously active baseline ids, most recent last; a roll
    back makes its last element active again. ``revision`` grows by one with
    every change and is what compare-and-set compares.
    """

    active: str | None = None
    history: tuple[str, ...] = ()
    revision: int = 0


@dataclass(frozen=True)
class AuditDraft:
    """An audit entry before the store numbers it."""

    time: float
    actor: str
    action: str
    model: str
    environment: str
    target: str
    reason: str
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """A stored audit entry; ``seq`` increases in the order entries were appended.

    ``prev_hash`` is the ``hash`` of the previous entry of the same chain (one
    chain per SQLite store, one per model on Redis; "" for the first entry),
    ``hash`` the sha256 (hex) of this entry's canonical content
    (:meth:`content_hash`), ``prev_hash`` and ``seq`` included. Entries written
    before hash chaining existed have both empty.
    """

    seq: int
    time: float
    actor: str
    action: str
    model: str
    environment: str
    target: str
    reason: str
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""

    @classmethod
    def from_draft(cls, seq: int, draft: AuditDraft, prev_hash: str | None = None) -> AuditEntry:
        """The entry numbered ``seq``; with ``prev_hash`` (chained), also sealed with its hash."""
        entry = cls(seq=seq, **{k: getattr(draft, k) for k in AuditDraft.__dataclass_fields__})
        if prev_hash is None:
            return entry
        entry = dataclasses.replace(entry, prev_hash=prev_hash)
        return dataclasses.replace(entry, hash=entry.content_hash())

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of every field but ``hash``.

        >>> e = AuditEntry(1, 0.0, "alice", "freeze", "m", "e", "b-1", "why")
        >>> e.content_hash() == AuditEntry.from_json(e.to_json()).content_hash()
        True
        """
        data = self._data()
        del data["hash"]
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _data(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["before"] = dict(self.before)
        data["after"] = dict(self.after)
        data["time"] = float(self.time)
        return data

    def to_json(self) -> str:
        return json.dumps(self._data(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditEntry:
        data: dict[str, Any] = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Policy:
    """Governance of one (model, environment): four-eyes promotion and owners.

    With ``four_eyes`` a promotion becomes active only after an admin other than
    the one who froze (and the one who asked to promote) approves it.
    ``owners`` are principals or teams, shown in alerts.
    """

    model: str
    environment: str
    four_eyes: bool = False
    owners: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["owners"] = list(self.owners)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Policy:
        data: dict[str, Any] = json.loads(text)
        data["owners"] = tuple(data.get("owners", ()))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class PendingApproval:
    """A promotion waiting for a second admin (four-eyes)."""

    baseline_id: str
    model: str
    environment: str
    requested_by: str
    requested_at: float
    reason: str = ""

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> PendingApproval:
        data: dict[str, Any] = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Partial:
    """One writer's state of one time bucket: encoded series state by series id."""

    bucket: int  # bucket start, unix seconds
    writer: str
    series: Mapping[str, bytes]


@dataclass(frozen=True)
class Summary:
    """What a query reports of one series (numeric or categorical)."""

    categorical: bool
    count: int
    missing: int = 0
    out_of_range: int = 0
    min: float = math.nan
    max: float = math.nan
    mean: float = math.nan
    quantiles: tuple[tuple[float, float], ...] = ()
    top_values: tuple[tuple[str, int], ...] = ()
    other_count: int = 0
    distinct: int = 0

    @property
    def total(self) -> int:
        return self.count + self.missing + self.out_of_range

    @property
    def missing_rate(self) -> float:
        return self.missing / self.total if self.total else 0.0


@dataclass(frozen=True)
class EventRecord:
    """A change event (deploy, library update, ...): what changed, when, where.

    ``type`` is an ``sidecar.events.EventType`` value (``deploy``, ...);
    ``custom_type`` names a ``custom`` one. ``time`` is when the change
    happened, ``recorded_at`` when the sidecar stored it (unix seconds). The
    scope fields (``environment``, ``version``, ``node``, ``image``) are ""
    when the event applies to all of them. ``id`` is empty until a store
    assigns one.
    """

    type: str
    time: float
    model: str
    environment: str = ""
    version: str = ""
    node: str = ""
    image: str = ""
    custom_type: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    recorded_by: str = ""
    source: str = ""
    recorded_at: float = 0.0
    id: str = ""

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["attributes"] = dict(self.attributes)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> EventRecord:
        data: dict[str, Any] = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# -- impact reports (issue 4) ------------------------------------------------------


def _num(value: float) -> float | None:
    """A float for JSON: non-finite values are stored as null."""
    return float(value) if math.isfinite(value) else None


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class ImpactEffect:
    """One tested effect of an impact report: the effect of the event's "after"
    traffic against its "before" traffic on one series, with its anytime-valid
    interval, the series' minor guardrail and the no-change ``margin`` the
    interval had to stay inside (in the monitored ``direction``)."""

    signal: str
    kind: str
    slice: str
    effect: str
    estimate: float
    lower: float
    upper: float
    unit: str
    direction: str
    guardrail: float
    margin: float
    tier: str = ""  # minor, moderate, severe: the tier the interval clears; "" none
    within: bool = False  # the interval lies inside the no-change margin
    samples_before: int = 0
    samples_after: int = 0

    def to_dict(self, *, strict: bool = True) -> dict[str, Any]:
        """The fields; ``strict`` (standard JSON) writes non-finite numbers as null."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if strict:
            for k in ("estimate", "lower", "upper", "guardrail", "margin"):
                data[k] = _num(data[k])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImpactEffect:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for k in ("estimate", "lower", "upper", "guardrail", "margin"):
            known[k] = _float(known.get(k))
        return cls(**known)


IMPACT_VERDICTS = ("pending", "no_change", "regression", "inconclusive")
"""Verdicts of an impact report; ``pending`` is the only one not final."""


@dataclass(frozen=True)
class ImpactRecord:
    """An impact report: the before/after comparison one change event started
    for one (model, environment) of its scope. See ``docs/events.md``.

    ``verdict`` is ``pending`` (still collecting), ``no_change`` (every tested
    effect's interval lies inside its no-change margin), ``regression`` (some
    effect clears its minor guardrail) or ``inconclusive`` (the maximum wait
    ran out first; ``samples_needed`` estimates how many more "after" samples
    a verdict would have needed). ``scope`` says what was compared
    (``slice``, ``version``); ``scope_note`` why a scope field was not used.
    """

    id: str
    model: str
    environment: str
    event: EventRecord
    verdict: str
    effects: tuple[ImpactEffect, ...] = ()
    scope: Mapping[str, str] = field(default_factory=dict)
    scope_note: str = ""
    samples_before: int = 0
    samples_after: int = 0
    samples_needed: int = 0
    before_start: float = 0.0
    before_end: float = 0.0
    after_start: float = 0.0
    after_end: float = 0.0
    alpha_per_test: float = 0.0
    margin: float = 0.0
    summary: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    decided_at: float = 0.0
    alert_fingerprint: str = ""

    @property
    def final(self) -> bool:
        """True once the verdict can no longer change."""
        return self.verdict != "pending"

    @property
    def event_time(self) -> float:
        return self.event.time

    def to_dict(self, *, strict: bool = True) -> dict[str, Any]:
        """The fields; ``strict`` (standard JSON) writes non-finite numbers as null."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["event"] = json.loads(self.event.to_json())
        data["effects"] = [e.to_dict(strict=strict) for e in self.effects]
        data["scope"] = dict(self.scope)
        if strict:
            data["alpha_per_test"] = _num(self.alpha_per_test)
        return data

    def to_json(self) -> str:
        """The stored form: infinite bounds stay infinite (Python's JSON extension)."""
        return json.dumps(self.to_dict(strict=False), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ImpactRecord:
        data: dict[str, Any] = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        event = data["event"]
        known["event"] = EventRecord(
            **{k: v for k, v in event.items() if k in EventRecord.__dataclass_fields__}
        )
        known["effects"] = tuple(ImpactEffect.from_dict(e) for e in data.get("effects", ()))
        known["alpha_per_test"] = _float(known.get("alpha_per_test"))
        return cls(**known)
