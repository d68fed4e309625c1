"""Baseline export, import and diff on real SQLite and real Redis stores."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import numpy as np
import pytest
from baselined.v1 import baselined_pb2 as pb

from sidecar.errors import AlreadyExists, InvalidInput, NotFound
from sidecar.guardrails import Guardrails, Tier
from sidecar.records import AuditDraft, BaselineRecord, Kind, SeriesId, Status
from sidecar.series import CategoricalState, NumericState, decode_state
from sidecar.stores import RedisStore, SQLiteStore
from sidecar.stores.base import Store
from sidecar.transfer import (
    FORMAT,
    FORMAT_VERSION,
    diff_baselines,
    diff_to_pb,
    export_baseline,
    import_baseline,
)

T0 = 1_700_000_000.0
MODEL = "fraud"
LATENCY = SeriesId("*", "*", Kind.LATENCY, "latency_seconds")
AMOUNT = SeriesId("*", "*", Kind.FEATURE, "amount")
AMOUNT_EU = SeriesId("*", "region=eu", Kind.FEATURE, "amount")
COLOUR = SeriesId("*", "*", Kind.FEATURE, "colour")
GUARDRAILS = Guardrails.load(None)


def clock() -> float:
    return T0 + 3600.0


def _states(seed: int, latency_scale: float = 1.0) -> dict[SeriesId, bytes]:
    """Exact latency, a digest-mode feature (small exact limit), a slice, a categorical."""
    rng = np.random.default_rng(seed)
    latency = NumericState()
    latency.add(rng.lognormal(-3.0, 0.4, 4000) * latency_scale)
    amount = NumericState(exact_limit=500)
    amount.add(np.append(rng.normal(100.0, 15.0, 3000), [np.nan] * 30))
    eu = NumericState()
    eu.add(rng.normal(90.0, 10.0, 800))
    colour = CategoricalState()
    colour.add([str(c) for c in rng.choice(["red", "green", "blue"], size=2000, p=[0.5, 0.3, 0.2])])
    return {
        LATENCY: latency.encode(),
        AMOUNT: amount.encode(),
        AMOUNT_EU: eu.encode(),
        COLOUR: colour.encode(),
    }


def put_baseline(
    store: Store,
    baseline_id: str,
    series: dict[SeriesId, bytes],
    *,
    name: str = "2024-w1",
    environment: str = "staging",
) -> BaselineRecord:
    record = BaselineRecord(
        id=baseline_id,
        model=MODEL,
        environment=environment,
        name=name,
        reason="weekly",
        created_by="alice",
        created_at=T0,
        window_start=T0 - 86400.0,
        window_end=T0,
        versions=("v1", "v2"),
        fingerprint={"python": "3.11.7", "lib.numpy": "2.4.0"},
        fingerprint_hash="fp-1",
        series_count=len(series),
        record_count=4000,
        labels={"team": "risk"},
    )
    audit = AuditDraft(T0, "alice", "freeze", MODEL, environment, baseline_id, "weekly")
    store.create_baseline(record, {sid.encode(): blob for sid, blob in series.items()}, audit)
    return record


@pytest.fixture
def sqlite(tmp_path: object) -> Iterator[SQLiteStore]:
    store = SQLiteStore(":memory:")
    yield store
    store.close()


@pytest.fixture
def redis_store(redis_url: str, redis_prefix: str) -> Iterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    store.close()


def _reseal(document: dict[str, object]) -> bytes:
    """Recompute the content hash the way the format defines it (for edits that
    must be caught by a check other than the hash)."""
    import hashlib

    body = {k: v for k, v in document.items() if k != "content_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    document["content_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    return json.dumps(document).encode()


# -- export --------------------------------------------------------------------------


def test_export_is_self_describing_with_provenance_states_and_summaries(
    sqlite: SQLiteStore,
) -> None:
    series = _states(1)
    put_baseline(sqlite, "b-orig", series)
    content = export_baseline(sqlite, "b-orig", actor="bob", clock=clock)
    doc = json.loads(content)
    assert doc["format"] == FORMAT == "baselined.baseline"
    assert doc["format_version"] == FORMAT_VERSION == 1
    assert (doc["exported_by"], doc["exported_at"]) == ("bob", T0 + 3600.0)
    assert len(doc["content_sha256"]) == 64
    assert doc["baseline"]["id"] == "b-orig"
    assert doc["baseline"]["fingerprint"] == {"python": "3.11.7", "lib.numpy": "2.4.0"}
    assert doc["baseline"]["versions"] == ["v1", "v2"]
    assert doc["baseline"]["labels"] == {"team": "risk"}
    by_signal = {(s["slice"], s["signal"]): s for s in doc["series"]}
    assert len(by_signal) == 4
    # The states are the stored bytes, verbatim.
    for sid, blob in series.items():
        assert base64.b64decode(by_signal[(sid.slice, sid.signal)]["state"]) == blob
    # The human summary of an exact series is numpy's quantile.
    latency = decode_state(series[LATENCY])
    assert isinstance(latency, NumericState)
    values = latency.summary([0.5]).quantiles[0][1]
    assert by_signal[("*", "latency_seconds")]["summary"]["quantiles"]["0.5"] == values
    assert by_signal[("*", "colour")]["summary"]["top_values"][0][0] == "red"


def test_export_of_an_unknown_baseline_is_not_found(sqlite: SQLiteStore) -> None:
    with pytest.raises(NotFound):
        export_baseline(sqlite, "b-nope")


# -- import --------------------------------------------------------------------------


def test_import_into_redis_keeps_states_and_provenance_as_a_new_candidate(
    sqlite: SQLiteStore, redis_store: RedisStore
) -> None:
    series = _states(2)
    put_baseline(sqlite, "b-orig", series)
    content = export_baseline(sqlite, "b-orig", actor="alice", clock=clock)

    record = import_baseline(
        redis_store,
        content,
        environment="production",
        reason="promote staging's baseline",
        actor="carol",
        clock=lambda: T0 + 7200.0,
        new_id=lambda: "b-imported",
    )
    assert record.id == "b-imported"
    stored = redis_store.get_baseline("b-imported")
    assert stored == record
    assert (stored.model, stored.environment, stored.name) == (MODEL, "production", "2024-w1")
    assert stored.status == Status.CANDIDATE and stored.parent_id == ""
    assert (stored.created_by, stored.created_at) == ("carol", T0 + 7200.0)
    assert stored.reason == "promote staging's baseline"
    assert (stored.window_start, stored.window_end) == (T0 - 86400.0, T0)
    assert stored.versions == ("v1", "v2") and stored.fingerprint_hash == "fp-1"
    assert (stored.series_count, stored.record_count) == (4, 4000)
    assert stored.labels == {
        "team": "risk",
        "imported_from": "b-orig",
        "imported_from_environment": "staging",
        "imported_from_created_by": "alice",
        "imported_from_created_at": repr(T0),
    }
    assert redis_store.get_baseline_series("b-imported") == {
        sid.encode(): blob for sid, blob in series.items()
    }
    entry = redis_store.list_audit(MODEL, "production")[-1]
    assert (entry.action, entry.actor, entry.target) == ("import", "carol", "b-imported")
    assert entry.reason == "promote staging's baseline"
    assert entry.after["imported_from"] == "b-orig"
    assert entry.after["content_sha256"] == json.loads(content)["content_sha256"]


def test_reindented_file_still_imports(sqlite: SQLiteStore) -> None:
    put_baseline(sqlite, "b-orig", _states(3))
    doc = json.loads(export_baseline(sqlite, "b-orig"))
    compact = json.dumps(doc, separators=(",", ":")).encode()
    record = import_baseline(sqlite, compact, name="copy")
    assert sqlite.get_baseline(record.id).name == "copy"


def _refused(store: Store, content: bytes, match: str) -> None:
    baselines = store.list_baselines()
    audit = store.list_audit()
    with pytest.raises(InvalidInput, match=match):
        import_baseline(store, content, environment="production", name="other")
    assert store.list_baselines() == baselines  # nothing stored
    assert store.list_audit() == audit


def test_one_changed_byte_of_a_state_is_refused_and_nothing_is_stored(
    sqlite: SQLiteStore,
) -> None:
    put_baseline(sqlite, "b-orig", _states(4))
    content = export_baseline(sqlite, "b-orig")
    doc = json.loads(content)
    state = bytearray(base64.b64decode(doc["series"][1]["state"]))
    state[60] ^= 0x01
    doc["series"][1]["state"] = base64.b64encode(bytes(state)).decode()
    _refused(sqlite, json.dumps(doc).encode(), "content hash does not match")


def test_an_edited_field_is_refused(sqlite: SQLiteStore) -> None:
    put_baseline(sqlite, "b-orig", _states(5))
    content = export_baseline(sqlite, "b-orig")
    edited = content.replace(b'"record_count": 4000', b'"record_count": 4001')
    assert edited != content
    _refused(sqlite, edited, "content hash does not match")


def test_unknown_format_version_and_foreign_files_are_refused(sqlite: SQLiteStore) -> None:
    put_baseline(sqlite, "b-orig", _states(6))
    doc = json.loads(export_baseline(sqlite, "b-orig"))
    doc["format_version"] = 2
    _refused(sqlite, _reseal(doc), "format version 2 is not supported")
    _refused(sqlite, b'{"format": "x"}', "not a baseline file")
    _refused(sqlite, b"", "empty")
    _refused(sqlite, b"\xff\xfe", "not UTF-8")


def test_malformed_json_is_refused_naming_where(sqlite: SQLiteStore) -> None:
    put_baseline(sqlite, "b-orig", _states(7))
    content = export_baseline(sqlite, "b-orig")
    _refused(sqlite, content[: len(content) // 2], r"not valid JSON: .* at line \d+ column \d+")


def test_resealed_file_with_a_broken_state_is_refused_naming_the_series(
    sqlite: SQLiteStore,
) -> None:
    put_baseline(sqlite, "b-orig", _states(8))
    doc = json.loads(export_baseline(sqlite, "b-orig"))
    doc["series"][0]["state"] = base64.b64encode(b"Zjunk").decode()
    _refused(sqlite, _reseal(doc), r"series\[0\] \(feature:amount\) state cannot be decoded")
    doc = json.loads(export_baseline(sqlite, "b-orig"))
    doc["baseline"]["series_count"] = 9
    _refused(sqlite, _reseal(doc), "series_count is 9 but the file holds 4 series")


def test_import_under_a_taken_name_is_already_exists(sqlite: SQLiteStore) -> None:
    put_baseline(sqlite, "b-orig", _states(9))
    content = export_baseline(sqlite, "b-orig")
    before = sqlite.list_baselines()
    with pytest.raises(AlreadyExists, match="--name"):
        import_baseline(sqlite, content)  # same environment and name as the original
    assert sqlite.list_baselines() == before
    record = import_baseline(sqlite, content, name="2024-w1-copy")
    assert record.id != "b-orig" and record.environment == "staging"


# -- diff ----------------------------------------------------------------------------


def test_diff_against_its_own_reimport_shows_no_differences(
    sqlite: SQLiteStore, redis_store: RedisStore
) -> None:
    put_baseline(sqlite, "b-orig", _states(10))
    imported = import_baseline(redis_store, export_baseline(sqlite, "b-orig"), name="copy")
    # Back into the first store, then diff within it.
    back = import_baseline(sqlite, export_baseline(redis_store, imported.id), name="round-trip")
    result = diff_baselines(sqlite, "b-orig", back.id, GUARDRAILS, [0.5, 0.99])
    assert not result.differs and result.tier is None
    assert result.only_in_a == () and result.only_in_b == ()
    assert len(result.findings) == 4
    for finding in result.findings:
        assert finding.tier is None and finding.fired == ()
        assert finding.baseline_count == finding.live_count > 0
        assert finding.effects, finding.series
        assert all(e.estimate == 0.0 for e in finding.effects.values()), finding.series
    for label, levels in result.quantiles.items():
        assert all(a == b for _, a, b in levels), label


def test_diff_measures_a_shift_like_a_live_comparison(sqlite: SQLiteStore) -> None:
    put_baseline(sqlite, "b-a", _states(11))
    put_baseline(sqlite, "b-b", _states(11, latency_scale=1.5), name="slow")
    result = diff_baselines(sqlite, "b-a", "b-b", GUARDRAILS, [0.5])
    by_signal = {f.series.signal: f for f in result.findings if f.series.slice == "*"}
    latency = by_signal["latency_seconds"]
    values = np.random.default_rng(11).lognormal(-3.0, 0.4, 4000)  # _states' first draw
    exact_a = float(np.quantile(values, 0.5))
    exact_b = float(np.quantile(values * 1.5, 0.5))
    p50 = latency.effects["p50_rel"]
    assert p50.estimate == pytest.approx(exact_b / exact_a - 1.0, rel=1e-12)
    assert p50.lower > 0.3  # a 50% slow-down is clear from 4,000 values each
    assert latency.tier == Tier.SEVERE and result.tier == Tier.SEVERE and result.differs
    # Every effect, not only the guarded ones; the untouched series stay clear.
    assert set(latency.effects) >= {"ks", "w1_iqr", "psi", "mean_rel", "precision_bits"}
    assert by_signal["amount"].tier is None and by_signal["colour"].tier is None
    assert result.quantiles["latency:latency_seconds"][0] == (0.5, exact_a, exact_b)

    message = diff_to_pb(result)
    assert (message.a, message.b) == ("b-a", "b-b")
    shown = {f.signal: f for f in message.findings if f.slice == "*"}
    assert shown["latency_seconds"].severity == pb.SEVERITY_SEVERE
    assert shown["latency_seconds"].baseline_count == 4000
    assert shown["amount"].severity == pb.SEVERITY_UNSPECIFIED


def test_diff_lists_series_only_on_one_side_and_type_changes(sqlite: SQLiteStore) -> None:
    states = _states(12)
    put_baseline(sqlite, "b-a", states)
    rng = np.random.default_rng(12)
    colour_as_number = NumericState()
    colour_as_number.add(rng.normal(size=100))
    extra = NumericState()
    extra.add(rng.normal(size=100))
    b_states = {
        LATENCY: states[LATENCY],
        AMOUNT: states[AMOUNT],
        COLOUR: colour_as_number.encode(),
        SeriesId("*", "*", Kind.OUTPUT, "score"): extra.encode(),
    }
    put_baseline(sqlite, "b-b", b_states, name="other")
    result = diff_baselines(sqlite, "b-a", "b-b", GUARDRAILS)
    assert result.only_in_a == ("feature:colour (categorical)", "feature:amount[region=eu]")
    assert result.only_in_b == ("feature:colour (numeric)", "output:score")
    assert {f.series.signal for f in result.findings} == {"latency_seconds", "amount"}
    assert result.differs


def test_diff_matches_series_across_model_versions(sqlite: SQLiteStore) -> None:
    states = _states(13)
    put_baseline(
        sqlite, "b-a", {SeriesId("v1", "*", Kind.LATENCY, "latency_seconds"): states[LATENCY]}
    )
    put_baseline(
        sqlite,
        "b-b",
        {SeriesId("v2", "*", Kind.LATENCY, "latency_seconds"): states[LATENCY]},
        name="v2",
    )
    result = diff_baselines(sqlite, "b-a", "b-b", GUARDRAILS)
    assert [f.series.version for f in result.findings] == ["v2"]
    assert result.only_in_a == result.only_in_b == () and not result.differs


def test_diff_refuses_unknown_baselines_and_bad_levels(sqlite: SQLiteStore) -> None:
    put_baseline(sqlite, "b-a", _states(14))
    with pytest.raises(NotFound):
        diff_baselines(sqlite, "b-a", "b-nope", GUARDRAILS)
    with pytest.raises(InvalidInput, match="quantile levels"):
        diff_baselines(sqlite, "b-a", "b-a", GUARDRAILS, [1.5])
