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

import ctypes
import ctypes.util
import functools
import gc
import json
import logging
import multiprocessing
import os
import pickle
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from . import dedupe, fetch, parse, prepare, schedule, store, topics
from .config import Config, FeedConfig
from .errors import FetchError, ParseError
from .models import Fetched, ParsedFeed, PollResult
from .prepare import TopicMatcher, compile_topics

log = logging.getLogger(__name__)

#: a fetched feed with at most this many items not seen before is parsed in its poll
#: thread, not in a parse process
INLINE_ITEMS = 5


class TermStats:
    """Document frequencies and IDF weights for dedupe, kept for the poller's life.

    Each term is read from the store once, then counted in memory as this process
    stores entries: reading the counts of a candidate's 200 terms for every new
    entry was a third of a cold poll. Every method runs inside a write transaction,
    so the store's writer lock serializes them. New counts are logged with their
    entries and folded into the store's term_df about once a minute (see
    `Store.log_term_counts`). Another process writing meanwhile (a cron
    `aggregator poll` beside the daemon) makes these counts lag a little, or count
    our logged terms twice once it folds them: either only nudges weights, never
    the stored counts; `forget` starts over (after a prune).
    """

    #: re-weigh every term once the number of stored entries moved by this share
    REWEIGH = 0.1
    #: re-read the number of stored entries this often (it counts another process's)
    RECOUNT_SECONDS = 300.0
    #: start over past this many cached terms or known entries, so a long-running
    #: daemon stays small (each is a few tens of MiB at most)
    MAX_TERMS = 200_000
    MAX_KNOWN = 200_000
    #: fold the logged counts into the store's term_df after this many entries or
    #: seconds (and when the writer closes); `pending` holds their counts until then,
    #: so a daemon keeps a minute's worth at most
    FOLD_ENTRIES = 20_000
    FOLD_SECONDS = 60.0

    df: dict[str, int]
    #: stored entries whose terms are all in `df` already
    known: set[int]
    n_docs: int | None
    counted_at: float
    weights: dedupe.IdfWeights

    def __init__(self) -> None:
        #: logged counts not folded into the store's term_df yet, of the terms not in
        #: `df` (those in `df` are counted there); every read of the store adds them
        self.pending: dict[str, int] = {}
        #: entries whose counts are logged and not folded, and since when
        self.pending_entries = 0
        self.pending_since = 0.0
        self.forget()

    def forget(self) -> None:
        """Drop every cached count (the store's changed under us: a prune). Counts
        not folded yet must be folded first: `df` holds some of them."""
        self.df = {}
        self.known = set()
        self.n_docs = None
        self.counted_at = 0.0
        self.weights = dedupe.IdfWeights(self.df, 0)

    def begin(self, db: store.Store) -> dedupe.IdfWeights:
        """The weights to decide with during one write transaction."""
        if len(self.df) > self.MAX_TERMS or len(self.known) > self.MAX_KNOWN:
            self.fold(db)
            self.forget()
        now = time.monotonic()
        if self.n_docs is None or now - self.counted_at > self.RECOUNT_SECONDS:
            self.n_docs, self.counted_at = db.entry_count(), now
        w = self.weights
        if abs(self.n_docs - w.n_docs) > self.REWEIGH * max(w.n_docs, 1):
            self.weights = dedupe.IdfWeights(self.df, self.n_docs)
        return self.weights

    def load(self, db: store.Store, terms: set[str]) -> None:
        df = self.df
        missing = [t for t in terms if t not in df]
        if missing:
            found = db.document_frequencies(missing)
            pending = self.pending
            for t in missing:
                df[t] = found.get(t, 0) + (pending.pop(t, 0) if pending else 0)

    def store_counts(self, db: store.Store, added: Mapping[str, int], entries: int) -> None:
        """Log one transaction's new counts, and count them here too."""
        if not added:
            return
        db.log_term_counts(added)
        if not self.pending_entries:
            self.pending_since = time.monotonic()
        df, pending = self.df, self.pending
        for t, n in added.items():
            if t in df:
                df[t] += n
            else:
                pending[t] = pending.get(t, 0) + n
        self.pending_entries += entries
        if self.n_docs is not None:
            self.n_docs += entries
        self.weights.forget(added)
        if (
            self.pending_entries >= self.FOLD_ENTRIES
            or time.monotonic() - self.pending_since >= self.FOLD_SECONDS
        ):
            self.fold(db)

    def fold(self, db: store.Store) -> None:
        """Add the logged counts into term_df (inside a write transaction)."""
        db.fold_term_counts()
        self.pending = {}
        self.pending_entries = 0


#: glibc's mallopt parameters (malloc.h)
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


@functools.cache  # once per process
def _tune_malloc() -> None:
    """Keep glibc's malloc from holding memory the poll has freed.

    - One heap (arena) for all threads: glibc gives each new thread its own, up to
      8 per core, and freed memory stays mapped in each. With 8 poll threads that
      was 35 MiB of a 150 MiB peak; two heaps still held 3 MiB more than one, for no
      speed we could measure (the threads take turns at the GIL anyway).
    - Blocks of 128 KiB and more (feed bodies, parse results) always mapped on
      their own and unmapped when freed. Left alone, glibc raises that threshold to
      the largest block freed so far, and the bodies then fragment the heap.

    The same as MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=131072; only arenas
    created later are affected, so it runs before the poll threads start. An
    operator's own settings win; a no-op outside glibc. A 1,000-feed cold poll
    peaked at 84 MiB instead of 89.
    """
    settings = (
        (_M_ARENA_MAX, 1, "MALLOC_ARENA_MAX"),
        (_M_MMAP_THRESHOLD, 128 * 1024, "MALLOC_MMAP_THRESHOLD_"),
    )
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        for param, value, env in settings:
            if not os.environ.get(env):
                libc.mallopt(param, value)
    except (OSError, AttributeError):
        pass


@dataclass
class Poller:
    """What outlives one feed's poll: the config, the HTTP session, the host limiter."""

    config: Config
    session: fetch.Session = field(init=False)
    limiter: fetch.HostLimiter = field(init=False)
    matchers: list[TopicMatcher] = field(init=False)
    host: str = field(init=False)
    rng: random.Random = field(default_factory=random.Random)
    #: callbacks run after a poll changed topics (the web cache, export_dir)
    on_change: list[Callable[[], None]] = field(default_factory=list)
    _rng_lock: threading.Lock = field(default_factory=threading.Lock)
    #: dedupe's document frequencies, read once per term
    terms: TermStats = field(default_factory=TermStats)
    writer: GroupWriter = field(init=False)
    parsers: ParsePool = field(init=False)
    #: the compiled topics as parse processes receive them
    matchers_blob: bytes = field(init=False)

    def __post_init__(self) -> None:
        _tune_malloc()
        polling = self.config.polling
        self.session = fetch.make_session(polling.concurrency)
        self.limiter = fetch.HostLimiter(polling.per_host)
        self.matchers = compile_topics(self.config)
        self.writer = GroupWriter(self.terms, self.config.database.path)
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

    def write(w: store.Store, tx: _Transaction) -> tuple[int, int, int, schedule.Decision]:
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


class ParsePool:
    """Parsing and entry preparation in worker processes, so both cores work.

    The poll threads share one core (the GIL); feedparser, normalizing and stemming
    are pure CPU and take most of a poll that brings new entries. With `processes`
    = 0 the work runs in the calling thread. A worker that dies (a feed that makes
    the parser crash or run out of memory) costs that feed one error, never the poll:
    the pool is rebuilt and the work tried once more before giving up.

    Workers started while this process has no other thread are forked: they share
    the modules already loaded here instead of importing their own, and need no
    resource tracker process beside them. A fork copies only the thread that calls
    it, so a lock another thread holds at that moment (libxml2's, SQLite's, one of
    ours) would stay held in the worker for good: with poll threads running,
    workers are spawned as fresh interpreters instead.
    """

    #: seconds without work after which the workers are let go (the daemon's steady
    #: state parses inline; the workers come back for the next big feed)
    IDLE_SECONDS = 300.0

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._used = 0.0
        self._worked = False
        self._pool: ProcessPoolExecutor | None = None
        #: threads shutting down pools let go of (`_retire`); `close` waits for them
        self._retiring: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._frozen = False

    def run(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        """`fn(*args)` in a worker process, or here when `inline` (or without workers)."""
        if self.processes <= 0:
            return fn(*args)
        if inline:
            self.close_if_idle()
            return fn(*args)
        self._used = time.monotonic()
        for _ in range(2):
            pool = self._get()
            try:
                result = pool.submit(fn, *args).result()
            except BrokenProcessPool:
                self._drop(pool)
            else:
                self._worked = True
                return result
        if not self._worked:
            # Workers that never finished anything cannot start here at all (a
            # program read from stdin, which a spawned interpreter cannot re-import):
            # parse in the poll threads rather than fail every feed.
            log.warning("parse processes cannot start; parsing in the poll threads")
            self.processes = 0
            return fn(*args)
        raise ParseError("the parse process died on this feed")

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=self._context(), initializer=prepare.worker_started
                )
            return self._pool

    def _context(self) -> multiprocessing.context.BaseContext:
        if threading.active_count() > 1 or not sys.platform.startswith("linux"):
            # a fresh interpreter that imports only `prepare` and its stages
            return multiprocessing.get_context("spawn")
        if not self._frozen:
            # The collector writes to every object it walks: in either process, that
            # would copy every shared page. Objects that exist now are left out of
            # its walks until the workers go (`_release`).
            gc.freeze()
            self._frozen = True
        # the workers are created by the submit that follows, still in this thread
        return multiprocessing.get_context("fork")

    def start(self) -> None:
        """Start the workers ahead of need, forked if this is the only thread.

        A poll of feeds fetched for the first time parses nearly all it fetches in
        the workers; started before the poll threads, they share this process's
        loaded modules (at 100 feeds cold, 102 -> 87 MiB in all against spawned ones).
        """
        if self.processes > 0:
            self._used = time.monotonic()  # started for this poll: not idle
            self._get().submit(int).result()

    def close_if_idle(self) -> None:
        """Let the workers go when they have had nothing to do for IDLE_SECONDS."""
        with self._lock:
            pool = self._pool
            if pool is None or time.monotonic() - self._used < self.IDLE_SECONDS:
                return
            self._pool = None
            self._release()
        self._retire(pool, cancel_futures=False)

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
                self._release()
        self._retire(pool, cancel_futures=True)

    def _retire(self, pool: ProcessPoolExecutor, *, cancel_futures: bool) -> None:
        """Shut `pool` down without making the caller wait; `close` waits for it.

        A pool still winding down when the interpreter exits races concurrent.futures'
        exit hook, which wakes the pool's manager thread through a pipe that thread is
        closing: "Exception ignored in: <module 'threading'> ... OSError: [Errno 9]
        Bad file descriptor" (CPython 3.11; 3.13 locks the pipe). So no pool is ever
        left to finish on its own.
        """
        stopping = threading.Thread(
            target=pool.shutdown,
            kwargs={"wait": True, "cancel_futures": cancel_futures},
            name="parse-pool-stop",
            daemon=True,
        )
        stopping.start()
        with self._lock:
            self._retiring = [t for t in self._retiring if t.is_alive()] + [stopping]

    def _release(self) -> None:
        """With the forked workers gone, the collector walks every object again."""
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers; a clean shutdown also releases the queues' semaphores
        (otherwise multiprocessing's tracker warns about them on stderr)."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._release()
        if pool is not None:
            self._retire(pool, cancel_futures=True)
        with self._lock:
            retiring, self._retiring = self._retiring, []
        deadline = None if timeout is None else time.monotonic() + timeout
        for stopping in retiring:
            # past the deadline a worker still parsing is left to `worker_started`'s watch
            stopping.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


class _Transaction:
    """What one write transaction decides with: the weights, stored signatures
    decoded once, and the term counts its feeds add (written once, at the end)."""

    def __init__(self, db: store.Store, stats: TermStats) -> None:
        self.db = db
        self.stats = stats
        self.weights = stats.begin(db)
        self.added: dict[str, int] = {}
        self.entries = 0
        self.sigs: dict[int, dedupe.Signature] = {}
        self._job_added: dict[str, int] = {}
        self._job_entries = 0

    def load(self, terms: set[str]) -> None:
        self.stats.load(self.db, terms)

    def add(self, terms: Sequence[str]) -> None:
        self._job_entries += 1
        added = self._job_added
        for t in terms:
            added[t] = added.get(t, 0) + 1

    def end_job(self, ok: bool) -> None:
        """Keep one feed's counts, or drop them with its rolled-back writes."""
        if ok:
            for t, n in self._job_added.items():
                self.added[t] = self.added.get(t, 0) + n
            self.entries += self._job_entries
        self._job_added = {}
        self._job_entries = 0

    def counts(self, terms: Iterable[str]) -> dict[str, int]:
        """Stored entries holding each term, this transaction's own included (their
        counts are written at its end)."""
        self.load(set(terms))
        df, added, job = self.stats.df, self.added, self._job_added
        return {t: df[t] + added.get(t, 0) + job.get(t, 0) for t in terms}

    def signature(self, entry_id: int, stored: str | None) -> dedupe.Signature | None:
        """A stored entry's signature, decoded once per transaction."""
        if not stored:
            return None
        sig = self.sigs.get(entry_id)
        if sig is None:
            sig = self.sigs[entry_id] = dedupe.Signature.unpack(stored)
        return sig

    def flush(self) -> None:
        self.stats.store_counts(self.db, self.added, self.entries)


T = TypeVar("T")


@dataclass(slots=True)
class _Job(Generic[T]):
    write: Callable[[store.Store, _Transaction], T]
    done: bool = False
    result: T | None = None
    error: BaseException | None = None


class GroupWriter:
    """Writes of several feeds' polls in one transaction (group commit).

    A poll thread queues its write and waits for the writer's turn; whoever gets
    the turn writes everything queued by then, each feed inside its own savepoint
    (one feed's failure rolls back that feed alone) and the whole batch in one
    commit. Under load this turns a commit per feed into a commit per batch, and
    the dedupe term counts of a batch into one write; alone, a feed is written at
    once. Each feed's writes stay all or nothing, as before.
    """

    def __init__(self, stats: TermStats, path: Path) -> None:
        self.stats = stats
        self.path = path
        self._queue_lock = threading.Lock()
        self._queue: list[_Job[Any]] = []
        self._turn = threading.Lock()
        #: the one connection every batch is written through, whichever poll thread
        #: holds the turn: its page cache stays warm with the indexes the write path
        #: reads, and the poll threads' own connections (small reads) stay small
        self._db: store.Store | None = None

    def run(self, write: Callable[[store.Store, _Transaction], T]) -> T:
        """Run `write` inside a write transaction; its result, or its exception."""
        job: _Job[T] = _Job(write)
        with self._queue_lock:
            self._queue.append(job)
        with self._turn:
            if not job.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                if self._db is None:
                    self._db = store.Store(self.path)
                self._write(self._db, batch)
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def close(self, timeout: float | None = None) -> None:
        """Close the writer's connection after the batch being written, if it ends
        within `timeout` seconds (else the process exits with it open: the batch is
        one transaction either way)."""
        if not self._turn.acquire(timeout=-1 if timeout is None else timeout):
            return
        try:
            if self._db is not None:
                if self.stats.pending_entries:
                    try:
                        with self._db.write():
                            self.stats.fold(self._db)
                    except Exception as exc:  # nothing lost: the rows wait for the next fold
                        log.warning("term counts not folded: %s", exc)
                self._db.close()
                self._db = None
        finally:
            self._turn.release()

    def _write(self, db: store.Store, batch: list[_Job[Any]]) -> None:
        try:
            with db.write():
                tx = _Transaction(db, self.stats)
                for job in batch:
                    try:
                        with db.savepoint():
                            job.result = job.write(db, tx)
                    except Exception as exc:
                        job.error = exc
                        tx.end_job(ok=False)
                    else:
                        tx.end_job(ok=True)
                tx.flush()
        except BaseException as exc:  # the commit itself failed: nothing was written
            for job in batch:
                if job.error is None:
                    job.error = exc
            raise
        finally:
            for job in batch:
                job.done = True


def _find_story(
    poller: Poller, db: store.Store, p: prepare.Prepared, now: datetime, freq: _Transaction
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
    return dedupe.decide(entry, candidates, now=now, window=window, sig=p.sig, weights=freq.weights)


def _store_entries(
    poller: Poller,
    db: store.Store,
    freq: _Transaction,
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
