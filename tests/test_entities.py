"""Literal entities in a DOCTYPE are read as feedparser reads them; entity bombs and
external entities are still refused (tests/test_hostile.py polls those too).

tests/feeds/entity-in-doctype.xml declares entities the way feedparser's own test
`wellformed/rss/entity_in_doctype.xml` does (`<!ENTITY id "tag:example.com,">`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import defusedxml.ElementTree
import feedparser
import pytest

from aggregator.errors import ParseError
from aggregator.ingest import parse
from tests.conftest import toml_config
from tests.feedserver import FeedServer

FEED = Path(__file__).parent / "feeds" / "entity-in-doctype.xml"


def rss(prolog: str, title: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n{prolog}<rss version="2.0"><channel><title>t</title>'
        f"<item><guid>g</guid><title>{title}</title></item></channel></rss>"
    ).encode()


def test_literal_entities_read_as_feedparser_reads_them() -> None:
    body = FEED.read_bytes()
    feed = parse.parse(body)
    expected = feedparser.parse(body)
    assert not expected.bozo
    assert [e.guid for e in feed.entries] == [e.id for e in expected.entries]
    assert feed.entries[0].guid == "tag:news.example.org,2026-03-02:/world/pakistan-russia-energy"
    assert (
        feed.entries[1].title == "News Example Org explains: the UN's food warning for South Asia"
    )
    assert feed.title == "News Example Org - World"
    assert feed.entries[0].summary == "Reported by News Example Org\xa0staff in Islamabad."
    assert feed.warning is None


@pytest.mark.parametrize("newline", ["\n", ""])
def test_a_long_literal_referenced_a_few_times_passes(newline: str) -> None:
    value = "Copyright 2026 News Example Org. All rights reserved." * 20
    prolog = f'<!DOCTYPE rss [{newline}<!ENTITY c "{value}">{newline}]>\n'
    body = rss(prolog, "Story &c;")
    assert len(parse.parse(body).entries) == 1


@pytest.mark.parametrize(
    ("prolog", "title", "refusal"),
    [
        ('<!DOCTYPE rss [<!ENTITY a "{}">]>\n'.format("A" * 64), "&a;" * 100_000, "expand to"),
        ('<!DOCTYPE rss [\n<!ENTITY a "{}">\n]>\n'.format("A" * 1000), "&a;" * 5000, "expand to"),
        ('<!DOCTYPE rss [<!ENTITY a "x"><!ENTITY b "&a;&a;">]>\n', "&b;", "other entities"),
        ('<!DOCTYPE rss [<!ENTITY a "<b>x</b>">]>\n', "&a;", "markup"),
        ('<!DOCTYPE rss [<!ENTITY a SYSTEM "file:///etc/passwd">]>\n', "&a;", "external"),
        ('<!DOCTYPE rss [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x"> %p;]>\n', "x", "parameter"),
    ],
    ids=["quadratic", "quadratic-multiline", "nested", "markup", "external", "parameter"],
)
def test_bombs_and_external_entities_are_still_refused(
    prolog: str, title: str, refusal: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ParseError, match=f"refused: DOCTYPE declares .*{refusal}"):
        parse.parse(rss(prolog, title))
    assert time.monotonic() - started < 5


def test_poll_and_export_a_feed_with_literal_entities(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.add("/world.xml", FEED.read_bytes(), content_type="application/rss+xml")
        config = tmp_path / "aggregator.toml"
        topics = [{"slug": "pk", "title": "Pakistan", "query": "pakistan AND moscow"}]
        config.write_text(toml_config([("world", server.url("/world.xml"))], topics))
        env = dict(os.environ, AGGREGATOR_CONFIG=str(config))

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "aggregator", *args],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=120,
            )

        polled = run("poll")
        assert polled.returncode == 0 and "refused" not in polled.stdout, polled.stdout
        status = run("status").stdout
    assert "refused" not in status
    items = json.loads(run("export", "pk", "--format", "json").stdout)["items"]
    assert [i["title"] for i in items] == ["Pakistan and Russia sign an energy deal in Moscow"]
    atom = defusedxml.ElementTree.fromstring(run("export", "pk", "--format", "atom").stdout)
    rss_ = defusedxml.ElementTree.fromstring(run("export", "pk", "--format", "rss").stdout)
    text = json.dumps(items) + str(defusedxml.ElementTree.tostring(atom, "unicode"))
    text += defusedxml.ElementTree.tostring(rss_, "unicode")
    assert "Reported by News Example Org" in text
    assert "&outlet;" not in text and "&amp;outlet;" not in text
