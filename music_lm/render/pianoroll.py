"""Piano rolls of a score: a PNG (matplotlib) for files and the CLI, a Plotly figure for the
page. The same layout in both:

* one colour per track, named in a legend ("2 Violin"); velocity as opacity;
* drums in a lane of their own under the pitched notes, one row per drum sound, named;
* the pitch axis zoomed to the notes, labelled with note names;
* bar lines, and bar numbers along the time axis (in quarter notes);
* for a continuation, the seed shaded and the start of the new bars marked (the
  `music_lm continuation` marker that `music-lm generate` writes, or a bar given).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from music_lm.errors import MusicLmError
from music_lm.midi.gm import GM_DRUMS, pitch_to_name
from music_lm.midi.io import MidiRead, read_midi
from music_lm.midi.score import Score

CONTINUATION_MARKER = "music_lm continuation"
WIDTH_PX, HEIGHT_PX, DPI = 1600, 900, 100
SEED_SHADE = (0.5, 0.5, 0.5, 0.16)  # RGBA over the seed's bars
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


class PianoRollError(MusicLmError, ValueError):
    """A piano roll cannot be drawn as asked (a bar outside the piece, ...)."""


@dataclass(frozen=True)
class RollNote:
    track: int
    onset_beats: float
    duration_beats: float
    pitch: int
    velocity: int
    drums: bool


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


def continuation_tick(read: MidiRead) -> int | None:
    """The tick of a generated file's continuation marker, if it has one."""
    for tick, text in read.markers:
        if text == CONTINUATION_MARKER:
            return tick
    return None


def bar_tick(score: Score, bar: int) -> int:
    """The tick where bar `bar` (counted from 1) starts."""
    starts = score.bar_starts()
    if not 1 <= bar <= len(starts) + 1:
        raise PianoRollError(f"bar {bar} is outside the piece (bars 1..{len(starts)})")
    if bar == len(starts) + 1:  # the end of the last bar: a continuation of nothing yet
        return score.end_tick
    return starts[bar - 1]


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


def _bar_labels(score: Score, end_tick: int) -> tuple[list[float], list[float], list[str]]:
    """(bar line positions, label positions, labels) in quarter notes; at most ~32 labels."""
    ppq = score.ticks_per_beat
    starts = score.bar_starts(end_tick)
    every = max(1, -(-len(starts) // 32))
    lines = [s / ppq for s in starts]
    picked = [(s / ppq, str(i + 1)) for i, s in enumerate(starts) if i % every == 0]
    return lines, [p for p, _ in picked], [label for _, label in picked]


# ---- the PNG (matplotlib) ----


def pianoroll_axes(
    score: Score,
    continuation_at: int | None = None,
    title: str | None = None,
    width_px: int = WIDTH_PX,
    height_px: int = HEIGHT_PX,
):
    """(figure, pitched axes or None, drum axes or None) of the piano roll."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    notes = roll_notes(score)
    pitched = [n for n in notes if not n.drums]
    drums = [n for n in notes if n.drums]
    drum_rows = sorted({n.pitch for n in drums})
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    if pitched and drum_rows:
        ratio = min(0.45, max(0.18, len(drum_rows) / 40))
        grid = fig.add_gridspec(2, 1, height_ratios=[1 - ratio, ratio], hspace=0.06)
        ax_pitch = fig.add_subplot(grid[0])
        ax_drum = fig.add_subplot(grid[1], sharex=ax_pitch)
    elif drum_rows:
        ax_pitch, ax_drum = None, fig.add_subplot(1, 1, 1)
    else:
        ax_pitch, ax_drum = fig.add_subplot(1, 1, 1), None
    end_beats = max((n.onset_beats + n.duration_beats for n in notes), default=4.0)
    end_tick = max(score.end_tick, 1)
    lines, label_at, labels = _bar_labels(score, end_tick)

    def draw(ax, chosen: list[RollNote], row_of) -> None:
        verts, colours = [], []
        for n in chosen:
            y = row_of(n.pitch)
            x0, x1 = n.onset_beats, n.onset_beats + n.duration_beats
            verts.append([(x0, y - 0.4), (x1, y - 0.4), (x1, y + 0.4), (x0, y + 0.4)])
            colours.append(to_rgba(track_colour(n.track), opacity(n.velocity)))
        ax.add_collection(PolyCollection(verts, facecolors=colours, edgecolors="none"))
        for x in lines:
            ax.axvline(x, color="#cccccc", linewidth=0.6, zorder=0)
        ax.set_xlim(0, end_beats)
        if continuation_at is not None:
            start = continuation_at / score.ticks_per_beat
            ax.axvspan(0, start, color=SEED_SHADE, zorder=0, linewidth=0)
            ax.axvline(start, color="#d62728", linewidth=1.5, zorder=3)

    if ax_pitch is not None:
        low = min(n.pitch for n in pitched) - 1
        high = max(n.pitch for n in pitched) + 1
        draw(ax_pitch, pitched, lambda p: p)
        ax_pitch.set_ylim(low - 0.5, high + 0.5)
        ticks = _pitch_ticks(low, high)
        ax_pitch.set_yticks(ticks, [pitch_to_name(p) for p in ticks])
        ax_pitch.set_ylabel("pitch")
    if ax_drum is not None:
        row = {p: i for i, p in enumerate(drum_rows)}
        draw(ax_drum, drums, lambda p: row[p])
        ax_drum.set_ylim(-0.6, len(drum_rows) - 0.4)
        ax_drum.set_yticks(range(len(drum_rows)), [drum_name(p) for p in drum_rows])
        ax_drum.tick_params(axis="y", labelsize=7)
        ax_drum.set_ylabel("drums")
    bottom = ax_drum if ax_drum is not None else ax_pitch
    top = ax_pitch if ax_pitch is not None else ax_drum
    if bottom is not None:
        bottom.set_xlabel("bar")
        bottom.set_xticks(label_at, labels)
        if ax_pitch is not None and ax_drum is not None:
            ax_pitch.tick_params(axis="x", labelbottom=False)
        handles = [
            Patch(color=track_colour(i), label=track_label(score, i))
            for i, t in enumerate(score.tracks)
            if t.notes
        ]
        if continuation_at is not None:
            handles.append(Patch(color=SEED_SHADE, label="seed"))
        top.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.005, 1.0),
            fontsize=8,
            frameon=False,
        )
    fig.subplots_adjust(left=0.07, right=0.84, top=0.94, bottom=0.08)
    if title:
        fig.suptitle(title, fontsize=11)
    if continuation_at is not None and top is not None:
        start = continuation_at / score.ticks_per_beat
        top.annotate(
            "continuation",
            (start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, 2),
            textcoords="offset points",
            color="#d62728",
            fontsize=9,
            va="bottom",
        )
    if top is None:  # no notes at all
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no notes", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    return fig, ax_pitch, ax_drum


def pianoroll_png(
    score: Score,
    continuation_at: int | None = None,
    title: str | None = None,
    width_px: int = WIDTH_PX,
    height_px: int = HEIGHT_PX,
) -> bytes:
    """The piano roll as PNG bytes of exactly width_px x height_px."""
    import io

    if not (200 <= width_px <= 8000 and 150 <= height_px <= 8000):
        raise PianoRollError(f"size must be within 200x150..8000x8000, got {width_px}x{height_px}")
    fig, _, _ = pianoroll_axes(score, continuation_at, title, width_px, height_px)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def midi_pianoroll(
    source: str | Path | bytes,
    continuation_bar: int | None = None,
    name: str | None = None,
    **size,
) -> bytes:
    """The PNG piano roll of a MIDI file; the seed shaded up to `continuation_bar` or the
    file's continuation marker."""
    from music_lm.limits import check_length

    read = read_midi(source, name=name, sustain=True)
    score = read.score
    check_length(score.end_tick / score.ticks_per_beat, read.source_name, PianoRollError)
    at = bar_tick(score, continuation_bar) if continuation_bar else continuation_tick(read)
    title = Path(read.source_name).name if read.source_name != "<bytes>" else None
    return pianoroll_png(score, at, title, **size)


# ---- the interactive version (Plotly) ----


def pianoroll_figure(score: Score, continuation_at: int | None = None, title: str | None = None):
    """The same piano roll as a Plotly figure: hover a note for its name, bar, beat,
    duration and velocity; click a legend entry to hide a track."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    notes = roll_notes(score)
    drum_rows = sorted({n.pitch for n in notes if n.drums})
    has_pitched = any(not n.drums for n in notes)
    rows = 2 if (drum_rows and has_pitched) else 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.78, 0.22] if rows == 2 else None,
    )
    starts = score.bar_starts(max(score.end_tick, 1))
    ppq = score.ticks_per_beat

    def bar_beat(onset: float) -> str:
        tick = onset * ppq
        index = max(i for i, s in enumerate(starts) if s <= tick + 1e-9) if starts else 0
        return f"bar {index + 1}, beat {(tick - starts[index]) / ppq + 1:.2f}"

    for index, _track in enumerate(score.tracks):
        mine = [n for n in notes if n.track == index]
        if not mine:
            continue
        drums = mine[0].drums
        names = [drum_name(n.pitch) if drums else pitch_to_name(n.pitch)
                 for n in mine]  # fmt: skip
        fig.add_trace(
            go.Bar(
                base=[n.onset_beats for n in mine],
                x=[n.duration_beats for n in mine],
                y=[drum_name(n.pitch) if drums else n.pitch for n in mine],
                orientation="h",
                width=0.8,
                name=track_label(score, index),
                legendgroup=str(index),
                marker={
                    "color": track_colour(index),
                    "opacity": [opacity(n.velocity) for n in mine],
                },
                customdata=[
                    [name, bar_beat(n.onset_beats), n.duration_beats, n.velocity]
                    for name, n in zip(names, mine, strict=True)
                ],
                hovertemplate="%{customdata[0]} · %{customdata[1]}<br>"
                "%{customdata[2]:.3g} quarters · velocity %{customdata[3]}<extra>%{fullData.name}"
                "</extra>",
            ),
            row=rows if drums else 1,
            col=1,
        )
    # One shape per bar line, set at once: add_vline validates the whole layout on each
    # call, which took seconds for a piece of a few hundred bars.
    bar_line = {"type": "line", "xref": "x", "yref": "paper", "y0": 0, "y1": 1,
                "line": {"width": 0.5, "color": "#cccccc"}, "layer": "below"}  # fmt: skip
    fig.update_layout(shapes=[{**bar_line, "x0": s / ppq, "x1": s / ppq} for s in starts])
    if continuation_at is not None:
        start = continuation_at / ppq
        fig.add_vrect(x0=0, x1=start, fillcolor="grey", opacity=0.16, line_width=0, layer="below")
        fig.add_vline(
            x=start,
            line_color="#d62728",
            line_width=2,
            annotation_text="continuation",
            annotation_position="top right",
        )
    every = max(1, -(-len(starts) // 32))
    fig.update_xaxes(
        tickvals=[s / ppq for i, s in enumerate(starts) if i % every == 0],
        ticktext=[str(i + 1) for i in range(len(starts)) if i % every == 0],
    )
    fig.update_xaxes(title_text="bar", row=rows, col=1)
    if has_pitched:
        pitches = [n.pitch for n in notes if not n.drums]
        ticks = _pitch_ticks(min(pitches) - 1, max(pitches) + 1)
        fig.update_yaxes(
            range=[min(pitches) - 1.5, max(pitches) + 1.5],
            tickvals=ticks,
            ticktext=[pitch_to_name(p) for p in ticks],
            title_text="pitch",
            row=1,
            col=1,
        )
    if drum_rows:
        fig.update_yaxes(
            type="category",
            categoryorder="array",
            categoryarray=[drum_name(p) for p in drum_rows],
            title_text="drums",
            row=rows,
            col=1,
        )
    fig.update_layout(
        barmode="overlay",
        bargap=0,
        height=520,
        title=title,
        margin={"l": 60, "r": 20, "t": 40 if title else 20, "b": 40},
        legend={"orientation": "v"},
        plot_bgcolor="white",
    )
    return fig


__all__: Sequence[str] = [
    "CONTINUATION_MARKER",
    "PianoRollError",
    "bar_tick",
    "continuation_tick",
    "midi_pianoroll",
    "pianoroll_axes",
    "pianoroll_figure",
    "pianoroll_png",
    "track_colour",
    "track_label",
]
