"""A folder of MIDI files given to `train` or `finetune`: built into a corpus in the run
folder as `corpus build --source` builds one (DIR or DIR:TAG), the sustain pedal applied by
default, with a test split from 20 pieces on; `evaluate` on a corpus without the split asked
for says, in one line, which split to use.

No model is trained here: the folders are built by `prepare_data`, the function a run
calls, and the command line's settings are caught where they enter training.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from unittest.mock import patch

import mido
import pytest
from cli_runner import run_cli
from conftest import tune

from music_lm.corpus.sources import CorpusError
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import decode
from music_lm.tokens.vocab import VOCAB
from music_lm.training.data import prepare_data
from music_lm.training.folders import TEST_SPLIT_MIN_PIECES, corpus_folder, folder_build_config

PEDAL = 64
F = Fraction  # lengths in quarter notes, exactly


def quiet(_message: str) -> None:
    pass


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSIC_LM_CACHE", str(tmp_path / "cache"))


def tunes(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"tune{i}.mid").write_bytes(write_midi(tune(i, notes=8)))
    return folder


def pedalled_piano(folder: Path, make_midi, note) -> Path:
    """One piano piece: C4, E4, G4 struck an eighth apart and released at once, the pedal
    down from the start to beat 3 (480 ticks a quarter)."""
    folder.mkdir(parents=True)
    pedal = [(0, mido.Message("control_change", control=PEDAL, value=127)),
             (1440, mido.Message("control_change", control=PEDAL, value=0))]  # fmt: skip
    notes = [*note(0, 240, 60), *note(240, 240, 64), *note(480, 240, 67), *note(1920, 480, 72)]
    (folder / "pedalled.mid").write_bytes(make_midi([*pedal, *notes]))
    return folder


def lengths_in_quarters(corpus) -> list[tuple[int, Fraction]]:
    """(pitch, length in quarter notes) of every note of the corpus's first piece."""
    score = decode(" ".join(VOCAB.tokens[int(t)] for t in corpus.ids(0)))
    q = score.ticks_per_beat
    return sorted((n.pitch, Fraction(n.duration_tick, q)) for t in score.tracks for n in t.notes)


# ---- the split ----


def test_a_folder_of_under_20_pieces_has_no_test_split(tmp_path: Path) -> None:
    config = folder_build_config(str(tunes(tmp_path / "few", TEST_SPLIT_MIN_PIECES - 1)))
    assert (config.valid_fraction, config.test_fraction) == (0.1, 0.0)


def test_a_folder_of_20_pieces_or_more_gets_a_test_split(tmp_path: Path) -> None:
    folder = tunes(tmp_path / "many", TEST_SPLIT_MIN_PIECES)
    [corpus] = prepare_data([str(folder)], tmp_path / "run", quiet)
    assert corpus.split("test"), "no test piece"
    assert corpus.split("valid"), "no validation piece"
    assert len(corpus.split("train")) >= TEST_SPLIT_MIN_PIECES - 4


# ---- DIR:TAG ----


def test_a_folder_given_as_dir_tag_is_built_with_its_tag(tmp_path: Path) -> None:
    folder = tunes(tmp_path / "songs", 4)
    [corpus] = prepare_data([f"{folder}:irish"], tmp_path / "run", quiet)
    assert {p.source for p in corpus.pieces} == {"irish"}
    assert {p.style for p in corpus.pieces} == {"irish"}  # a style tag sets the style
    assert corpus.folder == tmp_path / "run" / "corpus-0"
    # where every process of the run finds it again, and a built corpus is read as it is
    assert corpus_folder(f"{folder}:irish", 0, tmp_path / "run") == corpus.folder
    assert corpus_folder(str(corpus.folder), 1, tmp_path / "other") == corpus.folder


def test_a_missing_folder_is_named_with_or_without_a_tag(tmp_path: Path) -> None:
    for spec in (str(tmp_path / "nope"), f"{tmp_path / 'nope'}:irish"):
        with pytest.raises(CorpusError, match="no such corpus or MIDI folder"):
            prepare_data([spec], tmp_path / "run", quiet)


def test_a_folder_with_a_bad_tag_says_what_is_wrong_with_the_tag(tmp_path: Path) -> None:
    folder = tunes(tmp_path / "songs", 1)
    with pytest.raises(CorpusError, match="tag 'no way' must be letters"):
        prepare_data([f"{folder}:no way"], tmp_path / "run", quiet)


# ---- the sustain pedal ----


def test_with_sustain_the_notes_under_the_pedal_are_held_until_it_lifts(
    tmp_path: Path, make_midi, note
) -> None:
    folder = pedalled_piano(tmp_path / "piano", make_midi, note)
    [held] = prepare_data([str(folder)], tmp_path / "held", quiet, sustain=True)
    [dry] = prepare_data([str(folder)], tmp_path / "dry", quiet, sustain=False)
    assert lengths_in_quarters(held) == [(60, F(3)), (64, F(5, 2)), (67, F(2)), (72, F(1))]
    assert lengths_in_quarters(dry) == [(60, F(1, 2)), (64, F(1, 2)), (67, F(1, 2)), (72, F(1))]


# ---- the command line ----


def settings_of(monkeypatch, capsys, *args: str):
    """The TrainConfig that `music-lm ARGS` hands to training (caught there)."""
    caught = []

    def train(config, given, log):
        caught.append((config, given))
        raise SystemExit(0)

    with patch("music_lm.training.loop.train", train):
        code, _out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    return caught[0]


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_sustain_is_on_by_default_and_off_with_no_sustain(monkeypatch, capsys, tmp_path,
                                                         command) -> None:  # fmt: skip
    args = (command, "-o", str(tmp_path / "run"), "--data", f"{tmp_path}:mine")
    config, given = settings_of(monkeypatch, capsys, *args)
    assert config.sustain is True
    assert "sustain" not in given  # a default: resuming keeps the run's own
    assert config.data == (f"{tmp_path}:mine",)
    config, given = settings_of(monkeypatch, capsys, *args, "--no-sustain")
    assert config.sustain is False
    assert "sustain" in given


def test_evaluate_without_a_test_split_says_to_use_split_valid(monkeypatch, capsys,
                                                               tmp_path) -> None:  # fmt: skip
    folder = tunes(tmp_path / "songs", 5)
    [corpus] = prepare_data([str(folder)], tmp_path / "run", quiet)
    assert corpus.split("valid")
    assert not corpus.split("test")
    code, _out, err = run_cli(monkeypatch, capsys, "evaluate", "--data", str(corpus.folder),
                              "--model", str(tmp_path / "no-model"))  # fmt: skip
    assert code == 2
    assert err.strip() == (
        f"music-lm: error: {corpus.folder}: the test split holds no pieces: use --split valid"
    )
