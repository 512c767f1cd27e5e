"""Measure story clustering on the labelled sets in ../shared/dedup.

    .venv/bin/python bench/dedup_eval.py                  # dev.jsonl + pairs, in-process
    .venv/bin/python bench/dedup_eval.py --stability 5    # + shuffled-order runs
    .venv/bin/python bench/dedup_eval.py --synthetic 100000
    .venv/bin/python bench/dedup_eval.py --through-product  # served feeds, real poll

Each mode also reports on the templated-headline set (tests/feeds/templated.jsonl):
look-alikes that must stay apart and retellings that must join, per language.

The in-process mode runs the same logic the store runs: every item, in published
order, is indexed under `dedupe.index_keys`; its candidates are the stored entries
sharing a key and published within the window; `dedupe.decide` picks the story.
Document frequencies are counted over `dedupe.terms` of the entries stored so far.
`--stability N` adds N publisher orders (`poll_order`: 6h rounds, publishers in a
shuffled order, as the product's poll threads store them) and N full shuffles,
and prints the range of the publisher orders' figures: the product's figures lie
in it. The pairs are judged with document frequencies over the whole file, then
as stored so far (a young store, as `--through-product` sees them).
The metric functions (`pairwise`, `bcubed`, `wrongly_merged`, `pair_scores`) take
plain mappings so the through-the-product mode can reuse them.

The through-the-product mode writes one RSS file per publisher into a temporary
folder, serves it on 127.0.0.1 with the tests' FeedServer, writes a config (one
topic with no query holding every entry), and runs the real `poll` in rounds: in
each round every feed holds its items published up to the round's end and is
polled with `now` = that end, as a poller running every `--round` hours would see
them. The clusters are read back from the topic's JSON Feed (each item's url and
its `_aggregator.related` urls) and scored with the same metrics. Each item's
link is a unique URL on the local server, so every join seen here is a
near-duplicate decision, never a same-link one.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator import models
from aggregator.match import dedupe  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "dedup"
WINDOW = timedelta(hours=48)


# ---------------------------------------------------------------- metrics


def _comb2(n: int) -> int:
    return n * (n - 1) // 2


def pairwise(pred: Mapping[str, Hashable], gold: Mapping[str, Hashable]) -> tuple[float, ...]:
    """Pairwise precision, recall, F1 over item pairs put together.

    Precision is 1.0 when nothing is merged (no pair claimed, none wrong).
    """
    both = Counter((pred[i], gold[i]) for i in gold)
    tp = sum(_comb2(n) for n in both.values())
    pp = sum(_comb2(n) for n in Counter(pred[i] for i in gold).values())
    gp = sum(_comb2(n) for n in Counter(gold.values()).values())
    p = tp / pp if pp else 1.0
    r = tp / gp if gp else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def bcubed(pred: Mapping[str, Hashable], gold: Mapping[str, Hashable]) -> tuple[float, ...]:
    """B-cubed precision, recall, F1, averaged over items."""
    both = Counter((pred[i], gold[i]) for i in gold)
    psize = Counter(pred[i] for i in gold)
    gsize = Counter(gold.values())
    n = len(gold)
    p = sum(both[(pred[i], gold[i])] / psize[pred[i]] for i in gold) / n
    r = sum(both[(pred[i], gold[i])] / gsize[gold[i]] for i in gold) / n
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def wrongly_merged(pred: Mapping[str, Hashable], gold: Mapping[str, Hashable]) -> int:
    """Gold clusters sharing a predicted cluster with an item of another gold cluster."""
    golds_in: dict[Hashable, set[Hashable]] = defaultdict(set)
    for i in gold:
        golds_in[pred[i]].add(gold[i])
    bad: set[Hashable] = set()
    for gs in golds_in.values():
        if len(gs) > 1:
            bad |= gs
    return len(bad)


def false_merges(predicted: Sequence[bool], gold: Sequence[bool]) -> str:
    """Different-story pairs merged, as "k/n (x%)": the figure precision is judged by."""
    apart = [p for p, g in zip(predicted, gold, strict=True) if not g]
    k = sum(apart)
    return f"different-story pairs merged {k}/{len(apart)} ({100 * k / max(1, len(apart)):.1f}%)"


def pair_scores(predicted: Sequence[bool], gold: Sequence[bool]) -> tuple[float, float, float]:
    """Accuracy, precision, recall of same-story judgements (positive = same story)."""
    tp = sum(p and g for p, g in zip(predicted, gold, strict=True))
    fp = sum(p and not g for p, g in zip(predicted, gold, strict=True))
    fn = sum(g and not p for p, g in zip(predicted, gold, strict=True))
    acc = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    return acc, prec, rec


def cluster_report(pred: Mapping[str, Hashable], gold: Mapping[str, Hashable]) -> dict[str, float]:
    """Every clustering figure, as one dict (for printing and for the tests)."""
    pp, pr, pf = pairwise(pred, gold)
    bp, br, bf = bcubed(pred, gold)
    return {
        "pairwise_p": pp,
        "pairwise_r": pr,
        "pairwise_f1": pf,
        "bcubed_p": bp,
        "bcubed_r": br,
        "bcubed_f1": bf,
        "wrongly_merged": wrongly_merged(pred, gold),
        "gold_clusters": len(set(gold.values())),
        "pred_clusters": len(set(pred[i] for i in gold)),
    }


# ---------------------------------------------------------------- in-process store


def _parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def make_entry(feed: str, title: str, text: str, published: datetime, key: str) -> models.Entry:
    """An Entry as `normalize` would give it: text starts with the title."""
    full = f"{title}\n{text}" if text else title
    return models.Entry(
        feed=feed,
        key=key,
        guid=None,
        link=None,
        canonical_link=None,
        title=title,
        summary_html="",
        content_html="",
        text=full,
        author=None,
        published=published,
        content_hash=key,
    )


@dataclass
class _Stored:
    story_id: int
    title: str
    text: str
    published: datetime
    sig: dedupe.Signature


class MemoryIndex:
    """The store's side of dedupe, in memory: key table, df table, story feeds.

    `max_postings` caps how many newest entries one key returns, as a store would
    with LIMIT, so a key that every story shares cannot make one insert slow.
    """

    def __init__(self, window: timedelta = WINDOW, max_postings: int | None = None):
        self.window = window
        self.max_postings = max_postings
        self.entries: list[_Stored] = []
        self.postings: dict[str, list[int]] = defaultdict(list)
        self.df: Counter[str] = Counter()
        self.story_feeds: dict[int, set[str]] = defaultdict(set)
        self.next_story = 1
        #: story -> the story it was absorbed into (`dedupe.Decision.absorbed`)
        self.absorbed: dict[int, int] = {}

    def final(self, story: int) -> int:
        """The story a story id now stands for, after absorptions."""
        while story in self.absorbed:
            story = self.absorbed[story]
        return story

    def candidates(
        self, keys: Sequence[str], title: frozenset[str], published: datetime
    ) -> list[dedupe.Candidate]:
        """Stored entries sharing at least `dedupe.MIN_SHARED_KEYS` of the entry's
        query keys (`dedupe.query_keys`), within the window."""
        hits: Counter[int] = Counter()
        for k in dedupe.query_keys(keys, title, self.df):
            plist = self.postings.get(k, [])
            if self.max_postings is not None:
                plist = plist[-self.max_postings :]
            hits.update(plist)
        out = []
        for idx, n in sorted(hits.items()):
            if n < dedupe.MIN_SHARED_KEYS:
                continue
            e = self.entries[idx]
            if abs(e.published - published) > self.window:
                continue
            out.append(
                dedupe.Candidate(
                    story_id=e.story_id,
                    feeds=frozenset(self.story_feeds[e.story_id]),
                    title=e.title,
                    text=e.text,
                    published=e.published,
                    sig=e.sig,
                )
            )
        return out

    def add(self, entry: models.Entry, now: datetime | None = None) -> int:
        sig, keys = dedupe.analyze(entry.title, entry.text)
        cands = self.candidates(keys, sig.title, entry.published)
        decision = dedupe.decide(
            entry,
            cands,
            now=now or entry.published,
            window=self.window,
            df=self.df,
            n_docs=len(self.entries),
            sig=sig,
        )
        story = decision.story
        for gone in decision.absorbed:
            # as the store's absorb_stories: the small story's entries move over
            for e in self.entries:
                if e.story_id == gone:
                    e.story_id = story
            self.story_feeds[story] |= self.story_feeds.pop(gone, set())
            self.absorbed[gone] = story
        if story is None:
            story = self.next_story
            self.next_story += 1
        idx = len(self.entries)
        self.entries.append(
            _Stored(
                story,
                entry.title,
                entry.text,
                entry.published,
                sig,
            )
        )
        for k in keys:
            self.postings[k].append(idx)
        self.df.update(dedupe.terms_of(sig))
        self.story_feeds[story].add(entry.feed)
        return story


def load_dev(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def cluster_items(items: Sequence[Mapping[str, str]], window: timedelta = WINDOW) -> dict[str, int]:
    """Feed items, in the given order, through index_keys + decide: id -> story."""
    index = MemoryIndex(window)
    pred = {}
    for it in items:
        e = make_entry(
            it["publisher"],
            it["title"],
            it.get("summary", ""),
            _parse_time(it["published"]),
            it["id"],
        )
        pred[it["id"]] = index.add(e)
    return {k: index.final(v) for k, v in pred.items()}


def load_pairs(path: Path) -> list[tuple[str, str, str, str, bool]]:
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        (
            r["INPUT:first_title"],
            r["INPUT:first_text"],
            r["INPUT:second_title"],
            r["INPUT:second_text"],
            r["GOLDEN:quality"].strip().upper() == "OK",
        )
        for r in rows
    ]


def judge_pairs(
    pairs: Sequence[tuple[str, str, str, str, bool]], as_stored: bool = False
) -> list[bool]:
    """Would the second article join the first's story?

    By default the document frequencies count every text in the file: the store
    would hold many other articles, and the other pairs of the file stand in for
    them. With `as_stored`, they count only the articles before the second one
    (pair by pair, the first before the second, which comes an hour later), as
    `--through-product` stores them: a young store's frequencies. The second must
    also share an index key with the first to be fetched.
    """
    df: Counter[str] = Counter()
    if not as_stored:
        for t1, x1, t2, x2, _ in pairs:
            df.update(dedupe.terms(t1, f"{t1}\n{x1}"))
            df.update(dedupe.terms(t2, f"{t2}\n{x2}"))
    n_docs = 0 if as_stored else 2 * len(pairs)
    at = datetime(2020, 1, 1, tzinfo=UTC)
    later = at + timedelta(hours=1) if as_stored else at
    out = []
    for t1, x1, t2, x2, _ in pairs:
        first = make_entry("first", t1, x1, at, "1")
        second = make_entry("second", t2, x2, later, "2")
        if as_stored:
            df.update(dedupe.terms(t1, first.text))
            n_docs += 1
        shared = set(dedupe.index_keys(t1, first.text)) & set(dedupe.index_keys(t2, second.text))
        cand = dedupe.Candidate(1, frozenset({"first"}), t1, first.text, at)
        story = dedupe.decide(second, [cand], now=later, window=WINDOW, df=df, n_docs=n_docs).story
        out.append(len(shared) >= dedupe.MIN_SHARED_KEYS and story == 1)
        if as_stored:
            df.update(dedupe.terms(t2, second.text))
            n_docs += 1
    return out


TEMPLATED = Path(__file__).resolve().parents[1] / "tests" / "feeds" / "templated.jsonl"


def load_templated(path: Path = TEMPLATED) -> list[dict[str, Any]]:
    """The templated-headline set: pairs that must stay apart (the same sentence
    about another place, person, team, number or date) and retellings that must
    join, in English, Russian, Urdu and Hindi, each article with a short text."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def judge_templated(pairs: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Would the second article join the first's story? As `judge_pairs` with
    `as_stored`: the store holds what came before, the second arrives an hour later."""
    return judge_pairs(
        [(p["a"]["title"], p["a"]["text"], p["b"]["title"], p["b"]["text"], False) for p in pairs],
        as_stored=True,
    )


def templated_report(pairs: Sequence[Mapping[str, Any]], joined: Sequence[bool]) -> dict[str, Any]:
    """Look-alikes merged and retellings joined, in all and per language."""
    out: dict[str, Any] = {}
    for lang in ["all", *sorted({p["lang"] for p in pairs})]:
        sel = [(p, j) for p, j in zip(pairs, joined, strict=True) if lang in ("all", p["lang"])]
        apart = [j for p, j in sel if p["kind"] == "apart"]
        join = [j for p, j in sel if p["kind"] == "join"]
        out[lang] = {
            "lookalikes_merged": sum(apart),
            "lookalikes": len(apart),
            "retellings_joined": sum(join),
            "retellings": len(join),
        }
    out["merged_ids"] = [
        p["id"] for p, j in zip(pairs, joined, strict=True) if j and p["kind"] == "apart"
    ]
    out["missed_ids"] = [
        p["id"] for p, j in zip(pairs, joined, strict=True) if not j and p["kind"] == "join"
    ]
    return out


def _print_templated(name: str, rep: Mapping[str, Any]) -> None:
    for lang, r in rep.items():
        if isinstance(r, dict):
            print(
                f"{name} {lang}: look-alikes merged {r['lookalikes_merged']}/{r['lookalikes']},"
                f" retellings joined {r['retellings_joined']}/{r['retellings']}"
            )
    if rep["merged_ids"]:
        print(f"  merged look-alikes: {', '.join(rep['merged_ids'])}")
    if rep["missed_ids"]:
        print(f"  retellings kept apart: {', '.join(rep['missed_ids'])}")


def run_templated(path: Path = TEMPLATED) -> dict[str, Any]:
    pairs = load_templated(path)
    rep = templated_report(pairs, judge_templated(pairs))
    _print_templated(path.name, rep)
    return rep


def templated_items(pairs: Sequence[Mapping[str, Any]]) -> list[Item]:
    """Each pair as two outlets' items an hour apart, pairs 5 days apart (never meet)."""
    at = datetime(2024, 5, 1, tzinfo=UTC)
    items = []
    for n, p in enumerate(pairs):
        day = at + timedelta(days=5 * n)
        items.append(Item(f"{p['id']}-a", "first", p["a"]["title"], p["a"]["text"], day))
        items.append(
            Item(
                f"{p['id']}-b", "second", p["b"]["title"], p["b"]["text"], day + timedelta(hours=1)
            )
        )
    return items


def run_templated_product(path: Path = TEMPLATED) -> dict[str, Any]:
    pairs = load_templated(path)
    pred = product_clusters(templated_items(pairs), round_hours=1.0)
    joined = [pred[f"{p['id']}-a"] == pred[f"{p['id']}-b"] for p in pairs]
    rep = templated_report(pairs, joined)
    _print_templated(f"{path.name} through the product", rep)
    return rep


def poll_order(
    items: Sequence[Mapping[str, str]], seed: int, round_hours: float = 6.0
) -> list[Mapping[str, str]]:
    """`items` (sorted by time) in an order the product may store them.

    A poller running every `round_hours` stores each round's items publisher by
    publisher, in whatever order its threads finish (shuffled with `seed`), each
    publisher's items oldest first; times are unchanged.
    """
    rng = random.Random(seed)
    pubs = sorted({it["publisher"] for it in items})
    rng.shuffle(pubs)
    rank = {p: i for i, p in enumerate(pubs)}
    start = _parse_time(items[0]["published"])
    step = timedelta(hours=round_hours)

    def key(it: Mapping[str, str]) -> tuple[int, int, str]:
        return (
            int((_parse_time(it["published"]) - start) / step),
            rank[it["publisher"]],
            it["published"],
        )

    return sorted(items, key=key)


# ---------------------------------------------------------------- modes


def _fmt(rep: Mapping[str, float]) -> str:
    return (
        f"pairwise P {rep['pairwise_p']:.4f} R {rep['pairwise_r']:.4f} F1 {rep['pairwise_f1']:.4f}"
        f" | B3 P {rep['bcubed_p']:.4f} R {rep['bcubed_r']:.4f} F1 {rep['bcubed_f1']:.4f}"
        f" | wrongly merged {rep['wrongly_merged']}/{rep['gold_clusters']}"
        f" | stories {rep['pred_clusters']}"
    )


def run_dev(path: Path, stability: int) -> dict[str, float]:
    items = load_dev(path)
    gold = {it["id"]: it["cluster"] for it in items}
    items.sort(key=lambda it: (it["published"], it["id"]))
    t0 = time.perf_counter()
    pred = cluster_items(items)
    dt = time.perf_counter() - t0
    rep = cluster_report(pred, gold)
    print(f"{path.name}: {len(items)} items, {dt:.2f}s")
    print("  " + _fmt(rep))
    polled: list[dict[str, float]] = []
    for seed in range(stability):
        # another poll order: publishers polled in a random order, each one's items
        # arriving together in batches of one poll round (6h), times unchanged
        by_pub = poll_order(items, seed)
        shuffled = list(items)
        random.Random(seed).shuffle(shuffled)
        for name, order in (("publisher order", by_pub), ("fully shuffled", shuffled)):
            other = cluster_items(order)
            near = pairwise(other, pred)[2]
            r2 = cluster_report(other, gold)
            if order is by_pub:
                polled.append(r2)
            print(
                f"  stability seed {seed} {name}: pairwise F1 vs time order {near:.4f};"
                f" B3 F1 {r2['bcubed_f1']:.4f}, P {r2['pairwise_p']:.4f},"
                f" wrongly merged {r2['wrongly_merged']}"
            )
    if polled:
        lo_hi = {
            k: (min(r[k] for r in polled), max(r[k] for r in polled))
            for k in ("pairwise_p", "bcubed_f1", "wrongly_merged")
        }
        print(
            f"  publisher orders ({len(polled)}, as the product polls):"
            f" pairwise P {lo_hi['pairwise_p'][0]:.4f}-{lo_hi['pairwise_p'][1]:.4f},"
            f" B3 F1 {lo_hi['bcubed_f1'][0]:.4f}-{lo_hi['bcubed_f1'][1]:.4f},"
            f" wrongly merged {lo_hi['wrongly_merged'][0]:.0f}-{lo_hi['wrongly_merged'][1]:.0f}"
        )
    return rep


def run_pairs(folder: Path) -> dict[str, tuple[float, float, float]]:
    out = {}
    allp: list[bool] = []
    allg: list[bool] = []
    for path in sorted(folder.glob("*.tsv")):
        pairs = load_pairs(path)
        predicted = judge_pairs(pairs)
        gold = [p[4] for p in pairs]
        acc, prec, rec = pair_scores(predicted, gold)
        out[path.name] = (acc, prec, rec)
        allp += predicted
        allg += gold
        print(
            f"{path.name}: {len(pairs)} pairs,"
            f" accuracy {acc:.3f} precision {prec:.3f} recall {rec:.3f}"
        )
    acc, prec, rec = pair_scores(allp, allg)
    out["all"] = (acc, prec, rec)
    print(
        f"pairs, all: {len(allg)} pairs, accuracy {acc:.3f} precision {prec:.3f} recall {rec:.3f},"
        f" {false_merges(allp, allg)}"
    )
    young: list[bool] = []
    for path in sorted(folder.glob("*.tsv")):
        young += judge_pairs(load_pairs(path), as_stored=True)
    acc, prec, rec = pair_scores(young, allg)
    out["as stored"] = (acc, prec, rec)
    print(
        f"pairs, df as stored so far (as --through-product): accuracy {acc:.3f}"
        f" precision {prec:.3f} recall {rec:.3f}"
    )
    return out


def run_synthetic(n: int, seed: int = 0) -> None:
    """N headlines recombined from dev.jsonl words, 20 feeds, one every 5 seconds."""
    rng = random.Random(seed)
    if (SHARED / "dev.jsonl").exists():
        titles = [it["title"] for it in load_dev(SHARED / "dev.jsonl")]
    else:
        titles = ["Markets rally as central bank holds rates steady in March"]
    words = [w for t in titles for w in t.split()]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    entries: list[models.Entry] = []
    for i in range(n):
        if i and rng.random() < 0.3:
            # a rewrite of a recent headline: shuffled, a word swapped
            base = entries[rng.randrange(max(0, i - 500), i)].title.split()
            rng.shuffle(base)
            base[rng.randrange(len(base))] = rng.choice(words)
            title = " ".join(base)
        else:
            title = " ".join(rng.choice(words) for _ in range(rng.randint(6, 12)))
        entries.append(
            make_entry(
                f"feed{rng.randrange(20)}", title, "", start + timedelta(seconds=5 * i), str(i)
            )
        )
    for cap in (None, 200):
        index = MemoryIndex(WINDOW, max_postings=cap)
        t0 = time.perf_counter()
        merged = 0
        for e in entries:
            before = index.next_story
            index.add(e)
            merged += index.next_story == before
        dt = time.perf_counter() - t0
        print(
            f"synthetic: {n} entries in {dt:.1f}s = {n / dt:.0f} entries/s"
            f" (postings per key capped at {cap}); {merged} joined a story"
        )


# ---------------------------------------------------------------- through the product


@dataclass(frozen=True)
class Item:
    """One labelled article as an outlet's feed carries it."""

    id: str
    publisher: str
    title: str
    text: str
    published: datetime


def _rss(channel: str, base: str, items: Sequence[Item]) -> bytes:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(channel)}</title><link>{base}/</link><description>bench</description>",
    ]
    for it in items:
        out.append(
            f"<item><title>{escape(it.title)}</title>"
            f"<link>{base}/article/{it.id}</link>"
            f'<guid isPermaLink="false">{escape(it.id)}</guid>'
            f"<pubDate>{format_datetime(it.published)}</pubDate>"
            + (f"<description>{escape(it.text)}</description>" if it.text else "")
            + "</item>"
        )
    out.append("</channel></rss>")
    return "\n".join(out).encode("utf-8")


def product_clusters(items: Sequence[Item], round_hours: float = 6.0) -> dict[str, int]:
    """Poll `items` through served feeds and the real store: id -> published cluster.

    Publishers become feeds named p0, p1, ... in order of first appearance.
    """
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    from aggregator import config as config_mod
    from aggregator.ingest import pipeline as poll
    from aggregator.publish import web
    from aggregator.storage import store
    from tests.conftest import toml_config
    from tests.feedserver import FeedServer

    pubs = list(dict.fromkeys(it.publisher for it in items))
    name = {p: f"p{i}" for i, p in enumerate(pubs)}
    by_pub: dict[str, list[Item]] = defaultdict(list)
    for it in sorted(items, key=lambda it: (it.published, it.id)):
        by_pub[it.publisher].append(it)
    start = min(it.published for it in items)
    end = max(it.published for it in items)
    step = timedelta(hours=round_hours)
    with tempfile.TemporaryDirectory() as tmp, FeedServer() as server:
        folder = Path(tmp)
        (folder / "feeds").mkdir()
        server.serve_dir("/feeds", folder / "feeds")
        base = server.base_url
        feeds: list[dict[str, object]] = [
            {"name": name[p], "url": f"{base}/feeds/{name[p]}.xml", "title": p} for p in pubs
        ]
        topic = {"slug": "all", "title": "All", "limit": 10_000}
        text = toml_config(
            feeds,
            [topic],
            extra='[dedupe]\nwindow = "48h"',
            polling='concurrency = 8\nper_host = 8\ntimeout = "30s"',
            base_url=base,
        )
        (folder / "aggregator.toml").write_text(text, encoding="utf-8")
        cfg = config_mod.load(folder / "aggregator.toml")
        db = store.Store(cfg.database.path)
        poll.sync(cfg, db)
        poller = poll.Poller(cfg)
        try:
            at = start
            while True:
                at = min(at + step, end) if at < end else end
                due = []
                for p in pubs:
                    now_items = [it for it in by_pub[p] if it.published <= at]
                    path = folder / "feeds" / f"{name[p]}.xml"
                    body = _rss(p, base, now_items)
                    if now_items and (not path.exists() or path.read_bytes() != body):
                        path.write_bytes(body)
                        due.append(p)
                wanted = {name[p] for p in due}
                for r in poll.poll_many(poller, [f for f in cfg.feeds if f.name in wanted], at):
                    if r.error:
                        print(f"  feed {r.feed}: {r.error}", file=sys.stderr)
                if at >= end:
                    break
        finally:
            poller.close()
        resp = web.create_app(cfg).test_client().get("/topics/all.json")
        feed = json.loads(resp.data)
    prefix = f"{base}/article/"
    pred: dict[str, int] = {}
    for n, item in enumerate(feed["items"]):
        urls = [item["url"]] + [r["url"] for r in item.get("_aggregator", {}).get("related", [])]
        for u in urls:
            if u.startswith(prefix):
                pred[u[len(prefix) :]] = n
    missing = [it.id for it in items if it.id not in pred]
    if missing:
        print(f"  {len(missing)} items not in the published feed (e.g. {missing[:3]})")
    # an item missing from the output counts as alone: it was at least not merged
    next_id = len(feed["items"])
    for i in missing:
        pred[i] = next_id
        next_id += 1
    return pred


def run_dev_product(path: Path, round_hours: float, repeats: int = 1) -> dict[str, float]:
    """dev.jsonl through the product; `repeats` - 1 more runs show how polls in another
    order (feeds finish on 8 threads in no fixed order) change the clusters."""
    raw = load_dev(path)
    gold = {it["id"]: it["cluster"] for it in raw}
    items = [
        Item(
            it["id"],
            it["publisher"],
            it["title"],
            it.get("summary", ""),
            _parse_time(it["published"]),
        )
        for it in raw
    ]
    t0 = time.perf_counter()
    pred = product_clusters(items, round_hours)
    dt = time.perf_counter() - t0
    rep = cluster_report(pred, gold)
    pubs = len({it.publisher for it in items})
    print(
        f"{path.name} through the product: {len(items)} items, {pubs} feeds,"
        f" {round_hours:g}h rounds, {dt:.1f}s"
    )
    print("  " + _fmt(rep))
    for n in range(1, repeats):
        other = product_clusters(items, round_hours)
        r2 = cluster_report(other, gold)
        print(
            f"  run {n + 1}: pairwise F1 vs run 1 {pairwise(other, pred)[2]:.4f};"
            f" B3 F1 {r2['bcubed_f1']:.4f}, P {r2['pairwise_p']:.4f},"
            f" wrongly merged {r2['wrongly_merged']}"
        )
    return rep


def run_pairs_product(folder: Path) -> tuple[float, float, float]:
    """Each pair's articles as two outlets; pairs 5 days apart so they never meet."""
    allp: list[bool] = []
    allg: list[bool] = []
    for path in sorted(folder.glob("*.tsv")):
        pairs = load_pairs(path)
        at = datetime(2020, 1, 1, tzinfo=UTC)
        items = []
        for n, (t1, x1, t2, x2, _) in enumerate(pairs):
            day = at + timedelta(days=5 * n)
            items.append(Item(f"{n}-a", "first", t1, x1, day))
            items.append(Item(f"{n}-b", "second", t2, x2, day + timedelta(hours=1)))
        # the first outlet's article is stored before the second's arrives
        pred = product_clusters(items, round_hours=1.0)
        predicted = [pred[f"{n}-a"] == pred[f"{n}-b"] for n in range(len(pairs))]
        gold = [p[4] for p in pairs]
        acc, prec, rec = pair_scores(predicted, gold)
        allp += predicted
        allg += gold
        print(
            f"{path.name} through the product: {len(pairs)} pairs,"
            f" accuracy {acc:.3f} precision {prec:.3f} recall {rec:.3f}"
        )
    acc, prec, rec = pair_scores(allp, allg)
    print(
        f"pairs through the product, all: {len(allg)} pairs,"
        f" accuracy {acc:.3f} precision {prec:.3f} recall {rec:.3f}, {false_merges(allp, allg)}"
    )
    return acc, prec, rec


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED, help="folder with dev.jsonl and pairs/")
    ap.add_argument(
        "--stability",
        type=int,
        default=1,
        help="shuffled-order runs (seeds); with --through-product, runs in all",
    )
    ap.add_argument("--synthetic", type=int, metavar="N", help="throughput on N synthetic entries")
    ap.add_argument(
        "--through-product", action="store_true", help="serve feeds, poll, read the topic feed"
    )
    ap.add_argument(
        "--round", type=float, default=6.0, metavar="HOURS", help="poll round (through-product)"
    )
    args = ap.parse_args(argv)
    if args.synthetic:
        run_synthetic(args.synthetic)
        return 0
    if not (args.data / "dev.jsonl").exists():
        print(f"no data at {args.data}: the templated set only")
        (run_templated_product if args.through_product else run_templated)()
        return 0
    if args.through_product:
        run_dev_product(args.data / "dev.jsonl", args.round, args.stability)
        run_pairs_product(args.data / "pairs")
        run_templated_product()
        return 0
    run_dev(args.data / "dev.jsonl", args.stability)
    run_pairs(args.data / "pairs")
    run_templated()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
