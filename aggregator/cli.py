"""The command line: turns arguments into calls and errors into exit codes.

Exit 0 on success, 2 on a bad config or usage, 1 on other failures. One failing
feed never makes a command fail. No logic lives here beyond wiring.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from aggregator import __version__, logs, models
from aggregator import config as config_mod
from aggregator.config import checks
from aggregator.errors import AggregatorError, ConfigError, StorageError
from aggregator.ingest import pipeline as poll
from aggregator.publish import cache as publish
from aggregator.publish import status as feed_status
from aggregator.storage import store

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("aggregator")


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(logs.JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every job run at INFO; keep its warnings but not below.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # waitress warns "Task queue depth is N" for each request that waits for a worker
    # thread: under a burst of readers that is a log line per request, written on the
    # request path. Its other warnings (connection limit, socket errors) stay on.
    logging.getLogger("waitress.queue").setLevel(max(logging.ERROR, root.level))


def _load(ctx: click.Context) -> config_mod.Config:
    obj = ctx.ensure_object(dict)
    if "config" not in obj:
        obj["config"] = config_mod.load(config_mod.resolve_path(obj.get("config_path")))
    cfg: config_mod.Config = obj["config"]
    return cfg


def _errors(func: F) -> F:
    """Map our errors to exit codes: config 2, anything else of ours 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            raise  # the reader went away (`| head`): `main` ends quietly
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (AggregatorError, OSError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aggregator")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (else $AGGREGATOR_CONFIG, else config/aggregator.toml).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Poll regional news feeds into SQLite and republish merged topic feeds.

    \b
    Example:
        aggregator --config config/aggregator.toml run
    """
    ctx.ensure_object(dict)["config_path"] = config_path
    _setup_logging(log_level, log_format)


@cli.command()
@click.pass_context
@_errors
def run(ctx: click.Context) -> None:
    """Run the daemon: poll every feed on its interval and serve HTTP.

    Stops cleanly on SIGTERM or SIGINT.

    \b
    Example:
        aggregator run
    """
    from aggregator import daemon

    sys.exit(daemon.run(_load(ctx)))


@cli.command()
@click.pass_context
@_errors
def serve(ctx: click.Context) -> None:
    """Serve the topic feeds over HTTP without polling.

    \b
    Example:
        aggregator serve
    """
    from aggregator import daemon

    sys.exit(daemon.run(_load(ctx), poll_feeds=False))


@cli.command("poll")
@click.option("--feed", "feed_name", metavar="NAME", help="Poll only this feed.")
@click.pass_context
@_errors
def poll_cmd(ctx: click.Context, feed_name: str | None) -> None:
    """Poll every feed (or one) once, store, dedupe, and exit.

    Prints one line per feed and a total: the items read, and what became of each
    (read = new + updated + unchanged + merged + skipped, the skipped ones by reason).
    When stdout and stderr are the same terminal, the per-feed log lines and the
    progress bar are left out (the rows say the same); with stdout redirected,
    stderr keeps both.

    \b
    Example:
        aggregator poll --feed dawn
    """
    cfg = _load(ctx)
    feeds = list(cfg.feeds)
    if feed_name is not None:
        feed = cfg.feed(feed_name)
        if feed is None:
            raise ConfigError(str(cfg.path), f"no feed named {feed_name!r}", key="--feed")
        feeds = [feed]
    shared = logs.same_terminal()
    if shared:
        # The row below says what the poll line would: print each feed once.
        for handler in logging.getLogger().handlers:
            handler.addFilter(logs.NoPollLines())
    with _poll_lock(cfg):
        db = store.Store(cfg.database.path)
        poll.sync(cfg, db)
        poller = poll.Poller(cfg)
        started = time.monotonic()
        totals = {"new": 0, "updated": 0, "merged": 0, "unchanged": 0, "read": 0}
        skipped: dict[str, int] = {}
        errors = 0
        results = poll.poll_many(poller, feeds)
        width = max((len(f.name) for f in feeds), default=4)
        # A bar on the terminal where the rows appear would run into them; there the
        # rows are the progress. It shows when stdout goes to a file.
        show_progress = sys.stderr.isatty() and len(feeds) > 1 and not shared
        with click.progressbar(
            results, length=len(feeds), file=sys.stderr if show_progress else io.StringIO()
        ) as bar:
            for r in bar:
                for k in totals:
                    totals[k] += getattr(r, k)
                skipped = models.add_counts(skipped, r.skipped)
                errors += r.status == "error"
                line = (
                    f"{r.feed:<{width}}  {r.status:<12} new={r.new:<4} updated={r.updated:<4} "
                    f"merged={r.merged:<4} unchanged={r.unchanged:<4} "
                    f"{_skipped_text(r.skipped)} read={r.read:<4} {r.seconds:6.2f}s"
                )
                if r.error:
                    line += f"  {r.error}"
                click.echo(line)
        poller.close()
        publish.export_files(db, cfg)
        click.echo(
            f"total: {len(feeds)} feeds, "
            + " ".join(f"{k}={n}" for k, n in totals.items())
            + f" {_skipped_text(skipped)} errors={errors} in {time.monotonic() - started:.2f}s"
        )


def _skipped_text(skipped: Mapping[str, int]) -> str:
    """`skipped=3 (repeated_guid=2, no_content=1)`: the count, then each reason."""
    total = sum(skipped.values())
    reasons = ", ".join(f"{k}={n}" for k, n in sorted(skipped.items()) if n)
    return f"skipped={total}" + (f" ({reasons})" if reasons else "")


class _poll_lock:
    """Serialize overlapping `aggregator poll` runs (a cron overlap): the second waits."""

    def __init__(self, cfg: config_mod.Config) -> None:
        self.path = Path(str(cfg.database.path) + ".poll-lock")

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")  # noqa: SIM115
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            click.echo("another poll is running on this database; waiting for it", err=True)
            fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


@cli.command()
@click.pass_context
@_errors
def check(ctx: click.Context) -> None:
    """Validate the config and print what it would poll and publish.

    Exits 2 on an error. What loads but looks unintended (a lowercase `and` in a
    query, a query of NOTs only, one URL under two names, an interval below
    min_interval) is a "warning:" line on stderr; the exit status stays 0.

    \b
    Example:
        aggregator --config /etc/aggregator.toml check
    """
    cfg = _load(ctx)
    from aggregator.ingest.http.fetch import user_agent  # urllib3: for `check` only

    for line in config_mod.describe(cfg, user_agent(cfg.polling.contact)):
        click.echo(line)
    notes = checks.warnings(cfg)
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(
        f"config ok: {len(cfg.feeds)} feeds, {len(cfg.topics)} topics"
        + (f", {len(notes)} warnings" if notes else "")
    )


def _when(dt: datetime | None, now: datetime, *, compact: bool = False) -> str:
    if dt is None:
        return "-"
    delta = (dt - now).total_seconds()
    if dt.year >= 9999:
        return "never"
    suffix = "ago" if delta < 0 else "from now"
    delta = abs(delta)
    if delta < 90:
        n = f"{delta:.0f}s"
    elif delta < 5400:
        n = f"{delta / 60:.0f}m"
    elif delta < 172800:
        n = f"{delta / 3600:.1f}h"
    else:
        n = f"{delta / 86400:.1f}d"
    if compact and suffix == "from now":
        return f"in {n}"
    return f"{n} {suffix}"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--wide", is_flag=True, help="Every column, uncut (merges, last read, skipped items)."
)
@click.pass_context
@_errors
def status(ctx: click.Context, as_json: bool, wide: bool) -> None:
    """One row per feed: last fetch, HTTP status, last error, entries, next poll.

    The table fits 100 columns, cutting long names and errors; --wide shows every
    column whole, --json everything as data.

    \b
    Example:
        aggregator status
    """
    cfg = _load(ctx)
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    now = datetime.now(UTC)
    rows = feed_status.feed_rows(cfg, db.feed_statuses())
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2, ensure_ascii=False))
        return
    table = [_status_row(s, now, compact=not wide) for s in rows]
    columns = STATUS_COLUMNS if wide else STATUS_NARROW
    header = [c if wide else _NARROW_HEADERS.get(c, c) for c in columns]
    picked = [header, *([row[c] for c in columns] for row in table)]
    if not wide:
        picked = _fit(picked, STATUS_WIDTH)
    widths = [max(len(r[i]) for r in picked) for i in range(len(columns))]
    for r in picked:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


#: every column of `status --wide`, in order
STATUS_COLUMNS = (
    "FEED",
    "STATE",
    "LAST FETCH",
    "HTTP",
    "ENTRIES",
    "MERGED",
    "LAST READ",
    "SKIPPED",
    "NEXT POLL",
    "WHY",
    "LAST ERROR",
)
#: the columns `status` shows by default, so a row fits STATUS_WIDTH
STATUS_NARROW = (
    "FEED",
    "STATE",
    "LAST FETCH",
    "HTTP",
    "ENTRIES",
    "NEXT POLL",
    "WHY",
    "LAST ERROR",
)
#: the width `status` fits its table into (a terminal's classic 80 leaves no room for
#: the error, and 100 is what a laptop's half-screen window shows)
STATUS_WIDTH = 100
#: the most the name and "why" columns take before the error gets the rest
_FEED_MAX, _WHY_MAX = 20, 16
_NARROW_HEADERS = {"LAST FETCH": "FETCHED"}


def _status_row(r: Any, now: datetime, *, compact: bool = False) -> dict[str, str]:
    """One `status.FeedRow` as the table's cells, by column."""
    moved = f" (moved to {r.url})" if r.url != r.config_url else ""
    return {
        "FEED": r.feed,
        "STATE": r.state.split()[0] if compact else r.state,  # "never fetched": "never"
        "LAST FETCH": _when(r.last_fetch, now),
        "HTTP": str(r.status or "-"),
        "ENTRIES": str(r.entries),
        "MERGED": str(r.merged),
        "LAST READ": r.last_read,
        "SKIPPED": ", ".join(f"{k}={n}" for k, n in r.skipped.items() if n) or "0",
        "NEXT POLL": _when(r.next_poll, now, compact=compact) if not r.gone else "never",
        "WHY": (r.next_detail or r.next_reason or "-") + moved,
        "LAST ERROR": r.last_error or "",
    }


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _fit(rows: list[list[str]], width: int) -> list[list[str]]:
    """Cut the name and "why" columns to their caps and the last column (the error) to
    what is left of `width`; `--wide` shows them whole."""
    feed, why = 0, len(rows[0]) - 2
    for r in rows[1:]:
        r[feed] = _cut(r[feed], _FEED_MAX)
        r[why] = _cut(r[why], _WHY_MAX)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    room = max(len(rows[0][-1]), width - sum(widths) - 2 * (len(widths)))
    for r in rows[1:]:
        r[-1] = _cut(r[-1], room)
    return rows


@cli.command()
@click.argument("topic")
@click.option(
    "--format", "fmt", type=click.Choice(list(publish.FORMATS)), default="atom", show_default=True
)
@click.option("--limit", type=click.IntRange(1, 10000), help="Entries (default: the topic's).")
@click.pass_context
@_errors
def export(ctx: click.Context, topic: str, fmt: str, limit: int | None) -> None:
    """Print a topic feed on stdout, the same bytes HTTP serves.

    \b
    Example:
        aggregator export pakistan-russia --format json --limit 20
    """
    cfg = _load(ctx)
    t = cfg.topic(topic)
    if t is None:
        raise ConfigError(str(cfg.path), f"no topic with slug {topic!r}", key="TOPIC")
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    sys.stdout.buffer.write(publish.render_topic(db, cfg, t, fmt, limit).body)
    sys.stdout.buffer.flush()


@cli.command()
@click.argument("topic")
@click.option("--entry", "entry_url", metavar="URL", help="Match a stored entry by its link.")
@click.pass_context
@_errors
def match(ctx: click.Context, topic: str, entry_url: str | None) -> None:
    """Match text on stdin (or a stored entry) against a topic's query.

    Prints the words of the text that matched, then each term found and the words
    it found; on a miss, which required part found nothing and which NOT excluded
    the text. Exits 0 on a match and 1 on none, like grep.

    \b
    Example:
        echo "Pakistan and Russia sign a deal" | aggregator match pakistan-russia
    """
    from aggregator.ingest import prepare  # the stemmers: for this command only
    from aggregator.match import topics

    cfg = _load(ctx)
    t = cfg.topic(topic)
    if t is None:
        raise ConfigError(str(cfg.path), f"no topic with slug {topic!r}", key="TOPIC")
    matcher = prepare.compile_topics(cfg)[cfg.topics.index(t)]
    if entry_url:
        db = store.Store(cfg.database.path)
        found = db.entry_by_link(entry_url)
        if found is None:
            click.echo(f"error: no stored entry with link {entry_url}", err=True)
            sys.exit(1)
        feed, title, text, language = found
        if t.feeds is not None and feed not in t.feeds:
            click.echo(f"no match: feed {feed!r} is not in topic {t.slug!r}")
            sys.exit(1)
        doc = topics.document(title, text, language)
    else:
        doc = topics.document("", sys.stdin.read())
    terms = matcher.query.matches(doc)
    if t.query is None:
        click.echo("match: (topic has no query: every entry)")
        return
    if terms is None:
        click.echo(f"no match for {t.query}")
    else:
        click.echo("match: " + ", ".join(terms))
    for line in matcher.query.explain(doc).lines():
        click.echo(f"  {line}")
    if terms is None:
        sys.exit(1)


@cli.command()
@click.argument("url1")
@click.argument("url2")
@click.pass_context
@_errors
def explain(ctx: click.Context, url1: str, url2: str) -> None:
    """Say whether two stored entries are one story, and why.

    Prints the story each is stored in, then the comparison as the clustering
    makes it now: the scores (1.0 is the threshold), the entities both headlines
    name and those only one names, and the rule that decided. Exits 0 when the
    two are one story by that comparison, 1 when not, like `match`.

    \b
    Example:
        aggregator explain https://dawn.com/news/1 https://tribune.com.pk/story/2
    """
    from aggregator.match import dedupe, entities

    cfg = _load(ctx)
    db = store.Store(cfg.database.path)
    found = []
    for url in (url1, url2):
        row = db.entry_for_explain(url)
        if row is None:
            click.echo(f"error: no stored entry with link {url}", err=True)
            sys.exit(1)
        row["sig"] = (
            dedupe.Signature.unpack(row["sig"])
            if row["sig"]
            else dedupe.signature(row["title"], row["text"])
        )
        found.append(row)
    a, b = found
    terms = set(a["sig"].everything | b["sig"].everything)
    why = dedupe.explain(
        a["sig"],
        b["sig"],
        a_published=a["published"],
        b_published=b["published"],
        same_feed=a["feed"] == b["feed"],
        window=cfg.dedupe.window,
        df=db.document_frequencies(terms),
        n_docs=db.entry_count(),
        aliases=dedupe.aliases_of(cfg.aliases),
    )
    for label, e in (("1", a), ("2", b)):
        click.echo(f"{label}: [{e['feed']}] {e['title']}  (story {e['story_id']})")
    same = a["story_id"] == b["story_id"]
    click.echo(f"stored: {'one story' if same else 'different stories'}")
    c = why.comparison
    click.echo(
        f"scores (1.0 = threshold): title {c.title:.2f}, text {c.text:.2f},"
        f" headline-in-article {c.cross:.2f}; {why.apart.total_seconds() / 3600:.1f}h apart,"
        f" divided by {why.fade:.2f} -> {why.score:.2f}"
    )

    def show(ents: frozenset[str]) -> str:
        return ", ".join(f"{e} ({entities.kind(e)})" for e in sorted(ents)) or "-"

    click.echo(f"entities shared: {show(c.shared)}")
    click.echo(f"only in 1: {show(c.only_b)}")
    click.echo(f"only in 2: {show(c.only_a)}")
    if c.conflict:
        click.echo(
            "entities differ: "
            + ("the texts agree and report each other's" if c.resolved else "not resolved")
        )
    click.echo(f"rule: {why.rule}")
    click.echo(f"verdict: {'one story' if why.one_story else 'not one story'}")
    sys.exit(0 if why.one_story else 1)


@cli.group("opml")
def opml_group() -> None:
    """Feeds in and out as OPML 2.0."""


@opml_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@_errors
def opml_import(ctx: click.Context, file: Path) -> None:
    """Add the feeds of an OPML file to the config file, keeping its comments.

    Feeds already in the config (same URL) and repeats within the file are
    counted and left out. Malformed files (a raw & or a stray quote in a title)
    are read leniently; an outline that cannot be used is skipped with a warning
    naming its line. OPML folders are kept as comments above their feeds.

    \b
    Example:
        aggregator opml import subscriptions.opml
    """
    cfg = _load(ctx)
    from aggregator.config import opml_import  # tomlkit and lxml, for this command only

    try:
        result = opml_import.import_into_config(file, file.read_bytes(), cfg)
    except opml_import.OpmlError as exc:
        for warning in exc.warnings:
            click.echo(f"warning: {warning}", err=True)
        raise
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for name, url, title in result.added:
        click.echo(f"added {name}: {url}" + (f" ({title})" if title else ""))
    counts = [f"{len(result.added)} feeds added to {cfg.path}"]
    counts.append(f"{result.present} already there")
    if result.repeated:
        counts.append(f"{result.repeated} repeated in {file.name}")
    if result.skipped:
        counts.append(f"{result.skipped} skipped")
    click.echo("; ".join(counts))


@opml_group.command("export")
@click.pass_context
@_errors
def opml_export(ctx: click.Context) -> None:
    """Print the configured feeds as OPML 2.0.

    \b
    Example:
        aggregator opml export > feeds.opml
    """
    cfg = _load(ctx)
    from aggregator.publish import opml

    sys.stdout.buffer.write(opml.export_feeds(cfg))


def main() -> None:
    """Console-script entry point."""
    try:
        cli(obj={})
    except BrokenPipeError:
        sys.exit(1)
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        _flush_stdout()


def _flush_stdout() -> None:
    """`aggregator status | head`: when the reader has gone, end without a word.

    click already exits 1 on EPIPE, but what is left in stdout's buffer would fail
    again when Python flushes it at exit ("Exception ignored ... BrokenPipeError").
    As the Python docs advise (signal module, "Note on SIGPIPE"), stdout is pointed
    at devnull instead; the exit status stays 1, as Python's own on EPIPE.
    """
    try:
        sys.stdout.flush()
        if sys.__stdout__ is not None:
            sys.__stdout__.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        os.close(devnull)
