"""The data passed between stages, named by where it travels.

Glossary:

- **feed**: one outlet's RSS/Atom/JSON feed, configured in `[[feeds]]`.
- **entry**: one item of one feed, stored once per (feed, key).
- **story**: one news event; several entries (from several outlets) may belong to
  one story. A topic feed shows each story once, linking the first outlet's entry
  and listing the others as related.
- **topic**: a query over stored entries, republished as Atom, RSS and JSON Feed.

All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class FeedState:
    """A feed's fetch state, from the store to `fetch` and `schedule`."""

    #: the config name of the feed (the key)
    name: str
    #: the URL polled now: the config URL, or where a 301/308 moved it
    url: str
    #: validators from the last 200/304, sent back as If-None-Match / If-Modified-Since
    etag: str | None = None
    last_modified: str | None = None
    #: the time and HTTP status (None for network errors) of the last fetch
    last_fetch: datetime | None = None
    last_status: int | None = None
    #: the last fetch's error message, None after a success
    last_error: str | None = None
    #: the time of the last successful fetch (200 or 304)
    last_success: datetime | None = None
    #: consecutive failed fetches; 0 after a success
    failures: int = 0
    #: when the scheduler should poll next, and why ("interval", "backoff", ...)
    next_poll: datetime | None = None
    next_reason: str | None = None
    #: the feed answered 410 Gone: never polled again
    gone: bool = False
    #: interval hint the feed itself gave (<ttl>, sy:updatePeriod, Cache-Control), seconds
    hint_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """What `fetch` got for one feed: a 200 with a body, or a 304 with none."""

    #: the URL requested (the feed's current URL)
    url: str
    #: the URL the body came from, after redirects
    final_url: str
    #: the new address when every redirect hop was permanent (301/308), else None
    permanent_url: str | None
    #: 200 (body present) or 304 (not modified, body empty)
    status: int
    #: the decoded (un-gzipped) body, capped at `[polling] max_body`
    body: bytes
    #: response headers, lower-case names
    headers: Mapping[str, str]
    #: validators to store for the next conditional GET
    etag: str | None
    last_modified: str | None
    #: seconds the request took
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One item as the feed gave it, before normalization (from `parse`)."""

    #: the feed's id/guid for the item, if any
    guid: str | None
    #: the item's link, possibly relative (resolved by `normalize`)
    link: str | None
    #: the title as given (may contain entities or markup; see `title_markup`)
    title: str
    #: summary/description HTML, unsanitized
    summary: str
    #: full content HTML, unsanitized ("" when the feed has none)
    content: str
    #: author name, if any
    author: str | None
    #: published (or else updated) time, aware UTC, None if missing or unparseable
    published: datetime | None
    #: updated time, aware UTC
    updated: datetime | None = None
    #: what the feed says the title is: True for (X)HTML, False for plain text, None
    #: when the format does not say (RSS, JSON Feed)
    title_markup: bool | None = None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A whole parsed feed document (from `parse`)."""

    #: the feed's own title and site link
    title: str | None
    link: str | None
    #: entries in document order, capped at `max_entries` (newest kept)
    entries: tuple[ParsedEntry, ...]
    #: the feed's interval hint in seconds (<ttl>, sy:updatePeriod/Frequency), if any
    hint_seconds: int | None = None
    #: feedparser's bozo warning for a feed that still yielded entries
    warning: str | None = None
    #: the feed's declared language (primary subtag, lower case: "ru", "ur"), if any
    language: str | None = None
    #: a short digest of each item's bytes, concatenated: the next parse leaves out
    #: items it has seen byte for byte (None: the body was not cut into items)
    item_digests: bytes | None = None
    #: items the body held, before any was left out or dropped
    read: int = 0
    #: items seen before and unchanged: left out as byte for byte those of the last
    #: parsed body (and, once `prepare` ran, those whose stored content hash matches)
    unchanged: int = 0
    #: items dropped, by reason (`SKIP_REASONS`); absent reasons dropped none
    skipped: Mapping[str, int] = field(default_factory=dict)


#: why an item read from a feed is not stored, as `aggregator status` names it
SKIP_REASONS: Mapping[str, str] = {
    "no_content": "no title, link, id or text",
    "over_max_entries": "over [polling] max_entries (the newest are kept)",
    "repeated_guid": "a guid the document already listed (or, without a guid, its link)",
}


def add_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """Two tallies by reason, summed (reasons with no count left out)."""
    out = dict(a)
    for k, n in b.items():
        if n:
            out[k] = out.get(k, 0) + n
    return out


@dataclass(frozen=True, slots=True)
class Entry:
    """A normalized entry, ready for dedupe and storage (from `normalize`)."""

    #: the feed (config name) it came from
    feed: str
    #: identity within the feed: the guid, else the canonical link, else a title hash
    key: str
    #: the feed's guid, if any
    guid: str | None
    #: absolute link as published, and its canonical form (for cross-feed identity)
    link: str | None
    canonical_link: str | None
    #: plain-text title, entities decoded, whitespace collapsed
    title: str
    #: summary and content HTML as given (sanitized only at output)
    summary_html: str
    content_html: str
    #: plain text of title, summary and content, for matching and dedupe
    text: str
    author: str | None
    #: aware UTC; the first-seen time when the feed gave none or a future one
    published: datetime
    #: hash of title+summary+content, to detect edits
    content_hash: str


@dataclass(frozen=True, slots=True)
class LinkMate:
    """A stored entry with a new entry's canonical link (from the store, to `dedupe`)."""

    story_id: int
    feed: str
    #: its link as published, fragment and all
    link: str | None
    title: str
    #: its plain text (`Entry.text`); None for another feed's entry (never compared)
    text: str | None


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """One poll's outcome for a feed, as the pipeline passes it to storage: decided
    once per poll and written once (lemon24/reader's `FeedUpdateIntent`)."""

    feed: str
    #: when the poll fetched (aware UTC)
    at: datetime
    #: the fetch answered (200 or 304) and, for a 200, its body was a feed
    success: bool
    #: HTTP status, None for network errors
    status: int | None
    error: str | None = None
    # -- the schedule's decision
    #: the feed's new address after a permanent redirect, else None
    url: str | None = None
    failures: int = 0
    next_poll: datetime | None = None
    next_reason: str | None = None
    next_detail: str | None = None
    gone: bool = False
    # -- validators of a fetch that succeeded
    etag: str | None = None
    last_modified: str | None = None
    # -- what a body that was read said about the feed
    hint_seconds: int | None = None
    warning: str | None = None
    title: str | None = None
    site_link: str | None = None
    language: str | None = None
    item_digests: bytes | None = None
    #: what the poll did with the items it read (as `FeedStatus.last_counts`)
    counts: Mapping[str, Any] | None = None
    #: every item of the body was parsed (none left out by digest)
    full_read: bool = False


@dataclass(frozen=True, slots=True)
class PollResult:
    """The outcome of polling one feed; errors are values here, not exceptions."""

    feed: str
    #: "ok", "not_modified", "error", "gone", "skipped"
    status: str
    #: HTTP status, None for network errors
    http_status: int | None = None
    #: items the fetched body held; read = new + updated + unchanged + merged + skipped
    read: int = 0
    #: entries stored that started a story of their own
    new: int = 0
    #: stored entries the outlet edited
    updated: int = 0
    #: items read at an earlier poll and unchanged since (stored then, or skipped then
    #: and counted there)
    unchanged: int = 0
    #: entries stored that joined an existing story
    merged: int = 0
    #: items not stored, by reason (`SKIP_REASONS`)
    skipped: Mapping[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    warning: str | None = None
    next_poll: datetime | None = None
    next_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Related:
    """Another outlet's copy of a story."""

    url: str
    #: the outlet's display name
    source: str


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One story as a topic feed shows it (from the store, to `render`)."""

    #: the stable public id (a tag: URI), the same in Atom, RSS and JSON Feed
    id: str
    title: str
    #: the first outlet's article
    link: str | None
    summary_html: str
    content_html: str
    #: the reporter, if the feed named one
    author: str | None
    #: the first outlet's display name and its feed/site URL
    source: str
    source_url: str | None
    published: datetime
    updated: datetime
    #: the other outlets' copies, in the order they arrived
    related: tuple[Related, ...] = ()
    #: query terms that matched ("why it matched")
    matched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TopicFeed:
    """Everything `render` needs for one topic feed; render adds nothing time-dependent."""

    slug: str
    title: str
    query: str | None
    #: `[server] base_url`, without trailing slash
    base_url: str
    #: newest first, at most the topic's limit
    items: tuple[FeedItem, ...] = field(default_factory=tuple)

    @property
    def updated(self) -> datetime | None:
        """Newest item's update time: the feed's own `updated`, never the clock."""
        return max((i.updated for i in self.items), default=None)


@dataclass(frozen=True, slots=True)
class TopicSummary:
    """One row of the index page (from the store, to `render.index_page`)."""

    slug: str
    title: str
    query: str | None
    #: stories in the topic
    entries: int
    #: the newest story's time, None for an empty topic
    newest: datetime | None


@dataclass(frozen=True, slots=True)
class PageStory:
    """One story on a topic's HTML page (from the store, to `pages.topic_page`)."""

    item: FeedItem
    #: the first outlet's declared language (primary subtag), None if it gave none
    language: str | None
    #: this story's keyset position: the page after it starts at `?before=<cursor>`
    cursor: str


@dataclass(frozen=True, slots=True)
class StoryPage:
    """One page of a topic's stories, newest first."""

    stories: tuple[PageStory, ...]
    #: the cursor of the next (older) page; None on the last page
    older: str | None
