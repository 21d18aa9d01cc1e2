"""Musical constraints on a continuation, as factors of the grammar's allowed-token set.

Pure Python, no torch. `ContinuationState` walks the same `GrammarState` as the parser and,
at every step, narrows its allowed ranges by the constraints: a key or scale, a pitch range
per instrument, a maximum polyphony, the instruments that may play, exactly N new bars then
the end, no new tempo/meter/key, no empty bars, and a token budget. Each factor removes
only tokens that would break a constraint or strand the piece (leave no valid way to the
end within the budget), so sampling from what is left always ends in a valid piece that
keeps every constraint: they hold by construction, not by rejection.

The rules, per family, in the continuation (after the seed):

- the first token is `bar`; `bar` needs the current bar to be non-empty (a note starts in
  it or sounds into it) and fewer than N new bars begun; `end` needs N bars and a note in
  the last one;
- tempo / ts / key words only where unlocked;
- a track (its `tN` word, or its notes when it continues without one) only if the
  instruments allow it, it has a free voice under the polyphony limit, and in the last bar,
  at its last position, it leaves room for the tracks that have not played yet;
- durations only where some allowed pitch can still sound that long (a pitch may not end
  before a still-sounding note of the same pitch) and, under a polyphony limit, where the
  last bar keeps a free voice somewhere (else it could hold no onset, and `end` needs one);
- pitches only in the scale and the track's range, while the track has a free voice;
- with few tokens left, only tokens after which the shortest way to the end still fits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

from music_lm.errors import MusicLmError
from music_lm.midi.gm import GM_PROGRAMS, PITCH_CLASS_NAMES, name_to_pitch
from music_lm.midi.instruments import pitch_range
from music_lm.tokens.grammar import (
    AFTER_DUR,
    AFTER_DUR_LONG,
    AFTER_KEY,
    AFTER_NOTE,
    AFTER_POS,
    AFTER_TEMPO,
    AFTER_TRACK,
    AFTER_TS,
    AFTER_VEL,
    BAR,
    BAR_START,
    INST,
    KEY_OR_INST,
    GrammarState,
    Ranges,
)
from music_lm.tokens.vocab import LONG_DURATION_STEPS, SHORT_DURATION_STEPS, VOCAB, bar_steps

R = VOCAB.ranges
_FAM = VOCAB.family_of
_VAL = VOCAB.values
_PITCH0 = R["pitch"].start
_POS0 = R["pos"].start
_TRACK0 = R["track"].start
_LONG_BELOW = {v: sum(w for w in LONG_DURATION_STEPS if w < v) for v in LONG_DURATION_STEPS}


class ConstraintError(MusicLmError, ValueError):
    """Constraints that are malformed, contradict each other or the seed."""


# ---- scales, keys, ranges, instruments: parsing the user's words ----

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


def key_signature_tonic(key: tuple[int, str]) -> tuple[int, str]:
    """(sharps, mode) of a key token -> (tonic pitch class, scale name)."""
    sharps, mode = key
    tonic = (7 * sharps) % 12 if mode == "major" else (7 * sharps + 9) % 12
    return tonic, mode


def scale_pitch_classes(tonic: int, scale: str) -> frozenset[int]:
    if scale not in SCALES:
        raise ConstraintError(f"unknown scale {scale!r} (scales: {', '.join(SCALES)})")
    return frozenset((tonic + step) % 12 for step in SCALES[scale])


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


# ---- the constraints ----

SEED_KEY = -1  # as the tonic of `Constraints.scale`: the tonic of the seed's key


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


def _pitch_ranges(low: int, high: int, classes: frozenset[int] | None) -> Ranges:
    """Token id ranges of the pitches low..high whose class is in `classes`."""
    out: Ranges = []
    for pitch in range(low, high + 1):
        if classes is not None and pitch % 12 not in classes:
            continue
        token = _PITCH0 + pitch
        if out and out[-1][1] == token:
            out[-1] = (out[-1][0], token + 1)
        else:
            out.append((token, token + 1))
    return out


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


@dataclass
class _Track:
    program: int
    drums: bool
    allowed: bool
    pitch_ranges: Ranges = field(default_factory=list)  # melodic: allowed pitch token ids
    pitches: frozenset[int] = frozenset()  # the same, as MIDI pitches


class ContinuationState:
    """The grammar state of a piece being continued, narrowed by constraints.

    Made from the seed's token ids (a header, and whole bars); `allowed_ranges(left)` gives
    the ids that may come next with `left` tokens of budget left (this one included), and
    `advance(id)` takes one. `needed()` is the fewest tokens that can still end the piece.
    """

    # On the shortest way to the end, a new bar costs at most 6 tokens (bar @p tN d: v:
    # NOTE) and a track that must still play at most 5 (@p tN d: v: NOTE).
    BAR_COST = 6
    TRACK_COST = 5

    def __init__(self, seed_ids: Iterable[int], constraints: Constraints) -> None:
        self.grammar = GrammarState()
        # Per track: the end ticks of its notes that may still sound. (The grammar keeps
        # one end per pitch; polyphony counts doubled notes too.)
        self.voices: list[list[int]] = []
        seed_ids = list(seed_ids)
        for token in seed_ids:
            self.grammar.advance(token)
            self._track_voices(token)
        g = self.grammar
        if g.phase not in (AFTER_NOTE, BAR_START, AFTER_TS) and not (
            g.phase in (KEY_OR_INST, INST) and g.n_tracks  # a header alone
        ):
            raise ConstraintError(
                "the seed must be a header and whole bars, ending where a bar may begin"
            )
        self.constraints = c = constraints
        programs = self._programs(seed_ids)
        if not programs:
            raise ConstraintError("the seed declares no instruments")
        self.tracks: list[_Track] = []
        for program in programs:
            allowed = c.instruments is None or program in c.instruments
            track = _Track(program, program == -1, allowed)
            if not track.drums:
                low, high, classes = c.track_pitches(program)
                track.pitch_ranges = _pitch_ranges(low, high, classes)
                track.pitches = frozenset(
                    t - _PITCH0 for a, b in track.pitch_ranges for t in range(a, b)
                )
                need = (c.max_polyphony or 0) + 1
                if allowed and len(track.pitches) < need:
                    raise ConstraintError(
                        f"track {len(self.tracks) + 1} ({_program_name(program)}) has "
                        f"{len(track.pitches)} pitches in its range and scale; it needs at "
                        f"least {need}"
                    )
            self.tracks.append(track)
        if not any(t.allowed for t in self.tracks):
            raise ConstraintError("none of the seed's instruments is among the allowed instruments")
        for index, track in enumerate(self.tracks):
            if not track.allowed and not g.used_tracks >> index & 1:
                raise ConstraintError(
                    f"track {index + 1} ({_program_name(track.program)}) has not played in the "
                    "seed and is not among the allowed instruments; leave it out of the header"
                )
        self.bars_started = 0
        self.bar_has_note = False  # a note began in the current new bar
        self.first_new_bar_tick = g.bar_start + g.bar_length if g.bar_index else 0
        self.polyphony = c.max_polyphony
        if self.polyphony is not None and not any(
            self._free_at_final(j, self.final_end_tick()) for j in range(len(self.tracks))
        ):
            raise ConstraintError(
                "the seed's notes hold every voice of every allowed track through the last "
                f"new bar: no note could start in it under --max-polyphony {self.polyphony}"
            )

    @staticmethod
    def _programs(seed_ids: Iterable[int]) -> list[int]:
        ids = list(seed_ids)
        first_bar = ids.index(BAR) if BAR in ids else len(ids)
        return [_VAL[t] for t in ids[:first_bar] if _FAM[t] == "inst"]

    # ---- facts about the current moment ----

    @property
    def done(self) -> bool:
        return self.grammar.done

    def final_bar(self) -> bool:
        return self.bars_started == self.constraints.bars

    def final_end_tick(self, bar_length: int | None = None) -> int:
        """The tick where the last new bar ends, with the current meter kept."""
        g = self.grammar
        length = bar_steps(*g.ts) if bar_length is None else bar_length
        if self.bars_started == 0:
            return self.first_new_bar_tick + self.constraints.bars * length
        return g.bar_start + (self.constraints.bars - self.bars_started + 1) * length

    def unused_tracks(self) -> list[int]:
        g = self.grammar
        return [i for i in range(g.n_tracks) if not g.used_tracks >> i & 1]

    def _ends(self, track: int) -> list[int]:
        """End ticks of the track's notes sounding at the current onset, this onset's too."""
        now = self.grammar.onset_tick
        return [e for e in self.voices[track] if e > now]

    def _voice_free(self, track: int) -> bool:
        if self.polyphony is None or self.tracks[track].drums:
            return True
        return len(self._ends(track)) < self.polyphony

    def _saturation_ok(self, track: int, end: int) -> bool:
        """Whether a new note of `track` ending at `end` leaves some allowed track a free
        voice at the last tick of the last bar, so that the last bar can still get the
        onset that `end` needs. Once the last bar has begun, its first note is that onset."""
        if self.polyphony is None or self.tracks[track].drums or self.final_bar():
            return True
        final = self.final_end_tick()
        if end < final:
            return True
        return any(
            self._free_at_final(j, final, extra=int(j == track)) for j in range(len(self.tracks))
        )

    def _free_at_final(self, track: int, final: int, extra: int = 0) -> bool:
        """Whether `track` may play and keeps a free voice at the last tick before `final`."""
        info = self.tracks[track]
        if not info.allowed:
            return False
        if info.drums or self.polyphony is None:
            return True
        return sum(1 for e in self._ends(track) if e >= final) + extra < self.polyphony

    def _min_duration(self, track: int, at: int | None = None) -> int:
        """Shortest duration that leaves one of the track's allowed pitches playable, at
        the current onset or at a later tick `at` (as the notes sounding now leave it)."""
        g = self.grammar
        info = self.tracks[track]
        if info.drums and at is None:
            return g._min_duration(track)
        now = g.onset_tick if at is None else at
        if info.drums:
            return 1 if g.track_max_end[track] <= now else g._min_duration(track)
        if g.track_max_end[track] <= now and not g.onset_notes:
            return 1  # nothing of this track sounds
        ends = dict(g.track_ends[track])
        for t, p, e in g.onset_notes:
            if t == track and ends.get(p, -1) < e:
                ends[p] = e
        if sum(1 for e in ends.values() if e > now) < len(info.pitches):
            return 1  # some allowed pitch is silent
        lowest = None
        for pitch in info.pitches:
            end = ends.get(pitch, -1)
            if end <= now:
                return 1
            lowest = end if lowest is None else min(lowest, end)
        return max(1, lowest - now)

    def _track_playable(self, track: int) -> bool:
        """Whether `track` may start a note at the current onset (with the shortest
        duration that its pitches allow)."""
        info = self.tracks[track]
        if not info.allowed or not self._voice_free(track):
            return False
        return self._saturation_ok(track, self.grammar.onset_tick + self._min_duration(track))

    def _last_position(self) -> bool:
        g = self.grammar
        return g.pos == g.bar_length - 1

    def _order_ok(self, track: int) -> bool:
        """In the last bar at its last position, tracks that have not played yet can only
        come after `track` at this onset: no track above one of them may take the part."""
        if not (self.final_bar() and self._last_position()):
            return True
        unused = self.unused_tracks()
        return not unused or track <= min(unused)

    def _bar_content(self) -> bool:
        """A note begins in the current new bar, or one sounds into it."""
        if self.bar_has_note:
            return True
        g = self.grammar
        start = g.bar_start
        return any(e > start for ends in self.voices for e in ends)

    # ---- the shortest way to the end ----

    def needed(self) -> int:
        """Fewest tokens that end the piece from here, counted along one concrete way that
        keeps the constraints (so each token on it lowers the count by at least one)."""
        g = self.grammar
        phase = g.phase
        unused = len(self.unused_tracks())
        bars_left = self.constraints.bars - self.bars_started
        if self.bars_started == 0:
            # bar, then in it @p tN d: v: NOTE (or the tracks still to play), the other
            # bars, the end; the last bar's note may need more duration words
            extra = self._extra_duration_words(self.final_end_tick() - bar_steps(*g.ts))
            return (
                1 + max(unused, 1) * self.TRACK_COST + (bars_left - 1) * self.BAR_COST + 1 + extra
            )
        if phase in (BAR_START, AFTER_TS):
            held = self._bar_content() and not self.final_bar()
            content = 0 if unused or held else self.TRACK_COST
            if self.final_bar():
                extra = self._extra_duration_words(g.bar_start) if not unused else 0
            else:
                extra = self._extra_duration_words(self.final_end_tick() - bar_steps(*g.ts))
            return content + unused * self.TRACK_COST + bars_left * self.BAR_COST + 1 + extra
        group = self._group_cost(phase, unused)
        if group is None:
            return UNREACHABLE
        if phase in (AFTER_POS, AFTER_TEMPO, AFTER_KEY) and group and unused:
            unused -= 1  # the part the onset gets is a track still to play
        extra = 0
        if bars_left:
            extra = self._extra_duration_words(self.final_end_tick() - bar_steps(*g.ts))
        return group + unused * self.TRACK_COST + bars_left * self.BAR_COST + 1 + extra

    def _extra_duration_words(self, tick: int) -> int:
        """Duration words beyond the one that BAR_COST and TRACK_COST count, that a note
        starting at `tick` may need: when every allowed pitch of a track still sounds then,
        the new note must outlast one of them (a long duration is several words). The
        dearest allowed track, so that the count holds whichever track plays."""
        words = [self._duration_tokens(j, at=tick) for j, t in enumerate(self.tracks) if t.allowed]
        return max(max(words, default=1) - 1, 0)

    def _group_cost(self, phase, unused: int) -> int | None:
        g = self.grammar
        track = g._group_track()
        if phase is AFTER_NOTE:
            return 0
        if phase in (AFTER_POS, AFTER_TEMPO, AFTER_KEY):
            if phase is not AFTER_POS and self.bar_has_note:
                return 0
            if unused:
                return 4  # tN d: v: NOTE of a track still to play
            best = None
            for j in range(g.n_tracks):
                if not (self._track_playable(j) and self._order_ok(j)):
                    continue
                cost = (
                    (j != g.cur_track)
                    + self._new_duration_cost(j, g.durations[j])
                    + (g.velocities[j] is None)
                    + 1
                )
                best = cost if best is None else min(best, cost)
            return best
        if track is None:
            return None
        vel_missing = g.velocities[track] is None
        if phase is AFTER_TRACK:
            return self._new_duration_cost(track, g.durations[track]) + vel_missing + 1
        if phase is AFTER_DUR_LONG:
            later = not g.group_is_first
            return (
                self._duration_tokens(track, g.pending_long, g.last_long, later) + vel_missing + 1
            )
        if phase is AFTER_DUR:
            return vel_missing + 1
        if phase is AFTER_VEL:
            return 1
        return None

    def _new_duration_cost(self, track: int, current: int | None) -> int:
        """Tokens a first group of `track` spends on its duration: none if the current one
        will do, else a new one."""
        if self._duration_ok(track, current):
            return 0
        return self._duration_tokens(track)

    def _duration_tokens(
        self,
        track: int,
        pending: int = 0,
        below: int | None = None,
        later: bool = False,
        at: int | None = None,
    ) -> int:
        """Fewest duration words that finish a duration long enough for `track` here (or
        at tick `at`): long parts (largest first, each below the last) and one short part."""
        lowest = self._min_duration(track, at)
        if later:
            lowest = max(lowest, (self.grammar.durations[track] or 0) + 1)
        remaining = lowest - pending
        count = 1
        for value in reversed(LONG_DURATION_STEPS):
            if remaining <= SHORT_DURATION_STEPS:
                break
            if below is None or value < below:
                remaining -= value
                count += 1
        return count

    def _duration_ok(self, track: int, steps: int | None) -> bool:
        if steps is None:
            return False
        if steps < self._min_duration(track):
            return False
        return self._saturation_ok(track, self.grammar.onset_tick + steps)

    # ---- what may come next ----

    def allowed_ranges(self, left: int | None = None) -> Ranges:
        """Ids allowed next, with `left` tokens of budget left (None: no budget)."""
        ranges = self._constrained_ranges()
        if left is None or left - self.needed() >= self.BAR_COST + self.TRACK_COST:
            return ranges
        # Few tokens left: keep only tokens after which the end still fits.
        out: Ranges = []
        for lo, hi in ranges:
            for token in range(lo, hi):
                trial = self.copy()
                trial.advance(token)
                if trial.done or trial.needed() <= left - 1:
                    if out and out[-1][1] == token:
                        out[-1] = (out[-1][0], token + 1)
                    else:
                        out.append((token, token + 1))
        return out

    def _constrained_ranges(self) -> Ranges:
        g = self.grammar
        c = self.constraints
        if self.bars_started == 0:
            return [(BAR, BAR + 1)]
        out: Ranges = []
        group_track = g._group_track()
        continuing = g.phase in (AFTER_POS, AFTER_TEMPO, AFTER_KEY)
        cont_ok = None  # may the current track continue here without a tN word?
        for lo, hi in g.allowed_ranges():
            family = _FAM[lo]
            if family == "bar":
                if self.bars_started < c.bars and self._bar_content():
                    out.append((lo, hi))
            elif family == "end":
                if self.final_bar() and self.bar_has_note:
                    out.append((lo, hi))
            elif family == "tempo":
                if not c.lock_tempo:
                    out.append((lo, hi))
            elif family == "key":
                if not c.lock_key:
                    out.append((lo, hi))
            elif family == "ts":
                if not c.lock_meter:
                    out += self._meters_ok(lo, hi)
            elif family == "pos":
                out += self._positions(lo, hi)
            elif family == "track":
                for token in range(lo, hi):
                    track = token - _TRACK0
                    if self._track_playable(track) and self._order_ok(track):
                        _append(out, token)
            elif family in ("dur_long", "dur", "vel", "pitch", "drum"):
                track = group_track
                if track is None:
                    continue
                if continuing or g.phase is AFTER_TRACK:
                    if cont_ok is None:
                        cont_ok = self._track_playable(track) and self._order_ok(track)
                    if not cont_ok:
                        continue
                out += self._group_tokens(family, lo, hi, track)
        return out

    def _meters_ok(self, lo: int, hi: int) -> Ranges:
        if self.polyphony is None:
            return [(lo, hi)]
        out: Ranges = []
        for token in range(lo, hi):
            final = self.final_end_tick(bar_steps(*_VAL[token]))
            if any(self._free_at_final(j, final) for j in range(len(self.tracks))):
                _append(out, token)
        return out

    def _positions(self, lo: int, hi: int) -> Ranges:
        """Positions where some allowed track has a free voice (voices only free up as
        time goes on, so these are the positions from the earliest such tick on)."""
        earliest = None
        for j, track in enumerate(self.tracks):
            if not track.allowed:
                continue
            first = self._first_free_step(j)
            earliest = first if earliest is None else min(earliest, first)
        if earliest is None:
            return []
        start = max(lo, _POS0 + earliest)
        return [(start, hi)] if start < hi else []

    def _first_free_step(self, track: int) -> int:
        """The first position in this bar (grid steps from the bar line) where `track` has
        a free voice under the polyphony limit: the N-th latest end of its sounding notes.
        (Any pitch can start anywhere: one that still sounds only needs a longer note.)"""
        info = self.tracks[track]
        if self.polyphony is None or info.drums:
            return 0
        g = self.grammar
        start = g.bar_start
        ends = [e for e in self.voices[track] if e > start]
        if len(ends) < self.polyphony:
            return 0
        return max(sorted(ends, reverse=True)[self.polyphony - 1] - start, 0)

    def _group_tokens(self, family: str, lo: int, hi: int, track: int) -> Ranges:
        g = self.grammar
        info = self.tracks[track]
        now = g.onset_tick
        if family == "pitch":
            if not self._voice_free(track):
                return []
            dur = g.durations[track]
            if dur is None or not self._saturation_ok(track, now + dur):
                return []
            return _intersect([(lo, hi)], info.pitch_ranges)
        if family == "drum":
            return [(lo, hi)]
        if not self._voice_free(track):
            return []  # a new group of this part would have no note to play
        min_dur = self._min_duration(track)
        if family == "dur":
            long_steps = g.pending_long if g.phase is AFTER_DUR_LONG else 0
            out: Ranges = []
            for token in range(lo, hi):
                total = long_steps + _VAL[token]
                if total >= min_dur and self._saturation_ok(track, now + total):
                    _append(out, token)
            return out
        if family == "dur_long":
            long_steps = g.pending_long if g.phase is AFTER_DUR_LONG else 0
            # A later group of the onset must outlast the one before it (the grammar's rule).
            first = g.group_is_first if g.phase is AFTER_DUR_LONG else g._first_group()
            if not first:
                min_dur = max(min_dur, (g.durations[track] or 0) + 1)
            out = []
            for token in range(lo, hi):
                value = _VAL[token]
                # the totals this long part can still lead to: from it plus one step (or
                # the shortest total allowed) up to it plus every smaller long part plus the
                # longest short one
                reach = long_steps + value + _LONG_BELOW[value] + SHORT_DURATION_STEPS
                shortest = max(long_steps + value + 1, min_dur)
                if reach >= min_dur and self._saturation_ok(track, now + shortest):
                    _append(out, token)
            return out
        # vel: the group keeps the current duration unless it states one first
        if g.phase is AFTER_DUR:
            return [(lo, hi)]
        if self._duration_ok(track, g.durations[track]):
            return [(lo, hi)]
        return []

    # ---- taking a token ----

    def advance(self, token: int) -> None:
        """Take one token (the grammar's GrammarError if it breaks the grammar)."""
        self.grammar.advance(token)
        self._track_voices(token)
        family = _FAM[token]
        if family == "bar":
            self.bars_started += 1
            self.bar_has_note = False
        elif family in ("pitch", "drum") and self.bars_started:
            self.bar_has_note = True

    def _track_voices(self, token: int) -> None:
        family = _FAM[token]
        g = self.grammar
        if family in ("pitch", "drum"):
            track, _pitch, end = g.onset_notes[-1]
            self.voices[track].append(end)
        elif family in ("pos", "bar"):  # time moved on: forget the notes that ended
            now = g.onset_tick
            for ends in self.voices:
                if ends and min(ends) <= now:
                    ends[:] = [e for e in ends if e > now]
        elif family == "inst":
            self.voices.append([])

    def copy(self) -> ContinuationState:
        new = ContinuationState.__new__(ContinuationState)
        new.__dict__.update(self.__dict__)
        new.grammar = self.grammar.copy()
        new.voices = [list(ends) for ends in self.voices]
        return new


UNREACHABLE = 1 << 30


def _append(out: Ranges, token: int) -> None:
    if out and out[-1][1] == token:
        out[-1] = (out[-1][0], token + 1)
    else:
        out.append((token, token + 1))


def _program_name(program: int) -> str:
    return "drums" if program < 0 else GM_PROGRAMS[program]


__all__ = [
    "INSTRUMENT_GROUPS",
    "SCALES",
    "ConstraintError",
    "Constraints",
    "ContinuationState",
    "instrument_program",
    "key_signature_tonic",
    "parse_instrument",
    "parse_key",
    "parse_range",
    "parse_tonic",
    "scale_pitch_classes",
]
