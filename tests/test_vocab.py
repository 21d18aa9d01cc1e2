"""The vocabulary is derived from tables: these tests state what the tables promise."""

from __future__ import annotations

import itertools
import subprocess
import sys
from fractions import Fraction

import mido
import pytest

from music_lm.midi.gm import GM_DRUMS, GM_PROGRAMS, name_to_pitch, pitch_to_name
from music_lm.tokens.vocab import (
    GRID_PER_QUARTER,
    MAX_DURATION_STEPS,
    SHORT_DURATION_STEPS,
    VOCAB,
    bar_steps,
    nearest_tempo,
    nearest_velocity,
    split_duration,
    steps_to_quarters_text,
)

# ---- tokens and ids ----


def test_every_token_is_unique_and_a_single_word():
    assert len(set(VOCAB.tokens)) == len(VOCAB.tokens) == len(VOCAB)
    for token in VOCAB.tokens:
        assert token
        assert token.split() == [token]


def test_ids_are_the_positions_of_the_tokens():
    for index, token in enumerate(VOCAB.tokens):
        assert VOCAB.ids[token] == index


def test_each_family_is_one_contiguous_id_range_and_the_families_tile_the_vocabulary():
    ranges = sorted(VOCAB.ranges.values(), key=lambda r: r.start)
    assert ranges[0].start == 0
    assert ranges[-1].stop == len(VOCAB)
    for before, after in itertools.pairwise(ranges):
        assert before.stop == after.start
    for family, ids in VOCAB.ranges.items():
        assert len(ids) > 0
        assert all(VOCAB.family_of[i] == family for i in ids)


@pytest.mark.parametrize(
    "family", ["pos", "dur", "dur_long", "vel", "pitch", "drum", "track", "tempo"]
)
def test_numeric_families_are_ordered_by_value(family):
    values = [VOCAB.values[i] for i in VOCAB.ranges[family]]
    assert values == sorted(values)
    assert len(set(values)) == len(values)


def test_instruments_are_the_gm_programs_in_order_then_drums_last():
    words = [VOCAB.tokens[i] for i in VOCAB.ranges["inst"]]
    values = [VOCAB.values[i] for i in VOCAB.ranges["inst"]]
    assert values == [*range(128), -1]
    assert words[-1] == "inst:drums"
    assert words[0] == "inst:acoustic-grand-piano"
    assert words[40] == "inst:violin"
    assert len(GM_PROGRAMS) == 128


def test_positions_cover_the_longest_bar_in_grid_steps():
    values = [VOCAB.values[i] for i in VOCAB.ranges["pos"]]
    assert values == list(range(12 * GRID_PER_QUARTER))
    assert VOCAB.word_of("pos", 0) == "@0"
    assert VOCAB.word_of("pos", 36) == "@1+1/2"
    assert VOCAB.word_of("pos", 8) == "@1/3"
    assert VOCAB.word_of("pos", 12 * 24 - 1) == "@11+23/24"


def test_duration_words_are_quarter_notes_as_mixed_numbers():
    assert VOCAB.word_of("dur", 24) == "d:1"
    assert VOCAB.word_of("dur", 3) == "d:1/8"  # a 32nd note
    assert VOCAB.word_of("dur", 2) == "d:1/12"  # a 32nd-note triplet
    assert VOCAB.word_of("dur", 36) == "d:1+1/2"  # a dotted quarter
    assert VOCAB.word_of("dur", 96) == "d:4"
    assert VOCAB.word_of("dur_long", 96) == "d:4+"
    assert VOCAB.word_of("dur_long", 1536) == "d:64+"
    assert VOCAB.word_of("dur_long", 12288) == "d:512+"
    assert [VOCAB.values[i] for i in VOCAB.ranges["dur"]] == list(range(1, 97))
    assert [VOCAB.values[i] for i in VOCAB.ranges["dur_long"]] == [96 << k for k in range(8)]


@pytest.mark.parametrize(
    ("steps", "text"),
    [(24, "1"), (36, "1+1/2"), (8, "1/3"), (4, "1/6"), (3, "1/8"), (50, "2+1/12")],
)
def test_steps_to_quarters_text(steps, text):
    assert steps_to_quarters_text(steps) == text


def test_drum_tokens_use_gm_names_and_numbers_elsewhere():
    assert VOCAB.word_of("drum", 36) == "drum:bass-drum-1"
    assert VOCAB.word_of("drum", 42) == "drum:closed-hi-hat"
    assert VOCAB.word_of("drum", 100) == "drum:100"
    assert [VOCAB.values[i] for i in VOCAB.ranges["drum"]] == list(range(128))
    assert all(VOCAB.word_of("drum", p) == f"drum:{name}" for p, name in GM_DRUMS.items())


def test_time_signatures_fit_the_longest_bar():
    signatures = VOCAB.time_signatures
    for n, d in [(4, 4), (3, 4), (6, 8), (7, 8), (5, 4), (12, 8), (2, 2), (12, 4), (24, 8)]:
        assert (n, d) in signatures
    assert (13, 4) not in signatures  # 13 quarter notes: longer than 12
    assert all(bar_steps(n, d) <= 12 * GRID_PER_QUARTER for n, d in signatures)
    assert bar_steps(4, 4) == 96
    assert bar_steps(6, 8) == 72


def test_keys_cover_seven_flats_to_seven_sharps_in_both_modes():
    values = {VOCAB.values[i] for i in VOCAB.ranges["key"]}
    assert values == {(s, m) for s in range(-7, 8) for m in ("major", "minor")}
    assert VOCAB.word_of("key", (0, "major")) == "key:C:major"
    assert VOCAB.word_of("key", (-3, "major")) == "key:Eb:major"
    assert VOCAB.word_of("key", (-1, "minor")) == "key:D:minor"
    assert VOCAB.word_of("key", (3, "minor")) == "key:F#:minor"


# ---- pitch names ----


def test_pitch_names_round_trip_for_every_midi_pitch():
    for pitch in range(128):
        assert name_to_pitch(pitch_to_name(pitch)) == pitch
        assert VOCAB.word_of("pitch", pitch) == pitch_to_name(pitch)


@pytest.mark.parametrize(
    ("name", "pitch"),
    [("C4", 60), ("C-1", 0), ("G9", 127), ("A4", 69), ("C#4", 61), ("Db4", 61), ("B#3", 60)],
)
def test_pitch_names_follow_scientific_pitch_notation(name, pitch):
    assert name_to_pitch(name) == pitch


def test_pitch_to_name_uses_sharps():
    assert pitch_to_name(60) == "C4"
    assert pitch_to_name(0) == "C-1"
    assert pitch_to_name(61) == "C#4"
    assert pitch_to_name(127) == "G9"


@pytest.mark.parametrize("pitch", [-1, 128])
def test_pitch_to_name_rejects_pitches_outside_midi(pitch):
    with pytest.raises(ValueError, match=r"0\.\.127"):
        pitch_to_name(pitch)


@pytest.mark.parametrize("name", ["", "H4", "C", "C#", "Cx4", "G#9", "Cb-1", "C10"])
def test_name_to_pitch_rejects_what_is_not_a_midi_pitch_name(name):
    with pytest.raises(ValueError, match="pitch"):
        name_to_pitch(name)


# ---- tempo ----


def test_every_tempo_from_20_to_400_bpm_quantises_within_half_a_percent():
    # Dense sampling: every 1/100 BPM over the whole range, plus the ends.
    worst = 0.0
    for hundredths in range(2000, 40001):
        bpm = hundredths / 100
        token = nearest_tempo(bpm)
        assert token in VOCAB.tempo_values
        worst = max(worst, abs(token - bpm) / bpm)
    assert worst <= 0.005


def test_geometric_midpoints_between_tempo_tokens_stay_within_half_a_percent():
    values = VOCAB.tempo_values
    for a, b in itertools.pairwise(values):
        assert b / a <= 1.01 + 1e-12  # steps are at most 1 % of the tempo
        middle = (a * b) ** 0.5
        for bpm in (middle * (1 - 1e-9), middle, middle * (1 + 1e-9)):
            assert abs(nearest_tempo(bpm) - bpm) / bpm <= 0.005


@pytest.mark.parametrize("bpm", [20, 60, 80, 90, 96, 100, 120, 140, 144, 180, 400])
def test_round_tempi_are_exact(bpm):
    assert nearest_tempo(float(bpm)) == bpm
    assert VOCAB.word_of("tempo", float(bpm)) == f"tempo:{bpm}"


def test_every_tempo_token_survives_midis_microsecond_tempo():
    for bpm in VOCAB.tempo_values:
        microseconds = round(mido.bpm2tempo(bpm))
        assert nearest_tempo(mido.tempo2bpm(microseconds)) == bpm


def test_tempi_outside_the_range_clamp_to_its_ends():
    assert nearest_tempo(5.0) == 20
    assert nearest_tempo(1000.0) == 400


def test_tempo_words_are_readable():
    assert VOCAB.word_of("tempo", 120.0) == "tempo:120"
    assert VOCAB.word_of("tempo", 20.2) == "tempo:20.2"
    assert VOCAB.word_of("tempo", 30.25) == "tempo:30.25"
    assert VOCAB.word_of("tempo", 72.5) == "tempo:72.5"


# ---- velocity ----


def test_velocity_bins_are_32_values_ending_at_127():
    values = VOCAB.velocity_values
    assert len(values) == 32
    assert list(values) == sorted(set(values))
    assert values[-1] == 127
    assert all(1 <= v <= 127 for v in values)


def test_velocity_bins_cover_every_audible_velocity():
    values = VOCAB.velocity_values
    previous = 0
    for velocity in range(1, 128):
        binned = nearest_velocity(velocity)
        assert binned in values
        if velocity >= values[0]:
            assert abs(binned - velocity) <= 2  # bins are 4 apart (3 at the top)
        else:
            assert binned == values[0]  # the quietest notes take the lowest bin
        assert binned >= previous  # binning keeps the order of velocities
        previous = binned
    for value in values:
        assert nearest_velocity(value) == value


def test_velocity_ties_go_up():
    assert nearest_velocity(6) == 8  # halfway between 4 and 8


# ---- durations ----


def test_split_duration_is_the_unique_decomposition_into_decreasing_long_parts_and_a_short_one():
    longs = [VOCAB.values[i] for i in VOCAB.ranges["dur_long"]]
    for steps in range(1, MAX_DURATION_STEPS + 1):
        parts, short = split_duration(steps)
        assert sum(parts) + short == steps
        assert 1 <= short <= SHORT_DURATION_STEPS
        assert all(p in longs for p in parts)
        assert list(parts) == sorted(set(parts), reverse=True)  # strictly decreasing
    # Unique: a long part of the same total with a different short part is impossible,
    # since the short part holds at most one 4-quarter unit (1..96 steps).


@pytest.mark.parametrize(
    ("steps", "parts"),
    [
        (1, ((), 1)),
        (96, ((), 96)),
        (97, ((96,), 1)),
        (192, ((96,), 96)),
        (481, ((384, 96), 1)),
        (1632, ((1536,), 96)),
    ],
)
def test_split_duration_examples(steps, parts):
    assert split_duration(steps) == parts


def test_longest_duration_is_1024_quarter_notes():
    assert Fraction(MAX_DURATION_STEPS, GRID_PER_QUARTER) == 1024


@pytest.mark.parametrize("steps", [0, -1, MAX_DURATION_STEPS + 1])
def test_split_duration_rejects_durations_out_of_range(steps):
    with pytest.raises(ValueError, match="duration"):
        split_duration(steps)


# ---- no torch ----


def test_importing_the_codec_loads_no_torch():
    code = (
        "import sys, music_lm, music_lm.cli, music_lm.tokens.report, music_lm.files\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
