"""deploy/helm: the chart rendered (tests/deploy/gotemplate.py; no helm binary here) and validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sidecar.guardrails import Guardrails
from sidecar.settings import Settings
from tests.deploy.gotemplate import TemplateError, Templates, deep_merge, render_chart
from tests.deploy.support import (
    DEPLOY,
    containers_by_name,
    env_values,
    sidecar_settings_env,
    validate_k8s,
)

CHART = DEPLOY / "helm" / "baselined"
STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/managed-by", "helm.sh/chart", "app.kubernetes.io/version")  # fmt: skip
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "pre-1.29": {"sidecar": {"native": False}},
    "snippet-only": {"modelServer": {"enabled": False}},
    "extras": {
        "fullnameOverride": "fraud",
        "sidecar": {"alertmanagerUrl": "http://am:9093", "otlpEndpoint": "",
                    "extraEnv": [{"name": "BASELINED_LOG_LEVEL", "value": "debug"}]},
        "modelServer": {"healthPath": "", "extraEnv": [{"name": "X", "value": "1"}]},
        "podAnnotations": {"team": "ml"},
        "extraVolumes": [{"name": "models", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "models", "mountPath": "/models"}],
    },
}  # fmt: skip


def _objects(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = render_chart(CHART, overrides)
    docs: list[dict[str, Any]] = []
    for name, text in rendered.items():
        if name.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _pod(overrides: dict[str, Any]) -> dict[str, Any]:
    dep = next(d for d in _objects(overrides) if d["kind"] == "Deployment")
    spec: dict[str, Any] = dep["spec"]["template"]["spec"]
    return spec


def test_chart_metadata() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["name"] == "baselined"
    assert meta["appVersion"] == "0.1.0"
    assert (CHART / "templates" / "NOTES.txt").exists()


def test_values_match_their_schema_and_the_schema_refuses_bad_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
    for case in CASES.values():
        jsonschema.Draft7Validator(schema).validate(deep_merge(values, case))
    bads: list[dict[str, Any]] = [
        {"modelServer": {"sampleRate": 2}},
        {"sidecar": {"store": "mysql://x"}},
        {"sidecar": {"healthPort": 0}},
        {"sidecr": {}},
    ]
    for bad in bads:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(schema).validate(deep_merge(values, bad))


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_objects_validate_against_the_kubernetes_schema(case: str) -> None:
    version = "1.28.0" if case == "pre-1.29" else "1.29.0"
    objects = _objects(CASES[case])
    kinds = sorted(d["kind"] for d in objects)
    assert kinds == (["ConfigMap"] if case == "snippet-only" else ["ConfigMap", "Deployment"])
    for doc in objects:
        validate_k8s(doc, version)
        validate_k8s(doc, "1.37.0")
        labels = doc["metadata"]["labels"]
        for key in STANDARD_LABELS:
            assert labels[key], key
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_native_and_plain_sidecar_modes() -> None:
    native = _pod({})
    assert native["initContainers"][0]["restartPolicy"] == "Always"
    assert native["initContainers"][0]["startupProbe"]["grpc"]["port"] == 50051
    plain = _pod({"sidecar": {"native": False}})
    assert "initContainers" not in plain
    side = containers_by_name(plain)["baselined"]
    assert side["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert plain["terminationGracePeriodSeconds"] > 15 + 10


def test_values_flow_into_the_pod() -> None:
    pod = _pod(CASES["extras"])
    containers = containers_by_name(pod)
    side, model = env_values(containers["baselined"]), env_values(containers["model"])
    assert side["BASELINED_ALERTMANAGER_URL"] == "http://am:9093"
    assert side["BASELINED_LOG_LEVEL"] == "debug"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in side
    assert model["X"] == "1" and model["BASELINED_TARGET"] == side["BASELINED_LISTEN"]
    assert "readinessProbe" not in containers["model"]
    assert {"name": "models", "emptyDir": {}} in pod["volumes"]
    assert next(v for v in pod["volumes"] if "configMap" in v)["configMap"]["name"] == (
        "fraud-guardrails"
    )


def test_rendered_sidecar_settings_and_guardrails_are_accepted(tmp_path: Path) -> None:
    objects = _objects({})
    cm = next(d for d in objects if d["kind"] == "ConfigMap")
    (tmp_path / "g.toml").write_text(cm["data"]["guardrails.toml"])
    Guardrails.load(tmp_path / "g.toml")
    env = sidecar_settings_env(env_values(containers_by_name(_pod({}))["baselined"]))
    env["BASELINED_GUARDRAILS"] = str(tmp_path / "g.toml")
    assert Settings.resolve({}, env=env).shutdown_grace == 10.0


def test_snippet_equals_the_chart_sidecar() -> None:
    snippet = yaml.safe_load((DEPLOY / "helm" / "snippet.yaml").read_text())
    pod = _pod({"fullnameOverride": "baselined"})
    assert snippet["initContainers"] == pod["initContainers"]
    assert snippet["volumes"] == pod["volumes"]
    model = containers_by_name(pod)["model"]
    assert snippet["modelContainer"] == {"env": model["env"], "volumeMounts": model["volumeMounts"]}
    # Pasted into a minimal pod it is a valid Deployment.
    container = {"name": "my-model", "image": "me/model:1", **snippet["modelContainer"]}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"initContainers": snippet["initContainers"], "containers": [container],
                     "volumes": snippet["volumes"]}}},
    }  # fmt: skip
    validate_k8s(deployment, "1.29.0")


def test_notes_render_for_each_mode() -> None:
    assert "native sidecar" in render_chart(CHART, {})["NOTES.txt"]
    assert "plain second container" in render_chart(CHART, CASES["pre-1.29"])["NOTES.txt"]
    assert "snippet.yaml" in render_chart(CHART, CASES["snippet-only"])["NOTES.txt"]


def test_renderer_refuses_what_it_does_not_support() -> None:
    dot = {"Values": {"a": [1]}}
    with pytest.raises(TemplateError, match="no field"):
        Templates({"t": "{{ .Values.missing }}"}).render("t", dot)
    with pytest.raises(TemplateError, match="unsupported"):
        Templates({"t": "{{ range .Values.a }}x{{ end }}"}).render("t", dot)
    with pytest.raises(TemplateError, match="unsupported function"):
        Templates({"t": "{{ upper .Values.a }}"}).render("t", dot)
    out = Templates({"t": 'a:\n  {{- toYaml .Values | nindent 2 }}\n{{ "x" | quote }}'})
    assert out.render("t", dot) == 'a:\n  a:\n  - 1\n"x"'
