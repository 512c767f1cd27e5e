"""Durations ("15m", "1h30m") and sizes ("10MiB", "500kB") as the config writes
them, read and written back in one place for the config, `check`, `status` and
fetch's messages."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from aggregator.errors import ConfigError

_DURATION = re.compile(
    r"(?:(?P<w>\d{1,12})w)?\s*(?:(?P<d>\d{1,12})d)?\s*(?:(?P<h>\d{1,12})h)?\s*"
    r"(?:(?P<m>\d{1,12})m)?\s*(?:(?P<s>\d{1,12})s)?"
)
_DURATION_HELP = 'use whole numbers with units w, d, h, m, s, like "90s", "15m", "2h", "1h30m"'

_SIZE = re.compile(r"(?P<n>\d{1,15}(?:\.\d{1,6})?)\s*(?P<unit>[A-Za-z]*)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE_HELP = 'use bytes or a unit: B, kB, MB, GB, KiB, MiB, GiB, like "10MiB" or "500kB"'


def parse_duration(text: str, key: str) -> timedelta:
    """Read a duration like "90s", "15m", "1h30m" or "1w".

    Units go from largest to smallest, each at most once, so "90m" and "1h30m" both
    work but "30m1h" is refused as the typo it most likely is. Zero and negative
    durations are refused: every duration in the config is an interval, a timeout or
    a window, and none of them makes sense at zero.

    Raises `ConfigError` (file "<config>") naming `key`; `parse` re-raises it with
    the real file and line.
    """
    stripped = text.strip() if isinstance(text, str) else ""
    match = _DURATION.fullmatch(stripped) if stripped else None
    if match is None or not any(match.groupdict().values()):
        if stripped.startswith("-"):
            raise ConfigError("<config>", f"duration must be positive, got {text!r}", key=key)
        raise ConfigError("<config>", f"invalid duration {text!r}: {_DURATION_HELP}", key=key)
    parts = {unit: int(n) for unit, n in match.groupdict().items() if n}
    try:
        value = timedelta(
            weeks=parts.get("w", 0),
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    except OverflowError:
        raise ConfigError("<config>", f"duration {text!r} is too large", key=key) from None
    if value <= timedelta(0):
        raise ConfigError("<config>", f"duration must be positive, got {text!r}", key=key)
    return value


def parse_size(text: str | int, key: str) -> int:
    """Read a size in bytes: "10MiB", "512KiB", "1GiB", "500kB", "1MB", or plain bytes.

    Both decimal (kB = 1000) and binary (KiB = 1024) units are accepted because
    people write both; the unit is case-insensitive except that it must be one of
    the listed ones ("10M" is refused rather than guessed). Zero and negative sizes
    are refused: a cap of zero would reject every feed.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ConfigError("<config>", f"expected a size, got {show(text)}", key=key)
    if isinstance(text, int):
        if text <= 0:
            raise ConfigError("<config>", f"size must be positive, got {text}", key=key)
        return text
    stripped = text.strip()
    match = _SIZE.fullmatch(stripped)
    if match is None or match["unit"].lower() not in _SIZE_UNITS:
        if stripped.startswith("-"):
            raise ConfigError("<config>", f"size must be positive, got {text!r}", key=key)
        raise ConfigError("<config>", f"invalid size {text!r}: {_SIZE_HELP}", key=key)
    value = int(Decimal(match["n"]) * _SIZE_UNITS[match["unit"].lower()])
    if value <= 0:
        raise ConfigError("<config>", f"size must be positive, got {text!r}", key=key)
    return value


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration`, for messages, `check` and `status`; a
    jittered delay (1209.6 s) rounds to the nearest second ("20m10s")."""
    seconds = round(value.total_seconds())
    if seconds <= 0:
        return "0s"
    if seconds % 604800 == 0:
        return f"{seconds // 604800}w"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def format_size(value: int) -> str:
    """A byte count in the largest binary unit that divides it exactly, else bytes."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


def show(value: object) -> str:
    """A value as a message names it: its TOML type, and the value when short."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"string {json.dumps(shown, ensure_ascii=False)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime):
        return "a datetime"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return type(value).__name__
