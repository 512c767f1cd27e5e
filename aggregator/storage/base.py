"""The connection: pragmas, transactions, and the times as stored.

One `Store` per thread (SQLite connections are not shared across threads). The
database runs in WAL mode with a busy timeout, so readers (the web server) never
wait for a writer, and writers queue instead of failing with "database is locked".
Write transactions are short, `BEGIN IMMEDIATE`, and never open across network I/O.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from aggregator.errors import StorageError
from aggregator.storage.schema import migrations

#: seconds a writer waits for another writer before giving up
BUSY_TIMEOUT_MS = 60_000
#: WAL pages between automatic checkpoints (see Store.__init__)
WAL_AUTOCHECKPOINT_PAGES = 10_000
#: the page cache of the writer's connection, which every batch of a poll is written
#: through: an entry's thirty index keys land on leaf pages all over the key index,
#: and with 1 MiB each batch read them back from the file and spilled them to the
#: WAL before its commit (the figures: bench/README.md)
WRITER_CACHE_KIB = 8192


def ts(dt: datetime) -> str:
    """Format a time for storage: fixed-width UTC, so text order is time order.

    isoformat, not strftime: the write path formats several times per entry, and
    strftime is the slower of the two by a third."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_ts(value: str | None) -> datetime | None:
    """Read a time written by `ts`."""
    if not value:
        return None
    # fromisoformat reads the trailing Z since Python 3.11, 80x faster than strptime
    # (a topic feed reads a few hundred of these, a poll several per feed)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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


class StoreBase:
    """A connection to the aggregator's SQLite database; use one per thread."""

    def __init__(self, path: Path | str, *, migrate: bool = True, cache_kib: int = 1024) -> None:
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
            # holding 16 MiB; the OS keeps the file's pages cached either way. The
            # writer's one connection asks for more (`WRITER_CACHE_KIB`).
            conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
            # A poll's commits dirty a few hundred index pages each; checkpointing the
            # WAL into the database every 1,000 pages (SQLite's default) copied and
            # synced the same hot pages over and over. 10,000 pages (40 MB of WAL on
            # disk) took 5-7 % off a 1,000-feed changed poll.
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            self.conn = conn
            if migrate:
                # No sqlite-utils plugin is ours to run on this connection, and
                # looking for them reads every installed package's entry points
                # (20 ms of each process that opens the database).
                db = sqlite_utils.Database(conn, execute_plugins=False)
                if migrations().pending(db):  # read-only: most opens find none
                    with self._lock_for_migration():
                        migrations().apply(db)
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[Self]:
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
    def savepoint(self) -> Iterator[Self]:
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

    def get_meta(self, key: str) -> str | None:
        value = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
