"""The page's forms read as the command line reads its options: the options form's values
(`FormValues`) -> the arguments of `generate_takes`, and the Redraw panel's chords -> the
`Constraints` of `infill`. Every word goes through generation/options.py, the functions the
CLI calls, so a bad value fails in the CLI's one line (`OPTION_ERRORS`). No Streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from music_lm.generation.chords import ChordError
from music_lm.generation.constraints import ConstraintError, Constraints, key_signature_tonic
from music_lm.generation.options import (
    constraints_from_options,
    parse_mix_weights,
    sampling_from_options,
)
from music_lm.generation.settings import GenerationError
from music_lm.page.limits import LIMITS
from music_lm.page.seeds import Seed

SEED_KEY_LABEL = "the seed's key"  # the key choice that keeps to the seed's key signature
SEED_STYLE_LABEL = "(the seed's)"
KEY_SCALE_LABEL = "(the key's)"
# What a bad value raises: each says it in one line, naming the option or the words received.
OPTION_ERRORS = (ConstraintError, GenerationError, ChordError)


class FormError(GenerationError):
    """A form whose values do not go together; one line."""


@dataclass(frozen=True)
class FormValues:
    """The options form as its widgets give it (model paths already resolved)."""

    models: tuple[str, ...]
    mix: str = "weights"  # or "schedule"
    mix_weights: str = ""
    style: str = SEED_STYLE_LABEL
    bars: int = 4
    variants: int = 2
    temperature: tuple[float, float] = (1.0, 1.0)
    top_k: int = 0
    top_p: float = 0.95
    min_p: float = 0.0
    random_seed: int | None = None  # None: a new random seed each time
    key: str = "off"  # "off", SEED_KEY_LABEL or a key such as "D:minor"
    scale: str = KEY_SCALE_LABEL
    instruments: tuple[str, ...] = ()
    max_polyphony: int = 0  # 0: any
    pitch_range: str = ""
    instrument_ranges: bool = True
    attention: bool = False
    locks: tuple[str, ...] = ("tempo", "meter", "key")
    chords: str = ""
    chord_strict: bool = False
    adapt_steps: int = 0  # 0: no adaptation
    decoding: dict = field(default_factory=dict)  # constraints_from_options' decoding words


def generation_options(seed: Seed, form: FormValues) -> dict:
    """The arguments of `generate_takes` for `form` on `seed`; one of OPTION_ERRORS, in one
    line, for a value the CLI would refuse or values that do not go together."""
    if form.attention and form.bars > LIMITS.attention_bars:
        raise FormError(
            f"Keep attention works up to {LIMITS.attention_bars} new bars, not {form.bars}."
        )
    key_words, scale_words, seed_key = key_options(seed, form.key, form.scale)
    constraints = constraints_from_options(
        bars=form.bars,
        key=key_words,
        scale=scale_words,
        pitch_range=form.pitch_range,
        instrument_ranges=form.instrument_ranges,
        max_polyphony=form.max_polyphony or None,
        instruments=list(form.instruments),
        lock_tempo="tempo" in form.locks,
        lock_meter="meter" in form.locks,
        lock_key="key" in form.locks,
        seed_key=seed_key,
        **chord_words(form.chords, form.chord_strict),
        **form.decoding,
    )
    mixed = len(form.models) > 1
    return {
        "models": list(form.models),
        "mix": form.mix if mixed else None,
        "mix_weights": parse_mix_weights(form.mix_weights)
        if mixed and form.mix == "weights"
        else None,
        "style": None if form.style == SEED_STYLE_LABEL else form.style,
        "constraints": constraints,
        "sampling": sampling_from_options(form.temperature, form.top_k, form.top_p, form.min_p),
        "variants": form.variants,
        "random_seed": form.random_seed,
        "attention": form.attention,
        "adapt": form.adapt_steps,
    }


def chord_words(chords: str, strict: bool) -> dict:
    """The chords box and "chord tones only" as `--chords` and `--chord-strict`. The box
    empty, the checkbox has nothing to hold and says nothing (where the CLI would refuse
    --chord-strict alone: on a form, a box left ticked is no mistake)."""
    return {"chords": chords, "chord_strict": strict and bool(chords.strip())}


def redraw_constraints(bar_count: int, chords: str, strict: bool) -> Constraints:
    """The Redraw panel's constraints: `music-lm infill`'s defaults and its chord chart over
    `bar_count` bars; one of OPTION_ERRORS for a bad chord."""
    return constraints_from_options(bars=bar_count, **chord_words(chords, strict))


def key_options(seed: Seed, key: str, scale: str) -> tuple[str | None, str | None, tuple[int, str]]:
    """The two key widgets as the words of --key and --scale, and the seed's key signature
    (C major without one) that a scale on its own is on. "The seed's key" is the seed's key
    signature, major or minor as it is: its mode as the scale, on the seed's tonic."""
    signature = seed.score.key_signatures[0] if seed.score.key_signatures else None
    seed_key = (0, "major") if signature is None else (signature.sharps, signature.mode)
    scale_words = None if scale == KEY_SCALE_LABEL else scale
    if key == SEED_KEY_LABEL and scale_words is None:
        scale_words = key_signature_tonic(seed_key)[1]
    key_words = None if key in ("off", SEED_KEY_LABEL) else key
    return key_words, scale_words, seed_key


__all__ = [
    "KEY_SCALE_LABEL",
    "OPTION_ERRORS",
    "SEED_KEY_LABEL",
    "SEED_STYLE_LABEL",
    "FormError",
    "FormValues",
    "chord_words",
    "generation_options",
    "key_options",
    "redraw_constraints",
]
