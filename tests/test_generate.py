"""Constrained continuation: every output is valid and keeps every constraint.

The constraints are checked by an independent checker that reads the decoded MIDI with
mido (not the masks' own bookkeeping). A tiny random GPT-2 with a 64-token context
stands in for a trained model, so the windows slide many times per piece; adversarial
logits push invalid tokens far up.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st
from midi_checker import check_constraints
from typer.testing import CliRunner

from music_lm.api import midi_to_text
from music_lm.cli import app
from music_lm.generation.constraints import ConstraintError, Constraints, scale_pitch_classes
from music_lm.generation.models import _Runner
from music_lm.generation.options import parse_instrument, parse_key, parse_range
from music_lm.generation.outputs import post_check, variant_files
from music_lm.generation.runner import generate
from music_lm.generation.sampling import allowed_mask, draw_tokens, filtered_probabilities
from music_lm.generation.seeds import cut_seed, key_signature_of, seed_from_text
from music_lm.generation.settings import GenerationError, Sampling, parse_temperature
from music_lm.generation.state import ContinuationState
from music_lm.model.folder import load_model, model_config, new_model
from music_lm.tokens.codec import decode
from music_lm.tokens.rules import BAR
from music_lm.tokens.validate import validate
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
SEEDS = sorted(EXAMPLES.glob("*.mid"))

MELODY = """piece style:none tempo:96 ts:4/4 key:G:major inst:flute
bar @0 t1 d:1 v:80 D4 @1 d:1+1/2 G4 @2+1/2 d:1/2 A4 @3 d:1 B4
bar @0 t1 d:1 v:80 G4 @1 d:1/3 C5 @1+1/3 B4 @1+2/3 A4 @2 d:1 B4 @3 d:2 A4
end"""


@pytest.fixture(scope="module")
def loaded(tiny_model: Path):
    return [load_model(tiny_model)]


def adversarial_forward(original):
    """A model step whose logits push a random half of the vocabulary far up: mostly
    tokens the grammar or the constraints forbid."""

    def forward(self, ids, positions):
        logits = original(self, ids, positions)
        # a different half at every step: seeded by the ids and positions themselves
        step_seed = int(ids.sum()) * 1_000_003 + int(positions.sum())
        push = torch.rand(logits.shape, generator=torch.Generator().manual_seed(step_seed))
        return logits + 50.0 * (push < 0.5)

    return forward


# ---- the mask factor: random walks choosing among the allowed tokens ----


LONG_PARTS = range(VOCAB.ranges["dur_long"].start, VOCAB.ranges["dur_long"].stop)


def walk(seed_ids, constraints, budget_slack, rng, long_bias: float = 0.0) -> list[int]:
    """Choose among the allowed tokens until the end; with `long_bias`, a long duration
    part whenever one is allowed, that often (chords of long notes, as a trained model
    writes them, are rare in a uniform walk)."""
    state = ContinuationState(seed_ids, constraints)
    budget = state.needed() + budget_slack
    out: list[int] = []
    while not state.done:
        ranges = state.allowed_ranges(budget - len(out))
        assert ranges, f"a dead end after {[VOCAB.tokens[t] for t in out[-8:]]}"
        choices = [t for lo, hi in ranges for t in range(lo, hi)]
        longs = [t for t in choices if t in LONG_PARTS]
        token = rng.choice(longs if longs and rng.random() < long_bias else choices)
        state.advance(token)
        out.append(token)
        assert len(out) <= budget
    return out


constraint_sets = st.builds(
    Constraints,
    bars=st.integers(1, 4),
    scale=st.one_of(
        st.none(),
        st.tuples(
            st.integers(0, 11),
            st.sampled_from(["major", "minor", "dorian", "pentatonic-minor", "blues"]),
        ),
    ),
    pitch_range=st.one_of(st.none(), st.just((48, 84)), st.just((60, 72))),  # (60, 72): NARROW
    max_polyphony=st.one_of(st.none(), st.integers(1, 3)),
    instruments=st.one_of(st.none(), st.just(frozenset(range(128))), st.just(frozenset({-1, 0}))),
    instrument_ranges=st.booleans(),
    lock_tempo=st.booleans(),
    lock_meter=st.booleans(),
    lock_key=st.booleans(),
    unisons=st.booleans(),
    drum_keys=st.sampled_from(["gm", "seed", "any"]),
    drum_steps=st.sampled_from([0, None, 1, 6, 96]),
    hold_past_end=st.booleans(),
    loop_guard=st.sampled_from([None, 2, 3, 32]),
)


# derandomize: the same 150 walks on every run. The narrow range with long chords is the
# known dead end below (xfail); random walks leave it out, or they fail now and then (2 of
# 3,329 walks did).
NARROW = (60, 72)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed_file=st.sampled_from(SEEDS),
    seed_bars=st.integers(0, 3),
    constraints=constraint_sets,
    slack=st.sampled_from([0, 1, 3, 12, 300]),
    walk_seed=st.integers(0, 2**16),
    long_bias=st.sampled_from([0.0, 0.7]),
)
def test_every_walk_over_the_allowed_tokens_ends_valid_within_budget(
    seed_file, seed_bars, constraints, slack, walk_seed, long_bias
) -> None:
    assume(not (constraints.pitch_range == NARROW and long_bias > 0 and constraints.hold_past_end))
    ids = cut_seed(validate(midi_to_text(seed_file))[:-1], seed_bars)
    try:
        ContinuationState(ids, constraints)
    except ConstraintError:  # e.g. a seed track that has not played is not allowed
        reject()
    out = walk(ids, constraints, slack, random.Random(walk_seed), long_bias)
    text = " ".join(VOCAB.tokens[t] for t in ids + out)
    validate(text)
    assert out.count(BAR) == constraints.bars


@pytest.mark.xfail(
    reason="known limit, with --hold-past-end: in a 13-pitch range, chords of notes hundreds of "
    "quarters long can hold every pitch through the last bar; a note there then needs more "
    "duration words than the budget kept (the sampler stops with GenerationError, never an "
    "invalid output)",
    raises=AssertionError,
)
def test_a_walk_of_very_long_chords_in_a_narrow_range_ends_within_budget() -> None:
    ids = cut_seed(validate(midi_to_text(EXAMPLES / "folk_tune.mid"))[:-1], 2)
    constraints = Constraints(bars=2, pitch_range=NARROW, hold_past_end=True, unisons=True,
                              loop_guard=None)  # fmt: skip
    walk(ids, constraints, 300, random.Random(1257), 0.9)


def test_by_default_no_chord_holds_past_the_end_so_the_narrow_range_walk_ends() -> None:
    """The walk above, with notes ending by the end of the last new bar (the default)."""
    ids = cut_seed(validate(midi_to_text(EXAMPLES / "folk_tune.mid"))[:-1], 2)
    for walk_seed in (1257, 1, 2, 3):
        out = walk(ids, Constraints(bars=2, pitch_range=NARROW), 300, random.Random(walk_seed), 0.9)
        assert out.count(BAR) == 2


@pytest.mark.parametrize("seed_bars", [1, 9, 10])
def test_after_a_short_bar_the_continuation_is_whole_bars(seed_bars: int) -> None:
    """The folk tune's bar 1 is an eighth-note pickup, its bar 9 lasts 2 1/2 of 3 quarter
    notes and bar 10 an eighth: continued from any of them, every new bar is a whole bar of
    6/8, whatever the walk chooses; a bare position (a cut) is never offered."""
    text = midi_to_text(EXAMPLES / "folk_tune.mid")
    ids = cut_seed(validate(text)[:-1], seed_bars)
    seed_end = decode(text).bar_starts()[seed_bars]  # where the seed's last bar ends
    for walk_seed in range(6):
        out = walk(ids, Constraints(bars=3), 300, random.Random(walk_seed), long_bias=0.3)
        score = decode(" ".join(VOCAB.tokens[t] for t in [*ids, *out]))
        starts = score.bar_starts(10**6)
        assert starts[seed_bars] == seed_end
        assert [b - a for a, b in zip(starts[seed_bars:], starts[seed_bars + 1 : seed_bars + 4],
                                      strict=False)] == [3 * GRID_PER_QUARTER] * 3  # fmt: skip
        assert [ts for ts in score.time_signatures if ts.tick > seed_end] == []
        words = [VOCAB.tokens[t] for t in out]
        for word, following in itertools.pairwise(words):
            assert not (word.startswith("@") and following in ("bar", "end")), words


def test_a_budget_smaller_than_the_shortest_ending_is_refused(loaded) -> None:
    with pytest.raises(GenerationError, match="cannot hold 4 new bars"):
        generate(seed_from_text(MELODY), constraints=Constraints(bars=4), max_new_tokens=10,
                 loaded=loaded, models=["tiny"])  # fmt: skip


# ---- sampling ----


def test_sampling_never_leaves_the_allowed_ids() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, len(VOCAB)) * 5
    allowed = torch.zeros(3, len(VOCAB), dtype=torch.bool)
    allowed_mask([[(10, 12)], [(100, 101), (200, 205)], [(5, 6)]], allowed)
    logits[:, ~allowed[0]] += 100  # the invalid ids are the likeliest by far
    probs = filtered_probabilities(logits, allowed, torch.ones(3), top_k=5, top_p=0.5)
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    assert probs[~allowed].abs().sum() == 0


def test_allowed_ids_without_probability_are_drawn_uniformly() -> None:
    logits = torch.full((1, len(VOCAB)), float("-inf"))
    logits[0, 7] = 0.0  # the model wants id 7 only, and 7 is not allowed
    allowed = torch.zeros(1, len(VOCAB), dtype=torch.bool)
    allowed[0, 20:24] = True
    probs = filtered_probabilities(logits, allowed, torch.ones(1), top_p=0.9)
    assert probs[0, 20:24].tolist() == [0.25] * 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.0, 0.0, 1e-300, 1e-12, 0.3, 1.0]), min_size=1, max_size=40),
       st.integers(0, 2**32 - 1))  # fmt: skip
def test_a_draw_never_picks_an_id_without_probability(weights: list[float], seed: int) -> None:
    """Zeros anywhere (first, last, in runs), tiny masses beside large ones: the drawn id
    always has probability, whatever the random number."""
    assume(sum(weights) > 0)
    probs = torch.tensor([weights] * 8, dtype=torch.float64)
    probs = (probs / probs.sum(-1, keepdim=True)).float()
    assume(bool((probs.sum(-1) > 0).all()))
    ids = draw_tokens(probs, torch.Generator().manual_seed(seed))
    assert all(probs[row, i] > 0 for row, i in enumerate(ids.tolist()))


def test_a_draw_near_the_top_of_the_unit_interval_stays_on_an_id_with_probability(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The uniform number's largest values, times the total, can round up to the total
    itself: the draw must still land on the last id that has probability."""
    probs = torch.tensor([[0.25, 0.75, 0.0, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones((1, 1), dtype=torch.float64))
    assert draw_tokens(probs, torch.Generator()).tolist() == [1]


def test_draws_follow_the_probabilities_and_repeat_for_a_random_seed() -> None:
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 0.0, 1.0]]).repeat(10_000, 1)
    ids = draw_tokens(probs, torch.Generator().manual_seed(7))
    counts = torch.bincount(ids[0::2], minlength=4).double() / 10_000
    assert torch.allclose(
        counts, torch.tensor([0.5, 0.0, 0.3, 0.2], dtype=torch.float64), atol=0.02
    )  # fmt: skip  (4 standard errors at most)
    assert (ids[1::2] == 3).all()
    assert torch.equal(ids, draw_tokens(probs, torch.Generator().manual_seed(7)))


def test_min_p_and_top_k_narrow_the_choice() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    allowed = torch.ones(1, 4, dtype=torch.bool)
    assert (filtered_probabilities(logits, allowed, torch.ones(1), top_k=2) > 0).sum() == 2
    assert (filtered_probabilities(logits, allowed, torch.ones(1), min_p=0.2) > 0).sum() == 3
    assert (filtered_probabilities(logits, allowed, torch.ones(1), top_p=0.7) > 0).sum() == 2


def test_temperature_ramps_across_the_new_bars() -> None:
    sampling = Sampling(temperature=parse_temperature("0.8:1.2"))
    assert [round(sampling.temperature_at(b, 5), 2) for b in range(5)] == [0.8, 0.9, 1.0, 1.1, 1.2]
    with pytest.raises(GenerationError, match="--temperature"):
        parse_temperature("hot")


# ---- whole generations with a tiny model ----


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed_file=st.sampled_from(SEEDS),
    constraints=constraint_sets,
    variants=st.integers(1, 3),
    random_seed=st.integers(0, 1000),
)
def test_generated_midi_keeps_every_constraint(
    loaded, seed_file, constraints, variants, random_seed
) -> None:
    try:
        ContinuationState(cut_seed(validate(midi_to_text(seed_file))[:-1], 2), constraints)
    except ConstraintError:  # e.g. a seed track that has not played is not allowed
        reject()
    with patch.object(_Runner, "_forward", adversarial_forward(_Runner._forward)):
        generation = generate(
            seed_file, seed_bars=2, constraints=constraints, variants=variants,
            random_seed=random_seed, loaded=loaded, models=["tiny"], retries=0,
        )  # fmt: skip
    assert len(generation.variants) == variants
    for variant in generation.variants:
        validate(variant.text)
        files = variant_files(generation, variant, "x")
        check_constraints(files[".mid"], constraints, variant.continuation_tick / GRID_PER_QUARTER)


def test_the_same_random_seed_gives_the_same_output(loaded) -> None:
    runs = [
        generate(
            SEEDS[0],
            seed_bars=1,
            constraints=Constraints(bars=2),
            variants=2,
            random_seed=7,
            loaded=loaded,
            models=["tiny"],
        )
        for _ in range(2)
    ]
    assert [v.ids for v in runs[0].variants] == [v.ids for v in runs[1].variants]
    other = generate(SEEDS[0], seed_bars=1, constraints=Constraints(bars=2), variants=2,
                     random_seed=8, loaded=loaded, models=["tiny"])  # fmt: skip
    assert [v.ids for v in other.variants] != [v.ids for v in runs[0].variants]


def test_without_a_seed_the_piece_starts_from_a_header(loaded) -> None:
    from music_lm.generation.seeds import Header

    header = Header(style="bach", tempo_bpm=90, time_signature=(3, 4), programs=(0, 32, -1))
    generation = generate(None, header=header, constraints=Constraints(bars=3),
                          random_seed=1, loaded=loaded, models=["tiny"])  # fmt: skip
    text = generation.variants[0].text
    assert text.startswith("piece style:bach tempo:90 ts:3/4 inst:acoustic-grand-piano "
                           "inst:acoustic-bass inst:drums\n")  # fmt: skip
    assert text.count("bar") == 3


def test_style_and_seed_bars_shape_the_seed(loaded) -> None:
    generation = generate(seed_from_text(MELODY), seed_bars=1, style="bach",
                          constraints=Constraints(bars=1), random_seed=2, loaded=loaded,
                          models=["tiny"])  # fmt: skip
    variant = generation.variants[0]
    assert variant.ids[:2] == [VOCAB.ids["piece"], VOCAB.ids["style:bach"]]
    assert variant.ids[variant.seed_length] == BAR
    assert variant.continuation_bar == 2
    assert variant.ids.count(BAR) == 2


def test_mixed_distributions_follow_the_weights_and_the_schedule() -> None:
    from music_lm.generation.sampling import _combine

    first, second = torch.zeros(2, len(VOCAB)), torch.zeros(2, len(VOCAB))
    first[:, 10], second[:, 20] = 30.0, 30.0  # each model sure of its own id
    states = [ContinuationState(seed_from_text(MELODY), Constraints(bars=9)) for _ in range(2)]
    scores, heated = _combine([first, second], states, [0.25, 0.75], "weights", 9, torch.ones(2))
    probs = torch.softmax(scores, -1)
    assert heated
    assert torch.allclose(probs[:, 10], torch.tensor(0.25), atol=1e-4)
    assert torch.allclose(probs[:, 20], torch.tensor(0.75), atol=1e-4)
    # schedule: 9 bars over 2 models, the first model for bars 1..5, the second from bar 6
    for bar, expected in ((1, 10), (5, 10), (6, 20), (9, 20)):
        states[0].bars_started = bar
        scores, heated = _combine([first, second], states, [0.5, 0.5], "schedule", 9, torch.ones(2))
        assert not heated
        assert int(scores[0].argmax()) == expected


def test_checkpoints_mix_by_weights_and_by_schedule(loaded, tiny_model: Path) -> None:
    two = loaded * 2
    for mix, weights in (("weights", [0.3, 0.7]), ("schedule", None)):
        generation = generate(seed_from_text(MELODY), constraints=Constraints(bars=2),
                              models=[tiny_model, tiny_model], loaded=two, mix=mix,
                              mix_weights=weights, random_seed=3)  # fmt: skip
        validate(generation.variants[0].text)
        assert len(generation.models) == 2
    with pytest.raises(GenerationError, match="--mix"):
        generate(seed_from_text(MELODY), models=[tiny_model, tiny_model], loaded=two)
    with pytest.raises(GenerationError, match="--mix-weights goes with --mix weights"):
        generate(seed_from_text(MELODY), models=[tiny_model] * 2, loaded=two, mix="schedule",
                 mix_weights=[1, 2])  # fmt: skip
    with pytest.raises(GenerationError, match="2 weights for 3 models"):
        generate(seed_from_text(MELODY), models=[tiny_model] * 3, loaded=loaded * 3,
                 mix="weights", mix_weights=[1, 2])  # fmt: skip
    with pytest.raises(GenerationError, match="need --bars 3 or more, got 2"):
        generate(seed_from_text(MELODY), models=[tiny_model] * 3, loaded=loaded * 3,
                 mix="schedule", constraints=Constraints(bars=2))  # fmt: skip


def test_a_header_from_options_alone(loaded) -> None:
    from music_lm.generation.constraints import SEED_KEY
    from music_lm.generation.seeds import Header

    # --scale without --key: the tonic is C, and the header states no key
    generation = generate(constraints=Constraints(bars=1, scale=(SEED_KEY, "dorian")),
                          loaded=loaded, models=["tiny"], random_seed=1)  # fmt: skip
    assert generation.settings["constraints"]["scale"] == "C:dorian"
    assert "key:" not in generation.variants[0].text.split(" bar ")[0]
    generation = generate(constraints=Constraints(bars=1, scale=(2, "minor")),
                          loaded=loaded, models=["tiny"], random_seed=1)  # fmt: skip
    assert "key:D:minor" in generation.variants[0].text.split()
    for header, message in ((Header(), None), ({"style": "nope"}, "--style nope"),
                            ({"time_signature": (4, 0)}, "--ts 4/0")):  # fmt: skip
        if message is None:
            continue
        with pytest.raises(GenerationError, match=message):
            Header(**header)


def test_attention_of_the_new_tokens_is_captured(tiny_model: Path) -> None:
    model = [load_model(tiny_model)]
    generation = generate(seed_from_text(MELODY), constraints=Constraints(bars=2),
                          attention=True, random_seed=4, loaded=model, models=["tiny"])  # fmt: skip
    variant = generation.variants[0]
    assert len(variant.ids) > 64 + 16  # past the context: at least one re-window
    layers, heads = model[0].model.config.n_layer, model[0].model.config.n_head
    assert variant.attention.shape == (layers, heads, variant.new_tokens, len(variant.ids))
    weights = variant.attention.astype("float32")
    sums = weights.sum(-1)
    # Before the first re-window (a 64-token context here) each query's weights sum to one
    # over the tokens before it; after one, the restated header's share is left out.
    assert np.allclose(sums[:, :, 0], 1.0, atol=1e-3)
    assert (sums <= 1.0 + 1e-3).all()
    assert (sums[:, :, -1] < 0.999).all()
    for i in range(variant.new_tokens):  # causal: nothing on the token itself or later
        assert not weights[:, :, i, variant.seed_length + i :].any()
    # the last query's window no longer holds the seed's first bar
    first_bar = variant.ids.index(BAR)
    assert not weights[:, :, -1, first_bar : first_bar + 8].any()


def test_a_copy_of_the_seed_or_silence_is_redrawn() -> None:
    seed = seed_from_text(MELODY)
    bars = [i for i, t in enumerate(seed) if t == BAR]
    copied = seed + seed[bars[0] : bars[1]]
    assert post_check(copied, len(seed)) == "copies the seed"
    assert post_check(seed + seed[bars[1] :], len(seed)) == "copies the seed"
    fresh = seed_from_text(MELODY.replace("B4 @3 d:2 A4", "B4 @3 d:2 C5"))
    assert post_check(seed + fresh[bars[1] :], len(seed)) == "ok"


# ---- parsing the user's words ----


def test_keys_scales_ranges_and_instruments_parse() -> None:
    assert parse_key("D:minor") == (2, "minor")
    assert parse_key("Bb") == (10, "major")
    assert scale_pitch_classes(9, "pentatonic-minor") == frozenset({9, 0, 2, 4, 7})
    assert parse_range("C3-C6") == (48, 84)
    assert parse_range("Bb2-F#5") == (46, 78)
    assert parse_instrument("bass") == tuple(range(32, 40))
    assert parse_instrument("flute") == (73,)
    assert key_signature_of(2, "minor") == (-1, "minor")
    assert key_signature_of(2, "dorian") == (0, "major")
    for bad, call in (("H:minor", parse_key), ("C3", parse_range), ("kazoo", parse_instrument)):
        with pytest.raises(ConstraintError, match=repr(bad).strip("'")):
            call(bad)


def test_contradicting_constraints_are_refused_by_name() -> None:
    seed = seed_from_text(MELODY)
    with pytest.raises(ConstraintError, match="none of the seed's instruments"):
        ContinuationState(seed, Constraints(instruments=frozenset({0})))
    with pytest.raises(ConstraintError, match="it needs at least 4"):
        ContinuationState(seed, Constraints(pitch_range=(60, 62), scale=(0, "major"),
                                            max_polyphony=3))  # fmt: skip
    with pytest.raises(ConstraintError, match="--bars"):
        Constraints(bars=0)


# ---- the command line ----


def test_generate_writes_midi_text_and_json_per_variant(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, [
        "generate", str(SEEDS[0]), "--seed-bars", "1", "--bars", "2", "-n", "2",
        "--model", str(tiny_model), "--key", "C:major", "--random-seed", "5", "-o", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    stem = SEEDS[0].stem
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}-{k}{s}" for k in (1, 2) for s in (".mid", ".txt", ".json")
    )
    record = json.loads((out / f"{stem}-1.json").read_text())
    assert record["random_seed"] == 5
    assert record["constraints"]["scale"] == "C:major"
    assert record["models"][0]["sha256"]
    assert record["continuation_bar"] == 2
    validate((out / f"{stem}-2.txt").read_text())
    # again without --force: refused, nothing changed
    before = (out / f"{stem}-1.mid").read_bytes()
    result = runner.invoke(app, ["generate", str(SEEDS[0]), "--model", str(tiny_model),
                                 "-o", str(out), "-n", "2", "--bars", "1"])  # fmt: skip
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert (out / f"{stem}-1.mid").read_bytes() == before


def test_a_seed_with_no_notes_is_continued_from_its_header(
    tiny_model: Path, tmp_path: Path, make_midi
) -> None:
    import mido

    seed = tmp_path / "count-in.mid"
    make_midi([
        (0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(140))),
        (0, mido.MetaMessage("time_signature", numerator=6, denominator=8)),
        (1440, mido.MetaMessage("end_of_track")),
    ], path=seed)  # fmt: skip
    out = tmp_path / "out"
    args = ["generate", str(seed), "--bars", "2", "--instruments", "bass"]
    result = CliRunner().invoke(app, [*args, "--model", str(tiny_model), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "count-in-1.txt").read_text()
    validate(text)
    assert text.split()[2:5] == ["tempo:140", "ts:6/8", "inst:acoustic-bass"]
    assert text.count("bar") == 2


def test_continue_runs_over_a_folder_and_names_a_bad_file(tiny_model: Path, tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mid").write_bytes(SEEDS[0].read_bytes())
    (folder / "broken.mid").write_bytes(b"MThd nonsense")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["continue", str(folder), "-o", str(out), "--bars", "1",
                                      "--model", str(tiny_model)])  # fmt: skip
    assert result.exit_code == 2
    assert "broken.mid" in result.output
    assert (out / "a-1.mid").is_file()
    assert not list(out.glob("broken*"))


def test_the_masks_also_work_inside_transformers_generate() -> None:
    from music_lm.generation.processor import grammar_logits_processor
    from music_lm.tokens.rules import END

    torch.manual_seed(0)
    model = new_model(model_config("tiny", context=512)).eval()
    seed = seed_from_text(MELODY)
    processor = grammar_logits_processor(seed, Constraints(bars=2, scale=(7, "major")), 200)
    out = model.generate(
        input_ids=torch.tensor([seed] * 2),
        attention_mask=torch.ones(2, len(seed), dtype=torch.long),
        logits_processor=[processor], do_sample=True, max_new_tokens=200, eos_token_id=END,
        pad_token_id=VOCAB.ids["<pad>"],
    )  # fmt: skip
    for row in out.tolist():
        ids = row[: row.index(END, len(seed)) + 1]
        validate(" ".join(VOCAB.tokens[t] for t in ids))
        assert ids[len(seed) :].count(BAR) == 2


# ---- threads ----


def test_decoding_uses_one_torch_thread_and_gives_the_count_back(
    tiny_model: Path, monkeypatch
) -> None:
    import torch

    import music_lm.generation.models as generation

    seen: list[int] = []
    real_forward = generation._Runner._forward

    def watching(self, ids, positions):
        seen.append(torch.get_num_threads())
        return real_forward(self, ids, positions)

    monkeypatch.setattr(generation._Runner, "_forward", watching)
    torch.set_num_threads(2)
    generate(SEEDS[0], models=[tiny_model], random_seed=1)
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2  # as it was before
    monkeypatch.setenv("MUSIC_LM_DECODE_THREADS", "2")
    seen.clear()
    generate(SEEDS[0], models=[tiny_model], random_seed=1)
    assert set(seen) == {2}
    monkeypatch.setenv("MUSIC_LM_DECODE_THREADS", "none")
    with pytest.raises(GenerationError, match=r"MUSIC_LM_DECODE_THREADS must be .*'none'"):
        generate(SEEDS[0], models=[tiny_model])


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_import_music_lm_makes_openmp_threads_sleep_unless_told(given, expected) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, music_lm; print(os.environ['OMP_WAIT_POLICY'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == expected, done.stderr
