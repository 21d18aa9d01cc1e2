"""The one grammar of the token text: a small automaton with a few counters.

The same `GrammarState` validates and parses text (`parse`), and tells which
tokens may come next (`allowed_ranges`), which the constrained sampler turns
into masks. Only the canonical form of a piece is grammatical, so for every
valid text T, encode(decode(T)) == T.

    piece   = "piece" STYLE TEMPO TS [KEY] INST* bar* "end"
    bar     = "bar" [TS] onset*
    onset   = POS [TEMPO] [KEY] part*          (at least one of TEMPO, KEY, part)
    part    = [TRACK] group+
    group   = [DUR_LONG* DUR] [VEL] note+           (long parts in decreasing order)
    note    = PITCH | DRUM                     (by the track's kind)

The counters and rules (see docs/token-format.md for examples):

- TS appears only when the meter changes, never in the first bar; positions are
  strictly increasing and inside the bar under the current time signature.
- TEMPO and KEY appear only when they change, never at @0 of the first bar
  (the header holds the values at the start).
- Within a bar, the current track and each track's duration and velocity carry
  over; at each bar line they are forgotten. A TRACK/DUR/VEL token is written
  only when its value changes, so a chord costs one token per extra pitch.
- In an onset, parts come in ascending track order; in a part, groups come in
  ascending (duration, velocity) order; in a group, pitches are non-decreasing
  (a repeated pitch is a doubled note).
- A note may not end before a note of the same pitch and track that began at
  an earlier onset and still sounds: MIDI cannot tell such a nested note from
  two overlapping ones, and readers pair them first-in first-out.
- Every declared track plays at least once; "end" follows a bar with content.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import IntEnum

from music_lm.errors import InputError
from music_lm.midi.gm import MAX_MELODIC_TRACKS, MAX_TRACKS
from music_lm.tokens.vocab import (
    LONG_DURATION_STEPS,
    MAX_DURATION_STEPS,
    SHORT_DURATION_STEPS,
    VOCAB,
    bar_steps,
)

R = VOCAB.ranges
_ID = VOCAB.ids
_VAL = VOCAB.values
_FAM = VOCAB.family_of
PIECE, END, BAR = _ID["piece"], _ID["end"], _ID["bar"]


class GrammarError(InputError, ValueError):
    """Token text that breaks the grammar. Names the token, its index and what was expected."""

    def __init__(self, message: str, index: int | None = None, token: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.token = token


class Phase(IntEnum):
    START = 0  # expect "piece"
    STYLE = 1
    TEMPO = 2
    TS = 3
    KEY_OR_INST = 4  # after the header's TS: optional KEY, then INST*
    INST = 5
    BAR_START = 6  # just after "bar"
    AFTER_TS = 7  # after a TS in the body
    AFTER_POS = 8
    AFTER_TEMPO = 9
    AFTER_KEY = 10
    AFTER_TRACK = 11
    AFTER_DUR_LONG = 12
    AFTER_DUR = 13
    AFTER_VEL = 14
    AFTER_NOTE = 15
    DONE = 16


# The phases as module constants: comparing with `is` against a global is faster than
# looking up the enum's attribute, and this is the decoder's hot path.
(
    START, STYLE, TEMPO, TS, KEY_OR_INST, INST, BAR_START, AFTER_TS, AFTER_POS, AFTER_TEMPO,
    AFTER_KEY, AFTER_TRACK, AFTER_DUR_LONG, AFTER_DUR, AFTER_VEL, AFTER_NOTE, DONE,
) = tuple(Phase)  # fmt: skip
_CONTINUING_PHASES = frozenset((AFTER_POS, AFTER_TEMPO, AFTER_KEY))
_PITCH_START, _PITCH_STOP = R["pitch"].start, R["pitch"].stop
_DRUM_START, _DRUM_STOP = R["drum"].start, R["drum"].stop
_POS_START = R["pos"].start
_TRACK_START = R["track"].start
# For each long duration part: the sum of all smaller ones (what can still follow it).
_LONG_SUM_BELOW = {v: sum(w for w in LONG_DURATION_STEPS if w < v) for v in LONG_DURATION_STEPS}

Ranges = list[tuple[int, int]]  # half-open id ranges [lo, hi)


def _family_excluding(family: str, excluded_id: int | None) -> Ranges:
    r = R[family]
    if excluded_id is None:
        return [(r.start, r.stop)]
    return [(lo, hi) for lo, hi in ((r.start, excluded_id), (excluded_id + 1, r.stop)) if lo < hi]


def _family_above(family: str, floor_id: int | None) -> Ranges:
    """Ids of `family` strictly above `floor_id` (all of them when None)."""
    r = R[family]
    lo = r.start if floor_id is None else floor_id + 1
    return [(lo, r.stop)] if lo < r.stop else []


class GrammarState:
    """Where a parse stands: the phase plus the counters the rules need.

    Also the decoder's view of time: `onset_tick` is the absolute grid tick of
    the current onset, and each track's current duration and velocity are kept,
    so a parser can turn every note token into a note.
    """

    __slots__ = (
        "bar_index",
        "bar_length",
        "bar_start",
        "cur_track",
        "durations",
        "group_is_first",
        "key",
        "last_long",
        "last_pitch_id",
        "onset_notes",
        "onset_tick",
        "part_track",
        "pending_long",
        "phase",
        "pos",
        "tempo",
        "track_ends",
        "track_is_drum",
        "track_max_end",
        "ts",
        "used_tracks",
        "velocities",
    )

    def __init__(self) -> None:
        self.phase = START
        self.track_is_drum: list[bool] = []
        self.used_tracks = 0  # bit mask
        self.tempo: float | None = None
        self.ts: tuple[int, int] = (4, 4)
        self.key: tuple[int, str] | None = None
        self.bar_index = 0  # bars begun so far
        # Times are in grid steps (1/24 of a quarter note), absolute or from the bar line.
        self.bar_start = 0  # grid step where the current bar starts
        self.bar_length = 0  # in grid steps, under the current time signature
        self.pos = -1  # grid steps from the bar start of the current onset
        self.onset_tick = 0  # absolute grid tick of the current onset (the bar start before one)
        self.cur_track: int | None = None
        self.durations: list[int | None] = []  # per track, within this bar
        self.velocities: list[int | None] = []
        self.part_track: int | None = None  # track of the current part of this onset
        self.group_is_first = True
        self.last_pitch_id: int | None = None
        self.pending_long = 0  # long parts of the duration being read, in steps
        self.last_long = 0  # the last long part read (the next must be smaller)
        # Per track: pitch -> latest end tick of its notes from earlier onsets (ended
        # ones are forgotten now and then: they never constrain a later note).
        self.track_ends: list[dict[int, int]] = []
        self.track_max_end: list[int] = []
        self.onset_notes: list[tuple[int, int, int]] = []  # (track, pitch, end) at this onset

    def copy(self) -> GrammarState:
        new = GrammarState.__new__(GrammarState)
        for name in self.__slots__:
            setattr(new, name, getattr(self, name))
        new.track_is_drum = list(self.track_is_drum)
        new.durations = list(self.durations)
        new.velocities = list(self.velocities)
        new.track_ends = [dict(ends) for ends in self.track_ends]
        new.track_max_end = list(self.track_max_end)
        new.onset_notes = list(self.onset_notes)
        return new

    @property
    def done(self) -> bool:
        return self.phase is DONE

    @property
    def n_tracks(self) -> int:
        return len(self.track_is_drum)

    # ---- what may come next: the succession table, then one rule per family ----

    def allowed_ranges(self) -> Ranges:
        """Half-open id ranges of the tokens allowed next (empty once done)."""
        out: Ranges = []
        for family in SUCCESSIONS[self.phase]:
            out += _RULES[family](self)
        return out

    def is_allowed(self, token_id: int) -> bool:
        family = _FAM_INDEX[token_id]
        if not _FAMILY_ALLOWED[self.phase][family]:
            return False
        if family in _NOTE_FAMILIES:
            return self._note_allowed(token_id, family == _DRUM_FAMILY, _FAMILY_STARTS[family])
        for lo, hi in _RULE_LIST[family](self):  # noqa: SIM110 (a plain loop is faster here)
            if lo <= token_id < hi:
                return True
        return False

    def _group_track(self) -> int | None:
        """The track a DUR/VEL/note would belong to: the part's, or the current one
        when the onset continues the current track without a TRACK token."""
        if self.phase in _CONTINUING_PHASES:
            return self.cur_track
        return self.part_track

    def _first_group(self) -> bool:
        return self.phase is not AFTER_NOTE

    def _rule_whole(self, family: str) -> Ranges:
        r = R[family]
        return [(r.start, r.stop)]

    def _rule_tempo(self) -> Ranges:
        if self.phase is TEMPO:
            return self._rule_whole("tempo")
        if self.bar_index == 1 and self.pos == 0:
            return []  # the header holds the tempo at the start
        return _family_excluding("tempo", VOCAB.id_of("tempo", self.tempo))

    def _rule_ts(self) -> Ranges:
        if self.phase is TS:
            return self._rule_whole("ts")
        if self.bar_index <= 1:
            return []  # the header holds the meter of the first bar
        return _family_excluding("ts", VOCAB.id_of("ts", self.ts))

    def _rule_key(self) -> Ranges:
        if self.phase is KEY_OR_INST:
            return self._rule_whole("key")
        if self.bar_index == 1 and self.pos == 0:
            return []
        return _family_excluding("key", None if self.key is None else VOCAB.id_of("key", self.key))

    def _rule_inst(self) -> Ranges:
        n = self.n_tracks
        if n >= MAX_TRACKS:
            return []
        r = R["inst"]
        if n - sum(self.track_is_drum) >= MAX_MELODIC_TRACKS:
            return [(r.stop - 1, r.stop)]  # inst:drums only
        return [(r.start, r.stop)]

    def _rule_end(self) -> Ranges:
        if self.used_tracks == (1 << len(self.track_is_drum)) - 1:
            return [(END, END + 1)]
        return []

    def _rule_pos(self) -> Ranges:
        r = R["pos"]
        lo, hi = r.start + self.pos + 1, r.start + self.bar_length
        if self.n_tracks == 0 and self.bar_index == 1 and self.pos < 0:
            lo += 1  # without tracks, @0 of the first bar could hold nothing
        return [(lo, hi)] if lo < hi else []

    def _min_duration(self, track: int) -> int:
        """Shortest duration that leaves some pitch of `track` playable at this onset.

        A note may not end before a still-sounding same-pitch note from an earlier
        onset; only when every pitch is sounding does that bound the duration.
        """
        if len(self.track_ends[track]) < 128 or len(self._forget_ended(track)) < 128:
            return 1
        return max(1, min(self.track_ends[track].values()) - self.onset_tick)

    def _rule_track(self) -> Ranges:
        t0, n = _TRACK_START, len(self.track_is_drum)
        after_note = self.phase is AFTER_NOTE
        if n and max(map(len, self.track_ends)) < 128:  # common case: every track can play
            if after_note:  # the next part: a later track
                lo = t0 + self.part_track + 1
                return [(lo, t0 + n)] if lo < t0 + n else []
            cur = self.cur_track  # the first part: any track but the current one
            if cur is None:
                return [(t0, t0 + n)]
            return [(a, b) for a, b in ((t0, t0 + cur), (t0 + cur + 1, t0 + n)) if a < b]
        if after_note:
            candidates = range(self.part_track + 1, n)
        else:
            candidates = (t for t in range(n) if t != self.cur_track)
        out: Ranges = []
        for track in candidates:
            if self._min_duration(track) > MAX_DURATION_STEPS:
                continue  # every pitch sounds past the longest duration
            if out and out[-1][1] == t0 + track:
                out[-1] = (out[-1][0], t0 + track + 1)
            else:
                out.append((t0 + track, t0 + track + 1))
        return out

    def _rule_dur_long(self) -> Ranges:
        track = self._group_track()
        if track is None:
            return []
        if self.phase is AFTER_DUR_LONG:  # a further long part: a smaller one
            first, pending, below = self.group_is_first, self.pending_long, self.last_long
        else:
            first, pending, below = self.phase is not AFTER_NOTE, 0, MAX_DURATION_STEPS
        dur = self.durations[track]
        # The total must leave a pitch playable and, in a later group, exceed the
        # duration of the group before; in a first group it must differ from the
        # current duration (that one needs no token). Offer a long part only if some
        # total that follows the rules can still be completed after it.
        floor = self._min_duration(track)
        if not first:
            floor = max(floor, dur + 1)
        excluded = dur if first else None
        out: Ranges = []
        for long_id in R["dur_long"]:
            value = _VAL[long_id]
            if value >= below:
                break
            lowest = max(pending + value + 1, floor)
            reach = pending + value + _LONG_SUM_BELOW[value] + SHORT_DURATION_STEPS
            if lowest > reach or lowest == reach == excluded:
                continue
            if out and out[-1][1] == long_id:
                out[-1] = (out[-1][0], long_id + 1)
            else:
                out.append((long_id, long_id + 1))
        return out

    def _rule_dur(self) -> Ranges:
        track = self._group_track()
        if track is None:
            return []
        dur = self.durations[track]
        long_steps = self.pending_long if self.phase is AFTER_DUR_LONG else 0
        first = self.group_is_first if self.phase is AFTER_DUR_LONG else self._first_group()
        r = R["dur"]
        # Short parts from `lowest` steps: the total must leave a pitch playable, and
        # in a later group exceed the duration of the group before.
        lowest = max(self._min_duration(track) - long_steps, 1)
        if not first:
            lowest = max(lowest, dur - long_steps + 1)
        if lowest > SHORT_DURATION_STEPS:
            return []
        ranges = [(r.start + lowest - 1, r.stop)]
        if first and dur is not None and long_steps < dur <= long_steps + SHORT_DURATION_STEPS:
            # Any duration but the current one: that one needs no token.
            current = r.start + dur - long_steps - 1
            ranges = [(a, b) for a, b in ((ranges[0][0], current), (current + 1, r.stop)) if a < b]
        return ranges

    def _rule_vel(self) -> Ranges:
        track = self._group_track()
        if track is None or self.durations[track] is None:
            return []  # a group states its duration before its velocity
        if self.phase is not AFTER_DUR and self._min_duration(track) > self.durations[track]:
            return []  # with the duration it keeps, no pitch of this track could play
        vel = self.velocities[track]
        vel_id = None if vel is None else VOCAB.id_of("vel", vel)
        if self.phase is AFTER_NOTE:  # VEL alone opens a later group: a higher one
            return _family_above("vel", vel_id)
        return _family_excluding("vel", vel_id)

    def _note_context(self, drums: bool, start: int) -> tuple[int, int, int] | None:
        """(track, lowest allowed id, end tick) for a note of this kind, or None when no
        such note may come. The one place the note rule lives; `_rule_note` and
        `_note_allowed` read it as ranges and as a yes/no for one token."""
        phase = self.phase
        track = self.cur_track if phase in _CONTINUING_PHASES else self.part_track
        if track is None or self.track_is_drum[track] is not drums:
            return None
        dur = self.durations[track]
        if dur is None or self.velocities[track] is None:
            return None
        lo = self.last_pitch_id if phase is AFTER_NOTE else start
        return track, lo, self.onset_tick + dur

    def _rule_note(self, drums: bool, start: int, stop: int) -> Ranges:
        context = self._note_context(drums, start)
        if context is None:
            return []
        track, lo, end = context
        if self.track_max_end[track] <= end:
            return [(lo, stop)]
        # Leave out pitches still sounding from an earlier onset past this note's end.
        ends = self.track_ends[track]
        if len(ends) > 8:
            ends = self._forget_ended(track)
        out = []
        for pitch in sorted(p for p, e in ends.items() if e > end):
            if start + pitch >= lo:
                out.append((lo, start + pitch))
                lo = start + pitch + 1
        out.append((lo, stop))
        return [(a, b) for a, b in out if a < b]

    def _note_allowed(self, token_id: int, drums: bool, start: int) -> bool:
        """`token_id in _rule_note(...)`, without building the ranges (the decoder's hot path)."""
        context = self._note_context(drums, start)
        if context is None:
            return False
        track, lo, end = context
        if token_id < lo:
            return False
        return (
            self.track_max_end[track] <= end
            or self.track_ends[track].get(token_id - start, -1) <= end
        )

    # ---- taking a token ----

    def advance(self, token_id: int) -> None:
        """Take one token; raises GrammarError (without index) when it is not allowed."""
        family = _FAM_INDEX[token_id]
        if family in _NOTE_FAMILIES:  # the most frequent tokens
            if _FAMILY_ALLOWED[self.phase][family] and self._note_allowed(
                token_id, family == _DRUM_FAMILY, _FAMILY_STARTS[family]
            ):
                self._take_note(_VAL[token_id])
                return
        elif _FAMILY_ALLOWED[self.phase][family]:
            for lo, hi in _RULE_LIST[family](self):
                if lo <= token_id < hi:
                    _HANDLER_LIST[family](self, _VAL[token_id])
                    return
        raise GrammarError(f"expected {describe_ranges(self.allowed_ranges())}")

    def _take_piece(self, _value: object) -> None:
        self.phase = STYLE

    def _take_style(self, _value: object) -> None:
        self.phase = TEMPO

    def _take_tempo(self, value: float) -> None:
        self.tempo = value
        self.phase = TS if self.phase is TEMPO else AFTER_TEMPO

    def _take_ts(self, value: tuple[int, int]) -> None:
        self.ts = value
        if self.phase is TS:
            self.phase = KEY_OR_INST
        else:
            self.bar_length = bar_steps(*value)
            self.phase = AFTER_TS

    def _take_key(self, value: tuple[int, str]) -> None:
        self.key = value
        self.phase = INST if self.phase is KEY_OR_INST else AFTER_KEY

    def _take_inst(self, program: int) -> None:
        self.track_is_drum.append(program == -1)
        self.durations.append(None)
        self.velocities.append(None)
        self.track_ends.append({})
        self.track_max_end.append(-1)
        self.phase = INST

    def _flush_onset(self) -> None:
        for track, pitch, end in self.onset_notes:
            ends = self.track_ends[track]
            if ends.get(pitch, -1) < end:
                ends[pitch] = end
            if self.track_max_end[track] < end:
                self.track_max_end[track] = end
        self.onset_notes.clear()

    def _forget_ended(self, track: int) -> dict[int, int]:
        """The track's still-sounding pitches, dropping notes that ended by this onset.

        Time only moves forward, so an ended note can never constrain a later one:
        dropping it changes no answer, and keeps the checks to the sounding notes.
        """
        now = self.onset_tick
        ends = self.track_ends[track]
        for pitch in [p for p, end in ends.items() if end <= now]:
            del ends[pitch]
        self.track_max_end[track] = max(ends.values(), default=-1)
        return ends

    def _take_bar(self, _value: object) -> None:
        self._flush_onset()
        if self.bar_index:
            self.bar_start += self.bar_length
        self.bar_index += 1
        self.bar_length = bar_steps(*self.ts)
        self.pos = -1
        self.onset_tick = self.bar_start
        self.cur_track = None
        n = self.n_tracks
        self.durations = [None] * n
        self.velocities = [None] * n
        self.phase = BAR_START

    def _take_pos(self, steps: int) -> None:
        if self.onset_notes:
            self._flush_onset()
        self.pos = steps
        self.onset_tick = self.bar_start + steps
        self.part_track = None
        self.phase = AFTER_POS

    def _take_track(self, track: int) -> None:
        self.part_track = self.cur_track = track
        self.used_tracks |= 1 << track
        self.group_is_first = True
        self.phase = AFTER_TRACK

    def _begin_group_if_needed(self) -> None:
        """DUR/VEL/note straight after POS/TEMPO/KEY continue the current track."""
        if self.phase in _CONTINUING_PHASES:
            self.part_track = self.cur_track
            self.group_is_first = True
        elif self.phase is AFTER_NOTE:
            self.group_is_first = False

    def _take_dur_long(self, steps: int) -> None:
        if self.phase is not AFTER_DUR_LONG:
            self._begin_group_if_needed()
            self.pending_long = 0
        self.pending_long += steps
        self.last_long = steps
        self.phase = AFTER_DUR_LONG

    def _take_dur(self, steps: int) -> None:
        if self.phase is not AFTER_DUR_LONG:
            self._begin_group_if_needed()
            self.pending_long = 0
        self.durations[self.part_track] = self.pending_long + steps
        self.pending_long = 0
        self.phase = AFTER_DUR

    def _take_vel(self, velocity: int) -> None:
        if self.phase is not AFTER_DUR:
            self._begin_group_if_needed()
        self.velocities[self.part_track] = velocity
        self.phase = AFTER_VEL

    def _take_note(self, pitch: int) -> None:
        if self.phase in _CONTINUING_PHASES:
            self._begin_group_if_needed()
        track = self.part_track
        self.onset_notes.append((track, pitch, self.onset_tick + self.durations[track]))
        self.last_pitch_id = (_DRUM_START if self.track_is_drum[track] else _PITCH_START) + pitch
        self.phase = AFTER_NOTE

    def _take_end(self, _value: object) -> None:
        self.phase = DONE


_NOTE_START = ("dur_long", "dur", "vel", "pitch", "drum")  # what may open a group

# The succession table: which token families may follow in each phase. The
# rules below each family then narrow it down with the counters.
SUCCESSIONS: dict[Phase, tuple[str, ...]] = {
    START: ("piece",),
    STYLE: ("style",),
    TEMPO: ("tempo",),
    TS: ("ts",),
    KEY_OR_INST: ("key", "inst", "bar", "end"),
    INST: ("inst", "bar", "end"),
    BAR_START: ("ts", "pos", "bar"),
    AFTER_TS: ("pos", "bar", "end"),
    AFTER_POS: ("tempo", "key", "track", *_NOTE_START),
    AFTER_TEMPO: ("key", "track", *_NOTE_START, "pos", "bar", "end"),
    AFTER_KEY: ("track", *_NOTE_START, "pos", "bar", "end"),
    AFTER_TRACK: _NOTE_START,
    AFTER_DUR_LONG: ("dur_long", "dur"),
    AFTER_DUR: ("vel", "pitch", "drum"),
    AFTER_VEL: ("pitch", "drum"),
    AFTER_NOTE: ("pitch", "drum", "dur_long", "dur", "vel", "track", "pos", "bar", "end"),
    DONE: (),
}
_RULES = {
    "piece": lambda s: [(PIECE, PIECE + 1)],
    "style": lambda s: s._rule_whole("style"),
    "tempo": GrammarState._rule_tempo,
    "ts": GrammarState._rule_ts,
    "key": GrammarState._rule_key,
    "inst": GrammarState._rule_inst,
    "bar": lambda s: [(BAR, BAR + 1)],
    "end": GrammarState._rule_end,
    "pos": GrammarState._rule_pos,
    "track": GrammarState._rule_track,
    "dur_long": GrammarState._rule_dur_long,
    "dur": GrammarState._rule_dur,
    "vel": GrammarState._rule_vel,
    "pitch": lambda s: GrammarState._rule_note(s, False, _PITCH_START, _PITCH_STOP),
    "drum": lambda s: GrammarState._rule_note(s, True, _DRUM_START, _DRUM_STOP),
}


_HANDLERS = {
    "piece": GrammarState._take_piece,
    "style": GrammarState._take_style,
    "tempo": GrammarState._take_tempo,
    "ts": GrammarState._take_ts,
    "key": GrammarState._take_key,
    "inst": GrammarState._take_inst,
    "bar": GrammarState._take_bar,
    "pos": GrammarState._take_pos,
    "track": GrammarState._take_track,
    "dur_long": GrammarState._take_dur_long,
    "dur": GrammarState._take_dur,
    "vel": GrammarState._take_vel,
    "pitch": GrammarState._take_note,
    "drum": GrammarState._take_note,
    "end": GrammarState._take_end,
}

# The same tables indexed by numbers, for the hot path of `advance`.
_FAMILY_NAMES = tuple(R)
_FAM_INDEX = [_FAMILY_NAMES.index(family) for family in _FAM]
_RULE_LIST = [_RULES.get(family, lambda s: []) for family in _FAMILY_NAMES]
_HANDLER_LIST = [_HANDLERS.get(family) for family in _FAMILY_NAMES]
_PITCH_FAMILY, _DRUM_FAMILY = _FAMILY_NAMES.index("pitch"), _FAMILY_NAMES.index("drum")
_NOTE_FAMILIES = frozenset((_PITCH_FAMILY, _DRUM_FAMILY))
_FAMILY_STARTS = [R[family].start for family in _FAMILY_NAMES]
_FAMILY_ALLOWED = [[f in SUCCESSIONS[phase] for f in _FAMILY_NAMES] for phase in Phase]


def describe_ranges(ranges: Ranges) -> str:
    """Human summary of allowed ids: 'one of: @1/2..@3+23/24, t1..t3, bar, end'."""
    parts: list[str] = []
    for lo, hi in ranges:
        if hi - lo == 1:
            parts.append(VOCAB.tokens[lo])
        elif R[_FAM[lo]] == range(lo, hi):
            parts.append(f"any {_FAM[lo]} token")
        else:
            parts.append(f"{VOCAB.tokens[lo]}..{VOCAB.tokens[hi - 1]}")
    if not parts:
        return "nothing (the piece has ended)"
    return parts[0] if len(parts) == 1 else "one of: " + ", ".join(parts)


def words_to_ids(words: Iterable[str]) -> list[int]:
    """Words -> ids; an unknown word is a GrammarError naming it and its index, and more
    words than the `tokens` limit one saying so."""
    from music_lm.limits import limits

    words = list(words)
    most = limits().tokens
    if len(words) > most:
        raise GrammarError(
            f"token {most}: the text has {len(words):,} tokens, over the limit of {most:,} "
            "(raise it with --limit tokens=N)",
            most,
            words[most],
        )
    try:
        return [_ID[word] for word in words]
    except KeyError:
        index = next(i for i, word in enumerate(words) if word not in _ID)
        raise GrammarError(
            f"token {index} {words[index]!r}: not a token of the vocabulary", index, words[index]
        ) from None


def located(err: GrammarError, index: int, token_id: int) -> GrammarError:
    """The error of `advance`, now naming the token's index and word."""
    word = VOCAB.tokens[token_id]
    return GrammarError(f"token {index} {word!r}: {err}", index, word)


def check_complete(state: GrammarState, token_count: int) -> None:
    """Raise GrammarError if the text stopped before 'end'."""
    if not state.done:
        expected = describe_ranges(state.allowed_ranges())
        raise GrammarError(
            f"token {token_count}: the text ends before 'end'; expected {expected}",
            token_count,
            None,
        )


def walk(token_ids: Iterable[int]) -> Iterator[tuple[int, GrammarState]]:
    """Step a fresh state through `token_ids`, yielding (id, state after it).

    Raises GrammarError naming the index, the token and what was expected, also
    when the tokens stop before "end".
    """
    state = GrammarState()
    count = 0
    for count, token_id in enumerate(token_ids, start=1):
        try:
            state.advance(token_id)
        except GrammarError as err:
            raise located(err, count - 1, token_id) from None
        yield token_id, state
    check_complete(state, count)


def validate(text: str) -> list[int]:
    """Check that `text` is one valid piece; return its token ids."""
    ids = words_to_ids(text.split())
    for _ in walk(ids):
        pass
    return ids
