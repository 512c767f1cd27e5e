"""The TOML config file, read into frozen dataclasses.

`load(path)` reads one file; `parse(text, path)` is pure. Every mistake raises
`ConfigError` naming the file, the key or line, and the problem. Unknown keys are
errors, never silently ignored.

This stage only reads and checks: it never touches the network or the database,
and never creates the folders it names. Topic queries are checked by compiling
them with `topics.compile`, so a query that would fail at poll time fails here.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from aggregator.config.units import format_duration, format_size, parse_duration, parse_size
from aggregator.config.units import show as _show
from aggregator.errors import ConfigError, QueryError


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    #: absolute path of the SQLite file (relative paths resolve against the config's folder)
    path: Path
    #: retention: entries older than this are pruned
    keep: timedelta = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    #: used for self links and ids, no trailing slash
    base_url: str = "http://127.0.0.1:8080"
    #: where topic files are written for nginx/CDN, or None
    export_dir: Path | None = None


def default_parse_processes() -> int:
    """One parse process per core beyond the first (at most 4): the poll threads
    share one core through the GIL, so parsing only runs in parallel elsewhere."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True, slots=True)
class PollingConfig:
    #: default interval per feed; None means "auto"
    interval: timedelta | None = timedelta(minutes=15)
    min_interval: timedelta = timedelta(minutes=5)
    max_interval: timedelta = timedelta(hours=24)
    #: connect/read timeout; the whole request gets a deadline of a few times this
    timeout: timedelta = timedelta(seconds=20)
    #: body cap in bytes, after decompression
    max_body: int = 10 * 1024 * 1024
    #: worker threads polling feeds
    concurrency: int = 8
    #: requests in flight to one host
    per_host: int = 2
    #: most entries kept from one poll of one feed (newest kept)
    max_entries: int = 1000
    #: processes that parse feeds and prepare their entries (0: in the poll threads)
    parse_processes: int = field(default_factory=default_parse_processes)


@dataclass(frozen=True, slots=True)
class DedupeConfig:
    #: how far back a new entry may join an existing story
    window: timedelta = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class FeedConfig:
    #: unique, [a-z0-9-]
    name: str
    url: str
    title: str | None = None
    #: None: use `[polling] interval`; "auto" is `auto=True`
    interval: timedelta | None = None
    auto: bool = False
    #: may resolve to private/loopback addresses
    allow_private: bool = False

    @property
    def display_name(self) -> str:
        return self.title or self.name


@dataclass(frozen=True, slots=True)
class TopicConfig:
    #: unique, [a-z0-9-]
    slug: str
    title: str
    #: None: every entry of its feeds
    query: str | None = None
    #: None: all feeds
    feeds: tuple[str, ...] | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Config:
    #: the file this was read from (for messages and relative paths)
    path: Path
    database: DatabaseConfig
    server: ServerConfig = field(default_factory=ServerConfig)
    polling: PollingConfig = field(default_factory=PollingConfig)
    dedupe: DedupeConfig = field(default_factory=DedupeConfig)
    #: named term lists for queries: `@pakistan`
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    feeds: tuple[FeedConfig, ...] = ()
    topics: tuple[TopicConfig, ...] = ()

    def feed(self, name: str) -> FeedConfig | None:
        return next((f for f in self.feeds if f.name == name), None)

    def topic(self, slug: str) -> TopicConfig | None:
        return next((t for t in self.topics if t.slug == slug), None)


# --------------------------------------------------------------------------- public helpers

#: where the config is read from when neither --config nor $AGGREGATOR_CONFIG says
DEFAULT_PATH = Path("config/aggregator.toml")
#: the environment variable naming the config file
ENV_VAR = "AGGREGATOR_CONFIG"
#: the database file when `[database] path` is absent, relative to the config's folder
DEFAULT_DATABASE = "var/aggregator.db"
#: a config larger than this is refused unread (a mistaken path to a log or a device)
MAX_FILE_SIZE = 16 * 1024 * 1024

_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_ALIAS = re.compile(r"[a-z0-9_-]+")
#: a name or slug ends up in URLs and file names ("<slug>.atom"), so keep it short enough
_NAME_MAX = 100
_LIMIT_MAX = 10_000


def feed_interval(feed: FeedConfig, polling: PollingConfig) -> timedelta | None:
    """The interval a feed is polled at; None means "auto" (the scheduler decides).

    A feed's own `interval` wins over `[polling] interval`; this is the one place
    that rule lives, so the scheduler and `check` cannot disagree.
    """
    if feed.auto:
        return None
    if feed.interval is not None:
        return feed.interval
    return polling.interval


def resolve_path(cli_value: str | None) -> Path:
    """Which config file to read: --config, else $AGGREGATOR_CONFIG, else the default.

    An empty value counts as unset, so `AGGREGATOR_CONFIG= aggregator check` does not
    try to read the current directory as a file.
    """
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return DEFAULT_PATH


def load(path: Path) -> Config:
    """Read and parse one config file; every failure is a `ConfigError`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise ConfigError(str(path), "no such file") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_SIZE:
        raise ConfigError(str(path), f"larger than {format_size(MAX_FILE_SIZE)}: not a config file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            str(path), f"not UTF-8 text (bad byte at offset {exc.start})", line=line
        ) from None
    return parse(text, Path(path))


def parse(text: str, path: Path) -> Config:
    """Turn the text of a config file into a `Config`; pure apart from making paths absolute.

    `path` is only used in messages and to resolve relative paths in the file.
    """
    file = str(path)
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        # tomllib recurses once per nested array or inline table
        raise ConfigError(file, "TOML syntax error: values nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
        line: int | None
        if match:
            line = int(match[1])
            message = f"{message[: match.start()]} (column {match[2]})"
        else:
            line = max(text.count("\n") + (0 if text.endswith("\n") else 1), 1)
            message = re.sub(r"\s*\(at end of document\)\s*$", " at end of file", message)
        raise ConfigError(file, f"TOML syntax error: {message}", line=line) from None
    return _Parser(text, path).config(raw)


def describe(config: Config) -> list[str]:
    """Human lines for `aggregator check`: what would be polled, stored and published."""
    db = config.database
    server = config.server
    polling = config.polling
    lines = [
        f"config: {config.path}",
        f"database: {db.path} (keep {format_duration(db.keep)})",
        f"server: listens on {_host_port(server.host, server.port)}, "
        f"publishes as {server.base_url}",
    ]
    if server.export_dir is not None:
        lines.append(f"export: topic files written to {server.export_dir}")
    interval = "auto" if polling.interval is None else f"every {format_duration(polling.interval)}"
    lines.append(
        f"polling: {interval} by default (bounds {format_duration(polling.min_interval)}"
        f"..{format_duration(polling.max_interval)}), timeout {format_duration(polling.timeout)}, "
        f"max body {format_size(polling.max_body)}, {polling.concurrency} workers, "
        f"{polling.per_host} per host, {polling.max_entries} entries per poll, "
        f"{polling.parse_processes} parse processes"
    )
    lines.append(f"dedupe: stories joined within {format_duration(config.dedupe.window)}")
    for name, terms in config.aliases.items():
        lines.append(f"alias @{name}: {', '.join(terms)}")
    lines.append(f"feeds: {len(config.feeds)}")
    for feed in config.feeds:
        every = feed_interval(feed, config.polling)
        extra = f" ({feed.title})" if feed.title else ""
        private = ", private addresses allowed" if feed.allow_private else ""
        shown = "auto interval" if every is None else f"every {format_duration(every)}"
        lines.append(f"  feed {feed.name}{extra}: {feed.url}, {shown}{private}")
    lines.append(f"topics: {len(config.topics)}")
    for topic in config.topics:
        query = topic.query if topic.query is not None else "(every entry)"
        feeds = ", ".join(topic.feeds) if topic.feeds is not None else "all feeds"
        lines.append(
            f"  topic {topic.slug} ({topic.title}): query {query}; feeds: {feeds}; "
            f"limit {topic.limit}; {server.base_url}/topics/{topic.slug}.atom"
        )
    return lines


# --------------------------------------------------------------------------- internals

_MISSING: Any = object()
_Where = tuple[str | int, ...]

_TOP = ("database", "server", "polling", "dedupe", "aliases", "feeds", "topics")
_DATABASE_KEYS = ("path", "keep")
_SERVER_KEYS = ("host", "port", "base_url", "export_dir")
_POLLING_KEYS = (
    "interval",
    "min_interval",
    "max_interval",
    "timeout",
    "max_body",
    "concurrency",
    "per_host",
    "max_entries",
    "parse_processes",
)
_DEDUPE_KEYS = ("window",)
_FEED_KEYS = ("name", "url", "title", "interval", "allow_private")
_TOPIC_KEYS = ("slug", "title", "query", "feeds", "limit")


def _dotted(where: _Where) -> str:
    """("feeds", 3, "interval") -> "feeds[3].interval", quoting keys TOML would quote."""
    out = ""
    for part in where:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
            out += f".{shown}" if out else shown
    return out


def _hint(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(known)})"


_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_KEY_PATH = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_LINE = re.compile(rf"\s*(\[\[|\[)\s*({_KEY_PATH})\s*(\]\]|\])\s*(?:#.*)?")
_KEY_LINE = re.compile(rf"\s*({_KEY_PATH})\s*=")


def _key_parts(path: str) -> list[str]:
    parts = []
    for token in re.findall(_KEY_PART, path):
        if token.startswith('"'):
            parts.append(json.loads(token))
        elif token.startswith("'"):
            parts.append(token[1:-1])
        else:
            parts.append(token)
    return parts


def _scan_lines(text: str) -> list[tuple[_Where, int]]:
    """Where each table header and key sits: (address, line number), in file order.

    Only runs on a file tomllib has accepted, so it can be simple: it tracks
    strings, comments and bracket depth just well enough to tell a `key =` or a
    `[header]` at the start of a line from the inside of a value.
    """
    found: list[tuple[_Where, int]] = []
    arrays: dict[_Where, int] = {}
    prefix: _Where = ()
    depth = 0
    in_string: str | None = None  # the closing delimiter of an open multi-line string
    for number, line in enumerate(text.splitlines(), 1):
        pos = 0
        if in_string is None and depth == 0:
            header = _HEADER_LINE.fullmatch(line)
            if header:
                parts = _key_parts(header[2])
                address: list[str | int] = []
                for i, part in enumerate(parts):
                    address.append(part)
                    if i < len(parts) - 1 and tuple(address) in arrays:
                        address.append(arrays[tuple(address)])
                if header[1] == "[[":
                    index = arrays.get(tuple(address), -1) + 1
                    if index == 0:
                        # so that a problem with the array as a whole finds its first header
                        found.append((tuple(address), number))
                    arrays[tuple(address)] = index
                    address.append(index)
                prefix = tuple(address)
                found.append((prefix, number))
                continue
            key = _KEY_LINE.match(line)
            if key:
                found.append((prefix + tuple(_key_parts(key[1])), number))
                pos = key.end()
        while pos < len(line):
            if in_string is not None:
                end = line.find(in_string, pos)
                if end < 0:
                    break
                pos = end + 3
                in_string = None
                continue
            char = line[pos]
            if char == "#":
                break
            if line.startswith('"""', pos) or line.startswith("'''", pos):
                in_string = line[pos : pos + 3]
                pos += 3
                continue
            if char == '"':
                pos += 1
                while pos < len(line) and line[pos] != '"':
                    pos += 2 if line[pos] == "\\" else 1
            elif char == "'":
                end = line.find("'", pos + 1)
                pos = len(line) if end < 0 else end
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            pos += 1
    return found


class _Parser:
    """Walks the dict tomllib returns, checking every key, and builds the dataclasses."""

    def __init__(self, text: str, path: Path):
        self.text = text
        self.path = path
        self.file = str(path)
        self.folder = Path(os.path.abspath(path)).parent
        self._lines: list[tuple[_Where, int]] | None = None

    # ---- errors

    def line(self, where: _Where) -> int | None:
        """The line of the key (or of the nearest enclosing key or header) in the text."""
        if self._lines is None:
            self._lines = _scan_lines(self.text)
        best: tuple[int, int] | None = None
        for address, number in self._lines:
            if where[: len(address)] == address:
                score = len(address)
            elif address[: len(where)] == where:
                score = len(where)  # a table made by a dotted key: `a.b.c = 1` makes `a.b`
            else:
                continue
            if best is None or score > best[0]:
                best = (score, number)
        return best[1] if best else None

    def fail(self, where: _Where, problem: str) -> NoReturn:
        raise ConfigError(self.file, problem, key=_dotted(where) or None, line=self.line(where))

    # ---- typed getters

    def table(self, value: Any, where: _Where, known: Sequence[str], shape: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected a table ({shape}), got {_show(value)}")
        for key in value:
            if key not in known:
                self.fail(where + (key,), f"unknown key '{key}'{_hint(key, known)}")
        return value

    def string(
        self, table: dict[str, Any], where: _Where, key: str, default: Any = _MISSING
    ) -> Any:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                self.fail(where, f"missing required key '{key}'")
            return default
        if not isinstance(value, str):
            self.fail(where + (key,), f"expected a string, got {_show(value)}")
        if not value.strip():
            self.fail(where + (key,), "must not be empty")
        return value

    def integer(
        self, table: dict[str, Any], where: _Where, key: str, default: int, low: int, high: int
    ) -> int:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where + (key,), f"expected an integer, got {_show(value)}")
        if not low <= value <= high:
            self.fail(where + (key,), f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, table: dict[str, Any], where: _Where, key: str, default: bool) -> bool:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.fail(where + (key,), f"expected true or false, got {_show(value)}")
        return value

    def duration(
        self, table: dict[str, Any], where: _Where, key: str, default: Any, auto: bool = False
    ) -> Any:
        """A duration string; with `auto`, the string "auto" gives None."""
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            expected = 'a duration string like "15m"' + (' or "auto"' if auto else "")
            self.fail(where + (key,), f"expected {expected}, got {_show(value)}")
        if auto and value.strip() == "auto":
            return None
        try:
            return parse_duration(value, _dotted(where + (key,)))
        except ConfigError as exc:
            self.fail(where + (key,), exc.problem + (' (or "auto")' if auto else ""))

    def size(self, table: dict[str, Any], where: _Where, key: str, default: int) -> int:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        try:
            return parse_size(value, _dotted(where + (key,)))
        except ConfigError as exc:
            self.fail(where + (key,), exc.problem)

    def local_path(self, table: dict[str, Any], where: _Where, key: str, default: Any) -> Any:
        """A file system path; relative ones are taken from the config file's folder."""
        value = self.string(table, where, key, default)
        if value is None:
            return None
        if "\x00" in value:
            self.fail(where + (key,), "a path must not contain NUL characters")
        return Path(os.path.normpath(self.folder / Path(value).expanduser()))

    # ---- sections

    def config(self, raw: dict[str, Any]) -> Config:
        for key, value in raw.items():
            if key not in _TOP:
                kind = "table" if isinstance(value, dict | list) else "key"
                self.fail((key,), f"unknown {kind} '{key}'{_hint(key, _TOP)}")
        database = self.database(raw.get("database", {}))
        server = self.server(raw.get("server", {}))
        polling = self.polling(raw.get("polling", {}))
        dedupe = self.dedupe(raw.get("dedupe", {}))
        aliases = self.aliases(raw.get("aliases", {}))
        feeds = self.feeds(raw.get("feeds", []))
        topics = self.topics(raw.get("topics", []), feeds, aliases)
        return Config(
            path=self.path,
            database=database,
            server=server,
            polling=polling,
            dedupe=dedupe,
            aliases=aliases,
            feeds=feeds,
            topics=topics,
        )

    def database(self, value: Any) -> DatabaseConfig:
        where: _Where = ("database",)
        table = self.table(value, where, _DATABASE_KEYS, "[database]")
        return DatabaseConfig(
            path=self.local_path(table, where, "path", DEFAULT_DATABASE),
            keep=self.duration(table, where, "keep", _default(DatabaseConfig, "keep")),
        )

    def server(self, value: Any) -> ServerConfig:
        where: _Where = ("server",)
        table = self.table(value, where, _SERVER_KEYS, "[server]")
        host = self.string(table, where, "host", ServerConfig().host).strip()
        port = self.integer(table, where, "port", ServerConfig().port, 1, 65535)
        base_url = self.string(table, where, "base_url", None)
        if base_url is None:
            # follows host and port so that changing only the port keeps self links right
            base_url = f"http://{_host_port(host, port)}"
        else:
            problem = _url_problem(base_url, allow_file=False)
            if problem is None and (urlsplit(base_url).query or urlsplit(base_url).fragment):
                problem = "must not have a query or fragment"
            if problem:
                self.fail(where + ("base_url",), problem)
        return ServerConfig(
            host=host,
            port=port,
            base_url=base_url.rstrip("/"),
            export_dir=self.local_path(table, where, "export_dir", None),
        )

    def polling(self, value: Any) -> PollingConfig:
        where: _Where = ("polling",)
        table = self.table(value, where, _POLLING_KEYS, "[polling]")
        d = PollingConfig()
        big = 1_000_000
        polling = PollingConfig(
            interval=self.duration(table, where, "interval", d.interval, auto=True),
            min_interval=self.duration(table, where, "min_interval", d.min_interval),
            max_interval=self.duration(table, where, "max_interval", d.max_interval),
            timeout=self.duration(table, where, "timeout", d.timeout),
            max_body=self.size(table, where, "max_body", d.max_body),
            concurrency=self.integer(table, where, "concurrency", d.concurrency, 1, 1024),
            per_host=self.integer(table, where, "per_host", d.per_host, 1, 1024),
            max_entries=self.integer(table, where, "max_entries", d.max_entries, 1, big),
            parse_processes=self.integer(table, where, "parse_processes", d.parse_processes, 0, 64),
        )
        if polling.min_interval > polling.max_interval:
            key = "min_interval" if "min_interval" in table else "max_interval"
            self.fail(
                where + (key,),
                f"min_interval ({format_duration(polling.min_interval)}) is longer than "
                f"max_interval ({format_duration(polling.max_interval)})",
            )
        return polling

    def dedupe(self, value: Any) -> DedupeConfig:
        where: _Where = ("dedupe",)
        table = self.table(value, where, _DEDUPE_KEYS, "[dedupe]")
        return DedupeConfig(window=self.duration(table, where, "window", DedupeConfig().window))

    def aliases(self, value: Any) -> dict[str, tuple[str, ...]]:
        where: _Where = ("aliases",)
        if not isinstance(value, dict):
            self.fail(where, f"expected a table ([aliases]), got {_show(value)}")
        aliases: dict[str, tuple[str, ...]] = {}
        for name, terms in value.items():
            at = where + (name,)
            if not _ALIAS.fullmatch(name):
                self.fail(at, f"alias name '{name}' may use only a-z, 0-9, '_' and '-'")
            if not isinstance(terms, list):
                self.fail(at, f"expected an array of strings, got {_show(terms)}")
            if not terms:
                self.fail(at, "an alias needs at least one term")
            for i, term in enumerate(terms):
                if not isinstance(term, str):
                    self.fail(at + (i,), f"expected a string, got {_show(term)}")
                if not term.strip():
                    self.fail(at + (i,), "an alias term must not be empty")
            aliases[name] = tuple(terms)
        return aliases

    def feeds(self, value: Any) -> tuple[FeedConfig, ...]:
        if not isinstance(value, list):
            self.fail(("feeds",), f"expected an array of tables ([[feeds]]), got {_show(value)}")
        feeds: list[FeedConfig] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            where: _Where = ("feeds", i)
            table = self.table(item, where, _FEED_KEYS, "[[feeds]]")
            name = self.name(table, where, "name", "feed name")
            if name in seen:
                first = seen[name]
                self.fail(
                    where + ("name",),
                    f"duplicate feed name '{name}': feeds[{first}]"
                    f"{self.at_line(('feeds', first, 'name'))} and feeds[{i}]",
                )
            seen[name] = i
            url = self.string(table, where, "url")
            problem = _url_problem(url, allow_file=True)
            if problem:
                self.fail(where + ("url",), problem)
            title = self.string(table, where, "title", None)
            interval = self.duration(table, where, "interval", _MISSING, auto=True)
            feeds.append(
                FeedConfig(
                    name=name,
                    url=url.strip(),
                    title=title,
                    interval=None if interval is _MISSING else interval,
                    auto="interval" in table and interval is None,
                    allow_private=self.boolean(table, where, "allow_private", False),
                )
            )
        return tuple(feeds)

    def topics(
        self, value: Any, feeds: tuple[FeedConfig, ...], aliases: dict[str, tuple[str, ...]]
    ) -> tuple[TopicConfig, ...]:
        if not isinstance(value, list):
            self.fail(("topics",), f"expected an array of tables ([[topics]]), got {_show(value)}")
        feed_names = [f.name for f in feeds]
        compile_query = _query_compiler()
        topics: list[TopicConfig] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            where: _Where = ("topics", i)
            table = self.table(item, where, _TOPIC_KEYS, "[[topics]]")
            slug = self.name(table, where, "slug", "topic slug")
            if slug in seen:
                first = seen[slug]
                self.fail(
                    where + ("slug",),
                    f"duplicate topic slug '{slug}': topics[{first}]"
                    f"{self.at_line(('topics', first, 'slug'))} and topics[{i}]",
                )
            seen[slug] = i
            title = self.string(table, where, "title", slug)
            query = self.string(table, where, "query", None)
            if query is not None and compile_query is not None:
                try:
                    compile_query(query, aliases)
                except QueryError as exc:
                    at = f" at position {exc.position}" if exc.position is not None else ""
                    self.fail(where + ("query",), f"topic '{slug}': {exc.message}{at}")
                except RecursionError:
                    self.fail(where + ("query",), f"topic '{slug}': query nested too deeply")
            topics.append(
                TopicConfig(
                    slug=slug,
                    title=title,
                    query=query,
                    feeds=self.topic_feeds(table, where, feed_names),
                    limit=self.integer(
                        table, where, "limit", _default(TopicConfig, "limit"), 1, _LIMIT_MAX
                    ),
                )
            )
        return tuple(topics)

    def topic_feeds(
        self, table: dict[str, Any], where: _Where, known: list[str]
    ) -> tuple[str, ...] | None:
        value = table.get("feeds", _MISSING)
        if value is _MISSING:
            return None
        at = where + ("feeds",)
        if not isinstance(value, list):
            self.fail(at, f"expected an array of feed names, got {_show(value)}")
        if not value:
            self.fail(at, "empty list: leave 'feeds' out to take every feed")
        names: list[str] = []
        for i, name in enumerate(value):
            if not isinstance(name, str):
                self.fail(at + (i,), f"expected a feed name (string), got {_show(name)}")
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.fail(at + (i,), f"unknown feed '{name}': no [[feeds]] has that name{hint}")
            if name not in names:
                names.append(name)
        return tuple(names)

    def name(self, table: dict[str, Any], where: _Where, key: str, what: str) -> str:
        value: str = self.string(table, where, key)
        if not _NAME.fullmatch(value) or len(value) > _NAME_MAX:
            self.fail(
                where + (key,),
                f"{what} {json.dumps(value, ensure_ascii=False)} must be lowercase a-z, 0-9 and "
                f"'-', start with a letter or digit, at most {_NAME_MAX} characters",
            )
        return value

    def at_line(self, where: _Where) -> str:
        number = self.line(where)
        return f" (line {number})" if number is not None else ""


def _default(cls: type, name: str) -> Any:
    """A field's declared default (slots dataclasses do not keep it as a class attribute)."""
    return next(f.default for f in fields(cls) if f.name == name)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url_problem(url: str, *, allow_file: bool) -> str | None:
    """Why a URL is unusable, or None: http(s) with a host, or (feeds only) file:///abs/path."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "URL must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"invalid URL {url!r}: {exc}"
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            return f"URL {url!r} has no host"
        return None
    if scheme == "file" and allow_file:
        if parts.netloc or not parts.path.startswith("/"):
            return f"a file URL must be file:///absolute/path, got {url!r}"
        return None
    allowed = "http, https or file" if allow_file else "http or https"
    shown = f"'{scheme}'" if scheme else "none"
    return f"URL scheme must be {allowed}, got {shown} in {url!r}"


def _query_compiler() -> Callable[..., Any] | None:
    """`topics.compile`, or None while the topics module is not there yet.

    Imported lazily: config is the first thing every command loads, and the query
    engine is only needed to validate queries. A topics module that exists but fails
    to import is a bug and is allowed to raise.
    """
    if importlib.util.find_spec("aggregator.match.topics") is None:
        return None
    module = importlib.import_module("aggregator.match.topics")
    compiler = getattr(module, "compile", None)
    return compiler if callable(compiler) else None
