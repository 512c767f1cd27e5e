"""Hostile outlets and hostile HTTP clients, through the real pipeline.

Each attack is a path on one hostile FeedServer. A test polls it with `python -m
aggregator poll` in a subprocess, next to two good feeds (one over HTTP, one a
`file://` archive), and asserts what issue 7 asks of every attack: the feed's outcome
is stored (`store.feed_statuses`, what `aggregator status` prints), the poll ends
within a generous time bound, the process's peak RSS (VmHWM, which the child
reads at exit) stays within a stated bound above a good-feeds-only poll, and the good
feeds are stored in the same poll.

Then the published side: a feed with markup in every field goes through the pipeline
and every topic format and the index page are checked with real parsers, over a real
socket (waitress); and the HTTP server itself is fed hostile requests.

`bench/hostile_report.py` runs the same attack table and prints the figures.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html.parser
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import defusedxml.ElementTree
import pytest
import requests

from aggregator import config as config_mod
from aggregator.ingest.http import guard
from aggregator.publish import web
from aggregator.publish.server import make_server
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import (
    FeedServer,
    close_mid_body,
    content,
    endless,
    gzipped,
    lying_length,
    redirect,
    send,
    slow,
    status,
    trickle,
)

ROOT = Path(__file__).resolve().parents[1]

#: per-read timeout of the hostile polls; fetch's whole-request deadline is 3x this
TIMEOUT_S = 2
#: the body cap of the hostile polls
MAX_BODY = 1 << 20
#: a poll must finish within this, whatever one feed does (deadline 6 s plus start-up)
TIME_BOUND_S = 45.0
#: parse's default cap on one text field, in characters
MAX_FIELD = 200_000
#: peak RSS of a hostile poll above a good-feeds-only poll: the memory bound we claim
MEMORY_SLACK = 64 << 20
#: the same for the polls whose cap is raised to 16 MiB (100,000 entries, huge fields)
MEMORY_SLACK_BIG = 128 << 20


# -- feed documents -------------------------------------------------------------------------


def rss(items: str, *, prolog: str = "", encoding: str = "utf-8", channel: str = "") -> bytes:
    """An RSS 2.0 document around `items` (already XML)."""
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n{prolog}'
        '<rss version="2.0"><channel><title>Hostile</title><link>http://example.org/</link>'
        f"<description>d</description>{channel}{items}</channel></rss>"
    ).encode(encoding if encoding.lower() not in ("bogus-enc",) else "utf-8")


def item(
    guid: str, title: str, *, date: str = "Mon, 02 Mar 2026 10:00:00 GMT", **extra: str
) -> str:
    parts = [
        f"<guid isPermaLink='false'>{guid}</guid>",
        f"<title>{title}</title>",
        f"<link>http://example.org/{guid}</link>",
        f"<pubDate>{date}</pubDate>",
    ]
    parts += [f"<{k}>{v}</{k}>" for k, v in extra.items()]
    return "<item>" + "".join(parts) + "</item>"


GOOD_ITEMS = "".join(item(f"good-{n}", f"Good story number {n}") for n in range(3))
ARCHIVE_ITEMS = "".join(item(f"arch-{n}", f"Archived story number {n}") for n in range(2))


def billion_laughs() -> bytes:
    decls = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    prolog = "<!DOCTYPE rss [" + "".join(decls) + "]>\n"
    return rss(item("bl", "&lol9;"), prolog=prolog)


def quadratic() -> bytes:
    prolog = '<!DOCTYPE rss [<!ENTITY a "' + "A" * 50_000 + '">]>\n'
    return rss(item("qb", "&a;" * 50_000), prolog=prolog)


def short_entity_flood() -> bytes:
    # Eight characters pass the screen (named characters in old feeds); the expansion
    # is then linear in the body, which the cap already bounds.
    prolog = '<!DOCTYPE rss [<!ENTITY e "eeeeeeee">]>\n'
    return rss(item("flood", "&e;" * 200_000), prolog=prolog)


def external_entity(target: str) -> bytes:
    prolog = f'<!DOCTYPE rss [<!ENTITY ext SYSTEM "{target}">]>\n'
    return rss(item("xxe", "Leak &ext; here"), prolog=prolog)


def parameter_entity(target: str) -> bytes:
    prolog = f'<!DOCTYPE rss [<!ENTITY % p SYSTEM "{target}"> %p;]>\n'
    return rss(item("pe", "Parameter entity"), prolog=prolog)


def external_dtd(target: str) -> bytes:
    prolog = f'<!DOCTYPE rss SYSTEM "{target}">\n'
    return rss(item("dtd", "External DTD story"), prolog=prolog)


def xinclude_and_stylesheet(target: str) -> bytes:
    prolog = f'<?xml-stylesheet type="text/xsl" href="{target}"?>\n'
    include = (
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{target}" parse="text"/>'
    )
    return rss(item("xi", "XInclude story", description=include), prolog=prolog)


def many_entries(n: int) -> bytes:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    # Oldest first, so that keeping the document's first 1,000 would keep the wrong ones.
    items = "".join(
        item(
            f"e{i}",
            f"Entry {i}",
            date=(base + timedelta(minutes=i)).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        )
        for i in range(n)
    )
    return rss(items)


def enormous_fields() -> bytes:
    big = "W" * 1_000_000
    return rss(
        "<item>"
        f"<guid isPermaLink='false'>g{'G' * 300_000}</guid>"
        f"<title>Huge {big}</title>"
        f"<link>http://example.org/{'L' * 300_000}</link>"
        f"<description>{big}</description>"
        f"<author>a@example.org ({'A' * 300_000})</author>"
        "<pubDate>Mon, 02 Mar 2026 10:00:00 GMT</pubDate>"
        "</item>"
    )


def duplicate_guids() -> bytes:
    return rss("".join(item("same-guid", f"Version {n} of the same item") for n in range(200)))


ABSURD_DATES = [
    "Mon, 01 Jan 0001 00:00:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Wed, 31 Dec 1969 23:59:59 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "-62135596800",
    "Tue, 30 Feb 2026 10:00:00 GMT",
    "Mon, 02 Mar 99999999 10:00:00 GMT",
    "Mon, 02 Mar 2026 10:00:00 +9999",
    "0000-00-00T00:00:00Z",
    "yesterday",
]


def absurd_dates() -> bytes:
    return rss(
        "".join(item(f"date-{n}", f"Dated story {n}", date=d) for n, d in enumerate(ABSURD_DATES))
    )


def absurd_json_dates() -> bytes:
    dates = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "-0001-01-01", "1969-12-31T23:59:59Z"]
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "J",
        "items": [
            {"id": f"j{n}", "title": f"JSON dated story {n}", "date_published": d}
            for n, d in enumerate(dates)
        ],
    }
    return json.dumps(doc).encode()


def invalid_xml_chars() -> bytes:
    bad = "Bad\x00char\x01\x08\x0b\x0c\x1f and &#0; &#xFFFE; &#xD800; end"
    return rss(item("ctl", bad, description="ctl \x0b\x1b[31m escape"))


def char_refs() -> bytes:
    refs = "&#xD800; &#55296; &#x110000; &#99999999999999999999; &#x0; &#xFFFE; &#233;"
    return rss(item("refs", f"References {refs} end"))


def char_refs_utf16() -> bytes:
    doc = rss(item("refs16", "UTF-16 &#xD800; &#99999999999999999999; end")).decode()
    return doc.replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")


def json_bad_chars() -> bytes:
    return (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "j\\ud800",'
        b' "title": "JSON \\ud800 lone \\udfff surrogates \\u0000 and \\u001b controls",'
        b' "content_html": "<p>\\ud83d body</p>"}]}'
    )


def lying_utf8() -> bytes:
    # Declared UTF-8, actually windows-1251 (Russian).
    text = "Новости дня: Москва и Исламабад подписали соглашение"
    return rss(item("cyr", text)).decode("utf-8").encode("cp1251", errors="replace")


def bogus_encoding() -> bytes:
    return rss(item("bogus", "Story in a bogus encoding"), encoding="bogus-enc")


def utf16_declared_utf8_body() -> bytes:
    return rss(item("u16", "Declared UTF-16, sent as UTF-8")).replace(
        b'encoding="utf-8"', b'encoding="utf-16"'
    )


def utf16_bom_body() -> bytes:
    return "\ufeff".encode("utf-16-le") + rss(item("bom16", "UTF-16 with BOM")).decode().replace(
        'encoding="utf-8"', 'encoding="utf-16"'
    ).encode("utf-16-le")


def utf7_header() -> bytes:
    return rss(item("u7", "+ADw-script+AD4-alert(1)+ADw-/script+AD4- UTF-7 story"))


def deep_json() -> bytes:
    return (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": '
        + b"[" * 200_000
        + b"]" * 200_000
        + b"}"
    )


def deep_xml() -> bytes:
    return rss(item("deep", "Deep", description="<x>" * 100_000 + "</x>" * 100_000))


def many_attributes(encoding: str = "utf-8") -> bytes:
    attributes = " ".join(f'a{i}="v"' for i in range(80_000))
    return rss(f"<item {attributes}><guid>attrs</guid><title>x</title></item>", encoding=encoding)


def deep_xml_malformed() -> bytes:
    # An undefined entity first: expat (and feedparser's strict parser) stop there, and
    # feedparser's loose parser reads the rest.
    return rss(item("deep", "Deep &bogus;", description="<x>" * 100_000 + "</x>" * 100_000))


def html_page() -> bytes:
    return b"<!doctype html><html><head><title>Not a feed</title></head><body>Hello</body></html>"


# -- hostile routes ---------------------------------------------------------------------------


def _many_headers(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True
    h.send_response(200)
    for n in range(500):
        h.send_header(f"X-H{n}", "v")
    h.send_header("Content-Length", "0")
    h.end_headers()


def _long_header(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True
    h.send_response(200)
    h.send_header("X-Long", "v" * 200_000)
    h.send_header("Content-Length", "0")
    h.end_headers()


def _garbage_status(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True
    h.wfile.write(b"HTTP/1.1 abc What\r\n\r\n<rss/>")


def _not_http(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True
    h.wfile.write(b"\x00\xff" * 1000)


def _endless_continue(h: BaseHTTPRequestHandler) -> None:
    """1xx interim responses, as fast as the client reads, never a final one."""
    h.close_connection = True
    try:
        while not h.server.owner.stopping.is_set():  # type: ignore[attr-defined]
            h.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 64)
    except OSError:
        return


def _raw(head: bytes, body: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.wfile.write(head + b"\r\n\r\n" + body)

    return handler


def _encoded(data: bytes, encoding: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def handler(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, data, headers={"Content-Encoding": encoding})

    return handler


@dataclass
class Attack:
    """One hostile path and the outcome the pipeline must reach for it."""

    #: the attack class (what the report groups by)
    kind: str
    #: the path on the hostile server
    path: str
    #: a regex the stored error must match; None: the feed is read (ok) and `check` runs
    error: str | None
    #: extra `[polling]` lines for this attack's config
    polling: str = ""
    #: a check of the stored entries of the hostile feed (rows of store entries)
    check: Callable[[list[dict[str, object]]], None] | None = None
    #: the memory slack this attack is held to
    slack: int = MEMORY_SLACK
    #: a feed option for the hostile feed ({"allow_private": True})
    options: dict[str, object] = field(default_factory=dict)
    #: the hostile feed's URL when it is not on the server (file:, another host name)
    url: Callable[[FeedServer], str] | None = None


def _expect_titles(expected: set[str]) -> Callable[[list[dict[str, object]]], None]:
    def check(rows: list[dict[str, object]]) -> None:
        assert {str(r["title"]) for r in rows} == expected

    return check


def _check_newest_thousand(rows: list[dict[str, object]]) -> None:
    assert len(rows) == 1000
    assert {str(r["guid"]) for r in rows} == {f"e{i}" for i in range(99_000, 100_000)}


def _check_truncated(rows: list[dict[str, object]]) -> None:
    assert len(rows) == 1
    row = rows[0]
    for name in ("title", "summary_html", "guid", "link", "author"):
        value = row[name]
        assert value is None or len(str(value)) <= MAX_FIELD, (name, len(str(value)))
    # The matching text joins title, summary and content: three capped fields at most.
    assert len(str(row["text"])) <= 3 * MAX_FIELD + 2
    assert str(row["title"]).startswith("Huge WWW")


def _check_one(rows: list[dict[str, object]]) -> None:
    assert len(rows) == 1
    assert str(rows[0]["title"]) == "Version 0 of the same item"


def _check_sane_dates(rows: list[dict[str, object]]) -> None:
    assert rows, "absurdly dated entries are kept, with a sane date"
    now = datetime.now(UTC)
    for r in rows:
        published = store.parse_ts(str(r["published"]))
        assert published is not None
        assert datetime(1990, 1, 1, tzinfo=UTC) <= published <= now + timedelta(minutes=1), r


def _check_no_control_chars(rows: list[dict[str, object]]) -> None:
    assert rows
    for r in rows:
        for name in ("title", "text", "summary_html"):
            text = str(r[name])
            assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]", text), (
                name,
                text,
            )


def _check_cyrillic(rows: list[dict[str, object]]) -> None:
    assert len(rows) == 1
    assert "Москва" in str(rows[0]["title"])


def _check_readable(rows: list[dict[str, object]]) -> None:
    assert len(rows) == 1 and str(rows[0]["title"]).strip()


def _check_no_canary_text(rows: list[dict[str, object]]) -> None:
    for r in rows:
        for value in r.values():
            assert "CANARY" not in str(value)
            assert "root:" not in str(value)


BOMB = b"\0" * (96 << 20)


def attacks() -> list[Attack]:
    """The attack table: one row per hostile path (shared with bench/hostile_report.py)."""
    return [
        Attack("entity expansion", "/billion-laughs", r"refused: DOCTYPE declares"),
        Attack("entity expansion", "/quadratic", r"refused: DOCTYPE declares"),
        Attack("entity expansion", "/entity-flood", None, check=_check_readable),
        Attack("external entity", "/xxe-file", r"refused: DOCTYPE declares external entity"),
        Attack("external entity", "/xxe-http", r"refused: DOCTYPE declares external entity"),
        Attack("external entity", "/parameter-entity", r"refused: DOCTYPE declares parameter"),
        Attack("external entity", "/external-dtd", None, check=_check_no_canary_text),
        Attack("external entity", "/xinclude", None, check=_check_no_canary_text),
        Attack("gzip bomb", "/gzip-bomb", r"body exceeds 1MiB cap once decompressed"),
        Attack("gzip bomb", "/deflate-bomb", r"body exceeds 1MiB cap once decompressed"),
        Attack("gzip bomb", "/nested-gzip-bomb", r"body exceeds 1MiB cap once decompressed"),
        Attack("gzip bomb", "/x-gzip-bomb", r"body exceeds 1MiB cap once decompressed"),
        Attack("gzip bomb", "/brotli", r"unsupported Content-Encoding"),
        Attack("gzip bomb", "/corrupt-gzip", r"bad gzip body"),
        Attack("huge body", "/endless", r"body exceeds 1MiB cap"),
        Attack("huge body", "/huge-declared", r"body exceeds 1MiB cap \(Content-Length"),
        Attack("huge body", "/lying-length", r"connection closed mid-body"),
        Attack("huge body", "/close-mid-body", r"connection closed mid-body"),
        Attack("trickle", "/trickle-headers", r"timed out"),
        Attack("trickle", "/trickle-body", r"timed out"),
        Attack("trickle", "/slow-first-byte", r"timed out"),
        Attack("bad HTTP", "/many-headers", r"connection failed|request failed"),
        Attack("bad HTTP", "/long-header", r"connection failed|request failed"),
        Attack("bad HTTP", "/garbage-status", r"connection failed|request failed"),
        Attack("bad HTTP", "/not-http", r"connection failed|request failed"),
        Attack("bad HTTP", "/server-error", r"HTTP 500"),
        Attack("bad HTTP", "/endless-continue", r"timed out|connection failed|request failed"),
        Attack("bad HTTP", "/bad-content-length", r"connection failed|request failed|mid-body"),
        Attack("bad HTTP", "/bad-chunks", r"connection failed|mid-body|closed"),
        Attack("bad HTTP", "/status-999", r"HTTP 999"),
        Attack("redirect", "/loop-a", r"redirect loop"),
        Attack("redirect", "/chain/0", r"too many redirects"),
        Attack("redirect", "/five/0", None, check=_expect_titles({"Five hops away"})),
        Attack("redirect", "/to-file", r"redirect to file: refused"),
        Attack(
            "redirect", "/to-link-local", r"redirect to 169\.254\.169\.254.*link-local.*refused"
        ),
        Attack("redirect", "/to-mapped-link-local", r"link-local address: refused"),
        Attack("redirect", "/to-private", r"redirect to 10\.0\.0\.1.*private.*refused"),
        Attack("redirect", "/to-unspecified", r"reserved address: refused"),
        Attack("redirect", "/to-gopher", r"redirect to gopher: refused"),
        Attack("redirect", "/to-scheme-relative", r"link-local address: refused"),
        Attack("redirect", "/to-decimal-link-local", r"link-local address: refused"),
        Attack("redirect", "/to-data", r"redirect to data: refused"),
        Attack("redirect", "/no-location", r"redirect without Location"),
        Attack("invalid XML", "/invalid-chars", None, check=_check_no_control_chars),
        Attack("invalid XML", "/char-refs", None, check=_check_no_control_chars),
        Attack("invalid XML", "/char-refs-utf16", r"not a feed"),
        Attack("invalid XML", "/json-bad-chars", None, check=_check_no_control_chars),
        Attack("invalid XML", "/deep-xml", r"refused: elements nested more than 512 deep"),
        Attack("invalid XML", "/deep-xml-malformed", r"nested more than 4096 deep"),
        Attack("invalid XML", "/many-attributes", r"refused: an element with 80000 attributes"),
        Attack("invalid XML", "/many-attributes-sjis", r"refused: an element with 80000"),
        Attack("invalid XML", "/deep-json", r"not a feed: broken JSON"),
        Attack("invalid XML", "/html-page", r"not a feed"),
        Attack("invalid XML", "/binary", r"not a feed"),
        Attack("invalid XML", "/empty", r"empty body"),
        Attack("encoding", "/lying-utf8", None, check=_check_cyrillic),
        Attack("encoding", "/bogus-encoding", None, check=_check_readable),
        Attack("encoding", "/utf16-declared", None, check=_check_readable),
        Attack("encoding", "/utf16-bom", None, check=_check_readable),
        Attack("encoding", "/header-says-koi8", None, check=_check_readable),
        Attack(
            "100,000 entries",
            "/many-entries",
            None,
            polling='max_body = "16MiB"',
            check=_check_newest_thousand,
            slack=MEMORY_SLACK_BIG,
        ),
        Attack(
            "enormous fields",
            "/enormous-fields",
            None,
            polling='max_body = "16MiB"',
            check=_check_truncated,
            slack=MEMORY_SLACK_BIG,
        ),
        Attack("duplicate guids", "/duplicate-guids", None, check=_check_one),
        Attack("absurd dates", "/absurd-dates", None, check=_check_sane_dates),
        Attack("absurd dates", "/absurd-json-dates", None, check=_check_sane_dates),
        Attack(
            "private address",
            "/good-elsewhere",
            r"resolves to 127\.0\.0\.1 \(loopback address\); set allow_private",
            url=_named_host_url,
        ),
        Attack(
            "private address",
            "/good-elsewhere",
            None,
            options={"allow_private": True},
            url=_named_host_url,
            check=_expect_titles({"Served on a private name"}),
        ),
        Attack(
            "private address",
            "/good-elsewhere",
            r"resolves to 127\.0\.0\.1 \(loopback address\)",
            url=lambda s: f"http://2130706433:{s.port}/good-elsewhere",
        ),
        Attack(
            "private address",
            "/good-elsewhere",
            r"resolves to 127\.0\.0\.1 \(loopback address\)",
            url=lambda s: f"http://0x7f.1:{s.port}/good-elsewhere",
        ),
        Attack(
            "file: feed", "/missing", r"no such file", url=lambda s: "file:///nonexistent/feed.xml"
        ),
        Attack("file: feed", "/dir", r"not a regular file", url=lambda s: "file:///tmp"),
        Attack("file: feed", "/dev", r"not a regular file", url=lambda s: "file:///dev/zero"),
    ]


def _named_host_url(server: FeedServer) -> str:
    """A URL through a host name (not "localhost", not an IP) that resolves to loopback:
    what a public-looking name pointing at a private address looks like from here."""
    name = socket.gethostname()
    try:
        addresses = {
            a[4][0] for a in socket.getaddrinfo(name, server.port, type=socket.SOCK_STREAM)
        }
    except OSError:
        addresses = set()
    if guard.is_explicit_host(name) or addresses != {"127.0.0.1"}:
        pytest.skip(f"this host's name {name!r} does not resolve to 127.0.0.1 alone")
    return f"http://{name}:{server.port}/good-elsewhere"


def install(server: FeedServer, canary_hits: list[str]) -> None:
    """Put every hostile route on `server`; requests for /canary* are recorded in canary_hits."""
    canary = server.url("/canary")

    def canary_route(h: BaseHTTPRequestHandler) -> None:
        canary_hits.append(h.path)
        send(h, 200, b'<!ENTITY leak "CANARY">CANARY', content_type="text/plain")

    for p in ("/canary", "/canary.dtd", "/canary.xsl"):
        server.route(p, canary_route)
    server.route("/good.xml", content(rss(GOOD_ITEMS)))
    server.route("/good-elsewhere", content(rss(item("priv", "Served on a private name"))))
    server.route("/billion-laughs", content(billion_laughs()))
    server.route("/quadratic", content(quadratic()))
    server.route("/entity-flood", content(short_entity_flood()))
    server.route("/xxe-file", content(external_entity("file:///etc/passwd")))
    server.route("/xxe-http", content(external_entity(canary)))
    server.route("/parameter-entity", content(parameter_entity(canary + ".dtd")))
    server.route("/external-dtd", content(external_dtd(canary + ".dtd")))
    server.route("/xinclude", content(xinclude_and_stylesheet(canary + ".xsl")))
    server.route("/gzip-bomb", gzipped(BOMB))
    server.route("/x-gzip-bomb", gzipped(BOMB, encoding="x-gzip"))
    server.route("/deflate-bomb", _encoded(zlib.compress(BOMB, 9), "deflate"))
    inner = gzip.compress(BOMB, compresslevel=9, mtime=0)
    server.route("/nested-gzip-bomb", _encoded(gzip.compress(inner, mtime=0), "gzip, gzip"))
    server.route("/brotli", _encoded(b"\x1b\x00\x00", "br"))
    server.route("/corrupt-gzip", _encoded(b"\x1f\x8b\x08\x00garbage-not-deflate" * 10, "gzip"))
    server.route("/endless", endless())
    server.route("/huge-declared", lying_length(b"<rss>", 10 << 30))
    server.route("/lying-length", lying_length(rss(GOOD_ITEMS), 10_000))
    server.route("/close-mid-body", close_mid_body(rss(GOOD_ITEMS) * 4, 200))
    server.route("/trickle-headers", trickle(in_headers=True, interval=0.1))
    server.route("/trickle-body", trickle(interval=0.1))
    server.route("/slow-first-byte", slow(30))
    server.route("/many-headers", _many_headers)
    server.route("/long-header", _long_header)
    server.route("/garbage-status", _garbage_status)
    server.route("/not-http", _not_http)
    server.route("/server-error", status(500, body=b"Traceback (most recent call last)"))
    server.route("/loop-a", redirect(302, "/loop-b"))
    server.route("/loop-b", redirect(302, "/loop-a"))
    for n in range(7):
        server.route(f"/chain/{n}", redirect(302, f"/chain/{n + 1}"))
    server.route("/chain/7", content(rss(item("far", "Too far away"))))
    for n in range(5):
        server.route(f"/five/{n}", redirect(307, f"/five/{n + 1}"))
    server.route("/five/5", content(rss(item("five", "Five hops away"))))
    server.route("/to-file", redirect(302, "file:///etc/passwd"))
    server.route("/to-link-local", redirect(302, "http://169.254.169.254/latest/meta-data/"))
    server.route("/to-mapped-link-local", redirect(302, "http://[::ffff:169.254.169.254]/x"))
    server.route("/to-private", redirect(302, "http://10.0.0.1/feed"))
    server.route("/to-unspecified", redirect(302, f"http://0.0.0.0:{server.port}/good.xml"))
    server.route("/to-gopher", redirect(302, "gopher://127.0.0.1:70/"))
    server.route("/to-data", redirect(302, "data:text/xml,<rss/>"))
    server.route("/no-location", status(302))
    server.route("/invalid-chars", content(invalid_xml_chars()))
    server.route("/char-refs", content(char_refs()))
    server.route("/char-refs-utf16", content(char_refs_utf16()))
    server.route("/json-bad-chars", content(json_bad_chars(), content_type="application/json"))
    server.route("/deep-xml", content(deep_xml()))
    server.route("/deep-xml-malformed", content(deep_xml_malformed()))
    server.route("/many-attributes", content(many_attributes()))
    server.route("/many-attributes-sjis", content(many_attributes("shift_jis")))
    server.route("/endless-continue", _endless_continue)
    server.route(
        "/bad-content-length", _raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10, 20", b"<rss/>")
    )
    server.route(
        "/bad-chunks", _raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", b"zz\r\n<rss/>")
    )
    server.route("/status-999", _raw(b"HTTP/1.1 999 Whatever", b""))
    server.route("/to-scheme-relative", redirect(302, "//169.254.169.254/latest/meta-data/"))
    server.route("/to-decimal-link-local", redirect(302, "http://2852039166/latest/meta-data/"))
    server.route("/deep-json", content(deep_json(), content_type="application/feed+json"))
    server.route("/html-page", content(html_page(), content_type="text/html"))
    server.route("/binary", content(os.urandom(4096), content_type="application/octet-stream"))
    server.route("/empty", content(b""))
    server.route("/lying-utf8", content(lying_utf8()))
    server.route("/bogus-encoding", content(bogus_encoding()))
    server.route("/utf16-declared", content(utf16_declared_utf8_body()))
    server.route("/utf16-bom", content(utf16_bom_body()))
    server.route(
        "/header-says-koi8",
        content(rss(item("koi", "Header says KOI8-R")), content_type="text/xml; charset=koi8-r"),
    )
    server.route("/many-entries", content(many_entries(100_000)))
    server.route("/enormous-fields", content(enormous_fields()))
    server.route("/duplicate-guids", content(duplicate_guids()))
    server.route("/absurd-dates", content(absurd_dates()))
    server.route(
        "/absurd-json-dates", content(absurd_json_dates(), content_type="application/feed+json")
    )


# -- running a poll in a subprocess ------------------------------------------------------------


@dataclass(frozen=True)
class PollRun:
    """One `aggregator poll` process: exit code, output, wall time and peak RSS."""

    returncode: int
    output: str
    seconds: float
    #: the process's own peak resident set size after exec, bytes (VmHWM)
    peak_rss: int


#: runs the real CLI, then writes the process's VmHWM to $HWM_FILE at exit. wait4's
#: ru_maxrss would not do: it keeps the peak of the forked copy of this test process,
#: whose hostile bodies are hundreds of MB, across the exec.
_HWM_WRAPPER = """
import atexit, os, re, runpy, sys
def hwm():
    with open("/proc/self/status") as f:
        kb = re.search(r"VmHWM:\\s+(\\d+)", f.read())
    with open(os.environ["HWM_FILE"], "w") as out:
        out.write(kb.group(1) if kb else "0")
atexit.register(hwm)
sys.argv = ["aggregator", *sys.argv[1:]]
runpy.run_module("aggregator", run_name="__main__", alter_sys=True)
"""


def run_poll(
    config_path: Path, *, timeout: float = TIME_BOUND_S, args: tuple[str, ...] = ()
) -> PollRun:
    """Run the `aggregator poll` command in a child process and measure it."""
    out_path = config_path.with_suffix(".out")
    hwm_path = config_path.with_suffix(".hwm")
    started = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HWM_WRAPPER, "--config", str(config_path), "poll", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HWM_FILE": str(hwm_path)},
        )
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"poll still running after {timeout:g}s:\n{out_path.read_text(errors='replace')}"
        ) from None
    seconds = time.monotonic() - started
    hwm = int(hwm_path.read_text() or 0) * 1024 if hwm_path.exists() else 0
    return PollRun(proc.returncode, out_path.read_text(errors="replace"), seconds, hwm)


def write_config(
    folder: Path,
    server: FeedServer,
    archive: Path,
    hostile: list[dict[str, object]],
    *,
    polling: str = "",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    feeds: list[dict[str, object]] = [
        {"name": "good", "url": server.url("/good.xml")},
        {"name": "archive", "url": archive.as_uri()},
        *hostile,
    ]
    lines = f'timeout = "{TIMEOUT_S}s"\nmax_body = "1MiB"\nconcurrency = 4\n' + polling
    text = toml_config(feeds, [{"slug": "all", "title": "Everything"}], polling=lines)
    path = folder / "aggregator.toml"
    path.write_text(text, encoding="utf-8")
    return path


def entry_rows(db_path: Path, feed: str) -> list[dict[str, object]]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM entries WHERE feed = ?", (feed,))]
    finally:
        conn.close()


def statuses(db_path: Path) -> dict[str, store.FeedStatus]:
    with store.Store(db_path) as db:
        return {s.name: s for s in db.feed_statuses()}


# -- fixtures --------------------------------------------------------------------------------


@dataclass
class Hostile:
    server: FeedServer
    archive: Path
    canary_hits: list[str]
    #: peak RSS of a poll of the good feeds alone, bytes
    baseline_rss: int


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    folder = tmp_path_factory.mktemp("hostile")
    archive = folder / "archive.xml"
    archive.write_bytes(rss(ARCHIVE_ITEMS))
    hits: list[str] = []
    with FeedServer() as server:
        install(server, hits)
        baseline = run_poll(write_config(folder / "baseline", server, archive, []))
        assert baseline.returncode == 0, baseline.output
        yield Hostile(server, archive, hits, baseline.peak_rss)


def poll_attack(
    h: Hostile, attack: Attack, folder: Path
) -> tuple[PollRun, dict[str, store.FeedStatus]]:
    url = attack.url(h.server) if attack.url else h.server.url(attack.path)
    feed: dict[str, object] = {"name": "hostile", "url": url, **attack.options}
    path = write_config(folder, h.server, h.archive, [feed], polling=attack.polling)
    run = run_poll(path)
    return run, statuses(folder / "aggregator.db")


ATTACKS = attacks()


@pytest.mark.parametrize(
    "attack", ATTACKS, ids=[f"{a.kind}:{a.path}{'+opt' if a.options else ''}" for a in ATTACKS]
)
def test_attack_is_contained(hostile: Hostile, attack: Attack, tmp_path: Path) -> None:
    run, feeds = poll_attack(hostile, attack, tmp_path)
    assert run.returncode == 0, run.output
    assert "Traceback" not in run.output, run.output
    # The good feeds were stored in the same poll.
    assert feeds["good"].last_error is None and feeds["good"].entries == 3, run.output
    assert feeds["archive"].last_error is None and feeds["archive"].entries == 2, run.output
    outcome = feeds["hostile"]
    assert outcome.last_fetch is not None, "the hostile feed's outcome is stored"
    if attack.error is not None:
        assert outcome.last_error is not None, f"expected an error for {attack.path}"
        assert re.search(attack.error, outcome.last_error), outcome.last_error
        assert outcome.failures == 1
        assert re.search(r"^hostile\s+error", run.output, re.MULTILINE), run.output
    else:
        assert outcome.last_error is None, outcome.last_error
    if attack.check is not None:
        attack.check(entry_rows(tmp_path / "aggregator.db", "hostile"))
    # Bounded time (generous: the deadline is 3 x TIMEOUT_S) and memory.
    assert run.seconds < TIME_BOUND_S
    assert run.peak_rss < hostile.baseline_rss + attack.slack, (
        f"peak RSS {run.peak_rss >> 20} MiB, baseline {hostile.baseline_rss >> 20} MiB"
    )
    assert not hostile.canary_hits, f"an external reference was fetched: {hostile.canary_hits}"


def test_status_command_shows_the_stored_error(hostile: Hostile, tmp_path: Path) -> None:
    """What `aggregator status` prints for a contained attack names the cause."""
    run, _ = poll_attack(hostile, Attack("gzip bomb", "/gzip-bomb", "x"), tmp_path)
    assert run.returncode == 0
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aggregator",
            "--config",
            str(tmp_path / "aggregator.toml"),
            "status",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = {r["feed"]: r for r in json.loads(out)} if out.lstrip().startswith("[") else None
    assert rows is not None, out
    assert "cap once decompressed" in str(rows["hostile"]["last_error"])
    assert rows["good"]["last_error"] is None


def test_every_attack_in_one_poll(hostile: Hostile, tmp_path: Path) -> None:
    """All the failing attacks at once, in one poll with the good feeds: the poll still
    ends in bounded time, and every outcome is stored for its own feed."""
    failing = [a for a in ATTACKS if a.error and a.url is None]
    feeds: list[dict[str, object]] = [
        {"name": f"h{n}", "url": hostile.server.url(a.path)} for n, a in enumerate(failing)
    ]
    path = write_config(tmp_path, hostile.server, hostile.archive, feeds, polling="concurrency = 8")
    run = run_poll(path, timeout=TIME_BOUND_S * 3)
    assert run.returncode == 0, run.output
    got = statuses(tmp_path / "aggregator.db")
    assert got["good"].entries == 3 and got["archive"].entries == 2
    for n, a in enumerate(failing):
        error = got[f"h{n}"].last_error
        assert error is not None and re.search(a.error or "", error), (a.path, error)
    assert run.peak_rss < hostile.baseline_rss + MEMORY_SLACK * 4
    assert not hostile.canary_hits


# -- address classes (no public host exists here, so the rules are tested as data) ----------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.216.34", guard.PUBLIC),
        ("2606:4700::1111", guard.PUBLIC),
        ("127.0.0.1", guard.LOOPBACK),
        ("127.255.255.254", guard.LOOPBACK),
        ("::1", guard.LOOPBACK),
        ("::ffff:127.0.0.1", guard.LOOPBACK),
        ("169.254.169.254", guard.LINK_LOCAL),
        ("fe80::1%eth0", guard.LINK_LOCAL),
        ("::ffff:169.254.169.254", guard.LINK_LOCAL),
        ("64:ff9b::a9fe:a9fe", guard.LINK_LOCAL),
        ("2002:a9fe:a9fe::1", guard.LINK_LOCAL),
        ("10.1.2.3", guard.PRIVATE),
        ("172.16.0.1", guard.PRIVATE),
        ("192.168.1.1", guard.PRIVATE),
        ("100.64.0.1", guard.PRIVATE),
        ("fd00::1", guard.PRIVATE),
        ("0.0.0.0", guard.RESERVED),
        ("::", guard.RESERVED),
        ("224.0.0.1", guard.RESERVED),
        ("240.0.0.1", guard.RESERVED),
        ("255.255.255.255", guard.RESERVED),
        ("192.0.2.1", guard.RESERVED),
    ],
)
def test_address_class(address: str, kind: str) -> None:
    assert guard.address_class(address) == kind


@pytest.mark.parametrize(
    "target", [guard.PRIVATE, guard.LOOPBACK, guard.LINK_LOCAL, guard.RESERVED]
)
def test_public_feed_may_not_redirect_into_a_non_public_class(target: str) -> None:
    """From a public host (named, not a literal IP), only public addresses, hop after hop;
    allow_private lifts it."""
    first = guard.permitted_classes(None, explicit=False, allow_private=False)
    after_public = guard.permitted_classes(guard.PUBLIC, explicit=False, allow_private=False)
    assert target not in first and target not in after_public
    assert guard.PUBLIC in first and guard.PUBLIC in after_public
    assert target in guard.permitted_classes(guard.PUBLIC, explicit=False, allow_private=True)


def test_link_local_is_never_reached_by_redirect_even_from_a_private_feed() -> None:
    for previous in (guard.PRIVATE, guard.LOOPBACK):
        permitted = guard.permitted_classes(previous, explicit=True, allow_private=False)
        assert guard.LINK_LOCAL not in permitted and guard.RESERVED not in permitted


# -- nothing passes through: markup in every field, every output ------------------------------

XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'
PAYLOADS = [
    XSS,
    "<style>body{display:none}</style><iframe src='javascript:alert(3)'></iframe>",
    "<object data='data:text/html;base64,PHNjcmlwdD5hbGVydCg0KTwvc2NyaXB0Pg=='></object>",
    "<embed src='vbscript:msgbox(5)'><form action='javascript:alert(6)'><input></form>",
    "<a href='JaVaScRiPt:alert(7)'>x</a><a href='&#106;avascript:alert(8)'>y</a>",
    "<a href=' javascript:alert(9)'>z</a><a href='java\tscript:alert(10)'>w</a>",
    "<svg onload=alert(11)><math><mi xlink:href='javascript:alert(12)'>m</mi></math></svg>",
    "<p style='background:url(javascript:alert(13))' onclick='alert(14)'>p</p>",
    "<base href='javascript:alert(15)//'>"
    "<meta http-equiv='refresh' content='0;url=javascript:alert(16)'>",
    "<![CDATA[<script>alert(17)</script>]]><!--<script>alert(18)</script>-->",
    "<link rel=stylesheet href='data:text/css,*{}'>"
    "<img src='data:image/svg+xml,<svg onload=alert(19)>'>",
    "&lt;script&gt;alert(20)&lt;/script&gt;",
]


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xss_rss() -> bytes:
    items = []
    for n, p in enumerate(PAYLOADS):
        items.append(
            "<item>"
            f"<guid isPermaLink='false'>{_xml_text(p)}-{n}</guid>"
            f"<title>Story {n} {_xml_text(p)}</title>"
            f"<link>javascript:alert({100 + n})</link>"
            f"<description>{_xml_text(p)} words {n}</description>"
            f"<content:encoded><![CDATA[{p.replace(']]>', '')} body {n}]]></content:encoded>"
            f"<author>x@example.org ({_xml_text(p)})</author>"
            f"<category>{_xml_text(p)}</category>"
            f"<enclosure url='javascript:alert({200 + n})' type='audio/mpeg' length='1'/>"
            "<pubDate>Mon, 02 Mar 2026 10:00:00 GMT</pubDate>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>{_xml_text(XSS)}</title><link>javascript:alert(0)</link>"
        f"<description>{_xml_text(XSS)}</description>" + "".join(items) + "</channel></rss>"
    ).encode()


def xss_atom() -> bytes:
    entries = []
    for n, p in enumerate(PAYLOADS):
        entries.append(
            "<entry>"
            f"<id>urn:x:{n}</id>"
            f"<title type='html'>Atom {n} {_xml_text(p)}</title>"
            f"<link rel='alternate' href='vbscript:msgbox({n})'/>"
            "<updated>2026-03-02T10:00:00Z</updated>"
            f"<author><name>{_xml_text(p)}</name><uri>javascript:alert(1)</uri></author>"
            f"<summary type='html'>{_xml_text(p)} atom summary {n}</summary>"
            f"<content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>"
            f"<script>alert({300 + n})</script><a href='javascript:alert(1)' onclick='x()'>c</a>"
            f"</div></content>"
            "</entry>"
        )
    return (
        "<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
        "<title>A</title><id>urn:a</id><updated>2026-03-02T10:00:00Z</updated>"
        + "".join(entries)
        + "</feed>"
    ).encode()


def xss_json() -> bytes:
    items = [
        {
            "id": f"{p}-{n}",
            "url": f"javascript:alert({400 + n})",
            "external_url": "data:text/html,<script>alert(1)</script>",
            "title": f"JSON {n} {p}",
            "content_html": f"{p} json body {n}",
            "summary": p,
            "image": "javascript:alert(1)",
            "authors": [{"name": p, "url": "javascript:alert(1)", "avatar": "javascript:alert(1)"}],
            "date_published": "2026-03-02T10:00:00Z",
        }
        for n, p in enumerate(PAYLOADS)
    ]
    return json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": XSS,
            "home_page_url": "javascript:x",
            "items": items,
        }
    ).encode()


FORBIDDEN_TAGS = frozenset(
    {
        "script",
        "style",
        "iframe",
        "object",
        "embed",
        "form",
        "base",
        "meta",
        "link",
        "svg",
        "math",
        "frame",
        "frameset",
        "applet",
    }
)
URL_ATTRS = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "data",
        "xlink:href",
        "poster",
        "background",
        "cite",
        "srcset",
        "longdesc",
        "usemap",
        "ping",
    }
)
BAD_SCHEME = re.compile(r"^\s*(javascript|vbscript|data)\s*:", re.IGNORECASE)


class _Inspector(html.parser.HTMLParser):
    """Collect every forbidden thing in an HTML fragment, as a browser would see it."""

    def __init__(self, page: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # A whole page has its own <meta charset> and <link rel=alternate>.
        own = self.page and tag in ("meta", "link", "style")
        if tag in FORBIDDEN_TAGS and not own:
            self.found.append(f"<{tag}>")
        if tag == "meta" and any(
            n == "http-equiv" and v and "refresh" in v.lower() for n, v in attrs
        ):
            self.found.append("<meta http-equiv=refresh>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            if name == "style" and value and re.search(r"url\s*\(|expression", value, re.I):
                self.found.append(f"{tag} style={value!r}")
            if name in URL_ATTRS and value:
                cleaned = re.sub(r"[\x00-\x20]", "", value)
                if BAD_SCHEME.match(cleaned):
                    self.found.append(f"{tag} {name}={value!r}")

    handle_startendtag = handle_starttag


def forbidden_in_html(fragment: str, *, page: bool = False) -> list[str]:
    inspector = _Inspector(page)
    inspector.feed(fragment)
    inspector.close()
    return inspector.found


def forbidden_in_xml(body: bytes) -> list[str]:
    """Every element, attribute and text of a feed document: URL attributes and link
    texts must not carry a bad scheme; every text is also read as HTML (readers render
    RSS titles and descriptions as HTML), and nothing forbidden may appear in it."""
    root = defusedxml.ElementTree.fromstring(body)
    found: list[str] = []
    for el in root.iter():
        tag = el.tag.split("}")[-1] if isinstance(el.tag, str) else ""
        namespace = str(el.tag)[1:].split("}")[0] if str(el.tag).startswith("{") else ""
        # RSS and Atom have their own <link>: that name counts only in XHTML content.
        markup = namespace == "http://www.w3.org/1999/xhtml"
        if tag in FORBIDDEN_TAGS and (markup or tag not in ("link", "meta", "base")):
            found.append(f"element {el.tag}")
        for name, value in el.attrib.items():
            local = name.split("}")[-1]
            if local.startswith("on"):
                found.append(f"{tag} @{name}")
            if local in URL_ATTRS | {"url", "uri"} and BAD_SCHEME.match(value):
                found.append(f"{tag} @{name}={value!r}")
        text = el.text or ""
        if tag in ("link", "uri", "url", "guid", "id", "comments", "docs") and BAD_SCHEME.match(
            text
        ):
            found.append(f"<{tag}> {text!r}")
        found += [f"in <{tag}>: {f}" for f in forbidden_in_html(text)]
    return found


def forbidden_in_json(body: bytes) -> list[str]:
    found: list[str] = []

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            if key in (
                "url",
                "external_url",
                "image",
                "banner_image",
                "avatar",
                "icon",
                "favicon",
                "home_page_url",
                "feed_url",
                "id",
            ) and BAD_SCHEME.match(value):
                found.append(f"{key}={value!r}")
            # A title is plain text in JSON Feed, which a reader escapes: one that
            # talks about <script> keeps the word (its markup is checked in Atom and
            # RSS, where readers do read titles as HTML).
            if key != "title":
                found.extend(f"in {key}: {f}" for f in forbidden_in_html(value))

    walk(json.loads(body), "")
    return found


@pytest.fixture
def xss_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The hostile markup feeds polled through the real pipeline, then served by
    waitress on a real socket: yields (base URL, config path)."""
    with FeedServer() as server:
        server.route("/rss", content(xss_rss()))
        server.route("/atom", content(xss_atom(), content_type="application/atom+xml"))
        server.route("/json", content(xss_json(), content_type="application/feed+json"))
        server.route(
            "/utf7",
            content(
                rss(item("u7", "+ADw-script+AD4-alert(1)+ADw-/script+AD4-")),
                content_type="text/xml; charset=utf-7",
            ),
        )
        feeds: list[dict[str, object]] = [
            {"name": n, "url": server.url(f"/{n}"), "title": f"{XSS} outlet {n}"}
            for n in ("rss", "atom", "json", "utf7")
        ]
        topics: list[dict[str, object]] = [
            {"slug": "x", "title": f"Topic {XSS}", "limit": 200},
            {"slug": "q", "title": "Queried", "query": "alert OR script OR story"},
        ]
        path = tmp_path / "aggregator.toml"
        path.write_text(toml_config(feeds, topics), encoding="utf-8")
        run = run_poll(path)
        assert run.returncode == 0, run.output
        got = statuses(tmp_path / "aggregator.db")
        for n in ("rss", "atom", "json"):
            assert got[n].entries >= len(PAYLOADS) - 1, (n, got[n])
    cfg = config_mod.load(path)
    app = web.create_app(cfg)
    http = make_server(app, "127.0.0.1", 0, threads=4)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.address[1]}", path
    finally:
        http.close()
        thread.join(timeout=5)


@pytest.mark.parametrize("slug", ["x", "q"])
def test_no_markup_attack_survives_into_any_format(xss_site: tuple[str, Path], slug: str) -> None:
    base, _ = xss_site
    with requests.Session() as s:
        atom = s.get(f"{base}/topics/{slug}.atom", timeout=10)
        rss_ = s.get(f"{base}/topics/{slug}.rss", timeout=10)
        jsn = s.get(f"{base}/topics/{slug}.json", timeout=10)
        index = s.get(f"{base}/", timeout=10)
        opml = s.get(f"{base}/topics.opml", timeout=10)
    for r in (atom, rss_, jsn, index, opml):
        assert r.status_code == 200, (r.url, r.status_code, r.text[:300])
    # The feeds were really populated (an empty feed would pass trivially).
    assert len(json.loads(jsn.content)["items"]) >= len(PAYLOADS)
    assert forbidden_in_xml(atom.content) == []
    assert forbidden_in_xml(rss_.content) == []
    assert forbidden_in_xml(opml.content) == []
    assert forbidden_in_json(jsn.content) == []
    assert forbidden_in_html(index.text, page=True) == []
    # Escaped markup in a title is its text; real markup is not.
    titles = {i["title"] for i in json.loads(jsn.content)["items"]}
    assert any(t.endswith(f" {len(PAYLOADS) - 1} <script>alert(20)</script>") for t in titles)
    # A body declared UTF-7 is never decoded as UTF-7 (the HTML standard forbids it
    # too): its "+ADw-script+AD4-" stays inert text, and no markup comes out of it.
    assert not [t for t in titles if ("alert(1)" in t and "+ADw-" not in t) or "onerror" in t]
    assert not [t for t in titles if "<script>alert(1)" in t]
    assert "outlet" in index.text or "Topic" in index.text
    csp = index.headers.get("Content-Security-Policy", "")
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp, csp
    # The page's own <style> is the only one, and the policy allows it by its hash.
    styles = re.findall(r"<style[^>]*>(.*?)</style>", index.text, re.DOTALL | re.IGNORECASE)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp


def test_export_is_as_clean_as_http(xss_site: tuple[str, Path]) -> None:
    _, path = xss_site
    for fmt, check in (
        ("atom", forbidden_in_xml),
        ("rss", forbidden_in_xml),
        ("json", forbidden_in_json),
    ):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "aggregator",
                "--config",
                str(path),
                "export",
                "x",
                "--format",
                fmt,
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        assert check(out) == [], fmt


def test_inspector_finds_what_it_looks_for() -> None:
    """The checks above must be able to fail: each payload, raw, is caught."""
    for p in PAYLOADS:
        if "CDATA" not in p and "&lt;" not in p:  # inert in HTML: a bogus comment, text
            assert forbidden_in_html(p), p
    assert forbidden_in_xml(b"<rss><link>javascript:alert(1)</link></rss>")
    assert forbidden_in_xml(b"<rss><description>&lt;script&gt;x&lt;/script&gt;</description></rss>")
    assert forbidden_in_json(b'{"items": [{"url": "data:text/html,x"}]}')


# -- the HTTP server against hostile clients --------------------------------------------------


@pytest.fixture(scope="module")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """A populated site on waitress: (base URL, port, config folder)."""
    folder = tmp_path_factory.mktemp("live")
    archive = folder / "feed.xml"
    archive.write_bytes(rss(GOOD_ITEMS))
    path = folder / "aggregator.toml"
    feeds: list[dict[str, object]] = [{"name": "good", "url": archive.as_uri()}]
    path.write_text(
        toml_config(feeds, [{"slug": "news", "title": "News"}]),
        encoding="utf-8",
    )
    run = run_poll(path)
    assert run.returncode == 0, run.output
    app = web.create_app(config_mod.load(path))
    http = make_server(app, "127.0.0.1", 0, threads=4)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    port = http.address[1]
    try:
        yield f"http://127.0.0.1:{port}", port, folder
    finally:
        http.close()
        thread.join(timeout=5)


def raw_request(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (no client normalizes the path) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", response)
    assert match, response[:200]
    return int(match.group(1))


LEAKS = (b"Traceback", b"root:x:", b"[database]", b"sqlite", b'File "', b"Werkzeug Debugger")

BAD_PATHS = [
    "/nope",
    "/topics/unknown.atom",
    "/topics/news.exe",
    "/topics/news",
    "/topics/../aggregator.toml",
    "/topics/..%2f..%2faggregator.toml",
    "/topics/%2e%2e%2f%2e%2e%2fetc%2fpasswd.atom",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/..%5c..%5caggregator.toml",
    "/topics/news.atom%00.txt",
    "/topics/%ff%fe.atom",
    "/topics/%c0%ae%c0%ae/etc/passwd",
    "//etc/passwd",
    "/static/../../aggregator.toml",
    "/aggregator.db",
    "/topics/" + "a" * 5000 + ".atom",
    "/?" + "q=" + "x" * 5000,
    "/topics/news.atom?format=../../etc/passwd",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_paths_are_4xx_without_leaks(live_site: tuple[str, int, Path], path: str) -> None:
    _, port, _ = live_site
    answer = raw_request(
        port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    code = status_of(answer)
    if "?" in path:
        assert code == 200  # a query string on a real page is ignored
    else:
        assert 400 <= code < 500, (path, answer[:300])
    for leak in LEAKS:
        assert leak not in answer, (path, leak)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/", "/topics/news.atom", "/healthz", "/topics.opml"])
def test_wrong_methods_are_405(live_site: tuple[str, int, Path], method: str, path: str) -> None:
    base, _, _ = live_site
    r = requests.request(method, base + path, data=b"x" * 100, timeout=10)
    assert r.status_code == 405, (method, path, r.status_code)
    assert "GET" in r.headers.get("Allow", "")
    assert b"Traceback" not in r.content


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "FOO"])
def test_odd_methods_never_500(live_site: tuple[str, int, Path], method: str) -> None:
    _, port, _ = live_site
    answer = raw_request(
        port,
        f"{method} /topics/news.atom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    assert 400 <= status_of(answer) < 500
    assert b"Traceback" not in answer


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("If-None-Match", "garbage without quotes"),
        ("If-None-Match", '"unterminated'),
        ("If-None-Match", "W/"),
        ("If-None-Match", "," * 5000),
        ("If-None-Match", '"a", "b", ' * 500),
        ("If-None-Match", "*"),
        ("If-Modified-Since", "not a date"),
        ("If-Modified-Since", "Mon, 32 Foo 99999 99:99:99 GMT"),
        ("If-Modified-Since", "Thu, 01 Jan 0001 00:00:00 GMT"),
        ("If-Modified-Since", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("If-Modified-Since", "-1"),
        ("If-Modified-Since", "99999999999999999999"),
        ("If-Modified-Since", "\x00\x01"),
        ("If-Unmodified-Since", "garbage"),
        ("If-Range", "garbage"),
        ("Range", "bytes=999999999-1"),
        ("Accept-Encoding", "gzip;q=garbage, *;q=-1"),
        ("Accept", "*/*;q=" + "9" * 1000),
        ("Host", "evil.example\r\nX-Injected: 1".split("\r\n")[0]),
        ("Content-Length", "-1"),
    ],
)
def test_malformed_headers_never_500(
    live_site: tuple[str, int, Path], name: str, value: str
) -> None:
    _, port, _ = live_site
    for path in ("/topics/news.atom", "/topics.opml", "/"):
        headers = f"Host: x\r\n{name}: {value}\r\n" if name != "Host" else f"Host: {value}\r\n"
        answer = raw_request(
            port, f"GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n".encode("latin-1")
        )
        code = status_of(answer)
        assert code < 500, (path, name, value, answer[:300])
        assert b"Traceback" not in answer


def test_very_long_url_and_headers(live_site: tuple[str, int, Path]) -> None:
    """Beyond waitress's limits (max_request_header_size 256 KiB): a 4xx or a closed
    connection, never a 500; and the server keeps serving afterwards."""
    base, port, _ = live_site
    cases = [
        b"GET /topics/" + b"a" * (300 * 1024) + b".atom HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /topics/news.atom HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (300 * 1024) + b"\r\n\r\n",
        b"GET /topics/news.atom HTTP/1.1\r\nHost: x\r\n" + b"X-Many: y\r\n" * 20_000 + b"\r\n",
        b"GET /" + b"%2e%2e/" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /topics/news.atom HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # a TLS hello
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    ]
    for request in cases:
        answer = raw_request(port, request, timeout=3)
        if answer:
            assert not answer.startswith(b"HTTP/1.1 5") and not answer.startswith(b"HTTP/1.0 5"), (
                request[:60],
                answer[:200],
            )
            assert b"Traceback" not in answer
    assert requests.get(f"{base}/topics/news.atom", timeout=10).status_code == 200


def test_server_logs_no_traceback_for_bad_input(
    live_site: tuple[str, int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, port, _ = live_site
    with caplog.at_level("DEBUG"):
        for path in BAD_PATHS[:8]:
            raw_request(
                port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


# -- bad config: classes not in tests/test_config.py ------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"\xff\xfe[database]\n", "UTF-8"),
        (
            b"[[feeds]]\nname = 'a'\nurl = 'http://x/'\n[[feeds]]\nname = 'a'\nurl = 'http://y/'\n",
            "a",
        ),
        (b"[polling]\ntimeout = '1e400s'\n", "timeout"),
        (b"[polling]\nmax_body = '99999999999999999999999GiB'\n", "max_body"),
        (b"[polling]\nconcurrency = 99999999999999999999999\n", "concurrency"),
        (b"[[feeds]]\nname = 'a'\nurl = 'http://x/'\ninterval = '-5m'\n", "interval"),
        (b"[[feeds]]\nname = 'a\\u0000b'\nurl = 'http://x/'\n", "name"),
        (b"[[feeds]]\nname = 'a'\nurl = 'javascript:alert(1)'\n", "url"),
        (b"[[feeds]]\nname = 'a'\nurl = 'http://x/\\r\\nHost: y'\n", "url"),
        (
            b"[[topics]]\nslug = 't'\ntitle = 'T'\nquery = '"
            + b"(" * 5000
            + b"a"
            + b")" * 5000
            + b"'\n",
            "query",
        ),
        (b"[server]\nbase_url = 'javascript:alert(1)'\n", "base_url"),
    ],
)
def test_bad_config_exits_2_with_a_message(tmp_path: Path, text: bytes, fragment: str) -> None:
    path = tmp_path / "aggregator.toml"
    path.write_bytes(text)
    for command in ("check", "poll"):
        done = subprocess.run(
            [sys.executable, "-m", "aggregator", "--config", str(path), command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout
        assert str(path) in done.stderr, done.stderr
        assert fragment.lower() in done.stderr.lower(), done.stderr
