"""Mergeable per-series state: exact values or t-digests for numeric signals,
bounded frequency tables for categorical ones, and their versioned byte encodings.

A numeric series keeps its finite values exactly (quantiles identical to
``numpy.quantile``) until it would hold more than ``exact_limit`` of them, then
folds them into a t-digest and stays a digest.

Window buckets and the partials of several sidecars combine by decoding and
merging these states, so ``merge`` must be cheap and order-insensitive enough
that readers get the same answer whichever partial comes first.

>>> import numpy as np
>>> s = NumericState(compression=100)
>>> s.add(np.array([1.0, 2.0, np.nan, np.inf, 3.0]))
>>> t = decode_state(s.encode())
>>> (t.count, t.missing, t.out_of_range)
(3, 1, 1)

Encoding: one tag byte (``N`` numeric, ``C`` categorical), one version byte, then
the payload; everything little-endian. Both payloads end with extension records
(``type u8, length u32, bytes``) that readers skip when they do not know the
type, so later versions can add statistics without breaking older readers.
Numeric states in exact mode are version 2 (sorted float64 values instead of a
digest); digest-mode states are still written as version 1 and carry their
numeric-precision statistics (effective mantissa bits, distinct values) in
extension record type 1. Exact states carry their effective-bits histogram,
sparsely, in extension record type 2 (states written without it derive it from
their values) and count distinct values exactly.
``docs/digest-format.md`` has the layouts.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, cast

import fastdigest
import numpy as np
import numpy.typing as npt

from sidecar.digest import DEFAULT_COMPRESSION, decode_digest, encode_digest
from sidecar.records import Summary

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_COMPRESSION",
    "DEFAULT_EXACT_LIMIT",
    "HLL_PRECISION",
    "MANTISSA_BITS",
    "TAG_CATEGORICAL",
    "TAG_NUMERIC",
    "CategoricalState",
    "NumericState",
    "Precision",
    "SeriesState",
    "decode_state",
    "merge_encoded",
]

TAG_NUMERIC: Final = 0x4E  # "N"
TAG_CATEGORICAL: Final = 0x43  # "C"
_VERSION: Final = 1
_VERSION_EXACT: Final = 2  # numeric state in exact mode

DEFAULT_EXACT_LIMIT: Final = 65536
_FEW_LEVELS: Final = 16  # up to this many quantile levels are interpolated in Python

DEFAULT_CAPACITY: Final = 256
HLL_PRECISION: Final = 10  # 1,024 registers, ~3.3% standard error

# tag, version, reserved, missing, +inf count, -inf count, digest length (32 bytes)
_NUMERIC_HEAD = struct.Struct("<BBHQQQI")
# tag, version, reserved, missing, +inf, -inf, compression, exact limit, n (40 bytes)
_EXACT_HEAD = struct.Struct("<BBHQQQIII")
_EMPTY: Final = np.empty(0, dtype=np.float64)
_EMPTY.flags.writeable = False
# tag, version, reserved, capacity, missing, other, entries (28 bytes)
_CATEGORICAL_HEAD = struct.Struct("<BBHIQQI")
_EXTENSION_HEAD = struct.Struct("<BI")
_HLL_HEAD = struct.Struct("<BBH")  # precision (0 = none), mode (0 dense, 1 sparse), sparse count
_HLL_DENSE: Final = 0
_HLL_SPARSE: Final = 1
_SPARSE_ENTRY = np.dtype([("index", "<u2"), ("rank", "u1")])

MANTISSA_BITS: Final = 52  # fraction bits of a float64
_BITS_BINS: Final = MANTISSA_BITS + 1  # effective bits 0..52
_EXT_PRECISION: Final = 1  # numeric extension: u64[53] bits histogram, then a distinct sketch
_EXT_EXACT_BITS: Final = 2  # exact numeric extension: (u8 bits, u32 count) per non-empty bin
_BITS_ENTRY = np.dtype([("bits", "u1"), ("count", "<u4")])
_FRACTION_MASK = np.uint64((1 << MANTISSA_BITS) - 1)
_ONE = np.uint64(1)
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_SHIFT_MIX = np.uint64(29)
_SHIFT_EXPONENT = np.uint64(52)


def _rank_table(precision: int) -> npt.NDArray[np.uint8]:
    # Maps the biased float64 exponent of the remaining hash bits (shifted to the top of
    # 64) to the HyperLogLog rank: 1 + leading zeros, capped like the string sketch.
    exponent = np.arange(2048)
    return np.clip(1087 - exponent, 1, 64 - precision + 1).astype(np.uint8)


_RANKS = _rank_table(HLL_PRECISION)
_INVERSE_POWERS = np.ldexp(1.0, -np.arange(256))  # 2**-register, for the HLL estimate


def _mantissa_bits(finite: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Counts of the values by effective mantissa bits: 52 minus the trailing zero bits
    of the 52-bit fraction (0 for a zero fraction, e.g. powers of two)."""
    frac = np.bitwise_and(finite.view(np.uint64), _FRACTION_MASK)
    low = np.subtract(frac, _ONE)  # x ^ (x - 1): ones up to and including the lowest set bit
    np.bitwise_xor(low, frac, out=low)
    ones = np.bincount(np.bitwise_count(low), minlength=65)  # trailing zeros + 1; 64 for 0
    hist = ones[MANTISSA_BITS + 1 : 0 : -1].astype(np.int64)
    hist[0] += ones[64]
    return hist


# The most a hashed value's remaining bits (shifted to the top of 64) may be for its
# rank to reach a register value r (1 + leading zeros >= r): 2**(64 - r) - 1.
_RANK_REACH = np.array(
    [(1 << 64) - 1] + [(1 << (64 - r)) - 1 for r in range(1, 65)] + [0] * 191, dtype=np.uint64
)


def _sketch_floats(hll: _HyperLogLog, finite: npt.NDArray[np.float64]) -> None:
    """Add float64 values (by their bits) to a distinct-count sketch, vectorised.

    Only values whose rank may raise their register are ranked and scattered: once
    the registers fill, that is a few per thousand, and the scatter (``maximum.at``)
    and rank steps are the costly ones. The registers are those of ranking every value.
    """
    z = np.multiply(finite.view(np.uint64), _MIX1)
    z ^= z >> _SHIFT_MIX
    z *= _MIX2
    p = hll.precision
    index = (z >> np.uint64(64 - p)).astype(np.intp)
    z <<= np.uint64(p)
    # Superset of the values that raise a register (float rounding below only lowers ranks).
    rising = np.flatnonzero(z <= _RANK_REACH[hll.registers][index])
    if not rising.size:
        return
    exponent = z[rising].astype(np.float64).view(np.uint64) >> _SHIFT_EXPONENT
    ranks = _RANKS if p == HLL_PRECISION else _rank_table(p)
    np.maximum.at(hll.registers, index[rising], ranks[exponent.astype(np.intp)])


# fastdigest 0.12's private serialisation (``to_bytes``/``from_bytes``): magic, u32
# version 1, u64 centroids, u64 max centroids, f64 weight, sum, min, max, u64 values,
# 12 reserved bytes (80 bytes = 10 float64 slots), then (mean, weight) f64 pairs.
_FD_HEAD = struct.Struct("<8sIQQddddQ12x")
_FD_MAGIC: Final = b"FASTDIG~"
_FD_SLOTS: Final = _FD_HEAD.size // 8


def _sorted_digest(values: npt.NDArray[np.float64], compression: int) -> fastdigest.TDigest:
    """A digest holding each of the sorted finite ``values`` as a one-value centroid."""
    n = values.size
    buf = np.empty(_FD_SLOTS + 2 * n, dtype=np.float64)
    buf[_FD_SLOTS::2] = values
    buf[_FD_SLOTS + 1 :: 2] = 1.0
    low, high = float(values[0]), float(values[-1])
    if math.isfinite(max(-low, high) * n):  # the sum cannot overflow
        total = float(np.add.reduce(values))
    else:
        with np.errstate(over="ignore"):
            total = float(np.add.reduce(values))
    head = _FD_HEAD.pack(_FD_MAGIC, 1, n, compression, float(n), total, low, high, n)
    buf[:_FD_SLOTS] = np.frombuffer(head, dtype=np.float64)
    return fastdigest.TDigest.from_bytes(buf.tobytes())


def _fast_feed_works() -> bool:
    """Whether this fastdigest reads the layout above as intended (else: batch_update)."""
    try:
        values = np.array([-2.5, 0.0, 1.0, 1.0, 3.0, 1e300])
        built = _sorted_digest(values, 7)
        reference = fastdigest.TDigest(7)
        reference.batch_update(values.data)
        if built.to_bytes() != reference.to_bytes():
            return False
        target = fastdigest.TDigest(3)
        target.merge_inplace(built)
        return bool(target.n_values == 6 and target.min() == -2.5 and target.max() == 1e300)
    except Exception:
        return False


_FAST_FEED: Final = _fast_feed_works()


def _feed(
    digest: fastdigest.TDigest, finite: npt.NDArray[np.float64], *, presorted: bool = False
) -> None:
    """Add finite values to ``digest`` (sorted already if ``presorted``), as
    ``batch_update`` does.

    ``batch_update`` turns every value into a Python float on its way in and sorts
    with a scalar sort; numpy's sort plus a merge of the sorted values as one-value
    centroids takes ~40 % fewer instructions (on AMD Zen 4, 35 % less CPU with
    numpy's AVX2 sort, ~5 % with its AVX-512 sort, which is 3x slower there). The
    merged digest differs from ``batch_update``'s only in where centroid bounds fall
    (it may hold one centroid more), with the same accuracy.
    """
    if _FAST_FEED and finite.size > 1:
        ordered = finite if presorted else np.sort(finite)
        digest.merge_inplace(_sorted_digest(ordered, int(digest.max_centroids)))
    else:
        digest.batch_update(finite.data)


@dataclass(frozen=True, eq=False)
class Precision:
    """Numeric precision of a series' finite values.

    ``bits[b]`` counts values whose float64 fraction uses ``b`` effective bits (52
    minus its trailing zero bits): full float64 results mostly show 45-52, values
    rounded to float32 at most 23, float16 at most 10, bfloat16 at most 7.
    ``distinct`` is the number of distinct values: exact for states in exact mode,
    a HyperLogLog estimate (~3% error) otherwise.

    >>> import numpy as np
    >>> s = NumericState()
    >>> s.add(np.array([0.5, 0.75, 0.1, 0.1]))
    >>> p = s.precision
    >>> (p.count, int(p.bits[0]), int(p.bits[1]), int(p.bits[52]), p.distinct)
    (4, 1, 1, 0, 3.0)
    """

    bits: npt.NDArray[np.int64]
    distinct: float
    distinct_exact: bool

    @property
    def count(self) -> int:
        """Number of values counted."""
        return int(self.bits.sum())

    @property
    def mean_bits(self) -> float:
        """Mean effective mantissa bits (nan without values)."""
        n = self.count
        if not n:
            return math.nan
        return float(np.dot(self.bits, np.arange(_BITS_BINS))) / n

    @property
    def distinct_share(self) -> float:
        """Distinct values over values, in [0, 1] (nan without values)."""
        n = self.count
        return min(1.0, self.distinct / n) if n else math.nan


def _skip_extensions(view: memoryview, offset: int, what: str) -> None:
    """Walk the trailing extension records, skipping them all."""
    _read_extensions(view, offset, what)


def _read_extensions(view: memoryview, offset: int, what: str) -> dict[int, memoryview]:
    """Walk the trailing extension records; the payload of the first of each type."""
    found: dict[int, memoryview] = {}
    while offset < len(view):
        if offset + _EXTENSION_HEAD.size > len(view):
            raise ValueError(f"{what}: truncated extension record at byte {offset}")
        kind, length = _EXTENSION_HEAD.unpack_from(view, offset)
        start = offset + _EXTENSION_HEAD.size
        offset = start + length
        if offset > len(view):
            raise ValueError(f"{what}: extension record runs past the end ({offset} > {len(view)})")
        found.setdefault(kind, view[start:offset])
    return found


def _decode_exact_bits(payload: memoryview, count: int, what: str) -> npt.NDArray[np.int64]:
    """Read an exact state's sparse bits histogram."""
    if len(payload) % _BITS_ENTRY.itemsize:
        raise ValueError(f"{what}: malformed bits record ({len(payload)} bytes)")
    entries = np.frombuffer(payload, dtype=_BITS_ENTRY)
    used = entries["bits"].astype(np.intp)
    if bool((used >= _BITS_BINS).any()) or np.unique(used).size != used.size:
        raise ValueError(f"{what}: bits record names bins out of range or twice")
    bits = np.zeros(_BITS_BINS, dtype=np.int64)
    bits[used] = entries["count"]
    if int(bits.sum()) != count:
        raise ValueError(f"{what}: bits record counts {int(bits.sum())} values, not {count}")
    return bits


def _decode_precision(
    payload: memoryview, count: int, what: str
) -> tuple[npt.NDArray[np.int64], _HyperLogLog]:
    """Read a precision extension: the bits histogram and the distinct sketch."""
    size = 8 * _BITS_BINS
    if len(payload) < size:
        raise ValueError(f"{what}: truncated precision record")
    bits = np.frombuffer(payload, dtype="<u8", count=_BITS_BINS).astype(np.int64)
    if int(bits.sum()) != count or bool((bits < 0).any()):
        raise ValueError(f"{what}: precision record counts {int(bits.sum())} values, not {count}")
    hll, end = _HyperLogLog.decode(payload, size, what)
    if hll is None or end != len(payload):
        raise ValueError(f"{what}: malformed distinct sketch in the precision record")
    return bits, hll


class NumericState:
    """A numeric series: its finite values (exactly, up to ``exact_limit`` of them, else a
    t-digest) plus missing and out-of-range counts.

    NaN counts as missing; +inf and -inf count as out of range and never enter
    the values or the digest. While at most ``exact_limit`` finite values have
    been seen the state keeps them all and its quantiles are numpy's (linear);
    the value that would exceed the limit switches it to a t-digest for good.
    ``exact_limit=0`` means a t-digest from the start.

    >>> import numpy as np
    >>> s = NumericState()
    >>> s.add(np.arange(1.0, 101.0))
    >>> s.summary([0.5]).quantiles, s.is_exact
    (((0.5, 50.5),), True)
    """

    __slots__ = (
        "_bits",
        "_compression",
        "_digest",
        "_hll",
        "_n",
        "_precision",
        "_sorted",
        "_tail_runs",
        "_values",
        "exact_limit",
        "missing",
        "neg_inf",
        "pos_inf",
    )

    def __init__(
        self, compression: int = DEFAULT_COMPRESSION, exact_limit: int = DEFAULT_EXACT_LIMIT
    ) -> None:
        if not isinstance(compression, int) or not 1 <= compression <= 0xFFFFFFFF:
            raise ValueError(f"compression must be a positive integer, got {compression!r}")
        if not isinstance(exact_limit, int) or not 0 <= exact_limit <= 0xFFFFFFFF:
            raise ValueError(f"exact_limit must be an integer >= 0, got {exact_limit!r}")
        self._compression = compression
        self.exact_limit = exact_limit
        # Exact mode: _values is a buffer whose first _n entries are the values (the
        # first _sorted of them in order) and _digest caches the equivalent digest.
        # Digest mode: _values is None and _digest is the state.
        self._values: npt.NDArray[np.float64] | None = _EMPTY if exact_limit else None
        self._n = 0
        self._sorted = 0
        # True while the values past _sorted are sorted runs appended by merge (then one
        # stable sort, a linear run merge, orders them; an add appends unsorted values).
        self._tail_runs = True
        self._digest: fastdigest.TDigest | None = (
            None if exact_limit else fastdigest.TDigest(compression)
        )
        self.missing = 0
        self.pos_inf = 0
        self.neg_inf = 0
        # Precision statistics. Digest mode: _bits and _hll are kept up to date at add and
        # merge; both None means unknown (a state encoded before they existed went in).
        # Exact mode: _bits is the bits histogram of the values when known (decoded, or
        # summed at merge), None when it must be derived from them (after an add: derived
        # once, at encode or when asked); distinct values are counted on demand; the
        # Precision is cached in _precision.
        self._bits: npt.NDArray[np.int64] | None = np.zeros(_BITS_BINS, dtype=np.int64)
        self._hll: _HyperLogLog | None = None if exact_limit else _HyperLogLog()
        self._precision: Precision | None = None

    @property
    def is_exact(self) -> bool:
        """True while the state keeps every finite value (quantiles are numpy's)."""
        return self._values is not None

    @property
    def compression(self) -> int:
        """The digest's bound on centroids (also in exact mode, for when it switches)."""
        if self._values is None:
            assert self._digest is not None
            return int(self._digest.max_centroids)
        return self._compression

    @property
    def digest(self) -> fastdigest.TDigest:
        """The t-digest of the finite values (shared, not a copy: do not modify).

        In exact mode it is built on demand from the sorted values (and cached until
        the next ``add`` or ``merge``); the state stays exact.
        """
        if self._digest is None:
            digest = fastdigest.TDigest(self._compression)
            if self._n:
                _feed(digest, self._sorted_values(), presorted=True)
            self._digest = digest
        return self._digest

    @property
    def count(self) -> int:
        """Number of finite values seen."""
        if self._values is None:
            assert self._digest is not None
            return int(self._digest.n_values)
        return self._n

    @property
    def out_of_range(self) -> int:
        """Number of infinite values seen (+inf and -inf)."""
        return self.pos_inf + self.neg_inf

    @property
    def precision(self) -> Precision | None:
        """Effective mantissa bits and distinct values of the finite values.

        None when unknown: the state merged one encoded before baselined kept these
        statistics. In exact mode they are derived from the values (and cached).
        """
        if self._values is not None:
            if self._precision is None:
                values = self._sorted_values()
                distinct = int(np.count_nonzero(values[1:] != values[:-1])) + 1 if self._n else 0
                self._precision = Precision(self._exact_bits().copy(), float(distinct), True)
            return self._precision
        if self._bits is None or self._hll is None:
            return None
        n = int(self._bits.sum())
        estimate = min(float(n), self._hll.estimate()) if n else 0.0
        return Precision(self._bits.copy(), estimate, False)

    def bits_histogram(self) -> npt.NDArray[np.int64] | None:
        """``precision.bits`` without the distinct count (cheaper); None when unknown."""
        if self._values is not None:
            return self._exact_bits()
        if self._bits is None or self._hll is None:
            return None
        return self._bits

    def quantiles(self, levels: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Quantiles at ``levels`` (within [0, 1]); nan for an empty state.

        Exact mode: ``numpy.quantile``'s linear method on the values, without a
        partition (the values are kept sorted). Digest mode: the digest's quantiles.
        """
        qs = np.asarray(levels, dtype=np.float64).reshape(-1)
        few = qs.size <= _FEW_LEVELS
        if few:
            wanted = qs.tolist()
            if not all(0.0 <= q <= 1.0 for q in wanted):  # also refuses nan
                raise ValueError("quantile levels must be within [0, 1]")
        elif qs.size and not (qs.min() >= 0.0 and qs.max() <= 1.0):
            raise ValueError("quantile levels must be within [0, 1]")
        n = self.count
        if n == 0:
            return np.full(qs.size, math.nan)
        if self._values is None:
            assert self._digest is not None
            return np.asarray(self._digest.quantile_vec(qs.tolist()), dtype=np.float64)
        values = self._sorted_values()
        if few:  # the same arithmetic in Python floats: far less overhead for a few levels
            item, last = values.item, n - 1
            out: list[float] = []
            for q in wanted:
                at = last * q
                low = int(at)
                frac = at - low
                lo_v, hi_v = item(low), item(min(low + 1, last))
                step = hi_v - lo_v
                out.append(hi_v - step * (1.0 - frac) if frac >= 0.5 else lo_v + step * frac)
            return np.array(out)
        index = (n - 1) * qs
        below = index.astype(np.intp)  # floor: levels are >= 0
        above = np.minimum(below + 1, n - 1)
        gamma = index - below
        a, b = values[below], values[above]
        if math.isfinite(float(values[-1]) - float(values[0])):  # no difference overflows
            diff = b - a
            # numpy's _lerp: from the nearer end, so the result is monotone in gamma
            return np.where(gamma >= 0.5, b - diff * (1.0 - gamma), a + diff * gamma)
        with np.errstate(over="ignore", invalid="ignore"):
            diff = b - a
            return np.where(gamma >= 0.5, b - diff * (1.0 - gamma), a + diff * gamma)

    def cdf(self, xs: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Share of the finite values at or below each x; nan for an empty state.

        Exact mode: the empirical CDF. Digest mode: the digest's (interpolated) CDF.
        """
        points = np.asarray(xs, dtype=np.float64).reshape(-1)
        n = self.count
        if n == 0:
            return np.full(points.size, math.nan)
        if self._values is None:
            assert self._digest is not None
            return np.asarray(self._digest.cdf_vec(points.tolist()), dtype=np.float64)
        found = np.searchsorted(self._sorted_values(), points, side="right")
        return found / float(n)

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the finite values; (nan, nan) for an empty state."""
        if self.count == 0:
            return (math.nan, math.nan)
        if self._values is None:
            assert self._digest is not None
            return (float(self._digest.min()), float(self._digest.max()))
        values = self._sorted_values()
        return (float(values[0]), float(values[-1]))

    def mean(self) -> float:
        """Mean of the finite values; nan for an empty state."""
        n = self.count
        if n == 0:
            return math.nan
        if self._values is None:
            assert self._digest is not None
            return float(self._digest.sum()) / n
        values = self._sorted_values()
        # numpy.mean's own steps (pairwise sum, then divide), without its overhead
        if math.isfinite(max(-float(values[0]), float(values[-1])) * n):  # cannot overflow
            return float(np.add.reduce(values) / n)
        with np.errstate(over="ignore"):
            return float(np.add.reduce(values) / n)

    def add(self, values: npt.NDArray[np.float64]) -> None:
        """Add a column of values in bulk (one copy, or one digest update, per call)."""
        arr = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        if arr.size == 0:
            return
        finite = np.isfinite(arr)
        if not finite.all():
            n_finite = int(np.count_nonzero(finite))
            nan = int(np.count_nonzero(np.isnan(arr)))
            pos = int(np.count_nonzero(arr == np.inf))
            self.missing += nan
            self.pos_inf += pos
            self.neg_inf += arr.size - n_finite - nan - pos
            if not n_finite:
                return
            arr = arr[finite]
        if self._values is not None:
            n, k = self._n, arr.size
            if n + k <= self.exact_limit:
                buf = self._values
                if n + k > buf.size:
                    buf = self._grow(n + k)
                buf[n : n + k] = arr
                self._n = n + k
                self._tail_runs = False
                self._digest = None
                self._precision = None
                self._bits = None  # derived once, when needed
                return
            self._to_digest()
        assert self._digest is not None
        _feed(self._digest, arr)
        if self._bits is not None and self._hll is not None:
            self._bits += _mantissa_bits(arr)
            _sketch_floats(self._hll, arr)

    def merge(self, other: NumericState) -> None:
        """Merge another numeric state into this one; the larger compression wins.

        Two exact states stay exact while their total is within this state's
        ``exact_limit``; otherwise the result is a digest.
        """
        if not isinstance(other, NumericState):
            raise ValueError(f"cannot merge {type(other).__name__} into NumericState")
        compression = max(self.compression, other.compression)
        self._compression = compression
        if self._values is not None and other._values is not None:
            self._digest = None
            self._precision = None
            n, k = self._n, other._n
            if n + k <= self.exact_limit:
                if k:
                    self._sorted_values()
                    incoming = other._sorted_values()
                    buf = self._values if n + k <= self._values.size else self._grow(n + k)
                    buf[n : n + k] = incoming
                    self._n = n + k  # two sorted runs: the next sort merges them
                    if self._bits is not None:  # known stays known (the other's is cached)
                        self._bits = self._bits + other._exact_bits()
                self._add_counts(other)
                return
        if self._values is not None:
            self._to_digest()
        digest = self._digest
        assert digest is not None
        if digest.max_centroids < compression:
            digest.max_centroids = compression
        if other.count:
            if other._values is not None:
                _feed(digest, other._sorted_values(), presorted=True)
            else:
                digest.merge_inplace(other.digest)
            self._merge_precision(other)
        self._add_counts(other)

    def _merge_precision(self, other: NumericState) -> None:
        """Fold another non-empty state's precision statistics into this digest-mode state."""
        bits, hll = self._bits, self._hll
        if bits is None or hll is None:
            return  # already unknown
        if other._values is not None:
            bits += other._exact_bits()
            _sketch_floats(hll, other._sorted_values())
        elif other._bits is None or other._hll is None or other._hll.precision != hll.precision:
            self._bits = self._hll = None  # the other side has none: unknown from now on
        else:
            bits += other._bits
            hll.merge(other._hll)

    def _add_counts(self, other: NumericState) -> None:
        self.missing += other.missing
        self.pos_inf += other.pos_inf
        self.neg_inf += other.neg_inf

    def _grow(self, needed: int) -> npt.NDArray[np.float64]:
        """Reallocate the exact buffer to hold ``needed`` values (doubling, up to the limit)."""
        assert self._values is not None
        size = min(self.exact_limit, max(needed, 2 * self._values.size))
        buf = np.empty(size, dtype=np.float64)
        buf[: self._n] = self._values[: self._n]
        self._values = buf
        return buf

    def _exact_bits(self) -> npt.NDArray[np.int64]:
        """Exact mode: the bits histogram of the values (derived once, then kept)."""
        if self._bits is None:
            self._bits = _mantissa_bits(self._sorted_values())
        return self._bits

    def _sorted_values(self) -> npt.NDArray[np.float64]:
        """The exact values, sorted in place (a view into the buffer)."""
        assert self._values is not None
        n, done = self._n, self._sorted
        view = self._values[:n]
        if done < n:
            if not self._tail_runs:
                view[done:].sort()
            if done or self._tail_runs:
                view.sort(kind="stable")  # timsort: merging sorted runs is near linear
            self._sorted = n
            self._tail_runs = True
        return view

    def _to_digest(self) -> None:
        """Switch to digest mode, folding the kept values in with one update."""
        digest = fastdigest.TDigest(self._compression)
        self._bits = self._exact_bits().copy()
        self._hll = _HyperLogLog()
        self._precision = None
        if self._n:
            values = self._sorted_values()
            _feed(digest, values, presorted=True)
            _sketch_floats(self._hll, values)
        self._values = None
        self._n = self._sorted = 0
        self._digest = digest

    def encode(self) -> bytes:
        """Bytes of this state; :func:`decode_state` reads them.

        Digest mode writes tag ``N`` version 1, exact mode tag ``N`` version 2.
        """
        if self._values is not None:
            values = self._sorted_values()
            head = _EXACT_HEAD.pack(
                TAG_NUMERIC,
                _VERSION_EXACT,
                0,
                self.missing,
                self.pos_inf,
                self.neg_inf,
                self._compression,
                self.exact_limit,
                self._n,
            )
            body = values.astype("<f8", copy=False).tobytes()
            if not self._n:
                return head + body
            bits = self._exact_bits()
            used = np.flatnonzero(bits)
            entries = np.empty(used.size, dtype=_BITS_ENTRY)
            entries["bits"] = used
            entries["count"] = bits[used]
            payload = entries.tobytes()
            return b"".join(
                (head, body, _EXTENSION_HEAD.pack(_EXT_EXACT_BITS, len(payload)), payload)
            )
        assert self._digest is not None
        blob = encode_digest(self._digest)
        head = _NUMERIC_HEAD.pack(
            TAG_NUMERIC, _VERSION, 0, self.missing, self.pos_inf, self.neg_inf, len(blob)
        )
        if self._bits is None or self._hll is None or not self._digest.n_values:
            return head + blob
        payload = self._bits.astype("<u8").tobytes() + self._hll.encode()
        return b"".join((head, blob, _EXTENSION_HEAD.pack(_EXT_PRECISION, len(payload)), payload))

    @classmethod
    def _decode(cls, view: memoryview) -> NumericState:
        if len(view) < _NUMERIC_HEAD.size:
            raise ValueError(f"numeric state too short: {len(view)} bytes")
        _tag, _version, _reserved, missing, pos, neg, size = _NUMERIC_HEAD.unpack_from(view)
        end = _NUMERIC_HEAD.size + size
        if end > len(view):
            raise ValueError(f"numeric state truncated: digest needs {end} bytes, got {len(view)}")
        digest = decode_digest(bytes(view[_NUMERIC_HEAD.size : end]))
        if digest.max_centroids < 1:
            raise ValueError("numeric state: digest compression must be at least 1")
        what = "numeric state"
        extensions = _read_extensions(view, end, what)
        state = cls(int(digest.max_centroids), exact_limit=0)
        state._digest = digest
        count = int(digest.n_values)
        if _EXT_PRECISION in extensions:
            state._bits, state._hll = _decode_precision(extensions[_EXT_PRECISION], count, what)
        elif count:
            state._bits = state._hll = None  # written before precision statistics existed
        state.missing = missing
        state.pos_inf = pos
        state.neg_inf = neg
        return state

    @classmethod
    def _decode_exact(cls, view: memoryview) -> NumericState:
        what = "exact numeric state"
        if len(view) < _EXACT_HEAD.size:
            raise ValueError(f"{what} too short: {len(view)} bytes")
        fields = _EXACT_HEAD.unpack_from(view)
        missing, pos, neg, compression, limit, n = fields[3:]
        if compression < 1:
            raise ValueError(f"{what}: compression must be at least 1")
        if limit < 1 or n > limit:
            raise ValueError(f"{what}: {n} values with exact limit {limit}")
        end = _EXACT_HEAD.size + 8 * n
        if end > len(view):
            raise ValueError(f"{what} truncated: {n} values need {end} bytes, got {len(view)}")
        values = np.frombuffer(view, dtype="<f8", count=n, offset=_EXACT_HEAD.size)
        if not np.isfinite(values).all():
            raise ValueError(f"{what}: values are not all finite")
        if n > 1 and bool((values[1:] < values[:-1]).any()):
            raise ValueError(f"{what}: values are not sorted")
        extensions = _read_extensions(view, end, what)
        state = cls(compression, exact_limit=limit)
        state._values = values.astype(np.float64)  # a writable, native-order copy
        state._n = state._sorted = n
        if _EXT_EXACT_BITS in extensions:
            state._bits = _decode_exact_bits(extensions[_EXT_EXACT_BITS], n, what)
        elif n:
            state._bits = None  # written before the histogram was kept: derived when needed
        state.missing = missing
        state.pos_inf = pos
        state.neg_inf = neg
        return state

    def summary(self, quantiles: Sequence[float] = ()) -> Summary:
        """Count, missing, out-of-range, min, max, mean and the requested quantiles.

        In exact mode the quantiles are ``numpy.quantile`` (linear) of the values.
        """
        qs = [float(q) for q in quantiles]
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile levels must be within [0, 1], got {q}")
        n = self.count
        if n == 0:
            return Summary(
                categorical=False,
                count=0,
                missing=self.missing,
                out_of_range=self.out_of_range,
                quantiles=tuple((q, math.nan) for q in qs),
            )
        if self._values is not None:
            values = self._sorted_values()
            with np.errstate(over="ignore"):
                mean = float(np.mean(values))
            found = [float(v) for v in np.quantile(values, qs)] if qs else []
            low, high = float(values[0]), float(values[-1])
        else:
            assert self._digest is not None
            found = self._digest.quantile_vec(qs) if qs else []
            low, high = self._digest.min(), self._digest.max()
            mean = self._digest.sum() / n
        return Summary(
            categorical=False,
            count=n,
            missing=self.missing,
            out_of_range=self.out_of_range,
            min=low,
            max=high,
            mean=mean,
            quantiles=tuple(zip(qs, found, strict=True)),
        )

    def __repr__(self) -> str:
        return (
            f"NumericState(count={self.count}, missing={self.missing}, "
            f"out_of_range={self.out_of_range}, compression={self.compression}, "
            f"exact_limit={self.exact_limit}, exact={self.is_exact})"
        )


def _hash64(value: str) -> int:
    # Stable across processes and machines (Python's hash() is salted per process).
    return int.from_bytes(
        hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


class _HyperLogLog:
    """A 2**p-register HyperLogLog over 64-bit hashes; merge is a register max."""

    __slots__ = ("precision", "registers")

    def __init__(
        self, precision: int = HLL_PRECISION, registers: npt.NDArray[np.uint8] | None = None
    ) -> None:
        self.precision = precision
        m = 1 << precision
        self.registers = np.zeros(m, dtype=np.uint8) if registers is None else registers

    def add(self, values: Iterable[str]) -> None:
        p = self.precision
        low_bits = 64 - p
        mask = (1 << low_bits) - 1
        idx: list[int] = []
        rank: list[int] = []
        for v in values:
            h = _hash64(v)
            idx.append(h >> low_bits)
            rank.append(low_bits - (h & mask).bit_length() + 1)
        if idx:
            np.maximum.at(self.registers, np.array(idx), np.array(rank, dtype=np.uint8))

    def merge(self, other: _HyperLogLog) -> None:
        if other.precision != self.precision:
            raise ValueError(
                f"cannot merge HyperLogLogs of precision {self.precision} and {other.precision}"
            )
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> float:
        m = float(len(self.registers))
        alpha = 0.7213 / (1.0 + 1.079 / m)
        raw = alpha * m * m / float(_INVERSE_POWERS[self.registers].sum())
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return m * math.log(m / zeros)  # linear counting for small cardinalities
        return raw

    def encode(self) -> bytes:
        nonzero = np.flatnonzero(self.registers)
        if len(nonzero) * _SPARSE_ENTRY.itemsize < len(self.registers):
            entries = np.empty(len(nonzero), dtype=_SPARSE_ENTRY)
            entries["index"] = nonzero
            entries["rank"] = self.registers[nonzero]
            head = _HLL_HEAD.pack(self.precision, _HLL_SPARSE, len(nonzero))
            return head + entries.tobytes()
        return _HLL_HEAD.pack(self.precision, _HLL_DENSE, 0) + self.registers.tobytes()

    @classmethod
    def decode(
        cls, view: memoryview, offset: int, what: str = "categorical state"
    ) -> tuple[_HyperLogLog | None, int]:
        if offset + _HLL_HEAD.size > len(view):
            raise ValueError(f"{what}: truncated distinct-count sketch")
        precision, mode, count = _HLL_HEAD.unpack_from(view, offset)
        offset += _HLL_HEAD.size
        if precision == 0:
            return None, offset
        if not 4 <= precision <= 16:
            raise ValueError(f"{what}: sketch precision {precision} out of range")
        m = 1 << precision
        registers = np.zeros(m, dtype=np.uint8)
        if mode == _HLL_DENSE:
            end = offset + m
            if end > len(view):
                raise ValueError(f"{what}: truncated sketch registers")
            registers[:] = np.frombuffer(view, dtype=np.uint8, count=m, offset=offset)
        elif mode == _HLL_SPARSE:
            end = offset + count * _SPARSE_ENTRY.itemsize
            if end > len(view):
                raise ValueError(f"{what}: truncated sparse sketch")
            entries = np.frombuffer(view, dtype=_SPARSE_ENTRY, count=count, offset=offset)
            if count and int(entries["index"].max()) >= m:
                raise ValueError(f"{what}: sketch register index out of range")
            registers[entries["index"]] = entries["rank"]
        else:
            raise ValueError(f"{what}: unknown sketch mode {mode}")
        if int(registers.max(initial=0)) > 64 - precision + 1:
            raise ValueError(f"{what}: sketch register value out of range")
        return cls(precision, registers), end


class CategoricalState:
    """A categorical series: exact counts of up to ``capacity`` distinct values, the rest
    folded into ``other_count``, and the number of distinct values seen.

    The empty string means missing. ``distinct`` is exact until a value first
    folds into other; from then on a HyperLogLog (1,024 registers, ~3% error)
    estimates it.

    >>> s = CategoricalState(capacity=2)
    >>> s.add(["a", "b", "a", "c", ""])
    >>> s.summary(top_k=5).top_values, s.other_count, s.missing
    ((('a', 2), ('b', 1)), 1, 1)
    """

    __slots__ = ("_hll", "capacity", "counts", "missing", "other_count")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if not isinstance(capacity, int) or not 1 <= capacity <= 0xFFFFFFFF:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self.missing = 0
        self.other_count = 0
        self._hll: _HyperLogLog | None = None

    @property
    def count(self) -> int:
        """Number of non-missing values seen."""
        return sum(self.counts.values()) + self.other_count

    @property
    def distinct(self) -> int:
        """Distinct non-missing values seen: exact within capacity, estimated past it."""
        if self._hll is None:
            return len(self.counts)
        lower = len(self.counts) + (1 if self.other_count else 0)
        return max(round(self._hll.estimate()), lower)

    def add(self, values: Sequence[str]) -> None:
        """Add a column of values; ``""`` counts as missing."""
        batch = Counter(values)
        self.missing += batch.pop("", 0)
        if not batch:
            return
        counts = self.counts
        folded = False
        # The most frequent new values claim the free slots first.
        for value, n in batch.most_common():
            if value in counts:
                counts[value] += n
            elif len(counts) < self.capacity:
                counts[value] = n
            else:
                self.other_count += n
                folded = True
        if self._hll is not None:
            self._hll.add(batch)
        elif folded:
            # Until now the table held every distinct value; the sketch starts from it.
            self._hll = _HyperLogLog()
            self._hll.add(counts)
            self._hll.add(batch)

    def merge(self, other: CategoricalState) -> None:
        """Merge another table; past capacity the top values by count stay, the rest fold."""
        if not isinstance(other, CategoricalState):
            raise ValueError(f"cannot merge {type(other).__name__} into CategoricalState")
        self.capacity = max(self.capacity, other.capacity)
        merged = Counter(self.counts)
        merged.update(other.counts)
        self.missing += other.missing
        self.other_count += other.other_count
        if self._hll is not None or other._hll is not None or len(merged) > self.capacity:
            hll = self._hll if self._hll is not None else _HyperLogLog()
            if self._hll is None:
                hll.add(self.counts)
            if other._hll is not None:
                hll.merge(other._hll)
            else:
                hll.add(other.counts)
            self._hll = hll
        if len(merged) > self.capacity:
            ranked = sorted(merged.items(), key=_by_count_then_value)
            self.counts = dict(ranked[: self.capacity])
            self.other_count += sum(n for _, n in ranked[self.capacity :])
        else:
            self.counts = dict(merged)

    def encode(self) -> bytes:
        """Bytes of this state (tag ``C``, version 1); :func:`decode_state` reads them."""
        items = sorted(self.counts.items())
        raw = [v.encode("utf-8", "surrogatepass") for v, _ in items]
        head = _CATEGORICAL_HEAD.pack(
            TAG_CATEGORICAL,
            _VERSION,
            0,
            self.capacity,
            self.missing,
            self.other_count,
            len(items),
        )
        counts = np.array([n for _, n in items], dtype="<u8").tobytes()
        lengths = np.array([len(b) for b in raw], dtype="<u4").tobytes()
        hll = self._hll.encode() if self._hll is not None else _HLL_HEAD.pack(0, 0, 0)
        return b"".join((head, counts, lengths, *raw, hll))

    @classmethod
    def _decode(cls, view: memoryview) -> CategoricalState:
        what = "categorical state"
        if len(view) < _CATEGORICAL_HEAD.size:
            raise ValueError(f"{what} too short: {len(view)} bytes")
        _tag, _ver, _res, capacity, missing, other, n = _CATEGORICAL_HEAD.unpack_from(view)
        if capacity < 1:
            raise ValueError(f"{what}: capacity must be at least 1")
        if n > capacity:
            raise ValueError(f"{what}: {n} entries exceed capacity {capacity}")
        offset = _CATEGORICAL_HEAD.size
        if offset + 12 * n > len(view):
            raise ValueError(f"{what} truncated: {n} entries need more than {len(view)} bytes")
        counts = np.frombuffer(view, dtype="<u8", count=n, offset=offset).tolist()
        offset += 8 * n
        lengths = np.frombuffer(view, dtype="<u4", count=n, offset=offset).tolist()
        offset += 4 * n
        end = offset + sum(lengths)
        if end > len(view):
            raise ValueError(f"{what} truncated: values need {end} bytes, got {len(view)}")
        table: dict[str, int] = {}
        for length, c in zip(lengths, counts, strict=True):
            try:
                value = bytes(view[offset : offset + length]).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as err:
                raise ValueError(f"{what}: a value is not valid UTF-8") from err
            offset += length
            if value == "" or value in table or c == 0:
                raise ValueError(f"{what}: empty, repeated or zero-count value {value!r}")
            table[value] = c
        hll, offset = _HyperLogLog.decode(view, offset)
        _skip_extensions(view, offset, what)
        state = cls(capacity)
        state.counts = table
        state.missing = missing
        state.other_count = other
        state._hll = hll
        return state

    def summary(self, top_k: int = 10) -> Summary:
        """Top ``top_k`` values by count (ties by value); other_count is everything not listed."""
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        ranked = sorted(self.counts.items(), key=_by_count_then_value)[:top_k]
        count = self.count
        return Summary(
            categorical=True,
            count=count,
            missing=self.missing,
            top_values=tuple(ranked),
            other_count=count - sum(n for _, n in ranked),
            distinct=self.distinct,
        )

    def __repr__(self) -> str:
        return (
            f"CategoricalState(count={self.count}, distinct={self.distinct}, "
            f"missing={self.missing}, other_count={self.other_count}, capacity={self.capacity})"
        )


def _by_count_then_value(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


SeriesState = NumericState | CategoricalState


def decode_state(data: bytes) -> NumericState | CategoricalState:
    """Decode bytes from ``encode()`` of either state; ValueError on corrupt or unknown data."""
    view = memoryview(data)
    if len(view) < 2:
        raise ValueError(f"series state too short: {len(view)} bytes")
    tag, version = view[0], view[1]
    if tag not in (TAG_NUMERIC, TAG_CATEGORICAL):
        raise ValueError(f"unknown series state tag {tag:#04x}")
    known = (_VERSION, _VERSION_EXACT) if tag == TAG_NUMERIC else (_VERSION,)
    if version not in known:
        raise ValueError(
            f"series state version {version} is not supported (this reader knows "
            f"{', '.join(map(str, known))}); upgrade baselined to read it"
        )
    if tag == TAG_NUMERIC:
        if version == _VERSION_EXACT:
            return NumericState._decode_exact(view)
        return NumericState._decode(view)
    return CategoricalState._decode(view)


def merge_encoded(
    blobs: Iterable[bytes], *, exact_limit: int | None = None
) -> NumericState | CategoricalState:
    """Decode and merge encoded states of one series; ValueError if none or of mixed types.

    ``exact_limit`` (numeric series) raises the merged state's exact limit to at
    least that many values: exact parts then stay exact past their own limit (a
    transient merge for a comparison, where exactness removes the digest's rank
    slack; it costs 8 bytes per value held). A digest part still makes the result a
    digest.
    """
    result: NumericState | CategoricalState | None = None
    for blob in blobs:
        state = decode_state(blob)
        if result is None:
            result = state
            if exact_limit is not None and isinstance(state, NumericState) and state.is_exact:
                state.exact_limit = max(state.exact_limit, exact_limit)
        elif type(state) is not type(result):
            raise ValueError(
                f"cannot merge a {type(state).__name__} into a {type(result).__name__}: "
                "the series changed type"
            )
        elif isinstance(result, NumericState):
            result.merge(cast(NumericState, state))
        else:
            result.merge(cast(CategoricalState, state))
    if result is None:
        raise ValueError("no series states to merge")
    return result
