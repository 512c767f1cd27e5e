"""Concurrency: serving while polls write, and polls that overlap.

Topic feeds are served by the daemon's HTTP server on a real socket while polls (in this process and
in `aggregator poll` subprocesses) keep writing new entries: a fixed number of
requests, every one answered 200 or 304, within a generous bound, and no "database
is locked" anywhere in the logs. Two `aggregator poll` processes started together
(a cron overlap) leave one copy of every entry and a sound database, and so do
several pollers racing on the same feeds inside one process.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from aggregator import config as config_mod
from aggregator.ingest import pipeline as poll
from aggregator.publish import server, web
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import FeedServer, send, slow

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 8
REQUESTS_PER_CLIENT = 60
#: the whole load run must end within this (generous; the figure itself is in bench/)
LOAD_BOUND_S = 120.0


def rss(prefix: str, start: int, count: int) -> bytes:
    base = datetime.now(UTC) - timedelta(hours=1)
    items = "".join(
        f"<item><guid isPermaLink='false'>{prefix}-{n}</guid>"
        f"<title>{prefix} harbour crane report {n} {'xyzw'[n % 4]}{n * 7919}</title>"
        f"<link>http://{prefix}.example/{n}</link>"
        f"<description>Cranes and ships number {n} of {prefix}.</description>"
        f"<pubDate>{(base + timedelta(seconds=n)).strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate>"
        "</item>"
        for n in range(start, start + count)
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>{prefix}</title><link>http://{prefix}.example/</link>"
        f"<description>d</description>{items}</channel></rss>"
    ).encode()


def growing(prefix: str, per_request: int = 40) -> object:
    """A feed that has `per_request` new items at every request: every poll writes."""
    counter = itertools.count()
    lock = threading.Lock()

    def handler(h: BaseHTTPRequestHandler) -> None:
        with lock:
            n = next(counter)
        start = max(0, n * per_request - 200)
        send(h, 200, rss(prefix, start, n * per_request + per_request - start))

    return handler


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[_Collect]:
    """Every log record of every logger (waitress, flask, aggregator) during the test."""
    handler = _Collect()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def test_serving_never_fails_while_polls_write(tmp_path: Path, collected: _Collect) -> None:
    with FeedServer() as feeds:
        names = [f"o{n}" for n in range(4)]
        for name in names:
            feeds.route(f"/{name}", growing(name))  # type: ignore[arg-type]
        path = tmp_path / "aggregator.toml"
        path.write_text(
            toml_config(
                [(name, feeds.url(f"/{name}")) for name in names],
                [
                    {"slug": "all", "title": "All"},
                    {"slug": "cranes", "title": "Cranes", "query": "crane* AND harbour"},
                ],
                polling="concurrency = 4",
            ),
            encoding="utf-8",
        )
        cfg = config_mod.load(path)
        with store.Store(cfg.database.path) as db:
            poll.sync(cfg, db)
        http = server.make_server(web.create_app(cfg), "127.0.0.1", 0, threads=8)
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{http.address[1]}"
        stop = threading.Event()
        polls: list[int] = []
        bad_results: list[object] = []
        subprocess_output: list[str] = []

        def poll_in_process() -> None:
            poller = poll.Poller(cfg)
            try:
                while not stop.is_set():
                    for result in poll.poll_many(poller, cfg.feeds):
                        if result.status != "ok":
                            bad_results.append(result)
                    polls.append(1)
            finally:
                poller.close()

        def poll_in_subprocesses() -> None:
            while not stop.is_set():
                done = subprocess.run(
                    [sys.executable, "-m", "aggregator", "--config", str(path), "poll"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                subprocess_output.append(f"exit {done.returncode}\n{done.stdout}{done.stderr}")

        def client(n: int) -> list[tuple[str, int]]:
            paths = ["/topics/all.atom", "/topics/all.rss", "/topics/cranes.json", "/", "/healthz"]
            seen: list[tuple[str, int]] = []
            etags: dict[str, str] = {}
            with requests.Session() as s:
                # At least REQUESTS_PER_CLIENT, and on until both kinds of poll have
                # written (a fast server must not finish before the writers get going).
                for i in itertools.count():
                    if i >= REQUESTS_PER_CLIENT and (
                        writes_done() or time.monotonic() - started > LOAD_BOUND_S / 2
                    ):
                        break
                    p = paths[(n + i) % len(paths)]
                    headers = {"If-None-Match": etags[p]} if p in etags and i % 2 else {}
                    try:
                        r = s.get(base + p, headers=headers, timeout=30)
                    except requests.RequestException as e:
                        seen.append((f"{p} {type(e).__name__}", 0))
                        continue
                    if r.headers.get("ETag"):
                        etags[p] = r.headers["ETag"]
                    if p == "/healthz" and r.status_code == 503:
                        # a true answer until the first poll has stored a success
                        seen.append((f"{p} {r.json()['reason']}", r.status_code))
                        continue
                    seen.append((p, r.status_code))
            return seen

        def writes_done() -> bool:
            # three in-process rounds: every feed fetched (and 40 items written) 3+ times
            return len(polls) >= 3 and bool(subprocess_output)

        writers = [
            threading.Thread(target=poll_in_process, daemon=True),
            threading.Thread(target=poll_in_subprocesses, daemon=True),
        ]
        started = time.monotonic()
        try:
            for w in writers:
                w.start()
            time.sleep(0.5)  # let the first writes begin
            with ThreadPoolExecutor(CLIENTS) as pool:
                answers = list(itertools.chain.from_iterable(pool.map(client, range(CLIENTS))))
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            for w in writers:
                w.join(timeout=120)
            http.close()
            thread.join(timeout=5)

    assert len(answers) >= CLIENTS * REQUESTS_PER_CLIENT
    failed = [
        a for a in answers if a[1] not in (200, 304) and a != (f"/healthz {web.NEVER_FETCHED}", 503)
    ]
    assert failed == [], failed[:10]
    assert elapsed < LOAD_BOUND_S
    assert polls, "the in-process poller completed at least one round while serving"
    assert bad_results == []
    assert subprocess_output, "a subprocess poll ran while serving"
    for out in subprocess_output:
        assert out.startswith("exit 0"), out
        assert "database is locked" not in out.lower(), out
        assert "Traceback" not in out, out
    locked = [r.getMessage() for r in collected.records if "locked" in r.getMessage().lower()]
    assert locked == []
    errors = [r.getMessage() for r in collected.records if r.levelno >= logging.ERROR]
    assert errors == []
    # The polls really wrote while requests were served.
    with store.Store(cfg.database.path) as db:
        assert sum(s.entries for s in db.feed_statuses()) > 4 * 80


def test_two_polls_started_at_once_neither_corrupt_nor_double_insert(tmp_path: Path) -> None:
    with FeedServer() as feeds:
        # Slow answers make the two runs overlap for certain.
        for n in range(3):
            feeds.route(f"/s{n}", slow(1.5, rss(f"s{n}", 0, 300)))
        path = tmp_path / "aggregator.toml"
        path.write_text(
            toml_config(
                [(f"s{n}", feeds.url(f"/s{n}")) for n in range(3)],
                [{"slug": "all", "title": "All"}],
            ),
            encoding="utf-8",
        )
        command = [sys.executable, "-m", "aggregator", "--config", str(path), "poll"]
        procs = [
            subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out + err
        assert "Traceback" not in err and "locked" not in err.lower(), err
    # One of them said it waited for the other.
    assert any("another poll is running" in err for _, err in outputs), outputs
    conn = sqlite3.connect(tmp_path / "aggregator.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 900
        assert conn.execute("SELECT count(DISTINCT feed || key) FROM entries").fetchone()[0] == 900
        # No story minted twice for one entry, and none left without an entry.
        stories = conn.execute("SELECT count(*) FROM stories").fetchone()[0]
        used = conn.execute("SELECT count(DISTINCT story_id) FROM entries").fetchone()[0]
        assert stories == used
        in_topic = conn.execute("SELECT count(*) FROM topic_stories").fetchone()[0]
        assert in_topic == stories
    finally:
        conn.close()


def test_pollers_racing_on_the_same_feeds_store_each_entry_once(
    tmp_path: Path, collected: _Collect
) -> None:
    """Four pollers in one process (no lock between them) poll the same feeds at once:
    the store's write transactions alone must keep every entry single."""
    with FeedServer() as feeds:
        for n in range(3):
            feeds.route(f"/r{n}", slow(0.3, rss(f"r{n}", 0, 200)))
        path = tmp_path / "aggregator.toml"
        path.write_text(
            toml_config(
                [(f"r{n}", feeds.url(f"/r{n}")) for n in range(3)],
                [{"slug": "all", "title": "All"}],
            ),
            encoding="utf-8",
        )
        cfg = config_mod.load(path)
        with store.Store(cfg.database.path) as db:
            poll.sync(cfg, db)
        barrier = threading.Barrier(4)

        def race() -> list[str]:
            poller = poll.Poller(cfg)
            try:
                barrier.wait()
                return [r.status for r in poll.poll_many(poller, cfg.feeds)]
            finally:
                poller.close()

        with ThreadPoolExecutor(4) as pool:
            statuses = list(itertools.chain.from_iterable(pool.map(lambda _: race(), range(4))))
    assert statuses.count("ok") == 12, statuses
    conn = sqlite3.connect(cfg.database.path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 600
        stories = conn.execute("SELECT count(*) FROM stories").fetchone()[0]
        assert stories == conn.execute("SELECT count(DISTINCT story_id) FROM entries").fetchone()[0]
    finally:
        conn.close()
    assert not [r for r in collected.records if "locked" in r.getMessage().lower()]
