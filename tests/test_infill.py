"""Track infilling: the named tracks are drawn anew over the region, and everything else
stays word for word.

Each check reads the output independently of the decoding state: the kept tracks' notes
and the words outside the region are compared with the original piece, the bar lines,
meters and tempi with the original's. Random walks over the allowed tokens stand in for any
model; a tiny untrained GPT-2 with adversarial logits (a random half of the vocabulary
pushed far up at every step) runs the whole sampler over a thousand infills.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from unittest.mock import patch

import pytest
from cli_runner import run_cli
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from midi_checker import midi_facts

from music_lm.api import midi_to_text
from music_lm.generation.chords import ChordLock, parse_chart
from music_lm.generation.constraints import Constraints
from music_lm.generation.infill import (
    InfillError,
    infill_state,
    parse_bar_range,
    plan_infill,
    read_song,
)
from music_lm.generation.infill_state import InfillState, infill_budget
from music_lm.tokens.codec import decode
from music_lm.tokens.rules import BAR
from music_lm.tokens.validate import validate
from music_lm.tokens.vocab import VOCAB

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
SONGS = sorted(EXAMPLES.glob("*.mid"))
TEXTS = {song.name: midi_to_text(song) for song in SONGS}


def song_ids(name: str) -> list[int]:
    return validate(TEXTS[name])


def walk(state: InfillState, prefix: list[int], rng: random.Random) -> list[int]:
    """Choose among the allowed tokens until the state is done; the whole piece."""
    out = list(prefix)
    while not state.done:
        ranges = state.allowed_ranges()
        assert ranges, f"a dead end after {[VOCAB.tokens[t] for t in out[-12:]]}"
        token = rng.choice([t for lo, hi in ranges for t in range(lo, hi)])
        state.advance(token)
        out.append(token)
    return state.finished(out)


def words(ids: list[int]) -> list[str]:
    return [VOCAB.tokens[t] for t in ids]


@functools.lru_cache(maxsize=64)
def decoded(ids: tuple[int, ...]):
    return decode(" ".join(words(list(ids))))


def check_infill(plan, whole: list[int]) -> None:
    """The output is valid; outside the region its words are the original's; the kept
    tracks' notes, the bar lines, meters, tempi and keys are the original's; every redrawn
    track's notes in the region lie in it."""
    validate(" ".join(words(whole)))
    header_end = plan.ids.index(BAR)
    piece = plan.ids[: header_end - len(plan.added)] + plan.ids[header_end:]  # as it was
    original, new = decoded(tuple(piece)), decode(" ".join(words(whole)))
    assert whole[: len(plan.prefix)] == plan.prefix
    assert whole[len(whole) - len(plan.suffix) :] == plan.suffix
    for index, (before, after) in enumerate(zip(original.tracks, new.tracks, strict=False)):
        if index not in plan.regenerated:
            assert after.notes == before.notes, f"kept track {index + 1} changed"
        else:
            outside = [
                n for n in before.notes if not plan.start_tick <= n.onset_tick < plan.end_tick
            ]
            assert [
                n for n in after.notes if not plan.start_tick <= n.onset_tick < plan.end_tick
            ] == outside
            new_notes = [n for n in after.notes if plan.start_tick <= n.onset_tick < plan.end_tick]
            assert all(n.end_tick <= plan.end_tick for n in new_notes)
    assert len(new.tracks) == len(original.tracks) + len(plan.added)
    assert new.bar_starts(10**7) == original.bar_starts(10**7)
    assert new.time_signatures == original.time_signatures
    assert new.tempos == original.tempos
    assert new.key_signatures == original.key_signatures
    for track in plan.must_play:
        assert new.tracks[track].notes, f"track {track + 1} never plays"


# ---- the request ----


def test_bars_read_as_a_range_from_one() -> None:
    assert parse_bar_range("3-6", 10, "x.mid") == (3, 6)
    assert parse_bar_range("4", 10, "x.mid") == (4, 4)
    assert parse_bar_range(None, 10, "x.mid") == (1, 10)


@pytest.mark.parametrize(
    ("tracks", "bars", "message"),
    [
        ("9", None, r"folk_tune.mid: there is no track 9 \(the piece has tracks 1-1\)"),
        ("1", "5-3", r"folk_tune.mid: --bars 5-3: the first bar comes after the last"),
        ("1", "0-2", r"folk_tune.mid: --bars 0-2 is outside the piece's bars 1-\d+"),
        ("1", "2-99", r"folk_tune.mid: --bars 2-99 is outside the piece's bars 1-\d+"),
        ("1", "two", r"folk_tune.mid: --bars takes A-B such as 3-6, got 'two'"),
        ("kazoo", None, r"folk_tune.mid: --tracks: unknown instrument 'kazoo'"),
        (" ,", None, r"folk_tune.mid: --tracks names no track"),
    ],
)
def test_a_request_that_does_not_fit_the_piece_is_named(tracks, bars, message) -> None:
    with pytest.raises(InfillError, match=message):
        plan_infill(song_ids("folk_tune.mid"), tracks, bars, "folk_tune.mid")


def test_a_song_that_is_not_a_whole_piece_is_named(tmp_path: Path) -> None:
    path = tmp_path / "part.txt"
    path.write_text("piece style:none tempo:96 ts:4/4 inst:flute inst:oboe\nbar @0 t1 d:1 v:80 D4")
    with pytest.raises(InfillError, match=r"part.txt: not a whole piece: at its end, expected"):
        read_song(path)


def test_tracks_are_named_by_number_or_instrument_and_new_ones_are_added() -> None:
    ids = song_ids("band_with_drums.mid")  # flute, electric-bass-finger, piano, drums
    assert plan_infill(ids, "2", None, "b").regenerated == {1}
    assert plan_infill(ids, "bass,1", None, "b").regenerated == {0, 1}
    assert plan_infill(ids, "drums", None, "b").regenerated == {3}
    plan = plan_infill(song_ids("folk_tune.mid"), "drums,electric-bass-finger", "2-3", "f")
    assert plan.added == (1, 2)
    declared = [w for w in words(plan.ids) if w.startswith("inst:")]
    assert declared[-2:] == ["inst:drums", "inst:electric-bass-finger"]  # in the order named
    assert plan.must_play == {1, 2}


# ---- every walk keeps everything outside the redrawn tracks ----


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    song=st.sampled_from(sorted(TEXTS)),
    which=st.sampled_from(["1", "2", "1,2", "drums", "electric-bass-finger", "last", "all", None]),
    first=st.integers(1, 40),
    length=st.integers(0, 2),
    whole=st.booleans(),
    chords=st.sampled_from([None, "C G Am F", "Dm|G7 C"]),
    strict=st.booleans(),
    polyphony=st.sampled_from([None, 2]),
    walk_seed=st.integers(0, 2**16),
)
def test_every_walk_is_valid_and_keeps_the_rest_word_for_word(
    song, which, first, length, whole, chords, strict, polyphony, walk_seed
) -> None:
    ids = song_ids(song)
    programs = [VOCAB.values[t] for t in ids if VOCAB.family_of[t] == "inst"]
    bar_count = ids.count(BAR)
    which = {
        "last": str(len(programs)),
        "all": ",".join(map(str, range(1, len(programs) + 1))),
    }.get(which, which)
    if (which == "2" and len(programs) < 2) or (which == "1,2" and len(programs) < 2):
        reject()
    first = min(first, bar_count)
    bars = None if whole and which is not None else f"{first}-{min(first + length, bar_count)}"
    plan = plan_infill(ids, which, bars, song)
    lock = None if chords is None else ChordLock(parse_chart(chords), strict)
    try:
        state = infill_state(plan, Constraints(chords=lock, max_polyphony=polyphony))
    except InfillError:
        reject()  # a chord the redrawn track cannot play in its range
    whole_ids = walk(state, plan.prefix, random.Random(walk_seed))
    check_infill(plan, whole_ids)
    drawn = len(whole_ids) - len(plan.prefix) - len(plan.suffix) + 1
    assert drawn <= infill_budget(plan.template, len(plan.region))


def test_bars_mode_redraws_every_track_and_keeps_the_rest_word_for_word() -> None:
    ids = song_ids("band_with_drums.mid")
    plan = plan_infill(ids, None, "5-6", "band")
    assert plan.regenerated == {0, 1, 2, 3}
    for seed in range(3):
        whole = walk(infill_state(plan, Constraints()), plan.prefix, random.Random(seed))
        check_infill(plan, whole)
        assert whole[len(plan.prefix) : len(whole) - len(plan.suffix)] != plan.region
    with pytest.raises(InfillError, match="give --bars, --tracks or both"):
        plan_infill(ids, None, None, "band")


def test_the_control_a_plain_continuation_changes_the_kept_tracks() -> None:
    """The check above fails on a piece whose region was drawn for every track."""
    ids = song_ids("band_with_drums.mid")
    plan = plan_infill(ids, "2", "3-4", "band")
    every = plan_infill(ids, "1,2,3,4", "3-4", "band")
    whole = walk(infill_state(every, Constraints()), every.prefix, random.Random(2))
    with pytest.raises(AssertionError, match="kept track"):
        check_infill(plan, whole)


def test_the_chord_lock_holds_the_redrawn_tracks_only() -> None:
    plan = plan_infill(song_ids("band_with_drums.mid"), "2", "3-4", "band")
    lock = ChordLock(parse_chart("C"), strict=True)
    state = infill_state(plan, Constraints(chords=lock, chord_tracks=(("1", None), ("2", None))))
    assert state.chord_tracks == {1}
    assert infill_state(plan, Constraints(chords=lock)).chord_tracks == {1}
    with pytest.raises(InfillError, match="band: --chord-tracks names none of the tracks redrawn"):
        infill_state(plan, Constraints(chords=lock, chord_tracks=(("1", None),)))
    drums = plan_infill(song_ids("band_with_drums.mid"), "drums", "3-4", "band")
    assert infill_state(drums, Constraints(chords=lock)).constraints.chords is None


def test_the_redrawn_tracks_keep_a_chord_lock() -> None:
    ids = song_ids("bach_chorale.mid")
    plan = plan_infill(ids, "2,3", "2-3", "bach")
    lock = ChordLock(parse_chart("C"), strict=True)
    for seed in range(4):
        whole = walk(infill_state(plan, Constraints(chords=lock)), plan.prefix, random.Random(seed))
        check_infill(plan, whole)
        score = decode(" ".join(words(whole)))
        for index in (1, 2):
            region = [n for n in score.tracks[index].notes
                      if plan.start_tick <= n.onset_tick < plan.end_tick]  # fmt: skip
            assert region
            assert {n.pitch % 12 for n in region} <= {0, 4, 7}


# ---- the sampler, a thousand times with adversarial logits ----


def test_a_thousand_infills_with_adversarial_logits_are_all_valid(tiny_model: Path) -> None:
    from test_generate import adversarial_forward

    from music_lm.generation.infill import infill
    from music_lm.generation.models import _Runner
    from music_lm.model.folder import load_model

    loaded = [load_model(tiny_model)]
    requests = [("band_with_drums.mid", "2", "3-4"), ("band_with_drums.mid", "drums", "1-2"),
                ("bach_chorale.mid", "1,4", "5-6"), ("bach_chorale.mid", "electric-bass-finger",
                                                     "1"),
                ("folk_tune.mid", "1", "1-2"), ("folk_tune.mid", "drums", "9-10"),
                ("tempo_change.mid", "2", "1-2"), ("tempo_change.mid", "3", "11-12")]  # fmt: skip
    count = 0
    with patch.object(_Runner, "_forward", adversarial_forward(_Runner._forward)):
        for round_ in range(5):
            for k, (song, tracks, bars) in enumerate(requests):
                plan = plan_infill(song_ids(song), tracks, bars, song)
                generation = infill(song_ids(song), tracks, bars=bars, models=[tiny_model],
                                    loaded=loaded, variants=25,
                                    random_seed=100 * round_ + k)  # fmt: skip
                for variant in generation.variants:
                    check_infill(plan, variant.ids)
                    count += 1
    assert count >= 1000


# ---- the command ----


def test_infill_writes_midi_text_and_json_with_the_region_marked(
    tiny_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    song = EXAMPLES / "band_with_drums.mid"
    out = tmp_path / "out"
    code, _stdout, err = run_cli(monkeypatch, capsys, "infill", str(song), "--tracks", "bass",
                                "--bars", "3-4", "-n", "2", "--random-seed", "7",
                                "--model", str(tiny_model), "-o", str(out))  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"band_with_drums-{k}{s}" for k in (1, 2) for s in (".mid", ".txt", ".json")
    )
    record = json.loads((out / "band_with_drums-1.json").read_text())
    assert record["region"] == {"bars": [3, 4], "start_beat": 4.0, "end_beat": 8.0}
    assert record["tracks"] == [{"track": 2, "instrument": "electric-bass-finger", "new": False}]
    assert record["random_seed"] == 7
    assert record["models"][0]["sha256"]
    facts = midi_facts((out / "band_with_drums-1.mid").read_bytes())
    assert facts["markers"] == [
        (4.0, "music_lm infill: bar 3"),
        (8.0, "music_lm infill end: bar 4"),
    ]
    plan = plan_infill(song_ids(song.name), "bass", "3-4", song.name)
    check_infill(plan, validate((out / "band_with_drums-2.txt").read_text()))
    # again without --force: refused, nothing changed
    before = (out / "band_with_drums-1.mid").read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "infill", str(song), "--tracks", "2",
                           "--model", str(tiny_model), "-o", str(out))  # fmt: skip
    assert code == 2
    assert "already exists" in err
    assert (out / "band_with_drums-1.mid").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tracks", "7"), "folk_tune.mid: there is no track 7"),
        (
            ("--tracks", "1", "--bars", "4-2"),
            "folk_tune.mid: --bars 4-2: the first bar comes after",
        ),
        (("--tracks", "1", "--bars", "1-500"), "folk_tune.mid: --bars 1-500 is outside"),
        (("--tracks", "1", "--chords", "C Hm"), "not a chord: 'Hm'"),
    ],
)
def test_a_bad_request_is_one_line_and_writes_nothing(
    tiny_model: Path, tmp_path: Path, monkeypatch, capsys, args, message
) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "infill", str(EXAMPLES / "folk_tune.mid"),
                           *args, "--model", str(tiny_model), "-o", str(out))  # fmt: skip
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or not list(out.iterdir())
