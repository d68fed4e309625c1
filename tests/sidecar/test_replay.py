"""``baselined replay``: JSON Lines through the engine on a simulated clock."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sidecar.cli import main
from sidecar.guardrails import Guardrails
from sidecar.replay import ReplayError, replay

T0 = 1767225600.0
RATE = 10.0  # samples per simulated second


def _sample(t: float, amount: float | None, country: str, latency: float) -> str:
    return json.dumps(
        {
            "kind": "sample",
            "time": t,
            "model": "fraud",
            "version": "3",
            "environment": "prod",
            "signals": {"amount": amount, "country": country, "latency_ms": latency},
            "signal_kinds": {"latency_ms": "latency"},
            "attributes": {"node": "gpu-7" if t % 2 < 1 else "gpu-8"},
        }
    )


def _lines(*, shift: float, seed: int = 3, base: int = 3000, live: int = 3000) -> list[str]:
    """``base`` samples, a freeze, a library update event, then ``live`` samples whose
    amount is shifted by ``shift`` standard deviations."""
    rng = np.random.default_rng(seed)
    countries = ["DE", "FR", "US"]
    out: list[str] = []
    t = T0
    for i in range(base + live):
        if i == base:
            out.append(
                json.dumps(
                    {
                        "kind": "freeze",
                        "time": t,
                        "model": "fraud",
                        "environment": "prod",
                        "name": "ref-1",
                    }
                )
            )
            out.append(
                json.dumps(
                    {
                        "kind": "event",
                        "time": t,
                        "model": "fraud",
                        "type": "library_update",
                        "attributes": {"package": "numpy", "from": "1.26.4", "to": "2.1.0"},
                    }
                )
            )
        amount = float(rng.normal(100.0, 10.0)) + (shift * 10.0 if i >= base else 0.0)
        missing = rng.random() < 0.01
        out.append(
            _sample(
                t,
                None if missing else amount,
                countries[int(rng.integers(3))],
                float(rng.lognormal(3.0, 0.3)),
            )
        )
        t += 1.0 / RATE
    return out


def _run(lines: list[str], **kwargs: Any) -> tuple[Any, list[dict[str, Any]]]:
    out = io.StringIO()
    summary = replay(lines, guardrails=Guardrails.load(None), out=out, **kwargs)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return summary, [line for line in lines if line.get("kind") == "alert"]  # impact lines aside


def test_injected_shift_fires_an_alert_with_its_effect_and_bound() -> None:
    summary, alerts = _run(_lines(shift=1.0))
    assert summary.bad_lines == 0
    assert summary.samples == 6000 and summary.freezes == 1 and len(summary.events) == 1
    assert summary.events[0].type == "library_update"
    assert summary.events[0].attributes["to"] == "2.1.0"
    firing = [a for a in alerts if a["state"] == "firing"]
    assert firing, alerts
    assert summary.alerts_fired == len(firing)
    signals = {s["signal"] for a in firing for s in a["series"]}
    assert "amount" in signals, firing
    first = next(a for a in firing if a["series"][0]["signal"] == "amount")
    assert first["model"] == "fraud" and first["environment"] == "prod"
    assert first["severity"] in ("minor", "moderate", "severe")
    assert len(first["fingerprint"]) == 16
    # After the freeze at T0 + 300 s, live data accumulates; two consecutive checks fire.
    assert T0 + 300 < first["time"] <= T0 + 400
    entry = first["series"][0]
    assert entry["slice"] in ("*", "node=gpu-7", "node=gpu-8")
    assert entry["effect"]["name"] and entry["effect"]["lower"] <= entry["effect"]["upper"]
    assert entry["lower_bound"] >= entry["guardrail"] > 0
    assert first["baseline_id"].startswith("b-")


def test_no_change_twin_raises_nothing() -> None:
    summary, alerts = _run(_lines(shift=0.0))
    assert alerts == []
    assert summary.alerts_fired == 0 and summary.checks >= 60


def test_output_lines_are_identical_on_a_second_run() -> None:
    lines = _lines(shift=1.0, base=1500, live=1500)
    _, first = _run(lines)
    _, second = _run(lines)
    strip = [{k: v for k, v in a.items() if k != "baseline_id"} for a in first]
    assert strip == [{k: v for k, v in a.items() if k != "baseline_id"} for a in second]


BAD = [
    ("this is not json", "not JSON"),
    ('{"time": 5.0, "model": "fraud"}', 'missing "kind"'),
    ('{"kind": "sample", "model": "fraud", "signals": {"a": 1}}', 'missing "time"'),
    ('{"kind": "sample", "time": 5.0, "signals": {"a": 1}}', 'missing "model"'),
    ('{"kind": "sample", "time": 1.0, "model": "fraud", "signals": {"a": 1}}', "back in time"),
    (
        '{"kind": "sample", "time": 5.0, "model": "fraud", "signals": {"a": [1]}}',
        "expected a number",
    ),
    ('{"kind": "sample", "time": "soon", "model": "fraud", "signals": {"a": 1}}', '"time" must'),
    ('{"kind": "sample", "time": 5.0, "model": "fraud", "signals": {"a": "x"}}', "was numeric"),
    ('{"kind": "teleport", "time": 5.0, "model": "fraud"}', 'unknown "kind"'),
    ("[1, 2]", "expected a JSON object"),
    (
        '{"kind": "sample", "time": 5.0, "model": "fraud", "signals": {"a": 1},'
        ' "signal_kinds": {"a": "vibes"}}',
        "signal_kinds",
    ),
    ('{"kind": "freeze", "time": 5.0, "model": "nobody", "environment": "prod"}', "cannot freeze"),
]


def _good(t: float) -> str:
    return json.dumps({"kind": "sample", "time": t, "model": "fraud", "signals": {"a": 1.0}})


def test_bad_lines_are_skipped_counted_and_named_by_line_number() -> None:
    lines = [_good(2.0)]
    for text, _ in BAD:
        lines.append(text)
        lines.append(_good(5.0))
    warned: list[tuple[int, str]] = []
    summary, _ = _run(lines, warn=lambda n, why: warned.append((n, why)))
    assert summary.lines == len(lines)
    assert summary.bad_lines == len(BAD)
    assert summary.samples == len(BAD) + 1
    assert [p.line for p in summary.problems] == [2 + 2 * i for i in range(len(BAD))]
    for problem, (_, reason) in zip(summary.problems, BAD, strict=True):
        assert reason in problem.reason, problem
    assert warned == [(p.line, p.reason) for p in summary.problems]
    assert "bad lines skipped" in summary.describe()


def test_strict_stops_at_the_first_bad_line() -> None:
    lines = [_good(1.0), _good(2.0), '{"kind": "sample", "time": 3.0}', "nonsense"]
    with pytest.raises(ReplayError) as info:
        _run(lines, strict=True)
    assert info.value.line == 3
    assert 'missing "model"' in str(info.value) and "line 3" in str(info.value)


def test_a_long_quiet_gap_costs_few_checks() -> None:
    lines = [_good(0.0), _good(1.0), _good(365 * 86400.0)]
    summary, _ = _run(lines)
    assert summary.samples == 3 and summary.bad_lines == 0
    assert summary.checks < 1000


def test_cli_replays_a_file_to_an_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "traffic.jsonl"
    source.write_text("\n".join([*_lines(shift=1.0, base=2000, live=2000), "garbage"]) + "\n")
    target = tmp_path / "alerts.jsonl"
    code = main(["replay", str(source), "--out", str(target), "--check-interval", "10"])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    alerts = [line for line in lines if line["kind"] == "alert"]
    assert any(a["state"] == "firing" for a in alerts)
    assert "line 4003: not JSON" in err
    assert "4003 lines read" in err and "1 bad lines skipped" in err and "alerts fired" in err


def test_cli_strict_names_the_line_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "traffic.jsonl"
    source.write_text(_good(1.0) + "\n" + _good(0.5) + "\n")
    code = main(["replay", str(source), "--strict"])
    captured = capsys.readouterr()
    assert code == 1
    assert "line 2" in captured.err and "back in time" in captured.err
    assert captured.out == ""


def test_cli_refuses_a_bad_config_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "traffic.jsonl"
    source.write_text(_good(1.0) + "\n")
    config = tmp_path / "guardrails.toml"
    config.write_text("[guardrails.vibes.ks]\nminor = 0.1\n")
    code = main(["replay", str(source), "--config", str(config)])
    assert code == 2
    assert "vibes" in capsys.readouterr().err
