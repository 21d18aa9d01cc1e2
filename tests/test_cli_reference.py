"""The command line's help and its reference: every command's --help reads cleanly, and
docs/cli.md is what scripts/cli_reference.py makes of the commands as they are now."""

from __future__ import annotations

import pytest
import typer.main
from cli_runner import run_cli

from music_lm.cli import app


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of `music-lm`, the root first, as its words."""
    paths: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


def test_the_walk_finds_every_command() -> None:
    found = {" ".join(p) for p in command_paths()}
    assert {"", "generate", "continue", "finetune", "corpus", "corpus build"} <= found
    assert len(found) >= 15


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "music-lm")
def test_help_prints_no_type_after_a_flag(monkeypatch, capsys, path) -> None:
    """`--force`, `--sustain/--no-sustain`, `--help`: flags take no value, and their help
    row shows none (Typer would print `<bool>`)."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _err = run_cli(monkeypatch, capsys, *path, "--help")
    assert code == 0
    assert "--help" in out
    assert "<bool>" not in out
