"""Pretraining and fine-tuning: `train()`, the loop from setup and resume to the last step.

    config = TrainConfig(data=("data/corpus",), output="runs/small", preset="small",
                         max_steps=5000)
    train(config)

One loop for both jobs: pretraining starts from a fresh GPT-2 of a preset size;
fine-tuning (`base=...`) starts from a model folder, the shipped default, or a text
GPT-2 whose tokenizer gets the music tokens added. Data is one or more built corpora;
a folder of MIDI files is built into a corpus inside the run folder on the way.

The loop runs under Hugging Face Accelerate, so the same code runs on a CPU, a GPU, or
several processes as one run (`torchrun --nproc_per_node N -m music_lm.cli train ...` or
`accelerate launch --multi_gpu --num_processes N -m music_lm.cli train ...`; on a machine
without GPUs, N CPU processes over gloo): each process trains on its slice of every
global batch (`data.ShardedWindows`), the gradients are averaged, validation is summed
over the processes, and the main process alone writes. Windows are packed: pieces
follow each other in a window, separated by their own `end`/`piece` tokens, so no
attention mask is needed and no compute goes to padding.

Run folder:

    runs/NAME/
      config.json model.safetensors tokenizer.json music_lm.json ...   best by validation
      checkpoint-500/  checkpoint-1000/ ...   every --save-every steps, all kept, each a
                                              model folder plus training_state.pt
      train_config.json   the settings (resume checks them)
      metrics.jsonl       one JSON object per logged step
      loss.png  tb/       curves, TensorBoard events

Every folder is written beside its place and renamed into it, so an interruption
(even `kill -9`) leaves only whole checkpoints; running the same command again
resumes from the last one and computes the same next-step loss as a run that was
never interrupted (the model, optimizer, schedule and every random state are saved).

The parts live beside this module: the settings (`config`), the data (`data`), the model,
optimizer and schedule (`build`), validation figures (`scoring`), checkpoints and resume
files (`checkpoints`), metrics.jsonl, TensorBoard and loss.png (`metrics`), and the state
of a run as it trains (`state`)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.nn.functional import cross_entropy

from music_lm.corpus.dataset import Corpus
from music_lm.model.folder import (
    ModelError,
    count_parameters,
    model_meta,
    music_vocab_size_of,
    read_meta,
    trained_on_fim,
)
from music_lm.training.build import (
    add_lora,
    build_model,
    make_optimizer,
    make_scheduler,
    native_bf16,
    plain_model,
    plain_model_config_holder,
)
from music_lm.training.checkpoints import (
    STATE_FILE,
    checkpoints,
    clean_staging,
    file_sha256,
    load_state,
    load_weights,
    publish_best,
    resolve_config,
    rng_state,
    save_failed,
    set_rng_state,
    write_checkpoint,
    write_json,
)
from music_lm.training.config import CONFIG_FILE, TrainConfig, TrainError, TrainResult
from music_lm.training.data import (
    ShardedWindows,
    has_split,
    prepare_data,
    train_tokens,
    training_sampler,
)
from music_lm.training.folders import corpus_folder
from music_lm.training.metrics import MetricsLog, flops_per_token, peak_flops, plot_losses
from music_lm.training.scoring import score_windows, split_windows
from music_lm.training.state import Run, RunState, Session

if TYPE_CHECKING:
    from accelerate import Accelerator


def train(
    config: TrainConfig,
    given: set[str] | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) the run in `config.output`.

    `given`: the settings the user set explicitly (the CLI passes its flags); on resume,
    only those that do not change the run may differ from the saved ones. `stop_after`
    stops after that many steps of this session, as an interruption would (tests)."""
    run = _set_up(config, given, log)
    state = _resume(run)
    if state.step >= run.max_steps:
        run.log(f"{run.folder}: already trained to step {state.step} of {run.max_steps}")
    session = _open_session(run, state)
    config = run.config
    while state.step < run.max_steps:
        _check_launcher(run)
        lr = run.scheduler.get_last_lr()[0]  # the rate this step uses
        grad_norm = _optimizer_step(run, session)
        _count_step(run, state, session)
        evaluate_now = state.step % config.eval_every == 0 or state.step == run.max_steps
        is_best = False
        if state.step % config.log_every == 0 or evaluate_now:
            is_best = _log_row(run, state, session, lr, grad_norm, evaluate_now)
        checkpoint = state.step % config.save_every == 0 or state.step == run.max_steps
        if checkpoint or is_best:
            _save(run, state, session, evaluate_now, checkpoint, is_best)
        if stop_after is not None and session.steps >= stop_after:
            break
    _close(run, session)
    return TrainResult(run.folder, state.step, state.best, session.last_row, state.resumed_from)


# ---- setting up ----


def _set_up(config: TrainConfig, given: set[str] | None, log: Callable[[str], None] | None) -> Run:
    """The run in `config.output` set up to train: settings, processes, the model, the run
    folder and its data, the optimizer."""
    # Accelerate loads only when a run starts, not with the training stage.
    from accelerate.utils import set_seed

    folder = Path(config.output)
    config = _settings(config, folder, given)
    cuda = torch.cuda.is_available()
    bf16 = config.precision == "bf16" or (config.precision == "auto" and native_bf16(cuda))
    accelerator = _accelerator(bf16)
    say = log or (lambda message: print(message, file=sys.stderr))
    log = say if accelerator.is_main_process else (lambda _message: None)

    # The model first: a bad size or base fails before anything is written.
    set_seed(config.seed)
    model, token_map, tokenizer, base_path = build_model(config, log)
    base_sha = file_sha256(Path(base_path) / "model.safetensors") if base_path else None
    corpora = _open_folder_and_data(config, folder, accelerator, log)

    context = min(config.context, int(model.config.n_positions))
    if config.lora_rank:
        model = add_lora(model, config.lora_rank, config.lora_alpha)
    tokens_per_step = config.batch_size * config.grad_accum * context * accelerator.num_processes
    max_steps = config.max_steps or max(
        1, math.ceil((config.epochs or 1.0) * train_tokens(corpora) / tokens_per_step)
    )
    windows = ShardedWindows(training_sampler(corpora, config, context),
                             accelerator.process_index, accelerator.num_processes)  # fmt: skip
    model.to(accelerator.device)
    model.train()
    optimizer = make_optimizer(model, config, accelerator.device)
    # The schedule is ours, stepped once per optimizer step (not prepared: Accelerate would
    # step it once per process).
    scheduler = make_scheduler(optimizer, config, max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    return Run(
        config=config, folder=folder, accelerator=accelerator, log=log, model=model,
        token_map=token_map, tokenizer=tokenizer, base_path=base_path, base_sha=base_sha,
        corpora=corpora, windows=windows, optimizer=optimizer, scheduler=scheduler,
        context=context, max_steps=max_steps, tokens_per_step=tokens_per_step, bf16=bf16,
        launcher=os.getppid() if accelerator.num_processes > 1 else None,
    )  # fmt: skip


def _settings(config: TrainConfig, folder: Path, given: set[str] | None) -> TrainConfig:
    """The settings to train with: on resume, the saved ones with the changes allowed."""
    given = set(given) if given is not None else {f.name for f in fields(TrainConfig)}
    config = resolve_config(config, folder, given)
    built = all((Path(d) / "manifest.json").is_file() for d in config.data)
    if launched_processes() > 1 and not built:
        raise TrainError("with several processes, --data must be built corpora: build a MIDI "
                         "folder first with `music-lm corpus build -s DIR -o CORPUS`")  # fmt: skip
    return config


def _open_folder_and_data(
    config: TrainConfig, folder: Path, accelerator: Accelerator, log: Callable[[str], None]
) -> list[Corpus]:
    """The run folder made (what an interrupted save left removed, the settings written) and
    the corpora, a MIDI folder built by the main process while the others wait."""
    main = accelerator.is_main_process
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        clean_staging(folder)
        write_json(folder / CONFIG_FILE, config.to_json())
    corpora = prepare_data(config.data, folder, log, config.sustain) if main else None
    accelerator.wait_for_everyone()
    if not main:
        # a MIDI folder's corpus is the one the main process built in the run folder
        corpora = [Corpus(corpus_folder(d, i, folder)) for i, d in enumerate(config.data)]
    if not has_split(corpora, "valid"):
        raise TrainError(
            f"{', '.join(config.data)}: no validation pieces (a folder of MIDI files needs at "
            "least 3 songs, one of which is held out; a corpus needs --valid > 0)"
        )
    return corpora


# ---- processes ----

# How many processes a launcher started, by launcher: torchrun and `accelerate launch
# --multi_gpu` set WORLD_SIZE; mpirun (Intel MPI, MVAPICH, Open MPI) the others. Accelerate
# reads the same variables.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """The number of processes the launcher started for this run (1: none, or on its own)."""
    for name in WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise TrainError(f"${name}={value!r}: the number of processes must be >= 1")
            return int(value)
    return 1


def _accelerator(bf16: bool) -> Accelerator:
    """The Accelerator of this process, in the run of every process its launcher started."""
    # Accelerate loads only when a run starts, not with the training stage.
    from accelerate import Accelerator

    processes = launched_processes()
    cpu_flag = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if processes == 1 and cpu_flag and os.environ.get("MASTER_ADDR"):
        # `accelerate launch --cpu --num_processes N` starts one process unless it goes
        # through mpirun (--mpirun_hostfile): refuse, rather than train alone.
        raise TrainError(
            "accelerate launch --cpu started one process, not several: on CPUs use "
            "`accelerate launch --multi_gpu --num_processes N -m music_lm.cli train ...` (on "
            "a machine without GPUs it starts N CPU processes) or `torchrun --nproc_per_node N "
            "-m music_lm.cli train ...`"
        )
    # A launched process without a GPU must be told to use the CPU: Accelerate would
    # otherwise look for a GPU backend, find none and run the process alone (each process
    # its own run, "on 1 × cpu"). Told, the processes meet over gloo.
    cpu = processes > 1 and not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision="bf16" if bf16 else "no")


def is_main_process() -> bool:
    """Whether this process is its run's main one, the one that writes and reports (after
    `train`; a process on its own is)."""
    # Accelerate loads only when a run starts, not with the training stage.
    from accelerate import PartialState

    return PartialState().is_main_process


def _check_launcher(run: Run) -> None:
    """Stop when the launcher of several processes is gone (killed: its processes are
    left running, in sessions of their own, and would race a new run on the folder)."""
    if run.launcher is not None and os.getppid() != run.launcher:
        raise TrainError(
            f"{run.folder}: the launcher of this run (process {run.launcher}) is gone; "
            "stopping. Run the same command to resume from the last checkpoint"
        )


# ---- resume ----


def _resume(run: Run) -> RunState:
    """The run's last complete checkpoint loaded into the model, the optimizer, the schedule
    and the random states; a fresh state when there is none."""
    state = RunState()
    found = checkpoints(run.folder)
    if not found:
        return state
    state.resumed_from, path = found[-1]
    saved = load_state(path / STATE_FILE)
    if run.config.lora_rank and saved.get("base_sha256") != run.base_sha:
        raise TrainError(
            f"{run.folder}: the base model {run.config.base} changed since this LoRA run "
            "started; resuming would mix adapters and other weights"
        )
    _check_vocabulary(run, path)
    load_weights(run.accelerator.unwrap_model(run.model), path, run.config)
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    state.step, state.best = int(saved["step"]), _best_so_far(run.folder, saved["best_val_loss"])
    state.tokens_seen, state.elapsed_before = int(saved["tokens_seen"]), float(saved["elapsed_s"])
    # Every process holds the same window stream (ShardedWindows), so a run resumes on
    # another number of processes too: with the same global batch, on the same windows.
    ranks = saved["rng"]
    set_rng_state(ranks[run.rank] if len(ranks) == run.world else ranks[0], run.windows.sampler)
    if len(ranks) != run.world:
        batch = run.config.batch_size
        run.log(f"resuming on {run.world} processes a run saved on {len(ranks)}: a step now "
                f"takes {batch * run.world} windows, not {batch * len(ranks)}")  # fmt: skip
    run.log(f"resuming {run.folder} from step {state.step}")
    return state


def _check_vocabulary(run: Run, checkpoint: Path) -> None:
    """Refuse, in one line, a checkpoint whose embeddings are of an older vocabulary than the
    model's (a run started before the vocabulary grew): its weights and optimizer state do
    not fit. LoRA checkpoints hold adapters only, which fit the extended base as they are."""
    if run.config.lora_rank:
        return
    saved = music_vocab_size_of(read_meta(checkpoint))
    if saved != run.token_map.music_vocab_size:
        raise TrainError(
            f"{checkpoint}: saved with a vocabulary of {saved} tokens, this run's model has "
            f"{run.token_map.music_vocab_size}: it cannot resume; fine-tune its model in a new "
            f"run instead (music-lm finetune --base {run.folder})"
        )


def _best_so_far(folder: Path, best: float | None) -> float | None:
    """The best validation loss of a checkpoint, or of the run's model when that is lower."""
    top = read_meta(folder) if (folder / "music_lm.json").is_file() else None
    top_loss = ((top or {}).get("training") or {}).get("val_loss")
    if top_loss is not None and (best is None or top_loss < best):
        return top_loss  # the run's model was saved after this checkpoint
    return best


# ---- the session ----


def _open_session(run: Run, state: RunState) -> Session:
    """Compile the model (if asked, or on a GPU), open the metrics, announce the run, read
    the validation windows and start the clock and the progress bar."""
    config = run.config
    compiled = run.model
    if config.compile == "on" or (config.compile == "auto" and torch.cuda.is_available()):
        compiled = torch.compile(run.model)
    plain_config_model = plain_model_config_holder(run.model)
    n_params = count_parameters(plain_config_model)
    fpt = flops_per_token(plain_config_model, run.context)
    peak = peak_flops(run.device)
    metrics_log = MetricsLog(run.folder, state.step) if run.main else None
    run.log(
        f"{n_params / 1e6:.2f} M parameters, context {run.context}, {run.max_steps} steps "
        f"of {run.tokens_per_step:,} tokens on {run.world} × {run.device.type}"
        f"{' bf16' if run.bf16 else ''}{' compiled' if compiled is not run.model else ''}"
    )

    # Read once: the same validation windows at every evaluation, each process its share.
    windows = split_windows(run.corpora, "valid", run.context, config.eval_windows)
    val_windows = windows[run.rank :: run.world]

    # tqdm loads only when a run starts, not with the training stage.
    from tqdm.auto import tqdm

    bar = tqdm(total=run.max_steps, initial=state.step, unit="step", dynamic_ncols=True,
               disable=(not run.main) or (config.progress is False) or
               (config.progress is None and not sys.stderr.isatty()))  # fmt: skip
    started = time.perf_counter()
    return Session(
        compiled=compiled, n_params=n_params, flops_per_token=fpt, peak_flops=peak,
        metrics_log=metrics_log, val_windows=val_windows, bar=bar, started=started,
        loss_window=torch.zeros((), device=run.device), window_started=started,
    )  # fmt: skip


def _close(run: Run, session: Session) -> None:
    """Close the progress bar and the metrics log; wait for every process to finish."""
    session.bar.close()
    if run.main:
        session.metrics_log.close()
    run.accelerator.wait_for_everyone()


# ---- a step ----


def _optimizer_step(run: Run, session: Session) -> torch.Tensor:
    """One optimizer step over `grad_accum` micro-batches, its loss added to the session's
    window; returns the gradient norm (before clipping)."""
    config, accelerator = run.config, run.accelerator
    for micro in range(config.grad_accum):
        batch = torch.from_numpy(run.windows.batch(config.batch_size)).to(run.device)
        inputs = run.token_map.to_model(batch[:, :-1])
        targets = run.token_map.to_model(batch[:, 1:])
        sync = micro == config.grad_accum - 1
        with nullcontext() if sync else accelerator.no_sync(run.model):
            # use_cache=False: no KV cache to build (a copy of every layer's keys and values)
            logits = session.compiled(input_ids=inputs, use_cache=False).logits
            loss = cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                 targets.reshape(-1))  # fmt: skip
        accelerator.backward(loss / config.grad_accum)
        session.loss_window += loss.detach() / config.grad_accum
    grad_norm = accelerator.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return grad_norm


def _count_step(run: Run, state: RunState, session: Session) -> None:
    """Count a step done: the run's steps and tokens, the session's, the progress bar."""
    state.step += 1
    session.steps += 1
    session.window_steps += 1
    state.tokens_seen += run.tokens_per_step
    session.window_tokens += run.tokens_per_step
    session.bar.update(1)


# ---- metrics rows ----


def _log_row(
    run: Run, state: RunState, session: Session, lr: float, grad_norm: torch.Tensor,
    evaluate_now: bool,
) -> bool:  # fmt: skip
    """The metrics row of this step, with the validation figures when an evaluation is due,
    written and shown by the main process. Returns whether the validation loss is the best
    so far."""
    row = _train_row(run, state, session, lr, grad_norm)
    is_best = False
    if evaluate_now:
        row.update(_validate(run, session))
        is_best = state.best is None or row["val_loss"] < state.best
        if is_best:
            state.best = row["val_loss"]
        session.window_started = time.perf_counter()  # evaluation time is not training speed
    if run.main:
        _report(run, session, row, evaluate_now)
    session.last_row = row
    return is_best


def _train_row(
    run: Run, state: RunState, session: Session, lr: float, grad_norm: torch.Tensor
) -> dict:
    """The training figures of the steps since the last row; the next window starts."""
    # The mean training loss of the steps since the last row.
    train_loss = run.accelerator.reduce(session.loss_window / session.window_steps,
                                        reduction="mean")  # fmt: skip
    session.loss_window.zero_()
    session.window_steps = 0
    now = time.perf_counter()
    tokens_per_s = session.window_tokens / max(now - session.window_started, 1e-9)
    session.window_started, session.window_tokens = now, 0
    row = {
        "step": state.step,
        "train_loss": float(train_loss),
        "lr": lr,
        "grad_norm": float(grad_norm),
        "tokens_seen": state.tokens_seen,
        "tokens_per_s": tokens_per_s,
        "elapsed_s": state.elapsed_before + (now - session.started),
    }
    if session.peak_flops:
        row["mfu"] = tokens_per_s * session.flops_per_token / (session.peak_flops * run.world)
    return row


def _validate(run: Run, session: Session) -> dict:
    """The validation figures (`val_loss`, ...), summed over every process's share."""
    # The uncompiled module: evaluation windows vary in length (the last one of the
    # split is short) and would make a compiled one recompile. Unwrapped: the processes
    # may hold different numbers of windows, and the only exchange is the sum at the end.
    result = score_windows(
        run.accelerator.unwrap_model(run.model), session.val_windows, run.config.batch_size,
        run.token_map, run.device, run.accelerator.autocast,
        reduce=lambda t: run.accelerator.reduce(t, reduction="sum"),
    )  # fmt: skip
    return {f"val_{k}": v for k, v in result.items() if k not in ("tokens", "notes")}


def _report(run: Run, session: Session, row: dict, evaluated: bool) -> None:
    """A row into metrics.jsonl and the progress bar; after an evaluation, loss.png redrawn
    and, without a progress bar, a log line."""
    session.metrics_log.write(row)
    session.bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                            tok_s=f"{row['tokens_per_s']:,.0f}")  # fmt: skip
    if not evaluated:
        return
    plot_losses(session.metrics_log.rows, run.folder / "loss.png")
    if session.bar.disable:
        bpn = row.get("val_bits_per_note")
        run.log(f"step {row['step']}/{run.max_steps}: train {row['train_loss']:.4f}, "
                f"validation {row['val_loss']:.4f}"
                + (f" ({bpn:.2f} bits per note)" if bpn else "")
                + f", {row['tokens_per_s']:,.0f} tokens/s")  # fmt: skip


# ---- saving ----


def _save(
    run: Run, state: RunState, session: Session, evaluated: bool, checkpoint: bool,
    is_best: bool,
) -> None:  # fmt: skip
    """Save this step: every process hands in its random states; the main process writes
    the best model and the checkpoint. A failed write is one error line, and the checkpoints
    saved before stay whole."""
    # Accelerate loads only when a run starts, not with the training stage.
    from accelerate.utils import gather_object

    rng_states = gather_object([rng_state(run.windows.sampler)])
    if not run.main:
        return
    val = {k: v for k, v in session.last_row.items() if k.startswith("val_")}
    try:
        _write(run, state, session, val if evaluated else None, checkpoint, is_best, rng_states)
    except OSError as err:  # a full disk, a quota, a folder gone: say so, keep the rest
        raise save_failed(run.folder, state.step, err) from None


def _base_trained_on_fim(run: Run) -> bool:
    base = run.base_path
    if not base or not Path(base).is_dir():
        return False
    try:
        return trained_on_fim(read_meta(base))
    except ModelError:
        return False


def _write(
    run: Run, state: RunState, session: Session, val: dict | None, checkpoint: bool,
    is_best: bool, rng_states: list[dict],
) -> None:  # fmt: skip
    """The top-level model when it is the best so far, and a checkpoint folder, each
    written aside and moved into place whole."""
    plain = plain_model(run.accelerator.unwrap_model(run.model))
    summary = {"step": state.step, "tokens_seen": state.tokens_seen,
               "max_steps": run.max_steps, "parameters": session.n_params,
               "context": run.context, "fim_share": run.config.fim_share,
               "fim_trained": run.config.fim_share > 0 or _base_trained_on_fim(run),
               **(val or {})}  # fmt: skip
    meta = model_meta(run.token_map, summary, base=run.base_path)
    if is_best:
        publish_best(plain, run.folder, meta, run.tokenizer)
    if not checkpoint:
        return
    training_state = {
        "step": state.step,
        "best_val_loss": state.best,
        "tokens_seen": state.tokens_seen,
        "elapsed_s": state.elapsed_before + (time.perf_counter() - session.started),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_states,
        "base_sha256": run.base_sha,
    }
    adapters = run.accelerator.unwrap_model(run.model) if run.config.lora_rank else None
    write_checkpoint(plain, run.folder, state.step, meta, run.tokenizer, training_state,
                     adapters)  # fmt: skip
