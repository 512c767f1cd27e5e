"""Items cut out of a body at the byte level: their digests (an item seen byte for
byte is not parsed again) and the trim of a body holding far more items than a
poll keeps."""

from __future__ import annotations

import email.utils
import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from aggregator.ingest.parse.entries import _sane

#: bytes of one item's digest in `ParsedFeed.item_digests`
_DIGEST_SIZE = 8


def item_digests(blob: bytes | None) -> frozenset[bytes]:
    """The stored `ParsedFeed.item_digests` as the set `parse(known_items=...)` takes."""
    if not blob:
        return frozenset()
    n = _DIGEST_SIZE
    return frozenset(blob[i : i + n] for i in range(0, len(blob) - n + 1, n))


def unseen_items(
    items: Sequence[tuple[int, int, bytes]] | None, known: frozenset[bytes]
) -> int | None:
    """How many of a body's `digested_items` are not among `known` (None when the
    body cannot be cut into items): far cheaper than parsing, so a poller can tell a
    feed that changed by three items from a new one before choosing where to parse."""
    return None if items is None else sum(digest not in known for _, _, digest in items)


def digested_items(body: bytes) -> list[tuple[int, int, bytes]] | None:
    """(start, end, digest of the bytes) of each item; None for a UTF-16 body (the
    byte scan assumes ASCII-compatible markup) or markup too broken to cut."""
    head = body[:4]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        return None
    spans = _item_spans(body, dates=False)
    if spans is None:
        return None
    return [
        (start, end, hashlib.blake2b(body[start:end], digest_size=_DIGEST_SIZE).digest())
        for start, end, _ in spans
    ]


def _known_left_out(
    body: bytes,
    known: frozenset[bytes],
    items: Sequence[tuple[int, int, bytes]] | None = None,
) -> tuple[bytes | None, bytes | None, int]:
    """The digests of the body's items, the body without the known ones (None
    when no item is known, or the body cannot be cut into items), and how many
    were left out.

    Only byte-identical items are left out: an item the outlet edited has new bytes
    and is parsed again, so edits are still seen. The bytes between items (the
    channel's own elements) stay, so the feed's title, hint and language are read
    as always.
    """
    if items is None:
        items = digested_items(body)
    if not items:
        return None, None, 0
    blob = b"".join(digest for _, _, digest in items)
    left_out = sum(digest in known for _, _, digest in items)
    if not left_out:
        return blob, None, 0
    out = bytearray()
    position = 0
    for start, end, digest in items:
        out += body[position:start]
        if digest not in known:
            out += body[start:end]
        position = end
    out += body[position:]
    return blob, bytes(out), left_out


#: the start of an item or entry element, any namespace prefix
_ITEM_START = re.compile(rb"<((?:[A-Za-z_][\w.-]*:)?(?:item|entry))(?=[\s/>])")
#: the first date element inside an item, and its text
_ITEM_DATE = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?(?:pubDate|published|updated|date|issued|modified)(?=[\s>])"
    rb"[^>]*>\s*(?:<!\[CDATA\[)?\s*([^<\]]{1,80})"
)


def _trim(body: bytes, max_entries: int) -> tuple[bytes, int]:
    """Drop all but the newest 2 x `max_entries` items before feedparser sees the body.

    feedparser costs about 0.25 ms and a few kB per entry, so a 16 MB feed of 100,000
    tiny items took 26 s of CPU (holding the GIL) and 375 MB. A byte-level scan keeps
    the newest items (by their first date element; undated ones after dated ones, as
    `_cap` orders them) and everything between items, so feedparser still does the
    real parse, on at most twice the cap. The margin leaves room for the duplicates
    and empty items dropped later. ASCII-compatible encodings only: a UTF-16 body is
    left whole. Also returns how many items were dropped.
    """
    keep = 2 * max_entries
    head = body[:4]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        return body, 0
    count = 0
    for _ in _ITEM_START.finditer(body):
        count += 1
        if count > keep:
            break
    else:
        return body, 0
    spans = _item_spans(body)
    if spans is None or len(spans) <= keep:
        return body, 0
    floor = datetime.min.replace(tzinfo=UTC)
    order = sorted(
        range(len(spans)),
        key=lambda i: (spans[i][2] is not None, spans[i][2] or floor, -i),
        reverse=True,
    )
    kept = set(order[:keep])
    out = bytearray()
    position = 0
    for i, (start, end, _) in enumerate(spans):
        out += body[position:start]
        if i in kept:
            out += body[start:end]
        position = end
    out += body[position:]
    return bytes(out), len(spans) - keep


def _item_spans(
    body: bytes, *, dates: bool = True
) -> list[tuple[int, int, datetime | None]] | None:
    """(start, end, date) of each top-level item; None when the markup is too broken.
    Without `dates` every date is None (the digests of items need no dates).

    An item never closed ends where the next one starts. bytes.find, not one regex
    with a lazy `.*?`, and a find that failed is never repeated: either would rescan
    to the end of the body for every unclosed item, quadratic in a hostile body.
    """
    spans: list[tuple[int, int, datetime | None]] = []
    position = 0
    unclosed_from: dict[bytes, int] = {}
    while (match := _ITEM_START.search(body, position)) is not None:
        start = match.start()
        name = match.group(1)
        gt = body.find(b">", match.end())
        if gt < 0:
            return None
        close_gt = -1
        if body[gt - 1 : gt] == b"/":
            close_gt = gt
        elif gt < unclosed_from.get(name, len(body)):
            close = body.find(b"</" + name, gt)
            close_gt = body.find(b">", close) if close >= 0 else -1
            if close_gt < 0:
                unclosed_from[name] = gt
        if close_gt >= 0:
            end = close_gt + 1
        else:
            following = _ITEM_START.search(body, gt)
            end = following.start() if following else max(gt + 1, body.rfind(b"</"))
        date = _ITEM_DATE.search(body, start, end) if dates else None
        spans.append((start, end, _loose_date(date.group(1)) if date else None))
        position = end
    return spans


def _loose_date(raw: bytes) -> datetime | None:
    """An RFC 822 or ISO 8601 date, aware UTC, for ordering only (None if neither)."""
    text = raw.decode("ascii", "replace").strip()
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return _sane(parsed.astimezone(UTC))
    except (OverflowError, ValueError):
        return None
