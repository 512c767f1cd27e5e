"""Check the dict tomllib returns against the settings of `model`, and build the config.

Each key is read by the kind its field declares (`model.setting`), in one loop per
section; what spans keys (bounds that must be ordered, unique names, a topic's feeds
that must exist) is checked after the loop. Every problem raises `ConfigError` with
the file, the line, the key and the problem.
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
from dataclasses import Field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from aggregator.config import model
from aggregator.config.lines import Lines, Where, dotted
from aggregator.config.model import (
    Config,
    DatabaseConfig,
    DedupeConfig,
    FeedConfig,
    PollingConfig,
    ServerConfig,
    Setting,
    TopicConfig,
)
from aggregator.config.units import format_duration, parse_duration, parse_size, show
from aggregator.errors import ConfigError, QueryError

_MISSING: Any = object()
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_ALIAS = re.compile(r"[a-z0-9_-]+")
_TOP = tuple(model.SECTIONS)
#: a contact is one header token; a longer one is a mistake (a pasted paragraph)
CONTACT_MAX = 200


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
    return _Reader(text, path).config(raw)


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_problem(url: str, *, allow_file: bool) -> str | None:
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


def _hint(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(known)})"


def _query_compiler() -> Callable[..., Any] | None:
    """`topics.compile`, or None while the topics module is not there.

    Imported lazily: config is the first thing every command loads, and the query
    engine is only needed to validate queries.
    """
    if importlib.util.find_spec("aggregator.match.topics") is None:
        return None
    module = importlib.import_module("aggregator.match.topics")
    compiler = getattr(module, "compile", None)
    return compiler if callable(compiler) else None


class _Reader:
    """Walks the parsed document, checking every key, and builds the dataclasses."""

    def __init__(self, text: str, path: Path):
        self.path = path
        self.file = str(path)
        self.folder = Path(os.path.abspath(path)).parent
        self.lines = Lines(text)
        #: what a kind needs beyond the key itself: known feed names, the aliases
        self.feed_names: list[str] = []
        self.aliases: dict[str, tuple[str, ...]] = {}
        self.compile_query = _query_compiler()

    # ---- errors

    def fail(self, where: Where, problem: str) -> NoReturn:
        raise ConfigError(self.file, problem, key=dotted(where) or None, line=self.lines.of(where))

    def at_line(self, where: Where) -> str:
        number = self.lines.of(where)
        return f" (line {number})" if number is not None else ""

    # ---- one loop for every section

    def table(self, value: Any, where: Where, known: Sequence[str], shape: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected a table ({shape}), got {show(value)}")
        for key in value:
            if key not in known:
                self.fail(where + (key,), f"unknown key '{key}'{_hint(key, known)}")
        return value

    def section(self, cls: type, value: Any, where: Where, shape: str) -> dict[str, Any]:
        """Every setting of `cls` read from one table: field name -> value."""
        table = self.table(value, where, model.keys(cls), shape)
        out: dict[str, Any] = {}
        for f, s in model.settings(cls):
            if f.name not in table:
                if s.required:
                    self.fail(where, f"missing required key '{f.name}'")
                fallback = model.default(f)
                if s.kind == "path" and fallback is not None:  # relative to the config too
                    fallback = Path(os.path.normpath(self.folder / fallback))
                out[f.name] = fallback
                continue
            out[f.name] = self.read(s, table[f.name], where + (f.name,), f)
        return out

    def read(self, s: Setting, value: Any, at: Where, f: Field[Any]) -> Any:
        """One present key's value, checked by its kind."""
        kind = s.kind
        if kind in ("string", "name", "host", "feed_url", "base_url", "query", "path"):
            if not isinstance(value, str):
                self.fail(at, f"expected a string, got {show(value)}")
            if not value.strip():
                self.fail(at, "must not be empty")
        if kind == "string" or kind == "query":
            return value
        if kind == "host":
            return value.strip()
        if kind == "name":
            what = "feed name" if at[-1] == "name" else "topic slug"
            if not _NAME.fullmatch(value) or len(value) > model.NAME_MAX:
                self.fail(
                    at,
                    f"{what} {json.dumps(value, ensure_ascii=False)} must be lowercase a-z, "
                    f"0-9 and '-', start with a letter or digit, at most {model.NAME_MAX} "
                    "characters",
                )
            return value
        if kind in ("feed_url", "base_url"):
            problem = url_problem(value, allow_file=kind == "feed_url")
            if problem is None and kind == "base_url":
                parts = urlsplit(value)
                if parts.query or parts.fragment:
                    problem = "must not have a query or fragment"
            if problem:
                self.fail(at, problem)
            return value.strip() if kind == "feed_url" else value.rstrip("/")
        if kind == "path":
            if "\x00" in value:
                self.fail(at, "a path must not contain NUL characters")
            return Path(os.path.normpath(self.folder / Path(value).expanduser()))
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(at, f"expected an integer, got {show(value)}")
            assert s.low is not None and s.high is not None
            if not s.low <= value <= s.high:
                self.fail(at, f"must be between {s.low} and {s.high}, got {value}")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                self.fail(at, f"expected true or false, got {show(value)}")
            return value
        if kind == "duration":
            if not isinstance(value, str):
                expected = 'a duration string like "15m"' + (' or "auto"' if s.auto else "")
                self.fail(at, f"expected {expected}, got {show(value)}")
            if s.auto and value.strip() == "auto":
                return None
            try:
                return parse_duration(value, dotted(at))
            except ConfigError as exc:
                self.fail(at, exc.problem + (' (or "auto")' if s.auto else ""))
        if kind == "size":
            try:
                return parse_size(value, dotted(at))
            except ConfigError as exc:
                self.fail(at, exc.problem)
        if kind == "feed_names":
            return self.feed_list(value, at)
        if kind == "contact":
            return self.contact(value, at)
        raise AssertionError(f"unknown setting kind {kind!r} for {f.name}")

    # ---- what spans keys

    def config(self, raw: dict[str, Any]) -> Config:
        for key, value in raw.items():
            if key not in _TOP:
                kind = "table" if isinstance(value, dict | list) else "key"
                self.fail((key,), f"unknown {kind} '{key}'{_hint(key, _TOP)}")
        database = self.section(
            DatabaseConfig, raw.get("database", {}), ("database",), "[database]"
        )
        server = self.server(raw.get("server", {}))
        polling = self.polling(raw.get("polling", {}))
        dedupe = self.section(DedupeConfig, raw.get("dedupe", {}), ("dedupe",), "[dedupe]")
        self.aliases = self.alias_table(raw.get("aliases", {}))
        feeds = self.feeds(raw.get("feeds", []))
        self.feed_names = [f.name for f in feeds]
        topics = self.topics(raw.get("topics", []))
        return Config(
            path=self.path,
            database=DatabaseConfig(**database),
            server=server,
            polling=polling,
            dedupe=DedupeConfig(**dedupe),
            aliases=self.aliases,
            feeds=feeds,
            topics=topics,
        )

    def server(self, value: Any) -> ServerConfig:
        read = self.section(ServerConfig, value, ("server",), "[server]")
        if "base_url" not in value:
            # follows host and port so that changing only the port keeps self links right
            read["base_url"] = f"http://{host_port(read['host'], read['port'])}"
        return ServerConfig(**read)

    def polling(self, value: Any) -> PollingConfig:
        where: Where = ("polling",)
        polling = PollingConfig(**self.section(PollingConfig, value, where, "[polling]"))
        if polling.min_interval > polling.max_interval:
            key = "min_interval" if "min_interval" in value else "max_interval"
            self.fail(
                where + (key,),
                f"min_interval ({format_duration(polling.min_interval)}) is longer than "
                f"max_interval ({format_duration(polling.max_interval)})",
            )
        return polling

    def alias_table(self, value: Any) -> dict[str, tuple[str, ...]]:
        where: Where = ("aliases",)
        if not isinstance(value, dict):
            self.fail(where, f"expected a table ([aliases]), got {show(value)}")
        aliases: dict[str, tuple[str, ...]] = {}
        for name, terms in value.items():
            at = where + (name,)
            if not _ALIAS.fullmatch(name):
                self.fail(at, f"alias name '{name}' may use only a-z, 0-9, '_' and '-'")
            if not isinstance(terms, list):
                self.fail(at, f"expected an array of strings, got {show(terms)}")
            if not terms:
                self.fail(at, "an alias needs at least one term")
            for i, term in enumerate(terms):
                if not isinstance(term, str):
                    self.fail(at + (i,), f"expected a string, got {show(term)}")
                if not term.strip():
                    self.fail(at + (i,), "an alias term must not be empty")
            aliases[name] = tuple(terms)
        return aliases

    def array(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail((key,), f"expected an array of tables ([[{key}]]), got {show(value)}")
        return value

    def unique(self, seen: dict[str, int], value: str, where: Where, what: str) -> None:
        section, i, key = where
        if value in seen:
            first = seen[value]
            self.fail(
                where,
                f"duplicate {what} '{value}': {section}[{first}]"
                f"{self.at_line((section, first, key))} and {section}[{i}]",
            )
        seen[value] = i  # type: ignore[assignment]

    def feeds(self, value: Any) -> tuple[FeedConfig, ...]:
        feeds: list[FeedConfig] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(self.array(value, "feeds")):
            read = self.section(FeedConfig, item, ("feeds", i), "[[feeds]]")
            self.unique(seen, read["name"], ("feeds", i, "name"), "feed name")
            read["auto"] = "interval" in item and read["interval"] is None
            feeds.append(FeedConfig(**read))
        return tuple(feeds)

    def topics(self, value: Any) -> tuple[TopicConfig, ...]:
        topics: list[TopicConfig] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(self.array(value, "topics")):
            where: Where = ("topics", i)
            read = self.section(TopicConfig, item, where, "[[topics]]")
            slug = read["slug"]
            self.unique(seen, slug, where + ("slug",), "topic slug")
            read["title"] = read["title"] or slug
            if read["query"] is not None:
                self.check_query(read["query"], slug, where + ("query",))
            topics.append(TopicConfig(**read))
        return tuple(topics)

    def check_query(self, query: str, slug: str, at: Where) -> None:
        if self.compile_query is None:
            return
        try:
            self.compile_query(query, self.aliases)
        except QueryError as exc:
            pos = f" at position {exc.position}" if exc.position is not None else ""
            self.fail(at, f"topic '{slug}': {exc.message}{pos}")
        except RecursionError:
            self.fail(at, f"topic '{slug}': query nested too deeply")

    def contact(self, value: Any, at: Where) -> str:
        """A URL or an e-mail address that goes into the User-Agent header as is."""
        if not isinstance(value, str):
            self.fail(at, f"expected a string (a URL or an e-mail address), got {show(value)}")
        value = value.strip()
        if not value:
            self.fail(at, "must not be empty (leave it out to send no contact)")
        if len(value) > CONTACT_MAX:
            self.fail(at, f"at most {CONTACT_MAX} characters, got {len(value)}")
        if not value.isascii() or any(not ch.isprintable() or ch in " ()\\" for ch in value):
            self.fail(
                at,
                "a URL or an e-mail address in ASCII, without spaces, parentheses or "
                f"backslashes (it is sent in the User-Agent header), got {show(value)}",
            )
        if "://" in value:
            problem = url_problem(value, allow_file=False)
            if problem:
                self.fail(at, problem)
        elif not re.fullmatch(r"(mailto:)?[^@]+@[^@]+\.[^@]+", value):
            self.fail(at, f"expected an http(s) URL or an e-mail address, got {show(value)}")
        return str(value)

    def feed_list(self, value: Any, at: Where) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(at, f"expected an array of feed names, got {show(value)}")
        if not value:
            self.fail(at, "empty list: leave 'feeds' out to take every feed")
        known = self.feed_names
        names: list[str] = []
        for i, name in enumerate(value):
            if not isinstance(name, str):
                self.fail(at + (i,), f"expected a feed name (string), got {show(name)}")
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.fail(at + (i,), f"unknown feed '{name}': no [[feeds]] has that name{hint}")
            if name not in names:
                names.append(name)
        return tuple(names)
