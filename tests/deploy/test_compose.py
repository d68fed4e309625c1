"""deploy/compose: the Compose file, Prometheus, Alertmanager, Collector and Grafana files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.guardrails import Guardrails
from sidecar.settings import Settings
from tests.deploy.support import DEPLOY, REPO, sidecar_settings_env

COMPOSE = DEPLOY / "compose"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "baselined.json"
_METRIC = re.compile(r"\bbaselined_[a-z_]+\b")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _listed_metrics() -> dict[str, str]:
    lines = (DEPLOY / "metrics.txt").read_text().splitlines()
    pairs = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    return {prom: otel for prom, otel in pairs}


def test_services_reference_each_other_consistently() -> None:
    data = _compose()
    services = data["services"]
    assert {"redis", "sidecar", "model", "otel-collector", "prometheus", "alertmanager",
            "grafana"} <= set(services)  # fmt: skip
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"
        mode = svc.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.removeprefix("service:") in services
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source} missing"
            else:
                assert source in data["volumes"], f"{name}: volume {source} not declared"
    build = services["sidecar"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_sidecar_env_is_accepted_and_the_model_targets_its_socket(tmp_path: Path) -> None:
    services = _services()
    env = dict(services["sidecar"]["environment"])
    guardrails = COMPOSE / "guardrails.toml"
    env["BASELINED_GUARDRAILS"] = str(guardrails)
    settings = Settings.resolve({}, env=sidecar_settings_env(env))
    assert settings.prometheus_metrics is True
    assert settings.alertmanager_url == "http://alertmanager:9093"
    assert settings.store == "redis://redis:6379/0"
    Guardrails.load(guardrails)
    entry = services["model"]["entrypoint"]
    assert entry[:3] == ["python", "-m", "sidecar.demo_server"]
    assert (REPO / "sidecar" / "demo_server.py").exists()
    assert entry[entry.index("--target") + 1] == settings.listen
    shared = {v.split(":")[0] for v in services["sidecar"]["volumes"]}
    assert any(v.split(":")[0] in shared for v in services["model"]["volumes"])
    otlp = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert otlp.split("//")[1].split(":")[0] in services


def test_prometheus_scrapes_the_sidecar_and_alerts_alertmanager() -> None:
    prom = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    services = _services()
    http_port = services["sidecar"]["environment"]["BASELINED_HTTP_LISTEN"].rsplit(":", 1)[1]
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "baselined")
    assert job["static_configs"][0]["targets"] == [f"sidecar:{http_port}"]
    (am,) = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am.split(":")[0] in services
    for rule_file in prom["rule_files"]:
        assert (COMPOSE / "prometheus" / rule_file).exists()


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


def _amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    return path


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_checks_config_and_rules_and_the_rule_unit_tests_pass() -> None:
    tool = _promtool()
    _run(tool, "check", "config", "prometheus/prometheus.yml")
    assert "SUCCESS" in _run(tool, "check", "rules", "prometheus/rules.yml")
    _run(tool, "test", "rules", "prometheus/rules_test.yml")


def test_rules_carry_a_severity_and_the_mandatory_annotations() -> None:
    rules = yaml.safe_load((COMPOSE / "prometheus" / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].startswith("Baselined")
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("severe", "page"), ("critical", "page"), ("moderate", "ticket"), ("minor", "ticket"),
     ("warning", "ticket"), ("info", "null")],
)  # fmt: skip
def test_alertmanager_routes_on_severity(severity: str, receiver: str) -> None:
    tool = _amtool()
    config = "--config.file=alertmanager/alertmanager.yml"
    _run(tool, "check-config", "alertmanager/alertmanager.yml")
    out = _run(tool, "config", "routes", "test", config, "alertname=BaselinedRegression",
               "model=fraud", f"severity={severity}")  # fmt: skip
    assert out.strip() == receiver


def test_collector_pipelines_use_defined_components() -> None:
    config = yaml.safe_load((COMPOSE / "otel-collector" / "config.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in config[kind]


def test_grafana_provisioning_points_at_the_services_and_the_dashboard() -> None:
    services = _services()
    prov = COMPOSE / "grafana" / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "datasources.yaml").read_text())
    uids = set()
    for source in sources["datasources"]:
        assert source["url"].split("//")[1].split(":")[0] in services
        uids.add(source["uid"])
    provider = yaml.safe_load((prov / "dashboards" / "dashboards.yaml").read_text())
    mount = next(v for v in services["grafana"]["volumes"] if "dashboards" in v.split(":")[1])
    assert provider["providers"][0]["options"]["path"] == mount.split(":")[1]
    dashboard = json.loads(DASHBOARD.read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert used <= uids


def test_dashboard_shows_effects_guardrails_alerts_and_events() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    text = DASHBOARD.read_text()
    for name in ("baselined_effect_lower", "baselined_effect_guardrail"):
        assert name in text
    assert any(p["type"] == "alertlist" for p in dashboard["panels"])
    assert dashboard["annotations"]["list"]


def test_every_metric_queried_is_listed_in_metrics_txt() -> None:
    listed = _listed_metrics()
    used = set(_METRIC.findall(DASHBOARD.read_text()))
    used |= set(_METRIC.findall((COMPOSE / "prometheus" / "rules.yml").read_text()))
    assert used, "the dashboard queries no baselined metric"
    assert used <= set(listed), sorted(used - set(listed))


def test_metrics_txt_names_are_metrics_the_sidecar_exports() -> None:
    telemetry = pytest.importorskip("sidecar.telemetry", reason="sidecar/telemetry.py absent")
    for prom, otel in _listed_metrics().items():
        assert otel in telemetry.METRIC_NAMES, otel
        # The OpenTelemetry Prometheus exporter: dots become underscores, then unit/type suffixes.
        assert prom.startswith(otel.replace(".", "_")), prom
    assert set(_listed_metrics().values()) == set(telemetry.METRIC_NAMES)


def test_sidecar_prometheus_exposition_has_the_listed_counters_and_gauges() -> None:
    telemetry = pytest.importorskip("sidecar.telemetry", reason="sidecar/telemetry.py absent")
    from sidecar.stores import open_store
    from sidecar.windows import Windows

    settings = Settings.resolve(
        {"prometheus_metrics": True, "otel_exporter": "none", "store": ":memory:"}, env={}
    )
    tel = telemetry.Telemetry.from_settings(settings, environ={})
    store = open_store(settings.store)
    try:
        tel.attach(Windows(settings, store))
        body, _ = tel.metrics_text()
    finally:
        tel.shutdown()
        store.close()
    exposed = {line.split("{")[0].split()[0] for line in body.decode().splitlines()
               if line and not line.startswith("#")}  # fmt: skip
    # The sample counters are observed from the start (the other series need traffic;
    # so does baselined_samples_dropped_total, labelled by the senders' model and reason).
    for name in _listed_metrics():
        if name.startswith("baselined_samples_") and name != "baselined_samples_dropped_total":
            assert name in exposed, (name, sorted(exposed))
