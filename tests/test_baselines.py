"""The n-gram baselines of the model card: smoothing, back-off, and the figures they report.

Most tests use a made-up vocabulary of a few tokens, small enough to write every
distribution out; the last ones use the real vocabulary and a tiny built corpus.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from music_lm.corpus.dataset import Corpus
from music_lm.tokens.vocab import VOCAB
from music_lm.training.baselines import (
    NgramModel,
    baseline_report,
    evaluate_stream,
    split_stream,
)

SMALL_V = 7
ORDERS = (0, 1, 2, 3)


def ids(*tokens: int) -> np.ndarray:
    return np.array(tokens, dtype=np.uint16)


def next_token_probs(model: NgramModel, context: list[int]) -> np.ndarray:
    """P(w | context) for every w of the vocabulary, read through the public `log_probs`:
    the last figure for the stream context + [w]."""
    return np.array(
        [math.exp(model.log_probs(np.array([*context, w]))[-1]) for w in range(model.vocab_size)]
    )


# ---- every prediction is a distribution over the whole vocabulary ----

token = st.integers(0, SMALL_V - 2)  # the last token of the small vocabulary is never trained


@settings(max_examples=25, deadline=None)
@given(
    train=st.lists(token, max_size=60),
    contexts=st.lists(st.lists(st.integers(0, SMALL_V - 1), min_size=1, max_size=5), max_size=4),
)
def test_the_next_token_probabilities_sum_to_one_in_every_context(train, contexts) -> None:
    rng = random.Random(len(train))
    # contexts that were seen in training as well as arbitrary (mostly unseen) ones
    if len(train) > 4:
        start = rng.randrange(len(train) - 3)
        contexts = [*contexts, train[start : start + 3], train[start : start + 1]]
    for order in ORDERS:
        model = NgramModel(order, SMALL_V).fit([np.array(train, dtype=np.uint16)])
        for context in contexts:
            probs = next_token_probs(model, context)
            assert np.all(probs > 0), (order, context, probs)
            assert probs.sum() == pytest.approx(1.0, abs=1e-12), (order, context)


# ---- exact values ----


def test_the_unigram_is_add_one_over_the_training_tokens_whatever_the_context() -> None:
    # counts 0:3, 1:1, 2:1, 3:0 over N = 5 tokens, V = 4: P(w) = (count + 1) / 9
    model = NgramModel(0, 4).fit([ids(0, 0, 1, 2, 0)])
    expected = np.array([4, 2, 2, 1]) / 9
    for context in ([0], [3], [1, 2, 3]):
        assert next_token_probs(model, context) == pytest.approx(expected, rel=1e-12)
    assert model.log_probs(ids(3, 0, 1, 3)) == pytest.approx(np.log([4 / 9, 2 / 9, 1 / 9]))


def test_witten_bell_interpolates_with_the_unigram_by_the_number_of_followers() -> None:
    # unigram (V = 4, N = 6): 0 -> 4/10, 1 -> 3/10, 2 -> 2/10, 3 (never seen) -> 1/10
    # after 0: 1 twice and 2 once, so c(0) = 3, T(0) = 2, and
    #   P(w | 0) = (c(0, w) + 2 * P0(w)) / 5
    model = NgramModel(1, 4).fit([ids(0, 1, 0, 2, 0, 1)])
    assert next_token_probs(model, [0]) == pytest.approx([0.16, 0.52, 0.28, 0.04], rel=1e-12)
    # after 1: always 0 (once): P(0 | 1) = (1 + 1 * 0.4) / 2
    assert next_token_probs(model, [1])[0] == pytest.approx(0.7)
    # 3 was never seen, so nothing follows it: the unigram
    assert next_token_probs(model, [3]) == pytest.approx([0.4, 0.3, 0.2, 0.1], rel=1e-12)


def witten_bell(train: list[int], vocab_size: int, context: tuple[int, ...], w: int) -> float:
    """The definition, token by token with dictionaries: the reference for the numpy model."""
    if not context:
        return (train.count(w) + 1) / (len(train) + vocab_size)
    lower = witten_bell(train, vocab_size, context[1:], w)
    j = len(context)
    followers = [train[t] for t in range(j, len(train)) if tuple(train[t - j : t]) == context]
    if not followers:
        return lower
    types = len(set(followers))
    return (followers.count(w) + types * lower) / (len(followers) + types)


def test_the_vectorised_model_matches_the_definition_at_every_order() -> None:
    rng = random.Random(3)
    train = [rng.choice((0, 0, 1, 2, 3, 4)) for _ in range(200)]
    stream = [rng.randrange(6) for _ in range(60)]
    for order in (*ORDERS, 4):
        model = NgramModel(order, 6).fit([np.array(train)])
        expected = [
            math.log(witten_bell(train, 6, tuple(stream[max(0, t - order) : t]), stream[t]))
            for t in range(1, len(stream))
        ]
        assert model.log_probs(np.array(stream)) == pytest.approx(expected, rel=1e-12), order


def test_fitting_pieces_one_by_one_is_fitting_their_concatenation() -> None:
    # the transformer sees pieces packed back to back: the n-grams across a boundary count
    pieces = [ids(0, 1, 2, 3), ids(0, 2, 2, 3), ids(0, 1, 1, 3)]
    stream = np.concatenate(pieces)
    probe = ids(3, 0, 1, 2, 3, 0, 2, 1, 1, 3)
    for order in ORDERS:
        by_piece = NgramModel(order, 5).fit(pieces).log_probs(probe)
        joined = NgramModel(order, 5).fit([stream]).log_probs(probe)
        assert np.array_equal(by_piece, joined)
    boundary = NgramModel(1, 5).fit(pieces)  # "3 -> 0" happened twice, only across pieces
    assert next_token_probs(boundary, [3]).argmax() == 0


def test_the_first_targets_use_the_context_they_have() -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 5, 300)
    stream = rng.integers(0, 5, 40)
    models = [NgramModel(order, 5).fit([train]) for order in ORDERS]
    scores = [model.log_probs(stream) for model in models]
    assert all(len(s) == len(stream) - 1 for s in scores)
    # target t (scores[..][t - 1]) has t tokens before it: order 3 acts as order t below 3
    assert scores[3][0] == scores[1][0]
    assert scores[3][1] == scores[2][1]
    assert not np.allclose(scores[3][2:], scores[2][2:])


# ---- what it learns ----


def test_a_repeating_pattern_is_learnt_by_context_but_not_by_frequency() -> None:
    # after 0 comes 0 or 1: one token of context cannot tell, two can
    pattern = [0, 0, 1]
    model = {order: NgramModel(order, 10).fit([np.array(pattern * 300)]) for order in ORDERS}
    stream = np.array(pattern * 50)
    loss = {order: -model[order].log_probs(stream).mean() for order in ORDERS}
    assert loss[3] < 0.01
    assert loss[2] < 0.01
    assert loss[1] > 0.3  # about 2/3 ln 2: a coin toss after each 0
    assert loss[0] > 0.6  # about the entropy of (2/3, 1/3)


def test_unseen_tokens_and_contexts_back_off_to_a_finite_log_prob() -> None:
    train = ids(0, 1, 2, 0, 1, 2, 0, 2, 1)
    rng = np.random.default_rng(1)
    stream = rng.integers(0, 50, 500)  # mostly tokens and contexts never seen
    for order in (*ORDERS, 4):
        scores = NgramModel(order, 50).fit([train]).log_probs(stream)
        assert scores.dtype == np.float64
        assert np.all(np.isfinite(scores))
        assert np.all(scores < 0)
    # an unseen last token means an unseen context at every order: all predict the unigram
    unigram = NgramModel(0, 50).fit([train]).log_probs(ids(1, 2, 0, 49, 0))
    markov = NgramModel(3, 50).fit([train]).log_probs(ids(1, 2, 0, 49, 0))
    assert markov[3] == unigram[3]
    assert markov[2] != unigram[2]


def test_an_empty_fit_is_uniform_and_short_streams_have_no_targets() -> None:
    model = NgramModel(2, SMALL_V).fit([])
    assert next_token_probs(model, [3, 4]) == pytest.approx(np.full(SMALL_V, 1 / SMALL_V))
    assert len(model.log_probs(ids(3))) == len(model.log_probs(ids())) == 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="order"):
        NgramModel(5, SMALL_V)  # a 6-gram no longer fits an int64 key
    with pytest.raises(ValueError, match="token ids"):
        NgramModel(1, SMALL_V).fit([ids(0, SMALL_V)])
    with pytest.raises(AssertionError):
        NgramModel(1, 4096)


# ---- the figures ----


def test_bits_per_note_spend_every_tokens_bits_on_the_pitch_and_drum_tokens() -> None:
    words = ["piece", "bar", "@0", "C4", "d:1/24", "drum:bass-drum-1", "E4", "end"]
    targets = np.array([VOCAB.ids[w] for w in words])
    figures = evaluate_stream(np.full(len(words), -math.log(2)), targets)  # one bit each
    assert figures["tokens"] == 8
    assert figures["notes"] == 3  # C4, the bass drum and E4
    assert figures["loss"] == pytest.approx(math.log(2))
    assert figures["perplexity"] == pytest.approx(2.0)
    assert figures["bits_per_note"] == pytest.approx(8 / 3)
    scores = -np.random.default_rng(0).random(len(words)) * 5
    figures = evaluate_stream(scores, targets)
    assert figures["bits_per_note"] == pytest.approx(
        figures["loss"] * figures["tokens"] / math.log(2) / figures["notes"]
    )
    assert math.isnan(evaluate_stream(np.zeros(1), targets[:1])["bits_per_note"])


def test_the_figures_by_source_and_group_count_each_target_once() -> None:
    # two pieces of two sources; the second spends 2 bits on each of its tokens
    words = ["bar", "@0", "C4", "v:64", "d:1/24", "end", "piece", "drum:bass-drum-1", "end"]
    targets = np.array([VOCAB.ids[w] for w in words])
    sources = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    bits = np.where(sources == 0, 1.0, 2.0)
    figures = evaluate_stream(-bits * math.log(2), targets, sources, ["folk", "band"])
    folk, band = figures["sources"]["folk"], figures["sources"]["band"]
    assert (folk["tokens"], folk["notes"], band["tokens"], band["notes"]) == (6, 1, 3, 1)
    assert folk["bits_per_note"] == pytest.approx(6.0)
    assert band["bits_per_note"] == pytest.approx(6.0)
    assert folk["groups"]["timing"] == {"tokens": 2, "bits_per_token": 1.0, "bits_per_note": 2.0}
    assert band["groups"]["header"]["bits_per_token"] == pytest.approx(2.0)
    assert set(band["groups"]) == {"header", "drum"}
    assert figures["groups"]["header"]["tokens"] == 3  # end, piece, end
    assert figures["groups"]["header"]["bits_per_token"] == pytest.approx(5 / 3)
    assert figures["bits_per_note"] == pytest.approx(12 / 2)
    assert "sources" not in evaluate_stream(-bits, targets)  # only when asked


# ---- on a built corpus ----


def test_a_split_stream_is_its_pieces_back_to_back(tiny_corpus: Corpus) -> None:
    stream = split_stream(tiny_corpus, "test")
    pieces = [tiny_corpus.ids(i) for i in tiny_corpus.split("test")]
    assert pieces, "the tiny corpus has a test split"
    assert stream.dtype == np.int64
    assert stream.tolist() == np.concatenate(pieces).tolist()
    assert stream[0] == VOCAB.ids["piece"]
    assert stream[-1] == VOCAB.ids["end"]


def test_the_report_scores_every_test_token_but_the_first(tiny_corpus: Corpus) -> None:
    report = baseline_report(tiny_corpus, orders=(0, 1, 3))
    assert list(report) == ["unigram", "markov-1", "markov-3"]
    stream = split_stream(tiny_corpus, "test")
    notes = sum(tiny_corpus.pieces[i].notes for i in tiny_corpus.split("test"))
    train = split_stream(tiny_corpus, "train")
    for name, figures in report.items():
        assert figures["tokens"] == len(stream) - 1  # the targets of sequential windows
        assert figures["notes"] == notes  # the first token is `piece`, never a note
        assert figures["train_tokens"] == len(train)
        assert figures["fit_seconds"] >= 0
        assert figures["eval_seconds"] >= 0
        model = NgramModel(figures["order"], len(VOCAB)).fit(tiny_corpus.split_tokens("train"))
        direct = evaluate_stream(model.log_probs(stream), stream[1:])
        assert figures["loss"] == pytest.approx(direct["loss"]), name
        assert figures["bits_per_note"] == pytest.approx(direct["bits_per_note"]), name
    # the token grammar is local: one token of context already goes a long way (six
    # training pieces are too few for markov-3 to beat markov-1: it need not here)
    assert report["markov-1"]["loss"] < report["unigram"]["loss"] - 0.5
    assert report["markov-3"]["loss"] < report["unigram"]["loss"]


def test_the_report_can_score_the_validation_split(tiny_corpus: Corpus) -> None:
    report = baseline_report(tiny_corpus, eval_split="valid", orders=(2,))
    assert report["markov-2"]["tokens"] == len(split_stream(tiny_corpus, "valid")) - 1
