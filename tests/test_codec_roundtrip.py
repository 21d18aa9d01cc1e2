"""The codec's fidelity rules, one test each: a tiny MIDI file goes to text and back
(`midi_to_text` -> `text_to_midi` -> `read_midi`) and is compared with what the
ORIGINAL file holds, in quarter notes. Every decoded text also survives
text -> MIDI -> text unchanged."""

from __future__ import annotations

import io
import itertools
import os
import struct
from collections import Counter
from fractions import Fraction

import mido
import pytest

import music_lm
from music_lm.midi.read import MidiRead
from music_lm.tokens.vocab import GRID_PER_QUARTER, nearest_velocity

F = Fraction  # times in quarter notes, exactly
PIANO, VIOLIN, CELLO = 0, 40, 42
HALF_STEP = F(1, 2 * GRID_PER_QUARTER)  # 1/48 of a quarter note


def round_trip(data: bytes) -> MidiRead:
    """MIDI bytes -> text -> MIDI bytes, read back; the text must survive a second trip,
    and mido must read the same notes in the written file as our reader does (the writer
    is not judged by its own reader alone)."""
    text = music_lm.midi_to_text(data)
    music_lm.validate(text)
    decoded = music_lm.text_to_midi(text)
    assert music_lm.midi_to_text(decoded) == text
    read = music_lm.read_midi(decoded)
    assert mido_notes(decoded) == sorted(
        (-1 if t.is_drum else t.program, n.pitch, F(n.onset_tick, read.score.ticks_per_beat),
         F(n.duration_tick, read.score.ticks_per_beat), n.velocity)
        for t in read.score.tracks
        for n in t.notes
    )  # fmt: skip
    return read


def mido_notes(data: bytes) -> list[tuple[int, int, F, F, int]]:
    """(program, or -1 on the drum channel; pitch, onset and duration in quarter notes,
    velocity) of every note of a MIDI file, as mido reads it: notes paired first in, first
    out per track, channel and pitch."""
    midi = mido.MidiFile(file=io.BytesIO(data))
    notes = []
    for track in midi.tracks:
        tick, programs, sounding = 0, {}, {}
        for message in track:
            tick += message.time
            if message.type == "program_change":
                programs[message.channel] = message.program
            elif message.type in ("note_on", "note_off"):
                key = (message.channel, message.note)
                if message.type == "note_on" and message.velocity > 0:
                    sounding.setdefault(key, []).append((tick, message.velocity))
                    continue
                onset, velocity = sounding[key].pop(0)
                drums = message.channel == 9
                notes.append((-1 if drums else programs.get(message.channel, 0), message.note,
                              F(onset, midi.ticks_per_beat), F(tick - onset, midi.ticks_per_beat),
                              velocity))  # fmt: skip
    return sorted(notes)


def meta(kind: str, **fields) -> mido.MetaMessage:
    return mido.MetaMessage(kind, **fields)


def program(channel: int, number: int) -> tuple[int, mido.Message]:
    return (0, mido.Message("program_change", channel=channel, program=number))


def on_grid(quarters: F) -> F:
    """Nearest point of the 1/24-quarter grid (halves go later)."""
    steps = quarters * GRID_PER_QUARTER
    return F(int(steps + F(1, 2)), GRID_PER_QUARTER)


# ---- grid-aligned notes come back exactly ----

RHYTHMS = {
    "32nd notes": [(F(k, 8), F(1, 8)) for k in range(8)],
    "eighth-note triplets": [(F(k, 3), F(1, 3)) for k in range(6)],
    "16th-note triplets": [(F(k, 6), F(1, 6)) for k in range(6)],
    "32nd-note triplets": [(F(k, 12), F(1, 12)) for k in range(12)],
    "dotted values": [
        (F(0), F(3, 2)),
        (F(3, 2), F(1, 2)),
        (F(2), F(3, 4)),
        (F(11, 4), F(1, 4)),
        (F(3), F(3)),
        (F(6), F(3, 8)),
        (F(51, 8), F(7, 4)),  # double-dotted quarter
    ],
    "long notes": [(F(0), F(19, 2)), (F(19, 2), F(1, 2)), (F(10), F(16)), (F(26), F(70))],
}
PPQS = [96, 120, 384, 480, 960, 10080]
VELOCITIES = [1, 30, 64, 100, 127, 8]


@pytest.mark.parametrize("ppq", PPQS)
@pytest.mark.parametrize("rhythm", list(RHYTHMS))
def test_grid_aligned_notes_come_back_with_pitch_onset_duration_velocity_and_instrument(
    make_midi, note, in_quarters, ppq, rhythm
):
    parts = [(PIANO, False, 0, 60), (VIOLIN, False, 1, 72), (0, True, 9, 42)]
    tracks, expected = [], []
    for number, is_drum, channel, base_pitch in parts:
        events = [] if is_drum else [program(channel, number)]
        for i, (onset, duration) in enumerate(RHYTHMS[rhythm]):
            pitch = base_pitch if is_drum else base_pitch + i % 12
            velocity = VELOCITIES[i % len(VELOCITIES)]
            events += note(int(onset * ppq), int(duration * ppq), pitch, velocity, channel)
            expected.append((number, is_drum, pitch, onset, duration, nearest_velocity(velocity)))
        tracks.append(events)
    original = make_midi(*tracks, ticks_per_beat=ppq)

    changes = music_lm.encode_midi(original).changes
    assert changes.notes == changes.notes_exact == len(expected)
    assert in_quarters(round_trip(original).score) == sorted(expected)


def test_notes_longer_than_1024_quarter_notes_are_shortened_to_1024_and_reported(
    make_midi, note, in_quarters
):
    original = make_midi(
        [program(0, CELLO), *note(0, 1030 * 96, 36, 80), *note(96, 96, 60, 80)], ticks_per_beat=96
    )
    encoded = music_lm.encode_midi(original)
    reason = "notes longer than 1,024 quarter notes shortened"
    assert encoded.changes.changed == Counter({reason: 1})
    assert in_quarters(round_trip(original).score) == [
        (CELLO, False, 36, F(0), F(1024), 80),
        (CELLO, False, 60, F(1), F(1), 80),
    ]
    assert reason in music_lm.inspect_midi(original)


def test_a_pedal_point_of_141_quarter_notes_comes_back_exactly(make_midi, note, in_quarters):
    # 141 quarters = d:128+ d:8+ d:4+ d:1 (long parts in binary, largest first).
    original = make_midi([program(0, CELLO), *note(0, 141 * 480, 36, 80)])
    assert "d:128+ d:8+ d:4+ d:1 v:80 C2" in music_lm.midi_to_text(original)
    assert in_quarters(round_trip(original).score) == [(CELLO, False, 36, F(0), F(141), 80)]


# ---- tempo, time and key signatures come back at the same positions ----


def test_tempo_changes_come_back_at_their_positions_within_half_a_percent(make_midi, note):
    ppq = 384
    tempi = [(F(0), 72.0), (F(4), 97.3), (F(13, 2), 63.7), (F(8), 180.0), (F(10), 333.3)]
    conductor = [
        (int(q * ppq), meta("set_tempo", tempo=round(mido.bpm2tempo(b)))) for q, b in tempi
    ]
    melody = [*note(0, 12 * ppq, 60, 80)]
    back = round_trip(make_midi(conductor, melody, ticks_per_beat=ppq)).score

    got = [(F(t.tick, back.ticks_per_beat), t.bpm) for t in back.tempos]
    assert [q for q, _ in got] == [q for q, _ in tempi]
    for (_, bpm_back), (_, bpm) in zip(got, tempi, strict=True):
        assert abs(bpm_back - bpm) / bpm <= 0.005


def test_round_tempi_come_back_exactly(make_midi, note):
    conductor = [
        (0, meta("set_tempo", tempo=mido.bpm2tempo(90))),
        (1920, meta("set_tempo", tempo=mido.bpm2tempo(140))),
    ]
    original = make_midi(conductor, note(0, 3840, 60))
    text = music_lm.midi_to_text(original)
    assert text.split()[2] == "tempo:90"
    assert "\nbar @0 tempo:140\n" in text
    grid, _ = music_lm.to_grid(round_trip(original).score)
    assert [(t.tick, t.bpm) for t in grid.tempos] == [(0, 90.0), (96, 140.0)]


def test_time_signature_changes_at_bar_lines_come_back_at_the_same_bars(make_midi, note):
    # 3/4 (3 quarters) | 6/8 (3) | 7/8 (3.5) | 5/4 (5) | 5/4
    signatures = [(F(0), 3, 4), (F(3), 6, 8), (F(6), 7, 8), (F(19, 2), 5, 4)]
    conductor = [
        (int(q * 480), meta("time_signature", numerator=n, denominator=d)) for q, n, d in signatures
    ]
    melody = []
    for bar_start in (F(0), F(3), F(6), F(19, 2), F(29, 2)):
        melody += note(int(bar_start * 480), 240, 67)
    encoded = music_lm.encode_midi(make_midi(conductor, melody))
    assert [line.split()[:2] for line in encoded.text.splitlines()[1:-1]] == [
        ["bar", "@0"],
        ["bar", "ts:6/8"],
        ["bar", "ts:7/8"],
        ["bar", "ts:5/4"],
        ["bar", "@0"],
    ]
    back = round_trip(make_midi(conductor, melody)).score
    assert [
        (F(t.tick, back.ticks_per_beat), t.numerator, t.denominator) for t in back.time_signatures
    ] == signatures


def test_key_signatures_major_and_minor_sharps_and_flats_come_back_at_their_positions(
    make_midi, note
):
    keys = [
        (F(0), "Eb", -3, "major"),
        (F(4), "F#m", 3, "minor"),
        (F(21, 2), "Bbm", -5, "minor"),  # in the middle of a bar
        (F(14), "A", 3, "major"),
        (F(16), "Cb", -7, "major"),
        (F(17), "A#m", 7, "minor"),
    ]
    conductor = [(int(q * 480), meta("key_signature", key=name)) for q, name, _, _ in keys]
    back = round_trip(make_midi(conductor, note(0, 18 * 480, 60))).score
    got = [(F(k.tick, back.ticks_per_beat), k.sharps, k.mode) for k in back.key_signatures]
    assert got == [(q, sharps, mode) for q, _, sharps, mode in keys]


def test_tempo_time_and_key_events_at_one_tick_all_come_back(make_midi, note):
    conductor = [
        (0, meta("time_signature", numerator=4, denominator=4)),
        (1920, meta("time_signature", numerator=3, denominator=4)),
        (1920, meta("set_tempo", tempo=mido.bpm2tempo(80))),
        (1920, meta("key_signature", key="G")),
    ]
    back = round_trip(make_midi(conductor, note(0, 480 * 7, 60))).score
    assert [(t.tick, t.bpm) for t in back.tempos] == [(0, 120.0), (1920, 80.0)]
    assert [(t.tick, str(t)) for t in back.time_signatures] == [(0, "4/4"), (1920, "3/4")]
    assert [(k.tick, str(k)) for k in back.key_signatures] == [(1920, "G major")]


def test_a_time_signature_inside_a_bar_cuts_the_bar_short_there(make_midi, note):
    conductor = [(2160, meta("time_signature", numerator=3, denominator=4))]  # bar 2 + 1/2 beat
    original = make_midi(conductor, note(0, 10 * 480, 60))
    encoded = music_lm.encode_midi(original)
    assert encoded.text.splitlines()[1:] == [
        "bar @0 t1 d:8+ d:2 v:64 C4",
        "bar @1/2",  # bar 2 lasts half a beat: the 3/4 starts a bar where it stands
        "bar ts:3/4",
        "end",
    ]
    assert not encoded.changes.meta_moved
    back = round_trip(original).score
    assert [(t.tick, str(t)) for t in back.time_signatures] == [(0, "4/4"), (2160, "3/4")]


def test_a_pickup_and_a_lead_in_into_6_8_keep_their_bar_lines_and_inspect_lists_them(
    make_midi, note
):
    conductor = [
        (0, meta("time_signature", numerator=4, denominator=4)),
        (480, meta("time_signature", numerator=4, denominator=4)),  # a one-beat pickup
        (480 + 4 * 480 + 480, meta("time_signature", numerator=6, denominator=8)),  # a lead-in
    ]
    melody = [*note(0, 480, 67), *note(480, 1920, 72), *note(2400, 480, 71), *note(2880, 720, 69)]
    original = make_midi(conductor, sorted(melody, key=lambda event: event[0]))
    encoded = music_lm.encode_midi(original)
    assert encoded.text.splitlines()[1:] == [
        "bar @0 t1 d:1 v:64 G4 @1",
        "bar @0 t1 d:4 v:64 C5",
        "bar @0 t1 d:1 v:64 B4 @1",
        "bar ts:6/8 @0 t1 d:1+1/2 v:64 A4",
        "end",
    ]
    back = round_trip(original).score
    assert [(t.tick, str(t)) for t in back.time_signatures] == [
        (0, "4/4"), (480, "4/4"), (2880, "6/8")
    ]  # fmt: skip
    report = music_lm.inspect_midi(original)
    assert (
        "short bars: 2 (ended by the time signature that starts the next bar): bar 1 (1 of 4 "
        "quarter notes, a pickup); bar 3 (1 of 4 quarter notes)"
    ) in report
    assert "round trip verified" in report


def test_a_time_signature_without_a_token_is_dropped_and_reported(make_midi, note):
    conductor = [(0, meta("time_signature", numerator=13, denominator=4))]  # 13 quarters
    original = make_midi(conductor, note(0, 480, 60))
    encoded = music_lm.encode_midi(original)
    assert encoded.text.split()[3] == "ts:4/4"
    assert encoded.changes.dropped == Counter(
        {"time signature 13/4 (no token; bars keep the previous meter)": 1}
    )


def test_an_off_grid_tempo_change_moves_to_the_grid_and_is_reported(make_midi, note):
    conductor = [(965, meta("set_tempo", tempo=mido.bpm2tempo(75)))]  # 2 beats + 5 ticks
    original = make_midi(conductor, note(0, 1920, 60))
    encoded = music_lm.encode_midi(original)
    assert "@2 tempo:75" in encoded.text
    assert encoded.changes.meta_moved == Counter({"tempo changes": 1})
    back = round_trip(original).score
    assert [(t.tick, t.bpm) for t in back.tempos] == [(0, 120.0), (960, pytest.approx(75.0))]


# ---- human-played input moves to the nearest grid point ----


def test_off_grid_onsets_and_ends_move_to_the_nearest_grid_point(make_midi, note, in_quarters):
    ppq = 480  # one grid step is 20 ticks
    played = [  # (onset tick, end tick, pitch, velocity)
        (0, 480, 60, 90),  # on the grid
        (487, 953, 62, 77),  # both ends off the grid
        (953, 1449, 64, 70),
        (1436, 1920, 65, 101),  # only the onset is off the grid
        (1920, 2405, 67, 64),  # only the end is off the grid
        (2409, 2891, 69, 55),
    ]
    events = [program(0, VIOLIN)]
    for onset, end, pitch, velocity in played:
        events += note(onset, end - onset, pitch, velocity)
    original = make_midi(events, ticks_per_beat=ppq)

    expected = []
    for onset, end, pitch, velocity in played:
        start, stop = on_grid(F(onset, ppq)), on_grid(F(end, ppq))
        expected.append((VIOLIN, False, pitch, start, stop - start, nearest_velocity(velocity)))
    assert in_quarters(round_trip(original).score) == sorted(expected)

    changes = music_lm.encode_midi(original).changes
    off_grid = [(o, e) for o, e, _, _ in played if o % 20 or e % 20]
    assert changes.notes == len(played)
    assert changes.notes - changes.notes_exact == len(off_grid) == 5
    assert changes.onsets_moved == sum(1 for o, _, _, _ in played if o % 20) == 4
    largest = max(abs(on_grid(F(o, ppq)) - F(o, ppq)) for o, _, _, _ in played)
    assert changes.max_onset_shift_quarters == pytest.approx(float(largest))
    assert changes.max_onset_shift_quarters <= HALF_STEP
    assert changes.max_duration_shift_quarters <= 2 * HALF_STEP


def test_a_resolution_off_the_grid_moves_only_what_does_not_fit(make_midi, note, in_quarters):
    ppq = 1000  # 1/24 of a quarter note is 41.67 ticks
    original = make_midi(
        [*note(0, 1000, 60), *note(1000, 500, 62), *note(1500, 250, 64), *note(2000, 333, 65)],
        ticks_per_beat=ppq,
    )
    changes = music_lm.encode_midi(original).changes
    assert changes.notes_exact == 3
    assert changes.durations_changed == 1
    assert changes.onsets_moved == 0
    assert in_quarters(round_trip(original).score)[-1] == (PIANO, False, 65, F(2), F(1, 3), 64)


def test_an_onset_exactly_halfway_between_grid_points_moves_later(make_midi, note, in_quarters):
    original = make_midi(note(10, 470, 60), ticks_per_beat=480)  # 10 ticks = half a step
    assert in_quarters(round_trip(original).score) == [(PIANO, False, 60, F(1, 24), F(23, 24), 64)]


def test_a_note_shorter_than_half_a_step_keeps_one_grid_step(make_midi, note, in_quarters):
    original = make_midi([*note(480, 3, 60, 64), *note(480, 1, 64, 64)], ticks_per_beat=480)
    assert in_quarters(round_trip(original).score) == [
        (PIANO, False, 60, F(1), F(1, 24), 64),
        (PIANO, False, 64, F(1), F(1, 24), 64),
    ]


# ---- notes are neither merged nor dropped ----


def test_overlapping_notes_of_one_pitch_pair_first_in_first_out(make_midi, in_quarters):
    on = mido.Message("note_on", note=60, velocity=80)
    off = mido.Message("note_off", note=60, velocity=0)
    # on@0 on@240 off@480 off@720: first in, first out -> [0, 480) and [240, 720)
    original = make_midi([(0, on), (240, on), (480, off), (720, off)])
    assert in_quarters(round_trip(original).score) == [
        (PIANO, False, 60, F(0), F(1), 80),
        (PIANO, False, 60, F(1, 2), F(1), 80),
    ]


def test_a_nested_note_of_one_pitch_keeps_the_count_and_every_onset_and_end(make_midi):
    # A long C4 [0, 4) with a short C4 [1, 2) inside it: MIDI can only say
    # on@0 on@1 off@2 off@4, which readers pair first in, first out.
    on = mido.Message("note_on", note=60, velocity=80)
    off = mido.Message("note_off", note=60, velocity=0)
    original = make_midi([(0, on), (480, on), (960, off), (1920, off)])
    back = round_trip(original).score
    notes = [n for track in back.tracks for n in track.notes]
    ppq = back.ticks_per_beat
    assert len(notes) == 2
    assert sorted(F(n.onset_tick, ppq) for n in notes) == [0, 1]
    assert sorted(F(n.end_tick, ppq) for n in notes) == [2, 4]


def test_a_doubled_note_is_two_notes(make_midi, in_quarters):
    on = mido.Message("note_on", note=60, velocity=80)
    off = mido.Message("note_off", note=60, velocity=0)
    original = make_midi([(0, on), (0, on), (480, off), (480, off)])
    assert music_lm.midi_to_text(original).split()[-3:] == ["C4", "C4", "end"]
    assert in_quarters(round_trip(original).score) == [(PIANO, False, 60, F(0), F(1), 80)] * 2


def test_note_on_with_velocity_zero_ends_a_note(make_midi, in_quarters):
    original = make_midi(
        [
            (0, mido.Message("note_on", note=60, velocity=88)),
            (480, mido.Message("note_on", note=60, velocity=0)),
            (480, mido.Message("note_on", note=62, velocity=88)),
            (960, mido.Message("note_on", note=62, velocity=0)),
        ]
    )
    assert in_quarters(round_trip(original).score) == [
        (PIANO, False, 60, F(0), F(1), 88),
        (PIANO, False, 62, F(1), F(1), 88),
    ]


def running_status_file() -> bytes:
    """Format 0, PPQ 480; the track writes the status byte 0x90 once, then relies on
    running status for every other note-on (velocity 0 ending the notes)."""
    track = bytes(
        [
            0x00, 0xC0, 0x28,  # program change: violin
            0x00, 0x90, 0x3C, 0x50,  # note on C4 (status byte written)
            0x00, 0x40, 0x50,  # note on E4 (running status)
            0x83, 0x60, 0x3C, 0x00,  # +480: C4 off (note on, velocity 0)
            0x00, 0x40, 0x00,  # E4 off
            0x00, 0x43, 0x50,  # note on G4
            0x83, 0x60, 0x43, 0x00,  # +480: G4 off
            0x00, 0xFF, 0x2F, 0x00,  # end of track
        ]
    )  # fmt: skip
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def test_running_status_is_read(in_quarters):
    original = running_status_file()
    assert b"\x00\x40\x50" in original  # really written without a status byte
    assert in_quarters(round_trip(original).score) == [
        (VIOLIN, False, 60, F(0), F(1), 80),
        (VIOLIN, False, 64, F(0), F(1), 80),
        (VIOLIN, False, 67, F(1), F(1), 80),
    ]


def test_several_tracks_on_one_channel_stay_separate_tracks(make_midi, note, in_quarters):
    original = make_midi(
        [program(0, PIANO), *note(0, 960, 48, 68)],
        [program(0, PIANO), *note(0, 480, 72, 100), *note(480, 480, 74, 100)],
    )
    back = round_trip(original).score
    assert [len(t.notes) for t in back.tracks] == [1, 2]
    assert in_quarters(back) == [
        (PIANO, False, 48, F(0), F(2), 68),
        (PIANO, False, 72, F(0), F(1), 100),
        (PIANO, False, 74, F(1), F(1), 100),
    ]


def test_tracks_sharing_a_program_stay_separate_tracks(make_midi, note):
    original = make_midi(
        [program(0, VIOLIN), *note(0, 480, 76)],
        [program(1, VIOLIN), *note(0, 480, 69, channel=1)],
        [program(2, CELLO), *note(0, 480, 48, channel=2)],
    )
    assert (
        music_lm.midi_to_text(original)
        .splitlines()[0]
        .endswith("inst:violin inst:violin inst:cello")
    )
    back = round_trip(original).score
    assert [(t.program, [n.pitch for n in t.notes]) for t in back.tracks] == [
        (VIOLIN, [76]),
        (VIOLIN, [69]),
        (CELLO, [48]),
    ]


def test_tempo_events_on_a_track_other_than_the_first_are_read(make_midi, note):
    original = make_midi(
        [program(0, PIANO), *note(0, 3840, 60)],
        [
            (0, meta("set_tempo", tempo=mido.bpm2tempo(60))),
            (1920, meta("set_tempo", tempo=mido.bpm2tempo(90))),
        ],
    )
    back = round_trip(original).score
    assert [(t.tick, t.bpm) for t in back.tempos] == [(0, 60.0), (1920, pytest.approx(90.0))]


def test_format_0_with_several_channels_is_one_instrument_per_channel(make_midi, note, in_quarters):
    events = [
        (0, meta("set_tempo", tempo=mido.bpm2tempo(100))),
        program(0, PIANO),
        program(1, CELLO),
        *note(0, 480, 60, 80, channel=0),
        *note(0, 960, 36, 80, channel=1),
        *note(0, 240, 36, 100, channel=9),
        *note(240, 240, 42, 60, channel=9),
    ]
    back = round_trip(make_midi(events, midi_type=0)).score
    assert [(t.program, t.is_drum) for t in back.tracks] == [
        (PIANO, False),
        (CELLO, False),
        (0, True),
    ]
    assert in_quarters(back) == [
        (PIANO, False, 60, F(0), F(1), 80),
        (0, True, 36, F(0), F(1, 2), 100),
        (0, True, 42, F(1, 2), F(1, 2), 60),
        (CELLO, False, 36, F(0), F(2), 80),
    ]


def test_a_program_change_mid_track_starts_a_new_instrument(make_midi, note, in_quarters):
    events = [
        program(0, PIANO),
        *note(0, 480, 60),
        (480, mido.Message("program_change", channel=0, program=VIOLIN)),
        *note(480, 480, 62),
    ]
    back = round_trip(make_midi(events)).score
    assert in_quarters(back) == [
        (PIANO, False, 60, F(0), F(1), 64),
        (VIOLIN, False, 62, F(1), F(1), 64),
    ]


def melodic_tracks(note, programs: list[int]) -> list[list]:
    """One track per program, each on a melodic channel of its own (cycling past 15)."""
    channels = [c for c in range(16) if c != 9]
    tracks = []
    for i, number in enumerate(programs):
        channel = channels[i % len(channels)]
        tracks.append([program(channel, number), *note(0, 480, 60 + i, 64, channel)])
    return tracks


def test_more_melodic_tracks_than_channels_merge_tracks_of_one_instrument_and_say_so(
    make_midi, note
):
    original = make_midi(*melodic_tracks(note, [*range(15), 0]))  # 16 tracks, 15 instruments
    encoded = music_lm.encode_midi(original)
    assert encoded.changes.changed == Counter(
        {"tracks merged to fit MIDI's channels (acoustic-grand-piano into acoustic-grand-piano)": 1}
    )
    assert len(encoded.grid.tracks) == 15
    assert encoded.grid.note_count == 16  # merged, not dropped
    assert round_trip(original).score.note_count == 16


def test_sixteen_different_melodic_instruments_merge_the_smallest_into_its_gm_family(
    make_midi, note
):
    original = make_midi(*melodic_tracks(note, list(range(16))))
    encoded = music_lm.encode_midi(original)
    # All have one note: the last (15, dulcimer) joins its family's nearest, 14.
    assert encoded.changes.changed == Counter(
        {"tracks merged to fit MIDI's channels (dulcimer into tubular-bells)": 1}
    )
    assert [t.program for t in encoded.grid.tracks] == list(range(15))
    assert round_trip(original).score.note_count == 16


# ---- decoded files are DAW-ready ----


def decoded_file(original: bytes) -> mido.MidiFile:
    """The file `text_to_midi` writes for the text of `original`, as mido sees it."""
    return mido.MidiFile(file=io.BytesIO(music_lm.text_to_midi(music_lm.midi_to_text(original))))


def channel_messages(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    tick, out = 0, []
    for message in track:
        tick += message.time
        if not message.is_meta:
            out.append((tick, message))
    return out


def is_note_off(message: mido.Message) -> bool:
    return message.type == "note_off" or (message.type == "note_on" and message.velocity == 0)


def test_decoded_files_are_format_1_at_480_ppq_with_a_conductor_track_and_one_track_per_instrument(
    make_midi, note
):
    original = make_midi(
        [
            (0, meta("set_tempo", tempo=mido.bpm2tempo(110))),
            (0, meta("time_signature", numerator=3, denominator=4)),
            (0, meta("key_signature", key="Dm")),
            (1440, meta("set_tempo", tempo=mido.bpm2tempo(90))),
        ],
        [program(3, VIOLIN), *note(0, 480, 74, 90, 3), *note(480, 480, 74, 90, 3)],
        [*note(0, 240, 36, 100, 9), *note(480, 240, 38, 100, 9), *note(1440, 240, 36, 100, 9)],
        [program(0, CELLO), *note(0, 1440, 38, 70, 0), *note(1440, 1440, 38, 70, 0)],
    )
    midi = decoded_file(original)
    assert midi.type == 1
    assert midi.ticks_per_beat == 480
    assert len(midi.tracks) == 4

    conductor = midi.tracks[0]
    assert all(message.is_meta for message in conductor)
    kinds = {message.type for message in conductor}
    assert {"set_tempo", "time_signature", "key_signature"} <= kinds

    names, channels = [], []
    for track in midi.tracks[1:]:
        assert not any(
            m.is_meta and m.type in ("set_tempo", "time_signature", "key_signature") for m in track
        )
        track_names = [m.name for m in track if m.type == "track_name"]
        assert len(track_names) == 1
        assert track_names[0]
        names.append(track_names[0])
        messages = channel_messages(track)
        assert messages[0][0] == 0
        assert messages[0][1].type == "program_change"
        channel = messages[0][1].channel
        assert {m.channel for _, m in messages} == {channel}
        channels.append(channel)
        for (tick, first), (tick2, second) in itertools.pairwise(messages):
            if tick == tick2 and not is_note_off(first):
                assert not is_note_off(second), "a note-off after a note-on on the same tick"
    assert len(set(channels)) == len(channels)
    assert len(set(names)) == len(names)
    programs = [channel_messages(t)[0][1].program for t in midi.tracks[1:]]
    drums = [c == 9 for c in channels]
    assert sorted(zip(programs, drums, strict=True)) == [(0, True), (VIOLIN, False), (CELLO, False)]


def test_repeated_notes_write_the_note_off_before_the_next_note_on(make_midi, note):
    original = make_midi([*note(0, 480, 60), *note(480, 480, 60), *note(960, 480, 60)])
    midi = decoded_file(original)
    notes = [
        (t, "on" if not is_note_off(m) else "off")
        for t, m in channel_messages(midi.tracks[1])
        if m.type.startswith("note")
    ]
    assert notes == [(0, "on"), (480, "off"), (480, "on"), (960, "off"), (960, "on"), (1440, "off")]


def test_drums_go_to_channel_10_and_melodic_tracks_skip_it(make_midi, note):
    tracks = [[program(c, 40 + c), *note(0, 480, 60 + c, 64, c)] for c in range(16) if c != 9]
    tracks.append(note(0, 480, 36, 100, 9))
    midi = decoded_file(make_midi(*tracks))
    channels = [channel_messages(t)[0][1].channel for t in midi.tracks[1:]]
    assert sorted(channels) == list(range(16))
    assert channels[-1] == 9  # the drum track, declared last
    assert 9 not in channels[:-1]


# ---- what is dropped is reported ----


def test_what_the_codec_cannot_carry_is_counted_in_the_report(make_midi, note):
    original = make_midi(
        [
            (0, meta("track_name", name="Song title")),
            (0, meta("marker", text="Verse")),
            (1920, meta("marker", text="Chorus")),
        ],
        [
            (0, meta("track_name", name="Lead")),
            program(0, VIOLIN),
            *note(0, 960, 67),
            (0, meta("lyrics", text="la")),
            (480, meta("lyrics", text="la")),
            (100, mido.Message("pitchwheel", pitch=1000)),
            (200, mido.Message("pitchwheel", pitch=2000)),
            (300, mido.Message("pitchwheel", pitch=0)),
            (0, mido.Message("control_change", control=7, value=100)),
        ],
        [
            (0, meta("track_name", name="Piano")),
            program(1, PIANO),
            *note(0, 1920, 48, 64, 1),
            (0, mido.Message("control_change", channel=1, control=64, value=127)),
            (1900, mido.Message("control_change", channel=1, control=64, value=0)),
        ],
    )
    dropped = music_lm.encode_midi(original).changes.dropped
    assert dropped == Counter(
        {
            "pitch bends": 3,
            "controller CC64 (sustain pedal)": 2,
            "controller CC7 (volume)": 1,
            "lyrics": 2,
            "markers": 2,
            # "Song title", "Lead" and "Piano": not the names the writer gives these tracks.
            "track names (tracks are named after their instrument)": 3,
        }
    )
    report = music_lm.inspect_midi(original)
    dropped_line = next(line for line in report.splitlines() if "dropped:" in line)
    for words in (
        "pitch bends 3",
        "CC64 (sustain pedal) 2",
        "CC7 (volume) 1",
        "lyrics 2",
        "markers 2",
        "track names",
    ):
        assert words in dropped_line


def test_a_file_with_nothing_to_drop_says_so(simple_midi_file):
    report = music_lm.inspect_midi(simple_midi_file)
    assert "  dropped: nothing" in report.splitlines()
    assert "kept exactly: 5 of 5 notes" in report
    assert "round trip verified" in report


def test_notes_without_note_off_and_stray_note_offs_are_reported_as_remarks(make_midi):
    original = make_midi(
        [
            (0, mido.Message("note_off", note=50, velocity=0)),  # ends nothing
            (0, mido.Message("note_on", note=60, velocity=80)),
            (480, mido.Message("note_on", note=62, velocity=80)),
            (960, mido.Message("note_off", note=62, velocity=0)),
            (1920, meta("end_of_track")),  # C4 never ends: closed here
        ]
    )
    changes = music_lm.encode_midi(original).changes
    assert changes.remarks == Counter(
        {
            "note-offs without a note-on (ignored)": 1,
            "notes without a note-off (closed at the end of their track)": 1,
        }
    )
    assert changes.notes == 2
    report = music_lm.inspect_midi(original)
    assert "while reading: 1 notes without a note-off (closed at the end of their track)" in report


# ---- bad input is a MidiError naming the file ----


def valid_file() -> bytes:
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    track = [
        mido.Message("note_on", note=60, velocity=64),
        mido.Message("note_off", note=60, time=480),
    ]
    midi.tracks.append(mido.MidiTrack(track))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def format_2_file() -> bytes:
    data = bytearray(valid_file())
    data[8:10] = b"\x00\x02"
    return bytes(data)


def smpte_file() -> bytes:
    data = bytearray(valid_file())
    data[12:14] = bytes([0xE7, 0x28])  # -25 frames per second, 40 ticks per frame
    return bytes(data)


BAD_FILES = {
    "empty": lambda: b"",
    "random bytes": lambda: os.urandom(64).replace(b"M", b"m"),
    "truncated": lambda: valid_file()[:-6],
    "truncated header": lambda: valid_file()[:10],
    "format 2": format_2_file,
    "SMPTE division": smpte_file,
    "a text file": lambda: b"piece style:none tempo:120 ts:4/4\nend\n",
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_input_is_a_midi_error_naming_the_file(tmp_path, kind):
    path = tmp_path / "not_really_a_song.mid"
    path.write_bytes(BAD_FILES[kind]())
    with pytest.raises(music_lm.MidiError, match=r"not_really_a_song\.mid") as raised:
        music_lm.midi_to_text(path)
    assert str(raised.value).startswith(str(path))
    assert "\n" not in str(raised.value)
    with pytest.raises(music_lm.MidiError, match=r"not_really_a_song\.mid"):
        music_lm.inspect_midi(path)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("empty", "empty"),
        ("format 2", "format 2"),
        ("SMPTE division", "SMPTE"),
        ("truncated", "truncated"),
    ],
)
def test_bad_input_errors_say_what_is_wrong(tmp_path, kind, words):
    path = tmp_path / "x.mid"
    path.write_bytes(BAD_FILES[kind]())
    with pytest.raises(music_lm.MidiError, match=words):
        music_lm.read_midi(path)


def test_a_missing_file_is_a_midi_error_naming_it(tmp_path):
    with pytest.raises(music_lm.MidiError, match=r"missing\.mid"):
        music_lm.read_midi(tmp_path / "missing.mid")


def test_a_pitch_started_twice_at_once_is_kept_and_reported(make_midi, note):
    """Generation never writes a unison by default; the codec keeps one from a file, and
    `inspect` says where it is."""
    melody = [*note(0, 480, 60), *note(0, 960, 60), *note(480, 480, 64)]
    original = make_midi([], sorted(melody, key=lambda event: event[0]))
    text = music_lm.encode_midi(original).text
    assert text.splitlines()[1] == "bar @0 t1 d:1 v:64 C4 d:2 C4 @1 d:1 E4"
    report = music_lm.inspect_midi(original)
    assert (
        "doubled notes: 1 (a pitch started twice at once on one track): track 1 C4 at bar 1"
    ) in report
    assert "round trip verified" in report
