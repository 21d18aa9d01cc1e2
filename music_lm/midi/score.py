"""Our own score types, on integer ticks. No MIDI library type leaks out of the reader
(midi/read.py) or the writer (midi/write.py).

A `Score` is what a musician would recognise: tracks (an instrument each) of
notes, plus the tempo map, time signatures and key signatures. Times are ticks
at `ticks_per_beat` ticks per quarter note: the file's PPQ when read from MIDI,
`GRID_PER_QUARTER` (24) once quantised onto the codec's grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from music_lm.midi.gm import DRUM_CHANNEL, GM_PROGRAMS, MAJOR_KEYS, MINOR_KEYS


class Note(NamedTuple):
    """One note. A named tuple: notes sort by onset, then duration, pitch and velocity,
    and a codec handles hundreds of thousands of them, so creation and comparison
    must be cheap."""

    onset_tick: int
    duration_tick: int
    pitch: int
    velocity: int

    @property
    def end_tick(self) -> int:
        return self.onset_tick + self.duration_tick


@dataclass(frozen=True, slots=True)
class TempoChange:
    tick: int
    bpm: float  # quarter notes per minute


@dataclass(frozen=True, slots=True)
class TimeSignature:
    tick: int
    numerator: int
    denominator: int

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


@dataclass(frozen=True, slots=True)
class KeySignature:
    tick: int
    sharps: int  # -7 (7 flats) .. +7 (7 sharps)
    mode: str  # "major" or "minor"

    def __str__(self) -> str:
        return key_name(self.sharps, self.mode)


@dataclass(slots=True)
class Track:
    """One instrument: a GM program (0..127) or drums, and its notes."""

    program: int
    is_drum: bool = False
    notes: list[Note] = field(default_factory=list)
    # For display only, so not part of equality: a decoded score equals the encoded one.
    name: str = field(default="", compare=False)  # the name in the source file
    channel: int | None = field(default=None, compare=False)  # the source channel

    @property
    def instrument_name(self) -> str:
        return "drums" if self.is_drum else GM_PROGRAMS[self.program]


@dataclass(slots=True)
class Score:
    ticks_per_beat: int
    tracks: list[Track] = field(default_factory=list)
    tempos: list[TempoChange] = field(default_factory=list)
    time_signatures: list[TimeSignature] = field(default_factory=list)
    key_signatures: list[KeySignature] = field(default_factory=list)
    style: str = "none"

    @property
    def note_count(self) -> int:
        return sum(len(t.notes) for t in self.tracks)

    @property
    def end_tick(self) -> int:
        """Tick at which the last note ends (or the last meta event lies)."""
        ends = [n.end_tick for t in self.tracks for n in t.notes]
        ends += [e.tick for e in (*self.tempos, *self.time_signatures, *self.key_signatures)]
        return max(ends, default=0)

    def bar_starts(self, until_tick: int | None = None) -> list[int]:
        """Ticks at which bars start, following the time signatures (4/4 before
        the first one), up to and including the bar that holds `until_tick`."""
        until = self.end_tick if until_tick is None else until_tick
        signatures = sorted(self.time_signatures, key=lambda ts: ts.tick)
        starts: list[int] = []
        tick, num, den = 0, 4, 4
        index = 0
        while True:
            while index < len(signatures) and signatures[index].tick <= tick:
                num, den = signatures[index].numerator, signatures[index].denominator
                index += 1
            length = max(num * 4 * self.ticks_per_beat // den, 1)
            # Bars of one meter at once, up to the next signature (which starts a new bar
            # where it falls, even inside a bar): a bar at a time took seconds for a short
            # file in 1/64 at 32,767 ticks per quarter note, which has millions of bars.
            next_signature = signatures[index].tick if index < len(signatures) else None
            stop = until + 1 if next_signature is None else min(next_signature, until + 1)
            starts.extend(range(tick, max(stop, tick + 1), length))
            if next_signature is None or next_signature > until:
                return starts
            tick = next_signature


KEY_TONICS = {"major": MAJOR_KEYS, "minor": MINOR_KEYS}


def key_name(sharps: int, mode: str) -> str:
    """(sharps, mode) -> 'D minor' style name: (-1, 'minor') -> 'D minor'."""
    return f"{KEY_TONICS[mode][sharps + 7]} {mode}"


def default_channel_layout(tracks: list[Track]) -> list[int]:
    """DAW-ready channels: drums on channel 10, melodic tracks on the others in order."""
    melodic = [c for c in range(16) if c != DRUM_CHANNEL]
    channels, next_melodic = [], 0
    for track in tracks:
        if track.is_drum:
            channels.append(DRUM_CHANNEL)
        else:
            channels.append(melodic[next_melodic % len(melodic)])
            next_melodic += 1
    return channels
