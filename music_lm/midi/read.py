"""Standard MIDI File bytes -> `Score`: the reader, which keeps every note.

Reading keeps every note: note-ons with velocity 0 end notes, running status is
honoured, tempo/meter/key events are taken from any track, several tracks on
one channel stay apart. An instrument is a (track, channel, program) triple, as in
pretty_midi, so tracks sharing a program are never merged. Whatever the codec cannot
carry is counted in `MidiRead.dropped`, so the round-trip report can say so.

Note-ons and note-offs pair per key (channel and pitch) within a track:
- A key whose note-ons all find a note-off pairs them first-in first-out, as most
  sequencers do: overlapping notes of one pitch (unisons of two voices) keep their lengths.
- A key where first-in first-out would leave a note-on without a note-off is paired as a
  synthesizer plays it (FluidSynth; Cubase, Pro Tools and Tracktion do the same), from the
  first note-on that came while a note of that key sounded (before it both rules agree): a
  note-on ends the sounding note and starts the next, a note-off ends the sounding note, a
  note-off with nothing sounding is ignored, and one written right after a re-strike on its
  tick, or later, is the ended note's own (it ends nothing). First-in first-out would pair
  each note-off with the oldest note-on and leave the newest ringing to the end of the
  track, for minutes.
- CC123 (all notes off) and CC120 (all sound off) end every note sounding on their channel
  in their track; the sustain pedal (`--sustain`) still holds them afterwards.
- Notes still sounding when their track ends end there.
`MidiRead.remarks` counts each kind of ending but the note-off (`music-lm inspect` prints them).

The byte-level reader is our own: building a mido message object per event made
reading 3x slower than the codec's throughput goal allows (bench/RESULTS.md). The
tests hold mido as the reference: on every test file, both readers see the same events.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from music_lm.errors import InputError
from music_lm.limits import check_size, limits
from music_lm.midi.gm import DRUM_CHANNEL
from music_lm.midi.pairing import (
    ALL_NOTES_OFF,
    AT_TRACK_END,
    ENDED_BY_CONTROLLER,
    REPEATED_OFF,
    SYSTEM_LENGTHS,
    ZERO_LENGTH,
    key_events,
    pair_key,
    read_varlen,
)
from music_lm.midi.score import KeySignature, Note, Score, TempoChange, TimeSignature, Track
from music_lm.midi.sustain import sustain_notes
from music_lm.midi.write import STYLE_TEXT_PREFIX, names_we_write

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
    pedal's events by channel); return the track's last tick.

    Hot loop: notes, most of the events, are paired here first-in first-out; every other
    kind of event goes to its handler in `_TrackReader` (a call per note cost reading 6% more
    instructions). The rare keys that first-in first-out leaves without a note-off are
    paired again when the track ends (`_TrackReader.repair`), which reads it once more."""
    track = _TrackReader(result, track_index, pedal)
    start = i
    sounding, orphan_offs, closed_at = track.sounding, track.orphan_offs, track.closed_at
    programs, notes_here = track.programs, track.notes_here
    dropped = result.dropped
    tick = 0
    running = 0
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
                    track.zero_length_note(status & 0x0F, pitch, velocity, tick)
                    continue
                queue = sounding.get(key)
                if queue is None:
                    queue = sounding[key] = deque()
                queue.append((tick, velocity, programs[status & 0x0F]))
                continue
            queue = sounding.get(key)
            if not queue:
                track.unpaired_note_off(key, tick)
                continue
            closed_at[key] = tick
            onset, velocity, program = queue.popleft()
            channel = status & 0x0F
            notes = notes_here.get((channel, program))
            if notes is None:
                notes = notes_here[(channel, program)] = []
            notes.append(Note(onset, tick - onset, pitch, velocity))
        elif kind == 0xC0:
            i = track.program_change(data, i, status & 0x0F)
        elif kind == 0xB0:
            i = track.controller(data, i, status & 0x0F, tick)
        elif kind == 0xE0:
            i = track.pitch_bend(data, i)
        elif kind == 0xA0:
            i += 2
            dropped["polyphonic aftertouch"] += 1
        elif kind == 0xD0:
            i += 1
            dropped["channel aftertouch"] += 1
        elif status == 0xFF:
            i = track.meta(data, i, stop, tick)
        else:
            i = track.system(data, i, status)
    if i > stop:
        raise IndexError
    track.finish(instruments, tick, data, start, stop)
    return tick


class _TrackReader:
    """The state of one MTrk chunk being read, and one handler per kind of event.

    `_read_track` reads delta times and status bytes and calls the handler; a handler
    that reads data bytes takes the offset of the first and returns the one after.
    """

    __slots__ = (
        "bends",
        "bends_off_centre",
        "closed_at",
        "cut",
        "drum_programs",
        "notes_here",
        "orphan_offs",
        "pedal",
        "programs",
        "result",
        "sounding",
        "track_index",
        "track_name",
    )

    def __init__(
        self, result: MidiRead, track_index: int, pedal: dict[int, list[tuple[int, bool]]]
    ) -> None:
        self.result = result
        self.track_index = track_index
        self.pedal = pedal  # channel -> (tick, down?) of CC64, shared by all tracks
        self.programs = [0] * 16
        self.drum_programs: set[int] = set()
        self.sounding: dict[int, deque[tuple[int, int, int]]] = {}  # channel*128+pitch -> notes
        # A note-off with nothing sounding, by key -> its tick: a note-on of that key on the
        # same tick right after it is a zero-length note written off-before-on (music21
        # writes grace notes so); pairing it with a later note-off would stretch it.
        self.orphan_offs: dict[int, int] = {}
        self.closed_at: dict[int, int] = {}  # key -> tick of its last note-off that ended a note
        # Keys of which a note ended without its note-off (a controller or the track's end
        # ended it): paired again when the track ends (`repair`).
        self.cut: set[int] = set()
        self.track_name = ""
        self.bends = self.bends_off_centre = 0
        self.notes_here: dict[tuple[int, int], list[Note]] = {}  # (channel, program) -> notes

    def _error(self, what: str) -> MidiError:
        return MidiError(f"{self.result.source_name}: {what} in track {self.track_index + 1}")

    def keep(self, channel: int, program: int, note: Note) -> None:
        """Add `note` to the track's notes of (channel, program)."""
        notes = self.notes_here.get((channel, program))
        if notes is None:
            notes = self.notes_here[(channel, program)] = []
        notes.append(note)

    def zero_length_note(self, channel: int, pitch: int, velocity: int, tick: int) -> None:
        """A note-on right after an unpaired note-off of its key on the same tick: a
        zero-length note written off-before-on."""
        del self.orphan_offs[channel << 7 | pitch]
        self.result.remarks[ZERO_LENGTH] += 1
        self.keep(channel, self.programs[channel], Note(tick, 0, pitch, velocity))

    def unpaired_note_off(self, key: int, tick: int) -> None:
        """A note-off with nothing sounding on its key: a doubled one, or an orphan."""
        if self.closed_at.get(key) == tick:  # a doubled note-off: nothing to mark
            self.result.remarks[REPEATED_OFF] += 1
        else:
            self.orphan_offs[key] = tick

    def all_notes_off(self, channel: int, tick: int) -> None:
        """CC123 (all notes off) or CC120 (all sound off): end every note sounding on
        `channel` in this track at `tick`, as a synthesizer does."""
        for key, queue in self.sounding.items():
            if key >> 7 == channel and queue:
                self.result.remarks[ENDED_BY_CONTROLLER] += len(queue)
                self.closed_at[key] = tick
                self.cut.add(key)
                for onset, velocity, program in queue:
                    self.keep(channel, program, Note(onset, tick - onset, key & 0x7F, velocity))
                queue.clear()

    def program_change(self, data: bytes, i: int, channel: int) -> int:
        program = data[i]
        if program > 127:  # a status byte: GM has 128 programs, and names index them
            raise self._error(f"program change to {program} (not 0..127)")
        self.programs[channel] = program
        if channel == DRUM_CHANNEL and program:
            self.drum_programs.add(program)
        return i + 1

    def controller(self, data: bytes, i: int, channel: int, tick: int) -> int:
        control = data[i]
        if control == 64:
            self.pedal.setdefault(channel, []).append((tick, data[i + 1] >= 64))
        elif control in ALL_NOTES_OFF:  # applied here: nothing is dropped
            self.all_notes_off(channel, tick)
            return i + 2
        label = _CONTROLLER_NAMES.get(control, "other")
        self.result.dropped[f"controller CC{control} ({label})"] += 1
        return i + 2

    def pitch_bend(self, data: bytes, i: int) -> int:
        if data[i] or data[i + 1] != 0x40:  # 0x2000 is the centre: no bend
            self.bends_off_centre += 1
        self.bends += 1
        return i + 2

    def meta(self, data: bytes, i: int, stop: int, tick: int) -> int:
        result = self.result
        meta_type = data[i]
        length, i = read_varlen(data, i + 1)
        payload = data[i : i + length]
        i += length
        if i > stop:
            raise IndexError
        _read_meta(meta_type, payload, tick, result.score, result.dropped, result.remarks)
        if meta_type == 0x06:  # kept for the piano roll; the codec still drops it
            result.markers.append((tick, payload.decode("utf-8", "replace")))
        elif meta_type == 0x03:
            self.track_name = payload.decode("latin-1")
        return i

    def system(self, data: bytes, i: int, status: int) -> int:
        """A system exclusive or system common message (dropped); else an undefined status."""
        if status == 0xF0 or status == 0xF7:
            length, i = read_varlen(data, i)
            self.result.dropped["system exclusive messages"] += 1
            return i + length
        if status in SYSTEM_LENGTHS:
            self.result.dropped["system common messages"] += 1
            return i + SYSTEM_LENGTHS[status]
        raise self._error(f"undefined status byte 0x{status:02X}")

    def finish(
        self,
        instruments: dict[tuple[int, int, int], Track],
        tick: int,
        data: bytes,
        start: int,
        stop: int,
    ) -> None:
        """At the end of the track (`tick`; its bytes are data[start:stop]): close the notes still
        sounding, pair again the keys left without a note-off, hand the notes to their
        instruments and count what the track leaves out."""
        dropped, remarks, notes_here = self.result.dropped, self.result.remarks, self.notes_here
        for key, queue in self.sounding.items():
            if queue:
                remarks[AT_TRACK_END] += len(queue)
                self.cut.add(key)
                for onset, velocity, program in queue:
                    self.keep(key >> 7, program, Note(onset, tick - onset, key & 0x7F, velocity))
        if self.cut:
            self.repair(key_events(data, start, stop, self.cut), tick)
        if self.orphan_offs:
            remarks["note-offs without a note-on (ignored)"] += len(self.orphan_offs)
        if self.bends_off_centre:
            dropped["pitch bends"] += self.bends
        elif self.bends:  # only resets to the centre: nothing is lost
            remarks["pitch-bend resets to the centre (no effect)"] += self.bends
        for (channel, program), notes in notes_here.items():
            track = _instrument(instruments, self.track_index, channel, program, self.track_name)
            track.notes.extend(notes)
        if self.track_name and self.track_name not in names_we_write(notes_here):
            dropped["track names (tracks are named after their instrument)"] += 1
        if any(channel == DRUM_CHANNEL for channel, _ in notes_here):
            for program in sorted(self.drum_programs):
                dropped[f"drum kit program {program} (played as the standard kit)"] += 1

    def repair(self, events: dict[int, list[tuple[int, int, int]]], end_tick: int) -> None:
        """Pair as a synthesizer plays them the keys (with their `events`) where first-in
        first-out left a note-on without its note-off after a note-on overlapped another:
        their notes and remarks replace those of `_read_track`, which `pair_key` repeats."""
        remarks, repaired = self.result.remarks, {}
        for key, events_of_key in events.items():
            fifo = pair_key(events_of_key, end_tick, restrike=False)
            if not fifo.without_note_off:
                continue  # every note-on found its note-off, or no note-on overlapped
            paired = pair_key(events_of_key, end_tick, restrike=True)
            repaired[key] = paired.notes
            for remark in fifo.remarks.keys() | paired.remarks.keys():
                count = remarks[remark] + paired.remarks[remark] - fifo.remarks[remark]
                if count:
                    remarks[remark] = count
                else:
                    remarks.pop(remark, None)
            self.orphan_offs.pop(key, None)
            if paired.orphan_at is not None:
                self.orphan_offs[key] = paired.orphan_at
        if repaired:
            self.replace_notes(repaired)

    def replace_notes(
        self, notes_by_key: dict[int, list[tuple[tuple[int, int, int], int]]]
    ) -> None:
        """Replace the notes of each key (channel*128+pitch) by those `pair_key` paired."""
        channels = {key >> 7 for key in notes_by_key}
        for (channel, program), kept in list(self.notes_here.items()):
            if channel in channels:
                kept[:] = [note for note in kept if channel << 7 | note.pitch not in notes_by_key]
                if not kept:
                    del self.notes_here[(channel, program)]
        for key, notes in notes_by_key.items():
            channel, pitch = key >> 7, key & 0x7F
            for (onset, velocity, program), end in notes:
                self.keep(channel, program, Note(onset, end - onset, pitch, velocity))


def _sustain_instruments(
    instruments: dict[tuple[int, int, int], Track],
    pedal: dict[int, list[tuple[int, bool]]],
    end_tick: int,
    result: MidiRead,
) -> None:
    """Apply the sustain pedal (`music_lm.midi.sustain`); the pedal is then no longer
    dropped, and the notes it lengthened are counted."""
    lengthened = sustain_notes(instruments, pedal, end_tick)
    result.dropped.pop("controller CC64 (sustain pedal)", None)
    if lengthened:
        result.remarks["notes lengthened by the sustain pedal (--sustain)"] += lengthened


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
