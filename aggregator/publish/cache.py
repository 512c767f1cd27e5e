"""From stored stories to the bytes of a topic feed: the one path HTTP, `export`
and `export_dir` share, so all three always give the same bytes.

`TopicCache` renders a topic once per change (the store bumps a topic's version
when a poll adds or edits one of its stories) and hands out the cached bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aggregator.config import Config, TopicConfig
from aggregator.storage import store

FORMATS = ("atom", "rss", "json")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One topic in one format, ready to serve."""

    body: bytes
    #: strong validator from the bytes themselves
    etag: str
    #: the newest story's update time (None for an empty topic)
    last_modified: datetime | None
    content_type: str


def etag_of(body: bytes) -> str:
    """The strong validator of a response body: every topic feed's and page's ETag."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def feed_titles(config: Config) -> dict[str, str]:
    """Display name of each feed's outlet: the config title, else its name."""
    return {f.name: f.display_name for f in config.feeds}


def render_topic(
    db: store.Store, config: Config, topic: TopicConfig, fmt: str, limit: int | None = None
) -> Rendered:
    """Render one topic from the store; pure apart from the read."""
    from aggregator.publish import (
        render,  # lxml, nh3 and feedgen: a poll that exports nothing never loads them
    )

    feed = db.topic_feed(
        topic.slug,
        topic.title,
        topic.query,
        config.server.base_url,
        limit or topic.limit,
        feed_titles(config),
    )
    body = {"atom": render.atom, "rss": render.rss, "json": render.json_feed}[fmt](feed)
    return Rendered(body, etag_of(body), feed.updated, render.CONTENT_TYPES[fmt])


class TopicCache:
    """Rendered topic feeds kept in memory until the topic's version changes.

    Whether the database changed is asked at most every `RECHECK` seconds, not on
    every request: that one SQL statement per request cost two thirds of the plain
    requests a second (a GIL hand-off per call, under 50 connections). The daemon's
    own writes call `invalidate()`, so its polls show at once; a commit by another
    process (`aggregator poll` next to `aggregator serve`) shows within `RECHECK`,
    far inside the minute of `Cache-Control: max-age` readers already allow.

    The check is `PRAGMA data_version` (moves when another connection commits) with
    `total_changes` (this connection's writes), compared per connection. Checks are
    serialized, so a connection whose mark has not moved proves that no commit
    happened since the versions were last read by any of them.
    """

    #: seconds between checks for commits by other processes
    RECHECK = 0.5

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[int, Rendered]] = {}
        self._marks: weakref.WeakKeyDictionary[store.Store, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._current: dict[str, int] | None = None
        self._due = 0.0

    def invalidate(self) -> None:
        """This process wrote: the next request asks the database."""
        with self._lock:
            self._due = 0.0

    def versions(self, db: store.Store) -> dict[str, int]:
        """Each topic's version, at most `RECHECK` seconds behind other processes."""
        with self._lock:
            if self._current is not None and time.monotonic() < self._due:
                return self._current
        with self._check_lock:
            with self._lock:
                # invalidate() during the check below makes the next request check again
                self._due = time.monotonic() + self.RECHECK
            mark = db.change_mark()
            if self._current is None or self._marks.get(db) != mark:
                versions = db.topic_versions()
                with self._lock:
                    self._current = versions
            self._marks[db] = mark
            assert self._current is not None
            return self._current

    def get(self, db: store.Store, topic: TopicConfig, fmt: str) -> Rendered:
        version = self.versions(db).get(topic.slug, 0)
        key = (topic.slug, fmt)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        rendered = render_topic(db, self.config, topic, fmt)
        with self._lock:
            self._cache[key] = (version, rendered)
        return rendered


def write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, so nginx never serves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_files(db: store.Store, config: Config, cache: TopicCache | None = None) -> int:
    """Write every topic's three files and the OPML into `[server] export_dir`.

    Files whose bytes did not change are left alone (their mtime is nginx's
    Last-Modified). Returns how many files were written.
    """
    out = config.server.export_dir
    if out is None:
        return 0
    from aggregator.publish import render

    written = 0
    for topic in config.topics:
        for fmt in FORMATS:
            r = cache.get(db, topic, fmt) if cache else render_topic(db, config, topic, fmt)
            written += _write_if_changed(out / "topics" / f"{topic.slug}.{fmt}", r.body)
    summaries = db.topic_summaries([(t.slug, t.title, t.query) for t in config.topics])
    written += _write_if_changed(
        out / "topics.opml", render.topics_opml(summaries, config.server.base_url)
    )
    return written


def _write_if_changed(path: Path, data: bytes) -> int:
    try:
        if path.read_bytes() == data:
            return 0
    except OSError:
        pass
    write_atomic(path, data)
    return 1
