"""Every topic feed is valid XML 1.0 text, keeps every good entry, and titles keep their words.

Three realistic feeds from tests/feeds/ (a trimmed BBC Urdu RSS feed, Sam Ruby's Atom
feed with its inline SVG, a JSON Feed) carry characters XML cannot hold, raw and as
references, in titles, summaries, content, authors and attributes, next to titles
that talk about markup and links with upper-case schemes. Outlet and topic names in
the config carry such characters too. The real `aggregator poll` stores them; then
`aggregator export` and the HTTP server must answer all three formats, the XML must
parse strictly (lxml, no recovery), no text a reader decodes (HTML inside the feed
included) may hold a character XML forbids, and every entry must be there with the
title stored beside its feed file (`<feed>.expected.json`).
"""

from __future__ import annotations

import html
import json
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from aggregator import config as config_mod
from aggregator.models import FeedItem, Related, TopicFeed
from aggregator.publish import render, web
from aggregator.publish.server import make_server
from tests.conftest import toml_config
from tests.feedserver import FeedServer

ROOT = Path(__file__).resolve().parents[1]
FEEDS = Path(__file__).resolve().parent / "feeds"
FORMATS = ("atom", "rss", "json")
ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
#: feed name -> file in tests/feeds/ (its expected result is `<stem>.expected.json`)
SOURCES = {
    "urdu": "bbc-urdu-bad-chars.xml",
    "sam": "intertwingly-svg.atom",
    "json": "bad-chars.json",
}
#: what these feeds hold, less the one story two of them share
STORIES = 14 + 12 + 7 - 1


def not_xml(char: str) -> bool:
    """Forbidden in XML 1.0 text, or discouraged (C1 controls, noncharacters).

    Written out here from the XML 1.0 `Char` production, not taken from the code
    under test."""
    c = ord(char)
    if c in (0x9, 0xA, 0xD):
        return False
    return (
        c < 0x20
        or 0x7F <= c <= 0x9F
        or 0xD800 <= c <= 0xDFFF
        or 0xFDD0 <= c <= 0xFDEF
        or (c & 0xFFFE) == 0xFFFE
    )


_NUMERIC_REF = re.compile(r"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));?")


def bad_in(text: str) -> list[str]:
    """Characters XML cannot carry in `text`."""
    return [f"U+{ord(c):04X}" for c in text if not_xml(c)]


def bad_in_html(markup: str) -> list[str]:
    """Characters XML cannot carry in HTML: raw, as numeric references, or once decoded."""
    found = bad_in(markup)
    for m in _NUMERIC_REF.finditer(markup):
        code = int(m.group(1), 16) if m.group(1) else int(m.group(2))
        if code > 0x10FFFF or code == 0 or not_xml(chr(code)):
            found.append(m.group(0))
    return found + [f"decoded: {b}" for b in bad_in(html.unescape(markup))]


def strict_xml(body: bytes) -> Any:
    parser = etree.XMLParser(recover=False, resolve_entities=False, no_network=True)
    return etree.fromstring(body, parser)


def xml_problems(body: bytes) -> list[str]:
    """Every text and attribute of the document, and the HTML inside it once decoded."""
    root = strict_xml(body)
    found = []
    for el in root.iter():
        for value in [el.text or "", el.tail or "", *el.attrib.values()]:
            # Any text may be HTML to some reader (RSS titles, descriptions).
            found += [f"{el.tag}: {b}" for b in bad_in_html(value)]
    return found


def json_problems(body: bytes) -> list[str]:
    found: list[str] = []

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            # Only content_html is HTML in JSON Feed; the rest is plain text.
            check = bad_in_html if key == "content_html" else bad_in
            found.extend(f"{key}: {b}" for b in check(value))

    walk(json.loads(body.decode("utf-8")), "")
    return found


def titles_by_link(fmt: str, body: bytes) -> dict[str, str]:
    """Each entry's title as a reader shows it, by the entry's link."""
    if fmt == "json":
        return {i["url"]: i["title"] for i in json.loads(body)["items"]}
    root = strict_xml(body)
    out = {}
    if fmt == "atom":
        for entry in root.iterfind(f"{ATOM}entry"):
            title = entry.find(f"{ATOM}title")
            text = title.text or ""
            if title.get("type") == "html":
                text = html.unescape(text)
            link = entry.find(f"{ATOM}link[@rel='alternate']")
            out[link.get("href")] = text
    else:
        # RSS titles are read as HTML by most readers, so they are written for them.
        for item in root.iterfind("channel/item"):
            out[item.findtext("link")] = html.unescape(item.findtext("title") or "")
    return out


def contents(fmt: str, body: bytes) -> str:
    """All the entries' HTML, for looking for text in it."""
    if fmt == "json":
        return "\n".join(i["content_html"] for i in json.loads(body)["items"])
    root = strict_xml(body)
    if fmt == "atom":
        return "\n".join(el.text or "" for el in root.iter(f"{ATOM}content"))
    # an item's HTML is its description, and content:encoded when it also has a summary
    items = root.iterfind("channel/item")
    return "\n".join(
        el.text or "" for i in items for el in i if el.tag in ("description", f"{CONTENT}encoded")
    )


def expected_titles(origin: str) -> dict[str, str]:
    expected: dict[str, str] = {}
    for file in SOURCES.values():
        path = FEEDS / file.replace(Path(file).suffix, ".expected.json")
        for link, title in json.loads(path.read_text(encoding="utf-8"))["entries"].items():
            expected[link.replace("{server}", origin)] = title
    return expected


@dataclass
class Site:
    folder: Path
    config: Path
    #: the feed server's origin, which the Atom feed's relative links resolve against
    origin: str
    #: the aggregator's HTTP server
    base: str
    poll_log: str


def cli(site: Site, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(site.config), *args],
        cwd=site.folder,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("valid-output")
    with FeedServer() as server:
        for file in SOURCES.values():
            server.add(f"/{file}", (FEEDS / file).read_bytes())
        text = toml_config(
            [
                {"name": "urdu", "url": server.url(f"/{SOURCES['urdu']}"), "title": "BBC اردو"},
                {"name": "sam", "url": server.url(f"/{SOURCES['sam']}"), "title": "SAM"},
                {"name": "json", "url": server.url(f"/{SOURCES['json']}"), "title": "JSON"},
            ],
            [
                {"slug": "everything", "title": "TOPIC", "limit": 100},
                {"slug": "pakistan", "title": "Pakistan", "query": "پاکستان OR lahore"},
            ],
        )
        # Outlet and topic names with characters XML cannot carry (TOML escapes them).
        text = text.replace('"SAM"', '"Sam\\u0001 Ruby\\uFFFF"')
        text = text.replace('"JSON"', '"JSON\\u0002 outlet\\u0085"')
        text = text.replace('"TOPIC"', '"Every\\u0008thing \\uFFFE"')
        config = folder / "aggregator.toml"
        config.write_text(text, encoding="utf-8")
        poll = subprocess.run(
            [sys.executable, "-m", "aggregator", "--config", str(config), "poll"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert poll.returncode == 0, poll.stderr
        origin = server.url("/").rstrip("/")
    app = web.create_app(config_mod.load(config))
    http = make_server(app, "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(folder, config, origin, f"http://127.0.0.1:{http.address[1]}", poll.stdout)
    finally:
        http.close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def exported(site: Site) -> dict[str, bytes]:
    out = {}
    for fmt in FORMATS:
        run = cli(site, "export", "everything", "--format", fmt)
        assert run.returncode == 0, run.stderr.decode()
        # every entry was repaired, none had to be left out
        assert b"left out" not in run.stderr, run.stderr.decode()
        out[fmt] = run.stdout
    return out


def test_poll_stored_every_entry(site: Site) -> None:
    assert "errors=0" in site.poll_log, site.poll_log
    total = site.poll_log.splitlines()[-1]
    counts = dict(part.split("=") for part in total.replace(",", "").split() if "=" in part)
    # every item read is stored: 33 stories' entries, one of them joining another's
    assert counts["read"] == "33" and counts["skipped"] == "0", total
    assert int(counts["new"]) + int(counts["merged"]) == 33, total


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_is_valid_xml_text_in_every_field(exported: dict[str, bytes], fmt: str) -> None:
    body = exported[fmt]
    problems = json_problems(body) if fmt == "json" else xml_problems(body)
    assert problems == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_http_answers_every_format_as_export_does(
    site: Site, exported: dict[str, bytes], fmt: str
) -> None:
    for slug in ("everything", "pakistan"):
        response = requests.get(f"{site.base}/topics/{slug}.{fmt}", timeout=30)
        assert response.status_code == 200, (slug, response.text[:300])
        body = response.content
        assert (json_problems(body) if fmt == "json" else xml_problems(body)) == []
        if slug == "everything":
            assert body == exported[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_entry_is_there_with_its_title(
    site: Site, exported: dict[str, bytes], fmt: str
) -> None:
    got = titles_by_link(fmt, exported[fmt])
    assert len(got) == STORIES
    assert got == expected_titles(site.origin)


@pytest.mark.parametrize("fmt", FORMATS)
def test_names_lose_only_what_xml_cannot_carry(exported: dict[str, bytes], fmt: str) -> None:
    body = exported[fmt].decode("utf-8")
    for name in ("Sam Ruby", "JSON outlet", "Everything"):
        assert name in body, name
    if fmt == "json":
        items = json.loads(body)["items"]
        shared = [i for i in items if i["title"] == "A story both outlets carry"]
        assert len(shared) == 1
        related = shared[0]["_aggregator"]["related"]
        assert [r["source"] for r in related] in (["Sam Ruby"], ["JSON outlet"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_inline_svg_and_mathml_keep_their_text(exported: dict[str, bytes], fmt: str) -> None:
    text = contents(fmt, exported[fmt])
    assert "Requests per second" in text
    assert "Einstein wrote E=mc2 in 1905." in text
    assert "<svg" not in text and "<math" not in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_upper_case_schemes_are_kept(exported: dict[str, bytes], fmt: str) -> None:
    links = titles_by_link(fmt, exported[fmt])
    assert "http://WWW.BBC.COM/urdu/pakistan-45954321" in links
    assert "http://Intertwingly.NET/blog/2012/07/29/Upper" in links
    text = contents(fmt, exported[fmt])
    for url in (
        "https://WWW.BBC.COM/urdu/pakistan-45000000",
        "https://Example.ORG/Path",
        "http://Example.ORG/i.png",
    ):
        assert url in text, url


def test_checks_find_what_they_look_for() -> None:
    """The checks above must be able to fail."""
    assert bad_in("a\x01b") == ["U+0001"]
    assert bad_in_html("&#1; &#xFFFE; &#xD800; &#1114112;") == [
        "&#1;",
        "&#xFFFE;",
        "&#xD800;",
        "&#1114112;",
    ]
    assert bad_in_html("a\ufffeb") == ["U+FFFE", "decoded: U+FFFE"]
    assert bad_in_html("tab\t, Urdu پاکستان, \ufffd, \U0001f600, &amp;#1;") == []
    assert xml_problems(b"<a>&amp;#1;</a>") == ["a: &#1;"]
    with pytest.raises(etree.XMLSyntaxError):
        strict_xml(b"<a>&#1;</a>")
    assert json_problems(b'{"t": "\\u0001", "content_html": "&#1;"}') == [
        "t: U+0001",
        "content_html: &#1;",
    ]


# --- every field, every kind of bad character, rendered directly ------------------------------

#: characters XML cannot carry (or the validator flags), raw and as the references
#: a feed's HTML or title may hold; each must vanish or become U+FFFD, never break a feed
BAD = [
    "\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "\x7f", "\x85", "\x9f",
    "\ufdd0", "\ufffe", "\uffff", "\U0001fffe", "\U0010ffff", "\ud800", "\udfff",
    "&#0;", "&#1;", "&#x1;", "&#x1F;", "&#11;", "&#127;", "&#x9F;", "&#xFDD0;",
    "&#xFFFE;", "&#65535;", "&#x1FFFF;", "&#xD800;", "&#57343;", "&#1114112;", "&#x110000;",
    "&#1", "&amp;#1;",
]  # fmt: skip
FIELDS = [
    "title", "summary_html", "content_html", "html_attribute", "author", "source",
    "related_source", "matched", "link", "topic_title", "topic_query",
]  # fmt: skip
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
IMG = "https://i.example/a.png"


def item(n: int, **changes: Any) -> FeedItem:
    base = FeedItem(
        id=f"tag:127.0.0.1,2024:{n}",
        title=f"Story {n}",
        link=f"https://outlet.example/{n}",
        summary_html=f"<p>Summary {n}</p>",
        content_html=f"<p>Body {n}</p>",
        author=f"Reporter {n}",
        source="Outlet",
        source_url="https://outlet.example/",
        published=T0 - timedelta(hours=n),
        updated=T0 - timedelta(hours=n),
        related=(Related(url=f"https://other.example/{n}", source="Other"),),
        matched=("story",),
    )
    return replace(base, **changes)


def with_bad(field: str, bad: str) -> TopicFeed:
    text = f"a{bad}b"
    feed = TopicFeed(slug="t", title="Topic", query="story", base_url="http://127.0.0.1:8080")
    changes: dict[str, Any] = {
        "title": {"title": text},
        "summary_html": {"summary_html": f"<p>{text}</p>"},
        "content_html": {"content_html": f"<p>{text}</p>"},
        "html_attribute": {"content_html": f'<p title="{text}"><img alt="{text}" src="{IMG}"></p>'},
        "author": {"author": text},
        "source": {"source": text},
        "related_source": {"related": (Related(url="https://other.example/r", source=text),)},
        "matched": {"matched": (text,)},
        "link": {"link": f"https://outlet.example/{text}"},
    }.get(field, {})  # fmt: skip
    if field == "topic_title":
        feed = replace(feed, title=text)
    if field == "topic_query":
        feed = replace(feed, query=text)
    return replace(feed, items=(item(1, **changes), item(2)))


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("bad", BAD, ids=ascii)
def test_a_bad_character_in_any_field_never_breaks_a_feed(field: str, bad: str) -> None:
    feed = with_bad(field, bad)
    atom, rss, jsn = render.atom(feed), render.rss(feed), render.json_feed(feed)
    assert xml_problems(atom) == []
    assert xml_problems(rss) == []
    assert json_problems(jsn) == []
    # the entry is repaired, not dropped
    assert len(strict_xml(atom).findall(f"{ATOM}entry")) == 2
    assert len(strict_xml(rss).findall("channel/item")) == 2
    items = json.loads(jsn)["items"]
    assert len(items) == 2
    if field == "title":
        assert items[0]["title"].startswith("a") and items[0]["title"].endswith("b")


@pytest.mark.parametrize("bad", [b for b in BAD if not b.startswith("&")], ids=ascii)
def test_a_raw_bad_character_in_an_id_is_dropped_alike_in_every_format(bad: str) -> None:
    # Ids are ours (the store's story uid), but nothing is taken on trust.
    feed = TopicFeed(
        slug="t",
        title="Topic",
        query=None,
        base_url="http://127.0.0.1:8080",
        items=(item(1, id=f"tag:127.0.0.1,2024:a{bad}b"),),
    )
    atom, rss, jsn = render.atom(feed), render.rss(feed), render.json_feed(feed)
    assert xml_problems(atom) == xml_problems(rss) == json_problems(jsn) == []
    uid = "tag:127.0.0.1,2024:ab"
    assert strict_xml(atom).findtext(f"{ATOM}entry/{ATOM}id") == uid
    assert strict_xml(rss).findtext("channel/item/guid") == uid
    assert json.loads(jsn)["items"][0]["id"] == uid


# --- an entry that cannot be rendered is left out, not the feed -------------------------------


def test_an_entry_that_cannot_be_prepared_is_left_out_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = item(2, link="https://outlet.example/broken", published="yesterday")
    unnamed = item(3, link="https://outlet.example/no-id", id="\x01\ufffe")
    feed = TopicFeed(
        slug="t",
        title="Topic",
        query=None,
        base_url="http://127.0.0.1:8080",
        items=(item(1), broken, unnamed, item(4)),
    )
    with caplog.at_level(logging.WARNING, logger="aggregator.render"):
        atom, rss, jsn = render.atom(feed), render.rss(feed), render.json_feed(feed)
    assert titles_by_link("json", jsn) == titles_by_link("atom", atom) == titles_by_link("rss", rss)
    assert list(titles_by_link("json", jsn)) == [
        "https://outlet.example/1",
        "https://outlet.example/4",
    ]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 6  # each of the two, once per format
    assert all("topic t" in m and "left out" in m for m in logged)
    assert sum("https://outlet.example/broken" in m and "AttributeError" in m for m in logged) == 3
    assert sum("https://outlet.example/no-id" in m and "no id" in m for m in logged) == 3


def test_an_entry_feedgen_cannot_build_is_left_out_of_the_http_answer(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever lxml may refuse next: the failure stays with its entry, HTTP says 200."""
    import feedgen.entry

    def refuse(original: Any) -> Any:
        def build(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.title() == "utf8mb4":
                raise ValueError("All strings must be XML compatible")
            return original(self, *args, **kwargs)

        return build

    for name in ("atom_entry", "rss_entry"):
        monkeypatch.setattr(
            feedgen.entry.FeedEntry, name, refuse(getattr(feedgen.entry.FeedEntry, name))
        )
    client = web.create_app(config_mod.load(site.config)).test_client()
    with caplog.at_level(logging.WARNING, logger="aggregator.render"):
        for fmt in ("atom", "rss"):
            response = client.get(f"/topics/everything.{fmt}")
            assert response.status_code == 200, fmt
            got = titles_by_link(fmt, response.get_data())
            expected = expected_titles(site.origin)
            link = next(k for k, v in expected.items() if v == "utf8mb4")
            del expected[link]
            assert got == expected
    logged = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(logged) == 2
    assert all("topic everything" in m and link in m and "XML compatible" in m for m in logged)
