"""The `music-lm` command: thin Typer commands over importable functions.

Every failure caused by the input is one line on stderr naming the file and the
problem, and exit code 2 (`--debug` shows the traceback). Batches over folders
carry on past a bad file and list the failures at the end.
"""

from __future__ import annotations

import os
import sys
import typing
from pathlib import Path

import typer
from typer.core import TyperGroup

from music_lm import __version__
from music_lm.errors import MusicLmError
from music_lm.files import (
    STDIN,
    BatchResult,
    output_for,
    single_output,
)
from music_lm.limits import LimitError, limits, parse_limits, set_limits

DEFAULT_INPUT = Path("midi_in")
DEFAULT_OUTPUT = Path("midi_out")
EXIT_BAD_INPUT = 2


def debug_on(ctx: typer.Context) -> bool:
    """Whether `music-lm --debug` was given: read from the command's context, so that no
    module keeps it between calls."""
    return bool(ctx.find_root().params.get("debug"))


def _element_name(param) -> str:
    """`str` for an option of `list[str]`: the type of one of its values."""
    args = typing.get_args(param.type_descriptor.annotation)
    return getattr(args[0], "__name__", "text") if args else "text"


def plain_flags(command: typer.core.TyperCommand | TyperGroup) -> None:
    """Blank the type Typer prints after an on/off flag (`--force <bool>`: a flag takes no
    value, so `<bool>` only misleads), and show a repeatable option's value as one value that
    may repeat (`<text> ...`, not `<list[str]>`), in `command` and every command under it,
    --help too."""
    # --help is made on first use; made here, it is the one every later use gets
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif getattr(param, "multiple", False) and param.metavar is None:
            # one value a use (`-w bach=0.3 -w irish=0.7`), not a Python list
            param.metavar = f"<{_element_name(param)}> ..."
        elif isinstance(param, typer.core.TyperArgument) and param.nargs != 1:
            # `sources...  <Path>`: the name already says it repeats; a metavar would rename it
            shown = f"<{_element_name(param)}>"
            param.display_type_rich = lambda ctx=None, shown=shown: shown
    for sub in getattr(command, "commands", {}).values():
        plain_flags(sub)


class _Commands(TyperGroup):
    """The command group: an error music_lm raises on purpose (MusicLmError) or an OS
    error becomes one line naming the file and exit code 2; `--debug` shows the
    traceback instead. Anything else is a bug and keeps its traceback."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        plain_flags(self)  # the whole tree is built by now: Typer builds it bottom up

    def invoke(self, ctx: typer.Context):
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


def held_by_pedal(what: str, why: str):
    """--sustain/--no-sustain where MIDI is read to make music from (`what`: a seed, a
    folder to train on). On by default (`why` says why there): the token format has no
    pedal, so a pedalled piano read note-off by note-off loses the notes the pedal holds.
    encode and corpus build keep each note-off as written unless --sustain."""
    return typer.Option(
        True,
        "--sustain/--no-sustain",
        help=f"Apply the sustain pedal (CC64) to {what}: a note sounds on while it is down. "
        f"On by default: {why} (encode and corpus build apply it only with --sustain).",
    )


def finish_batch(result: BatchResult, verb: str) -> None:
    for _path, message in result.failed:
        typer.echo(f"music-lm: error: {message}", err=True)
    if result.done + len(result.failed) > 1:
        typer.echo(f"{verb} {result.done} file(s); {len(result.failed)} failed", err=True)
    if result.failed:
        raise typer.Exit(EXIT_BAD_INPUT)


def batch_target(source: Path, path: Path, output: Path | None, suffix: str) -> Path:
    """Where encode/decode write the output of `path`: for a single input, -o itself (or
    a file in it when it is a folder); for a folder, the same layout under -o."""
    if source == STDIN or source.is_file():
        return single_output(path, output, DEFAULT_OUTPUT, suffix)
    return output_for(source, path, output or DEFAULT_OUTPUT, suffix)


def main() -> None:
    """Entry point. Typer handles usage errors itself (usage line, exit 2); a bad input or
    output becomes one line naming the file, and exit code 2 (see _Commands)."""
    try:
        app()  # standalone: exits with the command's code
    except BrokenPipeError:
        # The reader of our output went away (`music-lm inspect | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
