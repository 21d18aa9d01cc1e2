"""music_lm: symbolic music generation with a MIDI <-> token-text round trip.

The stages, each a subpackage importing only from those above it (docs/architecture.md):

    midi -> tokens -> corpus -> model -> training -> generation -> render -> page -> cli

The public API is loaded lazily, on first use: the codec's functions import no torch,
and `music_lm.generate` loads torch and the model only when it is called.

    >>> import music_lm
    >>> text = music_lm.midi_to_text("midi_in/bach_chorale.mid")
    >>> midi_bytes = music_lm.text_to_midi(text)
    >>> take = music_lm.generate("midi_in/folk_tune.mid", random_seed=1)
    >>> take = music_lm.infill("midi_in/band_with_drums.mid", "bass", bars="3-6")
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

# OpenMP, which runs torch's CPU threads, makes its idle threads spin while they wait for work.
# When anything else wants the cores (the page's browser, another process, a CI neighbour),
# the spinning threads and the one with work take turns: on two cores, decoding on the page
# ran 15-30x slower (bench/threads.py). PASSIVE makes idle threads sleep instead. It must be
# set before torch loads libgomp, hence here; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# name -> the module that defines it; imported on first access (PEP 562).
_PUBLIC: dict[str, str] = {
    "MusicLmError": "music_lm.errors",
    "KeySignature": "music_lm.midi.score",
    "Note": "music_lm.midi.score",
    "Score": "music_lm.midi.score",
    "TempoChange": "music_lm.midi.score",
    "TimeSignature": "music_lm.midi.score",
    "Track": "music_lm.midi.score",
    "MidiError": "music_lm.midi.read",
    "read_midi": "music_lm.midi.read",
    "write_midi": "music_lm.midi.write",
    "GrammarError": "music_lm.tokens.grammar",
    "validate": "music_lm.tokens.validate",
    "CodecError": "music_lm.tokens.codec",
    "decode": "music_lm.tokens.codec",
    "encode": "music_lm.tokens.codec",
    "to_grid": "music_lm.tokens.codec",
    "Encoded": "music_lm.tokens.encoded",
    "encode_midi": "music_lm.tokens.encoded",
    "inspect_midi": "music_lm.api",
    "midi_to_text": "music_lm.api",
    "text_to_midi": "music_lm.api",
    "text_to_score": "music_lm.api",
    "Constraints": "music_lm.generation.constraints",
    "Sampling": "music_lm.generation.settings",
    "generate": "music_lm.generation.runner",  # loads torch and transformers
    "infill": "music_lm.generation.infill",  # loads torch and transformers
}

__all__ = [  # the keys of _PUBLIC, written out for linters
    "CodecError",
    "Constraints",
    "Encoded",
    "GrammarError",
    "KeySignature",
    "MidiError",
    "MusicLmError",
    "Note",
    "Sampling",
    "Score",
    "TempoChange",
    "TimeSignature",
    "Track",
    "decode",
    "encode",
    "encode_midi",
    "generate",
    "infill",
    "inspect_midi",
    "midi_to_text",
    "read_midi",
    "text_to_midi",
    "text_to_score",
    "to_grid",
    "validate",
    "write_midi",
]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'music_lm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


if TYPE_CHECKING:  # the same names, for type checkers and editors
    from music_lm.api import inspect_midi, midi_to_text, text_to_midi, text_to_score
    from music_lm.errors import MusicLmError
    from music_lm.generation.constraints import Constraints
    from music_lm.generation.infill import infill
    from music_lm.generation.runner import generate
    from music_lm.generation.settings import Sampling
    from music_lm.midi.read import MidiError, read_midi
    from music_lm.midi.score import KeySignature, Note, Score, TempoChange, TimeSignature, Track
    from music_lm.midi.write import write_midi
    from music_lm.tokens.codec import CodecError, decode, encode, to_grid
    from music_lm.tokens.encoded import Encoded, encode_midi
    from music_lm.tokens.grammar import GrammarError
    from music_lm.tokens.validate import validate
