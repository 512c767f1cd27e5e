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

import calendar
import codecs
import email.utils
import functools
import hashlib
import html
import io
import json
import re
import xml.parsers.expat
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from aggregator import models
from aggregator.errors import ParseError
from aggregator.text import xml_text

#: dates before or after these years are treated as missing (typos, epoch zero, 9999)
MIN_YEAR = 1990
MAX_YEAR = 2100

#: the longest entity value let through in a UTF-16 body (a character, or a ligature)
_MAX_ENTITY_VALUE = 8

#: sy:updatePeriod names, in seconds (RSS 1.0 syndication module)
_SY_PERIODS = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 7 * 86400,
    "monthly": 30 * 86400,
    "yearly": 365 * 86400,
}

_JSON_TYPES = ("application/feed+json", "application/json")
_BOM = b"\xef\xbb\xbf"
_WARNING_LENGTH = 300


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


#: feedparser's complaints that say nothing about the markup
_HARMLESS = (feedparser.NonXMLContentType,)
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


def _language(value: object) -> str | None:
    """The primary subtag of a declared language ("en-US" -> "en"), for the stemmers."""
    if not isinstance(value, str):
        return None
    primary = value.strip().split("-")[0].split("_")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def _is_empty(entry: models.ParsedEntry) -> bool:
    """An item with nothing in it, e.g. a stray `<item />` nested in another item."""
    return not (entry.guid or entry.link or entry.title or entry.summary or entry.content)


def _feedparser(body: bytes, response_headers: Mapping[str, str], url: str | None) -> Any:
    # sanitize_html=False: we sanitize once, at output, with nh3; feedparser's
    # sanitizer would cost time here and change what dedupe and topics see.
    try:
        return feedparser.parse(
            io.BytesIO(body),
            response_headers=dict(response_headers),
            # Relative links are resolved by `_absolute_links`, only in the few entries
            # that have any: feedparser's resolver re-parses every HTML field (40% of
            # parse time on the corpus).
            resolve_relative_uris=False,
            sanitize_html=False,
        )
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        # feedparser's loose parser raises on input _fix_char_refs cannot see (a UTF-16
        # body, say); a stranger's bytes must fail their own feed, not the poll.
        raise ParseError(f"not a feed: {_describe(e)}", url) from None


#: a numeric character reference, decimal or hex
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")


def _xml_char(code: int) -> bool:
    """Whether XML 1.0 allows the character (section 2.2, Char)."""
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _fix_char_refs(body: bytes) -> bytes:
    """Replace references to characters XML forbids with U+FFFD, before feedparser.

    When expat stops at `&#xD800;` feedparser's loose parser runs `chr(n).encode()` on
    it, and a surrogate, a number past U+10FFFF or a 20-digit one raises straight out
    of `feedparser.parse`: one item could crash the whole poll.
    """
    if b"&#" not in body:
        return body

    def fix(match: re.Match[bytes]) -> bytes:
        hex_digits, digits = match.groups()
        if len((hex_digits or digits).lstrip(b"0")) > 8:  # past U+10FFFF
            return b"&#xFFFD;"
        code = int(hex_digits, 16) if hex_digits else int(digits)
        return match.group(0) if _xml_char(code) else b"&#xFFFD;"

    return _CHAR_REF.sub(fix, body)


# --- hostile XML ---------------------------------------------------------------


class _PrologDone(Exception):
    """Raised from the expat handlers to stop at the root element."""


def _screen_doctype(body: bytes, url: str | None) -> None:
    """Refuse entity declarations that could expand or read outside the body.

    A literal value (`<!ENTITY id "tag:example.com,">`, as in feedparser's own tests)
    passes, and feedparser reads it as it always has, while its references expand
    the body by at most `_MAX_EXPANSION` times plus `_EXPANSION_ALLOWANCE`
    characters: a quadratic blow-up is many references to one long value, and is
    refused by that count, not by the length of the value alone.
    """
    refusal: list[str] = []
    sizes: dict[str, int] = {}
    wide = body[:4].startswith(_WIDE_BOMS) or b"\x00" in body[:4]

    def entity_decl(
        name: str,
        is_parameter_entity: int,
        value: str | None,
        base: str | None,
        system_id: str | None,
        public_id: str | None,
        notation_name: str | None,
    ) -> None:
        if is_parameter_entity:
            refusal.append(f"parameter entity %{name}")
        elif value is None:
            refusal.append(f"external entity &{name}; ({system_id or public_id})")
        elif "&" in value or "<" in value:
            refusal.append(f"entity &{name}; that refers to other entities or markup")
        elif wide and len(value) > _MAX_ENTITY_VALUE:
            # references in a UTF-16 body are not counted: a character, or a ligature
            refusal.append(f"entity &{name}; of {len(value)} characters")
        else:
            sizes[name] = len(value)
        if refusal:
            raise _PrologDone

    def start_element(name: str, attrs: Any) -> None:
        raise _PrologDone

    parser = xml.parsers.expat.ParserCreate()
    parser.EntityDeclHandler = entity_decl
    parser.StartElementHandler = start_element
    # Never fetch anything the DOCTYPE names (the default, stated here on purpose).
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
    except _PrologDone:
        pass
    except (xml.parsers.expat.ExpatError, ValueError, LookupError):
        # Expat could not read the prolog (unknown encoding, junk before the root):
        # feedparser will try harder, so look for declarations byte-wise instead.
        head = body.replace(b"\x00", b"")
        if re.search(rb"<!ENTITY", head, re.IGNORECASE):
            refusal.append("an entity in a prolog expat cannot read")
    if not refusal and sizes and not wide:
        expanded = 0
        for match in _ENTITY_REF.finditer(body):
            expanded += sizes.get(match.group(1).decode("utf-8", "replace"), 0)
        if expanded > _MAX_EXPANSION * len(body) + _EXPANSION_ALLOWANCE:
            refusal.append(f"entities whose references expand to {expanded} characters")
    if refusal:
        raise ParseError(f"refused: DOCTYPE declares {refusal[0]}", url)


#: a general entity reference
_ENTITY_REF = re.compile(rb"&([A-Za-z_:][\w.:-]*);")
#: how many times its own size the body may grow by its entities' expansion
_MAX_EXPANSION = 3
#: and the characters it may grow by whatever its size
_EXPANSION_ALLOWANCE = 1 << 20


#: the most attributes one element may have; real feeds use a handful
MAX_ATTRIBUTES = 256
#: the deepest element nesting; real feeds (XHTML content included) stay under 50
MAX_DEPTH = 512


def _screen_elements(body: bytes, url: str | None) -> None:
    """Refuse an element with more than MAX_ATTRIBUTES attributes or nested deeper
    than MAX_DEPTH.

    feedparser's strict parser looks each attribute up with the SAX
    `getValueByQName`, a linear scan: quadratic in the attributes of one element, so
    a 1 MB body with 100,000 attributes on one `<item>` took two minutes of CPU. And
    it keeps state per open element: 6 MB of nested `<x>` took 22 s and 590 MB.
    Expat reads the body as ISO-8859-1 (every byte is valid, and the markup bytes are
    the same in any ASCII-compatible encoding), so a declared encoding expat cannot
    decode does not skip the screen; UTF-16 and UTF-32 are read as they are.
    """
    wide = body[:4].startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body[:4]
    parser = xml.parsers.expat.ParserCreate(None if wide else "iso-8859-1")
    depth = [0]
    refusal: list[str] = []

    def start_element(name: str, attrs: Any) -> None:
        depth[0] += 1
        if len(attrs) > MAX_ATTRIBUTES:
            refusal.append(f"an element with {len(attrs)} attributes (at most {MAX_ATTRIBUTES})")
            raise _PrologDone
        if depth[0] > MAX_DEPTH:
            refusal.append(f"elements nested more than {MAX_DEPTH} deep")
            raise _PrologDone

    def end_element(name: str) -> None:
        depth[0] -= 1

    parser.StartElementHandler = start_element
    parser.EndElementHandler = end_element
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
    except _PrologDone:
        raise ParseError(f"refused: {refusal[0]}", url) from None
    except (xml.parsers.expat.ExpatError, ValueError, LookupError):
        # feedparser's strict parser stops where expat stops. Its loose parser is linear
        # in attributes but not in depth (2 MB of nested tags took 7 s), so count the
        # depth by the tags themselves, leaving room for a sloppy feed's unclosed <br>s.
        if _tag_depth(body) > _LOOSE_MAX_DEPTH:
            refused = f"refused: elements nested more than {_LOOSE_MAX_DEPTH} deep"
            raise ParseError(refused, url) from None


_LOOSE_MAX_DEPTH = 8 * MAX_DEPTH
_TAG = re.compile(rb"<(/?)[A-Za-z_][^<>]*?(/?)>")


def _tag_depth(body: bytes) -> int:
    """The deepest nesting of start tags over end tags, counted on bytes."""
    depth = deepest = 0
    for match in _TAG.finditer(body):
        closing, empty = match.groups()
        if closing:
            depth = max(0, depth - 1)
        elif not empty:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > _LOOSE_MAX_DEPTH:
                    break
    return deepest


# --- too many entries ------------------------------------------------------------

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


# --- encodings -----------------------------------------------------------------

#: legacy names and the supersets that read them (what browsers do): a byte the
#: narrower table lacks is then not taken for damage
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "cp950",
    "ascii": "cp1252",
    "latin_1": "cp1252",
}
#: an encoding's name in a Content-Type header
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^\s;"']+)""", re.IGNORECASE)
#: the encoding in an XML declaration
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']{1,40})["']""")
#: the same, in the decoded text, to say UTF-8 once the body is re-encoded
_TEXT_DECLARATION = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")
#: where text is in the bytes: outside tags, CDATA markers dropped
_CDATA_MARKS = re.compile(rb"<!\[CDATA\[|\]\]>")
_TAGS = re.compile(rb"<[^<>]*>")
_LATIN_ACCENTED = re.compile(r"[\u00c0-\u024f]")
_LETTERS = re.compile(r"[^\W\d_]")
_MARKUP = re.compile(r"<[^>]*>")
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _codec(name: str | None) -> str | None:
    """Python's codec for a declared encoding name; None for an unknown one, or one
    in which the markup would not be ASCII (UTF-16 declared in an 8-bit body, UTF-7)."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().strip("\"'")).name.replace("-", "_")
    except (LookupError, ValueError):
        return None
    codec = {"utf_8_sig": "utf_8", "iso8859_1": "latin_1", "us_ascii": "ascii"}.get(codec, codec)
    codec = _SUPERSETS.get(codec, codec)
    if codec.startswith(("utf_16", "utf_32", "utf_7")):
        return None
    try:
        if "<?xml encoding='x'?>".encode(codec) != b"<?xml encoding='x'?>":
            return None
    except (UnicodeError, LookupError):
        return None
    return codec


def _declared(body: bytes, headers: Mapping[str, str]) -> list[str]:
    """The encodings the body is declared in, strongest first: BOM, HTTP charset,
    XML declaration (RFC 7303 section 3; a BOM wins, as in browsers)."""
    found: list[str | None] = []
    if body.startswith(_BOM):
        found.append("utf_8")
    header = _CHARSET.search(headers.get("content-type", ""))
    if header:
        found.append(_codec(header.group(1)))
    declaration = _XML_ENCODING.match(body.removeprefix(_BOM), 0, 512)
    if declaration:
        found.append(_codec(declaration.group(1).decode("ascii", "replace")))
    return list(dict.fromkeys(c for c in found if c))


def _decoded(body: bytes, codec: str) -> tuple[str, int, int]:
    """The body as `codec` reads it, each undecodable sequence replaced by U+FFFD
    (as `bytes.decode(..., "replace")` does), the number of those, and the number of
    non-ASCII characters read right."""
    try:
        text = body.decode(codec)
        bad = 0
    except UnicodeDecodeError:
        text = body.decode(codec, "replace")
        bad = text.count("\ufffd") - body.decode(codec, "ignore").count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return text, bad, non_ascii - bad


_WIDE_CHAR = re.compile("[\u0800-\ufffc\ufffe-\U0010ffff]")
#: one valid multi-byte UTF-8 sequence (a cp1251 body has next to none)
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


@functools.lru_cache(maxsize=64)
def _is_latin_page(codec: str) -> bool:
    """Whether a code page reads its high bytes as Latin letters (windows-1252, not
    windows-1251): only then can Cyrillic or Arabic bytes come out as mojibake."""
    try:
        "é".encode(codec)
    except UnicodeEncodeError:
        return False
    for letter in "Жعאλ":
        try:
            letter.encode(codec)
        except UnicodeEncodeError:
            continue
        return False
    return True


def _wide_chars(text: str) -> int:
    """Characters of three bytes or more in UTF-8, U+FFFD aside."""
    return len(_WIDE_CHAR.findall(text))


def _mojibake_ratio(text: str) -> float:
    """Share of letters that are accented Latin letters: high for Cyrillic, Arabic or
    UTF-8 bytes read as a Latin code page ("Ïðèâåò", "ĐŸĐ°ĐşĐ¸Ń…").

    Counted outside tags: element names are ASCII letters, and in a short feed they
    outnumber the text enough to hide the mojibake.
    """
    text = _MARKUP.sub(" ", text)
    letters = len(_LETTERS.findall(text))
    return len(_LATIN_ACCENTED.findall(text)) / letters if letters else 0.0


def _is_latin(text: str) -> bool:
    """Whether the non-ASCII letters of a reading are Latin ones (a Western text)."""
    letters: list[str] = [c for c in _LETTERS.findall(text) if not c.isascii()]
    latin = sum("\u00c0" <= c <= "\u024f" for c in letters)
    return latin * 2 >= len(letters)


def _detect(body: bytes) -> tuple[str, str, int] | None:
    """The body's text, encoding and undecodable sequences by charset-normalizer, for
    a body that does not say its encoding, or says one that does not read it.

    Only the text between tags is measured: the markup is ASCII in every candidate and
    drowns the signal of a short feed. Latin text gives no clear winner among the
    Western code pages (German reads the same in cp775 and cp1250), so a Latin
    reading that windows-1252, by far the commonest of them, reads without
    mojibake is read as windows-1252.
    """
    import charset_normalizer  # only for the rare body that needs it

    sample = _TAGS.sub(b" ", _CDATA_MARKS.sub(b" ", body))
    best = charset_normalizer.from_bytes(sample).best()
    if best is None:
        return None
    codec = best.encoding
    text = str(best)
    if codec != "cp1252" and _is_latin(text):
        try:
            western = sample.decode("cp1252")
        except UnicodeDecodeError:
            pass
        else:
            if _mojibake_ratio(western) < 0.3:
                codec = "cp1252"
    text, bad, _ = _decoded(body, codec)
    return text, codec, bad


def _reading(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, str | None] | None:
    """The body as UTF-8, and a note when it was not read as it declares; None for a
    UTF-16/32 body, which feedparser reads as it is.

    The declared encoding is kept, and only the bytes it cannot read are replaced
    (with U+FFFD), while it reads most of the text: one stray byte in a UTF-8 feed
    must not turn every title into mojibake, as feedparser's fallback to
    windows-1252 or iso-8859-2 for the whole body does. Another reading is taken
    only when it is clearly better: a body that is valid UTF-8 whatever it declares
    (legacy text is next to never valid UTF-8), another declared encoding that reads
    it all, or charset-normalizer's guess when the declared one reads almost nothing
    (cp1251, koi8-r or windows-1256 bodies that declare nothing, or declare UTF-8).
    """
    if body.startswith(_WIDE_BOMS) or b"\x00" in body[:4]:
        return None
    if body.isascii():
        return body, None
    declared = _declared(body, headers)
    codec = declared[0] if declared else "utf_8"
    if codec == "utf_8" and not body.startswith(_BOM):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return body, None  # the common case: nothing to count or re-encode
    text, bad, good = _decoded(body, codec)
    note = None
    if codec != "utf_8" and _UTF8_SEQUENCE.search(body):
        as_utf8, utf8_bad, utf8_good = _decoded(body, "utf_8")
        if utf8_good > 4 * utf8_bad and (bad or not utf8_bad or _mojibake_ratio(text) >= 0.3):
            name = codec.replace("_", "-")
            text, codec, bad, note = as_utf8, "utf_8", utf8_bad, f"declared {name}, read as utf-8"
    if bad > good:
        # The declared encoding reads less than half of the text: it is not this body's,
        # unless it is UTF-8 and a guess would read it as Latin text. Legacy text next
        # to never forms valid UTF-8 by chance (the 7,000 non-ASCII bytes of a Russian
        # cp1251 feed form none, of an Urdu cp1256 one, 50 short ones), so in a text
        # that is mostly ASCII a few valid sequences outweigh many stray bytes.
        clearly = codec != "utf_8" or bad > 4 * good + 16 * _wide_chars(text)
        for other in declared[1:]:
            other_text, other_bad, _ = _decoded(body, other)
            if not other_bad:
                name = codec.replace("_", "-")
                text, codec, bad = other_text, other, 0
                note = f"the declared {name} does not read the body; read as {other}, also declared"
                break
        else:
            guess = _detect(body)
            if guess is not None and guess[1] != codec and (clearly or not _is_latin(guess[0])):
                name = codec.replace("_", "-")
                said = f"the declared {name}" if declared else "utf-8, the default,"
                text, codec, bad = guess
                note = f"{said} does not read the body; read as {codec}"
    elif not bad and _is_latin_page(codec) and _mojibake_ratio(text) >= 0.3:
        # A Latin code page declared for Cyrillic or Arabic bytes ("Ïðèâåò").
        guess = _detect(body)
        if guess is not None and _mojibake_ratio(guess[0]) < 0.1:
            note = f"the declared {codec} reads as mojibake; read as {guess[1]}"
            text, codec, bad = guess
    if bad:
        name = codec.replace("_", "-")
        damage = f"{bad} byte sequence{'s' if bad > 1 else ''} not valid {name} replaced"
        note = f"{note}; {damage}" if note else damage
    note = f"encoding: {note}" if note else None
    if codec == "utf_8" and not bad and not body.startswith(_BOM):
        return body, note
    text = _TEXT_DECLARATION.sub(r'\1"utf-8"', text.removeprefix("\ufeff"), count=1)
    return text.encode("utf-8"), note


# --- JSON Feed -----------------------------------------------------------------


def _is_json(body: bytes, headers: Mapping[str, str]) -> bool:
    start = body.lstrip()
    if start.startswith(_BOM):
        start = start[len(_BOM) :].lstrip()
    if start.startswith(b"{"):
        return True
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type in _JSON_TYPES and not start.startswith(b"<")


def _parse_json(
    body: bytes, url: str | None, max_entries: int, max_field: int
) -> models.ParsedFeed:
    """Read a JSON Feed 1.0/1.1 document (https://www.jsonfeed.org/version/1.1/)."""
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ParseError(f"not a feed: broken JSON ({_describe(e)})", url) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise ParseError("not a feed: JSON without an items list", url)
    version = doc.get("version")
    warning = None
    if not (isinstance(version, str) and "jsonfeed.org/version/" in version):
        warning = f"JSON Feed without a known version: {str(version)[:80]!r}"

    entries = []
    not_objects = 0
    for item in doc["items"]:
        if not isinstance(item, dict):
            not_objects += 1
            continue
        link = _text(item.get("url")) or _text(item.get("external_url"))
        if link and url:
            link = urljoin(url, link)
        content = _text(item.get("content_html"))
        if not content and _text(item.get("content_text")):
            content = html.escape(_text(item.get("content_text")) or "")
        summary = html.escape(_text(item.get("summary")) or "")
        published = _json_date(item.get("date_published"))
        updated = _json_date(item.get("date_modified"))
        entries.append(
            models.ParsedEntry(
                guid=_cut(_json_id(item.get("id")), max_field),
                link=_cut(link, max_field),
                title=_cut(_text(item.get("title")), max_field) or "",
                summary=_cut(summary, max_field) or "",
                content=_cut(content, max_field) or "",
                author=_cut(_json_author(item), max_field),
                published=published or updated,
                updated=updated,
            )
        )
    kept, skipped = _keep(entries, max_entries)
    return models.ParsedFeed(
        title=_cut(_text(doc.get("title")), max_field),
        link=_cut(_text(doc.get("home_page_url")), max_field),
        entries=kept,
        warning=warning,
        language=_language(doc.get("language")),
        read=len(doc["items"]),
        skipped=models.add_counts(skipped, {"no_content": not_objects}),
    )


def _json_author(item: Mapping[str, Any]) -> str | None:
    authors = item.get("authors")
    if not isinstance(authors, list):
        authors = [item.get("author")]
    names = [_text(a.get("name")) for a in authors if isinstance(a, dict)]
    return ", ".join(n for n in names if n) or None


def _json_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _sane(parsed.astimezone(UTC))


# --- feedparser entries ----------------------------------------------------------


#: an href/src that is not an absolute http(s)/mailto URL or a fragment, in lowercased
#: markup (scanning for a lowercase literal is three times faster than IGNORECASE)
_RELATIVE_LINK = re.compile(r"""(?:href|src)\s*=\s*["']?\s*(?!https?:|mailto:|#|["'\s>])""")


def _has_relative_link(markup: str) -> bool:
    low = markup.lower()
    found = _RELATIVE_LINK.search(low)
    while found is not None:
        at = found.start()
        if at == 0 or not (low[at - 1].isalnum() or low[at - 1] == "_"):  # a word start
            return True
        found = _RELATIVE_LINK.search(low, at + 1)
    return False


def _absolute_links(markup: str, base: str | None) -> str:
    """Resolve relative href/src against the item's base, so republished HTML keeps
    its links (the sanitizer drops relative ones). Untouched when there are none."""
    if not base or not markup or not _has_relative_link(markup):
        return markup
    # lxml (5 MiB of a process) only for the few feeds with relative links
    import lxml.etree
    import lxml.html

    try:
        fragments = lxml.html.fragments_fromstring(markup)
    except (lxml.etree.ParserError, ValueError):
        return markup
    out = []
    for fragment in fragments:
        if isinstance(fragment, str):
            out.append(html.escape(fragment, quote=False))
            continue
        fragment.make_links_absolute(base, resolve_base_href=False, handle_failures="discard")
        out.append(lxml.html.tostring(fragment, encoding="unicode"))
    return "".join(out)


def _base(detail: Any, fallback: str | None) -> str | None:
    base = detail.get("base") if isinstance(detail, dict) else None
    return base if isinstance(base, str) and base else fallback


def _absolute(base: str | None, link: str | None) -> str | None:
    """A link resolved against the document's URL, as feedparser does with a base
    (including its refusal of unsafe schemes); absolute web links are left as they are."""
    if not base or not link or link.startswith(("http://", "https://")):
        return link
    return feedparser.urls.make_safe_absolute_uri(base, link) or None


def _entry_from_feedparser(
    e: Any, max_field: int, url: str | None = None, base: str | None = None, *, atom: bool = False
) -> models.ParsedEntry:
    """`base`: resolve the entry's link against it (None: feedparser already did).

    `atom`: the document is Atom, whose titles say whether they are text or markup.
    """
    contents = e.get("content") or []
    content = ""
    for c in contents:
        if "html" in (c.get("type") or ""):
            content = _absolute_links(c.get("value") or "", _base(c, url))
            break
    else:
        if contents:
            content = _absolute_links(contents[0].get("value") or "", _base(contents[0], url))
    if not content:
        # Yandex-style feeds (many Russian outlets) carry the article as plain text here.
        full_text = e.get("yandex_full-text")
        if isinstance(full_text, str) and full_text.strip():
            content = "<p>" + html.escape(full_text.strip()) + "</p>"
    # dict.get, not FeedParserDict.get: the latter maps a missing updated_parsed to
    # published_parsed with a DeprecationWarning (feedparser issue 310).
    published = _struct_date(dict.get(e, "published_parsed"))
    updated = _struct_date(dict.get(e, "updated_parsed"))
    return models.ParsedEntry(
        guid=_cut(_text(e.get("id")), max_field),
        link=_cut(_absolute(base, _text(e.get("link"))), max_field),
        title=_cut(e.get("title") or "", max_field) or "",
        summary=_cut(
            _absolute_links(e.get("summary") or "", _base(e.get("summary_detail"), url)),
            max_field,
        )
        or "",
        content=_cut(content, max_field) or "",
        author=_cut(_text(e.get("author")), max_field),
        published=published or updated,
        updated=updated,
        title_markup=_title_markup(e.get("title_detail")) if atom else None,
    )


def _title_markup(detail: Any) -> bool | None:
    """An Atom title's type attribute, as feedparser reports it: text, or (X)HTML.

    Only Atom's is trusted: for RSS feedparser guesses "text/html" from the text
    itself, and `normalize.clean_title` makes its own, stricter guess.
    """
    kind = detail.get("type") if isinstance(detail, dict) else None
    if kind == "text/plain":
        return False
    if kind in ("text/html", "application/xhtml+xml"):
        return True
    return None


def _struct_date(value: Any) -> datetime | None:
    # feedparser gives time.struct_time already converted to UTC.
    if value is None:
        return None
    try:
        seconds = calendar.timegm(value)
        return _sane(datetime.fromtimestamp(seconds, UTC))
    except (OverflowError, ValueError, OSError, TypeError):
        return None


def _sane(value: datetime) -> datetime | None:
    return value if MIN_YEAR <= value.year <= MAX_YEAR else None


def _hint_seconds(feed: Mapping[str, Any]) -> int | None:
    """The slowest interval the feed asks for: `<ttl>` minutes or sy:updatePeriod/Frequency."""
    hints = []
    ttl = _positive_int(feed.get("ttl"))
    if ttl:
        hints.append(ttl * 60)
    period = _SY_PERIODS.get((_text(feed.get("sy_updateperiod")) or "").lower())
    if period:
        frequency = _positive_int(feed.get("sy_updatefrequency")) or 1
        hints.append(max(1, period // frequency))
    # A year is already far beyond any poll interval we would honour.
    hints = [min(h, 365 * 86400) for h in hints]
    return max(hints) if hints else None


def _positive_int(value: Any) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


# --- shared helpers --------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A stripped string, or None for anything else: a JSON Feed's `"title": 1000`
    or `"url": 1.2` is a mistake, not a title "1000" or a link to "1.2"."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _json_id(value: Any) -> str | None:
    """An item id: JSON Feed 1.1 says a reader must coerce a number to a string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _text(value)


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
