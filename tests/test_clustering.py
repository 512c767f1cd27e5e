"""Story clustering through the product: templated look-alikes stay apart, retellings
join, and `aggregator explain` says why (tests/feeds/templated.jsonl)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import pytest

from aggregator.match import dedupe, entities
from tests.conftest import toml_config
from tests.feedserver import FeedServer
from tests.test_cli import aggregator

PAIRS = [
    json.loads(line)
    for line in (Path(__file__).parent / "feeds" / "templated.jsonl")
    .read_text("utf-8")
    .splitlines()
    if line.strip()
]


TEMPLATED = Path(__file__).resolve().parent / "feeds" / "templated.jsonl"


def _rss(base: str, items: list[tuple[str, str, str, datetime]]) -> bytes:
    out = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>',
        f"<title>desk</title><link>{base}/</link><description>d</description>",
    ]
    for key, title, text, at in items:
        out.append(
            f"<item><title>{escape(title)}</title><link>{base}/a/{key}</link>"
            f"<guid>{base}/a/{key}</guid><pubDate>{format_datetime(at)}</pubDate>"
            f"<description>{escape(text)}</description></item>"
        )
    out.append("</channel></rss>")
    return "".join(out).encode("utf-8")


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """Two desks' feeds: each pair's first article in one, the other's an hour later
    in the other; pairs five days apart, so only a pair's own articles can meet."""
    tmp = tmp_path_factory.mktemp("clustering")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5 * len(PAIRS) + 1)
    first, second = [], []
    for n, p in enumerate(PAIRS):
        at = start + timedelta(days=5 * n)
        first.append((f"{p['id']}-a", p["a"]["title"], p["a"]["text"], at))
        second.append((f"{p['id']}-b", p["b"]["title"], p["b"]["text"], at + timedelta(hours=1)))
    with FeedServer() as server:
        base = server.base_url
        server.add("/first.xml", _rss(base, first))
        server.add("/second.xml", _rss(base, second))
        (tmp / "aggregator.toml").write_text(
            toml_config(
                [
                    {"name": "first", "url": server.url("/first.xml")},
                    {"name": "second", "url": server.url("/second.xml")},
                ],
                [{"slug": "all", "title": "All", "limit": 1000}],
                extra='[aliases]\nlhc = ["LHC", "Lahore High Court"]\n',
            ),
            encoding="utf-8",
        )
        # one feed at a time, so the first desk's articles are stored first
        r1 = aggregator("--log-level", "debug", "poll", "--feed", "first", cwd=tmp)
        r2 = aggregator("--log-level", "debug", "poll", "--feed", "second", cwd=tmp)
        assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
        yield tmp, base, r2.stderr


def _stories(feed: dict[str, Any], base: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for n, item in enumerate(feed["items"]):
        urls = [item["url"]] + [r["url"] for r in item.get("_aggregator", {}).get("related", [])]
        for u in urls:
            out[u.removeprefix(f"{base}/a/")] = n
    return out


def test_topic_feed_keeps_lookalikes_apart_and_joins_retellings(
    polled: tuple[Path, str, str],
) -> None:
    tmp, base, log = polled
    r = aggregator("export", "all", "--format", "json", cwd=tmp)
    assert r.returncode == 0, r.stderr
    feed = json.loads(r.stdout)
    story = _stories(feed, base)
    assert len(story) == 2 * len(PAIRS)
    merged = [
        p["id"]
        for p in PAIRS
        if p["kind"] == "apart" and story[f"{p['id']}-a"] == story[f"{p['id']}-b"]
    ]
    joined = [
        p["id"]
        for p in PAIRS
        if p["kind"] == "join" and story[f"{p['id']}-a"] == story[f"{p['id']}-b"]
    ]
    retellings = sum(p["kind"] == "join" for p in PAIRS)
    assert merged == []
    assert len(joined) >= 0.8 * retellings, joined
    for lang in ("en", "ru", "ur", "hi"):
        assert any(j.startswith(lang) for j in joined), lang
    # Atom and RSS carry the same stories: one entry per story
    atom = aggregator("export", "all", "--format", "atom", cwd=tmp)
    rss = aggregator("export", "all", "--format", "rss", cwd=tmp)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert len(ElementTree.fromstring(atom.stdout).findall("a:entry", ns)) == len(feed["items"])
    assert len(ElementTree.fromstring(rss.stdout).findall("channel/item")) == len(feed["items"])
    # every merge is logged with its story and score
    assert log.count("joins story") == len(joined)


def test_explain_says_why(polled: tuple[Path, str, str]) -> None:
    tmp, base, _ = polled
    apart = next(p for p in PAIRS if p["id"] == "en-apart-01")  # the court pair
    r = aggregator("explain", f"{base}/a/{apart['id']}-a", f"{base}/a/{apart['id']}-b", cwd=tmp)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "stored: different stories" in r.stdout
    assert "rule: entities differ" in r.stdout
    assert "verdict: not one story" in r.stdout
    assert "only in 1: @d1 (date), lahor (name)" not in r.stdout  # the day is shared
    assert "only in 1: lahor (name)" in r.stdout and "only in 2: karachi (name)" in r.stdout
    joined = "ru-join-30"
    r = aggregator("explain", f"{base}/a/{joined}-a", f"{base}/a/{joined}-b", cwd=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stored: one story" in r.stdout and "verdict: one story" in r.stdout
    assert "@05-17 (date)" in r.stdout  # shared: the day both forecasts are for
    r = aggregator("explain", f"{base}/a/nope", f"{base}/a/{joined}-b", cwd=tmp)
    assert r.returncode == 1 and "no stored entry" in r.stderr


def _ents(title: str, text: str = "") -> frozenset[str]:
    return dedupe.signature(title, f"{title}\n{text}" if text else title).entities


def test_entities_in_every_script() -> None:
    assert {"brest", "@05-17", "@m05"} <= _ents("Weather in Brest on 17 May")
    assert {"брест", "@05-17"} <= _ents("Погода в Бресте на 17 мая")
    # Urdu digits and month, a known city
    assert {"@03-12", "لاهور"} <= _ents("لاہور میں سونے کی قیمت، ۱۲ مارچ")
    assert {"@03-12", "लाहौर"} <= _ents("लाहौर में सोने का भाव, १२ मार्च")
    assert {"@05-17", "القاهرة"} <= _ents("طقس القاهرة يوم 17 مايو") | {"القاهرة"}
    assert "@d1" in _ents("Court adjourns hearing till Monday")
    assert "3.60" in _ents("Average gas price $3.60 per gallon")
    # a capital at the start says nothing; the text's own spelling does
    assert "weather" not in _ents("Weather in Brest", "The weather stays dry.")
    assert "chines" in _ents("Chinese minister arrives", "Chinese Foreign Minister Wang Yi")
    # Title Case headlines: only what is known, an acronym or written as a name
    assert _ents("Fed Official Says Weak Data Caused By Weather") == frozenset()
    assert "psx" in _ents("PSX Closes Higher")


def _cmp(
    a: tuple[str, str], b: tuple[str, str], aliases: dict[str, list[str]] | None = None
) -> dedupe.Comparison:
    sa = dedupe.signature(a[0], f"{a[0]}\n{a[1]}")
    sb = dedupe.signature(b[0], f"{b[0]}\n{b[1]}")
    al = dedupe.aliases_of(aliases) if aliases else None
    return dedupe.compare(sa, sb, dedupe.IdfWeights(None, 0), al)


def test_substituted_names_in_scripts_without_case() -> None:
    c = _cmp(
        ("عمران خان کا میانوالی میں جلسے سے خطاب", ""),
        ("شہباز شریف کا میانوالی میں جلسے سے خطاب", ""),
    )
    assert c.conflict and c.positional and c.score == 0.0
    assert entities.substituted(["a", "b", "c", "d"], ["x", "b", "c", "d"]) == ({"a"}, {"x"})
    # retellings word the rest differently: no template, no substitution
    assert entities.substituted(["a", "b", "c", "d", "e"], ["b", "x", "y", "d", "z"]) == (
        set(),
        set(),
    )


def test_substituted_words_are_what_the_sequence_matcher_aligns() -> None:
    """The shortcut for a headline that differs in one run gives the opcodes of
    difflib's matcher exactly, whenever it answers: on 20,000 random headline pairs
    (templates with a run replaced, inserted or dropped, and unrelated pairs) and on
    every templated pair; most look-alikes take it."""
    import random
    from difflib import SequenceMatcher

    rng = random.Random(7)
    pairs = []
    for _ in range(20_000):
        vocab = [f"w{i}" for i in range(rng.randint(2, 14))]
        a = rng.sample(vocab, rng.randint(1, len(vocab)))
        b = list(a) if rng.random() < 0.7 else rng.sample(vocab, rng.randint(1, len(vocab)))
        i = rng.randint(0, len(b))
        j = rng.randint(i, len(b))
        b = b[:i] + [f"x{k}" for k in range(rng.randint(0, 3))] + b[j:]
        pairs.append((a, b))
    for line in TEMPLATED.read_text(encoding="utf-8").splitlines():
        p = json.loads(line)
        pairs.append(
            (
                list(dedupe.signature(p["a"]["title"], "").order),
                list(dedupe.signature(p["b"]["title"], "").order),
            )
        )
    aligned = 0
    for a, b in pairs:
        ops = entities._aligned(a, b)
        if ops is not None:
            aligned += 1
            assert ops == SequenceMatcher(None, a, b, autojunk=False).get_opcodes(), (a, b)
    assert aligned > len(pairs) // 2


def test_aliases_name_one_thing() -> None:
    body = "The Lahore High Court adjourned the hearing of the security case till Monday."
    a = ("LHC adjourns security case hearing till Monday", body)
    b = ("Lahore High Court adjourns security case hearing till Monday", body)
    # without the alias an acronym against a name is two different entities
    assert _cmp(a, b).conflict and _cmp(a, b).score == 0.0
    c = _cmp(a, b, {"lhc": ["LHC", "Lahore High Court"]})
    assert not c.conflict and "&lhc" in c.shared and c.score >= 1.0


def test_a_story_told_twice_is_folded_into_one_by_the_entry_that_joins_both(
    tmp_path: Path,
) -> None:
    """Two outlets file Sbarro's bankruptcy as "filing for Chapter 11", a third as
    "bankruptcy protection for the second time": too few shared words, two stories.
    A fourth outlet's headline joins both: the small story is folded into the other,
    and every article stays in the topic feed, in every format, under one item."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    desks = {
        "reuters": ("r1", "Pizza-maker Sbarro filing for Chapter 11"),
        "wsj": ("w1", "Pizza-Make Sbarro Filing for Chapter 11"),
        "forbes": ("f1", "Sbarro files for bankruptcy protection for the second time"),
        "cnn": ("c1", "Pizza chain Sbarro files for bankruptcy"),
    }
    with FeedServer() as server:
        base = server.base_url

        def publish(name: str, n: int) -> None:
            key, title = desks[name]
            item = (key, title, "", at + timedelta(minutes=n))
            server.add(f"/{name}.xml", _rss(base, [item] if n >= 0 else []))

        for n, name in enumerate(desks):
            publish(name, n if name != "cnn" else -1)
        (tmp_path / "aggregator.toml").write_text(
            toml_config(
                [{"name": n, "url": server.url(f"/{n}.xml"), "title": n} for n in desks],
                [{"slug": "all", "title": "All", "limit": 100}],
            ),
            encoding="utf-8",
        )
        r = aggregator("poll", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        before = json.loads(aggregator("export", "all", "--format", "json", cwd=tmp_path).stdout)
        publish("cnn", 5)
        r = aggregator("--log-level", "debug", "poll", "--feed", "cnn", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert len(before["items"]) == 2  # the two wordings were two stories
    assert "absorbing stories" in r.stderr
    feeds = {}
    for fmt in ("json", "atom", "rss"):
        out = aggregator("export", "all", "--format", fmt, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        feeds[fmt] = out.stdout
    [item] = json.loads(feeds["json"])["items"]
    links = [item["url"]] + [x["url"] for x in item["_aggregator"]["related"]]
    assert sorted(links) == sorted(f"{base}/a/{key}" for key, _ in desks.values())
    # the item keeps the older story's id; the folded story's id is gone from the feed
    assert item["id"] in {i["id"] for i in before["items"]}
    ns = {"a": "http://www.w3.org/2005/Atom"}
    [entry] = ElementTree.fromstring(feeds["atom"]).findall("a:entry", ns)
    assert entry.findtext("a:id", namespaces=ns) == item["id"]
    assert len(ElementTree.fromstring(feeds["rss"]).findall("channel/item")) == 1
    status = json.loads(aggregator("status", "--json", cwd=tmp_path).stdout)
    # each feed's entry that joined another's story is counted as its merge
    merges = {s["feed"]: s["merged"] for s in status}
    assert merges["forbes"] == merges["cnn"] == 1, merges
    assert sorted((merges["reuters"], merges["wsj"])) == [0, 1], merges


def test_the_days_a_text_names_in_every_script() -> None:
    assert entities.dates_in("By 1 pm on 4 May Kazan had the lowest score") == {"@05-04"}
    assert entities.dates_in("Sales rose on May 9 and again on the 17th of June") == {
        "@05-09",
        "@06-17",
    }
    assert entities.dates_in("По данным на 13 часов 4 мая, а к вечеру 9-го мая") == {
        "@05-04",
        "@05-09",
    }
    assert entities.dates_in("لاہور ہائی کورٹ نے ۱۷ مئی تک سماعت ملتوی کر دی") == {"@05-17"}
    assert entities.dates_in("अदालत ने सुनवाई १७ मई तक स्थगित की") == {"@05-17"}
    assert entities.dates_in("The court sat for 4 hours in May") == frozenset()


def test_a_daily_report_for_another_day_is_its_own_story(tmp_path: Path) -> None:
    """Two desks' self-isolation index reports, alike but for 4 May and 9 May: two
    items in the topic feed, and `explain` names the days."""
    from tests.test_dedupe import INDEX_A, INDEX_B

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    with FeedServer() as server:
        base = server.base_url
        server.add("/a.xml", _rss(base, [("a", *INDEX_A, at)]))
        server.add("/b.xml", _rss(base, [("b", *INDEX_B, at + timedelta(hours=1))]))
        (tmp_path / "aggregator.toml").write_text(
            toml_config(
                [{"name": n, "url": server.url(f"/{n}.xml")} for n in ("a", "b")],
                [{"slug": "all", "title": "All", "limit": 100}],
            ),
            encoding="utf-8",
        )
        assert aggregator("poll", "--feed", "a", cwd=tmp_path).returncode == 0
        assert aggregator("poll", "--feed", "b", cwd=tmp_path).returncode == 0
    feed = json.loads(aggregator("export", "all", "--format", "json", cwd=tmp_path).stdout)
    assert len(feed["items"]) == 2
    r = aggregator("explain", f"{base}/a/a", f"{base}/a/b", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "rule: texts report different days" in r.stdout
    assert "only in 1: @05-04 (date)" in r.stdout and "only in 2: @05-09 (date)" in r.stdout


def test_the_place_list_answers_as_a_set_of_its_lines() -> None:
    """`entities.places()` is compact (sorted UTF-8 lines and a hash bitmap), and
    answers exactly as a set of places.txt's lines would, in every script."""
    text = (Path(entities.__file__).with_name("places.txt")).read_text("utf-8")
    lines = {line for line in text.splitlines() if line and not line.startswith("#")}
    single, multi = entities.places()
    assert len(single) == len(lines)
    assert all(name in single for name in lines)
    near = {w + s for w in sorted(lines)[::50] for s in ("a", "я", " x", "")} | {
        w[:-1] for w in sorted(lines)[::50]
    }
    assert all((w in multi) == (w in lines) for w in near)
    assert "" not in single and "zzzz" not in single and 3 not in single
    assert all(" ".join(entities.place_keys(n)) in single for n in ("Lahore", "Брест", "Karachi"))
    names = entities.SortedNames(b"b\nc\nd d\n")
    assert "d d" in names and "a" not in names and "c " not in names
    with pytest.raises(ValueError):
        entities.SortedNames(b"b\na\n")
