"""Outcomes: sampled predictions kept by request id, labels joined to them later.

The data path of label-based quality (issue 8; ``docs/outcomes.md``):

1. **Keeping.** For every ingested row with a request id, :meth:`Outcomes.keep`
   (the windows' ``on_keep`` hook) keeps the row's OUTPUT-kind signals, its
   version, environment, time and slice attributes. Kept rows wait in memory
   (at most ``max_pending_predictions``; more are dropped and counted) and go to
   the store at each :meth:`Outcomes.flush`, where they live for
   ``outcome_horizon_seconds`` (at most ``max_kept_predictions`` per model).
   Classifier confidences of every kept row also feed the ``sampled`` quality
   state, from which CBPE estimates the error rate before labels arrive.
2. **Joining.** :meth:`Outcomes.record` takes outcomes (request id, label,
   optional time and weight), looks their predictions up, validates the label
   against the model's :class:`~sidecar.outcome_config.OutcomeConfig`, and
   claims each request id once in the store (the first outcome wins unless the
   model says ``duplicates = "all"``). Nothing is an error: every outcome is
   counted as joined, unknown (never sampled, or not kept), expired (older than
   the horizon), duplicate or invalid, with the reasons.
3. **Quality series.** A joined classification outcome adds (confidence,
   correct, weight, score, label) to the ``labelled`` calibration state of its
   time bucket, per slice (all traffic and each ``attribute=value`` of the
   prediction). The bucket is the *outcome's* time (given, else the sidecar's
   clock): labels arrive in time order, so buckets seal like live windows, and
   a baseline's quality is what was labelled during its window. Calibration
   states are flushed as partials of a separate lane (environment
   ``"<environment>\\x1fquality"``: no real environment can name it). Labels
   (label drift) and, for regression, residual, absolute and squared errors are
   ordinary series of kind ``quality`` fed through the live windows, so
   baselines freeze and comparisons test them like any other series.

>>> from sidecar.settings import Settings
>>> from sidecar.stores import SQLiteStore
>>> from sidecar.guardrails import Guardrails
>>> from sidecar.windows import Windows
>>> store = SQLiteStore()
>>> outcomes = Outcomes(Settings(instance="t"), store, Guardrails.load(None), clock=lambda: 100.0)
>>> outcomes.record([Outcome("m", "r1", 1)]).unknown
1
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from baselined.v1 import baselined_pb2 as pb

from sidecar.errors import BaselinedError
from sidecar.guardrails import Guardrails
from sidecar.ingest import DecodedBatch
from sidecar.outcome_config import SCORE_NAMES, OutcomeConfig
from sidecar.records import ALL_TRAFFIC, Kind, Partial
from sidecar.settings import Settings
from sidecar.stats.quality import CalibrationState
from sidecar.stores.base import Store
from sidecar.windows import Windows

__all__ = [
    "LABELLED",
    "MAX_REASONS",
    "SAMPLED",
    "Outcome",
    "OutcomeCounts",
    "Outcomes",
    "QualityData",
    "quality_lane",
]

LABELLED = "labelled"
"""Quality state of joined outcomes (confidence, correct, score, label)."""
SAMPLED = "sampled"
"""Quality state of every kept prediction's confidence (labels unknown: for CBPE)."""

MAX_REASONS = 64
"""Distinct problem reasons kept per result (all are counted)."""

_LANE = "\x1fquality"
_SEP = "\x1f"
_KIND_NAMES = {Kind.OUTPUT}
_OTHER = "__other__"


def quality_lane(environment: str) -> str:
    """The pseudo-environment under which calibration partials of ``environment`` live."""
    return environment + _LANE


@dataclass(frozen=True)
class Outcome:
    """One outcome: the label (class index, class name or value) of a request.

    ``time`` (unix seconds) is when the outcome became known (None: now);
    ``weight`` defaults to 1.
    """

    model: str
    request_id: str
    label: int | float | str | bool
    time: float | None = None
    weight: float | None = None


@dataclass
class OutcomeCounts:
    """What became of a set of outcomes; ``reasons`` counts problems by reason."""

    joined: int = 0
    unknown: int = 0
    expired: int = 0
    duplicate: int = 0
    invalid: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.joined + self.unknown + self.expired + self.duplicate + self.invalid

    def add(self, other: OutcomeCounts) -> None:
        self.joined += other.joined
        self.unknown += other.unknown
        self.expired += other.expired
        self.duplicate += other.duplicate
        self.invalid += other.invalid
        for reason, n in other.reasons.items():
            self.note(reason, n)

    def note(self, reason: str, n: int = 1) -> None:
        if reason in self.reasons or len(self.reasons) < MAX_REASONS:
            self.reasons[reason] += n

    def describe(self) -> str:
        """One line: the counts, then the reasons by frequency."""
        text = (
            f"{self.total} outcomes: {self.joined} joined, {self.unknown} unknown,"
            f" {self.expired} expired, {self.duplicate} duplicate, {self.invalid} invalid"
        )
        if self.reasons:
            text += "; " + "; ".join(f"{n} x {r}" for r, n in self.reasons.most_common(10))
        return text


@dataclass(frozen=True)
class QualityData:
    """Merged calibration states of one (model, environment) over a time range,
    by (slice, name) where name is :data:`LABELLED` or :data:`SAMPLED`."""

    states: Mapping[tuple[str, str], CalibrationState]

    def slices(self, name: str = LABELLED) -> dict[str, CalibrationState]:
        return {s: st for (s, n), st in self.states.items() if n == name}


class _Invalid(Exception):
    """An outcome that cannot be joined; the message is the reason."""


def default_score(outputs: Mapping[str, float | str]) -> str:
    """The score output when none is configured (see ``OutcomeConfig.score``)."""
    numeric = [k for k, v in outputs.items() if isinstance(v, float)]
    for name in numeric:
        if name.lower() in SCORE_NAMES:
            return name
    return numeric[0] if numeric else ""


class Outcomes:
    """Keeps sampled predictions and joins outcomes to them (see the module docstring).

    ``windows`` (optional) receives the label and regression-error series;
    ``clock`` is unix seconds. Thread-safe; store calls block (async callers use
    ``asyncio.to_thread``).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        guardrails: Guardrails,
        *,
        windows: Windows | None = None,
        clock: Callable[[], float] = time.time,
        writer: str | None = None,
    ) -> None:
        self.settings = settings
        self.guardrails = guardrails
        self.windows = windows
        self.writer = writer or f"{settings.instance}:outcomes"
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # model -> [(request id, record bytes)] waiting for the store
        self._pending: dict[str, list[tuple[str, bytes]]] = {}
        self._pending_count = 0
        # (model, environment) -> bucket -> (slice, name) -> state; dirty buckets
        self._states: dict[tuple[str, str], dict[int, dict[tuple[str, str], CalibrationState]]] = {}
        self._dirty: set[tuple[str, str, int]] = set()
        self._slice_values: dict[tuple[str, str, str], set[str]] = {}
        self._counts = Counter[str]()
        self.totals = OutcomeCounts()

    @property
    def bucket_seconds(self) -> int:
        """Width of a quality bucket: the window bucket, at least a minute."""
        return max(60, self.settings.bucket_seconds)

    # -- keeping -------------------------------------------------------------------

    def keep(self, data: DecodedBatch) -> None:
        """Keep the outputs and slices of every row of ``data`` that has a request id."""
        ids = data.request_ids
        if not ids:
            return
        rows = [i for i, rid in enumerate(ids) if rid]
        if not rows:
            return
        outputs_numeric = [
            (name, data.numeric[i])
            for i, (k, name) in enumerate(data.numeric_signals)
            if k in _KIND_NAMES
        ]
        outputs_categorical = [
            (name, values) for k, name, values in data.categorical if k in _KIND_NAMES
        ]
        if not outputs_numeric and not outputs_categorical:
            self._counts["predictions_without_outputs"] += len(rows)
            return
        config = self.guardrails.outcomes(data.model)
        records: list[tuple[str, bytes]] = []
        confidences: dict[str, list[float]] = {}
        batch_slices = dict(data.batch_slices)
        for i in rows:
            outputs: dict[str, float | str] = {}
            for name, values in outputs_numeric:
                value = float(values[i])
                if math.isfinite(value):
                    outputs[name] = value
            for name, cvalues in outputs_categorical:
                if cvalues[i]:
                    outputs[name] = cvalues[i]
            slices = dict(batch_slices)
            for column in data.slices:
                if column.values[i]:
                    slices[column.name] = column.values[i]
            t = float(data.timestamps[i])
            record = {
                "e": data.environment,
                "v": data.version,
                "t": t,
                "o": outputs,
                "s": slices,
            }
            records.append((ids[i], json.dumps(record, separators=(",", ":")).encode()))
            if config.task == "classification":
                try:
                    confidence = _classify(config, outputs)[0]
                except _Invalid:
                    continue
                for label in self._labels(data.model, data.environment, slices):
                    confidences.setdefault(label, []).append(confidence)
        with self._lock:
            room = self.settings.max_pending_predictions - self._pending_count
            if room < len(records):
                self._counts["predictions_dropped_memory"] += len(records) - max(room, 0)
                records = records[: max(room, 0)]
            if records:
                self._pending.setdefault(data.model, []).extend(records)
                self._pending_count += len(records)
                self._counts["predictions_kept"] += len(records)
            if confidences:
                bucket = self._bucket(float(data.timestamps[rows[-1]]))
                for label, values in confidences.items():
                    conf = np.asarray(values, dtype=np.float64)
                    self._state(
                        data.model, data.environment, bucket, label, SAMPLED
                    ).add_unlabelled(conf)

    def _labels(self, model: str, environment: str, slices: Mapping[str, str]) -> list[str]:
        """All traffic plus one ``attr=value`` per slice (folded past max_slice_values)."""
        labels = [ALL_TRAFFIC]
        for attr, value in sorted(slices.items()):
            admitted = self._slice_values.setdefault((model, environment, attr), set())
            if value not in admitted:
                if len(admitted) >= self.settings.max_slice_values:
                    value = _OTHER
                else:
                    admitted.add(value)
            labels.append(f"{attr}={value}")
        return labels

    def _bucket(self, t: float) -> int:
        width = self.bucket_seconds
        return math.floor(t / width) * width

    def _state(
        self, model: str, environment: str, bucket: int, label: str, name: str
    ) -> CalibrationState:
        buckets = self._states.setdefault((model, environment), {})
        states = buckets.setdefault(bucket, {})
        state = states.get((label, name))
        if state is None:
            state = states[(label, name)] = CalibrationState()
        self._dirty.add((model, environment, bucket))
        return state

    # -- joining -------------------------------------------------------------------

    def record(self, outcomes: Iterable[Outcome]) -> OutcomeCounts:
        """Join outcomes to kept predictions; return what became of each.

        Pending predictions are flushed first, so an outcome may follow its
        prediction immediately. Never raises for bad outcomes (they are counted);
        a store failure raises ``StoreUnavailable`` with nothing joined.
        """
        self.flush_predictions()
        counts = OutcomeCounts()
        now = self._clock()
        by_model: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            problem = _check(outcome)
            if problem is not None:
                counts.invalid += 1
                counts.note(problem)
                continue
            by_model.setdefault(outcome.model, []).append(outcome)
        for model, items in by_model.items():
            self._record_model(model, items, now, counts)
        with self._lock:
            self.totals.add(counts)
        return counts

    def _record_model(
        self, model: str, items: list[Outcome], now: float, counts: OutcomeCounts
    ) -> None:
        config = self.guardrails.outcomes(model)
        horizon = self.settings.outcome_horizon_seconds
        kept = self._store.get_predictions(model, [o.request_id for o in items])
        ready: list[tuple[Outcome, dict[str, Any], float]] = []
        for outcome in items:
            at = now if outcome.time is None else float(outcome.time)
            raw = kept.get(outcome.request_id)
            if raw is None:
                if at < now - horizon:
                    counts.expired += 1
                else:
                    counts.unknown += 1
                continue
            try:
                prediction = json.loads(raw)
                if float(prediction["t"]) < at - horizon:
                    counts.expired += 1
                    continue
                if at > now + self.settings.max_clock_skew:
                    raise _Invalid(
                        f"outcome time is more than max_clock_skew={self.settings.max_clock_skew:g}"
                        " s in the future"
                    )
                ready.append((outcome, prediction, at))
            except _Invalid as err:
                counts.invalid += 1
                counts.note(str(err))
        # Validate every label before claiming, so an invalid outcome claims nothing.
        joined: list[tuple[Outcome, dict[str, Any], float, tuple[Any, ...]]] = []
        for outcome, prediction, at in ready:
            try:
                contribution = _contribution(config, prediction["o"], outcome.label)
            except _Invalid as err:
                counts.invalid += 1
                counts.note(str(err))
                continue
            joined.append((outcome, prediction, at, contribution))
        if config.duplicates == "first" and joined:
            claimed = self._store.claim_outcomes(
                model, [o.request_id for o, *_ in joined], ttl_seconds=horizon
            )
            fresh = []
            for item, first in zip(joined, claimed, strict=True):
                if first:
                    fresh.append(item)
                else:
                    counts.duplicate += 1
                    counts.note("duplicate outcome: the first outcome of a request wins")
            joined = fresh
        series_rows: list[tuple[dict[str, Any], float, tuple[Any, ...], float]] = []
        with self._lock:
            for outcome, prediction, at, contribution in joined:
                weight = 1.0 if outcome.weight is None else float(outcome.weight)
                environment = str(prediction["e"])
                labels = self._labels(model, environment, prediction["s"])
                bucket = self._bucket(at)
                if config.task == "classification":
                    confidence, correct, score, label, _ = contribution
                    c = np.array([confidence])
                    k = np.array([correct])
                    w = np.array([weight])
                    s = None if score is None else np.array([score])
                    y = None if score is None else np.array([label])
                    for slice_label in labels:
                        self._state(model, environment, bucket, slice_label, LABELLED).add(
                            c, k, w, s, y
                        )
                series_rows.append((prediction, at, contribution, weight))
                counts.joined += 1
        if self.windows is not None and series_rows:
            self._feed_series(self.windows, model, config, series_rows, now)

    def _feed_series(
        self,
        windows: Windows,
        model: str,
        config: OutcomeConfig,
        rows: list[tuple[dict[str, Any], float, tuple[Any, ...], float]],
        now: float,
    ) -> None:
        """Labels and regression errors as ordinary ``quality`` series of the windows."""
        oldest = now - self.settings.retention_seconds
        groups: dict[
            tuple[str, str, tuple[str, ...]], list[tuple[dict[str, Any], float, tuple[Any, ...]]]
        ] = {}
        for prediction, at, contribution, _ in rows:
            if at < oldest:
                self._counts["series_rows_past_retention"] += 1
                continue
            key = (str(prediction["e"]), str(prediction["v"]), tuple(sorted(prediction["s"])))
            groups.setdefault(key, []).append((prediction, at, contribution))
        for (environment, version, attrs), items in groups.items():
            batch = pb.SampleBatch(
                model=model,
                version=version,
                environment=environment,
                instance=self.writer,
                timestamps=[at for _, at, _ in items],
            )
            quality = pb.SIGNAL_KIND_QUALITY
            if config.task == "classification":
                batch.categorical.add(
                    name="label", kind=quality, values=[c[4] for _, _, c in items]
                )
            else:
                batch.numeric.add(name="label", kind=quality, values=[c[1] for _, _, c in items])
                residual = [c[1] - c[0] for _, _, c in items]
                batch.numeric.add(name="residual", kind=quality, values=residual)
                batch.numeric.add(name="abs_error", kind=quality, values=[abs(r) for r in residual])
                batch.numeric.add(
                    name="squared_error", kind=quality, values=[r * r for r in residual]
                )
            for attr in attrs:
                batch.slices.add(name=attr, values=[p["s"].get(attr, "") for p, _, _ in items])
            try:
                windows.ingest(batch)
            except BaselinedError:
                self._counts["series_batches_refused"] += 1

    # -- flushing ------------------------------------------------------------------

    def flush_predictions(self) -> int:
        """Write pending predictions to the store; return how many were written."""
        with self._lock:
            pending, self._pending, self._pending_count = self._pending, {}, 0
        written = 0
        for model, records in pending.items():
            try:
                evicted = self._store.put_predictions(
                    model,
                    records,
                    ttl_seconds=_kept_seconds(self.settings.outcome_horizon_seconds),
                    max_records=self.settings.max_kept_predictions,
                )
            except Exception:
                with self._lock:  # keep them for the next flush (within the memory bound)
                    room = self.settings.max_pending_predictions - self._pending_count
                    kept = records[: max(room, 0)]
                    self._pending.setdefault(model, []).extend(kept)
                    self._pending_count += len(kept)
                    self._counts["predictions_dropped_memory"] += len(records) - len(kept)
                raise
            written += len(records)
            if evicted:
                with self._lock:
                    self._counts["predictions_evicted"] += evicted
        return written

    def flush(self) -> int:
        """Flush pending predictions and changed quality buckets; return buckets written."""
        with self._flush_lock:
            self.flush_predictions()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                work: dict[tuple[str, str], list[Partial]] = {}
                for model, environment, bucket in sorted(dirty):
                    states = self._states[(model, environment)][bucket]
                    series = {f"{s}{_SEP}{n}": st.encode() for (s, n), st in states.items()}
                    work.setdefault((model, environment), []).append(
                        Partial(bucket, self.writer, series)
                    )
            written = 0
            error: Exception | None = None
            for (model, environment), partials in work.items():
                try:
                    self._store.write_partials(
                        model,
                        quality_lane(environment),
                        partials,
                        ttl_seconds=self.settings.retention_seconds,
                    )
                    written += len(partials)
                except Exception as err:
                    with self._lock:
                        self._dirty |= {(model, environment, p.bucket) for p in partials}
                    error = error or err
            with self._lock:
                self._evict()
            if error is not None:
                raise error
            return written

    def _evict(self) -> None:
        """Buckets flushed and older than two buckets behind the newest leave memory."""
        for (model, environment), buckets in self._states.items():
            if not buckets:
                continue
            cutoff = max(buckets) - 2 * self.bucket_seconds
            for b in [
                b for b in buckets if b < cutoff and (model, environment, b) not in self._dirty
            ]:
                del buckets[b]

    # -- reading -------------------------------------------------------------------

    def read(self, model: str, environment: str, start: float, end: float) -> QualityData:
        """Merged calibration states of buckets starting in [floor(start), ceil(end))."""
        first, last = math.floor(start), math.ceil(end)
        merged: dict[tuple[str, str], CalibrationState] = {}
        if first < last:
            for partial in self._store.read_partials(model, quality_lane(environment), first, last):
                for key, blob in partial.series.items():
                    slice_label, _, name = key.rpartition(_SEP)
                    state = CalibrationState.decode(blob)
                    old = merged.get((slice_label, name))
                    if old is None:
                        merged[(slice_label, name)] = state
                    else:
                        old.merge(state)
        return QualityData(merged)

    def scopes(self) -> list[tuple[str, str]]:
        """The (model, environment) pairs with quality data in this process, sorted."""
        with self._lock:
            return sorted(self._states)

    def stats(self) -> dict[str, int]:
        """Counters: predictions kept, dropped (memory), evicted (store), outcomes by result."""
        with self._lock:
            counts = dict(self._counts)
            counts["predictions_pending"] = self._pending_count
            for name in ("joined", "unknown", "expired", "duplicate", "invalid"):
                counts[f"outcomes_{name}"] = getattr(self.totals, name)
        return counts


def _kept_seconds(horizon: int) -> int:
    """Predictions stay in the store a quarter longer than the horizon, so an outcome
    that comes a little too late is told apart (expired) from one never sampled."""
    return horizon + horizon // 4


def _check(outcome: Outcome) -> str | None:
    """A reason when the outcome is malformed whatever was kept, else None."""
    if not isinstance(outcome.model, str) or not outcome.model:
        return "outcome without a model"
    if not isinstance(outcome.request_id, str) or not outcome.request_id:
        return "outcome without a request id"
    if len(outcome.request_id) > 256:
        return "request id longer than 256 characters"
    label = outcome.label
    if isinstance(label, float) and not math.isfinite(label):
        return "label is not a finite number"
    if not isinstance(label, int | float | str):
        return f"label of type {type(label).__name__}; expected a class, a number or a class name"
    if isinstance(label, str) and not label:
        return "label is an empty string"
    if outcome.weight is not None and not (
        isinstance(outcome.weight, int | float)
        and math.isfinite(outcome.weight)
        and outcome.weight > 0
    ):
        return "weight must be a positive finite number"
    if outcome.time is not None and not (
        isinstance(outcome.time, int | float) and math.isfinite(outcome.time)
    ):
        return "time must be finite unix seconds"
    return None


def _class_name(config: OutcomeConfig, value: int | float | str | bool, what: str) -> str:
    """A class label (index, name, or an integral number) as a class name."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise _Invalid(f"{what} {value!r} is not a class: expected a class index or name")
        value = int(value)
    if isinstance(value, int):
        if config.classes:
            if not 0 <= value < len(config.classes):
                raise _Invalid(
                    f"{what} {value} is not a class index (0..{len(config.classes) - 1})"
                )
            return config.classes[value]
        if value < 0:
            raise _Invalid(f"{what} {value} is not a class index")
        return str(value)
    if config.classes and value not in config.classes:
        raise _Invalid(f"{what} {value!r} is not one of the configured classes")
    return value


def _classify(
    config: OutcomeConfig, outputs: Mapping[str, float | str]
) -> tuple[float, str, float | None]:
    """(confidence of the predicted class, predicted class name, binary score or None)."""
    score_name = config.score or default_score(outputs)
    if config.predicted:
        predicted_raw = outputs.get(config.predicted)
        if predicted_raw is None:
            raise _Invalid(f"the prediction has no output {config.predicted!r} (predicted class)")
        predicted = _class_name(config, predicted_raw, "predicted class")
        confidence = outputs.get(score_name) if score_name else None
        if not isinstance(confidence, float):
            raise _Invalid(f"the prediction has no numeric score output {score_name!r}")
        if not 0.0 <= confidence <= 1.0:
            raise _Invalid(f"score {confidence!r} outside [0, 1]")
        return confidence, predicted, None
    score = outputs.get(score_name) if score_name else None
    if not isinstance(score, float):
        raise _Invalid("the prediction has no numeric score output")
    if not 0.0 <= score <= 1.0:
        raise _Invalid(f"score {score!r} outside [0, 1]")
    if score >= config.threshold:
        return score, config.positive, score
    return 1.0 - score, config.negative, score


def _contribution(
    config: OutcomeConfig, outputs: Mapping[str, float | str], label: int | float | str | bool
) -> tuple[Any, ...]:
    """Classification: (confidence, correct, score, label 0/1, label name);
    regression: (predicted value, true value)."""
    if config.task == "regression":
        if isinstance(label, str | bool):
            raise _Invalid(f"label {label!r} is not a number (regression)")
        name = config.predicted or config.score or default_score(outputs)
        predicted = outputs.get(name) if name else None
        if not isinstance(predicted, float):
            raise _Invalid("the prediction has no numeric predicted value")
        return (predicted, float(label))
    confidence, predicted, score = _classify(config, outputs)
    if score is not None:
        name = _class_name(config, label, "label")
        if name not in (config.positive, config.negative):
            raise _Invalid(f"label {label!r} is neither class of a binary classifier")
        y = 1.0 if name == config.positive else 0.0
        return (confidence, 1.0 if name == predicted else 0.0, score, y, name)
    name = _class_name(config, label, "label")
    return (confidence, 1.0 if name == predicted else 0.0, None, None, name)
