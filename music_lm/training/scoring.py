"""Scoring a model on corpus windows: loss, accuracy, perplexity, bits per note and loss per
token group, as the training run's validation and `music-lm evaluate` compute them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from music_lm.corpus.dataset import Corpus, sequential_windows
from music_lm.corpus.sources import CorpusError
from music_lm.model.folder import LOSS_GROUPS, TokenMap, loss_group_of_tokens
from music_lm.tokens.vocab import VOCAB


class Tally:
    """Sums of a loss over tokens, by loss group, for one evaluation."""

    def __init__(self, device: torch.device) -> None:
        groups = len(LOSS_GROUPS)
        self.sums = torch.zeros(3 + 2 * groups, dtype=torch.float64, device=device)
        # Per token id, on the device once: its loss group, and whether it is a note.
        self.group_of = torch.from_numpy(loss_group_of_tokens()).to(device)
        self.is_note = torch.tensor(VOCAB.is_note, device=device)

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits = logits.float().reshape(-1, logits.shape[-1])
        targets = targets.reshape(-1)
        nll = cross_entropy(logits, targets, reduction="none").double()
        correct = (logits.argmax(-1) == targets).double()
        group = self.group_of[targets]
        n = len(LOSS_GROUPS)
        self.sums[0] += nll.sum()
        self.sums[1] += correct.sum()
        self.sums[2] += self.is_note[targets].sum()
        self.sums[3 : 3 + n] += torch.bincount(group, weights=nll, minlength=n)
        self.sums[3 + n :] += torch.bincount(group, minlength=n).double()

    def result(self) -> dict:
        n = len(LOSS_GROUPS)
        sums = self.sums.tolist()
        counts = sums[3 + n :]
        total = sum(counts)
        loss = sums[0] / max(total, 1)
        out = {
            "loss": loss,
            "accuracy": sums[1] / max(total, 1),
            "perplexity": math.exp(min(loss, 50.0)),
            "bits_per_note": sums[0] / math.log(2) / sums[2] if sums[2] else None,
            "tokens": int(total),
            "notes": int(sums[2]),
        }
        for g, (name, _) in enumerate(LOSS_GROUPS):
            if counts[g]:
                out[f"loss_{name}"] = sums[3 + g] / counts[g]
        return out


def split_windows(
    corpora: Sequence[Corpus], split: str, context: int, max_windows: int = 0
) -> list[np.ndarray]:
    """A split as consecutive windows (each token predicted once, with up to `context - 1`
    tokens before it, untransposed). `max_windows` takes that many windows spread evenly
    over the split (0: all), so a quick evaluation still sees every style."""
    windows = [w for c in corpora for w in sequential_windows(c, split, context)]
    if not windows:
        raise CorpusError(f"the {split!r} split is empty: nothing to evaluate")
    if max_windows and len(windows) > max_windows:
        picks = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
        windows = [windows[i] for i in picks]
    return windows


@torch.no_grad()
def score_windows(
    model: torch.nn.Module,
    windows: Sequence[np.ndarray],
    batch_size: int = 8,
    token_map: TokenMap = TokenMap(),
    device: torch.device | str = "cpu",
    autocast: Callable | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Loss, accuracy, perplexity, bits per note and loss per token group over `windows`
    (`reduce` sums the tallies of several processes)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    tally = Tally(device)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        for length in sorted({len(w) for w in chunk}):  # the split's last window is short
            batch = torch.from_numpy(np.stack([w for w in chunk if len(w) == length]))
            batch = batch.to(device)
            with autocast() if autocast else nullcontext():
                logits = model(input_ids=token_map.to_model(batch[:, :-1])).logits
            tally.add(token_map.music_logits(logits), batch[:, 1:])
    if reduce is not None:
        tally.sums = reduce(tally.sums)
    model.train(was_training)
    return tally.result()


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
    """`score_windows` over a split's windows (see `split_windows`)."""
    windows = split_windows(corpora, split, context, max_windows)
    return score_windows(model, windows, batch_size, token_map, device)
