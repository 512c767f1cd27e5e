"""JSON Feed 1.0/1.1 into `ParsedEntry`s; values of the wrong type are ignored."""

from __future__ import annotations

import email.utils
import html
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from aggregator import models
from aggregator.errors import ParseError
from aggregator.ingest.parse.entries import _sane
from aggregator.ingest.parse.fields import _BOM, _cut, _describe, _keep, _language, _text

_JSON_TYPES = ("application/feed+json", "application/json")


def _is_json(body: bytes, headers: Mapping[str, str]) -> bool:
    start = body.lstrip()
    if start.startswith(_BOM):
        start = start[len(_BOM) :].lstrip()
    if start.startswith(b"{"):
        return True
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type in _JSON_TYPES and not start.startswith(b"<")


def _parse_json(
    body: bytes, url: str | None, max_entries: int, max_field: int
) -> models.ParsedFeed:
    """Read a JSON Feed 1.0/1.1 document (https://www.jsonfeed.org/version/1.1/)."""
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ParseError(f"not a feed: broken JSON ({_describe(e)})", url) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise ParseError("not a feed: JSON without an items list", url)
    version = doc.get("version")
    warning = None
    if not (isinstance(version, str) and "jsonfeed.org/version/" in version):
        warning = f"JSON Feed without a known version: {str(version)[:80]!r}"

    entries = []
    not_objects = 0
    for item in doc["items"]:
        if not isinstance(item, dict):
            not_objects += 1
            continue
        link = _text(item.get("url")) or _text(item.get("external_url"))
        if link and url:
            link = urljoin(url, link)
        content = _text(item.get("content_html"))
        if not content and _text(item.get("content_text")):
            content = html.escape(_text(item.get("content_text")) or "")
        summary = html.escape(_text(item.get("summary")) or "")
        published = _json_date(item.get("date_published"))
        updated = _json_date(item.get("date_modified"))
        entries.append(
            models.ParsedEntry(
                guid=_cut(_json_id(item.get("id")), max_field),
                link=_cut(link, max_field),
                title=_cut(_text(item.get("title")), max_field) or "",
                summary=_cut(summary, max_field) or "",
                content=_cut(content, max_field) or "",
                author=_cut(_json_author(item), max_field),
                published=published or updated,
                updated=updated,
            )
        )
    kept, skipped = _keep(entries, max_entries)
    return models.ParsedFeed(
        title=_cut(_text(doc.get("title")), max_field),
        link=_cut(_text(doc.get("home_page_url")), max_field),
        entries=kept,
        warning=warning,
        language=_language(doc.get("language")),
        read=len(doc["items"]),
        skipped=models.add_counts(skipped, {"no_content": not_objects}),
    )


def _json_author(item: Mapping[str, Any]) -> str | None:
    authors = item.get("authors")
    if not isinstance(authors, list):
        authors = [item.get("author")]
    names = [_text(a.get("name")) for a in authors if isinstance(a, dict)]
    return ", ".join(n for n in names if n) or None


def _json_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _sane(parsed.astimezone(UTC))


def _json_id(value: Any) -> str | None:
    """An item id: JSON Feed 1.1 says a reader must coerce a number to a string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _text(value)
