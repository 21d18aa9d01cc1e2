"""Scoring a model on corpus windows: loss, accuracy, perplexity, bits per note and loss per
token group, as the training run's validation and `music-lm evaluate` compute them; for
`evaluate`, also bits per token by group and by source (`music_lm.training.groups`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from music_lm.corpus.dataset import Corpus, sequential_windows
from music_lm.corpus.sources import CorpusError
from music_lm.model.folder import TokenMap
from music_lm.training.groups import (
    GROUPS,
    NOTE_GROUPS,
    breakdown,
    group_of_tokens,
    piece_sources,
)


class Tally:
    """Sums of a loss over tokens, by source and token group, for one evaluation."""

    def __init__(self, device: torch.device, sources: int = 1) -> None:
        # rows: nats, targets, correct; columns: (source, group) flattened
        self.sums = torch.zeros(3, sources * len(GROUPS), dtype=torch.float64, device=device)
        self.sources = sources
        # Per token id, on the device once: its group (the note groups count the notes).
        self.group_of = torch.from_numpy(group_of_tokens()).to(device)

    def add(
        self, logits: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor | None = None
    ) -> None:
        """`sources`: the source index of each target (None: all of source 0)."""
        logits = logits.float().reshape(-1, logits.shape[-1])
        targets = targets.reshape(-1)
        nll = cross_entropy(logits, targets, reduction="none").double()
        correct = (logits.argmax(-1) == targets).double()
        cell = self.group_of[targets]
        if sources is not None:
            cell = cell + sources.reshape(-1) * len(GROUPS)
        cells = self.sums.shape[1]
        self.sums[0] += torch.bincount(cell, weights=nll, minlength=cells)
        self.sums[1] += torch.bincount(cell, minlength=cells).double()
        self.sums[2] += torch.bincount(cell, weights=correct, minlength=cells)

    def result(self, source_names: Sequence[str] = ()) -> dict:
        """The figures over every target; with `source_names` (one per source index), also
        "groups" and "sources" (see `groups.breakdown`)."""
        nats, tokens, correct = self.sums.reshape(3, self.sources, len(GROUPS)).cpu().numpy()
        by_group_nats, by_group_tokens = nats.sum(0), tokens.sum(0)
        total = float(tokens.sum())
        notes = sum(float(by_group_tokens[GROUPS.index(g)]) for g in NOTE_GROUPS)
        loss = float(nats.sum()) / max(total, 1)
        out = {
            "loss": loss,
            "accuracy": float(correct.sum()) / max(total, 1),
            "perplexity": math.exp(min(loss, 50.0)),
            "bits_per_note": float(nats.sum()) / math.log(2) / notes if notes else None,
            "tokens": int(total),
            "notes": int(notes),
        }
        for g, name in enumerate(GROUPS):
            if by_group_tokens[g]:
                out[f"loss_{name}"] = float(by_group_nats[g] / by_group_tokens[g])
        if source_names:
            out |= breakdown(nats, tokens, source_names)
            for s, name in enumerate(source_names):
                if name in out["sources"]:
                    out["sources"][name]["accuracy"] = float(correct[s].sum() / tokens[s].sum())
        return out


@dataclass(frozen=True)
class SplitWindows:
    """A split as windows, and the source index of each of their tokens."""

    tokens: list[np.ndarray]  # token ids, int64
    sources: list[np.ndarray]  # same shapes: index into source_names
    source_names: tuple[str, ...]  # the pieces' source labels, in order of appearance


def labelled_windows(
    corpora: Sequence[Corpus], split: str, context: int, max_windows: int = 0
) -> SplitWindows:
    """A split as consecutive windows (each token predicted once, with up to `context - 1`
    tokens before it, untransposed), with the source of every token. `max_windows` takes
    that many windows spread evenly over the split (0: all), so a quick evaluation still
    sees every style."""
    tokens, sources, names = [], [], []
    for corpus in corpora:
        labels = piece_sources(corpus.pieces, corpus.split(split), names)
        # the windows overlap by one token: window k starts at token k * context
        for k, window in enumerate(sequential_windows(corpus, split, context)):
            tokens.append(window)
            sources.append(labels[k * context : k * context + len(window)])
    if not tokens:
        raise CorpusError(f"the {split!r} split is empty: nothing to evaluate")
    if max_windows and len(tokens) > max_windows:
        picks = np.linspace(0, len(tokens) - 1, max_windows).round().astype(int)
        tokens = [tokens[i] for i in picks]
        sources = [sources[i] for i in picks]
    return SplitWindows(tokens, sources, tuple(names))


def split_windows(
    corpora: Sequence[Corpus], split: str, context: int, max_windows: int = 0
) -> list[np.ndarray]:
    """The token windows of `labelled_windows`."""
    return labelled_windows(corpora, split, context, max_windows).tokens


@torch.no_grad()
def score_windows(
    model: torch.nn.Module,
    windows: Sequence[np.ndarray],
    batch_size: int = 8,
    token_map: TokenMap = TokenMap(),
    device: torch.device | str = "cpu",
    autocast: Callable | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sources: Sequence[np.ndarray] | None = None,
    source_names: Sequence[str] = (),
) -> dict:
    """Loss, accuracy, perplexity, bits per note and loss per token group over `windows`
    (`reduce` sums the tallies of several processes); with `sources` (the source index of
    every token of every window) and their `source_names`, also the figures by group and by
    source (`Tally.result`)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    tally = Tally(device, max(len(source_names), 1))
    for start in range(0, len(windows), batch_size):
        chunk = range(start, min(start + batch_size, len(windows)))
        for length in sorted({len(windows[i]) for i in chunk}):  # the last window is short
            same = [i for i in chunk if len(windows[i]) == length]
            batch = torch.from_numpy(np.stack([windows[i] for i in same])).to(device)
            labels = None
            if sources is not None:
                labels = torch.from_numpy(np.stack([sources[i][1:] for i in same])).to(device)
            with autocast() if autocast else nullcontext():
                # use_cache=False: scoring reads the logits only; a KV cache would copy every
                # layer's keys and values (5 s of a 67 s validation on two cores)
                logits = model(input_ids=token_map.to_model(batch[:, :-1]), use_cache=False).logits
            tally.add(token_map.music_logits(logits), batch[:, 1:], labels)
    if reduce is not None:
        tally.sums = reduce(tally.sums)
    model.train(was_training)
    return tally.result(source_names if sources is not None else ())


def evaluate(
    model: torch.nn.Module,
    corpora: Sequence[Corpus],
    split: str = "valid",
    context: int = 1024,
    max_windows: int = 0,
    batch_size: int = 8,
    token_map: TokenMap = TokenMap(),
    device: torch.device | str = "cpu",
) -> dict:
    """`score_windows` over a split's windows (see `labelled_windows`), with the figures by
    group and by source."""
    split_ = labelled_windows(corpora, split, context, max_windows)
    return score_windows(model, split_.tokens, batch_size, token_map, device,
                         sources=split_.sources, source_names=split_.source_names)  # fmt: skip
