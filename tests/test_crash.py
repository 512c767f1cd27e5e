"""Crashes: `kill -9` in the middle of a poll, and SIGTERM on the daemon.

A first poll publishes stories; their ids are read from the topic feed itself
(`aggregator export`). Then a much larger poll is killed with SIGKILL at several
moments while it writes (and while another outlet trickles). After each kill the
database passes `PRAGMA integrity_check`, every story published before is still in
the topic feed with the same id and link, and every feed holds either all of that
poll's entries or none of them (one transaction per feed). A final poll completes
what was interrupted.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.conftest import toml_config
from tests.feedserver import FeedServer, content, free_port, trickle

ROOT = Path(__file__).resolve().parents[1]
FEEDS = 8
OLD = 20
NEW = 1000


def words(feed: int, n: int, count: int) -> str:
    """Made-up words unique to one story, so that dedupe never joins two of them."""
    digest = hashlib.sha256(f"{feed}/{n}".encode()).hexdigest()
    letters = digest.translate(str.maketrans("0123456789", "ghijklmnop"))
    return " ".join(letters[i : i + 6] for i in range(0, 6 * count, 6))


def rss(feed: int, count: int) -> bytes:
    base = datetime.now(UTC) - timedelta(days=1)
    items = "".join(
        f"<item><guid isPermaLink='false'>f{feed}-{n}</guid>"
        f"<title>{words(feed, n, 5)}</title>"
        f"<link>http://outlet{feed}.example/{n}</link>"
        f"<description>{(words(feed, n, 10) + ' ') * 8}</description>"
        f"<pubDate>{(base + timedelta(seconds=n)).strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate>"
        "</item>"
        for n in range(count)
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>Outlet {feed}</title><link>http://outlet{feed}.example/</link>"
        f"<description>d</description>{items}</channel></rss>"
    ).encode()


def aggregator(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def published(config: Path) -> dict[str, str | None]:
    """id -> link of every story in the topic feed, as `aggregator export` prints it."""
    done = aggregator(config, "export", "all", "--format", "json", "--limit", "10000")
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)["items"]
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)), "a story id appears twice in the topic feed"
    return {i["id"]: i.get("url") for i in items}


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def per_feed(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT feed, count(*) FROM entries GROUP BY feed").fetchall())
    finally:
        conn.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[FeedServer, Path]]:
    with FeedServer() as server:
        for f in range(FEEDS):
            server.route(f"/f{f}", content(rss(f, OLD)))
        server.route("/slow", trickle(rss(99, 1), interval=0.01))
        feeds: list[dict[str, object]] = [
            {"name": f"f{f}", "url": server.url(f"/f{f}")} for f in range(FEEDS)
        ]
        feeds.append({"name": "slow", "url": server.url("/slow")})
        path = tmp_path / "aggregator.toml"
        path.write_text(
            toml_config(
                feeds,
                [{"slug": "all", "title": "All", "limit": 1000}],
                polling='timeout = "30s"\nconcurrency = 4',
            ),
            encoding="utf-8",
        )
        yield server, path


def start_poll(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(config), "poll"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("kill_after", [1.0, 2.5])
def test_kill_9_mid_poll_loses_nothing_published(
    site: tuple[FeedServer, Path], tmp_path: Path, kill_after: float
) -> None:
    server, config = site
    db = tmp_path / "aggregator.db"
    first = aggregator(config, "poll")
    assert first.returncode == 0, first.stdout + first.stderr
    before = published(config)
    assert len(before) >= FEEDS * OLD * 0.5, "the first poll published stories"
    counts_before = per_feed(db)

    # Every outlet now carries 1,000 new items: a poll that writes for a while.
    for f in range(FEEDS):
        server.route(f"/f{f}", content(rss(f, OLD + NEW)))
    proc = start_poll(config, tmp_path / "killed.out")
    try:
        time.sleep(kill_after)
        assert proc.poll() is None, "the poll ended before it could be killed; raise NEW"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    assert integrity(db) == "ok"
    after_kill = published(config)
    for story_id, link in before.items():
        assert after_kill.get(story_id, "missing") == link, story_id
    counts = per_feed(db)
    for f in range(FEEDS):
        # One transaction per feed: all of this poll's entries, or none.
        assert counts[f"f{f}"] in (counts_before[f"f{f}"], OLD + NEW), (f, counts)

    final = aggregator(config, "poll")
    assert final.returncode == 0, final.stdout + final.stderr
    assert integrity(db) == "ok"
    assert all(per_feed(db)[f"f{f}"] == OLD + NEW for f in range(FEEDS))
    after = published(config)
    for story_id, link in before.items():
        assert after.get(story_id, "missing") == link, story_id


def test_sigterm_stops_run_cleanly_while_it_writes_and_serves(
    site: tuple[FeedServer, Path], tmp_path: Path
) -> None:
    server, config = site
    for f in range(FEEDS):
        server.route(f"/f{f}", content(rss(f, NEW)))
    port = free_port()
    text = config.read_text(encoding="utf-8")
    text = text.replace("[server]\n", f"[server]\nport = {port}\n", 1)
    text = text.replace(
        'base_url = "http://127.0.0.1:8080"', f'base_url = "http://127.0.0.1:{port}"'
    )
    config.write_text(text, encoding="utf-8")
    log = tmp_path / "run.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(config), "run"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        served = 0
        while time.monotonic() < deadline and served < 5:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/topics/all.json", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.1)
                continue
            assert r.status_code == 200
            served += 1
        assert served == 5, log.read_text(errors="replace")
        # Writes are under way (or done) when the signal arrives.
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert "Traceback" not in output, output
    assert integrity(tmp_path / "aggregator.db") == "ok"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
