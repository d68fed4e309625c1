"""``Client``: a small typed client for the sidecar's ``Baselines``, ``Alerts`` and ``Events`` services.

>>> with Client("127.0.0.1:50051") as client:  # doctest: +SKIP
...     baseline = client.freeze("ranker", "production", name="2024-w1", reason="weekly")
...     client.promote(baseline.id, reason="looks good")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

__all__ = ["Client", "ClientError"]

M = TypeVar("M")


class ClientError(Exception):
    """A ``Baselines`` or ``Alerts`` call failed. ``code`` is the ``grpc.StatusCode``; ``details``
    the server's message."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method} failed: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


class Client:
    """Query and govern baselines and live windows over gRPC.

    ``target`` is ``host:port`` or ``unix:/path``; ``timeout`` the deadline of
    each call in seconds. Every method returns the protobuf message of the
    answer and raises :class:`ClientError` when the call fails.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        channel: grpc.Channel | None = None,
    ) -> None:
        if not target and channel is None:
            raise ValueError("target must not be empty")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.target = target
        self.timeout = timeout
        self._own_channel = channel is None
        self._channel = channel if channel is not None else grpc.insecure_channel(target)
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

    def watch_alerts(self, model: str = "", environment: str = "") -> Iterator[pb.Alert]:
        """Every alert change from now on, as it happens (no deadline).

        The iterator blocks between changes; it ends when the sidecar stops and
        raises ClientError if the stream fails. Break out of the loop (or close
        the client) to stop watching.
        """
        request = pb.WatchAlertsRequest(model=model, environment=environment)
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

    def close(self) -> None:
        """Close the channel (when the client opened it)."""
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
