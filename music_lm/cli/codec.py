"""`music-lm encode | decode | inspect | roundtrip | validate`: MIDI <-> token text."""

from __future__ import annotations

from pathlib import Path

import typer

from music_lm.api import text_to_midi
from music_lm.cli.root import (
    DEFAULT_INPUT,
    DEFAULT_OUTPUT,
    FORCE,
    SUSTAIN,
    app,
    batch_target,
    debug_on,
    finish_batch,
)
from music_lm.files import (
    MIDI_SUFFIXES,
    STDIN,
    TEXT_SUFFIXES,
    BatchResult,
    find_inputs,
    output_for,
    read_input_bytes,
    read_text_file,
    run_batch,
)
from music_lm.tokens.codec import CodecError
from music_lm.tokens.encoded import encode_midi
from music_lm.tokens.report import format_inspection, verify_round_trip
from music_lm.tokens.validate import validate as validate_text


def _encode_input(path: Path, sustain: bool = False):
    """encode_midi of a file, or of the bytes on stdin for '-'."""
    if path == STDIN:
        return encode_midi(read_input_bytes(path), name="<stdin>", sustain=sustain)
    return encode_midi(path, sustain=sustain)


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
        return [(batch_target(source, path, output, ".txt"), _encode_input(path, sustain).text)]

    finish_batch(run_batch(inputs, job, BatchResult(), force, debug=debug_on(ctx)), "encoded")


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
        return [(batch_target(source, path, output, ".mid"), text_to_midi(read_text_file(path)))]

    finish_batch(run_batch(inputs, job, BatchResult(), force, debug=debug_on(ctx)), "decoded")


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

    finish_batch(
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

    finish_batch(run_batch(inputs, job, BatchResult(), force, debug=debug_on(ctx)), "round-tripped")


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
    finish_batch(result, "validated")
