"""gRPC server interceptors that shadow Open Inference Protocol v2 ``ModelInfer`` calls.

:class:`OIPServerInterceptor` (``grpc.server``) and :class:`AioOIPServerInterceptor`
(``grpc.aio.server``) observe ``/inference.GRPCInferenceService/ModelInfer`` only;
the continuation's handler of every other method is returned as is. For
``ModelInfer`` the unary-unary behavior is wrapped: the sampling decision is
made before the call (per row of a batched request), the handler is timed, and
after it returns (or raises, or aborts) the sampled rows are decoded from the
deserialized request and response messages and recorded with
:meth:`Shadow.record_call`. The response object is returned unchanged, so the
bytes on the wire are the same with and without the interceptor.

Tensors (``inputs`` and ``outputs``) are decoded from typed ``contents`` or from
``raw_input_contents`` / ``raw_output_contents`` (little-endian, row-major; BYTES
elements carry a 4-byte little-endian length prefix) with :mod:`struct`; numpy
is never needed. The first dimension is the batch: a tensor of shape
``[n, k]`` gives ``n`` rows with the columns ``name`` (``k == 1``) or
``name.0`` ... ``name.<k-1>`` (or the names in ``column_names[name]``); deeper
shapes are flattened per row. Send a single row as ``[1, k]``. Numbers and BOOL
become numeric signals, BYTES elements categorical ones (UTF-8; other bytes are
left out and counted as ``bytes_not_utf8``).

The messages are read by field name, so the interceptor works with whichever OIP
stubs the server registered (KServe's ``grpc_predict_v2_pb2``, MLServer's
``dataplane_pb2``, the vendored ``proto/inference/v2``); stubs without the raw
fields (older MLServer protos) are read from their typed contents.

Bad input never touches the served request: a sampled call whose tensors do not
decode is skipped and counted by reason in :meth:`skipped`.
"""

from __future__ import annotations

import inspect
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import grpc
import grpc.aio

from middleware.http_extract import usable_slice_value
from middleware.shadow import Shadow
from middleware.shipper import RateLimitedLog

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_MAX_ROWS",
    "MODEL_INFER",
    "SKIP_REASONS",
    "AioOIPServerInterceptor",
    "OIPServerInterceptor",
    "ShadowFor",
    "ShadowPerModel",
    "ShadowSource",
    "TensorError",
    "decode_tensor",
]

#: The only method the interceptors observe.
MODEL_INFER: Final = "/inference.GRPCInferenceService/ModelInfer"
#: Sampled calls whose request (or response) tensors exceed this many bytes are skipped.
DEFAULT_MAX_PAYLOAD: Final = 4 << 20
#: Requests with a larger batch (first dimension) are not sampled.
DEFAULT_MAX_ROWS: Final = 4096

#: Why a sampled call was skipped (or, for ``bytes_not_utf8``, a BYTES element left out).
SKIP_REASONS: Final = (
    "unknown_datatype",
    "shape_mismatch",
    "rows_mismatch",
    "too_large",
    "bytes_not_utf8",
    "internal_error",
)

#: Picks the Shadow for a served ``(model_name, model_version)``; None: not observed.
ShadowFor = Callable[[str, str], "Shadow | None"]
#: One Shadow for every model, a Shadow per ``model_name``, or a :data:`ShadowFor`.
ShadowSource = Shadow | Mapping[str, Shadow] | ShadowFor

if TYPE_CHECKING:
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _SyncBase = grpc.ServerInterceptor[Any, Any]
    _AioBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler
    _SyncBase = grpc.ServerInterceptor
    _AioBase = grpc.aio.ServerInterceptor

_perf_ns = time.perf_counter_ns
_thread_ns = time.thread_time_ns
_RESERVED = frozenset({"latency_seconds", "cpu_seconds", "error", "error_type"})

# datatype -> (struct code, bytes per element) for raw contents
_RAW: Final[dict[str, tuple[str, int]]] = {
    "BOOL": ("?", 1),
    "INT8": ("b", 1),
    "INT16": ("h", 2),
    "INT32": ("i", 4),
    "INT64": ("q", 8),
    "UINT8": ("B", 1),
    "UINT16": ("H", 2),
    "UINT32": ("I", 4),
    "UINT64": ("Q", 8),
    "FP16": ("e", 2),
    "BF16": ("H", 2),  # the upper half of an FP32
    "FP32": ("f", 4),
    "FP64": ("d", 8),
}
# datatype -> InferTensorContents field (FP16 and BF16 are raw only)
_TYPED: Final[dict[str, str]] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class TensorError(ValueError):
    """A tensor that cannot be decoded; ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        if d < 0:
            raise TensorError("shape_mismatch", f"negative dimension in shape {list(shape)}")
        n *= d
    return n


def _split_bytes(raw: bytes, count: int) -> list[bytes]:
    """``count`` BYTES elements, each a 4-byte little-endian length then the bytes."""
    out: list[bytes] = []
    view = memoryview(raw)
    pos, end = 0, len(raw)
    for _ in range(count):
        if pos + 4 > end:
            raise TensorError("shape_mismatch", "BYTES contents end inside a length prefix")
        (size,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + size > end:
            raise TensorError("shape_mismatch", "BYTES element runs past the contents")
        out.append(bytes(view[pos : pos + size]))
        pos += size
    if pos != end:
        raise TensorError("shape_mismatch", f"{end - pos} bytes after the last BYTES element")
    return out


def _raw_values(datatype: str, count: int, raw: bytes) -> list[Any]:
    if datatype == "BYTES":
        return list(_split_bytes(raw, count))
    spec = _RAW.get(datatype)
    if spec is None:
        raise TensorError("unknown_datatype", f"unknown datatype {datatype!r}")
    code, size = spec
    if len(raw) != count * size:
        raise TensorError("shape_mismatch", f"{len(raw)} raw bytes for {count} {datatype} elements")
    values = list(struct.unpack(f"<{count}{code}", raw))
    if datatype == "BF16":
        widened = struct.pack(f"<{count}I", *(v << 16 for v in values))
        return list(struct.unpack(f"<{count}f", widened))
    return values


def decode_tensor(
    datatype: str, shape: Sequence[int], contents: Any = None, raw: bytes | None = None
) -> list[Any]:
    """The flattened row-major elements of one OIP tensor.

    From ``raw`` when given (little-endian), else from the typed ``contents``
    (an ``InferTensorContents``). BYTES elements are returned as ``bytes``.
    Raises :class:`TensorError` when the datatype is unknown or the contents do
    not match the shape.

    >>> import struct
    >>> decode_tensor("FP32", [2, 2], raw=struct.pack("<4f", 1, 2, 3, 4))
    [1.0, 2.0, 3.0, 4.0]
    >>> decode_tensor("BYTES", [2], raw=b"\\x02\\x00\\x00\\x00hi\\x00\\x00\\x00\\x00")
    [b'hi', b'']
    """
    count = _count(shape)
    if raw is not None:
        return _raw_values(datatype, count, raw)
    field = _TYPED.get(datatype)
    if field is None:
        reason = "unknown_datatype" if datatype not in _RAW else "shape_mismatch"
        raise TensorError(reason, f"datatype {datatype!r} has no typed contents")
    values = list(getattr(contents, field)) if contents is not None else []
    if len(values) != count:
        raise TensorError(
            "shape_mismatch", f"{len(values)} {datatype} values for shape {list(shape)}"
        )
    return values


def _payload(tensors: Sequence[Any], raws: Sequence[bytes]) -> int:
    """Bytes the tensors' contents take (typed numbers counted at 8 bytes)."""
    if raws:
        return sum(len(r) for r in raws)
    total = 0
    for t in tensors:
        field = _TYPED.get(t.datatype)
        if field is None:
            continue
        values = getattr(t.contents, field)
        if field == "bytes_contents":
            total += sum(len(v) + 4 for v in values)
        else:
            total += 8 * len(values)
    return total


def _qualified(exc: BaseException) -> str:
    kind = type(exc)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class ShadowPerModel:
    """A :data:`ShadowFor` that makes one :class:`Shadow` per served model and version.

    The first ``ModelInfer`` for ``(model_name, model_version)`` creates
    ``Shadow(model=model_name, version=model_version or None, **options)``
    (an empty version falls back to ``BASELINED_MODEL_VERSION``). ``models``
    limits it to those names; at most ``max_models`` Shadows are made, later
    models are not observed. Close it (or each Shadow) on shutdown.

    >>> per_model = ShadowPerModel(target="127.0.0.1:1", atexit=False)
    >>> per_model("ranker", "3").version
    '3'
    >>> per_model.close(timeout=0.1)
    """

    def __init__(
        self, *, models: Iterable[str] | None = None, max_models: int = 32, **options: Any
    ) -> None:
        if "model" in options or "version" in options:
            raise ValueError("model and version come from each request; do not pass them")
        if max_models < 1:
            raise ValueError(f"invalid max_models {max_models!r}: must be >= 1")
        self._models = None if models is None else frozenset(models)
        self._max = max_models
        self._options = options
        self._lock = threading.Lock()
        self._shadows: dict[tuple[str, str], Shadow] = {}

    def __call__(self, model_name: str, model_version: str) -> Shadow | None:
        key = (model_name, model_version)
        shadow = self._shadows.get(key)
        if shadow is not None:
            return shadow
        if not model_name.strip() or (self._models is not None and model_name not in self._models):
            return None
        with self._lock:
            shadow = self._shadows.get(key)
            if shadow is None:
                if len(self._shadows) >= self._max:
                    return None
                shadow = Shadow(model=model_name, version=model_version or None, **self._options)
                self._shadows[key] = shadow
            return shadow

    def shadows(self) -> dict[tuple[str, str], Shadow]:
        """The Shadows made so far, by ``(model_name, model_version)``."""
        with self._lock:
            return dict(self._shadows)

    def flush(self) -> None:
        """Flush every Shadow."""
        for shadow in self.shadows().values():
            shadow.flush()

    def close(self, timeout: float = 5.0) -> None:
        """Close every Shadow (each waits at most ``timeout`` seconds)."""
        for shadow in self.shadows().values():
            shadow.close(timeout)


class _Plan:
    """One observed call: its Shadow, slices, request id and sampled row indexes."""

    __slots__ = ("rid", "rows", "shadow", "slices")

    def __init__(
        self, shadow: Shadow, slices: Mapping[str, str] | None, rid: str | None, rows: list[int]
    ) -> None:
        self.shadow = shadow
        self.slices = slices
        self.rid = rid
        self.rows = rows


_Route = tuple[Shadow, "Mapping[str, str] | None"] | None


class _Core:
    """What the sync and asyncio interceptors share."""

    def __init__(
        self,
        shadow: ShadowSource,
        *,
        column_names: Mapping[str, Sequence[str]] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        max_rows: int = DEFAULT_MAX_ROWS,
        record_outputs: bool = True,
        method: str = MODEL_INFER,
    ) -> None:
        if max_payload < 0:
            raise ValueError(f"invalid max_payload {max_payload!r}: must be >= 0 bytes")
        if max_rows < 1:
            raise ValueError(f"invalid max_rows {max_rows!r}: must be >= 1")
        names: dict[str, tuple[str, ...]] = {}
        for tensor, columns in (column_names or {}).items():
            cols = tuple(columns)
            if isinstance(columns, str) or not all(
                isinstance(c, str) and usable_slice_value(c) and c not in _RESERVED for c in cols
            ):
                raise ValueError(f"invalid column_names[{tensor!r}]: must be usable signal names")
            if len(set(cols)) != len(cols):
                raise ValueError(f"invalid column_names[{tensor!r}]: names repeat")
            names[tensor] = cols
        self._single: Shadow | None = None
        self._by_name: Mapping[str, Shadow] | None = None
        self._factory: ShadowFor | None = None
        if isinstance(shadow, Shadow):
            self._single = shadow
        elif isinstance(shadow, Mapping):
            self._by_name = dict(shadow)
        elif callable(shadow):
            self._factory = shadow
        else:
            raise TypeError("shadow must be a Shadow, a mapping of model names, or a callable")
        self.method = method
        self._column_names = names
        self._max_payload = max_payload
        self._max_rows = max_rows
        self._record_outputs = record_outputs
        self._routes: dict[tuple[str, str], _Route] = {}
        self._names: dict[tuple[str, int], tuple[str, ...] | None] = {}
        self._handlers: dict[int, tuple[_Handler, _Handler]] = {}
        self._lock = threading.Lock()
        self._skipped = dict.fromkeys(SKIP_REASONS, 0)
        self._log = RateLimitedLog()
        if self._single is not None:  # skips of a shared interceptor belong to no one model
            self._single.report_drops(self.skipped)

    # -- counters ---------------------------------------------------------------

    def skipped(self) -> dict[str, int]:
        """Sampled calls skipped by reason (:data:`SKIP_REASONS`); ``bytes_not_utf8``
        counts BYTES elements left out of otherwise recorded calls."""
        with self._lock:
            return dict(self._skipped)

    def _skip(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._skipped[reason] = self._skipped.get(reason, 0) + n

    # -- routing and sampling (before the call) ------------------------------------

    def _route(self, name: str, version: str) -> _Route:
        key = (name, version)
        try:
            return self._routes[key]
        except KeyError:
            pass
        route: _Route = None
        if self._single is not None:
            shadow = self._single
            slices: dict[str, str] = {}
            if name and name != shadow.model and usable_slice_value(name):
                slices["oip_model"] = name
            if version and version != shadow.version and usable_slice_value(version):
                slices["oip_version"] = version
            route = (shadow, slices or None)
        elif self._by_name is not None:
            found = self._by_name.get(name)
            route = None if found is None else (found, None)
        else:
            assert self._factory is not None
            made = self._factory(name, version)
            route = None if made is None else (made, None)
        if len(self._routes) >= 1024:
            self._routes.clear()
        self._routes[key] = route
        return route

    def _plan(self, request: Any) -> _Plan | None:
        """Who records this call and which rows are sampled; None: not sampled. Never raises."""
        try:
            route = self._route(request.model_name, request.model_version)
            if route is None:
                return None
            shadow, slices = route
            inputs = request.inputs
            n = 1
            if inputs:
                shape = inputs[0].shape
                if shape:
                    n = shape[0]
            if n < 1:
                return None
            rid: str | None = request.id or None
            decide = shadow.decide
            if n == 1:
                if not decide(rid):
                    return None
                return _Plan(shadow, slices, rid, [0])
            if n > self._max_rows:  # one decision for the call; counted when it hits
                if decide(rid):
                    self._skip("too_large")
                return None
            if rid is None:
                rows = [j for j in range(n) if decide(None)]
            else:
                rows = [j for j in range(n) if decide(f"{rid}/{j}")]
            return _Plan(shadow, slices, rid, rows) if rows else None
        except Exception as err:
            self._skip("internal_error")
            self._log.warning("plan", "baselined OIP interceptor failed: %s", err, exc_info=True)
            return None

    # -- decoding and recording (after the call) -------------------------------------

    def _columns(self, name: str, width: int) -> tuple[str, ...] | None:
        key = (name, width)
        try:
            return self._names[key]
        except KeyError:
            pass
        cols: tuple[str, ...] | None
        given = self._column_names.get(name)
        if given is not None and len(given) == width:
            cols = given
        elif not usable_slice_value(name) or (width == 1 and name in _RESERVED):
            cols = None
        else:
            if given is not None:
                self._log.warning(
                    "column_names:" + name,
                    "baselined: column_names[%r] has %d names, the tensor %d columns; using %s.<j>",
                    name,
                    len(given),
                    width,
                    name,
                )
            cols = (name,) if width == 1 else tuple(f"{name}.{j}" for j in range(width))
            if not all(usable_slice_value(c) for c in cols):
                cols = None
        if len(self._names) >= 4096:
            self._names.clear()
        self._names[key] = cols
        return cols

    def _rows(self, tensors: Sequence[Any], raws: Sequence[bytes]) -> list[dict[str, Any]]:
        """One dict per batch row of the tensors; raises :class:`TensorError`."""
        if raws and len(raws) != len(tensors):
            raise TensorError(
                "shape_mismatch", f"{len(raws)} raw contents for {len(tensors)} tensors"
            )
        if _payload(tensors, raws) > self._max_payload:
            raise TensorError("too_large", "tensor contents exceed max_payload")
        rows: list[dict[str, Any]] | None = None
        for i, tensor in enumerate(tensors):
            datatype = tensor.datatype
            shape = list(tensor.shape)
            values = decode_tensor(
                datatype, shape, tensor.contents, bytes(raws[i]) if raws else None
            )
            if shape:
                n = shape[0]
                width = len(values) // n if n else 0
            else:
                n, width = 1, len(values)
            if rows is None:
                rows = [{} for _ in range(n)]
            elif len(rows) != n:
                raise TensorError(
                    "rows_mismatch", f"tensor {tensor.name!r} has {n} rows, others {len(rows)}"
                )
            if datatype == "BYTES":
                values = self._texts(values)
            cols = self._columns(tensor.name, width)
            if cols is None or width == 0:
                continue
            if width == 1:
                col = cols[0]
                for row, value in zip(rows, values, strict=True):
                    row[col] = value
                continue
            for r, row in enumerate(rows):
                base = r * width
                row.update(zip(cols, values[base : base + width], strict=True))
        return rows if rows is not None else [{}]

    def _texts(self, values: list[Any]) -> list[str | None]:
        out: list[str | None] = []
        bad = 0
        for v in values:
            try:
                out.append(v.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
                bad += 1
        if bad:
            self._skip("bytes_not_utf8", bad)
        return out

    def _finish(
        self,
        plan: _Plan,
        request: Any,
        response: Any,
        exc: BaseException | None,
        context: Any,
        elapsed_ns: int,
        cpu_ns: int | None,
    ) -> None:
        """Decode and record one sampled call. Never raises."""
        try:
            code = None
            try:
                code = context.code()
            except Exception:
                code = None
            error_type: str | None = None
            if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
                error_type = f"grpc.{code.name}"
            elif exc is not None:
                error_type = _qualified(exc)
            error = error_type is not None
            picks = plan.rows
            try:
                features = self._rows(request.inputs, getattr(request, "raw_input_contents", ()))
            except TensorError as err:
                if not error:
                    self._skip(err.reason)
                    return
                features = None
            if features is not None and len(features) <= picks[-1]:
                if not error:
                    self._skip("rows_mismatch")
                    return
                features = None
            outputs: list[dict[str, Any]] | None = None
            if not error and response is not None and self._record_outputs:
                try:
                    outputs = self._rows(
                        response.outputs, getattr(response, "raw_output_contents", ())
                    )
                except TensorError as err:
                    self._skip(err.reason)
                    return
                if features is not None and len(outputs) != len(features):
                    self._skip("rows_mismatch")
                    return
            chosen_f = [{} for _ in picks] if features is None else [features[j] for j in picks]
            chosen_o = None if outputs is None else [outputs[j] for j in picks]
            plan.shadow.record_call(
                latency=elapsed_ns / 1e9,
                cpu=None if cpu_ns is None else cpu_ns / 1e9,
                features=chosen_f,
                outputs=chosen_o,
                error=error,
                error_type=error_type,
                request_id=plan.rid,
                slices=plan.slices,
            )
        except Exception as err:  # a bug of ours: never the served request's problem
            self._skip("internal_error")
            self._log.warning("finish", "baselined OIP interceptor failed: %s", err, exc_info=True)

    # -- handler wrapping ---------------------------------------------------------------

    def _wrap(self, handler: _Handler | None) -> _Handler | None:
        if handler is None or handler.unary_unary is None:
            return handler
        cached = self._handlers.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        behavior = handler.unary_unary
        if inspect.iscoroutinefunction(behavior):
            wrapped_fn: Callable[..., Any] = self._wrap_async(behavior)
        else:
            wrapped_fn = self._wrap_sync(behavior)
        wrapped = grpc.unary_unary_rpc_method_handler(
            wrapped_fn,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        if len(self._handlers) >= 64:
            self._handlers.clear()
        self._handlers[id(handler)] = (handler, wrapped)
        return wrapped

    def _wrap_sync(self, inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        plan_for = self._plan
        finish = self._finish

        def model_infer(request: Any, context: Any) -> Any:
            plan = plan_for(request)
            if plan is None:
                return inner(request, context)
            t0 = _perf_ns()
            c0 = _thread_ns()
            try:
                response = inner(request, context)
            except Exception as exc:
                c1 = _thread_ns()
                t1 = _perf_ns()
                finish(plan, request, None, exc, context, t1 - t0, c1 - c0)
                raise
            c1 = _thread_ns()
            t1 = _perf_ns()
            finish(plan, request, response, None, context, t1 - t0, c1 - c0)
            return response

        return model_infer

    def _wrap_async(
        self, inner: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        plan_for = self._plan
        finish = self._finish

        # Thread CPU time is not recorded: across an await the loop runs other tasks.
        async def model_infer(request: Any, context: Any) -> Any:
            plan = plan_for(request)
            if plan is None:
                return await inner(request, context)
            t0 = _perf_ns()
            try:
                response = await inner(request, context)
            except Exception as exc:
                finish(plan, request, None, exc, context, _perf_ns() - t0, None)
                raise
            finish(plan, request, response, None, context, _perf_ns() - t0, None)
            return response

        return model_infer


class OIPServerInterceptor(_Core, _SyncBase):
    """Shadow the Open Inference Protocol ``ModelInfer`` calls of a ``grpc.server``.

    ``grpc.server(executor, interceptors=[OIPServerInterceptor(shadow)])``.

    ``shadow`` is one :class:`Shadow` for every model (requests for another
    ``model_name`` / ``model_version`` than the Shadow's get the slice
    attributes ``oip_model`` / ``oip_version``), a mapping ``{model_name:
    Shadow}`` (other models are not observed), or a :data:`ShadowFor` factory
    such as :class:`ShadowPerModel` (one Shadow per served model and version).
    ``column_names`` names the columns of a tensor (``{"x": ["age", "income"]}``);
    ``max_payload`` (bytes of tensor contents per message) and ``max_rows``
    (batch size) cap what a sample may decode; ``record_outputs=False`` leaves
    the response tensors out; ``method`` is the observed full method name.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        """The continuation's handler, with ``ModelInfer`` wrapped."""
        handler = continuation(handler_call_details)
        if handler_call_details.method != self.method:
            return handler
        return self._wrap(handler)


class AioOIPServerInterceptor(_Core, _AioBase):
    """Shadow the Open Inference Protocol ``ModelInfer`` calls of a ``grpc.aio.server``.

    ``grpc.aio.server(interceptors=[AioOIPServerInterceptor(shadow)])``. Async and
    sync servicer methods are both handled. Arguments as for :class:`OIPServerInterceptor`.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        """The continuation's handler, with ``ModelInfer`` wrapped."""
        handler = await continuation(handler_call_details)
        if handler_call_details.method != self.method:
            return handler
        # grpc.aio passes None on for an unknown method; the stubs do not say so.
        return cast("_Handler", self._wrap(handler))
