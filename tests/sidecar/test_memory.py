"""``sidecar.memory``: the pinned mmap threshold, checked on glibc's own chunks in a
fresh interpreter (the allocator's state is per process): a freed large buffer no
longer moves later ones from ``mmap`` (returned to the system on free) to the heap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.memory import pin_mmap_threshold

ROOT = Path(__file__).resolve().parents[2]

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

_PROBE = """
import ctypes, sys
sys.path.insert(0, {root!r})
from sidecar.memory import pin_mmap_threshold
pinned = pin_mmap_threshold() if {pin} else None
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def mmapped(p):  # the chunk header's IS_MMAPPED bit
    return bool(ctypes.c_size_t.from_address(p - ctypes.sizeof(ctypes.c_size_t)).value & 2)

big = libc.malloc(4 << 20)  # an exact-mode buffer of a busy series, say
first = mmapped(big)
libc.free(big)  # unpinned, this raises the threshold to 4 MiB
later = [libc.malloc(512 << 10) for _ in range(4)]  # full 65,536-value buffers
print(pinned, first, [mmapped(p) for p in later])
"""


def _probe(pin: bool, **env: str) -> str:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    }
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(root=str(ROOT), pin=pin)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@glibc
def test_unpinned_a_freed_large_buffer_sends_later_ones_to_the_heap() -> None:
    assert _probe(False) == "None True [False, False, False, False]"


@glibc
def test_pinned_large_buffers_stay_mmapped_after_a_free() -> None:
    assert _probe(True) == "True True [True, True, True, True]"


@glibc
def test_an_operator_chosen_threshold_is_left_alone() -> None:
    # MALLOC_MMAP_THRESHOLD_ pins it at 1 MiB: the call defers, so 512 KiB buffers
    # stay on the heap (with its 256 KiB they would be mmapped).
    out = _probe(True, MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    assert out == "False True [False, False, False, False]"


def test_a_non_positive_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold must be positive"):
        pin_mmap_threshold(0)
