"""Continue a seed phrase: grammar-constrained sampling from one or more models.

    seed (MIDI or token text, or a header)  ->  ids  ->  models (each with its KV cache)
        ->  logits  ->  mask of the allowed ids (grammar x constraints)  ->  sample  ->  ids

`generate()` is what the CLI (`music-lm generate`, `music-lm continue`) and the page call.
Every row of a batch keeps its own `ContinuationState`; the masks are built from its
allowed id ranges, so every output is valid token text that keeps the constraints, and
sampling never falls back to an unconstrained choice: when nothing allowed is left after
top-k / top-p / min-p (or the model gives it no probability), it draws among the allowed
ids uniformly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from music_lm.errors import MusicLmError
from music_lm.generation.constraints import (
    SEED_KEY,
    ConstraintError,
    Constraints,
    ContinuationState,
    key_signature_tonic,
)
from music_lm.tokens.grammar import (
    BAR,
    END,
    PIECE,
    GrammarError,
    GrammarState,
    located,
    words_to_ids,
)
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB, nearest_tempo

R = VOCAB.ranges
_FAM = VOCAB.family_of
_VAL = VOCAB.values
V = len(VOCAB)


class GenerationError(MusicLmError, ValueError):
    """Settings or a seed that generation cannot use."""


class GenerationStoppedError(GenerationError):
    """The caller asked generation to stop (the page's Stop button)."""


@dataclass(frozen=True)
class Progress:
    """Where a generation is, reported after every sampling step."""

    tokens: int  # steps taken in this batch of variants
    budget: int  # the most steps a batch can take
    bars_done: int  # new bars finished by the slowest variant of the batch
    bars: int  # new bars asked for
    seconds: float  # since sampling started (retries included)
    new_tokens: int  # new tokens made so far, over every variant

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


# ---- settings ----


@dataclass(frozen=True)
class Sampling:
    """How each token is drawn. `temperature` is (first new bar, last new bar): a ramp."""

    temperature: tuple[float, float] = (1.0, 1.0)
    top_k: int = 0  # 0: off
    top_p: float = 0.95  # 1: off (0.95 for the API, the CLI and the page alike)
    min_p: float = 0.0  # 0: off

    def __post_init__(self) -> None:
        for value in self.temperature:
            if not 0.05 <= value <= 5.0:
                raise GenerationError(f"--temperature must be in 0.05..5, got {value}")
        if self.top_k < 0:
            raise GenerationError(f"--top-k must be 0 (off) or more, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise GenerationError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p < 1.0:
            raise GenerationError(f"--min-p must be in [0, 1), got {self.min_p}")

    def temperature_at(self, bar: int, bars: int) -> float:
        """The temperature in new bar `bar` (0-based) of `bars`."""
        first, last = self.temperature
        if bars <= 1:
            return first
        return first + (last - first) * min(bar, bars - 1) / (bars - 1)


def parse_temperature(text: str) -> tuple[float, float]:
    """'0.9' -> (0.9, 0.9); '0.8:1.2' -> a ramp from the first new bar to the last."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise GenerationError(
            f"--temperature takes T or FIRST:LAST, such as 0.9 or 0.8:1.2; got {text!r}"
        ) from None
    if len(parts) not in (1, 2):
        raise GenerationError(f"--temperature takes T or FIRST:LAST; got {text!r}")
    return (parts[0], parts[-1])


@dataclass(frozen=True)
class Header:
    """The start of a piece made from nothing: what a seed's first line would say."""

    style: str = "none"
    tempo_bpm: float = 120.0
    time_signature: tuple[int, int] = (4, 4)
    key: tuple[int, str] | None = None  # (sharps, mode) of the key signature, or none
    programs: tuple[int, ...] = (0,)  # GM programs, -1 for drums

    def __post_init__(self) -> None:
        try:
            self.words()
        except KeyError:  # a style or meter the vocabulary has no token for
            raise GenerationError(self._problem()) from None

    def _problem(self) -> str:
        for family, value, option in (("style", self.style, "--style"),
                                      ("ts", tuple(self.time_signature), "--ts")):  # fmt: skip
            try:
                VOCAB.word_of(family, value)
            except KeyError:
                shown = value if family == "style" else "/".join(map(str, value))
                return f"{option} {shown} is not in the vocabulary"
        return f"this header cannot be written: {self}"

    def words(self) -> list[str]:
        words = ["piece", VOCAB.word_of("style", self.style)]
        words.append(VOCAB.word_of("tempo", nearest_tempo(self.tempo_bpm)))
        words.append(VOCAB.word_of("ts", tuple(self.time_signature)))
        if self.key is not None:
            words.append(VOCAB.word_of("key", tuple(self.key)))
        words += [VOCAB.word_of("inst", p) for p in self.programs]
        return words


def key_signature_of(tonic: int, scale: str) -> tuple[int, str] | None:
    """The key signature (sharps, mode) that a key constraint implies: its major or minor
    key; a mode borrows the signature of the major scale it is a mode of."""
    offsets = {"major": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7,
               "locrian": 11, "pentatonic-major": 0}  # fmt: skip
    if scale in ("minor", "harmonic-minor", "melodic-minor", "pentatonic-minor", "blues"):
        candidates = [(s, "minor") for s in range(-7, 8)]
    elif scale in offsets:
        tonic = (tonic - offsets[scale]) % 12
        candidates = [(s, "major") for s in range(-7, 8)]
    else:
        return None
    fitting = [c for c in candidates if key_signature_tonic(c)[0] == tonic]
    return min(fitting, key=lambda c: abs(c[0])) if fitting else None


# ---- seeds ----


def seed_from_text(text: str, name: str = "<seed>") -> list[int]:
    """Ids of a seed's token text: a piece, or the start of one (a header and whole bars).
    A final `end` is dropped: the continuation goes on from there."""
    try:
        ids = words_to_ids(text.split())
    except GrammarError as err:
        raise GenerationError(f"{name}: {err}") from None
    state = GrammarState()
    for index, token in enumerate(ids):
        try:
            state.advance(token)
        except GrammarError as err:
            raise GenerationError(f"{name}: {located(err, index, token)}") from None
    if ids and ids[-1] == END:
        ids = ids[:-1]
    if not ids:
        raise GenerationError(f"{name}: the seed is empty")
    return ids


def seed_from_file(path: str | Path) -> tuple[list[int], str]:
    """(ids, stem) of a seed file: MIDI (.mid/.midi) or token text (anything else)."""
    path = Path(path)
    if not path.is_file():
        raise GenerationError(f"{path}: no such file")
    if path.suffix.lower() in (".mid", ".midi", ".smf", ".kar"):
        from music_lm.api import midi_to_text

        try:
            text = midi_to_text(path)
        except (ValueError, OSError) as err:
            message = str(err)
            raise GenerationError(
                message if str(path) in message else f"{path}: {message}"
            ) from None
    else:
        from music_lm.limits import check_size

        check_size(path.stat().st_size, str(path), GenerationError)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise GenerationError(f"{path}: neither MIDI nor UTF-8 token text") from None
    return seed_from_text(text, str(path)), path.stem


def cut_seed(ids: Sequence[int], bars: int | None) -> list[int]:
    """The header and the first `bars` bars (all of them when None)."""
    ids = list(ids)
    if bars is None:
        return ids
    if bars < 0:
        raise GenerationError(f"--seed-bars must be 0 or more, got {bars}")
    starts = [i for i, t in enumerate(ids) if t == BAR]
    return ids[: starts[bars]] if bars < len(starts) else ids


def with_style(ids: Sequence[int], style: str | None) -> list[int]:
    ids = list(ids)
    if style is None:
        return ids
    try:
        ids[1] = VOCAB.ids[f"style:{style}"]
    except KeyError:
        styles = [w[6:] for w in VOCAB.tokens[R["style"].start : R["style"].stop]]
        raise GenerationError(f"unknown style {style!r} (styles: {', '.join(styles)})") from None
    return ids


def with_instruments(ids: Sequence[int], constraints: Constraints) -> list[int]:
    """A seed with no notes (a MIDI file of tempo and meter only) encodes to a header that
    names no instrument. It is continued from that header, as a piece started from settings:
    its style, tempo, meter and key stay, and it gets the instruments a header made from
    nothing would have (a piano, or the first allowed by --instruments)."""
    ids = list(ids)
    if BAR in ids or any(VOCAB.tokens[t].startswith("inst:") for t in ids):
        return ids
    return ids + words_to_ids([VOCAB.word_of("inst", p) for p in _default_programs(constraints)])


# ---- sampling ----


def allowed_mask(ranges_per_row: Sequence[Sequence[tuple[int, int]]], out: torch.Tensor) -> None:
    """Fill the bool tensor `out` [rows, V] with the allowed ids of each row."""
    out.zero_()
    for row, ranges in enumerate(ranges_per_row):
        target = out[row]
        for lo, hi in ranges:
            target[lo:hi] = True


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
    scores = logits.float() / temperature[:, None]
    scores = scores.masked_fill(~allowed, float("-inf"))
    if top_k > 0:
        k = min(top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = before >= top_p  # keep the smallest head that reaches top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
    if min_p > 0.0:
        peak = probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < min_p * peak, 0.0)
    probs = torch.nan_to_num(probs, nan=0.0) * allowed
    total = probs.sum(dim=-1, keepdim=True)
    dead = ~(total > 0)
    if bool(dead.any()):
        uniform = allowed.float()
        probs = torch.where(dead, uniform, probs)
        total = probs.sum(dim=-1, keepdim=True)
    return probs / total


# ---- models, each with its KV cache ----


class _Runner:
    """One model stepping through a batch with its own KV cache."""

    def __init__(self, loaded, device: torch.device, attention: bool = False) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.device = device
        self.context = loaded.context
        self.attention = attention
        self.past = None
        self.length = 0  # positions in the cache
        self.mask: torch.Tensor | None = None  # [rows, length] attention mask
        self.positions: torch.Tensor | None = None  # [rows] next position id
        self.pads: list[int] = []  # per row: padding before its window in the cache
        self.last_attentions = None

    @torch.inference_mode()
    def prefill(self, windows: list[list[int]]) -> torch.Tensor:
        """Start the cache on these windows (left-padded); the next-token logits."""
        width = max(map(len, windows))
        rows = len(windows)
        ids = torch.full((rows, width), PIECE, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for row, window in enumerate(windows):
            ids[row, width - len(window) :] = torch.tensor(window)
            mask[row, width - len(window) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        self.mask = mask.to(self.device)
        self.past = None
        self.pads = [width - len(w) for w in windows]
        logits = self._forward(ids.to(self.device), positions.to(self.device))
        self.positions = positions[:, -1].to(self.device) + 1
        self.length = width
        return logits

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        logits = self._forward(tokens[:, None].to(self.device), self.positions[:, None])
        self.positions = self.positions + 1
        self.length += 1
        return logits

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
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
    from music_lm.corpus.dataset import piece_from_bar

    ids = list(ids)
    if len(ids) <= limit:
        return ids, 0
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


# ---- the result ----


@dataclass
class Variant:
    """One continuation: the whole piece (seed + new bars) and how it was made."""

    index: int
    ids: list[int]
    seed_length: int  # tokens of the seed (the header and its bars)
    continuation_tick: int  # grid tick where the new bars start
    continuation_bar: int  # 1-based bar number of the first new bar
    retries: int = 0
    seconds: float = 0.0
    post_check: str = "ok"  # or why the last retry still failed (then kept)
    attention: np.ndarray | None = None  # [layers, heads, new tokens, tokens] when captured

    @property
    def text(self) -> str:
        from music_lm.tokens.codec import decode, encode

        return encode(decode(" ".join(VOCAB.tokens[t] for t in self.ids)))

    @property
    def new_tokens(self) -> int:
        return len(self.ids) - self.seed_length


@dataclass
class Generation:
    variants: list[Variant]
    settings: dict
    seconds: float
    tokens_per_s: float
    models: list[dict] = field(default_factory=list)


def model_fingerprint(path: str | Path) -> str:
    """sha256 of a model folder's weights (the first 16 hex digits)."""
    files = sorted(Path(path).glob("*.safetensors"))
    # Kept per file size and time: a `continue` over a folder records it for every file,
    # and a run that saves again gets a new one.
    return _fingerprint(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=16)
def _fingerprint(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _size, _mtime in files:
        with open(name, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


# ---- post-checks ----


def _bars_of(ids: Sequence[int]) -> list[tuple[int, ...]]:
    bars: list[list[int]] = []
    for token in ids:
        if token == BAR:
            bars.append([])
        elif bars and token != END:
            bars[-1].append(token)
    return [tuple(b) for b in bars]


def post_check(ids: Sequence[int], seed_length: int) -> str:
    """'ok', or why a continuation is re-drawn: it is silent (no new note), or it copies
    the seed bar for bar (every new bar is one of the seed's bars)."""
    new = ids[seed_length:]
    if not any(VOCAB.is_note[t] for t in new):
        return "silent"
    seed_bars = set(_bars_of(ids[:seed_length]))
    new_bars = _bars_of(new)
    if seed_bars and new_bars and all(b in seed_bars for b in new_bars):
        return "copies the seed"
    return "ok"


# ---- generation ----


DECODE_THREADS_ENV = "MUSIC_LM_DECODE_THREADS"


def decode_threads() -> int:
    """Torch's CPU threads while decoding: $MUSIC_LM_DECODE_THREADS, else 1.

    One thread, deliberately: the shipped model steps one token at a time through small
    matrices, where a second OpenMP thread costs more in handing work over than it saves, and
    when another process wants the cores it makes decoding several times slower
    (bench/threads.py, two cores: on a worker thread, as the page runs it, 1 thread drew 1.7x
    the tokens/s of OpenMP's default 2 on a quiet machine and 2.1x beside a busy neighbour;
    on the main thread, as the CLI runs it, 1.0x and 3.2x). A much larger model may want
    more."""
    value = os.environ.get(DECODE_THREADS_ENV, "1")
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise GenerationError(f"${DECODE_THREADS_ENV} must be a whole number >= 1, got {value!r}")
    return threads


def _with_decode_threads(function):
    """Run `function` with decode_threads() torch threads, then give back the count it had."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        threads, before = decode_threads(), torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


@_with_decode_threads
def generate(
    seed: str | Path | Sequence[int] | None = None,
    *,
    constraints: Constraints | None = None,
    sampling: Sampling | None = None,
    models: Sequence[str | Path] | str | Path = ("default",),
    mix: str | None = None,
    mix_weights: Sequence[float] | None = None,
    seed_bars: int | None = None,
    style: str | None = None,
    header: Header | None = None,
    variants: int = 1,
    random_seed: int | None = None,
    max_new_tokens: int | None = None,
    retries: int = 3,
    attention: bool = False,
    device: str | torch.device | None = None,
    loaded: Sequence | None = None,
    progress: Callable[[Progress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    time_limit_s: float | None = None,
) -> Generation:
    """Continue `seed` (a MIDI or token-text path, or ids; None: start from `header`) by
    exactly `constraints.bars` bars, `variants` times.

    models: one model (a run folder, a model folder or "default") or several, mixed by
    `mix`: "weights" (the next-token distributions averaged with `mix_weights`) or
    "schedule" (the new bars split between the models in order). `loaded` passes models
    already loaded (`load_model`), in the same order, to skip loading them again.
    max_new_tokens: the budget of new tokens per variant (default: 256 per new bar);
    every variant ends within it. attention: keep the attention weights of the new tokens
    of one variant (the first of each batch: variant 1 unless a retry redrew only others).
    progress: called after every step with a `Progress`. stop: asked after every step;
    when it answers True, GenerationStoppedError is raised. time_limit_s: GenerationError when
    the sampling takes longer (default: the `generation_s` limit of music_lm.limits).
    """
    from music_lm.model.folder import load_model

    started = time.perf_counter()
    constraints = constraints or Constraints()
    sampling = sampling or Sampling()
    if variants < 1 or variants > 64:
        raise GenerationError(f"--variants must be in 1..64, got {variants}")
    if retries < 0:
        raise GenerationError(f"--retries must be 0 or more, got {retries}")
    names = [models] if isinstance(models, (str, Path)) else list(models)
    if not names:
        raise GenerationError("no model given")
    if len(names) > 1 and mix not in ("weights", "schedule"):
        raise GenerationError("several models need --mix weights or --mix schedule")
    weights = _mix_weights(mix, mix_weights, len(names))
    if mix == "schedule" and constraints.bars < len(names):
        raise GenerationError(
            f"--mix schedule gives each model at least one bar: {len(names)} models need "
            f"--bars {len(names)} or more, got {constraints.bars}"
        )
    if random_seed is None:
        random_seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    if loaded is not None:
        if len(loaded) != len(names):
            raise GenerationError(f"{len(loaded)} loaded models for {len(names)} model names")
        # Models passed in run where they are: the inputs go to their device.
        device = next(loaded[0].model.parameters()).device
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    # the seed: ids of a header and whole bars
    seed_name = None
    if seed is None:
        head = header or Header(
            key=_implied_key(constraints), programs=_default_programs(constraints)
        )
        ids = words_to_ids(head.words())
    elif isinstance(seed, (str, Path)):
        ids, seed_name = seed_from_file(seed)
    else:
        ids = seed_from_text(" ".join(VOCAB.tokens[t] for t in seed))
    ids = with_instruments(with_style(cut_seed(ids, seed_bars), style), constraints)
    constraints = constraints.with_seed_key(_header_key(ids))
    try:
        state = ContinuationState(ids, constraints)
    except (ConstraintError, GrammarError) as err:
        raise GenerationError(f"{seed_name or 'seed'}: {err}") from None
    budget = max_new_tokens if max_new_tokens is not None else 256 * constraints.bars
    if budget < state.needed():
        raise GenerationError(
            f"--max-new-tokens {budget} cannot hold {constraints.bars} new bars: "
            f"they need at least {state.needed()} tokens"
        )

    runners = []
    for index, name in enumerate(names):
        model = loaded[index] if loaded is not None else load_model(name, device=device)
        runners.append(_Runner(model, device, attention=attention and index == 0))
    if attention:
        _eager_attention(runners[0].model)

    if time_limit_s is None:
        from music_lm.limits import limits

        time_limit_s = limits().generation_s
    if time_limit_s <= 0:
        raise GenerationError(f"the time limit must be positive, got {time_limit_s} s")
    generator = torch.Generator().manual_seed(random_seed)
    results: list[Variant | None] = [None] * variants
    pending = list(range(variants))
    tries = [0] * variants
    bump = 1.0
    sampling_started = time.perf_counter()  # tokens/s: the sampling alone, not the loading
    watch = _Watch(progress, stop, time_limit_s, constraints.bars, budget)
    while pending:
        rows = _sample_rows(runners, state, ids, len(pending), budget, constraints, sampling,
                            weights, mix, generator, bump, watch)  # fmt: skip
        again = []
        for slot, (row_ids, seconds, attn) in zip(pending, rows, strict=True):
            verdict = post_check(row_ids, len(ids))
            if verdict != "ok" and tries[slot] < retries:
                tries[slot] += 1
                again.append(slot)
                continue
            results[slot] = Variant(
                index=slot + 1,
                ids=row_ids,
                seed_length=len(ids),
                continuation_tick=state.first_new_bar_tick,
                continuation_bar=ids.count(BAR) + 1,
                retries=tries[slot],
                seconds=seconds,
                post_check=verdict,
                attention=attn,
            )
        pending = again
        bump *= 1.1  # a retry samples a little hotter
    elapsed = time.perf_counter() - started
    sampling_seconds = time.perf_counter() - sampling_started
    settings = {
        "seed": seed_name,
        "seed_bars": seed_bars,
        "seed_tokens": len(ids),
        "style": VOCAB.tokens[ids[1]][6:],
        "constraints": constraints.to_json(),
        "sampling": asdict(sampling),
        "mix": mix,
        "mix_weights": weights if mix == "weights" else None,
        "random_seed": random_seed,
        "variants": variants,
        "max_new_tokens": budget,
        "retries": retries,
        "device": str(device),
    }
    model_info = [
        {"model": str(name), "path": runner.loaded.path,
         "sha256": model_fingerprint(runner.loaded.path),
         "step": runner.loaded.meta.get("step")}
        for name, runner in zip(names, runners, strict=True)
    ]  # fmt: skip
    return Generation(
        variants=[v for v in results if v is not None],
        settings=settings,
        seconds=elapsed,
        tokens_per_s=watch.new_tokens / sampling_seconds if sampling_seconds > 0 else 0.0,
        models=model_info,
    )


def _header_key(ids: Sequence[int]) -> tuple[int, str] | None:
    for token in ids:
        if token == BAR:
            break
        if _FAM[token] == "key":
            return _VAL[token]
    return None


def _default_programs(constraints: Constraints) -> tuple[int, ...]:
    """A piano, or the first allowed instrument when a piano is not allowed."""
    if constraints.instruments is None or 0 in constraints.instruments:
        return (0,)
    return (min(constraints.instruments, key=lambda p: (p < 0, p)),)


def _implied_key(constraints: Constraints) -> tuple[int, str] | None:
    """The key signature of a header made from nothing: the one --key implies; none for
    --scale alone (its tonic is then C, as with a seed without a key)."""
    if constraints.scale is None or constraints.scale[0] == SEED_KEY:
        return None
    return key_signature_of(*constraints.scale)


def _mix_weights(mix: str | None, weights: Sequence[float] | None, count: int) -> list[float]:
    if mix not in (None, "weights", "schedule"):
        raise GenerationError(f"--mix must be weights or schedule, got {mix!r}")
    if weights is not None and mix != "weights":
        raise GenerationError("--mix-weights goes with --mix weights")
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise GenerationError(f"--mix-weights gives {len(weights)} weights for {count} models")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise GenerationError(
            f"--mix-weights must be non-negative with a positive sum, got {weights}"
        )
    total = sum(weights)
    return [w / total for w in weights]


def _eager_attention(model) -> None:
    """SDPA gives no attention weights; the eager kernel does."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:  # older transformers
        model.config._attn_implementation = "eager"


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
    """Sample `rows` continuations of the seed as one batch."""
    started = time.perf_counter()
    states = [seed_state.copy() for _ in range(rows)]
    sequences = [list(seed_ids) for _ in range(rows)]
    finished_at = [0.0] * rows
    # Room to generate before the next re-window: each one re-reads a whole window.
    reserve = max(1, min(r.context for r in runners) // 4)
    limit = min(r.context for r in runners) - reserve
    windows = [window_of(seq, limit) for seq in sequences]
    logits = [r.prefill([w for w, _ in windows]) for r in runners]
    keys = _key_offsets(windows, sequences)
    # The mask is filled on the CPU (from id ranges) and sent to the model's device whole.
    device = runners[0].device
    mask = torch.zeros((rows, V), dtype=torch.bool, pin_memory=device.type == "cuda")
    temperature = torch.ones(rows)
    captured: list[list[tuple[torch.Tensor, int]]] = [[] for _ in range(rows)]
    done = [False] * rows
    for step in range(budget):
        ranges = []
        for row, state in enumerate(states):
            if done[row]:
                ranges.append([(END, END + 1)])
                continue
            allowed = state.allowed_ranges(budget - step)
            if not allowed:  # a bug, never the user's doing: say where
                text = " ".join(VOCAB.tokens[t] for t in sequences[row][-12:])
                raise GenerationError(f"no token allowed after ... {text}")
            ranges.append(allowed)
            bar = max(state.bars_started - 1, 0)
            temperature[row] = sampling.temperature_at(bar, constraints.bars) * bump
        allowed_mask(ranges, mask)
        heat = temperature.to(device)
        scores, heated = _combine(logits, states, weights, mix, constraints.bars, heat)
        probs = filtered_probabilities(
            scores, mask.to(device, non_blocking=True), torch.ones_like(heat) if heated else heat,
            sampling.top_k, sampling.top_p, sampling.min_p,
        )  # fmt: skip
        # Drawn on the CPU with the run's generator (the states need the ids there anyway).
        # The copy of the pinned mask above is done by now: .cpu() waits for the device.
        tokens = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0]
        made = 0
        for row, token in enumerate(tokens.tolist()):
            if done[row]:
                continue
            made += 1
            states[row].advance(token)
            sequences[row].append(token)
            if runners[0].attention and row == 0:  # one variant's: the array grows fast
                captured[row].append(_attention_row(runners[0], row, keys[row]))
            if states[row].done:
                done[row] = True
                finished_at[row] = time.perf_counter() - started
        watch.step(step + 1, made, states)
        if all(done):
            break
        if any(r.full for r in runners):
            windows = [window_of(seq, limit) for seq in sequences]
            logits = [r.prefill([w for w, _ in windows]) for r in runners]
            keys = _key_offsets(windows, sequences)
        else:
            logits = [r.step(tokens) for r in runners]
    if not all(done):  # cannot happen: the budget check keeps a way to the end open
        raise GenerationError("a variant did not end within --max-new-tokens")
    out = []
    for row in range(rows):
        attn = None
        if runners[0].attention and row == 0:
            attn = _stack_attention(captured[row], len(sequences[row]))
        out.append((sequences[row], finished_at[row], attn))
    return out


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


# ---- writing ----


def variant_files(generation: Generation, variant: Variant, stem: str) -> dict[str, bytes]:
    """The three files of a variant: MIDI (with a marker where the continuation starts and
    the settings as a text event), token text and a JSON record."""
    from music_lm.midi.io import write_midi
    from music_lm.tokens.codec import decode

    text = variant.text
    score = decode(text)
    record = {
        "variant": variant.index,
        "file": f"{stem}-{variant.index}",
        **generation.settings,
        "models": generation.models,
        "continuation_bar": variant.continuation_bar,
        "continuation_beat": variant.continuation_tick / GRID_PER_QUARTER,
        "new_tokens": variant.new_tokens,
        "retries": variant.retries,
        "post_check": variant.post_check,
        "seconds": round(variant.seconds, 3),
        "notes": score.note_count,
    }
    hashes = "+".join(m["sha256"] for m in generation.models)
    summary = (f"music_lm generate: model {hashes}, random seed "
               f"{generation.settings['random_seed']}, variant {variant.index}")  # fmt: skip
    midi = write_midi(
        score,
        markers=[(variant.continuation_tick, "music_lm continuation")],
        texts=[summary],
    )
    return {
        ".mid": midi,
        ".txt": text.encode("utf-8"),
        ".json": (json.dumps(record, indent=2) + "\n").encode("utf-8"),
    }


# ---- the same masks for transformers' generate() ----


def grammar_logits_processor(
    seed_ids: Sequence[int], constraints: Constraints | None = None, max_new_tokens: int = 2048
):
    """A transformers LogitsProcessor that applies the masks of `ContinuationState` inside
    `model.generate(input_ids=seed, logits_processor=[...], eos_token_id=END id, ...)`, for
    a model of our own vocabulary. Its answer depends only on the ids it is given: a row
    that extends the ids of the last call is advanced, any other is parsed again."""
    from transformers import LogitsProcessor

    class GrammarLogitsProcessor(LogitsProcessor):
        def __init__(self) -> None:
            self.seed = list(seed_ids)
            self.start = ContinuationState(self.seed, constraints or Constraints())
            self.rows: dict[int, tuple[list[int], ContinuationState]] = {}

        def _state(self, row: int, new: list[int]) -> ContinuationState:
            seen, state = self.rows.get(row, ([], None))
            if state is None or new[: len(seen)] != seen:
                seen, state = [], self.start.copy()
            for token in new[len(seen) :]:
                if not state.done:
                    state.advance(token)
            self.rows[row] = (list(new), state)
            return state

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros(scores.shape, dtype=torch.bool)
            for row in range(input_ids.shape[0]):
                new = input_ids[row, len(self.seed) :].tolist()
                state = self._state(row, new)
                if state.done:
                    mask[row, END] = True
                    continue
                for lo, hi in state.allowed_ranges(max_new_tokens - len(new)):
                    mask[row, lo:hi] = True
            return scores.masked_fill(~mask.to(scores.device), float("-inf"))

    return GrammarLogitsProcessor()
