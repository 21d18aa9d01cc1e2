"""Playable pitch ranges of the General MIDI instruments, as data. Pure Python.

Transposition augmentation keeps every track inside its instrument's range (and
constrained generation will use the same table). Ranges are the written-sounding
ranges of the real instruments, widened a little at the edges; synth sounds, pads,
effects and keyboards get the piano's 88 keys or the whole MIDI range. Drums have no
range: drum hits are never transposed.
"""

from __future__ import annotations

from music_lm.midi.gm import GM_PROGRAMS, name_to_pitch

# One row per range, listing the programs (by GM number) that share it.
_RANGE_ROWS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("A0", "C8", (0, 1, 2, 3, 4, 5, 7, 15, 46)),  # pianos, clavinet, dulcimer, harp
    ("F1", "F6", (6,)),  # harpsichord
    ("C4", "C8", (8,)),  # celesta
    ("G5", "C8", (9, 112)),  # glockenspiel, tinkle bell
    ("C4", "C7", (10,)),  # music box
    ("F3", "F6", (11,)),  # vibraphone
    ("C2", "C7", (12,)),  # marimba
    ("F4", "C8", (13,)),  # xylophone
    ("C4", "G5", (14,)),  # tubular bells
    ("C2", "C7", (16, 17, 18, 20)),  # organs
    ("A0", "C8", (19,)),  # church organ (pedals and manuals)
    ("F2", "A6", (21, 23)),  # accordions
    ("C3", "C7", (22,)),  # harmonica
    ("E2", "E6", (24, 25, 26, 27, 28, 29, 30, 31, 105, 106)),  # guitars, banjo, shamisen
    ("E1", "G4", (32, 33, 34, 35, 36, 37)),  # basses
    ("C1", "C5", (38, 39)),  # synth basses
    ("G3", "A7", (40, 110)),  # violin, fiddle
    ("C3", "E6", (41,)),  # viola
    ("C2", "C6", (42,)),  # cello
    ("E1", "G4", (43,)),  # contrabass
    ("C1", "C7", (44, 45, 48, 49, 50, 51, 55)),  # string ensembles, orchestra hit
    ("C2", "C4", (47,)),  # timpani
    ("C2", "C6", (52, 53, 54)),  # choirs and voices
    ("E3", "D6", (56, 59)),  # trumpets
    ("E2", "F5", (57,)),  # trombone
    ("D1", "F4", (58,)),  # tuba
    ("B1", "F5", (60,)),  # french horn
    ("E1", "C6", (61, 62, 63)),  # brass sections
    ("G#3", "E6", (64,)),  # soprano sax
    ("C#3", "A5", (65,)),  # alto sax
    ("G#2", "E5", (66,)),  # tenor sax
    ("C#2", "A4", (67,)),  # baritone sax
    ("A#3", "A6", (68,)),  # oboe
    ("E3", "C6", (69,)),  # english horn
    ("A#1", "E5", (70,)),  # bassoon
    ("D3", "C7", (71,)),  # clarinet
    ("D5", "C8", (72,)),  # piccolo
    ("C4", "D7", (73, 74, 75, 76, 77, 78, 79)),  # flutes, recorder, pipes, whistle
    ("C3", "C6", (104, 107, 108, 109, 111)),  # sitar, koto, kalimba, bagpipe, shanai
    ("C2", "C7", (113, 114, 115, 116, 117, 118)),  # tuned percussion
)

# Synth leads, pads, effects and sound effects: the whole MIDI range.
_FULL_RANGE = (0, 127)


def _ranges() -> tuple[tuple[int, int], ...]:
    table: list[tuple[int, int]] = [_FULL_RANGE] * len(GM_PROGRAMS)
    for low, high, programs in _RANGE_ROWS:
        for program in programs:
            table[program] = (name_to_pitch(low), name_to_pitch(high))
    return tuple(table)


PROGRAM_RANGES: tuple[tuple[int, int], ...] = _ranges()


def pitch_range(program: int) -> tuple[int, int]:
    """(lowest, highest) MIDI pitch of a GM program (0..127)."""
    if not 0 <= program < len(PROGRAM_RANGES):
        raise ValueError(f"GM program must be in 0..127, got {program}")
    return PROGRAM_RANGES[program]


def transpose_limits(program: int, low_pitch: int, high_pitch: int) -> tuple[int, int]:
    """The semitone shifts (down, up) that keep a track playing `low_pitch`..`high_pitch`
    inside its instrument's range.

    A track that already goes outside the range (a piano part on a flute program) may
    move as long as it goes no further out than it already is, and never past MIDI's
    0..127 (the ranges lie inside it). Returns (most negative shift, most positive
    shift); (0, 0) at worst.
    """
    range_low, range_high = pitch_range(program)
    return min(range_low, low_pitch) - low_pitch, max(range_high, high_pitch) - high_pitch
