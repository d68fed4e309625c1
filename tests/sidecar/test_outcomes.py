"""Outcomes: keeping predictions, joining labels, bad input counted with reasons,
bounds, and the RPC / CLI / middleware paths (real SQLite, real Redis, real gRPC)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

import middleware
from middleware.outcomes import outcome_sender
from sidecar.cli import main
from sidecar.guardrails import Guardrails
from sidecar.outcomes import LABELLED, Outcome, Outcomes, quality_lane
from sidecar.settings import Settings
from sidecar.stats.quality import CalibrationState
from sidecar.stores import RedisStore, SQLiteStore
from sidecar.stores.base import Store
from sidecar.windows import Windows
from tests.sidecar.test_server import Running, settings_for

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def batch(
    ids: list[str], scores: list[float], *, region: str = "eu", t: float = T0
) -> pb.SampleBatch:
    b = pb.SampleBatch(
        model="fraud",
        version="v1",
        environment="prod",
        timestamps=[t] * len(ids),
        request_ids=ids,
    )
    b.numeric.add(name="score", kind=pb.SIGNAL_KIND_OUTPUT, values=scores)
    b.numeric.add(name="amount", kind=pb.SIGNAL_KIND_FEATURE, values=[1.0] * len(ids))
    b.slices.add(name="region", values=[region] * len(ids))
    return b


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "sqlite":
        made: Store = SQLiteStore(":memory:", clock=CLOCK)
    else:
        made = RedisStore(
            request.getfixturevalue("redis_url"),
            prefix=request.getfixturevalue("redis_prefix"),
            clock=CLOCK,
        )
    yield made
    made.close()


CLOCK = Clock()


def engine(store: Store, guardrails: Guardrails | None = None, **settings: object) -> Outcomes:
    CLOCK.now = T0
    s = Settings.resolve({"instance": "t", **settings}, env={})
    windows = Windows(s, store, clock=CLOCK)
    outcomes = Outcomes(s, store, guardrails or Guardrails.load(None), windows=windows, clock=CLOCK)
    windows.on_keep = outcomes.keep
    return outcomes


def test_join_counts_every_outcome_with_reasons(store: Store) -> None:
    outcomes = engine(store)
    assert outcomes.windows is not None
    outcomes.windows.ingest(batch(["a", "b", "c", "bad"], [0.9, 0.2, 0.7, 1.5]))
    CLOCK.now += 60
    counts = outcomes.record(
        [
            Outcome("fraud", "a", 1),
            Outcome("fraud", "b", 1),
            Outcome("fraud", "a", 0),  # duplicate: the first wins
            Outcome("fraud", "c", "maybe"),  # not a class of a binary classifier
            Outcome("fraud", "bad", 1),  # kept score outside [0, 1]
            Outcome("fraud", "nope", 1),  # never sampled
            Outcome("fraud", "", 1),  # malformed
            Outcome("fraud", "c", 2.5),  # not a class
        ]
    )
    assert (counts.joined, counts.duplicate, counts.unknown, counts.invalid) == (2, 1, 1, 4)
    reasons = " | ".join(counts.reasons)
    assert "outside [0, 1]" in reasons and "neither class" in reasons
    assert "without a request id" in reasons and "is not a class" in reasons
    outcomes.flush()
    data = outcomes.read("fraud", "prod", T0 - 3600, CLOCK.now + 1)
    labelled = data.slices(LABELLED)
    # only the two joined outcomes changed anything: a correct (0.9 -> 1), a wrong (0.2 -> 1)
    assert labelled["*"].count == 2 and labelled["region=eu"].count == 2
    assert labelled["*"].error_rate() == pytest.approx(0.5)
    # "c" was not claimed by its invalid outcomes: a valid one still joins
    assert outcomes.record([Outcome("fraud", "c", 0)]).joined == 1


def test_duplicates_all_counts_every_outcome(store: Store) -> None:
    guardrails = Guardrails.from_mapping({"models": {"fraud": {"outcomes": {"duplicates": "all"}}}})
    outcomes = engine(store, guardrails)
    assert outcomes.windows is not None
    outcomes.windows.ingest(batch(["a"], [0.9]))
    counts = outcomes.record([Outcome("fraud", "a", 1), Outcome("fraud", "a", 0)])
    assert (counts.joined, counts.duplicate) == (2, 0)


def test_class_names_and_regression() -> None:
    guardrails = Guardrails.from_mapping(
        {
            "models": {
                "fraud": {"outcomes": {"classes": ["legit", "fraud"]}},
                "price": {"outcomes": {"task": "regression", "predicted": "score"}},
            }
        }
    )
    store = SQLiteStore(":memory:", clock=CLOCK)
    outcomes = engine(store, guardrails)
    assert outcomes.windows is not None
    outcomes.windows.ingest(batch(["a", "b"], [0.9, 0.1]))
    price = batch(["p1", "p2"], [10.0, 20.0])
    price.model = "price"
    outcomes.windows.ingest(price)
    counts = outcomes.record(
        [
            Outcome("fraud", "a", "fraud"),
            Outcome("fraud", "b", "fraud"),
            Outcome("price", "p1", 12.0),
            Outcome("price", "p2", "cheap"),  # wrong type for a regression
        ]
    )
    assert (counts.joined, counts.invalid) == (3, 1)
    assert "not a number" in next(iter(counts.reasons))
    outcomes.windows.flush()
    window = outcomes.windows.read("price", "prod", T0 - 60, T0 + 3600)
    residual = [
        s for sid, s in window.series.items() if sid.signal == "residual" and sid.slice == "*"
    ]
    assert residual and residual[0].summary([0.5]).quantiles[0][1] == pytest.approx(2.0)
    labels = [s for sid, s in window.series.items() if sid.signal == "label" and sid.slice == "*"]
    assert labels
    store.close()


def test_expired_and_memory_bound() -> None:
    store = SQLiteStore(":memory:", clock=CLOCK)
    outcomes = engine(store, outcome_horizon_seconds=100, max_pending_predictions=3)
    assert outcomes.windows is not None
    outcomes.windows.ingest(batch(["a", "b", "c", "d", "e"], [0.9] * 5))
    assert outcomes.stats()["predictions_dropped_memory"] == 2
    CLOCK.now += 110  # kept a quarter past the horizon: told apart from never sampled
    counts = outcomes.record([Outcome("fraud", "a", 1), Outcome("fraud", "e", 1)])
    assert (counts.expired, counts.unknown) == (1, 1)
    store.close()


@pytest.mark.redis
def test_redis_store_size_bound_counts_evictions(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, clock=CLOCK)
    outcomes = engine(store, max_kept_predictions=4)
    assert outcomes.windows is not None
    outcomes.windows.ingest(batch([f"r{i}" for i in range(10)], [0.9] * 10))
    outcomes.flush()
    assert outcomes.stats()["predictions_evicted"] == 6
    counts = outcomes.record([Outcome("fraud", f"r{i}", 1) for i in range(10)])
    assert counts.joined == 4 and counts.unknown == 6
    store.close()


@pytest.fixture
def served() -> Iterator[Running]:
    running = Running(settings_for())
    yield running
    running.stop()


def test_record_outcomes_rpc_get_quality_and_cli(
    served: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f"r{i}" for i in range(20)]
    now = time.time()
    reply = served.ingest.IngestBatch(batch(ids, [0.9] * 10 + [0.2] * 10, t=now), timeout=10)
    assert reply.records_accepted == 20
    stub = pb_grpc.OutcomesStub(served.channel)
    outcomes = [
        pb.OutcomeRecord(model="fraud", request_id=f"r{i}", class_index=1) for i in range(5)
    ]
    outcomes.append(pb.OutcomeRecord(model="fraud", request_id="r5", class_name="nonsense"))
    outcomes.append(pb.OutcomeRecord(model="fraud", request_id="zz", class_index=1))
    answer = stub.RecordOutcomes(iter([pb.OutcomeBatch(outcomes=outcomes)]), timeout=10)
    assert (answer.joined, answer.invalid, answer.unknown) == (5, 1, 1)
    assert answer.reasons and "neither class" in answer.reasons[0].reason

    view = stub.GetQuality(pb.GetQualityRequest(model="fraud", environment="prod"), timeout=10)
    everything = next(s for s in view.slices if s.slice == "*")
    assert everything.count == 5 and everything.error_rate == 0.0
    assert everything.cbpe.count == 20  # the estimate covers every sampled prediction
    assert any(b.count for b in everything.reliability)

    target = f"127.0.0.1:{served.sidecar.port}"
    csv_file = tmp_path / "labels.csv"
    rows = ["request_id,label,model"] + [f"r{i},0,fraud" for i in range(10, 15)]
    rows += ["r15,,fraud", "r16,1"]  # no label; no model (and no --model)
    csv_file.write_text("\n".join(rows) + "\n")
    assert main(["outcomes", "load", str(csv_file), "--target", target]) == 0
    out = capsys.readouterr()
    assert "7 rows: 5 joined" in out.out and "2 invalid" in out.out
    assert "line 7: no label" in out.err

    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(
        json.dumps({"kind": "outcome", "model": "fraud", "request_id": "r16", "label": 0})
        + "\n{oops\n"
    )
    assert main(["outcomes", "load", str(jsonl), "--target", target, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["joined"] == "1" or printed["joined"] == 1

    assert main(["quality", "show", "--model", "fraud", "-e", "prod", "--target", target]) == 0
    shown = capsys.readouterr().out
    assert "region=eu" in shown and "no active baseline" in shown


def test_middleware_record_outcome_sends_sampled_only(served: Running) -> None:
    target = f"127.0.0.1:{served.sidecar.port}"
    now = time.time()
    served.ingest.IngestBatch(batch(["m1", "m2"], [0.8, 0.3], t=now), timeout=10)
    shadow = middleware.Shadow(model="fraud", target=target, sample_rate=1.0, atexit=False)
    assert middleware.record_outcome(shadow, "m1", 1)
    assert middleware.record_outcome(shadow, "m2", True)
    off = middleware.Shadow(model="fraud", target=target, sample_rate=0.0, atexit=False)
    assert not middleware.record_outcome(off, "m1", 1)
    sender = outcome_sender(shadow)
    sender.close(timeout=10)
    stats = sender.stats()
    assert (stats.sent, stats.joined) == (2, 2)
    assert outcome_sender(off).stats().not_sampled == 1
    shadow.close(0.1)
    off.close(0.1)


def test_hidden_quality_lanes_are_not_listed_as_environments(store: Store) -> None:
    outcomes = engine(store)
    assert outcomes.windows is not None
    outcomes.windows.ingest(batch(["a", "b"], [0.9, 0.2]))
    CLOCK.now += 60
    assert outcomes.record([Outcome("fraud", "a", 1), Outcome("fraud", "b", 0)]).joined == 2
    outcomes.flush()
    outcomes.windows.flush()
    # the calibration states are there, in their hidden lane ...
    hidden = store.read_partials("fraud", quality_lane("prod"), 0, int(CLOCK.now) + 3600)
    assert hidden and any(k.endswith(LABELLED) for p in hidden for k in p.series)
    # ... but nothing lists that lane as an environment
    assert store.list_windows() == [("fraud", "prod")]


def test_freeze_over_grpc_freezes_the_quality_side(served: Running) -> None:
    store = served.sidecar.store
    now = time.time()
    ids = [f"q{i}" for i in range(10)]
    served.ingest.IngestBatch(batch(ids, [0.9] * 5 + [0.3] * 5, t=now - 120), timeout=10)
    stub = pb_grpc.OutcomesStub(served.channel)
    labels = [pb.OutcomeRecord(model="fraud", request_id=i, class_index=1) for i in ids]
    answer = stub.RecordOutcomes(iter([pb.OutcomeBatch(outcomes=labels)]), timeout=10)
    assert answer.joined == 10
    frozen = served.baselines.FreezeBaseline(
        pb.FreezeBaselineRequest(
            model="fraud", environment="prod", name="q", reason="test", actor="t", end=now + 60
        ),
        timeout=10,
    )
    # Not promoted, never compared: the quality side was stored by the freeze itself.
    lane = "prod\x1fquality-baseline"
    stored = [p for p in store.read_partials("fraud", lane, 0, 1) if p.writer == frozen.id]
    assert len(stored) == 1
    key = f"*\x1f{LABELLED}"
    state = CalibrationState.decode(stored[0].series[key])
    assert state.count == 10 and state.error_rate() == pytest.approx(0.5)
    # one audited action: the freeze (no entry of its own for the quality side)
    entries = [e for e in store.list_audit("fraud", "prod", 100) if e.target == frozen.id]
    assert [e.action for e in entries] == ["freeze"]
