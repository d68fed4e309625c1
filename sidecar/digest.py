"""Our own storage format for t-digests, independent of fastdigest's private bytes.

A digest is stored as a fixed 48-byte header followed by the centroid means and
the centroid weights, everything little-endian (``docs/digest-format.md`` has the
byte table)::

    offset size type  field
         0    4 4s    magic b"BLTD"
         4    1 u8    major version (1); readers refuse any other major version
         5    1 u8    minor version (0); newer minors may only append bytes
         6    2 u16   flags, 0 in version 1.0
         8    4 u32   compression (fastdigest ``max_centroids``; 0 = unbounded)
        12    4 u32   k, the number of centroids
        16    8 u64   n, the number of values
        24    8 f64   min (NaN when n == 0)
        32    8 f64   max (NaN when n == 0)
        40    8 f64   sum of the values
        48   8k f64   centroid means, non-decreasing
     48+8k   8k f64   centroid weights, positive

Decoding rebuilds a ``fastdigest.TDigest`` with the very same centroids, so every
quantile and CDF value is reproduced exactly:

>>> import fastdigest
>>> d = fastdigest.TDigest.from_values([1.0, 2.0, 3.0, 10.0])
>>> decode_digest(encode_digest(d)).quantile(0.9) == d.quantile(0.9)
True

The module also converts to and from the pure-Python ``tdigest`` package's dict
(``{'n', 'delta', 'K', 'centroids': [{'m', 'c'}]}``) and to a JSON object for
human-readable export.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Mapping
from typing import Any, Final

import fastdigest
import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_COMPRESSION",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "HEADER",
    "JSON_FORMAT",
    "MAGIC",
    "decode_digest",
    "digest_from_json_obj",
    "digest_to_json_obj",
    "encode_digest",
    "from_tdigest_dict",
    "to_tdigest_dict",
]

MAGIC: Final = b"BLTD"
FORMAT_MAJOR: Final = 1
FORMAT_MINOR: Final = 0
DEFAULT_COMPRESSION: Final = 1000
JSON_FORMAT: Final = "baselined.tdigest"

HEADER: Final = struct.Struct("<4sBBHIIQddd")
"""magic, major, minor, flags, compression, k, n, min, max, sum (48 bytes)."""

_F64 = np.dtype("<f8")
_U32_MAX = 0xFFFFFFFF
# tdigest's default K; its delta is derived from our compression (delta = 1/compression).
_TDIGEST_K = 25

_Array = npt.NDArray[np.float64]


class _Parts:
    """The validated content of one digest, whatever form it came from."""

    __slots__ = ("compression", "max", "means", "min", "n", "sum", "weights")

    def __init__(
        self,
        compression: int,
        n: int,
        min_: float,
        max_: float,
        sum_: float,
        means: _Array,
        weights: _Array,
    ) -> None:
        self.compression = compression
        self.n = n
        self.min = min_
        self.max = max_
        self.sum = sum_
        self.means = means
        self.weights = weights

    def validate(self, what: str) -> None:
        """Raise ValueError naming the first inconsistency."""
        k = len(self.means)
        if len(self.weights) != k:
            raise ValueError(f"{what}: {k} centroid means but {len(self.weights)} weights")
        if not 0 <= self.compression <= _U32_MAX:
            raise ValueError(f"{what}: compression {self.compression} out of range")
        if self.n < 0:
            raise ValueError(f"{what}: negative value count {self.n}")
        if (k == 0) != (self.n == 0):
            raise ValueError(f"{what}: {k} centroids for {self.n} values")
        if math.isnan(self.sum):
            raise ValueError(f"{what}: sum is NaN")
        if k == 0:
            if self.sum != 0.0:
                raise ValueError(f"{what}: empty digest with non-zero sum {self.sum}")
            return
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError(f"{what}: min/max not finite ({self.min}, {self.max})")
        if self.min > self.max:
            raise ValueError(f"{what}: min {self.min} > max {self.max}")
        if not np.isfinite(self.means).all():
            raise ValueError(f"{what}: centroid means are not all finite")
        if not (np.isfinite(self.weights).all() and (self.weights > 0).all()):
            raise ValueError(f"{what}: centroid weights must be finite and positive")
        if k > 1 and bool((np.diff(self.means) < 0).any()):
            raise ValueError(f"{what}: centroid means are not sorted")
        total = float(self.weights.sum())
        if abs(total - self.n) > 0.5 + 1e-9 * self.n:
            raise ValueError(f"{what}: centroid weights sum to {total}, expected n={self.n}")

    def to_fastdigest(self) -> fastdigest.TDigest:
        data: dict[str, Any] = {
            "max_centroids": self.compression,
            "n_values": self.n,
            "sum": self.sum,
            "centroids": [
                {"m": m, "c": c}
                for m, c in zip(self.means.tolist(), self.weights.tolist(), strict=True)
            ],
        }
        if self.n:
            data["min"] = self.min
            data["max"] = self.max
        return fastdigest.TDigest.from_dict(data)


def _parts_of(d: fastdigest.TDigest) -> _Parts:
    if not isinstance(d, fastdigest.TDigest):
        raise TypeError(f"expected a fastdigest.TDigest, got {type(d).__name__}")
    empty = d.is_empty()
    n = d.n_values
    sum_ = d.sum()
    cents = _fast_centroids(d, n, sum_)
    if cents is None:
        flat = itertools.chain.from_iterable(d.centroids)
        cents = np.fromiter(flat, dtype=np.float64, count=2 * len(d)).reshape(-1, 2)
    parts = _Parts(
        compression=d.max_centroids,
        n=n,
        min_=math.nan if empty else d.min(),
        max_=math.nan if empty else d.max(),
        sum_=sum_,
        means=np.ascontiguousarray(cents[:, 0]),
        weights=np.ascontiguousarray(cents[:, 1]),
    )
    parts.validate("cannot encode digest")
    return parts


def _fast_centroids(d: fastdigest.TDigest, n: int, sum_: float) -> _Array | None:
    """The (mean, weight) rows read from the tail of fastdigest's ``to_bytes``, or None.

    ``d.centroids`` builds a Python tuple per centroid (~100-200 us for 1,000);
    fastdigest 0.12 ends its private bytes with the same pairs as packed f64, which
    costs a few microseconds. The layout is not ours, so it is only trusted when
    the pairs pass invariants a different layout would fail (sorted means,
    positive weights summing to n, sum of mean*weight matching the digest's sum);
    otherwise the caller falls back to ``d.centroids``.
    """
    k = len(d)
    if k == 0:
        return np.empty((0, 2), dtype=np.float64)
    raw = d.to_bytes()
    if len(raw) < 16 * k:
        return None
    rows = np.frombuffer(raw, dtype=_F64, count=2 * k, offset=len(raw) - 16 * k).reshape(-1, 2)
    means = rows[:, 0]
    weights = rows[:, 1]
    if not (np.isfinite(rows).all() and (weights > 0).all()):
        return None
    if k > 1 and bool((np.diff(means) < 0).any()):
        return None
    if abs(float(weights.sum()) - n) > 0.5 + 1e-9 * n:
        return None
    products = means * weights
    scale = float(np.abs(products).sum())
    if abs(float(products.sum()) - sum_) > 1e-9 * scale + 1e-300:
        return None
    return rows.astype(np.float64)


def encode_digest(d: fastdigest.TDigest) -> bytes:
    """Encode a digest in the baselined binary format (version 1.0).

    Raises ValueError for a digest the format cannot represent (for example
    unsorted centroids built by hand), so nothing unreadable is ever written.
    """
    p = _parts_of(d)
    header = HEADER.pack(
        MAGIC,
        FORMAT_MAJOR,
        FORMAT_MINOR,
        0,
        p.compression,
        len(p.means),
        p.n,
        p.min,
        p.max,
        p.sum,
    )
    return header + p.means.astype(_F64).tobytes() + p.weights.astype(_F64).tobytes()


def decode_digest(data: bytes) -> fastdigest.TDigest:
    """Decode bytes written by :func:`encode_digest`; ValueError on corrupt data.

    Readers accept any minor version of major version 1 and ignore bytes a newer
    minor version appended after the centroids.
    """
    view = memoryview(data)
    if len(view) < HEADER.size:
        raise ValueError(f"digest too short: {len(view)} bytes, the header alone is {HEADER.size}")
    magic, major, minor, flags, compression, k, n, min_, max_, sum_ = HEADER.unpack_from(view)
    if magic != MAGIC:
        raise ValueError(f"not a baselined digest: magic {bytes(magic)!r}, expected {MAGIC!r}")
    if major != FORMAT_MAJOR:
        raise ValueError(
            f"digest format version {major}.{minor} is not supported (this reader knows "
            f"{FORMAT_MAJOR}.x); upgrade baselined to read it"
        )
    if minor == FORMAT_MINOR and flags != 0:
        raise ValueError(f"digest flags {flags:#06x} set in format {major}.{minor}")
    need = HEADER.size + 16 * k
    if len(view) < need or (minor <= FORMAT_MINOR and len(view) != need):
        raise ValueError(f"digest of {k} centroids must be {need} bytes, got {len(view)}")
    body = np.frombuffer(view, dtype=_F64, count=2 * k, offset=HEADER.size)
    means = body[:k].astype(np.float64)
    weights = body[k:].astype(np.float64)
    parts = _Parts(compression, n, min_, max_, sum_, means, weights)
    parts.validate("corrupt digest")
    return parts.to_fastdigest()


def to_tdigest_dict(d: fastdigest.TDigest) -> dict[str, Any]:
    """The digest as the ``tdigest`` package's dict: ``{'n','delta','K','centroids'}``.

    ``delta`` is ``1/compression`` and ``K`` tdigest's default, 25. The dict has
    no room for min, max and sum; they are lost (see :func:`from_tdigest_dict`).

    >>> import fastdigest
    >>> to_tdigest_dict(fastdigest.TDigest.from_values([1.0, 2.0], max_centroids=100))
    {'n': 2, 'delta': 0.01, 'K': 25, 'centroids': [{'m': 1.0, 'c': 1.0}, {'m': 2.0, 'c': 1.0}]}
    """
    p = _parts_of(d)
    delta = 1.0 / p.compression if p.compression else 0.01
    return {
        "n": p.n,
        "delta": delta,
        "K": _TDIGEST_K,
        "centroids": [
            {"m": m, "c": c} for m, c in zip(p.means.tolist(), p.weights.tolist(), strict=True)
        ],
    }


def from_tdigest_dict(
    data: Mapping[str, Any], *, compression: int = DEFAULT_COMPRESSION
) -> fastdigest.TDigest:
    """Build a digest from the ``tdigest`` package's dict (``TDigest().to_dict()``).

    Only ``centroids`` is read; ``n`` is recomputed from the weights (rounded,
    as tdigest allows fractional weights) and tdigest's ``delta``/``K`` do not map
    onto a centroid bound, so ``compression`` sets it. The dict carries no min,
    max or sum: min and max become the extreme centroid means (exact when the
    end centroids hold one value each, as the tdigest package's usually do) and
    sum is ``sum(m * c)``. Centroids may come in any order; a bad dict gives ValueError.
    """
    try:
        raw = data["centroids"]
        pairs = [(float(c["m"]), float(c["c"])) for c in raw]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not a tdigest dict: {err!r}") from err
    arr = np.array(pairs, dtype=np.float64).reshape(-1, 2)
    order = np.argsort(arr[:, 0], kind="stable")
    means = np.ascontiguousarray(arr[order, 0])
    weights = np.ascontiguousarray(arr[order, 1])
    if not (np.isfinite(weights).all() and (weights > 0).all()):
        raise ValueError("tdigest dict: centroid weights must be finite and positive")
    n = round(float(weights.sum()))
    if len(means) and n == 0:
        n = 1  # fractional weights that sum below one value still hold data
    empty = len(means) == 0
    parts = _Parts(
        compression=compression,
        n=n,
        min_=math.nan if empty else float(means[0]),
        max_=math.nan if empty else float(means[-1]),
        sum_=float(np.dot(means, weights)) if not empty else 0.0,
        means=means,
        weights=weights,
    )
    parts.validate("tdigest dict")
    return parts.to_fastdigest()


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else x


def digest_to_json_obj(d: fastdigest.TDigest) -> dict[str, Any]:
    """A JSON-ready dict of the digest (version, compression, n, min, max, sum, centroids).

    min and max are ``None`` for an empty digest; centroids are ``[mean, weight]``
    pairs. ``json.dumps`` writes floats with full precision, so the round trip
    through :func:`digest_from_json_obj` is exact.
    """
    p = _parts_of(d)
    return {
        "format": JSON_FORMAT,
        "version": f"{FORMAT_MAJOR}.{FORMAT_MINOR}",
        "compression": p.compression,
        "n": p.n,
        "min": _json_float(p.min),
        "max": _json_float(p.max),
        "sum": p.sum,
        "centroids": [[m, c] for m, c in zip(p.means.tolist(), p.weights.tolist(), strict=True)],
    }


def digest_from_json_obj(obj: Mapping[str, Any]) -> fastdigest.TDigest:
    """Inverse of :func:`digest_to_json_obj`; ValueError on a malformed object."""
    if obj.get("format") != JSON_FORMAT:
        raise ValueError(f"not a baselined digest object: format {obj.get('format')!r}")
    version = str(obj.get("version", ""))
    major, _, _minor = version.partition(".")
    if major != str(FORMAT_MAJOR):
        raise ValueError(
            f"digest format version {version!r} is not supported (this reader knows "
            f"{FORMAT_MAJOR}.x); upgrade baselined to read it"
        )
    try:
        cents = np.array(obj["centroids"], dtype=np.float64).reshape(-1, 2)
        empty_min = obj["min"] is None
        parts = _Parts(
            compression=_as_int(obj["compression"]),
            n=_as_int(obj["n"]),
            min_=math.nan if empty_min else float(obj["min"]),
            max_=math.nan if obj["max"] is None else float(obj["max"]),
            sum_=float(obj["sum"]),
            means=np.ascontiguousarray(cents[:, 0]),
            weights=np.ascontiguousarray(cents[:, 1]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed digest object: {err!r}") from err
    parts.validate("corrupt digest object")
    return parts.to_fastdigest()


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value
