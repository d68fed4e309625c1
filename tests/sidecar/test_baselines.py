"""BaselineManager: freeze, promote, roll back, retire, views and audit, on a real
SQLite store with real live windows and a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb

from sidecar.baselines import DEFAULT_QUANTILES, BaselineManager
from sidecar.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound
from sidecar.records import ALL_TRAFFIC, Kind, SeriesId, Status
from sidecar.settings import Settings
from sidecar.stores.sqlite import SQLiteStore
from sidecar.windows import Windows

T0 = 1_700_000_000.0
MODEL, ENV = "fraud", "prod"


class FakeClock:
    """Unix seconds that move only when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_batch(
    *,
    latency: Sequence[float],
    at: float,
    model: str = MODEL,
    environment: str = ENV,
    version: str = "v1",
    feature: Sequence[float] | None = None,
    colour: Sequence[str] | None = None,
    region: Sequence[str] | None = None,
    fingerprint: Mapping[str, str] | None = None,
) -> pb.SampleBatch:
    """A columnar batch with a latency column (and optionally a feature, a
    categorical column and a region slice), every row stamped ``at``."""
    n = len(latency)
    fp = dict(fingerprint or {"python": "3.11.7", "lib.numpy": "2.4.0"})
    batch = pb.SampleBatch(
        model=model,
        version=version,
        environment=environment,
        fingerprint=pb.Fingerprint(hash="fp-" + "-".join(sorted(fp.values())), fields=fp),
        instance="pod-1:1",
        timestamps=[at] * n,
        numeric=[
            pb.NumericColumn(
                name="latency_seconds", kind=pb.SIGNAL_KIND_LATENCY, values=list(latency)
            )
        ],
    )
    if feature is not None:
        batch.numeric.append(
            pb.NumericColumn(name="amount", kind=pb.SIGNAL_KIND_FEATURE, values=list(feature))
        )
    if colour is not None:
        batch.categorical.append(
            pb.CategoricalColumn(name="colour", kind=pb.SIGNAL_KIND_FEATURE, values=list(colour))
        )
    if region is not None:
        batch.slices.append(pb.SliceColumn(name="region", values=list(region)))
    return batch


def ingest_values(windows: Windows, values: np.ndarray, at: float, **kwargs: Any) -> None:
    """Ingest ``values`` as latency in batches of 512 rows."""
    for i in range(0, len(values), 512):
        windows.ingest(make_batch(latency=values[i : i + 512].tolist(), at=at, **kwargs))


class Env:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.settings = Settings.resolve(
            {"store": ":memory:", "instance": "test", "bucket_seconds": 60}, env={}
        )
        self.store = SQLiteStore(":memory:", clock=self.clock)
        self.windows = Windows(self.settings, self.store, clock=self.clock)
        self.manager = BaselineManager(
            self.store,
            self.windows,
            clock=self.clock,
            retention_seconds=self.settings.retention_seconds,
        )

    def freeze(self, name: str, reason: str = "weekly", actor: str = "alice") -> str:
        """Ingest a little traffic, then freeze everything retained under ``name``."""
        ingest_values(self.windows, np.linspace(0.01, 0.2, 100), at=self.clock.now - 1)
        self.clock.advance(60)
        return self.manager.freeze(MODEL, ENV, name, reason, actor, start=0, end=0).id


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.store.close()


def test_freeze_keeps_every_value_and_quantiles_match_numpy(env: Env) -> None:
    rng = np.random.default_rng(7)
    # 200,000 values: at 50,000 neighbouring order statistics near p99 are ~0.05% apart, so
    # a digest rank error of 2-3 (normal at compression 1000) already exceeds 0.1%.
    latency = rng.lognormal(mean=-3.0, sigma=0.6, size=200_000)
    # Bimodal, 60/40, so that no requested quantile falls into the empty gap between modes.
    amount = np.concatenate([rng.normal(10, 1, 120_000), rng.normal(40, 3, 80_000)])
    rng.shuffle(amount)
    for i in range(0, len(latency), 1000):
        env.windows.ingest(
            make_batch(
                latency=latency[i : i + 1000].tolist(),
                feature=amount[i : i + 1000].tolist(),
                at=T0 - 300 + i / 1000,  # spread over several buckets, all before now
            )
        )
    record = env.manager.freeze(MODEL, ENV, "w1", "first week", "alice", start=0, end=0)

    assert record.record_count == 200_000
    assert record.series_count == 2
    assert record.versions == ("v1",)
    assert record.status == Status.CANDIDATE
    assert record.parent_id == ""
    assert record.created_by == "alice"
    assert record.window_end == T0
    assert record.fingerprint["lib.numpy"] == "2.4.0"
    assert record.id.startswith("b-") and len(record.id) == 14

    view = env.manager.view(record.id, quantiles=(0.5, 0.9, 0.99))
    by_signal = {sid.signal: summary for sid, summary in view.series}
    for signal, values in (("latency_seconds", latency), ("amount", amount)):
        summary = by_signal[signal]
        assert summary.count == 200_000
        assert summary.min == pytest.approx(values.min())
        assert summary.max == pytest.approx(values.max())
        for q, got in summary.quantiles:
            want = float(np.quantile(values, q))
            assert abs(got - want) / abs(want) < 1e-3, (signal, q, got, want)


def test_freeze_flushes_live_data_first_and_reads_it_back_from_the_store(env: Env) -> None:
    ingest_values(env.windows, np.arange(1.0, 301.0), at=T0 - 10)
    record = env.manager.freeze(MODEL, ENV, "w1", "", "alice", start=0, end=0)
    # The series live in the store: a second store reader sees the same thing.
    series = env.store.get_baseline_series(record.id)
    assert list(series) == [SeriesId("*", ALL_TRAFFIC, Kind.LATENCY, "latency_seconds").encode()]
    view = env.manager.view(record.id)
    ((_, summary),) = view.series
    assert summary.count == 300
    assert [q for q, _ in summary.quantiles] == list(DEFAULT_QUANTILES)


def test_record_count_uses_all_traffic_latency_not_slices_or_sums(env: Env) -> None:
    regions = ["eu"] * 30 + ["us"] * 20
    env.windows.ingest(
        make_batch(latency=[0.1] * 50, region=regions, colour=["red"] * 50, at=T0 - 5)
    )
    record = env.manager.freeze(MODEL, ENV, "sliced", "", "bob", start=0, end=0)
    assert record.record_count == 50
    view = env.manager.view(record.id, top_k=1)
    slices = {(sid.slice, sid.signal): s for sid, s in view.series}
    assert slices[("region=eu", "latency_seconds")].count == 30
    assert slices[("region=us", "latency_seconds")].count == 20
    colour = slices[(ALL_TRAFFIC, "colour")]
    assert colour.categorical and colour.top_values == (("red", 50),)


def test_freeze_a_single_version_only_counts_that_version(env: Env) -> None:
    env.windows.ingest(make_batch(latency=[0.1] * 40, version="v1", at=T0 - 5))
    env.windows.ingest(make_batch(latency=[0.2] * 60, version="v2", at=T0 - 5))
    both = env.manager.freeze(MODEL, ENV, "both", "", "a", start=0, end=0)
    only = env.manager.freeze(MODEL, ENV, "v2", "", "a", start=0, end=0, versions=["v2"])
    assert both.record_count == 100 and set(both.versions) == {"v1", "v2"}
    assert only.record_count == 60 and only.versions == ("v2",)


def test_freeze_refuses_an_empty_window(env: Env) -> None:
    env.windows.ingest(make_batch(latency=[0.1] * 10, at=T0 - 5))
    with pytest.raises(FailedPrecondition, match="holds no data"):
        env.manager.freeze(MODEL, ENV, "old", "", "a", start=T0 - 7200, end=T0 - 3600)
    with pytest.raises(FailedPrecondition, match="holds no data"):
        env.manager.freeze("other-model", ENV, "x", "", "a", start=0, end=0)
    assert env.manager.list() == []
    assert env.manager.audit() == []


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("", ENV, "n", 0.0, 0.0), "model must not be empty"),
        ((MODEL, "", "n", 0.0, 0.0), "environment must not be empty"),
        ((MODEL, ENV, " ", 0.0, 0.0), "name must not be empty"),
        ((MODEL, ENV, "n", T0, T0 - 1), "must be before its end"),
        ((MODEL, ENV, "n", float("nan"), 0.0), "start must be a finite"),
        ((MODEL, ENV, "n", 0.0, float("inf")), "end must be a finite"),
    ],
)
def test_freeze_validates_its_arguments(
    env: Env, args: tuple[str, str, str, float, float], problem: str
) -> None:
    model, environment, name, start, end = args
    with pytest.raises(InvalidInput, match=problem):
        env.manager.freeze(model, environment, name, "", "a", start=start, end=end)


def test_a_second_freeze_with_the_same_name_is_refused(env: Env) -> None:
    first = env.freeze("w1")
    with pytest.raises(AlreadyExists, match="w1"):
        env.freeze("w1")
    assert [r.id for r in env.manager.list()] == [first]
    # Another environment may reuse the name.
    env.windows.ingest(make_batch(latency=[0.1], environment="staging", at=env.clock.now - 1))
    env.manager.freeze(MODEL, "staging", "w1", "", "a", start=0, end=0)


def test_full_lifecycle_moves_the_pointer_and_audits_every_change(env: Env) -> None:
    b1 = env.freeze("w1", reason="first")
    with pytest.raises(NotFound, match="no active baseline"):
        env.manager.active(MODEL, ENV)

    assert env.manager.promote(b1, "looks right", "alice").status == Status.ACTIVE
    assert env.manager.active(MODEL, ENV).id == b1

    b2 = env.freeze("w2", reason="second", actor="bob")
    assert env.manager.get(b2).parent_id == b1
    env.manager.promote(b2, "newer traffic", "bob")
    assert env.manager.active(MODEL, ENV).id == b2
    assert env.manager.get(b1).status == Status.CANDIDATE

    rolled = env.manager.rollback(MODEL, ENV, "w2 was bad", "carol")
    assert rolled.id == b1 and rolled.status == Status.ACTIVE
    assert env.manager.active(MODEL, ENV).id == b1
    assert env.manager.get(b2).status == Status.CANDIDATE

    assert env.manager.retire(b2, "bad data", "carol").status == Status.RETIRED
    assert [r.id for r in env.manager.list(status=Status.RETIRED)] == [b2]
    assert [r.id for r in env.manager.list(MODEL, ENV, Status.ACTIVE)] == [b1]

    entries = env.manager.audit(MODEL, ENV)
    assert [(e.action, e.target, e.actor) for e in entries] == [
        ("freeze", b1, "alice"),
        ("promote", b1, "alice"),
        ("freeze", b2, "bob"),
        ("promote", b2, "bob"),
        ("rollback", b1, "carol"),
        ("retire", b2, "carol"),
    ]
    assert [e.reason for e in entries] == [
        "first",
        "looks right",
        "second",
        "newer traffic",
        "w2 was bad",
        "bad data",
    ]
    assert [(dict(e.before), dict(e.after)) for e in entries] == [
        ({"active": None, "status": None}, {"active": None, "status": "candidate"}),
        ({"active": None, "status": "candidate"}, {"active": b1, "status": "active"}),
        ({"active": b1, "status": None}, {"active": b1, "status": "candidate"}),
        ({"active": b1, "status": "candidate"}, {"active": b2, "status": "active"}),
        ({"active": b2, "status": "candidate"}, {"active": b1, "status": "active"}),
        ({"active": b1, "status": "candidate"}, {"active": b1, "status": "retired"}),
    ]
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert entries[-1].time == env.clock.now


def test_rollback_without_history_is_refused(env: Env) -> None:
    with pytest.raises(FailedPrecondition, match=f"no previous active baseline for {MODEL}/{ENV}"):
        env.manager.rollback(MODEL, ENV, "", "a")
    b1 = env.freeze("w1")
    env.manager.promote(b1, "", "a")
    with pytest.raises(FailedPrecondition, match="no previous active baseline"):
        env.manager.rollback(MODEL, ENV, "", "a")


def test_rollbacks_walk_back_and_skip_retired_baselines(env: Env) -> None:
    b1, b2, b3 = env.freeze("w1"), env.freeze("w2"), env.freeze("w3")
    for b in (b1, b2, b3):
        env.manager.promote(b, "", "a")
    env.manager.retire(b2, "never again", "a")
    assert env.manager.rollback(MODEL, ENV, "", "a").id == b1
    with pytest.raises(FailedPrecondition):
        env.manager.rollback(MODEL, ENV, "", "a")


def test_retiring_the_active_baseline_is_refused(env: Env) -> None:
    b1 = env.freeze("w1")
    env.manager.promote(b1, "", "a")
    with pytest.raises(FailedPrecondition, match="promote another baseline or roll back first"):
        env.manager.retire(b1, "", "a")
    assert env.manager.get(b1).status == Status.ACTIVE


def test_a_retired_baseline_cannot_be_promoted(env: Env) -> None:
    b1 = env.freeze("w1")
    env.manager.retire(b1, "", "a")
    with pytest.raises(FailedPrecondition, match="retired"):
        env.manager.promote(b1, "", "a")
    # Retiring it again changes nothing and writes no audit entry.
    before = len(env.manager.audit())
    assert env.manager.retire(b1, "", "a").status == Status.RETIRED
    assert len(env.manager.audit()) == before


def test_promoting_the_active_baseline_is_a_no_op(env: Env) -> None:
    b1 = env.freeze("w1")
    env.manager.promote(b1, "", "a")
    entries = len(env.manager.audit())
    assert env.manager.promote(b1, "again", "a").status == Status.ACTIVE
    assert len(env.manager.audit()) == entries
    # ... and does not push b1 onto its own history.
    with pytest.raises(FailedPrecondition):
        env.manager.rollback(MODEL, ENV, "", "a")


def test_unknown_ids_are_not_found(env: Env) -> None:
    for call in (
        lambda: env.manager.get("b-000000000000"),
        lambda: env.manager.view("b-000000000000"),
        lambda: env.manager.promote("b-000000000000", "", "a"),
        lambda: env.manager.retire("b-000000000000", "", "a"),
    ):
        with pytest.raises(NotFound):
            call()


@pytest.mark.parametrize("levels", [(0.5, 1.5), (-0.1,), (float("nan"),)])
def test_quantile_levels_outside_0_1_are_refused(env: Env, levels: tuple[float, ...]) -> None:
    b1 = env.freeze("w1")
    with pytest.raises(InvalidInput, match=r"quantile levels must be in \[0, 1\]"):
        env.manager.view(b1, quantiles=levels)
    with pytest.raises(InvalidInput, match=r"quantile levels must be in \[0, 1\]"):
        env.manager.window_view(MODEL, ENV, quantiles=levels)


def test_window_view_reports_live_data_and_empty_windows(env: Env) -> None:
    values = np.arange(1.0, 1001.0)
    ingest_values(env.windows, values, at=T0 - 30)
    view = env.manager.window_view(MODEL, ENV, quantiles=(0.0, 0.5, 1.0))
    ((sid, summary),) = view.series
    assert sid.signal == "latency_seconds" and summary.count == 1000
    assert dict(summary.quantiles)[0.0] == 1.0 and dict(summary.quantiles)[1.0] == 1000.0
    assert view.versions == ("v1",)
    assert view.writers == (env.windows.writer,)
    assert view.end == T0
    empty = env.manager.window_view(MODEL, ENV, start=T0 - 7200, end=T0 - 3600)
    assert empty.series == ()


class _RacingStore(SQLiteStore):
    """A real SQLite store where someone else promotes ``rival`` right before
    this manager's first compare-and-set, so that first attempt loses the race."""

    rival: str = ""
    rival_manager: BaselineManager | None = None
    raced = threading.Event()

    def cas_pointer(self, *args: Any, **kwargs: Any) -> Any:
        if self.rival and not self.raced.is_set():
            self.raced.set()
            assert self.rival_manager is not None
            self.rival_manager.promote(self.rival, "rival", "mallory")
        return super().cas_pointer(*args, **kwargs)


def test_promote_retries_when_it_loses_a_race() -> None:
    clock = FakeClock()
    settings = Settings.resolve({"store": ":memory:", "instance": "t"}, env={})
    store = _RacingStore(":memory:", clock=clock)
    store.raced = threading.Event()
    windows = Windows(settings, store, clock=clock)
    manager = BaselineManager(store, windows, clock=clock)
    ingest_values(windows, np.ones(10), at=T0 - 1)
    b1 = manager.freeze(MODEL, ENV, "w1", "", "a", start=0, end=0)
    b2 = manager.freeze(MODEL, ENV, "w2", "", "a", start=0, end=0)
    store.rival, store.rival_manager = b1.id, BaselineManager(store, windows, clock=clock)
    try:
        assert manager.promote(b2.id, "mine", "alice").status == Status.ACTIVE
        assert store.raced.is_set()
        entries = manager.audit(MODEL, ENV)
        # The rival's promote landed first; ours was recomputed on top of it.
        assert [(e.action, e.target, e.actor) for e in entries[-2:]] == [
            ("promote", b1.id, "mallory"),
            ("promote", b2.id, "alice"),
        ]
        assert dict(entries[-1].before) == {"active": b1.id, "status": "candidate"}
        assert manager.rollback(MODEL, ENV, "", "a").id == b1.id
    finally:
        store.close()
