"""Process memory: keep a served sidecar's RSS near its working set.

The live windows allocate large short-lived numpy buffers: a numeric series keeps
its values exactly up to ``exact_limit`` per bucket (65,536 doubles: 512 KiB, in a
buffer that doubles as it fills) before it turns into a digest, and batches gather
in (signals x rows) blocks of up to ~750 KiB. glibc serves allocations above its
mmap threshold with ``mmap`` and unmaps them on ``free``; but the threshold is
dynamic: it starts at 128 KiB and the first such ``free`` raises it to the freed
size (up to 32 MiB), so from then on these buffers come from the heap arenas, whose
freed holes the allocator keeps. That is not a leak (the Python heap stays flat),
but RSS then sits at the high-water mark of every arena and jumps as buckets fill.

:func:`pin_mmap_threshold` pins the threshold (``mallopt(M_MMAP_THRESHOLD)``, which
also turns the dynamic adjustment off), so those buffers go back to the system when
freed. The soak of ``load_tests/suite.py`` measured the effect (README,
"Performance"). ``baselined serve`` calls it at start; an embedding process
decides for itself.
"""

from __future__ import annotations

import ctypes
import logging
import os

__all__ = ["MMAP_THRESHOLD", "pin_mmap_threshold"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 256 * 1024
"""Bytes: allocations this large or larger are mmapped (and unmapped when freed)."""

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold at ``threshold`` bytes; return whether it was set.

    Does nothing (False) on other C libraries (musl, macOS) and when the operator
    already chose a threshold through ``MALLOC_MMAP_THRESHOLD_`` or
    ``GLIBC_TUNABLES`` (``glibc.malloc.mmap_threshold``)."""
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
    return done
