"""`music-lm infill`: draw some tracks of a piece anew over a region of bars."""

from __future__ import annotations

from pathlib import Path

import typer

from music_lm.cli.generation import (
    CHORD_STRICT,
    CHORD_TRACKS,
    CHORDS,
    CHORDS_FROM,
    DEVICE,
    DRUM_KEYS,
    DRUM_LENGTH,
    INSTRUMENT_RANGES,
    KEY,
    LOOP_GUARD,
    MIN_P,
    POLYPHONY,
    RANDOM_SEED,
    RANGE,
    SCALE,
    SEED_SUSTAIN,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    UNISONS,
    VARIANTS,
    Opt,
    variant_outputs,
)
from music_lm.cli.root import DEFAULT_OUTPUT, FORCE, app, debug_on, finish_batch
from music_lm.files import BatchResult, run_batch


def _report(generation, stem: str, output: Path) -> None:
    region = generation.settings["region"]
    tracks = ", ".join(f"{t['track']} ({t['instrument']}{', new' if t['new'] else ''})"
                       for t in generation.settings["tracks"])  # fmt: skip
    what = f"tracks {tracks}"
    if generation.settings["mode"] == "bars":
        sides = "both sides" if generation.settings.get("both_sides") else "what came before"
        what = f"every track (from {sides})"
    for variant in generation.variants:
        typer.echo(f"{output / stem}-{variant.index}.mid: {what} redrawn over bars "
                   f"{region['bars'][0]}-{region['bars'][1]}")  # fmt: skip
    typer.echo(f"random seed {generation.settings['random_seed']}; {generation.seconds:.1f} s, "
               f"{generation.tokens_per_s:,.0f} tokens/s", err=True)  # fmt: skip


@app.command()
def infill(
    ctx: typer.Context,
    song: Path = typer.Argument(..., help="A MIDI or token-text piece."),
    tracks: str | None = Opt(
        None,
        "--tracks",
        "-t",
        help="Tracks to redraw: numbers as in the token text (1 = t1) or instruments, e.g. "
        "2,bass; an instrument the piece lacks adds a track. Without it: every track over "
        "--bars, reading the bars after them too with a model trained on the "
        "fill-in-the-middle form (the default), else from what comes before only.",
    ),
    bars: str | None = Opt(
        None,
        "--bars",
        "-b",
        help="The region, A-B (bars from 1, both included); with --tracks the default is "
        "the whole piece.",
    ),
    output: Path = Opt(DEFAULT_OUTPUT, "--output", "-o", help="Output folder."),
    variants: int = VARIANTS,
    model: str = Opt(
        "default", "--model", "-m", help="Model folder or run (default: the shipped model)."
    ),
    sustain: bool = SEED_SUSTAIN,
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
    unisons: bool = UNISONS,
    drum_keys: str = DRUM_KEYS,
    drum_length: str = DRUM_LENGTH,
    loop_guard: int | None = LOOP_GUARD,
    chords: str | None = CHORDS,
    chords_from: Path | None = CHORDS_FROM,
    chord_strict: bool = CHORD_STRICT,
    chord_tracks: str | None = CHORD_TRACKS,
    name: str | None = Opt(None, help="Output file stem (default: the song's)."),
    device: str | None = DEVICE,
    force: bool = FORCE,
) -> None:
    """Redraw --tracks over --bars, keeping every other track note for note (without
    --tracks: every track over --bars); writes STEM-K.mid (markers at the region's start and
    end), .txt and .json per variant."""
    # torch and the model load only when an infill runs
    from music_lm.generation.constraints import ConstraintError
    from music_lm.generation.infill import infill as run_infill
    from music_lm.generation.infill import infill_files
    from music_lm.generation.options import constraints_from_options, sampling_from_options
    from music_lm.generation.settings import GenerationError

    made: list = []
    stem = name or song.stem

    def job(_source: Path) -> list[tuple[Path, bytes]]:
        constraints = constraints_from_options(
            bars=1, key=key, scale=scale, pitch_range=pitch_range,
            instrument_ranges=instrument_ranges, max_polyphony=max_polyphony, unisons=unisons,
            drum_keys=drum_keys, drum_length=drum_length,
            **({} if loop_guard is None else {"loop_guard": loop_guard}),
            chords=chords, chords_from=chords_from, chord_strict=chord_strict,
            chord_tracks=chord_tracks,
        )  # fmt: skip
        sampling = sampling_from_options(temperature, top_k, top_p, min_p)
        generation = run_infill(song, tracks, bars=bars, constraints=constraints,
                                sampling=sampling, models=model, variants=variants,
                                random_seed=random_seed, device=device,
                                sustain=sustain)  # fmt: skip
        made.append(generation)
        return variant_outputs(generation, stem, output, infill_files)

    result = BatchResult()
    run_batch([song], job, result, force, errors=(GenerationError, ConstraintError),
              debug=debug_on(ctx))  # fmt: skip
    if made and not result.failed:
        _report(made[0], stem, output)
    finish_batch(result, "filled")
