"""The benchmark: polling against lemon24/reader, serving against nginx, and scale.

    .venv/bin/python bench/run.py                          # everything, 3 runs each
    .venv/bin/python bench/run.py poll --feeds 100 1000 --runs 3
    .venv/bin/python bench/run.py serve --seconds 5
    .venv/bin/python bench/run.py scale --scale-feeds 100 300 1000

Every figure is a median over `--runs` runs, and every ratio is to a reference
measured in the same run on the same machine:

* **poll**: a feed farm (`bench/farm.py`, its own process, one loopback host) with
  N feeds of 20-50 news items. Each run polls it cold (empty database), warm (every
  feed answers 304) and changed (K new items per feed), each phase in a fresh child
  process, first with this project (what `aggregator poll` does, after the config is
  loaded) and then with reader (`update_feeds(scheduled=False, workers=W)`), with the
  same number of workers, on the plain farm and the templated one (`--headlines`).
  Times are the work inside the child (no interpreter
  start-up); memory is the peak of the summed PSS (proportional set size: shared
  pages split) of the child and its parse processes, sampled every 10 ms, for both
  systems (`own_maxrss_mib` in the JSON lines is the child's own peak RSS). The
  warm poll is also timed as a whole process from start to exit (`warm-process`):
  `aggregator poll`, and a script calling reader's `update_feeds`. Our package is
  byte-compiled first, as an installed one is (reader's was, by pip).
* **serve**: `aggregator serve` (waitress) after a poll, under wrk with 50
  connections: `/topics/<slug>.atom` plain and conditional (If-None-Match), against
  nginx serving the same bytes from a file, and nginx serving our `export_dir`.
* **scale**: a database grown by cold polls of more and more farm feeds; the time
  to render a 50-entry topic feed from the store (no cache), the time to match,
  cluster and store one new entry, and database bytes per entry.

The script never asserts a speed; it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

#: a dozen topics over the farm's vocabulary, as the user of issue 8 has
TOPICS = [
    ("pakistan-russia", "(pakistan OR islamabad OR karachi) AND (russia OR moscow OR kremlin)"),
    ("south-asia", "pakistan OR india OR afghanistan OR kabul OR delhi OR lahore"),
    ("energy", "energy OR pipeline OR grid"),
    ("markets", '"central bank" OR "interest rates" OR currency OR shares'),
    ("food", "wheat OR harvest OR drought OR floods"),
    ("courts", "court AND ruling"),
    ("health", "hospital OR vaccine"),
    ("education", "school OR teachers OR students"),
    ("diplomacy", "summit OR delegation OR sanctions"),
    ("transport", "railway OR port"),
    ("europe", "germany OR berlin OR france OR paris OR ukraine OR kyiv"),
    ("tech", "startup OR telecom OR satellite"),
]


# -- helpers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """Status, headers (case-insensitive) and body of one GET."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


@contextmanager
def farm(feeds: int, new: int, latency: float, headlines: str = "plain") -> Iterator[str]:
    """Start bench/farm.py in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [PY, str(ROOT / "bench" / "farm.py"), "--feeds", str(feeds), "--new", str(new)]
        + ["--latency", str(latency), "--headlines", headlines],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def set_round(base: str, rnd: int) -> None:
    get(f"{base}/_round/{rnd}")


def write_config(
    folder: Path,
    base: str,
    feeds: int,
    workers: int,
    *,
    export: bool = False,
    port: int = 8080,
    max_entries: int | None = None,
    parse_processes: int | None = None,
) -> Path:
    lines = [
        "[database]",
        'path = "aggregator.db"',
        "[server]",
        f"port = {port}",
        f'base_url = "http://127.0.0.1:{port}"',
    ]
    if export:
        lines.append('export_dir = "public"')
    lines += [
        "[polling]",
        'timeout = "30s"',
        f"concurrency = {workers}",
        f"per_host = {workers}",
    ]
    if max_entries:
        lines.append(f"max_entries = {max_entries}")
    if parse_processes is not None:
        lines.append(f"parse_processes = {parse_processes}")
    for i in range(feeds):
        lines += ["[[feeds]]", f'name = "f{i}"', f'url = "{base}/feed/{i}.xml"']
        lines.append("allow_private = true")
    for slug, query in TOPICS:
        lines += ["[[topics]]", f'slug = "{slug}"', f'title = "{slug}"', f"query = '{query}'"]
    path = folder / "aggregator.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def child(args: list[str]) -> dict[str, Any]:
    """Run one measured phase in a fresh interpreter; it prints one JSON line. Its
    memory is sampled from here, outside it: a sampler thread inside the measured
    process would take its GIL and its CPU (reading /proc at every sample)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [PY, str(Path(__file__).resolve()), "_child", *args], stdout=out, stderr=err
        )
        sampler = TreeMemory(proc.pid)
        returncode = proc.wait()
        peak = sampler.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{stderr[-3000:]}")
    result = dict(json.loads(stdout.strip().splitlines()[-1]))
    # both systems by the same measure: the peak of the tree's summed PSS
    result["maxrss_mib"] = peak / 1024
    return result


# -- the measured children ---------------------------------------------------------------------


def child_ours(config_path: str, profile: str | None) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from aggregator import config
    from aggregator.ingest import pipeline as poll
    from aggregator.ingest import prepare  # noqa: F401  (loaded by a poll that parses: an import)
    from aggregator.publish import cache as publish
    from aggregator.storage import store

    cfg = config.load(Path(config_path))
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    started = time.perf_counter()
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    poller = poll.Poller(cfg)
    counts: dict[str, int] = {}
    new = 0
    for r in poll.poll_many(poller, cfg.feeds):
        counts[r.status] = counts.get(r.status, 0) + 1
        new += r.new + r.merged  # entries stored, whether or not they joined a story
    poller.close()
    publish.export_files(db, cfg)
    seconds = time.perf_counter() - started
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)  # type: ignore[arg-type]
    return {"seconds": seconds, "statuses": counts, "new": new}


def child_reader(db_path: str, base: str, feeds: int, workers: int) -> dict[str, Any]:
    from reader import make_reader

    r = make_reader(db_path)
    if r.get_feed_counts().total == 0:  # cold: subscribing is setup, not polling
        for i in range(feeds):
            r.add_feed(f"{base}/feed/{i}.xml")
    before = r.get_entry_counts().total
    started = time.perf_counter()
    r.update_feeds(scheduled=False, workers=workers)
    seconds = time.perf_counter() - started
    counts = r.get_feed_counts()
    return {
        "seconds": seconds,
        "statuses": {"broken": counts.broken, "total": counts.total},
        "new": r.get_entry_counts().total - before,
    }


READER_POLL = (
    "import sys\n"
    "from reader import make_reader\n"
    "make_reader(sys.argv[1]).update_feeds(scheduled=False, workers=int(sys.argv[2]))\n"
)


def whole_process(system: str, cfg: Path, folder: Path, workers: int) -> dict[str, Any]:
    """One poll timed from process start to exit, interpreter and imports included:
    `aggregator poll` for ours, a script calling `update_feeds` for reader."""
    if system == "ours":
        cmd = [str(Path(PY).with_name("aggregator")), "--config", str(cfg), "poll"]
    else:
        cmd = [PY, "-c", READER_POLL, str(folder / "reader.sqlite"), str(workers)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = TreeMemory(proc.pid)
    returncode = proc.wait()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if returncode != 0:
        raise RuntimeError(f"{cmd} exited with {returncode}")
    return {"seconds": seconds, "maxrss_mib": peak / 1024, "new": 0, "statuses": {}}


def _tree_rss_kib(pid: int) -> int:
    """Memory of a process and all its descendants (parse workers too), as PSS: pages
    the processes share (libraries) are split between them, not counted in each."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                for child in fh.read().split():
                    total += _tree_rss_kib(int(child))
    except (OSError, ValueError):
        pass
    return total


#: how often the memory of a measured tree is sampled (`--sample-ms`). Each sample
#: reads smaps_rollup of every process in the tree: every 10 ms that took 13 % of one
#: core (6 s over a 1,000-feed cold poll) from a poll that needs both.
SAMPLE_SECONDS = 0.05


class TreeMemory:
    """Samples the peak memory of a process tree every SAMPLE_SECONDS, from another
    process: a poll's memory is its own plus its parse processes', which `ru_maxrss`
    does not add up."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.interval = SAMPLE_SECONDS
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _tree_rss_kib(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_child(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "ours":
        result = child_ours(argv[1], argv[2] if len(argv) > 2 else None)
    else:
        result = child_reader(argv[1], argv[2], int(argv[3]), int(argv[4]))
    result["own_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# -- poll ----------------------------------------------------------------------------------------

PHASES = ("cold", "warm", "changed")


def bench_poll(args: argparse.Namespace) -> list[dict[str, Any]]:
    # reader's modules were byte-compiled when pip installed them; ours, an editable
    # install, only when first imported, and never where PYTHONDONTWRITEBYTECODE is
    # set: then every measured process compiled every module again (90 ms of a warm
    # `aggregator poll`). Compiled here once, as an installed package would be.
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "aggregator")], check=True)
    rows = []
    for headlines, n in ((h, n) for n in args.feeds for h in args.headlines):
        figures: dict[tuple[str, str], list[dict[str, Any]]] = {}
        with farm(n, args.new, args.latency, headlines) as base:
            for run in range(args.runs):
                for system in args.systems:
                    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
                        folder = Path(tmp)
                        cfg = write_config(
                            folder,
                            base,
                            n,
                            args.workers,
                            max_entries=args.max_entries,
                            parse_processes=args.parse_processes,
                        )
                        for phase, rnd in (("cold", 0), ("warm", 0), ("changed", 1)):
                            if phase not in args.phases:
                                continue
                            set_round(base, rnd)
                            if system == "ours":
                                prof = None
                                if args.profile and run == 0:
                                    prof = str(Path(args.profile) / f"ours-{n}-{phase}.prof")
                                r = child(["ours", str(cfg)] + ([prof] if prof else []))
                            else:
                                r = child(
                                    ["reader", str(folder / "reader.sqlite"), base, str(n)]
                                    + [str(args.workers)]
                                )
                            figures.setdefault((system, phase), []).append(r)
                            if phase == "warm":
                                # as cron runs it: the whole process, start to exit
                                figures.setdefault((system, "warm-process"), []).append(
                                    whole_process(system, cfg, folder, args.workers)
                                )
                            print(
                                f"  {headlines} N={n} run={run} {system:<6} {phase:<7} "
                                f"{r['seconds']:7.2f}s {r['maxrss_mib']:6.0f} MiB "
                                f"new={r['new']} {r['statuses']}",
                                file=sys.stderr,
                                flush=True,
                            )
        for phase in (*PHASES, "warm-process"):
            if phase.split("-")[0] not in args.phases:
                continue
            row: dict[str, Any] = {"headlines": headlines, "feeds": n, "phase": phase}
            for system in args.systems:
                rs = figures.get((system, phase), [])
                row[f"{system}_s"] = median([r["seconds"] for r in rs])
                row[f"{system}_mib"] = median([r["maxrss_mib"] for r in rs])
            rows.append(row)
    print_poll(rows, args)
    return rows


def print_poll(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\npolling: median of {args.runs} runs, {args.workers} workers, K={args.new} "
        f"new items per feed, latency {args.latency} ms"
        + (f", ours keeping {args.max_entries} entries per poll" if args.max_entries else "")
        + (
            f", ours with parse_processes = {args.parse_processes}"
            if args.parse_processes is not None
            else ""
        )
    )
    print(
        "| headlines | feeds | phase | ours s | reader s | ratio | ours MiB | reader MiB | ratio |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ours, ref = r.get("ours_s", float("nan")), r.get("reader_s", float("nan"))
        om, rm = r.get("ours_mib", float("nan")), r.get("reader_mib", float("nan"))
        print(
            f"| {r['headlines']} | {r['feeds']} | {r['phase']} "
            f"| {ours:.2f} | {ref:.2f} | {ours / ref:.2f}x "
            f"| {om:.0f} | {rm:.0f} | {om / rm:.2f}x |"
        )


# -- serve ---------------------------------------------------------------------------------------


def wrk(url: str, seconds: int, header: str | None = None) -> dict[str, float]:
    cmd = ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency", url]
    if header:
        cmd[1:1] = ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", out)
        value = float(m.group(1)) if m else float("nan")
        unit = m.group(2) if m else "ms"
        lat[pct] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": lat["50"],
        "p99": lat["99"],
        "bad": float(non2xx.group(1)) if non2xx else 0.0,
        "errors": 1.0 if errors else 0.0,
    }


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ application/atom+xml atom; application/rss+xml rss;
             application/feed+json json; text/x-opml opml; }}
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port_file};
        root {tmp}/same;
    }}
    server {{
        listen 127.0.0.1:{port_export};
        root {export};
        location /topics/ {{ add_header Cache-Control "public, max-age=60"; }}
    }}
}}
"""


def bench_serve(args: argparse.Namespace) -> list[dict[str, Any]]:
    if not shutil.which("wrk"):
        print("\nserving: wrk is not installed (apt-get install wrk); skipped")
        return []
    have_nginx = bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists())
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    slug = "south-asia"
    rows: list[dict[str, Any]] = []
    with (
        farm(args.serve_feeds, args.new, 0) as base,
        tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp,
    ):
        folder = Path(tmp)
        folder.chmod(0o755)  # nginx workers run as another user
        port = free_port()
        cfg = write_config(folder, base, args.serve_feeds, args.workers, export=True, port=port)
        child(["ours", str(cfg)])
        server = subprocess.Popen(
            [PY, "-m", "aggregator", "--config", str(cfg), "--log-level", "WARNING", "serve"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        nginx = None
        try:
            url = f"http://127.0.0.1:{port}/topics/{slug}.atom"
            wait_for(url)
            status, headers, body = get(url)
            sys.path.insert(0, str(ROOT))
            from aggregator.publish.server import NAME

            targets = [(f"aggregator ({NAME})", url, headers.get("ETag"))]
            if have_nginx:
                (folder / "same" / "topics").mkdir(parents=True)
                (folder / "same" / "topics" / f"{slug}.atom").write_bytes(body)
                pf, pe = free_port(), free_port()
                conf = folder / "nginx.conf"
                conf.write_text(
                    NGINX_CONF.format(
                        tmp=folder, port_file=pf, port_export=pe, export=folder / "public"
                    )
                )
                nginx = subprocess.Popen([nginx_bin, "-c", str(conf), "-p", str(folder)])
                for name, p in (("nginx, same bytes", pf), ("nginx, export_dir", pe)):
                    u = f"http://127.0.0.1:{p}/topics/{slug}.atom"
                    wait_for(u)
                    st, h, b = get(u)
                    if b != body:
                        print(f"  warning: {name} serves different bytes", file=sys.stderr)
                    targets.append((name, u, h.get("ETag")))
            else:
                print("  nginx is not installed (apt-get install nginx); its columns skipped")
            for name, u, etag in targets:
                for mode in ("plain", "304"):
                    header = f"If-None-Match: {etag}" if mode == "304" else None
                    if mode == "304":
                        st, _, _ = get(u, {"If-None-Match": etag or ""})
                        if st != 304:
                            print(f"  {name}: If-None-Match {etag} got {st}", file=sys.stderr)
                    runs = [wrk(u, args.seconds, header) for _ in range(args.runs)]
                    rows.append(
                        {
                            "server": name,
                            "mode": mode,
                            "rps": median([r["rps"] for r in runs]),
                            "p50": median([r["p50"] for r in runs]),
                            "p99": median([r["p99"] for r in runs]),
                            "errors": sum(r["errors"] + r["bad"] for r in runs),
                        }
                    )
                    print(f"  {name} {mode}: {rows[-1]}", file=sys.stderr, flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()
            if nginx is not None:
                nginx.send_signal(signal.SIGQUIT)
                nginx.wait()
    ref = {r["mode"]: r["rps"] for r in rows if r["server"] == "nginx, same bytes"}
    print(
        f"\nserving /topics/{slug}.atom ({len(body)} bytes): wrk -t2 -c50 -d{args.seconds}s, "
        f"median of {args.runs}"
    )
    print("| server | request | req/s | ratio to nginx | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["rps"] / ref[r["mode"]] if r["mode"] in ref else float("nan")
        print(
            f"| {r['server']} | {r['mode']} | {r['rps']:.0f} | {ratio:.3f}x | {r['p50']:.2f} "
            f"| {r['p99']:.2f} | {r['errors']:.0f} |"
        )
    return rows


# -- scale ---------------------------------------------------------------------------------------


def bench_scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Grow a database through the real pipeline (cold polls of more and more feeds) and
    time the two per-request paths at each size."""
    sys.path.insert(0, str(ROOT))
    from aggregator import config
    from aggregator.ingest import pipeline as poll
    from aggregator.publish import cache as publish
    from aggregator.storage import store

    rows = []
    with (
        farm(max(args.scale_feeds), args.new, 0) as base,
        tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp,
    ):
        folder = Path(tmp)
        set_round(base, 0)
        for n in sorted(args.scale_feeds):
            cfg_path = write_config(folder, base, n, args.workers)
            child(["ours", str(cfg_path)])  # polls the feeds not yet stored
            cfg = config.load(cfg_path)
            db = store.Store(cfg.database.path)
            entries = db.conn.execute("SELECT count(*) FROM entries").fetchone()[0]
            topic = cfg.topic("south-asia")
            assert topic is not None
            render_ms = []
            for _ in range(max(5, args.runs)):
                t = time.perf_counter()
                publish.render_topic(db, cfg, topic, "atom")
                render_ms.append((time.perf_counter() - t) * 1000)
            # one feed's next round: K new entries matched, deduped and stored
            set_round(base, 1)
            poller = poll.Poller(cfg)
            t = time.perf_counter()
            result = poll.poll_feed(poller, cfg.feeds[0])
            ingest_ms = (time.perf_counter() - t) * 1000 / max(1, result.new + result.merged)
            poller.close()
            set_round(base, 0)
            db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = cfg.database.path.stat().st_size
            rows.append(
                {
                    "entries": entries,
                    "render_ms": median(render_ms),
                    "ingest_ms": ingest_ms,
                    "bytes_per_entry": size / max(1, entries),
                }
            )
            db.close()
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print("\nscale: the database grown by cold polls of the farm")
    print("| entries | 50-entry topic feed, uncached ms | ingest per new entry ms | bytes/entry |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['entries']} | {r['render_ms']:.1f} | {r['ingest_ms']:.2f} "
            f"| {r['bytes_per_entry']:.0f} |"
        )
    return rows


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    global SAMPLE_SECONDS
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        run_child(argv[1:])
        return
    ap = argparse.ArgumentParser(description="feed aggregator benchmarks (see module docstring)")
    ap.add_argument("what", nargs="*", default=["poll", "serve", "scale"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--feeds", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--new", type=int, default=3, help="K: new items per feed per round")
    ap.add_argument("--latency", type=float, default=0.0, help="farm latency per answer, ms")
    ap.add_argument(
        "--headlines",
        nargs="+",
        default=["plain", "templated"],
        choices=("plain", "templated"),
        help="poll: the farms' headlines (bench/farm.py --headlines), each run side by side",
    )
    ap.add_argument("--systems", nargs="+", default=["ours", "reader"])
    ap.add_argument("--profile", help="folder for cProfile output of our first run")
    ap.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    ap.add_argument(
        "--max-entries",
        type=int,
        help="ours only: [polling] max_entries, to seed a warm run of many feeds quickly",
    )
    ap.add_argument(
        "--parse-processes",
        type=int,
        help="ours only: [polling] parse_processes (default: the config's default)",
    )
    ap.add_argument(
        "--sample-ms",
        type=float,
        default=SAMPLE_SECONDS * 1000,
        help="poll: how often memory is sampled (10 before 2026-11-27)",
    )
    ap.add_argument("--seconds", type=int, default=5, help="wrk duration")
    ap.add_argument("--serve-feeds", type=int, default=200)
    ap.add_argument("--scale-feeds", type=int, nargs="+", default=[100, 300])
    args = ap.parse_args(argv)
    SAMPLE_SECONDS = args.sample_ms / 1000
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, memory sampled every {args.sample_ms:g} ms"
    )
    if "poll" in args.what:
        bench_poll(args)
    if "serve" in args.what:
        bench_serve(args)
    if "scale" in args.what:
        bench_scale(args)


if __name__ == "__main__":
    main()
