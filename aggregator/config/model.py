"""The config as frozen dataclasses, each setting's kind and range beside its field.

`validate` reads a TOML table into one of these classes by walking its fields: a
field with a `setting(...)` is a key of the file, checked by its kind; a field
without one is derived (a feed's `auto`). Adding a key is adding a field here.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, Field, dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

#: the database file when `[database] path` is absent, relative to the config's folder
DEFAULT_DATABASE = "var/aggregator.db"
#: a name or slug ends up in URLs and file names ("<slug>.atom"), so keep it short enough
NAME_MAX = 100
LIMIT_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Setting:
    """How one key is read: its kind ("duration", "integer", ...) and its bounds."""

    kind: str
    low: int | None = None
    high: int | None = None
    #: the string "auto" is allowed and read as None
    auto: bool = False
    required: bool = False


def setting(kind: str, default: Any = MISSING, *, factory: Any = MISSING, **rules: Any) -> Any:
    """A dataclass field that is also a config key of `kind`."""
    meta = {"setting": Setting(kind, **rules)}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def keys(cls: type) -> tuple[str, ...]:
    """The config keys of a section, in declaration order (what the docs must list)."""
    return tuple(f.name for f in fields(cls) if "setting" in f.metadata)


def settings(cls: type) -> list[tuple[Field[Any], Setting]]:
    return [(f, f.metadata["setting"]) for f in fields(cls) if "setting" in f.metadata]


def default(f: Field[Any]) -> Any:
    """A field's declared default (slots dataclasses do not keep it as a class attribute)."""
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def default_parse_processes() -> int:
    """One parse process per core beyond the first (at most 4): the poll threads
    share one core through the GIL, so parsing only runs in parallel elsewhere."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    #: absolute path of the SQLite file (relative paths resolve against the config's folder)
    path: Path = setting("path", Path(DEFAULT_DATABASE))
    #: retention, counted from when an entry was first stored
    keep: timedelta = setting("duration", timedelta(days=90))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = setting("host", "127.0.0.1")
    port: int = setting("integer", 8080, low=1, high=65535)
    #: used for self links and ids, no trailing slash; follows host and port when unset
    base_url: str = setting("base_url", "http://127.0.0.1:8080")
    #: where topic files are written for nginx/CDN, or None
    export_dir: Path | None = setting("path", None)


@dataclass(frozen=True, slots=True)
class PollingConfig:
    #: default interval per feed; None means "auto"
    interval: timedelta | None = setting("duration", timedelta(minutes=15), auto=True)
    min_interval: timedelta = setting("duration", timedelta(minutes=5))
    max_interval: timedelta = setting("duration", timedelta(hours=24))
    #: connect/read timeout; the whole request gets a deadline of a few times this
    timeout: timedelta = setting("duration", timedelta(seconds=20))
    #: body cap in bytes, after decompression
    max_body: int = setting("size", 10 * 1024 * 1024)
    #: worker threads polling feeds
    concurrency: int = setting("integer", 8, low=1, high=1024)
    #: requests in flight to one host
    per_host: int = setting("integer", 2, low=1, high=1024)
    #: most entries kept from one poll of one feed (newest kept)
    max_entries: int = setting("integer", 1000, low=1, high=1_000_000)
    #: processes that parse feeds and prepare their entries (0: in the poll threads)
    parse_processes: int = setting("integer", factory=default_parse_processes, low=0, high=64)
    #: the operator's URL or e-mail address, sent in the User-Agent; None: not sent
    contact: str | None = setting("contact", None)


@dataclass(frozen=True, slots=True)
class DedupeConfig:
    #: how far back a new entry may join an existing story
    window: timedelta = setting("duration", timedelta(hours=48))


@dataclass(frozen=True, slots=True)
class FeedConfig:
    #: unique, [a-z0-9-]
    name: str = setting("name", required=True)
    url: str = setting("feed_url", required=True)
    title: str | None = setting("string", None)
    #: None: use `[polling] interval`; "auto" is `auto=True`
    interval: timedelta | None = setting("duration", None, auto=True)
    #: derived: the feed's interval is "auto"
    auto: bool = False
    #: may resolve to private/loopback addresses
    allow_private: bool = setting("boolean", False)

    @property
    def display_name(self) -> str:
        return self.title or self.name


@dataclass(frozen=True, slots=True)
class TopicConfig:
    #: unique, [a-z0-9-]
    slug: str = setting("name", required=True)
    #: the slug when unset
    title: str = setting("string", "")
    #: None: every entry of its feeds
    query: str | None = setting("query", None)
    #: None: all feeds
    feeds: tuple[str, ...] | None = setting("feed_names", None)
    limit: int = setting("integer", 50, low=1, high=LIMIT_MAX)


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


#: every section of the file: its header as the docs write it, and its class
#: (None: not a class of settings)
SECTIONS: dict[str, type | None] = {
    "database": DatabaseConfig,
    "server": ServerConfig,
    "polling": PollingConfig,
    "dedupe": DedupeConfig,
    "aliases": None,
    "feeds": FeedConfig,
    "topics": TopicConfig,
}


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
