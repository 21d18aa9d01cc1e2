"""A MIDI file on its way to token text: what was read, its grid score, the text, and the
record of what moving onto the grid changed (which the round-trip report reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from music_lm.midi.read import MidiRead, read_midi
from music_lm.midi.score import Score
from music_lm.tokens.codec import CodecError, GridChanges, encode, to_grid


@dataclass
class Encoded:
    """A MIDI file on its way to text: what was read, its grid score, the text, the changes."""

    read: MidiRead
    grid: Score
    changes: GridChanges
    text: str

    @property
    def token_count(self) -> int:
        return len(self.text.split())


def encode_midi(
    source: str | Path | bytes, name: str | None = None, sustain: bool = False
) -> Encoded:
    """Read a MIDI file (path or bytes) and encode it, keeping the record of changes.

    `sustain` applies the sustain pedal to note lengths (see `read_midi`)."""
    read = read_midi(source, name=name, sustain=sustain)
    try:
        grid, changes = to_grid(read.score)
    except CodecError as err:
        raise CodecError(f"{read.source_name}: {err}") from None
    changes.remarks.update(read.remarks)
    changes.dropped.update(read.dropped)
    return Encoded(read, grid, changes, encode(grid))
