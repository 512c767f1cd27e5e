"""All SQL of the project lives in this package: `Store` is the one connection type,
made of one part per domain (feeds, entries, stories, terms, topics, what publish
reads, retention) over the connection and its transactions (`base`)."""

from __future__ import annotations

import threading
from pathlib import Path

from aggregator.storage.base import BUSY_TIMEOUT_MS, WRITER_CACHE_KIB, StoreBase, parse_ts, ts
from aggregator.storage.entries import EntriesMixin, StoredEntry
from aggregator.storage.feeds import FeedsMixin, FeedStatus
from aggregator.storage.retention import RetentionMixin
from aggregator.storage.schema import migrations
from aggregator.storage.stories import CandidateRow, StoriesMixin
from aggregator.storage.terms import TermsMixin
from aggregator.storage.topics import TopicsMixin
from aggregator.storage.views import ViewsMixin, parse_cursor

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CandidateRow",
    "FeedStatus",
    "Store",
    "StoredEntry",
    "WRITER_CACHE_KIB",
    "for_thread",
    "migrations",
    "parse_cursor",
    "parse_ts",
    "ts",
]


class Store(
    FeedsMixin,
    EntriesMixin,
    StoriesMixin,
    TopicsMixin,
    ViewsMixin,
    RetentionMixin,
    TermsMixin,
    StoreBase,
):
    """A connection to the aggregator's SQLite database; use one per thread."""


_local = threading.local()


def for_thread(path: Path) -> Store:
    """This thread's connection to `path` (opened on first use)."""
    stores: dict[Path, Store] = _local.__dict__.setdefault("stores", {})
    store = stores.get(path)
    if store is None:
        store = stores[path] = Store(path)
    return store
