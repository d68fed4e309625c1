"""BaselinedASGIMiddleware on a real FastAPI app served by a real uvicorn server
(127.0.0.1, port 0), shadowing to a real sidecar (SQLite ``:memory:``); requests
go through ``urllib.request``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from middleware import BaselinedASGIMiddleware, Client, Shadow, sample_by_id
from middleware.asgi import ASGIApp, Message
from tests.middleware.conftest import wait_until
from tests.sidecar.test_server import Running, settings_for

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402

MODEL, ENV = "ranker", "test"


# -- shared helpers (test_wsgi.py imports them) ------------------------------------


@pytest.fixture
def sidecar() -> Iterator[Running]:
    running = Running(settings_for())
    yield running
    running.stop()


def make_shadow(sidecar: Running, **options: Any) -> Shadow:
    return Shadow(
        model=MODEL,
        environment=ENV,
        target=f"127.0.0.1:{sidecar.sidecar.port}",
        flush_interval=0.05,
        atexit=False,
        **options,
    )


def window(sidecar: Running) -> dict[tuple[str, str], Any]:
    """The sidecar's live window as {(slice, signal): SeriesSummary}."""
    with Client(f"127.0.0.1:{sidecar.sidecar.port}") as client:
        view = client.window(MODEL, ENV, top_k=10)
    return {(s.slice, s.signal): s for s in view.series}


def post(
    url: str,
    body: bytes | Iterator[bytes],
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """POST and return (status, headers without Date, body), for errors too."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", content_type)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, got, data = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        status, got, data = err.code, dict(err.headers), err.read()
        err.close()
    got.pop("date", None)
    got.pop("Date", None)
    return status, got, data


def close_after(
    shadow: Shadow, rows: int, skipped: Callable[[], dict[str, int]] | None = None, skips: int = 0
) -> None:
    """Wait until ``rows`` records are buffered (and ``skips`` samples skipped),
    then close the shadow. A sample is recorded after the last byte of the
    response was handed to the server, so the client can be faster."""
    assert wait_until(lambda: shadow.stats().sampled >= rows)
    if skipped is not None:
        assert wait_until(lambda: sum(skipped().values()) >= skips)
    shadow.close(timeout=5)


def counts(series: dict[tuple[str, str], Any]) -> dict[tuple[str, str], int]:
    return {key: s.count for key, s in series.items()}


# -- the app and its server ----------------------------------------------------------


def build_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict/{model_id}")
    async def predict(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"score": body["x"] * 2, "label": "big" if body["x"] > 1 else "small"}

    @app.post("/batch")
    async def batch(body: dict[str, Any]) -> dict[str, Any]:
        return {"predictions": [row["x"] + 1 for row in body["instances"]]}

    @app.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        body = await request.json()

        async def parts() -> AsyncIterator[bytes]:
            yield b'{"predictions": ['
            for i in range(body["n"]):
                await asyncio.sleep(0)
                yield (b"," if i else b"") + str(i / 10).encode()
            yield b"]}"

        return StreamingResponse(parts(), media_type="application/json")

    @app.post("/text")
    async def text(request: Request) -> PlainTextResponse:
        await request.body()
        return PlainTextResponse("ok")

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        raw = await request.body()
        return JSONResponse({"size": len(raw), "pad": "p" * (len(raw) * 5)})

    @app.post("/boom")
    async def boom(body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("model exploded")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


class Served:
    """An ASGI app on a real uvicorn server in a background thread."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="critical", ws="none", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(app: ASGIApp) -> Served:
    return Served(app)


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        s.stop()


def wrapped_app(shadow: Shadow, **options: Any) -> tuple[FastAPI, BaselinedASGIMiddleware]:
    app = build_app()
    app.add_middleware(BaselinedASGIMiddleware, shadow=shadow, **options)
    stack: Any = app.build_middleware_stack()  # to reach the instance for its counters
    app.middleware_stack = stack
    node = stack
    while not isinstance(node, BaselinedASGIMiddleware):
        node = node.app
    return app, node


# -- tests -----------------------------------------------------------------------


def test_sampled_requests_reach_the_sidecar_window_with_names_counts_and_route(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    app, mw = wrapped_app(shadow)
    server = serve(app)
    servers.append(server)
    xs = [0.5, 1.5, 2.5, 3.0]
    for i, x in enumerate(xs):
        status, _, body = post(f"{server.url}/predict/m{i}", json.dumps({"x": x}).encode())
        assert status == 200 and json.loads(body)["score"] == x * 2
    status, _, _ = post(f"{server.url}/batch", b'{"instances": [{"x": 1}, {"x": 2}, {"x": 3}]}')
    assert status == 200
    with urllib.request.urlopen(f"{server.url}/health", timeout=10) as r:  # GET: not shadowed
        assert r.status == 200
    close_after(shadow, 7)

    assert shadow.stats().records_accepted == 7
    assert mw.skipped() == dict.fromkeys(mw.skipped(), 0)
    series = window(sidecar)
    got = counts(series)
    assert got[("*", "x")] == 7
    assert got[("*", "score")] == 4 and got[("*", "prediction")] == 3
    assert got[("*", "label")] == 4  # a string field: categorical
    assert got[("*", "latency_seconds")] == 7
    assert got[("route=/predict/{model_id}", "latency_seconds")] == 4  # the template
    assert got[("route=/batch", "x")] == 3
    assert got[("status_class=2xx", "error")] == 7
    assert series[("*", "error")].max == 0.0
    assert series[("*", "x")].mean == pytest.approx((sum(xs) + 6) / 7)
    assert series[("route=/batch", "prediction")].mean == pytest.approx(3.0)
    assert series[("*", "latency_seconds")].min > 0
    assert not any(k[0] == "route=/health" for k in got)


def test_responses_are_byte_identical_with_and_without_the_middleware(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    bare = serve(build_app())
    app, mw = wrapped_app(shadow)
    shadowed = serve(app)
    servers += [bare, shadowed]
    cases: list[tuple[str, bytes, str]] = [
        ("/predict/a", b'{"x": 2}', "application/json"),
        ("/batch", b'{"instances": [{"x": 1}]}', "application/json"),
        ("/stream", b'{"n": 50}', "application/json"),
        ("/text", b"plain", "text/plain"),
        ("/echo", b'{"x": 1}', "application/json"),
        ("/boom", b'{"x": 1}', "application/json"),
        ("/predict/a", b"{not json", "application/json"),
    ]
    for path, body, ctype in cases:
        want = post(bare.url + path, body, content_type=ctype)
        got = post(shadowed.url + path, body, content_type=ctype)
        assert got == want, path
    close_after(shadow, 54, mw.skipped, 2)


def test_a_streaming_json_response_still_works_and_is_recorded(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    app, mw = wrapped_app(shadow)
    server = serve(app)
    servers.append(server)

    status, _, body = post(f"{server.url}/stream", b'{"n": 40}')
    assert status == 200 and len(json.loads(body)["predictions"]) == 40

    close_after(shadow, 40)
    got = counts(window(sidecar))
    assert got[("*", "prediction")] == 40  # one record per row of the streamed body
    assert got[("*", "n")] == 40
    assert got[("route=/stream", "latency_seconds")] == 40
    assert sum(mw.skipped().values()) == 0


def test_an_app_reading_its_body_in_chunks_sees_every_byte(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    seen: list[int] = []
    inner = FastAPI()

    @inner.post("/read")
    async def read(request: Request) -> JSONResponse:
        chunks = [chunk async for chunk in request.stream()]
        seen.append(len(chunks))
        body = json.loads(b"".join(chunks))
        return JSONResponse({"score": body["x"], "bytes": sum(map(len, chunks))})

    inner.add_middleware(BaselinedASGIMiddleware, shadow=shadow)
    server = serve(inner)
    servers.append(server)
    payload = b'{"x": 7.25, "pad": "' + b"q" * 200_000 + b'"}'
    pieces = iter([payload[i : i + 65_536] for i in range(0, len(payload), 65_536)])
    status, _, body = post(f"{server.url}/read", pieces, headers={"Transfer-Encoding": "chunked"})
    assert status == 200
    assert json.loads(body) == {"score": 7.25, "bytes": len(payload)}
    assert seen[0] > 1  # really delivered in several messages
    close_after(shadow, 1)
    series = window(sidecar)
    assert series[("*", "x")].count == 1 and series[("*", "x")].mean == 7.25
    assert series[("route=/read", "score")].mean == 7.25


def test_non_json_oversized_and_unparsable_bodies_are_skipped_and_counted(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    app, mw = wrapped_app(shadow, max_body=4096)
    server = serve(app)
    servers.append(server)
    assert post(f"{server.url}/text", b"hello", content_type="text/plain")[0] == 200
    assert post(f"{server.url}/text", b'{"x": 1}')[0] == 200  # JSON in, text out
    assert post(f"{server.url}/echo", b'{"x": "' + b"a" * 5000 + b'"}')[0] == 200
    assert post(f"{server.url}/echo", b'{"x": "' + b"a" * 1000 + b'"}')[0] == 200
    assert post(f"{server.url}/predict/a", b"{nope")[0] == 422
    assert post(f"{server.url}/predict/a", b'{"x": 1.0}')[0] == 200  # the one recorded
    close_after(shadow, 1, mw.skipped, 5)
    skipped = mw.skipped()
    assert skipped["request_not_json"] == 1
    assert skipped["response_not_json"] == 1
    assert skipped["request_too_large"] == 1
    assert skipped["response_too_large"] == 1  # 1 KiB in, 5 KiB of padding out
    assert skipped["request_invalid_json"] == 1
    assert shadow.stats().records_accepted == 1
    assert counts(window(sidecar))[("*", "latency_seconds")] == 1


def test_an_app_exception_still_gives_the_servers_500_and_an_error_row(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    app, _ = wrapped_app(shadow)
    server = serve(app)
    servers.append(server)
    status, _, body = post(f"{server.url}/boom", b'{"x": 3}')
    assert status == 500 and body == b"Internal Server Error"
    assert post(f"{server.url}/predict/a", b'{"x": 3}')[0] == 200
    close_after(shadow, 2)
    series = window(sidecar)
    assert series[("*", "error")].count == 2
    assert series[("*", "error")].mean == 0.5
    assert series[("route=/boom", "error")].max == 1.0
    assert series[("status_class=5xx", "x")].count == 1  # its features are kept
    top = {c.value: c.count for c in series[("*", "error_type")].top_values}
    assert top == {"RuntimeError": 1}


def test_sampling_by_request_id_header_is_deterministic(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar, sample_rate=0.5)
    app, _ = wrapped_app(shadow)
    server = serve(app)
    servers.append(server)
    ids = [f"req-{i}" for i in range(40)]
    for rid in ids:
        post(f"{server.url}/predict/a", b'{"x": 1}', headers={"X-Request-ID": rid})
    expected = sum(sample_by_id(rid, 0.5) for rid in ids)
    assert 0 < expected < 40
    close_after(shadow, expected)
    assert counts(window(sidecar))[("*", "x")] == expected
    assert shadow.stats().calls == 40


# -- the ASGI contract, called directly --------------------------------------------


def _drive(app: ASGIApp, scope: dict[str, Any], chunks: list[bytes]) -> list[Message]:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app(scope, receive, send)

    asyncio.run(main())
    return sent


def test_the_app_receives_the_same_messages_and_never_more_than_it_asks_for(
    sidecar: Running,
) -> None:
    received: list[Message] = []

    async def app(scope: Any, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] == "lifespan":
            return
        received.append(await receive())  # reads one chunk only, then answers
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    shadow = make_shadow(sidecar)
    mw = BaselinedASGIMiddleware(app, shadow=shadow)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/p",
        "headers": [(b"content-type", b"application/json")],
    }
    sent = _drive(mw, scope, [b'{"x":', b" 1}"])
    assert received == [{"type": "http.request", "body": b'{"x":', "more_body": True}]
    assert sent[1]["body"] == b"{}"
    _drive(mw, {"type": "lifespan"}, [])  # passes through
    shadow.close(timeout=5)
    assert mw.skipped()["request_incomplete"] == 1
    assert shadow.stats().sampled == 0
