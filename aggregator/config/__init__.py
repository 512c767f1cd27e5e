"""The TOML config file, read into frozen dataclasses.

`load(path)` reads one file; `parse(text, path)` is pure. Every mistake raises
`ConfigError` naming the file, the key or line, and the problem. Unknown keys are
errors, never silently ignored. The settings are data: each is a field of
`model`, with its kind and range beside it, checked by `validate` in one loop.

This stage only reads and checks: it never touches the network or the database,
and never creates the folders it names. Topic queries are checked by compiling
them with `topics.compile`, so a query that would fail at poll time fails here.
"""

from __future__ import annotations

import os
from pathlib import Path

from aggregator.config.model import (
    DEFAULT_DATABASE,
    SECTIONS,
    Config,
    DatabaseConfig,
    DedupeConfig,
    FeedConfig,
    PollingConfig,
    ServerConfig,
    TopicConfig,
    default_parse_processes,
    feed_interval,
    keys,
)
from aggregator.config.units import format_duration, format_size, parse_duration, parse_size
from aggregator.config.validate import host_port, parse
from aggregator.errors import ConfigError

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_PATH",
    "ENV_VAR",
    "SECTIONS",
    "Config",
    "DatabaseConfig",
    "DedupeConfig",
    "FeedConfig",
    "PollingConfig",
    "ServerConfig",
    "TopicConfig",
    "default_parse_processes",
    "describe",
    "feed_interval",
    "format_duration",
    "format_size",
    "keys",
    "load",
    "parse",
    "parse_duration",
    "parse_size",
    "resolve_path",
]

#: where the config is read from when neither --config nor $AGGREGATOR_CONFIG says
DEFAULT_PATH = Path("config/aggregator.toml")
#: the environment variable naming the config file
ENV_VAR = "AGGREGATOR_CONFIG"
#: a config larger than this is refused unread (a mistaken path to a log or a device)
MAX_FILE_SIZE = 16 * 1024 * 1024


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


def describe(config: Config, user_agent: str | None = None) -> list[str]:
    """Human lines for `aggregator check`: what would be polled, stored and published."""
    db = config.database
    server = config.server
    polling = config.polling
    lines = [
        f"config: {config.path}",
        f"database: {db.path} (keep {format_duration(db.keep)})",
        f"server: listens on {host_port(server.host, server.port)}, publishes as {server.base_url}",
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
    if user_agent is not None:
        lines.append(f"user-agent: {user_agent}")
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
