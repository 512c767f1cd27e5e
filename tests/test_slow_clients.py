"""Idle and half-sent requests (slowloris) do not lock readers out of the daemon's server."""

from __future__ import annotations

import socket
from pathlib import Path

import requests

from aggregator import config as config_mod
from aggregator import daemon
from tests.conftest import toml_config
from tests.feedserver import free_port


def test_half_sent_requests_do_not_block_the_server(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "aggregator.toml"
    text = toml_config([("f", "http://127.0.0.1:9/feed.xml")], [{"slug": "t", "title": "T"}])
    text = text.replace("[server]\n", f"[server]\nport = {port}\n", 1)
    path.write_text(text, encoding="utf-8")
    cfg = config_mod.load(path)
    d = daemon.Daemon(cfg, serve=True, poll_feeds=False)
    d.start()
    idle: list[socket.socket] = []
    try:
        for _ in range(300):  # three times waitress's default connection limit
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")
            idle.append(s)
        # answered, not stuck: the feed was never fetched, so /healthz says 503
        for p, code in (("/healthz", 503), ("/topics/t.atom", 200)):
            assert requests.get(f"http://127.0.0.1:{port}{p}", timeout=10).status_code == code
    finally:
        for s in idle:
            s.close()
        d.stop()
