"""Score <-> token text, exactly at the grid.

`to_grid` moves a score read from a file onto the codec's grid (24 steps per
quarter note) and records every change it makes; `encode` writes a grid score
as canonical token text; `decode` parses text through the grammar back into a
grid score. For a grid score S that `to_grid` produced, decode(encode(S)) == S;
for any valid text T, encode(decode(T)) == T.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from music_lm.errors import InputError
from music_lm.limits import check_length
from music_lm.midi.gm import MAX_MELODIC_TRACKS, MAX_TRACKS
from music_lm.midi.score import KeySignature, Note, Score, TempoChange, TimeSignature, Track
from music_lm.tokens.fim import HOLE, from_fim
from music_lm.tokens.grammar import GrammarError, GrammarState
from music_lm.tokens.validate import check_complete, located, walk, words_to_ids
from music_lm.tokens.vocab import (
    GRID_PER_QUARTER,
    MAX_DURATION_STEPS,
    STYLES,
    TEMPO_MAX_BPM,
    TEMPO_MIN_BPM,
    VOCAB,
    bar_steps,
    nearest_tempo,
    nearest_velocity,
    split_duration,
)

# The longest piece the codec takes is the `quarters` limit (music_lm.limits: 100,000
# quarter notes, about 14 hours at 120 BPM); only a corrupt file comes near it, and its
# text would be millions of empty bars. The same in bars of 4/4, for pieces in a short
# meter: 100,000 quarter notes of 1/32 would be 800,000 empty bars, 3 MB of text from a
# 45-byte file (found by fuzzing). The longest piece of music21's corpus has 16,368 bars.
MAX_PIECE_BARS = 25_000


class CodecError(InputError, ValueError):
    """A score the codec cannot represent; the message names the value."""


# ---- the report of what moving onto the grid changed ----


@dataclass
class GridChanges:
    """What `to_grid` kept, moved and dropped, counted against the original score."""

    notes: int = 0
    notes_exact: int = 0  # same pitch, onset, duration, velocity bin, instrument
    onsets_moved: int = 0
    max_onset_shift_quarters: float = 0.0
    durations_changed: int = 0
    max_duration_shift_quarters: float = 0.0
    velocities_binned: int = 0  # velocity not already a bin value (kept as its bin)
    max_velocity_change: int = 0
    tempos: int = 0
    tempos_exact: int = 0  # at the same grid tick, BPM within 0.5 %
    max_tempo_error_percent: float = 0.0
    same_pitch_overlaps: int = 0  # notes starting while their pitch still sounds on the track
    meta_moved: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)
    remarks: Counter[str] = field(default_factory=Counter)  # noticed while reading the file


# ---- file ticks -> grid ----


def _to_steps(tick: int, ticks_per_beat: int) -> int:
    """Nearest grid step, halves rounded up (exact integer arithmetic)."""
    return (2 * tick * GRID_PER_QUARTER + ticks_per_beat) // (2 * ticks_per_beat)


def to_grid(score: Score) -> tuple[Score, GridChanges]:
    """Move `score` onto the codec's grid, returning the grid score and the changes made.

    Onsets and note ends move to the nearest grid step (ends rather than
    durations, so legato and overlaps survive; a note keeps at least one step).
    Velocities go to their bin, tempi to the nearest tempo token (within 0.5 %),
    time signatures to the next bar line when they fall inside a bar. Nothing
    is merged unless there are more instruments than MIDI channels.
    """
    ppq = score.ticks_per_beat
    if ppq <= 0:
        raise CodecError(f"ticks_per_beat must be positive, got {ppq}")
    changes = GridChanges()
    grid = Score(GRID_PER_QUARTER, style=score.style if score.style in STYLES else "none")
    if grid.style != score.style:
        changes.dropped[f"style tag {score.style!r} (not in the vocabulary)"] += 1
    check_length(score.end_tick / ppq, "", CodecError)  # the caller names the file
    tracks = _limit_tracks([t for t in score.tracks if t.notes], changes)
    for track in tracks:
        grid.tracks.append(_track_to_grid(track, ppq, changes))
    grid.tempos = _tempos_to_grid(score.tempos, ppq, changes)
    grid.time_signatures = _time_signatures_to_grid(score.time_signatures, ppq, changes)
    grid.key_signatures = _keys_to_grid(score.key_signatures, ppq, changes)
    bars = _bar_count(grid.time_signatures, grid.end_tick)
    if bars > MAX_PIECE_BARS:
        meters = ", ".join(sorted({str(ts) for ts in grid.time_signatures}))
        raise CodecError(
            f"the piece lasts {bars:,} bars (of {meters}); at most {MAX_PIECE_BARS:,} are "
            "supported (a corrupt delta time or time signature?)"
        )
    return grid, changes


def _bar_count(signatures: list[TimeSignature], end_step: int) -> int:
    """Bars from the start to `end_step` under grid time signatures (each on a bar line)."""
    bars = 0
    for ts, following in zip(signatures, [*signatures[1:], None], strict=True):
        stop = end_step if following is None else following.tick
        length = bar_steps(ts.numerator, ts.denominator)
        bars += max(-(-(stop - ts.tick) // length), 1)  # ceiling division; a bar at least
    return bars


def _limit_tracks(tracks: list[Track], changes: GridChanges) -> list[Track]:
    """More instruments than MIDI has channels (15 melodic, 16 in all): merge the
    smallest track into the nearest one (the same instrument, else the same GM
    family, else the nearest program; drums into drums) until they fit."""

    def too_many(tracks: list[Track]) -> bool:
        melodic = sum(not t.is_drum for t in tracks)
        return len(tracks) > MAX_TRACKS or melodic > MAX_MELODIC_TRACKS

    if not too_many(tracks):
        return tracks
    out = [Track(t.program, t.is_drum, list(t.notes), t.name, t.channel) for t in tracks]

    def smallest_of(indices: list[int]) -> int:  # the fewest notes; the later track on a tie
        return min(indices, key=lambda i: (len(out[i].notes), -i))

    while too_many(out):
        melodic = [i for i, t in enumerate(out) if not t.is_drum]
        drums = [i for i, t in enumerate(out) if t.is_drum]
        pool = melodic if len(melodic) > MAX_MELODIC_TRACKS else melodic + drums
        small = smallest_of(pool)
        kind = drums if out[small].is_drum else melodic
        if len(kind) < 2:  # a lone drum track over the limit: merge a melodic pair instead
            small, kind = smallest_of(melodic), melodic
        program = out[small].program
        into = min(
            (i for i in kind if i != small),
            key=lambda i: (
                out[i].program != program,
                out[i].program // 8 != program // 8,
                abs(out[i].program - program),
                i,
            ),
        )
        smallest, target = out[small], out[into]
        target.notes.extend(smallest.notes)
        target.notes.sort()
        del out[small]
        changes.changed[
            f"tracks merged to fit MIDI's channels ({smallest.instrument_name} into "
            f"{target.instrument_name})"
        ] += 1
    return out


def _track_to_grid(track: Track, ppq: int, changes: GridChanges) -> Track:
    # Hot loop over every note of a file: integer arithmetic only, locals for lookups.
    grid, twice_ppq = 2 * GRID_PER_QUARTER, 2 * ppq
    velocity_of = nearest_velocity
    notes = []
    moved_onsets = changed_durations = binned = exact = 0
    max_onset_error = max_duration_error = max_velocity_change = 0  # in 1/(24 ppq) quarters
    for onset_tick, duration_tick, pitch, velocity in track.notes:
        onset = (grid * onset_tick + ppq) // twice_ppq  # nearest step, halves up
        end = (grid * (onset_tick + duration_tick) + ppq) // twice_ppq
        if end <= onset:
            end = onset + 1  # a note keeps at least one step
        elif end - onset > MAX_DURATION_STEPS:
            end = onset + MAX_DURATION_STEPS
            changes.changed["notes longer than 1,024 quarter notes shortened"] += 1
        onset_error = abs(onset * ppq - onset_tick * GRID_PER_QUARTER)
        duration_error = abs((end - onset) * ppq - duration_tick * GRID_PER_QUARTER)
        if onset_error:
            moved_onsets += 1
            max_onset_error = max(max_onset_error, onset_error)
        if duration_error:
            changed_durations += 1
            max_duration_error = max(max_duration_error, duration_error)
        if not onset_error and not duration_error:
            exact += 1
        binned_velocity = velocity_of(velocity)
        if binned_velocity != velocity:
            binned += 1
            max_velocity_change = max(max_velocity_change, abs(binned_velocity - velocity))
        notes.append(Note(onset, end - onset, pitch, binned_velocity))
    scale = ppq * GRID_PER_QUARTER
    changes.notes += len(notes)
    changes.notes_exact += exact
    changes.onsets_moved += moved_onsets
    changes.durations_changed += changed_durations
    changes.velocities_binned += binned
    changes.max_onset_shift_quarters = max(
        changes.max_onset_shift_quarters, max_onset_error / scale
    )
    changes.max_duration_shift_quarters = max(
        changes.max_duration_shift_quarters, max_duration_error / scale
    )
    changes.max_velocity_change = max(changes.max_velocity_change, max_velocity_change)
    notes.sort()
    repaired, overlaps = _pair_first_in_first_out(notes)
    changes.same_pitch_overlaps += overlaps
    if repaired:
        changes.changed["same-pitch overlapping notes re-paired (durations swapped)"] += repaired
    return Track(track.program, track.is_drum, notes, track.name, track.channel)


def _pair_first_in_first_out(notes: list[Note]) -> tuple[int, int]:
    """Make same-pitch notes end in the order they start (in place).

    MIDI cannot tell a note nested inside a longer one of the same pitch from
    two overlapping ones; the reader pairs first-in first-out, so the codec
    keeps notes in that form. Only tracks merged together can break it.
    Returns (notes whose end changed, notes that start while their pitch sounds).
    """
    last_end: dict[int, int] = {}
    overlaps = 0
    in_order = True
    for onset, duration, pitch, _ in notes:
        end = onset + duration
        previous = last_end.get(pitch, -1)
        if onset < previous:
            overlaps += 1
        if previous > end:
            in_order = False
        last_end[pitch] = max(previous, end)
    if in_order:
        return 0, overlaps
    by_pitch: dict[int, list[int]] = defaultdict(list)
    for i, note in enumerate(notes):
        by_pitch[note.pitch].append(i)
    changed = 0
    for indices in by_pitch.values():
        ends = sorted(notes[i].end_tick for i in indices)
        for i, end in zip(indices, ends, strict=True):
            n = notes[i]
            if n.end_tick != end:
                notes[i] = Note(n.onset_tick, end - n.onset_tick, n.pitch, n.velocity)
                changed += 1
    if changed:
        notes.sort()
    return changed, overlaps


def _tempos_to_grid(tempos: list[TempoChange], ppq: int, changes: GridChanges) -> list[TempoChange]:
    """Tempo changes on grid steps, valued as tempo tokens; MIDI's 120 BPM before the first."""
    by_step: dict[int, TempoChange] = {}
    for tempo in tempos:  # a later event on the same step wins, as in a sequencer
        step = _to_steps(tempo.tick, ppq)
        if step in by_step:
            changes.dropped["tempo events overridden on the same grid step"] += 1
        by_step[step] = tempo
    out = [TempoChange(0, 120.0)]
    for step in sorted(by_step):
        original = by_step[step]
        value = nearest_tempo(original.bpm)
        changes.tempos += 1
        changes.max_tempo_error_percent = max(
            changes.max_tempo_error_percent, abs(value - original.bpm) / original.bpm * 100
        )
        if not TEMPO_MIN_BPM <= original.bpm <= TEMPO_MAX_BPM:
            changes.changed[f"tempi outside 20..400 BPM clamped (e.g. {original.bpm:.1f})"] += 1
        elif step * ppq != original.tick * GRID_PER_QUARTER:
            changes.meta_moved["tempo changes"] += 1
        else:
            changes.tempos_exact += 1
        if step == 0:
            out[0] = TempoChange(0, value)
        elif out[-1].bpm == value:
            changes.changed["tempo changes within 0.5 % of the tempo before merged"] += 1
        else:
            out.append(TempoChange(step, value))
    return out


def _time_signatures_to_grid(
    signatures: list[TimeSignature], ppq: int, changes: GridChanges
) -> list[TimeSignature]:
    """Time signatures on their nearest grid step (4/4 before the first).

    A signature starts a bar where it stands, as in MIDI sequencers: one inside a bar
    cuts that bar short there (a pickup, or a meter change one beat into a bar), so it
    keeps its position and the bars after it keep theirs. A signature that restates the
    meter on a bar line of that meter changes nothing and is left out."""
    by_step: dict[int, TimeSignature] = {}
    for ts in signatures:
        if (ts.numerator, ts.denominator) not in VOCAB.time_signatures:
            changes.dropped[f"time signature {ts} (no token; bars keep the previous meter)"] += 1
            continue
        step = _to_steps(ts.tick, ppq)
        if step * ppq != ts.tick * GRID_PER_QUARTER:
            changes.meta_moved["time signatures"] += 1
        previous = by_step.get(step)
        if previous is not None and (previous.numerator, previous.denominator) != (
            ts.numerator,
            ts.denominator,
        ):
            changes.dropped["time signatures overridden by a later one on the same grid step"] += 1
        by_step[step] = TimeSignature(step, ts.numerator, ts.denominator)
    out = [by_step.pop(0, TimeSignature(0, 4, 4))]
    for step in sorted(by_step):
        ts, before = by_step[step], out[-1]
        same_meter = (ts.numerator, ts.denominator) == (before.numerator, before.denominator)
        if same_meter and (step - before.tick) % bar_steps(ts.numerator, ts.denominator) == 0:
            continue  # on a bar line of the same meter: no change
        out.append(ts)
    return out


def _keys_to_grid(keys: list[KeySignature], ppq: int, changes: GridChanges) -> list[KeySignature]:
    by_step: dict[int, KeySignature] = {}
    for key in keys:
        step = _to_steps(key.tick, ppq)
        if step * ppq != key.tick * GRID_PER_QUARTER:
            changes.meta_moved["key signatures"] += 1
        previous = by_step.get(step)
        if previous is not None and (previous.sharps, previous.mode) != (key.sharps, key.mode):
            changes.dropped["key signatures overridden by a later one on the same grid step"] += 1
        by_step[step] = KeySignature(step, key.sharps, key.mode)
    out: list[KeySignature] = []
    for step in sorted(by_step):
        key = by_step[step]
        if out and (out[-1].sharps, out[-1].mode) == (key.sharps, key.mode):
            continue
        out.append(key)
    return out


# ---- grid score -> token text ----

_W = VOCAB.tokens
_POS = [_W[i] for i in VOCAB.ranges["pos"]]
_DUR = [_W[i] for i in VOCAB.ranges["dur"]]
_PITCH = [_W[i] for i in VOCAB.ranges["pitch"]]
_DRUM = [_W[i] for i in VOCAB.ranges["drum"]]
_TRACK = [_W[i] for i in VOCAB.ranges["track"]]
_VEL = {VOCAB.values[i]: _W[i] for i in VOCAB.ranges["vel"]}
_LONG = {VOCAB.values[i]: _W[i] for i in VOCAB.ranges["dur_long"]}


def encode(score: Score) -> str:
    """Canonical token text of a grid score: a header line, one line per bar, 'end'.

    The score must be on the grid (`to_grid` makes one); CodecError otherwise.
    """
    if score.ticks_per_beat != GRID_PER_QUARTER:
        raise CodecError(
            f"encode needs a score on the {GRID_PER_QUARTER}-step grid, got "
            f"ticks_per_beat={score.ticks_per_beat}; use to_grid() first"
        )
    tempo0, tempos = _split_at_zero(score.tempos, TempoChange(0, 120.0))
    ts0, signatures = _split_at_zero(score.time_signatures, TimeSignature(0, 4, 4))
    key0, keys = _split_at_zero(score.key_signatures, None)
    tracks = [t for t in score.tracks if t.notes]
    header = ["piece", f"style:{score.style}", _word("tempo", tempo0.bpm)]
    header.append(_word("ts", (ts0.numerator, ts0.denominator)))
    if key0 is not None:
        header.append(_word("key", (key0.sharps, key0.mode)))
    header += [_word("inst", -1 if t.is_drum else t.program) for t in tracks]

    # Everything that happens at an onset, by absolute grid tick.
    notes_at: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for index, track in enumerate(tracks):
        for n in track.notes:
            notes_at[n.onset_tick].append((index, n.duration_tick, n.velocity, n.pitch))
    tempo_at = {t.tick: t.bpm for t in tempos}
    key_at = {k.tick: (k.sharps, k.mode) for k in keys}
    ts_at = {t.tick: (t.numerator, t.denominator) for t in signatures}
    ticks = sorted(set(notes_at) | set(tempo_at) | set(key_at))
    last_tick = max([*ticks, *ts_at], default=-1)

    lines = [" ".join(header)]
    meter = (ts0.numerator, ts0.denominator)
    bar_start, t_index = 0, 0
    ts_ticks, ts_index = sorted(ts_at), 0  # a signature starts a bar where it stands
    while bar_start <= last_tick:
        words = ["bar"]
        # a signature that restates the meter after a cut bar needs no word
        if bar_start in ts_at and bar_start > 0 and ts_at[bar_start] != meter:
            meter = ts_at[bar_start]
            words.append(_word("ts", meter))
        while ts_index < len(ts_ticks) and ts_ticks[ts_index] <= bar_start:
            ts_index += 1
        bar_end = bar_start + bar_steps(*meter)
        cut = ts_index < len(ts_ticks) and ts_ticks[ts_index] < bar_end
        if cut:  # the next signature falls inside this bar: it ends there
            bar_end = ts_ticks[ts_index]
        current_track = None
        durations: dict[int, int] = {}
        velocities: dict[int, int] = {}
        while t_index < len(ticks) and ticks[t_index] < bar_end:
            tick = ticks[t_index]
            t_index += 1
            words.append(_POS[tick - bar_start])
            if tick in tempo_at:
                words.append(_word("tempo", tempo_at[tick]))
            if tick in key_at:
                words.append(_word("key", key_at[tick]))
            for track_index, duration, velocity, pitch in sorted(notes_at.get(tick, ())):
                if track_index != current_track:
                    words.append(_TRACK[track_index])
                    current_track = track_index
                if durations.get(track_index) != duration:
                    words += _duration_words(duration)
                    durations[track_index] = duration
                if velocities.get(track_index) != velocity:
                    words.append(_VEL[velocity])
                    velocities[track_index] = velocity
                words.append(_DRUM[pitch] if tracks[track_index].is_drum else _PITCH[pitch])
        if cut:
            words.append(_POS[bar_end - bar_start])
        lines.append(" ".join(words))
        bar_start = bar_end
        if cut and t_index == len(ticks) and bar_start == last_tick and ts_at[bar_start] == meter:
            break  # the meter restated where the music ends: `end` follows the cut
    lines.append("end")
    return "\n".join(lines) + "\n"


@functools.cache
def _duration_words(steps: int) -> tuple[str, ...]:
    """The words of a duration: long parts, largest first, then the short part."""
    long_parts, short_steps = split_duration(steps)
    return (*(_LONG[part] for part in long_parts), _DUR[short_steps - 1])


def _split_at_zero(events: list, default: object) -> tuple[object, list]:
    """(the event in force at tick 0, the events after tick 0)."""
    first = default
    rest = []
    for event in events:
        if event.tick == 0:
            first = event
        else:
            rest.append(event)
    return first, rest


def _word(family: str, value: object) -> str:
    try:
        return VOCAB.word_of(family, value)
    except KeyError:
        raise CodecError(f"no {family} token for the value {value!r}") from None


# ---- token text -> grid score ----


def _decode_inst(score: Score, state: GrammarState, program: int, notes: list) -> None:
    score.tracks.append(Track(program=max(program, 0), is_drum=program == -1))
    notes.append(score.tracks[-1].notes)


# In the header, before any bar, the state's onset_tick is 0: the start of the piece.
def _decode_tempo(score: Score, state: GrammarState, bpm: float, notes: list) -> None:
    score.tempos.append(TempoChange(state.onset_tick, bpm))


def _decode_ts(score: Score, state: GrammarState, meter: tuple[int, int], notes: list) -> None:
    signatures = score.time_signatures
    if signatures and signatures[-1].tick == state.bar_start and state.bar_index > 0:
        signatures.pop()  # the new meter takes the place of the one restated at the cut
    signatures.append(TimeSignature(state.bar_start, *meter))


def _decode_bar_line(score: Score, state: GrammarState, _value: object, notes: list) -> None:
    """After a bar cut short, a time signature marks the bar line: MIDI has no other
    way to say where a bar ends (the meter stays unless the next bar states one)."""
    if state.cut_tick is not None:
        score.time_signatures.append(TimeSignature(state.cut_tick, *state.ts))


def _decode_key(score: Score, state: GrammarState, key: tuple[int, str], notes: list) -> None:
    score.key_signatures.append(KeySignature(state.onset_tick, *key))


def _decode_style(score: Score, state: GrammarState, style: str, notes: list) -> None:
    score.style = style


_DECODE_META = {
    "inst": _decode_inst,
    "tempo": _decode_tempo,
    "ts": _decode_ts,
    "key": _decode_key,
    "style": _decode_style,
    "bar": _decode_bar_line,
    "end": _decode_bar_line,
}


_NOTE = object()  # the decoder's action for pitch and drum tokens
# Per token id: _NOTE, a function for the meta families, or None (nothing to record).
_DECODE_ACTION = [
    _NOTE if family in ("pitch", "drum") else _DECODE_META.get(family) for family in VOCAB.family_of
]


def decode(text: str, partial: bool = False) -> Score:
    """Parse token text (validated by the grammar) into a grid score.

    Raises GrammarError naming the token index, the token and what was expected.
    partial: the text may stop before `end` (a seed: a header and whole bars, or less).
    A whole fill-in-the-middle text (`music_lm.tokens.fim`) is read as its plain piece.
    """
    ids = words_to_ids(text.split())
    if HOLE in ids:
        for _ in walk(ids):  # errors name the token as written
            pass
        ids = from_fim(ids)
    score = Score(GRID_PER_QUARTER)
    values = VOCAB.values
    notes: list[list[Note]] = []
    state = GrammarState()
    advance = state.advance
    for index, token_id in enumerate(ids):
        try:
            advance(token_id)
        except GrammarError as err:
            raise located(err, index, token_id) from None
        action = _DECODE_ACTION[token_id]
        if action is _NOTE:
            track = state.part_track
            notes[track].append(
                Note(state.onset_tick, state.durations[track], values[token_id],
                     state.velocities[track])
            )  # fmt: skip
        elif action is not None:
            action(score, state, values[token_id], notes)
    if not partial:
        check_complete(state, len(ids))
    for track_notes in notes:
        track_notes.sort()
    return score


__all__ = ["CodecError", "GrammarError", "GridChanges", "decode", "encode", "to_grid"]
