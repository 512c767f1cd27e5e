"""The config loader: what a good file turns into, and how every kind of mistake is reported.

A bad config must exit 2 with the file, the key or line, and the problem. These tests
check the `ConfigError` that the CLI turns into that message: its file, its dotted key,
the line of that key in the file (found here independently, by searching the test's own
text), and the words of the problem.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator import config as cfg
from aggregator.config import (
    Config,
    DatabaseConfig,
    DedupeConfig,
    FeedConfig,
    PollingConfig,
    ServerConfig,
    TopicConfig,
)
from aggregator.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# The example of INTERFACE.md, with the "tass" feed its topic names added.
FULL = """\
[database]
path = "var/aggregator.db"          # relative to the config file's folder
keep = "90d"                        # retention; published ids never change

[server]
host = "127.0.0.1"
port = 8080
base_url = "http://127.0.0.1:8080"  # used for self links and ids
export_dir = "var/public"           # optional: topic files for nginx/CDN

[polling]
interval = "15m"                    # default per feed, or "auto"
min_interval = "5m"                 # bounds for "auto" and for hints
max_interval = "24h"
timeout = "20s"
max_body = "10MiB"
concurrency = 8
per_host = 2                        # requests in flight to one host

[dedupe]
window = "48h"                      # how far back a story can be joined

[aliases]                           # named term lists for queries: @pakistan
pakistan = ["Pakistan", "Pakistani", "Islamabad", "پاکستان", "Пакистан"]

[[feeds]]
name = "dawn"                       # unique, [a-z0-9-]
url = "https://www.dawn.com/feeds/home"
title = "Dawn"                      # optional
interval = "10m"                    # optional
allow_private = false               # optional: may resolve to private addresses

[[feeds]]
name = "tass"
url = "https://tass.com/rss/v2.xml"
interval = "auto"

[[feeds]]
name = "archive"
url = "file:///srv/archive/feed.xml"
allow_private = true

[[topics]]
slug = "pakistan-russia"            # unique, [a-z0-9-]
title = "Pakistan–Russia"
query = '(pakistan OR islamabad) AND (russia OR moscow OR putin OR kremlin)'
feeds = ["dawn", "tass"]            # optional: only these feeds
limit = 50                          # optional: entries in the feed

[[topics]]
slug = "everything"
"""

# The smallest useful config; bad cases below are built on it.
BASE = """\
[database]
path = "db.sqlite"

[[feeds]]
name = "dawn"
url = "https://www.dawn.com/feeds/home"
"""


def write(tmp_path: Path, text: str, name: str = "aggregator.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing `needle` (fails the test if not unique)."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def has_topics_compile() -> bool:
    if importlib.util.find_spec("aggregator.match.topics") is None:
        return False
    from aggregator.match import topics

    return callable(getattr(topics, "compile", None))


# ---------------------------------------------------------------- a good file


def test_full_example_parses_to_expected_values(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = cfg.load(path)
    assert config == Config(
        path=path,
        database=DatabaseConfig(path=tmp_path / "var" / "aggregator.db", keep=timedelta(days=90)),
        server=ServerConfig(
            host="127.0.0.1",
            port=8080,
            base_url="http://127.0.0.1:8080",
            export_dir=tmp_path / "var" / "public",
        ),
        polling=PollingConfig(
            interval=timedelta(minutes=15),
            min_interval=timedelta(minutes=5),
            max_interval=timedelta(hours=24),
            timeout=timedelta(seconds=20),
            max_body=10 * 1024 * 1024,
            concurrency=8,
            per_host=2,
            max_entries=1000,
        ),
        dedupe=DedupeConfig(window=timedelta(hours=48)),
        aliases={"pakistan": ("Pakistan", "Pakistani", "Islamabad", "پاکستان", "Пакистан")},
        feeds=(
            FeedConfig(
                name="dawn",
                url="https://www.dawn.com/feeds/home",
                title="Dawn",
                interval=timedelta(minutes=10),
            ),
            FeedConfig(name="tass", url="https://tass.com/rss/v2.xml", auto=True),
            FeedConfig(name="archive", url="file:///srv/archive/feed.xml", allow_private=True),
        ),
        topics=(
            TopicConfig(
                slug="pakistan-russia",
                title="Pakistan–Russia",
                query="(pakistan OR islamabad) AND (russia OR moscow OR putin OR kremlin)",
                feeds=("dawn", "tass"),
                limit=50,
            ),
            TopicConfig(slug="everything", title="everything"),
        ),
    )
    assert config.feed("tass") is config.feeds[1]
    assert config.topic("everything") is config.topics[1]
    assert config.feed("nope") is None


def test_defaults_when_tables_are_left_out(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = cfg.load(path)
    assert config.database.path == tmp_path / "var" / "aggregator.db"
    assert config.database.keep == timedelta(days=90)
    assert config.server == ServerConfig(export_dir=None)
    assert config.polling == PollingConfig()
    assert config.dedupe == DedupeConfig()
    assert config.aliases == {}
    assert config.feeds == ()
    assert config.topics == ()


def test_base_url_follows_host_and_port_and_loses_trailing_slash(tmp_path: Path) -> None:
    derived = cfg.parse('[server]\nport = 9000\nhost = "::1"\n', tmp_path / "a.toml")
    assert derived.server.base_url == "http://[::1]:9000"
    given = cfg.parse('[server]\nbase_url = "https://news.example.org/agg/"\n', tmp_path / "a.toml")
    assert given.server.base_url == "https://news.example.org/agg"


def test_paths_resolve_against_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = write(
        tmp_path / "etc",
        '[database]\npath = "../state/a.db"\n[server]\nexport_dir = "/srv/public"\n',
    )
    monkeypatch.chdir(tmp_path / "etc")
    config = cfg.load(Path("aggregator.toml"))
    assert config.database.path == tmp_path / "state" / "a.db"
    assert config.server.export_dir == Path("/srv/public")
    assert config.path == Path("aggregator.toml")
    assert path.exists()


def test_feed_interval_rule(tmp_path: Path) -> None:
    config = cfg.parse(FULL, tmp_path / "a.toml")
    dawn, tass, archive = config.feeds
    assert cfg.feed_interval(dawn, config.polling) == timedelta(minutes=10)
    assert cfg.feed_interval(tass, config.polling) is None
    assert cfg.feed_interval(archive, config.polling) == timedelta(minutes=15)
    auto = cfg.parse('[polling]\ninterval = "auto"\n' + BASE, tmp_path / "a.toml")
    assert auto.polling.interval is None
    assert cfg.feed_interval(auto.feeds[0], auto.polling) is None


def test_topic_feed_list_keeps_order_and_drops_repeats(tmp_path: Path) -> None:
    text = FULL.replace('feeds = ["dawn", "tass"]', 'feeds = ["tass", "dawn", "tass"]')
    config = cfg.parse(text, tmp_path / "a.toml")
    assert config.topics[0].feeds == ("tass", "dawn")


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.replace("\n", "\r\n").encode())
    assert cfg.load(path).feeds[0].name == "dawn"


# ---------------------------------------------------------------- durations and sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", timedelta(seconds=1)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(days=7)),
        ("90d", timedelta(days=90)),
        ("1h30m", timedelta(minutes=90)),
        ("1d 12h", timedelta(hours=36)),
        ("2w3d4h5m6s", timedelta(days=17, hours=4, minutes=5, seconds=6)),
        (" 48h ", timedelta(days=2)),
        ("0h5m", timedelta(minutes=5)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert cfg.parse_duration(text, "polling.interval") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "invalid duration"),
        ("15", "invalid duration"),
        ("15 minutes", "invalid duration"),
        ("1.5h", "invalid duration"),
        ("15M", "invalid duration"),
        ("30m1h", "invalid duration"),
        ("1h1h", "invalid duration"),
        ("h", "invalid duration"),
        ("auto", "invalid duration"),
        ("-5m", "must be positive"),
        ("0s", "must be positive"),
        ("0h0m", "must be positive"),
        ("999999999999w", "too large"),
        ("1" * 5000 + "s", "invalid duration"),
    ],
)
def test_parse_duration_rejects(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.parse_duration(text, "polling.timeout")
    assert problem in info.value.problem
    assert info.value.key == "polling.timeout"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10MiB", 10_485_760),
        ("512KiB", 524_288),
        ("1GiB", 1_073_741_824),
        ("500kB", 500_000),
        ("500KB", 500_000),
        ("1MB", 1_000_000),
        ("1.5MiB", 1_572_864),
        ("2048", 2048),
        ("2048B", 2048),
        ("64 KiB", 65_536),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert cfg.parse_size(text, "polling.max_body") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10M", "invalid size"),
        ("ten MiB", "invalid size"),
        ("", "invalid size"),
        ("10 MiBs", "invalid size"),
        ("0", "must be positive"),
        ("0MiB", "must be positive"),
        ("-1MiB", "must be positive"),
        (0, "must be positive"),
        (-5, "must be positive"),
        (True, "expected a size"),
    ],
)
def test_parse_size_rejects(text: str | int, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.parse_size(text, "polling.max_body")
    assert problem in info.value.problem
    assert info.value.key == "polling.max_body"


@pytest.mark.parametrize("text", ["1s", "90s", "15m", "1h30m", "1d", "90d", "2w", "1d2h3m4s"])
def test_format_duration_round_trips(text: str) -> None:
    value = cfg.parse_duration(text, "k")
    assert cfg.parse_duration(cfg.format_duration(value), "k") == value


@pytest.mark.parametrize("value", [1, 1000, 1024, 10_485_760, 1_073_741_824, 1_500_000])
def test_format_size_round_trips(value: int) -> None:
    assert cfg.parse_size(cfg.format_size(value), "k") == value


# ---------------------------------------------------------------- bad configs

# (id, text, key, the text on the key's line or None for no line, words of the problem)
BAD: list[tuple[str, str, str | None, str | None, list[str]]] = [
    (
        "syntax error",
        BASE + "[server]\nport = \n",
        None,
        "port = ",
        ["TOML syntax error", "Invalid value"],
    ),
    (
        "syntax error: table twice",
        BASE + "[database] # again\nkeep = '1d'\n",
        None,
        "# again",
        ["TOML syntax error"],
    ),
    (
        "unknown top-level key",
        'colour = "red"\n' + BASE,
        "colour",
        "colour",
        ["unknown key 'colour'"],
    ),
    (
        "unknown top-level table",
        BASE + '[[feed]]\nname = "x"\n',
        "feed",
        "[[feed]]",
        ["unknown table 'feed'", "did you mean 'feeds'"],
    ),
    (
        "unknown key in [database]",
        BASE.replace('path = "db.sqlite"', 'pth = "db.sqlite"'),
        "database.pth",
        "pth =",
        ["unknown key 'pth'", "did you mean 'path'"],
    ),
    (
        "unknown key in [server]",
        BASE + "[server]\nadress = '0.0.0.0'\n",
        "server.adress",
        "adress",
        ["unknown key 'adress'"],
    ),
    (
        "unknown key in [polling]",
        "[polling]\ntimout = '20s'\n" + BASE,
        "polling.timout",
        "timout",
        ["unknown key 'timout'", "did you mean 'timeout'"],
    ),
    (
        "unknown key in [polling] as a dotted key",
        "polling.timout = '20s'\n" + BASE,
        "polling.timout",
        "timout",
        ["unknown key 'timout'"],
    ),
    (
        "unknown key in [dedupe]",
        BASE + "[dedupe]\nwindow = '2d'\nthreshold = 0.5\n",
        "dedupe.threshold",
        "threshold",
        ["unknown key 'threshold'"],
    ),
    (
        "unknown key in the second [[feeds]]",
        BASE + '[[feeds]]\nname = "tass"\nurl = "https://tass.com/rss"\ntitel = "TASS"\n',
        "feeds[1].titel",
        "titel",
        ["unknown key 'titel'", "did you mean 'title'"],
    ),
    (
        "unknown key in [[topics]]",
        BASE + '[[topics]]\nslug = "all"\nquerry = "x"\n',
        "topics[0].querry",
        "querry",
        ["unknown key 'querry'", "did you mean 'query'"],
    ),
    (
        "unknown key inside an inline feed table",
        'feeds = [{ name = "a", url = "https://a.example/" , colour = 1 }]\n'
        '[database]\npath = "a.db"\n',
        "feeds[0].colour",
        "feeds = [",
        ["unknown key 'colour'"],
    ),
    (
        "duplicate feed name",
        BASE + '\n[[feeds]]\nname = "tass"\nurl = "https://tass.com/rss"\n'
        '\n[[feeds]]\nname = "dawn" # again\nurl = "https://dawn.com/other"\n',
        "feeds[2].name",
        '"dawn" # again',
        ["duplicate feed name 'dawn'", "feeds[0] (line 5)", "feeds[2]"],
    ),
    (
        "duplicate topic slug",
        BASE + '[[topics]]\nslug = "pk"\n[[topics]]\nslug = "pk" # twice\n',
        "topics[1].slug",
        '"pk" # twice',
        ["duplicate topic slug 'pk'", "topics[0] (line 8)", "topics[1]"],
    ),
    (
        "bad url scheme",
        BASE.replace("https://www.dawn.com", "ftp://www.dawn.com"),
        "feeds[0].url",
        "url =",
        ["URL scheme must be http, https or file", "'ftp'"],
    ),
    (
        "url without a scheme",
        BASE.replace("https://www.dawn.com/feeds/home", "www.dawn.com/feeds/home"),
        "feeds[0].url",
        "url =",
        ["URL scheme must be", "got none"],
    ),
    (
        "javascript url",
        BASE.replace("https://www.dawn.com/feeds/home", "javascript:alert(1)"),
        "feeds[0].url",
        "url =",
        ["URL scheme must be", "'javascript'"],
    ),
    (
        "relative file url",
        BASE.replace("https://www.dawn.com/feeds/home", "file:archive/feed.xml"),
        "feeds[0].url",
        "url =",
        ["file:///absolute/path"],
    ),
    (
        "file url with a host",
        BASE.replace("https://www.dawn.com/feeds/home", "file://archive/feed.xml"),
        "feeds[0].url",
        "url =",
        ["file:///absolute/path"],
    ),
    (
        "http url without a host",
        BASE.replace("https://www.dawn.com/feeds/home", "http:///feeds/home"),
        "feeds[0].url",
        "url =",
        ["has no host"],
    ),
    (
        "url with a bad port",
        BASE.replace("www.dawn.com", "www.dawn.com:99999"),
        "feeds[0].url",
        "url =",
        ["invalid URL"],
    ),
    (
        "url with a space",
        BASE.replace("feeds/home", "feeds/ home"),
        "feeds[0].url",
        "url =",
        ["spaces"],
    ),
    (
        "base_url not http",
        BASE + "[server]\nbase_url = 'file:///srv/www'\n",
        "server.base_url",
        "base_url",
        ["URL scheme must be http or https"],
    ),
    (
        "base_url with a query",
        BASE + "[server]\nbase_url = 'https://a.example/?x=1'\n",
        "server.base_url",
        "base_url",
        ["query or fragment"],
    ),
    (
        "bad duration",
        "[polling]\ninterval = '15 minutes'\n" + BASE,
        "polling.interval",
        "interval",
        ["invalid duration '15 minutes'", '"auto"'],
    ),
    (
        "negative duration",
        "[polling]\ntimeout = '-5s'\n" + BASE,
        "polling.timeout",
        "timeout",
        ["must be positive"],
    ),
    (
        "zero duration",
        BASE.replace('path = "db.sqlite"', 'path = "db.sqlite"\nkeep = "0d"'),
        "database.keep",
        "keep",
        ["must be positive"],
    ),
    (
        "bad feed interval",
        BASE + 'interval = "often"\n',
        "feeds[0].interval",
        "interval",
        ["invalid duration 'often'"],
    ),
    (
        "duration as a number",
        BASE + "interval = 900\n",
        "feeds[0].interval",
        "interval",
        ['expected a duration string like "15m" or "auto"', "got integer 900"],
    ),
    (
        "bad size",
        "[polling]\nmax_body = '10 megs'\n" + BASE,
        "polling.max_body",
        "max_body",
        ["invalid size '10 megs'"],
    ),
    (
        "zero size",
        "[polling]\nmax_body = 0\n" + BASE,
        "polling.max_body",
        "max_body",
        ["must be positive"],
    ),
    (
        "port as a string",
        BASE + '[server]\nport = "80"\n',
        "server.port",
        "port",
        ["expected an integer", 'got string "80"'],
    ),
    (
        "port as a boolean",
        BASE + "[server]\nport = true\n",
        "server.port",
        "port",
        ["expected an integer", "got boolean true"],
    ),
    (
        "port zero",
        BASE + "[server]\nport = 0\n",
        "server.port",
        "port",
        ["between 1 and 65535", "got 0"],
    ),
    (
        "port too big",
        BASE + "[server]\nport = 65536\n",
        "server.port",
        "port",
        ["between 1 and 65535"],
    ),
    (
        "feeds as a string",
        'feeds = "dawn"\n',
        "feeds",
        "feeds",
        ["expected an array of tables ([[feeds]])", 'got string "dawn"'],
    ),
    (
        "feeds as a table",
        '[feeds]\nname = "dawn"\n',
        "feeds",
        "[feeds]",
        ["expected an array of tables ([[feeds]])", "got a table"],
    ),
    (
        "polling as an array of tables",
        "[[polling]]\ntimeout = '1s'\n",
        "polling",
        "[[polling]]",
        ["expected a table ([polling])", "got an array"],
    ),
    (
        "database as a string",
        'database = "var/a.db"\n',
        "database",
        "database",
        ["expected a table ([database])"],
    ),
    (
        "topic feeds as a string",
        BASE + '[[topics]]\nslug = "pk"\nfeeds = "dawn"\n',
        "topics[0].feeds",
        'feeds = "dawn"',
        ["expected an array of feed names", 'got string "dawn"'],
    ),
    (
        "topic feeds empty",
        BASE + '[[topics]]\nslug = "pk"\nfeeds = []\n',
        "topics[0].feeds",
        "feeds = []",
        ["empty list"],
    ),
    (
        "feed name as a number",
        BASE.replace('name = "dawn"', "name = 7"),
        "feeds[0].name",
        "name = 7",
        ["expected a string", "got integer 7"],
    ),
    (
        "allow_private as a string",
        BASE + 'allow_private = "yes"\n',
        "feeds[0].allow_private",
        "allow_private",
        ["expected true or false", 'got string "yes"'],
    ),
    (
        "bad name characters",
        BASE.replace('name = "dawn"', 'name = "Dawn News"'),
        "feeds[0].name",
        "Dawn News",
        ['feed name "Dawn News"', "lowercase"],
    ),
    (
        "name starting with a dash",
        BASE.replace('name = "dawn"', 'name = "-dawn"'),
        "feeds[0].name",
        "-dawn",
        ["lowercase", "start with a letter or digit"],
    ),
    (
        "bad slug characters",
        BASE + '[[topics]]\nslug = "pk/ru"\n',
        "topics[0].slug",
        "pk/ru",
        ['topic slug "pk/ru"'],
    ),
    (
        "missing feed name",
        '[[feeds]]\nurl = "https://a.example/rss"\n',
        "feeds[0]",
        "[[feeds]]",
        ["missing required key 'name'"],
    ),
    (
        "missing feed url",
        '[[feeds]]\nname = "a"\n',
        "feeds[0]",
        "[[feeds]]",
        ["missing required key 'url'"],
    ),
    (
        "missing topic slug",
        BASE + '[[topics]]\ntitle = "All"\n',
        "topics[0]",
        "[[topics]]",
        ["missing required key 'slug'"],
    ),
    (
        "unknown feed in topic",
        BASE + '[[topics]]\nslug = "pk"\nfeeds = ["dawn", "dwan2"]\n',
        "topics[0].feeds[1]",
        '"dwan2"',
        ["unknown feed 'dwan2'"],
    ),
    (
        "unknown feed in topic with a near miss",
        BASE + '[[topics]]\nslug = "pk"\nfeeds = ["dwan"]\n',
        "topics[0].feeds[0]",
        '"dwan"',
        ["unknown feed 'dwan'", "did you mean 'dawn'"],
    ),
    (
        "empty query",
        BASE + '[[topics]]\nslug = "pk"\nquery = "  "\n',
        "topics[0].query",
        "query",
        ["must not be empty"],
    ),
    (
        "limit zero",
        BASE + '[[topics]]\nslug = "pk"\nlimit = 0\n',
        "topics[0].limit",
        "limit",
        ["between 1 and 10000"],
    ),
    (
        "limit too big",
        BASE + '[[topics]]\nslug = "pk"\nlimit = 10001\n',
        "topics[0].limit",
        "limit",
        ["between 1 and 10000"],
    ),
    (
        "min_interval above max_interval",
        "[polling]\nmin_interval = '2h'\nmax_interval = '1h'\n" + BASE,
        "polling.min_interval",
        "min_interval",
        ["min_interval (2h) is longer than max_interval (1h)"],
    ),
    (
        "concurrency zero",
        "[polling]\nconcurrency = 0\n" + BASE,
        "polling.concurrency",
        "concurrency",
        ["between 1 and"],
    ),
    (
        "per_host zero",
        "[polling]\nper_host = 0\n" + BASE,
        "polling.per_host",
        "per_host",
        ["between 1 and"],
    ),
    (
        "max_entries as a float",
        "[polling]\nmax_entries = 10.5\n" + BASE,
        "polling.max_entries",
        "max_entries",
        ["expected an integer", "got float 10.5"],
    ),
    (
        "alias name with a space",
        BASE + '[aliases]\n"pak istan" = ["Pakistan"]\n',
        'aliases."pak istan"',
        "pak istan",
        ["alias name 'pak istan'"],
    ),
    (
        "alias name uppercase",
        BASE + '[aliases]\nPakistan = ["Pakistan"]\n',
        "aliases.Pakistan",
        "Pakistan =",
        ["alias name 'Pakistan'"],
    ),
    (
        "alias empty list",
        BASE + "[aliases]\npk = []\n",
        "aliases.pk",
        "pk = []",
        ["at least one term"],
    ),
    (
        "alias with an empty term",
        BASE + '[aliases]\npk = ["Pakistan", ""]\n',
        "aliases.pk[1]",
        "pk = [",
        ["must not be empty"],
    ),
    (
        "alias as a string",
        BASE + '[aliases]\npk = "Pakistan"\n',
        "aliases.pk",
        "pk = ",
        ["expected an array of strings", 'got string "Pakistan"'],
    ),
    (
        "empty database path",
        BASE.replace('path = "db.sqlite"', 'path = ""'),
        "database.path",
        'path = ""',
        ["must not be empty"],
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "needle", "words"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_config(
    tmp_path: Path, text: str, key: str | None, needle: str | None, words: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    error = info.value
    message = str(error)
    assert error.file == str(path)
    assert message.startswith(str(path))
    assert error.key == key
    if key is not None:
        assert key in message
    expected_line = line_of(text, needle) if needle is not None else None
    assert error.line == expected_line
    if expected_line is not None:
        assert f"{path}:{expected_line}" in message
    for word in words:
        assert word in error.problem, (word, error.problem)
        assert word in message


def test_bad_config_cases_are_many_and_distinct() -> None:
    assert len(BAD) >= 20
    assert len({case[0] for case in BAD}) == len(BAD)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    assert str(info.value) == f"{path}: no such file"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(tmp_path)
    assert str(info.value).startswith(str(tmp_path))
    assert "directory" in info.value.problem


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    path.chmod(0)
    try:
        with pytest.raises(ConfigError) as info:
            cfg.load(path)
    finally:
        path.chmod(0o600)
    assert info.value.file == str(path)
    assert "cannot read" in info.value.problem


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_bytes(BASE.encode() + b'title = "Da\xffwn"\n')
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    assert info.value.line == BASE.count("\n") + 1
    assert "not UTF-8" in info.value.problem


def test_deep_nesting_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, "a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    assert "nested too deeply" in info.value.problem


def test_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    with path.open("wb") as handle:
        handle.truncate(cfg.MAX_FILE_SIZE + 1)
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    assert info.value.file == str(path)
    assert "larger than 16MiB" in info.value.problem


def test_dotted_key_table_is_located(tmp_path: Path) -> None:
    text = BASE + "[server]\nhost = 'localhost'\nport.number = 80\n"
    with pytest.raises(ConfigError) as info:
        cfg.parse(text, tmp_path / "a.toml")
    assert info.value.key == "server.port"
    assert info.value.line == line_of(text, "port.number")
    assert "expected an integer, got a table" in info.value.problem


def test_syntax_error_at_end_of_file_names_the_last_line(tmp_path: Path) -> None:
    text = BASE + "[server]\nport ="
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    assert info.value.line == text.count("\n") + 1
    assert "end of file" in info.value.problem


def test_line_finder_is_not_fooled_by_strings_and_arrays(tmp_path: Path) -> None:
    # A header-like line inside a multi-line string or a multi-line array, and a key-like
    # line inside a string, must not be taken for the real [[feeds]] or key.
    text = (
        '[aliases]\nlist = [\n  "[[feeds]]",\n  ["nested"]\n]\n'
        'note = """\n[[feeds]]\nname = "x"\n"""\n'
        "[database]\n"
        'path = "a.db"\n'
        "[[feeds]]\n"
        'name = "a"\n'
        'url = "https://a.example/"\n'
        "[[feeds]]\n"
        'name = "b"\n'
        'url = "gopher://b.example/"\n'
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    # aliases are checked first: the multi-line alias value is an array holding an array
    assert info.value.key == "aliases.list[1]"
    text = text.replace('  ["nested"]\n', '  "nested"\n').replace(
        'note = """\n[[feeds]]\nname = "x"\n"""\n', 'note = ["""\n[[feeds]]\nname = "x"\n"""]\n'
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    assert info.value.key == "feeds[1].url"
    assert info.value.line == line_of(text, "gopher")


# ---------------------------------------------------------------- topic queries


def test_topic_query_error_names_topic_and_position(tmp_path: Path) -> None:
    if not has_topics_compile():
        pytest.skip("aggregator.topics.compile is not there yet")
    text = BASE + '[[topics]]\nslug = "pk"\nquery = "(pakistan AND"\n'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    assert info.value.key == "topics[0].query"
    assert info.value.line == line_of(text, "query")
    assert info.value.problem.startswith("topic 'pk': ")
    assert "at position" in info.value.problem


def test_topic_query_with_unknown_alias_is_an_error(tmp_path: Path) -> None:
    if not has_topics_compile():
        pytest.skip("aggregator.topics.compile is not there yet")
    text = BASE + '[aliases]\npk = ["Pakistan"]\n[[topics]]\nslug = "pk"\nquery = "@nowhere"\n'
    with pytest.raises(ConfigError) as info:
        cfg.parse(text, tmp_path / "a.toml")
    assert info.value.key == "topics[0].query"
    assert "nowhere" in info.value.problem
    good = text.replace("@nowhere", "@pk AND russia")
    assert cfg.parse(good, tmp_path / "a.toml").topics[0].query == "@pk AND russia"


# ---------------------------------------------------------------- where the file is


def test_resolve_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cfg.ENV_VAR, raising=False)
    assert cfg.resolve_path(None) == Path("config/aggregator.toml")
    monkeypatch.setenv(cfg.ENV_VAR, "")
    assert cfg.resolve_path(None) == Path("config/aggregator.toml")
    monkeypatch.setenv(cfg.ENV_VAR, "/etc/aggregator.toml")
    assert cfg.resolve_path(None) == Path("/etc/aggregator.toml")
    assert cfg.resolve_path("mine.toml") == Path("mine.toml")


# ---------------------------------------------------------------- describe


def test_describe_lists_what_would_be_polled_and_published(tmp_path: Path) -> None:
    config = cfg.parse(FULL, tmp_path / "a.toml")
    text = "\n".join(cfg.describe(config))
    assert str(tmp_path / "var" / "aggregator.db") in text
    assert "127.0.0.1:8080" in text
    feed_lines = [line for line in cfg.describe(config) if line.strip().startswith("feed ")]
    assert len(feed_lines) == 3
    assert "dawn" in feed_lines[0]
    assert "https://www.dawn.com/feeds/home" in feed_lines[0]
    assert "10m" in feed_lines[0]
    assert "auto" in feed_lines[1]
    assert "15m" in feed_lines[2]
    topic_lines = [line for line in cfg.describe(config) if line.strip().startswith("topic ")]
    assert len(topic_lines) == 2
    for word in ["pakistan-russia", "Pakistan–Russia", "kremlin", "dawn, tass", "limit 50"]:
        assert word in topic_lines[0]
    assert "all feeds" in topic_lines[1]
    assert "every entry" in topic_lines[1]


# ---------------------------------------------------------------- the shipped config


def test_default_config_parses() -> None:
    path = REPO / "config" / "aggregator.toml"
    if not path.exists():
        pytest.skip(f"{path} is not written yet")
    config = cfg.load(path)
    assert config.feeds
    assert config.topic("pakistan-russia") is not None
