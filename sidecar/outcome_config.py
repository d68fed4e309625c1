"""Per-model outcome settings: which kept output is the score, the task, class names.

Read from ``[models.<model>.outcomes]`` of the guardrails TOML file (see
``docs/outcomes.md``) and validated at load; every field has a default, so a
model without the section still gets its outcomes joined:

- ``task``: ``"classification"`` (default) or ``"regression"``.
- ``score``: the numeric output that is the score. Classification without
  ``predicted``: P(class 1) of a binary classifier; with ``predicted``: the
  probability of the predicted class. Regression: the predicted value (when
  ``predicted`` is not set). Default: the first numeric output named
  ``score``, ``probability`` or ``prob``, else the first numeric output.
- ``predicted``: the output holding the predicted class (a categorical output,
  or a numeric class index) or, for regression, the predicted value.
- ``classes``: class names by index (``["legit", "fraud"]``: ``"fraud"`` is
  class 1); labels may be given as names or indices. Default: ``"0"``, ``"1"``, ...
- ``threshold``: binary decision threshold on ``score`` (default 0.5).
- ``fairness``: slice attributes whose best-to-worst gap is monitored (default none).
- ``duplicates``: ``"first"`` (default: the first outcome of a request wins,
  later ones are counted as duplicates) or ``"all"`` (every outcome counts).

>>> OutcomeConfig.from_mapping({"score": "p", "classes": ["no", "yes"]}, "t").positive
'yes'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.errors import ConfigError

__all__ = ["SCORE_NAMES", "OutcomeConfig"]

SCORE_NAMES = ("score", "probability", "prob")
"""Output names taken as the score when ``score`` is not configured."""

_KEYS = frozenset({"task", "score", "predicted", "classes", "threshold", "fairness", "duplicates"})


@dataclass(frozen=True)
class OutcomeConfig:
    """How outcomes of one model are interpreted (see the module docstring)."""

    task: str = "classification"
    score: str = ""
    predicted: str = ""
    classes: tuple[str, ...] = ()
    threshold: float = 0.5
    fairness: tuple[str, ...] = ()
    duplicates: str = "first"

    @property
    def positive(self) -> str:
        """Name of class 1 (binary classification)."""
        return self.classes[1] if len(self.classes) >= 2 else "1"

    @property
    def negative(self) -> str:
        """Name of class 0 (binary classification)."""
        return self.classes[0] if self.classes else "0"

    @classmethod
    def from_mapping(cls, raw: Any, where: str) -> OutcomeConfig:
        """Validate a parsed TOML table; ConfigError names the field."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a table")
        for key in raw:
            if key not in _KEYS:
                raise ConfigError(
                    f"{where}: unknown key {key!r} (known: {', '.join(sorted(_KEYS))})"
                )
        task = raw.get("task", "classification")
        if task not in ("classification", "regression"):
            raise ConfigError(f"{where}: 'task' must be classification or regression, got {task!r}")
        strings: dict[str, str] = {}
        for key in ("score", "predicted"):
            value = raw.get(key, "")
            if not isinstance(value, str):
                raise ConfigError(f"{where}: {key!r} must be a signal name, got {value!r}")
            strings[key] = value
        classes = raw.get("classes", [])
        if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
            raise ConfigError(f"{where}: 'classes' must be a list of class names, got {classes!r}")
        if len(set(classes)) != len(classes):
            raise ConfigError(f"{where}: 'classes' names a class twice: {classes!r}")
        threshold = raw.get("threshold", 0.5)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
            or not 0.0 < threshold < 1.0
        ):
            raise ConfigError(f"{where}: 'threshold' must be between 0 and 1, got {threshold!r}")
        fairness = raw.get("fairness", [])
        if isinstance(fairness, str):
            fairness = [fairness]
        if not isinstance(fairness, list) or not all(isinstance(a, str) and a for a in fairness):
            raise ConfigError(
                f"{where}: 'fairness' must be a slice attribute name or a list of them,"
                f" got {fairness!r}"
            )
        duplicates = raw.get("duplicates", "first")
        if duplicates not in ("first", "all"):
            raise ConfigError(f"{where}: 'duplicates' must be first or all, got {duplicates!r}")
        return cls(
            task=task,
            score=strings["score"],
            predicted=strings["predicted"],
            classes=tuple(classes),
            threshold=float(threshold),
            fairness=tuple(fairness),
            duplicates=duplicates,
        )
