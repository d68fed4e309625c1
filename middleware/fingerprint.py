"""What the model runs on, computed once per process without importing heavy packages.

Fields (absent ones are left out):

- ``python``, ``python.implementation``, ``platform.system``,
  ``platform.release``, ``platform.machine``, ``libc``
- ``lib.<name>`` for numpy, scipy, pandas, scikit-learn, torch, tensorflow,
  onnxruntime, xgboost, lightgbm: the installed distribution's version, read
  with ``importlib.metadata`` (the package is never imported; CPU/GPU
  variants such as ``tensorflow-cpu`` and ``onnxruntime-gpu`` count)
- ``cuda.driver`` from ``/proc/driver/nvidia/version``; ``cuda.version``,
  ``cudnn.version``, ``nvidia.visible_devices`` from the environment variables
  the NVIDIA images set (see :data:`ENV_FIELDS`)
- ``k8s.pod``, ``k8s.namespace``, ``k8s.node``, ``k8s.pod_ip``,
  ``container.image`` from the Kubernetes Downward API variables listed in
  :data:`ENV_FIELDS` (the first one set wins)

``hash`` is the first 16 hex digits of the SHA-256 of the sorted
``key=value`` lines, so equal fields give equal hashes on every machine.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType

from baselined.v1 import baselined_pb2 as pb

__all__ = ["ENV_FIELDS", "LIBRARIES", "Fingerprint", "compute_fingerprint", "process_fingerprint"]

#: Field name -> distributions whose version is reported (the first installed wins).
LIBRARIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "numpy": ("numpy",),
        "scipy": ("scipy",),
        "pandas": ("pandas",),
        "scikit-learn": ("scikit-learn",),
        "torch": ("torch",),
        "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu"),
        "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
        "xgboost": ("xgboost",),
        "lightgbm": ("lightgbm",),
    }
)

#: Field name -> environment variables read, in order (the first one set wins).
ENV_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "k8s.pod": ("POD_NAME", "MY_POD_NAME", "K8S_POD_NAME"),
        "k8s.namespace": ("POD_NAMESPACE", "MY_POD_NAMESPACE", "K8S_NAMESPACE"),
        "k8s.node": ("NODE_NAME", "MY_NODE_NAME", "K8S_NODE_NAME"),
        "k8s.pod_ip": ("POD_IP", "MY_POD_IP"),
        "container.image": ("CONTAINER_IMAGE", "IMAGE", "IMAGE_NAME", "IMAGE_TAG"),
        "cuda.version": ("CUDA_VERSION",),
        "cudnn.version": ("CUDNN_VERSION", "NV_CUDNN_VERSION"),
        "nvidia.visible_devices": ("NVIDIA_VISIBLE_DEVICES",),
    }
)

_NVIDIA_VERSION = "/proc/driver/nvidia/version"
_DRIVER_RE = re.compile(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9][0-9.]*)")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The fields describing this process's runtime, and their stable hash."""

    fields: Mapping[str, str] = field(default_factory=dict)
    hash: str = ""

    @classmethod
    def of(cls, fields: Mapping[str, str]) -> Fingerprint:
        """A fingerprint of ``fields`` with its hash computed.

        >>> Fingerprint.of({"python": "3.11.7"}).hash == Fingerprint.of({"python": "3.11.7"}).hash
        True
        """
        clean = {str(k): str(v) for k, v in fields.items()}
        text = "\n".join(f"{k}={clean[k]}" for k in sorted(clean))
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        return cls(fields=MappingProxyType(clean), hash=digest)

    def to_proto(self) -> pb.Fingerprint:
        """The wire form."""
        return pb.Fingerprint(hash=self.hash, fields=dict(self.fields))


def _version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        except Exception:  # a broken installation must not stop the model server
            continue
    return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(4096)
    except OSError:
        return None


def compute_fingerprint(
    environ: Mapping[str, str] | None = None,
    *,
    extra: Mapping[str, str] | None = None,
    read_text: Callable[[str], str | None] = _read_text,
    library_version: Callable[[tuple[str, ...]], str | None] = _version,
) -> Fingerprint:
    """Compute the fingerprint now (use :func:`process_fingerprint` for the cached one).

    ``environ`` defaults to ``os.environ``; ``extra`` adds fields of your own
    (a model artifact hash, say); ``read_text`` and ``library_version`` are
    seams for tests.

    >>> fp = compute_fingerprint({"POD_NAME": "api-7"}, library_version=lambda names: None)
    >>> fp.fields["k8s.pod"]
    'api-7'
    """
    env = os.environ if environ is None else environ
    fields: dict[str, str] = {
        "python": platform.python_version(),
        "python.implementation": sys.implementation.name,
        "platform.system": platform.system(),
        "platform.release": platform.release(),
        "platform.machine": platform.machine(),
    }
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        libc = None
    if libc:
        fields["libc"] = libc
    for key, names in LIBRARIES.items():
        version = library_version(names)
        if version:
            fields[f"lib.{key}"] = version
    driver_text = read_text(_NVIDIA_VERSION)
    if driver_text:
        match = _DRIVER_RE.search(driver_text)
        if match:
            fields["cuda.driver"] = match.group(1).rstrip(".")
    for key, variables in ENV_FIELDS.items():
        for var in variables:
            value = env.get(var)
            if value:
                fields[key] = value
                break
    if extra:
        fields.update({str(k): str(v) for k, v in extra.items()})
    return Fingerprint.of(fields)


_cached: Fingerprint | None = None


def process_fingerprint() -> Fingerprint:
    """This process's fingerprint, computed on the first call and cached."""
    global _cached
    if _cached is None:
        _cached = compute_fingerprint()
    return _cached
