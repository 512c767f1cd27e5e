"""Real clients against a real aggregator: newsboat, an npm feed parser, ajv, listparser,
headless Chromium, and the W3C feed validator's rules.

One fixture builds the whole chain once per module: a loopback FeedServer serving a few
small outlets (one story reported by two outlets under the same link, Urdu and Russian
titles), the real poll into a real SQLite file, and the web app on a real socket whose
address is the config's base_url (so self links equal the address a reader fetched).

Each client test skips with the reason when its tool is absent (a user's machine may lack
apt or npm); `.ci/run` installs them all, so in CI nothing here skips.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import feedparser
import listparser
import pytest
import requests

from aggregator import config as config_mod
from aggregator.ingest import pipeline as poll
from aggregator.models import FeedUpdate, PollResult
from aggregator.publish import server, web
from aggregator.storage import store
from tests.conftest import toml_config
from tests.feedserver import FeedServer

ROOT = Path(__file__).resolve().parents[1]
JS_DIR = Path(__file__).resolve().parent / "js"
ARTIFACTS = ROOT / "test-artifacts"
TOPIC_ALL = "region"
TOPIC_QUERY = "pakistan-russia"
#: the link both dawn and tass give for one story: the poll must merge them
SHARED_LINK = "https://news.example/2026/energy-deal"


@dataclass(frozen=True)
class Item:
    """One entry as an outlet publishes it."""

    title: str
    link: str
    hours_ago: float
    author: str | None = None


#: outlet name -> (format, title, items); dawn's copy of the shared story is the older one
OUTLETS: dict[str, tuple[str, str, list[Item]]] = {
    "dawn": (
        "rss",
        "Dawn",
        [
            Item("Pakistan and Russia sign energy deal", SHARED_LINK, 5, "Staff Reporter"),
            Item("Inflation < 10% for the first time since 2021", "https://dawn.example/2", 3),
        ],
    ),
    "tass": (
        "rss",
        "TASS",
        [
            Item("Пакистан и Россия подписали энергетическое соглашение", SHARED_LINK, 4),
            Item("Москва и Исламабад обсудили торговлю", "https://tass.example/2", 2),
        ],
    ),
    "urdu": (
        "atom",
        "BBC Urdu",
        [
            Item("پاکستان اور روس کے درمیان تجارتی معاہدہ", "https://urdu.example/1", 1.5),
            Item("کراچی میں شدید بارش", "https://urdu.example/2", 1, "نامہ نگار"),
        ],
    ),
}


def outlet_feed(name: str, now: datetime) -> tuple[bytes, str]:
    """An outlet's feed document, as small as a real one can be, and its content type."""
    fmt, title, items = OUTLETS[name]
    if fmt == "rss":
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<rss version="2.0"><channel>',
            f"<title>{escape(title)}</title><link>https://{name}.example/</link>",
            f"<description>{escape(title)} news</description>",
        ]
        for it in items:
            when = format_datetime(now - timedelta(hours=it.hours_ago))
            author = f"<author>{escape(it.author)}</author>" if it.author else ""
            parts.append(
                f"<item><title>{escape(it.title)}</title><link>{escape(it.link)}</link>"
                f"<guid>{escape(it.link)}</guid><pubDate>{when}</pubDate>{author}"
                f"<description>{escape(it.title)}</description></item>"
            )
        parts.append("</channel></rss>")
        return "\n".join(parts).encode("utf-8"), "application/rss+xml"
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{escape(title)}</title><id>https://{name}.example/</id>",
        f"<updated>{now.isoformat()}</updated>",
    ]
    for it in items:
        when = (now - timedelta(hours=it.hours_ago)).isoformat()
        author = f"<author><name>{escape(it.author)}</name></author>" if it.author else ""
        parts.append(
            f"<entry><title>{escape(it.title)}</title>"
            f'<link rel="alternate" href="{escape(it.link)}"/><id>{escape(it.link)}</id>'
            f"<updated>{when}</updated><published>{when}</published>{author}"
            f"<summary>{escape(it.title)}</summary></entry>"
        )
    parts.append("</feed>")
    return "\n".join(parts).encode("utf-8"), "application/atom+xml"


@dataclass
class Live:
    """The running chain: where things are and how to poll again."""

    base: str
    cfg: config_mod.Config
    config_path: Path
    feeds: FeedServer
    tmp: Path

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path: str) -> requests.Response:
        resp = requests.get(self.url(path), timeout=10)
        resp.raise_for_status()
        return resp

    def poll(self) -> list[PollResult]:
        poller = poll.Poller(self.cfg)
        try:
            return list(poll.poll_many(poller, self.cfg.feeds))
        finally:
            poller.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live")
    now = datetime.now(UTC).replace(microsecond=0)
    feeds = FeedServer().start()
    # The app's socket exists before its config, so base_url is exactly its address.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    http: server.Server | None = None
    try:
        feed_rows = []
        for name, (_fmt, title, _items) in OUTLETS.items():
            body, ctype = outlet_feed(name, now)
            feeds.add(f"/{name}.xml", body, content_type=ctype)
            feed_rows.append(
                {
                    "name": name,
                    "url": feeds.url(f"/{name}.xml"),
                    "title": title,
                    "allow_private": True,
                }
            )
        text = toml_config(
            feed_rows,
            [
                {"slug": TOPIC_ALL, "title": "Region (every outlet)"},
                {
                    "slug": TOPIC_QUERY,
                    "title": "Pakistan–Russia",
                    "query": "(pakistan OR пакистан OR پاکستان) AND (russia OR россия OR روس)",
                },
            ],
            base_url=base,
        )
        config_path = tmp / "aggregator.toml"
        config_path.write_text(text, encoding="utf-8")
        cfg = config_mod.load(config_path)
        db = store.Store(cfg.database.path)
        poll.sync(cfg, db)
        db.close()
        chain = Live(base, cfg, config_path, feeds, tmp)
        results = chain.poll()
        assert sorted(r.status for r in results) == ["ok"] * len(OUTLETS), results
        http = server.make_server(web.create_app(cfg), sock=sock, threads=4)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        yield chain
    finally:
        if http is not None:
            http.close()
        else:
            sock.close()
        feeds.stop()


# -- what the aggregator should serve, from what the outlets published -------------------


def source_titles() -> set[str]:
    return {it.title for _fmt, _t, items in OUTLETS.values() for it in items}


def shared_titles() -> set[str]:
    return {
        it.title for _f, _t, items in OUTLETS.values() for it in items if it.link == SHARED_LINK
    }


def outlet_titles() -> set[str]:
    return {title for _fmt, title, _items in OUTLETS.values()}


def check_served_titles(titles: list[str]) -> None:
    """Every outlet entry once, except the two-outlet story, which is one entry."""
    assert len(titles) == len(set(titles)) == len(source_titles()) - 1
    merged = set(titles) & shared_titles()
    assert len(merged) == 1, merged
    assert set(titles) == (source_titles() - shared_titles()) | merged


def feedparser_view(body: bytes) -> list[dict[str, Any]]:
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [
        {"id": e.id, "title": e.title, "link": e.link, "author": e.get("author")}
        for e in parsed.entries
    ]


def json_view(body: bytes) -> list[dict[str, Any]]:
    return [
        {"id": i["id"], "title": i["title"], "link": i["url"], "author": i["authors"][0]["name"]}
        for i in json.loads(body)["items"]
    ]


def test_served_feeds_hold_the_outlets_entries_once(live: Live) -> None:
    for fmt in ("atom", "rss"):
        view = feedparser_view(live.get(f"/topics/{TOPIC_ALL}.{fmt}").content)
        check_served_titles([e["title"] for e in view])
        assert [e["link"] for e in view].count(SHARED_LINK) == 1
        # the outlet is in every entry's author, since many readers show nothing else
        assert all(any(o in (e["author"] or "") for o in outlet_titles()) for e in view)
    json_items = json_view(live.get(f"/topics/{TOPIC_ALL}.json").content)
    check_served_titles([e["title"] for e in json_items])
    # the query topic holds the stories naming both countries, in any of the three scripts
    query_titles = {e["title"] for e in json_view(live.get(f"/topics/{TOPIC_QUERY}.json").content)}
    assert "پاکستان اور روس کے درمیان تجارتی معاہدہ" in query_titles
    assert query_titles & shared_titles()
    assert "کراچی میں شدید بارش" not in query_titles


# -- newsboat ------------------------------------------------------------------------------


def need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed ({why}); .ci/run installs it")
    return path


def newsboat_reload(newsboat: str, home: Path, urls: Path) -> None:
    config = home / "config"
    config.write_text("reload-threads 2\ndownload-timeout 20\n", encoding="utf-8")
    subprocess.run(
        [
            newsboat,
            "-C",
            str(config),
            "-u",
            str(urls),
            "-c",
            str(home / "cache.db"),
            "-l",
            "6",
            "-d",
            str(home / "newsboat.log"),
            "-x",
            "reload",
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb"},
        stdin=subprocess.DEVNULL,
    )


def newsboat_items(home: Path) -> dict[str, list[dict[str, str]]]:
    """The reader's cache, by feed URL: what a person would see after a reload."""
    db = sqlite3.connect(home / "cache.db")
    try:
        rows = db.execute(
            "SELECT feedurl, guid, title, url, author FROM rss_item ORDER BY feedurl, id"
        ).fetchall()
    finally:
        db.close()
    out: dict[str, list[dict[str, str]]] = {}
    for feedurl, guid, title, url, author in rows:
        out.setdefault(feedurl, []).append(
            {"id": guid, "title": title, "link": url, "author": author}
        )
    return out


def js_version(package: str) -> str:
    manifest = JS_DIR / "node_modules" / package / "package.json"
    return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])


def tool_version(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return (proc.stdout.strip().splitlines() or ["?"])[0]


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """A line in pytest's own output even when the test passes: which client, which version,
    where the screenshot is; CI's log is the record of what was proven."""
    with capsys.disabled():
        print(f"\n    [client] {line}")


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in items}


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_newsboat_reads_the_topic_feed(
    live: Live, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # One cache per format: newsboat keys items by guid across all its feeds, and a story
    # has the same id in every format, so a second subscription would show it only once.
    newsboat = need("newsboat", "Debian package newsboat")
    urls = tmp_path / "urls"
    url = live.url(f"/topics/{TOPIC_ALL}.{fmt}")
    urls.write_text(url + "\n", encoding="utf-8")
    newsboat_reload(newsboat, tmp_path, urls)
    seen = newsboat_items(tmp_path)
    assert set(seen) == {url}
    served = by_id(feedparser_view(live.get(f"/topics/{TOPIC_ALL}.{fmt}").content))
    got = by_id(seen[url])
    assert set(got) == set(served)
    for gid, item in got.items():
        assert item["title"] == served[gid]["title"]
        assert item["link"] == served[gid]["link"]
        assert any(o in item["author"] for o in outlet_titles()), item
    check_served_titles([i["title"] for i in got.values()])

    # Nothing new at the outlets: a poll stores nothing, and a reload adds nothing.
    results = live.poll()
    assert all(r.new == 0 for r in results), results
    newsboat_reload(newsboat, tmp_path, urls)
    assert newsboat_items(tmp_path) == seen
    report(capsys, f"{tool_version(newsboat, '-v')}: {fmt} read, {len(got)} entries, stable")


def test_newsboat_imports_the_opml(live: Live, tmp_path: Path) -> None:
    newsboat = need("newsboat", "Debian package newsboat")
    opml_file = tmp_path / "topics.opml"
    opml_file.write_bytes(live.get("/topics.opml").content)
    urls = tmp_path / "urls"
    urls.touch()
    subprocess.run(
        [newsboat, "-u", str(urls), "-c", str(tmp_path / "cache.db"), "-i", str(opml_file)],
        check=True,
        capture_output=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        stdin=subprocess.DEVNULL,
    )
    imported = [ln.split()[0] for ln in urls.read_text(encoding="utf-8").splitlines() if ln]
    topics = [live.url(f"/topics/{t.slug}.atom") for t in live.cfg.topics]
    assert sorted(imported) == sorted(topics)
    newsboat_reload(newsboat, tmp_path, urls)
    seen = newsboat_items(tmp_path)
    # a story in both topics has one id, so newsboat files it under one of them
    served = {}
    for url in topics:
        feed_items = by_id(feedparser_view(live.get(url.removeprefix(live.base)).content))
        assert set(by_id(seen.get(url, []))) <= set(feed_items)
        served.update(feed_items)
    got = {i["id"]: i["title"] for items in seen.values() for i in items}
    assert got == {k: v["title"] for k, v in served.items()}


# -- a second, independent parser (feedsmith, npm) -----------------------------------------


def node_script(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    node = need("node", "Node.js")
    if not (JS_DIR / "node_modules").is_dir():
        pytest.skip(f"npm packages are not installed: run `npm ci` in {JS_DIR}")
    return subprocess.run(
        [node, str(JS_DIR / script), *args],
        cwd=JS_DIR,
        check=check,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_feedsmith_agrees_with_feedparser(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    urls = {fmt: live.url(f"/topics/{TOPIC_ALL}.{fmt}") for fmt in ("atom", "rss", "json")}
    out = json.loads(node_script("parse.mjs", *urls.values()).stdout)
    ours = {
        "atom": feedparser_view(live.get(f"/topics/{TOPIC_ALL}.atom").content),
        "rss": feedparser_view(live.get(f"/topics/{TOPIC_ALL}.rss").content),
        "json": json_view(live.get(f"/topics/{TOPIC_ALL}.json").content),
    }
    for fmt, url in urls.items():
        assert out[url]["format"] == fmt
        theirs = [{k: i[k] for k in ("id", "title", "link")} for i in out[url]["items"]]
        assert theirs == [{k: i[k] for k in ("id", "title", "link")} for i in ours[fmt]], fmt
        assert all(
            any(o in (i["author"] or "") for o in outlet_titles()) for i in out[url]["items"]
        )
    # one id per story across the three formats
    assert [i["id"] for i in ours["atom"]] == [i["id"] for i in ours["rss"]]
    assert [i["id"] for i in ours["rss"]] == [i["id"] for i in ours["json"]]
    report(
        capsys,
        f"feedsmith {js_version('feedsmith')} and feedparser {feedparser.__version__}: "
        "atom, rss, json agree",
    )


# -- JSON Feed 1.1 schema (jsonfeed-schema with ajv, npm) ----------------------------------


def test_json_feed_validates_against_the_schema(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [live.url(f"/topics/{t.slug}.json") for t in live.cfg.topics]
    proc = node_script("validate-jsonfeed.mjs", *urls, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {u: [] for u in urls}
    report(
        capsys,
        f"ajv {js_version('ajv')} with jsonfeed-schema {js_version('jsonfeed-schema')} "
        "(JSON Feed 1.1): valid",
    )


def test_schema_validator_rejects_a_broken_feed(live: Live) -> None:
    """The validator is not a rubber stamp: an item without its id fails."""
    doc = json.loads(live.get(f"/topics/{TOPIC_ALL}.json").content)
    del doc["items"][0]["id"]
    doc["items"][1]["url"] = 42
    live.feeds.add("/broken.json", json.dumps(doc).encode(), content_type="application/feed+json")
    proc = node_script("validate-jsonfeed.mjs", live.feeds.url("/broken.json"), check=False)
    assert proc.returncode == 1
    errors = json.loads(proc.stdout)[live.feeds.url("/broken.json")]
    assert any("/items/0" in e and "id" in e for e in errors), errors
    assert any("/items/1/url" in e for e in errors), errors


# -- the W3C feed validator's rules ---------------------------------------------------------
# No W3C feed validator can be installed here (not on PyPI, npm or Debian; the public one is
# a web service), so these tests check the rules it applies that our output can break.

ATOM = "{http://www.w3.org/2005/Atom}"
RSS_ELEMENTS = {
    "rss", "channel", "title", "link", "description", "language", "copyright",
    "managingEditor", "webMaster", "pubDate", "lastBuildDate", "category", "generator",
    "docs", "cloud", "ttl", "image", "url", "width", "height", "rating", "textInput",
    "skipHours", "skipDays", "item", "author", "comments", "enclosure", "guid", "source",
    "{http://purl.org/dc/elements/1.1/}creator", f"{ATOM}link",
    "{http://purl.org/rss/1.0/modules/content/}encoded",
}  # fmt: skip
ATOM_ELEMENTS = {
    f"{ATOM}{n}"
    for n in (
        "feed", "entry", "id", "title", "updated", "published", "author", "name", "uri",
        "email", "contributor", "link", "content", "summary", "category", "generator", "icon",
        "logo", "rights", "subtitle", "source",
    )
}  # fmt: skip
RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} (GMT|[+-]\d{4})$"
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@pytest.mark.parametrize("slug", [TOPIC_ALL, TOPIC_QUERY])
def test_rss_follows_the_validator_rules(live: Live, slug: str) -> None:
    address = live.url(f"/topics/{slug}.rss")
    raw = live.get(f"/topics/{slug}.rss").content
    root = ET.fromstring(raw)
    assert root.tag == "rss" and root.get("version") == "2.0"
    assert {el.tag for el in root.iter()} <= RSS_ELEMENTS
    channel = root.find("channel")
    assert channel is not None
    for required in ("title", "link", "description"):
        assert (channel.findtext(required) or "").strip(), required
    selfs = [el for el in channel.findall(f"{ATOM}link") if el.get("rel") == "self"]
    assert [el.get("href") for el in selfs] == [address]
    assert selfs[0].get("type") == "application/rss+xml"
    items = channel.findall("item")
    assert items
    for date in [channel.findtext("lastBuildDate"), *(i.findtext("pubDate") for i in items)]:
        if date is not None:
            assert RFC822.match(date), date
            assert parsedate_to_datetime(date).tzinfo is not None
    guids = [i.find("guid") for i in items]
    assert all(g is not None and g.text for g in guids)
    assert len({g.text for g in guids if g is not None}) == len(items)
    for item in items:
        assert item.findtext("title") or item.findtext("description")
        source = item.find("source")
        assert source is not None and source.get("url") and source.text in outlet_titles()
    # '<' in a title is written as a hexadecimal reference: some readers show '&lt;' raw
    titles = re.findall(rb"<title>(.*?)</title>", raw, flags=re.S)
    assert not [t for t in titles if b"&lt;" in t]
    if slug == TOPIC_ALL:
        assert b"Inflation &#x3C; 10% for the first time since 2021" in titles


@pytest.mark.parametrize("slug", [TOPIC_ALL, TOPIC_QUERY])
def test_atom_follows_the_validator_rules(live: Live, slug: str) -> None:
    address = live.url(f"/topics/{slug}.atom")
    root = ET.fromstring(live.get(f"/topics/{slug}.atom").content)
    assert root.tag == f"{ATOM}feed"
    assert {el.tag for el in root.iter()} <= ATOM_ELEMENTS
    for required in ("id", "title", "updated"):
        assert (root.findtext(f"{ATOM}{required}") or "").strip(), required
    selfs = [el for el in root.findall(f"{ATOM}link") if el.get("rel") == "self"]
    assert [el.get("href") for el in selfs] == [address]
    entries = root.findall(f"{ATOM}entry")
    assert entries
    feed_author = root.find(f"{ATOM}author/{ATOM}name")
    for entry in entries:
        for required in ("id", "title", "updated"):
            assert (entry.findtext(f"{ATOM}{required}") or "").strip(), required
        for el in entry.iter():
            if el.tag in {f"{ATOM}updated", f"{ATOM}published"}:
                assert RFC3339.match(el.text or ""), el.text
        author = entry.findtext(f"{ATOM}author/{ATOM}name") or (
            feed_author.text if feed_author is not None else None
        )
        assert author and any(o in author for o in outlet_titles()), author
        alternates = [
            el for el in entry.findall(f"{ATOM}link") if el.get("rel", "alternate") == "alternate"
        ]
        assert len(alternates) == 1
        assert entry.findtext(f"{ATOM}source/{ATOM}title") in outlet_titles()
        # the W3C validator warns on a <source> without <updated> (RFC 4287 4.2.11)
        assert entry.findtext(f"{ATOM}source/{ATOM}updated") == entry.findtext(f"{ATOM}updated")
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == len(ids)


# -- OPML with listparser ------------------------------------------------------------------


def test_listparser_reads_topics_opml(live: Live) -> None:
    parsed = listparser.parse(live.get("/topics.opml").content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert sorted(f.url for f in parsed.feeds) == sorted(
        live.url(f"/topics/{t.slug}.atom") for t in live.cfg.topics
    )
    assert {f.title for f in parsed.feeds} == {t.title for t in live.cfg.topics}


def test_listparser_reads_opml_export(live: Live) -> None:
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "aggregator", "--config",
         str(live.config_path), "opml", "export"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    parsed = listparser.parse(proc.stdout)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert sorted(f.url for f in parsed.feeds) == sorted(f.url for f in live.cfg.feeds)
    assert {f.title for f in parsed.feeds} == outlet_titles()


# -- headless Chromium (Debian) with playwright-core (npm) ---------------------------------


def test_index_page_in_chromium(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    chromium = need("chromium", "Debian package chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "index-page.png"
    shot.unlink(missing_ok=True)
    proc = node_script("browser.mjs", live.url("/"), str(shot), check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == 200
    assert out["csp"] and "default-src 'none'" in out["csp"]
    # Chromium asks for /favicon.ico on its own; the page has no icon, so that one 404 (and
    # the console line it causes) is the browser's doing. Nothing else may fail.
    favicon = live.url("/favicon.ico")
    assert [r for r in out["badResponses"] if r["url"] != favicon] == []
    problems = [
        m
        for m in out["console"]
        if m["type"] in {"error", "warning"} and not (m["url"] == favicon and "404" in m["text"])
    ]
    # CSP violations show up as console errors ("Refused to ..."): there must be none
    assert problems == []
    assert out["pageErrors"] == [] and out["failedRequests"] == []
    expected = {
        live.url(f"/topics/{t.slug}.{fmt}"): mime
        for t in live.cfg.topics
        for fmt, mime in (
            ("atom", "application/atom+xml"),
            ("rss", "application/rss+xml"),
            ("json", "application/feed+json"),
        )
    }
    assert {link["href"]: link["type"] for link in out["links"]} == expected
    for link in out["links"]:
        assert link["status"] == 200
        assert link["contentType"].split(";")[0] == link["type"]
        served = live.get(link["href"].removeprefix(live.base)).text
        assert link["body"] == served
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report(
        capsys,
        f"{tool_version(chromium, '--version')} via playwright-core "
        f"{js_version('playwright-core')}: {len(out['links'])} feeds found; screenshot {shot}",
    )


# -- /metrics and /healthz ----------------------------------------------------------------


def scrape(live: Live) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples by name, then by their sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(live.get("/metrics").text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_describe_feeds_topics_and_requests(live: Live) -> None:
    before = datetime.now(UTC).timestamp()
    live.get(f"/topics/{TOPIC_ALL}.atom")
    assert requests.get(live.url("/topics/nope.atom"), timeout=10).status_code == 404
    m = scrape(live)
    for name, (_fmt, _title, items) in OUTLETS.items():
        label = (("feed", name),)
        last = m["aggregator_feed_last_success_timestamp_seconds"][label]
        assert before - 600 < last <= datetime.now(UTC).timestamp()
        assert m["aggregator_feed_consecutive_failures"][label] == 0
        assert m["aggregator_feed_entries"][label] == len(items)
    served = {
        t.slug: json.loads(live.get(f"/topics/{t.slug}.json").content)["items"]
        for t in live.cfg.topics
    }
    for slug, items in served.items():
        label = (("topic", slug),)
        assert m["aggregator_topic_entries"][label] == len(items)
        newest = max(datetime.fromisoformat(i["date_published"]) for i in items)
        assert m["aggregator_topic_newest_entry_timestamp_seconds"][label] == newest.timestamp()
    reqs = m["aggregator_http_requests_total"]
    assert reqs[(("route", "/topics/<slug>.<fmt>"), ("status", "200"))] >= 1
    assert reqs[(("route", "/topics/<slug>.<fmt>"), ("status", "404"))] >= 1
    # a scrape is counted once its response is made, so the next scrape shows the first
    assert (
        scrape(live)["aggregator_http_requests_total"][(("route", "/metrics"), ("status", "200"))]
        >= 1
    )
    # the poll duration histogram is declared; the daemon test sees it fill (test_systemd)
    assert "aggregator_poll_duration_seconds" in live.get("/metrics").text


def test_healthz_503_when_polling_stalled(live: Live, tmp_path: Path) -> None:
    text = toml_config(
        [
            {"name": "dawn", "url": "http://127.0.0.1:9/dawn.xml", "allow_private": True},
            {"name": "tass", "url": "http://127.0.0.1:9/tass.xml", "allow_private": True},
        ],
        [{"slug": "news", "title": "News"}],
        polling='interval = "15m"',
    )
    (tmp_path / "aggregator.toml").write_text(text, encoding="utf-8")
    cfg = config_mod.load(tmp_path / "aggregator.toml")
    db = store.Store(cfg.database.path)
    poll.sync(cfg, db)
    now = datetime.now(UTC)

    def serve_health() -> tuple[int, dict[str, Any]]:
        http = server.make_server(web.create_app(cfg), "127.0.0.1", 0, threads=2)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        try:
            port = http.address[1]
            resp = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            return resp.status_code, resp.json()
        finally:
            http.close()

    with db.write():
        # dawn last succeeded 46 minutes ago (> 3 intervals), tass has failed since
        db.record_fetch(
            FeedUpdate("dawn", at=now - timedelta(minutes=46), status=200, success=True)
        )
        db.record_fetch(
            FeedUpdate(
                "tass", at=now - timedelta(minutes=5), status=503, error="HTTP 503",
                success=False, failures=4,
            )
        )  # fmt: skip
    status, body = serve_health()
    assert status == 503, body
    assert body["ok"] is False
    assert [f["feed"] for f in body["feeds_failing"]] == ["tass"]
    assert body["feeds_failing"][0]["failures"] == 4

    with db.write():  # one success within the window and polling is alive again
        db.record_fetch(
            FeedUpdate("dawn", at=now - timedelta(minutes=10), status=304, success=True)
        )
    status, body = serve_health()
    db.close()
    assert status == 200 and body["ok"] is True, body
