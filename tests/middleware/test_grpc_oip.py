"""OIPServerInterceptor / AioOIPServerInterceptor on real gRPC servers (127.0.0.1, port 0)
serving the Open Inference Protocol v2 ``ModelInfer`` (a tiny model: the sum of each row's
inputs), called through real stubs, shadowing to a real sidecar (SQLite ``:memory:``) or to the
recording Ingest server of conftest.py."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pytest
from inference.v2 import grpc_predict_v2_pb2 as oip
from inference.v2 import grpc_predict_v2_pb2_grpc as oip_grpc

from middleware import (
    AioOIPServerInterceptor,
    Client,
    OIPServerInterceptor,
    Shadow,
    ShadowPerModel,
)
from middleware.grpc_oip import MODEL_INFER, TensorError, decode_tensor
from middleware.sampling import sample_by_id
from tests.middleware.conftest import IngestServer, wait_until
from tests.middleware.test_asgi import ENV, MODEL, close_after, counts, make_shadow, window
from tests.sidecar.test_server import Running, settings_for

_NP = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_FIELD = {
    "BOOL": "bool_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

Tensor = tuple[str, str, list[int], Any]  # name, datatype, shape, values (numpy or list of bytes)


def _bytes_raw(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def infer_request(
    tensors: list[Tensor],
    *,
    raw: bool,
    model: str = MODEL,
    version: str = "",
    rid: str = "",
    mode: str = "",
) -> oip.ModelInferRequest:
    """A ModelInferRequest with typed contents or with raw_input_contents."""
    req = oip.ModelInferRequest(model_name=model, model_version=version, id=rid)
    if mode:
        req.parameters["mode"].string_param = mode
    for name, datatype, shape, values in tensors:
        t = req.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            req.raw_input_contents.append(
                _bytes_raw(values)
                if datatype == "BYTES"
                else np.asarray(values, dtype=np.dtype(_NP[datatype]).newbyteorder("<")).tobytes()
            )
        elif datatype == "BYTES":
            t.contents.bytes_contents.extend(values)
        else:
            getattr(t.contents, _FIELD[datatype]).extend(np.asarray(values).ravel().tolist())
    return req


# -- the model: sum of each row's numeric inputs ----------------------------------------------


def _decode(t: Any, raw: bytes | None) -> np.ndarray | None:
    if t.datatype == "BYTES":
        return None
    if raw is not None:
        return np.frombuffer(raw, dtype=np.dtype(_NP[t.datatype]).newbyteorder("<"))
    return np.asarray(getattr(t.contents, _FIELD[t.datatype]), dtype=np.float64)


def model_infer(request: oip.ModelInferRequest, context: Any) -> oip.ModelInferResponse:
    """Row sums of the numeric inputs as "sum" [b, 1] and a label "big"/"small" (BYTES) per
    row, raw when the request was raw; a request it cannot reshape gets zeros."""
    mode = request.parameters["mode"].string_param if "mode" in request.parameters else ""
    if mode == "raise":
        raise RuntimeError("model exploded")
    if mode == "abort":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input")
    if mode == "code":
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        context.set_details("not ready")
        return oip.ModelInferResponse()
    inputs = list(request.inputs)
    raws = list(request.raw_input_contents)
    b = inputs[0].shape[0] if inputs and inputs[0].shape else 1
    totals = np.zeros(b)
    try:
        for i, t in enumerate(inputs):
            values = _decode(t, raws[i] if raws else None)
            if values is not None:
                totals = totals + values.astype(np.float64).reshape(b, -1).sum(axis=1)
    except (ValueError, KeyError, IndexError):
        totals = np.zeros(b)
    labels = [b"big" if v > 10 else b"small" for v in totals]
    resp = oip.ModelInferResponse(
        model_name=request.model_name, model_version=request.model_version or "1", id=request.id
    )
    s = resp.outputs.add(name="sum", datatype="FP64", shape=[b, 1])
    lab = resp.outputs.add(name="label", datatype="BYTES", shape=[b, 1])
    if raws:
        resp.raw_output_contents.append(totals.astype("<f8").tobytes())
        resp.raw_output_contents.append(_bytes_raw(labels))
    else:
        s.contents.fp64_contents.extend(totals.tolist())
        lab.contents.bytes_contents.extend(labels)
    return resp


class Servicer(oip_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request: Any, context: Any) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    def ModelInfer(self, request: Any, context: Any) -> oip.ModelInferResponse:
        return model_infer(request, context)


class AioServicer(oip_grpc.GRPCInferenceServiceServicer):
    async def ServerLive(self, request: Any, context: Any) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def ModelInfer(self, request: Any, context: Any) -> oip.ModelInferResponse:
        if request.parameters["mode"].string_param == "abort":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input")
        return model_infer(request, context)


# -- servers ---------------------------------------------------------------------------------


class SyncServer:
    def __init__(self, interceptors: list[Any]) -> None:
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors
        )
        oip_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), self.server)  # type: ignore[no-untyped-call]
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


class AioServer:
    """A grpc.aio server on its own event loop in a background thread."""

    def __init__(self, interceptors: list[Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[grpc.aio.Server, int]:
            server = grpc.aio.server(interceptors=interceptors)
            oip_grpc.add_GRPCInferenceServiceServicer_to_server(AioServicer(), server)  # type: ignore[no-untyped-call]
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            return server, port

        self.server, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


Server = SyncServer | AioServer


@pytest.fixture
def sidecar() -> Iterator[Running]:
    running = Running(settings_for())
    yield running
    running.stop()


@pytest.fixture
def servers() -> Iterator[Callable[[str, list[Any]], Server]]:
    started: list[Server] = []

    def start(kind: str, interceptors: list[Any]) -> Server:
        server: Server = SyncServer(interceptors) if kind == "sync" else AioServer(interceptors)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


class Caller:
    """A real channel and stub to one server, plus a raw-bytes ModelInfer."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = oip_grpc.GRPCInferenceServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.raw = self.channel.unary_unary(
            MODEL_INFER,
            request_serializer=oip.ModelInferRequest.SerializeToString,
            response_deserializer=None,  # the response bytes as sent
        )

    def bytes_of(self, request: oip.ModelInferRequest) -> tuple[str, bytes | str | None]:
        """(status name, response bytes or error details)."""
        try:
            return "OK", self.raw(request, timeout=10)
        except grpc.RpcError as err:
            return err.code().name, err.details()

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def callers() -> Iterator[Callable[[Server], Caller]]:
    made: list[Caller] = []

    def make(server: Server) -> Caller:
        c = Caller(server.port)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def interceptor_for(kind: str, shadow: Any, **options: Any) -> Any:
    cls = OIPServerInterceptor if kind == "sync" else AioOIPServerInterceptor
    return cls(shadow, **options)


RNG = np.random.default_rng(7)
X_TYPED = RNG.normal(size=(2, 4)).astype(np.float32)
X_RAW = RNG.normal(size=(3, 4)).astype(np.float32)
H_RAW = np.array([[0.5], [1.5], [-2.0]], dtype=np.float16)


def traffic() -> list[oip.ModelInferRequest]:
    """One typed request (2 rows) and one raw request (3 rows): FP32 [b, 4], INT64, BYTES, FP16."""
    typed = infer_request(
        [
            ("x", "FP32", [2, 4], X_TYPED),
            ("count", "INT64", [2, 1], [[3], [40]]),
            ("city", "BYTES", [2, 1], [b"Oslo", b"Lima"]),
        ],
        raw=False,
        rid="typed-1",
    )
    raw = infer_request(
        [
            ("x", "FP32", [3, 4], X_RAW),
            ("count", "INT64", [3, 1], [[1], [2], [1 << 40]]),
            ("city", "BYTES", [3], [b"Oslo", b"Rome", "Z\u00fcrich".encode()]),
            ("h", "FP16", [3, 1], H_RAW),
        ],
        raw=True,
        rid="raw-1",
    )
    return [typed, raw]


# -- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_typed_and_raw_model_infer_signals_reach_the_sidecar_window(
    kind: str,
    sidecar: Running,
    servers: Callable[[str, list[Any]], Server],
    callers: Callable[[Server], Caller],
) -> None:
    shadow = make_shadow(sidecar)
    names = {"x": ["a", "b", "c", "d"]} if kind == "aio" else None
    icpt = interceptor_for(kind, shadow, column_names=names)
    caller = callers(servers(kind, [icpt]))
    for req in traffic():
        resp = caller.stub.ModelInfer(req, timeout=10)
        assert resp.id == req.id and resp.outputs[0].name == "sum"
    close_after(shadow, 5)

    assert icpt.skipped() == dict.fromkeys(icpt.skipped(), 0)
    assert shadow.stats().records_accepted == 5
    series = window(sidecar)
    got = counts(series)
    cols = names["x"] if names else ["x.0", "x.1", "x.2", "x.3"]
    xs = np.vstack([X_TYPED, X_RAW]).astype(np.float64)
    for j, col in enumerate(cols):
        assert got[("*", col)] == 5
        assert series[("*", col)].mean == pytest.approx(xs[:, j].mean(), rel=1e-6)
    assert ("*", "x") not in got and ("*", "x.0" if names else "a") not in got
    assert got[("*", "count")] == 5
    assert series[("*", "count")].max == float(1 << 40)
    assert got[("*", "city")] == 5  # BYTES: categorical
    top = {c.value: c.count for c in series[("*", "city")].top_values}
    assert top == {"Oslo": 2, "Lima": 1, "Rome": 1, "Z\u00fcrich": 1}
    assert got[("*", "h")] == 3  # FP16, raw only
    assert series[("*", "h")].mean == pytest.approx(0.0)
    sums = xs.sum(axis=1) + np.array([3, 40, 1, 2, 1 << 40])
    assert got[("*", "sum")] == 5
    assert series[("*", "sum")].mean == pytest.approx(sums.mean(), rel=1e-6)
    assert got[("*", "label")] == 5
    assert got[("*", "latency_seconds")] == 5 and series[("*", "latency_seconds")].min > 0
    assert got[("*", "error")] == 5 and series[("*", "error")].max == 0.0


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_other_methods_pass_through_and_responses_are_byte_identical(
    kind: str,
    sidecar: Running,
    servers: Callable[[str, list[Any]], Server],
    callers: Callable[[Server], Caller],
) -> None:
    shadow = make_shadow(sidecar)
    icpt = interceptor_for(kind, shadow)
    bare = callers(servers(kind, []))
    shadowed = callers(servers(kind, [icpt]))
    assert shadowed.stub.ServerLive(oip.ServerLiveRequest(), timeout=10).live
    assert shadow.stats().calls == 0  # ServerLive is not observed
    cases = [
        *traffic(),
        infer_request([("x", "FP32", [1, 2], [[1, 2]])], raw=False, mode="raise"),
        infer_request([("x", "FP32", [1, 2], [[1, 2]])], raw=False, mode="abort"),
        infer_request([("x", "FP32", [1, 2], [[1, 2]])], raw=False, mode="code"),
        infer_request([("x", "FP32", [2, 4], list(range(7)))], raw=False),  # malformed
    ]
    for req in cases:
        want = bare.bytes_of(req)
        assert shadowed.bytes_of(req) == want
    assert [bare.bytes_of(r)[0] for r in cases[2:5]] == [
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
    ]
    close_after(shadow, 8, icpt.skipped, 1)  # 2 + 3 + three error rows; one skipped
    assert icpt.skipped()["shape_mismatch"] == 1
    got = counts(window(sidecar))
    assert got[("*", "error")] == 8
    series = window(sidecar)
    assert series[("*", "error")].mean == pytest.approx(3 / 8)
    top = {c.value: c.count for c in series[("*", "error_type")].top_values}
    assert top == {"RuntimeError": 1, "grpc.INVALID_ARGUMENT": 1, "grpc.FAILED_PRECONDITION": 1}


def test_the_continuation_handler_of_other_methods_is_returned_as_is() -> None:
    shadow = Shadow(model=MODEL, target="127.0.0.1:1", atexit=False)
    icpt = OIPServerInterceptor(shadow)
    handler = grpc.unary_unary_rpc_method_handler(lambda r, c: r)

    class Details(grpc.HandlerCallDetails):
        def __init__(self, method: str) -> None:
            self.method = method
            self.invocation_metadata = ()

    for method in ("/inference.GRPCInferenceService/ServerLive", "/other.Svc/ModelInfer"):
        assert icpt.intercept_service(lambda d: handler, Details(method)) is handler
    wrapped = icpt.intercept_service(lambda d: handler, Details(MODEL_INFER))
    assert wrapped is not None and wrapped.unary_unary is not handler.unary_unary
    assert icpt.intercept_service(lambda d: None, Details(MODEL_INFER)) is None
    shadow.close(timeout=0.1)


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_malformed_tensors_are_skipped_and_counted_while_the_request_is_answered(
    kind: str,
    ingest: IngestServer,
    servers: Callable[[str, list[Any]], Server],
    callers: Callable[[Server], Caller],
) -> None:
    shadow = Shadow(
        model=MODEL, environment=ENV, target=ingest.target, flush_interval=0.05, atexit=False
    )
    icpt = interceptor_for(kind, shadow, max_payload=4096, max_rows=100)
    caller = callers(servers(kind, [icpt]))
    ok = [("x", "FP32", [1, 2], [[1.0, 2.0]])]
    bad = [
        infer_request([("x", "FP32", [2, 4], list(range(7)))], raw=False),  # typed count
        infer_request(ok, raw=True),  # fixed below: raw length
        infer_request(ok, raw=True),  # fixed below: unknown datatype
        infer_request([("s", "BYTES", [2], [b"ab", b"c"])], raw=True),  # fixed below: prefix
        infer_request([("x", "FP32", [1, 2048], np.ones((1, 2048)))], raw=True),  # too large
        infer_request(ok, raw=True),  # fixed below: two raw entries for one input
        infer_request(
            [("x", "FP32", [2, 1], [[1], [2]]), ("y", "FP32", [3, 1], [[1], [2], [3]])], raw=False
        ),  # rows disagree
        infer_request([("x", "FP32", [200, 1], np.ones((200, 1)))], raw=True),  # > max_rows
        infer_request([("x", "FP16", [1, 1], [[1.0]])], raw=True),  # fixed below: FP16 typed
    ]
    bad[1].raw_input_contents[0] = bad[1].raw_input_contents[0][:-1]
    bad[2].inputs[0].datatype = "COMPLEX64"
    bad[3].raw_input_contents[0] = bad[3].raw_input_contents[0][:-1]
    bad[5].raw_input_contents.append(b"\x00" * 8)
    del bad[8].raw_input_contents[:]
    for req in bad:
        resp = caller.stub.ModelInfer(req, timeout=10)  # answered: the model's own behaviour
        assert resp.outputs[0].name == "sum"
    # Non-UTF-8 BYTES elements are left out; the row is kept.
    caller.stub.ModelInfer(
        infer_request([("s", "BYTES", [2, 1], [b"\xff\xfe", b"ok"])], raw=False), timeout=10
    )
    close_after(shadow, 2, icpt.skipped, len(bad) + 1)
    assert icpt.skipped() == {
        "unknown_datatype": 1,
        "shape_mismatch": 5,  # typed count, raw length, BYTES prefix, raw entries, FP16 typed
        "rows_mismatch": 1,
        "too_large": 2,  # payload, batch
        "bytes_not_utf8": 1,
        "internal_error": 0,
    }
    assert wait_until(lambda: ingest.servicer.records == 2)
    rows = ingest.servicer.rows()
    assert sorted(r.get("s", "") for r in rows) == ["", "ok"]


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_batched_rows_are_sampled_on_their_own_by_id_and_row_index(
    kind: str,
    ingest: IngestServer,
    servers: Callable[[str, list[Any]], Server],
    callers: Callable[[Server], Caller],
) -> None:
    rate = 0.5
    shadow = Shadow(
        model=MODEL,
        environment=ENV,
        target=ingest.target,
        flush_interval=0.05,
        sample_rate=rate,
        atexit=False,
    )
    icpt = interceptor_for(kind, shadow)
    caller = callers(servers(kind, [icpt]))
    expected: list[tuple[str, float]] = []
    for i in range(6):
        rid = f"req-{i}"
        x = np.arange(8, dtype=np.float32).reshape(8, 1) + 100 * i
        caller.stub.ModelInfer(
            infer_request([("x", "FP32", [8, 1], x)], raw=bool(i % 2), rid=rid), timeout=10
        )
        expected += [(rid, float(x[j, 0])) for j in range(8) if sample_by_id(f"{rid}/{j}", rate)]
    # an unbatched request uses the id itself
    single = infer_request([("x", "FP32", [1, 1], [[7.0]])], raw=False, rid="solo-3")
    caller.stub.ModelInfer(single, timeout=10)
    if sample_by_id("solo-3", rate):
        expected.append(("solo-3", 7.0))
    assert 0 < len(expected) < 49
    close_after(shadow, len(expected))
    assert wait_until(lambda: ingest.servicer.records == len(expected))
    got = sorted((r["_id"], r["x"]) for r in ingest.servicer.rows())
    assert got == sorted(expected)
    assert shadow.stats().calls == 49  # one decision per row


def test_one_shadow_per_served_model_and_version(
    sidecar: Running,
    servers: Callable[[str, list[Any]], Server],
    callers: Callable[[Server], Caller],
) -> None:
    per_model = ShadowPerModel(
        models=["ranker", "fraud"],
        environment=ENV,
        target=f"127.0.0.1:{sidecar.sidecar.port}",
        flush_interval=0.05,
        atexit=False,
    )
    icpt = OIPServerInterceptor(per_model)
    caller = callers(servers("sync", [icpt]))
    one = [("x", "FP32", [1, 1], [[1.0]])]
    for model, version, n in (("ranker", "2", 3), ("fraud", "", 2), ("other", "", 4)):
        for _ in range(n):
            caller.stub.ModelInfer(
                infer_request(one, raw=False, model=model, version=version), timeout=10
            )
    made = per_model.shadows()
    assert set(made) == {("ranker", "2"), ("fraud", "")}  # "other" is not observed
    assert made[("ranker", "2")].version == "2"
    assert wait_until(lambda: made[("ranker", "2")].stats().sampled == 3)
    assert wait_until(lambda: made[("fraud", "")].stats().sampled == 2)
    per_model.close()
    with Client(f"127.0.0.1:{sidecar.sidecar.port}") as client:
        ranker = client.window("ranker", ENV)
        fraud = client.window("fraud", ENV)
        other = client.window("other", ENV)
    assert {(s.slice, s.signal): s.count for s in ranker.series}[("*", "x")] == 3
    assert {(s.slice, s.signal): s.count for s in fraud.series}[("*", "x")] == 2
    assert not other.series


def test_a_single_shadow_slices_other_model_names(
    sidecar: Running,
    servers: Callable[[str, list[Any]], Server],
    callers: Callable[[Server], Caller],
) -> None:
    shadow = make_shadow(sidecar)
    icpt = OIPServerInterceptor(shadow)
    caller = callers(servers("sync", [icpt]))
    one = [("x", "FP32", [1, 1], [[1.0]])]
    caller.stub.ModelInfer(infer_request(one, raw=False, model=MODEL), timeout=10)
    caller.stub.ModelInfer(infer_request(one, raw=False, model="ranker-b"), timeout=10)
    close_after(shadow, 2)
    got = counts(window(sidecar))
    assert got[("*", "x")] == 2
    assert got[("oip_model=ranker-b", "x")] == 1


def test_decode_tensor_reads_every_datatype_like_numpy() -> None:
    rng = np.random.default_rng(3)
    for dt, np_type in _NP.items():
        if dt == "BOOL":
            arr = rng.integers(0, 2, size=(3, 2)).astype(bool)
        elif dt.startswith("FP"):
            arr = rng.normal(size=(3, 2)).astype(np_type)
        else:
            info = np.iinfo(np_type)
            arr = rng.integers(info.min, info.max, size=(3, 2), dtype=np_type, endpoint=True)
        raw = arr.astype(np.dtype(np_type).newbyteorder("<")).tobytes()
        assert decode_tensor(dt, [3, 2], raw=raw) == arr.ravel().tolist(), dt
    bf = np.array([1.5, -2.25, 3e38], dtype=np.float32)
    bf_raw = (bf.view("<u4") >> 16).astype("<u2").tobytes()
    assert decode_tensor("BF16", [3], raw=bf_raw) == pytest.approx(bf.tolist(), rel=1e-2)
    with pytest.raises(TensorError) as err:
        decode_tensor("FP32", [-1, 2], raw=b"")
    assert err.value.reason == "shape_mismatch"


def test_messages_without_raw_fields_are_read_from_typed_contents(ingest: IngestServer) -> None:
    """Older MLServer ``dataplane.proto`` messages have no raw_*_contents fields."""
    shadow = Shadow(
        model=MODEL, environment=ENV, target=ingest.target, flush_interval=0.05, atexit=False
    )
    icpt = OIPServerInterceptor(shadow)
    contents = SimpleNamespace(fp32_contents=[1.0, 2.0, 3.0, 4.0])
    request = SimpleNamespace(
        model_name=MODEL,
        model_version="",
        id="r-1",
        inputs=[SimpleNamespace(name="x", datatype="FP32", shape=[2, 2], contents=contents)],
    )
    response = SimpleNamespace(
        outputs=[
            SimpleNamespace(
                name="y",
                datatype="FP64",
                shape=[2],
                contents=SimpleNamespace(fp64_contents=[3.0, 7.0]),
            )
        ]
    )
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: response)

    class Details(grpc.HandlerCallDetails):
        method = MODEL_INFER
        invocation_metadata = ()

    class Context:
        def code(self) -> None:
            return None

    wrapped = icpt.intercept_service(lambda d: handler, Details())
    assert wrapped is not None and wrapped.unary_unary is not None
    assert wrapped.unary_unary(request, Context()) is response
    close_after(shadow, 2)
    assert icpt.skipped() == dict.fromkeys(icpt.skipped(), 0)
    assert wait_until(lambda: ingest.servicer.records == 2)
    rows = sorted(ingest.servicer.rows(), key=lambda r: r["y"])
    assert [(r["x.0"], r["x.1"], r["y"], r["_id"]) for r in rows] == [
        (1.0, 2.0, 3.0, "r-1"),
        (3.0, 4.0, 7.0, "r-1"),
    ]
