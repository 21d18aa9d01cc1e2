"""Running `music-lm` in process, as the installed command runs it (through `main`, which
turns errors into one line and an exit code), for the tests."""

from __future__ import annotations

import sys

import pytest


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `music-lm ARGS...`."""
    from music_lm.cli import main

    monkeypatch.setattr(sys, "argv", ["music-lm", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    out, err = capsys.readouterr()
    return stop.value.code or 0, out, err
