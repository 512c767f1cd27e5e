"""The batched writer: several feeds' writes in one transaction (group commit)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from aggregator.storage import store

log = logging.getLogger(__name__)

T = TypeVar("T")


class Batch(Protocol):
    """What a batch's writes share (dedupe's term counts): told how each feed's
    write ended, and flushed once before the commit."""

    def end_job(self, ok: bool) -> None: ...

    def flush(self) -> None: ...


B = TypeVar("B", bound=Batch)


@dataclass(slots=True)
class _Job(Generic[T]):
    write: Callable[[store.Store, Any], T]
    done: bool = False
    result: T | None = None
    error: BaseException | None = None


class GroupWriter(Generic[B]):
    """Writes of several feeds' polls in one transaction (group commit).

    A poll thread queues its write and waits for the writer's turn; whoever gets
    the turn writes everything queued by then, each feed inside its own savepoint
    (one feed's failure rolls back that feed alone) and the whole batch in one
    commit. Under load this turns a commit per feed into a commit per batch, and
    the dedupe term counts of a batch into one write; alone, a feed is written at
    once. Each feed's writes stay all or nothing.

    `begin` makes what a batch's writes share (`Batch`) inside its transaction;
    `on_close` runs in a last transaction when the writer closes.
    """

    def __init__(
        self,
        path: Path,
        begin: Callable[[store.Store], B],
        on_close: Callable[[store.Store], None] | None = None,
    ) -> None:
        self.path = path
        self.begin = begin
        self.on_close = on_close
        self._queue_lock = threading.Lock()
        self._queue: list[_Job[Any]] = []
        self._turn = threading.Lock()
        #: the one connection every batch is written through, whichever poll thread
        #: holds the turn: its page cache stays warm with the indexes the write path
        #: reads, and the poll threads' own connections (small reads) stay small
        self._db: store.Store | None = None

    def run(self, write: Callable[[store.Store, B], T]) -> T:
        """Run `write` inside a write transaction; its result, or its exception."""
        job: _Job[T] = _Job(write)
        with self._queue_lock:
            self._queue.append(job)
        with self._turn:
            if not job.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                if self._db is None:
                    self._db = store.Store(self.path, cache_kib=store.WRITER_CACHE_KIB)
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
                if self.on_close is not None:
                    try:
                        with self._db.write():
                            self.on_close(self._db)
                    except Exception as exc:  # e.g. term counts: they wait for the next fold
                        log.warning("closing write failed: %s", exc)
                self._db.close()
                self._db = None
        finally:
            self._turn.release()

    def _write(self, db: store.Store, batch: list[_Job[Any]]) -> None:
        try:
            with db.write():
                tx = self.begin(db)
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
