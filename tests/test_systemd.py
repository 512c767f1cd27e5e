"""The daemon under systemd: the unit file passes `systemd-analyze verify` and its offline
security review, and the daemon speaks the sd_notify protocol for real (READY=1 once it
serves, WATCHDOG=1 while polling, STOPPING=1 on SIGTERM) to a datagram socket the test
binds, as systemd would. The same run checks `--log-format json`: one JSON object per
line, with the per-feed poll line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import toml_config
from tests.feedserver import FeedServer, free_port

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "aggregator.service"
EXEC_START = "/opt/aggregator/.venv/bin/aggregator"


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip(
            "systemd-analyze is not installed (Debian package systemd); .ci/run installs it"
        )
    return path


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def local_unit(tmp_path: Path, text: str | None = None) -> Path:
    """A copy of the unit whose ExecStart is this checkout's program: verify checks that
    the binary exists, and /opt/aggregator exists only on an installed machine."""
    program = Path(sys.executable).parent / "aggregator"
    if not program.exists():
        pytest.skip(f"the console script is not installed at {program}")
    text = (text if text is not None else UNIT.read_text(encoding="utf-8")).replace(
        EXEC_START, str(program)
    )
    path = tmp_path / "aggregator.service"
    path.write_text(text, encoding="utf-8")
    return path


def test_unit_is_notify_and_hardened() -> None:
    s = unit_settings(UNIT.read_text(encoding="utf-8"))
    assert s["Type"] == ["notify"]
    assert s["ExecStart"][0].startswith(EXEC_START + " ")
    assert s["ExecStart"][0].endswith(" run")
    assert s["WatchdogSec"] and s["KillSignal"] == ["SIGTERM"]
    # `systemctl reload` re-reads the config (SIGHUP) instead of failing
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["DynamicUser"] == ["yes"] and s["StateDirectory"] == ["aggregator"]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "RestrictNamespaces": "yes",
        "MemoryDenyWriteExecute": "yes",
    }.items():
        assert s[key] == [value], key
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert s["CapabilityBoundingSet"] == [""]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = analyze()
    proc = subprocess.run(
        [tool, "verify", str(local_unit(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """verify is not a rubber stamp: a bad value is reported (verify warns, exit 0, which is
    why the passing test also wants an empty stderr), and a missing program fails."""
    tool = analyze()
    broken = UNIT.read_text(encoding="utf-8").replace("Type=notify", "Type=notifyy")
    path = local_unit(tmp_path, broken)
    proc = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert "Failed to parse service type" in proc.stderr, proc.stderr
    proc = subprocess.run([tool, "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and EXEC_START in proc.stderr


def exposure(tool: str, unit: Path) -> float:
    proc = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return float(match.group(1))


def test_security_exposure_is_low(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = analyze()
    hardened = exposure(tool, local_unit(tmp_path))
    with capsys.disabled():
        print(f"\n    [client] systemd-analyze security --offline: exposure {hardened} of 10")
    assert hardened <= 2.5
    bare = "\n".join(
        ln
        for ln in UNIT.read_text(encoding="utf-8").splitlines()
        if ln.startswith(("[", "Type", "Exec"))
    )
    bare_dir = tmp_path / "bare"
    bare_dir.mkdir()
    assert exposure(tool, local_unit(bare_dir, bare + "\n")) > hardened + 5


# -- sd_notify, for real --------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    if len(path) >= 100:  # sun_path is 108 bytes
        path = f"/tmp/aggregator-notify-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)


def receive_until(sock: socket.socket, want: str, got: list[str], deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        got.extend(data.decode().split("\n"))
        if want in got:
            return True
    return False


RSS = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Dawn</title>'
    b"<link>https://dawn.example/</link><description>d</description>"
    b"<item><title>Pakistan budget passed</title><link>https://dawn.example/1</link>"
    b"<guid>https://dawn.example/1</guid><pubDate>Mon, 02 Mar 2026 10:00:00 +0000</pubDate>"
    b"</item></channel></rss>"
)


def test_daemon_notifies_systemd_and_logs_json(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, sock_path = notify_socket
    port = free_port()
    with FeedServer() as feeds:
        feeds.add("/dawn.xml", RSS, content_type="application/rss+xml")
        cfg = tmp_path / "aggregator.toml"
        text = toml_config(
            [{"name": "dawn", "url": feeds.url("/dawn.xml"), "allow_private": True}],
            [{"slug": "news", "title": "News"}],
            base_url=f"http://127.0.0.1:{port}",
        ).replace("[server]\n", f'[server]\nhost = "127.0.0.1"\nport = {port}\n')
        cfg.write_text(text, encoding="utf-8")
        env = {
            **os.environ,
            "NOTIFY_SOCKET": sock_path,
            "WATCHDOG_USEC": "400000",  # WATCHDOG=1 every 0.2 s, half of it
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(cfg), "--log-format", "json",
             "--log-level", "info", "run"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )  # fmt: skip
        got: list[str] = []
        try:
            assert receive_until(sock, "READY=1", got, time.monotonic() + 30), got
            # READY means serving: the port answers now, with no retry (503 until the
            # feed's first fetch has succeeded, which may already be done)
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            assert health.status_code in (200, 503)
            if health.status_code == 503:
                assert health.json()["reason"] == "no feed has been fetched successfully yet"
            assert receive_until(sock, "WATCHDOG=1", got, time.monotonic() + 30), got
            # polling is alive: the feed gets fetched while the watchdog keeps coming
            deadline = time.monotonic() + 30
            while not feeds.requests_for("/dawn.xml") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert feeds.requests_for("/dawn.xml")
            # the daemon times each poll: the histogram has the poll once it is stored
            while time.monotonic() < deadline:
                metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                if 'aggregator_poll_duration_seconds_count{status="ok"} 1.0' in metrics:
                    break
                time.sleep(0.05)
            assert 'aggregator_poll_duration_seconds_bucket{le="+Inf",status="ok"} 1.0' in metrics
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            assert health.status_code == 200, health.text  # fetched: healthy
            watchdogs = got.count("WATCHDOG=1")
            got.remove("WATCHDOG=1")
            assert receive_until(sock, "WATCHDOG=1", got, time.monotonic() + 30)
            assert got.count("WATCHDOG=1") >= watchdogs
            proc.send_signal(signal.SIGTERM)
            assert receive_until(sock, "STOPPING=1", got, time.monotonic() + 30), got
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
    assert got.index("READY=1") < got.index("STOPPING=1")
    assert "READY=1" not in got[got.index("STOPPING=1") :]

    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert records, err
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    poll_lines = [r for r in records if r["message"].startswith("feed=dawn ")]
    assert poll_lines, records
    fields = dict(kv.split("=", 1) for kv in poll_lines[0]["message"].split() if "=" in kv)
    assert fields["status"] == "ok" and fields["new"] == "1"
    assert {"http", "merged", "seconds"} <= set(fields)
    # the same fields as JSON fields, typed, for log shippers
    record = poll_lines[0]
    assert (record["event"], record["feed"], record["status"]) == ("poll", "dawn", "ok")
    assert (record["http"], record["read"], record["new"], record["skipped"]) == (200, 1, 1, 0)
    assert isinstance(record["seconds"], float)
    assert any(r["message"].startswith("serving on http://127.0.0.1:") for r in records)
