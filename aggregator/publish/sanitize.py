"""Everything a stranger wrote, made safe for every output: HTML through nh3's
allow-list, URLs checked, titles and names as plain text, and each result valid
XML 1.0 text (`text.xml_text`). Pure; the feeds and the pages both use it."""

from __future__ import annotations

import html
import logging
import re
from urllib.parse import quote, urlsplit, urlunsplit

import nh3

from aggregator.text import html_to_text, xml_text

log = logging.getLogger(__name__)


# -------------------------------------------------------------------------------

#: Tags a news summary needs; everything else is unwrapped to its text.
ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "a", "b", "strong", "i", "em", "u", "s", "sub", "sup", "small",
        "code", "pre", "blockquote", "q", "cite", "abbr", "ul", "ol", "li", "dl", "dt", "dd",
        "h1", "h2", "h3", "h4", "h5", "h6", "img", "figure", "figcaption",
        "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
    }
)  # fmt: skip
#: Attributes kept per tag. No style, class, id or event handler ever; `dir`/`lang`
#: stay because Urdu and Arabic text needs `dir="rtl"` to read right.
ALLOWED_ATTRIBUTES = {
    "*": {"dir", "lang"},
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
#: Tags removed together with their content (their text is code or widgets, not prose).
#: Inline SVG and MathML are not among them: a formula or a chart label is the
#: article's text, so only their elements go (`_foreign_text`).
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "template", "noscript", "iframe", "object", "embed",
     "textarea", "select", "button", "title", "xmp", "noembed", "noframes"}
)  # fmt: skip
LINK_REL = "nofollow noopener noreferrer"

# Character references as a browser decodes them inside an attribute: numeric ones
# even without the semicolon, named ones only with it (so "?a=1&not=2" survives).
_CHAR_REF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;)")
# The WHATWG URL parser drops tab and newlines anywhere: "java\tscript:" is "javascript:".
_URL_DROPPED = re.compile("[\t\n\r]")
_URL_STRIPPED = "".join(chr(c) for c in range(0x21))
_URL_BAD_NETLOC = set(' <>"\\^`{|}')
_URL_SAFE = "/:@!$&'()*+,;=%?#[]~"
_TAG_START = re.compile(r"<(?=[A-Za-z!/?])")


def _decode_refs(text: str) -> str | None:
    """Decode character references until none is left; None if they nest absurdly deep."""
    for _ in range(8):
        decoded = _CHAR_REF.sub(lambda m: html.unescape(m.group(0)), text)
        if decoded == text:
            return text
        text = decoded
    return None


def _checked_url(url: str | None, schemes: frozenset[str]) -> str | None:
    if url is None:
        return None
    text = _decode_refs(url)
    if text is None:
        return None
    text = _URL_DROPPED.sub("", text).strip(_URL_STRIPPED)
    if xml_text(text) != text:
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        return None
    if scheme == "mailto":
        query = f"?{quote(parts.query, safe=_URL_SAFE)}" if parts.query else ""
        return f"mailto:{quote(parts.path, safe=_URL_SAFE)}{query}"
    if not parts.hostname or _URL_BAD_NETLOC.intersection(parts.netloc):
        return None
    return urlunsplit(
        (
            scheme,
            parts.netloc,
            quote(parts.path, safe=_URL_SAFE),
            quote(parts.query, safe=_URL_SAFE),
            quote(parts.fragment, safe=_URL_SAFE),
        )
    )


_WEB = frozenset({"http", "https"})
_WEB_OR_MAIL = frozenset({"http", "https", "mailto"})


def safe_url(url: str | None) -> str | None:
    """Return `url` if it is an absolute http(s) URL once decoded as a browser would, else None.

    Feeds hide `javascript:` behind entities (`&#106;avascript:`), tabs and
    newlines (`java\\tscript:`), leading spaces and mixed case; checking the raw
    string is not enough, so the check runs on the decoded form and that form is
    what is returned (with spaces and non-ASCII percent-encoded).
    """
    return _checked_url(url, _WEB)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    # nh3's scheme list lets relative URLs through; a republished relative URL
    # resolves against our host, so only absolute ones are kept.
    if attribute == "href":
        return _checked_url(value, _WEB_OR_MAIL)
    if attribute == "src":
        return _checked_url(value, _WEB)
    return value


# Inline SVG and MathML, to their end tag (or the end: a parser closes them there too).
_FOREIGN = re.compile(r"<(svg|math)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_FOREIGN_START = re.compile(r"<(?:svg|math)\b", re.IGNORECASE)
_ANY_TAG = re.compile(r"<(?=[A-Za-z/])")


def _foreign_text(match: re.Match[str]) -> str:
    # Every SVG element is its own label, so its tags part words; MathML tokens
    # (<mi>E</mi><mo>=</mo>...) are one run of text.
    fragment = match.group(0)
    if match.group(1).lower() != "svg":
        return html.escape(html_to_text(fragment), quote=False)
    return f" {html.escape(html_to_text(_ANY_TAG.sub(' <', fragment)), quote=False)} "


def sanitize_html(html_text: str) -> str:
    """Reduce a stranger's HTML to the allow-list: safe tags, safe attributes, http(s) links.

    An allow-list sanitizer (nh3, i.e. ammonia on html5ever) parses the fragment
    the way a browser does, so broken tags, CDATA and comment tricks are judged on
    what a browser would build from them, not on how they look. Its output is
    checked again for characters XML cannot carry: html5ever decodes `&#1;` into
    a raw control character. The sanitizer drops SVG and MathML whole; their text
    is taken out first, as escaped text, so that only the elements go.
    """
    html_text = xml_text(html_text)
    if _FOREIGN_START.search(html_text):
        html_text = _FOREIGN.sub(_foreign_text, html_text)
    cleaned = nh3.clean(
        html_text,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_attribute_filter,
        strip_comments=True,
        link_rel=LINK_REL,
        url_schemes=set(_WEB_OR_MAIL),
    )
    return xml_text(cleaned).strip()


def plain(text: str | None) -> str:
    """Plain text with no markup left at any level of entity encoding.

    For names, terms and summaries, which have no markup of their own to keep
    (Atom has no HTML author names): a name of `&lt;script&gt;` must not become a
    tag one decode later, so strip tags and decode until nothing changes.
    Whitespace is collapsed. Titles are different: see `title_text`.
    """
    if not text:
        return ""
    text = xml_text(text)
    for _ in range(8):
        stripped = html.unescape(nh3.clean(text, tags=set(), clean_content_tags=set()))
        if stripped == text:
            break
        text = xml_text(stripped)
    else:
        text = _TAG_START.sub("\u2039", text)  # still encoded 8 deep: defuse what is left
    return " ".join(text.split())


_REFERENCE = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)")


def title_text(text: str | None) -> str:
    """A stored title, which is plain text already (`normalize.clean_title`), kept as it is.

    A title about `<script>` keeps the word; each format escapes it as it needs
    (`html_safe`, `_AtomExtras`).
    """
    return " ".join(xml_text(text).split()) if text else ""


def _escape_reference(match: re.Match[str]) -> str:
    ref = match.group(0)
    return "&amp;" + ref[1:] if html.unescape(ref) != ref else ref


def html_safe(text: str) -> str:
    """Plain text that reads the same to a reader that takes it for HTML.

    Only what HTML would misread is escaped: a "<" that could open a tag and an "&"
    that starts a character reference. "AT&T" and "5 < 6" stay as they are, so
    readers that take an RSS title for text see them right too.
    """
    if "&" in text:
        text = _REFERENCE.sub(_escape_reference, text)
    return _TAG_START.sub("&lt;", text) if "<" in text else text
