"""Pure ASGI middleware: shadow sampled HTTP requests of an ASGI app (FastAPI, Starlette).

Unsampled requests cost one sampling decision. A sampled request's body is
copied as the app reads it (``receive`` is wrapped, nothing is read ahead and
the app gets the same messages), and the response body as it is sent, both up
to ``max_body`` bytes. When the response is complete the JSON bodies become
features and outputs (:mod:`middleware.http_extract`), the route template a
slice attribute, and the status the error signal. The response is never
changed, and nothing raises into the app.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
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

__all__ = ["ASGIApp", "BaselinedASGIMiddleware", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_perf_ns = time.perf_counter_ns


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _route(scope: Scope) -> str:
    """The route template Starlette/FastAPI matched (``/items/{item_id}``), else the path."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    return str(scope.get("path", ""))


class BaselinedASGIMiddleware:
    """Shadow the sampled HTTP requests of an ASGI app to the sidecar.

    ``features`` / ``outputs`` take the parsed JSON request / response body
    (default :func:`~middleware.http_extract.json_features` and
    :func:`~middleware.http_extract.json_outputs`); ``request_id`` is a
    header name or a function of the lower-cased headers (the id makes the
    sampling decision deterministic); ``paths`` selects the paths (None: all)
    and ``methods`` the methods; bodies past ``max_body`` bytes skip the
    sample. Lifespan and websocket scopes pass through untouched.

    >>> from middleware import Shadow
    >>> async def app(scope, receive, send): ...
    >>> shadow = Shadow(model="ranker", target="127.0.0.1:1", atexit=False)
    >>> app = BaselinedASGIMiddleware(app, shadow=shadow)
    >>> shadow.close(timeout=0.1)

    With FastAPI or Starlette: ``app.add_middleware(BaselinedASGIMiddleware, shadow=shadow)``.
    """

    def __init__(
        self,
        app: ASGIApp,
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
        self._id_key = None if core.id_header is None else core.id_header.encode("latin-1")

    def skipped(self) -> dict[str, int]:
        """Sampled requests skipped, by reason (see ``SKIP_REASONS``)."""
        return self._core.skipped()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self._match
        if (
            scope["type"] != "http"
            or scope["method"] not in self._methods
            or (match is not None and not match(scope["path"]))
        ):
            await self.app(scope, receive, send)
            return
        rid: str | None = None
        key = self._id_key
        if key is not None:
            for name, value in scope["headers"]:
                if name == key:
                    rid = value.decode("latin-1")
                    break
        elif self._core.id_fn is not None:
            rid = self._core.request_id(
                {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            )
        if not self.shadow.decide(rid):
            await self.app(scope, receive, send)
            return
        await self._sampled(scope, receive, send, rid)

    async def _sampled(self, scope: Scope, receive: Receive, send: Send, rid: str | None) -> None:
        core = self._core
        t0 = _perf_ns()
        if not is_json_content_type(_header(scope["headers"], b"content-type")):
            core.skip("request_not_json")
            await self.app(scope, receive, send)
            return
        request = _Body(core.max_body)
        response = _Body(core.max_body)
        status: int | None = None
        response_json = False
        end = 0

        async def tee_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request.add(message.get("body", b""))
                if not message.get("more_body", False):
                    request.complete = True
            return message

        async def tee_send(message: Message) -> None:
            nonlocal status, response_json, end
            kind = message["type"]
            if kind == "http.response.body":
                response.add(message.get("body", b""))
                if not message.get("more_body", False):
                    await send(message)
                    response.complete = True
                    end = _perf_ns()
                    return
            elif kind == "http.response.start":
                status = message["status"]
                response_json = is_json_content_type(
                    _header(message.get("headers", ()), b"content-type")
                )
            await send(message)

        try:
            await self.app(scope, tee_receive, tee_send)
        except Exception as exc:
            core.finish(
                elapsed_ns=(end or _perf_ns()) - t0,
                status=status,
                exc=exc,
                request=request,
                response=response,
                response_json=response_json,
                route=_route(scope),
                request_id=rid,
                traceparent=_header(scope["headers"], b"traceparent"),
            )
            raise
        core.finish(
            elapsed_ns=(end or _perf_ns()) - t0,
            status=status,
            exc=None,
            request=request,
            response=response,
            response_json=response_json,
            route=_route(scope),
            request_id=rid,
            traceparent=_header(scope["headers"], b"traceparent"),
        )
