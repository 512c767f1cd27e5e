"""The embedded HTTP server on a real socket: connections survive a 304, and it stops."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator import config as config_mod
from aggregator.publish import server, web
from tests.conftest import toml_config


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[server.Server, threading.Thread]]:
    path = tmp_path / "aggregator.toml"
    path.write_text(
        toml_config([("f", "http://127.0.0.1:9/feed.xml")], [{"slug": "t", "title": "T"}]),
        encoding="utf-8",
    )
    http = server.make_server(web.create_app(config_mod.load(path)), "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield http, thread
    finally:
        http.close()
        thread.join(timeout=5)


def test_a_304_keeps_the_connection_open(live: tuple[server.Server, threading.Thread]) -> None:
    """Feed readers revalidate every few minutes; a 304 must not cost a new connection."""
    host, port = live[0].address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/topics/t.atom")
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        etag = first.getheader("ETag")
        assert etag
        sock = conn.sock
        local = sock.getsockname()
        for _ in range(2):
            conn.request("GET", "/topics/t.atom", headers={"If-None-Match": etag})
            resp = conn.getresponse()
            assert resp.read() == b""
            assert resp.status == 304
            assert (resp.getheader("Connection") or "").lower() != "close"
            assert not resp.will_close
            # http.client drops its socket when the server closes; reconnecting would
            # make a new socket with a new local port.
            assert conn.sock is sock
            assert conn.sock.getsockname() == local
    finally:
        conn.close()


def test_connection_close_is_still_honoured_on_a_304(
    live: tuple[server.Server, threading.Thread],
) -> None:
    host, port = live[0].address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/topics/t.atom")
        first = conn.getresponse()
        first.read()
        etag = first.getheader("ETag") or ""
        conn.request(
            "GET", "/topics/t.atom", headers={"If-None-Match": etag, "Connection": "close"}
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 304
        assert resp.will_close
    finally:
        conn.close()


def test_close_ends_serve_forever(live: tuple[server.Server, threading.Thread]) -> None:
    http, thread = live
    http.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
