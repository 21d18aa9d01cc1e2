"""Adaptation to the song: a throw-away copy of a model fine-tuned for a few steps on the
seed itself and its transpositions, before a continuation is sampled from it.

    adapted, record = adapt_model(loaded, seed_ids, steps=20)   # loaded is never touched

The copy is trained in full (every weight) or through LoRA adapters merged back into it
(`method`), on windows of the seed that start at its bar lines (each with the header in
force there, as in training), each moved by its own random transposition within
±TRANSPOSE_SEMITONES and the seed's instrument ranges. The model passed in, which other
callers may share (the page's cached model), and the folder on disk stay as they were.

Why these settings: bench/adapt.py (bench/RESULTS.md, "Adaptation to the seed") measured,
on 16-bar band seeds and two CPU cores, the bits per note of each seed's held-back last bars
before and after adapting on the bars before them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from music_lm.corpus.augment import track_pitch_ranges
from music_lm.corpus.dataset import piece_from_bar, transpose_ids
from music_lm.corpus.split import transpose_range
from music_lm.tokens.vocab import VOCAB
from music_lm.training.config import TrainError

if TYPE_CHECKING:  # transformers loads with the first model, not with generation's import
    from music_lm.model.folder import LoadedModel

ADAPT_METHODS = ("full", "lora")
DEFAULT_METHOD = "full"  # gained more per second than LoRA (bench/RESULTS.md)
MAX_ADAPT_STEPS = 500  # past this it is training a model, not adapting one
LEARNING_RATES = {"full": 1e-3, "lora": 5e-3}  # per method (bench/adapt.py)
WARMUP_STEPS = 2
TRANSPOSE_SEMITONES = 5  # as in training (TrainConfig.transpose)
WINDOW_TOKENS = 512  # the most tokens of one training window (the model's context if less)
LORA_RANK = 8
LORA_ALPHA = 16
ADAPT_THREADS = 2  # torch threads while training (bench/adapt.py: 1 vs 2 on two cores)

_BAR = VOCAB.ids["bar"]
_FAMILY = VOCAB.family_of
_VALUE = VOCAB.values


@dataclass(frozen=True)
class Adaptation:
    """What an adaptation did, as the settings record keeps it."""

    steps: int
    method: str
    learning_rate: float
    seconds: float
    threads: int
    first_loss: float  # the training loss of the first step (nats per token)
    last_loss: float  # and of the last
    held_back_bars: int = 0  # bars of the seed's end kept out of training (0: none)
    held_back_bits_before: float | None = None  # their bits per note before adapting
    held_back_bits_after: float | None = None  # and after

    def to_json(self) -> dict:
        record = {
            "steps": self.steps,
            "method": self.method,
            "learning_rate": self.learning_rate,
            "seconds": round(self.seconds, 3),
            "threads": self.threads,
            "first_loss": round(self.first_loss, 4),
            "last_loss": round(self.last_loss, 4),
        }
        if self.held_back_bars:
            record["held_back_bars"] = self.held_back_bars
            record["held_back_bits_before"] = _rounded(self.held_back_bits_before)
            record["held_back_bits_after"] = _rounded(self.held_back_bits_after)
        return record


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def check_adapt_steps(steps: int) -> None:
    """TrainError naming --adapt when `steps` is not a usable number of steps."""
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TrainError(f"--adapt takes a whole number of steps, got {steps!r}")
    if not 0 <= steps <= MAX_ADAPT_STEPS:
        raise TrainError(f"--adapt must be 0..{MAX_ADAPT_STEPS} steps, got {steps}")


def adapt_model(
    loaded: LoadedModel,
    ids: Sequence[int],
    steps: int,
    *,
    method: str = DEFAULT_METHOD,
    learning_rate: float | None = None,
    random_seed: int = 0,
    held_back_bars: int = 0,
    rows: int = 1,
    threads: int | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> tuple[LoadedModel, Adaptation]:
    """A copy of `loaded` fine-tuned for `steps` optimizer steps on the seed `ids` (a header
    and whole bars) and its transpositions, and the record of it. `loaded` is unchanged.

    held_back_bars: train on all but the seed's last bars and measure their bits per note
    before and after (what bench/adapt.py reports). rows: windows per step. on_step(step,
    steps, loss) is called after every step; an exception it raises (a stop) ends the
    adaptation and leaves nothing behind. threads: torch's threads while training
    (default ADAPT_THREADS), given back afterwards."""
    check_adapt_steps(steps)
    if method not in ADAPT_METHODS:
        raise TrainError(f"--adapt-method must be {' or '.join(ADAPT_METHODS)}, got {method!r}")
    learning_rate = LEARNING_RATES[method] if learning_rate is None else float(learning_rate)
    if not 0 < learning_rate < 1:
        raise TrainError(f"the adaptation's learning rate must be in (0, 1), got {learning_rate}")
    started = time.perf_counter()
    ids = [int(t) for t in ids]
    train_ids, held_start = _split_held_back(ids, held_back_bars)
    threads = threads or ADAPT_THREADS
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        device = next(loaded.model.parameters()).device
        bits_before = held_back_bits(loaded, ids, held_start) if held_start else None
        model = _trainable_copy(loaded.model, method, random_seed)
        windows = _Windows(train_ids, min(WINDOW_TOKENS, loaded.context), random_seed)
        losses = _train(model, windows, loaded, steps, rows, learning_rate, device, on_step)
        model = _plain(model, method)
        adapted = replace(loaded, model=model)
        bits_after = held_back_bits(adapted, ids, held_start) if held_start else None
    finally:
        torch.set_num_threads(before)
    record = Adaptation(
        steps=steps,
        method=method,
        learning_rate=learning_rate,
        seconds=time.perf_counter() - started,
        threads=threads,
        first_loss=losses[0] if losses else math.nan,
        last_loss=losses[-1] if losses else math.nan,
        held_back_bars=held_back_bars if held_start else 0,
        held_back_bits_before=bits_before,
        held_back_bits_after=bits_after,
    )
    return adapted, record


# ---- the copy ----


def _trainable_copy(model: torch.nn.Module, method: str, random_seed: int) -> torch.nn.Module:
    """A float32 copy of `model` to train: every weight, or LoRA adapters around it."""
    model = copy.deepcopy(model).float()
    if method == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model.train()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):  # the adapters' initial values, reproducibly
        torch.manual_seed(random_seed)
        from music_lm.training.build import add_lora  # peft and transformers: LoRA only

        return add_lora(model, LORA_RANK, LORA_ALPHA).train()


def _plain(model: torch.nn.Module, method: str) -> torch.nn.Module:
    """The trained copy as a plain GPT-2 for sampling (LoRA merged into its weights)."""
    if method == "lora":
        model = model.merge_and_unload()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


# ---- the seed's windows ----


def _split_held_back(ids: list[int], held_back_bars: int) -> tuple[list[int], int]:
    """(the ids trained on, index of the first held-back token; 0 when none)."""
    if held_back_bars < 0:
        raise TrainError(f"held-back bars must be 0 or more, got {held_back_bars}")
    if not held_back_bars:
        return ids, 0
    starts = [i for i, t in enumerate(ids) if t == _BAR]
    if len(starts) <= held_back_bars:
        raise TrainError(
            f"a seed of {len(starts)} bars cannot hold back {held_back_bars} and train on the rest"
        )
    start = starts[-held_back_bars]
    return ids[:start], start


def seed_transpose_range(ids: Sequence[int]) -> tuple[int, int]:
    """The semitone shifts (down, up) that keep every melodic track of a seed inside its
    instrument's range (the corpus's rule for training transpositions)."""
    programs = [int(_VALUE[t]) for t in ids if _FAMILY[t] == "inst"]
    ranges = track_pitch_ranges(np.asarray(ids, dtype=np.int64))
    tracks = [(max(programs[t], 0), programs[t] < 0, low, high)
              for t, (low, high) in ranges.items() if t < len(programs)]  # fmt: skip
    return transpose_range(tracks)


class _Windows:
    """Training windows of the seed: each starts at a bar line (with the header in force
    there), holds at most `length` + 1 tokens and is moved by a random transposition."""

    def __init__(self, ids: list[int], length: int, random_seed: int) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.length = length
        self.rng = np.random.default_rng(random_seed)
        bars = np.flatnonzero(self.ids == _BAR)
        # Starts that leave at least half a window after them; the seed's start always.
        late = len(self.ids) - (length + 1) // 2
        self.starts = [0] + [int(b) for b in bars[1:] if b <= late]
        down, up = seed_transpose_range(ids)
        self.shifts = range(max(down, -TRANSPOSE_SEMITONES), min(up, TRANSPOSE_SEMITONES) + 1)

    def window(self) -> np.ndarray:
        start = self.starts[int(self.rng.integers(len(self.starts)))]
        piece = piece_from_bar(self.ids, start, keep_tracks=True)[: self.length + 1]
        shift = int(self.shifts[int(self.rng.integers(len(self.shifts)))]) if self.shifts else 0
        try:
            return transpose_ids(piece, shift)
        except ValueError:  # a pitch past MIDI's range: this window untransposed
            return piece

    def batch(self, rows: int) -> torch.Tensor:
        """(rows, length + 1) ids; shorter windows are padded with -100 (not scored)."""
        windows = [self.window() for _ in range(rows)]
        width = max(len(w) for w in windows)
        batch = torch.full((rows, width), -100, dtype=torch.long)
        for row, window in enumerate(windows):
            batch[row, : len(window)] = torch.from_numpy(window)
        return batch


# ---- training ----


def _train(
    model: torch.nn.Module,
    windows: _Windows,
    loaded: LoadedModel,
    steps: int,
    rows: int,
    learning_rate: float,
    device: torch.device,
    on_step: Callable[[int, int, float], None] | None,
) -> list[float]:
    """`steps` AdamW steps (a short warmup, then the learning rate held); the losses."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=learning_rate, betas=(0.9, 0.95), weight_decay=0.0, fused=True
    )  # as training (build.py)
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * min(1.0, (step + 1) / WARMUP_STEPS)
        batch = windows.batch(rows).to(device)
        inputs = batch[:, :-1].clamp(min=0)
        logits = model(input_ids=loaded.token_map.to_model(inputs), use_cache=False).logits
        logits = loaded.token_map.music_logits(logits)
        loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                             ignore_index=-100)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, steps, losses[-1])
    return losses


# ---- the held-back bars ----


@torch.no_grad()
def held_back_bits(loaded: LoadedModel, ids: Sequence[int], first: int) -> float:
    """Bits per note of the tokens ids[first:] of a piece, each predicted from the tokens
    before it: the header and the latest bars that fit the model's context with them."""
    ids = np.asarray(ids, dtype=np.int64)
    window, offset = _window_ending(ids, loaded.context)
    scored_from = first - offset  # index in `window` of the first scored token
    if not 1 <= scored_from < len(window):
        raise TrainError(f"the held-back tokens from {first} on do not fit one window")
    model = loaded.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch = torch.from_numpy(window)[None].to(device)
    logits = model(input_ids=loaded.token_map.to_model(batch[:, :-1]), use_cache=False).logits
    logits = loaded.token_map.music_logits(logits).float()[0]
    targets = batch[0, 1:]
    nll = cross_entropy(logits, targets, reduction="none")[scored_from - 1 :]
    notes = torch.tensor(VOCAB.is_note, device=device)[targets[scored_from - 1 :]].sum()
    model.train(was_training)
    return float(nll.sum()) / math.log(2) / max(int(notes), 1)


def _window_ending(ids: np.ndarray, context: int) -> tuple[np.ndarray, int]:
    """The piece's end as one window of at most `context` tokens: (window, how many more
    tokens the window has than the piece before its kept end). A window that starts at a
    later bar restates the header; `offset` maps piece indices to window indices."""
    if len(ids) <= context:
        return ids, 0
    for start in np.flatnonzero(ids == _BAR)[1:]:
        window = piece_from_bar(ids, int(start), keep_tracks=True)
        if len(window) <= context:
            return window, len(ids) - len(window)
    return ids[-context:], len(ids) - context
