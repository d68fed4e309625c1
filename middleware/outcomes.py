"""Outcomes from inside the model server: ``record_outcome`` for servers that learn a
request's true label in-process (a click, a chargeback, a human review).

The sampling decision is the one the shadow made for the request (deterministic
by request id, :func:`middleware.sampling.sample_by_id`): an outcome of a request
that was not sampled is not sent at all, since the sidecar kept nothing to join
it to. Sampled ones go into a bounded queue and a daemon thread streams them to
the sidecar's ``Outcomes.RecordOutcomes`` in batches, on the shadow's target and
credentials. The call never blocks and never raises into the handler: a full
queue or an unreachable sidecar drops outcomes and counts them.

>>> import middleware
>>> shadow = middleware.Shadow(model="fraud", sample_rate=0.0, atexit=False)
>>> middleware.record_outcome(shadow, "req-1", 1)  # not sampled: nothing to join
False
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import grpc
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

from middleware.client import open_channel
from middleware.sampling import sample_by_id
from middleware.shadow import Shadow

__all__ = ["OutcomeSender", "OutcomeStats", "record_outcome"]

log = logging.getLogger("baselined.middleware")

_BATCH = 512


@dataclass(frozen=True)
class OutcomeStats:
    """Counters of one :class:`OutcomeSender`."""

    queued: int
    sent: int
    joined: int
    not_sampled: int
    dropped_queue_full: int
    dropped_unavailable: int
    dropped_invalid: int


class OutcomeSender:
    """Queues outcomes of one model and streams them to the sidecar from a thread.

    ``credentials`` as the shadow's (TLS and/or a bearer token). ``max_queue``
    bounds the outcomes waiting; ``flush_interval`` is the longest an outcome
    waits before it is sent.
    """

    def __init__(
        self,
        target: str,
        *,
        model: str,
        sample_rate: float,
        credentials: grpc.ChannelCredentials | None = None,
        max_queue: int = 10_000,
        flush_interval: float = 1.0,
        send_timeout: float = 5.0,
    ) -> None:
        self.target = target
        self.model = model
        self.sample_rate = sample_rate
        self._credentials = credentials
        self._queue: deque[pb.OutcomeRecord] = deque()
        self._max_queue = max_queue
        self._flush_interval = flush_interval
        self._send_timeout = send_timeout
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._stub: Any = None
        self._counts = dict.fromkeys(
            (
                "queued",
                "sent",
                "joined",
                "not_sampled",
                "dropped_queue_full",
                "dropped_unavailable",
                "dropped_invalid",
            ),
            0,
        )

    def record(
        self,
        request_id: str,
        label: int | float | str | bool,
        *,
        time_: float | None = None,
        weight: float | None = None,
    ) -> bool:
        """Queue one outcome; True when queued, False when not sampled or dropped."""
        try:
            if not sample_by_id(request_id, self.sample_rate):
                self._count("not_sampled")
                return False
            record = pb.OutcomeRecord(model=self.model, request_id=request_id)
            if isinstance(label, bool):
                record.class_index = int(label)
            elif isinstance(label, int):
                record.class_index = label
            elif isinstance(label, float):
                record.value = label
            elif isinstance(label, str):
                record.class_name = label
            else:
                self._count("dropped_invalid")
                return False
            if time_ is not None:
                record.time = float(time_)
            if weight is not None:
                record.weight = float(weight)
        except Exception:  # the handler's path: never raise
            self._count("dropped_invalid")
            return False
        with self._lock:
            if len(self._queue) >= self._max_queue:
                self._counts["dropped_queue_full"] += 1
                return False
            self._queue.append(record)
            self._counts["queued"] += 1
            if self._thread is None and not self._stop:
                self._thread = threading.Thread(
                    target=self._run, name="baselined-outcomes", daemon=True
                )
                self._thread.start()
        if len(self._queue) >= _BATCH:
            self._wake.set()
        return True

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def stats(self) -> OutcomeStats:
        """A snapshot of the counters."""
        with self._lock:
            return OutcomeStats(**self._counts)

    def flush(self) -> None:
        """Send what is queued now (without waiting)."""
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop the thread (within ``timeout``)."""
        with self._lock:
            self._stop = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._send_all()
            with self._lock:
                if self._stop and not self._queue:
                    return

    def _send_all(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
            try:
                if self._stub is None:
                    channel = open_channel(self.target, self._credentials)
                    self._stub = pb_grpc.OutcomesStub(channel)  # type: ignore[no-untyped-call]
                response = self._stub.RecordOutcomes(
                    iter([pb.OutcomeBatch(outcomes=batch)]), timeout=self._send_timeout
                )
            except Exception as err:  # unreachable or refused: drop, count, log once a batch
                with self._lock:
                    self._counts["dropped_unavailable"] += len(batch)
                log.warning(
                    "baselined: %d outcomes not sent to %s: %s", len(batch), self.target, err
                )
                time.sleep(min(self._flush_interval, 1.0))
                return
            with self._lock:
                self._counts["sent"] += len(batch)
                self._counts["joined"] += int(response.joined)


_senders: weakref.WeakKeyDictionary[Shadow, OutcomeSender] = weakref.WeakKeyDictionary()
_senders_lock = threading.Lock()


def _sender(shadow: Shadow) -> OutcomeSender:
    sender = _senders.get(shadow)
    if sender is None:
        with _senders_lock:
            sender = _senders.get(shadow)
            if sender is None:
                sender = _senders[shadow] = OutcomeSender(
                    shadow.target,
                    model=shadow.model,
                    sample_rate=shadow.sample_rate,
                    credentials=shadow._shipper_args.get("credentials"),
                )
    return sender


def record_outcome(
    shadow: Shadow,
    request_id: str,
    label: int | float | str | bool,
    *,
    time: float | None = None,
    weight: float | None = None,
) -> bool:
    """Send the outcome of a request that ``shadow`` handled (module docstring).

    ``label`` is a class index, a class name or a true value; ``time`` when the
    outcome became known (unix seconds, default: when the sidecar receives it);
    ``weight`` defaults to 1. Returns True when queued for sending.
    """
    try:
        return _sender(shadow).record(request_id, label, time_=time, weight=weight)
    except Exception:  # never into the handler
        return False


def outcome_sender(shadow: Shadow) -> OutcomeSender:
    """The sender behind :func:`record_outcome` for ``shadow`` (stats, flush, close)."""
    return _sender(shadow)
