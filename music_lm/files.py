"""Files and folders for the CLI and the page: find inputs, map them to outputs, write
atomically (a temporary file renamed into place: never a partial output), and
never overwrite what exists unless asked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from music_lm.codec import CodecError
from music_lm.grammar import GrammarError
from music_lm.midi_io import MidiError

MIDI_SUFFIXES = (".mid", ".midi", ".smf")
TEXT_SUFFIXES = (".txt",)

# The errors that mean "this input is bad", as opposed to a bug.
INPUT_ERRORS = (MidiError, GrammarError, CodecError, UnicodeDecodeError)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class OutputExistsError(FileExistsError):
    """An output would overwrite an existing file without --force."""


def find_inputs(source: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """`source` itself if it is a file, else its files with those suffixes, recursively, sorted."""
    if source.is_file():
        return [source]
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    return sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def output_for(source_root: Path, source: Path, out_root: Path, suffix: str) -> Path:
    """Where the output of `source` goes: same relative path under `out_root`, new suffix."""
    relative = source.relative_to(source_root) if source_root.is_dir() else Path(source.name)
    return (out_root / relative).with_suffix(suffix)


def write_atomic(path: Path, data: bytes | str, force: bool = False) -> None:
    """Write `data` to `path` through a temporary file and a rename.

    Raises OutputExistsError when `path` exists and `force` is false.
    """
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file name for the output")
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GrammarError(f"{path}: not UTF-8 token text") from None


@dataclass
class BatchResult:
    """What a batch over many inputs did: the outputs written and the inputs that failed."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def run_batch(
    inputs: list[Path], job: Callable[[Path], Iterator[Path]], result: BatchResult
) -> BatchResult:
    """Run `job` on each input; a bad input is recorded and the batch carries on."""
    for source in inputs:
        try:
            result.written.extend(job(source))
        except (*INPUT_ERRORS, OSError) as err:
            result.failed.append((source, _with_name(source, err)))
    return result


def _with_name(source: Path, err: Exception) -> str:
    message = str(err)
    return message if message.startswith(str(source)) else f"{source}: {message}"
