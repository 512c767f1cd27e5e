"""Tables for every polling rule of INTERFACE "Polling behaviour" (issue 6).

Everything here is pure: a fixed `now`, seeded `random.Random`, no clock, no I/O.
Expected values are written out by hand from the documented rules, never computed
by the module under test.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from aggregator.config import FeedConfig, PollingConfig
from aggregator.errors import FetchError, ParseError
from aggregator.ingest import schedule
from aggregator.ingest.schedule import Decision, Outcome, Policy
from aggregator.models import FeedState, Fetched

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
URL = "https://outlet.example/feed"
S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)

POLICY = Policy(interval=15 * M)  # the polite defaults: 5m..24h, ceiling 24h
AUTO = Policy(interval=None)
OK = Outcome(kind="ok", http_status=200)
ERROR = Outcome(kind="error", http_status=500)


def state(**kw: object) -> FeedState:
    fields: dict[str, object] = {"name": "dawn", "url": URL, "last_fetch": NOW - 15 * M}
    fields.update(kw)
    return FeedState(**fields)  # type: ignore[arg-type]


def decide(
    outcome: Outcome,
    policy: Policy = POLICY,
    seed: int = 0,
    **state_kw: object,
) -> Decision:
    return schedule.decide(state(**state_kw), outcome, policy, NOW, random.Random(seed))


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


# --- Policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "polling", "expected"),
    [
        (FeedConfig("a", URL), PollingConfig(), 15 * M),
        (FeedConfig("a", URL, interval=10 * M), PollingConfig(), 10 * M),
        (FeedConfig("a", URL, auto=True), PollingConfig(), None),
        (FeedConfig("a", URL), PollingConfig(interval=None), None),
        (FeedConfig("a", URL, interval=2 * S), PollingConfig(interval=None), 2 * S),
    ],
)
def test_policy_for_feed(feed: FeedConfig, polling: PollingConfig, expected: object) -> None:
    policy = Policy.for_feed(feed, polling)
    assert policy.interval == expected
    assert policy.auto is (expected is None)
    assert (policy.min_interval, policy.max_interval) == (
        polling.min_interval,
        polling.max_interval,
    )
    assert policy.backoff_ceiling == 24 * H


def test_policy_takes_bounds_from_polling() -> None:
    polling = PollingConfig(min_interval=1 * S, max_interval=1 * H)
    policy = Policy.for_feed(FeedConfig("a", URL), polling)
    assert (policy.min_interval, policy.max_interval) == (1 * S, 1 * H)


@pytest.mark.parametrize(
    "kw",
    [
        {"interval": timedelta(0)},
        {"interval": -1 * S},
        {"interval": None, "min_interval": timedelta(0)},
        {"interval": None, "min_interval": 2 * H, "max_interval": 1 * H},
        {"interval": M, "backoff_ceiling": timedelta(0)},
    ],
)
def test_policy_rejects_nonsense(kw: dict[str, timedelta | None]) -> None:
    with pytest.raises(ValueError):
        Policy(**kw)  # type: ignore[arg-type]


# --- success --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ok", "not_modified"])
@pytest.mark.parametrize("failures", [0, 1, 7, 40])
def test_success_resets_failures_and_polls_at_the_interval(kind: str, failures: int) -> None:
    d = decide(Outcome(kind=kind), failures=failures)  # type: ignore[arg-type]
    assert d == Decision(NOW + 15 * M, "interval", 0, False, None, "every 15m")


def test_success_is_not_jittered() -> None:
    times = {decide(OK, seed=seed).next_poll for seed in range(20)}
    assert times == {NOW + 15 * M}


def test_one_second_interval_is_valid() -> None:
    policy = Policy(interval=S)
    assert decide(OK, policy).next_poll == NOW + S
    first = decide(ERROR, policy)
    assert first.reason == "backoff"
    assert NOW + S <= first.next_poll <= NOW + 1.2 * S
    # the fifth failure in a row: 1s * 2**4 = 16s, jittered within [12.8s, 19.2s]
    fifth = decide(ERROR, policy, failures=4)
    assert NOW + 12.8 * S <= fifth.next_poll <= NOW + 19.2 * S


# --- backoff --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures_before", "base"),
    [
        (0, 15 * M),  # the first failure retries at the usual time
        (1, 30 * M),
        (2, 1 * H),
        (3, 2 * H),
        (4, 4 * H),
        (5, 8 * H),
        (6, 16 * H),
        (7, 24 * H),  # 32h, capped
        (8, 24 * H),
        (50, 24 * H),
        (10_000, 24 * H),  # must not overflow
    ],
)
def test_backoff_grows_and_caps_at_24h(failures_before: int, base: timedelta) -> None:
    low = max(15 * M, base * 0.8)
    high = min(24 * H, base * 1.2)
    for seed in range(50):
        d = decide(ERROR, seed=seed, failures=failures_before)
        assert d.reason == "backoff"
        assert d.failures == failures_before + 1
        assert not d.gone and d.url is None
        assert low <= d.next_poll - NOW <= high, seed
        assert d.detail.startswith(f"backoff {failures_before + 1} failure")


def test_backoff_jitter_is_the_seeded_draw() -> None:
    # third failure: 15m * 2**2 = 1h, times one uniform draw from [0.8, 1.2]
    for seed in range(10):
        factor = random.Random(seed).uniform(0.8, 1.2)
        d = decide(ERROR, seed=seed, failures=2)
        assert abs((d.next_poll - NOW).total_seconds() - 3600 * factor) < 1e-3


def test_backoff_jitter_spreads_feeds_that_failed_together() -> None:
    delays = [decide(ERROR, seed=seed, failures=2).next_poll - NOW for seed in range(300)]
    assert all(48 * M <= d <= 72 * M for d in delays)
    assert min(delays) < 52 * M and max(delays) > 68 * M
    assert len(set(delays)) > 250


def test_backoff_custom_ceiling_and_interval_beyond_it() -> None:
    short = Policy(interval=10 * M, backoff_ceiling=1 * H)
    assert decide(ERROR, short, failures=30).next_poll - NOW <= 1 * H
    assert decide(ERROR, short, failures=30).next_poll - NOW >= 48 * M
    # a feed polled every 48h is never retried sooner than that when failing
    slow = Policy(interval=48 * H, max_interval=24 * H)
    for failures in (0, 3, 30):
        assert decide(ERROR, slow, failures=failures).next_poll == NOW + 48 * H


def test_backoff_function_rejects_zero_failures() -> None:
    with pytest.raises(ValueError):
        schedule.backoff(15 * M, 0, 24 * H, random.Random(0))


def test_failures_then_success_resets() -> None:
    current = state()
    rng = random.Random(7)
    lower_bounds = [15 * M, 24 * M, 48 * M, 96 * M]  # max(interval, 0.8 * 15m * 2**(n-1))
    for n, low in enumerate(lower_bounds, start=1):
        d = schedule.decide(current, ERROR, POLICY, NOW, rng)
        assert d.failures == n
        assert d.next_poll - NOW >= low
        current = state(failures=d.failures, next_poll=d.next_poll, next_reason=d.reason)
    d = schedule.decide(current, OK, POLICY, NOW, rng)
    assert (d.failures, d.reason, d.next_poll) == (0, "interval", NOW + 15 * M)
    # and the next failure starts the ladder again at the interval
    again = schedule.decide(state(failures=0), ERROR, POLICY, NOW, rng)
    assert again.failures == 1 and again.next_poll - NOW <= 18 * M


# --- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", NOW + 120 * S),
        ("  120 ", NOW + 120 * S),
        ("0", NOW),
        (http_date(NOW + 1 * H), NOW + 1 * H),
        ("Fri, 01 Mar 2024 13:00:00 GMT", NOW + 1 * H),
        ("Friday, 01-Mar-24 13:00:00 GMT", NOW + 1 * H),  # RFC 850
        ("Fri Mar  1 13:00:00 2024", NOW + 1 * H),  # asctime
        (http_date(NOW - 1 * H), NOW),  # in the past: now
        ("604800", NOW + 7 * D),
        ("604801", NOW + 7 * D),  # capped at 7 days
        ("9" * 40, NOW + 7 * D),
        ("Fri, 01 Mar 2100 13:00:00 GMT", NOW + 7 * D),
        ("soon", None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("١٢٠", None),  # Arabic-Indic digits are not delta-seconds
        ("Fri, 32 Mar 2024 13:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str, expected: datetime | None) -> None:
    assert schedule.parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(status: int) -> None:
    outcome = Outcome(kind="rate_limited", http_status=status, retry_after="7200")
    d = decide(outcome)
    assert d.next_poll == NOW + 2 * H
    assert (d.reason, d.failures, d.gone) == ("retry-after", 1, False)
    assert d.detail == "Retry-After 2h"


def test_retry_after_http_date_is_honoured() -> None:
    outcome = Outcome(kind="rate_limited", http_status=429, retry_after=http_date(NOW + 3 * H))
    d = decide(outcome, failures=2)
    assert (d.next_poll, d.reason, d.failures) == (NOW + 3 * H, "retry-after", 3)


def test_retry_after_never_shortens_the_backoff() -> None:
    # "Retry-After: 1" from a server that refuses every time must not mean every second
    outcome = Outcome(kind="rate_limited", http_status=429, retry_after="1")
    d = decide(outcome, failures=3)  # 4th failure: 2h, jittered to [1.6h, 2.4h]
    assert d.reason == "retry-after"
    assert 96 * M <= d.next_poll - NOW <= 144 * M
    assert d.detail.startswith("Retry-After 1s (backoff 4 failures: ")


@pytest.mark.parametrize("value", [None, "soon", "", "-1"])
def test_rate_limited_without_usable_retry_after_backs_off(value: str | None) -> None:
    d = decide(Outcome(kind="rate_limited", http_status=503, retry_after=value))
    assert d.reason == "backoff"
    assert 15 * M <= d.next_poll - NOW <= 18 * M


def test_retry_after_on_a_plain_error_is_ignored() -> None:
    # only 429/503 ("rate_limited") carry the meaning; a 500's header is not a schedule
    d = decide(Outcome(kind="error", http_status=500, retry_after="86400"))
    assert d.reason == "backoff" and d.next_poll - NOW <= 18 * M


# --- 410 Gone and redirects -----------------------------------------------------------


@pytest.mark.parametrize("failures", [0, 4])
def test_gone_stops_polling(failures: int) -> None:
    d = decide(Outcome(kind="gone", http_status=410), failures=failures)
    assert d.gone is True
    assert d.reason == "gone"
    assert d.next_poll == schedule.NEVER
    assert d.next_poll > NOW + 1000 * 365 * D
    assert d.failures == failures + 1
    assert d.url is None


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome(kind="ok", permanent_url="https://new.example/feed"), "https://new.example/feed"),
        (
            Outcome(kind="not_modified", permanent_url="https://new.example/f"),
            "https://new.example/f",
        ),
        (Outcome(kind="ok", permanent_url=URL), None),  # already stored
        (Outcome(kind="ok"), None),  # 302/307 chains: the fetcher reports no permanent_url
        (Outcome(kind="error", http_status=404, permanent_url="https://new.example/f"), None),
        (Outcome(kind="gone", http_status=410, permanent_url="https://new.example/f"), None),
    ],
)
def test_permanent_redirect_moves_the_feed_only_on_success(
    outcome: Outcome, expected: str | None
) -> None:
    assert decide(outcome).url == expected


# --- hints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "outcome", "interval", "reason"),
    [
        # <ttl>/sy:updatePeriod lengthen...
        (POLICY, Outcome(kind="ok", hint_seconds=3600), 1 * H, "hint"),
        # ...but never shorten below the configured interval
        (POLICY, Outcome(kind="ok", hint_seconds=60), 15 * M, "interval"),
        (POLICY, Outcome(kind="ok", hint_seconds=900), 15 * M, "interval"),
        (POLICY, Outcome(kind="ok", hint_seconds=0), 15 * M, "interval"),
        (POLICY, Outcome(kind="ok", hint_seconds=-60), 15 * M, "interval"),
        # ...and never beyond max_interval
        (POLICY, Outcome(kind="ok", hint_seconds=7 * 86400), 24 * H, "hint"),
        (
            Policy(interval=M, max_interval=2 * H),
            Outcome(kind="ok", hint_seconds=86400),
            2 * H,
            "hint",
        ),
        # a configured interval beyond max_interval is itself the cap
        (
            Policy(interval=48 * H, max_interval=24 * H),
            Outcome(kind="ok", hint_seconds=3 * 86400),
            48 * H,
            "interval",
        ),
        (Policy(interval=S), Outcome(kind="ok", hint_seconds=5), 5 * S, "hint"),
        # Cache-Control / Expires on a 200 or 304
        (POLICY, Outcome(kind="ok", cache_control="public, max-age=3600"), 1 * H, "hint"),
        (POLICY, Outcome(kind="not_modified", cache_control="max-age=7200"), 2 * H, "hint"),
        (POLICY, Outcome(kind="ok", cache_control="max-age=60"), 15 * M, "interval"),
        (POLICY, Outcome(kind="ok", cache_control="no-store, max-age=7200"), 15 * M, "interval"),
        (POLICY, Outcome(kind="ok", expires=http_date(NOW + 2 * H)), 2 * H, "hint"),
        (POLICY, Outcome(kind="ok", expires=http_date(NOW - 2 * H)), 15 * M, "interval"),
        # the longest hint wins
        (
            POLICY,
            Outcome(kind="ok", hint_seconds=1800, cache_control="max-age=5400"),
            90 * M,
            "hint",
        ),
        (
            POLICY,
            Outcome(kind="ok", hint_seconds=5400, cache_control="max-age=1800"),
            90 * M,
            "hint",
        ),
    ],
)
def test_hints_lengthen_but_never_shorten(
    policy: Policy, outcome: Outcome, interval: timedelta, reason: str
) -> None:
    d = decide(outcome, policy)
    assert d.next_poll - NOW == interval
    assert d.reason == reason


def test_hint_detail_names_both_intervals() -> None:
    assert decide(Outcome(kind="ok", hint_seconds=3600)).detail == "hint 1h (interval 15m)"


def test_not_modified_keeps_the_last_parsed_hint() -> None:
    # a 304 has no body to parse: the stored hint still stands
    d = decide(Outcome(kind="not_modified"), hint_seconds=3600)
    assert (d.next_poll, d.reason) == (NOW + 1 * H, "hint")


def test_a_200_without_a_hint_drops_the_old_one() -> None:
    d = decide(Outcome(kind="ok"), hint_seconds=3600)
    assert (d.next_poll, d.reason) == (NOW + 15 * M, "interval")


def test_backoff_starts_from_the_hinted_interval() -> None:
    # a feed that asked for hourly polls is not retried every 15m when it fails
    d = decide(ERROR, hint_seconds=3600)
    assert 1 * H <= d.next_poll - NOW <= 72 * M


def test_error_responses_cache_headers_are_not_hints() -> None:
    d = decide(Outcome(kind="error", http_status=500, cache_control="max-age=86400"))
    assert d.next_poll - NOW <= 18 * M


# --- cache_hint -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "expires", "date", "expected"),
    [
        ("max-age=3600", None, None, 1 * H),
        ("public, MAX-AGE=600, must-revalidate", None, None, 10 * M),
        ('max-age="300"', None, None, 5 * M),
        ("max-age=300, max-age=900", None, None, 5 * M),  # first occurrence
        ("max-age=0", None, None, None),
        ("max-age=abc", None, None, None),
        ("max-age=-5", None, None, None),
        ("no-store", None, None, None),
        ("no-cache", http_date(NOW + H), None, None),
        ("max-age=600, no-cache", None, None, None),
        ("s-maxage=3600", None, None, None),  # shared caches only: not us
        ("private", None, None, None),
        ("max-age=600", http_date(NOW + 5 * H), None, 10 * M),  # max-age wins over Expires
        ("", http_date(NOW + 5 * H), None, 5 * H),
        (None, http_date(NOW + 5 * H), None, 5 * H),
        (None, http_date(NOW - 5 * H), None, None),  # in the past
        (None, http_date(NOW), None, None),
        (None, "0", None, None),  # the classic "already expired"
        (None, "not a date", None, None),
        # Expires counts from the response's own Date: their clock 1h behind ours
        (None, http_date(NOW + 1 * H), http_date(NOW - 1 * H), 2 * H),
        (None, http_date(NOW + 1 * H), "garbage", 1 * H),
        (None, None, None, None),
    ],
)
def test_cache_hint(
    cache_control: str | None, expires: str | None, date: str | None, expected: timedelta | None
) -> None:
    assert schedule.cache_hint(cache_control, expires, NOW, date) == expected


def test_cache_hint_caps_absurd_max_age() -> None:
    hint = schedule.cache_hint("max-age=" + "9" * 30, None, NOW)
    assert hint == timedelta(seconds=2**31)


# --- auto -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries_per_week", "policy", "expected"),
    [
        (500.0, AUTO, timedelta(seconds=1210)),  # a wire feed: 604800 / 500 = 1209.6s
        (1.0, AUTO, 24 * H),  # a quiet feed: 7d, clamped to max_interval
        (7.0, AUTO, 24 * H),  # one a day
        (14.0, AUTO, 12 * H),
        (168.0, AUTO, 1 * H),
        (10_000.0, AUTO, 5 * M),  # clamped to min_interval
        (0.0, AUTO, 24 * H),  # nothing in the window: as rarely as allowed
        (None, AUTO, 15 * M),  # unknown rhythm: the default
        (float("nan"), AUTO, 15 * M),
        (None, Policy(interval=None, min_interval=30 * M), 30 * M),
        (None, Policy(interval=None, min_interval=S, max_interval=10 * M), 10 * M),
        (500.0, Policy(interval=None, min_interval=S, max_interval=H), timedelta(seconds=1210)),
        (604800.0 * 2, Policy(interval=None, min_interval=S), S),
    ],
)
def test_auto_interval(entries_per_week: float | None, policy: Policy, expected: timedelta) -> None:
    assert schedule.auto_interval(entries_per_week, policy) == expected


def test_auto_decisions_follow_the_rhythm() -> None:
    wire = decide(Outcome(kind="ok", entries_per_week=500.0), AUTO)
    quiet = decide(Outcome(kind="ok", entries_per_week=1.0), AUTO)
    assert (wire.next_poll - NOW, wire.reason) == (timedelta(seconds=1210), "auto")
    assert wire.detail == "auto 20m10s (500 entries/week)"
    assert (quiet.next_poll - NOW, quiet.reason) == (24 * H, "auto")


def test_auto_with_a_hint_and_failure() -> None:
    hinted = decide(Outcome(kind="ok", entries_per_week=500.0, hint_seconds=3600), AUTO)
    assert (hinted.next_poll - NOW, hinted.reason) == (1 * H, "hint")
    shorter = decide(Outcome(kind="ok", entries_per_week=1.0, hint_seconds=3600), AUTO)
    assert (shorter.next_poll - NOW, shorter.reason) == (24 * H, "auto")
    failed = decide(Outcome(kind="error", entries_per_week=500.0), AUTO)
    assert timedelta(seconds=1210) <= failed.next_poll - NOW <= timedelta(seconds=1452)


# --- start-up -------------------------------------------------------------------------


def test_first_poll_spreads_over_the_interval() -> None:
    times = [schedule.first_poll(NOW, 15 * M, random.Random(seed)) for seed in range(200)]
    assert all(NOW <= t < NOW + 15 * M for t in times)
    assert min(times) < NOW + 1 * M and max(times) > NOW + 14 * M


def delay(policy: Policy = POLICY, *, seed: int = 0, **kw: object) -> timedelta | None:
    return schedule.initial_delay(state(**kw), policy, NOW, random.Random(seed))


def test_initial_delay_new_feed_is_polled_almost_at_once() -> None:
    delays = [delay(seed=s, last_fetch=None) for s in range(100)]
    assert all(d is not None and timedelta(0) <= d < 10 * S for d in delays)
    assert len(set(delays)) > 90
    short = [delay(Policy(interval=S), seed=s, last_fetch=None) for s in range(50)]
    assert all(d is not None and d < S for d in short)


@pytest.mark.parametrize(
    ("policy", "kw", "expected"),
    [
        # a stored next poll ahead is kept
        (POLICY, {"next_poll": NOW + 5 * M, "next_reason": "interval"}, 5 * M),
        # a backoff or Retry-After survives a restart, even beyond the interval
        (POLICY, {"next_poll": NOW + 6 * H, "next_reason": "backoff"}, 6 * H),
        (POLICY, {"next_poll": NOW + 2 * D, "next_reason": "retry-after"}, 2 * D),
        (POLICY, {"next_poll": NOW + 30 * D, "next_reason": "retry-after"}, 7 * D),
        # the config shortened the interval since: not held to the old wait
        (POLICY, {"next_poll": NOW + 10 * H, "next_reason": "interval"}, 15 * M),
        # ...unless the feed's own hint asks for it
        (POLICY, {"next_poll": NOW + 10 * H, "next_reason": "hint", "hint_seconds": 7200}, 2 * H),
        # an auto feed's long wait is kept (its rhythm is not known here)
        (AUTO, {"next_poll": NOW + 20 * H, "next_reason": "auto"}, 20 * H),
        # no stored next poll: last fetch + interval
        (POLICY, {"last_fetch": NOW - 5 * M}, 10 * M),
    ],
)
def test_initial_delay_honours_stored_waits(
    policy: Policy, kw: dict[str, object], expected: timedelta
) -> None:
    assert delay(policy, seed=0, **kw) == expected


def test_initial_delay_auto_with_known_rhythm_caps_the_stored_wait() -> None:
    st = state(next_poll=NOW + 20 * H, next_reason="auto")
    got = schedule.initial_delay(st, AUTO, NOW, random.Random(0), entries_per_week=500.0)
    assert got == timedelta(seconds=1210)


@pytest.mark.parametrize(
    ("policy", "kw", "bound"),
    [
        (POLICY, {"next_poll": NOW - 3 * H, "next_reason": "interval"}, M),
        (POLICY, {"next_poll": NOW, "next_reason": "backoff"}, M),
        (POLICY, {"last_fetch": NOW - 2 * D}, M),
        (Policy(interval=10 * S), {"next_poll": NOW - H}, 10 * S),
        (AUTO, {"next_poll": NOW - H}, 5 * M),
    ],
)
def test_initial_delay_overdue_feeds_are_spread(
    policy: Policy, kw: dict[str, object], bound: timedelta
) -> None:
    delays = [delay(policy, seed=s, **kw) for s in range(100)]
    assert all(d is not None and timedelta(0) <= d < bound for d in delays)
    assert len(set(delays)) > 90


def test_initial_delay_gone_feed_is_never_polled() -> None:
    assert delay(gone=True, next_poll=schedule.NEVER, next_reason="gone") is None
    assert delay(gone=True, last_fetch=None) is None


# --- Outcome.from_fetch ---------------------------------------------------------------


def fetched(status: int, headers: dict[str, str], permanent_url: str | None = None) -> Fetched:
    return Fetched(
        url=URL,
        final_url=permanent_url or URL,
        permanent_url=permanent_url,
        status=status,
        body=b"<rss/>" if status == 200 else b"",
        headers=headers,
        etag='"abc"',
        last_modified=None,
    )


def test_from_fetch_200() -> None:
    headers = {"cache-control": "max-age=600", "expires": "0", "date": http_date(NOW)}
    got = Outcome.from_fetch(
        fetched(200, headers, "https://new.example/feed"), hint_seconds=3600, entries_per_week=3.5
    )
    assert got == Outcome(
        kind="ok",
        http_status=200,
        cache_control="max-age=600",
        expires="0",
        date=http_date(NOW),
        hint_seconds=3600,
        entries_per_week=3.5,
        permanent_url="https://new.example/feed",
    )


def test_from_fetch_304() -> None:
    got = Outcome.from_fetch(fetched(304, {}))
    assert (got.kind, got.http_status, got.cache_control) == ("not_modified", 304, None)


@pytest.mark.parametrize(
    ("error", "kind", "status", "retry_after"),
    [
        (FetchError("gone", URL, status=410), "gone", 410, None),
        (FetchError("slow down", URL, status=429, retry_after="120"), "rate_limited", 429, "120"),
        (FetchError("down", URL, status=503, retry_after="60"), "rate_limited", 503, "60"),
        (FetchError("down", URL, status=503), "rate_limited", 503, None),
        (FetchError("boom", URL, status=500), "error", 500, None),
        (FetchError("missing", URL, status=404), "error", 404, None),
        (FetchError("timed out", URL), "error", None, None),
        (ParseError("not a feed", URL), "error", None, None),
        (OSError("connection reset"), "error", None, None),
    ],
)
def test_from_fetch_errors(
    error: BaseException, kind: str, status: int | None, retry_after: str | None
) -> None:
    got = Outcome.from_fetch(error, entries_per_week=2.0)
    assert (got.kind, got.http_status, got.retry_after) == (kind, status, retry_after)
    assert got.entries_per_week == 2.0
    assert got.permanent_url is None


def test_from_fetch_429_end_to_end() -> None:
    outcome = Outcome.from_fetch(FetchError("slow down", URL, status=429, retry_after="7200"))
    d = decide(outcome)
    assert (d.next_poll, d.reason) == (NOW + 2 * H, "retry-after")


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown outcome kind"):
        Outcome(kind="weird")  # type: ignore[arg-type]


# --- odds and ends --------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda now: schedule.decide(state(), OK, POLICY, now, random.Random(0)),
        lambda now: schedule.parse_retry_after("5", now),
        lambda now: schedule.cache_hint("max-age=5", None, now),
        lambda now: schedule.first_poll(now, M, random.Random(0)),
        lambda now: schedule.initial_delay(state(), POLICY, now, random.Random(0)),
    ],
)
def test_naive_now_is_rejected(call: object) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call(NOW.replace(tzinfo=None))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0s"),
        (S, "1s"),
        (45 * S, "45s"),
        (15 * M, "15m"),
        (90 * M, "1h30m"),
        (24 * H, "1d"),
        (D + 3 * H + 5 * S, "1d3h5s"),
        (timedelta(seconds=1209.6), "20m10s"),
        (-5 * S, "0s"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert schedule.format_duration(delta) == text


def test_every_reason_is_reachable() -> None:
    reasons = {
        decide(OK).reason,
        decide(OK, AUTO).reason,
        decide(Outcome(kind="ok", hint_seconds=7200)).reason,
        decide(ERROR).reason,
        decide(Outcome(kind="rate_limited", http_status=429, retry_after="60")).reason,
        decide(Outcome(kind="gone", http_status=410)).reason,
    }
    assert reasons == set(schedule.REASONS)
