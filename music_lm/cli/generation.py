"""`music-lm generate | continue`: grammar-constrained continuations of a seed."""

from __future__ import annotations

from pathlib import Path

import typer

from music_lm.cli.root import (
    DEFAULT_INPUT,
    DEFAULT_OUTPUT,
    FORCE,
    app,
    debug_on,
    finish_batch,
    held_by_pedal,
)
from music_lm.files import (
    MIDI_SUFFIXES,
    BatchResult,
    find_inputs,
    run_batch,
)

SEED_BARS = typer.Option(None, "--seed-bars", help="Use only the first M bars of the seed.")
SEED_SUSTAIN = held_by_pedal(
    "a MIDI seed", "the output has no pedal, and the seed's held notes would be cut short"
)


def _generation_options(settings: dict):
    """(Constraints, Sampling, instrument names, mix weights) from the command's options,
    taking those options out of `settings` (what is left goes to `generate` as it is)."""
    # the command's stage loads when it runs, so --help and the codec commands stay fast
    from music_lm.generation.options import (
        constraints_from_options,
        instrument_names,
        parse_mix_weights,
        sampling_from_options,
    )
    from music_lm.generation.settings import GenerationError

    names = instrument_names(settings["instruments"])
    constraints = constraints_from_options(
        bars=settings.pop("bars"),
        key=settings.pop("key"),
        scale=settings.pop("scale"),
        pitch_range=settings.pop("pitch_range"),
        instrument_ranges=settings.pop("instrument_ranges"),
        max_polyphony=settings.pop("max_polyphony"),
        instruments=settings.pop("instruments"),
        lock_tempo=settings.pop("lock_tempo"),
        lock_meter=settings.pop("lock_meter"),
        lock_key=settings.pop("lock_key"),
        unisons=settings.pop("unisons"),
        drum_keys=settings.pop("drum_keys"),
        drum_length=settings.pop("drum_length"),
        hold_past_end=settings.pop("hold_past_end"),
        **_given(loop_guard=settings.pop("loop_guard")),
        chords=settings.pop("chords"),
        chords_from=settings.pop("chords_from"),
        chord_strict=settings.pop("chord_strict"),
        chord_tracks=settings.pop("chord_tracks"),
    )
    sampling = sampling_from_options(
        settings.pop("temperature"),
        settings.pop("top_k"),
        settings.pop("top_p"),
        settings.pop("min_p"),
    )
    try:
        weights = parse_mix_weights(settings.pop("mix_weights"))
    except GenerationError as err:  # a usage error, as Typer reports its own
        raise typer.BadParameter(str(err)) from None
    return constraints, sampling, names, weights


def _given(**options) -> dict:
    """The options the user gave (None: not given, so the function's own default holds)."""
    return {name: value for name, value in options.items() if value is not None}


def _header(style: str | None, tempo: float | None, meter: str | None, constraints, names):
    # the command's stage loads when it runs, so --help and the codec commands stay fast
    from music_lm.generation.options import header_from_options, parse_meter
    from music_lm.generation.settings import GenerationError

    try:
        signature = parse_meter(meter) if meter is not None else None
    except GenerationError as err:  # a usage error, as Typer reports its own
        raise typer.BadParameter(str(err)) from None
    return header_from_options(style, tempo, signature, None, names, constraints)


def variant_outputs(generation, stem: str, output: Path, files_of=None) -> list[tuple[Path, bytes]]:
    """(path, bytes) of every file of every variant: `STEM-K.mid/.txt/.json` in `output`, as
    `files_of` writes them (`variant_files`; `infill_files` for `music-lm infill`)."""
    if files_of is None:  # the stage loads when the command runs: --help stays fast
        from music_lm.generation.outputs import variant_files as files_of

    return [
        (output / f"{stem}-{variant.index}{suffix}", data)
        for variant in generation.variants
        for suffix, data in files_of(generation, variant, stem).items()
    ]


def _report(generation, stem: str, output: Path) -> None:
    for variant in generation.variants:
        note = f", {variant.retries} retries" if variant.retries else ""
        if variant.post_check != "ok":
            note += f", kept although it {variant.post_check}"
        typer.echo(f"{output / stem}-{variant.index}.mid: {variant.new_tokens} new tokens from bar "
                   f"{variant.continuation_bar}{note}")  # fmt: skip
    for adaptation in generation.settings.get("adaptation") or []:
        typer.echo(f"adapted to the seed: {adaptation['steps']} steps ({adaptation['method']}) in "
                   f"{adaptation['seconds']:.1f} s, training loss {adaptation['first_loss']:.2f} "
                   f"-> {adaptation['last_loss']:.2f}", err=True)  # fmt: skip
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
    # torch and the model load only when a generation runs
    import torch

    from music_lm.generation.constraints import ConstraintError
    from music_lm.generation.runner import generate as run_generation
    from music_lm.generation.settings import GenerationError
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
            return variant_outputs(generation, stem, output)

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
    finish_batch(result, verb)


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
ADAPT = Opt(0, "--adapt", metavar="STEPS",
            help="First fine-tune a copy of the model on the seed for STEPS steps "
            "(0: off; about 0.15 s a step on 2 cores).")  # fmt: skip
UNISONS = Opt(False, "--unisons/--no-unisons", help="Allow a pitch twice at one onset on a track.")
DRUM_KEYS = Opt("gm", "--drum-keys", help="Drum keys: gm (the GM kit), seed (the seed's) or any.")
DRUM_LENGTH = Opt("auto", "--drum-length", help="Drum notes' length: auto, any or quarters (1/4).")
HOLD_PAST_END = Opt(False, "--hold-past-end", help="Let notes sound past the last new bar.")
LOOP_GUARD = Opt(
    None,
    "--loop-guard",
    metavar="N",
    help="Longest run of a repeated block of tokens (default 32; 0: off).",
)

CHORDS = Opt(
    None,
    "--chords",
    help="Lock melodic notes to chords, one per bar, cycling: "
    '"C G Am F"; | splits a bar: "C|G Am".',
)
CHORDS_FROM = Opt(None, "--chords-from", help="Read the chords from a text file, one line per bar.")
CHORD_STRICT = Opt(
    False,
    "--chord-strict",
    help="Chord tones only (default: off-beat passing notes may leave the chord).",
)
CHORD_TRACKS = Opt(None, "--chord-tracks",
                   help="Tracks the chords lock: numbers (1 = t1) or instruments, e.g. 1,bass "
                   "(default: every melodic track).")  # fmt: skip


def _run_generation(
    ctx: typer.Context, seeds, output, name, force, model, device, settings: dict, verb: str
):
    # checked once, before any seed is read: a bad --adapt is the command's error, not a seed's
    from music_lm.training.adapt import check_adapt_steps

    check_adapt_steps(settings["adapt"])
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
    sustain: bool = SEED_SUSTAIN,
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
    unisons: bool = UNISONS,
    drum_keys: str = DRUM_KEYS,
    drum_length: str = DRUM_LENGTH,
    hold_past_end: bool = HOLD_PAST_END,
    loop_guard: int | None = LOOP_GUARD,
    chords: str | None = CHORDS,
    chords_from: Path | None = CHORDS_FROM,
    chord_strict: bool = CHORD_STRICT,
    chord_tracks: str | None = CHORD_TRACKS,
    adapt: int = ADAPT,
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
    sustain: bool = SEED_SUSTAIN,
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
    unisons: bool = UNISONS,
    drum_keys: str = DRUM_KEYS,
    drum_length: str = DRUM_LENGTH,
    hold_past_end: bool = HOLD_PAST_END,
    loop_guard: int | None = LOOP_GUARD,
    chords: str | None = CHORDS,
    chords_from: Path | None = CHORDS_FROM,
    chord_strict: bool = CHORD_STRICT,
    chord_tracks: str | None = CHORD_TRACKS,
    adapt: int = ADAPT,
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
