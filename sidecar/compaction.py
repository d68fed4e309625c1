"""Window compaction: old buckets merged into coarser partials.

Live windows are written per ``bucket_seconds`` bucket and writer. Kept that
way for ``retention_seconds`` (7 days) they would cost 10,080 partials per
series. Compaction merges, per (model, environment), every partial of a range
into one partial at the range's start, written by the reserved writer
:data:`COMPACTED`:

- buckets of 10 minutes that ended more than 10 minutes ago become one partial;
- partials of an hour that ended more than 30 minutes ago become one hourly partial;
- partials of a (UTC) day that ended more than a day ago become one daily partial.

So a series holds at most ~20 minute buckets, ~9 ten-minute, ~24 hourly and 7
daily partials.
Merged numeric states stay exact up to ``compression`` values and are
t-digests past that, so a compacted partial is never larger than a digest.

Reads stay correct: a range read still merges every partial in it, and counts
are unchanged; only the time resolution of old data coarsens (a read starting
inside a compacted hour sees that hour's data only if its start is at or before
the hour's start). Each swap is atomic per (model, environment) (a SQLite
transaction; on Redis a WATCH-ed MULTI/EXEC on the model's hash slot) and gives
way to a concurrent write, to be retried on the next pass.

>>> import numpy as np
>>> from sidecar.stores import SQLiteStore
>>> from sidecar.records import Partial
>>> from sidecar.series import NumericState
>>> s = NumericState(); s.add(np.array([1.0, 2.0]))
>>> store = SQLiteStore(clock=lambda: 10_000.0)
>>> store.write_partials("m", "prod", [Partial(60, "a", {"x": s.encode()}),
...                                    Partial(120, "b", {"x": s.encode()})], ttl_seconds=10**6)
>>> Compactor(store, bucket_seconds=60, compression=1000, clock=lambda: 10_000.0).run()
1
>>> [(p.bucket, p.writer) for p in store.read_partials("m", "prod", 0, 3600)]
[(0, '~compacted')]
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from sidecar.records import Partial
from sidecar.series import CategoricalState, NumericState, decode_state

__all__ = ["COMPACTED", "TIERS", "Compactable", "Compactor", "merge_partials"]

log = logging.getLogger(__name__)

COMPACTED = "~compacted"
"""Writer name of compacted partials (``~`` sorts after every generated writer name)."""

TIERS: tuple[tuple[int, int], ...] = ((600, 600), (3600, 1800), (86400, 86400))
"""(width, age) per tier: ranges ``[k * width, (k + 1) * width)`` that ended more
than ``age`` seconds ago are merged into one partial."""

FULL_PASS_SECONDS = 3600.0
"""A full pass over every range within retention runs this often (late rows);
passes in between look only at ranges that became due since the last one."""


@runtime_checkable
class Compactable(Protocol):
    """A store that can swap the partials of a range for one merged partial
    (``SQLiteStore`` and ``RedisStore``)."""

    def compact_partials(
        self,
        model: str,
        environment: str,
        start: int,
        end: int,
        *,
        writer: str,
        merge: Callable[[list[Partial]], dict[str, bytes]],
    ) -> bool: ...

    def list_windows(self) -> list[tuple[str, str]]: ...


def merge_partials(partials: Iterable[Partial], *, exact_cap: int) -> dict[str, bytes]:
    """Merge the series of ``partials`` by series id. Numeric states stay exact up to
    ``exact_cap`` values (and their own exact limit), digests past that. Raises
    ValueError when a series is numeric in one partial and categorical in another."""
    blobs: dict[str, list[bytes]] = {}
    for partial in partials:
        for sid, blob in partial.series.items():
            blobs.setdefault(sid, []).append(blob)
    out: dict[str, bytes] = {}
    for sid, parts in blobs.items():
        states = [decode_state(b) for b in parts]
        first = states[0]
        if isinstance(first, NumericState):
            numeric = [s for s in states if isinstance(s, NumericState)]
            if len(numeric) != len(states):
                raise ValueError(f"series {sid!r} is both numeric and categorical")
            limit = min(exact_cap, min(s.exact_limit for s in numeric))
            acc = NumericState(max(s.compression for s in numeric), limit)
            for state in numeric:
                acc.merge(state)
            out[sid] = acc.encode()
        else:
            tables = [s for s in states if isinstance(s, CategoricalState)]
            if len(tables) != len(states):
                raise ValueError(f"series {sid!r} is both numeric and categorical")
            for other in tables[1:]:
                first.merge(other)
            out[sid] = first.encode()
    return out


class Compactor:
    """Runs compaction passes over every (model, environment) with window data.

    ``run`` is blocking (async callers use ``asyncio.to_thread``) and returns the
    ranges compacted. It never raises: the first failure is logged and ends the
    pass, and the next pass looks at every range within retention again.
    """

    def __init__(
        self,
        store: Compactable,
        *,
        bucket_seconds: int,
        compression: int,
        retention_seconds: int = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
        tiers: tuple[tuple[int, int], ...] = TIERS,
    ) -> None:
        self._store = store
        self._bucket = bucket_seconds
        self._cap = compression
        self._retention = retention_seconds
        self._clock = clock
        self._tiers = tuple((w, a) for w, a in tiers if w > bucket_seconds)
        self._done: dict[tuple[str, str, int], int] = {}  # (model, env, width) -> ranges end
        self._last_full = -math.inf
        self._last_run = -math.inf
        self.compacted = 0
        self.failures = 0

    def maybe_run(self, interval: float = 60.0) -> int:
        """:meth:`run` if the last run began ``interval`` seconds ago or more (the
        flush loop calls this after each flush); else 0."""
        now = self._clock()
        if now - self._last_run < interval:
            return 0
        self._last_run = now
        return self.run()

    def _merge(self, partials: list[Partial]) -> dict[str, bytes]:
        return merge_partials(partials, exact_cap=self._cap)

    def run(self) -> int:
        now = self._clock()
        full = now - self._last_full >= FULL_PASS_SECONDS
        if full:
            self._last_full = now
        count = 0
        try:
            windows = self._store.list_windows()
        except Exception as err:
            self.failures += 1
            log.warning("compaction: cannot list windows: %s", err)
            return 0
        for model, environment in windows:
            for width, age in self._tiers:
                due = (math.floor(now - age) // width) * width  # ranges ending by here are due
                oldest = (math.floor(now - self._retention) // width) * width
                key = (model, environment, width)
                first = oldest if full else max(oldest, self._done.get(key, oldest))
                for start in range(int(first), int(due), width):
                    try:
                        if self._store.compact_partials(
                            model,
                            environment,
                            start,
                            start + width,
                            writer=COMPACTED,
                            merge=self._merge,
                        ):
                            count += 1
                    except Exception as err:  # the store is likely down: end this pass
                        self.failures += 1
                        self._last_full = -math.inf  # the next pass looks at everything
                        log.warning(
                            "compaction of %s/%s [%d, %d) failed; retried on a later pass: %s",
                            model,
                            environment,
                            start,
                            start + width,
                            err,
                        )
                        self.compacted += count
                        return count
                self._done[key] = int(due)
        self.compacted += count
        return count
