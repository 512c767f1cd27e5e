"""Normalize stage: one `ParsedEntry` as the feed gave it into an `Entry` we can store.

Pure: data in, data out; the current time is a parameter. It resolves and
canonicalizes links, turns dates into aware UTC (a missing or future date becomes
the first-seen time), makes plain text for matching and dedupe, and computes the
entry's key and content hash. It must not sanitize or rewrite the HTML it keeps
(that happens once, at output) and must not touch the network or the database.

`clean_title` and `canonical_url` are shared with the other pure stages.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit, urlunsplit

from aggregator import models
from aggregator.match import dedupe
from aggregator.text import html_to_text, one_line, xml_text

#: how far after `now` a published date may lie before it counts as a lie
FUTURE_TOLERANCE = timedelta(minutes=10)

#: bumped whenever the content hash recipe changes, so old hashes never match new ones
HASH_VERSION = "1"

# --- URLs ----------------------------------------------------------------------

#: query parameters that only say where a click came from; dropped from canonical links
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "yclid",
        "ysclid",
        "_ga",
        "_gl",
        "igshid",
        "igsh",
        "ref_src",
        "ref_url",
        "cmpid",
        "ocid",
        "ncid",
        "xtor",
        "smid",
        "mkt_tok",
        "_hsenc",
        "_hsmi",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "wickedid",
        "rb_clickid",
        "s_cid",
        "soc_src",
        "soc_trk",
        "twclid",
        "ttclid",
        "li_fat_id",
        "epik",
        "at_medium",
        "at_campaign",
        "at_custom1",
        "at_custom2",
        "at_custom3",
        "at_custom4",
        "at_link_id",
        "at_link_type",
        "at_link_origin",
        "at_format",
        "at_ptr_name",
        "at_bbc_team",
    }
)
#: prefixes of whole families of tracking parameters (Google Analytics, Piwik/Matomo)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})|%")
# Characters left as they are when re-quoting: RFC 3986 reserved and unreserved, and "%".
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = "/?:@!$&'()*+,;=-._~%"


def canonical_url(url: str, base: str | None = None) -> str | None:
    """Return the form of `url` that two outlets (or two polls) linking the same page share.

    None for anything that is not an http(s) URL: those are never a page we can link.
    Query parameter order is kept (some sites route on it); only trackers are dropped.
    """
    parts = _absolute(url, base)
    if parts is None:
        return None
    host = _host(parts)
    if host is None:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    netloc = host
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        netloc = f"{host}:{port}"
    path = _remove_dot_segments(_requote(parts.path, _PATH_SAFE)) or "/"
    query = "&".join(
        _requote(pair, _QUERY_SAFE)
        for pair in parts.query.split("&")
        if pair and not _is_tracker(pair)
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def absolute_url(url: str | None, base: str | None = None) -> str | None:
    """Resolve `url` against `base`; None unless the result is an http(s) URL."""
    if not url:
        return None
    parts = _absolute(url, base)
    if parts is None or not parts.netloc:
        return None
    return urlunsplit(parts)


def _absolute(url: str, base: str | None) -> SplitResult | None:
    url = url.strip()
    if not url:
        return None
    try:
        if base:
            url = urljoin(base.strip(), url)
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    return parts._replace(scheme=scheme)


def _host(parts: SplitResult) -> str | None:
    """Lowercase ASCII host (IDNA for Unicode names), without userinfo or a trailing dot."""
    try:
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    if ":" in host:  # IPv6 literal
        return f"[{host}]"
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host.lower()


def _requote(text: str, safe: str) -> str:
    """Decode escapes of unreserved characters, uppercase the others, quote raw bytes."""

    def fix(match: re.Match[str]) -> str:
        if match.group(1) is None:  # a lone "%" is a literal percent sign
            return "%25"
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return quote(_PERCENT.sub(fix, text), safe=safe)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, so `/a/./b/../c` and `/a/c` are one page."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/".join(output)


def _is_tracker(pair: str) -> bool:
    name = unquote(pair.split("=", 1)[0]).strip().lower()
    return name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES)


# A tag as an author writes one: a name, then attributes with or without values.
_TAG = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)"
    r"((?:\s+[^\s\"'>/=]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+))?)*)\s*(/?)>"
)
_VALUED_ATTRIBUTE = re.compile(r"=\s*[\"']?")
_MARKUP_MARKERS = ("<!--", "<![CDATA[")


def holds_markup(text: str) -> bool:
    """Whether a title from a format that does not say (RSS, JSON Feed) is HTML.

    Only real tags count: an element closed after it was opened (`<b>..</b>`), a
    start tag with an attribute value (`<img src=x>`), an explicit `<br/>`, a
    comment or CDATA. A title that talks about tags (`The <script> tag`,
    `vector<int>`, `if a<b and c>d`) opens without closing and is text.
    """
    if "<" not in text:
        return False
    if any(marker in text for marker in _MARKUP_MARKERS):
        return True
    opened: set[str] = set()
    for match in _TAG.finditer(text):
        closing, name, attributes, self_closing = match.groups()
        name = name.lower()
        if closing:
            if name in opened:
                return True
        elif self_closing or _VALUED_ATTRIBUTE.search(attributes):
            return True
        else:
            opened.add(name)
    return False


def _decode(text: str) -> str:
    # A few rounds: "&amp;amp;" (double-encoded by the outlet) settles as "&".
    for _ in range(3):
        if "&" not in text:
            break
        again = html.unescape(text)
        if again == text:
            break
        text = again
    return text


def clean_title(title: str, markup: bool | None = None) -> str:
    """A one-line plain-text title.

    `markup` is what the feed says: True for (X)HTML (Atom `type="html"`/`"xhtml"`),
    False for plain text (Atom `type="text"`, kept exactly), None when the format
    does not say (RSS, JSON Feed), where `holds_markup` decides. Markup loses its
    tags and then has its references decoded; text that is not markup only has its
    references decoded. Nothing is stripped after decoding, so a title about
    `&lt;script&gt;` keeps the word `<script>`.
    """
    if markup is None:
        markup = holds_markup(title)
        text = _decode(html_to_text(title) if markup else title)
    elif markup:
        text = _decode(html_to_text(title))
    else:
        text = title
    return one_line(xml_text(text))


# --- words ---------------------------------------------------------------------


# --- the entry -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """What tells a stored item from a new or edited one: cheap to compute, so a
    feed's unchanged items skip the rest of `normalize` (their HTML to text)."""

    key: str
    content_hash: str
    guid: str | None
    link: str | None
    canonical_link: str | None
    title: str


def identity(entry: models.ParsedEntry, base_url: str | None = None) -> Identity:
    """The entry's key within its feed and the hash of what a reader sees."""
    link = absolute_url(entry.link, base_url)
    canonical = canonical_url(link) if link else None
    title = clean_title(entry.title, entry.title_markup)
    guid = entry.guid.strip() if entry.guid and entry.guid.strip() else None
    if guid:
        key = guid
    elif canonical:
        # the posts of one page are told apart by their anchors
        fragment = dedupe.post_fragment(link)
        key = f"{canonical}#{fragment}" if fragment else canonical
    elif title:
        # No identity from the feed: the title is what stays put across polls.
        key = "sha1:" + hashlib.sha1(title.encode("utf-8")).hexdigest()
    else:
        # An untitled item falls back to its text so two of them do not collide.
        key = "sha1:" + hashlib.sha1(_text(title, entry).encode("utf-8")).hexdigest()
    return Identity(
        key=key,
        content_hash=content_hash(title, entry.summary, entry.content),
        guid=guid,
        link=link,
        canonical_link=canonical,
        title=title,
    )


def _text(title: str, entry: models.ParsedEntry) -> str:
    """Title, summary and content as one plain text (the content only when it adds)."""
    summary_text = html_to_text(entry.summary)
    content_text = html_to_text(entry.content)
    parts = [title, summary_text]
    if content_text != summary_text:
        parts.append(content_text)
    return "\n".join(p for p in parts if p)


def normalize(
    entry: models.ParsedEntry,
    feed: str,
    now: datetime,
    base_url: str | None = None,
    ident: Identity | None = None,
) -> models.Entry:
    """Turn one parsed item of `feed` into the `Entry` we store, as first seen at `now`.

    `base_url` is where the feed came from, for links the feed left relative;
    `ident` is `identity(entry, base_url)` when the caller has it already.
    """
    ident = ident or identity(entry, base_url)
    author = entry.author.strip() if entry.author and entry.author.strip() else None
    return models.Entry(
        feed=feed,
        key=ident.key,
        guid=ident.guid,
        link=ident.link,
        canonical_link=ident.canonical_link,
        title=ident.title,
        summary_html=entry.summary,
        content_html=entry.content,
        text=_text(ident.title, entry),
        author=author,
        published=published_time(entry.published, now),
        content_hash=ident.content_hash,
    )


def published_time(published: datetime | None, now: datetime) -> datetime:
    """Aware UTC publication time; `now` (first seen) when missing or in the future."""
    now = _utc(now)
    if published is None:
        return now
    published = _utc(published)
    return now if published > now + FUTURE_TOLERANCE else published


def content_hash(title: str, summary: str, content: str) -> str:
    """A versioned hash of what a reader sees, to notice an outlet's edits."""
    digest = hashlib.sha256(f"{title}\0{summary}\0{content}".encode("utf-8", "surrogatepass"))
    return f"{HASH_VERSION}:{digest.hexdigest()}"


def _utc(value: datetime) -> datetime:
    # A naive datetime here came from a feed without a zone: UTC is the usual intent.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
