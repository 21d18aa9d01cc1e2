"""Count-based baselines for the model card: token n-gram models. numpy only.

    corpus = Corpus("data/corpus")
    report = baseline_report(corpus, orders=(0, 1, 2, 3))
    report["markov-3"]["bits_per_note"]

A transformer's loss means little on its own; the same figures for a unigram and a few
Markov models on the same split say how much of it is bare token frequency and short
local patterns (a `dur` after a `pitch`, a `pos` after a `bar`...).

So that the figures compare with the GPT-2's, both sides see the same data the same way:

* Training counts come from one stream, the split's pieces joined back to back: the
  packing the transformer trains on. A context may therefore cross an `end` -> `piece`
  boundary, exactly as a training window may.
* Evaluation scores the split's concatenated stream, every token but the first (each
  given up to `order` previous tokens, fewer at the very start): the targets of
  `dataset.sequential_windows`, in which every token after the first is predicted once.

Smoothing is interpolated Witten-Bell down to an add-one unigram, so every token of the
vocabulary has a probability above zero in every context, seen or not: a baseline with
an infinite loss on one unlucky test token would say nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from music_lm.tokens.vocab import VOCAB
from music_lm.training.groups import GROUPS, breakdown, group_of_tokens, piece_sources

BITS_PER_TOKEN = 11  # room for one token id in a packed n-gram key: ids < 2048
MAX_ORDER = 63 // BITS_PER_TOKEN - 1  # an (order + 1)-gram must fit an int64 key: 4


def _gram_keys(stream: np.ndarray, length: int) -> np.ndarray:
    """The `length`-grams of `stream` packed into int64 keys, oldest token in the high bits:
    key[i] holds stream[i : i + length]. Packing turns n-gram counting into sorting and
    lookup into binary search, both vectorised."""
    keys = stream.astype(np.int64)
    for offset in range(1, length):
        keys = (keys[:-1] << BITS_PER_TOKEN) | stream[offset:]
    return keys


def _find(table: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `keys` in the sorted, non-empty `table`, and whether each is there."""
    where = np.searchsorted(table, keys)
    where = np.minimum(where, len(table) - 1)  # a key past the end is simply not found
    return where, table[where] == keys


def _as_ids(stream: np.ndarray, vocab_size: int) -> np.ndarray:
    ids = np.asarray(stream)
    if ids.ndim != 1:
        raise ValueError(f"a token stream is one-dimensional, got shape {ids.shape}")
    ids = ids.astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}): got {ids.min()}..{ids.max()}")
    return ids


class NgramModel:
    """Token n-gram model: order 0 = unigram (add-one smoothed over the whole vocabulary),
    order k = next token given the previous k tokens, interpolated Witten-Bell smoothing
    down to the add-one unigram, so no token ever has probability 0.

    For a context h of j tokens (h' = h without its oldest token):

        P_j(w | h) = (c(h, w) + T(h) * P_{j-1}(w | h')) / (c(h) + T(h))

    with c(h, w) the count of h followed by w, c(h) = sum over w of c(h, w), and T(h) the
    number of distinct tokens seen after h; an unseen context (c(h) = 0) leaves
    P_j = P_{j-1}. Each level sums to one over the vocabulary when the one below does,
    and P_0(w) = (count(w) + 1) / (N + V) does.
    """

    def __init__(self, order: int, vocab_size: int) -> None:
        if not 0 <= order <= MAX_ORDER:
            raise ValueError(f"order must be in 0..{MAX_ORDER} (int64 n-gram keys), got {order}")
        assert vocab_size <= 1 << BITS_PER_TOKEN, "token ids must fit the packed n-gram keys"
        self.order = order
        self.vocab_size = vocab_size
        self.train_tokens = 0
        self._unigram = np.full(vocab_size, 1.0 / vocab_size)  # before fit: uniform
        # per context length j = 1..order (index j - 1), each sorted for binary search:
        self._grams: list[np.ndarray] = []  # (j + 1)-gram keys seen
        self._gram_counts: list[np.ndarray] = []  # c(h, w)
        self._contexts: list[np.ndarray] = []  # j-token context keys seen with a follower
        self._context_counts: list[np.ndarray] = []  # c(h)
        self._context_types: list[np.ndarray] = []  # T(h)

    def __repr__(self) -> str:
        return f"NgramModel(order={self.order}, vocab_size={self.vocab_size})"

    def fit(self, streams: Iterable[np.ndarray]) -> NgramModel:
        """Count n-grams of the streams joined back to back into one stream (as the
        transformer's training windows pack pieces): giving a split's pieces one by one or
        their concatenation as a single stream fits the same model. Replaces earlier fits."""
        parts = [_as_ids(s, self.vocab_size) for s in streams]
        stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        self.train_tokens = len(stream)
        counts = np.bincount(stream, minlength=self.vocab_size)
        self._unigram = (counts + 1.0) / (len(stream) + self.vocab_size)
        self._grams, self._gram_counts = [], []
        self._contexts, self._context_counts, self._context_types = [], [], []
        for j in range(1, self.order + 1):
            grams, gram_counts = np.unique(_gram_keys(stream, j + 1), return_counts=True)
            # grams are sorted, so those of one context (the high bits) are adjacent
            contexts, starts, types = np.unique(
                grams >> BITS_PER_TOKEN, return_index=True, return_counts=True
            )
            # c(h) as the sum of its c(h, w) (not the context's own count, which differs
            # at the stream's end): what makes each level a distribution
            context_counts = np.add.reduceat(gram_counts, starts) if len(starts) else starts
            self._grams.append(grams)
            self._gram_counts.append(gram_counts)
            self._contexts.append(contexts)
            self._context_counts.append(context_counts)
            self._context_types.append(types)
        return self

    def log_probs(self, stream: np.ndarray) -> np.ndarray:
        """Natural-log probability of each of stream[1:], each given up to `order` previous
        tokens of the same stream (fewer at the start, where the lower orders are used):
        float64, length len(stream) - 1."""
        ids = _as_ids(stream, self.vocab_size)
        if len(ids) < 2:
            return np.zeros(0, dtype=np.float64)
        probs = self._unigram[ids[1:]]  # probs[t - 1] is P(ids[t] | its context)
        for j in range(1, self.order + 1):
            if len(ids) <= j or len(self._contexts[j - 1]) == 0:
                break  # no target has j tokens before it, or no context this long was seen
            grams = _gram_keys(ids, j + 1)  # grams[i]: context ids[i : i + j], target i + j
            at, seen = _find(self._contexts[j - 1], grams >> BITS_PER_TOKEN)
            lower = probs[j - 1 :]  # P_{j-1} for the targets t = j, j + 1, ...
            total = np.where(seen, self._context_counts[j - 1][at], 0)
            types = np.where(seen, self._context_types[j - 1][at], 0)
            g_at, g_seen = _find(self._grams[j - 1], grams)
            pair = np.where(g_seen, self._gram_counts[j - 1][g_at], 0)
            # unseen contexts keep P_{j-1}: numerator and denominator would both be 0
            interpolated = (pair + types * lower) / np.maximum(total + types, 1)
            probs[j - 1 :] = np.where(seen, interpolated, lower)
        return np.log(probs)


def evaluate_stream(
    log_probs: np.ndarray,
    targets: np.ndarray,
    sources: np.ndarray | None = None,
    source_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Figures for the log probabilities of `targets` (token ids of the real vocabulary):
    tokens, loss (mean nats per token), perplexity, and bits per note (all the bits spent,
    on every token, divided by the notes among the targets: pitch and drum tokens), which
    compares models whatever their tokenisation. NaN bits per note when there is no note.
    With `sources` (the source index of each target) and their `source_names`, also the
    figures by group and by source (`groups.breakdown`)."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    targets = np.asarray(targets)
    if log_probs.shape != targets.shape or log_probs.ndim != 1:
        raise ValueError(f"one log prob per target: {log_probs.shape} vs {targets.shape}")
    if len(targets) == 0:
        raise ValueError("no targets to evaluate")
    nats = -float(log_probs.sum())
    notes = int(np.array(VOCAB.is_note)[targets].sum())
    loss = nats / len(targets)
    figures: dict[str, Any] = {
        "tokens": len(targets),
        "loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_note": nats / math.log(2) / notes if notes else math.nan,
        "notes": notes,
    }
    if sources is not None:
        sources = np.asarray(sources, dtype=np.int64)
        if sources.shape != targets.shape:
            raise ValueError(f"one source per target: {sources.shape} vs {targets.shape}")
        cell = sources * len(GROUPS) + group_of_tokens()[targets]
        cells = len(source_names) * len(GROUPS)
        shape = (len(source_names), len(GROUPS))
        by_cell_nats = np.bincount(cell, weights=-log_probs, minlength=cells).reshape(shape)
        by_cell_tokens = np.bincount(cell, minlength=cells).reshape(shape)
        figures |= breakdown(by_cell_nats, by_cell_tokens, source_names)
    return figures


def split_stream(corpus: Any, split: str) -> np.ndarray:
    """The token ids of a split of a `dataset.Corpus`, its pieces concatenated in index
    order (the stream `sequential_windows` cuts), as int64."""
    pieces = list(corpus.split_tokens(split))
    if not pieces:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(pieces).astype(np.int64)


def model_name(order: int) -> str:
    """'unigram' for order 0, 'markov-k' for order k."""
    return "unigram" if order == 0 else f"markov-{order}"


def baseline_report(
    corpus: Any,
    train_split: str = "train",
    eval_split: str = "test",
    orders: Sequence[int] = (0, 3),
) -> dict[str, dict[str, Any]]:
    """Fit an n-gram model of each order on `train_split` and score `eval_split`:
    {"unigram": {...}, "markov-3": {...}}, each the `evaluate_stream` figures (by group and
    by source too) plus the order, the training tokens and the seconds spent fitting and
    evaluating."""
    train = split_stream(corpus, train_split)
    stream = split_stream(corpus, eval_split)
    if len(stream) < 2:
        raise ValueError(f"split {eval_split!r} has fewer than two tokens: nothing to score")
    source_names: list[str] = []
    sources = piece_sources(corpus.pieces, corpus.split(eval_split), source_names)
    report: dict[str, dict[str, Any]] = {}
    for order in orders:
        started = time.perf_counter()
        model = NgramModel(order, len(VOCAB)).fit([train])
        fitted = time.perf_counter()
        figures = evaluate_stream(model.log_probs(stream), stream[1:], sources[1:],
                                  source_names)  # fmt: skip
        figures |= {
            "order": order,
            "train_tokens": len(train),
            "fit_seconds": fitted - started,
            "eval_seconds": time.perf_counter() - fitted,
        }
        report[model_name(order)] = figures
    return report
