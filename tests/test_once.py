"""A loader asked for by many threads at once runs once, and a fork never inherits it locked."""

from __future__ import annotations

import os
import signal
import threading
import time

from aggregator.once import once


def test_threads_asking_together_share_one_load() -> None:
    calls: list[int] = []

    @once
    def load() -> list[int]:
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while it runs
        return [42]

    start = threading.Barrier(8)
    got: list[list[int]] = []

    def ask() -> None:
        start.wait()
        got.append(load())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert len(got) == 8 and all(g is got[0] for g in got)
    assert load() is got[0]


def test_a_process_forked_during_a_load_can_load() -> None:
    release = threading.Event()
    started = threading.Event()

    @once
    def load() -> int:
        if os.getpid() == parent:
            started.set()
            release.wait(5)
        return os.getpid()

    parent = os.getpid()
    loader = threading.Thread(target=load)
    loader.start()
    assert started.wait(5)
    pid = os.fork()  # the lock is held by the loader thread right now
    if pid == 0:
        signal.alarm(5)  # a child stuck on an inherited lock dies instead of hanging
        os._exit(0 if load() == os.getpid() else 1)
    release.set()
    loader.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert load() == parent
