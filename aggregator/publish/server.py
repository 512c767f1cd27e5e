"""The HTTP server the daemon embeds: waitress, behind one small interface.

Why waitress: it reads each request whole on its asyncore loop before a worker
thread sees it, so idle or half-sent connections (slowloris) cost a socket, not a
thread; it runs in-process next to the scheduler and stops on `close()`. Other
servers were measured and set aside: cheroot hands a connection to a worker thread
before its headers have arrived (300 half-sent requests lock readers out); granian
runs WSGI only in worker processes or on free-threaded Python; gunicorn forks.

One change to waitress: it closes the connection after every 304 (and 204),
because it decides keep-alive on a Content-Length it strips from bodiless
responses. An HTTP/1.1 response with those statuses never has a body, so its
end is known without that header; `_KeepAliveTask` keeps such connections open.
Feed readers revalidate with conditional GETs, so 304 is our most common answer.
"""

from __future__ import annotations

import socket
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import WSGITask

#: what serves HTTP, for logs and benchmark labels
NAME = "waitress"
#: worker threads running the app; requests are read whole by the loop thread first
THREADS = 8
#: concurrent HTTP connections; stays well below select()'s 1024 descriptors
CONNECTION_LIMIT = 500
#: an idle or stalled connection is closed after this many seconds
CHANNEL_TIMEOUT = 15


class _KeepAliveTask(WSGITask):  # type: ignore[misc]
    """A WSGI task that keeps HTTP/1.1 connections open after a bodiless response."""

    def build_response_header(self) -> bytes:
        keep_alive = (
            not self.has_body
            and self.version == "1.1"
            and not self.close_on_finish
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        )
        if not keep_alive:
            return bytes(super().build_response_header())
        # waitress calls set_close_on_finish() for any response without Content-Length;
        # a 1xx/204/304 is delimited by its header block alone (RFC 9112 section 6.3).
        self.set_close_on_finish = _no_close
        try:
            return bytes(super().build_response_header())
        finally:
            del self.set_close_on_finish


def _no_close() -> None:
    pass


class _KeepAliveChannel(HTTPChannel):  # type: ignore[misc]
    task_class = _KeepAliveTask


class Server:
    """One listening socket and its worker threads; `serve_forever()` on a thread of
    your own, `close()` from any other."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
        threads: int = THREADS,
    ) -> None:
        where: dict[str, Any] = {"sockets": [sock]} if sock else {"host": host, "port": port}
        self._closed = False
        self._inner = create_server(
            app,
            threads=threads,
            ident="aggregator",
            clear_untrusted_proxy_headers=True,
            # Slow or idle clients (slowloris) must not use up every connection:
            # more slots than waitress's 100, and idle ones closed after 15 s. Beyond
            # that, put nginx in front (README) or serve `export_dir` from it.
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=5,
            **where,
        )
        # No connection is accepted before serve_forever(), so every channel gets the class.
        self._inner.channel_class = _KeepAliveChannel

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens (the port is real even when 0 was asked for)."""
        return str(self._inner.effective_host), int(self._inner.effective_port)

    def serve_forever(self) -> None:
        """Run the accept/read/write loop until `close()`."""
        try:
            self._inner.run()
        except Exception:  # the loop can end with an error when closed under it
            if not self._closed:
                raise

    def close(self) -> None:
        """Stop accepting, close every open connection (keep-alive ones would otherwise
        hold the loop), and let the worker threads go."""
        if self._closed:
            return
        self._closed = True
        # The listening socket first; then requests in flight finish (they wake the loop
        # through its trigger, so that stays open until they are done); then every
        # connection and the trigger, which share the listener's socket map (`_map`).
        wasyncore.dispatcher.close(self._inner)
        self._inner.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self._inner._map, ignore_all=True)


def make_server(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    threads: int = THREADS,
) -> Server:
    """The daemon's HTTP server for a WSGI app, listening (not yet serving) on
    host:port, or on `sock` when the caller bound it already."""
    return Server(app, host=host, port=port, sock=sock, threads=threads)
