"""The store's schema: migrations keep data, and the dedupe lookups use their index."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from aggregator.models import FeedUpdate
from aggregator.storage import store
from tests.conftest import entry as make_entry


def test_entry_keys_migration_keeps_every_posting(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    store.migrations().apply(sqlite_utils.Database(conn), stop_before="0003_entry_keys_by_time")
    conn.executemany(
        "INSERT INTO entry_keys(key, entry_id, published) VALUES (?, ?, ?)",
        [
            ("wheat", 1, "2026-11-20T10:00:00.000000Z"),
            ("moscow", 1, "2026-11-20T10:00:00.000000Z"),
            ("wheat", 2, "2026-11-21T09:00:00.000000Z"),
        ],
    )
    conn.close()

    db = store.Store(path)  # applies the rest
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    hits = db.conn.execute(
        "SELECT key, published, entry_id FROM entry_keys ORDER BY key, entry_id"
    ).fetchall()
    assert hits == [
        ("moscow", "2026-11-20T10:00:00.000000Z", 1),
        ("wheat", "2026-11-20T10:00:00.000000Z", 1),
        ("wheat", "2026-11-21T09:00:00.000000Z", 2),
    ]
    # the window lookup reads the table's own order: no sort, no second index
    plan = " ".join(
        str(r[3])
        for r in db.conn.execute(
            "EXPLAIN QUERY PLAN SELECT entry_id FROM entry_keys WHERE key = ? "
            "AND published BETWEEN ? AND ? ORDER BY published DESC LIMIT 200",
            ("wheat", store.ts(at - timedelta(days=2)), store.ts(at + timedelta(days=2))),
        )
    )
    assert "PRIMARY KEY" in plan and "TEMP B-TREE" not in plan, plan
    assert db.integrity_ok()
    db.close()


def test_a_feeds_stored_hashes_are_read_from_an_index(tmp_path: Path) -> None:
    db = store.Store(tmp_path / "a.db")
    plan = " ".join(
        str(r[3])
        for r in db.conn.execute(
            "EXPLAIN QUERY PLAN SELECT key, content_hash FROM entries WHERE feed = ?", ("f",)
        )
    )
    assert "COVERING INDEX entries_feed_hash" in plan, plan
    db.close()


def test_prune_takes_out_terms_and_keys(tmp_path: Path) -> None:
    """A prune takes a pruned entry's terms back out of the document frequencies,
    whether they were folded in or still logged, and every index key of a pruned
    entry goes while a kept entry's stay."""
    from aggregator.match import dedupe

    db = store.Store(tmp_path / "a.db")
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    old = now - timedelta(days=30)
    db.conn.execute("INSERT INTO feeds(name, config_url, url) VALUES ('f', 'u', 'u')")
    items = (
        ("a", "Wheat prices rise in Karachi", old),
        ("b", "Wheat harvest in Sindh", old),
        ("c", "Wheat harvest in Punjab", now),
    )
    with db.write():
        for key, title, published in items:
            entry = make_entry(
                title, "Growers in the province expect a record crop this year.", "f", at=published
            )
            entry = dataclasses.replace(entry, key=key, content_hash=key)
            text = entry.text
            sig, keys = dedupe.analyze(title, text)
            terms = sorted(sig.everything)
            sid = db.new_story(published, now, "h")
            # first stored when published; terms: the signature's
            eid = db.insert_entry(entry, sid, published, sig.pack())
            db.add_entry_keys(eid, keys, published)
            if key == "a":
                db.add_term_counts(dict.fromkeys(terms, 1))
            else:  # as a poll writes them: logged, folded in later
                db.log_term_counts(dict.fromkeys(terms, 1))
    assert db.document_frequencies(["wheat", "karachi", "sindh", "punjab"]) == {
        "wheat": 1,
        "karachi": 1,
    }
    kept_keys = db.conn.execute(
        "SELECT key FROM entry_keys WHERE entry_id = (SELECT id FROM entries WHERE key = 'c')"
    ).fetchall()
    assert len(kept_keys) > 5
    with db.write():  # read whole since: a and b are no longer in the feed
        db.record_fetch(FeedUpdate("f", at=now, status=200, success=True, full_read=True))
    assert db.prune(now - timedelta(days=1), terms_of=dedupe.stored_terms) == {"f": 2}
    assert db.document_frequencies(["wheat", "karachi", "sindh", "punjab"]) == {
        "wheat": 1,
        "punjab": 1,
    }
    left = db.conn.execute("SELECT key, entry_id FROM entry_keys ORDER BY key").fetchall()
    [(kept,)] = db.conn.execute("SELECT id FROM entries").fetchall()
    assert sorted(kept_keys) == [(k,) for k, _ in left] and {e for _, e in left} == {kept}
    db.close()


def test_logged_term_counts_commit_with_their_transaction_and_fold_in(tmp_path: Path) -> None:
    """Counts logged by a transaction that rolls back are gone with it; committed
    ones survive the process that logged them (a crash before its fold) and are
    added into the document frequencies exactly once."""
    path = tmp_path / "a.db"
    db = store.Store(path)
    with db.write():
        db.add_term_counts({"wheat": 2})
    with db.write():
        db.log_term_counts({"wheat": 1, "karachi": 3})
    with pytest.raises(RuntimeError), db.write():
        db.log_term_counts({"wheat": 100})
        raise RuntimeError("a feed's write failed")
    assert db.document_frequencies(["wheat", "karachi"]) == {"wheat": 2}
    db.close()  # never folded

    db = store.Store(path)
    with db.write():
        db.log_term_counts({"sindh": 1})
        assert db.fold_term_counts() == 3
    assert db.document_frequencies(["wheat", "karachi", "sindh"]) == {
        "wheat": 3,
        "karachi": 3,
        "sindh": 1,
    }
    with db.write():
        assert db.fold_term_counts() == 0
    db.close()


def test_opening_applies_the_pending_migrations_once(tmp_path: Path) -> None:
    """A database behind the schema gets the migrations it lacks when a process opens
    it (sqlite-utils' record says which), and the next open finds none pending."""
    path = tmp_path / "a.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    last = store.migrations()._migrations[-1].name
    store.migrations().apply(db, stop_before=last)
    assert [m.name for m in store.migrations().pending(db)] == [last]
    code = f"import sys; from aggregator.storage import store; store.Store({str(path)!r}).close()"
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert store.migrations().pending(db) == []
    applied = [n for (n,) in conn.execute("SELECT name FROM _sqlite_migrations")]
    assert applied == [m.name for m in store.migrations()._migrations]
    before = conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()
    store.Store(path).close()
    assert conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone() == before
    conn.close()
