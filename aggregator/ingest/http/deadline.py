"""Whole-request deadlines: one thread that shuts the sockets of requests past
their time, so a server trickling bytes cannot hold a poll thread beyond 3x the
timeout."""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable
from typing import Any


class _Deadlines:
    """One thread that fires every request's deadline. A `threading.Timer` per request
    would start (and tear down) a thread for each fetch: most of a 304's cost."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, at: float, fire: Callable[[], None]) -> list[Any]:
        entry: list[Any] = [at, next(self._seq), fire]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="fetch-deadlines", daemon=True
                )
                self._thread.start()
            if self._heap[0] is entry:
                # only an earlier deadline than the one it sleeps toward needs the
                # thread awake: waking it for every request cost a GIL hand-off each
                self._cond.notify()
        return entry

    def cancel(self, entry: list[Any]) -> None:
        with self._cond:
            entry[2] = None  # dropped when it reaches the top of the heap

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                fire, entry[2] = entry[2], None
                self._cond.release()
                try:
                    fire()
                finally:
                    self._cond.acquire()


_DEADLINES = _Deadlines()


class Watchdog:
    """Shut a request's sockets down at its deadline, whatever phase it is stuck in.

    Socket timeouts bound each read, not the sum: a server sending one byte per second
    (in the headers or the body) would otherwise hold a worker forever.
    """

    def __init__(self, at: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._done = False
        self.fired = False
        self._entry = _DEADLINES.add(at, self._fire)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.fired:
                shutdown(sock)
            elif not self._done:
                self._sockets.append(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                shutdown(sock)

    def cancel(self) -> None:
        """After this returns, no socket is touched: safe to hand the connection back."""
        with self._lock:
            self._done = True
            self._sockets.clear()
        _DEADLINES.cancel(self._entry)


def shutdown(sock: socket.socket) -> None:
    try:
        # The plain-socket method, also for TLS sockets: it wakes a blocked recv()
        # without touching the SSL object another thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
