"""The real daemon against a recording server: what every outlet sees from us, over time.

Each test runs `Daemon` (the scheduler `aggregator run` uses) with second-scale
intervals for a bounded few seconds against `FeedServer`, then reads the server's
request log and the SQLite file. Assertions are about the order and spacing of
requests the schedule allows (never earlier than a rule permits, gaps that grow),
not about how fast anything ran.
"""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from aggregator import cli, config, daemon
from aggregator.ingest import pipeline as poll
from aggregator.ingest import schedule
from aggregator.publish import web
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import (
    FeedServer,
    Handler,
    RecordedRequest,
    free_port,
    redirect,
    slow,
    status,
    trickle,
)

ROOT = Path(__file__).resolve().parents[1]

#: a polling table for second-scale runs; the bounds admit a 1s interval
FAST = 'interval = "1s"\nmin_interval = "1s"\nmax_interval = "1h"'

#: how long the shared run lasts: room for four backoff steps of a 1s interval
MIXED_RUN_SECONDS = 7.5

#: clock tolerance between the scheduler's wall clock and the server's monotonic one
SLACK = 0.05


def rss(guid: str, title: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>T</title><link>http://example.org/</link><description>d</description>"
        f'<item><title>{title}</title><guid isPermaLink="false">{guid}</guid>'
        f"<link>http://example.org/{guid}</link>"
        "<pubDate>Thu, 26 Nov 2026 10:00:00 GMT</pubDate>"
        f"<description>About {title}</description></item></channel></rss>"
    ).encode()


def write_config(
    folder: Path, feeds: Sequence[tuple[str, str] | Mapping[str, object]], **kwargs: str
) -> config.Config:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "aggregator.toml"
    path.write_text(toml_config(feeds, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return config.load(path)


def run_for(cfg: config.Config, seconds: float) -> daemon.Daemon:
    """Start the daemon, let it poll for `seconds`, stop it; the stopped daemon."""
    d = daemon.Daemon(cfg, serve=False)
    d.start()
    try:
        time.sleep(seconds)
    finally:
        d.stop()
    return d


def gaps(reqs: list[RecordedRequest]) -> list[float]:
    return [b.time - a.time for a, b in zip(reqs, reqs[1:], strict=False)]


def feed_row(cfg: config.Config, name: str) -> sqlite3.Row:
    conn = sqlite3.connect(cfg.database.path)
    conn.row_factory = sqlite3.Row
    try:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM feeds WHERE name = ?", (name,)
        ).fetchone()
    finally:
        conn.close()
    assert row is not None, name
    return row


def unavailable_for(seconds: int) -> Handler:
    """503 with Retry-After as an HTTP date at least `seconds` ahead (whole seconds)."""

    def handler(h: BaseHTTPRequestHandler) -> None:
        until = formatdate(math.ceil(time.time()) + seconds, usegmt=True)
        status(503, {"Retry-After": until})(h)

    return handler


# -- one run, several outlets: 410, 429, 500, 301 and a polite 304 ---------------------------


@dataclass
class MixedRun:
    server: FeedServer
    cfg: config.Config
    daemon: daemon.Daemon
    #: writes to entries and stories after the schema existed, as (table, op) rows
    content_writes: list[tuple[str, str]]


ENTRY_TRIGGERS = "CREATE TABLE content_writes (tbl TEXT, op TEXT);\n" + "".join(
    f"CREATE TRIGGER {table}_{op} AFTER {op} ON {table} BEGIN "
    f"INSERT INTO content_writes VALUES ('{table}', '{op.lower()}'); END;\n"
    for table in ("entries", "stories")
    for op in ("INSERT", "UPDATE", "DELETE")
)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedRun]:
    with FeedServer() as server:
        server.route("/gone", status(410))
        server.route("/limited", status(429, {"Retry-After": "3"}))
        server.route("/failing", status(500))
        server.route("/unavailable", unavailable_for(3))
        server.route("/old", redirect(301, server.url("/new")))
        server.add("/new", rss("moved-1", "Karachi port opens a terminal"))
        server.add("/polite", rss("polite-1", "Moscow hosts a trade summit"))
        cfg = write_config(
            tmp_path_factory.mktemp("mixed"),
            [
                ("gone", server.url("/gone")),
                ("limited", server.url("/limited")),
                ("failing", server.url("/failing")),
                ("unavailable", server.url("/unavailable")),
                ("moved", server.url("/old")),
                ("polite", server.url("/polite")),
            ],
            polling=FAST,
        )
        # Triggers count every content write the daemon makes (a real SQLite file,
        # observed from inside): 304s must add none.
        store.Store(cfg.database.path).close()
        conn = sqlite3.connect(cfg.database.path)
        conn.executescript(ENTRY_TRIGGERS)
        conn.close()
        d = run_for(cfg, MIXED_RUN_SECONDS)
        conn = sqlite3.connect(cfg.database.path)
        writes = conn.execute("SELECT tbl, op FROM content_writes").fetchall()
        conn.close()
        yield MixedRun(server, cfg, d, writes)


def test_the_run_polled_a_healthy_feed_every_second(mixed: MixedRun) -> None:
    """The baseline the other assertions rely on: the daemon really polled all along."""
    polite = mixed.server.requests_for("/polite")
    assert len(polite) >= MIXED_RUN_SECONDS // 2
    assert all(g >= 1.0 - SLACK for g in gaps(polite))


def test_410_gets_no_request_after_it(mixed: MixedRun) -> None:
    assert len(mixed.server.requests_for("/gone")) == 1
    row = feed_row(mixed.cfg, "gone")
    assert row["gone"] == 1 and row["next_reason"] == "gone"
    assert mixed.daemon.scheduler.get_job("feed:gone") is None


def test_410_stays_unpolled_across_a_restart(mixed: MixedRun) -> None:
    before = len(mixed.server.requests_for("/gone"))
    polite = len(mixed.server.requests_for("/polite"))
    d = daemon.Daemon(mixed.cfg, serve=False)
    d.start()
    try:
        assert d.scheduler.get_job("feed:gone") is None
        time.sleep(1.5)
    finally:
        d.stop()
    assert len(mixed.server.requests_for("/gone")) == before
    # the other feeds are polled as usual (a job that is running is not in the
    # scheduler's list, so the requests are the evidence, not get_job)
    assert len(mixed.server.requests_for("/polite")) > polite


def test_429_retry_after_gets_no_request_before_it(mixed: MixedRun) -> None:
    limited = mixed.server.requests_for("/limited")
    assert len(limited) >= 2, "the run must cover at least one Retry-After wait"
    for gap in gaps(limited):
        assert gap >= 3.0 - SLACK
    row = feed_row(mixed.cfg, "limited")
    assert row["next_reason"] == "retry-after"
    assert row["failures"] == len(limited)


def test_503_retry_after_as_an_http_date(mixed: MixedRun) -> None:
    reqs = mixed.server.requests_for("/unavailable")
    assert len(reqs) >= 2
    for gap in gaps(reqs):
        assert gap >= 3.0 - SLACK
    assert feed_row(mixed.cfg, "unavailable")["next_reason"] == "retry-after"


def test_retry_after_holds_back_the_feed_not_its_host(mixed: MixedRun) -> None:
    """Every feed here is on one host: while one waits out Retry-After, another on the
    same host is still polled every second."""
    polite = [r.time for r in mixed.server.requests_for("/polite")]
    limited = mixed.server.requests_for("/limited")
    for a, b in zip(limited, limited[1:], strict=False):
        assert sum(a.time < t < b.time for t in polite) >= 2


def test_failing_feed_backs_off_exponentially(mixed: MixedRun) -> None:
    failing = mixed.server.requests_for("/failing")
    assert len(failing) >= 3, [r.time for r in failing]
    spaced = gaps(failing)
    # The n-th failure waits interval * 2**(n-1) * [0.8, 1.2], never under the interval.
    for n, gap in enumerate(spaced, start=1):
        assert gap >= max(1.0, 0.8 * 2 ** (n - 1)) - SLACK, spaced
    assert all(b > a for a, b in zip(spaced, spaced[1:], strict=False)), spaced
    # Far fewer requests than a healthy feed's one per second.
    assert len(failing) <= 4 < len(mixed.server.requests_for("/polite"))
    row = feed_row(mixed.cfg, "failing")
    assert row["next_reason"] == "backoff"
    assert row["failures"] == len(failing)


def test_301_moves_later_requests_to_the_new_url(mixed: MixedRun) -> None:
    old = mixed.server.requests_for("/old")
    new = mixed.server.requests_for("/new")
    assert len(old) == 1
    assert len(new) >= 3
    assert all(r.time > old[0].time for r in new)
    row = feed_row(mixed.cfg, "moved")
    assert row["url"] == mixed.server.url("/new")
    assert row["config_url"] == mixed.server.url("/old")
    # The config file still names the old URL: it stays the feed's key.
    reloaded = config.load(mixed.cfg.path)
    moved = reloaded.feed("moved")
    assert moved is not None and moved.url == mixed.server.url("/old")


def test_conditional_get_after_the_first_200(mixed: MixedRun) -> None:
    for path in ("/polite", "/new"):
        reqs = mixed.server.requests_for(path)
        assert len(reqs) >= 3
        first, *later = reqs
        assert "if-none-match" not in first.headers
        assert "if-modified-since" not in first.headers
        for r in later:
            assert r.headers.get("if-none-match", "").startswith('"'), r.headers
            assert r.headers.get("if-modified-since", "").endswith("GMT"), r.headers


def test_304s_write_no_entries(mixed: MixedRun) -> None:
    """One insert per feed item from the first 200; the later 304s wrote no entry and
    no story, only the fetch state."""
    entry_writes = sorted(op for tbl, op in mixed.content_writes if tbl == "entries")
    story_writes = [op for tbl, op in mixed.content_writes if tbl == "stories"]
    assert entry_writes == ["insert", "insert"]
    conn = sqlite3.connect(mixed.cfg.database.path)
    stories = conn.execute("SELECT count(*) FROM stories").fetchone()[0]
    conn.close()
    assert story_writes.count("insert") == stories and "delete" not in story_writes
    for name, path in (("polite", "/polite"), ("moved", "/new")):
        assert len(mixed.server.requests_for(path)) >= 3
        row = feed_row(mixed.cfg, name)
        assert row["last_status"] == 304 and row["failures"] == 0


def test_status_shows_next_poll_and_why(mixed: MixedRun) -> None:
    runner = CliRunner()
    args = ["--config", str(mixed.cfg.path), "status"]
    table = runner.invoke(cli.cli, [*args, "--wide"])
    assert table.exit_code == 0, table.output
    lines = {line.split()[0]: line for line in table.output.splitlines()[1:]}
    assert "never" in lines["gone"] and "410 Gone" in lines["gone"]
    assert "Retry-After" in lines["limited"]
    assert "backoff" in lines["failing"]
    assert "every 1s" in lines["polite"]
    assert f"moved to {mixed.server.url('/new')}" in lines["moved"]

    as_json = runner.invoke(cli.cli, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    reasons = {r["feed"]: r["next_reason"] for r in json.loads(as_json.output)}
    assert reasons == {
        "gone": "gone",
        "limited": "retry-after",
        "failing": "backoff",
        "unavailable": "retry-after",
        "moved": "interval",
        "polite": "interval",
    }


def test_healthz_names_the_gone_and_the_failing(mixed: MixedRun) -> None:
    client = web.create_app(mixed.cfg).test_client()
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["feeds_gone"] == ["gone"]
    failing = sorted(f["feed"] for f in body["feeds_failing"])
    assert failing == ["failing", "limited", "unavailable"]


# -- one host, many feeds ----------------------------------------------------------------------


def test_per_host_cap_holds_and_other_hosts_still_poll(tmp_path: Path) -> None:
    """Twenty slow feeds of one outlet: never more than per_host in flight there, and
    a feed on another host keeps its schedule while that outlet is saturated."""
    with FeedServer() as busy, FeedServer() as other:
        feeds = []
        for i in range(20):
            busy.route(f"/f{i}", slow(1.0, rss(f"busy-{i}", f"Busy item {i}")))
            feeds.append((f"busy-{i}", busy.url(f"/f{i}")))
        other.add("/feed", rss("other-1", "Other item"))
        feeds.append(("other", other.url("/feed")))
        cfg = write_config(tmp_path, feeds, polling=FAST + "\nper_host = 2\nconcurrency = 8")
        run_for(cfg, 5.0)
        busy_host = f"127.0.0.1:{busy.port}"
        assert busy.in_flight_max[busy_host] == 2, busy.in_flight_max
        assert len(busy.requests) >= 4
        # Workers parked on the busy host's slots would starve this feed (one poll in 4s
        # when measured so); deferring them keeps it near its 1s rhythm.
        assert len(other.requests_for("/feed")) >= 3


def test_per_host_cap_of_one(tmp_path: Path) -> None:
    with FeedServer() as server:
        for name in ("a", "b", "c"):
            server.route(f"/{name}", slow(0.3, rss(name, f"Item {name}")))
        cfg = write_config(
            tmp_path,
            [(n, server.url(f"/{n}")) for n in ("a", "b", "c")],
            polling=FAST + "\nper_host = 1",
        )
        run_for(cfg, 2.5)
        assert server.in_flight_max == {f"127.0.0.1:{server.port}": 1}
        assert len(server.requests) >= 3


# -- scheduling mechanics ------------------------------------------------------------------------


def test_start_spreads_first_polls_of_new_feeds(tmp_path: Path) -> None:
    with FeedServer() as server:
        names = [f"new-{i}" for i in range(20)]
        for n in names:
            server.add(f"/{n}", rss(n, f"Item {n}"))
        cfg = write_config(
            tmp_path,
            [(n, server.url(f"/{n}")) for n in names],
            polling='interval = "1h"\nmin_interval = "1s"',
        )
        d = daemon.Daemon(cfg, serve=False)
        before = datetime.now(UTC)
        d.start()
        try:
            jobs = {j.id: j for j in d.scheduler.get_jobs()}
        finally:
            d.stop()
        after = datetime.now(UTC)
        firsts = sorted(jobs[f"feed:{n}"].next_run_time for n in names)
        assert firsts[0] >= before
        assert firsts[-1] <= after + schedule.NEW_FEED_SPREAD
        assert firsts[-1] - firsts[0] > timedelta(seconds=1)
        assert len(set(firsts)) == len(firsts)


def test_feed_jobs_coalesce_and_never_overlap(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.add("/a", rss("a", "A"))
        cfg = write_config(tmp_path, [("a", server.url("/a"))], polling=FAST)
        d = daemon.Daemon(cfg, serve=False)
        d.start()
        try:
            job = d.scheduler.get_job("feed:a")
            assert job is not None
            assert job.coalesce is True
            assert job.max_instances == 1
            assert job.misfire_grace_time is None
        finally:
            d.stop()


def test_each_poll_reschedules_at_the_decided_time(tmp_path: Path) -> None:
    """After every poll the job's next run is the next_poll the poll stored."""
    with FeedServer() as server:
        server.add("/a", rss("a", "A"))
        cfg = write_config(
            tmp_path, [{"name": "a", "url": server.url("/a"), "interval": "2s"}], polling=FAST
        )
        d = daemon.Daemon(cfg, serve=False)
        d.start()
        try:
            deadline = time.monotonic() + 5
            while len(server.requests_for("/a")) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the poll's write and rescheduling follow the request
            job = d.scheduler.get_job("feed:a")
            stored = feed_row(cfg, "a")["next_poll"]
        finally:
            d.stop()
        assert len(server.requests_for("/a")) == 2
        assert job is not None
        assert job.next_run_time == datetime.fromisoformat(stored)
        reqs = server.requests_for("/a")
        assert reqs[1].time - reqs[0].time >= 2.0 - SLACK


def test_a_crashed_poll_is_rescheduled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside one poll must not drop the feed from the schedule."""
    crashes: list[str] = []
    real_poll_feed = poll.poll_feed

    def crash_once(poller: poll.Poller, feed: config.FeedConfig) -> object:
        if not crashes:
            crashes.append(feed.name)
            raise RuntimeError("a bug in the pipeline")
        return real_poll_feed(poller, feed)

    monkeypatch.setattr(poll, "poll_feed", crash_once)
    with FeedServer() as server:
        server.add("/a", rss("a", "A"))
        cfg = write_config(tmp_path, [("a", server.url("/a"))], polling=FAST)
        d = run_for(cfg, 3.0)
        assert crashes == ["a"]
        assert len(server.requests_for("/a")) >= 1
        assert feed_row(cfg, "a")["last_status"] in (200, 304)
        assert d.stopping.is_set()


# -- the real process ----------------------------------------------------------------------------


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_stops_run_during_a_trickled_fetch(tmp_path: Path) -> None:
    """`aggregator run` exits 0 soon after SIGTERM even while an outlet trickles a
    response byte by byte, and leaves a database that passes integrity_check."""
    with FeedServer() as server:
        server.route("/trickle", trickle(rss("t", "Trickled") * 4, interval=0.2))
        server.add("/fast", rss("fast", "Fast item"))
        port = free_port()
        cfg_dir = tmp_path / "run"
        # The daemon's own server binds a real port: the config refuses port 0.
        text = toml_config(
            [("trickle", server.url("/trickle")), ("fast", server.url("/fast"))],
            polling=FAST,
            base_url=f"http://127.0.0.1:{port}",
        )
        text = text.replace('timeout = "5s"', 'timeout = "30s"')
        text = text.replace("[server]\n", f"[server]\nport = {port}\n", 1)
        cfg_dir.mkdir()
        (cfg_dir / "aggregator.toml").write_text(text, encoding="utf-8")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aggregator",
                "--config",
                str(cfg_dir / "aggregator.toml"),
                "run",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert wait_for(lambda: bool(server.requests_for("/trickle")), 15), "never polled"
            assert wait_for(lambda: len(server.requests_for("/fast")) >= 2, 10)
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert health.status_code == 200
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            output = proc.stdout.read().decode() if proc.stdout else ""
            if proc.stdout:
                proc.stdout.close()
        assert code == 0, output
        assert "stopping" in output
    conn = sqlite3.connect(cfg_dir / "aggregator.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        fast = conn.execute("SELECT last_status FROM feeds WHERE name = 'fast'").fetchone()
    finally:
        conn.close()
    assert fast[0] in (200, 304), output
