"""How a rendered body is answered: one rule for its status and headers, and the
short WSGI path in front of Flask that serves topic feeds by that rule.

`answer()` decides the status (200, 304, or werkzeug's 412 for a failed If-Match)
and the header list of a `Rendered` for one request. The Flask routes (topic feeds
and topic pages, through `web._conditional`) and `TopicFeeds` both call it, so the
two can only differ in who writes the bytes.

Why a path in front of Flask at all: feed readers poll `/topics/<slug>.<fmt>` all
day, and through Flask each request costs a request context, URL routing, a
Response object and its header handling, several times what the answer itself
costs. Conditional GETs are the most common request, and through Flask alone a 304
came out slower than a 200 from the old flat layout's path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from werkzeug.http import http_date, is_resource_modified, parse_etags

from aggregator.config import Config
from aggregator.publish import cache as publish
from aggregator.publish import metrics
from aggregator.storage import store

Headers = list[tuple[str, str]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: the topic feed route, also its label in the request metrics
TOPIC_ROUTE = "/topics/<slug>.<fmt>"
#: the header every response carries (the Flask app sets it in `after_request`)
NOSNIFF = ("X-Content-Type-Options", "nosniff")

_STATUS_LINES = {200: "200 OK", 304: "304 NOT MODIFIED", 412: "412 PRECONDITION FAILED"}


@functools.lru_cache(maxsize=1024)
def _header_sets(
    etag: str, last_modified: datetime | None, content_type: str, length: int, cache_control: str
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The headers of the full answer and of its 304 (which drops the body's own
    headers, RFC 9110 section 15.4.5), built once per rendered version."""
    full = [("Content-Type", content_type), ("Content-Length", str(length)), ("ETag", etag)]
    if last_modified is not None:
        full.append(("Last-Modified", http_date(last_modified)))
    common = [("Cache-Control", cache_control), NOSNIFF]
    return tuple(full + common), (("ETag", etag), *common)


def answer(
    r: publish.Rendered, cache_control: str, environ: dict[str, Any]
) -> tuple[int, Headers, bool]:
    """Status, headers and whether the body goes with them, for a GET or HEAD of `r`.

    The request's conditions are read as werkzeug's `make_conditional` reads them:
    If-None-Match (weak comparison, `*`) over If-Modified-Since, a failed If-Match
    answers 412 with the full response, and Range is ignored (a feed is served
    whole). A HEAD gets the GET's headers; its body is dropped by whoever writes it.
    """
    full, not_modified = _header_sets(
        r.etag, r.last_modified, r.content_type, len(r.body), cache_control
    )
    if is_resource_modified(environ, r.etag, last_modified=r.last_modified):
        return 200, list(full), True
    if parse_etags(environ.get("HTTP_IF_MATCH")):
        return 412, list(full), True
    return 304, list(not_modified), False


class TopicFeeds:
    """WSGI in front of Flask for exactly `GET`/`HEAD /topics/<slug>.<atom|rss|json>`
    of a configured topic, without a query string, answered from the cached bytes by
    `answer()`. Everything else, and any error, goes to Flask unchanged."""

    def __init__(
        self,
        config: Config,
        cache: publish.TopicCache,
        cache_control: str,
        flask_app: WSGIApp,
    ) -> None:
        self.flask_app = flask_app
        self._topics = {t.slug: t for t in config.topics}
        self._path = config.database.path
        self._cache = cache
        self._cache_control = cache_control
        self._count = {
            code: metrics.HTTP_REQUESTS.labels(TOPIC_ROUTE, str(code)) for code in _STATUS_LINES
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path: str = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        if (
            not path.startswith("/topics/")
            or (method != "GET" and method != "HEAD")
            or environ.get("QUERY_STRING")
        ):
            return self.flask_app(environ, start_response)
        slug, _, fmt = path[8:].rpartition(".")
        topic = self._topics.get(slug)
        if topic is None or fmt not in publish.FORMATS:
            return self.flask_app(environ, start_response)
        try:
            rendered = self._cache.get(store.for_thread(self._path), topic, fmt)
        except Exception:  # Flask's error handler logs it and answers 500
            return self.flask_app(environ, start_response)
        status, headers, with_body = answer(rendered, self._cache_control, environ)
        self._count[status].inc()
        start_response(_STATUS_LINES[status], headers)
        return [rendered.body] if with_body and method == "GET" else []
