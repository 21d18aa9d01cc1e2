"""A folder of MIDI files given to `train` or `finetune` (`--data DIR` or `--data DIR:TAG`,
as `corpus build --source` takes it), built into a corpus inside the run folder.

The split: 10 % of the pieces held out for validation; from TEST_SPLIT_MIN_PIECES pieces on,
another 10 % for testing, which `music-lm evaluate` measures (a smaller folder keeps every
piece it can for training, and is evaluated with `--split valid`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from music_lm.corpus.build import build_corpus
from music_lm.corpus.config import BuildConfig
from music_lm.corpus.dataset import Corpus
from music_lm.corpus.sources import CorpusError, SourceError, list_items, parse_source

VALID_FRACTION = 0.1
TEST_FRACTION = 0.1
TEST_SPLIT_MIN_PIECES = 20  # below it, a test piece or two would measure little: no test split


def is_corpus(name: str) -> bool:
    """Whether `name` is a built corpus folder (else: a MIDI folder, maybe DIR:TAG)."""
    return (Path(name) / "manifest.json").is_file()


def corpus_folder(name: str, number: int, run: Path) -> Path:
    """Where a run reads its `number`-th --data from: a built corpus as it is, a MIDI folder
    (DIR or DIR:TAG) from the corpus built of it in the run folder, `corpus-NUMBER`."""
    return Path(name) if is_corpus(name) else Path(run) / f"corpus-{number}"


def folder_build_config(spec: str, sustain: bool = False) -> BuildConfig:
    """The build of the MIDI folder `spec` (DIR or DIR:TAG): a test split from
    TEST_SPLIT_MIN_PIECES pieces on."""
    try:
        source = parse_source(spec)
    except SourceError:
        if Path(spec.rsplit(":", 1)[0]).is_dir():
            raise  # a folder with a bad tag: the source's own message says so
        raise CorpusError(f"{spec}: no such corpus or MIDI folder") from None
    if source.kind != "midi":
        raise CorpusError(
            f"{spec}: not a folder; build it first (music-lm corpus build -s {spec}) and give "
            "the corpus folder to --data"
        )
    pieces = len(list_items(source))
    test = TEST_FRACTION if pieces >= TEST_SPLIT_MIN_PIECES else 0.0
    return BuildConfig((spec,), valid_fraction=VALID_FRACTION, test_fraction=test,
                       sustain=sustain)  # fmt: skip


def build_folder_corpus(
    spec: str, target: Path, sustain: bool = False, log: Callable[[str], None] = lambda _m: None
) -> Corpus:
    """The corpus of the MIDI folder `spec` (DIR or DIR:TAG), built (or updated) in `target`
    with the sustain pedal applied when `sustain`; encodings are cached."""
    config = folder_build_config(spec, sustain)
    held_out = "validation and test" if config.test_fraction else "validation"
    pedal = ", the sustain pedal applied" if sustain else ""
    log(f"{spec}: a folder of MIDI files; building its corpus in {target} ({held_out} pieces "
        f"held out{pedal})")  # fmt: skip
    build_corpus(config, target, progress=False, log=log)
    return Corpus(target)
