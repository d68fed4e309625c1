"""``Client``: a small typed client for the sidecar's ``Baselines``, ``Alerts`` and ``Events`` services.

>>> with Client("127.0.0.1:50051") as client:  # doctest: +SKIP
...     baseline = client.freeze("ranker", "production", name="2024-w1", reason="weekly")
...     client.promote(baseline.id, reason="looks good")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

__all__ = ["Client", "ClientError", "channel_credentials", "open_channel"]

M = TypeVar("M")


class ClientError(Exception):
    """A ``Baselines`` or ``Alerts`` call failed. ``code`` is the ``grpc.StatusCode``; ``details``
    the server's message."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method} failed: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise ValueError(f"cannot read {what} {path}: {err.strerror}") from err


class _TokenFile(grpc.AuthMetadataPlugin):
    """Sends the token in ``path``, re-read when the file changes (rotation)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""
        self._load()

    def _load(self) -> str:
        st = os.stat(self._path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._token = _read_file(self._path, "token file").decode("utf-8").strip()
            self._stamp = stamp
        return self._token

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        try:
            callback((("authorization", f"Bearer {self._load()}"),), None)
        except Exception as err:  # reported to the call as UNAVAILABLE by gRPC
            callback((), err)


def channel_credentials(
    target: str,
    *,
    token: str | None = None,
    token_file: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> grpc.ChannelCredentials | None:
    """Credentials for a channel to the sidecar, or None for plaintext without a token.

    ``tls_ca`` (PEM file; empty: the system roots) or a client certificate
    (``tls_cert`` + ``tls_key``, for mTLS) turn TLS on. A bearer ``token`` (or
    ``token_file``, re-read when it changes) rides on TLS, or on gRPC local
    credentials when the target is loopback or a Unix socket; gRPC refuses to
    send it in clear elsewhere, so this raises ValueError instead.
    """
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key must be given together")
    call: grpc.CallCredentials | None = None
    if token:
        call = grpc.access_token_call_credentials(token.strip())
    elif token_file:
        call = grpc.metadata_call_credentials(_TokenFile(token_file), name="baselined-token")
    if tls_ca or tls_cert:
        channel = grpc.ssl_channel_credentials(
            root_certificates=_read_file(tls_ca, "tls_ca") if tls_ca else None,
            private_key=_read_file(tls_key, "tls_key") if tls_key else None,
            certificate_chain=_read_file(tls_cert, "tls_cert") if tls_cert else None,
        )
    elif call is not None:
        if target.startswith(("unix:", "unix-abstract:")):
            channel = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
        elif _loopback(target):
            channel = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        else:
            raise ValueError(
                f"a token is only sent over TLS to {target}: set tls_ca (--tls-ca,"
                " BASELINED_TLS_CA) to the CA of the sidecar's certificate"
            )
    else:
        return None
    return channel if call is None else grpc.composite_channel_credentials(channel, call)


def _loopback(target: str) -> bool:
    host = target.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host = host.rpartition(":")[0].strip("[]") if ":" in host else host
    return host in ("localhost", "::1") or host.startswith("127.")


def open_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A secure channel with ``credentials``, or an insecure one when they are None."""
    if credentials is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, credentials, options=list(options))


class Client:
    """Query and govern baselines and live windows over gRPC.

    ``target`` is ``host:port`` or ``unix:/path``; ``timeout`` the deadline of
    each call in seconds. ``token`` / ``token_file`` send a bearer token;
    ``tls_ca``, ``tls_cert`` and ``tls_key`` turn on TLS and mTLS (see
    :func:`channel_credentials`). Every method returns the protobuf message of
    the answer and raises :class:`ClientError` when the call fails.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        channel: grpc.Channel | None = None,
        token: str | None = None,
        token_file: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        if not target and channel is None:
            raise ValueError("target must not be empty")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.target = target
        self.timeout = timeout
        self._own_channel = channel is None
        if channel is None:
            credentials = channel_credentials(
                target,
                token=token,
                token_file=token_file,
                tls_ca=tls_ca,
                tls_cert=tls_cert,
                tls_key=tls_key,
            )
            channel = open_channel(target, credentials)
        self._channel = channel
        self._stub: Any = pb_grpc.BaselinesStub(self._channel)  # type: ignore[no-untyped-call]
        self._alerts: Any = pb_grpc.AlertsStub(self._channel)  # type: ignore[no-untyped-call]
        self._events: Any = pb_grpc.EventsStub(self._channel)  # type: ignore[no-untyped-call]

    def _call(self, method: str, request: Any, _type: Callable[..., M], stub: Any = None) -> M:
        try:
            response: M = getattr(stub or self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise _client_error(method, err) from err
        return response

    def freeze(
        self,
        model: str,
        environment: str,
        *,
        name: str,
        reason: str = "",
        actor: str = "",
        start: float = 0.0,
        end: float = 0.0,
        versions: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
    ) -> pb.Baseline:
        """Freeze the window ``[start, end)`` (0 = everything retained / now) into a baseline."""
        request = pb.FreezeBaselineRequest(
            model=model,
            environment=environment,
            name=name,
            reason=reason,
            actor=actor,
            start=start,
            end=end,
            versions=list(versions),
            labels=dict(labels or {}),
        )
        return self._call("FreezeBaseline", request, pb.Baseline)

    def get(
        self, baseline_id: str, *, quantiles: Sequence[float] = (), top_k: int = 0
    ) -> pb.BaselineView:
        """One baseline with its series summaries."""
        request = pb.GetBaselineRequest(id=baseline_id, quantiles=list(quantiles), top_k=top_k)
        return self._call("GetBaseline", request, pb.BaselineView)

    def list(
        self,
        model: str = "",
        environment: str = "",
        *,
        status: pb.BaselineStatus = pb.BASELINE_STATUS_UNSPECIFIED,
    ) -> pb.ListBaselinesResponse:
        """Baselines, optionally of one model, environment and status."""
        request = pb.ListBaselinesRequest(model=model, environment=environment, status=status)
        return self._call("ListBaselines", request, pb.ListBaselinesResponse)

    def promote(self, baseline_id: str, *, reason: str = "", actor: str = "") -> pb.Baseline:
        """Make a baseline the active one of its model and environment."""
        request = pb.PromoteBaselineRequest(id=baseline_id, reason=reason, actor=actor)
        return self._call("PromoteBaseline", request, pb.Baseline)

    def rollback(
        self, model: str, environment: str, *, reason: str = "", actor: str = ""
    ) -> pb.Baseline:
        """Make the previously active baseline active again."""
        request = pb.RollbackBaselineRequest(
            model=model, environment=environment, reason=reason, actor=actor
        )
        return self._call("RollbackBaseline", request, pb.Baseline)

    def retire(self, baseline_id: str, *, reason: str = "", actor: str = "") -> pb.Baseline:
        """Retire a baseline."""
        request = pb.RetireBaselineRequest(id=baseline_id, reason=reason, actor=actor)
        return self._call("RetireBaseline", request, pb.Baseline)

    def active(self, model: str, environment: str) -> pb.Baseline:
        """The active baseline of (model, environment)."""
        request = pb.GetActiveBaselineRequest(model=model, environment=environment)
        return self._call("GetActiveBaseline", request, pb.Baseline)

    def window(
        self,
        model: str,
        environment: str,
        *,
        start: float = 0.0,
        end: float = 0.0,
        versions: Sequence[str] = (),
        quantiles: Sequence[float] = (),
        top_k: int = 0,
    ) -> pb.WindowView:
        """Summaries of the live window ``[start, end)``."""
        request = pb.GetWindowRequest(
            model=model,
            environment=environment,
            start=start,
            end=end,
            versions=list(versions),
            quantiles=list(quantiles),
            top_k=top_k,
        )
        return self._call("GetWindow", request, pb.WindowView)

    def audit(
        self, model: str = "", environment: str = "", *, limit: int = 0
    ) -> pb.ListAuditResponse:
        """The newest audit entries (0 = the server's default limit)."""
        request = pb.ListAuditRequest(model=model, environment=environment, limit=limit)
        return self._call("ListAudit", request, pb.ListAuditResponse)

    def alerts(
        self, model: str = "", environment: str = "", *, include_resolved: bool = False
    ) -> pb.ListAlertsResponse:
        """Firing alerts (and recently resolved ones with ``include_resolved``), newest first."""
        request = pb.ListAlertsRequest(
            model=model, environment=environment, include_resolved=include_resolved
        )
        return self._call("ListAlerts", request, pb.ListAlertsResponse, self._alerts)

    def watch_alerts(
        self, model: str = "", environment: str = "", *, include_firing: bool = False
    ) -> Iterator[pb.Alert]:
        """Every alert change from now on, as it happens (no deadline).

        With ``include_firing`` the stream starts with every alert firing now
        (oldest first), then the changes, with no gap and no duplicate between them.
        The iterator blocks between changes; it ends when the sidecar stops and
        raises ClientError if the stream fails. Break out of the loop (or close
        the client) to stop watching.
        """
        request = pb.WatchAlertsRequest(
            model=model, environment=environment, include_firing=include_firing
        )
        stream = self._alerts.WatchAlerts(request)
        try:
            yield from stream
        except grpc.RpcError as err:
            error = _client_error("WatchAlerts", err)
            if error.code != grpc.StatusCode.CANCELLED:
                raise error from err
        finally:
            stream.cancel()

    def compare(self, model: str, environment: str) -> pb.CompareResponse:
        """Compare (model, environment) with its active baseline now: every series' effects."""
        request = pb.CompareRequest(model=model, environment=environment)
        return self._call("Compare", request, pb.CompareResponse, self._alerts)

    def record_event(
        self,
        type: str,
        model: str,
        *,
        time: float,
        environment: str = "",
        version: str = "",
        node: str = "",
        image: str = "",
        custom_type: str = "",
        attributes: Mapping[str, str] | None = None,
        actor: str = "",
        source: str = "",
    ) -> pb.Event:
        """Record a change event (``type``: deploy, model_rollout, library_update, ...,
        custom with ``custom_type``) at unix seconds ``time``; returns it with its id.
        ``source="cli"`` marks it as recorded by the command line."""
        event = pb.Event(
            type=_event_type(type),
            model=model,
            time=time,
            environment=environment,
            version=version,
            node=node,
            image=image,
            custom_type=custom_type,
            attributes=dict(attributes or {}),
            recorded_by=actor,
        )
        metadata = (("x-baselined-source", source),) if source else None
        try:
            response: pb.Event = self._events.RecordEvent(
                pb.RecordEventRequest(event=event), timeout=self.timeout, metadata=metadata
            )
        except grpc.RpcError as err:
            raise _client_error("RecordEvent", err) from err
        return response

    def events(
        self,
        model: str = "",
        environment: str = "",
        *,
        start: float = 0.0,
        end: float = 0.0,
        types: Sequence[str] = (),
        limit: int = 0,
    ) -> pb.ListEventsResponse:
        """Stored change events with ``start <= time < end`` (0: unbounded), oldest
        first; ``types`` names event types (empty: all); ``limit`` 0: the server's default."""
        request = pb.ListEventsRequest(
            model=model,
            environment=environment,
            start=start,
            end=end,
            types=[_event_type(t) for t in types],
            limit=limit,
        )
        return self._call("ListEvents", request, pb.ListEventsResponse, self._events)

    # -- impact reports (Impact service) ---------------------------------------------

    def impact_report(self, report_id: str) -> pb.ImpactReport:
        """One impact report by id (``im-...``)."""
        stub = pb_grpc.ImpactStub(self._channel)  # type: ignore[no-untyped-call]
        request = pb.GetImpactReportRequest(id=report_id)
        return self._call("GetImpactReport", request, pb.ImpactReport, stub)

    def impact_reports(
        self,
        model: str = "",
        environment: str = "",
        *,
        start: float = 0.0,
        end: float = 0.0,
        verdicts: Sequence[str] = (),
        limit: int = 0,
    ) -> pb.ListImpactReportsResponse:
        """Impact reports of events with ``start <= time < end`` (0: unbounded),
        oldest first; ``verdicts`` names verdicts (``no_change``, ``regression``,
        ``inconclusive``, ``pending``; empty: all)."""
        stub = pb_grpc.ImpactStub(self._channel)  # type: ignore[no-untyped-call]
        request = pb.ListImpactReportsRequest(
            model=model,
            environment=environment,
            start=start,
            end=end,
            verdicts=[_impact_verdict(v) for v in verdicts],
            limit=limit,
        )
        return self._call("ListImpactReports", request, pb.ListImpactReportsResponse, stub)

    # -- outcomes and quality (Outcomes service, issue 8) ------------------------------

    def record_outcomes(self, batches: Iterable[pb.OutcomeBatch]) -> pb.RecordOutcomesResponse:
        """Stream outcome batches (``RecordOutcomes``); the counts come back at the end.

        The deadline covers the whole stream: long backfills use a larger ``timeout``.
        """
        stub = pb_grpc.OutcomesStub(self._channel)  # type: ignore[no-untyped-call]
        try:
            response: pb.RecordOutcomesResponse = stub.RecordOutcomes(
                iter(batches), timeout=self.timeout
            )
        except grpc.RpcError as err:
            raise _client_error("RecordOutcomes", err) from err
        return response

    def quality(self, model: str, environment: str) -> pb.QualityView:
        """Quality of the live window against the active baseline, per slice (``GetQuality``)."""
        stub = pb_grpc.OutcomesStub(self._channel)  # type: ignore[no-untyped-call]
        request = pb.GetQualityRequest(model=model, environment=environment)
        return self._call("GetQuality", request, pb.QualityView, stub)

    # -- baselines across environments (Governance service) ----------------------------

    def _transfer(self) -> Any:
        return pb_grpc.GovernanceStub(self._channel)  # type: ignore[no-untyped-call]

    def export_baseline(self, baseline_id: str) -> bytes:
        """The export file of a baseline: self-describing JSON with a content hash."""
        request = pb.ExportBaselineRequest(id=baseline_id)
        response = self._call("ExportBaseline", request, pb.BaselineFile, self._transfer())
        return response.content

    def import_baseline(
        self,
        content: bytes,
        *,
        environment: str = "",
        name: str = "",
        reason: str = "",
        actor: str = "",
    ) -> pb.Baseline:
        """Verify an export file and store it as a new candidate baseline (empty
        ``environment`` / ``name``: the file's)."""
        request = pb.ImportBaselineRequest(
            content=content, environment=environment, name=name, reason=reason, actor=actor
        )
        return self._call("ImportBaseline", request, pb.Baseline, self._transfer())

    def diff_baselines(
        self, a: str, b: str, *, quantiles: Sequence[float] = ()
    ) -> pb.DiffBaselinesResponse:
        """Baseline ``b`` compared with baseline ``a``, series by series, every effect."""
        request = pb.DiffBaselinesRequest(a=a, b=b, quantiles=list(quantiles))
        return self._call("DiffBaselines", request, pb.DiffBaselinesResponse, self._transfer())

    # -- policies, four-eyes approvals, audit verification (Governance service) ----------

    def _gov(self) -> Any:
        return pb_grpc.GovernanceStub(self._channel)  # type: ignore[no-untyped-call]

    def get_policy(self, model: str, environment: str) -> pb.Policy:
        """The policy of (model, environment): four-eyes promotion and owners."""
        request = pb.GetPolicyRequest(model=model, environment=environment)
        return self._call("GetPolicy", request, pb.Policy, self._gov())

    def set_policy(
        self,
        model: str,
        environment: str,
        *,
        four_eyes: bool,
        owners: Sequence[str] = (),
        reason: str = "",
        actor: str = "",
    ) -> pb.Policy:
        """Replace the policy of (model, environment) (audited)."""
        policy = pb.Policy(
            model=model, environment=environment, four_eyes=four_eyes, owners=list(owners)
        )
        request = pb.SetPolicyRequest(policy=policy, reason=reason, actor=actor)
        return self._call("SetPolicy", request, pb.Policy, self._gov())

    def pending(self, model: str = "", environment: str = "") -> pb.ListPendingResponse:
        """Promotions waiting for a second admin's approval, oldest first."""
        request = pb.ListPendingRequest(model=model, environment=environment)
        return self._call("ListPending", request, pb.ListPendingResponse, self._gov())

    def approve(self, baseline_id: str, *, reason: str = "", actor: str = "") -> pb.Baseline:
        """Approve (and so activate) a candidate; refused for the admin who froze
        it or asked to promote it."""
        request = pb.ApproveBaselineRequest(id=baseline_id, reason=reason, actor=actor)
        return self._call("ApproveBaseline", request, pb.Baseline, self._gov())

    def verify_audit(self, model: str = "", environment: str = "") -> pb.VerifyAuditResponse:
        """Check the audit hash chains (of one model, or all); ``ok`` false names
        the first edited, deleted or reordered record."""
        request = pb.VerifyAuditRequest(model=model, environment=environment)
        return self._call("VerifyAudit", request, pb.VerifyAuditResponse, self._gov())

    def close(self) -> None:
        """Close the channel (when the client opened it)."""
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _impact_verdict(name: str) -> Any:
    """``no_change`` -> ``IMPACT_VERDICT_NO_CHANGE``; ValueError naming the choices otherwise."""
    try:
        return pb.ImpactVerdict.Value("IMPACT_VERDICT_" + name.strip().upper())
    except ValueError:
        raise ValueError(
            f"unknown impact verdict {name!r}; use no_change, regression, inconclusive or pending"
        ) from None


def _event_type(name: str) -> Any:
    """The ``EventType`` number of ``deploy``, ``model-rollout``, ...; ValueError if unknown."""
    try:
        return pb.EventType.Value("EVENT_TYPE_" + name.strip().upper().replace("-", "_"))
    except ValueError:
        known = [
            n.removeprefix("EVENT_TYPE_").lower()
            for n in pb.DESCRIPTOR.enum_types_by_name["EventType"].values_by_name
            if n != "EVENT_TYPE_UNSPECIFIED"
        ]
        raise ValueError(f"unknown event type {name!r}; use one of {', '.join(known)}") from None


def _client_error(method: str, err: grpc.RpcError) -> ClientError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return ClientError(method, code, details or "")
