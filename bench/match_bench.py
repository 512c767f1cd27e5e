"""Measure topic matching speed on the real corpus in ../shared/corpus/real.

    .venv/bin/python bench/match_bench.py             # 7 runs, median
    .venv/bin/python bench/match_bench.py --runs 15 --repeat 4

Each entry of every feed file (parsed with feedparser, HTML stripped) is indexed
once with `topics.document` and tested against 20 compiled topics, as the poller
does. Figures are entries per second (index + 20 topics), median over the runs:
"cold" clears the stem cache before each run (a fresh process), "warm" keeps it (a
daemon that has seen the vocabulary before). Then the same comparison for 20
English-only queries against 20 multilingual alias queries, and the per-language
counts of the Pakistan-Russia topic.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator.match import topics  # noqa: E402
from aggregator.text import html_to_text

REAL = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"
SEED = REAL.parent / "seed" / "pak-russia-story.xml"

ALIASES = {
    "pakistan": ["Pakistan", "Pakistani", "Pak", "Islamabad", "پاکستان", "پاکستانی"]
    + ["اسلام آباد", "Пакистан", "пакистанский", "Исламабад"],
    "russia": ["Russia", "Russian", "Moscow", "Putin", "Kremlin", "روس", "روسی", "ماسکو"]
    + ["پوتن", "Россия", "российский", "Москва", "Путин", "Кремль"],
    "usa": ["United States", "US", "USA", "Washington", "Trump", "امریکہ", "امریکی"]
    + ["США", "Америка", "американский", "Вашингтон"],
    "india": ["India", "Indian", "Delhi", "Modi", "انڈیا", "بھارت", "Индия", "индийский"],
    "china": ["China", "Chinese", "Beijing", "Xi Jinping", "چین", "چینی", "Китай"],
    "afghanistan": ["Afghanistan", "Afghan", "Kabul", "Taliban", "افغانستان", "افغان"]
    + ["طالبان", "Афганистан", "афганский", "талибы"],
    "police": ["police", "arrest", "court", "پولیس", "عدالت", "полиция", "УМВД", "суд"],
    "money": ["aid", "billion", "dollar", "امداد", "ڈالر", "рубль", "субсидия", "бюджет"],
    "defence": ["army", "military", "defence", "فوج", "فوجی", "دفاع", "армия", "военный"],
    "energy": ["gas", "pipeline", "oil", "LNG", "گیس", "پائپ لائن", "газ", "газопровод"],
}

MULTILINGUAL = [
    "@pakistan AND @russia",
    "@pakistan",
    "@russia",
    "@usa",
    "@india",
    "@china",
    "@afghanistan",
    "@pakistan AND @usa",
    "@pakistan AND (@india OR @afghanistan)",
    "@russia NOT @usa",
    "@police",
    "@money AND (@pakistan OR @usa)",
    "@defence",
    "@energy",
    "@energy AND @russia",
    "@china OR @india",
    "(@usa OR @russia) AND @defence",
    "@afghanistan NOT @police",
    "@money",
    "@pakistan AND @defence",
]

ENGLISH = [
    "(pakistan OR islamabad) AND (russia OR moscow OR putin OR kremlin)",
    "pakistan OR pakistani",
    "russia OR russian OR moscow",
    '"united states" OR washington OR trump',
    "india OR indian OR delhi",
    "china OR chinese OR beijing",
    "afghanistan OR kabul OR taliban",
    "pakistan AND (washington OR trump)",
    "apple OR iphone OR mac*",
    "security NOT football",
    "police OR arrest OR court",
    "climate OR warming OR weather",
    '"open source" OR linux OR github',
    "election* OR vote OR ballot",
    "football OR soccer OR cricket",
    "gas OR pipeline OR oil",
    "health OR wellness OR doctor",
    "review AND (camera OR laptop OR phone)",
    "science OR research OR biology",
    "NOT (sport OR game)",
]


Item = tuple[str, str, str | None, str]  # title, text, language, file


def load() -> list[Item]:
    items: list[Item] = []
    for path in sorted([*REAL.glob("*.xml"), SEED]):
        parsed = feedparser.parse(path.read_bytes())
        language = parsed.feed.get("language")
        for e in parsed.entries:
            parts = [e.get("summary", "")]
            parts += [c.value for c in e.get("content", [])]
            parts.append(e.get("yandex_full-text", ""))
            items.append((e.get("title", ""), html_to_text(" ".join(parts)), language, path.name))
    return items


def run(items: Sequence[Item], queries: Sequence[topics.Query], cold: bool) -> float:
    """Index every item and test it against every query; seconds taken."""
    if cold:
        topics.clear_cache()
    start = time.perf_counter()
    for title, text, language, _ in items:
        doc = topics.document(title, text, language)
        for q in queries:
            q.matches(doc)
    return time.perf_counter() - start


def run_matching(docs: Sequence[topics.Document], queries: Sequence[topics.Query]) -> float:
    """Test prebuilt documents against every query; seconds taken."""
    start = time.perf_counter()
    for doc in docs:
        for q in queries:
            q.matches(doc)
    return time.perf_counter() - start


def rate(items: Sequence[Item], queries: Sequence[topics.Query], runs: int, cold: bool) -> float:
    return len(items) / statistics.median(run(items, queries, cold) for _ in range(runs))


def script_of(title: str, text: str) -> str:
    counts = Counter(topics._script(w) for w in topics.words(topics.fold(f"{title} {text}")))
    counts.pop("other", None)
    return counts.most_common(1)[0][0] if counts else "other"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="runs per figure (median)")
    ap.add_argument("--repeat", type=int, default=1, help="repeat the corpus N times per run")
    args = ap.parse_args(argv)
    if not REAL.is_dir():
        print(f"skipped: {REAL} is absent (the shared corpus lives beside the checkout)")
        return 0

    items = load() * args.repeat
    words = sum(len(topics.words(topics.fold(f"{t} {x}"))) for t, x, _, _ in items)
    by_script = Counter(script_of(t, x) for t, x, _, _ in items)
    multi = [topics.compile(q, ALIASES) for q in MULTILINGUAL]
    english = [topics.compile(q) for q in ENGLISH]
    print(f"corpus: {len(items)} entries, {words} words, main script per entry: {dict(by_script)}")
    print(f"python {sys.version.split()[0]}, median of {args.runs} runs, entries/second")
    print()
    print(f"{'':34}{'cold':>10}{'warm':>10}")
    index_only: list[topics.Query] = []
    for name, queries in [
        ("index only (document)", index_only),
        ("20 English-only topics", english),
        ("20 multilingual alias topics", multi),
    ]:
        cold = rate(items, queries, args.runs, cold=True)
        warm = rate(items, queries, args.runs, cold=False)
        print(f"{name:34}{cold:>10.0f}{warm:>10.0f}")

    docs = [topics.document(t, x, lang) for t, x, lang, _ in items]
    print()
    print("matching alone, documents prebuilt (entries/second against 20 topics):")
    for name, queries in [("English-only", english), ("multilingual", multi)]:
        seconds = statistics.median(run_matching(docs, queries) for _ in range(args.runs))
        per_test = seconds / (len(docs) * len(queries)) * 1e6
        print(
            f"  {name:14} {len(docs) / seconds:10.0f}/s   ({per_test:.2f} µs per entry and topic)"
        )

    # English-only entries vs the rest, with the English topics: a query in one
    # script pays nothing for entries written in others.
    latin = [it for it in items if script_of(it[0], it[1]) == "latin"]
    other = [it for it in items if script_of(it[0], it[1]) != "latin"]
    print()
    for name, subset in [("Latin-script entries", latin), ("other-script entries", other)]:
        if subset:
            r_en = rate(subset, english, args.runs, cold=False)
            r_ml = rate(subset, multi, args.runs, cold=False)
            print(f"{name:22} ({len(subset):5}): English {r_en:8.0f}/s  multilingual {r_ml:8.0f}/s")

    pak_russia = topics.compile("@pakistan AND @russia", ALIASES)
    pak = topics.compile("@pakistan", ALIASES)
    rus = topics.compile("@russia", ALIASES)
    print()
    print("matches per file (files with any): @pakistan / @russia / @pakistan AND @russia")
    per_file: dict[str, list[int]] = {}
    for title, text, language, name in items:
        doc = topics.document(title, text, language)
        row = per_file.setdefault(name, [0, 0, 0])
        for i, q in enumerate((pak, rus, pak_russia)):
            row[i] += q.matches(doc) is not None
    for name, row in sorted(per_file.items()):
        if any(row):
            print(f"  {name:45} {row[0]:4} {row[1]:4} {row[2]:4}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
