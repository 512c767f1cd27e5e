"""Per-host politeness: at most `per_host` requests in flight to one host."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


def host_key(url: str) -> str:
    """`hostname:port` of a URL (default port by scheme), the unit of politeness."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    return f"{(parts.hostname or '').lower()}:{port}"


class HostLimiter:
    """At most `per_host` requests in flight to one host (hostname:port), across threads."""

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError(f"per_host must be at least 1, not {per_host}")
        self.per_host = per_host
        self._cond = threading.Condition()
        self._busy: dict[str, int] = {}

    @contextmanager
    def slot(self, url: str) -> Iterator[None]:
        """Hold one of the host's slots for the body of the `with`, waiting for one if needed."""
        key = host_key(url)
        with self._cond:
            while self._busy.get(key, 0) >= self.per_host:
                self._cond.wait()
            self._busy[key] = self._busy.get(key, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                left = self._busy[key] - 1
                if left:
                    self._busy[key] = left
                else:
                    del self._busy[key]
                self._cond.notify_all()

    def in_flight(self, url: str) -> int:
        """Requests now holding a slot for the URL's host."""
        with self._cond:
            return self._busy.get(host_key(url), 0)
