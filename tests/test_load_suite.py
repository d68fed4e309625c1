"""The load-test suite runs: ``python -m load_tests.suite --quick`` on one cheap
item, as a subprocess, so that it does not rot (no figure is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
