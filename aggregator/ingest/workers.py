"""The parse processes: feedparser and entry preparation beside the poll threads."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, TypeVar

from aggregator.errors import ParseError

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        #: a poll of many feeds at once is on (`batch`): small parses go to the workers
        self._batch = False

    def run(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        """`fn(*args)` in a worker process, or here when `inline` (or without workers)."""
        if self.processes <= 0:
            return fn(*args)
        if inline and not (self._batch and self._pool is not None):
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

    def _get(self, share: bool = True) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                if share:
                    # imported before a fork, so the workers share its modules
                    from aggregator.ingest import prepare  # noqa: F401
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=self._context(), initializer=_worker_started
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

    @contextmanager
    def batch(self) -> Iterator[None]:
        """While polling many feeds at once, a feed with a few new items is parsed in
        the workers too, if they run: the poll threads and the writer share one
        core, and the workers' is otherwise idle. Alone, as the daemon polls a feed,
        a small parse stays in its poll thread, where it costs less than shipping it.
        """
        self._batch = True
        try:
            yield
        finally:
            self._batch = False

    def start(self, share: bool = True) -> None:
        """Start the workers ahead of need, forked if this is the only thread.

        A poll of feeds fetched for the first time parses nearly all it fetches in
        the workers; started before the poll threads, they share this process's
        loaded modules instead of importing their own. Without `share`, this process
        does not import the parse stages for them: a poll whose feeds may all answer
        304 needs none, and a worker imports them on its first parse, on its core.
        """
        if self.processes > 0:
            self._used = time.monotonic()  # started for this poll: not idle
            self._get(share).submit(int).result()

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
            # past the deadline a worker still parsing is left to `_worker_started`'s watch
            stopping.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def _worker_started() -> None:
    """In a parse process: leave when the poller is gone.

    A worker waits on a queue whose other end it also holds, so a poller that is
    killed (SIGKILL, a crash, a terminal closed) would leave it waiting forever.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
