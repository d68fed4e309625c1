"""Slice attribution: which values of a slice attribute carry an alert's shift.

Every signal is stored per slice (``node=gpu-7``, ...) next to all traffic
(``*``), and each comparison already judges every slice series against the
baseline's series of the same slice. :func:`attribute_shift` reads those
findings for the alert's signal and effect and gives each slice value a verdict:

- ``shifted``: the effect cleared a guardrail tier in that slice (estimate,
  bounds and tier are reported);
- ``unchanged``: the confidence interval excludes the minor guardrail in the
  monitored direction (``up``: upper bound below it; ``down``: lower bound
  above minus it; ``both``: both), so a change of alert size is ruled out;
- ``inconclusive``: neither (too few samples in that slice).

:func:`attribution_line` renders the verdicts of the attribute that localises
the shift best as one line: ``latency_ms p99 +18.0% only on node=gpu-7; other
node values (3) unchanged``.

>>> attribution_line("latency_ms", [])
''
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sidecar.compare import SeriesFinding
from sidecar.guardrails import Guardrails
from sidecar.records import ALL_TRAFFIC

__all__ = [
    "INCONCLUSIVE",
    "SHIFTED",
    "UNCHANGED",
    "SliceVerdict",
    "attribute_shift",
    "attribution_line",
]

SHIFTED, UNCHANGED, INCONCLUSIVE = "shifted", "unchanged", "inconclusive"

_TIER_NAMES = {1: "minor", 2: "moderate", 3: "severe"}
_LABELS = {"p50_rel": "p50", "p90_rel": "p90", "p99_rel": "p99", "p999_rel": "p99.9"}


@dataclass(frozen=True)
class SliceVerdict:
    """One slice value of one attribute judged on the alert's effect.

    ``tier`` is the tier the effect cleared (``shifted`` only), ``guardrail``
    the minor guardrail the bounds are compared with, ``live_count`` the
    slice's live values in the epoch.
    """

    attribute: str
    value: str
    verdict: str  # shifted | unchanged | inconclusive
    effect: str
    estimate: float
    lower: float
    upper: float
    unit: str
    guardrail: float
    tier: str
    live_count: int


def _split(slice_: str) -> tuple[str, str] | None:
    if slice_ == ALL_TRAFFIC or "=" not in slice_:
        return None
    name, _, value = slice_.partition("=")
    return name, value


def attribute_shift(
    finding: SeriesFinding,
    findings: Iterable[SeriesFinding],
    guardrails: Guardrails,
    model: str,
    effect: str,
) -> list[SliceVerdict]:
    """Verdicts per (attribute, value) of ``finding``'s signal and kind on ``effect``.

    ``findings`` are the comparison's findings (all slices); only those of the
    same signal, kind and phase count. Attributes with a single value are left
    out (nothing to contrast). Ordered by attribute, then shifted before
    inconclusive before unchanged, then value.
    """
    sid = finding.series
    rail = None
    for categorical in (False, True):  # the effect's name tells numeric from categorical
        rails = guardrails.for_state(model, sid.kind, sid.signal, categorical)
        rail = next((r for r in rails if r.effect == effect), None)
        if rail is not None:
            break
    if rail is None:
        return []
    by_attr: dict[str, list[SliceVerdict]] = {}
    for other in findings:
        osid = other.series
        if (osid.kind, osid.signal, other.phase) != (sid.kind, sid.signal, finding.phase):
            continue
        parts = _split(osid.slice)
        if parts is None:
            continue
        value = other.effects.get(effect)
        if value is None:
            continue
        fired = [t for name, t, _ in other.fired if name == effect]
        if fired:
            verdict, tier = SHIFTED, _TIER_NAMES.get(int(max(fired)), str(max(fired)))
        else:
            tier = ""
            up_ok = value.upper < rail.minor
            down_ok = value.lower > -rail.minor
            clear = {"up": up_ok, "down": down_ok}.get(rail.direction, up_ok and down_ok)
            verdict = UNCHANGED if clear else INCONCLUSIVE
        by_attr.setdefault(parts[0], []).append(
            SliceVerdict(
                attribute=parts[0],
                value=parts[1],
                verdict=verdict,
                effect=effect,
                estimate=value.estimate,
                lower=value.lower,
                upper=value.upper,
                unit=value.unit,
                guardrail=rail.minor,
                tier=tier,
                live_count=other.live_count,
            )
        )
    rank = {SHIFTED: 0, INCONCLUSIVE: 1, UNCHANGED: 2}
    out: list[SliceVerdict] = []
    for name in sorted(by_attr):
        verdicts = by_attr[name]
        if len(verdicts) < 2:
            continue
        out += sorted(verdicts, key=lambda v: (rank[v.verdict], v.value))
    return out


def _value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in ("relative", "share"):
        return f"{value * 100:+.1f}%"
    return f"{value:+.3g}"


def _localising(verdicts: Sequence[SliceVerdict]) -> tuple[str, list[SliceVerdict]] | None:
    """The attribute whose shifted values are fewest while others are unchanged."""
    best: tuple[tuple[int, int, str], str, list[SliceVerdict]] | None = None
    groups: dict[str, list[SliceVerdict]] = {}
    for v in verdicts:
        groups.setdefault(v.attribute, []).append(v)
    for name, group in groups.items():
        shifted = sum(v.verdict == SHIFTED for v in group)
        unchanged = sum(v.verdict == UNCHANGED for v in group)
        if not shifted:
            continue
        key = (-unchanged, shifted, name)
        if best is None or key < best[0]:
            best = (key, name, group)
    return None if best is None else (best[1], best[2])


def attribution_line(signal: str, verdicts: Sequence[SliceVerdict]) -> str:
    """One line for humans naming where the shift is, '' when no slice carries it.

    ``latency_ms p99 +18.0% only on node=gpu-7; other node values (3) unchanged``
    """
    found = _localising(verdicts)
    if found is None:
        return ""
    name, group = found
    shifted = [v for v in group if v.verdict == SHIFTED]
    unchanged = [v for v in group if v.verdict == UNCHANGED]
    unsure = [v for v in group if v.verdict == INCONCLUSIVE]
    head = shifted[0]
    label = _LABELS.get(head.effect, head.effect)
    effects = _value(head.estimate, head.unit)
    if len(shifted) == len(group):
        return f"{signal} {label} {effects} on every {name} value ({len(group)}): not localised"
    where = ", ".join(f"{name}={v.value}" for v in shifted)
    only = "only on " if unchanged and not unsure else "on "
    text = f"{signal} {label} {effects} {only}{where}"
    rest = []
    if unchanged:
        rest.append(f"other {name} values ({len(unchanged)}) unchanged")
    if unsure:
        rest.append(f"{len(unsure)} inconclusive")
    if rest:
        text += "; " + ", ".join(rest)
    return text
