"""The descriptors of bench/quality.py, on hand-made notes: no model, no corpus."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import quality  # noqa: E402
from quality import BarNote  # noqa: E402

from music_lm.tokens.rules import END  # noqa: E402
from music_lm.tokens.validate import words_to_ids  # noqa: E402


def note(bar=0, step=0, pitch=60, velocity=64, drum=False) -> BarNote:
    return BarNote(bar, step, 96, pitch, velocity, drum)


PIECE = [
    note(0, 0, 60, 80),
    note(0, 24, 64, 72),
    note(1, 48, 67, 96),
    note(2, 0, 72, 40),
    note(0, 0, 36, 100, drum=True),
    note(1, 24, 38, 90, drum=True),
    note(3, 72, 42, 60, drum=True),
]


def test_an_identical_continuation_scores_overlap_1_and_similarity_1():
    assert quality.pitch_class_overlap(PIECE, PIECE) == pytest.approx(1.0)
    assert quality.velocity_overlap(PIECE, PIECE) == pytest.approx(1.0)
    assert quality.drum_onset_similarity(PIECE, PIECE) == pytest.approx(1.0)
    assert quality.density_ratio(PIECE, PIECE, 4) == 1.0
    assert quality.density_error(1.0) == 0.0
    assert quality.pitch_range_error(PIECE, PIECE) == 0.0


def test_disjoint_pitch_classes_overlap_0():
    c_major_triad = [note(pitch=p) for p in (60, 64, 67)]
    f_sharp_triad = [note(pitch=p) for p in (66, 70, 73)]
    assert quality.pitch_class_overlap(c_major_triad, f_sharp_triad) == 0.0


def test_pitch_classes_ignore_the_octave_and_the_drums():
    low = [note(pitch=48), note(pitch=40, drum=True)]
    high = [note(pitch=72)]
    assert quality.pitch_class_overlap(low, high) == 1.0


def test_a_doubled_piece_has_density_ratio_2():
    assert quality.density_ratio(PIECE + PIECE, PIECE, 4) == 2.0
    assert quality.density_error(2.0) == pytest.approx(1.0)
    assert quality.density_error(0.5) == pytest.approx(1.0)


def test_a_silent_continuation_counts_as_ratio_1_64():
    assert quality.density_ratio([], PIECE, 4) == 0.0
    assert quality.density_error(0.0) == pytest.approx(6.0)


def test_no_density_ratio_against_silent_true_bars():
    with pytest.raises(ValueError, match="no note"):
        quality.density_ratio(PIECE, [], 4)


def test_histogram_overlap_is_the_sum_of_the_minima_of_the_normalised_histograms():
    assert quality.histogram_overlap([1, 1, 0, 0], [0, 2, 2, 0]) == pytest.approx(0.5)
    assert quality.histogram_overlap([3, 1], [30, 10]) == pytest.approx(1.0)
    assert quality.histogram_overlap([0, 0], [0, 0]) == 1.0
    assert quality.histogram_overlap([0, 0], [1, 0]) == 0.0


def test_drum_onsets_fold_the_bars_onto_one_on_the_16th_grid():
    kicks_on_1 = [note(bar, 0, 36, drum=True) for bar in range(4)]
    one_kick_on_1 = [note(0, 3, 36, drum=True)]  # a 32nd late: the same 16th step
    assert quality.drum_onset_similarity(kicks_on_1, one_kick_on_1) == pytest.approx(1.0)
    kicks_on_2 = [note(bar, 24, 36, drum=True) for bar in range(4)]
    assert quality.drum_onset_similarity(kicks_on_1, kicks_on_2) == 0.0
    snares_on_1 = [note(bar, 0, 38, drum=True) for bar in range(4)]
    assert quality.drum_onset_similarity(kicks_on_1, snares_on_1) == 0.0
    assert quality.drum_onset_similarity([], []) == 1.0
    assert quality.drum_onset_similarity(kicks_on_1, []) == 0.0


def test_velocities_fall_into_bins_of_8():
    assert quality.velocity_overlap([note(velocity=64)], [note(velocity=71)]) == 1.0
    assert quality.velocity_overlap([note(velocity=64)], [note(velocity=72)]) == 0.0
    assert quality.velocity_histogram([note(velocity=127)])[-1] == 1


def test_pitch_range_error_is_the_mean_of_the_lowest_and_highest_differences():
    true = [note(pitch=60), note(pitch=72)]
    made = [note(pitch=55), note(pitch=75)]
    assert quality.pitch_range_error(made, true) == 4.0  # (5 + 3) / 2
    assert quality.pitch_range_error([note(pitch=36, drum=True)], true) is None


def test_notes_in_bars_reads_the_window_of_bars_from_token_ids():
    text = (
        "piece style:none tempo:120 ts:4/4 inst:acoustic-grand-piano inst:drums "
        "bar @0 t1 d:1 v:64 C4 "
        "bar @0 t1 d:1 v:64 E4 @1 t2 d:1/4 v:100 drum:acoustic-bass-drum "
        "bar @2 t1 d:1 v:32 G4 end"
    )
    ids = words_to_ids(text.split())
    notes = quality.notes_in_bars(ids, first_bar=2, bars=2)
    assert [(n.bar, n.onset_step, n.pitch, n.velocity, n.drum) for n in notes] == [
        (0, 0, 64, 64, False),
        (0, 24, 35, 100, True),  # GM 35: acoustic bass drum
        (1, 48, 67, 32, False),
    ]


def test_repeat_last_bar_repeats_the_seeds_last_bar_4_times():
    text = (
        "piece style:none tempo:120 ts:4/4 inst:acoustic-grand-piano "
        "bar @0 t1 d:1 v:64 C4 bar @0 t1 d:1 v:64 E4"
    )
    seed = words_to_ids(text.split())
    repeated = quality.repeat_last_bar(seed)
    assert repeated[-1] == END
    notes = quality.notes_in_bars(repeated, first_bar=3, bars=4)
    assert [(n.bar, n.pitch) for n in notes] == [(b, 64) for b in range(4)]


def test_the_markov_adapter_gives_the_ngram_models_next_token_distribution():
    from music_lm.tokens.vocab import VOCAB
    from music_lm.training.baselines import NgramModel

    rng = np.random.default_rng(0)
    stream = rng.integers(0, 40, size=2000)
    ngram = NgramModel(3, len(VOCAB)).fit([stream])
    net = quality._MarkovNet(ngram)
    context = [int(t) for t in stream[100:103]]
    log_probs = net.next_log_probs(context)
    assert math.isclose(float(np.exp(log_probs).sum()), 1.0, rel_tol=1e-9)
    for token in (int(stream[103]), 5, 1000):
        expected = ngram.log_probs(np.array([*context, token]))[-1]
        assert log_probs[token] == pytest.approx(expected)


def test_repeat_last_bar_ends_only_where_the_grammar_allows_an_end():
    # the drums are declared but have not played: `end` may not come yet
    text = (
        "piece style:none tempo:120 ts:4/4 inst:acoustic-grand-piano inst:drums "
        "bar @0 t1 d:1 v:64 C4"
    )
    repeated = quality.repeat_last_bar(words_to_ids(text.split()))
    assert repeated[-1] != END
    assert len(quality.notes_in_bars(repeated, first_bar=2, bars=4)) == 4


def test_the_markov_baseline_continues_a_seed_through_generate_with_variants() -> None:
    """The bench's order-3 Markov model steps through `generate()` as a model does: its
    "cache" takes the batch operations of a transformers cache (variants share the seed's
    prefill, finished rows leave the batch), and every continuation is valid."""
    from music_lm.api import midi_to_text
    from music_lm.generation.constraints import Constraints
    from music_lm.generation.runner import generate
    from music_lm.generation.seeds import cut_seed
    from music_lm.tokens.validate import validate

    streams = [np.asarray(words_to_ids(midi_to_text(p).split()), dtype=np.int64)
               for p in sorted((REPO / "midi_in").glob("*.mid"))]  # fmt: skip
    markov = quality.MarkovLoaded(quality._MarkovNet(quality.fit_markov(streams)), "markov-3")
    seed = cut_seed(list(streams[0]), 2)
    made = generate(seed, constraints=Constraints(bars=2), models=["markov-3"],
                    loaded=[markov], variants=3, random_seed=1)  # fmt: skip
    assert len(made.variants) == 3
    for variant in made.variants:
        validate(variant.text)
        assert variant.ids[: len(seed) - 1] == seed[:-1]
