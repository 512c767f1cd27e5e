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

Query and text are folded, split into words and stemmed by the text core
(`aggregator.text`, whose docstring lists the folding rules), so spelling variants
compare equal and a bare term matches by Snowball stem of the word's script and the
feed's language. Urdu and Persian are folded but not stemmed: list Urdu forms
(پاکستان, پاکستانی) in aliases.
Russian Snowball reads a final -ан as a verb ending, so Пакистан and Пакистана stem
to ``пакиста`` but Пакистаном and Пакистане to ``пакистан``; a Russian term
therefore also matches words whose stem equals the term itself.

Aliases (``[aliases]`` in the config) are lists of terms. Each entry is one term:
a multi-word entry (``"Imran Khan"``) is a phrase of stemmed words, an entry in
double quotes matches exactly, and an entry ending in ``*`` is a prefix.

Scripts written without spaces between words (Chinese, Japanese, Thai, Lao,
Khmer, Myanmar) have no word boundaries to match on: a term in them matches as a
substring of the text's folded word runs, so ``巴基斯坦`` matches inside
``巴基斯坦和俄罗斯签署协议``. Quoting or ``*`` changes nothing for such a term.

`Query.matches` reports the words of the text that made the entry match, as the
text writes them (``Pakistani`` for ``pak*``, ``Пакистана`` for ``Пакистан``,
``Imran Khan`` for a phrase), in query order and then text order, each word once
(compared folded); words under NOT are never reported. `Query.explain` says why
an entry matched or not, term by term.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aggregator.errors import QueryError
from aggregator.text import (
    SCRIPT_LANGS,
    SCRIPTS,
    EntryWords,
    fold,
    language_code,
    stem,
    stemmer_for,
    unspaced,
    words,
)
from aggregator.text import keys as word_keys
from aggregator.text import script as script_of

__all__ = ["Document", "Explanation", "Query", "advice", "compile", "document", "term_keys"]


def _term_keys(word: str) -> dict[str, tuple[str, ...]]:
    """Keys a bare query word matches, per stemmer: any stemmer an entry might use."""
    keys: dict[str, tuple[str, ...]] = {}
    for lang in SCRIPT_LANGS[script_of(word)]:
        if not lang:
            keys[lang] = (f":{word}",)
            continue
        stemmed = stem(lang, word)
        # Russian: see the module docstring (Пакистан -> пакиста, Пакистаном -> пакистан).
        alts = (stemmed, word) if lang == "ru" and stemmed != word else (stemmed,)
        keys[lang] = tuple(f"{lang}:{s}" for s in alts)
    return keys


def term_keys(word: str) -> frozenset[str]:
    """Every key a bare, folded query word matches, whatever language an entry is in
    (for showing where a term matched, not for deciding whether it did)."""
    return frozenset(k for ks in _term_keys(word).values() for k in ks)


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
        "_raw",
        "_surface",
    )

    def __init__(
        self,
        words: Sequence[str],
        keys: Sequence[str],
        language: str | None,
        raw: tuple[str, ...] = (),
    ) -> None:
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
        #: the title and text as the feed wrote them, for `surface`
        self._raw = raw
        self._surface: dict[str, str] | None = None

    def surface(self, folded: str) -> str:
        """A folded word as the text writes it (``pakistani`` -> ``Pakistani``): the
        first raw word that folds to it, or the folded word when folding joined or
        split words (a ZWNJ inside an Urdu word).

        Only matched words are looked up, so each is searched for case-insensitively
        in the raw text first; folding every word of the text is the fallback (Latin
        diacritics, Arabic letter variants), built once per document.
        """
        if self._surface is None:
            self._surface = {}
        shown = self._surface.get(folded)
        if shown is not None:
            return shown
        pattern = re.compile(rf"(?<!\w){re.escape(folded)}(?!\w)", re.IGNORECASE)
        for part in self._raw:
            found = pattern.search(part)
            if found is not None and fold(found.group()) == folded:
                shown = found.group()
                break
        else:
            if "" not in self._surface:  # "": every word of the text is in already
                for part in self._raw:
                    for w in words(part):
                        self._surface.setdefault(fold(w), w)
                self._surface[""] = ""
            shown = self._surface.get(folded, folded)
        self._surface[folded] = shown
        return shown

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


def document(
    title: str, text: str, language: str | None = None, split: EntryWords | None = None
) -> Document:
    """Index an entry for matching; `language` is the feed's language hint, if any;
    `split` its words, if dedupe's analysis shares them."""
    lang = language_code(language)
    split = split or EntryWords(title, text)
    ws = [*split.title, "", *split.text]
    return Document(ws, word_keys(ws, lang), lang, (title, text))


# --- the compiled query ----------------------------------------------------


#: (the term as written in the query, the folded words of the text it matched)
Found = tuple[str, tuple[str, ...]]


class _Node:
    #: the node as written in the query (for explanations)
    text: str = ""

    def test(self, doc: Document) -> bool:
        raise NotImplementedError

    def collect(self, doc: Document, out: list[Found]) -> None:
        """Append the matching leaves that made this (true) node true."""
        raise NotImplementedError

    def leaves(self) -> Iterable[_Leaf]:
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
            langs = {stemmer_for(script, language) for script in SCRIPTS}
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


class _Infix:
    """A word of a script written without spaces: found inside the text's word runs."""

    __slots__ = ("sub",)

    def __init__(self, sub: str) -> None:
        self.sub = sub

    def present(self, doc: Document) -> bool:
        sub = self.sub
        return any(sub in w for w in doc.word_set)

    def positions(self, doc: Document) -> set[int]:
        wp = doc.word_positions()
        return {i for w, at in wp.items() if self.sub in w for i in at}


_Part = _Stem | _Exact | _Prefix | _Infix


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

    def starts(self, doc: Document) -> list[int]:
        """Where the term starts in the document's words, in text order."""
        parts = self.parts
        starts = parts[0].positions(doc)
        for offset, part in enumerate(parts[1:], 1):
            starts &= {p - offset for p in part.positions(doc)}
        return sorted(starts)

    def found(self, doc: Document) -> tuple[str, ...]:
        """The folded words (a phrase's joined by spaces) the term matched, in text
        order, each once; a term of an unspaced script is its own match."""
        ws = doc.words
        if len(self.parts) == 1:  # most terms: no positions needed
            part = self.parts[0]
            if isinstance(part, _Exact):
                return (part.word,)
            if isinstance(part, _Infix):
                return (part.sub,)
            if isinstance(part, _Stem):
                keys = set(part.keys_for(doc.language))
                return tuple(
                    dict.fromkeys(w for w, k in zip(ws, doc.keys, strict=True) if k in keys)
                )
            wanted = set(doc.words_with_prefix(part.prefix))
            return tuple(dict.fromkeys(w for w in ws if w in wanted))
        out: dict[str, None] = {}
        for start in self.starts(doc):
            shown = [
                part.sub if isinstance(part, _Infix) else ws[start + i]
                for i, part in enumerate(self.parts)
            ]
            out[" ".join(shown)] = None
        return tuple(out)

    def collect(self, doc: Document, out: list[Found]) -> None:
        out.append((self.label, self.found(doc)))

    def leaves(self) -> Iterable[_Leaf]:
        yield self

    def __repr__(self) -> str:
        return f"Term({self.label!r})"


class _Any(_Node):
    """OR, and also an alias (a named OR of terms).

    Its one-word children are tested together: the keys (or exact words) of all
    of them form one set, checked against the entry with a single isdisjoint(),
    which is what makes a 14-entry alias cost about as much as one term.
    """

    __slots__ = ("children", "text", "_stems", "_exact", "_rest", "_by_language")

    def __init__(self, children: Sequence[_Node], text: str = "") -> None:
        self.children = tuple(children)
        self.text = text
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

    def collect(self, doc: Document, out: list[Found]) -> None:
        for child in self.children:
            if child.test(doc):
                child.collect(doc, out)

    def leaves(self) -> Iterable[_Leaf]:
        for child in self.children:
            yield from child.leaves()

    def __repr__(self) -> str:
        return f"Or{self.children!r}"


class _All(_Node):
    __slots__ = ("children", "text")

    def __init__(self, children: Sequence[_Node], text: str = "") -> None:
        self.children = tuple(children)
        self.text = text

    def test(self, doc: Document) -> bool:
        for child in self.children:
            if not child.test(doc):
                return False
        return True

    def collect(self, doc: Document, out: list[Found]) -> None:
        for child in self.children:
            child.collect(doc, out)

    def leaves(self) -> Iterable[_Leaf]:
        for child in self.children:
            yield from child.leaves()

    def __repr__(self) -> str:
        return f"And{self.children!r}"


class _Not(_Node):
    __slots__ = ("child", "text")

    def __init__(self, child: _Node, text: str = "") -> None:
        self.child = child
        self.text = text

    def test(self, doc: Document) -> bool:
        return not self.child.test(doc)

    def collect(self, doc: Document, out: list[Found]) -> None:
        # An absent word is not a reason worth reporting.
        return

    def leaves(self) -> Iterable[_Leaf]:
        yield from self.child.leaves()

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
        """The words of the text that matched, as it writes them (see the module
        docstring), or None for no match.

        A topic with no query matches everything with no words: ``()``.
        """
        root = self._root
        if root is None:
            return ()
        if not root.test(doc):
            return None
        found: list[Found] = []
        root.collect(doc, found)
        return _shown(doc, (w for _, ws in found for w in ws))

    def explain(self, doc: Document) -> Explanation:
        """Why `doc` matches or not: each term found in it with the words it found
        (also on a miss, and under NOT), the required parts that found nothing and
        the NOTs that excluded it."""
        root = self._root
        if root is None:
            return Explanation(True, (), (), ())
        found = tuple(
            (leaf.label, _shown(doc, leaf.found(doc)))
            for leaf in dict.fromkeys(root.leaves())
            if leaf.test(doc)
        )
        if root.test(doc):
            return Explanation(True, found, (), ())
        missing: list[str] = []
        excluded: list[tuple[str, tuple[str, ...]]] = []
        _why_not(doc, root, missing, excluded)
        return Explanation(False, found, tuple(missing), tuple(excluded))

    def __repr__(self) -> str:
        return f"Query({self.source!r})"


@dataclass(frozen=True, slots=True)
class Explanation:
    """`Query.explain`: what an entry has of a topic's query."""

    matched: bool
    #: every term the text holds (in query order), with the words it found there
    found: tuple[tuple[str, tuple[str, ...]], ...]
    #: on a miss: the required parts of the query, as written, that found nothing
    missing: tuple[str, ...]
    #: on a miss: the NOT parts that excluded the text, with the words they found
    excluded: tuple[tuple[str, tuple[str, ...]], ...]

    def lines(self) -> list[str]:
        """For `aggregator match`: the verdict's reasons, one per line."""
        out = [f"not found: {part}" for part in self.missing]
        out += [f"excluded by {part}: found {', '.join(ws)}" for part, ws in self.excluded]
        out += [f"found {label}: {', '.join(ws)}" for label, ws in self.found]
        return out


def _shown(doc: Document, folded: Iterable[str]) -> tuple[str, ...]:
    """Folded words as the text writes them, each once."""
    out: dict[str, str] = {}
    for w in folded:
        if w not in out:
            out[w] = " ".join(doc.surface(part) for part in w.split(" "))
    return tuple(out.values())


def _why_not(
    doc: Document,
    node: _Node,
    missing: list[str],
    excluded: list[tuple[str, tuple[str, ...]]],
) -> None:
    """The reasons a false node is false: the false parts of an AND, one by one."""
    if isinstance(node, _All):
        for child in node.children:
            if not child.test(doc):
                _why_not(doc, child, missing, excluded)
    elif isinstance(node, _Not):
        found: list[Found] = []
        node.child.collect(doc, found)
        excluded.append((node.text, _shown(doc, (w for _, ws in found for w in ws))))
    else:
        missing.append(node.text if not isinstance(node, _Leaf) else node.label)


# --- parsing ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(", ")", "AND", "OR", "NOT", "word", "phrase", "alias", "end"
    text: str  # the word, the phrase inside its quotes, or the alias name
    pos: int
    end: int = 0  # where it ends in the query


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
            tokens.append(_Token(ch, ch, i, i + 1))
            i += 1
        elif ch == '"':
            end = source.find('"', i + 1)
            if end < 0:
                raise QueryError("unterminated quote", i)
            if not source[i + 1 : end].strip():
                raise QueryError("empty quotes", i)
            tokens.append(_Token("phrase", source[i + 1 : end], i, end + 1))
            i = end + 1
        else:
            j = i
            while j < n and not source[j].isspace() and source[j] not in '()"':
                j += 1
            text = source[i:j]
            if text in _OPERATORS:
                tokens.append(_Token(text, text, i, j))
            elif text.startswith("@"):
                name = text[1:]
                if not _ALIAS_NAME.fullmatch(name):
                    raise QueryError(f"bad alias name {text!r}", i)
                tokens.append(_Token("alias", name, i, j))
            else:
                if text.startswith("-") and len(text) > 1:
                    raise QueryError(f"'-' is not an operator; write NOT {text[1:]}", i)
                star = text.find("*")
                if star == 0:
                    raise QueryError("'*' needs a word before it", i)
                if 0 < star < len(text) - 1:
                    raise QueryError("'*' may only end a word", i + star)
                tokens.append(_Token("word", text, i, j))
            i = j
    tokens.append(_Token("end", "", n, n))
    return tokens


class _Parser:
    """Recursive descent over: or := and (OR and)*; and := not (AND? not)*;
    not := NOT not | primary; primary := term | "(" or ")"."""

    def __init__(self, source: str, aliases: Mapping[str, Sequence[str]]) -> None:
        self.source = source
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

    def since(self, first: int) -> str:
        """The query's text from token `first` to the last one taken."""
        return self.source[self.tokens[first].pos : self.tokens[self.i - 1].end]

    def parse_or(self) -> _Node:
        first = self.i
        children = [self.parse_and()]
        while self.peek().kind == "OR":
            self.take()
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else _Any(children, self.since(first))

    def parse_and(self) -> _Node:
        first = self.i
        children = [self.parse_not()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.take()
            elif kind not in ("word", "phrase", "alias", "(", "NOT"):
                break
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else _All(children, self.since(first))

    def parse_not(self) -> _Node:
        first = self.i
        negations = 0
        while self.peek().kind == "NOT":
            self.take()
            negations += 1
        node = self.parse_primary()
        # NOT NOT x is x; a loop, not recursion, so a long run of NOTs cannot blow the stack.
        return _Not(node, self.since(first)) if negations % 2 else node

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
            if not isinstance(node, _Leaf):
                node.text = self.source[token.pos : close.end]
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
        parts = [_Infix(w) if unspaced(w) else part for w, part in zip(ws, parts, strict=True)]
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
        return children[0] if len(children) == 1 else _Any(children, f"@{token.text}")


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


#: the operators as people write them in lowercase, and what they meant
_LOWER_OPERATORS = {"and": "AND", "or": "OR", "not": "NOT"}
_STARTS_TERM = ("word", "phrase", "alias", "(", "NOT")
_ENDS_TERM = ("word", "phrase", "alias", ")")


def advice(query: str, aliases: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Warnings about a query that compiles but likely means something else: a
    lowercase `and`/`or`/`not` between terms (a word to find, not an operator), and
    a query that is only NOTs (it holds every entry without those words).

    The query must compile (`compile` raises on anything worse).
    """
    out: list[str] = []
    tokens = _lex(query)
    for i, token in enumerate(tokens):
        meant = _LOWER_OPERATORS.get(token.text.lower()) if token.kind == "word" else None
        if meant is None:
            continue
        before = tokens[i - 1].kind if i else None
        after = tokens[i + 1].kind
        if after in _STARTS_TERM and (meant == "NOT" or before in _ENDS_TERM):
            out.append(
                f"{token.text!r} at position {token.pos} is a word to find, not an operator "
                f'(did you mean {meant}? operators are upper case; write "{token.text}" '
                "in quotes to find the word)"
            )
    root = compile(query, aliases)._root
    parts = root.children if isinstance(root, _All) else (root,)
    if all(isinstance(p, _Not) for p in parts):
        out.append(
            "the query is only NOT: the topic holds every entry of its feeds that lacks "
            "those words (add a term to find, e.g. 'pakistan NOT cricket')"
        )
    return out
