"""A real Prometheus (Debian's ``prometheus``, started here on a loopback port)
scrapes the sidecar's ``/metrics`` and its query API returns the sidecar's series.

Skipped when the binary is missing, unless ``BASELINED_REQUIRE_PROMETHEUS=1``
(CI), where a missing binary fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from middleware import Shadow
from tests.integration.conftest import free_port
from tests.sidecar.test_alerts_service import Served, wait_for

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture
def prometheus_binary() -> str:
    if PROMETHEUS is None:
        if os.environ.get("BASELINED_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("prometheus is not installed (apt-get install prometheus)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return PROMETHEUS


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = Served(tmp_path, http_listen="127.0.0.1:0", prometheus_metrics=True)
    yield running
    running.stop()


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.slow
def test_prometheus_scrapes_the_sidecar_metrics_endpoint(
    tmp_path: Path, served: Served, prometheus_binary: str
) -> None:
    http = served.sidecar.http
    assert http is not None
    shadow = Shadow(
        model="fraud", environment="prod", target=served.target, sample_rate=1.0, atexit=False
    )
    for i in range(500):
        shadow.record_call(latency=0.01 + i * 1e-5, features={"amount": float(i)})
    shadow.flush()
    wait_for(lambda: shadow.stats().records_accepted == 500)
    shadow.close(timeout=2.0)

    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: baselined-sidecar\n"
        "    static_configs:\n"
        f"      - targets: ['{http.address}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                found = _query(port, "baselined_samples_accepted_total")
            except OSError:
                found = []  # not listening yet
            if found:
                break
            time.sleep(0.2)
        assert found, (
            "Prometheus returned no baselined series: "
            + (tmp_path / "prometheus.log").read_text()[-2000:]
        )
        (sample,) = found
        assert sample["metric"]["job"] == "baselined-sidecar"
        assert float(sample["value"][1]) == 500.0

        series = _query(port, "baselined_series")
        assert {(s["metric"]["model"], s["metric"]["environment"]) for s in series} == {
            ("fraud", "prod")
        }
        # amount, latency_seconds and error, for all traffic (no slices were sent)
        assert float(series[0]["value"][1]) == 3.0
        health = _query(port, 'up{job="baselined-sidecar"}')
        assert float(health[0]["value"][1]) == 1.0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
