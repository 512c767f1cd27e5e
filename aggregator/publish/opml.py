"""Feed lists out as OPML, for `aggregator opml export` and /topics.opml: one writer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from xml.etree import ElementTree

from aggregator.config import Config


def write(title: str, outlines: Iterable[Mapping[str, str | None]]) -> bytes:
    """An OPML 2.0 document: a head with only a title, one <outline> per feed.

    Each mapping gives an outline's attributes in order (None values left out);
    `type="rss"` is added first. No <docs> in the head: the W3C feed validator
    does not know that element. Indented, and ends with a newline.
    """
    root = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(root, "head")
    ElementTree.SubElement(head, "title").text = title
    body = ElementTree.SubElement(root, "body")
    for attrs in outlines:
        outline = ElementTree.SubElement(body, "outline", type="rss")
        for key, value in attrs.items():
            if value is not None:
                outline.set(key, value)
    ElementTree.indent(root)
    text = ElementTree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{text}\n'.encode()


def export_feeds(config: Config) -> bytes:
    """The configured feeds as OPML 2.0."""
    return write(
        "aggregator feeds",
        ({"text": f.display_name, "title": f.display_name, "xmlUrl": f.url} for f in config.feeds),
    )
