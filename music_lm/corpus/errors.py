"""The corpus stage's errors, apart so that every corpus module (the sources, the Debian
packages they may fetch) can raise them without importing one another."""

from __future__ import annotations

from music_lm.errors import MusicLmError


class CorpusError(MusicLmError, ValueError):
    """A corpus that cannot be built or read: names the folder or source and the problem."""


class SourceError(CorpusError):
    """A source that cannot be used: names the source and the problem."""
