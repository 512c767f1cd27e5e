"""`aggregator run`: the scheduler polling every feed, and the HTTP server, in one process.

Each feed is one APScheduler job that reschedules itself at the time `schedule`
decided (interval, backoff, Retry-After, ...); a gone feed is simply not
rescheduled. The daemon applies decisions and never makes its own, except two
that are about the process, not the feed: a poll that crashed (a bug) is retried
after the feed's interval, and a feed whose host is already at `per_host` is
retried shortly instead of parking a worker thread.

On SIGTERM/SIGINT the server stops accepting, the scheduler stops starting polls,
in-flight polls get a short grace to finish their (short) write transaction, and
the process exits 0. systemd is told READY/WATCHDOG/STOPPING.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import sdnotify
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from aggregator import config as config_mod
from aggregator import reload as reloading
from aggregator.config import Config, FeedConfig, checks, format_duration
from aggregator.config.validate import host_port
from aggregator.errors import AggregatorError, ConfigError
from aggregator.ingest import pipeline as poll
from aggregator.ingest import schedule
from aggregator.ingest.http import fetch, limiter
from aggregator.ingest.prepare import compile_topics
from aggregator.match import dedupe
from aggregator.models import PollResult
from aggregator.publish import cache as publish
from aggregator.publish import metrics, web
from aggregator.publish.server import Server, make_server
from aggregator.storage import store

log = logging.getLogger(__name__)

#: how long in-flight polls may take to finish after SIGTERM. A write transaction
#: takes milliseconds; what outlasts this is a slow fetch or parse, which holds
#: nothing that SQLite's atomic commit would not roll back whole, so it is abandoned
#: (and simply redone after the restart) rather than delaying the stop.
STOP_GRACE_SECONDS = 2.0
#: a reload waits at most this many `[polling] timeout`s for polls that started on
#: the old topics (a fetch's whole deadline is a few timeouts)
RELOAD_DRAIN_TIMEOUTS = 4
#: a feed whose host already has `per_host` requests in flight tries again after
#: this (times a jitter), so twenty feeds of one slow outlet cannot occupy every
#: worker thread while other outlets' polls queue behind them
HOST_BUSY_RETRY_SECONDS = 0.5
#: WATCHDOG=1 period when systemd did not say (no WatchdogSec, or run by hand)
DEFAULT_WATCHDOG_SECONDS = 10.0


def watchdog_interval() -> float:
    """Half of systemd's WatchdogSec, as sd_watchdog_enabled(3) advises, so that one late
    ping never gets the service killed; the default when WATCHDOG_USEC is unset or bad."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return DEFAULT_WATCHDOG_SECONDS
    pid = os.environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return DEFAULT_WATCHDOG_SECONDS
    return usec / 2_000_000


class _Notifier:
    """sd_notify when systemd asked for it (NOTIFY_SOCKET is set), else nothing.

    `sdnotify.SystemdNotifier` opens a socket even when there is nowhere to send to,
    and never closes it; outside systemd (tests, a terminal) that is a leaked socket
    per daemon.
    """

    def __init__(self) -> None:
        self._inner = sdnotify.SystemdNotifier() if os.environ.get("NOTIFY_SOCKET") else None

    def notify(self, state: str) -> None:
        if self._inner is not None:
            self._inner.notify(state)

    def close(self) -> None:
        sock = getattr(self._inner, "socket", None)
        if sock is not None:
            sock.close()
        self._inner = None


class Daemon:
    """The scheduler plus the WSGI server: `start()`, later `stop()` (`run` wraps both
    around the signals)."""

    def __init__(self, config: Config, *, serve: bool = True, poll_feeds: bool = True) -> None:
        self.config = config
        self.serve = serve
        self.poll_feeds = poll_feeds
        self.stopping = threading.Event()
        self.notifier = _Notifier()
        self.poller = poll.Poller(config)
        self.rng = random.Random()
        self.app = web.create_app(config)
        self.cache: publish.TopicCache = self.app.extensions["topic_cache"]
        # the cache first: the export (and every request after this poll) reads through it
        self.poller.on_change.append(self.cache.invalidate)
        self.poller.on_change.append(self._export)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=config.polling.concurrency)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)
        self._feeds = {f.name: f for f in config.feeds}
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        #: polls in flight per config generation (a reload starts the next one)
        self._generation = 0
        self._by_generation: dict[int, int] = {}
        self._last_alive = time.monotonic()
        self.server: Server | None = self._listen(config) if serve else None

    def _listen(self, config: Config) -> Server:
        host, port = config.server.host, config.server.port
        try:
            return make_server(self._wsgi, host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise AggregatorError(
                f"cannot listen on {host_port(host, port)}: address already in use. "
                f"Is another aggregator (or another server) running on port {port}? "
                f"Stop it, or set another [server] port in {config.path}"
            ) from None

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens (the port is real even when the config said 0)."""
        assert self.server is not None
        return self.server.address

    def start(self) -> None:
        db = store.for_thread(self.config.database.path)
        poll.sync(self.config, db)
        db.set_meta("daemon_started", datetime.now(UTC).isoformat())
        self._export()
        if self.poll_feeds:
            now = datetime.now(UTC)
            for feed in self.config.feeds:
                self._schedule_first(feed, db, now)
            self.scheduler.add_job(
                self._prune,
                "interval",
                hours=6,
                id="prune",
                next_run_time=now + timedelta(minutes=1),
            )
            self.scheduler.start()
        if self.server is not None:
            threading.Thread(target=self._serve, name="http", daemon=True).start()
        threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        self.notifier.notify("READY=1")
        feeds, topics = len(self.config.feeds), len(self.config.topics)
        polling = f"polling {feeds} feeds" if self.poll_feeds else f"{feeds} feeds, not polling"
        if self.server is not None:
            host, port = self.address
            log.info(
                "serving on http://%s/ (%s, %d topics; config %s)",
                host_port(host, port),
                polling,
                topics,
                self.config.path,
            )
        else:
            log.info("%s, %d topics; config %s", polling, topics, self.config.path)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # The app of the current config: a reload swaps `self.app` whole, and a request
        # already in flight finishes on the one it started with.
        return self.app(environ, start_response)

    def _schedule_first(self, feed: FeedConfig, db: store.Store, now: datetime) -> None:
        """Schedule a feed's first poll of this run, as start-up does."""
        state = db.feed_state(feed.name)
        policy = schedule.Policy.for_feed(feed, self.config.polling)
        delay = schedule.initial_delay(state, policy, now, self.rng)
        if delay is None:
            log.info("feed=%s status=gone (not scheduled)", feed.name)
            return
        self._schedule(feed, now + delay)

    def reload(self) -> reloading.Changes | None:
        """Re-read the config file and apply what can change live; on a bad file, log
        it and go on with the running config. Runs in the main thread, never in the
        signal handler. Returns the changes applied, None when the file was refused."""
        path = self.config.path
        try:
            new = config_mod.load(path)
        except ConfigError as exc:
            log.error("config reload failed, going on with the running config: %s", exc)
            return None
        for warning in checks.warnings(new):
            log.warning("config %s: %s", path, warning)
        changes = reloading.compare(self.config, new)
        if not changes.any:
            log.info("config reloaded: no changes")
            return changes
        effective = reloading.effective(self.config, new)
        old_feeds = self._feeds
        # Polls started from here on use the new topics; the stored side is evaluated
        # once the polls that may still carry the old ones have written.
        self._apply_to_poller(effective)
        self._drain_generation()
        db = store.for_thread(effective.database.path)
        poll.sync(effective, db)
        self.app = web.create_app(effective)
        self.cache = self.app.extensions["topic_cache"]
        self.poller.on_change[:] = [self.cache.invalidate, self._export]
        self.config = effective
        self._feeds = {f.name: f for f in effective.feeds}
        if self.poll_feeds and self.scheduler.running:
            self._reschedule(changes, old_feeds, db)
        self._export()
        log.info("config reloaded: %s", changes.summary())
        return changes

    def _apply_to_poller(self, config: Config) -> None:
        poller = self.poller
        matchers = compile_topics(config)
        poller.matchers = matchers
        poller.matchers_blob = pickle.dumps(matchers)
        poller.session.headers["User-Agent"] = fetch.user_agent(config.polling.contact)
        if config.polling.per_host != poller.limiter.per_host:
            # polls holding a slot release it on the limiter they took it from
            poller.limiter = limiter.HostLimiter(config.polling.per_host)
        poller.host = urlsplit(config.server.base_url).hostname or "localhost"
        poller.config = config
        with self._in_flight_lock:
            self._generation += 1

    def _drain_generation(self) -> None:
        """Wait for polls of earlier generations to finish (bounded by a whole fetch's
        deadline), so that none stores entries matched against the old topics after
        `sync` has evaluated the stored ones."""
        deadline = (
            time.monotonic() + RELOAD_DRAIN_TIMEOUTS * self.config.polling.timeout.total_seconds()
        )
        while time.monotonic() < deadline and not self.stopping.is_set():
            with self._in_flight_lock:
                older = sum(n for g, n in self._by_generation.items() if g < self._generation)
            if not older:
                return
            time.sleep(0.05)

    def _reschedule(
        self, changes: reloading.Changes, old_feeds: dict[str, FeedConfig], db: store.Store
    ) -> None:
        now = datetime.now(UTC)
        for name in changes.feeds_removed:
            try:
                self.scheduler.remove_job(f"feed:{name}")
            except JobLookupError:
                pass  # gone, or never scheduled
        for name in (*changes.feeds_added, *changes.feeds_changed):
            feed = self._feeds[name]
            old = old_feeds.get(name)
            if old is not None and old.url != feed.url:
                # a different feed now (sync reset its state): poll it soon
                self._schedule(
                    feed,
                    now + min(schedule.NEW_FEED_SPREAD, timedelta(seconds=2)) * self.rng.random(),
                )
            else:
                self._schedule_first(feed, db, now)

    def _serve(self) -> None:
        assert self.server is not None
        self.server.serve_forever()

    def _schedule(self, feed: FeedConfig, when: datetime) -> None:
        self.scheduler.add_job(
            self._poll_job,
            "date",
            run_date=when,
            args=[feed],
            id=f"feed:{feed.name}",
            replace_existing=True,
        )

    def _poll_job(self, feed: FeedConfig) -> None:
        if self.stopping.is_set():
            return
        result: PollResult | None = None
        deferred = False
        with self._in_flight_lock:
            self._in_flight += 1
            generation = self._generation
            self._by_generation[generation] = self._by_generation.get(generation, 0) + 1
        try:
            if self._host_busy(feed):
                deferred = True
            else:
                started = time.monotonic()
                result = poll.poll_feed(self.poller, feed)
                metrics.POLL_SECONDS.labels(result.status).observe(time.monotonic() - started)
                self._last_alive = time.monotonic()
        except Exception:
            log.exception("feed=%s status=crash", feed.name)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
                self._by_generation[generation] -= 1
        if self.stopping.is_set():
            return
        # A reload may have changed or removed the feed while it was polled: go on
        # with what the config says now (the reload scheduled a changed feed itself).
        current = self._feeds.get(feed.name)
        if current is None or current != feed:
            return
        if deferred:
            self._schedule(feed, datetime.now(UTC) + self._host_busy_delay())
        elif result is None:
            # A bug, not the feed: no decision was stored, so try again after the
            # feed's own interval rather than dropping it from the schedule.
            self._schedule(feed, datetime.now(UTC) + self._crash_delay(feed))
        elif result.status == "gone" or result.next_poll is None:
            log.info("feed=%s status=gone (no longer scheduled)", feed.name)
        else:
            self._schedule(feed, result.next_poll)

    def _host_busy(self, feed: FeedConfig) -> bool:
        """True when the feed's host already has `per_host` requests in flight.

        Only an optimisation: the limiter inside `poll_feed` still enforces the cap
        if another poll takes the slot between this check and the fetch.
        """
        url = store.for_thread(self.config.database.path).feed_state(feed.name).url
        return self.poller.limiter.in_flight(url) >= self.poller.limiter.per_host

    def _host_busy_delay(self) -> timedelta:
        with self.poller._rng_lock:
            jitter = self.rng.uniform(1.0, 2.0)
        return timedelta(seconds=HOST_BUSY_RETRY_SECONDS * jitter)

    def _crash_delay(self, feed: FeedConfig) -> timedelta:
        policy = schedule.Policy.for_feed(feed, self.config.polling)
        return policy.interval if policy.interval is not None else policy.min_interval

    def _on_max_instances(self, event: JobSubmissionEvent) -> None:
        # A feed job that reschedules itself for "now" can fire while APScheduler still
        # counts its previous run; the skipped run would drop the feed from the schedule.
        name = event.job_id.removeprefix("feed:")
        feed = self._feeds.get(name)
        if feed is not None and not self.stopping.is_set():
            log.warning("feed=%s poll still running; trying again shortly", name)
            self._schedule(feed, datetime.now(UTC) + self._host_busy_delay())

    def _export(self) -> None:
        if self.config.server.export_dir is None:
            return
        try:
            publish.export_files(
                store.for_thread(self.config.database.path), self.config, self.cache
            )
        except OSError as exc:
            log.error("export_dir %s: %s", self.config.server.export_dir, exc)

    def _prune(self) -> None:
        db = store.for_thread(self.config.database.path)
        keep = self.config.database.keep
        removed = db.prune(
            datetime.now(UTC) - keep,
            [f.name for f in self.config.feeds],
            terms_of=dedupe.stored_terms,
        )
        if removed:
            with db.write():  # the writer lock: no poll is deciding with the counts
                # the prune folded every logged count into term_df: none is pending
                self.poller.terms.fold(db)
                self.poller.terms.forget()
            self.cache.invalidate()
            self._export()
        log.info(
            "pruned %d entries first stored over %s ago and no longer in their feed%s",
            sum(removed.values()),
            format_duration(keep),
            ": " + " ".join(f"{feed}={n}" for feed, n in removed.items()) if removed else "",
        )

    def _watchdog(self) -> None:
        # WATCHDOG=1 only while the scheduler is alive, so systemd restarts a wedged daemon.
        interval = watchdog_interval()
        while not self.stopping.wait(interval):
            if not self.poll_feeds or self.scheduler.running:
                self.notifier.notify("WATCHDOG=1")

    def stop(self) -> None:
        """Stop serving and polling; give in-flight polls a few seconds to commit."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.notifier.notify("STOPPING=1")
        if self.server is not None:
            self.server.close()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            with self._in_flight_lock:
                if self._in_flight == 0:
                    break
            time.sleep(0.05)
        self.poller.close(timeout=max(0.5, deadline - time.monotonic()))
        self.notifier.close()


def run(config: Config, *, serve: bool = True, poll_feeds: bool = True) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code."""
    for note in checks.warnings(config):
        log.warning("config %s: %s", config.path, note)
    daemon = Daemon(config, serve=serve, poll_feeds=poll_feeds)
    stop = threading.Event()
    reload_wanted = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        # Only a flag: reading and applying the config happens in the loop below.
        reload_wanted.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    daemon.start()
    while not stop.wait(0.2):
        if reload_wanted.is_set():
            reload_wanted.clear()
            log.info("received SIGHUP, reading %s again", daemon.config.path)
            try:
                daemon.reload()
            except Exception:  # a bug in applying it must not take the daemon down
                log.exception("config reload failed, going on with the running config")
    daemon.stop()
    log.info("stopped")
    logging.shutdown()
    # Threads still inside a fetch hold nothing that matters (writes are whole
    # transactions); do not let them delay the exit past the grace period.
    os._exit(0)
