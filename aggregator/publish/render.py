"""Render a topic's stories as Atom, RSS, JSON Feed and the topics OPML.

Pure: data in, bytes out. No I/O, no clock: the same `TopicFeed` always gives the
same bytes, so ETags stay put and `aggregator export` matches HTTP byte for byte.
Everything a stranger wrote (titles, HTML, links, outlet and reporter names) passes
through `sanitize_html`, `safe_url`, `title_text` or `plain` before it reaches any output,
and each of those ends with `text.xml_text`. An entry that still cannot be
rendered is logged and left out of that response; it never fails the feed.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator.models import FeedItem, TopicFeed, TopicSummary
from aggregator.publish import opml
from aggregator.publish.sanitize import html_safe, plain, safe_url, sanitize_html, title_text
from aggregator.text import xml_text

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    "atom": "application/atom+xml; charset=utf-8",
    "rss": "application/rss+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}

#: The feed's `updated` when it has no items: a fixed instant, never the clock.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
GENERATOR = "aggregator"

# --- one item, prepared once for every format ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    id: str
    title: str
    link: str | None
    #: sanitized HTML: the story's body plus "Also reported by" and "Matched"
    content_html: str
    #: sanitized summary HTML when the item has a separate body, else None
    summary_html: str | None
    summary_text: str | None
    author: str
    source: str
    #: the outlet's own URL; falls back to the article, then our page (RSS requires one)
    source_url: str
    source_url_known: str | None
    published: datetime
    updated: datetime
    related: tuple[tuple[str, str], ...]
    matched: tuple[str, ...]


def _utc(dt: datetime) -> datetime:
    """Aware UTC to the second: RSS dates cannot carry microseconds, so no format does."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).replace(microsecond=0)


def _rfc3339(dt: datetime) -> str:
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _prepare(item: FeedItem, base_url: str) -> _Item:
    title = title_text(item.title) or "(untitled)"
    link = safe_url(item.link)
    source = plain(item.source) or "Unknown outlet"
    reporter = plain(item.author)
    # Many feeds put the outlet's name in the author field: "Dawn, Dawn" helps nobody.
    if reporter and reporter.casefold() != source.casefold():
        author = f"{reporter}, {source}"
    else:
        author = source
    related = tuple(
        (url, plain(r.source) or "Unknown outlet")
        for r in item.related
        if (url := safe_url(r.url)) is not None
    )
    matched = tuple(dict.fromkeys(t for t in (plain(m) for m in item.matched) if t))

    content = sanitize_html(item.content_html)
    summary = sanitize_html(item.summary_html)
    body = content or summary
    extras = []
    if related:
        links = ", ".join(
            f'<a href="{html.escape(url)}">{html.escape(name)}</a>' for url, name in related
        )
        extras.append(f"<p>Also reported by: {links}</p>")
    if matched:
        extras.append(f"<p>Matched: {html.escape(', '.join(matched))}</p>")
    # The extras go through the same sanitizer so their links get the same rel.
    content_html = "\n".join(p for p in (body, sanitize_html("\n".join(extras))) if p)
    if not content_html:
        content_html = f"<p>{html.escape(title)}</p>"

    known_source_url = safe_url(item.source_url)
    summary_text = plain(summary) if summary else None
    uid = xml_text(item.id)
    if not uid.strip():
        raise ValueError("no id")
    return _Item(
        id=uid,
        title=title,
        link=link,
        content_html=content_html,
        summary_html=summary if content and summary and summary != content else None,
        summary_text=summary_text or None,
        author=author,
        source=source,
        source_url=known_source_url or link or f"{base_url}/",
        source_url_known=known_source_url,
        published=_utc(item.published),
        updated=_utc(item.updated),
        related=related,
        matched=matched,
    )


@dataclass(frozen=True, slots=True)
class _Feed:
    title: str
    description: str
    base_url: str
    home: str
    slug: str
    updated: datetime
    items: tuple[_Item, ...]

    def url(self, fmt: str) -> str:
        return feed_url(self.base_url, self.slug, fmt)


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def feed_url(base_url: str, slug: str, fmt: str) -> str:
    """The public address of one topic feed: the self link, and what the index page links."""
    return f"{_base(base_url)}/topics/{quote(slug, safe='')}.{fmt}"


def _describe(query: str | None) -> str:
    # Readers show a feed's description as HTML often enough that the query, too,
    # goes out as plain text.
    if query and (text := plain(query)):
        return f"Stories matching: {text}"
    return "Every story from the topic's feeds"


def _left_out(slug: str, fmt: str, link: str | None, uid: str, exc: BaseException) -> None:
    """Log an entry that could not be rendered: the feed goes out without it."""
    reason = f"{type(exc).__name__}: {exc}"[:300]
    log.warning("topic %s (%s): entry %r (id %r) left out: %s", slug, fmt, link or "", uid, reason)


def _prepare_feed(feed: TopicFeed) -> _Feed:
    base = _base(feed.base_url)
    newest = feed.updated
    items = []
    for item in feed.items:
        try:
            items.append(_prepare(item, base))
        except Exception as exc:  # one entry never fails the feed
            _left_out(feed.slug, "every format", item.link, str(item.id), exc)
    return _Feed(
        title=plain(feed.title) or feed.slug,
        description=_describe(feed.query),
        base_url=base,
        home=f"{base}/",
        slug=feed.slug,
        updated=_utc(newest) if newest is not None else EPOCH,
        items=tuple(items),
    )


# --- Atom and RSS (feedgen) -----------------------------------------------------------------


def _generator(f: _Feed, fmt: str, mime: str) -> tuple[FeedGenerator, list[_Item]]:
    """A FeedGenerator with every time-dependent default overwritten, and the items in it.

    feedgen stamps `datetime.now()` into the feed's updated/lastBuildDate and its own
    version into <generator>; both would change the bytes between two renders.
    An item feedgen cannot build is logged and left out (see `_add_entry`).
    """
    fg = FeedGenerator()
    fg.id(f.url(fmt))
    fg.title(f.title)
    fg.description(f.description)
    # feedgen takes the *last* feed link as the RSS <link>: the page, not the feed.
    fg.link(href=f.url(fmt), rel="self", type=mime)
    fg.link(href=f.home, rel="alternate", type="text/html")
    fg.generator(GENERATOR)
    fg.updated(f.updated)
    if fmt == "rss":
        fg.load_extension("dc", atom=False, rss=True)
    kept = []
    for it in f.items:
        # items arrive newest first; keep that order
        fe = fg.add_entry(_BuiltOnce(), order="append")
        try:
            _add_entry(fe, it, fmt)
        except Exception as exc:  # one entry never fails the feed
            fg.remove_entry(fe)
            _left_out(f.slug, fmt, it.link, it.id, exc)
        else:
            kept.append(it)
    return fg, kept


class _BuiltOnce(FeedEntry):  # type: ignore[misc]
    """A feedgen entry whose XML is built once, by `_add_entry`, and reused by the feed.

    feedgen builds entries only when the whole feed is serialized, where an error
    fails every entry; building each on its own pins a failure on its entry, and
    keeping that build costs nothing more.
    """

    _built: Any = None

    def atom_entry(self, extensions: bool = True) -> Any:
        if self._built is None:
            self._built = super().atom_entry(extensions)
        return self._built

    def rss_entry(self, extensions: bool = True) -> Any:
        if self._built is None:
            self._built = super().rss_entry(extensions)
        return self._built


def _add_entry(fe: _BuiltOnce, it: _Item, fmt: str) -> None:
    """Fill one feedgen entry and build its XML now, so that a failure is its own.

    RSS callers hold `_RSS_LOCK` (feedgen's dates).
    """
    fe.id(it.id)  # also the RSS guid, isPermaLink="false"
    fe.title(it.title if fmt == "atom" else html_safe(it.title))
    fe.updated(it.updated)
    fe.published(it.published)
    fe.author(name=it.author)
    if it.summary_html:
        fe.summary(it.summary_html, type="html")
    fe.content(it.content_html, type="html")
    for term in it.matched:
        fe.category(term=term)
    if fmt == "rss":
        if it.link:
            fe.link(href=it.link, rel="alternate")
        fe.source(url=it.source_url, title=it.source)
        # RSS <author> must be an e-mail address (the W3C validator errors on a
        # bare name), so the "Reporter, Outlet" name goes in dc:creator.
        fe.dc.dc_creator(it.author)
    if fmt == "atom":
        # feedgen 1.0 drops rel/type/title from entry links (every related copy would
        # become a second rel="alternate" link) and cannot write <source>: its entry
        # extension API adds them to the XML it builds.
        fe.register_extension("aggregator", _AtomExtras, atom=True, rss=False)
        fe.aggregator.item = it
        fe.atom_entry()
    else:
        fe.rss_entry()


class _AtomExtras(BaseEntryExtension):  # type: ignore[misc]
    """What feedgen cannot write into an Atom entry: typed links, `<source>`, and an
    HTML-typed title when plain text would be misread."""

    item: _Item

    # feedgen builds entries without a namespace (the feed's xmlns is a plain
    # attribute), so the elements added here use bare names too.
    def extend_atom(self, entry: Any) -> Any:
        it = self.item
        title = entry.find("title")
        if title is not None and html_safe(it.title) != it.title:
            # Plain text that an HTML reader would misread goes out as escaped HTML, which
            # every reader reads the same way: "The <script> tag" keeps its word.
            title.set("type", "html")
            title.text = html.escape(it.title, quote=False)
        if it.link:
            link = etree.SubElement(entry, "link", href=it.link, rel="alternate")
            link.set("type", "text/html")
        for url, name in it.related:
            link = etree.SubElement(entry, "link", href=url, rel="related")
            link.set("type", "text/html")
            link.set("title", name)
        source = etree.SubElement(entry, "source")
        if it.source_url_known:
            etree.SubElement(source, "id").text = it.source_url_known
        etree.SubElement(source, "title").text = it.source
        # RFC 4287 wants the source feed's <updated>; the newest we know of it is this
        # entry's own (and it keeps the same stories rendering to the same bytes).
        etree.SubElement(source, "updated").text = it.updated.isoformat()  # as feedgen's
        if it.source_url_known:
            etree.SubElement(source, "link", href=it.source_url_known)
        return entry


def atom(feed: TopicFeed) -> bytes:
    """Render the topic as Atom 1.0 (RFC 4287)."""
    f = _prepare_feed(feed)
    fg, _ = _generator(f, "atom", "application/atom+xml")
    out: bytes = fg.atom_str(pretty=True, encoding="UTF-8")
    return out


# feedgen formats RSS dates by switching the process-wide locale to "C" and back;
# two threads doing that at once can leave the locale switched. Serialize it.
_RSS_LOCK = threading.Lock()
_RSS_TITLE = re.compile(rb"<title>([^<]*)</title>")


def _hex_escape_title(m: re.Match[bytes]) -> bytes:
    # RSS Best Practices Profile: "&" and "<" in plain-text titles as &#x26; and &#x3C;,
    # so readers that treat titles as HTML and readers that do not agree on the text.
    text = m.group(1).replace(b"&amp;", b"&#x26;").replace(b"&lt;", b"&#x3C;")
    return b"<title>" + text + b"</title>"


def rss(feed: TopicFeed) -> bytes:
    """Render the topic as RSS 2.0, with atom:link rel="self" and dc:creator authors."""
    f = _prepare_feed(feed)
    with _RSS_LOCK:
        fg, _ = _generator(f, "rss", "application/rss+xml")
        out: bytes = fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return _RSS_TITLE.sub(_hex_escape_title, out)


# --- JSON Feed 1.1 ----------------------------------------------------------------------------


def _json_bytes(doc: Any) -> bytes:
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    # Markup characters only ever occur inside JSON strings, so escaping them there is
    # lossless, and the body cannot be sniffed into HTML by a careless client.
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + "\n").encode("utf-8")


def json_feed(feed: TopicFeed) -> bytes:
    """Render the topic as JSON Feed 1.1; our extension fields live under `_aggregator`."""
    f = _prepare_feed(feed)
    items = []
    for it in f.items:
        try:
            entry = _json_item(it)
            # A string json cannot encode (a lone surrogate) fails here, not the feed.
            json.dumps(entry, ensure_ascii=False).encode("utf-8")
        except Exception as exc:  # one entry never fails the feed
            _left_out(f.slug, "json", it.link, it.id, exc)
        else:
            items.append(entry)
    doc = {
        "version": JSON_FEED_VERSION,
        "title": f.title,
        "home_page_url": f.home,
        "feed_url": f.url("json"),
        "description": f.description,
        "items": items,
    }
    return _json_bytes(doc)


def _json_item(it: _Item) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": it.id}
    if it.link:
        entry["url"] = it.link
    entry["title"] = it.title
    entry["content_html"] = it.content_html
    if it.summary_text:
        entry["summary"] = it.summary_text
    entry["date_published"] = _rfc3339(it.published)
    entry["date_modified"] = _rfc3339(it.updated)
    entry["authors"] = [{"name": it.author}]
    if it.matched:
        entry["tags"] = list(it.matched)
    ext: dict[str, Any] = {"source": it.source}
    if it.source_url_known:
        ext["source_url"] = it.source_url_known
    ext["related"] = [{"url": url, "source": name} for url, name in it.related]
    entry["_aggregator"] = ext
    return entry


# --- OPML -------------------------------------------------------------------------------------


def topics_opml(topics: Sequence[TopicSummary], base_url: str) -> bytes:
    """List every topic's Atom feed as OPML 2.0, for importing all topics into a reader at once."""
    base = _base(base_url)
    outlines = []
    for topic in topics:
        title = plain(topic.title) or topic.slug
        outlines.append(
            {
                "text": title,
                "title": title,
                "description": _describe(topic.query),
                "xmlUrl": feed_url(base, topic.slug, "atom"),
                "htmlUrl": f"{base}/",
            }
        )
    return opml.write("Topic feeds", outlines)
