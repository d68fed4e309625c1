"""``baselined demo``: the whole loop on one machine, with real processes.

1. starts a real sidecar (``baselined serve``) on an embedded SQLite store;
2. starts a small HTTP model server whose predict function is wrapped by the
   middleware (``sidecar/demo_server.py``) and sends it traffic;
3. freezes that traffic into a baseline and promotes it;
4. restarts the model server with a regression injected (a dependency update
   that triples one input in preprocessing and slows inference by ~3 ms);
5. prints the baseline's quantiles next to the live window's, the sidecar's own
   comparison (effects with anytime-valid bounds and tiers) and the alerts that
   fired;
6. impact reports (issue 4): a second model (``ranker``) sends 25,000 requests
   per phase through the ingest API (columnar batches, as the middleware ships
   them); a benign config change is recorded between two healthy phases and a
   library update before a phase whose score is subtly shifted (+0.3 standard
   deviations); the sidecar's before/after checks give "no measurable change"
   and "regression", which are printed; then stops everything cleanly.

Exit code 0 when latency and the score alert and no input feature does, and
both impact verdicts are the expected ones; 1 otherwise.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from baselined.v1 import baselined_pb2 as pb

__all__ = ["run_demo"]

MODEL, ENVIRONMENT = "fraud", "demo"
LEVELS = (0.5, 0.9, 0.99)
IMPACT_MODEL = "ranker"
IMPACT_SAMPLES = 25_000  # per phase: above the default impact_min_samples (20,000)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _wait_for_sidecar(
    target: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the sidecar exited with code {process.returncode}:\n{log.read_text()}"
                )
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(
        f"the sidecar did not become ready within {timeout:.0f} s; log:\n{log.read_text()}"
    )


def _wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the model server exited with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1.0)
        except urllib.error.HTTPError:
            return  # it answered (404 on GET /): it is up
        except OSError:
            time.sleep(0.05)
            continue
        return
    raise RuntimeError("the model server did not start in time")


def _stop(process: subprocess.Popen[bytes], name: str, timeout: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _say(f"{name} did not stop within {timeout:.0f} s; killing it")
            process.kill()
            process.wait()
    return process.returncode


def _send_traffic(port: int, count: int, rng: random.Random, phase: str) -> None:
    url = f"http://127.0.0.1:{port}/predict"
    step = max(1, count // 5)
    for i in range(count):
        features = {
            "amount": round(rng.lognormvariate(3.5, 0.8), 2),
            "age_days": rng.expovariate(1 / 300.0),
            "items": float(min(20, int(rng.expovariate(1 / 3.0)) + 1)),
            "distance_km": rng.gammavariate(2.0, 15.0),
        }
        body = json.dumps({"request_id": f"{phase}-{i}", "features": features}).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10.0) as response:
            response.read()
        if (i + 1) % step == 0:
            _say(f"  {phase}: {i + 1}/{count} requests")


def _run_model_server(
    port: int, target: str, version: str, regression: bool, workdir: Path
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "sidecar.demo_server",
        "--port", str(port), "--target", target, "--model", MODEL,
        "--version", version, "--environment", ENVIRONMENT,
    ]  # fmt: skip
    if regression:
        cmd.append("--regression")
    with open(workdir / f"model-{version}.log", "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env())


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = Path(__file__).resolve().parent.parent
    extra = [str(root), str(root / "proto")]
    env["PYTHONPATH"] = os.pathsep.join(
        extra + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


def _wait_bucket_boundary(bucket_seconds: float) -> float:
    now = time.time()
    boundary = math.floor(now / bucket_seconds) * bucket_seconds + bucket_seconds
    time.sleep(max(0.0, boundary - now) + 0.05)
    return boundary


def _numeric(series: Sequence[pb.SeriesSummary]) -> dict[tuple[str, str], pb.SeriesSummary]:
    return {
        (pb.SignalKind.Name(s.kind).removeprefix("SIGNAL_KIND_").lower(), s.signal): s
        for s in series
        if not s.categorical and s.slice == "*"
    }


def _levels(s: pb.SeriesSummary) -> dict[float, float]:
    return {round(q.q, 6): q.value for q in s.quantiles}


def _compare(baseline: pb.BaselineView, live: pb.WindowView) -> None:
    """Print the baseline's quantiles next to the live window's, per all-traffic series."""
    base, now = _numeric(baseline.series), _numeric(live.series)
    print(f"{'series':<26}" + "".join(f"  {'p' + format(q * 100, 'g'):>30}" for q in LEVELS))
    print(f"{'':<26}" + "".join(f"  {'baseline -> live (change)':>30}" for _ in LEVELS))
    for key in sorted(base):
        if key not in now:
            continue
        b_levels, l_levels = _levels(base[key]), _levels(now[key])
        cells = []
        for q in LEVELS:
            b, v = b_levels.get(round(q, 6), math.nan), l_levels.get(round(q, 6), math.nan)
            change = (v - b) / abs(b) if b else (0.0 if v == b else math.inf)
            cells.append(f"{b:9.4g} -> {v:9.4g} ({change:+7.1%})")
        print(f"{key[0] + ':' + key[1]:<26}" + "".join(f"  {c:>30}" for c in cells))


def _wait_for_alerts(client: Any, timeout: float) -> list[pb.Alert]:
    """Firing alerts of the demo model, once latency and score have both alerted (or at timeout)."""
    deadline = time.monotonic() + timeout
    alerts: list[pb.Alert] = []
    while time.monotonic() < deadline:
        alerts = list(client.alerts(MODEL, ENVIRONMENT).alerts)
        signals = {f.signal for alert in alerts for f in alert.series}
        if {"latency_seconds", "score"} <= signals:
            break
        time.sleep(0.5)
    return alerts


def _print_findings(comparison: pb.CompareResponse) -> None:
    """One line per all-traffic series: its tier and the effect that decided it."""
    print(f"{'series':<26}{'tier':>10}  effect (estimate, confidence interval, guardrail)")
    for finding in sorted(comparison.findings, key=lambda f: (f.kind, f.signal)):
        if finding.slice != "*":
            continue
        kind = pb.SignalKind.Name(finding.kind).removeprefix("SIGNAL_KIND_").lower()
        tier = pb.Severity.Name(finding.severity).removeprefix("SEVERITY_").lower()
        fired = [e for e in finding.effects if e.severity]
        if fired:
            e = max(fired, key=lambda e: (e.severity, abs(e.estimate)))
            detail = f"{e.name} {e.estimate:+.4g} [{e.lower:+.4g}, {e.upper:+.4g}] guardrail {e.guardrail:g}"
        else:
            tier, detail = "-", "no guarded effect clears its guardrail"
        print(f"{kind + ':' + finding.signal:<26}{tier:>10}  {detail}")


def _ranker_batch(t0: float, rng: random.Random, n: int, shift: float) -> pb.SampleBatch:
    """``n`` requests of the ranker at ``t0``, as the middleware ships them: one
    column per signal. ``shift`` moves the score by that many standard deviations."""
    import numpy as np

    gen = np.random.default_rng(rng.randrange(2**32))
    batch = pb.SampleBatch(
        model=IMPACT_MODEL,
        version="v3",
        environment=ENVIRONMENT,
        instance="ranker-0",
        timestamps=[t0] * n,  # now, never later: the phase ends before the next boundary
    )
    batch.numeric.add(
        name="query_len", kind=pb.SIGNAL_KIND_FEATURE, values=gen.lognormal(2.0, 0.5, n).tolist()
    )
    batch.numeric.add(
        name="tenure_days", kind=pb.SIGNAL_KIND_FEATURE, values=gen.exponential(200.0, n).tolist()
    )
    batch.categorical.add(
        name="device",
        kind=pb.SIGNAL_KIND_FEATURE,
        values=gen.choice(["ios", "android", "web"], n, p=[0.3, 0.3, 0.4]).tolist(),
    )
    score = gen.beta(2.0, 5.0, n)
    score = np.clip(score + shift * 0.16, 0.0, 1.0)  # beta(2, 5) has sd 0.16
    batch.numeric.add(name="score", kind=pb.SIGNAL_KIND_OUTPUT, values=score.tolist())
    batch.numeric.add(
        name="latency_seconds",
        kind=pb.SIGNAL_KIND_LATENCY,
        values=gen.lognormal(math.log(0.004), 0.25, n).tolist(),
    )
    return batch


def _send_ranker(stub: Any, rng: random.Random, shift: float, phase: str) -> None:
    """IMPACT_SAMPLES requests in batches of 1,000, stamped now, then a bucket boundary."""
    for _ in range(IMPACT_SAMPLES // 1000):
        stub.IngestBatch(_ranker_batch(time.time(), rng, 1000, shift), timeout=30.0)
    _say(f"  {phase}: {IMPACT_SAMPLES:,} requests")
    _wait_bucket_boundary(1.0)


def _wait_for_report(client: Any, event_id: str, timeout: float) -> pb.ImpactReport | None:
    """The impact report of ``event_id`` once it has a final verdict (None at timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for report in client.impact_reports(IMPACT_MODEL, ENVIRONMENT).reports:
            if report.event.id == event_id and report.verdict != pb.IMPACT_VERDICT_PENDING:
                found: pb.ImpactReport = report
                return found
        time.sleep(0.5)
    return None


def _print_report(report: pb.ImpactReport | None) -> str:
    if report is None:
        print("  (no verdict in time)")
        return "none"
    verdict = pb.ImpactVerdict.Name(report.verdict).removeprefix("IMPACT_VERDICT_").lower()
    print(f"  [{verdict}] {report.summary}")

    def closeness(e: pb.ImpactEffect) -> float:  # how near the interval comes to its margin
        return max(abs(e.lower), abs(e.upper)) / e.margin if e.margin else 0.0

    shown = [e for e in report.effects if e.severity] or sorted(
        report.effects, key=closeness, reverse=True
    )
    for effect in shown[:3]:
        mark = pb.Severity.Name(effect.severity).removeprefix("SEVERITY_").lower()
        if not effect.severity:
            mark = "inside" if effect.within else "open"
        print(
            f"      {effect.signal + ':' + effect.effect:<22} {effect.estimate:+.4f}"
            f" [{effect.lower:+.4f}, {effect.upper:+.4f}]  minor guardrail {effect.guardrail:g},"
            f" no-change margin {effect.margin:g}: {mark}"
        )
    return verdict


def _impact_phase(target: str) -> tuple[str, str]:
    """Record a benign config change and a library update around ranker traffic;
    print and return the two impact verdicts."""
    from baselined.v1 import baselined_pb2_grpc as pb_grpc

    from middleware import Client

    rng = random.Random(11)
    _say(
        f"phase 3: change events and their before/after impact reports (model {IMPACT_MODEL!r},"
        f" {IMPACT_SAMPLES:,} requests per phase over the ingest API)"
    )
    with grpc.insecure_channel(target) as channel, Client(target, timeout=30.0) as client:
        stub = pb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]
        _send_ranker(stub, rng, 0.0, "healthy traffic")
        config = client.record_event(
            "config_change", IMPACT_MODEL, time=time.time(), environment=ENVIRONMENT,
            attributes={"key": "log_level", "from": "info", "to": "debug"}, actor="demo",
        )  # fmt: skip
        _say(f"recorded config_change {config.id} (log_level info -> debug: benign)")
        _wait_bucket_boundary(1.0)
        _send_ranker(stub, rng, 0.0, "after the config change")
        benign = _wait_for_report(client, config.id, timeout=30.0)
        library = client.record_event(
            "library_update", IMPACT_MODEL, time=time.time(), environment=ENVIRONMENT,
            attributes={"package": "numpy", "from": "1.26.4", "to": "2.1.0"}, actor="demo",
        )  # fmt: skip
        _say(f"recorded library_update {library.id} (numpy 1.26.4 -> 2.1.0: shifts the score)")
        _wait_bucket_boundary(1.0)
        _send_ranker(stub, rng, 0.3, "after the library update")
        shifted = _wait_for_report(client, library.id, timeout=30.0)
    print()
    _say("impact reports (baselined impact list / show):")
    return _print_report(benign), _print_report(shifted)


def run_demo(*, workdir: str | None = None, requests: int = 3000) -> int:
    """Run the demo; see the module docstring. Returns the process exit code."""
    from middleware import Client

    if requests < 200:
        print("baselined demo: --requests must be at least 200", file=sys.stderr)
        return 2
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="baselined-demo-")
        workdir = tmp.name
    folder = Path(workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    bucket_seconds = 1.0
    target = f"127.0.0.1:{_free_port()}"
    store_url = f"sqlite:///{folder / 'demo.db'}"
    sidecar_log = folder / "sidecar.log"
    _say(f"work folder {folder}")
    _say(f"starting the sidecar on {target} with store {store_url}")
    with open(sidecar_log, "wb") as sidecar_out:  # the child keeps its own copy
        sidecar = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sidecar.cli",
                "serve",
                "--listen",
                target,
                "--store",
                store_url,
                "--bucket-seconds",
                str(int(bucket_seconds)),
                "--flush-interval",
                "0.5",
                "--instance",
                "demo-sidecar",
                "--check-interval",
                "1",
                "--impact-min-wait",
                "1",
            ],
            stdout=sidecar_out,
            stderr=subprocess.STDOUT,
            env=_child_env(),
        )
    rng = random.Random(7)
    code = 1
    try:
        _wait_for_sidecar(target, sidecar, sidecar_log)
        _say("sidecar is SERVING")

        port = _free_port()
        _say("phase 1: model server v1, normal traffic")
        server = _run_model_server(port, target, "v1", False, folder)
        _wait_for_http(f"http://127.0.0.1:{port}/", server)
        start1 = math.floor(time.time() / bucket_seconds) * bucket_seconds
        _send_traffic(port, requests, rng, "baseline")
        _stop(server, "model server v1")
        end1 = _wait_bucket_boundary(bucket_seconds)

        with Client(target, timeout=30.0) as client:
            frozen = client.freeze(
                model=MODEL, environment=ENVIRONMENT, name="demo-v1", reason="healthy v1 traffic",
                actor="demo", start=start1, end=end1, versions=[], labels={},
            )  # fmt: skip
            client.promote(frozen.id, reason="first baseline", actor="demo")
            _say(f"froze and promoted baseline {frozen.id} ({frozen.record_count} records)")

            _say("phase 2: model server v2 with an injected regression (bad dependency update)")
            server = _run_model_server(port, target, "v2", True, folder)
            _wait_for_http(f"http://127.0.0.1:{port}/", server)
            start2 = math.floor(time.time() / bucket_seconds) * bucket_seconds
            _send_traffic(port, requests, rng, "live")
            _stop(server, "model server v2")
            end2 = _wait_bucket_boundary(bucket_seconds)

            view = client.get(frozen.id, quantiles=list(LEVELS), top_k=5)
            live = client.window(
                model=MODEL, environment=ENVIRONMENT, start=start2, end=end2, versions=[],
                quantiles=list(LEVELS), top_k=5,
            )  # fmt: skip
            alerts = _wait_for_alerts(client, timeout=30.0)
            comparison = client.compare(MODEL, ENVIRONMENT)
        print()
        _say(f"baseline {frozen.id} (v1) against the live window (v2), quantiles:")
        print()
        _compare(view, live)
        print()
        _say(
            f"the sidecar's comparison ({len(comparison.findings)} series, "
            f"alpha per test {comparison.alpha_per_test:.1e}, anytime-valid bounds):"
        )
        print()
        _print_findings(comparison)
        print()
        if alerts:
            _say(f"{len(alerts)} alert(s) firing:")
            for alert in alerts:
                tier = pb.Severity.Name(alert.severity).removeprefix("SEVERITY_").lower()
                print(f"  [{tier:>8}] {alert.summary}")
        print()
        alerted = {
            (pb.SignalKind.Name(f.kind).removeprefix("SIGNAL_KIND_").lower(), f.signal)
            for alert in alerts
            for f in alert.series
        }
        expected = {("latency", "latency_seconds"), ("output", "score")}
        untouched = {(kind, name) for kind, name in alerted if kind == "feature"}
        caught = expected <= alerted and not untouched
        if caught:
            _say(
                "caught: latency and the score alerted after the dependency update; no input feature did."
            )
        else:
            _say(f"NOT caught as expected: alerts on {sorted(alerted)}")
        print()
        verdicts = _impact_phase(target)
        if caught and verdicts == ("no_change", "regression"):
            _say(
                "impact: the config change made no measurable change; the library update "
                "regressed the score."
            )
            code = 0
        else:
            _say(f"impact verdicts NOT as expected: {verdicts}")
    except Exception as err:
        _say(f"failed: {err}")
        code = 1
    finally:
        rc = _stop(sidecar, "sidecar")
        _say(f"sidecar stopped (exit code {rc}); its log is {sidecar_log}")
        if rc != 0:
            code = 1
        if tmp is not None and code == 0:
            tmp.cleanup()
    return code
