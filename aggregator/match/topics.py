"""Topic queries: parse a query once, then decide for each entry whether it belongs.

Pure: no I/O, no clock, no config reading. The caller builds one `Document` per
entry (folding, tokenizing and stemming happen there, once) and asks every topic's
compiled `Query` about it.

The query language
------------------

=====================  =====================================================
``pakistan``           the word, in any inflection (Snowball stem, see below)
``"Imran Khan"``       exact folded words, consecutive; no stemming
``pak*``               any word starting with ``pak`` (folded, unstemmed)
``@pakistan``          any entry of the alias list ``pakistan``
``a AND b``, ``a b``   both (adjacent terms mean AND)
``a OR b``             either
``NOT a``, ``a NOT b`` without ``a``; ``a NOT b`` is ``a AND NOT b``
``( ... )``            grouping
=====================  =====================================================

Precedence is NOT > AND > OR, so ``a OR b c`` is ``a OR (b AND c)``. Only the
uppercase words AND, OR and NOT are operators, as in Lucene: a lowercase ``and``,
``or`` or ``not`` is an ordinary term (write ``"NOT"`` to search for the word
itself). A leading ``-`` is rejected rather than silently read as a word, since
users coming from web search engines mean NOT by it.

Matching is on whole words: ``pak`` never matches inside ``pakistan`` (use
``pak*``). Words are runs of letters, digits and combining marks after folding;
hyphens, apostrophes and other punctuation split words, so ``Pak-Russia`` holds the
words ``pak`` and ``russia`` and ``Putin's`` holds ``putin``. A bare term that
folds to several words (``Pak-Russia``) is a phrase of stemmed words.

Folding (`fold`), applied to query and text alike: NFKC, casefold, Latin
diacritics removed (é → e, ø → o), Cyrillic ё → е, Arabic-script letter variants
unified (ي ی ى; ك ک ڪ; ه ہ ۂ ۀ ە ة ۃ, and ھ at the start of a word where it is
written for ہ; after a consonant ھ marks aspiration in Urdu and is kept, so پھر
and پہر stay apart), harakat and tatweel removed, Arabic-Indic and Urdu digits to
ASCII, zero-width joiners, soft hyphens and direction marks removed.

Inflection: a bare term matches by Snowball stem. Each word of the entry is
stemmed by its script and the feed's language: Latin script uses the feed's
language when Snowball knows it, else English; Cyrillic uses Russian; Greek uses
Greek; Arabic script is stemmed (Arabic) only when the feed says ``ar``. Urdu and
Persian are folded but not stemmed: the Arabic stemmer strips Arabic suffixes off
Urdu words (پاکستان → پاکست, تعلقات → تعلقا), which conflates unrelated words and
does nothing for Urdu inflection; list Urdu forms (پاکستان, پاکستانی) in aliases.
Russian Snowball reads a final -ан as a verb ending, so Пакистан and Пакистана stem
to ``пакиста`` but Пакистаном and Пакистане to ``пакистан``; a Russian term
therefore also matches words whose stem equals the term itself.

Aliases (``[aliases]`` in the config) are lists of terms. Each entry is one term:
a multi-word entry (``"Imran Khan"``) is a phrase of stemmed words, an entry in
double quotes matches exactly, and an entry ending in ``*`` is a prefix.

`Query.matches` reports the terms that made the entry match, as written in the
query (``pakistan``, ``Imran Khan`` without its quotes, ``pak*``) or, for an
alias, as written in the alias entry (``Пакистан``), deduplicated and in query
order; terms under NOT are never reported.
"""

from __future__ import annotations

import bisect
import re
import sys
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import snowballstemmer

from aggregator.errors import QueryError
from aggregator.ingest import normalize

__all__ = ["Document", "Query", "clear_cache", "compile", "document", "fold", "words"]

# --- folding ---------------------------------------------------------------


def _build_fold_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    # Latin letters with diacritics: strip the marks their NFD form carries.
    for cp in [*range(0xC0, 0x250), *range(0x1E00, 0x1F00)]:
        base = "".join(
            c for c in unicodedata.normalize("NFD", chr(cp)) if not unicodedata.combining(c)
        )
        if base and base != chr(cp):
            table[cp] = base
    # Latin letters that carry their mark in the glyph, not as a combining char.
    for src, dst in {
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ł": "l",
        "ħ": "h",
        "ı": "i",
        "æ": "ae",
        "œ": "oe",
        "þ": "th",
        "ŧ": "t",
        "ƀ": "b",
    }.items():
        table[ord(src)] = dst
    # Combining marks NFKC could not compose onto a letter (Russian stress marks,
    # stray accents) carry no meaning for matching. NFKC has already composed
    # й and ё, so this never breaks a Cyrillic letter.
    for cp in range(0x0300, 0x0370):
        table[cp] = None
    table[ord("ё")] = "е"
    # Arabic script: one letter per sound, the Arabic code points, so that the
    # Arabic stemmer (used for `ar` feeds) sees the letters it knows.
    for src in "یىۍېۑ":
        table[ord(src)] = "ي"
    for src in "کڪ":
        table[ord(src)] = "ك"
    for src in "ہۂۀەةۃ":
        table[ord(src)] = "ه"
    for src in "أإٱ":
        table[ord(src)] = "ا"
    # harakat, superscript alef, Quranic annotation marks, tatweel
    for cp in [*range(0x064B, 0x0660), 0x0670, *range(0x06D6, 0x06DD), *range(0x06DF, 0x06E9)]:
        table[cp] = None
    for cp in range(0x06EA, 0x06EE):
        table[cp] = None
    table[0x0640] = None
    # Arabic-Indic, Extended Arabic-Indic (Urdu/Persian) and Devanagari digits
    for zero in (0x0660, 0x06F0, 0x0966):
        for i in range(10):
            table[zero + i] = str(i)
    # Invisible characters that sit inside words: ZWNJ/ZWJ (Urdu, Persian), soft
    # hyphen, word joiner, BOM, direction marks and embeddings.
    for cp in (0x00AD, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x200E, 0x200F, 0x061C):
        table[cp] = None
    for cp in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        table[cp] = None
    # A zero-width space separates words (Thai, Khmer, some CMS output).
    table[0x200B] = " "
    return table


_FOLD_TABLE = _build_fold_table()
# str.translate costs a dict lookup per character; most text needs none, and a
# regex scan for the characters that do is far cheaper than translating blindly.
_NEEDS_TABLE = re.compile("[" + "".join(re.escape(chr(cp)) for cp in sorted(_FOLD_TABLE)) + "]")
# ھ written at the start of a word stands for ہ (Arabic keyboards); it folds to ه.
_INITIAL_DO_CHASHMI = re.compile(r"(?<!\w)ھ")


def fold(text: str) -> str:
    """Fold text for matching, so that spelling variants of one word compare equal.

    The query and the entry text go through the same function; anything folded
    here can never distinguish two matches.
    """
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", text).casefold()
    if _NEEDS_TABLE.search(text):
        text = text.translate(_FOLD_TABLE)
    if "ھ" in text:
        text = _INITIAL_DO_CHASHMI.sub("ه", text)
    return text


# A word: letters, digits and combining marks; "_" is replaced first, so that
# snake_case splits like a hyphen (one character class scans faster than two).
_WORD = re.compile(f"[\\w{normalize.mark_class()}]+")
#: the same words in ASCII text, which has no marks: scanning with the plain class is
#: three times faster, and most copy is English
_ASCII_WORD = re.compile(r"\w+", re.ASCII)


def words(folded: str) -> list[str]:
    """Split already-folded text into words on Unicode word boundaries."""
    if "_" in folded:
        folded = folded.replace("_", " ")
    return (_ASCII_WORD if folded.isascii() else _WORD).findall(folded)


# --- stemming --------------------------------------------------------------

_LATIN, _CYRILLIC, _GREEK, _ARABIC, _OTHER = "latin", "cyrillic", "greek", "arabic", "other"

#: ISO 639-1 code -> (Snowball algorithm, script it stems)
_SNOWBALL: dict[str, tuple[str, str]] = {
    "en": ("english", _LATIN),
    "ca": ("catalan", _LATIN),
    "cs": ("czech", _LATIN),
    "da": ("danish", _LATIN),
    "de": ("german", _LATIN),
    "es": ("spanish", _LATIN),
    "et": ("estonian", _LATIN),
    "eu": ("basque", _LATIN),
    "fi": ("finnish", _LATIN),
    "fr": ("french", _LATIN),
    "ga": ("irish", _LATIN),
    "hu": ("hungarian", _LATIN),
    "id": ("indonesian", _LATIN),
    "it": ("italian", _LATIN),
    "lt": ("lithuanian", _LATIN),
    "nl": ("dutch", _LATIN),
    "no": ("norwegian", _LATIN),
    "nb": ("norwegian", _LATIN),
    "nn": ("norwegian", _LATIN),
    "pl": ("polish", _LATIN),
    "pt": ("portuguese", _LATIN),
    "ro": ("romanian", _LATIN),
    "sv": ("swedish", _LATIN),
    "tr": ("turkish", _LATIN),
    "ru": ("russian", _CYRILLIC),
    "el": ("greek", _GREEK),
    "ar": ("arabic", _ARABIC),
}
_AVAILABLE = set(snowballstemmer.algorithms())
_SNOWBALL = {code: v for code, v in _SNOWBALL.items() if v[0] in _AVAILABLE}

#: the stemmer a script gets when the feed's language does not name one for it;
#: "" means fold only (Urdu and Persian share Arabic script but not its suffixes)
_DEFAULT_LANG = {_LATIN: "en", _CYRILLIC: "ru", _GREEK: "el", _ARABIC: "", _OTHER: ""}
#: languages written in Cyrillic that Russian Snowball would mangle
_OTHER_CYRILLIC = {"uk", "be", "bg", "mk", "sr", "kk", "ky", "mn", "tg", "tt"}

#: every stemmer a word of each script can get, whatever the feed's language;
#: a query term is stemmed with all of them at compile time
_SCRIPT_LANGS: dict[str, tuple[str, ...]] = {
    script: tuple(
        sorted(
            {_DEFAULT_LANG[script], *(c for c, (_, s) in _SNOWBALL.items() if s == script)}
            | ({""} if script == _CYRILLIC else set())
        )
    )
    for script in _DEFAULT_LANG
}


def _script(word: str) -> str:
    """The script of a word's first letter (digits alone are "other")."""
    for ch in word:
        cp = ord(ch)
        if cp < 0x250 or 0x1E00 <= cp < 0x1F00:
            if ch.isalpha():
                return _LATIN
            continue
        if 0x400 <= cp < 0x530:
            return _CYRILLIC
        if 0x370 <= cp < 0x400 or 0x1F00 <= cp < 0x2000:
            return _GREEK
        if 0x600 <= cp < 0x700 or 0x750 <= cp < 0x780 or 0xFB50 <= cp < 0xFF00:
            return _ARABIC
        if ch.isalpha():
            return _OTHER
    return _OTHER


def _language(hint: str | None) -> str | None:
    """The primary subtag of a feed's language ("ru-RU" -> "ru")."""
    if not hint:
        return None
    return re.split(r"[-_]", hint.strip(), maxsplit=1)[0].lower() or None


def _lang_for(script: str, language: str | None) -> str:
    """The stemmer for a word of `script` in a feed written in `language`."""
    if language is not None:
        known = _SNOWBALL.get(language)
        if known is not None and known[1] == script:
            return language
        if script == _CYRILLIC and language in _OTHER_CYRILLIC:
            return ""
    return _DEFAULT_LANG[script]


_local = threading.local()


def _stem(lang: str, word: str) -> str:
    """Stem one folded word; Snowball stemmer objects keep state, so one per thread."""
    stemmers: dict[str, snowballstemmer.Stemmer] | None = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {}
    stemmer = stemmers.get(lang)
    if stemmer is None:
        stemmer = stemmers[lang] = normalize.stemmer(_SNOWBALL[lang][0])
    return str(stemmer.stemWord(word))


def _word_key(word: str, language: str | None) -> str:
    """The key a word of an entry is indexed under: "<lang>:<stem>"."""
    lang = _lang_for(_script(word), language)
    return f"{lang}:{_stem(lang, word) if lang else word}"


#: feed language -> word -> key. News vocabulary repeats heavily across entries; a
#: plain dict looked up with map() is the cheapest cache there is (a quarter of the
#: time to prepare the corpus's entries a second time). Emptied when it grows past
#: _CACHE_LIMIT: a word costs the cache about 230 bytes, and a daemon that runs for
#: weeks meets names and typos without end (500,000 words would be 110 MiB).
_KEY_CACHE: dict[str | None, dict[str, str]] = {}
_CACHE_LIMIT = 50_000


def _keys(ws: Sequence[str], language: str | None) -> list[str]:
    """The key of every word; "" for the title/text gap."""
    if sum(map(len, _KEY_CACHE.values())) > _CACHE_LIMIT:  # one bound for all languages
        _KEY_CACHE.clear()
    cache = _KEY_CACHE.get(language)
    if cache is None:
        cache = _KEY_CACHE[language] = {"": ""}
    keys = list(map(cache.get, ws))
    if None in keys:
        for i, key in enumerate(keys):
            if key is None:
                word = ws[i]
                key = cache.get(word)
                if key is None:
                    # interned: dedupe's cache holds the same words
                    key = cache[sys.intern(word)] = _word_key(word, language)
                keys[i] = key
    return keys  # type: ignore[return-value]


def clear_cache() -> None:
    """Forget every cached stem (for measurements of a cold start)."""
    _KEY_CACHE.clear()


def _term_keys(word: str) -> dict[str, tuple[str, ...]]:
    """Keys a bare query word matches, per stemmer: any stemmer an entry might use."""
    keys: dict[str, tuple[str, ...]] = {}
    for lang in _SCRIPT_LANGS[_script(word)]:
        if not lang:
            keys[lang] = (f":{word}",)
            continue
        stem = _stem(lang, word)
        # Russian: see the module docstring (Пакистан -> пакиста, Пакистаном -> пакистан).
        alts = (stem, word) if lang == "ru" and stem != word else (stem,)
        keys[lang] = tuple(f"{lang}:{s}" for s in alts)
    return keys


# --- documents -------------------------------------------------------------


class Document:
    """One entry, folded, split into words and stemmed once, to test against every topic.

    Title and text are indexed as one sequence with a gap between them, so a
    phrase never runs from the end of the title into the text.
    """

    __slots__ = (
        "words",
        "keys",
        "word_set",
        "key_set",
        "language",
        "_word_positions",
        "_key_positions",
        "_sorted_words",
    )

    def __init__(self, words: Sequence[str], keys: Sequence[str], language: str | None) -> None:
        #: folded words in order; "" marks the gap between title and text
        self.words: tuple[str, ...] = tuple(words)
        #: "<lang>:<stem>" per word, aligned with `words`
        self.keys: tuple[str, ...] = tuple(keys)
        self.word_set: frozenset[str] = frozenset(self.words)
        self.key_set: frozenset[str] = frozenset(self.keys)
        #: the feed's language (primary subtag), which chose the stemmers
        self.language = language
        self._word_positions: dict[str, list[int]] | None = None
        self._key_positions: dict[str, list[int]] | None = None
        self._sorted_words: list[str] | None = None

    def word_positions(self) -> dict[str, list[int]]:
        """Positions of each folded word; built on the first phrase that needs it."""
        if self._word_positions is None:
            self._word_positions = _positions(self.words)
        return self._word_positions

    def key_positions(self) -> dict[str, list[int]]:
        """Positions of each stem key; built on the first stemmed phrase."""
        if self._key_positions is None:
            self._key_positions = _positions(self.keys)
        return self._key_positions

    def words_with_prefix(self, prefix: str) -> list[str]:
        """The distinct words starting with `prefix`, by bisecting a sorted word list."""
        if self._sorted_words is None:
            self._sorted_words = sorted(self.word_set)
        found = []
        i = bisect.bisect_left(self._sorted_words, prefix)
        while i < len(self._sorted_words) and self._sorted_words[i].startswith(prefix):
            found.append(self._sorted_words[i])
            i += 1
        return found

    def __repr__(self) -> str:
        return f"<Document {len(self.words)} words>"


def _positions(items: Iterable[str]) -> dict[str, list[int]]:
    positions: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item:
            positions.setdefault(item, []).append(i)
    return positions


def document(title: str, text: str, language: str | None = None) -> Document:
    """Index an entry for matching; `language` is the feed's language hint, if any."""
    lang = _language(language)
    ws = words(fold(title))
    ws.append("")
    ws.extend(words(fold(text)))
    return Document(ws, _keys(ws, lang), lang)


# --- the compiled query ----------------------------------------------------


class _Node:
    def test(self, doc: Document) -> bool:
        raise NotImplementedError

    def collect(self, doc: Document, out: list[str]) -> None:
        """Append the labels of matching leaves that made this (true) node true."""
        raise NotImplementedError


class _Stem:
    """One word matched by stem."""

    __slots__ = ("keys", "_by_language")

    def __init__(self, word: str) -> None:
        self.keys = _term_keys(word)
        self._by_language: dict[str | None, tuple[str, ...]] = {}

    def keys_for(self, language: str | None) -> tuple[str, ...]:
        """The keys an entry in `language` can hold for this word: usually one."""
        keys = self._by_language.get(language)
        if keys is None:
            langs = {_lang_for(script, language) for script in _DEFAULT_LANG}
            keys = tuple(k for lang in sorted(langs) for k in self.keys.get(lang, ()))
            self._by_language[language] = keys
        return keys

    def present(self, doc: Document) -> bool:
        key_set = doc.key_set
        for key in self.keys_for(doc.language):
            if key in key_set:
                return True
        return False

    def positions(self, doc: Document) -> set[int]:
        found: set[int] = set()
        kp = doc.key_positions()
        for key in self.keys_for(doc.language):
            found.update(kp.get(key, ()))
        return found


class _Exact:
    """One word matched in its folded form, unstemmed."""

    __slots__ = ("word",)

    def __init__(self, word: str) -> None:
        self.word = word

    def present(self, doc: Document) -> bool:
        return self.word in doc.word_set

    def positions(self, doc: Document) -> set[int]:
        return set(doc.word_positions().get(self.word, ()))


class _Prefix:
    """Any folded, unstemmed word that starts with the prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def present(self, doc: Document) -> bool:
        return bool(doc.words_with_prefix(self.prefix))

    def positions(self, doc: Document) -> set[int]:
        wp = doc.word_positions()
        found: set[int] = set()
        for w in doc.words_with_prefix(self.prefix):
            found.update(wp[w])
        return found


_Part = _Stem | _Exact | _Prefix


class _Leaf(_Node):
    """A term: one word, or a phrase of consecutive words."""

    __slots__ = ("label", "parts")

    def __init__(self, label: str, parts: Sequence[_Part]) -> None:
        self.label = label
        self.parts = tuple(parts)

    def test(self, doc: Document) -> bool:
        parts = self.parts
        if len(parts) == 1:
            return parts[0].present(doc)
        if not all(p.present(doc) for p in parts):
            return False
        starts = parts[0].positions(doc)
        for offset, part in enumerate(parts[1:], 1):
            starts &= {p - offset for p in part.positions(doc)}
            if not starts:
                return False
        return True

    def collect(self, doc: Document, out: list[str]) -> None:
        out.append(self.label)

    def __repr__(self) -> str:
        return f"Term({self.label!r})"


class _Any(_Node):
    """OR, and also an alias (a named OR of terms).

    Its one-word children are tested together: the keys (or exact words) of all
    of them form one set, checked against the entry with a single isdisjoint(),
    which is what makes a 14-entry alias cost about as much as one term.
    """

    __slots__ = ("children", "_stems", "_exact", "_rest", "_by_language")

    def __init__(self, children: Sequence[_Node]) -> None:
        self.children = tuple(children)
        self._stems: list[_Stem] = []
        exact: set[str] = set()
        rest: list[_Node] = []
        for child in self.children:
            part = child.parts[0] if isinstance(child, _Leaf) and len(child.parts) == 1 else None
            if isinstance(part, _Stem):
                self._stems.append(part)
            elif isinstance(part, _Exact):
                exact.add(part.word)
            else:
                rest.append(child)
        self._exact = frozenset(exact)
        self._rest = tuple(rest)
        self._by_language: dict[str | None, frozenset[str]] = {}

    def test(self, doc: Document) -> bool:
        keys = self._by_language.get(doc.language)
        if keys is None:
            keys = frozenset(k for stem in self._stems for k in stem.keys_for(doc.language))
            self._by_language[doc.language] = keys
        if not keys.isdisjoint(doc.key_set) or not self._exact.isdisjoint(doc.word_set):
            return True
        for child in self._rest:
            if child.test(doc):
                return True
        return False

    def collect(self, doc: Document, out: list[str]) -> None:
        for child in self.children:
            if child.test(doc):
                child.collect(doc, out)

    def __repr__(self) -> str:
        return f"Or{self.children!r}"


class _All(_Node):
    __slots__ = ("children",)

    def __init__(self, children: Sequence[_Node]) -> None:
        self.children = tuple(children)

    def test(self, doc: Document) -> bool:
        for child in self.children:
            if not child.test(doc):
                return False
        return True

    def collect(self, doc: Document, out: list[str]) -> None:
        for child in self.children:
            child.collect(doc, out)

    def __repr__(self) -> str:
        return f"And{self.children!r}"


class _Not(_Node):
    __slots__ = ("child",)

    def __init__(self, child: _Node) -> None:
        self.child = child

    def test(self, doc: Document) -> bool:
        return not self.child.test(doc)

    def collect(self, doc: Document, out: list[str]) -> None:
        # An absent word is not a reason worth reporting.
        return

    def __repr__(self) -> str:
        return f"Not({self.child!r})"


@dataclass(frozen=True, slots=True)
class Query:
    """A compiled topic query; `matches` is called once per entry and topic."""

    #: the query as written in the config, None for a topic with no query
    source: str | None
    #: every term's label (as `matches` reports it), deduplicated, in query order
    terms: tuple[str, ...]
    _root: _Node | None

    def matches(self, doc: Document) -> tuple[str, ...] | None:
        """The terms that matched (see the module docstring), or None for no match.

        A topic with no query matches everything with no terms: ``()``.
        """
        root = self._root
        if root is None:
            return ()
        if not root.test(doc):
            return None
        labels: list[str] = []
        root.collect(doc, labels)
        return tuple(dict.fromkeys(labels))

    def __repr__(self) -> str:
        return f"Query({self.source!r})"


# --- parsing ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(", ")", "AND", "OR", "NOT", "word", "phrase", "alias", "end"
    text: str  # the word, the phrase inside its quotes, or the alias name
    pos: int


_OPERATORS = {"AND", "OR", "NOT"}
#: far beyond any real query, well within Python's recursion limit
_MAX_DEPTH = 64
_ALIAS_NAME = re.compile(r"[^\W\d][\w-]*")


def _lex(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch == '"':
            end = source.find('"', i + 1)
            if end < 0:
                raise QueryError("unterminated quote", i)
            if not source[i + 1 : end].strip():
                raise QueryError("empty quotes", i)
            tokens.append(_Token("phrase", source[i + 1 : end], i))
            i = end + 1
        else:
            j = i
            while j < n and not source[j].isspace() and source[j] not in '()"':
                j += 1
            text = source[i:j]
            if text in _OPERATORS:
                tokens.append(_Token(text, text, i))
            elif text.startswith("@"):
                name = text[1:]
                if not _ALIAS_NAME.fullmatch(name):
                    raise QueryError(f"bad alias name {text!r}", i)
                tokens.append(_Token("alias", name, i))
            else:
                if text.startswith("-") and len(text) > 1:
                    raise QueryError(f"'-' is not an operator; write NOT {text[1:]}", i)
                star = text.find("*")
                if star == 0:
                    raise QueryError("'*' needs a word before it", i)
                if 0 < star < len(text) - 1:
                    raise QueryError("'*' may only end a word", i + star)
                tokens.append(_Token("word", text, i))
            i = j
    tokens.append(_Token("end", "", n))
    return tokens


class _Parser:
    """Recursive descent over: or := and (OR and)*; and := not (AND? not)*;
    not := NOT not | primary; primary := term | "(" or ")"."""

    def __init__(self, source: str, aliases: Mapping[str, Sequence[str]]) -> None:
        self.tokens = _lex(source)
        self.i = 0
        self.aliases = {name.casefold(): entries for name, entries in aliases.items()}
        self.labels: list[str] = []
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> _Node:
        node = self.parse_or()
        token = self.peek()
        if token.kind == ")":
            raise QueryError("')' without a matching '('", token.pos)
        if token.kind != "end":  # pragma: no cover - every other token starts a term
            raise QueryError(f"unexpected {token.text!r}", token.pos)
        return node

    def parse_or(self) -> _Node:
        children = [self.parse_and()]
        while self.peek().kind == "OR":
            self.take()
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else _Any(children)

    def parse_and(self) -> _Node:
        children = [self.parse_not()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.take()
            elif kind not in ("word", "phrase", "alias", "(", "NOT"):
                break
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else _All(children)

    def parse_not(self) -> _Node:
        negations = 0
        while self.peek().kind == "NOT":
            self.take()
            negations += 1
        node = self.parse_primary()
        # NOT NOT x is x; a loop, not recursion, so a long run of NOTs cannot blow the stack.
        return _Not(node) if negations % 2 else node

    def parse_primary(self) -> _Node:
        token = self.take()
        if token.kind == "(":
            if self.peek().kind == ")":
                raise QueryError("empty parentheses", token.pos)
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise QueryError("parentheses nested too deeply", token.pos)
            node = self.parse_or()
            self.depth -= 1
            close = self.take()
            if close.kind != ")":
                raise QueryError("'(' is never closed", token.pos)
            return node
        if token.kind == "word":
            return self.leaf(token.text, token.text, quoted=False, pos=token.pos)
        if token.kind == "phrase":
            return self.leaf(token.text.strip(), token.text, quoted=True, pos=token.pos)
        if token.kind == "alias":
            return self.alias(token)
        # An operator, ")" or the end where a term should be: blame the operator.
        previous = self.tokens[self.i - 2] if self.i >= 2 else None
        if previous is not None and previous.kind in _OPERATORS:
            raise QueryError(f"{previous.kind} needs a term after it", previous.pos)
        if token.kind in ("AND", "OR"):
            raise QueryError(f"{token.kind} needs a term before it", token.pos)
        if token.kind == ")":
            raise QueryError("')' without a matching '('", token.pos)
        if token.kind == "end":
            raise QueryError("empty query (leave out `query` to match every entry)", token.pos)
        raise QueryError(f"unexpected {token.text!r}", token.pos)  # pragma: no cover

    def leaf(self, label: str, text: str, *, quoted: bool, pos: int) -> _Leaf:
        prefix = not quoted and text.endswith("*")
        ws = words(fold(text[:-1] if prefix else text))
        if not ws:
            raise QueryError(f"{label!r} has no letters or digits to match", pos)
        parts: list[_Part] = [_Exact(w) if quoted else _Stem(w) for w in ws]
        if prefix:
            parts[-1] = _Prefix(ws[-1])
        self.labels.append(label)
        return _Leaf(label, parts)

    def alias(self, token: _Token) -> _Node:
        entries = self.aliases.get(token.text.casefold())
        if entries is None:
            raise QueryError(f"unknown alias @{token.text}", token.pos)
        if isinstance(entries, str) or not entries:
            raise QueryError(f"alias @{token.text} must be a non-empty list of terms", token.pos)
        children: list[_Node] = []
        for entry in entries:
            entry = entry.strip()
            if entry.startswith("@"):
                raise QueryError(
                    f"alias @{token.text}: entry {entry!r} refers to an alias; "
                    "aliases hold terms only",
                    token.pos,
                )
            quoted = len(entry) >= 2 and entry[0] == entry[-1] == '"'
            text = entry[1:-1].strip() if quoted else entry
            if not quoted and entry.endswith("*") and "*" in entry[:-1]:
                raise QueryError(f"alias @{token.text}: '*' may only end {entry!r}", token.pos)
            try:
                children.append(self.leaf(text, text, quoted=quoted, pos=token.pos))
            except QueryError as e:
                raise QueryError(f"alias @{token.text}: {e.message}", token.pos) from None
        return children[0] if len(children) == 1 else _Any(children)


def compile(query: str | None, aliases: Mapping[str, Sequence[str]] | None = None) -> Query:
    """Parse a topic query, resolving @aliases, into a `Query` ready to match.

    Named like `re.compile` (shadowing the builtin inside this module only) because
    callers read it as `topics.compile(query)`.

    Raises QueryError with the 0-based position of the problem in `query`.
    """
    if query is None:
        return Query(None, (), None)
    parser = _Parser(query, aliases or {})
    root = parser.parse()
    return Query(query, tuple(dict.fromkeys(parser.labels)), root)
