"""The named things of a headline: places, people, organisations, teams, numbers, dates.

Story clustering reads them to keep apart the same sentence written about another
place, person, team or day ("Weather in Brest on 17 May" / "Weather in Gomel on 17
May"): every word but one is shared, and the one is what the reader needs. Pure, no
downloaded model; one lazily loaded list of place names.

What counts as an entity (each is returned as a clustering term, so it can be looked
for among another entry's terms):

* in cased scripts (Latin, Cyrillic, Greek), a capitalised word that does not start
  the sentence; the first word when it is an acronym, has a capital inside
  ("iPhone") or is written capitalised inside the entry's own text. A headline in Title Case says
  nothing by its capitals: there only acronyms, inner capitals, known places and the
  words the text writes capitalised count;
* in every script, a known place or country (`places.txt`, from GeoNames and ISO
  3166 names in many scripts; see bench/gen_places.py) and, at comparison time, the
  terms of the config's `[aliases]` (`Aliases`);
* numbers in any script (Arabic-Indic and Devanagari digits are folded to ASCII by
  the text core) as their digits ("12");
* dates: a day next to a month name (English, Russian, Urdu, Hindi, Arabic) as
  "@MM-DD" plus the month "@mMM"; weekdays as "@dN". A date never stands for a name.

Names are terms (folded, stemmed by the caller's `term`), so "Бресте" in a headline
meets "Брест" in another text. Scripts without case (Arabic, Urdu, Hindi) have no
capitals to tell a name by; for them the comparison also reads *positions*
(`substituted`): the word put in the same place of an otherwise identical headline.
"""

from __future__ import annotations

import collections
import functools
import itertools
import operator
import re
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources

from aggregator.once import once
from aggregator.text import fold, keys, word_pattern, words

#: maps one folded word to its clustering term, or None for a stopword or noise
TermFn = Callable[[str, str], "str | None"]

#: how much of an entry's text is read for the words it writes capitalised
TEXT_CHARS = 3000

#: a raw word, to split text by (the words and what lies between them); in ASCII
#: text, which has no marks, the plain class scans several times faster than every mark's
_ASCII_SPLIT = re.compile(r"(\w+)", re.ASCII)
_ORDINAL = re.compile(r"(\d{1,2})(?:st|nd|rd|th|-?го|-?е|-?я)$")
#: a sentence starts after these (and at the start): the word after is capitalised anyway
#: (not quotes: Russian desks put names in «», and a quoted word is not a new sentence)
_STARTERS = frozenset(".!?:;|—–-()[]…\n")

#: common words a Title Case or sentence-initial headline capitalises; also never a place
COMMON_WORDS = frozenset(
    fold(w)
    for w in """the a an and or of in on at to for from by with as is are was be it its
    this that new how why what who when where watch live video update breaking exclusive
    analysis opinion editorial review photos report top latest today here there after
    before over under amid says said will can could may might would should first last
    i we you he she they my our your his her their no not all one two""".split()
)

_MONTHS: dict[str, int] = {}
for _n, _forms in enumerate(
    [
        "january jan январь января январе جنوری جنورى يناير जनवरी",
        "february feb февраль февраля феврале فروری فبراير फरवरी फ़रवरी",
        "march mar март марта марте مارچ مارس मार्च",
        "april apr апрель апреля апреле اپریل أبريل ابريل अप्रैल",
        "may май мая мае مئی مئى مايو मई",
        "june jun июнь июня июне جون يونيو जून",
        "july jul июль июля июле جولائی يوليو जुलाई",
        "august aug август августа августе اگست أغسطس اغسطس अगस्त",
        "september sep sept сентябрь сентября сентябре ستمبر سبتمبر सितंबर सितम्बर",
        "october oct октябрь октября октябре اکتوبر أكتوبر اكتوبر अक्टूबर अक्तूबर",
        "november nov ноябрь ноября ноябре نومبر نوفمبر नवंबर नवम्बर",
        "december dec декабрь декабря декабре دسمبر ديسمبر दिसंबर दिसम्बर",
    ],
    start=1,
):
    for _w in _forms.split():
        _MONTHS[fold(_w)] = _n

_WEEKDAYS: dict[str, int] = {}
for _n, _forms in enumerate(
    [
        "monday понедельник понедельника پیر الاثنين الإثنين सोमवार",
        "tuesday вторник вторника منگل الثلاثاء मंगलवार",
        "wednesday среда среду среды بدھ الأربعاء الاربعاء बुधवार",
        "thursday четверг четверга جمعرات الخميس गुरुवार बृहस्पतिवार",
        "friday пятница пятницу пятницы جمعہ الجمعة शुक्रवार",
        "saturday суббота субботу субботы ہفتہ السبت शनिवार",
        "sunday воскресенье воскресенья اتوار الأحد الاحد रविवार",
    ],
    start=1,
):
    for _w in _forms.split():
        _WEEKDAYS[fold(_w)] = _n
#: words a day number may sit between ("the 17th of May", "9-го мая")
_DATE_GLUE = frozenset({"of", "the", "го"})


def date_reported(entity: str, terms: frozenset[str], term: TermFn) -> bool:
    """Whether `terms` (another entry's words) name the date or weekday `entity`:
    its day number and a name of its month, or a name of its weekday."""
    forms = _date_terms(term)
    if entity.startswith("@d"):
        return bool(forms[entity] & terms)
    if entity.startswith("@m"):
        return bool(forms[entity] & terms)
    month, day = entity[1:].split("-")
    return str(int(day)) in terms and bool(forms["@m" + month] & terms)


@functools.lru_cache(maxsize=2)
def _date_terms(term: TermFn) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for table, prefix, width in ((_MONTHS, "@m", 2), (_WEEKDAYS, "@d", 1)):
        for word, n in table.items():
            t = term(word, keys([word], None)[0])
            if t:
                out.setdefault(f"{prefix}{n:0{width}d}", set()).add(t)
    return {k: frozenset(v) for k, v in out.items()}


def kind(entity: str) -> str:
    """ "number", "date", "alias" or "name": what an entity string stands for."""
    if entity.replace(".", "", 1).isdigit():
        return "number"
    if entity.startswith("@"):
        return "date"
    if entity.startswith("&"):
        return "alias"
    return "name"


def readable_script(ch: str) -> bool:
    """Whether a character is of a script entities are read in (Latin, Cyrillic,
    Greek, Arabic script, Devanagari)."""
    cp = ord(ch)
    return ch.isalpha() and (
        cp < 0x530 or 0x1E00 <= cp < 0x2000 or 0x600 <= cp < 0x780 or 0x900 <= cp < 0x980
    )


def cased(word: str) -> bool:
    """Whether a word is written in a script with capitals."""
    ch = word[0]
    return ch.isupper() or ch.islower()


class SortedNames:
    """A set of strings held as their UTF-8 lines, sorted, in one bytes object.

    The place list as two frozensets of str took 7.8 MiB in every process that
    read a headline (12.5 MiB while it loaded): here it is the file's own bytes, an
    offset per name and a table of one byte per hash bucket (two buckets per name),
    which turns most words away before a binary search over the lines confirms a
    hit. Membership is exact, as a set's.
    """

    __slots__ = ("_blob", "_starts", "_buckets", "_n")

    #: 2**BITS buckets (1 MiB): about 1 % of the words that are no place get as far
    #: as the binary search
    BITS = 20
    _MASK = (1 << BITS) - 1
    _CHUNK = 1 << 16

    def __init__(self, blob: bytes) -> None:
        """`blob`: the names in byte order (a str sort: UTF-8 keeps code point
        order), each ended by a newline."""
        buckets = bytearray(1 << self.BITS)
        mask = self._MASK
        starts = array("I")
        last = ""
        pos = 0
        while pos < len(blob):
            # a few thousand names at a time: all 60,000 as str at once would take
            # more memory while loading than the frozensets this replaces
            cut = blob.rfind(b"\n", pos, pos + self._CHUNK) + 1 or blob.index(b"\n", pos) + 1
            # (index raises for a last name without its newline)
            names = blob[pos:cut].decode("utf-8").split("\n")
            names.pop()  # the "" after the last newline
            if not (last < names[0] and all(map(operator.lt, names, names[1:]))):
                raise ValueError("names not sorted or repeated")
            # every loop below runs in C: the names are loaded on a poll's first headline
            hashes = list(map(hash, names))
            ones = itertools.repeat(1)
            collections.deque(map(buckets.__setitem__, map(mask.__and__, hashes), ones), 0)
            high = map(mask.__and__, map(operator.rshift, hashes, itertools.repeat(32)))
            collections.deque(map(buckets.__setitem__, high, ones), 0)
            ends = itertools.accumulate(map(len, map(str.encode, names)), initial=pos)
            starts.extend(map(operator.add, ends, itertools.count()))
            starts.pop()  # `cut`: the next chunk's first
            last = names[-1]
            pos = cut
        starts.append(len(blob))
        self._blob, self._starts, self._buckets, self._n = blob, starts, buckets, len(starts) - 1

    def __len__(self) -> int:
        return self._n

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        h = hash(name)
        buckets, mask = self._buckets, self._MASK
        if not (buckets[h & mask] and buckets[(h >> 32) & mask]):
            return False
        key = name.encode("utf-8", "surrogatepass")
        blob, starts = self._blob, self._starts
        lo, hi = 0, self._n
        while lo < hi:
            mid = (lo + hi) // 2
            if blob[starts[mid] : starts[mid + 1] - 1] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo < self._n and blob[starts[lo] : starts[lo + 1] - 1] == key


@once
def places() -> tuple[SortedNames, SortedNames]:
    """(one-word place names, several-word names) as clustering terms: about 60,000
    short strings, loaded on the first headline read. One `SortedNames` holds both:
    a one-word stem never holds a space, and every several-word name does."""
    data = resources.files("aggregator.match").joinpath("places.txt").read_bytes()
    body = 0
    while data.startswith(b"#", body):  # the header: where the names come from
        body = data.index(b"\n", body) + 1
    names = SortedNames(data[body:])
    return names, names


def _stem(key: str) -> str:
    return key.partition(":")[2]


def place_keys(name: str) -> list[str]:
    """The stems a place name is listed under in `places.txt`: the text core's full
    stems, not the clustering terms (which cut Russian stems short, and "Ноябрьск"
    would be every "ноября")."""
    ws = words(fold(name))
    return [_stem(k) for k in keys(ws, None) if k]


class _Word:
    __slots__ = ("raw", "folded", "term", "stem", "start", "upper")

    def __init__(self, raw: str, folded: str, term: str | None, stem: str, start: bool) -> None:
        self.raw = raw
        self.folded = folded
        self.term = term
        self.stem = stem
        #: the word starts a sentence (a capital says nothing there)
        self.start = start
        self.upper = raw[0].isupper()


@once
def _raw_split() -> re.Pattern[str]:
    """The same for text in any script: the text core's word, kept by the split
    (built on the first text that is not ASCII; the poller's writer, which clusters
    only, never reads a text)."""
    return re.compile(f"({word_pattern().pattern})")


def _scan(text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """The raw words of `text` (NFKC), the text before each (and after the last),
    their folded forms and keys."""
    raw = unicodedata.normalize("NFKC", text)
    # split, not finditer: strings only, no match object per word (four times faster)
    parts = (_ASCII_SPLIT if raw.isascii() else _raw_split()).split(raw)
    found, gaps = parts[1::2], parts[0::2]
    # a decimal ("3.60", "2,4") is one number, not two
    digit = [w.isdigit() for w in found]
    if any(map(operator.and_, digit, itertools.islice(digit, 1, None))):
        for n in range(len(found) - 1, 0, -1):
            if not (digit[n] and digit[n - 1]):
                continue  # (a merged pair is no digit run either: checked again below)
            w0, w1 = found[n - 1], found[n]
            if w0.isdigit() and w1.isdigit() and gaps[n] in (".", ","):
                found[n - 1 : n + 1] = [f"{w0}.{w1}"]
                del gaps[n]
    # folding the whole text at once is several times cheaper than word by word; a
    # word that folds into two (rare: a ligature) makes the counts differ
    folded = words(fold(" ".join(found)))
    if len(folded) != len(found):
        folded = [(words(fold(w)) or [""])[0] for w in found]
    return found, gaps, folded, keys(folded, None)


def _starts_sentence(gaps: Sequence[str], i: int) -> bool:
    """Whether word `i` starts a sentence (the first word does), by the text before it."""
    return i == 0 or not _STARTERS.isdisjoint(gaps[i])


def _split(text: str, term: TermFn) -> list[_Word]:
    """The raw words of `text` with their terms and whether each starts a sentence."""
    found, gaps, folded, ks = _scan(text)
    return [
        _Word(w, f, term(f, k) if f else None, _stem(k), _starts_sentence(gaps, i))
        for i, (w, f, k) in enumerate(zip(found, folded, ks, strict=True))
    ]


def _acronym(raw: str) -> bool:
    letters = [c for c in raw if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _inner_capital(raw: str) -> bool:
    rest = raw[1:]
    return not rest.islower() and not raw.isupper() and rest != rest.lower()


def capitalised_in(text: str, term: TermFn) -> frozenset[str]:
    """Terms the text writes as names, from its first `TEXT_CHARS` characters:
    capitalised inside a sentence, or capitalised wherever it occurs and never in
    lower case ("Chinese" opening the text), by the text's own spelling."""
    # `_split`'s words without a `_Word` each: a text has hundreds, a headline ten,
    # and only the capitalised ones need to know whether they start a sentence
    found, gaps, folded, ks = _scan(text[:TEXT_CHARS])
    lower: set[str] = set()
    upper: list[tuple[str, int]] = []
    memo: dict[str, str | None] = {}  # a word's term (its key follows from the word)
    for i, (w, f) in enumerate(zip(found, folded, strict=True)):
        ch = w[0]
        if not f or not (ch.isupper() or ch.islower()):
            continue
        t = memo[f] if f in memo else memo.setdefault(f, term(f, ks[i]))
        if not t:
            continue
        if ch.isupper():
            upper.append((t, i))
        else:
            lower.add(t)
    return frozenset(t for t, i in upper if t not in lower or not _starts_sentence(gaps, i))


def find(title: str, text: str, term: TermFn) -> frozenset[str]:
    """The entities of a headline (see the module's doc), `text` being the entry's
    text after the title (read only for the words it writes capitalised)."""
    ws = _split(title, term)
    if not ws:
        return frozenset()
    single, multi = places()
    out: set[str] = set()
    dated: set[int] = set()
    # dates first: a day next to a month is a date, not a number
    folded = [w.folded for w in ws]
    for i, w in enumerate(ws):
        month = _MONTHS.get(w.folded)
        if month is not None:
            found = _day_beside(folded, i, dated)
            if found is not None:
                j, day = found
                out.add(f"@{month:02d}-{day:02d}")
                out.add(f"@m{month:02d}")
                dated |= {i, j}
            continue
        wd = _WEEKDAYS.get(w.folded)
        if wd is not None:
            out.add(f"@d{wd}")
            dated.add(i)
    cased_words = [w for w in ws if cased(w.raw) and w.term and not w.start]
    contentful = [w for w in cased_words if w.folded not in COMMON_WORDS and len(w.raw) > 3]
    title_case = len(contentful) >= 2 and sum(w.upper for w in contentful) >= 0.75 * len(contentful)
    in_text: frozenset[str] | None = None

    def written_capitalised(t: str) -> bool:
        nonlocal in_text
        if in_text is None:
            in_text = capitalised_in(text, term) if text else frozenset()
        return t in in_text

    for i, w in enumerate(ws):
        if i in dated:
            continue
        if w.raw.replace(".", "").isdigit():
            whole, _, frac = w.raw.partition(".")
            num = "".join(str(unicodedata.digit(c)) for c in whole).lstrip("0") or "0"
            out.add(num + ("." + "".join(str(unicodedata.digit(c)) for c in frac) if frac else ""))
            continue
        t = w.term
        if t is None:
            continue
        if w.stem in single and (w.upper or not cased(w.raw)):
            out.add(t)
            continue
        if not cased(w.raw) or not w.upper and not _inner_capital(w.raw):
            continue
        if w.folded in COMMON_WORDS and not _acronym(w.raw):
            continue
        if _acronym(w.raw) or _inner_capital(w.raw):
            out.add(t)
        elif title_case:
            if written_capitalised(t):
                out.add(t)
        elif not w.start:
            out.add(t)
        elif written_capitalised(t):
            # the first word is a name when the text writes it capitalised too
            out.add(t)
    stems = [w.stem for w in ws]
    for n in (2, 3):
        for i in range(len(ws) - n + 1):
            if " ".join(stems[i : i + n]) in multi and (ws[i].upper or not cased(ws[i].raw)):
                out.update(w.term for w in ws[i : i + n] if w.term)
    return frozenset(out)


def dates_in(text: str) -> frozenset[str]:
    """The days `text` names by a day and a month ("4 мая", "May 9", "17 مئی"), as
    "@MM-DD": what an article's lead says it reports on."""
    ws = words(fold(text))
    out: set[str] = set()
    for i, w in enumerate(ws):
        month = _MONTHS.get(w)
        found = _day_beside(ws, i, set()) if month is not None else None
        if found is not None:
            out.add(f"@{month:02d}-{found[1]:02d}")
    return frozenset(out)


def _day_beside(ws: Sequence[str], i: int, taken: set[int]) -> tuple[int, int] | None:
    """(position, day) of the day number next to the month name at `i` (before or
    after it, or one glue word away: "the 17th of May"), or None."""
    for j in (i - 1, i + 1, i - 2, i + 2):
        if 0 <= j < len(ws) and j not in taken:
            if abs(j - i) == 2 and ws[(i + j) // 2] not in _DATE_GLUE:
                continue
            day = _day(ws[j])
            if day is not None:
                return j, day
    return None


def _day(raw: str) -> int | None:
    m = _ORDINAL.match(raw) if not raw.isdigit() else None
    digits = m.group(1) if m else raw
    if not digits.isdigit() or len(digits) > 2:
        return None
    day = int("".join(str(unicodedata.digit(c)) for c in digits))
    return day if 1 <= day <= 31 else None


def substituted(a: Sequence[str], b: Sequence[str]) -> tuple[set[str], set[str]]:
    """The words of `a` and `b` that take each other's place in otherwise equal
    headlines (both term sequences, in order): "Imran Khan addresses rally in
    Mianwali" / "Shehbaz Sharif addresses rally in Mianwali" give {imran, khan} and
    {shehbaz, sharif}. Empty unless at least two words and three fifths of the longer
    headline are equal and in order (a template; two outlets' retellings word the
    rest differently), and some run of words is replaced on both sides."""
    from difflib import SequenceMatcher

    if not a or not b:
        return set(), set()
    common = len(set(a) & set(b))
    if common < 2 or common * 5 < 3 * max(len(a), len(b)):
        return set(), set()  # the equal words, in order, can be no more
    ops = _aligned(a, b) or SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    equal = sum(i2 - i1 for op, i1, i2, _, _ in ops if op == "equal")
    if equal < 2 or equal * 5 < 3 * max(len(a), len(b)):
        return set(), set()
    xa: set[str] = set()
    xb: set[str] = set()
    for op, i1, i2, j1, j2 in ops:
        if op == "replace":
            xa.update(a[i1:i2])
            xb.update(b[j1:j2])
    return xa, xb


def _aligned(a: Sequence[str], b: Sequence[str]) -> list[tuple[str, int, int, int, int]] | None:
    """`SequenceMatcher.get_opcodes()` of two headlines that differ in one run
    between an equal start and an equal end, found without the matcher (a
    look-alike from a template is compared with many, and the matcher is most of
    that cost); None for any other pair. Exactly the matcher's answer: each side
    holds each word once, and neither run holds a word of the other side, so the
    equal start and end are the only matches there are."""
    if len(set(a)) != len(a) or len(set(b)) != len(b):
        return None
    n = min(len(a), len(b))
    p = 0
    while p < n and a[p] == b[p]:
        p += 1
    q = 0
    while q < n - p and a[-1 - q] == b[-1 - q]:
        q += 1
    ea, eb = len(a) - q, len(b) - q
    if not set(a[p:ea]).isdisjoint(b) or not set(b[p:eb]).isdisjoint(a):
        return None
    ops: list[tuple[str, int, int, int, int]] = []
    if p:
        ops.append(("equal", 0, p, 0, p))
    if p < ea and p < eb:
        ops.append(("replace", p, ea, p, eb))
    elif p < ea:
        ops.append(("delete", p, ea, p, p))
    elif p < eb:
        ops.append(("insert", p, p, p, eb))
    if q:
        ops.append(("equal", ea, len(a), eb, len(b)))
    return ops


class Aliases:
    """The config's `[aliases]` as entities: every term of one alias names one thing
    ("LHC" and "Lahore High Court", "Pakistan" and "پاکستان")."""

    def __init__(self, aliases: Mapping[str, Sequence[str]], term: TermFn) -> None:
        #: alias name -> its variants, each the set of terms of one written form
        self.groups: dict[str, list[frozenset[str]]] = {}
        #: a term -> the aliases having a variant that holds it
        self.by_term: dict[str, set[str]] = {}
        for name, forms in aliases.items():
            variants = []
            for form in forms:
                ws = words(fold(form.replace("*", " ").replace('"', " ")))
                ts = frozenset(
                    t for t in (term(w, k) for w, k in zip(ws, keys(ws, None), strict=True)) if t
                )
                if ts:
                    variants.append(ts)
                    for t in ts:
                        self.by_term.setdefault(t, set()).add(name)
            if variants:
                self.groups[name] = variants

    def __bool__(self) -> bool:
        return bool(self.groups)

    def named(self, terms: frozenset[str]) -> dict[str, frozenset[str]]:
        """The aliases one of whose forms is among `terms`, each with the terms of
        `terms` that belong to any of its forms."""
        out: dict[str, frozenset[str]] = {}
        for name in {n for t in terms & self.by_term.keys() for n in self.by_term[t]}:
            variants = self.groups[name]
            if any(v <= terms for v in variants):
                out[name] = frozenset().union(*variants) & terms
        return out


def compile_aliases(aliases: Mapping[str, Sequence[str]], term: TermFn) -> Aliases:
    """`Aliases`, built once per distinct `[aliases]` table (a daemon's config)."""
    key = tuple((k, tuple(v)) for k, v in sorted(aliases.items()))
    return _compiled(key, term)


@functools.lru_cache(maxsize=4)
def _compiled(key: tuple[tuple[str, tuple[str, ...]], ...], term: TermFn) -> Aliases:
    return Aliases(dict(key), term)


def names_only(entities: Iterable[str]) -> set[str]:
    """The entities that are names (not numbers, dates or aliases)."""
    return {e for e in entities if kind(e) == "name"}
