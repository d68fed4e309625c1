"""Acceptance 5 of issue 7: a baseline exported from a SQLite-backed sidecar, imported
into a Redis-backed one and diffed against the original shows no differences; a
modified export file is refused and changes nothing. Real sidecars, the real CLI."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import pytest

import middleware
from sidecar.cli import main as cli
from tests.integration.conftest import SidecarProcess, free_port


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _send_traffic(target: str, model: str, environment: str, n: int = 400) -> None:
    with middleware.Shadow(model=model, environment=environment, target=target) as shadow:
        handler = shadow.wrap(lambda features: 2.0 * features["x"] + 1.0)
        for i in range(n):
            handler({"x": float(i % 97) / 7.0, "colour": ("red", "green", "blue")[i % 3]})


@pytest.mark.slow
def test_export_from_sqlite_import_into_redis_diff_and_tampering(
    sidecar_factory: type[SidecarProcess],
    unique_model: str,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    staging = sidecar_factory(
        store=f"sqlite:///{tmp_path / 'staging.db'}", port=free_port(), log=tmp_path / "a.log"
    )
    production = sidecar_factory(store=redis_url, port=free_port(), log=tmp_path / "b.log")
    staging.start()
    production.start()
    on_a = ("--target", staging.target)
    on_b = ("--target", production.target)

    _send_traffic(staging.target, unique_model, "staging")
    code, out, err = _run(
        capsys,
        *("baselines", "freeze", "--model", unique_model, "--environment", "staging"),
        *("--name", "w1", "--since", "1h", "--reason", "week 1", "--json", *on_a),
    )
    assert code == 0, err
    original = json.loads(out)
    assert int(original["series_count"]) >= 3

    # Export from SQLite, import into Redis as a production candidate.
    exported = tmp_path / "w1.json"
    code, _, err = _run(
        capsys, "baselines", "export", original["id"], "--out", str(exported), *on_a
    )
    assert code == 0 and str(exported) in err
    document = json.loads(exported.read_bytes())
    assert document["format"] == "baselined.baseline" and document["format_version"] == 1
    code, out, err = _run(
        capsys,
        *("baselines", "import", str(exported), "--environment", "production"),
        *("--reason", "staging agrees", "--actor", "carol", "--json", *on_b),
    )
    assert code == 0, err
    imported = json.loads(out)
    assert imported["id"] != original["id"]
    assert imported["status"] == "BASELINE_STATUS_CANDIDATE"
    assert imported["environment"] == "production" and imported["name"] == "w1"
    assert imported["labels"]["imported_from"] == original["id"]
    assert imported["labels"]["imported_from_environment"] == "staging"
    assert imported["series_count"] == original["series_count"]

    with middleware.Client(production.target) as client:
        entries = client.audit(unique_model, "production").entries
        assert [(e.action, e.actor, e.target) for e in entries][-1] == (
            "import",
            "carol",
            imported["id"],
        )
        # The same file again under the same name: refused, nothing stored.
        with pytest.raises(middleware.ClientError) as refused:
            client.import_baseline(exported.read_bytes(), environment="production")
        assert refused.value.code.name == "ALREADY_EXISTS"
        back = client.export_baseline(imported["id"])

    # What went through Redis comes back into SQLite (read from standard input) and
    # diffs clean against the original.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(back)))
    code, out, err = _run(
        capsys,
        *("baselines", "import", "-", "--environment", "staging"),
        *("--name", "w1-round-trip", "--json", *on_a),
    )
    assert code == 0, err
    copy_id = json.loads(out)["id"]
    code, out, err = _run(capsys, "baselines", "diff", original["id"], copy_id, "--json", *on_a)
    assert code == 0, err
    diff = json.loads(out)
    assert diff.get("only_in_a", []) == [] and diff.get("only_in_b", []) == []
    assert len(diff["findings"]) == int(original["series_count"])
    odd: list[tuple[str, str, object, str]] = []
    for finding in diff["findings"]:
        assert finding["severity"] == "SEVERITY_UNSPECIFIED", finding
        assert finding["effects"], finding
        for effect in finding["effects"]:
            if effect["estimate"] != 0.0:
                odd.append((finding["signal"], effect["name"], effect["estimate"], effect["unit"]))
            assert effect["severity"] == "SEVERITY_UNSPECIFIED"
    # Undefined effects stay undefined: the error signal is all zeros, so its relative
    # changes (0/0) and W1 over a zero IQR are NaN, exactly as in a live comparison.
    assert odd and all(signal == "error" and value == "NaN" for signal, _, value, _ in odd), odd
    code, out, _ = _run(capsys, "baselines", "diff", original["id"], copy_id, *on_a)
    assert code == 0 and "no differences beyond the guardrails" in out

    # A modified file is refused, saying why, and changes nothing on the Redis side.
    with middleware.Client(production.target) as client:
        before = [b.id for b in client.list(unique_model).baselines]
    state = bytearray(base64.b64decode(document["series"][0]["state"]))
    state[-1] ^= 0x01
    document["series"][0]["state"] = base64.b64encode(bytes(state)).decode()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    code, _, err = _run(
        capsys, "baselines", "import", str(tampered), "--name", "w1-tampered", *on_b
    )
    assert code == 1
    assert "INVALID_ARGUMENT" in err and "hash does not match" in err
    edited = exported.read_bytes().replace(b'"name": "w1"', b'"name": "w2"')
    tampered.write_bytes(edited)
    code, _, err = _run(capsys, "baselines", "import", str(tampered), *on_b)
    assert code == 1 and "hash does not match" in err
    tampered.write_bytes(exported.read_bytes()[:200])
    code, _, err = _run(capsys, "baselines", "import", str(tampered), "--name", "x", *on_b)
    assert code == 1 and "not valid JSON" in err
    with middleware.Client(production.target) as client:
        assert [b.id for b in client.list(unique_model).baselines] == before
        assert client.audit(unique_model, "production").entries[-1].action == "import"
        assert client.audit(unique_model, "production").entries[-1].target == imported["id"]
