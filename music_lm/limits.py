"""Resource limits: how big an input may be and how long a generation may run, so that a
hostile or broken file gets a clear refusal instead of eating the memory or the hours.

The defaults hold every real piece we have seen with room to spare (music21's corpus: at most
1,331 notes per part, 100 MIDI tracks, 9,000 quarter notes). Change them with the
environment (`MUSIC_LM_LIMITS="file_mb=200,notes=5000000"`), the command line
(`music-lm --limit file_mb=200 encode big.mid`) or in Python (`set_limits`). Pure Python.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from music_lm.errors import InputError


class LimitError(InputError, ValueError):
    """A malformed limit setting (the limits themselves are enforced where input is read)."""


@dataclass(frozen=True)
class Limits:
    file_mb: float = 64.0  # a MIDI or token-text file, read whole into memory
    tracks: int = 1024  # MIDI track chunks in one file
    notes: int = 1_000_000  # notes in one MIDI file
    quarters: int = 100_000  # length of a piece in quarter notes (about 14 hours at 120 BPM)
    tokens: int = 4_000_000  # words of one token text
    generation_s: float = 600.0  # sampling time of one `generate` call (the page has its own)
    audio_s: float = 1200.0  # a render: 20 minutes of float stereo at 44.1 kHz is 420 MB

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not value > 0:
                raise LimitError(f"limit {item.name} must be positive, got {value}")

    @property
    def file_bytes(self) -> int:
        return int(self.file_mb * 2**20)


def parse_limits(text: str, base: Limits | None = None) -> Limits:
    """'file_mb=200,notes=5000000' over `base` (the defaults when None)."""
    base = base or Limits()
    known = {item.name: item.type for item in fields(Limits)}
    changes: dict[str, float | int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or name not in known:
            raise LimitError(f"not a limit: {part!r} (NAME=VALUE, NAME one of {', '.join(known)})")
        try:
            number = float(value)
            changes[name] = int(number) if known[name] in (int, "int") else number
        except ValueError:
            raise LimitError(f"limit {name} takes a number, got {value.strip()!r}") from None
    return replace(base, **changes)


_chosen: Limits | None = None


def limits() -> Limits:
    """The limits in force: those set by `set_limits`, else $MUSIC_LM_LIMITS over the
    defaults."""
    if _chosen is not None:
        return _chosen
    return parse_limits(os.environ.get("MUSIC_LM_LIMITS", ""))


def set_limits(chosen: Limits | None) -> None:
    """Put `chosen` in force for this process (None: back to the environment's)."""
    global _chosen
    _chosen = chosen


def check_size(size_bytes: int, name: str, error: type[ValueError] = LimitError) -> None:
    """Refuse a file over the size limit with `error`, naming it: before it is read, where
    possible (a path's size is known without reading it)."""
    limit = limits().file_bytes
    if size_bytes > limit:
        raise error(
            f"{name}: {size_bytes:,} bytes is over the limit of {limit:,} bytes "
            f"(raise it with --limit file_mb=N)"
        )


def check_length(quarters: float, name: str, error: type[ValueError] = LimitError) -> None:
    """Refuse a piece longer than the `quarters` limit with `error`, naming it: a corrupt
    delta time makes a file of a few bytes last for days, and every stage after reading
    (bar lines, the grid, audio, music21) would take forever on it. An empty `name`: the
    caller adds it."""
    most = limits().quarters
    if quarters > most:
        where = f"{name}: " if name else ""
        raise error(
            f"{where}the piece lasts {quarters:,.0f} quarter notes; the limit is {most:,} "
            "(a corrupt delta time? raise it with --limit quarters=N)"
        )


__all__ = [
    "LimitError",
    "Limits",
    "check_length",
    "check_size",
    "limits",
    "parse_limits",
    "set_limits",
]
