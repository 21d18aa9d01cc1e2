"""`music-lm train | finetune | evaluate`: GPT-2 on a corpus or on your own MIDI."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from music_lm.cli.corpus import DEFAULT_CORPUS
from music_lm.cli.root import (
    FORCE,
    app,
    held_by_pedal,
)
from music_lm.files import (
    OutputExistsError,
)

DEFAULT_RUN_DATA = [str(DEFAULT_CORPUS)]
FOLDER_SUSTAIN = held_by_pedal(
    "the MIDI folders of --data", "the model writes no pedal, so it learns notes as they sound"
)


def _given(ctx: typer.Context) -> set[str]:
    """The options the user set on the command line (resuming may change only some)."""

    # By name: typer >= 0.20 runs on its own copy of click, whose ParameterSource is
    # another enum than click's (comparing with click's never matched: resuming with a new
    # --max-steps kept the old one).
    def source(name: str) -> str:
        found = ctx.get_parameter_source(name)
        return getattr(found, "name", "")

    return {p.name for p in ctx.command.params if source(p.name) == "COMMANDLINE"}


def _weights(specs: list[str]) -> dict[str, float]:
    weights = {}
    for spec in specs:
        name, _, share = spec.partition("=")
        try:
            weights[name] = float(share)
        except ValueError:
            raise typer.BadParameter(f"{spec!r}: write NAME=SHARE, e.g. bach=0.3") from None
    return weights


def _run_training(ctx: typer.Context, base: str | None, **options) -> None:
    # torch loads only when the command runs
    from music_lm.training.config import TrainConfig
    from music_lm.training.loop import is_main_process, train

    options["data"] = tuple(options["data"])
    options["weights"] = _weights(options.pop("weights"))
    options["compile"] = options["compile"].lower()
    if options.get("fim_share") is None:
        options["fim_share"] = base_fim_share(base) if base is not None else 0.0
    config = TrainConfig(base=base, **options)
    given = _given(ctx) | {"output", "base"}
    result = train(config, given=given, log=lambda m: typer.echo(m, err=True))
    best = f", best validation loss {result.best_val_loss:.4f}" if result.best_val_loss else ""
    if is_main_process():  # one line per run, not per process
        typer.echo(f"{result.run}: step {result.step}{best}")


def base_fim_share(base: str) -> float:
    """The fill-in-the-middle share a base model was trained with (0 for a model without
    it, or not one of music_lm's): a fine-tune keeps the skill unless told otherwise."""
    from music_lm.model.folder import read_meta, resolve_model_path

    path = resolve_model_path(base)
    meta = read_meta(path) if Path(path).is_dir() else None
    return float(((meta or {}).get("training") or {}).get("fim_share") or 0.0)


FINETUNE_STEPS = 300  # a few hundred steps suit a folder of songs; see docs/training.md

TRAIN_HELP = {
    "preset": "Model size: tiny (0.26 M parameters), small (6.2 M) or base (26.5 M).",
    "max_steps": "Optimizer steps (default: --epochs over the training tokens).",
    "epochs": "Passes over the training tokens, when --max-steps is not given (default 1).",
    "batch_size": "Windows per micro-batch and device.",
    "grad_accum": "Micro-batches per optimizer step.",
    "context": "Tokens per window (at most the model's positions).",
    "eval_windows": "Validation windows per evaluation, spread over the split (0: all).",
    "transpose": "Random transposition of each piece, within ± this many semitones.",
    "weights": "Mixing weight by source or style, NAME=SHARE (repeat), e.g. bach=0.3.",
    "velocity_level": "Augmentation: one dynamic level per piece, ± this many velocity bins "
    "(of 4; 0: off).",
    "velocity_ramp": "Augmentation: crescendo or diminuendo over a window's bars, up to ± this "
    "many bins (0: off).",
    "velocity_jitter": "Augmentation: each note's velocity ± this many bins (0: off).",
    "velocity_jitter_share": "The share of pieces that --velocity-jitter acts on, 0..1.",
    "revoice": "Augmentation: probability that a piano or voice part is re-voiced onto another "
    "GM instrument whose range holds it (0: off).",
    "tempo_percent": "Augmentation: tempo ± this many percent per piece (0: off).",
    "fim_share": "The share of training pieces in the fill-in-the-middle form, which teaches "
    "`infill --bars` to read the music after the gap (0: off).",
    "compile": "torch.compile: auto (on a GPU), on or off.",
    "precision": "auto (bf16 on a GPU or CPU that has it natively), bf16 or fp32.",
    "lora_rank": "Train LoRA adapters of this rank instead of all weights (merged on save).",
}


@app.command()
def train(
    ctx: typer.Context,
    output: Path = typer.Option(..., "--output", "-o", help="Run folder (again: resumes)."),
    data: list[str] = typer.Option(
        DEFAULT_RUN_DATA,
        "--data",
        "-d",
        help="Built corpus folder(s), or folder(s) of MIDI files as DIR or DIR:TAG (built on "
        "the way, 10 % held out for validation and, from 20 pieces on, 10 % for testing).",
    ),
    sustain: bool = FOLDER_SUSTAIN,
    preset: str = typer.Option("small", help=TRAIN_HELP["preset"]),
    n_layer: int | None = typer.Option(None, help="Layers (overrides the preset)."),
    n_head: int | None = typer.Option(None, help="Attention heads (overrides the preset)."),
    n_embd: int | None = typer.Option(None, help="Width (overrides the preset)."),
    context: int = typer.Option(1024, help=TRAIN_HELP["context"]),
    dropout: float = typer.Option(
        0.0,
        help="Dropout of the new model's residual stream and embeddings "
        "(attention weights get none: that keeps attention on its fused kernel).",
    ),
    max_steps: int | None = typer.Option(None, help=TRAIN_HELP["max_steps"]),
    epochs: float | None = typer.Option(None, help=TRAIN_HELP["epochs"]),
    batch_size: int = typer.Option(16, help=TRAIN_HELP["batch_size"]),
    grad_accum: int = typer.Option(1, help=TRAIN_HELP["grad_accum"]),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    warmup_steps: int = typer.Option(100, help="Linear warmup steps (then cosine decay)."),
    weight_decay: float = typer.Option(0.1, help="AdamW weight decay."),
    transpose: int = typer.Option(5, help=TRAIN_HELP["transpose"]),
    weights: list[str] = typer.Option([], "--weight", "-w", help=TRAIN_HELP["weights"]),
    velocity_level: int = typer.Option(3, help=TRAIN_HELP["velocity_level"]),
    velocity_ramp: int = typer.Option(4, help=TRAIN_HELP["velocity_ramp"]),
    velocity_jitter: int = typer.Option(1, help=TRAIN_HELP["velocity_jitter"]),
    velocity_jitter_share: float = typer.Option(0.25, help=TRAIN_HELP["velocity_jitter_share"]),
    revoice: float = typer.Option(0.3, help=TRAIN_HELP["revoice"]),
    tempo_percent: float = typer.Option(3.0, help=TRAIN_HELP["tempo_percent"]),
    fim_share: float = typer.Option(0.0, help=TRAIN_HELP["fim_share"]),
    eval_every: int = typer.Option(200, help="Evaluate on the validation split every N steps."),
    eval_windows: int = typer.Option(64, help=TRAIN_HELP["eval_windows"]),
    save_every: int = typer.Option(500, help="Keep a checkpoint every N steps."),
    log_every: int = typer.Option(10, help="Write metrics every N steps."),
    seed: int = typer.Option(0, help="Seed of the weights and the data order."),
    compile: str = typer.Option("auto", help=TRAIN_HELP["compile"]),
    precision: str = typer.Option("auto", help=TRAIN_HELP["precision"]),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Pretrain a GPT-2 from scratch on token shards. Again on the same folder: resumes."""
    _run_training(ctx, None, **{k: v for k, v in locals().items() if k != "ctx"})


@app.command()
def finetune(
    ctx: typer.Context,
    base: str = typer.Option(
        "default",
        "--base",
        "-b",
        help="Model to start from: a run folder, default (the shipped model), or a GPT-2 "
        "folder or hub id (the music tokens are added to its tokenizer).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder (again: resumes)."),
    data: list[str] = typer.Option(
        ...,
        "--data",
        "-d",
        help="Your MIDI folder as DIR or DIR:TAG (built into a corpus: 10 % held out for "
        "validation and, from 20 pieces on, 10 % for testing), or a built corpus.",
    ),
    sustain: bool = FOLDER_SUSTAIN,
    context: int = typer.Option(1024, help=TRAIN_HELP["context"]),
    dropout: float = typer.Option(
        0.1,
        help="Dropout of the residual stream and embeddings while fine-tuning (small "
        "data); attention weights get none, which keeps attention on its fused kernel.",
    ),
    max_steps: int | None = typer.Option(
        None, help="Optimizer steps (default 300, or from --epochs when given)."
    ),
    epochs: float | None = typer.Option(None, help=TRAIN_HELP["epochs"]),
    batch_size: int = typer.Option(8, help=TRAIN_HELP["batch_size"]),
    grad_accum: int = typer.Option(1, help=TRAIN_HELP["grad_accum"]),
    lr: float = typer.Option(2e-4, help="Peak learning rate."),
    warmup_steps: int = typer.Option(20, help="Linear warmup steps (then cosine decay)."),
    weight_decay: float = typer.Option(0.1, help="AdamW weight decay."),
    transpose: int = typer.Option(5, help=TRAIN_HELP["transpose"]),
    weights: list[str] = typer.Option([], "--weight", "-w", help=TRAIN_HELP["weights"]),
    velocity_level: int = typer.Option(3, help=TRAIN_HELP["velocity_level"]),
    velocity_ramp: int = typer.Option(4, help=TRAIN_HELP["velocity_ramp"]),
    velocity_jitter: int = typer.Option(1, help=TRAIN_HELP["velocity_jitter"]),
    velocity_jitter_share: float = typer.Option(0.25, help=TRAIN_HELP["velocity_jitter_share"]),
    revoice: float = typer.Option(0.3, help=TRAIN_HELP["revoice"]),
    tempo_percent: float = typer.Option(3.0, help=TRAIN_HELP["tempo_percent"]),
    fim_share: float | None = typer.Option(
        None, help=TRAIN_HELP["fim_share"] + " Default: the base model's share."
    ),
    eval_every: int = typer.Option(50, help="Evaluate on the validation split every N steps."),
    eval_windows: int = typer.Option(0, help=TRAIN_HELP["eval_windows"]),
    save_every: int = typer.Option(100, help="Keep a checkpoint every N steps."),
    log_every: int = typer.Option(10, help="Write metrics every N steps."),
    seed: int = typer.Option(0, help="Seed of the data order."),
    lora_rank: int = typer.Option(0, help=TRAIN_HELP["lora_rank"]),
    lora_alpha: int = typer.Option(16, help="LoRA scale numerator (scale = alpha / rank)."),
    compile: str = typer.Option("auto", help=TRAIN_HELP["compile"]),
    precision: str = typer.Option("auto", help=TRAIN_HELP["precision"]),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Fine-tune a model on your own MIDI. Again on the same folder: resumes."""
    options = {k: v for k, v in locals().items() if k not in ("ctx", "base")}
    if max_steps is None and epochs is None:
        options["max_steps"] = FINETUNE_STEPS
    _run_training(ctx, base, **options)


@app.command()
def evaluate(
    data: Path = typer.Option(DEFAULT_CORPUS, "--data", "-d", help="A built corpus folder."),
    model: str = typer.Option("default", "--model", "-m", help="Model folder, or default."),
    split: str = typer.Option("test", help="train, valid or test."),
    baselines: bool = typer.Option(
        True, help="Also fit and score a unigram and an order-3 Markov model on the same split."
    ),
    batch_size: int = typer.Option(8, help="Windows per forward pass."),
    max_windows: int = typer.Option(
        0, help="Score the model on this many windows spread over the split (0: all)."
    ),
    output: Path | None = typer.Option(None, "--json", help="Also write the figures as JSON."),
    force: bool = FORCE,
) -> None:
    """Loss, perplexity, accuracy and bits per note of a model on a corpus split, and bits
    per token by group (pitch, drum, velocity, duration, timing, track, header) and source."""

    # torch loads only when the command runs
    from music_lm.training.evaluate import evaluate_model, format_evaluation

    if batch_size < 1:
        raise typer.BadParameter(f"--batch-size must be >= 1, got {batch_size}")
    if max_windows < 0:
        raise typer.BadParameter(f"--max-windows must be >= 0, got {max_windows}")
    if output is not None and output.exists() and not force:
        raise OutputExistsError(f"{output}: exists (use --force to overwrite)")
    result = evaluate_model(model, data, split, baselines, batch_size, max_windows=max_windows)
    typer.echo(format_evaluation(result))
    if output is not None:
        output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")
