"""Change events in: validation, the :class:`EventLog` and CloudEvents 1.0 parsing.

A change event says what changed (``type``), when (``time``) and where (the
scope: ``model``, and optionally ``environment``, ``version``, ``node``,
``image``), with free ``attributes`` and who recorded it. Events come from
``RecordEvent`` (gRPC), ``baselined events add`` and CloudEvents posted to the
HTTP listener (``POST /v1/events``); they are stored per model with retention.
See ``docs/events.md``.

>>> from sidecar.stores import SQLiteStore
>>> log = EventLog(SQLiteStore(), clock=lambda: 1_700_000_000.0)
>>> event = log.record("deploy", time=1_700_000_000.0, model="fraud", version="v7")
>>> [e.version for e in log.list(model="fraud")]
['v7']
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import math
import re
import time as _time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sidecar.audit import actor_of, record_note
from sidecar.errors import AlreadyExists, Conflict, InvalidInput
from sidecar.records import EventRecord
from sidecar.stores.base import DEFAULT_EVENT_RETENTION, Store

__all__ = [
    "CLOUDEVENT_TYPE_PREFIX",
    "DEFAULT_LIMIT",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_BYTES",
    "MAX_NAME_LENGTH",
    "SOURCES",
    "BadCloudEvent",
    "CloudEventConflict",
    "EventLog",
    "EventType",
    "cloudevent_event_id",
    "event_type_from_cloudevent",
    "parse_cloudevent",
    "validate_event",
]

_log = logging.getLogger(__name__)

CLOUDEVENT_TYPE_PREFIX = "dev.baselined."
"""``ce-type`` of a baselined event type: ``dev.baselined.deploy``, ... (or plain ``deploy``)."""

SOURCES = ("grpc", "cli", "cloudevents", "derived")
"""Where an event came in (``EventRecord.source``)."""

MAX_ATTRIBUTES = 64
"""Most free attributes on one event."""

MAX_ATTRIBUTE_BYTES = 16 * 1024
"""Most bytes (UTF-8) of all attribute keys and values of one event together."""

MAX_NAME_LENGTH = 256
"""Longest model, environment, version, node, image, custom type, attribute key, actor."""

DEFAULT_LIMIT = 100
"""Events ``list`` returns when no limit is given."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class EventType(StrEnum):
    """What kind of change an event records (mirrors ``baselined.v1.EventType``)."""

    DEPLOY = "deploy"
    MODEL_ROLLOUT = "model_rollout"
    LIBRARY_UPDATE = "library_update"
    CONFIG_CHANGE = "config_change"
    NODE_CHANGE = "node_change"
    ACCELERATOR_CHANGE = "accelerator_change"
    DATA_SOURCE_CHANGE = "data_source_change"
    AUTOSCALE = "autoscale"
    IMAGE_CHANGE = "image_change"
    PYTHON_CHANGE = "python_change"
    CUSTOM = "custom"

    @classmethod
    def parse(cls, text: str) -> EventType:
        """The type named by ``text`` (``deploy``, ``model-rollout``, ``MODEL_ROLLOUT``);
        raises InvalidInput listing the known names otherwise."""
        name = text.strip().lower().replace("-", "_")
        try:
            return cls(name)
        except ValueError:
            raise InvalidInput(
                f"unknown event type {text!r}; use one of {', '.join(t.value for t in cls)}"
            ) from None

    @classmethod
    def from_proto(cls, number: int) -> EventType:
        """Map an ``EventType`` enum number; InvalidInput for 0 (unspecified) or unknown."""
        if number == 0:
            raise InvalidInput("the event has no type (EVENT_TYPE_UNSPECIFIED)")
        members = list(cls)
        if not 1 <= number <= len(members):
            raise InvalidInput(f"unknown event type number {number}")
        return members[number - 1]

    def to_proto(self) -> int:
        """The ``EventType`` enum number (declaration order, from 1)."""
        return list(EventType).index(self) + 1


def _check_name(what: str, value: str, *, required: bool = False) -> None:
    if not value:
        if required:
            raise InvalidInput(f"the event has no {what}")
        return
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"event {what} is {len(value)} characters long, over the limit of {MAX_NAME_LENGTH}"
        )
    bad = _CONTROL.search(value)
    if bad is not None:
        raise InvalidInput(
            f"event {what} {value!r} contains the control character U+{ord(bad.group()):04X}; "
            "names must be printable"
        )


def validate_event(
    record: EventRecord,
    *,
    now: float,
    max_clock_skew: float = 300.0,
    retention_seconds: float = DEFAULT_EVENT_RETENTION,
) -> None:
    """Raise InvalidInput naming the first problem of ``record``; return when it is storable."""
    if not record.type:
        raise InvalidInput("the event has no type")
    event_type = EventType.parse(record.type)
    if event_type is EventType.CUSTOM:
        _check_name("custom_type", record.custom_type, required=True)
    elif record.custom_type:
        raise InvalidInput(
            f"custom_type {record.custom_type!r} is only allowed with type custom, "
            f"not {event_type.value}"
        )
    if not record.time:
        raise InvalidInput("the event has no time (unix seconds when the change happened)")
    if not math.isfinite(record.time) or record.time < 0:
        raise InvalidInput(f"event time {record.time} is not finite non-negative unix seconds")
    if record.time > now + max_clock_skew:
        raise InvalidInput(
            f"event time {record.time:.3f} is {record.time - now:.3f} s in the future, beyond "
            f"max_clock_skew={max_clock_skew:g} s; check the sender's clock"
        )
    if record.time < now - retention_seconds:
        raise InvalidInput(
            f"event time {record.time:.3f} is {now - record.time:.0f} s ago, older than the "
            f"event retention of {retention_seconds:g} s; it would never be listed"
        )
    _check_name("model", record.model, required=True)
    for what in ("environment", "version", "node", "image", "recorded_by"):
        _check_name(what, getattr(record, what))
    if record.source and record.source not in SOURCES:
        raise InvalidInput(f"event source {record.source!r} is not one of {', '.join(SOURCES)}")
    if len(record.attributes) > MAX_ATTRIBUTES:
        raise InvalidInput(
            f"the event has {len(record.attributes)} attributes, over the limit of {MAX_ATTRIBUTES}"
        )
    size = 0
    for key, value in record.attributes.items():
        _check_name("attribute key", key, required=True)
        if not isinstance(value, str):
            raise InvalidInput(f"attribute {key!r} must be a string, got {type(value).__name__}")
        size += len(key.encode()) + len(value.encode())
    if size > MAX_ATTRIBUTE_BYTES:
        raise InvalidInput(
            f"the event's attributes take {size} bytes, over the limit of {MAX_ATTRIBUTE_BYTES}"
        )


class EventLog:
    """Validates change events and keeps them in a :class:`~sidecar.stores.base.Store`.

    ``clock`` gives unix seconds (``recorded_at``, the future-time check and
    retention); ``max_clock_skew`` is how far in the future an event time may
    be; ``retention_seconds`` how long events are kept (by event time).

    Every event recorded by hand (any source but ``derived``) also appends an
    audit entry (action ``record_event``, target the event id; actor the
    authenticated principal, else the event's ``recorded_by``) to the store's
    hash-chained audit log.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = _time.time,
        max_clock_skew: float = 300.0,
        retention_seconds: float = DEFAULT_EVENT_RETENTION,
    ) -> None:
        self._store = store
        self._clock = clock
        self.max_clock_skew = max_clock_skew
        self.retention_seconds = retention_seconds

    def record(
        self,
        type: str,
        *,
        time: float,
        model: str,
        environment: str = "",
        version: str = "",
        node: str = "",
        image: str = "",
        custom_type: str = "",
        attributes: Mapping[str, str] | None = None,
        recorded_by: str = "",
        source: str = "grpc",
    ) -> EventRecord:
        """Validate and store one event; return it with its id. Raises InvalidInput
        (nothing stored) naming the problem."""
        record = EventRecord(
            type=type,
            time=time,
            model=model,
            environment=environment,
            version=version,
            node=node,
            image=image,
            custom_type=custom_type,
            attributes=dict(attributes or {}),
            recorded_by=recorded_by,
            source=source,
        )
        return self.append(record)

    def append(self, record: EventRecord) -> EventRecord:
        """Validate and store a ready record (``recorded_at`` 0 becomes now)."""
        now = self._clock()
        validate_event(
            record,
            now=now,
            max_clock_skew=self.max_clock_skew,
            retention_seconds=self.retention_seconds,
        )
        record = dataclasses.replace(
            record,
            type=EventType.parse(record.type).value,
            recorded_at=record.recorded_at or now,
        )
        stored = self._store.append_event(record, retention_seconds=self.retention_seconds)
        if stored.source != "derived":
            self._audit(stored)
        return stored

    def update_attributes(
        self, model: str, event_id: str, attributes: Mapping[str, str]
    ) -> EventRecord:
        """Merge ``attributes`` into a stored event (derived events keep their
        instance share current this way). Raises InvalidInput when the merged
        attributes would break the limits, NotFound for an unknown event."""
        if len(attributes) > MAX_ATTRIBUTES or any(
            not isinstance(v, str) for v in attributes.values()
        ):
            raise InvalidInput(f"at most {MAX_ATTRIBUTES} string attributes")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
        if size > MAX_ATTRIBUTE_BYTES:
            raise InvalidInput(
                f"the attributes take {size} bytes, over the limit of {MAX_ATTRIBUTE_BYTES}"
            )
        return self._store.update_event_attributes(model, event_id, attributes)

    def _audit(self, event: EventRecord) -> None:
        # The event is stored already: a failed audit write is logged, not raised,
        # so a retrying client does not record the event twice.
        try:
            record_note(
                self._store,
                actor=actor_of(event.recorded_by),
                action="record_event",
                model=event.model,
                environment=event.environment,
                target=event.id,
                after={
                    "type": event.type,
                    "custom_type": event.custom_type,
                    "time": event.time,
                    "version": event.version,
                    "source": event.source,
                    "recorded_by": event.recorded_by,
                },
                clock=self._clock,
            )
        except Exception:
            _log.error("cannot audit the recorded event %s", event.id, exc_info=True)

    def record_cloudevent(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[EventRecord, bool]:
        """Parse a CloudEvent (see :func:`parse_cloudevent`), validate and store
        it; return the event and whether it is new.

        CloudEvents 1.0: ``source`` + ``id`` identify an event, so the stored id
        is :func:`cloudevent_event_id` of them and the store refuses it twice
        (atomically). A repeat of the same event (a retried POST) stores
        nothing, audits nothing and returns the stored event with ``False``; a
        repeat whose content differs (type, time, scope, attributes, actor)
        raises :class:`CloudEventConflict` naming the differing fields. A
        repeat without ``time`` matches any stored time (it would be the
        arrival time)."""
        record, timed = _parse_cloudevent(headers, body, now=self._clock())
        try:
            return self.append(record), True
        except AlreadyExists:
            pass
        ce_id = record.attributes["cloudevents.id"]
        ce_source = record.attributes["cloudevents.source"]
        stored = self._find(record)
        if stored is None:
            raise CloudEventConflict(
                f"the CloudEvent id {ce_id!r} from source {ce_source!r} was recorded already"
                f" (event {record.id}) but is no longer stored; send a new ce-id"
            )
        fields = _EVENT_FIELDS if timed else _EVENT_FIELDS[1:]
        differ = [f for f in fields if getattr(stored, f) != getattr(record, f)]
        if differ:
            raise CloudEventConflict(
                f"the CloudEvent id {ce_id!r} from source {ce_source!r} was recorded already"
                f" (event {stored.id}) with a different {', '.join(differ)}; a new event"
                " needs a new ce-id"
            )
        return stored, False

    def _find(self, record: EventRecord) -> EventRecord | None:
        """The stored event with ``record.id``: looked for at its time, then in
        its model, then everywhere (a repeat may name another model). A few
        short retries cover a concurrent first POST whose write is in flight."""
        for attempt in range(5):
            for model, start, end in (
                (record.model, record.time, math.nextafter(record.time, math.inf)),
                (record.model, 0.0, math.inf),
                (None, 0.0, math.inf),
            ):
                limit = 1000 if end != math.inf else 1_000_000_000
                for event in self._store.list_events(model, None, start, end, limit):
                    if event.id == record.id:
                        return event
            _time.sleep(0.02 * (attempt + 1))
        return None

    def list(
        self,
        model: str | None = None,
        environment: str | None = None,
        *,
        start: float = 0.0,
        end: float = 0.0,
        types: Sequence[str] = (),
        limit: int = 0,
    ) -> list[EventRecord]:
        """The newest ``limit`` (0: :data:`DEFAULT_LIMIT`) events with
        ``start <= time < end`` (``end`` 0: no bound), oldest first."""
        if start < 0 or end < 0 or not (math.isfinite(start) and math.isfinite(end)):
            raise InvalidInput(f"start and end must be unix seconds, got {start} and {end}")
        if end and start >= end:
            raise InvalidInput(f"start {start} must be before end {end}")
        if limit < 0:
            raise InvalidInput(f"limit must not be negative, got {limit}")
        names = [EventType.parse(t).value for t in types]
        # Older events may linger until the next append trims them: never list them.
        start = max(start, self._clock() - self.retention_seconds)
        return self._store.list_events(
            model or None,
            environment or None,
            start,
            end or math.inf,
            limit or DEFAULT_LIMIT,
            types=names,
        )


# -- CloudEvents 1.0 -------------------------------------------------------------

_STRUCTURED = "application/cloudevents+json"
_BATCH = "application/cloudevents-batch+json"
_FORM = "application/x-www-form-urlencoded"
_REQUIRED = ("specversion", "id", "source", "type")
_DATA_KEYS = frozenset(
    ["model", "environment", "version", "node", "image", "attributes", "custom_type", "actor"]
)


_EVENT_FIELDS = (
    "time",
    "type",
    "custom_type",
    "model",
    "environment",
    "version",
    "node",
    "image",
    "attributes",
    "recorded_by",
)
"""What a repeated CloudEvent must match (``time`` only when the repeat names one)."""


def cloudevent_event_id(source: str, ce_id: str) -> str:
    """The stored id of the CloudEvent ``(source, id)``: ``ev-`` and 20 hex
    digits of their SHA-256, so a repeat of the event gets the same id.

    >>> cloudevent_event_id("/ci", "run-1") == cloudevent_event_id("/ci", "run-1")
    True
    >>> cloudevent_event_id("/ci", "run-1") != cloudevent_event_id("/ci/run-1", "")
    True
    """
    digest = hashlib.sha256(json.dumps([source, ce_id]).encode()).hexdigest()
    return f"ev-{digest[:20]}"


class CloudEventConflict(Conflict):
    """A CloudEvent whose ``(source, id)`` was recorded already with different
    content (answered 409; nothing stored)."""

    reason = "duplicate_id_conflict"


class BadCloudEvent(InvalidInput):
    """A request to ``/v1/events`` that is not a valid CloudEvent 1.0 baselined
    event (answered 400). ``reason`` is a short key; the message says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def event_type_from_cloudevent(ce_type: str) -> tuple[EventType, str]:
    """(type, custom_type) of a ``ce-type``: ``dev.baselined.<type>`` or a plain
    type name maps to that type; any other ``ce-type`` (``com.example.migrated``)
    is a custom event named by it."""
    name = ce_type.strip()
    if name.startswith(CLOUDEVENT_TYPE_PREFIX):
        try:
            return EventType.parse(name[len(CLOUDEVENT_TYPE_PREFIX) :]), ""
        except InvalidInput as err:
            raise BadCloudEvent("bad_type", f"ce-type {ce_type!r}: {err}") from None
    try:
        return EventType.parse(name), ""
    except InvalidInput:
        return EventType.CUSTOM, name


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _loads(raw: bytes | str, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadCloudEvent("not_json", f"{what} is not JSON: {err}") from None


def _parse_time(text: str) -> float:
    # RFC 3339: a date, "T", a time and a zone ("Z" or an offset).
    if not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", text):
        raise BadCloudEvent(
            "bad_time", f"ce-time {text!r} is not an RFC 3339 time like 2026-11-27T10:00:00Z"
        )
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as err:
        raise BadCloudEvent("bad_time", f"ce-time {text!r} is not a valid time: {err}") from None
    return moment.timestamp()


def _check_required(attrs: Mapping[str, str]) -> None:
    for name in _REQUIRED:
        if not attrs.get(name):
            raise BadCloudEvent(
                f"missing_{name}",
                f"the CloudEvent has no {name} (ce-{name}); CloudEvents 1.0"
                " requires specversion, id, source and type",
            )
    if attrs["specversion"] != "1.0":
        raise BadCloudEvent(
            "bad_specversion", f"specversion {attrs['specversion']!r} is not supported; use 1.0"
        )


def _attributes_and_data(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], Any]:
    content_type = headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == _BATCH:
        raise BadCloudEvent("batch_mode", "CloudEvents batch mode is not supported; send one event")
    if media == _STRUCTURED:
        envelope = _loads(body, "the structured CloudEvent")
        if not isinstance(envelope, dict):
            raise BadCloudEvent("not_object", "a structured CloudEvent must be a JSON object")
        attrs: dict[str, str] = {}
        for key, value in envelope.items():
            if key in ("data", "data_base64"):
                continue
            if not isinstance(value, str):
                raise BadCloudEvent(
                    "bad_attribute", f"CloudEvent attribute {key!r} must be a string"
                )
            attrs[key] = value
        _check_required(attrs)
        if "data_base64" in envelope:
            try:
                raw = base64.b64decode(str(envelope["data_base64"]), validate=True)
            except (binascii.Error, ValueError):
                raise BadCloudEvent("not_json", "data_base64 is not valid base64") from None
            return attrs, _loads(raw, "data_base64")
        data = envelope.get("data")
        if isinstance(data, str) and _is_json(attrs.get("datacontenttype", "")):
            data = _loads(data, "data")
        return attrs, data
    attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    if not attrs:
        raise BadCloudEvent(
            "not_cloudevent",
            "no ce-* headers and Content-Type is not application/cloudevents+json;"
            " send a CloudEvent in binary or structured mode",
        )
    _check_required(attrs)
    if not body.strip():
        return attrs, None
    # curl -d sends application/x-www-form-urlencoded unless told otherwise: try JSON.
    if media not in ("", _FORM) and not _is_json(content_type):
        raise BadCloudEvent(
            "not_json", f"the event data must be JSON (Content-Type {content_type!r})"
        )
    return attrs, _loads(body, "the event data")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise BadCloudEvent("bad_data", f"data field {key!r} must be a string")
    return value


def parse_cloudevent(headers: Mapping[str, str], body: bytes, *, now: float) -> EventRecord:
    """An (unvalidated) event from a CloudEvent 1.0 in binary mode
    (``ce-*`` headers, JSON body) or structured mode (``Content-Type:
    application/cloudevents+json``). ``headers`` keys must be lower case.

    Mapping: type from ``ce-type`` (:func:`event_type_from_cloudevent`); time
    from ``ce-time`` (else ``now``); model from ``data.model``, else
    ``ce-subject``; scope, ``attributes``, ``custom_type`` and ``actor`` from
    the data object; recorded_by is ``data.actor``, else ``ce-source``.
    ``ce-id``, ``ce-source`` and ``ce-subject`` are kept as attributes
    ``cloudevents.id`` / ``.source`` / ``.subject``; the event id is
    :func:`cloudevent_event_id` of ``ce-source`` and ``ce-id``. Raises BadCloudEvent.
    """
    return _parse_cloudevent(headers, body, now=now)[0]


def _parse_cloudevent(
    headers: Mapping[str, str], body: bytes, *, now: float
) -> tuple[EventRecord, bool]:
    """:func:`parse_cloudevent` and whether the CloudEvent names its time."""
    attrs, data = _attributes_and_data(headers, body)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadCloudEvent("bad_data", "the event data must be a JSON object")
    unknown = sorted(set(data) - _DATA_KEYS)
    if unknown:
        raise BadCloudEvent(
            "unknown_field",
            f"unknown data field(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(_DATA_KEYS))} (free values go in 'attributes')",
        )
    event_type, custom_type = event_type_from_cloudevent(attrs["type"])
    if data.get("custom_type"):
        custom_type = _text(data, "custom_type")
    raw_attributes = data.get("attributes") or {}
    if not isinstance(raw_attributes, dict):
        raise BadCloudEvent("bad_data", "data field 'attributes' must be a JSON object")
    attributes: dict[str, str] = {}
    for key, value in raw_attributes.items():
        if isinstance(value, bool):
            attributes[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            attributes[key] = str(value)
        else:
            raise BadCloudEvent(
                "bad_data", f"attribute {key!r} must be a string, number or boolean"
            )
    attributes["cloudevents.id"] = attrs["id"]
    attributes["cloudevents.source"] = attrs["source"]
    if attrs.get("subject"):
        attributes["cloudevents.subject"] = attrs["subject"]
    record = EventRecord(
        id=cloudevent_event_id(attrs["source"], attrs["id"]),
        type=event_type.value,
        custom_type=custom_type,
        time=_parse_time(attrs["time"]) if attrs.get("time") else now,
        model=_text(data, "model") or attrs.get("subject", ""),
        environment=_text(data, "environment"),
        version=_text(data, "version"),
        node=_text(data, "node"),
        image=_text(data, "image"),
        attributes=attributes,
        recorded_by=_text(data, "actor") or attrs["source"],
        source="cloudevents",
    )
    return record, bool(attrs.get("time"))
