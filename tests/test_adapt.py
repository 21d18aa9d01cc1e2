"""Adaptation to the seed (`--adapt STEPS`): a throw-away copy of the model is fine-tuned on
the seed before sampling; the model passed in and its folder on disk never change.

A tiny random GPT-2 (context 64) stands in for the shipped model: a few steps at a high
learning rate are enough to see the loss on the seed fall.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from music_lm.cli import app
from music_lm.generation.constraints import Constraints
from music_lm.generation.runner import generate
from music_lm.generation.seeds import seed_from_text
from music_lm.generation.settings import GenerationError, GenerationStoppedError
from music_lm.midi.instruments import pitch_range
from music_lm.model.folder import load_model
from music_lm.tokens.rules import BAR
from music_lm.training.adapt import adapt_model, held_back_bits, seed_transpose_range

MELODY = """piece style:none tempo:96 ts:4/4 key:G:major inst:flute
bar @0 t1 d:1 v:80 D4 @1 d:1+1/2 G4 @2+1/2 d:1/2 A4 @3 d:1 B4
bar @0 t1 d:1 v:80 G4 @1 d:1/3 C5 @1+1/3 B4 @1+2/3 A4 @2 d:1 B4 @3 d:2 A4
end"""


@pytest.fixture(scope="module")
def loaded(tiny_model: Path):
    return load_model(tiny_model)


@pytest.fixture(scope="module")
def seed() -> list[int]:
    return seed_from_text(MELODY)


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def small_generation(loaded, seed, **options):
    return generate(seed, constraints=Constraints(bars=1), loaded=[loaded], models=["tiny"],
                    random_seed=3, retries=0, **options)  # fmt: skip


@pytest.mark.parametrize("method", ["full", "lora"])
def test_adaptation_lowers_the_loss_on_the_seed(loaded, seed, method) -> None:
    first_bar = seed.index(BAR)
    before = held_back_bits(loaded, seed, first_bar)
    adapted, record = adapt_model(loaded, seed, 8, method=method, learning_rate=1e-2)
    after = held_back_bits(adapted, seed, first_bar)
    assert after < before * 0.95  # at least 5 % fewer bits per note
    assert record.last_loss < record.first_loss
    assert (record.steps, record.method) == (8, method)
    assert not any("lora" in name for name in adapted.model.state_dict())  # merged: plain


def test_held_back_bars_are_scored_before_and_after(loaded, seed) -> None:
    _, record = adapt_model(loaded, seed, 4, learning_rate=1e-2, held_back_bars=1)
    assert record.held_back_bars == 1
    assert record.held_back_bits_before > 0
    assert record.held_back_bits_after > 0
    assert record.to_json()["held_back_bits_after"] == round(record.held_back_bits_after, 4)


def test_the_loaded_model_and_its_folder_are_unchanged(loaded, seed, tiny_model: Path) -> None:
    weights, files = weights_of(loaded.model), folder_digest(tiny_model)
    trainable = [p.requires_grad for p in loaded.model.parameters()]
    threads = torch.get_num_threads()
    made = small_generation(loaded, seed, adapt=3)
    assert made.settings["adaptation"][0]["steps"] == 3
    after = loaded.model.state_dict()
    assert all(torch.equal(weights[name], after[name]) for name in weights)
    assert [p.requires_grad for p in loaded.model.parameters()] == trainable
    assert folder_digest(tiny_model) == files
    assert torch.get_num_threads() == threads


def test_the_same_random_seed_gives_the_same_adapted_takes(loaded, seed) -> None:
    first = small_generation(loaded, seed, adapt=3)
    again = small_generation(loaded, seed, adapt=3)
    assert first.variants[0].ids == again.variants[0].ids
    assert (
        first.settings["adaptation"][0]["last_loss"] == again.settings["adaptation"][0]["last_loss"]
    )


def test_progress_reports_the_adaptation_steps_then_the_sampling(loaded, seed) -> None:
    heard = []
    small_generation(loaded, seed, adapt=3, progress=heard.append)
    adapting = [p for p in heard if p.phase == "adapting"]
    assert [(p.adapt_step, p.adapt_steps) for p in adapting] == [(1, 3), (2, 3), (3, 3)]
    assert adapting[-1].fraction == 1.0
    assert heard[: len(adapting)] == adapting  # adaptation first
    assert heard[-1].phase == "sampling"
    assert heard[-1].new_tokens > 0


def test_stop_is_honoured_during_adaptation(loaded, seed) -> None:
    heard = []
    with pytest.raises(GenerationStoppedError, match="after 1 of 5 adaptation steps"):
        small_generation(loaded, seed, adapt=5, progress=heard.append, stop=lambda: True)
    assert [p.phase for p in heard] == ["adapting"]


@pytest.mark.parametrize("steps", [-1, 10**6, 2.5])
def test_bad_steps_are_one_line_naming_the_option(loaded, seed, steps) -> None:
    with pytest.raises(GenerationError, match=r"^--adapt ") as error:
        small_generation(loaded, seed, adapt=steps)
    assert "\n" not in str(error.value)


def test_a_seed_without_bars_cannot_be_adapted_to(loaded) -> None:
    with pytest.raises(GenerationError, match=r"--adapt .*has none"):
        small_generation(loaded, None, adapt=2)


def test_transpositions_keep_the_instruments_in_range(seed) -> None:
    low, high = pitch_range(73)  # the flute's
    assert seed_transpose_range(seed) == (low - 62, high - 72)  # it plays D4..C5


def test_the_cli_adapts_end_to_end(tiny_model: Path, tmp_path: Path) -> None:
    seed = tmp_path / "melody.txt"
    seed.write_text(MELODY)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", str(seed), "--bars", "1", "--adapt", "2",
                                      "--model", str(tiny_model), "-o", str(out),
                                      "--random-seed", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "adapted to the seed: 2 steps (full)" in result.output
    record = json.loads((out / "melody-1.json").read_text())
    assert record["adaptation"][0]["steps"] == 2
    assert record["adaptation"][0]["method"] == "full"
    assert record["adaptation"][0]["seconds"] > 0


def test_the_cli_refuses_bad_steps_in_one_line(tiny_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "--adapt", "-2", "--model", str(tiny_model),
                                      "-o", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code != 0
    assert "--adapt must be 0..500 steps, got -2" in result.output
    assert not (tmp_path / "out").exists()
