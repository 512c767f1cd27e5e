"""fetch.py against a real HTTP server on 127.0.0.1: every outcome a feed can produce.

The address rules are pure functions tested as tables; everything else goes over a real
socket to tests.feedserver. Hostile cases are bounded by generous limits, never timed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
import requests

from aggregator import __version__
from aggregator.errors import FetchError
from aggregator.ingest.http import fetch, guard, limiter
from aggregator.models import FeedState, Fetched
from tests.conftest import feed_files
from tests.feedserver import (
    FeedServer,
    close_mid_body,
    content,
    endless,
    feed_server,
    free_port,
    gzipped,
    lying_length,
    redirect,
    sequence,
    slow,
    status,
    trickle,
)

__all__ = ["feed_server"]  # the fixture, imported for pytest

CORPUS = Path(__file__).resolve().parent / "feeds" / "real"
RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
MiB = 1024 * 1024
#: generous bound for hostile cases: a broken deadline hangs far longer than this
BOUND = 20.0


@pytest.fixture
def session() -> Iterator[fetch.Session]:
    s = fetch.make_session(4)
    yield s
    s.close()


def get(session: fetch.Session, url: str, **kwargs: object) -> Fetched:
    options: dict[str, object] = {"timeout": 5.0, "max_body": MiB}
    options.update(kwargs)
    state = options.pop("state", None) or FeedState("feed", url)
    return fetch.get(session, state, **options)  # type: ignore[arg-type]


def fails(session: fetch.Session, url: str, **kwargs: object) -> FetchError:
    with pytest.raises(FetchError) as info:
        get(session, url, **kwargs)
    return info.value


# -- pure: address classes and policy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", "public"),
        ("93.184.216.34", "public"),
        ("2606:4700::1111", "public"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("172.32.0.1", "public"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("100.127.255.254", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "reserved"),
        ("0.1.2.3", "reserved"),
        ("::", "reserved"),
        ("224.0.0.1", "reserved"),
        ("239.255.255.250", "reserved"),
        ("ff02::1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),
        ("198.18.0.1", "reserved"),
        # IPv6 spellings of IPv4 addresses take the IPv4 class
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:8.8.8.8", "public"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("2002:a00:1::", "private"),
    ],
)
def test_address_class(address: str, expected: str) -> None:
    assert guard.address_class(address) == expected


def test_address_class_rejects_names() -> None:
    with pytest.raises(ValueError):
        guard.address_class("example.com")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("example.com", False),
        ("localhost.example.com", False),
        ("127.0.0.1.nip.io", False),
    ],
)
def test_is_explicit_host(host: str, expected: bool) -> None:
    assert guard.is_explicit_host(host) is expected


P, PR, LO, LL, RS = "public", "private", "loopback", "link-local", "reserved"


@pytest.mark.parametrize(
    ("previous", "explicit", "allow_private", "expected"),
    [
        # the configured URL: a hostname must be public, a literal IP / localhost may be anything
        (None, False, False, {P}),
        (None, True, False, {P, PR, LO, LL, RS}),
        (None, False, True, {P, PR, LO, LL, RS}),
        # redirects: public always; the same private/loopback class; never a new one
        (P, False, False, {P}),
        (PR, False, False, {P, PR}),
        (LO, False, False, {P, LO}),
        (LL, False, False, {P}),
        (RS, False, False, {P}),
        (P, False, True, {P, PR, LO, LL, RS}),
        (LO, False, True, {P, PR, LO, LL, RS}),
    ],
)
def test_permitted_classes(
    previous: str | None, explicit: bool, allow_private: bool, expected: set[str]
) -> None:
    got = guard.permitted_classes(previous, explicit=explicit, allow_private=allow_private)
    assert got == expected


@pytest.mark.parametrize(
    ("previous", "target", "refused"),
    [
        (P, LO, True),
        (P, PR, True),
        (P, LL, True),
        (LO, LL, True),
        (PR, LO, True),
        (LO, PR, True),
        (LO, RS, True),
        (LL, LL, True),
        (LO, LO, False),
        (PR, PR, False),
        (LO, P, False),
        (P, P, False),
    ],
)
def test_redirect_policy_by_class(previous: str, target: str, refused: bool) -> None:
    permitted = guard.permitted_classes(previous, explicit=False, allow_private=False)
    assert (target not in permitted) is refused


def test_request_headers() -> None:
    assert fetch.request_headers(FeedState("f", "http://x/")) == {}
    state = FeedState("f", "http://x/", etag='"abc"', last_modified="Tue, 01 Oct 2024 10:00:00 GMT")
    assert fetch.request_headers(state) == {
        "If-None-Match": '"abc"',
        "If-Modified-Since": "Tue, 01 Oct 2024 10:00:00 GMT",
    }
    assert fetch.request_headers(FeedState("f", "http://x/", etag='W/"1"')) == {
        "If-None-Match": 'W/"1"'
    }
    # a stored validator from a hostile server cannot inject a header
    assert fetch.request_headers(FeedState("f", "http://x/", etag='"a"\r\nX-Evil: 1')) == {}


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://Example.com/feed", "example.com:80"),
        ("https://example.com/feed", "example.com:443"),
        ("https://example.com:8443/a", "example.com:8443"),
        ("http://127.0.0.1:5000/x", "127.0.0.1:5000"),
        ("http://[::1]:81/x", "::1:81"),
    ],
)
def test_host_key(url: str, key: str) -> None:
    assert limiter.host_key(url) == key


def test_user_agent_names_the_software_and_the_operator_contact() -> None:
    assert fetch.USER_AGENT == f"aggregator/{__version__}"
    assert fetch.user_agent(None) == fetch.USER_AGENT
    assert fetch.user_agent("ops@example.org") == f"aggregator/{__version__} (+ops@example.org)"
    # no address the project does not own
    assert "github.com" not in fetch.user_agent("https://example.org/about")


# -- 200 and 304 -------------------------------------------------------------------------------


def test_200_returns_body_validators_and_lower_case_headers(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.add("/feed.xml", RSS, headers={"X-Custom": "yes"})
    got = get(session, feed_server.url("/feed.xml"))
    assert got.status == 200
    assert got.body == RSS
    assert got.url == got.final_url == feed_server.url("/feed.xml")
    assert got.permanent_url is None
    assert got.etag == '"' + hashlib.sha256(RSS).hexdigest()[:32] + '"'
    assert got.last_modified is not None and got.last_modified.endswith("GMT")
    assert got.headers["content-type"] == "application/xml"
    assert got.headers["x-custom"] == "yes"
    assert all(name == name.lower() for name in got.headers)
    assert got.elapsed > 0


def test_second_poll_sends_validators_and_gets_304(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.add("/feed.xml", RSS)
    first = get(session, feed_server.url("/feed.xml"))
    state = FeedState(
        "feed", feed_server.url("/feed.xml"), etag=first.etag, last_modified=first.last_modified
    )
    second = get(session, "", state=state)
    assert second.status == 304
    assert second.body == b""
    assert (second.etag, second.last_modified) == (first.etag, first.last_modified)
    sent = feed_server.requests_for("/feed.xml")[-1].headers
    assert sent["if-none-match"] == first.etag
    assert sent["if-modified-since"] == first.last_modified


def test_non_ascii_path_is_percent_encoded_and_fragment_dropped(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    # Russian and Urdu outlets put their own script in feed paths.
    feed_server.add("/новости/rss лента.xml", RSS)
    result = get(session, feed_server.url("/новости/rss лента.xml#top"))
    assert (result.status, result.body) == (200, RSS)
    sent = feed_server.requests[-1].path
    assert (
        sent
        == "/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/rss%20%D0%BB%D0%B5%D0%BD%D1%82%D0%B0.xml"
    )


def test_first_poll_sends_no_validators(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.add("/feed.xml", RSS)
    get(session, feed_server.url("/feed.xml"))
    sent = feed_server.requests_for("/feed.xml")[0].headers
    assert "if-none-match" not in sent and "if-modified-since" not in sent


def test_304_keeps_stored_validators_when_the_response_has_none(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.route("/bare304", status(304))
    feed_server.route("/new304", status(304, {"ETag": '"v2"'}))
    etag, last_modified = '"v1"', "Tue, 01 Oct 2024 10:00:00 GMT"
    kept = get(session, "", state=FeedState("f", feed_server.url("/bare304"), etag, last_modified))
    assert (kept.status, kept.etag, kept.last_modified) == (304, etag, last_modified)
    new = get(session, "", state=FeedState("f", feed_server.url("/new304"), etag, last_modified))
    assert (new.etag, new.last_modified) == ('"v2"', last_modified)


def test_changed_feed_gets_200_again(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.add("/feed.xml", RSS, last_modified=1_700_000_000)
    first = get(session, feed_server.url("/feed.xml"))
    changed = RSS.replace(b"<title>t</title>", b"<title>u</title>")
    feed_server.add("/feed.xml", changed, last_modified=1_700_000_100)
    state = FeedState("f", first.url, etag=first.etag, last_modified=first.last_modified)
    again = get(session, "", state=state)
    assert (again.status, again.body) == (200, changed)
    assert again.etag != first.etag


def test_user_agent_and_accept_encoding_sent(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.add("/feed.xml", RSS)
    get(session, feed_server.url("/feed.xml"))
    sent = feed_server.requests[0].headers
    assert sent["user-agent"] == fetch.USER_AGENT
    assert "gzip" in sent["accept-encoding"]
    assert "application/rss+xml" in sent["accept"]


def test_keep_alive_reuses_one_connection(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.add("/a.xml", RSS)
    feed_server.add("/b.xml", RSS + b" ")
    first = get(session, feed_server.url("/a.xml"))
    get(session, feed_server.url("/b.xml"))
    get(session, "", state=FeedState("a", first.url, etag=first.etag))  # a 304 reuses it too
    assert len(feed_server.requests) == 3
    assert feed_server.connections == 1


# -- HTTP errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (404, "HTTP 404 Not Found"),
        (500, "HTTP 500 Internal Server Error"),
        (410, "HTTP 410 Gone"),
        (204, "HTTP 204 No Content"),
    ],
)
def test_http_errors_carry_status(
    feed_server: FeedServer, session: fetch.Session, code: int, message: str
) -> None:
    feed_server.route("/x", status(code, {"Retry-After": "60"}))
    error = fails(session, feed_server.url("/x"))
    assert error.status == code
    assert error.message == message
    assert error.url == feed_server.url("/x")
    assert error.retry_after is None  # only 429 and 503 pass it on


def test_403_says_the_outlet_refused_and_what_to_do(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.route("/x", status(403))
    error = fails(session, feed_server.url("/x"))
    assert error.status == 403
    assert error.message.startswith("refused by the outlet (403); ")
    assert "browser" in error.message and "remove the feed" in error.message
    # the request itself stayed honest: our own User-Agent, not a browser's
    [request] = feed_server.requests_for("/x")
    assert request.headers["user-agent"] == fetch.USER_AGENT
    assert "Mozilla" not in request.headers["user-agent"]


def test_403_after_a_redirect_names_where(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/old", status(301, {"Location": "/new"}))
    feed_server.route("/new", status(403))
    error = fails(session, feed_server.url("/old"))
    assert error.status == 403
    assert error.message.startswith(f"refused by the outlet (403) at {feed_server.url('/new')};")


def test_unknown_path_is_404(feed_server: FeedServer, session: fetch.Session) -> None:
    assert fails(session, feed_server.url("/missing.xml")).status == 404


@pytest.mark.parametrize(
    ("code", "retry_after"), [(429, "120"), (503, "Wed, 21 Oct 2026 07:28:00 GMT")]
)
def test_429_and_503_capture_retry_after(
    feed_server: FeedServer, session: fetch.Session, code: int, retry_after: str
) -> None:
    feed_server.route("/busy", status(code, {"Retry-After": retry_after}))
    error = fails(session, feed_server.url("/busy"))
    assert (error.status, error.retry_after) == (code, retry_after)


def test_429_without_retry_after(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/busy", status(429))
    error = fails(session, feed_server.url("/busy"))
    assert (error.status, error.retry_after) == (429, None)


# -- network failures and time limits ----------------------------------------------------------


def test_connection_refused(session: fetch.Session) -> None:
    error = fails(session, f"http://127.0.0.1:{free_port()}/feed.xml")
    assert error.status is None
    assert error.message == "connection refused"


def test_read_timeout(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/slow", slow(10))
    started = time.monotonic()
    error = fails(session, feed_server.url("/slow"), timeout=0.5)
    assert error.message == "timed out after 0.5s"
    assert error.status is None
    assert time.monotonic() - started < BOUND


def test_slow_but_in_time_is_fine(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/slow", slow(0.3, RSS))
    assert get(session, feed_server.url("/slow"), timeout=5).body == RSS


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_trickle_hits_the_whole_request_deadline(
    feed_server: FeedServer, session: fetch.Session, in_headers: bool
) -> None:
    # One byte every 0.2 s forever: no single read ever times out.
    feed_server.route("/trickle", trickle(interval=0.2, in_headers=in_headers))
    started = time.monotonic()
    error = fails(session, feed_server.url("/trickle"), timeout=0.5)
    assert error.message == "timed out after 1.5s (whole-request deadline)"
    assert time.monotonic() - started < BOUND


def test_trickled_body_with_length_hits_an_explicit_deadline(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.route("/trickle", trickle(b"x" * 1000, interval=0.1))
    error = fails(session, feed_server.url("/trickle"), timeout=1.0, deadline=2.0)
    assert error.message == "timed out after 2s (whole-request deadline)"


def test_deadline_never_shorter_than_timeout(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.route("/slow", slow(0.5, RSS))
    assert get(session, feed_server.url("/slow"), timeout=5, deadline=0.01).body == RSS


def test_connection_closed_mid_body(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/cut", close_mid_body(RSS * 100, after=500))
    feed_server.route("/lie", lying_length(RSS, claimed=len(RSS) + 1000))
    assert fails(session, feed_server.url("/cut")).message == "connection closed mid-body"
    assert fails(session, feed_server.url("/lie")).message == "connection closed mid-body"


def test_session_survives_a_failed_fetch(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/cut", close_mid_body(RSS * 100, after=500))
    feed_server.add("/ok.xml", RSS)
    fails(session, feed_server.url("/cut"))
    assert get(session, feed_server.url("/ok.xml")).body == RSS


# -- body size and encoding --------------------------------------------------------------------


def test_endless_body_hits_the_cap(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/endless", endless())
    started = time.monotonic()
    error = fails(session, feed_server.url("/endless"), max_body=MiB)
    assert error.message == "body exceeds 1MiB cap"
    assert time.monotonic() - started < BOUND


def test_content_length_over_cap_refused_before_reading(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.route("/big", content(b"x" * 5000))
    error = fails(session, feed_server.url("/big"), max_body=4096)
    assert error.message == "body exceeds 4KiB cap (Content-Length 5000)"


def test_body_exactly_at_cap_is_fine(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/exact", content(b"x" * 4096))
    assert len(get(session, feed_server.url("/exact"), max_body=4096).body) == 4096


def test_gzip_is_decoded(feed_server: FeedServer, session: fetch.Session) -> None:
    body = RSS * 200
    feed_server.add("/feed.xml", body, gzip=True)
    got = get(session, feed_server.url("/feed.xml"))
    assert got.headers["content-encoding"] == "gzip"
    assert int(got.headers["content-length"]) < len(body)
    assert got.body == body


def test_gzip_bomb_refused_without_inflating_it(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    bomb = 64 * MiB
    feed_server.route("/bomb", gzipped(b"\0" * bomb))
    tracemalloc.start()
    try:
        error = fails(session, feed_server.url("/bomb"), max_body=MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.message == "body exceeds 1MiB cap once decompressed"
    # The compressed bomb is ~64 KiB; holding it inflated would take 64 MiB.
    assert peak < 8 * MiB


def test_unsupported_content_encoding_refused(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.route("/br", content(b"\x0b\x02\x80hello\x03", **{"Content-Encoding": "br"}))
    assert fails(session, feed_server.url("/br")).message == "unsupported Content-Encoding 'br'"


def test_corrupt_gzip_is_an_error(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/bad", content(b"not gzip at all", **{"Content-Encoding": "gzip"}))
    assert fails(session, feed_server.url("/bad")).message.startswith("bad gzip body")


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 308])
def test_permanent_redirect_sets_permanent_url(
    feed_server: FeedServer, session: fetch.Session, code: int
) -> None:
    feed_server.add("/new.xml", RSS)
    feed_server.route("/old.xml", redirect(code, "/new.xml"))
    got = get(session, feed_server.url("/old.xml"))
    assert got.status == 200 and got.body == RSS
    assert got.url == feed_server.url("/old.xml")
    assert got.final_url == got.permanent_url == feed_server.url("/new.xml")


@pytest.mark.parametrize("code", [302, 303, 307])
def test_temporary_redirect_keeps_the_url(
    feed_server: FeedServer, session: fetch.Session, code: int
) -> None:
    feed_server.add("/new.xml", RSS)
    feed_server.route("/old.xml", redirect(code, feed_server.url("/new.xml")))
    got = get(session, feed_server.url("/old.xml"))
    assert got.final_url == feed_server.url("/new.xml")
    assert got.permanent_url is None


def test_permanent_then_temporary_is_not_permanent(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.add("/c.xml", RSS)
    feed_server.route("/a.xml", redirect(301, "/b.xml"))
    feed_server.route("/b.xml", redirect(302, "/c.xml"))
    got = get(session, feed_server.url("/a.xml"))
    assert (got.final_url, got.permanent_url) == (feed_server.url("/c.xml"), None)


def test_permanent_chain_moves_to_the_end(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.add("/c.xml", RSS)
    feed_server.route("/a.xml", redirect(301, "/b.xml"))
    feed_server.route("/b.xml", redirect(308, "/c.xml"))
    assert get(session, feed_server.url("/a.xml")).permanent_url == feed_server.url("/c.xml")


def test_redirect_then_304_keeps_permanent_url(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.add("/new.xml", RSS)
    feed_server.route("/old.xml", redirect(301, "/new.xml"))
    first = get(session, feed_server.url("/old.xml"))
    again = get(session, "", state=FeedState("f", feed_server.url("/old.xml"), etag=first.etag))
    assert (again.status, again.permanent_url) == (304, feed_server.url("/new.xml"))


def test_redirect_loop_refused(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/a", redirect(302, "/b"))
    feed_server.route("/b", redirect(302, "/a"))
    error = fails(session, feed_server.url("/a"))
    assert error.message == f"redirect loop at {feed_server.url('/a')}"
    assert len(feed_server.requests) == 2


def test_self_redirect_refused(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/a", redirect(301, "/a"))
    assert fails(session, feed_server.url("/a")).message.startswith("redirect loop")


def _chain(server: FeedServer, hops: int) -> str:
    for i in range(hops):
        server.route(f"/hop{i}", redirect(302, f"/hop{i + 1}"))
    server.add(f"/hop{hops}", RSS)
    return server.url("/hop0")


def test_five_redirects_followed(feed_server: FeedServer, session: fetch.Session) -> None:
    assert get(session, _chain(feed_server, 5)).final_url == feed_server.url("/hop5")


def test_six_redirects_refused(feed_server: FeedServer, session: fetch.Session) -> None:
    error = fails(session, _chain(feed_server, 6))
    assert error.message == "too many redirects (more than 5)"
    assert len(feed_server.requests) == 6  # /hop6 never requested


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "FILE:///etc/passwd", "file://localhost/etc/passwd"],
)
def test_redirect_to_file_refused(
    feed_server: FeedServer, session: fetch.Session, location: str
) -> None:
    feed_server.route("/feed.xml", redirect(301, location))
    error = fails(session, feed_server.url("/feed.xml"))
    assert error.message == "redirect to file: refused"


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/feed.xml", "gopher://127.0.0.1/"])
def test_redirect_to_other_schemes_refused(
    feed_server: FeedServer, session: fetch.Session, location: str
) -> None:
    feed_server.route("/feed.xml", redirect(302, location))
    scheme = location.split(":")[0]
    assert fails(session, feed_server.url("/feed.xml")).message == f"redirect to {scheme}: refused"


def test_redirect_without_location(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/feed.xml", status(302))
    assert fails(session, feed_server.url("/feed.xml")).message == (
        "HTTP 302 redirect without Location"
    )


def test_error_after_redirect_names_the_hop(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.route("/feed.xml", redirect(302, "/gone.xml"))
    error = fails(session, feed_server.url("/feed.xml"))
    assert (error.status, error.message) == (
        404,
        f"HTTP 404 Not Found at {feed_server.url('/gone.xml')}",
    )


# -- address checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://10.0.0.1/feed.xml", "private"),
        ("http://0.0.0.0/feed.xml", "reserved"),
    ],
)
def test_redirect_from_loopback_to_another_class_refused(
    feed_server: FeedServer, session: fetch.Session, location: str, kind: str
) -> None:
    # Refused on the address alone: nothing is ever sent there (the tests only use loopback).
    feed_server.route("/feed.xml", redirect(302, location))
    error = fails(session, feed_server.url("/feed.xml"), timeout=1.0)
    assert error.message.endswith(f"a {kind} address: refused")
    assert error.status is None
    assert len(feed_server.requests) == 1


def test_redirect_within_loopback_by_name_allowed(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.add("/feed.xml", RSS)
    feed_server.route("/start", redirect(302, f"http://localhost:{feed_server.port}/feed.xml"))
    got = get(session, feed_server.url("/start"))
    assert got.final_url == f"http://localhost:{feed_server.port}/feed.xml"


def _loopback_name() -> str:
    """A host name other than "localhost" that resolves to 127.0.0.1 only, or skip."""
    name = socket.gethostname()
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        addresses = set()
    if addresses != {"127.0.0.1"} or guard.is_explicit_host(name):
        pytest.skip(f"host name {name!r} does not resolve to 127.0.0.1 alone here")
    return name


def test_configured_hostname_resolving_to_loopback_needs_allow_private(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    name = _loopback_name()
    feed_server.add("/feed.xml", RSS)
    url = f"http://{name}:{feed_server.port}/feed.xml"
    error = fails(session, url)
    assert error.message == (
        f"{name} resolves to 127.0.0.1 (loopback address); set allow_private to fetch it"
    )
    assert feed_server.requests == []
    assert get(session, url, allow_private=True).body == RSS


def test_allow_private_lets_a_redirect_change_class(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    # 0.0.0.0 is "reserved", yet connecting to it reaches this host (the "0.0.0.0 day"
    # attack on local services): refused by default, allowed only for allow_private feeds.
    feed_server.add("/feed.xml", RSS)
    feed_server.route("/start", redirect(302, f"http://0.0.0.0:{feed_server.port}/feed.xml"))
    error = fails(session, feed_server.url("/start"))
    assert error.message == "redirect to 0.0.0.0, a reserved address: refused"
    assert len(feed_server.requests) == 1
    try:
        socket.create_connection(("0.0.0.0", feed_server.port), timeout=1).close()
    except OSError:
        pytest.skip("this system does not route 0.0.0.0 to loopback")
    got = get(session, feed_server.url("/start"), allow_private=True)
    assert (got.body, got.final_url) == (RSS, f"http://0.0.0.0:{feed_server.port}/feed.xml")


# -- URLs and file: feeds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/feed.xml", "unsupported URL scheme 'ftp'"),
        ("javascript:alert(1)", "unsupported URL scheme 'javascript'"),
        ("127.0.0.1/feed.xml", "unsupported URL scheme '(none)'"),
        ("http:///feed.xml", "no host in URL http:///feed.xml"),
    ],
)
def test_bad_urls(session: fetch.Session, url: str, message: str) -> None:
    assert fails(session, url).message == message


def test_file_url_read_then_not_modified(tmp_path: Path, session: fetch.Session) -> None:
    path = tmp_path / "archive feed.xml"
    path.write_bytes(RSS)
    url = path.as_uri()
    first = get(session, url)
    assert (first.status, first.body, first.final_url) == (200, RSS, url)
    assert first.etag is not None and first.last_modified is not None
    second = get(session, "", state=FeedState("f", url, etag=first.etag))
    assert (second.status, second.body, second.etag) == (304, b"", first.etag)
    # a changed file is read again
    path.write_bytes(RSS + b"\n")
    os.utime(path, (time.time() + 5, time.time() + 5))
    third = get(session, "", state=FeedState("f", url, etag=first.etag))
    assert (third.status, third.body) == (200, RSS + b"\n")
    assert third.last_modified == formatdate(path.stat().st_mtime, usegmt=True)


def test_file_url_over_cap_missing_and_not_a_file(tmp_path: Path, session: fetch.Session) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * 5000)
    assert fails(session, big.as_uri(), max_body=4096).message == (
        "body exceeds 4KiB cap (5000 bytes)"
    )
    missing = tmp_path / "missing.xml"
    assert fails(session, missing.as_uri()).message == f"no such file: {missing}"
    assert fails(session, tmp_path.as_uri()).message == f"not a regular file: {tmp_path}"
    assert fails(session, "file://example.com/etc/passwd").message.startswith("file: URL must")


# -- real corpus -------------------------------------------------------------------------------


def test_real_corpus_served_and_revalidated(
    feed_server: FeedServer, session: fetch.Session
) -> None:
    feed_server.serve_dir("/real", CORPUS, gzip=True)
    files = [CORPUS / name for name in feed_files(CORPUS)]
    assert files
    for path in files:
        url = feed_server.url("/real/" + path.name)
        got = get(session, url, max_body=10 * MiB)
        assert got.body == path.read_bytes(), path.name
        again = get(session, "", state=FeedState("f", url, etag=got.etag), max_body=10 * MiB)
        assert again.status == 304, path.name
    assert feed_server.connections == 1


# -- per-host limit ----------------------------------------------------------------------------


def test_host_limiter_caps_concurrency_per_host() -> None:
    hosts = limiter.HostLimiter(2)
    lock = threading.Lock()
    inside: dict[str, int] = {}
    peak: dict[str, int] = {}

    def work(url: str) -> None:
        key = limiter.host_key(url)
        with hosts.slot(url):
            with lock:
                inside[key] = inside.get(key, 0) + 1
                peak[key] = max(peak.get(key, 0), inside[key])
            time.sleep(0.02)
            with lock:
                inside[key] -= 1

    urls = [f"http://a.example/{i}" for i in range(8)] + [f"http://b.example/{i}" for i in range(8)]
    threads = [threading.Thread(target=work, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    assert not any(t.is_alive() for t in threads)
    assert peak["a.example:80"] <= 2 and peak["b.example:80"] <= 2
    assert hosts.in_flight("http://a.example/") == 0


def test_host_limiter_blocks_the_third_until_one_leaves() -> None:
    hosts = limiter.HostLimiter(2)
    entered = threading.Event()

    def third() -> None:
        with hosts.slot("http://a.example/3"):
            entered.set()

    with hosts.slot("http://a.example/1"), hosts.slot("http://a.example/2"):
        with hosts.slot("http://other.example/"), hosts.slot("http://a.example:8080/"):
            pass  # other hosts and ports are not held up
        waiter = threading.Thread(target=third)
        waiter.start()
        assert not entered.wait(0.2)
        assert hosts.in_flight("http://a.example/") == 2
    assert entered.wait(BOUND)
    waiter.join(BOUND)


def test_host_limiter_rejects_zero() -> None:
    with pytest.raises(ValueError):
        limiter.HostLimiter(0)


def test_host_limiter_against_the_server(feed_server: FeedServer) -> None:
    feed_server.route("/slow", slow(0.1, RSS))
    hosts = limiter.HostLimiter(2)
    session = fetch.make_session(8)
    errors: list[BaseException] = []

    def poll() -> None:
        url = feed_server.url("/slow")
        try:
            with hosts.slot(url):
                get(session, url)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=poll) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    session.close()
    assert errors == []
    assert len(feed_server.requests) == 6
    assert feed_server.in_flight_max == {f"127.0.0.1:{feed_server.port}": 2}


# -- the test server itself --------------------------------------------------------------------


def test_feed_server_if_modified_since_and_traversal(
    feed_server: FeedServer, tmp_path: Path, session: fetch.Session
) -> None:
    (tmp_path / "a.xml").write_bytes(RSS)
    feed_server.serve_dir("/d", tmp_path)
    first = get(session, feed_server.url("/d/a.xml"))
    state = FeedState("f", first.url, last_modified=first.last_modified)
    assert get(session, "", state=state).status == 304
    assert fails(session, feed_server.url("/d/../test_fetch.py")).status == 404
    assert fails(session, feed_server.url("/d/%2e%2e/x")).status == 404


def test_feed_server_sequence(feed_server: FeedServer, session: fetch.Session) -> None:
    feed_server.route("/flaky", sequence(status(500), content(RSS)))
    assert fails(session, feed_server.url("/flaky")).status == 500
    assert get(session, feed_server.url("/flaky")).body == RSS
    assert get(session, feed_server.url("/flaky")).body == RSS


def test_gzip_only_when_accepted(feed_server: FeedServer) -> None:
    feed_server.add("/feed.xml", RSS * 50, gzip=True)
    with requests.Session() as plain:
        plain.headers["Accept-Encoding"] = "identity"
        raw = plain.get(feed_server.url("/feed.xml"))
        assert "content-encoding" not in raw.headers
        assert raw.content == RSS * 50
        plain.headers["Accept-Encoding"] = "gzip"
        packed = plain.get(feed_server.url("/feed.xml"), stream=True)
        assert gzip.decompress(packed.raw.read()) == RSS * 50
        packed.close()


# -- HTTPS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key), made with the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[FeedServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with FeedServer(tls=context) as server:
        yield server


def test_https_untrusted_certificate_refused(
    tls_server: FeedServer, session: fetch.Session
) -> None:
    tls_server.add("/feed.xml", RSS)
    error = fails(session, tls_server.url("/feed.xml"))
    assert error.message.startswith("TLS error: ")
    assert "certificate verify failed" in error.message


def test_https_fetch_revalidate_and_deadline(
    tls_server: FeedServer, certificate: tuple[Path, Path]
) -> None:
    session = fetch.make_session(4, ca_certs=str(certificate[0]))
    tls_server.add("/feed.xml", RSS, gzip=True)
    tls_server.route("/trickle", trickle(interval=0.2))
    first = get(session, tls_server.url("/feed.xml"))
    assert (first.status, first.body) == (200, RSS)
    again = get(session, "", state=FeedState("f", first.url, etag=first.etag))
    assert again.status == 304
    assert tls_server.connections == 1
    started = time.monotonic()
    error = fails(session, tls_server.url("/trickle"), timeout=0.5)
    assert error.message == "timed out after 1.5s (whole-request deadline)"
    assert time.monotonic() - started < BOUND
    session.close()
