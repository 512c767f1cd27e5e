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

from . import metrics, publish, render, store
from .config import Config

#: feed readers revalidate with a conditional GET; a minute keeps the load low
CACHE_CONTROL = "public, max-age=60"


def health(config: Config, db: store.Store, now: datetime) -> tuple[bool, dict[str, Any]]:
    """Whether polling is alive: some feed succeeded within three intervals."""
    statuses = db.feed_statuses()
    interval = config.polling.interval or config.polling.max_interval
    last_success = max((s.last_success for s in statuses if s.last_success), default=None)
    last_poll = max((s.last_fetch for s in statuses if s.last_fetch), default=None)
    started = db.get_meta("daemon_started")
    since = last_success or (datetime.fromisoformat(started) if started else None)
    stalled = bool(statuses) and since is not None and now - since > 3 * interval
    failing = [
        {"feed": s.name, "error": s.last_error, "failures": s.failures, "status": s.last_status}
        for s in statuses
        if s.failures and not s.gone
    ]
    body = {
        "ok": not stalled,
        "last_poll": last_poll.isoformat() if last_poll else None,
        "last_success": last_success.isoformat() if last_success else None,
        "feeds": len(statuses),
        "feeds_failing": failing,
        "feeds_gone": [s.name for s in statuses if s.gone],
    }
    return not stalled, body


def create_app(config: Config) -> Flask:
    """Build the app; each request thread gets its own database connection."""
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

    @app.after_request
    def count(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.HTTP_REQUESTS.labels(rule, str(response.status_code)).inc()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
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
        body = render.index_page(summaries, config.server.base_url, last_poll)
        resp = Response(body, content_type="text/html; charset=utf-8")
        resp.headers["Content-Security-Policy"] = render.CSP
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    @app.get("/favicon.ico")
    def favicon() -> Response:
        # Browsers ask for it on every visit; "no content" keeps their consoles clean.
        return Response(status=204, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/topics/<slug>.<fmt>")
    def topic_feed(slug: str, fmt: str) -> Response:
        topic = config.topic(slug)
        if topic is None or fmt not in publish.FORMATS:
            abort(404)
        r = cache.get(db(), topic, fmt)
        resp = Response(r.body, content_type=r.content_type)
        resp.set_etag(r.etag.strip('"'))
        if r.last_modified is not None:
            resp.last_modified = r.last_modified
        resp.headers["Cache-Control"] = CACHE_CONTROL
        resp.make_conditional(request)  # turns it into a 304 in place when it applies
        return resp

    @app.get("/topics.opml")
    def topics_opml() -> Response:
        summaries = db().topic_summaries([(t.slug, t.title, t.query) for t in config.topics])
        body = render.topics_opml(summaries, config.server.base_url)
        resp = Response(body, content_type="text/x-opml; charset=utf-8")
        resp.add_etag()
        resp.headers["Cache-Control"] = CACHE_CONTROL
        resp.make_conditional(request)  # turns it into a 304 in place when it applies
        return resp

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

    return app
