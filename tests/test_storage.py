"""Each storage module on its own, on a real SQLite file: schema, the connection's
transactions, feeds, entries, stories, terms, topics, what publish reads, retention
and the batched writer."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from aggregator.match import dedupe
from aggregator.models import FeedUpdate
from aggregator.storage import schema, store
from aggregator.storage.writer import GroupWriter
from tests.conftest import entry

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> store.Store:
    s = store.Store(tmp_path / "a.db")
    s.sync_feeds([("dawn", "https://dawn.example/feed"), ("tass", "https://tass.example/rss")])
    yield s
    s.close()


def add(
    db: store.Store, feed: str, title: str, *, link: str | None = None, at: datetime = NOW
) -> tuple[int, int]:
    """One entry in a story of its own: (entry id, story id)."""
    e = dataclasses.replace(entry(title, "Body of " + title, feed, at=at), link=link)
    e = dataclasses.replace(e, canonical_link=link)
    sig, keys = dedupe.analyze(e.title, e.text)
    sid = db.new_story(at, at, "h")
    eid = db.insert_entry(e, sid, at, sig.pack())
    db.add_entry_keys(eid, keys, at)
    return eid, sid


# --- schema.py and base.py ----------------------------------------------------------------


def test_schema_creates_every_table_and_leaves_nothing_pending(db: store.Store) -> None:
    tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"feeds", "entries", "stories", "entry_keys", "topic_stories", "entry_seen"} <= tables
    assert schema.migrations().pending(sqlite_utils.Database(db.conn)) == []
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_no_sqlite_utils_plugin_runs_on_our_connection(tmp_path: Path) -> None:
    """An installed sqlite-utils plugin is another program's: it must not touch the
    store's connection (nor may its lookup cost every open a scan of entry points)."""
    from sqlite_utils.plugins import pm

    touched: list[sqlite3.Connection] = []

    class Plugin:
        @sqlite_utils.hookimpl
        def prepare_connection(self, conn: sqlite3.Connection) -> None:
            touched.append(conn)

    plugin = Plugin()
    pm.register(plugin, name="test-plugin")
    try:
        sqlite_utils.Database(sqlite3.connect(":memory:"))  # the plugin is live
        assert len(touched) == 1
        with store.Store(tmp_path / "b.db") as s:
            assert s.conn not in touched
        assert len(touched) == 1
    finally:
        pm.unregister(plugin)


def test_signatures_stored_in_earlier_forms_are_rewritten_to_the_one_read(
    tmp_path: Path,
) -> None:
    """Rows from before the packed form (JSON lists) and before the text's days were
    kept (three lines) are brought to four lines by a migration, and read."""
    import json

    path = tmp_path / "old.db"
    with store.Store(path) as s:
        s.sync_feeds([("dawn", "https://dawn.example/feed")])
        sig = dedupe.signature("Putin meets Sharif in Moscow", "Putin met Sharif on 4 May.")
        four = sig.pack()
        three = "\n".join(four.split("\n")[:3])
        as_json = json.dumps([list(sig.order), sorted(sig.lead), sorted(sig.entities)])
        ids = []
        for n, stored in enumerate((four, three, as_json)):
            e = entry(f"Story {n}", "Body", "dawn", at=NOW)
            ids.append(s.insert_entry(e, s.new_story(NOW, NOW, "h"), NOW, stored))
        s.conn.execute(
            "DELETE FROM _sqlite_migrations WHERE name = '0010_signatures_in_four_lines'"
        )
        s.conn.commit()
    with store.Store(path) as s:  # the migration is pending again: applied on open
        stored = [
            s.conn.execute("SELECT sig FROM entries WHERE id = ?", (i,)).fetchone()[0] for i in ids
        ]
    assert stored[0] == four
    assert dedupe.Signature.unpack(stored[1]) == with_days(sig, dates=frozenset())
    assert dedupe.Signature.unpack(stored[2]) == with_days(sig, dates=frozenset())
    assert dedupe.Signature.unpack(stored[0]) == sig


def with_days(sig: dedupe.Signature, *, dates: frozenset[str]) -> dedupe.Signature:
    """`sig` with other days."""
    return dedupe.Signature(sig.order, sig.lead, sig.entities, dates)


def test_a_write_is_all_or_nothing_and_a_savepoint_rolls_back_alone(db: store.Store) -> None:
    with pytest.raises(RuntimeError), db.write():
        add(db, "dawn", "Lost with its transaction")
        raise RuntimeError
    assert db.entry_count() == 0
    with db.write():
        add(db, "dawn", "Kept")
        with pytest.raises(RuntimeError), db.savepoint():
            add(db, "tass", "Rolled back alone")
            raise RuntimeError
    assert db.entry_count() == 1


def test_times_are_stored_in_a_fixed_width_that_sorts_as_time() -> None:
    a, b = NOW, NOW + timedelta(microseconds=1)
    assert store.ts(a) < store.ts(b) and len(store.ts(a)) == len(store.ts(b))
    assert store.parse_ts(store.ts(a)) == a


# --- feeds.py -----------------------------------------------------------------------------


def test_a_poll_outcome_is_one_record_read_back_as_state_and_status(db: store.Store) -> None:
    assert db.never_fetched(["dawn", "tass"]) == 2
    with db.write():
        db.record_fetch(
            FeedUpdate(
                "dawn", at=NOW, success=True, status=200, etag='"e1"', failures=0,
                next_poll=NOW + timedelta(minutes=15), next_reason="interval",
                item_digests=b"12345678", full_read=True,
                counts={"read": 3, "new": 2, "skipped": {"repeated_guid": 1}},
            )
        )  # fmt: skip
        db.record_fetch(
            FeedUpdate("tass", at=NOW, success=False, status=503, error="HTTP 503", failures=1)
        )
    state = db.feed_state("dawn")
    assert state.etag == '"e1"' and db.item_digests("dawn") == b"12345678"
    assert db.full_read_at("dawn") == NOW and db.never_fetched(["dawn", "tass"]) == 0
    statuses = {s.name: s for s in db.feed_statuses()}
    assert statuses["dawn"].last_counts == {"read": 3, "new": 2, "skipped": {"repeated_guid": 1}}
    assert statuses["dawn"].skipped["repeated_guid"] == 1
    assert statuses["tass"].last_error == "HTTP 503" and statuses["tass"].failures == 1
    assert statuses["tass"].last_success is None


# --- entries.py ---------------------------------------------------------------------------


def test_an_entry_is_found_by_key_edited_in_place_and_marked_seen(db: store.Store) -> None:
    with db.write():
        eid, sid = add(db, "dawn", "Headline", link="https://dawn.example/a")
    found = db.entry_by_key("dawn", "Headline")
    assert found is not None and (found.id, found.story_id) == (eid, sid)
    edited = dataclasses.replace(
        entry("Headline", "New body", "dawn", at=NOW),
        content_hash="v2",
        link="https://dawn.example/a",
        canonical_link="https://dawn.example/a",
    )
    with db.write():
        db.update_entry(eid, edited, NOW + timedelta(hours=1))
        db.mark_seen("dawn", ["Headline"], NOW + timedelta(hours=2))
    assert db.entry_by_key("dawn", "Headline").content_hash == "v2"  # type: ignore[union-attr]
    assert db.entry_hashes("dawn") == {"Headline": "v2"}
    seen = db.conn.execute("SELECT last_seen FROM entry_seen WHERE entry_id = ?", (eid,))
    assert store.parse_ts(seen.fetchone()[0]) == NOW + timedelta(hours=2)
    assert db.entry_by_link("https://dawn.example/a") is not None


# --- stories.py ---------------------------------------------------------------------------


def test_stories_by_link_guid_and_shared_keys(db: store.Store) -> None:
    with db.write():
        _, sid = add(db, "dawn", "Pakistan and Russia sign gas pipeline deal", link="https://x/p")
        add(db, "dawn", "Cricket: Lahore wins the final", at=NOW - timedelta(days=5))
    [mate] = db.link_mates("https://x/p", "tass")
    assert mate.story_id == sid and mate.text is None  # another feed's text is never read
    keys = dedupe.index_keys("Russia and Pakistan gas pipeline", "Gas pipeline deal signed")
    rows = db.candidate_entries(keys, NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert [r.story_id for r in rows] == [sid]  # the cricket story is outside the window
    assert db.story_feeds(sid) == {"dawn"} and db.story_by_guid(None) is None


def test_a_common_key_finds_only_its_newest_postings(db: store.Store) -> None:
    """Six stored entries share a template's two words: read as rare keys all six
    are found, read as common ones (`common_per_key`) only the newest two."""
    with db.write():
        stories = [
            add(db, "dawn", f"Weather forecast for town{n}", at=NOW - timedelta(hours=n))[1]
            for n in range(6)
        ]
    keys = ["weather", "forecast"]
    span = (NOW - timedelta(days=1), NOW + timedelta(days=1))
    found = db.candidate_entries(keys, *span, min_shared=2, rare=[True, True], common_per_key=2)
    assert {r.story_id for r in found} == set(stories)
    found = db.candidate_entries(keys, *span, min_shared=2, rare=[False, False], common_per_key=2)
    assert {r.story_id for r in found} == set(stories[:2])


def test_an_absorbed_story_moves_whole_into_the_other(db: store.Store) -> None:
    """Entries, topic rows and merges move; the absorbed story's row goes; the story
    takes the earlier first-published time; an outlet's two articles are both listed."""
    titles = {"dawn": "Dawn", "tass": "TASS"}
    with db.write():
        db.reset_topic("pk", "{}")
        db.reset_topic("ru", "{}")
        _, big = add(db, "dawn", "Gas pipeline deal signed", link="https://dawn/1")
        e2 = dataclasses.replace(
            entry("Pipeline deal signed in Moscow", "x", "tass", at=NOW), link="https://tass/1"
        )
        db.insert_entry(e2, big, NOW, None)
        _, small = add(
            db,
            "dawn",
            "Moscow and Islamabad agree",
            link="https://dawn/2",
            at=NOW - timedelta(hours=1),
        )
        db.add_new_story_to_topics(big, NOW, {"pk": ("pipeline",)})
        db.add_new_story_to_topics(
            small, NOW - timedelta(hours=1), {"pk": ("islamabad",), "ru": ("moscow",)}
        )
        versions = db.topic_versions()
        db.absorb_stories(big, [small], NOW)
    assert db.topic_versions()["ru"] > versions["ru"]
    assert db.story_feeds(big) == {"dawn", "tass"}
    assert db.conn.execute("SELECT count(*) FROM stories WHERE id = ?", (small,)).fetchone()[0] == 0
    [(merges,)] = db.conn.execute("SELECT merges FROM feeds WHERE name = 'dawn'").fetchall()
    assert merges == 1
    for slug, matched in (("pk", ("pipeline", "islamabad")), ("ru", ("moscow",))):
        [item] = db.topic_feed(slug, slug, None, "http://h", 10, titles).items
        assert item.matched == matched
        assert item.published == NOW - timedelta(hours=1)  # the absorbed story was first
        assert item.link == "https://dawn/1"
        assert sorted(r.url for r in item.related) == ["https://dawn/2", "https://tass/1"]


# --- terms.py -----------------------------------------------------------------------------


def test_logged_term_counts_fold_into_the_frequencies(db: store.Store) -> None:
    with db.write():
        db.add_term_counts({"wheat": 2})
        db.log_term_counts({"wheat": 1, "karachi": 1})
    assert db.document_frequencies(["wheat", "karachi"]) == {"wheat": 2}  # logged: not yet
    with db.write():
        db.fold_term_counts()
    assert db.document_frequencies(["wheat", "karachi"]) == {"wheat": 3, "karachi": 1}


# --- topics.py and views.py ----------------------------------------------------------------


def test_a_topic_holds_stories_and_publish_reads_them_newest_first(db: store.Store) -> None:
    with db.write():
        db.reset_topic("pk", "{}")
        _, old = add(db, "dawn", "Older story", at=NOW - timedelta(hours=2))
        _, new = add(db, "tass", "Newer story", at=NOW)
        db.add_new_story_to_topics(old, NOW - timedelta(hours=2), {"pk": ("older",)})
        assert db.add_topic_story("pk", new, ["newer"]) is True
        assert db.add_topic_story("pk", new, ["newer"]) is False  # nothing new
        db.bump_topics_of([old, new])
    titles = {"dawn": "Dawn", "tass": "TASS"}
    feed = db.topic_feed("pk", "Pakistan", None, "http://h", 10, titles)
    assert [i.title for i in feed.items] == ["Newer story", "Older story"]
    assert feed.items[0].source == "TASS" and feed.items[0].matched == ("newer",)
    first = db.topic_story_page("pk", 1, titles)
    assert [s.item.title for s in first.stories] == ["Newer story"] and first.older
    second = db.topic_story_page("pk", 1, titles, first.older)
    assert [s.item.title for s in second.stories] == ["Older story"] and second.older is None
    with pytest.raises(ValueError):
        db.topic_story_page("pk", 1, titles, "not-a-cursor")
    with db.write():
        db.drop_topics_except([])
    assert db.topic_feed("pk", "P", None, "http://h", 10, titles).items == ()


# --- retention.py -------------------------------------------------------------------------


def test_retention_removes_only_what_is_old_and_no_longer_carried(db: store.Store) -> None:
    old = NOW - timedelta(days=100)
    with db.write():
        kept, _ = add(db, "dawn", "Still in the feed", at=old)
        add(db, "dawn", "Gone from the feed", at=old)
        db.record_fetch(FeedUpdate("dawn", at=NOW, success=True, status=200, full_read=True))
        db.mark_seen("dawn", ["Still in the feed"], NOW)
    assert db.prune(NOW - timedelta(days=90), terms_of=dedupe.stored_terms) == {"dawn": 1}
    assert [r[0] for r in db.conn.execute("SELECT id FROM entries")] == [kept]


# --- writer.py ----------------------------------------------------------------------------


class _Batch:
    def __init__(self) -> None:
        self.ended: list[bool] = []
        self.flushed = 0

    def end_job(self, ok: bool) -> None:
        self.ended.append(ok)

    def flush(self) -> None:
        self.flushed += 1


def test_the_writer_commits_each_job_or_rolls_back_that_job_alone(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store.Store(path).close()
    batches: list[_Batch] = []

    def begin(_: store.Store) -> _Batch:
        batches.append(_Batch())
        return batches[-1]

    writer = GroupWriter(path, begin)

    titles = iter(["Stored 1", "Stored 2"])

    def ok(w: store.Store, _: _Batch) -> int:
        return add(w, "dawn", next(titles))[0]

    def fails(w: store.Store, _: _Batch) -> int:
        add(w, "dawn", "Rolled back")
        raise ValueError("this feed's write failed")

    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO feeds(name, config_url, url) VALUES ('dawn', 'u', 'u')")
    errors: list[BaseException] = []

    def run(fn: object) -> None:
        try:
            writer.run(fn)  # type: ignore[arg-type]
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in (ok, fails, ok)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    writer.close()
    assert len(errors) == 1 and sum(b.flushed for b in batches) == len(batches)
    assert sorted(ok for b in batches for ok in b.ended) == [False, True, True]
    with sqlite3.connect(path) as conn:
        stored = sorted(t for (t,) in conn.execute("SELECT title FROM entries"))
    assert stored == ["Stored 1", "Stored 2"]


def test_the_writers_connection_has_a_larger_page_cache(tmp_path: Path) -> None:
    """Every batch is written through the writer's one connection, whose index pages
    stay cached; the other connections (one per poll or request thread) stay small."""
    path = tmp_path / "w.db"
    other = store.Store(path)
    writer = GroupWriter(path, lambda _: _Batch())
    try:
        sizes = writer.run(lambda w, _: w.conn.execute("PRAGMA cache_size").fetchone()[0])
        assert sizes == -store.WRITER_CACHE_KIB
        assert other.conn.execute("PRAGMA cache_size").fetchone()[0] == -1024
        assert store.WRITER_CACHE_KIB > 1024
    finally:
        writer.close()
        other.close()
