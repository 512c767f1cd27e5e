"""What every format's entries share: text fields cut to size, the feed's
language, and the rules for which entries a poll keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aggregator import models
from aggregator.text import xml_text

#: dates before or after these years are treated as missing (typos, epoch zero, 9999)
MIN_YEAR = 1990
MAX_YEAR = 2100
_BOM = b"\xef\xbb\xbf"
_WARNING_LENGTH = 300


def _language(value: object) -> str | None:
    """The primary subtag of a declared language ("en-US" -> "en"), for the stemmers."""
    if not isinstance(value, str):
        return None
    primary = value.strip().split("-")[0].split("_")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def _is_empty(entry: models.ParsedEntry) -> bool:
    """An item with nothing in it, e.g. a stray `<item />` nested in another item."""
    return not (entry.guid or entry.link or entry.title or entry.summary or entry.content)


def _text(value: Any) -> str | None:
    """A stripped string, or None for anything else: a JSON Feed's `"title": 1000`
    or `"url": 1.2` is a mistake, not a title "1000" or a link to "1.2"."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _cut(value: str | None, limit: int) -> str | None:
    """Cut a text field to `limit` characters, without characters XML cannot carry
    (a lone surrogate cannot even be stored as UTF-8)."""
    if value is None:
        return None
    value = value[:limit] if len(value) > limit else value
    return xml_text(value)


def _keep(
    entries: list[models.ParsedEntry], max_entries: int
) -> tuple[tuple[models.ParsedEntry, ...], dict[str, int]]:
    """The entries a poll stores: empty ones, repeated guids (the first occurrence
    in document order wins) and those past the cap dropped; and how many for each
    reason (`models.SKIP_REASONS`)."""
    filled = [i for i, e in enumerate(entries) if not _is_empty(e)]
    seen: set[str] = set()
    unique = []
    for i in filled:
        guid = entries[i].guid
        if guid is not None:
            if guid in seen:
                continue
            seen.add(guid)
        unique.append(i)
    kept = _cap([entries[i] for i in unique], max_entries)
    kept_at = {unique[k] for k in kept}
    skipped = {
        "no_content": len(entries) - len(filled),
        "repeated_guid": len(filled) - len(unique),
        "over_max_entries": len(unique) - len(kept),
    }
    return tuple(entries[i] for i in sorted(kept_at)), {k: n for k, n in skipped.items() if n}


def _cap(entries: list[models.ParsedEntry], limit: int) -> list[int]:
    """The positions of the newest `limit` entries (dated ones first), in order."""
    if len(entries) <= limit:
        return list(range(len(entries)))
    if limit <= 0:
        return []
    floor = datetime.min.replace(tzinfo=UTC)
    order = sorted(
        range(len(entries)),
        key=lambda i: (entries[i].published is not None, entries[i].published or floor, -i),
        reverse=True,
    )
    return sorted(order[:limit])


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = f"{type(exc).__name__}: {exc}"
    return text[:_WARNING_LENGTH]
