"""OPML in and out through the CLI: real feed lists from the wild, and what readers expect.

tests/opml/ holds trimmed real OPML files (origins in tests/opml/SOURCES.tsv); each is
imported into a fresh config, which `aggregator check` must then accept. listparser, a
separate OPML reader, is the reference for which feeds a file holds.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import listparser
import pytest
from click.testing import CliRunner, Result

from aggregator import cli
from aggregator.config import opml_import
from aggregator.config.validate import url_problem as _url_problem
from aggregator.models import TopicSummary
from aggregator.publish import opml, render
from tests.conftest import toml_config
from tests.feedserver import FeedServer

OPML_DIR = Path(__file__).parent / "opml"
REAL = sorted(OPML_DIR.glob("*.opml"))

BASE_CONFIG = """\
# my aggregator: comments and layout must survive an import
[database]
path = "aggregator.db"  # beside this file

[[feeds]]
name = "tass"   # already here; the Russian list has it too
url = "http://TASS.com/rss/v2.xml"
[[topics]]
slug = "all"
title = "Everything"
"""


def run(*args: str, config: Path) -> Result:
    """The CLI in this process (click's runner), as `aggregator --config CONFIG ...`."""
    return CliRunner().invoke(cli.cli, ["--config", str(config), *args], obj={})


def aggregator(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def feeds_of(config: Path) -> list[dict[str, object]]:
    feeds: list[dict[str, object]] = tomllib.loads(config.read_text("utf-8")).get("feeds", [])
    return feeds


def reference_urls(path: Path) -> set[str]:
    """The usable feed URLs listparser finds in the file."""
    parsed = listparser.parse(path.read_bytes())
    urls = {f.url.strip() for f in parsed.feeds}
    return {u for u in urls if _url_problem(u, allow_file=False) is None}


def test_the_real_lists_are_many_and_documented() -> None:
    assert len(REAL) >= 20
    rows = (OPML_DIR / "SOURCES.tsv").read_text("utf-8").splitlines()[1:]
    listed = {row.split("\t")[0] for row in rows}
    assert listed == {p.name for p in REAL}
    assert len({row.split("\t")[1] for row in rows}) >= 20  # repositories of origin


@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_every_real_list_imports(path: Path, tmp_path: Path) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    r = run("opml", "import", str(path), config=config)
    assert r.exit_code == 0, r.output
    feeds = feeds_of(config)
    want = reference_urls(path)
    assert want, "every list here has a feed"
    got = {str(f["url"]) for f in feeds[1:]}
    tass = "http://tass.com/rss/v2.xml" in {u.lower() for u in want}
    assert got == want - ({"http://tass.com/rss/v2.xml"} if tass else set())
    summary = r.stdout.splitlines()[-1]
    assert summary.startswith(f"{len(got)} feeds added to {config}")
    assert f"{int(tass)} already there" in summary
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(f["name"])) for f in feeds)
    # what a user has is still there, word for word
    text = config.read_text("utf-8")
    assert text.startswith(BASE_CONFIG.split("[[topics]]")[0])
    assert text.rstrip().endswith('[[topics]]\nslug = "all"\ntitle = "Everything"')
    assert run("check", config=config).exit_code == 0
    repeated = re.search(r"; (\d+) repeated in ", summary)
    outlines = len(got) + int(tass) + (int(repeated.group(1)) if repeated else 0)
    again = run("opml", "import", str(path), config=config)
    assert again.exit_code == 0
    assert again.stdout.splitlines()[-1].startswith(
        f"0 feeds added to {config}; {outlines} already there"
    )
    assert config.read_text("utf-8") == text


def test_import_as_a_process_then_check(tmp_path: Path) -> None:
    """The Russian list: stray quotes in a title, Cyrillic titles, a feed already there."""
    config = tmp_path / "aggregator.toml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    src = OPML_DIR / "plenary-russia.opml"
    r = aggregator("opml", "import", str(src), config=config)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"12 feeds added to {config}; 1 already there"
    # the malformed line is named, with the feed read from it
    assert f"warning: {src}:20: malformed XML" in r.stderr
    assert "https://www.kommersant.ru/RSS/main.xml" in r.stderr
    assert "Traceback" not in r.stderr
    by_url = {f["url"]: f for f in feeds_of(config)}
    # titles without (enough) Latin letters: named after the host
    assert by_url["https://www.kommersant.ru/RSS/main.xml"]["name"] == "kommersant-ru"
    assert by_url["https://www.vesti.ru/vesti.rss"]["name"] == "vesti-ru"
    assert by_url["https://www.vesti.ru/vesti.rss"]["title"] == "Вести.Ru"
    assert by_url["https://rg.ru/xml/index.xml"]["name"] == "rg-ru"
    # Latin titles: named after the title
    assert by_url["https://meduza.io/rss/all"]["name"] == "meduza-io"
    # the OPML folder, once, above its first feed
    text = config.read_text("utf-8")
    assert text.count('# OPML folder: Russia\n[[feeds]]\nname = "lenta-ru"') == 1
    assert text.count("# OPML folder:") == 1
    check = aggregator("check", config=config)
    assert check.returncode == 0, check.stderr
    assert "kommersant-ru" in check.stdout


def test_bad_outlines_are_skipped_with_file_and_line(tmp_path: Path) -> None:
    """Inoreader's newsletter outlines carry an e-mail address as xmlUrl."""
    config = tmp_path / "aggregator.toml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    src = OPML_DIR / "infosec-inoreader.opml"
    r = aggregator("opml", "import", str(src), config=config)
    assert r.returncode == 0, r.stderr
    lines = src.read_text("utf-8").splitlines()
    warnings = [w for w in r.stderr.splitlines() if "skipped" in w]
    assert len(warnings) == 17
    for w in warnings:
        m = re.match(rf"warning: {re.escape(str(src))}:(\d+): skipped \"(.+?)\": URL scheme", w)
        assert m, w
        line = lines[int(m.group(1)) - 1]
        assert f'title="{m.group(2)}"' in line and "@inoreader.com" in line
    summary = r.stdout.splitlines()[-1]
    assert (
        summary
        == f"23 feeds added to {config}; 0 already there; 2 repeated in {src.name}; 17 skipped"
    )
    # folders with emoji and "&" are kept as comments
    text = config.read_text("utf-8")
    assert "# OPML folder: 🔐 Infosec | Top\n" in text
    assert "# OPML folder: ☎️ Infosec | Telegram\n" in text
    assert aggregator("check", config=config).returncode == 0


def test_a_stray_quote_that_hides_the_url_is_a_skipped_outline(tmp_path: Path) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    src = OPML_DIR / "plenary-business.opml"
    r = run("opml", "import", str(src), config=config)
    assert r.exit_code == 0, r.output
    assert f"{src}:20: skipped an outline: malformed XML" in r.stderr
    assert f"{src}:17: malformed XML (xmlParseEntityRef: no name), read leniently:" in r.stderr
    assert r.stdout.splitlines()[-1].endswith("; 1 skipped")
    assert "https://fortune.com/feed" in {f["url"] for f in feeds_of(config)}


def test_nested_folders_namespaces_and_spellings(tmp_path: Path) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    src = tmp_path / "mixed.opml"
    src.write_bytes(
        """<?xml version="1.0" encoding="ISO-8859-1"?>
<opml version="1.1" xmlns="http://www.opml.org/spec2/"><head><title>x</title></head><body>
<outline text="News">
  <outline title="Europe" text="ignored when there is a title">
    <outline text="Caf\xe9 Babel" xmlURL="https://cafebabel.example/rss"/>
    <outline text="Le Monde" type="RSS" xmlurl=" https://lemonde.example/rss "/>
  </outline>
  <outline text="Old style" type="rss" url="https://old.example/feed"/>
  <outline text="A site, no feed" type="link" url="https://site.example/"/>
</outline>
<outline text="Top level" xmlUrl="https://top.example/atom"/>
<outline text="Again" xmlUrl="HTTPS://CAFEBABEL.example/rss"/>
<outline text="feed:// is not ours" xmlUrl="feed://x.example/rss"/>
<outline text="Subscriptions" type="include" url="https://other.example/list.opml"/>
</body></opml>
""".encode("latin-1")
    )
    r = run("opml", "import", str(src), config=config)
    assert r.exit_code == 0, r.output
    feeds = feeds_of(config)[1:]
    assert [(f["name"], f["url"], f.get("title")) for f in feeds] == [
        ("cafe-babel", "https://cafebabel.example/rss", "Café Babel"),
        ("le-monde", "https://lemonde.example/rss", "Le Monde"),
        ("old-style", "https://old.example/feed", "Old style"),
        ("top-level", "https://top.example/atom", "Top level"),
    ]
    text = config.read_text("utf-8")
    assert '# OPML folder: News / Europe\n[[feeds]]\nname = "cafe-babel"' in text
    assert '# OPML folder: News\n[[feeds]]\nname = "old-style"' in text
    assert '# OPML: no folder\n[[feeds]]\nname = "top-level"' in text
    assert f'{src}:13: skipped "feed:// is not ours": URL scheme must be http' in r.stderr
    assert f'{src}:14: "Subscriptions" includes another OPML file' in r.stderr
    assert r.stdout.splitlines()[-1] == (
        f"4 feeds added to {config}; 0 already there; 1 repeated in mixed.opml; 1 skipped"
    )
    assert run("check", config=config).exit_code == 0


def test_names_never_collide(tmp_path: Path) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    src = tmp_path / "same.opml"
    src.write_text(
        '<opml version="2.0"><body>'
        '<outline text="TASS" xmlUrl="https://tass.com/rss/other.xml"/>'
        '<outline text="Блог" xmlUrl="https://blog.example/a.xml"/>'
        '<outline text="Блог" xmlUrl="https://blog.example/b.xml"/>'
        '<outline text="日記" xmlUrl="https://blog.example/a.xml?x=1"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    assert run("opml", "import", str(src), config=config).exit_code == 0
    assert [f["name"] for f in feeds_of(config)] == [
        "tass",
        "tass-2",
        "blog-example",
        "blog-example-b-xml",
        "blog-example-a-xml-x-1",
    ]
    assert run("check", config=config).exit_code == 0


def test_a_file_without_feeds_is_an_error_about_that_file(tmp_path: Path) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    for name, body in [
        ("empty.opml", b'<?xml version="1.0"?><opml version="1.0"><head/><body>'
         b'<outline text="node"/></body></opml>'),
        ("junk.opml", b"\x00\x01 not xml at all"),
        ("mail.opml", b'<opml><body><outline text="n" type="rss" '
         b'xmlUrl="incoming-x@inoreader.com"/></body></opml>'),
    ]:  # fmt: skip
        src = tmp_path / name
        src.write_bytes(body)
        r = aggregator("opml", "import", str(src), config=config)
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        assert f"error: {src}:" in r.stderr or f"error: {src}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert config.read_text("utf-8") == BASE_CONFIG
    assert f"warning: {tmp_path / 'mail.opml'}:1: skipped" in r.stderr


def test_entities_are_refused_and_nothing_is_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET", encoding="utf-8")
    laughs = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    outline = (
        '<opml version="2.0"><body><outline text="x{}" xmlUrl="https://a.example/"/></body></opml>'
    )
    with FeedServer() as server:
        server.add("/evil.dtd", b'<!ENTITY remote "FETCHED">')
        for dtd, ref in [
            (f'<!DOCTYPE opml [<!ENTITY xxe SYSTEM "file://{secret}">]>', "&xxe;"),
            (f"<!DOCTYPE opml [{laughs}]>", "&a9;"),
            ('<!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">]>', "&a;"),
        ]:
            doc = f'<?xml version="1.0"?>{dtd}{outline.format(ref)}'.encode()
            with pytest.raises(opml_import.OpmlError, match="declares XML entities"):
                opml_import.read(doc, "evil.opml")
        external = f'<!DOCTYPE opml SYSTEM "{server.url("/evil.dtd")}">'
        doc = f'<?xml version="1.0"?>{external}{outline.format("&remote;")}'.encode()
        reading = opml_import.read(doc, "evil.opml")
        assert [o.url for o in reading.outlines] == ["https://a.example/"]
        assert "FETCHED" not in (reading.outlines[0].title or "")
        assert server.requests_for("/evil.dtd") == []
    # and through the CLI: an error about the OPML file, the config untouched
    config = tmp_path / "aggregator.toml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    src = tmp_path / "laughs.opml"
    src.write_text(f'<?xml version="1.0"?><!DOCTYPE opml [{laughs}]>{outline.format("&a9;")}')
    r = aggregator("opml", "import", str(src), config=config)
    assert r.returncode == 1 and f"error: {src}: declares XML entities" in r.stderr
    assert config.read_text("utf-8") == BASE_CONFIG


# --- writing: opml export and /topics.opml ------------------------------------------------------

#: what the W3C feed validator knows in an OPML head, and on an outline
VALIDATOR_HEAD = {"title", "dateCreated", "dateModified", "ownerName", "ownerEmail", "ownerId",
                  "expansionState", "vertScrollState", "windowTop", "windowLeft", "windowBottom",
                  "windowRight"}  # fmt: skip
VALIDATOR_OUTLINE = {"category", "created", "description", "htmlUrl", "isBreakpoint", "isComment",
                     "language", "text", "title", "type", "url", "version", "xmlUrl"}  # fmt: skip


def assert_validator_clean(data: bytes) -> ElementTree.Element:
    """The checks the W3C feed validator makes of an OPML file (its opml.py)."""
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">\n')
    assert data.endswith(b"</opml>\n")
    root = ElementTree.fromstring(data)
    assert root.tag == "opml" and root.get("version") in ("1.0", "1.1", "2.0")
    head, body = root.find("head"), root.find("body")
    assert head is not None and body is not None
    assert {child.tag for child in head} <= VALIDATOR_HEAD
    outlines = list(body.iter("outline"))
    assert outlines
    for outline in outlines:
        assert set(outline.attrib) <= VALIDATOR_OUTLINE
        assert outline.get("text")
        assert outline.get("type") == "rss" and outline.get("xmlUrl") and outline.get("title")
    # indented: one outline per line
    assert len([line for line in data.splitlines() if b"<outline " in line]) == len(outlines)
    return root


def test_opml_export_is_indented_valid_and_round_trips(tmp_path: Path) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text(
        toml_config(
            [
                {"name": "dawn", "url": "https://www.dawn.com/feeds/home", "title": "Dawn & Co"},
                {"name": "tass", "url": "https://tass.com/rss/v2.xml?a=1&b=2"},
            ]
        ),
        encoding="utf-8",
    )
    r = aggregator("opml", "export", config=config)
    assert r.returncode == 0, r.stderr
    data = r.stdout.encode("utf-8")
    assert b"<docs>" not in data
    root = assert_validator_clean(data)
    assert [o.get("xmlUrl") for o in root.iter("outline")] == [
        "https://www.dawn.com/feeds/home",
        "https://tass.com/rss/v2.xml?a=1&b=2",
    ]
    assert [o.get("title") for o in root.iter("outline")] == ["Dawn & Co", "tass"]
    # and back in: nothing new
    exported = tmp_path / "out.opml"
    exported.write_bytes(data)
    again = aggregator("opml", "import", str(exported), config=config)
    assert again.returncode == 0 and "0 feeds added" in again.stdout
    assert "2 already there" in again.stdout


def test_topics_opml_uses_the_same_writer() -> None:
    topics = [
        TopicSummary(slug="pak-russia", title="Pakistan–Russia", query="pakistan AND russia",
                     entries=3, newest=None),
        TopicSummary(slug="all", title="Everything", query=None, entries=1, newest=None),
    ]  # fmt: skip
    data = render.topics_opml(topics, "https://news.example")
    assert b"<docs>" not in data
    root = assert_validator_clean(data)
    assert [o.get("xmlUrl") for o in root.iter("outline")] == [
        "https://news.example/topics/pak-russia.atom",
        "https://news.example/topics/all.atom",
    ]
    written = opml.write(
        "Topic feeds",
        [
            {"text": o.get("text"), "title": o.get("title"), "description": o.get("description"),
             "xmlUrl": o.get("xmlUrl"), "htmlUrl": o.get("htmlUrl")}
            for o in root.iter("outline")
        ],
    )  # fmt: skip
    assert written == data


# --- through the product: import, poll, publish ---------------------------------------------------

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Вести</title><link>http://vesti.example/</link>
<description>d</description>
<item><title>Moscow and Islamabad sign a gas deal</title><link>http://vesti.example/1</link>
<guid>http://vesti.example/1</guid><pubDate>Mon, 05 Jan 2026 10:00:00 GMT</pubDate>
<description>Pipeline.</description></item>
</channel></rss>"""


def test_imported_feeds_are_polled_and_published(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.add("/vesti.xml", RSS.encode())
        config = tmp_path / "aggregator.toml"
        config.write_text(
            toml_config([], [{"slug": "all", "title": "Everything"}]), encoding="utf-8"
        )
        src = tmp_path / "subs.opml"
        src.write_text(
            '<?xml version="1.0" encoding="UTF-8"?><opml version="1.0"><head/><body>'
            '<outline text="Новости"><outline text="Вести & Co" type="rss" '
            f'xmlUrl="{server.url("/vesti.xml")}"/></outline></body></opml>',
            encoding="utf-8",
        )
        r = aggregator("opml", "import", str(src), config=config)
        assert r.returncode == 0, r.stderr
        assert "malformed XML" in r.stderr  # the raw "&"
        assert r.stdout.startswith("added 127-0-0-1: ")
        polled = aggregator("poll", config=config)
        assert polled.returncode == 0, polled.stderr
        assert "127-0-0-1" in polled.stdout and "new=1" in polled.stdout
        for fmt in ("atom", "rss", "json"):
            out = aggregator("export", "all", "--format", fmt, config=config)
            assert out.returncode == 0, out.stderr
            assert "Moscow and Islamabad sign a gas deal" in out.stdout
