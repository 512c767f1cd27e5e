"""A loader that runs once per process, however many threads ask for it at once.

`functools.cache` stores a result only after computing it, so threads that ask
together each compute it: the eight poll threads of a changed poll each loaded the
place list (70 ms and 2 MiB apiece) on their first headline.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Once(Generic[T]):
    def __init__(self, load: Callable[[], T]) -> None:
        self.load = load
        self.lock = threading.Lock()
        self.value: list[T] = []
        # A parse process forked while a poll thread held the lock would inherit it
        # held, with no thread left to release it.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self.lock = threading.Lock()

    def __call__(self) -> T:
        if not self.value:
            with self.lock:
                if not self.value:
                    self.value.append(self.load())
        return self.value[0]


def once(load: Callable[[], T]) -> Callable[[], T]:
    """`load`, called by the first thread that asks; any other thread asking
    meanwhile waits for that call's result, and every later call returns it."""
    return functools.wraps(load)(_Once(load))
