"""The attention view: which earlier notes a generated note attended to.

Notes are read from the token text with their spans of tokens; the attention of the query
that wrote a note is summed over each earlier note's span. Synthetic attention arrays
pin the arithmetic down; one real generation (the default model) checks the layout that
`generate(..., attention=True)` hands over and the figures built from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from music_lm.api import midi_to_text
from music_lm.page.attention import (
    OTHER_NOTES_LABEL,
    STRUCTURE_LABEL,
    NoteToken,
    attention_figure,
    attention_summary_figure,
    generated_notes,
    note_attention,
    note_tokens,
)
from music_lm.tokens.codec import decode
from music_lm.tokens.grammar import GrammarError
from music_lm.tokens.rules import BAR
from music_lm.tokens.validate import words_to_ids
from music_lm.tokens.vocab import VOCAB

MIDI_IN = Path(__file__).resolve().parent.parent / "midi_in"

WALTZ = """piece style:none tempo:100 ts:3/4 inst:violin inst:acoustic-bass
bar @0 t1 d:1 v:80 A4 t2 d:3 v:64 A2 @2 t1 B4
bar @0 t1 d:1/2 v:80 C5 E5 @1+1/2 D5 @2 tempo:90 d:1 B4
bar @0 t1 d:3 v:80 A4
end"""

# 4/4 with an onset that only changes the tempo (@2 tempo:90): its tokens are no note's.
COMMON_TIME = """piece style:none tempo:120 ts:4/4 inst:flute inst:drums
bar @0 t1 d:1 v:92 C5 t2 d:1/4 v:100 drum:bass-drum-1 @1+1/2 t1 d:1/2 E5 @2 tempo:90
@3 d:1 G5
bar @1/2 t2 d:1/4 v:96 drum:acoustic-snare @3+3/4 t1 d:1/4 v:92 C6
end"""


def ids_of(text: str) -> list[int]:
    return words_to_ids(text.split())


def piece_texts() -> dict[str, str]:
    texts = {"waltz": WALTZ, "common time": COMMON_TIME}
    for path in sorted(MIDI_IN.glob("*.mid")):
        texts[path.stem] = midi_to_text(path)
    return texts


PIECES = piece_texts()


def causal_attention(
    ids: list[int], seed_length: int, layers: int = 2, heads: int = 3, seed: int = 0
) -> np.ndarray:
    """Random attention as generate() lays it out: row q (new token seed_length + q) is a
    distribution over keys 0..seed_length + q - 1, zero from there on."""
    rng = np.random.default_rng(seed)
    new = len(ids) - seed_length
    out = np.zeros((layers, heads, new, len(ids)), dtype=np.float16)
    for q in range(new):
        seen = seed_length + q
        out[:, :, q, :seen] = rng.dirichlet(np.ones(seen), size=(layers, heads))
    return out


def second_bar(ids: list[int]) -> int:
    """Seed length that keeps the header and the first bar."""
    return [i for i, token in enumerate(ids) if token == BAR][1]


# ---- notes and their spans ----


@pytest.mark.parametrize("name", PIECES)
def test_the_notes_are_the_decoded_scores_notes(name: str) -> None:
    text = PIECES[name]
    score = decode(text)
    read = sorted(
        (n.track, n.onset_tick, n.duration_ticks, n.pitch, n.velocity)
        for n in note_tokens(ids_of(text))
    )
    decoded = sorted(
        (track, n.onset_tick, n.duration_tick, n.pitch, n.velocity)
        for track, notes in enumerate(score.tracks)
        for n in notes.notes
    )
    assert read == decoded
    for n in note_tokens(ids_of(text)):
        assert n.drums is score.tracks[n.track].is_drum
        assert n.instrument == score.tracks[n.track].instrument_name


@pytest.mark.parametrize("name", PIECES)
def test_spans_tile_the_tokens_from_onset_to_note(name: str) -> None:
    ids = ids_of(PIECES[name])
    notes = note_tokens(ids)
    previous_end = 0
    covered: set[int] = set()
    for n in notes:
        # Each span ends at its own note and starts after the previous note's span.
        assert previous_end <= n.span_start <= n.index
        assert VOCAB.is_note[ids[n.index]]
        families = [VOCAB.family_of[t] for t in ids[n.span_start : n.index]]
        assert "pos" not in families[1:]  # at most one onset, and only at the start
        assert set(families) <= {"pos", "track", "dur_long", "dur", "vel", "tempo", "key"}
        covered |= set(range(n.span_start, n.index + 1))
        previous_end = n.index + 1
    # What no span covers is structure: header, bar lines, meters, the end, or an onset
    # with no note of its own.
    for index in set(range(len(ids))) - covered:
        family = VOCAB.family_of[ids[index]]
        assert family in {"piece", "style", "tempo", "ts", "key", "inst", "bar", "pos", "end"}
        if family == "pos":
            following = VOCAB.family_of[ids[index + 1]]
            if following in {"bar", "end"}:
                continue  # a bare position: where a short bar ends
            assert following in {"tempo", "key"}
            assert VOCAB.family_of[ids[index + 2]] in {"pos", "bar", "end", "key"}


def test_spans_of_a_chord_and_of_a_tempo_change() -> None:
    ids = ids_of(COMMON_TIME)
    words = COMMON_TIME.split()
    notes = note_tokens(ids)
    spans = [" ".join(words[n.span_start : n.index + 1]) for n in notes]
    assert spans == [
        "@0 t1 d:1 v:92 C5",
        "t2 d:1/4 v:100 drum:bass-drum-1",
        "@1+1/2 t1 d:1/2 E5",
        "@3 d:1 G5",  # the tempo-only onset before it belongs to no note
        "@1/2 t2 d:1/4 v:96 drum:acoustic-snare",
        "@3+3/4 t1 d:1/4 v:92 C6",
    ]
    chord = note_tokens(ids_of(WALTZ))[3:5]  # C5 E5 at one onset
    assert [n.index - n.span_start for n in chord] == [4, 0]


def test_bar_and_beat_in_three_four() -> None:
    notes = note_tokens(ids_of(WALTZ))
    assert [(n.bar, n.beat, n.track) for n in notes] == [
        (1, 1.0, 0),
        (1, 1.0, 1),
        (1, 3.0, 0),
        (2, 1.0, 0),
        (2, 1.0, 0),
        (2, 2.5, 0),
        (2, 3.0, 0),
        (3, 1.0, 0),
    ]
    # a bar of 3/4 is 72 grid ticks
    assert [n.onset_tick for n in notes] == [0, 0, 48, 72, 72, 108, 120, 144]
    assert notes[5].label == "bar 2 beat 2.5 · D5 · violin"
    assert notes[1].label == "bar 1 beat 1 · A2 · acoustic bass"
    assert notes[5].short_label == "b2 2.5 D5"
    triplet = note_tokens(ids_of(WALTZ.replace("@1+1/2 D5", "@1+1/3 D5")))[5]
    assert triplet.short_label == "b2 2.333 D5"


def test_bar_and_beat_in_four_four_with_drums() -> None:
    notes = note_tokens(ids_of(COMMON_TIME))
    assert [(n.bar, n.beat) for n in notes] == [
        (1, 1.0), (1, 1.0), (1, 2.5), (1, 4.0), (2, 1.5), (2, 4.75),
    ]  # fmt: skip
    assert [n.onset_tick for n in notes] == [0, 0, 36, 72, 96 + 12, 96 + 90]
    assert notes[4].drums
    assert notes[4].label == "bar 2 beat 1.5 · Acoustic snare · drums"
    assert notes[5].label == "bar 2 beat 4.75 · C6 · flute"


def test_a_pickup_bar_counts_as_bar_one() -> None:
    first = note_tokens(ids_of(PIECES["folk_tune"]))[0]
    # `bar @0 t1 d:1/2 v:80 A4 @1/2`: the pickup is an eighth long, then bar 2 begins
    assert (first.bar, first.beat, first.name) == (1, 1.0, "A4")
    second = note_tokens(ids_of(PIECES["folk_tune"]))[1]
    assert (second.bar, second.beat) == (2, 1.0)


def test_generated_notes_start_at_the_seed_length() -> None:
    ids = ids_of(WALTZ)
    seed_length = second_bar(ids)
    notes = generated_notes(ids, seed_length)
    assert [n.bar for n in notes] == [2, 2, 2, 2, 3]
    assert all(n.index >= seed_length for n in notes)
    assert generated_notes(ids, len(ids)) == []
    with pytest.raises(ValueError, match=r"seed_length must be in 0\.\.39, got 40"):
        generated_notes(ids, 40)


def test_the_start_of_a_piece_is_read_and_a_bad_token_is_named() -> None:
    ids = ids_of(WALTZ)
    assert len(note_tokens(ids[: second_bar(ids)])) == 3  # no `end` needed
    with pytest.raises(GrammarError, match="token 7 'C4': expected"):
        note_tokens([*ids[:7], VOCAB.ids["C4"]])  # a note straight after `bar`


# ---- attention per earlier note ----


def one_row(ids: list[int], seed_length: int, note: NoteToken, weights: dict[int, float]):
    """An attention array [1, 1, new, keys] whose only row that matters (the one that wrote
    `note`) puts `weights` on the given token indices."""
    attention = np.zeros((1, 1, len(ids) - seed_length, len(ids)), dtype=np.float16)
    for key, weight in weights.items():
        attention[0, 0, note.index - seed_length, key] = weight
    return attention


def test_a_notes_weight_is_the_sum_over_its_tokens() -> None:
    ids = ids_of(WALTZ)
    seed_length = second_bar(ids)
    a4, a2, b4, c5 = note_tokens(ids)[:4]
    target = generated_notes(ids, seed_length)[2]  # D5, bar 2 beat 2.5
    attention = one_row(ids, seed_length, target, {
        0: 0.25,  # piece: structure
        a4.index: 0.125, a4.span_start: 0.125,  # A4's pitch and its @0
        b4.index - 1: 0.25,  # B4's d:1
        c5.index: 0.125,
        target.index - 1: 0.125,  # D5's own @1+1/2: structure
    })  # fmt: skip
    na = note_attention(attention, ids, seed_length, target)
    assert na.note == target
    assert [n.name for n in na.notes] == ["A4", "A2", "B4", "C5", "E5"]
    assert na.weights[0, 0].tolist() == [0.25, 0.0, 0.25, 0.125, 0.0]
    assert na.structure[0, 0] == 0.375
    assert na.other_notes[0, 0] == 0.0
    assert na.total[0, 0] == 1.0
    assert (na.layers, na.heads) == (1, 1)
    assert a2 in na.notes


@pytest.mark.parametrize("name", ["waltz", "common time", "band_with_drums", "tempo_change"])
def test_notes_and_structure_add_up_to_the_rows_attention(name: str) -> None:
    ids = ids_of(PIECES[name])
    seed_length = second_bar(ids)
    attention = causal_attention(ids, seed_length)
    for note in generated_notes(ids, seed_length)[:40]:
        na = note_attention(attention, ids, seed_length, note, top=10_000)
        assert na.weights.shape == (2, 3, len(na.notes))
        assert [n.index for n in na.notes] == [
            n.index for n in note_tokens(ids) if n.index < note.index
        ]
        added = na.weights.sum(-1) + na.structure
        assert np.allclose(added, na.total)
        assert np.allclose(na.total, 1.0, atol=2e-3)
        assert (na.weights >= 0).all()
        assert (na.structure > -1e-9).all()
        assert not na.other_notes.any()


def test_after_the_window_slid_the_row_holds_less_than_one() -> None:
    ids = ids_of(PIECES["folk_tune"])
    seed_length = second_bar(ids)
    attention = causal_attention(ids, seed_length)
    bars = [i for i, token in enumerate(ids) if token == BAR]
    attention[..., : bars[3]] = 0  # the header and the first bars fell out of the window
    note = generated_notes(ids, seed_length)[-1]
    na = note_attention(attention, ids, seed_length, note, top=10_000)
    assert (na.total < 0.99).all()
    assert np.allclose(na.weights.sum(-1) + na.structure, na.total)
    assert not na.weights[..., [n.index < bars[3] for n in na.notes]].any()


def test_top_keeps_the_heaviest_notes_in_time_order() -> None:
    ids = ids_of(PIECES["bach_chorale"])
    seed_length = second_bar(ids)
    attention = causal_attention(ids, seed_length, seed=3)
    note = generated_notes(ids, seed_length)[30]
    everything = note_attention(attention, ids, seed_length, note, top=10_000)
    mean = everything.weights.mean(axis=(0, 1))
    heaviest = sorted(np.argsort(-mean)[:5])
    na = note_attention(attention, ids, seed_length, note, top=5)
    assert na.notes == [everything.notes[i] for i in heaviest]
    assert [n.index for n in na.notes] == sorted(n.index for n in na.notes)
    assert na.weights.mean(axis=(0, 1)).min() >= np.delete(mean, heaviest).max()
    assert np.allclose(na.weights.sum(-1) + na.other_notes + na.structure, na.total)
    assert np.allclose(na.structure, everything.structure)
    assert na.left_out


def test_a_seed_note_or_a_row_the_array_lacks_is_refused() -> None:
    ids = ids_of(WALTZ)
    seed_length = second_bar(ids)
    attention = causal_attention(ids, seed_length)
    seed_note = note_tokens(ids)[2]
    with pytest.raises(ValueError, match=r"bar 1 beat 3 · B4 · violin \(token 18\) is in the seed"):
        note_attention(attention, ids, seed_length, seed_note)
    last = generated_notes(ids, seed_length)[-1]
    with pytest.raises(ValueError, match=r"bar 3 beat 1 · A4 · violin is new token 18, but the"):
        note_attention(attention[:, :, :10], ids, seed_length, last)
    with pytest.raises(ValueError, match=r"39 tokens\], got shape \(2, 3, 39\)"):
        note_attention(attention[:, :, 0], ids, seed_length, last)
    with pytest.raises(ValueError, match="not a note of these ids"):
        note_attention(attention, ids[:-5] + [BAR] * 5, seed_length, last)
    with pytest.raises(ValueError, match="top must be 1 or more, got 0"):
        note_attention(attention, ids, seed_length, last, top=0)
    with pytest.raises(ValueError, match="generate with attention=True"):
        note_attention(None, ids, seed_length, last)  # type: ignore[arg-type]


# ---- figures ----


def test_the_heatmaps_have_a_layer_each_heads_down_notes_across() -> None:
    ids = ids_of(PIECES["bach_chorale"])
    seed_length = second_bar(ids)
    attention = causal_attention(ids, seed_length)
    note = generated_notes(ids, seed_length)[20]
    na = note_attention(attention, ids, seed_length, note, top=6)
    fig = attention_figure(na, note)
    assert len(fig.data) == na.layers == 2
    for layer, trace in enumerate(fig.data):
        # heads down; across: the 6 notes, structure, the notes left out
        expected = np.column_stack([na.weights[layer], na.structure[layer], na.other_notes[layer]])
        assert expected.shape == (3, 8)
        assert np.asarray(trace.z) == pytest.approx(expected)
        assert (list(trace.y), list(trace.x)) == ([1, 2, 3], list(range(8)))
    ticks = list(fig.layout.xaxis2.ticktext)
    assert ticks[:6] == [n.short_label for n in na.notes]
    assert ticks[6:] == [STRUCTURE_LABEL, OTHER_NOTES_LABEL]
    assert fig.data[0].customdata[0][0] == na.notes[0].label
    assert note.label in fig.layout.title.text
    assert fig.layout.coloraxis.cmin == 0
    assert fig.layout.coloraxis.cmax == pytest.approx(na.weights.max())

    summary = attention_summary_figure(na, note)
    (bars,) = summary.data
    assert list(bars.y) == pytest.approx(
        [*na.weights.mean(axis=(0, 1)), na.structure.mean(), na.other_notes.mean()]
    )
    assert note.label in summary.layout.title.text


def test_a_red_line_parts_the_seeds_notes_from_the_new_ones() -> None:
    ids = ids_of(WALTZ)
    seed_length = second_bar(ids)
    note = generated_notes(ids, seed_length)[-1]
    na = note_attention(causal_attention(ids, seed_length), ids, seed_length, note)
    fig = attention_figure(na)
    assert [shape.x0 for shape in fig.layout.shapes] == [2.5, 2.5]  # 3 seed notes, 2 layers
    assert [shape.x0 for shape in attention_summary_figure(na).layout.shapes] == [2.5]


def test_a_real_generations_attention_reads_as_notes() -> None:
    pytest.importorskip("torch")
    from music_lm.generation.constraints import Constraints
    from music_lm.generation.runner import generate
    from music_lm.model.folder import load_model

    model = load_model("default")
    generation = generate(MIDI_IN / "folk_tune.mid", constraints=Constraints(bars=1),
                          attention=True, random_seed=1, seed_bars=2, loaded=[model])  # fmt: skip
    variant = generation.variants[0]
    layers, heads = model.model.config.n_layer, model.model.config.n_head
    new = generated_notes(variant.ids, variant.seed_length)
    assert new
    notes = note_tokens(variant.ids)
    for note in new:
        na = note_attention(variant.attention, variant.ids, variant.seed_length, note,
                            notes=notes)  # fmt: skip
        assert na.weights.shape == (layers, heads, min(32, len(na.notes)))
        # The window did not slide: every row is a whole distribution.
        assert np.allclose(na.total, 1.0, atol=2e-3)
        assert np.allclose(na.weights.sum(-1) + na.other_notes + na.structure, na.total)
    fig = attention_figure(na, note)
    assert len(fig.data) == layers
    blocks = [na.weights, na.structure[..., None]]
    blocks += [na.other_notes[..., None]] if na.left_out else []
    expected = np.concatenate(blocks, axis=-1)  # (layers, heads, notes + structure [+ other])
    assert expected.shape == (layers, heads, len(na.notes) + 1 + na.left_out)
    for layer, trace in enumerate(fig.data):
        assert np.asarray(trace.z) == pytest.approx(expected[layer])
    summary = attention_summary_figure(na, note)
    assert list(summary.data[0].y) == pytest.approx(expected.mean(axis=(0, 1)))
