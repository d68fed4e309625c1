"""Sampling decisions: stable by request id, seeded at random."""

from __future__ import annotations

import random
import subprocess
import sys
import zlib

import pytest

from middleware.sampling import BUCKETS, Sampler, id_bucket, sample_by_id


def test_rate_bounds() -> None:
    ids = [f"id-{i}" for i in range(2000)]
    assert all(sample_by_id(i, 1.0) for i in ids)
    assert not any(sample_by_id(i, 0.0) for i in ids)


def test_documented_hash() -> None:
    for rid in ("req-1", "ünïcode-✓", "0"):
        bucket = zlib.crc32(rid.encode("utf-8")) % 1_000_003
        assert id_bucket(rid) == bucket
        assert sample_by_id(rid, 0.4) == (bucket < 0.4 * BUCKETS)


def test_same_decision_in_another_process() -> None:
    """hash() is salted per process; the id sampler must not be."""
    ids = [f"user-{i}" for i in range(300)]
    here = "".join("1" if sample_by_id(i, 0.3) else "0" for i in ids)
    code = (
        "from middleware.sampling import sample_by_id;"
        f"print(''.join('1' if sample_by_id(i, 0.3) else '0' for i in {ids!r}))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": ".:proto", "PYTHONHASHSEED": "random"},
    ).stdout.strip()
    assert here == there


def test_sequential_ids_sample_close_to_the_rate() -> None:
    ids = [f"req-{i}" for i in range(100_000)]
    share = sum(sample_by_id(i, 0.1) for i in ids) / len(ids)
    assert share == pytest.approx(0.1, abs=0.005)


def test_sampler_seeded_random_and_by_id() -> None:
    a = Sampler(0.3, rng=random.Random(5))
    b = Sampler(0.3, rng=random.Random(5))
    assert [a.decide() for _ in range(100)] == [b.decide() for _ in range(100)]
    assert a.decide("abc") == sample_by_id("abc", 0.3)
    with pytest.raises(ValueError, match="sample_rate"):
        Sampler(-0.1)
