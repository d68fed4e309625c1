"""The sidecar's HTTP listener on 127.0.0.1 port 0, called with ``urllib.request``:
health, metrics, the size cap, bind errors, and its life inside a real Sidecar."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from sidecar.http import KSERVE_PATH, HttpListener, ListenError
from sidecar.kserve import REQUEST_TYPE, KServeIngest
from sidecar.settings import Settings
from sidecar.stores.sqlite import SQLiteStore
from sidecar.windows import Windows
from tests.sidecar.test_server import Running, settings_for

_T = TypeVar("_T")


class Loop:
    """An event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def ingest() -> KServeIngest:
    settings = Settings(instance="t")
    return KServeIngest(Windows(settings, SQLiteStore()), settings)


def start(loop: Loop, **options: Any) -> HttpListener:
    async def make() -> HttpListener:
        listener = HttpListener("127.0.0.1:0", **{"kserve": None, **options})
        await listener.start()
        return listener

    return loop.run(make())


def call(
    url: str, body: bytes | Iterator[bytes] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """(status, content type, body) for any status."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read()


def test_healthz_is_ok_until_stopping(loop: Loop) -> None:
    stopping = threading.Event()
    listener = start(loop, stopping=stopping.is_set)
    base = f"http://{listener.address}"
    assert call(base + "/healthz")[::2] == (200, b"ok")
    stopping.set()
    assert call(base + "/healthz")[::2] == (503, b"stopping")
    loop.run(listener.stop())
    with pytest.raises(urllib.error.URLError):
        call(base + "/healthz")


def test_metrics_come_from_the_injected_callable_or_404(loop: Loop) -> None:
    exposition = b"# TYPE baselined_samples_total counter\nbaselined_samples_total 3\n"
    content_type = "text/plain; version=0.0.4; charset=utf-8"
    served = start(loop, metrics_text=lambda: (exposition, content_type))
    bare = start(loop)
    try:
        assert call(f"http://{served.address}/metrics") == (200, content_type, exposition)
        assert call(f"http://{bare.address}/metrics")[0] == 404
    finally:
        loop.run(served.stop())
        loop.run(bare.stop())


def test_bodies_past_the_cap_get_413_and_are_counted(loop: Loop) -> None:
    kserve = ingest()
    listener = start(loop, kserve=kserve, max_body=1000)
    target = f"http://{listener.address}{KSERVE_PATH}"
    headers = {"Content-Type": "application/json", "Ce-Id": "big", "Ce-Type": REQUEST_TYPE}
    big = json.dumps({"instances": [[0.5] * 400]}).encode()
    try:
        status, content_type, body = call(target, big, headers)
        assert (status, content_type.split(";")[0]) == (413, "application/json")
        assert json.loads(body)["error"] == "too_large"
        # Chunked (no Content-Length): aiohttp's own cap answers, still with our reason.
        status, _, body = call(target, iter([big[:600], big[600:]]), headers)
        assert (status, json.loads(body)["error"]) == (413, "too_large")
        assert kserve.rejections() == {"too_large": 2}
        assert kserve.stats()["pending"] == 0
    finally:
        loop.run(listener.stop())


def test_kserve_is_404_without_an_ingest_and_other_methods_are_405(loop: Loop) -> None:
    listener = start(loop)
    try:
        assert call(f"http://{listener.address}{KSERVE_PATH}", b"{}")[0] == 404
        assert call(f"http://{listener.address}{KSERVE_PATH}")[0] == 405  # GET
    finally:
        loop.run(listener.stop())


def test_bad_addresses_and_ports_in_use_raise_listen_error(loop: Loop) -> None:
    for address in ("8080", "localhost:http", ":8080"):
        with pytest.raises(ListenError, match="not host:port"):
            HttpListener(address, kserve=None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = HttpListener(f"127.0.0.1:{port}", kserve=None)
        with pytest.raises(ListenError, match="--http-listen"):
            loop.run(listener.start())


def test_stop_ingests_the_events_still_waiting_for_their_pair(loop: Loop) -> None:
    kserve = ingest()
    listener = start(loop, kserve=kserve)
    headers = {
        "Content-Type": "application/json",
        "Ce-Id": "w-1",
        "Ce-Type": REQUEST_TYPE,
        "Ce-Source": "/iris",
        "Ce-Specversion": "1.0",
    }
    status, _, body = call(
        f"http://{listener.address}{KSERVE_PATH}", b'{"instances": [[1, 2]]}', headers
    )
    assert (status, json.loads(body)["status"]) == (200, "pending")
    loop.run(listener.stop())
    stats = kserve.stats()
    assert (stats["pending"], stats["requests_unpaired"], stats["rows_ingested"]) == (0, 1, 1)


# -- inside the sidecar ------------------------------------------------------------------


def test_sidecar_serves_http_on_its_own_port_until_it_stops() -> None:
    running = Running(settings_for(http_listen="127.0.0.1:0"))
    http = running.sidecar.http
    assert http is not None and http.port not in (0, running.sidecar.port)
    base = f"http://127.0.0.1:{http.port}"
    try:
        assert call(base + "/healthz")[::2] == (200, b"ok")
    finally:
        running.stop()
    with pytest.raises(urllib.error.URLError):
        call(base + "/healthz")


def test_empty_http_listen_turns_the_listener_off() -> None:
    running = Running(settings_for(http_listen=""))
    try:
        assert running.sidecar.http is None
    finally:
        running.stop()
