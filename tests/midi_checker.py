"""An independent checker of generated MIDI: reads the file with mido alone (none of the
masks' own bookkeeping) and asserts every constraint. Used by tests/test_generate.py and by
bench/generate.py, which counts the outputs it rejects."""

from __future__ import annotations

import io

import mido

from music_lm.constraints import Constraints, scale_pitch_classes
from music_lm.instruments import pitch_range


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
    classes = None if constraints.scale is None else scale_pitch_classes(*constraints.scale)
    new_bars_with_onsets = set()
    for channel, notes in facts["notes"].items():
        drums = channel == 9
        program = None if drums else facts["programs"].get(channel, 0)
        new = [n for n in notes if n[0] >= start_beat - 1e-9]
        for onset, _end, pitch in new:
            assert onset < end_beat - 1e-9, f"a note at beat {onset} after the last bar"
            new_bars_with_onsets.add(max(i for i, line in enumerate(lines) if line <= onset))
            if constraints.instruments is not None:
                assert (-1 if drums else program) in constraints.instruments
            if drums:
                continue
            if classes is not None:
                assert pitch % 12 in classes, f"pitch {pitch} outside the scale"
            low, high = constraints.pitch_range or (
                pitch_range(program) if constraints.instrument_ranges else (0, 127)
            )
            assert low <= pitch <= high, f"pitch {pitch} outside {low}..{high}"
        if constraints.max_polyphony is not None and not drums:
            for onset, _end, _pitch in new:
                sounding = sum(1 for o, e, _p in notes if o <= onset < e)
                assert sounding <= constraints.max_polyphony, f"{sounding} notes at beat {onset}"
    # the last bar has a note (the others may be held through)
    assert constraints.bars - 1 in new_bars_with_onsets
    if constraints.lock_tempo:
        assert all(beat < start_beat for beat, _ in facts["tempos"][1:])
    if constraints.lock_meter:
        assert all(beat < start_beat for beat, _ in facts["meters"][1:])
    if constraints.lock_key:
        assert all(beat < start_beat for beat, _ in facts["keys"][1:])
    # no empty bar: each new bar has a note that starts or sounds in it
    all_notes = [n for notes in facts["notes"].values() for n in notes]
    for index in range(constraints.bars):
        start, end = lines[index], lines[index + 1]
        assert any(onset < end - 1e-9 and stop > start + 1e-9 for onset, stop, _ in all_notes), (
            f"new bar {index + 1} is empty"
        )
