"""All SQL of the project: schema, migrations, feed state, entries, stories, topics.

One `Store` per thread (SQLite connections are not shared across threads). The
database runs in WAL mode with a busy timeout, so readers (the web server) never
wait for a writer, and writers queue instead of failing with "database is locked".
Write transactions are short, `BEGIN IMMEDIATE`, and never open across network I/O:
`poll` fetches and parses first, then calls `write()` once per feed.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator.errors import StorageError
from aggregator.models import Entry, FeedItem, FeedState, Related, TopicFeed, TopicSummary

if TYPE_CHECKING:
    import sqlite_utils
    from sqlite_utils.migrations import Migrations

#: seconds a writer waits for another writer before giving up
BUSY_TIMEOUT_MS = 60_000
#: WAL pages between automatic checkpoints (see Store.__init__)
WAL_AUTOCHECKPOINT_PAGES = 10_000

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
    """The schema's migrations as sqlite-utils runs them, built on first need.

    Importing sqlite-utils costs a process about 11 MiB (click, dateutil, pluggy and
    more come with it), and a database that is up to date (every open but the first)
    never needs it: `Store` checks the applied names itself and loads it only then.
    """
    from sqlite_utils.migrations import Migrations

    found = Migrations(MIGRATION_SET)
    for name, fn in _registered:
        found(name=name)(fn)
    return found


def _up_to_date(conn: sqlite3.Connection) -> bool:
    """Every migration of ours is recorded as applied (read-only, no sqlite-utils)."""
    try:
        applied = {
            row[0]
            for row in conn.execute(
                f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ?", (MIGRATION_SET,)
            )
        }
    except sqlite3.OperationalError:  # no such table: a new database
        return False
    return all(name in applied for name, _ in _registered)


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


def ts(dt: datetime) -> str:
    """Format a time for storage: fixed-width UTC, so text order is time order.

    isoformat, not strftime: the write path formats several times per entry, and
    strftime is the slower of the two by a third."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _stored_terms(terms: str | None, sig: str | None) -> list[str]:
    """The terms counted for an entry: those of its signature. Rows stored before
    that was the rule carry them in `terms`, space-separated or as a JSON list."""
    if terms:
        return list(json.loads(terms)) if terms.startswith("[") else terms.split()
    if not sig:
        return []
    from aggregator.match import dedupe  # only a prune needs it

    return list(dedupe.Signature.unpack(sig).everything)


def parse_ts(value: str | None) -> datetime | None:
    """Read a time written by `ts`."""
    if not value:
        return None
    # fromisoformat reads the trailing Z since Python 3.11, 80x faster than strptime
    # (a topic feed reads a few hundred of these, a poll several per feed)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """The columns `poll` needs to decide whether an entry changed."""

    id: int
    story_id: int
    content_hash: str
    title: str


@dataclass(frozen=True, slots=True)
class CandidateRow:
    """A stored entry that may be a copy of a new one, for `dedupe.decide`."""

    entry_id: int
    story_id: int
    #: feeds that already have an entry in this entry's story
    feeds: frozenset[str]
    title: str
    text: str
    published: datetime
    #: the cached dedupe signature as stored (JSON text), None if never stored
    sig: str | None


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


class Store:
    """A connection to the aggregator's SQLite database; use one per thread."""

    def __init__(self, path: Path | str, *, migrate: bool = True) -> None:
        self.path = Path(path)
        self._write_lock = _writer_lock(self.path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path),
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable across application crashes in WAL mode; only an OS
            # crash can lose the last commits, never corrupt the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # Each poll thread and each request thread has its own connection: 1 MiB of
            # page cache apiece (SQLite's default is 2 MiB) keeps eight of them from
            # holding 16 MiB; the OS keeps the file's pages cached either way.
            conn.execute("PRAGMA cache_size = -1024")
            # A poll's commits dirty a few hundred index pages each; checkpointing the
            # WAL into the database every 1,000 pages (SQLite's default) copied and
            # synced the same hot pages over and over. 10,000 pages (40 MB of WAL on
            # disk) took 5-7 % off a 1,000-feed changed poll.
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            self.conn = conn
            if migrate and not _up_to_date(conn):
                import sqlite_utils

                with self._lock_for_migration():
                    migrations().apply(sqlite_utils.Database(conn))
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open database: {exc}") from exc

    @contextmanager
    def _lock_for_migration(self) -> Iterator[None]:
        # Two processes starting at once must not both create the schema: the
        # migrations run inside one IMMEDIATE transaction (atomic() nests as savepoints).
        with self.write():
            yield

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[Store]:
        """One short write transaction; rolled back whole on any error.

        Writers of this process queue on a lock before SQLite's: a thread waiting in
        SQLite's busy handler sleeps and polls (up to 100 ms a turn), so with many poll
        threads the database sat idle between transactions. Other processes still
        wait through the busy timeout.
        """
        if not self._write_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            raise sqlite3.OperationalError("database is locked (by a writer of this process)")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
        finally:
            self._write_lock.release()

    @contextmanager
    def savepoint(self) -> Iterator[Store]:
        """A nested all-or-nothing step inside `write()`: one feed of a batch."""
        self.conn.execute("SAVEPOINT step")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK TO step")
            self.conn.execute("RELEASE step")
            raise
        else:
            self.conn.execute("RELEASE step")

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def change_mark(self) -> tuple[int, int]:
        """A value that changes whenever the database may have: `data_version` moves
        on another connection's or process's commit, `total_changes` on this one's.
        Cheap enough to ask on every request (no table is read)."""
        return int(self._one("PRAGMA data_version")), self.conn.total_changes

    def integrity_ok(self) -> bool:
        return bool(self._one("PRAGMA integrity_check") == "ok")

    # -- meta --------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        value = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- feeds -------------------------------------------------------------

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

    def record_fetch(
        self,
        name: str,
        *,
        at: datetime,
        status: int | None,
        error: str | None,
        success: bool,
        url: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        failures: int = 0,
        next_poll: datetime | None = None,
        next_reason: str | None = None,
        next_detail: str | None = None,
        gone: bool = False,
        hint_seconds: int | None = None,
        warning: str | None = None,
        title: str | None = None,
        site_link: str | None = None,
        language: str | None = None,
        item_digests: bytes | None = None,
    ) -> None:
        """Store one fetch's outcome; call inside `write()` (with the entries)."""
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
            "name": name,
            "at": ts(at),
            "status": status,
            "error": error,
            "failures": failures,
            "next_poll": ts(next_poll) if next_poll else None,
            "next_reason": next_reason,
            "next_detail": next_detail,
            "gone": int(gone),
        }
        if success:
            sets += ["last_success = :at", "warning = :warning"]
            params["warning"] = warning
            # RFC 9111 4.3.4: a 304 may carry new validators; keep the old ones if not.
            if etag is not None:
                sets.append("etag = :etag")
                params["etag"] = etag
            if last_modified is not None:
                sets.append("last_modified = :last_modified")
                params["last_modified"] = last_modified
            if status == 200:  # a fresh body without a hint (or language) drops the old one
                sets += [
                    "hint_seconds = :hint",
                    "language = :language",
                    "item_digests = :item_digests",
                ]
                params["hint"] = hint_seconds
                params["language"] = language
                # written with the entries they describe, in the same transaction
                params["item_digests"] = item_digests
        if url is not None:
            sets.append("url = :url")
            params["url"] = url
        if title is not None:
            sets.append("title = :title")
            params["title"] = title
        if site_link is not None:
            sets.append("site_link = :site_link")
            params["site_link"] = site_link
        self.conn.execute(f"UPDATE feeds SET {', '.join(sets)} WHERE name = :name", params)

    def feed_statuses(self) -> list[FeedStatus]:
        rows = self.conn.execute(
            "SELECT f.name, f.config_url, f.url, f.title, f.last_fetch, f.last_status, "
            "f.last_error, f.last_success, f.warning, f.failures, f.next_poll, "
            "f.next_reason, f.next_detail, f.gone, "
            "(SELECT count(*) FROM entries e WHERE e.feed = f.name), f.merges "
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

    # -- entries and stories -------------------------------------------------

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

    def entry_by_key(self, feed: str, key: str) -> StoredEntry | None:
        row = self.conn.execute(
            "SELECT id, story_id, content_hash, title FROM entries WHERE feed = ? AND key = ?",
            (feed, key),
        ).fetchone()
        return StoredEntry(*row) if row else None

    def story_by_link(self, canonical_link: str | None, guid: str | None) -> int | None:
        """A story that already has this canonical link, or this guid, from any feed."""
        if canonical_link:
            sid = self._one(
                "SELECT story_id FROM entries WHERE canonical_link = ? ORDER BY id LIMIT 1",
                (canonical_link,),
            )
            if sid is not None:
                return int(sid)
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

    def touch_story(self, story_id: int, now: datetime) -> None:
        self.conn.execute("UPDATE stories SET updated = ? WHERE id = ?", (ts(now), story_id))

    def count_merge(self, feed: str) -> None:
        self.conn.execute("UPDATE feeds SET merges = merges + 1 WHERE name = ?", (feed,))

    def add_entry_keys(self, entry_id: int, keys: Iterable[str], published: datetime) -> None:
        """Index a new entry for dedupe."""
        at = ts(published)
        self.conn.executemany(
            "INSERT OR IGNORE INTO entry_keys(key, entry_id, published) VALUES (?, ?, ?)",
            [(k, entry_id, at) for k in keys],
        )

    def add_term_counts(self, counts: Mapping[str, int]) -> None:
        """Add to the document frequencies now (summed by the caller)."""
        self.conn.executemany(
            "INSERT INTO term_df(term, n) VALUES (?, ?) ON CONFLICT(term) DO UPDATE SET n = n + ?",
            # in key order: consecutive upserts land on the same B-tree pages
            [(t, n, n) for t, n in sorted(counts.items())],
        )

    def log_term_counts(self, counts: Mapping[str, int]) -> None:
        """Record counts to add to the document frequencies later, in one row.

        A transaction of a few feeds' entries holds thousands of distinct terms:
        upserting each into term_df was a sixth of a cold poll's write time. The
        row commits with the entries it counts, so a crash loses neither; readers
        of `document_frequencies` see logged counts once they are folded in.
        """
        if counts:
            # each term once per entry that holds it: terms are words, never spaces
            text = " ".join([t for t, n in counts.items() for _ in range(n)])
            self.conn.execute("INSERT INTO term_df_log(counts) VALUES (?)", (text,))

    def fold_term_counts(self) -> int:
        """Add every logged count into term_df (inside the caller's write
        transaction); returns how many terms changed."""
        last = self._one("SELECT max(id) FROM term_df_log")
        if last is None:
            return 0
        total: Counter[str] = Counter()
        # row by row: the log of a busy minute holds tens of MB of text
        for (text,) in self.conn.execute("SELECT counts FROM term_df_log WHERE id <= ?", (last,)):
            total.update(text.split())
        self.add_term_counts(total)
        self.conn.execute("DELETE FROM term_df_log WHERE id <= ?", (last,))
        return len(total)

    def candidate_entries(
        self,
        keys: Sequence[str],
        since: datetime,
        until: datetime,
        *,
        min_shared: int = 1,
        per_key: int = 200,
        limit: int = 200,
    ) -> list[CandidateRow]:
        """Stored entries sharing at least `min_shared` index keys with a new entry,
        published inside the window, with their story's feeds.

        Reads only the index: each key contributes its newest `per_key` postings in
        the window, so a common word costs the same with 10k or 1M entries stored.
        """
        if not keys:
            return []
        per_key_sql = (
            "SELECT * FROM (SELECT entry_id FROM entry_keys WHERE key = ? "
            "AND published BETWEEN ? AND ? ORDER BY published DESC LIMIT ?)"
        )
        union = " UNION ALL ".join([per_key_sql] * len(keys))
        params: list[Any] = []
        lo, hi = ts(since), ts(until)
        for k in keys:
            params += [k, lo, hi, per_key]
        rows = self.conn.execute(
            f"SELECT entry_id, count(*) AS shared FROM ({union}) GROUP BY entry_id "
            f"HAVING shared >= ? ORDER BY shared DESC, entry_id LIMIT ?",
            (*params, min_shared, limit),
        ).fetchall()
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

    def entry_count(self) -> int:
        """Stored entries (the N of IDF); read once per feed poll, not per entry."""
        return int(self._one("SELECT count(*) FROM entries"))

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        """Stored-entry counts of these terms."""
        wanted = list(set(terms))
        df: dict[str, int] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            df.update(
                self.conn.execute(f"SELECT term, n FROM term_df WHERE term IN ({marks})", chunk)
            )
        return df

    def story_feeds(self, story_id: int) -> set[str]:
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT feed FROM entries WHERE story_id = ?", (story_id,)
            )
        }

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

    def counts(self) -> dict[str, int]:
        return {
            "entries": int(self._one("SELECT count(*) FROM entries")),
            "stories": int(self._one("SELECT count(*) FROM stories")),
            "feeds": int(self._one("SELECT count(*) FROM feeds")),
        }

    # -- topics --------------------------------------------------------------

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
        ids = [r[0] for r in stories]
        entries: dict[int, list[Any]] = {}
        if ids:
            marks = ",".join("?" * len(ids))
            for r in self.conn.execute(
                f"SELECT e.story_id, e.feed, e.title, e.link, e.summary_html, e.content_html, "
                f"e.author, e.updated, f.site_link, f.url FROM entries e "
                f"JOIN feeds f ON f.name = e.feed "
                f"WHERE e.story_id IN ({marks}) ORDER BY e.story_id, e.id",
                ids,
            ):
                entries.setdefault(r[0], []).append(r)
        items = []
        for sid, matched, uid, published, updated in stories:
            group = entries.get(sid)
            if not group:
                continue
            first = group[0]
            # Every other outlet is named once, even when it published the same URL.
            related = []
            seen_feeds = {first[1]}
            for g in group[1:]:
                if g[3] and g[1] not in seen_feeds:
                    seen_feeds.add(g[1])
                    related.append(Related(url=g[3], source=feed_titles.get(g[1], g[1])))
            newest_edit = max([updated] + [g[7] for g in group])
            items.append(
                FeedItem(
                    id=uid,
                    title=first[2],
                    link=first[3],
                    summary_html=first[4],
                    content_html=first[5],
                    author=first[6],
                    source=feed_titles.get(first[1], first[1]),
                    source_url=first[8] or first[9],
                    published=parse_ts(published) or datetime.min.replace(tzinfo=UTC),
                    updated=parse_ts(newest_edit) or datetime.min.replace(tzinfo=UTC),
                    related=tuple(related),
                    matched=tuple(json.loads(matched)),
                )
            )
        return TopicFeed(slug=slug, title=title, query=query, base_url=base_url, items=tuple(items))

    # -- retention -----------------------------------------------------------

    def prune(self, older_than: datetime) -> int:
        """Delete entries published before the cut-off and stories left empty.

        Kept stories keep their ids: a story's uid lives in its own row.
        """
        cut = ts(older_than)
        with self.write():
            self.fold_term_counts()  # what is subtracted below must be there to subtract
            gone = self.conn.execute(
                "SELECT terms, sig FROM entries WHERE published < ?", (cut,)
            ).fetchall()
            if gone:
                counts: dict[str, int] = {}
                for terms, sig in gone:
                    for t in _stored_terms(terms, sig):
                        counts[t] = counts.get(t, 0) + 1
                self.conn.executemany(
                    "UPDATE term_df SET n = n - ? WHERE term = ?",
                    [(n, t) for t, n in counts.items()],
                )
                self.conn.execute("DELETE FROM term_df WHERE n <= 0")
                self.conn.execute(
                    "DELETE FROM entry_keys WHERE entry_id IN "
                    "(SELECT id FROM entries WHERE published < ?)",
                    (cut,),
                )
                self.conn.execute("DELETE FROM entries WHERE published < ?", (cut,))
                empty = "SELECT id FROM stories WHERE id NOT IN (SELECT story_id FROM entries)"
                self.conn.execute(f"DELETE FROM topic_stories WHERE story_id IN ({empty})")
                self.conn.execute(f"DELETE FROM stories WHERE id IN ({empty})")
        return len(gone)


_local = threading.local()


_writer_locks: dict[str, threading.RLock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    """The process-wide lock of one database file (re-entrant, as SQLite's is not)."""
    key = str(path) if str(path) == ":memory:" else str(path.resolve())
    with _writer_locks_guard:
        lock = _writer_locks.get(key)
        if lock is None:
            lock = _writer_locks[key] = threading.RLock()
        return lock


def for_thread(path: Path) -> Store:
    """This thread's connection to `path` (opened on first use)."""
    stores: dict[Path, Store] = _local.__dict__.setdefault("stores", {})
    store = stores.get(path)
    if store is None:
        store = stores[path] = Store(path)
    return store
