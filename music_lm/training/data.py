"""A run's training data: the corpora given (a MIDI folder built into a corpus inside the
run folder first), and what the run needs to know of them before it starts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from music_lm.corpus.augment import Augmentation
from music_lm.corpus.dataset import Corpus, WindowSampler
from music_lm.training.config import AUGMENTATION_FIELDS, TrainConfig
from music_lm.training.folders import build_folder_corpus, corpus_folder, is_corpus

SEED_BOUND = 2**63  # a window's seed is drawn below this


def prepare_data(
    paths: Sequence[str], run: Path, log: Callable[[str], None], sustain: bool = False
) -> list[Corpus]:
    """Corpus folders as they are; a folder of MIDI files (DIR or DIR:TAG) is built into a
    corpus inside the run folder first (`music_lm.training.folders`: 10 % held out for
    validation, 10 % for testing from 20 pieces on; the sustain pedal applied when
    `sustain`; encodings cached)."""
    for number, name in enumerate(paths):
        if not is_corpus(name):
            build_folder_corpus(name, corpus_folder(name, number, run), sustain, log)
    return [Corpus(corpus_folder(name, number, run)) for number, name in enumerate(paths)]


def train_tokens(corpora: Sequence[Corpus]) -> int:
    return sum(c.manifest["splits"]["train"]["tokens"] for c in corpora)


def has_split(corpora: Sequence[Corpus], split: str) -> bool:
    return any(c.split(split) for c in corpora)


def augmentation(config: TrainConfig) -> Augmentation:
    """The window augmentation a run's settings ask for (all 0: none)."""
    return Augmentation(**{name: getattr(config, name) for name in AUGMENTATION_FIELDS})


def training_sampler(corpora: Sequence[Corpus], config: TrainConfig, context: int) -> WindowSampler:
    """The training split's windows as a run draws them: mixed by the run's weights,
    transposed, augmented and (a share of them) in the fill-in-the-middle form, seeded by
    the run's seed."""
    return WindowSampler(
        corpora, "train", block_size=context, transpose=config.transpose,
        weights=config.weights or None, seed=config.seed * 1000, augment=augmentation(config),
        fim_share=config.fim_share,
    )  # fmt: skip


class ShardedWindows:
    """The windows one process of a run trains on: its slice of each global batch.

    A micro-batch of the run is a global batch of `per_process × processes` windows. The
    run's stream (the sampler's generator, the same on every process) draws one seed per
    window of the global batch; process `rank` builds windows `rank × per_process` to
    `(rank + 1) × per_process - 1` of it, each from its own seed. So the processes train on
    different windows, no process builds another's, and the run's data depends on its seed
    and the global batch only: N processes of B windows see the windows that one process
    of N × B windows sees, in the same order (hence the same losses, to float rounding)."""

    def __init__(self, sampler: WindowSampler, rank: int = 0, processes: int = 1) -> None:
        if not 0 <= rank < processes:
            raise ValueError(f"process {rank} of {processes}: the rank must be 0..{processes - 1}")
        self.sampler, self.rank, self.processes = sampler, rank, processes
        self.stream = sampler.rng  # saved in checkpoints; the windows' own generators are not

    def batch(self, per_process: int) -> np.ndarray:
        """(per_process, context + 1) int64: this process's slice of the next global batch."""
        seeds = self.stream.integers(SEED_BOUND, size=per_process * self.processes)
        mine = seeds[self.rank * per_process : (self.rank + 1) * per_process]
        windows = []
        for seed in mine:
            self.sampler.rng = np.random.default_rng(int(seed))
            windows.append(self.sampler.window())
        self.sampler.rng = self.stream
        return np.stack(windows)
