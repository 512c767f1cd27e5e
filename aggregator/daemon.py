"""`aggregator run`: the scheduler polling every feed, and the HTTP server, in one process.

Each feed is one APScheduler job that reschedules itself at the time `schedule`
decided (interval, backoff, Retry-After, ...); a gone feed is simply not
rescheduled. On SIGTERM/SIGINT the server stops accepting, the scheduler stops
starting polls, in-flight polls get a few seconds to finish their (short) write
transaction, and the process exits 0. systemd is told READY/WATCHDOG/STOPPING.
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
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from waitress.server import create_server

from . import metrics, poll, publish, schedule, store, web
from .config import Config, FeedConfig

log = logging.getLogger(__name__)

#: how long in-flight polls may take to finish after SIGTERM
STOP_GRACE_SECONDS = 8.0


class Daemon:
    """The scheduler plus the WSGI server; `start()` then `wait()`."""

    def __init__(self, config: Config, *, serve: bool = True, poll_feeds: bool = True) -> None:
        self.config = config
        self.serve = serve
        self.poll_feeds = poll_feeds
        self.stopping = threading.Event()
        self.notifier = sdnotify.SystemdNotifier()
        self.poller = poll.Poller(config)
        self.rng = random.Random()
        self.app = web.create_app(config)
        self.cache: publish.TopicCache = self.app.extensions["topic_cache"]
        self.poller.on_change.append(self._export)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=config.polling.concurrency)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._last_alive = time.monotonic()
        self.server = (
            create_server(
                self.app,
                host=config.server.host,
                port=config.server.port,
                threads=8,
                ident="aggregator",
                clear_untrusted_proxy_headers=True,
            )
            if serve
            else None
        )

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens (the port is real even when the config said 0)."""
        assert self.server is not None
        return self.server.effective_host, self.server.effective_port  # type: ignore[union-attr]

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
        try:
            self.server.run()
        except Exception:  # the asyncore loop ends with an error when closed under it
            if not self.stopping.is_set():
                raise

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
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            started = time.monotonic()
            result = poll.poll_feed(self.poller, feed)
            metrics.POLL_SECONDS.labels(result.status).observe(time.monotonic() - started)
            self._last_alive = time.monotonic()
        except Exception:
            log.exception("feed=%s status=crash", feed.name)
            result = None
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
        if self.stopping.is_set():
            return
        if result is None:  # a bug, not the feed: try again at the normal interval
            interval = self.config.polling.interval or self.config.polling.min_interval
            self._schedule(feed, datetime.now(UTC) + interval)
        elif result.next_poll is not None and result.status != "gone":
            self._schedule(feed, result.next_poll)

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
        removed = db.prune(datetime.now(UTC) - self.config.database.keep)
        if removed:
            log.info("pruned %d entries older than %s", removed, self.config.database.keep)

    def _watchdog(self) -> None:
        # WATCHDOG=1 only while the scheduler is alive, so systemd restarts a wedged daemon.
        while not self.stopping.wait(10):
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
        self.poller.close()


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
    while not stop.wait(0.5):
        pass
    daemon.stop()
    log.info("stopped")
    logging.shutdown()
    # Threads still inside a fetch hold nothing that matters (writes are whole
    # transactions); do not let them delay the exit past the grace period.
    os._exit(0)
