"""The HTML pages people read: `/`, `/topics/<slug>.html` and `/feeds`.

Pure: data in, bytes out; the only clock is the `now` a caller passes, for the
"3 hours ago" beside each absolute time. Everything a stranger wrote goes through
the feeds' own sanitizer (`render.sanitize_html`, `render._plain`, `render.safe_url`)
and is HTML-escaped; no page has script, and the one <style> is allowed by hash in
`CSP`, the policy every page is served with. No external assets: no CDN, no web
fonts, no images of other hosts (summaries are shown as text, so theirs never load).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from urllib.parse import quote

from aggregator import text as textcore
from aggregator.match import topics as topic_match
from aggregator.models import FeedItem, PageStory, StoryPage, TopicSummary
from aggregator.publish import status
from aggregator.publish.render import _base, _rfc3339, _utc, feed_url
from aggregator.publish.sanitize import plain, safe_url, sanitize_html
from aggregator.text import xml_text

#: stories per page of `/topics/<slug>.html`
PAGE_SIZE = 25
#: headlines per topic on `/`
HEADLINES = 3
#: characters of summary shown per story
SUMMARY_CHARS = 320

_CSS = """
body{font:17px/1.55 system-ui,sans-serif;margin:0 auto;max-width:46rem;padding:1rem;color:#222;
overflow-wrap:anywhere}
h1{font-size:1.5rem;margin:0 0 .5rem}
h2{font-size:1.2rem;margin:0 0 .25rem}
h3{font-size:1.05rem;margin:0}
section,article{border-top:1px solid #ddd;padding:.75rem 0}
code{background:#f3f3f3;padding:0 .2em;word-break:break-word}
a{color:#0645ad}
mark{background:#fff0a0;color:inherit;padding:0 .1em}
ul{padding-left:1.2rem}
li{margin:.35rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .75rem;margin:.5rem 0}
dt{color:#555}
dd{margin:0}
.meta{color:#555;margin:.25rem 0}
.subscribe a,.pager a{display:inline-block;margin-right:.75rem;padding:.2rem 0}
.banner{border:2px solid #b00020;background:#fdecea;padding:.5rem 1rem;margin:1rem 0}
.state-failing,.state-gone{color:#b00020;font-weight:600}
.state-never{color:#8a5a00;font-weight:600}
"""
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")

#: Content-Security-Policy of every page: no script at all, only our own <style>.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_FORMATS = (
    ("atom", "Atom", "application/atom+xml"),
    ("rss", "RSS", "application/rss+xml"),
    ("json", "JSON Feed", "application/feed+json"),
)

#: names of the languages news feeds here most often declare; others show their code
_LANGUAGES = {
    "ar": "Arabic", "de": "German", "en": "English", "es": "Spanish", "fa": "Persian",
    "fr": "French", "hi": "Hindi", "ps": "Pashto", "ru": "Russian", "tr": "Turkish",
    "uk": "Ukrainian", "ur": "Urdu", "zh": "Chinese",
}  # fmt: skip
_LANG_CODE = re.compile(r"[a-z]{2,3}")


def _esc(text: str) -> str:
    return html.escape(xml_text(text), quote=True)


def _time(dt: datetime | None) -> str:
    if dt is None:
        return "never"
    when = _utc(dt)
    return f'<time datetime="{_rfc3339(when)}">{when.strftime("%Y-%m-%d %H:%M")} UTC</time>'


def ago(dt: datetime, now: datetime) -> str | None:
    """ "3 hours ago" for the last week; None for older (or future) times.

    Whole hours and days, not minutes: the page's bytes, and so its ETag, stay the
    same for an hour instead of a minute."""
    delta = now - dt
    if delta < timedelta(0) or delta >= timedelta(days=7):
        return None
    if delta < timedelta(hours=1):
        return "within the hour"
    if delta < timedelta(days=1):
        hours = int(delta / timedelta(hours=1))
        return f"{hours} hour{'' if hours == 1 else 's'} ago"
    days = int(delta / timedelta(days=1))
    return "yesterday" if days == 1 else f"{days} days ago"


def _when(dt: datetime | None, now: datetime | None) -> str:
    """The absolute time, and beside it the relative one when it is recent."""
    out = _time(dt)
    if dt is not None and now is not None and (rel := ago(_utc(dt), now)):
        out += f" ({rel})"
    return out


def _page(title: str, head: Sequence[str], body: Sequence[str]) -> bytes:
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_CSS}</style>",
            *head,
            "</head>",
            "<body>",
            "<main>",
            *body,
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )
    return page.encode("utf-8")


def page_url(base_url: str, slug: str) -> str:
    """The public address of a topic's HTML page."""
    return f"{_base(base_url)}/topics/{quote(slug, safe='')}.html"


def _feed_links(base: str, slug: str, title: str) -> tuple[list[str], str]:
    """The topic's autodiscovery <link> tags, and its "Read / Subscribe" line."""
    head, links = [], []
    for fmt, label, mime in _FORMATS:
        url = _esc(feed_url(base, slug, fmt))
        head.append(
            f'<link rel="alternate" type="{mime}" title="{_esc(f"{title} ({label})")}"'
            f' href="{url}">'
        )
        links.append(f'<a href="{url}" type="{mime}">{label}</a>')
    line = (
        f'<p class="subscribe">Read: <a href="{_esc(page_url(base, slug))}">web page</a>'
        f" · Subscribe: {' '.join(links)}</p>"
    )
    return head, line


# --- highlighting the words that matched ------------------------------------------------------


class Highlighter:
    """Marks the words of a text that a story's matched terms match.

    Both sides are folded and stemmed by the text core, as topic matching does: a
    word is marked when its stem key (in the feed's language) is one a matched term
    has in some language, when its folded form equals a term's word, or when it
    starts with a `prefix*` term. A phrase's words are marked one by one, wherever
    they occur.
    """

    def __init__(self, terms: Sequence[str], language: str | None) -> None:
        self.language = textcore.language_code(language)
        self.exact: set[str] = set()
        self.keys: set[str] = set()
        self.prefixes: list[str] = []
        for term in terms:
            prefix = term.endswith("*")
            ws = textcore.words(textcore.fold(term.rstrip("*") if prefix else term))
            if prefix and ws:
                self.prefixes.append(ws.pop())
            for w in ws:
                self.exact.add(w)
                self.keys.update(topic_match.term_keys(w))

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def matches(self, word: str) -> bool:
        folded = textcore.words(textcore.fold(word))
        for w, key in zip(folded, textcore.keys(folded, self.language), strict=True):
            if w in self.exact or key in self.keys or any(map(w.startswith, self.prefixes)):
                return True
        return False

    def html(self, plain: str) -> str:
        """`plain` escaped, with each matching word in <mark>."""
        if not self:
            return _esc(plain)
        out, last = [], 0
        for m in textcore.word_pattern().finditer(plain):  # words as the text core splits them
            if self.matches(m.group()):
                out.append(_esc(plain[last : m.start()]))
                out.append(f"<mark>{_esc(m.group())}</mark>")
                last = m.end()
        out.append(_esc(plain[last:]))
        return "".join(out)


def summary_text(item: FeedItem, limit: int = SUMMARY_CHARS) -> str:
    """The story's summary (else its content) as plain text, cut at a word near `limit`.

    Sanitized first, as the feeds do, so a <script> or <style> loses its content
    with the tag instead of leaving code behind as text."""
    source = item.summary_html or item.content_html
    # a page shows a few lines: no need to sanitize a 200 kB article to cut it
    text = plain(sanitize_html(source[: limit * 40]))
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,.;:") + " …"


def _language(code: str | None) -> str | None:
    return code if code and _LANG_CODE.fullmatch(code) else None


def _headline(item: FeedItem, marks: Highlighter) -> str:
    title = marks.html(plain(item.title) or "(untitled)")
    link = safe_url(item.link)
    return f'<a href="{_esc(link)}">{title}</a>' if link else title


def _story(story: PageStory, now: datetime | None) -> str:
    item = story.item
    lang = _language(story.language)
    marks = Highlighter(item.matched, lang)
    title = plain(item.title)
    meta = [_esc(plain(item.source) or "Unknown outlet"), _when(item.published, now)]
    if lang:
        meta.append(_esc(_LANGUAGES.get(lang, lang)))
    # The outlet's words carry its language and their own direction (Urdu reads right
    # to left); the lines around them are ours, in English, left to right.
    own = f' lang="{lang}" dir="auto"' if lang else ' dir="auto"'
    parts = [
        f'<article id="story-{_esc(story.cursor)}">',
        f"<h2{own}>{_headline(item, marks)}</h2>",
        f'<p class="meta">{" · ".join(meta)}</p>',
    ]
    summary = summary_text(item)
    if summary and summary != title:
        parts.append(f"<p{own}>{marks.html(summary)}</p>")
    related = [
        f'<a href="{_esc(url)}">{_esc(plain(r.source) or "Unknown outlet")}</a>'
        for r in item.related
        if (url := safe_url(r.url)) is not None
    ]
    if related:
        parts.append(f'<p class="meta">Also reported by: {", ".join(related)}</p>')
    matched = [t for t in dict.fromkeys(plain(m) for m in item.matched) if t]
    if matched:
        parts.append(f'<p class="meta">Matched: {_esc(", ".join(matched))}</p>')
    parts.append("</article>")
    return "\n".join(parts)


def topic_page(
    slug: str,
    title: str,
    query: str | None,
    base_url: str,
    page: StoryPage,
    *,
    before: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """One page of a topic's stories, newest first, with a link to the older ones."""
    base = _base(base_url)
    name = plain(title) or slug
    head, subscribe = _feed_links(base, slug, name)
    here = page_url(base, slug)
    body = [
        f'<p class="meta"><a href="{_esc(base)}/">All topics</a></p>',
        f"<h1>{_esc(name)}</h1>",
        f'<p class="meta">Query: <code>{_esc(query)}</code></p>'
        if query
        else '<p class="meta">Every story from the topic\'s feeds</p>',
        subscribe,
    ]
    body += [_story(s, now) for s in page.stories]
    if not page.stories:
        body.append("<p>No stories here yet.</p>" if before is None else "<p>No older stories.</p>")
    pager = []
    if before is not None:
        pager.append(f'<a href="{_esc(here)}">Newest stories</a>')
    if page.older is not None:
        older = f"{here}?before={quote(page.older, safe='')}"
        pager.append(f'<a rel="next" href="{_esc(older)}">Older stories</a>')
    if pager:
        body.append(f'<nav class="pager">{" ".join(pager)}</nav>')
    return _page(f"{name} · Topic feeds", head, body)


# --- feed health --------------------------------------------------------------------------------

_STATE_CLASS = {
    status.FAILING: "state-failing",
    status.GONE: "state-gone",
    status.NEVER: "state-never",
    status.OK: "state-ok",
}


def _banner(o: status.Overview, feeds_url: str) -> str | None:
    """The first thing a page says when no feed is being fetched, and why."""
    if not o.alarm:
        return None
    if o.failing == o.feeds:
        lead = f"Every feed is failing ({o.feeds} of {o.feeds})."
    elif o.never_fetched == o.feeds:
        lead = "No feed has been fetched yet: the first poll has not run."
    else:
        counts = ", ".join(
            f"{n} {label}"
            for n, label in (
                (o.failing, "failing"),
                (o.never_fetched, "never fetched"),
                (o.gone, "gone"),
            )
            if n
        )
        lead = f"No feed is being fetched successfully ({counts})."
    if o.nothing_fetched:
        lead += " None has ever been fetched successfully."
    parts = [f'<div class="banner" role="alert"><p><strong>{_esc(lead)}</strong></p>']
    if o.errors:
        items = []
        for e in o.errors:
            many = f" ({e.feeds} feeds, e.g. <code>{_esc(e.example)}</code>)" if e.feeds > 1 else ""
            items.append(
                f"<li><code>{_esc(e.text if e.feeds > 1 else e.example)}</code>{many}</li>"
            )
        if o.other_errors:
            items.append(f"<li>{o.other_errors} more feeds with other errors</li>")
        parts.append(f"<p>Why:</p><ul>{''.join(items)}</ul>")
        if o.offline:
            hint = (
                "This machine cannot look up the feeds' host names: it looks offline, or its"
                " DNS is not working. Each feed is retried on its backoff schedule."
            )
        else:
            hint = (
                "Check that this machine can reach the feeds' hosts (network, DNS, proxy)"
                " and that the feed addresses are right."
            )
        parts.append(f"<p>{hint}</p>")
    parts.append(f'<p><a href="{_esc(feeds_url)}">Every feed\'s state</a></p></div>')
    return "".join(parts)


def _trouble(rows: Sequence[status.FeedRow], now: datetime | None) -> list[str]:
    bad = [r for r in status.failing_first(rows) if r.state != status.OK]
    if not bad:
        return []
    items = []
    for r in bad:
        error = f": <code>{_esc(r.last_error)}</code>" if r.last_error else ""
        since = (
            f", last success {_when(r.last_success, now)}"
            if r.last_success
            else ", never fetched successfully"
            if r.last_fetch
            else ""
        )
        items.append(
            f'<li><strong>{_esc(r.title)}</strong> <span class="{_STATE_CLASS[r.state]}">'
            f"{_esc(r.state)}</span>{error}{since}</li>"
        )
    return ["<ul>", *items, "</ul>"]


def index_page(
    topics: Sequence[TopicSummary],
    base_url: str,
    last_poll: datetime | None,
    *,
    headlines: Mapping[str, Sequence[FeedItem]] | None = None,
    feeds: Sequence[status.FeedRow] | None = None,
    now: datetime | None = None,
) -> bytes:
    """The HTML page at `/`: a banner when nothing is being fetched, every topic with
    its newest headlines, its page and its subscribe links, and the feeds in trouble.

    Feed readers find the feeds through the `<link rel="alternate">` tags in <head>.
    """
    base = _base(base_url)
    feeds_url = f"{base}/feeds"
    head_links: list[str] = []
    sections = []
    for topic in topics:
        title = plain(topic.title) or topic.slug
        links, subscribe = _feed_links(base, topic.slug, title)
        head_links += links
        query = f"<code>{_esc(topic.query)}</code>" if topic.query else "every story from its feeds"
        count = f"{topic.entries} stor{'y' if topic.entries == 1 else 'ies'}"
        newest = f", newest {_time(topic.newest)}" if topic.newest else ""
        section = [
            f'<section id="topic-{_esc(topic.slug)}">',
            f'<h2><a href="{_esc(page_url(base, topic.slug))}">{_esc(title)}</a></h2>',
            f'<p class="meta">Query: {query}</p>',
            f'<p class="meta">{count}{newest}</p>',
        ]
        items = (headlines or {}).get(topic.slug, ())
        if items:
            section.append("<ul>")
            for item in items:
                outlet = _esc(plain(item.source) or "Unknown outlet")
                section.append(
                    f'<li><span dir="auto">{_headline(item, Highlighter((), None))}</span>'
                    f' <span class="meta">{outlet}, {_when(item.published, now)}</span></li>'
                )
            section.append("</ul>")
        section += [subscribe, "</section>"]
        sections.append("\n".join(section))
    if not sections:
        sections.append("<p>No topics are configured.</p>")
    body = ["<h1>Topic feeds</h1>"]
    feed_part = []
    if feeds is not None:
        o = status.overview(feeds)
        if banner := _banner(o, feeds_url):
            body.append(banner)
        feed_part = [
            '<section id="feeds">',
            "<h2>Feeds</h2>",
            f'<p class="meta">{o.working} of {o.feeds} working ·'
            f' <a href="{_esc(feeds_url)}">every feed\'s state</a></p>',
            *_trouble(feeds, now),
            "</section>",
        ]
    body += [
        f'<p class="meta">Last poll: {_when(last_poll, now)}</p>',
        f'<p>All topics for your feed reader: <a href="{_esc(base)}/topics.opml"'
        ' type="text/x-opml">OPML</a></p>',
        *sections,
        *feed_part,
    ]
    return _page("Topic feeds", head_links, body)


def _dd(value: str | int | None) -> str:
    return "-" if value is None or value == "" else _esc(str(value))


def feeds_page(rows: Sequence[status.FeedRow], base_url: str, now: datetime | None = None) -> bytes:
    """The HTML page at `/feeds`: every feed's state as `aggregator status` gives it,
    failing feeds first."""
    base = _base(base_url)
    o = status.overview(rows)
    body = [
        f'<p class="meta"><a href="{_esc(base)}/">All topics</a></p>',
        "<h1>Feeds</h1>",
    ]
    if banner := _banner(o, f"{base}/feeds"):
        body.append(banner)
    body.append(
        f'<p class="meta">{o.feeds} feeds: {o.working} working, {o.failing} failing,'
        f" {o.never_fetched} never fetched, {o.gone} gone</p>"
    )
    for r in status.failing_first(rows):
        moved = f" (moved from {_esc(r.config_url)})" if r.url != r.config_url else ""
        why = r.next_detail or r.next_reason
        fields = [
            ("State", f'<span class="{_STATE_CLASS[r.state]}">{_esc(r.state)}</span>'),
            ("URL", f"<code>{_esc(r.url)}</code>{moved}"),
            ("Last fetch", _when(r.last_fetch, now)),
            ("Last success", _when(r.last_success, now)),
            ("HTTP status", _dd(r.status)),
            ("Last error", f"<code>{_esc(r.last_error)}</code>" if r.last_error else "-"),
            ("Failures in a row", _dd(r.failures)),
            ("Entries", _dd(r.entries)),
            ("Merged", _dd(r.merged)),
            ("Next poll", "never" if r.gone else _when(r.next_poll, now) if r.next_poll else "-"),
            ("Why then", _dd(why)),
        ]
        body += [
            f'<section id="feed-{_esc(r.feed)}">',
            f"<h2>{_esc(r.title)} <code>{_esc(r.feed)}</code></h2>",
            "<dl>",
            *(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in fields),
            "</dl>",
            "</section>",
        ]
    if not rows:
        body.append("<p>No feeds are configured.</p>")
    return _page("Feeds · Topic feeds", [], body)
