"""What a re-read config changes for a running daemon (SIGHUP, `systemctl reload`).

`compare(running, new)` is pure: which feeds and topics were added, removed or
changed, which settings changed, and which of those only a restart can apply (the
listening address, the database file, the sizes of the thread and process pools).
`effective` is the config the daemon goes on with: the new one, except for those.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from aggregator.config import Config, FeedConfig, PollingConfig, feed_interval

#: settings a running daemon cannot change: (section, key)
RESTART_KEYS: tuple[tuple[str, str], ...] = (
    ("server", "host"),
    ("server", "port"),
    ("database", "path"),
    ("polling", "concurrency"),
    ("polling", "parse_processes"),
)


@dataclass(frozen=True, slots=True)
class Changes:
    """How a new config differs from the running one."""

    feeds_added: tuple[str, ...] = ()
    feeds_removed: tuple[str, ...] = ()
    #: a feed whose entry changed, or whose interval or bounds changed through [polling]
    feeds_changed: tuple[str, ...] = ()
    topics_added: tuple[str, ...] = ()
    topics_removed: tuple[str, ...] = ()
    #: query, feeds, title or limit changed, or an alias its query may use
    topics_changed: tuple[str, ...] = ()
    #: other settings that changed and apply now: "polling.timeout", "aliases", ...
    settings: tuple[str, ...] = ()
    #: settings that changed but need a restart: "server.port", ...
    restart: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def summary(self) -> str:
        """One line for the log: `feeds +1 -0 ~2, topics +0 -1 ~1; restart needed for
        server.port`."""
        line = (
            f"feeds +{len(self.feeds_added)} -{len(self.feeds_removed)} "
            f"~{len(self.feeds_changed)}, topics +{len(self.topics_added)} "
            f"-{len(self.topics_removed)} ~{len(self.topics_changed)}"
        )
        named = [
            f"{sign}{name}"
            for sign, names in (
                ("+", self.feeds_added),
                ("-", self.feeds_removed),
                ("~", self.feeds_changed),
            )
            for name in names
        ]
        if named:
            line += f" (feeds {' '.join(named)})"
        named = [
            f"{sign}{slug}"
            for sign, slugs in (
                ("+", self.topics_added),
                ("-", self.topics_removed),
                ("~", self.topics_changed),
            )
            for slug in slugs
        ]
        if named:
            line += f" (topics {' '.join(named)})"
        if self.settings:
            line += f"; changed {', '.join(self.settings)}"
        if self.restart:
            line += f"; restart needed for {', '.join(self.restart)}"
        return line


def _scheduling(feed: FeedConfig, polling: PollingConfig) -> tuple[object, ...]:
    """What decides when a feed is polled, beyond its own entry."""
    return (feed_interval(feed, polling), polling.min_interval, polling.max_interval)


def compare(running: Config, new: Config) -> Changes:
    """The changes from `running` to `new`, in config order."""
    old_feeds = {f.name: f for f in running.feeds}
    new_feeds = {f.name: f for f in new.feeds}
    feeds_changed = tuple(
        f.name
        for f in new.feeds
        if f.name in old_feeds
        and (
            old_feeds[f.name] != f
            or _scheduling(old_feeds[f.name], running.polling) != _scheduling(f, new.polling)
        )
    )
    old_topics = {t.slug: t for t in running.topics}
    aliases_changed = running.aliases != new.aliases
    topics_changed = tuple(
        t.slug
        for t in new.topics
        if t.slug in old_topics
        and (old_topics[t.slug] != t or (aliases_changed and t.query and "@" in t.query))
    )
    settings: list[str] = []
    restart: list[str] = []
    for section in ("database", "server", "polling", "dedupe"):
        before, after = getattr(running, section), getattr(new, section)
        for f in fields(before):
            if getattr(before, f.name) != getattr(after, f.name):
                key = f"{section}.{f.name}"
                (restart if (section, f.name) in RESTART_KEYS else settings).append(key)
    if aliases_changed:
        settings.append("aliases")
    return Changes(
        feeds_added=tuple(n for n in new_feeds if n not in old_feeds),
        feeds_removed=tuple(n for n in old_feeds if n not in new_feeds),
        feeds_changed=feeds_changed,
        topics_added=tuple(t.slug for t in new.topics if t.slug not in old_topics),
        topics_removed=tuple(s for s in old_topics if s not in {t.slug for t in new.topics}),
        topics_changed=topics_changed,
        settings=tuple(settings),
        restart=tuple(restart),
    )


def effective(running: Config, new: Config) -> Config:
    """The config to go on with: `new`, keeping the running values of `RESTART_KEYS`."""
    kept: dict[str, dict[str, object]] = {}
    for section, key in RESTART_KEYS:
        kept.setdefault(section, {})[key] = getattr(getattr(running, section), key)
    return dataclasses.replace(
        new,
        **{
            section: dataclasses.replace(getattr(new, section), **values)
            for section, values in kept.items()
        },
    )
