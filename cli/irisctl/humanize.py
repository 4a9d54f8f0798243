"""Durations and sizes the way operators type and read them: ``15m``, ``2h``; ``1.5 MiB``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1w`` -> seconds; ValueError otherwise."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 2h, 7d")
    return int(float(match[1]) * _UNIT_SECONDS[match[2].lower()])


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration ago (``15m``) or an ISO 8601 time (UTC when no zone is given)."""
    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (15m, 2h) nor an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def human_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size
            sub = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{seconds // size}{unit}" + (f" {rest // sub[1]}{sub[0]}" if rest else "")
    return f"{seconds}s"
