"""Story clustering: does a new entry join an existing story, and which one?

This stage is pure. It never reads the clock, the database or the network: the
store fetches the candidates from its key index and passes them in, with `now`
and the document frequencies it keeps. Exact-link and exact-guid joins are the
store's job before `decide` is called; this module handles only near-duplicates
(another outlet's rewrite of the same news).

The method, chosen by measurement (see `bench/dedup_eval.py`):

1. Title and text are folded, split into words and stemmed by the text core
   (`aggregator.text`, as topics read them): whole words in every script. Latin
   words take the English stem and Cyrillic words the Russian one, cut to
   `RU_PREFIX` letters, so inflected forms meet (the cut catches the adjective and
   participle endings the stemmer keeps). Stopwords (English, Russian, Urdu, Hindi) are
   dropped before stemming; an English word is also dropped when its stem is a
   stopword's ("getting", "reported", "updates"): a young store's frequencies
   cannot yet tell that they are common.
2. An entry's *signature* is two sets of terms: the title's, and the lead of its
   text (the first `LEAD_TERMS` distinct terms after the title; a summary or the
   first paragraph is where outlets state the news).
3. Two headlines are compared by the plain cosine of their title term sets, and
   only when they share at least `MIN_SHARED` terms (one shared word between short
   generic headlines, "Business in Brief", is how different stories got merged).
   When both entries have text, the IDF-weighted cosine of title+lead terms is
   also taken; rare terms (names, places, figures) carry that decision. The
   document frequencies come from the store: `terms()` is exactly what it counts,
   once per stored entry. (IDF on headlines alone measured worse: in a burst of
   news the story's own name is as frequent as the generic words.) With text, a
   third score asks how much of each *headline* the other article reports
   (IDF-weighted containment of title terms in the other's title+lead): two
   outlets' headlines on one event often share a word or two, but each names
   the same people, places and figures in its text. A headline of fewer than
   `CROSS_MIN_TITLE` terms gets no containment score: two generic words are
   found in many articles.
   Headlines that each name an entity the other lacks (`entities`: a place,
   person, organisation, team, number or date; "Прогноз погоды на 8 ноября" /
   "на 16 ноября", "Weather in Brest" / "in Gomel") never join when the
   difference sits in the same position of otherwise equal headlines, when it is
   a number or a date against another, or when the rest of the headlines is alike
   and they share fewer than `SHARED_NAMES` names; unless both texts join on
   their own and each reports the other's entities. A recurring item, not a
   rewrite: merging it hides one of them from every subscriber. Likewise two
   texts that each name the day they report on (a day and a month in their first
   `DATE_CHARS`) and share none: a daily index, a forecast or a price for another
   day, or a later development.
4. Every score is divided by `1 + (distance / (DECAY * window))^2` (24h for
   the default 48h window), the distance being the time between the two entries'
   publication: outlets rewrite a story within hours, while headlines alike a
   day apart are mostly the next edition of a recurring item (market wraps,
   "Business Highlights", daily briefs), a merge that hides news. Squared, so an
   hour or two apart costs nothing (linear fading lost a borderline pair polled
   an hour apart) while a day apart halves the score: the same headline joins
   only within half the window, a weak match only within hours. The factor does
   not depend on arrival order. 24h is set from how news recurs, not fitted to
   dev.jsonl (whose times are collection times).
5. A story qualifies when one of its members clears the threshold, or when
   `VOTES` members come within `VOTE_LEVEL` of it. Among qualifying stories the
   one with the most such members wins, then the closest: growing the established
   story stops one event from splintering into many (which is what cost recall).
   Never a story that already holds an entry of the same feed (an outlet does not
   re-run its own story: a second article from it is an update or a different
   piece, and merging it would hide it), never a candidate outside the window.
6. An entry that joins one story and clears the threshold on its own with another
   small story (`ABSORB_SIZE` feeds at most) whose headlines read like the joined
   story's (`ABSORB_PROFILE`) shows the two were one event told twice: the small one
   is folded in (`Decision.absorbed`). Arrival order alone decided that they were
   two (the first wording of an event starts a story; a second wording that misses
   it by a hair starts another), and the bridge is the evidence the first decision
   lacked. Two established stories are never merged.
"""

from __future__ import annotations

import math
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from aggregator import models
from aggregator.match import entities
from aggregator.text import EntryWords, body_text, fold, stem, words
from aggregator.text import keys as word_keys

#: distinct text terms (after the title's) kept in a signature: the lead of the article.
#: 120 scores the labelled pairs exactly as 200 did (100 loses one, 80 three) and
#: costs 40% less to weigh, count and compare (`bench/dedup_eval.py`)
LEAD_TERMS = 120
#: at most this many index keys per entry, so the store's key table stays small
MAX_KEYS = 30
#: join when the cosine of two title term sets reaches this
TITLE_THRESHOLD = 0.45
#: join when the IDF-weighted cosine of title+lead terms reaches this (both have text)
TEXT_THRESHOLD = 0.5
#: ...or when at least VOTES members of the story reach VOTE_LEVEL x the threshold
VOTE_LEVEL = 0.8
VOTES = 3
#: a candidate published this share of the window before or after the entry needs
#: twice the similarity (the score is divided by 1 + (distance / (DECAY * window))^2):
#: a rewrite follows its story within hours, the same words a day apart are mostly
#: the next edition of a recurring item. With the default 48h window: 24h.
DECAY = 0.5
#: title terms two headlines must share before their cosine counts at all
MIN_SHARED = 2
#: join when the headlines' terms are found in each other's article to this degree
#: (IDF-weighted share of one title's terms present anywhere in the other entry)
CROSS_THRESHOLD = 0.56
#: ...counting only when each title has at least this many terms found in the other
CROSS_MIN_SHARED = 2
#: ...and only between headlines of at least this many terms: two words ("WATCH: On
#: 'Trackers' this Sunday") name too little for finding them elsewhere to be evidence
CROSS_MIN_TITLE = 3
#: headlines naming different entities still compare as usual when they share this
#: many names and the difference is neither in the same position nor a number or a
#: date: "Stacy Keibler marries Jared Pobre in Mexico" and "... in beach wedding"
#: add details to one story, where a look-alike shares the template, not the names
SHARED_NAMES = 2
#: ...and "alike" means the rest of the two headlines (their own entities set aside)
#: has at least this cosine: the same template, not two wordings of one event
TEMPLATE_SHARE = 0.45
#: Russian terms are cut to this many letters after stemming (the stemmer leaves
#: adjective and participle endings that differ between outlets: сладкого/сладких)
RU_PREFIX = 5
#: an entry that joins one story and clears the threshold with another story of at
#: most this many feeds shows the two are one event told twice: the small one (a
#: retelling that missed by a hair, with its own few copies) is folded into the one
#: joined. Larger stories are never merged: two established stories are more often
#: two events on one subject, and merging them would hide one from every subscriber
ABSORB_SIZE = 2
#: ...when the IDF-weighted cosine of the two stories' headline words (the fetched
#: members' headlines, each word counted once per headline) reaches this: a bridge
#: headline naming two subjects ("SXSW day 1: 'Chef'") links stories about neither
ABSORB_PROFILE = 0.2
#: the store fetches only entries sharing at least this many of the new one's `query_keys`
MIN_SHARED_KEYS = MIN_SHARED
#: ...and of those, the ones sharing the most key weight (`KeyPlan.weight`), at most
#: this many: the bound on one entry's comparisons, whatever the store holds
MAX_CANDIDATES = 50
#: a key more than this share of stored entries hold is a template's word ("weather
#: in", "court adjourns hearing"): a look-alike shares those and nothing rarer...
COMMON_SHARE = 0.01
#: ...so of the candidates sharing no rarer key, at most this many are compared:
#: there are more of them with every stored look-alike
COMMON_CANDIDATES = 30
#: ...and a common key is read for its newest this many postings only (a rare one
#: for 200): what it finds are look-alikes, capped as above, and the newest are the
#: nearest in time, while reading and grouping 200 of each grew with the store
COMMON_POSTINGS = 50
#: ...and no key is common while fewer entries than this hold it: a young store's
#: counts cannot tell a template from the news of the day
COMMON_MIN = 30
#: candidates are looked up by an entry's rarest keys only, at most this many: a
#: near-duplicate shares the names, places and figures, and the common keys brought
#: mostly entries of other stories to compare (the figures: bench/README.md)
QUERY_KEYS = 12

# Stopwords are matched after folding, before stemming. Short lists on purpose: the
# IDF weighting does the rest, these only keep index keys from matching everything.
_EN_STOP = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not now of off on once only or other our out over own
    same she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom why
    will with would you your yours new says said say after over amid via vs report reports
    update live video photos watch news today week year years first one two three get gets
    make makes may might must could back still than us""".split()
)
_RU_STOP = frozenset(
    """и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только
    ее мне было вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть
    был него до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где есть
    надо ней для мы тебя их чем была сам чтоб без будто чего раз тоже себе под будет ж тогда
    кто этот того потому этого какой совсем ним здесь этом один почти мой тем чтобы нее сейчас
    были куда зачем всех никогда можно при наконец два об другой хоть после над больше тот
    через эти нас про всего них какая много разве три эту моя впрочем хорошо свою этой перед
    иногда лучше чуть том нельзя такой им более всегда конечно всю между это также году года
    который которая которые которых котором которой заявил заявила сообщил сообщила сообщает
    стало стал стала время свой своей своих своим сегодня рассказал рассказала""".split()
)
_UR_STOP = frozenset(
    """کے کی کا کو میں نے سے اور ہے ہیں پر یہ وہ بھی ایک تھا تھی تھے گیا گئی گئے کر کہ جو
    لیے لئے ان اس کیا کیں کرنے کرتے ہو ہوا ہوئے ہوئی رہا رہی رہے جا جائے والے والی والا تک
    اپنے اپنی اپنا نہیں کوئی کچھ بعد ساتھ مطابق کہا دیا دی""".split()
)

_HI_STOP = frozenset(
    """का की के को में से ने पर और है हैं था थी थे भी एक यह वह इस उस कि जो तक लिए
    साथ बाद कर करने किया गया गई गए हो होने हुआ हुए हुई रहा रही रहे जा जाए वाले वाली
    अपने अपनी नहीं कोई कुछ अनुसार कहा दिया दी""".split()
)

# Stopword lists are written as people spell them; compare them folded, as words are.
_EN_STOP = frozenset(map(fold, _EN_STOP))
_RU_STOP = frozenset(map(fold, _RU_STOP))
_UR_STOP = frozenset(map(fold, _UR_STOP))
_HI_STOP = frozenset(map(fold, _HI_STOP))
_STOP = _EN_STOP | _RU_STOP | _UR_STOP | _HI_STOP
# inflected stopwords ("getting", "updates") are dropped after stemming
_EN_STOP_STEMS = frozenset(stem("en", w) for w in _EN_STOP)


def _term(word: str, key: str) -> str | None:
    """One folded word (and its stem key from the text core) to its term, or None for
    a stopword or noise."""
    if word.isdigit():
        # digits of any script (Arabic-Indic, Devanagari...) become ASCII; bare
        # single digits say too little to be a term
        word = "".join(str(unicodedata.digit(c)) for c in word)
        return word if len(word) > 1 else None
    if len(word) < 2 or word in _STOP:
        return None
    lang, _, stem = key.partition(":")
    if lang == "en":
        return None if stem in _EN_STOP_STEMS else stem
    if lang == "ru":
        stem = stem[:RU_PREFIX]
        return stem if len(stem) > 1 else None
    return stem


def tokens(body: str) -> list[str]:
    """The terms of `body` in order, repeats kept: folded, stopwords dropped, stemmed."""
    return list(_terms_of(words(fold(body))))


#: the days an article reports on are read from this much of its text: the first
#: paragraph or two, where a desk writes "on 4 May" (an article's later dates are
#: mostly background)
DATE_CHARS = 1000
#: the lead is read from at most this much of an entry's text: LEAD_TERMS distinct
#: terms come long before, and folding a whole 200 kB article would cost more
LEAD_CHARS = 30_000


def _terms_of(ws: list[str]) -> Iterator[str]:
    """The terms of folded words. Words are stemmed as in a feed of no stated
    language (the text core's default stemmer per script): a signature must not
    depend on what a feed declares."""
    for word, key in zip(ws, word_keys(ws, None), strict=True):
        term = _term(word, key)
        if term is not None:
            yield term


def _distinct(seq: Iterable[str], limit: int, skip: frozenset[str] = frozenset()) -> list[str]:
    seen: dict[str, None] = {}
    for t in seq:
        if t not in skip and t not in seen:
            seen[t] = None
            if len(seen) >= limit:
                break
    return list(seen)


class Signature:
    """What `decide` compares, derived from title and text alone by `signature()`.

    The store persists it (`pack`/`unpack`) or recomputes it; both give the same value.
    Treat it as immutable: a stored entry's signature is decoded for every later
    entry it is a candidate of, and kept decoded for the next (`TermStats`), so it
    is a plain slotted class (no frozen dataclass's per-field
    `object.__setattr__`) holding `everything` and not the lead apart from it, and
    it pickles as its stored form.
    """

    __slots__ = ("order", "entities", "dates", "title", "everything", "cased", "_packed")

    #: the title's distinct terms, in the order the headline writes them
    order: tuple[str, ...]
    #: the headline's entities (`aggregator.match.entities.find`): names as terms,
    #: numbers as digits ("8 ноября" gives "@11-08"; "Q2" gives "2"), dates as "@..."
    entities: frozenset[str]
    #: the days the start of the text names by day and month ("@05-04"): what it
    #: reports on (`entities.dates_in`)
    dates: frozenset[str]
    #: the title's distinct terms as a set
    title: frozenset[str]
    #: title | lead, which every comparison needs: built once, not once per pair
    everything: frozenset[str]
    #: every title word is of a cased script (or a number)
    cased: bool

    def __init__(
        self,
        order: tuple[str, ...],
        lead: frozenset[str],
        entities: frozenset[str] = frozenset(),
        dates: frozenset[str] = frozenset(),
    ) -> None:
        title = frozenset(order)
        self._set(order, title, title | lead, entities, dates)

    def _set(
        self,
        order: tuple[str, ...],
        title: frozenset[str],
        everything: frozenset[str],
        ents: frozenset[str],
        dates: frozenset[str],
    ) -> None:
        self.order, self.title, self.everything = order, title, everything
        self.entities, self.dates = ents, dates
        self.cased = all(t.isdigit() or entities.cased(t) for t in order)
        self._packed: str | None = None

    @property
    def lead(self) -> frozenset[str]:
        """The first `LEAD_TERMS` distinct terms of the text that are not title terms
        (the lead never holds a title term)."""
        return self.everything - self.title

    @property
    def has_text(self) -> bool:
        """Whether the entry had text beyond its title (a lead to compare)."""
        return len(self.everything) > len(self.title)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return (self.order, self.everything, self.entities, self.dates) == (
            other.order,
            other.everything,
            other.entities,
            other.dates,
        )

    __hash__ = None  # type: ignore[assignment]  # compared, never a key

    def __repr__(self) -> str:
        return (
            f"Signature(order={self.order!r}, lead={set(self.lead)!r}, "
            f"entities={set(self.entities)!r}, dates={set(self.dates)!r})"
        )

    def pack(self) -> str:
        """The stored form: four lines of space-separated terms (`\\w+` words or
        "@"-dates, so never a space or a newline): the title in order
        (entities.substituted reads positions), the lead, the entities, the days.
        Splitting them is several times cheaper than JSON. Made once per object."""
        if self._packed is None:
            self._packed = "\n".join(
                (
                    " ".join(self.order),
                    " ".join(sorted(self.lead)),
                    " ".join(sorted(self.entities)),
                    " ".join(sorted(self.dates)),
                )
            )
        return self._packed

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # A parse process sends each new entry's signature to the writer: as its
        # stored form it pickles in half the time of its sets and in 60 % of the
        # bytes, unpickles as fast, and arrives decoded as the store decodes it
        # (interned, its set built whole), ready to be kept (`TermStats`).
        return Signature.unpack, (self.pack(),)

    @classmethod
    def unpack(cls, text: str) -> Signature:
        """`pack`'s inverse (the store's migrations bring older rows to this form)."""
        title, lead, ents, dates = text.split("\n")
        # Interned, and the set built whole before it is frozen (sized once, not
        # grown term by term): a decoded signature is kept for later transactions
        # (`TermStats.signature`) in 6 KiB instead of 16.
        order = list(map(sys.intern, title.split()))
        everything = set(order)
        everything.update(map(sys.intern, lead.split()))
        sig = cls.__new__(cls)
        sig._set(
            tuple(order),
            frozenset(order),
            frozenset(everything),
            frozenset(ents.split()),
            frozenset(dates.split()),
        )
        sig._packed = text
        return sig


def signature(title: str, text: str) -> Signature:
    """The comparable form of an entry (or of a story's first entry)."""
    return analyze(title, text)[0]


def analyze(title: str, text: str, split: EntryWords | None = None) -> tuple[Signature, list[str]]:
    """`signature()` and `index_keys()` of one entry from a single pass over its
    words: folding and stemming are most of an entry's dedupe cost. `split` is its
    words, if topic matching shares them."""
    split = split or EntryWords(title, text)
    title_tokens = list(_terms_of(split.title))
    title_terms = frozenset(title_tokens)
    body = split.body_text[:LEAD_CHARS]
    body_words = split.body if len(split.body_text) <= LEAD_CHARS else words(fold(body))
    lead = _distinct(_terms_of(body_words), LEAD_TERMS, title_terms)
    ents = entities.find(title, body, term)
    dates = entities.dates_in(body[:DATE_CHARS]) if body else frozenset()
    sig = Signature(tuple(_distinct(title_tokens, len(title_tokens))), frozenset(lead), ents, dates)
    return sig, _keys(title_tokens, lead)


def _keys(title_tokens: Sequence[str], lead: Sequence[str]) -> list[str]:
    """Title terms first, then the start of the lead (`lead` in text order, without
    title terms); at most `MAX_KEYS`."""
    title_keys = _distinct(title_tokens, MAX_KEYS)
    if len(title_keys) >= MAX_KEYS:
        return sorted(title_keys)
    room = max(0, min(MAX_KEYS - len(title_keys), MAX_KEYS // 3))
    return sorted(set(title_keys) | set(lead[:room]))


def query_keys(keys: Sequence[str], title: frozenset[str], df: Mapping[str, int]) -> list[str]:
    """The keys to look an entry's candidates up by: its `QUERY_KEYS` rarest by
    document frequency, title terms first among equals (a young store's counts
    cannot tell the keys apart yet, and the headline names the news). Keys no stored
    entry has (a count of 0) come last: they cannot find anything, and an entry full
    of one-off tokens (codes, misspellings) would otherwise ask only for those."""

    def rank(k: str) -> tuple[bool, int, bool, str]:
        n = df.get(k, 0)
        return n == 0, n, k not in title, k

    return sorted(keys, key=rank)[:QUERY_KEYS]


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """One key of a candidate lookup: what a candidate found under it earns toward
    being compared (its IDF), and whether it is rare enough to find one alone."""

    key: str
    weight: float
    rare: bool


def key_plan(
    keys: Sequence[str], title: frozenset[str], df: Mapping[str, int], n_docs: int
) -> list[KeyPlan]:
    """The bounded lookup of an entry's candidates: its `query_keys`, each weighed
    by its IDF and marked rare unless more than `COMMON_SHARE` of stored entries
    hold it.

    A copy shares names and figures (rare keys); a look-alike from the same template
    shares only the template's words, and there are more of those with every stored
    look-alike. Ranking by shared weight, and bounding the candidates that share no
    rare key (`COMMON_CANDIDATES`), keeps the comparisons per entry flat however
    many look-alikes the store holds.
    """
    common = max(COMMON_MIN, COMMON_SHARE * n_docs)
    return [
        KeyPlan(k, _idf(k, df, n_docs), df.get(k, 0) <= common) for k in query_keys(keys, title, df)
    ]


def terms(title: str, text: str) -> set[str]:
    """The terms whose document frequency the store must keep.

    Count each returned term once per stored entry (df[term] += 1 on insert, -= 1 on
    prune) and pass the number of stored entries as `n_docs`.
    """
    return terms_of(signature(title, text))


def terms_of(sig: Signature) -> set[str]:
    """`terms()` of an entry whose signature is already computed."""
    return set(sig.everything)


def index_keys(title: str, text: str) -> list[str]:
    """The keys the store indexes an entry under; a candidate has at least
    `MIN_SHARED_KEYS` of the new entry's `query_keys` among them.

    Title terms first (every near-duplicate we measured shares a title term with its
    story), then the start of the lead; at most `MAX_KEYS`. Stopwords never become
    keys. The key is the term itself, so the store can skip a key whose df is huge.
    """
    return analyze(title, text)[1]


class Candidate(NamedTuple):
    """One stored entry of a story that shares an index key with the new entry.

    The store passes one Candidate per stored entry it fetched (several may carry
    the same `story_id`): a new entry may match any member of a story. A named
    tuple, as `Comparison`: one is made for every candidate of every new entry, and
    a frozen dataclass takes five times as long to make.
    """

    story_id: int
    #: feeds that already have an entry in this story
    feeds: frozenset[str]
    #: the stored entry's title and plain text (Entry.title, Entry.text)
    title: str
    text: str
    #: the stored entry's published time, aware UTC
    published: datetime
    #: `signature(title, text)`, cached by the store; None means recompute
    sig: Signature | None = None


def _idf(term: str, df: Mapping[str, int] | None, n_docs: int) -> float:
    """Smoothed IDF; with no counts yet every term weighs the same."""
    if not df or n_docs <= 0:
        return 1.0
    return math.log((n_docs + 1) / (df.get(term, 0) + 1)) + 1.0


def _cosine(a: frozenset[str], b: frozenset[str], w: dict[str, float]) -> float:
    if not a or not b:
        return 0.0
    common = sum(w[t] ** 2 for t in a & b)
    if common == 0.0:
        return 0.0
    na = math.sqrt(sum(w[t] ** 2 for t in a))
    nb = math.sqrt(sum(w[t] ** 2 for t in b))
    return common / (na * nb)


class IdfWeights(dict[str, float]):
    """IDF weights computed on first use and kept, so a term is weighed once per
    decision (or per write transaction, when the caller `forget`s the terms whose
    counts it changed). Norms and masses of term sets are kept alongside: a stored
    entry is compared with many new ones, and its 200-term norm is the costly part."""

    def __init__(self, df: Mapping[str, int] | None, n_docs: int) -> None:
        super().__init__()
        self.df = df
        self.n_docs = n_docs
        self._norms: dict[frozenset[str], float] = {}
        self._masses: dict[frozenset[str], float] = {}

    def __missing__(self, term: str) -> float:
        value = self[term] = _idf(term, self.df, self.n_docs)
        return value

    def norm(self, terms: frozenset[str]) -> float:
        """The Euclidean norm of a term set's weight vector."""
        value = self._norms.get(terms)
        if value is None:
            # hypot over a map: the loop runs in C, three times faster than a generator
            value = self._norms[terms] = math.hypot(*map(self.__getitem__, terms))
        return value

    def mass(self, terms: frozenset[str]) -> float:
        """The summed weight of a term set."""
        value = self._masses.get(terms)
        if value is None:
            value = self._masses[terms] = sum(map(self.__getitem__, terms))
        return value

    def forget(self, terms: Iterable[str]) -> None:
        """Drop the weights of terms whose counts changed (and every kept norm)."""
        for t in terms:
            self.pop(t, None)
        self._norms.clear()
        self._masses.clear()


def _weighted_cosine(a: frozenset[str], b: frozenset[str], w: IdfWeights) -> float:
    common = a & b
    if not common:
        return 0.0
    return math.hypot(*map(w.__getitem__, common)) ** 2 / (w.norm(a) * w.norm(b))


class Comparison(NamedTuple):
    """How two entries compare, and why: what `similarity` and `explain` report
    (a named tuple: one is made for every pair compared)."""

    #: the largest of the scores below, 0.0 when an entity conflict stands; 1.0 is
    #: exactly at the threshold that applies
    score: float
    #: the title cosine, the title+lead cosine and the headline-in-article score,
    #: each scaled to its own threshold (0.0 when it does not apply)
    title: float
    text: float
    cross: float
    #: entities both headlines name, and those only one names (the other lacks them)
    shared: frozenset[str]
    only_a: frozenset[str]
    only_b: frozenset[str]
    #: each headline names something the other lacks (a place, person, team,
    #: number or date): not one story unless `resolved`
    conflict: bool
    #: the texts agree on everything else and each reports the other's entities
    resolved: bool
    #: the differing entities take each other's place in otherwise equal headlines
    positional: bool
    #: which rule decided: "title", "text", "cross", "entities differ",
    #: "entities differ, texts agree", "texts report different days" (then
    #: `only_a`/`only_b` hold each text's days), "below threshold"
    rule: str
    #: `text` and `cross` were computed (always, unless `compare(exact=False)`
    #: found that they could not change the outcome: then they read 0.0)
    scored: bool = True


def similarity(
    a: Signature,
    b: Signature,
    df: Mapping[str, int] | None = None,
    n_docs: int = 0,
    *,
    weights: IdfWeights | None = None,
    aliases: entities.Aliases | None = None,
) -> float:
    """How alike two entries are, in [0, 1], relative to the threshold that applies.

    Headline-only pairs use the title cosine against `TITLE_THRESHOLD`; pairs where
    both have text use the cosine of title+lead against `TEXT_THRESHOLD`. The result
    is scaled so that 1.0 always means "exactly at the threshold", letting `decide`
    rank candidates of both kinds together. Headlines naming different entities
    score 0 (`compare`).
    """
    w = weights if weights is not None else IdfWeights(df, n_docs)
    return compare(a, b, w, aliases).score


def _no_numbers(ents: set[str]) -> set[str]:
    return {e for e in ents if entities.kind(e) != "number"}


def _figures(ents: set[str]) -> bool:
    return any(entities.kind(e) in ("number", "date") for e in ents)


def _differing(
    a: Signature, b: Signature, aliases: entities.Aliases | None
) -> tuple[set[str], set[str], set[str], bool]:
    """(shared, only in a, only in b, positional) entities of two headlines.

    An entity of one is shared when the other's headline has it among its
    entities or its words (a name the other writes in Title Case, a number).
    `positional` says that one run of entities takes another's place in
    otherwise equal headlines (`entities.substituted`). There the replaced words
    of scripts without case count as names: a Hindi or Urdu headline has no
    capitals to tell "इमरान खान" from a verb."""
    only_a = {e for e in a.entities if e not in b.entities and e not in b.title}
    only_b = {e for e in b.entities if e not in a.entities and e not in a.title}
    if only_a and only_b:
        roots_a, roots_b = _roots(a), _roots(b)
        only_a = {e for e in only_a if not _same_root(e, roots_b)}
        only_b = {e for e in only_b if not _same_root(e, roots_a)}
    shared = set(a.entities | b.entities) - only_a - only_b
    positional = False
    if (only_a and only_b) or not (a.cased and b.cased):
        xa, xb = entities.substituted(a.order, b.order)
        if xa and xb:
            ua = {t for t in xa if not entities.cased(t)}
            ub = {t for t in xb if not entities.cased(t)}
            only_a |= ua
            only_b |= ub
            positional = xa <= (a.entities | ua) and xb <= (b.entities | ub)
    if aliases:
        in_a, in_b = aliases.named(a.title), aliases.named(b.title)
        for name in in_a.keys() & in_b.keys():
            # one thing written two ways ("LHC", "Lahore High Court")
            only_a -= in_a[name]
            only_b -= in_b[name]
            shared.add("&" + name)
        only_a |= {"&" + n for n in in_a.keys() - in_b.keys() if not in_a[n] <= b.title}
        only_b |= {"&" + n for n in in_b.keys() - in_a.keys() if not in_b[n] <= a.title}
    return shared, only_a, only_b, positional


#: a name and a word of the other headline that begin with this many equal letters
#: are one name in two forms: Russia / Russian, Spain / Spanish, China / Chinese
ROOT = 5


def _roots(sig: Signature) -> set[str]:
    """The first `ROOT` letters of each word and entity of a headline (words shorter
    than that are no other form of a name of `ROOT` letters or more)."""
    return {t[:ROOT] for t in sig.title | sig.entities if len(t) >= ROOT}


def _same_root(e: str, roots: set[str]) -> bool:
    return len(e) >= ROOT and entities.kind(e) == "name" and e[:ROOT] in roots


def _alike_apart_from(a: Signature, b: Signature, only_a: set[str], only_b: set[str]) -> bool:
    """Whether the headlines are the same words once their own entities are set
    aside: the template of a recurring item ("Weather in X on D")."""
    ra, rb = a.title - only_a - a.entities, b.title - only_b - b.entities
    if not ra or not rb:
        return not ra and not rb
    return len(ra & rb) / math.sqrt(len(ra) * len(rb)) >= TEMPLATE_SHARE


def _reported(ents: set[str], other: Signature, aliases: entities.Aliases | None) -> bool:
    """Whether the other entry's title or lead names every one of `ents` (a date by
    its day and month, a number by its parts of two digits or more: single digits
    are no term, so a number of them alone is never found)."""
    named = aliases.named(other.everything) if aliases else {}
    for e in ents:
        k = entities.kind(e)
        if k == "date":
            if not entities.date_reported(e, other.everything, term):
                return False
        elif k == "alias":
            if e[1:] not in named:
                return False
        elif k == "number":
            parts = [p for p in e.split(".") if len(p) > 1]
            if not parts or any(p not in other.everything for p in parts):
                return False
        elif e not in other.everything:
            return False
    return True


_NONE: frozenset[str] = frozenset()
_BELOW = "below threshold"
_DATES = "texts report different days"


def compare(
    a: Signature,
    b: Signature,
    w: IdfWeights,
    aliases: entities.Aliases | None = None,
    *,
    exact: bool = True,
) -> Comparison:
    """Score two entries and say which rule decided (see the module's doc).

    Two headlines that each name an entity the other lacks (different places,
    people, teams, numbers or dates, `_differing`) are one story only when both
    have text, the texts join on their own (`TEXT_THRESHOLD` or `CROSS_THRESHOLD`)
    and each text reports the other headline's own entities (dates never: a
    different day is a different edition).

    With `exact=False` the text scores (the IDF-weighted ones, most of a
    comparison's cost) are left out where they cannot change `score`, `conflict`,
    `resolved` or the rule: a look-alike whose headline alone comes near
    (`VOTE_LEVEL`) and whose entities differ unreported. `scored` says so; `decide`
    computes them later in the rare case a barred story still needs them."""
    shared = len(a.title & b.title)
    title_score = 0.0
    if shared >= MIN_SHARED:
        # the unweighted cosine of two sets
        title_score = shared / math.sqrt(len(a.title) * len(b.title)) / TITLE_THRESHOLD
    has_text = a.has_text and b.has_text
    text_score = cross_score = 0.0
    scored = not has_text or exact or title_score < VOTE_LEVEL
    if has_text and scored:
        text_score, cross_score = _text_scores(a, b, w)
    score = max(title_score, text_score, cross_score)
    if score < VOTE_LEVEL:
        # too far apart to join or to bar a story whatever names they hold
        return Comparison(
            score,
            title_score,
            text_score,
            cross_score,
            _NONE,
            _NONE,
            _NONE,
            False,
            False,
            False,
            _BELOW,
        )
    if a.dates and b.dates and a.dates.isdisjoint(b.dates):
        # each text says which day it reports on, and not the same one: two editions
        # of a recurring item (an index, a forecast, a price) or a later development
        return Comparison(
            0.0,
            title_score,
            text_score,
            cross_score,
            _NONE,
            a.dates,
            b.dates,
            True,
            False,
            False,
            _DATES,
            scored,
        )
    both, only_a, only_b, positional = _differing(a, b, aliases)
    conflict = bool(only_a and only_b) and (
        positional
        or (_figures(only_a) and _figures(only_b))
        or (
            _alike_apart_from(a, b, only_a, only_b)
            and len(entities.names_only(both)) < SHARED_NAMES
        )
    )
    # a number only one side has is a detail the other left out ("14-year-old"); a
    # number against a number is the figure itself, which the other text must report
    figures = _figures(only_a) and _figures(only_b)
    reported = (
        conflict
        and has_text
        and _reported(only_a if figures else _no_numbers(only_a), b, aliases)
        and _reported(only_b if figures else _no_numbers(only_b), a, aliases)
    )
    if not scored and (reported or not conflict):
        # the outcome rests on the text scores after all
        scored = True
        text_score, cross_score = _text_scores(a, b, w)
        score = max(title_score, text_score, cross_score)
    resolved = reported and max(text_score, cross_score) >= 1.0
    if conflict and not resolved:
        rule = "entities differ"
        final = 0.0
    elif resolved:
        rule = "entities differ, texts agree"
        final = max(text_score, cross_score)
    else:
        final = score
        if score < 1.0:
            rule = "below threshold"
        elif score == title_score:
            rule = "title"
        elif score == text_score:
            rule = "text"
        else:
            rule = "cross"
    return Comparison(
        final,
        title_score,
        text_score,
        cross_score,
        frozenset(both),
        frozenset(only_a),
        frozenset(only_b),
        conflict,
        resolved,
        positional,
        rule,
        scored,
    )


def _text_scores(a: Signature, b: Signature, w: IdfWeights) -> tuple[float, float]:
    """The title+lead cosine and the headline-in-article score of two entries that
    both have text, each scaled to its threshold."""
    return (
        _weighted_cosine(a.everything, b.everything, w) / TEXT_THRESHOLD,
        _cross(a, b, w) / CROSS_THRESHOLD,
    )


def _cross(a: Signature, b: Signature, w: IdfWeights) -> float:
    """How much of each headline the other article reports, IDF-weighted, in [0, 1].

    A headline states the news; another outlet's article about the same news names
    the same people, places and figures somewhere in its text, even when its own
    headline and wording differ. The weaker direction counts double, so a short
    generic headline fully contained in a long article is not enough alone.
    """
    if min(len(a.title), len(b.title)) < CROSS_MIN_TITLE:
        return 0.0
    a_in_b, b_in_a = a.title & b.everything, b.title & a.everything
    if min(len(a_in_b), len(b_in_a)) < CROSS_MIN_SHARED:
        return 0.0
    x = sum(w[t] for t in a_in_b) / w.mass(a.title)
    y = sum(w[t] for t in b_in_a) / w.mass(b.title)
    return (0.5 * min(x, y) + (x + y) / 2) / 1.5


def post_fragment(link: str | None) -> str | None:
    """The fragment of a link when it may name a post on its page, else None.

    Weblogs put a day's posts on one page, each at its anchor (`.../21.html#a060647`):
    the canonical link drops the fragment, and only this tells those posts apart.
    A fragment holding "=" is a click tracker (`#xtor=RSS-3`), not an anchor.
    """
    if not link or "#" not in link:
        return None
    fragment = link.split("#", 1)[1].strip()
    return fragment if fragment and "=" not in fragment else None


def same_post(entry: models.Entry, mate: models.LinkMate) -> bool:
    """Whether a stored entry with the new entry's canonical link is the same post.

    Sharing a page says they are; anything that says they are not wins:
    - both links name an anchor on the page, and not the same one (a weblog's
      day page holds many posts, each at its anchor);
    - they are two items of one feed (two ids) whose titles, or texts, both
      present, differ: the outlet itself lists two posts. The same words under a
      new id are a re-run, and joining it hides nothing.
    Across feeds only the anchor counts: outlets retitle and rewrite one article.
    """
    mine, theirs = post_fragment(entry.link), post_fragment(mate.link)
    if mine and theirs and mine != theirs:
        return False
    if entry.feed == mate.feed:
        if entry.title and mate.title and entry.title != mate.title:
            return False
        mine_text = body_text(entry.title, entry.text).strip()
        theirs_text = body_text(mate.title, mate.text or "").strip()
        if mine_text and theirs_text and mine_text != theirs_text:
            return False
    return True


def link_story(entry: models.Entry, mates: Sequence[models.LinkMate]) -> int | None:
    """The story of the first stored entry with this canonical link that is the
    same post (`same_post`), or None."""
    for mate in mates:
        if same_post(entry, mate):
            return mate.story_id
    return None


def fade(distance: timedelta, window: timedelta) -> float:
    """The factor a score is divided by for two entries `distance` apart (`DECAY`)."""
    scale = DECAY * window or timedelta(seconds=1)  # a zero window still compares
    return 1.0 + (distance / scale) ** 2


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why two entries are or are not one story (`explain`)."""

    one_story: bool
    comparison: Comparison
    #: the time between them and the factor every score was divided by
    apart: timedelta
    fade: float
    #: the comparison's best score after fading; 1.0 is the threshold
    score: float
    #: what decided: the comparison's rule, or "same feed", "outside the window"
    rule: str


def explain(
    a: Signature,
    b: Signature,
    *,
    a_published: datetime,
    b_published: datetime,
    same_feed: bool,
    window: timedelta,
    df: Mapping[str, int] | None = None,
    n_docs: int = 0,
    aliases: entities.Aliases | None = None,
) -> Explanation:
    """`decide`'s judgement of one pair, with the reason: the scores, the shared and
    differing entities, the rule that decided. (A story has more members than one;
    `decide` also counts their votes.)"""
    cmp = compare(b, a, IdfWeights(df, n_docs), aliases)
    apart = abs(a_published - b_published)
    f = fade(apart, window)
    score = max(cmp.title, cmp.text, cmp.cross) / f
    if same_feed:
        return Explanation(False, cmp, apart, f, score, "same feed")
    if apart > window:
        return Explanation(False, cmp, apart, f, score, "outside the window")
    if cmp.conflict and not cmp.resolved:
        return Explanation(False, cmp, apart, f, score, cmp.rule)
    score = cmp.score / f
    rule = cmp.rule if score >= 1.0 else "below threshold"
    return Explanation(score >= 1.0, cmp, apart, f, score, rule)


def term(word: str, key: str) -> str | None:
    """The clustering term of one folded word and its text-core key (None for a
    stopword or noise): what entities are written in."""
    return _term(word, key)


def aliases_of(table: Mapping[str, Sequence[str]]) -> entities.Aliases:
    """The config's `[aliases]` as entities, built once per table."""
    return entities.compile_aliases(table, _term)


@dataclass(frozen=True, slots=True)
class Decision:
    """What `decide` found: the story an entry joins, with its score, and the
    small stories it shows to be the same event (`ABSORB_SIZE`), to be folded in."""

    story: int | None
    #: the joined story's best faded score (1.0 is the threshold); 0.0 for a new story
    score: float = 0.0
    #: stories of at most `ABSORB_SIZE` feeds this entry also joins on its own
    #: score, whose headlines read like the joined story's (`ABSORB_PROFILE`)
    absorbed: tuple[int, ...] = ()


def decide(
    entry: models.Entry,
    candidates: Sequence[Candidate],
    *,
    now: datetime,
    window: timedelta,
    df: Mapping[str, int] | None = None,
    n_docs: int = 0,
    sig: Signature | None = None,
    weights: IdfWeights | None = None,
    aliases: entities.Aliases | None = None,
) -> Decision:
    """The story the entry joins (None for a new story), its score, and the small
    stories it shows to be the same event (`Decision.absorbed`).

    Deterministic: ties go to the lower story id. `now` bounds the entry's time (a
    feed may claim a future date); candidates further than `window` from it are
    ignored, as are stories that already carry an entry of the same feed. Each
    candidate's score fades with its distance in time (`DECAY`). A story whose
    closest member is the same template about another place, person or team
    (`Comparison.positional`) is not joined through its other members: those are
    the look-alike's retellings.
    """
    return _decide(entry, candidates, now, window, df, n_docs, sig, weights, aliases)


def _decide(
    entry: models.Entry,
    candidates: Sequence[Candidate],
    now: datetime,
    window: timedelta,
    df: Mapping[str, int] | None,
    n_docs: int,
    sig: Signature | None,
    weights: IdfWeights | None,
    aliases: entities.Aliases | None,
) -> Decision:
    at = min(entry.published, now)
    scale = DECAY * window or timedelta(seconds=1)  # as `fade`
    mine = sig or signature(entry.title, entry.text)
    if weights is None:
        weights = IdfWeights(df, n_docs)
    best: dict[int, float] = {}
    votes: dict[int, int] = {}
    barred: dict[int, float] = {}
    # the look-alikes (`Comparison.positional`) each story has, with their fade: how
    # near they come decides the story's bar, needed only if it could be joined
    lookalikes: dict[int, list[tuple[Comparison, Signature, float]]] = {}
    # each story's fetched headlines, for folding a small story in (rarely needed:
    # counted only when a second story qualifies)
    headlines: dict[int, list[frozenset[str]]] = {}
    feeds: dict[int, frozenset[str]] = {}
    for c in candidates:
        if entry.feed in c.feeds or abs(at - c.published) > window:
            continue
        c_sig = c.sig or signature(c.title, c.text)
        headlines.setdefault(c.story_id, []).append(c_sig.title)
        feeds[c.story_id] = c.feeds
        cmp = compare(mine, c_sig, weights, aliases, exact=False)
        if cmp.score == 0.0 and not cmp.conflict:
            continue
        f = 1.0 + (abs(at - c.published) / scale) ** 2
        if cmp.conflict and not cmp.resolved:
            if cmp.positional:
                lookalikes.setdefault(c.story_id, []).append((cmp, c_sig, f))
            continue
        score = cmp.score / f
        if score >= VOTE_LEVEL:
            votes[c.story_id] = votes.get(c.story_id, 0) + 1
        best[c.story_id] = max(score, best.get(c.story_id, 0.0))
    for sid in lookalikes.keys() & best.keys():
        for cmp, c_sig, f in lookalikes[sid]:
            text, cross = (
                (cmp.text, cmp.cross) if cmp.scored else _text_scores(mine, c_sig, weights)
            )
            near = max(cmp.title, text, cross) / f
            if near >= 1.0:
                barred[sid] = max(near, barred.get(sid, 0.0))
    # the story with the most supporting members wins, not the single closest one:
    # growing the established story keeps one event from splintering into several
    ok = sorted(
        (
            (votes.get(sid, 0), score, -sid)
            for sid, score in best.items()
            if score > barred.get(sid, 0.0) and (score >= 1.0 or votes.get(sid, 0) >= VOTES)
        ),
        reverse=True,
    )
    if not ok:
        return Decision(None)
    story, score = -ok[0][2], ok[0][1]
    small = [-sid for _, s, sid in ok[1:] if s >= 1.0 and len(feeds[-sid]) <= ABSORB_SIZE]
    if not small:
        return Decision(story, score)
    joined = _words_of([*headlines[story], mine.title])
    absorbed = tuple(
        sid
        for sid in small
        if _profile_cosine(joined, _words_of(headlines[sid]), weights) >= ABSORB_PROFILE
    )
    return Decision(story, score, absorbed)


def _words_of(titles: Iterable[frozenset[str]]) -> Counter[str]:
    """A story's headline words, each counted once per headline."""
    out: Counter[str] = Counter()
    for t in titles:
        out.update(t)
    return out


def _profile_cosine(a: Counter[str], b: Counter[str], w: IdfWeights) -> float:
    """The IDF-weighted cosine of two stories' headline words, each counted once per
    member headline: what the stories are about, not one pair's wording."""
    common = sum(a[t] * b[t] * w[t] ** 2 for t in a.keys() & b.keys())
    if not common:
        return 0.0
    na = math.hypot(*(a[t] * w[t] for t in a))
    nb = math.hypot(*(b[t] * w[t] for t in b))
    return common / (na * nb)


def stored_terms(sig: str) -> frozenset[str]:
    """The terms counted for a stored entry: its packed signature's (for a prune)."""
    return Signature.unpack(sig).everything
