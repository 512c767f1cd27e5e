"""Feeds: their rows, fetch state and outcome of each poll, status."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aggregator.errors import StorageError
from aggregator.models import FeedState, FeedUpdate
from aggregator.storage.base import StoreBase, parse_ts, ts
from aggregator.storage.schema import SKIP_COLUMNS


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """One row of `aggregator status` and `/healthz`."""

    name: str
    config_url: str
    url: str
    title: str | None
    last_fetch: datetime | None
    last_status: int | None
    last_error: str | None
    last_success: datetime | None
    warning: str | None
    failures: int
    next_poll: datetime | None
    next_reason: str | None
    next_detail: str | None
    gone: bool
    entries: int
    merges: int
    #: the figures of the last poll that read the feed (read, new, updated, unchanged,
    #: merged, skipped by reason, at); None before the first
    last_counts: dict[str, Any] | None = None
    #: items ever skipped, by reason (`models.SKIP_REASONS`, every reason present)
    skipped: dict[str, int] = field(default_factory=dict)


class FeedsMixin(StoreBase):
    """Feeds: their rows, fetch state and outcome of each poll, status."""

    def sync_feeds(self, feeds: Iterable[tuple[str, str]]) -> None:
        """Make sure every configured (name, url) has a row; a changed config URL
        resets the polled URL and validators (it is a different feed now)."""
        with self.write():
            for name, url in feeds:
                row = self.conn.execute(
                    "SELECT config_url FROM feeds WHERE name = ?", (name,)
                ).fetchone()
                if row is None:
                    self.conn.execute(
                        "INSERT INTO feeds(name, config_url, url) VALUES (?, ?, ?)",
                        (name, url, url),
                    )
                elif row[0] != url:
                    self.conn.execute(
                        "UPDATE feeds SET config_url = ?, url = ?, etag = NULL, "
                        "last_modified = NULL, gone = 0, failures = 0, next_poll = NULL "
                        "WHERE name = ?",
                        (url, url, name),
                    )

    def feed_state(self, name: str) -> FeedState:
        row = self.conn.execute(
            "SELECT name, url, etag, last_modified, last_fetch, last_status, last_error, "
            "last_success, failures, next_poll, next_reason, gone, hint_seconds "
            "FROM feeds WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            raise StorageError(f"feed {name!r} is not in the database")
        return FeedState(
            name=row[0],
            url=row[1],
            etag=row[2],
            last_modified=row[3],
            last_fetch=parse_ts(row[4]),
            last_status=row[5],
            last_error=row[6],
            last_success=parse_ts(row[7]),
            failures=row[8],
            next_poll=parse_ts(row[9]),
            next_reason=row[10],
            gone=bool(row[11]),
            hint_seconds=row[12],
        )

    def never_fetched(self, names: Iterable[str]) -> int:
        """How many of these feeds have never been fetched."""
        unfetched = {
            r[0] for r in self.conn.execute("SELECT name FROM feeds WHERE last_fetch IS NULL")
        }
        return sum(1 for n in names if n in unfetched)

    def record_fetch(self, u: FeedUpdate) -> None:
        """Store one poll's outcome; call inside `write()` (with the entries).

        `u.counts`' skipped items are added to the feed's totals. `u.full_read`: the
        poll parsed every item of the body, so every entry the feed carries was
        marked seen (`mark_seen`)."""
        sets = [
            "last_fetch = :at",
            "last_status = :status",
            "last_error = :error",
            "failures = :failures",
            "next_poll = :next_poll",
            "next_reason = :next_reason",
            "next_detail = :next_detail",
            "gone = :gone",
        ]
        params: dict[str, Any] = {
            "name": u.feed,
            "at": ts(u.at),
            "status": u.status,
            "error": u.error,
            "failures": u.failures,
            "next_poll": ts(u.next_poll) if u.next_poll else None,
            "next_reason": u.next_reason,
            "next_detail": u.next_detail,
            "gone": int(u.gone),
        }
        if u.success:
            sets += ["last_success = :at", "warning = :warning"]
            params["warning"] = u.warning
            # RFC 9111 4.3.4: a 304 may carry new validators; keep the old ones if not.
            if u.etag is not None:
                sets.append("etag = :etag")
                params["etag"] = u.etag
            if u.last_modified is not None:
                sets.append("last_modified = :last_modified")
                params["last_modified"] = u.last_modified
            if u.status == 200:  # a fresh body without a hint (or language) drops the old one
                sets += [
                    "hint_seconds = :hint",
                    "language = :language",
                    "item_digests = :item_digests",
                ]
                params["hint"] = u.hint_seconds
                params["language"] = u.language
                # written with the entries they describe, in the same transaction
                params["item_digests"] = u.item_digests
                if u.full_read:
                    sets.append("full_read = :at")
        if u.counts is not None:
            sets.append("last_counts = :counts")
            params["counts"] = json.dumps(u.counts, sort_keys=True)
            skipped = u.counts.get("skipped") or {}
            for reason, column in SKIP_COLUMNS.items():
                if skipped.get(reason):
                    sets.append(f"{column} = {column} + :{column}")
                    params[column] = int(skipped[reason])
        if u.url is not None:
            sets.append("url = :url")
            params["url"] = u.url
        if u.title is not None:
            sets.append("title = :title")
            params["title"] = u.title
        if u.site_link is not None:
            sets.append("site_link = :site_link")
            params["site_link"] = u.site_link
        self.conn.execute(f"UPDATE feeds SET {', '.join(sets)} WHERE name = :name", params)

    def feed_statuses(self) -> list[FeedStatus]:
        rows = self.conn.execute(
            "SELECT f.name, f.config_url, f.url, f.title, f.last_fetch, f.last_status, "
            "f.last_error, f.last_success, f.warning, f.failures, f.next_poll, "
            "f.next_reason, f.next_detail, f.gone, "
            "(SELECT count(*) FROM entries e WHERE e.feed = f.name), f.merges, "
            f"f.last_counts, {', '.join('f.' + c for c in SKIP_COLUMNS.values())} "
            "FROM feeds f ORDER BY f.name"
        ).fetchall()
        return [
            FeedStatus(
                name=r[0],
                config_url=r[1],
                url=r[2],
                title=r[3],
                last_fetch=parse_ts(r[4]),
                last_status=r[5],
                last_error=r[6],
                last_success=parse_ts(r[7]),
                warning=r[8],
                failures=r[9],
                next_poll=parse_ts(r[10]),
                next_reason=r[11],
                next_detail=r[12],
                gone=bool(r[13]),
                entries=r[14],
                merges=r[15],
                last_counts=json.loads(r[16]) if r[16] else None,
                skipped=dict(zip(SKIP_COLUMNS, r[17:], strict=True)),
            )
            for r in rows
        ]

    def entries_per_week(self, feed: str, now: datetime, weeks: int = 4) -> float | None:
        """The feed's rhythm over the last weeks, for `interval = "auto"`."""
        since = now - timedelta(weeks=weeks)
        first = self._one("SELECT min(first_seen) FROM entries WHERE feed = ?", (feed,))
        if first is None:
            return None
        count = self._one(
            "SELECT count(*) FROM entries WHERE feed = ? AND published >= ?", (feed, ts(since))
        )
        span = min(now - (parse_ts(first) or now), timedelta(weeks=weeks))
        span_weeks = max(span / timedelta(weeks=1), 1 / 7)
        return float(count) / span_weeks

    def entry_hashes(self, feed: str) -> dict[str, str]:
        """key -> content hash of every stored entry of a feed, read before the write
        transaction so that `poll` prepares only new and edited entries."""
        return dict(
            self.conn.execute("SELECT key, content_hash FROM entries WHERE feed = ?", (feed,))
        )

    def item_digests(self, feed: str) -> bytes | None:
        """The digests of the items of the feed's last parsed body (see `parse`)."""
        value = self._one("SELECT item_digests FROM feeds WHERE name = ?", (feed,))
        return bytes(value) if value else None

    def full_read_at(self, feed: str) -> datetime | None:
        """When a poll last parsed every item of the feed (see `record_fetch`)."""
        return parse_ts(self._one("SELECT full_read FROM feeds WHERE name = ?", (feed,)))

    def count_merge(self, feed: str) -> None:
        self.conn.execute("UPDATE feeds SET merges = merges + 1 WHERE name = ?", (feed,))
