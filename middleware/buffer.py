"""Preallocated columnar buffers and the bounded hand-off to the shipper.

The request thread copies the signals of a sampled call into the current
:class:`ColumnBuffer` under one lock. Numeric signals live in ``array('d')``
storage (NaN = missing), categorical ones in preallocated lists of strings
("" = missing). A full buffer goes to a bounded queue and a free buffer from
the pool takes its place; when the queue is full the new rows are dropped and
counted: the request thread never waits for the shipper.

Fast path: the features (and outputs) mapping of a handler usually has the
same keys, in the same order, on every call. The first such mapping of a
buffer defines a *block*: its numeric values are stored row-major in one
``array('d')`` and each later row with the same keys is copied with one
``operator.itemgetter`` and one ``struct.pack_into`` (two C calls instead of a
Python loop over the values). Rows with other keys, strings or missing values
take the per-value path. The shipper reads a block's columns with strided
slices.
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
_MIN_BLOCK = 4  # narrower mappings are as fast value by value
#: Most per-row slice attributes in one buffer (the sidecar accepts 16 with batch_slices).
MAX_SLICE_COLUMNS = 8

#: One record: (features, outputs); either may be None.
Row = tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]


class _Plan:
    """How to copy a mapping with these keys, in this order, in one go."""

    __slots__ = ("get", "keys", "missing", "pack", "stride", "width")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.width = len(keys)
        self.stride = 8 * self.width  # bytes per row
        self.pack = struct.Struct(f"={self.width}d").pack_into
        self.missing = array("d", [_NAN]) * self.width
        if self.width == 1:
            key = keys[0]
            self.get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = lambda m: (m[key],)
        else:
            self.get = operator.itemgetter(*keys)


class _Block:
    """Row-major numeric storage of the signals of one plan."""

    __slots__ = ("data", "kind", "plan")

    def __init__(self, plan: _Plan, capacity: int, kind: int) -> None:
        self.plan = plan
        self.kind = kind
        self.data = array("d", [_NAN]) * (capacity * plan.width)


class ColumnBuffer:
    """One batch of rows in columnar form; reused after it is shipped."""

    __slots__ = (
        "_empty",
        "_nan",
        "_spare_cat",
        "_spare_num",
        "blocks",
        "capacity",
        "categorical",
        "cpu",
        "error",
        "fblock",
        "has_ids",
        "has_traces",
        "in_block",
        "kinds",
        "last_overflow_row",
        "latency",
        "n",
        "numeric",
        "oblock",
        "request_ids",
        "slices",
        "started",
        "timestamps",
        "traceparents",
        "tried_blocks",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._nan = array("d", [_NAN]) * capacity
        self._empty = [""] * capacity
        self.n = 0
        self.started = 0.0  # monotonic time of the first row
        self.timestamps = array("d", self._nan)
        self.request_ids = list(self._empty)
        self.has_ids = False
        self.traceparents = list(self._empty)  # W3C traceparent per row ("" = none)
        self.has_traces = False
        self.numeric: dict[str, array[float]] = {}
        self.categorical: dict[str, list[str]] = {}
        self.slices: dict[str, list[str]] = {}  # per-row slice attributes ("" = none)
        self.kinds: dict[str, int] = {}
        self.blocks: list[_Block] = []
        self.in_block: dict[str, tuple[_Block, int]] = {}
        self.fblock: _Block | None = None
        self.oblock: _Block | None = None
        self.tried_blocks = False
        self.last_overflow_row = -1
        # Columns of earlier batches, refilled and ready for new signals.
        self._spare_num: list[array[float]] = []
        self._spare_cat: list[list[str]] = []
        self.latency = self.new_numeric(LATENCY_NAME, LATENCY)
        self.error = self.new_numeric(ERROR_NAME, ERROR)
        self.cpu: array[float] | None = None

    def new_numeric(self, name: str, kind: int) -> array[float]:
        """A NaN-filled column for a new numeric signal."""
        col = self._spare_num.pop() if self._spare_num else array("d", self._nan)
        self.numeric[name] = col
        self.kinds[name] = kind
        return col

    def new_categorical(self, name: str, kind: int) -> list[str]:
        """An empty-string-filled column for a new categorical signal."""
        col = self._spare_cat.pop() if self._spare_cat else list(self._empty)
        self.categorical[name] = col
        self.kinds[name] = kind
        return col

    def numeric_columns(self) -> Iterator[tuple[str, int, array[float]]]:
        """(name, kind, values of the first ``n`` rows) of every numeric signal."""
        n = self.n
        for name, col in self.numeric.items():
            yield name, self.kinds[name], col[:n]
        for block in self.blocks:
            width = block.plan.width
            stop = n * width
            for j, name in enumerate(block.plan.keys):
                yield name, block.kind, block.data[j:stop:width]

    def reset(self) -> None:
        """Refill every column with missing values and forget the signal names."""
        nan, empty = self._nan, self._empty
        for col in self.numeric.values():
            col[:] = nan
            self._spare_num.append(col)
        for cat in self.categorical.values():
            cat[:] = empty
            self._spare_cat.append(cat)
        for scol in self.slices.values():
            scol[:] = empty
            self._spare_cat.append(scol)
        self.numeric.clear()
        self.categorical.clear()
        self.slices.clear()
        self.kinds.clear()
        self.blocks.clear()
        self.in_block.clear()
        self.fblock = self.oblock = None
        self.tried_blocks = False
        if self.has_ids:
            self.request_ids[:] = empty
            self.has_ids = False
        if self.has_traces:
            self.traceparents[:] = empty
            self.has_traces = False
        self.n = 0
        self.last_overflow_row = -1
        self.latency = self.new_numeric(LATENCY_NAME, LATENCY)
        self.error = self.new_numeric(ERROR_NAME, ERROR)
        self.cpu = None


class Recorder:
    """Writes sampled rows into the current buffer; hands full ones to a bounded queue.

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
        ready = False
        with self._lock:
            if self.down:
                self.dropped_unavailable += len(rows)
                return
            for features, outputs in rows:
                buf = self._current
                row = buf.n
                if row >= buf.capacity:
                    nxt = self._hand_off()
                    if nxt is None:
                        self.dropped_queue_full += 1
                        continue
                    ready = True
                    buf, row = nxt, 0
                buf.n = row + 1
                self.sampled += 1
                if row == 0:
                    buf.started = self._clock()
                buf.timestamps[row] = ts
                if request_id:
                    buf.request_ids[row] = request_id
                    buf.has_ids = True
                if traceparent:
                    buf.traceparents[row] = traceparent
                    buf.has_traces = True
                buf.latency[row] = latency
                buf.error[row] = 1.0 if error else 0.0
                if cpu is not None:
                    col = buf.cpu
                    if col is None:
                        col = buf.cpu = self._numeric(buf, row, CPU_NAME, RESOURCE)
                    if col is not None:
                        col[row] = cpu
                if error_type is not None:
                    self._slow(buf, row, ERROR_TYPE_NAME, error_type, ERROR)
                if slices:
                    self._put_slices(buf, row, slices)
                if not buf.tried_blocks:
                    self._make_blocks(buf, features, outputs)
                if features:
                    block = buf.fblock
                    if block is None or len(features) != block.plan.width:
                        self._put(buf, row, features, FEATURE)
                    else:
                        plan = block.plan
                        try:
                            plan.pack(block.data, row * plan.stride, *plan.get(features))
                        except Exception:  # other keys, a string, None, or out of range
                            self._unpack_failed(block, row)
                            self._put(buf, row, features, FEATURE)
                if outputs:
                    block = buf.oblock
                    if block is None or len(outputs) != block.plan.width:
                        self._put(buf, row, outputs, OUTPUT)
                    else:
                        plan = block.plan
                        try:
                            plan.pack(block.data, row * plan.stride, *plan.get(outputs))
                        except Exception:
                            self._unpack_failed(block, row)
                            self._put(buf, row, outputs, OUTPUT)
                if row + 1 == buf.capacity and self._hand_off() is not None:
                    ready = True
        if ready:
            self._on_ready()

    @staticmethod
    def _unpack_failed(block: _Block, row: int) -> None:
        # pack_into zero-fills the row before it fails: make it missing again.
        width = block.plan.width
        block.data[row * width : (row + 1) * width] = block.plan.missing

    def _make_blocks(
        self,
        buf: ColumnBuffer,
        features: Mapping[str, Any] | None,
        outputs: Mapping[str, Any] | None,
    ) -> None:
        """At the first row of a buffer: blocks for all-numeric features and outputs."""
        buf.tried_blocks = True
        if features:
            buf.fblock = self._block(buf, features, FEATURE)
        if outputs:
            buf.oblock = self._block(buf, outputs, OUTPUT)

    def _block(self, buf: ColumnBuffer, values: Mapping[str, Any], kind: int) -> _Block | None:
        for value in values.values():
            if not isinstance(value, (int, float)):
                return None  # strings or missing values: the per-value path
        keys = tuple(values)
        if len(keys) < _MIN_BLOCK or len(buf.kinds) + len(keys) > self.max_signals:
            return None
        if any(name in buf.kinds for name in keys):
            return None
        plan = self._plans.get(keys)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            plan = self._plans[keys] = _Plan(keys)
        block = _Block(plan, buf.capacity, kind)
        buf.blocks.append(block)
        for j, name in enumerate(keys):
            buf.kinds[name] = kind
            buf.in_block[name] = (block, j)
        return block

    def _put(self, buf: ColumnBuffer, row: int, values: Mapping[str, Any], kind: int) -> None:
        num = buf.numeric
        for name, value in values.items():
            col = num.get(name)
            if col is not None:
                try:
                    col[row] = value  # int, float, bool and anything with __float__
                    continue
                except Exception:  # str, None, or a number out of range
                    pass
            self._slow(buf, row, name, value, kind)

    def _put_slices(self, buf: ColumnBuffer, row: int, slices: Mapping[str, str]) -> None:
        cols = buf.slices
        for name, value in slices.items():
            col = cols.get(name)
            if col is None:
                if len(cols) >= MAX_SLICE_COLUMNS:
                    if buf.last_overflow_row != row:  # count each row once
                        buf.last_overflow_row = row
                        self.signal_overflow += 1
                    continue
                col = cols[name] = buf._spare_cat.pop() if buf._spare_cat else list(buf._empty)
            col[row] = value

    def _slow(self, buf: ColumnBuffer, row: int, name: str, value: Any, kind: int) -> None:
        if value is None:
            return  # missing: the column already holds NaN / ""
        if isinstance(value, str):
            cat = buf.categorical.get(name)
            if cat is None:
                if name in buf.kinds or not self._room(buf, row):
                    return  # numeric in this batch already: a string counts as missing
                cat = buf.new_categorical(name, kind)
            cat[row] = value
            return
        if not hasattr(type(value), "__float__") and not hasattr(type(value), "__index__"):
            return  # neither number nor string: missing
        col = buf.numeric.get(name)
        if col is not None:
            data, index = col, row
        else:
            where = buf.in_block.get(name)
            if where is not None:
                block, j = where
                data, index = block.data, row * block.plan.width + j
            else:
                if name in buf.categorical or not self._room(buf, row):
                    return
                data, index = buf.new_numeric(name, kind), row
        try:
            data[index] = value
        except OverflowError:  # an int too large for a double
            data[index] = _INF if value > 0 else -_INF
        except Exception:
            return

    def _numeric(self, buf: ColumnBuffer, row: int, name: str, kind: int) -> array[float] | None:
        if name in buf.kinds or not self._room(buf, row):
            return None
        return buf.new_numeric(name, kind)

    def _room(self, buf: ColumnBuffer, row: int) -> bool:
        if len(buf.kinds) < self.max_signals:
            return True
        if buf.last_overflow_row != row:  # count each row once
            buf.last_overflow_row = row
            self.signal_overflow += 1
        return False

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

    def pop(self) -> ColumnBuffer | None:
        """The oldest queued buffer, or None."""
        try:
            return self._queue.popleft()  # deque.popleft is atomic
        except IndexError:
            return None

    def swap_partial(self, older_than: float | None = None) -> ColumnBuffer | None:
        """Take the current buffer if it has rows (and its first row is older than
        ``older_than`` seconds), replacing it with a free one. None otherwise."""
        with self._lock:
            buf = self._current
            if buf.n == 0:
                return None
            if older_than is not None and self._clock() - buf.started < older_than:
                return None
            nxt = self._next_free()
            if nxt is None:
                return None
            self._current = nxt
            return buf

    def partial_deadline(self, interval: float) -> float | None:
        """Monotonic time at which the current partial buffer is due, or None if empty."""
        buf = self._current
        return buf.started + interval if buf.n else None

    def release(self, buf: ColumnBuffer) -> None:
        """Return a shipped (or dropped) buffer to the pool."""
        buf.reset()
        with self._lock:
            self._free.append(buf)
