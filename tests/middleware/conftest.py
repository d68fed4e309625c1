"""A real Ingest peer for the middleware tests: a gRPC server on 127.0.0.1 port 0
that records the batches it receives and answers with counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc


class RecordingIngest(pb_grpc.IngestServicer):
    """Keeps every batch; optionally sleeps per batch to play a slow sidecar."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[pb.SampleBatch] = []
        self.streams = 0
        self.lock = threading.Lock()

    def Ingest(self, request_iterator: Iterator[pb.SampleBatch], context: Any) -> pb.IngestResponse:
        with self.lock:
            self.streams += 1
        batches = records = 0
        for batch in request_iterator:
            if self.delay:
                time.sleep(self.delay)
            with self.lock:
                self.batches.append(batch)
            batches += 1
            records += len(batch.timestamps)
        return pb.IngestResponse(batches_accepted=batches, records_accepted=records)

    @property
    def records(self) -> int:
        with self.lock:
            return sum(len(b.timestamps) for b in self.batches)

    def rows(self) -> list[dict[str, Any]]:
        """Every received record as {signal: value} (NaN / "" left out), plus request_id."""
        out: list[dict[str, Any]] = []
        with self.lock:
            batches = list(self.batches)
        for b in batches:
            n = len(b.timestamps)
            for i in range(n):
                row: dict[str, Any] = {"_ts": b.timestamps[i]}
                if b.request_ids:
                    row["_id"] = b.request_ids[i]
                for col in b.numeric:
                    v = col.values[i]
                    if v == v:
                        row[col.name] = v
                for cat in b.categorical:
                    if cat.values[i]:
                        row[cat.name] = cat.values[i]
                out.append(row)
        return out


class IngestServer:
    """Starts (and restarts on the same port) a RecordingIngest server."""

    def __init__(self, servicer: RecordingIngest, port: int = 0) -> None:
        self.servicer = servicer
        self.port = port
        self.server: grpc.Server | None = None

    def start(self) -> IngestServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_IngestServicer_to_server(self.servicer, server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self.server = server
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait()
            self.server = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def ingest() -> Iterator[IngestServer]:
    server = IngestServer(RecordingIngest()).start()
    yield server
    server.stop()


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` until it holds (a bounded wait, never a timing assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return check()
