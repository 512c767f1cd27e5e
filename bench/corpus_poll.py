"""Cold and warm poll of the real corpus served on loopback: entries stored and seconds.

    .venv/bin/python bench/corpus_poll.py [--runs 5]

Each run starts from an empty database: one cold poll (every feed new), then one
warm poll (every feed answers 304). Prints the medians and each run's figures.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aggregator import config
from aggregator.ingest import pipeline as poll
from aggregator.storage import store  # noqa: E402
from tests.conftest import toml_config  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "real"


def one_run(server: FeedServer, files: list[str]) -> tuple[float, float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "aggregator.toml"
        feeds = [
            (
                re.sub(r"[^a-z0-9-]+", "-", f.lower().rsplit(".", 1)[0]).strip("-")[:60],
                server.url(f"/corpus/{f}"),
            )
            for f in files
        ]
        path.write_text(toml_config(feeds, polling="concurrency = 8\nper_host = 8"))
        cfg = config.load(path)
        db = store.Store(cfg.database.path)
        poll.sync(cfg, db)
        poller = poll.Poller(cfg)
        started = time.perf_counter()
        cold = list(poll.poll_many(poller, cfg.feeds))
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        warm = list(poll.poll_many(poller, cfg.feeds))
        warm_s = time.perf_counter() - started
        poller.close()
        entries = db.counts()["entries"]
        db.close()
        assert all(r.status in ("not_modified", "error") for r in warm)
        return cold_s, warm_s, entries, sum(r.status == "error" for r in cold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"the shared corpus is not here ({CORPUS})")
    files = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".xml", ".json"))
    with FeedServer() as server:
        server.serve_dir("/corpus", CORPUS)
        runs = [one_run(server, files) for _ in range(args.runs)]
    for i, (cold, warm, entries, errors) in enumerate(runs, 1):
        print(f"run {i}: cold {cold:.2f}s  warm {warm:.3f}s  entries {entries}  errors {errors}")
    print(
        f"{len(files)} feeds, {runs[0][2]} entries stored, {runs[0][3]} feeds recorded as errors; "
        f"median cold {statistics.median(r[0] for r in runs):.2f}s, "
        f"median warm (all 304) {statistics.median(r[1] for r in runs):.3f}s"
    )


if __name__ == "__main__":
    main()
