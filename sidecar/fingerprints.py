"""Change events derived from the runtime fingerprints senders report.

Every accepted batch carries its sender's fingerprint (``middleware.fingerprint``:
``python``, ``lib.<package>``, ``cuda.*``, ``k8s.node``, ``container.image``,
...). :class:`FingerprintTracker` keeps the latest one per (model,
environment, instance); when an instance's fingerprint changes it derives one
difference per changed field and records it as a change event (``source``
``derived``, ``recorded_by`` ``baselined``):

==========================================  ======================
field                                       event type
==========================================  ======================
``lib.<package>``                           ``library_update``
``k8s.node``                                ``node_change``
``container.image``                         ``image_change``
``cuda.*``, ``cudnn.*``, ``nvidia.*``,      ``accelerator_change``
``accelerator.*``, ``gpu.*``
``python``, ``python.implementation``       ``python_change``
``k8s.pod``, ``k8s.pod_ip``,                ignored (identity of
``nvidia.visible_devices``                  one process, not a change)
anything else (``platform.*``, ``libc``,    ``config_change``
fields of your own)
==========================================  ======================

A fleet rolling out gradually gives one event per (model, environment,
field, new value), recorded when the first instance moves. Its attributes
``share`` (instances carrying the new value / instances seen, 4 decimals),
``instances_changed`` (instances seen moving to it), ``instances_seen`` and,
when the instances report ``k8s.node``, ``nodes`` (the nodes of the instances
carrying the new value, sorted, at most 10, comma-separated) and
``nodes_carrying`` (how many nodes in all) are kept up to date with
``Store.update_event_attributes`` as more instances move or appear. An
instance that first appears already on the new value counts toward ``share``
but not ``instances_changed``; an instance that appears on a value no
tracked difference carries is not a change. Instances
not heard from for ``idle_seconds`` leave the count; past ``max_instances``
(all models together) the least recently heard from are forgotten. A
difference is forgotten when no instance carries its value any more (a
rollback): rolling forward again records a new event.

Flood protection: past ``flood_limit`` new differences per (model,
environment) within ``flood_window`` seconds, further ones fold into one
``config_change`` event per window with ``summary`` "rate-limited: N
differences" and the counts in ``differences_folded`` and ``fields``.

>>> from sidecar.events import EventLog
>>> from sidecar.stores import SQLiteStore
>>> log = EventLog(SQLiteStore(), clock=lambda: 1_700_000_100.0)
>>> tracker = FingerprintTracker(log, clock=lambda: 1_700_000_100.0)
>>> tracker.observe("m", "prod", "pod-1", {"lib.numpy": "1.26.4"}, 1_700_000_000.0)
[]
>>> [(e.type, e.attributes["to"]) for e in tracker.observe(
...     "m", "prod", "pod-1", {"lib.numpy": "2.1.0"}, 1_700_000_060.0)]
[('library_update', '2.1.0')]
"""

from __future__ import annotations

import logging
import threading
import time as _time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sidecar.events import EventLog, EventType
from sidecar.ingest import DecodedBatch
from sidecar.records import EventRecord

__all__ = [
    "DEFAULT_FLOOD_LIMIT",
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_MAX_INSTANCES",
    "IGNORED_FIELDS",
    "RECORDED_BY",
    "FingerprintTracker",
    "event_type_of",
]

_log = logging.getLogger(__name__)

RECORDED_BY = "baselined"
"""``recorded_by`` of derived events."""

DEFAULT_MAX_INSTANCES = 10_000
"""Instances remembered over all (model, environment) pairs."""

DEFAULT_IDLE_SECONDS = 3600.0
"""An instance not heard from this long leaves the share's denominator."""

DEFAULT_FLOOD_LIMIT = 20
"""New differences per (model, environment) per flood window recorded one by one."""

IGNORED_FIELDS = frozenset({"k8s.pod", "k8s.pod_ip", "nvidia.visible_devices"})
"""Fields that name one process or device slot: they differ between pods, not releases."""

_ACCELERATOR_PREFIXES = ("cuda.", "cudnn.", "nvidia.", "accelerator.", "gpu.")
_MAX_DIFFERENCES = 1024  # open differences kept per (model, environment)
_MAX_FIELDS_LISTED = 16  # field names listed on a rate-limited summary
_MAX_NODES_LISTED = 10  # nodes listed on a difference ("nodes" attribute)
_NODE_FIELD = "k8s.node"


def event_type_of(name: str) -> EventType | None:
    """The event type a change of fingerprint field ``name`` derives, or None
    when such a change is ignored (see the module table)."""
    if name in IGNORED_FIELDS:
        return None
    if name.startswith("lib."):
        return EventType.LIBRARY_UPDATE
    if name == "k8s.node":
        return EventType.NODE_CHANGE
    if name == "container.image":
        return EventType.IMAGE_CHANGE
    if name.startswith(_ACCELERATOR_PREFIXES):
        return EventType.ACCELERATOR_CHANGE
    if name in ("python", "python.implementation"):
        return EventType.PYTHON_CHANGE
    return EventType.CONFIG_CHANGE


@dataclass(slots=True)
class _Instance:
    hash: str
    fields: dict[str, str]
    last_seen: float


@dataclass(slots=True)
class _Difference:
    event_id: str  # "" when recording failed or the difference was folded
    changed: set[str] = field(default_factory=set)
    written: tuple[str, ...] = ()  # share, changed, seen (and nodes) last stored


@dataclass(slots=True)
class _Fleet:
    instances: dict[str, _Instance] = field(default_factory=dict)
    differences: dict[tuple[str, str], _Difference] = field(default_factory=dict)
    flood_start: float = -1.0
    flood_count: int = 0
    summary_id: str = ""
    folded: int = 0
    folded_fields: dict[str, int] = field(default_factory=dict)


def _digest(fields: Mapping[str, str]) -> str:
    return "\n".join(f"{k}={fields[k]}" for k in sorted(fields))


class FingerprintTracker:
    """Keeps the fingerprint of every (model, environment, instance) and turns
    changes into derived change events in ``events`` (see the module doc).

    ``clock`` (unix seconds) times idleness and the flood window; event times
    are the ``time`` given to :meth:`observe`. Thread-safe.
    """

    def __init__(
        self,
        events: EventLog,
        *,
        clock: Callable[[], float] = _time.time,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        flood_limit: int = DEFAULT_FLOOD_LIMIT,
        flood_window: float = 60.0,
    ) -> None:
        if max_instances < 1 or flood_limit < 0 or idle_seconds <= 0 or flood_window <= 0:
            raise ValueError("max_instances >= 1, flood_limit >= 0, positive durations")
        self._events = events
        self._clock = clock
        self.max_instances = max_instances
        self.idle_seconds = idle_seconds
        self.flood_limit = flood_limit
        self.flood_window = flood_window
        self._fleets: dict[tuple[str, str], _Fleet] = {}
        self._known: dict[tuple[str, str, str], _Instance] = {}
        self._lock = threading.Lock()
        self.errors = 0  # derived events that could not be recorded or updated

    def observe(
        self,
        model: str,
        environment: str,
        instance: str,
        fingerprint_fields: Mapping[str, str],
        time: float,
        *,
        fingerprint_hash: str = "",
    ) -> list[EventRecord]:
        """Note the fingerprint one instance reported at ``time``; return the
        events recorded (or updated) because of it, usually none.

        With ``fingerprint_hash`` (the middleware's) an unchanged fingerprint
        costs one dict lookup; without it the fields are compared."""
        key = (model, environment, instance)
        known = self._known.get(key)
        if known is not None and fingerprint_hash and known.hash == fingerprint_hash:
            known.last_seen = self._clock()
            return []
        with self._lock:
            return self._observe(key, dict(fingerprint_fields), fingerprint_hash, time)

    def observe_batch(self, data: DecodedBatch) -> None:
        """:meth:`observe` an accepted batch (its instance, fingerprint and first
        timestamp); batches without a fingerprint are skipped."""
        fp = data.fingerprint
        if fp is None or not (fp.hash or fp.fields):
            return
        self.observe(
            data.model,
            data.environment,
            data.instance,
            fp.fields,
            float(data.timestamps[0]),
            fingerprint_hash=fp.hash,
        )

    def instances(self, model: str, environment: str) -> int:
        """Instances currently counted for (model, environment)."""
        with self._lock:
            fleet = self._fleets.get((model, environment))
            return 0 if fleet is None else len(fleet.instances)

    # -- the slow path (under the lock) ----------------------------------------

    def _observe(
        self, key: tuple[str, str, str], fields: dict[str, str], hash_: str, time: float
    ) -> list[EventRecord]:
        model, environment, instance = key
        now = self._clock()
        fleet = self._fleets.setdefault((model, environment), _Fleet())
        known = fleet.instances.get(instance)
        if known is not None and (hash_ or _digest(fields)) == (
            known.hash if hash_ else _digest(known.fields)
        ):
            known.hash, known.last_seen = hash_, now
            return []
        self._drop_idle(fleet, model, environment, now)
        entry = _Instance(hash_, fields, now)
        fleet.instances[instance] = entry
        self._known[key] = entry
        if known is None:
            self._bound(now)
        changed: list[tuple[str, str, str]] = []
        if known is not None:
            for name in sorted(set(known.fields) | set(fields)):
                old, new = known.fields.get(name, ""), fields.get(name, "")
                if old != new and event_type_of(name) is not None:
                    changed.append((name, old, new))
        else:
            changed = _replacement_changes(fleet, instance, fields)
        out: list[EventRecord] = []
        for name, old, new in changed:
            diff = fleet.differences.get((name, new))
            if diff is None:
                made = self._open(fleet, model, environment, instance, name, old, new, time, now)
                if made is not None:
                    out.append(made)
            else:
                diff.changed.add(instance)
        out += self._refresh(fleet, model)
        return out

    def _drop_idle(self, fleet: _Fleet, model: str, environment: str, now: float) -> None:
        cutoff = now - self.idle_seconds
        for name in [n for n, i in fleet.instances.items() if i.last_seen < cutoff]:
            del fleet.instances[name]
            self._known.pop((model, environment, name), None)

    def _bound(self, now: float) -> None:
        """Past max_instances, forget the least recently heard from."""
        excess = len(self._known) - self.max_instances
        if excess <= 0:
            return
        oldest = sorted(self._known.items(), key=lambda kv: kv[1].last_seen)[:excess]
        for (model, environment, name), _ in oldest:
            del self._known[(model, environment, name)]
            fleet = self._fleets.get((model, environment))
            if fleet is not None:
                fleet.instances.pop(name, None)
                if not fleet.instances:
                    del self._fleets[(model, environment)]

    def _open(
        self,
        fleet: _Fleet,
        model: str,
        environment: str,
        instance: str,
        name: str,
        old: str,
        new: str,
        time: float,
        now: float,
    ) -> EventRecord | None:
        """A difference no instance of the fleet made before: record its event,
        or fold it into the window's summary when the fleet is flooding."""
        if len(fleet.differences) >= _MAX_DIFFERENCES:
            del fleet.differences[next(iter(fleet.differences))]
        if fleet.flood_start < 0 or now >= fleet.flood_start + self.flood_window:
            fleet.flood_start, fleet.flood_count = now, 0
            fleet.summary_id, fleet.folded, fleet.folded_fields = "", 0, {}
        fleet.flood_count += 1
        diff = fleet.differences[(name, new)] = _Difference("", {instance})
        if fleet.flood_count > self.flood_limit:
            return self._fold(fleet, model, environment, name, time)
        event_type = event_type_of(name)
        assert event_type is not None
        attributes = {"field": name, "from": old, "to": new}
        if event_type is EventType.LIBRARY_UPDATE:
            attributes["package"] = name[len("lib.") :]
        attributes |= self._share(fleet, name, new, diff)
        record = self._record(
            event_type,
            model=model,
            environment=environment,
            node=new if event_type is EventType.NODE_CHANGE else "",
            image=new if event_type is EventType.IMAGE_CHANGE else "",
            attributes=attributes,
            time=time,
        )
        if record is not None:
            diff.event_id, diff.written = record.id, self._figures(attributes)
        return record

    def _fold(
        self, fleet: _Fleet, model: str, environment: str, name: str, time: float
    ) -> EventRecord | None:
        fleet.folded += 1
        fleet.folded_fields[name] = fleet.folded_fields.get(name, 0) + 1
        listed = sorted(fleet.folded_fields.items(), key=lambda kv: (-kv[1], kv[0]))
        attributes = {
            "summary": f"rate-limited: {fleet.folded} differences",
            "differences_folded": str(fleet.folded),
            "differences_recorded": str(self.flood_limit),
            "flood_limit": str(self.flood_limit),
            "flood_window_seconds": f"{self.flood_window:g}",
            "fields": ",".join(f"{n}={c}" for n, c in listed[:_MAX_FIELDS_LISTED]),
        }
        if not fleet.summary_id:
            record = self._record(
                EventType.CONFIG_CHANGE,
                model=model,
                environment=environment,
                node="",
                image="",
                attributes=attributes,
                time=time,
            )
            fleet.summary_id = record.id if record is not None else ""
            return record
        return self._update(model, fleet.summary_id, attributes)

    def _share(self, fleet: _Fleet, name: str, value: str, diff: _Difference) -> dict[str, str]:
        holders = [i for i in fleet.instances.values() if i.fields.get(name, "") == value]
        carrying = len(holders)
        seen = len(fleet.instances)
        out = {
            "share": f"{carrying / seen:.4f}" if seen else "0.0000",
            "instances_carrying": str(carrying),
            "instances_changed": str(len(diff.changed)),
            "instances_seen": str(seen),
        }
        # Where the new value runs: the nodes (k8s.node) of the instances carrying it.
        nodes = sorted({i.fields[_NODE_FIELD] for i in holders if i.fields.get(_NODE_FIELD)})
        if nodes or diff.written[3:4] not in ((), ("",)):
            out["nodes"] = ",".join(nodes[:_MAX_NODES_LISTED])
            out["nodes_carrying"] = str(len(nodes))
        return out

    @staticmethod
    def _figures(attributes: Mapping[str, str]) -> tuple[str, ...]:
        return (
            attributes["share"],
            attributes["instances_changed"],
            attributes["instances_seen"],
            attributes.get("nodes", ""),
        )

    def _refresh(self, fleet: _Fleet, model: str) -> list[EventRecord]:
        """Bring the share of every open difference up to date; forget those no
        instance carries any more."""
        out: list[EventRecord] = []
        for (name, value), diff in list(fleet.differences.items()):
            if not diff.event_id:
                continue
            attributes = self._share(fleet, name, value, diff)
            if attributes["instances_carrying"] == "0":
                del fleet.differences[(name, value)]
            figures = self._figures(attributes)
            if figures == diff.written:
                continue
            updated = self._update(model, diff.event_id, attributes)
            if updated is not None:
                diff.written = figures
                out.append(updated)
        return out

    def _record(
        self,
        event_type: EventType,
        *,
        model: str,
        environment: str,
        node: str,
        image: str,
        attributes: Mapping[str, str],
        time: float,
    ) -> EventRecord | None:
        try:
            return self._events.record(
                event_type.value,
                time=time,
                model=model,
                environment=environment,
                node=node,
                image=image,
                attributes=attributes,
                recorded_by=RECORDED_BY,
                source="derived",
            )
        except Exception:  # a derived event must never refuse a batch
            self.errors += 1
            _log.warning("cannot record a derived %s event", event_type.value, exc_info=True)
            return None

    def _update(
        self, model: str, event_id: str, attributes: Mapping[str, str]
    ) -> EventRecord | None:
        try:
            return self._events.update_attributes(model, event_id, attributes)
        except Exception:
            self.errors += 1
            _log.warning("cannot update the derived event %s", event_id, exc_info=True)
            return None


def _replacement_changes(
    fleet: _Fleet, instance: str, fields: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """A rollout that replaces pods: a new instance joining a fleet with a value no
    other live instance carries is a change from the fleet's most common value
    (a Kubernetes rolling update gives every new pod a new name). A new instance
    on a value the fleet already has (scale-up) changes nothing."""
    others = [entry for name, entry in fleet.instances.items() if name != instance]
    if not others:
        return []
    out: list[tuple[str, str, str]] = []
    for name in sorted(fields):
        if event_type_of(name) is None:
            continue
        values = Counter(entry.fields.get(name, "") for entry in others)
        new = fields[name]
        if new not in values:
            out.append((name, values.most_common(1)[0][0], new))
    return out
