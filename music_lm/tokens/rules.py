"""What may come next in the token text: the grammar's phases, the succession table of
which token families may follow in each phase, and one rule per family that narrows the
family down with the parse's counters.

`GrammarRules` holds the rules as methods of `GrammarState` (`music_lm.tokens.grammar`,
which adds the counters and takes tokens): `allowed_ranges` gives the ids allowed next,
which the constrained sampler turns into masks, and `is_allowed` answers for one id.
Both are the decoder's hot path, so the tables are also kept indexed by numbers.
"""

from __future__ import annotations

from enum import IntEnum

from music_lm.midi.gm import MAX_MELODIC_TRACKS, MAX_TRACKS
from music_lm.tokens.vocab import (
    LONG_DURATION_STEPS,
    MAX_DURATION_STEPS,
    SHORT_DURATION_STEPS,
    VOCAB,
)

R = VOCAB.ranges
_ID = VOCAB.ids
_VAL = VOCAB.values
_FAM = VOCAB.family_of
PIECE, END, BAR = _ID["piece"], _ID["end"], _ID["bar"]
HOLE, FILL = _ID["hole"], _ID["fill"]


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
    # Fill-in-the-middle (docs/token-format.md): after `hole`, the state in force where the
    # suffix begins is restated as in a header (tempo, meter, key); `fill` starts the middle.
    HOLE_TEMPO = 17
    HOLE_TS = 18
    HOLE_KEY = 19  # optional KEY, then the suffix's bars or `fill`
    HOLE_AFTER_KEY = 20
    FILL_START = 21  # the middle's first `bar`


# The phases as module constants: comparing with `is` against a global is faster than
# looking up the enum's attribute, and this is the decoder's hot path.
(
    START, STYLE, TEMPO, TS, KEY_OR_INST, INST, BAR_START, AFTER_TS, AFTER_POS, AFTER_TEMPO,
    AFTER_KEY, AFTER_TRACK, AFTER_DUR_LONG, AFTER_DUR, AFTER_VEL, AFTER_NOTE, DONE,
    HOLE_TEMPO, HOLE_TS, HOLE_KEY, HOLE_AFTER_KEY, FILL_START,
) = tuple(Phase)  # fmt: skip
# The parts of a fill-in-the-middle text: before `hole` (or a plain piece), the suffix
# (after `hole`), the middle (after `fill`).
FIM_NONE, FIM_SUFFIX, FIM_MIDDLE = 0, 1, 2
CONTINUING_PHASES = frozenset((AFTER_POS, AFTER_TEMPO, AFTER_KEY))
_PITCH_START, _PITCH_STOP = R["pitch"].start, R["pitch"].stop
_DRUM_START, _DRUM_STOP = R["drum"].start, R["drum"].stop
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


class GrammarRules:
    """The rules half of `GrammarState`: what may come next, read from its phase and
    counters (`GrammarState.__init__` says what each one holds)."""

    __slots__ = ()

    def allowed_ranges(self) -> Ranges:
        """Half-open id ranges of the tokens allowed next (empty once done)."""
        out: Ranges = []
        for family in SUCCESSIONS[self.phase]:
            out += _RULES[family](self)
        return out

    def is_allowed(self, token_id: int) -> bool:
        family = FAMILY_INDEX[token_id]
        if not FAMILY_ALLOWED[self.phase][family]:
            return False
        if family in NOTE_FAMILIES:
            return self._note_allowed(token_id, family == DRUM_FAMILY, FAMILY_STARTS[family])
        for lo, hi in RULE_LIST[family](self):  # noqa: SIM110 (a plain loop is faster here)
            if lo <= token_id < hi:
                return True
        return False

    def _group_track(self) -> int | None:
        """The track a DUR/VEL/note would belong to: the part's, or the current one
        when the onset continues the current track without a TRACK token."""
        if self.phase in CONTINUING_PHASES:
            return self.cur_track
        return self.part_track

    def _first_group(self) -> bool:
        return self.phase is not AFTER_NOTE

    def _rule_whole(self, family: str) -> Ranges:
        r = R[family]
        return [(r.start, r.stop)]

    def _rule_tempo(self) -> Ranges:
        if self.phase is TEMPO or self.phase is HOLE_TEMPO:
            return self._rule_whole("tempo")
        if self.bar_index == 1 and self.pos == 0:
            return []  # the header holds the tempo at the start
        return _family_excluding("tempo", VOCAB.id_of("tempo", self.tempo))

    def _rule_ts(self) -> Ranges:
        if self.phase is TS or self.phase is HOLE_TS:
            return self._rule_whole("ts")
        if self.bar_index <= 1:
            return []  # the header holds the meter of the first bar
        return _family_excluding("ts", VOCAB.id_of("ts", self.ts))

    def _rule_key(self) -> Ranges:
        if self.phase is KEY_OR_INST or self.phase is HOLE_KEY:
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
        if self.fim_stage == FIM_SUFFIX:
            return []  # the suffix ends with `fill`; the middle ends the text
        if self.phase is BAR_START and not (self.fim_stage == FIM_MIDDLE and self.fim_suffix_bars):
            return []  # a piece ends after a bar with content (a middle: before the suffix's)
        if self.used_tracks != (1 << len(self.track_is_drum)) - 1:
            return []
        if self.phase is AFTER_POS and self.pos == 0:
            return []  # a bar cut at @0 would last no time
        return [(END, END + 1)]

    def _rule_bar(self) -> Ranges:
        if self.phase is AFTER_POS and self.pos == 0:
            return []  # a bar cut at @0 would last no time
        if self.phase is HOLE_KEY and self.fim_saved.key is not None:
            return []  # a key stated before the gap is still in force after it: restate it
        return [(BAR, BAR + 1)]

    def _rule_fim(self) -> Ranges:
        """`hole` ends the prefix where a bar line could come, once per text; `fill` ends
        the suffix there, and the middle follows. Only in a state that reads the
        fill-in-the-middle form (`fim=True`): a sampler's states never offer them."""
        if not self.fim or (self.phase is AFTER_POS and self.pos == 0):
            return []
        if self.phase is HOLE_KEY and self.fim_saved.key is not None:
            return []  # as for `bar`: the key must be restated first
        if self.fim_stage == FIM_NONE:
            return [(HOLE, HOLE + 1)]
        if self.fim_stage == FIM_SUFFIX:
            return [(FILL, FILL + 1)]
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
        track = self.cur_track if phase in CONTINUING_PHASES else self.part_track
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


_NOTE_START = ("dur_long", "dur", "vel", "pitch", "drum")  # what may open a group

# The succession table: which token families may follow in each phase. The
# rules of `GrammarRules` above then narrow each family down with the counters.
SUCCESSIONS: dict[Phase, tuple[str, ...]] = {
    START: ("piece",),
    STYLE: ("style",),
    TEMPO: ("tempo",),
    TS: ("ts",),
    KEY_OR_INST: ("key", "inst", "bar", "end", "fim"),
    INST: ("inst", "bar", "end", "fim"),
    # `end` after a bare `bar` only closes a middle (whose last bar may be empty).
    BAR_START: ("ts", "pos", "bar", "end", "fim"),
    AFTER_TS: ("pos", "bar", "end", "fim"),
    # A position followed by `bar` or `end` is where a short bar ends (a cut): a pickup,
    # or a bar cut short by a meter change.
    AFTER_POS: ("tempo", "key", "track", *_NOTE_START, "bar", "end", "fim"),
    AFTER_TEMPO: ("key", "track", *_NOTE_START, "pos", "bar", "end", "fim"),
    AFTER_KEY: ("track", *_NOTE_START, "pos", "bar", "end", "fim"),
    AFTER_TRACK: _NOTE_START,
    AFTER_DUR_LONG: ("dur_long", "dur"),
    AFTER_DUR: ("vel", "pitch", "drum"),
    AFTER_VEL: ("pitch", "drum"),
    AFTER_NOTE: ("pitch", "drum", "dur_long", "dur", "vel", "track", "pos", "bar", "end", "fim"),
    DONE: (),
    HOLE_TEMPO: ("tempo",),
    HOLE_TS: ("ts",),
    HOLE_KEY: ("key", "bar", "fim"),
    HOLE_AFTER_KEY: ("bar", "fim"),
    FILL_START: ("bar",),
}
_RULES = {
    "piece": lambda s: [(PIECE, PIECE + 1)],
    "style": lambda s: s._rule_whole("style"),
    "tempo": GrammarRules._rule_tempo,
    "ts": GrammarRules._rule_ts,
    "key": GrammarRules._rule_key,
    "inst": GrammarRules._rule_inst,
    "bar": GrammarRules._rule_bar,
    "end": GrammarRules._rule_end,
    "fim": GrammarRules._rule_fim,
    "pos": GrammarRules._rule_pos,
    "track": GrammarRules._rule_track,
    "dur_long": GrammarRules._rule_dur_long,
    "dur": GrammarRules._rule_dur,
    "vel": GrammarRules._rule_vel,
    "pitch": lambda s: GrammarRules._rule_note(s, False, _PITCH_START, _PITCH_STOP),
    "drum": lambda s: GrammarRules._rule_note(s, True, _DRUM_START, _DRUM_STOP),
}

# The same tables indexed by numbers, for the hot paths of `is_allowed` and `advance`.
FAMILY_NAMES = tuple(R)
FAMILY_INDEX = [FAMILY_NAMES.index(family) for family in _FAM]
RULE_LIST = [_RULES.get(family, lambda s: []) for family in FAMILY_NAMES]
_PITCH_FAMILY, DRUM_FAMILY = FAMILY_NAMES.index("pitch"), FAMILY_NAMES.index("drum")
NOTE_FAMILIES = frozenset((_PITCH_FAMILY, DRUM_FAMILY))
FAMILY_STARTS = [R[family].start for family in FAMILY_NAMES]
FAMILY_ALLOWED = [[f in SUCCESSIONS[phase] for f in FAMILY_NAMES] for phase in Phase]


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
