"""Baselines across environments: export to a self-describing file, import, diff.

An exported baseline is one JSON document (UTF-8), ``format_version`` 1::

    {
      "format": "baselined.baseline",
      "format_version": 1,
      "exported_at": 1700000000.0,          # unix seconds
      "exported_by": "alice",
      "baseline": {...},                    # every BaselineRecord field (provenance)
      "series": [                           # sorted by series id
        {"version": "*", "slice": "*", "kind": "latency", "signal": "latency_seconds",
         "state": "<base64 of the sidecar.series encoding>",
         "summary": {...}},                 # for humans only; import ignores it
        ...
      ],
      "content_sha256": "<hex>"
    }

``content_sha256`` is the SHA-256 of the canonical serialisation of every
other key (``json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=True, allow_nan=False)``), so re-indenting the file keeps it
valid while any change of a value does not. The hash detects damage and
edits; it is not a signature (whoever edits the file can recompute it), so
files that cross a trust boundary need a signed channel or signed storage.

:func:`import_baseline` checks the format, the version and the hash, decodes
every state, and stores the baseline as a new *candidate* with a new id under
the importing actor (four-eyes rules apply to it like to a freeze), keeping
the original id, environment and creator as labels (``imported_from``, ...).

:func:`diff_baselines` compares two stored baselines series by series with the
effects of live comparisons: A is the reference, B is treated as the live
side (its time-uniform bounds are conservative for a fixed sample), every
effect is computed and judged against the guardrails of A's model.

>>> from sidecar.stores import open_store
>>> store = open_store(":memory:")
>>> import_baseline(store, b'{"format": "something.else"}')
Traceback (most recent call last):
...
sidecar.errors.InvalidInput: not a baseline file: format is 'something.else', expected 'baselined.baseline'
>>> store.close()
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from baselined.v1 import baselined_pb2 as pb

from sidecar.baselines import BaselineManager, new_baseline_id
from sidecar.errors import AlreadyExists, InvalidInput, NotFound
from sidecar.records import AuditDraft, BaselineRecord, Kind, SeriesId, Status, Summary
from sidecar.series import CategoricalState, NumericState, decode_state, merge_encoded
from sidecar.stores.base import Store

if TYPE_CHECKING:
    from sidecar.compare import SeriesFinding
    from sidecar.guardrails import Guardrails, Tier

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DiffResult",
    "diff_baselines",
    "diff_to_pb",
    "export_baseline",
    "handle_diff",
    "handle_export",
    "handle_import",
    "import_baseline",
    "series_label",
]

FORMAT: Final = "baselined.baseline"
"""The ``format`` of an exported baseline file."""

FORMAT_VERSION: Final = 1
"""The file format version this sidecar writes and reads."""

_SUMMARY_QUANTILES: Final = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
_SUMMARY_TOP_K: Final = 10
_RECORD_FIELDS: Final = tuple(BaselineRecord.__dataclass_fields__)
_STRINGS: Final = (
    "id",
    "model",
    "environment",
    "name",
    "reason",
    "created_by",
    "parent_id",
    "fingerprint_hash",
)
_TIMES: Final = ("created_at", "window_start", "window_end")
_COUNTS: Final = ("series_count", "record_count")
_MAX_NAME = 256


# -- export ---------------------------------------------------------------------------


def _number(x: float) -> float | None:
    """A JSON-safe float: None for NaN and infinities."""
    return x if math.isfinite(x) else None


def _summary_obj(summary: Summary) -> dict[str, Any]:
    if summary.categorical:
        return {
            "type": "categorical",
            "count": summary.count,
            "missing": summary.missing,
            "distinct": summary.distinct,
            "top_values": [[v, c] for v, c in summary.top_values],
            "other_count": summary.other_count,
        }
    return {
        "type": "numeric",
        "count": summary.count,
        "missing": summary.missing,
        "out_of_range": summary.out_of_range,
        "min": _number(summary.min),
        "max": _number(summary.max),
        "mean": _number(summary.mean),
        "quantiles": {f"{q:g}": _number(v) for q, v in summary.quantiles},
    }


def _record_obj(record: BaselineRecord) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(record.to_json())
    return data


def _canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes the content hash covers: every key but ``content_sha256``, canonical."""
    body = {k: v for k, v in document.items() if k != "content_sha256"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def export_baseline(
    store: Store,
    baseline_id: str,
    *,
    actor: str = "",
    clock: Callable[[], float] = time.time,
) -> bytes:
    """The export file (bytes of the JSON document) of a stored baseline.

    Raises NotFound. ``actor`` and ``clock`` fill ``exported_by`` / ``exported_at``.
    """
    if not baseline_id:
        raise InvalidInput("baseline id must not be empty")
    record = store.get_baseline(baseline_id)
    blobs = store.get_baseline_series(baseline_id)
    series = []
    for sid, blob in sorted((SeriesId.parse(k), v) for k, v in blobs.items()):
        state = decode_state(blob)
        summary = (
            state.summary(_SUMMARY_QUANTILES)
            if isinstance(state, NumericState)
            else state.summary(_SUMMARY_TOP_K)
        )
        series.append(
            {
                "version": sid.version,
                "slice": sid.slice,
                "kind": sid.kind.value,
                "signal": sid.signal,
                "state": base64.b64encode(blob).decode("ascii"),
                "summary": _summary_obj(summary),
            }
        )
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": float(clock()),
        "exported_by": actor or "anonymous",
        "baseline": _record_obj(record),
        "series": series,
    }
    document["content_sha256"] = hashlib.sha256(_canonical(document)).hexdigest()
    text = json.dumps(document, indent=1, ensure_ascii=True, allow_nan=False)
    return (text + "\n").encode("ascii")


# -- import ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    record: BaselineRecord
    series: dict[str, bytes]
    content_sha256: str


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidInput(f"baseline file is malformed: key {key!r} appears twice")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise InvalidInput(f"baseline file is malformed: {name} is not allowed in a baseline file")


def _load_json(content: bytes) -> Any:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(
            f"baseline file is not UTF-8 text (byte {err.start}); is it a baseline export?"
        ) from err
    if not text.strip():
        raise InvalidInput("baseline file is empty")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as err:
        raise InvalidInput(
            f"baseline file is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise InvalidInput(f"baseline file is malformed: {where} has no {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidInput(
            f"baseline file is malformed: {where}.{key} has the wrong type ({type(value).__name__})"
        )
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput(f"baseline file is malformed: {where} must map strings to strings")
    return dict(value)


def _parse_record(data: Any) -> BaselineRecord:
    if not isinstance(data, dict):
        raise InvalidInput("baseline file is malformed: 'baseline' must be an object")
    values: dict[str, Any] = {}
    for key in _STRINGS:
        values[key] = _field(data, key, str, "baseline")
    for key in _TIMES:
        values[key] = float(_field(data, key, (int, float), "baseline"))
    for key in _COUNTS:
        count = _field(data, key, int, "baseline")
        if count < 0:
            raise InvalidInput(f"baseline file is malformed: baseline.{key} is negative")
        values[key] = count
    versions = _field(data, "versions", list, "baseline")
    if not all(isinstance(v, str) for v in versions):
        raise InvalidInput("baseline file is malformed: baseline.versions must hold strings")
    values["versions"] = tuple(versions)
    values["fingerprint"] = _string_map(data.get("fingerprint", {}), "baseline.fingerprint")
    values["labels"] = _string_map(data.get("labels", {}), "baseline.labels")
    for key in ("model", "environment", "name", "id"):
        if not values[key]:
            raise InvalidInput(f"baseline file is malformed: baseline.{key} is empty")
    return BaselineRecord(status=Status.CANDIDATE, **values)


def _parse_series(items: Any) -> dict[str, bytes]:
    if not isinstance(items, list):
        raise InvalidInput("baseline file is malformed: 'series' must be a list")
    series: dict[str, bytes] = {}
    for index, item in enumerate(items):
        where = f"series[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"baseline file is malformed: {where} must be an object")
        names = [_field(item, k, str, where) for k in ("version", "slice", "kind", "signal")]
        try:
            kind = Kind(names[2])
        except ValueError:
            raise InvalidInput(
                f"baseline file is malformed: {where} has the unknown kind {names[2]!r}"
            ) from None
        sid = SeriesId(names[0], names[1], kind, names[3])
        label = f"{where} ({series_label(sid)})"
        for name in names:
            if not name or len(name) > _MAX_NAME or any(ord(c) < 0x20 for c in name):
                raise InvalidInput(f"baseline file is malformed: {label} has an unusable name")
        try:
            blob = base64.b64decode(_field(item, "state", str, where), validate=True)
        except binascii.Error as err:
            raise InvalidInput(f"baseline file is malformed: {label} state is not base64") from err
        try:
            decode_state(blob)
        except ValueError as err:
            raise InvalidInput(
                f"baseline file is malformed: {label} state cannot be decoded: {err}"
            ) from err
        key = sid.encode()
        if key in series:
            raise InvalidInput(f"baseline file is malformed: {label} appears twice")
        series[key] = blob
    return series


def _parse(content: bytes) -> _Parsed:
    """Check and decode an export file; InvalidInput names the first problem."""
    document = _load_json(content)
    if not isinstance(document, dict):
        raise InvalidInput("baseline file is malformed: the top level must be a JSON object")
    if document.get("format") != FORMAT:
        raise InvalidInput(
            f"not a baseline file: format is {document.get('format')!r}, expected {FORMAT!r}"
        )
    version = document.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise InvalidInput(
            f"baseline file format version {version!r} is not supported: this sidecar reads"
            f" version {FORMAT_VERSION}; export it again with a matching baselined version"
        )
    stated = document.get("content_sha256")
    if not isinstance(stated, str):
        raise InvalidInput("baseline file is malformed: it has no content_sha256")
    try:
        actual = hashlib.sha256(_canonical(document)).hexdigest()
    except ValueError as err:  # a NaN or infinity slipped in
        raise InvalidInput(f"baseline file is malformed: {err}") from err
    if actual != stated.lower():
        raise InvalidInput(
            f"baseline file content hash does not match: the file says {stated} but its content"
            f" hashes to {actual}; it was modified or damaged after export and is refused"
        )
    record = _parse_record(document.get("baseline"))
    series = _parse_series(document.get("series"))
    if record.series_count != len(series):
        raise InvalidInput(
            f"baseline file is malformed: baseline.series_count is {record.series_count}"
            f" but the file holds {len(series)} series"
        )
    return _Parsed(record, series, actual)


def _check_name(what: str, value: str) -> None:
    if not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > _MAX_NAME or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise InvalidInput(
            f"{what} {value!r} is not a usable name (control characters or too long)"
        )


def import_baseline(
    store: Store,
    content: bytes,
    *,
    environment: str = "",
    name: str = "",
    reason: str = "",
    actor: str = "",
    clock: Callable[[], float] = time.time,
    new_id: Callable[[], str] = new_baseline_id,
) -> BaselineRecord:
    """Verify an export file and store it as a new candidate baseline; return its record.

    ``environment`` and ``name`` override the file's (empty: keep). The new
    baseline gets a new id, is created by ``actor`` now, has no parent, and
    carries the original id, environment, creator and creation time as labels
    ``imported_from``, ``imported_from_environment``, ``imported_from_created_by``
    and ``imported_from_created_at``; an ``import`` audit entry is written with
    it. Raises InvalidInput (malformed, unknown version, hash mismatch; nothing
    is stored) and AlreadyExists (the name is taken in the target environment).
    """
    parsed = _parse(content)
    original = parsed.record
    environment = environment or original.environment
    name = name or original.name
    _check_name("environment", environment)
    _check_name("baseline name", name)
    try:
        existing = store.find_baseline(original.model, environment, name)
    except NotFound:
        pass
    else:
        raise AlreadyExists(
            f"baseline {name!r} of {original.model}/{environment} exists already ({existing.id});"
            " import it under another name (--name)"
        )
    now = float(clock())
    who = actor or "anonymous"
    labels = dict(original.labels)
    labels.update(
        {
            "imported_from": original.id,
            "imported_from_environment": original.environment,
            "imported_from_created_by": original.created_by,
            "imported_from_created_at": repr(original.created_at),
        }
    )
    record = BaselineRecord(
        id=new_id(),
        model=original.model,
        environment=environment,
        name=name,
        reason=reason or original.reason,
        created_by=who,
        created_at=now,
        window_start=original.window_start,
        window_end=original.window_end,
        versions=original.versions,
        parent_id="",
        fingerprint=dict(original.fingerprint),
        fingerprint_hash=original.fingerprint_hash,
        series_count=len(parsed.series),
        record_count=original.record_count,
        labels=labels,
        status=Status.CANDIDATE,
    )
    pointer = store.get_pointer(record.model, environment)
    audit = AuditDraft(
        time=now,
        actor=who,
        action="import",
        model=record.model,
        environment=environment,
        target=record.id,
        reason=reason,
        before={"active": pointer.active, "status": None},
        after={
            "active": pointer.active,
            "status": Status.CANDIDATE.value,
            "imported_from": original.id,
            "imported_from_environment": original.environment,
            "content_sha256": parsed.content_sha256,
        },
    )
    store.create_baseline(record, parsed.series, audit)
    return record


# -- diff -----------------------------------------------------------------------------

State = NumericState | CategoricalState
_Key = tuple[str, Kind, str]


def series_label(sid: SeriesId) -> str:
    """How a diff names a series: ``kind:signal``, then ``[slice]`` unless all traffic.

    >>> series_label(SeriesId("*", "region=eu", Kind.FEATURE, "amount"))
    'feature:amount[region=eu]'
    """
    text = f"{sid.kind.value}:{sid.signal}"
    return text if sid.slice == "*" else f"{text}[{sid.slice}]"


@dataclass(frozen=True)
class DiffResult:
    """Two baselines compared series by series; B is judged against A.

    ``findings`` covers every series both hold (same slice, kind, signal and
    type; versions are ignored like in live comparisons) with every effect;
    ``only_in_a`` / ``only_in_b`` name the series without such a counterpart
    (:func:`series_label`; a series whose type changed is in both, marked
    ``(numeric)`` / ``(categorical)``). ``quantiles`` holds, per shared
    numeric series label, (level, value in A, value in B) for the levels asked.
    """

    a: BaselineRecord
    b: BaselineRecord
    alpha_per_test: float
    findings: tuple[SeriesFinding, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    quantiles: Mapping[str, tuple[tuple[float, float, float], ...]]

    @property
    def tier(self) -> Tier | None:
        """The highest tier any series cleared, None when none did."""
        tiers = [f.tier for f in self.findings if f.tier is not None]
        return max(tiers) if tiers else None

    @property
    def differs(self) -> bool:
        """True when a series cleared a guardrail or exists on one side only."""
        return self.tier is not None or bool(self.only_in_a or self.only_in_b)


def _by_key(blobs: Mapping[str, bytes]) -> dict[_Key, tuple[SeriesId, State]]:
    """Decoded series keyed by (slice, kind, signal); versions of one key merged."""
    grouped: dict[_Key, list[tuple[SeriesId, bytes]]] = {}
    for text, blob in blobs.items():
        sid = SeriesId.parse(text)
        grouped.setdefault((sid.slice, sid.kind, sid.signal), []).append((sid, blob))
    out: dict[_Key, tuple[SeriesId, State]] = {}
    for key, items in grouped.items():
        items.sort()
        sid = items[0][0] if len(items) == 1 else SeriesId("*", *key)
        out[key] = (sid, merge_encoded(blob for _, blob in items))
    return out


def _type_name(state: State) -> str:
    return "numeric" if isinstance(state, NumericState) else "categorical"


def _total(state: State) -> int:
    if isinstance(state, NumericState):
        return state.count + state.missing + state.out_of_range
    return state.count + state.missing


def diff_baselines(
    store: Store,
    a: str,
    b: str,
    guardrails: Guardrails,
    quantiles: Sequence[float] = (),
) -> DiffResult:
    """Compare baseline ``b`` with baseline ``a`` (the reference), series by series.

    Every effect of every shared series is computed like an on-demand live
    comparison (A as the baseline, B as the live side) at the alpha per test of
    A's guarded family, and judged against the guardrails of A's model.
    Raises NotFound, InvalidInput (bad quantile levels, empty ids).
    """
    from sidecar.compare import SeriesFinding as Finding
    from sidecar.compare import build_evaluator, compare_states, count_tests

    if not a or not b:
        raise InvalidInput("both baseline ids (a and b) must be given")
    levels = BaselineManager.check_quantiles(quantiles)
    record_a = store.get_baseline(a)
    record_b = store.get_baseline(b)
    side_a = _by_key(store.get_baseline_series(a))
    side_b = _by_key(store.get_baseline_series(b))

    only_a: list[str] = []
    only_b: list[str] = []
    base: dict[SeriesId, State] = {}
    live: dict[SeriesId, State] = {}
    for key in sorted(set(side_a) | set(side_b), key=lambda k: (k[0], k[1].value, k[2])):
        left, right = side_a.get(key), side_b.get(key)
        if left is not None and right is not None and type(left[1]) is type(right[1]):
            base[left[0]] = left[1]
            live[right[0]] = right[1]
            continue
        if left is not None:
            mark = f" ({_type_name(left[1])})" if right is not None else ""
            only_a.append(series_label(left[0]) + mark)
        if right is not None:
            mark = f" ({_type_name(right[1])})" if left is not None else ""
            only_b.append(series_label(right[0]) + mark)

    model = record_a.model
    alpha = guardrails.alpha
    tests = count_tests(base.items(), guardrails, model)
    alpha_test = alpha / tests if tests > 0 else alpha
    evaluator = build_evaluator(base, guardrails, model, alpha_test, full=True)
    found, alpha_test = compare_states(
        base, live, guardrails, model, alpha, tests=tests, evaluator=evaluator
    )
    # compare_states skips series without values on the live side; a diff lists them.
    seen = {(f.series.slice, f.series.kind, f.series.signal) for f in found}
    base_counts = {(s.slice, s.kind, s.signal): _total(st) for s, st in base.items()}
    for sid, state in live.items():
        key = (sid.slice, sid.kind, sid.signal)
        if key not in seen:
            found.append(Finding(sid, "", {}, None, (), base_counts[key], _total(state)))
    found.sort(key=lambda f: (f.series.slice, f.series.kind.value, f.series.signal))

    by_key_a = {(s.slice, s.kind, s.signal): st for s, st in base.items()}
    values: dict[str, tuple[tuple[float, float, float], ...]] = {}
    for sid, state in live.items():
        reference = by_key_a[(sid.slice, sid.kind, sid.signal)]
        if isinstance(state, NumericState) and isinstance(reference, NumericState):
            qa = reference.summary(levels).quantiles
            qb = state.summary(levels).quantiles
            values[series_label(sid)] = tuple(
                (q, va, vb) for (q, va), (_, vb) in zip(qa, qb, strict=True)
            )
    return DiffResult(
        a=record_a,
        b=record_b,
        alpha_per_test=alpha_test,
        findings=tuple(found),
        only_in_a=tuple(only_a),
        only_in_b=tuple(only_b),
        quantiles=values,
    )


def diff_to_pb(result: DiffResult) -> pb.DiffBaselinesResponse:
    """A ``DiffBaselinesResponse``: findings carry A's count as ``baseline_count``
    and B's as ``live_count``. (The per-level quantile values have no field.)"""
    from sidecar.convert import finding_to_pb

    return pb.DiffBaselinesResponse(
        a=result.a.id,
        b=result.b.id,
        findings=[finding_to_pb(f) for f in result.findings],
        only_in_a=list(result.only_in_a),
        only_in_b=list(result.only_in_b),
    )


# -- gRPC handlers (the Governance servicer runs these in a worker thread) ------------


def handle_export(
    store: Store,
    request: pb.ExportBaselineRequest,
    actor: str,
    clock: Callable[[], float] = time.time,
) -> pb.BaselineFile:
    """``ExportBaseline``: the file of baseline ``request.id``."""
    return pb.BaselineFile(content=export_baseline(store, request.id, actor=actor, clock=clock))


def handle_import(
    store: Store,
    request: pb.ImportBaselineRequest,
    actor: str,
    clock: Callable[[], float] = time.time,
) -> pb.Baseline:
    """``ImportBaseline``: store the file as a new candidate; its ``Baseline``."""
    from sidecar.convert import record_to_pb

    record = import_baseline(
        store,
        request.content,
        environment=request.environment,
        name=request.name,
        reason=request.reason,
        actor=actor,
        clock=clock,
    )
    return record_to_pb(record)


def handle_diff(
    store: Store, request: pb.DiffBaselinesRequest, guardrails: Guardrails
) -> pb.DiffBaselinesResponse:
    """``DiffBaselines``: baseline ``request.b`` against ``request.a``."""
    return diff_to_pb(diff_baselines(store, request.a, request.b, guardrails, request.quantiles))
