"""The candidate stage's budget through the product: with a desk's look-alikes
stored by the hundred, a new entry is compared with its copies, not with them."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import pytest

from aggregator.match import dedupe
from tests.conftest import toml_config
from tests.feedserver import FeedServer
from tests.test_cli import aggregator
from tests.test_clustering import _rss, _stories

TEMPLATE = "Weather in {} on Tuesday: showers and strong winds"
LOOKALIKES = 150
_SYLLABLES = "ka ri to mu sel van dor pe li qua zan ber tis nam gor fe hu bal kor min".split()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(3, 4)))


def _lead(rng: random.Random, place: str) -> str:
    """A forecast of its own: the desk's wording plus words no other item uses."""
    own = " ".join(_word(rng) for _ in range(25))
    return f"<p>Forecasters said rain would reach {place} by noon. {own}.</p>"


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """A wire desk's `LOOKALIKES` forecasts, one a day's Karachi one; then another
    desk's retelling of that one and a forecast for a city the wire did not cover."""
    tmp = tmp_path_factory.mktemp("budget")
    rng = random.Random(7)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30)
    places = sorted({_word(rng).capitalize() for _ in range(LOOKALIKES * 2)})[:LOOKALIKES]
    wire = [
        (f"w{n}", TEMPLATE.format(p), _lead(rng, p), start + timedelta(minutes=10 * n))
        for n, p in enumerate(places)
    ]
    karachi = (
        "<p>Heavy rain flooded streets in Karachi's Saddar and Clifton on Tuesday, the "
        "Pakistan Meteorological Department said, warning fishermen off the Arabian Sea "
        "and closing schools in Korangi until Thursday.</p>"
    )
    wire.append(("karachi", TEMPLATE.format("Karachi"), karachi, start + timedelta(hours=26)))
    retold = (
        "<p>The Pakistan Meteorological Department warned fishermen off the Arabian Sea "
        "after heavy rain flooded streets in Saddar and Clifton; schools in Korangi stay "
        "closed until Thursday, Karachi officials said.</p>"
    )
    at = start + timedelta(hours=27)
    desk = [
        ("karachi-retold", TEMPLATE.format("Karachi"), retold, at),
        ("quetta", TEMPLATE.format("Quetta"), _lead(rng, "Quetta"), at),
    ]
    with FeedServer() as server:
        base = server.base_url
        server.add("/wire.xml", _rss(base, wire))
        server.add("/desk.xml", _rss(base, desk))
        (tmp / "aggregator.toml").write_text(
            toml_config(
                [
                    {"name": "wire", "url": server.url("/wire.xml")},
                    {"name": "desk", "url": server.url("/desk.xml")},
                ],
                [{"slug": "all", "title": "All", "limit": 1000}],
            ),
            encoding="utf-8",
        )
        r1 = aggregator("poll", "--feed", "wire", cwd=tmp)
        r2 = aggregator("--log-level", "debug", "poll", "--feed", "desk", cwd=tmp)
        assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
        yield tmp, base, r2.stderr


def test_lookalikes_are_not_compared_and_the_copy_joins(
    polled: tuple[Path, str, str],
) -> None:
    tmp, base, log = polled
    compared = {
        m.group(1): int(m.group(2)) for m in re.finditer(r"desk: '([^']*)': (\d+) candidates", log)
    }
    # every stored forecast shares five of the template's words with each new one;
    # only the copy shares a rarer key (the city, the lead's names)
    assert set(compared) == {TEMPLATE.format("Karachi"), TEMPLATE.format("Quetta")}, log
    assert compared[TEMPLATE.format("Karachi")] <= dedupe.COMMON_CANDIDATES + 1
    assert compared[TEMPLATE.format("Quetta")] <= dedupe.COMMON_CANDIDATES
    r = aggregator("export", "all", "--format", "json", cwd=tmp)
    assert r.returncode == 0, r.stderr
    feed = json.loads(r.stdout)
    story = _stories(feed, base)
    assert story["karachi"] == story["karachi-retold"]
    assert story["quetta"] != story["karachi"]
    assert len(set(story.values())) == LOOKALIKES + 2  # nothing else merged
    atom = aggregator("export", "all", "--format", "atom", cwd=tmp)
    rss = aggregator("export", "all", "--format", "rss", cwd=tmp)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert len(ElementTree.fromstring(atom.stdout).findall("a:entry", ns)) == len(feed["items"])
    assert len(ElementTree.fromstring(rss.stdout).findall("channel/item")) == len(feed["items"])


def test_template_words_weigh_little() -> None:
    """Keys many stored entries hold are weighed down and marked common (their
    candidates are bounded); in a young store nothing is common yet."""
    df = {"weather": 400, "tuesday": 900, "karachi": 3, "saddar": 1}
    plan = {k.key: k for k in dedupe.key_plan(list(df), frozenset(df), df, 10_000)}
    assert plan["karachi"].rare and plan["saddar"].rare
    assert not plan["weather"].rare and not plan["tuesday"].rare
    assert plan["saddar"].weight > plan["karachi"].weight > plan["weather"].weight
    young = dedupe.key_plan(["weather", "tuesday"], frozenset(), {"weather": 20}, 40)
    assert all(k.rare for k in young)  # under COMMON_MIN holders nothing is common
