"""The sidecar server: ``grpc.aio`` with Ingest, Baselines, Alerts, health and reflection.

:class:`Sidecar` wires a store, the live windows, the baseline manager, the
comparator and the alerter to a gRPC server. It flushes the windows on an
interval and, every ``check_interval`` seconds, compares each (model,
environment) with an active baseline and feeds the result to the alerter,
whose changes go to the configured sinks and to ``WatchAlerts``. :func:`run` is the
blocking entry point of ``baselined serve``: it stops gracefully on SIGTERM
or SIGINT (health NOT_SERVING, in-flight calls finish, windows flushed,
store closed, exit code 0).

When the store is unreachable the sidecar is *degraded*, not down: ingest goes
on into memory (bounded by ``max_buffered_buckets``), the flush is retried with
capped, jittered exponential backoff (``store_retry_max``), the health service
:data:`STORE_HEALTH_SERVICE` answers NOT_SERVING (the overall service ``""``
stays SERVING, so a kubelet probe does not restart the pod and lose the data
held), ``/healthz`` answers ``degraded: ...``, and baseline RPCs fail with
UNAVAILABLE. The first flush that works writes everything held.

>>> # sidecar = Sidecar(Settings.resolve({"listen": "127.0.0.1:0", "store": ":memory:"}))
>>> # await sidecar.start(); ...; await sidecar.stop(5.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import grpc.aio
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from sidecar.alerts import Alerter, AlertSink
from sidecar.audit import DenialRecorder
from sidecar.auth import AuthInterceptor, interceptor_from_settings
from sidecar.baselines import BaselineManager
from sidecar.compaction import Compactable, Compactor
from sidecar.compare import Comparator
from sidecar.correlation import Correlator
from sidecar.errors import BaselinedError, ConfigError
from sidecar.events import EventLog
from sidecar.events_service import EventsService
from sidecar.fingerprints import FingerprintTracker
from sidecar.governance_service import GovernanceService
from sidecar.guardrails import Guardrails
from sidecar.http import HttpListener
from sidecar.impact import ImpactChecker, ImpactPolicy, ImpactTelemetry
from sidecar.impact_service import ImpactService
from sidecar.kserve import KServeIngest
from sidecar.lease import Fleet, fleet_enabled
from sidecar.memory import pin_mmap_threshold
from sidecar.outcomes import Outcomes
from sidecar.outcomes_service import OutcomesService
from sidecar.quality_view import QualityMonitor
from sidecar.records import EventRecord
from sidecar.service import AlertsService, BaselinesService, IngestService, add_ingest_service
from sidecar.settings import Settings
from sidecar.sinks.otel import comparison_span
from sidecar.stores import open_store
from sidecar.stores.base import Store
from sidecar.telemetry import Telemetry
from sidecar.tls import TlsFiles
from sidecar.windows import Windows

__all__ = [
    "SERVICE_NAMES",
    "STORE_HEALTH_SERVICE",
    "Sidecar",
    "StartError",
    "build_sinks",
    "redact_url",
    "run",
]

log = logging.getLogger(__name__)

SERVICE_NAMES: tuple[str, ...] = (
    pb.DESCRIPTOR.services_by_name["Ingest"].full_name,
    pb.DESCRIPTOR.services_by_name["Baselines"].full_name,
    pb.DESCRIPTOR.services_by_name["Alerts"].full_name,
    pb.DESCRIPTOR.services_by_name["Events"].full_name,
    pb.DESCRIPTOR.services_by_name["Impact"].full_name,
    pb.DESCRIPTOR.services_by_name["Governance"].full_name,
    pb.DESCRIPTOR.services_by_name["Outcomes"].full_name,
)
"""Fully qualified names of the services the sidecar serves (health reports each)."""

STORE_HEALTH_SERVICE = "baselined.store"
"""grpc.health.v1 service name that is NOT_SERVING while the store is unreachable."""

_TRANSPORT_SLACK = 1024 * 1024  # bytes past max_batch_bytes that still reach our own check


class StartError(BaselinedError):
    """The server could not start (address in use, bad listen address)."""

    grpc_code = "UNAVAILABLE"


def redact_url(url: str) -> str:
    """A store URL fit for logs: the password, if any, replaced by ``***``.

    >>> redact_url("redis://user:secret@cache:6379/0")
    'redis://user:***@cache:6379/0'
    >>> redact_url("sqlite:///baselined.db")
    'sqlite:///baselined.db'
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def build_sinks(settings: Settings, *, telemetry: Telemetry | None = None) -> list[AlertSink]:
    """The alert sinks the settings ask for: Alertmanager (``alertmanager_url``),
    a webhook (``webhook_url``) and OpenTelemetry log records (``otel_logs``, or
    ``otel_exporter`` other than none: then through ``telemetry``'s logger provider,
    each record carrying a sampled request's trace id)."""
    sinks: list[AlertSink] = []
    if settings.alertmanager_url:
        from sidecar.sinks.alertmanager import AlertmanagerSink

        sinks.append(
            AlertmanagerSink(
                settings.alertmanager_url, resend_interval=settings.alert_resend_interval
            )
        )
    if settings.webhook_url:
        from sidecar.sinks.webhook import WebhookSink

        sinks.append(WebhookSink(settings.webhook_url))
    if telemetry is not None and settings.otel_exporter != "none":
        from sidecar.sinks.otel import OTelLogSink

        sinks.append(OTelLogSink(telemetry.logger_provider, trace_for=telemetry.alert_trace))
    elif settings.otel_logs:
        sinks.append(_otel_log_sink())
    return sinks


def _otel_log_sink() -> AlertSink:
    """OpenTelemetry log records through the process's logger provider when one is
    configured (``opentelemetry-instrument``), else an OTLP/gRPC exporter that
    reads the standard ``OTEL_EXPORTER_OTLP_*`` environment variables."""
    from opentelemetry import _logs
    from opentelemetry.sdk._logs import LoggerProvider

    from sidecar.sinks.otel import OTelLogSink

    provider = _logs.get_logger_provider()
    if not isinstance(provider, LoggerProvider):  # the API's no-op or proxy provider
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        provider = LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    return OTelLogSink(provider)


class Sidecar:
    """One sidecar: a gRPC server over live windows, baselines, comparisons,
    alerts and a store.

    ``store`` defaults to ``open_store(settings.store)``; the sidecar closes it
    on :meth:`stop`. ``clock`` (unix seconds) drives windows, baselines,
    comparisons and alerts. ``guardrails`` default to ``Guardrails.load`` of
    ``settings.guardrails`` (``alpha`` and ``check_interval`` from the
    settings win when set); ``sinks`` to :func:`build_sinks` (closed on stop);
    ``tracer`` (a span per comparison run) to the global tracer provider's, a
    no-op until configured.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        guardrails: Guardrails | None = None,
        sinks: Sequence[AlertSink] | None = None,
        tracer: trace.Tracer | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        # Configuration first: a bad guardrails file fails before the store is opened.
        self.guardrails = (
            guardrails
            if guardrails is not None
            else Guardrails.load(
                settings.guardrails or None,
                alpha=settings.alpha or None,  # 0: the guardrails file's (or the default)
                check_interval=settings.check_interval or None,
            )
        )
        # Identity and TLS before the store too: open mode off loopback fails here.
        self.auth: AuthInterceptor | None = interceptor_from_settings(settings, clock=clock)
        self.tls: TlsFiles | None = (
            TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
            if settings.tls_cert
            else None
        )
        self.store: Store = store if store is not None else open_store(settings.store)
        self.windows = Windows(settings, self.store, clock=clock)
        self.compactor: Compactor | None = (
            Compactor(
                self.store,
                bucket_seconds=settings.bucket_seconds,
                compression=settings.compression,
                retention_seconds=settings.retention_seconds,
                clock=clock,
            )
            if isinstance(self.store, Compactable)
            else None
        )
        self.manager = BaselineManager(
            self.store, self.windows, clock=clock, retention_seconds=settings.retention_seconds
        )
        self.comparator = Comparator(self.store, self.windows, self.guardrails, clock=clock)
        # Outcomes (issue 8): keep sampled predictions, join labels, quality findings.
        self.outcomes = Outcomes(
            settings, self.store, self.guardrails, windows=self.windows, clock=clock
        )
        self.windows.on_keep = self.outcomes.keep
        self.quality = QualityMonitor(
            self.outcomes,
            self.store,
            self.guardrails,
            epoch_start=self.comparator.epoch_start,
            clock=clock,
        )
        self.comparator.extra_findings = self.quality.findings
        self.manager.on_freeze = self.quality.freeze  # quality side frozen with the baseline
        if telemetry is None and (settings.otel_exporter != "none" or settings.prometheus_metrics):
            telemetry = Telemetry.from_settings(settings)
        self.telemetry = telemetry
        if telemetry is not None:
            telemetry.attach(self.windows, self.guardrails)
        self.alerter = Alerter(
            clock=clock,
            consecutive=self.guardrails.consecutive,
            resolve_after=self.guardrails.resolve_after,
            cooldown=self.guardrails.cooldown,
            sinks=build_sinks(settings, telemetry=telemetry) if sinks is None else sinks,
            alpha=self.guardrails.alpha,
            owners=self._owners,
            correlate=Correlator(  # root-cause hints on alerts (issue 4)
                self.store,
                self.guardrails,
                self._list_events,
                bucket_seconds=settings.bucket_seconds,
                lookback=settings.suspect_lookback_seconds,
                clock=clock,
            ),
        )
        if tracer is None:
            tracer = telemetry.tracer if telemetry is not None else trace.get_tracer("baselined")
        self._tracer = tracer
        self.kserve = KServeIngest(self.windows, settings, clock=clock)
        self.events = EventLog(
            self.store,
            clock=clock,
            max_clock_skew=settings.max_clock_skew,
            retention_seconds=settings.event_retention_seconds,
        )
        self.fingerprints = FingerprintTracker(self.events, clock=clock)
        self.windows.on_fingerprint = self.fingerprints.observe_batch
        # Impact reports (issue 4): a before/after check for every change event.
        self.impact: ImpactChecker | None = (
            ImpactChecker(
                self.store,
                self.guardrails,
                lambda start, end: self.events.list(None, None, start=start, end=end, limit=1000),
                bucket_seconds=settings.bucket_seconds,
                policy=ImpactPolicy.from_settings(settings),
                clock=clock,
                alerter=self.alerter,
                telemetry=ImpactTelemetry(
                    tracer, telemetry.logger_provider if telemetry is not None else None
                ),
                retention_seconds=settings.event_retention_seconds,
                owns=self._owns_impact,
            )
            if settings.impact_checks
            else None
        )
        # Fleet mode (sidecar.lease): one leader per (model, environment) compares and alerts.
        self.fleet: Fleet | None = (
            Fleet(
                self.store,
                self.alerter,
                holder=self.windows.writer,
                ttl=settings.lease_ttl,
                targets=self.comparator.targets,
            )
            if fleet_enabled(settings.fleet_mode, settings.store)
            else None
        )
        self._leaser: asyncio.Task[None] | None = None
        self._clock = clock
        if self.auth is not None and self.auth.on_denied is None:  # refused calls are audited
            denials = DenialRecorder(self.store, clock=clock)

            def audit_denied(principal: Any, method: str, reason: str) -> None:
                denials.record(principal.name if principal else "", method, reason)

            self.auth.on_denied = audit_denied
        self.http: HttpListener | None = None  # started when settings.http_listen is set
        self._server: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None
        self._health_server: grpc.aio.Server | None = None
        self.health_port = 0  # the bound port of health_listen (useful with port 0)
        self._flusher: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._failing: set[tuple[str, str]] = set()
        # Degraded mode: since when (clock) the store fails, how often, the last error.
        self._store_down_since: float | None = None
        self._store_failures = 0
        self._store_error = ""
        self._stopping = asyncio.Event()
        self._port: int | None = None
        self._stopped = False

    def _list_events(self, environment: str, start: float, end: float) -> list[EventRecord]:
        """Change events of every model applying to ``environment`` (alert suspects)."""
        return self.events.list(None, environment, start=max(start, 0.0), end=end, limit=2000)

    def _owners(self, model: str, environment: str) -> tuple[str, ...]:
        """The owners of (model, environment) from its stored policy (shown in alerts)."""
        return tuple(self.store.get_policy(model, environment).owners)

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0); 0 for a Unix socket."""
        if self._port is None:
            raise RuntimeError("the sidecar is not started")
        return self._port

    @property
    def address(self) -> str:
        """Where clients reach the sidecar: ``host:port`` with the bound port, or ``unix:...``."""
        listen = self.settings.listen
        if listen.startswith("unix:") or self._port is None:
            return listen
        host = listen.rpartition(":")[0]
        return f"{host}:{self._port}"

    async def start(self) -> None:
        """Bind, register the services and start serving; raises StartError when
        the address cannot be bound."""
        settings = self.settings
        transport_cap = settings.max_batch_bytes + max(
            _TRANSPORT_SLACK, settings.max_batch_bytes // 4
        )
        server = grpc.aio.server(
            interceptors=[self.auth] if self.auth is not None else None,
            options=[
                ("grpc.max_receive_message_length", transport_cap),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                # Without this a second sidecar on the same port would bind quietly.
                ("grpc.so_reuseport", 0),
            ],
        )
        add_ingest_service(IngestService(self.windows), server)  # corrupt bytes: INVALID_ARGUMENT
        pb_grpc.add_BaselinesServicer_to_server(  # type: ignore[no-untyped-call]
            BaselinesService(self.manager), server
        )
        pb_grpc.add_AlertsServicer_to_server(  # type: ignore[no-untyped-call]
            AlertsService(self.alerter, self.comparator, flush=self.windows.flush), server
        )
        pb_grpc.add_EventsServicer_to_server(EventsService(self.events), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_OutcomesServicer_to_server(  # type: ignore[no-untyped-call]
            OutcomesService(self.outcomes, self.quality), server
        )
        pb_grpc.add_ImpactServicer_to_server(ImpactService(self.store), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_GovernanceServicer_to_server(  # type: ignore[no-untyped-call]
            GovernanceService(
                self.store, self.manager, guardrails=self.guardrails, clock=self._clock
            ),
            server,
        )
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        if settings.reflection:
            names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
            reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
        unix = settings.listen.startswith("unix:")
        cause = ""
        try:
            if self.tls is not None:
                port = server.add_secure_port(settings.listen, self.tls.grpc_credentials())
            else:
                port = server.add_insecure_port(settings.listen)
        except RuntimeError as err:  # grpcio raises when nothing could be bound
            port, cause = 0, str(err)
        if cause or (port == 0 and not unix):
            await server.stop(None)
            raise StartError(
                f"cannot listen on {settings.listen}: the address is in use or invalid"
                " (choose another with --listen or BASELINED_LISTEN;"
                f" grpc: {cause or 'no port was bound'})"
            )
        await server.start()
        if settings.http_listen:
            http = HttpListener(
                settings.http_listen,
                kserve=self.kserve,
                events=self.events,
                metrics_text=(
                    self.telemetry.metrics_text
                    if self.telemetry is not None and self.telemetry.prometheus_enabled
                    else None
                ),
                max_body=settings.max_batch_bytes,
                stopping=self._stopping.is_set,
                degraded=self.degraded,
                shutdown_timeout=max(settings.shutdown_grace, 0.1),
                ssl_context=self.tls.ssl_context() if self.tls is not None else None,
                auth=self.auth,
                kserve_allow_unauthenticated=settings.kserve_allow_unauthenticated,
            )
            try:
                await http.start()
            except BaselinedError:
                await server.stop(None)
                raise
            self.http = http
        if settings.health_listen:
            try:
                self._health_server = await self._start_health_server(health)
            except StartError:
                if self.http is not None:
                    await self.http.stop()
                await server.stop(None)
                raise
        for name in ("", *SERVICE_NAMES, STORE_HEALTH_SERVICE):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server, self._health = server, health
        self._port = 0 if unix else port
        self._flusher = asyncio.create_task(self._flush_loop(), name="baselined-flush")
        self._checker = asyncio.create_task(self._check_loop(), name="baselined-compare")
        if self.fleet is not None:
            self._leaser = asyncio.create_task(
                self.fleet.run(self._check_one, self._stopping), name="baselined-leases"
            )

    async def _start_health_server(self, health: health_aio.HealthServicer) -> grpc.aio.Server:
        """A second gRPC server on TCP with only grpc.health.v1: kubelet ``grpc:``
        probes dial the pod IP, so they cannot reach a Unix-socket listener."""
        address = self.settings.health_listen
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port == 0:
            await server.stop(None)
            raise StartError(
                f"cannot listen on {address} for health checks: the address is in use or invalid"
                " (choose another with --health-listen or BASELINED_HEALTH_LISTEN)"
            )
        await server.start()
        self.health_port = port
        return server

    async def _flush_loop(self) -> None:
        rng = random.Random()
        delay = self.settings.flush_interval
        while True:
            await asyncio.sleep(delay)
            try:
                written = await asyncio.to_thread(self._flush_or_ping)
            except Exception as err:
                await self._store_failed(err)
                delay = self._retry_delay(rng)
            else:
                await self._store_works(written)
                delay = self.settings.flush_interval

    def _flush_or_ping(self) -> int:
        """Flush; when there was nothing to write, ping, so an idle sidecar
        notices a lost store (and its return) too."""
        written = self.windows.flush()
        written += self.outcomes.flush()
        if written == 0:
            self.store.ping()
        if self.compactor is not None:
            self.compactor.maybe_run()  # at most once a minute; never raises
        return written

    def _retry_delay(self, rng: random.Random) -> float:
        """Exponential backoff from ``flush_interval``, capped at ``store_retry_max``,
        shortened by up to half at random so a fleet does not retry in step."""
        interval = self.settings.flush_interval
        cap = max(self.settings.store_retry_max, interval)
        base = min(cap, interval * 2.0 ** min(self._store_failures - 1, 32))
        return float(base * (1.0 - 0.5 * rng.random()))

    async def _store_failed(self, err: Exception) -> None:
        self._store_failures += 1
        self._store_error = str(err) or type(err).__name__
        if self._store_down_since is None:  # the first failure in full, then quietly
            self._store_down_since = self._clock()
            log.warning(
                "flush to the store failed; degraded: ingesting into memory (at most %d"
                " buckets per model/environment) and retrying with backoff: %s",
                self.settings.max_buffered_buckets,
                err,
                exc_info=True,
            )
            if self._health is not None:
                await self._health.set(
                    STORE_HEALTH_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING
                )
        else:
            log.debug("flush to the store failed again (%d): %s", self._store_failures, err)

    async def _store_works(self, written: int) -> None:
        if self._store_down_since is None:
            return
        down_for = self._clock() - self._store_down_since
        log.info(
            "the store works again after %.1f s and %d failed attempts: %d series flushed;"
            " %d records were dropped unflushed so far",
            down_for,
            self._store_failures,
            written,
            sum(self.windows.store_drops().values()),
        )
        self._store_down_since, self._store_failures, self._store_error = None, 0, ""
        if self._health is not None:
            await self._health.set(STORE_HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)

    def degraded(self) -> str | None:
        """Why the sidecar is degraded (the body of ``/healthz``), or None when
        the store answers."""
        since = self._store_down_since
        if since is None:
            return None
        dropped = sum(self.windows.store_drops().values())
        return (
            f"degraded: store {redact_url(self.settings.store)} unreachable for"
            f" {max(0.0, self._clock() - since):.0f} s ({self._store_failures} failed"
            f" attempts; last error: {self._store_error}); ingesting into memory, at most"
            f" {self.settings.max_buffered_buckets} buckets per model/environment;"
            f" {dropped} records dropped unflushed"
        )

    async def _check_loop(self) -> None:
        # Stopped through the event, not cancelled, so a comparison in its worker
        # thread finishes before the store closes.
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.guardrails.check_interval)
            if self._stopping.is_set():
                return
            await self.check()

    async def check(self) -> None:
        """One round of checks: flush, then compare every (model, environment)
        with an active baseline and feed each result to the alerter. A failing
        comparison is logged and the others go on."""
        if self._store_down_since is None:  # else the flush loop's backoff owns the retries
            try:
                await asyncio.to_thread(self.windows.flush)
            except Exception as err:  # the flush loop reports store trouble; compare what is stored
                log.debug("flush before comparing failed: %s", err)
        try:
            targets = await asyncio.to_thread(self.comparator.targets)
        except Exception as err:
            log.warning("cannot list what to compare: %s", err, exc_info=True)
            return
        for model, environment in targets:
            if self.fleet is not None and not await self._leads(model, environment):
                continue  # another sidecar of the fleet compares it
            await self._check_one(model, environment)
        await self._check_impact()
        if self.fleet is not None:
            try:  # the fleet view: alerts other sidecars raised
                await asyncio.to_thread(self.fleet.refresh)
            except Exception as err:
                log.debug("cannot read the fleet's alert state: %s", err)

    def _owns_impact(self, model: str, environment: str) -> bool:
        """Impact checks run where the (model, environment) is compared: on every
        sidecar alone, on its lease holder in fleet mode."""
        return self.fleet is None or self.fleet.leads(model, environment)

    async def _check_impact(self) -> None:
        """Advance the impact checks of recent change events (issue 4)."""
        if self.impact is None:
            return
        try:
            await asyncio.to_thread(self.impact.run_once)
        except Exception as err:
            log.warning("impact checks failed; retried next check: %s", err, exc_info=True)

    async def _leads(self, model: str, environment: str) -> bool:
        """Fleet mode: whether this sidecar holds (or just took) the lease."""
        assert self.fleet is not None
        try:
            return await asyncio.to_thread(self.fleet.leads, model, environment)
        except Exception as err:
            log.debug("cannot acquire the lease of %s/%s: %s", model, environment, err)
            return False

    async def _check_one(self, model: str, environment: str) -> None:
        key = (model, environment)
        try:
            await asyncio.to_thread(self._compare_and_observe, model, environment)
        except Exception as err:
            if key not in self._failing:  # the first failure in full, then quietly until recovery
                log.warning(
                    "comparison of %s/%s failed; retried next check: %s",
                    model,
                    environment,
                    err,
                    exc_info=True,
                )
                self._failing.add(key)
            else:
                log.debug("comparison of %s/%s failed again: %s", model, environment, err)
        else:
            if key in self._failing:
                log.info("comparison of %s/%s works again", model, environment)
                self._failing.discard(key)

    def _compare_and_observe(self, model: str, environment: str) -> None:
        result = self.comparator.compare(model, environment)
        if result is None:
            return
        if self.telemetry is not None:  # links to sampled requests, duration, effect gauges
            with self.telemetry.comparison(result):
                self.alerter.observe(result, self.guardrails.playbook_url(model))
            return
        with comparison_span(self._tracer, result):
            self.alerter.observe(result, self.guardrails.playbook_url(model))

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, stop accepting calls (in-flight ones get ``grace``
        seconds), flush the windows one last time and close the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.settings.shutdown_grace if grace is None else grace
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        self._stopping.set()
        if self._checker is not None:
            await self._checker
        if self._leaser is not None:
            await self._leaser
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self.alerter.end_watchers()  # WatchAlerts streams end now instead of holding the grace
        if self.http is not None:  # before the final flush: pending KServe halves are ingested
            await self.http.stop()
        if self._server is not None:
            await self._server.stop(grace)
        if self._health_server is not None:
            await self._health_server.stop(grace)
        try:
            written = await asyncio.to_thread(self.windows.flush)
            await asyncio.to_thread(self.outcomes.flush)
            log.info("final flush wrote %d series", written)
        except Exception:
            log.error(
                "final flush to the store failed; unflushed window data is lost", exc_info=True
            )
        finally:
            if self.fleet is not None:  # others take over at once instead of after lease_ttl
                await asyncio.to_thread(self.fleet.close)
            await asyncio.to_thread(self.alerter.close, max(grace, 1.0))
            if self.telemetry is not None:
                await asyncio.to_thread(self.telemetry.shutdown, max(grace, 1.0))
            await asyncio.to_thread(self.store.close)


async def _serve(settings: Settings) -> int:
    try:
        sidecar = Sidecar(settings)
        await asyncio.to_thread(sidecar.store.ping)
    except ConfigError as err:
        print(f"baselined: configuration error: {err}", file=sys.stderr)
        return 2
    except BaselinedError as err:
        print(f"baselined: cannot open store {redact_url(settings.store)}: {err}", file=sys.stderr)
        return 1
    try:
        await sidecar.start()
    except BaselinedError as err:
        print(f"baselined: {err}", file=sys.stderr)
        await asyncio.to_thread(sidecar.store.close)
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def _on_signal(signum: int) -> None:
        if stopping.is_set():
            log.warning("received %s again; still stopping", signal.Signals(signum).name)
            return
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, signum)
    print(
        f"baselined sidecar listening on {sidecar.address} (store {redact_url(settings.store)}"
        + (f"; http on {sidecar.http.address})" if sidecar.http is not None else ")"),
        file=sys.stderr,
        flush=True,
    )
    try:
        await stopping.wait()
    finally:
        await sidecar.stop(settings.shutdown_grace)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("baselined sidecar stopped")
    return 0


def run(settings: Settings) -> int:
    """Run the sidecar until SIGTERM or SIGINT; return the process exit code
    (0 after a clean stop, 1 when the store cannot be opened or the address
    cannot be bound, 2 for a bad guardrails file)."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    pin_mmap_threshold()  # RSS near the working set (sidecar.memory); glibc only
    try:
        return asyncio.run(_serve(settings))
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 130
