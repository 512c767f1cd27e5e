"""Topics: which stories each holds, with the words that matched, and versions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from aggregator.models import TopicSummary
from aggregator.storage.base import StoreBase, parse_ts, ts


class TopicsMixin(StoreBase):
    """Topics: which stories each holds, with the words that matched, and versions."""

    def topic_query_keys(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT slug, query_key FROM topics")}

    def reset_topic(self, slug: str, query_key: str) -> None:
        """Forget a topic's rows (its query changed); call inside `write()`."""
        self.conn.execute("DELETE FROM topic_stories WHERE topic = ?", (slug,))
        self.conn.execute(
            "INSERT INTO topics(slug, query_key, version) VALUES (?, ?, 1) "
            "ON CONFLICT(slug) DO UPDATE SET query_key = excluded.query_key, "
            "version = version + 1",
            (slug, query_key),
        )

    def drop_topics_except(self, slugs: Iterable[str]) -> None:
        keep = list(slugs)
        marks = ",".join("?" * len(keep)) or "''"
        self.conn.execute(f"DELETE FROM topic_stories WHERE topic NOT IN ({marks})", keep)
        self.conn.execute(f"DELETE FROM topics WHERE slug NOT IN ({marks})", keep)

    def add_new_story_to_topics(
        self, story_id: int, published: datetime, matches: Mapping[str, Sequence[str]]
    ) -> None:
        """`add_topic_story` for a story minted in this transaction: no row of it can
        exist yet, so nothing is read first (most entries of a cold poll)."""
        at = ts(published)
        self.conn.executemany(
            "INSERT INTO topic_stories(topic, story_id, published, matched) VALUES (?, ?, ?, ?)",
            [
                (slug, story_id, at, json.dumps(list(terms), ensure_ascii=False))
                for slug, terms in matches.items()
            ],
        )

    def add_topic_story(self, slug: str, story_id: int, matched: Sequence[str]) -> bool:
        """Put a story in a topic, merging matched terms; True if anything changed."""
        row = self.conn.execute(
            "SELECT matched FROM topic_stories WHERE topic = ? AND story_id = ?",
            (slug, story_id),
        ).fetchone()
        if row is None:
            published = self._one("SELECT published FROM stories WHERE id = ?", (story_id,))
            self.conn.execute(
                "INSERT INTO topic_stories(topic, story_id, published, matched) "
                "VALUES (?, ?, ?, ?)",
                (slug, story_id, published, json.dumps(list(matched), ensure_ascii=False)),
            )
            return True
        old = json.loads(row[0])
        merged = old + [t for t in matched if t not in old]
        if merged != old:
            self.conn.execute(
                "UPDATE topic_stories SET matched = ? WHERE topic = ? AND story_id = ?",
                (json.dumps(merged, ensure_ascii=False), slug, story_id),
            )
            return True
        return False

    def bump_topics_of(self, story_ids: Iterable[int]) -> None:
        """Mark every topic holding one of these stories as changed."""
        ids = list(set(story_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            self.conn.execute(
                f"UPDATE topics SET version = version + 1 WHERE slug IN "
                f"(SELECT DISTINCT topic FROM topic_stories WHERE story_id IN ({marks}))",
                chunk,
            )

    def topic_versions(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT slug, version FROM topics")}

    def topic_summaries(self, topics: Sequence[tuple[str, str, str | None]]) -> list[TopicSummary]:
        out = []
        for slug, title, query in topics:
            row = self.conn.execute(
                "SELECT count(*), max(published) FROM topic_stories WHERE topic = ?", (slug,)
            ).fetchone()
            out.append(TopicSummary(slug, title, query, int(row[0]), parse_ts(row[1])))
        return out
