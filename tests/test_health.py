"""`/healthz` over a real socket tells the truth: 503 with a reason when no feed was
ever fetched, or when every feed is failing; 200 while some feed works."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from aggregator import config as config_mod
from aggregator import daemon
from aggregator.publish import web
from tests.conftest import toml_config
from tests.feedserver import FeedServer, free_port, status

ROOT = Path(__file__).resolve().parents[1]
FAST = 'interval = "1s"\nmin_interval = "1s"\nmax_interval = "4s"'
DEADLINE_S = 30.0


def rss(guid: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>T</title><link>http://example.org/</link><description>d</description>"
        f'<item><title>Story {guid}</title><guid isPermaLink="false">{guid}</guid>'
        f"<link>http://example.org/{guid}</link>"
        "<pubDate>Thu, 26 Nov 2026 10:00:00 GMT</pubDate>"
        f"<description>About {guid}</description></item></channel></rss>"
    ).encode()


def write_config(folder: Path, feeds: list[dict[str, object]], port: int) -> Path:
    text = toml_config(feeds, [{"slug": "all", "title": "All"}], polling=FAST)
    text = text.replace("[server]\n", f"[server]\nport = {port}\n", 1)
    path = folder / "aggregator.toml"
    path.write_text(text, encoding="utf-8")
    return path


def health_until(
    port: int, done: Callable[[int, dict[str, Any]], bool]
) -> tuple[int, dict[str, Any]]:
    """GET /healthz until `done(status, body)` (or the deadline); the last answer."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            resp = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        except requests.ConnectionError:  # not listening yet
            code, body = 0, {}
        else:
            code, body = resp.status_code, resp.json()
        if (code and done(code, body)) or time.monotonic() > deadline:
            return code, body
        time.sleep(0.1)


def test_no_feed_ever_fetched_is_503_from_a_running_daemon(tmp_path: Path) -> None:
    """`aggregator run` with every feed at a closed local port: the feeds were polled
    and all failed, nothing was ever fetched, and /healthz says so."""
    closed = free_port()
    feeds: list[dict[str, object]] = [
        {"name": n, "url": f"http://127.0.0.1:{closed}/{n}.xml", "allow_private": True}
        for n in ("dawn", "tass")
    ]
    port = free_port()
    cfg = write_config(tmp_path, feeds, port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(cfg), "run"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        code, body = health_until(port, lambda c, b: len(b["feeds_failing"]) == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")
    assert code == 503, body
    assert body["ok"] is False
    assert body["reason"] == web.NEVER_FETCHED == "no feed has been fetched successfully yet"
    assert body["last_success"] is None and body["last_poll"] is not None
    assert sorted(f["feed"] for f in body["feeds_failing"]) == ["dawn", "tass"]
    assert body["feeds"] == 2 and body["feeds_gone"] == []


def test_every_feed_failing_after_success_is_503_and_one_recovering_is_200(
    tmp_path: Path,
) -> None:
    with FeedServer() as feeds_server:
        for n in ("dawn", "tass"):
            feeds_server.add(f"/{n}.xml", rss(n))
        feeds: list[dict[str, object]] = [
            {"name": n, "url": feeds_server.url(f"/{n}.xml")} for n in ("dawn", "tass")
        ]
        port = free_port()
        d = daemon.Daemon(config_mod.load(write_config(tmp_path, feeds, port)))
        d.start()
        try:
            # both fetched: healthy
            code, body = health_until(
                port, lambda c, b: c == 200 and not b["feeds_failing"] and b["last_success"]
            )
            assert code == 200 and body["ok"] is True and body["reason"] is None, body

            # then both fail: the earlier successes do not make it healthy
            for n in ("dawn", "tass"):
                feeds_server.route(f"/{n}.xml", status(500))
            code, body = health_until(port, lambda c, b: len(b["feeds_failing"]) == 2)
            assert code == 503, body
            assert body["ok"] is False
            assert body["reason"] == web.ALL_FAILING == "every feed is failing"
            assert body["last_success"] is not None
            assert {f["status"] for f in body["feeds_failing"]} == {500}

            # one recovers: polling works again, and the other is still named
            feeds_server.remove("/dawn.xml")
            feeds_server.add("/dawn.xml", rss("dawn-2"))
            code, body = health_until(port, lambda c, b: len(b["feeds_failing"]) == 1)
            assert code == 200, body
            assert body["ok"] is True and body["reason"] is None
            assert [f["feed"] for f in body["feeds_failing"]] == ["tass"]
        finally:
            d.stop()
