"""A training run's settings: TrainConfig (checked when made, saved as train_config.json),
the error for settings or run folders that cannot be trained, and a run's result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from music_lm.errors import MusicLmError

CONFIG_FILE = "train_config.json"
RUN_FORMAT = "music_lm-run"


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
    # Augmentation of the training windows (music_lm.corpus.augment); 0 turns one off.
    velocity_level: int = 3  # ± velocity bins (of 4), one dynamic level per piece
    velocity_ramp: int = 4  # ± bins reached over a window's bars: crescendo or diminuendo
    velocity_jitter: int = 1  # ± bins per note
    velocity_jitter_share: float = 0.25  # of the pieces (music_lm.corpus.augment says why)
    revoice: float = 0.3  # probability that a piano or voice track gets another GM program
    tempo_percent: float = 3.0  # ± percent of tempo, one factor per piece
    # The share of pieces in the fill-in-the-middle form (music_lm.tokens.fim), which
    # teaches `music-lm infill --bars` to read what comes after the gap.
    fim_share: float = 0.0
    sustain: bool = False  # a MIDI folder is read with the sustain pedal applied
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
            (0 <= self.velocity_level <= 31,
             f"--velocity-level must be 0..31 bins, got {self.velocity_level}"),
            (0 <= self.velocity_ramp <= 31,
             f"--velocity-ramp must be 0..31 bins, got {self.velocity_ramp}"),
            (0 <= self.velocity_jitter <= 31,
             f"--velocity-jitter must be 0..31 bins, got {self.velocity_jitter}"),
            (0 <= self.velocity_jitter_share <= 1,
             "--velocity-jitter-share must be a probability 0..1, got "
             f"{self.velocity_jitter_share}"),
            (0 <= self.revoice <= 1, f"--revoice must be a probability 0..1, got {self.revoice}"),
            (0 <= self.fim_share <= 1,
             f"--fim-share must be a probability 0..1, got {self.fim_share}"),
            (0 <= self.tempo_percent <= 50,
             f"--tempo-percent must be 0..50, got {self.tempo_percent}"),
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
        # A run saved before augmentation existed trained without it, and resumes so.
        # One saved before the jitter's share existed jittered every piece.
        values = {**dict.fromkeys(AUGMENTATION_FIELDS, 0), "velocity_jitter_share": 1.0, **values}
        return cls(**values)


AUGMENTATION_FIELDS = (
    "velocity_level", "velocity_ramp", "velocity_jitter", "velocity_jitter_share", "revoice",
    "tempo_percent",
)  # fmt: skip

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
