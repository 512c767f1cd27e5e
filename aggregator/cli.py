"""The command line: turns arguments into calls and errors into exit codes.

Exit 0 on success, 2 on a bad config or usage, 1 on other failures. One failing
feed never makes a command fail. No logic lives here beyond wiring.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from aggregator import __version__
from aggregator import config as config_mod
from aggregator.errors import AggregatorError, ConfigError, StorageError
from aggregator.ingest import pipeline as poll
from aggregator.ingest import prepare
from aggregator.match import topics
from aggregator.publish import cache as publish
from aggregator.storage import store

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("aggregator")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
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

    Prints one line per feed (name, status, new, updated, seconds) and a total.

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
    with _poll_lock(cfg):
        db = store.Store(cfg.database.path)
        poll.sync(cfg, db)
        poller = poll.Poller(cfg)
        started = time.monotonic()
        totals = {"new": 0, "updated": 0, "merged": 0, "errors": 0}
        results = poll.poll_many(poller, feeds)
        width = max((len(f.name) for f in feeds), default=4)
        show_progress = sys.stderr.isatty() and len(feeds) > 1
        with click.progressbar(
            results, length=len(feeds), file=sys.stderr if show_progress else io.StringIO()
        ) as bar:
            for r in bar:
                totals["new"] += r.new
                totals["updated"] += r.updated
                totals["merged"] += r.merged
                totals["errors"] += r.status == "error"
                line = (
                    f"{r.feed:<{width}}  {r.status:<12} new={r.new:<4} updated={r.updated:<4} "
                    f"merged={r.merged:<4} {r.seconds:6.2f}s"
                )
                if r.error:
                    line += f"  {r.error}"
                click.echo(line)
        poller.close()
        publish.export_files(db, cfg)
        click.echo(
            f"total: {len(feeds)} feeds, new={totals['new']} updated={totals['updated']} "
            f"merged={totals['merged']} errors={totals['errors']} "
            f"in {time.monotonic() - started:.2f}s"
        )


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

    \b
    Example:
        aggregator --config /etc/aggregator.toml check
    """
    cfg = _load(ctx)
    for line in config_mod.describe(cfg):
        click.echo(line)
    click.echo(f"config ok: {len(cfg.feeds)} feeds, {len(cfg.topics)} topics")


def _when(dt: datetime | None, now: datetime) -> str:
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
    return f"{n} {suffix}"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """One row per feed: last fetch, HTTP status, last error, entries, next poll.

    \b
    Example:
        aggregator status
    """
    cfg = _load(ctx)
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    now = datetime.now(UTC)
    rows = [s for s in db.feed_statuses() if cfg.feed(s.name) is not None]
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "feed": s.name,
                        "url": s.url,
                        "config_url": s.config_url,
                        "last_fetch": s.last_fetch.isoformat() if s.last_fetch else None,
                        "status": s.last_status,
                        "last_error": s.last_error,
                        "entries": s.entries,
                        "merged": s.merges,
                        "failures": s.failures,
                        "gone": s.gone,
                        "next_poll": s.next_poll.isoformat() if s.next_poll else None,
                        "next_reason": s.next_reason,
                        "next_detail": s.next_detail,
                    }
                    for s in rows
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    header = ("FEED", "LAST FETCH", "HTTP", "ENTRIES", "MERGED", "NEXT POLL", "WHY", "LAST ERROR")
    table = [header]
    for s in rows:
        moved = f" (moved to {s.url})" if s.url != s.config_url else ""
        table.append(
            (
                s.name,
                _when(s.last_fetch, now),
                str(s.last_status or "-"),
                str(s.entries),
                str(s.merges),
                _when(s.next_poll, now) if not s.gone else "never",
                (s.next_detail or s.next_reason or "-") + moved,
                (s.last_error or "")[:80],
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


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

    Prints the matched terms; exits 0 on a match and 1 on none, like grep.

    \b
    Example:
        echo "Pakistan and Russia sign a deal" | aggregator match pakistan-russia
    """
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
        doc = topics.document(title, text, language)
        terms = matcher.matches(feed, doc)
        if terms is None and t.feeds is not None and feed not in t.feeds:
            click.echo(f"no match: feed {feed!r} is not in topic {t.slug!r}")
            sys.exit(1)
    else:
        text = sys.stdin.read()
        doc = topics.document("", text)
        terms = matcher.query.matches(doc)
    if terms is None:
        click.echo("no match")
        sys.exit(1)
    click.echo("match: " + (", ".join(terms) if terms else "(topic has no query: every entry)"))


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

    Feeds already in the config (same URL or name) are skipped.

    \b
    Example:
        aggregator opml import subscriptions.opml
    """
    cfg = _load(ctx)
    from aggregator.publish import opml  # tomlkit and defusedxml, for these two commands only

    added = opml.import_into_config(cfg.path, file.read_bytes(), cfg)
    for name, url in added:
        click.echo(f"added {name}: {url}")
    click.echo(f"{len(added)} feeds added to {cfg.path}")


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
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
