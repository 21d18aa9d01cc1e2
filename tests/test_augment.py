"""Window augmentation: dynamics, instruments and tempo, drawn from the sampler's seed,
and every augmented window still valid token text.

The corpus is written by the tests: piano and voice melodies with chords and three
velocities, a band (bass and drums), a piece that changes tempo, meter and key, a
ritardando in half-BPM steps (a tempo scaled onto the coarser grid above 100 BPM makes
some of its changes repeats), and a piano part at the extremes of the velocity bins.
"""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
from test_corpus import BASS, PIANO, PPQ, band, changing_piece, melody, tune, walk_prefix

from music_lm.corpus.augment import (
    REVOICE_FROM,
    Augmentation,
    augment_ids,
    jitter_velocities,
    revoice,
    scale_tempo,
    shift_velocities,
    track_pitch_ranges,
)
from music_lm.corpus.build import build_corpus
from music_lm.corpus.config import BuildConfig
from music_lm.corpus.dataset import Corpus, WindowSampler
from music_lm.midi.instruments import pitch_range
from music_lm.midi.score import Note, Score, TempoChange, TimeSignature, Track
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import decode
from music_lm.tokens.encoded import encode_midi
from music_lm.tokens.validate import validate
from music_lm.tokens.vocab import VOCAB
from music_lm.training.config import AUGMENTATION_FIELDS, TrainConfig
from music_lm.training.data import augmentation, training_sampler

VOICE = 53
STRONG = Augmentation(velocity_level=8, velocity_ramp=8, velocity_jitter=2, revoice=1.0,
                      tempo_percent=10.0)  # fmt: skip
_VEL = VOCAB.ranges["vel"]
_TEMPO = VOCAB.ranges["tempo"]
_INST = VOCAB.ranges["inst"]


def ritardando() -> Score:
    """Piano quarters slowing from 99.5 to 90 BPM, a tempo change on every beat."""
    notes = [Note(i * PPQ, PPQ, 60 + i % 12, 80) for i in range(24)]
    tempos = [TempoChange(i * PPQ, 99.5 - 0.5 * i) for i in range(20)]
    return Score(PPQ, [Track(PIANO, notes=notes)], tempos, [TimeSignature(0, 4, 4)])


def extremes() -> Score:
    """Piano chords at the softest and loudest bins, and a wide range (A0..C8)."""
    rng = random.Random(5)
    notes = []
    for i in range(32):
        velocity = rng.choice((4, 8, 124, 127))
        notes += [Note(i * PPQ, PPQ, 21 + i, velocity), Note(i * PPQ, PPQ, 108 - i, 127)]
    return Score(PPQ, [Track(PIANO, notes=notes)], [TempoChange(0, 400.0)],
                 [TimeSignature(0, 4, 4)])  # fmt: skip


def ids_of(score: Score) -> np.ndarray:
    return np.array([VOCAB.ids[w] for w in encode_midi(write_midi(score)).text.split()])


def words(ids) -> str:
    return " ".join(VOCAB.tokens[i] for i in ids)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("augment")
    folder = root / "midi"
    folder.mkdir()
    for i in range(6):
        program = PIANO if i % 2 else VOICE
        score = melody(tune(i, length=64, low=55, high=79), program=program, seed=i)
        (folder / f"tune{i}.mid").write_bytes(write_midi(score))
    (folder / "band.mid").write_bytes(write_midi(band()))
    (folder / "changes.mid").write_bytes(write_midi(changing_piece()))
    (folder / "rit.mid").write_bytes(write_midi(ritardando()))
    (folder / "extremes.mid").write_bytes(write_midi(extremes()))
    config = BuildConfig((str(folder),), valid_fraction=0, test_fraction=0)
    build_corpus(config, root / "corpus", cache_dir=root / "cache", workers=1)
    return Corpus(root / "corpus")


def test_every_augmented_window_is_valid_token_text(corpus) -> None:
    for block_size, seed in ((40, 0), (96, 1), (400, 2)):
        sampler = WindowSampler(corpus, "train", block_size, transpose=6, seed=seed,
                                augment=STRONG)  # fmt: skip
        for _ in range(150):
            window = sampler.window().tolist()
            assert len(window) == block_size + 1
            assert len(list(walk_prefix(window))) == len(window)


def test_the_same_seed_gives_the_same_windows(corpus) -> None:
    def windows(seed: int) -> np.ndarray:
        return WindowSampler(corpus, "train", 64, transpose=5, seed=seed, augment=STRONG).batch(30)

    assert np.array_equal(windows(3), windows(3))
    assert not np.array_equal(windows(3), windows(4))


def test_switched_off_augmentation_gives_the_plain_windows(corpus) -> None:
    plain = WindowSampler(corpus, "train", 64, transpose=5, seed=7).batch(40)
    off = WindowSampler(corpus, "train", 64, transpose=5, seed=7, augment=Augmentation())
    assert np.array_equal(plain, off.batch(40))
    config = TrainConfig(data=("x",), output="y", velocity_level=0, velocity_ramp=0,
                         velocity_jitter=0, revoice=0, tempo_percent=0)  # fmt: skip
    assert not augmentation(config).active


def test_a_dynamic_level_moves_every_velocity_by_its_offset() -> None:
    ids = ids_of(melody(tune(1, length=64), seed=1))
    bins = ids[(ids >= _VEL.start) & (ids < _VEL.stop)] - _VEL.start
    for level in (-3, 2, 5):
        shifted = shift_velocities(ids, level, 0.0)
        validate(words(shifted))
        moved = shifted[(shifted >= _VEL.start) & (shifted < _VEL.stop)] - _VEL.start
        assert moved.mean() == pytest.approx(bins.mean() + level)


def bar_offsets(before: np.ndarray, after: np.ndarray) -> list[float]:
    bar = np.cumsum(before == VOCAB.ids["bar"])
    vel = (before >= _VEL.start) & (before < _VEL.stop)
    return [float((after[vel & (bar == b)] - before[vel & (bar == b)]).mean())
            for b in np.unique(bar[vel])]  # fmt: skip


def test_a_crescendo_rises_across_the_bars_and_a_diminuendo_falls() -> None:
    ids = ids_of(melody(tune(2, length=64), seed=2))
    rising = bar_offsets(ids, shift_velocities(ids, 0, 6.0))
    assert (rising[0], rising[-1]) == (0, 6)
    assert all(b >= a for a, b in itertools.pairwise(rising))
    falling = bar_offsets(ids, shift_velocities(ids, 0, -6.0))
    assert (falling[0], falling[-1]) == (0, -6)
    assert all(b <= a for a, b in itertools.pairwise(falling))


def test_velocities_at_the_ends_of_the_bins_stay_inside_them() -> None:
    ids = ids_of(extremes())
    for level, ramp in ((8, 0.0), (-8, 0.0), (0, 9.0), (0, -9.0)):
        shifted = shift_velocities(ids, level, ramp)
        validate(words(shifted))
        vel = (shifted >= _VEL.start) & (shifted < _VEL.stop)
        assert vel.sum() == ((ids >= _VEL.start) & (ids < _VEL.stop)).sum()


def test_jitter_writes_each_onset_as_the_encoder_does(corpus) -> None:
    """With 0 bins nothing moves, so the rewritten text is the piece itself: the rewrite
    writes the canonical form (whole pieces, and pieces cut at a bar line)."""
    rng = np.random.default_rng(0)
    for index in range(len(corpus)):
        ids = np.asarray(corpus.ids(index), dtype=np.int64)
        assert np.array_equal(jitter_velocities(ids, 0, rng), ids)
        for stop in np.flatnonzero(ids == VOCAB.ids["bar"]):
            assert np.array_equal(jitter_velocities(ids[:stop], 0, rng), ids[:stop])


def test_jitter_moves_each_note_by_at_most_its_bins_and_nothing_else() -> None:
    bins = {v: b for b, v in enumerate(VOCAB.velocity_values)}
    ids = ids_of(melody(tune(3, length=64), seed=3))
    before = decode(words(ids)).tracks[0].notes
    moved = 0
    for seed in range(5):
        aug = Augmentation(velocity_jitter=2)
        after = decode(words(augment_ids(ids, aug, np.random.default_rng(seed)))).tracks[0].notes
        assert sorted(n[:3] for n in after) == sorted(n[:3] for n in before)
        # notes of one onset and pitch may swap, so compare the sorted velocities per note
        per_note_before = sorted((n[:3], bins[n.velocity]) for n in before)
        per_note_after = sorted((n[:3], bins[n.velocity]) for n in after)
        for (note, b0), (_, b1) in zip(per_note_before, per_note_after, strict=True):
            assert abs(b1 - b0) <= 2, note
            moved += b1 != b0
    assert moved > len(before)  # most notes move at least once in five draws


def test_jitter_share_jitters_that_share_of_pieces_and_a_share_of_one_draws_as_before() -> None:
    ids = ids_of(melody(tune(3, length=64), seed=3))
    jittered = [
        not np.array_equal(
            augment_ids(ids, Augmentation(velocity_jitter=2, velocity_jitter_share=0.25),
                        np.random.default_rng(seed)),
            ids,
        )
        for seed in range(400)
    ]  # fmt: skip
    assert 0.18 < np.mean(jittered) < 0.32
    never = Augmentation(velocity_jitter=2, velocity_jitter_share=0.0)
    assert all(np.array_equal(augment_ids(ids, never, np.random.default_rng(s)), ids)
               for s in range(20))  # fmt: skip
    # share 1 draws nothing extra, so runs saved before the share existed resume alike
    for seed in range(5):
        always = augment_ids(ids, Augmentation(velocity_jitter=2, velocity_jitter_share=1.0),
                             np.random.default_rng(seed))  # fmt: skip
        assert np.array_equal(always, jitter_velocities(ids, 2, np.random.default_rng(seed)))
    with pytest.raises(ValueError, match=r"jitter_share must be a probability 0\.\.1, got 2"):
        Augmentation(velocity_jitter_share=2)


def test_a_run_saved_before_the_jitter_share_resumes_jittering_every_piece() -> None:
    saved = TrainConfig(data=("x",), output="y").to_json()
    del saved["velocity_jitter_share"]
    assert TrainConfig.from_json(saved).velocity_jitter_share == 1.0
    assert TrainConfig(data=("x",), output="y").velocity_jitter_share == 0.25


def test_revoiced_parts_fit_their_new_instruments_range_and_drums_never_change() -> None:
    pieces = [ids_of(melody(tune(i, length=48), program=p, seed=i))
              for i, p in enumerate((PIANO, VOICE, PIANO))]  # fmt: skip
    pieces += [ids_of(band()), ids_of(extremes())]
    programs_seen = set()
    for ids in pieces:
        header = ids[: int(np.argmax(ids == VOCAB.ids["bar"]))]
        ranges = track_pitch_ranges(ids)
        for seed in range(20):
            out = revoice(ids, 1.0, np.random.default_rng(seed))
            validate(words(out))
            assert np.array_equal(np.delete(out, np.arange(len(header))),
                                  np.delete(ids, np.arange(len(header))))  # fmt: skip
            insts = np.flatnonzero((header >= _INST.start) & (header < _INST.stop))
            for track, at in enumerate(insts):
                old, new = VOCAB.values[header[at]], VOCAB.values[out[at]]
                if old == -1 or old not in REVOICE_FROM:  # drums, and the band's bass
                    assert new == old
                    continue
                low, high = pitch_range(new)
                assert low <= ranges[track][0] <= ranges[track][1] <= high
                programs_seen.add(new)
    assert VOCAB.values[ids_of(band())[4]] == BASS
    assert len(programs_seen) > 10  # strings, winds, brass, guitars, organs ...


def tempos(ids: np.ndarray) -> list[float]:
    return [float(VOCAB.values[i]) for i in ids if i in _TEMPO]


def test_tempo_moves_within_its_percent_and_repeats_are_dropped() -> None:
    for score in (changing_piece(), ritardando(), extremes()):
        ids = ids_of(score)
        for seed in range(20):
            out = augment_ids(ids, Augmentation(tempo_percent=4.0), np.random.default_rng(seed))
            validate(words(out))
            ratio = tempos(out)[0] / tempos(ids)[0]
            assert 0.96 * 0.995 <= ratio <= 1.04 * 1.005 or tempos(ids)[0] == 400
    # 1.01 puts 99 and 99.5 BPM both on 100: the second is no change, and goes
    rit = ids_of(ritardando())
    scaled = scale_tempo(rit, 1.01)
    validate(words(scaled))
    assert len(tempos(scaled)) < len(tempos(rit))
    assert all(a != b for a, b in itertools.pairwise(tempos(scaled)))


def test_the_run_settings_carry_the_augmentation_and_old_runs_load_without_it(corpus) -> None:
    config = TrainConfig(data=(str(corpus.folder),), output="run", velocity_jitter=2, revoice=0.5)
    again = TrainConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config
    assert augmentation(again) == Augmentation(3, 4, 2, 0.5, 3.0, 0.25)
    old = {k: v for k, v in config.to_json().items() if k not in AUGMENTATION_FIELDS}
    assert not augmentation(TrainConfig.from_json(old)).active  # resumes as it trained
    sampler = training_sampler([corpus], config, context=64)
    assert sampler.augment == augmentation(config)
    window = sampler.window().tolist()
    assert len(list(walk_prefix(window))) == 65
    with pytest.raises(ValueError, match=r"--revoice must be a probability 0\.\.1, got 2"):
        TrainConfig(data=("x",), output="y", revoice=2)
