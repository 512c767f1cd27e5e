"""JSON Feed values of the wrong type are ignored, not published.

tests/feeds/jsonfeed-wrong-types.json is inessential.com's real JSON Feed, trimmed to
six items, with the mistakes broken generators make: numbers, lists, objects,
booleans and nulls where strings belong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import defusedxml.ElementTree

from aggregator.ingest import parse
from tests.conftest import toml_config
from tests.feedserver import FeedServer

FEED = Path(__file__).parent / "feeds" / "jsonfeed-wrong-types.json"
ATOM = "{http://www.w3.org/2005/Atom}"


def test_wrong_types_are_ignored() -> None:
    feed = parse.parse(FEED.read_bytes(), {}, "http://127.0.0.1:9/feed.json")
    assert feed.title is None and feed.link is None  # "title": 2017, "home_page_url": 0.5
    first, second, third, fourth, fifth, sixth = feed.entries
    assert first.title == ""  # "title": 1000
    assert (
        first.link == "http://inessential.com/2017/06/02/james_dempsey_and_the_breakpoints_benefi"
    )
    assert second.link is None  # "url": 1.2, "external_url": a list
    assert second.title == "Evergreen Diary #1: Open Source"
    assert third.title == "" and third.summary == ""  # a list, an object
    assert fourth.content == "Plain text body of the fourth post."  # "content_html": 12345
    assert fourth.published is None  # a Unix time is not a JSON Feed date
    assert fifth.guid == "4711"  # JSON Feed 1.1: a number id is coerced to a string
    assert fifth.author is None  # {"name": 99}
    assert sixth.link is None and sixth.title == ""  # "url": true, "title": null


def test_wrong_types_never_reach_the_published_feeds(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.add("/feed.json", FEED.read_bytes(), content_type="application/feed+json")
        config = tmp_path / "aggregator.toml"
        config.write_text(
            toml_config([("ines", server.url("/feed.json"))], [{"slug": "all", "title": "All"}]),
            encoding="utf-8",
        )
        env = dict(os.environ, AGGREGATOR_CONFIG=str(config))

        def run(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "aggregator", *args],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        run("poll")
        base = server.base_url
    items = json.loads(run("export", "all", "--format", "json"))["items"]
    atom = defusedxml.ElementTree.fromstring(run("export", "all", "--format", "atom").encode())
    rss = defusedxml.ElementTree.fromstring(run("export", "all", "--format", "rss").encode())
    assert len(items) == 6
    links = [i.get("url") for i in items]
    links += [link.get("href") for link in atom.iter(f"{ATOM}link")]
    links += [e.text for e in rss.iter("link")]
    titles = [i.get("title") for i in items]
    titles += [e.text for e in atom.iter(f"{ATOM}title")]
    titles += [e.text for e in rss.iter("title")]
    # the feed's own URL appears as the entries' source; nothing else of the server
    wrong = [x for x in links if x and x != f"{base}/feed.json" and (base in x or "1.2" in x)]
    assert not wrong
    assert not [t for t in titles if t and ("1000" in t or "2017" in t or "[" in t)]
    assert "Evergreen Diary #1: Open Source" in titles
    text = json.dumps(items)
    assert "not a string" not in text and "12345" not in text and "True" not in text
