"""deploy/kubernetes: Kubernetes schema validation (offline) and what the manifests promise."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from sidecar.guardrails import Guardrails
from sidecar.settings import Settings
from tests.deploy.support import (
    DEPLOY,
    containers_by_name,
    env_values,
    load_docs,
    sidecar_settings_env,
    validate_k8s,
)

K8S = DEPLOY / "kubernetes"
NATIVE = K8S / "model-server.yaml"
LEGACY = K8S / "model-server-pre-1.29.yaml"
# Native sidecars are on by default from 1.29; the legacy variant must work on 1.27/1.28.
VERSIONS = {
    "model-server.yaml": ("1.29.0", "1.33.0", "1.37.0"),
    "model-server-pre-1.29.yaml": ("1.27.0", "1.28.0", "1.37.0"),
    "redis.yaml": ("1.27.0", "1.37.0"),
    "guardrails-configmap.yaml": ("1.27.0", "1.37.0"),
}


def test_every_manifest_is_covered() -> None:
    assert sorted(p.name for p in K8S.glob("*.yaml")) == sorted(VERSIONS)


@pytest.mark.parametrize(("name", "version"), [(n, v) for n, vs in VERSIONS.items() for v in vs])
def test_manifest_validates_against_the_kubernetes_schema(name: str, version: str) -> None:
    docs = load_docs(K8S / name)
    assert docs
    for doc in docs:
        validate_k8s(doc, version)


def test_the_validator_rejects_a_misplaced_field() -> None:
    doc = load_docs(NATIVE)[0]
    doc["spec"]["template"]["spec"]["initContainers"][0]["startupprobe"] = {}
    with pytest.raises(Exception, match="startupprobe"):
        validate_k8s(doc, "1.33.0")


def _pod(path: Path) -> dict[str, Any]:
    deployment = next(d for d in load_docs(path) if d["kind"] == "Deployment")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_native_sidecar_starts_first_with_grpc_probes_on_its_health_port() -> None:
    pod = _pod(NATIVE)
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    health = next(p for p in sidecar["ports"] if p["name"] == "grpc-health")["containerPort"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert sidecar[probe]["grpc"] == {"port": health}
    env = env_values(sidecar)
    assert env["BASELINED_HEALTH_LISTEN"] == f"0.0.0.0:{health}"
    assert [c["name"] for c in pod["containers"]] == ["model"]


def test_socket_on_a_shared_emptydir_and_the_middleware_targets_it() -> None:
    for path in (NATIVE, LEGACY):
        pod = _pod(path)
        volume = next(v for v in pod["volumes"] if v["name"] == "baselined-socket")
        assert "emptyDir" in volume
        containers = containers_by_name(pod)
        listen = env_values(containers["baselined"])["BASELINED_LISTEN"]
        assert env_values(containers["model"])["BASELINED_TARGET"] == listen
        socket_dir = str(Path(listen.removeprefix("unix:")).parent)
        for c in containers.values():
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            assert mounts["baselined-socket"] == socket_dir, c["name"]


def test_downward_api_resources_and_security_context() -> None:
    fields = {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
              "NODE_NAME": "spec.nodeName"}  # fmt: skip
    for path in (NATIVE, LEGACY):
        pod = _pod(path)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for c in containers_by_name(pod).values():
            env = env_values(c)
            for name, field_path in fields.items():
                assert env[name] == {"fieldRef": {"fieldPath": field_path}}
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
        model_env = env_values(containers_by_name(pod)["model"])
        assert {"BASELINED_MODEL", "BASELINED_ENVIRONMENT", "BASELINED_SAMPLE_RATE"} <= set(
            model_env
        )


def test_pre_129_variant_is_the_native_one_with_the_sidecar_as_a_container() -> None:
    native, legacy = _pod(NATIVE), _pod(LEGACY)
    side = dict(containers_by_name(legacy)["baselined"])
    assert "initContainers" not in legacy
    sleep = int(side.pop("lifecycle")["preStop"]["exec"]["command"][1])
    assert side == {k: v for k, v in native["initContainers"][0].items() if k != "restartPolicy"}
    grace = float(env_values(side)["BASELINED_SHUTDOWN_GRACE"])
    # The sidecar must outlive the model server's drain and still flush before SIGKILL.
    assert legacy["terminationGracePeriodSeconds"] > sleep + grace


def test_sidecar_env_is_accepted_by_baselined_serve(tmp_path: Path) -> None:
    guardrails = load_docs(K8S / "guardrails-configmap.yaml")[0]["data"]["guardrails.toml"]
    (tmp_path / "guardrails.toml").write_text(guardrails)
    for path in (NATIVE, LEGACY):
        env = sidecar_settings_env(env_values(containers_by_name(_pod(path))["baselined"]))
        env["BASELINED_GUARDRAILS"] = str(tmp_path / "guardrails.toml")
        settings = Settings.resolve({}, env=env)
        assert settings.listen == "unix:/var/run/baselined/sidecar.sock"
        assert settings.store.startswith("redis://")
        Guardrails.load(settings.guardrails)


def test_probes_hit_the_health_listener_and_open_mode_is_allowed() -> None:
    """The grpc probes dial the port health_listen binds, and the sidecar's env passes
    the open-mode rule (API on the socket, HTTP on loopback), so the pod can start."""
    from sidecar.auth import interceptor_from_settings

    for path in (NATIVE, LEGACY):
        pod = _pod(path)
        side = containers_by_name(pod).get("baselined") or pod["initContainers"][0]
        env = env_values(side)
        port = int(env["BASELINED_HEALTH_LISTEN"].rpartition(":")[2])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert side[probe]["grpc"]["port"] == port, (path.name, probe)
        settings = Settings.resolve({}, env=sidecar_settings_env(env))
        assert interceptor_from_settings(settings) is None  # open mode, and allowed


def test_guardrails_configmap_loads_with_its_overrides(tmp_path: Path) -> None:
    text = load_docs(K8S / "guardrails-configmap.yaml")[0]["data"]["guardrails.toml"]
    (tmp_path / "g.toml").write_text(text)
    rails = Guardrails.load(tmp_path / "g.toml")
    assert rails.playbook_url("fraud") == "https://runbooks.example/fraud"
    assert rails.playbook_url("other") == "https://runbooks.example/baselined"


def test_redis_config_runs_with_aof_persistence(tmp_path: Path) -> None:
    cm = next(d for d in load_docs(K8S / "redis.yaml") if d["kind"] == "ConfigMap")
    conf = cm["data"]["redis.conf"].replace("dir /data", f"dir {tmp_path}")
    sock = tmp_path / "redis.sock"
    (tmp_path / "redis.conf").write_text(conf + f"\nport 0\nunixsocket {sock}\n")
    proc = subprocess.Popen(["redis-server", str(tmp_path / "redis.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        client = redis.Redis(unix_socket_path=str(sock))
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.set("baselined:deploy-test", "1")
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
    assert (tmp_path / "appendonlydir").is_dir()


def test_redis_statefulset_mounts_the_config_and_a_persistent_volume() -> None:
    docs = {d["kind"] + "/" + d["metadata"]["name"]: d for d in load_docs(K8S / "redis.yaml")}
    sts = docs["StatefulSet/baselined-redis"]
    assert docs[f"Service/{sts['spec']['serviceName']}"]["spec"]["clusterIP"] == "None"
    store = env_values(containers_by_name(_pod(NATIVE))["baselined"])["BASELINED_STORE"]
    host = store.removeprefix("redis://").split(":")[0]
    assert f"Service/{host}" in docs
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    assert container["command"][-1] == "/etc/redis/redis.conf"
