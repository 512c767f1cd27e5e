"""Topic queries: grammar, errors, folding, stemming, aliases, and real Urdu/Russian text.

The expected entries of the real-feed tests were read off the feed files by hand;
they are not computed by the matcher.
"""

from __future__ import annotations

import threading
from pathlib import Path

import feedparser
import pytest

from aggregator import text as text_core
from aggregator.errors import QueryError
from aggregator.match import topics

FEEDS = Path(__file__).resolve().parent / "feeds"
REAL = FEEDS / "real"
SEED = FEEDS / "pak-russia-story.xml"

ALIASES = {
    "pakistan": [
        "Pakistan",
        "Pakistani",
        "Pak",
        "Islamabad",
        "پاکستان",
        "پاکستانی",
        "اسلام آباد",
        "Пакистан",
        "пакистанский",
        "Исламабад",
    ],
    "russia": [
        "Russia",
        "Russian",
        "Moscow",
        "Putin",
        "Kremlin",
        "روس",
        "روسی",
        "ماسکو",
        "پوتن",
        "Россия",
        "российский",
        "Москва",
        "Путин",
        "Кремль",
    ],
}


def matches(query: str | None, title: str, text: str = "", **kw: object) -> tuple[str, ...] | None:
    aliases = kw.pop("aliases", ALIASES)
    language = kw.pop("language", None)
    assert not kw
    q = topics.compile(query, aliases)  # type: ignore[arg-type]
    return q.matches(topics.document(title, text, language))  # type: ignore[arg-type]


def hit(query: str, text: str, **kw: object) -> bool:
    return matches(query, "", text, **kw) is not None


# --- grammar ---------------------------------------------------------------

PRECEDENCE = [
    # query, text, matches?
    ("apple", "an apple a day", True),
    ("apple banana", "apple", False),
    ("apple banana", "banana and apple", True),
    ("apple AND banana", "apple banana", True),
    ("apple OR banana", "banana", True),
    ("apple OR banana", "cherry", False),
    # AND binds tighter than OR: apple OR (banana AND cherry)
    ("apple OR banana cherry", "banana", False),
    ("apple OR banana cherry", "banana cherry", True),
    ("apple OR banana AND cherry", "apple", True),
    ("apple AND banana OR cherry", "cherry", True),
    ("apple AND banana OR cherry", "apple", False),
    ("(apple OR banana) cherry", "apple", False),
    ("(apple OR banana) cherry", "apple cherry", True),
    # NOT binds tighter than AND, and `a NOT b` is `a AND NOT b`
    ("apple NOT banana", "apple", True),
    ("apple NOT banana", "apple banana", False),
    ("apple AND NOT banana", "apple banana", False),
    ("NOT apple", "banana", True),
    ("NOT apple", "apple", False),
    ("NOT apple OR banana", "apple banana", True),
    ("NOT apple OR banana", "apple", False),
    ("NOT (apple OR banana)", "cherry", True),
    ("NOT (apple OR banana)", "banana", False),
    ("NOT NOT apple", "apple", True),
    ("apple OR banana NOT cherry", "banana cherry", False),
    ("apple OR banana NOT cherry", "apple cherry", True),
    ("((apple))", "apple", True),
    # lowercase and/or/not are ordinary words
    ("apple and banana", "apple banana", False),
    ("apple and banana", "apple and banana", True),
    ("apple or banana", "banana", False),
    ("apple not banana", "apple not banana", True),
    ('apple "NOT"', "apple not", True),
]


@pytest.mark.parametrize(("query", "text", "expected"), PRECEDENCE)
def test_grammar_and_precedence(query: str, text: str, expected: bool) -> None:
    assert hit(query, text) is expected


SYNTAX_ERRORS = [
    # query, position, words in the message
    ("(pakistan OR russia", 0, "never closed"),
    ("pakistan (russia", 9, "never closed"),
    ("pakistan)", 8, "without a matching"),
    ("pakistan AND", 9, "AND needs a term after"),
    ("pakistan OR", 9, "OR needs a term after"),
    ("AND pakistan", 0, "AND needs a term before"),
    ("OR pakistan", 0, "OR needs a term before"),
    ("pakistan AND OR russia", 9, "AND needs a term after"),
    ("pakistan AND )", 9, "AND needs a term after"),
    ("NOT", 0, "NOT needs a term after"),
    ("pakistan NOT", 9, "NOT needs a term after"),
    ("()", 0, "empty parentheses"),
    ('pakistan ""', 9, "empty quotes"),
    ('pakistan "  "', 9, "empty quotes"),
    ('pakistan "russia', 9, "unterminated quote"),
    ("pakistan AND @nowhere", 13, "unknown alias @nowhere"),
    ("@", 0, "bad alias name"),
    ("pakistan -cricket", 9, "write NOT cricket"),
    ("*stan", 0, "needs a word before"),
    ("pak*stan", 3, "may only end"),
    ("pakistan !!", 9, "no letters or digits"),
    ("", 0, "empty query"),
    ("   ", 3, "empty query"),
    ("(" * 100 + "x" + ")" * 100, 64, "nested too deeply"),
]


@pytest.mark.parametrize(("query", "position", "message"), SYNTAX_ERRORS)
def test_syntax_errors_name_the_position(query: str, position: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        topics.compile(query, ALIASES)
    assert info.value.position == position
    assert message in info.value.message
    assert f"position {position}" in str(info.value)


def test_a_long_run_of_nots_does_not_exhaust_the_stack() -> None:
    q = topics.compile("NOT " * 5001 + "cricket")  # an odd count: NOT cricket
    assert q.matches(topics.document("", "cricket")) is None
    assert q.matches(topics.document("", "football")) == ()


def test_alias_errors() -> None:
    with pytest.raises(QueryError, match="must be a non-empty list") as info:
        topics.compile("news @empty", {"empty": []})
    assert info.value.position == 5
    with pytest.raises(QueryError, match="refers to an alias"):
        topics.compile("@a", {"a": ["@b"], "b": ["x"]})
    with pytest.raises(QueryError, match="alias @a: '!!' has no letters"):
        topics.compile("@a", {"a": ["ok", "!!"]})


def test_no_query_matches_everything_with_no_terms() -> None:
    q = topics.compile(None)
    assert q.source is None
    assert q.terms == ()
    assert q.matches(topics.document("", "")) == ()
    assert q.matches(topics.document("anything", "at all")) == ()


# --- word boundaries -------------------------------------------------------

BOUNDARIES = [
    ("pak", "Pakistan and India", False),
    ("pak*", "Pakistan and India", True),
    ("pak", "Pak-Russia ties", True),
    ("russia", "Pak-Russia ties", True),
    ("Pak-Russia", "Pak Russia ties", True),
    ("Pak-Russia", "Pak ties with Russia", False),
    ("stan", "Pakistan", False),
    ("putin", "President Putin’s visit", True),
    ("putin", "President Putin's visit", True),
    ("gas", "the gas_pipeline", True),
    ("2015", "signed in 2015.", True),
    ("201", "signed in 2015.", False),
    ("Рос", "Россия", False),
    ("Рос*", "Россия", True),
    ("стан", "Пакистан", False),
    ("Россия", "«Единая Россия»", True),
    ("روس", "روسی صدر", False),
    ("روس", "خروس", False),
    ("روس", "پاکستان اور روس کے درمیان", True),
    ("روس", "(روس)", True),
    ("پاکستان", "پاکستانی وزیر", False),
    ("پاکستان*", "پاکستانی وزیر", True),
    ("پاکستان", "«پاکستان»،", True),
    ("पाकिस्तान", "पाकिस्तानी सेना", False),
    ("पाकिस्तान", "भारत और पाकिस्तान के बीच", True),
]


@pytest.mark.parametrize(("query", "text", "expected"), BOUNDARIES)
def test_terms_match_whole_words_only(query: str, text: str, expected: bool) -> None:
    assert hit(query, text) is expected


def test_devanagari_vowel_signs_stay_inside_the_word() -> None:
    assert text_core.words(text_core.fold("पाकिस्तानी सेना")) == ["पाकिस्तानी", "सेना"]
    # marks beyond the BMP too (Chakma, used in Bangladesh): the same class as normalize's
    chakma = "\U00011107\U00011127\U00011108"
    assert text_core.words(text_core.fold(f"{chakma} x")) == [chakma, "x"]


# --- folding ---------------------------------------------------------------

FOLDS = [
    # Latin: case, NFKC, diacritics
    ("PAKISTAN", "pakistan"),
    ("Café", "cafe"),
    ("naïve Zürich", "naive zurich"),
    ("Ørsted Łódź", "orsted lodz"),
    ("Straße", "strasse"),
    ("ﬁnance", "finance"),
    ("Ｐａｋｉｓｔａｎ", "pakistan"),
    ("Cafe\u0301", "cafe"),
    # Cyrillic: ё → е, stress marks dropped, й kept
    ("Ёлка", "елка"),
    ("ПОЛЁТ", "полет"),
    ("Росси\u0301я", "россия"),
    ("Бузулук й", "бузулук й"),
    # Arabic script: one yeh, one kaf, one heh
    ("ی", "ي"),
    ("ى", "ي"),
    ("ک", "ك"),
    ("ہ", "ه"),
    ("ة", "ه"),
    ("ۃ", "ه"),
    ("محکمۂ", "محكمه"),
    ("پاکستان", "پاكستان"),
    # harakat, superscript alef, tatweel
    ("مُحَمَّد", "محمد"),
    ("وزیرِ", "وزير"),
    ("اعلیٰ", "اعلي"),
    ("حقیقتاً", "حقيقتا"),
    ("پاکـــستان", "پاكستان"),
    # ھ at the start of a word is ہ; after a consonant it marks aspiration
    ("ھم", "هم"),
    ("پھر", "پھر"),
    # digits
    ("۲۰۱۸", "2018"),
    ("٢٠١٨", "2018"),
    ("१९४७", "1947"),
    # invisible characters inside words
    ("می\u200cخواهم", "ميخواهم"),
    ("Paki\u00adstan", "pakistan"),
    ("\u200fپاکستان\u200e", "پاكستان"),
    ("\ufeffPakistan", "pakistan"),
]


@pytest.mark.parametrize(("raw", "folded"), FOLDS)
def test_fold(raw: str, folded: str) -> None:
    assert text_core.fold(raw) == folded


KEPT_APART = [
    ("й", "и"),  # distinct Russian letters
    ("پھر", "پہر"),  # "then" and "watch of the day"
    ("ے", "ی"),  # Urdu bari ye is its own letter
    ("آباد", "اباد"),  # alef madda is kept
]


@pytest.mark.parametrize(("a", "b"), KEPT_APART)
def test_fold_keeps_distinct_letters_apart(a: str, b: str) -> None:
    assert text_core.fold(a) != text_core.fold(b)


def test_folded_variants_match_each_other() -> None:
    # the query in Arabic letters, the text in Urdu letters, and the reverse
    assert hit("پاكستان", "پاکستان کے وزیر")
    assert hit("امريكه", "امریکہ سے امداد")
    assert hit("وزیر خارجہ", "امریکی وزیرِ خارجہ کی پاکستان آمد")
    assert hit("2018", "سال ۲۰۱۸ میں")
    assert hit("cafe", "Café de Flore")
    assert hit("Café", "cafe de flore")
    assert hit("Ёлка", "новогодняя елка")


# --- stemming --------------------------------------------------------------

STEMS = [
    ("Пакистан", "Пакистан", True),
    ("Пакистан", "из Пакистана", True),
    ("Пакистан", "с Пакистаном", True),
    ("Пакистан", "в Пакистане", True),
    ("Пакистан", "Пакистану", True),
    ("Пакистан", "пакистанский", False),
    ("Россия", "Россия", True),
    ("Россия", "УМВД России", True),
    ("Россия", "с Россией", True),
    ("Россия", "в Россию", True),
    ("Россия", "Российский союз", False),
    ("Москва", "из Москвы", True),
    ("Москва", "в Москве", True),
    ("Путин", "Путина", True),
    ("Путин", "Путиным", True),
    ("sanction", "new sanctions", True),
    ("sanctions", "a sanction", True),
    ("pipeline", "Russian pipelines", True),
    ("relationship", "relationships", True),
    ("country", "two countries", True),
    ("Russia", "Russian companies", False),
    ("Russian", "Russia", False),
    ("Russian", "Russians", True),
    ("Pakistan", "Pakistani", False),
    ("Pakistan", "Pakistan's", True),
]


@pytest.mark.parametrize(("query", "text", "expected"), STEMS)
def test_bare_terms_match_inflected_forms(query: str, text: str, expected: bool) -> None:
    assert hit(query, text) is expected


def test_urdu_is_folded_not_stemmed() -> None:
    # The Arabic stemmer would cut پاکستان to پاکست; Urdu words stay whole.
    assert not hit("پاکستان", "پاکست")
    assert not hit("پاکستان", "پاکست", language="ur")
    assert not hit("تعلقات", "تعلقا", language="ur")


def test_feed_language_chooses_the_latin_stemmer() -> None:
    # German plural: the German stemmer joins them, English would not.
    assert hit("Regierung", "die Regierungen", language="de-DE")
    assert not hit("Regierung", "die Regierungen")
    # A non-Latin hint does not change how Latin words are stemmed.
    assert hit("sanction", "sanctions", language="ru")
    assert hit("sanction", "sanctions", language="ur")


def test_feed_language_arabic_uses_the_arabic_stemmer() -> None:
    assert hit("كتاب", "الكتاب", language="ar")
    assert not hit("كتاب", "الكتاب")


# --- quoted and prefix -----------------------------------------------------

EXACT_AND_PREFIX = [
    ('"sanction"', "new sanctions", False),
    ('"sanctions"', "new sanctions", True),
    ('"Россия"', "УМВД России", False),
    ('"Россия"', "Единая Россия", True),
    ('"России"', "УМВД РОССИИ", True),
    ('"Imran Khan"', "Prime Minister Imran Khan has invited", True),
    ('"imran khan"', "IMRAN KHAN", True),
    ('"Imran Khan"', "Khan, Imran", False),
    ('"Imran Khan"', "Imran met Khan", False),
    ('"Pak-Russia"', "Pak Russia", True),
    ('"Café"', "cafe", True),
    ("sanction*", "sanctioned", True),
    ("sanctions*", "sanction", False),
    ("росс*", "УМВД России", True),
    ("росс*", "Российский союз", True),
    ("росс*", "Белоруссия", False),
    ("Pak-Rus*", "Pak-Russia ties", True),
    ("Pak-Rus*", "Pak ties Russia", False),
]


@pytest.mark.parametrize(("query", "text", "expected"), EXACT_AND_PREFIX)
def test_quoted_is_exact_and_prefix_is_unstemmed(query: str, text: str, expected: bool) -> None:
    assert hit(query, text) is expected


def test_phrase_does_not_run_from_title_into_text() -> None:
    q = topics.compile('"Imran Khan"')
    assert q.matches(topics.document("Imran", "Khan said")) is None
    assert q.matches(topics.document("Imran Khan", "said")) == ("Imran Khan",)


# --- aliases and reported terms --------------------------------------------

PEOPLE = {"pm": ["Imran Khan", '"PTI"', "Insaf*"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Prime Minister Imran Khan said", ("Imran Khan",)),
        ("Imran Khan's party", ("Imran Khan",)),
        ("Imran met Khan", None),
        ("the PTI rally", ("PTI",)),
        ("Tehreek-e-Insaf rally", ("Insaf",)),
        ("Insafians rally", ("Insafians",)),
        ("PTIs", None),
    ],
)
def test_alias_entries_are_phrases_exact_or_prefix(
    text: str, expected: tuple[str, ...] | None
) -> None:
    assert matches("@pm", "", text, aliases=PEOPLE) == expected


def test_alias_names_are_case_insensitive() -> None:
    assert matches("@PM", "", "Imran Khan", aliases=PEOPLE) == ("Imran Khan",)


def test_reported_words() -> None:
    text = "Pakistan and Russia, Moscow and Islamabad; Pakistani again"
    # the words of the text, as it writes them, in query order, each once
    assert matches("russia pakistan PAKISTAN", "", text) == ("Russia", "Pakistan")
    assert matches("pakistan OR pakistan", "", text) == ("Pakistan",)
    # every true branch of an OR, none of a false AND, never a NOT
    assert matches("(india AND russia) OR moscow OR islamabad", "", text) == (
        "Moscow",
        "Islamabad",
    )
    assert matches("pakistan NOT cricket", "", text) == ("Pakistan",)
    assert matches("NOT cricket", "", text) == ()
    # a prefix names every word it found, in text order; a phrase the words themselves
    assert matches('pak* "pakistan and russia"', "", text) == (
        "Pakistan",
        "Pakistani",
        "Pakistan and Russia",
    )
    # an alias names the words its entries found, not the entries
    assert matches("@pakistan AND @russia", "", text) == (
        "Pakistan",
        "Pakistani",
        "Islamabad",
        "Russia",
        "Moscow",
    )
    # inflected forms as written: the query's form never stands in for the text's
    assert matches("@pakistan", "", "Премьер Пакистана и پاکستانی وزیر") == (
        "پاکستانی",
        "Пакистана",
    )


def test_query_terms_and_source() -> None:
    q = topics.compile('pak* AND ("Imran Khan" OR @pm) NOT cricket', PEOPLE)
    assert q.source == 'pak* AND ("Imran Khan" OR @pm) NOT cricket'
    assert q.terms == ("pak*", "Imran Khan", '"PTI"'.strip('"'), "Insaf*", "cricket")


# --- real text -------------------------------------------------------------


def corpus_entries(path: Path) -> list[tuple[str, str, str, str | None]]:
    """(link, title, plain text of summary + content + Yandex full text, language)."""
    parsed = feedparser.parse(path.read_bytes())
    language = parsed.feed.get("language")
    out = []
    for e in parsed.entries:
        html_parts = [e.get("summary", "")]
        html_parts += [c.value for c in e.get("content", [])]
        html_parts.append(e.get("yandex_full-text", ""))
        out.append((e.link, e.title, text_core.html_to_text(" ".join(html_parts)), language))
    return out


def matching_links(path: Path, query: str, use_language: bool = True) -> set[str]:
    q = topics.compile(query, ALIASES)
    return {
        link
        for link, title, text, language in corpus_entries(path)
        if q.matches(topics.document(title, text, language if use_language else None))
    }


URDU = REAL / "bbc-urdu__pakistan-us-aid.xml"
BBC = "http://www.bbc.com/urdu/"
# Read off the file: every item but these three has the word پاکستان in its
# title or description; pakistan-42594820 has only پاکستانی ("Pakistani rupees").
URDU_WITHOUT_PAKISTAN = {BBC + "world-42457273", BBC + "42596931", BBC + "pakistan-42594820"}
URDU_ALL = {
    BBC + s
    for s in (
        "pakistan-42575603 pakistan-42645212 world-42615276 pakistan-42554318 42547605 "
        "pakistan-41739055 pakistan-42542988 pakistan-42532582 pakistan-42548010 "
        "world-42571559 pakistan-42577314 world-42534486 world-42451883 world-42457273 "
        "pakistan-42225606 pakistan-41742387 pakistan-41097529 pakistan-41038882 "
        "pakistan-41024731 pakistan-41019799 pakistan-42550677 pakistan-42594820 "
        "pakistan-42575493 42596931 pakistan-41736761 pakistan-42422392"
    ).split()
}


def test_real_urdu_feed_pakistan() -> None:
    entries = corpus_entries(URDU)
    assert {link for link, *_ in entries} == URDU_ALL
    assert matching_links(URDU, "پاکستان") == URDU_ALL - URDU_WITHOUT_PAKISTAN
    # the same word typed with Arabic kaf matches the same items
    assert matching_links(URDU, "پاكستان") == URDU_ALL - URDU_WITHOUT_PAKISTAN
    # the alias adds the adjective پاکستانی
    assert matching_links(URDU, "@pakistan") == URDU_ALL - {
        BBC + "world-42457273",
        BBC + "42596931",
    }
    # no item mentions Russia
    assert matching_links(URDU, "@russia") == set()
    assert matching_links(URDU, "@pakistan AND @russia") == set()


def test_real_urdu_feed_phrase_across_harakat() -> None:
    # "foreign minister"; pakistan-41739055 writes it وزیرِ خارجہ with a kasra
    expected = {
        BBC + "pakistan-41739055",
        BBC + "pakistan-41742387",
        BBC + "pakistan-41019799",
        BBC + "pakistan-41736761",
    }
    assert matching_links(URDU, '"وزیر خارجہ"') == expected
    assert matching_links(URDU, "اسلام آباد") == {BBC + "pakistan-41736761"}


RUSSIAN = REAL / "oren-ru__news-cp1251.xml"
OREN = "http://www.oren.ru/news/"


def test_real_russian_feed_russia_in_any_case() -> None:
    # Read off the file (in the Yandex full text): 2743418, 2743415 and 2743411 say
    # "УМВД России"; 2743388 says "Единая Россия" and "Российский союз".
    russia_any_case = {OREN + n + "/" for n in ("2743418", "2743415", "2743411", "2743388")}
    assert matching_links(RUSSIAN, "Россия") == russia_any_case
    assert matching_links(RUSSIAN, '"Россия"') == {OREN + "2743388/"}
    assert matching_links(RUSSIAN, "российск*") == {OREN + "2743388/"}
    # 2743412 mentions "Москвы" (genitive of Москва)
    assert matching_links(RUSSIAN, "Москва") == {OREN + "2743412/"}
    assert matching_links(RUSSIAN, "@russia") == russia_any_case | {OREN + "2743412/"}
    assert matching_links(RUSSIAN, "@pakistan") == set()
    # The feed gives no language; the result does not depend on it.
    assert matching_links(RUSSIAN, "Россия", use_language=False) == russia_any_case


def test_seed_story_matches_pakistan_and_russia() -> None:
    [(link, title, text, language)] = corpus_entries(SEED)
    doc = topics.document(title, text, language)
    # Read off the shipped copy (headline and first two paragraphs): it never names
    # Moscow or the Kremlin and has no Urdu or Cyrillic.
    assert topics.compile("@pakistan AND @russia", ALIASES).matches(doc) == (
        "Pakistan",
        "Pakistani",
        "Pak",
        "Islamabad",
        "Russia",
        "Russian",
        "Putin",
    )
    interface_query = "(pakistan OR islamabad) AND (russia OR moscow OR putin OR kremlin)"
    # the words as the story writes them, not the query's lowercase terms
    assert topics.compile(interface_query).matches(doc) == (
        "Pakistan",
        "Islamabad",
        "Russia",
        "Putin",
    )
    # the headline alone: "Pak-Russia Relationship: President Putin may visit Pakistan soon"
    headline = topics.document(title, "")
    assert topics.compile("@pakistan AND @russia", ALIASES).matches(headline) == (
        "Pakistan",
        "Pak",
        "Russia",
        "Putin",
    )


# --- an English query does not notice other scripts ------------------------

URDU_SENTENCE = "پاکستان اور روس کے درمیان گیس پائپ لائن کا معاہدہ، ۲۰۱۵"
RUSSIAN_SENTENCE = "Пакистан и Россия подписали соглашение о газопроводе; Путин, Москва"
ENGLISH_QUERIES = [
    "pakistan",
    "pakistan AND russia",
    "(pakistan OR islamabad) AND (russia OR moscow OR putin OR kremlin)",
    '"gas pipeline" OR pipeline*',
    "pakistan NOT cricket",
    "sanction",
    "kremlin",
    "NOT kremlin",
]
ENGLISH_TEXTS = [
    ("Pak-Russia Relationship", "Moscow and Islamabad signed a gas pipeline deal"),
    ("Cricket", "Pakistan beat India at cricket"),
    ("US sanctions", "New sanctions on Russian companies"),
    ("Weather", "Rain in Karachi"),
]


@pytest.mark.parametrize("query", ENGLISH_QUERIES)
def test_english_query_ignores_other_scripts(query: str) -> None:
    q = topics.compile(query)
    for title, text in ENGLISH_TEXTS:
        alone = q.matches(topics.document(title, text))
        mixed = f"{URDU_SENTENCE} {text} {RUSSIAN_SENTENCE}"
        assert q.matches(topics.document(title, mixed)) == alone
        assert q.matches(topics.document(title, mixed, "ur")) == alone
        assert q.matches(topics.document(title, mixed, "ru-RU")) == alone


def test_documents_built_in_threads_agree() -> None:
    """Snowball stemmers keep state while stemming; each thread must get its own."""
    texts = [
        f"{RUSSIAN_SENTENCE} {URDU_SENTENCE} relationships sanctions{i} Россиями{i} стран{i}ами"
        for i in range(300)
    ]
    expected = [topics.document("", t).keys for t in texts]
    text_core.clear_cache()  # make every thread stem for itself
    results: dict[int, list[tuple[str, ...]]] = {}

    def work(n: int) -> None:
        results[n] = [topics.document("", t).keys for t in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(results[n] == expected for n in range(8))
