"""The models a generation samples from, each stepping through the batch with its own KV
cache (the window a model reads of a piece that outgrows its context is
`music_lm.corpus.windows`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from music_lm.generation.decoder import StaticDecoder, decode_exact, supports
from music_lm.tokens.rules import PIECE


class _Runner:
    """One model stepping through a batch with its own KV cache.

    Without attention weights to keep, a GPT-2 steps through `StaticDecoder` (transformers'
    logits, bit for bit in its exact mode and within rounding in its fast one, in a
    fraction of the time); otherwise through transformers' forward pass and its growing
    cache."""

    def __init__(self, loaded, device: torch.device, attention: bool = False) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.device = device
        self.context = loaded.context
        self.attention = attention
        self.lean = not attention and supports(self.model)
        self.past = None
        self.decoder: StaticDecoder | None = None
        self.length = 0  # positions in the cache
        self.mask: torch.Tensor | None = None  # [rows, length] attention mask
        self.positions: torch.Tensor | None = None  # [rows] next position id
        self.pads: list[int] = []  # per row: padding before its window in the cache
        self.last_attentions = None

    @torch.inference_mode()
    def prefill(self, windows: list[list[int]]) -> torch.Tensor:
        """Start the cache on these windows (left-padded); the next-token logits. Rows that
        read the same window (every variant at the start) share one pass over it."""
        rows = len(windows)
        shared = rows > 1 and all(w == windows[0] for w in windows[1:])
        read = windows[:1] if shared else windows
        width = max(map(len, read))
        ids = torch.full((len(read), width), PIECE, dtype=torch.long)
        mask = torch.zeros((len(read), width), dtype=torch.long)
        for row, window in enumerate(read):
            ids[row, width - len(window) :] = torch.tensor(window)
            mask[row, width - len(window) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        self.mask = mask.to(self.device)
        self.past = self.decoder = None
        logits = self._forward(ids.to(self.device), positions.to(self.device))
        if shared:  # the one row's cache, logits and mask stand for every row
            if not self.lean:  # (the decoder's buffers take the one row's cache as it is)
                self.past.batch_repeat_interleave(rows)
            logits = logits.expand(rows, -1)
            self.mask = self.mask.expand(rows, -1)
            positions = positions.expand(rows, -1)
        self.pads = [width - len(w) for w in windows]
        self.positions = positions[:, -1].to(self.device) + 1
        self.length = width
        if self.lean and not self.full:
            self.decoder = StaticDecoder.from_cache(
                self.model, self.past, self.mask, self.context, exact=decode_exact()
            )
            self.past = None
        return logits

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        logits = self._forward(tokens[:, None].to(self.device), self.positions[:, None])
        self.positions = self.positions + 1
        self.length += 1
        return logits

    def keep(self, rows: Sequence[int]) -> None:
        """Only these rows (batch indices, in order) stay in the batch: finished rows stop
        costing compute."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        if self.decoder is not None:
            self.decoder.keep(index)
        else:
            self.past.batch_select_indices(index)
        self.mask = self.mask[index]
        self.positions = self.positions[index]
        self.pads = [self.pads[row] for row in rows]

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.decoder is not None:
            logits = self.decoder.step(self.loaded.token_map.to_model(ids), positions)
            return self.loaded.token_map.music_logits(logits).float()
        out = self.model(
            input_ids=self.loaded.token_map.to_model(ids),
            attention_mask=self.mask,
            position_ids=positions,
            cache=self.past,  # transformers >= 5.24 (`past_key_values` is deprecated)
            use_cache=True,
            output_attentions=self.attention,
        )
        self.past = out.cache
        self.last_attentions = out.attentions if self.attention else None
        return self.loaded.token_map.music_logits(out.logits[:, -1, :]).float()

    @property
    def full(self) -> bool:
        return self.length + 1 > self.context


def load_runners(
    names: Sequence[str | Path],
    loaded: Sequence | None,
    device: torch.device,
    attention: bool,
) -> list[_Runner]:
    """A runner per model name, on `device`: the models of `loaded` (in the same order) or
    those loaded here. With `attention`, the first keeps its attention weights."""
    from music_lm.model.folder import load_model  # transformers loads with the first model

    runners = []
    for index, name in enumerate(names):
        model = loaded[index] if loaded is not None else load_model(name, device=device)
        runners.append(_Runner(model, device, attention=attention and index == 0))
    if attention:
        _eager_attention(runners[0].model)
    return runners


def _eager_attention(model) -> None:
    """SDPA gives no attention weights; the eager kernel does."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:  # older transformers
        model.config._attn_implementation = "eager"
