"""`music-lm` as one launched process that also records what it trained on, for
tests/test_distributed.py: after each optimizer step, a line in $PROBE_DIR/rank-R.jsonl
with a digest of each window this process drew for the step and a digest of its weights.

    torchrun --standalone --nproc_per_node 2 tests/distributed_probe.py train --data ...

is the documented `torchrun --standalone --nproc_per_node 2 -m music_lm.cli train --data ...`
with the recording added; the run itself is the same."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

PROBE_DIR = "PROBE_DIR"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def record() -> None:
    """Wrap the loop's window drawing and optimizer step to write one line per step."""
    from music_lm.training import data, loop

    out = Path(os.environ[PROBE_DIR]) / f"rank-{os.environ.get('RANK', '0')}.jsonl"
    drawn: list[str] = []
    draw, step = data.ShardedWindows.batch, loop._optimizer_step

    def recorded_draw(self, per_process: int):
        windows = draw(self, per_process)
        drawn.extend(digest(window.tobytes()) for window in windows)
        return windows

    def recorded_step(run, session):
        grad_norm = step(run, session)
        weights = hashlib.sha256()
        for parameter in run.accelerator.unwrap_model(run.model).parameters():
            weights.update(parameter.detach().cpu().numpy().tobytes())
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"windows": drawn, "weights": weights.hexdigest()}) + "\n")
        drawn.clear()
        return grad_norm

    data.ShardedWindows.batch = recorded_draw
    loop._optimizer_step = recorded_step


if __name__ == "__main__":
    record()
    from music_lm.cli import main

    sys.argv = ["music-lm", *sys.argv[1:]]
    main()
