"""Process-wide memory settings for a poll: glibc's malloc, tuned once."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

#: glibc's mallopt parameters (malloc.h)
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


@functools.cache  # once per process
def tune_malloc() -> None:
    """Keep glibc's malloc from holding memory the poll has freed.

    - One heap (arena) for all threads: glibc gives each new thread its own, up to
      8 per core, and freed memory stays mapped in each; the poll threads take
      turns at the GIL anyway, so one heap costs them no speed.
    - Blocks of 128 KiB and more (feed bodies, parse results) always mapped on
      their own and unmapped when freed. Left alone, glibc raises that threshold to
      the largest block freed so far, and the bodies then fragment the heap.

    The same as MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=131072; only arenas
    created later are affected, so it runs before the poll threads start. An
    operator's own settings win; a no-op outside glibc. (Figures: bench/README.md.)
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
