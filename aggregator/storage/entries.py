"""Entries: stored once per feed and key, edited in place, marked seen."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.models import Entry
from aggregator.storage.base import StoreBase, parse_ts, ts


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """The columns `poll` needs to decide whether an entry changed."""

    id: int
    story_id: int
    content_hash: str
    title: str


class EntriesMixin(StoreBase):
    """Entries: stored once per feed and key, edited in place, marked seen."""

    def mark_seen(self, feed: str, keys: Iterable[str], now: datetime) -> None:
        """Record that a poll read these stored entries of a feed; inside `write()`.

        Retention spares an entry read since the feed's last full read (`prune`).
        Entries first stored by this poll need no mark: their `first_seen` says it.
        """
        at = ts(now)
        self.conn.executemany(
            "INSERT INTO entry_seen(entry_id, last_seen) "
            "SELECT id, ? FROM entries WHERE feed = ? AND key = ? "
            "ON CONFLICT(entry_id) DO UPDATE SET last_seen = excluded.last_seen",
            [(at, feed, key) for key in keys],
        )

    def entry_by_key(self, feed: str, key: str) -> StoredEntry | None:
        row = self.conn.execute(
            "SELECT id, story_id, content_hash, title FROM entries WHERE feed = ? AND key = ?",
            (feed, key),
        ).fetchone()
        return StoredEntry(*row) if row else None

    def insert_entry(
        self,
        entry: Entry,
        story_id: int,
        now: datetime,
        sig: str | None = None,
    ) -> int:
        """Store a new entry with its dedupe signature (`Signature.pack()`); the
        terms counted for it are the signature's (`terms` is left empty)."""
        cur = self.conn.execute(
            "INSERT INTO entries(feed, key, story_id, guid, link, canonical_link, title, "
            "summary_html, content_html, text, author, published, first_seen, updated, "
            "content_hash, sig) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                entry.feed,
                entry.key,
                story_id,
                entry.guid,
                entry.link,
                entry.canonical_link,
                entry.title,
                entry.summary_html,
                entry.content_html,
                entry.text,
                entry.author,
                ts(entry.published),
                ts(now),
                ts(now),
                entry.content_hash,
                sig,
            ),
        )
        return int(cur.lastrowid or 0)

    def update_entry(self, entry_id: int, entry: Entry, now: datetime) -> None:
        """An outlet edited its item: new text, same id, same story, same published."""
        self.conn.execute(
            "UPDATE entries SET guid = ?, link = ?, canonical_link = ?, title = ?, "
            "summary_html = ?, content_html = ?, text = ?, author = ?, updated = ?, "
            "content_hash = ? WHERE id = ?",
            (
                entry.guid,
                entry.link,
                entry.canonical_link,
                entry.title,
                entry.summary_html,
                entry.content_html,
                entry.text,
                entry.author,
                ts(now),
                entry.content_hash,
                entry_id,
            ),
        )

    def add_entry_keys(self, entry_id: int, keys: Iterable[str], published: datetime) -> None:
        """Index a new entry for dedupe."""
        at = ts(published)
        self.conn.executemany(
            "INSERT OR IGNORE INTO entry_keys(key, entry_id, published) VALUES (?, ?, ?)",
            [(k, entry_id, at) for k in keys],
        )

    def iter_entries(
        self, since: datetime | None = None
    ) -> Iterator[tuple[int, str, str, str, str | None]]:
        """(story_id, feed, title, text, feed language) of stored entries, for re-matching."""
        sql = (
            "SELECT e.story_id, e.feed, e.title, e.text, f.language FROM entries e "
            "JOIN feeds f ON f.name = e.feed"
        )
        params: tuple[Any, ...] = ()
        if since is not None:
            sql += " WHERE e.published >= ?"
            params = (ts(since),)
        yield from self.conn.execute(sql + " ORDER BY e.id", params)

    def entry_by_link(self, url: str) -> tuple[str, str, str, str | None] | None:
        """(feed, title, text, feed language) of a stored entry by its link."""
        row = self.conn.execute(
            "SELECT e.feed, e.title, e.text, f.language FROM entries e "
            "JOIN feeds f ON f.name = e.feed WHERE e.link = ? OR e.canonical_link = ? "
            "ORDER BY e.id LIMIT 1",
            (url, url),
        ).fetchone()
        return (row[0], row[1], row[2], row[3]) if row else None

    def counts(self) -> dict[str, int]:
        return {
            "entries": int(self._one("SELECT count(*) FROM entries")),
            "stories": int(self._one("SELECT count(*) FROM stories")),
            "feeds": int(self._one("SELECT count(*) FROM feeds")),
        }

    def entry_count(self) -> int:
        """Stored entries (the N of IDF); read once per feed poll, not per entry."""
        return int(self._one("SELECT count(*) FROM entries"))

    def entry_for_explain(self, url: str) -> dict[str, Any] | None:
        """A stored entry by its link, with what `aggregator explain` shows: feed,
        title, text, published (aware UTC), story id and the stored signature."""
        row = self.conn.execute(
            "SELECT id, feed, title, text, published, story_id, sig FROM entries "
            "WHERE link = ? OR canonical_link = ? ORDER BY id LIMIT 1",
            (url, url),
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "feed", "title", "text", "published", "story_id", "sig")
        out = dict(zip(keys, row, strict=True))
        out["published"] = parse_ts(out["published"])
        return out
