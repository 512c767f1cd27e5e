"""Retention: `keep` counts from when an entry was first stored, and an entry its feed
still carries is never pruned.

The archive is a real blog feed (tests/feeds/dustri-org__archive-rss.xml, trimmed)
whose items are all dated 2024: long past any `keep`. It is served on 127.0.0.1,
polled by the real poller or daemon into the real SQLite file, pruned by the
daemon's own prune job, and read back through `aggregator export` in all three formats.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from aggregator import cli, daemon
from aggregator import config as config_mod
from aggregator.ingest import pipeline as poll
from aggregator.match import dedupe
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import FeedServer

ARCHIVE = (Path(__file__).parent / "feeds" / "dustri-org__archive-rss.xml").read_bytes()
ITEMS = re.findall(rb"<item>.*?</item>", ARCHIVE, re.S)
TITLES = [
    feedparser.parse(b"<rss><channel>" + i + b"</channel></rss>").entries[0].title for i in ITEMS
]
FORMATS = ("atom", "rss", "json")


def archive(indices: range | list[int]) -> bytes:
    """The archive feed carrying only these of its items."""
    head = ARCHIVE[: ARCHIVE.index(b"<item>")]
    return head + b"\n".join(ITEMS[i] for i in indices) + b"</channel></rss>\n"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., config_mod.Config]:
    def write(feeds: list[tuple[str, str]], extra: str = "") -> config_mod.Config:
        path = tmp_path / "aggregator.toml"
        text = toml_config(feeds, [{"slug": "all", "title": "All", "limit": 100}])
        if extra:
            text = text.replace("[database]\n", f"[database]\n{extra}\n", 1)
        path.write_text(text, encoding="utf-8")
        return config_mod.load(path)

    return write


def poll_at(cfg: config_mod.Config, now: datetime | None = None) -> None:
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    poller = poll.Poller(cfg)
    try:
        results = list(poll.poll_many(poller, cfg.feeds, now))
    finally:
        poller.close()
        db.close()
    assert all(r.status in ("ok", "not_modified") for r in results), results


def exported(cfg: config_mod.Config) -> dict[str, dict[str, str]]:
    """title -> entry id of the `all` topic, per format, through `aggregator export`."""
    out = {}
    root = logging.getLogger()
    for fmt in FORMATS:
        handlers, level = root.handlers[:], root.level  # the CLI sets up its own logging
        try:
            result = CliRunner().invoke(
                cli.cli, ["--config", str(cfg.path), "export", "all", "--format", fmt]
            )
        finally:
            root.handlers[:], root.level = handlers, level
        assert result.exit_code == 0, result.output
        if fmt == "json":
            items = json.loads(result.stdout_bytes)["items"]
            out[fmt] = {i["title"]: i["id"] for i in items}
        else:
            parsed = feedparser.parse(result.stdout_bytes)
            out[fmt] = {e.title: e.id for e in parsed.entries}
    assert out["atom"] == out["rss"] == out["json"]  # the same ids in all three
    return out


def keys(cfg: config_mod.Config) -> int:
    """Entries stored."""
    conn = sqlite3.connect(cfg.database.path)
    try:
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    finally:
        conn.close()


def prune_job(cfg: config_mod.Config, caplog: pytest.LogCaptureFixture) -> str:
    """Run the daemon's prune job on the database; its one log line."""
    d = daemon.Daemon(cfg, serve=False, poll_feeds=False)
    try:
        with caplog.at_level(logging.INFO, logger="aggregator.daemon"):
            caplog.clear()
            d._prune()
    finally:
        d.stop()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pruned")]
    return line


def test_archive_feed_survives_the_prune_a_running_daemon_makes(
    server: FeedServer, make: Callable[..., config_mod.Config], caplog: pytest.LogCaptureFixture
) -> None:
    """The reported case: `aggregator run` polls an archive whose items are years old,
    and its prune job (a minute after start; brought forward here) removes nothing."""
    server.add("/archive.xml", ARCHIVE)
    cfg = make([("archive", server.url("/archive.xml"))])
    d = daemon.Daemon(cfg, serve=False)
    with caplog.at_level(logging.INFO, logger="aggregator.daemon"):
        d.start()
        try:
            deadline = time.monotonic() + 30
            while keys(cfg) < len(ITEMS) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert keys(cfg) == len(ITEMS)
            d.scheduler.modify_job("prune", next_run_time=datetime.now(UTC))
            while time.monotonic() < deadline and not any(
                r.getMessage().startswith("pruned") for r in caplog.records
            ):
                time.sleep(0.05)
        finally:
            d.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pruned")]
    assert lines == ["pruned 0 entries first stored over 90d ago and no longer in their feed"]
    assert keys(cfg) == len(ITEMS)
    for fmt, items in exported(cfg).items():
        assert sorted(items) == sorted(TITLES), fmt


def test_entries_gone_from_the_feed_and_older_than_keep_are_pruned(
    server: FeedServer, make: Callable[..., config_mod.Config], caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    server.add("/archive.xml", archive(range(8)))
    server.add("/other.xml", archive([0]).replace(b"dustri.org/b/", b"dustri.org/c/"))
    cfg = make([("archive", server.url("/archive.xml")), ("other", server.url("/other.xml"))])
    poll_at(cfg, now - timedelta(days=120))  # first stored four months ago
    before = exported(cfg)["atom"]
    assert sorted(before) == sorted(TITLES)
    # still all in the feed: nothing goes, however old
    assert prune_job(cfg, caplog) == (
        "pruned 0 entries first stored over 90d ago and no longer in their feed"
    )
    # the archive drops its three oldest items; "other" keeps its one
    server.add("/archive.xml", archive(range(5)))
    poll_at(cfg, now - timedelta(days=2))
    assert keys(cfg) == 9
    assert prune_job(cfg, caplog) == (
        "pruned 3 entries first stored over 90d ago and no longer in their feed: archive=3"
    )
    assert keys(cfg) == 6
    for fmt, items in exported(cfg).items():
        assert sorted(items) == sorted(TITLES[:5]), fmt
        # the kept stories keep their published ids
        assert items == {t: before[t] for t in TITLES[:5]}, fmt

    # a pruned item that comes back is stored again: its bytes are not among the
    # digests of items seen (this poll, an hour after the full read, uses them)
    server.add("/archive.xml", archive(range(8)))
    poll_at(cfg, now - timedelta(days=2, hours=-1))
    assert keys(cfg) == 9
    after = exported(cfg)
    for fmt, items in after.items():
        assert sorted(items) == sorted(TITLES), fmt
        assert {t: items[t] for t in TITLES[:5]} == {t: before[t] for t in TITLES[:5]}
    assert prune_job(cfg, caplog).startswith("pruned 0 entries")


def test_an_entry_read_again_between_full_reads_is_kept(
    server: FeedServer, make: Callable[..., config_mod.Config]
) -> None:
    """Polls in between leave out items seen byte for byte; an item that left and came
    back is parsed again, and that read counts: only what the latest reads miss goes."""
    t0 = datetime.now(UTC) - timedelta(days=200)
    server.add("/archive.xml", archive([0, 1, 2]))
    cfg = make([("archive", server.url("/archive.xml"))])
    poll_at(cfg, t0)
    server.add("/archive.xml", archive([0, 1, 3]))  # item 2 leaves, item 3 arrives
    poll_at(cfg, t0 + timedelta(hours=1))
    server.add("/archive.xml", archive([0, 1, 3, 4]))  # read whole: item 2 is missed
    poll_at(cfg, t0 + poll.FULL_READ_EVERY + timedelta(hours=1))
    server.add("/archive.xml", archive([0, 1, 2, 3, 4]))  # item 2 is back
    poll_at(cfg, t0 + poll.FULL_READ_EVERY + timedelta(hours=2))
    with store.Store(cfg.database.path) as db:
        assert db.prune(datetime.now(UTC), terms_of=dedupe.stored_terms) == {}
    server.add("/archive.xml", archive([0, 2, 3, 4]))  # item 1 leaves
    poll_at(cfg, t0 + 2 * poll.FULL_READ_EVERY + timedelta(hours=3))  # read whole
    with store.Store(cfg.database.path) as db:
        assert db.prune(datetime.now(UTC), terms_of=dedupe.stored_terms) == {"archive": 1}
    assert sorted(exported(cfg)["json"]) == sorted(TITLES[i] for i in (0, 2, 3, 4))


def test_a_feed_no_longer_configured_is_pruned_on_age_and_read_whole_if_it_returns(
    server: FeedServer, make: Callable[..., config_mod.Config], caplog: pytest.LogCaptureFixture
) -> None:
    server.add("/archive.xml", archive(range(4)))
    server.add("/other.xml", archive([0]).replace(b"dustri.org/b/", b"dustri.org/c/"))
    both = [("archive", server.url("/archive.xml")), ("other", server.url("/other.xml"))]
    cfg = make(both)
    poll_at(cfg, datetime.now(UTC) - timedelta(days=100))
    cfg = make(both[1:])  # the archive is taken out of the config
    assert prune_job(cfg, caplog).endswith(": archive=4")
    assert keys(cfg) == 1
    cfg = make(both)  # and put back: its unchanged body is fetched and read again
    poll_at(cfg)
    assert keys(cfg) == 5
    # ("other" carries the archive's first item: one story of two outlets)
    assert sorted(exported(cfg)["rss"]) == sorted(TITLES[:4])


def test_a_database_from_before_last_seen_prunes_nothing_until_a_feed_is_read_whole(
    server: FeedServer, make: Callable[..., config_mod.Config]
) -> None:
    """Rows stored before entries were marked seen have no mark and their feed no
    full read: nothing of theirs is taken for gone until the next poll reads it all."""
    server.add("/archive.xml", archive(range(3)))
    cfg = make([("archive", server.url("/archive.xml"))])
    poll_at(cfg, datetime.now(UTC) - timedelta(days=100))
    conn = sqlite3.connect(cfg.database.path)  # as the upgrade leaves them
    with conn:
        conn.execute("DELETE FROM entry_seen")
        conn.execute("UPDATE feeds SET full_read = NULL")
    conn.close()
    with store.Store(cfg.database.path) as db:
        assert db.prune(datetime.now(UTC), terms_of=dedupe.stored_terms) == {}
    server.add("/archive.xml", archive(range(2)))
    poll_at(cfg)
    with store.Store(cfg.database.path) as db:
        assert db.prune(datetime.now(UTC) - timedelta(days=90), terms_of=dedupe.stored_terms) == {
            "archive": 1
        }
