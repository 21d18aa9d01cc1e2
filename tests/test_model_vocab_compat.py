"""Models trained before the vocabulary grew: families are only ever added at the end, so a
model folder of the first n tokens (music_lm.json: vocab_size n and the hash of the first n)
still loads, scores and generates, the newer tokens with probability 0, and fine-tuning it
gives a model of the whole vocabulary.

The older folders here are tiny GPT-2s of OLD tokens, written as the music_lm of that
vocabulary wrote them: weights of OLD rows, a tokenizer of OLD words, music_lm.json.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tokenizers import AddedToken
from torch.nn.functional import cross_entropy

from music_lm.corpus.dataset import Corpus
from music_lm.generation.constraints import Constraints
from music_lm.generation.runner import generate
from music_lm.generation.sampling import draw_tokens
from music_lm.generation.seeds import seed_from_text
from music_lm.model.folder import (
    DEFAULT_MODEL_DIR,
    ModelError,
    TokenMap,
    load_model,
    model_config,
    model_meta,
    new_model,
    read_meta,
    save_model_folder,
    token_map_of,
)
from music_lm.tokens.tokenizer import build_tokenizer, load_tokenizer
from music_lm.tokens.vocab import VOCAB
from music_lm.training.build import build_model
from music_lm.training.config import TrainConfig, TrainError
from music_lm.training.loop import train
from music_lm.training.scoring import score_windows, split_windows

OLD = 1530  # the vocabulary before the fim family (hole, fill) was added
NEWER = ("hole", "fill")
TINY = {"context": 64, "batch_size": 4, "log_every": 1, "eval_windows": 0, "progress": False,
        "transpose": 2}  # fmt: skip
MELODY = """piece style:none tempo:96 ts:4/4 key:G:major inst:flute
bar @0 t1 d:1 v:80 D4 @1 d:1+1/2 G4 @2+1/2 d:1/2 A4 @3 d:1 B4
end"""


def sha256_of(words: list[str]) -> str:
    return hashlib.sha256("\n".join(words).encode()).hexdigest()


def quiet(_message: str) -> None:
    pass


def older_meta(size: int = OLD) -> dict:
    """music_lm.json as the music_lm of the first `size` tokens wrote it."""
    return model_meta() | {"vocab_size": size, "vocab_sha256": VOCAB.sha256_of_first(size)}


@pytest.fixture(scope="module")
def older(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny GPT-2 of the older vocabulary, saved as its music_lm saved it."""
    config = model_config("tiny", context=64)
    config.vocab_size = OLD
    torch.manual_seed(0)
    model = new_model(config)
    folder = tmp_path_factory.mktemp("older-model")
    return save_model_folder(model, folder, older_meta(), build_tokenizer(64, size=OLD))


def copy_with_meta(folder: Path, target: Path, **changes) -> Path:
    shutil.copytree(folder, target)
    meta = json.loads((target / "music_lm.json").read_text()) | changes
    (target / "music_lm.json").write_text(json.dumps(meta))
    return target


# ---- loading ----


def test_the_shipped_model_is_of_the_older_vocabulary_and_loads() -> None:
    meta = json.loads((DEFAULT_MODEL_DIR / "music_lm.json").read_text())
    assert meta["vocab_sha256"] == VOCAB.sha256_of_first(meta["vocab_size"])
    loaded = load_model("default")
    assert loaded.music_vocab_size == meta["vocab_size"] <= len(VOCAB)


def test_a_folder_of_an_older_vocabulary_loads_knowing_its_tokens(older: Path) -> None:
    assert read_meta(older)["vocab_size"] == OLD
    assert len(load_tokenizer(older, OLD)) == OLD
    loaded = load_model(older)
    assert loaded.music_vocab_size == OLD
    assert loaded.knows("bar")
    assert loaded.knows(VOCAB.tokens[OLD - 1])
    assert not any(loaded.knows(word) for word in NEWER)
    assert loaded.model.config.vocab_size == OLD


def test_its_logits_get_a_column_per_token_the_newer_ones_minus_infinity(older: Path) -> None:
    loaded = load_model(older)
    ids = torch.tensor([[VOCAB.ids["piece"], VOCAB.ids["bar"]]])
    raw = loaded.model(input_ids=ids).logits
    logits = loaded.token_map.music_logits(raw)
    assert logits.shape == (1, 2, len(VOCAB))
    assert torch.equal(logits[..., :OLD], raw)
    assert torch.isneginf(logits[..., OLD:]).all()
    assert torch.softmax(logits, -1)[..., OLD:].sum() == 0


def test_a_model_of_the_whole_vocabulary_gets_its_logits_as_they_are() -> None:
    logits = torch.randn(2, 3, len(VOCAB))
    assert TokenMap().music_logits(logits) is logits  # no copy on the common path


def test_feeding_it_a_newer_token_is_refused_naming_the_token(older: Path) -> None:
    loaded = load_model(older)
    ids = torch.tensor([[VOCAB.ids["piece"], VOCAB.ids["hole"]]])
    with pytest.raises(ModelError, match=r"token 'hole' \(id 1530\) is not in this model's"):
        loaded.token_map.to_model(ids)
    known = torch.tensor([[VOCAB.ids["piece"], OLD - 1]])
    assert loaded.token_map.to_model(known) is known


@pytest.mark.parametrize(
    "changes",
    [{"vocab_sha256": "0" * 64},  # another vocabulary of 1,530 tokens
     {"vocab_size": OLD - 1},  # the hash of the first 1,530 is not that of the first 1,529
     {"vocab_size": len(VOCAB) + 1, "vocab_sha256": sha256_of([*VOCAB.tokens, "newer"])},
     {"vocab_size": str(OLD)}],
    ids=["wrong hash", "wrong size", "a newer vocabulary", "size not a number"],
)  # fmt: skip
def test_a_folder_of_any_other_vocabulary_is_refused_in_one_line(
    older: Path, tmp_path: Path, changes: dict
) -> None:
    other = copy_with_meta(older, tmp_path / "other", **changes)
    with pytest.raises(ModelError, match="trained on another vocabulary") as refused:
        load_model(other)
    assert "\n" not in str(refused.value)


def test_a_token_map_of_the_older_vocabulary_is_padded_the_same_way() -> None:
    """A text GPT-2 fine-tuned on the older vocabulary: its music_lm.json maps OLD tokens."""
    model_ids = tuple(range(300, 300 + OLD))
    token_map = token_map_of(older_meta() | {"token_ids": list(model_ids)})
    assert token_map.music_vocab_size == OLD
    logits = torch.randn(1, 4, 300 + OLD)
    music = token_map.music_logits(logits)
    assert music.shape == (1, 4, len(VOCAB))
    assert torch.equal(music[..., :OLD], logits[..., 300:])
    assert torch.isneginf(music[..., OLD:]).all()
    with pytest.raises(ModelError, match="'fill'"):
        token_map.to_model(torch.tensor([VOCAB.ids["fill"]]))
    with pytest.raises(ModelError, match=f"token map of {OLD} entries"):
        token_map_of(model_meta() | {"token_ids": list(model_ids)})  # meta says 1,532


# ---- generating and scoring ----


def test_generation_from_it_works_and_never_yields_the_newer_tokens(older: Path) -> None:
    generation = generate(seed_from_text(MELODY), constraints=Constraints(bars=2), variants=2,
                          random_seed=1, models=[older])  # fmt: skip
    for variant in generation.variants:
        assert variant.text.split()[-1] == "end"
        assert not {VOCAB.ids[word] for word in NEWER} & set(variant.ids)


def test_a_draw_reads_the_random_numbers_it_read_before_the_fim_words() -> None:
    """A draw reads one random number per row: with the fim words' columns at zero
    probability, a random seed draws what it drew over the older vocabulary alone."""
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(4, len(VOCAB), generator=generator) * 3, dim=-1)
    probs[:, OLD:] = 0.0  # generation never allows them
    probs /= probs.sum(-1, keepdim=True)

    def draws(table: torch.Tensor) -> list[list[int]]:
        return [draw_tokens(table, torch.Generator().manual_seed(seed)).tolist()
                for seed in range(10)]  # fmt: skip

    assert draws(probs) == draws(probs[:, :OLD].contiguous())


def test_its_scores_are_cross_entropy_over_its_own_logits(older: Path, tiny_corpus: Corpus) -> None:
    loaded = load_model(older)
    windows = split_windows([tiny_corpus], "valid", 64)
    figures = score_windows(loaded.model, windows, 4, loaded.token_map)
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for window in windows:
            ids = torch.from_numpy(window.astype(np.int64))[None]
            logits = loaded.model(input_ids=ids[:, :-1]).logits  # OLD columns
            nll += float(cross_entropy(logits[0], ids[0, 1:], reduction="sum"))
            tokens += len(window) - 1
    assert figures["loss"] == pytest.approx(nll / tokens, rel=1e-5)


# ---- fine-tuning ----


def test_finetuning_gives_the_base_the_newer_tokens_at_the_mean_embedding(older: Path) -> None:
    model, token_map, tokenizer, _ = build_model(
        TrainConfig(data=("x",), output="y", base=str(older), **TINY), quiet
    )
    base = load_file(str(older / "model.safetensors"))["transformer.wte.weight"]
    embeddings = model.transformer.wte.weight
    assert (token_map, tokenizer) == (TokenMap(), None)  # saved with the whole vocabulary
    assert model.config.vocab_size == embeddings.shape[0] == len(VOCAB)
    assert torch.equal(embeddings[:OLD], base)
    for word in NEWER:
        assert torch.equal(embeddings[VOCAB.ids[word]], base.mean(dim=0))
    assert model.lm_head.weight is embeddings  # still tied


def test_a_finetuned_older_model_is_of_the_whole_vocabulary_and_resumes(
    older: Path, tiny_corpus: Corpus, tmp_path: Path
) -> None:
    out = tmp_path / "ft"

    def settings() -> TrainConfig:
        return TrainConfig(data=(str(tiny_corpus.folder),), output=str(out), base=str(older),
                           max_steps=3, eval_every=1, save_every=1, lr=1e-3, **TINY)  # fmt: skip

    train(settings(), log=quiet, stop_after=2)
    assert train(settings(), log=quiet).resumed_from == 2
    meta = read_meta(out)
    assert (meta["vocab_size"], meta["vocab_sha256"]) == (len(VOCAB), VOCAB.sha256)
    assert len(load_tokenizer(out)) == len(VOCAB)
    loaded = load_model(out)
    assert loaded.music_vocab_size == len(VOCAB)
    assert loaded.knows("hole")
    assert loaded.token_map.identity


def test_a_lora_finetune_of_it_saves_the_base_embeddings_and_the_newer_rows_at_their_mean(
    older: Path, tiny_corpus: Corpus, tmp_path: Path
) -> None:
    """LoRA trains no embeddings: the saved model's rows are the base's, then the new ones.
    A resume builds the extended base again and puts the adapters back on it."""
    out = tmp_path / "lora"
    settings = TrainConfig(data=(str(tiny_corpus.folder),), output=str(out), base=str(older),
                           max_steps=2, eval_every=1, save_every=1, lora_rank=4,
                           **TINY)  # fmt: skip
    train(settings, log=quiet, stop_after=1)
    assert train(settings, log=quiet).resumed_from == 1
    base = load_file(str(older / "model.safetensors"))["transformer.wte.weight"]
    saved = load_file(str(out / "model.safetensors"))["transformer.wte.weight"]
    assert saved.shape == (len(VOCAB), base.shape[1])
    assert torch.equal(saved[:OLD], base)
    assert torch.equal(saved[OLD:], base.mean(dim=0).expand(len(VOCAB) - OLD, -1))
    assert load_model(out).music_vocab_size == len(VOCAB)


def test_a_lora_finetune_of_it_in_the_fill_in_the_middle_form_is_refused(
    older: Path, tiny_corpus: Corpus, tmp_path: Path
) -> None:
    """`hole` and `fill` would start alike and, their embeddings frozen, stay alike."""
    settings = TrainConfig(data=(str(tiny_corpus.folder),), output=str(tmp_path / "x"),
                           base=str(older), max_steps=1, lora_rank=4, fim_share=0.3,
                           **TINY)  # fmt: skip
    with pytest.raises(TrainError, match="LoRA trains no embeddings, so the two would stay"):
        train(settings, log=quiet)
    assert not (tmp_path / "x").exists()


def test_a_run_saved_with_the_older_vocabulary_is_refused_on_resume(
    older: Path, tiny_corpus: Corpus, tmp_path: Path
) -> None:
    """A run started before the vocabulary grew: its checkpoints' embeddings and optimizer
    state have the older rows, which the model of the whole vocabulary cannot take."""
    out = tmp_path / "run"
    settings = TrainConfig(data=(str(tiny_corpus.folder),), output=str(out), base=str(older),
                           max_steps=2, eval_every=1, save_every=1, **TINY)  # fmt: skip
    train(settings, log=quiet, stop_after=1)
    checkpoint = out / "checkpoint-1"
    meta = json.loads((checkpoint / "music_lm.json").read_text()) | older_meta()
    (checkpoint / "music_lm.json").write_text(json.dumps(meta))
    with pytest.raises(TrainError, match=f"saved with a vocabulary of {OLD} tokens.*cannot "):
        train(settings, log=quiet)


# ---- a text GPT-2 fine-tuned on the older vocabulary ----


@pytest.fixture(scope="module")
def older_text_finetune(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text GPT-2 given the older vocabulary's music tokens, saved with its token map."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("older-text-finetune")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a bar of music", "piece by piece"] * 20, vocab_size=280,
                            min_frequency=1, special_tokens=["<|endoftext|>"])  # fmt: skip
    bpe.save(str(folder / "tokenizer.json"))
    tokenizer = GPT2TokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                  eos_token="<|endoftext|>")  # fmt: skip
    tokenizer.add_tokens([AddedToken(w, lstrip=True, normalized=False)
                          for w in VOCAB.tokens[:OLD]])  # fmt: skip
    model_ids = tokenizer.convert_tokens_to_ids(list(VOCAB.tokens[:OLD]))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32,
                                       n_layer=1, n_head=2))  # fmt: skip
    meta = older_meta() | {"token_ids": model_ids}
    return save_model_folder(model, folder, meta, tokenizer)


def test_a_text_gpt2_finetuned_on_the_older_vocabulary_loads_and_extends(
    older_text_finetune: Path,
) -> None:
    loaded = load_model(older_text_finetune)
    assert loaded.music_vocab_size == OLD
    assert not loaded.knows("hole")
    old_ids = loaded.token_map.model_ids
    model, token_map, tokenizer, _ = build_model(
        TrainConfig(data=("x",), output="y", base=str(older_text_finetune), **TINY), quiet
    )
    assert token_map.music_vocab_size == len(VOCAB)
    assert token_map.model_ids[:OLD] == old_ids  # every known token keeps its row
    assert tokenizer.convert_tokens_to_ids(list(NEWER)) == list(token_map.model_ids[OLD:])
    embeddings = model.get_input_embeddings().weight
    mean = loaded.model.get_input_embeddings().weight[list(old_ids)].mean(dim=0)
    for row in token_map.model_ids[OLD:]:
        assert torch.equal(embeddings[row], mean)
