"""The model: a Hugging Face GPT-2 over the grammar's vocabulary, and model folders.

A model folder is self-describing and needs no code of ours to load:

    config.json, model.safetensors, generation_config.json   (save_pretrained)
    tokenizer.json, tokenizer_config.json                    (the token text's tokenizer)
    music_lm.json                                            (vocabulary hash, grid, token map)

    model = AutoModelForCausalLM.from_pretrained("runs/bach")
    tokenizer = AutoTokenizer.from_pretrained("runs/bach")

`music_lm.json` is what lets music_lm trust a folder: the vocabulary hash says the
token ids mean what the grammar says. Token families are only ever added at the end, so a
folder whose hash is that of the grammar's first `vocab_size` tokens is a model of an older
vocabulary this one extends: it loads, and the tokens it never saw get probability 0.

A model fine-tuned from a text GPT-2 keeps that model's tokenizer with the music tokens
added, so music token `i` has another id in the model; `token_ids` in music_lm.json maps
one to the other (absent: the identity).

Weights load from safetensors only and never with remote code.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from music_lm import __version__
from music_lm.errors import MusicLmError
from music_lm.tokens.tokenizer import DEFAULT_CONTEXT, build_tokenizer, load_tokenizer
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB

MODEL_FORMAT = "music_lm-model"
MODEL_VERSION = 1
META_FILE = "music_lm.json"
DEFAULT_MODEL_DIR = Path(__file__).parents[1] / "models" / "default"

# Sizes. Head width 64 everywhere (what fused attention kernels like best); `small` and
# `base` are ~6 M and ~25 M parameters at a context of 1,024.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64},
    "small": {"n_layer": 7, "n_head": 4, "n_embd": 256},
    "base": {"n_layer": 8, "n_head": 8, "n_embd": 512},
}


# Dropout on the attention weights is never used: with any, torch's CPU
# scaled_dot_product_attention leaves its fused kernel for the math path, which materialises
# every (T, T) attention matrix: fine-tuning the shipped model with dropout 0.1 there too ran
# at 0.51x the tokens/s of pretraining it, and at 0.93x without (bench/train.py --finetune).
# `dropout` is the residual and embedding dropout.
ATTENTION_DROPOUT = 0.0


class ModelError(MusicLmError, ValueError):
    """A model folder or name that cannot be used; the message names it and the problem."""


def model_config(
    preset: str = "small",
    context: int = DEFAULT_CONTEXT,
    dropout: float = 0.0,
    n_layer: int | None = None,
    n_head: int | None = None,
    n_embd: int | None = None,
) -> GPT2Config:
    """The GPT2Config of a preset, with any size overridden. Vocabulary from the grammar."""
    if preset not in PRESETS:
        raise ModelError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
    size = dict(PRESETS[preset])
    size.update({k: v for k, v in (("n_layer", n_layer), ("n_head", n_head),
                                   ("n_embd", n_embd)) if v is not None})  # fmt: skip
    if size["n_embd"] % size["n_head"]:
        raise ModelError(f"n_embd {size['n_embd']} is not a multiple of n_head {size['n_head']}")
    if context < 16:
        raise ModelError(f"context must be at least 16 tokens, got {context}")
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"dropout must be in [0, 1), got {dropout}")
    config = GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=context,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=ATTENTION_DROPOUT,
        bos_token_id=VOCAB.ids["piece"],
        eos_token_id=VOCAB.ids["end"],
        pad_token_id=VOCAB.ids["<pad>"],
        **size,
    )
    config._attn_implementation = "sdpa"
    return config


def new_model(config: GPT2Config) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 with SDPA attention."""
    return GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")


def count_parameters(model: torch.nn.Module, embeddings: bool = True) -> int:
    """Parameters of `model` (tied weights once); without position embeddings when
    `embeddings` is False, as in the usual FLOPs estimates."""
    seen = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    if not embeddings:
        wpe = getattr(getattr(model, "transformer", None), "wpe", None)
        if wpe is not None:
            total -= wpe.weight.numel()
    return total


# ---- the token map ----


@dataclass(frozen=True)
class TokenMap:
    """Where each music token lives in a model's vocabulary (`model_ids[i]` for token i).

    A model trained before the vocabulary grew knows only its first tokens (families are
    only ever added at the end): `music_vocab_size` of them. Its logits are padded to the
    grammar's vocabulary with -inf, so the tokens it never saw have probability 0."""

    model_ids: tuple[int, ...] | None = None  # None: the identity (a model of our own)
    # With the identity: how many of the grammar's tokens the model has, the first ones.
    identity_size: int = len(VOCAB)

    @property
    def identity(self) -> bool:
        return self.model_ids is None

    @property
    def music_vocab_size(self) -> int:
        """How many of the grammar's tokens the model knows: the first ones."""
        return self.identity_size if self.model_ids is None else len(self.model_ids)

    def to_model(self, ids: torch.Tensor) -> torch.Tensor:
        known = self.music_vocab_size
        if known < len(VOCAB) and ids.numel() and int(ids.max()) >= known:
            newer = int(ids[ids >= known][0])
            word = VOCAB.tokens[newer] if newer < len(VOCAB) else "?"
            raise ModelError(
                f"token {word!r} (id {newer}) is not in this model's vocabulary: it knows the "
                f"first {known} of {len(VOCAB)} tokens (trained before the others existed)"
            )
        if self.model_ids is None:
            return ids
        table = torch.tensor(self.model_ids, dtype=torch.long, device=ids.device)
        return table[ids]

    def music_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's logits restricted to the music tokens, in the grammar's order, one
        column per token of the grammar (-inf for those the model does not know)."""
        known = self.music_vocab_size
        if self.model_ids is None:
            if known == len(VOCAB):
                return logits  # a model of this vocabulary: no copy
            logits = logits[..., :known]
        else:
            index = torch.tensor(self.model_ids, dtype=torch.long, device=logits.device)
            logits = logits.index_select(-1, index)
        if known == len(VOCAB):
            return logits
        return torch.nn.functional.pad(logits, (0, len(VOCAB) - known), value=float("-inf"))


# ---- model folders ----


def model_meta(
    token_map: TokenMap = TokenMap(), training: dict | None = None, base: str | None = None
) -> dict:
    """The contents of music_lm.json: the vocabulary is the one `token_map` knows (all of
    the grammar's, unless the model was trained before it grew)."""

    known = token_map.music_vocab_size
    meta = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "music_lm": __version__,
        "codec": "codec-1",
        "grid_per_quarter": GRID_PER_QUARTER,
        "vocab_size": known,
        "vocab_sha256": VOCAB.sha256_of_first(known),
    }
    if base is not None:
        meta["base"] = base
    if not token_map.identity:
        meta["token_ids"] = list(token_map.model_ids)
    if training:
        meta["training"] = training
    return meta


def save_model_folder(
    model: GPT2LMHeadModel,
    directory: str | Path,
    meta: dict,
    tokenizer=None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a model folder (weights as safetensors, config, tokenizer, music_lm.json).

    Writes into `directory` as it is; callers that need atomicity write to a temporary
    folder and rename it (see `replace_folder`)."""

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()  # "Writing model shards" at every checkpoint is noise
    if dtype is not None and dtype != next(model.parameters()).dtype:
        model = copy.deepcopy(model).to(dtype)  # config.json then records the dtype too
    model.save_pretrained(path)
    for file in path.iterdir():  # transformers writes weights through a private temp file
        file.chmod(0o644)
    (tokenizer or build_tokenizer(model.config.n_positions)).save_pretrained(path)
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    _fsync_tree(path)
    return path


def _fsync_tree(path: Path) -> None:
    """Flush the files of a folder to disk, so a rename after it publishes whole files."""
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def replace_folder(staging: Path, final: Path) -> None:
    """Move a completely written folder into place (atomic on one file system when
    `final` does not exist; otherwise the old one is moved aside first)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def publish_files(staging: Path, target: Path) -> None:
    """Move every file of `staging` into `target`, one atomic rename each, then remove
    `staging`: how a run folder's top-level model is updated without a moment when a
    file is half-written."""
    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(staging.iterdir()):
        os.replace(file, target / file.name)
    staging.rmdir()


def resolve_model_path(name: str | Path) -> str:
    """`default` → the shipped model; a folder → itself; anything else is taken as a
    Hugging Face hub id (downloaded by transformers when reachable)."""
    if str(name) == "default":
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise ModelError(
                f"the default model is missing from {DEFAULT_MODEL_DIR} (a broken install?)"
            )
        return str(DEFAULT_MODEL_DIR)
    path = Path(name)
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path}: a model is a folder (config.json, model.safetensors)")
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return str(path)
    # A hub id is OWNER/NAME or NAME; a path whose first folder exists here (runs/typo) or
    # that starts like a path is a mistyped folder, not a download.
    first = Path(str(name).split("/")[0])
    if (
        str(name).startswith((".", "/", "~"))
        or str(name).count("/") > 1
        or ("/" in str(name) and first.is_dir())
    ):
        raise ModelError(f"{name}: no such model folder")
    return str(name)


def read_meta(path: str | Path) -> dict | None:
    """music_lm.json of a local model folder, checked; None when the folder has none
    (a foreign model, such as OpenAI's GPT-2)."""
    file = Path(path) / META_FILE
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{file}: unreadable ({err})") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{file}: not a music_lm model description")
    if meta.get("vocab_sha256") != VOCAB.sha256 and not _older_vocabulary(meta):
        raise ModelError(
            f"{path}: trained on another vocabulary ({meta.get('vocab_size')} tokens, hash "
            f"{str(meta.get('vocab_sha256'))[:12]}; this music_lm has {len(VOCAB)}, "
            f"{VOCAB.sha256[:12]})"
        )
    return meta


def _older_vocabulary(meta: dict) -> bool:
    """Whether music_lm.json names a vocabulary that this one extends: its first
    `vocab_size` tokens, by their hash (families are only ever added at the end)."""
    size = meta.get("vocab_size")
    return (
        type(size) is int
        and 0 < size < len(VOCAB)
        and meta.get("vocab_sha256") == VOCAB.sha256_of_first(size)
    )


def music_vocab_size_of(meta: dict | None) -> int:
    """How many of the grammar's tokens a model of this (checked) music_lm.json knows:
    all of them, or the first `vocab_size` for a model trained before the vocabulary grew.
    A foreign model (no music_lm.json) gets every token when they are added to it."""
    if meta is None or meta.get("vocab_sha256") == VOCAB.sha256:
        return len(VOCAB)
    return int(meta["vocab_size"])


def trained_on_fim(meta: dict | None) -> bool:
    """Whether a model folder's record says it learnt the fill-in-the-middle form: its run
    drew windows in it, or its base had (a fine-tune keeps the skill it started with)."""
    training = (meta or {}).get("training") or {}
    return bool(training.get("fim_trained") or training.get("fim_share"))


def token_map_of(meta: dict | None) -> TokenMap:
    known = music_vocab_size_of(meta)
    ids = (meta or {}).get("token_ids")
    if ids is None:
        return TokenMap(identity_size=known)
    if len(ids) != known:
        raise ModelError(f"token map of {len(ids)} entries, the model's vocabulary has {known}")
    return TokenMap(tuple(int(i) for i in ids))


@dataclass
class LoadedModel:
    """A model ready for music: the network, where it came from and its token map."""

    model: GPT2LMHeadModel
    path: str
    meta: dict
    token_map: TokenMap

    @property
    def context(self) -> int:
        return int(self.model.config.n_positions)

    @property
    def music_vocab_size(self) -> int:
        """How many of the grammar's tokens the model knows (the first ones): fewer than
        len(VOCAB) for a model trained before the vocabulary grew."""
        return self.token_map.music_vocab_size

    def knows(self, word: str) -> bool:
        """Whether the model has the token `word` at all: a model of an older vocabulary
        lacks the newer ones. (Having `hole` does not say it learnt to fill in the middle:
        fine-tuning an older model adds the token before any training on it.)"""
        return VOCAB.ids[word] < self.music_vocab_size


def load_model(
    name: str | Path = "default",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> LoadedModel:
    """Load a music_lm model folder (or `default`) and check it speaks this grammar."""
    path = resolve_model_path(name)
    if not Path(path).is_dir():
        raise ModelError(f"{name}: not a local model folder (music models are folders)")
    meta = read_meta(path)
    if meta is None:
        raise ModelError(f"{path}: no {META_FILE}; not a music_lm model (fine-tune it first)")
    token_map = token_map_of(meta)
    config = _checked_config(Path(path))
    needed = token_map.music_vocab_size if token_map.identity else max(token_map.model_ids) + 1
    if config.vocab_size < needed:
        raise ModelError(
            f"{path}: config.json has vocab_size {config.vocab_size}, the music tokens need "
            f"{needed}"
        )
    if token_map.identity:
        load_tokenizer(path, token_map.music_vocab_size)  # raises on another vocabulary

    hf_logging.disable_progress_bar()  # "Loading weights" on every command is noise
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, dtype=dtype, attn_implementation="sdpa"
        )
    except (OSError, ValueError) as err:  # a truncated or mismatched safetensors file
        raise ModelError(f"{path}: cannot load the weights ({error_line(err)})") from None
    model.to(device).eval()
    return LoadedModel(model, path, meta, token_map)


def error_line(err: BaseException) -> str:
    """The first line of an error from a library (transformers and torch write whole
    paragraphs), or its type when it says nothing: for a one-line message of ours."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _checked_config(path: Path) -> GPT2Config:
    """config.json of a model folder, read as data before transformers sees the folder: a
    GPT-2 with its weights in safetensors, or a clear refusal. (Pickled weights can run code
    when loaded, and a config's auto_map points at code: neither is ever used.)"""
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: unreadable config.json ({err})") from None
    if not isinstance(raw, dict) or raw.get("model_type") != "gpt2":
        kind = raw.get("model_type") if isinstance(raw, dict) else None
        raise ModelError(f"{path}: a {kind or 'unknown'} model in config.json; music_lm runs GPT-2")
    if "auto_map" in raw:  # transformers never runs it without trust_remote_code; say so anyway
        raise ModelError(f"{path}: config.json names code to run (auto_map); never loaded")
    if not any(path.glob("*.safetensors")):
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt*")]
        found = f" (found {', '.join(pickled)}, pickled: never loaded)" if pickled else ""
        raise ModelError(f"{path}: no safetensors weights{found}")
    try:
        return GPT2Config.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{path}: config.json is not a GPT-2 configuration ({err})") from None


def music_tokens_for(tokenizer) -> tuple[object, TokenMap]:
    """Add the music tokens to a foreign (text) tokenizer: each token is matched as a
    whole word, the space before it absorbed, so `tokenizer("piece style:bach")` gives
    the two music tokens and nothing else. Returns the tokenizer and the token map."""

    tokenizer.add_tokens([AddedToken(word, lstrip=True, normalized=False) for word in VOCAB.tokens])
    ids = tokenizer.convert_tokens_to_ids(list(VOCAB.tokens))
    if len(set(ids)) != len(ids) or any(i is None for i in ids):
        raise ModelError("the base tokenizer could not give every music token an id of its own")
    return tokenizer, TokenMap(tuple(int(i) for i in ids))
