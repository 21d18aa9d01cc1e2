"""The decoding defaults that keep band MIDI sane, each against a model that pushes hard the
other way, and each with its off switch shown to let that model through.

- no pitch twice at one onset on one track (a chord's pitches strictly rise);
- drums on General MIDI's kit (or the seed's keys), every new drum note of one length;
- no note rings past the end of the last new bar (the seed's included);
- a bounded loop guard against runs of repeated tokens.

The model is the untrained tiny GPT-2 whose logits are pushed up by +50 on the tokens a
broken model would write: the masks alone keep the output sane. Everything is read back
from the MIDI by the independent checker (tests/midi_checker.py).
"""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest
import torch
from midi_checker import (
    DRUM_CHANNEL,
    check_constraints,
    check_decoding_defaults,
    continuation_beat,
    midi_facts,
)

from music_lm.api import midi_to_text
from music_lm.generation.constraints import Constraints
from music_lm.generation.models import _Runner
from music_lm.generation.outputs import variant_files
from music_lm.generation.ranges import without
from music_lm.generation.repeats import MAX_PERIOD, RepeatGuard
from music_lm.generation.runner import generate
from music_lm.generation.seeds import cut_seed
from music_lm.generation.state import ContinuationState
from music_lm.model.folder import load_model
from music_lm.tokens.validate import validate
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
BAND = EXAMPLES / "band_with_drums.mid"
R = VOCAB.ranges
OFF_KIT = [R["drum"].start + k for k in (*range(0, 35), *range(82, 128))]
LONG = [*R["dur_long"], *range(R["dur"].stop - 24, R["dur"].stop)]  # 3..4 quarters and more


@pytest.fixture(scope="module")
def loaded(tiny_model: Path):
    return [load_model(tiny_model)]


def pushing(ids_to_push):
    """A model step that adds +50 to the logits of `ids_to_push(input ids)` in each row."""

    def patched(original):
        def forward(self, ids, positions):
            logits = original(self, ids, positions)
            for row in range(logits.shape[0]):
                logits[row, ids_to_push(ids[row])] += 50.0
            return logits

        return forward

    return patch.object(_Runner, "_forward", patched(_Runner._forward))


def repeat_last(ids: torch.Tensor) -> list[int]:
    """A looping model: it writes again the token it has just written."""
    return [int(ids[-1])]


def run(loaded, constraints: Constraints, push, seed=BAND, seed_bars=2, variants=3):
    with pushing(push):
        generation = generate(seed, seed_bars=seed_bars, constraints=constraints,
                              variants=variants, random_seed=5, loaded=loaded,
                              models=["tiny"], retries=0)  # fmt: skip
    out = []
    for variant in generation.variants:
        validate(variant.text)
        midi = variant_files(generation, variant, "x")[".mid"]
        out.append((variant, midi, midi_facts(midi)))
    return out


def new_drums(facts: dict) -> list[tuple[float, float, int]]:
    start = continuation_beat(facts)
    return [n for n in facts["notes"].get(DRUM_CHANNEL, []) if n[0] >= start - 1e-9]


def unisons(facts: dict) -> int:
    start = continuation_beat(facts)
    count = 0
    for notes in facts["notes"].values():
        starts = [(o, p) for o, _e, p in notes if o >= start - 1e-9]
        count += len(starts) - len(set(starts))
    return count


# ---- no pitch twice at one onset ----


def test_a_looping_model_stacks_no_unison(loaded) -> None:
    for variant, midi, facts in run(loaded, Constraints(bars=2), repeat_last):
        check_constraints(midi, Constraints(bars=2), variant.continuation_tick / GRID_PER_QUARTER)
        assert unisons(facts) == 0


def test_with_unisons_allowed_the_looping_model_stacks_them(loaded) -> None:
    constraints = Constraints(bars=2, unisons=True, loop_guard=None)
    assert sum(unisons(facts) for _v, _m, facts in run(loaded, constraints, repeat_last)) > 10


# ---- drums on the kit, of one length ----


def test_drums_stay_on_the_general_midi_kit(loaded) -> None:
    results = run(loaded, Constraints(bars=2), lambda _ids: OFF_KIT)
    assert sum(len(new_drums(facts)) for _v, _m, facts in results) > 0
    for _variant, _midi, facts in results:
        assert all(35 <= key <= 81 for _o, _e, key in new_drums(facts))


def test_drum_keys_any_lets_off_kit_keys_through(loaded) -> None:
    results = run(loaded, Constraints(bars=2, drum_keys="any"), lambda _ids: OFF_KIT)
    assert any(not 35 <= key <= 81 for _v, _m, f in results for _o, _e, key in new_drums(f))


def test_drum_keys_seed_keeps_to_the_keys_the_seed_plays(loaded) -> None:
    seed_keys = {36, 38, 42, 49}  # the band example's bass drum, snare, hi-hat and crash
    results = run(loaded, Constraints(bars=2, drum_keys="seed"), lambda _ids: OFF_KIT)
    played = {key for _v, _m, facts in results for _o, _e, key in new_drums(facts)}
    assert played
    assert played <= seed_keys


def test_drum_notes_take_one_short_length_whatever_the_model_wants(loaded) -> None:
    """The seed's drums are sixteenths: `auto` takes that length. Only a drum note in the
    last sixteenth of the piece is shorter: it ends with the piece."""
    constraints = Constraints(bars=2)
    lengths = set()
    for _variant, _midi, facts in run(loaded, constraints, lambda _ids: LONG):
        start = continuation_beat(facts)
        end = start + 2 * 2  # two bars of 2/4
        check_decoding_defaults(facts, constraints, start, end)
        for onset, stop, _key in new_drums(facts):
            if stop < end - 1e-9:
                lengths.add(round(stop - onset, 6))
            else:
                assert end - onset < 0.25
    assert lengths == {0.25}


def test_drum_length_any_lets_long_drum_notes_through(loaded) -> None:
    results = run(loaded, Constraints(bars=2, drum_steps=None), lambda _ids: LONG)
    lengths = {round(e - o, 6) for _v, _m, f in results for o, e, _k in new_drums(f)}
    assert len(lengths) > 1


@pytest.mark.parametrize(("text", "steps"), [("auto", 0), ("any", None), ("1/4", 6), ("1", 24)])
def test_drum_length_options(text: str, steps: int | None) -> None:
    from music_lm.generation.options import constraints_from_options

    assert constraints_from_options(2, drum_length=text).drum_steps == steps


# ---- nothing past the end ----


def test_no_note_rings_past_the_end_however_long_the_model_holds(loaded) -> None:
    constraints = Constraints(bars=2)
    for variant, midi, _facts in run(loaded, constraints, lambda _ids: LONG):
        check_constraints(midi, constraints, variant.continuation_tick / GRID_PER_QUARTER)


def test_hold_past_end_lets_notes_ring_on(loaded) -> None:
    results = run(loaded, Constraints(bars=2, hold_past_end=True), lambda _ids: LONG)
    ends = [e for _v, _m, f in results for notes in f["notes"].values() for _o, e, _p in notes]
    start = continuation_beat(results[0][2])
    assert max(ends) > start + 2 * 2  # two bars of 2/4


def test_a_seed_note_held_past_the_end_leaves_its_pitch_out() -> None:
    text = ("piece style:none tempo:120 ts:4/4 inst:acoustic-grand-piano\n"
            "bar @0 t1 d:64+ d:1 v:80 C4 @1 d:1 E4\n")  # fmt: skip
    ids = validate(text + "end")[:-1]
    c4 = VOCAB.ids["C4"]
    state = ContinuationState(ids, Constraints(bars=2))
    assert 60 not in state.tracks[0].pitches
    held = ContinuationState(ids, Constraints(bars=2, hold_past_end=True))
    assert 60 in held.tracks[0].pitches
    assert c4 not in {t for lo, hi in state.tracks[0].pitch_ranges for t in range(lo, hi)}


# ---- the loop guard ----


def longest_repeat_run(tokens: list[int]) -> int:
    """The longest stretch in which each token equals the one p before it, p in 1..8, and
    which holds its first p tokens at least twice."""
    best = 0
    for period in range(1, MAX_PERIOD + 1):
        run_length = 0
        for i in range(period, len(tokens)):
            run_length = run_length + 1 if tokens[i] == tokens[i - period] else 0
            if run_length >= period:
                best = max(best, run_length + period)
    return best


def test_the_loop_guard_bounds_runs_even_with_unisons_allowed(loaded) -> None:
    constraints = Constraints(bars=2, unisons=True, loop_guard=12)
    for variant, _midi, _facts in run(loaded, constraints, repeat_last):
        assert longest_repeat_run(variant.ids[variant.seed_length :]) <= 12


def test_without_the_loop_guard_a_looping_model_runs_on(loaded) -> None:
    constraints = Constraints(bars=2, unisons=True, loop_guard=None)
    runs = [longest_repeat_run(v.ids[v.seed_length :]) for v, _m, _f in
            run(loaded, constraints, repeat_last)]  # fmt: skip
    assert max(runs) > 40


def test_the_guard_counts_runs_of_each_period() -> None:
    guard = RepeatGuard(limit=6)
    for token in [1, 2, 1, 2, 1, 2]:
        guard.take(token)
    assert guard.banned() == {1}  # 1 2 1 2 1 2 1 would be a run of seven
    guard.take(3)
    assert guard.banned() == set()
    for token in [3, 3, 3, 3, 3]:
        guard.take(token)
    assert guard.banned() == {3}  # six 3s: a seventh would make a run of seven


def test_without_leaves_out_tokens_of_ranges() -> None:
    assert without([(0, 5), (8, 10)], {0, 2, 9}) == [(1, 2), (3, 5), (8, 9)]
    assert without([(0, 5)], set()) == [(0, 5)]


def test_the_loop_guard_never_leaves_nothing_allowed() -> None:
    """When the guard would ban every token allowed, it bans none: each of them leads to a
    valid end, and the piece must go on."""
    ids = cut_seed(validate(midi_to_text(BAND))[:-1], 1)
    state = ContinuationState(ids, Constraints(bars=1))
    state.advance(state.allowed_ranges()[0][0])  # `bar`, the only token allowed first
    allowed = state.allowed_ranges()
    everything = {t for lo, hi in allowed for t in range(lo, hi)}
    with patch.object(RepeatGuard, "banned", lambda _self: everything):
        assert state.allowed_ranges() == allowed
    some = set(sorted(everything)[:3])
    with patch.object(RepeatGuard, "banned", lambda _self: some):
        assert state.allowed_ranges() == without(allowed, some)


@pytest.mark.parametrize("hold", [False, True])
def test_a_seed_note_held_past_the_end_ends_with_the_piece(loaded, hold: bool) -> None:
    text = ("piece style:none tempo:120 ts:4/4 inst:acoustic-grand-piano\n"
            "bar @0 t1 d:64+ d:1 v:80 C4 @1 d:1 E4\n")  # fmt: skip
    constraints = Constraints(bars=2, hold_past_end=hold)
    generation = generate(validate(text + "end")[:-1], constraints=constraints, random_seed=1,
                          loaded=loaded, models=["tiny"])  # fmt: skip
    variant = generation.variants[0]
    facts = midi_facts(variant_files(generation, variant, "x")[".mid"])
    c4 = [n for notes in facts["notes"].values() for n in notes if n[2] == 60 and n[0] == 0]
    assert c4 == [(0.0, 65.0 if hold else 12.0, 60)]  # 3 bars of 4/4 end at beat 12
    assert ("d:64+ d:1 v:80 C4" in variant.text) is hold


# ---- the last bar: a model that asks for another bar is done ----


def test_in_the_last_bar_the_wish_for_another_bar_ends_the_piece(loaded) -> None:
    """A model that always wants `bar` closes each bar after its first note; in the last bar,
    where `bar` may not come, that wish goes to `end` instead of to later positions."""
    from music_lm.tokens.rules import BAR, END

    for variant, _midi, _facts in run(loaded, Constraints(bars=3), lambda _ids: [BAR]):
        new = variant.ids[variant.seed_length :]
        last_bar = new[len(new) - 1 - new[::-1].index(BAR) :]
        words = [VOCAB.tokens[t] for t in last_bar]
        assert last_bar[-1] == END
        assert sum(w.startswith("@") for w in words) == 1, words  # one onset, then the end
        assert VOCAB.is_note[last_bar[-2]], words


def test_bar_means_end_moves_the_score_only_in_the_last_bar() -> None:
    from music_lm.generation.sampling import _bar_means_end
    from music_lm.tokens.rules import BAR, END

    ids = cut_seed(validate(midi_to_text(BAND))[:-1], 1)
    state = ContinuationState(ids, Constraints(bars=1))
    scores = torch.zeros(1, len(VOCAB))
    scores[0, BAR] = 5.0
    ranges = [[(END, END + 1)]]
    assert _bar_means_end(scores, [state], ranges) is scores  # no bar begun yet
    for word in ("bar", "@0", "t1", "d:1/2", "v:80", "D5"):
        state.advance(VOCAB.ids[word])
    moved = _bar_means_end(scores, [state], [state.allowed_ranges()])
    assert moved[0, END] == pytest.approx(
        float(torch.logaddexp(torch.tensor(0.0), torch.tensor(5.0)))
    )
    assert scores[0, END] == 0.0  # the caller's scores are left as they were
