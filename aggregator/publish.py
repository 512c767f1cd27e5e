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
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import render, store
from .config import Config, TopicConfig

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


def feed_titles(config: Config) -> dict[str, str]:
    """Display name of each feed's outlet: the config title, else its name."""
    return {f.name: f.display_name for f in config.feeds}


def render_topic(
    db: store.Store, config: Config, topic: TopicConfig, fmt: str, limit: int | None = None
) -> Rendered:
    """Render one topic from the store; pure apart from the read."""
    feed = db.topic_feed(
        topic.slug,
        topic.title,
        topic.query,
        config.server.base_url,
        limit or topic.limit,
        feed_titles(config),
    )
    body = {"atom": render.atom, "rss": render.rss, "json": render.json_feed}[fmt](feed)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Rendered(body, etag, feed.updated, render.CONTENT_TYPES[fmt])


class TopicCache:
    """Rendered topic feeds kept in memory until the topic's version changes.

    Reading the topics' versions is an SQL query; it is redone only when the
    database changed since this connection last read them: `PRAGMA data_version`
    moves when any other connection or process commits (a poll in `aggregator poll`
    while the daemon serves), `total_changes` when this connection writes.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[int, Rendered]] = {}
        self._versions: weakref.WeakKeyDictionary[
            store.Store, tuple[tuple[int, int], dict[str, int]]
        ] = weakref.WeakKeyDictionary()

    def versions(self, db: store.Store) -> dict[str, int]:
        """Each topic's version as `db` sees it now."""
        mark = db.change_mark()
        with self._lock:
            seen = self._versions.get(db)
        if seen is not None and seen[0] == mark:
            return seen[1]
        versions = db.topic_versions()
        with self._lock:
            self._versions[db] = (mark, versions)
        return versions

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
