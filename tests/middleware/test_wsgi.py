"""BaselinedWSGIMiddleware on a real Flask app served by werkzeug's server
(127.0.0.1, port 0), shadowing to a real sidecar (SQLite ``:memory:``); requests
go through ``urllib.request``."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from middleware import BaselinedWSGIMiddleware, Shadow
from middleware.wsgi import WSGIApp
from tests.middleware.test_asgi import close_after, counts, make_shadow, post, sidecar, window
from tests.sidecar.test_server import Running

flask = pytest.importorskip("flask")
from flask import Flask, Response, request  # noqa: E402
from werkzeug.serving import BaseWSGIServer, make_server  # noqa: E402

__all__ = ["sidecar"]  # the fixture, imported


def build_app() -> Flask:
    app = Flask("shadowed")

    @app.post("/predict/<int:model_id>")
    def predict(model_id: int) -> dict[str, Any]:
        body = request.get_json()
        return {"score": body["x"] * 2, "label": "big" if body["x"] > 1 else "small"}

    @app.post("/batch")
    def batch() -> dict[str, Any]:
        rows = request.get_json()["instances"]
        return {"predictions": [row["x"] + 1 for row in rows]}

    @app.post("/read")
    def read() -> dict[str, Any]:
        chunks = []
        while True:  # the app reads its body in chunks itself
            chunk = request.stream.read(4096)
            if not chunk:
                break
            chunks.append(chunk)
        body = json.loads(b"".join(chunks))
        return {"score": body["x"], "chunks": len(chunks)}

    @app.post("/stream")
    def stream() -> Response:
        n = request.get_json()["n"]

        def parts() -> Iterator[bytes]:
            yield b'{"predictions": ['
            for i in range(n):
                yield (b"," if i else b"") + str(i / 10).encode()
            yield b"]}"

        return Response(parts(), mimetype="application/json")

    @app.post("/text")
    def text() -> Response:
        request.get_data()
        return Response("ok", mimetype="text/plain")

    @app.post("/echo")
    def echo() -> dict[str, Any]:
        raw = request.get_data()
        return {"size": len(raw), "pad": "p" * (len(raw) * 5)}

    @app.post("/boom")
    def boom() -> dict[str, Any]:
        request.get_json()
        raise RuntimeError("model exploded")

    return app


class Served:
    """A WSGI app on werkzeug's threaded server in a background thread."""

    def __init__(self, app: WSGIApp) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        s.stop()


def shadowed(
    shadow: Shadow, servers: list[Served], **options: Any
) -> tuple[Served, BaselinedWSGIMiddleware]:
    app = build_app()
    mw = BaselinedWSGIMiddleware(app.wsgi_app, shadow=shadow, **options)
    app.wsgi_app = mw  # type: ignore[method-assign]
    server = Served(app)
    servers.append(server)
    return server, mw


def test_sampled_requests_reach_the_sidecar_window_with_names_counts_and_route(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    server, mw = shadowed(shadow, servers)
    xs = [0.5, 1.5, 2.5, 3.0]
    for i, x in enumerate(xs):
        status, _, body = post(f"{server.url}/predict/{i}", json.dumps({"x": x}).encode())
        assert status == 200 and json.loads(body)["score"] == x * 2
    status, _, _ = post(f"{server.url}/batch", b'{"instances": [{"x": 1}, {"x": 2}, {"x": 3}]}')
    assert status == 200
    close_after(shadow, 7)

    assert shadow.stats().records_accepted == 7
    assert sum(mw.skipped().values()) == 0
    series = window(sidecar)
    got = counts(series)
    assert got[("*", "x")] == 7
    assert got[("*", "score")] == 4 and got[("*", "prediction")] == 3
    assert got[("*", "label")] == 4
    assert got[("route=/predict/<int:model_id>", "latency_seconds")] == 4  # Flask's rule
    assert got[("route=/batch", "x")] == 3
    assert got[("status_class=2xx", "error")] == 7
    assert series[("*", "error")].max == 0.0
    assert series[("*", "x")].mean == pytest.approx((sum(xs) + 6) / 7)
    assert series[("*", "latency_seconds")].min > 0


def test_responses_are_byte_identical_with_and_without_the_middleware(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    bare = Served(build_app())
    servers.append(bare)
    server, mw = shadowed(shadow, servers)
    cases: list[tuple[str, bytes, str]] = [
        ("/predict/1", b'{"x": 2}', "application/json"),
        ("/batch", b'{"instances": [{"x": 1}]}', "application/json"),
        ("/stream", b'{"n": 50}', "application/json"),
        ("/text", b"plain", "text/plain"),
        ("/echo", b'{"x": 1}', "application/json"),
        ("/boom", b'{"x": 1}', "application/json"),
        ("/batch", b"{not json", "application/json"),
    ]
    for path, body, ctype in cases:
        want = post(bare.url + path, body, content_type=ctype)
        got = post(server.url + path, body, content_type=ctype)
        assert got == want, path
    close_after(shadow, 54, mw.skipped, 2)


def test_streaming_response_and_chunked_body_reads_still_work_and_are_recorded(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    server, mw = shadowed(shadow, servers)
    status, _, body = post(f"{server.url}/stream", b'{"n": 40}')
    assert status == 200 and len(json.loads(body)["predictions"]) == 40
    payload = b'{"x": 7.25, "pad": "' + b"q" * 50_000 + b'"}'
    pieces = iter([payload[i : i + 8192] for i in range(0, len(payload), 8192)])
    status, _, body = post(f"{server.url}/read", pieces, headers={"Transfer-Encoding": "chunked"})
    assert status == 200
    assert json.loads(body)["score"] == 7.25 and json.loads(body)["chunks"] > 1
    close_after(shadow, 41)
    series = window(sidecar)
    got = counts(series)
    assert got[("route=/stream", "prediction")] == 40
    assert series[("route=/read", "x")].mean == 7.25
    assert sum(mw.skipped().values()) == 0


def test_non_json_oversized_and_unparsable_bodies_are_skipped_and_counted(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    server, mw = shadowed(shadow, servers, max_body=4096)
    assert post(f"{server.url}/text", b"hello", content_type="text/plain")[0] == 200
    assert post(f"{server.url}/text", b'{"x": 1}')[0] == 200
    assert post(f"{server.url}/echo", b'{"x": "' + b"a" * 5000 + b'"}')[0] == 200
    assert post(f"{server.url}/echo", b'{"x": "' + b"a" * 1000 + b'"}')[0] == 200
    assert post(f"{server.url}/batch", b"{nope")[0] == 400
    assert post(f"{server.url}/predict/1", b'{"x": 1.0}')[0] == 200
    close_after(shadow, 1, mw.skipped, 5)
    skipped = mw.skipped()
    assert skipped["request_not_json"] == 1
    assert skipped["response_not_json"] == 1
    assert skipped["request_too_large"] == 1
    assert skipped["response_too_large"] == 1
    assert skipped["request_invalid_json"] == 1
    assert shadow.stats().records_accepted == 1
    assert counts(window(sidecar))[("*", "latency_seconds")] == 1


def test_an_app_exception_gives_flasks_500_and_an_error_row(
    sidecar: Running, servers: list[Served]
) -> None:
    shadow = make_shadow(sidecar)
    server, _ = shadowed(shadow, servers)
    status, _, body = post(f"{server.url}/boom", b'{"x": 3}')
    assert status == 500 and b"Internal Server Error" in body
    assert post(f"{server.url}/predict/1", b'{"x": 3}')[0] == 200
    close_after(shadow, 2)
    series = window(sidecar)
    assert series[("*", "error")].count == 2
    assert series[("*", "error")].mean == 0.5
    assert series[("route=/boom", "error")].max == 1.0
    assert series[("status_class=5xx", "x")].count == 1
    top = {c.value: c.count for c in series[("*", "error_type")].top_values}
    assert top == {"http_5xx": 1}


# -- the WSGI contract, called directly ----------------------------------------------


class _Result:
    """An app iterable that records how far it was pulled and whether it was closed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk

    def close(self) -> None:
        self.closed += 1


def test_the_body_stays_lazy_close_is_passed_on_and_the_app_raising_records_an_error(
    sidecar: Running,
) -> None:
    result = _Result([b'{"score":', b" 0.5}"])
    read: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        read.append(environ["wsgi.input"].read(3))  # less than the whole body
        start_response("200 OK", [("Content-Type", "application/json")])
        return result

    def failing(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["wsgi.input"].read()
        raise ValueError("bad input")

    shadow = make_shadow(sidecar)
    mw = BaselinedWSGIMiddleware(app, shadow=shadow)
    body = b'{"x": 1}'
    stream = io.BytesIO(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/p",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": stream,
    }
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    out = mw(environ, start_response)
    assert read == [b'{"x'] and stream.tell() == 3  # nothing read ahead
    assert result.pulled == 0  # lazy until the server iterates
    it = iter(out)
    assert next(it) == b'{"score":' and result.pulled == 1
    assert list(it) == [b" 0.5}"]
    out.close()  # type: ignore[attr-defined]
    out.close()  # type: ignore[attr-defined]
    assert result.closed == 2 and statuses == ["200 OK"]
    assert mw.skipped()["request_incomplete"] == 1  # the app did not read it all

    failing_mw = BaselinedWSGIMiddleware(failing, shadow=shadow)
    environ["wsgi.input"] = io.BytesIO(body)
    with pytest.raises(ValueError, match="bad input"):
        failing_mw(environ, start_response)
    close_after(shadow, 1)
    series = window(sidecar)
    top = {c.value: c.count for c in series[("*", "error_type")].top_values}
    assert top == {"ValueError": 1}
    assert series[("route=/p", "x")].mean == 1.0
