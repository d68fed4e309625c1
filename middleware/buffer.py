"""Bounded row buffers on the request thread, columnar batches on the shipper's.

The request thread does the least it can for a sampled call: under one lock it
appends one tuple to the current :class:`ColumnBuffer` (the call's timestamp,
latency, CPU time, error, ids, and the *values* of its features and outputs,
copied out of the mappings in one C call each). A full buffer goes to a
bounded queue and a free buffer from the pool takes its place; when the queue
is full the new rows are dropped and counted: the request thread never waits
for the shipper.

The shipper thread turns a buffer's rows into columns when it takes the
buffer (:meth:`Recorder.pop`, :meth:`Recorder.swap_partial`): one
``array('d')`` per numeric signal (NaN = missing), one list of strings per
categorical signal ("" = missing), built in bulk with ``zip`` and ``array``.

Fast path: the features (and outputs) mapping of a handler usually has the
same keys on every call. Each distinct key tuple gets a :class:`_Plan` (cached,
at most ``_MAX_PLANS``); a row stores the plan and the values read with the
plan's ``operator.itemgetter``, so the values are copied when the call is
recorded (a mapping the handler changes later does not change the row), and
the shipper transposes all rows of one plan at once.
"""

from __future__ import annotations

import operator
import struct
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from baselined.v1 import baselined_pb2 as pb

__all__ = ["ColumnBuffer", "Recorder", "Row"]

FEATURE = pb.SIGNAL_KIND_FEATURE
OUTPUT = pb.SIGNAL_KIND_OUTPUT
LATENCY = pb.SIGNAL_KIND_LATENCY
RESOURCE = pb.SIGNAL_KIND_RESOURCE
ERROR = pb.SIGNAL_KIND_ERROR

LATENCY_NAME = "latency_seconds"
CPU_NAME = "cpu_seconds"
ERROR_NAME = "error"
ERROR_TYPE_NAME = "error_type"

_NAN = float("nan")
_INF = float("inf")
_MAX_PLANS = 64
#: Most per-row slice attributes in one buffer (the sidecar accepts 16 with batch_slices).
MAX_SLICE_COLUMNS = 8

#: One record: (features, outputs); either may be None.
Row = tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]


class _Plan:
    """The keys of a mapping, in order, and how to read their values in one go."""

    __slots__ = ("get", "keys", "width")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.width = len(keys)
        if self.width == 1:
            key = keys[0]
            self.get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = lambda m: (m[key],)
        else:
            self.get = operator.itemgetter(*keys)


#: The plan of ``{"output": x}`` (what the default outputs extractor makes of a number).
OUTPUT_PLAN = _Plan(("output",))

# A buffered row, as the request thread leaves it:
# (timestamp, latency, cpu or None, error 0.0/1.0, error_type or None,
#  request_id or None, traceparent or None, slices or None,
#  features plan or None, feature values, outputs plan or None, output values)
_RawRow = tuple[Any, ...]


def _floats(values: Sequence[Any]) -> array[float]:
    """``array('d', values)``; a value that is not a number becomes NaN."""
    col = array("d")
    try:
        # struct reads each value with PyFloat_AsDouble: 4x faster than array('d', values).
        col.frombytes(struct.pack(f"={len(values)}d", *values))
        return col
    except Exception:
        col = array("d", [_NAN]) * len(values)
        for i, v in enumerate(values):
            if v is not None:
                _store(col, i, v)
        return col


def _store(col: array[float], i: int, value: Any) -> None:
    try:
        col[i] = value  # int, float, bool and anything with __float__
    except OverflowError:  # an int too large for a double
        col[i] = _INF if value > 0 else -_INF
    except Exception:  # str, or another non-number: missing
        pass


def _valid(value: Any) -> bool:
    """A value that makes a column: a string or something with ``__float__``/``__index__``."""
    if value is None:
        return False
    kind = type(value)
    return (
        kind is float
        or kind is str
        or isinstance(value, str)
        or hasattr(kind, "__float__")
        or hasattr(kind, "__index__")
    )


class ColumnBuffer:
    """One batch of rows: appended by the request thread, then made columnar
    (:meth:`columnize`) by the shipper; reused after it is shipped."""

    __slots__ = (
        "capacity",
        "categorical",
        "has_ids",
        "has_traces",
        "kinds",
        "n",
        "numeric",
        "raw",
        "request_ids",
        "slices",
        "started",
        "timestamps",
        "traceparents",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw: list[_RawRow] = []
        self.started = 0.0  # monotonic time of the first row
        self._clear()

    def _clear(self) -> None:
        self.n = 0
        self.timestamps: array[float] = array("d")
        self.request_ids: list[str] = []
        self.has_ids = False
        self.traceparents: list[str] = []  # W3C traceparent per row ("" = none)
        self.has_traces = False
        self.numeric: dict[str, array[float]] = {}
        self.categorical: dict[str, list[str]] = {}
        self.slices: dict[str, list[str]] = {}  # per-row slice attributes ("" = none)
        self.kinds: dict[str, int] = {}

    def numeric_columns(self) -> Iterator[tuple[str, int, array[float]]]:
        """(name, kind, values of the ``n`` rows) of every numeric signal."""
        kinds = self.kinds
        for name, col in self.numeric.items():
            yield name, kinds[name], col

    def reset(self) -> None:
        """Forget the rows and the signal names."""
        self.raw.clear()
        self._clear()

    # -- shipper thread ---------------------------------------------------

    def columnize(self, max_signals: int) -> int:
        """Turn the buffered rows into columns; returns the number of rows that
        lost a signal to ``max_signals`` (or to the slice column limit)."""
        rows = self.raw
        n = self.n = len(rows)
        if n == 0:
            return 0
        (ts, lat, cpu, err, etype, rids, traces, slices, fps, fvs, ops, ovs) = zip(
            *rows, strict=True
        )
        self.timestamps = _floats(ts)
        numeric, kinds = self.numeric, self.kinds
        numeric[LATENCY_NAME] = _floats(lat)
        kinds[LATENCY_NAME] = LATENCY
        numeric[ERROR_NAME] = _floats(err)
        kinds[ERROR_NAME] = ERROR
        overflow: set[int] = set()
        if cpu.count(None) != n:
            if len(kinds) < max_signals:
                numeric[CPU_NAME] = _floats(cpu) if None not in cpu else _with_nan(cpu)
                kinds[CPU_NAME] = RESOURCE
            else:
                overflow.update(i for i, c in enumerate(cpu) if c is not None)
        if etype.count(None) != n:
            if len(kinds) < max_signals:
                self.categorical[ERROR_TYPE_NAME] = [e if isinstance(e, str) else "" for e in etype]
                kinds[ERROR_TYPE_NAME] = ERROR
            else:
                overflow.update(i for i, e in enumerate(etype) if e is not None)
        if rids.count(None) != n:
            self.request_ids = [r or "" for r in rids]
            self.has_ids = True
        if traces.count(None) != n:
            self.traceparents = [t or "" for t in traces]
            self.has_traces = True
        if slices.count(None) != n:
            self._slices(slices, overflow)
        segments: dict[str, list[tuple[int, Sequence[int] | None, Sequence[Any]]]] = {}
        for plans, values, kind in ((fps, fvs, FEATURE), (ops, ovs, OUTPUT)):
            first = plans[0]
            if plans.count(first) == n:  # one plan for every row: the common case
                if first is not None:
                    for name, col in zip(first.keys, zip(*values, strict=True), strict=True):
                        segments.setdefault(name, []).append((kind, None, col))
                continue
            groups: dict[_Plan, tuple[list[int], list[tuple[Any, ...]]]] = {}
            for i, (plan, vals) in enumerate(zip(plans, values, strict=True)):
                if plan is not None:
                    group = groups.get(plan)
                    if group is None:
                        group = groups[plan] = ([], [])
                    group[0].append(i)
                    group[1].append(vals)
            for plan, (index, vals_) in groups.items():
                for name, col in zip(plan.keys, zip(*vals_, strict=True), strict=True):
                    segments.setdefault(name, []).append((kind, index, col))
        for name, segs in segments.items():
            if len(segs) == 1 and segs[0][1] is None and name not in kinds:
                skind, _, svalues = segs[0]
                packed = array("d")
                try:  # every value a number: one C call
                    packed.frombytes(struct.pack(f"={n}d", *svalues))
                except Exception:
                    pass
                else:
                    if len(kinds) < max_signals:
                        numeric[name] = packed
                        kinds[name] = skind
                    else:
                        overflow.update(range(n))
                    continue
            self._merge(name, segs, n, max_signals, overflow)
        return len(overflow)

    def _merge(
        self,
        name: str,
        segs: list[tuple[int, Sequence[int] | None, Sequence[Any]]],
        n: int,
        max_signals: int,
        overflow: set[int],
    ) -> None:
        """The value-by-value path: missing or mixed values, a name in several
        plans or shared by features and outputs. A later non-missing value of
        the same row (an output after a feature) wins. The column is numeric or
        categorical according to its first value; a value of the other type is
        missing."""
        merged: list[Any] = [None] * n
        for _, index, values in segs:
            if index is None:
                index = range(n)
            for i, v in zip(index, values, strict=True):
                if v is not None:
                    merged[i] = v
        numeric, categorical, kinds = self.numeric, self.categorical, self.kinds
        col = numeric.get(name)
        cat = categorical.get(name)
        if col is None and cat is None:
            first = next((v for v in merged if _valid(v)), None)
            if first is None:
                return  # all missing: no column
            if len(kinds) >= max_signals:
                overflow.update(i for i, v in enumerate(merged) if _valid(v))
                return
            kinds[name] = segs[0][0]
            if isinstance(first, str):
                cat = categorical[name] = [""] * n
            else:
                col = numeric[name] = array("d", [_NAN]) * n
        if cat is not None:
            for i, v in enumerate(merged):
                if isinstance(v, str):
                    cat[i] = v
        elif col is not None:
            for i, v in enumerate(merged):
                if v is not None:
                    _store(col, i, v)

    def _slices(self, slices: Sequence[Mapping[str, str] | None], overflow: set[int]) -> None:
        cols = self.slices
        n = len(slices)
        for row, attrs in enumerate(slices):
            if not attrs:
                continue
            for name, value in attrs.items():
                col = cols.get(name)
                if col is None:
                    if len(cols) >= MAX_SLICE_COLUMNS:
                        overflow.add(row)
                        continue
                    col = cols[name] = [""] * n
                col[row] = value


def _with_nan(values: Sequence[Any]) -> array[float]:
    return _floats([_NAN if v is None else v for v in values])


class Recorder:
    """Appends sampled rows to the current buffer; hands full ones to a bounded queue.

    ``on_ready`` is called (outside the lock) whenever a buffer is queued.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        queue_batches: int,
        max_signals: int,
        on_ready: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.batch_size = batch_size
        self.queue_batches = queue_batches
        self.max_signals = max_signals
        self._on_ready = on_ready
        self._clock = clock
        self._plans: dict[tuple[str, ...], _Plan] = {}
        # The plans of the last features and outputs recorded: the first guess.
        self._fplan: _Plan | None = None
        self._oplan: _Plan | None = None
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._current = ColumnBuffer(self.batch_size)
        self._allocated = 1
        # The current buffer, the queued ones and one being encoded by the shipper.
        self._max_buffers = self.queue_batches + 2
        self._free: list[ColumnBuffer] = []
        self._queue: deque[ColumnBuffer] = deque()
        self.sampled = 0
        # Set by the shipper while the sidecar is unreachable: rows are then
        # counted and dropped here, before any copying.
        self.down = False
        self.dropped_unavailable = 0
        self.dropped_queue_full = 0
        self.signal_overflow = 0

    def reset_after_fork(self) -> None:
        """Forget the parent's rows (the parent ships them) and its lock."""
        self._init_state()

    @property
    def allocated_buffers(self) -> int:
        """Buffers allocated so far (bounded by ``queue_batches + 2``)."""
        return self._allocated

    def queued(self) -> int:
        """Buffers waiting for the shipper."""
        return len(self._queue)

    # -- request thread -------------------------------------------------

    def _plan_of(self, values: Mapping[str, Any]) -> _Plan:
        keys = tuple(values)
        plan = self._plans.get(keys)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()  # a flood of key sets: keep the cache bounded
            plan = self._plans[keys] = _Plan(keys)
        return plan

    def _features(self, values: Mapping[str, Any]) -> tuple[_Plan, tuple[Any, ...]]:
        plan = self._fplan
        if plan is not None and len(values) == plan.width:
            try:
                return plan, plan.get(values)
            except KeyError:
                pass
        plan = self._fplan = self._plan_of(values)
        return plan, plan.get(values)

    def _outputs(self, values: Mapping[str, Any]) -> tuple[_Plan, tuple[Any, ...]]:
        plan = self._oplan
        if plan is not None and len(values) == plan.width:
            try:
                return plan, plan.get(values)
            except KeyError:
                pass
        plan = self._oplan = self._plan_of(values)
        return plan, plan.get(values)

    def record_one(
        self,
        ts: float,
        latency: float,
        cpu: float | None,
        features: Mapping[str, Any] | None,
        oplan: _Plan | None,
        ovalues: tuple[Any, ...] | None,
        traceparent: str | None,
    ) -> None:
        """The common case of :meth:`record`: one row, no error, id or slices;
        the outputs already read (``oplan`` and ``ovalues``)."""
        if self.down:
            with self._lock:
                self.dropped_unavailable += 1
            return
        fplan: _Plan | None
        fvalues: tuple[Any, ...] | None
        if features:
            fplan = self._fplan  # inlined _features: the same keys as last time
            if fplan is not None and len(features) == fplan.width:
                try:
                    fvalues = fplan.get(features)
                except KeyError:
                    fplan, fvalues = self._features(features)
            else:
                fplan, fvalues = self._features(features)
        else:
            fplan = fvalues = None
        row = (ts, latency, cpu, 0.0, None, None, traceparent, None, fplan, fvalues, oplan, ovalues)
        with self._lock:
            buf = self._current
            raw = buf.raw
            k = len(raw)
            if k < buf.capacity:
                if not k:
                    buf.started = self._clock()
                raw.append(row)
                self.sampled += 1
                if k + 1 < buf.capacity or self._hand_off() is None:
                    return
            elif not self._append_full(row):
                return
        self._on_ready()

    def record(
        self,
        ts: float,
        request_id: str | None,
        latency: float,
        cpu: float | None,
        error: bool,
        error_type: str | None,
        rows: Sequence[Row],
        slices: Mapping[str, str] | None = None,
        traceparent: str | None = None,
    ) -> None:
        """Append one row per element of ``rows``, each carrying the call's signals
        (and its per-row slice attributes ``slices`` and the W3C ``traceparent``
        of its request, when given)."""
        if self.down:
            with self._lock:
                self.dropped_unavailable += len(rows)
            return
        err = 1.0 if error else 0.0
        etype = error_type if error_type is not None else None
        rid = request_id or None
        trace = traceparent or None
        attrs = slices or None
        built = []
        for features, outputs in rows:
            fplan: _Plan | None
            oplan: _Plan | None
            if features:
                fplan, fvalues = self._features(features)
            else:
                fplan = fvalues = None
            if outputs:
                oplan, ovalues = self._outputs(outputs)
            else:
                oplan = ovalues = None
            built.append(
                (ts, latency, cpu, err, etype, rid, trace, attrs, fplan, fvalues, oplan, ovalues)
            )
        ready = False
        with self._lock:
            if self.down:
                self.dropped_unavailable += len(built)
                return
            for row in built:
                ready = self._append_full(row) or ready
        if ready:
            self._on_ready()

    def _append_full(self, row: _RawRow) -> bool:
        """Append ``row`` (the lock held), handing off full buffers; True when one was queued."""
        ready = False
        buf = self._current
        k = len(buf.raw)
        if k >= buf.capacity:
            nxt = self._hand_off()
            if nxt is None:
                self.dropped_queue_full += 1
                return False
            ready = True
            buf, k = nxt, 0
        if not k:
            buf.started = self._clock()
        buf.raw.append(row)
        self.sampled += 1
        if k + 1 == buf.capacity and self._hand_off() is not None:
            ready = True
        return ready

    def _next_free(self) -> ColumnBuffer | None:
        if self._free:
            return self._free.pop()
        if self._allocated < self._max_buffers:
            self._allocated += 1
            return ColumnBuffer(self.batch_size)
        return None

    def _hand_off(self) -> ColumnBuffer | None:
        """Queue the full current buffer; return the new current one, or None (queue full)."""
        if len(self._queue) >= self.queue_batches:
            return None
        nxt = self._next_free()
        if nxt is None:
            return None
        self._queue.append(self._current)
        self._current = nxt
        return nxt

    # -- shipper thread -------------------------------------------------

    def _columnize(self, buf: ColumnBuffer) -> ColumnBuffer:
        overflow = buf.columnize(self.max_signals)
        if overflow:
            with self._lock:
                self.signal_overflow += overflow
        return buf

    def pop(self) -> ColumnBuffer | None:
        """The oldest queued buffer (in columns), or None."""
        try:
            buf = self._queue.popleft()  # deque.popleft is atomic
        except IndexError:
            return None
        return self._columnize(buf)

    def swap_partial(self, older_than: float | None = None) -> ColumnBuffer | None:
        """Take the current buffer (in columns) if it has rows (and its first row is
        older than ``older_than`` seconds), replacing it with a free one. None otherwise."""
        with self._lock:
            buf = self._current
            if not buf.raw:
                return None
            if older_than is not None and self._clock() - buf.started < older_than:
                return None
            nxt = self._next_free()
            if nxt is None:
                return None
            self._current = nxt
        return self._columnize(buf)

    def partial_deadline(self, interval: float) -> float | None:
        """Monotonic time at which the current partial buffer is due, or None if empty."""
        buf = self._current
        return buf.started + interval if buf.raw else None

    def release(self, buf: ColumnBuffer) -> None:
        """Return a shipped (or dropped) buffer to the pool."""
        buf.reset()
        with self._lock:
            self._free.append(buf)
