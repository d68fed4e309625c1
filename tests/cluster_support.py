"""A real Redis Cluster for tests, made of ``redis-server`` processes.

:class:`LocalCluster` starts ``masters`` primaries (and ``replicas`` replicas
per primary) on free loopback ports, each in its own temporary directory with
``--cluster-enabled yes``, joins them with ``redis-cli --cluster create ...
--cluster-yes``, waits until every node reports ``cluster_state:ok`` and
knows all slots, and stops every process on :meth:`stop`.

The ``redis_cluster_url`` fixture (``tests/conftest.py``) shares one
3-primary cluster per test session; its URL is ``redis+cluster://host:port``,
the form ``open_store`` understands.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["ClusterUnavailable", "LocalCluster"]


class ClusterUnavailable(RuntimeError):
    """``redis-server`` or ``redis-cli`` is missing, or the cluster did not form."""


def _free_ports(count: int) -> list[int]:
    """Ports free now whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if port + 10000 > 65535:
                continue
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


class LocalCluster:
    """``masters`` primaries and ``replicas`` replicas each, on 127.0.0.1."""

    def __init__(self, masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 2000) -> None:
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.root: Path | None = None

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 30.0) -> LocalCluster:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise ClusterUnavailable("redis-server and redis-cli must be on PATH for cluster tests")
        self.root = Path(tempfile.mkdtemp(prefix="bl-cluster-"))
        self.ports = _free_ports(self.masters * (1 + self.replicas))
        try:
            for port in self.ports:
                self._spawn(server, port)
            for port in self.ports:
                self._wait_ping(cli, port, timeout)
            create = subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=timeout,
            )
            if create.returncode != 0:
                raise ClusterUnavailable(
                    f"redis-cli --cluster create failed: {create.stdout.decode()[-2000:]}"
                    f" {create.stderr.decode()[-2000:]}"
                )
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, server: str, port: int) -> None:
        assert self.root is not None
        node_dir = self.root / str(port)
        node_dir.mkdir()
        log = open(node_dir / "redis.log", "wb")  # noqa: SIM115 - the process owns it
        self.processes[port] = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node_dir / "nodes.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--dir",
                str(node_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def _info(self, port: int) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(port), "cluster", "info"],
            capture_output=True,
            timeout=5,
        )
        return out.stdout.decode()

    @staticmethod
    def _wait_ping(cli: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ping = subprocess.run([cli, "-p", str(port), "ping"], capture_output=True, timeout=5)
            if ping.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise ClusterUnavailable(f"redis-server on port {port} did not answer PING")

    def wait_ok(self, timeout: float = 30.0, ports: list[int] | None = None) -> None:
        """Until every (running) node says ``cluster_state:ok`` with all 16384 slots."""
        deadline = time.monotonic() + timeout
        wanted = ports if ports is not None else list(self.processes)
        while time.monotonic() < deadline:
            infos = [self._info(p) for p in wanted]
            if all(
                "cluster_state:ok" in info and "cluster_slots_ok:16384" in info for info in infos
            ):
                return
            time.sleep(0.1)
        raise ClusterUnavailable(f"cluster did not reach cluster_state:ok in {timeout} s")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
