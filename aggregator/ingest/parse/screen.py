"""Screens run on a body before any parser sees it: entity declarations (bombs,
external entities) and element counts and depth, with expat, which never expands
what it is not told to; and character references XML cannot carry."""

from __future__ import annotations

import re
import xml.parsers.expat
from typing import Any

from aggregator.errors import ParseError
from aggregator.ingest.parse.encoding import _WIDE_BOMS

#: the longest entity value let through in a UTF-16 body (a character, or a ligature)
_MAX_ENTITY_VALUE = 8


#: a numeric character reference, decimal or hex
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")


def _xml_char(code: int) -> bool:
    """Whether XML 1.0 allows the character (section 2.2, Char)."""
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _fix_char_refs(body: bytes) -> bytes:
    """Replace references to characters XML forbids with U+FFFD, before feedparser.

    When expat stops at `&#xD800;` feedparser's loose parser runs `chr(n).encode()` on
    it, and a surrogate, a number past U+10FFFF or a 20-digit one raises straight out
    of `feedparser.parse`: one item could crash the whole poll.
    """
    if b"&#" not in body:
        return body

    def fix(match: re.Match[bytes]) -> bytes:
        hex_digits, digits = match.groups()
        if len((hex_digits or digits).lstrip(b"0")) > 8:  # past U+10FFFF
            return b"&#xFFFD;"
        code = int(hex_digits, 16) if hex_digits else int(digits)
        return match.group(0) if _xml_char(code) else b"&#xFFFD;"

    return _CHAR_REF.sub(fix, body)


class _PrologDone(Exception):
    """Raised from the expat handlers to stop at the root element."""


def _screen_doctype(body: bytes, url: str | None) -> None:
    """Refuse entity declarations that could expand or read outside the body.

    A literal value (`<!ENTITY id "tag:example.com,">`, as in feedparser's own tests)
    passes, and feedparser reads it as it always has, while its references expand
    the body by at most `_MAX_EXPANSION` times plus `_EXPANSION_ALLOWANCE`
    characters: a quadratic blow-up is many references to one long value, and is
    refused by that count, not by the length of the value alone.
    """
    refusal: list[str] = []
    sizes: dict[str, int] = {}
    wide = body[:4].startswith(_WIDE_BOMS) or b"\x00" in body[:4]

    def entity_decl(
        name: str,
        is_parameter_entity: int,
        value: str | None,
        base: str | None,
        system_id: str | None,
        public_id: str | None,
        notation_name: str | None,
    ) -> None:
        if is_parameter_entity:
            refusal.append(f"parameter entity %{name}")
        elif value is None:
            refusal.append(f"external entity &{name}; ({system_id or public_id})")
        elif "&" in value or "<" in value:
            refusal.append(f"entity &{name}; that refers to other entities or markup")
        elif wide and len(value) > _MAX_ENTITY_VALUE:
            # references in a UTF-16 body are not counted: a character, or a ligature
            refusal.append(f"entity &{name}; of {len(value)} characters")
        else:
            sizes[name] = len(value)
        if refusal:
            raise _PrologDone

    def start_element(name: str, attrs: Any) -> None:
        raise _PrologDone

    parser = xml.parsers.expat.ParserCreate()
    parser.EntityDeclHandler = entity_decl
    parser.StartElementHandler = start_element
    # Never fetch anything the DOCTYPE names (the default, stated here on purpose).
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
    except _PrologDone:
        pass
    except (xml.parsers.expat.ExpatError, ValueError, LookupError):
        # Expat could not read the prolog (unknown encoding, junk before the root):
        # feedparser will try harder, so look for declarations byte-wise instead.
        head = body.replace(b"\x00", b"")
        if re.search(rb"<!ENTITY", head, re.IGNORECASE):
            refusal.append("an entity in a prolog expat cannot read")
    if not refusal and sizes and not wide:
        expanded = 0
        for match in _ENTITY_REF.finditer(body):
            expanded += sizes.get(match.group(1).decode("utf-8", "replace"), 0)
        if expanded > _MAX_EXPANSION * len(body) + _EXPANSION_ALLOWANCE:
            refusal.append(f"entities whose references expand to {expanded} characters")
    if refusal:
        raise ParseError(f"refused: DOCTYPE declares {refusal[0]}", url)


#: a general entity reference
_ENTITY_REF = re.compile(rb"&([A-Za-z_:][\w.:-]*);")
#: how many times its own size the body may grow by its entities' expansion
_MAX_EXPANSION = 3
#: and the characters it may grow by whatever its size
_EXPANSION_ALLOWANCE = 1 << 20


#: the most attributes one element may have; real feeds use a handful
MAX_ATTRIBUTES = 256
#: the deepest element nesting; real feeds (XHTML content included) stay under 50
MAX_DEPTH = 512


def _screen_elements(body: bytes, url: str | None) -> None:
    """Refuse an element with more than MAX_ATTRIBUTES attributes or nested deeper
    than MAX_DEPTH.

    feedparser's strict parser looks each attribute up with the SAX
    `getValueByQName`, a linear scan: quadratic in the attributes of one element, so
    a 1 MB body with 100,000 attributes on one `<item>` took two minutes of CPU. And
    it keeps state per open element: 6 MB of nested `<x>` took 22 s and 590 MB.
    Expat reads the body as ISO-8859-1 (every byte is valid, and the markup bytes are
    the same in any ASCII-compatible encoding), so a declared encoding expat cannot
    decode does not skip the screen; UTF-16 and UTF-32 are read as they are.
    """
    wide = body[:4].startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body[:4]
    parser = xml.parsers.expat.ParserCreate(None if wide else "iso-8859-1")
    depth = [0]
    refusal: list[str] = []

    def start_element(name: str, attrs: Any) -> None:
        depth[0] += 1
        if len(attrs) > MAX_ATTRIBUTES:
            refusal.append(f"an element with {len(attrs)} attributes (at most {MAX_ATTRIBUTES})")
            raise _PrologDone
        if depth[0] > MAX_DEPTH:
            refusal.append(f"elements nested more than {MAX_DEPTH} deep")
            raise _PrologDone

    def end_element(name: str) -> None:
        depth[0] -= 1

    parser.StartElementHandler = start_element
    parser.EndElementHandler = end_element
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
    except _PrologDone:
        raise ParseError(f"refused: {refusal[0]}", url) from None
    except (xml.parsers.expat.ExpatError, ValueError, LookupError):
        # feedparser's strict parser stops where expat stops. Its loose parser is linear
        # in attributes but not in depth (2 MB of nested tags took 7 s), so count the
        # depth by the tags themselves, leaving room for a sloppy feed's unclosed <br>s.
        if _tag_depth(body) > _LOOSE_MAX_DEPTH:
            refused = f"refused: elements nested more than {_LOOSE_MAX_DEPTH} deep"
            raise ParseError(refused, url) from None


_LOOSE_MAX_DEPTH = 8 * MAX_DEPTH
_TAG = re.compile(rb"<(/?)[A-Za-z_][^<>]*?(/?)>")


def _tag_depth(body: bytes) -> int:
    """The deepest nesting of start tags over end tags, counted on bytes."""
    depth = deepest = 0
    for match in _TAG.finditer(body):
        closing, empty = match.groups()
        if closing:
            depth = max(0, depth - 1)
        elif not empty:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > _LOOSE_MAX_DEPTH:
                    break
    return deepest
