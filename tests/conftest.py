"""Shared helpers: tiny MIDI files written inline, and notes in quarter notes.

A test states exactly what is in a file: each track is a list of
(absolute tick, message) pairs; `make_midi` sorts them stably by tick, turns
the ticks into delta times and returns the file's bytes (or writes it).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import mido
import pytest
from hypothesis import settings

from music_lm.midi.score import Score

# Builds that are not given a cache folder use $MUSIC_LM_CACHE: never the user's own.
os.environ["MUSIC_LM_CACHE"] = tempfile.mkdtemp(prefix="music_lm-test-cache-")

# Every Hypothesis test draws the same examples on every run (a test's own @settings keep
# this): a failure is never a matter of luck, and found again by running the test again.
# `pytest --hypothesis-profile=explore` draws new examples, to look for more.
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")

Event = tuple[int, mido.Message | mido.MetaMessage]
NoteInQuarters = tuple[int, bool, int, Fraction, Fraction, int]


def build_midi(
    *tracks: Iterable[Event],
    ticks_per_beat: int = 480,
    midi_type: int = 1,
    path: Path | None = None,
) -> bytes:
    """A Standard MIDI File holding exactly `tracks` (events at absolute ticks)."""
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        track = mido.MidiTrack()
        last = 0
        for tick, message in sorted(events, key=lambda event: event[0]):
            track.append(message.copy(time=tick - last))
            last = tick
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    data = buffer.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def note_events(
    onset: int, duration: int, pitch: int, velocity: int = 64, channel: int = 0
) -> list[Event]:
    """A note as its note-on and note-off, at absolute ticks."""
    return [
        (onset, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)),
        (onset + duration, mido.Message("note_off", channel=channel, note=pitch, velocity=0)),
    ]


def quarter_notes(score: Score) -> list[NoteInQuarters]:
    """Every note of `score` as (program, is_drum, pitch, onset, duration, velocity),
    with onset and duration in quarter notes (exact Fractions), sorted."""
    ppq = score.ticks_per_beat
    return sorted(
        (
            track.program,
            track.is_drum,
            note.pitch,
            Fraction(note.onset_tick, ppq),
            Fraction(note.duration_tick, ppq),
            note.velocity,
        )
        for track in score.tracks
        for note in track.notes
    )


@pytest.fixture(scope="session")
def make_midi() -> Callable[..., bytes]:
    """`make_midi(track, ..., ticks_per_beat=480, midi_type=1, path=None) -> bytes`."""
    return build_midi


@pytest.fixture(scope="session")
def note() -> Callable[..., list[Event]]:
    """`note(onset, duration, pitch, velocity=64, channel=0)`: a note-on and its note-off."""
    return note_events


@pytest.fixture(scope="session")
def in_quarters() -> Callable[[Score], list[NoteInQuarters]]:
    """`in_quarters(score)`: its notes with times in quarter notes, sorted."""
    return quarter_notes


@pytest.fixture
def simple_midi_file(tmp_path: Path) -> Path:
    """A small valid two-instrument MIDI file on disk (a C major arpeggio and a bass)."""
    tempo = [(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100)))]
    meter = [(0, mido.MetaMessage("time_signature", numerator=4, denominator=4))]
    key = [(0, mido.MetaMessage("key_signature", key="C"))]
    piano = [(0, mido.Message("program_change", channel=0, program=0))]
    for i, pitch in enumerate((60, 64, 67, 72)):
        piano += note_events(i * 480, 480, pitch, 80, channel=0)
    bass = [(0, mido.Message("program_change", channel=1, program=32))]
    bass += note_events(0, 1920, 36, 100, channel=1)
    path = tmp_path / "simple.mid"
    build_midi(tempo + meter + key, piano, bass, path=path)
    return path


# ---- a tiny training corpus ----

TUNE_PPQ = 480


def tune(seed: int, notes: int = 24) -> Score:
    """A one-track piece in 4/4 (piano or flute): random pitches in eighths and quarters."""
    import random

    from music_lm.midi.score import Note, TempoChange, TimeSignature, Track

    rng = random.Random(seed)
    events, tick = [], 0
    for _ in range(notes):
        length = rng.choice((TUNE_PPQ // 2, TUNE_PPQ))
        events.append(Note(tick, length, rng.randint(60, 76), rng.choice((64, 96))))
        tick += length
    return Score(TUNE_PPQ, [Track(rng.choice((0, 73)), notes=events)],
                 [TempoChange(0, 100.0)], [TimeSignature(0, 4, 4)])  # fmt: skip


@pytest.fixture(scope="session")
def tune_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten generated tunes as MIDI files: a user's song folder."""
    from music_lm.midi.write import write_midi

    folder = tmp_path_factory.mktemp("tunes") / "midi"
    folder.mkdir()
    for i in range(10):
        (folder / f"tune{i}.mid").write_bytes(write_midi(tune(i)))
    return folder


@pytest.fixture(scope="session")
def tiny_corpus(tune_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    """The ten tunes built into a corpus (style irish), every split present."""
    from music_lm.corpus.build import build_corpus
    from music_lm.corpus.config import BuildConfig
    from music_lm.corpus.dataset import Corpus

    root = tmp_path_factory.mktemp("tiny-corpus")
    config = BuildConfig((f"{tune_folder}:irish",), valid_fraction=0.2, test_fraction=0.2)
    build_corpus(config, root / "corpus", cache_dir=root / "cache", workers=1)
    return Corpus(root / "corpus")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained music GPT-2 of the "tiny" preset (context 64), saved as a model folder:
    fast, and its output is valid only because of the grammar's masks."""
    torch = pytest.importorskip("torch")
    from music_lm.model.folder import model_config, model_meta, new_model, save_model_folder

    torch.manual_seed(0)
    model = new_model(model_config("tiny", context=64))
    return save_model_folder(model, tmp_path_factory.mktemp("tiny-model"), model_meta())


# ---- external programs: CI fails where a local run skips (tests/external.py) ----


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(what, found, install): needs a program or file from outside Python"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    from external import apply_requires_marks

    apply_requires_marks(item)


def pytest_terminal_summary(terminalreporter) -> None:
    from external import summary_lines

    for line in summary_lines():
        terminalreporter.write_line(line, yellow=True, bold=True)
