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

import subprocess
import sys
from pathlib import Path

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
