"""The TOML config file, read into frozen dataclasses.

`load(path)` reads one file; `parse(text, path)` is pure. Every mistake raises
`ConfigError` naming the file, the key or line, and the problem. Unknown keys are
errors, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path


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
