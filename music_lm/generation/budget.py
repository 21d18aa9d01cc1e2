"""The shortest way to the end: the fewest tokens that can still end a continuation, and
the tokens that keep that within the token budget.

`EndBudget` is a base class of `ContinuationState` (generation/state.py), kept apart so the
counting reads on its own. It reads the state's `grammar`, `constraints`, `tracks` and
`bars_started`, and its facts about the current moment (`unused_tracks`, `final_bar`,
`final_end_tick`, `_bar_content`, `_track_playable`, `_order_ok`, `_min_duration`,
`_duration_ok`); with few tokens left it tries each candidate on a `copy` and `advance`s it.
Pure Python, no torch.
"""

from __future__ import annotations

from music_lm.generation.ranges import append_id
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
    Ranges,
)
from music_lm.tokens.vocab import LONG_DURATION_STEPS, SHORT_DURATION_STEPS, bar_steps

UNREACHABLE = 1 << 30


class EndBudget:
    """The budget half of `ContinuationState`: `needed()` and the tokens that fit."""

    # On the shortest way to the end, a new bar costs at most 6 tokens (bar @p tN d: v:
    # NOTE) and a track that must still play at most 5 (@p tN d: v: NOTE).
    BAR_COST = 6
    TRACK_COST = 5

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

    def _fitting(self, ranges: Ranges, left: int) -> Ranges:
        """The tokens of `ranges` after which the end still fits in `left - 1` tokens."""
        out: Ranges = []
        for lo, hi in ranges:
            for token in range(lo, hi):
                trial = self.copy()
                trial.advance(token)
                if trial.done or trial.needed() <= left - 1:
                    append_id(out, token)
        return out
