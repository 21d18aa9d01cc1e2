"""Stage 9, cli: the `music-lm` command, thin Typer commands over importable functions.

`root` holds the Typer app, the global options and the error handling; each other module
adds one group of commands to it when imported, and `--help` lists them in that order
(hence the unsorted import).
"""

from music_lm.cli import codec, training, generation, infill, render, corpus  # noqa: F401, I001
from music_lm.cli.root import app, main

__all__ = ["app", "main"]
