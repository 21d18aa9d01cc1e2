"""Files and folders for the CLI and the page: find inputs, map them to outputs, and write.

Jobs compute their outputs; one writer checks every planned output before it
writes any (never the input itself, never two inputs onto one output, never an
existing file unless asked) and writes each through a temporary file renamed
into place, so there is never a partial output.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from music_lm.errors import InputError, MusicLmError
from music_lm.limits import check_size, limits

MIDI_SUFFIXES = (".mid", ".midi", ".smf")
TEXT_SUFFIXES = (".txt",)
STDIN = Path("-")

# The errors that mean "this input is bad", as opposed to a bug: MidiError, GrammarError,
# CodecError and LimitError are InputErrors (read_text_file raises one for text that is not
# UTF-8); UnicodeDecodeError is for the readers that decode text themselves.
INPUT_ERRORS = (InputError, UnicodeDecodeError)

Output = tuple[Path, bytes | str]  # where, and what


class OutputExistsError(MusicLmError, FileExistsError):
    """An output would overwrite an existing file without --force."""


class OutputConflictError(MusicLmError, OSError):
    """An output would overwrite an input, or two inputs would write one output."""


class NoInputsError(MusicLmError, FileNotFoundError):
    """A folder holds no file of the kind a command reads."""


def find_inputs(source: Path, suffixes: tuple[str, ...], exclude: Path | None = None) -> list[Path]:
    """`source` itself if it is a file, else its files with those suffixes, recursively,
    sorted, leaving out anything under `exclude` (an output folder inside `source`)."""
    if source == STDIN or source.is_file():
        return [source]
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if not source.is_dir():
        raise NoInputsError(f"{source}: not a file or a folder")
    skip = exclude.resolve() if exclude is not None else None
    if skip == source.resolve():
        skip = None  # writing next to the inputs: the per-file checks guard them
    found = sorted(
        p
        for p in source.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and (skip is None or not p.resolve().is_relative_to(skip))
    )
    if not found:
        kinds = "/".join(suffixes)
        raise NoInputsError(f"{source}: no {kinds} files in this folder")
    return found


def output_for(source_root: Path, source: Path, out_root: Path, suffix: str) -> Path:
    """Where the output of `source` goes in the folder `out_root`: the same relative path,
    with the new suffix (a single file or stdin goes straight into it)."""
    if source == STDIN:
        return out_root / f"stdin{suffix}"
    relative = source.relative_to(source_root) if source_root.is_dir() else Path(source.name)
    return (out_root / relative).with_suffix(suffix)


def single_output(source: Path, output: Path | None, default_root: Path, suffix: str) -> Path:
    """The output of a single input: `output` itself, or a file in it when it is a folder."""
    stem = "stdin" if source == STDIN else source.stem
    if output is None:
        return default_root / f"{stem}{suffix}"
    if output.is_dir():
        return output / f"{stem}{suffix}"
    return output


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    # os.open with 0o666 gives the permissions the user's umask allows, like open().
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_text_file(path: Path) -> str:
    """Token text of a file (or stdin), within the size limit; GrammarError when the bytes
    are not UTF-8."""
    data = read_input_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 token text") from None


def read_input_bytes(path: Path) -> bytes:
    """A file's bytes, refused by its size before it is read when over the limit."""
    if path == STDIN:
        most = limits().file_bytes + 1
        stream = getattr(sys.stdin, "buffer", None)  # a text-only stdin (tests, notebooks)
        data = stream.read(most) if stream is not None else sys.stdin.read(most).encode()
        check_size(len(data), "<stdin>")
        return data
    check_size(path.stat().st_size, str(path))
    return path.read_bytes()


@dataclass
class BatchResult:
    """What a batch over many inputs did: the inputs handled, the outputs claimed, and
    the inputs that failed."""

    failed: list[tuple[Path, str]] = field(default_factory=list)
    claimed: dict[Path, Path] = field(default_factory=dict)  # output -> the input it is from
    done: int = 0  # inputs handled without error

    @property
    def ok(self) -> bool:
        return not self.failed


def _check_outputs(source: Path, outputs: Iterable[Output], force: bool, result: BatchResult):
    source_file = None if source == STDIN else source.resolve()
    for target, _ in outputs:
        resolved = target.resolve()
        if resolved == source_file:
            raise OutputConflictError(f"{target}: is the input file; choose another output")
        if resolved in result.claimed:
            other = result.claimed[resolved]
            raise OutputConflictError(f"{target}: is also the output of {other}; rename one")
        if target.is_dir():
            raise OutputConflictError(f"{target}: is a folder; give a file name for the output")
        if target.exists() and not force:
            raise OutputExistsError(f"{target}: already exists (use --force to overwrite)")


def run_batch(
    inputs: list[Path],
    job: Callable[[Path], list[Output]],
    result: BatchResult,
    force: bool = False,
    errors: tuple[type[Exception], ...] = (),
    debug: bool = False,
) -> BatchResult:
    """Run `job` on each input and write its outputs once all of them pass the checks.

    A bad input (an error of INPUT_ERRORS or `errors`) is recorded and the batch carries
    on; nothing of it is written. With `debug` (`music-lm --debug`) the batch stops at
    the first error instead, with its traceback.
    """
    for source in inputs:
        try:
            outputs = job(source)
            _check_outputs(source, outputs, force, result)
            for target, data in outputs:
                write_atomic(target, data)
                result.claimed[target.resolve()] = source
        except BrokenPipeError:
            raise  # the reader went away: not this input's fault
        except (OutputExistsError, OutputConflictError) as err:
            result.failed.append((source, str(err)))  # names the output, which is the problem
        except (*INPUT_ERRORS, *errors, OSError) as err:
            if debug:
                raise
            result.failed.append((source, _with_name(source, err)))
        else:
            result.done += 1
    return result


def _with_name(source: Path, err: Exception) -> str:
    message = str(err)
    name = "<stdin>" if source == STDIN else str(source)
    return message if message.startswith(name) else f"{name}: {message}"
