"""Shared helpers of the deploy/ tests: paths, YAML loading, schema validation, settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

__all__ = [
    "CLI_ENV",
    "DEPLOY",
    "REPO",
    "containers_by_name",
    "env_values",
    "load_docs",
    "running_sidecar",
    "sidecar_settings_env",
    "validate_k8s",
]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

CLI_ENV = frozenset({"BASELINED_TARGET", "BASELINED_ENVIRONMENT", "BASELINED_ACTOR"})
"""BASELINED_* variables of the query CLI (docs/configuration.md), not of `serve`."""


def load_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``path`` (or of a text)."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def validate_k8s(doc: Mapping[str, Any], version: str) -> None:
    """Validate against the Kubernetes ``version`` JSON schema, strictly (unknown fields fail)."""
    kubernetes_validate.validate(dict(doc), version, strict=True)


def containers_by_name(pod_spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Init and app containers of a pod spec, by name."""
    out: dict[str, dict[str, Any]] = {}
    for c in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
        out[c["name"]] = c
    return out


def env_values(container: Mapping[str, Any]) -> dict[str, Any]:
    """A container's env as name -> value (plain) or name -> valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def sidecar_settings_env(env: Mapping[str, Any]) -> dict[str, str]:
    """The ``BASELINED_*`` plain values ``baselined serve`` reads, minus the CLI's own."""
    return {
        k: str(v)
        for k, v in env.items()
        if k.startswith("BASELINED_") and k not in CLI_ENV and isinstance(v, str)
    }


@contextmanager
def running_sidecar(env: Mapping[str, str], socket: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run the real ``baselined serve`` with ``env`` until its Unix ``socket`` appears."""
    full = {**os.environ, "BASELINED_STORE": ":memory:", "BASELINED_HTTP_LISTEN": "", **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "serve"],
        cwd=REPO,
        env={**full, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'proto'}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"baselined serve exited {proc.returncode}: {err}")
            if time.monotonic() > deadline:
                raise AssertionError("baselined serve did not create its socket in 30 s")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
