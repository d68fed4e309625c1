"""Signals from JSON request and response bodies, shared by the ASGI and WSGI middleware.

An HTTP extractor takes the parsed JSON body (``json.loads``) and returns
what every extractor returns (:mod:`middleware.extractors`): a mapping (one
record), a sequence of mappings (one record per row of a batched request), or
None. The defaults understand the common model-server shapes:

========================================== ==========================================
body                                       records
========================================== ==========================================
``{"features": {...}}``                    that mapping (a list of mappings: one per row)
``{"instances": [...]}``                   one per row (TensorFlow Serving / KServe V1)
``{"inputs": [{"name", "shape", "data"}]}`` one per row of the tensors (Open Inference V2)
``{"inputs": [...]}`` (other rows)         one per row, like ``instances``
``{"predictions": [...]}``                 one per row (responses)
``{"outputs": [{"name", "shape", "data"}]}`` one per row of the tensors (responses)
any other object                           its top-level number, bool and string fields
a list                                     one per element, like ``instances``
a number or string (responses)             ``{"output": value}``
========================================== ==========================================

A row that is an object keeps its number, bool and string fields; a row that
is a list of scalars becomes ``{"<prefix>.0": v0, "<prefix>.1": v1, ...}``
(prefix ``x`` for requests, ``prediction`` for responses); a scalar row
becomes ``{"x": v}`` or ``{"prediction": v}``. A V2 tensor of shape
``[n, k]`` (data row-major, flattened or nested) gives ``n`` rows with the
columns ``name`` (``k == 1``) or ``name.0`` ... ``name.<k-1>``.

Field names that the sidecar would refuse (empty, longer than 256
characters, control characters) and the reserved signal names
(``latency_seconds``, ``cpu_seconds``, ``error``, ``error_type``) are left
out, so one odd key never costs a batch.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from middleware.extractors import Rows
from middleware.shipper import RateLimitedLog

if TYPE_CHECKING:
    from middleware.shadow import Shadow

__all__ = [
    "DEFAULT_MAX_BODY",
    "SKIP_REASONS",
    "JsonExtractor",
    "PathsSource",
    "RequestIdSource",
    "is_json_content_type",
    "json_features",
    "json_outputs",
    "usable_slice_value",
]

#: An extractor of the parsed JSON body of a request or a response.
JsonExtractor = Callable[[Any], Rows]

_MAX_NAME = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RESERVED = frozenset({"latency_seconds", "cpu_seconds", "error", "error_type"})


def is_json_content_type(value: str | None) -> bool:
    """``application/json`` or any ``+json`` media type, parameters ignored.

    >>> is_json_content_type("application/json; charset=utf-8"), is_json_content_type("text/plain")
    (True, False)
    """
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def usable_slice_value(value: str) -> bool:
    """True when the sidecar accepts ``value`` as a slice value (or a signal name)."""
    return 0 < len(value) <= _MAX_NAME and _CONTROL.search(value) is None


_names: dict[str, bool] = {}  # name -> usable; bounded, see _name_ok


def _name_ok(name: str) -> bool:
    ok = _names.get(name)
    if ok is None:
        ok = type(name) is str and name not in _RESERVED and usable_slice_value(name)
        if len(_names) >= 4096:
            _names.clear()
        _names[name] = ok
    return ok


_routes: dict[str, bool] = {}  # route -> usable as a slice value; bounded

_SCALARS = frozenset({str, bool, int, float})


def _scalar(value: Any) -> bool:
    return type(value) in _SCALARS


def _fields(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The number, bool and string fields of a JSON object with usable names."""
    names, scalars = _names, _SCALARS
    for k, v in obj.items():
        if type(v) not in scalars or not (names.get(k) or _name_ok(k)):
            break
    else:
        return obj  # the common case: nothing to leave out, no copy
    return {k: v for k, v in obj.items() if type(v) in scalars and _name_ok(k)}


def _row(value: Any, prefix: str) -> Mapping[str, Any] | None:
    if isinstance(value, dict):
        return _fields(value)
    if isinstance(value, list):
        return {f"{prefix}.{i}": v for i, v in enumerate(value) if _scalar(v)}
    if _scalar(value):
        return {prefix: value}
    return None


def _rows(values: list[Any], prefix: str) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = []
    for value in values:
        row = _row(value, prefix)
        rows.append(row if row is not None else {})
    return rows


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flatten(v))
    return out


def _is_tensors(values: list[Any]) -> bool:
    return bool(values) and all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and "data" in t for t in values
    )


def _tensor_rows(tensors: Sequence[Mapping[str, Any]]) -> Rows:
    """Rows of Open Inference Protocol V2 JSON tensors (``{"name", "shape", "data"}``)."""
    rows: list[dict[str, Any]] | None = None
    for tensor in tensors:
        name = tensor["name"]
        data = _flatten(tensor["data"])
        shape = tensor.get("shape")
        if isinstance(shape, list) and shape and all(type(d) is int and d >= 0 for d in shape):
            n = shape[0]
            width = math.prod(shape[1:])
        else:
            n, width = 1, len(data)
        if n * width != len(data):
            raise ValueError(f"tensor {name!r}: shape {shape} does not match {len(data)} values")
        if rows is None:
            rows = [{} for _ in range(n)]
        elif len(rows) != n:
            raise ValueError(f"tensor {name!r} has {n} rows, other tensors {len(rows)}")
        if not _name_ok(name):
            continue
        for r in range(n):
            row = rows[r]
            if width == 1:
                v = data[r]
                if _scalar(v):
                    row[name] = v
                continue
            base = r * width
            for j in range(width):
                v = data[base + j]
                if _scalar(v):
                    row[f"{name}.{j}"] = v
    return rows


def _extract(body: Any, batch_keys: tuple[str, ...], prefix: str) -> Rows:
    if isinstance(body, list):
        return _rows(body, prefix)
    if not isinstance(body, dict):
        return None
    for key in batch_keys:
        value = body.get(key)
        if isinstance(value, dict):
            return _fields(value)
        if isinstance(value, list):
            if _is_tensors(value):
                return _tensor_rows(value)
            if key == "features" and not any(isinstance(v, (dict, list)) for v in value):
                return _row(value, prefix)  # one row given as a list of values
            return _rows(value, prefix)
    return _fields(body)


def json_features(body: Any) -> Rows:
    """Request features from a parsed JSON body (see the module docstring).

    >>> json_features({"age": 41, "city": "Oslo", "tags": ["a"]})
    {'age': 41, 'city': 'Oslo'}
    >>> json_features({"instances": [{"age": 41}, {"age": 7}]})
    [{'age': 41}, {'age': 7}]
    """
    return _extract(body, ("features", "instances", "inputs"), "x")


def json_outputs(body: Any) -> Rows:
    """Response outputs from a parsed JSON body (see the module docstring).

    >>> json_outputs({"predictions": [0.25, 0.75]})
    [{'prediction': 0.25}, {'prediction': 0.75}]
    >>> json_outputs(0.5)
    {'output': 0.5}
    """
    if _scalar(body):
        return {"output": body}
    return _extract(body, ("predictions", "outputs"), "prediction")


# -- shared by the ASGI and WSGI middleware ---------------------------------------

#: How a middleware finds a request's id: a header name, a function of the
#: request headers (lower-case names), or None (random sampling).
RequestIdSource = str | Callable[[Mapping[str, str]], "str | None"] | None
#: Which paths a middleware shadows: None (all), path strings (exact, or a
#: prefix when ending in ``*``), or a predicate on the path.
PathsSource = Iterable[str] | Callable[[str], bool] | None

DEFAULT_MAX_BODY = 1 << 20

#: The reasons a sampled request is skipped, as counted by ``skipped()``.
SKIP_REASONS = (
    "request_not_json",
    "request_invalid_json",
    "request_too_large",
    "request_incomplete",
    "response_not_json",
    "response_invalid_json",
    "response_too_large",
    "response_incomplete",
    "extractor_error",
)


def _path_matcher(paths: PathsSource) -> Callable[[str], bool] | None:
    """None when every path matches (the fast path skips the test)."""
    if paths is None:
        return None
    if callable(paths):
        return paths
    items = [paths] if isinstance(paths, str) else list(paths)
    exact = frozenset(p for p in items if not p.endswith("*"))
    prefixes = tuple(p[:-1] for p in items if p.endswith("*"))

    def match(path: str) -> bool:
        return path in exact or (bool(prefixes) and path.startswith(prefixes))

    return match


class _Body:
    """The bytes of a body as they pass by, up to a cap; past it only the size is kept."""

    __slots__ = ("cap", "chunks", "complete", "over", "size")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.size = 0
        self.over = False
        self.complete = False

    def add(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.over:
            return
        if self.size > self.cap:
            self.over = True
            self.chunks.clear()  # free it now: this sample is skipped
            return
        self.chunks.append(bytes(chunk))

    def data(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


def _qualified(exc: BaseException) -> str:
    kind = type(exc)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class _Core:
    """What the ASGI and WSGI middleware share: settings, counters, and turning a
    finished exchange into one :meth:`Shadow.record_call`."""

    def __init__(
        self,
        shadow: Shadow,
        features: JsonExtractor | None,
        outputs: JsonExtractor | None,
        request_id: RequestIdSource,
        paths: PathsSource,
        methods: Iterable[str],
        max_body: int,
    ) -> None:
        if max_body < 0:
            raise ValueError(f"invalid max_body {max_body!r}: must be >= 0 bytes")
        self.shadow = shadow
        self.features = features or json_features
        self.outputs = outputs or json_outputs
        self.id_header: str | None = None
        self.id_fn: Callable[[Mapping[str, str]], str | None] | None = None
        if isinstance(request_id, str):
            self.id_header = request_id.lower()
        elif request_id is not None:
            self.id_fn = request_id
        self.match = _path_matcher(paths)
        self.methods = frozenset(m.upper() for m in methods)
        self.max_body = max_body
        self._log = RateLimitedLog()
        self._lock = threading.Lock()
        self._skipped = dict.fromkeys(SKIP_REASONS, 0)
        shadow.report_drops(self.skipped)  # batches carry these counts to the sidecar

    def skip(self, reason: str) -> None:
        with self._lock:
            self._skipped[reason] = self._skipped.get(reason, 0) + 1

    def skipped(self) -> dict[str, int]:
        with self._lock:
            return dict(self._skipped)

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        """The id from a user function of the headers; None if it fails."""
        assert self.id_fn is not None
        try:
            rid = self.id_fn(headers)
        except Exception:
            self.skip("extractor_error")
            return None
        return str(rid) if rid else None

    def finish(
        self,
        *,
        elapsed_ns: int,
        status: int | None,
        exc: BaseException | None,
        request: _Body,
        response: _Body,
        response_json: bool,
        route: str | None,
        request_id: str | None,
        traceparent: str | None = None,
    ) -> None:
        """Parse, extract and record one sampled exchange (``traceparent``: the
        request's W3C trace context header, if any). Never raises."""
        try:
            self._finish(
                elapsed_ns, status, exc, request, response, response_json, route, request_id,
                traceparent,
            )  # fmt: skip
        except Exception as err:  # a bug of ours: never the app's problem
            self._log.warning(
                "internal", "baselined HTTP middleware failed: %s", err, exc_info=True
            )

    def _finish(
        self,
        elapsed_ns: int,
        status: int | None,
        exc: BaseException | None,
        request: _Body,
        response: _Body,
        response_json: bool,
        route: str | None,
        request_id: str | None,
        traceparent: str | None = None,
    ) -> None:
        if exc is not None and (status is None or status < 500):
            status = 500  # what the server answers for an unhandled exception
        code = status or 0
        error = code >= 500
        error_type = None
        if exc is not None:
            error_type = _qualified(exc)
        elif error:
            error_type = "http_5xx"

        # Error rows are kept without features when the body is unusable: the
        # error rate matters more than the inputs of the failed request.
        features: Rows = None
        reason = _problem(request, "request")
        if reason is None:
            try:
                body = json.loads(request.data())
            except ValueError:
                reason = "request_invalid_json"
            else:
                try:
                    features = self.features(body)
                except Exception:
                    reason = "extractor_error"
        if reason is not None and not error:
            self.skip(reason)
            return

        outputs: Rows = None
        if 200 <= code < 300 and exc is None and response.size:
            if not response_json:
                self.skip("response_not_json")
                return
            reason = _problem(response, "response")
            if reason is not None:
                self.skip(reason)
                return
            try:
                body = json.loads(response.data())
            except ValueError:
                self.skip("response_invalid_json")
                return
            try:
                outputs = self.outputs(body)
            except Exception:
                self.skip("extractor_error")
                return

        slices = {"status_class": f"{code // 100}xx"}
        if route:
            ok = _routes.get(route)
            if ok is None:
                if len(_routes) >= 4096:
                    _routes.clear()
                ok = _routes[route] = usable_slice_value(route)
            if ok:
                slices["route"] = route
        self.shadow.record_call(
            latency=elapsed_ns / 1e9,
            features=features,
            outputs=outputs,
            error=error,
            error_type=error_type,
            request_id=request_id,
            slices=slices,
            traceparent=traceparent,
        )


def _problem(body: _Body, side: str) -> str | None:
    if body.over:
        return f"{side}_too_large"
    if not body.complete:
        return f"{side}_incomplete"
    return None
