"""Make tests/feeds/real from the full real-feed corpus: small copies and their expected results.

Run by a maintainer when the corpus changes, never by the tests:

    python tests/feeds/trim.py /path/to/corpus/real

A file of at most WHOLE bytes is copied as it is. A larger one keeps its first items
(as many as fit in BUDGET bytes, at least two): the bytes before the first item, those
items, and the bytes after the last item, cut at the byte level between items, so the
declaration, encoding, namespaces, CDATA and quirks stay byte for byte. A JSON Feed
keeps its first items the same way, cut in the JSON text between array elements.

Beside each copy, `<file>.expected.json` records what feedparser (or `json`, for JSON
Feeds, which feedparser cannot read) says about the copy, not what our parser says:
the entry count, the titles, the feed language, the source and its licence. Where the
project counts entries differently on purpose, the count says so and `note` says why.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import feedparser

HERE = Path(__file__).resolve().parent
OUT = HERE / "real"
WHOLE = 24 * 1024
BUDGET = 16 * 1024
#: at least this many items, unless they alone pass HARD_LIMIT bytes
MIN_ITEMS = 2
HARD_LIMIT = 64 * 1024
#: files that keep more items than BUDGET allows, so a quirk the tests rely on survives
AT_LEAST = {"scripting-com__rss.xml": 13}  # through its first repeated guid

#: licences of the projects whose test data the corpus came from
LICENCES = {
    "miniflux/v2": "Apache-2.0",
    "anyant/rssant": "BSD-3-Clause",
    "feed-rs/feed-rs": "MIT",
    "rbren/rss-parser": "MIT",
    "Ranchero-Software/RSParser": "MIT",
    "danmactough/node-feedparser": "MIT",
    "kurtmckee/feedparser": "BSD-2-Clause",
    "lemon24/reader": "BSD-3-Clause",
}

#: what reading each file by hand found behind its count difference
REASONS = {
    "scripting-com__rss.xml": (
        "two <guid>s appear twice (…/06/24.html#a100632, …/06/25.html#a080631)"
    ),
    "pcmag-com__dvorak-illegally-nested.xml": (
        "FeedBurner nested a stray empty <item /> inside each of the real items"
    ),
    "cercle-psy__no-prolog-latin1.xml": (
        "one <item> with empty <title>, <link> and <description> (only a pubDate)"
    ),
}

# A CDATA section or comment is skipped whole, so an "</item>" inside one is not a boundary.
_TOKEN = re.compile(
    rb"<!\[CDATA\[.*?\]\]>|<!--.*?-->"
    rb"|<(/?)((?:[\w.-]+:)?(?:item|entry))(?=[\s/>])[^>]*?(/?)>",
    re.S,
)


def item_spans(body: bytes) -> list[tuple[int, int]]:
    """Byte spans of the top-level <item>/<entry> elements; a nested one (FeedBurner's
    stray `<item />` inside an item) belongs to its parent."""
    spans = []
    depth = 0
    start = 0
    for m in _TOKEN.finditer(body):
        if m.group(2) is None:
            continue
        if m.group(1):
            depth -= 1
            if depth == 0:
                spans.append((start, m.end()))
        elif not m.group(3):
            if depth == 0:
                start = m.start()
            depth += 1
    return spans


def json_item_spans(text: str) -> tuple[list[tuple[int, int]], int] | None:
    """Character spans of the top-level "items" array's elements, and where the array
    closes; None if the document is not a JSON object with such an array."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    i = ws.match(text, 0).end()  # type: ignore[union-attr]
    if text[i : i + 1] != "{":
        return None
    i += 1
    while True:
        i = ws.match(text, i).end()  # type: ignore[union-attr]
        if text[i : i + 1] == "}":
            return None
        key, i = decoder.raw_decode(text, i)
        i = ws.match(text, i).end()  # type: ignore[union-attr]
        assert text[i] == ":"
        i = ws.match(text, i + 1).end()  # type: ignore[union-attr]
        if key == "items" and text[i] == "[":
            spans = []
            i += 1
            while True:
                i = ws.match(text, i).end()  # type: ignore[union-attr]
                if text[i] == "]":
                    return spans, i
                _, end = decoder.raw_decode(text, i)
                spans.append((i, end))
                i = ws.match(text, end).end()  # type: ignore[union-attr]
                if text[i] == ",":
                    i += 1
        _, i = decoder.raw_decode(text, i)
        i = ws.match(text, i).end()  # type: ignore[union-attr]
        if text[i] == ",":
            i += 1


def keep_first(
    whole: str | bytes, spans: list[tuple[int, int]], close: int, n: int, extra: int | None = None
) -> Any:
    """The document with only its first `n` items (and the `extra`th, with the bytes just
    before it): head, items, then the tail after the last item."""
    kept = whole[: spans[n - 1][1]]
    if extra is not None:
        kept += whole[spans[extra - 1][1] : spans[extra][1]]
    return kept + whole[close:]


def trim(
    body: bytes,
    is_json: bool,
    at_least: int = MIN_ITEMS,
    faithful: Callable[[bytes], bool] = lambda kept: True,
) -> tuple[bytes, list[int], int]:
    """(kept bytes, indices of the items kept, items in the original); the body itself
    when small. When `faithful` refuses the first items alone (the file's XML error is
    further down), the first item after them that it accepts is kept too."""
    if is_json:
        text = body.decode("utf-8")
        found = json_item_spans(text)
        if found is None:
            return body, [], 0
        spans, close = found

        def cut(n: int, extra: int | None = None) -> bytes:
            return keep_first(text, spans, close, n, extra).encode("utf-8")  # type: ignore[no-any-return]
    else:
        spans = item_spans(body)
        close = spans[-1][1] if spans else 0

        def cut(n: int, extra: int | None = None) -> bytes:
            return keep_first(body, spans, close, n, extra)  # type: ignore[no-any-return]

    everything = list(range(len(spans)))
    if len(body) <= WHOLE or len(spans) <= MIN_ITEMS:
        return body, everything, len(spans)
    n = min(max(MIN_ITEMS, at_least), len(spans))
    while n < len(spans) and len(cut(n + 1)) <= BUDGET:
        n += 1
    if len(cut(n)) > HARD_LIMIT:
        n = 1
    if faithful(cut(n)):
        return cut(n), everything[:n], len(spans)
    for extra in range(n, len(spans)):
        if faithful(cut(n, extra)):
            return cut(n, extra), [*everything[:n], extra], len(spans)
    return body, everything, len(spans)


def expectations(name: str, body: bytes) -> dict[str, Any]:
    """What an independent reading of these bytes says (feedparser, or json for JSON Feed)."""
    if "BROKEN" in name:
        return {"broken": True, "entries": 0, "titles": [], "language": None}
    if name.endswith(".json"):
        doc = json.loads(body.decode("utf-8-sig"))
        items = [i for i in doc["items"] if isinstance(i, dict)]
        titles = [i["title"] if isinstance(i.get("title"), str) else "" for i in items]
        return {"entries": len(items), "titles": titles, "language": doc.get("language")}
    d = feedparser.parse(body)
    exc = d.get("bozo_exception")
    kept, notes, seen = [], [], set()
    for e in d.entries:
        fields = [e.get(k) for k in ("id", "link", "title", "summary")] + [e.get("content")]
        if not any(fields):
            notes.append("empty")
            continue
        if e.get("id") and e["id"] in seen:
            notes.append(f"repeat:{e['id']}")
            continue
        seen.add(e.get("id"))
        kept.append(e)
    empty = notes.count("empty")
    repeats = [n.split(":", 1)[1] for n in notes if n.startswith("repeat:")]
    reasons = []
    if empty:
        reasons.append(
            f"{empty} of feedparser's entries have no id, link, title or text (an empty "
            "<item />, or an item with only a date): not entries here"
        )
    if repeats:
        reasons.append(
            f"{len(repeats)} guid(s) appear twice ({', '.join(repeats)}): the first copy is kept"
        )
    out: dict[str, Any] = {
        "entries": len(kept),
        "feedparser_entries": len(d.entries),
        "titles": [e.get("title", "") for e in kept],
        "language": d.feed.get("language"),
        "feedparser_bozo": type(exc).__name__ if d.get("bozo") else None,
    }
    if name in REASONS:
        reasons.append(f"read by hand in the whole file: {REASONS[name]}")
    if reasons:
        out["note"] = "; ".join(reasons)
    return out


def main(source: Path) -> None:
    with (source / "SOURCES.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    OUT.mkdir(exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    fields = list(rows[0])
    for row in rows:
        name = row["file"]
        body = (source / name).read_bytes()
        is_json = name.endswith(".json") and "BROKEN" not in name
        bozo = expectations(name, body).get("feedparser_bozo")
        kept, kept_items, total = trim(
            body,
            is_json,
            AT_LEAST.get(name, MIN_ITEMS),
            lambda cut: expectations(name, cut).get("feedparser_bozo") == bozo,  # noqa: B023
        )
        (OUT / name).write_bytes(kept)
        expected = expectations(name, kept)
        expected["source"] = {
            "repo": row["repo"],
            "commit": row["commit"],
            "path": row["path"],
            "licence": LICENCES.get(row["repo"]),
            "format": row["format"],
            "language": row["language"],
        }
        if kept != body:
            # A cut must not change how the document reads: same XML errors, same items.
            whole = expectations(name, body)
            assert whole.get("feedparser_bozo") == expected.get("feedparser_bozo"), name
            assert all(t in whole["titles"] for t in expected["titles"]), name
            expected["trimmed"] = {
                "items": len(kept_items),
                "items_in_original": total,
                "bytes": len(kept),
                "bytes_in_original": len(body),
            }
            which = f"the first {len(kept_items)}"
            if kept_items[-1] != len(kept_items) - 1:
                which = f"the first {len(kept_items) - 1} and item {kept_items[-1] + 1}"
                expected["trimmed"]["also_item"] = kept_items[-1] + 1
                expected["trimmed"]["why"] = "it carries the file's XML error"
            row["notes"] = (
                f"TRIMMED by tests/feeds/trim.py to {which} of {total} items "
                f"({len(kept)} of {len(body)} bytes); the rest describes the original. "
                + row["notes"]
            )
        text = json.dumps(expected, ensure_ascii=False, indent=1)
        (OUT / f"{name}.expected.json").write_text(text + "\n", encoding="utf-8")
    with (OUT / "SOURCES.tsv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fields, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "corpus" / "real")
