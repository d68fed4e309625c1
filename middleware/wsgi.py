"""WSGI middleware: shadow sampled HTTP requests of a WSGI app (Flask, any PEP 3333 app).

Unsampled requests cost one sampling decision. For a sampled request
``wsgi.input`` is replaced by a tee that copies what the app reads (never
more, never ahead), ``start_response`` is wrapped to see the status, and the
returned iterable is wrapped to copy the body as the server pulls it; the
sample is recorded at ``close()``, after the last byte was sent. The
iterable stays lazy, ``close()`` is passed on, and ``len()`` too when the app's
iterable has one (servers use it to set ``Content-Length``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from middleware.http_extract import (
    DEFAULT_MAX_BODY,
    JsonExtractor,
    PathsSource,
    RequestIdSource,
    _Body,
    _Core,
    is_json_content_type,
)
from middleware.shadow import Shadow

__all__ = ["BaselinedWSGIMiddleware", "StartResponse", "WSGIApp", "WSGIEnviron"]

WSGIEnviron = dict[str, Any]
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

_perf_ns = time.perf_counter_ns


class _TeeInput:
    """``wsgi.input`` that copies what the app reads into a body buffer."""

    __slots__ = ("_body", "_left", "_stream")

    def __init__(self, stream: Any, body: _Body, length: int | None) -> None:
        self._stream = stream
        self._body = body
        self._left = length  # None: unknown (chunked), the end is a read that returns b""
        if length == 0:
            body.complete = True

    def _seen(self, data: bytes, asked: int) -> bytes:
        body = self._body
        if data:
            body.add(data)
            if self._left is not None:
                self._left -= len(data)
                if self._left <= 0:
                    body.complete = True
        elif asked != 0:
            body.complete = True
        return data

    def read(self, *args: Any) -> bytes:
        data = self._stream.read(*args)
        return self._seen(data, args[0] if args and args[0] is not None else -1)

    def readline(self, *args: Any) -> bytes:
        data = self._stream.readline(*args)
        return self._seen(data, args[0] if args and args[0] is not None else -1)

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        for line in lines:
            self._seen(line, -1)
        if not lines:
            self._seen(b"", -1)
        return lines

    def readinto(self, buffer: Any) -> int | None:
        # werkzeug's LimitedStream prefers readinto when the stream has it.
        n: int | None = self._stream.readinto(buffer)
        self._seen(bytes(memoryview(buffer)[: n or 0]), len(buffer))
        return n

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def __getattr__(self, name: str) -> Any:
        if name in _UNTEED_READS:  # callers fall back to read()/readinto()
            raise AttributeError(name)
        return getattr(self._stream, name)


_UNTEED_READS = frozenset({"read1", "readinto1"})


class _Exchange:
    """One sampled request: what the middleware saw of it."""

    __slots__ = (
        "core",
        "environ",
        "exc",
        "recorded",
        "request",
        "response",
        "response_json",
        "rid",
        "route",
        "status",
        "t0",
    )

    def __init__(self, core: _Core, environ: WSGIEnviron, rid: str | None, t0: int) -> None:
        self.core = core
        self.environ = environ
        self.rid = rid
        self.t0 = t0
        self.request = _Body(core.max_body)
        self.response = _Body(core.max_body)
        self.status: int | None = None
        self.response_json = False
        self.exc: BaseException | None = None
        self.route: str | None = None
        self.recorded = False

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: _ExcInfo | None = None,
        /,
        *,
        start_response: StartResponse,
    ) -> Callable[[bytes], object]:
        try:
            # Flask drops its request object from the environ when the request
            # context ends; while start_response runs it is still there.
            self.route = _route(self.environ)
            self.status = int(status[:3])
            ctype = next((v for k, v in headers if k.lower() == "content-type"), None)
            self.response_json = is_json_content_type(ctype)
        except Exception:
            self.status = None
        if exc_info is None:
            write = start_response(status, headers)
        else:
            write = start_response(status, headers, exc_info)
        add = self.response.add

        def tee_write(data: bytes) -> object:  # the legacy write() callable
            add(data)
            return write(data)

        return tee_write

    def record(self) -> None:
        if self.recorded:
            return
        self.recorded = True
        self.core.finish(
            elapsed_ns=_perf_ns() - self.t0,
            status=self.status,
            exc=self.exc,
            request=self.request,
            response=self.response,
            response_json=self.response_json,
            route=self.route or _route(self.environ),
            request_id=self.rid,
            traceparent=self.environ.get("HTTP_TRACEPARENT"),
        )


def _route(environ: WSGIEnviron) -> str:
    """The URL rule Flask matched (``/items/<int:item_id>``, from the request object
    werkzeug keeps in the environ), else the path."""
    request = environ.get("werkzeug.request")
    rule = getattr(getattr(request, "url_rule", None), "rule", None)
    if isinstance(rule, str) and rule:
        return rule
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    try:  # PEP 3333 strings are bytes decoded as latin-1
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return path


class _TeeBody:
    """The app's response iterable, copied as the server iterates it; records at close()."""

    __slots__ = ("_exchange", "_result")

    def __init__(self, result: Iterable[bytes], exchange: _Exchange) -> None:
        self._result = result
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        exchange = self._exchange
        add = exchange.response.add
        try:
            for chunk in self._result:
                add(chunk)
                yield chunk
        except Exception as exc:
            exchange.exc = exc
            raise
        exchange.response.complete = True

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._exchange.record()


class _SizedTeeBody(_TeeBody):
    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]


class BaselinedWSGIMiddleware:
    """Shadow the sampled HTTP requests of a WSGI app to the sidecar.

    The options are those of :class:`~middleware.asgi.BaselinedASGIMiddleware`.
    The route is Flask's matched URL rule (read from the request object
    werkzeug leaves in the environ), else the path.

    >>> from middleware import Shadow
    >>> def app(environ, start_response):
    ...     start_response("200 OK", [("Content-Type", "application/json")])
    ...     return [b"{}"]
    >>> shadow = Shadow(model="ranker", target="127.0.0.1:1", atexit=False)
    >>> app = BaselinedWSGIMiddleware(app, shadow=shadow)
    >>> shadow.close(timeout=0.1)

    With Flask: ``flask_app.wsgi_app = BaselinedWSGIMiddleware(flask_app.wsgi_app, shadow=shadow)``.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        shadow: Shadow,
        features: JsonExtractor | None = None,
        outputs: JsonExtractor | None = None,
        request_id: RequestIdSource = "x-request-id",
        paths: PathsSource = None,
        methods: Iterable[str] = ("POST",),
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.app = app
        self.shadow = shadow
        self._core = core = _Core(shadow, features, outputs, request_id, paths, methods, max_body)
        self._methods = core.methods
        self._match = core.match
        self._id_key = (
            None if core.id_header is None else "HTTP_" + core.id_header.upper().replace("-", "_")
        )

    def skipped(self) -> dict[str, int]:
        """Sampled requests skipped, by reason (see ``SKIP_REASONS``)."""
        return self._core.skipped()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        match = self._match
        if environ.get("REQUEST_METHOD") not in self._methods or (
            match is not None and not match(environ.get("PATH_INFO", ""))
        ):
            return self.app(environ, start_response)
        rid: str | None = None
        if self._id_key is not None:
            rid = environ.get(self._id_key) or None
        elif self._core.id_fn is not None:
            rid = self._core.request_id(_headers(environ))
        if not self.shadow.decide(rid):
            return self.app(environ, start_response)
        return self._sampled(environ, start_response, rid)

    def _sampled(
        self, environ: WSGIEnviron, start_response: StartResponse, rid: str | None
    ) -> Iterable[bytes]:
        core = self._core
        t0 = _perf_ns()
        if not is_json_content_type(environ.get("CONTENT_TYPE")):
            core.skip("request_not_json")
            return self.app(environ, start_response)
        exchange = _Exchange(core, environ, rid, t0)
        try:
            length: int | None = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            length = None
        if environ.get("wsgi.input_terminated"):
            length = None  # the server ends the stream itself (chunked requests)
        environ["wsgi.input"] = _TeeInput(environ["wsgi.input"], exchange.request, length)

        def tee_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            return exchange.start_response(status, headers, exc_info, start_response=start_response)

        try:
            result = self.app(environ, tee_start_response)
        except Exception as exc:
            exchange.exc = exc
            exchange.record()
            raise
        if hasattr(result, "__len__"):
            return _SizedTeeBody(result, exchange)
        return _TeeBody(result, exchange)


def _headers(environ: WSGIEnviron) -> dict[str, str]:
    headers = {
        k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers
