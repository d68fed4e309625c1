"""Guardrails: defaults per signal kind, TOML overrides, and refusals that name the field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sidecar.errors import ConfigError
from sidecar.guardrails import Guardrail, Guardrails, Seasonality, Tier
from sidecar.records import Kind


def rails(g: Guardrails, kind: Kind, signal: str = "x", model: str = "m") -> dict[str, Guardrail]:
    return {r.effect: r for r in g.for_series(model, kind, signal)}


def test_defaults_follow_the_issue() -> None:
    g = Guardrails.load(None)
    assert (g.alpha, g.consecutive, g.resolve_after, g.cooldown) == (0.01, 2, 300.0, 600.0)
    assert (g.max_epoch_age, g.check_interval, g.playbook_url("m")) == (86400.0, 10.0, "")
    assert g.seasonality("m") is None

    latency = rails(g, Kind.LATENCY)
    # The latency p99 takes a larger share of alpha (weighted Bonferroni, weight 4).
    assert latency["p99_rel"] == Guardrail("p99_rel", "up", 0.05, 0.10, 0.25, 4.0)
    assert latency["p50_rel"].minor == latency["p90_rel"].minor == 0.05
    assert latency["missing_rate"] == Guardrail("missing_rate", "up", 1.0, 5.0, 20.0)
    feature = rails(g, Kind.FEATURE)
    assert feature["ks"] == Guardrail("ks", "up", 0.02, 0.05, 0.10)
    assert feature["new_category_share"] == Guardrail("new_category_share", "up", 0.005, 0.02, 0.10)
    assert feature["tvd"] == Guardrail("tvd", "up", 0.05, 0.10, 0.20)
    assert feature["out_of_range_rate"] == Guardrail("out_of_range_rate", "up", 1.0, 5.0, 20.0)
    output = rails(g, Kind.OUTPUT)
    assert output["mean_abs"] == Guardrail("mean_abs", "both", 0.01, 0.03, 0.10)
    assert output["precision_bits"] == Guardrail("precision_bits", "down", 4.0, 8.0, 16.0)
    assert rails(g, Kind.ERROR)["mean_abs"] == Guardrail("mean_abs", "up", 0.01, 0.05, 0.20)
    assert rails(g, Kind.RESOURCE)["p99_rel"] == Guardrail("p99_rel", "up", 0.10, 0.25, 0.50)
    # Latency does not alarm on a faster service, nor on KS alone.
    assert "ks" not in latency


@pytest.mark.parametrize(
    ("direction", "lower", "upper", "tier"),
    [
        ("up", 0.06, 0.30, Tier.MINOR),  # only the lower bound counts going up
        ("up", 0.10, 0.12, Tier.MODERATE),  # exactly on the guardrail clears it
        ("up", 0.26, 0.40, Tier.SEVERE),
        ("up", 0.04, 0.50, None),  # a huge estimate with a wide interval is not enough
        ("up", -0.40, -0.30, None),  # the wrong direction
        ("down", -0.40, -0.30, Tier.SEVERE),
        ("down", 0.30, 0.40, None),
        ("both", -0.12, -0.11, Tier.MODERATE),
        ("both", 0.11, 0.12, Tier.MODERATE),
        ("both", -0.01, 0.30, None),  # straddles zero
        ("up", math.nan, math.nan, None),  # effects without a bound never fire
    ],
)
def test_a_tier_needs_the_whole_interval_beyond_its_guardrail(
    direction: str, lower: float, upper: float, tier: Tier | None
) -> None:
    assert Guardrail("p99_rel", direction, 0.05, 0.10, 0.25).tier(lower, upper) == tier


def test_toml_overrides_per_kind_model_and_signal(tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(
        """
alpha = 0.001
consecutive = 3
resolve_after = 120
cooldown = 60
max_epoch_age = 3600
playbook_url = "https://runbooks.example/baselined"

[guardrails.latency.p99_rel]
minor = 0.08            # the rest stays default

[guardrails.feature.ks]
enabled = false

[guardrails.feature.psi]
direction = "up"
minor = 0.1
moderate = 0.2
severe = 0.3

[models.fraud]
playbook_url = "https://runbooks.example/fraud"
seasonality = {period = 86400, phases = 24}

[models.fraud.signals.amount.ks]
minor = 0.01
moderate = 0.02
severe = 0.04

[models.fraud.signals.score.mean_abs]
direction = "down"
"""
    )
    g = Guardrails.load(path)
    assert (g.alpha, g.consecutive, g.resolve_after, g.cooldown, g.max_epoch_age) == (
        0.001,
        3,
        120.0,
        60.0,
        3600.0,
    )
    # "the rest stays default", the weight included
    assert rails(g, Kind.LATENCY)["p99_rel"] == Guardrail("p99_rel", "up", 0.08, 0.10, 0.25, 4.0)
    feature = rails(g, Kind.FEATURE)
    assert "ks" not in feature
    assert feature["psi"] == Guardrail("psi", "up", 0.1, 0.2, 0.3)
    # Per-signal overrides apply to that model's signal only (and revive a disabled effect).
    assert rails(g, Kind.FEATURE, "amount", "fraud")["ks"] == Guardrail(
        "ks", "up", 0.01, 0.02, 0.04
    )
    assert "ks" not in rails(g, Kind.FEATURE, "amount", "other")
    assert rails(g, Kind.OUTPUT, "score", "fraud")["mean_abs"].direction == "down"
    assert rails(g, Kind.OUTPUT, "score", "other")["mean_abs"].direction == "both"
    assert g.playbook_url("fraud") == "https://runbooks.example/fraud"
    assert g.playbook_url("other") == "https://runbooks.example/baselined"
    assert g.seasonality("fraud") == Seasonality(86400.0, 24)
    assert g.seasonality("fraud").phase(86400 * 3 + 5 * 3600 + 59) == 5  # type: ignore[union-attr]


def test_flag_values_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text("alpha = 0.05\ncheck_interval = 30\n")
    assert (Guardrails.load(path).alpha, Guardrails.load(path).check_interval) == (0.05, 30.0)
    g = Guardrails.load(path, alpha=0.002, check_interval=5)
    assert (g.alpha, g.check_interval) == (0.002, 5.0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[guardrails.latencyy.p99_rel]\nminor = 0.1\n", "unknown signal kind 'latencyy'"),
        ("[guardrails.feature.kss]\nminor = 0.1\n", "unknown effect 'kss'"),
        ("[guardrails.latency.p99_rel]\nminor = -0.05\n", "'guardrails.latency.p99_rel.minor'"),
        (
            "[guardrails.latency.p99_rel]\nminor = 0.3\n",
            "'guardrails.latency.p99_rel': tiers out of order",
        ),
        (
            "[models.m.signals.amount.ks]\nmoderate = 0.5\nsevere = 0.2\n",
            "'models.m.signals.amount.ks': tiers out of order",
        ),
        (
            "[guardrails.output.mean_abs]\ndirection = 'sideways'\n",
            "'guardrails.output.mean_abs.direction'",
        ),
        ("alpha = 1.5\n", "'alpha' must be between 0 and 1"),
        ("alpha = 0\n", "'alpha' must be between 0 and 1"),
        ("alpah = 0.01\n", "unknown key 'alpah'"),
        ("[guardrails.latency.p99_rel]\nminimum = 0.1\n", "unknown key 'minimum'"),
        ("[models.m]\nplaybook = 'x'\n", "[models.m] unknown key 'playbook'"),
        (
            "[models.m]\nseasonality = {period = 86400}\n",
            "'models.m.seasonality.phases' is required",
        ),
        ("[models.m]\nseasonality = {period = -1, phases = 24}\n", "'models.m.seasonality.period'"),
        ("[guardrails.latency.ks]\nminor = 0.1\n", "'guardrails.latency.ks.direction' is required"),
        ("consecutive = 0\n", "'consecutive'"),
        ("max_epoch_age = 0\n", "'max_epoch_age'"),
        ("cooldown = 'soon'\n", "'cooldown' must be a finite number"),
        ("[guardrails]\nlatency = 3\n", "[guardrails.latency] must be a table"),
    ],
)
def test_bad_config_is_refused_naming_the_field(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Guardrails.load(path)
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_and_broken_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Guardrails.load(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("alpha = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Guardrails.load(broken)
