"""Fixtures for the sink tests: alerts, a collecting HTTP server, a real Alertmanager."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sidecar.alerts import Alert
from sidecar.compare import SeriesFinding
from sidecar.guardrails import Tier
from sidecar.records import Kind, SeriesId
from sidecar.stats.effects import Effect


def make_alert(
    *,
    fingerprint: str = "0123456789abcdef",
    tier: int = 2,
    state: str = "firing",
    started_at: float | None = None,
    resolved_at: float | None = None,
    signal: str = "latency_ms",
    model: str = "fraud",
) -> Alert:
    """A p99 latency regression alert of ``model``/prod."""
    now = time.time()
    started = now - 30.0 if started_at is None else started_at
    p99 = Effect("p99_rel", 0.123, 0.081, 0.16, "relative")
    p50 = Effect("p50_rel", 0.004, -0.01, 0.02, "relative")
    guardrail = {1: 0.05, 2: 0.10}[min(tier, 2)]  # p99 +12% clears moderate at most
    finding = SeriesFinding(
        series=SeriesId("*", "*", Kind.LATENCY, signal),
        phase="",
        effects={"p99_rel": p99, "p50_rel": p50},
        tier=Tier(tier),
        fired=(("p99_rel", Tier(min(tier, 2)), guardrail),),
        baseline_count=200_000,
        live_count=100_000,
    )
    return Alert(
        fingerprint=fingerprint,
        model=model,
        environment="prod",
        tier=Tier(tier),
        state=state,
        started_at=started,
        updated_at=resolved_at if resolved_at is not None else now,
        resolved_at=resolved_at,
        baseline_id="ref-1",
        window_start=started - 600.0,
        window_end=now,
        findings=(finding,),
        summary=f"{model}/prod {signal} p99 +12.3% (>= +8.1% at 99% confidence),"
        f" tier {Tier(tier).name.lower()}",
        playbook_url="https://wiki.example/fraud",
        labels={
            "alertname": "BaselinedRegression",
            "severity": {1: "minor", 2: "moderate", 3: "severe"}[tier],
            "model": model,
            "environment": "prod",
            "signal": signal,
            "slice": "*",
        },
    )


def resolved(alert: Alert, at: float | None = None) -> Alert:
    """The resolve of ``alert`` (at ``at``, default now)."""
    when = time.time() if at is None else at
    return replace(alert, state="resolved", updated_at=when, resolved_at=when)


class Collector:
    """A real HTTP server on loopback that records POSTed JSON bodies.

    ``statuses`` are answered in order (then 200 for everything).
    """

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.statuses = list(statuses or [])
        self.cond = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(size))
                with collector.cond:
                    status = collector.statuses.pop(0) if collector.statuses else 200
                    collector.requests.append((self.path, dict(self.headers), body))
                    collector.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def bodies(self) -> list[Any]:
        with self.cond:
            return [body for _, _, body in self.requests]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        end = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < count:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {len(self.requests)} requests, wanted {count}")
                self.cond.wait(left)
            return [body for _, _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


ALERTMANAGER = "prometheus-alertmanager"


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager (Debian's 0.25) on a free loopback port; yields its URL."""
    binary = shutil.which(ALERTMANAGER)
    if binary is None:
        if os.environ.get("BASELINED_REQUIRE_ALERTMANAGER") == "1":
            pytest.fail(f"{ALERTMANAGER} is not on PATH and BASELINED_REQUIRE_ALERTMANAGER=1")
        pytest.skip(f"{ALERTMANAGER} not on PATH (apt-get install prometheus-alertmanager)")
    config = tmp_path / "alertmanager.yml"
    config.write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = free_port()
    log_path = tmp_path / "alertmanager.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                "--cluster.listen-address=",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 15.0
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1.0) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"Alertmanager did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
