"""KServe InferenceLogger CloudEvents posted to a real sidecar (SQLite ``:memory:``,
gRPC and HTTP on 127.0.0.1 port 0) with ``urllib.request``: pairing by ``ce-id``,
V1 and V2 bodies, binary and structured mode, sampling, refusals, and ISSUE 5
ACCEPTANCE 2 (the same traffic through the middleware gives the same window)."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb

from middleware import Client, Shadow, sample_by_id
from middleware.http_extract import json_features, json_outputs
from sidecar.kserve import REQUEST_TYPE, RESPONSE_TYPE, BadEvent, KServeIngest
from sidecar.settings import Settings
from sidecar.stores.sqlite import SQLiteStore
from sidecar.windows import Windows
from tests.middleware.conftest import wait_until
from tests.sidecar.test_server import Running, settings_for

NOW = time.time()


# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def sidecar() -> Iterator[Running]:
    running = Running(settings_for(http_listen="127.0.0.1:0"))
    yield running
    running.stop()


def url(running: Running) -> str:
    assert running.sidecar.http is not None
    return f"http://127.0.0.1:{running.sidecar.http.port}/v1/kserve"


def post(target: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(target, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def ce_headers(
    kind: str,
    rid: str,
    *,
    isvc: str = "iris",
    namespace: str = "prod",
    component: str = "predictor",
    endpoint: str = "",
) -> dict[str, str]:
    """What KServe's agent sends in binary mode (Go's CloudEvents SDK: Ce-* headers)."""
    headers = {
        "Content-Type": "application/json",
        "Ce-Id": rid,
        "Ce-Type": kind,
        "Ce-Source": f"http://localhost:9081/{isvc}",
        "Ce-Specversion": "1.0",
        "Ce-Time": datetime.fromtimestamp(NOW, UTC).isoformat().replace("+00:00", "Z"),
        "Ce-Inferenceservicename": isvc,
        "Ce-Namespace": namespace,
        "Ce-Component": component,
        "Ce-Endpoint": endpoint,
        "Ce-Metadata": "{}",
    }
    return headers


def send_binary(target: str, kind: str, rid: str, data: Any, **ext: str) -> tuple[int, Any]:
    return post(target, json.dumps(data).encode(), ce_headers(kind, rid, **ext))


def send_structured(target: str, kind: str, rid: str, data: Any, **ext: str) -> tuple[int, Any]:
    attrs = {k[3:].lower(): v for k, v in ce_headers(kind, rid, **ext).items() if k[:3] == "Ce-"}
    envelope = {**attrs, "datacontenttype": "application/json", "data": data}
    return post(
        target,
        json.dumps(envelope).encode(),
        {"Content-Type": "application/cloudevents+json; charset=utf-8"},
    )


def window(running: Running, model: str, environment: str) -> dict[tuple[str, str], Any]:
    with Client(f"127.0.0.1:{running.sidecar.port}") as client:
        view = client.window(model, environment, top_k=20)
    return {(s.slice, s.signal): s for s in view.series if s.version == "*"}


# -- traffic -------------------------------------------------------------------------


def v1_traffic(n: int, seed: int) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(id, request, response) of a V1 sklearn-like model; some calls are batched."""
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        rows = rng.choice([1, 1, 2, 4])
        instances = [
            {
                "sepal": round(rng.gauss(5.8, 0.8), 3),
                "petal": round(rng.lognormvariate(0.5, 0.6), 4),
                "colour": rng.choice(["red", "blue", "blue", "green"]),
                "fresh": rng.random() < 0.3,
            }
            for _ in range(rows)
        ]
        predictions = [round(rng.random(), 5) for _ in range(rows)]
        calls.append((f"v1-{seed}-{i}", {"instances": instances}, {"predictions": predictions}))
    return calls


def v2_traffic(n: int, seed: int) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(id, request, response) of an Open Inference Protocol V2 model (JSON tensors)."""
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(n):
        rows = int(rng.choice([1, 3]))
        x = rng.normal(0.0, 1.0, size=(rows, 3)).round(4)
        words = [str(w) for w in rng.choice(["en", "de", "fr"], size=rows)]
        request = {
            "id": f"v2-{seed}-{i}",
            "inputs": [
                {"name": "x", "shape": [rows, 3], "datatype": "FP32", "data": x.ravel().tolist()},
                {"name": "lang", "shape": [rows, 1], "datatype": "BYTES", "data": words},
            ],
        }
        probs = rng.dirichlet([1.0, 1.0], size=rows).round(5)
        response = {
            "model_name": "bert",
            "model_version": "2",
            "id": f"v2-{seed}-{i}",
            "outputs": [
                {"name": "probs", "shape": [rows, 2], "datatype": "FP64", "data": probs.tolist()}
            ],
        }
        calls.append((f"v2-{seed}-{i}", request, response))
    return calls


# -- pairing, bodies, modes --------------------------------------------------------------


def test_v1_binary_pairs_become_one_record_per_row(sidecar: Running) -> None:
    target = url(sidecar)
    status, reply = send_binary(
        target, REQUEST_TYPE, "r-1", {"instances": [[5.1, 3.5], [6.2, 2.9], [7.0, 3.2]]}
    )
    assert (status, reply) == (200, {"status": "pending", "rows": 0})
    status, reply = send_binary(target, RESPONSE_TYPE, "r-1", {"predictions": [0, 1, 1]})
    assert (status, reply) == (200, {"status": "ingested", "rows": 3})

    series = window(sidecar, "iris", "prod")
    assert series[("*", "x.0")].kind == pb.SIGNAL_KIND_FEATURE
    assert series[("*", "x.0")].count == 3
    assert (series[("*", "x.0")].min, series[("*", "x.0")].max) == (5.1, 7.0)
    assert series[("*", "prediction")].kind == pb.SIGNAL_KIND_OUTPUT
    assert series[("*", "prediction")].mean == pytest.approx(2 / 3)
    assert series[("*", "error")].kind == pb.SIGNAL_KIND_ERROR
    assert series[("*", "error")].max == 0.0
    assert not any(s.kind == pb.SIGNAL_KIND_LATENCY for s in series.values())
    assert sidecar.sidecar.kserve.stats()["pairs_ingested"] == 1


def test_v2_structured_response_first_pairs_too_and_names_version_and_endpoint(
    sidecar: Running,
) -> None:
    target = url(sidecar)
    [(rid, request, response)] = v2_traffic(1, seed=3)
    rows = len(request["inputs"][1]["data"])
    ext = {"isvc": "bert", "namespace": "staging", "endpoint": "canary"}
    assert send_structured(target, RESPONSE_TYPE, rid, response, **ext)[1]["status"] == "pending"
    assert send_structured(target, REQUEST_TYPE, rid, request, **ext) == (
        200,
        {"status": "ingested", "rows": rows},
    )
    with Client(f"127.0.0.1:{sidecar.sidecar.port}") as client:
        view = client.window("bert", "staging", versions=["2"], top_k=5)
    got = {(s.version, s.slice, s.signal): s for s in view.series}
    assert got[("2", "*", "x.2")].count == rows
    assert got[("2", "endpoint=canary", "probs.1")].count == rows
    lang = got[("2", "*", "lang")]
    assert lang.categorical and sum(v.count for v in lang.top_values) == rows


def test_transformer_component_is_its_own_model(sidecar: Running) -> None:
    target = url(sidecar)
    for kind, data in ((REQUEST_TYPE, {"instances": [1.5]}), (RESPONSE_TYPE, {"predictions": [2]})):
        assert send_binary(target, kind, "t-1", data, component="transformer")[0] == 200
    assert window(sidecar, "iris-transformer", "prod")[("*", "x")].count == 1
    assert window(sidecar, "iris", "prod") == {}


# -- ISSUE 5 ACCEPTANCE 2 -----------------------------------------------------------------


def test_acceptance_kserve_events_give_the_same_window_as_the_middleware(
    sidecar: Running,
) -> None:
    """The same calls, once as KServe CloudEvents (binary V1, structured V2, some
    responses before their requests) and once through the middleware: every
    feature, output and error series has the same counts, range and quantiles."""
    target = url(sidecar)
    traffic = {"iris": ("", v1_traffic(120, seed=1)), "bert": ("2", v2_traffic(80, seed=2))}
    shuffle = random.Random(9)
    for model, (version, calls) in traffic.items():
        send = send_binary if model == "iris" else send_structured
        for rid, request, response in calls:
            pair = [(REQUEST_TYPE, request), (RESPONSE_TYPE, response)]
            shuffle.shuffle(pair)
            for kind, data in pair:
                status, reply = send(target, kind, rid, data, isvc=model, namespace="kserve")
                assert status == 200, reply

        shadow = Shadow(
            model=model,
            version=version,
            environment="middleware",
            target=f"127.0.0.1:{sidecar.sidecar.port}",
            flush_interval=0.05,
            atexit=False,
        )
        for rid, request, response in calls:
            assert shadow.decide(rid)
            assert shadow.record_call(
                latency=0.01,
                features=json_features(request),
                outputs=json_outputs(response),
                request_id=rid,
            )
        rows = sum(len(response.get("predictions", [])) for _, _, response in calls) or sum(
            response["outputs"][0]["shape"][0] for _, _, response in calls
        )
        assert wait_until(lambda s=shadow, n=rows: s.stats().sampled >= n)  # type: ignore[misc]
        shadow.close(timeout=5)

        kserve = window(sidecar, model, "kserve")
        shadowed = window(sidecar, model, "middleware")
        latency = {k for k, s in shadowed.items() if s.kind == pb.SIGNAL_KIND_LATENCY}
        assert latency, "the middleware measures latency; KServe's logger cannot"
        assert set(kserve) == set(shadowed) - latency
        assert kserve[("*", "error")].count == rows
        for key, got in kserve.items():
            want = shadowed[key]
            assert (got.kind, got.categorical) == (want.kind, want.categorical), key
            assert (got.count, got.missing, got.out_of_range) == (
                want.count,
                want.missing,
                want.out_of_range,
            ), key
            exact = [got.min, got.max, *(q.value for q in got.quantiles)]
            assert np.array_equal(
                exact, [want.min, want.max, *(q.value for q in want.quantiles)], equal_nan=True
            ), key
            assert [q.q for q in got.quantiles] == [q.q for q in want.quantiles], key
            if not got.categorical:
                assert len(got.quantiles) >= 3, key
                assert got.mean == pytest.approx(want.mean, rel=1e-12), key
            assert sorted((v.value, v.count) for v in got.top_values) == sorted(
                (v.value, v.count) for v in want.top_values
            ), key


# -- sampling ----------------------------------------------------------------------------


def test_sampling_keeps_the_ids_the_middleware_keeps() -> None:
    running = Running(settings_for(http_listen="127.0.0.1:0", kserve_sample_rate=0.5))
    try:
        target = url(running)
        ids = [f"req-{i}" for i in range(200)]
        statuses = {}
        for rid in ids:
            send_binary(target, REQUEST_TYPE, rid, {"instances": [{"a": 1.0}]})
            statuses[rid] = send_binary(target, RESPONSE_TYPE, rid, {"predictions": [0.5]})[1]
        kept = {rid for rid in ids if sample_by_id(rid, 0.5)}
        assert 70 < len(kept) < 130
        assert {rid for rid, s in statuses.items() if s["status"] == "ingested"} == kept
        assert {s["status"] for rid, s in statuses.items() if rid not in kept} == {"unsampled"}
        assert window(running, "iris", "prod")[("*", "a")].count == len(kept)
        assert running.sidecar.kserve.stats()["events_unsampled"] == 2 * (200 - len(kept))
    finally:
        running.stop()


# -- refusals ----------------------------------------------------------------------------

V2_OK = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"Ce-Id": ""}, b'{"instances": [1]}', "missing_id"),
        ({"Ce-Type": ""}, b'{"instances": [1]}', "missing_type"),
        ({"Ce-Type": "com.example.other"}, b'{"instances": [1]}', "bad_type"),
        ({"Ce-Specversion": "2.0"}, b'{"instances": [1]}', "bad_specversion"),
        ({}, b"instances=1", "not_json"),
        ({}, b"", "no_data"),
        ({}, b'{"instances": 5}', "bad_shape"),
        ({}, b'"just a string"', "bad_shape"),
        ({}, json.dumps({"inputs": [{**V2_OK, "shape": [3, 2]}]}).encode(), "bad_shape"),
        ({}, json.dumps({"inputs": [{**V2_OK, "datatype": "FP8"}]}).encode(), "bad_tensor"),
        ({}, json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}).encode(), "bad_tensor"),
        ({"Ce-Inferenceservicename": "", "Ce-Source": "http://host/"}, b'{"instances": [1]}', "no_model"),
        ({"Content-Type": "application/cloudevents-batch+json"}, b"[]", "batch_mode"),
    ],
)  # fmt: skip
def test_malformed_events_get_400_with_the_reason_and_ingest_nothing(
    sidecar: Running, headers: dict[str, str], body: bytes, reason: str
) -> None:
    sent = {**ce_headers(REQUEST_TYPE, "bad-1"), **headers}
    status, reply = post(url(sidecar), body, {k: v for k, v in sent.items() if v})
    assert status == 400
    assert reply["error"] == reason
    assert reply["message"]
    assert sidecar.sidecar.kserve.rejections() == {reason: 1}
    assert sidecar.sidecar.kserve.stats()["pending"] == 0
    assert window(sidecar, "iris", "prod") == {}


def test_structured_event_that_is_not_an_object_or_has_no_data_is_refused(
    sidecar: Running,
) -> None:
    structured = {"Content-Type": "application/cloudevents+json"}
    assert post(url(sidecar), b"[1, 2]", structured) == (
        400,
        {"error": "not_object", "message": "a structured CloudEvent must be a JSON object"},
    )
    no_data = {"specversion": "1.0", "id": "a", "type": REQUEST_TYPE, "source": "/iris"}
    assert post(url(sidecar), json.dumps(no_data).encode(), structured)[1]["error"] == "no_data"
    no_ce = {"Content-Type": "application/json"}
    assert post(url(sidecar), b'{"instances": [1]}', no_ce)[1]["error"] == "not_cloudevent"


def test_a_response_whose_rows_do_not_match_its_request_is_refused(sidecar: Running) -> None:
    target = url(sidecar)
    send_binary(target, REQUEST_TYPE, "m-1", {"instances": [[1, 2], [3, 4], [5, 6]]})
    status, reply = send_binary(target, RESPONSE_TYPE, "m-1", {"predictions": [1, 0]})
    assert (status, reply["error"]) == (400, "rows_mismatch")
    assert "3 rows" in reply["message"]
    assert window(sidecar, "iris", "prod") == {}


def test_events_older_than_retention_are_refused_by_the_window(sidecar: Running) -> None:
    target = url(sidecar)
    old = ce_headers(REQUEST_TYPE, "old-1")
    old["Ce-Time"] = "2001-01-01T00:00:00Z"
    assert post(target, b'{"instances": [1]}', old)[0] == 200  # waits for its response
    status, reply = send_binary(target, RESPONSE_TYPE, "old-1", {"predictions": [1]})
    assert (status, reply["error"]) == (400, "refused")
    assert "retention" in reply["message"]


# -- pairing TTL, bound, drain (the ingest object on real windows and SQLite) --------------


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def direct(**options: Any) -> tuple[KServeIngest, Windows, Monotonic]:
    settings = Settings(instance="t")
    windows = Windows(settings, SQLiteStore(), clock=lambda: NOW)
    tick = Monotonic()
    ingest = KServeIngest(windows, settings, clock=lambda: NOW, monotonic=tick, **options)
    return ingest, windows, tick


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def counts(windows: Windows, model: str = "iris") -> dict[str, int]:
    windows.flush()
    data = windows.read(model, "prod", 0, NOW + 60)
    out = {}
    for sid, state in data.series.items():
        if sid.version == "*" and sid.slice == "*":
            out[sid.signal] = state.summary().count
    return out


def test_unpaired_requests_after_the_ttl_are_ingested_as_features_only() -> None:
    ingest, windows, tick = direct(pair_ttl=30.0)
    body = json.dumps({"instances": [{"a": 1.0}, {"a": 2.0}]}).encode()
    assert ingest.handle(lower(ce_headers(REQUEST_TYPE, "lonely")), body).status == "pending"
    tick.now += 29.0
    assert ingest.expire() == 0
    assert counts(windows) == {}
    tick.now += 2.0
    assert ingest.expire() == 1
    assert counts(windows) == {"a": 2}  # no outputs, no error signal
    stats = ingest.stats()
    assert (stats["requests_unpaired"], stats["pending"], stats["rows_ingested"]) == (1, 0, 2)
    # The late response finds nothing to pair with: it waits, then goes alone.
    late = json.dumps({"predictions": [0.1, 0.2]}).encode()
    assert ingest.handle(lower(ce_headers(RESPONSE_TYPE, "lonely")), late).status == "pending"
    assert ingest.drain() == 1
    assert counts(windows) == {"a": 2, "prediction": 2, "error": 2}


def test_a_full_pending_map_ingests_its_oldest_half_alone() -> None:
    ingest, windows, _ = direct(max_pending=2)
    for i in range(3):
        ingest.handle(lower(ce_headers(REQUEST_TYPE, f"q-{i}")), b'{"instances": [{"a": 1}]}')
    assert ingest.stats()["pending_evicted"] == 1
    assert ingest.stats()["pending"] == 2
    assert counts(windows) == {"a": 1}
    reply = ingest.handle(lower(ce_headers(RESPONSE_TYPE, "q-0")), b'{"predictions": [1]}')
    assert reply.status == "pending"  # q-0 left early: its response now waits alone


def test_a_repeated_half_is_a_duplicate_and_counted_once() -> None:
    ingest, windows, _ = direct()
    headers = lower(ce_headers(REQUEST_TYPE, "d-1"))
    assert ingest.handle(headers, b'{"instances": [{"a": 1}]}').status == "pending"
    assert ingest.handle(headers, b'{"instances": [{"a": 9}]}').status == "duplicate"
    out = ingest.handle(lower(ce_headers(RESPONSE_TYPE, "d-1")), b'{"predictions": [3]}')
    assert out.rows == 1
    windows.flush()
    state = windows.read("iris", "prod", 0, NOW + 60).series
    a = next(v for k, v in state.items() if k.signal == "a" and k.version == "*")
    assert a.summary().max == 1.0


def test_an_error_body_sets_the_error_signal() -> None:
    ingest, windows, _ = direct()
    ingest.handle(lower(ce_headers(REQUEST_TYPE, "e-1")), b'{"instances": [{"a": 1}]}')
    ingest.handle(lower(ce_headers(RESPONSE_TYPE, "e-1")), b'{"error": "model failed"}')
    windows.flush()
    series = windows.read("iris", "prod", 0, NOW + 60).series
    error = next(v for k, v in series.items() if k.signal == "error" and k.version == "*")
    assert error.summary().mean == 1.0
    assert counts(windows) == {"a": 1, "error": 1}


def test_refusals_raise_bad_event_with_a_reason() -> None:
    ingest, _, _ = direct()
    with pytest.raises(BadEvent) as info:
        ingest.handle({"ce-id": "x"}, b"{}")
    assert info.value.reason == "missing_type"
    assert ingest.stats()["events_rejected"] == 1
