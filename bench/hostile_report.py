"""Print each hostile-feed attack with its outcome, wall time and peak memory.

Runs the attack table of tests/test_hostile.py: for every hostile path, one
`python -m aggregator poll` subprocess polls it beside two good feeds, and the
child's own peak RSS is its VmHWM. The first line is a poll of the good feeds
alone, the baseline the memory bound is measured against.

    .venv/bin/python bench/hostile_report.py [--only SUBSTRING]

Loopback only (a FeedServer on 127.0.0.1). Takes about two minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import test_hostile as th  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402


def main() -> int:
    """Run every attack once and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only attacks whose class or path contains this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FeedServer() as server:
        folder = Path(tmp)
        archive = folder / "archive.xml"
        archive.write_bytes(th.rss(th.ARCHIVE_ITEMS))
        hits: list[str] = []
        th.install(server, hits)
        base = th.run_poll(th.write_config(folder / "baseline", server, archive, []))
        print(
            f"baseline (good feeds only): {base.seconds:5.2f} s, peak RSS {base.peak_rss >> 20} MiB"
        )
        print(f"{'class':<18} {'path':<28} {'s':>6} {'MiB':>5} {'+MiB':>5}  outcome")
        worst_time = 0.0
        worst_extra = 0
        for n, attack in enumerate(th.attacks()):
            if args.only and args.only not in attack.kind and args.only not in attack.path:
                continue
            try:
                url = attack.url(server) if attack.url else server.url(attack.path)
            except BaseException as e:  # pytest.skip outside pytest
                print(f"{attack.kind:<18} {attack.path:<28} skipped: {e}")
                continue
            feed: dict[str, object] = {"name": "hostile", "url": url, **attack.options}
            path = th.write_config(
                folder / f"a{n}", server, archive, [feed], polling=attack.polling
            )
            run = th.run_poll(path, timeout=300)
            status = th.statuses(folder / f"a{n}" / "aggregator.db")
            hostile = status["hostile"]
            good = status["good"].entries == 3 and status["archive"].entries == 2
            outcome = (
                f"error: {hostile.last_error}"
                if hostile.last_error
                else f"ok: {hostile.entries} entries stored"
            )
            if not good:
                outcome += "  [GOOD FEEDS NOT STORED]"
            extra = max(0, run.peak_rss - base.peak_rss)
            worst_time = max(worst_time, run.seconds)
            worst_extra = max(worst_extra, extra)
            print(
                f"{attack.kind:<18} {attack.path[:28]:<28} {run.seconds:6.2f} "
                f"{run.peak_rss >> 20:5d} {extra >> 20:5d}  {outcome[:110]}"
            )
        print(
            f"worst: {worst_time:.2f} s per poll, {worst_extra >> 20} MiB above baseline; "
            f"external references fetched: {len(hits)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
