"""The token groups of an evaluation, and its figures by group and by source. numpy only.

    group_of_tokens()[VOCAB.ids["v:64"]]  -> index of "velocity" in GROUPS
    breakdown(nats, tokens, ("music21", "simutrans-data"))

A loss says how well a model does; the groups say on what. Every vocabulary family
belongs to exactly one group (GROUP_OF_FAMILY, the one table), so the groups partition
the targets: their token counts add up to the split's, and their bits to its bits.

Two figures per group:

* bits per token: the bits spent on the group's tokens over their count. A model that
  guesses uniformly over the vocabulary spends log2(V) on every group.
* bits per note: the bits spent on the group's tokens over the notes of the same targets.
  These add up, over the groups, to the bits per note: where a note's bits go.

The GPT-2 (`scoring.Tally`) and the n-gram baselines (`baselines.evaluate_stream`) both
sum nats and token counts by (source, group) and read their figures here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from music_lm.tokens.vocab import NOTE_FAMILIES, VOCAB

# Every token family -> the group it is reported in (what the model gets wrong, musically).
GROUP_OF_FAMILY: dict[str, str] = {
    "pitch": "pitch",
    "drum": "drum",
    "vel": "velocity",
    "dur": "duration",
    "dur_long": "duration",
    "pos": "timing",
    "bar": "timing",
    "track": "track",
    # the rest: a piece's header and the events between bars
    "piece": "header",
    "end": "header",
    "style": "header",
    "inst": "header",
    "tempo": "header",
    "ts": "header",
    "key": "header",
    "special": "header",
    "fim": "header",  # where a fill-in-the-middle piece's gap is: structure, like the header
}

GROUPS: tuple[str, ...] = ("pitch", "drum", "velocity", "duration", "timing", "track", "header")

# The groups whose tokens are notes (one token per note): their counts are the notes.
NOTE_GROUPS: tuple[str, ...] = tuple(sorted({GROUP_OF_FAMILY[f] for f in NOTE_FAMILIES}))


def group_of_tokens() -> np.ndarray:
    """The index into GROUPS of every token id of the vocabulary (int64)."""
    missing = sorted(set(VOCAB.family_of) - set(GROUP_OF_FAMILY))
    if missing:
        raise ValueError(f"token families {missing} have no group in GROUP_OF_FAMILY")
    index = {group: g for g, group in enumerate(GROUPS)}
    return np.array([index[GROUP_OF_FAMILY[f]] for f in VOCAB.family_of], dtype=np.int64)


def _bits(nats: float) -> float:
    return nats / math.log(2)


def _groups(nats: np.ndarray, tokens: np.ndarray, notes: float) -> dict[str, dict]:
    """{group: {tokens, bits_per_token, bits_per_note}} for the groups with a token."""
    return {
        group: {
            "tokens": int(tokens[g]),
            "bits_per_token": _bits(float(nats[g])) / float(tokens[g]),
            "bits_per_note": _bits(float(nats[g])) / notes if notes else None,
        }
        for g, group in enumerate(GROUPS)
        if tokens[g]
    }


def _summary(nats: np.ndarray, tokens: np.ndarray) -> dict:
    notes = float(sum(tokens[GROUPS.index(g)] for g in NOTE_GROUPS))
    total = float(tokens.sum())
    return {
        "tokens": int(total),
        "notes": int(notes),
        "loss": float(nats.sum()) / total,
        "bits_per_token": _bits(float(nats.sum())) / total,
        "bits_per_note": _bits(float(nats.sum())) / notes if notes else None,
        "groups": _groups(nats, tokens, notes),
    }


def breakdown(nats: np.ndarray, tokens: np.ndarray, source_names: Sequence[str]) -> dict:
    """The figures by group, over all sources and for each source, from the nats spent and
    the targets counted by (source, group): two arrays of shape (sources, len(GROUPS)).

    {"groups": {group: {"tokens", "bits_per_token", "bits_per_note"}},
     "sources": {name: {"tokens", "notes", "loss", "bits_per_token", "bits_per_note",
                        "groups": {...}}}}
    (a source without a target in the split is left out; bits per note None without notes)."""
    nats = np.asarray(nats, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.float64)
    expected = (len(source_names), len(GROUPS))
    if nats.shape != expected or tokens.shape != expected:
        raise ValueError(f"sums by (source, group) of shape {expected}: got {nats.shape}, "
                         f"{tokens.shape}")  # fmt: skip
    overall = _summary(nats.sum(0), tokens.sum(0))
    sources = {
        name: _summary(nats[s], tokens[s]) for s, name in enumerate(source_names) if tokens[s].sum()
    }
    return {"groups": overall["groups"], "sources": sources}


def piece_sources(pieces: Sequence, indices: Sequence[int], names: list[str]) -> np.ndarray:
    """One source index per token of the pieces `indices` back to back (each piece has
    `.source` and `.tokens`), as int64; `names` gains the sources not in it yet."""
    labels = []
    for i in indices:
        piece = pieces[i]
        if piece.source not in names:
            names.append(piece.source)
        labels.append(np.full(piece.tokens, names.index(piece.source), dtype=np.int64))
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


def combine(summaries: Sequence[dict]) -> dict:
    """The figures of several sources' targets together, from their `breakdown` summaries
    (what `breakdown` gives for a source that holds all their pieces)."""
    nats = np.zeros(len(GROUPS))
    tokens = np.zeros(len(GROUPS))
    for summary in summaries:
        for group, figures in summary["groups"].items():
            g = GROUPS.index(group)
            tokens[g] += figures["tokens"]
            nats[g] += figures["bits_per_token"] * figures["tokens"] * math.log(2)
    combined = _summary(nats, tokens)
    if summaries and all("accuracy" in s for s in summaries):
        right = sum(s["accuracy"] * s["tokens"] for s in summaries)
        combined["accuracy"] = right / combined["tokens"]
    return combined
