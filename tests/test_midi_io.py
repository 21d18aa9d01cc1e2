"""Our byte-level MIDI reader against mido, the reference: on every file, both see the same notes
and the same tempo, time-signature and key events."""

from __future__ import annotations

import io
from pathlib import Path

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_note_pairing import Event, fifo, synthesizer

from music_lm import CodecError, MidiError, read_midi, text_to_midi
from music_lm.tokens.encoded import encode_midi

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "midi_in").glob("*.mid"))


def mido_reference(data: bytes) -> dict:
    """The reading rules of music_lm.midi.read, written plainly over mido's parser:
    instruments are (track, channel, program at note-on), and the notes of each
    (channel, pitch) pair as tests/test_note_pairing.py specifies: first-in first-out,
    or as a synthesizer plays them where that leaves a note-on without a note-off (a
    note-off with nothing sounding followed on its tick by a note-on is a zero-length
    note; CC120/CC123 and the end of the track end what still sounds)."""
    midi = mido.MidiFile(file=io.BytesIO(data))
    notes: dict[tuple[int, int, int], list[tuple[int, int, int, int]]] = {}
    tempos, meters, keys = [], [], []
    for track_index, track in enumerate(midi.tracks):
        tick, programs = 0, [0] * 16
        events: dict[tuple[int, int], list[Event]] = {}  # (channel, pitch) -> its events
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                program = 0 if msg.channel == 9 else programs[msg.channel]
                events.setdefault((msg.channel, msg.note), []).append(
                    ("on", tick, msg.velocity, program)
                )
            elif msg.type in ("note_on", "note_off"):
                events.setdefault((msg.channel, msg.note), []).append(("off", tick, 0, 0))
            elif msg.type == "control_change" and msg.control in (120, 123):
                for (channel, _), key_events in events.items():
                    if channel == msg.channel:
                        key_events.append(("all off", tick, 0, 0))
            elif msg.type == "program_change":
                programs[msg.channel] = msg.program
            elif msg.type == "set_tempo":
                tempos.append((tick, round(mido.tempo2bpm(msg.tempo), 6)))
            elif msg.type == "time_signature":
                meters.append((tick, msg.numerator, msg.denominator))
            elif msg.type == "key_signature":
                keys.append((tick, msg.key))
        for (channel, pitch), key_events in events.items():
            paired, cut = fifo(key_events, tick)
            for program, onset, duration, velocity in (
                synthesizer(key_events, tick) if cut else paired
            ):
                notes.setdefault((track_index, channel, program), []).append(
                    (onset, duration, pitch, velocity)
                )
    return {
        "ppq": midi.ticks_per_beat,
        "tracks": [sorted(notes[k]) for k in sorted(notes)],
        "tempos": sorted(tempos, key=lambda e: e[0]),
        "meters": sorted(meters, key=lambda e: e[0]),
        "keys": sorted(keys, key=lambda e: e[0]),
    }


def ours(data: bytes) -> dict:
    score = read_midi(data).score
    key_names = []
    for k in score.key_signatures:
        tonic = str(k).split()[0]
        key_names.append((k.tick, tonic + ("m" if k.mode == "minor" else "")))
    return {
        "ppq": score.ticks_per_beat,
        "tracks": [sorted(tuple(n) for n in t.notes) for t in score.tracks],
        "tempos": [(t.tick, round(t.bpm, 6)) for t in score.tempos],
        "meters": [(t.tick, t.numerator, t.denominator) for t in score.time_signatures],
        "keys": key_names,
    }


def one_track_file(*messages: mido.Message) -> bytes:
    """A format 1 file at 480 PPQ holding `messages` (times are deltas) in one track."""
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_read_as_mido_reads_them(path: Path) -> None:
    data = path.read_bytes()
    assert ours(data) == mido_reference(data)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_our_written_files_read_as_mido_reads_them(path: Path) -> None:
    written = text_to_midi(encode_midi(path).text)
    assert ours(written) == mido_reference(written)


def test_a_zero_length_note_written_note_off_first_stays_zero_length() -> None:
    # music21 writes grace notes so: off then on, on one tick. Pairing the note-on
    # with the next note-off would stretch the grace note over the next note.
    data = one_track_file(
        mido.Message("note_off", note=72, velocity=0, time=480),
        mido.Message("note_on", note=72, velocity=90, time=0),
        mido.Message("note_on", note=72, velocity=90, time=480),
        mido.Message("note_off", note=72, velocity=0, time=480),
    )
    read = read_midi(data)
    assert [tuple(n) for n in read.score.tracks[0].notes] == [(480, 0, 72, 90), (960, 480, 72, 90)]
    assert ours(data) == mido_reference(data)


channel_messages = st.one_of(
    st.builds(
        lambda ch, note, vel: mido.Message("note_on", channel=ch, note=note, velocity=vel),
        st.sampled_from([0, 1, 9]),
        st.integers(58, 62),
        st.integers(0, 127),
    ),
    st.builds(
        lambda ch, note: mido.Message("note_off", channel=ch, note=note),
        st.sampled_from([0, 1, 9]),
        st.integers(58, 62),
    ),
    st.builds(
        lambda ch, program: mido.Message("program_change", channel=ch, program=program),
        st.sampled_from([0, 1]),
        st.integers(0, 3),
    ),
    st.builds(
        lambda bpm: mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)), st.integers(30, 300)
    ),
    st.builds(
        lambda ch, value: mido.Message("pitchwheel", channel=ch, pitch=value),
        st.just(0),
        st.integers(-8192, 8191),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    tracks=st.lists(
        st.lists(st.tuples(st.integers(0, 200), channel_messages), max_size=40),
        min_size=1,
        max_size=3,
    ),
    ppq=st.sampled_from([96, 480, 960]),
)
def test_random_files_read_as_mido_reads_them(tracks: list, ppq: int) -> None:
    midi = mido.MidiFile(type=1, ticks_per_beat=ppq)
    for events in tracks:
        midi.tracks.append(mido.MidiTrack(msg.copy(time=delta) for delta, msg in events))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    data = buffer.getvalue()
    assert ours(data) == mido_reference(data)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_a_third_party_reader_sees_our_written_files_as_we_wrote_them(path: Path) -> None:
    pretty_midi = pytest.importorskip("pretty_midi")
    encoded = encode_midi(path)
    written = pretty_midi.PrettyMIDI(io.BytesIO(text_to_midi(encoded.text)))
    assert [(i.program, i.is_drum, len(i.notes)) for i in written.instruments] == [
        (t.program, t.is_drum, len(t.notes)) for t in encoded.grid.tracks
    ]
    _, bpms = written.get_tempo_changes()
    assert [round(b, 2) for b in bpms] == [t.bpm for t in encoded.grid.tempos]
    assert [(t.numerator, t.denominator) for t in written.time_signature_changes] == [
        (t.numerator, t.denominator) for t in encoded.grid.time_signatures
    ]


def _smf(track_body: bytes, ppq: int = 96) -> bytes:
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    header += ppq.to_bytes(2, "big")
    body = track_body + b"\x00\xff\x2f\x00"
    return header + b"MTrk" + len(body).to_bytes(4, "big") + body


def test_a_delta_time_longer_than_four_bytes_is_a_clear_error() -> None:
    # Found by fuzzing: a corrupt delta put a note at tick 3e14, and encoding it
    # would have written billions of empty bars.
    corrupt = _smf(b"\x00\x90\x3c\x40" + b"\x8f\xff\xff\xff\xff\x7f" + b"\x80\x3c\x00")
    with pytest.raises(MidiError, match=r"<bytes>: malformed delta time .* track 1"):
        read_midi(corrupt)


def test_a_piece_longer_than_the_codec_takes_is_a_clear_error_naming_the_file() -> None:
    # Four-byte deltas are legal, but 2**28 ticks at 96 PPQ is 2.8 million quarter notes.
    far = _smf(b"\x00\x90\x3c\x40" + b"\xff\xff\xff\x7f" + b"\x80\x3c\x00")
    assert read_midi(far).score.tracks[0].notes[0].duration_tick == 0x0FFFFFFF
    with pytest.raises(CodecError, match=r"far.mid: the piece lasts 2,796,203 quarter notes"):
        encode_midi(far, name="far.mid")


def test_a_doubled_note_off_does_not_shorten_the_next_note() -> None:
    data = one_track_file(
        mido.Message("note_on", note=60, velocity=80, time=0),
        mido.Message("note_off", note=60, velocity=0, time=480),
        mido.Message("note_off", note=60, velocity=0, time=0),  # the same note-off again
        mido.Message("note_on", note=60, velocity=80, time=0),
        mido.Message("note_off", note=60, velocity=0, time=480),
    )
    read = read_midi(data)
    assert [tuple(n) for n in read.score.tracks[0].notes] == [(0, 480, 60, 80), (480, 480, 60, 80)]
    assert read.remarks == {"repeated note-offs (ignored)": 1}
    assert ours(data) == mido_reference(data)
