"""Topic feeds rendered by `aggregator.render`, read back by independent parsers.

Atom and RSS are read with feedparser and a plain XML parser, JSON Feed with `json`,
the OPML with listparser; the hostile-HTML checks walk every node with the
standard library's HTML parser, not with the sanitizer under test.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import html
import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import feedgen.entry
import feedgen.feed
import feedparser
import listparser
import pytest

from aggregator.models import FeedItem, Related, TopicFeed, TopicSummary
from aggregator.publish import pages, render, sanitize

BASE = "http://127.0.0.1:8080"
ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
DC = "{http://purl.org/dc/elements/1.1/}"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def story(n: int, **changes: Any) -> FeedItem:
    """A story published `n` hours before T0; fields overridable per test."""
    when = T0 - timedelta(hours=n)
    base = FeedItem(
        id=f"tag:127.0.0.1,2024-05-01:{n}",
        title=f"Story number {n}",
        link=f"https://outlet{n}.example/news/{n}",
        summary_html=f"<p>Summary of story {n}.</p>",
        content_html=f"<p>Body of story {n}, <b>in full</b>.</p>",
        author=f"Reporter {n}",
        source=f"Outlet {n}",
        source_url=f"https://outlet{n}.example/",
        published=when,
        updated=when + timedelta(minutes=5),
    )
    return replace(base, **changes)


ITEMS = (
    story(
        1,
        title="Pakistan and Russia sign a trade deal",
        author="Asif Khan",
        source="Dawn",
        source_url="https://www.dawn.com/",
        related=(
            Related(url="https://tass.com/economy/1", source="TASS"),
            Related(url="https://tribune.com.pk/story/2", source="Express Tribune"),
        ),
        matched=("pakistan", "russia"),
    ),
    story(
        2,
        title="پاکستان اور روس کے درمیان تجارتی معاہدہ",
        author=None,
        source="بی بی سی اردو",
        content_html='<p dir="rtl">پاکستان اور روس نے معاہدے پر دستخط کیے۔</p>',
    ),
    story(
        3,
        title="Пакистан и Россия подписали соглашение",
        link=None,
        source="РИА Новости",
        author="Иван Петров",
        summary_html="",
        content_html="<p>Москва и Исламабад договорились.</p>",
    ),
    story(4, title="Tariffs < 5% & rising", source_url=None, content_html=""),
)
FEED = TopicFeed(
    slug="pakistan-russia",
    title="Pakistan–Russia",
    query="(pakistan OR islamabad) AND (russia OR moscow)",
    base_url=BASE,
    items=ITEMS,
)


def expected_author(item: FeedItem) -> str:
    return f"{item.author}, {item.source}" if item.author else item.source


def parse_xml(data: bytes) -> Element:
    root: Element = SafeET.fromstring(data)
    return root


def as_utc(parsed: time.struct_time) -> datetime:
    """feedparser's UTC struct_time as an aware datetime."""
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC)


# --- Atom ---------------------------------------------------------------------------------------


def test_atom_reads_back_with_every_field() -> None:
    data = render.atom(FEED)
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Pakistan–Russia"
    self_links = [ln.href for ln in parsed.feed.links if ln.rel == "self"]
    assert self_links == [f"{BASE}/topics/pakistan-russia.atom"]
    assert [ln.href for ln in parsed.feed.links if ln.rel == "alternate"] == [f"{BASE}/"]
    assert parsed.feed.updated_parsed[:6] == (2024, 5, 1, 11, 5, 0)

    assert [e.id for e in parsed.entries] == [i.id for i in ITEMS]
    for entry, item in zip(parsed.entries, ITEMS, strict=True):
        assert entry.title == item.title
        assert entry.author == expected_author(item)
        assert entry.source.title == item.source
        alternates = [ln.href for ln in entry.get("links", []) if ln.rel == "alternate"]
        assert alternates == ([item.link] if item.link else [])
        related = [(ln.href, ln.title) for ln in entry.get("links", []) if ln.rel == "related"]
        assert related == [(r.url, r.source) for r in item.related]
        assert [t.term for t in entry.get("tags", [])] == list(item.matched)
        assert as_utc(entry.published_parsed) == item.published
        assert as_utc(entry.updated_parsed) == item.updated


def test_atom_has_what_the_validator_requires() -> None:
    root = parse_xml(render.atom(FEED))
    for name in ("id", "title", "updated"):
        assert root.find(ATOM + name) is not None, name
    for entry in root.iter(ATOM + "entry"):
        for name in ("id", "title", "updated"):
            assert (entry.findtext(ATOM + name) or "").strip(), name
        assert (entry.findtext(f"{ATOM}author/{ATOM}name") or "").strip()
        # an entry without an alternate link must carry content
        has_link = any(ln.get("rel") == "alternate" for ln in entry.iter(ATOM + "link"))
        assert has_link or entry.find(ATOM + "content") is not None
        alternates = [ln for ln in entry.findall(ATOM + "link") if ln.get("rel") == "alternate"]
        assert len(alternates) <= 1


def test_atom_source_names_the_outlet_and_its_address_where_known() -> None:
    root = parse_xml(render.atom(FEED))
    sources = [e.find(ATOM + "source") for e in root.iter(ATOM + "entry")]
    first, last = sources[0], sources[-1]
    assert first is not None and last is not None
    assert first.findtext(ATOM + "title") == "Dawn"
    assert first.findtext(ATOM + "id") == "https://www.dawn.com/"
    assert [ln.get("href") for ln in first.iter(ATOM + "link")] == ["https://www.dawn.com/"]
    assert last.findtext(ATOM + "title") == "Outlet 4"
    assert last.find(ATOM + "id") is None


# --- RSS ----------------------------------------------------------------------------------------

RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct"
    r"|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}$"
)


def test_rss_reads_back_with_every_field() -> None:
    data = render.rss(FEED)
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    assert parsed.feed.title == "Pakistan–Russia"
    assert parsed.feed.link == f"{BASE}/"
    assert [e.id for e in parsed.entries] == [i.id for i in ITEMS]
    for entry, item in zip(parsed.entries, ITEMS, strict=True):
        assert entry.title == item.title
        assert entry.get("link") == item.link
        assert entry.author == expected_author(item)
        assert entry.source.title == item.source
        assert [t.term for t in entry.get("tags", [])] == list(item.matched)

    root = parse_xml(data)
    channel = root.find("channel")
    assert channel is not None
    for name in ("title", "link", "description"):
        assert (channel.findtext(name) or "").strip(), name
    self_links = [
        ln.get("href") for ln in channel.findall(ATOM + "link") if ln.get("rel") == "self"
    ]
    assert self_links == [f"{BASE}/topics/pakistan-russia.rss"]
    assert RFC822.match(channel.findtext("lastBuildDate") or "")
    for node, item in zip(channel.iter("item"), ITEMS, strict=True):
        guid = node.find("guid")
        assert guid is not None and guid.text == item.id
        assert guid.get("isPermaLink") == "false"
        pub = node.findtext("pubDate") or ""
        assert RFC822.match(pub), pub
        assert email.utils.parsedate_to_datetime(pub) == item.published
        # <author> must be an e-mail address in RSS: the name goes in dc:creator
        assert node.find("author") is None
        assert node.findtext(DC + "creator") == expected_author(item)
        source = node.find("source")
        assert source is not None and source.text == item.source
        assert source.get("url") == (item.source_url or item.link or f"{BASE}/")


RSS_CHANNEL = {
    "title",
    "link",
    "description",
    ATOM + "link",
    "docs",
    "generator",
    "lastBuildDate",
    "item",
}
RSS_ITEM = {
    "title",
    "link",
    "description",
    CONTENT + "encoded",
    "guid",
    "category",
    "pubDate",
    "source",
    DC + "creator",
}


def test_rss_has_no_unknown_elements() -> None:
    root = parse_xml(render.rss(FEED))
    channel = root.find("channel")
    assert channel is not None
    assert {child.tag for child in channel} <= RSS_CHANNEL
    for item in channel.iter("item"):
        assert {child.tag for child in item} <= RSS_ITEM


def test_rss_titles_use_hex_references_for_markup_characters() -> None:
    data = render.rss(FEED)
    assert b"<title>Tariffs &#x3C; 5% &#x26; rising</title>" in data
    assert feedparser.parse(data).entries[3].title == "Tariffs < 5% & rising"


# --- JSON Feed ----------------------------------------------------------------------------------


def test_json_feed_has_the_required_fields_and_our_extension() -> None:
    doc = json.loads(render.json_feed(FEED))
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["title"] == "Pakistan–Russia"
    assert doc["home_page_url"] == f"{BASE}/"
    assert doc["feed_url"] == f"{BASE}/topics/pakistan-russia.json"
    assert [i["id"] for i in doc["items"]] == [i.id for i in ITEMS]
    for entry, item in zip(doc["items"], ITEMS, strict=True):
        assert entry["title"] == item.title
        assert entry.get("url") == item.link
        assert entry["content_html"] or entry["content_text"]
        assert entry["authors"] == [{"name": expected_author(item)}]
        assert entry["_aggregator"]["source"] == item.source
        assert entry["_aggregator"]["related"] == [
            {"url": r.url, "source": r.source} for r in item.related
        ]
        assert entry.get("tags", []) == list(item.matched)
        assert datetime.fromisoformat(entry["date_published"]) == item.published
        assert datetime.fromisoformat(entry["date_modified"]) == item.updated


def test_json_feed_keeps_non_latin_text_readable() -> None:
    data = render.json_feed(FEED)
    assert "پاکستان اور روس".encode() in data
    assert "Пакистан и Россия".encode() in data


# --- across formats -----------------------------------------------------------------------------


def test_ids_and_order_are_the_same_in_every_format() -> None:
    atom_ids = [e.id for e in feedparser.parse(render.atom(FEED)).entries]
    rss_ids = [e.id for e in feedparser.parse(render.rss(FEED)).entries]
    json_ids = [i["id"] for i in json.loads(render.json_feed(FEED))["items"]]
    assert atom_ids == rss_ids == json_ids == [i.id for i in ITEMS]
    published = [i.published for i in ITEMS]
    assert published == sorted(published, reverse=True)


class LinkCollector(HTMLParser):
    """Paragraph texts and the links inside each, from a fragment of HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[tuple[str, list[tuple[str | None, str | None]]]] = []
        self._text: list[str] = []
        self._links: list[tuple[str | None, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p":
            self._text, self._links = [], []
        elif tag == "a":
            a = dict(attrs)
            self._links.append((a.get("href"), a.get("rel")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.paragraphs.append(("".join(self._text), list(self._links)))

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def html_of_every_format(feed: TopicFeed) -> list[list[str]]:
    """Per item, the entry HTML each format carries (Atom content, RSS content:encoded, JSON)."""
    atom_root = parse_xml(render.atom(feed))
    rss_root = parse_xml(render.rss(feed))
    atom_html = [e.findtext(ATOM + "content") or "" for e in atom_root.iter(ATOM + "entry")]
    rss_html = [
        i.findtext(CONTENT + "encoded") or i.findtext("description") or ""
        for i in rss_root.iter("item")
    ]
    json_html = [i["content_html"] for i in json.loads(render.json_feed(feed))["items"]]
    return [list(t) for t in zip(atom_html, rss_html, json_html, strict=True)]


def test_entry_html_lists_other_outlets_and_matched_terms() -> None:
    for fragment in html_of_every_format(FEED)[0]:
        collector = LinkCollector()
        collector.feed(fragment)
        texts = {text.split(":")[0]: (text, links) for text, links in collector.paragraphs}
        text, links = texts["Also reported by"]
        assert text == "Also reported by: TASS, Express Tribune"
        assert [href for href, _ in links] == [r.url for r in ITEMS[0].related]
        assert all(rel == "nofollow noopener noreferrer" for _, rel in links)
        assert texts["Matched"][0] == "Matched: pakistan, russia"
        assert "Body of story 1" in fragment
    # a story with neither related copies nor matches has neither paragraph
    for fragment in html_of_every_format(FEED)[1]:
        assert "Also reported by" not in fragment and "Matched" not in fragment


def test_outlet_named_as_author_is_not_repeated() -> None:
    feed = replace(FEED, items=(story(1, author="Dawn", source="Dawn"),))
    assert feedparser.parse(render.atom(feed)).entries[0].author == "Dawn"


# --- determinism --------------------------------------------------------------------------------

RENDERERS = {"atom": render.atom, "rss": render.rss, "json": render.json_feed}


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_same_feed_gives_the_same_bytes(fmt: str) -> None:
    rerendered = replace(FEED, items=tuple(replace(i) for i in ITEMS))
    assert RENDERERS[fmt](FEED) == RENDERERS[fmt](rerendered)


class _AnyDatetime(type):
    # feedgen checks isinstance(value, datetime) against its own module global
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, datetime)


class _Later(datetime, metaclass=_AnyDatetime):
    """A clock thirty years on, as feedgen would see it if it read the clock."""

    @classmethod
    def now(cls, tz: Any = None) -> _Later:
        return cls(2054, 5, 1, 12, 0, 0, 123456, tzinfo=tz or UTC)


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_rendering_later_gives_the_same_bytes(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = RENDERERS[fmt](FEED)
    empty_before = RENDERERS[fmt](replace(FEED, items=()))
    monkeypatch.setattr(feedgen.feed, "datetime", _Later)
    monkeypatch.setattr(feedgen.entry, "datetime", _Later)
    assert RENDERERS[fmt](FEED) == before
    assert RENDERERS[fmt](replace(FEED, items=())) == empty_before


def test_another_process_timezone_and_locale_give_the_same_bytes() -> None:
    """A fresh interpreter in another zone renders byte for byte what this one does."""
    script = (
        "import sys, locale\n"
        "from tests.test_render import FEED\n"
        "from aggregator.publish import render\n"
        "locale.setlocale(locale.LC_ALL, '')\n"
        "out = render.atom(FEED) + render.rss(FEED) + render.json_feed(FEED)\n"
        "sys.stdout.buffer.write(out)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {"TZ": "Asia/Karachi", "LC_ALL": "C.UTF-8", "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, check=True
    )
    assert result.stdout == render.atom(FEED) + render.rss(FEED) + render.json_feed(FEED)


# --- empty and large topics ---------------------------------------------------------------------


def test_empty_topic_renders_valid_feeds_dated_at_the_epoch() -> None:
    empty = replace(FEED, items=())
    atom_feed = feedparser.parse(render.atom(empty))
    assert not atom_feed.bozo and atom_feed.entries == []
    assert atom_feed.feed.updated_parsed[:6] == (1970, 1, 1, 0, 0, 0)
    rss_feed = feedparser.parse(render.rss(empty))
    assert not rss_feed.bozo and rss_feed.entries == []
    channel = parse_xml(render.rss(empty)).find("channel")
    assert channel is not None
    assert channel.findtext("lastBuildDate") == "Thu, 01 Jan 1970 00:00:00 +0000"
    doc = json.loads(render.json_feed(empty))
    assert doc["items"] == [] and doc["version"] == "https://jsonfeed.org/version/1.1"


def test_everything_given_is_rendered() -> None:
    many = replace(FEED, items=tuple(story(n) for n in range(1, 121)))
    assert len(feedparser.parse(render.atom(many)).entries) == 120
    assert len(feedparser.parse(render.rss(many)).entries) == 120
    assert len(json.loads(render.json_feed(many))["items"]) == 120


# --- hostile input ------------------------------------------------------------------------------

HOSTILE_HTML = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;"
    "&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74"
    "&#x28&#x27&#x58&#x53&#x53&#x27&#x29>",
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href=" java\tscript:alert(1)">x</a>',
    '<a href="java\nscript:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="  JAVASCRIPT:alert(1)">x</a>',
    '<a href="java\x00script:alert(1)">x</a>',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<img src=x onerror=alert(1)>",
    '<img src="https://ok.example/a.png" onerror="alert(1)">',
    '<div style="width: expression(alert(1))">x</div>',
    '<style>body{background:url("javascript:alert(1)")}</style>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>',
    '<iframe src="https://evil.example/"></iframe>',
    '<form action="https://evil.example/"><button formaction="javascript:alert(1)">x</button>'
    "</form>",
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<<SCRIPT>alert("XSS");//<</SCRIPT>',
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>">',
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<!--<script>alert(1)</script>-->",
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    "<body onload=alert(1)>",
    '<link rel="stylesheet" href="javascript:alert(1)">',
    "<input onfocus=alert(1) autofocus>",
    "<details open ontoggle=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;",
    '"><script>alert(1)</script>',
    '<a href="//evil.example/x">protocol-relative</a>',
    '<a href="https://ok.example/" onclick="alert(1)" style="color:red">ok</a>',
    "<p>unclosed <b>bold <i>italic",
]

HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;avascript&#x3A;alert(1)",
    "&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112"
    "&#0000116&#0000058alert(1)",
    " java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "\x01javascript:alert(1)",
    "javascript&colon;alert(1)",
    "jav&#x09;ascript:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "//evil.example/",
    "/relative/path",
    "file:///etc/passwd",
    "http:///no-host",
    "https://bad host.example/",
    "http://example.com:99999999/",
    "",
    None,
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_safe_url_drops_everything_but_absolute_web_urls(url: str | None) -> None:
    assert sanitize.safe_url(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.dawn.com/news/1", "https://www.dawn.com/news/1"),
        ("HTTP://Example.com/a?b=1&c=2#f", "http://Example.com/a?b=1&c=2#f"),
        ("  https://example.com/x\n", "https://example.com/x"),
        ("https://example.com/a?b=1&amp;c=2", "https://example.com/a?b=1&c=2"),
        ("https://example.com/?a=1&not=2", "https://example.com/?a=1&not=2"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        (
            "https://ur.example/پاکستان",
            "https://ur.example/%D9%BE%D8%A7%DA%A9%D8%B3%D8%AA%D8%A7%D9%86",
        ),
    ],
)
def test_safe_url_keeps_web_urls(url: str, expected: str) -> None:
    assert sanitize.safe_url(url) == expected


FORBIDDEN_TAGS = {
    "script",
    "style",
    "iframe",
    "object",
    "embed",
    "form",
    "svg",
    "math",
    "meta",
    "base",
    "link",
    "input",
    "button",
    "frame",
    "frameset",
    "applet",
    "body",
    "noscript",
    "template",
    "textarea",
    "select",
    "html",
    "head",
    "title",
}
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "background",
    "poster",
    "data",
    "cite",
    "srcset",
    "xlink:href",
    "url",
    "xmlurl",
    "htmlurl",
}
BAD_SCHEME = re.compile(r"^\s*(javascript|vbscript|data|file)\s*:", re.IGNORECASE)


def assert_web_url(value: str, allow_mailto: bool = False) -> None:
    parts = urlsplit(value)
    schemes = {"http", "https", "mailto"} if allow_mailto else {"http", "https"}
    assert parts.scheme in schemes, value
    assert parts.scheme == "mailto" or parts.netloc, value
    assert not re.search(r"[\x00-\x20]", value), value


class HostileChecker(HTMLParser):
    """Walks an HTML fragment as a second, independent parser and fails on anything active."""

    def __init__(self, allowed_tags: set[str] | None) -> None:
        super().__init__(convert_charrefs=True)
        self.allowed_tags = allowed_tags  # None: any tag but the forbidden ones
        # a whole page has its own <head> skeleton, checked by `PageReader`
        self.forbidden = FORBIDDEN_TAGS - (allowed_tags or set())
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        assert tag not in self.forbidden, tag
        if self.allowed_tags is not None:
            assert tag in self.allowed_tags, tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert name not in {"style", "srcdoc", "formaction", "action"}, (tag, name)
            if name in URL_ATTRIBUTES and value is not None:
                assert_web_url(value, allow_mailto=tag == "a")
            assert not BAD_SCHEME.match(value or ""), (tag, name, value)

    handle_startendtag = handle_starttag

    def handle_comment(self, data: str) -> None:
        raise AssertionError(f"comment survived: {data!r}")

    def handle_decl(self, decl: str) -> None:
        if self.allowed_tags is None or decl.lower() != "doctype html":
            raise AssertionError(f"declaration survived: {decl!r}")

    def handle_pi(self, data: str) -> None:
        raise AssertionError(f"processing instruction survived: {data!r}")

    def unknown_decl(self, data: str) -> None:
        raise AssertionError(f"CDATA or other declaration survived: {data!r}")


def assert_safe_html(fragment: str) -> None:
    checker = HostileChecker(allowed_tags=None)
    checker.feed(fragment)
    checker.close()


def assert_plain_text(text: str) -> None:
    """No markup in a text field, even for a reader that decodes it as HTML once more."""
    for candidate in (text, html.unescape(text)):
        checker = HostileChecker(allowed_tags=set())
        checker.feed(candidate)
        checker.close()
        assert checker.tags == [], (text, checker.tags)


def assert_no_tags(text: str) -> None:
    """No tag in a text for a reader that takes it for HTML once.

    An entry title is plain text that may talk about tags: it is escaped so that
    a reader reading it as HTML gets the words, not an element. Decoding it once
    more would read the words as markup, which no format asks of a reader.
    """
    checker = HostileChecker(allowed_tags=set())
    checker.feed(text)
    checker.close()
    assert checker.tags == [], (text, checker.tags)


def reader_titles(data: bytes) -> list[str]:
    """Entry titles as a reader shows them: HTML-typed ones decoded, as it renders them."""
    titles = []
    for e in feedparser.parse(data).entries:
        title = e.title
        if e.title_detail.type in ("text/html", "application/xhtml+xml"):
            title = html.unescape(title)
        titles.append(title)
    return titles


def hostile_feed(snippet: str) -> TopicFeed:
    """The snippet in every field a stranger controls, plus a hostile URL in every link."""
    items = tuple(
        story(
            n,
            title=snippet,
            link=bad_url,
            summary_html=snippet,
            content_html=f"<p>before</p>{snippet}<p>after</p>",
            author=snippet,
            source=snippet,
            source_url=bad_url,
            related=(Related(url=bad_url or "", source=snippet),),
            matched=(snippet,),
        )
        for n, bad_url in enumerate(["javascript:alert(1)", "&#106;avascript:alert(1)", None], 1)
    )
    return replace(FEED, title=snippet, query=snippet, items=items)


HTML_ELEMENTS = {ATOM + "content", ATOM + "summary", "description", CONTENT + "encoded"}
URL_TEXT_ELEMENTS = {"link", "docs"}


def assert_xml_safe(data: bytes) -> None:
    root = parse_xml(data)
    entry_titles = {
        *root.iterfind(f"{ATOM}entry/{ATOM}title"),
        *root.iterfind("channel/item/title"),
    }
    for element in root.iter():
        for name, value in element.attrib.items():
            if name in {"href", "url"}:
                assert_web_url(value)
            assert not BAD_SCHEME.match(value), (element.tag, name, value)
            assert_plain_text(value)
        text = element.text or ""
        is_channel_description = (
            element.tag == "description" and root.find("channel/description") is element
        )
        if element.tag in HTML_ELEMENTS and not is_channel_description:
            assert_safe_html(text)
        elif element in entry_titles:
            assert_no_tags(text)
        elif element.tag in URL_TEXT_ELEMENTS and text.strip():
            assert_web_url(text.strip())
        else:
            assert_plain_text(text)


def assert_json_safe(value: Any, key: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert_json_safe(v, k)
    elif isinstance(value, list):
        for v in value:
            assert_json_safe(v, key)
    elif isinstance(value, str):
        if key == "content_html":
            assert_safe_html(value)
        elif key == "title":
            # JSON Feed titles are plain text by the spec: a reader escapes them.
            assert value == " ".join(value.split()), value
        elif key.endswith("url"):
            assert_web_url(value)
        else:
            assert_plain_text(value)


@pytest.mark.parametrize("snippet", HOSTILE_HTML)
def test_nothing_hostile_survives_in_any_format(snippet: str) -> None:
    feed = hostile_feed(snippet)
    atom_data, rss_data = render.atom(feed), render.rss(feed)
    assert_xml_safe(atom_data)
    assert_xml_safe(rss_data)
    assert not feedparser.parse(atom_data).bozo
    assert not feedparser.parse(rss_data).bozo
    json_data = render.json_feed(feed)
    assert b"<" not in json_data  # markup characters are \u-escaped inside JSON strings
    assert_json_safe(json.loads(json_data))
    # The title is the stored plain text in every format, whatever it talks about.
    title = " ".join(snippet.replace("\x00", "").split())
    assert [i["title"] for i in json.loads(json_data)["items"]] == [title] * 3
    assert reader_titles(atom_data) == [title] * 3
    # hostile links are dropped, not repaired
    assert all("url" not in i for i in json.loads(json_data)["items"])
    assert all(not i["_aggregator"]["related"] for i in json.loads(json_data)["items"])


@pytest.mark.parametrize("snippet", HOSTILE_HTML)
def test_nothing_hostile_survives_in_the_index_page_or_opml(snippet: str) -> None:
    topics = [TopicSummary(slug="t", title=snippet, query=snippet, entries=1, newest=T0)]
    page = pages.index_page(topics, BASE, T0).decode("utf-8")
    checker = HostileChecker(allowed_tags=PAGE_TAGS)
    checker.feed(page)
    checker.close()
    assert "<script" not in page.lower()
    reader = PageReader()
    reader.feed(page)
    assert reader.open == [] and reader.styles == 1
    assert all(a["rel"] == "alternate" for a in reader.links)
    assert_xml_safe(render.topics_opml(topics, BASE))


def test_sanitizer_keeps_ordinary_markup() -> None:
    cleaned = sanitize.sanitize_html(
        '<p dir="rtl" class="x">سلام <a href="https://ok.example/" title="t">link</a>'
        '<img src="https://ok.example/a.png" alt="a"><b>b</b> <em>e</em></p>'
        "<ul><li>one</li></ul><blockquote>q</blockquote>"
        '<a href="mailto:a@example.org?subject=hi">m</a>'
    )
    collector = LinkCollector()
    collector.feed(cleaned)
    assert '<p dir="rtl">' in cleaned and "class=" not in cleaned
    assert '<img src="https://ok.example/a.png" alt="a">' in cleaned
    for tag in ("<b>b</b>", "<em>e</em>", "<li>one</li>", "<blockquote>q</blockquote>"):
        assert tag in cleaned
    assert collector.paragraphs[0][1] == [("https://ok.example/", "nofollow noopener noreferrer")]
    assert 'href="mailto:a@example.org?subject=hi"' in cleaned


def test_a_script_title_becomes_harmless_text() -> None:
    """A stored title is plain text: it keeps its words and is never a live element."""
    title = "<script>alert(1)</script>Headline"
    feed = replace(FEED, items=(story(1, title=title),))
    atom_data, rss_data = render.atom(feed), render.rss(feed)
    assert b'<title type="html">&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;' in atom_data
    assert b"<title>&#x26;lt;script&gt;alert(1)&#x26;lt;/script&gt;Headline</title>" in rss_data
    assert reader_titles(atom_data) == [title]
    assert json.loads(render.json_feed(feed))["items"][0]["title"] == title
    for data in (atom_data, rss_data):
        assert_xml_safe(data)


@pytest.mark.parametrize(
    "title",
    [
        "The <script> tag explained",
        "if a<b and c>d then swap",
        "vector<int>",
        "AT&T and &amp; spelled out",
        "Tariffs < 5% & rising",
        "&copy 2024, &#8217; literally",
    ],
)
def test_plain_titles_keep_their_text_in_every_format(title: str) -> None:
    feed = replace(FEED, items=(story(1, title=title),))
    atom_data, rss_data = render.atom(feed), render.rss(feed)
    assert json.loads(render.json_feed(feed))["items"][0]["title"] == title
    assert reader_titles(atom_data) == [title]
    # A reader that takes an RSS title for HTML reads the same words.
    rss_title = parse_xml(rss_data).findtext("channel/item/title")
    assert rss_title is not None
    assert html.unescape(rss_title) == title
    assert_no_tags(rss_title)
    if "<" not in title and "&" not in title.replace("& ", ""):
        assert rss_title == title  # nothing escaped that HTML would not misread


def test_invalid_xml_characters_do_not_break_a_feed() -> None:
    feed = replace(
        FEED, items=(story(1, title="bell\x07 and nul\x00", content_html="<p>\x0b</p>"),)
    )
    for fmt in ("atom", "rss"):
        parsed = feedparser.parse(RENDERERS[fmt](feed))
        assert not parsed.bozo
        assert parsed.entries[0].title == "bell and nul"


# --- OPML ---------------------------------------------------------------------------------------

TOPICS = [
    TopicSummary(
        slug="pakistan-russia",
        title="Pakistan–Russia",
        query="pakistan AND russia",
        entries=12,
        newest=T0,
    ),
    TopicSummary(slug="all", title="Everything", query=None, entries=1, newest=None),
]


def test_opml_lists_every_topic_atom_feed() -> None:
    data = render.topics_opml(TOPICS, BASE)
    parsed = listparser.parse(data.decode("utf-8"))
    assert not parsed.bozo
    assert [f.url for f in parsed.feeds] == [
        f"{BASE}/topics/pakistan-russia.atom",
        f"{BASE}/topics/all.atom",
    ]
    assert [f.title for f in parsed.feeds] == ["Pakistan–Russia", "Everything"]
    root = parse_xml(data)
    assert root.get("version") == "2.0"
    for outline in root.iter("outline"):
        assert outline.get("type") == "rss"
        assert outline.get("htmlUrl") == f"{BASE}/"
        assert outline.get("text") == outline.get("title")


# --- the index page -----------------------------------------------------------------------------

PAGE_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "link",
    "body",
    "main",
    "h1",
    "h2",
    "p",
    "section",
    "code",
    "a",
    "time",
}


class PageReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.alternates: list[dict[str, str | None]] = []
        self.links: list[dict[str, str | None]] = []
        self.styles = 0
        self.anchors: list[str | None] = []
        self.style = ""
        self.text: list[str] = []
        self.meta: list[dict[str, str | None]] = []
        self._in_style = False
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "link":
            self.links.append(a)
            if a.get("rel") == "alternate":
                self.alternates.append(a)
        elif tag == "a":
            self.anchors.append(a.get("href"))
        elif tag == "meta":
            self.meta.append(a)
        self._in_style = tag == "style"
        self.styles += self._in_style
        if tag not in {"meta", "link"}:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (self.open, tag)
        self.open.pop()
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)


def test_index_page_lists_topics_with_autodiscovery_links() -> None:
    page = pages.index_page(TOPICS, BASE, T0 + timedelta(minutes=7)).decode("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    reader = PageReader()
    reader.feed(page)
    reader.close()
    assert reader.open == []  # every element closed in order
    expected = {
        (mime, f"{BASE}/topics/{t.slug}.{ext}")
        for t in TOPICS
        for ext, mime in [
            ("atom", "application/atom+xml"),
            ("rss", "application/rss+xml"),
            ("json", "application/feed+json"),
        ]
    }
    assert {(a["type"], a["href"]) for a in reader.alternates} == expected
    assert len(reader.alternates) == 6
    assert all(a.get("title") for a in reader.alternates)
    assert {href for _, href in expected} <= set(reader.anchors)
    assert f"{BASE}/topics.opml" in reader.anchors
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in reader.meta
    text = " ".join("".join(reader.text).split())
    for fragment in (
        "Pakistan–Russia",
        "pakistan AND russia",
        "12 stories",
        "1 story",
        "Everything",
        "2024-05-01 12:00 UTC",
        "Last poll: 2024-05-01 12:07 UTC",
    ):
        assert fragment in text, fragment
    assert "<script" not in page.lower()


def test_csp_allows_exactly_the_page_style_and_no_script() -> None:
    page = pages.index_page(TOPICS, BASE, None).decode("utf-8")
    reader = PageReader()
    reader.feed(page)
    digest = base64.b64encode(hashlib.sha256(reader.style.encode()).digest()).decode()
    directives = dict(d.strip().split(" ", 1) for d in pages.CSP.split(";"))
    assert directives["style-src"] == f"'sha256-{digest}'"
    assert directives["default-src"] == "'none'"
    assert "script-src" not in directives
    for name in ("base-uri", "form-action", "frame-ancestors"):
        assert directives[name] == "'none'"
    assert "Last poll: never" in page


def test_index_page_with_no_topics() -> None:
    page = pages.index_page([], BASE, None).decode("utf-8")
    assert "No topics" in page and 'rel="alternate"' not in page


def test_content_types() -> None:
    assert render.CONTENT_TYPES == {
        "atom": "application/atom+xml; charset=utf-8",
        "rss": "application/rss+xml; charset=utf-8",
        "json": "application/feed+json; charset=utf-8",
    }
