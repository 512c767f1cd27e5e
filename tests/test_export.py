"""`[server] export_dir`: the files nginx or a CDN serves must be the HTTP bytes, whole.

A poll (the real `aggregator poll` process) writes each topic's three formats and the
OPML; each must equal what the app answers over HTTP, be replaced by rename (a reader
never sees half a file), and be left untouched when its bytes did not change (its
mtime is nginx's Last-Modified, and rewriting it would break conditional GETs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator import config as config_mod
from aggregator.publish import cache as publish
from aggregator.publish import web
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import FeedServer

FORMATS = ("atom", "rss", "json")
TOPICS = [
    {"slug": "pak-russia", "title": "Pakistan–Russia", "query": "pakistan AND russia"},
    {"slug": "cricket", "title": "Cricket", "query": "cricket"},
    {"slug": "everything", "title": "Everything"},
]


def rss(*items: tuple[int, str, str]) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>http://dawn.example/{n}</link>"
        f"<guid>http://dawn.example/{n}</guid>"
        f"<pubDate>Mon, 05 Jan 2026 {10 + n:02d}:00:00 GMT</pubDate>"
        f"<description>{text}</description></item>"
        for n, title, text in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Dawn</title><link>http://dawn.example/</link><description>d</description>"
        f"{body}</channel></rss>"
    ).encode()


FIRST = rss(
    (1, "Pakistan and Russia sign energy deal", "Islamabad and Moscow agreed."),
    (2, "Cricket final tonight", "Karachi hosts the final."),
)
SECOND = rss(
    (1, "Pakistan and Russia sign energy deal", "Islamabad and Moscow agreed."),
    (2, "Cricket final tonight", "Karachi hosts the final."),
    (3, "Russia and Pakistan plan rail link", "A railway from Moscow to Karachi."),
)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, FeedServer]]:
    with FeedServer() as server:
        server.add("/dawn.xml", FIRST)
        text = toml_config(
            [{"name": "dawn", "url": server.url("/dawn.xml"), "title": "Dawn"}],
            TOPICS,
        )
        text = text.replace("[server]\n", '[server]\nexport_dir = "public"\n', 1)
        (tmp_path / "aggregator.toml").write_text(text, encoding="utf-8")
        yield tmp_path, server


def poll(folder: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(folder / "aggregator.toml"), "poll"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr


def exported(folder: Path) -> dict[str, Path]:
    public = folder / "public"
    files = {
        f"/topics/{t['slug']}.{fmt}": public / "topics" / f"{t['slug']}.{fmt}"
        for t in TOPICS
        for fmt in FORMATS
    }
    files["/topics.opml"] = public / "topics.opml"
    return files


def http_bodies(folder: Path) -> dict[str, bytes]:
    cfg = config_mod.load(folder / "aggregator.toml")
    client = web.create_app(cfg).test_client()
    bodies = {}
    for path in exported(folder):
        response = client.get(path)
        assert response.status_code == 200, path
        bodies[path] = response.get_data()
    return bodies


def test_poll_writes_every_topic_file_equal_to_http(site: tuple[Path, FeedServer]) -> None:
    folder, _ = site
    poll(folder)
    bodies = http_bodies(folder)
    for path, file in exported(folder).items():
        assert file.read_bytes() == bodies[path], path
        assert file.stat().st_mode & 0o777 == 0o644, "nginx must be able to read it"
    assert b"Pakistan and Russia sign energy deal" in bodies["/topics/pak-russia.atom"]
    assert b"Cricket final" not in bodies["/topics/pak-russia.atom"]
    # no temporary file is left behind for nginx to serve
    leftovers = [p.name for p in (folder / "public").rglob(".*")]
    assert leftovers == []


def test_unchanged_bytes_are_not_rewritten(site: tuple[Path, FeedServer]) -> None:
    folder, _ = site
    poll(folder)
    before = {path: file.stat() for path, file in exported(folder).items()}
    poll(folder)  # the feed answers 304: nothing changed
    for path, file in exported(folder).items():
        after = file.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before[path].st_ino, before[path].st_mtime_ns)
    cfg = config_mod.load(folder / "aggregator.toml")
    with store.Store(cfg.database.path) as db:
        assert publish.export_files(db, cfg) == 0


def test_changed_topics_are_replaced_by_rename(site: tuple[Path, FeedServer]) -> None:
    folder, server = site
    poll(folder)
    files = exported(folder)
    before = {path: (file.stat().st_ino, file.read_bytes()) for path, file in files.items()}
    server.add("/dawn.xml", SECOND)
    poll(folder)
    bodies = http_bodies(folder)
    for path, file in files.items():
        assert file.read_bytes() == bodies[path], path
    # the topics the new entry joined changed, and got a new inode (rename, not rewrite)
    for path in ("/topics/pak-russia.atom", "/topics/everything.json"):
        assert bodies[path] != before[path][1], path
        assert files[path].stat().st_ino != before[path][0], path
    # the cricket topic did not change: same file, same bytes
    for fmt in FORMATS:
        path = f"/topics/cricket.{fmt}"
        assert files[path].stat().st_ino == before[path][0]
        assert bodies[path] == before[path][1]


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    target = tmp_path / "public" / "topics" / "t.atom"
    versions = [bytes([65 + i]) * (256 * 1024 + i) for i in range(4)]
    publish.write_atomic(target, versions[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            publish.write_atomic(target, versions[i % len(versions)])
    finally:
        stop.set()
        reader.join(timeout=30)
    assert seen <= set(versions), "a read saw a torn or truncated file"
    assert os.listdir(target.parent) == ["t.atom"]
