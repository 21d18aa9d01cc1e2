"""Drawing a batch of continuations token by token: the mask of the allowed ids per row,
the probabilities left after temperature, top-k, top-p and min-p, the models' scores
combined, and the attention weights kept along the way.

Sampling never falls back to an unconstrained choice: when nothing allowed is left after
top-k / top-p / min-p (or the model gives it no probability), it draws among the allowed
ids uniformly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from music_lm.corpus.windows import window_of
from music_lm.generation.constraints import Constraints
from music_lm.generation.models import _Runner
from music_lm.generation.settings import (
    GenerationError,
    GenerationStoppedError,
    Progress,
    Sampling,
)
from music_lm.generation.state import ContinuationState
from music_lm.tokens.rules import BAR, END
from music_lm.tokens.vocab import VOCAB

V = len(VOCAB)


def allowed_mask(ranges_per_row: Sequence[Sequence[tuple[int, int]]], out: torch.Tensor) -> None:
    """Fill the bool tensor `out` [rows, V] with the allowed ids of each row."""
    out.zero_()
    for row, ranges in enumerate(ranges_per_row):
        target = out[row]
        for lo, hi in ranges:
            target[lo:hi] = True


def draw_tokens(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One id per row of `probs` [rows, V] (each row summing to 1), by inverse transform
    sampling: one uniform number per row, placed on the row's cumulative distribution (in
    float64). An id of zero probability owns an empty interval, so it is never drawn.

    Three small operations where `torch.multinomial` took 70 µs a row (bench/RESULTS.md),
    and the random stream is one number per row whatever the vocabulary's length: ids added
    to it later, given no probability, leave every random seed's music as it was."""
    cumulative = probs.to(torch.float64).cumsum_(dim=-1)
    total = cumulative[:, -1:]
    uniform = torch.rand((probs.shape[0], 1), generator=generator, dtype=torch.float64)
    # The point stays below the total (u * total can round up to it): the first id whose
    # cumulative sum passes it then always exists and always has probability.
    point = torch.minimum(uniform.mul_(total), torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cumulative, point, right=True)[:, 0]


def filtered_probabilities(
    logits: torch.Tensor,
    allowed: torch.Tensor,
    temperature: torch.Tensor,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
) -> torch.Tensor:
    """Probabilities [rows, V] over the allowed ids only, after temperature, top-k, top-p and
    min-p. A row whose allowed ids all have zero probability (or non-finite logits) gets
    the uniform distribution over its allowed ids: never anything outside them."""
    # One new tensor for the scores (the logits may be shared by rows), then in place.
    scores = logits.float() / temperature[:, None]
    scores.masked_fill_(~allowed, float("-inf"))
    if top_k > 0:
        k = min(top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[:, -1:]
        scores.masked_fill_(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1).sub_(sorted_probs)
        drop_sorted = before >= top_p  # keep the smallest head that reaches top_p
        probs.masked_fill_(torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted), 0.0)
    if min_p > 0.0:
        peak = probs.max(dim=-1, keepdim=True).values
        probs.masked_fill_(probs < min_p * peak, 0.0)
    probs = probs.nan_to_num_(nan=0.0).mul_(allowed)
    total = probs.sum(dim=-1, keepdim=True)
    dead = ~(total > 0)
    if bool(dead.any()):
        uniform = allowed.float()
        probs = torch.where(dead, uniform, probs)
        total = probs.sum(dim=-1, keepdim=True)
    return probs / total


class _Watch:
    """The caller's hooks on a run: progress reports, the stop question and the time limit."""

    def __init__(self, progress, stop, time_limit_s: float | None, bars: int, budget: int):
        self.progress, self.stop, self.time_limit_s = progress, stop, time_limit_s
        self.bars, self.budget = bars, budget
        self.started = time.perf_counter()
        self.new_tokens = 0  # over every batch, retries included

    def step(self, tokens: int, made: int, states: Sequence[ContinuationState]) -> None:
        """After each step: `made` new tokens were drawn, `tokens` steps taken in this batch."""
        self.new_tokens += made
        seconds = time.perf_counter() - self.started
        if self.progress is not None:
            bars_done = min(self.bars if s.done else max(s.bars_started - 1, 0) for s in states)
            self.progress(Progress(tokens, self.budget, bars_done, self.bars, seconds,
                                   self.new_tokens))  # fmt: skip
        if self.stop is not None and self.stop():
            raise GenerationStoppedError(
                f"stopped after {self.new_tokens} new tokens ({seconds:.1f} s)"
            )
        if self.time_limit_s is not None and seconds > self.time_limit_s:
            raise GenerationError(
                f"generation ran past its limit of {self.time_limit_s:g} s "
                f"({self.new_tokens} new tokens made); ask for fewer bars or variants"
            )


def _sample_rows(
    runners: list[_Runner],
    seed_state: ContinuationState,
    seed_ids: list[int],
    rows: int,
    budget: int,
    constraints: Constraints,
    sampling: Sampling,
    weights: list[float],
    mix: str | None,
    generator: torch.Generator,
    bump: float,
    watch: _Watch,
) -> list[tuple[list[int], float, np.ndarray | None]]:
    """Sample `rows` continuations of the seed as one batch. A row that ends leaves the
    batch: the models step only the rows still drawing (`live`, in batch order)."""
    started = time.perf_counter()
    states = [seed_state.copy() for _ in range(rows)]
    sequences = [list(seed_ids) for _ in range(rows)]
    finished_at = [0.0] * rows
    # Room to generate before the next re-window: each one re-reads a whole window.
    reserve = max(1, min(r.context for r in runners) // 4)
    limit = min(r.context for r in runners) - reserve
    live = list(range(rows))
    windows = [window_of(seq, limit) for seq in sequences]
    logits = [r.prefill([w for w, _ in windows]) for r in runners]
    keys = dict(zip(live, _key_offsets(windows, sequences), strict=True))
    # The mask is filled on the CPU (from id ranges) and sent to the model's device whole.
    device = runners[0].device
    masks = torch.zeros((rows, V), dtype=torch.bool, pin_memory=device.type == "cuda")
    temperatures = torch.ones(rows)
    captured: list[tuple[torch.Tensor, int]] = []  # row 0's attention, when kept
    for step in range(budget):
        count = len(live)
        mask, temperature = masks[:count], temperatures[:count]
        ranges = []
        for index, row in enumerate(live):
            state = states[row]
            allowed = state.allowed_ranges(budget - step)
            if not allowed:  # a bug, never the user's doing: say where
                text = " ".join(VOCAB.tokens[t] for t in sequences[row][-12:])
                raise GenerationError(f"no token allowed after ... {text}")
            ranges.append(allowed)
            bar = max(state.bars_started - 1, 0)
            temperature[index] = sampling.temperature_at(bar, constraints.bars) * bump
        allowed_mask(ranges, mask)
        heat = temperature.to(device)
        live_states = [states[row] for row in live]
        scores, heated = _combine(logits, live_states, weights, mix, constraints.bars, heat)
        scores = _bar_means_end(scores, live_states, ranges)
        probs = filtered_probabilities(
            scores, mask.to(device, non_blocking=True), torch.ones_like(heat) if heated else heat,
            sampling.top_k, sampling.top_p, sampling.min_p,
        )  # fmt: skip
        # Drawn on the CPU with the run's generator (the states need the ids there anyway).
        # The copy of the pinned mask above is done by now: .cpu() waits for the device.
        tokens = draw_tokens(probs.cpu(), generator)
        going = []  # batch indices of the rows that go on
        for index, (row, token) in enumerate(zip(live, tokens.tolist(), strict=True)):
            states[row].advance(token)
            sequences[row].append(token)
            if runners[0].attention and row == 0:  # one variant's: the array grows fast
                captured.append(_attention_row(runners[0], index, keys[row]))
            if states[row].done:
                finished_at[row] = time.perf_counter() - started
            else:
                going.append(index)
        watch.step(step + 1, count, states)
        if not going:
            break
        if len(going) < count:
            live = [live[index] for index in going]
            tokens = tokens[going]
            for runner in runners:
                runner.keep(going)
        if any(r.full for r in runners):
            windows = [window_of(sequences[row], limit) for row in live]
            logits = [r.prefill([w for w, _ in windows]) for r in runners]
            offsets = _key_offsets(windows, [sequences[row] for row in live])
            keys = dict(zip(live, offsets, strict=True))
        else:
            logits = [r.step(tokens) for r in runners]
    if not all(state.done for state in states):  # cannot happen: the budget keeps an end open
        raise GenerationError("a variant did not end within --max-new-tokens")
    out = []
    for row in range(rows):
        attn = None
        if runners[0].attention and row == 0:
            attn = _stack_attention(captured, len(sequences[row]))
        out.append((sequences[row], finished_at[row], attn))
    return out


def _bar_means_end(
    scores: torch.Tensor, states: list[ContinuationState], ranges: list
) -> torch.Tensor:
    """In the last new bar, where `bar` may not come, a model that asks for another bar is
    saying this one is done: its score for `bar` goes to `end` where `end` is allowed
    (log-added). Left to the mask alone, that probability spreads over the later positions
    of the bar, and notes pile up in its last steps (bench/continuation.py measured 8-10 %
    of new notes in the last 1/12 quarter of the piece).

    The mirror for a model prompted in the fill-in-the-middle form (`fim_prompt` states):
    it learnt to close the middle with `end`, which a region bar never takes (the next bar,
    or the suffix's first, follows), so there its `end` score goes to `bar`."""
    to_end, to_bar = [], []
    for row, state in enumerate(states):
        end_ok = any(lo <= END < hi for lo, hi in ranges[row])
        if end_ok and state.final_bar():
            to_end.append(row)
        elif (not end_ok and getattr(state, "fim_prompt", False)
              and any(lo <= BAR < hi for lo, hi in ranges[row])):  # fmt: skip
            to_bar.append(row)
    if not to_end and not to_bar:
        return scores
    scores = scores.clone()
    if to_end:
        scores[to_end, END] = torch.logaddexp(scores[to_end, END], scores[to_end, BAR])
    if to_bar:
        scores[to_bar, BAR] = torch.logaddexp(scores[to_bar, BAR], scores[to_bar, END])
    return scores


def _combine(
    logits: list[torch.Tensor],
    states: list[ContinuationState],
    weights: list[float],
    mix: str | None,
    bars: int,
    temperature: torch.Tensor,
) -> tuple[torch.Tensor, bool]:
    """(one score per id and row, whether the temperature is already applied): the logits
    of the only model; for a schedule, each row's model of its current bar; for weights,
    the log of the averaged distributions, each at the row's temperature."""
    if len(logits) == 1:
        return logits[0], False
    if mix == "schedule":
        count = len(logits)
        pick = torch.tensor(
            [min(count - 1, max(s.bars_started - 1, 0) * count // bars) for s in states]
        )
        stacked = torch.stack(logits)  # [models, rows, V]
        return stacked[pick, torch.arange(len(states))], False
    probs = sum(
        weight * torch.softmax(scores / temperature[:, None], dim=-1)
        for weight, scores in zip(weights, logits, strict=True)
    )
    return torch.log(probs), True


def _key_offsets(
    windows: list[tuple[list[int], int]], sequences: list[list[int]]
) -> list[tuple[int, int]]:
    """Per row, how the cache's keys map onto the sequence: (length of the restated header
    at the window's start, index in the sequence of the first body token after it). Keys
    from there on are the sequence's tokens in order."""
    return [
        (len(window) - (len(seq) - first), first)
        for (window, first), seq in zip(windows, sequences, strict=True)
    ]


def _attention_row(runner: _Runner, row: int, keys: tuple[int, int]) -> tuple[torch.Tensor, int]:
    """The attention [layers, heads, keys] of the query that predicted the row's new token
    over the sequence's own tokens (left padding and a restated header cut off), and the
    index in the sequence of the first of those keys."""
    header, first = keys
    attentions = runner.last_attentions  # per layer [rows, heads, 1 or more, cache length]
    stacked = torch.stack([a[row, :, -1, :] for a in attentions]).float().cpu()
    return stacked[..., runner.pads[row] + header :], first


def _stack_attention(rows: list[tuple[torch.Tensor, int]], total: int) -> np.ndarray:
    """[layers, heads, new tokens, tokens]: row i is what predicted new token i (at index
    total - len(rows) + i) attended to, placed on the tokens it read; what lay outside its
    window (before a re-window, or a header restated there) stays 0."""
    layers, heads = rows[0][0].shape[:2]
    out = np.zeros((layers, heads, len(rows), total), dtype=np.float16)
    for i, (weights, first) in enumerate(rows):
        out[:, :, i, first : first + weights.shape[-1]] = weights.numpy()
    return out
