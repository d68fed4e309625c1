"""A CloudEvent posted twice is stored once (CloudEvents 1.0: ``source`` + ``id``
identify an event): the real aiohttp listener on 127.0.0.1 port 0 over a real
SQLite file and the real Redis. A repeat answers 200 with the stored event and
adds no event and no audit entry; the same id with other content answers 409;
concurrent repeats store exactly one event."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.events import EventLog, cloudevent_event_id, parse_cloudevent
from sidecar.http import EVENTS_PATH
from sidecar.stores.base import Store
from sidecar.stores.redis import RedisStore
from sidecar.stores.sqlite import SQLiteStore
from tests.sidecar.test_http import Loop, call, start

NOW = 1_700_000_000.0
HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "build-311",
    "ce-type": "dev.baselined.deploy",
    "ce-source": "ci/fraud-pipeline",
    "ce-time": "2023-11-14T22:13:00Z",  # NOW - 20 s
    "Content-Type": "application/json",
}
DATA = {"model": "fraud", "environment": "prod", "version": "v8", "attributes": {"commit": "a1"}}


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store
    if request.param == "sqlite":
        made = SQLiteStore(str(tmp_path / "events.db"), clock=lambda: NOW)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        made = RedisStore(url, prefix=prefix, clock=lambda: NOW)
    yield made
    made.close()


@pytest.fixture
def served(store: Store) -> Iterator[tuple[str, Store]]:
    loop = Loop()
    listener = start(loop, events=EventLog(store, clock=lambda: NOW))
    yield f"http://127.0.0.1:{listener.port}{EVENTS_PATH}", store
    loop.run(listener.stop())
    loop.close()


def post(url: str, data: Any = DATA, **headers: str) -> tuple[int, dict[str, Any]]:
    status, _, body = call(url, json.dumps(data).encode(), {**HEADERS, **headers})
    return status, json.loads(body)


def events_of(store: Store) -> list[str]:
    return [e.id for e in store.list_events(None, None, 0.0, float("inf"), 1000)]


def audited(store: Store) -> list[str]:
    return [a.target for a in store.list_audit("fraud") if a.action == "record_event"]


def test_the_event_id_comes_from_source_and_id() -> None:
    a = parse_cloudevent({k.lower(): v for k, v in HEADERS.items()}, b"{}", now=NOW)
    moved = {**{k.lower(): v for k, v in HEADERS.items()}, "ce-source": "ci/other"}
    b = parse_cloudevent(moved, b"{}", now=NOW)
    assert a.id == cloudevent_event_id("ci/fraud-pipeline", "build-311")
    assert a.id.startswith("ev-") and len(a.id) == 23
    assert b.id != a.id


def test_a_repeat_answers_200_with_the_stored_event_and_stores_nothing(
    served: tuple[str, Store],
) -> None:
    url, store = served
    status, first = post(url)
    assert status == 201, first
    assert first["duplicate"] is False
    assert first["id"] == cloudevent_event_id("ci/fraud-pipeline", "build-311")
    # the same event again, and once more in structured mode with another JSON layout
    status, again = post(url)
    assert status == 200, again
    assert again == {**first, "duplicate": True}
    envelope = {
        "specversion": "1.0",
        "id": "build-311",
        "type": "dev.baselined.deploy",
        "source": "ci/fraud-pipeline",
        "time": "2023-11-14T22:13:00Z",
        "data": DATA,
    }
    status, _, raw = call(
        url,
        json.dumps(envelope, indent=2).encode(),
        {"Content-Type": "application/cloudevents+json"},
    )
    assert status == 200, raw
    assert json.loads(raw)["id"] == first["id"]
    assert events_of(store) == [first["id"]]
    assert audited(store) == [first["id"]]
    # another id from the same source is a new event
    status, other = post(url, **{"ce-id": "build-312"})
    assert status == 201 and other["id"] != first["id"]
    assert sorted(events_of(store)) == sorted([first["id"], other["id"]])
    assert len(audited(store)) == 2


@pytest.mark.parametrize(
    ("data", "headers", "names"),
    [
        ({**DATA, "version": "v9"}, {}, "version"),
        ({**DATA, "attributes": {"commit": "b2"}}, {}, "attributes"),
        (DATA, {"ce-time": "2023-11-14T22:13:05Z"}, "time"),
        (DATA, {"ce-type": "dev.baselined.config_change"}, "type"),
        ({**DATA, "model": "ranker"}, {}, "model"),
    ],
)
def test_the_same_id_with_other_content_is_refused_with_409(
    served: tuple[str, Store], data: Any, headers: dict[str, str], names: str
) -> None:
    url, store = served
    status, first = post(url)
    assert status == 201
    status, answer = post(url, data, **headers)
    assert status == 409, answer
    assert answer["error"] == "duplicate_id_conflict"
    assert f"different {names}" in answer["message"] and "build-311" in answer["message"]
    assert events_of(store) == [first["id"]]
    assert len(audited(store)) == 1


def test_a_repeat_without_time_matches_the_stored_event(served: tuple[str, Store]) -> None:
    url, store = served
    untimed = {k: v for k, v in HEADERS.items() if k != "ce-time"}
    status, _, raw = call(url, json.dumps(DATA).encode(), untimed)
    assert status == 201, raw
    status, _, raw = call(url, json.dumps(DATA).encode(), untimed)
    assert status == 200, raw
    assert len(events_of(store)) == 1


def test_concurrent_repeats_store_exactly_one_event(served: tuple[str, Store]) -> None:
    url, store = served
    statuses: list[int] = []
    ids: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(8)

    def send() -> None:
        gate.wait()
        status, answer = post(url)
        with lock:
            statuses.append(status)
            ids.append(answer.get("id", answer.get("message", "")))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200] * 7 + [201], (statuses, ids)
    assert set(ids) == {cloudevent_event_id("ci/fraud-pipeline", "build-311")}
    assert events_of(store) == [ids[0]]
    assert len(audited(store)) == 1
