"""Scale: topic-feed and ingest times with 10k, 100k and 1M entries stored.

    .venv/bin/python bench/scale.py --sizes 10000 100000 --runs 5
    .venv/bin/python bench/scale.py --sizes 10000 100000 1000000 --dir /work/scale-tmp

`bench/run.py scale` grows its database by cold polls of the farm, a few hundred
entries a second, so it never reaches 1M. This script grows ONE database file step
by step, fast, with rows the product computed itself:

* **Rows.** Items come from the farm's generator (`farm.news_item`: made-up
  headlines, a lead of their own, pool paragraphs; one in five retells a shared
  story with the same headline and a reworded lead). `--feeds` outlets publish
  `--per-day` entries a day between them (default 1,000 feeds x 15 = 15,000 a day),
  dated backwards from now, so 10k entries span the last 16 hours, 100k a week and
  1M about 67 days, and the dedupe window around "now" holds what such a
  deployment's would. Retellings draw their story from that day's `per-day / 15`
  shared stories, so a shared story has about three tellings.
* **Pipeline.** Each item becomes the `ParsedEntry` that `parse.parse` gives for
  its RSS (checked against the real parser on one feed's items per chunk; feedparser
  itself would be half of the loading time), then goes through
  `normalize.normalize` and `prepare.prepare_entry` (topic matches, dedupe keys,
  signature, terms) in `--jobs` worker processes, and is stored in one transaction
  per `--chunk` entries through `Store` methods, as `poll._store_entries` does. The
  one step left out is the near-duplicate search (`candidate_entries` +
  `dedupe.decide`) per loaded entry: a retelling joins its story by the generator's
  story number instead, so stories have several members as in real life, without
  the search's cost during loading.
* **Measures**, at each size: (a) an uncached 50-entry `publish.render_topic` of the
  broadest and the narrowest topic, median of `--runs`; (b) `poll.poll_feed` of one
  feed over a real loopback HTTP server whose document holds `--new` new items
  dated now (one of them retelling a story stored in the last hours, so the
  candidate search has real work) besides 20 already stored ones; ms per new entry,
  median of `--runs` polls (each with fresh items); (c) database bytes per entry
  after `PRAGMA wal_checkpoint(TRUNCATE)`; (d) the peak RSS of this process (which
  includes loading).

`--explain` captures the SQL that store.py runs for (a) and (b) at each size, re-runs
each read statement to time it, and prints the times per size and the `EXPLAIN QUERY
PLAN` of each statement at the last size, to find why a figure is not flat.

The script never asserts a speed; it prints figures. Times are wall-clock and
noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from farm import NewsItem, item_xml, news_item  # noqa: E402
from run import TOPICS, median, write_config  # noqa: E402

from aggregator import config, models
from aggregator.ingest import normalize, parse, prepare
from aggregator.ingest import pipeline as poll
from aggregator.models import PollResult  # noqa: E402
from aggregator.publish import cache as publish
from aggregator.storage import store  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402

#: items of a feed's document that are already stored when it is polled
STORED_IN_DOC = 20
#: item numbers of measured (new) items start here, far above loaded ones
NEW_BASE = 50_000_000


def rss(feed: int, items: list[NewsItem]) -> bytes:
    """One feed document, as the farm serves it."""
    head = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<channel><title>Outlet {feed}</title>"
        f"<link>http://outlet{feed}.example/</link>"
        f"<description>News from outlet {feed}</description>"
    )
    return (head + "".join(item_xml(i) for i in items) + "</channel></rss>\n").encode()


def parsed_entry(it: NewsItem) -> models.ParsedEntry:
    """What `parse.parse` gives for the item's RSS (checked by `check`), without
    feedparser's cost, which is half of the loading time."""
    return models.ParsedEntry(
        guid=it.guid,
        link=it.link,
        title=it.title,
        summary=it.description,
        content="",
        author=it.author,
        published=it.published.replace(microsecond=0),
        updated=None,
    )


def check(feed: int, items: list[NewsItem]) -> None:
    """The loaded rows are the real parser's: one feed's items per chunk go through it."""
    parsed = parse.parse(rss(feed, items), {"content-type": "application/rss+xml"}, None)
    direct = [parsed_entry(i) for i in items]
    if list(parsed.entries) != direct or parsed.language is not None:
        raise SystemExit(f"parse.parse disagrees with parsed_entry: {parsed.entries[:1]}")


@dataclass(frozen=True)
class Timeline:
    """Which item is entry k: feed k % feeds, dated k / per_day days before `now`."""

    feeds: int
    per_day: int
    now: datetime

    @property
    def stories_per_day(self) -> int:
        return max(50, self.per_day // 15)

    def item(self, k: int) -> NewsItem:
        age = timedelta(days=k / self.per_day)
        day = int(age / timedelta(days=1))
        # larger item numbers are newer, as in the farm
        n = 10_000_000 - k // self.feeds
        return news_item(
            k % self.feeds,
            n,
            self.now - age,
            self.stories_per_day,
            story_base=day * self.stories_per_day,
        )


_matchers: list[prepare.TopicMatcher] | None = None


def _start_worker(cfg_path: Path) -> None:
    global _matchers
    _matchers = prepare.compile_topics(config.load(cfg_path))


def prepare_chunk(
    timeline: Timeline, start: int, end: int
) -> tuple[list[Any], dict[str, int | None]]:
    """Entries start..end normalized and prepared as `poll` prepares them, with the
    story each retells (by guid); runs in a worker process."""
    assert _matchers is not None
    by_feed: dict[int, list[NewsItem]] = defaultdict(list)
    for k in range(start, end):
        it = timeline.item(k)
        by_feed[it.feed].append(it)
    prepared = []
    story_of: dict[str, int | None] = {}
    for feed, items in by_feed.items():
        if feed == start % timeline.feeds:
            check(feed, items)
        for it in items:
            story_of[it.guid] = it.story
            seen = it.published + timedelta(minutes=10)
            entry = normalize.normalize(parsed_entry(it), f"f{feed}", seen, base_url=None)
            prepared.append(prepare.prepare_entry(_matchers, entry, None))
    return prepared, story_of


class Loader:
    """Grows the database backwards in time, preparing chunks in `jobs` worker
    processes while this one writes."""

    def __init__(
        self, db: store.Store, poller: poll.Poller, timeline: Timeline, cfg_path: Path, jobs: int
    ) -> None:
        self.db = db
        self.poller = poller
        self.timeline = timeline
        self.feeds = timeline.feeds
        self.stories_per_day = timeline.stories_per_day
        self.loaded = 0
        #: the generator's story number -> our story id
        self.story_ids: dict[int, int] = {}
        self.pool = ProcessPoolExecutor(jobs, initializer=_start_worker, initargs=(cfg_path,))
        self.jobs = jobs

    def item(self, k: int) -> NewsItem:
        return self.timeline.item(k)

    def close(self) -> None:
        self.pool.shutdown()

    def grow(self, target: int, chunk: int) -> None:
        starts = list(range(self.loaded, target, chunk))
        pending: deque[Future[tuple[list[Any], dict[str, int | None]]]] = deque()
        for start in starts:
            pending.append(
                self.pool.submit(prepare_chunk, self.timeline, start, min(target, start + chunk))
            )
            if len(pending) > self.jobs:
                self._store(*pending.popleft().result())
        while pending:
            self._store(*pending.popleft().result())
        self.loaded = target

    def _store(self, prepared: list[Any], story_of: dict[str, int | None]) -> None:
        host = self.poller.host
        counts: dict[str, int] = {}
        touched: set[int] = set()
        db = self.db
        with db.write():
            for p in sorted(prepared, key=lambda p: p.entry.published):
                entry = p.entry
                seen = entry.published + timedelta(minutes=10)
                story = story_of.get(entry.guid or "")
                sid = self.story_ids.get(story) if story is not None else None
                if sid is None:
                    sid = db.new_story(entry.published, seen, host)
                    if story is not None:
                        self.story_ids[story] = sid
                else:
                    db.count_merge(entry.feed)
                    db.touch_story(sid, seen)
                entry_id = db.insert_entry(entry, sid, seen, p.sig.pack())
                db.add_entry_keys(entry_id, p.keys, entry.published)
                for t in p.sig.everything:
                    counts[t] = counts.get(t, 0) + 1
                for slug, terms in p.matches.items():
                    db.add_topic_story(slug, sid, terms)
                touched.add(sid)
            db.add_term_counts(counts)
            db.bump_topics_of(touched)


class Measure:
    """The per-request paths, on the live database."""

    def __init__(
        self, cfg: config.Config, db: store.Store, loader: Loader, server: FeedServer
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.loader = loader
        self.server = server
        self.polls = 0
        self.poller: poll.Poller | None = None

    def _poll(self, new: int) -> tuple[float, PollResult]:
        assert self.poller is not None
        feed = (self.polls * 37) % self.loader.feeds
        now = datetime.now(UTC)
        body = self._document(feed, new, now)
        self.server.add(f"/feed/{feed}.xml", body, content_type="application/rss+xml")
        self.polls += 1
        t = time.perf_counter()
        result = poll.poll_feed(self.poller, self.cfg.feeds[feed], now)
        ms = (time.perf_counter() - t) * 1000
        assert result.status == "ok", result
        return ms, result

    def close(self) -> None:
        if self.poller is not None:
            self.poller.close()

    def render_ms(self, slug: str, runs: int) -> float:
        topic = self.cfg.topic(slug)
        assert topic is not None
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            publish.render_topic(self.db, self.cfg, topic, "atom", limit=50)
            times.append((time.perf_counter() - t) * 1000)
        return median(times)

    def _document(self, feed: int, new: int, now: datetime) -> bytes:
        """`new` new items dated up to now, one retelling a story stored in the last
        hours, then the feed's newest stored items (unchanged, so skipped by hash)."""
        loader = self.loader
        base = NEW_BASE + self.polls * 1000
        fresh: list[NewsItem] = []
        # the retelling: the first item number whose story is stored (newest day)
        n = base
        while True:
            it = news_item(feed, n, now, loader.stories_per_day, 0)
            if it.story is not None and it.story in loader.story_ids:
                fresh.append(it)
                break
            n += 1
        for j in range(1, new):
            when = now - timedelta(minutes=3 * j)
            fresh.append(news_item(feed, base + 500 + j, when, loader.stories_per_day, 0))
        have = min(STORED_IN_DOC, loader.loaded // loader.feeds)
        stored = [loader.item(feed + j * loader.feeds) for j in range(have)]
        return rss(feed, fresh + stored)

    def ingest(self, runs: int, new: int) -> tuple[float, int, int]:
        """ms per new entry (median of runs), new and merged entries of the last poll.

        One poller for the whole run, as a daemon has, and one poll before the timed
        ones, so pools and connections it starts on first use are not counted."""
        if self.poller is None:
            self.poller = poll.Poller(self.cfg)
            self._poll(new)
        times = []
        result = None
        for _ in range(runs):
            ms, result = self._poll(new)
            times.append(ms / max(1, result.new + result.merged))
        assert result is not None
        # entries stored (new ones and those that joined a story), and the joined ones
        return median(times), result.new + result.merged, result.merged


@contextmanager
def traced(db: store.Store) -> Iterator[list[str]]:
    """The SQL statements the store runs meanwhile, with their values bound."""
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        db.conn.set_trace_callback(None)


def shape_of(sql: str) -> str:
    """A statement with its values replaced, so repeated calls group together."""
    shape = re.sub(r"'[^']*'|\b\d+(\.\d+)?\b", "?", " ".join(sql.split()))
    return re.sub(r"\?(\s*,\s*\?)+", "?,...", shape)


def statement_costs(db: store.Store, statements: list[str], runs: int = 3) -> dict[str, float]:
    """ms of each distinct read statement, re-run on this database (median of runs),
    summed over the calls of one path: which one grows with the database."""
    costs: dict[str, float] = defaultdict(float)
    for sql in statements:
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            db.conn.execute(sql).fetchall()
            times.append((time.perf_counter() - t) * 1000)
        costs[shape_of(sql)] += median(times)
    return dict(costs)


def plans(db: store.Store, statements: list[str]) -> list[str]:
    """EXPLAIN QUERY PLAN of each distinct read statement."""
    out = []
    done = set()
    for sql in statements:
        shape = shape_of(sql)
        if shape in done or not sql.lstrip().upper().startswith("SELECT"):
            continue
        done.add(shape)
        out.append(f"\n    {shape[:400]}")
        # a UNION of one subquery per key repeats the same lines: print each once
        lines: dict[str, int] = {}
        for row in db.conn.execute("EXPLAIN QUERY PLAN " + sql):
            line = re.sub(r"subquery-\d+", "subquery-N", row[3])
            lines[line] = lines.get(line, 0) + 1
        out += [f"      {line}" + (f"  (x{n})" if n > 1 else "") for line, n in lines.items()]
    return out


def written() -> int:
    """Bytes this process has written so far (WAL, checkpoints), where Linux says."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--feeds", type=int, default=1000, help="outlets of the deployment")
    ap.add_argument("--per-day", type=int, default=15_000, help="entries a day, all feeds")
    ap.add_argument("--new", type=int, default=5, help="new items per measured poll")
    ap.add_argument("--chunk", type=int, default=5000, help="entries per write transaction")
    ap.add_argument("--jobs", type=int, default=2, help="processes preparing entries")
    ap.add_argument("--dir", default=None, help="where the database goes (deleted after)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--explain", action="store_true", help="query plans at the last size")
    args = ap.parse_args(argv)

    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, Python {sys.version.split()[0]}")
    print(
        f"# {args.feeds} feeds, {args.per_day} entries/day "
        f"({args.per_day / args.feeds:g} per feed), dated backwards from now"
    )
    folder = Path(tempfile.mkdtemp(prefix="scale-", dir=args.dir))
    rows: list[dict[str, Any]] = []
    last_plans: list[str] = []
    costs: dict[tuple[str, str], dict[int, float]] = {}
    chosen: list[str] = []
    try:
        with FeedServer() as server:
            cfg_path = write_config(folder, server.base_url, args.feeds, 4)
            cfg = config.load(cfg_path)
            db = store.Store(cfg.database.path)
            poll.sync(cfg, db)
            poller = poll.Poller(cfg)
            now = datetime.now(UTC)
            timeline = Timeline(args.feeds, args.per_day, now)
            loader = Loader(db, poller, timeline, cfg_path, args.jobs)
            measure = Measure(cfg, db, loader, server)
            print(f"# dedupe window {config.format_duration(cfg.dedupe.window)}", flush=True)
            for size in sorted(args.sizes):
                before, t, w = loader.loaded, time.perf_counter(), written()
                loader.grow(size, args.chunk)
                load_s = time.perf_counter() - t
                load_kb = (written() - w) / 1024 / max(1, loader.loaded - before)
                rate = (loader.loaded - before) / load_s
                summaries = db.topic_summaries([(s, s, q) for s, q in TOPICS])
                held = {s.slug: s.entries for s in summaries}
                if not chosen:  # the same two topics at every size
                    by_size = sorted((n, slug) for slug, n in held.items() if n >= 50)
                    chosen += [by_size[-1][1], by_size[0][1]]
                broad, narrow = [(held[slug], slug) for slug in chosen]
                render_broad = measure.render_ms(broad[1], args.runs)
                render_narrow = measure.render_ms(narrow[1], args.runs)
                ingest, new, merged = measure.ingest(args.runs, args.new)
                busy, _, _ = db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy:
                    print("  checkpoint incomplete: the WAL is counted too", file=sys.stderr)
                free = db.conn.execute("PRAGMA freelist_count").fetchone()[0]
                page = db.conn.execute("PRAGMA page_size").fetchone()[0]
                stored = db.counts()
                wal = cfg.database.path.with_name(cfg.database.path.name + "-wal")
                size_b = cfg.database.path.stat().st_size + (wal.stat().st_size if busy else 0)
                row = {
                    "entries": stored["entries"],
                    "stories": stored["stories"],
                    "days": loader.loaded / args.per_day,
                    "broad": f"{broad[1]} ({broad[0]})",
                    "narrow": f"{narrow[1]} ({narrow[0]})",
                    "render_broad": render_broad,
                    "render_narrow": render_narrow,
                    "ingest": ingest,
                    "new_merged": f"{new}/{merged}",
                    "bytes": size_b / stored["entries"],
                    "free": free * page / size_b,
                    "rate": rate,
                    "load_kb": load_kb,
                    "rss": rss_mb(),
                }
                rows.append(row)
                if args.explain:
                    topic = cfg.topic(chosen[0])
                    assert topic is not None
                    with traced(db) as render_sql:
                        publish.render_topic(db, cfg, topic, "atom", limit=50)
                    # poll_feed runs on this thread's own connection
                    with traced(store.for_thread(cfg.database.path)) as poll_sql:
                        measure.ingest(1, args.new)
                    for path, sqls in (("render", render_sql), ("poll", poll_sql)):
                        for shape, ms in statement_costs(db, sqls).items():
                            costs.setdefault((path, shape), {})[row["entries"]] = ms
                    last_plans = [
                        "\n## Query plans: render_topic",
                        *plans(db, render_sql),
                        "\n## Query plans: poll_feed",
                        *plans(db, poll_sql),
                    ]
                print(f"  {row}", file=sys.stderr, flush=True)
            loader.close()
            measure.close()
            db.close()
            poller.close()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"# kept {folder}")

    print(
        "\n| entries | stories | days | render 50, broad topic ms | render 50, narrow topic ms "
        "| ingest ms/new entry | new/merged | bytes/entry (free) | load entries/s "
        "| load KB written/entry | peak RSS MB |"
    )
    print("|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['entries']} | {r['stories']} | {r['days']:.1f} "
            f"| {r['render_broad']:.1f} {r['broad']} | {r['render_narrow']:.1f} {r['narrow']} "
            f"| {r['ingest']:.2f} | {r['new_merged']} | {r['bytes']:.0f} ({r['free']:.0%}) "
            f"| {r['rate']:.0f} | {r['load_kb']:.0f} "
            f"| {r['rss']:.0f} |"
        )
    if costs:
        sizes = [r["entries"] for r in rows]
        print("\nms per read statement, summed over one path's calls, re-run at each size:\n")
        print("| path | statement | " + " | ".join(str(n) for n in sizes) + " |")
        print("|---|---|" + "---:|" * len(sizes))
        for (path, shape), by in sorted(costs.items(), key=lambda kv: -max(kv[1].values())):
            cells = " | ".join(f"{by[n]:.2f}" if n in by else "" for n in sizes)
            print(f"| {path} | `{shape[:160]}` | {cells} |")
    print("\n".join(last_plans))


if __name__ == "__main__":
    main()
