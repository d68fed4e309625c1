"""QueuedSink: never blocks, bounded memory, retries with backoff, counts losses."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence

import pytest

from sidecar.sinks.base import PermanentDeliveryError, QueuedSink, SinkStats
from sidecar.sinks.webhook import WebhookSink
from tests.sinks.conftest import Collector, free_port, make_alert


def test_retries_503_with_backoff_then_delivers_once() -> None:
    server = Collector(statuses=[503, 503])
    delays: list[float] = []
    sink = WebhookSink(
        server.url, sleep=delays.append, backoff=0.5, jitter=0.5, rng=random.Random(7)
    )
    try:
        sink.send(make_alert())
        assert sink.flush(10.0)
        bodies = server.wait_for(3)
        assert sink.stats() == SinkStats(
            sent=1, failed_attempts=2, dropped=0, given_up=0, pending=0
        )
        # three identical POSTs: two refused, the third accepted; nothing more
        assert len(bodies) == 3 and bodies[0] == bodies[2]
        # exponential backoff with jitter in [1 - jitter, 1] of 0.5 s, 1 s
        assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0
    finally:
        sink.close(1.0)
        server.close()


def test_dead_port_never_raises_and_counts_what_is_lost() -> None:
    sink = WebhookSink(
        f"http://127.0.0.1:{free_port()}/hook",
        max_queue=100,
        max_attempts=3,
        sleep=lambda _s: None,
        timeout=1.0,
    )
    for i in range(10_000):
        sink.send(make_alert(fingerprint=f"{i:016x}"))
    assert sink.stats().pending <= 100
    sink.close(2.0)
    stats = sink.stats()
    assert stats.sent == 0
    assert stats.dropped > 0 and stats.failed_attempts >= 3
    # every alert is accounted for: given up after retries, or dropped
    assert stats.dropped + stats.given_up == 10_000
    assert stats.failed_attempts == 3 * stats.given_up


def test_send_never_waits_for_a_stuck_receiver_and_memory_stays_bounded() -> None:
    release = threading.Event()
    started = threading.Event()
    delivered: list[int] = []

    def deliver(batch: Sequence[int]) -> None:
        started.set()
        release.wait(30.0)
        delivered.extend(batch)

    sink: QueuedSink[int] = QueuedSink(deliver, name="stuck", max_queue=50)
    sink.send(-1)
    assert started.wait(5.0)  # the thread holds item -1 and is stuck in deliver
    for i in range(10_000):  # all return although nothing can be delivered
        sink.send(i)
    stats = sink.stats()
    assert stats.pending == 50
    assert stats.dropped == 10_000 - 50
    release.set()
    assert sink.flush(5.0)
    # the newest survive: the oldest were dropped
    assert delivered == [-1, *range(10_000 - 50, 10_000)]
    sink.close(1.0)
    assert sink.stats().sent == 51


def test_refused_for_good_is_not_retried() -> None:
    calls: list[int] = []

    def deliver(batch: Sequence[int]) -> None:
        calls.append(len(batch))
        raise PermanentDeliveryError("HTTP 400: bad labels")

    sink: QueuedSink[int] = QueuedSink(deliver, name="refused", sleep=lambda _s: None)
    sink.send(1)
    assert sink.flush(5.0)
    sink.close(1.0)
    assert calls == [1]
    assert sink.stats() == SinkStats(sent=0, failed_attempts=1, dropped=0, given_up=1, pending=0)


def test_http_400_from_a_receiver_is_given_up_at_once() -> None:
    server = Collector(statuses=[400])
    sink = WebhookSink(server.url, sleep=lambda _s: None)
    try:
        sink.send(make_alert())
        assert sink.flush(5.0)
        assert len(server.bodies()) == 1
        assert sink.stats().given_up == 1 and sink.stats().failed_attempts == 1
    finally:
        sink.close(1.0)
        server.close()


def test_close_delivers_what_is_queued() -> None:
    gate = threading.Event()
    delivered: list[int] = []

    def deliver(batch: Sequence[int]) -> None:
        gate.wait(5.0)
        delivered.extend(batch)

    sink: QueuedSink[int] = QueuedSink(deliver, name="drain", max_batch=2)
    for i in range(5):
        sink.send(i)
    gate.set()
    sink.close(5.0)
    assert delivered == [0, 1, 2, 3, 4]
    sink.send(99)  # after close: counted, not raised
    assert sink.stats().sent == 5 and sink.stats().dropped == 1


def test_failures_are_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]

    def deliver(batch: Sequence[int]) -> None:
        raise ConnectionRefusedError("nobody listens")

    sink: QueuedSink[int] = QueuedSink(
        deliver,
        name="noisy",
        max_attempts=2,
        sleep=lambda _s: None,
        clock=lambda: now[0],
        log_interval=60.0,
    )
    with caplog.at_level(logging.WARNING, logger="sidecar.sinks.base"):
        for i in range(20):
            sink.send(i)
        assert sink.flush(5.0)
        now[0] = 61.0
        sink.send(20)
        assert sink.flush(5.0)
    sink.close(1.0)
    messages = [r.getMessage() for r in caplog.records]
    assert sink.stats().failed_attempts == 42
    assert len(messages) == 2  # the first failure, then one line after the interval
    assert "nobody listens" in messages[0]
    assert "39 more failures not logged" in messages[1]
