"""Preallocated columnar buffers and the bounded hand-off to the shipper.

The request thread copies the signals of a sampled call into the current
:class:`ColumnBuffer` under one lock: one ``array('d')`` per numeric signal
(NaN = missing), one list of strings per categorical signal ("" = missing).
A full buffer goes to a bounded queue and a free buffer from the pool takes
its place. When the queue is full the new rows are dropped and counted: the
request thread never waits for the shipper.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping
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

#: One record: (features, outputs); either may be None.
Row = tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]


class ColumnBuffer:
    """One batch of rows in columnar form; reused after it is shipped."""

    __slots__ = (
        "_empty",
        "_nan",
        "_spare_cat",
        "_spare_num",
        "capacity",
        "categorical",
        "has_ids",
        "kinds",
        "last_overflow_row",
        "n",
        "numeric",
        "request_ids",
        "started",
        "timestamps",
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
        self.numeric: dict[str, array[float]] = {}
        self.categorical: dict[str, list[str]] = {}
        self.kinds: dict[str, int] = {}
        self.last_overflow_row = -1
        # Columns of earlier batches, refilled and ready for new signals.
        self._spare_num: list[array[float]] = []
        self._spare_cat: list[list[str]] = []

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

    def reset(self) -> None:
        """Refill every column with missing values and forget the signal names."""
        nan, empty = self._nan, self._empty
        for col in self.numeric.values():
            col[:] = nan
            self._spare_num.append(col)
        for cat in self.categorical.values():
            cat[:] = empty
            self._spare_cat.append(cat)
        self.numeric.clear()
        self.categorical.clear()
        self.kinds.clear()
        if self.has_ids:
            self.request_ids[:] = empty
            self.has_ids = False
        self.n = 0
        self.last_overflow_row = -1


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
        rows: Iterable[Row],
    ) -> None:
        """Append one row per element of ``rows``, each carrying the call's signals."""
        ready = False
        with self._lock:
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
                num = buf.numeric
                col = num.get(LATENCY_NAME) or self._numeric(buf, row, LATENCY_NAME, LATENCY)
                if col is not None:
                    col[row] = latency
                if cpu is not None:
                    col = num.get(CPU_NAME) or self._numeric(buf, row, CPU_NAME, RESOURCE)
                    if col is not None:
                        col[row] = cpu
                col = num.get(ERROR_NAME) or self._numeric(buf, row, ERROR_NAME, ERROR)
                if col is not None:
                    col[row] = 1.0 if error else 0.0
                if error_type is not None:
                    self._slow(buf, row, ERROR_TYPE_NAME, error_type, ERROR)
                if features:
                    self._put(buf, row, features, FEATURE)
                if outputs:
                    self._put(buf, row, outputs, OUTPUT)
                if row + 1 == buf.capacity and self._hand_off() is not None:
                    ready = True
        if ready:
            self._on_ready()

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

    def _slow(self, buf: ColumnBuffer, row: int, name: str, value: Any, kind: int) -> None:
        if value is None:
            return  # missing: the column already holds NaN / ""
        if isinstance(value, str):
            cat = buf.categorical.get(name)
            if cat is None:
                if name in buf.numeric or not self._room(buf, row):
                    return  # numeric in this batch already: a string counts as missing
                cat = buf.new_categorical(name, kind)
            cat[row] = value
            return
        if not hasattr(type(value), "__float__") and not hasattr(type(value), "__index__"):
            return  # neither number nor string: missing
        col = buf.numeric.get(name)
        if col is None:
            if name in buf.categorical or not self._room(buf, row):
                return
            col = buf.new_numeric(name, kind)
        try:
            col[row] = value
        except OverflowError:  # an int too large for a double
            col[row] = _INF if value > 0 else -_INF
        except Exception:
            return

    def _numeric(self, buf: ColumnBuffer, row: int, name: str, kind: int) -> array[float] | None:
        if not self._room(buf, row):
            return None
        return buf.new_numeric(name, kind)

    def _room(self, buf: ColumnBuffer, row: int) -> bool:
        if len(buf.kinds) < self.max_signals:
            return True
        if buf.last_overflow_row != row:  # count each row once
            buf.last_overflow_row = row
            self.signal_overflow += 1
        return False

    def _hand_off(self) -> ColumnBuffer | None:
        """Queue the full current buffer; return the new current one, or None (queue full)."""
        if len(self._queue) >= self.queue_batches:
            return None
        if self._free:
            nxt = self._free.pop()
        elif self._allocated < self._max_buffers:
            nxt = ColumnBuffer(self.batch_size)
            self._allocated += 1
        else:
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
            if self._free:
                nxt = self._free.pop()
            elif self._allocated < self._max_buffers:
                nxt = ColumnBuffer(self.batch_size)
                self._allocated += 1
            else:
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
