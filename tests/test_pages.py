"""The pages people read: `/topics/<slug>.html`, `/` with feed health, and `/feeds`.

One module fixture builds the chain: a loopback FeedServer with three outlets (English,
Russian and Urdu, one story reported by two of them, one hostile item) and four feeds in
trouble (a 500, a refused connection, a 410, one never polled), the real poll into a real
SQLite file, and the web app on a real socket. Pages are read over that socket with
requests and in headless Chromium (screenshots land in test-artifacts/).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from xml.sax.saxutils import escape

import pytest
import requests

from aggregator import config as config_mod
from aggregator.ingest import pipeline as poll
from aggregator.models import FeedItem, PageStory, StoryPage
from aggregator.publish import pages, server, status, web
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import FeedServer
from tests.feedserver import status as answer
from tests.test_clients import ARTIFACTS, need, node_script, report, tool_version

TOPIC_ALL = "region"
TOPIC_QUERY = "pakistan-russia"
QUERY = "(pakistan OR пакистан OR پاکستان) AND (russia OR россия OR روس)"
SHARED_LINK = "https://news.example/2026/energy-deal"
DAWN_STORIES = 30  # more than a page
HOSTILE_TITLE = '<script>alert("title")</script> Pakistan and Russia hold talks'
HOSTILE_SUMMARY = (
    '<script>alert("summary")</script><img src="x" onerror="alert(2)">'
    '<a href="javascript:alert(3)">Pakistan</a> and Russia <b>talk</b> trade'
    "<style>body{display:none}</style>"
)
RU_TITLE = "Пакистан и Россия подписали энергетическое соглашение"
RU_SUMMARY = "Делегация Пакистана прибыла в Москву; Россия и Пакистан обсудили торговлю."
UR_TITLE = "پاکستان اور روس کے درمیان تجارتی معاہدہ"
UR_SUMMARY = "پاکستان اور روس نے تجارت پر بات چیت کی"


def rss(title: str, items: list[tuple[str, str, str, datetime]], language: str = "") -> bytes:
    """An RSS 2.0 document; each item is (title, link, description HTML, published)."""
    lang = f"<language>{language}</language>" if language else ""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<rss version="2.0"><channel><title>{escape(title)}</title>',
        f"<link>https://{title.lower()}.example/</link><description>news</description>{lang}",
    ]
    for t, link, desc, when in items:
        parts.append(
            f"<item><title>{escape(t)}</title><link>{escape(link)}</link>"
            f"<guid>{escape(link)}</guid><pubDate>{format_datetime(when)}</pubDate>"
            f"<description>{escape(desc)}</description></item>"
        )
    parts.append("</channel></rss>")
    return "\n".join(parts).encode("utf-8")


def free_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Site:
    base: str
    cfg: config_mod.Config
    config_path: Path
    feeds: FeedServer
    #: the titles each outlet published, by feed name
    titles: dict[str, list[str]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path: str, **headers: str) -> requests.Response:
        return requests.get(self.url(path), headers=headers, timeout=10)


def serve(cfg: config_mod.Config, sock: socket.socket) -> server.Server:
    http = server.make_server(web.create_app(cfg), sock=sock, threads=4)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http


def bound_socket() -> tuple[socket.socket, str]:
    # The app's socket exists before its config, so base_url is exactly its address.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def poll_feeds(cfg: config_mod.Config, names: set[str] | None = None) -> list[Any]:
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    db.close()
    poller = poll.Poller(cfg)
    try:
        feeds = [f for f in cfg.feeds if names is None or f.name in names]
        return list(poll.poll_many(poller, feeds))
    finally:
        poller.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("pages")
    now = datetime.now(UTC).replace(microsecond=0)
    feeds = FeedServer().start()
    sock, base = bound_socket()
    http: server.Server | None = None
    try:
        # Half past the hour: a relative time ("3 hours ago") cannot tick over between
        # two requests of one test.
        dawn = [
            (
                f"Pakistan and Russia: talks, day {n}",
                f"https://dawn.example/{n}",
                f"<p>Day {n}: Pakistani and Russian officials met in Islamabad.</p>",
                now - timedelta(hours=7 * n + 2.5),
            )
            for n in range(1, DAWN_STORIES + 1)
        ]
        dawn.append(
            ("Pakistan and Russia sign energy deal", SHARED_LINK, "", now - timedelta(hours=5.5))
        )
        dawn.append(
            (
                HOSTILE_TITLE,
                "https://dawn.example/hostile",
                HOSTILE_SUMMARY,
                now - timedelta(hours=1.5),
            )
        )
        tass = [(RU_TITLE, SHARED_LINK, RU_SUMMARY, now - timedelta(hours=4.5))]
        urdu = [(UR_TITLE, "https://urdu.example/1", UR_SUMMARY, now - timedelta(hours=0.5))]
        feeds.add("/dawn.xml", rss("Dawn", dawn, "en"), content_type="application/rss+xml")
        feeds.add("/tass.xml", rss("TASS", tass, "ru"), content_type="application/rss+xml")
        feeds.add("/urdu.xml", rss("BBC Urdu", urdu, "ur"), content_type="application/rss+xml")
        feeds.add("/later.xml", rss("Later", []), content_type="application/rss+xml")
        feeds.route("/broken.xml", answer(500))
        feeds.route("/gone.xml", answer(410))
        rows = [
            {"name": "dawn", "url": feeds.url("/dawn.xml"), "title": "Dawn"},
            {"name": "tass", "url": feeds.url("/tass.xml"), "title": "TASS"},
            {"name": "urdu", "url": feeds.url("/urdu.xml"), "title": "BBC Urdu"},
            {"name": "broken", "url": feeds.url("/broken.xml"), "title": "Broken Times"},
            {"name": "refused", "url": f"http://127.0.0.1:{free_port()}/feed.xml"},
            {"name": "gone", "url": feeds.url("/gone.xml")},
            {"name": "later", "url": feeds.url("/later.xml")},
        ]
        for r in rows:
            r["allow_private"] = True
        text = toml_config(
            rows,
            [
                {"slug": TOPIC_ALL, "title": "Region (every outlet)"},
                {"slug": TOPIC_QUERY, "title": "Pakistan–Russia", "query": QUERY},
            ],
            base_url=base,
        )
        config_path = tmp / "aggregator.toml"
        config_path.write_text(text, encoding="utf-8")
        cfg = config_mod.load(config_path)
        # TASS first, so the shared story is its copy's (in Russian): polled together,
        # which outlet's copy is stored first depends on which poll finishes first
        results = {r.feed: r.status for r in poll_feeds(cfg, {"tass"})}
        rest = {r["name"] for r in rows} - {"later", "tass"}
        results.update({r.feed: r.status for r in poll_feeds(cfg, rest)})
        assert results["dawn"] == results["tass"] == results["urdu"] == "ok", results
        assert results["broken"] == results["refused"] == "error", results
        titles = {"dawn": [d[0] for d in dawn], "tass": [RU_TITLE], "urdu": [UR_TITLE]}
        http = serve(cfg, sock)
        yield Site(base, cfg, config_path, feeds, titles)
    finally:
        if http is not None:
            http.close()
        else:
            sock.close()
        feeds.stop()


class Page(HTMLParser):
    """What a reader of a page gets: its stories, links, marks, and every tag."""

    def __init__(self, body: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.articles: list[dict[str, Any]] = []
        self.next: str | None = None
        self.sections: list[str] = []
        self.text: list[str] = []
        self._in: list[str] = []
        self.feed(body)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "article":
            self.articles.append(
                {
                    "lang": a.get("lang"),
                    "title": "",
                    "href": None,
                    "times": [],
                    "marks": [],
                    "text": "",
                }  # fmt: skip
            )
        if tag == "section" and a.get("id"):
            self.sections.append(str(a["id"]))
        if tag == "a" and a.get("rel") == "next":
            self.next = a.get("href")
        if self.articles and "article" in self._in:
            art = self.articles[-1]
            if tag == "h2":
                art["lang"] = a.get("lang")
            if tag == "a" and "h2" in self._in:
                art["href"] = a.get("href")
            if tag == "time":
                art["times"].append(a.get("datetime"))
        if tag not in {"meta", "link", "br", "img", "hr"}:
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._in:
            while self._in.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.articles and "article" in self._in:
            art = self.articles[-1]
            art["text"] += data
            if "h2" in self._in:
                art["title"] += data
            if "mark" in self._in:
                art["marks"].append(data)

    @property
    def titles(self) -> list[str]:
        return [a["title"].strip() for a in self.articles]

    @property
    def plain(self) -> str:
        return " ".join("".join(self.text).split())

    @property
    def spaced(self) -> str:
        """The text with a space between elements: a field's name and its value apart."""
        return " ".join(" ".join(self.text).split())


def page(site: Site, path: str) -> tuple[requests.Response, Page]:
    resp = site.get(path)
    assert resp.status_code == 200, (path, resp.status_code, resp.text[:200])
    return resp, Page(resp.text)


def topic_rows(site: Site, slug: str) -> int:
    db = sqlite3.connect(site.cfg.database.path)
    try:
        return int(
            db.execute("SELECT count(*) FROM topic_stories WHERE topic = ?", (slug,)).fetchone()[0]
        )
    finally:
        db.close()


# -- the topic page over a real socket ---------------------------------------------------


def test_topic_page_pages_through_every_story_newest_first(site: Site) -> None:
    resp, first = page(site, f"/topics/{TOPIC_ALL}.html")
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert len(first.articles) == pages.PAGE_SIZE
    seen: list[dict[str, Any]] = []
    current, url = first, site.url(f"/topics/{TOPIC_ALL}.html")
    visited = 0
    while True:
        seen += current.articles
        visited += 1
        if current.next is None:
            break
        url = urljoin(url, current.next)
        assert url.startswith(site.url(f"/topics/{TOPIC_ALL}.html?before="))
        current = Page(requests.get(url, timeout=10).text)
    # every stored story once, in order, over as many pages as it takes
    total = topic_rows(site, TOPIC_ALL)
    assert total == DAWN_STORIES + 3  # the shared story is one story, not two
    assert len(seen) == total and visited == -(-total // pages.PAGE_SIZE)
    times = [a["times"][0] for a in seen]
    assert times == sorted(times, reverse=True)
    # the same stories, titled as the topic's feed titles them
    feed = site.get(f"/topics/{TOPIC_ALL}.json").json()["items"]
    assert [a["title"] for a in seen] == [i["title"] for i in feed]
    # the older page is stable: asked again, it is the same page
    assert Page(requests.get(url, timeout=10).text).titles == current.titles
    assert "Newest stories" in current.plain


def test_topic_page_shows_outlet_times_related_and_language(site: Site) -> None:
    _, p = page(site, f"/topics/{TOPIC_QUERY}.html")
    by_title = {a["title"].strip(): a for a in p.articles}
    # the shared story is one article: its first outlet's copy, the other one listed
    [deal] = [a for a in p.articles if a["href"] == SHARED_LINK]
    first, other = ("TASS", "Dawn") if deal["lang"] == "ru" else ("Dawn", "TASS")
    text = " ".join(deal["text"].split())
    assert f"{first} · " in text and f"Also reported by: {other}" in text
    assert {"ru": "Russian", "en": "English"}[deal["lang"]] in text
    assert "hours ago" in text  # relative beside the absolute time
    assert deal["times"][0].endswith("Z") and "UTC" in text
    urdu = by_title[UR_TITLE]
    assert urdu["lang"] == "ur" and "Urdu" in urdu["text"] and "within the hour" in urdu["text"]
    # stories older than a week carry only their absolute time
    _, last = page(site, f"/topics/{TOPIC_ALL}.html?before={store_cursor_of_oldest(site)}")
    oldest = last.articles[-1] if last.articles else None
    assert oldest is None or "ago" not in oldest["text"]


def store_cursor_of_oldest(site: Site) -> str:
    db = store.Store(site.cfg.database.path)
    try:
        p = db.topic_story_page(TOPIC_ALL, 1000, {})
        # the page before the last story holds exactly the oldest one
        return p.stories[-2].cursor
    finally:
        db.close()


def test_topic_page_highlights_matched_words_in_every_script(site: Site) -> None:
    _, p = page(site, f"/topics/{TOPIC_QUERY}.html")
    by_title = {a["title"].strip(): a for a in p.articles}
    # Russian: an inflected form (Пакистана) is marked through its stem; Москву is not
    ru = next(a for a in p.articles if "Пакистана" in a["text"])
    assert ru["lang"] == "ru"
    assert {"Пакистан", "Пакистана", "Россия"} <= set(ru["marks"])
    assert "Москву" not in ru["marks"] and "Делегация" not in ru["marks"]
    assert "Matched:" in ru["text"]
    ur = by_title[UR_TITLE]
    assert set(ur["marks"]) == {"پاکستان", "روس"}
    day = by_title["Pakistan and Russia: talks, day 1"]
    # "Pakistani" and "Russian" are other words than the terms, as they are to matching
    assert set(day["marks"]) == {"Pakistan", "Russia"}
    # a topic without a query matched no words, so nothing is marked
    _, everything = page(site, f"/topics/{TOPIC_ALL}.html")
    assert all(not a["marks"] for a in everything.articles)


def test_hostile_titles_and_summaries_are_text(site: Site) -> None:
    resp, p = page(site, f"/topics/{TOPIC_QUERY}.html")
    body = resp.text.lower()
    assert "<script" not in body and "onerror" not in body and "javascript:" not in body
    assert "<img" not in body and "display:none" not in body
    allowed = {
        "html", "head", "meta", "title", "style", "link", "body", "main", "p", "a", "h1",
        "h2", "code", "article", "time", "mark", "nav",
    }  # fmt: skip
    assert {t for t, _ in p.tags} <= allowed
    hostile = next(a for a in p.articles if "hold talks" in a["title"])
    # the title is the plain text the topic's feeds give it
    feed = site.get(f"/topics/{TOPIC_QUERY}.json").json()["items"]
    assert hostile["title"] in {i["title"] for i in feed}
    assert 'alert("summary")' not in hostile["text"]  # script content goes with the tag
    assert "Pakistan and Russia talk trade" in " ".join(hostile["text"].split())
    assert all(
        a.get("href", "x").startswith(("http://", "https://")) for t, a in p.tags if t == "a"
    )


def test_topic_page_etag_304_and_bad_requests(site: Site) -> None:
    with requests.Session() as s:
        path = site.url(f"/topics/{TOPIC_QUERY}.html")
        first = s.get(path, timeout=10)
        assert first.status_code == 200
        etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
        assert first.headers["Content-Security-Policy"] == pages.CSP
        again = s.get(path, headers={"If-None-Match": etag}, timeout=10)
        assert again.status_code == 304 and again.content == b""
        assert again.headers["ETag"] == etag
        assert s.get(path, headers={"If-None-Match": '"other"'}, timeout=10).status_code == 200
        assert s.get(path, headers={"If-Modified-Since": modified}, timeout=10).status_code == 304
        # another page has other bytes, so another validator
        older = s.get(path + "?before=" + store_cursor(site, TOPIC_QUERY), timeout=10)
        assert older.status_code == 200 and older.headers["ETag"] != etag
        assert s.get(site.url("/topics/nope.html"), timeout=10).status_code == 404
        for bad in ("x", "2026-01-01_1", "2026-01-01T00:00:00.000000Z_", "'; DROP TABLE x"):
            assert s.get(path, params={"before": bad}, timeout=10).status_code == 400


def store_cursor(site: Site, slug: str) -> str:
    db = store.Store(site.cfg.database.path)
    try:
        return db.topic_story_page(slug, 1, {}).stories[0].cursor
    finally:
        db.close()


def test_keyset_page_reads_the_topic_index(site: Site) -> None:
    db = store.Store(site.cfg.database.path)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        first = db.topic_story_page(TOPIC_ALL, 5, {})
        assert first.older == first.stories[-1].cursor
        second = db.topic_story_page(TOPIC_ALL, 5, {}, first.older)
        assert not {s.item.id for s in first.stories} & {s.item.id for s in second.stories}
        [keyset] = [s for s in statements if "ts.story_id) < (" in s]
        db.conn.set_trace_callback(None)
        plan = " ".join(r[3] for r in db.conn.execute("EXPLAIN QUERY PLAN " + keyset))
    finally:
        db.close()
    assert (
        "USING INDEX topic_stories_newest" in plan or "COVERING INDEX topic_stories_newest" in plan
    ), plan
    assert "TEMP B-TREE" not in plan, plan  # no sort: the index is the order


# -- / and /feeds --------------------------------------------------------------------------


def status_json(site: Site) -> list[dict[str, Any]]:
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(site.config_path), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def test_feeds_page_agrees_with_status_failing_first(site: Site) -> None:
    rows = status_json(site)
    _, p = page(site, "/feeds")
    order = [s.removeprefix("feed-") for s in p.sections]
    assert order == ["broken", "refused", "gone", "later", "dawn", "tass", "urdu"]
    by_feed = {r["feed"]: r for r in rows}
    assert by_feed["broken"]["state"] == "failing" and by_feed["broken"]["status"] == 500
    assert by_feed["refused"]["state"] == "failing" and by_feed["refused"]["status"] is None
    assert by_feed["gone"]["state"] == "gone" and by_feed["later"]["state"] == "never fetched"
    assert by_feed["dawn"]["state"] == "ok"
    html = site.get("/feeds").text
    for r in rows:  # what the command line says is what the page says
        section = html.split(f'id="feed-{r["feed"]}"', 1)[1].split("</section>", 1)[0]
        text = Page(section).spaced
        assert f"State {r['state']}" in text, (r["feed"], text)
        assert f"Entries {r['entries']}" in text and f"Merged {r['merged']}" in text
        assert f"HTTP status {r['status'] if r['status'] else '-'}" in text
        if r["last_error"]:
            assert Page(r["last_error"]).plain in text
        assert f"Failures in a row {r['failures']}" in text
    assert "7 feeds: 3 working, 2 failing, 1 never fetched, 1 gone" in p.plain


def test_index_shows_headlines_and_the_feeds_in_trouble(site: Site) -> None:
    resp, p = page(site, "/")
    assert resp.headers["Content-Security-Policy"] == pages.CSP
    text = p.plain
    # each topic's newest few headlines, linked
    db = store.Store(site.cfg.database.path)
    try:
        for slug in (TOPIC_ALL, TOPIC_QUERY):
            newest = db.topic_story_page(slug, pages.HEADLINES, {}).stories
            assert len(newest) == pages.HEADLINES
            for s in newest:
                assert s.item.title in text
                assert ("a", {"href": s.item.link}) in p.tags
    finally:
        db.close()
    assert ("a", {"href": site.url(f"/topics/{TOPIC_QUERY}.html")}) in p.tags
    assert ("a", {"href": site.url("/feeds")}) in p.tags
    rows = {r["feed"]: r for r in status_json(site)}
    trouble = text.split("3 of 7 working", 1)[1]
    assert trouble.index("Broken Times failing") < trouble.index("gone gone")
    assert Page(rows["broken"]["last_error"]).plain in trouble
    assert Page(rows["refused"]["last_error"]).plain in trouble
    assert "later never fetched" in trouble and "Dawn" not in trouble
    assert 'role="alert"' not in resp.text  # some feeds work: no alarm


def test_first_run_without_any_working_feed_says_so(tmp_path: Path) -> None:
    """A first-time user whose machine reaches no feed sees it at once, and why."""
    with FeedServer() as feeds:
        feeds.route("/a.xml", answer(503))
        sock, base = bound_socket()
        path = tmp_path / "aggregator.toml"
        path.write_text(
            toml_config(
                [
                    {"name": "a", "url": feeds.url("/a.xml"), "allow_private": True},
                    {"name": "b", "url": f"http://127.0.0.1:{free_port()}/", "allow_private": True},
                ],
                [{"slug": "all", "title": "All"}],
                base_url=base,
            ),
            encoding="utf-8",
        )
        cfg = config_mod.load(path)
        http = serve(cfg, sock)
        try:
            before = requests.get(base + "/", timeout=10).text
            assert 'role="alert"' in before
            assert "No feed has been fetched yet" in Page(before).plain
            poll_feeds(cfg)
            resp = requests.get(base + "/", timeout=10)
            feeds_page = requests.get(base + "/feeds", timeout=10).text
        finally:
            http.close()
    p = Page(resp.text)
    banner = resp.text.split('role="alert"', 1)[1].split("</div>", 1)[0]
    text = Page(banner).plain
    assert "Every feed is failing (2 of 2). None has ever been fetched successfully." in text
    db = store.Store(cfg.database.path)
    errors = [s.last_error for s in db.feed_statuses()]
    db.close()
    assert all(errors)
    for error in errors:  # why: each feed's own last error
        assert Page(error or "").plain in text
    assert p.plain.index("Every feed is failing") < p.plain.index("Last poll")
    assert "Every feed is failing" in Page(feeds_page).plain


# -- headless Chromium ---------------------------------------------------------------------


PHONE = "390x844"


def chromium_page(site: Site, path: str, shot: Path, size: str | None = None) -> dict[str, Any]:
    need("chromium", "Debian package chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    proc = node_script(
        "browser.mjs", site.url(path), str(shot), *([size] if size else []), check=False
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["status"] == 200
    assert out["csp"] == pages.CSP
    # no console errors or warnings: a CSP violation would be one ("Refused to ...")
    assert [m for m in out["console"] if m["type"] in {"error", "warning"}] == []
    assert out["pageErrors"] == [] and out["failedRequests"] == [] and out["badResponses"] == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return out


def phone_readable(out: dict[str, Any]) -> None:
    # the viewport meta makes the layout as wide as the phone, and nothing sticks out
    assert out["innerWidth"] == 390
    assert out["scrollWidth"] <= out["innerWidth"]
    assert out["fontSize"] >= 16


@pytest.mark.parametrize("size", [None, PHONE], ids=["desktop", "phone"])
def test_topic_page_in_chromium(
    site: Site, size: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    shot = ARTIFACTS / f"topic-page{'-phone' if size else ''}.png"
    out = chromium_page(site, f"/topics/{TOPIC_QUERY}.html", shot, size)
    db = store.Store(site.cfg.database.path)
    try:
        expected = [
            s.item.title for s in db.topic_story_page(TOPIC_QUERY, pages.PAGE_SIZE, {}).stories
        ]
    finally:
        db.close()
    assert out["headlines"] == expected  # every headline, newest first, as a reader sees it
    assert re.search(r"Also reported by: (TASS|Dawn)", out["text"])
    assert {link["type"] for link in out["links"]} == {
        "application/atom+xml", "application/rss+xml", "application/feed+json"
    }  # fmt: skip
    assert all(link["status"] == 200 for link in out["links"])
    if size:
        phone_readable(out)
    report(
        capsys, f"{tool_version('chromium', '--version')}: topic page {size or '1000x700'}: {shot}"
    )


@pytest.mark.parametrize("size", [None, PHONE], ids=["desktop", "phone"])
def test_feeds_page_in_chromium(
    site: Site, size: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    shot = ARTIFACTS / f"feeds-page{'-phone' if size else ''}.png"
    out = chromium_page(site, "/feeds", shot, size)
    assert out["headlines"][:4] == [
        "Broken Times broken", "refused refused", "gone gone", "later later"
    ]  # fmt: skip
    if size:
        phone_readable(out)
    report(capsys, f"feeds page {size or '1000x700'}: {shot}")


# -- focused units -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "language", "text", "marked"),
    [
        (["pakistan"], "en", "Pakistan's army; Pakistanis abroad", ["Pakistan"]),
        (["russia"], "en", "Russia and RUSSIA, not Russian", ["Russia", "RUSSIA"]),
        (["Пакистан"], "ru", "Пакистаном и Пакистане, не Индией", ["Пакистаном", "Пакистане"]),
        (["россия"], None, "Россию и России", ["Россию", "России"]),
        (["پاکستان"], "ur", "پاکستان اور پاکستانی", ["پاکستان"]),
        (["پاکستان"], "ur", "پاكستان (Arabic kaf)", ["پاكستان"]),
        (["russ*"], "en", "Russian russians Prussia", ["Russian", "russians"]),
        (["Imran Khan"], "en", "Imran Khan met Khan", ["Imran", "Khan", "Khan"]),
        (["café"], "fr", "Le CAFE et le cafe", ["CAFE", "cafe"]),
    ],
)
def test_highlighter_marks_what_matching_matches(
    terms: list[str], language: str | None, text: str, marked: list[str]
) -> None:
    out = pages.Highlighter(terms, language).html(text)
    found = [part.split("</mark>", 1)[0] for part in out.split("<mark>")[1:]]
    assert found == marked
    assert out.replace("<mark>", "").replace("</mark>", "") == text.replace("'", "&#x27;")


def test_highlighter_escapes_everything_else() -> None:
    out = pages.Highlighter(["script"], "en").html('<script>alert("x")</script> & script')
    assert out == (
        "&lt;<mark>script</mark>&gt;alert(&quot;x&quot;)&lt;/<mark>script</mark>&gt;"
        " &amp; <mark>script</mark>"
    )
    assert pages.Highlighter([], None).html("<b>") == "&lt;b&gt;"


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(minutes=59), "within the hour"),
        (timedelta(hours=1), "1 hour ago"),
        (timedelta(hours=23, minutes=59), "23 hours ago"),
        (timedelta(days=1, hours=3), "yesterday"),
        (timedelta(days=6, hours=23), "6 days ago"),
        (timedelta(days=7), None),
        (timedelta(minutes=-5), None),
    ],
)
def test_relative_times_for_the_last_days(delta: timedelta, expected: str | None) -> None:
    assert pages.ago(NOW - delta, NOW) == expected


def item(title: str, summary: str = "", **kw: Any) -> FeedItem:
    return FeedItem(
        id=f"tag:x,2026:{title}",
        title=title,
        link=kw.pop("link", "https://a.example/1"),
        summary_html=summary,
        content_html="",
        author=None,
        source=kw.pop("source", "Dawn"),
        source_url=None,
        published=NOW,
        updated=NOW,
        **kw,
    )


def test_summary_is_sanitized_text_cut_at_a_word() -> None:
    long = "<p>" + " ".join(f"word{n}" for n in range(200)) + "</p>"
    text = pages.summary_text(item("t", long))
    assert text.endswith(" …") and len(text) <= pages.SUMMARY_CHARS + 2
    assert text.split()[-2].startswith("word")
    s = pages.summary_text(item("t", "<style>p{}</style><script>x()</script>Hello <b>there</b>"))
    assert s == "Hello there"


def test_topic_page_renders_without_a_clock_the_same_bytes() -> None:
    story = PageStory(item("Pakistan budget", "<p>Pakistan passes budget</p>"), "en", "c")
    one = pages.topic_page("t", "T", "pakistan", "http://x", StoryPage((story,), None))
    assert one == pages.topic_page("t", "T", "pakistan", "http://x", StoryPage((story,), None))
    assert b"ago" not in one and b'rel="next"' not in one and b"Newest stories" not in one


def test_feed_rows_list_every_configured_feed(
    make_config: Callable[..., config_mod.Config],
) -> None:
    cfg = make_config([("a", "http://a.example/"), ("b", "http://b.example/")])
    db = store.Store(cfg.database.path)
    db.sync_feeds([("a", "http://a.example/"), ("old", "http://old.example/")])
    rows = status.feed_rows(cfg, db.feed_statuses())
    db.close()
    assert [(r.feed, r.state) for r in rows] == [("a", "never fetched"), ("b", "never fetched")]
    o = status.overview(rows)
    assert o.alarm and o.nothing_fetched and o.never_fetched == 2


def test_default_config_on_a_machine_that_resolves_no_host(tmp_path: Path) -> None:
    """The shipped config where no feed's host resolves (as on a machine without
    internet): `/` opens with the alarm, names the DNS failure, and says what it means."""
    shipped = (Path(__file__).resolve().parents[1] / "config" / "aggregator.toml").read_text(
        encoding="utf-8"
    )
    # RFC 6761: names under .invalid never resolve, online or not
    text, n = re.subn(r'^(url = "https?://[^/"]+)', r"\1.invalid", shipped, flags=re.M)
    assert n >= 10
    text = re.sub(r'^path = ".*"$', 'path = "aggregator.db"', text, count=1, flags=re.M)
    sock, base = bound_socket()
    text = re.sub(r'^base_url = ".*"$', f'base_url = "{base}"', text, count=1, flags=re.M)
    path = tmp_path / "aggregator.toml"
    path.write_text(text, encoding="utf-8")
    cfg = config_mod.load(path)
    assert len(cfg.feeds) == n
    results = poll_feeds(cfg)
    assert {r.status for r in results} == {"error"}
    http = serve(cfg, sock)
    try:
        index = requests.get(base + "/", timeout=10).text
    finally:
        http.close()
    banner = Page(index.split('role="alert"', 1)[1].split("</div>", 1)[0]).plain
    assert f"Every feed is failing ({n} of {n})" in banner
    assert f"DNS lookup failed for <host> ({n} feeds, e.g. DNS lookup failed for " in banner
    assert "cannot look up the feeds' host names" in banner
