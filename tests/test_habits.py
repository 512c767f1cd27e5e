"""The command line's habits as a person meets them: warnings from `check`, `match`
that explains itself, one line per feed on a terminal, `status | head`, a port in use,
the User-Agent an outlet sees, and matched words as categories in every format.

Every test runs the real CLI as a subprocess against feeds served on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from aggregator import __version__
from tests.conftest import toml_config
from tests.feedserver import FeedServer, free_port

ROOT = Path(__file__).resolve().parents[1]
ATOM = "{http://www.w3.org/2005/Atom}"


def aggregator(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(cwd / "aggregator.toml"), *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def rss(name: str, *titles: str) -> bytes:
    items = "".join(
        f"<item><title>{t}</title><link>http://{name}.example/{i}</link>"
        f"<guid>http://{name}.example/{i}</guid>"
        "<pubDate>Mon, 05 Jan 2026 10:00:00 GMT</pubDate>"
        f"<description>{t}</description></item>"
        for i, t in enumerate(titles)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{name}</title>'
        f"<link>http://{name}.example/</link><description>d</description>{items}</channel></rss>"
    ).encode()


def write(folder: Path, text: str) -> Path:
    (folder / "aggregator.toml").write_text(text, encoding="utf-8")
    return folder


# -- check: warnings that do not fail ------------------------------------------------------


def test_check_warns_without_failing(tmp_path: Path) -> None:
    write(
        tmp_path,
        toml_config(
            [
                {"name": "dawn", "url": "https://www.dawn.com/feeds/home", "interval": "1m"},
                {"name": "dawn-again", "url": "https://WWW.DAWN.COM/feeds/home"},
                {"name": "tass", "url": "https://tass.com/rss/v2.xml"},
            ],
            [
                {"slug": "lower", "query": "pakistan and russia"},
                {"slug": "nots", "query": "NOT cricket NOT football"},
                {"slug": "fine", "query": '"law and order" OR (pakistan AND russia)'},
            ],
        ),
    )
    r = aggregator("check", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "config ok: 3 feeds, 3 topics, 4 warnings" in r.stdout
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 4, r.stderr
    lower, nots, twice, interval = warnings
    assert "topics[0].query (topic 'lower')" in lower and "did you mean AND?" in lower
    assert "topics[1].query (topic 'nots')" in nots and "only NOT" in nots
    assert "feeds[1].url" in twice and "'dawn-again'" in twice and "'dawn'" in twice
    assert "feeds[0].interval (feed 'dawn') (1m) is below [polling] min_interval (5m)" in interval
    assert "used as written" in interval and 'bound only "auto"' in interval


def test_a_quoted_or_upper_case_operator_is_no_warning(tmp_path: Path) -> None:
    write(
        tmp_path,
        toml_config(
            [("dawn", "https://www.dawn.com/feeds/home")],
            [{"slug": "t", "query": '"law and order" AND pakistan NOT cricket'}],
        ),
    )
    r = aggregator("check", cwd=tmp_path)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


# -- match: the words found, and why a miss missed -----------------------------------------


@pytest.fixture
def match_site(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        toml_config(
            [("dawn", "https://www.dawn.com/feeds/home")],
            [{"slug": "t", "query": "pak* AND (russia OR moscow) NOT cricket"}],
        ),
    )


def test_match_names_the_words_of_the_text(match_site: Path) -> None:
    hit = aggregator("match", "t", cwd=match_site, stdin="Pakistani envoy lands in Moscow")
    assert hit.returncode == 0, hit.stderr
    lines = hit.stdout.splitlines()
    assert lines[0] == "match: Pakistani, Moscow"
    assert "  found pak*: Pakistani" in lines and "  found moscow: Moscow" in lines


def test_match_explains_a_miss(match_site: Path) -> None:
    miss = aggregator(
        "match", "t", cwd=match_site, stdin="Pakistan beat India at cricket in Lahore"
    )
    assert miss.returncode == 1
    lines = miss.stdout.splitlines()
    assert lines[0] == "no match for pak* AND (russia OR moscow) NOT cricket"
    assert "  not found: (russia OR moscow)" in lines
    assert "  excluded by NOT cricket: found cricket" in lines
    assert "  found pak*: Pakistan" in lines


# -- words of scripts without spaces, and categories that name the words found -------------


def test_unspaced_scripts_and_matched_words_in_every_format(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.add(
            "/asia.xml",
            rss(
                "asia",
                "巴基斯坦和俄罗斯签署天然气协议",
                "パキスタンとロシアが協定に署名",
                "ปากีสถานและรัสเซียลงนามข้อตกลง",
                "日本の天気予報",
            ),
        )
        server.add("/dawn.xml", rss("dawn", "Pakistani envoy visits Moscow", "Cricket scores"))
        write(
            tmp_path,
            toml_config(
                [("asia", server.url("/asia.xml")), ("dawn", server.url("/dawn.xml"))],
                [{"slug": "pak", "query": "@pakistan"}],
                extra='[aliases]\npakistan = ["pakistan*", "巴基斯坦", "パキスタン", "ปากีสถาน"]\n',
            ),
        )
        assert aggregator("poll", cwd=tmp_path).returncode == 0
    out = {
        f: aggregator("export", "pak", "--format", f, cwd=tmp_path).stdout
        for f in ("atom", "rss", "json")
    }
    expected = {
        "巴基斯坦和俄罗斯签署天然气协议": ["巴基斯坦"],
        "パキスタンとロシアが協定に署名": ["パキスタン"],
        "ปากีสถานและรัสเซียลงนามข้อตกลง": ["ปากีสถาน"],
        "Pakistani envoy visits Moscow": ["Pakistani"],
    }
    atom = ET.fromstring(out["atom"])
    assert {
        e.findtext(f"{ATOM}title"): [c.get("term") for c in e.findall(f"{ATOM}category")]
        for e in atom.iter(f"{ATOM}entry")
    } == expected
    channel = ET.fromstring(out["rss"]).find("channel")
    assert channel is not None
    assert {
        i.findtext("title"): [c.text for c in i.findall("category")] for i in channel.iter("item")
    } == expected
    feed = json.loads(out["json"])
    assert {i["title"]: i["tags"] for i in feed["items"]} == expected


# -- poll on a terminal: one line per feed -------------------------------------------------


def _run_on_terminal(args: list[str]) -> str:
    """Run with stdout and stderr on one pseudo-terminal, as a person at a shell does."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_poll_on_a_terminal_prints_each_feed_once(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.add("/dawn.xml", rss("dawn", "One"))
        server.route("/down.xml", lambda h: h.send_error(500))
        write(
            tmp_path,
            toml_config([("dawn", server.url("/dawn.xml")), ("down", server.url("/down.xml"))]),
        )
        config = str(tmp_path / "aggregator.toml")
        seen = _run_on_terminal(["--config", config, "poll"])
        dawn = [line for line in seen.splitlines() if "dawn" in line]
        down = [line for line in seen.splitlines() if "down" in line]
        assert len(dawn) == 1 and dawn[0].startswith("dawn "), seen
        assert len(down) == 1 and down[0].startswith("down "), seen
        # redirected, the log on stderr keeps its poll lines for the log file
        piped = aggregator("poll", cwd=tmp_path)
        assert "feed=dawn status=" in piped.stderr and "feed=down status=" in piped.stderr
        assert piped.stdout.startswith(("dawn ", "down "))


# -- status: a closed pipe, and 100 columns ------------------------------------------------


def test_status_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    feeds = [(f"feed-{i:04d}", f"https://example.org/{i}.xml") for i in range(2500)]
    write(tmp_path, toml_config(feeds))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aggregator",
            "--config",
            str(tmp_path / "aggregator.toml"),
            "status",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"FEED")  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.wait(timeout=60)
    assert err == "", err  # no "Broken pipe", no traceback


def test_status_fits_100_columns_and_wide_shows_everything(tmp_path: Path) -> None:
    long_name = "a-feed-with-a-rather-long-name-that-goes-on-and-on"
    with FeedServer() as server:
        server.route("/missing-" + "x" * 80, lambda h: h.send_error(404))
        url = server.url("/missing-" + "x" * 80)
        write(tmp_path, toml_config([(long_name, url), ("ok", server.url("/none"))]))
        aggregator("poll", cwd=tmp_path)
    table = aggregator("status", cwd=tmp_path)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["FEED", "STATE", "FETCHED"]
    assert all(len(line) <= 100 for line in lines), lines
    assert any(line.startswith("a-feed-with-a-rathe…") for line in lines), lines
    wide = aggregator("status", "--wide", cwd=tmp_path).stdout.splitlines()
    assert "LAST READ" in wide[0] and "SKIPPED" in wide[0] and "MERGED" in wide[0]
    [row] = [line for line in wide if line.startswith(long_name)]
    assert "404" in row and len(row) > 100


# -- run: a port already in use ------------------------------------------------------------


def test_a_port_in_use_names_the_address_and_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = toml_config([("dawn", "https://www.dawn.com/feeds/home")])
        write(tmp_path, text.replace("[server]\n", f"[server]\nport = {port}\n", 1))
        r = aggregator("run", cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"127.0.0.1:{port}" in r.stderr and "address already in use" in r.stderr
    assert "[server] port" in r.stderr and "another aggregator" in r.stderr
    assert "Traceback" not in r.stderr


# -- what outlets see: the User-Agent -------------------------------------------------------


def test_the_user_agent_carries_the_operator_contact(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.add("/dawn.xml", rss("dawn", "One"))
        text = toml_config(
            [("dawn", server.url("/dawn.xml"))], polling='contact = "ops@example.org"'
        )
        write(tmp_path, text)
        assert aggregator("poll", cwd=tmp_path).returncode == 0
        [request] = server.requests_for("/dawn.xml")
    assert request.headers["user-agent"] == f"aggregator/{__version__} (+ops@example.org)"
    check = aggregator("check", cwd=tmp_path)
    assert f"user-agent: aggregator/{__version__} (+ops@example.org)" in check.stdout
    # without a contact: the software and its version, nothing made up
    write(tmp_path, text.replace('contact = "ops@example.org"\n', ""))
    assert f"user-agent: aggregator/{__version__}\n" in aggregator("check", cwd=tmp_path).stdout


@pytest.mark.parametrize("contact", ['"ops team"', '"x\\r\\nX-Evil: 1"', '"(me)"', '"nobody"', "3"])
def test_a_contact_that_cannot_go_in_a_header_is_a_config_error(
    tmp_path: Path, contact: str
) -> None:
    write(
        tmp_path,
        toml_config([("dawn", "https://www.dawn.com/feeds/home")], polling=f"contact = {contact}"),
    )
    r = aggregator("check", cwd=tmp_path)
    assert r.returncode == 2 and "polling.contact" in r.stderr, r.stderr


def test_run_logs_what_it_serves(tmp_path: Path) -> None:
    port = free_port()
    text = toml_config([("dawn", "https://www.dawn.com/feeds/home")], [{"slug": "all"}])
    write(tmp_path, text.replace("[server]\n", f"[server]\nport = {port}\n", 1))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aggregator",
            "--config",
            str(tmp_path / "aggregator.toml"),
            "serve",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and "serving on" not in line:
            line = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()
    assert f"serving on http://127.0.0.1:{port}/ (1 feeds, not polling, 1 topics" in line, line
