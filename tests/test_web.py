"""The HTTP surface: routes, headers, conditional requests, bad input, a real socket."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from aggregator import config as config_mod
from aggregator.ingest import pipeline as poll
from aggregator.models import Entry, FeedUpdate
from aggregator.publish import cache as publish
from aggregator.publish import metrics, server, web
from aggregator.storage import store

Make = Callable[..., config_mod.Config]
ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_entry(feed: str, n: int, title: str, published: datetime) -> Entry:
    link = f"http://{feed}.example/{n}"
    return Entry(
        feed=feed,
        key=link,
        guid=None,
        link=link,
        canonical_link=link,
        title=title,
        summary_html=f"<p>{title}</p>",
        content_html="",
        text=title,
        author=None,
        published=published,
        content_hash=hashlib.sha256(title.encode()).hexdigest(),
    )


def add_story(cfg: config_mod.Config, entries: list[Entry], topic: str = "news") -> int:
    """Store one story made of these entries and put it in a topic, as a poll would."""
    db = store.Store(cfg.database.path)
    with db.write():
        sid = db.new_story(entries[0].published, NOW, "agg.example")
        for e in entries:
            db.insert_entry(e, sid, NOW)
        db.add_topic_story(topic, sid, ["pakistan"])
        db.bump_topics_of([sid])
    db.close()
    return sid


@pytest.fixture
def cfg(make_config: Make) -> config_mod.Config:
    c = make_config(
        [("dawn", "http://dawn.example/feed"), ("tass", "http://tass.example/feed")],
        [{"slug": "news", "title": "News", "query": "pakistan"}],
    )
    db = store.Store(c.database.path)
    poll.sync(c, db)
    db.close()
    add_story(
        c,
        [
            make_entry("dawn", 1, "Pakistan and Russia sign deal", NOW - timedelta(hours=2)),
            make_entry("tass", 1, "Pakistan, Russia sign agreement", NOW - timedelta(hours=1)),
        ],
    )
    add_story(c, [make_entry("dawn", 2, "Pakistan budget passed", NOW - timedelta(hours=1))])
    return c


@pytest.fixture
def app(cfg: config_mod.Config) -> Flask:
    return web.create_app(cfg)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("atom", "application/atom+xml"),
        ("rss", "application/rss+xml"),
        ("json", "application/feed+json"),
    ],
)
def test_topic_feed_formats(client: FlaskClient, fmt: str, content_type: str) -> None:
    resp = client.get(f"/topics/news.{fmt}")
    assert resp.status_code == 200
    assert resp.mimetype == content_type
    assert resp.headers["ETag"]
    assert resp.headers["Last-Modified"]
    assert "max-age" in resp.headers["Cache-Control"]
    if fmt == "json":
        items = json.loads(resp.data)["items"]
        titles = [i["title"] for i in items]
        related = items[-1]["_aggregator"]["related"]
        assert related == [{"url": "http://tass.example/1", "source": "tass"}]
    else:
        parsed = feedparser.parse(resp.data)
        titles = [e.title for e in parsed.entries]
    # newest first; the two-outlet story is one entry
    assert titles == ["Pakistan budget passed", "Pakistan and Russia sign deal"]


def test_conditional_requests(client: FlaskClient) -> None:
    first = client.get("/topics/news.atom")
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert client.get("/topics/news.atom", headers={"If-None-Match": etag}).status_code == 304
    again = client.get("/topics/news.atom", headers={"If-Modified-Since": last_modified})
    assert again.status_code == 304
    assert client.get("/topics/news.atom", headers={"If-None-Match": '"nope"'}).status_code == 200
    for bad in ("garbage", '"unterminated', "W/", "*, ,"):
        r = client.get("/topics/news.atom", headers={"If-None-Match": bad})
        assert r.status_code in (200, 304)
    for bad in ("yesterday", "Mon, 99 Foo 20000 99:99:99 GMT", "\x00"):
        r = client.get("/topics/news.atom", headers={"If-Modified-Since": bad})
        assert r.status_code == 200


def test_bytes_stable_until_the_topic_changes(cfg: config_mod.Config, client: FlaskClient) -> None:
    a = client.get("/topics/news.rss")
    b = client.get("/topics/news.rss")
    assert a.data == b.data and a.headers["ETag"] == b.headers["ETag"]
    add_story(cfg, [make_entry("tass", 9, "Pakistan joins summit", NOW)])
    # what the daemon does after each of its own polls: the change shows at once
    client.application.extensions["topic_cache"].invalidate()
    c = client.get("/topics/news.rss")
    assert c.headers["ETag"] != a.headers["ETag"]
    assert b"Pakistan joins summit" in c.data


def call(
    app: object, path: str, headers: dict[str, str]
) -> tuple[str, list[tuple[str, str]], bytes]:
    """One request straight through a WSGI callable: status, headers (less Date), body."""
    from werkzeug.test import EnvironBuilder

    env = EnvironBuilder(path=path, headers=headers).get_environ()
    got: list[tuple[str, list[tuple[str, str]]]] = []
    body = app(env, lambda status, hdrs, exc_info=None: got.append((status, hdrs)))  # type: ignore[operator]
    data = b"".join(body)
    getattr(body, "close", lambda: None)()
    status, hdrs = got[0]
    return status.split()[0], sorted((k, v) for k, v in hdrs if k != "Date"), data


def test_topic_feeds_answer_conditional_requests(app: Flask) -> None:
    """Every topic feed answers with its validators and one set of cache headers, and
    a 304 exactly when the request's conditions say the reader has the bytes."""
    older = "Mon, 01 Jan 2001 00:00:00 GMT"
    for fmt in publish.FORMATS:
        path = f"/topics/news.{fmt}"
        full = call(app, path, {})
        hdrs = dict(full[1])
        assert full[0] == "200"
        assert hdrs["Cache-Control"] == web.CACHE_CONTROL
        assert hdrs["X-Content-Type-Options"] == "nosniff"
        etag, last_modified = hdrs["ETag"], hdrs["Last-Modified"]
        cases = [
            ({}, "200"),
            ({"If-None-Match": etag}, "304"),
            ({"If-None-Match": f'"x", {etag}'}, "304"),
            ({"If-None-Match": f"W/{etag}"}, "304"),
            ({"If-None-Match": "*"}, "304"),
            ({"If-None-Match": '"nope"'}, "200"),
            ({"If-None-Match": "garbage"}, "200"),
            ({"If-Modified-Since": last_modified}, "304"),
            ({"If-Modified-Since": older}, "200"),
            ({"If-Modified-Since": "yesterday"}, "200"),
            ({"If-None-Match": '"nope"', "If-Modified-Since": last_modified}, "200"),
            ({"If-None-Match": etag, "If-Modified-Since": older}, "304"),
            ({"Range": "bytes=0-10"}, "200"),  # a feed is served whole
        ]
        for headers, status in cases:
            got = call(app, path, headers)
            assert got[0] == status, (fmt, headers, got[0])
            if status == "304":
                assert got[2] == b"" and dict(got[1])["ETag"] == etag
            else:
                assert got == full, (fmt, headers)
    for path in ("/topics/nope.atom", "/topics/news.xml", "/topics/news.atom/", "/topics/.atom"):
        assert call(app, path, {})[0] == "404", path


def test_topic_requests_are_counted_by_status(app: Flask) -> None:
    client = app.test_client()
    etag = client.get("/topics/news.atom").headers["ETag"]
    before = metrics.HTTP_REQUESTS.labels(web.TOPIC_ROUTE, "304")._value.get()
    assert client.get("/topics/news.atom", headers={"If-None-Match": etag}).status_code == 304
    assert metrics.HTTP_REQUESTS.labels(web.TOPIC_ROUTE, "304")._value.get() == before + 1


def test_a_commit_by_another_process_shows_up_within_the_recheck(
    cfg: config_mod.Config, client: FlaskClient
) -> None:
    """The cache asks whether the database changed at most every RECHECK seconds; a
    poll in another process (`aggregator poll` next to `aggregator serve`) shows by
    the next check."""
    a = client.get("/topics/news.atom")
    assert client.get("/topics/news.atom").data == a.data  # served from the cache
    script = (
        "import sys; from datetime import datetime, UTC; from pathlib import Path; "
        "from aggregator import config; from tests import test_web as t; "
        "cfg = config.load(Path(sys.argv[1])); "
        "t.add_story(cfg, [t.make_entry('tass', 7, 'Pakistan opens port', t.NOW)])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(cfg.path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    time.sleep(publish.TopicCache.RECHECK)
    b = client.get("/topics/news.atom")
    assert b"Pakistan opens port" in b.data
    assert b.headers["ETag"] != a.headers["ETag"]


def test_head_404_405(client: FlaskClient) -> None:
    head = client.head("/topics/news.atom")
    assert head.status_code == 200 and head.data == b""
    assert client.get("/topics/nope.atom").status_code == 404
    assert client.get("/topics/news.xml").status_code == 404
    assert client.get("/nothing-here").status_code == 404
    assert client.post("/topics/news.atom").status_code == 405
    assert client.delete("/").status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/topics/..%2f..%2f..%2fetc%2fpasswd.atom",
        "/topics/%2e%2e/%2e%2e/etc/passwd",
        "/../../etc/passwd",
        "/topics/news.atom%00.json",
        "/static/../../aggregator.toml",
        "/" + "a" * 10000,
    ],
)
def test_hostile_paths_never_leak(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code in (404, 400, 414)
    assert b"root:" not in resp.data and b"Traceback" not in resp.data


def test_index_page(client: FlaskClient) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    html = resp.data.decode()
    assert 'rel="alternate"' in html and "/topics/news.atom" in html
    assert "<script" not in html.lower()


def test_opml_healthz_metrics(client: FlaskClient, cfg: config_mod.Config) -> None:
    opml = client.get("/topics.opml")
    assert opml.status_code == 200 and b"/topics/news.atom" in opml.data
    health = client.get("/healthz")  # entries are stored, but no feed was ever fetched
    assert health.status_code == 503
    body = health.get_json()
    assert body["ok"] is False and body["reason"] == web.NEVER_FETCHED and body["feeds"] == 2
    db = store.Store(cfg.database.path)
    with db.write():
        db.record_fetch(FeedUpdate("dawn", at=datetime.now(UTC), status=200, success=True))
    db.close()
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.get_json()
    assert body["ok"] is True and body["reason"] is None and body["feeds"] == 2
    metrics = client.get("/metrics").data.decode()
    assert 'aggregator_topic_entries{topic="news"} 2.0' in metrics
    assert 'aggregator_feed_entries{feed="dawn"} 2.0' in metrics
    assert "aggregator_http_requests_total" in metrics


@pytest.fixture
def live(app: Flask) -> Iterator[str]:
    http = server.make_server(app, "127.0.0.1", 0, threads=4)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.address[1]}"
    finally:
        http.close()


def test_real_socket_conditional_get(live: str) -> None:
    with requests.Session() as s:
        first = s.get(f"{live}/topics/news.atom", timeout=5)
        assert first.status_code == 200
        assert feedparser.parse(first.content).entries
        second = s.get(
            f"{live}/topics/news.atom",
            headers={"If-None-Match": first.headers["ETag"]},
            timeout=5,
        )
        assert second.status_code == 304 and second.content == b""
