"""Which note-off ends which note-on (music_lm.midi.read).

A key (channel and pitch, within a track) whose note-ons all find a note-off pairs them
first-in first-out. A key where that would leave a note-on without a note-off is read as a
synthesizer plays it, from the first note-on that came while one of its notes sounded: a
note-on ends the sounding note (a re-strike). CC120/CC123 end every note sounding on their
channel; the end of the track ends what is left.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict, deque

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import music_lm
from music_lm.midi.pairing import AT_TRACK_END, ENDED_BY_CONTROLLER, RESTRUCK
from music_lm.midi.read import read_midi

ORPHAN_OFFS = "note-offs without a note-on (ignored)"
E4, G4 = 64, 67


def on(tick: int, pitch: int = E4, channel: int = 0, velocity: int = 80) -> tuple:
    return (tick, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))


def off(tick: int, pitch: int = E4, channel: int = 0) -> tuple:
    return (tick, mido.Message("note_off", channel=channel, note=pitch))


def control(tick: int, number: int, channel: int = 0, value: int = 0) -> tuple:
    return (tick, mido.Message("control_change", channel=channel, control=number, value=value))


def program(tick: int, number: int, channel: int = 0) -> tuple:
    return (tick, mido.Message("program_change", channel=channel, program=number))


def track_end(tick: int) -> tuple:
    return (tick, mido.MetaMessage("end_of_track"))


def notes(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(channel, onset, duration, pitch, program) of every note read, sorted."""
    score = read_midi(data).score
    return sorted(
        (t.channel, n.onset_tick, n.duration_tick, n.pitch, t.program)
        for t in score.tracks
        for n in t.notes
    )


def remarks(data: bytes) -> Counter[str]:
    return read_midi(data).remarks


# ---- the rule, case by case ----


def test_overlapping_unisons_that_all_end_pair_first_in_first_out(make_midi) -> None:
    # Two voices on one pitch: the first note-off ends the first note-on.
    data = make_midi([on(0), on(240), off(480), off(960)])
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 240, 720, E4, 0)]
    assert remarks(data) == Counter()


def test_a_note_struck_again_before_its_note_off_ends_at_the_re_strike(make_midi) -> None:
    # First-in first-out would end the first note at the note-off and leave the second
    # ringing to the end of the track.
    data = make_midi([on(0), on(480), off(960), track_end(9600)])
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 480, 480, E4, 0)]
    assert remarks(data) == Counter({RESTRUCK: 1})


def test_notes_struck_again_without_any_note_off_each_end_at_the_next(make_midi) -> None:
    data = make_midi([on(0), on(480), on(960), track_end(1920)])
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 480, 480, E4, 0), (0, 960, 960, E4, 0)]
    assert remarks(data) == Counter({RESTRUCK: 2, AT_TRACK_END: 1})


def test_notes_before_the_first_re_strike_stay_as_they_were(make_midi) -> None:
    data = make_midi([on(0), off(240), on(480), on(720), off(960), track_end(1920)])
    assert notes(data) == [(0, 0, 240, E4, 0), (0, 480, 240, E4, 0), (0, 720, 240, E4, 0)]


def test_a_note_ended_by_all_notes_off_before_unisons_leaves_them_first_in_first_out(
    make_midi,
) -> None:
    # Only note-ons after the first overlap decide: these unisons all find their note-off.
    data = make_midi([on(0), control(240, 123), on(480), on(600), off(720), off(960)])
    assert notes(data) == [(0, 0, 240, E4, 0), (0, 480, 240, E4, 0), (0, 600, 360, E4, 0)]
    assert remarks(data) == Counter({ENDED_BY_CONTROLLER: 1})


def test_a_note_off_left_over_by_a_re_strike_is_ignored(make_midi) -> None:
    # The re-strike at 480 ended the first note: the note-off at 1440 is that note's, owed,
    # and ends nothing (it is no orphan either).
    data = make_midi([on(0), on(480), off(960), off(1440), on(1920), track_end(2400)])
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 480, 480, E4, 0), (0, 1920, 480, E4, 0)]
    assert remarks(data) == Counter({RESTRUCK: 1, AT_TRACK_END: 1})


def test_a_note_off_written_after_the_re_strike_on_its_tick_ends_the_older_note(
    make_midi,
) -> None:
    # Note-on first, then the note-off of the note it follows, on one tick: the new note
    # is not zero-length.
    data = make_midi([on(0), on(480), off(480), track_end(960)])
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 480, 480, E4, 0)]
    assert remarks(data) == Counter({AT_TRACK_END: 1})


def test_a_doubled_note_off_in_a_re_struck_key_is_ignored(make_midi) -> None:
    # The second note-off at 960 ends nothing, and marks nothing: the note-on after it on
    # that tick is an ordinary note, not a zero-length one.
    data = make_midi([on(0), on(480), off(960), off(960), on(960), track_end(1920)])
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 480, 480, E4, 0), (0, 960, 960, E4, 0)]
    assert remarks(data) == Counter({RESTRUCK: 1, AT_TRACK_END: 1})  # no orphan: the first note's


def test_a_zero_length_note_written_note_off_first_stays_so_in_a_re_struck_key(
    make_midi,
) -> None:
    # Every note-off the re-strike owed has come (at 960): the note-off at 1440 is an orphan,
    # and the note-on that follows on its tick is a zero-length note, as anywhere in a file.
    data = make_midi([on(0), on(480), off(480), off(960), off(1440), on(1440), track_end(1920)])
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 480, 480, E4, 0), (0, 1440, 0, E4, 0)]


@pytest.mark.parametrize("number", [120, 123], ids=["CC120 all sound off", "CC123 all notes off"])
def test_an_all_notes_off_controller_ends_the_notes_of_its_channel_only(
    make_midi, number: int
) -> None:
    data = make_midi(
        [on(0), on(0, G4), on(0, channel=1), control(480, number), off(960, channel=1), off(960)]
    )
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 0, 480, G4, 0), (1, 0, 960, E4, 0)]
    assert remarks(data) == Counter({ENDED_BY_CONTROLLER: 2, ORPHAN_OFFS: 1})
    assert not any("CC120" in kind or "CC123" in kind for kind in read_midi(data).dropped)


def test_an_all_notes_off_controller_in_another_track_ends_nothing(make_midi) -> None:
    data = make_midi([on(0), off(960)], [control(480, 123)])
    assert notes(data) == [(0, 0, 960, E4, 0)]


def test_a_key_re_struck_on_another_channel_is_not_affected(make_midi) -> None:
    data = make_midi([on(0), on(240, channel=1), on(480), off(1200, channel=1), track_end(1920)])
    assert notes(data) == [(0, 0, 480, E4, 0), (0, 480, 1440, E4, 0), (1, 240, 960, E4, 0)]


def test_each_note_keeps_the_program_in_force_at_its_note_on(make_midi) -> None:
    data = make_midi([program(0, 5), on(0), program(240, 30), on(480), off(960), track_end(1920)])
    assert notes(data) == [(0, 0, 480, E4, 5), (0, 480, 480, E4, 30)]


def test_the_sustain_pedal_still_holds_a_note_ended_by_all_notes_off(make_midi) -> None:
    data = make_midi([control(0, 64, value=127), on(0), control(480, 123), control(960, 64)])
    score = read_midi(data, sustain=True).score
    assert [tuple(n) for t in score.tracks for n in t.notes] == [(0, 960, E4, 80)]


def test_inspect_says_how_each_rule_ended_notes(make_midi) -> None:
    data = make_midi([on(0), on(480), off(960), on(0, G4), control(1200, 123), on(1440)])
    report = music_lm.inspect_midi(data)
    assert f"while reading: 1 {RESTRUCK}" in report
    assert f"while reading: 1 {ENDED_BY_CONTROLLER}" in report
    assert f"while reading: 1 {AT_TRACK_END}" in report


# ---- against mido's view of the same bytes ----

Event = tuple[str, int, int, int]  # (kind, tick, velocity, program): "on", "off" or "all off"


def fifo(events: list[Event], end_tick: int) -> tuple[list[tuple], bool]:
    """First-in first-out: the notes as (program, onset, duration, velocity), and whether a
    note-on after the first overlap ended without a note-off (at a controller or the end)."""
    paired, sounding = [], deque()
    orphan_at = closed_at = None
    overlapped = cut = False
    for kind, tick, velocity, prog in events:
        if kind == "on" and orphan_at == tick:  # written note-off first: a zero-length note
            orphan_at = None
            paired.append((prog, tick, 0, velocity))
        elif kind == "on":
            overlapped = overlapped or bool(sounding)
            sounding.append((tick, velocity, prog))
        elif sounding:
            cut = cut or (kind == "all off" and overlapped)
            for onset, vel, p in list(sounding) if kind == "all off" else [sounding[0]]:
                paired.append((p, onset, tick - onset, vel))
                sounding.popleft()
            closed_at = tick
        elif kind == "off" and closed_at != tick:
            orphan_at = tick
    cut = cut or (overlapped and bool(sounding))
    paired += [(p, onset, end_tick - onset, vel) for onset, vel, p in sounding]
    return paired, cut


def synthesizer(events: list[Event], end_tick: int) -> list[tuple]:
    """One voice per key: a note-on ends the note playing; a note-off right after the
    re-strike on its tick is the ended note's own."""
    paired, playing = [], None
    orphan_at = closed_at = restruck_at = None
    owed = 0  # note-offs of notes a re-strike ended, still to come
    for kind, tick, velocity, prog in events:
        if kind == "on" and orphan_at == tick:
            orphan_at = None
            paired.append((prog, tick, 0, velocity))
        elif kind == "on":
            if playing:
                paired.append((playing[2], playing[0], tick - playing[0], playing[1]))
                restruck_at, owed = tick, owed + 1
            playing = (tick, velocity, prog)
        elif kind == "off" and restruck_at == tick:
            restruck_at, owed = None, owed - 1
        elif playing:
            paired.append((playing[2], playing[0], tick - playing[0], playing[1]))
            playing, closed_at = None, tick
        elif kind == "off" and owed:
            owed -= 1
        elif kind == "off" and closed_at != tick:
            orphan_at = tick
    if playing:
        paired.append((playing[2], playing[0], end_tick - playing[0], playing[1]))
    return paired


def reference(data: bytes) -> Counter[tuple]:
    """(channel, program, onset, duration, pitch, velocity) of every note, by the rule above
    applied to mido's messages."""
    expected: Counter[tuple] = Counter()
    for track in mido.MidiFile(file=io.BytesIO(data)).tracks:
        tick, programs = 0, [0] * 16
        events: dict[tuple[int, int], list[Event]] = defaultdict(list)  # (channel, pitch)
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity:
                events[msg.channel, msg.note].append(
                    ("on", tick, msg.velocity, programs[msg.channel])
                )
            elif msg.type in ("note_on", "note_off"):
                events[msg.channel, msg.note].append(("off", tick, 0, 0))
            elif msg.type == "control_change" and msg.control in (120, 123):
                for (channel, _), key_events in events.items():
                    if channel == msg.channel:
                        key_events.append(("all off", tick, 0, 0))
            elif msg.type == "program_change":
                programs[msg.channel] = msg.program
        for (channel, pitch), key_events in events.items():
            paired, cut = fifo(key_events, tick)
            if cut:
                paired = synthesizer(key_events, tick)
            for prog, onset, duration, velocity in paired:
                expected[channel, prog, onset, duration, pitch, velocity] += 1
    return expected


def ours(data: bytes) -> Counter[tuple]:
    return Counter(
        (t.channel, t.program, *n[:3], n.velocity)
        for t in read_midi(data).score.tracks
        for n in t.notes
    )


note_on = st.builds(
    lambda ch, pitch, velocity: mido.Message("note_on", channel=ch, note=pitch, velocity=velocity),
    st.sampled_from([0, 0, 1]),
    st.sampled_from([E4, G4]),
    st.sampled_from([0, 1, 90]),  # 0: a note-off written as a note-on
)
note_off = st.builds(
    lambda ch, pitch: mido.Message("note_off", channel=ch, note=pitch),
    st.sampled_from([0, 0, 1]),
    st.sampled_from([E4, G4]),
)
controller = st.builds(
    lambda ch, number: mido.Message("control_change", channel=ch, control=number),
    st.sampled_from([0, 1]),
    st.sampled_from([123, 120, 7]),
)
program_change = st.builds(
    lambda number: mido.Message("program_change", channel=0, program=number), st.integers(0, 2)
)
# Mostly notes, on few keys and ticks: overlaps, re-strikes and ties on a tick are common.
messages = st.one_of(note_on, note_on, note_off, controller, program_change)


@settings(max_examples=400, deadline=None)
@given(
    tracks=st.lists(
        st.lists(st.tuples(st.sampled_from([0, 0, 1, 2]), messages), max_size=40),
        min_size=1,
        max_size=2,
    )
)
def test_random_files_read_as_the_rule_reads_mido_messages(tracks: list) -> None:
    midi = mido.MidiFile(type=1, ticks_per_beat=96)
    for events in tracks:
        midi.tracks.append(mido.MidiTrack(msg.copy(time=delta) for delta, msg in events))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    assert ours(buffer.getvalue()) == reference(buffer.getvalue())


def test_a_late_note_off_of_a_restruck_note_does_not_make_the_next_note_zero_length(
    make_midi,
) -> None:
    """on(0) on(240) [re-strike] off(480) ends the second note; the first note's own off
    comes late at 720, where the key is struck again: a new note from 720, not a zero-length
    note written off-before-on (a note-off owed by a re-struck note ends nothing)."""
    events = [
        (0, mido.Message("note_on", note=64, velocity=90)),
        (240, mido.Message("note_on", note=64, velocity=90)),
        (480, mido.Message("note_off", note=64)),
        (720, mido.Message("note_off", note=64)),
        (720, mido.Message("note_on", note=64, velocity=90)),
        (960, mido.Message("note_off", note=64)),
        (1200, mido.Message("note_on", note=64, velocity=90)),  # never switched off
    ]
    notes = read_midi(make_midi(events)).score.tracks[0].notes
    assert [(n.onset_tick, n.duration_tick) for n in notes] == [
        (0, 240), (240, 240), (720, 240), (1200, 0)
    ]  # fmt: skip
