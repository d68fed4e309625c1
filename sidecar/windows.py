"""Live windows: ingested batches accumulated per (model, environment, bucket,
series) in memory, flushed to the store as this sidecar's partials.

Every row of a batch feeds, for each of its signals, the all-traffic series
``(version, "*", kind, signal)`` and one series per slice attribute value of
the row, ``(version, "attr=value", kind, signal)``, in the time bucket of its
timestamp. Past ``max_slice_values`` distinct values of an attribute per
(model, environment), further values fold into ``attr=__other__``.

A flush writes, for every (bucket, series) changed since the last flush, the
bucket's cumulative state: a repeated flush is idempotent, a failed flush is
retried with everything kept, and a crash loses at most one flush interval.
Flushed buckets older than the newest bucket minus two leave memory. While the
store is unreachable nothing is flushed, so buckets pile up: past
``max_buffered_buckets`` per (model, environment) the oldest bucket is dropped
and its unflushed rows are counted (:meth:`Windows.store_drops`, and reason
``store_unavailable`` in :meth:`Windows.dropped_counts`). Should a
row arrive later for a bucket that already left memory, it is kept under a
fresh writer name (``writer#lateN``) so it never overwrites the partial
written before.

>>> from sidecar.settings import Settings
>>> from sidecar.stores import SQLiteStore
>>> from baselined.v1 import baselined_pb2 as pb
>>> windows = Windows(Settings(instance="a"), SQLiteStore(), clock=lambda: 130.0)
>>> batch = pb.SampleBatch(model="m", version="v1", environment="prod", timestamps=[125.0, 126.0])
>>> _ = batch.numeric.add(name="x", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0, 3.0])
>>> windows.ingest(batch), windows.flush()
(2, 1)
>>> data = windows.read("m", "prod", 0, 200)
>>> data.versions, data.series[SeriesId("*", "*", Kind.FEATURE, "x")].summary([0.5]).count
(('v1',), 2)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from baselined.v1 import baselined_pb2 as pb

from sidecar.errors import InvalidInput, TooLarge
from sidecar.ingest import DecodedBatch, decode_batch
from sidecar.records import ALL_TRAFFIC, Kind, Partial, SeriesId
from sidecar.series import CategoricalState, NumericState, merge_encoded
from sidecar.settings import Settings
from sidecar.stores.base import Store

__all__ = ["OTHER", "STORE_UNAVAILABLE", "TRACES_KEPT", "WindowData", "Windows"]

log = logging.getLogger(__name__)

OTHER = "__other__"
"""The slice value that collects an attribute's values past ``max_slice_values``."""

STORE_UNAVAILABLE = "store_unavailable"
"""The drop reason of rows this sidecar dropped unflushed while the store was unreachable."""

_DROP_INSTANCES = 1024  # senders whose drop counts are kept apart; older ones are folded
_DROP_REASONS = 64  # distinct drop reasons kept per sender
_KEEP_BUCKETS = 2  # flushed buckets this far behind the newest stay in memory for late rows
_COMPACTABLE = 300  # flushed buckets older than this (s) leave memory: compaction starts at 10 min
_BUFFER_VALUES = 4096  # per series: 32 KB, twice a full digest; ~90 % of the bulk rate
_LATE = "#late"
_LATE_SUFFIX = re.compile(re.escape(_LATE) + r"\d+$")

TRACES_KEPT = 8
"""Sampled request traceparents kept per (model, environment, version, slice)."""
_TRACE_SCAN = 64  # rows read from the end of a batch for its traceparents

_State = NumericState | CategoricalState
_Key = tuple[str, str, Kind, str]  # SeriesId fields; plain tuples hash faster
_Index = npt.NDArray[np.intp]


@dataclass(frozen=True)
class WindowData:
    """All writers' window data of one (model, environment) over [start, end),
    merged per series. ``versions`` are the model versions present in what was
    read; ``writers`` the sidecars whose partials were merged."""

    model: str
    environment: str
    start: float
    end: float
    versions: tuple[str, ...]
    writers: tuple[str, ...]
    series: Mapping[SeriesId, NumericState | CategoricalState]


class _Block:
    """Numeric rows of one (version, slice label, list of numeric signals) of a bucket
    not yet added to their states: a batch's rows go in with one append, and the
    states take them together once a few batches have gathered (``drain``)."""

    __slots__ = ("admitted", "parts", "refused", "rows", "states")

    def __init__(self, states: list[NumericState | None], admitted: tuple[_Key, ...]) -> None:
        self.states = states  # one per signal; None: the series was refused (max_series)
        self.admitted = admitted  # the keys of the states kept
        self.refused = len(states) - len(admitted)
        self.parts: list[npt.NDArray[np.float64]] = []  # (signals, rows) matrices
        self.rows = 0

    def drain(self) -> None:
        """Add the gathered rows to the states, one column per signal."""
        parts = self.parts
        if not parts:
            return
        matrix = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        self.parts = []
        self.rows = 0
        for state, values in zip(self.states, matrix, strict=True):
            if state is not None:
                state.add(values)


_MAX_BLOCKS = 256  # per bucket; past it (ever-changing signal lists) all are drained and dropped


class _Bucket:
    __slots__ = ("blocks", "dirty", "held", "pending", "states", "writer")

    def __init__(self, writer: str) -> None:
        self.writer = writer
        self.pending = 0  # rows ingested since this bucket's last successful flush
        self.states: dict[_Key, _State] = {}
        self.dirty: set[_Key] = set()
        # Numeric values not yet in their digest. Each digest update costs ~15 us
        # plus ~50 ns a value (compression 1000), so values wait for a few batches,
        # gathered per (version, slice, signal list): one append per batch and label.
        self.blocks: dict[tuple[str, str, tuple[tuple[Kind, str], ...]], _Block] = {}
        self.held: dict[_Key, list[_Block]] = {}  # the blocks each series' values gather in

    def drain(self, key: _Key) -> None:
        """Feed the buffered values of ``key`` into its state."""
        for block in self.held.get(key, ()):
            block.drain()

    def drop_blocks(self, refusing_only: bool = False) -> None:
        """Drain and forget the blocks (those that refused a series, if ``refusing_only``),
        so that the next batch builds them afresh (and asks for admission again)."""
        for group, block in list(self.blocks.items()):
            if refusing_only and not block.refused:
                continue
            block.drain()
            del self.blocks[group]
            for key in block.admitted:
                held = self.held[key]
                held.remove(block)
                if not held:
                    del self.held[key]

    def encode(self, key: _Key) -> bytes:
        self.drain(key)
        return self.states[key].encode()


class _Window:
    """In-memory state of one (model, environment)."""

    __slots__ = (
        "buckets",
        "categorical",
        "fingerprint",
        "horizon",
        "newest",
        "series",
        "slice_values",
        "traces",
    )

    def __init__(self) -> None:
        self.buckets: dict[int, _Bucket] = {}
        self.newest: int | None = None
        # Every bucket that ever left memory starts before the horizon.
        self.horizon: int | None = None
        self.slice_values: dict[str, set[str]] = {}
        self.categorical: dict[tuple[Kind, str], bool] = {}
        self.fingerprint: pb.Fingerprint | None = None
        # (version, slice label) -> the latest sampled request traceparents, oldest first.
        self.traces: dict[tuple[str, str], deque[str]] = {}
        # Series of the buckets in memory: at most max_series (a cardinality bound).
        self.series: set[_Key] = set()


# What a flush took from a bucket: (window, bucket start, bucket, dirty keys, pending rows).
_Taken = tuple[_Window, int, _Bucket, set[_Key], int]


def _with_instance(data: DecodedBatch, instance: str) -> DecodedBatch:
    """``data`` with the slice attribute ``instance=<instance>`` on every row
    (``instance_slice``); a batch's own ``instance`` attribute wins."""
    if any(s.name == "instance" for s in data.slices) or any(
        k == "instance" for k, _ in data.batch_slices
    ):
        return data
    return dataclasses.replace(data, batch_slices=(*data.batch_slices, ("instance", instance)))


def _groups(codes: _Index, n: int) -> list[tuple[int, _Index | None]]:
    """Row indices per code in [0, n); rows with code -1 belong to no group.
    ``None`` stands for "every row" so the caller can skip a copy."""
    if n == 1 and codes.size and codes.min() == 0:
        return [(0, None)]
    keep = np.flatnonzero(codes >= 0)
    sub = codes[keep]
    order = keep[np.argsort(sub, kind="stable")]
    counts = np.bincount(sub, minlength=n)
    parts = np.split(order, np.cumsum(counts)[:-1])
    return [(code, idx) for code, idx in enumerate(parts) if idx.size]


class Windows:
    """Live windows of this sidecar: accumulates ingested batches per (model,
    environment, bucket, series) in memory and flushes them to the store as
    this writer's partials.

    ``writer`` defaults to ``f"{settings.instance}:{random token}"`` so a
    restarted sidecar never overwrites its predecessor's partials. ``clock``
    (unix seconds) is what timestamps are checked against. ``on_batch`` (for
    telemetry) is called after each accepted batch with the decoded batch and
    the ``time.time_ns()`` at which its ingest began; ``on_fingerprint`` (the
    fingerprint tracker, ``sidecar.fingerprints``) with the decoded batch.
    Neither can refuse a batch: their errors are swallowed.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        writer: str | None = None,
        on_batch: Callable[[DecodedBatch, int], None] | None = None,
        on_fingerprint: Callable[[DecodedBatch], None] | None = None,
        on_keep: Callable[[DecodedBatch], None] | None = None,
    ) -> None:
        self.on_batch = on_batch
        self.on_fingerprint = on_fingerprint
        # Outcomes (sidecar.outcomes) keep sampled predictions for joining labels.
        self.on_keep = on_keep
        self.writer = writer or f"{settings.instance}:{secrets.token_hex(4)}"
        self._settings = settings
        self._store = store
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()  # guards the in-memory state
        self._flush_lock = (
            threading.Lock()
        )  # one flush at a time, so a flush that returns has written all
        self._late = 0
        self._refused_logged = -math.inf
        # (model, environment, instance) -> reason -> highest cumulative count seen,
        # least recently heard from first; and the counts of senders folded away.
        self._dropped: dict[tuple[str, str, str], dict[str, int]] = {}
        self._dropped_folded: dict[tuple[str, str, str], int] = {}
        # (model, environment) -> rows dropped unflushed past max_buffered_buckets.
        self._store_dropped: dict[tuple[str, str], int] = {}
        self._counts = dict.fromkeys(
            (
                "batches_accepted",
                "records_accepted",
                "batches_rejected",
                "records_rejected",
                "slice_values_folded",
                "flushes",
                "flush_failures",
                "series_flushed",
                "traceparents_invalid",
                "values_refused",
                "buckets_dropped_unflushed",
                "records_dropped_unflushed",
            ),
            0,
        )

    # -- ingest ----------------------------------------------------------------

    def ingest(self, batch: pb.SampleBatch) -> int:
        """Validate the whole batch, then accumulate it; return the rows accepted.

        A bad batch raises InvalidInput or TooLarge, naming the problem, and
        changes nothing but the rejection counters.
        """
        began = time.time_ns() if self.on_batch is not None else 0
        try:
            data = decode_batch(batch, self._settings, now=self._clock())
            if self._settings.instance_slice:  # per-instance views in fleet mode
                data = _with_instance(data, self._settings.instance)
            with self._lock:
                key = (data.model, data.environment)
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = _Window()
                else:
                    self._check_kinds(window, data)
                self._accumulate(window, data)
                self._bound(key, window)
                if data.traceparents:
                    self._remember_traces(window, data)
                if data.dropped:
                    self._note_dropped(data)
                self._counts["batches_accepted"] += 1
                self._counts["records_accepted"] += data.rows
        except (InvalidInput, TooLarge):
            with self._lock:
                self._counts["batches_rejected"] += 1
                self._counts["records_rejected"] += len(batch.timestamps)
            raise
        if self.on_fingerprint is not None:
            with contextlib.suppress(Exception):  # derived events must never refuse a batch
                self.on_fingerprint(data)
        if self.on_keep is not None:
            with contextlib.suppress(Exception):  # keeping predictions must never refuse a batch
                self.on_keep(data)
        if self.on_batch is not None:
            with contextlib.suppress(Exception):  # telemetry must never refuse a batch
                self.on_batch(data, began)
        return data.rows

    def _note_dropped(self, data: DecodedBatch) -> None:
        """Keep the sender's cumulative drop counts (the highest seen per reason:
        batches of two streams may arrive out of order). Past ``_DROP_INSTANCES``
        senders, the least recently heard from is folded into a per-reason total."""
        key = (data.model, data.environment, data.instance)
        counts = self._dropped.pop(key, None)  # re-inserted last: most recent
        if counts is None:
            counts = {}
            if len(self._dropped) >= _DROP_INSTANCES:
                (model, environment, _), old = oldest = next(iter(self._dropped.items()))
                del self._dropped[oldest[0]]
                for reason, n in old.items():
                    fold = (model, environment, reason)
                    self._dropped_folded[fold] = self._dropped_folded.get(fold, 0) + n
        for reason, n in data.dropped:
            if n > counts.get(reason, -1) and (reason in counts or len(counts) < _DROP_REASONS):
                counts[reason] = n
        self._dropped[key] = counts

    def dropped_counts(self) -> dict[tuple[str, str, str], int]:
        """Records the middleware reported dropped, by (model, environment, reason):
        the sum over sending instances of each one's latest cumulative count;
        plus, under reason ``store_unavailable``, the rows this sidecar dropped
        unflushed (:meth:`store_drops`).

        Monotonic while senders run: a restarted sender reports under a new
        instance (``host:pid``) and its predecessor's counts stay in the sum; a
        sender that reuses its instance name counts again once it passes its old
        counts.
        """
        with self._lock:
            totals = dict(self._dropped_folded)
            for (model, environment), n in self._store_dropped.items():
                key = (model, environment, STORE_UNAVAILABLE)
                totals[key] = totals.get(key, 0) + n
            for (model, environment, _), counts in self._dropped.items():
                for reason, n in counts.items():
                    key = (model, environment, reason)
                    totals[key] = totals.get(key, 0) + n
        return totals

    def _bound(self, key: tuple[str, str], window: _Window) -> None:
        """Past ``max_buffered_buckets`` buckets in memory (the store has been
        unreachable, so nothing could be flushed and evicted), drop the oldest
        and count its unflushed rows; flushed buckets (kept for late rows) go
        first, as their data is stored. A row arriving later for a dropped bucket
        goes to a late writer, so it never overwrites what was flushed of it."""
        limit = self._settings.max_buffered_buckets
        while len(window.buckets) > limit:
            clean = [s for s, b in window.buckets.items() if not (b.dirty or b.pending)]
            start = min(clean) if clean else min(window.buckets)
            bucket = window.buckets.pop(start)
            end = start + self._settings.bucket_seconds
            window.horizon = end if window.horizon is None else max(window.horizon, end)
            if bucket.dirty or bucket.pending:
                self._counts["buckets_dropped_unflushed"] += 1
                self._counts["records_dropped_unflushed"] += bucket.pending
                self._store_dropped[key] = self._store_dropped.get(key, 0) + bucket.pending

    def store_drops(self) -> dict[tuple[str, str], int]:
        """Rows dropped before they could be flushed, by (model, environment):
        buckets pushed out of memory past ``max_buffered_buckets`` while the
        store was unreachable."""
        with self._lock:
            return dict(self._store_dropped)

    def _remember_traces(self, window: _Window, data: DecodedBatch) -> None:
        """Keep the traceparents of the last rows of the batch in the reservoirs of
        the series they fed (all traffic, the batch's slices and each row's slices).

        Only the shape is checked here (55 characters, dashes in place); the ids are
        parsed where they are used, so a malformed one is ignored there.
        """
        first = max(0, data.rows - _TRACE_SCAN)
        tail = data.traceparents[first:]  # one C call: indexing row by row costs ~1 us each
        rows = [(first + j, tp) for j, tp in enumerate(tail) if tp]
        if not rows:
            return
        shaped = [(j, tp) for j, tp in rows if len(tp) == 55 and tp[2] == tp[35] == tp[52] == "-"]
        if len(shaped) != len(rows):
            self._counts["traceparents_invalid"] += len(rows) - len(shaped)
        if not shaped:
            return
        version, traces = data.version, window.traces
        whole = [ALL_TRAFFIC]
        for attr, value in data.batch_slices:
            admitted = window.slice_values.get(attr, ())
            whole.append(f"{attr}={value if value in admitted else OTHER}")
        recent = [tp for _, tp in shaped[-TRACES_KEPT:]]
        for label in whole:
            kept = traces.get((version, label))
            if kept is None:
                kept = traces[(version, label)] = deque(maxlen=TRACES_KEPT)
            kept.extend(recent)
        for column in data.slices:
            admitted = window.slice_values.get(column.name, ())
            per_label: dict[str, list[str]] = {}
            values = column.values
            for j, tp in shaped:
                value = values[j]
                if value:
                    per_label.setdefault(value, []).append(tp)
            for value, tps in per_label.items():
                label = f"{column.name}={value if value in admitted else OTHER}"
                kept = traces.get((version, label))
                if kept is None:
                    kept = traces[(version, label)] = deque(maxlen=TRACES_KEPT)
                kept.extend(tps[-TRACES_KEPT:])

    def traces(
        self, model: str, environment: str, series: SeriesId | None = None
    ) -> tuple[str, ...]:
        """The latest sampled request traceparents (W3C, newest first, at most
        ``TRACES_KEPT`` per version) of the rows that fed ``series`` (every signal
        of a row shares its trace, so this is per version and slice; version
        ``"*"`` or ``series=None`` (all traffic) look at every version)."""
        version = ALL_TRAFFIC if series is None else series.version
        label = ALL_TRAFFIC if series is None else series.slice
        with self._lock:
            window = self._windows.get((model, environment))
            if window is None:
                return ()
            found: list[str] = []
            for (v, lbl), kept in window.traces.items():
                if lbl == label and (version == ALL_TRAFFIC or v == version):
                    found.extend(reversed(kept))
        return tuple(dict.fromkeys(found))[:TRACES_KEPT]

    def series_counts(self) -> dict[tuple[str, str], int]:
        """Distinct series in memory per (model, environment)."""
        with self._lock:
            return {
                key: len({k for b in window.buckets.values() for k in b.states})
                for key, window in self._windows.items()
            }

    @staticmethod
    def _check_kinds(window: _Window, data: DecodedBatch) -> None:
        """A signal stays numeric or categorical for the life of its window."""
        for signals, categorical in (
            (data.numeric_signals, False),
            ((c[:2] for c in data.categorical), True),
        ):
            for kind, name in signals:
                known = window.categorical.get((kind, name))
                if known is not None and known != categorical:
                    was, now = ("categorical", "numeric") if known else ("numeric", "categorical")
                    raise InvalidInput(
                        f"signal {kind.value} {name!r} of {data.model}/{data.environment} was "
                        f"{was} in earlier batches and is {now} here; keep one type per signal name"
                    )

    def _accumulate(self, window: _Window, data: DecodedBatch) -> None:
        types = window.categorical
        if len(types) < self._settings.max_series:  # bounded like the series themselves
            for kind, name in data.numeric_signals:
                types[(kind, name)] = False
            for kind, name, _ in data.categorical:
                types[(kind, name)] = True
        if data.fingerprint is not None:
            fp, old = data.fingerprint, window.fingerprint
            if old is None or (not (fp.hash and fp.hash == old.hash) and fp != old):
                window.fingerprint = pb.Fingerprint()
                window.fingerprint.CopyFrom(fp)

        width = self._settings.bucket_seconds
        starts = np.floor_divide(data.timestamps, width).astype(np.int64) * width
        first = int(starts[0])
        if (starts == first).all():
            bucket_starts = [first]
            bucket_codes: _Index = np.zeros(data.rows, dtype=np.intp)
        else:
            unique, inverse = np.unique(starts, return_inverse=True)
            bucket_starts = [int(b) for b in unique]
            bucket_codes = inverse.astype(np.intp).reshape(-1)
        newest = (
            bucket_starts[-1] if window.newest is None else max(window.newest, bucket_starts[-1])
        )
        window.newest = newest
        buckets = [self._bucket(window, b) for b in bucket_starts]
        if len(buckets) == 1:
            buckets[0].pending += data.rows
        else:
            for bucket, rows in zip(
                buckets, np.bincount(bucket_codes, minlength=len(buckets)).tolist(), strict=True
            ):
                bucket.pending += rows

        # All traffic, and the slices that hold for the whole batch: same rows.
        whole = [ALL_TRAFFIC]
        for attr, value in data.batch_slices:
            whole.append(self._slice_label(window, attr, value, data.rows))
        for code, idx in _groups(bucket_codes, len(buckets)):
            self._feed(window, buckets[code], data, idx, whole)

        for column in data.slices:
            labels: list[str] = []
            label_index: dict[str, int] = {}
            targets = np.empty(len(column.distinct), dtype=np.intp)
            if len(column.distinct) == 1:
                value_codes: _Index = np.zeros(data.rows, dtype=np.intp)
                value_rows = [data.rows]
            else:
                index = {v: i for i, v in enumerate(column.distinct)}
                value_codes = np.fromiter(
                    map(index.__getitem__, column.values), dtype=np.intp, count=data.rows
                )
                value_rows = np.bincount(value_codes, minlength=len(column.distinct)).tolist()
            for i, value in enumerate(column.distinct):
                if not value:
                    targets[i] = -1
                    continue
                label = self._slice_label(window, column.name, value, value_rows[i])
                targets[i] = label_index.setdefault(label, len(labels))
                if targets[i] == len(labels):
                    labels.append(label)
            if not labels:
                continue
            row_targets = targets[value_codes]
            codes = np.where(row_targets >= 0, bucket_codes * len(labels) + row_targets, -1)
            for code, idx in _groups(codes, len(buckets) * len(labels)):
                self._feed(
                    window, buckets[code // len(labels)], data, idx, [labels[code % len(labels)]]
                )

    def _slice_label(self, window: _Window, attr: str, value: str, rows: int) -> str:
        """``attr=value``, or ``attr=__other__`` once the attribute has its fill of values."""
        admitted = window.slice_values.setdefault(attr, set())
        if value not in admitted:
            if len(admitted) >= self._settings.max_slice_values:
                self._counts["slice_values_folded"] += rows
                return f"{attr}={OTHER}"
            admitted.add(value)
        return f"{attr}={value}"

    def _bucket(self, window: _Window, start: int) -> _Bucket:
        bucket = window.buckets.get(start)
        if bucket is None:
            writer = self.writer
            if window.horizon is not None and start < window.horizon:
                # This bucket may have been flushed and dropped: never overwrite that partial.
                self._late += 1
                writer = f"{self.writer}{_LATE}{self._late}"
            bucket = window.buckets[start] = _Bucket(writer)
        return bucket

    def _admit(self, window: _Window, key: _Key, values: int) -> bool:
        """Whether a series new to its bucket may be kept: past ``max_series`` series
        in memory per (model, environment), a new one is refused and its values counted."""
        if key in window.series:
            return True
        if len(window.series) < self._settings.max_series:
            window.series.add(key)
            return True
        self._counts["values_refused"] += values
        now = time.monotonic()
        if now - self._refused_logged >= 60.0:  # at most one warning a minute
            self._refused_logged = now
            log.warning(
                "series %r refused: %d series in memory for this model and environment,"
                " the max_series bound; its values are counted (values_refused), not stored",
                SeriesId(*key).encode().replace("\x1f", "/"),
                len(window.series),
            )
        return False

    def _block(
        self,
        window: _Window,
        bucket: _Bucket,
        version: str,
        label: str,
        signals: tuple[tuple[Kind, str], ...],
        rows: int,
    ) -> _Block:
        """The block gathering the numeric rows of (version, label, signals) in
        ``bucket``, its series admitted (or refused) and their states made."""
        if len(bucket.blocks) >= _MAX_BLOCKS:
            bucket.drop_blocks()
        states = bucket.states
        compression, exact_limit = self._settings.compression, self._settings.exact_limit
        kept: list[NumericState | None] = []
        admitted: list[_Key] = []
        for kind, name in signals:
            key = (version, label, kind, name)
            state = states.get(key)
            if state is None:
                if not self._admit(window, key, rows):
                    kept.append(None)
                    continue
                state = states[key] = NumericState(compression, exact_limit)
            assert isinstance(state, NumericState)  # _check_kinds keeps types apart
            kept.append(state)
            admitted.append(key)
        block = bucket.blocks[(version, label, signals)] = _Block(kept, tuple(admitted))
        for key in block.admitted:
            bucket.held.setdefault(key, []).append(block)
        return block

    def _feed(
        self,
        window: _Window,
        bucket: _Bucket,
        data: DecodedBatch,
        idx: _Index | None,
        slices: Sequence[str],
    ) -> None:
        """Add the rows ``idx`` (None: all) of every signal to the series of each slice."""
        states, dirty, version = bucket.states, bucket.dirty, data.version
        signals = data.numeric_signals
        if signals:
            numeric = data.numeric if idx is None else np.take(data.numeric, idx, axis=1)
            rows = numeric.shape[1]
            blocks = bucket.blocks
            for label in slices:
                block = blocks.get((version, label, signals))
                if block is None:
                    block = self._block(window, bucket, version, label, signals, rows)
                elif block.refused:
                    self._counts["values_refused"] += block.refused * rows
                if not block.admitted:
                    continue
                block.parts.append(numeric)
                block.rows += rows
                dirty.update(block.admitted)
                if block.rows >= _BUFFER_VALUES:
                    block.drain()
        if not data.categorical:
            return
        chosen_rows = None if idx is None else idx.tolist()
        capacity = self._settings.categorical_capacity
        for kind, name, values in data.categorical:
            chosen = values if chosen_rows is None else [values[j] for j in chosen_rows]
            for label in slices:
                key = (version, label, kind, name)
                table = states.get(key)
                if table is None:
                    if not self._admit(window, key, len(chosen)):
                        continue
                    table = states[key] = CategoricalState(capacity)
                assert isinstance(table, CategoricalState)  # _check_kinds keeps types apart
                table.add(chosen)
                dirty.add(key)

    # -- flush -----------------------------------------------------------------

    def flush(self) -> int:
        """Write every series changed since the last flush to the store (the
        bucket's cumulative state, so repeating is harmless); return the series
        written. Blocking: async callers use ``asyncio.to_thread``.

        If the store fails, the changed state is kept for the next flush and the
        first error is raised after every (model, environment) was tried.
        """
        with self._flush_lock:
            work: list[tuple[str, str, list[Partial], list[_Taken]]] = []
            with self._lock:
                for (model, environment), window in self._windows.items():
                    partials: list[Partial] = []
                    taken: list[_Taken] = []
                    for start, bucket in window.buckets.items():
                        if not bucket.dirty:
                            continue
                        series = {
                            SeriesId(*key).encode(): bucket.encode(key) for key in bucket.dirty
                        }
                        partials.append(Partial(start, bucket.writer, series))
                        taken.append((window, start, bucket, bucket.dirty, bucket.pending))
                        bucket.dirty = set()
                        bucket.pending = 0
                    if partials:
                        work.append((model, environment, partials, taken))

            written = 0
            error: Exception | None = None
            for model, environment, partials, taken in work:
                try:
                    self._store.write_partials(
                        model, environment, partials, ttl_seconds=self._settings.retention_seconds
                    )
                except Exception as err:  # keep everything whatever went wrong, then report
                    with self._lock:
                        for window, start, bucket, keys, rows in taken:
                            if window.buckets.get(start) is bucket:
                                bucket.dirty |= keys
                                bucket.pending += rows
                            elif rows:  # pushed out of memory by _bound meanwhile
                                key = (model, environment)
                                self._counts["records_dropped_unflushed"] += rows
                                self._store_dropped[key] = self._store_dropped.get(key, 0) + rows
                        self._counts["flush_failures"] += 1
                    error = error or err
                    continue
                written += sum(len(p.series) for p in partials)

            with self._lock:
                self._counts["flushes"] += 1
                self._counts["series_flushed"] += written
                self._evict()
            if error is not None:
                raise error
            return written

    def _evict(self) -> None:
        """Drop flushed buckets behind the newest by more than the margin, or past retention,
        or old enough that compaction may merge them (``sidecar.compaction``): a row
        arriving for such a bucket later goes to a fresh ``#late`` partial."""
        width = self._settings.bucket_seconds
        now = self._clock()
        settled = now - max(_COMPACTABLE, (_KEEP_BUCKETS + 1) * width)
        expired = math.floor(max(now - self._settings.retention_seconds, settled))
        for window in self._windows.values():
            if window.newest is None:
                continue
            cutoff = max(window.newest - _KEEP_BUCKETS * width, expired)
            if window.horizon is not None and cutoff <= window.horizon:
                cutoff = window.horizon
            window.horizon = cutoff
            gone = [s for s, b in window.buckets.items() if s < cutoff and not b.dirty]
            for start in gone:
                del window.buckets[start]
            if gone:  # the series bound counts the series of the buckets in memory
                window.series = {k for b in window.buckets.values() for k in b.states}
                for bucket in window.buckets.values():  # refused series may fit now
                    bucket.drop_blocks(refusing_only=True)

    # -- queries ---------------------------------------------------------------

    def read(
        self,
        model: str,
        environment: str,
        start: float,
        end: float,
        versions: Sequence[str] = (),
    ) -> WindowData:
        """Merge every writer's stored partials of the buckets starting in
        [floor(start), end). Flush first to include this sidecar's latest data.

        Without ``versions`` all versions are merged under version ``"*"``.
        With ``versions`` only those are read, merged under ``"*"`` when more
        than one is listed, else kept under the one version.
        """
        wanted = frozenset(versions)
        merged_as = next(iter(wanted)) if len(wanted) == 1 else ALL_TRAFFIC
        blobs: dict[SeriesId, list[bytes]] = {}
        present: set[str] = set()
        writers: set[str] = set()
        first, last = math.floor(start), math.ceil(end)
        partials = (
            self._store.read_partials(model, environment, first, last) if first < last else []
        )
        for partial in partials:
            used = False
            for text, blob in partial.series.items():
                sid = SeriesId.parse(text)
                if wanted and sid.version not in wanted:
                    continue
                present.add(sid.version)
                used = True
                target = SeriesId(merged_as, sid.slice, sid.kind, sid.signal)
                blobs.setdefault(target, []).append(blob)
            if used:
                writers.add(_LATE_SUFFIX.sub("", partial.writer))
        series = {sid: merge_encoded(parts) for sid, parts in sorted(blobs.items())}
        return WindowData(
            model=model,
            environment=environment,
            start=start,
            end=end,
            versions=tuple(sorted(present)),
            writers=tuple(sorted(writers)),
            series=series,
        )

    def fingerprint(self, model: str, environment: str) -> pb.Fingerprint | None:
        """The latest fingerprint ingested for (model, environment), or None."""
        with self._lock:
            window = self._windows.get((model, environment))
            if window is None or window.fingerprint is None:
                return None
            copy = pb.Fingerprint()
            copy.CopyFrom(window.fingerprint)
            return copy

    def stats(self) -> dict[str, int]:
        """Counters: batches/records accepted and rejected, slice values folded
        (rows that went to ``__other__``), flushes, buckets and records dropped
        unflushed (``max_buffered_buckets``), and what is in memory."""
        with self._lock:
            counts = dict(self._counts)
            counts["series_in_memory"] = sum(
                len(b.states) for w in self._windows.values() for b in w.buckets.values()
            )
            counts["buckets_in_memory"] = sum(len(w.buckets) for w in self._windows.values())
            counts["series_dirty"] = sum(
                len(b.dirty) for w in self._windows.values() for b in w.buckets.values()
            )
        return counts
