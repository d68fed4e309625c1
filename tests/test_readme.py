"""The README's examples run: its Python snippet executes, and every `baselined`
command it shows parses with the real CLI parser (so docs and flags agree)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from sidecar.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


def _commands() -> list[str]:
    lines = []
    for body in _blocks("sh"):
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("baselined "):
                lines.append(line)
    return lines


@pytest.mark.parametrize("line", _commands())
def test_every_cli_example_parses(line: str) -> None:
    argv = shlex.split(line, comments=True)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as err:  # argparse exits on unknown flags or missing arguments
        pytest.fail(f"README example does not parse ({err.code}): {line}")


def test_there_are_cli_examples() -> None:
    assert len(_commands()) >= 10


def test_python_example_runs_and_leaves_the_handler_alone() -> None:
    (code,) = _blocks("python")
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the snippet as a user pastes it
    predict = namespace["predict"]
    # Nothing listens on the snippet's target: the call still returns what the
    # handler returns (None for its `...` body) and never raises.
    for _ in range(100):
        assert predict({"amount": 12.5}) is None
    assert predict.__name__ == "predict"
    shadow_module = sys.modules["middleware.shadow"]  # the package exports a function of that name
    for live in list(shadow_module._live):  # close the snippet's Shadow: no atexit wait
        if getattr(live, "model", None) == "fraud":
            live.close(timeout=1.0)
