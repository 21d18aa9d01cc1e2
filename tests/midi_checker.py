"""An independent checker of generated MIDI: reads the file with mido alone (none of the
masks' own bookkeeping) and asserts every constraint. Used by tests/test_generate.py,
tests/test_options.py and by bench/generate.py, which counts the outputs it rejects.

Its tables (scales, instrument ranges, instrument groups) are written here, from the
General MIDI standard and music theory, not imported from music_lm: a wrong table in the
code must not agree with itself. A program missing from RANGES fails loudly (add its row).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import mido

if TYPE_CHECKING:  # the constraints asked for are read, never their tables
    from music_lm.generation.constraints import Constraints

# Semitones above the tonic.
SCALE_STEPS: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic-minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic-minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "pentatonic-major": (0, 2, 4, 7, 9),
    "pentatonic-minor": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "whole-tone": (0, 2, 4, 6, 8, 10),
    "chromatic": tuple(range(12)),
}

# Playable (sounding) ranges, as MIDI numbers, of the GM programs the tests' seeds and
# headers use: C4 is 60, A0 21, C8 108.
RANGES: dict[int, tuple[int, int]] = {
    **dict.fromkeys(range(0, 6), (21, 108)),  # pianos: A0-C8
    24: (40, 88),  # nylon guitar: E2-E6
    **dict.fromkeys(range(32, 38), (28, 67)),  # basses: E1-G4
    40: (55, 105),  # violin: G3-A7
    41: (48, 88),  # viola: C3-E6
    42: (36, 84),  # cello: C2-C6
    48: (24, 96),  # string ensemble: C1-C7
    68: (58, 93),  # oboe: A#3-A6
    70: (34, 76),  # bassoon: A#1-E5
    71: (50, 96),  # clarinet: D3-C7
    73: (60, 98),  # flute: C4-D7
}

# General MIDI's instrument families (eight programs each), by the names the options take;
# drums are channel 10 (9 counted from zero), whatever their program.
GROUPS: dict[str, frozenset[int]] = {
    "piano": frozenset(range(0, 8)),
    "guitar": frozenset(range(24, 32)),
    "bass": frozenset(range(32, 40)),
    "strings": frozenset(range(40, 56)),
    "pipe": frozenset(range(72, 80)),
}
DRUM_CHANNEL = 9
DRUMS = -1  # how Constraints.instruments names the drum track
GM_KIT = range(35, 82)  # General MIDI's percussion keys


def scale_classes(tonic: int, scale: str) -> frozenset[int]:
    return frozenset((tonic + step) % 12 for step in SCALE_STEPS[scale])


def playable(program: int) -> tuple[int, int]:
    assert program in RANGES, f"program {program}: not in the checker's RANGES table yet"
    return RANGES[program]


def midi_facts(data: bytes) -> dict:
    """Notes per channel with (onset, end, pitch) in quarter notes, the tempo and meter
    events, programs by channel, and the marker, from the MIDI bytes alone."""
    midi = mido.MidiFile(file=io.BytesIO(data))
    ppq = midi.ticks_per_beat
    facts = {"notes": {}, "tempos": [], "meters": [], "keys": [], "programs": {}, "markers": []}
    for track in midi.tracks:
        tick = 0
        sounding: dict[tuple[int, int], list[int]] = {}
        for message in track:
            tick += message.time
            beat = tick / ppq
            if message.type == "set_tempo":
                facts["tempos"].append((beat, round(mido.tempo2bpm(message.tempo), 2)))
            elif message.type == "time_signature":
                facts["meters"].append((beat, (message.numerator, message.denominator)))
            elif message.type == "key_signature":
                facts["keys"].append((beat, message.key))
            elif message.type == "marker":
                facts["markers"].append((beat, message.text))
            elif message.type == "program_change":
                facts["programs"][message.channel] = message.program
            elif message.type == "note_on" and message.velocity > 0:
                sounding.setdefault((message.channel, message.note), []).append(beat)
            elif message.type in ("note_off", "note_on"):
                onset = sounding[(message.channel, message.note)].pop(0)
                facts["notes"].setdefault(message.channel, []).append((onset, beat, message.note))
    return facts


MARKER = "music_lm continuation"  # the marker music_lm writes where the new bars start
NoteRow = tuple[int, "int | None", float, float, int]  # channel, program, onset, end, pitch


def continuation_beat(facts: dict) -> float:
    """The beat of the one continuation marker."""
    markers = facts["markers"]
    assert [text for _beat, text in markers] == [MARKER]
    return markers[0][0]


def new_notes(facts: dict) -> list[NoteRow]:
    """(channel, program or None for drums, onset, end, pitch) of each note from the
    continuation marker on, sorted."""
    start = continuation_beat(facts)
    return sorted(
        (channel, None if channel == DRUM_CHANNEL else facts["programs"].get(channel, 0),
         onset, end, pitch)
        for channel, notes in facts["notes"].items()
        for onset, end, pitch in notes
        if onset >= start - 1e-9
    )  # fmt: skip


def melodic_notes(facts: dict, least: int = 5) -> list[NoteRow]:
    """The new notes off the drum channel; at least `least` of them, or there is nothing
    to judge a constraint by."""
    notes = [n for n in new_notes(facts) if n[0] != DRUM_CHANNEL]
    assert len(notes) >= least, f"too few new notes to judge: {notes}"
    return notes


def text_event(data: bytes) -> str:
    """The first text event of a MIDI file (music_lm's settings line)."""
    midi = mido.MidiFile(file=io.BytesIO(data))
    return next(m.text for t in midi.tracks for m in t if m.type == "text")


def changes(events: list[tuple[float, object]]) -> list[tuple[float, object]]:
    """The events that change the value in force: a time signature that restates the
    meter (it marks where a short bar ends) is no change."""
    ordered = sorted(events, key=lambda event: event[0])
    return [e for i, e in enumerate(ordered) if i == 0 or e[1] != ordered[i - 1][1]]


def bar_lines(facts: dict, start_beat: float, bars: int) -> list[float]:
    """The beats where the new bars start, and where the last one ends, by the meters."""
    meters = sorted(facts["meters"])
    lines = [start_beat]
    for _ in range(bars):
        here = lines[-1]
        numerator, denominator = [m for beat, m in meters if beat <= here + 1e-9][-1]
        lines.append(here + 4 * numerator / denominator)
    return lines


def check_constraints(data: bytes, constraints: Constraints, start_beat: float):
    """Every constraint, read from the MIDI: new notes only (from `start_beat` on)."""
    facts = midi_facts(data)
    assert facts["markers"] == [(start_beat, "music_lm continuation")]
    lines = bar_lines(facts, start_beat, constraints.bars)
    end_beat = lines[-1]
    classes = None if constraints.scale is None else scale_classes(*constraints.scale)
    new_bars_with_onsets = set()
    for channel, notes in facts["notes"].items():
        drums = channel == DRUM_CHANNEL
        program = None if drums else facts["programs"].get(channel, 0)
        new = [n for n in notes if n[0] >= start_beat - 1e-9]
        for onset, _end, pitch in new:
            assert onset < end_beat - 1e-9, f"a note at beat {onset} after the last bar"
            new_bars_with_onsets.add(max(i for i, line in enumerate(lines) if line <= onset))
            if constraints.instruments is not None:
                assert (DRUMS if drums else program) in constraints.instruments
            if drums:
                continue
            if classes is not None:
                assert pitch % 12 in classes, f"pitch {pitch} outside the scale"
            low, high = constraints.pitch_range or (
                playable(program) if constraints.instrument_ranges else (0, 127)
            )
            assert low <= pitch <= high, f"pitch {pitch} outside {low}..{high}"
        if constraints.max_polyphony is not None and not drums:
            for onset, _end, _pitch in new:
                sounding = sum(1 for o, e, _p in notes if o <= onset < e)
                assert sounding <= constraints.max_polyphony, f"{sounding} notes at beat {onset}"
    # the last bar has a note (the others may be held through)
    assert constraints.bars - 1 in new_bars_with_onsets
    check_decoding_defaults(facts, constraints, start_beat, end_beat)
    for kind, locked in (("tempos", constraints.lock_tempo), ("meters", constraints.lock_meter),
                         ("keys", constraints.lock_key)):  # fmt: skip
        if locked:
            assert all(beat < start_beat for beat, _ in changes(facts[kind])[1:]), kind
    # no empty bar: each new bar has a note that starts or sounds in it
    all_notes = [n for notes in facts["notes"].values() for n in notes]
    for index in range(constraints.bars):
        start, end = lines[index], lines[index + 1]
        assert any(onset < end - 1e-9 and stop > start + 1e-9 for onset, stop, _ in all_notes), (
            f"new bar {index + 1} is empty"
        )


def check_decoding_defaults(
    facts: dict, constraints: Constraints, start_beat: float, end_beat: float
) -> None:
    """The decoding defaults, read from the MIDI: no note (the seed's included) rings past
    the end; new drum notes on the kit, of one length (shorter only where the piece ends);
    no track starts one pitch twice at one onset."""
    if not constraints.hold_past_end:
        for channel, notes in facts["notes"].items():
            for onset, end, pitch in notes:
                assert end <= end_beat + 1e-9, (
                    f"channel {channel + 1}: pitch {pitch} from beat {onset} rings to beat "
                    f"{end}, past the end at {end_beat}"
                )
    seed_drums = {p for o, _e, p in facts["notes"].get(DRUM_CHANNEL, []) if o < start_beat - 1e-9}
    new_drums = [n for n in facts["notes"].get(DRUM_CHANNEL, []) if n[0] >= start_beat - 1e-9]
    kit = {"gm": set(GM_KIT), "seed": seed_drums or set(GM_KIT), "any": set(range(128))}
    for onset, _end, key in new_drums:
        assert key in kit[constraints.drum_keys], f"drum key {key} at beat {onset} off the kit"
    if constraints.drum_steps is not None:
        lengths = {round(e - o, 6) for o, e, _k in new_drums if e < end_beat - 1e-9}
        assert len(lengths) <= 1, f"new drum notes of several lengths: {sorted(lengths)}"
        if constraints.drum_steps:
            assert lengths <= {round(constraints.drum_steps / 24, 6)}, lengths
    if not constraints.unisons:
        for channel, notes in facts["notes"].items():
            starts = [(o, p) for o, _e, p in notes if o >= start_beat - 1e-9]
            assert len(starts) == len(set(starts)), f"channel {channel + 1}: a pitch twice at once"
