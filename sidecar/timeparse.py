"""Parsing of the times and durations the CLI accepts.

>>> parse_duration("90s"), parse_duration("15m"), parse_duration("2h"), parse_duration("1d")
(90.0, 900.0, 7200.0, 86400.0)
>>> parse_time("1700000000")
1700000000.0
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

__all__ = ["parse_duration", "parse_time"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``2h``, ``1d``, ``1w`` (or a bare number of seconds)."""
    match = _DURATION.match(text)
    if match:
        return float(match.group(1)) * _UNITS[match.group(2)]
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 1d)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a duration: {text!r}")
    return value


def parse_time(text: str) -> float:
    """Unix seconds from unix seconds or an ISO-8601 time (UTC when no zone is given)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"not a time: {text!r}")
        return value
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use unix seconds or ISO-8601 like 2026-11-27T10:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
