"""A training run's state, in three parts: `Run`, what it was set up with (fixed while it
trains); `RunState`, where it stands (what a checkpoint saves and a resume restores); and
`Session`, this session's own (the compiled model, the metrics output, the log window)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from music_lm.corpus.dataset import Corpus
from music_lm.model.folder import TokenMap
from music_lm.training.config import TrainConfig
from music_lm.training.data import ShardedWindows
from music_lm.training.metrics import MetricsLog

if TYPE_CHECKING:
    from accelerate import Accelerator
    from tqdm import tqdm


@dataclass(frozen=True)
class Run:
    """A run once set up: its settings, processes, model, data and optimizer. Fixed while it
    trains (the model's weights and the optimizer's state change, not which they are)."""

    config: TrainConfig
    folder: Path
    accelerator: Accelerator
    log: Callable[[str], None]  # the main process's; silent on the others
    model: torch.nn.Module  # as Accelerate prepared it (under LoRA: with its adapters)
    token_map: TokenMap
    tokenizer: object | None  # None when the model's vocabulary is the grammar's own
    base_path: str | None  # the model fine-tuned, if any
    base_sha: str | None  # its weights' SHA-256: a LoRA run resumes only on the same base
    corpora: list[Corpus]
    windows: ShardedWindows  # this process's slice of each global batch
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    context: int
    max_steps: int
    tokens_per_step: int  # over every process
    bf16: bool
    launcher: int | None = None  # with several processes: the launcher's process id

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


@dataclass
class RunState:
    """Where a run stands: what a checkpoint saves and a resume restores."""

    step: int = 0
    best: float | None = None  # the best validation loss so far
    tokens_seen: int = 0
    elapsed_before: float = 0.0  # training seconds of the sessions before this one
    resumed_from: int | None = None  # the checkpoint's step, when this session resumed


@dataclass
class Session:
    """This session of a run (nothing of it is saved): the model as it steps, the figures
    its metrics rows need, where they go, and the steps since the last row."""

    compiled: torch.nn.Module  # the model, compiled or not: what the training steps call
    n_params: int
    flops_per_token: float
    peak_flops: float | None
    metrics_log: MetricsLog | None  # the main process only
    val_windows: list[np.ndarray]  # this process's share, the same at every evaluation
    bar: tqdm
    started: float  # time.perf_counter() when the first step of the session started
    loss_window: torch.Tensor  # the summed training loss since the last row
    window_started: float
    window_tokens: int = 0
    window_steps: int = 0
    steps: int = 0
    last_row: dict = field(default_factory=dict)
