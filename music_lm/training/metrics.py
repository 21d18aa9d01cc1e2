"""A run's metrics: metrics.jsonl, TensorBoard events and loss.png, and the FLOPs figures
behind the model FLOPs utilisation (MFU) of its rows."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from music_lm.model.folder import count_parameters

METRICS_FILE = "metrics.jsonl"


# Peak dense bf16 tensor throughput, for the model FLOPs utilisation (MFU).
# Checked in order: the PCIe H100 has a lower peak than the SXM one.
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


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
            # tensorboard only when a run logs to it
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
    # matplotlib loads only when a plot is drawn, not with the training stage.
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib only when loss.png is drawn
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


def peak_flops(device: torch.device) -> float | None:
    """The GPU's peak dense bf16 FLOPs per second (None: a CPU, or a GPU not in the table)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def flops_per_token(model: torch.nn.Module, context: int) -> float:
    """Training FLOPs per token: 6 N for the weights plus 12 L d T for attention (PaLM)."""
    config = model.config
    n = count_parameters(model, embeddings=False)
    return 6 * n + 12 * config.n_layer * config.n_embd * context
