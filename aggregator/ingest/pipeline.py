"""One feed's poll, top to bottom: state, fetch, parse and prepare, then one write
that decides each entry's story, stores it, decides the next poll and records it.

The decisions themselves are pure and live in their stages: `schedule` says when to
poll next, `dedupe` which story an entry joins, `prepare` (with `topics`) which
topics hold it. A failing feed is a `PollResult` with status "error", never an
exception; anything else that raises is a bug and propagates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aggregator.config import Config, FeedConfig
from aggregator.errors import FetchError, ParseError
from aggregator.ingest import schedule
from aggregator.ingest.http import fetch, limiter
from aggregator.ingest.memory import tune_malloc
from aggregator.ingest.workers import ParsePool
from aggregator.logs import poll_fields
from aggregator.match.termstats import TermStats, Transaction
from aggregator.models import FeedState, FeedUpdate, Fetched, ParsedFeed, PollResult
from aggregator.storage import store
from aggregator.storage.writer import GroupWriter

if TYPE_CHECKING:
    # Parsing, preparing and clustering are imported by the first poll that brings
    # entries (and by the parse processes' start): a poll whose feeds all answer 304
    # never loads feedparser, the stemmers or the place list.
    from aggregator.ingest import prepare
    from aggregator.ingest.prepare import TopicMatcher
    from aggregator.match import dedupe

log = logging.getLogger(__name__)

#: a fetched feed with at most this many items not seen before is parsed in its poll
#: thread, not in a parse process
INLINE_ITEMS = 5
#: a changed feed is parsed whole (no item left out by digest) once this long after
#: its last whole parse, so retention learns which stored entries it no longer carries
FULL_READ_EVERY = timedelta(hours=12)


@dataclass
class Poller:
    """What outlives one feed's poll: the config, the HTTP session, the host limiter."""

    config: Config
    session: fetch.Session = field(init=False)
    limiter: limiter.HostLimiter = field(init=False)
    #: the compiled topics, compiled by the first poll that parses (`topic_blob`)
    matchers: list[TopicMatcher] | None = field(init=False, default=None)
    host: str = field(init=False)
    rng: random.Random = field(default_factory=random.Random)
    #: callbacks run after a poll changed topics (the web cache, export_dir)
    on_change: list[Callable[[], None]] = field(default_factory=list)
    _rng_lock: threading.Lock = field(default_factory=threading.Lock)
    _topics_lock: threading.Lock = field(default_factory=threading.Lock)
    #: dedupe's document frequencies, read once per term
    terms: TermStats = field(default_factory=TermStats)
    writer: GroupWriter[Transaction] = field(init=False)
    parsers: ParsePool = field(init=False)
    #: the compiled topics as parse processes receive them
    matchers_blob: bytes | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        tune_malloc()
        polling = self.config.polling
        self.session = fetch.make_session(polling.concurrency, contact=polling.contact)
        self.limiter = limiter.HostLimiter(polling.per_host)
        self.writer = GroupWriter(
            self.config.database.path,
            lambda db: Transaction(db, self.terms),
            self.terms.fold_pending,
        )
        self.parsers = ParsePool(polling.parse_processes)
        self.host = urlsplit(self.config.server.base_url).hostname or "localhost"

    def store(self) -> store.Store:
        return store.for_thread(self.config.database.path)

    def topic_blob(self) -> bytes:
        """The compiled topics as parse processes receive them, compiled once."""
        with self._topics_lock:
            if self.matchers_blob is None:
                from aggregator.ingest.prepare import compile_topics

                self.matchers = compile_topics(self.config)
                self.matchers_blob = pickle.dumps(self.matchers)
            return self.matchers_blob

    def close(self, timeout: float | None = None) -> None:
        """Release the HTTP session and the parse processes, waiting at most
        `timeout` seconds for a parse in progress (the daemon's stop has a deadline)."""
        self.session.close()
        self.parsers.close(timeout)
        self.writer.close(timeout)


def _now() -> datetime:
    return datetime.now(UTC)


def poll_feed(poller: Poller, feed: FeedConfig, now: datetime | None = None) -> PollResult:
    """Poll one feed once and store what is new. Never raises for the feed's own failure.

    The whole flow of one feed, top to bottom: its state, the fetch, parse and prepare
    (in a parse process when the feed brings many new items), then one write
    transaction that decides each new entry's story, stores it, decides the next
    poll and records the outcome once. Network and parsing happen before the write
    opens, so a slow outlet never holds the database, and a crash mid-poll leaves it
    whole.
    """
    started = time.monotonic()
    db = poller.store()
    state = db.feed_state(feed.name)
    if state.gone:
        return PollResult(feed.name, "gone", http_status=410, error=state.last_error)
    policy = schedule.Policy.for_feed(feed, poller.config.polling)

    fetched: Fetched | None = None
    read: _Read | None = None
    failure: FetchError | ParseError | None = None
    try:
        fetched = _fetch(poller, feed, state)
        now = now or _now()
        if fetched.status == 200:
            read = _parse_and_prepare(poller, db, feed, fetched, now)
    except (FetchError, ParseError) as exc:
        failure = exc
    now = now or _now()
    if read is None and failure is None:  # 304: nothing to parse
        poller.parsers.close_if_idle()  # a daemon whose feeds all answer 304 sheds them

    def write(w: store.Store, tx: Transaction) -> tuple[Counts, schedule.Decision]:
        counts = Counts()
        if read is not None:
            counts = _store_entries(poller, w, tx, feed.name, read, now)
        outcome = schedule.Outcome.from_fetch(
            failure or fetched,  # type: ignore[arg-type]
            hint_seconds=read.parsed.hint_seconds if read else None,
            entries_per_week=(
                w.entries_per_week(feed.name, now) if policy.interval is None else None
            ),
        )
        with poller._rng_lock:  # random.Random is not meant to be shared across threads
            decision = schedule.decide(state, outcome, policy, now, poller.rng)
        w.record_fetch(_update(feed, now, fetched, read, failure, decision, counts))
        return counts, decision

    counts, decision = poller.writer.run(write)
    if counts.new or counts.merged or counts.updated:
        for callback in poller.on_change:
            callback()
    return _result(feed, fetched, read, failure, decision, counts, started)


@dataclass(frozen=True, slots=True)
class _Read:
    """A fetched body, parsed and prepared: what the write transaction stores."""

    parsed: ParsedFeed
    #: the new and edited entries, ready to store
    prepared: Sequence[prepare.Prepared]
    #: keys of parsed entries stored unchanged (retention marks them seen)
    unchanged: Sequence[str]
    #: every item was parsed, none left out by digest
    full_read: bool


def _fetch(poller: Poller, feed: FeedConfig, state: FeedState) -> Fetched:
    polling = poller.config.polling
    with poller.limiter.slot(state.url):
        return fetch.get(
            poller.session,
            state,
            timeout=polling.timeout.total_seconds(),
            max_body=polling.max_body,
            allow_private=feed.allow_private,
        )


def _parse_and_prepare(
    poller: Poller, db: store.Store, feed: FeedConfig, fetched: Fetched, now: datetime
) -> _Read:
    """Parse a 200's body and prepare its new and edited entries.

    Most of a changed feed's items are the ones already stored: topic matching and
    dedupe keys are the costly part of an entry, so only new and edited ones pay it
    (only this feed's poll writes this feed's entries, so the read stays true). Once
    in `FULL_READ_EVERY` every item is read, so retention learns what the feed still
    carries. A feed bringing a few unseen items (the steady state) is parsed here:
    shipping it to a parse process costs more than those items, and a daemon whose
    polls are all like that never starts one. In a poll of many feeds at once
    (`ParsePool.batch`) it goes to the parse process all the same, whose core would
    otherwise idle while the poll threads and the writer share this one.
    """
    from aggregator.ingest import parse, prepare

    known = db.item_digests(feed.name)
    last_full = db.full_read_at(feed.name)
    full_read = known is None or last_full is None or now - last_full >= FULL_READ_EVERY
    if full_read:
        known = None
    digested = parse.digested_items(fetched.body)  # once a poll: parse reuses them
    unseen = parse.unseen_items(digested, parse.item_digests(known))
    parsed, prepared, unchanged = poller.parsers.run(
        prepare.parse_and_prepare,
        fetched.body,
        fetched.headers,
        fetched.final_url,
        poller.config.polling.max_entries,
        feed.name,
        now,
        db.entry_hashes(feed.name),
        poller.topic_blob(),
        known,
        digested,
        inline=unseen is not None and unseen <= INLINE_ITEMS,
    )
    return _Read(parsed, prepared, unchanged, full_read)


def _find_story(
    poller: Poller, db: store.Store, p: prepare.Prepared, now: datetime, freq: Transaction
) -> dedupe.Decision:
    """The story a new entry belongs to: the same post at its link (`dedupe.same_post`),
    or the same guid, else a near-duplicate (with the small stories it absorbs)."""
    from aggregator.match import dedupe

    entry = p.entry
    story_id = None
    if entry.canonical_link:
        story_id = dedupe.link_story(entry, db.link_mates(entry.canonical_link, entry.feed))
    if story_id is None:
        story_id = db.story_by_guid(entry.guid)
    if story_id is not None:
        return dedupe.Decision(story_id)
    window = poller.config.dedupe.window
    plan = dedupe.key_plan(p.keys, p.sig.title, freq.counts(p.keys), freq.n_docs())
    rows = db.candidate_entries(
        [k.key for k in plan],
        entry.published - window,
        entry.published + window,
        min_shared=dedupe.MIN_SHARED_KEYS,
        limit=dedupe.MAX_CANDIDATES,
        weights=[k.weight for k in plan],
        rare=[k.rare for k in plan],
        common_limit=dedupe.COMMON_CANDIDATES,
        common_per_key=dedupe.COMMON_POSTINGS,
    )
    log.debug("%s: %r: %d candidates", entry.feed, entry.title, len(rows))
    if not rows:
        return dedupe.Decision(None)
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
    wanted = set(p.sig.everything)
    known = freq.stats.known
    for r, c in zip(rows, candidates, strict=True):
        if c.sig is not None and r.entry_id not in known:
            wanted |= c.sig.everything
            known.add(r.entry_id)
    freq.load(wanted)
    decision = dedupe.decide(
        entry,
        candidates,
        now=now,
        window=window,
        sig=p.sig,
        weights=freq.weights,
        aliases=dedupe.aliases_of(poller.config.aliases),
    )
    if decision.story is not None:
        log.debug(
            "%s: %r joins story %d (score %.2f of threshold 1.0)%s",
            entry.feed,
            entry.title,
            decision.story,
            decision.score,
            f", absorbing stories {list(decision.absorbed)}" if decision.absorbed else "",
        )
    return decision


@dataclass(frozen=True, slots=True)
class Counts:
    """What one poll did with the items it read: read = new + updated + unchanged +
    merged + skipped, whatever stage settled each."""

    read: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)

    def of_feed(self, parsed: ParsedFeed) -> Counts:
        """The stored entries' counts with what parse and prepare settled."""
        return Counts(
            read=parsed.read,
            new=self.new,
            updated=self.updated,
            unchanged=self.unchanged + parsed.unchanged,
            merged=self.merged,
            skipped=dict(parsed.skipped),
        )

    def record(self, now: datetime) -> dict[str, Any]:
        """As stored (`FeedStatus.last_counts`)."""
        return {
            "at": store.ts(now),
            "read": self.read,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "merged": self.merged,
            "skipped": dict(self.skipped),
        }


def _store_entries(
    poller: Poller,
    db: store.Store,
    freq: Transaction,
    feed: str,
    read: _Read,
    now: datetime,
) -> Counts:
    """Insert or update each entry, joining stories, and mark the ones already
    stored as seen; inside the caller's transaction."""
    new = updated = merged = unchanged = 0
    touched: set[int] = set()
    seen = list(read.unchanged)
    # Oldest first: feeds list newest first, and the older copy should lead its story.
    for p in sorted(read.prepared, key=lambda p: p.entry.published):
        entry = p.entry
        existing = db.entry_by_key(entry.feed, entry.key)
        if existing is not None:
            seen.append(entry.key)
            if existing.content_hash != entry.content_hash:
                db.update_entry(existing.id, entry, now)
                db.touch_story(existing.story_id, now)
                touched.add(existing.story_id)
                updated += 1
                _add_to_topics(db, existing.story_id, p.matches)
            else:  # stored meanwhile by another process
                unchanged += 1
            continue
        found = _find_story(poller, db, p, now, freq)
        story_id = found.story
        if story_id is None:
            new += 1
            story_id = db.new_story(entry.published, now, poller.host)
            db.add_new_story_to_topics(story_id, entry.published, p.matches)
        else:
            merged += 1
            db.count_merge(entry.feed)
            db.touch_story(story_id, now)
            db.absorb_stories(story_id, found.absorbed, now)
            _add_to_topics(db, story_id, p.matches)
        entry_id = db.insert_entry(entry, story_id, now, p.sig.pack())
        db.add_entry_keys(entry_id, p.keys, entry.published)
        freq.add(p.sig.everything)
        touched.add(story_id)
    db.mark_seen(feed, seen, now)
    db.bump_topics_of(touched)
    return Counts(new=new, updated=updated, unchanged=unchanged, merged=merged).of_feed(read.parsed)


def _add_to_topics(db: store.Store, story_id: int, matches: dict[str, tuple[str, ...]]) -> None:
    for slug, terms in matches.items():
        db.add_topic_story(slug, story_id, terms)


def _http_status(fetched: Fetched | None, failure: BaseException | None) -> int | None:
    """The status to record: the failed fetch's, or that of a body that was no feed."""
    status = failure.status if isinstance(failure, FetchError) else None
    if status is None and fetched is not None:
        status = fetched.status
    return status


def _update(
    feed: FeedConfig,
    now: datetime,
    fetched: Fetched | None,
    read: _Read | None,
    failure: FetchError | ParseError | None,
    decision: schedule.Decision,
    counts: Counts,
) -> FeedUpdate:
    """The one record of a poll's outcome that storage writes."""
    parsed = read.parsed if read else None
    status = _http_status(fetched, failure)
    ok = failure is None and fetched is not None
    return FeedUpdate(
        feed.name,
        at=now,
        success=ok,
        status=status,
        error=str(failure) if failure is not None else None,
        url=decision.url,
        failures=decision.failures,
        next_poll=decision.next_poll,
        next_reason=decision.reason,
        next_detail=decision.detail,
        gone=decision.gone,
        etag=fetched.etag if ok and fetched else None,
        last_modified=fetched.last_modified if ok and fetched else None,
        hint_seconds=parsed.hint_seconds if parsed else None,
        warning=parsed.warning if parsed else None,
        title=parsed.title if parsed else None,
        site_link=parsed.link if parsed else None,
        language=parsed.language if parsed else None,
        item_digests=parsed.item_digests if parsed else None,
        counts=counts.record(now) if read else None,
        full_read=read.full_read if read else False,
    )


def _result(
    feed: FeedConfig,
    fetched: Fetched | None,
    read: _Read | None,
    failure: FetchError | ParseError | None,
    decision: schedule.Decision,
    counts: Counts,
    started: float,
) -> PollResult:
    """What the poll did, for the caller and the log."""
    if failure is not None:
        status = "gone" if decision.gone else "error"
    else:
        status = "ok" if read else "not_modified"
    result = PollResult(
        feed.name,
        status,
        http_status=_http_status(fetched, failure),
        read=counts.read,
        new=counts.new,
        updated=counts.updated,
        unchanged=counts.unchanged,
        merged=counts.merged,
        skipped=counts.skipped,
        seconds=time.monotonic() - started,
        error=str(failure) if failure is not None else None,
        warning=read.parsed.warning if read else None,
        next_poll=decision.next_poll,
        next_reason=decision.reason,
    )
    if failure is not None:
        log.warning(_log_line(result), extra=poll_fields(result))
    else:
        log.info(_log_line(result), extra=poll_fields(result))
    return result


def _log_line(r: PollResult) -> str:
    line = (
        f"feed={r.feed} status={r.status} http={r.http_status or '-'} read={r.read} "
        f"new={r.new} updated={r.updated} unchanged={r.unchanged} merged={r.merged} "
        f"skipped={sum(r.skipped.values())}"
    )
    for reason, n in sorted(r.skipped.items()):
        line += f" skipped_{reason}={n}"
    line += f" seconds={r.seconds:.2f}"
    if r.error:
        line += f" error={json.dumps(r.error, ensure_ascii=False)}"
    return line


def poll_many(
    poller: Poller, feeds: Iterable[FeedConfig], now: datetime | None = None
) -> Iterator[PollResult]:
    """Poll feeds on `[polling] concurrency` threads; results in completion order."""
    feeds = list(feeds)
    workers = max(1, min(poller.config.polling.concurrency, len(feeds)))
    # more feeds than poll threads (cron's poll of them all): worth a parse process
    batch = len(feeds) > workers
    if poller.store().never_fetched(f.name for f in feeds):
        # a first fetch brings every item a feed has, for the parse processes: start
        # them while this is the only thread, so they are forked (see ParsePool)
        poller.parsers.start()
    elif batch:
        # forked now, as cheap as a fork is; it loads the parse stages only if a feed
        # brings new items, on the other core
        poller.parsers.start(share=False)
    with (
        poller.parsers.batch() if batch else contextlib.nullcontext(),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool,
    ):
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
        from aggregator.ingest.prepare import compile_topics
        from aggregator.match import topics

        matchers = {m.slug: m for m in compile_topics(config)}
        for t, key in changed:
            db.reset_topic(t.slug, key)
        for story_id, feed, title, text, language in list(db.iter_entries()):
            doc = topics.document(title, text, language)
            for t, _ in changed:
                terms = matchers[t.slug].matches(feed, doc)
                if terms is not None:
                    db.add_topic_story(t.slug, story_id, terms)
