"""The digest storage format: golden files, exact round trips, corrupt input, tdigest interop.

Regenerate the golden files (only when the format deliberately changes, with a
new version) with ``python -m tests.sidecar.test_digest``.
"""

from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path
from typing import Any

import fastdigest
import numpy as np
import pytest
import tdigest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import digest as digest_mod
from sidecar.digest import (
    HEADER,
    MAGIC,
    decode_digest,
    digest_from_json_obj,
    digest_to_json_obj,
    encode_digest,
    from_tdigest_dict,
    to_tdigest_dict,
)

GOLDEN = Path(__file__).parent / "golden"
QS = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]


def golden_sample() -> np.ndarray[Any, np.dtype[np.float64]]:
    """2,000 skewed values built from integer arithmetic only, so every platform agrees."""
    return np.array([((i * 7919) % 2003) ** 2 / 1024.0 for i in range(2000)], dtype=np.float64)


def golden_sample_digest() -> fastdigest.TDigest:
    d = fastdigest.TDigest(50)
    x = golden_sample()
    for start in range(0, len(x), 500):  # fed in batches, as the sidecar does
        d.batch_update(np.ascontiguousarray(x[start : start + 500]).data)
    return d


def _json_text(d: fastdigest.TDigest) -> str:
    """The JSON form as the golden files hold it: one field, or one centroid, per line."""
    obj = digest_to_json_obj(d)
    cents = obj.pop("centroids")
    fields = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in obj.items()]
    rows = ",".join(f"\n  {json.dumps(c)}" for c in cents)
    return (
        "{\n"
        + "\n".join(fields)
        + f'\n "centroids": [{rows}'
        + ("\n ]" if cents else "]")
        + "\n}\n"
    )


def _golden_inputs() -> dict[str, fastdigest.TDigest]:
    return {"sample": golden_sample_digest(), "empty": fastdigest.TDigest(1000)}


def write_golden() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, d in _golden_inputs().items():
        (GOLDEN / f"digest_v1_{name}.bin").write_bytes(encode_digest(d))
        (GOLDEN / f"digest_v1_{name}.json").write_text(_json_text(d))


def _lognormal(n: int = 50_000, seed: int = 7) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.random.default_rng(seed).lognormal(0.0, 1.0, n)


def _digest_of(
    x: np.ndarray[Any, np.dtype[np.float64]], compression: int = 1000
) -> fastdigest.TDigest:
    d = fastdigest.TDigest(compression)
    for start in range(0, len(x), 512):
        d.batch_update(np.ascontiguousarray(x[start : start + 512]).data)
    return d


# --- golden files -------------------------------------------------------------------------


def test_golden_sample_decodes_to_exact_values() -> None:
    d = decode_digest((GOLDEN / "digest_v1_sample.bin").read_bytes())
    x = golden_sample()
    assert d.n_values == 2000
    assert d.max_centroids == 50
    assert d.min() == float(x.min()) == 0.0
    assert d.max() == float(x.max()) == 2002**2 / 1024
    # every value is a multiple of 1/1024 below 4,000: the sum is exact in float64
    assert d.sum() == sum(((i * 7919) % 2003) ** 2 for i in range(2000)) / 1024
    assert 40 <= d.n_centroids <= 50
    assert d.mass() == 2000.0
    # the JSON form holds exactly the same digest
    from_json = digest_from_json_obj(json.loads((GOLDEN / "digest_v1_sample.json").read_text()))
    assert from_json == d
    assert from_json.quantile_vec(QS) == d.quantile_vec(QS)
    # and what it says is still close to the data it summarises
    exact = np.quantile(x, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(d.quantile_vec([0.1, 0.5, 0.9]), exact, rtol=0.02)


def test_golden_empty_decodes_to_an_empty_digest() -> None:
    d = decode_digest((GOLDEN / "digest_v1_empty.bin").read_bytes())
    assert d.is_empty() and d.n_values == 0 and d.max_centroids == 1000
    obj = json.loads((GOLDEN / "digest_v1_empty.json").read_text())
    assert obj["min"] is None and obj["max"] is None and obj["centroids"] == []
    assert digest_from_json_obj(obj) == d
    assert (GOLDEN / "digest_v1_empty.bin").read_bytes() == (
        MAGIC + bytes([1, 0, 0, 0]) + struct.pack("<IIQddd", 1000, 0, 0, math.nan, math.nan, 0.0)
    )


@pytest.mark.parametrize("name", ["sample", "empty"])
def test_reencoding_a_golden_file_reproduces_its_bytes(name: str) -> None:
    blob = (GOLDEN / f"digest_v1_{name}.bin").read_bytes()
    text = (GOLDEN / f"digest_v1_{name}.json").read_text()
    assert encode_digest(decode_digest(blob)) == blob
    assert _json_text(digest_from_json_obj(json.loads(text))) == text


@pytest.mark.parametrize("name", ["sample", "empty"])
def test_encoding_the_golden_input_reproduces_the_golden_files(name: str) -> None:
    d = _golden_inputs()[name]
    assert encode_digest(d) == (GOLDEN / f"digest_v1_{name}.bin").read_bytes(), (
        "fastdigest now builds different centroids from the same input (or the format changed)"
    )
    assert _json_text(d) == (GOLDEN / f"digest_v1_{name}.json").read_text()


def test_golden_layout_matches_the_documented_header() -> None:
    blob = (GOLDEN / "digest_v1_sample.bin").read_bytes()
    magic, major, minor, flags, compression, k, n, mn, mx, total = HEADER.unpack_from(blob)
    assert (magic, major, minor, flags, compression, n) == (b"BLTD", 1, 0, 0, 50, 2000)
    assert len(blob) == 48 + 16 * k
    assert total == float(golden_sample().sum())
    means = np.frombuffer(blob, "<f8", k, 48)
    weights = np.frombuffer(blob, "<f8", k, 48 + 8 * k)
    assert means[0] == mn and means[-1] <= mx  # the first centroid is the minimum itself
    assert weights.sum() == n and bool((np.diff(means) >= 0).all())


# --- round trips ----------------------------------------------------------------------------


def test_round_trip_reproduces_quantiles_cdf_and_moments_exactly() -> None:
    x = _lognormal()
    d = _digest_of(x)
    for back in (
        decode_digest(encode_digest(d)),
        digest_from_json_obj(json.loads(json.dumps(digest_to_json_obj(d)))),
    ):
        assert back == d
        assert back.quantile_vec(QS) == d.quantile_vec(QS)
        assert back.cdf_vec([0.1, 1.0, 5.0, 30.0]) == d.cdf_vec([0.1, 1.0, 5.0, 30.0])
        assert (back.n_values, back.min(), back.max(), back.sum()) == (
            50_000,
            float(x.min()),
            float(x.max()),
            d.sum(),
        )
        assert back.max_centroids == 1000
    assert len(encode_digest(d)) == 48 + 16 * d.n_centroids


def test_empty_digest_round_trips_in_every_form() -> None:
    empty = fastdigest.TDigest(321)
    assert decode_digest(encode_digest(empty)) == empty
    assert digest_from_json_obj(json.loads(json.dumps(digest_to_json_obj(empty)))) == empty
    assert to_tdigest_dict(empty)["centroids"] == []
    assert from_tdigest_dict(to_tdigest_dict(empty)).is_empty()
    assert from_tdigest_dict(tdigest.TDigest().to_dict()).is_empty()


def test_encode_uses_the_fast_centroid_path_and_it_agrees_with_centroids() -> None:
    d = _digest_of(_lognormal(20_000))
    rows = digest_mod._fast_centroids(d, d.n_values, d.sum())
    assert rows is not None, "fastdigest's to_bytes layout changed: encode uses the slow path"
    assert rows.tolist() == [list(c) for c in d.centroids]


def test_a_merged_digest_round_trips() -> None:
    parts = [_digest_of(_lognormal(5_000, seed)) for seed in range(4)]
    merged = fastdigest.merge_all([decode_digest(encode_digest(p)) for p in parts])
    again = decode_digest(encode_digest(merged))
    assert again.quantile_vec(QS) == merged.quantile_vec(QS)
    assert again.n_values == 20_000


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(finite, min_size=0, max_size=300),
    compression=st.integers(min_value=1, max_value=200),
)
def test_property_round_trip_is_exact(values: list[float], compression: int) -> None:
    d = fastdigest.TDigest(compression)
    if values:
        d.batch_update(values)
    back = decode_digest(encode_digest(d))
    assert back == d
    assert digest_from_json_obj(json.loads(json.dumps(digest_to_json_obj(d)))) == d
    if values:
        assert back.quantile_vec(QS) == d.quantile_vec(QS)
        assert (back.min(), back.max()) == (min(values), max(values))


# --- corrupt input --------------------------------------------------------------------------


def _sample_blob() -> bytes:
    return (GOLDEN / "digest_v1_sample.bin").read_bytes()


def _patch(blob: bytes, offset: int, fmt: str, *values: Any) -> bytes:
    out = bytearray(blob)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _corruptions() -> dict[str, tuple[bytes, str]]:
    blob = _sample_blob()
    k = HEADER.unpack_from(blob)[5]
    means, weights = 48, 48 + 8 * k
    return {
        "too short": (blob[:20], "too short"),
        "bad magic": (b"XXXX" + blob[4:], "not a baselined digest"),
        "major version 2": (_patch(blob, 4, "<B", 2), "version 2.0 is not supported"),
        "flags set": (_patch(blob, 6, "<H", 1), "flags"),
        "truncated centroids": (blob[:-8], "must be"),
        "trailing bytes in 1.0": (blob + b"\0", "must be"),
        "centroid count too large": (_patch(blob, 12, "<I", k + 1), "must be"),
        "NaN mean": (_patch(blob, means + 8, "<d", math.nan), "not all finite"),
        "infinite mean": (_patch(blob, means + 8, "<d", math.inf), "not all finite"),
        "unsorted means": (_patch(blob, means + 8 * (k - 2), "<d", 1e9), "not sorted"),
        "zero weight": (_patch(blob, weights, "<d", 0.0), "positive"),
        "weights off n": (_patch(blob, weights + 8, "<d", 1000.0), "expected n=2000"),
        "n off weights": (_patch(blob, 16, "<Q", 5), "expected n=5"),
        "min above max": (_patch(blob, 24, "<d", 1e9), "min"),
        "infinite max": (_patch(blob, 32, "<d", math.inf), "not finite"),
        "NaN sum": (_patch(blob, 40, "<d", math.nan), "sum is NaN"),
        "values but no centroids": (_patch(blob[:48], 12, "<I", 0), "0 centroids for 2000"),
    }


CORRUPTION_CASES = [
    "too short",
    "bad magic",
    "major version 2",
    "flags set",
    "truncated centroids",
    "trailing bytes in 1.0",
    "centroid count too large",
    "NaN mean",
    "infinite mean",
    "unsorted means",
    "zero weight",
    "weights off n",
    "n off weights",
    "min above max",
    "infinite max",
    "NaN sum",
    "values but no centroids",
]


@pytest.mark.parametrize("case", CORRUPTION_CASES)
def test_corrupt_digest_bytes_raise_value_error(case: str) -> None:
    cases = _corruptions()
    assert set(cases) == set(CORRUPTION_CASES)
    blob, message = cases[case]
    with pytest.raises(ValueError, match=message):
        decode_digest(blob)


def test_a_newer_minor_version_with_appended_bytes_is_read() -> None:
    blob = _patch(_sample_blob(), 5, "<BH", 3, 0x0101) + b"future extension"
    assert decode_digest(blob) == decode_digest(_sample_blob())


def test_encode_refuses_a_digest_it_could_not_read_back() -> None:
    unsorted = fastdigest.TDigest.from_dict(
        {"max_centroids": 10, "centroids": [{"m": 3.0, "c": 1.0}, {"m": 1.0, "c": 1.0}]}
    )
    with pytest.raises(ValueError, match="cannot encode digest: centroid means are not sorted"):
        encode_digest(unsorted)
    with pytest.raises(TypeError):
        encode_digest({"centroids": []})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something else"}, "not a baselined digest object"),
        ({"version": "2.0"}, "version '2.0' is not supported"),
        ({"n": 1.5}, "expected an integer"),
        ({"centroids": [[1.0]]}, "malformed"),
        ({"min": None}, "not finite"),
        ({"centroids": "nope"}, "malformed"),
    ],
)
def test_malformed_json_objects_raise_value_error(change: dict[str, Any], message: str) -> None:
    obj = json.loads((GOLDEN / "digest_v1_sample.json").read_text())
    obj.update(change)
    with pytest.raises(ValueError, match=message):
        digest_from_json_obj(obj)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"centroids": [{"m": 1.0}]},
        {"centroids": [{"m": 1.0, "c": 0.0}]},
        {"centroids": [{"m": math.nan, "c": 1.0}]},
        {"centroids": [{"m": "x", "c": 1.0}]},
    ],
)
def test_bad_tdigest_dicts_raise_value_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        from_tdigest_dict(bad)


# --- tdigest interop --------------------------------------------------------------------------


def test_our_digest_reads_into_the_tdigest_package_with_agreeing_quantiles() -> None:
    x = _lognormal()
    ours = _digest_of(x)
    as_dict = to_tdigest_dict(ours)
    assert set(as_dict) == {"n", "delta", "K", "centroids"}
    assert as_dict["n"] == 50_000 and as_dict["delta"] == pytest.approx(0.001)
    random.seed(11)  # tdigest picks among equally close centroids at random
    theirs = tdigest.TDigest().update_from_dict(as_dict)
    assert theirs.n == 50_000
    for q in (0.01, 0.1, 0.5, 0.9, 0.99, 0.999):
        assert theirs.percentile(100 * q) == pytest.approx(ours.quantile(q), rel=0.005), q


def test_a_tdigest_package_digest_converts_to_ours_losslessly() -> None:
    y = _lognormal(3_000, seed=3)
    random.seed(12)
    theirs = tdigest.TDigest()
    theirs.batch_update(y)
    as_dict = theirs.to_dict()
    ours = from_tdigest_dict(as_dict)
    assert ours.n_values == 3_000 and ours.max_centroids == 1000
    assert [(c["m"], c["c"]) for c in as_dict["centroids"]] == ours.centroids
    # the dict has no min/max/sum: extremes are the end centroids (singletons here)
    assert (ours.min(), ours.max()) == (float(y.min()), float(y.max()))
    assert ours.sum() == pytest.approx(float(y.sum()), rel=1e-12)
    for q in (0.01, 0.1, 0.5, 0.9, 0.99):
        assert ours.quantile(q) == pytest.approx(theirs.percentile(100 * q), rel=0.005), q
    for q in (0.01, 0.1, 0.5, 0.9, 0.99, 0.999):
        assert ours.quantile(q) == pytest.approx(float(np.quantile(y, q)), rel=0.005), q
    # and our format keeps it from there on
    assert decode_digest(encode_digest(ours)) == ours


def test_from_tdigest_dict_sorts_centroids_and_honours_compression() -> None:
    d = from_tdigest_dict(
        {"n": 3, "delta": 0.01, "K": 25, "centroids": [{"m": 3.0, "c": 1}, {"m": 1.0, "c": 2}]},
        compression=64,
    )
    assert d.centroids == [(1.0, 2.0), (3.0, 1.0)]
    assert d.max_centroids == 64 and d.n_values == 3 and d.sum() == 5.0


if __name__ == "__main__":
    write_golden()
    print(f"wrote golden digests to {GOLDEN}")
