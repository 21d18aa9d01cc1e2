"""Building what a run trains: the GPT-2 (fresh, or a base to fine-tune, with LoRA adapters),
the optimizer and the learning-rate schedule, and bf16 where the device computes it."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from music_lm.model.folder import (
    ATTENTION_DROPOUT,
    ModelError,
    TokenMap,
    error_line,
    model_config,
    music_tokens_for,
    new_model,
    read_meta,
    resolve_model_path,
    token_map_of,
)
from music_lm.tokens.vocab import VOCAB
from music_lm.training.config import TrainConfig, TrainError

# ---- the schedule and the optimizer ----


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine down to `min_ratio` at `total` steps."""
    if step < warmup:  # warmup 0: none
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def native_bf16(cuda: bool) -> bool:
    """Whether the device computes in bf16 natively: a GPU that has it, or a CPU with
    AVX512-BF16 or AMX (where bf16 autocast doubled training speed on 2 EPYC cores; on
    other CPUs oneDNN would emulate it, slower than fp32)."""
    if cuda:
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    """AdamW, fused (one kernel over all the weights); no weight decay on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # Fused on a CPU too: the multi-tensor (foreach) step allocates a temporary per weight
    # and operation, and on 2 loaded cores it took a median 1.2 s against fused's 53 ms for
    # the small preset (it was what kept our loop behind transformers' Trainer, which uses
    # the fused kernel).
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of `lr_factor` over `max_steps` (warmup at most a tenth)."""
    warmup = min(config.warmup_steps, max(1, max_steps // 10))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, max_steps, config.min_lr_ratio)
    )


# ---- building the model ----


def _set_dropout(model: torch.nn.Module, dropout: float) -> None:
    """Dropout of a loaded model: the config (saved with it) and every Dropout module (built
    from the config at load time, so changing the config alone would do nothing). The
    attention weights' dropout stays ATTENTION_DROPOUT (0): any other rate takes CPU
    attention off its fused kernel (model.folder)."""
    for name in ("resid_pdrop", "embd_pdrop"):
        setattr(model.config, name, dropout)
    model.config.attn_pdrop = ATTENTION_DROPOUT
    attention = {id(m) for name, m in model.named_modules() if name.endswith("attn_dropout")}
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = ATTENTION_DROPOUT if id(module) in attention else dropout


def build_model(config: TrainConfig, log: Callable[[str], None]):
    """(model, token_map, tokenizer, base_path): a fresh GPT-2 or the base to fine-tune.
    The tokenizer is None when the model's vocabulary is the grammar's own."""
    if config.base is None:
        mc = model_config(config.preset, config.context, config.dropout,
                          config.n_layer, config.n_head, config.n_embd)  # fmt: skip
        torch.manual_seed(config.seed)
        return new_model(mc), TokenMap(), None, None

    path = resolve_model_path(config.base)
    meta = read_meta(path) if Path(path).is_dir() else None
    try:
        base_config = AutoConfig.from_pretrained(path)
        if base_config.model_type != "gpt2":
            raise ModelError(
                f"{config.base}: a {base_config.model_type} model; music_lm trains GPT-2"
            )
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, dtype=torch.float32, attn_implementation="sdpa"
        )
        tokenizer = (
            AutoTokenizer.from_pretrained(path)
            if (meta or {}).get("token_ids") or (meta is None)
            else None
        )
    except OSError as err:  # not found on the hub, no network, no safetensors weights...
        raise ModelError(f"{config.base}: cannot load the model ({error_line(err)})") from None
    _set_dropout(model, config.dropout)
    if meta is not None:
        token_map = token_map_of(meta)
        if token_map.music_vocab_size < len(VOCAB):
            known = token_map.music_vocab_size
            if config.lora_rank and config.fim_share:
                raise TrainError(
                    f"{config.base}: trained before `hole` and `fill` existed; LoRA trains no "
                    "embeddings, so the two would stay alike: fine-tune it without "
                    "--lora-rank, or with --fim-share 0"
                )
            token_map, tokenizer = extend_vocabulary(model, token_map, tokenizer)
            log(f"fine-tuning {path}: trained on the first {known} tokens of this vocabulary; "
                f"the {len(VOCAB) - known} newer ones added (embeddings: the mean of the "
                "others)")  # fmt: skip
        else:
            log(f"fine-tuning {path}")
        return model, token_map, tokenizer, path
    if config.lora_rank:
        raise TrainError(
            f"{config.base}: a text model; its new music-token embeddings must be trained in "
            "full, which LoRA does not do: fine-tune it without --lora-rank first"
        )
    tokenizer, token_map = music_tokens_for(tokenizer)
    model.resize_token_embeddings(len(tokenizer))
    # model.generate() through the Auto classes stops at the music `end`, not the text one.
    for name, word in (("bos_token_id", "piece"), ("eos_token_id", "end"),
                       ("pad_token_id", "<pad>")):  # fmt: skip
        music_id = token_map.model_ids[VOCAB.ids[word]]
        setattr(model.config, name, music_id)
        setattr(model.generation_config, name, music_id)
    log(f"fine-tuning {path}: a text model; {len(VOCAB)} music tokens added to its tokenizer, "
        f"embeddings resized to {len(tokenizer)}")  # fmt: skip
    return model, token_map, tokenizer, path


def extend_vocabulary(model, token_map: TokenMap, tokenizer) -> tuple[TokenMap, object]:
    """A model trained before the vocabulary grew given the newer tokens, in place, so that
    the run saves a model of the whole vocabulary: (token map, tokenizer: None for a model
    of our own, else `tokenizer` with the newer tokens added). Each new token's embedding
    starts as the mean of the known music tokens' (a neutral start the fine-tuning moves
    on from); the output weights stay tied to them."""
    known = token_map.music_vocab_size
    if token_map.identity:
        new_map, rows = TokenMap(), list(range(len(VOCAB)))
        size = max(len(VOCAB), int(model.config.vocab_size))
    else:
        tokenizer, new_map = music_tokens_for(tokenizer)
        if new_map.model_ids[:known] != token_map.model_ids:
            raise ModelError(
                "the base's tokenizer gives its music tokens other ids than its token map "
                "(music_lm.json token_ids): a mismatched tokenizer"
            )
        rows, size = list(new_map.model_ids), max(len(tokenizer), int(model.config.vocab_size))
    if size != model.config.vocab_size:
        # mean_resizing=False: the new rows are set below, the same on every run (a resumed
        # run rebuilds the base this way before loading its checkpoint over it).
        model.resize_token_embeddings(size, mean_resizing=False)
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        embeddings[rows[known:]] = embeddings[rows[:known]].mean(dim=0)
    return new_map, tokenizer


def add_lora(model: torch.nn.Module, rank: int, alpha: int):
    """Wrap `model` with LoRA adapters of `rank` (scaled by `alpha`) on every attention and
    MLP projection."""
    # peft only for LoRA runs
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=["c_attn", "c_proj", "c_fc"],
        fan_in_fan_out=True,  # GPT-2's Conv1D stores weights transposed
        bias="none",
        task_type="CAUSAL_LM",
    )

    with warnings.catch_warnings():
        # peft asks transformers for a property that transformers 5 deprecated: not ours.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        return get_peft_model(model, lora)


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """The GPT-2 to save: LoRA adapters merged into a copy (the training model keeps them)."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def plain_model_config_holder(model: torch.nn.Module) -> torch.nn.Module:
    """The module that carries the GPT-2 config and transformer (under LoRA: the base)."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner
