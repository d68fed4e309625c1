"""Roles on the HTTP listener and audited change events, over a real sidecar
(gRPC and aiohttp on 127.0.0.1 port 0, real SQLite): the same principals as
gRPC, 401/403 naming the rule, refusals audited, and every event recorded by
hand appended to the hash-chained audit log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from middleware import Client, ClientError
from sidecar.audit import verify_chain
from sidecar.events import EventLog
from sidecar.records import EventRecord
from sidecar.stores import SQLiteStore
from tests.sidecar.test_auth import TOKENS, write_principals
from tests.sidecar.test_server import Running, settings_for


def request(
    running: Running,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    assert running.sidecar.http is not None
    url = f"http://127.0.0.1:{running.sidecar.http.port}{path}"
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=sent, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def cloudevent(model: str = "fraud", **data: Any) -> tuple[bytes, dict[str, str]]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "ev-1",
        "ce-type": "dev.baselined.deploy",
        "ce-source": "ci/pipeline",
        "Content-Type": "application/json",
    }
    return json.dumps({"model": model, "environment": "prod", **data}).encode(), headers


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Running]:
    path = tmp_path / "principals.jsonl"
    write_principals(path)
    settings = settings_for(
        auth_tokens_file=str(path),
        auth_reload_interval=0,
        http_listen="127.0.0.1:0",
        prometheus_metrics=True,
        store=f"sqlite:///{tmp_path / 'b.db'}",
    )
    running = Running(settings)
    yield running
    running.stop()


def test_events_need_admin_and_the_refusal_names_the_rule(secured: Running) -> None:
    body, headers = cloudevent()
    status, answer_headers, raw = request(secured, "POST", "/v1/events", body=body, headers=headers)
    assert status == 401
    assert json.loads(raw)["error"] == "no_credentials"
    assert answer_headers["WWW-Authenticate"].startswith("Bearer")

    status, _, raw = request(
        secured, "POST", "/v1/events", token=TOKENS["ingest"], body=body, headers=headers
    )
    assert status == 403
    answer = json.loads(raw)
    assert answer["error"] == "role_admin_required"
    assert "POST /v1/events needs the 'admin' role" in answer["message"]
    assert "ingest-bot" in answer["message"]
    assert secured.sidecar.events.list(model="fraud") == []  # nothing stored

    status, _, raw = request(
        secured, "POST", "/v1/events", token=TOKENS["admin"], body=body, headers=headers
    )
    assert status == 201
    assert [e.id for e in secured.sidecar.events.list(model="fraud")] == [json.loads(raw)["id"]]


@pytest.mark.parametrize(
    ("token", "rule"),
    [("not-a-known-token", "unknown_token"), (None, "no_credentials")],
)
def test_unknown_or_missing_tokens_are_401(secured: Running, token: str | None, rule: str) -> None:
    status, _, raw = request(secured, "GET", "/metrics", token=token)
    assert status == 401 and json.loads(raw)["error"] == rule


def test_malformed_authorization_is_401(secured: Running) -> None:
    status, _, raw = request(secured, "GET", "/metrics", headers={"Authorization": "Basic abc"})
    assert status == 401 and json.loads(raw)["error"] == "malformed_authorization"


def test_metrics_need_read_and_health_stays_open(secured: Running) -> None:
    assert request(secured, "GET", "/healthz")[0] == 200
    assert request(secured, "GET", "/metrics", token=TOKENS["ingest"])[0] == 403
    status, _, body = request(secured, "GET", "/metrics", token=TOKENS["read"])
    assert status == 200 and b"# HELP" in body


def test_kserve_needs_ingest(secured: Running) -> None:
    # An empty body is a bad KServe event (400): the role check let it through.
    assert request(secured, "POST", "/v1/kserve", body=b"")[0] == 401
    assert request(secured, "POST", "/v1/kserve", token=TOKENS["read"], body=b"")[0] == 403
    assert request(secured, "POST", "/v1/kserve", token=TOKENS["ingest"], body=b"")[0] == 400


def test_kserve_allow_unauthenticated_opens_only_kserve(tmp_path: Path) -> None:
    path = tmp_path / "principals.jsonl"
    write_principals(path)
    running = Running(
        settings_for(
            auth_tokens_file=str(path),
            http_listen="127.0.0.1:0",
            kserve_allow_unauthenticated=True,
        )
    )
    try:
        assert request(running, "POST", "/v1/kserve", body=b"")[0] == 400
        # Credentials that are sent are still checked.
        assert request(running, "POST", "/v1/kserve", token="wrong", body=b"")[0] == 401
        body, headers = cloudevent()
        assert request(running, "POST", "/v1/events", body=body, headers=headers)[0] == 401
    finally:
        running.stop()


def test_http_refusals_are_audited(secured: Running) -> None:
    body, headers = cloudevent()
    request(secured, "POST", "/v1/events", token=TOKENS["read"], body=body, headers=headers)
    request(secured, "GET", "/metrics")
    denied = [e for e in secured.sidecar.store.list_audit() if e.action == "auth_denied"]
    assert [(e.actor, e.target) for e in denied] == [
        ("read-bot", "POST /v1/events"),
        ("anonymous", "GET /metrics"),
    ]
    assert denied[0].reason.startswith("role_admin_required:")
    assert verify_chain(secured.sidecar.store).ok


def test_open_mode_http_is_unchecked(tmp_path: Path) -> None:
    running = Running(settings_for(http_listen="127.0.0.1:0", prometheus_metrics=True))
    try:
        body, headers = cloudevent()
        assert request(running, "POST", "/v1/events", body=body, headers=headers)[0] == 201
        assert request(running, "GET", "/metrics")[0] == 200
    finally:
        running.stop()


# -- events recorded by hand are audited ------------------------------------------


def test_record_event_over_grpc_is_audited_with_the_principal(secured: Running) -> None:
    with Client(f"127.0.0.1:{secured.sidecar.port}", token=TOKENS["admin"]) as client:
        event = client.record_event(
            "deploy", "fraud", time=time.time(), environment="prod", actor="claimed-by-request"
        )
    entries = [e for e in secured.sidecar.store.list_audit() if e.action == "record_event"]
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.actor, entry.target, entry.model, entry.environment) == (
        "admin-bot",
        event.id,
        "fraud",
        "prod",
    )
    assert entry.after["type"] == "deploy" and entry.after["source"] == "grpc"
    assert verify_chain(secured.sidecar.store).ok


def test_posted_cloudevent_is_audited(secured: Running) -> None:
    body, headers = cloudevent(model="churn")
    status, _, raw = request(
        secured, "POST", "/v1/events", token=TOKENS["admin"], body=body, headers=headers
    )
    assert status == 201
    entries = [e for e in secured.sidecar.store.list_audit("churn") if e.action == "record_event"]
    assert [(e.actor, e.target) for e in entries] == [("admin-bot", json.loads(raw)["id"])]
    assert entries[0].after["source"] == "cloudevents"
    assert verify_chain(secured.sidecar.store).ok


def test_open_mode_audits_the_request_actor_and_derived_events_are_not_audited() -> None:
    store = SQLiteStore()
    try:
        log = EventLog(store)
        now = time.time()
        by_hand = log.record("config_change", time=now, model="fraud", recorded_by="cli:alice")
        log.append(EventRecord(type="autoscale", time=now, model="fraud", source="derived"))
        entries = [e for e in store.list_audit() if e.action == "record_event"]
        assert [(e.actor, e.target) for e in entries] == [("cli:alice", by_hand.id)]
        assert len(log.list(model="fraud")) == 2
        assert verify_chain(store).ok
    finally:
        store.close()


def test_event_retention_setting_reaches_the_event_log(tmp_path: Path) -> None:
    running = Running(settings_for(event_retention_seconds=3600))
    try:
        assert running.sidecar.events.retention_seconds == 3600
        with Client(f"127.0.0.1:{running.sidecar.port}") as client:
            client.record_event("deploy", "fraud", time=time.time() - 1800)
            with pytest.raises(ClientError, match="older than the event retention of 3600"):
                client.record_event("deploy", "fraud", time=time.time() - 7200)
    finally:
        running.stop()
