"""The one grammar of the token text: a small automaton with a few counters.

The same `GrammarState` validates and parses text (`parse`), and tells which
tokens may come next (`allowed_ranges`), which the constrained sampler turns
into masks. Only the canonical form of a piece is grammatical, so for every
valid text T, encode(decode(T)) == T.

    piece   = "piece" STYLE TEMPO TS [KEY] INST* bar* "end"
    bar     = "bar" [TS] onset*
    onset   = POS [TEMPO] [KEY] part*          (at least one of TEMPO, KEY, part)
    part    = [TRACK] group+
    group   = [[DUR_LONG] DUR] [VEL] note+
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

from music_lm.vocab import (
    MAX_MELODIC_TRACKS,
    MAX_TRACKS,
    SHORT_DURATION_STEPS,
    VOCAB,
    bar_steps,
)

R = VOCAB.ranges
_ID = VOCAB.ids
_VAL = VOCAB.values
_FAM = VOCAB.family_of
PIECE, END, BAR = _ID["piece"], _ID["end"], _ID["bar"]


class GrammarError(ValueError):
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
        "bar_has_content",
        "bar_index",
        "bar_length",
        "bar_start",
        "cur_track",
        "durations",
        "group_is_first",
        "key",
        "last_pitch_id",
        "onset_notes",
        "part_track",
        "pending_long",
        "phase",
        "pos",
        "tempo",
        "track_ends",
        "track_is_drum",
        "ts",
        "used_tracks",
        "velocities",
    )

    def __init__(self) -> None:
        self.phase = Phase.START
        self.track_is_drum: list[bool] = []
        self.used_tracks = 0  # bit mask
        self.tempo: float | None = None
        self.ts: tuple[int, int] = (4, 4)
        self.key: tuple[int, str] | None = None
        self.bar_index = 0  # bars begun so far
        self.bar_start = 0  # grid tick where the current bar starts
        self.bar_length = 0
        self.bar_has_content = False
        self.pos = -1  # grid steps from the bar start of the current onset
        self.cur_track: int | None = None
        self.durations: list[int | None] = []  # per track, within this bar
        self.velocities: list[int | None] = []
        self.part_track: int | None = None  # track of the current part of this onset
        self.group_is_first = True
        self.last_pitch_id: int | None = None
        self.pending_long = 0
        # Per track: pitch -> latest end tick of its notes from earlier onsets.
        self.track_ends: list[dict[int, int]] = []
        self.onset_notes: list[tuple[int, int, int]] = []  # (track, pitch, end) at this onset

    def copy(self) -> GrammarState:
        new = GrammarState.__new__(GrammarState)
        for name in self.__slots__:
            setattr(new, name, getattr(self, name))
        new.track_is_drum = list(self.track_is_drum)
        new.durations = list(self.durations)
        new.velocities = list(self.velocities)
        new.track_ends = [dict(ends) for ends in self.track_ends]
        new.onset_notes = list(self.onset_notes)
        return new

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def onset_tick(self) -> int:
        return self.bar_start + max(self.pos, 0)

    @property
    def n_tracks(self) -> int:
        return len(self.track_is_drum)

    # ---- what may come next ----

    def allowed_ranges(self) -> Ranges:
        """Half-open id ranges of the tokens allowed next (empty once done)."""
        p = self.phase
        if p is Phase.START:
            return [(PIECE, PIECE + 1)]
        if p is Phase.STYLE:
            return [(R["style"].start, R["style"].stop)]
        if p is Phase.TEMPO:
            return [(R["tempo"].start, R["tempo"].stop)]
        if p is Phase.TS:
            return [(R["ts"].start, R["ts"].stop)]
        if p is Phase.KEY_OR_INST or p is Phase.INST:
            out = [(R["key"].start, R["key"].stop)] if p is Phase.KEY_OR_INST else []
            out += self._inst_ranges()
            out.append((BAR, BAR + 1))
            out += self._end_ranges()
            return out
        if p is Phase.BAR_START:
            out = []
            if self.bar_index > 1:
                out += _family_excluding("ts", VOCAB.id_of("ts", self.ts))
            out += self._pos_ranges()
            out.append((BAR, BAR + 1))
            return out  # "end" needs a bar with content
        if p is Phase.AFTER_TS:
            return [*self._pos_ranges(), (BAR, BAR + 1), *self._end_ranges()]
        if p is Phase.AFTER_POS or p is Phase.AFTER_TEMPO or p is Phase.AFTER_KEY:
            first_bar_start = self.bar_index == 1 and self.pos == 0
            out = []
            if p is Phase.AFTER_POS and not first_bar_start:
                out += _family_excluding("tempo", self._tempo_id())
            if p is not Phase.AFTER_KEY and not first_bar_start:
                out += _family_excluding("key", self._key_id())
            out += self._part_start_ranges()
            if p is not Phase.AFTER_POS:  # an onset must hold something
                out += [*self._pos_ranges(), (BAR, BAR + 1), *self._end_ranges()]
            return out
        if p is Phase.AFTER_TRACK:
            return self._group_start_ranges(self.part_track, first=True)
        if p is Phase.AFTER_DUR_LONG:
            return self._short_duration_ranges(self.pending_long)
        if p is Phase.AFTER_DUR:
            t = self.part_track
            out = _family_excluding("vel", self._vel_id(t))
            if self.velocities[t] is not None:
                out += self._note_ranges(t, None)
            return out
        if p is Phase.AFTER_VEL:
            return self._note_ranges(self.part_track, None)
        if p is Phase.AFTER_NOTE:
            t = self.part_track
            out = self._note_ranges(t, self.last_pitch_id)
            out += self._group_start_ranges(t, first=False)
            if t + 1 < self.n_tracks:
                out.append((R["track"].start + t + 1, R["track"].start + self.n_tracks))
            return [*out, *self._pos_ranges(), (BAR, BAR + 1), *self._end_ranges()]
        return []

    def _inst_ranges(self) -> Ranges:
        n = self.n_tracks
        if n >= MAX_TRACKS:
            return []
        r = R["inst"]
        melodic = n - sum(self.track_is_drum)
        if melodic >= MAX_MELODIC_TRACKS:
            return [(r.stop - 1, r.stop)]  # inst:drums only
        return [(r.start, r.stop)]

    def _end_ranges(self) -> Ranges:
        if self.used_tracks == (1 << self.n_tracks) - 1:
            return [(END, END + 1)]
        return []

    def _pos_ranges(self) -> Ranges:
        r = R["pos"]
        lo, hi = r.start + self.pos + 1, r.start + self.bar_length
        if self.n_tracks == 0 and self.bar_index == 1 and self.pos < 0:
            lo += 1  # without tracks, @0 of the first bar could hold nothing
        return [(lo, hi)] if lo < hi else []

    def _part_start_ranges(self) -> Ranges:
        """Tokens that may begin the first part of an onset."""
        n, cur = self.n_tracks, self.cur_track
        t0 = R["track"].start
        if cur is None:
            return [(t0, t0 + n)] if n else []
        out = [(lo, hi) for lo, hi in ((t0, t0 + cur), (t0 + cur + 1, t0 + n)) if lo < hi]
        return out + self._group_start_ranges(cur, first=True)

    def _group_start_ranges(self, track: int, first: bool) -> Ranges:
        """Tokens that may begin a group of `track`: DUR, VEL or (first only) a note."""
        dur, vel = self.durations[track], self.velocities[track]
        out: Ranges = []
        if first:
            long_ids = R["dur_long"]
            out.append((long_ids.start, long_ids.stop))
            out += _family_excluding("dur", self._short_dur_id(dur))
            if dur is not None:
                out += _family_excluding("vel", self._vel_id(track))
                if vel is not None:
                    out += self._note_ranges(track, None)
            return out
        # A later group must sort after the previous one: (duration, velocity) ascending.
        assert dur is not None
        assert vel is not None
        for long_id in R["dur_long"]:
            if _VAL[long_id] + SHORT_DURATION_STEPS > dur:
                out.append((long_id, R["dur_long"].stop))
                break
        if dur < SHORT_DURATION_STEPS:
            out.append((VOCAB.id_of("dur", dur) + 1, R["dur"].stop))
        out += _family_above("vel", self._vel_id(track))
        return out

    def _short_duration_ranges(self, long_steps: int) -> Ranges:
        """Short durations allowed after a long part of `long_steps` (0: none)."""
        dur = self.durations[self.part_track]
        r = R["dur"]
        if self.group_is_first:
            if dur is None or not long_steps < dur <= long_steps + SHORT_DURATION_STEPS:
                return [(r.start, r.stop)]
            return _family_excluding("dur", r.start + dur - long_steps - 1)
        lowest = max(dur - long_steps + 1, 1)  # the total must exceed the previous duration
        return [(r.start + lowest - 1, r.stop)] if lowest <= SHORT_DURATION_STEPS else []

    def _note_ranges(self, track: int, floor_id: int | None) -> Ranges:
        family = "drum" if self.track_is_drum[track] else "pitch"
        start, stop = R[family].start, R[family].stop
        lo = start if floor_id is None else floor_id
        end = self.onset_tick + self.durations[track]
        out = []
        for pitch in sorted(p for p, e in self.track_ends[track].items() if e > end):
            if start + pitch >= lo:
                out.append((lo, start + pitch))
                lo = start + pitch + 1
        out.append((lo, stop))
        return [(a, b) for a, b in out if a < b]

    def _tempo_id(self) -> int | None:
        return None if self.tempo is None else VOCAB.id_of("tempo", self.tempo)

    def _key_id(self) -> int | None:
        return None if self.key is None else VOCAB.id_of("key", self.key)

    def _vel_id(self, track: int) -> int | None:
        vel = self.velocities[track]
        return None if vel is None else VOCAB.id_of("vel", vel)

    @staticmethod
    def _short_dur_id(dur: int | None) -> int | None:
        if dur is None or dur > SHORT_DURATION_STEPS:
            return None
        return VOCAB.id_of("dur", dur)

    def is_allowed(self, token_id: int) -> bool:
        return any(lo <= token_id < hi for lo, hi in self.allowed_ranges())

    # ---- taking a token ----

    def advance(self, token_id: int) -> None:
        """Take one token; raises GrammarError (without index) when it is not allowed."""
        if not self.is_allowed(token_id):
            raise GrammarError(f"expected {describe_ranges(self.allowed_ranges())}")
        family = _FAM[token_id]
        value = _VAL[token_id]
        handler = _HANDLERS[family]
        handler(self, value)

    def _take_piece(self, _value: object) -> None:
        self.phase = Phase.STYLE

    def _take_style(self, _value: object) -> None:
        self.phase = Phase.TEMPO

    def _take_tempo(self, value: float) -> None:
        self.tempo = value
        self.phase = Phase.TS if self.phase is Phase.TEMPO else Phase.AFTER_TEMPO

    def _take_ts(self, value: tuple[int, int]) -> None:
        self.ts = value
        if self.phase is Phase.TS:
            self.phase = Phase.KEY_OR_INST
        else:
            self.bar_length = bar_steps(*value)
            self.bar_has_content = True
            self.phase = Phase.AFTER_TS

    def _take_key(self, value: tuple[int, str]) -> None:
        self.key = value
        self.phase = Phase.INST if self.phase is Phase.KEY_OR_INST else Phase.AFTER_KEY

    def _take_inst(self, program: int) -> None:
        self.track_is_drum.append(program == -1)
        self.durations.append(None)
        self.velocities.append(None)
        self.track_ends.append({})
        self.phase = Phase.INST

    def _flush_onset(self) -> None:
        for track, pitch, end in self.onset_notes:
            ends = self.track_ends[track]
            if ends.get(pitch, -1) < end:
                ends[pitch] = end
        self.onset_notes.clear()

    def _take_bar(self, _value: object) -> None:
        self._flush_onset()
        if self.bar_index:
            self.bar_start += self.bar_length
        self.bar_index += 1
        self.bar_length = bar_steps(*self.ts)
        self.bar_has_content = False
        self.pos = -1
        self.cur_track = None
        n = self.n_tracks
        self.durations = [None] * n
        self.velocities = [None] * n
        self.phase = Phase.BAR_START

    def _take_pos(self, steps: int) -> None:
        self._flush_onset()
        self.pos = steps
        self.bar_has_content = True
        self.part_track = None
        self.phase = Phase.AFTER_POS

    def _take_track(self, track: int) -> None:
        self.part_track = self.cur_track = track
        self.used_tracks |= 1 << track
        self.group_is_first = True
        self.phase = Phase.AFTER_TRACK

    def _begin_group_if_needed(self) -> None:
        """DUR/VEL/note straight after POS/TEMPO/KEY continue the current track."""
        if self.phase in (Phase.AFTER_POS, Phase.AFTER_TEMPO, Phase.AFTER_KEY):
            self.part_track = self.cur_track
            self.group_is_first = True
        elif self.phase is Phase.AFTER_NOTE:
            self.group_is_first = False

    def _take_dur_long(self, steps: int) -> None:
        self._begin_group_if_needed()
        self.pending_long = steps
        self.phase = Phase.AFTER_DUR_LONG

    def _take_dur(self, steps: int) -> None:
        if self.phase is not Phase.AFTER_DUR_LONG:
            self._begin_group_if_needed()
            self.pending_long = 0
        self.durations[self.part_track] = self.pending_long + steps
        self.pending_long = 0
        self.phase = Phase.AFTER_DUR

    def _take_vel(self, velocity: int) -> None:
        if self.phase is not Phase.AFTER_DUR:
            self._begin_group_if_needed()
        self.velocities[self.part_track] = velocity
        self.phase = Phase.AFTER_VEL

    def _take_note(self, pitch: int) -> None:
        if self.phase in (Phase.AFTER_POS, Phase.AFTER_TEMPO, Phase.AFTER_KEY):
            self._begin_group_if_needed()
        track = self.part_track
        self.onset_notes.append((track, pitch, self.onset_tick + self.durations[track]))
        self.last_pitch_id = R["drum" if self.track_is_drum[track] else "pitch"].start + pitch
        self.phase = Phase.AFTER_NOTE

    def _take_end(self, _value: object) -> None:
        self.phase = Phase.DONE


def _note_handler(state: GrammarState, value: int) -> None:
    state._take_note(value)


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
    "pitch": _note_handler,
    "drum": _note_handler,
    "end": GrammarState._take_end,
}


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
    """Words -> ids; an unknown word is a GrammarError naming it and its index."""
    ids = []
    for index, word in enumerate(words):
        token_id = _ID.get(word)
        if token_id is None:
            raise GrammarError(
                f"token {index} {word!r}: not a token of the vocabulary", index, word
            )
        ids.append(token_id)
    return ids


def walk(token_ids: Iterable[int]) -> Iterator[tuple[int, GrammarState]]:
    """Step a fresh state through `token_ids`, yielding (id, state after it).

    Raises GrammarError naming the index, the token and what was expected, also
    when the tokens stop before "end".
    """
    state = GrammarState()
    index = -1
    for index, token_id in enumerate(token_ids):
        try:
            state.advance(token_id)
        except GrammarError as err:
            word = VOCAB.tokens[token_id]
            raise GrammarError(f"token {index} {word!r}: {err}", index, word) from None
        yield token_id, state
    if not state.done:
        expected = describe_ranges(state.allowed_ranges())
        raise GrammarError(
            f"token {index + 1}: the text ends before 'end'; expected {expected}", index + 1, None
        )


def validate(text: str) -> list[int]:
    """Check that `text` is one valid piece; return its token ids."""
    ids = words_to_ids(text.split())
    for _ in walk(ids):
        pass
    return ids
