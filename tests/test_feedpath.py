"""The topic feed path in front of Flask answers exactly as the Flask route does.

Both call `feedpath.answer()`; these tests hold the two side by side: `aggregator
serve` (the path as shipped) against the Flask route alone on the same database,
over real sockets, and both WSGI callables request by request.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder

from aggregator import config as config_mod
from aggregator.publish import cache as publish
from aggregator.publish import feedpath, server, web
from tests import test_web
from tests.conftest import toml_config
from tests.feedserver import FeedServer, free_port

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "feeds" / "real"
FEEDS = {
    "urdu": "bbc-urdu__pakistan-us-aid.xml",
    "df": "daringfireball-net__atom.xml",
}
#: what INTERFACE.md promises each format is served as
CONTENT_TYPES = {
    "atom": "application/atom+xml",
    "rss": "application/rss+xml",
    "json": "application/feed+json",
}
OLDER = "Mon, 01 Jan 2001 00:00:00 GMT"

Answer = tuple[int, list[tuple[str, str]], bytes]


def fetch(conn: http.client.HTTPConnection, method: str, path: str, **headers: str) -> Answer:
    """One request on a kept-alive connection: status, headers in order less Date, body."""
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    got = resp.getheaders()
    assert sum(1 for k, _ in got if k.lower() == "date") == 1, got
    return resp.status, [(k.lower(), _same(k, v)) for k, v in got if k.lower() != "date"], body


def _same(name: str, value: str) -> str:
    # Flask lists a 405's methods from a set, so their order differs between processes
    return ", ".join(sorted(value.split(", "))) if name.lower() == "allow" else value


def aggregator(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "aggregator", "--config", str(folder / "aggregator.toml"), *args]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """Real feeds polled by `aggregator poll`, then `aggregator serve` on them."""
    folder = tmp_path_factory.mktemp("served")
    port = free_port()
    with FeedServer() as feeds:
        for name, file in FEEDS.items():
            feeds.add(f"/{name}.xml", (REAL / file).read_bytes())
        text = toml_config(
            [(name, feeds.url(f"/{name}.xml")) for name in FEEDS],
            [
                {"slug": "all", "title": "Everything"},
                {"slug": "empty", "title": "Nothing yet", "query": "zzqxv"},
            ],
            base_url=f"http://127.0.0.1:{port}",
        )
        (folder / "aggregator.toml").write_text(
            text.replace("[server]\n", f"[server]\nport = {port}\n", 1), encoding="utf-8"
        )
        done = subprocess.run(
            aggregator(folder, "poll"), cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    proc = subprocess.Popen(
        aggregator(folder, "serve"),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and "serving on" not in line:
            line = proc.stderr.readline()
        assert "serving on" in line, line
        yield folder, port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture(scope="module")
def flask_only(site: tuple[Path, int]) -> Iterator[int]:
    """The Flask route alone, on the same database, over a real socket."""
    cfg = config_mod.load(site[0] / "aggregator.toml")
    http = server.make_server(web.create_app(cfg, fast_path=False), "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield http.address[1]
    finally:
        http.close()


def test_served_feeds_match_the_flask_route_over_real_sockets(
    site: tuple[Path, int], flask_only: int
) -> None:
    served = http.client.HTTPConnection("127.0.0.1", site[1], timeout=10)
    flask = http.client.HTTPConnection("127.0.0.1", flask_only, timeout=10)
    try:
        for fmt in publish.FORMATS:
            path = f"/topics/all.{fmt}"
            full = fetch(served, "GET", path)
            assert full == fetch(flask, "GET", path)
            status, headers, body = full
            hdrs = dict(headers)
            # INTERFACE.md: its content type, validators, the same bytes as `export`
            assert status == 200 and hdrs["content-type"].startswith(CONTENT_TYPES[fmt])
            assert sorted(k for k, _ in headers) == [
                "cache-control",
                "content-length",
                "content-type",
                "etag",
                "last-modified",
                "server",
                "x-content-type-options",
            ]
            assert hdrs["cache-control"] == web.CACHE_CONTROL
            assert int(hdrs["content-length"]) == len(body)
            if fmt == "json":
                assert b'"items"' in body
            else:
                assert len(feedparser.parse(body).entries) > 10
            export = subprocess.run(
                aggregator(site[0], "export", "all", "--format", fmt),
                cwd=ROOT,
                capture_output=True,
                timeout=120,
            )
            assert export.returncode == 0 and export.stdout == body
            etag, last_modified = hdrs["etag"], hdrs["last-modified"]
            cases: list[tuple[str, str, dict[str, str], int]] = [
                ("HEAD", path, {}, 200),
                ("GET", path, {"If-None-Match": etag}, 304),
                ("HEAD", path, {"If-None-Match": etag}, 304),
                ("GET", path, {"If-None-Match": f'"other", W/{etag}'}, 304),
                ("GET", path, {"If-Modified-Since": last_modified}, 304),
                ("GET", path, {"If-Modified-Since": OLDER}, 200),
                ("GET", path, {"If-None-Match": '"old"', "If-Modified-Since": last_modified}, 200),
                ("GET", path, {"If-Match": '"stale"'}, 412),
                ("GET", path, {"If-Match": etag}, 200),
                ("GET", f"{path}?utm=x", {"If-None-Match": etag}, 304),
                ("GET", f"/topics/nope.{fmt}", {}, 404),
                ("GET", f"/topics/all.{fmt}/", {}, 404),
                ("POST", path, {}, 405),
                ("GET", f"/topics/empty.{fmt}", {}, 200),
            ]
            for method, p, headers_in, want in cases:
                got = fetch(served, method, p, **headers_in)
                assert got[0] == want, (method, p, headers_in, got[0])
                assert got == fetch(flask, method, p, **headers_in), (method, p, headers_in)
                if want == 304:
                    assert got[2] == b"" and sorted(k for k, _ in got[1]) == [
                        "cache-control",
                        "etag",
                        "server",
                        "x-content-type-options",
                    ]
                    assert dict(got[1])["etag"] == etag
                if method == "HEAD" and want == 200:
                    assert got[1] == headers and got[2] == b""
            # a topic with nothing in it has no Last-Modified, so only its ETag revalidates
            empty = fetch(served, "GET", f"/topics/empty.{fmt}")
            assert "last-modified" not in dict(empty[1])
            again = {"If-None-Match": dict(empty[1])["etag"]}
            assert fetch(served, "GET", f"/topics/empty.{fmt}", **again)[0] == 304
    finally:
        served.close()
        flask.close()


# -- the two WSGI callables, request by request ------------------------------------------


def call(app: Callable[..., Any], method: str, path: str, headers: dict[str, str]) -> Answer:
    env = EnvironBuilder(method=method, path=path, headers=headers).get_environ()
    got: list[tuple[str, list[tuple[str, str]]]] = []
    body = app(env, lambda status, hdrs, exc_info=None: got.append((status, hdrs)))
    data = b"".join(body)
    getattr(body, "close", lambda: None)()
    return int(got[0][0].split()[0]), list(got[0][1]), data


@pytest.fixture
def apps(cfg: config_mod.Config) -> tuple[Flask, Flask]:
    return web.create_app(cfg), web.create_app(cfg, fast_path=False)


cfg = test_web.cfg  # the two-story topic "news"


def test_both_callables_answer_alike_and_only_topic_feeds_skip_flask(
    apps: tuple[Flask, Flask],
) -> None:
    fast, flask = apps
    path_taken = fast.wsgi_app
    assert isinstance(path_taken, feedpath.TopicFeeds)
    through_flask: list[str] = []
    inner = path_taken.flask_app

    def counting(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        through_flask.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    path_taken.flask_app = counting
    for fmt in publish.FORMATS:
        path = f"/topics/news.{fmt}"
        etag = dict(call(flask, "GET", path, {})[1])["ETag"]
        last_modified = dict(call(flask, "GET", path, {})[1])["Last-Modified"]
        handled: list[tuple[str, str, dict[str, str]]] = [
            ("GET", path, {}),
            ("HEAD", path, {}),
            ("GET", path, {"If-None-Match": etag}),
            ("GET", path, {"If-None-Match": "*"}),
            ("GET", path, {"If-None-Match": "garbage"}),
            ("GET", path, {"If-Modified-Since": last_modified}),
            ("GET", path, {"If-Modified-Since": "yesterday"}),
            ("GET", path, {"If-None-Match": etag, "If-Modified-Since": OLDER}),
            ("GET", path, {"If-Match": etag}),
            ("GET", path, {"If-Match": '"stale"', "If-None-Match": etag}),
            ("GET", path, {"Range": "bytes=0-10"}),
        ]
        for method, p, headers in handled:
            before = len(through_flask)
            assert call(fast, method, p, headers) == call(flask, method, p, headers), headers
            assert len(through_flask) == before, (method, p, headers)
        passed_on = [
            ("GET", f"{path}?x=1", {}),
            ("POST", path, {}),
            ("OPTIONS", path, {}),
            ("GET", f"/topics/nope.{fmt}", {}),
            ("GET", f"/topics/news.{fmt}.gz", {}),
        ]
        for method, p, headers in passed_on:
            before = len(through_flask)
            assert call(fast, method, p, headers) == call(flask, method, p, headers), (method, p)
            assert len(through_flask) == before + 1, (method, p)
    for p in ("/", "/topics/news.html", "/topics.opml", "/healthz", "/topics/.atom"):
        before = len(through_flask)
        assert call(fast, "GET", p, {})[0] == call(flask, "GET", p, {})[0]
        assert len(through_flask) == before + 1, p


def test_a_failed_if_match_answers_412_on_both_paths(apps: tuple[Flask, Flask]) -> None:
    """werkzeug's rule, kept: an If-Match that fails on an unmodified feed is a 412."""
    for app in apps:
        path = "/topics/news.atom"
        etag = dict(call(app, "GET", path, {})[1])["ETag"]
        status, _, body = call(app, "GET", path, {"If-Match": '"x"', "If-None-Match": etag})
        assert status == 412 and body


def test_a_new_version_gets_new_headers_on_the_fast_path(
    cfg: config_mod.Config, apps: tuple[Flask, Flask]
) -> None:
    fast, flask = apps
    first = call(fast, "GET", "/topics/news.rss", {})
    test_web.add_story(
        cfg, [test_web.make_entry("tass", 5, "Pakistan wins", test_web.NOW + timedelta(hours=1))]
    )
    fast.extensions["topic_cache"].invalidate()
    flask.extensions["topic_cache"].invalidate()
    second = call(fast, "GET", "/topics/news.rss", {})
    assert second == call(flask, "GET", "/topics/news.rss", {})
    assert dict(second[1])["ETag"] != dict(first[1])["ETag"]
    assert b"Pakistan wins" in second[2]
    # the old validators no longer match
    old = {"If-None-Match": dict(first[1])["ETag"]}
    assert call(fast, "GET", "/topics/news.rss", old)[0] == 200
