"""Retention: entries first stored over `keep` ago that their feed no longer carries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime

from aggregator.storage.base import ts
from aggregator.storage.terms import TermsMixin


class RetentionMixin(TermsMixin):
    """Retention: entries first stored over `keep` ago that their feed no longer carries."""

    def prune(
        self,
        older_than: datetime,
        feeds: Iterable[str] | None = None,
        *,
        terms_of: Callable[[str], Iterable[str]],
    ) -> dict[str, int]:
        """Delete entries first stored before the cut-off that their feed no longer
        carries, and stories left empty; returns how many went, per feed.

        An entry is still carried when a poll read it at or after the feed's last
        full read (every item parsed): an item a later poll left out by digest was
        in the body before, byte for byte, so its entry was read then (induction
        back to the full read). An entry of a gone feed (410), or of one no longer
        among `feeds` (the configured ones; None: all), goes on its age alone; that
        feed's digests and validators are dropped, so each item is stored again if
        it comes back. Kept stories keep their ids: a story's uid lives in its own row.
        `terms_of` reads the terms counted for an entry from its stored signature
        (dedupe's), so their counts go with it.
        """
        configured = None if feeds is None else set(feeds)
        with self.write():
            self.fold_term_counts()  # what is subtracted below must be there to subtract
            gone = []  # (entry id, feed, whether it goes on its age alone)
            for entry_id, feed, feed_gone, left in self.conn.execute(
                # (NULL when the feed was never read whole: nothing of it has left)
                "SELECT e.id, e.feed, f.gone, coalesce(s.last_seen, e.first_seen) < f.full_read "
                "FROM entries e JOIN feeds f ON f.name = e.feed "
                "LEFT JOIN entry_seen s ON s.entry_id = e.id WHERE e.first_seen < ?",
                (ts(older_than),),
            ):
                aged = bool(feed_gone) or (configured is not None and feed not in configured)
                if aged or left:
                    gone.append((entry_id, feed, aged))
            per_feed: Counter[str] = Counter(feed for _, feed, _ in gone)
            if gone:
                counts: Counter[str] = Counter()
                ids = [entry_id for entry_id, _, _ in gone]
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for (sig,) in self.conn.execute(
                        f"SELECT sig FROM entries WHERE id IN ({marks})", chunk
                    ):
                        if sig:
                            counts.update(terms_of(sig))
                    for table, column in (
                        ("entry_keys", "entry_id"),
                        ("entry_seen", "entry_id"),
                        ("entries", "id"),
                    ):
                        self.conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
                self.conn.executemany(
                    "UPDATE term_df SET n = n - ? WHERE term = ?",
                    [(n, t) for t, n in counts.items()],
                )
                self.conn.execute("DELETE FROM term_df WHERE n <= 0")
                empty = "SELECT id FROM stories WHERE id NOT IN (SELECT story_id FROM entries)"
                self.conn.execute(f"DELETE FROM topic_stories WHERE story_id IN ({empty})")
                self.conn.execute(f"DELETE FROM stories WHERE id IN ({empty})")
                self.conn.executemany(
                    "UPDATE feeds SET item_digests = NULL, etag = NULL, last_modified = NULL "
                    "WHERE name = ?",
                    [(feed,) for feed in sorted({feed for _, feed, aged in gone if aged})],
                )
        return dict(sorted(per_feed.items()))
