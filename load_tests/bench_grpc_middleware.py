"""Added cost of the OIP gRPC interceptors per ModelInfer call, against the bare servicer in the same run.

Run: ``python load_tests/bench_grpc_middleware.py [--target host:port] [--requests N] [--repeats R]``

Two measurements, each the median of ``--repeats`` interleaved runs:

- **served**: real ``grpc.server`` and ``grpc.aio.server`` servers on 127.0.0.1
  (bare; with a pass-through interceptor, the cost gRPC itself adds for having
  an interceptor; with the OIP interceptor at sample rate 0; at rate 1), called through
  a real stub from this process (``--requests`` calls per run). This is what a
  client sees, network stack and protobuf included, so the difference is noisy.
- **behavior**: the servicer's ``ModelInfer`` called in-process, bare and through
  the wrapped handler the sync interceptor builds (``--requests`` x 10 calls
  per run): the interceptor's own cost without the transport.

Payloads: ``typed 1x16`` (one row, FP32 typed contents) and ``raw 32x16`` (a
batch of 32 rows, FP32 ``raw_input_contents``); the model answers the row sums
(FP32 ``[b, 1]``) the same way. Sampled means every row is decoded and buffered
(the shipper encodes and sends in this process). Without ``--target`` a real
gRPC Ingest server in a child process receives the batches.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (_ROOT, os.path.join(_ROOT, "proto"), os.path.dirname(os.path.abspath(__file__))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc  # noqa: E402
import grpc.aio  # noqa: E402
from bench_middleware import drain, start_sink  # noqa: E402
from inference.v2 import grpc_predict_v2_pb2 as oip  # noqa: E402
from inference.v2 import grpc_predict_v2_pb2_grpc as oip_grpc  # noqa: E402

import middleware  # noqa: E402

WIDTH = 16


def make_request(rows: int, raw: bool) -> oip.ModelInferRequest:
    """A ModelInferRequest of ``rows`` x WIDTH FP32 values."""
    values = [float(r * WIDTH + j) * 0.01 for r in range(rows) for j in range(WIDTH)]
    req = oip.ModelInferRequest(model_name="bench", id="")
    t = req.inputs.add(name="x", datatype="FP32", shape=[rows, WIDTH])
    if raw:
        req.raw_input_contents.append(struct.pack(f"<{len(values)}f", *values))
    else:
        t.contents.fp32_contents.extend(values)
    return req


def model_infer(request: Any, context: Any) -> oip.ModelInferResponse:
    """The bare model: FP32 row sums, raw when the request was raw."""
    t = request.inputs[0]
    rows, width = t.shape[0], t.shape[1]
    if request.raw_input_contents:
        flat = struct.unpack(f"<{rows * width}f", request.raw_input_contents[0])
    else:
        flat = tuple(t.contents.fp32_contents)
    sums = [sum(flat[r * width : (r + 1) * width]) for r in range(rows)]
    resp = oip.ModelInferResponse(model_name=request.model_name, id=request.id)
    out = resp.outputs.add(name="sum", datatype="FP32", shape=[rows, 1])
    if request.raw_input_contents:
        resp.raw_output_contents.append(struct.pack(f"<{rows}f", *sums))
    else:
        out.contents.fp32_contents.extend(sums)
    return resp


class Servicer(oip_grpc.GRPCInferenceServiceServicer):
    def ModelInfer(self, request: Any, context: Any) -> oip.ModelInferResponse:
        return model_infer(request, context)


class AioServicer(oip_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request: Any, context: Any) -> oip.ModelInferResponse:
        return model_infer(request, context)


class Served:
    """A sync or asyncio server (the latter on its own loop thread) and a stub to it."""

    def __init__(self, kind: str, interceptors: list[Any]) -> None:
        self.kind = kind
        self.loop: asyncio.AbstractEventLoop | None = None
        if kind == "sync":
            self.server: Any = grpc.server(
                futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors
            )
            oip_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), self.server)  # type: ignore[no-untyped-call]
            port = self.server.add_insecure_port("127.0.0.1:0")
            self.server.start()
        else:
            loop = self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=loop.run_forever, daemon=True)
            self.thread.start()

            async def start() -> tuple[Any, int]:
                server = grpc.aio.server(interceptors=interceptors)
                oip_grpc.add_GRPCInferenceServiceServicer_to_server(AioServicer(), server)  # type: ignore[no-untyped-call]
                p = server.add_insecure_port("127.0.0.1:0")
                await server.start()
                return server, p

            self.server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = oip_grpc.GRPCInferenceServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def run(self, request: oip.ModelInferRequest, n: int) -> float:
        """Nanoseconds per call."""
        call = self.stub.ModelInfer
        call(request)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            call(request)
        return (time.perf_counter_ns() - t0) / n

    def stop(self) -> None:
        self.channel.close()
        if self.loop is None:
            self.server.stop(None).wait()
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class PassThrough(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """A control: an interceptor that returns the continuation's handler (gRPC's own cost)."""

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        return continuation(handler_call_details)


class AioPassThrough(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """The asyncio control."""

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        return await continuation(handler_call_details)


class _Context:
    """The one ServicerContext method the interceptor reads, for in-process calls."""

    def code(self) -> None:
        return None


def run_behavior(fn: Callable[[Any, Any], Any], request: Any, n: int) -> float:
    """Nanoseconds per in-process call of a unary-unary behavior."""
    ctx = _Context()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn(request, ctx)
        return (time.perf_counter_ns() - t0) / n
    finally:
        if gc_was:
            gc.enable()


def wrapped_behavior(icpt: middleware.OIPServerInterceptor) -> Callable[[Any, Any], Any]:
    """The ModelInfer behavior the sync interceptor builds around the bare one."""
    handler = grpc.unary_unary_rpc_method_handler(model_infer)

    class Details(grpc.HandlerCallDetails):
        method = "/inference.GRPCInferenceService/ModelInfer"
        invocation_metadata = ()

    wrapped = icpt.intercept_service(lambda d: handler, Details())
    assert wrapped is not None and wrapped.unary_unary is not None
    return wrapped.unary_unary


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target", help="a running sidecar (default: a counting sink)")
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    proc = None
    target = args.target
    if target is None:
        proc, target = start_sink()
    served: list[Served] = []
    try:
        shadows = {
            rate: middleware.Shadow(
                model="bench", target=target, sample_rate=rate, atexit=False, queue_batches=1024
            )
            for rate in (0.0, 1.0)
        }
        payloads = {"typed 1x16": make_request(1, False), "raw 32x16": make_request(32, True)}
        variants: dict[str, float | None] = {
            "bare": None,
            "pass-through": None,
            "unsampled": 0.0,
            "sampled": 1.0,
        }
        servers: dict[tuple[str, str], Served] = {}
        for kind in ("sync", "aio"):
            for name, rate in variants.items():
                if name == "bare":
                    icpts: list[Any] = []
                elif rate is None:
                    icpts = [PassThrough() if kind == "sync" else AioPassThrough()]
                elif kind == "sync":
                    icpts = [middleware.OIPServerInterceptor(shadows[rate])]
                else:
                    icpts = [middleware.AioOIPServerInterceptor(shadows[rate])]
                servers[(kind, name)] = s = Served(kind, icpts)
                served.append(s)
        behaviors: dict[str, Callable[[Any, Any], Any]] = {"bare": model_infer}
        for name in ("unsampled", "sampled"):
            rate = variants[name]
            assert rate is not None
            behaviors[name] = wrapped_behavior(middleware.OIPServerInterceptor(shadows[rate]))

        n = args.requests
        results: dict[tuple[str, str, str], list[float]] = {}
        for _ in range(args.repeats):
            for payload, request in payloads.items():
                for (kind, name), server in servers.items():
                    results.setdefault((kind, payload, name), []).append(server.run(request, n))
                    if name == "sampled":
                        drain(shadows[1.0])
                for name, fn in behaviors.items():
                    key = ("behavior", payload, name)
                    results.setdefault(key, []).append(run_behavior(fn, request, n * 10))
                    if name == "sampled":
                        drain(shadows[1.0])

        print(f"target {target}; {n} calls per served run, median of {args.repeats} runs")
        print(f"{'variant':36} {'us/call':>9} {'added us':>9} {'ratio':>7}")
        for kind in ("sync", "aio", "behavior"):
            for payload in payloads:
                bare_ns = statistics.median(results[(kind, payload, "bare")])
                for name in variants:
                    if (kind, payload, name) not in results:
                        continue
                    ns = statistics.median(results[(kind, payload, name)])
                    label = f"{kind} {payload} {name}"
                    print(
                        f"{label:36} {ns / 1000:9.2f} {(ns - bare_ns) / 1000:9.2f}"
                        f" {ns / bare_ns:7.2f}"
                    )
        for shadow in shadows.values():
            shadow.close(timeout=10)
        stats = shadows[1.0].stats()
        print()
        print(
            f"sampled shadow: {stats.sampled} records, {stats.records_accepted} accepted,"
            f" dropped {stats.records_dropped}"
        )
    finally:
        for s in served:
            s.stop()
        if proc is not None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
