"""A run's training data: the corpora given (a MIDI folder built into a corpus inside the
run folder first), and what the run needs to know of them before it starts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from music_lm.corpus.augment import Augmentation
from music_lm.corpus.dataset import Corpus, WindowSampler
from music_lm.training.config import AUGMENTATION_FIELDS, TrainConfig
from music_lm.training.folders import build_folder_corpus, is_corpus


def prepare_data(
    paths: Sequence[str], run: Path, log: Callable[[str], None], sustain: bool = False
) -> list[Corpus]:
    """Corpus folders as they are; a folder of MIDI files (DIR or DIR:TAG) is built into a
    corpus inside the run folder first (`music_lm.training.folders`: 10 % held out for
    validation, 10 % for testing from 20 pieces on; the sustain pedal applied when
    `sustain`; encodings cached)."""
    corpora = []
    for number, name in enumerate(paths):
        if is_corpus(name):
            corpora.append(Corpus(Path(name)))
        else:
            corpora.append(build_folder_corpus(name, run / f"corpus-{number}", sustain, log))
    return corpora


def train_tokens(corpora: Sequence[Corpus]) -> int:
    return sum(c.manifest["splits"]["train"]["tokens"] for c in corpora)


def has_split(corpora: Sequence[Corpus], split: str) -> bool:
    return any(c.split(split) for c in corpora)


def augmentation(config: TrainConfig) -> Augmentation:
    """The window augmentation a run's settings ask for (all 0: none)."""
    return Augmentation(**{name: getattr(config, name) for name in AUGMENTATION_FIELDS})


def training_sampler(
    corpora: Sequence[Corpus], config: TrainConfig, context: int, process_index: int = 0
) -> WindowSampler:
    """The training split's windows as a run draws them: mixed by the run's weights,
    transposed and augmented, seeded by the run's seed and the process's rank."""
    return WindowSampler(
        corpora, "train", block_size=context, transpose=config.transpose,
        weights=config.weights or None, seed=config.seed * 1000 + process_index,
        augment=augmentation(config),
    )  # fmt: skip
