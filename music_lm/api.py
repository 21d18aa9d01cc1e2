"""The codec's public functions: MIDI file or bytes <-> token text. No torch here."""

from __future__ import annotations

from pathlib import Path

from music_lm.midi.score import Score
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import decode
from music_lm.tokens.encoded import encode_midi
from music_lm.tokens.report import format_inspection, verify_round_trip


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
