"""Fuzz target: MIDI bytes through the reader, the encoder and back out as MIDI.

    python fuzz/midi_target.py -runs=100000 -max_len=8192 build/fuzz/corpus/midi

Any bytes may be refused with our own errors (MidiError, CodecError); anything else
raised is a crash. A file that encodes must also keep the codec's promises: its text
decodes to the same grid score, that score is written as MIDI (format 1 and 0) that
reads back, and text -> MIDI -> text gives the same text (`music-lm inspect`'s check).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root makes `fuzz` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.harness import fuzz_main, instrumented

with instrumented(__name__ == "__main__"):
    from music_lm.midi.read import MidiError, read_midi
    from music_lm.midi.write import write_midi
    from music_lm.tokens.codec import CodecError, decode
    from music_lm.tokens.encoded import Encoded, encode_midi
    from music_lm.tokens.report import format_inspection, verify_round_trip

REFUSALS = (MidiError, CodecError)  # how the encode path may say no
SUSTAIN_DROPPED = "controller CC64 (sustain pedal)"


def check(data: bytes) -> None:
    """Encode `data` as a MIDI file; when it encodes, check the round trip."""
    try:
        encoded = encode_midi(data)
    except REFUSALS:
        return
    check_round_trip(encoded)
    if SUSTAIN_DROPPED in encoded.read.dropped:  # the pedal has a code path of its own
        try:
            sustained = encode_midi(data, sustain=True)
        except REFUSALS:
            return
        check_round_trip(sustained)


def check_round_trip(encoded: Encoded) -> None:
    """The promises of the codec for a file it encoded (AssertionError naming the one broken)."""
    name = encoded.read.source_name
    if decode(encoded.text) != encoded.grid:
        raise AssertionError(f"{name}: decode(encode(grid)) differs from the grid score")
    verified = verify_round_trip(encoded)  # writes format 1 and reads it back
    format_inspection(encoded, verified)
    if not verified.ok:
        raise AssertionError(
            f"{name}: text -> MIDI -> text is not the identity (text identical: "
            f"{verified.text_identical}, notes back {verified.notes_back} of "
            f"{verified.notes_expected}, meta identical: {verified.meta_identical})"
        )
    format0 = read_midi(write_midi(encoded.grid, midi_format=0), name="<format 0>")
    if format0.score.note_count != encoded.grid.note_count:
        raise AssertionError(f"{name}: the format 0 file reads back with other notes")


if __name__ == "__main__":
    fuzz_main(check, sys.argv)
