"""normalize: table tests for dates, links, HTML to text, titles, words, keys and hashes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aggregator import text
from aggregator.ingest import normalize
from aggregator.models import ParsedEntry

NOW = datetime(2024, 9, 10, 12, 0, tzinfo=UTC)
PKT = timezone(timedelta(hours=5))
MSK = timezone(timedelta(hours=3))


def parsed(**fields: object) -> ParsedEntry:
    values: dict[str, object] = {
        "guid": None,
        "link": None,
        "title": "",
        "summary": "",
        "content": "",
        "author": None,
        "published": None,
    }
    values.update(fields)
    return ParsedEntry(**values)  # type: ignore[arg-type]


# --- dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        (datetime(2024, 9, 10, 15, 0, tzinfo=PKT), datetime(2024, 9, 10, 10, 0, tzinfo=UTC)),
        (datetime(2024, 9, 1, 9, 30, tzinfo=MSK), datetime(2024, 9, 1, 6, 30, tzinfo=UTC)),
        (datetime(2024, 9, 1, 9, 30), datetime(2024, 9, 1, 9, 30, tzinfo=UTC)),  # naive: UTC
        (None, NOW),  # missing: first seen
        (NOW + timedelta(minutes=9), NOW + timedelta(minutes=9)),  # clock skew: kept
        (NOW + timedelta(minutes=11), NOW),  # future: first seen
        (datetime(2030, 1, 1, tzinfo=UTC), NOW),
        (datetime(2024, 9, 10, 17, 5, tzinfo=PKT), datetime(2024, 9, 10, 12, 5, tzinfo=UTC)),
        (datetime(2024, 9, 10, 17, 15, tzinfo=PKT), NOW),  # 15 min ahead once in UTC
    ],
)
def test_published_time(published: datetime | None, expected: datetime) -> None:
    result = normalize.published_time(published, NOW)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


def test_entry_dates_are_utc() -> None:
    entry = normalize.normalize(
        parsed(guid="g", published=datetime(2024, 9, 9, 23, 0, tzinfo=PKT)), "dawn", NOW
    )
    assert entry.published == datetime(2024, 9, 9, 18, 0, tzinfo=UTC)
    assert entry.published.tzinfo == UTC
    future = normalize.normalize(parsed(guid="g", published=NOW + timedelta(days=1)), "x", NOW)
    assert future.published == NOW


# --- canonical URLs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("https://www.dawn.com/news/1", None, "https://www.dawn.com/news/1"),
        ("HTTPS://WWW.Dawn.COM/News/1", None, "https://www.dawn.com/News/1"),  # path keeps case
        ("http://example.com:80/a", None, "http://example.com/a"),
        ("https://example.com:443/a", None, "https://example.com/a"),
        ("https://example.com:8443/a", None, "https://example.com:8443/a"),
        ("http://example.com:443/a", None, "http://example.com:443/a"),  # not http's default
        ("https://example.com/a#comments", None, "https://example.com/a"),
        ("https://example.com", None, "https://example.com/"),
        (
            "https://example.com/a?utm_source=rss&utm_medium=feed&id=7&fbclid=abc",
            None,
            "https://example.com/a?id=7",
        ),
        (
            "https://example.com/a?b=2&gclid=x&a=1&UTM_Campaign=y&msclkid=z",
            None,
            "https://example.com/a?b=2&a=1",  # order kept, trackers gone
        ),
        (
            "https://www.bbc.com/urdu/articles/c1?at_medium=RSS&at_campaign=rss",
            None,
            "https://www.bbc.com/urdu/articles/c1",
        ),
        (
            "https://example.com/a?mc_cid=1&mc_eid=2&yclid=3&_ga=4&igshid=5",
            None,
            "https://example.com/a",
        ),
        (
            "https://example.com/a?ref_src=twsrc&ocid=x&cmpid=y&q=1",
            None,
            "https://example.com/a?q=1",
        ),
        ("https://example.com/a?&&q=1&", None, "https://example.com/a?q=1"),
        (
            "/news/2024/one.html",
            "https://www.dawn.com/feeds/home",
            "https://www.dawn.com/news/2024/one.html",
        ),
        ("../b?x=1", "https://tass.ru/rss/v2.xml", "https://tass.ru/b?x=1"),
        ("//cdn.example.com/x", "https://example.com/feed", "https://cdn.example.com/x"),
        ("https://example.com/a/./b/../c", None, "https://example.com/a/c"),
        ("https://example.com/%7euser/%e2%82%ac", None, "https://example.com/~user/%E2%82%AC"),
        (
            "https://example.com/новости/1",
            None,
            "https://example.com/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/1",
        ),
        ("https://example.com/a b", None, "https://example.com/a%20b"),
        ("https://example.com/100%", None, "https://example.com/100%25"),
        ("https://example.com/a?q=%2fx", None, "https://example.com/a?q=%2Fx"),  # %2F stays encoded
        ("https://президент.рф/news", None, "https://xn--d1abbgf6aiiy.xn--p1ai/news"),
        ("https://user:pw@Example.com/a", None, "https://example.com/a"),
        ("https://example.com./a", None, "https://example.com/a"),
        ("https://[2001:DB8::1]:443/a", None, "https://[2001:db8::1]/a"),
        ("  https://example.com/a  ", None, "https://example.com/a"),
        ("ftp://example.com/a", None, None),
        ("javascript:alert(1)", None, None),
        ("mailto:editor@example.com", None, None),
        ("data:text/html,<b>x</b>", None, None),
        ("relative/only", None, None),
        ("", None, None),
        ("https://example.com:99999/a", None, None),
        ("http:///nohost", None, None),
    ],
)
def test_canonical_url(url: str, base: str | None, expected: str | None) -> None:
    assert normalize.canonical_url(url, base) == expected


def test_canonical_url_is_idempotent() -> None:
    url = "HTTP://Example.com:80/a/../b/%7e?utm_source=x&id=1#f"
    once = normalize.canonical_url(url)
    assert once is not None
    assert normalize.canonical_url(once) == once


# --- HTML to text ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>One</p><p>Two</p>", "One Two"),
        ("line<br>break<br/>here<br />now", "line break here now"),
        ("<ul><li>a</li><li>b</li></ul><h2>Head</h2><div>div</div>", "a b Head div"),
        ("<table><tr><td>x</td><td>y</td></tr></table>", "x y"),
        ("Pak<b>istan</b> and <a href='/x'>Russia</a>", "Pakistan and Russia"),  # inline: no gap
        ("a<script>var s = '<p>no</p>';</script>b", "ab"),
        ("a<style>p { color: red }</style>b", "ab"),
        ("a<SCRIPT type='text/javascript'>x()</SCRIPT >b", "ab"),
        ("a<!-- hidden <p>comment</p> -->b", "ab"),
        (
            "Tom &amp; Jerry &lt;3 &quot;x&quot; &#8211; &#x2014; &nbsp;end",
            'Tom & Jerry <3 "x" – — end',
        ),
        ("AT&T and R&D &copy 2024", "AT&T and R&D © 2024"),
        ("  lots \n\n of\t\twhite   space  ", "lots of white space"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ('<img src="a.png" alt="x > y">caption', "caption"),
        ("<p>پاکستان</p><p>اور روس</p>", "پاکستان اور روس"),
        ("soft\u00adhyphen zero\u200bwidth", "softhyphen zerowidth"),
        ("<![CDATA[inside]]>", "inside"),
        ("", ""),
        ("plain text", "plain text"),
        ("<script>unclosed", ""),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert text.html_to_text(html) == expected


# --- titles ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("  Pakistan,\n  Russia   sign   deal ", "Pakistan, Russia sign deal"),
        ("AT&amp;T", "AT&T"),
        ("AT&amp;amp;T", "AT&T"),  # double-encoded
        ("Q&amp;amp;amp;A", "Q&A"),
        ("<b>Breaking:</b> news", "Breaking: news"),
        # escaped markup is text about markup: decoding comes after stripping
        ("&lt;i&gt;Escaped&lt;/i&gt; markup", "<i>Escaped</i> markup"),
        ("The &lt;script&gt; tag explained", "The <script> tag explained"),
        ("The <script> tag explained", "The <script> tag explained"),
        ("if a&lt;b and c&gt;d then swap", "if a<b and c>d then swap"),
        ("if a<b and c>d then swap", "if a<b and c>d then swap"),
        ("vector&lt;int&gt;", "vector<int>"),
        ("vector<int>", "vector<int>"),
        ("<div> vs <span>", "<div> vs <span>"),
        # real tags: an element closed after it opened, an attribute value, <br/>, comments
        ("<em>Breaking</em>: &lt;b&gt; is bold", "Breaking: <b> is bold"),
        ('<a href="/x">Read</a> more', "Read more"),
        ("<img src=x onerror=alert(1)>Headline", "Headline"),
        ("Line<br/>break", "Line break"),
        ("<!-- ad -->Headline", "Headline"),
        ("<script>alert(1)</script>Headline", "Headline"),
        # characters XML cannot carry, raw or as references
        ("bell\x07 &#1; &#xFFFE; &#xD800; &#1114112; end", "bell \ufffd \ufffd end"),
        ("Putin &#8211; Sharif", "Putin – Sharif"),
        ("Путин&nbsp;и&nbsp;Шариф", "Путин\xa0и\xa0Шариф".replace("\xa0", " ")),
        ("x < y", "x < y"),
        ("", ""),
    ],
)
def test_clean_title(title: str, expected: str) -> None:
    assert normalize.clean_title(title) == expected


@pytest.mark.parametrize(
    ("title", "markup", "expected"),
    [
        # Atom type="text": exactly as given, whatever it looks like
        ("The <script> tag &amp; <b>bold</b>", False, "The <script> tag &amp; <b>bold</b>"),
        # Atom type="html" / "xhtml": tags go, then references are decoded
        ("The &lt;script&gt; tag", True, "The <script> tag"),
        ("<b>Bold</b> &amp;amp; <i>x</i>", True, "Bold & x"),
        ("The <b>bold</b> &amp; &lt;i&gt;", True, "The bold & <i>"),
    ],
)
def test_clean_title_as_the_feed_types_it(title: str, markup: bool, expected: str) -> None:
    assert normalize.clean_title(title, markup) == expected


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "\x7f", "\x85", "\x9f", "\ud800", "\udfff",
     "\ufdd0", "\ufffe", "\uffff", "\U0001fffe", "\U0010ffff"],
)  # fmt: skip
def test_xml_text_drops_what_xml_cannot_carry(char: str) -> None:
    assert text.xml_text(f"a{char}b\tc\n") == "ab\tc\n"


def test_xml_text_keeps_text() -> None:
    sample = "Tab\tnewline\n\r پاکستان Россия \ufffd \U0001f600 \ue000 \ufffd\ufffc"
    assert text.xml_text(sample) is sample


# --- the whole entry -----------------------------------------------------------------


def test_key_prefers_guid_then_canonical_link_then_title_hash() -> None:
    with_guid = normalize.normalize(
        parsed(guid=" urn:1 ", link="https://a.example/x?utm_source=rss", title="T"), "f", NOW
    )
    assert with_guid.key == "urn:1"
    assert with_guid.guid == "urn:1"

    with_link = normalize.normalize(
        parsed(link="/x?utm_source=rss#top", title="T"), "f", NOW, base_url="HTTPS://A.example/feed"
    )
    # the anchor stays in the key: a page's posts are told apart by it
    assert with_link.key == "https://a.example/x#top"
    assert with_link.link == "https://A.example/x?utm_source=rss#top"
    assert with_link.canonical_link == "https://a.example/x"

    title_only = normalize.normalize(parsed(title="Only &amp; a title"), "f", NOW)
    assert title_only.key == "sha1:" + hashlib.sha1(b"Only & a title").hexdigest()
    assert title_only.link is None and title_only.canonical_link is None


def test_untitled_entries_without_ids_do_not_collide() -> None:
    a = normalize.normalize(parsed(summary="<p>first note</p>"), "f", NOW)
    b = normalize.normalize(parsed(summary="<p>second note</p>"), "f", NOW)
    assert a.key != b.key
    assert a.key.startswith("sha1:")


def test_unsafe_link_is_dropped() -> None:
    entry = normalize.normalize(parsed(guid="g", link="javascript:alert(1)"), "f", NOW)
    assert entry.link is None and entry.canonical_link is None


def test_text_joins_title_summary_and_distinct_content() -> None:
    same = normalize.normalize(
        parsed(guid="g", title="Title", summary="<p>Body text</p>", content="<div>Body text</div>"),
        "f",
        NOW,
    )
    assert same.text == "Title\nBody text"
    different = normalize.normalize(
        parsed(guid="g", title="Title", summary="Short", content="<p>Long <b>body</b></p>"),
        "f",
        NOW,
    )
    assert different.text == "Title\nShort\nLong body"
    assert different.summary_html == "Short"
    assert different.content_html == "<p>Long <b>body</b></p>"


def test_content_hash_is_versioned_and_changes_with_edits() -> None:
    base = parsed(guid="g", title="Title", summary="S", content="C")
    entry = normalize.normalize(base, "f", NOW)
    expected = hashlib.sha256(b"Title\0S\0C").hexdigest()
    assert entry.content_hash == f"1:{expected}"
    edited = normalize.normalize(
        parsed(guid="g", title="Title!", summary="S", content="C"), "f", NOW
    )
    assert edited.content_hash != entry.content_hash
    assert edited.key == entry.key
    # The hash does not depend on when the entry was seen.
    later = normalize.normalize(base, "f", NOW + timedelta(hours=1))
    assert later.content_hash == entry.content_hash


def test_author_and_feed() -> None:
    entry = normalize.normalize(parsed(guid="g", author="  Reporter  "), "tass", NOW)
    assert (entry.feed, entry.author) == ("tass", "Reporter")
    assert normalize.normalize(parsed(guid="g", author="  "), "tass", NOW).author is None
