"""Fixtures for fault injection: throwaway ``redis-server`` processes and helpers.

Each Redis here is a private server on a free loopback port with its data
directory in ``tmp_path`` (AOF on, ``appendfsync everysec``, the documented
production setting), so a test may kill, stop or restart it without touching
the shared server on 6379.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.records import Kind, SeriesId
from sidecar.settings import Settings
from sidecar.stores.base import Store
from sidecar.windows import Windows
from tests.conftest import REQUIRE_REDIS
from tests.integration.conftest import free_port

MODEL = "fault-model"
ENVIRONMENT = "test"


@dataclass
class RedisServer:
    """A ``redis-server`` child with AOF in ``directory``; restartable on the same port."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    logfile: IO[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        import redis

        self.directory.mkdir(parents=True, exist_ok=True)
        self.logfile = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed in reap()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode}: {self.log()}")
            client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=1)
            try:
                if client.ping():
                    return
            except redis.exceptions.BusyLoadingError:
                pass  # still reading its AOF
            except redis.exceptions.ConnectionError:
                pass
            finally:
                client.close()
            time.sleep(0.05)
        pytest.fail(f"redis-server did not answer in {timeout} s: {self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the server without any chance to save (a crash)."""
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=15)
        self.reap()

    def shutdown(self) -> None:
        """The orderly way: SHUTDOWN (fsyncs the AOF), then wait for the exit."""
        import redis

        client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            client.shutdown()
        except redis.exceptions.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        assert self.process is not None
        self.process.wait(timeout=15)
        self.reap()

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def reap(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.logfile is not None:
            self.logfile.close()
            self.logfile = None


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, restartable Redis with AOF; skipped (or failed under
    BASELINED_REQUIRE_REDIS) when ``redis-server`` is not installed."""
    if shutil.which("redis-server") is None:
        if REQUIRE_REDIS:
            pytest.fail("redis-server is not on PATH (BASELINED_REQUIRE_REDIS is set)")
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.reap()


def batch(rows: int, *, start: float, value: float = 1.0, signal: str = "x") -> pb.SampleBatch:
    """``rows`` rows of one numeric feature, timestamps spread over 1 ms from ``start``."""
    msg = pb.SampleBatch(
        model=MODEL,
        version="v1",
        environment=ENVIRONMENT,
        timestamps=[start + i * 1e-6 for i in range(rows)],
    )
    msg.numeric.add(
        name=signal, kind=pb.SIGNAL_KIND_FEATURE, values=[value + i for i in range(rows)]
    )
    return msg


def stored_rows(store: Store, signal: str = "x", *, kind: Kind = Kind.FEATURE) -> int:
    """Rows of the all-traffic series of ``signal`` found in the store's window partials."""
    windows = Windows(Settings(instance="reader"), store)
    data = windows.read(MODEL, ENVIRONMENT, 0, time.time() + 3600)
    state = data.series.get(SeriesId("*", "*", kind, signal))
    return 0 if state is None else int(state.summary([0.5]).count)


def health_status(target: str, service: str = "", timeout: float = 2.0) -> int:
    """The grpc.health.v1 status of ``service`` (-1 when the call fails)."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return -1
        return int(reply.status)


def wait_for(predicate: object, timeout: float, what: str, step: float = 0.05) -> float:
    """Poll ``predicate()`` until true; return the seconds it took, fail after ``timeout``."""
    assert callable(predicate)
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return time.monotonic() - began
        time.sleep(step)
    pytest.fail(f"{what} did not happen within {timeout} s")


from tests.integration.conftest import sidecar_factory  # noqa: E402, F401 - the fixture, reused
