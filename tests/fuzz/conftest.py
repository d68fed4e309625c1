"""The fuzzing budget: a fixed, derandomized hypothesis profile per test, and a
count of the inputs every fuzz test tried, printed at the end of the session."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

TRIED: Counter[str] = Counter()
"""Inputs tried, by fuzz test (each test body calls :func:`tried`)."""


def tried(name: str) -> None:
    """Count one input tried by the fuzz test ``name`` (names starting with a space
    are breakdowns by outcome, left out of the total)."""
    TRIED[name] += 1


def budget(examples: int) -> settings:
    """A fixed budget: ``examples`` inputs, derandomized (the same inputs on every
    run, so CI is reproducible), no deadline (2 shared cores), no example database."""
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TRIED:
        return
    terminalreporter.section("fuzzing: inputs tried")
    for name, n in sorted(TRIED.items()):
        terminalreporter.write_line(f"{name:60} {n:7,}")
    total = sum(n for name, n in TRIED.items() if not name.startswith(" "))
    terminalreporter.write_line(f"{'total inputs tried':60} {total:7,}")


@pytest.fixture
def fuzz_count() -> Counter[str]:
    return TRIED
