"""Standard MIDI Files <-> `Score`. The only module that uses the MIDI library (mido).

Reading keeps every note: note-ons with velocity 0 end notes, running status is
mido's business, tempo/meter/key events are taken from any track, several
tracks on one channel stay apart, and overlapping notes of the same pitch are
paired first-in first-out (the reading every major sequencer uses). An
instrument is a (track, channel, program) triple, as in pretty_midi, so tracks
sharing a program are never merged. Whatever the codec cannot carry is counted
in `MidiRead.dropped`, so the round-trip report can say so.

Writing is DAW-ready: format 1, PPQ 480, track 0 holds the tempo map and the
time and key signatures, then one named track per instrument on its own
channel with its program change at tick 0, drums on channel 10, note-offs
before note-ons on the same tick.
"""

from __future__ import annotations

import io
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import mido

from music_lm.score import (
    KEY_TONICS,
    KeySignature,
    Note,
    Score,
    TempoChange,
    TimeSignature,
    Track,
    default_channel_layout,
)
from music_lm.vocab import DRUM_CHANNEL

DAW_TICKS_PER_BEAT = 480
STYLE_TEXT_PREFIX = "music_lm style:"

_CONTROLLER_NAMES = {
    0: "bank select",
    1: "modulation",
    7: "volume",
    10: "pan",
    11: "expression",
    64: "sustain pedal",
    91: "reverb",
    93: "chorus",
    121: "reset all controllers",
}
_META_DROPPED = {
    "lyrics": "lyrics",
    "text": "text events",
    "marker": "markers",
    "cue_marker": "cue markers",
    "copyright": "copyright notices",
    "instrument_name": "instrument names",
    "smpte_offset": "SMPTE offsets",
    "sequencer_specific": "sequencer-specific events",
    "channel_prefix": "channel prefixes",
    "midi_port": "MIDI port events",
    "sequence_number": "sequence numbers",
    "device_name": "device names",
    "program_name": "program names",
    "unknown_meta": "unknown meta events",
}
_MESSAGE_DROPPED = {
    "pitchwheel": "pitch bends",
    "aftertouch": "channel aftertouch",
    "polytouch": "polyphonic aftertouch",
    "sysex": "system exclusive messages",
}


class MidiError(ValueError):
    """A file that cannot be read as a Standard MIDI File we support; the message names it."""


@dataclass
class MidiRead:
    """A score read from a MIDI file, with what the codec cannot carry."""

    score: Score  # on the file's own ticks (score.ticks_per_beat is its PPQ)
    source_name: str
    midi_format: int
    midi_track_count: int
    dropped: Counter[str] = field(default_factory=Counter)  # kind -> count
    remarks: Counter[str] = field(default_factory=Counter)  # repairs made while reading


def _load_bytes(source: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray):
        return bytes(source), "<bytes>"
    path = Path(source)
    try:
        return path.read_bytes(), str(path)
    except OSError as err:
        raise MidiError(f"{path}: cannot read file ({err.strerror or err})") from None


def _parse_key(text: str) -> tuple[int, str]:
    mode = "minor" if text.endswith("m") else "major"
    tonic = text[:-1] if mode == "minor" else text
    return KEY_TONICS[mode].index(tonic) - 7, mode


def read_midi(source: str | Path | bytes, name: str | None = None) -> MidiRead:
    """Read a Standard MIDI File (path or bytes) into a `Score` on the file's ticks.

    Raises MidiError naming the file for anything that is not a format 0/1 SMF
    with metrical (PPQ) timing.
    """
    data, default_name = _load_bytes(source)
    name = name or default_name
    if not data:
        raise MidiError(f"{name}: empty file")
    if data[:4] != b"MThd":
        raise MidiError(f"{name}: not a MIDI file (no 'MThd' header)")
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
    except EOFError:
        raise MidiError(f"{name}: truncated MIDI file (the data ends inside a chunk)") from None
    except Exception as err:  # mido raises many kinds (KeyError, ValueError, ...) on bad data
        detail = str(err) or type(err).__name__
        raise MidiError(f"{name}: not a readable MIDI file ({detail})") from None
    if midi.type not in (0, 1):
        raise MidiError(f"{name}: MIDI format {midi.type} is not supported (only 0 and 1)")
    ppq = midi.ticks_per_beat
    if ppq <= 0 or ppq >= 0x8000:
        raise MidiError(f"{name}: SMPTE time division is not supported (only PPQ timing)")
    return _read_tracks(midi, name)


def _read_tracks(midi: mido.MidiFile, name: str) -> MidiRead:
    result = MidiRead(Score(midi.ticks_per_beat), name, midi.type, len(midi.tracks))
    score, dropped, remarks = result.score, result.dropped, result.remarks
    instruments: dict[tuple[int, int, int], Track] = {}
    for track_index, midi_track in enumerate(midi.tracks):
        tick = 0
        programs = [0] * 16
        sounding: dict[tuple[int, int], deque[tuple[int, int, int]]] = {}
        track_name = ""
        for msg in midi_track:
            tick += msg.time
            kind = msg.type
            if kind == "note_on" and msg.velocity > 0:
                key = (msg.channel, msg.note)
                sounding.setdefault(key, deque()).append(
                    (tick, msg.velocity, programs[msg.channel])
                )
            elif kind == "note_off" or kind == "note_on":
                queue = sounding.get((msg.channel, msg.note))
                if not queue:
                    remarks["note-offs without a note-on (ignored)"] += 1
                    continue
                onset, velocity, program = queue.popleft()
                _instrument(
                    instruments, track_index, msg.channel, program, track_name
                ).notes.append(Note(onset, tick - onset, msg.note, velocity))
            elif kind == "program_change":
                programs[msg.channel] = msg.program
            elif kind == "set_tempo":
                score.tempos.append(TempoChange(tick, mido.tempo2bpm(msg.tempo)))
            elif kind == "time_signature":
                score.time_signatures.append(TimeSignature(tick, msg.numerator, msg.denominator))
            elif kind == "key_signature":
                score.key_signatures.append(KeySignature(tick, *_parse_key(msg.key)))
            elif kind == "track_name":
                track_name = msg.name
            elif kind == "text" and msg.text.startswith(STYLE_TEXT_PREFIX):
                score.style = msg.text[len(STYLE_TEXT_PREFIX) :].strip() or "none"
            elif kind == "control_change":
                label = _CONTROLLER_NAMES.get(msg.control, "other")
                dropped[f"controller CC{msg.control} ({label})"] += 1
            elif kind in _MESSAGE_DROPPED:
                dropped[_MESSAGE_DROPPED[kind]] += 1
            elif kind in _META_DROPPED:
                dropped[_META_DROPPED[kind]] += 1
            elif kind == "end_of_track":
                pass
            else:
                dropped[f"{kind.replace('_', ' ')} events"] += 1
        # Notes still sounding when the track ends are closed there.
        for (channel, pitch), queue in sounding.items():
            for onset, velocity, program in queue:
                remarks["notes without a note-off (closed at the end of their track)"] += 1
                _instrument(instruments, track_index, channel, program, track_name).notes.append(
                    Note(onset, tick - onset, pitch, velocity)
                )
        if track_name and any(k[0] == track_index for k in instruments):
            dropped["track names (tracks are named after their instrument)"] += 1
    for (_, _, program), track in sorted(instruments.items()):
        track.notes.sort()
        if track.is_drum and program != 0:
            dropped[f"drum kit program {program} (played as the standard kit)"] += 1
        score.tracks.append(track)
    _sort_meta(score)
    return result


def _instrument(
    instruments: dict[tuple[int, int, int], Track],
    track_index: int,
    channel: int,
    program: int,
    track_name: str,
) -> Track:
    key = (track_index, channel, program if channel != DRUM_CHANNEL else 0)
    track = instruments.get(key)
    if track is None:
        is_drum = channel == DRUM_CHANNEL
        program = 0 if is_drum else program
        track = Track(program, is_drum=is_drum, name=track_name, channel=channel)
        instruments[key] = track
    return track


def _sort_meta(score: Score) -> None:
    # Stable sorts: several events on one tick keep file order (the last one wins).
    score.tempos.sort(key=lambda e: e.tick)
    score.time_signatures.sort(key=lambda e: e.tick)
    score.key_signatures.sort(key=lambda e: e.tick)


# ---- writing ----


def track_display_names(tracks: list[Track]) -> list[str]:
    """'Acoustic Grand Piano', 'Drums', with ' 2', ' 3' for repeated instruments."""
    names, seen = [], Counter()
    for track in tracks:
        base = "Drums" if track.is_drum else track.instrument_name.replace("-", " ").title()
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base} {seen[base]}")
    return names


def write_midi(score: Score, ticks_per_beat: int = DAW_TICKS_PER_BEAT) -> bytes:
    """A DAW-ready Standard MIDI File (format 1) of `score`, as bytes."""
    scale_num, scale_den = ticks_per_beat, score.ticks_per_beat

    def at(tick: int) -> int:
        return tick * scale_num // scale_den

    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    conductor: list[tuple[int, int, mido.MetaMessage]] = []
    for ts in score.time_signatures:
        msg = mido.MetaMessage("time_signature", numerator=ts.numerator, denominator=ts.denominator)
        conductor.append((at(ts.tick), 0, msg))
    for ks in score.key_signatures:
        key = KEY_TONICS[ks.mode][ks.sharps + 7] + ("m" if ks.mode == "minor" else "")
        conductor.append((at(ks.tick), 1, mido.MetaMessage("key_signature", key=key)))
    for tempo in score.tempos:
        msg = mido.MetaMessage("set_tempo", tempo=round(mido.bpm2tempo(tempo.bpm)))
        conductor.append((at(tempo.tick), 2, msg))
    conductor.sort(key=lambda e: (e[0], e[1]))
    head = [mido.MetaMessage("track_name", name="music_lm")]
    if score.style != "none":
        head.append(mido.MetaMessage("text", text=f"{STYLE_TEXT_PREFIX}{score.style}"))
    midi.tracks.append(_timed_track(head, conductor))

    names = track_display_names(score.tracks)
    for track, channel, name in zip(
        score.tracks, default_channel_layout(score.tracks), names, strict=True
    ):
        head = [
            mido.MetaMessage("track_name", name=name),
            mido.Message("program_change", channel=channel, program=track.program),
        ]
        events: list[tuple[int, int, int, mido.Message]] = []
        for note in track.notes:
            on, off = at(note.onset_tick), at(note.end_tick)
            # Sort key: tick, note-offs first, then note-ons of one pitch in the
            # order they end, so first-in first-out pairing reads them back.
            note_on = mido.Message(
                "note_on", channel=channel, note=note.pitch, velocity=note.velocity
            )
            note_off = mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)
            events.append((on, 1, off, note_on))
            events.append((off, 0, 0, note_off))
        events.sort(key=lambda e: (e[0], e[1], e[2], e[3].note))
        midi.tracks.append(_timed_track(head, [(e[0], 0, e[3]) for e in events]))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _timed_track(
    head: list[mido.Message | mido.MetaMessage],
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]],
) -> mido.MidiTrack:
    track = mido.MidiTrack(head)
    last = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track
