"""SIGHUP re-reads the config: a real `aggregator run` process, a local feed server,
the config file edited on disk, the answer read over HTTP and in the log."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from aggregator import config as config_mod
from aggregator import reload
from tests.conftest import toml_config
from tests.feedserver import FeedServer, free_port

ROOT = Path(__file__).resolve().parents[1]
FAST = 'interval = "1s"\nmin_interval = "1s"\nmax_interval = "1h"'


def rss(name: str, *titles: str) -> bytes:
    items = "".join(
        f"<item><title>{t}</title><link>http://{name}.example/{i}</link>"
        f"<guid>http://{name}.example/{i}</guid>"
        "<pubDate>Mon, 05 Jan 2026 10:00:00 GMT</pubDate>"
        f"<description>{t}.</description></item>"
        for i, t in enumerate(titles)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{name}</title>'
        f"<link>http://{name}.example/</link><description>d</description>{items}</channel></rss>"
    ).encode()


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@contextmanager
def running(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(config), "run"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_sighup_applies_a_new_config_and_keeps_the_old_one_on_a_mistake(
    tmp_path: Path,
) -> None:
    with FeedServer() as server:
        server.add("/dawn.xml", rss("dawn", "Pakistan and Russia sign a pipeline deal"))
        server.add("/tass.xml", rss("tass", "Pakistan hosts trade fair"))
        server.add("/geo.xml", rss("geo", "Russia sends envoy to Karachi"))
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        def config_text(feeds: list[tuple[str, str]], topics: list[dict[str, object]]) -> str:
            text = toml_config(feeds, topics, polling=FAST, base_url=base)
            return text.replace("[server]\n", f"[server]\nport = {port}\n", 1)

        path = tmp_path / "aggregator.toml"
        log = tmp_path / "run.log"
        path.write_text(
            config_text(
                [("dawn", server.url("/dawn.xml")), ("tass", server.url("/tass.xml"))],
                [{"slug": "pakistan", "query": "pakistan"}],
            ),
            encoding="utf-8",
        )
        with running(path, log) as proc:
            assert wait_for(lambda: bool(server.requests_for("/tass.xml")), 20), log.read_text()
            assert wait_for(lambda: "serving on" in log.read_text(), 10)
            # dawn's story is stored before the reload (the first polls are spread out):
            # the new topic must find it among the stored entries
            assert wait_for(
                lambda: (
                    "pipeline deal" in requests.get(f"{base}/topics/pakistan.json", timeout=5).text
                ),
                20,
            ), log.read_text()
            started = log.read_text()
            assert "polling 2 feeds, 1 topics" in started, started
            assert requests.get(f"{base}/topics/russia.atom", timeout=5).status_code == 404

            # tass out, geo in, a new topic, and a new port that needs a restart
            new = config_text(
                [("dawn", server.url("/dawn.xml")), ("geo", server.url("/geo.xml"))],
                [{"slug": "pakistan", "query": "pakistan"}, {"slug": "russia", "query": "russia"}],
            )
            path.write_text(new.replace(f"port = {port}", f"port = {free_port()}"), "utf-8")
            proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: "config reloaded:" in log.read_text(), 30), log.read_text()
            tass_polls = len(server.requests_for("/tass.xml"))
            [line] = [x for x in log.read_text().splitlines() if "config reloaded:" in x]
            assert "feeds +1 -1 ~0, topics +1 -0 ~0" in line, line
            assert "restart needed for server.port" in line, line
            assert proc.poll() is None, "SIGHUP must not stop the daemon"

            assert wait_for(lambda: bool(server.requests_for("/geo.xml")), 20), log.read_text()

            # the new topic holds the stored dawn story and the newly polled geo one
            def russia_titles() -> str:
                return requests.get(f"{base}/topics/russia.json", timeout=5).text

            assert wait_for(lambda: "Russia sends envoy" in russia_titles(), 20)
            for fmt in ("atom", "rss", "json"):
                body = requests.get(f"{base}/topics/russia.{fmt}", timeout=5).text
                assert "Pakistan and Russia sign a pipeline deal" in body, fmt
                assert "Russia sends envoy to Karachi" in body, fmt
                assert "Pakistan hosts trade fair" not in body, fmt
            # the removed feed is no longer polled while the others go on
            dawn_polls = len(server.requests_for("/dawn.xml"))
            assert wait_for(lambda: len(server.requests_for("/dawn.xml")) >= dawn_polls + 3, 20)
            assert len(server.requests_for("/tass.xml")) == tass_polls

            # a mistake: logged with file, line, key and problem; the daemon goes on
            broken = new.replace('interval = "1s"', 'interval = "often"')
            path.write_text(broken, encoding="utf-8")
            proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: "config reload failed" in log.read_text(), 30)
            [failed] = [x for x in log.read_text().splitlines() if "config reload failed" in x]
            line_no = broken.splitlines().index('interval = "often"') + 1
            assert f"{path}:{line_no}: polling.interval:" in failed, failed
            assert proc.poll() is None
            geo_polls = len(server.requests_for("/geo.xml"))
            assert wait_for(lambda: len(server.requests_for("/geo.xml")) >= geo_polls + 2, 20)
            assert requests.get(f"{base}/topics/russia.rss", timeout=5).status_code == 200
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, log.read_text()


def test_compare_names_what_changed_and_what_waits_for_a_restart(tmp_path: Path) -> None:
    def load(text: str) -> config_mod.Config:
        path = tmp_path / "aggregator.toml"
        path.write_text(text, encoding="utf-8")
        return config_mod.load(path)

    feeds = [("a", "http://127.0.0.1:1/a"), ("b", "http://127.0.0.1:1/b")]
    before = load(toml_config(feeds, [{"slug": "t", "query": "x"}, {"slug": "u"}]))
    after = load(
        toml_config(
            [("a", "http://127.0.0.1:1/a2"), ("c", "http://127.0.0.1:1/c")],
            [{"slug": "t", "query": "y"}],
            polling='timeout = "9s"',
        ).replace("[server]\n", "[server]\nport = 9999\n")
    )
    changes = reload.compare(before, after)
    assert changes.summary() == (
        "feeds +1 -1 ~1, topics +0 -1 ~1 (feeds +c -b ~a) (topics -u ~t); "
        "changed polling.timeout; restart needed for server.port"
    )
    kept = reload.effective(before, after)
    assert kept.server.port == before.server.port and kept.polling.timeout == after.polling.timeout
    # a feed whose interval comes from [polling] changes with it
    slower = load(toml_config(feeds, [{"slug": "t", "query": "x"}, {"slug": "u"}], polling=FAST))
    assert reload.compare(before, slower).feeds_changed == ("a", "b")
    assert not reload.compare(before, before).any
