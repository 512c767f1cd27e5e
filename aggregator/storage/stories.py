"""Stories: the entries one event joins, and the candidates a new entry may join."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aggregator.models import LinkMate
from aggregator.storage.base import StoreBase, parse_ts, ts


class CandidateRow(NamedTuple):
    """A stored entry that may be a copy of a new one, for `dedupe.decide` (a named
    tuple: one is read for every candidate of every new entry)."""

    entry_id: int
    story_id: int
    #: feeds that already have an entry in this entry's story
    feeds: frozenset[str]
    title: str
    text: str
    published: datetime
    #: the cached dedupe signature as stored (JSON text), None if never stored
    sig: str | None


class StoriesMixin(StoreBase):
    """Stories: the entries one event joins, and the candidates a new entry may join."""

    def link_mates(self, canonical_link: str, feed: str, limit: int = 64) -> list[LinkMate]:
        """The oldest `limit` stored entries with this canonical link, for
        `dedupe.link_story`; the text only of `feed`'s own (the rest is never
        compared, and can be 200 kB). Bounded: a feed whose every item links its
        home page would otherwise read them all for each new one."""
        return [
            LinkMate(*r)
            for r in self.conn.execute(
                "SELECT story_id, feed, link, title, CASE WHEN feed = ? THEN text END "
                "FROM entries WHERE canonical_link = ? ORDER BY id LIMIT ?",
                (feed, canonical_link, limit),
            )
        ]

    def story_by_guid(self, guid: str | None) -> int | None:
        """A story that already has this guid, from any feed."""
        # A guid that is a URL or otherwise globally unique identifies the article;
        # short numeric guids are per-feed counters and would join unrelated stories.
        if guid and len(guid) >= 16 and not guid.isdigit():
            sid = self._one(
                "SELECT story_id FROM entries WHERE guid = ? ORDER BY id LIMIT 1", (guid,)
            )
            if sid is not None:
                return int(sid)
        return None

    def new_story(self, published: datetime, now: datetime, host: str) -> int:
        """Mint a story and its public id; the id is stored and never recomputed."""
        cur = self.conn.execute(
            "INSERT INTO stories(uid, published, updated) VALUES ('', ?, ?)",
            (ts(published), ts(now)),
        )
        sid = int(cur.lastrowid or 0)
        uid = f"tag:{host},{now.astimezone(UTC):%Y-%m-%d}:story/{sid}"
        self.conn.execute("UPDATE stories SET uid = ? WHERE id = ?", (uid, sid))
        return sid

    def touch_story(self, story_id: int, now: datetime) -> None:
        self.conn.execute("UPDATE stories SET updated = ? WHERE id = ?", (ts(now), story_id))

    def candidate_entries(
        self,
        keys: Sequence[str],
        since: datetime,
        until: datetime,
        *,
        min_shared: int = 1,
        per_key: int = 200,
        common_per_key: int | None = None,
        limit: int = 200,
        weights: Sequence[float] | None = None,
        rare: Sequence[bool] | None = None,
        common_limit: int | None = None,
    ) -> list[CandidateRow]:
        """Stored entries sharing at least `min_shared` index keys with a new entry,
        published inside the window, with their story's feeds; the `limit` sharing
        the most weight (`weights`, one per key; 1 each by default) first.

        Reads only the index: each key contributes its newest `per_key` postings in
        the window, so a common word costs the same with 10k or 1M entries stored.
        Of the candidates sharing none of the keys `rare` marks (a template's words
        only), at most `common_limit` are kept, however many the store holds; a key
        not marked rare contributes only its newest `common_per_key` postings.
        """
        if not keys:
            return []
        w = list(weights) if weights is not None else [1.0] * len(keys)
        r = list(rare) if rare is not None else [True] * len(keys)
        per_key_sql = (
            "SELECT entry_id, ? AS w, ? AS rare FROM (SELECT entry_id FROM entry_keys "
            "WHERE key = ? AND published BETWEEN ? AND ? ORDER BY published DESC LIMIT ?)"
        )
        union = " UNION ALL ".join([per_key_sql] * len(keys))
        params: list[Any] = []
        lo, hi = ts(since), ts(until)
        for k, kw, kr in zip(keys, w, r, strict=True):
            n = per_key if kr or common_per_key is None else common_per_key
            params += [kw, int(kr), k, lo, hi, n]
        found = self.conn.execute(
            f"SELECT entry_id, count(*) AS shared, sum(w) AS weight, max(rare) AS rare "
            f"FROM ({union}) GROUP BY entry_id HAVING shared >= ? "
            f"ORDER BY weight DESC, entry_id LIMIT ?",
            (*params, min_shared, limit),
        ).fetchall()
        rows = []
        commons = 0
        for row in found:
            if not row[3]:
                commons += 1
                if common_limit is not None and commons > common_limit:
                    continue
            rows.append(row)
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        entries = self.conn.execute(
            # The text is only needed where no signature was cached: it can be 200 kB.
            f"SELECT id, story_id, title, CASE WHEN sig IS NULL THEN text ELSE '' END, "
            f"published, sig FROM entries WHERE id IN ({marks})",
            ids,
        ).fetchall()
        story_ids = sorted({e[1] for e in entries})
        smarks = ",".join("?" * len(story_ids))
        feeds: dict[int, set[str]] = {}
        for sid, feed in self.conn.execute(
            f"SELECT DISTINCT story_id, feed FROM entries WHERE story_id IN ({smarks})", story_ids
        ):
            feeds.setdefault(sid, set()).add(feed)
        by_id = {e[0]: e for e in entries}
        return [
            CandidateRow(
                entry_id=e[0],
                story_id=e[1],
                feeds=frozenset(feeds.get(e[1], ())),
                title=e[2],
                text=e[3],
                published=parse_ts(e[4]) or datetime.min.replace(tzinfo=UTC),
                sig=e[5],
            )
            for e in (by_id[i] for i in ids if i in by_id)
        ]

    def story_feeds(self, story_id: int) -> set[str]:
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT feed FROM entries WHERE story_id = ?", (story_id,)
            )
        }

    def absorb_stories(self, story_id: int, absorbed: Sequence[int], now: datetime) -> None:
        """Fold `absorbed` stories into `story_id` (`dedupe.Decision.absorbed`): their
        entries and topic rows move to it, their rows go. The story keeps its uid and
        takes the earliest first-published time; each moved entry counts as a merge of
        its feed. Call inside `write()`, before `bump_topics_of` (the absorbed stories'
        topics change too: their rows are the ones that move)."""
        ids = [s for s in dict.fromkeys(absorbed) if s != story_id]
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        self.conn.execute(
            f"UPDATE topics SET version = version + 1 WHERE slug IN "
            f"(SELECT DISTINCT topic FROM topic_stories WHERE story_id IN ({marks}))",
            ids,
        )
        self.conn.execute(
            f"UPDATE feeds SET merges = merges + n FROM (SELECT feed, count(*) AS n "
            f"FROM entries WHERE story_id IN ({marks}) GROUP BY feed) AS moved "
            f"WHERE feeds.name = moved.feed",
            ids,
        )
        self.conn.execute(
            f"UPDATE entries SET story_id = ? WHERE story_id IN ({marks})", [story_id, *ids]
        )
        self.conn.execute(
            f"UPDATE stories SET updated = ?, published = min(published, "
            f"(SELECT min(published) FROM stories WHERE id IN ({marks}))) WHERE id = ?",
            [ts(now), *ids, story_id],
        )
        # topic rows: the story's matched words grow by the absorbed stories' own
        matched: dict[str, list[str]] = {}
        for topic, terms in self.conn.execute(
            f"SELECT topic, matched FROM topic_stories WHERE story_id IN (?, {marks}) "
            f"ORDER BY story_id != ?",
            [story_id, *ids, story_id],
        ):
            have = matched.setdefault(topic, [])
            have += [t for t in json.loads(terms) if t not in have]
        self.conn.execute(
            f"DELETE FROM topic_stories WHERE story_id IN (?, {marks})", [story_id, *ids]
        )
        published = self._one("SELECT published FROM stories WHERE id = ?", (story_id,))
        self.conn.executemany(
            "INSERT INTO topic_stories(topic, story_id, published, matched) VALUES (?, ?, ?, ?)",
            [
                (topic, story_id, published, json.dumps(terms, ensure_ascii=False))
                for topic, terms in matched.items()
            ],
        )
        self.conn.execute(f"DELETE FROM stories WHERE id IN ({marks})", ids)
