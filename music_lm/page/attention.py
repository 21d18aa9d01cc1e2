"""Which earlier notes a generated note attended to: the page's "Attention view".

`generate(..., attention=True)` keeps, for every new token, the attention of the query
that predicted it: `Variant.attention[layer, head, q, key]` is what the query that wrote
new token q (the token at index `seed_length + q`) gave to the token at index `key`. That
query sits on the token before, so it sees keys 0..seed_length + q - 1 and nothing later.
After the context window slid, keys that fell out of it are 0 and so is the header the
window restated (the generator does not place it on the piece's tokens): such a row sums
to less than one.

Attention goes to tokens; a note is written as several (`@1+1/2 t1 d:1/2 v:92 C#5`). Here
each note owns a span of tokens: the position, track, duration and velocity tokens that
lead to it (and a tempo or key change at its onset), back to the previous note. A note's
weight is the sum over its span; whatever is not on an earlier note's span (the header,
bar lines, the chosen note's own group tokens) is "structure". Pure numpy: Plotly is
imported inside the figure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from music_lm.midi.gm import GM_PROGRAMS, pitch_to_name
from music_lm.render.roll_layout import drum_name, roll_notes, track_colour
from music_lm.tokens.grammar import GrammarError, GrammarState
from music_lm.tokens.validate import located
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from music_lm.midi.score import Score

STRUCTURE_LABEL = "structure"
OTHER_NOTES_LABEL = "other notes"
STRUCTURE_COLOUR = "#9e9e9e"

_FAMILY = VOCAB.family_of
_VALUE = VOCAB.values
# Tokens that describe the note after them without starting its onset: a span runs back
# over these to the onset's position token (or to the previous note).
_NOTE_PARTS = frozenset(("track", "dur_long", "dur", "vel", "tempo", "key"))


@dataclass(frozen=True)
class NoteToken:
    """A note of the token text, at the token that plays it (a pitch or a drum hit)."""

    index: int  # position of the pitch/drum token in the ids
    track: int  # 0-based
    onset_tick: int  # grid ticks (GRID_PER_QUARTER to a quarter note) from the start
    bar: int  # 1-based; a pickup bar counts as bar 1, as in the token text
    beat: float  # 1-based, in quarter notes from the bar line (as the `@` tokens count)
    pitch: int  # MIDI note number, or the GM percussion key for a drum hit
    drums: bool
    duration_ticks: int
    velocity: int
    span_start: int  # first token describing this note (its onset, track, duration, ...)
    instrument: str  # GM program slug of the track, or "drums"

    @property
    def name(self) -> str:
        """'C#5', or 'Acoustic snare' for a drum hit."""
        return drum_name(self.pitch) if self.drums else pitch_to_name(self.pitch)

    @property
    def beat_text(self) -> str:
        # Three decimals keep 32nd notes exact (3.875) and tell triplets apart (1.333);
        # whole beats read as '2', not '2.0'.
        return f"{round(self.beat, 3):g}"

    @property
    def label(self) -> str:
        """'bar 5 beat 2.5 · C#5 · flute' (hover text, titles)."""
        instrument = self.instrument.replace("-", " ")
        return f"bar {self.bar} beat {self.beat_text} · {self.name} · {instrument}"

    @property
    def short_label(self) -> str:
        """'b5 2.5 C#5' (axis labels)."""
        return f"b{self.bar} {self.beat_text} {self.name}"


@dataclass(frozen=True, eq=False)
class NoteAttention:
    """What the query that wrote `note` attended to, per layer and head, by earlier note.

    weights.sum(-1) + other_notes + structure == total, per layer and head.
    """

    note: NoteToken
    notes: list[NoteToken]  # the earlier notes shown, in token (time) order
    weights: np.ndarray  # [layers, heads, len(notes)]: attention summed over each span
    other_notes: np.ndarray  # [layers, heads]: earlier notes left out by `top`
    structure: np.ndarray  # [layers, heads]: tokens on no earlier note's span
    total: np.ndarray  # [layers, heads]: the row's sum (about 1 unless the window slid)
    seed_length: int

    @property
    def layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def heads(self) -> int:
        return int(self.weights.shape[1])

    @property
    def left_out(self) -> bool:
        """Whether some earlier notes are not shown (their weight is in `other_notes`)."""
        return bool(np.any(self.other_notes > 0))


# ---- notes of the token text ----


def _instrument_slug(program: int) -> str:
    return "drums" if program == -1 else GM_PROGRAMS[program]


def note_tokens(ids: Sequence[int]) -> list[NoteToken]:
    """Every note of `ids` (a piece, or the start of one), in token order.

    Raises GrammarError naming the first token the grammar does not allow.
    """
    state = GrammarState()
    instruments: list[str] = []
    notes: list[NoteToken] = []
    span_start = 0
    for index, token_id in enumerate(ids):
        try:
            state.advance(token_id)
        except GrammarError as err:
            raise located(err, index, token_id) from None
        family = _FAMILY[token_id]
        if family in ("pitch", "drum"):
            track = state.part_track
            notes.append(
                NoteToken(
                    index=index,
                    track=track,
                    onset_tick=state.onset_tick,
                    bar=state.bar_index,
                    beat=state.pos / GRID_PER_QUARTER + 1,
                    pitch=_VALUE[token_id],
                    drums=family == "drum",
                    duration_ticks=state.durations[track],
                    velocity=state.velocities[track],
                    span_start=span_start,
                    instrument=instruments[track],
                )
            )
            span_start = index + 1
        elif family == "pos":
            # A new onset: an onset with no note (a tempo change alone) is structure.
            span_start = index
        elif family == "inst":
            instruments.append(_instrument_slug(_VALUE[token_id]))
            span_start = index + 1
        elif family not in _NOTE_PARTS or state.bar_index == 0:
            span_start = index + 1  # header, bar, time signature, end: structure
    return notes


def generated_notes(ids: Sequence[int], seed_length: int) -> list[NoteToken]:
    """The notes after the seed (whose token index is `seed_length` or more)."""
    if not 0 <= seed_length <= len(ids):
        raise ValueError(f"seed_length must be in 0..{len(ids)}, got {seed_length}")
    return [note for note in note_tokens(ids) if note.index >= seed_length]


def note_at_roll_point(
    score: Score, notes: Sequence[NoteToken], curve: int, point: int
) -> int | None:
    """The index in `notes` of the note at (curve, point) of the score's Plotly piano roll;
    None for a seed note or a point off the roll. The roll has a trace per track with notes,
    in track order, its notes as `roll_notes` gives them. A track may sound the same pitch
    twice at once; the k-th of such twins on the roll is the k-th in the text."""
    track_notes: dict[int, list] = {}
    for n in roll_notes(score):
        track_notes.setdefault(n.track, []).append(n)
    tracks = sorted(track_notes)
    if curve >= len(tracks) or point >= len(track_notes[tracks[curve]]):
        return None
    mine = track_notes[tracks[curve]]
    ppq = score.ticks_per_beat

    def identity(n) -> tuple:
        return (round(n.onset_beats * ppq), n.pitch, round(n.duration_beats * ppq))

    chosen = identity(mine[point])
    twin = sum(identity(n) == chosen for n in mine[:point])
    matches = [
        i for i, n in enumerate(notes)
        if n.track == tracks[curve] and (n.onset_tick, n.pitch, n.duration_ticks) == chosen
    ]  # fmt: skip
    return matches[min(twin, len(matches) - 1)] if matches else None  # none: a seed note


# ---- attention per earlier note ----


def _attention_row(
    attention: np.ndarray | None, ids: Sequence[int], seed_length: int, note: NoteToken
) -> np.ndarray:
    """[layers, heads, keys] of the query that wrote `note`, checked against the piece."""
    if attention is None:
        raise ValueError("no attention weights: generate with attention=True")
    if attention.ndim != 4 or attention.shape[3] != len(ids):
        raise ValueError(
            f"attention must be [layers, heads, new tokens, {len(ids)} tokens], "
            f"got shape {tuple(attention.shape)}"
        )
    if not 0 <= note.index < len(ids) or not VOCAB.is_note[ids[note.index]]:
        raise ValueError(f"{note.label} (token {note.index}) is not a note of these ids")
    if note.index < seed_length:
        raise ValueError(
            f"{note.label} (token {note.index}) is in the seed (tokens 0..{seed_length - 1}): "
            "only generated notes have attention weights"
        )
    row = note.index - seed_length
    if row >= attention.shape[2]:
        raise ValueError(
            f"{note.label} is new token {row}, but the attention covers new tokens "
            f"0..{attention.shape[2] - 1}"
        )
    # float64: float16 weights summed over thousands of keys lose the small ones.
    return attention[:, :, row, :].astype(np.float64)


def _span_sums(row: np.ndarray, notes: Sequence[NoteToken]) -> np.ndarray:
    """[layers, heads, len(notes)]: the row summed over each note's span (inclusive)."""
    running = np.concatenate([np.zeros((*row.shape[:2], 1)), np.cumsum(row, axis=-1)], -1)
    starts = np.array([n.span_start for n in notes], dtype=np.int64)
    stops = np.array([n.index + 1 for n in notes], dtype=np.int64)
    return running[..., stops] - running[..., starts]


def note_attention(
    attention: np.ndarray,
    ids: Sequence[int],
    seed_length: int,
    note: NoteToken,
    *,
    top: int = 32,
    notes: Sequence[NoteToken] | None = None,
) -> NoteAttention:
    """The attention of the query that wrote `note` (a generated note), summed over each
    earlier note's tokens. Shows the `top` earlier notes with the most attention (mean over
    layers and heads), in time order; the rest goes to `other_notes`, and tokens of no
    earlier note to `structure`. `notes`: `note_tokens(ids)` when already at hand."""
    if top < 1:
        raise ValueError(f"top must be 1 or more, got {top}")
    row = _attention_row(attention, ids, seed_length, note)
    all_notes = note_tokens(ids) if notes is None else notes
    earlier = [n for n in all_notes if n.index < note.index]
    layers, heads = row.shape[:2]
    per_note = _span_sums(row, earlier) if earlier else np.zeros((layers, heads, 0))
    mean = per_note.mean(axis=(0, 1))
    # Stable on ties: equal weights keep the earlier note.
    chosen = np.sort(np.argsort(-mean, kind="stable")[:top])
    weights = per_note[..., chosen]
    total = row.sum(axis=-1)
    on_notes = per_note.sum(axis=-1)
    return NoteAttention(
        note=note,
        notes=[earlier[i] for i in chosen],
        weights=weights,
        other_notes=on_notes - weights.sum(axis=-1),
        structure=total - on_notes,
        total=total,
        seed_length=seed_length,
    )


# ---- figures (Plotly) ----


def _columns(na: NoteAttention) -> tuple[list[str], list[str], np.ndarray]:
    """(short labels, full labels, weights [layers, heads, columns]): the shown notes, then
    structure, then the left-out notes when there are any."""
    short = [n.short_label for n in na.notes] + [STRUCTURE_LABEL]
    full = [n.label for n in na.notes] + ["header, bar lines and this note's own tokens"]
    blocks = [na.weights, na.structure[..., None]]
    if na.left_out:
        short.append(OTHER_NOTES_LABEL)
        full.append("earlier notes not shown")
        blocks.append(na.other_notes[..., None])
    return short, full, np.concatenate(blocks, axis=-1)


def _colour_max(na: NoteAttention, values: np.ndarray) -> float:
    # Scaled to the notes: structure (the header soaks up much of every head) would wash
    # them out. Its cells then show the top colour; hovering gives the weight.
    peak = float(na.weights.max()) if na.weights.size else 0.0
    return peak if peak > 0 else max(float(values.max()), 1e-9)


def _seed_boundary(na: NoteAttention) -> float | None:
    """x between the last seed note and the first generated one shown, if both are."""
    from_seed = sum(n.index < na.seed_length for n in na.notes)
    return from_seed - 0.5 if 0 < from_seed < len(na.notes) else None


def attention_figure(na: NoteAttention, note: NoteToken | None = None) -> go.Figure:
    """One heatmap per layer (stacked, sharing the x axis): heads down, earlier notes
    across, one colour scale. Hover a cell for the note and the weight."""
    # on use: Plotly loads only when a figure is drawn
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    note = na.note if note is None else note
    short, full, values = _columns(na)
    columns = list(range(len(short)))  # numeric x: two notes may share a short label
    fig = make_subplots(
        rows=na.layers,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=min(0.06, 0.3 / max(na.layers, 1)),
        subplot_titles=[f"layer {layer + 1}" for layer in range(na.layers)],
    )
    heads = list(range(1, na.heads + 1))
    hover = [full] * na.heads
    for layer in range(na.layers):
        fig.add_trace(
            go.Heatmap(
                z=values[layer],
                x=columns,
                y=heads,
                customdata=hover,
                coloraxis="coloraxis",
                hovertemplate=f"layer {layer + 1} · head %{{y}}<br>%{{customdata}}<br>"
                "weight %{z:.3f}<extra></extra>",
            ),
            row=layer + 1,
            col=1,
        )
        fig.update_yaxes(
            tickvals=heads, autorange="reversed", title_text="head", row=layer + 1, col=1
        )
    boundary = _seed_boundary(na)
    if boundary is not None:
        fig.add_vline(x=boundary, line_color="#d62728", line_width=2, row="all", col=1)
    fig.update_xaxes(tickvals=columns, ticktext=short, tickangle=-60, row=na.layers, col=1)
    fig.update_layout(
        title=f"What the model read before writing {note.label}",
        coloraxis={
            "colorscale": "Blues",
            "cmin": 0.0,
            "cmax": _colour_max(na, values),
            "colorbar": {"title": {"text": "attention"}},
        },
        height=120 + na.layers * (40 + 18 * na.heads) + 110,
        margin={"l": 60, "r": 20, "t": 80, "b": 110},
        plot_bgcolor="white",
    )
    return fig


def attention_summary_figure(na: NoteAttention, note: NoteToken | None = None) -> go.Figure:
    """The mean over layers and heads per earlier note, as bars coloured by track: which
    notes mattered, at a glance."""
    # on use: Plotly loads only when a figure is drawn
    import plotly.graph_objects as go

    note = na.note if note is None else note
    short, full, values = _columns(na)
    mean = values.mean(axis=(0, 1))
    colours = [track_colour(n.track) for n in na.notes]
    colours += [STRUCTURE_COLOUR] * (len(short) - len(na.notes))
    fig = go.Figure(
        go.Bar(
            x=list(range(len(short))),
            y=mean,
            marker={"color": colours},
            customdata=full,
            hovertemplate="%{customdata}<br>mean weight %{y:.3f}<extra></extra>",
        )
    )
    boundary = _seed_boundary(na)
    if boundary is not None:
        fig.add_vline(x=boundary, line_color="#d62728", line_width=2)
    fig.update_xaxes(tickvals=list(range(len(short))), ticktext=short, tickangle=-60)
    fig.update_layout(
        title=f"Mean attention over layers and heads, writing {note.label}",
        yaxis_title="mean attention",
        height=380,
        margin={"l": 60, "r": 20, "t": 60, "b": 110},
        plot_bgcolor="white",
    )
    return fig


__all__: Sequence[str] = [
    "OTHER_NOTES_LABEL",
    "STRUCTURE_LABEL",
    "NoteAttention",
    "NoteToken",
    "attention_figure",
    "attention_summary_figure",
    "generated_notes",
    "note_at_roll_point",
    "note_attention",
    "note_tokens",
]
