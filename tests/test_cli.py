"""The command line as a user runs it: a real process, exit codes, stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator import config as config_mod
from aggregator.publish import web
from tests.conftest import toml_config
from tests.feedserver import FeedServer


def aggregator(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AGGREGATOR_CONFIG=str(cwd / "aggregator.toml"))
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Dawn</title><link>http://dawn.example/</link>
<description>d</description>
<item><title>Pakistan and Russia sign energy deal</title><link>http://dawn.example/1</link>
<guid>http://dawn.example/1</guid><pubDate>Mon, 05 Jan 2026 10:00:00 GMT</pubDate>
<description>Islamabad and Moscow agreed.</description></item>
<item><title>Cricket final tonight</title><link>http://dawn.example/2</link>
<guid>http://dawn.example/2</guid><pubDate>Mon, 05 Jan 2026 11:00:00 GMT</pubDate>
<description>Sports.</description></item>
</channel></rss>"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    with FeedServer() as server:
        server.add("/dawn.xml", RSS.encode())
        (tmp_path / "aggregator.toml").write_text(
            toml_config(
                [{"name": "dawn", "url": server.url("/dawn.xml"), "title": "Dawn"}],
                [
                    {
                        "slug": "pak-russia",
                        "title": "Pakistan–Russia",
                        "query": "@pakistan AND @russia",
                    },
                ],
                extra='[aliases]\npakistan = ["Pakistan", "Islamabad"]\n'
                'russia = ["Russia", "Moscow"]\n',
            ),
            encoding="utf-8",
        )
        yield tmp_path


def test_poll_status_export_match(site: Path) -> None:
    r = aggregator("poll", cwd=site)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["dawn", "ok"] and "new=2" in lines[0]
    assert lines[-1].startswith("total: 1 feeds, new=2")

    status = aggregator("status", cwd=site)
    assert status.returncode == 0
    assert "dawn" in status.stdout and "200" in status.stdout

    atom = aggregator("export", "pak-russia", cwd=site)
    assert atom.returncode == 0
    assert "Pakistan and Russia sign energy deal" in atom.stdout
    assert "Cricket" not in atom.stdout

    # export prints exactly what HTTP serves
    cfg = config_mod.load(site / "aggregator.toml")
    client = web.create_app(cfg).test_client()
    for fmt in ("atom", "rss", "json"):
        cli_bytes = subprocess.run(
            [
                sys.executable,
                "-m",
                "aggregator",
                "--config",
                str(site / "aggregator.toml"),
                "export",
                "pak-russia",
                "--format",
                fmt,
            ],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        assert cli_bytes == client.get(f"/topics/pak-russia.{fmt}").data

    hit = aggregator("match", "pak-russia", cwd=site, stdin="Islamabad talks with Moscow")
    assert hit.returncode == 0 and "Islamabad" in hit.stdout and "Moscow" in hit.stdout
    miss = aggregator("match", "pak-russia", cwd=site, stdin="Cricket in Lahore")
    assert miss.returncode == 1
    stored = aggregator("match", "pak-russia", "--entry", "http://dawn.example/1", cwd=site)
    assert stored.returncode == 0


_POLL_AND_LIST_MODULES = """
import sys
from aggregator import cli
try:
    cli.cli.main(["--config", sys.argv[1], "poll"], prog_name="aggregator")
except SystemExit as stop:
    assert not stop.code, stop.code
heavy = ("lxml", "nh3", "feedgen", "tomlkit", "defusedxml", "flask", "waitress")
print(" ".join(m for m in heavy if m in sys.modules))
"""


def test_a_poll_loads_no_renderer_and_no_web_server(site: Path) -> None:
    """`aggregator poll` from cron is a short process: the renderer's libraries (8 MiB
    with lxml), OPML's and the web server's are left to the commands that use them."""
    out = subprocess.run(
        [sys.executable, "-c", _POLL_AND_LIST_MODULES, str(site / "aggregator.toml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "new=2" in out.stdout
    assert out.stdout.splitlines()[-1] == ""
    # and the commands that render still do
    atom = aggregator("export", "pak-russia", cwd=site)
    assert atom.returncode == 0 and "energy deal" in atom.stdout


def test_check_and_opml(site: Path, tmp_path: Path) -> None:
    check = aggregator("check", cwd=site)
    assert check.returncode == 0 and "dawn" in check.stdout and "pak-russia" in check.stdout
    exported = aggregator("opml", "export", cwd=site)
    assert exported.returncode == 0 and 'xmlUrl="' in exported.stdout
    opml_file = tmp_path / "subs.opml"
    opml_file.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head/><body>'
        '<outline text="News"><outline text="TASS" xmlUrl="https://tass.com/rss/v2.xml"/>'
        "</outline></body></opml>",
        encoding="utf-8",
    )
    before = (site / "aggregator.toml").read_text()
    imported = aggregator("opml", "import", str(opml_file), cwd=site)
    assert imported.returncode == 0, imported.stderr
    assert "tass" in imported.stdout
    after = (site / "aggregator.toml").read_text()
    assert after.startswith(before.rstrip("\n")[:200])
    assert 'url = "https://tass.com/rss/v2.xml"' in after
    again = aggregator("opml", "import", str(opml_file), cwd=site)
    assert "0 feeds added" in again.stdout


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[database\npath = 1", "aggregator.toml:1:"),
        ("[database]\npath = 'x.db'\nbogus = 1\n", "bogus"),
        ("[[feeds]]\nname = 'a'\nurl = 'ftp://x'\n", "feeds[0].url"),
        ("[[topics]]\nslug = 't'\ntitle = 'T'\nquery = '(a OR'\n", "topics[0].query"),
        ("[[topics]]\nslug = 't'\ntitle = 'T'\nquery = '@nope'\n", "nope"),
    ],
)
def test_bad_config_exits_2_without_traceback(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "aggregator.toml").write_text(text, encoding="utf-8")
    for command in (["check"], ["poll"], ["status"], ["export", "t"]):
        r = aggregator(*command, cwd=tmp_path)
        assert r.returncode == 2, (command, r.stdout, r.stderr)
        assert "aggregator.toml" in r.stderr and needle in r.stderr
        assert "Traceback" not in r.stderr


def test_missing_config_and_unknown_names(tmp_path: Path, site: Path) -> None:
    r = aggregator("--config", str(tmp_path / "none.toml"), "check", cwd=tmp_path)
    assert r.returncode == 2 and "none.toml" in r.stderr and "Traceback" not in r.stderr
    assert aggregator("export", "no-such-topic", cwd=site).returncode == 2
    assert aggregator("poll", "--feed", "no-such-feed", cwd=site).returncode == 2
    assert aggregator("no-such-command", cwd=site).returncode == 2


def test_every_command_has_help_with_an_example(site: Path) -> None:
    for command in (
        ["run"],
        ["poll"],
        ["serve"],
        ["check"],
        ["status"],
        ["export"],
        ["match"],
        ["explain"],
        ["opml", "import"],
        ["opml", "export"],
    ):
        r = aggregator(*command, "--help", cwd=site)
        assert r.returncode == 0 and "Example" in r.stdout, command


#: `aggregator poll`, reporting at exit which of the modules only a feed's new
#: entries need were loaded
POLL_REPORTING_MODULES = """
import atexit
import sys

HEAVY = ("feedparser", "aggregator.ingest.parse", "aggregator.match.entities",
         "aggregator.ingest.prepare", "aggregator.match.dedupe", "charset_normalizer",
         "nh3", "flask", "feedgen", "lxml")
atexit.register(lambda: print("loaded:", *[m for m in HEAVY if m in sys.modules], file=sys.stderr))
from aggregator.cli import main

main()
"""


def test_a_poll_of_304s_loads_no_parser_or_clustering(site: Path) -> None:
    """The cron case: every feed answers 304, so the process needs neither
    feedparser nor clustering and its place list; a poll that brings entries loads
    them. (The query engine is loaded: the config's queries are checked on every
    load; so is sqlite-utils, which decides whether a migration is pending.)"""
    env = dict(os.environ, AGGREGATOR_CONFIG=str(site / "aggregator.toml"))

    def poll() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", POLL_REPORTING_MODULES, "poll"],
            cwd=site,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    first = poll()
    assert first.returncode == 0, first.stderr
    assert "new=2" in first.stdout
    loaded = first.stderr.splitlines()[-1].split()[1:]
    assert {"feedparser", "aggregator.match.dedupe"} <= set(loaded)
    second = poll()
    assert second.returncode == 0, second.stderr
    assert "not_modified" in second.stdout
    assert second.stderr.splitlines()[-1] == "loaded:"
    export = aggregator("export", "pak-russia", "--format", "json", cwd=site)
    assert export.returncode == 0 and "Pakistan and Russia sign energy deal" in export.stdout
