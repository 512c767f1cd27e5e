"""The one text core: the folding, words and stems that topics and dedupe both read."""

from __future__ import annotations

import pytest

from aggregator import text
from aggregator.match import dedupe, topics


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Pakistan's PM, in Moscow!", ["pakistan", "s", "pm", "in", "moscow"]),
        ("STRASSE Straße", ["strasse", "strasse"]),
        ("Zürich, São Paulo, Łódź, Ørsted", ["zurich", "sao", "paulo", "lodz", "orsted"]),
        ("ｆｕｌｌｗｉｄｔｈ ２０２４", ["fullwidth", "2024"]),
        ("snake_case a-b", ["snake", "case", "a", "b"]),
        # Russian: case and ё folded, stress marks dropped
        ("ПАКИСТАН и Россия, ёлка, за́мок", ["пакистан", "и", "россия", "елка", "замок"]),
        # Urdu: Urdu yeh, kaf and heh meet their Arabic letters, harakat go, ZWNJ too
        ("پاکستان اور روس", ["پاكستان", "اور", "روس"]),
        ("کراچی\u200cمیں", ["كراچيميں"]),
        ("مُحَمَّد", ["محمد"]),
        # Arabic: alef variants, teh marbuta, tatweel, Arabic-Indic digits
        ("أحمد إلى القاهـــرة ٢٠٢٤", ["احمد", "الي", "القاهره", "2024"]),
        ("۲۰۲۵ میں", ["2025", "ميں"]),  # Urdu (extended Arabic-Indic) digits
        # Hindi: vowel signs and virama never split a word; Devanagari digits to ASCII
        ("पाकिस्तान और रूस", ["पाकिस्तान", "और", "रूस"]),
        ("हिन्दी समाचार २०२४", ["हिन्दी", "समाचार", "2024"]),
        # Chinese: no spaces, so a run of Han characters is one word
        ("巴基斯坦和俄罗斯 签署", ["巴基斯坦和俄罗斯", "签署"]),
        ("", []),
    ],
)
def test_words_of_folded_text(raw: str, expected: list[str]) -> None:
    assert text.words(text.fold(raw)) == expected


def test_variants_of_one_word_fold_alike_and_different_words_stay_apart() -> None:
    assert text.fold("پاکستان") == text.fold("پاكستان")  # Urdu and Arabic kaf
    assert text.fold("ہمارا") == text.fold("همارا")
    assert text.fold("ھمارا") == text.fold("همارا")  # initial do-chashmi heh is heh
    assert text.fold("پھر") != text.fold("پہر")  # after a consonant it is aspiration
    assert text.fold("Café") == text.fold("cafe")
    assert text.fold("Ёж") == text.fold("еж")


def test_topics_and_dedupe_read_the_same_words() -> None:
    """Whole words in every script, for both stages: dedupe once split Devanagari at its
    vowel signs (`हिन्दी समाचार` gave the single fragment `सम`)."""
    sample = "हिन्दी समाचार: पाकिस्तान और रूस | پاکستان اور روس | Пакистан и Россия"
    doc = topics.document(sample, "")
    words = [w for w in doc.words if w]
    assert words == text.words(text.fold(sample))
    terms = dedupe.tokens(sample)
    assert {"हिन्दी", "समाचार", "पाकिस्तान", "रूस"} <= set(terms)
    assert {"پاكستان", "روس"} <= set(terms)
    assert "сам" not in terms and "सम" not in terms
    # dedupe's terms are the text core's stems, minus stopwords ("и", "اور")
    assert not {"и", "اور"} & set(terms)


def test_the_stem_cache_is_shared_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon meets new words for weeks: the one cache of stems, which topics and
    dedupe both fill, is emptied when it outgrows its limit, and the results are the
    same before and after."""
    monkeypatch.setattr(text, "_CACHE_LIMIT", 100)
    text.clear_cache()
    query = topics.compile('"gas pipeline" AND Pakistan')
    title = "Pakistan and Russia sign gas pipeline deal"
    before = query.matches(topics.document(title, "", "en"))
    terms = dedupe.tokens(title + " сладких яблок")
    assert set(text._KEY_CACHE) == {"en", None}  # dedupe filled the no-language cache
    largest = 0
    for n in range(20):  # the bound holds across languages, not per language
        body = " ".join(f"word{n}x{i}" for i in range(40))
        topics.document(title, body, ("en", "ru", "ur", None)[n % 4])
        dedupe.tokens(body)
        largest = max(largest, sum(len(c) for c in text._KEY_CACHE.values()))
    # at most the limit, plus the words of the one document that crossed it
    assert 100 < largest <= 100 + 40 + 8
    assert query.matches(topics.document(title, "", "en")) == before
    assert before is not None
    assert dedupe.tokens(title + " сладких яблок") == terms
    assert terms == ["pakistan", "russia", "sign", "gas", "pipelin", "deal", "сладк", "яблок"]
    text.clear_cache()


def test_stemmers_keep_no_cache_of_their_own() -> None:
    """Stems are cached once, in front of the stemmers: PyStemmer's own cache held
    10,000 more words in every stemmer object (one per thread and language)."""
    pytest.importorskip("Stemmer", reason="PyStemmer is what keeps a cache")
    assert text.new_stemmer("english").maxCacheSize == 0
    assert text.stem("en", "pipelines") == "pipelin"
    assert all(s.maxCacheSize == 0 for s in text._local.stemmers.values())


def _real_entries() -> list[tuple[str, str]]:
    from datetime import UTC, datetime
    from pathlib import Path

    from aggregator.errors import ParseError
    from aggregator.ingest import normalize, parse

    found = []
    for path in sorted((Path(__file__).parent / "feeds").rglob("*.xml")):
        try:
            parsed = parse.parse(path.read_bytes())
        except ParseError:
            continue
        for e in parsed.entries:
            entry = normalize.normalize(e, "f", datetime.now(UTC))
            found.append((entry.title, entry.text))
    return found


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("Floods hit Karachi", "\nThe port closed."),  # the usual: title, then text
        ("Flood", "s hit Karachi"),  # the title runs on into the next word
        ("Sharif visits Moscow", "\u0301 and more"),  # a mark that would join the title
        ("Sharif visits Moscow", "\u00a0talks on gas"),  # a space that is not ASCII
        ("Ставка ЦБ", "—8 ноября решение"),  # a dash that is not ASCII
        ("روس کا دورہ", "ھر بار"),  # ھ after the title: folded only at a word's start
        ("", "No title at all"),
        ("A headline", "Another text entirely"),  # a text that does not begin with it
        ("snake_case", "_rest of it"),
    ],
)
def test_an_entrys_words_split_once_are_its_titles_texts_and_bodys(title: str, body: str) -> None:
    """Topic matching and dedupe share one split of an entry (`EntryWords`): the
    text's words are exactly what splitting the whole text gives, whether or not
    the text could be cut where its title ends."""
    for text_ in (title + body, body, "  " + title + body):
        split = text.EntryWords(title, text_)
        assert split.title == text.words(text.fold(title))
        assert split.text == text.words(text.fold(text_))
        assert split.body == text.words(text.fold(text.body_text(title, text_)))


def test_real_entries_split_once_as_split_apart() -> None:
    entries = _real_entries()
    assert len(entries) > 50
    for title, text_ in entries:
        split = text.EntryWords(title, text_)
        assert split.text == text.words(text.fold(text_))
        assert split.body == text.words(text.fold(text.body_text(title, text_)))
