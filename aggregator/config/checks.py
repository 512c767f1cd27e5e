"""Warnings about a config that loads but likely does not do what its author meant.

`check` prints them ("warning: ...", exit 0) and the daemon logs them when it starts
or reloads; none of them is an error, since each can be meant.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from aggregator.config.model import Config, PollingConfig
from aggregator.config.units import format_duration


def same_feed(url: str) -> str:
    """A URL as a feed's identity: scheme and host are case-insensitive, a default
    port or an empty path changes nothing. `check` warns on one feed under two names
    by it, and `opml import` skips a feed already there by it."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def _interval_note(where: str, interval: timedelta | None, polling: PollingConfig) -> str | None:
    if interval is None or interval >= polling.min_interval:
        return None
    return (
        f"{where} ({format_duration(interval)}) is below [polling] min_interval "
        f"({format_duration(polling.min_interval)}): a fixed interval is used as written, "
        f"so the feed is polled every {format_duration(interval)}; "
        'min_interval and max_interval bound only "auto" intervals and feed hints '
        "(<ttl>, Cache-Control), which never shorten a fixed interval"
    )


def warnings(config: Config) -> list[str]:
    """Everything worth a second look, one sentence each, naming the key."""
    from aggregator.match import topics  # the query engine, for queries only

    out: list[str] = []
    for i, topic in enumerate(config.topics):
        if topic.query is not None:
            for note in topics.advice(topic.query, config.aliases):
                out.append(f"topics[{i}].query (topic '{topic.slug}'): {note}")
    seen: dict[str, tuple[int, str]] = {}
    for i, feed in enumerate(config.feeds):
        key = same_feed(feed.url)
        if key in seen:
            first, name = seen[key]
            out.append(
                f"feeds[{i}].url: feed '{feed.name}' has the URL of feed '{name}' "
                f"(feeds[{first}]), {feed.url}: it is fetched twice and each entry stored "
                "under both names; keep one of them"
            )
        else:
            seen[key] = (i, feed.name)
    polling = config.polling
    notes = [_interval_note("[polling] interval", polling.interval, polling)]
    notes += [
        _interval_note(f"feeds[{i}].interval (feed '{feed.name}')", feed.interval, polling)
        for i, feed in enumerate(config.feeds)
    ]
    return out + [n for n in notes if n]
