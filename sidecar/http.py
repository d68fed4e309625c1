"""The sidecar's HTTP listener (aiohttp): KServe payload logging, health, metrics.

Routes:

* ``POST /v1/kserve``: KServe InferenceLogger CloudEvents (:mod:`sidecar.kserve`);
  200 with ``{"status": ..., "rows": n}``, 400 with ``{"error": reason,
  "message": ...}`` for a malformed event, 413 past the size cap, 503 while
  the sidecar stops.
* ``POST /v1/events``: a change event as a CloudEvent 1.0, binary or structured
  mode (:func:`sidecar.events.parse_cloudevent`); 201 with ``{"id": ...}``,
  400 with ``{"error": reason, "message": ...}`` and nothing stored. Idempotent:
  a repeat of the same ``(source, id)`` answers 200 with the stored event and
  stores nothing; with different content, 409 ``duplicate_id_conflict``.
* ``GET /healthz``: 200 ``ok``; 200 ``degraded: ...`` (why) while the store is
  unreachable (ingest goes on into memory); 503 ``stopping`` once the sidecar stops.
* ``GET /metrics``: the text of the injected ``metrics_text`` callable
  (``(body, content_type)``, Prometheus exposition); 404 when there is none.

With an :class:`~sidecar.auth.AuthInterceptor` (the sidecar's, when principals
or mTLS are configured) every route but ``/healthz`` needs the role
:data:`HTTP_REQUIRED_ROLE` names, from ``Authorization: Bearer <token>`` or the
mTLS client certificate's common name: 401 for no, unknown, expired or
malformed credentials, 403 for a missing role, with ``{"error": rule,
"message": ...}``; refusals go to the interceptor's ``on_denied`` hook (the
audit log). ``kserve_allow_unauthenticated`` lets ``/v1/kserve`` in without
credentials (KServe's logger cannot send a token).

>>> # listener = HttpListener("127.0.0.1:0", kserve=ingest)
>>> # await listener.start(); listener.port; await listener.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sidecar.auth import AuthDenied, AuthInterceptor, Principal, using_principal
from sidecar.errors import BaselinedError, InvalidInput, TooLarge
from sidecar.events import CloudEventConflict, EventLog
from sidecar.kserve import BadEvent, KServeIngest

__all__ = [
    "EVENTS_PATH",
    "HTTP_REQUIRED_ROLE",
    "KSERVE_PATH",
    "HttpListener",
    "ListenError",
    "MetricsText",
    "build_app",
]

log = logging.getLogger(__name__)

KSERVE_PATH = "/v1/kserve"
"""Where KServe's ``logger.url`` points: ``http://<sidecar>:<port>/v1/kserve``."""

EVENTS_PATH = "/v1/events"
"""Where CI/CD posts change events as CloudEvents: ``http://<sidecar>:<port>/v1/events``."""

HTTP_REQUIRED_ROLE: dict[tuple[str, str], str] = {
    ("POST", EVENTS_PATH): "admin",
    ("POST", KSERVE_PATH): "ingest",
    ("GET", "/metrics"): "read",
}
"""The role each HTTP route needs when authentication is on; ``/healthz`` is open."""

#: Returns the metrics exposition and its content type.
MetricsText = Callable[[], tuple[bytes, str]]

_KSERVE: web.AppKey[KServeIngest | None] = web.AppKey("kserve", KServeIngest)
_METRICS: web.AppKey[MetricsText | None] = web.AppKey("metrics")
_EVENTS: web.AppKey[EventLog | None] = web.AppKey("events", EventLog)
_STOPPING: web.AppKey[Callable[[], bool]] = web.AppKey("stopping")
_DEGRADED: web.AppKey[Callable[[], str | None]] = web.AppKey("degraded")
_MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
_AUTH: web.AppKey[AuthInterceptor | None] = web.AppKey("auth", AuthInterceptor)
_KSERVE_OPEN: web.AppKey[bool] = web.AppKey("kserve_open", bool)


class ListenError(BaselinedError):
    """The HTTP listener could not bind its address (in use, or not ``host:port``)."""

    grpc_code = "UNAVAILABLE"


def _problem(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": reason, "message": message}, status=status)


def _peer_common_name(request: web.Request) -> str | None:
    """The common name of the mTLS client certificate, if the connection has one."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


@web.middleware
async def _authorize(request: web.Request, handler: Any) -> web.StreamResponse:
    auth = request.app[_AUTH]
    method = "GET" if request.method == "HEAD" else request.method
    role = HTTP_REQUIRED_ROLE.get((method, request.path))
    if auth is None or role is None:
        result: web.StreamResponse = await handler(request)
        return result
    what = f"{method} {request.path}"
    header = request.headers.get("Authorization")
    metadata = [("authorization", header)] if header is not None else []
    cn = _peer_common_name(request)
    principal: Principal | None = None
    if not (request.app[_KSERVE_OPEN] and request.path == KSERVE_PATH and not metadata and not cn):
        try:
            principal = auth.check_role(role, what, metadata, cn)
        except AuthDenied as denied:
            await auth.report_denied(denied.principal, what, denied, peer=request.remote or "")
            status = 403 if denied.grpc_code == "PERMISSION_DENIED" else 401
            response = _problem(status, denied.rule, str(denied))
            if status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="baselined"'
            return response
    with using_principal(principal):
        result = await handler(request)
    return result


async def _kserve(request: web.Request) -> web.Response:
    ingest = request.app[_KSERVE]
    if ingest is None:
        return _problem(404, "disabled", "KServe ingest is not enabled on this sidecar")
    if request.app[_STOPPING]():
        return _problem(503, "stopping", "the sidecar is stopping; send to another replica")
    cap = request.app[_MAX_BODY]
    length = request.content_length
    if length is not None and length > cap:
        ingest.reject("too_large")
        return _problem(413, "too_large", f"body is {length} bytes, over the cap of {cap}")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body past client_max_size
        ingest.reject("too_large")
        return _problem(413, "too_large", f"body is over the cap of {cap} bytes")
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        outcome = await asyncio.to_thread(ingest.handle, headers, body)
    except BadEvent as err:
        return _problem(400, err.reason, str(err))
    except TooLarge as err:
        return _problem(413, "too_large", str(err))
    return web.json_response({"status": outcome.status, "rows": outcome.rows})


async def _events(request: web.Request) -> web.Response:
    log_ = request.app[_EVENTS]
    if log_ is None:
        return _problem(404, "disabled", "change events are not enabled on this sidecar")
    body = await request.read()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        event, created = await asyncio.to_thread(log_.record_cloudevent, headers, body)
    except InvalidInput as err:
        return _problem(400, getattr(err, "reason", "invalid_event"), str(err))
    except CloudEventConflict as err:
        return _problem(409, err.reason, str(err))
    except BaselinedError as err:
        return _problem(503, "unavailable", str(err))
    return web.json_response(
        {"id": event.id, "type": event.type, "model": event.model, "duplicate": not created},
        status=201 if created else 200,
    )


async def _healthz(request: web.Request) -> web.Response:
    if request.app[_STOPPING]():
        return web.Response(status=503, text="stopping")
    detail = request.app[_DEGRADED]()
    return web.Response(text=detail or "ok")


async def _metrics(request: web.Request) -> web.Response:
    metrics_text = request.app[_METRICS]
    if metrics_text is None:
        return web.Response(status=404, text="metrics are not enabled on this sidecar")
    body, content_type = await asyncio.to_thread(metrics_text)
    return web.Response(body=body, headers={"Content-Type": content_type})


def build_app(
    *,
    kserve: KServeIngest | None,
    metrics_text: MetricsText | None = None,
    max_body: int = 4 * 1024 * 1024,
    stopping: Callable[[], bool] = lambda: False,
    events: EventLog | None = None,
    auth: AuthInterceptor | None = None,
    kserve_allow_unauthenticated: bool = False,
    degraded: Callable[[], str | None] = lambda: None,
) -> web.Application:
    """The aiohttp application: ``kserve`` ingests ``/v1/kserve`` (None: 404),
    ``metrics_text`` serves ``/metrics`` (None: 404), bodies past ``max_body``
    bytes get 413, and ``stopping`` turns ``/healthz`` to 503. With ``auth``
    every route but ``/healthz`` checks :data:`HTTP_REQUIRED_ROLE`
    (``kserve_allow_unauthenticated``: ``/v1/kserve`` without credentials too).
    ``degraded`` returns why the sidecar is degraded (None: it is not), the body
    of ``/healthz``."""
    # aiohttp's own cap answers chunked bodies; the handler checks Content-Length first.
    app = web.Application(client_max_size=max_body, middlewares=[_authorize])
    app[_AUTH] = auth
    app[_KSERVE_OPEN] = kserve_allow_unauthenticated
    app[_KSERVE] = kserve
    app[_METRICS] = metrics_text
    app[_STOPPING] = stopping
    app[_DEGRADED] = degraded
    app[_MAX_BODY] = max_body
    app[_EVENTS] = events
    app.router.add_post(KSERVE_PATH, _kserve)
    app.router.add_post(EVENTS_PATH, _events)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ListenError(
            f"http_listen {address!r} is not host:port (for example 127.0.0.1:8080;"
            " empty turns the HTTP listener off)"
        )
    return host.strip("[]"), int(port)


class HttpListener:
    """Serves :func:`build_app` on ``address`` (``host:port``; port 0 picks a
    free one, see :attr:`port`). ``pair_sweep`` is how often unpaired KServe
    events past their TTL are ingested; ``ssl_context`` serves HTTPS; ``auth`` and
    ``kserve_allow_unauthenticated`` and ``degraded`` as in :func:`build_app`."""

    def __init__(
        self,
        address: str,
        *,
        kserve: KServeIngest | None,
        metrics_text: MetricsText | None = None,
        max_body: int = 4 * 1024 * 1024,
        stopping: Callable[[], bool] | None = None,
        pair_sweep: float = 1.0,
        events: EventLog | None = None,
        shutdown_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        auth: AuthInterceptor | None = None,
        kserve_allow_unauthenticated: bool = False,
        degraded: Callable[[], str | None] | None = None,
    ) -> None:
        self._host, self._requested_port = _split(address)
        self._ssl_context = ssl_context  # HTTPS (mTLS) when set: sidecar.tls.TlsFiles
        self._kserve = kserve
        self._stopping_flag = False
        outer = stopping

        def is_stopping() -> bool:
            return self._stopping_flag or (outer is not None and outer())

        self.app = build_app(
            kserve=kserve,
            metrics_text=metrics_text,
            max_body=max_body,
            stopping=is_stopping,
            events=events,
            auth=auth,
            kserve_allow_unauthenticated=kserve_allow_unauthenticated,
            degraded=degraded or (lambda: None),
        )
        self._pair_sweep = pair_sweep
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._port is None:
            raise RuntimeError("the HTTP listener is not started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` with the bound port."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; raises ListenError when the address cannot be bound."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self._host,
            self._requested_port,
            reuse_port=False,
            ssl_context=self._ssl_context,
        )
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            raise ListenError(
                f"cannot listen for HTTP on {self._host}:{self._requested_port}: {err}"
                " (choose another with --http-listen or BASELINED_HTTP_LISTEN, or '' for none)"
            ) from err
        addresses: list[Any] = runner.addresses
        self._port = int(addresses[0][1])
        self._runner = runner
        if self._kserve is not None:
            self._sweeper = asyncio.create_task(self._sweep(), name="baselined-kserve-pairs")

    async def _sweep(self) -> None:
        assert self._kserve is not None
        while True:
            await asyncio.sleep(self._pair_sweep)
            try:
                await asyncio.to_thread(self._kserve.expire)
            except Exception:  # a bug of ours; the next sweep tries again
                log.warning("ingesting unpaired KServe events failed", exc_info=True)

    async def stop(self) -> None:
        """Answer 503 on health, stop serving (in-flight requests finish), then
        ingest every KServe event still waiting for its pair. Idempotent."""
        self._stopping_flag = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            if self._kserve is not None:
                drained = await asyncio.to_thread(self._kserve.drain)
                if drained:
                    log.info("ingested %d unpaired KServe events on stop", drained)
