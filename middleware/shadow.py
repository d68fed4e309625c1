"""``shadow``: wrap a handler so sampled calls are shadowed to the sidecar.

The wrapper returns the handler's result (or raises its exception)
unchanged. For a sampled call it measures latency and thread CPU time, runs
the extractors, and copies the signals into a preallocated buffer; a
background thread ships the buffers. Nothing on this path raises into, or
waits for anything on behalf of, the handler: failures are logged (at most
once a minute per kind) and counted in :meth:`Shadow.stats`.

Settings resolve: argument, then environment variable, then default:

=============== ============================== ====================
setting         environment variable           default
=============== ============================== ====================
model           ``BASELINED_MODEL``            (required)
version         ``BASELINED_MODEL_VERSION``    ""
environment     ``BASELINED_ENVIRONMENT``      "production"
target          ``BASELINED_TARGET``           "127.0.0.1:50051"
sample_rate     ``BASELINED_SAMPLE_RATE``      1.0
batch_size      ``BASELINED_SHADOW_BATCH_SIZE``       512
flush_interval  ``BASELINED_SHADOW_FLUSH_INTERVAL``   1.0
queue_batches   ``BASELINED_SHADOW_QUEUE_BATCHES``    64
max_signals     ``BASELINED_SHADOW_MAX_SIGNALS``      256
token           ``BASELINED_TOKEN``            "" (no token)
token_file      ``BASELINED_TOKEN_FILE``       "" (re-read on change)
tls_ca          ``BASELINED_TLS_CA``           "" (TLS off)
tls_cert        ``BASELINED_CLIENT_CERT``      "" (mTLS client cert)
tls_key         ``BASELINED_CLIENT_KEY``       ""
=============== ============================== ====================
"""

from __future__ import annotations

import atexit as _atexit
import contextlib
import functools
import inspect
import itertools
import math
import os
import random
import socket
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar, cast

from middleware import extractors as ex
from middleware.buffer import OUTPUT_PLAN, Recorder, Row
from middleware.fingerprint import Fingerprint, process_fingerprint
from middleware.sampling import BUCKETS, check_rate
from middleware.shipper import Backoff, RateLimitedLog, Shipper, batch_template

__all__ = ["Shadow", "ShadowStats", "active_traceparent", "shadow"]

P = ParamSpec("P")
R = TypeVar("R")

_crc32 = __import__("zlib").crc32
_perf_ns = time.perf_counter_ns
_thread_ns = time.thread_time_ns
_time = time.time


class _Unset:
    pass


_UNSET: Final = _Unset()

_live: weakref.WeakSet[Shadow] = weakref.WeakSet()

# The model server's OpenTelemetry trace API, found in sys.modules (never
# imported here: a server that runs OpenTelemetry has imported it already).
_modules = sys.modules
_trace_api: Any = None
_OTEL: Final = "opentelemetry.trace"


def active_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current OpenTelemetry span, or None when
    OpenTelemetry is not loaded in this process or no valid span is active.

    Costs a dict lookup when OpenTelemetry is not loaded, about 1 us when it is;
    the middleware calls it for sampled calls only.
    """
    global _trace_api
    api = _trace_api
    if api is None:
        api = _modules.get(_OTEL)
        if api is None:
            return None
        _trace_api = api
    try:
        ctx = api.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    except Exception:  # a broken or foreign tracer must not break the request
        return None


@dataclass(frozen=True, slots=True)
class ShadowStats:
    """Counters of one :class:`Shadow` since it started (or since ``fork``).

    ``sampled`` counts records (rows) sampled; ``records_dropped_*`` count
    records lost for each reason, except ``signal_overflow`` which counts
    records that lost one or more signals to ``max_signals`` (the record itself
    was kept) and ``extractor_error`` which counts calls whose extractor
    raised.
    """

    calls: int
    sampled: int
    records_shipped: int
    records_accepted: int
    records_rejected: int
    records_dropped_queue_full: int
    records_dropped_sidecar_unavailable: int
    records_dropped_signal_overflow: int
    records_dropped_extractor_error: int
    reconnects: int
    records_dropped_too_large: int = 0

    @property
    def records_dropped(self) -> dict[str, int]:
        """Drops by reason: queue_full, sidecar_unavailable, signal_overflow,
        extractor_error; and message_too_large once nonzero (a batch message over
        the shipper's ``max_message_bytes``)."""
        counts = {
            "queue_full": self.records_dropped_queue_full,
            "sidecar_unavailable": self.records_dropped_sidecar_unavailable,
            "signal_overflow": self.records_dropped_signal_overflow,
            "extractor_error": self.records_dropped_extractor_error,
        }
        if self.records_dropped_too_large:
            counts["message_too_large"] = self.records_dropped_too_large
        return counts


def _setting(
    name: str,
    value: Any,
    env: Mapping[str, str],
    var: str,
    default: Any,
    parse: Callable[[Any], Any],
) -> Any:
    source = "argument"
    if value is None:
        raw = env.get(var)
        if raw is None or raw == "":
            return default
        value, source = raw, f"environment variable {var}"
    try:
        return parse(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid {name} {value!r} (from {source}): {err}") from None


def _number(low: float, high: float, integer: bool) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a bool")
        number: float = int(value) if integer else float(value)
        if integer and isinstance(value, float) and value != number:
            raise ValueError("must be a whole number")
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return number

    return parse


def _text(required: bool) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if required and not value.strip():
            raise ValueError("must not be empty")
        return value

    return parse


def _instance(environ: Mapping[str, str]) -> str:
    host = environ.get("POD_NAME") or environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}:{os.getpid()}"


class Shadow:
    """One shipper shared by the handlers it wraps.

    >>> s = Shadow(model="ranker", target="127.0.0.1:1", atexit=False)
    >>> double = s.wrap(lambda x: 2 * x)
    >>> double(21)
    42
    >>> s.close(timeout=1.0)
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        environment: str | None = None,
        target: str | None = None,
        sample_rate: float | None = None,
        features: ex.FeatureExtractor | None = None,
        outputs: ex.OutputExtractor | None = None,
        request_id: ex.RequestIdExtractor | None = None,
        slices: Mapping[str, str] | None = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        queue_batches: int | None = None,
        max_signals: int | None = None,
        rotate_interval: float = 5.0,
        send_timeout: float = 5.0,
        response_timeout: float = 5.0,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        fingerprint: Fingerprint | None = None,
        environ: Mapping[str, str] | None = None,
        atexit: bool = True,
        channel_options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        token_file: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.model: str = _setting("model", model, env, "BASELINED_MODEL", None, _text(True))
        if self.model is None:
            raise ValueError("model is required: pass model= or set BASELINED_MODEL")
        self.version: str = _setting(
            "version", version, env, "BASELINED_MODEL_VERSION", "", _text(False)
        )
        self.environment: str = _setting(
            "environment", environment, env, "BASELINED_ENVIRONMENT", "production", _text(True)
        )
        self.target: str = _setting(
            "target", target, env, "BASELINED_TARGET", "127.0.0.1:50051", _text(True)
        )
        self.sample_rate: float = _setting(
            "sample_rate", sample_rate, env, "BASELINED_SAMPLE_RATE", 1.0, check_rate
        )
        self.batch_size: int = _setting(
            "batch_size", batch_size, env, "BASELINED_SHADOW_BATCH_SIZE", 512,
            _number(1, 65536, True),
        )  # fmt: skip
        self.flush_interval: float = _setting(
            "flush_interval", flush_interval, env, "BASELINED_SHADOW_FLUSH_INTERVAL", 1.0,
            _number(0.001, 3600.0, False),
        )  # fmt: skip
        self.queue_batches: int = _setting(
            "queue_batches", queue_batches, env, "BASELINED_SHADOW_QUEUE_BATCHES", 64,
            _number(1, 1_000_000, True),
        )  # fmt: skip
        self.max_signals: int = _setting(
            "max_signals", max_signals, env, "BASELINED_SHADOW_MAX_SIGNALS", 256,
            _number(1, 100_000, True),
        )  # fmt: skip
        for name, seconds in (
            ("rotate_interval", rotate_interval),
            ("send_timeout", send_timeout),
            ("response_timeout", response_timeout),
        ):
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(
                    f"invalid {name} {seconds!r}: must be a positive number of seconds"
                )
        if slices is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in slices.items()
        ):
            raise ValueError("invalid slices: keys and values must be strings")
        self._features = features
        self._outputs = outputs
        self._request_id = request_id
        self._slices = dict(slices or {})
        self._env = env
        self._rng = rng or random.Random()
        self._fingerprint = fingerprint
        self._own_rng = rng is None
        self._log = RateLimitedLog()
        self._shipper_args: dict[str, Any] = {
            "rotate_interval": rotate_interval,
            "send_timeout": send_timeout,
            "response_timeout": response_timeout,
            "backoff": backoff,
            "channel_options": tuple(channel_options),
            "credentials": _credentials(
                self.target, env, token, token_file, tls_ca, tls_cert, tls_key
            ),
        }
        # Kept across fork: the integrations that report here live on in the child.
        self._drop_sources: list[Callable[[], Mapping[str, int]]] = []
        self._init_runtime()
        _live.add(self)
        self._atexit = atexit
        if atexit:
            _ensure_atexit()

    def _init_runtime(self) -> None:
        self._closed = False
        self._started = False
        self._start_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._extractor_errors = 0
        self._calls = itertools.count()
        self._recorder = Recorder(
            batch_size=self.batch_size,
            queue_batches=self.queue_batches,
            max_signals=self.max_signals,
            on_ready=self._on_ready,
        )
        self._shipper: Shipper | None = None

    def _on_ready(self) -> None:
        shipper = self._shipper
        if shipper is not None:
            shipper.wake()

    def _reset_after_fork(self) -> None:
        # The child starts empty: the parent ships its own rows, and the
        # parent's locks, thread and gRPC channel are unusable here.
        self._init_runtime()
        if self._own_rng:  # do not draw the same random sequence as the parent
            self._rng.seed()

    # -- lifecycle ------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._started or self._closed:
                return
            fp = self._fingerprint or process_fingerprint()
            template = batch_template(
                model=self.model,
                version=self.version,
                environment=self.environment,
                instance=_instance(self._env),
                fingerprint=fp.to_proto(),
                batch_slices=self._slices,
            )
            self._shipper = Shipper(
                self._recorder,
                target=self.target,
                template=template,
                flush_interval=self.flush_interval,
                rng=self._rng,
                log=self._log,
                dropped=self._dropped_counts,
                **self._shipper_args,
            )
            self._shipper.start()
            self._started = True

    def flush(self) -> None:
        """Ship the buffered rows now (without waiting) and have them confirmed."""
        shipper = self._shipper
        if shipper is not None:
            shipper.flush()

    def close(self, timeout: float = 5.0) -> None:
        """Ship what is buffered and wait for the sidecar's answer, at most ``timeout`` seconds.

        Never raises and never hangs when the sidecar is down. Calls made
        after ``close`` still run the handler but are no longer sampled.
        """
        try:
            with self._start_lock:
                self._closed = True
                shipper = self._shipper
            if shipper is not None:
                shipper.close(timeout)
        except Exception:
            self._log.warning("close", "baselined shadow close failed", exc_info=True)
        finally:
            _live.discard(self)

    def __enter__(self) -> Shadow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> ShadowStats:
        """A snapshot of the counters."""
        rec, sh = self._recorder, self._shipper
        calls = int(repr(self._calls)[6:-1])  # itertools.count: "count(N)"
        return ShadowStats(
            calls=calls,
            sampled=rec.sampled,
            records_shipped=sh.shipped if sh else 0,
            records_accepted=sh.accepted if sh else 0,
            records_rejected=sh.rejected if sh else 0,
            records_dropped_queue_full=rec.dropped_queue_full,
            records_dropped_sidecar_unavailable=rec.dropped_unavailable
            + (sh.dropped_unavailable if sh else 0),
            records_dropped_signal_overflow=rec.signal_overflow,
            records_dropped_extractor_error=self._extractor_errors,
            reconnects=sh.reconnects if sh else 0,
            records_dropped_too_large=sh.dropped_too_large if sh else 0,
        )

    def report_drops(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Add ``source`` (cumulative counts by reason, e.g. an integration's
        ``skipped``) to the drop counts every batch carries to the sidecar.

        >>> s = Shadow(model="m", target="127.0.0.1:1", atexit=False)
        >>> s.report_drops(lambda: {"request_not_json": 2, "too_large": 0})
        >>> s._dropped_counts()["request_not_json"]
        2
        >>> s.close(timeout=0.1)
        """
        with self._counter_lock:
            self._drop_sources.append(source)

    def _dropped_counts(self) -> dict[str, int]:
        """What batches carry in ``SampleBatch.dropped``: the four own reasons
        (always), then the reported sources' nonzero counts (summed by reason)."""
        counts = self.stats().records_dropped
        for source in tuple(self._drop_sources):
            try:
                for reason, n in source().items():
                    if n > 0:
                        counts[reason] = counts.get(reason, 0) + n
            except Exception:  # a broken source loses its own counts only
                continue
        return counts

    # -- explicit recording (for middleware that times calls itself) ----------

    def decide(self, request_id: str | None = None) -> bool:
        """Count one call and decide whether it is sampled.

        By ``request_id`` when given (the same rule as :func:`sample_by_id`),
        else at random at ``sample_rate``; always False after :meth:`close`.
        Server middleware calls this first and, only when it returns True,
        measures the call and passes the values to :meth:`record_call`.

        >>> s = Shadow(model="m", sample_rate=1.0, target="127.0.0.1:1", atexit=False)
        >>> s.decide("req-1")
        True
        >>> s.close(timeout=0.1)
        """
        next(self._calls)
        if self._closed:
            return False
        if request_id:
            return bool(_crc32(request_id.encode("utf-8")) % BUCKETS < self.sample_rate * BUCKETS)
        return self._rng.random() < self.sample_rate

    def record_call(
        self,
        *,
        latency: float,
        features: ex.Rows = None,
        outputs: ex.Rows = None,
        cpu: float | None = None,
        error: bool = False,
        error_type: str | None = None,
        request_id: str | None = None,
        slices: Mapping[str, str] | None = None,
        timestamp: float | None = None,
        traceparent: str | None = None,
    ) -> bool:
        """Buffer the records of one call that was already sampled (see :meth:`decide`).

        ``features`` and ``outputs`` are what extractors return (a mapping, a
        sequence of mappings for a batched call, or None); every row carries
        ``latency`` (seconds), ``cpu`` (seconds, optional), ``error`` and, on
        error rows, ``error_type``. ``slices`` are per-row slice attributes
        (``{"route": "/predict"}``; at most 8 names per batch; names with ``=``
        and names the Shadow already sets in ``slices=`` are ignored). ``timestamp`` is unix
        seconds (default: now). ``traceparent`` is the request's W3C trace context
        (the ``traceparent`` header), used when no OpenTelemetry span is active
        (see :func:`active_traceparent`). Returns True when the rows were buffered.
        Never raises: a features/outputs row-count mismatch counts as an
        extractor error.

        >>> s = Shadow(model="m", target="127.0.0.1:1", atexit=False)
        >>> s.record_call(latency=0.012, features={"x": 1.0}, slices={"route": "/predict"})
        True
        >>> s.close(timeout=0.1)
        """
        try:
            if self._closed:
                return False
            if not self._started:
                self._start()
            rows = _rows(features, outputs)
            if rows is None:
                self._extractor_failed("rows", ValueError("features and outputs differ in rows"))
                return False
            if not rows:
                return False
            if slices:
                own = self._slices
                slices = {
                    k: v
                    for k, v in slices.items()
                    if type(k) is str and type(v) is str and k not in own and "=" not in k
                }
            self._recorder.record(
                _time() if timestamp is None else timestamp,
                request_id,
                latency,
                cpu,
                error,
                error_type if error else None,
                rows,
                slices or None,
                active_traceparent() or traceparent or None,
            )
            return True
        except Exception as err:  # a bug of ours: never the caller's problem
            self._log.warning("internal", "baselined record_call failed: %s", err, exc_info=True)
            return False

    # -- wrapping -------------------------------------------------------------

    def wrap(
        self,
        fn: Callable[P, R],
        *,
        features: ex.FeatureExtractor | _Unset | None = _UNSET,
        outputs: ex.OutputExtractor | _Unset | None = _UNSET,
        request_id: ex.RequestIdExtractor | _Unset | None = _UNSET,
    ) -> Callable[P, R]:
        """Wrap ``fn`` (sync or async); the extractors default to the Shadow's own."""
        feats = self._features if isinstance(features, _Unset) else features
        outs = self._outputs if isinstance(outputs, _Unset) else outputs
        rid = self._request_id if isinstance(request_id, _Unset) else request_id
        handler = _Handler(self, feats or ex.default_features, outs or ex.default_outputs)
        if inspect.iscoroutinefunction(fn):
            return cast("Callable[P, R]", _wrap_async(self, fn, handler, rid))
        return cast("Callable[P, R]", _wrap_sync(self, fn, handler, rid))

    __call__ = wrap

    def _extractor_failed(self, what: str, err: BaseException) -> None:
        with self._counter_lock:
            self._extractor_errors += 1
        self._log.warning(
            "extractor:" + what,
            "baselined %s extractor raised %s: %s; sample dropped",
            what,
            type(err).__name__,
            err,
        )


class _Handler:
    """Per wrapped function: extractors, and whether its calls are batched."""

    __slots__ = ("features", "outputs", "per_call", "plain_features", "plain_outputs", "shadow")

    def __init__(
        self, shadow: Shadow, features: ex.FeatureExtractor, outputs: ex.OutputExtractor
    ) -> None:
        self.shadow = shadow
        self.features = features
        self.outputs = outputs
        # The default extractors: their common cases are inlined in record_ok.
        self.plain_features = features is ex.default_features
        self.plain_outputs = outputs is ex.default_outputs
        # True once a call returned one record: then the sampling decision is
        # made before the call. Batched handlers decide per row after it.
        self.per_call = False

    def record_ok(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        elapsed_ns: int,
        cpu_ns: int | None,
    ) -> None:
        """:meth:`record` for a call that returned and was sampled before it
        (``per_call``), without a request id: the hot path. Never raises."""
        shadow = self.shadow
        try:
            if not shadow._started:
                if shadow._closed:
                    return
                shadow._start()
            frows: ex.Rows
            if self.plain_features and args and type(args[0]) is dict:
                frows = args[0]
            else:
                try:
                    frows = self.features(args, kwargs)
                except Exception as err:
                    shadow._extractor_failed("features", err)
                    return
            orows: ex.Rows = None
            kind = type(result)
            if self.plain_outputs and (kind is float or kind is int or kind is bool):
                oplan: Any = OUTPUT_PLAN  # {"output": result}, without the dict
                ovalues: tuple[Any, ...] | None = (result,)
            else:
                try:
                    orows = self.outputs(result)
                except Exception as err:
                    shadow._extractor_failed("outputs", err)
                    return
                if orows is None:
                    oplan = ovalues = None
                elif type(orows) is dict:
                    oplan, ovalues = shadow._recorder._outputs(orows) if orows else (None, None)
                else:
                    self._buffer(frows, orows, None, elapsed_ns, cpu_ns, None, True)
                    return
            if frows is not None and type(frows) is not dict:
                if oplan is OUTPUT_PLAN:
                    orows = {"output": result}
                self._buffer(frows, orows, None, elapsed_ns, cpu_ns, None, True)
                return
            shadow._recorder.record_one(
                _time(),
                elapsed_ns / 1e9,
                None if cpu_ns is None else cpu_ns / 1e9,
                frows,
                oplan,
                ovalues,
                # active_traceparent() costs a call even without OpenTelemetry
                None if _trace_api is None and _OTEL not in _modules else active_traceparent(),
            )
        except Exception as err:  # a bug of ours: never the handler's problem
            shadow._log.warning("internal", "baselined shadow failed: %s", err, exc_info=True)

    def record(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        exc: BaseException | None,
        elapsed_ns: int,
        cpu_ns: int | None,
        request_id: str | None,
        decided: bool,
    ) -> None:
        """Extract and buffer the records of one call. Never raises."""
        shadow = self.shadow
        try:
            if not shadow._started:
                if shadow._closed:
                    return
                shadow._start()
            try:
                frows = self.features(args, kwargs)
            except Exception as err:
                shadow._extractor_failed("features", err)
                return
            orows: ex.Rows = None
            if exc is None:
                try:
                    orows = self.outputs(result)
                except Exception as err:
                    shadow._extractor_failed("outputs", err)
                    return
            self._buffer(frows, orows, exc, elapsed_ns, cpu_ns, request_id, decided)
        except Exception as err:  # a bug of ours: never the handler's problem
            shadow._log.warning("internal", "baselined shadow failed: %s", err, exc_info=True)

    def _buffer(
        self,
        frows: ex.Rows,
        orows: ex.Rows,
        exc: BaseException | None,
        elapsed_ns: int,
        cpu_ns: int | None,
        request_id: str | None,
        decided: bool,
    ) -> None:
        """Pair the extracted records, sample the rows (``decided`` False) and buffer them."""
        shadow = self.shadow
        rows: Sequence[Row]
        if (frows is None or type(frows) is dict) and (orows is None or type(orows) is dict):
            rows = ((frows, orows),)  # the common case: one record
            batched = False
        else:
            paired = _rows(frows, orows)
            if paired is None:
                shadow._extractor_failed("rows", ValueError("features and outputs differ in rows"))
                return
            rows = paired
            batched = len(rows) != 1 or _is_rows(frows) or _is_rows(orows)
        self.per_call = not batched
        if not decided:
            hit = shadow._rng.random
            rate = shadow.sample_rate
            rows = [row for row in rows if hit() < rate]
            if not rows:
                return
        shadow._recorder.record(
            _time(),
            request_id,
            elapsed_ns / 1e9,
            None if cpu_ns is None else cpu_ns / 1e9,
            exc is not None,
            None if exc is None else _error_type(exc),
            rows,
            None,
            active_traceparent(),
        )


def _is_rows(value: ex.Rows) -> bool:
    return value is not None and type(value) is not dict and not isinstance(value, Mapping)


def _rows(features: ex.Rows, outputs: ex.Rows) -> list[Row] | None:
    """Pair feature and output records; None when the row counts disagree."""
    f_batch, o_batch = _is_rows(features), _is_rows(outputs)
    if not f_batch and not o_batch:
        return [
            (cast("Mapping[str, Any] | None", features), cast("Mapping[str, Any] | None", outputs))
        ]
    if f_batch and o_batch:
        fs = cast("Sequence[Mapping[str, Any]]", features)
        os_ = cast("Sequence[Mapping[str, Any]]", outputs)
        if len(fs) != len(os_):
            return None
        return list(zip(fs, os_, strict=True))
    if f_batch:  # a single output mapping applies to every row
        one_o = cast("Mapping[str, Any] | None", outputs)
        return [(f, one_o) for f in cast("Sequence[Mapping[str, Any]]", features)]
    one_f = cast("Mapping[str, Any] | None", features)
    return [(one_f, o) for o in cast("Sequence[Mapping[str, Any]]", outputs)]


def _error_type(exc: BaseException) -> str:
    kind = type(exc)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _decide_id(
    shadow: Shadow,
    rid_fn: ex.RequestIdExtractor,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    threshold: float,
) -> tuple[bool | None, str | None]:
    """(sampled by id, the id); (None, None) without an id; (False, None) on error."""
    try:
        rid = rid_fn(args, kwargs)
        if rid is None or rid == "":
            return None, None
        if type(rid) is not str:
            rid = str(rid)
        return _crc32(rid.encode("utf-8")) % BUCKETS < threshold, rid
    except Exception as err:
        shadow._extractor_failed("request_id", err)
        return False, None


def _wrap_sync(
    shadow: Shadow,
    fn: Callable[..., Any],
    handler: _Handler,
    rid_fn: ex.RequestIdExtractor | None,
) -> Callable[..., Any]:
    rate = shadow.sample_rate
    rnd = shadow._rng.random
    record = handler.record
    record_ok = handler.record_ok
    threshold = rate * BUCKETS

    def measured(
        args: tuple[Any, ...], kwargs: dict[str, Any], rid: str | None, decided: bool
    ) -> Any:
        t0 = _perf_ns()
        c0 = _thread_ns()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            c1 = _thread_ns()
            t1 = _perf_ns()
            record(args, kwargs, None, exc, t1 - t0, c1 - c0, rid, decided)
            raise
        c1 = _thread_ns()
        t1 = _perf_ns()
        record(args, kwargs, result, None, t1 - t0, c1 - c0, rid, decided)
        return result

    if rid_fn is None:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            next(shadow._calls)
            if handler.per_call:
                if rnd() >= rate or shadow._closed:
                    return fn(*args, **kwargs)
                # The hot path, inlined: one Python call less per sampled call.
                t0 = _perf_ns()
                c0 = _thread_ns()
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    c1 = _thread_ns()
                    t1 = _perf_ns()
                    record(args, kwargs, None, exc, t1 - t0, c1 - c0, None, True)
                    raise
                c1 = _thread_ns()
                t1 = _perf_ns()
                record_ok(args, kwargs, result, t1 - t0, c1 - c0)
                return result
            if shadow._closed:
                return fn(*args, **kwargs)
            return measured(args, kwargs, None, False)

    else:
        get_id = rid_fn

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            next(shadow._calls)
            hit, rid = _decide_id(shadow, get_id, args, kwargs, threshold)
            if hit is None:  # no id: random, per call or per row
                if handler.per_call:
                    if rnd() >= rate or shadow._closed:
                        return fn(*args, **kwargs)
                    return measured(args, kwargs, None, True)
                hit, decided = True, False
            else:
                decided = True
            if not hit or shadow._closed:
                return fn(*args, **kwargs)
            return measured(args, kwargs, rid, decided)

    return wrapper


def _wrap_async(
    shadow: Shadow,
    fn: Callable[..., Awaitable[Any]],
    handler: _Handler,
    rid_fn: ex.RequestIdExtractor | None,
) -> Callable[..., Awaitable[Any]]:
    rate = shadow.sample_rate
    rnd = shadow._rng.random
    record = handler.record
    threshold = rate * BUCKETS

    # Thread CPU time is not recorded for coroutines: across an await the
    # event loop thread runs other tasks, so it would not be this call's.
    async def measured(
        args: tuple[Any, ...], kwargs: dict[str, Any], rid: str | None, decided: bool
    ) -> Any:
        t0 = _perf_ns()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            t1 = _perf_ns()
            record(args, kwargs, None, exc, t1 - t0, None, rid, decided)
            raise
        t1 = _perf_ns()
        record(args, kwargs, result, None, t1 - t0, None, rid, decided)
        return result

    record_ok = handler.record_ok

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        next(shadow._calls)
        if rid_fn is None and handler.per_call:
            if rnd() >= rate or shadow._closed:
                return await fn(*args, **kwargs)
            # The hot path, inlined: no second coroutine per sampled call.
            t0 = _perf_ns()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                t1 = _perf_ns()
                record(args, kwargs, None, exc, t1 - t0, None, None, True)
                raise
            t1 = _perf_ns()
            record_ok(args, kwargs, result, t1 - t0, None)
            return result
        rid: str | None = None
        decided = True
        if rid_fn is not None:
            hit, rid = _decide_id(shadow, rid_fn, args, kwargs, threshold)
        else:
            hit = None
        if hit is None:
            if handler.per_call:
                hit = rnd() < rate
            else:
                hit, decided = True, False
        if not hit or shadow._closed:
            return await fn(*args, **kwargs)
        return await measured(args, kwargs, rid, decided)

    return wrapper


def _credentials(
    target: str,
    env: Mapping[str, str],
    token: str | None,
    token_file: str | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> Any:
    """Channel credentials from arguments, then BASELINED_TOKEN... (None: plaintext)."""
    from middleware.client import channel_credentials

    def pick(value: str | None, name: str) -> str | None:
        return value if value is not None else (env.get(name) or None)

    return channel_credentials(
        target,
        token=pick(token, "BASELINED_TOKEN"),
        token_file=pick(token_file, "BASELINED_TOKEN_FILE"),
        tls_ca=pick(tls_ca, "BASELINED_TLS_CA"),
        tls_cert=pick(tls_cert, "BASELINED_CLIENT_CERT"),
        tls_key=pick(tls_key, "BASELINED_CLIENT_KEY"),
    )


def shadow(
    *,
    model: str | None = None,
    version: str | None = None,
    environment: str | None = None,
    target: str | None = None,
    sample_rate: float | None = None,
    features: ex.FeatureExtractor | None = None,
    outputs: ex.OutputExtractor | None = None,
    request_id: ex.RequestIdExtractor | None = None,
    slices: Mapping[str, str] | None = None,
    batch_size: int | None = None,
    flush_interval: float | None = None,
    queue_batches: int | None = None,
    max_signals: int | None = None,
    **options: Any,
) -> Shadow:
    """A :class:`Shadow` to use as a decorator (``@shadow(model="m")``) or
    wrapper (``shadow(model="m")(fn)``). Other keyword options go to
    :class:`Shadow`.

    >>> @shadow(model="ranker", sample_rate=0.0, atexit=False)
    ... def score(row):
    ...     return 0.5
    >>> score({"x": 1.0})
    0.5
    """
    return Shadow(
        model=model,
        version=version,
        environment=environment,
        target=target,
        sample_rate=sample_rate,
        features=features,
        outputs=outputs,
        request_id=request_id,
        slices=slices,
        batch_size=batch_size,
        flush_interval=flush_interval,
        queue_batches=queue_batches,
        max_signals=max_signals,
        **options,
    )


# -- process hooks ---------------------------------------------------------------

_atexit_registered = False
_atexit_lock = threading.Lock()


def _ensure_atexit() -> None:
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            _atexit.register(_close_all_at_exit)
            _atexit_registered = True


def _close_all_at_exit() -> None:
    for s in list(_live):
        if s._atexit:
            s.close(timeout=2.0)


def _after_fork_in_child() -> None:
    global _atexit_lock
    _atexit_lock = threading.Lock()
    for s in list(_live):
        with contextlib.suppress(Exception):
            s._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
