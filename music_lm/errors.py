"""The one error base: every error music_lm raises on purpose derives from MusicLmError.

The CLI and the page catch MusicLmError and show its message as one line; anything
else is a bug and keeps its traceback. Each stage's own error class (MidiError,
GrammarError, ModelError, ...) also derives from the builtin it always was
(ValueError, RuntimeError, OSError), so code that caught those still does.
"""

from __future__ import annotations


class MusicLmError(Exception):
    """An error music_lm raises on purpose; its message names the file or value at fault."""


class InputError(MusicLmError):
    """A file or text the user gave is not what it must be. A batch over many inputs
    records the input and carries on past it."""
