"""The codec's public functions: MIDI file or bytes <-> token text. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from music_lm.midi.io import MidiRead, read_midi, write_midi
from music_lm.midi.score import Score
from music_lm.tokens.codec import CodecError, GridChanges, decode, encode, to_grid
from music_lm.tokens.report import format_inspection, verify_round_trip


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


def midi_to_text(source: str | Path | bytes, sustain: bool = False) -> str:
    """Token text of a MIDI file (a path or the file's bytes)."""
    return encode_midi(source, sustain=sustain).text


def text_to_score(text: str) -> Score:
    """Grid score of token text; GrammarError names the first bad token."""
    return decode(text)


def text_to_midi(text: str) -> bytes:
    """A DAW-ready Standard MIDI File (bytes) of token text."""
    return write_midi(decode(text))


def inspect_midi(source: str | Path | bytes, name: str | None = None, sustain: bool = False) -> str:
    """The summary and round-trip report of a MIDI file, as text for a terminal."""
    encoded = encode_midi(source, name=name, sustain=sustain)
    verified = verify_round_trip(encoded)
    return format_inspection(encoded, verified)
