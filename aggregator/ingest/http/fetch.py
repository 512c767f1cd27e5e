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

import socket
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import TypeVar
from urllib.parse import urldefrag, urljoin, urlsplit

import certifi
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.response import BaseHTTPResponse

from aggregator import __version__
from aggregator.config.units import format_size
from aggregator.errors import FetchError
from aggregator.ingest import files
from aggregator.ingest.http import guard
from aggregator.ingest.http.deadline import Watchdog
from aggregator.models import FeedState, Fetched

#: sent on every request: the software and its version, so outlets can see who we are
USER_AGENT = f"aggregator/{__version__}"


def user_agent(contact: str | None = None) -> str:
    """Our User-Agent, with the operator's `[polling] contact` when set: an outlet that
    sees a problem with our polling can then reach whoever runs this instance."""
    return f"{USER_AGENT} (+{contact})" if contact else USER_AGENT


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
_CHUNK = 64 * 1024
_E = TypeVar("_E", bound=BaseException)
_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate", "identity"})


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

    def __init__(
        self, pool_size: int, *, ca_certs: str | None = None, contact: str | None = None
    ) -> None:
        self.headers = {
            "User-Agent": user_agent(contact),
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
            "http": guard.GuardedHTTPPool,
            "https": guard.GuardedHTTPSPool,
        }

    def close(self) -> None:
        """Close every pooled connection."""
        self.pools.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_session(
    pool_size: int, *, ca_certs: str | None = None, contact: str | None = None
) -> Session:
    """The `Session` a poller shares between its `pool_size` fetch threads."""
    return Session(pool_size, ca_certs=ca_certs, contact=contact)


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
        return files.get_file(state, max_body=max_body, started=started)
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
        self.watchdog = Watchdog(self.deadline_at)

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

    def check_hop(self, url: str, previous: str | None, *, first: bool) -> guard.Hop:
        """Resolve the hop's host and refuse it before any connection is attempted."""
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise self.fail(f"no host in URL {_short(url)}")
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise self.fail(f"bad port in URL {_short(url)}") from None
        permitted = guard.permitted_classes(
            previous,
            explicit=first and guard.is_explicit_host(host),
            allow_private=self.allow_private,
        )
        try:
            resolved = guard.resolve(host, port)
        except (socket.gaierror, UnicodeError):
            raise self.fail(f"DNS lookup failed for {host}") from None
        allowed = [a for a in resolved if guard.address_class(a[1]) in permitted]
        if not allowed:
            ip = resolved[0][1] if resolved else "?"
            kind = guard.address_class(ip) if resolved else "unknown"
            if first:
                raise self.fail(
                    f"{host} resolves to {ip} ({kind} address); set allow_private to fetch it"
                )
            shown = host if host == ip else f"{host} ({ip})"
            raise self.fail(f"redirect to {shown}, a {kind} address: refused")
        return guard.Hop(permitted, {host.strip("[]").lower(): allowed}, self.watchdog)

    def send(self, url: str, headers: dict[str, str], hop: guard.Hop) -> BaseHTTPResponse:
        remaining = self.deadline_at - time.monotonic()
        if remaining <= 0:
            raise self.deadline_error()
        per_op = min(self.timeout, remaining)
        guard.local.hop = hop
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
            guard.local.hop = None

    def network_error(self, e: BaseException, url: str) -> FetchError:
        if self.expired():
            return self.deadline_error()
        refused = _find(e, guard.AddressRefused)
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
        cap = format_size(self.max_body)
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
