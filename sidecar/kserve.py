"""KServe InferenceLogger CloudEvents in, window rows out.

KServe's logger (``spec.predictor.logger.url``) posts one CloudEvent per
inference request (type ``org.kubeflow.serving.inference.request``) and one
per response (``org.kubeflow.serving.inference.response``, sent only for HTTP
200), both with the request's id as ``ce-id``. :class:`KServeIngest` pairs
them by id, extracts features and outputs with the middleware's JSON
extractors (:func:`middleware.http_extract.json_features` /
:func:`~middleware.http_extract.json_outputs`: V1 ``instances`` /
``predictions``, V2 ``inputs`` / ``outputs`` tensors split per column
``name.j``, one record per batch row) and ingests the records into the live
windows exactly as a middleware batch would be.

Mapping (see ``docs/kserve.md``):

* model: ``ce-inferenceservicename`` (else the last path segment of
  ``ce-source``); a component other than ``predictor`` is appended
  (``sklearn-iris-transformer``);
* version: ``model_version`` of the V2 response (or request) body, else "";
* environment: the ``kserve_environment`` setting, else ``ce-namespace``,
  else ``default``;
* slice ``endpoint=<default|canary>`` when ``ce-endpoint`` is set;
* timestamp: ``ce-time`` of the request event, else the arrival time.

Sampling is by ``ce-id`` with :func:`middleware.sampling.sample_by_id`, so the
sidecar and a middleware at the same rate keep the same requests. A request
whose response has not come after ``pair_ttl`` seconds is ingested alone
(features only), and so is a lone response (outputs only). Rows with a
response carry the ``error`` signal (0, or 1 when the body is an error object
``{"error": ...}``); rows without one carry no error signal, and latency is
never known.

>>> from sidecar.settings import Settings
>>> from sidecar.stores import SQLiteStore
>>> from sidecar.windows import Windows
>>> ingest = KServeIngest(Windows(Settings(instance="a"), SQLiteStore()), Settings(instance="a"))
>>> h = {"ce-id": "r1", "ce-specversion": "1.0", "ce-source": "http://x/",
...      "ce-inferenceservicename": "iris", "ce-namespace": "prod"}
>>> ingest.handle({**h, "ce-type": REQUEST_TYPE}, b'{"instances": [[1, 2]]}').status
'pending'
>>> ingest.handle({**h, "ce-type": RESPONSE_TYPE}, b'{"predictions": [0]}').rows
1
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from baselined.v1 import baselined_pb2 as pb

from middleware.http_extract import json_features, json_outputs
from middleware.sampling import sample_by_id
from sidecar.errors import InvalidInput, TooLarge
from sidecar.settings import Settings
from sidecar.windows import Windows

__all__ = [
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "BadEvent",
    "CloudEvent",
    "KServeIngest",
    "Outcome",
    "parse_event",
]

log = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
_TYPES = (REQUEST_TYPE, RESPONSE_TYPE)
_SPECVERSIONS = ("1.0", "0.3")
_STRUCTURED = "application/cloudevents+json"
_BATCH = "application/cloudevents-batch+json"
_V2_DATATYPES = frozenset(
    [
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    ]
)
_DEFAULT_COMPONENT = "predictor"
_ERROR_NAME = "error"

Rows = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class BadEvent(InvalidInput):
    """A CloudEvent the endpoint refuses (answered 400). ``reason`` is a short
    counter key (``missing_id``, ``not_json``, ...); the message says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CloudEvent:
    """The attributes of one CloudEvent the endpoint uses, and its parsed JSON data."""

    id: str
    type: str
    source: str
    specversion: str
    time: str
    extensions: Mapping[str, str]
    data: Any


@dataclass(frozen=True)
class Outcome:
    """What became of one event: ``status`` is ``unsampled``, ``pending`` (waiting
    for its pair), ``duplicate`` (its half was already pending) or ``ingested``;
    ``rows`` the rows ingested by this call."""

    status: str
    rows: int = 0


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _loads(raw: bytes | str, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadEvent("not_json", f"{what} is not JSON: {err}") from None


def _check_attributes(attrs: Mapping[str, str]) -> None:
    for name in ("id", "type", "source", "specversion"):
        if not attrs.get(name):
            raise BadEvent(f"missing_{name}", f"the CloudEvent has no {name} (ce-{name})")
    if attrs["specversion"] not in _SPECVERSIONS:
        raise BadEvent(
            "bad_specversion",
            f"specversion {attrs['specversion']!r} is not supported; use 1.0 (or 0.3)",
        )
    if attrs["type"] not in _TYPES:
        raise BadEvent(
            "bad_type", f"type {attrs['type']!r} is neither {REQUEST_TYPE} nor {RESPONSE_TYPE}"
        )


def parse_event(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """Parse a CloudEvent in binary mode (``ce-*`` headers, the body is the data)
    or structured mode (``Content-Type: application/cloudevents+json``).
    ``headers`` keys must be lower case. Raises BadEvent naming the problem."""
    content_type = headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == _BATCH:
        raise BadEvent(
            "batch_mode", "CloudEvents batch mode is not supported; send binary or structured mode"
        )
    if media == _STRUCTURED:
        envelope = _loads(body, "structured CloudEvent")
        if not isinstance(envelope, dict):
            raise BadEvent("not_object", "a structured CloudEvent must be a JSON object")
        attrs = {k.lower(): v for k, v in envelope.items() if isinstance(v, str)}
        _check_attributes(attrs)
        if "data_base64" in envelope:
            try:
                raw = base64.b64decode(str(envelope["data_base64"]), validate=True)
            except (binascii.Error, ValueError):
                raise BadEvent("not_json", "data_base64 is not valid base64") from None
            data = _loads(raw, "data_base64")
        elif "data" in envelope:
            data = envelope["data"]
            if isinstance(data, str) and _is_json(attrs.get("datacontenttype", "")):
                data = _loads(data, "data")  # JSON carried as a string
        else:
            raise BadEvent("no_data", "the CloudEvent has no data")
    else:
        attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
        if not attrs:
            raise BadEvent(
                "not_cloudevent",
                "no ce-* headers and Content-Type is not application/cloudevents+json;"
                " send a CloudEvent in binary or structured mode",
            )
        _check_attributes(attrs)
        if not body:
            raise BadEvent("no_data", "the CloudEvent has no data (empty body)")
        data = _loads(body, "data")
    core = ("id", "type", "source", "specversion", "time", "data", "datacontenttype")
    return CloudEvent(
        id=attrs["id"],
        type=attrs["type"],
        source=attrs["source"],
        specversion=attrs["specversion"],
        time=attrs.get("time", ""),
        extensions={k: v for k, v in attrs.items() if k not in core},
        data=data,
    )


def _check_tensors(body: Mapping[str, Any], key: str) -> None:
    """V2 tensors must name a known datatype and carry data."""
    for i, tensor in enumerate(body[key]):
        if not (isinstance(tensor, dict) and ("datatype" in tensor or "shape" in tensor)):
            continue  # not a tensor: a V1-style row
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise BadEvent("bad_tensor", f"{key}[{i}] has no name")
        if "data" not in tensor:
            raise BadEvent("bad_tensor", f"tensor {name!r} has no data")
        datatype = tensor.get("datatype")
        if datatype is not None and datatype not in _V2_DATATYPES:
            raise BadEvent("bad_tensor", f"tensor {name!r} has unknown datatype {datatype!r}")


def _extract(data: Any, request: bool) -> Rows:
    keys = ("instances", "inputs") if request else ("predictions", "outputs")
    what = "request" if request else "response"
    if not isinstance(data, dict | list):
        raise BadEvent("bad_shape", f"the {what} body must be a JSON object or list")
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                if not isinstance(data[key], list):
                    raise BadEvent("bad_shape", f"{key!r} must be a list")
                _check_tensors(data, key)
    try:
        rows = json_features(data) if request else json_outputs(data)
    except ValueError as err:  # tensor shapes that do not match their data
        raise BadEvent("bad_shape", str(err)) from None
    if rows is None:
        raise BadEvent("bad_shape", f"the {what} body holds no records")
    return rows


def _version(data: Any) -> str:
    if isinstance(data, dict):
        version = data.get("model_version")
        if isinstance(version, str):
            return version
    return ""


def _is_error(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "error" in data
        and not any(k in data for k in ("predictions", "outputs"))
    )


def _timestamp(text: str, fallback: float) -> float:
    if text:
        try:
            value = datetime.fromisoformat(text).timestamp()
        except ValueError:
            return fallback
        if math.isfinite(value):
            return value
    return fallback


@dataclass
class _Half:
    rows: Rows
    version: str
    timestamp: float


@dataclass
class _Pending:
    born: float
    endpoint: str
    request: _Half | None = None
    response: _Half | None = None
    error: bool = False


_Key = tuple[str, str, str]  # model, environment, ce-id
_Record = tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]


def _pair(features: Rows, outputs: Rows) -> list[_Record] | None:
    """Records as (features, outputs), the middleware's rule: a single mapping on
    one side applies to every row of the other; None when row counts differ."""
    fs = _as_rows(features)
    os_ = _as_rows(outputs)
    if fs is not None and os_ is not None:
        return list(zip(fs, os_, strict=True)) if len(fs) == len(os_) else None
    if fs is not None:
        return [(f, cast("Mapping[str, Any] | None", outputs)) for f in fs]
    one = cast("Mapping[str, Any] | None", features)
    if os_ is not None:
        return [(one, o) for o in os_]
    return [(one, cast("Mapping[str, Any] | None", outputs))]


def _as_rows(rows: Rows) -> list[Mapping[str, Any]] | None:
    if rows is None or isinstance(rows, Mapping):
        return None
    return list(rows)


class _Columns:
    """Rows to columnar signals with the middleware's typing: a column's first
    value decides numeric (numbers, bools) or categorical (strings); values of
    the other type, None and anything else are missing."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.numeric: dict[tuple[int, str], list[float]] = {}
        self.categorical: dict[tuple[int, str], list[str]] = {}

    def put(self, row: int, kind: int, values: Mapping[str, Any] | None) -> None:
        if not values:
            return
        for name, value in values.items():
            key = (kind, name)
            num = self.numeric.get(key)
            if num is None and key not in self.categorical:
                if isinstance(value, str):
                    self.categorical[key] = [""] * self.rows
                elif isinstance(value, bool | int | float):
                    num = self.numeric[key] = [math.nan] * self.rows
                else:
                    continue
            if num is not None:
                if isinstance(value, bool | int | float) and not isinstance(value, str):
                    try:
                        num[row] = float(value)
                    except OverflowError:  # an int too large for a double
                        num[row] = math.inf if value > 0 else -math.inf
            elif isinstance(value, str):
                self.categorical[key][row] = value


class KServeIngest:
    """Pairs KServe inference-logger events by ``ce-id`` and ingests their
    records into ``windows`` (see the module docstring).

    ``clock`` (unix seconds) stamps events without ``ce-time``; ``monotonic``
    times the pairing TTL (``pair_ttl`` seconds); at most ``max_pending``
    halves wait for their pair (the oldest is ingested alone when full).
    """

    def __init__(
        self,
        windows: Windows,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        pair_ttl: float = 30.0,
        max_pending: int = 10_000,
    ) -> None:
        if not pair_ttl > 0:
            raise ValueError(f"pair_ttl must be positive, got {pair_ttl!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending!r}")
        self._windows = windows
        self._rate = settings.kserve_sample_rate
        self._environment = settings.kserve_environment
        self._clock = clock
        self._monotonic = monotonic
        self.pair_ttl = pair_ttl
        self.max_pending = max_pending
        self._pending: dict[_Key, _Pending] = {}  # insertion order = age order
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            (
                "events_received",
                "events_unsampled",
                "events_rejected",
                "events_duplicate",
                "pairs_ingested",
                "requests_unpaired",
                "responses_unpaired",
                "pending_evicted",
                "rows_ingested",
                "rows_rejected",
            ),
            0,
        )
        self._reasons: dict[str, int] = {}

    # -- accounting --------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters (``events_received``, ``events_rejected``, ``pairs_ingested``,
        ``requests_unpaired``, ``rows_ingested``, ...) and ``pending``."""
        with self._lock:
            return {**self._counts, "pending": len(self._pending)}

    def rejections(self) -> dict[str, int]:
        """Refused events per reason (``missing_id``, ``not_json``, ``bad_shape``, ...)."""
        with self._lock:
            return dict(self._reasons)

    def reject(self, reason: str) -> None:
        """Count one refused event (the HTTP layer calls this for size and transport errors)."""
        with self._lock:
            self._counts["events_rejected"] += 1
            self._reasons[reason] = self._reasons.get(reason, 0) + 1

    # -- events ------------------------------------------------------------------

    def handle(self, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Take one posted event (``headers`` with lower-case keys). Raises
        BadEvent (or TooLarge) and ingests nothing when the event is refused."""
        with self._lock:
            self._counts["events_received"] += 1
        try:
            return self._handle(headers, body)
        except BadEvent as err:
            self.reject(err.reason)
            raise
        except TooLarge:
            self.reject("too_large")
            raise
        finally:
            self.expire()

    def _handle(self, headers: Mapping[str, str], body: bytes) -> Outcome:
        event = parse_event(headers, body)
        ext = event.extensions
        model = ext.get("inferenceservicename") or _last_segment(event.source)
        if not model:
            raise BadEvent(
                "no_model", "no ce-inferenceservicename and ce-source has no path to name the model"
            )
        component = ext.get("component", "")
        if component and component != _DEFAULT_COMPONENT:
            model = f"{model}-{component}"
        environment = self._environment or ext.get("namespace") or "default"
        if not sample_by_id(event.id, self._rate):
            with self._lock:
                self._counts["events_unsampled"] += 1
            return Outcome("unsampled")
        request = event.type == REQUEST_TYPE
        error = not request and _is_error(event.data)
        rows = None if error else _extract(event.data, request)
        half = _Half(rows, _version(event.data), _timestamp(event.time, self._clock()))
        key = (model, environment, event.id)
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                pending = _Pending(self._monotonic(), ext.get("endpoint", ""))
                self._set(pending, half, request, error)
                evicted = None
                if len(self._pending) >= self.max_pending:
                    old = next(iter(self._pending))
                    evicted = (old, self._pending.pop(old))
                    self._counts["pending_evicted"] += 1
                self._pending[key] = pending
                done: _Pending | None = None
            elif (pending.request if request else pending.response) is not None:
                self._counts["events_duplicate"] += 1
                return Outcome("duplicate")
            else:
                self._set(pending, half, request, error)
                done = self._pending.pop(key)
        if done is None:
            if evicted is not None:
                self._ingest_quietly(evicted[0], evicted[1])
            return Outcome("pending")
        return Outcome("ingested", self._ingest(key, done))

    @staticmethod
    def _set(pending: _Pending, half: _Half, request: bool, error: bool) -> None:
        if request:
            pending.request = half
        else:
            pending.response = half
            pending.error = error

    def expire(self) -> int:
        """Ingest, alone, every half whose pair did not come within ``pair_ttl``;
        return how many were ingested."""
        deadline = self._monotonic() - self.pair_ttl
        due: list[tuple[_Key, _Pending]] = []
        with self._lock:
            for key, pending in self._pending.items():
                if pending.born > deadline:
                    break
                due.append((key, pending))
            for key, _ in due:
                del self._pending[key]
        for key, pending in due:
            self._ingest_quietly(key, pending)
        return len(due)

    def drain(self) -> int:
        """Ingest every pending half now (on shutdown); return how many."""
        with self._lock:
            due = list(self._pending.items())
            self._pending.clear()
        for key, pending in due:
            self._ingest_quietly(key, pending)
        return len(due)

    def _ingest_quietly(self, key: _Key, pending: _Pending) -> None:
        try:
            self._ingest(key, pending)
        except (InvalidInput, TooLarge) as err:
            log.debug("unpaired KServe event %s/%s/%s refused: %s", *key, err)

    def _ingest(self, key: _Key, pending: _Pending) -> int:
        model, environment, event_id = key
        request, response = pending.request, pending.response
        features = request.rows if request is not None else None
        outputs = response.rows if response is not None else None
        records = _pair(features, outputs)
        if records is None:
            raise BadEvent(
                "rows_mismatch",
                f"request {event_id!r} has {len(features or ())} rows and its response"
                f" {len(outputs or ())}; nothing was ingested",
            )
        first = request if request is not None else response
        assert first is not None
        version = (response.version if response is not None else "") or (
            request.version if request is not None else ""
        )
        n = len(records)
        if n == 0:
            raise BadEvent("bad_shape", f"event {event_id!r} holds no records")
        columns = _Columns(n)
        for row, (frow, orow) in enumerate(records):
            columns.put(row, pb.SIGNAL_KIND_FEATURE, frow)
            columns.put(row, pb.SIGNAL_KIND_OUTPUT, orow)
        batch = pb.SampleBatch(
            model=model,
            version=version,
            environment=environment,
            timestamps=[first.timestamp] * n,
            request_ids=[event_id] * n,
        )
        if pending.endpoint:
            batch.batch_slices["endpoint"] = pending.endpoint
        for (kind, name), nvalues in columns.numeric.items():
            batch.numeric.add(name=name, kind=kind, values=nvalues)
        for (kind, name), cvalues in columns.categorical.items():
            batch.categorical.add(name=name, kind=kind, values=cvalues)
        if response is not None:
            batch.numeric.add(
                name=_ERROR_NAME,
                kind=pb.SIGNAL_KIND_ERROR,
                values=[1.0 if pending.error else 0.0] * n,
            )
        with self._lock:
            if request is None:
                self._counts["responses_unpaired"] += 1
            elif response is None:
                self._counts["requests_unpaired"] += 1
            else:
                self._counts["pairs_ingested"] += 1
        try:
            rows = self._windows.ingest(batch)
        except (InvalidInput, TooLarge) as err:
            with self._lock:
                self._counts["rows_rejected"] += n
            if isinstance(err, TooLarge):
                raise
            raise BadEvent("refused", f"the records were refused: {err}") from err
        with self._lock:
            self._counts["rows_ingested"] += rows
        return rows


def _last_segment(source: str) -> str:
    path = urlsplit(source).path if "://" in source else source
    parts = [p for p in path.split("/") if p]
    return parts[-1] if parts else ""
