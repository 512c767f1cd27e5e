"""A real feed reader subscribes to our topic feeds: lemon24/reader (feedparser and
requests, with its own ETag handling) over a real socket, through two polls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator import config as config_mod
from aggregator.ingest import pipeline as poll
from aggregator.publish import cache as publish
from aggregator.publish import metrics, server, web
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import FeedServer, free_port

reader_pkg = pytest.importorskip("reader", reason="lemon24/reader comes with the dev extra")

ITEMS = {
    "dawn": [
        ("d1", "Pakistan and Russia sign gas pipeline deal in Moscow", "http://dawn.example/1")
    ],
    "tass": [
        ("t1", "Pakistan, Russia sign gas pipeline deal in Moscow", "http://tass.example/1"),
        ("t2", "Pakistan hosts Russian trade delegation in Islamabad", "http://tass.example/2"),
    ],
}


def rss(items: list[tuple[str, str, str]]) -> bytes:
    body = "".join(
        f"<item><guid>{g}</guid><title>{t}</title><link>{link}</link>"
        f"<pubDate>Mon, 05 Jan 2026 1{n}:00:00 GMT</pubDate>"
        f"<description>{t}.</description></item>"
        for n, (g, t, link) in enumerate(items)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
        f"<link>http://x.example/</link><description>x</description>{body}</channel></rss>"
    ).encode()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[config_mod.Config, str, FeedServer]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FeedServer() as feeds:
        for name, items in ITEMS.items():
            feeds.add(f"/{name}.xml", rss(items))
        path = tmp_path / "aggregator.toml"
        path.write_text(
            toml_config(
                [{"name": n, "url": feeds.url(f"/{n}.xml"), "title": n.upper()} for n in ITEMS],
                [{"slug": "pr", "title": "P-R", "query": "pakistan AND (russia OR russian)"}],
                base_url=base,
            ).replace("[server]\n", f"[server]\nport = {port}\n", 1),
            encoding="utf-8",
        )
        cfg = config_mod.load(path)
        http = server.make_server(web.create_app(cfg), "127.0.0.1", port)
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        try:
            yield cfg, base, feeds
        finally:
            http.close()


def run_poll(cfg: config_mod.Config) -> None:
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    poller = poll.Poller(cfg)
    list(poll.poll_many(poller, cfg.feeds))
    poller.close()
    db.close()
    # a poll outside the serving process (cron's `aggregator poll`) shows by the
    # server's next check for commits
    time.sleep(publish.TopicCache.RECHECK)


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_reader_subscribes_updates_and_keeps_ids(
    site: tuple[config_mod.Config, str, FeedServer], tmp_path: Path, fmt: str
) -> None:
    cfg, base, feeds = site
    run_poll(cfg)
    url = f"{base}/topics/pr.{fmt}"
    client = reader_pkg.make_reader(str(tmp_path / f"reader-{fmt}.sqlite"))
    try:
        client.add_feed(url)
        client.update_feeds(scheduled=False)  # not waiting out our max-age
        first = {(e.id, e.title, e.link) for e in client.get_entries()}
        # the wire copy from two outlets is one entry; the second story is another
        assert len(first) == 2
        # (which outlet leads the wire story depends on which feed was stored first)
        links = {e[2] for e in first}
        assert "http://tass.example/2" in links
        assert len(links & {"http://dawn.example/1", "http://tass.example/1"}) == 1

        run_poll(cfg)  # nothing new at the outlets
        not_modified = metrics.HTTP_REQUESTS.labels("/topics/<slug>.<fmt>", "304")._value.get()
        client.update_feeds(scheduled=False)  # not waiting out our max-age
        assert {(e.id, e.title, e.link) for e in client.get_entries()} == first
        # it asked conditionally and got a 304
        assert (
            metrics.HTTP_REQUESTS.labels("/topics/<slug>.<fmt>", "304")._value.get()
            == not_modified + 1
        )

        feeds.add(
            "/dawn.xml",
            rss(
                ITEMS["dawn"]
                + [("d2", "Pakistan and Russian navies hold joint drill", "http://dawn.example/2")]
            ),
        )
        run_poll(cfg)
        client.update_feeds(scheduled=False)  # not waiting out our max-age
        after = {(e.id, e.title, e.link) for e in client.get_entries()}
        assert first < after and len(after) == 3
        assert client.get_feed(url).last_exception is None
    finally:
        client.close()
