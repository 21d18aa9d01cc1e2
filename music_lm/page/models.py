"""The models the page offers (the shipped one, then the trained model folders under the
runs) and a run's training metrics, for the Training view.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelChoice:
    label: str
    path: str  # "default" or a folder


def model_choices(roots: Sequence[Path]) -> list[ModelChoice]:
    """The shipped model, then every model folder (a run and its checkpoints) under `roots`."""
    # on use: model.folder imports torch and transformers (seconds)
    from music_lm.model.folder import META_FILE

    choices = [ModelChoice("default (shipped)", "default")]
    for root in roots:
        if not root.is_dir():
            continue
        for meta in sorted(root.glob(f"*/{META_FILE}")) + sorted(root.glob(f"*/*/{META_FILE}")):
            folder = meta.parent
            choices.append(ModelChoice(str(folder.relative_to(root.parent)), str(folder)))
    return choices


def run_metrics(path: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (a checkpoint reads its run's); [] when none."""
    # on use: model.folder imports torch and transformers (seconds)
    from music_lm.model.folder import resolve_model_path

    folder = Path(resolve_model_path(path))
    for candidate in (folder, folder.parent):
        file = candidate / "metrics.jsonl"
        if file.is_file():
            rows = []
            for line in file.read_text(encoding="utf-8").splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a line cut by a kill
            return rows
    return []


__all__ = [
    "ModelChoice",
    "model_choices",
    "run_metrics",
]
