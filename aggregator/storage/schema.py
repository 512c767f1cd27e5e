"""The schema: its migrations, run by sqlite-utils, in the order they were written.

A fresh database is created by applying every migration; an existing one gets
the ones it has not had. Each runs in the transaction that records it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import sqlite_utils
from sqlite_utils.migrations import Migrations

from aggregator.models import SKIP_REASONS

#: the migration set's name, and the table where sqlite-utils records what it applied
MIGRATION_SET = "aggregator"
MIGRATIONS_TABLE = "_sqlite_migrations"

_Migration = Callable[["sqlite_utils.Database"], None]
_registered: list[tuple[str, _Migration]] = []


def _migration(name: str) -> Callable[[_Migration], _Migration]:
    def register(fn: _Migration) -> _Migration:
        _registered.append((name, fn))
        return fn

    return register


@functools.cache
def migrations() -> Migrations:
    """The schema's migrations as sqlite-utils runs them (`pending`, `apply`)."""
    found = Migrations(MIGRATION_SET)
    for name, fn in _registered:
        found(name=name)(fn)
    return found


@_migration("0001_initial")
def _m0001_initial(db: sqlite_utils.Database) -> None:
    # Statement by statement: executescript() would COMMIT the migration's transaction.
    for statement in _SCHEMA_0001.split(";\n"):
        if statement.strip():
            db.execute(statement)


_SCHEMA_0001 = """
        -- One row per configured feed; `name` is the config key and never changes.
        CREATE TABLE feeds (
            name TEXT PRIMARY KEY,
            config_url TEXT NOT NULL,       -- the URL in the config file
            url TEXT NOT NULL,              -- the URL polled now (after 301/308)
            title TEXT,                     -- the feed's own <title>
            site_link TEXT,                 -- the feed's own <link>
            etag TEXT,
            last_modified TEXT,
            last_fetch TEXT,                -- ISO UTC of the last fetch attempt
            last_status INTEGER,            -- HTTP status of it (NULL: network error)
            last_error TEXT,                -- NULL after a success
            last_success TEXT,
            warning TEXT,                   -- last bozo warning of a feed that still parsed
            failures INTEGER NOT NULL DEFAULT 0,
            next_poll TEXT,
            next_reason TEXT,               -- interval, auto, backoff, retry-after, hint, gone
            next_detail TEXT,
            gone INTEGER NOT NULL DEFAULT 0,
            hint_seconds INTEGER,
            merges INTEGER NOT NULL DEFAULT 0   -- entries of this feed that joined another's story
        );

        -- A story: one news event, possibly reported by several feeds.
        CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,       -- public id, minted once, never changes
            published TEXT NOT NULL,        -- the first entry's published time
            updated TEXT NOT NULL           -- last time an entry of it changed or joined
        );
        CREATE INDEX stories_published ON stories(published);

        -- One row per (feed, key): an item of one feed, updated in place on edits.
        CREATE TABLE entries (
            id INTEGER PRIMARY KEY,
            feed TEXT NOT NULL REFERENCES feeds(name),
            key TEXT NOT NULL,
            story_id INTEGER NOT NULL REFERENCES stories(id),
            guid TEXT,
            link TEXT,
            canonical_link TEXT,
            title TEXT NOT NULL,
            summary_html TEXT NOT NULL,
            content_html TEXT NOT NULL,
            text TEXT NOT NULL,
            author TEXT,
            published TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            updated TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            sig TEXT,                       -- dedupe signature (JSON), cached
            terms TEXT,                     -- counted terms (old rows; new ones count sig's)
            UNIQUE (feed, key)
        );
        CREATE INDEX entries_story ON entries(story_id);
        CREATE INDEX entries_canonical_link ON entries(canonical_link);
        CREATE INDEX entries_guid ON entries(guid);
        CREATE INDEX entries_published ON entries(published);

        -- Dedupe index: the keys each entry is found under, with its time for the window.
        CREATE TABLE entry_keys (
            key TEXT NOT NULL,
            entry_id INTEGER NOT NULL,
            published TEXT NOT NULL,
            PRIMARY KEY (key, entry_id)
        ) WITHOUT ROWID;
        CREATE INDEX entry_keys_window ON entry_keys(key, published);
        CREATE INDEX entry_keys_entry ON entry_keys(entry_id);

        -- Document frequencies of dedupe terms over stored entries (for IDF weights).
        CREATE TABLE term_df (
            term TEXT PRIMARY KEY,
            n INTEGER NOT NULL
        ) WITHOUT ROWID;

        -- Topic membership: which stories a topic holds and which terms matched.
        CREATE TABLE topic_stories (
            topic TEXT NOT NULL,
            story_id INTEGER NOT NULL,
            published TEXT NOT NULL,
            matched TEXT NOT NULL DEFAULT '[]',   -- JSON list of matched terms
            PRIMARY KEY (topic, story_id)
        ) WITHOUT ROWID;
        CREATE INDEX topic_stories_newest ON topic_stories(topic, published DESC, story_id DESC);
        CREATE INDEX topic_stories_story ON topic_stories(story_id);

        -- Per topic: the query its rows were computed with, and a version bumped on change.
        CREATE TABLE topics (
            slug TEXT PRIMARY KEY,
            query_key TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 0
        );

        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT
        );
"""


@_migration("0002_feed_language")
def _m0002_feed_language(db: sqlite_utils.Database) -> None:
    # The feed's declared language picks the stemmers when topics are re-evaluated.
    db.execute("ALTER TABLE feeds ADD COLUMN language TEXT")


@_migration("0003_entry_keys_by_time")
def _m0003_entry_keys_by_time(db: sqlite_utils.Database) -> None:
    # The window lookup (key, then newest first) becomes the table's own order: one
    # B-tree less to write for each of an entry's 30 keys, and a third less disk.
    for statement in (
        """CREATE TABLE entry_keys_new (
            key TEXT NOT NULL,
            published TEXT NOT NULL,
            entry_id INTEGER NOT NULL,
            PRIMARY KEY (key, published, entry_id)
        ) WITHOUT ROWID""",
        "INSERT INTO entry_keys_new(key, published, entry_id) "
        "SELECT key, published, entry_id FROM entry_keys",
        "DROP TABLE entry_keys",
        "ALTER TABLE entry_keys_new RENAME TO entry_keys",
        "CREATE INDEX entry_keys_entry ON entry_keys(entry_id)",
    ):
        db.execute(statement)


@_migration("0004_entry_hashes_index")
def _m0004_entry_hashes_index(db: sqlite_utils.Database) -> None:
    # Every poll of a feed reads its stored keys and content hashes: from the index
    # alone, not from rows whose hash sits behind 10 kB of HTML (6 ms per poll at 1M
    # entries, growing with each feed's history).
    db.execute("CREATE INDEX entries_feed_hash ON entries(feed, key, content_hash)")


@_migration("0005_feed_item_digests")
def _m0005_feed_item_digests(db: sqlite_utils.Database) -> None:
    # The digests of the items of a feed's last parsed body: the next parse leaves
    # out items it has already seen byte for byte (parse.item_digests).
    db.execute("ALTER TABLE feeds ADD COLUMN item_digests BLOB")


@_migration("0006_term_count_log")
def _m0006_term_count_log(db: sqlite_utils.Database) -> None:
    # A write transaction appends its term counts as one row; they are added into
    # term_df now and then (`fold_term_counts`), not upserted term by term each time.
    db.execute(
        "CREATE TABLE term_df_log ("
        "id INTEGER PRIMARY KEY, "
        "counts TEXT NOT NULL"  # space-separated terms, once per entry counted
        ")"
    )


#: the reasons an item is skipped (`models.SKIP_REASONS`), each counted in a column
#: `skipped_<reason>` of feeds
SKIP_COLUMNS = {reason: f"skipped_{reason}" for reason in SKIP_REASONS}


@_migration("0007_feed_entry_counts")
def _m0007_feed_entry_counts(db: sqlite_utils.Database) -> None:
    # Every item a poll reads is accounted for: the figures of the last poll that
    # read the feed (JSON), and every item ever skipped, by reason.
    db.execute("ALTER TABLE feeds ADD COLUMN last_counts TEXT")
    for column in ("skipped_no_content", "skipped_over_max_entries", "skipped_repeated_guid"):
        db.execute(f"ALTER TABLE feeds ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


@_migration("0008_entry_keys_with_anchor")
def _m0008_entry_keys_with_anchor(db: sqlite_utils.Database) -> None:
    # An item without a guid is keyed by its link, now with the anchor that names a
    # post on its page (dedupe.post_fragment): the stored keys follow, so those
    # items are not taken for new ones. OR IGNORE: a key already taken stays.
    db.execute(
        "UPDATE OR IGNORE entries "
        "SET key = canonical_link || '#' || substr(link, instr(link, '#') + 1) "
        "WHERE guid IS NULL AND key = canonical_link AND instr(link, '#') > 0 "
        "AND trim(substr(link, instr(link, '#') + 1)) != '' "
        "AND instr(substr(link, instr(link, '#') + 1), '=') = 0"
    )


@_migration("0009_entry_last_seen")
def _m0009_entry_last_seen(db: sqlite_utils.Database) -> None:
    # Retention counts from when an entry was first stored and spares what its feed
    # still carries. When a poll last read each entry lives in a narrow table of its
    # own, so marking fifty entries seen never rewrites fifty wide entry rows; an
    # entry without a row was last read when it was first stored. `full_read` is the
    # last poll that read every item of the feed (none left out by digest).
    for statement in (
        "CREATE TABLE entry_seen (entry_id INTEGER PRIMARY KEY, last_seen TEXT NOT NULL)",
        "ALTER TABLE feeds ADD COLUMN full_read TEXT",
        "CREATE INDEX entries_first_seen ON entries(first_seen)",
    ):
        db.execute(statement)


@_migration("0010_signatures_in_four_lines")
def _m0010_signatures_in_four_lines(db: sqlite_utils.Database) -> None:
    # A signature is read in one form only: four lines of space-separated terms
    # (title in order, lead, entities, the text's days; `dedupe.Signature.pack`).
    # Rows stored as JSON lists (before 0.1's packed form) or in three lines (before
    # the days were kept) are rewritten to it; their lists were already sorted.
    rows = db.execute(
        "SELECT id, sig FROM entries WHERE sig IS NOT NULL AND (sig LIKE '[%' "
        "OR length(sig) - length(replace(sig, char(10), '')) < 3)"
    ).fetchall()
    for entry_id, sig in rows:
        parts = [" ".join(p) for p in json.loads(sig)] if sig.startswith("[") else sig.split("\n")
        parts += [""] * (4 - len(parts))
        db.execute("UPDATE entries SET sig = ? WHERE id = ?", ("\n".join(parts), entry_id))
