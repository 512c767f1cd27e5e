"""What publish reads: a topic feed's stories with their best copy, and pages of them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aggregator import models
from aggregator.models import FeedItem, Related, TopicFeed
from aggregator.storage.base import StoreBase, parse_ts

_CURSOR = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)_(\d{1,18})")


def parse_cursor(cursor: str) -> tuple[str, int]:
    """The (published, story id) of a page cursor; ValueError if it is not one we made."""
    m = _CURSOR.fullmatch(cursor)
    if m is None:
        raise ValueError(f"not a page cursor: {cursor[:40]!r}")
    return m.group(1), int(m.group(2))


class ViewsMixin(StoreBase):
    """What publish reads: a topic feed's stories with their best copy, and pages of them."""

    def topic_feed(
        self,
        slug: str,
        title: str,
        query: str | None,
        base_url: str,
        limit: int,
        feed_titles: dict[str, str],
    ) -> TopicFeed:
        """The newest `limit` stories of a topic, each with its outlets, ready to render."""
        stories = self.conn.execute(
            "SELECT ts.story_id, ts.matched, s.uid, s.published, s.updated "
            "FROM topic_stories ts JOIN stories s ON s.id = ts.story_id "
            "WHERE ts.topic = ? ORDER BY ts.published DESC, ts.story_id DESC LIMIT ?",
            (slug, limit),
        ).fetchall()
        built = self._story_items(stories, feed_titles)
        items = tuple(built[r[0]][0] for r in stories if r[0] in built)
        return TopicFeed(slug=slug, title=title, query=query, base_url=base_url, items=items)

    def topic_story_page(
        self,
        slug: str,
        limit: int,
        feed_titles: Mapping[str, str],
        before: str | None = None,
    ) -> models.StoryPage:
        """Up to `limit` stories of a topic older than the cursor `before`, newest first.

        The cursor is a story's (published, id): a keyset page walks the topic's
        `topic_stories_newest` index from that point, so the hundredth page costs what
        the first does and stays put while new stories arrive above it.
        """
        where = "ts.topic = ?"
        params: list[Any] = [slug]
        if before is not None:
            at, story_id = parse_cursor(before)
            where += " AND (ts.published, ts.story_id) < (?, ?)"
            params += [at, story_id]
        stories = self.conn.execute(
            "SELECT ts.story_id, ts.matched, s.uid, s.published, s.updated, ts.published "
            "FROM topic_stories ts JOIN stories s ON s.id = ts.story_id "
            f"WHERE {where} ORDER BY ts.published DESC, ts.story_id DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        more = len(stories) > limit
        stories = stories[:limit]
        built = self._story_items(stories, feed_titles)
        out = [
            models.PageStory(built[r[0]][0], built[r[0]][1], f"{r[5]}_{r[0]}")
            for r in stories
            if r[0] in built
        ]
        older = f"{stories[-1][5]}_{stories[-1][0]}" if more and stories else None
        return models.StoryPage(tuple(out), older)

    def _story_items(
        self, stories: Sequence[Any], feed_titles: Mapping[str, str]
    ) -> dict[int, tuple[FeedItem, str | None]]:
        """Each story (rows of story id, matched, uid, published, updated) as the item
        publish shows, with its first entry's feed language; one query for all."""
        ids = [r[0] for r in stories]
        entries: dict[int, list[Any]] = {}
        if ids:
            marks = ",".join("?" * len(ids))
            for r in self.conn.execute(
                f"SELECT e.story_id, e.feed, e.title, e.link, e.summary_html, e.content_html, "
                f"e.author, e.updated, f.site_link, f.url, length(e.text) - length(e.title), "
                f"f.language, coalesce(e.canonical_link, e.link) "
                f"FROM entries e JOIN feeds f ON f.name = e.feed "
                f"WHERE e.story_id IN ({marks}) ORDER BY e.story_id, e.id",
                ids,
            ):
                entries.setdefault(r[0], []).append(r)
        out: dict[int, tuple[FeedItem, str | None]] = {}
        for sid, matched, uid, published, updated, *_ in stories:
            group = entries.get(sid)
            if not group:
                continue
            first = group[0]
            # The story shows its best copy: a title while any member has one, and the
            # fullest text; the link, outlet and id stay the first entry's.
            best_title = first[2] or next((g[2] for g in group if g[2]), "")
            fullest = max(group, key=lambda g: g[10] or 0)  # the earliest of equals
            # Every other article is named once: each outlet's, even at the same URL as
            # another outlet's, and each of an outlet's own articles (a story absorbed
            # into another can bring a second one), but not one article it listed twice.
            related = []
            seen = {(first[1], first[12])}
            for g in group[1:]:
                if g[3] and (g[1], g[12]) not in seen:
                    seen.add((g[1], g[12]))
                    related.append(Related(url=g[3], source=feed_titles.get(g[1], g[1])))
            newest_edit = max([updated] + [g[7] for g in group])
            item = FeedItem(
                id=uid,
                title=best_title,
                link=first[3],
                summary_html=fullest[4],
                content_html=fullest[5],
                author=first[6],
                source=feed_titles.get(first[1], first[1]),
                source_url=first[8] or first[9],
                published=parse_ts(published) or datetime.min.replace(tzinfo=UTC),
                updated=parse_ts(newest_edit) or datetime.min.replace(tzinfo=UTC),
                related=tuple(related),
                matched=tuple(json.loads(matched)),
            )
            out[sid] = (item, first[11])
        return out
