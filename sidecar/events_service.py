"""The ``baselined.v1.Events`` servicer (``grpc.aio``): record and list change events.

>>> # pb_grpc.add_EventsServicer_to_server(EventsService(event_log), server)
"""

from __future__ import annotations

from baselined.v1 import baselined_pb2 as pb

from sidecar.events import EventLog, EventType
from sidecar.records import EventRecord
from sidecar.service import Context, _call, abort_with

__all__ = ["EventsService", "event_from_pb", "event_to_pb"]


def event_to_pb(record: EventRecord) -> pb.Event:
    """The wire form of a stored event."""
    return pb.Event(
        id=record.id,
        type=EventType(record.type).to_proto(),  # type: ignore[arg-type]
        custom_type=record.custom_type,
        time=record.time,
        model=record.model,
        version=record.version,
        environment=record.environment,
        node=record.node,
        image=record.image,
        attributes=dict(record.attributes),
        recorded_by=record.recorded_by,
        source=record.source,
        recorded_at=record.recorded_at,
    )


def event_from_pb(event: pb.Event, *, source: str = "grpc") -> EventRecord:
    """An id-less record of a ``RecordEvent`` request's event (InvalidInput for a
    missing or unknown type); ``recorded_at`` and ``source`` are the sidecar's."""
    return EventRecord(
        type=EventType.from_proto(event.type).value,
        custom_type=event.custom_type,
        time=event.time,
        model=event.model,
        version=event.version,
        environment=event.environment,
        node=event.node,
        image=event.image,
        attributes=dict(event.attributes),
        recorded_by=event.recorded_by,
        source=source,
    )


class EventsService:
    """``baselined.v1.Events`` over an :class:`~sidecar.events.EventLog`.

    ``RecordEvent`` takes ``source`` from the ``x-baselined-source`` metadata
    when it is ``cli`` (the CLI sets it), else ``grpc``.
    """

    def __init__(self, log: EventLog) -> None:
        self._log = log

    async def RecordEvent(self, request: pb.RecordEventRequest, context: Context) -> pb.Event:
        metadata = dict(context.invocation_metadata() or ())
        source = "cli" if metadata.get("x-baselined-source") == "cli" else "grpc"
        try:
            record = event_from_pb(request.event, source=source)
        except Exception as err:
            await abort_with(context, err, "record event")
        stored = await _call(context, "record event", self._log.append, record)
        return event_to_pb(stored)

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        try:
            types = [EventType.from_proto(t).value for t in request.types]
        except Exception as err:
            await abort_with(context, err, "list events")

        def run() -> list[EventRecord]:
            return self._log.list(
                request.model or None,
                request.environment or None,
                start=request.start,
                end=request.end,
                types=types,
                limit=request.limit,
            )

        records = await _call(context, "list events", run)
        return pb.ListEventsResponse(events=[event_to_pb(r) for r in records])
