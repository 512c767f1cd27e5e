"""Parse stage: the bytes and headers `fetch` got, turned into a `ParsedFeed`.

RSS 0.9x/1.0/2.0 and Atom 0.3/1.0 go through feedparser; JSON Feed 1.0/1.1, which
feedparser cannot read, is parsed here with `json`. This stage is pure: it never
fetches, reads files or looks at the clock. It does not normalize (dates stay as the
feed gave them apart from conversion to UTC, links may stay relative, HTML is not
sanitized: `normalize` and `render` do that).

Hostile input, decided by test (tests/test_parse.py):

- **Entity declarations are refused before feedparser sees the body.** feedparser
  strips a DOCTYPE's entity declarations but re-inserts the "safe" looking ones
  (plain literals), and when expat stops a quadratic blow-up ("limit on input
  amplification factor breached") feedparser falls back to its loose parser, which
  expands the same literal entities in Python with no limit: a 120 kB body took
  more than 2 GB. A one-line DOCTYPE escapes feedparser's stripping altogether and
  expat expands it below its 8 MiB activation threshold. So `_screen_doctype` reads
  the prolog with expat (stopping at the root element) and refuses any parameter
  entity, any external (SYSTEM/PUBLIC) entity, any internal entity that refers to
  other entities, and literal ones whose references would grow the body more than
  threefold (plus 1 MiB). A short literal (`<!ENTITY nbsp "&#160;">`, still seen in
  old feeds; `<!ENTITY id "tag:example.com,">`) is read as feedparser reads it.
- **External DTDs and external entities are never read:** feedparser turns off
  expat's `feature_external_ges` and drops the DOCTYPE; the screen refuses external
  entities anyway, so nothing depends on that alone.
- **Encodings:** the body is read in its declared encoding (BOM, HTTP charset, XML
  declaration; UTF-8 when none), with only the bytes it cannot read replaced by
  U+FFFD, and handed to feedparser as UTF-8. feedparser itself would read the
  whole body as windows-1252 or iso-8859-2 over one stray byte. Another reading is
  taken only when clearly better (`_reading`): valid UTF-8 whatever is declared, or
  charset-normalizer's guess when the declared encoding reads almost nothing (a
  cp1251, koi8-r or windows-1256 body that declares nothing, or lies).
- **Empty items** (no guid, link, title or text: a stray `<item />` nested in
  another item) are dropped.
- **Size:** at most `max_entries` entries (newest kept), each text field cut to
  `max_field` characters, duplicate guids dropped (first occurrence kept). A body
  with more than twice `max_entries` items is trimmed to the newest of them before
  feedparser runs (`_trim`), so 100,000 items cost about a second, not half a minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urljoin

import feedparser

from aggregator import models
from aggregator.errors import ParseError
from aggregator.ingest.parse.encoding import _reading
from aggregator.ingest.parse.entries import (
    _HARMLESS,
    _absolute,
    _entry_from_feedparser,
    _feedparser,
    _hint_seconds,
)
from aggregator.ingest.parse.fields import _cut, _describe, _keep, _language, _text
from aggregator.ingest.parse.items import (
    _known_left_out,
    _trim,
    digested_items,
    item_digests,
    unseen_items,
)
from aggregator.ingest.parse.jsonfeed import _is_json, _parse_json
from aggregator.ingest.parse.screen import _fix_char_refs, _screen_doctype, _screen_elements

__all__ = ["digested_items", "item_digests", "parse", "unseen_items"]


def parse(
    body: bytes,
    headers: Mapping[str, str] | None = None,
    url: str | None = None,
    *,
    max_entries: int = 1000,
    max_field: int = 200_000,
    known_items: frozenset[bytes] = frozenset(),
    digested: Sequence[tuple[int, int, bytes]] | None = None,
) -> models.ParsedFeed:
    """Parse one feed document; raise `ParseError` when it is not a feed we can read.

    `url` is where the body came from: relative links resolve against it (or against
    the feed's own xml:base). A feed with XML errors that still yields entries is
    kept, with `warning` saying what was wrong. Items whose exact bytes are among
    `known_items` (the `item_digests` of the feed's last parse) are left out before
    feedparser sees the body: a feed that changed by three items costs three items.
    `digested` is `digested_items(body)` when the caller has it already (a poll does,
    to choose where to parse), so the body is digested once; it is used only when
    the body reaches that step unchanged (not re-encoded, not trimmed).
    """
    original = body
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    if not body.strip():
        raise ParseError("empty body: not a feed", url)
    if _is_json(body, lower):
        return _parse_json(body, url, max_entries, max_field)
    reading = _reading(body, lower)
    encoding_note = None
    response_headers = dict(lower)
    if reading is not None:
        # feedparser is handed UTF-8 and told so: it would otherwise decode the whole
        # body with a fallback code page over one bad byte
        body, encoding_note = reading
        response_headers["content-type"] = "application/xml; charset=utf-8"
    _screen_doctype(body, url)

    base = None
    if url:
        location = lower.get("content-location")
        base = urljoin(url, location) if location else url
    # Given a base, feedparser joins it onto every link element it meets (a quarter of
    # its time); only a document with xml:base needs feedparser's per-element bases.
    # Otherwise the few fields we read are resolved here (`_absolute`).
    if base and b"xml:base" in body:
        response_headers["content-location"] = base
        base = None
    else:
        response_headers.pop("content-location", None)
    body, trimmed = _trim(body, max_entries)
    same = digested is not None and body is original
    digests, reduced, left_out = _known_left_out(body, known_items, digested if same else None)
    d = None
    if reduced is not None:
        reduced = _fix_char_refs(reduced)
        _screen_elements(reduced, url)
        d = _feedparser(reduced, response_headers, url)
        if d.get("bozo") and not isinstance(d.get("bozo_exception"), _HARMLESS):
            d = None  # cut where the markup did not allow it: the whole body decides
    if d is None:
        left_out = 0
        body = _fix_char_refs(body)
        _screen_elements(body, url)
        d = _feedparser(body, response_headers, url)
    exc = d.get("bozo_exception")

    # A feed served as text/html or text/plain is common and harmless: feedparser
    # flags it, but only a real XML error is worth a warning.
    bozo = bool(d.get("bozo")) and not isinstance(exc, feedparser.NonXMLContentType)
    raw_entries = d.get("entries") or []
    if not raw_entries:
        if bozo:
            raise ParseError(f"not a feed: {_describe(exc)}", url)
        if not d.get("version"):
            raise ParseError("not a feed: no RSS, Atom or JSON Feed document", url)

    atom = str(d.get("version") or "").startswith("atom")
    entries = [
        _entry_from_feedparser(e, max_field, base or url, base, atom=atom) for e in raw_entries
    ]
    kept, skipped = _keep(entries, max_entries)
    feed = d.get("feed") or {}
    return models.ParsedFeed(
        title=_cut(_text(feed.get("title")), max_field),
        link=_cut(_absolute(base, _text(feed.get("link"))), max_field),
        entries=kept,
        hint_seconds=_hint_seconds(feed),
        warning="; ".join(w for w in (_describe(exc) if bozo else None, encoding_note) if w)
        or None,
        language=_language(feed.get("language") or d.get("headers", {}).get("content-language")),
        item_digests=digests,
        read=trimmed + left_out + len(raw_entries),
        unchanged=left_out,
        skipped=models.add_counts(skipped, {"over_max_entries": trimmed}),
    )
