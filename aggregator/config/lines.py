"""Where each key of a TOML text sits, so that every config error names its line.

tomllib reports values, not positions; `scan` finds the line of each table header
and key in a text tomllib has already accepted, and `Lines.of` the line of a key
(or of the nearest enclosing table).
"""

from __future__ import annotations

import json
import re

#: a key's address in the parsed document: ("feeds", 3, "interval")
Where = tuple[str | int, ...]


def dotted(where: Where) -> str:
    """("feeds", 3, "interval") -> "feeds[3].interval", quoting keys TOML would quote."""
    out = ""
    for part in where:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
            out += f".{shown}" if out else shown
    return out


_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_KEY_PATH = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_LINE = re.compile(rf"\s*(\[\[|\[)\s*({_KEY_PATH})\s*(\]\]|\])\s*(?:#.*)?")
_KEY_LINE = re.compile(rf"\s*({_KEY_PATH})\s*=")


def _key_parts(path: str) -> list[str]:
    parts = []
    for token in re.findall(_KEY_PART, path):
        if token.startswith('"'):
            parts.append(json.loads(token))
        elif token.startswith("'"):
            parts.append(token[1:-1])
        else:
            parts.append(token)
    return parts


def scan(text: str) -> list[tuple[Where, int]]:
    """Where each table header and key sits: (address, line number), in file order.

    Only runs on a file tomllib has accepted, so it can be simple: it tracks
    strings, comments and bracket depth just well enough to tell a `key =` or a
    `[header]` at the start of a line from the inside of a value.
    """
    found: list[tuple[Where, int]] = []
    arrays: dict[Where, int] = {}
    prefix: Where = ()
    depth = 0
    in_string: str | None = None  # the closing delimiter of an open multi-line string
    for number, line in enumerate(text.splitlines(), 1):
        pos = 0
        if in_string is None and depth == 0:
            header = _HEADER_LINE.fullmatch(line)
            if header:
                parts = _key_parts(header[2])
                address: list[str | int] = []
                for i, part in enumerate(parts):
                    address.append(part)
                    if i < len(parts) - 1 and tuple(address) in arrays:
                        address.append(arrays[tuple(address)])
                if header[1] == "[[":
                    index = arrays.get(tuple(address), -1) + 1
                    if index == 0:
                        # so that a problem with the array as a whole finds its first header
                        found.append((tuple(address), number))
                    arrays[tuple(address)] = index
                    address.append(index)
                prefix = tuple(address)
                found.append((prefix, number))
                continue
            key = _KEY_LINE.match(line)
            if key:
                found.append((prefix + tuple(_key_parts(key[1])), number))
                pos = key.end()
        while pos < len(line):
            if in_string is not None:
                end = line.find(in_string, pos)
                if end < 0:
                    break
                pos = end + 3
                in_string = None
                continue
            char = line[pos]
            if char == "#":
                break
            if line.startswith('"""', pos) or line.startswith("'''", pos):
                in_string = line[pos : pos + 3]
                pos += 3
                continue
            if char == '"':
                pos += 1
                while pos < len(line) and line[pos] != '"':
                    pos += 2 if line[pos] == "\\" else 1
            elif char == "'":
                end = line.find("'", pos + 1)
                pos = len(line) if end < 0 else end
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            pos += 1
    return found


class Lines:
    """The line numbers of one text's keys, scanned on the first error only."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._found: list[tuple[Where, int]] | None = None

    def of(self, where: Where) -> int | None:
        """The line of the key (or of the nearest enclosing key or header) in the text."""
        if self._found is None:
            self._found = scan(self.text)
        best: tuple[int, int] | None = None
        for address, number in self._found:
            if where[: len(address)] == address:
                score = len(address)
            elif address[: len(where)] == where:
                score = len(where)  # a table made by a dotted key: `a.b.c = 1` makes `a.b`
            else:
                continue
            if best is None or score > best[0]:
                best = (score, number)
        return best[1] if best else None
