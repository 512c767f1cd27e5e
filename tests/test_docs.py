"""README.md documents every command and every config key (and nothing stale)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from aggregator import cli, config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out += commands(command, f"{prefix}{name} ")
        else:
            out.append(f"{prefix}{name}")
    return out


@pytest.mark.parametrize("command", commands(cli.cli))
def test_every_command_is_documented(command: str) -> None:
    assert f"aggregator {command}" in README


KEYS = [
    f"[[{name}]] {k}" if name in ("feeds", "topics") else f"[{name}] {k}"
    for name, cls in config.SECTIONS.items()
    if cls is not None
    for k in config.keys(cls)
]


@pytest.mark.parametrize("key", KEYS)
def test_every_config_key_is_documented(key: str) -> None:
    assert f"`{key}`" in README


def test_readme_opens_with_the_two_commands() -> None:
    head = README[:1500]
    assert ".venv/bin/pip install -e '.[dev]'" in head and ".venv/bin/aggregator run" in head
    assert ".venv/bin/pytest" in head
