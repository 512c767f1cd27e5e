"""Encodings: a stray byte is replaced, not a reason to read the whole feed in
another code page; a body that declares nothing is detected.

The feeds in tests/feeds/encoding/ are real (Urdu: BBC via miniflux's test data;
Russian: oren.ru) or written in the same shape (Arabic, Hindi), trimmed. Each damaged
variant is made here from the clean UTF-8 file, so the expected titles are exact:
the clean title with the damaged bytes read as `bytes.decode(..., "replace")` reads
them. The `*-undeclared.xml` files are the same feeds in cp1251, koi8-r and
windows-1256 without an XML declaration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from aggregator import models
from aggregator.ingest import parse
from tests.conftest import toml_config
from tests.feedserver import FeedServer

FEEDS = Path(__file__).parent / "feeds" / "encoding"
LANGUAGES = ("ru-oren", "ur-bbc", "ar-news", "hi-news")

#: bytes that are never valid UTF-8 where they are put (between two characters)
STRAY = {
    "ff": b"\xff",
    "continuation": b"\x80",
    "lead-alone": b"\xc3",
    "cut-sequence": b"\xe0\xa4",
    "cp1252-quote": b"\x93",
    "surrogate": b"\xed\xa0\x80",
    "overlong": b"\xc0\xaf",
}


def clean(name: str) -> bytes:
    return (FEEDS / f"{name}.utf8.xml").read_bytes()


def titles(feed: models.ParsedFeed) -> list[str]:
    return [e.title for e in feed.entries]


def damaged(name: str, kinds: list[bytes]) -> tuple[bytes, list[str]]:
    """The clean feed with one bad sequence put into each of its first len(kinds)
    titles (those written without entities), after a few characters; and the titles
    as a reader that replaces only the bad bytes shows them."""
    body = clean(name)
    expected = titles(parse.parse(body))
    damaged = 0
    for n, title in enumerate(expected):
        if damaged == len(kinds):
            break
        at = 3 + n
        head, tail = title[:at].encode(), title[at:].encode()
        where = body.find(head + tail)
        if where < 0:
            continue
        bad = kinds[damaged]
        cut = where + len(head)
        body = body[:cut] + bad + body[cut:]
        expected[n] = (head + bad + tail).decode("utf-8", "replace")
        damaged += 1
    assert damaged == len(kinds)
    return body, expected


@pytest.mark.parametrize("kind", sorted(STRAY))
@pytest.mark.parametrize("name", LANGUAGES)
def test_one_stray_byte_is_replaced_and_the_rest_read_as_declared(name: str, kind: str) -> None:
    body, expected = damaged(name, [STRAY[kind]])
    feed = parse.parse(body)
    assert titles(feed) == expected
    assert sum("\ufffd" in t for t in titles(feed)) == 1
    assert feed.warning and "not valid utf-8 replaced" in feed.warning


@pytest.mark.parametrize("name", LANGUAGES)
def test_several_stray_bytes_of_every_kind(name: str) -> None:
    body, expected = damaged(name, list(STRAY.values())[:5])
    # and more at the end of six items' descriptions
    first = body.index(b"<item")
    body = body[:first] + body[first:].replace(b"</description>", b"\xfe</description>", 6)
    feed = parse.parse(body)
    assert titles(feed) == expected
    assert sum("\ufffd" in e.summary for e in feed.entries) == 6


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/rss+xml; charset=utf-8"},
        {"Content-Type": "text/html"},
        {"Content-Type": "text/xml"},
    ],
)
def test_stray_byte_whatever_the_content_type_says(headers: dict[str, str]) -> None:
    body, expected = damaged("ru-oren", [b"\xd0"])
    assert titles(parse.parse(body, headers)) == expected


def test_a_character_cut_short_is_one_replacement() -> None:
    body = clean("hi-news")
    title = titles(parse.parse(body))[2]
    char = title[5].encode()
    cut = body.replace(title.encode(), title[:5].encode() + char[:-1] + title[6:].encode())
    assert titles(parse.parse(cut))[2] == title[:5] + "\ufffd" + title[6:]


def test_utf8_bom_and_a_stray_byte() -> None:
    body, expected = damaged("ur-bbc", [b"\xff"])
    assert titles(parse.parse(b"\xef\xbb\xbf" + body)) == expected


@pytest.mark.parametrize(
    ("file", "encoding"),
    [
        ("ru-oren.cp1251-undeclared.xml", "cp1251"),
        ("ru-oren.koi8r-undeclared.xml", "koi8-r"),
        ("ar-news.cp1256-undeclared.xml", "cp1256"),
    ],
)
def test_legacy_encoding_that_declares_nothing_is_detected(file: str, encoding: str) -> None:
    body = (FEEDS / file).read_bytes()
    truth = parse.parse(body.decode(encoding).encode("utf-8"))
    feed = parse.parse(body)
    assert titles(feed) == titles(truth) and len(titles(feed)) >= 7
    assert [e.summary for e in feed.entries] == [e.summary for e in truth.entries]
    assert feed.title == truth.title
    assert feed.warning and encoding.replace("-", "_") in feed.warning


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml", "text/html"])
def test_legacy_encoding_detected_under_any_content_type(content_type: str) -> None:
    body = (FEEDS / "ru-oren.koi8r-undeclared.xml").read_bytes()
    truth = parse.parse(body.decode("koi8-r").encode("utf-8"))
    assert titles(parse.parse(body, {"Content-Type": content_type})) == titles(truth)


def test_legacy_body_declared_utf8_by_the_server() -> None:
    body = (FEEDS / "ar-news.cp1256-undeclared.xml").read_bytes()
    truth = titles(parse.parse(clean("ar-news")))
    feed = parse.parse(body, {"Content-Type": "application/rss+xml; charset=UTF-8"})
    assert titles(feed) == truth


def test_utf8_body_declared_as_a_legacy_code_page_is_read_as_utf8() -> None:
    body = clean("ru-oren").replace(b'encoding="utf-8"', b'encoding="windows-1251"', 1)
    truth = titles(parse.parse(clean("ru-oren")))
    assert titles(parse.parse(body)) == truth
    header = {"Content-Type": "text/xml; charset=iso-8859-1"}
    body, expected = damaged("ur-bbc", [b"\xff"])
    assert titles(parse.parse(body, header)) == expected


def test_header_charset_wins_over_the_declaration_when_it_reads_the_body() -> None:
    text = (FEEDS / "ru-oren.cp1251-undeclared.xml").read_bytes().decode("cp1251")
    body = ('<?xml version="1.0" encoding="utf-8"?>\n' + text).encode("cp1251")
    feed = parse.parse(body, {"Content-Type": "application/xml; charset=windows-1251"})
    assert titles(feed) == titles(parse.parse(text.encode("utf-8")))


def test_declared_legacy_encoding_with_an_undefined_byte_keeps_the_declaration() -> None:
    text = (FEEDS / "ru-oren.cp1251-undeclared.xml").read_bytes().decode("cp1251")
    body = ('<?xml version="1.0" encoding="windows-1251"?>\n' + text).encode("cp1251")
    truth = titles(parse.parse(text.encode("utf-8")))
    first = truth[0].encode("cp1251")
    body = body.replace(first, first[:4] + b"\x98" + first[4:], 1)  # 0x98: no cp1251 character
    feed = parse.parse(body)
    assert titles(feed)[0] == truth[0][:4] + "\ufffd" + truth[0][4:]
    assert titles(feed)[1:] == truth[1:]


def test_valid_feeds_are_read_as_before() -> None:
    for name in LANGUAGES:
        feed = parse.parse(clean(name))
        assert feed.warning is None
        assert not any("\ufffd" in t for t in titles(feed))


# -- through the product -------------------------------------------------------------------


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AGGREGATOR_CONFIG=str(config))
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        cwd=config.parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _titles_of(fmt: str) -> Callable[[str], list[str]]:
    def read(out: str) -> list[str]:
        if fmt == "json":
            return [i["title"] for i in json.loads(out)["items"]]
        import defusedxml.ElementTree

        root = defusedxml.ElementTree.fromstring(out.encode("utf-8"))
        if fmt == "atom":
            ns = "{http://www.w3.org/2005/Atom}"
            return [e.findtext(f"{ns}title") or "" for e in root.iter(f"{ns}entry")]
        return [i.findtext("title") or "" for i in root.iter("item")]

    return read


def poll_and_export(
    folder: Path, served: dict[str, tuple[bytes, str]], topics: list[dict[str, object]]
) -> dict[str, dict[str, list[str]]]:
    """Serve each feed, run `aggregator poll` and export every topic (and "all") in
    the three formats: {format: {topic: titles}}."""
    folder.mkdir()
    with FeedServer() as server:
        for name, (body, content_type) in served.items():
            server.add(f"/{name}.xml", body, content_type=content_type)
        feeds = [(n, server.url(f"/{n}.xml")) for n in served]
        every = [*topics, {"slug": "all", "title": "All"}]
        for t in every:
            t["limit"] = 200
        config = folder / "aggregator.toml"
        config.write_text(toml_config(feeds, every), encoding="utf-8")
        polled = run("poll", config=config)
    assert polled.returncode == 0, polled.stderr
    exported: dict[str, dict[str, list[str]]] = {}
    for fmt in ("json", "atom", "rss"):
        for t in every:
            out = run("export", str(t["slug"]), "--format", fmt, config=config)
            assert out.returncode == 0, out.stderr
            exported.setdefault(fmt, {})[str(t["slug"])] = _titles_of(fmt)(out.stdout)
    return exported


def test_poll_and_export_feeds_with_stray_bytes(tmp_path: Path) -> None:
    ru, ru_titles = damaged("ru-oren", [b"\xd0", b"\xff\xfe"])
    ur, ur_titles = damaged("ur-bbc", [b"\x80", b"\xc3", b"\x93"])
    hi, hi_titles = damaged("hi-news", [b"\xe0\xa4"])
    ar = (FEEDS / "ar-news.cp1256-undeclared.xml").read_bytes()
    ar_titles = titles(parse.parse(clean("ar-news")))
    # the words a reader of each language looks for, away from the damage
    topics: list[dict[str, object]] = [
        {"slug": "buzuluk", "title": "Бузулук", "query": "бузулук*"},
        {"slug": "urdu", "title": "امریکہ", "query": "امریکہ"},
        {"slug": "hindi", "title": "रूस", "query": "रूस"},
        {"slug": "arabic", "title": "باكستان", "query": "باكستان"},
    ]
    served = {
        "ru": (ru, "application/rss+xml; charset=utf-8"),
        "ur": (ur, "text/xml"),
        "hi": (hi, "application/xml"),
        "ar": (ar, "application/rss+xml"),
    }
    exported = poll_and_export(tmp_path / "site", served, topics)
    for fmt, by_topic in exported.items():
        got = set(by_topic["all"])
        for expected in (ru_titles, ur_titles, hi_titles, ar_titles):
            assert set(expected) <= got, (fmt, set(expected) - got)
        assert sum("\ufffd" in t for t in got) == 6, fmt
        assert not any(ch in "".join(got) for ch in "ĐŘŮÐØ"), fmt  # no mojibake
        # a word damaged in a title still matches where the text has it whole
        assert set(by_topic["buzuluk"]) == mentioning("ru-oren", "бузулук", ru_titles)
        assert set(by_topic["urdu"]) == mentioning("ur-bbc", "امریکہ", ur_titles)
        assert set(by_topic["hindi"]) == mentioning("hi-news", "रूस", hi_titles)
        assert set(by_topic["arabic"]) == mentioning("ar-news", "باكستان", ar_titles)


def mentioning(name: str, word: str, shown: list[str]) -> set[str]:
    """The titles (as `shown`) of the clean feed's entries whose text has `word`."""
    found = {
        shown[n]
        for n, e in enumerate(parse.parse(clean(name)).entries)
        if word in f"{e.title} {e.summary} {e.content}".lower()
    }
    assert found
    return found


@pytest.mark.parametrize(
    ("file", "encoding", "query"),
    [
        ("ru-oren.koi8r-undeclared.xml", "koi8-r", "оренбург*"),
        ("ru-oren.cp1251-undeclared.xml", "cp1251", "оренбург*"),
        ("ar-news.cp1256-undeclared.xml", "cp1256", "باكستان"),
    ],
)
def test_poll_and_export_undeclared_legacy_feed(
    tmp_path: Path, file: str, encoding: str, query: str
) -> None:
    body = (FEEDS / file).read_bytes()
    truth = titles(parse.parse(body.decode(encoding).encode("utf-8")))
    topics: list[dict[str, object]] = [{"slug": "q", "title": "Q", "query": query}]
    exported = poll_and_export(tmp_path / "site", {"legacy": (body, "text/html")}, topics)
    for fmt, by_topic in exported.items():
        assert sorted(by_topic["all"]) == sorted(truth), fmt
        assert by_topic["q"] and set(by_topic["q"]) <= set(truth), fmt


def _first_items(text: str, keep: int) -> str:
    """The feed with its first `keep` items (a feed of one story is a hard case)."""
    start = text.index("<item")
    ends = [i + len("</item>") for i in range(len(text)) if text.startswith("</item>", i)]
    return text[:start] + text[start : ends[keep - 1]] + text[ends[-1] :]


@pytest.mark.parametrize("keep", [1, 3])
@pytest.mark.parametrize(
    ("file", "source", "encoding"),
    [
        ("ru-oren.koi8r-undeclared.xml", "koi8-r", "cp1251"),
        ("ru-oren.koi8r-undeclared.xml", "koi8-r", "koi8-r"),
        ("ru-oren.koi8r-undeclared.xml", "koi8-r", "iso-8859-5"),
        ("ru-oren.koi8r-undeclared.xml", "koi8-r", "cp866"),
        ("ru-oren.koi8r-undeclared.xml", "koi8-r", "mac-cyrillic"),
        ("ar-news.cp1256-undeclared.xml", "cp1256", "cp1256"),
        ("ar-news.cp1256-undeclared.xml", "cp1256", "iso-8859-6"),
    ],
)
def test_short_legacy_feeds_that_declare_nothing(
    file: str, source: str, encoding: str, keep: int
) -> None:
    text = _first_items((FEEDS / file).read_bytes().decode(source), keep)
    truth = titles(parse.parse(text.encode("utf-8")))
    assert len(truth) == keep
    assert titles(parse.parse(text.encode(encoding))) == truth
