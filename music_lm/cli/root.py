"""The `music-lm` command: thin Typer commands over importable functions.

Every failure caused by the input is one line on stderr naming the file and the
problem, and exit code 2 (`--debug` shows the traceback). Batches over folders
carry on past a bad file and list the failures at the end.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from music_lm.api import encode_midi, text_to_midi
from music_lm.corpus.sources import CorpusError
from music_lm.errors import MusicLmError
from music_lm.files import (
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
from music_lm.tokens.codec import CodecError
from music_lm.tokens.grammar import validate as validate_text
from music_lm.tokens.report import format_inspection, verify_round_trip

DEFAULT_INPUT = Path("midi_in")
DEFAULT_OUTPUT = Path("midi_out")
EXIT_BAD_INPUT = 2


def debug_on(ctx: typer.Context) -> bool:
    """Whether `music-lm --debug` was given: read from the command's context, so that no
    module keeps it between calls."""
    return bool(ctx.find_root().params.get("debug"))


class _Commands(TyperGroup):
    """The command group: an error music_lm raises on purpose (MusicLmError) or an OS
    error becomes one line naming the file and exit code 2; `--debug` shows the
    traceback instead. Anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # main() handles it: not an error of the input
        except (MusicLmError, OSError) as err:  # OutputExistsError is both
            if ctx.params.get("debug"):
                raise
            typer.echo(f"music-lm: error: {err}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="MIDI <-> token text, exactly at the grid. See docs/token-format.md.",
)


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
    limit: list[str] = typer.Option(
        [],
        "--limit",
        help="Raise or lower a resource limit, NAME=VALUE (repeatable): file_mb, tracks, "
        "notes, quarters, tokens, generation_s, audio_s. Also $MUSIC_LM_LIMITS.",
    ),
) -> None:
    from music_lm.limits import LimitError, limits, parse_limits, set_limits

    del debug  # read from the context where it is needed: debug_on(ctx)
    set_limits(None)  # $MUSIC_LM_LIMITS, then the options over it
    if limit:
        try:
            set_limits(parse_limits(",".join(limit), limits()))
        except LimitError as err:
            raise typer.BadParameter(str(err), param_hint="--limit") from None


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
    ctx: typer.Context,
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

    _finish(run_batch(inputs, job, BatchResult(), force, debug=debug_on(ctx)), "encoded")


@app.command()
def decode(
    ctx: typer.Context,
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

    _finish(run_batch(inputs, job, BatchResult(), force, debug=debug_on(ctx)), "decoded")


@app.command()
def inspect(
    ctx: typer.Context,
    source: Path = typer.Argument(DEFAULT_INPUT, help=SOURCE_HELP),
    sustain: bool = SUSTAIN,
) -> None:
    """Summary of a MIDI file and the codec's round-trip report (verified)."""

    def job(path: Path) -> list:
        encoded, check = _encode_and_check(path, sustain)
        typer.echo(format_inspection(encoded, check) + "\n")
        _fail_if_broken(path, check)
        return []

    _finish(
        run_batch(find_inputs(source, MIDI_SUFFIXES), job, BatchResult(), debug=debug_on(ctx)),
        "inspected",
    )


@app.command()
def roundtrip(
    ctx: typer.Context,
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

    _finish(run_batch(inputs, job, BatchResult(), force, debug=debug_on(ctx)), "round-tripped")


@app.command()
def validate(
    ctx: typer.Context,
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
        run_batch(inputs, job, result, debug=debug_on(ctx))
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
    from music_lm.corpus.build import BuildConfig, build_corpus
    from music_lm.corpus.stats import manifest_table

    config = BuildConfig(
        tuple(sources), valid, test, seed, sustain, dedup, shard_tokens, limit or None
    )
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    if engine == "local":
        result = build_corpus(config, output, cache, jobs or None, progress, log)
    elif engine == "datasets":
        from music_lm.corpus.hf_dataset import build_corpus_datasets

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
    from music_lm.corpus.dataset import Corpus
    from music_lm.corpus.stats import manifest_table, plot_stats

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
    from music_lm.training.loop import TrainConfig, train

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

    from music_lm.training.evaluate import evaluate_model, format_evaluation

    if batch_size < 1:
        raise typer.BadParameter(f"--batch-size must be >= 1, got {batch_size}")
    if output is not None and output.exists() and not force:
        raise OutputExistsError(f"{output}: exists (use --force to overwrite)")
    result = evaluate_model(model, data, split, baselines, batch_size)
    typer.echo(format_evaluation(result))
    if output is not None:
        output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")


# ---- generation ----

SEED_BARS = typer.Option(None, "--seed-bars", help="Use only the first M bars of the seed.")


def _generation_options(settings: dict):
    """(Constraints, Sampling, instrument names, mix weights) from the command's options,
    taking those options out of `settings` (what is left goes to `generate` as it is)."""
    from music_lm.generation.constraints import (
        SEED_KEY,
        Constraints,
        parse_instrument,
        parse_key,
        parse_range,
    )
    from music_lm.generation.runner import Sampling, parse_temperature

    key, scale = settings.pop("key"), settings.pop("scale")
    chosen_scale = parse_key(key) if key is not None else None
    if scale is not None:  # Constraints checks the name
        chosen_scale = (chosen_scale[0] if chosen_scale else SEED_KEY, scale.strip().lower())
    instruments = settings.pop("instruments")
    names = [n for n in (instruments or "").split(",") if n.strip()]
    programs = frozenset(p for n in names for p in parse_instrument(n)) if names else None
    mix_weights = settings.pop("mix_weights")
    weights = None
    if mix_weights:
        try:
            weights = [float(w) for w in mix_weights.split(",")]
        except ValueError:
            raise typer.BadParameter(
                f"--mix-weights takes numbers such as 0.2,0.8, got {mix_weights!r}"
            ) from None
    pitch_range = settings.pop("pitch_range")
    constraints = Constraints(
        bars=settings.pop("bars"),
        scale=chosen_scale,
        pitch_range=parse_range(pitch_range) if pitch_range else None,
        instrument_ranges=settings.pop("instrument_ranges"),
        max_polyphony=settings.pop("max_polyphony"),
        instruments=programs,
        lock_tempo=settings.pop("lock_tempo"),
        lock_meter=settings.pop("lock_meter"),
        lock_key=settings.pop("lock_key"),
    )
    sampling = Sampling(
        parse_temperature(settings.pop("temperature")),
        settings.pop("top_k"),
        settings.pop("top_p"),
        settings.pop("min_p"),
    )
    return constraints, sampling, names, weights


def _header(style: str | None, tempo: float | None, meter: str | None, constraints, names):
    from music_lm.generation.constraints import instrument_program
    from music_lm.generation.runner import Header, _default_programs, _implied_key

    signature = (4, 4)
    if meter is not None:
        try:
            numerator, denominator = (int(x) for x in meter.split("/"))
            signature = (numerator, denominator)
        except ValueError:
            raise typer.BadParameter(f"--ts takes N/D such as 3/4, got {meter!r}") from None
    programs = tuple(instrument_program(n) for n in names) or _default_programs(constraints)
    return Header(style=style or "none", tempo_bpm=tempo or 120.0, time_signature=signature,
                  key=_implied_key(constraints), programs=programs)  # fmt: skip


def _variant_outputs(generation, stem: str, output: Path) -> list[tuple[Path, bytes]]:
    from music_lm.generation.runner import variant_files

    outputs = []
    for variant in generation.variants:
        for suffix, data in variant_files(generation, variant, stem).items():
            outputs.append((output / f"{stem}-{variant.index}{suffix}", data))
    return outputs


def _report(generation, stem: str, output: Path) -> None:
    for variant in generation.variants:
        note = f", {variant.retries} retries" if variant.retries else ""
        if variant.post_check != "ok":
            note += f", kept although it {variant.post_check}"
        typer.echo(f"{output / stem}-{variant.index}.mid: {variant.new_tokens} new tokens from bar "
                   f"{variant.continuation_bar}{note}")  # fmt: skip
    seconds, speed = generation.seconds, generation.tokens_per_s
    typer.echo(f"random seed {generation.settings['random_seed']}; {seconds:.1f} s, "
               f"{speed:,.0f} tokens/s", err=True)  # fmt: skip


def _generation_command(
    ctx: typer.Context,
    seeds: list[Path | None],
    output: Path,
    name: str | None,
    force: bool,
    model: list[str],
    device: str | None,
    run_options: dict,
    verb: str = "continued",
) -> None:
    import torch

    from music_lm.generation.constraints import ConstraintError
    from music_lm.generation.runner import GenerationError
    from music_lm.generation.runner import generate as run_generation
    from music_lm.model.folder import load_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = [load_model(m, device=device) for m in model]
    result = BatchResult()
    for seed in seeds:
        stem = name or (seed.stem if seed is not None else "generated")
        made: list = []

        def job(_source: Path, seed=seed, stem=stem, made=made) -> list[tuple[Path, bytes]]:
            generation = run_generation(seed, models=model, loaded=loaded, device=device,
                                        **run_options)  # fmt: skip
            made.append(generation)
            return _variant_outputs(generation, stem, output)

        failed = len(result.failed)
        source = seed if seed is not None else Path("<header>")
        run_batch(
            [source],
            job,
            result,
            force,
            errors=(GenerationError, ConstraintError),
            debug=debug_on(ctx),
        )
        if made and len(result.failed) == failed:
            _report(made[0], stem, output)
    _finish(result, verb)


Opt = typer.Option
MODEL_OPTION = Opt(
    ["default"],
    "--model",
    "-m",
    help="Model folder or run (default: the shipped model); repeat it to mix.",
)
BARS = Opt(8, "--bars", "-b", help="Exactly this many new bars.")
VARIANTS = Opt(1, "--variants", "-n", help="How many continuations.")
MIX = Opt(None, help="With several models: weights or schedule.")
MIX_WEIGHTS = Opt(None, help="With --mix weights: e.g. 0.2,0.3,0.5.")
STYLE = Opt(None, help="Style tag of the piece (e.g. bach).")
TEMPERATURE = Opt("1.0", help="T, or FIRST:LAST to ramp across the new bars.")
TOP_K = Opt(0, help="Sample among the k likeliest tokens (0: off).")
TOP_P = Opt(0.95, help="Nucleus sampling (1: off).")
MIN_P = Opt(0.0, help="Drop tokens below min-p x the likeliest (0: off).")
RANDOM_SEED = Opt(None, help="Random seed (default: drawn and printed).")
KEY = Opt(None, help="Keep to a key: TONIC:SCALE, e.g. D:minor.")
SCALE = Opt(None, help="Keep to a scale on the tonic of --key, or of the seed's key.")
RANGE = Opt(None, "--range", help="Pitch range of the melodic tracks, e.g. C3-C6.")
INSTRUMENT_RANGES = Opt(True, help="Keep each instrument in its playable range.")
POLYPHONY = Opt(None, help="At most N notes at once on a melodic track.")
INSTRUMENTS = Opt(None, help="Instruments that may play, e.g. piano,bass,drums.")
LOCK_TEMPO = Opt(True, "--lock-tempo/--free-tempo", help="No tempo changes.")
LOCK_METER = Opt(True, "--lock-meter/--free-meter", help="No meter changes.")
LOCK_KEY = Opt(True, "--lock-key/--free-key", help="No key changes.")
MAX_NEW = Opt(None, help="Token budget per variant (default: 256 per new bar).")
RETRIES = Opt(3, help="Redraws of a silent or copied continuation.")
DEVICE = Opt(None, help="cpu or cuda (default: cuda when there is one).")


def _run_generation(
    ctx: typer.Context, seeds, output, name, force, model, device, settings: dict, verb: str
):
    constraints, sampling, names, weights = _generation_options(settings)
    header = settings.pop("header", None)
    if header is not None:
        header = _header(settings["style"], *header, constraints, names)
    options = {"constraints": constraints, "sampling": sampling, "mix_weights": weights,
               "header": header, **settings}  # fmt: skip
    _generation_command(ctx, seeds, output, name, force, model, device, options, verb)


@app.command()
def generate(
    ctx: typer.Context,
    seed: Path | None = typer.Argument(
        None, help="A MIDI or token-text seed; without it the piece starts from a header."
    ),
    output: Path = Opt(DEFAULT_OUTPUT, "--output", "-o", help="Output folder."),
    bars: int = BARS,
    seed_bars: int | None = SEED_BARS,
    variants: int = VARIANTS,
    model: list[str] = MODEL_OPTION,
    mix: str | None = MIX,
    mix_weights: str | None = MIX_WEIGHTS,
    style: str | None = STYLE,
    temperature: str = TEMPERATURE,
    top_k: int = TOP_K,
    top_p: float = TOP_P,
    min_p: float = MIN_P,
    random_seed: int | None = RANDOM_SEED,
    key: str | None = KEY,
    scale: str | None = SCALE,
    pitch_range: str | None = RANGE,
    instrument_ranges: bool = INSTRUMENT_RANGES,
    max_polyphony: int | None = POLYPHONY,
    instruments: str | None = INSTRUMENTS,
    lock_tempo: bool = LOCK_TEMPO,
    lock_meter: bool = LOCK_METER,
    lock_key: bool = LOCK_KEY,
    tempo: float | None = Opt(None, help="Without a seed: the tempo in BPM (default 120)."),
    ts: str | None = Opt(None, "--ts", help="Without a seed: the time signature (default 4/4)."),
    max_new_tokens: int | None = MAX_NEW,
    retries: int = RETRIES,
    name: str | None = Opt(None, help="Output file stem (default: the seed's, or generated)."),
    device: str | None = DEVICE,
    force: bool = FORCE,
) -> None:
    """Continue a seed by exactly --bars bars; writes STEM-K.mid, .txt and .json per variant."""
    settings = dict(locals())
    for option in ("ctx", "seed", "output", "name", "force", "model", "device", "tempo", "ts"):
        settings.pop(option)
    if seed is None:
        settings["header"] = (tempo, ts)
    _run_generation(ctx, [seed], output, name, force, model, device, settings, "generated")


@app.command("continue")
def continue_(
    ctx: typer.Context,
    source: Path = typer.Argument(DEFAULT_INPUT, help="A folder of MIDI files (or one file)."),
    output: Path = Opt(DEFAULT_OUTPUT, "--output", "-o", help="Output folder."),
    bars: int = BARS,
    seed_bars: int | None = SEED_BARS,
    variants: int = VARIANTS,
    model: list[str] = MODEL_OPTION,
    mix: str | None = MIX,
    mix_weights: str | None = MIX_WEIGHTS,
    style: str | None = STYLE,
    temperature: str = TEMPERATURE,
    top_k: int = TOP_K,
    top_p: float = TOP_P,
    min_p: float = MIN_P,
    random_seed: int | None = RANDOM_SEED,
    key: str | None = KEY,
    scale: str | None = SCALE,
    pitch_range: str | None = RANGE,
    instrument_ranges: bool = INSTRUMENT_RANGES,
    max_polyphony: int | None = POLYPHONY,
    instruments: str | None = INSTRUMENTS,
    lock_tempo: bool = LOCK_TEMPO,
    lock_meter: bool = LOCK_METER,
    lock_key: bool = LOCK_KEY,
    max_new_tokens: int | None = MAX_NEW,
    retries: int = RETRIES,
    device: str | None = DEVICE,
    force: bool = FORCE,
) -> None:
    """Continue every MIDI file of a folder, with the options of `generate`."""
    settings = dict(locals())
    for option in ("ctx", "source", "output", "force", "model", "device"):
        settings.pop(option)
    seeds = find_inputs(source, MIDI_SUFFIXES, exclude=output)
    _run_generation(ctx, seeds, output, None, force, model, device, settings, "continued")


# ---- hear it, see it, take it to a DAW ----

MIDI_SOURCE_HELP = "A MIDI file or a folder of them (recursive)."


def _outputs_of(source: Path, output: Path | None, suffix: str):
    """Inputs and where each one's output goes (as for encode)."""
    inputs = find_inputs(source, MIDI_SUFFIXES, exclude=output)
    return inputs, lambda path: _target(source, path, output, suffix)


@app.command()
def render(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help=MIDI_SOURCE_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output audio file or folder (default: midi_out/)."
    ),
    soundfont: Path | None = typer.Option(
        None, "--soundfont", help="A .sf2 soundfont (default: FluidR3_GM, else TimGM6mb)."
    ),
    sample_rate: int = typer.Option(44100, "--sample-rate", help="Samples per second."),
    audio_format: str | None = typer.Option(
        None, "--format", help="wav, flac or ogg (default: from -o's suffix, else wav)."
    ),
    force: bool = FORCE,
) -> None:
    """MIDI -> audio through FluidSynth and a General MIDI soundfont."""
    from music_lm.render.audio import (
        FORMATS,
        AudioError,
        audio_format_of,
        encode_audio,
        render_midi,
    )

    fmt = audio_format or (
        audio_format_of(output) if output is not None and output.suffix else "wav"
    )
    if fmt not in FORMATS:  # before any work
        raise AudioError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    inputs, target = _outputs_of(source, output, f".{fmt}")

    def job(path: Path) -> list:
        rendered = render_midi(path, soundfont, sample_rate)
        typer.echo(f"{path}: {rendered.seconds:.1f} s of audio, {rendered.notes} notes", err=True)
        return [(target(path), encode_audio(rendered, fmt))]

    _finish(
        run_batch(inputs, job, BatchResult(), force, errors=(AudioError,), debug=debug_on(ctx)),
        "rendered",
    )


@app.command()
def pianoroll(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help=MIDI_SOURCE_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .png file or folder (default: midi_out/)."
    ),
    continuation_from: int | None = typer.Option(
        None,
        "--continuation-from",
        help="Shade the bars before this one as the seed "
        "(default: where a generated file's continuation marker is).",
    ),
    width: int = typer.Option(1600, "--width", help="Width in pixels."),
    height: int = typer.Option(900, "--height", help="Height in pixels."),
    force: bool = FORCE,
) -> None:
    """MIDI -> a piano-roll PNG: a colour per track, drums in their own lane, bar lines."""
    from music_lm.render.pianoroll import PianoRollError, midi_pianoroll

    inputs, target = _outputs_of(source, output, ".png")

    def job(path: Path) -> list:
        png = midi_pianoroll(path, continuation_from, width_px=width, height_px=height)
        return [(target(path), png)]

    _finish(
        run_batch(inputs, job, BatchResult(), force, errors=(PianoRollError,), debug=debug_on(ctx)),
        "drew",
    )


@app.command()
def export(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help=MIDI_SOURCE_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .mid file or folder (default: midi_out/)."
    ),
    type0: bool = typer.Option(False, "--type0", help="Format 0: every event in one track."),
    musicxml_path: Path | None = typer.Option(
        None, "--musicxml", help="Also write MusicXML (a file, or a folder for a folder)."
    ),
    force: bool = FORCE,
) -> None:
    """MIDI -> DAW-ready MIDI (and MusicXML for notation programs)."""
    from music_lm.render.export import ExportError, daw_midi, export_midi, musicxml

    inputs, target = _outputs_of(source, output, ".mid")
    single = source.is_file()

    def job(path: Path) -> list:
        midi, read = export_midi(path)
        out = [(target(path), daw_midi(read, midi_format=0) if type0 else midi)]
        if musicxml_path is not None:
            xml_target = (
                single_output(path, musicxml_path, DEFAULT_OUTPUT, ".musicxml")
                if single
                else output_for(source, path, musicxml_path, ".musicxml")
            )
            # from the format 1 file: music21 wants a track per part
            out.append((xml_target, musicxml(midi, str(path))))
        return out

    _finish(
        run_batch(inputs, job, BatchResult(), force, errors=(ExportError,), debug=debug_on(ctx)),
        "exported",
    )


def main() -> None:
    """Entry point. Typer handles usage errors itself (usage line, exit 2); a bad input or
    output becomes one line naming the file, and exit code 2 (see _Commands)."""
    try:
        app()  # standalone: exits with the command's code
    except BrokenPipeError:
        # The reader of our output went away (`music-lm inspect | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
