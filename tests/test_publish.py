"""Publish end to end: the real corpus served locally, polled, and read back from the
topic feeds; the expected entries are computed here from the files, without our matcher."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import pytest

from aggregator import config as config_mod
from aggregator.ingest import pipeline as poll
from aggregator.publish import web
from aggregator.storage import store
from tests.feedserver import FeedServer
from tests.test_poll import feed_name

Make = Callable[..., config_mod.Config]

WORD = "microsoft"


def plain(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", " ", markup or ""))


def expected_links(corpus: Path) -> set[str]:
    """Links of every corpus item mentioning WORD as a word, by feedparser and a regex."""
    pattern = re.compile(rf"(?<!\w){WORD}(?!\w)", re.IGNORECASE)
    links = set()
    for path in sorted(corpus.glob("*.xml")):
        if "BROKEN" in path.name:
            continue
        ids: set[str] = set()
        for e in feedparser.parse(path.read_bytes()).entries:
            key = e.get("id") or e.get("link")
            if key in ids:  # a repeated guid is the same item: the first copy counts
                continue
            ids.add(key)
            text = " ".join(
                [plain(e.get("title", "")), plain(e.get("summary", ""))]
                + [plain(c.get("value", "")) for c in e.get("content", [])]
            )
            if pattern.search(text) and e.get("link"):
                links.add(e["link"])
    return links


@pytest.fixture
def polled(corpus_dir: Path, make_config: Make) -> Iterator[config_mod.Config]:
    with FeedServer() as server:
        server.serve_dir("/corpus", corpus_dir)
        files = sorted(p.name for p in corpus_dir.glob("*.xml") if "BROKEN" not in p.name)
        cfg = make_config(
            [(feed_name(f), server.url(f"/corpus/{f}")) for f in files],
            [{"slug": "ms", "title": "Microsoft", "query": f'"{WORD}"', "limit": 10000}],
        )
        db = store.Store(cfg.database.path)
        poll.sync(cfg, db)
        poller = poll.Poller(cfg)
        list(poll.poll_many(poller, cfg.feeds))
        poller.close()
        db.close()
        yield cfg


def test_topic_holds_exactly_the_matching_corpus_items(
    polled: config_mod.Config, corpus_dir: Path
) -> None:
    client = web.create_app(polled).test_client()
    feed = json.loads(client.get("/topics/ms.json").data)
    seen: list[str] = []
    for item in feed["items"]:
        seen.append(item["url"])
        seen += [r["url"] for r in item["_aggregator"]["related"]]
    assert expected_links(corpus_dir) <= set(seen)
    # Nothing that does not mention the word, and every story once.
    assert set(seen) <= expected_links(corpus_dir)
    ids = [i["id"] for i in feed["items"]]
    assert len(ids) == len(set(ids))
    # Newest first.
    dates = [i["date_published"] for i in feed["items"]]
    assert dates == sorted(dates, reverse=True)
    # The same stories in Atom and RSS, with the same ids.
    atom_ids = [e.id for e in feedparser.parse(client.get("/topics/ms.atom").data).entries]
    rss_ids = [e.id for e in feedparser.parse(client.get("/topics/ms.rss").data).entries]
    assert atom_ids == ids == rss_ids


def test_repoll_keeps_bytes_and_etag(polled: config_mod.Config) -> None:
    app = web.create_app(polled)
    first = app.test_client().get("/topics/ms.atom")
    db = store.Store(polled.database.path)
    poller = poll.Poller(polled)
    results = list(poll.poll_many(poller, polled.feeds))
    poller.close()
    db.close()
    assert all(r.new == 0 for r in results)
    again = app.test_client().get("/topics/ms.atom")
    assert again.data == first.data and again.headers["ETag"] == first.headers["ETag"]


def test_changed_query_is_reevaluated_at_next_start(
    polled: config_mod.Config, tmp_path: Path
) -> None:
    text = polled.path.read_text(encoding="utf-8").replace(f'"\\"{WORD}\\""', '"\\"google\\""')
    assert "google" in text
    polled.path.write_text(text, encoding="utf-8")
    changed = config_mod.load(polled.path)
    db = store.Store(changed.database.path)
    poll.sync(changed, db)  # what `run`, `serve`, `poll` and `export` do at start
    db.close()
    client = web.create_app(changed).test_client()
    titles = [i["title"] for i in json.loads(client.get("/topics/ms.json").data)["items"]]
    assert titles
    matched = {
        tag
        for i in json.loads(client.get("/topics/ms.json").data)["items"]
        for tag in i.get("tags", [])
    }
    # each entry names the word as its text writes it ("Google", "google")
    assert {tag.casefold() for tag in matched} == {"google"}
