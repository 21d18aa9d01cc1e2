"""The models a generation samples from, each stepping through the batch with its own KV
cache, and the window of a piece that a model reads when the piece outgrows its context."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from music_lm.corpus.dataset import piece_from_bar
from music_lm.generation.decoder import StaticDecoder, supports
from music_lm.tokens.fim import FILL, HOLE
from music_lm.tokens.rules import BAR, PIECE


class _Runner:
    """One model stepping through a batch with its own KV cache.

    Without attention weights to keep, a GPT-2 steps through `StaticDecoder` (the same
    logits as transformers' step, bit for bit, in a fraction of its time); otherwise
    through transformers' forward pass and its growing cache."""

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
            self.decoder = StaticDecoder.from_cache(self.model, self.past, self.mask, self.context)
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


def window_of(ids: Sequence[int], limit: int) -> tuple[list[int], int]:
    """What the model reads of a piece longer than its context: the header and the latest
    bars that fit in `limit` tokens (a header restated at that bar, as in training).
    Returns (window, index in `ids` of the first body token kept)."""

    ids = list(ids)
    if len(ids) <= limit:
        return ids, 0
    if HOLE in ids:
        return _fim_window_of(ids, limit)
    array = np.asarray(ids, dtype=np.int64)
    bar_starts = np.flatnonzero(array == BAR)
    for start in bar_starts[1:]:
        window = piece_from_bar(array, int(start), keep_tracks=True)
        if len(window) <= limit:
            return window.tolist(), int(start)
    # One bar longer than the window: its header, then as much of the end as fits.
    header = ids[: int(bar_starts[0])] if len(bar_starts) else ids[:8]
    keep = limit - len(header)
    if keep < 1:  # a header longer than the window: the latest tokens alone
        return ids[-limit:], len(ids) - limit
    return header + ids[-keep:], len(ids) - keep


def _fim_window_of(ids: list[int], limit: int) -> tuple[list[int], int]:
    """The window of a fill-in-the-middle sequence (prefix, `hole` … `fill`, the middle so
    far): the middle whole, the suffix's earliest bars in up to half the room left (more
    when the prefix needs less), the prefix's latest bars in the rest. A middle that leaves
    no room for both sides is read as a plain piece: prefix and middle."""
    hole, fill = ids.index(HOLE), ids.index(FILL)
    prefix, suffix, middle = ids[:hole], ids[hole : fill + 1], ids[fill + 1 :]
    header = prefix.index(BAR) if BAR in prefix else len(prefix)
    room = limit - len(middle)
    if room >= 2 * (header + _SUFFIX_HEAD):
        kept = _cut_suffix(suffix, max(room // 2, room - len(prefix)))
        window, first = window_of(prefix, room - len(kept))
        if first and prefix[first] != BAR:  # not one whole bar of the prefix fits:
            window, first = prefix[:header], len(prefix)  # its header, and more suffix
            kept = _cut_suffix(suffix, room - header)
        return window + kept + middle, first
    return window_of(prefix + middle, limit)


_SUFFIX_HEAD = 6  # hole, tempo, meter, key, fill and a word to spare


def _cut_suffix(suffix: list[int], room: int) -> list[int]:
    """`hole` … `fill` cut to `room` tokens: the restated words and the suffix's earliest
    whole bars that fit, then `fill`."""
    if len(suffix) <= room:
        return suffix
    bars = [i for i, t in enumerate(suffix) if t == BAR]
    if not bars:
        return suffix
    fits = [i for i in bars if i + 1 <= room] or bars[:1]
    return [*suffix[: fits[-1]], FILL]


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
