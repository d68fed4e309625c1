"""deploy/Dockerfile: structure (no Docker engine here) and its HEALTHCHECK against a real sidecar."""

from __future__ import annotations

import contextlib
import json
import os
import socket as stdlib_socket
import subprocess
import sys
import time
from pathlib import Path

from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

from tests.deploy.support import DEPLOY, REPO, running_sidecar


def _parser() -> DockerfileParser:
    return DockerfileParser(path=str(DEPLOY / "Dockerfile"), env_replace=True)


def _instructions(name: str) -> list[str]:
    return [s["value"] for s in _parser().structure if s["instruction"] == name]


def test_multi_stage_on_python_slim_installs_the_sidecar_extra() -> None:
    parser = _parser()
    assert parser.parent_images == ["python:3.11-slim", "python:3.11-slim"]
    runs = " ".join(_instructions("RUN"))
    assert 'pip install ".[sidecar]"' in runs
    assert any(v.startswith("--from=build ") for v in _instructions("COPY"))


def test_copies_only_files_that_exist_and_the_ignore_file_keeps() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].removesuffix("/**") for line in ignore if line.startswith("!")}
    for value in _instructions("COPY"):
        if value.startswith("--from"):
            continue
        *sources, _dest = value.split()
        for src in sources:
            assert (REPO / src).exists(), src
            assert src in kept, f"{src} is excluded by Dockerfile.dockerignore"


def test_runs_as_a_non_root_user() -> None:
    users = _instructions("USER")
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"


def test_entrypoint_exposes_and_healthcheck() -> None:
    assert json.loads(_instructions("ENTRYPOINT")[-1]) == ["baselined", "serve"]
    # Only the health port: the HTTP listener stays on loopback without principals.
    assert set(_instructions("EXPOSE")[-1].split()) == {"50051"}
    health = _instructions("HEALTHCHECK")
    assert len(health) == 1 and "CMD [" in health[0]


def _healthcheck_argv() -> list[str]:
    value = _instructions("HEALTHCHECK")[0]
    return list(json.loads(value[value.index("CMD ") + 4 :]))


def test_healthcheck_command_passes_on_a_serving_sidecar_and_fails_without(
    tmp_path: Path,
) -> None:
    socket = tmp_path / "sidecar.sock"
    env = {"BASELINED_LISTEN": f"unix:{socket}"}
    argv = [sys.executable if a == "python" else a for a in _healthcheck_argv()]
    run_env = {**os.environ, **env}
    with running_sidecar(env, socket):
        deadline = time.monotonic() + 20
        while True:  # SERVING is set right after the socket appears; Docker retries too
            rc = subprocess.run(argv, env=run_env, capture_output=True, timeout=30).returncode
            if rc == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert rc == 0
    stopped = subprocess.run(argv, env=run_env, capture_output=True, timeout=30)
    assert stopped.returncode != 0


def test_image_defaults_serve_the_api_on_a_socket_and_health_on_tcp() -> None:
    envs = _parser().envs
    # Open mode (no principals) is only allowed on loopback or a Unix socket.
    assert envs["BASELINED_LISTEN"] == "unix:/var/run/baselined/sidecar.sock"
    assert envs["BASELINED_HEALTH_LISTEN"] == "0.0.0.0:50051"
    assert "BASELINED_AUTH_TOKENS" not in envs and "BASELINED_ALLOW_OPEN" not in envs
    runs = " ".join(_instructions("RUN"))
    assert "/var/run/baselined" in runs, "the socket's directory must exist and be writable"


def test_image_defaults_start_without_principals_and_pass_the_healthcheck(
    tmp_path: Path,
) -> None:
    envs = _parser().envs
    socket = tmp_path / "sidecar.sock"
    with contextlib.closing(stdlib_socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The image's values, with the socket under tmp_path and a free health port.
    env = {
        "BASELINED_LISTEN": envs["BASELINED_LISTEN"].replace(
            "/var/run/baselined/sidecar.sock", str(socket)
        ),
        "BASELINED_HEALTH_LISTEN": envs["BASELINED_HEALTH_LISTEN"].replace("50051", str(port)),
        "BASELINED_AUTH_TOKENS": "",
        "BASELINED_AUTH_TOKENS_FILE": "",
        "BASELINED_ALLOW_OPEN": "false",
    }
    argv = [sys.executable if a == "python" else a for a in _healthcheck_argv()]
    run_env = {**os.environ, **env}
    with running_sidecar(env, socket):
        deadline = time.monotonic() + 20
        while True:
            rc = subprocess.run(argv, env=run_env, capture_output=True, timeout=30).returncode
            if rc == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert rc == 0, "the HEALTHCHECK must reach the TCP health listener"
