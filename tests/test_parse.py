"""parse: every real feed in tests/feeds/real, plus small feeds written for each edge and attack."""

from __future__ import annotations

import csv
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.errors import ParseError
from aggregator.ingest import parse
from aggregator.ingest.parse import entries as parse_entries

#: trimmed real feeds, each with what feedparser (or `json`) reads in it beside it;
#: made from the full corpus by tests/feeds/trim.py
REAL = Path(__file__).resolve().parent / "feeds" / "real"


def _corpus_rows() -> list[dict[str, str]]:
    with (REAL / "SOURCES.tsv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _corpus_rows()


def _expected(name: str) -> dict[str, Any]:
    return json.loads((REAL / f"{name}.expected.json").read_text(encoding="utf-8"))


def _squash(text: str) -> str:
    return " ".join(text.split())


def _primary(language: str | None) -> str | None:
    """Our feeds keep a language's primary subtag ("en-US" -> "en"): it picks a stemmer."""
    primary = (language or "").split("-")[0].split("_")[0].lower()
    return primary or None


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_real_feed(row: dict[str, str]) -> None:
    body = (REAL / row["file"]).read_bytes()
    expected = _expected(row["file"])
    url = f"https://feeds.example.org/{row['file']}"
    if expected.get("broken"):
        # Broken on purpose: an HTML page, a truncated document, or broken JSON.
        # None of them yields an entry, so each must be a ParseError, not an empty feed.
        with pytest.raises(ParseError) as info:
            parse.parse(body, url=url)
        assert info.value.url == url
        assert str(info.value).startswith("not a feed")
        return

    feed = parse.parse(body, url=url)
    # The count differs from feedparser's only where `note` in the expected file says why.
    assert len(feed.entries) == expected["entries"], expected.get("note")
    assert [_squash(e.title) for e in feed.entries] == [_squash(t) for t in expected["titles"]]
    assert feed.language == _primary(expected["language"])
    assert len(parse.parse(body, url=url, max_entries=5).entries) == min(5, expected["entries"])
    for entry in feed.entries:
        assert entry.published is None or entry.published.tzinfo is not None
        if entry.link:
            assert not entry.link.startswith("/"), "relative link left unresolved"
    if expected.get("feedparser_bozo") == "SAXParseException":
        # Recovered by feedparser's loose parser: kept, with the XML error as a warning.
        assert feed.warning and "SAXParseException" in feed.warning


def test_corpus_table_lists_every_file() -> None:
    listed = {r["file"] for r in ROWS}
    present = {p.name for p in REAL.iterdir() if p.name != "SOURCES.tsv"}
    assert present == listed | {f"{name}.expected.json" for name in listed}
    # Every copy says where it came from, and under which licence.
    for name in listed:
        source = _expected(name)["source"]
        assert source["repo"] and len(source["commit"]) == 40 and source["licence"], name


def test_corpus_urdu_and_cp1251_text_survives() -> None:
    urdu = parse.parse((REAL / "bbc-urdu__pakistan-us-aid.xml").read_bytes())
    assert any("پاکستان" in e.title + e.summary for e in urdu.entries)
    russian = parse.parse((REAL / "oren-ru__news-cp1251.xml").read_bytes())
    assert all(re.search("[а-яА-Я]", e.title) for e in russian.entries)


# --- small feeds for each edge -----------------------------------------------------


def rss(items: str, channel: str = "", encoding: str = "utf-8", ns: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<rss version="2.0"{ns}><channel><title>Test feed</title>'
        f"<link>https://example.org/</link>{channel}{items}</channel></rss>"
    )


def item(guid: str, title: str = "t", date: str | None = None, link: str | None = None) -> str:
    parts = [f"<guid isPermaLink='false'>{guid}</guid>", f"<title>{title}</title>"]
    if date:
        parts.append(f"<pubDate>{date}</pubDate>")
    if link:
        parts.append(f"<link>{link}</link>")
    return "<item>" + "".join(parts) + "</item>"


def test_urdu_rss() -> None:
    body = rss(
        item("u1", "پاکستان اور روس کے درمیان تجارتی معاہدہ", "Mon, 02 Sep 2024 10:00:00 +0500")
        + "<item><guid>u2</guid><title><![CDATA[اسلام آباد میں بارش]]></title>"
        "<description><![CDATA[<p>اسلام آباد <b>میں</b> بارش</p>]]></description></item>"
    ).encode("utf-8")
    feed = parse.parse(body, {"content-type": "application/rss+xml; charset=utf-8"})
    assert [e.title for e in feed.entries] == [
        "پاکستان اور روس کے درمیان تجارتی معاہدہ",
        "اسلام آباد میں بارش",
    ]
    assert feed.entries[0].published == datetime(2024, 9, 2, 5, 0, tzinfo=UTC)
    assert "<b>میں</b>" in feed.entries[1].summary
    assert feed.warning is None


def test_russian_windows_1251() -> None:
    body = rss(
        item("r1", "Пакистан и Россия подписали соглашение", "Tue, 03 Sep 2024 08:00:00 +0300"),
        encoding="windows-1251",
    ).encode("cp1251")
    feed = parse.parse(body)
    assert feed.entries[0].title == "Пакистан и Россия подписали соглашение"
    assert feed.entries[0].published == datetime(2024, 9, 3, 5, 0, tzinfo=UTC)


def test_lying_encoding_declared_utf8_but_cp1251() -> None:
    body = rss(
        item("r1", "Пакистан и Россия подписали торговое соглашение в Москве")
        + item("r2", "Министр иностранных дел прибыл в Исламабад"),
    ).encode("cp1251")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    feed = parse.parse(body, {"content-type": "application/rss+xml; charset=utf-8"})
    assert [e.title for e in feed.entries] == [
        "Пакистан и Россия подписали торговое соглашение в Москве",
        "Министр иностранных дел прибыл в Исламабад",
    ]
    assert feed.warning and "encoding" in feed.warning


def test_latin1_without_declaration_is_not_rewritten() -> None:
    # French in Latin-1 with no declaration: feedparser's cp1252 reading is right,
    # and the mojibake repair must leave it alone.
    body = (
        '<rss version="2.0"><channel><title>x</title>'
        "<item><guid>f</guid><title>Été : la santé des élèves à l'école</title></item>"
        "</channel></rss>"
    ).encode("latin-1")
    feed = parse.parse(body)
    assert feed.entries[0].title == "Été : la santé des élèves à l'école"


def test_invalid_xml_characters_still_give_entries() -> None:
    body = rss(item("c1", "bad \x01 control \x0b chars") + item("c2", "fine")).encode("utf-8")
    feed = parse.parse(body)
    assert [e.guid for e in feed.entries] == ["c1", "c2"]
    assert feed.entries[1].title == "fine"
    assert feed.warning and "not well-formed" in feed.warning


def test_no_dates() -> None:
    feed = parse.parse(rss(item("a", "one") + item("b", "two")).encode())
    assert [(e.guid, e.published, e.updated) for e in feed.entries] == [
        ("a", None, None),
        ("b", None, None),
    ]


def test_absurd_dates_become_none() -> None:
    body = rss(
        item("old", "old", "Thu, 01 Jan 1970 00:00:00 GMT")
        + item("far", "far", "Fri, 31 Dec 9999 23:59:59 GMT")
        + item("junk", "junk", "yesterday-ish, maybe")
        + item("ok", "ok", "Wed, 04 Sep 2024 12:00:00 GMT")
    ).encode()
    dates = {e.guid: e.published for e in parse.parse(body).entries}
    assert dates == {
        "old": None,
        "far": None,
        "junk": None,
        "ok": datetime(2024, 9, 4, 12, 0, tzinfo=UTC),
    }


def test_updated_stands_in_for_published() -> None:
    body = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>a</title><id>urn:f</id>'
        b"<entry><id>urn:e1</id><title>x</title><updated>2024-05-01T12:00:00+05:00</updated>"
        b"</entry></feed>"
    )
    entry = parse.parse(body).entries[0]
    assert entry.published == entry.updated == datetime(2024, 5, 1, 7, 0, tzinfo=UTC)


def test_relative_links_plain_and_xml_base() -> None:
    plain = rss(item("p1", "x", link="/news/2024/one.html")).encode()
    feed = parse.parse(plain, url="https://outlet.example.pk/feeds/home.xml")
    assert feed.entries[0].link == "https://outlet.example.pk/news/2024/one.html"

    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.ru/ru/">'
        b"<title>a</title><id>urn:f</id>"
        b'<entry><id>urn:e1</id><title>x</title><link href="posts/1"/>'
        b'<content type="html">&lt;a href="/img/a.png"&gt;pic&lt;/a&gt;</content></entry>'
        b'<entry xml:base="https://other.example.ru/x/"><id>urn:e2</id><title>y</title>'
        b'<link href="../y"/></entry></feed>'
    )
    feed = parse.parse(atom, url="https://feeds.example.ru/atom")
    assert [e.link for e in feed.entries] == [
        "https://blog.example.ru/ru/posts/1",
        "https://other.example.ru/y",
    ]
    assert 'href="https://blog.example.ru/img/a.png"' in feed.entries[0].content


@pytest.mark.parametrize(
    ("markup", "relative"),
    [
        ('<A HREF="/img/a.png">pic</A>', True),  # any case
        ('<img data-src="/a.png">', True),  # an attribute name ending in src
        ('<a xhref="/a">x</a> <img datasrc="/b.png">', False),  # inside a longer name
        ('<a href="https://x.example/a">x</a> <a href="#n">n</a>', False),
        ("<a href = ' /a'>x</a>", True),
    ],
)
def test_relative_links_in_item_html(markup: str, relative: bool) -> None:
    """Item HTML goes through lxml only when it may hold a relative link, whatever
    its case; an absolute-only fragment comes back as it was."""
    assert parse_entries._has_relative_link(markup) is relative
    out = parse_entries._absolute_links(markup, "https://outlet.example.pk/news/")
    if not relative:
        assert out == markup
    elif "href" in markup.lower():
        assert 'href="https://outlet.example.pk/' in out.replace("'", '"').replace("= ", "=")


def test_links_resolve_against_content_location_and_unsafe_schemes_drop() -> None:
    body = rss(
        item("p1", "x", link="one.html")
        + item("p2", "y", link="javascript:alert(1)")
        + item("p3", "z", link="//cdn.example.pk/three.html"),
        channel="<link>/home</link>",
    ).encode()
    feed = parse.parse(
        body,
        {"Content-Location": "/archive/feed.xml"},
        url="https://outlet.example.pk/feeds/home.xml",
    )
    assert [e.link for e in feed.entries] == [
        "https://outlet.example.pk/archive/one.html",
        None,
        "https://cdn.example.pk/three.html",
    ]
    assert feed.link == "https://outlet.example.pk/home"


def test_duplicate_guids_keep_first() -> None:
    body = rss(item("same", "first") + item("other", "middle") + item("same", "second")).encode()
    feed = parse.parse(body)
    assert [(e.guid, e.title) for e in feed.entries] == [("same", "first"), ("other", "middle")]


def test_hints_ttl_and_syndication() -> None:
    ttl = rss(item("a"), channel="<ttl>45</ttl>").encode()
    assert parse.parse(ttl).hint_seconds == 45 * 60
    sy_ns = ' xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"'
    sy = rss(
        item("a"),
        channel="<sy:updatePeriod>hourly</sy:updatePeriod>"
        "<sy:updateFrequency>4</sy:updateFrequency>",
        ns=sy_ns,
    ).encode()
    assert parse.parse(sy).hint_seconds == 900
    both = rss(
        item("a"),
        channel="<ttl>60</ttl><sy:updatePeriod>daily</sy:updatePeriod>",
        ns=sy_ns,
    ).encode()
    assert parse.parse(both).hint_seconds == 86400
    assert parse.parse(rss(item("a"), channel="<ttl>-5</ttl>").encode()).hint_seconds is None
    assert parse.parse(rss(item("a")).encode()).hint_seconds is None


def test_empty_valid_feed_is_not_an_error() -> None:
    feed = parse.parse(rss("").encode())
    assert feed.entries == ()
    assert feed.title == "Test feed"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n\t ",
        b"<!DOCTYPE html><html><head><title>Parked</title></head><body><p>x</p></body></html>",
        b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
        b"\x00\xff\xfe garbage \x89PNG\r\n",
        b"Service Unavailable",
    ],
    ids=["empty", "blank", "html", "xhtml", "binary", "text"],
)
def test_not_a_feed(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse.parse(body, {"content-type": "text/html"}, url="https://x.example/feed")


# --- JSON Feed -----------------------------------------------------------------------


def test_json_feed_1_1() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Outlet",
        "home_page_url": "https://outlet.example/",
        "items": [
            {
                "id": "j1",
                "url": "/2024/09/one",
                "title": "Pakistan &#8211; Russia",
                "content_html": "<p>Body</p>",
                "summary": "Short <b>summary</b>",
                "date_published": "2024-09-05T10:00:00+05:00",
                "date_modified": "2024-09-05T12:00:00Z",
                "authors": [{"name": "A. Reporter"}, {"name": "B. Writer"}],
            },
            {"id": 42, "external_url": "https://elsewhere.example/x", "content_text": "a < b"},
            "not an item",
        ],
    }
    body = json.dumps(doc).encode()
    feed = parse.parse(body, {"content-type": "application/feed+json"}, "https://outlet.example/f")
    assert (feed.title, feed.link, feed.warning) == ("Outlet", "https://outlet.example/", None)
    first, second = feed.entries
    assert first.guid == "j1"
    assert first.link == "https://outlet.example/2024/09/one"
    assert first.title == "Pakistan &#8211; Russia"  # decoded by normalize, not here
    assert first.content == "<p>Body</p>"
    assert first.summary == "Short &lt;b&gt;summary&lt;/b&gt;"  # JSON Feed summary is text
    assert first.published == datetime(2024, 9, 5, 5, 0, tzinfo=UTC)
    assert first.updated == datetime(2024, 9, 5, 12, 0, tzinfo=UTC)
    assert first.author == "A. Reporter, B. Writer"
    assert (second.guid, second.link, second.content) == (
        "42",
        "https://elsewhere.example/x",
        "a &lt; b",
    )
    assert second.title == "" and second.published is None


def test_json_feed_1_0_with_bom_and_author() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1",
        "title": "Old",
        "items": [
            {
                "id": "a",
                "url": "https://x.example/a",
                "title": "Новости",
                "content_html": "x",
                "author": {"name": "Иван"},
                "date_published": "2024-01-02T03:04:05-08:00",
            }
        ],
    }
    body = b"\xef\xbb\xbf\n" + json.dumps(doc, ensure_ascii=False).encode()
    entry = parse.parse(body).entries[0]
    assert (entry.title, entry.author) == ("Новости", "Иван")
    assert entry.published == datetime(2024, 1, 2, 11, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "no items"}',
        b"[1, 2, 3]",
        b"{" * 100_000,
        b'{"items": [{"id": "\xff\xfe"}]}',
    ],
    ids=["truncated", "no-items", "array", "deep-nesting", "not-utf8"],
)
def test_broken_json_feed(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse.parse(body, {"content-type": "application/json"})


# --- hostile XML -------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>t</title>
<item><guid>a</guid><title>&lol9;</title></item></channel></rss>"""


def _quadratic(newlines: bool) -> bytes:
    # 100 kB entity referenced 100,000 times: 10 GB if anything expands it.
    sep = b"\n" if newlines else b""
    return (
        b'<?xml version="1.0"?>' + sep + b"<!DOCTYPE rss [" + sep
        + b'<!ENTITY a "' + b"A" * 100_000 + b'">' + sep + b"]>" + sep
        + b'<rss version="2.0"><channel><title>t</title><item><guid>a</guid><title>'
        + b"&a;" * 100_000
        + b"</title></item></channel></rss>"
    )  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, _quadratic(newlines=True), _quadratic(newlines=False)],
    ids=["billion-laughs", "quadratic", "quadratic-one-line"],
)
def test_entity_expansion_is_refused_quickly(body: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(ParseError, match="refused"):
        parse.parse(body)
    assert time.monotonic() - started < 5  # generous: expanding would take minutes and GBs


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOPSECRET-do-not-leak-7f3a")
    return path


def _leaks(feed: object, secret: Path) -> bool:
    return "TOPSECRET" in repr(feed)


def test_external_entity_file_is_never_read(secret: Path) -> None:
    for decl in (
        f'<!ENTITY xxe SYSTEM "{secret.as_uri()}">',
        f'<!ENTITY xxe PUBLIC "-//X//Y" "{secret.as_uri()}">',
        f'<!ENTITY % ext SYSTEM "{secret.as_uri()}"> %ext;',
    ):
        for sep in ("\n", ""):
            body = (
                f'<?xml version="1.0"?>{sep}<!DOCTYPE rss [{sep}{decl}{sep}]>{sep}'
                '<rss version="2.0"><channel><title>t &xxe;</title><item><guid>a</guid>'
                "<title>x &xxe;</title><description>&xxe;</description></item></channel></rss>"
            ).encode()
            try:
                feed = parse.parse(body)
            except ParseError as e:
                assert "TOPSECRET" not in str(e)
            else:  # pragma: no cover - only if the screen let it through
                assert not _leaks(feed, secret)
                pytest.fail(f"external entity accepted: {decl}")


def test_external_dtd_is_not_fetched_and_feed_still_parses(secret: Path, tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY sec SYSTEM "{secret.as_uri()}">')
    body = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE rss SYSTEM "{dtd.as_uri()}">\n'
        '<rss version="2.0"><channel><title>t</title><item><guid>a</guid>'
        "<title>x &sec; y</title></item></channel></rss>"
    ).encode()
    feed = parse.parse(body)
    assert [e.guid for e in feed.entries] == ["a"]
    assert not _leaks(feed, secret)


def test_netscape_rss_091_doctype_and_character_entities_pass() -> None:
    body = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"\n'
        ' "http://my.netscape.com/publish/formats/rss-0.91.dtd" [\n'
        '<!ENTITY nbsp "&#160;">\n'
        "]>\n"
        '<rss version="0.91"><channel><title>t</title><link>http://a.example/</link>'
        "<item><title>x&nbsp;y</title><link>http://a.example/1</link></item></channel></rss>"
    ).encode("latin-1")
    feed = parse.parse(body)
    assert [e.title for e in feed.entries] == ["x\xa0y"]


def test_entity_in_encoding_expat_cannot_read_is_refused() -> None:
    body = (
        '<?xml version="1.0" encoding="x-no-such-encoding"?>\n<!DOCTYPE rss [\n'
        f'<!ENTITY a "{"A" * 50}">\n]>\n'
        '<rss version="2.0"><channel><title>t</title><item><guid>a</guid>'
        "<title>News &a;</title></item></channel></rss>"
    ).encode()
    with pytest.raises(ParseError, match="refused"):
        parse.parse(body)


def test_entity_in_a_legacy_encoding_is_screened_once_read() -> None:
    body = (
        '<?xml version="1.0" encoding="gb2312"?>\n<!DOCTYPE rss [\n'
        f'<!ENTITY a "{"A" * 50}">\n]>\n'
        '<rss version="2.0"><channel><title>t</title><item><guid>a</guid>'
        "<title>新闻 &a;</title></item></channel></rss>"
    ).encode("gb2312")
    assert [e.title for e in parse.parse(body).entries] == ["新闻 " + "A" * 50]
    flood = body.replace(b"&a;</title>", b"&a;" * 200_000 + b"</title>")
    with pytest.raises(ParseError, match="refused: DOCTYPE declares entities whose references"):
        parse.parse(flood)


# --- size caps -----------------------------------------------------------------------


def test_100000_entries_capped_newest_kept() -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    # Dates shuffled in document order, so "newest" cannot mean "first" or "last".
    order = [(i * 7919) % 100_000 for i in range(100_000)]
    items = "".join(
        f"<item><guid>g{n}</guid><title>t{n}</title><pubDate>"
        f"{(start + timedelta(minutes=n)).strftime('%a, %d %b %Y %H:%M:%S GMT')}"
        "</pubDate></item>"
        for n in order
    )
    body = rss(items).encode()
    started = time.monotonic()
    feed = parse.parse(body)
    assert time.monotonic() - started < 120  # generous bound for a slow machine
    assert len(feed.entries) == 1000
    assert {e.guid for e in feed.entries} == {f"g{n}" for n in range(99_000, 100_000)}
    positions = [order.index(int(e.guid[1:])) for e in feed.entries[:50]]  # type: ignore[index]
    assert positions == sorted(positions), "kept entries stay in document order"


def test_cap_without_dates_keeps_document_head() -> None:
    body = rss("".join(item(f"g{n}", f"t{n}") for n in range(30))).encode()
    feed = parse.parse(body, max_entries=10)
    assert [e.guid for e in feed.entries] == [f"g{n}" for n in range(10)]


def test_cap_prefers_dated_entries() -> None:
    body = rss(
        item("undated1") + item("d1", date="Mon, 01 Jan 2024 00:00:00 GMT") + item("undated2")
    ).encode()
    feed = parse.parse(body, max_entries=2)
    assert [e.guid for e in feed.entries] == ["undated1", "d1"]


def test_enormous_title_is_truncated() -> None:
    title = "Пакистан " * 600_000  # about 5.4 million characters
    body = rss(item("big", title) + item("small", "ok")).encode()
    feed = parse.parse(body, max_field=200_000)
    big, small = feed.entries
    assert len(big.title) == 200_000
    assert big.title.startswith("Пакистан Пакистан")
    assert small.title == "ok"


def test_every_text_field_is_capped() -> None:
    long = "x" * 5000
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>'
        + long
        + "</title><id>urn:f</id><entry><id>urn:"
        + long
        + "</id><title>"
        + long
        + '</title><link href="https://a.example/'
        + long
        + '"/><summary>'
        + long
        + '</summary><content type="html">'
        + long
        + "</content><author><name>"
        + long
        + "</name></author></entry></feed>"
    ).encode()
    feed = parse.parse(body, max_field=100)
    entry = feed.entries[0]
    fields = [feed.title, entry.guid, entry.title, entry.link, entry.summary, entry.content]
    fields.append(entry.author)
    assert all(f is not None and len(f) == 100 for f in fields), [len(f or "") for f in fields]


# -- items seen byte for byte are not parsed again ---------------------------------------------


def test_known_items_are_left_out_and_edited_ones_parsed_again() -> None:
    a, b, c = item("a", "Alpha"), item("b", "Bravo"), item("c", "Charlie")
    first = parse.parse(rss(a + b + c, channel="<ttl>30</ttl>").encode())
    assert [e.title for e in first.entries] == ["Alpha", "Bravo", "Charlie"]
    assert first.item_digests is not None and len(first.item_digests) == 3 * 8
    known = parse.item_digests(first.item_digests)
    assert len(known) == 3

    edited = item("b", "Bravo, edited")
    body = rss(item("d", "Delta") + a + edited + c, channel="<ttl>30</ttl>").encode()
    assert parse.unseen_items(parse.digested_items(body), known) == 2
    second = parse.parse(body, known_items=known)
    assert [e.title for e in second.entries] == ["Delta", "Bravo, edited"]
    # the channel is read as always, and the new digests describe every item
    assert (second.title, second.hint_seconds, second.warning) == ("Test feed", 1800, None)
    assert second.item_digests == parse.parse(body).item_digests
    assert len(parse.item_digests(second.item_digests) & known) == 2  # Alpha, Charlie


def test_a_feed_whose_items_are_all_known_is_an_empty_success() -> None:
    body = rss(item("a", "Alpha") + item("b", "Bravo")).encode()
    known = parse.item_digests(parse.parse(body).item_digests)
    again = parse.parse(body, known_items=known)
    assert (again.entries, again.title, again.warning) == ((), "Test feed", None)
    assert parse.unseen_items(parse.digested_items(body), known) == 0


def test_a_cut_the_markup_does_not_allow_falls_back_to_the_whole_body() -> None:
    # "</item>" inside CDATA ends the byte scan's item early: leaving that known
    # "item" out would break the markup, so the whole body is parsed instead.
    tricky = "<item><guid>t</guid><title>Tricky</title><description><![CDATA[a </item> b]]>"
    tricky += "</description></item>"
    body = rss(tricky + item("n", "Next")).encode()
    known = parse.item_digests(parse.parse(body).item_digests)
    body2 = rss(item("new", "Newest") + tricky + item("n", "Next")).encode()
    again = parse.parse(body2, known_items=known)
    assert {e.title for e in again.entries} >= {"Newest", "Tricky", "Next"}
    assert again.warning is None


def test_utf16_and_json_bodies_are_never_cut() -> None:
    body = rss(item("a", "Alpha"), encoding="utf-16").encode("utf-16")
    assert parse.unseen_items(parse.digested_items(body), frozenset()) is None
    assert parse.parse(body).item_digests is None
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": []}
    assert parse.parse(json.dumps(doc).encode()).item_digests is None


# --- what a title is -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "markup", "given"),
    [
        ('<title type="text">The &lt;script&gt; tag</title>', False, "The <script> tag"),
        ("<title>vector&lt;int&gt;</title>", False, "vector<int>"),  # Atom's default
        (
            '<title type="html">The &amp;lt;script&amp;gt; tag</title>',
            True,
            "The &lt;script&gt; tag",
        ),
        ('<title type="html">&lt;b&gt;Bold&lt;/b&gt;</title>', True, "<b>Bold</b>"),
        (
            '<title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
            "A <b>b</b></div></title>",
            True,
            "A <b>b</b>",
        ),
    ],
)
def test_atom_titles_say_whether_they_are_markup(title: str, markup: bool, given: str) -> None:
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>f</title><id>urn:f</id>'
        f"<entry><id>urn:e</id>{title}<updated>2024-05-01T12:00:00Z</updated></entry></feed>"
    )
    entry = parse.parse(body.encode()).entries[0]
    assert (entry.title, entry.title_markup) == (given, markup)


@pytest.mark.parametrize(
    "title", ["The &lt;script&gt; tag", "&lt;b&gt;Bold&lt;/b&gt;", "<![CDATA[<b>Bold</b>]]>"]
)
def test_rss_and_json_titles_leave_it_to_normalize(title: str) -> None:
    # feedparser guesses "text/html" for RSS from the text; that guess is not passed on
    assert parse.parse(rss(item("g", title)).encode()).entries[0].title_markup is None
    body = json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "title": title}]}
    )
    assert parse.parse(body.encode()).entries[0].title_markup is None
