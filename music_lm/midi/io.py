"""Standard MIDI Files <-> `Score`: the only module that knows the MIDI file format.

Reading keeps every note: note-ons with velocity 0 end notes, running status is
honoured, tempo/meter/key events are taken from any track, several tracks on
one channel stay apart, and overlapping notes of the same pitch are paired
first-in first-out (as most sequencers do; pretty_midi instead ends every sounding
note of a pitch at its first note-off, so such overlaps are counted in the report).
An instrument is a (track, channel, program) triple, as in pretty_midi, so tracks
sharing a program are never merged. Whatever the codec cannot carry is counted in
`MidiRead.dropped`, so the round-trip report can say so.

Writing is DAW-ready: format 1, PPQ 480, track 0 holds the tempo map and the
time and key signatures, then one named track per instrument on its own
channel with its program change at tick 0, drums on channel 10, note-offs
before note-ons on the same tick.

The byte-level reader and writer are our own: building a mido message object per
event made reading 3x and writing 10x slower than the codec's throughput goal
allows (bench/RESULTS.md). The tests hold mido as the reference: on every test
file, both readers see the same events.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from music_lm.errors import InputError
from music_lm.limits import check_size, limits
from music_lm.midi.gm import DRUM_CHANNEL, GM_PROGRAMS, MAX_TRACKS
from music_lm.midi.score import (
    KeySignature,
    Note,
    Score,
    TempoChange,
    TimeSignature,
    Track,
    default_channel_layout,
)

DAW_TICKS_PER_BEAT = 480
STYLE_TEXT_PREFIX = "music_lm style:"
CONDUCTOR_NAME = "music_lm"  # the name of track 0 in written files

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
_META_DROPPED = {  # meta type -> what the report calls it
    0x00: "sequence numbers",
    0x01: "text events",
    0x02: "copyright notices",
    0x04: "instrument names",
    0x05: "lyrics",
    0x06: "markers",
    0x07: "cue markers",
    0x08: "program names",
    0x09: "device names",
    0x20: "channel prefixes",
    0x21: "MIDI port events",
    0x54: "SMPTE offsets",
    0x7F: "sequencer-specific events",
}
_MAX_DELTA = 0x0FFFFFFF  # a delta time is at most four bytes of seven bits
# Data bytes after a status byte, for system common messages found in files.
_SYSTEM_LENGTHS = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}


class MidiError(InputError, ValueError):
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
    markers: list[tuple[int, str]] = field(default_factory=list)  # (tick, text) marker events


def _load_bytes(source: str | Path | bytes, name: str | None) -> tuple[bytes, str]:
    """The file's bytes and its name; a file over the size limit is refused unread."""
    if isinstance(source, bytes | bytearray | memoryview):
        check_size(len(source), name or "<bytes>", MidiError)
        return bytes(source), "<bytes>"
    path = Path(source)
    try:
        check_size(path.stat().st_size, name or str(path), MidiError)
        return path.read_bytes(), str(path)
    except OSError as err:
        raise MidiError(f"{path}: cannot read file ({err.strerror or err})") from None


def read_midi(
    source: str | Path | bytes, name: str | None = None, sustain: bool = False
) -> MidiRead:
    """Read a Standard MIDI File (path or bytes) into a `Score` on the file's ticks.

    With `sustain`, the sustain pedal (CC64) is applied: a note released while the
    pedal is down sounds on until the pedal lifts or its key is struck again, as on a
    piano. Without it the pedal is reported as dropped and notes end at their note-off.

    Raises MidiError naming the file for anything that is not a format 0/1 SMF
    with metrical (PPQ) timing, or whose data is cut short or malformed.
    """
    data, default_name = _load_bytes(source, name)
    name = name or default_name
    if not data:
        raise MidiError(f"{name}: empty file")
    if data[:4] != b"MThd":
        raise MidiError(f"{name}: not a MIDI file (no 'MThd' header)")
    if len(data) < 14:
        raise MidiError(f"{name}: truncated MIDI file (the header is cut short)")
    header_length = int.from_bytes(data[4:8], "big")
    midi_format = int.from_bytes(data[8:10], "big")
    track_count = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big")
    if header_length < 6:
        raise MidiError(f"{name}: malformed MIDI header (length {header_length}, expected 6)")
    if midi_format not in (0, 1):
        raise MidiError(f"{name}: MIDI format {midi_format} is not supported (only 0 and 1)")
    if division & 0x8000:
        raise MidiError(f"{name}: SMPTE time division is not supported (only PPQ timing)")
    if division == 0:
        raise MidiError(f"{name}: invalid time division 0 ticks per quarter note")
    allowed = limits()
    if track_count > allowed.tracks:
        raise MidiError(
            f"{name}: {track_count:,} tracks is over the limit of {allowed.tracks:,} "
            "(raise it with --limit tracks=N)"
        )
    chunks = _track_chunks(data, 8 + header_length, track_count, name)
    result = MidiRead(Score(division), name, midi_format, len(chunks))
    instruments: dict[tuple[int, int, int], Track] = {}
    pedal: dict[int, list[tuple[int, bool]]] = {}  # channel -> (tick, down?) of CC64
    end_tick = 0
    for index, (start, stop) in enumerate(chunks):
        try:
            last_tick = _read_track(data, start, stop, index, result, instruments, pedal)
        except IndexError:
            raise MidiError(
                f"{name}: truncated MIDI file (track {index + 1} ends inside an event)"
            ) from None
        end_tick = max(end_tick, last_tick)
        # Checked track by track: the size limit already bounds what one track can hold.
        notes = sum(len(t.notes) for t in instruments.values())
        if notes > allowed.notes:
            raise MidiError(
                f"{name}: over {allowed.notes:,} notes (the limit; raise it with --limit notes=N)"
            )
    if sustain and pedal:
        _sustain_instruments(instruments, pedal, end_tick, result)
    for _, track in sorted(instruments.items()):
        track.notes.sort()
        result.score.tracks.append(track)
    _sort_meta(result.score)
    return result


def _track_chunks(data: bytes, pos: int, track_count: int, name: str) -> list[tuple[int, int]]:
    """(start, stop) byte offsets of the track chunks; unknown chunks are skipped."""
    chunks = []
    while len(chunks) < track_count:
        if pos + 8 > len(data):
            raise MidiError(
                f"{name}: truncated MIDI file (the header announces {track_count} tracks, "
                f"found {len(chunks)})"
            )
        chunk_id, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        pos += 8
        if pos + length > len(data):
            raise MidiError(
                f"{name}: truncated MIDI file (track {len(chunks) + 1} announces {length} bytes, "
                f"{len(data) - pos} remain)"
            )
        if chunk_id == b"MTrk":
            chunks.append((pos, pos + length))
        pos += length
    return chunks


def _read_track(
    data: bytes,
    i: int,
    stop: int,
    track_index: int,
    result: MidiRead,
    instruments: dict[tuple[int, int, int], Track],
    pedal: dict[int, list[tuple[int, bool]]],
) -> int:
    """Read one MTrk chunk's events into `result`, `instruments` and `pedal` (the sustain
    pedal's events by channel); return the track's last tick. Hot loop: kept flat."""
    score, dropped, remarks = result.score, result.dropped, result.remarks
    tick = 0
    running = 0
    programs = [0] * 16
    drum_programs: set[int] = set()
    sounding: dict[int, deque[tuple[int, int, int]]] = {}  # channel*128+pitch -> notes
    # A note-off with nothing sounding, by key -> its tick: a note-on of that key on the
    # same tick right after it is a zero-length note written off-before-on (music21
    # writes grace notes so); pairing it with a later note-off would stretch it.
    orphan_offs: dict[int, int] = {}
    closed_at: dict[int, int] = {}  # key -> tick of its last note-off that ended a note
    track_name = ""
    bends = bends_off_centre = 0
    notes_here: dict[tuple[int, int], list[Note]] = {}  # (channel, program) -> notes
    while i < stop:
        byte = data[i]
        i += 1
        delta = byte & 0x7F
        while byte & 0x80:
            byte = data[i]
            i += 1
            delta = (delta << 7) | (byte & 0x7F)
            # Checked as the bytes come: a run of thousands of 0xFF bytes would otherwise
            # build a number too long to even print in the message.
            if delta > _MAX_DELTA:
                raise MidiError(
                    f"{result.source_name}: malformed delta time (more than {_MAX_DELTA} "
                    f"ticks, the most MIDI's four bytes allow) in track {track_index + 1}"
                )
        tick += delta
        status = data[i]
        if status & 0x80:
            i += 1
            if status < 0xF0:
                running = status
        elif running:
            status = running
        else:
            raise MidiError(
                f"{result.source_name}: data byte without a status byte in track {track_index + 1}"
            )
        kind = status & 0xF0
        if kind == 0x90 or kind == 0x80:
            pitch, velocity = data[i], data[i + 1]
            i += 2
            if pitch > 127 or velocity > 127:
                raise MidiError(
                    f"{result.source_name}: data byte out of range in track {track_index + 1}"
                )
            key = (status & 0x0F) << 7 | pitch
            if kind == 0x90 and velocity:
                if orphan_offs.get(key) == tick:
                    del orphan_offs[key]
                    remarks["zero-length notes written note-off first (kept, one step long)"] += 1
                    channel = status & 0x0F
                    program = programs[channel]
                    notes = notes_here.get((channel, program))
                    if notes is None:
                        notes = notes_here[(channel, program)] = []
                    notes.append(Note(tick, 0, pitch, velocity))
                    continue
                queue = sounding.get(key)
                if queue is None:
                    queue = sounding[key] = deque()
                queue.append((tick, velocity, programs[status & 0x0F]))
                continue
            queue = sounding.get(key)
            if not queue:
                if closed_at.get(key) == tick:  # a doubled note-off: nothing to mark
                    remarks["repeated note-offs (ignored)"] += 1
                else:
                    orphan_offs[key] = tick
                continue
            closed_at[key] = tick
            onset, velocity, program = queue.popleft()
            channel = status & 0x0F
            notes = notes_here.get((channel, program))
            if notes is None:
                notes = notes_here[(channel, program)] = []
            notes.append(Note(onset, tick - onset, pitch, velocity))
        elif kind == 0xC0:
            program = data[i]
            i += 1
            if program > 127:  # a status byte: GM has 128 programs, and names index them
                raise MidiError(
                    f"{result.source_name}: program change to {program} (not 0..127) in track "
                    f"{track_index + 1}"
                )
            channel = status & 0x0F
            programs[channel] = program
            if channel == DRUM_CHANNEL and program:
                drum_programs.add(program)
        elif kind == 0xB0:
            control = data[i]
            if control == 64:
                pedal.setdefault(status & 0x0F, []).append((tick, data[i + 1] >= 64))
            i += 2
            label = _CONTROLLER_NAMES.get(control, "other")
            dropped[f"controller CC{control} ({label})"] += 1
        elif kind == 0xE0:
            if data[i] or data[i + 1] != 0x40:  # 0x2000 is the centre: no bend
                bends_off_centre += 1
            i += 2
            bends += 1
        elif kind == 0xA0:
            i += 2
            dropped["polyphonic aftertouch"] += 1
        elif kind == 0xD0:
            i += 1
            dropped["channel aftertouch"] += 1
        elif status == 0xFF:
            meta_type = data[i]
            i += 1
            length, i = _read_varlen(data, i)
            payload = data[i : i + length]
            i += length
            if i > stop:
                raise IndexError
            _read_meta(meta_type, payload, tick, score, dropped, remarks)
            if meta_type == 0x06:  # kept for the piano roll; the codec still drops it
                result.markers.append((tick, payload.decode("utf-8", "replace")))
            elif meta_type == 0x03:
                track_name = payload.decode("latin-1")
        elif status == 0xF0 or status == 0xF7:
            length, i = _read_varlen(data, i)
            i += length
            dropped["system exclusive messages"] += 1
        elif status in _SYSTEM_LENGTHS:
            i += _SYSTEM_LENGTHS[status]
            dropped["system common messages"] += 1
        else:
            raise MidiError(
                f"{result.source_name}: undefined status byte 0x{status:02X} in track "
                f"{track_index + 1}"
            )
    if i > stop:
        raise IndexError
    if orphan_offs:
        remarks["note-offs without a note-on (ignored)"] += len(orphan_offs)
    if bends_off_centre:
        dropped["pitch bends"] += bends
    elif bends:  # only resets to the centre: nothing is lost
        remarks["pitch-bend resets to the centre (no effect)"] += bends
    # Notes still sounding when the track ends are closed there.
    for key, queue in sounding.items():
        for onset, velocity, program in queue:
            remarks["notes without a note-off (closed at the end of their track)"] += 1
            notes_here.setdefault((key >> 7, program), []).append(
                Note(onset, tick - onset, key & 0x7F, velocity)
            )
    for (channel, program), notes in notes_here.items():
        track = _instrument(instruments, track_index, channel, program, track_name)
        track.notes.extend(notes)
    if track_name and track_name not in _names_we_write(notes_here):
        dropped["track names (tracks are named after their instrument)"] += 1
    if any(channel == DRUM_CHANNEL for channel, _ in notes_here):
        for program in sorted(drum_programs):
            dropped[f"drum kit program {program} (played as the standard kit)"] += 1
    return tick


def _sustain_instruments(
    instruments: dict[tuple[int, int, int], Track],
    pedal: dict[int, list[tuple[int, bool]]],
    end_tick: int,
    result: MidiRead,
) -> None:
    """Apply each channel's sustain pedal to every instrument on that channel, from any
    track: a synthesizer knows channels, not tracks."""
    lengthened = 0
    for (_, channel, _), track in instruments.items():
        if channel in pedal:
            events = sorted(pedal[channel], key=lambda e: e[0])  # stable: file order per tick
            lengthened += _apply_sustain(track.notes, _pedal_down_spans(events, end_tick))
    result.dropped.pop("controller CC64 (sustain pedal)", None)
    if lengthened:
        result.remarks["notes lengthened by the sustain pedal (--sustain)"] += lengthened


def _pedal_down_spans(events: list[tuple[int, bool]], end_tick: int) -> list[tuple[int, int]]:
    """[down, up) tick spans of a sustain pedal from its CC64 events (in order); a pedal
    never lifted holds to the end of the track."""
    spans, down_at = [], None
    for tick, down in events:
        if down and down_at is None:
            down_at = tick
        elif not down and down_at is not None:
            if tick > down_at:
                spans.append((down_at, tick))
            down_at = None
    if down_at is not None and end_tick > down_at:
        spans.append((down_at, end_tick))
    return spans


def _apply_sustain(notes: list[Note], spans: list[tuple[int, int]]) -> int:
    """Hold each note released inside a pedal-down span until the pedal lifts, or until
    its key is struck again (in place). Returns how many notes got longer."""
    if not spans:
        return 0
    downs = [down for down, _ in spans]
    order = sorted(range(len(notes)), key=lambda k: notes[k].onset_tick)
    next_strike: dict[int, int] = {}  # pitch -> onset of the next note of that pitch
    restrike = [0] * len(notes)
    for k in reversed(order):
        restrike[k] = next_strike.get(notes[k].pitch, 1 << 62)
        next_strike[notes[k].pitch] = notes[k].onset_tick
    lengthened = 0
    for k, (onset, duration, pitch, velocity) in enumerate(notes):
        release = onset + duration
        span = bisect.bisect_right(downs, release) - 1
        if span < 0 or release >= spans[span][1]:
            continue  # released with the pedal up
        end = min(spans[span][1], restrike[k])
        if end > release:
            notes[k] = Note(onset, end - onset, pitch, velocity)
            lengthened += 1
    return lengthened


def _names_we_write(notes_here: dict[tuple[int, int], list[Note]]) -> set[str]:
    """Names the writer gives a track holding these instruments: reading them back loses
    nothing ("music_lm" for the conductor track, else the instrument's name)."""
    if not notes_here:
        return {CONDUCTOR_NAME}
    names = set()
    for channel, program in notes_here:
        base = "Drums" if channel == DRUM_CHANNEL else _display_name(program)
        names |= {base, *(f"{base} {n}" for n in range(2, MAX_TRACKS + 1))}
    return names


def _display_name(program: int) -> str:
    return GM_PROGRAMS[program].replace("-", " ").title()


def _read_varlen(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, i


def _read_meta(
    meta_type: int,
    payload: bytes,
    tick: int,
    score: Score,
    dropped: Counter[str],
    remarks: Counter[str],
) -> None:
    if meta_type == 0x51:
        tempo_us = int.from_bytes(payload[:3], "big")
        if len(payload) < 3 or tempo_us == 0:
            remarks["malformed tempo events (ignored)"] += 1
        else:
            score.tempos.append(TempoChange(tick, 60_000_000 / tempo_us))
    elif meta_type == 0x58:
        if len(payload) < 2 or payload[0] == 0 or payload[1] > 6:  # denominators 1..64
            remarks["malformed time signatures (ignored)"] += 1
        else:
            score.time_signatures.append(TimeSignature(tick, payload[0], 1 << payload[1]))
    elif meta_type == 0x59:
        sharps = payload[0] - 256 if payload and payload[0] > 127 else (payload or b"\x63")[0]
        if len(payload) < 2 or not -7 <= sharps <= 7 or payload[1] > 1:
            remarks["malformed key signatures (ignored)"] += 1
        else:
            mode = "minor" if payload[1] else "major"
            score.key_signatures.append(KeySignature(tick, sharps, mode))
    elif meta_type == 0x01 and payload.startswith(STYLE_TEXT_PREFIX.encode()):
        score.style = payload[len(STYLE_TEXT_PREFIX) :].decode("latin-1").strip() or "none"
    elif meta_type in (0x03, 0x2F):
        pass  # the track name is kept by the caller; end of track needs nothing
    else:
        dropped[_META_DROPPED.get(meta_type, "unknown meta events")] += 1


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
        base = "Drums" if track.is_drum else _display_name(track.program)
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base} {seen[base]}")
    return names


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _meta(meta_type: int, payload: bytes) -> bytes:
    return bytes((0xFF, meta_type)) + _varlen(len(payload)) + payload


_VARLEN_SMALL = [_varlen(value) for value in range(1 << 14)]  # one or two bytes


def _chunk(events: list[tuple[int, bytes]]) -> bytes:
    """An MTrk chunk of (absolute tick, message bytes), in order, ended by end-of-track."""
    parts = []
    last = 0
    small = _VARLEN_SMALL
    for tick, message in events:
        delta = tick - last
        parts.append(small[delta] if delta < 16384 else _varlen(delta))
        parts.append(message)
        last = tick
    parts.append(b"\x00\xff\x2f\x00")
    body = b"".join(parts)
    return b"MTrk" + len(body).to_bytes(4, "big") + body


def write_midi(
    score: Score,
    ticks_per_beat: int = DAW_TICKS_PER_BEAT,
    markers: Sequence[tuple[int, str]] = (),
    texts: Sequence[str] = (),
    midi_format: int = 1,
) -> bytes:
    """A DAW-ready Standard MIDI File (format 1) of `score`, as bytes; `midi_format=0` puts
    the same events in one track, for tools that want a single track (each instrument
    keeps its channel and program change).

    `markers` are (tick in the score's resolution, name) marker events and `texts` text
    events at tick 0, both in the conductor track (a generator marks where its
    continuation starts and records its settings there)."""
    source_ppq = score.ticks_per_beat

    def at(tick: int) -> int:
        return tick * ticks_per_beat // source_ppq

    conductor: list[tuple[int, int, bytes]] = []  # (tick, order on a tick, message)
    for ts in score.time_signatures:
        power = ts.denominator.bit_length() - 1
        # A metronome click every quarter note (24 MIDI clocks), eight 32nds per quarter.
        conductor.append((at(ts.tick), 0, _meta(0x58, bytes((ts.numerator, power, 24, 8)))))
    for ks in score.key_signatures:
        payload = bytes((ks.sharps & 0xFF, 1 if ks.mode == "minor" else 0))
        conductor.append((at(ks.tick), 1, _meta(0x59, payload)))
    for tempo in score.tempos:
        microseconds = round(60_000_000 / tempo.bpm)
        conductor.append((at(tempo.tick), 2, _meta(0x51, microseconds.to_bytes(3, "big"))))
    for tick, name in markers:
        conductor.append((at(tick), 3, _meta(0x06, name.encode("utf-8"))))
    conductor.sort(key=lambda e: (e[0], e[1]))
    head = [(0, _meta(0x03, CONDUCTOR_NAME.encode("latin-1")))]
    if score.style != "none":
        head.append((0, _meta(0x01, f"{STYLE_TEXT_PREFIX}{score.style}".encode("latin-1"))))
    head += [(0, _meta(0x01, text.encode("utf-8"))) for text in texts]
    tracks = [head + [(tick, message) for tick, _, message in conductor]]

    names = track_display_names(score.tracks)
    channels = default_channel_layout(score.tracks)
    for track, channel, name in zip(score.tracks, channels, names, strict=True):
        # Sort key: tick, note-offs first, then note-ons of one pitch in the order
        # they end, so first-in first-out pairing reads them back as written.
        events: list[tuple[int, int, int, int, bytes]] = []
        note_on, note_off = 0x90 | channel, 0x80 | channel
        offs = [bytes((note_off, pitch, 64)) for pitch in range(128)]
        for onset, duration, pitch, velocity in track.notes:
            on, off = at(onset), at(onset + duration)
            events.append((on, 1, off, pitch, bytes((note_on, pitch, velocity))))
            events.append((off, 0, 0, pitch, offs[pitch]))
        events.sort()  # ties (doubled notes) fall to the message bytes: still deterministic
        body = [
            (0, _meta(0x03, name.encode("latin-1"))),
            (0, bytes((0xC0 | channel, track.program))),
        ]
        tracks.append(body + [(e[0], e[4]) for e in events])
    if midi_format == 0:
        # One track: the conductor's events first on a tick, then each instrument's in
        # order (a stable sort keeps note-offs before note-ons); the first name names it.
        merged = [
            (tick, index, message)
            for index, events in enumerate(tracks)
            for tick, message in events
            if index == 0 or message[:2] != b"\xff\x03"
        ]
        merged.sort(key=lambda e: (e[0], e[1]))
        tracks = [[(tick, message) for tick, _, message in merged]]
    elif midi_format != 1:
        raise ValueError(f"midi_format must be 0 or 1, got {midi_format}")
    chunks = [_chunk(events) for events in tracks]
    header = b"MThd" + (6).to_bytes(4, "big") + midi_format.to_bytes(2, "big")
    header += len(chunks).to_bytes(2, "big") + ticks_per_beat.to_bytes(2, "big")
    return header + b"".join(chunks)
