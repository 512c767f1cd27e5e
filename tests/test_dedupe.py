"""The near-duplicate story decision: hand-made cases in each language, and the measured targets."""

from __future__ import annotations

import importlib.util
import json
import pickle
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator import models
from aggregator.match import dedupe
from tests.conftest import entry as make_entry

T0 = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=48)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "dedup"


def entry(title: str, body: str = "", feed: str = "new", at: datetime = T0) -> models.Entry:
    return make_entry(title, body, feed, at=at)


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
    return dedupe.decide(e, [c], now=T0, window=WINDOW).story == 7


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
    assert dedupe.decide(e, [cand(7, old)], now=T0, window=WINDOW).story is None


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
        dedupe.decide(e, [cand(7, "Festival cancelled", unrelated)], now=T0, window=WINDOW).story
        is None
    )


def test_same_feed_never_joined() -> None:
    title = "Sbarro files for Chapter 11 bankruptcy protection again"
    e = entry(title, feed="dawn")
    assert (
        dedupe.decide(e, [cand(3, title, feeds=("dawn", "tass"))], now=T0, window=WINDOW).story
        is None
    )
    # ... but another story of the same event from other outlets is still joinable
    both = [cand(3, title, feeds=("dawn",)), cand(4, title, feeds=("tass",))]
    assert dedupe.decide(e, both, now=T0, window=WINDOW).story == 4


def test_outside_window_never_joined() -> None:
    title = "Sbarro files for Chapter 11 bankruptcy protection again"
    old = dedupe.Candidate(5, frozenset({"old"}), title, title, T0 - timedelta(hours=49))
    assert dedupe.decide(entry(title), [old], now=T0, window=WINDOW).story is None
    assert dedupe.decide(entry(title), [old], now=T0, window=timedelta(hours=200)).story == 5
    # a feed's future date does not stretch the window: `now` bounds it
    future = entry(title, at=T0 + timedelta(days=30))
    recent = dedupe.Candidate(6, frozenset({"old"}), title, title, T0 - timedelta(hours=1))
    assert dedupe.decide(future, [recent], now=T0, window=WINDOW).story == 6


def test_distance_in_time_needs_more_similarity() -> None:
    # the same headline a day and a half later is the next edition of a recurring item
    title = "Stocks slip on weak China data"
    for hours, joined in ((2, True), (12, True), (36, False)):
        old = cand(5, title, at=T0 - timedelta(hours=hours - 1))
        assert (dedupe.decide(entry(title), [old], now=T0, window=WINDOW).story == 5) is joined, (
            hours
        )
    # a rewrite (fewer shared words) must follow its story sooner
    new, rewrite = "Flappy Bird creator says the game could return", "Flappy Bird may return"
    assert dedupe.decide(entry(new), [cand(5, rewrite)], now=T0, window=WINDOW).story == 5
    late = cand(5, rewrite, at=T0 - timedelta(hours=29))
    assert dedupe.decide(entry(new), [late], now=T0, window=WINDOW).story is None
    # the fading follows the configured window: a wider window keeps matches longer
    old = cand(5, title, at=T0 - timedelta(hours=29))
    assert dedupe.decide(entry(title), [old], now=T0, window=WINDOW).story is None
    assert dedupe.decide(entry(title), [old], now=T0, window=2 * WINDOW).story == 5
    # a zero window compares only entries of the same instant, and does not fail
    same = dedupe.Candidate(5, frozenset({"old"}), title, title, T0)
    assert dedupe.decide(entry(title), [same], now=T0, window=timedelta(0)).story == 5


def test_decision_is_deterministic() -> None:
    e = entry("Flappy Bird creator says the game could return")
    cands = [
        cand(9, "Flappy Bird creator says game could return to App Store", feeds=("a",)),
        cand(4, "Flappy Bird creator says the game could return", feeds=("b",)),
        cand(2, "Flappy Bird may come back, creator says the game could return", feeds=("c",)),
        cand(8, "Stocks slip on weak China data", feeds=("d",)),
    ]
    first = dedupe.decide(e, cands, now=T0, window=WINDOW).story
    assert first is not None
    rng = random.Random(1)
    for _ in range(20):
        rng.shuffle(cands)
        assert dedupe.decide(e, cands, now=T0, window=WINDOW).story == first


def test_story_with_more_supporting_members_wins() -> None:
    e = entry("Flappy Bird creator considers bringing game back to App Store")
    cands = [
        cand(1, "Flappy Bird creator considers bringing back game", feeds=("a",)),
        cand(2, "Flappy Bird creator considers App Store return", feeds=("b", "c")),
        cand(2, "Creator considers bringing Flappy Bird back to App Store", feeds=("b", "c")),
    ]
    assert dedupe.decide(e, cands, now=T0, window=WINDOW).story == 2


def test_same_words_other_figures_stay_apart() -> None:
    # a recurring item: the forecast for another day, not a rewrite of this one
    body = "Днём ожидается до +5, ночью до -2, ветер юго-западный, 5-7 метров в секунду."
    e = entry("Прогноз погоды на 16 ноября", body)
    c = cand(7, "Прогноз погоды на 8 ноября", body)
    assert dedupe.decide(e, [c], now=T0, window=WINDOW).story is None
    e = entry("Прогноз погоды на 8 ноября", body.replace("+5", "+4"))
    assert dedupe.decide(e, [c], now=T0, window=WINDOW).story == 7


def test_headline_reported_in_the_other_article_joins() -> None:
    # headlines share one word; each headline's names are in the other's text
    new_body = (
        "Кинотеатры сети «Каро» покажут фильмы из репертуара «Соловья», который "
        "закрывается в конце месяца, сообщили в пресс-службе сети."
    )
    old_body = (
        "Московский кинотеатр «Соловей» закрывается; его репертуар, фестивальное и "
        "авторское кино, перенесут в кинотеатры сети «Каро», сообщили в компании. "
        "Здание на Красной Пресне построили в девяностых; арендатор не продлил договор "
        "с владельцем, и в зале на четыреста мест откроется ресторан."
    )
    e = entry("«Соловей» переедет в кинотеатры «Каро»", new_body)
    c = cand(7, "Репертуар закрывающегося «Соловья» перенесут в сеть «Каро»", old_body)
    assert dedupe.decide(e, [c], now=T0, window=WINDOW).story == 7
    # ...which the cosine of the two texts alone would not have joined
    a, b = dedupe.signature(e.title, e.text), dedupe.signature(c.title, c.text)
    ones = dict.fromkeys(a.title | a.lead | b.title | b.lead, 1.0)
    assert dedupe._cosine(a.title | a.lead, b.title | b.lead, ones) < dedupe.TEXT_THRESHOLD
    # the same names in an article about something else: its headline is not reported
    other = cand(
        8,
        "Сеть «Каро» повышает цены на билеты",
        "С декабря билеты в кинотеатрах сети «Каро» подорожают на десять процентов.",
    )
    assert dedupe.decide(e, [other], now=T0, window=WINDOW).story is None


def test_two_word_headline_found_in_an_article_is_no_evidence() -> None:
    # the teaser's two words are in the article, and the article's cast and series in
    # the teaser: containment would join them, but two words name too little
    body = (
        "Trackers returns this Sunday. Filming moved from Cape Town to the Karoo, where "
        "temperatures passed forty degrees; the producers hired local crews, rebuilt a "
        "farmhouse, trained horses and wrote two extra episodes after the broadcaster "
        "ordered a longer run. Critics praised the pilot's photography and its score."
    )
    e = entry("Trackers this Sunday", "A teaser: the cast of the series.")
    c = cand(7, "Cast of the series talks about the desert shoot", body)
    a, b = dedupe.signature(e.title, e.text), dedupe.signature(c.title, c.text)
    assert len(a.title) < dedupe.CROSS_MIN_TITLE and a.title <= b.title | b.lead
    assert dedupe.decide(e, [c], now=T0, window=WINDOW).story is None


def test_russian_endings_meet() -> None:
    assert dedupe.tokens("сладкого") == dedupe.tokens("сладких")
    assert dedupe.tokens("сладкого") != dedupe.tokens("сахара")


def test_inflected_stopwords_are_not_terms() -> None:
    # "getting" and "updates" say no more than "get" and "update", listed as stopwords
    assert dedupe.tokens("BioWare getting Anthem updates, reported") == dedupe.tokens(
        "BioWare Anthem"
    )
    assert dedupe.tokens("Anthem") == ["anthem"]


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
    # the stored form round-trips, in every script
    for t, body in ((title, "Mark Carney spoke on Monday."), ("Путин и Шариф: 8 ноября", "")):
        sig = dedupe.signature(t, t + "\n" + body)
        back = dedupe.Signature.unpack(sig.pack())
        assert back == sig and back.lead == sig.lead and back.has_text == bool(body)
        assert (back.title, back.everything, back.cased) == (sig.title, sig.everything, sig.cased)
        # a parse process sends it as its stored form, and it arrives as decoded
        sent = pickle.dumps(sig)
        assert sig.pack().encode() in sent and len(sent) < len(sig.pack().encode()) + 150
        arrived = pickle.loads(sent)
        assert arrived == sig and arrived.pack() == sig.pack() and arrived.lead == sig.lead
    assert dedupe.Signature.unpack(dedupe.signature("", "").pack()) == dedupe.signature("", "")
    sig = dedupe.signature(title, title + "\nMark Carney spoke on Monday.")
    # the headline's numbers are among its entities, single digits included
    assert {"8", "10"} <= dedupe.signature("Q2 results: 8 of 10", "").entities
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
    not (SHARED / "dev.jsonl").exists(),
    reason=f"the labelled dedup benchmark data is not here ({SHARED}): a benchmark corpus, "
    "not shipped with the tests, so these measured targets run only where it is",
)


@needs_data
def test_dev_set_meets_targets() -> None:
    ev = _bench()
    items = ev.load_dev(SHARED / "dev.jsonl")
    gold = {it["id"]: it["cluster"] for it in items}
    items.sort(key=lambda it: (it["published"], it["id"]))
    rep = ev.cluster_report(ev.cluster_items(items), gold)
    # the target: B-cubed F1 at least 0.60 at pairwise precision 0.99
    assert rep["pairwise_p"] >= 0.99
    assert rep["bcubed_f1"] >= 0.60
    # ...and in orders the product may store them in (6h rounds, publishers shuffled)
    for seed in range(2):
        rep = ev.cluster_report(ev.cluster_items(ev.poll_order(items, seed)), gold)
        assert rep["pairwise_p"] >= 0.99, seed
        assert rep["bcubed_f1"] >= 0.60, seed


@needs_data
def test_pairs_meet_target() -> None:
    ev = _bench()
    predicted: list[bool] = []
    gold: list[bool] = []
    # as the bench does: document frequencies within each file
    for f in sorted((SHARED / "pairs").glob("*.tsv")):
        pairs = ev.load_pairs(f)
        predicted += ev.judge_pairs(pairs)
        gold += [p[4] for p in pairs]
    acc, prec, _ = ev.pair_scores(predicted, gold)
    assert acc >= 0.90
    # measured 0.902: the hard negatives here are same-subject stories
    assert prec >= 0.90


def test_through_the_product_clusters_as_in_process() -> None:
    """Served feeds, the real poll and store, the published topic feed: the same decisions."""
    ev = _bench()
    at = datetime(2014, 3, 10, 17, 0, tzinfo=UTC)
    rows = [
        ("a1", "Reuters", "Sbarro files for Chapter 11 bankruptcy protection again", 0),
        ("a2", "CNN Money", "Pizza chain Sbarro files for bankruptcy again", 1),
        ("a3", "Forbes", "Sbarro files for bankruptcy protection for the second time", 2),
        ("b1", "Reuters", "Apple releases iOS 7.1 with CarPlay", 3),
        ("b2", "The Verge", "Apple releases iOS 7.1 with CarPlay and Siri fixes", 4),
        ("c1", "CNN Money", "China stocks sink on weak export data", 5),
    ]
    items = [
        ev.Item(i, pub, title, "", at + timedelta(minutes=20 * n)) for i, pub, title, n in rows
    ]
    pred = ev.product_clusters(items, round_hours=1.0)
    gold = {i: i[0] for i, *_ in rows}
    expected = ev.cluster_items(
        [
            {
                "id": it.id,
                "publisher": it.publisher,
                "title": it.title,
                "published": it.published.isoformat(),
            }
            for it in items
        ]
    )
    assert ev.pairwise(pred, expected) == (1.0, 1.0, 1.0)
    assert ev.pairwise(pred, gold)[0] == 1.0
    assert pred["a1"] == pred["a2"] == pred["a3"] and pred["b1"] == pred["b2"]
    assert len({pred["a1"], pred["b1"], pred["c1"]}) == 3


def test_analyze_gives_signature_and_keys_in_one_pass() -> None:
    title = "Pakistan and Russia sign a wheat deal in Moscow"
    text = title + " " + " ".join(f"word{i} filler{i}" for i in range(400))
    sig, keys = dedupe.analyze(title, text)
    assert sig == dedupe.signature(title, text)
    assert keys == dedupe.index_keys(title, text)
    # every title term is a key, then the first lead terms, never more than MAX_KEYS
    assert sig.title <= set(keys) and len(keys) <= dedupe.MAX_KEYS
    assert set(keys) - sig.title == {
        "word0",
        "filler0",
        "word1",
        "filler1",
        "word2",
        "filler2",
        "word3",
        "filler3",
        "word4",
        "filler4",
    }
    assert len(sig.lead) == dedupe.LEAD_TERMS
    assert sig.everything == sig.title | sig.lead


def test_candidates_are_looked_up_by_the_rarest_keys() -> None:
    """Common keys bring entries of other stories; the rare ones (names, places)
    find the near-duplicates. Among keys the counts cannot tell apart, the
    headline's come first."""
    title, lead = "Shehbaz Sharif meets Putin in Astana", "The two leaders spoke of gas " * 3
    sig, keys = dedupe.analyze(title, title + "\n" + lead + " ".join(f"w{i}" for i in range(40)))
    assert len(keys) > dedupe.QUERY_KEYS
    df = {k: 1000 for k in keys} | {"putin": 3, "astana": 1, "w4": 2}
    chosen = dedupe.query_keys(keys, sig.title, df)
    assert len(chosen) == dedupe.QUERY_KEYS
    assert chosen[:3] == ["astana", "w4", "putin"]
    assert "w6" not in chosen  # a common lead word is left out
    # a key no stored entry has cannot find a candidate: it goes last, not first
    chosen = dedupe.query_keys(keys, sig.title, df | {"w0": 0, "w1": 0, "shehbaz": 0})
    assert chosen[:3] == ["astana", "w4", "putin"]
    assert not {"w0", "w1", "shehbaz"} & set(chosen[:-3])
    # a young store: no counts at all, so every title term is asked before the lead's
    chosen = dedupe.query_keys(keys, sig.title, {})
    assert set(sig.title) <= set(chosen)
    assert chosen[: len(sig.title)] == sorted(sig.title)


# -- a story told twice, folded into one ----------------------------------------------------

SBARRO = [
    ("reuters", "Pizza-maker Sbarro filing for Chapter 11"),
    ("wsj", "Pizza-Make Sbarro Filing for Chapter 11"),
]


def _story(sid: int, rows: list[tuple[str, str]], minutes: int = 30) -> list[dedupe.Candidate]:
    feeds = frozenset(f for f, _ in rows)
    at = T0 - timedelta(minutes=minutes)
    return [dedupe.Candidate(sid, feeds, t, t, at) for _, t in rows]


def test_a_small_story_the_entry_also_joins_is_absorbed() -> None:
    """Forbes wrote "bankruptcy protection for the second time", too far from "filing
    for Chapter 11" to join; CNN's headline joins both, so Forbes' story is folded in."""
    small = _story(2, [("forbes", "Sbarro files for bankruptcy protection for the second time")])
    e = entry("Pizza chain Sbarro files for bankruptcy", feed="cnn")
    assert dedupe.decide(e, small, now=T0, window=WINDOW).story == 2  # it joins either alone
    found = dedupe.decide(e, _story(1, SBARRO) + small, now=T0, window=WINDOW)
    assert (found.story, found.absorbed) == (1, (2,))
    # a story of more than ABSORB_SIZE outlets is established: never folded in
    outlets = frozenset({"forbes"} | {f"desk{n}" for n in range(dedupe.ABSORB_SIZE)})
    large = [small[0]._replace(feeds=outlets)]
    found = dedupe.decide(e, _story(1, SBARRO) + large, now=T0, window=WINDOW)
    assert (found.story, found.absorbed) == (1, ())


def test_a_bridge_headline_naming_two_subjects_folds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A headline naming two subjects clears the threshold with a story of each; the
    stories' headlines have little in common (`ABSORB_PROFILE`), so both stay."""
    reunion = _story(
        1,
        [
            (f"f{n}", t)
            for n, t in enumerate(
                [
                    "Zac Efron wants High School Musical reunion",
                    "Zac Efron teases High School Musical reunion",
                    "Zac Efron up for a High School Musical reunion",
                    "High School Musical reunion? Zac Efron is in",
                ]
            )
        ],
    )
    chef = _story(2, [("film", "Favreau's Chef opens at SXSW")], minutes=20)
    e = entry("Zac Efron reunion and Favreau's Chef opens SXSW", feed="blog")
    assert dedupe.decide(e, chef, now=T0, window=WINDOW).story == 2
    assert dedupe.decide(e, reunion + chef, now=T0, window=WINDOW).absorbed == ()
    monkeypatch.setattr(dedupe, "ABSORB_PROFILE", 0.0)
    assert dedupe.decide(e, reunion + chef, now=T0, window=WINDOW).absorbed == (2,)


def test_a_lookalike_story_is_never_absorbed() -> None:
    """The entry joins Brest's forecast; Gomel's look-alike is barred, not folded in."""
    brest = _story(1, [("belta", "Прогноз погоды в Бресте на 17 мая")])
    gomel = _story(2, [("sb", "Прогноз погоды в Гомеле на 17 мая")])
    e = entry("Прогноз погоды в Бресте на 17 мая: дожди", feed="tut")
    found = dedupe.decide(e, brest + gomel, now=T0, window=WINDOW)
    assert (found.story, found.absorbed) == (1, ())


# -- texts that say which day they report on -------------------------------------------------

INDEX_A = (
    "Kazan worst among million-plus cities on the self-isolation index",
    "By 1 pm on 4 May Kazan had the lowest self-isolation score among Russia's cities of"
    " over a million people, 2.2 points, Yandex data showed; Chelyabinsk had 2.3.",
)
INDEX_B = (
    "Kazan last on the self-isolation index among million-plus cities",
    "Kazan came last among the cities of over a million people on the self-isolation"
    " index on 9 May, with 2.6 points by Yandex data; Samara had 2.8, Chelyabinsk 2.9.",
)


def test_texts_that_report_different_days_stay_apart() -> None:
    """A daily index: the same words, and each text says which day it is for."""
    (ta, xa), (tb, xb) = INDEX_A, INDEX_B
    assert not joins(tb, ta, xb, xa)
    # the same report on the same day joins: the rule is the days, not the words
    assert joins(tb, ta, xb.replace("9 May", "4 May"), xa)
    # a text that names no day is no evidence either way
    assert joins(tb, ta, xb.replace(" on 9 May", ""), xa)
    a = dedupe.signature(ta, f"{ta}\n{xa}")
    b = dedupe.signature(tb, f"{tb}\n{xb}")
    cmp = dedupe.compare(b, a, dedupe.IdfWeights(None, 0))
    assert cmp.rule == "texts report different days"
    assert (cmp.only_a, cmp.only_b) == ({"@05-09"}, {"@05-04"})


# -- a look-alike is judged without its text scores -----------------------------------------

TEMPLATED = Path(__file__).resolve().parent / "feeds" / "templated.jsonl"


def test_a_lookalike_is_judged_without_its_text_scores_and_decided_the_same() -> None:
    """`compare(exact=False)` leaves out the IDF-weighted scores of a look-alike whose
    entities differ unreported, and nothing it decides changes: on every templated
    pair, both ways, the score, the conflict and the rule are those of the exact
    comparison."""
    pairs = [json.loads(line) for line in TEMPLATED.read_text(encoding="utf-8").splitlines()]
    w = dedupe.IdfWeights(None, 0)
    unscored = 0
    for p in pairs:
        a = dedupe.signature(p["a"]["title"], f"{p['a']['title']}\n{p['a']['text']}")
        b = dedupe.signature(p["b"]["title"], f"{p['b']['title']}\n{p['b']['text']}")
        for x, y in ((a, b), (b, a)):
            exact, lazy = dedupe.compare(x, y, w), dedupe.compare(x, y, w, exact=False)
            same = ("score", "title", "conflict", "resolved", "positional", "rule")
            assert [getattr(lazy, f) for f in same] == [getattr(exact, f) for f in same], p["id"]
            if lazy.scored:
                assert (lazy.text, lazy.cross) == (exact.text, exact.cross)
            else:
                unscored += 1
                assert lazy.conflict and not lazy.resolved, p["id"]
    assert unscored >= 20  # most look-alikes cost no weighted cosine


def test_a_story_whose_closest_member_is_a_lookalike_stays_barred() -> None:
    """The bar a look-alike sets is computed even when its text scores were left out:
    Karachi's forecast bars its story, whose other member alone would be joined."""
    karachi = "Karachi will be hot and dry on Friday, 17 May, with a high of 41C and a low of 28C."
    lahore = karachi.replace("Karachi", "Lahore")
    look = cand(1, "Weather in Karachi on 17 May: hot and dry, 41C", karachi, feeds=("sb", "x"))
    other = cand(1, "Hot and dry on 17 May: 41C expected", karachi, feeds=("sb", "x"))
    e = entry("Weather in Lahore on 17 May: hot and dry, 41C", lahore)
    assert dedupe.decide(e, [other], now=T0, window=WINDOW).story == 1
    assert dedupe.decide(e, [look, other], now=T0, window=WINDOW).story is None
    assert dedupe.decide(e, [other, look], now=T0, window=WINDOW).story is None
