"""The address guard: no feed's DNS or redirect reaches a private, loopback,
link-local or reserved address unless the feed may.

The check runs twice: once for each hop before it is requested (`check_hop` in
`fetch`), and again in the connection classes below at connect time, on the very
addresses checked, so DNS rebinding between the two cannot slip through.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from aggregator.ingest.http.deadline import Watchdog

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


@dataclass
class Hop:
    """What one request (one hop) may connect to, for the connection classes below."""

    #: address classes this hop may reach
    permitted: frozenset[str]
    #: host (lower case, no brackets) -> addresses already resolved and checked
    addresses: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    watchdog: Watchdog | None = None
    #: the class of the address the request went to, filled in by the connection
    peer_class: str | None = None


local = threading.local()
_PUBLIC_ONLY = Hop(frozenset({PUBLIC}))


def _current_hop() -> Hop:
    hop = getattr(local, "hop", None)
    return hop if hop is not None else _PUBLIC_ONLY


class AddressRefused(NewConnectionError):
    """A connection was about to reach an address class this hop may not."""


def resolve(host: str, port: int) -> list[tuple[int, str]]:
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
                resolved = resolve(host, self.port)
            except socket.gaierror as e:
                raise NameResolutionError(self.host, self, e) from e  # type: ignore[arg-type]
            addresses = [a for a in resolved if address_class(a[1]) in hop.permitted]
            if not addresses:
                raise AddressRefused(self, f"{host} resolves only to refused addresses")  # type: ignore[arg-type]
        error: Exception = AddressRefused(self, f"no address for {host}")  # type: ignore[arg-type]
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
            raise AddressRefused(self, f"pooled connection reaches a {peer} address")  # type: ignore[arg-type]
        hop.peer_class = peer
        if hop.watchdog is not None:
            hop.watchdog.watch(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection
