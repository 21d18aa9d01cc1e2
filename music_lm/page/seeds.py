"""The page's seeds: where a continuation starts. A *seed* is a header and whole bars (token
ids, no `end`), from an example or uploaded MIDI file, from the settings, or from a take
("continue from this"). SeedError names the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from music_lm.errors import MusicLmError
from music_lm.generation.seeds import SUSTAIN_SEEDS, read_midi_seed, seed_from_text
from music_lm.generation.settings import GenerationError
from music_lm.midi.score import Score
from music_lm.page.limits import LIMITS, PageLimits
from music_lm.tokens.rules import BAR, END
from music_lm.tokens.validate import words_to_ids
from music_lm.tokens.vocab import VOCAB


class SeedError(MusicLmError, ValueError):
    """A seed the page cannot use; the message names the file and the problem."""


@dataclass(frozen=True)
class Seed:
    """Where a continuation starts: the header and whole bars, as token ids."""

    name: str  # the file, "settings" or the take's label
    ids: tuple[int, ...]
    origin: str  # "example", "upload", "settings" or "take"
    take: int | None = None  # the take's number when origin is "take"

    @property
    def bars(self) -> int:
        return self.ids.count(BAR)

    @property
    def text(self) -> str:
        """The seed as a whole piece (with its `end`), one bar a line."""
        words = [VOCAB.tokens[t] for t in (*self.ids, END)]
        return " ".join(words).replace(" bar ", "\nbar ")

    def cut(self, bars: int) -> Seed:
        """The header and the first `bars` bars."""
        starts = [i for i, t in enumerate(self.ids) if t == BAR]
        if bars >= len(starts):
            return self
        return replace(self, ids=self.ids[: starts[bars]])

    @cached_property
    def score(self) -> Score:
        """The seed as a score (a header alone: tracks without notes)."""
        # on use: only a seed the page shows is decoded
        from music_lm.tokens.codec import decode

        return decode(" ".join(VOCAB.tokens[t] for t in self.ids), partial=True)


def _seed_ids(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(seed_from_text(text, name))
    except GenerationError as err:
        raise SeedError(str(err)) from None


def seed_from_midi(
    data: bytes,
    name: str,
    origin: str = "upload",
    limits: PageLimits = LIMITS,
    sustain: bool = SUSTAIN_SEEDS,
) -> Seed:
    """The seed of a MIDI file's bytes, read as `music-lm generate` reads one (the sustain
    pedal applied when `sustain`); SeedError names the file and what is wrong."""
    if len(data) > limits.upload_bytes:
        raise SeedError(
            f"{name}: {len(data):,} bytes is over the limit of {limits.upload_bytes:,} bytes"
        )
    try:
        encoded = read_midi_seed(data, name=name, sustain=sustain)
    except (ValueError, OSError) as err:  # MidiError and CodecError are ValueErrors
        message = str(err)
        raise SeedError(message if name in message else f"{name}: {message}") from None
    if encoded.token_count > limits.seed_tokens:
        raise SeedError(
            f"{name}: {encoded.token_count:,} tokens is over the page's limit of "
            f"{limits.seed_tokens:,}; cut the file or use `music-lm continue`"
        )
    # A file with no notes (tempo and meter only) is continued from its header, with the
    # instruments a piece started from settings gets (`generate` adds them; see
    # music_lm.generation.seeds.with_instruments).
    seed = Seed(name, _seed_ids(encoded.text, name), origin)
    if seed.bars > limits.seed_bars:
        raise SeedError(f"{name}: {seed.bars} bars is over the page's limit of {limits.seed_bars}")
    return seed


def seed_from_header(header) -> Seed:
    """A seed of a header only (`music_lm.generation.seeds.Header`): start from settings."""
    return Seed("settings", tuple(words_to_ids(header.words())), "settings")


def seed_summary(seed: Seed) -> dict:
    """Tracks, tempo, meter, key, bars, notes and length of a seed, for the page."""
    # on use: only the seed's summary needs the report
    from music_lm.tokens.report import seconds

    score = seed.score
    first = score.time_signatures[0] if score.time_signatures else None
    key = score.key_signatures[0] if score.key_signatures else None
    return {
        "tracks": [
            "drums" if t.is_drum else t.instrument_name.replace("-", " ") for t in score.tracks
        ],
        "tempo_bpm": round(score.tempos[0].bpm, 2) if score.tempos else 120.0,
        "meter": f"{first.numerator}/{first.denominator}" if first else "4/4",
        "key": str(key) if key else "none",
        "bars": seed.bars,
        "notes": score.note_count,
        "seconds": round(seconds(score, score.end_tick), 1),
        "style": score.style,
    }


__all__ = [
    "Seed",
    "SeedError",
    "seed_from_header",
    "seed_from_midi",
    "seed_summary",
]
