"""Added cost of the ASGI and WSGI middleware per request, against the bare app in the same run.

Run: ``python load_tests/bench_http_middleware.py [--target host:port] [--requests N] [--repeats R]``

The apps are called directly (the ASGI app with synthetic ``receive``/``send``
on one event loop, the WSGI app with an environ and ``start_response``), so the
figures are the middleware's, not the HTTP stack's. Each app reads a JSON body
of 20 features and answers ``{"score": x}``. Variants, each the median of
``--repeats`` runs of ``--requests`` requests:

- bare: the app alone;
- unsampled: wrapped, sample rate 0 (the sampling decision only);
- sampled: wrapped, rate 1.0 (body tees, JSON parsing of both bodies, extraction,
  route and status slices, the copy into the buffer; the shipper encodes in this process).

Without ``--target`` a real gRPC Ingest server in a child process receives the batches.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (_ROOT, os.path.join(_ROOT, "proto"), os.path.dirname(os.path.abspath(__file__))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench_middleware import drain, start_sink  # noqa: E402

import middleware  # noqa: E402
from middleware.asgi import ASGIApp, Message, Receive, Scope, Send  # noqa: E402
from middleware.wsgi import StartResponse, WSGIApp  # noqa: E402

BODY = json.dumps({f"f{i:02d}": float(i) * 0.5 for i in range(20)}).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
RESPONSE_HEADERS = [(b"content-type", b"application/json")]


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The bare model server: reads the JSON body, answers a score."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    score = json.loads(body)["f01"] * 0.25
    await send({"type": "http.response.start", "status": 200, "headers": RESPONSE_HEADERS})
    await send({"type": "http.response.body", "body": json.dumps({"score": score}).encode()})


def wsgi_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The bare model server, WSGI."""
    length = int(environ["CONTENT_LENGTH"])
    score = json.loads(environ["wsgi.input"].read(length))["f01"] * 0.25
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"score": score}).encode()]


def run_asgi(app: ASGIApp, requests: int) -> float:
    """Nanoseconds per request."""
    scope_base = {"type": "http", "method": "POST", "path": "/predict", "headers": HEADERS}
    request_message: Message = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> Message:
        return request_message

    async def send(message: Message) -> None:
        return None

    async def loop() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(requests):
            await app(dict(scope_base), receive, send)
        return (time.perf_counter_ns() - t0) / requests

    return _quiet(lambda: asyncio.run(loop()))


def run_wsgi(app: WSGIApp, requests: int) -> float:
    """Nanoseconds per request."""

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def loop() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(requests):
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/predict",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(BODY)),
                "wsgi.input": io.BytesIO(BODY),
            }
            result = app(environ, start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return (time.perf_counter_ns() - t0) / requests

    return _quiet(loop)


def _quiet(fn: Callable[[], float]) -> float:
    gc_was = gc.isenabled()
    gc.disable()
    try:
        return fn()
    finally:
        if gc_was:
            gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target", help="a running sidecar (default: a counting sink)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    proc = None
    target = args.target
    if target is None:
        proc, target = start_sink()
    try:
        shadows = {
            rate: middleware.Shadow(
                model="bench", target=target, sample_rate=rate, atexit=False, queue_batches=256
            )
            for rate in (0.0, 1.0)
        }
        variants: list[tuple[str, str, Callable[[], float]]] = []
        n = args.requests
        for name, rate in (("unsampled", 0.0), ("sampled", 1.0)):
            amw = middleware.BaselinedASGIMiddleware(asgi_app, shadow=shadows[rate])
            wmw = middleware.BaselinedWSGIMiddleware(wsgi_app, shadow=shadows[rate])
            variants.append(("asgi", name, lambda a=amw: run_asgi(a, n)))  # type: ignore[misc]
            variants.append(("wsgi", name, lambda w=wmw: run_wsgi(w, n)))  # type: ignore[misc]
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):
            for kind, bare in (
                ("asgi", lambda: run_asgi(asgi_app, n)),
                ("wsgi", lambda: run_wsgi(wsgi_app, n)),
            ):
                results.setdefault((kind, "bare"), []).append(bare())
            for kind, name, fn in variants:
                results.setdefault((kind, name), []).append(fn())
                drain(shadows[1.0])
        print(f"target {target}; {n} requests per run, median of {args.repeats} runs")
        print(f"{'variant':18} {'us/request':>10} {'added us':>9} {'ratio':>7}")
        for kind in ("asgi", "wsgi"):
            bare_ns = statistics.median(results[(kind, "bare")])
            for name in ("bare", "unsampled", "sampled"):
                ns = statistics.median(results[(kind, name)])
                print(
                    f"{kind + ' ' + name:18} {ns / 1000:10.2f} {(ns - bare_ns) / 1000:9.2f}"
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
        if proc is not None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
