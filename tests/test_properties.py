"""Properties over random scores.

A score already on the grid (what `to_grid` produces) goes through
encode -> validate -> decode unchanged, and through write_midi -> read_midi ->
to_grid -> encode back to the identical text. A human-played score (ticks off
the grid) moves each onset and note end by at most half a grid step.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

import mido
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import music_lm
from music_lm.midi.read import read_midi
from music_lm.midi.score import KeySignature, Note, Score, TempoChange, TimeSignature, Track
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import decode, encode, to_grid
from music_lm.tokens.validate import validate
from music_lm.tokens.vocab import (
    GRID_PER_QUARTER,
    MAX_DURATION_STEPS,
    VOCAB,
    bar_steps,
    nearest_velocity,
)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TEMPI = VOCAB.tempo_values
SIGNATURES = sorted(VOCAB.time_signatures, key=lambda s: (s[1], s[0]))
KEYS = [(s, m) for m in ("major", "minor") for s in range(-7, 8)]


def first_in_first_out(notes: list[Note]) -> list[Note]:
    """Re-pair same-pitch notes so that they end in the order they start (what MIDI
    readers do); durations never grow past the longest one."""
    by_pitch: dict[int, list[Note]] = defaultdict(list)
    for n in sorted(notes):
        by_pitch[n.pitch].append(n)
    out = []
    for group in by_pitch.values():
        ends = sorted(n.end_tick for n in group)
        out += [
            Note(n.onset_tick, end - n.onset_tick, n.pitch, n.velocity)
            for n, end in zip(group, ends, strict=True)
        ]
    return sorted(out)


def changing(draw, values: list, count: int, first=None) -> list:
    """`count` values, each different from the one before (starting after `first`)."""
    out, previous = [], first
    for _ in range(count):
        value = draw(st.sampled_from([v for v in values if v != previous]))
        out.append(value)
        previous = value
    return out


@st.composite
def grid_scores(draw) -> Score:
    # The meter: one to three time signatures, each for a few bars, at bar lines.
    signatures, tick = [], 0
    for ts in changing(draw, SIGNATURES, draw(st.integers(1, 3))):
        signatures.append(TimeSignature(tick, *ts))
        tick += draw(st.integers(1, 3)) * bar_steps(*ts)
    length = tick  # notes and changes start inside these bars

    tempo_ticks = (
        sorted(draw(st.sets(st.integers(1, length - 1), max_size=3))) if length > 1 else []
    )
    tempo_values = changing(draw, TEMPI, 1 + len(tempo_ticks))
    tempos = [TempoChange(t, b) for t, b in zip([0, *tempo_ticks], tempo_values, strict=True)]

    key_ticks = sorted(draw(st.sets(st.integers(0, length - 1), max_size=3)))
    keys = [
        KeySignature(t, *k)
        for t, k in zip(key_ticks, changing(draw, KEYS, len(key_ticks)), strict=True)
    ]

    has_drums = draw(st.booleans())
    melodic = draw(st.integers(0 if has_drums else 1, 4 - has_drums))
    kinds = [False] * melodic + [True] * has_drums
    order = draw(st.permutations(kinds))
    tracks = []
    for is_drum in order:
        # A narrow pitch range now and then, so that same-pitch overlaps happen.
        low = draw(st.integers(0, 127))
        high = draw(st.sampled_from([low, min(low + 2, 127), 127]))
        notes = draw(
            st.lists(
                st.builds(
                    Note,
                    onset_tick=st.integers(0, length - 1),
                    duration_tick=st.one_of(st.integers(1, 96), st.integers(1, MAX_DURATION_STEPS)),
                    pitch=st.integers(low, high),
                    velocity=st.sampled_from(VOCAB.velocity_values),
                ),
                min_size=1,
                max_size=12,
            )
        )
        program = 0 if is_drum else draw(st.integers(0, 127))
        tracks.append(Track(program, is_drum, first_in_first_out(notes)))
    style = draw(st.sampled_from(["none", "bach", "folk", "jazz", "user"]))
    return Score(GRID_PER_QUARTER, tracks, tempos, signatures, keys, style)


def summary(score: Score) -> tuple:
    """What a score means: instruments and notes, the tempo map, meters and keys."""
    return (
        score.ticks_per_beat,
        score.style,
        [(t.program, t.is_drum, sorted(t.notes)) for t in score.tracks],
        [(t.tick, t.bpm) for t in score.tempos],
        [(t.tick, t.numerator, t.denominator) for t in score.time_signatures],
        [(k.tick, k.sharps, k.mode) for k in score.key_signatures],
    )


@PROPERTY_SETTINGS
@given(grid_scores())
def test_a_grid_score_encodes_to_valid_text_that_decodes_to_the_same_score(score):
    text = encode(score)
    validate(text)
    assert summary(decode(text)) == summary(score)


@PROPERTY_SETTINGS
@given(grid_scores())
def test_a_grid_score_goes_through_midi_and_back_to_the_identical_text(score):
    text = encode(score)
    back = read_midi(write_midi(score))
    grid, changes = to_grid(back.score)
    assert changes.notes == changes.notes_exact == score.note_count
    assert changes.tempos == changes.tempos_exact
    assert not changes.dropped
    assert not changes.changed
    assert not changes.meta_moved
    assert summary(grid) == summary(score)
    assert encode(grid) == text


@PROPERTY_SETTINGS
@given(grid_scores())
def test_a_grid_score_is_already_on_the_grid(score):
    grid, changes = to_grid(score)
    assert summary(grid) == summary(score)
    assert changes.notes == changes.notes_exact


# ---- human-played input ----

PPQS = [96, 100, 120, 192, 220, 384, 480, 960, 1000]


@st.composite
def played_files(draw) -> tuple[int, list[tuple[int, int, int, int, int]]]:
    """(ppq, notes as (channel, onset tick, end tick, pitch, velocity)) off the grid."""
    ppq = draw(st.sampled_from(PPQS))
    shortest = -(-ppq // GRID_PER_QUARTER)  # at least one grid step long
    notes = draw(
        st.lists(
            st.tuples(
                st.sampled_from([0, 1, 9]),
                st.integers(0, 16 * ppq),
                st.integers(shortest, 8 * ppq),
                st.integers(36, 48),
                st.integers(1, 127),
            ),
            min_size=1,
            max_size=20,
        )
    )
    return ppq, [(c, onset, onset + length, p, v) for c, onset, length, p, v in notes]


@PROPERTY_SETTINGS
@given(played_files())
def test_played_notes_move_at_most_half_a_grid_step_and_none_are_lost(make_midi, played):
    ppq, notes = played
    events = []
    for channel, onset, end, pitch, velocity in notes:
        events += [
            (onset, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)),
            (end, mido.Message("note_off", channel=channel, note=pitch, velocity=0)),
        ]
    data = make_midi(events, ticks_per_beat=ppq, midi_type=0)
    encoded = music_lm.encode_midi(data)
    assert encoded.changes.notes == len(notes)
    assert encoded.changes.max_onset_shift_quarters <= 1 / 48
    back = read_midi(music_lm.text_to_midi(encoded.text)).score
    half_step = Fraction(1, 2 * GRID_PER_QUARTER)

    def by_voice(items):
        voices = defaultdict(lambda: ([], [], []))
        for channel, onset, end, pitch, velocity in items:
            onsets, ends, velocities = voices[channel == 9, pitch]
            onsets.append(onset)
            ends.append(end)
            velocities.append(velocity)
        return {key: tuple(sorted(values) for values in lists) for key, lists in voices.items()}

    original = by_voice(
        (c, Fraction(o, ppq), Fraction(e, ppq), p, nearest_velocity(v)) for c, o, e, p, v in notes
    )
    ppq_back = back.ticks_per_beat
    returned = by_voice(
        (
            9 if t.is_drum else 0,
            Fraction(n.onset_tick, ppq_back),
            Fraction(n.end_tick, ppq_back),
            n.pitch,
            n.velocity,
        )
        for t in back.tracks
        for n in t.notes
    )
    assert returned.keys() == original.keys()
    for key, (onsets, ends, velocities) in original.items():
        onsets_back, ends_back, velocities_back = returned[key]
        assert len(onsets_back) == len(onsets)
        assert all(abs(a - b) <= half_step for a, b in zip(onsets, onsets_back, strict=True))
        assert all(abs(a - b) <= half_step for a, b in zip(ends, ends_back, strict=True))
        assert all(b * GRID_PER_QUARTER % 1 == 0 for b in (*onsets_back, *ends_back))
        assert sorted(velocities_back) == velocities


# ---- any readable file ----

MIDI_METERS = [
    (n, d) for d in (1, 2, 4, 8, 16, 32) for n in (1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 15, 24, 32)
]
MIDO_KEYS = ["C", "G", "D", "Eb", "Cb", "C#", "Am", "F#m", "Bbm", "Abm", "A#m"]


@st.composite
def midi_files(draw) -> tuple[int, list[list[tuple[int, mido.Message | mido.MetaMessage]]]]:
    """Arbitrary (but readable) format-1 content: notes on any channel, program changes,
    unmatched note-ons and note-offs, and tempo, meter and key events anywhere."""
    ppq = draw(st.sampled_from(PPQS))
    horizon = 24 * ppq
    ticks = st.integers(0, horizon)
    tracks = []
    for _ in range(draw(st.integers(1, 3))):
        events = []
        for _ in range(draw(st.integers(0, 25))):
            kind = draw(st.sampled_from(["note", "note", "note", "on", "off", "program", "meta"]))
            channel = draw(st.sampled_from([0, 1, 2, 9]))
            pitch = draw(st.integers(40, 44))
            tick = draw(ticks)
            if kind == "note":
                length = draw(st.integers(0, 80 * ppq))
                velocity = draw(st.integers(1, 127))
                events.append(
                    (tick, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))
                )
                events.append(
                    (tick + length, mido.Message("note_off", channel=channel, note=pitch))
                )
            elif kind == "on":
                events.append(
                    (tick, mido.Message("note_on", channel=channel, note=pitch, velocity=99))
                )
            elif kind == "off":
                events.append(
                    (tick, mido.Message("note_on", channel=channel, note=pitch, velocity=0))
                )
            elif kind == "program":
                events.append(
                    (
                        tick,
                        mido.Message(
                            "program_change", channel=channel, program=draw(st.integers(0, 127))
                        ),
                    )
                )
            else:
                meta = draw(
                    st.one_of(
                        st.builds(
                            lambda b: mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(b)),
                            st.floats(5, 900),
                        ),
                        st.builds(
                            lambda m: mido.MetaMessage(
                                "time_signature", numerator=m[0], denominator=m[1]
                            ),
                            st.sampled_from(MIDI_METERS),
                        ),
                        st.builds(
                            lambda k: mido.MetaMessage("key_signature", key=k),
                            st.sampled_from(MIDO_KEYS),
                        ),
                    )
                )
                events.append((tick, meta))
        tracks.append(events)
    return ppq, tracks


@PROPERTY_SETTINGS
@given(midi_files())
def test_any_readable_file_encodes_to_valid_text_that_survives_midi(make_midi, content):
    ppq, tracks = content
    data = make_midi(*tracks, ticks_per_beat=ppq)
    encoded = music_lm.encode_midi(data)
    validate(encoded.text)
    assert encoded.changes.notes == encoded.read.score.note_count == encoded.grid.note_count
    decoded = music_lm.text_to_midi(encoded.text)
    assert music_lm.midi_to_text(decoded) == encoded.text
    assert read_midi(decoded).score.note_count == encoded.grid.note_count
