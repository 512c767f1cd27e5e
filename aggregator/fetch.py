"""Fetch: the only outbound HTTP of the aggregator.

`get()` turns a feed's `FeedState` into a `Fetched` (a 200 with its body, or a 304) and
raises `FetchError` for everything else. Every defence against a hostile or broken outlet
lives here: connect/read timeouts plus a whole-request deadline, a body cap enforced while
streaming and after decompression, redirects followed by hand (at most 5, only to http/https),
and an address check so that neither a feed's DNS nor its redirects can point us at private,
loopback, link-local or reserved addresses.

It must not parse, store, retry or decide when to poll: that is `parse`, `store` and `schedule`.
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import itertools
import mimetypes
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.request import url2pathname

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util import connection as urllib3_connection

from . import __version__
from .errors import FetchError
from .models import FeedState, Fetched

#: sent on every request, so outlets can see who we are and how to reach the project
USER_AGENT = f"aggregator/{__version__} (+https://github.com/aggregator-feeds/aggregator)"

#: a 403 to a feed reader is usually an anti-bot service refusing non-browser clients. We
#: stay honest (no browser User-Agent), so the error says what happened and what the
#: operator can do; the feed backs off like any other failing feed.
REFUSED = "refused by the outlet (403)"
REFUSED_HINT = (
    "it may refuse feed readers: open the URL in a browser, ask the outlet, or remove the feed"
)

#: feed formats first; anything else is still accepted (many servers mislabel feeds)
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)

#: only what urllib3 decodes with the standard library; a bomb is bounded either way
ACCEPT_ENCODING = "gzip, deflate"

REDIRECTS = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})

# Address classes, from the most to the least reachable by strangers.
PUBLIC = "public"
PRIVATE = "private"
LOOPBACK = "loopback"
LINK_LOCAL = "link-local"
RESERVED = "reserved"
ALL_CLASSES = frozenset({PUBLIC, PRIVATE, LOOPBACK, LINK_LOCAL, RESERVED})

_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
# RFC 6052 NAT64 prefix: 64:ff9b::a9fe:a9fe reaches 169.254.169.254 through a NAT64 gateway.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_CHUNK = 64 * 1024
_E = TypeVar("_E", bound=BaseException)
_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate", "identity"})


# -- address classification (pure) ------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def address_class(address: str) -> str:
    """Classify an IP address as public, private, loopback, link-local or reserved.

    IPv6 forms that embed an IPv4 address (mapped, 6to4, NAT64) take the class of the
    embedded address when that is not public, so ::ffff:127.0.0.1 is loopback.
    Raises ValueError for something that is not an IP address.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_class(str(ip.ipv4_mapped))
        embedded = ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and address_class(str(embedded)) != PUBLIC:
            return address_class(str(embedded))
    if ip.is_loopback:
        return LOOPBACK
    if ip.is_link_local:
        return LINK_LOCAL
    if any(ip in net for net in _PRIVATE_NETWORKS):
        return PRIVATE
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved or not ip.is_global:
        return RESERVED
    return PUBLIC


def is_explicit_host(host: str) -> bool:
    """True for a literal IP or "localhost": a configured URL naming one means it."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def permitted_classes(
    previous: str | None, *, explicit: bool, allow_private: bool
) -> frozenset[str]:
    """The address classes one hop may connect to.

    `previous` is the class of the address the previous hop actually reached (None for
    the configured URL itself). A configured literal IP or localhost is the user's choice
    and may be anything. A redirect may stay inside the private or loopback class it
    came from (a LAN feed redirecting on its LAN) but never moves into a new non-public
    class, and never reaches link-local (cloud metadata) or reserved addresses.
    `allow_private` (per feed) lifts all of this.
    """
    if allow_private:
        return ALL_CLASSES
    if previous is None:
        return ALL_CLASSES if explicit else frozenset({PUBLIC})
    if previous in (PRIVATE, LOOPBACK):
        return frozenset({PUBLIC, previous})
    return frozenset({PUBLIC})


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


# -- headers (pure) ----------------------------------------------------------------------------


def request_headers(state: FeedState) -> dict[str, str]:
    """Conditional GET headers from the validators the feed last gave us."""
    headers: dict[str, str] = {}
    if state.etag and _safe_header(state.etag):
        headers["If-None-Match"] = state.etag
    if state.last_modified and _safe_header(state.last_modified):
        headers["If-Modified-Since"] = state.last_modified
    return headers


def _safe_header(value: str) -> bool:
    # A stored validator came from a stranger; never let it split our request.
    return not any(c in value for c in "\r\n\0")


# -- the session -------------------------------------------------------------------------------


class Session:
    """Keep-alive connections for `pool_size` workers; use it only through `get()`.

    urllib3 directly, with no session layer above it: a 304 is most of a warm poll, and
    requests' header merging and hooks cost more CPU than the 304 itself. Redirects are
    followed by get() (it checks every hop), nothing is retried, and no proxy, .netrc or
    other environment setting applies (they would bypass the address check and could
    leak credentials). Outside `get()` the pools connect to public addresses only.
    `ca_certs` replaces the certifi bundle (a private CA, or a test's own).
    """

    def __init__(self, pool_size: int, *, ca_certs: str | None = None) -> None:
        self.headers = {
            "User-Agent": USER_AGENT,
            "Accept": ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        self.pools = urllib3.PoolManager(
            num_pools=max(100, pool_size),
            maxsize=max(1, pool_size),
            retries=False,
            ca_certs=ca_certs or certifi.where(),
        )
        self.pools.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }

    def close(self) -> None:
        """Close every pooled connection."""
        self.pools.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_session(pool_size: int, *, ca_certs: str | None = None) -> Session:
    """The `Session` a poller shares between its `pool_size` fetch threads."""
    return Session(pool_size, ca_certs=ca_certs)


@dataclass
class _Hop:
    """What one request (one hop) may connect to, for the connection classes below."""

    #: address classes this hop may reach
    permitted: frozenset[str]
    #: host (lower case, no brackets) -> addresses already resolved and checked
    addresses: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    watchdog: _Watchdog | None = None
    #: the class of the address the request went to, filled in by the connection
    peer_class: str | None = None


_local = threading.local()
_PUBLIC_ONLY = _Hop(frozenset({PUBLIC}))


def _current_hop() -> _Hop:
    hop = getattr(_local, "hop", None)
    return hop if hop is not None else _PUBLIC_ONLY


class _AddressRefused(NewConnectionError):
    """A connection was about to reach an address class this hop may not."""


def _resolve(host: str, port: int) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        item = (int(family), str(sockaddr[0]))
        if item not in seen:
            seen.append(item)
    return seen


class _GuardedConnectionMixin:
    """Connect only to addresses the current hop permits, and report where we went.

    Resolving here again (or reusing get()'s checked list) closes the DNS-rebinding gap
    between the check and the connect: we connect to an address we checked, never to
    whatever the name resolves to a moment later.
    """

    _dns_host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    sock: Any
    host: str

    def _new_conn(self) -> socket.socket:
        hop = _current_hop()
        host = self._dns_host.strip("[]").rstrip(".").lower()
        addresses = hop.addresses.get(host)
        if addresses is None:
            try:
                resolved = _resolve(host, self.port)
            except socket.gaierror as e:
                raise NameResolutionError(self.host, self, e) from e  # type: ignore[arg-type]
            addresses = [a for a in resolved if address_class(a[1]) in hop.permitted]
            if not addresses:
                raise _AddressRefused(self, f"{host} resolves only to refused addresses")  # type: ignore[arg-type]
        error: Exception = _AddressRefused(self, f"no address for {host}")  # type: ignore[arg-type]
        for _, ip in addresses:
            try:
                sock = urllib3_connection.create_connection(
                    (ip, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as e:
                error = ConnectTimeoutError(self, f"connect timeout={self.timeout}")
                error.__cause__ = e
            except OSError as e:
                error = NewConnectionError(self, f"Failed to establish a new connection: {e}")  # type: ignore[arg-type]
                error.__cause__ = e
            else:
                if hop.watchdog is not None:
                    hop.watchdog.watch(sock)
                return sock
        raise error

    def request(self, *args: Any, **kwargs: Any) -> None:
        hop = _current_hop()
        if self.sock is None:
            self.connect()  # type: ignore[attr-defined]
        try:
            peer = address_class(self.sock.getpeername()[0])
        except (OSError, ValueError) as e:
            self.close()  # type: ignore[attr-defined]
            raise NewConnectionError(self, f"connection lost: {e}") from e  # type: ignore[arg-type]
        if peer not in hop.permitted:
            # A pooled connection made under another feed's allow_private.
            self.close()  # type: ignore[attr-defined]
            raise _AddressRefused(self, f"pooled connection reaches a {peer} address")  # type: ignore[arg-type]
        hop.peer_class = peer
        if hop.watchdog is not None:
            hop.watchdog.watch(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _Deadlines:
    """One thread that fires every request's deadline. A `threading.Timer` per request
    would start (and tear down) a thread for each fetch: most of a 304's cost."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, at: float, fire: Callable[[], None]) -> list[Any]:
        entry: list[Any] = [at, next(self._seq), fire]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="fetch-deadlines", daemon=True
                )
                self._thread.start()
            if self._heap[0] is entry:
                # only an earlier deadline than the one it sleeps toward needs the
                # thread awake: waking it for every request cost a GIL hand-off each
                self._cond.notify()
        return entry

    def cancel(self, entry: list[Any]) -> None:
        with self._cond:
            entry[2] = None  # dropped when it reaches the top of the heap

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                fire, entry[2] = entry[2], None
                self._cond.release()
                try:
                    fire()
                finally:
                    self._cond.acquire()


_DEADLINES = _Deadlines()


class _Watchdog:
    """Shut a request's sockets down at its deadline, whatever phase it is stuck in.

    Socket timeouts bound each read, not the sum: a server sending one byte per second
    (in the headers or the body) would otherwise hold a worker forever.
    """

    def __init__(self, at: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._done = False
        self.fired = False
        self._entry = _DEADLINES.add(at, self._fire)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.fired:
                _shutdown(sock)
            elif not self._done:
                self._sockets.append(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def cancel(self) -> None:
        """After this returns, no socket is touched: safe to hand the connection back."""
        with self._lock:
            self._done = True
            self._sockets.clear()
        _DEADLINES.cancel(self._entry)


def _shutdown(sock: socket.socket) -> None:
    try:
        # The plain-socket method, also for TLS sockets: it wakes a blocked recv()
        # without touching the SSL object another thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


# -- get ---------------------------------------------------------------------------------------


def get(
    session: Session,
    state: FeedState,
    *,
    timeout: float,
    max_body: int,
    allow_private: bool = False,
    deadline: float | None = None,
    max_redirects: int = 5,
) -> Fetched:
    """Fetch a feed with a conditional GET; a 200 or a 304, or FetchError.

    `timeout` bounds connecting and each read; `deadline` (seconds, default 3 x timeout,
    never less than timeout) bounds the whole request including redirects. `max_body`
    caps the body both as received and after decompression.
    """
    started = time.monotonic()
    scheme = urlsplit(state.url).scheme.lower()
    if scheme == "file":
        return _get_file(state, max_body=max_body, started=started)
    if scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL scheme {scheme or '(none)'!r}", state.url)
    budget = max(timeout, 3 * timeout if deadline is None else deadline)
    fetch = _HttpFetch(session, state, timeout, budget, max_body, allow_private, max_redirects)
    try:
        return fetch.run(started)
    finally:
        fetch.watchdog.cancel()


class _HttpFetch:
    """One get(): the hop loop and its error mapping, sharing one deadline."""

    def __init__(
        self,
        session: Session,
        state: FeedState,
        timeout: float,
        budget: float,
        max_body: int,
        allow_private: bool,
        max_redirects: int,
    ) -> None:
        self.session = session
        self.state = state
        self.timeout = timeout
        self.budget = budget
        self.max_body = max_body
        self.allow_private = allow_private
        self.max_redirects = max_redirects
        self.deadline_at = time.monotonic() + budget
        self.watchdog = _Watchdog(self.deadline_at)

    def fail(
        self, message: str, status: int | None = None, retry_after: str | None = None
    ) -> FetchError:
        return FetchError(message, self.state.url, status, retry_after)

    def expired(self) -> bool:
        return self.watchdog.fired or time.monotonic() >= self.deadline_at

    def deadline_error(self) -> FetchError:
        return self.fail(f"timed out after {self.budget:g}s (whole-request deadline)")

    def run(self, started: float) -> Fetched:
        url = self.state.url
        visited = {urldefrag(url).url}
        permanent = True
        previous: str | None = None
        hops = 0
        headers = request_headers(self.state)
        while True:
            hop = self.check_hop(url, previous, first=hops == 0)
            response = self.send(url, headers, hop)
            previous = hop.peer_class
            status = response.status
            if status in REDIRECTS:
                location = response.headers.get("location", "").strip()
                _discard(response)
                if not location:
                    raise self.fail(f"HTTP {status} redirect without Location")
                target = urljoin(url, location)
                target_scheme = urlsplit(target).scheme.lower()
                if target_scheme not in ("http", "https"):
                    raise self.fail(f"redirect to {target_scheme or '(no scheme)'}: refused")
                if urldefrag(target).url in visited:
                    raise self.fail(f"redirect loop at {_short(target)}")
                if hops >= self.max_redirects:
                    raise self.fail(f"too many redirects (more than {self.max_redirects})")
                visited.add(urldefrag(target).url)
                permanent = permanent and status in PERMANENT_REDIRECTS
                hops += 1
                url = target
                continue
            if status not in (200, 304):
                _discard(response)
                phrase = _phrase(status, response.reason)
                where = f" at {_short(url)}" if hops else ""
                retry_after = response.headers.get("retry-after") if status in (429, 503) else None
                if status == 403:
                    raise self.fail(f"{REFUSED}{where}; {REFUSED_HINT}", status)
                raise self.fail(f"HTTP {status} {phrase}{where}".rstrip(), status, retry_after)
            body = self.read_body(response)
            self.watchdog.cancel()
            if self.watchdog.fired:
                _discard(response)
                raise self.deadline_error()
            response.release_conn()
            etag = response.headers.get("etag")
            last_modified = response.headers.get("last-modified")
            if status == 304:
                # RFC 9111 4.3.4: a 304 may carry new validators; else the stored ones stand.
                etag = etag or self.state.etag
                last_modified = last_modified or self.state.last_modified
                body = b""
            return Fetched(
                url=self.state.url,
                final_url=url,
                permanent_url=url if hops and permanent else None,
                status=status,
                body=body,
                headers={k.lower(): v for k, v in response.headers.items()},
                etag=etag,
                last_modified=last_modified,
                elapsed=time.monotonic() - started,
            )

    def check_hop(self, url: str, previous: str | None, *, first: bool) -> _Hop:
        """Resolve the hop's host and refuse it before any connection is attempted."""
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise self.fail(f"no host in URL {_short(url)}")
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise self.fail(f"bad port in URL {_short(url)}") from None
        permitted = permitted_classes(
            previous, explicit=first and is_explicit_host(host), allow_private=self.allow_private
        )
        try:
            resolved = _resolve(host, port)
        except (socket.gaierror, UnicodeError):
            raise self.fail(f"DNS lookup failed for {host}") from None
        allowed = [a for a in resolved if address_class(a[1]) in permitted]
        if not allowed:
            ip = resolved[0][1] if resolved else "?"
            kind = address_class(ip) if resolved else "unknown"
            if first:
                raise self.fail(
                    f"{host} resolves to {ip} ({kind} address); set allow_private to fetch it"
                )
            shown = host if host == ip else f"{host} ({ip})"
            raise self.fail(f"redirect to {shown}, a {kind} address: refused")
        return _Hop(permitted, {host.strip("[]").lower(): allowed}, self.watchdog)

    def send(self, url: str, headers: dict[str, str], hop: _Hop) -> BaseHTTPResponse:
        remaining = self.deadline_at - time.monotonic()
        if remaining <= 0:
            raise self.deadline_error()
        per_op = min(self.timeout, remaining)
        _local.hop = hop
        try:
            return self.session.pools.urlopen(
                "GET",
                url,
                headers={**self.session.headers, **headers},
                timeout=urllib3.Timeout(connect=per_op, read=per_op),
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
            )
        except LocationValueError as e:
            raise self.fail(f"invalid URL {_short(url)}: {_short(str(e))}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise self.network_error(e, url) from e
        except (ValueError, UnicodeError) as e:
            raise self.fail(f"invalid URL {_short(url)}: {_short(str(e))}") from e
        finally:
            _local.hop = None

    def network_error(self, e: BaseException, url: str) -> FetchError:
        if self.expired():
            return self.deadline_error()
        refused = _find(e, _AddressRefused)
        if refused is not None:
            return self.fail(f"address refused: {refused}")
        if any(
            isinstance(x, ConnectTimeoutError) and not isinstance(x, NewConnectionError)
            for x in _chain(e)
        ):  # urllib3 derives NewConnectionError (refused, unreachable) from the timeout
            return self.fail(f"connect timed out after {self.timeout:g}s")
        if _find(e, ReadTimeoutError) is not None or _find(e, TimeoutError) is not None:
            return self.fail(f"timed out after {self.timeout:g}s")
        if _find(e, urllib3.exceptions.SSLError) is not None:
            return self.fail(f"TLS error: {_short(str(_root(e)))}")
        if _find(e, NameResolutionError) is not None:
            return self.fail(f"DNS lookup failed for {urlsplit(url).hostname}")
        if _find(e, ConnectionRefusedError) is not None:
            return self.fail("connection refused")
        if isinstance(e, urllib3.exceptions.ProtocolError | NewConnectionError | OSError):
            return self.fail(f"connection failed: {_short(str(_root(e)))}")
        return self.fail(f"request failed: {_short(str(_root(e)))}")

    def read_body(self, response: BaseHTTPResponse) -> bytes:
        """Stream and decode the body within the cap and the deadline, or raise."""
        cap = _size(self.max_body)
        length = response.headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > self.max_body:
            _discard(response)
            raise self.fail(f"body exceeds {cap} cap (Content-Length {int(length)})")
        codings = [
            c.strip().lower()
            for c in response.headers.get("content-encoding", "").split(",")
            if c.strip()
        ]
        unknown = [c for c in codings if c not in _ENCODINGS]
        if unknown:
            _discard(response)
            raise self.fail(f"unsupported Content-Encoding {unknown[0]!r}")
        raw = response
        body = bytearray()
        try:
            while True:
                remaining = self.deadline_at - time.monotonic()
                if remaining <= 0:
                    raise self.deadline_error()
                sock = getattr(raw.connection, "sock", None)
                if sock is not None:
                    sock.settimeout(min(self.timeout, remaining))
                # read1: whatever has arrived, so a trickle cannot make one read outlast
                # the deadline; urllib3 decodes at most _CHUNK bytes out of it at a time,
                # so a gzip bomb is never inflated further than the cap.
                chunk = raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                body += chunk
                if len(body) > self.max_body:
                    raise self.fail(
                        f"body exceeds {cap} cap" + (" once decompressed" if codings else "")
                    )
                if raw.tell() > self.max_body:
                    raise self.fail(f"body exceeds {cap} cap")
        except FetchError:
            _discard(response)
            raise
        except urllib3.exceptions.DecodeError as e:
            _discard(response)
            raise self.fail(f"bad {'/'.join(codings)} body: {_short(str(_root(e)))}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            _discard(response)
            if self.expired():
                raise self.deadline_error() from e
            if _find(e, TimeoutError) is not None or isinstance(
                e, urllib3.exceptions.ReadTimeoutError
            ):
                raise self.fail(f"timed out after {self.timeout:g}s reading the body") from e
            if _find(e, urllib3.exceptions.IncompleteRead) is not None:
                raise self.fail("connection closed mid-body") from e
            raise self.fail(f"connection failed mid-body: {_short(str(_root(e)))}") from e
        if self.watchdog.fired:
            # The deadline shut the socket; what looked like the end of the body was not.
            _discard(response)
            raise self.deadline_error()
        return bytes(body)


# -- file: URLs --------------------------------------------------------------------------------


def _get_file(state: FeedState, *, max_body: int, started: float) -> Fetched:
    """Read a configured local archive; fake a 304 when mtime and size are unchanged."""
    parts = urlsplit(state.url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError("file: URL must be file:///absolute/path", state.url)
    path = Path(url2pathname(parts.path))
    if not path.is_absolute():
        raise FetchError("file: URL must be file:///absolute/path", state.url)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FetchError(f"no such file: {path}", state.url) from None
    except OSError as e:
        raise FetchError(f"cannot read {path}: {e.strerror}", state.url) from None
    if not stat.S_ISREG(st.st_mode):
        raise FetchError(f"not a regular file: {path}", state.url)
    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    last_modified = formatdate(st.st_mtime, usegmt=True)
    headers = {"etag": etag, "last-modified": last_modified}
    if state.etag == etag:
        return Fetched(
            url=state.url,
            final_url=state.url,
            permanent_url=None,
            status=304,
            body=b"",
            headers=headers,
            etag=etag,
            last_modified=last_modified,
            elapsed=time.monotonic() - started,
        )
    if st.st_size > max_body:
        raise FetchError(f"body exceeds {_size(max_body)} cap ({st.st_size} bytes)", state.url)
    try:
        with open(path, "rb") as f:
            body = f.read(max_body + 1)
    except OSError as e:
        raise FetchError(f"cannot read {path}: {e.strerror}", state.url) from None
    if len(body) > max_body:  # grew since stat()
        raise FetchError(f"body exceeds {_size(max_body)} cap", state.url)
    content_type = mimetypes.guess_type(path.name)[0]
    headers["content-length"] = str(len(body))
    if content_type:
        headers["content-type"] = content_type
    return Fetched(
        url=state.url,
        final_url=state.url,
        permanent_url=None,
        status=200,
        body=body,
        headers=headers,
        etag=etag,
        last_modified=last_modified,
        elapsed=time.monotonic() - started,
    )


# -- per-host politeness -----------------------------------------------------------------------


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


# -- small helpers -----------------------------------------------------------------------------


def _discard(response: BaseHTTPResponse) -> None:
    """Close a response we will not read to its end, and hand its slot back to the pool
    (closed: the pool opens a fresh connection for the next request)."""
    response.close()
    response.release_conn()


def _phrase(status: int, reason: str | None) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        # The server's own reason phrase is a stranger's text: keep it short and printable.
        return "".join(c for c in (reason or "")[:40] if c.isprintable())


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chain(e: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (cause, context, urllib3 .reason, args)."""
    seen: set[int] = set()
    stack: list[object] = [e]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
        stack.extend(item.args)


def _find(e: BaseException, kind: type[_E]) -> _E | None:
    return next((x for x in _chain(e) if isinstance(x, kind)), None)


def _root(e: BaseException) -> BaseException:
    """The innermost wrapped exception, whose message is the informative one."""
    for _ in range(10):
        inner = next(
            (
                x
                for x in (e.args[0] if e.args else None, getattr(e, "reason", None), e.__cause__)
                if isinstance(x, BaseException)
            ),
            None,
        )
        if inner is None:
            break
        e = inner
    return e
