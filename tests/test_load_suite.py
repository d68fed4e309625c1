"""The load-test suite runs: ``python -m load_tests.suite --quick`` on one cheap
item, as a subprocess, so that it does not rot (no figure is asserted); and the
soak's judgement holds on synthetic RSS samples (a sawtooth, with and without a leak)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_suite_quick_compare_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "load_tests.suite",
            "--quick",
            "--only",
            "compare",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "| compare | comparison of 1,000 series (exact states) |" in done.stdout
    assert "compare: start" in done.stderr  # progress goes to stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["status"] for r in rows} <= {"PASS", "MISS"}
    assert [r["item"] for r in rows] == ["compare", "compare"]
    assert all(r["value"] > 0 for r in rows)


def test_suite_help_names_every_item() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "load_tests.suite", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for item in ("middleware", "ingest", "compare", "flush", "memory", "fleet", "soak"):
        assert item in done.stdout


def _sawtooth(minutes: float, leak_mb_per_min: float) -> list[tuple[float, float]]:
    """RSS samples every 5 s: 150 MB plus a 40 MB tooth a minute (buckets filling and
    leaving memory), plus a steady leak."""
    return [
        (float(t), 150.0 + 40.0 * ((t % 60) / 60.0) + leak_mb_per_min * t / 60.0)
        for t in range(0, int(minutes * 60) + 1, 5)
    ]


def test_soak_judgement_is_not_fooled_by_the_sawtooth() -> None:
    from load_tests.suite import soak_judgement

    points = _sawtooth(10, 0.0)
    # First vs last sample (trough at 300 s, top of a tooth at 595 s): a false +25 %.
    steady = [p for p in points if p[0] >= 300 and p[0] < 600]
    assert (steady[-1][1] - steady[0][1]) / steady[0][1] > 0.2
    judged = soak_judgement(points[:-1], 300.0)
    assert abs(judged["growth"]) < 0.01
    assert (judged["from"], judged["to"], judged["samples"]) == (300.0, 595.0, 60.0)
    assert (judged["low"], judged["high"]) == (150.0, pytest.approx(186.67, abs=0.01))


def test_soak_judgement_sees_a_steady_leak_through_the_sawtooth() -> None:
    from load_tests.suite import soak_judgement

    judged = soak_judgement(_sawtooth(10, 3.0), 300.0)  # +3 MB a minute
    assert judged["growth"] > 0.05  # past the budget's +5 %
    assert judged["slope"] > 2.0  # MB a minute, the sawtooth adding its own tilt
    assert soak_judgement(_sawtooth(10, 0.5), 300.0)["growth"] < 0.05
