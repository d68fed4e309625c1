"""The runtime fingerprint, with an injected environment."""

from __future__ import annotations

import sys

from middleware.fingerprint import Fingerprint, compute_fingerprint, process_fingerprint

NVIDIA = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    "GCC version:  gcc version 12.2.0\n"
)


def test_fields_from_environment_libraries_and_driver() -> None:
    env = {
        "POD_NAME": "ranker-7d9f-abc",
        "MY_POD_NAMESPACE": "ml",
        "NODE_NAME": "gpu-7",
        "POD_IP": "10.0.0.7",
        "CONTAINER_IMAGE": "registry/ranker:1.4",
        "CUDA_VERSION": "12.2.0",
    }
    fp = compute_fingerprint(
        env,
        read_text=lambda path: NVIDIA if path == "/proc/driver/nvidia/version" else None,
        library_version=lambda names: (
            {"numpy": "1.26.4", "torch": "2.3.1"}.get(names[0])
            or ({"onnxruntime-gpu": "1.18.0"}.get(names[-1]))
        ),
        extra={"model.sha256": "abc123"},
    )
    f = fp.fields
    assert f["k8s.pod"] == "ranker-7d9f-abc"
    assert f["k8s.namespace"] == "ml"
    assert f["k8s.node"] == "gpu-7"
    assert f["k8s.pod_ip"] == "10.0.0.7"
    assert f["container.image"] == "registry/ranker:1.4"
    assert f["cuda.version"] == "12.2.0"
    assert f["cuda.driver"] == "535.104.05"
    assert f["lib.numpy"] == "1.26.4" and f["lib.torch"] == "2.3.1"
    assert f["lib.onnxruntime"] == "1.18.0"
    assert "lib.pandas" not in f
    assert f["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert f["model.sha256"] == "abc123"
    assert len(fp.hash) == 16


def test_hash_is_stable_and_changes_with_any_field() -> None:
    a = Fingerprint.of({"python": "3.11.7", "lib.numpy": "1.26.4"})
    b = Fingerprint.of({"lib.numpy": "1.26.4", "python": "3.11.7"})
    c = Fingerprint.of({"python": "3.11.7", "lib.numpy": "2.1.0"})
    assert a.hash == b.hash != c.hash
    assert a.to_proto().fields["lib.numpy"] == "1.26.4"


def test_without_gpu_or_kubernetes_nothing_is_invented() -> None:
    fp = compute_fingerprint({}, read_text=lambda path: None, library_version=lambda n: None)
    assert not any(k.startswith(("k8s.", "cuda.", "lib.", "container.")) for k in fp.fields)


def test_real_process_fingerprint_is_cached_and_does_not_import_libraries() -> None:
    before = set(sys.modules)
    fp = process_fingerprint()
    assert process_fingerprint() is fp
    assert "lib.numpy" in fp.fields  # installed here
    assert not ({"torch", "scipy", "pandas", "sklearn"} & (set(sys.modules) - before))
