"""Chord symbols and chord charts: 'F#m7b5' -> its pitch classes, 'C|G Am F' -> the chords of
each bar, and the lock that keeps pitched notes to them.

A chart gives one chord per bar, cycling; `|` splits a bar into equal parts ('C|G' is C for
the first half, G for the second). `ChordLock.classes_at` says which pitch classes a note of a
locked track may take at an onset: the chord's, or None (any) for an off-beat note when
passing notes are allowed. Pure Python, no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from music_lm.errors import InputError
from music_lm.midi.gm import PITCH_CLASS_NAMES
from music_lm.tokens.vocab import GRID_PER_QUARTER


class ChordError(InputError, ValueError):
    """A chord symbol or a chord chart that cannot be read; names the symbol."""


_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ROOT = r"([A-G])(#|b)?"
_SYMBOL = re.compile(rf"^{_ROOT}(.*?)(?:/{_ROOT})?$")

# Semitones above the root, per quality as lead sheets write it. The spellings of one
# quality (m, min, -) share its intervals.
_TRIADS = {"": (0, 4, 7), "m": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8),
           "sus2": (0, 2, 7), "sus4": (0, 5, 7), "5": (0, 7)}  # fmt: skip
_QUALITIES: dict[str, tuple[int, ...]] = {
    **_TRIADS,
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "mmaj7": (0, 3, 7, 11),
    "dim7": (0, 3, 6, 9),
    "m7b5": (0, 3, 6, 10),
    "aug7": (0, 4, 8, 10),
    "7sus4": (0, 5, 7, 10),
    "9": (0, 4, 7, 10, 2),
    "maj9": (0, 4, 7, 11, 2),
    "m9": (0, 3, 7, 10, 2),
    "add9": (0, 4, 7, 2),
    "madd9": (0, 3, 7, 2),
    "7b9": (0, 4, 7, 10, 1),
    "7#9": (0, 4, 7, 10, 3),
    "11": (0, 4, 7, 10, 2, 5),
    "m11": (0, 3, 7, 10, 2, 5),
    "13": (0, 4, 7, 10, 2, 9),
}
# Other spellings -> the names above.
_ALIASES = {"M": "", "maj": "", "min": "m", "-": "m", "o": "dim", "+": "aug", "sus": "sus4",
            "M7": "maj7", "Δ": "maj7", "Δ7": "maj7", "min7": "m7", "-7": "m7", "o7": "dim7",
            "ø": "m7b5", "ø7": "m7b5", "-7b5": "m7b5", "+7": "aug7", "7+": "aug7",
            "mM7": "mmaj7", "m(maj7)": "mmaj7", "min6": "m6", "-6": "m6", "min9": "m9",
            "M9": "maj9", "sus47": "7sus4", "7sus": "7sus4", "2": "add9"}  # fmt: skip


@dataclass(frozen=True)
class Chord:
    """A chord symbol as written and the pitch classes it names (0 = C)."""

    symbol: str
    pitch_classes: frozenset[int]

    def names(self) -> str:
        """'C E G' for C: its pitch classes by name, from C up."""
        return " ".join(PITCH_CLASS_NAMES[pc] for pc in sorted(self.pitch_classes))


def _pitch_class(letter: str, accidental: str | None) -> int:
    return (_LETTER_PC[letter] + {"#": 1, "b": -1, None: 0}[accidental]) % 12


def parse_chord(symbol: str) -> Chord:
    """'C', 'Cm', 'C7', 'Cmaj7', 'Cm7', 'Cdim', 'Caug', 'Csus4', 'C/E', 'F#m7b5', 'Bb' -> a
    Chord. A slash chord adds its bass note. ChordError names a symbol it cannot read."""
    text = symbol.strip()
    match = _SYMBOL.match(text)
    quality = None
    if match:
        letter, accidental, suffix, bass_letter, bass_accidental = match.groups()
        quality = _QUALITIES.get(_ALIASES.get(suffix, suffix))
    if quality is None:
        raise ChordError(
            f"not a chord: {symbol!r} (expected a root A-G with an optional # or b, a quality "
            "such as m, 7, maj7, m7, dim, aug, sus4 or m7b5, and an optional /BASS, e.g. C/E)"
        )
    root = _pitch_class(letter, accidental)
    classes = {(root + step) % 12 for step in quality}
    if bass_letter is not None:
        classes.add(_pitch_class(bass_letter, bass_accidental))
    return Chord(text, frozenset(classes))


@dataclass(frozen=True)
class ChordChart:
    """The chords of each bar, in order: one chord, or several splitting the bar evenly.
    Bar k of the music takes chart bar k mod len(bars)."""

    bars: tuple[tuple[Chord, ...], ...]

    def __post_init__(self) -> None:
        if not self.bars or not all(self.bars):
            raise ChordError("the chord chart is empty: give at least one chord")

    def text(self) -> str:
        """The chart as --chords takes it: 'C|G Am F'."""
        return " ".join("|".join(c.symbol for c in bar) for bar in self.bars)

    def chord_at(self, bar: int, position_steps: int, bar_steps: int) -> Chord:
        """The chord at `position_steps` into bar number `bar` (0 = the chart's first bar),
        a bar `bar_steps` long."""
        chords = self.bars[bar % len(self.bars)]
        part = position_steps * len(chords) // max(bar_steps, 1)
        return chords[min(part, len(chords) - 1)]


def _bar_of(words: str, where: str) -> tuple[Chord, ...]:
    parts = words.split("|")
    if any(not p.strip() for p in parts):
        raise ChordError(f"{where}: an empty chord around '|' in {words!r}")
    return tuple(parse_chord(p) for p in parts)


def parse_chart(text: str) -> ChordChart:
    """--chords: 'C G Am F' (one chord per bar), 'C|G Am' (| splits a bar into halves)."""
    words = text.replace(" | ", "|").replace("| ", "|").replace(" |", "|").split()
    return ChordChart(tuple(_bar_of(word, "--chords") for word in words))


def read_chart(path: str | Path) -> ChordChart:
    """--chords-from: a text file with one line per bar (chords on a line, split by spaces or
    '|', share the bar evenly); blank lines and lines from '#' on are left out. ChordError
    names the file and the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ChordError(f"{path}: cannot read the chord chart ({err})") from None
    bars = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].replace("|", " ").split()
        if not words:
            continue
        try:
            bars.append(tuple(parse_chord(w) for w in words))
        except ChordError as err:
            raise ChordError(f"{path}:{number}: {err}") from None
    if not bars:
        raise ChordError(f"{path}: the chord chart is empty: give one line of chords per bar")
    return ChordChart(tuple(bars))


def beat_steps(time_signature: tuple[int, int]) -> int:
    """Grid steps of one beat: the denominator's note (a quarter in 4/4, a half in 2/2), or
    three of them in a compound meter (a dotted quarter in 6/8 and 12/8)."""
    numerator, denominator = time_signature
    unit = 4 * GRID_PER_QUARTER // denominator
    compound = denominator >= 8 and numerator > 3 and numerator % 3 == 0
    return 3 * unit if compound else unit


@dataclass(frozen=True)
class ChordLock:
    """What a chord chart allows: the chart, and whether off-beat notes may pass outside it
    (False: `strict`, chord tones only)."""

    chart: ChordChart
    strict: bool = False

    def classes_at(
        self, bar: int, position_steps: int, bar_steps: int, time_signature: tuple[int, int]
    ) -> frozenset[int] | None:
        """The pitch classes a locked note may take at this onset of bar number `bar` (0 =
        the chart's first bar); None: any (an off-beat passing note)."""
        if not self.strict and position_steps % beat_steps(time_signature):
            return None
        return self.chart.chord_at(bar, position_steps, bar_steps).pitch_classes


__all__ = [
    "Chord",
    "ChordChart",
    "ChordError",
    "ChordLock",
    "beat_steps",
    "parse_chart",
    "parse_chord",
    "read_chart",
]
