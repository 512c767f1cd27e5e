"""The shipped config: it loads, every feed in it is a sound, documented URL, and its
Pakistan–Russia topic catches the story this project exists for, in the three scripts
the region writes it in."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aggregator import config
from aggregator.ingest import normalize, parse, prepare
from aggregator.match import topics
from tests.conftest import toml_config
from tests.feedserver import FeedServer
from tests.test_cli import aggregator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config" / "aggregator.toml"
DOC = ROOT / "docs" / "default-feeds.md"
SEED = Path(__file__).resolve().parent / "feeds" / "pak-russia-story.xml"
SEED_TITLE = "Pak-Russia Relationship: President Putin may visit Pakistan soon"


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.load(DEFAULT)


@pytest.fixture(scope="module")
def topic(cfg: config.Config) -> prepare.TopicMatcher:
    return next(m for m in prepare.compile_topics(cfg) if m.slug == "pakistan-russia")


# -- the feeds -------------------------------------------------------------------------------


def test_loads_with_the_regions_spread(cfg: config.Config) -> None:
    assert len(cfg.feeds) >= 20
    names = {f.name for f in cfg.feeds}
    # Pakistan (English and Urdu), India, Afghanistan, Russia (English and Russian),
    # Central Asia (Uzbek among them), the Gulf, the wire services
    for name in ("dawn", "bbc-urdu", "the-hindu", "khaama", "tass", "interfax", "kun-uz"):
        assert name in names
    for name in ("al-jazeera", "gulf-news", "anadolu"):
        assert name in names


def test_every_url_is_well_formed_https_and_unique(cfg: config.Config) -> None:
    seen: dict[str, str] = {}
    for feed in cfg.feeds:
        parts = urlsplit(feed.url)
        assert parts.scheme == "https", feed.name
        assert parts.hostname and "." in parts.hostname, feed.name
        assert parts.hostname == parts.hostname.lower(), feed.name
        assert not parts.username and not parts.password and not parts.fragment, feed.name
        assert feed.url == feed.url.strip() and not re.search(r"\s", feed.url), feed.name
        assert feed.url.isascii(), feed.name
        # the same feed twice under two spellings (www., a trailing slash) is still a repeat
        key = parts.hostname.removeprefix("www.") + parts.path.rstrip("/") + "?" + parts.query
        assert key not in seen, f"{feed.name} repeats {seen.get(key)}"
        seen[key] = feed.name


def test_every_feed_has_a_readable_name_and_title(cfg: config.Config) -> None:
    for feed in cfg.feeds:
        # words of letters or digits joined by single hyphens: "times-of-central-asia"
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", feed.name), feed.name
        assert len(feed.name) <= 30, feed.name
        assert feed.title and feed.title.strip() == feed.title, feed.name


def test_no_known_dead_or_moved_feed_is_back(cfg: config.Config) -> None:
    urls = {f.url for f in cfg.feeds}
    for dead in (
        "https://english.news.cn/rss/worldrss.xml",  # frozen since 2018
        "https://kun.uz/en/news/rss",  # English paths answer 404
        "https://akipress.com/rss/news_en.rss",  # attested in one author's files only
        "https://gulfnews.com/feed",  # redirects to stories.rss
    ):
        assert dead not in urls


def test_every_feed_is_documented_with_its_evidence(cfg: config.Config) -> None:
    """docs/default-feeds.md names each feed, its URL, language and a dated source."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `([a-z0-9-]+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    for feed in cfg.feeds:
        assert feed.name in rows, f"{feed.name} is not in {DOC.name}"
        row = rows[feed.name]
        assert f"`{feed.url}`" in row, feed.name
        assert re.search(r"English|Urdu|Russian|Uzbek|Persian|Pashto", row), feed.name
        assert re.search(r"20\d\d-\d\d-\d\d", row) or "attested only in configs" in row, feed.name


# -- the topics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Пакистан и Россия подписали соглашение о газопроводе", "ru"),
        ("Премьер Пакистана встретился с президентом России в Москве", "ru"),
        ("پاکستان اور روس کے درمیان تجارتی معاہدہ", "ur"),
        ("Pak-Russia ties: a new chapter", "en"),
        ("Islamabad hosts Kremlin envoy", "en"),
    ],
)
def test_matches_in_each_script(topic: prepare.TopicMatcher, text: str, language: str) -> None:
    assert topic.query.matches(topics.document(text, "", language))


@pytest.mark.parametrize(
    "text",
    ["Pakistan beat India at cricket", "Россия и Китай провели переговоры", "روسی تیل کی قیمت"],
)
def test_does_not_match_one_side_only(topic: prepare.TopicMatcher, text: str) -> None:
    assert topic.query.matches(topics.document(text, "")) is None


def test_catches_the_seed_story(topic: prepare.TopicMatcher) -> None:
    parsed = parse.parse(SEED.read_bytes())
    [entry] = [normalize.normalize(e, "seed", datetime.now(UTC)) for e in parsed.entries]
    terms = topic.query.matches(topics.document(entry.title, entry.text, parsed.language))
    assert terms is not None
    # The headline alone says only "Pak-Russia" and "Putin": the aliases carry it.
    assert topic.query.matches(topics.document(entry.title, "")) is not None


def test_the_default_topics_publish_the_seed_story(tmp_path: Path) -> None:
    """The shipped aliases and topics, polling the seed story from a local server: the
    Pakistan–Russia topic publishes it in every format, a topic it is not about does not."""
    shipped = tomllib.loads(DEFAULT.read_text(encoding="utf-8"))
    aliases = "[aliases]\n" + "".join(
        f"{name} = [{', '.join(_quote(t) for t in terms)}]\n"
        for name, terms in shipped["aliases"].items()
    )
    with FeedServer() as server:
        server.add("/seed.xml", SEED.read_bytes())
        (tmp_path / "aggregator.toml").write_text(
            toml_config([("seed", server.url("/seed.xml"))], shipped["topics"], extra=aliases),
            encoding="utf-8",
        )
        poll = aggregator("poll", cwd=tmp_path)
        assert poll.returncode == 0, poll.stderr
    for fmt in ("atom", "rss", "json"):
        out = aggregator("export", "pakistan-russia", "--format", fmt, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert SEED_TITLE in out.stdout, fmt
    central_asia = aggregator("export", "central-asia", "--format", "json", cwd=tmp_path)
    assert central_asia.returncode == 0 and SEED_TITLE not in central_asia.stdout


def _quote(term: str) -> str:
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'
