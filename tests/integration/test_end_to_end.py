"""End to end, with real processes: middleware.shadow -> gRPC -> `baselined serve`
(SQLite file and real Redis) -> `baselined baselines freeze|show --json`.

These are the foundation's acceptance checks: nothing lost, quantiles within
0.1% of numpy (p99.9 within 1%), baselines and audit survive a restart, and a
stopped sidecar never reaches the caller.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import middleware
from sidecar.cli import main as cli
from tests.integration.conftest import SidecarProcess, free_port

N_CALLS = 50_000
LEVELS = (0.5, 0.9, 0.99, 0.999)


def _values(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latency_like = rng.lognormal(mean=-3.0, sigma=0.6, size=N_CALLS)
    modes = rng.random(N_CALLS) < 0.6
    bimodal = np.where(modes, rng.normal(10.0, 1.0, N_CALLS), rng.normal(20.0, 2.0, N_CALLS))
    return latency_like, bimodal


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = cli(list(argv))
    out = capsys.readouterr()
    assert code == 0, f"baselined {' '.join(argv)} exited {code}: {out.err}"
    return json.loads(out.out) if "--json" in argv else out.out


def _store_urls(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp_path / 'store.db'}", "redis": redis_url}


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return f"sqlite:///{tmp_path / 'store.db'}"


def _dropped(shadow: middleware.Shadow) -> int:
    stats = shadow.stats()
    return stats.records_dropped_sidecar_unavailable + stats.records_dropped_queue_full


def _shadowed_handler(
    target: str, model: str
) -> tuple[middleware.Shadow, Callable[[dict[str, float]], float]]:
    # The test loops call the handler as fast as Python can (no model work), far
    # above real traffic; a deeper queue than the default keeps a CPU-starved CI
    # machine from dropping rows while the shipper waits for the GIL.
    shadow = middleware.Shadow(
        model=model,
        version="v1",
        environment="test",
        target=target,
        sample_rate=1.0,
        flush_interval=0.2,
        queue_batches=256,
    )

    def handler(features: dict[str, float]) -> float:
        return features["latency_like"] * 2.0

    return shadow, shadow.wrap(handler)


@pytest.mark.slow
def test_fifty_thousand_calls_freeze_show_restart(
    store_url: str,
    sidecar_factory: type[SidecarProcess],
    unique_model: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sidecar = sidecar_factory(store=store_url, port=free_port(), log=tmp_path / "sidecar.log")
    sidecar.start()
    latency_like, bimodal = _values(seed=20261127)
    shadow, handler = _shadowed_handler(sidecar.target, unique_model)
    for a, b in zip(latency_like.tolist(), bimodal.tolist(), strict=True):
        handler({"latency_like": a, "bimodal": b})
    shadow.close(timeout=30.0)
    stats = shadow.stats()
    assert stats.sampled == N_CALLS
    assert stats.records_accepted == N_CALLS, stats

    frozen = _run_cli(
        capsys, "baselines", "freeze", "--target", sidecar.target, "--model", unique_model,
        "--environment", "test", "--name", "golden", "--since", "1h", "--reason", "acceptance", "--json",
    )  # fmt: skip
    baseline_id = frozen["id"]
    _run_cli(
        capsys, "baselines", "promote", baseline_id, "--target", sidecar.target, "--reason", "ok"
    )

    def check_view() -> None:
        view = _run_cli(
            capsys, "baselines", "show", baseline_id, "--target", sidecar.target, "--json",
            "--quantiles", ",".join(str(q) for q in LEVELS),
        )  # fmt: skip
        series = {(s["slice"], s["signal"]): s for s in view["series"]}
        for name, values in (("latency_like", latency_like), ("bimodal", bimodal)):
            s = series[("*", name)]
            assert int(s["count"]) == N_CALLS, f"{name}: {s['count']} of {N_CALLS} records arrived"
            got = {round(q["q"], 6): q["value"] for q in s["quantiles"]}
            for q in LEVELS:
                exact = float(np.quantile(values, q))
                tolerance = 0.01 if q == 0.999 else 0.001
                assert got[round(q, 6)] == pytest.approx(exact, rel=tolerance), (name, q)
            assert s["min"] == pytest.approx(values.min())
            assert s["max"] == pytest.approx(values.max())
        latency = series[("*", "latency_seconds")]
        assert int(latency["count"]) == N_CALLS

    check_view()
    assert sidecar.stop() == 0

    # A new sidecar process on the same store: the baseline and its audit are still there.
    again = sidecar_factory(store=store_url, port=free_port(), log=tmp_path / "sidecar2.log")
    again.start()
    sidecar.port = again.port
    check_view()
    audit = _run_cli(
        capsys, "baselines", "audit", "--target", again.target, "--model", unique_model,
        "--environment", "test", "--json",
    )  # fmt: skip
    actions = [(e["action"], e["target"]) for e in audit["entries"]]
    assert actions == [("freeze", baseline_id), ("promote", baseline_id)]
    active = _run_cli(
        capsys, "baselines", "active", "--target", again.target, "--model", unique_model,
        "--environment", "test", "--json",
    )  # fmt: skip
    assert active["id"] == baseline_id
    assert again.stop() == 0


@pytest.mark.slow
def test_stopped_sidecar_never_reaches_the_caller(
    sidecar_factory: type[SidecarProcess], unique_model: str, tmp_path: Path
) -> None:
    port = free_port()
    sidecar = sidecar_factory(
        store=f"sqlite:///{tmp_path / 's.db'}", port=port, log=tmp_path / "a.log"
    )
    sidecar.start()
    shadow, handler = _shadowed_handler(sidecar.target, unique_model)
    try:
        for i in range(2_000):
            assert handler({"latency_like": float(i), "bimodal": 1.0}) == 2.0 * i
        shadow.flush()
        time.sleep(0.5)
        assert sidecar.stop(signal.SIGKILL) == -signal.SIGKILL

        dropped_before = _dropped(shadow)
        deadline = time.monotonic() + 20
        calls = 0
        while _dropped(shadow) <= dropped_before and time.monotonic() < deadline:
            for i in range(500):  # the handler keeps serving; no exception may reach us
                assert handler({"latency_like": float(i), "bimodal": 1.0}) == 2.0 * i
                calls += 1
            time.sleep(0.05)
        assert _dropped(shadow) > dropped_before, "drop counter did not rise"

        back = sidecar_factory(
            store=f"sqlite:///{tmp_path / 's.db'}", port=port, log=tmp_path / "b.log"
        )
        back.start()
        accepted_before = shadow.stats().records_accepted
        deadline = time.monotonic() + 30
        while shadow.stats().records_accepted <= accepted_before and time.monotonic() < deadline:
            for i in range(200):
                handler({"latency_like": float(i), "bimodal": 2.0})
            time.sleep(0.2)
        assert shadow.stats().records_accepted > accepted_before, "middleware did not reconnect"
        assert shadow.stats().reconnects >= 1
    finally:
        shadow.close(timeout=10.0)
