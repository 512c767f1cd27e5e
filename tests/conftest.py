"""Shared fixtures: configs written to a temporary folder, the real feeds in tests/feeds/real."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from aggregator import config, models

#: trimmed copies of real feeds, each beside its `.expected.json` (see tests/feeds/trim.py)
CORPUS = Path(__file__).resolve().parent / "feeds" / "real"


@pytest.fixture
def corpus_dir() -> Path:
    """The real feeds, shipped with the tests so a fresh clone runs them."""
    return CORPUS


def feed_files(folder: Path) -> list[str]:
    """The feed files in `folder`, without the expected results and SOURCES.tsv beside them."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix in (".xml", ".json") and not p.name.endswith(".expected.json")
    )


def entry(title: str, body: str = "", feed: str = "new", *, at: datetime) -> models.Entry:
    """A normalized entry as `normalize` makes it: the text starts with the title."""
    text = f"{title}\n{body}" if body else title
    return models.Entry(
        feed=feed,
        key=title,
        guid=None,
        link=None,
        canonical_link=None,
        title=title,
        summary_html="",
        content_html="",
        text=text,
        author=None,
        published=at,
        content_hash=title,
    )


def toml_config(
    feeds: list[tuple[str, str]] | list[dict[str, object]],
    topics: list[dict[str, object]] | None = None,
    *,
    extra: str = "",
    polling: str = "",
    base_url: str = "http://127.0.0.1:8080",
) -> str:
    """A config file's text for these feeds and topics."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    # `polling` lines ("key = value") replace these defaults instead of repeating keys.
    poll_keys = {"timeout": '"5s"', "concurrency": "4"}
    for line in polling.splitlines():
        if "=" in line:
            key, val = line.split("=", 1)
            poll_keys[key.strip()] = val.strip()
    lines = [
        "[database]",
        'path = "aggregator.db"',
        "[server]",
        f'base_url = "{base_url}"',
        "[polling]",
        *(f"{k} = {v}" for k, v in poll_keys.items()),
        extra,
    ]
    for f in feeds:
        d = dict(f) if isinstance(f, dict) else {"name": f[0], "url": f[1]}
        lines.append("[[feeds]]")
        lines += [f"{k} = {value(v)}" for k, v in d.items()]
    for t in topics or []:
        lines.append("[[topics]]")
        lines += [f"{k} = {value(v)}" for k, v in t.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., config.Config]:
    """Write a config into tmp_path and load it (the database lands beside it)."""

    def make(*args: object, **kwargs: object) -> config.Config:
        path = tmp_path / "aggregator.toml"
        path.write_text(toml_config(*args, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
        return config.load(path)

    return make
