"""The continuation state: the grammar's allowed-token set, narrowed by the constraints.

Pure Python, no torch. `ContinuationState` walks the same `GrammarState` as the parser and,
at every step, narrows its allowed ranges by the constraints: a key or scale, a pitch range
per instrument, a maximum polyphony, the instruments that may play, exactly N new bars then
the end, no new tempo/meter/key, no empty bars, and a token budget. Each factor removes
only tokens that would break a constraint or strand the piece (leave no valid way to the
end within the budget), so sampling from what is left always ends in a valid piece that
keeps every constraint: they hold by construction, not by rejection.

The rules, per family, in the continuation (after the seed), one method each in `_RULES`:

- the first token is `bar` (which also closes a seed whose last bar is cut short); new bars
  are whole: `bar` and `end` never follow a bare position; `bar` needs the current bar to
  be non-empty (a note starts in it or sounds into it) and fewer than N new bars begun;
  `end` needs N bars and a note in the last one;
- tempo / ts / key words only where unlocked;
- a track (its `tN` word, or its notes when it continues without one) only if the
  instruments allow it, it has a free voice under the polyphony limit, and in the last bar,
  at its last position, it leaves room for the tracks that have not played yet;
- durations only where some allowed pitch can still sound that long (a pitch may not end
  before a still-sounding note of the same pitch) and, under a polyphony limit, where the
  last bar keeps a free voice somewhere (else it could hold no onset, and `end` needs one);
- pitches only in the scale and the track's range, while the track has a free voice; under
  a chord lock, in the chord at the onset (generation/chord_state.py);
- the decoding defaults (each off by its `Constraints` field): a pitch at most once per
  track and onset (chords strictly rise); drum keys of the kit only, and one drum length;
  durations that end by the end of the last new bar, no pitch the seed holds past it, and
  no meter change that would end the piece before a note; and the loop guard
  (generation/repeats.py), which leaves out tokens that stretch a run of repeats while
  another token is allowed;
- with few tokens left, only tokens after which the shortest way to the end still fits
  (generation/budget.py).

The voices under the polyphony limit are kept by `Voices` (generation/polyphony.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from music_lm.generation.budget import UNREACHABLE, EndBudget
from music_lm.generation.chord_state import ChordPitches
from music_lm.generation.constraints import DRUM_STEPS_AUTO, GM_KIT, ConstraintError, Constraints
from music_lm.generation.polyphony import Voices
from music_lm.generation.ranges import append_id, intersect, note_ranges, without
from music_lm.generation.repeats import RepeatGuard
from music_lm.midi.gm import GM_PROGRAMS
from music_lm.tokens.grammar import GrammarState
from music_lm.tokens.rules import (
    AFTER_DUR,
    AFTER_DUR_LONG,
    AFTER_KEY,
    AFTER_NOTE,
    AFTER_POS,
    AFTER_TEMPO,
    AFTER_TRACK,
    AFTER_TS,
    BAR,
    BAR_START,
    INST,
    KEY_OR_INST,
    Ranges,
)
from music_lm.tokens.vocab import (
    GRID_PER_QUARTER,
    LONG_DURATION_STEPS,
    MAX_DURATION_STEPS,
    SHORT_DURATION_STEPS,
    VOCAB,
    bar_steps,
)

R = VOCAB.ranges
_FAM = VOCAB.family_of
_VAL = VOCAB.values
_PITCH0 = R["pitch"].start
_DRUM0 = R["drum"].start
_POS0 = R["pos"].start
_TRACK0 = R["track"].start
_LONG_BELOW = {v: sum(w for w in LONG_DURATION_STEPS if w < v) for v in LONG_DURATION_STEPS}
# Where a group's track must be checked before it may play: it continues without a tN
# word, or its tN word was just taken.
_CHECKED_PHASES = frozenset((AFTER_POS, AFTER_TEMPO, AFTER_KEY, AFTER_TRACK))
# --drum-length auto: the seed's most common drum duration when it is at most an eighth
# note, else a sixteenth (drum sounds are one-shots; a long drum note only clutters a DAW).
_LONGEST_AUTO_DRUM_STEPS = GRID_PER_QUARTER // 2
_DEFAULT_DRUM_STEPS = GRID_PER_QUARTER // 4


def _scale_pitches(low: int, high: int, classes: frozenset[int] | None) -> frozenset[int]:
    """The pitches low..high whose class is in `classes` (None: all)."""
    return frozenset(p for p in range(low, high + 1) if classes is None or p % 12 in classes)


@dataclass
class _Track:
    program: int
    drums: bool
    allowed: bool
    pitch_ranges: Ranges = field(default_factory=list)  # allowed pitch (or drum) token ids
    pitches: frozenset[int] = frozenset()  # the same, as MIDI pitches (or drum keys)


class ContinuationState(EndBudget, ChordPitches):
    """The grammar state of a piece being continued, narrowed by constraints.

    Made from the seed's token ids (a header, and whole bars); `allowed_ranges(left)` gives
    the ids that may come next with `left` tokens of budget left (this one included), and
    `advance(id)` takes one. `needed()` (from `EndBudget`) is the fewest tokens that can
    still end the piece.
    """

    def __init__(self, seed_ids: Iterable[int], constraints: Constraints) -> None:
        self.grammar = GrammarState()
        self.voices = Voices(constraints.max_polyphony)
        self.repeats = RepeatGuard(constraints.loop_guard)
        seed_ids = list(seed_ids)
        drum_lengths: Counter[int] = Counter()  # the seed's drum note durations
        drum_keys: set[int] = set()
        for token in seed_ids:
            self.grammar.advance(token)
            self.voices.take(token, self.grammar)
            if _FAM[token] == "drum":
                end = self.grammar.onset_notes[-1][2]
                drum_lengths[end - self.grammar.onset_tick] += 1
                drum_keys.add(_VAL[token])
        g = self.grammar
        whole_bars = g.phase in (AFTER_NOTE, BAR_START, AFTER_TS) or (
            g.phase is AFTER_POS and g.pos > 0  # the last bar cut short at a bare position
        )
        header_alone = g.phase in (KEY_OR_INST, INST) and g.n_tracks
        if not (whole_bars or header_alone):
            raise ConstraintError(
                "the seed must be a header and whole bars, ending where a bar may begin"
            )
        self.constraints = c = constraints
        programs = self._programs(seed_ids)
        if not programs:
            raise ConstraintError("the seed declares no instruments")
        self.bars_started = 0
        self.first_new_bar_tick = g.bar_start + g.bar_length if g.bar_index else 0
        if g.phase is AFTER_POS:  # the seed's last bar is cut short at its bare position
            self.first_new_bar_tick = g.onset_tick
        # Every new drum note lasts this long (None: any length); in the last steps of the
        # piece, only as long as there is left.
        self.drum_steps = c.drum_steps
        if c.drum_steps == DRUM_STEPS_AUTO:
            usual = max(drum_lengths, key=lambda d: (drum_lengths[d], -d), default=None)
            short = usual is not None and usual <= _LONGEST_AUTO_DRUM_STEPS
            self.drum_steps = usual if short else _DEFAULT_DRUM_STEPS
        kit = {"gm": GM_KIT, "seed": frozenset(drum_keys) or GM_KIT, "any": range(128)}
        self.tracks: list[_Track] = []
        for index, program in enumerate(programs):
            allowed = c.instruments is None or program in c.instruments
            track = _Track(program, program == -1, allowed)
            if track.drums:
                notes = frozenset(kit[c.drum_keys])
            else:
                notes = _scale_pitches(*c.track_pitches(program))
            # A note the seed holds past the end of the last new bar leaves its pitch
            # unplayable: a new note of it could only end later still.
            track.pitches = notes - self._held_past_end(index)
            track.pitch_ranges = note_ranges(_DRUM0 if track.drums else _PITCH0, track.pitches)
            need = 1 if track.drums else (c.max_polyphony or 0) + 1
            if allowed and len(track.pitches) < need:
                kind = "drum keys" if track.drums else "pitches in its range and scale"
                held = " that the seed does not hold past the end" if not c.hold_past_end else ""
                raise ConstraintError(
                    f"track {index + 1} ({_program_name(program)}) has {len(track.pitches)} "
                    f"{kind}{held}; it needs at least {need}"
                )
            self.tracks.append(track)
        self._begin_chords(programs)
        if not any(t.allowed for t in self.tracks):
            raise ConstraintError("none of the seed's instruments is among the allowed instruments")
        for index, track in enumerate(self.tracks):
            if not track.allowed and not g.used_tracks >> index & 1:
                raise ConstraintError(
                    f"track {index + 1} ({_program_name(track.program)}) has not played in the "
                    "seed and is not among the allowed instruments; leave it out of the header"
                )
        self.bar_has_note = False  # a note began in the current new bar
        self._group_ok: bool | None = None  # per step: see `_group_track`
        if c.max_polyphony is not None and not any(
            self._free_at_final(j, self.final_end_tick()) for j in range(len(self.tracks))
        ):
            raise ConstraintError(
                "the seed's notes hold every voice of every allowed track through the last "
                f"new bar: no note could start in it under --max-polyphony {c.max_polyphony}"
            )

    def _held_past_end(self, track: int) -> set[int]:
        """The pitches (drum keys) of `track` that the seed holds past the end of the last
        new bar; none when notes may ring past the end."""
        if self.constraints.hold_past_end:
            return set()
        final = self.final_end_tick()
        g = self.grammar
        held = {p for p, end in g.track_ends[track].items() if end > final}
        return held | {p for t, p, end in g.onset_notes if t == track and end > final}

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

    def _voice_free(self, track: int) -> bool:
        return self.voices.free(track, self.grammar.onset_tick)

    def _saturation_ok(self, track: int, end: int) -> bool:
        """Whether a new note of `track` ending at `end` leaves some allowed track a free
        voice at the last tick of the last bar, so that the last bar can still get the
        onset that `end` needs. Once the last bar has begun, its first note is that onset."""
        if self.voices.limit is None or self.tracks[track].drums or self.final_bar():
            return True
        final = self.final_end_tick()
        if end < final:
            return True
        return any(
            self._free_at_final(j, final, extra=int(j == track)) for j in range(len(self.tracks))
        )

    def _free_at_final(self, track: int, final: int, extra: int = 0) -> bool:
        """Whether `track` may play and keeps a free voice at the last tick before `final`."""
        if not self.tracks[track].allowed:
            return False
        return self.voices.free_before(track, self.grammar.onset_tick, final, extra)

    def _onset_pitches(self, track: int) -> set[int]:
        """The pitches (drum keys) `track` has started at the current onset."""
        return {p for t, p, _ in self.grammar.onset_notes if t == track}

    def _min_duration(self, track: int, at: int | None = None) -> int:
        """Shortest duration that leaves one of the track's allowed pitches playable, at
        the current onset or at a later tick `at` (as the notes sounding now leave it);
        UNREACHABLE when none is. A pitch the track has started at this onset is taken
        unless unisons are allowed; with them, it may sound again no shorter."""
        if at is None:
            pitches = self._pitches_here(track)[0]
        elif self._chord_locked(track):
            # a later onset's chord is not known yet: the dearest of the chart's chords
            return max(self._shortest(track, at, p) for p in self._chart_pitches(track))
        else:
            pitches = self.tracks[track].pitches
        return self._shortest(track, at, pitches)

    def _shortest(self, track: int, at: int | None, pitches: frozenset[int]) -> int:
        """`_min_duration` over the allowed pitches `pitches`."""
        g = self.grammar
        now = g.onset_tick if at is None else at
        taken: set[int] = set()
        ends = g.track_ends[track]
        if at is None and g.onset_notes:
            if self.constraints.unisons:
                ends = dict(ends)
                for t, p, e in g.onset_notes:
                    if t == track and ends.get(p, -1) < e:
                        ends[p] = e
            else:
                taken = self._onset_pitches(track)
        if g.track_max_end[track] <= now and not taken:
            return 1 if pitches else UNREACHABLE  # nothing of this track sounds
        busy = sum(1 for p, e in ends.items() if e > now and p not in taken) + len(taken)
        if busy < len(pitches):
            return 1  # some allowed pitch is silent and free
        lowest = UNREACHABLE
        for pitch in pitches:
            if pitch in taken:
                continue
            end = ends.get(pitch, -1)
            if end <= now:
                return 1
            lowest = min(lowest, end - now)
        return lowest

    def _duration_bounds(self, track: int) -> tuple[int, int]:
        """(shortest, longest) duration a new note of `track` may take at the current
        onset: long enough to leave an allowed pitch playable, short enough to end by the
        end of the last new bar; a drum note takes the one drum length (or what is left
        of the piece). Shortest > longest: the track cannot start a note here."""
        g = self.grammar
        lowest = self._min_duration(track)
        longest = MAX_DURATION_STEPS
        if not self.constraints.hold_past_end:
            longest = min(longest, self.final_end_tick() - g.onset_tick)
        if self.tracks[track].drums and self.drum_steps is not None:
            fixed = min(self.drum_steps, longest)
            return (fixed, fixed) if lowest <= fixed else (lowest, fixed)
        return lowest, longest

    def _track_playable(self, track: int) -> bool:
        """Whether `track` may start a note at the current onset (with the shortest
        duration that its pitches allow)."""
        info = self.tracks[track]
        if not info.allowed or not self._voice_free(track):
            return False
        lowest, longest = self._duration_bounds(track)
        return lowest <= longest and self._saturation_ok(track, self.grammar.onset_tick + lowest)

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
        return self.voices.sound_after(self.grammar.bar_start)

    def _duration_ok(self, track: int, steps: int | None) -> bool:
        if steps is None:
            return False
        lowest, longest = self._duration_bounds(track)
        if not lowest <= steps <= longest:
            return False
        return self._saturation_ok(track, self.grammar.onset_tick + steps)

    # ---- what may come next: the grammar's ranges, then one rule per family ----

    def allowed_ranges(self, left: int | None = None) -> Ranges:
        """Ids allowed next, with `left` tokens of budget left (None: no budget)."""
        ranges = self._constrained_ranges()
        if left is not None and left - self.needed() < self.BAR_COST + self.TRACK_COST:
            # Few tokens left: keep only tokens after which the end still fits.
            ranges = self._fitting(ranges, left)
        # The loop guard leaves out tokens that would stretch a run of repeats, while some
        # other token is allowed: every token here leads to a valid end, so any will do.
        banned = self.repeats.banned() if self.bars_started else None
        if banned:
            kept = without(ranges, banned)
            if kept:
                return kept
        return ranges

    def _constrained_ranges(self) -> Ranges:
        if self.bars_started == 0:
            return [(BAR, BAR + 1)]
        out: Ranges = []
        self._group_ok = None  # may the group's track play here? (asked once, when needed)
        rule_of = _RULE_OF_ID
        for lo, hi in self.grammar.allowed_ranges():
            rule_of[lo](self, lo, hi, out)
        return out

    # Each rule adds to `out` what it keeps of the grammar's range lo..hi of its family.

    # A position with nothing after it would cut the bar short (the grammar's pickups and
    # mid-bar meter changes): the continuation's bars are whole, so `bar` and `end` follow
    # an onset's content, never a bare position.
    def _rule_bar(self, lo: int, hi: int, out: Ranges) -> None:
        if self.grammar.phase is AFTER_POS:
            return
        if self.bars_started < self.constraints.bars and self._bar_content():
            out.append((lo, hi))

    def _rule_end(self, lo: int, hi: int, out: Ranges) -> None:
        if self.grammar.phase is not AFTER_POS and self.final_bar() and self.bar_has_note:
            out.append((lo, hi))

    def _rule_tempo(self, lo: int, hi: int, out: Ranges) -> None:
        if not self.constraints.lock_tempo:
            out.append((lo, hi))

    def _rule_key(self, lo: int, hi: int, out: Ranges) -> None:
        if not self.constraints.lock_key:
            out.append((lo, hi))

    def _rule_ts(self, lo: int, hi: int, out: Ranges) -> None:
        if not self.constraints.lock_meter:
            out += self._meters_ok(lo, hi)

    def _rule_pos(self, lo: int, hi: int, out: Ranges) -> None:
        out += self._positions(lo, hi)

    def _rule_track(self, lo: int, hi: int, out: Ranges) -> None:
        for token in range(lo, hi):
            track = token - _TRACK0
            if self._track_playable(track) and self._order_ok(track):
                append_id(out, token)

    def _open_group_track(self) -> int | None:
        """The track a note group would play on here, if it has a voice free; else None."""
        track = self._group_track()
        return track if track is not None and self._voice_free(track) else None

    def _long_steps_so_far(self) -> int:
        """The steps of the duration's long parts (d:N+) already written in this group."""
        g = self.grammar
        return g.pending_long if g.phase is AFTER_DUR_LONG else 0

    # A note takes its group's duration: one carried over (a note straight after a
    # position or a track word) must still be a duration the track may take here.
    def _rule_pitch(self, lo: int, hi: int, out: Ranges) -> None:
        track = self._open_group_track()
        if track is None or not self._duration_ok(track, self.grammar.durations[track]):
            return
        out += self._notes(track, lo, hi)

    _rule_drum = _rule_pitch

    def _notes(self, track: int, lo: int, hi: int) -> Ranges:
        """The grammar's note ids lo..hi that `track` may take: its pitches (drum keys),
        each at most once per onset unless unisons are allowed."""
        notes = intersect([(lo, hi)], self._pitches_here(track)[1])
        if self.constraints.unisons:
            return notes
        first = _DRUM0 if self.tracks[track].drums else _PITCH0
        return without(notes, {first + p for p in self._onset_pitches(track)})

    def _rule_dur(self, lo: int, hi: int, out: Ranges) -> None:
        track = self._open_group_track()
        if track is None:
            return  # a new group of this part would have no note to play
        g = self.grammar
        now = g.onset_tick
        min_dur, max_dur = self._duration_bounds(track)
        long_steps = self._long_steps_so_far()
        kept: Ranges = []
        for token in range(lo, hi):
            total = long_steps + _VAL[token]
            if min_dur <= total <= max_dur and self._saturation_ok(track, now + total):
                append_id(kept, token)
        out += kept

    def _rule_dur_long(self, lo: int, hi: int, out: Ranges) -> None:
        track = self._open_group_track()
        if track is None:
            return  # a new group of this part would have no note to play
        g = self.grammar
        now = g.onset_tick
        min_dur, max_dur = self._duration_bounds(track)
        long_steps = self._long_steps_so_far()
        # A later group of the onset must outlast the one before it (the grammar's rule).
        first = g.group_is_first if g.phase is AFTER_DUR_LONG else g._first_group()
        if not first:
            min_dur = max(min_dur, (g.durations[track] or 0) + 1)
        kept: Ranges = []
        for token in range(lo, hi):
            value = _VAL[token]
            # the totals this long part can still lead to: from it plus one step (or
            # the shortest total allowed) up to it plus every smaller long part plus the
            # longest short one
            reach = long_steps + value + _LONG_BELOW[value] + SHORT_DURATION_STEPS
            shortest = max(long_steps + value + 1, min_dur)
            if (
                reach >= min_dur
                and shortest <= max_dur
                and self._saturation_ok(track, now + shortest)
            ):
                append_id(kept, token)
        out += kept

    def _rule_vel(self, lo: int, hi: int, out: Ranges) -> None:
        track = self._open_group_track()
        if track is None:
            return  # a new group of this part would have no note to play
        # the group keeps the current duration unless it states one first
        g = self.grammar
        if g.phase is AFTER_DUR or self._duration_ok(track, g.durations[track]):
            out.append((lo, hi))

    def _rule_none(self, lo: int, hi: int, out: Ranges) -> None:
        """A header family: none comes after the seed."""

    def _group_track(self) -> int | None:
        """The track a DUR/VEL/note token here belongs to, or None when it may not play
        here. Where it continues without a tN word, or just got one, it must be playable
        and keep the order: asked once per step, by the first family that needs it."""
        g = self.grammar
        track = g._group_track()
        if track is None or g.phase not in _CHECKED_PHASES:
            return track
        ok = self._group_ok
        if ok is None:
            ok = self._group_ok = self._track_playable(track) and self._order_ok(track)
        return track if ok else None

    def _meters_ok(self, lo: int, hi: int) -> Ranges:
        """Meters under which the piece still ends after every note so far (unless notes
        may ring past the end) and, under a polyphony limit, the last bar keeps a voice."""
        cap = not self.constraints.hold_past_end
        if self.voices.limit is None and not cap:
            return [(lo, hi)]
        latest = self.voices.latest_end()
        out: Ranges = []
        for token in range(lo, hi):
            final = self.final_end_tick(bar_steps(*_VAL[token]))
            if cap and final < latest:
                continue
            if self.voices.limit is None or any(
                self._free_at_final(j, final) for j in range(len(self.tracks))
            ):
                append_id(out, token)
        return out

    def _positions(self, lo: int, hi: int) -> Ranges:
        """Positions where some allowed track has a free voice (voices only free up as
        time goes on, so these are the positions from the earliest such tick on)."""
        earliest = None
        bar_start = self.grammar.bar_start
        for j, track in enumerate(self.tracks):
            if not track.allowed:
                continue
            first = self.voices.first_free_step(j, bar_start)
            if track.drums:
                first = max(first, self._first_free_drum_step(j, bar_start))
            earliest = first if earliest is None else min(earliest, first)
        if earliest is None:
            return []
        start = max(lo, _POS0 + earliest)
        return [(start, hi)] if start < hi else []

    def _first_free_drum_step(self, track: int, bar_start: int) -> int:
        """The first position in the bar from `bar_start` where a drum note of the drum
        length may start: some key of the kit is silent, or ends by the note's end. (Every
        key ends by the end of the last new bar, so a later position never loses this.)"""
        if self.drum_steps is None:
            return 0
        ends = self.grammar.track_ends[track]
        keys = self.tracks[track].pitches
        soonest = min(ends.get(k, -1) for k in keys)
        return max(soonest - self.drum_steps - bar_start, 0)

    # ---- taking a token ----

    def advance(self, token: int) -> None:
        """Take one token (the grammar's GrammarError if it breaks the grammar)."""
        self.grammar.advance(token)
        self.voices.take(token, self.grammar)
        self.repeats.take(token)
        family = _FAM[token]
        if family == "bar":
            self.bars_started += 1
            self.bar_has_note = False
        elif family in ("pitch", "drum") and self.bars_started:
            self.bar_has_note = True

    def copy(self) -> ContinuationState:
        new = ContinuationState.__new__(ContinuationState)
        new.__dict__.update(self.__dict__)
        new.grammar = self.grammar.copy()
        new.voices = self.voices.copy()
        new.repeats = self.repeats.copy()
        return new


# The rule of each family, like the grammar's `_RULES`; indexed by token id for the hot path.
_RULES: dict[str, Callable[[ContinuationState, int, int, Ranges], None]] = {
    "bar": ContinuationState._rule_bar,
    "end": ContinuationState._rule_end,
    "tempo": ContinuationState._rule_tempo,
    "key": ContinuationState._rule_key,
    "ts": ContinuationState._rule_ts,
    "pos": ContinuationState._rule_pos,
    "track": ContinuationState._rule_track,
    "dur_long": ContinuationState._rule_dur_long,
    "dur": ContinuationState._rule_dur,
    "vel": ContinuationState._rule_vel,
    "pitch": ContinuationState._rule_pitch,
    "drum": ContinuationState._rule_drum,
}
_RULE_OF_ID = [_RULES.get(family, ContinuationState._rule_none) for family in _FAM]


def _program_name(program: int) -> str:
    return "drums" if program < 0 else GM_PROGRAMS[program]
