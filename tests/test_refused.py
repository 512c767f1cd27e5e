"""An outlet that refuses feed readers (403): we say so, stay honest, and back off."""

from __future__ import annotations

import json
from pathlib import Path

from aggregator.ingest.http import fetch
from tests.conftest import toml_config
from tests.feedserver import FeedServer, status
from tests.test_cli import RSS, aggregator


def test_a_refusing_outlet_is_reported_and_backs_off(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.add("/dawn.xml", RSS.encode())
        server.route("/arab.xml", status(403))
        (tmp_path / "aggregator.toml").write_text(
            toml_config(
                [("dawn", server.url("/dawn.xml")), ("arab-news", server.url("/arab.xml"))],
                [{"slug": "all", "title": "All"}],
            ),
            encoding="utf-8",
        )
        poll = aggregator("poll", cwd=tmp_path)
        assert poll.returncode == 0, poll.stderr  # one refusing outlet fails no command
        [arab_request] = server.requests_for("/arab.xml")

    assert arab_request.headers["user-agent"] == fetch.USER_AGENT

    table = aggregator("status", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if line.startswith("arab-news ")]
    assert "failing" in row and "403" in row and "refused by the outlet" in row
    wide = aggregator("status", "--wide", cwd=tmp_path).stdout  # the whole error and why
    [row] = [line for line in wide.splitlines() if line.startswith("arab-news ")]
    assert "refused by the outlet (403)" in row and "backoff 1 failure" in row

    rows = {r["feed"]: r for r in json.loads(aggregator("status", "--json", cwd=tmp_path).stdout)}
    arab = rows["arab-news"]
    assert arab["status"] == 403 and arab["failures"] == 1 and not arab["gone"]
    assert arab["next_reason"] == "backoff"
    assert arab["last_error"].startswith("refused by the outlet (403); ")
    assert "open the URL in a browser" in arab["last_error"]
    assert rows["dawn"]["status"] == 200 and rows["dawn"]["last_error"] is None

    # the working outlet still publishes, in every format
    for fmt in ("atom", "rss", "json"):
        out = aggregator("export", "all", "--format", fmt, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "Pakistan and Russia sign energy deal" in out.stdout
