"""Validation and decoding of ingested ``SampleBatch`` messages.

:func:`decode_batch` checks a whole batch against the configured bounds before
anything of it is used, and turns its columns into numpy arrays: one float64
matrix for every numeric signal (a row per signal), plain string lists for
categorical signals and slice columns. A bad batch raises
:class:`~sidecar.errors.InvalidInput` (malformed) or
:class:`~sidecar.errors.TooLarge` (over a bound) with a message that names the
column, the row and the bound; nothing here has state, so a refused batch
changes nothing.

>>> from baselined.v1 import baselined_pb2 as pb
>>> from sidecar.settings import Settings
>>> batch = pb.SampleBatch(model="m", version="v1", environment="prod", timestamps=[100.0])
>>> batch.numeric.add(name="x", kind=pb.SIGNAL_KIND_FEATURE, values=[1.5])  # doctest: +ELLIPSIS
name: "x"...
>>> decode_batch(batch, Settings(instance="t"), now=100.0).numeric.tolist()
[[1.5]]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from baselined.v1 import baselined_pb2 as pb

from sidecar.errors import InvalidInput, TooLarge
from sidecar.records import ALL_TRAFFIC, Kind
from sidecar.settings import Settings

__all__ = [
    "MAX_DROPPED_REASONS",
    "MAX_NAME_LENGTH",
    "DecodedBatch",
    "SliceData",
    "check_name",
    "decode_batch",
]

MAX_NAME_LENGTH = 256
"""Longest accepted model, version, environment, signal, slice attribute or value (characters)."""

MAX_DROPPED_REASONS = 32
"""Most entries of a batch's ``dropped`` map (the middleware's drop counts by reason)."""

# Cc: C0 and C1 control characters. Series ids join names with \x1f, and no
# name a person types needs one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class SliceData:
    """One per-row slice attribute: its values (``""`` = none) and the distinct values in
    order of first appearance."""

    name: str
    values: list[str]
    distinct: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A validated batch as numpy columns.

    ``numeric[i]`` holds the values of signal ``numeric_signals[i]``, one per
    row; ``batch_slices`` are (attribute, value) pairs that hold for every row,
    sorted by attribute. ``traceparents`` is empty or holds one W3C traceparent
    per row (``""`` = none), unvalidated: readers check the few they keep.
    ``instance`` names the sending process and ``dropped`` holds its cumulative
    drop counts since it started, as (reason, count) pairs sorted by reason.
    """

    model: str
    version: str
    environment: str
    rows: int
    timestamps: npt.NDArray[np.float64]
    numeric_signals: tuple[tuple[Kind, str], ...]
    numeric: npt.NDArray[np.float64]
    categorical: tuple[tuple[Kind, str, list[str]], ...]
    slices: tuple[SliceData, ...]
    batch_slices: tuple[tuple[str, str], ...]
    fingerprint: pb.Fingerprint | None
    traceparents: Sequence[str] = ()
    instance: str = ""
    dropped: tuple[tuple[str, int], ...] = ()
    request_ids: Sequence[str] = ()  # empty or one per row ("" = none); kept for outcomes


_CHECKED: dict[str, None] = {}  # names that passed check_name: batches repeat theirs
_CHECKED_MAX = 4096  # entries kept; past it the cache starts over


def check_name(what: str, value: str, *, allow_empty: bool = False) -> None:
    """Raise InvalidInput unless ``value`` is a usable name: no control characters,
    at most MAX_NAME_LENGTH characters, and not empty unless ``allow_empty``."""
    if value in _CHECKED:
        return
    if not value:
        if allow_empty:
            return
        raise InvalidInput(f"{what} is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"{what} is {len(value)} characters long, over the limit of {MAX_NAME_LENGTH}"
        )
    bad = _CONTROL.search(value)
    if bad is not None:
        raise InvalidInput(
            f"{what} {value!r} contains the control character U+{ord(bad.group()):04X} "
            f"at position {bad.start()}; names must be printable"
        )
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()
    _CHECKED[value] = None


def _kind(what: str, number: int) -> Kind:
    if number == pb.SIGNAL_KIND_UNSPECIFIED:
        raise InvalidInput(f"{what} has no signal kind (SIGNAL_KIND_UNSPECIFIED)")
    try:
        return Kind.from_proto(number)
    except ValueError:
        raise InvalidInput(f"{what} has unknown signal kind {number}") from None


def _check_rows(what: str, count: int, rows: int) -> None:
    if count != rows:
        raise InvalidInput(f"{what} has {count} values, expected {rows} (one per timestamp)")


def _check_timestamps(ts: npt.NDArray[np.float64], settings: Settings, now: float) -> None:
    finite = np.isfinite(ts)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InvalidInput(
            f"timestamp at row {row} is {ts[row]}; timestamps must be finite unix seconds"
        )
    latest = now + settings.max_clock_skew
    future = ts > latest
    if future.any():
        row = int(np.flatnonzero(future)[0])
        raise InvalidInput(
            f"timestamp at row {row} ({ts[row]:.3f}) is {ts[row] - now:.3f} s in the future, "
            f"beyond max_clock_skew={settings.max_clock_skew:g} s; check the sender's clock"
        )
    oldest = now - settings.retention_seconds
    old = ts < oldest
    if old.any():
        row = int(np.flatnonzero(old)[0])
        raise InvalidInput(
            f"timestamp at row {row} ({ts[row]:.3f}) is {now - ts[row]:.0f} s old, "
            f"older than retention_seconds={settings.retention_seconds}"
        )


def decode_batch(batch: pb.SampleBatch, settings: Settings, *, now: float) -> DecodedBatch:
    """Validate ``batch`` as a whole and decode it; ``now`` is the sidecar's clock
    (unix seconds) for the clock-skew and retention checks.

    Raises TooLarge for a batch over max_batch_bytes, max_batch_rows,
    max_signals or max_slice_attributes, and InvalidInput for anything
    malformed. Infinite numeric values are valid (out of range); NaN is missing.
    """
    size = batch.ByteSize()
    if size > settings.max_batch_bytes:
        raise TooLarge(
            f"batch is {size} bytes, over max_batch_bytes={settings.max_batch_bytes};"
            " send smaller batches"
        )
    rows = len(batch.timestamps)
    if rows == 0:
        raise InvalidInput("batch has no rows: timestamps is empty")
    if rows > settings.max_batch_rows:
        raise TooLarge(f"batch has {rows} rows, over max_batch_rows={settings.max_batch_rows}")
    signals = len(batch.numeric) + len(batch.categorical)
    if signals > settings.max_signals:
        raise TooLarge(f"batch has {signals} signals, over max_signals={settings.max_signals}")
    attributes = len(batch.slices) + len(batch.batch_slices)
    if attributes > settings.max_slice_attributes:
        raise TooLarge(
            f"batch has {attributes} slice attributes, "
            f"over max_slice_attributes={settings.max_slice_attributes}"
        )

    check_name("model name", batch.model)
    check_name("version", batch.version, allow_empty=True)
    if batch.version == ALL_TRAFFIC:
        raise InvalidInput(f"version {ALL_TRAFFIC!r} is reserved for data merged across versions")
    check_name("environment", batch.environment)
    if len(batch.dropped) > MAX_DROPPED_REASONS:
        raise InvalidInput(
            f"dropped has {len(batch.dropped)} reasons, over the limit of {MAX_DROPPED_REASONS}"
        )
    dropped = sorted(batch.dropped.items())
    for reason, _ in dropped:
        check_name("dropped reason", reason)
    if len(batch.request_ids) not in (0, rows):
        raise InvalidInput(
            f"request_ids has {len(batch.request_ids)} values,"
            f" expected 0 or {rows} (one per timestamp)"
        )
    if len(batch.traceparents) not in (0, rows):
        raise InvalidInput(
            f"traceparents has {len(batch.traceparents)} values,"
            f" expected 0 or {rows} (one per timestamp)"
        )

    seen: dict[tuple[Kind, str], str] = {}

    def signal(what: str, name: str, kind_number: int) -> tuple[Kind, str]:
        check_name(f"{what} name", name)
        key = (_kind(f"{what} ({name!r})", kind_number), name)
        if key in seen:
            raise InvalidInput(
                f"duplicate signal: {key[0].value} {name!r} is both {seen[key]} and {what}"
            )
        seen[key] = what
        return key

    numeric_signals: list[tuple[Kind, str]] = []
    for i, ncol in enumerate(batch.numeric):
        what = f"numeric column {i}"
        numeric_signals.append(signal(what, ncol.name, ncol.kind))
        _check_rows(f"{what} ({ncol.name!r})", len(ncol.values), rows)
    categorical: list[tuple[Kind, str, list[str]]] = []
    for i, ccol in enumerate(batch.categorical):
        what = f"categorical column {i}"
        kind, name = signal(what, ccol.name, ccol.kind)
        _check_rows(f"{what} ({name!r})", len(ccol.values), rows)
        categorical.append((kind, name, list(ccol.values)))

    attrs: set[str] = set()

    def attribute(what: str, name: str) -> None:
        check_name(what, name)
        if "=" in name or name == ALL_TRAFFIC:
            raise InvalidInput(f"{what} {name!r} must not be {ALL_TRAFFIC!r} or contain '='")
        if name in attrs:
            raise InvalidInput(f"duplicate slice attribute {name!r}")
        attrs.add(name)

    slices: list[SliceData] = []
    for i, scol in enumerate(batch.slices):
        what = f"slice column {i} ({scol.name!r})"
        attribute(f"slice column {i} name", scol.name)
        _check_rows(what, len(scol.values), rows)
        values = list(scol.values)
        distinct = tuple(dict.fromkeys(values))
        for value in distinct:
            if len(value) > MAX_NAME_LENGTH or _CONTROL.search(value):
                check_name(f"{what} row {values.index(value)} value", value)
        slices.append(SliceData(scol.name, values, distinct))
    batch_slices = sorted(batch.batch_slices.items())
    for name, value in batch_slices:
        attribute("batch slice attribute", name)
        check_name(f"batch slice {name!r} value", value, allow_empty=True)

    timestamps = np.asarray(batch.timestamps, dtype=np.float64)
    _check_timestamps(timestamps, settings, now)

    numeric = np.empty((len(batch.numeric), rows), dtype=np.float64)
    for i, ncol in enumerate(batch.numeric):
        numeric[i] = ncol.values
    # A view into the batch, not a copy: most batches repeat the fingerprint
    # the receiver already holds, which it can tell by hash.
    fingerprint = batch.fingerprint if batch.HasField("fingerprint") else None
    return DecodedBatch(
        model=batch.model,
        version=batch.version,
        environment=batch.environment,
        rows=rows,
        timestamps=timestamps,
        numeric_signals=tuple(numeric_signals),
        numeric=numeric,
        categorical=tuple(categorical),
        slices=tuple(slices),
        batch_slices=tuple((k, v) for k, v in batch_slices if v),
        fingerprint=fingerprint,
        traceparents=batch.traceparents,  # a view: only the few rows kept are read
        instance=batch.instance,
        dropped=tuple(dropped),
        request_ids=batch.request_ids,  # a view: read only when outcomes keep predictions
    )
