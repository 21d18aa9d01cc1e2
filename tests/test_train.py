"""Training: presets, the loop, checkpoints, resume, fine-tuning (text GPT-2, LoRA), metrics.

Everything runs on the CPU with a tiny GPT-2 on the ten-tune corpus of conftest, in
seconds. Losses are compared exactly where the computation is deterministic (resume).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from music_lm.corpus.dataset import Corpus
from music_lm.corpus.sources import CorpusError
from music_lm.model.folder import (
    DEFAULT_MODEL_DIR,
    PRESETS,
    ModelError,
    count_parameters,
    load_model,
    model_config,
    new_model,
)
from music_lm.tokens.vocab import VOCAB
from music_lm.training.build import add_lora, lr_factor, make_optimizer, plain_model
from music_lm.training.checkpoints import checkpoints
from music_lm.training.config import TrainConfig, TrainError
from music_lm.training.loop import train
from music_lm.training.metrics import METRICS_FILE, plot_losses
from music_lm.training.scoring import evaluate

TINY = {"preset": "tiny", "context": 64, "batch_size": 4, "log_every": 1, "eval_windows": 0,
        "progress": False, "transpose": 2}  # fmt: skip


def quiet(_message: str) -> None:
    pass


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]


def config(corpus: Corpus, run: Path, **overrides) -> TrainConfig:
    return TrainConfig(data=(str(corpus.folder),), output=str(run), **(TINY | overrides))


# ---- the model ----


def test_presets_have_the_sizes_the_docs_give() -> None:
    sizes = {name: count_parameters(new_model(model_config(name))) for name in PRESETS}
    assert sizes["tiny"] < 0.5e6
    assert 5.5e6 < sizes["small"] < 6.5e6
    assert 24e6 < sizes["base"] < 28e6
    small = model_config("small")
    assert small.vocab_size == len(VOCAB)
    assert small.n_positions >= 1024
    assert small._attn_implementation == "sdpa"
    assert small.eos_token_id == VOCAB.ids["end"]


def test_bad_sizes_are_refused_with_the_value() -> None:
    with pytest.raises(ModelError, match="huge"):
        model_config("huge")
    with pytest.raises(ModelError, match="n_embd 100 is not a multiple of n_head 3"):
        model_config("tiny", n_embd=100, n_head=3)
    with pytest.raises(TrainError, match="--batch-size must be >= 1, got 0"):
        TrainConfig(data=("x",), output="y", batch_size=0)


def test_the_schedule_warms_up_then_decays_to_the_floor() -> None:
    factors = [lr_factor(s, 10, 100, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


# ---- the loop ----


@pytest.fixture(scope="module")
def run(tiny_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: 24 steps, evaluated every 6, a checkpoint every 8."""
    folder = tmp_path_factory.mktemp("runs") / "tiny"
    train(config(tiny_corpus, folder, max_steps=24, eval_every=6, save_every=8, lr=3e-3),
          log=quiet)  # fmt: skip
    return folder


def test_loss_falls_on_a_tiny_corpus(run: Path) -> None:
    evaluated = [r for r in rows(run) if "val_loss" in r]
    assert [r["step"] for r in evaluated] == [6, 12, 18, 24]
    assert evaluated[0]["val_loss"] < math.log(len(VOCAB)) + 0.5  # starts near uniform
    assert evaluated[-1]["val_loss"] < evaluated[0]["val_loss"] - 1.0
    train_losses = [r["train_loss"] for r in rows(run)]
    assert np.mean(train_losses[-5:]) < np.mean(train_losses[:5]) - 1.0


def test_metrics_have_every_figure_the_docs_list(run: Path) -> None:
    logged = rows(run)
    assert [r["step"] for r in logged] == list(range(1, 25))
    last = logged[-1]
    for key in (
        "train_loss",
        "lr",
        "grad_norm",
        "tokens_seen",
        "tokens_per_s",
        "val_loss",
        "val_accuracy",
        "val_perplexity",
        "val_bits_per_note",
        "val_loss_pitch",
        "val_loss_timing",
        "val_loss_duration",
        "val_loss_velocity",
        "val_loss_header",
    ):
        assert key in last, key  # fmt: skip
    assert last["val_perplexity"] == pytest.approx(math.exp(last["val_loss"]))
    assert 0 <= last["val_accuracy"] <= 1
    assert last["tokens_seen"] == 24 * 4 * 64
    assert list((run / "tb").glob("events.out.tfevents.*"))


def test_loss_png_draws_every_logged_loss(run: Path, tmp_path: Path, monkeypatch) -> None:
    """loss.png is the drawing of metrics.jsonl: the training loss at every step, the
    validation loss and bits per note at every evaluation. The curves are read off the
    figure as it is saved; the run's PNG must then be that figure, pixel for pixel."""
    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    drawn: list[Figure] = []
    save = Figure.savefig

    def keep(fig, *args, **kwargs):
        drawn.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    logged = rows(run)
    (tmp_path / run.name).mkdir()  # the run's name is the figure's title
    again = plot_losses(logged, tmp_path / run.name / "loss.png")
    (fig,) = drawn
    curves = {line.get_label(): line.get_xydata().tolist()
              for ax in fig.axes for line in ax.get_lines()}  # fmt: skip
    evaluated = [r for r in logged if "val_loss" in r]
    assert curves == {
        "train loss": [[r["step"], r["train_loss"]] for r in logged],
        "validation loss": [[r["step"], r["val_loss"]] for r in evaluated],
        "validation bits per note": [[r["step"], r["val_bits_per_note"]] for r in evaluated],
    }
    assert np.array_equal(mpimg.imread(run / "loss.png"), mpimg.imread(again))


def test_every_checkpoint_is_kept_whole_and_the_best_is_on_top(run: Path) -> None:
    assert [step for step, _ in checkpoints(run)] == [8, 16, 24]
    assert not list(run.glob(".*"))  # no staging folder left behind
    for _, folder in checkpoints(run):
        assert (folder / "model.safetensors").is_file()
        assert (folder / "training_state.pt").is_file()
        assert json.loads((folder / "music_lm.json").read_text())["vocab_sha256"] == VOCAB.sha256
    evaluated = [r for r in rows(run) if "val_loss" in r]
    best = min(evaluated, key=lambda r: r["val_loss"])
    meta = json.loads((run / "music_lm.json").read_text())
    assert meta["training"]["step"] == best["step"]
    assert meta["training"]["val_loss"] == pytest.approx(best["val_loss"])


def test_a_run_folder_loads_with_the_auto_classes_alone(run: Path, tiny_corpus: Corpus) -> None:
    for folder in (run, run / "checkpoint-16"):
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        text = tiny_corpus.text(0)
        ids = tokenizer(text)["input_ids"]
        assert ids == tiny_corpus.ids(0).tolist()
        logits = model(input_ids=torch.tensor([ids[:32]])).logits
        assert logits.shape == (1, 32, len(VOCAB))
    ours = load_model(run)
    assert ours.token_map.identity
    assert ours.context == 64


def test_the_saved_weights_are_the_evaluated_ones(run: Path, tiny_corpus: Corpus) -> None:
    """Evaluating the top-level model again gives the validation loss recorded for it."""
    loaded = load_model(run)
    figures = evaluate(loaded.model, [tiny_corpus], "valid", context=64, batch_size=4)
    meta = json.loads((run / "music_lm.json").read_text())
    # The same windows and batches, but the training loop sums its figures through the
    # accelerator's reduction: float32 sums in another order, 2.4e-5 apart (relative) on the
    # corpus of [bars]. Another checkpoint of this run is more than 1e-2 away (the loss falls
    # by more than 1 nat over its 24 steps).
    assert figures["loss"] == pytest.approx(meta["training"]["val_loss"], rel=1e-4)


def test_evaluation_of_a_uniform_model_is_log_v_per_token(tiny_corpus: Corpus) -> None:
    model = new_model(model_config("tiny", 64))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every logit 0: the uniform distribution
    figures = evaluate(model, [tiny_corpus], "test", context=64, batch_size=3)
    tokens = sum(tiny_corpus.pieces[i].tokens for i in tiny_corpus.split("test")) - 1
    notes = sum(tiny_corpus.pieces[i].notes for i in tiny_corpus.split("test"))
    assert figures["tokens"] == tokens
    assert figures["notes"] == notes
    assert figures["loss"] == pytest.approx(math.log(len(VOCAB)))
    assert figures["bits_per_note"] == pytest.approx(tokens * math.log2(len(VOCAB)) / notes)
    for group in ("pitch", "timing", "duration", "velocity", "header"):
        assert figures[f"loss_{group}"] == pytest.approx(math.log(len(VOCAB)))


# ---- resume ----


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(
    tiny_corpus: Corpus, tmp_path: Path
) -> None:
    settings = {"max_steps": 12, "eval_every": 6, "save_every": 3, "dropout": 0.1}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    train(config(tiny_corpus, whole, **settings), log=quiet)
    train(config(tiny_corpus, broken, **settings), log=quiet, stop_after=7)  # interrupted
    assert [s for s, _ in checkpoints(broken)] == [3, 6]
    result = train(config(tiny_corpus, broken, **settings), log=quiet)
    assert result.resumed_from == 6
    assert rows(broken) == [
        {**r, "tokens_per_s": b["tokens_per_s"], "elapsed_s": b["elapsed_s"]}
        for r, b in zip(rows(whole), rows(broken), strict=True)
    ]
    a = load_file(str(whole / "checkpoint-12" / "model.safetensors"))
    b = load_file(str(broken / "checkpoint-12" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kill_9_during_training_then_resume(tiny_corpus: Corpus, tmp_path: Path) -> None:
    """A real `kill -9` of `music-lm train`: the folder holds only whole checkpoints and the
    same command finishes the run with the losses of an uninterrupted one."""
    command = [sys.executable, "-m", "music_lm.cli", "train", "-d", str(tiny_corpus.folder),
               "--preset", "tiny", "--context", "64", "--batch-size", "4", "--max-steps", "400",
               "--eval-every", "400", "--save-every", "2", "--log-every", "1", "--transpose",
               "2", "--no-progress"]  # fmt: skip
    run = tmp_path / "killed"
    process = subprocess.Popen([*command, "-o", str(run)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(checkpoints(run)) < 3:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = checkpoints(run)
    assert len(killed_at) >= 3, "the run saved checkpoints before it was killed"
    assert killed_at[-1][0] < 400, "killed before the end"
    # Whatever the moment of the kill: every complete checkpoint loads.
    for _, folder in killed_at:
        AutoModelForCausalLM.from_pretrained(folder)
    resumed = train(config(tiny_corpus, run, max_steps=400, eval_every=400, save_every=2),
                    given={"output"}, log=quiet, stop_after=4)  # fmt: skip
    start = resumed.resumed_from
    assert start == killed_at[-1][0]
    reference = tmp_path / "reference"
    train(config(tiny_corpus, reference, max_steps=400, eval_every=400, save_every=2),
          log=quiet, stop_after=start + 4)  # fmt: skip
    after = [r["train_loss"] for r in rows(run) if r["step"] > start]
    expected = [r["train_loss"] for r in rows(reference) if r["step"] > start]
    assert after == expected
    assert [r["step"] for r in rows(run)] == list(range(1, start + 5))


def test_a_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(
    tiny_corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while checkpoint 6 is written: the run stops with an error naming the
    folder and the cause, checkpoint 4 stays whole, nothing half-written is left, and the same
    command resumes from it once there is room again."""
    import errno

    import music_lm.training.checkpoints as training

    real_save = torch.save

    def full_disk(state, path, *args, **kwargs):
        if state.get("step") == 6:
            Path(path).write_bytes(b"\0" * 100)  # a part of the file made it to the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(state, path, *args, **kwargs)

    run = tmp_path / "full"
    settings = config(tiny_corpus, run, max_steps=8, save_every=2, eval_every=100)
    monkeypatch.setattr(training.torch, "save", full_disk)
    with pytest.raises(TrainError) as caught:
        train(settings, log=quiet)
    message = str(caught.value)
    assert message.startswith(f"{run}: cannot save step 6 (No space left on device)")
    assert "(the last: checkpoint-4)" in message
    assert "\n" not in message
    assert [step for step, _ in checkpoints(run)] == [2, 4]
    assert not list(run.glob(".*tmp"))  # no half-written folder left behind
    AutoModelForCausalLM.from_pretrained(run / "checkpoint-4")
    monkeypatch.undo()  # room again
    resumed = train(settings, given={"output"}, log=quiet)
    assert resumed.resumed_from == 4
    assert [step for step, _ in checkpoints(run)] == [2, 4, 6, 8]


def test_resuming_refuses_to_change_what_was_trained(run: Path, tiny_corpus: Corpus) -> None:
    changed = config(tiny_corpus, run, preset="small")
    with pytest.raises(TrainError, match="started with preset='tiny'"):
        train(changed, given={"preset", "output"}, log=quiet)


def test_a_finished_run_is_not_trained_again(run: Path, tiny_corpus: Corpus) -> None:
    before = (run / METRICS_FILE).read_text()
    result = train(config(tiny_corpus, run, max_steps=24), given={"output"}, log=quiet)
    assert result.step == 24
    assert (run / METRICS_FILE).read_text() == before


def test_a_folder_that_is_not_a_run_is_never_used(tmp_path: Path, tiny_corpus: Corpus) -> None:
    mine = tmp_path / "my-songs"
    mine.mkdir()
    (mine / "song.txt").write_text("mine")
    with pytest.raises(TrainError, match="is not a music_lm run folder"):
        train(config(tiny_corpus, mine, max_steps=2), log=quiet)
    assert [p.name for p in mine.iterdir()] == ["song.txt"]


# ---- fine-tuning ----


def test_finetune_on_a_folder_of_midi_builds_its_corpus(
    run: Path, tune_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ft"
    result = train(TrainConfig(data=(str(tune_folder),), output=str(out), base=str(run),
                               max_steps=4, eval_every=2, save_every=4, lr=1e-4, **_small()),
                   log=quiet)  # fmt: skip
    assert result.step == 4
    assert Corpus(out / "corpus-0").split("valid")  # built on the way, one song held out
    meta = json.loads((out / "music_lm.json").read_text())
    assert meta["base"] == str(run)
    AutoModelForCausalLM.from_pretrained(out)


def _small() -> dict:
    return {k: v for k, v in TINY.items() if k != "preset"}


@pytest.fixture(scope="module")
def text_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 for text with its own byte-level BPE tokenizer: what OpenAI's GPT-2
    looks like on disk, made here (no download)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("gpt2-text")
    corpus_text = ["the end of the piece is near", "a bar of music", "piece by piece"] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus_text, vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>"])  # fmt: skip
    bpe.save(str(folder / "tokenizer.json"))
    tokenizer = GPT2TokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                  eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>")  # fmt: skip
    tokenizer.save_pretrained(folder)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2,
                        n_head=2)  # fmt: skip
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_finetune_a_text_gpt2_adds_the_music_tokens(
    text_gpt2: Path, tiny_corpus: Corpus, tmp_path: Path
) -> None:
    text_vocab = len(AutoTokenizer.from_pretrained(text_gpt2))
    out = tmp_path / "from-text"
    train(TrainConfig(data=(str(tiny_corpus.folder),), output=str(out), base=str(text_gpt2),
                      max_steps=6, eval_every=3, save_every=3, lr=1e-3, **_small()),
          log=quiet)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size >= len(tokenizer) > text_vocab
    loaded = load_model(out)
    assert not loaded.token_map.identity
    ids = tiny_corpus.ids(0)
    expected = loaded.token_map.to_model(torch.from_numpy(ids.astype(np.int64))).tolist()
    assert tokenizer(tiny_corpus.text(0))["input_ids"] == expected  # one id per music token
    assert tokenizer("the end")["input_ids"] != []  # still a text tokenizer
    logits = loaded.model(input_ids=torch.tensor([expected[:16]])).logits
    assert loaded.token_map.music_logits(logits).shape == (1, 16, len(VOCAB))
    evaluated = [r["val_loss"] for r in rows(out) if "val_loss" in r]
    assert evaluated[-1] < evaluated[0]  # it learns the music tokens
    figures = evaluate(loaded.model, [tiny_corpus], "valid", 64, token_map=loaded.token_map)
    assert figures["loss"] == pytest.approx(min(evaluated), rel=1e-4)
    assert model.config.eos_token_id == loaded.token_map.model_ids[VOCAB.ids["end"]]

    again = tmp_path / "again"  # fine-tuning that run keeps its tokenizer and token map
    train(TrainConfig(data=(str(tiny_corpus.folder),), output=str(again), base=str(out),
                      max_steps=2, eval_every=2, save_every=2, **_small()), log=quiet)  # fmt: skip
    assert load_model(again).token_map == loaded.token_map
    assert AutoTokenizer.from_pretrained(again)(tiny_corpus.text(0))["input_ids"] == expected


def test_lora_on_a_text_gpt2_is_refused(text_gpt2: Path, tiny_corpus: Corpus, tmp_path: Path):
    with pytest.raises(TrainError, match="new music-token embeddings must be trained in full"):
        train(TrainConfig(data=(str(tiny_corpus.folder),), output=str(tmp_path / "x"),
                          base=str(text_gpt2), lora_rank=4, max_steps=2, **_small()),
              log=quiet)  # fmt: skip


def test_lora_merge_gives_the_adapters_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = new_model(model_config("tiny", 64))
    lora = add_lora(base, rank=4, alpha=16)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a trained adapter: B is zero only at the start
    ids = torch.randint(0, len(VOCAB), (2, 40))
    adapter_logits = lora(input_ids=ids).logits
    merged = plain_model(lora)
    assert not any("lora" in k for k in merged.state_dict())
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(reloaded(input_ids=ids).logits, adapter_logits,
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    assert any("lora" in k for k in lora.state_dict()), "the training model keeps its adapters"


def test_finetune_with_lora_trains_only_adapters_and_saves_merged(
    run: Path, tiny_corpus: Corpus, tmp_path: Path
) -> None:
    out, whole = tmp_path / "lora", tmp_path / "lora-whole"
    settings = {"max_steps": 6, "eval_every": 3, "save_every": 3, "lr": 1e-2, "lora_rank": 4}
    data = (str(tiny_corpus.folder),)
    train(TrainConfig(data=data, output=str(out), base=str(run), **settings, **_small()),
          log=quiet, stop_after=4)  # fmt: skip
    result = train(TrainConfig(data=data, output=str(out), base=str(run), **settings,
                               **_small()), log=quiet)  # fmt: skip
    assert result.resumed_from == 3
    train(TrainConfig(data=data, output=str(whole), base=str(run), **settings, **_small()),
          log=quiet)  # fmt: skip
    losses = [(r["step"], r["train_loss"]) for r in rows(out)]
    assert losses == [(r["step"], r["train_loss"]) for r in rows(whole)]
    weights = load_file(str(out / "checkpoint-6" / "model.safetensors"))
    assert not any("lora" in k for k in weights)
    base = load_file(str(run / "model.safetensors"))
    assert torch.equal(weights["transformer.wte.weight"], base["transformer.wte.weight"])
    changed = "transformer.h.0.attn.c_attn.weight"
    assert not torch.equal(weights[changed], base[changed])  # merged adapter moved it


# ---- model folders ----


def test_a_model_of_another_vocabulary_is_refused(run: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("checkpoint-*", "tb"))
    meta = json.loads((other / "music_lm.json").read_text())
    meta["vocab_sha256"] = "0" * 64
    (other / "music_lm.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="trained on another vocabulary"):
        load_model(other)
    with pytest.raises(ModelError, match="no such model folder"):
        load_model(tmp_path / "missing")


def test_the_default_model_ships_with_the_package() -> None:
    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir())
    assert size <= 50 * 1024 * 1024
    weights = load_file(str(DEFAULT_MODEL_DIR / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    loaded = load_model("default")
    assert loaded.token_map.identity
    assert loaded.context >= 1024
    assert next(loaded.model.parameters()).dtype == torch.float32  # computed in fp32 on CPU


def test_the_optimizer_is_fused_adamw_without_decay_on_biases_and_norms() -> None:
    """Fused on a CPU too: the foreach step was the slow part of a CPU training step."""
    model = new_model(model_config("tiny", context=64))
    optimizer = make_optimizer(model, TrainConfig(data=("x",), output="y"), torch.device("cpu"))
    assert optimizer.defaults["fused"] is True
    decay, no_decay = optimizer.param_groups
    assert {p.dim() for p in decay["params"]} == {2}
    assert {p.dim() for p in no_decay["params"]} == {1}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


def test_finetune_dropout_reaches_every_dropout_module_but_attentions(tiny_model: Path) -> None:
    from music_lm.training.build import build_model

    model, *_ = build_model(TrainConfig(data=("x",), output="y", base=str(tiny_model),
                                        dropout=0.25), quiet)  # fmt: skip
    rates = {name.rsplit(".", 1)[-1]: m.p for name, m in model.named_modules()
             if isinstance(m, torch.nn.Dropout)}  # fmt: skip
    assert rates == {"drop": 0.25, "resid_dropout": 0.25, "dropout": 0.25, "attn_dropout": 0.0}
    assert (model.config.resid_pdrop, model.config.embd_pdrop) == (0.25, 0.25)
    assert model.config.attn_pdrop == 0.0


@pytest.mark.parametrize("base", [False, True], ids=["new model", "fine-tuned base"])
def test_training_with_dropout_keeps_attention_on_the_fused_kernel(
    base: bool, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's CPU attention runs its fused kernel only without dropout on the weights: with
    any, it falls back to the math path and fine-tuning ran 5x slower."""
    from music_lm.training.build import build_model

    settings = TrainConfig(data=("x",), output="y", base=str(tiny_model) if base else None,
                           preset="tiny", context=64, dropout=0.1)  # fmt: skip
    model, *_ = build_model(settings, quiet)
    rates: list[float] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, dropout_p: float = 0.0, **kwargs):
        rates.append(dropout_p)
        return sdpa(*args, dropout_p=dropout_p, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    ids = torch.randint(0, len(VOCAB), (2, 32))
    model.train()(input_ids=ids, labels=ids).loss.backward()
    assert rates == [0.0] * model.config.n_layer
    assert any(m.p == 0.1 for m in model.modules() if isinstance(m, torch.nn.Dropout))


def test_evaluated_checkpoints_carry_their_validation_figures(
    tiny_corpus: Corpus, tmp_path: Path
) -> None:
    out = tmp_path / "figures"
    train(config(tiny_corpus, out, max_steps=8, eval_every=4, save_every=2), log=quiet)
    for step, folder in checkpoints(out):
        training = json.loads((folder / "music_lm.json").read_text())["training"]
        assert training["step"] == step
        assert ("val_loss" in training) == (step % 4 == 0), step


def test_bad_bases_and_settings_are_one_line_errors(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from music_lm.model.folder import resolve_model_path

    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model_path(f"{run.parent}/typo")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="runs/typo: no such model folder"):
        resolve_model_path("runs/typo")
    with pytest.raises(TrainError, match=r"--weight shares must be >= 0 and not all 0"):
        TrainConfig(data=("x",), output="y", weights={"bach": -1.0})
    with pytest.raises(TrainError, match="--eval-windows must be >= 0, got -1"):
        TrainConfig(data=("x",), output="y", eval_windows=-1)


def test_a_failed_start_leaves_a_folder_that_runs_next_time(
    tiny_corpus: Corpus, tmp_path: Path
) -> None:
    out = tmp_path / "restart"
    with pytest.raises(CorpusError, match="no such corpus or MIDI folder"):
        train(TrainConfig(data=(str(tmp_path / "nope"),), output=str(out), **TINY), log=quiet)
    result = train(config(tiny_corpus, out, max_steps=2, eval_every=2), log=quiet)
    assert result.step == 2


def test_the_cli_trains_finetunes_and_evaluates(
    tiny_corpus: Corpus, tune_folder: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from music_lm.cli import app

    runner = CliRunner()
    base = tmp_path / "base"
    common = ["--context", "64", "--batch-size", "4", "--no-progress"]
    result = runner.invoke(app, ["train", "-d", str(tiny_corpus.folder), "-o", str(base),
                                 "--preset", "tiny", "--max-steps", "4", "--eval-every", "2",
                                 *common])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "step 4, best validation loss" in result.output
    tuned = tmp_path / "tuned"
    finetune = ["finetune", "-b", str(base), "-d", str(tune_folder), "-o", str(tuned)]
    result = runner.invoke(app, [*finetune, "--epochs", "2", "--eval-every", "1", *common])
    assert result.exit_code == 0, result.output
    settings = json.loads((tuned / "train_config.json").read_text())
    assert (settings["epochs"], settings["max_steps"]) == (2, None)  # --epochs wins
    assert (settings["dropout"], settings["lr"]) == (0.1, 2e-4)  # fine-tuning defaults
    result = runner.invoke(app, ["evaluate", "-m", str(tuned), "-d", str(tiny_corpus.folder),
                                 "--json", str(tmp_path / "eval.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("gpt2", "unigram", "markov-3"):
        assert name in result.output
    figures = json.loads((tmp_path / "eval.json").read_text())
    assert figures["split"] == "test"
    assert figures["results"]["gpt2"]["tokens"] == figures["results"]["unigram"]["tokens"]


def test_the_command_line_tells_train_which_options_were_given(monkeypatch) -> None:
    """A resume may change only what the user typed: the CLI must report exactly that
    (it once compared with another library's enum and reported nothing)."""
    from typer.testing import CliRunner

    import music_lm.training.loop as train_module
    from music_lm.cli import app

    seen = {}

    def fake_train(config, given=None, log=None):
        seen["given"], seen["max_steps"] = set(given), config.max_steps
        raise SystemExit(0)

    monkeypatch.setattr(train_module, "train", fake_train)
    CliRunner().invoke(app, ["train", "-o", "runs/x", "--max-steps", "2300", "--lr", "1e-3"])
    assert seen["given"] == {"output", "base", "max_steps", "lr"}
    assert seen["max_steps"] == 2300
