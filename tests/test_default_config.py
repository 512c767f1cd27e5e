"""The shipped config: it loads, and its Pakistan–Russia topic catches the story this
project exists for, in the three scripts the region writes it in."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator import config
from aggregator.ingest import normalize, parse, prepare
from aggregator.match import topics

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "corpus" / "seed" / "pak-russia-story.xml"


@pytest.fixture(scope="module")
def topic() -> prepare.TopicMatcher:
    cfg = config.load(ROOT / "config" / "aggregator.toml")
    assert len(cfg.feeds) >= 20
    return next(m for m in prepare.compile_topics(cfg) if m.slug == "pakistan-russia")


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
    if not SEED.is_file():
        pytest.skip(f"the shared seed story is not here ({SEED}): it exists only in CI")
    parsed = parse.parse(SEED.read_bytes())
    [entry] = [normalize.normalize(e, "seed", datetime.now(UTC)) for e in parsed.entries]
    terms = topic.query.matches(topics.document(entry.title, entry.text, parsed.language))
    assert terms is not None
    # The headline alone says only "Pak-Russia" and "Putin": the aliases carry it.
    assert topic.query.matches(topics.document(entry.title, "")) is not None
