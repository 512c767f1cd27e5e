"""When to poll each feed next: pure decisions from (feed state, fetch outcome, now).

This stage decides; it never acts. No clock reads, no I/O, no sleeping: `now` and a
`random.Random` are passed in, so every rule is tested with a fixed time and seed.
The daemon and `poll` store and apply a `Decision`; they must not second-guess it.

The rules (numbers are the module constants below):

- **Success** (200 or 304) resets the failure count to 0 and polls again after the
  feed's interval: the configured one, or for `"auto"` the `auto_interval` of its
  rhythm. No jitter: start-up already spread the feeds (`initial_delay`).
- **Hints** (`<ttl>`, `sy:updatePeriod`, Cache-Control `max-age`, `Expires`) may
  lengthen that interval, never beyond `max(max_interval, interval)`, and never
  shorten it: the configured interval is a floor (INTERFACE "Polling behaviour").
  The longest hint wins.
- **Failure**: the n-th failure in a row waits `interval * 2**(n-1)` (the first
  retry comes at the usual time), capped at `backoff_ceiling` (24h), times a
  jitter drawn from [0.8, 1.2], then clamped to [interval, ceiling], so a failing
  feed is never polled more often than a healthy one, nor less than once per ceiling.
- **429/503 with Retry-After** (seconds or an HTTP date, capped at 7 days): not
  before that time, and not before the backoff either (whichever is later); it
  counts as a failure, so a server that keeps refusing is asked less and less often.
  Only this feed waits, never its host.
- **410 Gone**: `gone=True`, `next_poll=NEVER`; the daemon stops scheduling it.
- **301/308**: a successful fetch that reached the feed through permanent redirects
  only gives the new URL to store (`Decision.url`). The fetcher reports
  `permanent_url` only for all-permanent chains, so 302/307 never move a feed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

from aggregator.config import FeedConfig, PollingConfig, feed_interval
from aggregator.config.units import format_duration
from aggregator.errors import FetchError
from aggregator.models import FeedState, Fetched

Kind = Literal["ok", "not_modified", "error", "gone", "rate_limited"]
Reason = Literal["interval", "auto", "backoff", "retry-after", "hint", "gone"]

#: every outcome kind, and every reason a `Decision` can give
KINDS: tuple[str, ...] = ("ok", "not_modified", "error", "gone", "rate_limited")
REASONS: tuple[str, ...] = ("interval", "auto", "backoff", "retry-after", "hint", "gone")

#: the next poll of a gone feed: stored so `status` sorts it last; never scheduled
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
#: the backoff ceiling when none is configured (issue 6: "default 24h")
DEFAULT_BACKOFF_CEILING = timedelta(hours=24)
#: backoff jitter bounds, multiplied into the exponential delay
JITTER_LOW, JITTER_HIGH = 0.8, 1.2
#: a Retry-After further away than this is treated as this (a typo'd date must not
#: silence a feed for years)
RETRY_AFTER_CAP = timedelta(days=7)
#: `auto` with no rhythm known yet (a new feed): the config's default interval,
#: clamped to [min_interval, max_interval], so a new feed's rhythm is learnt quickly
AUTO_DEFAULT = timedelta(minutes=15)
#: a feed never polled before starts within this (or its interval, if shorter)
NEW_FEED_SPREAD = timedelta(seconds=10)
#: feeds overdue at start-up (the daemon was down) are spread over this (or their
#: interval, if shorter), so a restart is not a burst against every outlet at once
OVERDUE_SPREAD = timedelta(minutes=1)

_WEEK = timedelta(days=7)
_SUCCESS = ("ok", "not_modified")


@dataclass(frozen=True, slots=True)
class Policy:
    """One feed's polling settings, resolved from its `[[feeds]]` entry and `[polling]`."""

    #: the configured interval; None means "auto" (from the feed's rhythm)
    interval: timedelta | None
    #: bounds for "auto"; max_interval also caps how far hints lengthen the interval
    min_interval: timedelta = timedelta(minutes=5)
    max_interval: timedelta = timedelta(hours=24)
    #: the longest backoff after repeated failures
    backoff_ceiling: timedelta = DEFAULT_BACKOFF_CEILING

    def __post_init__(self) -> None:
        # Rejected here rather than deep inside a job thread, where a zero interval
        # would become a busy loop against an outlet.
        if self.interval is not None and self.interval <= timedelta(0):
            raise ValueError(f"interval must be positive, not {self.interval}")
        if self.min_interval <= timedelta(0):
            raise ValueError(f"min_interval must be positive, not {self.min_interval}")
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval is longer than max_interval")
        if self.backoff_ceiling <= timedelta(0):
            raise ValueError(f"backoff_ceiling must be positive, not {self.backoff_ceiling}")

    @classmethod
    def for_feed(cls, feed: FeedConfig, polling: PollingConfig) -> Policy:
        """Resolve a feed's policy: its own interval or "auto", else the `[polling]` default."""
        return cls(
            interval=feed_interval(feed, polling),
            min_interval=polling.min_interval,
            max_interval=polling.max_interval,
        )

    @property
    def auto(self) -> bool:
        return self.interval is None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one fetch of one feed gave, reduced to what scheduling needs (from `poll`)."""

    #: "ok" (200), "not_modified" (304), "error", "gone" (410), "rate_limited" (429/503)
    kind: Kind
    #: the HTTP status, None for network errors
    http_status: int | None = None
    #: raw Retry-After header of a 429/503: delta-seconds or an HTTP date
    retry_after: str | None = None
    #: raw Cache-Control, Expires and Date headers of a 200/304
    cache_control: str | None = None
    expires: str | None = None
    date: str | None = None
    #: the feed's own interval hint in seconds (<ttl>, sy:updatePeriod), from `parse`;
    #: on a 304 (nothing parsed) `decide` falls back to `FeedState.hint_seconds`
    hint_seconds: int | None = None
    #: the feed's rhythm from the store, for "auto"; None when too young to tell
    entries_per_week: float | None = None
    #: the new address when every redirect hop was permanent (301/308)
    permanent_url: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown outcome kind {self.kind!r}; expected one of {KINDS}")

    @classmethod
    def from_fetch(
        cls,
        result: Fetched | BaseException,
        *,
        hint_seconds: int | None = None,
        entries_per_week: float | None = None,
    ) -> Outcome:
        """Classify what `fetch` returned or raised, so `poll` needs no status tables.

        A `ParseError` (a 200 that is not a feed) or any other exception for the feed
        is an "error": it backs off like a failed fetch.
        """
        if isinstance(result, Fetched):
            headers = result.headers
            return cls(
                kind="not_modified" if result.status == 304 else "ok",
                http_status=result.status,
                cache_control=headers.get("cache-control"),
                expires=headers.get("expires"),
                date=headers.get("date"),
                hint_seconds=hint_seconds,
                entries_per_week=entries_per_week,
                permanent_url=result.permanent_url,
            )
        status = result.status if isinstance(result, FetchError) else None
        retry_after = result.retry_after if isinstance(result, FetchError) else None
        kind: Kind
        if status == 410:
            kind = "gone"
        elif status in (429, 503):
            kind = "rate_limited"
        else:
            kind = "error"
        return cls(
            kind=kind,
            http_status=status,
            retry_after=retry_after,
            hint_seconds=hint_seconds,
            entries_per_week=entries_per_week,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """When to poll a feed next and why (to the store, `status` and the daemon)."""

    #: aware UTC; `NEVER` for a gone feed
    next_poll: datetime
    #: "interval", "auto", "backoff", "retry-after", "hint" or "gone"
    reason: Reason
    #: consecutive failed fetches, 0 after a success
    failures: int
    #: the feed answered 410: stop scheduling it
    gone: bool
    #: the URL to store when permanent redirects moved the feed, else None (keep it)
    url: str | None
    #: one line for `status`, e.g. "backoff 3 failures: 1h52m"
    detail: str


def decide(
    state: FeedState,
    outcome: Outcome,
    policy: Policy,
    now: datetime,
    rng: random.Random,
) -> Decision:
    """Decide a feed's next poll from its state before the fetch and what the fetch gave.

    Pass the time the fetch finished as `now`. `rng` is drawn from only on failures.
    """
    _require_aware(now)
    hint = _hint(state, outcome, now)
    base = (
        policy.interval
        if policy.interval is not None
        else auto_interval(outcome.entries_per_week, policy)
    )
    interval = _lengthen(base, hint, policy)

    if outcome.kind in _SUCCESS:
        url = outcome.permanent_url
        if url == state.url:
            url = None
        if interval > base:
            reason: Reason = "hint"
            detail = f"hint {format_duration(interval)} (interval {format_duration(base)})"
        elif policy.auto:
            reason = "auto"
            detail = f"auto {format_duration(interval)}" + _rhythm(outcome.entries_per_week)
        else:
            reason = "interval"
            detail = f"every {format_duration(interval)}"
        return Decision(now + interval, reason, 0, False, url, detail)

    failures = state.failures + 1
    if outcome.kind == "gone":
        return Decision(NEVER, "gone", failures, True, None, "410 Gone: no longer polled")

    delay = backoff(interval, failures, policy.backoff_ceiling, rng)
    plural = "s" if failures != 1 else ""
    backoff_detail = f"backoff {failures} failure{plural}: {format_duration(delay)}"
    if outcome.kind == "rate_limited" and outcome.retry_after is not None:
        until = parse_retry_after(outcome.retry_after, now)
        if until is not None:
            # Retry-After is a floor, not a schedule: a server that keeps answering 429
            # with "1" would otherwise be asked every second.
            next_poll = max(until, now + delay)
            detail = f"Retry-After {format_duration(until - now)}"
            if next_poll > until:
                detail += f" ({backoff_detail})"
            return Decision(next_poll, "retry-after", failures, False, None, detail)
    return Decision(now + delay, "backoff", failures, False, None, backoff_detail)


def backoff(
    interval: timedelta, failures: int, ceiling: timedelta, rng: random.Random
) -> timedelta:
    """The wait after the `failures`-th failure in a row (1 = the first).

    `interval * 2**(failures-1)`, capped at `ceiling`, times a jitter from
    [JITTER_LOW, JITTER_HIGH] so feeds that failed together (an outage) come back
    apart, then clamped to [interval, ceiling]: never sooner than a healthy feed,
    never later than the ceiling. An interval longer than the ceiling wins.
    """
    if failures < 1:
        raise ValueError(f"failures counts from 1, not {failures}")
    ceiling = max(ceiling, interval)
    # In float seconds first: 2**failures as a timedelta overflows after ~40 doublings.
    raw = interval.total_seconds() * 2.0 ** min(failures - 1, 64)
    seconds = min(raw, ceiling.total_seconds()) * rng.uniform(JITTER_LOW, JITTER_HIGH)
    seconds = min(max(seconds, interval.total_seconds()), ceiling.total_seconds())
    return timedelta(seconds=seconds)


def auto_interval(entries_per_week: float | None, policy: Policy) -> timedelta:
    """The "auto" interval for a feed's rhythm, as Miniflux's entry_frequency scheduler.

    One poll per expected entry: a week divided by entries per week, rounded to
    whole seconds, clamped to [min_interval, max_interval]. A wire feed of 500 a
    week is polled every ~20m; a feed of 1 a week, every max_interval (24h). No
    entries in the window (0) gives max_interval; an unknown rhythm (None, a new
    feed) gives AUTO_DEFAULT (15m), clamped.
    """
    if entries_per_week is None or math.isnan(entries_per_week):
        wanted = AUTO_DEFAULT
    elif entries_per_week <= 0:
        wanted = policy.max_interval
    else:
        wanted = timedelta(seconds=round(_WEEK.total_seconds() / entries_per_week))
    return min(max(wanted, policy.min_interval), policy.max_interval)


def first_poll(now: datetime, interval: timedelta, rng: random.Random) -> datetime:
    """A uniformly random time within one interval from `now`, to spread start-up polls."""
    _require_aware(now)
    return now + interval * rng.random()


def initial_delay(
    state: FeedState,
    policy: Policy,
    now: datetime,
    rng: random.Random,
    entries_per_week: float | None = None,
) -> timedelta | None:
    """How long after start-up to poll a feed first; None for a gone feed (never).

    - never polled: within min(interval, NEW_FEED_SPREAD) (10s): a new feed is
      wanted now, the jitter only keeps a fresh install from firing all at once;
    - a stored next poll still ahead: wait for it, so a restart does not cut short
      a backoff or a Retry-After (capped at RETRY_AFTER_CAP), nor an interval wait
      (capped at the current policy's interval with its hint, in case the config
      shortened it since);
    - no stored next poll: last fetch + interval, the same way;
    - overdue: within min(interval, OVERDUE_SPREAD) (1m).
    """
    _require_aware(now)
    if state.gone:
        return None
    floor = policy.interval if policy.interval is not None else policy.min_interval
    if state.last_fetch is None:
        return min(floor, NEW_FEED_SPREAD) * rng.random()

    if policy.interval is not None:
        nominal = policy.interval
    elif entries_per_week is not None:
        nominal = auto_interval(entries_per_week, policy)
    else:
        # An auto feed's rhythm is unknown here: its stored wait may be anything up
        # to max_interval, and cutting it short would poll a quiet feed on every restart.
        nominal = policy.max_interval
    hint = timedelta(seconds=state.hint_seconds) if state.hint_seconds else None
    nominal = _lengthen(nominal, hint, policy)

    if state.next_poll is not None:
        due, reason = state.next_poll, state.next_reason
    else:
        due, reason = state.last_fetch + nominal, "interval"
    if due > now:
        cap = RETRY_AFTER_CAP if reason in ("backoff", "retry-after") else nominal
        return min(due - now, cap)
    return min(floor, OVERDUE_SPREAD) * rng.random()


def parse_retry_after(value: str, now: datetime) -> datetime | None:
    """The time a Retry-After header asks us to wait until, or None if it is unusable.

    RFC 9110 §10.2.3: delta-seconds (digits only) or an HTTP date (IMF-fixdate, and
    the obsolete RFC 850 and asctime forms, taken as GMT). A date in the past means
    "now"; anything beyond RETRY_AFTER_CAP (7 days) is capped there.
    """
    _require_aware(now)
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        # Compared as an int: a 30-digit value must not overflow timedelta.
        seconds = int(text)
        if seconds > RETRY_AFTER_CAP.total_seconds():
            return now + RETRY_AFTER_CAP
        return now + timedelta(seconds=seconds)
    when = _http_date(text)
    if when is None:
        return None
    return min(max(when, now), now + RETRY_AFTER_CAP)


def cache_hint(
    cache_control: str | None,
    expires: str | None,
    now: datetime,
    date: str | None = None,
) -> timedelta | None:
    """How long a 200/304 says it stays fresh, or None when it gives no usable hint.

    RFC 9111 §4.2.1: `max-age` wins over `Expires` (first occurrence if repeated);
    `no-store` / `no-cache` mean "ask every time", so no hint; `s-maxage` is for
    shared caches and we are not one. `Expires` counts from the response's `Date`
    when given (immune to our clock's skew), else from `now`; an Expires in the
    past or unparseable gives no hint. A zero lifetime is no hint either.
    """
    _require_aware(now)
    if cache_control:
        max_age: str | None = None
        for directive in cache_control.split(","):
            name, _, arg = directive.strip().partition("=")
            name = name.strip().lower()
            if name in ("no-store", "no-cache"):
                return None
            if name == "max-age" and max_age is None:
                max_age = arg.strip().strip('"')
        if max_age is not None:
            if not (max_age.isascii() and max_age.isdigit()):
                return None  # an invalid max-age makes the response stale (§5.2.1.1)
            seconds = min(int(max_age), 2**31)  # §1.2.2: cap absurd values
            return timedelta(seconds=seconds) if seconds > 0 else None
    if expires:
        until = _http_date(expires.strip())
        if until is None:
            return None
        origin = _http_date(date.strip()) if date else None
        lifetime = until - (origin or now)
        return lifetime if lifetime > timedelta(0) else None
    return None


def _hint(state: FeedState, outcome: Outcome, now: datetime) -> timedelta | None:
    """The longest interval the feed itself suggests, from its body and its headers."""
    seconds = outcome.hint_seconds
    if seconds is None and outcome.kind != "ok":
        # A 304 or a failure parsed nothing: the last parsed hint still stands.
        seconds = state.hint_seconds
    hints = []
    if seconds is not None and seconds > 0:
        hints.append(timedelta(seconds=seconds))
    if outcome.kind in _SUCCESS:
        cached = cache_hint(outcome.cache_control, outcome.expires, now, outcome.date)
        if cached is not None:
            hints.append(cached)
    return max(hints, default=None)


def _lengthen(base: timedelta, hint: timedelta | None, policy: Policy) -> timedelta:
    """Let a hint lengthen `base` up to max_interval, never shorten it."""
    if hint is None:
        return base
    return max(base, min(hint, max(policy.max_interval, base)))


def _rhythm(entries_per_week: float | None) -> str:
    if entries_per_week is None:
        return " (rhythm unknown)"
    return f" ({entries_per_week:g} entries/week)"


def _http_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # HTTP dates are always GMT; the asctime form and "-0000" parse as naive.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (UTC)")
