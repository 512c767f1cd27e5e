"""The ingest path end to end: a local HTTP server, the real poller, a real SQLite file."""

from __future__ import annotations

import csv
import json
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from aggregator import config as config_mod
from aggregator.errors import ParseError
from aggregator.ingest import parse, prepare, workers
from aggregator.ingest import pipeline as poll
from aggregator.match import dedupe, termstats
from aggregator.storage import store
from tests.conftest import feed_files, toml_config
from tests.feedserver import FeedServer, redirect, slow, status

Make = Callable[..., config_mod.Config]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


def run_poll(cfg: config_mod.Config, now: datetime | None = None) -> dict[str, poll.PollResult]:
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    poller = poll.Poller(cfg)
    try:
        return {r.feed: r for r in poll.poll_many(poller, cfg.feeds, now)}
    finally:
        poller.close()
        db.close()


def rows(cfg: config_mod.Config, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(cfg.database.path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def rss(items: str, encoding: str = "utf-8", extra: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n<rss version="2.0"><channel>'
        f"<title>T</title><link>http://example.org/</link><description>d</description>"
        f"{extra}{items}</channel></rss>"
    )


def item(guid: str | None, title: str, link: str | None = None, date: str | None = None) -> str:
    parts = [f"<title>{title}</title>"]
    if guid:
        parts.append(f'<guid isPermaLink="false">{guid}</guid>')
    if link:
        parts.append(f"<link>{link}</link>")
    if date:
        parts.append(f"<pubDate>{date}</pubDate>")
    parts.append(f"<description>About {title}</description>")
    return "<item>" + "".join(parts) + "</item>"


# -- the real corpus -------------------------------------------------------------------


def corpus_expectations(corpus: Path) -> dict[str, int]:
    """Entries per readable corpus file, counted with feedparser directly (not our code)."""
    expected = {}
    with open(corpus / "SOURCES.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            name = row["file"]
            if "BROKEN" in name or name.endswith(".json"):
                continue
            parsed = feedparser.parse((corpus / name).read_bytes())
            keys = set()
            for e in parsed.entries:
                key = e.get("id") or e.get("link") or e.get("title")
                if key or e.get("summary"):  # an empty <item/> is not an entry
                    keys.add(key)
            if keys:
                expected[name] = len(keys)
    return expected


def feed_name(file: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", file.lower().rsplit(".", 1)[0]).strip("-")[:60]


def test_real_corpus_cold_then_warm(
    corpus_dir: Path, server: FeedServer, make_config: Make
) -> None:
    server.serve_dir("/corpus", corpus_dir)
    files = feed_files(corpus_dir)
    cfg = make_config([(feed_name(f), server.url(f"/corpus/{f}")) for f in files])
    results = run_poll(cfg)
    assert len(results) == len(files)

    expected = corpus_expectations(corpus_dir)
    stored = dict(rows(cfg, "SELECT feed, count(*) FROM entries GROUP BY feed"))
    for file, count in expected.items():
        name = feed_name(file)
        assert results[name].status == "ok", (file, results[name].error)
        assert stored.get(name) == count, file

    # JSON Feeds (feedparser cannot read them) give their items too.
    for f in files:
        if f.endswith(".json") and "BROKEN" not in f:
            assert stored.get(feed_name(f), 0) > 0, f

    # Broken files are recorded as that feed's error (or a warning), never a crash.
    for f in files:
        if "BROKEN" in f:
            r = results[feed_name(f)]
            assert r.status in ("error", "ok"), f
            if r.status == "error":
                assert r.error
            else:
                assert r.warning or r.new > 0

    # Warm: every feed answers 304, nothing is parsed or written again.
    before = rows(cfg, "SELECT count(*) FROM entries")
    warm = run_poll(cfg)
    for name, r in warm.items():
        if results[name].status == "ok":
            assert r.status == "not_modified", (name, r)
    assert rows(cfg, "SELECT count(*) FROM entries") == before
    with store.Store(cfg.database.path) as db:
        assert db.integrity_ok()


def test_seed_story_lands_in_topic(server: FeedServer, make_config: Make) -> None:
    seed = Path(__file__).resolve().parent / "feeds" / "pak-russia-story.xml"
    server.add("/seed.xml", seed.read_bytes())
    cfg = make_config(
        [("seed", server.url("/seed.xml"))],
        [{"slug": "pakistan-russia", "title": "P-R", "query": "@pakistan AND @russia"}],
        extra='[aliases]\npakistan = ["Pakistan", "Pak"]\nrussia = ["Russia", "Putin"]\n',
    )
    run_poll(cfg)
    assert rows(cfg, "SELECT count(*) FROM topic_stories WHERE topic = 'pakistan-russia'") == [(1,)]


# -- edges, with small files written here ---------------------------------------------------


def test_encodings_dates_relative_links(server: FeedServer, make_config: Make) -> None:
    urdu = rss(item("u1", "پاکستان اور روس کے درمیان معاہدہ", "http://bbc.example/urdu/1"))
    russian = rss(item("r1", "Пакистан и Россия подписали соглашение", "/news/1"), "windows-1251")
    nodate = rss(item("n1", "Undated story", "http://x.example/a"))
    server.add("/urdu.xml", urdu.encode("utf-8"))
    server.add("/ru.xml", russian.encode("cp1251"))
    server.add("/nodate.xml", nodate.encode())
    cfg = make_config(
        [
            ("urdu", server.url("/urdu.xml")),
            ("ru", server.url("/ru.xml")),
            ("nodate", server.url("/nodate.xml")),
        ]
    )
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    results = run_poll(cfg, now)
    assert all(r.status == "ok" and r.new == 1 for r in results.values()), results
    got = dict(rows(cfg, "SELECT feed, title FROM entries"))
    assert got["urdu"] == "پاکستان اور روس کے درمیان معاہدہ"
    assert got["ru"] == "Пакистан и Россия подписали соглашение"
    links = dict(rows(cfg, "SELECT feed, link FROM entries"))
    assert links["ru"] == server.url("/news/1")
    published = dict(rows(cfg, "SELECT feed, published FROM entries"))
    assert published["nodate"] == store.ts(now)


def test_headline_edit_updates_in_place(server: FeedServer, make_config: Make) -> None:
    date = "Mon, 05 Jan 2026 10:00:00 GMT"
    server.add("/f.xml", rss(item("g1", "First headline", "http://x.example/1", date)).encode())
    cfg = make_config([("f", server.url("/f.xml"))], [{"slug": "all", "title": "All"}])
    run_poll(cfg)
    [(entry_id, story_id, uid)] = rows(
        cfg, "SELECT e.id, e.story_id, s.uid FROM entries e JOIN stories s ON s.id = e.story_id"
    )
    server.add("/f.xml", rss(item("g1", "Edited headline", "http://x.example/1", date)).encode())
    r = run_poll(cfg)["f"]
    assert (r.status, r.new, r.updated) == ("ok", 0, 1)
    assert rows(
        cfg,
        "SELECT e.id, e.story_id, s.uid, e.title FROM entries e JOIN stories s "
        "ON s.id = e.story_id",
    ) == [(entry_id, story_id, uid, "Edited headline")]


def test_duplicate_guids_and_same_link_across_feeds(server: FeedServer, make_config: Make) -> None:
    a = rss(
        item("dup", "Story one", "http://wire.example/story?utm_source=rss")
        + item("dup", "Story one again", "http://wire.example/story")
    )
    b = rss(item("b-1", "Same wire copy", "http://WIRE.example:80/story#top"))
    server.add("/a.xml", a.encode())
    server.add("/b.xml", b.encode())
    cfg = make_config([("a", server.url("/a.xml")), ("b", server.url("/b.xml"))])
    run_poll(cfg)
    assert rows(cfg, "SELECT count(*) FROM entries") == [(2,)]
    # The same canonical link from two feeds is one story with both outlets.
    assert rows(cfg, "SELECT count(*) FROM stories") == [(1,)]
    assert rows(cfg, "SELECT count(DISTINCT feed) FROM entries") == [(2,)]


def test_failures_are_recorded_and_do_not_stop_the_poll(
    server: FeedServer, make_config: Make
) -> None:
    good = rss(item("ok1", "Fine story", "http://x.example/ok"))
    server.add("/good.xml", good.encode(), gzip=True)
    server.route("/404.xml", status(404))
    server.route("/500.xml", status(500))
    server.route("/slow.xml", slow(10, good.encode()))
    server.add("/html.xml", b"<html><body>Parked domain</body></html>", content_type="text/html")
    server.add("/big.xml", rss(item("b", "x" * 3_000_000)).encode())
    server.add("/moved-target.xml", good.encode())
    server.route("/moved.xml", redirect(301, server.url("/moved-target.xml")))
    server.add(
        "/feed.json",
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "J",'
        b' "items": [{"id": "j1", "url": "http://j.example/1", "title": "JSON item",'
        b' "content_text": "hello"}]}',
        content_type="application/feed+json",
    )
    names = ["good", "404", "500", "slow", "html", "big", "moved", "feed"]
    paths = [
        "/good.xml",
        "/404.xml",
        "/500.xml",
        "/slow.xml",
        "/html.xml",
        "/big.xml",
        "/moved.xml",
        "/feed.json",
    ]
    cfg = make_config(
        [(n, server.url(p)) for n, p in zip(names, paths, strict=True)],
        polling='timeout = "1s"\nmax_body = "1MiB"',
    )
    results = run_poll(cfg)
    assert results["good"].status == "ok" and results["good"].new == 1
    assert results["feed"].status == "ok" and results["feed"].new == 1
    assert results["moved"].status == "ok"
    for bad, code in (("404", 404), ("500", 500)):
        assert results[bad].status == "error" and results[bad].http_status == code
    for bad in ("slow", "html", "big"):
        assert results[bad].status == "error", results[bad]
    with store.Store(cfg.database.path) as db:
        statuses = {s.name: s for s in db.feed_statuses()}
    assert statuses["404"].last_error and statuses["404"].failures == 1
    assert statuses["404"].next_reason == "backoff"
    assert statuses["moved"].url == server.url("/moved-target.xml")
    assert statuses["moved"].config_url == server.url("/moved.xml")
    assert statuses["good"].last_error is None
    # the gzip body arrived decoded
    assert rows(cfg, "SELECT title FROM entries WHERE feed = 'good'") == [("Fine story",)]


def test_gone_feed_is_not_polled_again(server: FeedServer, make_config: Make) -> None:
    server.route("/gone.xml", status(410))
    cfg = make_config([("gone", server.url("/gone.xml"))])
    assert run_poll(cfg)["gone"].status == "gone"
    assert run_poll(cfg)["gone"].status == "gone"
    assert len(server.requests_for("/gone.xml")) == 1


def test_retention_prunes_what_left_the_feed_and_keeps_ids(
    server: FeedServer, make_config: Make
) -> None:
    """Both items are dated long ago; both were first stored 200 days ago. The one
    the feed still carries stays, the one it dropped goes, the kept story's id holds."""
    now = datetime.now(UTC)
    date = (now - timedelta(days=400)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    both = item("old", "Old story", "http://x.example/o", date) + item(
        "kept", "Kept story", "http://x.example/k", date
    )
    server.add("/f.xml", rss(both).encode())
    cfg = make_config([("f", server.url("/f.xml"))])
    run_poll(cfg, now - timedelta(days=200))
    [(uid,)] = rows(
        cfg, "SELECT s.uid FROM stories s JOIN entries e ON e.story_id = s.id WHERE e.key = 'kept'"
    )
    with store.Store(cfg.database.path) as db:
        assert (
            db.prune(now - cfg.database.keep, terms_of=dedupe.stored_terms) == {}
        )  # both still in the feed
    server.add("/f.xml", rss(item("kept", "Kept story", "http://x.example/k", date)).encode())
    run_poll(cfg, now - timedelta(days=1))
    with store.Store(cfg.database.path) as db:
        assert db.prune(now - cfg.database.keep, terms_of=dedupe.stored_terms) == {"f": 1}
    assert rows(cfg, "SELECT key FROM entries") == [("kept",)]
    assert rows(cfg, "SELECT uid FROM stories") == [(uid,)]


def test_wire_copy_from_three_outlets_is_one_story_with_stable_id(
    server: FeedServer, make_config: Make
) -> None:
    date = "Mon, 05 Jan 2026 10:00:00 GMT"
    title = "Pakistan and Russia sign agreement on Pakistan Stream gas pipeline"
    server.add("/dawn.xml", rss(item("d1", title, "http://dawn.example/1", date)).encode())
    cfg = make_config(
        [
            ("dawn", server.url("/dawn.xml")),
            ("tribune", server.url("/tribune.xml")),
            ("app", server.url("/app.xml")),
        ],
        [{"slug": "all", "title": "All"}],
    )
    server.add("/tribune.xml", rss("").encode())
    server.add("/app.xml", rss("").encode())
    run_poll(cfg)
    [(uid, link)] = rows(
        cfg, "SELECT s.uid, e.link FROM stories s JOIN entries e ON e.story_id = s.id"
    )
    later = "Mon, 05 Jan 2026 11:00:00 GMT"
    server.add(
        "/tribune.xml",
        rss(
            item(
                "t1",
                "Pakistan, Russia sign agreement on Pakistan Stream gas pipeline",
                "http://tribune.example/x",
                later,
            )
        ).encode(),
    )
    server.add(
        "/app.xml",
        rss(
            item(
                "a1",
                "Pakistan and Russia sign Pakistan Stream gas pipeline agreement",
                "http://app.example/y",
                later,
            )
        ).encode(),
    )
    results = run_poll(cfg)
    assert results["tribune"].merged == 1 and results["app"].merged == 1
    assert rows(cfg, "SELECT count(*) FROM stories") == [(1,)]
    # The id and the primary (first outlet's) link did not change when others joined.
    with store.Store(cfg.database.path) as db:
        feed = db.topic_feed("all", "All", None, "http://x", 10, {})
    [story] = feed.items
    assert (story.id, story.link) == (uid, link)
    assert {r.url for r in story.related} == {"http://tribune.example/x", "http://app.example/y"}
    assert rows(cfg, "SELECT sum(merges) FROM feeds") == [(2,)]


def test_cached_term_counts_agree_with_the_store(
    corpus_dir: Path, server: FeedServer, make_config: Make
) -> None:
    """The poller counts dedupe terms in memory as it stores entries; after a poll of
    the real corpus every cached count equals the store's, and `forget` starts over."""
    server.serve_dir("/corpus", corpus_dir)
    files = sorted(p.name for p in corpus_dir.iterdir() if p.suffix == ".xml")[:20]
    cfg = make_config([(feed_name(f), server.url(f"/corpus/{f}")) for f in files])
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    poller = poll.Poller(cfg)
    try:
        results = list(poll.poll_many(poller, cfg.feeds))
        assert sum(r.new for r in results) > 100
        cached = {t: n for t, n in poller.terms.df.items() if n}
        assert len(cached) > 500  # candidates were compared, so their terms were read
        assert poller.terms.n_docs == db.entry_count()
        # logged, not yet folded into the store's counts: the poller counts them itself
        assert poller.terms.pending_entries == poller.terms.n_docs
        assert db.document_frequencies(cached) != cached
        poller.writer.close()  # folds them in
        assert db.document_frequencies(cached) == cached
        assert not poller.terms.pending_entries
        poller.terms.forget()
        assert not poller.terms.df and poller.terms.n_docs is None
    finally:
        poller.close()
        db.close()


def _stored(cfg: config_mod.Config) -> list[tuple[object, ...]]:
    """Entries with their story's first member, in a form two databases can compare."""
    return rows(
        cfg,
        "SELECT e.feed, e.key, e.title, e.content_hash, e.sig, "
        "(SELECT f.feed || ' ' || f.key FROM entries f WHERE f.story_id = e.story_id "
        "ORDER BY f.id LIMIT 1) FROM entries e ORDER BY e.feed, e.key",
    )


def test_parse_processes_store_what_the_poll_threads_store(
    corpus_dir: Path, server: FeedServer, tmp_path: Path
) -> None:
    """Parsing in worker processes is only a matter of speed: the same corpus polled
    with `parse_processes = 0` and `= 2` stores the same entries in the same stories."""
    server.serve_dir("/corpus", corpus_dir)
    files = feed_files(corpus_dir)
    feeds = [(feed_name(f), server.url(f"/corpus/{f}")) for f in files]
    results = {}
    for n in (0, 2):
        folder = tmp_path / f"processes-{n}"
        folder.mkdir()
        # one thread: the order of polls decides which copy leads a story
        text = toml_config(feeds, polling=f"parse_processes = {n}\nconcurrency = 1")
        (folder / "aggregator.toml").write_text(text, encoding="utf-8")
        cfg = config_mod.load(folder / "aggregator.toml")
        results[n] = (run_poll(cfg), _stored(cfg))
    (threads, stored_threads), (procs, stored_procs) = results[0], results[2]
    # every entry of the shipped feeds, as their expected results count them
    expected = [json.loads((corpus_dir / f"{f}.expected.json").read_bytes()) for f in files]
    assert len(stored_threads) == sum(e["entries"] for e in expected)
    assert stored_procs == stored_threads
    assert {n: (r.status, r.error) for n, r in procs.items()} == {
        n: (r.status, r.error) for n, r in threads.items()
    }


def _die(*args: object) -> None:
    os._exit(3)


def _parse_one(pool: workers.ParsePool, title: str) -> list[str]:
    parsed, prepared, _unchanged = pool.run(
        prepare.parse_and_prepare,
        rss(item("g1", title)).encode(),
        {"content-type": "application/rss+xml"},
        "http://127.0.0.1/feed.xml",
        100,
        "f",
        datetime.now(UTC),
        {},
        pickle.dumps([]),
    )
    assert parsed.entries == ()
    return [p.entry.title for p in prepared]


def test_a_dying_parse_process_costs_one_feed_an_error() -> None:
    pool = workers.ParsePool(1)
    try:
        assert _parse_one(pool, "Wheat talks in Moscow") == ["Wheat talks in Moscow"]
        with pytest.raises(ParseError, match="parse process died"):
            pool.run(_die, b"", {}, "http://127.0.0.1/feed.xml")
        # the pool is rebuilt: the next feed is parsed as usual, in a process
        assert _parse_one(pool, "Grain deal signed") == ["Grain deal signed"]
        assert pool.processes == 1
    finally:
        pool.close()


def test_idle_parse_processes_leave_and_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = workers.ParsePool(1)
    try:
        assert pool.run(os.getpid) != os.getpid()  # in a parse process
        first = pool._pool
        assert first is not None
        assert pool.run(os.getpid, inline=True) == os.getpid()
        assert pool._pool is first  # used a moment ago: kept
        monkeypatch.setattr(workers.ParsePool, "IDLE_SECONDS", 0.0)
        assert pool.run(os.getpid, inline=True) == os.getpid()
        assert pool._pool is None  # idle past IDLE_SECONDS: let go
        assert pool.run(os.getpid) != os.getpid()  # and back for the next big feed
        assert pool._pool is not None and pool._pool is not first
        pool.close_if_idle()  # what a 304 does: no parse at all, the workers still go
        assert pool._pool is None
    finally:
        pool.close()


_STDIN_SCRIPT = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
from aggregator.ingest import workers
from aggregator.ingest import prepare
if sys.argv[2] == "threaded":  # as in the daemon: workers are spawned
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
pool = workers.ParsePool(1)
print(pool.run(sum, [1, 2, 3]), pool.processes)
pool.close()
"""


@pytest.mark.parametrize(("threads", "expected"), [("threaded", "0"), ("alone", "1")])
def test_parse_processes_that_cannot_start_fall_back_to_threads(
    threads: str, expected: str
) -> None:
    """A program read from stdin cannot be re-imported by a spawned worker: polls
    must parse in their threads, not fail. A forked worker (no other thread) needs
    no re-import and works."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-", root, threads],
        input=_STDIN_SCRIPT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["6", expected]


_FORK_SCRIPT = """
import gc, json, os, sys, threading, time
sys.path.insert(0, sys.argv[1])
from aggregator.ingest import workers

def children():
    found = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as fh:
            found += fh.read().split()
    cmd = lambda pid: open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
    return sorted(cmd(pid) for pid in found)

def main():
    report = {"me": open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode()}
    pool = workers.ParsePool(1)
    pool.start()
    report["forked"] = children()
    report["frozen"] = gc.get_freeze_count() > 0
    pool.close()
    report["thawed"] = gc.get_freeze_count() == 0
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    pool = workers.ParsePool(1)
    pool.start()
    report["spawned"] = children()
    pool.close()
    print(json.dumps(report))

if __name__ == "__main__":
    main()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks only on Linux")
def test_parse_processes_are_forked_only_from_a_single_thread(tmp_path: Path) -> None:
    """Started before any other thread, the worker is a fork of the poller (sharing
    its modules; no resource tracker beside it) and the collector leaves the shared
    objects alone until it goes. With another thread running, a fork could copy a
    held lock: the worker is a fresh interpreter."""
    script = tmp_path / "fork.py"
    script.write_text(_FORK_SCRIPT, encoding="utf-8")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, str(script), root], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["forked"] == [report["me"]]  # one child, this very program
    assert report["frozen"] and report["thawed"]
    spawned = report["spawned"]
    assert any("spawn_main" in c for c in spawned), spawned
    assert any("resource_tracker" in c for c in spawned), spawned


_ORPHAN_SCRIPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from aggregator.ingest import workers

def main():
    pool = workers.ParsePool(1)
    print(pool.run(os.getpid), flush=True)  # the worker's pid
    os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    main()
"""


def test_parse_processes_leave_when_the_poller_is_killed(tmp_path: Path) -> None:
    """kill -9 of a poll (or the daemon) must not leave its parse process behind."""
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT, encoding="utf-8")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, str(script), root], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    worker = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists(), "the parse process outlived its poller"


def test_logged_term_counts_are_read_before_they_are_folded(tmp_path: Path) -> None:
    """Counts logged but not folded are missing from the store's term_df: the poller
    adds them to what it reads, until a fold (or a start over) writes them in."""
    db = store.Store(tmp_path / "a.db")
    try:
        stats = termstats.TermStats()
        with db.write():
            stats.begin(db)
            stats.load(db, {"wheat"})
            stats.store_counts(db, {"wheat": 2, "karachi": 3}, entries=3)
        with db.write():
            stats.begin(db)
            stats.load(db, {"wheat", "karachi"})
            assert stats.df == {"wheat": 2, "karachi": 3}
            assert db.document_frequencies(["wheat", "karachi"]) == {}
            stats.MAX_TERMS = 1  # the next transaction starts over: folds first
        with db.write():
            stats.begin(db)
            assert not stats.df and not stats.pending_entries
            stats.load(db, {"wheat", "karachi"})
            assert stats.df == {"wheat": 2, "karachi": 3}
        assert db.document_frequencies(["wheat", "karachi"]) == {"wheat": 2, "karachi": 3}
    finally:
        db.close()


def test_term_counts_start_over_past_their_cap(tmp_path: Path) -> None:
    """A long-running daemon's cached counts stay bounded: past the cap they are
    dropped and read again from the store as needed."""
    db = store.Store(tmp_path / "a.db")
    try:
        stats = termstats.TermStats()
        stats.MAX_TERMS = 3
        with db.write():
            stats.begin(db)
            stats.load(db, {"wheat", "moscow", "karachi", "port"})
            stats.known.add(1)
        assert len(stats.df) == 4
        with db.write():
            stats.begin(db)
        assert not stats.df and not stats.known
    finally:
        db.close()


def test_a_rolled_back_feeds_term_counts_are_taken_back(tmp_path: Path) -> None:
    """A transaction counts each stored entry's terms as it goes (the next entry's
    candidates are weighed with them); a feed whose writes roll back takes its
    counts back, and only the kept ones are logged at the end."""
    db = store.Store(tmp_path / "a.db")
    try:
        stats = termstats.TermStats()
        with db.write():
            tx = termstats.Transaction(db, stats)
            tx.add(frozenset({"wheat", "karachi"}))
            tx.end_job(ok=True)
            tx.add(frozenset({"wheat", "port"}))
            tx.add(frozenset({"port"}))
            assert tx.counts(["wheat", "port"]) == {"wheat": 2, "port": 2}
            assert tx.n_docs() == 3
            tx.end_job(ok=False)
            assert tx.counts(["wheat", "karachi", "port"]) == {"wheat": 1, "karachi": 1, "port": 0}
            assert tx.n_docs() == 1
            tx.flush()
        (logged,) = rows_of(db, "SELECT counts FROM term_df_log")
        assert sorted(str(logged[0]).split()) == ["karachi", "wheat"]
    finally:
        db.close()


def rows_of(db: store.Store, sql: str) -> list[tuple[object, ...]]:
    return list(db.conn.execute(sql))


def test_stored_signatures_stay_decoded_across_transactions_within_a_bound() -> None:
    """A candidate's stored signature is decoded once for the poller's life, not once
    per transaction; a different stored form under the same id (the entry was
    edited, or its id reused) is decoded afresh; the first decoded make room."""
    stats = termstats.TermStats()
    stats.MAX_SIGNATURES = 2
    packed = dedupe.signature("Floods hit Karachi port", "Floods hit the port of Karachi.").pack()
    edited = dedupe.signature("Karachi port reopens", "The port reopened on Monday.").pack()
    first = termstats.Transaction(None, stats).signature(1, packed)  # type: ignore[arg-type]
    again = termstats.Transaction(None, stats).signature(1, packed)  # type: ignore[arg-type]
    assert again is first and first == dedupe.Signature.unpack(packed)
    changed = stats.signature(1, edited)
    assert changed == dedupe.Signature.unpack(edited) and changed != first
    stats.signature(2, packed)
    stats.signature(3, packed)
    assert sorted(stats.sigs) == [2, 3]
    assert termstats.Transaction(None, stats).signature(4, None) is None  # type: ignore[arg-type]


def test_a_feed_that_changed_by_a_few_items_is_parsed_in_its_poll_thread(
    server: FeedServer, make_config: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first poll of many items goes to a parse process; a later one that brings
    one new item and one edit is parsed inline, digests the body once (to choose
    where to parse and to leave out what is known), and stores exactly those two."""
    dates = [f"Mon, 05 Jan 2026 {h:02d}:00:00 GMT" for h in range(10)]
    items = [item(f"g{i}", f"Headline {i}", f"http://x.example/{i}", dates[i]) for i in range(8)]
    server.add("/f.xml", rss("".join(items)).encode())
    cfg = make_config([("f", server.url("/f.xml"))], polling="parse_processes = 1")
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    poller = poll.Poller(cfg)
    try:
        [first] = poll.poll_many(poller, cfg.feeds)
        assert (first.status, first.new) == ("ok", 8)
        assert poller.parsers._pool is not None  # eight unseen items: a parse process
        poller.parsers.close()

        items[3] = item("g3", "Headline 3, corrected", "http://x.example/3", dates[3])
        new = item("g9", "Headline 9", "http://x.example/9", dates[9])
        server.add("/f.xml", rss(new + "".join(items)).encode())
        digests: list[bytes] = []
        digested = parse.digested_items
        monkeypatch.setattr(
            parse, "digested_items", lambda body: digests.append(body) or digested(body)
        )
        [second] = poll.poll_many(poller, cfg.feeds)
        assert (second.status, second.new, second.updated) == ("ok", 1, 1)
        assert len(digests) == 1
        assert poller.parsers._pool is None  # two unseen items: parsed inline
    finally:
        poller.close()
        db.close()
    titles = {t for (t,) in rows(cfg, "SELECT title FROM entries")}
    assert len(titles) == 9
    assert {"Headline 9", "Headline 3, corrected"} <= titles
    assert "Headline 3" not in titles
