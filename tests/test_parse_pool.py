"""The parse process pool lets go of its workers only when idle, and an
`aggregator poll` ends with a clean stderr.

A pool started ahead of a first fetch (`ParsePool.start`, forked before the poll
threads) was taken for idle since the clock's epoch: the first feed that answered
304 or was parsed inline shut it down without waiting. When the poll then ended,
the interpreter's exit hook of concurrent.futures woke that pool's manager thread
through a pipe the thread was closing: "Exception ignored in: <module 'threading'>
... OSError: [Errno 9] Bad file descriptor" on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aggregator.ingest.pipeline import ParsePool
from tests.conftest import toml_config
from tests.feedserver import FeedServer


def rss(name: str, items: int) -> bytes:
    body = "".join(
        f"<item><guid>{name}-{n}</guid><title>Story {n} from {name}</title>"
        f"<link>http://{name}.example/{n}</link>"
        f"<pubDate>Mon, 02 Mar 2026 {n % 24:02d}:00:00 GMT</pubDate>"
        f"<description>Text of story {n}.</description></item>"
        for n in range(items)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{name}</title>'
        f"<link>http://{name}.example/</link><description>d</description>{body}</channel></rss>"
    ).encode()


def test_a_started_pool_is_not_idle() -> None:
    pool = ParsePool(1)
    pool.start()
    try:
        pool.close_if_idle()  # what the first 304 of the poll does
        assert pool._pool is not None
        assert pool.run(int, "7") == 7
    finally:
        pool.close()


#: `aggregator poll` with one more exit hook, run just before concurrent.futures' own
#: (threading runs them last registered first): it says when a pool is still shutting
#: down at exit, the condition in which that hook's wake-up races the pool's own
#: closing. The race itself is a few instructions wide; the condition is not.
ENTRY = """
import sys
import threading

import concurrent.futures.process as futures_process


def pools_still_stopping():
    alive = [t.name for t in list(futures_process._threads_wakeups) if t.is_alive()]
    if alive:
        print("process pools still shutting down at exit:", alive, file=sys.stderr)


if __name__ == "__main__":
    threading._register_atexit(pools_still_stopping)
    from aggregator.cli import cli

    cli(prog_name="aggregator")
"""


def test_poll_stderr_is_clean_when_new_feeds_join_known_ones(tmp_path: Path) -> None:
    # Each round adds a feed never fetched (so the pool is started ahead of the poll
    # threads) beside feeds that answer 304, and it is small enough to parse inline.
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    config = tmp_path / "aggregator.toml"
    topics = [{"slug": "all", "title": "All"}]
    with FeedServer() as server:
        for n in range(3):
            server.add(f"/known-{n}.xml", rss(f"known{n}", 40))
        feeds = [(f"known-{n}", server.url(f"/known-{n}.xml")) for n in range(3)]
        dirty = []
        for round_ in range(12):
            server.add(f"/new-{round_}.xml", rss(f"new{round_}", 3))
            feeds.append((f"new-{round_}", server.url(f"/new-{round_}.xml")))
            config.write_text(toml_config(feeds, topics, polling="parse_processes = 8"))
            done = subprocess.run(
                [sys.executable, str(entry), "--config", str(config), "--log-level", "warning",
                 "poll"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=tmp_path,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert "total: " in done.stdout
            if done.stderr.strip():
                dirty.append(done.stderr)
    assert not dirty, dirty[0]


def _count_parses_here(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one for each parse run in this process (a parse process
    is handed the function by name and runs the real one)."""
    from aggregator.ingest import prepare

    real = prepare.parse_and_prepare
    here: list[int] = []

    def parse_and_prepare(*args: Any) -> Any:
        here.append(os.getpid())
        return real(*args)

    parse_and_prepare.__module__ = prepare.__name__
    parse_and_prepare.__qualname__ = "parse_and_prepare"
    monkeypatch.setattr(prepare, "parse_and_prepare", parse_and_prepare)
    return here


def test_a_poll_of_many_feeds_parses_their_few_new_items_beside_the_poll_threads(
    tmp_path: Path, make_config: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polling more feeds than it has poll threads, each bringing one new item, the
    poller parses them in its parse process: the poll threads and the writer share
    a core, the process has the other. One feed alone is parsed in its poll thread."""
    from aggregator.ingest import pipeline as poll
    from aggregator.storage import store

    with FeedServer() as server:
        for n in range(6):
            server.add(f"/f{n}.xml", rss(f"f{n}", 10))
        feeds = [(f"f{n}", server.url(f"/f{n}.xml")) for n in range(6)]
        cfg = make_config(feeds, polling="concurrency = 2\nparse_processes = 1")
        db = store.Store(cfg.database.path)
        poll.sync(cfg, db)
        poller = poll.Poller(cfg)
        try:
            assert sum(r.new + r.merged for r in poll.poll_many(poller, cfg.feeds)) == 60
            poller.parsers.close()
            here = _count_parses_here(monkeypatch)
            for n in range(6):
                server.add(f"/f{n}.xml", rss(f"f{n}", 11))  # one item more each
            assert sum(r.new + r.merged for r in poll.poll_many(poller, cfg.feeds)) == 6
            in_batch = len(here)
            poller.parsers.close()
            server.add("/f0.xml", rss("f0", 12))
            [alone] = poll.poll_many(poller, cfg.feeds[:1])
            assert alone.new + alone.merged == 1
            alone_here = len(here) - in_batch
        finally:
            poller.close()
            db.close()
    assert in_batch == 0  # all six in the parse process
    assert alone_here == 1


def test_a_poll_of_many_feeds_that_all_answer_304_loads_no_parser(tmp_path: Path) -> None:
    """The parse process a poll of many feeds starts is forked before anything is
    parsed, so a poll whose feeds all answer 304 still loads no parse stage."""
    from tests.test_cli import POLL_REPORTING_MODULES

    config = tmp_path / "aggregator.toml"
    with FeedServer() as server:
        for n in range(6):
            server.add(f"/f{n}.xml", rss(f"f{n}", 10))
        feeds = [(f"f{n}", server.url(f"/f{n}.xml")) for n in range(6)]
        config.write_text(
            toml_config(feeds, [{"slug": "all", "title": "All"}], polling="concurrency = 2")
        )

        def poll() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-c", POLL_REPORTING_MODULES, "--config", str(config), "poll"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=tmp_path,
            )

        first, second = poll(), poll()
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "new=10" in first.stdout and "not_modified" in second.stdout
    assert second.stderr.splitlines()[-1] == "loaded:"
