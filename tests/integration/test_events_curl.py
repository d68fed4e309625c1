"""Acceptance 5 of issue 4: a deploy posted with curl as a CloudEvent to a running
sidecar shows up in ``baselined events list``."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sidecar.cli import main as cli
from tests.integration.conftest import SidecarProcess, free_port


@pytest.mark.slow
def test_a_deploy_posted_with_curl_is_listed(
    sidecar_factory: type[SidecarProcess],
    unique_model: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("the curl binary is not installed")
    http = free_port()
    sidecar = sidecar_factory(
        store=f"sqlite:///{tmp_path / 'events.db'}",
        port=free_port(),
        log=tmp_path / "s.log",
        extra=("--http-listen", f"127.0.0.1:{http}"),
    )
    sidecar.start()
    # The README's one-liner, with this test's model and port.
    done = subprocess.run(
        [
            curl, "-sS", "--fail-with-body", "-X", "POST", f"http://127.0.0.1:{http}/v1/events",
            "-H", "ce-specversion: 1.0", "-H", "ce-id: build-1234",
            "-H", "ce-type: dev.baselined.deploy", "-H", "ce-source: ci/my-pipeline",
            "-H", "content-type: application/json",
            "-d", json.dumps({"model": unique_model, "environment": "production", "version": "v42"}),
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    event_id = json.loads(done.stdout)["id"]

    code = cli(["events", "list", "--model", unique_model, "--json", "--target", sidecar.target])
    listed = json.loads(capsys.readouterr().out)["events"]
    assert code == 0
    (event,) = listed
    assert event["id"] == event_id and event["type"] == "EVENT_TYPE_DEPLOY"
    assert event["version"] == "v42" and event["environment"] == "production"
    assert event["source"] == "cloudevents" and abs(event["time"] - time.time()) < 120

    # A broken CloudEvent is refused with its reason and stores nothing.
    bad = subprocess.run(
        [
            curl, "-sS", "-o", "-", "-w", "%{http_code}", "-X", "POST",
            f"http://127.0.0.1:{http}/v1/events", "-H", "ce-specversion: 0.3",
            "-H", "ce-id: x", "-H", "ce-type: deploy", "-H", "ce-source: ci",
            "-d", json.dumps({"model": unique_model}),
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad.stdout.endswith("400") and "bad_specversion" in bad.stdout

    code = cli(
        ["events", "add", "--type", "config_change", "--model", unique_model,
         "--attr", "flag=on", "--target", sidecar.target]
    )  # fmt: skip
    assert code == 0 and "recorded config_change" in capsys.readouterr().out
    code = cli(["events", "list", "--model", unique_model, "--target", sidecar.target])
    table = capsys.readouterr().out
    assert code == 0
    assert "deploy" in table and "config_change" in table and "version=v42" in table
    assert sidecar.stop() == 0
