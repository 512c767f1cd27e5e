"""OPML feed lists into the config, for `aggregator opml import`.

Reading takes the OPML files people actually have, not only well-formed ones:
exports with a raw `&` or a stray `"` in a title, OPML 1.0/1.1/2.0, a default
namespace, `xmlUrl` spelt `xmlURL` or `xmlurl`, folders nested at any depth. A
well-formed file is read as XML; anything else is read again with libxml2's
lenient HTML parser (what listparser does), and every repaired line is reported.
A file declaring entities is refused and nothing is fetched (an OPML file is input
from strangers too).

Importing edits the TOML config with tomlkit, so the user's comments and layout
survive; the edited file is validated before it replaces the old one.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aggregator.config import Config, parse
from aggregator.config.checks import same_feed
from aggregator.config.validate import url_problem as _url_problem
from aggregator.errors import AggregatorError

if TYPE_CHECKING:
    from lxml import etree

#: an OPML file larger than this is refused unread (a mistaken path to a disk image)
MAX_FILE_SIZE = 32 * 1024 * 1024
#: at most this many "malformed XML" warnings for one file; the rest are counted
MAX_REPAIR_WARNINGS = 20


class OpmlError(AggregatorError):
    """The OPML file cannot be used at all (unreadable, or no usable feed in it)."""

    def __init__(self, message: str, warnings: list[str] | None = None):
        #: what was wrong with the file's outlines, for the user
        self.warnings = warnings or []
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Outline:
    """One feed from an OPML file."""

    url: str
    title: str | None
    #: the folders it sits in, outermost first, joined with " / "
    category: str | None = None
    #: line in the OPML file (for messages)
    line: int | None = None


@dataclass(slots=True)
class Reading:
    """What an OPML file holds: its feeds, in order, and what was wrong with it."""

    outlines: list[Outline] = field(default_factory=list)
    #: "FILE:LINE: problem" lines, for the user
    warnings: list[str] = field(default_factory=list)
    #: outlines with a feed URL that is not usable (each has a warning)
    skipped: int = 0


@dataclass(slots=True)
class ImportResult:
    #: (name, url, title) of each feed appended to the config
    added: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: feeds of the OPML file that the config already had (same URL)
    present: int = 0
    #: outlines repeating a URL met earlier in the same OPML file
    repeated: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def read(data: bytes, source: str = "OPML") -> Reading:
    """Every outline with a feed URL, at any depth, with its folder path.

    `source` names the file in warnings. Raises OpmlError when the data is not
    a document at all; a document without feeds gives an empty `outlines`.
    """
    from lxml import etree

    if len(data) > MAX_FILE_SIZE:
        raise OpmlError(f"{source}: larger than {MAX_FILE_SIZE // (1024 * 1024)} MiB")
    reading = Reading()
    as_xml = etree.XMLParser(
        recover=True,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, as_xml)
    except etree.XMLSyntaxError:
        root = None
    dtd = root.getroottree().docinfo.internalDTD if root is not None else None
    if dtd is not None and any(True for _ in dtd.iterentities()):
        # libxml2 expands internal entities in attribute values whatever resolve_entities
        # says (within its amplification limit); no feed list needs them.
        raise OpmlError(f"{source}: declares XML entities (<!ENTITY>), which OPML never needs")
    errors = [e for e in as_xml.error_log if e.level >= etree.ErrorLevels.ERROR]
    lenient_read = root is None or bool(errors)
    if lenient_read:
        # Not well-formed: libxml2's XML recovery drops every attribute after a stray
        # quote (losing the xmlUrl), its HTML parser keeps them, as listparser relies on.
        lenient = etree.HTMLParser(
            no_network=True, remove_comments=True, remove_pis=True, encoding="utf-8"
        )
        root = etree.fromstring(_decode(data).encode("utf-8"), lenient)
        if root is None:
            raise OpmlError(f"{source}: not an OPML file (no XML or HTML in it)")
    for node in root.iter():
        if not isinstance(node.tag, str) or _local(node) != "outline":
            continue
        attrs = _attrs(node)
        url = _feed_url(attrs)
        where = f"{source}:{node.sourceline}"
        title = _clean(attrs.get("title") or attrs.get("text"))
        if url is None:
            kind = attrs.get("type", "").lower()
            if kind in ("rss", "atom") and not _has_child_outline(node):
                reading.warnings.append(f'{where}: skipped "{title}": type="{kind}" but no xmlUrl')
                reading.skipped += 1
            elif kind == "include" and attrs.get("url"):
                reading.warnings.append(
                    f'{where}: "{title}" includes another OPML file ({attrs["url"]}),'
                    " not followed: import that file too"
                )
            continue
        problem = _url_problem(url, allow_file=False)
        if problem:
            shown = f'"{title}"' if title else "an outline"
            reading.warnings.append(f"{where}: skipped {shown}: {problem}")
            reading.skipped += 1
            continue
        reading.outlines.append(Outline(url, title, _category(node), node.sourceline))
    if lenient_read:
        reading.warnings[:0] = _repair_warnings(source, data, errors, reading)
    return reading


def _repair_warnings(source: str, data: bytes, errors: list[Any], reading: Reading) -> list[str]:
    """One warning per malformed line: the feed read from it, or that its feed was lost."""
    lines = sorted({e.line for e in errors})
    if not lines:
        return [f"{source}: not well-formed XML, read leniently"]
    raw = data.splitlines()
    out = []
    for n, line in enumerate(lines):
        what = next(e.message.strip() for e in errors if e.line == line)
        kept = [o.url for o in reading.outlines if o.line == line]
        lost = not kept and 0 < line <= len(raw) and b"xmlurl" in raw[line - 1].lower()
        if lost:
            reading.skipped += 1
        if n >= MAX_REPAIR_WARNINGS:
            continue
        if kept:
            out.append(f"{source}:{line}: malformed XML ({what}), read leniently: {kept[0]}")
        elif lost:
            out.append(
                f"{source}:{line}: skipped an outline: malformed XML ({what}) hides its xmlUrl"
            )
        else:
            out.append(f"{source}:{line}: malformed XML ({what}), read leniently")
    if len(lines) > MAX_REPAIR_WARNINGS:
        out.append(f"{source}: {len(lines) - MAX_REPAIR_WARNINGS} more malformed lines")
    return out


def _local(node: etree._Element) -> str:
    """The tag without a namespace: some exporters put OPML in xmlns="http://www.opml.org/spec2/"."""
    tag = node.tag
    assert isinstance(tag, str)
    return tag.rpartition("}")[2].lower()


def _attrs(node: etree._Element) -> dict[str, str]:
    """Attributes by lower-cased name: `xmlUrl`, `xmlURL` and `xmlurl` all occur."""
    return {str(k).rpartition("}")[2].lower(): str(v) for k, v in node.attrib.items()}


def _feed_url(attrs: Mapping[str, str]) -> str | None:
    url = attrs.get("xmlurl", "").strip()
    if not url and attrs.get("type", "").lower() in ("rss", "atom"):
        url = attrs.get("url", "").strip()  # some old exporters put the feed in `url`
    return url or None


def _has_child_outline(node: etree._Element) -> bool:
    return any(isinstance(c.tag, str) and _local(c) == "outline" for c in node)


def _category(node: etree._Element) -> str | None:
    names = []
    for parent in node.iterancestors():
        if isinstance(parent.tag, str) and _local(parent) == "outline":
            attrs = _attrs(parent)
            name = _clean(attrs.get("title") or attrs.get("text"))
            if name and _feed_url(attrs) is None:
                names.append(name)
    return " / ".join(reversed(names)) or None


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _clean(text: str | None) -> str | None:
    """One line of text: titles are sometimes wrapped across lines in the attribute."""
    if not text:
        return None
    return " ".join(_CONTROL.sub("", text).split()) or None


_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")


def _decode(data: bytes) -> str:
    """Text for the lenient parser: BOM, then the XML declaration, then a guess."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(codec, "replace")
    m = _DECLARED.match(data[:200])
    try:
        return data.decode(m.group(1).decode("ascii") if m else "utf-8")
    except (LookupError, UnicodeDecodeError):
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        return str(best) if best is not None else data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- naming


_NAME_MAX = 60


def slugify(text: str) -> str:
    """A feed name ([a-z0-9-]) from a title or URL."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"^https?://(www\.)?", "", text.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return slug[:_NAME_MAX].strip("-") or "feed"


def _mostly_latin(title: str) -> bool:
    """Whether a title's letters are mostly Latin, so a name made from it says something.

    "Вести.Ru" would become "ru" and "SH2の日記" "sh2": names after the host say more.
    """
    letters = [c for c in title if c.isalpha()]
    latin = [c for c in letters if unicodedata.normalize("NFKD", c)[0].isascii()]
    return bool(latin) and 2 * len(latin) >= len(letters)


def _host_slug(url: str) -> str:
    host = (urlsplit(url).hostname or "").removeprefix("www.")
    try:
        host = host.encode("idna").decode("ascii")  # президент.рф -> xn--d1abbgf6aiiy.xn--p1ai
    except UnicodeError:
        pass
    return slugify(host)


def feed_names(outline: Outline) -> Iterable[str]:
    """Candidate names for a feed, best first; the caller takes the first one free."""
    if outline.title and _mostly_latin(outline.title) and slugify(outline.title) != "feed":
        base = slugify(outline.title)
    else:
        base = _host_slug(outline.url)
        yield base
        base = slugify(outline.url)  # host and path: two feeds of one site
    yield base
    n = 2
    while True:
        suffix = f"-{n}"
        yield base[: _NAME_MAX - len(suffix)].rstrip("-") + suffix
        n += 1


# --------------------------------------------------------------------------- importing


def import_into_config(opml_path: Path, data: bytes, config: Config) -> ImportResult:
    """Append the OPML's new feeds to the config file (config.path).

    Feeds whose URL the config already has, and repeats within the OPML file, are
    counted and left out; unusable outlines are skipped with a warning. The OPML
    folders are kept as comments: one above the first [[feeds]] of each folder.
    """
    import tomlkit
    from tomlkit.items import AoT

    reading = read(data, str(opml_path))
    if not reading.outlines:
        if reading.skipped:
            problem = f"no usable feed: {reading.skipped} outlines skipped"
        else:
            problem = "no feed (an <outline> with an xmlUrl) in this file"
        raise OpmlError(f"{opml_path}: {problem}", reading.warnings)
    result = ImportResult(skipped=reading.skipped, warnings=reading.warnings)
    known = {same_feed(f.url) for f in config.feeds}
    names = {f.name for f in config.feeds}
    seen: set[str] = set()
    new: list[tuple[Outline, str]] = []
    for o in reading.outlines:
        key = same_feed(o.url)
        if key in known:
            result.present += 1
            continue
        if key in seen:
            result.repeated += 1
            continue
        seen.add(key)
        name = next(n for n in feed_names(o) if n not in names)
        names.add(name)
        new.append((o, name))
    if not new:
        return result

    path = config.path
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    feeds: Any = doc.get("feeds")
    if feeds is None:
        before = doc.as_string()
        feeds = tomlkit.aot()
        doc.append("feeds", feeds)
    elif isinstance(feeds, AoT):
        before = feeds.body[-1].as_string() if feeds.body else doc.as_string()
    else:
        raise OpmlError(
            f"{path}: `feeds` is an inline array here; opml import appends [[feeds]] tables"
        )
    keys = list(doc.keys())
    followed = keys.index("feeds") < len(keys) - 1
    blank = not before or before.endswith("\n\n")
    folder: str | None = None
    for i, (o, name) in enumerate(new):
        table = tomlkit.table()
        table["name"] = name
        table["url"] = o.url
        if o.title:
            table["title"] = o.title
        if i == len(new) - 1 and followed:
            table.add(tomlkit.nl())
        # Set after the keys: tomlkit indents a table's keys like its header line.
        lead = "" if i == 0 and blank else "\n"
        if o.category != folder:  # a comment heads each run of feeds from one folder
            lead += f"# OPML folder: {o.category}\n" if o.category else "# OPML: no folder\n"
            folder = o.category
        table.trivia.indent = lead
        feeds.append(table)
        result.added.append((name, o.url, o.title))
    new_text = tomlkit.dumps(doc)
    parse(new_text, path)  # refuse to write a config we could not load
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(path)
    return result
