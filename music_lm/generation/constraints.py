"""What a continuation must keep: the `Constraints`, their error, and the scales they name.

Pure Python, no torch. `generation/options.py` turns the user's words into these;
`generation/state.py` keeps them token by token while decoding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from music_lm.errors import MusicLmError
from music_lm.generation.chords import ChordLock
from music_lm.midi.gm import GM_DRUMS, GM_PROGRAMS, PITCH_CLASS_NAMES
from music_lm.midi.instruments import pitch_range
from music_lm.tokens.vocab import VOCAB

_PITCH0 = VOCAB.ranges["pitch"].start


class ConstraintError(MusicLmError, ValueError):
    """Constraints that are malformed, contradict each other or the seed."""


# ---- scales and keys ----

# Semitones above the tonic.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic-minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic-minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "pentatonic-major": (0, 2, 4, 7, 9),
    "pentatonic-minor": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "whole-tone": (0, 2, 4, 6, 8, 10),
    "chromatic": tuple(range(12)),
}


def key_signature_tonic(key: tuple[int, str]) -> tuple[int, str]:
    """(sharps, mode) of a key token -> (tonic pitch class, scale name)."""
    sharps, mode = key
    tonic = (7 * sharps) % 12 if mode == "major" else (7 * sharps + 9) % 12
    return tonic, mode


def scale_pitch_classes(tonic: int, scale: str) -> frozenset[int]:
    if scale not in SCALES:
        raise ConstraintError(f"unknown scale {scale!r} (scales: {', '.join(SCALES)})")
    return frozenset((tonic + step) % 12 for step in SCALES[scale])


# ---- the constraints ----

SEED_KEY = -1  # as the tonic of `Constraints.scale`: the tonic of the seed's key

# The keys drum notes may take: General MIDI's percussion map (35..81), the keys the seed's
# drum tracks play (the GM map when the seed has no drum notes), or any of the 128.
DRUM_KEY_CHOICES = ("gm", "seed", "any")
GM_KIT: frozenset[int] = frozenset(GM_DRUMS)
DRUM_STEPS_AUTO = 0  # as `Constraints.drum_steps`: the seed's usual short drum duration
LOOP_GUARD_TOKENS = 32  # the default `Constraints.loop_guard`


@dataclass(frozen=True)
class Constraints:
    """What a continuation must keep. Saved as JSON beside every output.

    bars: exactly this many new bars, then the end.
    scale: (tonic pitch class, scale name), or None: any pitch. Drums are exempt. A tonic
        of SEED_KEY stands for the seed's key (C without one): `with_seed_key` fills it in.
    pitch_range: (lowest, highest) MIDI pitch for every melodic track; None: each
        instrument's playable range when `instrument_ranges`, else the whole MIDI range.
    max_polyphony: at most this many notes sounding at once on a melodic track.
    instruments: GM programs (-1 for drums) whose tracks may play; None: all of them.
    lock_tempo / lock_meter / lock_key: no tempo / time-signature / key change.

    The decoding defaults that keep band MIDI sane (each can be turned off):
    unisons: True lets a track start one pitch twice at one onset (a doubled note); by
        default a track's pitches at one onset strictly rise.
    drum_keys: "gm" (General MIDI's kit, keys 35..81), "seed" (the keys the seed's drum
        tracks play; the GM kit when they play none) or "any".
    drum_steps: every new drum note lasts this many grid steps; DRUM_STEPS_AUTO: the
        seed's most common drum duration when it is short, else a 16th; None: any.
    hold_past_end: True lets new notes ring past the end of the last new bar.
    loop_guard: no token may make a run of repeated tokens (the same block of 1..8 tokens
        over and over) longer than this many tokens; None: off.
    chords: a chord lock (generation/chords.py): the pitched notes of `chord_tracks` keep
        to the chord of the chart at their onset (off-beat passing notes aside unless
        strict); the chart's first bar is the first new bar. None: off.
    chord_tracks: the tracks the chords lock, as (word, programs) pairs: a track number as
        in the token text ('1' is t1, programs None) or an instrument name and the programs
        it stands for; None: every melodic track.
    """

    bars: int = 8
    scale: tuple[int, str] | None = None
    pitch_range: tuple[int, int] | None = None
    instrument_ranges: bool = True
    max_polyphony: int | None = None
    instruments: frozenset[int] | None = None
    lock_tempo: bool = True
    lock_meter: bool = True
    lock_key: bool = True
    unisons: bool = False
    drum_keys: str = "gm"
    drum_steps: int | None = DRUM_STEPS_AUTO
    hold_past_end: bool = False
    loop_guard: int | None = LOOP_GUARD_TOKENS
    chords: ChordLock | None = None
    chord_tracks: tuple[tuple[str, frozenset[int] | None], ...] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.bars <= 1024:
            raise ConstraintError(f"--bars must be in 1..1024, got {self.bars}")
        if self.max_polyphony is not None and not 1 <= self.max_polyphony <= 64:
            raise ConstraintError(f"--max-polyphony must be in 1..64, got {self.max_polyphony}")
        if self.scale is not None:
            scale_pitch_classes(max(self.scale[0], 0), self.scale[1])  # checks the name
        if self.pitch_range is not None:
            low, high = self.pitch_range
            if not 0 <= low <= high <= 127:
                raise ConstraintError(f"pitch range must go up within 0..127, got {low}..{high}")
        if self.instruments is not None and not self.instruments:
            raise ConstraintError("the instrument list is empty")
        if self.drum_keys not in DRUM_KEY_CHOICES:
            raise ConstraintError(
                f"--drum-keys must be one of {', '.join(DRUM_KEY_CHOICES)}, got {self.drum_keys!r}"
            )
        if self.drum_steps is not None and not 0 <= self.drum_steps <= 96:
            raise ConstraintError(
                f"--drum-length must be auto, any or at most 4 quarter notes, got "
                f"{self.drum_steps} grid steps"
            )
        if self.loop_guard is not None and not 2 <= self.loop_guard <= 4096:
            raise ConstraintError(
                f"--loop-guard must be 0 (off) or in 2..4096 tokens, got {self.loop_guard}"
            )

    def to_json(self) -> dict:
        out = asdict(self)
        if self.scale is not None:
            out["scale"] = f"{PITCH_CLASS_NAMES[self.scale[0]]}:{self.scale[1]}"
        if self.pitch_range is not None:
            out["pitch_range"] = [VOCAB.tokens[_PITCH0 + p] for p in self.pitch_range]
        if self.instruments is not None:
            out["instruments"] = sorted(
                "drums" if p < 0 else GM_PROGRAMS[p] for p in self.instruments
            )
        if self.chords is not None:
            out["chords"] = {"chart": self.chords.chart.text(), "strict": self.chords.strict}
        if self.chord_tracks is not None:
            out["chord_tracks"] = [word for word, _programs in self.chord_tracks]
        return out

    def with_seed_key(self, key: tuple[int, str] | None) -> Constraints:
        """These constraints with a SEED_KEY tonic replaced by the tonic of `key`."""
        if self.scale is None or self.scale[0] != SEED_KEY:
            return self
        tonic = 0 if key is None else key_signature_tonic(key)[0]
        return replace(self, scale=(tonic, self.scale[1]))

    def track_pitches(self, program: int) -> tuple[int, int, frozenset[int] | None]:
        """(lowest, highest, pitch classes or None) a melodic track of `program` may play."""
        if self.pitch_range is not None:
            low, high = self.pitch_range
        elif self.instrument_ranges:
            low, high = pitch_range(program)
        else:
            low, high = 0, 127
        classes = None if self.scale is None else scale_pitch_classes(*self.scale)
        return low, high, classes


__all__ = [
    "DRUM_KEY_CHOICES",
    "DRUM_STEPS_AUTO",
    "GM_KIT",
    "LOOP_GUARD_TOKENS",
    "SCALES",
    "SEED_KEY",
    "ConstraintError",
    "Constraints",
    "key_signature_tonic",
    "scale_pitch_classes",
]
