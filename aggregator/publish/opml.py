"""Feed lists in and out as OPML 2.0, for `aggregator opml import` / `opml export`.

Reading goes through defusedxml (an OPML file is input from strangers too).
Importing edits the TOML config with tomlkit, so the user's comments and layout
survive; the edited file is validated before it replaces the old one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, tostring

import tomlkit
from defusedxml import ElementTree as SafeET

from aggregator.config import Config, parse
from aggregator.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Outline:
    """One feed from an OPML file."""

    url: str
    title: str | None


def read(data: bytes) -> list[Outline]:
    """Every outline with an xmlUrl, at any depth (folders are flattened)."""
    try:
        root = SafeET.fromstring(data)
    except Exception as exc:  # defusedxml raises several kinds; all mean "not OPML"
        raise ValueError(f"not a readable OPML file: {exc}") from exc
    out = []
    for node in root.iter("outline"):
        url = (node.get("xmlUrl") or node.get("xmlurl") or "").strip()
        if url:
            title = node.get("title") or node.get("text")
            out.append(Outline(url, title.strip() if title else None))
    return out


def slugify(text: str) -> str:
    """A feed name ([a-z0-9-]) from a title or URL."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"^https?://(www\.)?", "", text.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return slug[:60].strip("-") or "feed"


def export_feeds(config: Config) -> bytes:
    """The configured feeds as OPML 2.0."""
    opml = Element("opml", version="2.0")
    head = SubElement(opml, "head")
    SubElement(head, "title").text = "aggregator feeds"
    body = SubElement(opml, "body")
    for f in config.feeds:
        SubElement(
            body, "outline", type="rss", text=f.display_name, title=f.display_name, xmlUrl=f.url
        )
    data: bytes = tostring(opml, encoding="utf-8")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + data


def import_into_config(path: Path, data: bytes, config: Config) -> list[tuple[str, str]]:
    """Append the OPML's new feeds to the config file; returns (name, url) added."""
    try:
        outlines = read(data)
    except ValueError as exc:
        raise ConfigError(str(path), str(exc), key="opml") from exc
    text = path.read_text(encoding="utf-8")
    doc = tomlkit.parse(text)
    known_urls = {f.url for f in config.feeds}
    names = {f.name for f in config.feeds}
    feeds = doc.get("feeds")
    if feeds is None:
        feeds = tomlkit.aot()
        doc["feeds"] = feeds
    added = []
    for o in outlines:
        if o.url in known_urls:
            continue
        base = slugify(o.title or o.url)
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        table = tomlkit.table()
        table["name"] = name
        table["url"] = o.url
        if o.title:
            table["title"] = o.title
        feeds.append(table)
        names.add(name)
        known_urls.add(o.url)
        added.append((name, o.url))
    if added:
        new_text = tomlkit.dumps(doc)
        parse(new_text, path)  # refuse to write a config we could not load
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new_text, encoding="utf-8")
        tmp.replace(path)
    return added
