"""A body's encoding: the declared one kept (BOM, HTTP charset, XML declaration,
UTF-8 by default) with only the bad bytes replaced, unless another reading is
clearly better; a body that declares nothing is detected."""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Mapping

from aggregator.ingest.parse.fields import _BOM

#: legacy names and the supersets that read them (what browsers do): a byte the
#: narrower table lacks is then not taken for damage
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "cp950",
    "ascii": "cp1252",
    "latin_1": "cp1252",
}
#: an encoding's name in a Content-Type header
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^\s;"']+)""", re.IGNORECASE)
#: the encoding in an XML declaration
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']{1,40})["']""")
#: the same, in the decoded text, to say UTF-8 once the body is re-encoded
_TEXT_DECLARATION = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")
#: where text is in the bytes: outside tags, CDATA markers dropped
_CDATA_MARKS = re.compile(rb"<!\[CDATA\[|\]\]>")
_TAGS = re.compile(rb"<[^<>]*>")
_LATIN_ACCENTED = re.compile(r"[\u00c0-\u024f]")
_LETTERS = re.compile(r"[^\W\d_]")
_MARKUP = re.compile(r"<[^>]*>")
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _codec(name: str | None) -> str | None:
    """Python's codec for a declared encoding name; None for an unknown one, or one
    in which the markup would not be ASCII (UTF-16 declared in an 8-bit body, UTF-7)."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().strip("\"'")).name.replace("-", "_")
    except (LookupError, ValueError):
        return None
    codec = {"utf_8_sig": "utf_8", "iso8859_1": "latin_1", "us_ascii": "ascii"}.get(codec, codec)
    codec = _SUPERSETS.get(codec, codec)
    if codec.startswith(("utf_16", "utf_32", "utf_7")):
        return None
    try:
        if "<?xml encoding='x'?>".encode(codec) != b"<?xml encoding='x'?>":
            return None
    except (UnicodeError, LookupError):
        return None
    return codec


def _declared(body: bytes, headers: Mapping[str, str]) -> list[str]:
    """The encodings the body is declared in, strongest first: BOM, HTTP charset,
    XML declaration (RFC 7303 section 3; a BOM wins, as in browsers)."""
    found: list[str | None] = []
    if body.startswith(_BOM):
        found.append("utf_8")
    header = _CHARSET.search(headers.get("content-type", ""))
    if header:
        found.append(_codec(header.group(1)))
    declaration = _XML_ENCODING.match(body.removeprefix(_BOM), 0, 512)
    if declaration:
        found.append(_codec(declaration.group(1).decode("ascii", "replace")))
    return list(dict.fromkeys(c for c in found if c))


def _decoded(body: bytes, codec: str) -> tuple[str, int, int]:
    """The body as `codec` reads it, each undecodable sequence replaced by U+FFFD
    (as `bytes.decode(..., "replace")` does), the number of those, and the number of
    non-ASCII characters read right."""
    try:
        text = body.decode(codec)
        bad = 0
    except UnicodeDecodeError:
        text = body.decode(codec, "replace")
        bad = text.count("\ufffd") - body.decode(codec, "ignore").count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return text, bad, non_ascii - bad


_WIDE_CHAR = re.compile("[\u0800-\ufffc\ufffe-\U0010ffff]")
#: one valid multi-byte UTF-8 sequence (a cp1251 body has next to none)
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


@functools.lru_cache(maxsize=64)
def _is_latin_page(codec: str) -> bool:
    """Whether a code page reads its high bytes as Latin letters (windows-1252, not
    windows-1251): only then can Cyrillic or Arabic bytes come out as mojibake."""
    try:
        "é".encode(codec)
    except UnicodeEncodeError:
        return False
    for letter in "Жعאλ":
        try:
            letter.encode(codec)
        except UnicodeEncodeError:
            continue
        return False
    return True


def _wide_chars(text: str) -> int:
    """Characters of three bytes or more in UTF-8, U+FFFD aside."""
    return len(_WIDE_CHAR.findall(text))


def _mojibake_ratio(text: str) -> float:
    """Share of letters that are accented Latin letters: high for Cyrillic, Arabic or
    UTF-8 bytes read as a Latin code page ("Ïðèâåò", "ĐŸĐ°ĐşĐ¸Ń…").

    Counted outside tags: element names are ASCII letters, and in a short feed they
    outnumber the text enough to hide the mojibake.
    """
    text = _MARKUP.sub(" ", text)
    letters = len(_LETTERS.findall(text))
    return len(_LATIN_ACCENTED.findall(text)) / letters if letters else 0.0


def _is_latin(text: str) -> bool:
    """Whether the non-ASCII letters of a reading are Latin ones (a Western text)."""
    letters: list[str] = [c for c in _LETTERS.findall(text) if not c.isascii()]
    latin = sum("\u00c0" <= c <= "\u024f" for c in letters)
    return latin * 2 >= len(letters)


def _detect(body: bytes) -> tuple[str, str, int] | None:
    """The body's text, encoding and undecodable sequences by charset-normalizer, for
    a body that does not say its encoding, or says one that does not read it.

    Only the text between tags is measured: the markup is ASCII in every candidate and
    drowns the signal of a short feed. Latin text gives no clear winner among the
    Western code pages (German reads the same in cp775 and cp1250), so a Latin
    reading that windows-1252, by far the commonest of them, reads without
    mojibake is read as windows-1252.
    """
    import charset_normalizer  # only for the rare body that needs it

    sample = _TAGS.sub(b" ", _CDATA_MARKS.sub(b" ", body))
    best = charset_normalizer.from_bytes(sample).best()
    if best is None:
        return None
    codec = best.encoding
    text = str(best)
    if codec != "cp1252" and _is_latin(text):
        try:
            western = sample.decode("cp1252")
        except UnicodeDecodeError:
            pass
        else:
            if _mojibake_ratio(western) < 0.3:
                codec = "cp1252"
    text, bad, _ = _decoded(body, codec)
    return text, codec, bad


def _reading(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, str | None] | None:
    """The body as UTF-8, and a note when it was not read as it declares; None for a
    UTF-16/32 body, which feedparser reads as it is.

    The declared encoding is kept, and only the bytes it cannot read are replaced
    (with U+FFFD), while it reads most of the text: one stray byte in a UTF-8 feed
    must not turn every title into mojibake, as feedparser's fallback to
    windows-1252 or iso-8859-2 for the whole body does. Another reading is taken
    only when it is clearly better: a body that is valid UTF-8 whatever it declares
    (legacy text is next to never valid UTF-8), another declared encoding that reads
    it all, or charset-normalizer's guess when the declared one reads almost nothing
    (cp1251, koi8-r or windows-1256 bodies that declare nothing, or declare UTF-8).
    """
    if body.startswith(_WIDE_BOMS) or b"\x00" in body[:4]:
        return None
    if body.isascii():
        return body, None
    declared = _declared(body, headers)
    codec = declared[0] if declared else "utf_8"
    if codec == "utf_8" and not body.startswith(_BOM):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return body, None  # the common case: nothing to count or re-encode
    text, bad, good = _decoded(body, codec)
    note = None
    if codec != "utf_8" and _UTF8_SEQUENCE.search(body):
        as_utf8, utf8_bad, utf8_good = _decoded(body, "utf_8")
        if utf8_good > 4 * utf8_bad and (bad or not utf8_bad or _mojibake_ratio(text) >= 0.3):
            name = codec.replace("_", "-")
            text, codec, bad, note = as_utf8, "utf_8", utf8_bad, f"declared {name}, read as utf-8"
    if bad > good:
        # The declared encoding reads less than half of the text: it is not this body's,
        # unless it is UTF-8 and a guess would read it as Latin text. Legacy text next
        # to never forms valid UTF-8 by chance (the 7,000 non-ASCII bytes of a Russian
        # cp1251 feed form none, of an Urdu cp1256 one, 50 short ones), so in a text
        # that is mostly ASCII a few valid sequences outweigh many stray bytes.
        clearly = codec != "utf_8" or bad > 4 * good + 16 * _wide_chars(text)
        for other in declared[1:]:
            other_text, other_bad, _ = _decoded(body, other)
            if not other_bad:
                name = codec.replace("_", "-")
                text, codec, bad = other_text, other, 0
                note = f"the declared {name} does not read the body; read as {other}, also declared"
                break
        else:
            guess = _detect(body)
            if guess is not None and guess[1] != codec and (clearly or not _is_latin(guess[0])):
                name = codec.replace("_", "-")
                said = f"the declared {name}" if declared else "utf-8, the default,"
                text, codec, bad = guess
                note = f"{said} does not read the body; read as {codec}"
    elif not bad and _is_latin_page(codec) and _mojibake_ratio(text) >= 0.3:
        # A Latin code page declared for Cyrillic or Arabic bytes ("Ïðèâåò").
        guess = _detect(body)
        if guess is not None and _mojibake_ratio(guess[0]) < 0.1:
            note = f"the declared {codec} reads as mojibake; read as {guess[1]}"
            text, codec, bad = guess
    if bad:
        name = codec.replace("_", "-")
        damage = f"{bad} byte sequence{'s' if bad > 1 else ''} not valid {name} replaced"
        note = f"{note}; {damage}" if note else damage
    note = f"encoding: {note}" if note else None
    if codec == "utf_8" and not bad and not body.startswith(_BOM):
        return body, note
    text = _TEXT_DECLARATION.sub(r'\1"utf-8"', text.removeprefix("\ufeff"), count=1)
    return text.encode("utf-8"), note
