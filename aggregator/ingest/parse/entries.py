"""feedparser's result into `ParsedEntry`s: links made absolute, dates kept sane,
the feed's interval hint."""

from __future__ import annotations

import calendar
import html
import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from aggregator import models
from aggregator.errors import ParseError
from aggregator.ingest.parse.fields import MAX_YEAR, MIN_YEAR, _cut, _describe, _text

#: sy:updatePeriod names, in seconds (RSS 1.0 syndication module)
_SY_PERIODS = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 7 * 86400,
    "monthly": 30 * 86400,
    "yearly": 365 * 86400,
}


#: feedparser's complaints that say nothing about the markup
_HARMLESS = (feedparser.NonXMLContentType,)


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
