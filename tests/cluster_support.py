"""A real Redis Cluster for tests, made of ``redis-server`` processes.

:class:`LocalCluster` starts ``masters`` primaries (and ``replicas`` replicas
per primary) on free loopback ports, each in its own temporary directory with
``--cluster-enabled yes``, joins them with ``redis-cli --cluster create ...
--cluster-yes``, waits until every node reports ``cluster_state:ok`` and
knows all slots and every replica finished its initial sync (a replica that
never synced cannot be promoted), and stops every process on :meth:`stop`.
For fault tests it kills (SIGKILL), pauses and resumes nodes, tells which
primary serves a slot and waits for a replica's promotion.

The ``redis_cluster_url`` fixture (``tests/conftest.py``) shares one
3-primary cluster per test session; its URL is ``redis+cluster://host:port``,
the form ``open_store`` understands.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import redis

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
            self.wait_replicas_synced(timeout)
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
                # Replicas sync at once (the default waits 5 s for more replicas),
                # so a replica is a failover candidate as soon as start() returns.
                "--repl-diskless-sync-delay",
                "0",
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

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        """Until every live replica's link to its primary is up (initial sync done):
        a replica that never synced cannot be promoted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = []
            for port in self.alive():
                client = self.node(port)
                try:
                    info = cast(dict[str, Any], client.info("replication"))
                finally:
                    client.close()
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    pending.append(port)
            if not pending:
                return
            time.sleep(0.05)
        raise ClusterUnavailable(f"replicas did not finish their initial sync in {timeout} s")

    # -- topology and faults (tests/stores/test_cluster_failover.py) -------------

    def node(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one node; the caller closes it."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)

    def alive(self) -> list[int]:
        return [p for p, proc in self.processes.items() if proc.poll() is None]

    def _nodes(self, via: int | None = None) -> list[dict[str, str]]:
        """``CLUSTER NODES`` of a live node as dicts (id, port, flags, master, slots)."""
        port = via if via is not None else self.alive()[0]
        raw = subprocess.run(
            ["redis-cli", "-p", str(port), "cluster", "nodes"], capture_output=True, timeout=5
        ).stdout.decode()
        rows = []
        for line in raw.splitlines():
            parts = line.split()
            rows.append(
                {
                    "id": parts[0],
                    "port": parts[1].split("@")[0].rsplit(":", 1)[1],
                    "flags": parts[2],
                    "master": parts[3],
                    "slots": " ".join(parts[8:]),
                }
            )
        return rows

    def node_id(self, port: int) -> str:
        client = self.node(port)
        try:
            return cast(bytes, client.execute_command("CLUSTER MYID")).decode()
        finally:
            client.close()

    def primary_of_slot(self, slot: int, via: int | None = None) -> int:
        """Port of the primary serving ``slot``, as the node ``via`` sees the map."""
        client = self.node(via if via is not None else self.alive()[0])
        try:
            ranges = cast(list[Any], client.execute_command("CLUSTER SLOTS"))
        finally:
            client.close()
        for first, last, primary, *_ in ranges:
            if int(first) <= slot <= int(last):
                return int(primary[1])
        raise LookupError(f"no node serves slot {slot}")

    def primaries(self) -> list[int]:
        """Ports of the live primaries."""
        return sorted(
            int(n["port"])
            for n in self._nodes()
            if "master" in n["flags"] and "fail" not in n["flags"]
        )

    def replicas_of(self, port: int) -> list[int]:
        """Ports of the replicas of the primary on ``port``."""
        me = self.node_id(port)
        return sorted(int(n["port"]) for n in self._nodes() if n["master"] == me)

    def kill(self, port: int) -> None:
        """SIGKILL one node (no shutdown, no save) and reap it."""
        proc = self.processes[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def pause(self, port: int) -> None:
        """SIGSTOP one node: it neither replicates nor answers until :meth:`resume`."""
        self.processes[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGCONT)

    def wait_promoted(self, slot: int, old: int, timeout: float = 30.0) -> int:
        """Until a live node other than ``old`` serves ``slot`` and the cluster is
        ok again on every live node; returns its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                owner = self.primary_of_slot(slot)
            except (redis.RedisError, LookupError):
                owner = old
            if owner != old and owner in self.alive():
                self.wait_ok(max(0.1, deadline - time.monotonic()), ports=self.alive())
                return owner
            time.sleep(0.02)
        raise ClusterUnavailable(f"slot {slot} was not failed over from port {old} in {timeout} s")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused node cannot handle SIGTERM
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
