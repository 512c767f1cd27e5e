"""Nothing lost, nothing hidden: posts of one page stay apart, a story shows its best
copy, and every item a poll reads is accounted for. Through the product: a local
HTTP server, `aggregator poll` and `status` as processes, `export` and HTTP."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
import sqlite_utils

from aggregator import config as config_mod
from aggregator import models
from aggregator.ingest import normalize
from aggregator.match import dedupe
from aggregator.publish import web
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import FeedServer
from tests.test_cli import aggregator

FEEDS = Path(__file__).parent / "feeds"
FORMATS = ("atom", "rss", "json")
NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


def write_config(site: Path, feeds: list[dict[str, object]], polling: str = "") -> None:
    (site / "aggregator.toml").write_text(
        toml_config(feeds, [{"slug": "all", "title": "All", "limit": 100}], polling=polling),
        encoding="utf-8",
    )


def poll_line(site: Path, feed: str) -> dict[str, Any]:
    """`aggregator poll`'s line for one feed, as figures (the skipped ones by reason)."""
    r = aggregator("poll", cwd=site)
    assert r.returncode == 0, r.stderr
    [line] = [x for x in r.stdout.splitlines() if x.split()[0] == feed]
    figures = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    reasons = set(models.SKIP_REASONS)
    figures["by_reason"] = {k: figures.pop(k) for k in list(figures) if k in reasons}
    total = r.stdout.splitlines()[-1]
    assert total.startswith("total: "), r.stdout
    return figures


def adds_up(c: dict[str, Any]) -> bool:
    parts = c["new"] + c["updated"] + c["unchanged"] + c["merged"]
    return bool(c["read"] == parts + sum(c["skipped"].values()))


def status_of(site: Path, feed: str) -> dict[str, Any]:
    r = aggregator("status", "--json", cwd=site)
    assert r.returncode == 0, r.stderr
    [row] = [s for s in json.loads(r.stdout) if s["feed"] == feed]
    return dict(row)


def exported(site: Path) -> dict[str, list[dict[str, str]]]:
    """The topic as `export` prints it in every format (checked against HTTP), as
    (title, link, text) per entry."""
    cfg = config_mod.load(site / "aggregator.toml")
    client = web.create_app(cfg).test_client()
    out = {}
    for fmt in FORMATS:
        body = subprocess.run(
            [sys.executable, "-m", "aggregator", "--config", str(site / "aggregator.toml")]
            + ["export", "all", "--format", fmt],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        assert body == client.get(f"/topics/all.{fmt}").data
        if fmt == "json":
            items = json.loads(body)["items"]
            out[fmt] = [
                {"title": i["title"], "link": i["url"], "text": i["content_html"]} for i in items
            ]
        else:
            entries = feedparser.parse(body).entries
            out[fmt] = [
                {
                    "title": e.title,
                    "link": e.link,
                    "text": (e.get("content") or [{}])[0].get("value") or e.get("summary", ""),
                }
                for e in entries
            ]
    return out


# -- posts that differ only in their #fragment -------------------------------------------


def test_a_weblogs_day_page_posts_are_each_a_story(tmp_path: Path) -> None:
    """Scripting News puts a day's posts on one page, each at its anchor: 15 posts
    (17 items, two repeating a guid) on two day pages are 15 stories, not 2."""
    body = (FEEDS / "scripting-com__day-pages.xml").read_bytes()
    expected = json.loads((FEEDS / "scripting-com__day-pages.expected.json").read_text())
    with FeedServer() as server:
        server.add("/scripting.xml", body)
        write_config(tmp_path, [{"name": "scripting", "url": server.url("/scripting.xml")}])
        line = poll_line(tmp_path, "scripting")

    want = expected["poll"]
    assert {k: line[k] for k in ("read", "new", "updated", "unchanged", "merged")} == {
        k: want[k] for k in ("read", "new", "updated", "unchanged", "merged")
    }
    assert line["by_reason"] == {k: n for k, n in want["skipped"].items() if n}
    assert line["skipped"] == sum(want["skipped"].values())
    # the same count as feedparser's own reading of the file: one per distinct guid
    assert want["new"] == len({e.id for e in feedparser.parse(body).entries})

    status = status_of(tmp_path, "scripting")
    last = status["last_poll"]
    assert {k: last[k] for k in want} == want and adds_up(last)
    assert status["skipped"] == want["skipped"] and status["entries"] == want["new"]

    posts = expected["posts"]
    for fmt, items in exported(tmp_path).items():
        assert sorted(i["link"] for i in items) == sorted(p["link"] for p in posts), fmt
        titled = {p["link"]: p["title"] for p in posts if p["title"]}
        assert {i["link"]: i["title"] for i in items if i["link"] in titled} == titled, fmt


def test_the_same_post_from_another_feed_joins_its_story_and_nothing_else(
    tmp_path: Path,
) -> None:
    """A second outlet linking one post of the page joins that post's story alone."""
    body = (FEEDS / "scripting-com__day-pages.xml").read_bytes()
    quote = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Linkblog</title>'
        "<link>http://links.example/</link><description>d</description><item>"
        "<title>Dave on Dropbox and one-page apps</title>"
        "<link>http://scripting.com/2017/06/25.html?utm_source=links#a080631</link>"
        "<guid>http://links.example/1</guid><pubDate>Sun, 25 Jun 2017 14:00:00 GMT</pubDate>"
        "<description>Worth reading.</description></item></channel></rss>"
    )
    with FeedServer() as server:
        server.add("/scripting.xml", body)
        server.add("/links.xml", b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>')
        write_config(
            tmp_path,
            [
                {"name": "scripting", "url": server.url("/scripting.xml"), "title": "Scripting"},
                {"name": "links", "url": server.url("/links.xml"), "title": "Links"},
            ],
        )
        poll_line(tmp_path, "scripting")
        server.add("/links.xml", quote.encode())
        line = poll_line(tmp_path, "links")
    assert (line["read"], line["merged"], line["new"]) == (1, 1, 0)
    conn = sqlite3.connect(tmp_path / "aggregator.db")
    try:
        [(stories,)] = conn.execute("SELECT count(*) FROM stories").fetchall()
        joined = conn.execute(
            "SELECT e.link FROM entries e WHERE e.story_id = "
            "(SELECT story_id FROM entries WHERE feed = 'links')"
        ).fetchall()
    finally:
        conn.close()
    assert stories == 15
    # the first of the two items with this guid (the one stored) and the link to it
    assert sorted(r[0] for r in joined) == [
        "http://scripting.com/2017/06/25.html#a080631",
        "http://scripting.com/2017/06/25.html?utm_source=links#a080631",
    ]


# -- a story is published with its best copy ------------------------------------------------

LONG = (
    "Islamabad and Moscow signed an agreement on Monday to build the Pakistan Stream gas "
    "pipeline, officials said, after two years of talks over its financing and route."
)


def test_a_story_shows_a_title_and_the_fullest_text_any_member_has(tmp_path: Path) -> None:
    """The first outlet's copy is untitled and one line; the second's has the headline
    and the article: the story shows those, under the first outlet's link."""
    brief = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Wire briefs</title>'
        "<link>http://briefs.example/</link><description>d</description><item>"
        "<link>http://news.example/2026/01/05/pipeline.html</link>"
        "<guid>http://briefs.example/b/1</guid><pubDate>Mon, 05 Jan 2026 10:00:00 GMT</pubDate>"
        "<description>Pipeline deal signed.</description></item></channel></rss>"
    )
    full = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>'
        "<link>http://news.example/</link><description>d</description><item>"
        "<title>Pakistan and Russia sign Pakistan Stream pipeline deal</title>"
        "<link>http://news.example/2026/01/05/pipeline.html?utm_source=rss</link>"
        "<guid>http://news.example/a/77</guid><pubDate>Mon, 05 Jan 2026 11:00:00 GMT</pubDate>"
        f"<description>&lt;p&gt;{LONG}&lt;/p&gt;</description></item></channel></rss>"
    )
    empty = b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>'
    with FeedServer() as server:
        server.add("/brief.xml", brief.encode())
        server.add("/full.xml", empty)
        write_config(
            tmp_path,
            [
                {"name": "brief", "url": server.url("/brief.xml"), "title": "Briefs"},
                {"name": "full", "url": server.url("/full.xml"), "title": "News"},
            ],
        )
        poll_line(tmp_path, "brief")
        # untitled while no member has a title: the renderer's placeholder
        assert {i[0]["title"] for i in exported(tmp_path).values()} == {"(untitled)"}
        server.add("/full.xml", full.encode())
        assert poll_line(tmp_path, "full")["merged"] == 1

    for fmt, items in exported(tmp_path).items():
        [item] = items
        assert item["title"] == "Pakistan and Russia sign Pakistan Stream pipeline deal", fmt
        assert LONG in item["text"], fmt
        assert "Pipeline deal signed." not in item["text"], fmt
        # the link (and the id) stay the first outlet's
        assert item["link"] == "http://news.example/2026/01/05/pipeline.html", fmt


# -- every entry is accounted for ------------------------------------------------------------


def _item(guid: str | None, title: str, link: str | None, day: int, text: str | None = None) -> str:
    parts = [f"<title>{title}</title>"] if title else []
    if guid:
        parts.append(f'<guid isPermaLink="false">{guid}</guid>')
    if link:
        parts.append(f"<link>{link}</link>")
    parts.append(f"<pubDate>{day:02d} Jan 2026 10:00:00 GMT</pubDate>")
    parts.append(f"<description>{text if text is not None else 'About ' + title}</description>")
    return "<item>" + "".join(parts) + "</item>"


def _feed(items: list[str]) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Desk</title>'
        "<link>http://desk.example/</link><description>d</description>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def test_every_item_read_is_stored_merged_or_skipped_with_its_reason(tmp_path: Path) -> None:
    page = "http://desk.example/live"
    items = [
        _item("a", "Budget passes", "http://desk.example/a", 9),
        "<item><pubDate>Fri, 09 Jan 2026 09:00:00 GMT</pubDate></item>",  # nothing in it
        _item("a", "Budget passes (again)", "http://desk.example/a2", 8),  # a repeated guid
        _item(None, "Live: first update", page, 7),
        _item(None, "Live: second update", page, 7),  # no guid, the same link: one key
        _item("r1", "Flood warning", "http://desk.example/flood", 5, "Rivers rise."),
        _item("r2", "Flood warning", "http://desk.example/flood", 6, "Rivers rise."),  # re-run
        _item("b", "Strike ends", "http://desk.example/b", 6),
        _item("c", "Oldest item", "http://desk.example/c", 1),  # past max_entries = 6
    ]
    with FeedServer() as server:
        server.add("/desk.xml", _feed(items))
        write_config(
            tmp_path, [{"name": "desk", "url": server.url("/desk.xml")}], polling="max_entries = 6"
        )
        first = poll_line(tmp_path, "desk")
        assert first == {
            "read": 9,
            "new": 4,  # a, the live page, r1, b
            "updated": 0,
            "merged": 1,  # r2: the same words under a new guid
            "unchanged": 0,
            "skipped": 4,
            "by_reason": {"no_content": 1, "repeated_guid": 2, "over_max_entries": 1},
        }
        status = status_of(tmp_path, "desk")
        assert adds_up(status["last_poll"])
        assert status["skipped"] == {"no_content": 1, "over_max_entries": 1, "repeated_guid": 2}

        # one edited, one new; the rest as they were (stored or skipped then)
        items[7] = _item("b", "Strike ends after talks", "http://desk.example/b", 6)
        server.add("/desk.xml", _feed([_item("d", "New item", "http://desk.example/d", 9)] + items))
        second = poll_line(tmp_path, "desk")
        assert {k: second[k] for k in ("read", "new", "updated", "merged", "unchanged")} == {
            "read": 10,
            "new": 1,
            "updated": 1,
            "merged": 0,
            "unchanged": 8,
        }
        assert second["skipped"] == 0
        status = status_of(tmp_path, "desk")
        last = status["last_poll"]
        assert (last["read"], last["new"], last["updated"], last["unchanged"]) == (10, 1, 1, 8)
        assert adds_up(last)
        # the totals keep what earlier polls skipped
        assert status["skipped"] == {"no_content": 1, "over_max_entries": 1, "repeated_guid": 2}

    table = aggregator("status", "--wide", cwd=tmp_path)
    assert table.returncode == 0
    assert "10: 1 new, 1 updated, 8 unchanged" in table.stdout
    assert "no_content=1, over_max_entries=1, repeated_guid=2" in table.stdout
    titles = [i["title"] for i in exported(tmp_path)["json"]]
    assert sorted(titles) == sorted(
        ["New item", "Budget passes", "Live: first update", "Flood warning"]
        + ["Strike ends after talks"]
    )


# -- the rules, one by one ------------------------------------------------------------------


def _entry(feed: str, link: str, title: str = "", text: str = "") -> models.Entry:
    full = "\n".join(p for p in (title, text) if p)
    return models.Entry(
        feed=feed,
        key=link,
        guid=None,
        link=link,
        canonical_link=normalize.canonical_url(link),
        title=title,
        summary_html=text,
        content_html="",
        text=full,
        author=None,
        published=NOW,
        content_hash="",
    )


def _mate(feed: str, link: str, title: str = "", text: str | None = "") -> models.LinkMate:
    return models.LinkMate(
        story_id=7,
        feed=feed,
        link=link,
        title=title,
        text="\n".join(p for p in (title, text) if p) if text is not None else None,
    )


@pytest.mark.parametrize(
    ("entry", "mate", "same"),
    [
        # anchors: two different ones are two posts, wherever they come from
        (_entry("a", "http://x/21.html#a1"), _mate("b", "http://x/21.html#a2"), False),
        (_entry("a", "http://x/21.html#a1"), _mate("a", "http://x/21.html#a2"), False),
        (_entry("a", "http://x/21.html#a1"), _mate("b", "http://x/21.html#a1"), True),
        # one link without an anchor says nothing
        (_entry("b", "http://x/story#top"), _mate("a", "http://x/story"), True),
        # a tracker in the fragment is no anchor
        (_entry("b", "http://x/s#xtor=RSS-3"), _mate("a", "http://x/s#a1"), True),
        # across feeds, outlets retitle and rewrite one article
        (
            _entry("b", "http://x/s", "Other words", "Other text"),
            _mate("a", "http://x/s", "T"),
            True,
        ),
        # one feed listing the page twice: different titles or texts are two posts
        (_entry("a", "http://x/s", "Morning"), _mate("a", "http://x/s", "Evening"), False),
        (_entry("a", "http://x/s", "T", "One"), _mate("a", "http://x/s", "T", "Two"), False),
        # ... the same words are a re-run, and an untitled copy does not disagree
        (_entry("a", "http://x/s", "T", "One"), _mate("a", "http://x/s", "T", "One"), True),
        (_entry("a", "http://x/s", "", "One"), _mate("a", "http://x/s", "T", "One"), True),
    ],
)
def test_same_post(entry: models.Entry, mate: models.LinkMate, same: bool) -> None:
    assert dedupe.same_post(entry, mate) is same
    assert dedupe.link_story(entry, [mate]) == (7 if same else None)


def test_link_story_takes_the_first_mate_that_is_the_same_post() -> None:
    entry = _entry("b", "http://x/21.html#a2")
    mates = [
        dataclasses.replace(_mate("a", "http://x/21.html#a1"), story_id=1),
        dataclasses.replace(_mate("a", "http://x/21.html#a2"), story_id=2),
        dataclasses.replace(_mate("c", "http://x/21.html"), story_id=3),
    ]
    assert dedupe.link_story(entry, mates) == 2


@pytest.mark.parametrize(
    ("link", "fragment"),
    [
        ("http://scripting.com/2017/06/21.html#a060647", "a060647"),
        ("http://x/story", None),
        ("http://x/story#", None),
        ("http://x/story#xtor=RSS-3208", None),
        (None, None),
    ],
)
def test_post_fragment(link: str | None, fragment: str | None) -> None:
    assert dedupe.post_fragment(link) == fragment


def test_items_without_a_guid_on_one_page_keep_their_anchors_apart() -> None:
    a = normalize.identity(models.ParsedEntry(None, "/21.html#a1", "", "one", "", None, None))
    b = normalize.identity(
        models.ParsedEntry(None, "/21.html#a2", "", "two", "", None, None), "http://x/"
    )
    assert a.key != b.key
    assert b.key == "http://x/21.html#a2" and b.canonical_link == "http://x/21.html"


def test_stored_keys_take_their_anchor_and_feeds_their_counts(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    store.migrations().apply(sqlite_utils.Database(conn), stop_before="0007_feed_entry_counts")
    conn.execute("INSERT INTO feeds(name, config_url, url) VALUES ('f', 'u', 'u')")
    conn.execute("INSERT INTO stories(uid, published, updated) VALUES ('s', 't', 't')")
    rows = [
        # (key, guid, link, canonical_link)
        ("http://x/21.html", None, "http://x/21.html#a1", "http://x/21.html"),
        ("http://x/s", None, "http://x/s#xtor=RSS-3", "http://x/s"),
        ("g", "g", "http://x/22.html#a1", "http://x/22.html"),
    ]
    for key, guid, link, canonical in rows:
        conn.execute(
            "INSERT INTO entries(feed, key, story_id, guid, link, canonical_link, title, "
            "summary_html, content_html, text, published, first_seen, updated, content_hash) "
            "VALUES ('f', ?, 1, ?, ?, ?, '', '', '', '', 't', 't', 't', 'h')",
            (key, guid, link, canonical),
        )
    conn.close()
    db = store.Store(path)
    keys = [r[0] for r in db.conn.execute("SELECT key FROM entries ORDER BY id")]
    assert keys == ["http://x/21.html#a1", "http://x/s", "g"]
    [status] = db.feed_statuses()
    assert status.last_counts is None
    assert status.skipped == {"no_content": 0, "over_max_entries": 0, "repeated_guid": 0}
    db.close()
