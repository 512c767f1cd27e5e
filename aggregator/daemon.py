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

import logging
import os
import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

import sdnotify
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from aggregator.config import Config, FeedConfig, format_duration
from aggregator.ingest import pipeline as poll
from aggregator.ingest import schedule
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
        self._last_alive = time.monotonic()
        self.server: Server | None = (
            make_server(self.app, config.server.host, config.server.port) if serve else None
        )

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
                state = db.feed_state(feed.name)
                policy = schedule.Policy.for_feed(feed, self.config.polling)
                delay = schedule.initial_delay(state, policy, now, self.rng)
                if delay is None:
                    log.info("feed=%s status=gone (not scheduled)", feed.name)
                    continue
                self._schedule(feed, now + delay)
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
        if self.server is not None:
            host, port = self.address
            log.info("serving on http://%s:%s/", host, port)

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
        if self.stopping.is_set():
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
    daemon = Daemon(config, serve=serve, poll_feeds=poll_feeds)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    while not stop.wait(0.2):
        pass
    daemon.stop()
    log.info("stopped")
    logging.shutdown()
    # Threads still inside a fetch hold nothing that matters (writes are whole
    # transactions); do not let them delay the exit past the grace period.
    os._exit(0)
