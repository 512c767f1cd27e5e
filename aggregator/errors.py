"""The exception hierarchy: one root, and errors about one feed carry its name.

Errors about a single feed (fetch, parse) are caught by `poll` and recorded as
that feed's outcome; they never stop a poll of the other feeds.
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(AggregatorError):
    """The config file is unusable; the CLI exits 2 with this message."""

    def __init__(self, file: str, problem: str, key: str | None = None, line: int | None = None):
        self.file = file
        self.key = key
        self.line = line
        self.problem = problem
        where = file
        if line is not None:
            where += f":{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {problem}")


class QueryError(AggregatorError):
    """A topic query does not parse; `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int | None = None):
        self.message = message
        self.position = position
        at = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{at}")


class FeedError(AggregatorError):
    """Something went wrong with one feed; recorded as that feed's outcome."""

    def __init__(self, message: str, url: str | None = None):
        self.message = message
        self.url = url
        super().__init__(message)


class FetchError(FeedError):
    """The feed could not be fetched: network error, HTTP error, timeout, oversize body.

    `status` is the HTTP status when there was a response; `retry_after` is the raw
    Retry-After header (seconds or an HTTP date) for 429/503, interpreted by `schedule`.
    """

    def __init__(
        self,
        message: str,
        url: str | None = None,
        status: int | None = None,
        retry_after: str | None = None,
    ):
        self.status = status
        self.retry_after = retry_after
        super().__init__(message, url)


class ParseError(FeedError):
    """The body is not a feed we can read (and yielded no entries)."""


class StorageError(AggregatorError):
    """The database could not be opened or written (not about any one feed)."""
