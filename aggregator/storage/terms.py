"""Dedupe's term counts: a log written with each transaction, folded in each minute."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import chain, repeat

from aggregator.storage.base import StoreBase


class TermsMixin(StoreBase):
    """Dedupe's term counts: a log written with each transaction, folded in each minute."""

    def add_term_counts(self, counts: Mapping[str, int]) -> None:
        """Add to the document frequencies now (summed by the caller)."""
        self.conn.executemany(
            "INSERT INTO term_df(term, n) VALUES (?, ?) ON CONFLICT(term) DO UPDATE SET n = n + ?",
            # in key order: consecutive upserts land on the same B-tree pages
            [(t, n, n) for t, n in sorted(counts.items())],
        )

    def log_term_counts(self, counts: Mapping[str, int]) -> None:
        """Record counts to add to the document frequencies later, in one row.

        A transaction of a few feeds' entries holds thousands of distinct terms:
        upserting each into term_df was a sixth of a cold poll's write time. The
        row commits with the entries it counts, so a crash loses neither; readers
        of `document_frequencies` see logged counts once they are folded in.
        """
        if counts:
            # each term once per entry that holds it: terms are words, never spaces
            text = " ".join(chain.from_iterable(map(repeat, counts.keys(), counts.values())))
            self.conn.execute("INSERT INTO term_df_log(counts) VALUES (?)", (text,))

    def fold_term_counts(self) -> int:
        """Add every logged count into term_df (inside the caller's write
        transaction); returns how many terms changed."""
        last = self._one("SELECT max(id) FROM term_df_log")
        if last is None:
            return 0
        total: Counter[str] = Counter()
        # row by row: the log of a busy minute holds tens of MB of text
        for (text,) in self.conn.execute("SELECT counts FROM term_df_log WHERE id <= ?", (last,)):
            total.update(text.split())
        self.add_term_counts(total)
        self.conn.execute("DELETE FROM term_df_log WHERE id <= ?", (last,))
        return len(total)

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        """Stored-entry counts of these terms."""
        wanted = list(set(terms))
        df: dict[str, int] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            df.update(
                self.conn.execute(f"SELECT term, n FROM term_df WHERE term IN ({marks})", chunk)
            )
        return df
