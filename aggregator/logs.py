"""How the process logs: text or JSON lines on stderr, and the fields of a poll's line.

A poll's log line is also data: `poll_fields` gives its fields as `extra=` keys, so
`--log-format json` writes them as JSON fields (`"feed": "dawn", "new": 3`) that a
log shipper can query, while the text format keeps the `feed=dawn new=3` message.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from aggregator.models import PollResult

#: the `event` field of a poll's log line
POLL_EVENT = "poll"
#: what every LogRecord has; anything else on a record came from `extra=`
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def poll_fields(r: PollResult) -> dict[str, Any]:
    """The fields of one poll's log line, for `log.info(..., extra=poll_fields(r))`."""
    fields: dict[str, Any] = {
        "event": POLL_EVENT,
        "feed": r.feed,
        "status": r.status,
        "http": r.http_status,
        "read": r.read,
        "new": r.new,
        "updated": r.updated,
        "unchanged": r.unchanged,
        "merged": r.merged,
        "skipped": sum(r.skipped.values()),
        "skipped_by_reason": dict(sorted(r.skipped.items())),
        "seconds": round(r.seconds, 3),
    }
    if r.error:
        fields["error"] = r.error
    if r.next_poll is not None:
        fields["next_poll"] = r.next_poll.isoformat()
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers; `extra=` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class NoPollLines(logging.Filter):
    """Drops poll lines: `aggregator poll` prints its own row per feed on stdout, and
    on one terminal the same feed would otherwise show twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "event", None) != POLL_EVENT


def same_terminal(out: Any = None, err: Any = None) -> bool:
    """True when stdout and stderr are one terminal (a person reading both at once)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if not (out.isatty() and err.isatty()):
            return False
        a, b = os.fstat(out.fileno()), os.fstat(err.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)
