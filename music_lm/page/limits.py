"""The page's own limits: what one upload or one generation on the page may take. Smaller
than the package's resource limits (`music_lm.limits`), because the page is shared."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageLimits:
    """What one upload or one generation on the page may take."""

    upload_bytes: int = 5 * 1024 * 1024  # also server.maxUploadSize in .streamlit/config.toml
    seed_tokens: int = 60_000  # a long orchestral file; more would not fit any context anyway
    seed_bars: int = 512
    generation_seconds: float = 300.0  # the sampling of one generation, all its variants
    concurrent_generations: int = 1  # over all sessions; the others wait their turn
    attention_bars: int = 16  # attention kept: [layers, heads, new, all tokens] grows fast
    adapt_steps: int = 100  # "Adapt to the seed": about 15 s of two cores, on the shared page


LIMITS = PageLimits()


__all__ = [
    "LIMITS",
    "PageLimits",
]
