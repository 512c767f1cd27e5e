"""The pure, CPU-bound half of a poll: parse -> normalize -> what topics and dedupe
need of each new entry (topic matches, dedupe signature and index keys).

It runs in parse processes (`workers.ParsePool`), so it imports only the stages it
strings together, never the network or the database: a worker stays small and
starts fast. Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator import models
from aggregator.config import Config
from aggregator.ingest import normalize, parse
from aggregator.match import dedupe, topics
from aggregator.models import Entry, ParsedFeed
from aggregator.text import EntryWords


@dataclass(frozen=True, slots=True)
class TopicMatcher:
    """A compiled topic: which feeds it reads and its query."""

    slug: str
    #: None: every feed
    feeds: frozenset[str] | None
    query: topics.Query

    def matches(self, feed: str, doc: topics.Document) -> tuple[str, ...] | None:
        if self.feeds is not None and feed not in self.feeds:
            return None
        return self.query.matches(doc)


def compile_topics(config: Config) -> list[TopicMatcher]:
    """Compile every topic's query once (the config loader has validated them)."""
    return [
        TopicMatcher(
            slug=t.slug,
            feeds=frozenset(t.feeds) if t.feeds is not None else None,
            query=topics.compile(t.query, config.aliases),
        )
        for t in config.topics
    ]


@dataclass(frozen=True, slots=True)
class Prepared:
    """An entry with what the write transaction needs computed in advance."""

    entry: Entry
    #: dedupe index keys, and the signature (whose `everything` are the terms
    #: counted for IDF)
    keys: list[str]
    sig: dedupe.Signature
    #: topic slug -> the query terms that matched
    matches: dict[str, tuple[str, ...]]


def parse_and_prepare(
    body: bytes,
    headers: dict[str, str],
    url: str,
    max_entries: int,
    feed: str,
    now: datetime,
    stored: dict[str, str],
    matchers_blob: bytes,
    known_items: bytes | None = None,
    digested: Sequence[tuple[int, int, bytes]] | None = None,
) -> tuple[ParsedFeed, list[Prepared], list[str]]:
    """Parse a fetched body and prepare its new and edited entries: pure, so it runs
    in a parse process as well as in the poll thread. The feed comes back without
    its entries, which only the prepared ones need, and with its counts completed:
    items stored unchanged, and a key the document repeats (two items without a
    guid linking one page) skipped as a repeated guid, the first one kept; and the
    keys of the parsed entries that are stored unchanged (retention marks them
    seen). `known_items` is the feed's stored `item_digests`: items seen byte for
    byte are not parsed again."""
    parsed = parse.parse(
        body,
        headers,
        url,
        max_entries=max_entries,
        known_items=parse.item_digests(known_items),
        digested=digested,
    )
    matchers = _matchers(matchers_blob)
    prepared = []
    seen: set[str] = set()
    unchanged: list[str] = []
    repeated = 0
    for p in parsed.entries:
        ident = normalize.identity(p, url)
        if ident.key in seen:
            repeated += 1
            continue
        seen.add(ident.key)
        if stored.get(ident.key) == ident.content_hash:
            unchanged.append(ident.key)
            continue
        entry = normalize.normalize(p, feed, now, base_url=url, ident=ident)
        prepared.append(prepare_entry(matchers, entry, parsed.language))
    counted = dataclasses.replace(
        parsed,
        entries=(),
        unchanged=parsed.unchanged + len(unchanged),
        skipped=models.add_counts(parsed.skipped, {"repeated_guid": repeated}),
    )
    return counted, prepared, unchanged


_matcher_cache: dict[bytes, list[TopicMatcher]] = {}
_matcher_lock = threading.Lock()


def _matchers(blob: bytes) -> list[TopicMatcher]:
    """The compiled topics sent as bytes, unpickled once per process (their stem
    caches warm up across feeds)."""
    key = hashlib.sha256(blob).digest()
    with _matcher_lock:
        found = _matcher_cache.get(key)
        if found is None:
            if len(_matcher_cache) > 8:
                _matcher_cache.clear()
            found = _matcher_cache[key] = pickle.loads(blob)  # our own bytes, never a feed's
        return found


def prepare_entry(matchers: Sequence[TopicMatcher], entry: Entry, language: str | None) -> Prepared:
    """Everything the write transaction needs of one entry, computed outside it."""
    split = EntryWords(entry.title, entry.text)  # folded and split once, for both
    doc = topics.document(entry.title, entry.text, language, split)
    matches = {}
    for m in matchers:
        terms = m.matches(entry.feed, doc)
        if terms is not None:
            matches[m.slug] = terms
    sig, keys = dedupe.analyze(entry.title, entry.text, split)
    return Prepared(
        entry,
        keys=keys,
        sig=sig,
        matches=matches,
    )
