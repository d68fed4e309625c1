"""Numeric precision statistics of NumericState: effective mantissa bits and distinct values."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import pytest

from sidecar.series import MANTISSA_BITS, NumericState, decode_state, merge_encoded

Floats = npt.NDArray[np.float64]


def _reference_bits(x: Floats) -> npt.NDArray[np.int64]:
    hist = np.zeros(MANTISSA_BITS + 1, dtype=np.int64)
    for v in x[np.isfinite(x)]:
        frac = int(np.float64(v).view(np.uint64)) & ((1 << 52) - 1)
        zeros = 52 if frac == 0 else (frac & -frac).bit_length() - 1
        hist[52 - zeros] += 1
    return hist


def _state(x: Floats, exact_limit: int) -> NumericState:
    s = NumericState(200, exact_limit=exact_limit)
    for chunk in np.array_split(x, max(1, x.size // 512)):
        s.add(chunk)
    return s


@pytest.mark.parametrize("exact_limit", [0, 65536])
def test_bits_histogram_matches_a_per_value_reference(exact_limit: int) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate(
        (rng.normal(size=3_000), [0.0, -0.0, 1.0, 0.5, 5e-324, np.nan, np.inf, -np.inf])
    )
    p = _state(x, exact_limit).precision
    assert p is not None
    assert (p.bits == _reference_bits(x)).all()
    assert p.count == 3_005


@pytest.mark.parametrize(("dtype", "limit"), [(np.float32, 23), (np.float16, 10)])
def test_rounded_values_use_at_most_their_formats_bits(dtype: type, limit: int) -> None:
    x = np.random.default_rng(2).normal(size=5_000).astype(dtype).astype(np.float64)
    for exact_limit in (0, 65536):
        p = _state(x, exact_limit).precision
        assert p is not None
        assert p.bits[limit + 1 :].sum() == 0 and p.bits[limit] > 0
    full = _state(np.random.default_rng(2).normal(size=5_000), 0).precision
    assert full is not None and full.mean_bits > 50.0


def test_bfloat16_rounding_uses_at_most_seven_bits() -> None:
    x = np.random.default_rng(3).normal(size=2_000)
    bf16 = (x.view(np.uint64) & ~np.uint64((1 << 45) - 1)).view(np.float64)  # keep 7 bits
    p = _state(bf16, 0).precision
    assert p is not None and p.bits[8:].sum() == 0


@pytest.mark.parametrize("levels", [200, 5_000, 40_000])
def test_distinct_is_exact_in_exact_mode_and_estimated_in_digest_mode(levels: int) -> None:
    x = np.random.default_rng(4).integers(0, levels, 60_000) / 7.0
    truth = len(np.unique(x))
    exact = _state(x, 65536).precision
    digest = _state(x, 0).precision
    assert exact is not None and digest is not None
    assert exact.distinct == truth and exact.distinct_exact
    assert digest.distinct == pytest.approx(truth, rel=0.1) and not digest.distinct_exact
    assert digest.distinct_share == pytest.approx(truth / 60_000, rel=0.1)


def test_precision_survives_encoding_merging_and_the_switch_to_a_digest() -> None:
    rng = np.random.default_rng(5)
    parts = [rng.lognormal(size=3_000) for _ in range(4)]
    parts[1] = parts[1].astype(np.float32).astype(np.float64)
    everything = np.concatenate(parts)
    expected = _reference_bits(everything)
    # Exact partials merged past the receiver's limit become a digest.
    merged = merge_encoded([_state(x, 5_000).encode() for x in parts])
    assert not merged.is_exact if isinstance(merged, NumericState) else False
    assert isinstance(merged, NumericState)
    p = merged.precision
    assert p is not None and (p.bits == expected).all()
    # Digest partials: the extension round-trips and merges.
    blobs = [_state(x, 0).encode() for x in parts]
    back = decode_state(blobs[0])
    assert isinstance(back, NumericState) and back.encode() == blobs[0]
    merged2 = merge_encoded(blobs)
    assert isinstance(merged2, NumericState)
    p2 = merged2.precision
    assert p2 is not None and (p2.bits == expected).all()
    assert p2.distinct == pytest.approx(len(np.unique(everything)), rel=0.1)
    # Crossing the limit inside add keeps every value counted.
    crossing = _state(everything, 4_000)
    assert not crossing.is_exact
    p3 = crossing.precision
    assert p3 is not None and (p3.bits == expected).all()


def test_states_encoded_without_the_extension_have_unknown_precision() -> None:
    s = _state(np.arange(1.0, 1_001.0), 0)
    blob = s.encode()
    size = struct.unpack_from("<I", blob, 28)[0]
    old = blob[: 32 + size]  # a version 1 state as written before precision statistics
    state = decode_state(old)
    assert isinstance(state, NumericState) and state.precision is None
    assert state.encode() == old  # and it is written back the same way
    merged = merge_encoded([blob, old])
    assert isinstance(merged, NumericState) and merged.precision is None
    # An empty old state is simply empty.
    empty = NumericState(100, exact_limit=0).encode()
    fresh = decode_state(empty)
    assert isinstance(fresh, NumericState) and fresh.precision is not None
    assert merge_encoded([empty, blob]).precision is not None  # type: ignore[union-attr]


def test_a_corrupt_precision_extension_is_refused() -> None:
    blob = _state(np.arange(1.0, 101.0), 0).encode()
    size = struct.unpack_from("<I", blob, 28)[0]
    head = 32 + size
    ext_len = struct.unpack_from("<I", blob, head + 1)[0]
    bad = bytearray(blob)
    struct.pack_into("<Q", bad, head + 5, 9_999)  # the histogram no longer sums to the count
    with pytest.raises(ValueError, match="precision record"):
        decode_state(bytes(bad))
    with pytest.raises(ValueError, match=r"precision record|sketch"):
        decode_state(blob[:head] + struct.pack("<BI", 1, ext_len - 3) + blob[head + 5 : -3])


def test_exact_encodings_carry_a_sparse_bits_histogram_and_old_ones_derive_it() -> None:
    s = _state(np.array([0.5, 0.75, 0.1, 0.1]), 65536)
    blob = s.encode()
    # Values, then one extension record: 3 non-empty bins (0, 1 and 51 bits) of 5 bytes.
    assert len(blob) == 40 + 4 * 8 + 5 + 3 * 5
    p = decode_state(blob).precision  # type: ignore[union-attr]
    assert p is not None and p.distinct == 3.0 and p.mean_bits == pytest.approx(103 / 4)
    old = decode_state(blob[: 40 + 4 * 8])  # written before the histogram was kept
    assert isinstance(old, NumericState)
    q = old.precision
    assert q is not None and (q.bits == p.bits).all() and q.distinct == 3.0
    assert old.encode() == blob  # written back with the histogram
    bad = bytearray(blob)
    bad[-4] = 9  # the histogram no longer sums to the count
    with pytest.raises(ValueError, match="bits record"):
        decode_state(bytes(bad))


def test_exact_bits_histograms_add_up_through_adds_merges_and_encodings() -> None:
    rng = np.random.default_rng(8)
    parts = [rng.normal(size=500), rng.normal(size=300).astype(np.float16).astype(np.float64)]
    everything = np.concatenate(parts)
    expected = _reference_bits(everything)
    merged = merge_encoded([_state(x, 65536).encode() for x in parts])
    assert isinstance(merged, NumericState) and merged.is_exact
    p = merged.precision
    assert p is not None and (p.bits == expected).all()
    # A known histogram stays known when an old-style (histogram-less) state merges in.
    old = decode_state(_state(parts[1], 65536).encode()[: 40 + 8 * 300])
    receiver = decode_state(_state(parts[0], 65536).encode())
    assert isinstance(receiver, NumericState) and isinstance(old, NumericState)
    receiver.merge(old)
    receiver.add(np.array([0.5]))
    q = receiver.precision
    assert q is not None and (q.bits == _reference_bits(np.append(everything, 0.5))).all()


def test_quantiles_and_cdf_helpers_match_numpy_in_exact_mode() -> None:
    x = np.random.default_rng(6).lognormal(size=9_999)
    s = _state(x, 65536)
    levels = np.array([0.0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0])
    assert (s.quantiles(levels) == np.quantile(x, levels)).all()
    points = np.quantile(x, [0.1, 0.5, 0.7])
    assert s.cdf(points) == pytest.approx([np.mean(x <= v) for v in points])
    assert s.value_range() == (x.min(), x.max())
    assert s.mean() == pytest.approx(x.mean())
    with pytest.raises(ValueError, match="within"):
        s.quantiles([1.5])
    d = _state(x, 0)
    assert d.quantiles(levels[:-2]) == pytest.approx(np.quantile(x, levels[:-2]), rel=0.02)
