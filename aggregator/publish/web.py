"""The HTTP server: topic feeds, the index page, OPML, health and metrics.

`create_app(config)` builds the Flask app around a config; every response body
comes from `publish`/`render` unchanged. Bad requests get a short 4xx, never a
traceback or a file from disk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from aggregator.config import Config
from aggregator.publish import cache as publish
from aggregator.publish import feedpath, metrics, pages, render
from aggregator.publish import status as feed_status
from aggregator.storage import store

#: feed readers revalidate with a conditional GET; a minute keeps the load low
CACHE_CONTROL = "public, max-age=60"
#: the topic feed route, also its label in the request metrics
TOPIC_ROUTE = feedpath.TOPIC_ROUTE


#: why /healthz says not ok, in its "reason"
NEVER_FETCHED = "no feed has been fetched successfully yet"
ALL_FAILING = "every feed is failing"
STALLED = "no feed has been fetched successfully for three polling intervals"

HTML = "text/html; charset=utf-8"


def _conditional(r: publish.Rendered, cache_control: str) -> Response:
    """A rendered body with its validators (ETag, Last-Modified), as a 304 when the
    request's conditions say the client has it: topic feeds and topic pages alike,
    by the rule the topic feed path in front of Flask uses too."""
    status, headers, with_body = feedpath.answer(r, cache_control, request.environ)
    return Response(r.body if with_body else b"", status=status, headers=headers)


def _html_page(resp: Response) -> Response:
    """The headers of every HTML page: its one CSP, no caching without revalidation."""
    resp.headers["Content-Security-Policy"] = pages.CSP
    resp.headers.setdefault("Cache-Control", "no-cache")
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def health(config: Config, db: store.Store, now: datetime) -> tuple[bool, dict[str, Any]]:
    """Whether polling works: some configured feed has been fetched successfully, not
    every one is failing now (a gone feed counts as failing), and some feed succeeded
    within three intervals. A config without feeds has nothing to fail."""
    statuses = db.feed_statuses()
    # the configured feeds' states, as `status` and /feeds judge them
    current = feed_status.feed_rows(config, statuses)
    interval = config.polling.interval or config.polling.max_interval
    last_success = max((s.last_success for s in statuses if s.last_success), default=None)
    last_poll = max((s.last_fetch for s in statuses if s.last_fetch), default=None)
    started = db.get_meta("daemon_started")
    since = last_success or (datetime.fromisoformat(started) if started else None)
    reason = None
    if current and not any(r.last_success for r in current):
        reason = NEVER_FETCHED
    elif current and all(r.state in (feed_status.FAILING, feed_status.GONE) for r in current):
        reason = ALL_FAILING
    elif statuses and since is not None and now - since > 3 * interval:
        reason = STALLED
    failing = [
        {"feed": s.name, "error": s.last_error, "failures": s.failures, "status": s.last_status}
        for s in statuses
        if s.failures and not s.gone
    ]
    body = {
        "ok": reason is None,
        "reason": reason,
        "last_poll": last_poll.isoformat() if last_poll else None,
        "last_success": last_success.isoformat() if last_success else None,
        "feeds": len(statuses),
        "feeds_failing": failing,
        "feeds_gone": [s.name for s in statuses if s.gone],
    }
    return reason is None, body


def create_app(config: Config, *, fast_path: bool = True) -> Flask:
    """Build the app; each request thread gets its own database connection. With
    `fast_path`, `feedpath.TopicFeeds` answers topic feeds before Flask does (the
    same answers: tests/test_feedpath.py compares the two)."""
    app = Flask(__name__)
    app.config["AGGREGATOR"] = config
    cache = publish.TopicCache(config)
    app.extensions["topic_cache"] = cache
    registry = CollectorRegistry()
    registry.register(
        metrics.StoreCollector(config, lambda: store.for_thread(config.database.path))
    )

    def db() -> store.Store:
        return store.for_thread(config.database.path)

    counters: dict[tuple[str, int], Any] = {}  # labels() takes a lock and builds a key

    @app.after_request
    def count(response: Response) -> Response:
        key = (request.url_rule.rule if request.url_rule else "unmatched", response.status_code)
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = metrics.HTTP_REQUESTS.labels(key[0], str(key[1]))
        counter.inc()
        response.headers.setdefault(*feedpath.NOSNIFF)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        resp = Response(
            f"{exc.code} {exc.name}\n", status=exc.code, content_type="text/plain; charset=utf-8"
        )
        if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> Response:
        app.logger.exception("request failed: %s", request.path)
        return Response("500 Internal Server Error\n", status=500, content_type="text/plain")

    @app.get("/")
    def index() -> Response:
        summaries = db().topic_summaries([(t.slug, t.title, t.query) for t in config.topics])
        statuses = db().feed_statuses()
        last_poll = max((s.last_fetch for s in statuses if s.last_fetch), default=None)
        titles = publish.feed_titles(config)
        headlines = {
            t.slug: [s.item for s in db().topic_story_page(t.slug, pages.HEADLINES, titles).stories]
            for t in config.topics
        }
        body = pages.index_page(
            summaries,
            config.server.base_url,
            last_poll,
            headlines=headlines,
            feeds=feed_status.feed_rows(config, statuses),
            now=datetime.now(UTC),
        )
        return _html_page(Response(body, content_type=HTML))

    @app.get("/favicon.ico")
    def favicon() -> Response:
        # Browsers ask for it on every visit; "no content" keeps their consoles clean.
        return Response(status=204, headers={"Cache-Control": "public, max-age=86400"})

    @app.get(TOPIC_ROUTE)
    def topic_feed(slug: str, fmt: str) -> Response:
        topic = config.topic(slug)
        if topic is None or fmt not in publish.FORMATS:
            abort(404)
        return _conditional(cache.get(db(), topic, fmt), CACHE_CONTROL)

    @app.get("/topics.opml")
    def topics_opml() -> Response:
        summaries = db().topic_summaries([(t.slug, t.title, t.query) for t in config.topics])
        body = render.topics_opml(summaries, config.server.base_url)
        resp = Response(body, content_type="text/x-opml; charset=utf-8")
        resp.add_etag()
        resp.headers["Cache-Control"] = CACHE_CONTROL
        resp.make_conditional(request)  # turns it into a 304 in place when it applies
        return resp

    # -- pages for people -------------------------------------------------------------

    @app.get("/topics/<slug>.html")
    def topic_page(slug: str) -> Response:
        topic = config.topic(slug)
        if topic is None:
            abort(404)
        before = request.args.get("before") or None
        try:
            page = db().topic_story_page(slug, pages.PAGE_SIZE, publish.feed_titles(config), before)
        except ValueError:
            abort(400)
        body = pages.topic_page(
            slug,
            topic.title,
            topic.query,
            config.server.base_url,
            page,
            before=before,
            now=datetime.now(UTC),
        )
        newest = max((s.item.updated for s in page.stories), default=None)
        rendered = publish.Rendered(body, publish.etag_of(body), newest, HTML)
        return _html_page(_conditional(rendered, "no-cache"))

    @app.get("/feeds")
    def feeds_page() -> Response:
        rows = feed_status.feed_rows(config, db().feed_statuses())
        body = pages.feeds_page(rows, config.server.base_url, datetime.now(UTC))
        return _html_page(Response(body, content_type=HTML))

    @app.get("/healthz")
    def healthz() -> Response:
        ok, body = health(config, db(), datetime.now(UTC))
        resp = jsonify(body)
        resp.status_code = 200 if ok else 503
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/metrics")
    def metrics_route() -> Response:
        data = generate_latest(metrics.REGISTRY) + generate_latest(registry)
        return Response(data, content_type=CONTENT_TYPE_LATEST)

    if fast_path:
        app.wsgi_app = feedpath.TopicFeeds(  # type: ignore[method-assign]
            config, cache, CACHE_CONTROL, app.wsgi_app
        )
    return app
