"""The chord lock: chord symbols parse to their pitch classes, a chart to its bars, and every
pitched note of a locked track keeps to the chord at its onset (on the beats, or everywhere
with --chord-strict), whatever the sampler chooses among the allowed tokens.

The notes are checked on the decoded score (their onsets and pitches), not on the masks'
own bookkeeping; a control shows the same check fails without the lock.
"""

from __future__ import annotations

import random
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from music_lm.api import midi_to_text
from music_lm.generation.chords import (
    ChordChart,
    ChordError,
    ChordLock,
    beat_steps,
    parse_chart,
    parse_chord,
    read_chart,
)
from music_lm.generation.constraints import ConstraintError, Constraints
from music_lm.generation.options import chord_lock, constraints_from_options
from music_lm.generation.seeds import cut_seed
from music_lm.generation.state import ContinuationState
from music_lm.tokens.codec import decode
from music_lm.tokens.validate import validate
from music_lm.tokens.vocab import VOCAB

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
SEEDS = sorted(EXAMPLES.glob("*.mid"))
C, Cs, D, Ds, E, F, Fs, G, Gs, A, As, B = range(12)


# ---- chord symbols ----


@pytest.mark.parametrize(
    ("symbol", "classes"),
    [
        ("C", {C, E, G}),
        ("Cm", {C, Ds, G}),
        ("C7", {C, E, G, As}),
        ("Cmaj7", {C, E, G, B}),
        ("CM7", {C, E, G, B}),
        ("Cm7", {C, Ds, G, As}),
        ("Cdim", {C, Ds, Fs}),
        ("Cdim7", {C, Ds, Fs, A}),
        ("Caug", {C, E, Gs}),
        ("C+", {C, E, Gs}),
        ("Csus4", {C, F, G}),
        ("Csus2", {C, D, G}),
        ("C/E", {C, E, G}),
        ("C/Bb", {C, E, G, As}),
        ("F#m7b5", {Fs, A, C, E}),
        ("Bø", {B, D, F, A}),
        ("Bb", {As, D, F}),
        ("Ebm", {Ds, Fs, As}),
        ("G9", {G, B, D, F, A}),
        ("A5", {A, E}),
        ("Am/G", {A, C, E, G}),
    ],
)
def test_a_chord_symbol_names_its_pitch_classes(symbol: str, classes: set[int]) -> None:
    assert parse_chord(symbol).pitch_classes == frozenset(classes)


@pytest.mark.parametrize("symbol", ["H", "Cx", "c", "C/", "C/H", "", "Cmaj7/", "Am F"])
def test_a_bad_chord_is_named_in_one_line(symbol: str) -> None:
    with pytest.raises(ChordError, match="not a chord: ") as err:
        parse_chord(symbol)
    assert repr(symbol) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_chart_gives_a_chord_per_bar_and_bar_lines_split_a_bar() -> None:
    chart = parse_chart("C|G Am  F")
    assert chart.text() == "C|G Am F"
    assert [len(bar) for bar in chart.bars] == [2, 1, 1]
    assert chart.chord_at(0, 0, 96).symbol == "C"
    assert chart.chord_at(0, 47, 96).symbol == "C"
    assert chart.chord_at(0, 48, 96).symbol == "G"
    assert chart.chord_at(3, 10, 96).symbol == "C"  # cycling: bar 4 is the chart's bar 1
    assert parse_chart("C | G Am").text() == "C|G Am"


def test_a_chart_file_has_one_line_per_bar(tmp_path: Path) -> None:
    path = tmp_path / "chords.txt"
    path.write_text("# verse\nC\n\nAm | F  # a split bar\nG7 C\n")
    assert read_chart(path).text() == "C Am|F G7|C"
    path.write_text("C\nHm\n")
    with pytest.raises(ChordError, match=r"chords.txt:2: not a chord: 'Hm'"):
        read_chart(path)
    path.write_text("# nothing\n")
    with pytest.raises(ChordError, match="chart is empty"):
        read_chart(path)


def test_beats_are_the_denominators_note_or_three_in_compound_meters() -> None:
    assert beat_steps((4, 4)) == 24
    assert beat_steps((2, 2)) == 48
    assert beat_steps((3, 8)) == 12
    assert beat_steps((6, 8)) == 36
    assert beat_steps((12, 8)) == 36


def test_the_options_refuse_both_charts_and_strict_alone(tmp_path: Path) -> None:
    with pytest.raises(ConstraintError, match="not both"):
        chord_lock("C", tmp_path / "x.txt")
    with pytest.raises(ConstraintError, match="--chord-strict needs"):
        chord_lock(None, None, strict=True)
    assert chord_lock(" ", None) is None
    assert constraints_from_options(2, chords="C G").to_json()["chords"] == {
        "chart": "C G", "strict": False}  # fmt: skip


# ---- the lock holds in every walk over the allowed tokens ----


def walk(ids: list[int], constraints: Constraints, rng: random.Random) -> list[int]:
    state = ContinuationState(ids, constraints)
    out: list[int] = []
    while not state.done:
        ranges = state.allowed_ranges(None)
        assert ranges, f"a dead end after {[VOCAB.tokens[t] for t in out[-8:]]}"
        token = rng.choice([t for lo, hi in ranges for t in range(lo, hi)])
        state.advance(token)
        out.append(token)
    return out


def off_chord_notes(ids, out, lock: ChordLock, locked_programs=None) -> list[str]:
    """The new pitched notes that break the lock, as 'bar B @P pitch (chord)'; read from the
    decoded piece."""
    seed_text = " ".join(VOCAB.tokens[t] for t in ids)
    whole = decode(seed_text + " " + " ".join(VOCAB.tokens[t] for t in out))
    first_bar = seed_text.split().count("bar")
    starts = whole.bar_starts(10**6)
    meters = {ts.tick: (ts.numerator, ts.denominator) for ts in whole.time_signatures}
    bad = []
    for track in whole.tracks:
        if track.is_drum or (locked_programs is not None and track.program not in locked_programs):
            continue
        for note in track.notes:
            bar = max(i for i, s in enumerate(starts) if s <= note.onset_tick)
            if bar < first_bar:
                continue  # the seed's
            meter = meters[max(t for t in meters if t <= starts[bar])]
            length = starts[bar + 1] - starts[bar]
            pos = note.onset_tick - starts[bar]
            classes = lock.classes_at(bar - first_bar, pos, length, meter)
            if classes is not None and note.pitch % 12 not in classes:
                chord = lock.chart.chord_at(bar - first_bar, pos, length).symbol
                bad.append(f"bar {bar + 1} @{pos} pitch {note.pitch} ({chord})")
    return bad


CHARTS = ["C G Am F", "C|G Am|F", "Dm7 G7 Cmaj7", "F#m7b5 B7 Em", "Bb/D Eb|F", "Csus4 C"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    seed_file=st.sampled_from(SEEDS),
    seed_bars=st.integers(0, 2),
    chart=st.sampled_from(CHARTS),
    strict=st.booleans(),
    scale=st.sampled_from([None, (0, "chromatic")]),
    polyphony=st.sampled_from([None, 2]),
    walk_seed=st.integers(0, 2**16),
)
def test_every_walk_keeps_every_locked_note_to_its_chord(
    seed_file, seed_bars, chart, strict, scale, polyphony, walk_seed
) -> None:
    ids = cut_seed(validate(midi_to_text(seed_file))[:-1], seed_bars)
    lock = ChordLock(parse_chart(chart), strict)
    constraints = Constraints(bars=3, chords=lock, scale=scale, max_polyphony=polyphony)
    try:
        ContinuationState(ids, constraints)
    except ConstraintError:
        reject()
    out = walk(ids, constraints, random.Random(walk_seed))
    validate(" ".join(VOCAB.tokens[t] for t in ids + out))
    assert off_chord_notes(ids, out, lock) == []


def test_without_the_lock_the_same_walks_leave_the_chords() -> None:
    """The control: the check above fails on walks that do not keep the lock."""
    ids = cut_seed(validate(midi_to_text(EXAMPLES / "bach_chorale.mid"))[:-1], 1)
    lock = ChordLock(parse_chart("C G"), strict=True)
    out = walk(ids, Constraints(bars=2), random.Random(1))
    assert off_chord_notes(ids, out, lock)


def test_off_beat_notes_may_pass_by_default_but_not_when_strict() -> None:
    ids = cut_seed(validate(midi_to_text(EXAMPLES / "bach_chorale.mid"))[:-1], 1)
    lock = ChordLock(parse_chart("C"), strict=True)
    passing = []
    for walk_seed in range(6):
        out = walk(ids, Constraints(bars=2, chords=ChordLock(lock.chart)), random.Random(walk_seed))
        passing += off_chord_notes(ids, out, lock)
    assert passing  # off the beat, the default lock let some non-chord notes through
    for walk_seed in range(6):
        out = walk(ids, Constraints(bars=2, chords=lock), random.Random(walk_seed))
        assert off_chord_notes(ids, out, lock) == []


def test_only_the_named_tracks_are_locked() -> None:
    ids = cut_seed(validate(midi_to_text(EXAMPLES / "band_with_drums.mid"))[:-1], 1)
    lock = ChordLock(parse_chart("C"), strict=True)
    programs = [VOCAB.values[t] for t in ids if VOCAB.family_of[t] == "inst"]
    melodic = [i + 1 for i, p in enumerate(programs) if p >= 0]
    first, others = melodic[0], set(programs) - {programs[melodic[0] - 1], -1}
    free = []
    for walk_seed in range(4):
        constraints = Constraints(bars=2, chords=lock, chord_tracks=((str(first), None),))
        out = walk(ids, constraints, random.Random(walk_seed))
        assert off_chord_notes(ids, out, lock, {programs[first - 1]}) == []
        free += off_chord_notes(ids, out, lock, others)
    assert free  # the other melodic tracks were not held


def test_a_chord_outside_the_key_or_range_is_refused_by_name() -> None:
    ids = cut_seed(validate(midi_to_text(EXAMPLES / "folk_tune.mid"))[:-1], 1)
    lock = ChordLock(parse_chart("C F#"))
    with pytest.raises(ConstraintError, match=r"chord F# \(C# F# A#\) has no pitch that track 1"):
        ContinuationState(ids, Constraints(bars=2, chords=lock, scale=(0, "major")))
    with pytest.raises(ConstraintError, match="--chord-tracks: there is no track 7"):
        ContinuationState(ids, Constraints(bars=2, chords=lock, chord_tracks=(("7", None),)))
    with pytest.raises(ConstraintError, match="no track plays 'tuba'"):
        ContinuationState(
            ids, Constraints(bars=2, chords=lock, chord_tracks=(("tuba", frozenset({58})),))
        )


def test_generate_keeps_the_lock_under_adversarial_logits(tiny_model: Path) -> None:
    from test_generate import adversarial_forward

    from music_lm.generation.models import _Runner
    from music_lm.generation.runner import generate

    seed = EXAMPLES / "bach_chorale.mid"
    ids = cut_seed(validate(midi_to_text(seed))[:-1], 2)
    lock = ChordLock(ChordChart(parse_chart("Am|E7 Dm G7|C").bars), strict=False)
    with patch.object(_Runner, "_forward", adversarial_forward(_Runner._forward)):
        generation = generate(ids, constraints=Constraints(bars=3, chords=lock),
                              models=[tiny_model], variants=4, random_seed=3)  # fmt: skip
    for variant in generation.variants:
        out = variant.ids[len(ids) :]
        assert off_chord_notes(ids, out, lock) == []
    assert generation.settings["constraints"]["chords"] == {"chart": "Am|E7 Dm G7|C",
                                                           "strict": False}  # fmt: skip
