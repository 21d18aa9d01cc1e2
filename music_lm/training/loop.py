"""Pretraining and fine-tuning: the loop, checkpoints, resume and metrics.

    config = TrainConfig(data=("data/corpus",), output="runs/small", preset="small",
                         max_steps=5000)
    train(config)

One loop for both jobs: pretraining starts from a fresh GPT-2 of a preset size;
fine-tuning (`base=...`) starts from a model folder, the shipped default, or a text
GPT-2 whose tokenizer gets the music tokens added. Data is one or more built corpora;
a folder of MIDI files is built into a corpus inside the run folder on the way.

The loop runs under Hugging Face Accelerate, so the same code runs on a CPU, a GPU or
several (`accelerate launch -m music_lm.cli train ...`). Windows are packed: pieces
follow each other in a window, separated by their own `end`/`piece` tokens, so no
attention mask is needed and no compute goes to padding.

Run folder:

    runs/NAME/
      config.json model.safetensors tokenizer.json music_lm.json ...   best by validation
      checkpoint-500/  checkpoint-1000/ ...   every --save-every steps, all kept, each a
                                              model folder plus training_state.pt
      train_config.json   the settings (resume checks them)
      metrics.jsonl       one JSON object per logged step
      loss.png  tb/       curves, TensorBoard events

Every folder is written beside its place and renamed into it, so an interruption
(even `kill -9`) leaves only whole checkpoints; running the same command again
resumes from the last one and computes the same next-step loss as a run that was
never interrupted (the model, optimizer, schedule and every random state are saved).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from music_lm.corpus.dataset import Corpus, WindowSampler, sequential_windows
from music_lm.corpus.sources import CorpusError
from music_lm.errors import MusicLmError
from music_lm.model.folder import (
    LOSS_GROUPS,
    ModelError,
    TokenMap,
    count_parameters,
    error_line,
    loss_group_of_tokens,
    model_config,
    model_meta,
    music_tokens_for,
    new_model,
    publish_files,
    read_meta,
    replace_folder,
    resolve_model_path,
    save_model_folder,
    token_map_of,
)
from music_lm.tokens.vocab import VOCAB

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "training_state.pt"
CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
RUN_FORMAT = "music_lm-run"

# Peak dense bf16 tensor throughput, for the model FLOPs utilisation (MFU).
# Checked in order: the PCIe H100 has a lower peak than the SXM one.
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


class TrainError(MusicLmError, ValueError):
    """Settings or a run folder that cannot be trained; the message says what to do."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; saved as train_config.json in the run folder."""

    data: tuple[str, ...]
    output: str
    base: str | None = None  # fine-tuning: a model folder, "default", or a hub id
    preset: str = "small"
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    context: int = 1024
    dropout: float = 0.0
    max_steps: int | None = None  # else from epochs
    epochs: float | None = None  # passes over the training tokens (default 1)
    batch_size: int = 16  # windows per micro-batch, per device
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    transpose: int = 5  # random transposition of each piece, ± semitones
    weights: dict[str, float] = field(default_factory=dict)  # mixing, by source or style
    eval_every: int = 200
    eval_windows: int = 64  # validation windows per evaluation (0: the whole split)
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    compile: str = "auto"  # auto (on a GPU), on, off
    precision: str = "auto"  # auto (bf16 on a GPU that has it), bf16, fp32
    lora_rank: int = 0  # > 0: train LoRA adapters (peft), merged into the saved weights
    lora_alpha: int = 16
    progress: bool | None = None  # progress bar; None: when on a terminal

    def __post_init__(self) -> None:
        # Paths are kept as text, so the settings round-trip through JSON unchanged.
        object.__setattr__(self, "output", str(self.output))
        object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        object.__setattr__(self, "weights", dict(self.weights))
        if not self.data:
            raise TrainError("no training data: give --data with a corpus or MIDI folder")
        checks = (
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"--grad-accum must be >= 1, got {self.grad_accum}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.max_steps is None or self.max_steps >= 1,
             f"--max-steps must be >= 1, got {self.max_steps}"),
            (self.epochs is None or self.epochs > 0, f"--epochs must be > 0, got {self.epochs}"),
            (self.eval_every >= 1, f"--eval-every must be >= 1, got {self.eval_every}"),
            (self.save_every >= 1, f"--save-every must be >= 1, got {self.save_every}"),
            (self.log_every >= 1, f"--log-every must be >= 1, got {self.log_every}"),
            (self.compile in ("auto", "on", "off"),
             f"--compile must be auto, on or off, got {self.compile!r}"),
            (self.precision in ("auto", "bf16", "fp32"),
             f"--precision must be auto, bf16 or fp32, got {self.precision!r}"),
            (self.lora_rank >= 0, f"--lora-rank must be >= 0, got {self.lora_rank}"),
            (0 <= self.transpose <= 12, f"--transpose must be 0..12, got {self.transpose}"),
            (self.context >= 16, f"--context must be at least 16 tokens, got {self.context}"),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (self.eval_windows >= 0, f"--eval-windows must be >= 0, got {self.eval_windows}"),
            (self.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {self.warmup_steps}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be 0..1, got {self.min_lr_ratio}"),
            (all(v >= 0 for v in self.weights.values()) and (not self.weights or
             any(v > 0 for v in self.weights.values())),
             f"--weight shares must be >= 0 and not all 0, got {self.weights}"),
        )  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise TrainError(message)

    def to_json(self) -> dict:
        return {"format": RUN_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["data"] = tuple(values["data"])
        return cls(**values)


# Settings that may change when a run is resumed: they do not change what was trained.
RESUMABLE_CHANGES = frozenset(
    {"max_steps", "epochs", "eval_every", "eval_windows", "save_every", "log_every",
     "progress", "compile", "output"}
)  # fmt: skip


@dataclass
class TrainResult:
    run: Path
    step: int
    best_val_loss: float | None
    metrics: dict
    resumed_from: int | None


# ---- data ----


def prepare_data(paths: Sequence[str], run: Path, log: Callable[[str], None]) -> list[Corpus]:
    """Corpus folders as they are; a folder of MIDI files is built into a corpus inside the
    run folder first (10 % held out for validation, encodings cached)."""
    corpora = []
    for number, name in enumerate(paths):
        path = Path(name)
        if (path / "manifest.json").is_file():
            corpora.append(Corpus(path))
            continue
        if not path.is_dir():
            raise CorpusError(f"{path}: no such corpus or MIDI folder")
        from music_lm.corpus.build import BuildConfig, build_corpus

        target = run / f"corpus-{number}"
        log(f"{path}: a folder of MIDI files; building its corpus in {target}")
        config = BuildConfig((str(path),), valid_fraction=0.1, test_fraction=0.0)
        build_corpus(config, target, progress=False, log=log)
        corpora.append(Corpus(target))
    return corpora


def train_tokens(corpora: Sequence[Corpus]) -> int:
    return sum(c.manifest["splits"]["train"]["tokens"] for c in corpora)


def has_split(corpora: Sequence[Corpus], split: str) -> bool:
    return any(c.split(split) for c in corpora)


# ---- evaluation ----


class Tally:
    """Sums of a loss over tokens, by loss group, for one evaluation."""

    def __init__(self, device: torch.device) -> None:
        groups = len(LOSS_GROUPS)
        self.sums = torch.zeros(3 + 2 * groups, dtype=torch.float64, device=device)
        # Per token id, on the device once: its loss group, and whether it is a note.
        self.group_of = torch.from_numpy(loss_group_of_tokens()).to(device)
        self.is_note = torch.tensor(VOCAB.is_note, device=device)

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits = logits.float().reshape(-1, logits.shape[-1])
        targets = targets.reshape(-1)
        nll = cross_entropy(logits, targets, reduction="none").double()
        correct = (logits.argmax(-1) == targets).double()
        group = self.group_of[targets]
        n = len(LOSS_GROUPS)
        self.sums[0] += nll.sum()
        self.sums[1] += correct.sum()
        self.sums[2] += self.is_note[targets].sum()
        self.sums[3 : 3 + n] += torch.bincount(group, weights=nll, minlength=n)
        self.sums[3 + n :] += torch.bincount(group, minlength=n).double()

    def result(self) -> dict:
        n = len(LOSS_GROUPS)
        sums = self.sums.tolist()
        counts = sums[3 + n :]
        total = sum(counts)
        loss = sums[0] / max(total, 1)
        out = {
            "loss": loss,
            "accuracy": sums[1] / max(total, 1),
            "perplexity": math.exp(min(loss, 50.0)),
            "bits_per_note": sums[0] / math.log(2) / sums[2] if sums[2] else None,
            "tokens": int(total),
            "notes": int(sums[2]),
        }
        for g, (name, _) in enumerate(LOSS_GROUPS):
            if counts[g]:
                out[f"loss_{name}"] = sums[3 + g] / counts[g]
        return out


def split_windows(
    corpora: Sequence[Corpus], split: str, context: int, max_windows: int = 0
) -> list[np.ndarray]:
    """A split as consecutive windows (each token predicted once, with up to `context - 1`
    tokens before it, untransposed). `max_windows` takes that many windows spread evenly
    over the split (0: all), so a quick evaluation still sees every style."""
    windows = [w for c in corpora for w in sequential_windows(c, split, context)]
    if not windows:
        raise CorpusError(f"the {split!r} split is empty: nothing to evaluate")
    if max_windows and len(windows) > max_windows:
        picks = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
        windows = [windows[i] for i in picks]
    return windows


@torch.no_grad()
def score_windows(
    model: torch.nn.Module,
    windows: Sequence[np.ndarray],
    batch_size: int = 8,
    token_map: TokenMap = TokenMap(),
    device: torch.device | str = "cpu",
    autocast: Callable | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Loss, accuracy, perplexity, bits per note and loss per token group over `windows`
    (`reduce` sums the tallies of several processes)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    tally = Tally(device)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        for length in sorted({len(w) for w in chunk}):  # the split's last window is short
            batch = torch.from_numpy(np.stack([w for w in chunk if len(w) == length]))
            batch = batch.to(device)
            with autocast() if autocast else nullcontext():
                logits = model(input_ids=token_map.to_model(batch[:, :-1])).logits
            tally.add(token_map.music_logits(logits), batch[:, 1:])
    if reduce is not None:
        tally.sums = reduce(tally.sums)
    model.train(was_training)
    return tally.result()


def evaluate(
    model: torch.nn.Module,
    corpora: Sequence[Corpus],
    split: str = "valid",
    context: int = 1024,
    max_windows: int = 0,
    batch_size: int = 8,
    token_map: TokenMap = TokenMap(),
    device: torch.device | str = "cpu",
) -> dict:
    """`score_windows` over a split's windows (see `split_windows`)."""
    windows = split_windows(corpora, split, context, max_windows)
    return score_windows(model, windows, batch_size, token_map, device)


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
    """AdamW (fused on a GPU, foreach on a CPU); no weight decay on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel is the fast one on a GPU; on a CPU the multi-tensor (foreach) one is:
    # fused ran a whole training step 10 % slower on the 2-core EPYC (bench/RESULTS.md).
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8,
                             fused=fused or None, foreach=not fused)  # fmt: skip


# ---- building the model ----


def _set_dropout(model: torch.nn.Module, dropout: float) -> None:
    """Dropout of a loaded model: the config (saved with it) and every Dropout module (built
    from the config at load time, so changing the config alone would do nothing)."""
    for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        setattr(model.config, name, dropout)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = dropout


def build_model(config: TrainConfig, log: Callable[[str], None]):
    """(model, token_map, tokenizer, base_path): a fresh GPT-2 or the base to fine-tune.
    The tokenizer is None when the model's vocabulary is the grammar's own."""
    if config.base is None:
        mc = model_config(config.preset, config.context, config.dropout,
                          config.n_layer, config.n_head, config.n_embd)  # fmt: skip
        torch.manual_seed(config.seed)
        return new_model(mc), TokenMap(), None, None
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

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
        log(f"fine-tuning {path}")
        return model, token_map_of(meta), tokenizer, path
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


def add_lora(model: torch.nn.Module, config: TrainConfig):
    """Wrap `model` with LoRA adapters on every attention and MLP projection."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules=["c_attn", "c_proj", "c_fc"],
        fan_in_fan_out=True,  # GPT-2's Conv1D stores weights transposed
        bias="none",
        task_type="CAUSAL_LM",
    )
    import warnings

    with warnings.catch_warnings():
        # peft asks transformers for a property that transformers 5 deprecated: not ours.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        return get_peft_model(model, lora)


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """The GPT-2 to save: LoRA adapters merged into a copy (the training model keeps them)."""
    if hasattr(model, "merge_and_unload"):
        import copy

        return copy.deepcopy(model).merge_and_unload()
    return model


# ---- checkpoints ----


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """The complete checkpoints of a run, by step."""
    found = []
    for path in run.glob(f"{CHECKPOINT_PREFIX}*"):
        step = path.name.removeprefix(CHECKPOINT_PREFIX)
        if step.isdigit() and (path / STATE_FILE).is_file():
            found.append((int(step), path))
    return sorted(found)


def _load_state(file: Path) -> dict:
    """A checkpoint's training state. Only with `weights_only=True`: a pickle from elsewhere
    cannot run code; one that needs more than tensors and plain data is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4": noise here
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError...: all unusable
        raise TrainError(
            f"{file}: not a training state music_lm can read safely ({error_line(err)[:200]}); "
            f"delete {file.parent.name} to resume from the checkpoint before it"
        ) from None
    if not isinstance(state, dict) or "step" not in state:
        raise TrainError(f"{file}: not a training state (no step)")
    return state


def _rng_state(sampler: WindowSampler) -> dict:
    state = {"torch": torch.get_rng_state(), "sampler": sampler.rng.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, sampler: WindowSampler) -> None:
    torch.set_rng_state(state["torch"])
    sampler.rng.bit_generator.state = state["sampler"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- metrics output ----


class MetricsLog:
    """metrics.jsonl (one object per logged step), TensorBoard events and loss.png."""

    def __init__(self, run: Path, resume_step: int) -> None:
        self.path = run / METRICS_FILE
        self.rows: list[dict] = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if row.get("step", 0) <= resume_step:
                    self.rows.append(row)
            # Rows after the checkpoint we resume from will be computed again.
            self._rewrite()
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run / "tb"), purge_step=resume_step + 1)
        except ImportError:  # tensorboard is optional
            pass

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows), encoding="utf-8")
        os.replace(tmp, self.path)

    def write(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and value is not None:
                    tag = key.replace("val_", "val/").replace("train_", "train/")
                    self.writer.add_scalar(tag, value, row["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_losses(rows: Sequence[dict], path: Path) -> Path:
    """loss.png: training and validation loss by step (and bits per note)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    train = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="#4477aa", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="#ee6677", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    bpn = [(r["step"], r["val_bits_per_note"]) for r in rows if r.get("val_bits_per_note")]
    if bpn:
        twin = ax.twinx()
        twin.plot(*zip(*bpn, strict=True), "s--", color="#228833", ms=3, lw=1,
                  label="validation bits per note")  # fmt: skip
        twin.set_ylabel("bits per note")
        twin.legend(loc="upper center")
    ax.set_title(path.parent.name)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ---- the run ----


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def flops_per_token(model: torch.nn.Module, context: int) -> float:
    """Training FLOPs per token: 6 N for the weights plus 12 L d T for attention (PaLM)."""
    config = model.config
    n = count_parameters(model, embeddings=False)
    return 6 * n + 12 * config.n_layer * config.n_embd * context


def _resolve_config(config: TrainConfig, run: Path, given: set[str]) -> TrainConfig:
    """The settings of a run folder that exists, with the changes a resume may make. A run
    with no checkpoint yet has trained nothing: it starts again with the new settings."""
    saved_path = run / CONFIG_FILE
    if not saved_path.is_file():
        if run.exists() and any(p for p in run.iterdir() if not p.name.startswith(".")):
            raise TrainError(
                f"{run}: exists and is not a music_lm run folder; choose another --output"
            )
        return config
    if not checkpoints(run):
        return config
    try:
        saved = TrainConfig.from_json(json.loads(saved_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as err:
        raise TrainError(f"{saved_path}: unreadable run settings ({err})") from None
    changed = {
        name for name in given
        if getattr(config, name) != getattr(saved, name) and name not in RESUMABLE_CHANGES
    }  # fmt: skip
    if changed:
        was = ", ".join(f"{n}={getattr(saved, n)!r}" for n in sorted(changed))
        raise TrainError(
            f"{run}: this run was started with {was}; resuming cannot change that "
            f"(use another --output for a new run)"
        )
    return replace(saved, **{n: getattr(config, n) for n in given if n in RESUMABLE_CHANGES})


def _write_json(path: Path, data: dict) -> None:
    """Write a JSON file whole or not at all (temporary file, flush, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _file_sha256(path: Path) -> str | None:
    import hashlib

    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _clean_staging(run: Path) -> None:
    """Remove what an interrupted save left: hidden temporary folders and files."""
    for stale in run.glob(".*"):
        if stale.name.endswith((".tmp", ".old")) or ".tmp." in stale.name:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def train(
    config: TrainConfig,
    given: set[str] | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) the run in `config.output`.

    `given`: the settings the user set explicitly (the CLI passes its flags); on resume,
    only those that do not change the run may differ from the saved ones. `stop_after`
    stops after that many steps of this session, as an interruption would (tests)."""
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed

    run = Path(config.output)
    given = set(given) if given is not None else {f.name for f in fields(TrainConfig)}
    config = _resolve_config(config, run, given)
    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    if world_env > 1 and any(not (Path(d) / "manifest.json").is_file() for d in config.data):
        raise TrainError("with several processes, --data must be built corpora: build a MIDI "
                         "folder first with `music-lm corpus build -s DIR -o CORPUS`")  # fmt: skip

    cuda = torch.cuda.is_available()
    bf16 = config.precision == "bf16" or (config.precision == "auto" and native_bf16(cuda))
    accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no")
    device = accelerator.device
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    say = log or (lambda message: print(message, file=sys.stderr))
    log = say if main else (lambda _message: None)

    # The model first: a bad size or base fails before anything is written.
    set_seed(config.seed)
    model, token_map, tokenizer, base_path = build_model(config, log)
    base_sha = _file_sha256(Path(base_path) / "model.safetensors") if base_path else None
    if main:
        run.mkdir(parents=True, exist_ok=True)
        _clean_staging(run)
        _write_json(run / CONFIG_FILE, config.to_json())
    corpora = prepare_data(config.data, run, log) if main else None
    accelerator.wait_for_everyone()
    if not main:
        corpora = [Corpus(d) for d in config.data]
    if not has_split(corpora, "valid"):
        raise TrainError(
            f"{', '.join(config.data)}: no validation pieces (a folder of MIDI files needs at "
            "least 3 songs, one of which is held out; a corpus needs --valid > 0)"
        )

    context = min(config.context, int(model.config.n_positions))
    if config.lora_rank:
        model = add_lora(model, config)
    tokens_per_step = config.batch_size * config.grad_accum * context * world
    max_steps = config.max_steps or max(
        1, math.ceil((config.epochs or 1.0) * train_tokens(corpora) / tokens_per_step)
    )
    warmup = min(config.warmup_steps, max(1, max_steps // 10))

    sampler = WindowSampler(corpora, "train", block_size=context, transpose=config.transpose,
                            weights=config.weights or None,
                            seed=config.seed * 1000 + rank)  # fmt: skip
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, config, device)
    # The schedule is ours, stepped once per optimizer step (not prepared: Accelerate would
    # step it once per process).
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, max_steps, config.min_lr_ratio)
    )
    model, optimizer = accelerator.prepare(model, optimizer)

    step, best, tokens_seen, elapsed_before, resumed_from = 0, None, 0, 0.0, None
    found = checkpoints(run)
    if found:
        resumed_from, path = found[-1]
        state = _load_state(path / STATE_FILE)
        if config.lora_rank and state.get("base_sha256") != base_sha:
            raise TrainError(f"{run}: the base model {config.base} changed since this LoRA run "
                             "started; resuming would mix adapters and other weights")  # fmt: skip
        _load_weights(accelerator.unwrap_model(model), path, config)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best = int(state["step"]), state["best_val_loss"]
        top = read_meta(run) if (run / "music_lm.json").is_file() else None
        top_loss = ((top or {}).get("training") or {}).get("val_loss")
        if top_loss is not None and (best is None or top_loss < best):
            best = top_loss  # the run's model was saved after this checkpoint
        tokens_seen, elapsed_before = int(state["tokens_seen"]), float(state["elapsed_s"])
        ranks = state["rng"]
        if len(ranks) == world:
            _set_rng_state(ranks[rank], sampler)
        else:
            log(f"resuming on {world} processes a run saved on {len(ranks)}: the data order "
                "changes")  # fmt: skip
        log(f"resuming {run} from step {step}")
    if step >= max_steps:
        log(f"{run}: already trained to step {step} of {max_steps}")

    compiled = model
    if config.compile == "on" or (config.compile == "auto" and cuda):
        compiled = torch.compile(model)

    plain_config_model = plain_model_config_holder(model)
    n_params = count_parameters(plain_config_model)
    fpt = flops_per_token(plain_config_model, context)
    peak = _peak_flops(device)
    metrics_log = MetricsLog(run, step) if main else None
    log(f"{n_params / 1e6:.2f} M parameters, context {context}, {max_steps} steps of "
        f"{tokens_per_step:,} tokens on {world} × {device.type}"
        f"{' bf16' if bf16 else ''}{' compiled' if compiled is not model else ''}")  # fmt: skip

    # Read once: the same validation windows at every evaluation, each process its share.
    val_windows = split_windows(corpora, "valid", context, config.eval_windows)[rank::world]

    def run_eval() -> dict:
        # The uncompiled module: evaluation windows vary in length (the last one of the
        # split is short) and would make a compiled one recompile.
        result = score_windows(
            model, val_windows, config.batch_size, token_map, device, accelerator.autocast,
            reduce=lambda t: accelerator.reduce(t, reduction="sum"),
        )  # fmt: skip
        return {f"val_{k}": v for k, v in result.items() if k not in ("tokens", "notes")}

    def save(step: int, val: dict | None, checkpoint: bool, is_best: bool) -> None:
        states = gather_object([_rng_state(sampler)])
        if not main:
            return
        try:
            write(step, val, checkpoint, is_best, states)
        except OSError as err:  # a full disk, a quota, a folder gone: say so, keep the rest
            for leftover in (run / ".best.tmp", run / f".{CHECKPOINT_PREFIX}{step}.tmp"):
                shutil.rmtree(leftover, ignore_errors=True)
            saved = checkpoints(run)
            kept = saved[-1][1].name if saved else "none yet"
            raise TrainError(
                f"{run}: cannot save step {step} ({err.strerror or err}); the checkpoints "
                f"saved before are intact (the last: {kept}); free some space and run the "
                "same command to resume"
            ) from None

    def write(step: int, val: dict | None, checkpoint: bool, is_best: bool, states) -> None:
        """The top-level model when it is the best so far, and a checkpoint folder, each
        written aside and moved into place whole."""
        plain = plain_model(accelerator.unwrap_model(model))
        summary = {"step": step, "tokens_seen": tokens_seen, "max_steps": max_steps,
                   "parameters": n_params, "context": context, **(val or {})}  # fmt: skip
        meta = model_meta(token_map, summary, base=base_path)
        if is_best:
            top = run / ".best.tmp"
            shutil.rmtree(top, ignore_errors=True)
            save_model_folder(plain, top, meta, tokenizer)
            publish_files(top, run)
        if not checkpoint:
            return
        staging = run / f".{CHECKPOINT_PREFIX}{step}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        save_model_folder(plain, staging, meta, tokenizer)
        if config.lora_rank:
            accelerator.unwrap_model(model).save_pretrained(staging / "adapter")
        state = {
            "step": step,
            "best_val_loss": best,
            "tokens_seen": tokens_seen,
            "elapsed_s": elapsed_before + (time.perf_counter() - started),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": states,
            "base_sha256": base_sha,
        }
        torch.save(state, staging / STATE_FILE)
        with open(staging / STATE_FILE, "rb") as handle:
            os.fsync(handle.fileno())
        replace_folder(staging, run / f"{CHECKPOINT_PREFIX}{step}")

    from tqdm.auto import tqdm

    bar = tqdm(total=max_steps, initial=step, unit="step", dynamic_ncols=True,
               disable=(not main) or (config.progress is False) or
               (config.progress is None and not sys.stderr.isatty()))  # fmt: skip
    started = time.perf_counter()
    window_started, window_tokens = started, 0
    loss_window = torch.zeros((), device=device)
    steps_in_window = 0
    session_steps = 0
    last_row: dict = {}
    while step < max_steps:
        lr = scheduler.get_last_lr()[0]  # the rate this step uses
        for micro in range(config.grad_accum):
            batch = torch.from_numpy(sampler.batch(config.batch_size)).to(device)
            inputs, targets = token_map.to_model(batch[:, :-1]), token_map.to_model(batch[:, 1:])
            sync = micro == config.grad_accum - 1
            with nullcontext() if sync else accelerator.no_sync(model):
                logits = compiled(input_ids=inputs).logits
                loss = cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                     targets.reshape(-1))  # fmt: skip
            accelerator.backward(loss / config.grad_accum)
            loss_window += loss.detach() / config.grad_accum
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        session_steps += 1
        steps_in_window += 1
        tokens_seen += tokens_per_step
        window_tokens += tokens_per_step
        bar.update(1)

        evaluate_now = step % config.eval_every == 0 or step == max_steps
        is_best = False
        if step % config.log_every == 0 or evaluate_now:
            # The mean training loss of the steps since the last row.
            train_loss = accelerator.reduce(loss_window / steps_in_window, reduction="mean")
            loss_window.zero_()
            steps_in_window = 0
            now = time.perf_counter()
            tokens_per_s = window_tokens / max(now - window_started, 1e-9)
            window_started, window_tokens = now, 0
            row = {
                "step": step,
                "train_loss": float(train_loss),
                "lr": lr,
                "grad_norm": float(grad_norm),
                "tokens_seen": tokens_seen,
                "tokens_per_s": tokens_per_s,
                "elapsed_s": elapsed_before + (now - started),
            }
            if peak:
                row["mfu"] = tokens_per_s * fpt / (peak * world)
            if evaluate_now:
                row.update(run_eval())
                is_best = best is None or row["val_loss"] < best
                if is_best:
                    best = row["val_loss"]
                window_started = time.perf_counter()  # evaluation time is not training speed
            if main:
                metrics_log.write(row)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                                tok_s=f"{tokens_per_s:,.0f}")  # fmt: skip
                if evaluate_now:
                    plot_losses(metrics_log.rows, run / "loss.png")
                    if bar.disable:
                        bpn = row.get("val_bits_per_note")
                        log(f"step {step}/{max_steps}: train {row['train_loss']:.4f}, "
                            f"validation {row['val_loss']:.4f}"
                            + (f" ({bpn:.2f} bits per note)" if bpn else "")
                            + f", {tokens_per_s:,.0f} tokens/s")  # fmt: skip
            last_row = row
        checkpoint = step % config.save_every == 0 or step == max_steps
        if checkpoint or is_best:
            val = {k: v for k, v in last_row.items() if k.startswith("val_")}
            save(step, val if evaluate_now else None, checkpoint, is_best)
        if stop_after is not None and session_steps >= stop_after:
            break
    bar.close()
    if main:
        metrics_log.close()
    accelerator.wait_for_everyone()
    return TrainResult(run, step, best, last_row, resumed_from)


def plain_model_config_holder(model: torch.nn.Module) -> torch.nn.Module:
    """The module that carries the GPT-2 config and transformer (under LoRA: the base)."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner


def _load_weights(model: torch.nn.Module, checkpoint: Path, config: TrainConfig) -> None:
    """Put a checkpoint's weights into the training model (for LoRA: its adapters)."""
    if config.lora_rank:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        adapter = load_file(str(checkpoint / "adapter" / "adapter_model.safetensors"))
        set_peft_model_state_dict(model, adapter)
        return
    from safetensors.torch import load_file

    state = load_file(str(checkpoint / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied output weights are saved once; anything else missing is a foreign checkpoint.
    missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise TrainError(f"{checkpoint}: weights do not fit the model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")  # fmt: skip
