"""Bad input: every malformed or oversized batch is refused whole, with a message
naming the problem, and leaves the live windows exactly as they were."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb

from sidecar.errors import InvalidInput, TooLarge
from sidecar.ingest import MAX_NAME_LENGTH, decode_batch
from sidecar.records import Kind, SeriesId
from sidecar.series import NumericState
from sidecar.settings import Settings
from sidecar.stores import SQLiteStore
from sidecar.windows import Windows

NOW = 1_700_000_000.0
SETTINGS = Settings(
    instance="test",
    bucket_seconds=60,
    retention_seconds=3600,
    max_clock_skew=30.0,
    max_batch_rows=8,
    max_signals=4,
    max_slice_attributes=2,
    max_batch_bytes=4000,
)


def good_batch() -> pb.SampleBatch:
    """Three rows, two numeric signals, one categorical, a slice column and a batch slice."""
    batch = pb.SampleBatch(model="fraud", version="v1", environment="prod")
    batch.timestamps.extend([NOW - 5, NOW - 4, NOW - 3])
    batch.request_ids.extend(["a", "b", "c"])
    batch.numeric.add(name="x", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0, 2.0, 3.0])
    batch.numeric.add(name="latency", kind=pb.SIGNAL_KIND_LATENCY, values=[0.1, 0.2, 0.3])
    batch.categorical.add(name="label", kind=pb.SIGNAL_KIND_OUTPUT, values=["yes", "no", "yes"])
    batch.slices.add(name="region", values=["eu", "us", ""])
    batch.batch_slices["node"] = "gpu-7"
    return batch


Mutation = Callable[[pb.SampleBatch], object]


def _rows(b: pb.SampleBatch, n: int) -> None:
    """Grow or shrink every per-row column to ``n`` rows."""
    b.ClearField("request_ids")
    b.timestamps[:] = (list(b.timestamps) + [NOW] * n)[:n]
    for col in b.numeric:
        col.values[:] = (list(col.values) + [0.0] * n)[:n]
    for ccol in b.categorical:
        ccol.values[:] = (list(ccol.values) + [""] * n)[:n]
    for scol in b.slices:
        scol.values[:] = (list(scol.values) + [""] * n)[:n]


INVALID: list[tuple[str, Mutation, str]] = [
    ("empty model", lambda b: setattr(b, "model", ""), "model name is empty"),
    (
        "model with unit separator",
        lambda b: setattr(b, "model", "fr\x1faud"),
        "U+001F at position 2",
    ),
    ("version with newline", lambda b: setattr(b, "version", "v1\n"), "version 'v1\\n' contains"),
    ("version reserved", lambda b: setattr(b, "version", "*"), "reserved"),
    ("empty environment", lambda b: setattr(b, "environment", ""), "environment is empty"),
    (
        "environment too long",
        lambda b: setattr(b, "environment", "e" * (MAX_NAME_LENGTH + 1)),
        f"environment is {MAX_NAME_LENGTH + 1} characters long,"
        f" over the limit of {MAX_NAME_LENGTH}",
    ),
    (
        "signal name with tab",
        lambda b: setattr(b.numeric[1], "name", "lat\tency"),
        "numeric column 1 name",
    ),
    (
        "empty signal name",
        lambda b: setattr(b.categorical[0], "name", ""),
        "categorical column 0 name is empty",
    ),
    (
        "slice attribute with control",
        lambda b: setattr(b.slices[0], "name", "re\x00gion"),
        "slice column 0 name",
    ),
    (
        "slice attribute with =",
        lambda b: setattr(b.slices[0], "name", "a=b"),
        "must not be '*' or contain '='",
    ),
    (
        "slice value with control",
        lambda b: b.slices[0].values.__setitem__(1, "u\x7fs"),
        "slice column 0 ('region') row 1 value 'u\\x7fs' contains",
    ),
    (
        "batch slice value with control",
        lambda b: b.batch_slices.__setitem__("node", "gpu\x1f7"),
        "batch slice 'node' value",
    ),
    (
        "duplicate slice attribute",
        lambda b: b.batch_slices.update({"node": "", "region": "eu"}) or b.batch_slices.pop("node"),
        "duplicate slice attribute 'region'",
    ),
    (
        "short numeric column",
        lambda b: b.numeric[1].values.pop(),
        "numeric column 1 ('latency') has 2 values, expected 3",
    ),
    (
        "long categorical column",
        lambda b: b.categorical[0].values.append("no"),
        "categorical column 0 ('label') has 4 values, expected 3",
    ),
    (
        "short slice column",
        lambda b: b.slices[0].values.pop(),
        "slice column 0 ('region') has 2 values, expected 3",
    ),
    (
        "request ids count",
        lambda b: b.request_ids.pop(),
        "request_ids has 2 values, expected 0 or 3",
    ),
    ("no rows", lambda b: _rows(b, 0), "no rows"),
    (
        "unknown kind",
        lambda b: setattr(b.numeric[0], "kind", 42),
        "numeric column 0 ('x') has unknown signal kind 42",
    ),
    (
        "unspecified kind",
        lambda b: setattr(b.categorical[0], "kind", pb.SIGNAL_KIND_UNSPECIFIED),
        "categorical column 0 ('label') has no signal kind",
    ),
    (
        "duplicate numeric signal",
        lambda b: b.numeric[1].MergeFrom(pb.NumericColumn(name="x", kind=pb.SIGNAL_KIND_FEATURE)),
        "duplicate signal: feature 'x' is both numeric column 0 and numeric column 1",
    ),
    (
        "same signal numeric and categorical",
        lambda b: b.categorical[0].MergeFrom(
            pb.CategoricalColumn(name="latency", kind=pb.SIGNAL_KIND_LATENCY)
        ),
        "duplicate signal: latency 'latency' is both numeric column 1 and categorical column 0",
    ),
    (
        "nan timestamp",
        lambda b: b.timestamps.__setitem__(2, float("nan")),
        "timestamp at row 2 is nan",
    ),
    (
        "infinite timestamp",
        lambda b: b.timestamps.__setitem__(0, float("inf")),
        "timestamp at row 0 is inf",
    ),
    (
        "timestamp in the future",
        lambda b: b.timestamps.__setitem__(1, NOW + 31),
        "timestamp at row 1 (1700000031.000) is 31.000 s in the future, beyond max_clock_skew=30 s",
    ),
    (
        "timestamp past retention",
        lambda b: b.timestamps.__setitem__(2, NOW - 3601),
        "timestamp at row 2 (1699996399.000) is 3601 s old, older than retention_seconds=3600",
    ),
]


TOO_LARGE: list[tuple[str, Mutation, str]] = [
    ("too many rows", lambda b: _rows(b, 9), "batch has 9 rows, over max_batch_rows=8"),
    (
        "too many signals",
        lambda b: [
            b.numeric.add(name=f"s{i}", kind=pb.SIGNAL_KIND_FEATURE, values=[0.0] * 3)
            for i in range(2)
        ],
        "batch has 5 signals, over max_signals=4",
    ),
    (
        "too many slice attributes",
        lambda b: b.batch_slices.__setitem__("zone", "a"),
        "batch has 3 slice attributes, over max_slice_attributes=2",
    ),
    (
        "too many bytes",
        lambda b: b.fingerprint.fields.__setitem__("blob", "x" * 4000),
        "over max_batch_bytes=4000",
    ),
]


def test_good_batch_decodes_to_columns() -> None:
    data = decode_batch(good_batch(), SETTINGS, now=NOW)
    assert data.rows == 3
    assert data.numeric_signals == ((Kind.FEATURE, "x"), (Kind.LATENCY, "latency"))
    np.testing.assert_array_equal(data.numeric, [[1.0, 2.0, 3.0], [0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(data.timestamps, [NOW - 5, NOW - 4, NOW - 3])
    assert data.categorical == ((Kind.OUTPUT, "label", ["yes", "no", "yes"]),)
    assert data.slices[0].distinct == ("eu", "us", "")
    assert data.batch_slices == (("node", "gpu-7"),)


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [pytest.param(m, InvalidInput, msg, id=name) for name, m, msg in INVALID]
    + [pytest.param(m, TooLarge, msg, id=name) for name, m, msg in TOO_LARGE],
)
def test_bad_batch_is_refused_whole_and_changes_nothing(
    mutate: Mutation, error: type[Exception], message: str
) -> None:
    store = SQLiteStore()
    windows = Windows(SETTINGS, store, clock=lambda: NOW)
    assert windows.ingest(good_batch()) == 3
    windows.flush()
    before = windows.stats()

    bad = good_batch()
    bad.numeric[0].values[:] = [100.0, 200.0, 300.0]  # would show if anything of it got in
    bad.timestamps[:] = [NOW - 2, NOW - 1, NOW]
    mutate(bad)
    with pytest.raises(error) as caught:
        windows.ingest(bad)
    assert message in str(caught.value)

    after = windows.stats()
    assert after["records_accepted"] == before["records_accepted"] == 3
    assert after["batches_rejected"] == 1 and after["records_rejected"] == len(bad.timestamps)
    assert windows.flush() == 0  # nothing changed, so nothing to write
    x = windows.read("fraud", "prod", NOW - 60, NOW + 60).series[
        SeriesId("*", "*", Kind.FEATURE, "x")
    ]
    assert isinstance(x, NumericState)
    assert (x.count, x.summary().max) == (3, 3.0)

    # The stream goes on: the next good batch is taken as usual.
    assert windows.ingest(good_batch()) == 3
    windows.flush()
    x = windows.read("fraud", "prod", NOW - 60, NOW + 60).series[
        SeriesId("*", "*", Kind.FEATURE, "x")
    ]
    assert isinstance(x, NumericState)
    assert (x.count, x.summary().max) == (6, 3.0)
    store.close()


def test_bounds_at_the_limit_are_accepted() -> None:
    batch = good_batch()
    _rows(batch, 8)
    batch.numeric.add(
        name="x", kind=pb.SIGNAL_KIND_OUTPUT, values=[0.0] * 8
    )  # same name, other kind
    batch.environment = "e" * MAX_NAME_LENGTH
    assert decode_batch(batch, SETTINGS, now=NOW).rows == 8
    batch.timestamps[:] = [NOW + 30.0, NOW - 3600.0] + [NOW] * 6
    assert decode_batch(batch, SETTINGS, now=NOW).rows == 8


def test_infinite_values_are_valid_and_count_as_out_of_range() -> None:
    windows = Windows(SETTINGS, SQLiteStore(), clock=lambda: NOW)
    batch = good_batch()
    batch.numeric[0].values[:] = [float("inf"), float("-inf"), float("nan")]
    assert windows.ingest(batch) == 3
    windows.flush()
    x = windows.read("fraud", "prod", NOW - 60, NOW + 60).series[
        SeriesId("*", "*", Kind.FEATURE, "x")
    ]
    assert isinstance(x, NumericState)
    assert (x.count, x.out_of_range, x.missing) == (0, 2, 1)


def test_a_signal_cannot_change_type_between_batches() -> None:
    windows = Windows(SETTINGS, SQLiteStore(), clock=lambda: NOW)
    windows.ingest(good_batch())
    batch = good_batch()
    batch.ClearField("categorical")
    batch.numeric.add(name="label", kind=pb.SIGNAL_KIND_OUTPUT, values=[1.0, 0.0, 1.0])
    with pytest.raises(InvalidInput, match="signal output 'label' of fraud/prod was categorical"):
        windows.ingest(batch)
    assert windows.stats()["records_accepted"] == 3


@pytest.mark.parametrize("rows", [1, 16, 17, 700])
@pytest.mark.parametrize("name", ["x", "é" * 70, "n" * 256])
def test_numeric_columns_decode_exactly_whatever_their_length_and_name(
    rows: int, name: str
) -> None:
    rng = np.random.default_rng(rows)
    values = rng.normal(size=rows)
    values[0] = np.nan
    values[-1] = -np.inf
    batch = pb.SampleBatch(model="m", version="v1", environment="prod")
    batch.timestamps.extend([NOW - 1.0] * rows)
    for kind in (pb.SIGNAL_KIND_FEATURE, pb.SIGNAL_KIND_ERROR):
        batch.numeric.add(name=name, kind=kind, values=values.tolist())
    parsed = pb.SampleBatch.FromString(batch.SerializeToString())
    roomy = SETTINGS.replace(max_batch_rows=1000, max_batch_bytes=1 << 20)
    data = decode_batch(parsed, roomy, now=NOW)
    np.testing.assert_array_equal(data.numeric, [values, values])
