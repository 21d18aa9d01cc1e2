"""Pickups and other short bars keep their place from music21's corpus to MIDI and text.

music21's MIDI writer plays a pickup (anacrusis) from tick 0 and writes a single time
signature there, so every later bar line of its file falls early by the pickup's missing
length. The corpus (`music21_midi`) restates the meter where a notated measure starts off
the file's bar lines, and a time signature starts a bar where it stands: the MIDI file's
bars are the notated measures, and a pickup is a first bar that ends early
(`bar @0 ... @1` then `bar @0 ...`). The examples in midi_in/ are written the same way.

music21 takes seconds to import and a while to parse: each piece is read once.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

from music_lm.api import inspect_midi, midi_to_text, text_to_midi
from music_lm.midi.read import read_midi
from music_lm.midi.score import Score

pytest.importorskip("music21")

MIDI_IN = Path(__file__).resolve().parent.parent / "midi_in"


@dataclass(frozen=True)
class Piece:
    """A corpus piece and what its notation says: where its measures start."""

    path: str  # in music21's corpus
    number: int | None  # the tune of an ABC book
    pickup: str  # the pickup's length as token text writes it (quarter notes)


PIECES = {
    "Bach, BWV 66.6: a one-beat pickup in 4/4": Piece("bach/bwv66.6", None, "1"),
    "O'Neill 176: a one-eighth pickup into each strain, no repeats": Piece(
        "oneills1850/0101-0200.abc", 176, "1/2"
    ),
    "Essen altdeu10 #1: a half-bar pickup in 4/2": Piece("essenFolksong/altdeu10.abc", 1, "2"),
    "O'Neill 116: repeats bring the pickup back mid-piece": Piece(
        "oneills1850/0101-0200.abc", 116, "1/2"
    ),
}


@dataclass(frozen=True)
class Written:
    """A piece as the corpus writes it, beside music21's own reading of it."""

    midi: bytes  # music21_midi's file
    score: Score  # that file, read
    measure_quarters: list[Fraction]  # where the measures start, repeats played out
    music21_score: Score  # music21's own MIDI file of the piece, read


@functools.cache
def written(name: str) -> Written:
    from music21 import corpus, stream
    from music21.midi import translate

    from music_lm.corpus.sources import music21_midi

    piece = PIECES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21 warns about odd spellings
        parsed = corpus.parse(piece.path, number=piece.number)
        played = parsed.expandRepeats()  # what its MIDI writer plays
        music21_file = translate.streamToMidiFile(parsed).writestr()
    part = max(played.parts, key=lambda p: len(p.getElementsByClass(stream.Measure)))
    measures = part.getElementsByClass(stream.Measure)
    path = str(corpus.getWork(piece.path))
    midi = music21_midi(path, piece.number)
    return Written(
        midi,
        read_midi(midi).score,
        [Fraction(part.elementOffset(m)) for m in measures],
        read_midi(music21_file).score,
    )


def ticks(quarters: list[Fraction], ticks_per_beat: int) -> list[int]:
    return [round(q * ticks_per_beat) for q in quarters]


@pytest.mark.parametrize("name", PIECES)
def test_the_midi_files_bars_are_the_notated_measures(name: str) -> None:
    piece = written(name)
    measure_ticks = ticks(piece.measure_quarters, piece.score.ticks_per_beat)
    assert piece.score.bar_starts(until_tick=measure_ticks[-1]) == measure_ticks


@pytest.mark.parametrize("name", PIECES)
def test_every_note_keeps_the_tick_music21_gives_it(name: str) -> None:
    piece = written(name)
    assert [t.notes for t in piece.score.tracks] == [t.notes for t in piece.music21_score.tracks]
    assert piece.score.tempos == piece.music21_score.tempos


@pytest.mark.parametrize("name", PIECES)
def test_the_pickup_is_a_first_bar_that_ends_early(name: str) -> None:
    text = midi_to_text(written(name).midi)
    first_bar = text.splitlines()[1]
    assert first_bar.startswith("bar @0 ")
    assert first_bar.endswith(f" @{PIECES[name].pickup}")


@pytest.mark.parametrize("name", PIECES)
def test_the_token_text_round_trips(name: str) -> None:
    midi = written(name).midi
    text = midi_to_text(midi)
    assert midi_to_text(text_to_midi(text)) == text
    report = inspect_midi(midi)
    assert "round trip verified" in report
    # every time signature, the restated ones too, at its position: "5 of 5 time and ..."
    assert re.search(r" (\d+) of \1 time and (\d+) of \2 key signatures, at their pos", report)


def test_a_piece_whose_measures_are_all_full_gets_no_time_signature_restated() -> None:
    """Mozart's K. 155 excerpt starts on a downbeat: one 4/4, as music21 wrote it."""
    score = read_midi(MIDI_IN / "tempo_change.mid").score
    assert [str(ts) for ts in score.time_signatures] == ["4/4"]


@pytest.mark.parametrize(
    ("example", "pickup"), [("bach_chorale.mid", "1"), ("folk_tune.mid", "1/2")]
)
def test_the_examples_keep_their_pickups(example: str, pickup: str) -> None:
    score = read_midi(MIDI_IN / example).score
    second_bar = score.bar_starts()[1]
    assert Fraction(second_bar, score.ticks_per_beat) == Fraction(pickup)
    first_bar = midi_to_text(MIDI_IN / example).splitlines()[1]
    assert first_bar.endswith(f" @{pickup}")


def test_repeat_marks_that_cannot_be_expanded_are_dropped_and_the_bars_kept() -> None:
    """Two start repeats and no end (music21 cannot expand them): the music is played
    once, as written, its pickup still a short first bar."""
    from music21 import bar, meter, note, stream

    from music_lm.corpus.sources import music21_score_midi

    part = stream.Part()
    pickup = stream.Measure(number=0)
    pickup.insert(0, meter.TimeSignature("3/4"))
    pickup.append(note.Note("G4", quarterLength=1))
    pickup.paddingLeft = 2
    part.append(pickup)
    for number in (1, 2):
        measure = stream.Measure(number=number)
        measure.leftBarline = bar.Repeat(direction="start")
        measure.append(note.Note("C4", quarterLength=3))
        part.append(measure)
    text = midi_to_text(music21_score_midi(stream.Score([part])))
    assert text.splitlines()[1:] == [
        "bar @0 t1 d:1 v:92 G4 @1",
        "bar @0 t1 d:3 v:92 C4",
        "bar @0 t1 d:3 v:92 C4",
        "end",
    ]
