"""Dedupe's document frequencies and stored signatures, kept in memory for a
poller's life.

Read from the store once per term and counted here as entries are stored, so the
candidate scoring of each new entry needs no query of its own; the signatures of
recently stored entries are kept decoded, so a candidate is not decoded again by
every later transaction that compares with it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from itertools import chain
from typing import TYPE_CHECKING

from aggregator.storage import store

if TYPE_CHECKING:  # imported where first needed: a poll of 304s stores no entry
    from aggregator.match import dedupe


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
    #: stored signatures kept decoded, the first decoded first out: a new entry's
    #: candidates are mostly recent entries (the newest postings of its keys), and
    #: decoding one again for every transaction that compares with it (splitting
    #: and hashing its hundred-odd terms) was the writer's largest single cost on
    #: look-alike headlines. About 6 KiB each (the figures: bench/README.md)
    MAX_SIGNATURES = 2048

    df: dict[str, int]
    #: stored entries whose terms are all in `df` already
    known: set[int]
    n_docs: int | None
    counted_at: float
    #: None until a transaction needs them (`begin`)
    weights: dedupe.IdfWeights | None

    def __init__(self) -> None:
        #: logged counts not folded into the store's term_df yet, of the terms not in
        #: `df` (those in `df` are counted there); every read of the store adds them
        self.pending: dict[str, int] = {}
        #: entries whose counts are logged and not folded, and since when
        self.pending_entries = 0
        self.pending_since = 0.0
        #: entry id -> (its stored signature, decoded); the stored form is compared on
        #: every hit, so an entry updated since, or a reused id, is decoded afresh
        self.sigs: dict[int, tuple[str, dedupe.Signature]] = {}
        self.forget()

    def forget(self) -> None:
        """Drop every cached count (the store's changed under us: a prune). Counts
        not folded yet must be folded first: `df` holds some of them."""
        self.df = {}
        self.known = set()
        self.n_docs = None
        self.counted_at = 0.0
        self.weights = None

    def begin(self, db: store.Store) -> dedupe.IdfWeights:
        """The weights to decide with during one write transaction."""
        from aggregator.match import dedupe

        if len(self.df) > self.MAX_TERMS or len(self.known) > self.MAX_KNOWN:
            self.fold(db)
            self.forget()
        now = time.monotonic()
        if self.n_docs is None or now - self.counted_at > self.RECOUNT_SECONDS:
            self.n_docs, self.counted_at = db.entry_count(), now
        w = self.weights
        if w is None:
            w = self.weights = dedupe.IdfWeights(self.df, 0)
        if abs(self.n_docs - w.n_docs) > self.REWEIGH * max(w.n_docs, 1):
            w = self.weights = dedupe.IdfWeights(self.df, self.n_docs)
        return w

    def load(self, db: store.Store, terms: set[str]) -> None:
        df = self.df
        missing = terms.difference(df)  # in C: a set less a dict's keys
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
        if self.weights is not None:
            self.weights.forget(added)
        if (
            self.pending_entries >= self.FOLD_ENTRIES
            or time.monotonic() - self.pending_since >= self.FOLD_SECONDS
        ):
            self.fold(db)

    def signature(self, entry_id: int, stored: str) -> dedupe.Signature:
        """A stored entry's signature, decoded at most once while it is kept; the
        first decoded makes room."""
        sigs = self.sigs
        hit = sigs.get(entry_id)
        if hit is not None and hit[0] == stored:
            return hit[1]
        from aggregator.match.dedupe import Signature

        sig = Signature.unpack(stored)
        sigs.pop(entry_id, None)  # a stale one: kept again, last out
        sigs[entry_id] = (stored, sig)
        if len(sigs) > self.MAX_SIGNATURES:
            del sigs[next(iter(sigs))]
        return sig

    def fold_pending(self, db: store.Store) -> None:
        """Fold the logged counts if there are any (as the writer closes)."""
        if self.pending_entries:
            self.fold(db)

    def fold(self, db: store.Store) -> None:
        """Add the logged counts into term_df (inside a write transaction)."""
        db.fold_term_counts()
        self.pending = {}
        self.pending_entries = 0


class Transaction:
    """What one write transaction decides with: the weights, the stored signatures
    (`TermStats.signature`), and the term counts its feeds add (written once, at
    the end).

    It begins (`TermStats.begin`) when first used: a batch of polls that all
    answered 304 stores no entry, and needs neither the weights nor the count of
    stored entries."""

    def __init__(self, db: store.Store, stats: TermStats) -> None:
        self.db = db
        self.stats = stats
        self._weights: dedupe.IdfWeights | None = None
        #: the counts of this transaction's stored entries, the current feed's too
        self.added: Counter[str] = Counter()
        self.entries = 0
        #: the current feed's entries' terms, taken back if its writes roll back
        self._job_terms: list[Collection[str]] = []
        self._job_entries = 0

    @property
    def weights(self) -> dedupe.IdfWeights:
        """The weights to decide with (the transaction begins here if it has not)."""
        if self._weights is None:
            self._weights = self.stats.begin(self.db)
        return self._weights

    def load(self, terms: set[str]) -> None:
        _ = self.weights  # begun before any count is read
        self.stats.load(self.db, terms)

    def add(self, terms: Collection[str]) -> None:
        """Count a stored entry's terms (`Counter.update` counts in C); kept, not
        consumed, to be taken back if the feed's writes roll back."""
        _ = self.weights
        self._job_entries += 1
        self.added.update(terms)
        self._job_terms.append(terms)

    def end_job(self, ok: bool) -> None:
        """Keep one feed's counts, or take them back with its rolled-back writes."""
        if ok:
            self.entries += self._job_entries
        elif self._job_terms:
            added = self.added
            added.subtract(chain.from_iterable(self._job_terms))
            for t in [t for t, n in added.items() if n <= 0]:
                del added[t]
        self._job_terms = []
        self._job_entries = 0

    def counts(self, terms: Iterable[str]) -> dict[str, int]:
        """Stored entries holding each term, this transaction's own included (their
        counts are written at its end)."""
        self.load(set(terms))
        df, added = self.stats.df, self.added
        return {t: df[t] + added.get(t, 0) for t in terms}

    def n_docs(self) -> int:
        """Stored entries, this transaction's own included."""
        _ = self.weights
        return (self.stats.n_docs or 0) + self.entries + self._job_entries

    def signature(self, entry_id: int, stored: str | None) -> dedupe.Signature | None:
        """A stored entry's signature (None where none was stored)."""
        return self.stats.signature(entry_id, stored) if stored else None

    def flush(self) -> None:
        self.stats.store_counts(self.db, self.added, self.entries)
