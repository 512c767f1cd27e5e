"""A real HTTP server on 127.0.0.1 (port 0) for tests: feed files, conditional GET, hostile routes.

Any test can serve bytes (`add`), a folder (`serve_dir`) or a programmable route (`route`)
and then look at what the client did (`requests`, `connections`, `in_flight_max`). Static
resources answer 304 to a matching If-None-Match / If-Modified-Since, as a polite outlet would;
routes can do anything an impolite one does (trickle, endless bodies, redirects, lies).

It listens on loopback only and never logs to stderr.

    from tests.feedserver import FeedServer, feed_server

    def test_x(feed_server: FeedServer) -> None:
        feed_server.add("/a.xml", b"<rss/>")
        feed_server.route("/gone", status(410))
        feed_server.url("/a.xml")  # -> "http://127.0.0.1:PORT/a.xml"
"""

from __future__ import annotations

import gzip as gzip_module
import hashlib
import itertools
import mimetypes
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import pytest

#: a route: gets the live request handler and writes the whole response itself
Handler = Callable[[BaseHTTPRequestHandler], None]

#: content types for served files, by suffix (feeds first; mimetypes for the rest)
FEED_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".rdf": "application/rdf+xml",
    ".json": "application/feed+json",
    ".opml": "text/x-opml",
}


class RecordedRequest(NamedTuple):
    """One request as the server saw it; unpacks as (time, method, path, headers)."""

    #: time.monotonic() when the request line was read
    time: float
    method: str
    #: the path with its query string, as sent
    path: str
    #: request headers with lower-case names
    headers: dict[str, str]


@dataclass
class _Resource:
    body: bytes
    content_type: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False
    #: Last-Modified as a Unix time (seconds)
    mtime: float = field(default_factory=time.time)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listening socket is on loopback; reuse keeps fast test reruns from EADDRINUSE.
    allow_reuse_address = True

    def __init__(self, owner: FeedServer, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _RequestHandler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add 40 ms to every keep-alive response.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.owner.tls is not None:
            # Handshake lazily, in the connection's own thread, so a stuck client cannot
            # block the accept loop.
            sock = self.owner.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        # One call per accepted TCP connection: what keep-alive tests count.
        self.owner._count_connection()
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up on hostile routes is the point of those routes; stay quiet.
        pass


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that clients can keep connections alive (tests count connections).
    protocol_version = "HTTP/1.1"
    #: idle keep-alive connections and stuck writes give up after this many seconds
    timeout = 5
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def version_string(self) -> str:
        return "feedserver"

    def do_GET(self) -> None:
        self.server.owner._dispatch(self)

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET


class FeedServer:
    """A ThreadingHTTPServer on 127.0.0.1, port 0, serving from a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None) -> None:
        self._host = host
        #: a server-side context to serve HTTPS instead of HTTP
        self.tls = tls
        self._lock = threading.Lock()
        self._routes: dict[str, Handler] = {}
        self._resources: dict[str, _Resource] = {}
        self._dirs: dict[str, Path] = {}
        self._gzip_dirs: set[str] = set()
        self._requests: list[RecordedRequest] = []
        self._connections = 0
        self._in_flight: dict[str, int] = {}
        #: the most requests seen in flight at once, per Host header (lower-case "host:port")
        self.in_flight_max: dict[str, int] = {}
        #: the most requests seen in flight at once, all hosts together
        self.in_flight_peak = 0
        #: set by stop(); endless routes watch it so they end with the server
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FeedServer:
        """Bind a free port and serve in a daemon thread."""
        self._server = _Server(self, (self._host, 0))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="feedserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end endless routes, and close the listening socket."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FeedServer not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` (https with `tls`), without a trailing slash."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this server."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # -- content ---------------------------------------------------------------------------

    def add(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/xml",
        headers: dict[str, str] | None = None,
        status: int = 200,
        gzip: bool = False,
        last_modified: float | None = None,
    ) -> None:
        """Serve `body` at `path` (replacing what was there: a new ETag, a new Last-Modified).

        `gzip=True` compresses when the client sends Accept-Encoding: gzip. `last_modified`
        is a Unix time; by default the time of this call.
        """
        resource = _Resource(body, content_type, status, dict(headers or {}), gzip)
        if last_modified is not None:
            resource.mtime = last_modified
        with self._lock:
            self._resources[path] = resource

    def remove(self, path: str) -> None:
        """Stop serving `path` (it answers 404 again)."""
        with self._lock:
            self._resources.pop(path, None)
            self._routes.pop(path, None)

    def serve_dir(self, prefix: str, directory: str | Path, *, gzip: bool = False) -> None:
        """Serve every file under `directory` at `prefix/<relative path>`, read on each request.

        ETag is the content hash and Last-Modified the file's mtime, so editing a file
        on disk changes both.
        """
        prefix = "/" + prefix.strip("/")
        with self._lock:
            self._dirs[prefix] = Path(directory).resolve()
            if gzip:
                self._gzip_dirs.add(prefix)

    def route(self, path: str, handler: Handler) -> None:
        """Answer requests for `path` (exact, with or without query) with `handler`."""
        with self._lock:
            self._routes[path] = handler

    # -- what the clients did --------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The requests whose path (without query) is `path`."""
        return [r for r in self.requests if urlsplit(r.path).path == path]

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._lock:
            return self._connections

    def reset_log(self) -> None:
        """Forget recorded requests, connection counts and in-flight maxima."""
        with self._lock:
            self._requests.clear()
            self._connections = 0
            self.in_flight_max.clear()
            self.in_flight_peak = 0

    # -- internals -------------------------------------------------------------------------

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _dispatch(self, h: _RequestHandler) -> None:
        host = h.headers.get("Host", "").lower()
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._lock:
            self._requests.append(RecordedRequest(time.monotonic(), h.command, h.path, headers))
            self._in_flight[host] = self._in_flight.get(host, 0) + 1
            self.in_flight_max[host] = max(self.in_flight_max.get(host, 0), self._in_flight[host])
            self.in_flight_peak = max(self.in_flight_peak, sum(self._in_flight.values()))
        try:
            self._answer(h)
        finally:
            with self._lock:
                self._in_flight[host] -= 1

    def _answer(self, h: _RequestHandler) -> None:
        path = h.path
        bare = unquote(urlsplit(path).path)
        with self._lock:
            handler = self._routes.get(path) or self._routes.get(bare)
            resource = self._resources.get(path) or self._resources.get(bare)
            dirs = sorted(self._dirs.items(), key=lambda kv: -len(kv[0]))
            gzip_dirs = set(self._gzip_dirs)
        if handler is not None:
            handler(h)
            return
        if resource is None:
            resource = _from_dirs(bare, dirs, gzip_dirs)
        if resource is None:
            send(h, 404, b"not found", content_type="text/plain")
            return
        serve_resource(h, resource)


def _from_dirs(path: str, dirs: list[tuple[str, Path]], gzip_dirs: set[str]) -> _Resource | None:
    for prefix, root in dirs:
        if not path.startswith(prefix + "/"):
            continue
        target = (root / path[len(prefix) + 1 :]).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
        content_type = FEED_TYPES.get(target.suffix.lower()) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        )
        return _Resource(
            target.read_bytes(),
            content_type,
            gzip=prefix in gzip_dirs,
            mtime=target.stat().st_mtime,
        )
    return None


# -- response writers (usable inside route handlers) -----------------------------------------


def send(
    h: BaseHTTPRequestHandler,
    code: int,
    body: bytes = b"",
    *,
    content_type: str | None = "application/xml",
    headers: dict[str, str] | None = None,
) -> None:
    """Write a complete response with a correct Content-Length."""
    h.send_response(code)
    if content_type and code != 304:
        h.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    if code != 304:
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD" and code != 304:
        h.wfile.write(body)


def not_modified(h: BaseHTTPRequestHandler, etag: str | None, last_modified: str | None) -> bool:
    """True when the request's validators match (RFC 9110 13.1: If-None-Match wins)."""
    inm = h.headers.get("If-None-Match")
    if inm is not None:
        if etag is None:
            return False
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = h.headers.get("If-Modified-Since")
    if ims is None or last_modified is None:
        return False
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False


def serve_resource(h: BaseHTTPRequestHandler, r: _Resource) -> None:
    last_modified = formatdate(r.mtime, usegmt=True)
    validators = {"ETag": r.etag, "Last-Modified": last_modified}
    if r.status == 200 and not_modified(h, r.etag, last_modified):
        send(h, 304, headers={**validators, **r.headers})
        return
    body = r.body
    extra = dict(validators)
    if r.gzip:
        extra["Vary"] = "Accept-Encoding"
        if "gzip" in h.headers.get("Accept-Encoding", ""):
            body = gzip_module.compress(body, mtime=0)
            extra["Content-Encoding"] = "gzip"
    send(h, r.status, body, content_type=r.content_type, headers={**extra, **r.headers})


def _writable(h: BaseHTTPRequestHandler) -> bool:
    owner = getattr(h.server, "owner", None)
    return not (owner is not None and owner.stopping.is_set())


# -- handler factories -------------------------------------------------------------------------


def status(code: int, headers: dict[str, str] | None = None, body: bytes | None = None) -> Handler:
    """Answer `code` with `headers` (e.g. 429 with Retry-After, 410, 500)."""
    payload = body if body is not None else HTTPStatus(code).phrase.encode()

    def handler(h: BaseHTTPRequestHandler) -> None:
        send(h, code, payload, content_type="text/plain", headers=headers)

    return handler


def redirect(code: int, location: str) -> Handler:
    """Answer `code` (301, 302, 303, 307, 308) pointing at `location`, sent as given."""
    return status(code, {"Location": location}, b"")


def content(body: bytes, *, content_type: str = "application/xml", **headers: str) -> Handler:
    """Answer 200 with `body` every time, ignoring validators."""

    def handler(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, body, content_type=content_type, headers=headers)

    return handler


def slow(delay: float, then: Handler | bytes = b"<rss/>") -> Handler:
    """Wait `delay` seconds before any byte of the response, then answer with `then`."""
    inner = content(then) if isinstance(then, bytes) else then

    def handler(h: BaseHTTPRequestHandler) -> None:
        if not _wait(h, delay):
            return
        inner(h)

    return handler


def _wait(h: BaseHTTPRequestHandler, delay: float) -> bool:
    owner = getattr(h.server, "owner", None)
    if owner is None:
        time.sleep(delay)
        return True
    return not owner.stopping.wait(delay)


def trickle(
    body: bytes | None = None,
    *,
    interval: float = 0.2,
    content_type: str = "application/xml",
    in_headers: bool = False,
    limit: float = 60.0,
) -> Handler:
    """Send one byte every `interval` seconds: of `body`, or "forever" when `body` is None.

    With `in_headers=True` the bytes trickle inside an endless header instead, before
    the body ever starts. "Forever" ends after `limit` seconds, so that a client without
    a deadline fails its test instead of hanging the suite.
    """

    def handler(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        give_up = time.monotonic() + limit
        try:
            if in_headers:
                h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while _writable(h) and _wait(h, interval) and time.monotonic() < give_up:
                    h.wfile.write(b"a")
                return
            h.send_response(200)
            h.send_header("Content-Type", content_type)
            if body is not None:
                h.send_header("Content-Length", str(len(body)))
            h.send_header("Connection", "close")
            h.end_headers()
            source = iter(body) if body is not None else itertools.repeat(ord("<"))
            for byte in source:
                if not _wait(h, interval) or time.monotonic() > give_up:
                    return
                h.wfile.write(bytes([byte]))
        except OSError:
            return

    return handler


def endless(
    chunk: bytes = b"<item><title>x</title></item>\n",
    *,
    content_type: str = "application/xml",
    limit: int = 256 * 1024 * 1024,
) -> Handler:
    """Send `chunk` as fast as the client reads, with no Content-Length, until it hangs up.

    Stops after `limit` bytes, so that a client without a cap fails instead of eating memory.
    """

    def handler(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Connection", "close")
        h.end_headers()
        block = chunk * max(1, 16384 // max(1, len(chunk)))
        sent = 0
        try:
            while _writable(h) and sent < limit:
                h.wfile.write(block)
                sent += len(block)
        except OSError:
            return

    return handler


def gzipped(
    body: bytes, *, content_type: str = "application/xml", encoding: str = "gzip"
) -> Handler:
    """Answer 200 with `body` gzip-compressed, whatever the client accepts (a gzip bomb helper)."""
    packed = gzip_module.compress(body, compresslevel=9, mtime=0)

    def handler(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, packed, content_type=content_type, headers={"Content-Encoding": encoding})

    return handler


def lying_length(body: bytes, claimed: int, *, content_type: str = "application/xml") -> Handler:
    """Declare Content-Length `claimed`, send `body`, then hang up."""

    def handler(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(claimed))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)

    return handler


def close_mid_body(body: bytes, after: int, *, content_type: str = "application/xml") -> Handler:
    """Declare the full length of `body`, send its first `after` bytes, then hang up."""
    return lying_length(body[:after], len(body), content_type=content_type)


def sequence(*handlers: Handler) -> Handler:
    """The n-th request gets the n-th handler; the last one answers every later request."""
    if not handlers:
        raise ValueError("sequence() needs at least one handler")
    counter = itertools.count()
    lock = threading.Lock()

    def handler(h: BaseHTTPRequestHandler) -> None:
        with lock:
            n = next(counter)
        handlers[min(n, len(handlers) - 1)](h)

    return handler


def free_port() -> int:
    """A loopback port that nothing listens on right now (for connection-refused tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A started FeedServer, stopped after the test."""
    with FeedServer() as server:
        yield server
