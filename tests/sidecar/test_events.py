"""Change events in: RecordEvent / ListEvents over real gRPC (127.0.0.1 port 0) and
CloudEvents posted to the real HTTP listener with urllib; every refusal names
the problem and stores nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

from middleware import Client, ClientError
from sidecar.events import EventLog, EventType, event_type_from_cloudevent
from sidecar.server import SERVICE_NAMES
from sidecar.stores import SQLiteStore
from tests.sidecar.test_baselines import T0, FakeClock
from tests.sidecar.test_server import Running, settings_for


@pytest.fixture
def served() -> Iterator[Running]:
    running = Running(settings_for(http_listen="127.0.0.1:0"), clock=FakeClock())
    yield running
    running.stop()


def stub(running: Running) -> Any:
    return pb_grpc.EventsStub(running.channel)  # type: ignore[no-untyped-call]


def listed(running: Running, **kw: Any) -> list[pb.Event]:
    return list(stub(running).ListEvents(pb.ListEventsRequest(**kw)).events)


def post(running: Running, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    assert running.sidecar.http is not None
    url = f"http://127.0.0.1:{running.sidecar.http.port}/v1/events"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "run-42",
    "ce-type": "dev.baselined.deploy",
    "ce-source": "https://ci.example/pipelines/7",
    "ce-time": "2023-11-14T22:13:00Z",  # T0 - 20 s
    "Content-Type": "application/json",
}
DATA = {"model": "fraud", "environment": "prod", "version": "v8", "attributes": {"commit": "a1"}}


# -- gRPC --------------------------------------------------------------------------


def test_record_and_list_round_trip_with_filters(served: Running) -> None:
    assert "baselined.v1.Events" in SERVICE_NAMES
    events = stub(served)
    deploy = events.RecordEvent(
        pb.RecordEventRequest(
            event=pb.Event(
                type=pb.EVENT_TYPE_DEPLOY,
                time=T0 - 60,
                model="fraud",
                environment="prod",
                version="v8",
                node="gpu-7",
                image="sha256:ab",
                attributes={"commit": "a1"},
                recorded_by="alice",
                source="derived",  # the sidecar sets source and recorded_at itself
                recorded_at=1.0,
            )
        )
    )
    assert deploy.id and deploy.source == "grpc" and deploy.recorded_at == T0
    events.RecordEvent(
        pb.RecordEventRequest(
            event=pb.Event(
                type=pb.EVENT_TYPE_CUSTOM, custom_type="db_migration", time=T0 - 30, model="fraud"
            )
        )
    )
    events.RecordEvent(
        pb.RecordEventRequest(
            event=pb.Event(type=pb.EVENT_TYPE_LIBRARY_UPDATE, time=T0 - 90, model="ranker")
        )
    )
    everything = listed(served)
    assert [(e.model, e.time) for e in everything] == [
        ("ranker", T0 - 90),
        ("fraud", T0 - 60),
        ("fraud", T0 - 30),
    ]
    assert everything[1] == deploy
    assert [e.custom_type for e in listed(served, model="fraud", types=[pb.EVENT_TYPE_CUSTOM])] == [
        "db_migration"
    ]
    # the custom event has no environment: it applies to prod as well
    assert len(listed(served, model="fraud", environment="prod")) == 2
    assert [e.time for e in listed(served, start=T0 - 60, end=T0 - 30)] == [T0 - 60]
    assert [e.time for e in listed(served, limit=1)] == [T0 - 30]


def _event(**kw: Any) -> pb.Event:
    values: dict[str, Any] = {"type": pb.EVENT_TYPE_DEPLOY, "time": T0 - 5, "model": "fraud"}
    values.update(kw)
    return pb.Event(**values)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_event(type=pb.EVENT_TYPE_UNSPECIFIED), "no type"),
        (_event(type=99), "unknown event type number 99"),
        (_event(type=pb.EVENT_TYPE_CUSTOM), "no custom_type"),
        (_event(custom_type="x"), "only allowed with type custom"),
        (_event(time=0.0), "no time"),
        (_event(time=float("nan")), "not finite"),
        (_event(time=T0 + 3600), "in the future"),
        (_event(time=T0 - 400 * 86400), "older than the event retention"),
        (_event(model=""), "no model"),
        (_event(node="gpu\n7"), "control character U+000A"),
        (_event(version="v" * 300), "over the limit of 256"),
        (_event(attributes={f"k{i}": "v" for i in range(65)}), "65 attributes"),
        (_event(attributes={"blob": "x" * 20_000}), "bytes, over the limit"),
        (_event(attributes={"": "v"}), "no attribute key"),
    ],
)
def test_bad_events_are_refused_and_nothing_is_stored(
    served: Running, event: pb.Event, reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub(served).RecordEvent(pb.RecordEventRequest(event=event))
    err: Any = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in err.details()
    assert listed(served) == []


def test_list_refuses_a_backwards_range(served: Running) -> None:
    with pytest.raises(grpc.RpcError) as info:
        listed(served, start=T0, end=T0 - 10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_record_event_and_events(served: Running) -> None:
    with Client(f"127.0.0.1:{served.sidecar.port}") as client:
        recorded = client.record_event(
            "model-rollout", "fraud", time=T0 - 1, version="v9", actor="bob", source="cli"
        )
        assert recorded.source == "cli" and recorded.recorded_by == "bob"
        assert list(client.events(model="fraud", types=["model_rollout"]).events) == [recorded]
        with pytest.raises(ClientError) as info:
            client.record_event("deploy", "", time=T0)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "model" in info.value.details
        with pytest.raises(ValueError, match="unknown event type 'deploi'"):
            client.record_event("deploi", "fraud", time=T0)


# -- CloudEvents over HTTP ---------------------------------------------------------


def test_binary_cloudevent_is_stored(served: Running) -> None:
    status, answer = post(served, json.dumps(DATA).encode(), BINARY)
    assert status == 201, answer
    (event,) = listed(served)
    assert answer["id"] == event.id
    assert event.type == pb.EVENT_TYPE_DEPLOY and event.time == T0 - 20
    assert (event.model, event.environment, event.version) == ("fraud", "prod", "v8")
    assert event.source == "cloudevents" and event.recorded_by == "https://ci.example/pipelines/7"
    assert dict(event.attributes) == {
        "commit": "a1",
        "cloudevents.id": "run-42",
        "cloudevents.source": "https://ci.example/pipelines/7",
    }


def test_structured_cloudevent_is_stored(served: Running) -> None:
    envelope = {
        "specversion": "1.0",
        "id": "e-1",
        "type": "com.example.db.migrated",  # a foreign type becomes a custom event
        "source": "/migrations",
        "subject": "fraud",  # the model when the data names none
        "data": {"environment": "prod", "actor": "dba", "attributes": {"rows": 12, "ok": True}},
    }
    status, _ = post(
        served, json.dumps(envelope).encode(), {"Content-Type": "application/cloudevents+json"}
    )
    assert status == 201
    (event,) = listed(served)
    assert event.type == pb.EVENT_TYPE_CUSTOM and event.custom_type == "com.example.db.migrated"
    assert event.model == "fraud" and event.recorded_by == "dba"
    assert event.time == T0  # no time: when it arrived
    assert event.attributes["rows"] == "12" and event.attributes["ok"] == "true"


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in BINARY.items() if k != name}


@pytest.mark.parametrize(
    ("headers", "body", "reason", "says"),
    [
        (_without("ce-specversion"), DATA, "missing_specversion", "no specversion"),
        (_without("ce-id"), DATA, "missing_id", "no id"),
        (_without("ce-type"), DATA, "missing_type", "no type"),
        (_without("ce-source"), DATA, "missing_source", "no source"),
        ({**BINARY, "ce-specversion": "0.3"}, DATA, "bad_specversion", "use 1.0"),
        ({**BINARY, "ce-time": "yesterday"}, DATA, "bad_time", "RFC 3339"),
        ({**BINARY, "ce-time": "2023-11-14T22:13:00"}, DATA, "bad_time", "RFC 3339"),
        ({**BINARY, "ce-type": "dev.baselined.deplyo"}, DATA, "bad_type", "unknown event type"),
        (BINARY, b"{not json", "not_json", "not JSON"),
        ({**BINARY, "Content-Type": "text/plain"}, b"deploy", "not_json", "must be JSON"),
        (BINARY, [1, 2], "bad_data", "JSON object"),
        (BINARY, {**DATA, "region": "eu"}, "unknown_field", "'region'"),
        (BINARY, {**DATA, "attributes": {"a": [1]}}, "bad_data", "string, number or boolean"),
        (BINARY, {"environment": "prod"}, "invalid_event", "no model"),
        ({"Content-Type": "application/json"}, DATA, "not_cloudevent", "no ce-* headers"),
        (
            {"Content-Type": "application/cloudevents+json"},
            {"specversion": "1.0", "id": "x", "source": "s", "data": DATA},
            "missing_type",
            "no type",
        ),
        (
            {"Content-Type": "application/cloudevents-batch+json"},
            [],
            "batch_mode",
            "batch mode",
        ),
    ],
)
def test_bad_cloudevents_get_400_with_the_reason_and_store_nothing(
    served: Running, headers: dict[str, str], body: Any, reason: str, says: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = post(served, raw, headers)
    assert status == 400
    assert answer["error"] == reason and says in answer["message"], answer
    assert listed(served) == []


def test_ce_type_mapping() -> None:
    assert event_type_from_cloudevent("dev.baselined.library-update") == (
        EventType.LIBRARY_UPDATE,
        "",
    )
    assert event_type_from_cloudevent("deploy") == (EventType.DEPLOY, "")
    assert event_type_from_cloudevent("io.argo.rollout") == (EventType.CUSTOM, "io.argo.rollout")
    assert [EventType.from_proto(t.to_proto()) for t in EventType] == list(EventType)
    assert pb.EventType.Name(EventType.PYTHON_CHANGE.to_proto()) == "EVENT_TYPE_PYTHON_CHANGE"


def test_event_log_drops_events_past_retention() -> None:
    clock = FakeClock()
    log = EventLog(SQLiteStore(clock=clock), clock=clock, retention_seconds=3600)
    log.record("deploy", time=T0 - 100, model="fraud")
    clock.now += 3600
    assert log.list(model="fraud") == []  # listed never, though not trimmed yet
    kept = log.record("autoscale", time=clock.now, model="fraud")
    assert log.list(model="fraud") == [kept]
