"""The `music-lm` command: thin Typer commands over importable functions.

Every failure caused by the input is one line on stderr naming the file and the
problem, and exit code 2 (`--debug` shows the traceback). Batches over folders
carry on past a bad file and list the failures at the end.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from music_lm.api import encode_midi, text_to_midi
from music_lm.codec import CodecError
from music_lm.files import (
    INPUT_ERRORS,
    MIDI_SUFFIXES,
    STDIN,
    TEXT_SUFFIXES,
    BatchResult,
    OutputExistsError,
    find_inputs,
    output_for,
    read_input_bytes,
    read_text_file,
    run_batch,
    single_output,
)
from music_lm.grammar import validate as validate_text
from music_lm.report import format_inspection, verify_round_trip
from music_lm.sources import CorpusError

DEFAULT_INPUT = Path("midi_in")
DEFAULT_OUTPUT = Path("midi_out")
EXIT_BAD_INPUT = 2

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="MIDI <-> token text, exactly at the grid. See docs/token-format.md.",
)
_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from music_lm import __version__

        typer.echo(f"music-lm {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["debug"] = debug


FORCE = typer.Option(False, "--force", "-f", help="Overwrite existing output files.")
SUSTAIN = typer.Option(
    False, "--sustain", help="Apply the sustain pedal (CC64): notes sound on while it is down."
)


def _finish(result: BatchResult, verb: str) -> None:
    for _path, message in result.failed:
        typer.echo(f"music-lm: error: {message}", err=True)
    if result.done + len(result.failed) > 1:
        typer.echo(f"{verb} {result.done} file(s); {len(result.failed)} failed", err=True)
    if result.failed:
        raise typer.Exit(EXIT_BAD_INPUT)


def _encode_input(path: Path, sustain: bool = False):
    """encode_midi of a file, or of the bytes on stdin for '-'."""
    if path == STDIN:
        return encode_midi(read_input_bytes(path), name="<stdin>", sustain=sustain)
    return encode_midi(path, sustain=sustain)


def _target(source: Path, path: Path, output: Path | None, suffix: str) -> Path:
    """Where encode/decode write the output of `path`: for a single input, -o itself (or
    a file in it when it is a folder); for a folder, the same layout under -o."""
    if source == STDIN or source.is_file():
        return single_output(path, output, DEFAULT_OUTPUT, suffix)
    return output_for(source, path, output or DEFAULT_OUTPUT, suffix)


def _encode_and_check(path: Path, sustain: bool):
    """Encode `path` and run the round trip it promises; the check is in the report."""
    encoded = _encode_input(path, sustain)
    return encoded, verify_round_trip(encoded)


def _fail_if_broken(path: Path, check) -> None:
    if not check.ok:
        raise CodecError(f"{path}: the round trip check failed (a bug: please report it)")


SOURCE_HELP = "A MIDI file, a folder of them (recursive), or - for stdin."


@app.command()
def encode(
    source: Path = typer.Argument(DEFAULT_INPUT, help=SOURCE_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .txt file or folder (default for a folder: midi_out/)."
    ),
    force: bool = FORCE,
    sustain: bool = SUSTAIN,
) -> None:
    """MIDI -> token text. A single file prints to stdout unless -o is given."""
    inputs = find_inputs(source, MIDI_SUFFIXES, exclude=output)
    if (source == STDIN or source.is_file()) and output is None:
        typer.echo(_encode_input(source, sustain).text, nl=False)
        return

    def job(path: Path) -> list:
        return [(_target(source, path, output, ".txt"), _encode_input(path, sustain).text)]

    _finish(run_batch(inputs, job, BatchResult(), force), "encoded")


@app.command()
def decode(
    source: Path = typer.Argument(..., help="A token-text file, a folder of them, or - (stdin)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .mid file or folder (default: midi_out/)."
    ),
    force: bool = FORCE,
) -> None:
    """Token text -> DAW-ready MIDI."""
    inputs = find_inputs(source, TEXT_SUFFIXES, exclude=output)

    def job(path: Path) -> list:
        return [(_target(source, path, output, ".mid"), text_to_midi(read_text_file(path)))]

    _finish(run_batch(inputs, job, BatchResult(), force), "decoded")


@app.command()
def inspect(
    source: Path = typer.Argument(DEFAULT_INPUT, help=SOURCE_HELP),
    sustain: bool = SUSTAIN,
) -> None:
    """Summary of a MIDI file and the codec's round-trip report (verified)."""

    def job(path: Path) -> list:
        encoded, check = _encode_and_check(path, sustain)
        typer.echo(format_inspection(encoded, check) + "\n")
        _fail_if_broken(path, check)
        return []

    _finish(run_batch(find_inputs(source, MIDI_SUFFIXES), job, BatchResult()), "inspected")


@app.command()
def roundtrip(
    source: Path = typer.Argument(DEFAULT_INPUT, help=SOURCE_HELP),
    output: Path = typer.Option(DEFAULT_OUTPUT, "--output", "-o", help="Output folder."),
    force: bool = FORCE,
    sustain: bool = SUSTAIN,
) -> None:
    """MIDI -> text -> MIDI into a folder (.txt and .mid per input), with each report."""
    inputs = find_inputs(source, MIDI_SUFFIXES, exclude=output)

    def job(path: Path) -> list:
        encoded, check = _encode_and_check(path, sustain)
        text_path = output_for(source, path, output, ".txt")  # -o is always a folder here
        midi_path = text_path.with_suffix(".mid")
        typer.echo(format_inspection(encoded, check))
        typer.echo(f"  writing {text_path} and {midi_path}\n")
        _fail_if_broken(path, check)
        return [(text_path, encoded.text), (midi_path, check.midi)]

    _finish(run_batch(inputs, job, BatchResult(), force), "round-tripped")


@app.command()
def validate(
    sources: list[Path] = typer.Argument(..., help="Token-text files, folders, or - (stdin)."),
) -> None:
    """Check token text against the grammar; an error names the token and what was expected."""
    result = BatchResult()

    def job(path: Path) -> list:
        validate_text(read_text_file(path))
        typer.echo(f"{'<stdin>' if path == STDIN else path}: valid")
        return []

    for source in sources:
        try:
            inputs = find_inputs(source, TEXT_SUFFIXES)
        except OSError as err:
            result.failed.append((source, str(err)))
            continue
        run_batch(inputs, job, result)
    _finish(result, "validated")


corpus_app = typer.Typer(
    no_args_is_help=True, help="Build training corpora of token shards, and describe them."
)
app.add_typer(corpus_app, name="corpus")
DEFAULT_CORPUS = Path("data/corpus")


@corpus_app.command("build")
def corpus_build(
    sources: list[str] = typer.Option(
        ...,
        "--source",
        "-s",
        help="music21 (its bundled corpus; music21:bach,palestrina for some collections), "
        "or a folder of MIDI files as DIR or DIR:TAG (tag: the folder's name by default). "
        "Repeat for several sources.",
    ),
    output: Path = typer.Option(DEFAULT_CORPUS, "--output", "-o", help="Corpus folder."),
    valid: float = typer.Option(0.05, help="Share of pieces held out for validation."),
    test: float = typer.Option(0.05, help="Share of pieces held out for testing."),
    seed: int = typer.Option(0, help="Seed of the split (a hash of each piece's content)."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Worker processes (0: all cores)."),
    limit: int = typer.Option(0, help="At most this many pieces per source, spread (0: all)."),
    dedup: bool = typer.Option(True, help="Drop duplicate pieces, transposed copies too."),
    shard_tokens: int = typer.Option(8 * 1024 * 1024, help="Tokens per shard file at most."),
    cache: Path | None = typer.Option(
        None, help="Encoding cache folder (default: $MUSIC_LM_CACHE or ~/.cache/music_lm)."
    ),
    engine: str = typer.Option(
        "local", help="local (a process pool) or datasets (Hugging Face datasets' map)."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: when on a terminal)."
    ),
    sustain: bool = SUSTAIN,
) -> None:
    """Encode sources into uint16 token shards with an index, a manifest and the tokenizer.

    Run it again to update: only files whose content changed are encoded again."""
    from music_lm.corpus import BuildConfig, build_corpus
    from music_lm.corpus_stats import manifest_table

    config = BuildConfig(
        tuple(sources), valid, test, seed, sustain, dedup, shard_tokens, limit or None
    )
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    if engine == "local":
        result = build_corpus(config, output, cache, jobs or None, progress, log)
    elif engine == "datasets":
        from music_lm.corpus_hf import build_corpus_datasets

        result = build_corpus_datasets(config, output, jobs or None, log, cache)
    else:
        raise CorpusError(f"--engine {engine!r}: choose local or datasets")
    typer.echo(manifest_table(result.manifest))
    for name, reason in result.failures[:10]:
        typer.echo(f"failed: {name}: {reason}", err=True)
    if result.failures:
        more = f" ({len(result.failures) - 10} more)" if len(result.failures) > 10 else ""
        typer.echo(
            f"{len(result.failures)} piece(s) failed{more}: listed in "
            f"{result.out / 'failures.tsv'}",
            err=True,
        )
    typer.echo(f"wrote {result.out} ({result.encoded} encoded, {result.cached} from the cache)")


@corpus_app.command("stats")
def corpus_stats(
    folder: Path = typer.Argument(DEFAULT_CORPUS, help="A built corpus folder."),
    png: Path | None = typer.Option(
        None, "--png", help="Where to write the distributions (default: FOLDER/stats.png)."
    ),
    sample: int = typer.Option(2000, help="Pieces decoded for the duration histogram."),
    force: bool = FORCE,
) -> None:
    """The manifest as a table, and a PNG of pitch, duration, length and style distributions."""
    from music_lm.corpus_stats import manifest_table, plot_stats
    from music_lm.dataset import Corpus

    corpus = Corpus(folder)
    typer.echo(manifest_table(corpus.manifest))
    target = png or folder / "stats.png"
    if target.exists() and not force and png is not None:
        raise OutputExistsError(f"{target}: exists (use --force to overwrite)")
    plot_stats(corpus, target, sample)
    typer.echo(f"wrote {target}")


# ---- training ----

DEFAULT_RUN_DATA = [str(DEFAULT_CORPUS)]


def _given(ctx: typer.Context) -> set[str]:
    """The options the user set on the command line (resuming may change only some)."""
    from click.core import ParameterSource

    return {
        p.name for p in ctx.command.params
        if ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE
    }  # fmt: skip


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
    from music_lm.train import TrainConfig, train

    options["data"] = tuple(options["data"])
    options["weights"] = _weights(options.pop("weights"))
    options["compile"] = options["compile"].lower()
    config = TrainConfig(base=base, **options)
    given = _given(ctx) | {"output", "base"}
    result = train(config, given=given, log=lambda m: typer.echo(m, err=True))
    best = f", best validation loss {result.best_val_loss:.4f}" if result.best_val_loss else ""
    typer.echo(f"{result.run}: step {result.step}{best}")


FINETUNE_STEPS = 300  # a few hundred steps suit a folder of songs; see docs/training.md

TRAIN_HELP = {
    "preset": "Model size: tiny, small (6 M parameters) or base (25 M).",
    "max_steps": "Optimizer steps (default: --epochs over the training tokens).",
    "epochs": "Passes over the training tokens, when --max-steps is not given (default 1).",
    "batch_size": "Windows per micro-batch and device.",
    "grad_accum": "Micro-batches per optimizer step.",
    "context": "Tokens per window (at most the model's positions).",
    "eval_windows": "Validation windows per evaluation, spread over the split (0: all).",
    "transpose": "Random transposition of each piece, within ± this many semitones.",
    "weights": "Mixing weight by source or style, NAME=SHARE (repeat), e.g. bach=0.3.",
    "compile": "torch.compile: auto (on a GPU), on or off.",
    "precision": "auto (bf16 on a GPU that has it), bf16 or fp32.",
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
        help="Built corpus folder(s), or folder(s) of MIDI files (built on the way).",
    ),
    preset: str = typer.Option("small", help=TRAIN_HELP["preset"]),
    n_layer: int | None = typer.Option(None, help="Layers (overrides the preset)."),
    n_head: int | None = typer.Option(None, help="Attention heads (overrides the preset)."),
    n_embd: int | None = typer.Option(None, help="Width (overrides the preset)."),
    context: int = typer.Option(1024, help=TRAIN_HELP["context"]),
    dropout: float = typer.Option(0.0, help="Dropout of the new model."),
    max_steps: int | None = typer.Option(None, help=TRAIN_HELP["max_steps"]),
    epochs: float | None = typer.Option(None, help=TRAIN_HELP["epochs"]),
    batch_size: int = typer.Option(16, help=TRAIN_HELP["batch_size"]),
    grad_accum: int = typer.Option(1, help=TRAIN_HELP["grad_accum"]),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    warmup_steps: int = typer.Option(100, help="Linear warmup steps (then cosine decay)."),
    weight_decay: float = typer.Option(0.1, help="AdamW weight decay."),
    transpose: int = typer.Option(5, help=TRAIN_HELP["transpose"]),
    weights: list[str] = typer.Option([], "--weight", "-w", help=TRAIN_HELP["weights"]),
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
        ..., "--data", "-d", help="Your MIDI folder (built into a corpus), or a built corpus."
    ),
    context: int = typer.Option(1024, help=TRAIN_HELP["context"]),
    dropout: float = typer.Option(0.1, help="Dropout while fine-tuning (small data)."),
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
    output: Path | None = typer.Option(None, "--json", help="Also write the figures as JSON."),
    force: bool = FORCE,
) -> None:
    """Loss, perplexity, accuracy and bits per note of a model on a corpus split."""
    import json

    from music_lm.evaluate import evaluate_model, format_evaluation

    if batch_size < 1:
        raise typer.BadParameter(f"--batch-size must be >= 1, got {batch_size}")
    if output is not None and output.exists() and not force:
        raise OutputExistsError(f"{output}: exists (use --force to overwrite)")
    result = evaluate_model(model, data, split, baselines, batch_size)
    typer.echo(format_evaluation(result))
    if output is not None:
        output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")


def _training_errors() -> tuple[type[Exception], ...]:
    """The error types of the training modules, when they are loaded (importing them
    pulls in torch, which the codec commands never need)."""
    found = []
    for module, name in (("music_lm.model", "ModelError"), ("music_lm.train", "TrainError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def main() -> None:
    """Entry point. Typer handles usage errors itself (usage line, exit 2); a bad input or
    output becomes one line naming the file, and exit code 2."""
    try:
        app()  # standalone: exits with the command's code
    except BrokenPipeError:
        # The reader of our output went away (`music-lm inspect | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (
        *INPUT_ERRORS,
        CorpusError,
        OSError,
        *_training_errors(),
    ) as err:  # OutputExistsError is an OSError
        if _state["debug"]:
            raise
        typer.echo(f"music-lm: error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
