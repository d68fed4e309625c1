"""The CLI's errors against a real sidecar: a clear message and the documented exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

import middleware
from sidecar.cli import main as cli
from tests.integration.conftest import SidecarProcess, free_port


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_cli_errors_name_the_problem(
    sidecar_factory: type[SidecarProcess],
    unique_model: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sidecar = sidecar_factory(
        store=f"sqlite:///{tmp_path / 'cli.db'}", port=free_port(), log=tmp_path / "s.log"
    )
    sidecar.start()
    target = ("--target", sidecar.target)

    code, _, err = _run(capsys, "baselines", "show", "b-000000000000", *target)
    assert code == 1
    assert "NOT_FOUND" in err and "b-000000000000" in err

    code, out, _ = _run(
        capsys, "windows", "show", "--model", unique_model, "--since", "1h", *target
    )
    assert code == 0 and "no data" in out

    code, _, err = _run(
        capsys,
        "baselines",
        "freeze",
        "--model",
        unique_model,
        "--name",
        "x",
        "--since",
        "1h",
        *target,
    )
    assert code == 1 and "FAILED_PRECONDITION" in err  # an empty window is refused

    with middleware.Shadow(
        model=unique_model, environment="production", target=sidecar.target
    ) as sh:
        handler = sh.wrap(lambda features: 1.0)
        for i in range(100):
            handler({"x": float(i)})
    args = ("baselines", "freeze", "--model", unique_model, "--name", "first", "--since", "1h")
    code, out, _ = _run(capsys, *args, *target)
    assert code == 0 and "name=first" in out
    code, _, err = _run(capsys, *args, *target)
    assert code == 1 and "ALREADY_EXISTS" in err and "first" in err

    code, _, err = _run(capsys, "baselines", "show", "b-1", "--quantiles", "0.5,1.5", *target)
    assert code == 2 and "[0, 1]" in err
    code, _, err = _run(capsys, "windows", "show", "--model", "m", "--since", "soon", *target)
    assert code == 2 and "not a duration" in err

    code, _, err = _run(
        capsys, "baselines", "rollback", "--model", unique_model, "--reason", "r", *target
    )
    assert code == 1 and "FAILED_PRECONDITION" in err

    assert sidecar.stop() == 0
    code, _, err = _run(capsys, "baselines", "list", "--timeout", "2", *target)
    assert code == 3
    assert f"cannot reach the sidecar at {sidecar.target}" in err
