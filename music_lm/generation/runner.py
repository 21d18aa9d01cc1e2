"""Continue a seed phrase: grammar-constrained sampling from one or more models.

    seed (MIDI or token text, or a header)  ->  ids  ->  models (each with its KV cache)
        ->  logits  ->  mask of the allowed ids (grammar x constraints)  ->  sample  ->  ids

`generate()` is what the CLI (`music-lm generate`, `music-lm continue`) and the page call.
Every row of a batch keeps its own `ContinuationState`; the masks are built from its
allowed id ranges, so every output is valid token text that keeps the constraints, and
sampling never falls back to an unconstrained choice: when nothing allowed is left after
top-k / top-p / min-p (or the model gives it no probability), it draws among the allowed
ids uniformly.

This module checks the request and runs the retry loop; `seeds` prepares the seed,
`models` steps the models, `sampling` draws the tokens and `outputs` keeps the records.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from music_lm.generation.constraints import Constraints
from music_lm.generation.models import _Runner, load_runners
from music_lm.generation.outputs import (
    Generation,
    Variant,
    model_records,
    post_check,
    settings_record,
)
from music_lm.generation.sampling import _sample_rows, _Watch
from music_lm.generation.seeds import SUSTAIN_SEEDS, Header, prepare_seed, seed_state
from music_lm.generation.settings import (
    GenerationError,
    GenerationStoppedError,
    Progress,
    Sampling,
)
from music_lm.generation.state import ContinuationState
from music_lm.limits import limits
from music_lm.tokens.rules import BAR
from music_lm.training.adapt import DEFAULT_METHOD, adapt_model, check_adapt_steps
from music_lm.training.config import TrainError

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
    adapt: int = 0,
    adapt_method: str = DEFAULT_METHOD,
    sustain: bool = SUSTAIN_SEEDS,
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
    adapt: before sampling, fine-tune a throw-away copy of each model on the seed and its
    transpositions for this many steps (0: off; `adapt_method` "full" or "lora"); the
    models passed in and the folders on disk are never changed. Progress reports the steps
    (phase "adapting"), stop is asked after each, and the settings record keeps what it did.
    sustain: a MIDI seed is read with the sustain pedal (CC64) applied, its notes held as
    the pedal holds them (the default: the output has no pedal); False keeps its note-offs.
    """
    started = time.perf_counter()
    constraints = constraints or Constraints()
    sampling = sampling or Sampling()
    names, weights = _checked_request(models, mix, mix_weights, variants, retries, constraints)
    if random_seed is None:
        random_seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    device = _device_of(device, loaded, len(names))
    ids, seed_name, constraints = prepare_seed(seed, header, seed_bars, style, constraints,
                                                  sustain)  # fmt: skip
    state = seed_state(ids, seed_name, constraints)
    budget = _budget(max_new_tokens, constraints, state)
    _check_adapt(adapt, ids)
    runners = load_runners(names, loaded, device, attention)
    time_limit_s = _time_limit(time_limit_s)
    adaptation = _adapt_runners(runners, ids, adapt, adapt_method, random_seed,
                                (constraints.bars, budget), progress, stop)  # fmt: skip

    generator = torch.Generator().manual_seed(random_seed)
    sampling_started = time.perf_counter()  # tokens/s: the sampling alone, not the loading
    watch = _Watch(progress, stop, time_limit_s, constraints.bars, budget)

    def draw(rows: int, bump: float) -> list[tuple[list[int], float, np.ndarray | None]]:
        return _sample_rows(runners, state, ids, rows, budget, constraints, sampling,
                            weights, mix, generator, bump, watch)  # fmt: skip

    results = _draw_variants(draw, variants, retries, ids, state)
    elapsed = time.perf_counter() - started
    sampling_seconds = time.perf_counter() - sampling_started
    settings = settings_record(
        seed_name=seed_name,
        seed_bars=seed_bars,
        seed_ids=ids,
        constraints=constraints,
        sampling=sampling,
        mix=mix,
        weights=weights,
        random_seed=random_seed,
        variants=variants,
        budget=budget,
        retries=retries,
        device=device,
        adaptation=adaptation,
    )
    return Generation(
        variants=results,
        settings=settings,
        seconds=elapsed,
        tokens_per_s=watch.new_tokens / sampling_seconds if sampling_seconds > 0 else 0.0,
        models=model_records(names, [runner.loaded for runner in runners]),
    )


# ---- request checks ----


def _checked_request(
    models: Sequence[str | Path] | str | Path,
    mix: str | None,
    mix_weights: Sequence[float] | None,
    variants: int,
    retries: int,
    constraints: Constraints,
) -> tuple[list[str | Path], list[float]]:
    """(model names, mix weights) of a request; GenerationError says what does not fit."""
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
    return names, weights


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


def _device_of(
    device: str | torch.device | None, loaded: Sequence | None, count: int
) -> torch.device:
    """Where the models run: on the device of models passed in, else on `device`, else on
    CUDA when there is one."""
    if loaded is not None:
        if len(loaded) != count:
            raise GenerationError(f"{len(loaded)} loaded models for {count} model names")
        # Models passed in run where they are: the inputs go to their device.
        device = next(loaded[0].model.parameters()).device
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _budget(max_new_tokens: int | None, constraints: Constraints, state: ContinuationState) -> int:
    """The most new tokens of a variant (default: 256 per new bar), if the new bars fit."""
    budget = max_new_tokens if max_new_tokens is not None else 256 * constraints.bars
    if budget < state.needed():
        raise GenerationError(
            f"--max-new-tokens {budget} cannot hold {constraints.bars} new bars: "
            f"they need at least {state.needed()} tokens"
        )
    return budget


def _time_limit(time_limit_s: float | None) -> float:
    """The sampling's time limit: `time_limit_s`, else the `generation_s` limit."""
    if time_limit_s is None:
        time_limit_s = limits().generation_s
    if time_limit_s <= 0:
        raise GenerationError(f"the time limit must be positive, got {time_limit_s} s")
    return time_limit_s


# ---- adaptation to the seed ----


def _check_adapt(steps: int, ids: Sequence[int]) -> None:
    """GenerationError naming --adapt when it cannot be done on this seed."""
    try:
        check_adapt_steps(steps)
    except TrainError as err:
        raise GenerationError(str(err)) from None
    if steps and BAR not in ids:
        raise GenerationError("--adapt learns from the seed's bars: this seed has none")


def _adapt_runners(
    runners: list[_Runner],
    ids: list[int],
    steps: int,
    method: str,
    random_seed: int,
    sizes: tuple[int, int],
    progress: Callable[[Progress], None] | None,
    stop: Callable[[], bool] | None,
) -> list[dict] | None:
    """Each runner's model swapped for a copy adapted to the seed (`adapt_model`); the
    records of the adaptations, or None without adaptation."""
    if not steps:
        return None
    bars, budget = sizes
    total = steps * len(runners)
    started = time.perf_counter()
    records = []
    for index, runner in enumerate(runners):

        def on_step(step: int, _steps: int, _loss: float, done: int = index * steps) -> None:
            if progress is not None:
                progress(Progress(0, budget, 0, bars, time.perf_counter() - started, 0,
                                  phase="adapting", adapt_step=done + step,
                                  adapt_steps=total))  # fmt: skip
            if stop is not None and stop():
                raise GenerationStoppedError(
                    f"stopped after {done + step} of {total} adaptation steps"
                )

        try:
            adapted, record = adapt_model(runner.loaded, ids, steps, method=method,
                                          random_seed=random_seed, on_step=on_step)  # fmt: skip
        except TrainError as err:
            raise GenerationError(str(err)) from None
        runners[index] = _Runner(adapted, runner.device, attention=runner.attention)
        records.append(record.to_json())
    return records


# ---- the retry loop ----


def _draw_variants(
    draw: Callable[[int, float], list[tuple[list[int], float, np.ndarray | None]]],
    variants: int,
    retries: int,
    ids: list[int],
    state: ContinuationState,
) -> list[Variant]:
    """`variants` continuations of the seed `ids`, drawn in batches by `draw(rows, bump)`:
    one that fails the post-check is drawn again, a little hotter, up to `retries` times,
    and then kept as it is (its `post_check` says why)."""
    results: list[Variant | None] = [None] * variants
    pending = list(range(variants))
    tries = [0] * variants
    bump = 1.0
    while pending:
        rows = draw(len(pending), bump)
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
                hold_past_end=state.constraints.hold_past_end,
            )
        pending = again
        bump *= 1.1  # a retry samples a little hotter
    return [v for v in results if v is not None]
