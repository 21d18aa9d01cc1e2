"""What a caller of generation sets and hears back: how each token is drawn (`Sampling`),
the progress reports after every step, and generation's errors."""

from __future__ import annotations

from dataclasses import dataclass

from music_lm.errors import MusicLmError


class GenerationError(MusicLmError, ValueError):
    """Settings or a seed that generation cannot use."""


class GenerationStoppedError(GenerationError):
    """The caller asked generation to stop (the page's Stop button)."""


@dataclass(frozen=True)
class Progress:
    """Where a generation is, reported after every adaptation step (`--adapt`; phase
    "adapting") and every sampling step (phase "sampling")."""

    tokens: int  # steps taken in this batch of variants
    budget: int  # the most steps a batch can take
    bars_done: int  # new bars finished by the slowest variant of the batch
    bars: int  # new bars asked for
    seconds: float  # since this phase started (sampling: retries included)
    new_tokens: int  # new tokens made so far, over every variant
    phase: str = "sampling"  # or "adapting": fine-tuning a copy of the model on the seed
    adapt_step: int = 0  # adaptation steps done (over every model)
    adapt_steps: int = 0  # adaptation steps asked for (0: no adaptation)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def fraction(self) -> float:
        """How far the current phase is, 0..1: adaptation steps, then new bars."""
        if self.phase == "adapting":
            return self.adapt_step / max(self.adapt_steps, 1)
        return self.bars_done / max(self.bars, 1)


@dataclass(frozen=True)
class Sampling:
    """How each token is drawn. `temperature` is (first new bar, last new bar): a ramp."""

    temperature: tuple[float, float] = (1.0, 1.0)
    top_k: int = 0  # 0: off
    top_p: float = 0.95  # 1: off (0.95 for the API, the CLI and the page alike)
    min_p: float = 0.0  # 0: off

    def __post_init__(self) -> None:
        for value in self.temperature:
            if not 0.05 <= value <= 5.0:
                raise GenerationError(f"--temperature must be in 0.05..5, got {value}")
        if self.top_k < 0:
            raise GenerationError(f"--top-k must be 0 (off) or more, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise GenerationError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p < 1.0:
            raise GenerationError(f"--min-p must be in [0, 1), got {self.min_p}")

    def temperature_at(self, bar: int, bars: int) -> float:
        """The temperature in new bar `bar` (0-based) of `bars`."""
        first, last = self.temperature
        if bars <= 1:
            return first
        return first + (last - first) * min(bar, bars - 1) / (bars - 1)


def parse_temperature(text: str) -> tuple[float, float]:
    """'0.9' -> (0.9, 0.9); '0.8:1.2' -> a ramp from the first new bar to the last."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise GenerationError(
            f"--temperature takes T or FIRST:LAST, such as 0.9 or 0.8:1.2; got {text!r}"
        ) from None
    if len(parts) not in (1, 2):
        raise GenerationError(f"--temperature takes T or FIRST:LAST; got {text!r}")
    return (parts[0], parts[-1])
