"""What an outlet sees from the daemon: the request timeline of each polling rule.

Runs the real `Daemon` (the scheduler of `aggregator run`) with 1s intervals against a
loopback `FeedServer`, one bounded case at a time, and prints every request the server
received: when (seconds since the daemon started), what, and the status it answered.
Then what `aggregator status` would say about the feed. Ends with `aggregator run` in a
subprocess stopped by SIGTERM in the middle of a trickled response.

    .venv/bin/python bench/polling_timeline.py            # every case, about a minute
    .venv/bin/python bench/polling_timeline.py 410 301    # some of them

Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aggregator import config, daemon
from aggregator.storage import store  # noqa: E402
from tests.conftest import toml_config  # noqa: E402
from tests.feedserver import (  # noqa: E402
    FeedServer,
    Handler,
    free_port,
    not_modified,
    redirect,
    send,
    slow,
    status,
    trickle,
)

FAST = 'interval = "1s"\nmin_interval = "1s"\nmax_interval = "1h"'


def rss(guid: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>T</title><link>http://example.org/</link><description>d</description>"
        f'<item><title>Item {guid}</title><guid isPermaLink="false">{guid}</guid>'
        f"<description>About {guid}</description></item></channel></rss>"
    ).encode()


def conditional(body: bytes) -> Handler:
    """A polite outlet: 200 with validators, then 304 while nothing changed."""
    validators = {"ETag": '"v1"', "Last-Modified": formatdate(time.time() - 60, usegmt=True)}

    def handler(h: BaseHTTPRequestHandler) -> None:
        if not_modified(h, validators["ETag"], validators["Last-Modified"]):
            send(h, 304, headers=validators)
        else:
            send(h, 200, body, headers=validators)

    return handler


@dataclass
class Line:
    start: float
    path: str
    conditional: bool
    status: int | None = None
    end: float | None = None


@dataclass
class Recorder:
    """Wraps route handlers to note each answer's status and when it finished."""

    lines: list[Line] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, inner: Handler) -> Handler:
        def handler(h: BaseHTTPRequestHandler) -> None:
            line = Line(
                time.monotonic(),
                h.path,
                "If-None-Match" in h.headers or "If-Modified-Since" in h.headers,
            )
            with self.lock:
                self.lines.append(line)
            # One handler object serves every request of a keep-alive connection, so
            # the hook goes on for this request and comes off after it.
            original = type(h).send_response.__get__(h)

            def send_response(code: int, message: str | None = None) -> None:
                line.status = code
                original(code, message)

            h.send_response = send_response  # type: ignore[method-assign]
            try:
                inner(h)
            finally:
                del h.send_response
                line.end = time.monotonic()

        return handler


def run_case(
    title: str,
    routes: dict[str, Handler],
    feeds: list[tuple[str, str]],
    seconds: float,
    polling: str = FAST,
    show_end: bool = False,
) -> None:
    print(f"\n== {title} ({seconds:g}s run) ==")
    rec = Recorder()
    with FeedServer() as server, tempfile.TemporaryDirectory() as tmp:
        for path, handler in routes.items():
            server.route(path, rec.wrap(handler))
        cfg_path = Path(tmp) / "aggregator.toml"
        cfg_path.write_text(
            toml_config([(n, server.url(p)) for n, p in feeds], polling=polling),
            encoding="utf-8",
        )
        cfg = config.load(cfg_path)
        d = daemon.Daemon(cfg, serve=False)
        t0 = time.monotonic()
        d.start()
        time.sleep(seconds)
        d.stop()
        for line in sorted(rec.lines, key=lambda x: x.start):
            text = f"  t=+{line.start - t0:5.2f}s GET {line.path} -> {line.status or '-'}"
            if line.conditional:
                text += "  (conditional)"
            if show_end and line.end is not None:
                text += f"  done t=+{line.end - t0:5.2f}s"
            print(text)
        host = f"127.0.0.1:{server.port}"
        most = server.in_flight_max.get(host)
        print(f"  requests: {len(rec.lines)}; most in flight to {host}: {most}")
        db = store.Store(cfg.database.path)
        try:
            for s in db.feed_statuses():
                moved = f" (moved to {s.url})" if s.url != s.config_url else ""
                print(
                    f"  status {s.name}: http={s.last_status} failures={s.failures} "
                    f"next={s.next_reason}: {s.next_detail}{moved}"
                )
        finally:
            db.close()


def case_410() -> None:
    run_case(
        "410 Gone: one request, then never again (a healthy feed beside it keeps its 1s rhythm)",
        {"/gone": status(410), "/ok": conditional(rss("ok"))},
        [("gone", "/gone"), ("ok", "/ok")],
        4,
    )


def case_429() -> None:
    run_case(
        "429 with Retry-After: 3: no request sooner than 3s after the last",
        {"/limited": status(429, {"Retry-After": "3"})},
        [("limited", "/limited")],
        10,
    )


def case_backoff() -> None:
    run_case(
        "500 every time: interval 1s, gaps ~1, ~2, ~4, ~8s (x0.8-1.2 jitter, never under 1s)",
        {"/failing": status(500)},
        [("failing", "/failing")],
        18,
    )


def case_301() -> None:
    run_case(
        "301: the first poll follows the redirect, every later one goes to the new URL",
        {"/old": redirect(301, "/new"), "/new": conditional(rss("moved"))},
        [("moved", "/old")],
        4,
    )


def case_per_host() -> None:
    routes = {f"/f{i}": slow(1.0, rss(f"f{i}")) for i in range(6)}
    run_case(
        "per_host = 2: six feeds on one host answering in 1s each",
        routes,
        [(f"f{i}", f"/f{i}") for i in range(6)],
        4,
        polling=FAST + "\nper_host = 2",
        show_end=True,
    )


def case_spread() -> None:
    routes = {f"/n{i}": conditional(rss(f"n{i}")) for i in range(10)}
    run_case(
        "start-up: ten never-polled feeds (interval 1h) spread over the first 10s",
        routes,
        [(f"n{i}", f"/n{i}") for i in range(10)],
        10.5,
        polling='interval = "1h"\nmin_interval = "1s"',
    )


def case_sigterm() -> None:
    print("\n== SIGTERM: `aggregator run` in a subprocess, while a response trickles ==")
    with FeedServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.route("/trickle", trickle(rss("t") * 4, interval=0.2))
        server.route("/ok", conditional(rss("ok")))
        port = free_port()
        text = toml_config(
            [("trickle", server.url("/trickle")), ("ok", server.url("/ok"))],
            polling=FAST,
            base_url=f"http://127.0.0.1:{port}",
        )
        text = text.replace('timeout = "5s"', 'timeout = "30s"')
        text = text.replace("[server]\n", f"[server]\nport = {port}\n", 1)
        cfg_path = Path(tmp) / "aggregator.toml"
        cfg_path.write_text(text, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(cfg_path), "run"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: bool(server.requests_for("/trickle")), 15)
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
        conn = sqlite3.connect(Path(tmp) / "aggregator.db")
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.close()
        print(f"  exit code {code}, {took:.2f}s after SIGTERM; PRAGMA integrity_check: {check}")
        print(f"  (the trickled response would have taken {len(rss('t') * 4) * 0.2:.0f}s)")


def wait_until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("the daemon never polled the feed")
        time.sleep(0.05)


CASES = {
    "410": case_410,
    "429": case_429,
    "backoff": case_backoff,
    "301": case_301,
    "per_host": case_per_host,
    "spread": case_spread,
    "sigterm": case_sigterm,
}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.CRITICAL)
    unknown = [a for a in argv if a not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; choose from {list(CASES)}", file=sys.stderr)
        return 2
    for name in argv or list(CASES):
        CASES[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
