"""The layout of a piano roll as plain data, which both drawings of it draw from (the PNG
with matplotlib and the page's figure with Plotly, in `music_lm.render.pianoroll`); this
module imports neither.

* one colour per track, named in a legend ("2 Violin"); velocity as opacity;
* drums in a lane of their own under the pitched notes, one row per drum sound, named;
* the pitch axis zoomed to the notes, labelled with note names;
* bar lines, and bar numbers along the time axis (in quarter notes);
* for a continuation, the seed's span: from the start to where the new bars begin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from music_lm.midi.gm import GM_DRUMS, pitch_to_name
from music_lm.midi.score import Score

# tab10 first, then the lighter tab20 shades: 16 tracks, 16 colours
TRACK_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
)
NOTE_HEIGHT = 0.8  # of a row: neighbouring pitches stay apart


@dataclass(frozen=True)
class RollNote:
    track: int
    onset_beats: float
    duration_beats: float
    pitch: int
    velocity: int
    drums: bool


@dataclass(frozen=True)
class NoteBox:
    """A note's rectangle: from onset_beats for duration_beats along time, NOTE_HEIGHT tall
    around its row."""

    onset_beats: float
    duration_beats: float
    row: int  # the pitch in the pitch lane; the drum sound's row (from 0) in the drum lane
    name: str  # "C#5", or the drum sound's name ("Acoustic snare")
    velocity: int
    opacity: float


@dataclass(frozen=True)
class TrackNotes:
    """The notes of one track, in its colour, in the pitch lane or the drum lane."""

    index: int  # 0-based, in the score
    label: str  # its legend entry: "2 Violin"
    colour: str
    drums: bool
    notes: tuple[NoteBox, ...]


@dataclass(frozen=True)
class Lane:
    """The vertical axis of one panel: pitched notes (a row per MIDI pitch) or drums (a row
    per drum sound, numbered from 0 at the bottom)."""

    title: str  # "pitch" or "drums"
    row_range: tuple[float, float]  # bottom, top
    tick_rows: tuple[int, ...]
    tick_labels: tuple[str, ...]


@dataclass(frozen=True)
class RollLayout:
    """What a piano roll shows, in quarter notes along time and rows up its lanes."""

    tracks: tuple[TrackNotes, ...]  # the tracks with notes, in score order
    pitch_lane: Lane | None  # None: no pitched notes
    drum_lane: Lane | None  # None: no drums
    end_beats: float  # the time axis runs from 0 to the end of the last note
    bar_lines: tuple[float, ...]  # where every bar starts
    bar_label_at: tuple[float, ...]  # where bar numbers are written (at most ~32)
    bar_labels: tuple[str, ...]
    seed_end_beats: float | None  # a continuation's seed spans 0..this; None: no seed
    bar_start_ticks: tuple[int, ...]  # the bar lines in ticks, for bar_and_beat
    ticks_per_beat: int


def track_label(score: Score, index: int) -> str:
    track = score.tracks[index]
    name = track.name or ("Drums" if track.is_drum else track.instrument_name)
    return f"{index + 1} {name}"


def track_colour(index: int) -> str:
    return TRACK_COLOURS[index % len(TRACK_COLOURS)]


def roll_notes(score: Score) -> list[RollNote]:
    ppq = score.ticks_per_beat
    return [
        RollNote(
            i, n.onset_tick / ppq, max(n.duration_tick, 1) / ppq, n.pitch, n.velocity, track.is_drum
        )
        for i, track in enumerate(score.tracks)
        for n in track.notes
    ]


def drum_name(pitch: int) -> str:
    """'Acoustic snare' for 38: the GM name of a drum sound, for axes and hovers."""
    name = GM_DRUMS.get(pitch)
    return name.replace("-", " ").capitalize() if name else f"drum {pitch}"


def opacity(velocity: int) -> float:
    return 0.25 + 0.75 * velocity / 127


def _pitch_ticks(low: int, high: int) -> list[int]:
    """Note names on the axis: every note of a narrow span, C E G of a middling one, and
    every C of a wide one."""
    if high - low <= 14:
        return list(range(low, high + 1))
    classes = (0,) if high - low > 36 else (0, 4, 7)
    return [p for p in range(low, high + 1) if p % 12 in classes]


def _bar_labels(starts: list[int], ppq: int) -> tuple[list[float], list[float], list[str]]:
    """(bar line positions, label positions, labels) in quarter notes; at most ~32 labels."""
    every = max(1, -(-len(starts) // 32))
    lines = [s / ppq for s in starts]
    picked = [(s / ppq, str(i + 1)) for i, s in enumerate(starts) if i % every == 0]
    return lines, [p for p, _ in picked], [label for _, label in picked]


def _pitch_lane(pitches: list[int]) -> Lane | None:
    """The pitch axis, zoomed to the notes with a free row above and below."""
    if not pitches:
        return None
    low, high = min(pitches) - 1, max(pitches) + 1
    ticks = _pitch_ticks(low, high)
    return Lane("pitch", (low - 0.5, high + 0.5), tuple(ticks),
                tuple(pitch_to_name(p) for p in ticks))  # fmt: skip


def _drum_lane(drum_rows: list[int]) -> Lane | None:
    """The drum axis: a row per drum sound, lowest key at the bottom."""
    if not drum_rows:
        return None
    return Lane("drums", (-0.6, len(drum_rows) - 0.4), tuple(range(len(drum_rows))),
                tuple(drum_name(p) for p in drum_rows))  # fmt: skip


def roll_layout(score: Score, continuation_at: int | None = None) -> RollLayout:
    """The piano roll of `score`; the seed shaded up to tick `continuation_at` if given."""
    notes = roll_notes(score)
    drum_rows = sorted({n.pitch for n in notes if n.drums})
    row_of_drum = {p: i for i, p in enumerate(drum_rows)}
    by_track: dict[int, list[RollNote]] = {}
    for n in notes:
        by_track.setdefault(n.track, []).append(n)
    tracks = []
    for index, mine in by_track.items():
        boxes = tuple(
            NoteBox(
                n.onset_beats,
                n.duration_beats,
                row_of_drum[n.pitch] if n.drums else n.pitch,
                drum_name(n.pitch) if n.drums else pitch_to_name(n.pitch),
                n.velocity,
                opacity(n.velocity),
            )
            for n in mine
        )
        tracks.append(TrackNotes(index, track_label(score, index), track_colour(index),
                                 score.tracks[index].is_drum, boxes))  # fmt: skip
    ppq = score.ticks_per_beat
    starts = score.bar_starts(max(score.end_tick, 1))
    lines, label_at, labels = _bar_labels(starts, ppq)
    return RollLayout(
        tracks=tuple(tracks),
        pitch_lane=_pitch_lane([n.pitch for n in notes if not n.drums]),
        drum_lane=_drum_lane(drum_rows),
        end_beats=max((n.onset_beats + n.duration_beats for n in notes), default=4.0),
        bar_lines=tuple(lines),
        bar_label_at=tuple(label_at),
        bar_labels=tuple(labels),
        seed_end_beats=None if continuation_at is None else continuation_at / ppq,
        bar_start_ticks=tuple(starts),
        ticks_per_beat=ppq,
    )


def bar_and_beat(layout: RollLayout, onset_beats: float) -> str:
    """'bar 3, beat 2.50': where a note that starts at onset_beats is, for hovers."""
    starts, ppq = layout.bar_start_ticks, layout.ticks_per_beat
    tick = onset_beats * ppq
    index = max(i for i, s in enumerate(starts) if s <= tick + 1e-9) if starts else 0
    return f"bar {index + 1}, beat {(tick - starts[index]) / ppq + 1:.2f}"


__all__: Sequence[str] = [
    "Lane",
    "NoteBox",
    "RollLayout",
    "RollNote",
    "TrackNotes",
    "bar_and_beat",
    "drum_name",
    "opacity",
    "roll_layout",
    "roll_notes",
    "track_colour",
    "track_label",
]
