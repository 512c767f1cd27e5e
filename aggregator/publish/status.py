"""Each feed's state, as `aggregator status` prints it and `/feeds` and `/` show it.

One function (`feed_rows`) builds the rows for all three, so the command line and
the pages can never disagree about a feed. Pure and light (no rendering libraries):
the command line imports it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from aggregator.config import Config
from aggregator.models import SKIP_REASONS
from aggregator.storage.store import FeedStatus, parse_ts

#: a feed's state, in the order `/feeds` lists them: what needs attention first
FAILING, GONE, NEVER, OK = "failing", "gone", "never fetched", "ok"
STATES = (FAILING, GONE, NEVER, OK)


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One feed's state; the fields of `aggregator status --json`, plus `state` and `title`."""

    feed: str
    #: the outlet's display name (config title, else the feed's name)
    title: str
    url: str
    config_url: str
    last_fetch: datetime | None
    last_success: datetime | None
    #: HTTP status of the last fetch (None: never fetched, or a network error)
    status: int | None
    last_error: str | None
    entries: int
    merged: int
    failures: int
    gone: bool
    next_poll: datetime | None
    next_reason: str | None
    next_detail: str | None
    state: str
    #: what the last poll that read the feed did with its items (`FeedStatus.last_counts`)
    last_counts: Mapping[str, Any] | None = None
    #: items ever skipped, by reason
    skipped: Mapping[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The row as `aggregator status --json` prints it."""
        return {
            "feed": self.feed,
            "url": self.url,
            "config_url": self.config_url,
            "last_fetch": self.last_fetch.isoformat() if self.last_fetch else None,
            "status": self.status,
            "last_error": self.last_error,
            "entries": self.entries,
            "merged": self.merged,
            "failures": self.failures,
            "gone": self.gone,
            "next_poll": self.next_poll.isoformat() if self.next_poll else None,
            "next_reason": self.next_reason,
            "next_detail": self.next_detail,
            "state": self.state,
            "last_poll": last_poll(self.last_counts),
            "skipped": dict(self.skipped),
        }

    @property
    def last_read(self) -> str:
        """`50: 48 new, 2 skipped (repeated_guid)`: what the last read's items became."""
        counts = self.last_counts
        if counts is None:
            return "-"
        kinds = ("new", "updated", "unchanged", "merged")
        parts = [f"{counts[k]} {k}" for k in kinds if counts.get(k)]
        skipped = counts.get("skipped") or {}
        if skipped:
            parts.append(f"{sum(skipped.values())} skipped ({', '.join(sorted(skipped))})")
        return f"{counts.get('read', 0)}: " + (", ".join(parts) or "none")


def last_poll(counts: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The last poll that read the feed, with every skip reason (0 when none)."""
    if counts is None:
        return None
    skipped = counts.get("skipped") or {}
    at = parse_ts(counts.get("at"))
    return {
        "at": at.isoformat() if at else None,  # as last_fetch
        **{k: counts.get(k, 0) for k in ("read", "new", "updated", "unchanged", "merged")},
        "skipped": {reason: skipped.get(reason, 0) for reason in SKIP_REASONS},
    }


def _state(s: FeedStatus | None) -> str:
    if s is None or s.last_fetch is None:
        return NEVER
    if s.gone:
        return GONE
    if s.failures or s.last_error:
        return FAILING
    return OK


def feed_rows(config: Config, statuses: Iterable[FeedStatus]) -> list[FeedRow]:
    """Every configured feed's state, in config order.

    A feed of the config the database has no row for yet (added since the last
    poll or `sync`) is listed as never fetched; rows of feeds no longer configured
    are left out.
    """
    by_name = {s.name: s for s in statuses}
    rows = []
    for f in config.feeds:
        s = by_name.get(f.name)
        rows.append(
            FeedRow(
                feed=f.name,
                title=f.display_name,
                url=s.url if s else f.url,
                config_url=s.config_url if s else f.url,
                last_fetch=s.last_fetch if s else None,
                last_success=s.last_success if s else None,
                status=s.last_status if s else None,
                last_error=s.last_error if s else None,
                entries=s.entries if s else 0,
                merged=s.merges if s else 0,
                failures=s.failures if s else 0,
                gone=s.gone if s else False,
                next_poll=s.next_poll if s else None,
                next_reason=s.next_reason if s else None,
                next_detail=s.next_detail if s else None,
                state=_state(s),
                last_counts=s.last_counts if s else None,
                skipped=s.skipped if s else dict.fromkeys(SKIP_REASONS, 0),
            )
        )
    return rows


def failing_first(rows: Sequence[FeedRow]) -> list[FeedRow]:
    """Failing feeds, then gone, never fetched and working ones; by name within each."""
    return sorted(rows, key=lambda r: (STATES.index(r.state), r.feed))


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One kind of failure shared by several feeds: its text with each feed's host
    replaced by "<host>", so "DNS lookup failed for <host>" counts all 24 at once."""

    text: str
    feeds: int
    #: the first feed's own message, to show one concrete case
    example: str


@dataclass(frozen=True, slots=True)
class Overview:
    """What a first look at `/` must tell: is anything being fetched at all, and if not, why."""

    feeds: int
    working: int
    failing: int
    never_fetched: int
    gone: int
    #: no feed has ever been fetched successfully
    nothing_fetched: bool
    #: the most frequent kinds of last error among the failing feeds
    errors: tuple[ErrorKind, ...]
    #: failing feeds whose error is of none of those kinds
    other_errors: int

    @property
    def alarm(self) -> bool:
        """Nothing works: feeds are configured, yet none is being fetched successfully."""
        return self.feeds > 0 and self.working == 0

    @property
    def offline(self) -> bool:
        """Every failing feed failed to resolve its host: the machine has no working DNS."""
        return bool(self.errors) and all(
            e.text.startswith("DNS lookup failed") for e in self.errors
        )


def _kind(row: FeedRow) -> str:
    error = row.last_error or ""
    host = urlsplit(row.url).hostname
    return error.replace(host, "<host>") if host else error


def overview(rows: Sequence[FeedRow], top: int = 3) -> Overview:
    counts = Counter(r.state for r in rows)
    failing = [r for r in rows if r.state == FAILING and r.last_error]
    kinds = Counter(_kind(r) for r in failing)
    examples: dict[str, str] = {}
    for r in failing:
        examples.setdefault(_kind(r), r.last_error or "")
    errors = tuple(ErrorKind(k, n, examples[k]) for k, n in kinds.most_common(top))
    return Overview(
        feeds=len(rows),
        working=counts[OK],
        failing=counts[FAILING],
        never_fetched=counts[NEVER],
        gone=counts[GONE],
        nothing_fetched=all(r.last_success is None for r in rows),
        errors=errors,
        other_errors=len(failing) - sum(e.feeds for e in errors),
    )
