"""music_lm: symbolic music generation with a MIDI <-> token-text round trip.

The codec API imports no torch:

    >>> import music_lm
    >>> text = music_lm.midi_to_text("midi_in/bach_chorale.mid")
    >>> midi_bytes = music_lm.text_to_midi(text)
"""

import os

# OpenMP, which runs torch's CPU threads, makes its idle threads spin while they wait for work.
# When anything else wants the cores (the page's browser, another process, a CI neighbour),
# the spinning threads and the one with work take turns: on two cores, decoding on the page
# ran 15-30x slower (bench/threads.py). PASSIVE makes idle threads sleep instead. It must be
# set before torch loads libgomp, hence here; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from music_lm.api import (
    Encoded,
    encode_midi,
    inspect_midi,
    midi_to_text,
    text_to_midi,
    text_to_score,
)
from music_lm.codec import CodecError, decode, encode, to_grid
from music_lm.grammar import GrammarError, validate
from music_lm.midi_io import MidiError, read_midi, write_midi
from music_lm.score import KeySignature, Note, Score, TempoChange, TimeSignature, Track

__version__ = "0.1.0"

__all__ = [
    "CodecError",
    "Encoded",
    "GrammarError",
    "KeySignature",
    "MidiError",
    "Note",
    "Score",
    "TempoChange",
    "TimeSignature",
    "Track",
    "decode",
    "encode",
    "encode_midi",
    "inspect_midi",
    "midi_to_text",
    "read_midi",
    "text_to_midi",
    "text_to_score",
    "to_grid",
    "validate",
    "write_midi",
]
