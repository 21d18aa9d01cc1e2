"""The settings of a corpus build, checked when made and saved in the corpus's manifest."""

from __future__ import annotations

from dataclasses import dataclass

from music_lm.corpus.sources import CorpusError

DEFAULT_SHARD_TOKENS = 8 * 1024 * 1024  # 16 MiB per shard: small enough to move around


@dataclass(frozen=True)
class BuildConfig:
    """Settings of a build, saved in the manifest."""

    sources: tuple[str, ...]
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 0
    sustain: bool = False
    dedup: bool = True
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    limit: int | None = None  # at most this many pieces per source (quick builds)

    def __post_init__(self) -> None:
        if not self.sources:
            raise CorpusError("no sources: give --source music21 or --source DIR[:TAG]")
        held_out = self.valid_fraction + self.test_fraction
        if min(self.valid_fraction, self.test_fraction) < 0 or held_out >= 1:
            raise CorpusError(
                f"split fractions must be >= 0 and leave some training data: valid "
                f"{self.valid_fraction}, test {self.test_fraction}"
            )
        if self.shard_tokens < 1024:
            raise CorpusError(f"shard size must be at least 1024 tokens, got {self.shard_tokens}")
