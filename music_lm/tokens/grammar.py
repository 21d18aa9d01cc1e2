"""The one grammar of the token text: a small automaton with a few counters.

The same `GrammarState` validates and parses text (`advance`, and the helpers of
`music_lm.tokens.validate`), and tells which tokens may come next
(`allowed_ranges`, from the rules of `music_lm.tokens.rules`), which the
constrained sampler turns into masks. Only the canonical form of a piece is
grammatical, so for every valid text T, encode(decode(T)) == T.

    piece   = "piece" STYLE TEMPO TS [KEY] INST* bar* "end"
    fim     = "piece" STYLE TEMPO TS [KEY] INST* bar*         (the prefix)
              "hole" TEMPO TS [KEY] bar* "fill" bar+ "end"   (the suffix, then the middle)
    bar     = "bar" [TS] onset* [POS]          (a bare POS: the bar ends there, cut short)
    onset   = POS [TEMPO] [KEY] part*          (at least one of TEMPO, KEY, part)
    part    = [TRACK] group+
    group   = [DUR_LONG* DUR] [VEL] note+           (long parts in decreasing order)
    note    = PITCH | DRUM                     (by the track's kind)

The counters and rules (see docs/token-format.md for examples):

- TS appears only when the meter changes, never in the first bar; positions are
  strictly increasing and inside the bar under the current time signature.
- A bar may be cut short: a position with nothing after it, before the next
  "bar" or "end", is where the bar ends (a pickup, or a meter change inside a
  bar). The meter carries on into the next bar unless it states a new one.
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
- The fill-in-the-middle form (read only by a state made with `fim=True`: training text,
  never sampled) moves a run of bars to the end. `hole` stands where they were and
  restates the tempo, meter and key in force where the suffix begins, as a header does;
  the suffix is read as a piece of its own from there; `fill` returns to the state after
  the prefix, and the middle's bars continue it. Every track plays somewhere in the three.
"""

from __future__ import annotations

from music_lm.errors import InputError
from music_lm.tokens.rules import (
    AFTER_DUR,
    AFTER_DUR_LONG,
    AFTER_KEY,
    AFTER_NOTE,
    AFTER_POS,
    AFTER_TEMPO,
    AFTER_TRACK,
    AFTER_TS,
    AFTER_VEL,
    BAR_START,
    CONTINUING_PHASES,
    DONE,
    DRUM_FAMILY,
    FAMILY_ALLOWED,
    FAMILY_INDEX,
    FAMILY_NAMES,
    FAMILY_STARTS,
    FILL_START,
    FIM_MIDDLE,
    FIM_NONE,
    FIM_SUFFIX,
    HOLE_AFTER_KEY,
    HOLE_KEY,
    HOLE_TEMPO,
    HOLE_TS,
    INST,
    KEY_OR_INST,
    NOTE_FAMILIES,
    RULE_LIST,
    START,
    STYLE,
    TEMPO,
    TS,
    GrammarRules,
    describe_ranges,
)
from music_lm.tokens.vocab import VOCAB, bar_steps

R = VOCAB.ranges
_VAL = VOCAB.values
_PITCH_START = R["pitch"].start
_DRUM_START = R["drum"].start


class GrammarError(InputError, ValueError):
    """Token text that breaks the grammar. Names the token, its index and what was expected."""

    def __init__(self, message: str, index: int | None = None, token: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.token = token


# The phase after a header word, in the piece's header and in `hole`'s restatement; in the
# body a tempo, meter or key word leads to AFTER_TEMPO, AFTER_TS or AFTER_KEY.
_HEAD_NEXT = {TEMPO: TS, TS: KEY_OR_INST, KEY_OR_INST: INST,
              HOLE_TEMPO: HOLE_TS, HOLE_TS: HOLE_KEY, HOLE_KEY: HOLE_AFTER_KEY}  # fmt: skip


class GrammarState(GrammarRules):
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
        "cut_tick",
        "durations",
        "fim",
        "fim_saved",
        "fim_stage",
        "fim_suffix_bars",
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

    def __init__(self, fim: bool = False) -> None:
        self.phase = START
        self.fim = fim  # reads the fill-in-the-middle form
        self.fim_stage = FIM_NONE
        self.fim_saved: GrammarState | None = None  # the state after the prefix
        self.fim_suffix_bars = 0  # bars of the suffix, once read
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
        # Where the bar just closed by `bar` or `end` was cut short (a position with nothing
        # after it), else None: a MIDI file marks that bar line with a time signature event.
        self.cut_tick: int | None = None
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

    # ---- taking a token ----

    def advance(self, token_id: int) -> None:
        """Take one token; raises GrammarError (without index) when it is not allowed."""
        family = FAMILY_INDEX[token_id]
        if family in NOTE_FAMILIES:  # the most frequent tokens
            if FAMILY_ALLOWED[self.phase][family] and self._note_allowed(
                token_id, family == DRUM_FAMILY, FAMILY_STARTS[family]
            ):
                self._take_note(_VAL[token_id])
                return
        elif FAMILY_ALLOWED[self.phase][family]:
            for lo, hi in RULE_LIST[family](self):
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
        self.phase = _HEAD_NEXT.get(self.phase, AFTER_TEMPO)

    def _take_ts(self, value: tuple[int, int]) -> None:
        self.ts = value
        if self.phase in _HEAD_NEXT:  # the header's, or `hole`'s restatement
            self.phase = _HEAD_NEXT[self.phase]
        else:
            self.bar_length = bar_steps(*value)
            self.phase = AFTER_TS

    def _take_key(self, value: tuple[int, str]) -> None:
        self.key = value
        self.phase = _HEAD_NEXT.get(self.phase, AFTER_KEY)

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

    def _take_bar(self, _value: object) -> None:
        self._flush_onset()
        self._close_bar()
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
        if self.phase in CONTINUING_PHASES:
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
        if self.phase in CONTINUING_PHASES:
            self._begin_group_if_needed()
        track = self.part_track
        self.onset_notes.append((track, pitch, self.onset_tick + self.durations[track]))
        self.last_pitch_id = (_DRUM_START if self.track_is_drum[track] else _PITCH_START) + pitch
        self.phase = AFTER_NOTE

    def _take_fim(self, _value: object) -> None:
        self._flush_onset()
        self._close_bar()
        if self.fim_stage == FIM_NONE:  # `hole`: the suffix is read as a piece from here
            self.fim_saved = self.copy()
            self.fim_stage = FIM_SUFFIX
            n = self.n_tracks
            self.key = None
            self.bar_index, self.bar_start, self.bar_length = 0, 0, 0
            self.pos, self.onset_tick, self.cut_tick = -1, 0, None
            self.cur_track, self.part_track = None, None
            self.durations, self.velocities = [None] * n, [None] * n
            self.track_ends = [{} for _ in range(n)]
            self.track_max_end = [-1] * n
            self.phase = HOLE_TEMPO
        else:  # `fill`: back to where the prefix ended, for the middle's bars
            used, suffix_bars = self.used_tracks, self.bar_index
            saved = self.fim_saved.copy()  # copies of a state share it: never change it
            for name in self.__slots__:
                setattr(self, name, getattr(saved, name))
            self.used_tracks |= used
            self.fim_suffix_bars = suffix_bars
            self.fim_stage = FIM_MIDDLE
            self.phase = FILL_START

    def _take_end(self, _value: object) -> None:
        self._close_bar()
        self.phase = DONE

    def _close_bar(self) -> None:
        """A bare position before `bar` or `end` cuts the bar short there."""
        if self.phase is AFTER_POS:
            self.bar_length = self.pos
            self.cut_tick = self.bar_start + self.pos
        else:
            self.cut_tick = None


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
    "fim": GrammarState._take_fim,
}
# Indexed by family number, for the hot path of `advance`.
_HANDLER_LIST = [_HANDLERS.get(family) for family in FAMILY_NAMES]
