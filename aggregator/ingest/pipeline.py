"""The pipeline for one feed: state -> fetch -> parse -> normalize -> dedupe -> store -> topics.

`poll_feed` strings the stages together and decides nothing itself: `schedule`
says when to poll next, `dedupe` which story an entry joins, `topics` which topics
hold it. A failing feed is a `PollResult` with status "error", never an exception;
anything else that raises is a bug and propagates.

Network and parsing happen before the write transaction opens, so a slow outlet
never holds the database, and a crash mid-poll leaves it whole (one transaction
per feed).
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from aggregator.config import Config, FeedConfig
from aggregator.errors import FetchError, ParseError
from aggregator.ingest import parse, prepare, schedule
from aggregator.ingest.http import fetch, limiter
from aggregator.ingest.memory import tune_malloc
from aggregator.ingest.prepare import TopicMatcher, compile_topics
from aggregator.ingest.workers import ParsePool
from aggregator.match import dedupe, topics
from aggregator.match.termstats import TermStats, Transaction
from aggregator.models import Fetched, ParsedFeed, PollResult
from aggregator.storage import store
from aggregator.storage.writer import GroupWriter

log = logging.getLogger(__name__)

#: a fetched feed with at most this many items not seen before is parsed in its poll
#: thread, not in a parse process
INLINE_ITEMS = 5


@dataclass
class Poller:
    """What outlives one feed's poll: the config, the HTTP session, the host limiter."""

    config: Config
    session: fetch.Session = field(init=False)
    limiter: limiter.HostLimiter = field(init=False)
    matchers: list[TopicMatcher] = field(init=False)
    host: str = field(init=False)
    rng: random.Random = field(default_factory=random.Random)
    #: callbacks run after a poll changed topics (the web cache, export_dir)
    on_change: list[Callable[[], None]] = field(default_factory=list)
    _rng_lock: threading.Lock = field(default_factory=threading.Lock)
    #: dedupe's document frequencies, read once per term
    terms: TermStats = field(default_factory=TermStats)
    writer: GroupWriter[Transaction] = field(init=False)
    parsers: ParsePool = field(init=False)
    #: the compiled topics as parse processes receive them
    matchers_blob: bytes = field(init=False)

    def __post_init__(self) -> None:
        tune_malloc()
        polling = self.config.polling
        self.session = fetch.make_session(polling.concurrency)
        self.limiter = limiter.HostLimiter(polling.per_host)
        self.matchers = compile_topics(self.config)
        self.writer = GroupWriter(
            self.config.database.path,
            lambda db: Transaction(db, self.terms),
            self.terms.fold_pending,
        )
        self.parsers = ParsePool(polling.parse_processes)
        self.matchers_blob = pickle.dumps(self.matchers)
        self.host = urlsplit(self.config.server.base_url).hostname or "localhost"

    def store(self) -> store.Store:
        return store.for_thread(self.config.database.path)

    def close(self, timeout: float | None = None) -> None:
        """Release the HTTP session and the parse processes, waiting at most
        `timeout` seconds for a parse in progress (the daemon's stop has a deadline)."""
        self.session.close()
        self.parsers.close(timeout)
        self.writer.close(timeout)


def _now() -> datetime:
    return datetime.now(UTC)


def poll_feed(poller: Poller, feed: FeedConfig, now: datetime | None = None) -> PollResult:
    """Poll one feed once and store what is new. Never raises for the feed's own failure."""
    started = time.monotonic()
    db = poller.store()
    state = db.feed_state(feed.name)
    if state.gone:
        return PollResult(feed.name, "gone", http_status=410, error=state.last_error)
    policy = schedule.Policy.for_feed(feed, poller.config.polling)
    polling = poller.config.polling
    fetched: Fetched | None = None
    try:
        with poller.limiter.slot(state.url):
            fetched = fetch.get(
                poller.session,
                state,
                timeout=polling.timeout.total_seconds(),
                max_body=polling.max_body,
                allow_private=feed.allow_private,
            )
        now = now or _now()
        parsed: ParsedFeed | None = None
        prepared: list[prepare.Prepared] = []
        if fetched.status == 200:
            # Most of a changed feed's items are the ones already stored: topic matching
            # and dedupe keys are the costly part of an entry, so only new and edited
            # ones pay it. (Only this feed's poll writes this feed's entries, so the
            # read stays true.)
            known = db.item_digests(feed.name)
            # A feed that brings a few new items (the steady state) is parsed here:
            # shipping it to a parse process costs more than those items, and a daemon
            # whose polls are all like that never starts one (less memory).
            unseen = parse.unseen_items(fetched.body, parse.item_digests(known))
            parsed, prepared = poller.parsers.run(
                prepare.parse_and_prepare,
                fetched.body,
                fetched.headers,
                fetched.final_url,
                polling.max_entries,
                feed.name,
                now,
                db.entry_hashes(feed.name),
                poller.matchers_blob,
                known,
                inline=unseen is not None and unseen <= INLINE_ITEMS,
            )
    except (FetchError, ParseError) as exc:
        return _record_failure(poller, feed, state, exc, fetched, policy, now or _now(), started)

    if parsed is None:  # 304: no parse, no write beyond the fetch state
        poller.parsers.close_if_idle()  # a daemon whose feeds all answer 304 sheds them
        outcome = schedule.Outcome.from_fetch(
            fetched, entries_per_week=_rhythm(db, feed, policy, now)
        )
        decision = _decide(poller, state, outcome, policy, now)
        poller.writer.run(lambda w, tx: _record_success(w, feed, fetched, decision, now, None))
        return _result(feed, "not_modified", fetched, decision, started)

    def write(w: store.Store, tx: Transaction) -> tuple[int, int, int, schedule.Decision]:
        new, updated, merged = _store_entries(poller, w, tx, prepared, now)
        outcome = schedule.Outcome.from_fetch(
            fetched,
            hint_seconds=parsed.hint_seconds,
            entries_per_week=_rhythm(w, feed, policy, now),
        )
        decision = _decide(poller, state, outcome, policy, now)
        _record_success(w, feed, fetched, decision, now, parsed)
        return new, updated, merged, decision

    new, updated, merged, decision = poller.writer.run(write)
    if new or updated:
        for callback in poller.on_change:
            callback()
    return _result(
        feed,
        "ok",
        fetched,
        decision,
        started,
        new=new,
        updated=updated,
        merged=merged,
        warning=parsed.warning,
    )


def _find_story(
    poller: Poller, db: store.Store, p: prepare.Prepared, now: datetime, freq: Transaction
) -> int | None:
    """The story a new entry belongs to: same link or guid, else a near-duplicate."""
    entry = p.entry
    story_id = db.story_by_link(entry.canonical_link, entry.guid)
    if story_id is not None:
        return story_id
    window = poller.config.dedupe.window
    rows = db.candidate_entries(
        dedupe.query_keys(p.keys, p.sig.title, freq.counts(p.keys)),
        entry.published - window,
        entry.published + window,
        min_shared=dedupe.MIN_SHARED_KEYS,
        limit=dedupe.MAX_CANDIDATES,
    )
    if not rows:
        return None
    candidates = [
        dedupe.Candidate(
            story_id=r.story_id,
            feeds=r.feeds,
            title=r.title,
            text=r.text,
            published=r.published,
            sig=freq.signature(r.entry_id, r.sig),
        )
        for r in rows
    ]
    wanted = set(p.terms)
    known = freq.stats.known
    for r, c in zip(rows, candidates, strict=True):
        if c.sig is not None and r.entry_id not in known:
            wanted |= c.sig.everything
            known.add(r.entry_id)
    freq.load(wanted)
    story_id, score = dedupe.decide_scored(
        entry,
        candidates,
        now=now,
        window=window,
        sig=p.sig,
        weights=freq.weights,
        aliases=dedupe.aliases_of(poller.config.aliases),
    )
    if story_id is not None:
        log.debug(
            "%s: %r joins story %d (score %.2f of threshold 1.0)",
            entry.feed,
            entry.title,
            story_id,
            score,
        )
    return story_id


def _store_entries(
    poller: Poller,
    db: store.Store,
    freq: Transaction,
    prepared: Sequence[prepare.Prepared],
    now: datetime,
) -> tuple[int, int, int]:
    """Insert or update each entry, joining stories; inside the caller's transaction."""
    new = updated = merged = 0
    touched: set[int] = set()
    # Oldest first: feeds list newest first, and the older copy should lead its story.
    for p in sorted(prepared, key=lambda p: p.entry.published):
        entry = p.entry
        existing = db.entry_by_key(entry.feed, entry.key)
        if existing is not None:
            if existing.content_hash != entry.content_hash:
                db.update_entry(existing.id, entry, now)
                db.touch_story(existing.story_id, now)
                touched.add(existing.story_id)
                updated += 1
                _add_to_topics(db, existing.story_id, p.matches)
            continue
        story_id = _find_story(poller, db, p, now, freq)
        if story_id is None:
            story_id = db.new_story(entry.published, now, poller.host)
            db.add_new_story_to_topics(story_id, entry.published, p.matches)
        else:
            merged += 1
            db.count_merge(entry.feed)
            db.touch_story(story_id, now)
            _add_to_topics(db, story_id, p.matches)
        entry_id = db.insert_entry(entry, story_id, now, p.sig.pack())
        db.add_entry_keys(entry_id, p.keys, entry.published)
        freq.add(p.terms)
        touched.add(story_id)
        new += 1
    db.bump_topics_of(touched)
    return new, updated, merged


def _add_to_topics(db: store.Store, story_id: int, matches: dict[str, tuple[str, ...]]) -> None:
    for slug, terms in matches.items():
        db.add_topic_story(slug, story_id, terms)


def _rhythm(
    db: store.Store, feed: FeedConfig, policy: schedule.Policy, now: datetime
) -> float | None:
    return db.entries_per_week(feed.name, now) if policy.interval is None else None


def _decide(
    poller: Poller,
    state: object,
    outcome: schedule.Outcome,
    policy: schedule.Policy,
    now: datetime,
) -> schedule.Decision:
    with poller._rng_lock:  # random.Random is not meant to be shared across threads
        return schedule.decide(state, outcome, policy, now, poller.rng)  # type: ignore[arg-type]


def _record_success(
    db: store.Store,
    feed: FeedConfig,
    fetched: Fetched,
    decision: schedule.Decision,
    now: datetime,
    parsed: ParsedFeed | None,
) -> None:
    db.record_fetch(
        feed.name,
        at=now,
        status=fetched.status,
        error=None,
        success=True,
        url=decision.url,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
        failures=decision.failures,
        next_poll=decision.next_poll,
        next_reason=decision.reason,
        next_detail=decision.detail,
        gone=decision.gone,
        hint_seconds=parsed.hint_seconds if parsed else None,
        warning=parsed.warning if parsed else None,
        title=parsed.title if parsed else None,
        site_link=parsed.link if parsed else None,
        language=parsed.language if parsed else None,
        item_digests=parsed.item_digests if parsed else None,
    )


def _record_failure(
    poller: Poller,
    feed: FeedConfig,
    state: object,
    exc: FetchError | ParseError,
    fetched: Fetched | None,
    policy: schedule.Policy,
    now: datetime,
    started: float,
) -> PollResult:
    status = exc.status if isinstance(exc, FetchError) else (fetched.status if fetched else None)
    db = poller.store()
    outcome = schedule.Outcome.from_fetch(exc, entries_per_week=_rhythm(db, feed, policy, now))
    decision = _decide(poller, state, outcome, policy, now)
    poller.writer.run(
        lambda w, tx: w.record_fetch(
            feed.name,
            at=now,
            status=status,
            error=str(exc),
            success=False,
            url=decision.url,
            failures=decision.failures,
            next_poll=decision.next_poll,
            next_reason=decision.reason,
            next_detail=decision.detail,
            gone=decision.gone,
        ),
    )
    result = PollResult(
        feed.name,
        "gone" if decision.gone else "error",
        http_status=status,
        seconds=time.monotonic() - started,
        error=str(exc),
        next_poll=decision.next_poll,
        next_reason=decision.reason,
    )
    log.warning(_log_line(result))
    return result


def _result(
    feed: FeedConfig,
    status: str,
    fetched: Fetched,
    decision: schedule.Decision,
    started: float,
    **counts: object,
) -> PollResult:
    result = PollResult(
        feed.name,
        status,
        http_status=fetched.status,
        seconds=time.monotonic() - started,
        next_poll=decision.next_poll,
        next_reason=decision.reason,
        **counts,  # type: ignore[arg-type]
    )
    log.info(_log_line(result))
    return result


def _log_line(r: PollResult) -> str:
    line = (
        f"feed={r.feed} status={r.status} http={r.http_status or '-'} new={r.new} "
        f"updated={r.updated} merged={r.merged} seconds={r.seconds:.2f}"
    )
    if r.error:
        line += f" error={json.dumps(r.error, ensure_ascii=False)}"
    return line


def poll_many(
    poller: Poller, feeds: Iterable[FeedConfig], now: datetime | None = None
) -> Iterator[PollResult]:
    """Poll feeds on `[polling] concurrency` threads; results in completion order."""
    feeds = list(feeds)
    if poller.store().never_fetched(f.name for f in feeds):
        # a first fetch brings every item a feed has, for the parse processes: start
        # them while this is the only thread, so they are forked (see ParsePool)
        poller.parsers.start()
    workers = max(1, min(poller.config.polling.concurrency, len(feeds)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
        futures = [pool.submit(poll_feed, poller, f, now) for f in feeds]
        for future in as_completed(futures):
            yield future.result()


def sync(config: Config, db: store.Store, now: datetime | None = None) -> None:
    """Bring the database in line with the config: feed rows, and topics whose
    query (or feed list, or aliases) changed are re-evaluated over stored entries."""
    db.sync_feeds((f.name, f.url) for f in config.feeds)
    stored = db.topic_query_keys()
    changed = []
    for t in config.topics:
        key = json.dumps(
            {"query": t.query, "feeds": t.feeds, "aliases": config.aliases}, sort_keys=True
        )
        if stored.get(t.slug) != key:
            changed.append((t, key))
    with db.write():
        db.drop_topics_except(t.slug for t in config.topics)
        if not changed:
            return
        matchers = {m.slug: m for m in compile_topics(config)}
        for t, key in changed:
            db.reset_topic(t.slug, key)
        for story_id, feed, title, text, language in list(db.iter_entries()):
            doc = topics.document(title, text, language)
            for t, _ in changed:
                terms = matchers[t.slug].matches(feed, doc)
                if terms is not None:
                    db.add_topic_story(t.slug, story_id, terms)
