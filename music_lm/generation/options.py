"""The user's words for a generation, turned into `Constraints`, `Sampling` and a `Header`.

The one place where the CLI's options (`music-lm generate | continue`) and the page's form
become settings: 'D:minor' -> (2, 'minor'), 'C3-C6' -> (48, 84), 'bass' -> programs 32..39,
'0.8:1.2' -> a temperature ramp, '3/4' -> (3, 4). Both call `constraints_from_options`,
`sampling_from_options`, `parse_mix_weights` and `header_from_options`, so an option means
the same and fails with the same words in both. Errors name the option (as the CLI spells
it) or the words received, and what was expected: a `ConstraintError` for a constraint, a
`GenerationError` for sampling and the header. Pure Python, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from music_lm.generation.chords import ChordLock, parse_chart, read_chart
from music_lm.generation.constraints import (
    DRUM_STEPS_AUTO,
    LOOP_GUARD_TOKENS,
    SCALES,
    SEED_KEY,
    ConstraintError,
    Constraints,
    key_signature_tonic,
)
from music_lm.generation.seeds import Header, _default_programs, _implied_key
from music_lm.generation.settings import GenerationError, Sampling, parse_temperature
from music_lm.midi.gm import GM_PROGRAMS, PITCH_CLASS_NAMES, name_to_pitch
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB

# ---- keys and pitch ranges ----

_TONIC = re.compile(r"^([A-Ga-g])([#b]?)$")
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_tonic(text: str) -> int:
    """'D' -> 2, 'F#' -> 6, 'Bb' -> 10."""
    match = _TONIC.match(text.strip())
    if not match:
        raise ConstraintError(f"not a tonic: {text!r} (expected a note name such as C, F# or Bb)")
    letter, accidental = match.groups()
    return (_LETTER_PC[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]) % 12


def parse_key(text: str) -> tuple[int, str]:
    """'D:minor' (or 'D minor', 'D') -> (tonic pitch class, scale name)."""
    parts = re.split(r"[:\s]+", text.strip())
    if not 1 <= len(parts) <= 2 or not parts[0]:
        raise ConstraintError(f"not a key: {text!r} (expected TONIC:SCALE, such as D:minor)")
    scale = parts[1].lower() if len(parts) == 2 else "major"
    if scale not in SCALES:
        raise ConstraintError(
            f"unknown scale {scale!r} in key {text!r} (scales: {', '.join(SCALES)})"
        )
    try:
        return parse_tonic(parts[0]), scale
    except ConstraintError:
        raise ConstraintError(
            f"not a key: {text!r} (the tonic must be a note name such as C, F# or Bb)"
        ) from None


def parse_range(text: str) -> tuple[int, int]:
    """'C3-C6' (or a MIDI number range '48-84') -> (lowest, highest) MIDI pitch."""
    match = re.match(r"^\s*([A-Ga-g][#b]?-?\d+|\d+)\s*(?:-|\.\.|:)\s*([A-Ga-g][#b]?-?\d+|\d+)\s*$",
                     text)  # fmt: skip
    if not match:
        raise ConstraintError(f"not a pitch range: {text!r} (expected LOW-HIGH, such as C3-C6)")
    try:
        low, high = (int(p) if p.isdigit() else name_to_pitch(_sharpen(p)) for p in match.groups())
    except (KeyError, ValueError):
        raise ConstraintError(
            f"not a pitch range: {text!r} (expected LOW-HIGH, such as C3-C6)"
        ) from None
    if not 0 <= low <= high <= 127:
        raise ConstraintError(
            f"pitch range {text!r} must go up within MIDI's 0..127, got {low}..{high}"
        )
    return low, high


def _sharpen(name: str) -> str:
    """'Bb3' -> 'A#3': the vocabulary spells pitches with sharps."""
    match = re.match(r"^([A-Ga-g])([#b]?)(-?\d+)$", name)
    if not match:
        raise ValueError(name)
    letter, accidental, octave = match.groups()
    pc = _LETTER_PC[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
    return f"{PITCH_CLASS_NAMES[pc % 12]}{int(octave) + (pc // 12 if pc >= 0 else -1)}"


# ---- instruments ----

# General MIDI's families of eight programs, by the names users say, and drums (-1).
INSTRUMENT_GROUPS: dict[str, tuple[int, ...]] = {
    "piano": tuple(range(0, 8)),
    "chromatic-percussion": tuple(range(8, 16)),
    "organ": tuple(range(16, 24)),
    "guitar": tuple(range(24, 32)),
    "bass": tuple(range(32, 40)),
    "strings": tuple(range(40, 56)),
    "brass": tuple(range(56, 64)),
    "reed": tuple(range(64, 72)),
    "pipe": tuple(range(72, 80)),
    "synth-lead": tuple(range(80, 88)),
    "synth-pad": tuple(range(88, 96)),
    "synth-effects": tuple(range(96, 104)),
    "ethnic": tuple(range(104, 112)),
    "percussive": tuple(range(112, 120)),
    "sound-effects": tuple(range(120, 128)),
    "drums": (-1,),
}
# The program a group name stands for when it declares a new track.
GROUP_DEFAULT_PROGRAM = {"piano": 0, "guitar": 24, "bass": 33, "strings": 48, "organ": 19,
                         "brass": 61, "reed": 65, "pipe": 73, "synth-lead": 80, "synth-pad": 88,
                         "drums": -1}  # fmt: skip


def parse_instrument(name: str) -> tuple[int, ...]:
    """A group ('piano', 'bass', 'drums') or a GM program name ('flute') -> programs."""
    key = name.strip().lower().replace(" ", "-").replace("_", "-")
    if key in INSTRUMENT_GROUPS:
        return INSTRUMENT_GROUPS[key]
    if key in GM_PROGRAMS:
        return (GM_PROGRAMS.index(key),)
    if key.isdigit() and 0 <= int(key) < 128:
        return (int(key),)
    raise ConstraintError(
        f"unknown instrument {name!r} (a group: {', '.join(INSTRUMENT_GROUPS)}; "
        "or a General MIDI name such as flute or acoustic-grand-piano)"
    )


def instrument_program(name: str) -> int:
    """The one program a name declares as a new track: a GM name, or a group's usual one."""
    key = name.strip().lower().replace(" ", "-").replace("_", "-")
    if key in GROUP_DEFAULT_PROGRAM:
        return GROUP_DEFAULT_PROGRAM[key]
    programs = parse_instrument(name)
    return programs[0]


def instrument_names(words: str | Sequence[str] | None) -> list[str]:
    """'piano,bass' (or a list of names) -> the names, blank ones left out."""
    if words is None:
        return []
    names = words.split(",") if isinstance(words, str) else list(words)
    return [n for n in names if n.strip()]


# ---- the options: Constraints, Sampling, mix weights, the header ----


def scale_option(
    key: str | None, scale: str | None, seed_key: tuple[int, str] | None = None
) -> tuple[int, str] | None:
    """The scale constraint of --key (TONIC:SCALE) and --scale (a scale on the key's tonic).
    A scale without a key is on the tonic of `seed_key`, the seed's (sharps, mode) where
    the caller knows it; else on SEED_KEY, which `generate` fills in from the seed."""
    chosen = parse_key(key) if key is not None else None
    if scale is None:
        return chosen
    if chosen is not None:
        tonic = chosen[0]
    else:
        tonic = SEED_KEY if seed_key is None else key_signature_tonic(seed_key)[0]
    return (tonic, scale.strip().lower())  # Constraints checks the name


def constraints_from_options(
    bars: int,
    key: str | None = None,
    scale: str | None = None,
    pitch_range: str | None = None,
    instrument_ranges: bool = True,
    max_polyphony: int | None = None,
    instruments: str | Sequence[str] | None = None,
    lock_tempo: bool = True,
    lock_meter: bool = True,
    lock_key: bool = True,
    seed_key: tuple[int, str] | None = None,
    unisons: bool = False,
    drum_keys: str = "gm",
    drum_length: str = "auto",
    hold_past_end: bool = False,
    loop_guard: int = LOOP_GUARD_TOKENS,
    chords: str | None = None,
    chords_from: str | Path | None = None,
    chord_strict: bool = False,
    chord_tracks: str | Sequence[str] | None = None,
) -> Constraints:
    """--bars, --key, --scale, --range, --instrument-ranges, --max-polyphony, --instruments
    (names, or words 'piano,bass'; none: all), the locks, and the decoding defaults
    --unisons, --drum-keys (gm|seed|any), --drum-length (auto|any|quarter notes such as
    1/4), --hold-past-end and --loop-guard (tokens; 0: off), and the chord lock: --chords
    (a chart, 'C|G Am F') or --chords-from (a file, one line per bar), --chord-strict and
    --chord-tracks (numbers or instrument names; none: every melodic track), as
    `Constraints`. A blank range or chart is none. `seed_key`: see `scale_option`."""
    scale_constraint = scale_option(key, scale, seed_key)
    names = instrument_names(instruments)
    programs = frozenset(p for n in names for p in parse_instrument(n)) if names else None
    blank = pitch_range is None or not pitch_range.strip()
    return Constraints(
        bars=bars,
        scale=scale_constraint,
        pitch_range=None if blank else parse_range(pitch_range),
        instrument_ranges=instrument_ranges,
        max_polyphony=max_polyphony,
        instruments=programs,
        lock_tempo=lock_tempo,
        lock_meter=lock_meter,
        lock_key=lock_key,
        unisons=unisons,
        drum_keys=drum_keys.strip().lower(),
        drum_steps=parse_drum_length(drum_length),
        hold_past_end=hold_past_end,
        loop_guard=loop_guard or None,
        chords=chord_lock(chords, chords_from, chord_strict),
        chord_tracks=chord_track_words(chord_tracks),
    )


def chord_track_words(
    words: str | Sequence[str] | None,
) -> tuple[tuple[str, frozenset[int] | None], ...] | None:
    """--chord-tracks '1,bass' -> (('1', None), ('bass', programs 32..39)): a track number,
    or an instrument and its programs (the seed's tracks are matched when it is read)."""
    names = [n.strip() for n in instrument_names(words)]
    if not names:
        return None
    return tuple((n, None if n.isdigit() else frozenset(parse_instrument(n))) for n in names)


def chord_lock(
    chords: str | None, chords_from: str | Path | None, strict: bool = False
) -> ChordLock | None:
    """--chords or --chords-from (not both) as a `ChordLock`; None when neither is given."""
    blank = chords is None or not chords.strip()
    if not blank and chords_from is not None:
        raise ConstraintError("give --chords or --chords-from, not both")
    if chords_from is not None:
        return ChordLock(read_chart(chords_from), strict)
    if blank:
        if strict:
            raise ConstraintError("--chord-strict needs --chords or --chords-from")
        return None
    return ChordLock(parse_chart(chords), strict)


def parse_drum_length(text: str) -> int | None:
    """--drum-length: 'auto' -> DRUM_STEPS_AUTO, 'any' -> None, '1/4' (quarter notes, up to
    4) -> grid steps (6)."""
    word = text.strip().lower()
    if word == "auto":
        return DRUM_STEPS_AUTO
    if word == "any":
        return None
    try:
        quarters = Fraction(word)
    except (ValueError, ZeroDivisionError):
        quarters = None
    steps = None if quarters is None else quarters * GRID_PER_QUARTER
    if steps is None or steps.denominator != 1 or not 1 <= steps <= 96:
        raise ConstraintError(
            f"--drum-length takes auto, any or a length in quarter notes on the grid "
            f"(1/24 .. 4, such as 1/4), got {text!r}"
        )
    return int(steps)


def sampling_from_options(
    temperature: str | tuple[float, float] = "1.0",
    top_k: int = 0,
    top_p: float = 0.95,
    min_p: float = 0.0,
) -> Sampling:
    """--temperature (T or FIRST:LAST, or the pair), --top-k, --top-p and --min-p."""
    ramp = parse_temperature(temperature) if isinstance(temperature, str) else tuple(temperature)
    return Sampling(ramp, top_k, top_p, min_p)


def parse_mix_weights(text: str | None) -> list[float] | None:
    """'0.2,0.8' -> [0.2, 0.8]; blank: none (equal weights)."""
    if text is None or not text.strip():
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise GenerationError(
            f"--mix-weights takes numbers such as 0.2,0.8, got {text!r}"
        ) from None


def parse_meter(text: str) -> tuple[int, int]:
    """'3/4' -> (3, 4)."""
    try:
        numerator, denominator = (int(x) for x in text.split("/"))
    except ValueError:
        raise GenerationError(f"--ts takes N/D such as 3/4, got {text!r}") from None
    return numerator, denominator


def parse_key_signature(text: str) -> tuple[int, str]:
    """A key signature as the vocabulary spells it, 'Cb:major' -> (sharps, mode) (-7, 'major')."""
    try:
        return VOCAB.values[VOCAB.ids[f"key:{text.strip()}"]]
    except KeyError:
        raise GenerationError(
            f"not a key signature: {text!r} (expected one such as C:major, Bb:major or F#:minor)"
        ) from None


def header_from_options(
    style: str | None = None,
    tempo_bpm: float | None = None,
    time_signature: tuple[int, int] | None = None,
    key: str | None = None,
    instruments: str | Sequence[str] | None = None,
    constraints: Constraints | None = None,
) -> Header:
    """The header of a piece made from nothing: --style (default none), --tempo (120),
    --ts (`parse_meter`'s pair; 4/4), the key signature (`parse_key_signature`'s words;
    default: the one the constraints' --key implies, or none) and the instruments, one
    track each (a GM name, or a group's usual program; default: a piano, or the first
    instrument the constraints allow)."""
    constraints = constraints if constraints is not None else Constraints()
    names = instrument_names(instruments)
    programs = tuple(instrument_program(n) for n in names) or _default_programs(constraints)
    signature = _implied_key(constraints) if key is None else parse_key_signature(key)
    return Header(style=style or "none", tempo_bpm=tempo_bpm or 120.0,
                  time_signature=time_signature or (4, 4), key=signature,
                  programs=programs)  # fmt: skip
