"""Constrained continuation: every output is valid and keeps every constraint.

The constraints are checked by an independent checker that reads the decoded MIDI with
mido (not the masks' own bookkeeping). A tiny random GPT-2 with a 64-token context
stands in for a trained model, so the windows slide many times per piece; adversarial
logits push invalid tokens far up.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from unittest.mock import patch

import mido
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from music_lm.api import midi_to_text
from music_lm.cli import app
from music_lm.constraints import (
    ConstraintError,
    Constraints,
    ContinuationState,
    parse_instrument,
    parse_key,
    parse_range,
    scale_pitch_classes,
)
from music_lm.generate import (
    GenerationError,
    Sampling,
    _Runner,
    allowed_mask,
    cut_seed,
    filtered_probabilities,
    generate,
    key_signature_of,
    parse_temperature,
    post_check,
    seed_from_text,
    variant_files,
)
from music_lm.grammar import BAR, validate
from music_lm.instruments import pitch_range
from music_lm.model import load_model, model_config, model_meta, new_model, save_model_folder
from music_lm.vocab import VOCAB

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
SEEDS = sorted(EXAMPLES.glob("*.mid"))

MELODY = """piece style:none tempo:96 ts:4/4 key:G:major inst:flute
bar @0 t1 d:1 v:80 D4 @1 d:1+1/2 G4 @2+1/2 d:1/2 A4 @3 d:1 B4
bar @0 t1 d:1 v:80 G4 @1 d:1/3 C5 @1+1/3 B4 @1+2/3 A4 @2 d:1 B4 @3 d:2 A4
end"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = new_model(model_config("tiny", context=64))
    return save_model_folder(model, tmp_path_factory.mktemp("tiny-model"), model_meta())


@pytest.fixture(scope="module")
def loaded(tiny_model: Path):
    return [load_model(tiny_model)]


def adversarial_forward(original):
    """A model step whose logits push a random half of the vocabulary far up: mostly
    tokens the grammar or the constraints forbid."""

    def forward(self, ids, positions):
        logits = original(self, ids, positions)
        push = torch.rand(logits.shape, generator=torch.Generator().manual_seed(ids.numel()))
        return logits + 50.0 * (push < 0.5)

    return forward


# ---- an independent checker: reads the MIDI file back with mido ----


def midi_facts(data: bytes) -> dict:
    """Notes per channel with (onset, end, pitch) in quarter notes, the tempo and meter
    events, programs by channel, and the marker, from the MIDI bytes alone."""
    midi = mido.MidiFile(file=io.BytesIO(data))
    ppq = midi.ticks_per_beat
    facts = {"notes": {}, "tempos": [], "meters": [], "keys": [], "programs": {}, "markers": []}
    for track in midi.tracks:
        tick = 0
        sounding: dict[tuple[int, int], list[int]] = {}
        for message in track:
            tick += message.time
            beat = tick / ppq
            if message.type == "set_tempo":
                facts["tempos"].append((beat, round(mido.tempo2bpm(message.tempo), 2)))
            elif message.type == "time_signature":
                facts["meters"].append((beat, (message.numerator, message.denominator)))
            elif message.type == "key_signature":
                facts["keys"].append((beat, message.key))
            elif message.type == "marker":
                facts["markers"].append((beat, message.text))
            elif message.type == "program_change":
                facts["programs"][message.channel] = message.program
            elif message.type == "note_on" and message.velocity > 0:
                sounding.setdefault((message.channel, message.note), []).append(beat)
            elif message.type in ("note_off", "note_on"):
                onset = sounding[(message.channel, message.note)].pop(0)
                facts["notes"].setdefault(message.channel, []).append((onset, beat, message.note))
    return facts


def bar_lines(facts: dict, start_beat: float, bars: int) -> list[float]:
    """The beats where the new bars start, and where the last one ends, by the meters."""
    meters = sorted(facts["meters"])
    lines = [start_beat]
    for _ in range(bars):
        here = lines[-1]
        numerator, denominator = [m for beat, m in meters if beat <= here + 1e-9][-1]
        lines.append(here + 4 * numerator / denominator)
    return lines


def check_constraints(data: bytes, constraints: Constraints, start_beat: float):
    """Every constraint, read from the MIDI: new notes only (from `start_beat` on)."""
    facts = midi_facts(data)
    assert facts["markers"] == [(start_beat, "music_lm continuation")]
    lines = bar_lines(facts, start_beat, constraints.bars)
    end_beat = lines[-1]
    classes = None if constraints.scale is None else scale_pitch_classes(*constraints.scale)
    new_bars_with_onsets = set()
    for channel, notes in facts["notes"].items():
        drums = channel == 9
        program = None if drums else facts["programs"].get(channel, 0)
        new = [n for n in notes if n[0] >= start_beat - 1e-9]
        for onset, _end, pitch in new:
            assert onset < end_beat - 1e-9, f"a note at beat {onset} after the last bar"
            new_bars_with_onsets.add(max(i for i, line in enumerate(lines) if line <= onset))
            if constraints.instruments is not None:
                assert (-1 if drums else program) in constraints.instruments
            if drums:
                continue
            if classes is not None:
                assert pitch % 12 in classes, f"pitch {pitch} outside the scale"
            low, high = constraints.pitch_range or (
                pitch_range(program) if constraints.instrument_ranges else (0, 127)
            )
            assert low <= pitch <= high, f"pitch {pitch} outside {low}..{high}"
        if constraints.max_polyphony is not None and not drums:
            for onset, _end, _pitch in new:
                sounding = sum(1 for o, e, _p in notes if o <= onset < e)
                assert sounding <= constraints.max_polyphony, f"{sounding} notes at beat {onset}"
    # the last bar has a note (the others may be held through)
    assert constraints.bars - 1 in new_bars_with_onsets
    if constraints.lock_tempo:
        assert all(beat < start_beat for beat, _ in facts["tempos"][1:])
    if constraints.lock_meter:
        assert all(beat < start_beat for beat, _ in facts["meters"][1:])


# ---- the mask factor: random walks choosing among the allowed tokens ----


def walk(seed_ids, constraints, budget_slack, rng) -> list[int]:
    state = ContinuationState(seed_ids, constraints)
    budget = state.needed() + budget_slack
    out: list[int] = []
    while not state.done:
        ranges = state.allowed_ranges(budget - len(out))
        assert ranges, f"a dead end after {[VOCAB.tokens[t] for t in out[-8:]]}"
        choices = [t for lo, hi in ranges for t in range(lo, hi)]
        token = rng.choice(choices)
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
    pitch_range=st.one_of(st.none(), st.just((48, 84)), st.just((60, 72))),
    max_polyphony=st.one_of(st.none(), st.integers(1, 3)),
    lock_tempo=st.booleans(),
    lock_meter=st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed_file=st.sampled_from(SEEDS),
    seed_bars=st.integers(0, 3),
    constraints=constraint_sets,
    slack=st.sampled_from([0, 1, 3, 12, 300]),
    walk_seed=st.integers(0, 2**16),
)
def test_every_walk_over_the_allowed_tokens_ends_valid_within_budget(
    seed_file, seed_bars, constraints, slack, walk_seed
) -> None:
    ids = cut_seed(validate(midi_to_text(seed_file))[:-1], seed_bars)
    out = walk(ids, constraints, slack, random.Random(walk_seed))
    text = " ".join(VOCAB.tokens[t] for t in ids + out)
    validate(text)
    assert out.count(BAR) == constraints.bars


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
    with patch.object(_Runner, "_forward", adversarial_forward(_Runner._forward)):
        generation = generate(
            seed_file, seed_bars=2, constraints=constraints, variants=variants,
            random_seed=random_seed, loaded=loaded, models=["tiny"], retries=0,
        )  # fmt: skip
    assert len(generation.variants) == variants
    for variant in generation.variants:
        validate(variant.text)
        files = variant_files(generation, variant, "x")
        check_constraints(files[".mid"], constraints, variant.continuation_tick / 24)


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
    from music_lm.generate import Header

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


def test_attention_of_the_new_tokens_is_captured(tiny_model: Path) -> None:
    model = [load_model(tiny_model)]
    generation = generate(seed_from_text(MELODY), constraints=Constraints(bars=1),
                          attention=True, random_seed=4, loaded=model, models=["tiny"])  # fmt: skip
    variant = generation.variants[0]
    layers, heads = model[0].model.config.n_layer, model[0].model.config.n_head
    assert variant.attention.shape == (layers, heads, variant.new_tokens, len(variant.ids))
    # each new token's query attends over what came before it, summing to one in the window
    sums = variant.attention.astype("float32").sum(-1)
    assert abs(float(sums.mean()) - 1.0) < 1e-2


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
    from music_lm.generate import grammar_logits_processor
    from music_lm.grammar import END

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
