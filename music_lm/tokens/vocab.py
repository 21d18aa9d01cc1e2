"""The token vocabulary, written once as data.

Every token family is a list of (word, value) pairs. The token list, the ids, the
id range of each family and every value lookup are derived from these tables;
no id is hard-coded anywhere else. Pure Python: importing this loads no torch.

The families the grammar narrows down by value (positions, durations, velocities,
pitches, drums, tracks, tempi) are ordered by value, so "all positions after @1"
or "all pitches from C4 up" is one contiguous id range (the grammar and the
constrained sampler rely on that). Time signatures are ordered by denominator,
keys by mode then sharps, and instruments by program with drums last.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

# MIDI's own facts, which the families below are built from.
from music_lm.midi.gm import (
    GM_DRUMS,
    GM_PROGRAMS,
    MAJOR_KEYS,
    MAX_TRACKS,
    MINOR_KEYS,
    pitch_to_name,
)

# The musical grid: 24 steps per quarter note. 24 is the smallest grid that
# holds 32nd notes (3 steps), 16th-note triplets (4) and 32nd-note triplets (2);
# bench/grid.py measures what finer or coarser grids would keep on music21's
# corpus (see docs/token-format.md for the figures).
GRID_PER_QUARTER = 24

# Longest bar a time signature may describe, in quarter notes (12/4, 24/8, 6/2).
MAX_BAR_QUARTERS = 12
MAX_BAR_STEPS = MAX_BAR_QUARTERS * GRID_PER_QUARTER

# A duration is written as long parts, powers of two times 4 quarter notes in
# decreasing order (d:16+ d:4+ is 20 quarters), plus one short part of 1..96 steps
# (up to 4 quarter notes). Binary long parts reach 1,024 quarter notes with 8 tokens.
SHORT_DURATION_QUARTERS = 4
SHORT_DURATION_STEPS = SHORT_DURATION_QUARTERS * GRID_PER_QUARTER
LONG_DURATION_COUNT = 8  # d:4+ d:8+ ... d:512+
LONG_DURATION_STEPS = tuple(SHORT_DURATION_STEPS << k for k in range(LONG_DURATION_COUNT))
MAX_DURATION_STEPS = sum(LONG_DURATION_STEPS) + SHORT_DURATION_STEPS  # 1,024 quarter notes

TEMPO_MIN_BPM = 20.0
TEMPO_MAX_BPM = 400.0

VELOCITY_BINS = 32
NOTE_FAMILIES = ("pitch", "drum")  # one token per note: a pitch or a drum hit

STYLES: tuple[str, ...] = (
    "none",
    "bach",
    "handel",
    "palestrina",
    "monteverdi",
    "josquin",
    "haydn",
    "mozart",
    "beethoven",
    "schubert",
    "schumann",
    "chopin",
    "joplin",
    "folk-essen",
    "folk",
    "irish",
    "scottish",
    "american",
    "hymn",
    "chorale",
    "classical",
    "baroque",
    "renaissance",
    "romantic",
    "medieval",
    "modern",
    "jazz",
    "blues",
    "rock",
    "pop",
    "electronic",
    "hip-hop",
    "latin",
    "world",
    "user",
)

TIME_SIGNATURE_DENOMINATORS = (1, 2, 4, 8, 16, 32)
MAX_TIME_SIGNATURE_NUMERATOR = 32


# --- value <-> text helpers (pure functions, also used by docs and tests) ---


def steps_to_quarters_text(steps: int) -> str:
    """Grid steps -> a mixed number of quarter notes: 36 -> '1+1/2', 8 -> '1/3'."""
    whole, rest = divmod(steps, GRID_PER_QUARTER)
    if rest == 0:
        return str(whole)
    frac = Fraction(rest, GRID_PER_QUARTER)
    text = f"{frac.numerator}/{frac.denominator}"
    return f"{whole}+{text}" if whole else text


def key_token_name(tonic: str, mode: str) -> str:
    return f"key:{tonic}:{mode}"


def _tempo_values() -> list[float]:
    """Tempi from 20 to 400 BPM in readable steps (0.2 below 25, 0.25 below 50, 0.5
    below 100, then whole BPM). Each step is at most 1 % of its tempo, so the
    nearest token is within 0.5 % of any tempo, and round tempi are exact."""
    values: list[float] = []
    for start, stop, step in ((20, 25, 0.2), (25, 50, 0.25), (50, 100, 0.5), (100, 401, 1)):
        count = round((stop - start) / step)
        values += [round(start + i * step, 2) for i in range(count)]
    return values


def _tempo_word(bpm: float) -> str:
    return f"tempo:{bpm:g}"


def _velocity_values() -> list[int]:
    width = 128 // VELOCITY_BINS
    return [width * (i + 1) for i in range(VELOCITY_BINS - 1)] + [127]


# --- the families ---


@dataclass(frozen=True)
class Family:
    """One token family: a name and its (word, value) pairs, ordered by value."""

    name: str
    entries: tuple[tuple[str, object], ...]
    description: str


def _families() -> tuple[Family, ...]:
    positions = tuple((f"@{steps_to_quarters_text(s)}", s) for s in range(MAX_BAR_STEPS))
    short_durations = tuple(
        (f"d:{steps_to_quarters_text(s)}", s) for s in range(1, SHORT_DURATION_STEPS + 1)
    )
    long_durations = tuple(
        (f"d:{steps // GRID_PER_QUARTER}+", steps) for steps in LONG_DURATION_STEPS
    )
    time_signatures = tuple(
        (f"ts:{n}/{d}", (n, d))
        for d in TIME_SIGNATURE_DENOMINATORS
        for n in range(1, MAX_TIME_SIGNATURE_NUMERATOR + 1)
        if n * 4 <= MAX_BAR_QUARTERS * d
    )
    keys = tuple((key_token_name(t, "major"), (i - 7, "major")) for i, t in enumerate(MAJOR_KEYS))
    keys += tuple((key_token_name(t, "minor"), (i - 7, "minor")) for i, t in enumerate(MINOR_KEYS))
    drums = tuple((f"drum:{GM_DRUMS.get(p, p)}", p) for p in range(128))
    instruments = (*((f"inst:{g}", p) for p, g in enumerate(GM_PROGRAMS)), ("inst:drums", -1))
    return (
        Family("special", (("<pad>", None), ("<unk>", None)), "padding and unknown (never valid)"),
        Family("piece", (("piece", None),), "start of a piece"),
        Family("end", (("end", None),), "end of a piece"),
        Family("style", tuple((f"style:{s}", s) for s in STYLES), "style tag of the piece"),
        Family("inst", instruments, "instrument of a track: GM program or drums"),
        Family("bar", (("bar", None),), "start of a bar"),
        Family("ts", time_signatures, "time signature (at a bar start)"),
        Family("pos", positions, "onset position in the bar, in quarter notes"),
        Family("tempo", tuple((_tempo_word(b), b) for b in _tempo_values()), "tempo in BPM"),
        Family("key", keys, "key signature: (sharps, mode)"),
        Family("track", tuple((f"t{i}", i - 1) for i in range(1, MAX_TRACKS + 1)), "track"),
        Family("dur_long", long_durations, "long part of a duration, in grid steps"),
        Family("dur", short_durations, "duration, in grid steps"),
        Family("vel", tuple((f"v:{v}", v) for v in _velocity_values()), "velocity bin"),
        Family("pitch", tuple((pitch_to_name(p), p) for p in range(128)), "pitched note"),
        Family("drum", drums, "drum hit (GM percussion key)"),
        # Last, so that the ids before them are those of the vocabulary without them: a
        # model trained before they existed still reads every other id as it learnt it.
        Family(
            "fim",
            (("hole", None), ("fill", None)),
            "fill-in-the-middle: where the gap is, then where its bars begin",
        ),
    )


class Vocabulary:
    """The token list and everything derived from it (ids, ranges, values)."""

    def __init__(self, families: tuple[Family, ...]) -> None:
        self.tokens: list[str] = []
        self.values: list[object] = []
        self.family_of: list[str] = []
        self.ranges: dict[str, range] = {}
        for fam in families:
            start = len(self.tokens)
            for word, value in fam.entries:
                self.tokens.append(word)
                self.values.append(value)
                self.family_of.append(fam.name)
            self.ranges[fam.name] = range(start, len(self.tokens))
        self.ids: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise AssertionError("duplicate token in the vocabulary tables")
        # value -> id within a family, for the encoder
        self._by_value: dict[str, dict[object, int]] = {
            name: {self.values[i]: i for i in r} for name, r in self.ranges.items()
        }

    def __len__(self) -> int:
        return len(self.tokens)

    def id_of(self, family: str, value: object) -> int:
        """Token id of `value` in `family` (KeyError when the value has no token)."""
        return self._by_value[family][value]

    def word_of(self, family: str, value: object) -> str:
        return self.tokens[self.id_of(family, value)]

    @cached_property
    def sha256(self) -> str:
        """A hash of the token list: token ids mean the same only under the same hash."""

        return hashlib.sha256("\n".join(self.tokens).encode()).hexdigest()

    def sha256_of_first(self, count: int) -> str:
        """The hash of the first `count` tokens: that of an older vocabulary this one
        extends (families are only ever added at the end)."""
        return hashlib.sha256("\n".join(self.tokens[:count]).encode()).hexdigest()

    @cached_property
    def tempo_values(self) -> tuple[float, ...]:
        return tuple(self.values[i] for i in self.ranges["tempo"])  # type: ignore[misc]

    @cached_property
    def velocity_values(self) -> tuple[int, ...]:
        return tuple(self.values[i] for i in self.ranges["vel"])  # type: ignore[misc]

    @cached_property
    def time_signatures(self) -> frozenset[tuple[int, int]]:
        return frozenset(self.values[i] for i in self.ranges["ts"])  # type: ignore[misc]

    @cached_property
    def is_note(self) -> tuple[bool, ...]:
        """Whether each token id is a note (a pitch or a drum hit): what bits per note
        count."""
        return tuple(family in NOTE_FAMILIES for family in self.family_of)


VOCAB = Vocabulary(_families())


# --- quantisers onto the vocabulary's values ---


def nearest_tempo(bpm: float) -> float:
    """The tempo token value nearest to `bpm` in ratio (clamped to 20..400)."""
    values = VOCAB.tempo_values
    if bpm <= values[0]:
        return values[0]
    if bpm >= values[-1]:
        return values[-1]
    lo, hi = 0, len(values) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if values[mid] <= bpm:
            lo = mid
        else:
            hi = mid
    a, b = values[lo], values[hi]
    return a if bpm * bpm <= a * b else b  # compare in log space: bpm <= sqrt(a*b)


def nearest_velocity(velocity: int) -> int:
    """The velocity bin value nearest to `velocity` (0..127); ties go up."""
    return _VELOCITY_TABLE[velocity]


def _velocity_table() -> tuple[int, ...]:
    values = VOCAB.velocity_values
    return tuple(min(reversed(values), key=lambda v: abs(v - x)) for x in range(128))


_VELOCITY_TABLE = _velocity_table()


def split_duration(steps: int) -> tuple[tuple[int, ...], int]:
    """Duration in grid steps -> (long parts, largest first; short part), all in steps.

    The long parts add up to a multiple of 4 quarters written in binary, the short
    part is 1..96 steps: 96 -> ((), 96), 97 -> ((96,), 1), 480 -> ((384,), 96),
    481 -> ((384, 96), 1).
    """
    if not 1 <= steps <= MAX_DURATION_STEPS:
        raise ValueError(f"duration must be 1..{MAX_DURATION_STEPS} grid steps, got {steps}")
    units = (steps - 1) // SHORT_DURATION_STEPS  # whole 4-quarter units in the long part
    parts = tuple(
        LONG_DURATION_STEPS[k] for k in reversed(range(LONG_DURATION_COUNT)) if units >> k & 1
    )
    return parts, steps - units * SHORT_DURATION_STEPS


def bar_steps(numerator: int, denominator: int) -> int:
    """Length of a bar in grid steps: 4/4 -> 96, 6/8 -> 72."""
    return numerator * 4 * GRID_PER_QUARTER // denominator
