"""The `music-lm` command: thin Typer commands over importable functions.

Every failure caused by the input is one line on stderr naming the file and the
problem, and exit code 2 (`--debug` shows the traceback). Batches over folders
carry on past a bad file and list the failures at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from music_lm.api import encode_midi, inspect_midi, text_to_midi
from music_lm.files import (
    INPUT_ERRORS,
    MIDI_SUFFIXES,
    TEXT_SUFFIXES,
    BatchResult,
    find_inputs,
    output_for,
    read_text_file,
    run_batch,
    write_atomic,
)
from music_lm.grammar import validate as validate_text
from music_lm.report import format_inspection, verify_round_trip

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


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    _state["debug"] = debug


FORCE = typer.Option(False, "--force", "-f", help="Overwrite existing output files.")


def _finish(result: BatchResult, verb: str) -> None:
    for _path, message in result.failed:
        typer.echo(f"music-lm: error: {message}", err=True)
    if len(result.written) + len(result.failed) > 1:
        typer.echo(f"{verb} {len(result.written)} file(s); {len(result.failed)} failed", err=True)
    if result.failed:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def encode(
    source: Path = typer.Argument(DEFAULT_INPUT, help="A MIDI file or a folder of them."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .txt file, or folder for a folder input."
    ),
    force: bool = FORCE,
) -> None:
    """MIDI -> token text. A file prints to stdout unless -o is given."""
    inputs = find_inputs(source, MIDI_SUFFIXES)
    if source.is_file() and output is None:
        typer.echo(encode_midi(source).text, nl=False)
        return
    if source.is_file():
        write_atomic(output, encode_midi(source).text, force)
        return
    out_root = output or DEFAULT_OUTPUT

    def job(path: Path):
        target = output_for(source, path, out_root, ".txt")
        write_atomic(target, encode_midi(path).text, force)
        yield target

    _finish(run_batch(inputs, job, BatchResult()), "encoded")


@app.command()
def decode(
    source: Path = typer.Argument(..., help="A token-text file, a folder of them, or - (stdin)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .mid file, or folder (default: midi_out/)."
    ),
    force: bool = FORCE,
) -> None:
    """Token text -> DAW-ready MIDI."""
    if str(source) == "-":
        text = sys.stdin.read()
        target = output or DEFAULT_OUTPUT / "stdin.mid"
        write_atomic(target, _decode_named(text, "<stdin>"), force)
        return
    inputs = find_inputs(source, TEXT_SUFFIXES)
    out_root = DEFAULT_OUTPUT if output is None else output

    def job(path: Path):
        if source.is_file() and output is not None:
            target = output
        else:
            target = output_for(source, path, out_root, ".mid")
        write_atomic(target, _decode_named(read_text_file(path), str(path)), force)
        yield target

    _finish(run_batch(inputs, job, BatchResult()), "decoded")


def _decode_named(text: str, name: str) -> bytes:
    try:
        return text_to_midi(text)
    except INPUT_ERRORS as err:
        raise type(err)(f"{name}: {err}") from None


@app.command()
def inspect(
    source: Path = typer.Argument(DEFAULT_INPUT, help="A MIDI file or a folder of them."),
) -> None:
    """Summary of a MIDI file and the codec's round-trip report."""
    result = BatchResult()

    def job(path: Path):
        typer.echo(inspect_midi(path))
        typer.echo()
        yield path

    _finish(run_batch(find_inputs(source, MIDI_SUFFIXES), job, result), "inspected")


@app.command()
def roundtrip(
    source: Path = typer.Argument(DEFAULT_INPUT, help="A MIDI file or a folder of them."),
    output: Path = typer.Option(DEFAULT_OUTPUT, "--output", "-o", help="Output folder."),
    force: bool = FORCE,
) -> None:
    """MIDI -> text -> MIDI into a folder (.txt and .mid per input), with each report."""

    def job(path: Path):
        encoded = encode_midi(path)
        check = verify_round_trip(encoded)
        text_path = output_for(source, path, output, ".txt")
        midi_path = text_path.with_suffix(".mid")
        write_atomic(text_path, encoded.text, force)
        write_atomic(midi_path, text_to_midi(encoded.text), force)
        typer.echo(format_inspection(encoded, check))
        typer.echo(f"  wrote {text_path} and {midi_path}\n")
        yield text_path
        yield midi_path

    _finish(run_batch(find_inputs(source, MIDI_SUFFIXES), job, BatchResult()), "wrote")


@app.command()
def validate(
    sources: list[Path] = typer.Argument(..., help="Token-text files or folders."),
) -> None:
    """Check token text against the grammar; an error names the token and what was expected."""
    result = BatchResult()
    for source in sources:

        def job(path: Path):
            validate_text(read_text_file(path))
            typer.echo(f"{path}: valid")
            yield path

        run_batch(find_inputs(source, TEXT_SUFFIXES), job, result)
    _finish(result, "validated")


def main() -> None:
    """Entry point. Typer handles usage errors itself (usage line, exit 2); a bad input or
    output becomes one line naming the file, and exit code 2."""
    try:
        app()  # standalone: exits with the command's code
    except (*INPUT_ERRORS, OSError) as err:  # OutputExistsError is an OSError
        if _state["debug"]:
            raise
        typer.echo(f"music-lm: error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
