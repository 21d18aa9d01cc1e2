"""Track infilling's decoding state: some tracks drawn anew over a region of bars while every
other token of the piece is forced, one allowed token at a time.

The piece is cut into a prefix (the header and the bars before the region), the region and
a suffix (the bars after it, and `end`). The prefix is the seed. In the region, the kept
tracks' notes, the bar lines, the meters and the tempo and key changes are a template
(`KeptBar`s); the regenerated tracks' parts are sampled around it under the constraints of
`ContinuationState`, in the grammar's order (parts in ascending track order at an onset):

- a position may not pass the next kept onset; at a kept onset, its tempo and key words
  come forced, then its kept parts, each when its turn in track order comes: a regenerated
  track below it may play first, one above it only after;
- a kept part's words are forced; only its `tN` word is worked out anew (it is left out
  where the grammar leaves it out: the onset's first part, continuing the current track);
- a bar ends where the original did (a cut bar at its bare position), once its kept onsets
  are all done; after the region's last bar comes the suffix's first word, and then the
  state is done: the rest of the suffix follows word for word (`finished`).

Since the kept tracks' per-bar durations and velocities depend only on their own words, the
forced words are grammatical wherever they come, and every choice left to the sampler keeps
a way to the end open: outside the region the text is the original, word for word.
Pure Python, no torch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from music_lm.generation.constraints import Constraints
from music_lm.generation.ranges import without
from music_lm.generation.state import ContinuationState
from music_lm.tokens.grammar import GrammarState
from music_lm.tokens.rules import (
    AFTER_DUR,
    AFTER_DUR_LONG,
    AFTER_POS,
    AFTER_TRACK,
    AFTER_VEL,
    BAR,
    CONTINUING_PHASES,
    Ranges,
)
from music_lm.tokens.vocab import VOCAB

R = VOCAB.ranges
_FAM = VOCAB.family_of
_VAL = VOCAB.values
_POS0 = R["pos"].start
_TRACK0 = R["track"].start
_OPEN_PHASES = frozenset((AFTER_TRACK, AFTER_DUR_LONG, AFTER_DUR, AFTER_VEL))  # a group begun
_GROUP_FAMILIES = frozenset(("dur_long", "dur", "vel", "pitch", "drum"))
# Words of new parts per region bar; once a bar has taken all but the reserve, its new parts
# only finish what they began: the reserve holds an open group (at most nine duration words,
# a velocity and a note) and the tracks that must still play (six words or so each).
PER_BAR_WORDS = 256
_CLOSING_RESERVE = 96


@dataclass
class KeptPart:
    """One kept track's part at an onset: its groups' words, without its `tN` word."""

    track: int  # 0-based
    words: list[int] = field(default_factory=list)


@dataclass
class KeptOnset:
    """A kept onset: its position, its tempo/key words, its kept parts in track order."""

    position_steps: int
    head: list[int] = field(default_factory=list)
    parts: list[KeptPart] = field(default_factory=list)


@dataclass
class KeptBar:
    """A bar of the region as a template: `bar` and its meter word, the kept onsets, and
    the bare position that cuts it short (None: a whole bar)."""

    head: list[int]
    onsets: list[KeptOnset] = field(default_factory=list)
    cut_steps: int | None = None


def owners(ids: Sequence[int]) -> list[int | None]:
    """For each token of a valid piece, the 0-based track its `tN` word or note group belongs
    to; None for every other word."""
    state = GrammarState()
    out: list[int | None] = []
    for token in ids:
        state.advance(token)
        family = _FAM[token]
        out.append(state.part_track if family == "track" or family in _GROUP_FAMILIES else None)
    return out


def region_template(
    region: Sequence[int], owner: Sequence[int | None], regenerated: frozenset[int]
) -> list[KeptBar]:
    """The region's words (from its first `bar`) as KeptBars, the `regenerated` tracks' parts
    left out. `owner`: `owners` of the same words."""
    bars: list[KeptBar] = []
    onset: KeptOnset | None = None
    for index, token in enumerate(region):
        family, track = _FAM[token], owner[index]
        if family == "bar":
            bars.append(KeptBar([token]))
            onset = None
        elif family == "ts":
            bars[-1].head.append(token)
        elif family == "pos":
            onset = KeptOnset(_VAL[token])
            bars[-1].onsets.append(onset)
        elif family in ("tempo", "key"):
            onset.head.append(token)
        elif family == "track":
            onset.parts.append(KeptPart(track))
        elif family in _GROUP_FAMILIES:
            if not onset.parts or onset.parts[-1].track != track:
                onset.parts.append(KeptPart(track))  # continues the current track, no tN
            onset.parts[-1].words.append(token)
    for bar in bars:
        if bar.onsets and not bar.onsets[-1].head and not bar.onsets[-1].parts:
            bar.cut_steps = bar.onsets.pop().position_steps  # a bare position ends the bar
        for kept in bar.onsets:
            kept.parts = [p for p in kept.parts if p.track not in regenerated]
        bar.onsets = [o for o in bar.onsets if o.head or o.parts]
    return bars


def _by_family(ranges: Ranges):
    """(family, lo, hi) for each piece of `ranges` within one family."""
    for lo, hi in ranges:
        while lo < hi:
            family = _FAM[lo]
            stop = min(hi, R[family].stop)
            yield family, lo, stop
            lo = stop


class InfillState(ContinuationState):
    """The decoding state of a track infill: `ContinuationState`'s rules for the
    regenerated tracks, the template's words forced around them (see the module's doc).

    prefix: the seed (header, with any added track, and the bars before the region).
    bars: the region's template. suffix: the words after the region, from its `bar` or
    `end`. regenerated: the 0-based tracks drawn anew. must_play: those of them with no
    note outside the region (each must play in it). region_end_tick: where the region ends
    (new notes end by then). per_bar: once the new parts of a bar have taken about this
    many words, they may only finish what they began (see `_closing`), so a variant
    always ends within `infill_budget`."""

    def __init__(
        self,
        prefix: Sequence[int],
        bars: list[KeptBar],
        suffix: Sequence[int],
        regenerated: frozenset[int],
        must_play: frozenset[int],
        region_end_tick: int,
        constraints: Constraints,
        per_bar: int = PER_BAR_WORDS,
    ) -> None:
        self.region_end_tick = region_end_tick  # read by final_end_tick, in super().__init__
        # The region keeps the piece's tempo, meter and key: their words are forced.
        locked = replace(constraints, bars=len(bars), instruments=None, lock_tempo=True,
                         lock_meter=True, lock_key=True)  # fmt: skip
        super().__init__(prefix, locked)
        for index, track in enumerate(self.tracks):
            track.allowed = index in regenerated
        self.template = bars
        self.suffix = list(suffix)
        self.regenerated = regenerated
        self.must_play = must_play
        self.queue: deque[int] = deque()  # forced words still to come
        self.bar: KeptBar | None = None  # the region bar being written
        self.next_onset = 0  # index in bar.onsets of the next kept onset
        self.kept: KeptOnset | None = None  # the kept onset the current position is
        self.next_part = 0  # index in kept.parts of the next kept part
        self.in_suffix = False
        self.bar_new_words = 0  # words of new parts in the current region bar
        self.closing_after = per_bar - _CLOSING_RESERVE
        # The model reads a fill-in-the-middle prompt (bars mode): the sampler then reads
        # its `end` as "this bar is done" (sampling._bar_means_end).
        self.fim_prompt = False

    @property
    def done(self) -> bool:
        """Once the suffix's first word is taken, the rest is the suffix word for word:
        nothing is left to draw (`finished` appends it)."""
        return self.in_suffix or self.grammar.done

    def finished(self, ids: Sequence[int]) -> list[int]:
        """The whole piece: the words drawn (from the seed on) and the rest of the suffix."""
        return [*ids, *self.suffix[1:]]

    # ---- facts the base state's rules read ----

    def final_end_tick(self, bar_length: int | None = None) -> int:
        return self.region_end_tick

    def unused_tracks(self) -> list[int]:
        g = self.grammar
        return sorted(t for t in self.must_play if not g.used_tracks >> t & 1)

    def _last_position(self) -> bool:
        g = self.grammar
        end = g.bar_length if self.bar is None or self.bar.cut_steps is None else self.bar.cut_steps
        return g.pos == end - 1

    # ---- what may come next ----

    def allowed_ranges(self, left: int | None = None) -> Ranges:
        """Ids allowed next: one forced word, or the regenerated tracks' choices and the
        template's next word (the token budget `left` is not used: see `infill_budget`)."""
        if self.queue:
            return [(self.queue[0], self.queue[0] + 1)]
        if self.bars_started == 0:
            return [(BAR, BAR + 1)]
        g = self.grammar
        if self.bar.cut_steps is not None and g.phase is AFTER_POS and g.pos == self.bar.cut_steps:
            # nothing may sound at the bare position that cuts the bar: it ends here
            token = self._closing_word()
            return [] if token is None else [(token, token + 1)]
        ranges = self._sampled()
        banned = self.repeats.banned()
        if banned:
            ranges = without(ranges, banned) or ranges
        forced = self._template_next()
        return sorted(ranges + [(t, t + 1) for t in forced if not _within(t, ranges)])

    def _pending_part(self) -> KeptPart | None:
        if self.kept is not None and self.next_part < len(self.kept.parts):
            return self.kept.parts[self.next_part]
        return None

    def _sampled(self) -> Ranges:
        """The base state's choices for the regenerated tracks, cut to the template."""
        g = self.grammar
        part = self._pending_part()
        below = _TRACK0 + part.track if part is not None else None
        onsets_left = self.next_onset < len(self.bar.onsets)
        closing = self._closing()
        out: Ranges = []
        for family, lo, hi in _by_family(self._constrained_ranges()):
            if closing and family != "bar":
                continue
            if family == "pos":
                if part is not None:
                    continue  # the kept parts of this onset come first
                if onsets_left:
                    stop = self.bar.onsets[self.next_onset].position_steps
                elif self.bar.cut_steps is not None:
                    stop = self.bar.cut_steps
                else:
                    stop = None
                if stop is not None:
                    hi = min(hi, _POS0 + stop)
            elif family == "track":
                if below is not None:
                    hi = min(hi, below)
            elif family in _GROUP_FAMILIES:
                track = g._group_track()
                if track is None or track not in self.regenerated:
                    continue
                if part is not None and g.phase in CONTINUING_PHASES and track > part.track:
                    continue
            elif family == "bar":
                if part is not None or onsets_left or self.bar.cut_steps is not None:
                    continue
            else:
                continue  # `end` (the suffix's first word comes from `_template_next`)
            if lo < hi:
                out.append((lo, hi))
        return out

    def _closing(self) -> bool:
        """Whether the new parts of this bar have used up their words: then no new position,
        part, group or note may start; an open group, and an onset that has nothing yet,
        are finished; a bar with no note yet, or a track that must still play, wait."""
        if self.bar_new_words < self.closing_after:
            return False
        g = self.grammar
        if g.phase in _OPEN_PHASES or (g.phase is AFTER_POS and self._pending_part() is None):
            return False
        return self._bar_content() and not (self.final_bar() and self.unused_tracks())

    def _template_next(self) -> list[int]:
        """The template's words that may come next: the next kept part, the next kept
        position, the bare position that cuts the bar, or the word after the region."""
        g = self.grammar
        part = self._pending_part()
        if part is not None:
            start = self._part_start(part)
            unused = self.unused_tracks()
            # at the very end, a track that has still to play and comes before this part
            # takes its turn first
            last = self.final_bar() and self._last_position()
            if (last and unused and unused[0] < part.track) or not g.is_allowed(start):
                return []  # (not allowed: in the middle of a regenerated track's group)
            return [start]
        if self.next_onset < len(self.bar.onsets):
            token = _POS0 + self.bar.onsets[self.next_onset].position_steps
            return [token] if g.is_allowed(token) else []
        if self.bar.cut_steps is not None:
            token = _POS0 + self.bar.cut_steps
            ready = self._bar_content() and not (self.final_bar() and self.unused_tracks())
            return [token] if ready and g.is_allowed(token) else []
        if self.final_bar() and g.phase is not AFTER_POS:
            token = self._closing_word()
            ready = token is not None and self._bar_content() and not self.unused_tracks()
            return [token] if ready else []
        return []  # a whole bar before the last: the base state's `bar` rule closes it

    def _closing_word(self) -> int | None:
        """The word that closes the current region bar, where the grammar allows it here:
        the next region bar's `bar`, or the suffix's first word (`bar` or `end`)."""
        token = self.suffix[0] if self.final_bar() else BAR
        return token if self.grammar.is_allowed(token) else None

    def _part_start(self, part: KeptPart) -> int:
        """The first word of a kept part here: its `tN`, or its first group word where the
        onset continues the part's track without one."""
        g = self.grammar
        if g.phase in CONTINUING_PHASES and g.cur_track == part.track:
            return part.words[0]
        return _TRACK0 + part.track

    # ---- taking a token ----

    def advance(self, token: int) -> None:
        if self.queue:
            expected = self.queue.popleft()
            assert token == expected, (VOCAB.tokens[token], VOCAB.tokens[expected])
            super().advance(token)
            return
        part = self._pending_part()
        starts_part = part is not None and token == self._part_start(part)
        super().advance(token)
        family = _FAM[token]
        if starts_part:
            self.queue.extend(part.words if family == "track" else part.words[1:])
            self.next_part += 1
        elif family == "bar":
            self._begin_bar()
        elif family == "pos":
            self._take_position(_VAL[token])
        else:
            self.bar_new_words += 1

    def _begin_bar(self) -> None:
        if self.bars_started > len(self.template):
            self.in_suffix = True  # done: the rest is the suffix, word for word
            self.bar = None
            return
        self.bar = self.template[self.bars_started - 1]
        self.queue.extend(self.bar.head[1:])
        self.next_onset, self.kept, self.next_part = 0, None, 0
        self.bar_new_words = 0

    def _take_position(self, steps: int) -> None:
        self.kept, self.next_part = None, 0
        onsets = self.bar.onsets
        if self.next_onset < len(onsets) and onsets[self.next_onset].position_steps == steps:
            self.kept = onsets[self.next_onset]
            self.next_onset += 1
            self.queue.extend(self.kept.head)
        elif steps != self.bar.cut_steps:
            self.bar_new_words += 1

    def copy(self) -> InfillState:
        new = InfillState.__new__(InfillState)
        new.__dict__.update(self.__dict__)
        new.grammar = self.grammar.copy()
        new.voices = self.voices.copy()
        new.repeats = self.repeats.copy()
        new.queue = deque(self.queue)
        return new


def _within(token: int, ranges: Ranges) -> bool:
    return any(lo <= token < hi for lo, hi in ranges)


def infill_budget(template: list[KeptBar], region_words: int, per_bar: int = PER_BAR_WORDS) -> int:
    """The most tokens a variant may take: the region's words as they were, a `tN` word for
    every kept part, `per_bar` words of new parts per region bar, and the suffix's first."""
    parts = sum(len(o.parts) for bar in template for o in bar.onsets)
    return region_words + parts + per_bar * len(template) + 1
