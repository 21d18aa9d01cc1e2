"""Piano rolls of a score: a PNG (matplotlib) for files and the CLI, a Plotly figure for the
page. Both draw one layout (`music_lm.render.roll_layout`: a colour per track, drums in a
lane of their own, the pitch axis zoomed to the notes, bar lines and numbers, the seed's
span); for a continuation the seed is shaded and the start of the new bars marked (the
`music_lm continuation` marker that `music-lm generate` writes, or a bar given); for an
infill, the region drawn anew (the `music_lm infill: bar A` and `music_lm infill end: bar B`
markers that `music-lm infill` writes).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from music_lm.errors import MusicLmError
from music_lm.limits import check_length
from music_lm.midi.read import MidiRead, read_midi
from music_lm.midi.score import Score
from music_lm.render.roll_layout import NOTE_HEIGHT, Lane, bar_and_beat, roll_layout

CONTINUATION_MARKER = "music_lm continuation"
WIDTH_PX, HEIGHT_PX, DPI = 1600, 900, 100
INFILL_MARKER, INFILL_END_MARKER = "music_lm infill: bar ", "music_lm infill end: bar "
SEED_SHADE = (0.5, 0.5, 0.5, 0.16)  # RGBA over the seed's bars
REGION_SHADE = (1.0, 0.5, 0.05, 0.14)  # over an infill's region, as on the page


class PianoRollError(MusicLmError, ValueError):
    """A piano roll cannot be drawn as asked (a bar outside the piece, ...)."""


def continuation_tick(read: MidiRead) -> int | None:
    """The tick of a generated file's continuation marker, if it has one."""
    for tick, text in read.markers:
        if text == CONTINUATION_MARKER:
            return tick
    return None


def infill_region(read: MidiRead) -> tuple[int, int] | None:
    """(start, end) ticks of an infill's region, from the markers `music-lm infill` writes."""
    start = next((t for t, text in read.markers if text.startswith(INFILL_MARKER)), None)
    end = next((t for t, text in read.markers if text.startswith(INFILL_END_MARKER)), None)
    return (start, end) if start is not None and end is not None and start < end else None


def bar_tick(score: Score, bar: int) -> int:
    """The tick where bar `bar` (counted from 1) starts."""
    starts = score.bar_starts()
    if not 1 <= bar <= len(starts) + 1:
        raise PianoRollError(f"bar {bar} is outside the piece (bars 1..{len(starts)})")
    if bar == len(starts) + 1:  # the end of the last bar: a continuation of nothing yet
        return score.end_tick
    return starts[bar - 1]


# ---- the PNG (matplotlib) ----


def pianoroll_axes(
    score: Score,
    continuation_at: int | None = None,
    title: str | None = None,
    width_px: int = WIDTH_PX,
    height_px: int = HEIGHT_PX,
    region_ticks: tuple[int, int] | None = None,
):
    """(figure, pitched axes or None, drum axes or None) of the piano roll; `region_ticks`
    (start, end) shades the bars an infill drew anew."""
    # matplotlib loads only when a PNG is drawn, not with the render stage
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib only when a PNG is drawn
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    layout = roll_layout(score, continuation_at)
    pitch_lane, drum_lane = layout.pitch_lane, layout.drum_lane
    ppq = score.ticks_per_beat
    region = None if region_ticks is None else (region_ticks[0] / ppq, region_ticks[1] / ppq)
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    if pitch_lane and drum_lane:
        ratio = min(0.45, max(0.18, len(drum_lane.tick_rows) / 40))
        grid = fig.add_gridspec(2, 1, height_ratios=[1 - ratio, ratio], hspace=0.06)
        ax_pitch = fig.add_subplot(grid[0])
        ax_drum = fig.add_subplot(grid[1], sharex=ax_pitch)
    elif drum_lane:
        ax_pitch, ax_drum = None, fig.add_subplot(1, 1, 1)
    elif pitch_lane:
        ax_pitch, ax_drum = fig.add_subplot(1, 1, 1), None
    else:
        ax_pitch, ax_drum = None, None

    def draw(ax, lane: Lane, drums: bool) -> None:
        verts, colours = [], []
        half = NOTE_HEIGHT / 2
        for track in layout.tracks:
            if track.drums != drums:
                continue
            for n in track.notes:
                y = n.row
                x0, x1 = n.onset_beats, n.onset_beats + n.duration_beats
                verts.append([(x0, y - half), (x1, y - half), (x1, y + half), (x0, y + half)])
                colours.append(to_rgba(track.colour, n.opacity))
        ax.add_collection(PolyCollection(verts, facecolors=colours, edgecolors="none"))
        for x in layout.bar_lines:
            ax.axvline(x, color="#cccccc", linewidth=0.6, zorder=0)
        ax.set_xlim(0, layout.end_beats)
        if layout.seed_end_beats is not None:
            start = layout.seed_end_beats
            ax.axvspan(0, start, color=SEED_SHADE, zorder=0, linewidth=0)
            ax.axvline(start, color="#d62728", linewidth=1.5, zorder=3)
        if region is not None:
            ax.axvspan(*region, color=REGION_SHADE, zorder=0, linewidth=0)
        ax.set_ylim(*lane.row_range)
        ax.set_yticks(lane.tick_rows, lane.tick_labels)
        ax.set_ylabel(lane.title)

    if ax_pitch is not None:
        draw(ax_pitch, pitch_lane, drums=False)
    if ax_drum is not None:
        draw(ax_drum, drum_lane, drums=True)
        ax_drum.tick_params(axis="y", labelsize=7)
    bottom = ax_drum if ax_drum is not None else ax_pitch
    top = ax_pitch if ax_pitch is not None else ax_drum
    if bottom is not None:
        bottom.set_xlabel("bar")
        bottom.set_xticks(layout.bar_label_at, layout.bar_labels)
        if ax_pitch is not None and ax_drum is not None:
            ax_pitch.tick_params(axis="x", labelbottom=False)
        handles = [Patch(color=track.colour, label=track.label) for track in layout.tracks]
        if layout.seed_end_beats is not None:
            handles.append(Patch(color=SEED_SHADE, label="seed"))
        if region is not None:
            handles.append(Patch(color=REGION_SHADE, label="redrawn"))
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
    if layout.seed_end_beats is not None and top is not None:
        top.annotate(
            "continuation",
            (layout.seed_end_beats, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, 2),
            textcoords="offset points",
            color="#d62728",
            fontsize=9,
            va="bottom",
        )
    if region is not None and top is not None:
        top.annotate("redrawn", (region[0], 1.0), xycoords=("data", "axes fraction"),
                     xytext=(4, 2), textcoords="offset points", color="#ff7f0e", fontsize=9,
                     va="bottom")  # fmt: skip
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
    region_ticks: tuple[int, int] | None = None,
) -> bytes:
    """The piano roll as PNG bytes of exactly width_px x height_px."""

    if not (200 <= width_px <= 8000 and 150 <= height_px <= 8000):
        raise PianoRollError(f"size must be within 200x150..8000x8000, got {width_px}x{height_px}")
    fig, _, _ = pianoroll_axes(score, continuation_at, title, width_px, height_px, region_ticks)
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
    file's continuation marker, and an infill's region (its markers) shaded too."""

    read = read_midi(source, name=name, sustain=True)
    score = read.score
    check_length(score.end_tick / score.ticks_per_beat, read.source_name, PianoRollError)
    at = bar_tick(score, continuation_bar) if continuation_bar else continuation_tick(read)
    title = Path(read.source_name).name if read.source_name != "<bytes>" else None
    return pianoroll_png(score, at, title, region_ticks=infill_region(read), **size)


# ---- the interactive version (Plotly) ----


def pianoroll_figure(
    score: Score,
    continuation_at: int | None = None,
    title: str | None = None,
    region_beats: tuple[float, float] | None = None,
):
    """The same piano roll as a Plotly figure: hover a note for its name, bar, beat,
    duration and velocity; click a legend entry to hide a track. `region_beats` (start, end
    in quarter notes) marks the bars an infill drew anew."""
    # Plotly loads only when the page draws a figure, not with the render stage
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layout = roll_layout(score, continuation_at)
    pitch_lane, drum_lane = layout.pitch_lane, layout.drum_lane
    rows = 2 if (drum_lane and pitch_lane) else 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.78, 0.22] if rows == 2 else None,
    )
    for track in layout.tracks:
        mine = track.notes
        fig.add_trace(
            go.Bar(
                base=[n.onset_beats for n in mine],
                x=[n.duration_beats for n in mine],
                y=[n.name if track.drums else n.row for n in mine],
                orientation="h",
                width=NOTE_HEIGHT,
                name=track.label,
                legendgroup=str(track.index),
                marker={"color": track.colour, "opacity": [n.opacity for n in mine]},
                customdata=[
                    [n.name, bar_and_beat(layout, n.onset_beats), n.duration_beats, n.velocity]
                    for n in mine
                ],
                hovertemplate="%{customdata[0]} · %{customdata[1]}<br>"
                "%{customdata[2]:.3g} quarters · velocity %{customdata[3]}<extra>%{fullData.name}"
                "</extra>",
            ),
            row=rows if track.drums else 1,
            col=1,
        )
    # One shape per bar line, set at once: add_vline validates the whole layout on each
    # call, which took seconds for a piece of a few hundred bars.
    bar_line = {"type": "line", "xref": "x", "yref": "paper", "y0": 0, "y1": 1,
                "line": {"width": 0.5, "color": "#cccccc"}, "layer": "below"}  # fmt: skip
    fig.update_layout(shapes=[{**bar_line, "x0": x, "x1": x} for x in layout.bar_lines])
    if layout.seed_end_beats is not None:
        start = layout.seed_end_beats
        fig.add_vrect(x0=0, x1=start, fillcolor="grey", opacity=0.16, line_width=0, layer="below")
        fig.add_vline(
            x=start,
            line_color="#d62728",
            line_width=2,
            annotation_text="continuation",
            annotation_position="top right",
        )
    if region_beats is not None:
        start, end = region_beats
        fig.add_vrect(x0=start, x1=end, fillcolor="#ff7f0e", opacity=0.14, line_width=0,
                      layer="below", annotation_text="redrawn",
                      annotation_position="top left")  # fmt: skip
    fig.update_xaxes(tickvals=list(layout.bar_label_at), ticktext=list(layout.bar_labels))
    fig.update_xaxes(title_text="bar", row=rows, col=1)
    if pitch_lane:
        fig.update_yaxes(
            range=list(pitch_lane.row_range),
            tickvals=list(pitch_lane.tick_rows),
            ticktext=list(pitch_lane.tick_labels),
            title_text=pitch_lane.title,
            row=1,
            col=1,
        )
    if drum_lane:
        fig.update_yaxes(
            type="category",
            categoryorder="array",
            categoryarray=list(drum_lane.tick_labels),
            title_text=drum_lane.title,
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
]
