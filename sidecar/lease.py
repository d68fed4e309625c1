"""Fleet mode: one leader per (model, environment), fenced by the store.

Any number of sidecars share one store. Each writes its own window partials
(per writer, so they never contend) and reads every writer's partials when it
compares, so every sidecar sees the fleet's data. For each (model,
environment) with an active baseline one sidecar holds a *lease*
(:meth:`Store.acquire_lease`: on Redis ``SET NX PX`` with a fencing token from
a per-(model, environment) ``INCR`` counter, in the model's hash slot). Only
the holder runs the fleet-wide comparison and advances the alert lifecycle,
so each alert is raised once, by one sidecar's sinks.

* :class:`LeaseManager` acquires, renews (every ``ttl / 3``, compare-and-renew)
  and releases (on clean shutdown) this sidecar's leases.
* Before an alert change reaches the sinks, the leader writes the alert state
  of that (model, environment) with :meth:`Store.write_alert_state`, naming its
  token; the store refuses the write once the lease moved on, the stale leader
  forgets the scope and sends nothing.
* A sidecar that takes a lease over loads the stored alert state, so an alert
  the dead leader raised stays firing and is not raised again.
* Every sidecar answers ``ListAlerts`` with the fleet view: alerts of scopes it
  leads from memory, the others from the stored state (refreshed every check),
  whose changes it also feeds to its ``WatchAlerts`` streams (not its sinks).

Takeover: a dead holder's lease expires at most ``ttl`` after its last renewal;
the others try to acquire free leases every ``ttl / 3``, and the new holder
compares at once. So comparisons resume within ``4/3 * ttl`` (13.3 s with the
default ``lease_ttl`` of 10 s) plus one comparison.

>>> from sidecar.stores import SQLiteStore
>>> store = SQLiteStore()
>>> leases = LeaseManager(store, "sidecar-a", ttl=10.0)
>>> leases.ensure("fraud", "prod"), LeaseManager(store, "sidecar-b", ttl=10.0).ensure("fraud", "prod")
(1, None)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.alerts import Alert, Alerter
from sidecar.compare import SeriesFinding
from sidecar.correlation import correlation_fields, correlation_from_fields
from sidecar.errors import ConfigError, Conflict
from sidecar.guardrails import Tier
from sidecar.records import SeriesId
from sidecar.stats.effects import Effect
from sidecar.stores.base import Store

__all__ = [
    "Fleet",
    "LeaseManager",
    "ScopeState",
    "decode_state",
    "encode_state",
    "fleet_enabled",
]

log = logging.getLogger(__name__)

Scope = tuple[str, str]
"""(model, environment)."""

_STATE_VERSION = 1
_RESOLVED_KEPT = 50  # resolved alerts of a scope kept in its stored state


def fleet_enabled(mode: str, store_url: str) -> bool:
    """Whether fleet mode is on: ``on``, ``off``, or ``auto`` (on for Redis stores).

    >>> fleet_enabled("auto", "redis://cache:6379/0"), fleet_enabled("auto", "sqlite:///b.db")
    (True, False)
    """
    mode = mode.strip().lower()
    if mode == "on":
        return True
    if mode == "off":
        return False
    if mode == "auto":
        scheme = store_url.strip().partition("://")[0].lower()
        return scheme in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
    raise ConfigError(f"setting 'fleet_mode' must be auto, on or off, got {mode!r}")


# -- the alert state of one scope, as the leader stores it ----------------------


@dataclass
class ScopeState:
    """The alert lifecycle of one (model, environment): per series + phase its
    streaks, firing alert and clear-since time; cooldowns by fingerprint; the
    latest resolved alerts."""

    model: str
    environment: str
    tracks: dict[tuple[SeriesId, str], tuple[dict[Tier, int], Alert | None, float | None]] = field(
        default_factory=dict
    )
    cooldowns: dict[str, float] = field(default_factory=dict)
    resolved: list[Alert] = field(default_factory=list)

    def alerts(self) -> list[Alert]:
        """Firing alerts, then the resolved ones kept."""
        return [a for _, a, _ in self.tracks.values() if a is not None] + self.resolved


def _num(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return repr(value)  # 'nan', 'inf', '-inf': strict JSON


def _unnum(value: Any) -> float:
    return float(value)


def _finding_json(f: SeriesFinding) -> dict[str, Any]:
    return {
        "series": f.series.encode(),
        "phase": f.phase,
        "effects": [
            [e.name, _num(e.estimate), _num(e.lower), _num(e.upper), e.unit]
            for e in f.effects.values()
        ],
        "tier": None if f.tier is None else int(f.tier),
        "fired": [[name, int(tier), _num(g)] for name, tier, g in f.fired],
        "counts": [f.baseline_count, f.live_count],
    }


def _finding(raw: Mapping[str, Any]) -> SeriesFinding:
    effects = {
        e[0]: Effect(e[0], _unnum(e[1]), _unnum(e[2]), _unnum(e[3]), e[4]) for e in raw["effects"]
    }
    return SeriesFinding(
        series=SeriesId.parse(raw["series"]),
        phase=raw["phase"],
        effects=effects,
        tier=None if raw["tier"] is None else Tier(raw["tier"]),
        fired=tuple((n, Tier(t), _unnum(g)) for n, t, g in raw["fired"]),
        baseline_count=int(raw["counts"][0]),
        live_count=int(raw["counts"][1]),
    )


def _alert_json(a: Alert) -> dict[str, Any]:
    # The correlation (root-cause hints) is stored too, so a new leader's copy of the
    # alert (and a non-leader's ListAlerts) still carries its suspects and attribution.
    out: dict[str, Any] = {
        "fingerprint": a.fingerprint,
        "tier": int(a.tier),
        "state": a.state,
        "started_at": a.started_at,
        "updated_at": a.updated_at,
        "resolved_at": a.resolved_at,
        "baseline_id": a.baseline_id,
        "window": [a.window_start, a.window_end],
        "findings": [_finding_json(f) for f in a.findings],
        "summary": a.summary,
        "playbook_url": a.playbook_url,
        "labels": dict(a.labels),
    }
    if a.correlation is not None:
        out["correlation"] = correlation_fields(a.correlation)
    return out


def _alert(model: str, environment: str, raw: Mapping[str, Any]) -> Alert:
    # States saved before the correlation was stored have no "correlation": None.
    raw_correlation = raw.get("correlation")
    return Alert(
        fingerprint=raw["fingerprint"],
        model=model,
        environment=environment,
        tier=Tier(raw["tier"]),
        state=raw["state"],
        started_at=float(raw["started_at"]),
        updated_at=float(raw["updated_at"]),
        resolved_at=None if raw["resolved_at"] is None else float(raw["resolved_at"]),
        baseline_id=raw["baseline_id"],
        window_start=float(raw["window"][0]),
        window_end=float(raw["window"][1]),
        findings=tuple(_finding(f) for f in raw["findings"]),
        summary=raw["summary"],
        playbook_url=raw["playbook_url"],
        labels=dict(raw["labels"]),
        correlation=None if raw_correlation is None else correlation_from_fields(raw_correlation),
    )


def encode_state(state: ScopeState) -> bytes:
    """The JSON the leader stores for one scope (``Store.write_alert_state``)."""
    doc = {
        "v": _STATE_VERSION,
        "tracks": [
            {
                "series": sid.encode(),
                "phase": phase,
                "streak": {str(int(t)): n for t, n in streak.items() if n},
                "firing": None if firing is None else _alert_json(firing),
                "clear_since": clear_since,
            }
            for (sid, phase), (streak, firing, clear_since) in state.tracks.items()
        ],
        "cooldowns": state.cooldowns,
        "resolved": [_alert_json(a) for a in state.resolved[-_RESOLVED_KEPT:]],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_state(model: str, environment: str, data: bytes) -> ScopeState:
    """Read what :func:`encode_state` wrote; raises ``ValueError`` for anything else."""
    try:
        doc = json.loads(data)
        if doc.get("v") != _STATE_VERSION:
            raise ValueError(f"alert state version {doc.get('v')!r} is not {_STATE_VERSION}")
        state = ScopeState(model, environment)
        for t in doc["tracks"]:
            streak = dict.fromkeys(Tier, 0)
            streak.update({Tier(int(k)): int(n) for k, n in t["streak"].items()})
            firing = None if t["firing"] is None else _alert(model, environment, t["firing"])
            clear = None if t["clear_since"] is None else float(t["clear_since"])
            state.tracks[(SeriesId.parse(t["series"]), t["phase"])] = (streak, firing, clear)
        state.cooldowns = {str(k): float(v) for k, v in doc["cooldowns"].items()}
        state.resolved = [_alert(model, environment, a) for a in doc["resolved"]]
    except (KeyError, TypeError, AttributeError, ValueError) as err:  # JSONDecodeError too
        raise ValueError(f"alert state of {model}/{environment} is unreadable: {err}") from err
    return state


# -- leases -----------------------------------------------------------------------


@dataclass
class _Held:
    token: int
    valid_until: float  # monotonic: the last successful grant or renewal + ttl


class LeaseManager:
    """The leases this sidecar (``holder``) holds, with ``ttl`` seconds each.

    :meth:`ensure` acquires (or confirms) one lease; :meth:`renew` extends all
    held ones; :meth:`release_all` gives them up. A lease counts as held only
    while its last grant or renewal is younger than ``ttl`` by this process's
    monotonic clock (started before the call that granted it), so a sidecar that
    cannot reach the store stops acting as leader before its lease can expire
    in the store. Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        holder: str,
        ttl: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ConfigError(f"setting 'lease_ttl' must be greater than 0, got {ttl!r}")
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self._monotonic = monotonic
        self._held: dict[Scope, _Held] = {}
        self._lock = threading.Lock()

    def token(self, model: str, environment: str) -> int | None:
        """Our token when we hold the lease (locally still valid), else None."""
        with self._lock:
            held = self._held.get((model, environment))
            if held is None or held.valid_until <= self._monotonic():
                return None
            return held.token

    def held(self) -> dict[Scope, int]:
        """Scopes we hold now, with their tokens."""
        now = self._monotonic()
        with self._lock:
            return {k: h.token for k, h in self._held.items() if h.valid_until > now}

    def ensure(self, model: str, environment: str) -> int | None:
        """Acquire the lease (or confirm and extend ours); our token, or None
        when another sidecar holds it."""
        began = self._monotonic()
        token = self.store.acquire_lease(model, environment, self.holder, self.ttl)
        with self._lock:
            if token is None:
                self._held.pop((model, environment), None)
            else:
                self._held[(model, environment)] = _Held(token, began + self.ttl)
        return token

    def renew(self) -> list[Scope]:
        """Extend every held lease; returns the scopes lost (renewal refused).
        A store error keeps the lease held locally until its time runs out."""
        with self._lock:
            held = dict(self._held)
        lost: list[Scope] = []
        for scope, h in held.items():
            began = self._monotonic()
            try:
                ok = self.store.renew_lease(*scope, self.holder, h.token, self.ttl)
            except Exception as err:
                log.debug("renewing the lease of %s/%s failed: %s", *scope, err)
                continue
            with self._lock:
                if ok:
                    if scope in self._held:
                        self._held[scope].valid_until = began + self.ttl
                else:
                    self._held.pop(scope, None)
                    lost.append(scope)
        return lost

    def drop(self, model: str, environment: str) -> None:
        """Forget a lease we learnt we no longer hold."""
        with self._lock:
            self._held.pop((model, environment), None)

    def release_all(self) -> None:
        """Give every held lease up (clean shutdown): others take over at once."""
        with self._lock:
            held, self._held = dict(self._held), {}
        for scope, h in held.items():
            try:
                self.store.release_lease(*scope, self.holder, h.token)
            except Exception as err:
                log.warning("cannot release the lease of %s/%s: %s", *scope, err)


# -- the sidecar's fleet mode -------------------------------------------------------


class Fleet:
    """Fleet mode of one sidecar: leases, the fenced alert state, the fleet view.

    Wires itself into ``alerter`` (``alerter.commit`` and ``alerter.fleet_alerts``).
    ``targets`` lists the scopes to compare (the comparator's); the sidecar
    calls :meth:`leads` before comparing a scope, :meth:`refresh` once per
    check, runs :meth:`run` as a task and calls :meth:`close` on stop.
    """

    def __init__(
        self,
        store: Store,
        alerter: Alerter,
        *,
        holder: str,
        ttl: float,
        targets: Callable[[], Sequence[Scope]],
    ) -> None:
        self.store = store
        self.alerter = alerter
        self.leases = LeaseManager(store, holder, ttl)
        self._targets = targets
        self._led: set[Scope] = set()  # scopes whose state is loaded into the alerter
        self._view: dict[Scope, list[Alert]] = {}  # stored alerts of scopes we do not lead
        self._lock = threading.Lock()
        self.takeovers = 0
        alerter.commit = self.commit
        alerter.fleet_alerts = self.fleet_alerts

    # -- leadership

    def leads(self, model: str, environment: str) -> bool:
        """Acquire or confirm the lease; load the stored alert state when we just
        became leader, forget the scope when we are not (any more)."""
        scope = (model, environment)
        token = self.leases.ensure(model, environment)
        if token is None:
            self._step_down(scope)
            return False
        with self._lock:
            new = scope not in self._led
        if new:
            self._take_over(scope)
        return True

    def _take_over(self, scope: Scope) -> None:
        raw = self.store.read_alert_states(scope[0]).get(scope)
        state = ScopeState(*scope)
        if raw is not None:
            try:
                state = decode_state(*scope, raw)
            except ValueError as err:
                log.warning("%s; starting %s/%s afresh", err, *scope)
        self.alerter.load_scope(state)
        with self._lock:
            self._led.add(scope)
            self._view.pop(scope, None)
        self.takeovers += 1
        log.info(
            "now leading %s/%s (token %s; %d firing alerts taken over)",
            *scope,
            self.leases.token(*scope),
            sum(1 for _, a, _ in state.tracks.values() if a is not None),
        )

    def _step_down(self, scope: Scope) -> None:
        with self._lock:
            was = scope in self._led
            self._led.discard(scope)
        self.leases.drop(*scope)
        if was:
            self.alerter.forget_scope(*scope)
            log.info("no longer leading %s/%s", *scope)

    def commit(self, model: str, environment: str) -> None:
        """Called by the alerter after a check and before any sink hears of it:
        write the scope's state, fenced by our token. Raises ``Conflict`` when
        the lease is gone (the alerter then forgets the scope and sends nothing)."""
        scope = (model, environment)
        token = self.leases.token(model, environment)
        if token is None:
            self._step_down(scope)
            raise Conflict(f"the lease of {model}/{environment} expired; not the leader")
        try:
            self.store.write_alert_state(
                model,
                environment,
                self.leases.holder,
                token,
                encode_state(self.alerter.export_scope(model, environment)),
            )
        except Conflict:
            self._step_down(scope)
            raise

    # -- the fleet view

    def fleet_alerts(self) -> list[Alert]:
        """Stored alerts of the scopes we do not lead (as of the last refresh)."""
        with self._lock:
            return [a for alerts in self._view.values() for a in alerts]

    def refresh(self) -> list[Alert]:
        """Re-read the stored alert state of scopes we do not lead; the alerts
        that changed since the last refresh go to the alerter's watchers."""
        states = self.store.read_alert_states()
        held = self.leases.held()
        view: dict[Scope, list[Alert]] = {}
        for scope, raw in states.items():
            if scope in held:
                continue
            try:
                view[scope] = decode_state(*scope, raw).alerts()
            except ValueError as err:
                log.warning("%s", err)
        with self._lock:
            before = {
                (a.fingerprint, a.state, a.updated_at) for v in self._view.values() for a in v
            }
            first = not self._view
            self._view = view
        changed = [
            a
            for v in view.values()
            for a in v
            if (a.fingerprint, a.state, a.updated_at) not in before
            and (a.state == "firing" or a.resolved_at is not None)
        ]
        if changed and not first:
            self.alerter.show_watchers(changed)
        return changed

    # -- background work

    async def run(
        self, compare_now: Callable[[str, str], Awaitable[None]], stopping: asyncio.Event
    ) -> None:
        """Every ``ttl / 3``: renew held leases, and try to take free ones of the
        current targets (a dead leader's), comparing at once on takeover."""
        period = self.leases.ttl / 3
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), period)
            if stopping.is_set():
                return
            try:
                for scope in await asyncio.to_thread(self.leases.renew):
                    await asyncio.to_thread(self._step_down, scope)
                targets = await asyncio.to_thread(self._targets)
                held = self.leases.held()
                for model, environment in targets:
                    if (model, environment) in held:
                        continue
                    if await asyncio.to_thread(self.leads, model, environment):
                        await compare_now(model, environment)
            except Exception as err:
                log.debug("lease round failed: %s", err)

    def close(self) -> None:
        """Release our leases (clean shutdown)."""
        self.leases.release_all()
