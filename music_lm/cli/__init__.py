"""Stage 9, cli: the `music-lm` command, thin Typer commands over importable functions."""

from music_lm.cli.root import app, main

__all__ = ["app", "main"]
