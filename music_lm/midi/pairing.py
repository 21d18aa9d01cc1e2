"""How note-ons and note-offs of one key (channel and pitch) pair into notes.

`music_lm.midi.read` pairs every key first-in first-out in its hot loop. A key that this
leaves with a note-on and no note-off (after one note-on overlapped another) is paired
again here, as a synthesizer plays it: `key_events` reads that key's events out of the
track's bytes once more, and `pair_key` pairs them either way. Both rules, and why, are in
`music_lm.midi.read`'s docstring and docs/token-format.md.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import NamedTuple

# Data bytes after a status byte, for system common messages found in files.
SYSTEM_LENGTHS = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}
# Notes that no note-off of theirs ended, as `MidiRead.remarks` counts them.
RESTRUCK = (
    "notes re-struck before their note-off (ended at the re-strike, as a synthesizer plays them)"
)
ENDED_BY_CONTROLLER = "notes ended by an all-notes-off controller (CC120/CC123)"
AT_TRACK_END = "notes without a note-off (closed at the end of their track)"
ZERO_LENGTH = "zero-length notes written note-off first (kept, one step long)"
REPEATED_OFF = "repeated note-offs (ignored)"
ALL_NOTES_OFF = (120, 123)  # CC120 all sound off, CC123 all notes off
# A key's events as `key_events` lists them: (tick, velocity, program) of a note-on, and
# these velocities for a note-off and an all-notes-off controller.
_NOTE_OFF, _CONTROLLER_OFF = 0, -1


def read_varlen(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, i


class Paired(NamedTuple):
    """One key's events paired by `pair_key`, and what the pairing remarked."""

    notes: list[tuple[tuple[int, int, int], int]]  # ((onset, velocity, program), end tick)
    remarks: Counter[str]
    orphan_at: int | None  # the tick of a note-off left unpaired, as in `orphan_offs`
    without_note_off: int  # note-ons the pairing left without a note-off, from the first overlap


def pair_key(events: list[tuple[int, int, int]], end_tick: int, restrike: bool) -> Paired:
    """Pair one key's events (from `key_events`) first-in first-out, as `_read_track` does,
    or with `restrike` as a synthesizer plays them: a note-on ends the note sounding. Both
    keep the reader's other rules: a note-on right after an unpaired note-off on its tick is
    a zero-length note, a note-off with nothing sounding is ignored, CC120/CC123 end every
    note sounding and the track's end those left."""
    sounding: deque[tuple[int, int, int]] = deque()
    notes: list[tuple[tuple[int, int, int], int]] = []  # plain tuples: this runs per event
    remarks: Counter[str] = Counter()
    closed_at = orphan_at = restruck_at = None  # restruck_at: the tick of the last re-strike
    overlapped, without_note_off = False, 0
    owed = 0  # note-offs still to come for notes a re-strike ended: they end nothing
    for event in events:
        tick, velocity, _ = event
        if velocity > 0:
            if orphan_at == tick:
                orphan_at = None
                remarks[ZERO_LENGTH] += 1
                notes.append((event, tick))
                continue
            if sounding:
                overlapped = True
                if restrike:
                    notes.append((sounding.popleft(), tick))
                    remarks[RESTRUCK] += 1
                    restruck_at = tick
                    owed += 1
            sounding.append(event)
        elif velocity == _NOTE_OFF:
            if restruck_at == tick:
                # Written after the re-strike on its tick (some writers put note-ons first):
                # the note-off of the note the re-strike ended, not a zero-length note.
                restruck_at = None
                remarks[RESTRUCK] -= 1
                owed -= 1
            elif sounding:
                closed_at = tick
                notes.append((sounding.popleft(), tick))
            elif owed:
                # The note-off of a note a re-strike ended, late: not an orphan, so a note-on
                # on its tick is a new note, not a zero-length one written off-before-on.
                owed -= 1
            elif closed_at == tick:
                remarks[REPEATED_OFF] += 1
            else:
                orphan_at = tick
        elif sounding:
            closed_at = tick
            remarks[ENDED_BY_CONTROLLER] += len(sounding)
            without_note_off += len(sounding) if overlapped else 0
            notes += [(note_on, tick) for note_on in sounding]
            sounding.clear()
    remarks[AT_TRACK_END] += len(sounding)
    without_note_off += len(sounding) if overlapped else 0
    notes += [(note_on, end_tick) for note_on in sounding]
    return Paired(notes, remarks, orphan_at, without_note_off)


def key_events(
    data: bytes, i: int, stop: int, keys: set[int]
) -> dict[int, list[tuple[int, int, int]]]:
    """The events of `keys` (channel*128+pitch) in the MTrk chunk data[i:stop], read once
    already (so well formed), in file order: (tick, velocity, program) of a note-on, (tick,
    `_NOTE_OFF`, 0) of a note-off, (tick, `_CONTROLLER_OFF`, 0) of a CC120/CC123."""
    events: dict[int, list[tuple[int, int, int]]] = {key: [] for key in keys}
    programs = [0] * 16
    tick = running = 0
    while i < stop:
        byte = data[i]
        i += 1
        delta = byte & 0x7F
        while byte & 0x80:
            byte = data[i]
            i += 1
            delta = (delta << 7) | (byte & 0x7F)
        tick += delta
        status = data[i]
        if status & 0x80:
            i += 1
            if status < 0xF0:
                running = status
        else:
            status = running
        kind, channel = status & 0xF0, status & 0x0F
        if kind == 0x90 or kind == 0x80:
            log = events.get(channel << 7 | data[i])
            velocity = data[i + 1] if kind == 0x90 else 0
            if log is not None:
                log.append(
                    (tick, velocity, programs[channel]) if velocity else (tick, _NOTE_OFF, 0)
                )
            i += 2
        elif kind == 0xB0:
            if data[i] in ALL_NOTES_OFF:
                for key, log in events.items():
                    if key >> 7 == channel:
                        log.append((tick, _CONTROLLER_OFF, 0))
            i += 2
        elif kind == 0xC0:
            programs[channel] = data[i]
            i += 1
        elif kind == 0xD0:
            i += 1
        elif kind < 0xF0:  # polyphonic aftertouch, pitch bend
            i += 2
        elif status == 0xFF:
            length, i = read_varlen(data, i + 1)
            i += length
        elif status == 0xF0 or status == 0xF7:
            length, i = read_varlen(data, i)
            i += length
        else:
            i += SYSTEM_LENGTHS[status]
    return events
