"""Fixtures that run the real sidecar as a subprocess (`baselined serve`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "proto")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@dataclass
class SidecarProcess:
    """A `baselined serve` child process on a fixed loopback port."""

    store: str
    port: int
    log: Path
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    logfile: IO[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        cmd = [
            sys.executable, "-m", "sidecar.cli", "serve",
            "--listen", self.target, "--store", self.store, "--flush-interval", "0.5",
            *self.extra,
        ]  # fmt: skip
        self.logfile = open(self.log, "ab")  # noqa: SIM115 - closed in reap()
        self.process = subprocess.Popen(
            cmd, stdout=self.logfile, stderr=subprocess.STDOUT, env=child_env()
        )
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(
                        f"sidecar exited with {self.process.returncode}:\n{self.log.read_text()}"
                    )
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        pytest.fail(f"sidecar did not become SERVING in {timeout} s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=timeout)
        self.reap()
        return self.process.returncode

    def reap(self) -> None:
        """Kill the process if it still runs and close its log file."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.logfile is not None:
            self.logfile.close()
            self.logfile = None


@pytest.fixture
def sidecar_factory(tmp_path: Path) -> Iterator[type[SidecarProcess]]:
    started: list[SidecarProcess] = []

    class Factory(SidecarProcess):
        def start(self, timeout: float = 30.0) -> None:
            started.append(self)
            super().start(timeout)

    yield Factory
    for proc in started:
        proc.reap()


@pytest.fixture
def unique_model(request: pytest.FixtureRequest) -> Iterator[str]:
    """A model name no other test uses, so Redis keys never collide; cleaned afterwards."""
    model = f"m-{uuid.uuid4().hex[:10]}"
    yield model
    from tests.conftest import REDIS_URL, _redis_answers

    if _redis_answers(REDIS_URL) is None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            for key in client.scan_iter(match=f"*{{{model}}}*", count=1000):
                client.delete(key)
        finally:
            client.close()
