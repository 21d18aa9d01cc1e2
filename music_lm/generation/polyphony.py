"""Polyphony tracking: per track, the notes that may still sound, against a voice limit.

The grammar keeps one end per pitch; polyphony counts doubled notes too, so `Voices` keeps
the end tick of every note of a track until it has ended. A melodic track has a free voice
while fewer than `limit` of its notes sound; drums are exempt. Pure Python, no torch.
"""

from __future__ import annotations

from music_lm.tokens.grammar import GrammarState
from music_lm.tokens.vocab import VOCAB

_FAM = VOCAB.family_of


class Voices:
    """The sounding notes of each track of a piece being decoded, and the polyphony limit
    they count against (None: no limit). `take` follows each token the grammar took."""

    __slots__ = ("drums", "ends", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        # Per track: the end ticks of its notes that may still sound. (The grammar keeps
        # one end per pitch; polyphony counts doubled notes too.)
        self.ends: list[list[int]] = []
        self.drums: tuple[bool, ...] = ()  # per track: a drum track, which has no limit

    def take(self, token: int, g: GrammarState) -> None:
        """Follow `token`, which `g` has just taken."""
        family = _FAM[token]
        if family in ("pitch", "drum"):
            track, _pitch, end = g.onset_notes[-1]
            self.ends[track].append(end)
        elif family in ("pos", "bar"):  # time moved on: forget the notes that ended
            now = g.onset_tick
            for ends in self.ends:
                if ends and min(ends) <= now:
                    ends[:] = [e for e in ends if e > now]
        elif family == "inst":
            self.ends.append([])
            self.drums = (*self.drums, g.track_is_drum[-1])

    def sounding(self, track: int, now: int) -> list[int]:
        """End ticks of the track's notes sounding at tick `now`, those starting then too."""
        return [e for e in self.ends[track] if e > now]

    def free(self, track: int, now: int) -> bool:
        """Whether `track` may start one more note at tick `now`."""
        if self.limit is None or self.drums[track]:
            return True
        return len(self.sounding(track, now)) < self.limit

    def free_before(self, track: int, now: int, final: int, extra: int = 0) -> bool:
        """Whether `track` keeps a free voice at the last tick before `final`, as the notes
        sounding at `now` (and `extra` more that outlast it) leave it."""
        if self.drums[track] or self.limit is None:
            return True
        return sum(1 for e in self.sounding(track, now) if e >= final) + extra < self.limit

    def first_free_step(self, track: int, bar_start: int) -> int:
        """The first position in the bar from `bar_start` (grid steps from the bar line)
        where `track` has a free voice: the N-th latest end of its sounding notes. (Any
        pitch can start anywhere: one that still sounds only needs a longer note.)"""
        if self.limit is None or self.drums[track]:
            return 0
        ends = [e for e in self.ends[track] if e > bar_start]
        if len(ends) < self.limit:
            return 0
        return max(sorted(ends, reverse=True)[self.limit - 1] - bar_start, 0)

    def latest_end(self) -> int:
        """The latest end tick of a note that may still sound (0: none)."""
        return max((e for ends in self.ends for e in ends), default=0)

    def sound_after(self, tick: int) -> bool:
        """Whether a note of some track sounds past `tick`."""
        return any(e > tick for ends in self.ends for e in ends)

    def copy(self) -> Voices:
        new = Voices.__new__(Voices)
        new.limit = self.limit
        new.drums = self.drums
        new.ends = [list(ends) for ends in self.ends]
        return new
