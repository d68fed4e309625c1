"""The background shipper: streams columnar batches to the sidecar over gRPC.

One daemon thread per :class:`Shipper` takes full buffers from the
:class:`~middleware.buffer.Recorder` (and a partial one every
``flush_interval``), encodes each as a ``SampleBatch`` and writes it to one
client stream (``Ingest.Ingest``). A client stream only answers when it ends,
so the stream is rotated (half-closed and replaced) every ``rotate_interval``
seconds or ``rotate_batches`` batches; its answer confirms how many rows were
accepted and rejected.

Loss bound: when a stream fails (sidecar down, restarted, or too slow), the
rows written to it and not yet confirmed are counted as dropped
(``sidecar_unavailable``): at most one rotation's worth of rows plus the
streams still closing. Then the shipper reconnects on a fresh channel after an
exponential backoff with jitter; batches that arrive meanwhile are dropped and
counted instead of piling up.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from baselined.v1 import baselined_pb2 as pb

from middleware.buffer import ColumnBuffer, Recorder

__all__ = [
    "MAX_DROPPED_REASONS",
    "MAX_MESSAGE_BYTES",
    "Backoff",
    "RateLimitedLog",
    "Shipper",
    "encode_dropped",
]

logger = logging.getLogger("baselined.middleware")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest batch message sent (the sidecar's default ``max_batch_bytes``); larger
ones (long categorical strings can get there) are dropped and counted
(``message_too_large``), and gRPC's ``max_send_message_length`` is set to it."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``initial * multiplier**attempt``, capped at ``maximum``,
    then shortened by up to ``jitter`` (a fraction) at random.

    >>> Backoff(initial=0.1, maximum=5.0, jitter=0.0).delay(3, random.Random(0))
    0.8
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())


class RateLimitedLog:
    """Logs a warning per key at most once per ``interval`` seconds, with the
    number of occurrences suppressed in between."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        """Log ``message % args`` unless ``key`` was logged less than ``interval`` ago."""
        try:
            now = self._clock()
            with self._lock:
                last = self._last.get(key)
                if last is not None and now - last < self._interval:
                    self._suppressed[key] = self._suppressed.get(key, 0) + 1
                    return
                self._last[key] = now
                suppressed = self._suppressed.pop(key, 0)
            if suppressed:
                message += " (%d similar messages suppressed)"
                args = (*args, suppressed)
            logger.warning(message, *args, exc_info=exc_info)
        except Exception:  # logging must never break the caller either
            pass


class _Stream:
    """One client stream: a bounded hand-off queue read by gRPC's sender thread."""

    def __init__(self, stub: Any, clock: Callable[[], float]) -> None:
        self.handoff: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
        self.closed = False  # set when the generator must stop
        self.rows = 0
        self.batches = 0
        self.opened = clock()
        self.deadline = 0.0  # for a half-closed stream: when to give up on its answer
        self.future: grpc.Future[pb.IngestResponse] = stub.future(
            self._requests(), wait_for_ready=False
        )

    def _requests(self) -> Iterator[bytes]:
        while True:
            try:
                item = self.handoff.get(timeout=0.2)
            except queue.Empty:
                if self.closed:
                    return
                continue
            if item is None:
                return
            yield item

    def abandon(self) -> None:
        """Cancel the call and let the generator end."""
        self.closed = True
        self.future.cancel()
        try:
            while True:
                self.handoff.get_nowait()
        except queue.Empty:
            pass


class Shipper:
    """Sends the recorder's batches to the sidecar from a daemon thread.

    Counters (``shipped``, ``accepted``, ``rejected``, ``dropped_unavailable``,
    ``dropped_too_large``,
    ``reconnects``) are read by :meth:`middleware.Shadow.stats`. ``dropped``,
    when given, returns the process's cumulative drop counts by reason; they go
    in the ``dropped`` field of every batch.
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        target: str,
        template: pb.SampleBatch,
        flush_interval: float,
        rotate_interval: float = 5.0,
        rotate_batches: int = 256,
        send_timeout: float = 5.0,
        response_timeout: float = 5.0,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        log: RateLimitedLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        dropped: Callable[[], Mapping[str, int]] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._recorder = recorder
        self._max_message_bytes = max_message_bytes
        self._credentials = credentials  # TLS and/or a bearer token: middleware.client
        self._dropped = dropped
        self._target = target
        self._template = template
        self._template_bytes = template.SerializeToString()
        self._flush_interval = flush_interval
        self._rotate_interval = rotate_interval
        self._rotate_batches = rotate_batches
        self._send_timeout = send_timeout
        self._response_timeout = response_timeout
        self._backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._channel_options = list(channel_options)
        self._log = log or RateLimitedLog()
        self._clock = clock
        self._init_state()

    def _init_state(self) -> None:
        self._wake = threading.Event()
        self._stats_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stop = False
        self._close_deadline: float | None = None
        self._flush_requested = False
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._stream: _Stream | None = None
        self._closing: list[_Stream] = []
        self._attempt = 0
        self._retry_at = 0.0
        self._failed = False  # the last stream failed: the next one is a reconnect
        self._close_tried = False
        self.shipped = 0
        self.accepted = 0
        self.rejected = 0
        self.dropped_unavailable = 0
        self.dropped_too_large = 0
        self.reconnects = 0

    def reset_after_fork(self) -> None:
        """Forget the parent's thread and channel (unusable in the child)."""
        self._init_state()

    # -- called from other threads ---------------------------------------

    def wake(self) -> None:
        """Tell the thread a buffer is queued."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread unless it runs (idempotent, cheap when started)."""
        with self._start_lock:
            if self._thread is not None or self._stop:
                return
            self._thread = threading.Thread(target=self._run, name="baselined-shipper", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """True while the thread lives."""
        return self._thread is not None and self._thread.is_alive()

    def flush(self) -> None:
        """Ship the partial buffer now and rotate the stream so its rows get confirmed."""
        self._flush_requested = True
        self._wake.set()

    def close(self, timeout: float) -> None:
        """Ship what is buffered, end the stream and wait for its answer, within ``timeout``."""
        deadline = self._clock() + max(0.0, timeout)
        with self._start_lock:
            thread = self._thread
            self._stop = True
            self._close_deadline = deadline
        self._wake.set()
        if thread is None:
            self._drop_queued()
            return
        thread.join(max(0.0, deadline - self._clock()) + 0.05)

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop:
                self._wake.clear()
                if self._recorder.down:
                    self._probe()
                self._poll()
                buf = self._recorder.pop()
                if buf is None:
                    older = None if self._flush_requested else self._flush_interval
                    buf = self._recorder.swap_partial(older)
                    if buf is None and self._flush_requested:
                        self._flush_requested = False
                        if self._stream is not None:
                            self._half_close(self._stream)
                if buf is not None:
                    self._ship(self._coalesce(buf))
                    continue
                self._maybe_rotate()
                self._wake.wait(self._sleep_time())
            self._finish()
        except Exception:  # a bug here must not take the host process down
            self._log.warning("shipper", "baselined shipper stopped by an error", exc_info=True)
        finally:
            self._close_channel()

    def _sleep_time(self) -> float:
        now = self._clock()
        until = now + self._flush_interval
        partial = self._recorder.partial_deadline(self._flush_interval)
        if partial is not None:
            until = min(until, partial)
        if self._stream is not None:
            until = min(until, self._stream.opened + self._rotate_interval)
        for s in self._closing:
            until = min(until, s.deadline)
        if self._recorder.down:
            until = min(until, self._retry_at)
        if self._closing:
            until = min(until, now + 0.05)  # pick answers up promptly
        return max(0.001, until - now)

    def _finish(self) -> None:
        """Closing: ship the queued buffers and wait for the answers until the deadline."""
        deadline = self._close_deadline if self._close_deadline is not None else self._clock()
        partial = self._recorder.swap_partial()
        if partial is not None:
            self._ship([partial], deadline=deadline, closing=True)
        while self._clock() < deadline:
            buf = self._recorder.pop()
            if buf is None:
                break
            self._ship(self._coalesce(buf), deadline=deadline, closing=True)
        if self._stream is not None:
            self._half_close(self._stream, deadline=deadline)
        for s in list(self._closing):
            with contextlib.suppress(Exception):
                s.future.result(timeout=max(0.0, deadline - self._clock()))
            if not s.future.done():
                s.abandon()
            self._settle(s)
        self._closing.clear()
        self._drop_queued()

    def _drop_queued(self) -> None:
        while (buf := self._recorder.pop() or self._recorder.swap_partial()) is not None:
            self._count_dropped(buf.n)
            self._recorder.release(buf)

    def _count_dropped(self, rows: int) -> None:
        with self._stats_lock:
            self.dropped_unavailable += rows

    # -- connection and streams -----------------------------------------

    def _connect(self, *, force: bool = False) -> _Stream | None:
        """The open stream, a new one, or None while backing off."""
        stream = self._stream
        if stream is not None:
            return stream
        now = self._clock()
        if now < self._retry_at and not force:
            return None
        if self._failed:
            self._failed = False
            self.reconnects += 1
        if self._channel is None:
            # One channel for the shipper's life: gRPC reconnects it underneath,
            # with its backoff capped at ours. Recreating channels costs the
            # host process milliseconds of GIL per attempt.
            options = [
                ("grpc.max_reconnect_backoff_ms", int(self._backoff.maximum * 1000)),
                ("grpc.initial_reconnect_backoff_ms", max(1, int(self._backoff.initial * 1000))),
                ("grpc.max_send_message_length", self._max_message_bytes),
                *self._channel_options,
            ]
            if self._credentials is not None:
                self._channel = grpc.secure_channel(self._target, self._credentials, options)
            else:
                self._channel = grpc.insecure_channel(self._target, options=options)
            # Batches are encoded to bytes by _encode, so no request serializer.
            self._stub = self._channel.stream_unary(
                INGEST_METHOD,
                request_serializer=None,
                response_deserializer=pb.IngestResponse.FromString,
            )
        try:
            self._stream = _Stream(self._stub, self._clock)
        except Exception as err:  # e.g. a malformed target
            self._failed = True
            self._retry_at = now + self._backoff.delay(self._attempt, self._rng)
            self._attempt += 1
            self._log.warning(
                "connect", "baselined cannot open a stream to %s: %s", self._target, err
            )
            return None
        return self._stream

    def _probe(self) -> None:
        """While down: at the retry time, wait briefly for the channel to connect."""
        now = self._clock()
        if now < self._retry_at or self._channel is None:
            return
        try:
            grpc.channel_ready_future(self._channel).result(timeout=0.25)
        except Exception:  # not yet: back off further
            self._retry_at = self._clock() + self._backoff.delay(self._attempt, self._rng)
            self._attempt += 1
            return
        self._recorder.down = False

    def _close_channel(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            with contextlib.suppress(Exception):
                channel.close()

    def _fail(self, stream: _Stream, why: str) -> None:
        """The active stream broke: count its unconfirmed rows and back off."""
        if stream is self._stream:
            self._stream = None
        stream.abandon()
        self._settle(stream)
        self._failed = True
        self._recorder.down = True
        delay = self._backoff.delay(self._attempt, self._rng)
        self._attempt += 1
        self._retry_at = self._clock() + delay
        self._log.warning(
            "sidecar_unavailable",
            "baselined sidecar at %s unavailable (%s); dropping samples, retrying in %.2fs",
            self._target,
            why,
            delay,
        )

    def _settle(self, stream: _Stream) -> None:
        """Credit a finished stream's answer; rows it did not confirm are dropped."""
        confirmed = 0
        ok = False
        if stream.future.done() and not stream.future.cancelled():
            try:
                resp = stream.future.result(timeout=0)
            except Exception as err:
                why = err.code().name if isinstance(err, grpc.RpcError) else type(err).__name__
                self._log.warning("stream", "baselined ingest stream failed: %s", why)
            else:
                ok = True
                confirmed = resp.records_accepted + resp.records_rejected
                with self._stats_lock:
                    self.accepted += resp.records_accepted
                    self.rejected += resp.records_rejected
                if resp.rejections:
                    first = resp.rejections[0]
                    self._log.warning(
                        "rejected",
                        "baselined sidecar rejected %d records: %s",
                        resp.records_rejected,
                        first.message,
                    )
        lost = max(0, stream.rows - confirmed)
        if lost:
            self._count_dropped(lost)
        if ok:
            self._attempt = 0
        stream.rows = 0  # settled once

    def _poll(self) -> None:
        """Settle closing streams that answered or timed out; notice a broken stream."""
        now = self._clock()
        if self._closing:
            still: list[_Stream] = []
            for s in self._closing:
                if s.future.done():
                    if _errored(s.future):
                        self._failed = True
                    self._settle(s)
                elif now >= s.deadline:
                    s.abandon()
                    self._settle(s)
                    self._failed = True
                else:
                    still.append(s)
            self._closing = still
        stream = self._stream
        if stream is not None and stream.future.done():
            self._fail(stream, _why(stream.future))

    def _half_close(self, stream: _Stream, deadline: float | None = None) -> None:
        """End the stream's requests; its answer is collected by :meth:`_poll`."""
        if stream is self._stream:
            self._stream = None
        end = deadline if deadline is not None else self._clock() + self._send_timeout
        if not self._put(stream, None, end):
            stream.abandon()
            self._settle(stream)
            return
        stream.deadline = self._clock() + self._response_timeout
        if deadline is not None:
            stream.deadline = min(stream.deadline, deadline)
        self._closing.append(stream)
        # Bound the streams awaiting answers: wait for the oldest if too many.
        while len(self._closing) > 4:
            oldest = self._closing.pop(0)
            with contextlib.suppress(Exception):
                oldest.future.result(timeout=max(0.0, oldest.deadline - self._clock()))
            if not oldest.future.done():
                oldest.abandon()
            self._settle(oldest)

    def _maybe_rotate(self) -> None:
        stream = self._stream
        if stream is None:
            return
        age = self._clock() - stream.opened
        if age >= self._rotate_interval or stream.batches >= self._rotate_batches:
            self._half_close(stream)

    def _put(self, stream: _Stream, item: bytes | None, deadline: float) -> bool:
        """Hand ``item`` to gRPC's sender, waiting at most until ``deadline``."""
        while True:
            if stream.future.done():
                return False
            try:
                stream.handoff.put(item, timeout=0.02)
                return True
            except queue.Full:
                limit = deadline
                if self._close_deadline is not None:
                    limit = min(limit, self._close_deadline)
                if self._clock() >= limit:
                    return False

    def _coalesce(self, first: ColumnBuffer) -> list[ColumnBuffer]:
        """``first`` and the buffers queued behind it, up to one message's worth.

        Under load this sends one message for several buffers: fewer thread
        hand-offs (each one waits for the GIL) and fewer per-message costs.
        """
        bufs = [first]
        rows = first.n
        cells = first.n * (len(first.kinds) + 1)
        while len(bufs) < _MAX_COALESCE:
            nxt = self._recorder.pop()
            if nxt is None:
                break
            bufs.append(nxt)
            rows += nxt.n
            cells += nxt.n * (len(nxt.kinds) + 1)
            if rows >= _MAX_MESSAGE_ROWS or cells * 9 >= _MAX_MESSAGE_BYTES:
                break
        return bufs

    def _ship(
        self, bufs: list[ColumnBuffer], *, deadline: float | None = None, closing: bool = False
    ) -> None:
        rows = sum(buf.n for buf in bufs)
        force = closing and not self._close_tried
        if force:
            self._close_tried = True  # one immediate attempt when closing, despite the backoff
        stream = self._connect(force=force)
        if stream is None:
            self._count_dropped(rows)
            for buf in bufs:
                self._recorder.release(buf)
            return
        try:
            msg = encode_batch(self._template_bytes, bufs, dropped=self._dropped_counts())
        finally:
            for buf in bufs:
                self._recorder.release(buf)
        if len(msg) > self._max_message_bytes:
            # gRPC would fail the whole stream (RESOURCE_EXHAUSTED): drop this one message.
            with self._stats_lock:
                self.dropped_too_large += rows
            self._log.warning(
                "too_large",
                "baselined batch of %d rows is %d bytes, over max_message_bytes=%d; dropped",
                rows,
                len(msg),
                self._max_message_bytes,
            )
            return
        end = self._clock() + self._send_timeout
        if deadline is not None:
            end = min(end, deadline)
        if not self._put(stream, msg, end):
            self._count_dropped(rows)
            why = _why(stream.future) if stream.future.done() else "send timed out"
            self._fail(stream, why)
            return
        stream.rows += rows
        stream.batches += 1
        with self._stats_lock:
            self.shipped += rows
        if not closing:
            self._maybe_rotate()

    def _dropped_counts(self) -> Mapping[str, int] | None:
        if self._dropped is None:
            return None
        try:
            return self._dropped()
        except Exception:  # a counter source must never stop the shipping
            self._log.warning("dropped", "baselined drop counters failed", exc_info=True)
            return None


INGEST_METHOD = "/baselined.v1.Ingest/Ingest"
#: Most ``dropped`` entries sent per batch (the sidecar refuses more than 32).
MAX_DROPPED_REASONS = 32
_U64_MAX = (1 << 64) - 1
_MAX_COALESCE = 32  # buffers per message
_MAX_MESSAGE_ROWS = 16384
_MAX_MESSAGE_BYTES = 1 << 20  # well under gRPC's and the sidecar's 4 MiB
_NAN_BYTES = array("d", [float("nan")]).tobytes()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _doubles(values: Any) -> bytes:
    if sys.byteorder == "big":
        values = values[:]
        values.byteswap()
    return bytes(values.tobytes())


def encode_dropped(counts: Mapping[str, int]) -> bytes:
    """``SampleBatch.dropped`` (field 13, ``map<string, uint64>``) on the wire: one
    length-delimited entry per reason (key = field 1, value = field 2 varint), the
    first ``MAX_DROPPED_REASONS`` in order, negative counts as 0.

    >>> encode_dropped({"queue_full": 3})
    b'j\\x0e\\n\\nqueue_full\\x10\\x03'
    """
    out = bytearray()
    for i, (reason, count) in enumerate(counts.items()):
        if i >= MAX_DROPPED_REASONS:
            break
        entry = (
            _length_delimited(1, reason.encode("utf-8"))
            + b"\x10"
            + _varint(min(max(0, count), _U64_MAX))
        )
        out += _length_delimited(13, entry)
    return bytes(out)


def encode_batch(
    template: bytes, bufs: list[ColumnBuffer], *, dropped: Mapping[str, int] | None = None
) -> bytes:
    """The serialized ``SampleBatch`` of the rows of ``bufs``, in order, after the
    template's fields, with ``dropped`` (cumulative drop counts by reason) when given.

    Numeric columns are written straight from the arrays as packed doubles
    (protobuf's wire format: concatenated messages merge), which costs a
    memory copy instead of one Python float per value. A signal missing from
    some of the buffers is NaN ("" for categorical ones) in their rows.
    """
    sizes = [buf.n for buf in bufs]
    numeric: dict[str, tuple[int, list[bytes | None]]] = {}
    for i, buf in enumerate(bufs):
        for name, kind, values in buf.numeric_columns():
            entry = numeric.get(name)
            if entry is None:
                entry = numeric[name] = (kind, [None] * len(bufs))
            entry[1][i] = _doubles(values)
    categorical: dict[str, tuple[int, list[list[str] | None]]] = {}
    for i, buf in enumerate(bufs):
        for name, cat in buf.categorical.items():
            if name in numeric:
                continue  # numeric in another buffer: these values count as missing
            centry = categorical.get(name)
            if centry is None:
                centry = categorical[name] = (buf.kinds[name], [None] * len(bufs))
            centry[1][i] = cat[: buf.n]

    slice_cols: dict[str, list[list[str] | None]] = {}
    for i, buf in enumerate(bufs):
        for name, svalues in buf.slices.items():
            lists_ = slice_cols.get(name)
            if lists_ is None:
                lists_ = slice_cols[name] = [None] * len(bufs)
            lists_[i] = svalues[: buf.n]

    stamps = b"".join(_doubles(buf.timestamps[: buf.n]) for buf in bufs)
    parts = [template, _length_delimited(7, stamps)]
    for name, (kind, chunks) in numeric.items():
        packed = b"".join(
            chunk if chunk is not None else _NAN_BYTES * n
            for chunk, n in zip(chunks, sizes, strict=True)
        )
        column = (
            _length_delimited(1, name.encode("utf-8"))
            + b"\x10"
            + _varint(kind)
            + _length_delimited(3, packed)
        )
        parts.append(_length_delimited(8, column))
    has_ids = any(buf.has_ids for buf in bufs)
    has_traces = any(buf.has_traces for buf in bufs)
    if has_ids or has_traces or categorical or slice_cols:
        rest = pb.SampleBatch()
        if has_ids:
            for buf in bufs:
                rest.request_ids.extend(buf.request_ids[: buf.n])
        if has_traces:  # field 12: one traceparent per row, "" where none
            for buf in bufs:
                rest.traceparents.extend(
                    buf.traceparents[: buf.n] if buf.has_traces else [""] * buf.n
                )
        for name, (kind, lists) in categorical.items():
            col = rest.categorical.add(name=name, kind=kind)
            for cat_values, n in zip(lists, sizes, strict=True):
                col.values.extend(cat_values if cat_values is not None else [""] * n)
        for name, svalue_lists in slice_cols.items():
            scol = rest.slices.add(name=name)
            for slice_values, n in zip(svalue_lists, sizes, strict=True):
                scol.values.extend(slice_values if slice_values is not None else [""] * n)
        parts.append(rest.SerializeToString())
    if dropped:
        parts.append(encode_dropped(dropped))
    return b"".join(parts)


def _errored(future: grpc.Future[Any]) -> bool:
    if future.cancelled():
        return True
    try:
        return future.exception(timeout=0) is not None  # type: ignore[call-arg]
    except Exception:
        return True


def _why(future: grpc.Future[Any]) -> str:
    try:
        err = future.exception(timeout=0)  # type: ignore[call-arg]
    except Exception as exc:
        return type(exc).__name__
    if err is None:
        return "stream ended early"
    if isinstance(err, grpc.RpcError):
        return f"{err.code().name}: {err.details()}"
    return type(err).__name__


def batch_template(
    *,
    model: str,
    version: str,
    environment: str,
    instance: str,
    fingerprint: pb.Fingerprint,
    batch_slices: Mapping[str, str],
) -> pb.SampleBatch:
    """The fields every batch of one Shadow shares."""
    return pb.SampleBatch(
        model=model,
        version=version,
        environment=environment,
        instance=instance,
        fingerprint=fingerprint,
        batch_slices=dict(batch_slices),
    )
