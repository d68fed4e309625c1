"""Guardrails: how large an effect must be, per signal kind and tier, before it matters.

A tier (minor, moderate, severe) fires for an effect when the whole confidence
interval of the signed effect lies beyond that tier's guardrail in a monitored
direction: ``lower >= g`` for ``up``, ``upper <= -g`` for ``down``, either for
``both``. Big traffic makes intervals tight; it never turns an effect smaller
than the minor guardrail into an alert.

Defaults per signal kind come from :data:`DEFAULTS`; a TOML file overrides them
globally (``[guardrails.<kind>.<effect>]``), per model (``[models.<model>]``:
``playbook_url``, ``seasonality``) and per signal
(``[models.<model>.signals.<signal>.<effect>]``). Every field is validated at
load; a ConfigError names the field.

>>> g = Guardrails.load(None)
>>> [(r.effect, r.direction, r.minor) for r in g.for_series("m", Kind.LATENCY, "lat")][:2]
[('p50_rel', 'up', 0.05), ('p90_rel', 'up', 0.05)]
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from sidecar.errors import ConfigError
from sidecar.outcome_config import OutcomeConfig
from sidecar.records import Kind
from sidecar.stats.effects import CATEGORICAL_EFFECTS, NUMERIC_EFFECTS

__all__ = [
    "DEFAULTS",
    "DIRECTIONS",
    "LATENCY_P99_WEIGHT",
    "LIVE_EXACT_LIMIT",
    "QUALITY_EFFECTS",
    "Guardrail",
    "Guardrails",
    "Seasonality",
    "Tier",
]

DIRECTIONS = ("up", "down", "both")
_NUMERIC_NAMES = frozenset(NUMERIC_EFFECTS)
_CATEGORICAL_NAMES = frozenset(CATEGORICAL_EFFECTS)
# Label-based effects of the quality series (sidecar.quality_view; issue 8).
QUALITY_EFFECTS = (
    "error_rate_shift",
    "brier_shift",
    "log_loss_shift",
    "ece_shift",
    "ece_adaptive_shift",
    "auc_drop",
    "fairness_gap_error_rate",
    "fairness_gap_ece",
    "fairness_gap_error_rate_shift",
    "fairness_gap_ece_shift",
    "estimated_error_rate_shift",
)
_QUANTILE_NAMES = frozenset(
    f"p{level}_{unit}" for level in ("50", "90", "99", "999") for unit in ("rel", "abs")
)
_EFFECTS = _NUMERIC_NAMES | _CATEGORICAL_NAMES | frozenset(QUALITY_EFFECTS)


class Tier(IntEnum):
    """Alert tiers; the numbers are ``baselined.v1.Severity``'s."""

    MINOR = 1
    MODERATE = 2
    SEVERE = 3


@dataclass(frozen=True)
class Guardrail:
    """The three tier thresholds of one effect, as magnitudes in the effect's unit.

    >>> Guardrail("ks", "up", 0.02, 0.05, 0.10).tier(lower=0.06, upper=0.09)
    <Tier.MODERATE: 2>
    """

    effect: str
    direction: str  # "up" | "down" | "both"
    minor: float
    moderate: float
    severe: float
    # Share of the family's alpha, relative to the other tests (weighted Bonferroni:
    # a test gets alpha x weight / the family's total weight).
    weight: float = 1.0

    def threshold(self, tier: Tier) -> float:
        """The guardrail of ``tier``."""
        return (self.minor, self.moderate, self.severe)[tier - 1]

    def tier(self, lower: float, upper: float) -> Tier | None:
        """The highest tier whose guardrail the interval [lower, upper] clears, or None.

        NaN bounds (an effect without a valid bound) never clear anything.
        """
        up = self.direction != "down" and lower == lower
        down = self.direction != "up" and upper == upper
        for tier, g in ((Tier.SEVERE, self.severe), (Tier.MODERATE, self.moderate)):
            if (up and lower >= g) or (down and upper <= -g):
                return tier
        if (up and lower >= self.minor) or (down and upper <= -self.minor):
            return Tier.MINOR
        return None


@dataclass(frozen=True)
class Seasonality:
    """A model's traffic cycle: ``period`` seconds cut into ``phases`` equal phases
    (86400 and 24: compare hour of day with hour of day, UTC)."""

    period: float
    phases: int

    @property
    def phase_seconds(self) -> float:
        return self.period / self.phases

    def phase(self, t: float) -> int:
        """The phase (0 .. phases-1) of unix time ``t``."""
        return int((t % self.period) // self.phase_seconds) % self.phases


def _g(
    effect: str, direction: str, minor: float, moderate: float, severe: float, weight: float = 1.0
) -> Guardrail:
    return Guardrail(effect, direction, minor, moderate, severe, weight)


#: Default alpha weight of the latency p99 test (docs/statistics.md "Alpha budget"): a
#: tail quantile needs ~100 times the values of a median to be known as well, so it
#: gets a larger share of the family's alpha; every other default test weighs 1.
LATENCY_P99_WEIGHT = 4.0

#: Default exact limit of live series with a quantile guardrail when the comparator
#: merges an epoch's buckets (``live_exact_limit``): 262,144 values, 2 MiB per series.
LIVE_EXACT_LIMIT = 262_144


_MISSING = _g("missing_rate", "up", 1.0, 5.0, 20.0)  # points
_OUT_OF_RANGE = _g("out_of_range_rate", "up", 1.0, 5.0, 20.0)  # points
_NEW_CATEGORY = _g("new_category_share", "up", 0.005, 0.02, 0.10)  # share of live values
_TVD = _g("tvd", "up", 0.05, 0.10, 0.20)
_KS = _g("ks", "up", 0.02, 0.05, 0.10)
_CATEGORICAL = (_TVD, _NEW_CATEGORY)

DEFAULTS: Mapping[Kind, tuple[Guardrail, ...]] = {
    Kind.LATENCY: (
        _g("p50_rel", "up", 0.05, 0.10, 0.25),
        _g("p90_rel", "up", 0.05, 0.10, 0.25),
        _g("p99_rel", "up", 0.05, 0.10, 0.25, LATENCY_P99_WEIGHT),
        _MISSING,
    ),
    Kind.FEATURE: (_KS, _MISSING, _OUT_OF_RANGE, *_CATEGORICAL),
    Kind.OUTPUT: (
        _g("mean_abs", "both", 0.01, 0.03, 0.10),
        _KS,
        _MISSING,
        _OUT_OF_RANGE,
        _g("precision_bits", "down", 4.0, 8.0, 16.0),
        *_CATEGORICAL,
    ),
    Kind.ERROR: (_g("mean_abs", "up", 0.01, 0.05, 0.20), _MISSING, *_CATEGORICAL),
    Kind.RESOURCE: (_g("p99_rel", "up", 0.10, 0.25, 0.50), _MISSING),
    # Quality (issue 8): rates and shifts in absolute units (0.01 = +1 point).
    Kind.QUALITY: (
        _g("error_rate_shift", "up", 0.01, 0.03, 0.10),
        _g("ece_shift", "up", 0.02, 0.05, 0.10),
        _g("ece_adaptive_shift", "up", 0.02, 0.05, 0.10),
        _g("brier_shift", "up", 0.01, 0.03, 0.10),
        _g("log_loss_shift", "up", 0.05, 0.10, 0.25),
        _g("auc_drop", "up", 0.01, 0.03, 0.10),
        # Fairness: the best-to-worst slice gap against the baseline's gap (a gap the
        # baseline had already does not alert; the absolute gap has no default guardrail).
        _g("fairness_gap_error_rate_shift", "up", 0.03, 0.05, 0.10),
        _g("fairness_gap_ece_shift", "up", 0.03, 0.05, 0.10),
        # CBPE: the error-rate shift estimated from confidences, before labels land.
        _g("estimated_error_rate_shift", "up", 0.01, 0.03, 0.10),
        # Regression errors and labels as ordinary series: MAE/MSE relative shifts,
        # the residual distribution, label drift (prior shift).
        _g("mean_rel", "up", 0.10, 0.25, 0.50),
        _g("ks", "up", 0.05, 0.10, 0.20),
        _g("tvd", "up", 0.05, 0.10, 0.20),
    ),
}
"""Default guardrails per signal kind. A series uses those whose effect exists for
its type (numeric or categorical). Units are the effects': relative shifts as
fractions (0.05 = +5 %), rates in points, shares in [0, 1], bits."""

_TOP_KEYS = frozenset(
    {
        "alpha",
        "consecutive",
        "resolve_after",
        "cooldown",
        "max_epoch_age",
        "check_interval",
        "live_exact_limit",
        "playbook_url",
        "guardrails",
        "models",
    }
)
_GUARDRAIL_KEYS = frozenset({"direction", "minor", "moderate", "severe", "enabled", "weight"})
_REQUIRED_KEYS = frozenset({"direction", "minor", "moderate", "severe"})
_MODEL_KEYS = frozenset({"playbook_url", "seasonality", "signals", "outcomes"})

_Table = dict[str, dict[str, Guardrail | None]]  # effect -> guardrail (None: disabled)


class Guardrails:
    """Guardrails and alerting policy, loaded from TOML or the defaults.

    Top-level keys: ``alpha`` (false-alarm budget per (model, environment) per
    epoch, default 0.01), ``consecutive`` (2), ``resolve_after`` (300 s),
    ``cooldown`` (600 s), ``max_epoch_age`` (86400 s), ``check_interval`` (10 s),
    ``live_exact_limit`` (values a live series with a quantile guardrail keeps
    exactly when the comparator merges the epoch's buckets, :data:`LIVE_EXACT_LIMIT`),
    ``playbook_url``.

    >>> Guardrails.load(None).alpha
    0.01
    """

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        consecutive: int = 2,
        resolve_after: float = 300.0,
        cooldown: float = 600.0,
        max_epoch_age: float = 86400.0,
        check_interval: float = 10.0,
        live_exact_limit: int = LIVE_EXACT_LIMIT,
        playbook_url: str = "",
        kinds: Mapping[Kind, Mapping[str, Guardrail | None]] | None = None,
        models: Mapping[str, _ModelConfig] | None = None,
    ) -> None:
        self.alpha = alpha
        self.consecutive = consecutive
        self.resolve_after = resolve_after
        self.cooldown = cooldown
        self.max_epoch_age = max_epoch_age
        self.check_interval = check_interval
        self.live_exact_limit = live_exact_limit
        self._playbook_url = playbook_url
        self._kinds: dict[Kind, dict[str, Guardrail | None]] = {
            k: {g.effect: g for g in DEFAULTS[k]} for k in Kind
        }
        for kind, table in (kinds or {}).items():
            self._kinds[kind].update(table)
        self._models = dict(models or {})
        self._cache: dict[tuple[str, Kind, str], tuple[Guardrail, ...]] = {}
        self._typed: dict[tuple[str, Kind, str, bool], tuple[Guardrail, ...]] = {}

    @classmethod
    def load(
        cls,
        path: str | Path | None,
        *,
        alpha: float | None = None,
        check_interval: float | None = None,
    ) -> Guardrails:
        """Read a guardrails TOML file (None or "": the defaults).

        ``alpha`` and ``check_interval``, when given (a flag or setting), win over
        the file's. Raises ConfigError naming the field for anything invalid.
        """
        data: dict[str, Any] = {}
        where = "guardrails"
        if path:
            where = f"guardrails file {path}"
            try:
                data = tomllib.loads(Path(path).read_text())
            except FileNotFoundError as err:
                raise ConfigError(f"{where} does not exist") from err
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(f"{where} is not valid TOML: {err}") from err
        return cls.from_mapping(data, alpha=alpha, check_interval=check_interval, where=where)

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        alpha: float | None = None,
        check_interval: float | None = None,
        where: str = "guardrails",
    ) -> Guardrails:
        """Build from an already parsed TOML document (see :meth:`load`)."""
        _no_unknown(data, _TOP_KEYS, where, "")
        a = _number(data, "alpha", 0.01, where) if alpha is None else float(alpha)
        if not 0.0 < a < 1.0:
            raise ConfigError(f"{where}: 'alpha' must be between 0 and 1 (exclusive), got {a!r}")
        consecutive = data.get("consecutive", 2)
        if isinstance(consecutive, bool) or not isinstance(consecutive, int) or consecutive < 1:
            raise ConfigError(
                f"{where}: 'consecutive' must be a whole number >= 1, got {consecutive!r}"
            )
        timings = {}
        for key, default in (
            ("resolve_after", 300.0),
            ("cooldown", 600.0),
            ("max_epoch_age", 86400.0),
            ("check_interval", 10.0),
        ):
            value = _number(data, key, default, where)
            if key == "check_interval" and check_interval is not None:
                value = float(check_interval)
            if value < 0 or (key in ("max_epoch_age", "check_interval") and value == 0):
                rule = "greater than 0" if key in ("max_epoch_age", "check_interval") else ">= 0"
                raise ConfigError(f"{where}: {key!r} must be {rule}, got {value!r}")
            timings[key] = value
        playbook = _string(data, "playbook_url", where, "")
        live_exact = data.get("live_exact_limit", LIVE_EXACT_LIMIT)
        if (
            isinstance(live_exact, bool)
            or not isinstance(live_exact, int)
            or not 0 <= live_exact <= 0xFFFFFFFF
        ):
            raise ConfigError(
                f"{where}: 'live_exact_limit' must be a whole number from 0 to 4294967295,"
                f" got {live_exact!r}"
            )

        kinds: dict[Kind, dict[str, Guardrail | None]] = {}
        section = _table(data, "guardrails", where, "")
        for kind_name in section:
            try:
                kind = Kind(kind_name)
            except ValueError:
                raise ConfigError(
                    f"{where}: [guardrails.{kind_name}]: unknown signal kind {kind_name!r}"
                    f" (known: {', '.join(k.value for k in Kind)})"
                ) from None
            table = _table(section, kind_name, where, "guardrails.")
            base = {g.effect: g for g in DEFAULTS[kind]}
            kinds[kind] = _parse_effects(table, base, where, f"guardrails.{kind_name}", kind=kind)

        models: dict[str, _ModelConfig] = {}
        for model, raw in _table(data, "models", where, "").items():
            prefix = f"models.{model}"
            if not isinstance(raw, dict):
                raise ConfigError(f"{where}: [{prefix}] must be a table")
            _no_unknown(raw, _MODEL_KEYS, where, prefix)
            season = None
            if "seasonality" in raw:
                season = _seasonality(raw["seasonality"], where, f"{prefix}.seasonality")
            signals: dict[str, dict[str, dict[str, Any]]] = {}
            for signal, effects in _table(raw, "signals", where, prefix + ".").items():
                spath = f"{prefix}.signals.{signal}"
                if not isinstance(effects, dict):
                    raise ConfigError(f"{where}: [{spath}] must be a table")
                for effect, fields in effects.items():
                    _check_fields(fields, effect, where, spath)
                signals[signal] = effects
            outcomes = None
            if "outcomes" in raw:
                outcomes = OutcomeConfig.from_mapping(
                    raw["outcomes"], f"{where}: [{prefix}.outcomes]"
                )
            models[model] = _ModelConfig(
                playbook_url=_string(raw, "playbook_url", where, playbook, prefix + "."),
                seasonality=season,
                signals=signals,
                outcomes=outcomes,
            )
        result = cls(
            alpha=a,
            consecutive=consecutive,
            live_exact_limit=live_exact,
            playbook_url=playbook,
            kinds=kinds,
            models=models,
            **timings,
        )
        # Per-signal overrides merge onto each kind's table; check them all now, so a
        # bad combination fails at start rather than at the first comparison.
        # An override of an effect a kind has no default for must be complete.
        for model, config in models.items():
            for signal, effects in config.signals.items():
                spath = f"models.{model}.signals.{signal}"
                for kind in Kind:
                    _parse_effects(
                        effects, result._kinds[kind], where, spath, skip_incomplete=True, kind=kind
                    )
                for effect in effects:
                    if not any(result._kinds[k].get(effect) is not None for k in Kind):
                        _parse_effects({effect: effects[effect]}, {}, where, spath)
        return result

    def for_series(self, model: str, kind: Kind, signal: str) -> tuple[Guardrail, ...]:
        """The guardrails of one signal: its kind's, with the model's per-signal overrides.

        Numeric and categorical effects are both listed; a series uses the ones its
        effects include.
        """
        key = (model, kind, signal)
        found = self._cache.get(key)
        if found is None:
            table = self._kinds[kind]
            config = self._models.get(model)
            if config is not None and signal in config.signals:
                table = _parse_effects(
                    config.signals[signal],
                    table,
                    "guardrails",
                    signal,
                    skip_incomplete=True,
                    kind=kind,
                )
            found = self._cache[key] = tuple(g for g in table.values() if g is not None)
        return found

    def for_state(
        self, model: str, kind: Kind, signal: str, categorical: bool
    ) -> tuple[Guardrail, ...]:
        """The guardrails of a numeric or categorical series: :meth:`for_series`
        limited to the effects of its type (cached)."""
        key = (model, kind, signal, categorical)
        found = self._typed.get(key)
        if found is None:
            names = _CATEGORICAL_NAMES if categorical else _NUMERIC_NAMES
            found = tuple(g for g in self.for_series(model, kind, signal) if g.effect in names)
            self._typed[key] = found
        return found

    def exact_limit_for(self, model: str, kind: Kind, signal: str) -> int | None:
        """The exact limit of a live numeric series merged for a comparison:
        ``live_exact_limit`` when one of its guardrails is a quantile effect (exact
        values remove the digest's rank slack from its bounds), else None (the
        parts' own limit)."""
        rails = self.for_state(model, kind, signal, False)
        if self.live_exact_limit and any(g.effect in _QUANTILE_NAMES for g in rails):
            return self.live_exact_limit
        return None

    def playbook_url(self, model: str) -> str:
        """The model's playbook URL, else the top-level one, else ""."""
        config = self._models.get(model)
        return config.playbook_url if config is not None else self._playbook_url

    def outcomes(self, model: str) -> OutcomeConfig:
        """The model's ``[models.<model>.outcomes]`` section, else the defaults."""
        config = self._models.get(model)
        found = config.outcomes if config is not None else None
        return found if found is not None else OutcomeConfig()

    def seasonality(self, model: str) -> Seasonality | None:
        """The model's configured cycle, or None (not seasonal)."""
        config = self._models.get(model)
        return config.seasonality if config is not None else None

    def replace(self, **changes: Any) -> Guardrails:
        """A copy with some of alpha, consecutive, resolve_after, cooldown,
        max_epoch_age, check_interval changed (for tests and replay flags)."""
        copy = Guardrails.__new__(Guardrails)
        copy.__dict__.update(self.__dict__)
        copy._cache = {}
        copy._typed = {}
        for key, value in changes.items():
            if key not in ("alpha", "consecutive", "resolve_after", "cooldown") and key not in (
                "max_epoch_age",
                "check_interval",
                "live_exact_limit",
            ):
                raise ConfigError(f"unknown guardrails field {key!r}")
            setattr(copy, key, value)
        return copy


@dataclass(frozen=True)
class _ModelConfig:
    playbook_url: str = ""
    seasonality: Seasonality | None = None
    signals: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    outcomes: OutcomeConfig | None = None


def _no_unknown(data: Mapping[str, Any], known: frozenset[str], where: str, path: str) -> None:
    for key in data:
        if key not in known:
            at = f"[{path}] " if path else ""
            raise ConfigError(
                f"{where}: {at}unknown key {key!r} (known: {', '.join(sorted(known))})"
            )


def _table(data: Mapping[str, Any], key: str, where: str, prefix: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{prefix}{key}] must be a table, got {value!r}")
    return value


def _number(data: Mapping[str, Any], key: str, default: float, where: str, path: str = "") -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: '{path}{key}' must be a finite number, got {value!r}")
    return float(value)


def _string(data: Mapping[str, Any], key: str, where: str, default: str, path: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{path}{key}' must be a string, got {value!r}")
    return value


def _seasonality(raw: Any, where: str, path: str) -> Seasonality:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{path}' must be a table like {{period = 86400, phases = 24}}")
    _no_unknown(raw, frozenset({"period", "phases"}), where, path)
    for key in ("period", "phases"):
        if key not in raw:
            raise ConfigError(f"{where}: '{path}.{key}' is required")
    period = _number(raw, "period", 0.0, where, path + ".")
    phases = raw["phases"]
    if period <= 0:
        raise ConfigError(f"{where}: '{path}.period' must be greater than 0, got {period!r}")
    if isinstance(phases, bool) or not isinstance(phases, int) or not 1 <= phases <= 100:
        raise ConfigError(
            f"{where}: '{path}.phases' must be a whole number from 1 to 100, got {phases!r}"
        )
    return Seasonality(period, phases)


def _check_fields(fields: Any, effect: str, where: str, path: str) -> None:
    at = f"{path}.{effect}"
    if effect not in _EFFECTS:
        raise ConfigError(
            f"{where}: [{at}]: unknown effect {effect!r} (known: {', '.join(sorted(_EFFECTS))})"
        )
    if not isinstance(fields, dict):
        raise ConfigError(f"{where}: [{at}] must be a table of direction, minor, moderate, severe")
    _no_unknown(fields, _GUARDRAIL_KEYS, where, at)


def _parse_effects(
    table: Mapping[str, Any],
    base: Mapping[str, Guardrail | None],
    where: str,
    path: str,
    *,
    skip_incomplete: bool = False,
    kind: Kind | None = None,
) -> dict[str, Guardrail | None]:
    """Merge ``{effect: {direction, minor, ...}}`` overrides onto ``base`` and validate.

    An override of an effect without a guardrail in ``base`` must give all fields;
    with ``skip_incomplete`` an incomplete one is left out instead of refused. An
    effect disabled in ``base`` takes missing fields from ``kind``'s defaults.
    """
    defaults = {g.effect: g for g in DEFAULTS[kind]} if kind is not None else {}
    out = dict(base)
    for effect, fields in table.items():
        _check_fields(fields, effect, where, path)
        at = f"{path}.{effect}"
        enabled = fields.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}: '{at}.enabled' must be true or false, got {enabled!r}")
        if not enabled:
            out[effect] = None
            continue
        old = base.get(effect) or defaults.get(effect)
        if old is None and skip_incomplete and not set(fields) >= _REQUIRED_KEYS:
            continue
        values: dict[str, Any] = dataclasses.asdict(old) if old is not None else {}
        values["effect"] = effect
        if "direction" in fields:
            values["direction"] = fields["direction"]
        elif "direction" not in values:
            raise ConfigError(
                f"{where}: '{at}.direction' is required: {effect} has no default guardrail"
            )
        if values["direction"] not in DIRECTIONS:
            raise ConfigError(
                f"{where}: '{at}.direction' must be one of {', '.join(DIRECTIONS)},"
                f" got {values.get('direction')!r}"
            )
        for tier in ("minor", "moderate", "severe"):
            if tier in fields:
                values[tier] = _number(fields, tier, 0.0, where, at + ".")
            elif tier not in values:
                raise ConfigError(
                    f"{where}: '{at}.{tier}' is required: {effect} has no default guardrail"
                )
            if values[tier] <= 0:
                raise ConfigError(
                    f"{where}: '{at}.{tier}' must be greater than 0 (a magnitude; the direction"
                    f" says up or down), got {values[tier]!r}"
                )
        if "weight" in fields:
            values["weight"] = _number(fields, "weight", 1.0, where, at + ".")
            if values["weight"] <= 0:
                raise ConfigError(
                    f"{where}: '{at}.weight' must be greater than 0 (a share of the family's"
                    f" alpha relative to the other tests), got {values['weight']!r}"
                )
        if not values["minor"] <= values["moderate"] <= values["severe"]:
            raise ConfigError(
                f"{where}: '{at}': tiers out of order: need minor <= moderate <= severe, got"
                f" {values['minor']!r}, {values['moderate']!r}, {values['severe']!r}"
            )
        out[effect] = Guardrail(**values)
    return out
