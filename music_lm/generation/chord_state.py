"""The chord lock in the continuation state: which tracks it holds, and the pitches a held
track may take at the current onset.

`ChordPitches` is a base class of `ContinuationState` (generation/state.py), as `EndBudget`
is, kept apart so the lock reads on its own. It reads the state's `constraints`, `tracks`,
`grammar` and `bars_started`; the state asks `_pitches_here` for a track's allowed pitches
wherever it asked for the track's own. Pure Python, no torch.
"""

from __future__ import annotations

from music_lm.generation.constraints import ConstraintError
from music_lm.generation.ranges import note_ranges
from music_lm.midi.gm import GM_PROGRAMS
from music_lm.tokens.rules import Ranges
from music_lm.tokens.vocab import VOCAB

_PITCH0 = VOCAB.ranges["pitch"].start


class ChordPitches:
    """The chord-lock half of `ContinuationState`."""

    def _begin_chords(self, programs: list[int]) -> None:
        """Resolve the locked tracks and check that every chord leaves each a pitch."""
        self.chord_tracks = chord_tracks(self.constraints, programs)
        self._chord_memo: dict[tuple[int, frozenset[int]], tuple[frozenset[int], Ranges]] = {}
        lock = self.constraints.chords
        if lock is None:
            return
        for index in sorted(self.chord_tracks):
            track = self.tracks[index]
            for chord in {c for bar in lock.chart.bars for c in bar}:
                if track.allowed and not self._locked(index, chord.pitch_classes)[0]:
                    raise ConstraintError(
                        f"chord {chord.symbol} ({chord.names()}) has no pitch that track "
                        f"{index + 1} ({GM_PROGRAMS[track.program]}) may play in its range "
                        "and scale"
                    )

    def _chord_locked(self, track: int) -> bool:
        return self.constraints.chords is not None and track in self.chord_tracks

    def _locked(self, track: int, classes: frozenset[int]) -> tuple[frozenset[int], Ranges]:
        """(pitches, their ids) of `track`'s allowed pitches in the pitch classes `classes`."""
        key = (track, classes)
        found = self._chord_memo.get(key)
        if found is None:
            pitches = frozenset(p for p in self.tracks[track].pitches if p % 12 in classes)
            found = self._chord_memo[key] = (pitches, note_ranges(_PITCH0, pitches))
        return found

    def _chart_pitches(self, track: int) -> list[frozenset[int]]:
        """The pitches `track` may take under each chord of the chart."""
        chart = self.constraints.chords.chart
        return [self._locked(track, c.pitch_classes)[0] for bar in chart.bars for c in bar]

    def _pitches_here(self, track: int) -> tuple[frozenset[int], Ranges]:
        """(pitches, their ids) `track` may take at the current onset: its allowed ones,
        under a chord lock those of the chord there (off the beat, all of them unless
        strict)."""
        info = self.tracks[track]
        if not self._chord_locked(track):
            return info.pitches, info.pitch_ranges
        g = self.grammar
        classes = self.constraints.chords.classes_at(
            self.bars_started - 1, max(g.pos, 0), g.bar_length, g.ts
        )
        if classes is None:
            return info.pitches, info.pitch_ranges
        return self._locked(track, classes)


def chord_tracks(constraints, programs: list[int]) -> frozenset[int]:
    """The tracks (0-based) a chord lock holds: those `constraints.chord_tracks` names (a
    number, '1' for t1, or an instrument's programs), else every melodic track."""
    if constraints.chords is None:
        return frozenset()
    if constraints.chord_tracks is None:
        return frozenset(i for i, p in enumerate(programs) if p >= 0)
    chosen: set[int] = set()
    for word, wanted in constraints.chord_tracks:
        if wanted is None:  # a track number
            if not 1 <= int(word) <= len(programs):
                raise ConstraintError(
                    f"--chord-tracks: there is no track {word} (tracks 1..{len(programs)})"
                )
            found = {int(word) - 1}
        else:
            found = {i for i, p in enumerate(programs) if p in wanted}
            if not found:
                raise ConstraintError(f"--chord-tracks: no track plays {word!r}")
        if any(programs[i] < 0 for i in found):
            raise ConstraintError(f"--chord-tracks: {word!r} is a drum track, which has no pitches")
        chosen |= found
    return frozenset(chosen)
