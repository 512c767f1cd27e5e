"""The near-duplicate story decision: hand-made cases in each language, and the measured targets."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator import dedupe, models

T0 = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=48)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "dedup"


def entry(title: str, body: str = "", feed: str = "new", at: datetime = T0) -> models.Entry:
    text = f"{title}\n{body}" if body else title
    return models.Entry(
        feed=feed,
        key=title,
        guid=None,
        link=None,
        canonical_link=None,
        title=title,
        summary_html="",
        content_html="",
        text=text,
        author=None,
        published=at,
        content_hash=title,
    )


def cand(
    story: int, title: str, body: str = "", feeds: tuple[str, ...] = ("old",), at: datetime = T0
) -> dedupe.Candidate:
    text = f"{title}\n{body}" if body else title
    return dedupe.Candidate(story, frozenset(feeds), title, text, at - timedelta(hours=1))


def joins(new: str, old: str, new_body: str = "", old_body: str = "") -> bool:
    e = entry(new, new_body)
    c = cand(7, old, old_body)
    shared = set(dedupe.index_keys(e.title, e.text)) & set(dedupe.index_keys(c.title, c.text))
    assert shared, "a near-duplicate must share an index key to be fetched at all"
    return dedupe.decide(e, [c], now=T0, window=WINDOW) == 7


SAME = [
    # English: a rewrite of the same wire story
    (
        "Sbarro files for bankruptcy protection again",
        "Pizza chain Sbarro files for bankruptcy again",
    ),
    ("Flappy Bird creator says the game could return", "Flappy Bird may return, says its creator"),
    # Russian: inflected forms must meet after stemming
    (
        "Всемирный банк выделит Украине 150 млн долларов",
        "Всемирный банк выделил Украине 150 миллионов долларов",
    ),
    (
        "Жители Клинцов восхищаются новым сквером Щорса",
        "Жители брянских Клинцов восхищаются новым сквером",
    ),
    # Urdu: the same words typed with Arabic letters (kaf, yeh) and a vowel mark
    (
        "پاکستان اور روس کے درمیان تجارتی معاہدے پر دستخط",
        "پاکستان اور روس كے درميان تجارتي مُعاہدے پر دستخط ہو گئے",
    ),
]

DIFFERENT = [
    ("China stocks sink on weak export data", "Apple releases iOS 7.1 with CarPlay"),
    ("Stacy Keibler marries Jared Pobre", "Lindsay Lohan docu-series premieres on OWN"),
    ("Прогноз погоды на выходные в Москве", "Всемирный банк выделит Украине 150 млн долларов"),
    ("ЦИК Казахстана снял полномочия с депутата", "Новым председателем сената стал Ашимбаев"),
    ("کراچی میں شدید بارش سے نظام زندگی مفلوج", "پاکستان اور روس کے درمیان تجارتی معاہدے پر دستخط"),
]


@pytest.mark.parametrize(("new", "old"), SAME)
def test_same_story_joins(new: str, old: str) -> None:
    assert joins(new, old)


@pytest.mark.parametrize(("new", "old"), DIFFERENT)
def test_different_stories_stay_apart(new: str, old: str) -> None:
    e = entry(new)
    assert dedupe.decide(e, [cand(7, old)], now=T0, window=WINDOW) is None


def test_article_text_joins_rewritten_headlines() -> None:
    body = (
        "President Donald Trump visited Walter Reed National Military Medical Center on "
        "Saturday for tests that the White House described as part of his annual physical "
        "examination, which was not on his public schedule."
    )
    other = (
        "Donald Trump went to Walter Reed National Military Medical Center on Saturday: the "
        "White House said the tests were part of his annual physical, not on the schedule."
    )
    assert joins(
        "Trump undergoes health check-up", "White House: medical tests for president", other, body
    )
    unrelated = (
        "The Hong Kong music festival Clockenflap was cancelled on Saturday because of the "
        "protests, the organisers said, refunding every ticket holder."
    )
    e = entry("Trump undergoes health check-up", other)
    assert (
        dedupe.decide(e, [cand(7, "Festival cancelled", unrelated)], now=T0, window=WINDOW) is None
    )


def test_same_feed_never_joined() -> None:
    title = "Sbarro files for Chapter 11 bankruptcy protection again"
    e = entry(title, feed="dawn")
    assert dedupe.decide(e, [cand(3, title, feeds=("dawn", "tass"))], now=T0, window=WINDOW) is None
    # ... but another story of the same event from other outlets is still joinable
    both = [cand(3, title, feeds=("dawn",)), cand(4, title, feeds=("tass",))]
    assert dedupe.decide(e, both, now=T0, window=WINDOW) == 4


def test_outside_window_never_joined() -> None:
    title = "Sbarro files for Chapter 11 bankruptcy protection again"
    old = dedupe.Candidate(5, frozenset({"old"}), title, title, T0 - timedelta(hours=49))
    assert dedupe.decide(entry(title), [old], now=T0, window=WINDOW) is None
    assert dedupe.decide(entry(title), [old], now=T0, window=timedelta(hours=50)) == 5
    # a feed's future date does not stretch the window: `now` bounds it
    future = entry(title, at=T0 + timedelta(days=30))
    recent = dedupe.Candidate(6, frozenset({"old"}), title, title, T0 - timedelta(hours=1))
    assert dedupe.decide(future, [recent], now=T0, window=WINDOW) == 6


def test_decision_is_deterministic() -> None:
    e = entry("Flappy Bird creator says the game could return")
    cands = [
        cand(9, "Flappy Bird creator says game could return to App Store", feeds=("a",)),
        cand(4, "Flappy Bird creator says the game could return", feeds=("b",)),
        cand(2, "Flappy Bird may come back, creator says the game could return", feeds=("c",)),
        cand(8, "Stocks slip on weak China data", feeds=("d",)),
    ]
    first = dedupe.decide(e, cands, now=T0, window=WINDOW)
    assert first is not None
    rng = random.Random(1)
    for _ in range(20):
        rng.shuffle(cands)
        assert dedupe.decide(e, cands, now=T0, window=WINDOW) == first


def test_story_with_more_supporting_members_wins() -> None:
    e = entry("Flappy Bird creator considers bringing game back to App Store")
    cands = [
        cand(1, "Flappy Bird creator considers bringing back game", feeds=("a",)),
        cand(2, "Flappy Bird creator considers App Store return", feeds=("b", "c")),
        cand(2, "Creator considers bringing Flappy Bird back to App Store", feeds=("b", "c")),
    ]
    assert dedupe.decide(e, cands, now=T0, window=WINDOW) == 2


def test_keys_and_signature() -> None:
    title = "The Bank of England says the pound and the euro are stable"
    keys = dedupe.index_keys(
        title, title + "\n" + "word " * 500 + " ".join(f"w{i}" for i in range(99))
    )
    assert 0 < len(keys) <= dedupe.MAX_KEYS
    assert not {"the", "of", "and", "say"} & set(keys)
    assert keys == dedupe.index_keys(
        title, title + "\n" + "word " * 500 + " ".join(f"w{i}" for i in range(99))
    )
    sig = dedupe.signature(title, title + "\nMark Carney spoke on Monday.")
    assert dedupe.Signature.from_json(json.loads(json.dumps(sig.to_json()))) == sig
    assert dedupe.terms(title, title) == set(sig.title)
    # folding: NFKC, case, ё, Arabic-script letter variants
    assert dedupe.tokens("ＡＰＰＬＥ") == dedupe.tokens("apple")
    assert dedupe.tokens("Ёлка") == dedupe.tokens("елка")
    assert dedupe.tokens("تجارتي") == dedupe.tokens("تجارتی")
    assert dedupe.tokens("٢٠٢٤") == ["2024"]


def _bench() -> Any:
    path = Path(__file__).resolve().parents[1] / "bench" / "dedup_eval.py"
    spec = importlib.util.spec_from_file_location("dedup_eval", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("dedup_eval", mod)
    spec.loader.exec_module(mod)
    return mod


needs_data = pytest.mark.skipif(
    not (SHARED / "dev.jsonl").exists(), reason=f"labelled dedup data absent ({SHARED})"
)


@needs_data
def test_dev_set_meets_targets() -> None:
    ev = _bench()
    items = ev.load_dev(SHARED / "dev.jsonl")
    gold = {it["id"]: it["cluster"] for it in items}
    items.sort(key=lambda it: (it["published"], it["id"]))
    rep = ev.cluster_report(ev.cluster_items(items), gold)
    assert rep["pairwise_p"] >= 0.98
    assert rep["bcubed_f1"] >= 0.50


@needs_data
def test_pairs_accuracy_floor() -> None:
    ev = _bench()
    pairs = [p for f in sorted((SHARED / "pairs").glob("*.tsv")) for p in ev.load_pairs(f)]
    acc, prec, _ = ev.pair_scores(ev.judge_pairs(pairs), [p[4] for p in pairs])
    # the measured level today (0.853, precision 0.968): a regression guard
    assert acc >= 0.85
    assert prec >= 0.95


@needs_data
@pytest.mark.xfail(strict=True, reason="pairs accuracy is 0.853, the target 0.90 is not met yet")
def test_pairs_accuracy_target() -> None:
    ev = _bench()
    pairs = [p for f in sorted((SHARED / "pairs").glob("*.tsv")) for p in ev.load_pairs(f)]
    acc, _, _ = ev.pair_scores(ev.judge_pairs(pairs), [p[4] for p in pairs])
    assert acc >= 0.90
